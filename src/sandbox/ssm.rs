//! SSM (JSON 1.1, `AmazonSSM.*`): instance information, sessions and session documents.
//!
//! Authorisation follows [`Identity`]: everyone may read; StartSession needs the document to be
//! allowed for the identity and the target's `Environment` tag to be reachable (checked in that
//! order of resources: instance first, then document, each denied with AWS's message naming the
//! resource); ResumeSession and TerminateSession work only on the caller's own sessions.
//! Validation runs before authorisation as in the real service (a bad `Reason` is a
//! ValidationException even for a user with no rights).
//!
//! Paging tokens name a position in the underlying list, so each page costs only the scan it
//! needs.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::identity::{Identity, glob_match};
use super::state::{SandboxState, SessionInfo, SessionStatus, epoch_secs, random_bytes};
use super::wire::{
    access_denied_message, decode_next_token, encode_next_token, json_error, json_ok,
};
use super::world::{CURRENT_AGENT_VERSION, Document, Instance, PingStatus, World};

/// The document StartSession uses when none is named.
pub const DEFAULT_DOCUMENT: &str = "SSM-SessionManagerRunShell";

pub(crate) fn handle(state: &SandboxState, who: &Identity, op: &str, body: &[u8]) -> Response {
    let result = match op {
        "DescribeInstanceInformation" => {
            parse(body).and_then(|r| describe_instance_information(state, r))
        }
        "StartSession" => parse(body).and_then(|r| start_session(state, who, r)),
        "ResumeSession" => parse(body).and_then(|r| resume_session(state, who, r)),
        "TerminateSession" => parse(body).and_then(|r| terminate_session(state, who, r)),
        "DescribeSessions" => parse(body).and_then(|r| describe_sessions(state, r)),
        "GetDocument" => parse(body).and_then(|r| get_document(state, r)),
        "DescribeDocument" => parse(body).and_then(|r| describe_document(state, r)),
        "ListDocuments" => parse(body).and_then(|r| list_documents(state, r)),
        "GetConnectionStatus" => parse(body).and_then(|r| get_connection_status(state, r)),
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!("the sandbox does not emulate ssm:{other}"),
        )),
    };
    match result {
        Ok(v) => json_ok(&v),
        Err(e) => json_error(e.status, e.code, &e.message),
    }
}

/// An SSM error: code (`__type`) and message.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    fn denied(who: &Identity, action: &str, resource: &str) -> Self {
        Self::new(
            "AccessDeniedException",
            access_denied_message(who, action, resource),
        )
    }

    fn validation(value: &str, field: &str, constraint: &str) -> Self {
        Self::new(
            "ValidationException",
            format!(
                "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
            ),
        )
    }

    fn internal() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalServerError",
            message: "the sandbox could not draw random bytes".to_owned(),
        }
    }
}

type ApiResult = Result<Value, ApiError>;

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    // An empty body is a request with no fields (the SDK sends `{}`, curl may send nothing).
    let body = if body.is_empty() {
        b"{}" as &[u8]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            "SerializationException",
            format!("cannot read the request: {e}"),
        )
    })
}

fn max_results(given: Option<i64>, lo: i64, hi: i64, default: i64) -> Result<usize, ApiError> {
    match given {
        None => Ok(default as usize),
        Some(n) if n < lo => Err(ApiError::validation(
            &n.to_string(),
            "maxResults",
            &format!("Member must have value greater than or equal to {lo}"),
        )),
        Some(n) if n > hi => Err(ApiError::validation(
            &n.to_string(),
            "maxResults",
            &format!("Member must have value less than or equal to {hi}"),
        )),
        Some(n) => Ok(n as usize),
    }
}

fn start_position(op: &str, token: Option<&str>) -> Result<usize, ApiError> {
    match token {
        None => Ok(0),
        Some(t) => decode_next_token(op, t)
            .ok_or_else(|| ApiError::new("InvalidNextToken", "The specified token is not valid.")),
    }
}

