//! CloudWatch Logs (JSON 1.1, `Logs_20140328.*`): DescribeLogGroups, DescribeLogStreams,
//! GetLogEvents and FilterLogEvents over the transcripts the agent streams (see
//! [`super::transcripts`]).
//!
//! Reading a stream follows [`Identity::may_read_transcript`]: a stream is named after its
//! session, and a policy scoped to `log-stream:${aws:username}-*` lets bob read only his own.
//! FilterLogEvents acts on the whole group, so it needs access to every stream. Paging:
//! GetLogEvents' `nextForwardToken` is `f/<position>` and comes back unchanged at the end of the
//! stream (how clients know to stop, or to wait for more when following).

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::identity::Identity;
use super::state::SandboxState;
use super::wire::{
    access_denied_message, decode_next_token, encode_next_token, json_error, json_ok,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeLogGroups {
    log_group_name_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeLogStreams {
    log_group_name: Option<String>,
    log_stream_name_prefix: Option<String>,
    #[serde(default)]
    descending: bool,
    order_by: Option<String>,
    limit: Option<usize>,
    next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetLogEvents {
    log_group_name: Option<String>,
    log_stream_name: Option<String>,
    start_from_head: Option<bool>,
    next_token: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterLogEvents {
    log_group_name: Option<String>,
    log_stream_names: Option<Vec<String>>,
    filter_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<usize>,
}

const MAX_EVENTS: usize = 10_000;

pub(crate) fn handle(state: &SandboxState, who: &Identity, op: &str, body: &[u8]) -> Response {
    let result = match op {
        "DescribeLogGroups" => parse(body).map(|r| describe_log_groups(state, r)),
        "DescribeLogStreams" => parse(body).and_then(|r| describe_log_streams(state, r)),
        "GetLogEvents" => parse(body).and_then(|r| get_log_events(state, who, r)),
        "FilterLogEvents" => parse(body).and_then(|r| filter_log_events(state, who, r)),
        _ => Err(error(
            "UnknownOperationException",
            &format!("ssmtui sandbox does not implement Logs.{op}"),
        )),
    };
    result.unwrap_or_else(|e| json_error(StatusCode::BAD_REQUEST, e.code, &e.message))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, LogsError> {
    serde_json::from_slice(body).map_err(|e| error("SerializationException", &e.to_string()))
}

/// A Logs error: every one is HTTP 400 with its code.
#[derive(Debug)]
struct LogsError {
    code: &'static str,
    message: String,
}

fn error(code: &'static str, message: &str) -> LogsError {
    LogsError {
        code,
        message: message.to_owned(),
    }
}

fn required(v: Option<String>, name: &str) -> Result<String, LogsError> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| {
        error(
            "InvalidParameterException",
            &format!("1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"),
        )
    })
}

fn no_group() -> LogsError {
    error(
        "ResourceNotFoundException",
        "The specified log group does not exist.",
    )
}

fn group_arn(state: &SandboxState, group: &str) -> String {
    format!(
        "arn:aws:logs:{}:{}:log-group:{group}",
        state.region(),
        state.account()
    )
}

fn denied(who: &Identity, action: &str, resource: &str) -> LogsError {
    error(
        "AccessDeniedException",
        &access_denied_message(who, action, resource),
    )
}

fn describe_log_groups(state: &SandboxState, req: DescribeLogGroups) -> Response {
    let prefix = req.log_group_name_prefix.unwrap_or_default();
    let logs = state.logs();
    let groups: Vec<Value> = logs
        .groups()
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(name, g)| {
            json!({
                "logGroupName": name,
                "creationTime": g.created,
                "arn": format!("{}:*", group_arn(state, name)),
                "kmsKeyId": super::world::key_arn(state.account(), state.region(), super::world::SESSION_KEY_ID),
                "storedBytes": g.streams.values().flat_map(|s| &s.events).map(|e| e.message.len()).sum::<usize>(),
            })
        })
        .collect();
    json_ok(&json!({ "logGroups": groups }))
}

fn describe_log_streams(
    state: &SandboxState,
    req: DescribeLogStreams,
) -> Result<Response, LogsError> {
    let group = required(req.log_group_name, "logGroupName")?;
    let prefix = req.log_stream_name_prefix.unwrap_or_default();
    let logs = state.logs();
    let g = logs.group(&group).ok_or_else(no_group)?;
    let mut streams: Vec<(&String, &super::transcripts::LogStream)> = g
        .streams
        .iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .collect();
    if req.order_by.as_deref() == Some("LastEventTime") {
        streams.sort_by_key(|(_, s)| s.events.last().map_or(s.created, |e| e.timestamp));
    }
    if req.descending {
        streams.reverse();
    }
    let start = match req.next_token.as_deref() {
        Some(t) => decode_next_token("logs-streams", t).ok_or_else(|| {
            error(
                "InvalidParameterException",
                "The specified nextToken is invalid.",
            )
        })?,
        None => 0,
    };
    let limit = req.limit.unwrap_or(50).clamp(1, 50);
    let page: Vec<Value> = streams
        .iter()
        .skip(start)
        .take(limit)
        .map(|(name, s)| {
            json!({
                "logStreamName": name,
                "creationTime": s.created,
                "firstEventTimestamp": s.events.first().map(|e| e.timestamp),
                "lastEventTimestamp": s.events.last().map(|e| e.timestamp),
                "lastIngestionTime": s.events.last().map(|e| e.ingestion),
                "arn": format!("{}:log-stream:{name}", group_arn(state, &group)),
                "storedBytes": 0,
            })
        })
        .collect();
    let mut out = json!({ "logStreams": page });
    if start + limit < streams.len() {
        out["nextToken"] = json!(encode_next_token("logs-streams", start + limit));
    }
    Ok(json_ok(&out))
}

/// `f/<position>` or `b/<position>`.
fn position(token: &str) -> Option<usize> {
    let (dir, n) = token.split_once('/')?;
    matches!(dir, "f" | "b").then_some(())?;
    n.parse().ok()
}

fn get_log_events(
    state: &SandboxState,
    who: &Identity,
    req: GetLogEvents,
) -> Result<Response, LogsError> {
    let group = required(req.log_group_name, "logGroupName")?;
    let stream = required(req.log_stream_name, "logStreamName")?;
    if !who.may_read_transcript(&stream) {
        return Err(denied(
            who,
            "logs:GetLogEvents",
            &format!("{}:log-stream:{stream}", group_arn(state, &group)),
        ));
    }
    let logs = state.logs();
    let g = logs.group(&group).ok_or_else(no_group)?;
    let s = g.streams.get(&stream).ok_or_else(|| {
        error(
            "ResourceNotFoundException",
            "The specified log stream does not exist.",
        )
    })?;
    let limit = req.limit.unwrap_or(MAX_EVENTS).clamp(1, MAX_EVENTS);
    let total = s.events.len();
    let (from, to) = match req.next_token.as_deref() {
        Some(t) => {
            let p = position(t).ok_or_else(|| {
                error(
                    "InvalidParameterException",
                    "The specified nextToken is invalid.",
                )
            })?;
            if t.starts_with("b/") {
                let to = p.min(total);
                (to.saturating_sub(limit), to)
            } else {
                (p.min(total), (p + limit).min(total))
            }
        }
        // From the head, or the newest `limit` events (the API's default).
        None if req.start_from_head == Some(true) => (0, limit.min(total)),
        None => (total.saturating_sub(limit), total),
    };
    let events: Vec<Value> = s.events[from..to]
        .iter()
        .map(|e| json!({ "timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion }))
        .collect();
    Ok(json_ok(&json!({
        "events": events,
        "nextForwardToken": format!("f/{to:056}"),
        "nextBackwardToken": format!("b/{from:056}"),
    })))
}

fn filter_log_events(
    state: &SandboxState,
    who: &Identity,
    req: FilterLogEvents,
) -> Result<Response, LogsError> {
    let group = required(req.log_group_name, "logGroupName")?;
    if who.transcripts != super::identity::Reach::All {
        return Err(denied(
            who,
            "logs:FilterLogEvents",
            &format!("{}:*", group_arn(state, &group)),
        ));
    }
    // Terms of a pattern must all appear (quoted phrases kept whole), as for unstructured logs.
    let terms: Vec<String> = pattern_terms(req.filter_pattern.as_deref().unwrap_or_default());
    let logs = state.logs();
    let g = logs.group(&group).ok_or_else(no_group)?;
    let mut all: Vec<(&String, usize, &super::transcripts::LogEvent)> = g
        .streams
        .iter()
        .filter(|(name, _)| {
            req.log_stream_names
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == *name))
        })
        .flat_map(|(name, s)| s.events.iter().enumerate().map(move |(i, e)| (name, i, e)))
        .filter(|(_, _, e)| terms.iter().all(|t| e.message.contains(t.as_str())))
        .collect();
    all.sort_by_key(|(_, _, e)| e.timestamp);
    let start = match req.next_token.as_deref() {
        Some(t) => decode_next_token("logs-filter", t).ok_or_else(|| {
            error(
                "InvalidParameterException",
                "The specified nextToken is invalid.",
            )
        })?,
        None => 0,
    };
    let limit = req.limit.unwrap_or(MAX_EVENTS).clamp(1, MAX_EVENTS);
    let events: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|(name, i, e)| {
            json!({
                "logStreamName": name,
                "timestamp": e.timestamp,
                "message": e.message,
                "ingestionTime": e.ingestion,
                "eventId": format!("{:020}{i:016}", e.timestamp),
            })
        })
        .collect();
    let mut out = json!({ "events": events, "searchedLogStreams": [] });
    if start + limit < all.len() {
        out["nextToken"] = json!(encode_next_token("logs-filter", start + limit));
    }
    Ok(json_ok(&out))
}

fn pattern_terms(pattern: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut rest = pattern.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('"') {
            let (term, tail) = after.split_once('"').unwrap_or((after, ""));
            terms.push(term.to_owned());
            rest = tail.trim_start();
        } else {
            let (term, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            terms.push(term.to_owned());
            rest = tail.trim_start();
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_tokens() {
        assert_eq!(
            pattern_terms(r#"ERROR "disk full" x"#),
            ["ERROR", "disk full", "x"]
        );
        assert!(pattern_terms("  ").is_empty());
        assert_eq!(
            position("f/00000000000000000000000000000000000000000000000000000012"),
            Some(12)
        );
        assert_eq!(position("x/1"), None);
    }
}
