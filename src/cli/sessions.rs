//! `ssmtui sessions`: your Session Manager sessions as AWS knows them (DescribeSessions), or as
//! the local audit log recorded them (`--local`); `--terminate ID` ends one of yours.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::Context;
use crate::audit::{AuditLog, SessionRecord};
use crate::aws::{AwsError, SessionState, SessionSummary};
use crate::error::{ErrorKind, UserError};
use crate::output::print_out;

/// List active and recent sessions, or terminate one.
///
/// Without flags: your own sessions (DescribeSessions with Owner=Self), active ones first, then
/// the history AWS keeps (30 days). --all lists everyone's, where your IAM policy allows it.
/// --local reads the local audit log instead of asking AWS (no credentials needed).
#[derive(Debug, clap::Args)]
pub struct SessionsArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Everyone's sessions, not only yours (needs ssm:DescribeSessions without an Owner filter)
    #[arg(long, conflicts_with = "local")]
    pub all: bool,
    /// Only active sessions
    #[arg(long, conflicts_with = "local")]
    pub active: bool,
    /// At most this many sessions of history (newest first)
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Show the local audit log instead of asking AWS
    #[arg(long)]
    pub local: bool,
    /// Terminate this session (yours only)
    #[arg(long, value_name = "ID", conflicts_with_all = ["local", "all", "active"])]
    pub terminate: Option<String>,
}

/// `ssmtui sessions --json` output.
#[derive(Debug, serde::Serialize)]
struct SessionsJson<'a> {
    active: &'a [SessionSummary],
    history: &'a [SessionSummary],
}

/// Runs `sessions`.
pub fn run(ctx: &Context, args: &SessionsArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.load_config()?.config;
    if args.local {
        let log = AuditLog::from_config(&config.audit, &ctx.paths);
        let mut sessions = log.sessions()?;
        if sessions.len() > args.limit {
            sessions.drain(..sessions.len() - args.limit);
        }
        if args.json {
            print_out(&format!("{}\n", serde_json::to_string_pretty(&sessions)?))?;
        } else if sessions.is_empty() {
            eprintln!("no sessions in the audit log \"{}\"", log.path().display());
        } else {
            print_out(&local_table(&sessions))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.terminate.is_some() && ctx.global.readonly {
        return Err(
            UserError::new(ErrorKind::Usage, "read-only mode: sessions cannot be ended")
                .hint("leave out --readonly to terminate a session")
                .into(),
        );
    }
    let _log = super::start_logging(ctx);
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let api = super::aws_api(&config).await?;
        if let Some(id) = &args.terminate {
            return terminate(api.as_ref(), id, args.json).await;
        }
        let owner_self = !args.all;
        let active = api
            .describe_sessions(SessionState::Active, owner_self)
            .await
            .map_err(|e| explain_list(e, args.all))?;
        let mut history = if args.active {
            Vec::new()
        } else {
            api.describe_sessions(SessionState::History, owner_self)
                .await
                .map_err(|e| explain_list(e, args.all))?
        };
        history.truncate(args.limit);
        if args.json {
            let json = SessionsJson {
                active: &active,
                history: &history,
            };
            print_out(&format!("{}\n", serde_json::to_string_pretty(&json)?))?;
        } else {
            print_out(&aws_table(&active, &history, args.all))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn terminate(api: &dyn crate::aws::SsmApi, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    match api.terminate_session(id).await {
        Ok(()) => {
            if json {
                print_out(&format!(
                    "{}\n",
                    serde_json::json!({ "terminated": id })
                ))?;
            } else {
                print_out(&format!("terminated {id}\n"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(AwsError::AccessDenied { message, .. }) => Err(UserError::new(
            ErrorKind::Auth,
            format!("AWS refused to terminate session \"{id}\""),
        )
        .hint(format!("AWS said: {message}"))
        .hint("you can terminate only your own sessions; `ssmtui sessions` lists them")
        .hint("ending someone else's session needs ssm:TerminateSession on it, usually an administrator's permission")
        .into()),
        Err(e) => Err(e.into()),
    }
}

fn explain_list(err: AwsError, all: bool) -> anyhow::Error {
    match err {
        AwsError::AccessDenied { message, .. } if all => UserError::new(
            ErrorKind::Auth,
            "AWS does not let you list everyone's sessions",
        )
        .hint(format!("AWS said: {message}"))
        .hint("leave out --all to list your own")
        .into(),
        e => e.into(),
    }
}

/// A table with columns as wide as their widest cell.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .chain(std::iter::once(header.get(c).map_or(0, |h| h.len())))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

/// The DescribeSessions table: active first, then history.
pub fn aws_table(active: &[SessionSummary], history: &[SessionSummary], owners: bool) -> String {
    let mut header = vec![
        "STATE", "ID", "TARGET", "STATUS", "START", "END", "DOCUMENT", "REASON",
    ];
    if owners {
        header.push("OWNER");
    }
    let rows: Vec<Vec<String>> = active
        .iter()
        .map(|s| ("active", s))
        .chain(history.iter().map(|s| ("history", s)))
        .map(|(state, s)| {
            let mut row = vec![
                state.to_owned(),
                s.id.clone(),
                s.target.clone(),
                s.status.clone(),
                dash(s.start.as_deref()),
                dash(s.end.as_deref()),
                dash(s.document.as_deref()),
                dash(s.reason.as_deref()),
            ];
            if owners {
                row.push(dash(s.owner.as_deref()));
            }
            row
        })
        .collect();
    render(&header, &rows)
}

/// The audit-log table: one row per session.
pub fn local_table(sessions: &[SessionRecord]) -> String {
    let header = [
        "STARTED", "ENDED", "STATUS", "KIND", "ID", "TARGET", "CLASS", "DOCUMENT", "REASON",
    ];
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|r| {
            let status = match (&r.status, r.exit_code) {
                (Some(s), Some(code)) => format!("{} ({code})", enum_text(s)),
                (Some(s), None) => enum_text(s),
                (None, _) => "open".to_owned(),
            };
            let target = match &r.target_name {
                Some(name) => format!("{name} ({})", r.target_id),
                None => r.target_id.clone(),
            };
            vec![
                r.started.clone(),
                dash(r.ended.as_deref()),
                status,
                enum_text(&r.kind),
                r.session_id.clone(),
                target,
                dash(r.class.as_deref()),
                r.document.clone(),
                dash(r.reason.as_deref()),
            ]
        })
        .collect();
    render(&header, &rows)
}

/// The serde spelling of a unit enum variant.
fn enum_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_fill_gaps() {
        let s = SessionSummary {
            id: "alice-1".into(),
            target: "i-1".into(),
            status: "Connected".into(),
            start: Some("2024-01-01T00:00:00Z".into()),
            end: None,
            document: Some("SSM-sudo".into()),
            owner: Some("arn:x/alice".into()),
            reason: None,
        };
        let text = aws_table(std::slice::from_ref(&s), &[], true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("STATE   ID"), "{text}");
        assert!(lines[1].starts_with("active  alice-1"), "{text}");
        assert!(lines[1].ends_with("-       arn:x/alice"), "{text}");
    }
}
