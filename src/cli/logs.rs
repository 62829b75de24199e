//! `ssmtui logs`: find, read, search and follow session transcripts (S3 and CloudWatch Logs).

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use super::Context;
use crate::audit::{AuditLog, SessionRecord};
use crate::aws::{SessionState, SessionSummary, SsmApi};
use crate::error::{ErrorKind, UserError};
use crate::output::{print_bytes, print_out};
use crate::transcripts::{self, Documents, Location, Source, TranscriptError};

/// Find and read session transcripts (S3 and CloudWatch Logs).
///
/// Without SESSION_ID: your sessions (--all: everyone's you may list) with where each
/// transcript is kept. With SESSION_ID: the transcript, as plain text when stdout is not a
/// terminal (escape sequences removed), as the raw terminal output when it is.
/// The copy is chosen from the session's document: S3 once the session has ended (complete),
/// CloudWatch Logs while it runs (when the document streams there); --source picks one.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The session whose transcript to print
    pub session: Option<String>,
    /// Everyone's sessions, not only yours
    #[arg(long)]
    pub all: bool,
    /// The raw terminal output (escape sequences and all)
    #[arg(long, conflicts_with_all = ["text", "json"])]
    pub raw: bool,
    /// Plain text even on a terminal
    #[arg(long, conflicts_with = "json")]
    pub text: bool,
    /// JSON: the list, or a session's CloudWatch Logs records
    #[arg(long)]
    pub json: bool,
    /// Keep printing a live session's output as it arrives (CloudWatch streaming)
    #[arg(long, short = 'f', requires = "session", conflicts_with_all = ["grep", "json"])]
    pub follow: bool,
    /// Print the transcript lines containing this text, with session and line number
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// Read this copy instead of the one the document suggests
    #[arg(long, value_enum)]
    pub source: Option<Source>,
    /// At most this many sessions of history (newest first)
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
}

/// One row of the list.
#[derive(Debug, serde::Serialize)]
struct Row {
    #[serde(flatten)]
    session: SessionSummary,
    active: bool,
    name: Option<String>,
    transcript: Location,
}

/// Runs `logs`.
pub fn run(ctx: &Context, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.load_config()?.config;
    let audit = AuditLog::from_config(&config.audit, &ctx.paths)
        .sessions()
        .unwrap_or_default();
    let _log = super::start_logging(ctx);
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let api = super::aws_api(&config).await?;
        match (&args.session, &args.grep) {
            (Some(id), None) => print_one(api.as_ref(), id, args).await,
            (Some(id), Some(text)) => {
                let (summary, active) = find(api.as_ref(), id).await?;
                let rows = vec![
                    row(
                        api.as_ref(),
                        &mut Documents::default(),
                        summary,
                        active,
                        &audit,
                    )
                    .await,
                ];
                grep(api.as_ref(), &rows, text, args.source).await
            }
            (None, grep_text) => {
                let rows = list(api.as_ref(), args, &audit).await?;
                match grep_text {
                    Some(text) => grep(api.as_ref(), &rows, text, args.source).await,
                    None => print_list(&rows, args.json),
                }
            }
        }
    })
}

async fn find(api: &dyn SsmApi, id: &str) -> anyhow::Result<(SessionSummary, bool)> {
    transcripts::find_session(api, id).await?.ok_or_else(|| {
        UserError::new(
            ErrorKind::NotFound,
            format!("no session \"{id}\" is known to Session Manager"),
        )
        .hint("`ssmtui logs` lists your sessions (--all: everyone's); AWS keeps 30 days of history")
        .into()
    })
}

async fn row(
    api: &dyn SsmApi,
    documents: &mut Documents,
    session: SessionSummary,
    active: bool,
    audit: &[SessionRecord],
) -> Row {
    let local = audit.iter().find(|r| r.session_id == session.id);
    let transcript = match &session.document {
        Some(doc) => match documents.location(api, doc, &session.id).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "ssmtui: cannot read the document {doc} of session {}: {e}",
                    session.id
                );
                Location::default()
            }
        },
        None => Location::default(),
    };
    let mut session = session;
    if session.reason.is_none() {
        session.reason = local.and_then(|r| r.reason.clone());
    }
    Row {
        name: local.and_then(|r| r.target_name.clone()),
        session,
        active,
        transcript,
    }
}