/// Scans `items` from `start`, keeping those `keep` accepts, until `limit` are found.
/// Returns the page and the position to resume from if the list goes on.
fn page<T>(
    items: &[T],
    start: usize,
    limit: usize,
    mut keep: impl FnMut(&T) -> bool,
) -> (Vec<&T>, Option<usize>) {
    let mut out = Vec::new();
    let mut pos = start;
    while pos < items.len() && out.len() < limit {
        if keep(&items[pos]) {
            out.push(&items[pos]);
        }
        pos += 1;
    }
    let next = (out.len() == limit && pos < items.len()).then_some(pos);
    (out, next)
}

// ---------------------------------------------------------------------------------------------
// DescribeInstanceInformation

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInstanceInformationRequest {
    #[serde(default)]
    instance_information_filter_list: Vec<LegacyFilter>,
    #[serde(default)]
    filters: Vec<KeyValuesFilter>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LegacyFilter {
    key: String,
    #[serde(rename = "valueSet", default)]
    value_set: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyValuesFilter {
    key: String,
    #[serde(default)]
    values: Vec<String>,
}

fn valid_managed_id(id: &str) -> bool {
    let hex = id.strip_prefix("i-").or_else(|| id.strip_prefix("mi-"));
    hex.is_some_and(|h| (h.len() == 8 || h.len() == 17) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn instance_filter_matches(key: &str, values: &[String], i: &Instance) -> bool {
    let has = |v: &str| values.iter().any(|x| x == v);
    match key {
        "InstanceIds" => has(&i.id),
        "PingStatus" => has(i.ping.as_str()),
        "PlatformTypes" => has(i.platform_type.as_str()),
        "AgentVersion" => has(&i.agent_version),
        "ResourceType" => has("EC2Instance"),
        "tag-key" => i.tags.iter().any(|(k, _)| has(k)),
        k => match k.strip_prefix("tag:") {
            Some(tag) => i.tag(tag).is_some_and(has),
            None => false,
        },
    }
}

fn check_instance_filter(key: &str, values: &[String], legacy: bool) -> Result<(), ApiError> {
    let known = matches!(
        key,
        "InstanceIds" | "PingStatus" | "PlatformTypes" | "AgentVersion" | "ResourceType"
    ) || (!legacy && (key == "tag-key" || key.starts_with("tag:")));
    if !known {
        return Err(ApiError::new(
            "InvalidInstanceInformationFilterValue",
            format!("{key} is not a valid filter key."),
        ));
    }
    if values.is_empty() {
        return Err(ApiError::new(
            "InvalidInstanceInformationFilterValue",
            format!("The filter {key} needs at least one value."),
        ));
    }
    for v in values {
        let ok = match key {
            "InstanceIds" => {
                if !valid_managed_id(v) {
                    return Err(ApiError::new(
                        "InvalidInstanceId",
                        format!("Instance Id {v} is not valid."),
                    ));
                }
                true
            }
            "PingStatus" => matches!(v.as_str(), "Online" | "ConnectionLost" | "Inactive"),
            "PlatformTypes" => matches!(v.as_str(), "Windows" | "Linux" | "MacOS"),
            _ => true,
        };
        if !ok {
            return Err(ApiError::new(
                "InvalidInstanceInformationFilterValue",
                format!("{v} is not a valid value for the filter {key}."),
            ));
        }
    }
    Ok(())
}

fn describe_instance_information(
    state: &SandboxState,
    req: DescribeInstanceInformationRequest,
) -> ApiResult {
    let limit = max_results(req.max_results, 5, 50, 50)?;
    if !req.filters.is_empty() && !req.instance_information_filter_list.is_empty() {
        return Err(ApiError::new(
            "InvalidInstanceInformationFilterValue",
            "InstanceInformationFilterList and Filters cannot be used together.",
        ));
    }
    let mut filters: Vec<(&str, &[String])> = Vec::new();
    for f in &req.instance_information_filter_list {
        check_instance_filter(&f.key, &f.value_set, true)?;
        filters.push((&f.key, &f.value_set));
    }
    for f in &req.filters {
        check_instance_filter(&f.key, &f.values, false)?;
        filters.push((&f.key, &f.values));
    }
    let start = start_position("dii", req.next_token.as_deref())?;
    let world = state.world();
    let (items, next) = page(&world.instances, start, limit, |i| {
        filters
            .iter()
            .all(|(k, v)| instance_filter_matches(k, v, i))
    });
    let now = SystemTime::now();
    let region = state.region();
    let list: Vec<Value> = items
        .iter()
        .map(|i| {
            let ping = now - Duration::from_secs(i.ping_age_secs);
            json!({
                "InstanceId": i.id,
                "PingStatus": i.ping.as_str(),
                "LastPingDateTime": epoch_secs(ping).floor(),
                "AgentVersion": i.agent_version,
                "IsLatestVersion": i.agent_version == CURRENT_AGENT_VERSION,
                "PlatformType": i.platform_type.as_str(),
                "PlatformName": i.platform_name,
                "PlatformVersion": i.platform_version,
                "ResourceType": "EC2Instance",
                "IPAddress": i.private_ip.to_string(),
                "ComputerName": i.computer_name(region),
                "SourceId": i.id,
                "SourceType": "AWS::EC2::Instance",
            })
        })
        .collect();
    let mut out = json!({ "InstanceInformationList": list });
    if let Some(p) = next {
        out["NextToken"] = json!(encode_next_token("dii", p));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Sessions

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartSessionRequest {
    target: Option<String>,
    document_name: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, Vec<String>>,
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SessionIdRequest {
    session_id: Option<String>,
}

fn valid_document_name(name: &str) -> bool {
    (3..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b))
}

fn start_session(state: &SandboxState, who: &Identity, req: StartSessionRequest) -> ApiResult {
    let region = state.region().to_owned();
    let target = req.target.unwrap_or_default();
    if target.is_empty() || target.len() > 400 {
        return Err(ApiError::validation(
            &target,
            "target",
            "Member must have length between 1 and 400",
        ));
    }
    if let Some(reason) = &req.reason {
        let n = reason.chars().count();
        if n == 0 {
            return Err(ApiError::validation(
                reason,
                "reason",
                "Member must have length greater than or equal to 1",
            ));
        }
        if n > 256 {
            return Err(ApiError::validation(
                reason,
                "reason",
                "Member must have length less than or equal to 256",
            ));
        }
    }
    let document_name = req
        .document_name
        .unwrap_or_else(|| DEFAULT_DOCUMENT.to_owned());
    if !valid_document_name(&document_name) {
        return Err(ApiError::validation(
            &document_name,
            "documentName",
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9_\\-.:/]{3,128}$",
        ));
    }

    let world = state.world();
    let instance = world.instance(&target);
    let instance_arn = format!("arn:aws:ec2:{region}:{}:instance/{target}", state.account());
    // IAM: the instance resource (ssm:resourceTag conditions; a missing instance has no tags).
    if !who.may_reach(instance.and_then(Instance::environment)) {
        return Err(ApiError::denied(who, "ssm:StartSession", &instance_arn));
    }
    // IAM: the document resource (ssm:SessionDocumentAccessCheck).
    let document_arn = match world.document(&document_name) {
        Some(d) => d.arn(&region),
        None => format!(
            "arn:aws:ssm:{region}:{}:document/{document_name}",
            state.account()
        ),
    };
    if !who.may_start_document(&document_name) {
        return Err(ApiError::denied(who, "ssm:StartSession", &document_arn));
    }
    let document = session_document(&world, &document_name)?.clone();
    let Some(instance) = instance.filter(|i| i.connected()) else {
        return Err(ApiError::new(
            "TargetNotConnected",
            format!("{target} is not connected."),
        ));
    };
    check_parameters(&document, &req.parameters)?;
    let agent_version = instance.agent_version.clone();
    drop(world);

    let suffix = random_bytes::<9>().ok_or_else(ApiError::internal)?;
    let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let session_id = format!("{}-{}", who.name, &hex[..17]);
    let info = SessionInfo {
        session_id: session_id.clone(),
        target,
        document,
        parameters: req.parameters,
        reason: req.reason,
        owner: who.clone(),
        owner_arn: who.arn(),
        status: SessionStatus::Connecting,
        start: SystemTime::now(),
        end: None,
        agent_version,
    };
    let token = state.create_session(info).ok_or_else(ApiError::internal)?;
    Ok(json!({
        "SessionId": session_id,
        "StreamUrl": state.stream_url(&session_id),
        "TokenValue": token.expose(),
    }))
}

fn session_document<'w>(world: &'w World, name: &str) -> Result<&'w Document, ApiError> {
    let doc = world.document(name).ok_or_else(|| {
        ApiError::new(
            "InvalidDocument",
            format!("Document with name {name} does not exist."),
        )
    })?;
    Ok(doc)
}

fn check_parameters(
    document: &Document,
    parameters: &BTreeMap<String, Vec<String>>,
) -> Result<(), ApiError> {
    let declared = document.json();
    let declared = declared.get("parameters").and_then(Value::as_object);
    for (name, values) in parameters {
        if !declared.is_some_and(|d| d.contains_key(name)) {
            return Err(ApiError::new(
                "InvalidParameters",
                format!(
                    "Parameter \"{name}\" is not defined in the document {}.",
                    document.name
                ),
            ));
        }
        if values.len() != 1 || values.iter().any(String::is_empty) {
            return Err(ApiError::new(
                "InvalidParameters",
                format!("Parameter \"{name}\" needs exactly one non-empty value."),
            ));
        }
        if (name == "portNumber" || name == "localPortNumber") && values[0].parse::<u16>().is_err()
        {
            return Err(ApiError::new(
                "InvalidParameters",
                format!(
                    "Parameter \"{name}\" \"{}\" failed to satisfy constraint: a port number between 0 and 65535.",
                    values[0]
                ),
            ));
        }
    }
    Ok(())
}

fn session_arn(state: &SandboxState, id: &str) -> String {
    format!(
        "arn:aws:ssm:{}:{}:session/{id}",
        state.region(),
        state.account()
    )
}

fn resume_session(state: &SandboxState, who: &Identity, req: SessionIdRequest) -> ApiResult {
    let id = req.session_id.unwrap_or_default();
    if !who.sessions {
        return Err(ApiError::denied(
            who,
            "ssm:ResumeSession",
            &session_arn(state, &id),
        ));
    }
    let Some(session) = state.session(&id) else {
        return Err(ApiError::new(
            "DoesNotExistException",
            format!("Session with id {id} does not exist."),
        ));
    };
    if session.owner.name != who.name {
        return Err(ApiError::denied(
            who,
            "ssm:ResumeSession",
            &session_arn(state, &id),
        ));
    }
    // An ended session resumes to an empty token, as AWS answers for a timed-out session.
    let token = state.reissue_token(&id);
    Ok(json!({
        "SessionId": id,
        "StreamUrl": state.stream_url(&id),
        "TokenValue": token.as_ref().map(|t| t.expose()).unwrap_or_default(),
    }))
}

fn terminate_session(state: &SandboxState, who: &Identity, req: SessionIdRequest) -> ApiResult {
    let id = req.session_id.unwrap_or_default();
    if !who.sessions {
        return Err(ApiError::denied(
            who,
            "ssm:TerminateSession",
            &session_arn(state, &id),
        ));
    }
    if let Some(session) = state.session(&id) {
        if session.owner.name != who.name {
            return Err(ApiError::denied(
                who,
                "ssm:TerminateSession",
                &session_arn(state, &id),
            ));
        }
        state.end_session(&id, SessionStatus::Terminated);
    }
    // Terminating an unknown or ended session succeeds, as it does on AWS.
    Ok(json!({ "SessionId": id }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeSessionsRequest {
    state: Option<String>,
    #[serde(default)]
    filters: Vec<SessionFilter>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SessionFilter {
    key: String,
    value: String,
}

fn describe_sessions(state: &SandboxState, req: DescribeSessionsRequest) -> ApiResult {
    let active = match req.state.as_deref() {
        Some("Active") => true,
        Some("History") => false,
        other => {
            return Err(ApiError::validation(
                other.unwrap_or("null"),
                "state",
                "Member must satisfy enum value set: [Active, History]",
            ));
        }
    };
    for f in &req.filters {
        if !matches!(
            f.key.as_str(),
            "Owner" | "Target" | "Status" | "SessionId" | "InvokedAfter" | "InvokedBefore"
        ) {
            return Err(ApiError::new(
                "InvalidFilterKey",
                format!("{} is not a valid filter key.", f.key),
            ));
        }
    }
    let limit = max_results(req.max_results, 1, 200, 20)?;
    let start = start_position("ds", req.next_token.as_deref())?;
    let mut sessions = state.sessions();
    sessions.reverse(); // newest first, as the console and the CLI show them
    let (items, next) = page(&sessions, start, limit, |s| {
        s.status.is_active() == active
            && req.filters.iter().all(|f| match f.key.as_str() {
                "Owner" => f.value == s.owner_arn || f.value == s.owner.name,
                "Target" => f.value == s.target,
                "Status" => f.value == s.status.as_str(),
                "SessionId" => f.value == s.session_id,
                "InvokedAfter" => parse_time(&f.value).is_some_and(|t| epoch_secs(s.start) >= t),
                "InvokedBefore" => parse_time(&f.value).is_some_and(|t| epoch_secs(s.start) <= t),
                _ => false,
            })
    });
    let list: Vec<Value> = items
        .iter()
        .map(|s| {
            let mut v = json!({
                "SessionId": s.session_id,
                "Target": s.target,
                "Status": s.status.as_str(),
                "StartDate": epoch_secs(s.start),
                "DocumentName": s.document.name,
                "Owner": s.owner_arn,
            });
            if let Some(end) = s.end {
                v["EndDate"] = json!(epoch_secs(end));
            }
            if let Some(r) = &s.reason {
                v["Reason"] = json!(r);
            }
            if let Some(m) = s.document.max_session_duration() {
                v["MaxSessionDuration"] = json!(m);
            }
            v
        })
        .collect();
    let mut out = json!({ "Sessions": list });
    if let Some(p) = next {
        out["NextToken"] = json!(encode_next_token("ds", p));
    }
    Ok(out)
}

fn parse_time(s: &str) -> Option<f64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp() as f64)
}

// ---------------------------------------------------------------------------------------------
// Documents

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DocumentRequest {
    name: Option<String>,
    document_version: Option<String>,
}

fn find_document(state: &SandboxState, req: &DocumentRequest) -> Result<Document, ApiError> {
    let name = req.name.as_deref().unwrap_or_default();
    let doc = state.world().document(name).cloned().ok_or_else(|| {
        ApiError::new("InvalidDocument", "The specified document does not exist.")
    })?;
    match req.document_version.as_deref() {
        None | Some("1" | "$LATEST" | "$DEFAULT") => Ok(doc),
        Some(_) => Err(ApiError::new(
            "InvalidDocumentVersion",
            "The document version is not valid or does not exist.",
        )),
    }
}

fn tags_json(tags: &[(String, String)]) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({ "Key": k, "Value": v }))
            .collect(),
    )
}

fn get_document(state: &SandboxState, req: DocumentRequest) -> ApiResult {
    let d = find_document(state, &req)?;
    Ok(json!({
        "Name": d.name,
        "CreatedDate": d.created,
        "DocumentVersion": "1",
        "Status": "Active",
        "Content": d.content,
        "DocumentType": "Session",
        "DocumentFormat": "JSON",
    }))
}

fn describe_document(state: &SandboxState, req: DocumentRequest) -> ApiResult {
    let d = find_document(state, &req)?;
    let content = d.json();
    let parameters: Vec<Value> = content
        .get("parameters")
        .and_then(Value::as_object)
        .map(|params| {
            params
                .iter()
                .map(|(name, p)| {
                    let mut v = json!({
                        "Name": name,
                        "Type": p.get("type").cloned().unwrap_or(json!("String")),
                        "Description": p.get("description").cloned().unwrap_or(json!("")),
                    });
                    if let Some(def) = p.get("default") {
                        v["DefaultValue"] = def.clone();
                    }
                    v
                })
                .collect()
        })
        .unwrap_or_default();
    let hash: String = Sha256::digest(d.content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(json!({
        "Document": {
            "Name": d.name,
            "Hash": hash,
            "HashType": "Sha256",
            "Owner": d.owner,
            "CreatedDate": d.created,
            "Status": "Active",
            "DocumentVersion": "1",
            "Description": content.get("description").cloned().unwrap_or(json!("")),
            "Parameters": parameters,
            "PlatformTypes": ["Windows", "Linux", "MacOS"],
            "DocumentType": "Session",
            "SchemaVersion": "1.0",
            "LatestVersion": "1",
            "DefaultVersion": "1",
            "DocumentFormat": "JSON",
            "Tags": tags_json(&d.tags),
        }
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListDocumentsRequest {
    #[serde(default)]
    document_filter_list: Vec<SessionFilter>,
    #[serde(default)]
    filters: Vec<KeyValuesFilter>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn document_filter_matches(key: &str, values: &[String], d: &Document) -> Result<bool, ApiError> {
    let has = |v: &str| values.iter().any(|x| x == v);
    Ok(match key {
        "Name" => values.iter().any(|v| d.name.starts_with(v.as_str())),
        "DocumentType" => has("Session"),
        "PlatformTypes" => values
            .iter()
            .any(|v| matches!(v.as_str(), "Windows" | "Linux" | "MacOS")),
        "SchemaVersion" => has("1.0"),
        "Owner" => values.iter().any(|v| match v.as_str() {
            "Self" | "Private" => d.owner != "Amazon",
            "Amazon" | "Public" => d.owner == "Amazon",
            "All" => true,
            other => other == d.owner,
        }),
        "TagKeys" => d.tags.iter().any(|(k, _)| has(k)),
        "SearchKeyword" => values
            .iter()
            .any(|v| glob_match(&format!("*{v}*"), &d.name)),
        k => match k.strip_prefix("tag:") {
            Some(tag) => d
                .tags
                .iter()
                .any(|(tk, tv)| tk == tag && (values.is_empty() || has(tv))),
            None => {
                return Err(ApiError::new(
                    "InvalidFilterKey",
                    format!("{key} is not a valid filter key."),
                ));
            }
        },
    })
}

fn list_documents(state: &SandboxState, req: ListDocumentsRequest) -> ApiResult {
    let limit = max_results(req.max_results, 1, 50, 50)?;
    let start = start_position("ld", req.next_token.as_deref())?;
    let mut filters: Vec<(String, Vec<String>)> = req
        .document_filter_list
        .into_iter()
        .map(|f| (f.key, vec![f.value]))
        .collect();
    filters.extend(req.filters.into_iter().map(|f| (f.key, f.values)));
    let world = state.world();
    // Validate every key once, before paging, so a bad key fails even on an empty account.
    if let Some(d) = world.documents.first() {
        for (k, v) in &filters {
            document_filter_matches(k, v, d)?;
        }
    }
    let (items, next) = page(&world.documents, start, limit, |d| {
        filters
            .iter()
            .all(|(k, v)| document_filter_matches(k, v, d).unwrap_or(false))
    });
    let list: Vec<Value> = items
        .iter()
        .map(|d| {
            json!({
                "Name": d.name,
                "CreatedDate": d.created,
                "Owner": d.owner,
                "PlatformTypes": ["Windows", "Linux", "MacOS"],
                "DocumentVersion": "1",
                "DocumentType": "Session",
                "SchemaVersion": "1.0",
                "DocumentFormat": "JSON",
                "Tags": tags_json(&d.tags),
            })
        })
        .collect();
    let mut out = json!({ "DocumentIdentifiers": list });
    if let Some(p) = next {
        out["NextToken"] = json!(encode_next_token("ld", p));
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetConnectionStatusRequest {
    target: Option<String>,
}

fn get_connection_status(state: &SandboxState, req: GetConnectionStatusRequest) -> ApiResult {
    let target = req.target.unwrap_or_default();
    let connected = state
        .world()
        .instance(&target)
        .is_some_and(|i| i.connected() && i.ping == PingStatus::Online);
    Ok(json!({
        "Target": target,
        "Status": if connected { "connected" } else { "notconnected" },
    }))
}