async fn list(
    api: &dyn SsmApi,
    args: &LogsArgs,
    audit: &[SessionRecord],
) -> anyhow::Result<Vec<Row>> {
    let owner_self = !args.all;
    let active = api
        .describe_sessions(SessionState::Active, owner_self)
        .await?;
    let mut history = api
        .describe_sessions(SessionState::History, owner_self)
        .await?;
    history.truncate(args.limit);
    let mut documents = Documents::default();
    let mut rows = Vec::new();
    for (s, live) in active
        .into_iter()
        .map(|s| (s, true))
        .chain(history.into_iter().map(|s| (s, false)))
    {
        rows.push(row(api, &mut documents, s, live, audit).await);
    }
    Ok(rows)
}

fn print_list(rows: &[Row], json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_out(&format!("{}\n", serde_json::to_string_pretty(rows)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("no sessions (AWS keeps 30 days of history; --all lists everyone's)");
        return Ok(ExitCode::SUCCESS);
    }
    let dash = |v: Option<&str>| v.filter(|s| !s.is_empty()).unwrap_or("-").to_owned();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.session.id.clone(),
                if r.active { "active" } else { "ended" }.to_owned(),
                dash(r.name.as_deref()),
                r.session.target.clone(),
                dash(
                    r.session
                        .start
                        .as_deref()
                        .and_then(crate::humanize::short_time)
                        .as_deref(),
                ),
                dash(
                    r.session
                        .end
                        .as_deref()
                        .and_then(crate::humanize::short_time)
                        .as_deref(),
                ),
                dash(r.session.document.as_deref()),
                dash(r.session.reason.as_deref()),
                r.transcript.describe(),
            ]
        })
        .collect();
    print_out(&super::sessions::render(
        &[
            "SESSION",
            "STATE",
            "NAME",
            "TARGET",
            "START",
            "END",
            "DOCUMENT",
            "REASON",
            "TRANSCRIPT",
        ],
        &table,
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn transcript_error(e: TranscriptError) -> anyhow::Error {
    let mut err = UserError::new(e.kind(), e.to_string());
    for h in e.hints() {
        err = err.hint(h);
    }
    err.into()
}

async fn print_one(api: &dyn SsmApi, id: &str, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    if args.follow && args.source == Some(Source::S3) {
        return Err(UserError::new(
            ErrorKind::Usage,
            "--follow reads CloudWatch Logs as the output arrives, and --source s3 reads the object written at the end",
        )
        .hint("leave out --source to follow a session whose document streams to CloudWatch Logs")
        .into());
    }
    if args.json && args.source == Some(Source::S3) {
        return Err(UserError::new(
            ErrorKind::Usage,
            "--json prints CloudWatch Logs records, and --source s3 reads the S3 object",
        )
        .hint("leave out --json for the text, or use --raw for the bytes")
        .into());
    }
    let (summary, active) = find(api, id).await?;
    // --json prints CloudWatch records; --follow reads the stream.
    let wanted = if args.json || args.follow {
        Some(args.source.unwrap_or(Source::Cloudwatch))
    } else {
        args.source
    };
    let (location, _, transcript) = transcripts::read(
        api,
        &mut Documents::default(),
        id,
        summary.document.as_deref(),
        wanted,
        active,
    )
    .await
    .map_err(transcript_error)?;
    let raw = args.raw || (!args.text && std::io::stdout().is_terminal());
    if args.json {
        let records: Vec<serde_json::Value> = transcript
            .records
            .iter()
            .map(|r| {
                serde_json::from_str(&r.message).unwrap_or_else(
                    |_| serde_json::json!({ "timestamp": r.timestamp, "message": r.message }),
                )
            })
            .collect();
        print_out(&format!("{}\n", serde_json::to_string_pretty(&records)?))?;
    } else if args.follow {
        follow(api, id, &location, transcript, raw).await?;
    } else {
        emit(&transcript.bytes, raw)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn emit(bytes: &[u8], raw: bool) -> anyhow::Result<()> {
    if raw {
        print_bytes(bytes)
    } else {
        print_out(&transcripts::to_text(bytes))
    }
}

/// Prints what was read, then the stream's new events as they arrive: pages are read until
/// the token comes back unchanged (the end for now), then once a second while the session
/// runs; when it has ended, one last read. In text mode only complete lines are converted, so
/// a line written across two reads comes out as the terminal showed it.
async fn follow(
    api: &dyn SsmApi,
    id: &str,
    location: &Location,
    first: transcripts::Transcript,
    raw: bool,
) -> anyhow::Result<()> {
    let Some(cw) = &location.cloudwatch else {
        return emit(&first.bytes, raw);
    };
    if !cw.streaming {
        return Err(UserError::new(
            ErrorKind::Usage,
            format!("session {id} cannot be followed: its document sends the log to CloudWatch only when the session ends"),
        )
        .hint("set cloudWatchStreamingEnabled in the session document to follow sessions live")
        .into());
    }
    let mut token = first.next;
    let mut carry = Vec::new();
    let mut out = |bytes: &[u8], flush: bool| -> anyhow::Result<()> {
        if raw {
            return if bytes.is_empty() {
                Ok(())
            } else {
                print_bytes(bytes)
            };
        }
        carry.extend_from_slice(bytes);
        let end = if flush {
            Some(carry.len())
        } else {
            carry.iter().rposition(|&b| b == b'\n').map(|i| i + 1)
        };
        match end {
            Some(end) if end > 0 => {
                let done: Vec<u8> = carry.drain(..end).collect();
                print_out(&transcripts::to_text(&done))
            }
            _ => Ok(()),
        }
    };
    out(&first.bytes, false)?;
    let mut last_round = false;
    loop {
        let page = api
            .log_events(&cw.group, &cw.stream, token.as_deref())
            .await?;
        out(&transcripts::events_output(&page.events, false), false)?;
        let moved = page.next.is_some() && page.next != token;
        if page.next.is_some() {
            token = page.next;
        }
        if moved {
            continue;
        }
        if last_round {
            return out(&[], true);
        }
        if !still_running(api, id).await {
            // Whatever the agent sent before the end: one more read.
            last_round = true;
            continue;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether the session is still listed as active; when the listing fails, it may well be
/// (following goes on, Ctrl-C stops it).
async fn still_running(api: &dyn SsmApi, id: &str) -> bool {
    for owner_self in [true, false] {
        match api
            .describe_sessions(SessionState::Active, owner_self)
            .await
        {
            Ok(list) if list.iter().any(|s| s.id == id) => return true,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Prints `SESSION:LINE: text` for each transcript line containing `text`.
async fn grep(
    api: &dyn SsmApi,
    rows: &[Row],
    text: &str,
    wanted: Option<Source>,
) -> anyhow::Result<ExitCode> {
    let mut found = 0usize;
    let mut out = String::new();
    let mut failures: Vec<TranscriptError> = Vec::new();
    let mut read = 0usize;
    for r in rows {
        let fetched = match r.transcript.choose(wanted, r.active) {
            Some(source) => {
                transcripts::fetch(api, &r.session.id, &r.transcript, source, r.active).await
            }
            // Sessions that are not logged are skipped in a list, and an error for one.
            None if rows.len() > 1 => continue,
            None => Err(TranscriptError::NotLogged {
                session: r.session.id.clone(),
                document: r
                    .session
                    .document
                    .clone()
                    .unwrap_or_else(|| "(none)".to_owned()),
            }),
        };
        match fetched {
            Ok(t) => {
                read += 1;
                for (n, line) in transcripts::to_text(&t.bytes).lines().enumerate() {
                    if line.contains(text) {
                        found += 1;
                        out.push_str(&format!("{}:{}: {line}\n", r.session.id, n + 1));
                    }
                }
            }
            Err(e) => {
                eprintln!("ssmtui: skipping {}: {e}", r.session.id);
                failures.push(e);
            }
        }
    }
    print_out(&out)?;
    // Nothing could be read at all: that is the error, not "no match".
    if read == 0
        && let Some(e) = failures.into_iter().next()
    {
        return Err(transcript_error(e));
    }
    if found == 0 {
        return Err(UserError::new(
            ErrorKind::NotFound,
            format!("no transcript line contains \"{text}\""),
        )
        .hint("the search is for the exact text, case included, in the transcripts listed by `ssmtui logs` (--all for everyone's)")
        .into());
    }
    Ok(ExitCode::SUCCESS)
}
