//! `ssmtui exec`: a command on one instance, or on every match with `--all`, through the
//! class's shell document, with the command's real exit status.
//!
//! The command runs in a framed pipe-mode session (`engine::shell::run_script`): its arguments
//! are single-quoted for `sh`, its stdin is ours when ours is not a terminal (carried as base64
//! in a here-document, so any bytes survive the remote pty) and `/dev/null` otherwise, and the
//! status printed by the shell's EXIT trap becomes ours. With `--all`, every instance is its
//! own session (its own audit lines, the same reason), at most `--parallel` at once; output
//! lines are prefixed with the instance's Name, or collected into one JSON object per instance.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::Context;
use super::prompt::{self, DocumentFlag};
use super::target::{
    Choice, FleetArgs, place_all, place_target, reason_for, refuse_readonly, resolve_all,
    resolve_target,
};
use crate::access;
use crate::audit::{AuditLog, SessionKind};
use crate::aws::Instance;
use crate::error::{ErrorKind, UserError};
use crate::launch::Launcher;
use crate::resolve::TargetSpec;
use crate::rules::validate_reason;
use crate::signals::Interrupts;

/// The exit status of `exec --all` when any instance failed.
pub const SOME_FAILED: u8 = 6;

/// Run a command on an instance (or on every match with --all) and exit with its status.
///
/// The command and its arguments come after `--`; each argument is quoted for the remote `sh`,
/// so write `-- sh -c 'ps aux | grep nginx'` for shell syntax. stdin is passed to the command
/// when it is not a terminal. The session uses your access class's shell document, with its
/// run-as user and logging, and is audited like any other.
///
/// Exit status: the command's (a signal is 128+N); with --all, 0 when every instance ran the
/// command successfully, else 6 with a summary on stderr.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Instance id, Name tag value, key=value tag filters, or an alias
    pub target: String,
    /// Run on every connectable instance the target matches, in parallel
    #[arg(long)]
    pub all: bool,
    /// With --all, how many sessions run at once
    #[arg(long, value_name = "N", default_value_t = 8, requires = "all")]
    pub parallel: usize,
    /// With --all, print output lines without the instance's Name in front
    #[arg(long, requires = "all")]
    pub no_prefix: bool,
    /// Print one JSON object per instance (id, name, status, stdout, duration_ms, error)
    #[arg(long)]
    pub json: bool,
    /// Why you run it; recorded by AWS with each session (1 to 256 characters)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Do not read stdin: the command's stdin is /dev/null (for loops that feed ssmtui a list)
    #[arg(short = 'n', long)]
    pub no_stdin: bool,
    /// With several matches (and no --all), take the first by name
    #[arg(long, conflicts_with_all = ["any", "all"])]
    pub first: bool,
    /// With several matches (and no --all), take a random one
    #[arg(long, conflicts_with = "all")]
    pub any: bool,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// What happened on one instance.
#[derive(Debug, Serialize)]
struct Result1 {
    id: String,
    name: Option<String>,
    status: Option<i32>,
    stdout: String,
    duration_ms: u64,
    error: Option<String>,
}

impl Result1 {
    fn succeeded(&self) -> bool {
        self.error.is_none() && self.status == Some(0)
    }
}

/// Runs `exec`.
pub fn run(ctx: &Context, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    refuse_readonly(ctx.global.readonly, "run commands")?;
    let reason = validate_reason(args.reason.as_deref())?;
    if args.all && args.parallel == 0 {
        return Err(
            UserError::new(ErrorKind::Usage, "--parallel must be at least 1")
                .hint("--parallel 8 is the default")
                .into(),
        );
    }
    let mut config = ctx.load_config()?.config;
    let pinned = super::alias_pins(&config, &args.target);
    let target_text = super::expand_alias(&mut config, &args.target);
    let stdin = if args.no_stdin { None } else { read_stdin()? };
    let script = build_script(&args.command, stdin.as_deref());
    let _log = super::start_logging(ctx);
    let audit = AuditLog::from_config(&config.audit, &ctx.paths);

    let runtime = super::session_runtime()?;
    runtime.block_on(async {
        if args.all {
            // Across a fleet, every pair with matches, each with its own identity and class.
            let (_, spec, configs) =
                place_all(ctx, &config, &args.fleet, &target_text, pinned).await?;
            let mut plans = Vec::new();
            // One reason for all: given, the class default, or asked once.
            let mut reason = reason;
            let mut unreachable = None;
            for config in &configs {
                let resolved =
                    resolve_all(ctx, config, &args.target, &spec, DocumentFlag::NotOffered).await;
                let (target, instances) = match resolved {
                    // Across a fleet, a pair whose matches are all unreachable is said and
                    // skipped; the others still run.
                    Err(e) if configs.len() > 1 && is_not_found(&e) => {
                        eprintln!(
                            "ssmtui: {}/{}: {e} (skipped)",
                            config.aws.profile.as_deref().unwrap_or("(default)"),
                            config.aws.region.as_deref().unwrap_or("-")
                        );
                        unreachable.get_or_insert(e);
                        continue;
                    }
                    other => other?,
                };
                let document = access::shell_document(target.class(), None)?;
                for instance in &instances {
                    reason = prompt::session_reason(
                        reason,
                        target.who.class.as_ref(),
                        instance,
                        &target.memory,
                    )
                    .await?;
                }
                plans.push((target.launcher(audit.clone()), instances, document));
            }
            if plans.is_empty()
                && let Some(e) = unreachable
            {
                return Err(e);
            }
            let interrupts = Interrupts::watch()?;
            let mut results = Vec::new();
            for (launcher, instances, document) in plans {
                if interrupts.token().is_cancelled() {
                    break;
                }
                results.extend(
                    run_all(
                        &launcher,
                        instances,
                        &document,
                        reason.clone(),
                        &script,
                        args,
                        &interrupts,
                    )
                    .await,
                );
            }
            if interrupts.token().is_cancelled() {
                // The sessions were terminated; what ran is in the audit log.
                let _ = finish_all(&results, args.json);
                return Err(UserError::new(
                    ErrorKind::Interrupted,
                    "interrupted; the sessions still running were terminated",
                )
                .hint("the audit log records each session and how it ended")
                .into());
            }
            finish_all(&results, args.json)
        } else {
            let choice = Choice {
                first: args.first,
                any: args.any,
            };
            let mut config = config;
            let (_, spec) =
                place_target(ctx, &mut config, &args.fleet, &target_text, pinned).await?;
            let ScriptTarget {
                target,
                document,
                reason,
                launcher,
            } = script_target(ctx, &config, &args.target, &spec, choice, reason, audit).await?;
            let interrupts = Interrupts::watch()?;
            if args.json {
                let result = run_one(
                    &launcher,
                    &target.instance,
                    &document,
                    reason,
                    &script,
                    None,
                    &interrupts,
                )
                .await;
                return finish_all(std::slice::from_ref(&result), true);
            }
            let mut stdout = tokio::io::stdout();
            let outcome = launcher
                .run_script(
                    SessionKind::Exec,
                    &target.instance,
                    &document,
                    reason,
                    crate::engine::shell::script_input(&script),
                    &mut stdout,
                    &interrupts,
                )
                .await?;
            match outcome.exit_code {
                Some(code) => Ok(ExitCode::from((code & 0xff) as u8)),
                None => Err(no_status().into()),
            }
        }
    })
}

/// Whether `e` says no connectable instance matched (exit 3).
fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<UserError>()
        .is_some_and(|u| u.kind() == ErrorKind::NotFound)
}

/// One POSIX instance to run a script on, with the class's shell document and the reason.
pub(super) struct ScriptTarget {
    pub(super) target: super::target::Target,
    pub(super) document: String,
    pub(super) reason: Option<String>,
    pub(super) launcher: Launcher,
}

/// Resolves `input` to one instance for `exec` or `cp`: Windows refused, the class's shell
/// document, the reason (given, default, or asked), and the launcher that audits to `audit`.
pub(super) async fn script_target(
    ctx: &Context,
    config: &crate::config::Config,
    input: &str,
    spec: &TargetSpec,
    choice: Choice,
    reason: Option<String>,
    audit: AuditLog,
) -> anyhow::Result<ScriptTarget> {
    let target = resolve_target(ctx, config, input, spec, choice, DocumentFlag::NotOffered).await?;
    refuse_windows(&target.instance)?;
    let document = access::shell_document(target.class(), None)?;
    let reason = reason_for(&target, reason).await?;
    let launcher = target.launcher(audit);
    Ok(ScriptTarget {
        target,
        document,
        reason,
        launcher,
    })
}

/// The error when a framed session (`exec`, `connect` with piped input) ends without the exit
/// marker: the status is unknown, which is not success.
pub(super) fn no_status() -> UserError {
    UserError::new(
        ErrorKind::Network,
        "the session ended before the remote exit status came back",
    )
    .hint("the target needs a POSIX sh, and the shell must not be replaced (exec) or killed; `ssmtui connect` on a terminal shows what the session prints")
}

/// `exec` needs a POSIX shell on the target.
pub(super) fn refuse_windows(instance: &Instance) -> Result<(), UserError> {
    if instance.platform_type.as_deref() == Some("Windows") {
        return Err(UserError::new(
            ErrorKind::Usage,
            format!(
                "{} is a Windows instance; exec runs commands through a POSIX sh",
                instance.label()
            ),
        )
        .hint("use `ssmtui connect` for Windows instances"));
    }
    Ok(())
}

/// stdin, read whole, when it is not a terminal.
fn read_stdin() -> anyhow::Result<Option<Vec<u8>>> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    stdin.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// `arg` single-quoted for `sh`.
pub(super) fn sh_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Longest command line sent as it is; longer ones (or ones with control characters, which
/// the remote terminal would act on) travel as base64 and run through `eval`. A terminal keeps
/// at most 4095 bytes of a line.
const PLAIN_COMMAND_MAX: usize = 1024;

/// The script a session runs: the quoted command, fed `stdin` (base64 in a here-document,
/// decoded remotely) or `/dev/null`.
pub fn build_script(command: &[String], stdin: Option<&[u8]>) -> Vec<u8> {
    let quoted = command
        .iter()
        .map(|a| sh_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut prefix = String::new();
    let cmd = if quoted.len() <= PLAIN_COMMAND_MAX && !quoted.chars().any(char::is_control) {
        quoted
    } else {
        let delim = format!("SSMTUI_CMD_{}", uuid::Uuid::new_v4().simple());
        prefix.push_str(&format!("ssmtui_cmd=$(base64 -d <<'{delim}'\n"));
        let encoded = base64::engine::general_purpose::STANDARD.encode(quoted.as_bytes());
        for line in encoded.as_bytes().chunks(76) {
            prefix.push_str(std::str::from_utf8(line).unwrap_or_default());
            prefix.push('\n');
        }
        prefix.push_str(&format!("{delim}\n)\n"));
        "eval \"$ssmtui_cmd\"".to_owned()
    };
    let mut script = prefix.into_bytes();
    script.extend(stdin_script(&cmd, stdin));
    script
}

/// `cmd` fed `stdin` or `/dev/null`.
fn stdin_script(cmd: &str, stdin: Option<&[u8]>) -> Vec<u8> {
    match stdin {
        Some(bytes) if !bytes.is_empty() => {
            // `_` is not in the base64 alphabet, so no data line can end the here-document.
            let delim = format!("SSMTUI_STDIN_{}", uuid::Uuid::new_v4().simple());
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            let mut script = format!("base64 -d <<'{delim}' | {cmd}\n").into_bytes();
            for line in encoded.as_bytes().chunks(76) {
                script.extend_from_slice(line);
                script.push(b'\n');
            }
            script.extend_from_slice(delim.as_bytes());
            script.push(b'\n');
            script
        }
        _ => format!("{cmd} </dev/null\n").into_bytes(),
    }
}

/// Runs on every instance, at most `args.parallel` at once; results by name.
async fn run_all(
    launcher: &Launcher,
    instances: Vec<Instance>,
    document: &str,
    reason: Option<String>,
    script: &[u8],
    args: &ExecArgs,
    interrupts: &Interrupts,
) -> Vec<Result1> {
    let limit = Arc::new(tokio::sync::Semaphore::new(args.parallel));
    let stdout = Arc::new(tokio::sync::Mutex::new(tokio::io::stdout()));
    let width = instances
        .iter()
        .map(|i| i.name.as_deref().unwrap_or(&i.id).chars().count())
        .max()
        .unwrap_or(0);
    let mut tasks = tokio::task::JoinSet::new();
    for instance in instances {
        let limit = Arc::clone(&limit);
        let launcher = launcher.clone();
        let document = document.to_owned();
        let reason = reason.clone();
        let script = script.to_vec();
        let interrupts = interrupts.clone();
        let lines = (!args.json).then(|| {
            let label = instance.name.clone().unwrap_or_else(|| instance.id.clone());
            let prefix = if args.no_prefix {
                String::new()
            } else {
                format!("{label:<width$} | ")
            };
            (Arc::clone(&stdout), prefix)
        });
        tasks.spawn(async move {
            // After Ctrl-C, instances still waiting for their turn are not started at all.
            let permit = tokio::select! {
                p = limit.acquire_owned() => p.ok(),
                () = interrupts.token().cancelled() => None,
            };
            if permit.is_none() || interrupts.token().is_cancelled() {
                return None;
            }
            Some(
                run_one(
                    &launcher,
                    &instance,
                    &document,
                    reason,
                    &script,
                    lines,
                    &interrupts,
                )
                .await,
            )
        });
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(result)) = done {
            results.push(result);
        }
    }
    results.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    results
}

/// Where one instance's output goes: whole lines to stdout with a prefix, or (`None`)
/// collected.
type Lines = Option<(Arc<tokio::sync::Mutex<tokio::io::Stdout>>, String)>;

/// Runs on one instance; output lines go to `lines`, or are collected into the result.
async fn run_one(
    launcher: &Launcher,
    instance: &Instance,
    document: &str,
    reason: Option<String>,
    script: &[u8],
    lines: Lines,
    interrupts: &Interrupts,
) -> Result1 {
    let started = Instant::now();
    let mut result = Result1 {
        id: instance.id.clone(),
        name: instance.name.clone(),
        status: None,
        stdout: String::new(),
        duration_ms: 0,
        error: None,
    };
    if let Err(e) = refuse_windows(instance) {
        result.error = Some(e.to_string());
        return result;
    }
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    let collect = tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(reader);
        let mut collected = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line).replace('\r', "");
            match &lines {
                Some((stdout, prefix)) => {
                    let mut out = stdout.lock().await;
                    let end = if text.ends_with('\n') { "" } else { "\n" };
                    let _ = out
                        .write_all(format!("{prefix}{text}{end}").as_bytes())
                        .await;
                    let _ = out.flush().await;
                }
                None => collected.extend_from_slice(text.as_bytes()),
            }
        }
        String::from_utf8_lossy(&collected).into_owned()
    });
    let outcome = launcher
        .run_script(
            SessionKind::Exec,
            instance,
            document,
            reason,
            crate::engine::shell::script_input(script),
            &mut writer,
            interrupts,
        )
        .await;
    drop(writer);
    result.stdout = collect.await.unwrap_or_default();
    result.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(o) => {
            result.status = o.exit_code;
            if o.exit_code.is_none() {
                result.error = Some(no_status().to_string());
            }
        }
        Err(e) => result.error = Some(crate::report::one_line(&e)),
    }
    result
}

/// Prints JSON results or the summary of failures; the exit status.
fn finish_all(results: &[Result1], json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let mut out = String::new();
        for r in results {
            out.push_str(&serde_json::to_string(r)?);
            out.push('\n');
        }
        crate::output::print_out(&out)?;
    }
    let failed: Vec<&Result1> = results.iter().filter(|r| !r.succeeded()).collect();
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if results.len() > 1 || !json {
        eprintln!("{} of {} instances failed:", failed.len(), results.len());
        for r in &failed {
            let what = match (&r.error, r.status) {
                (Some(e), _) => e.clone(),
                (None, Some(code)) => format!("exit status {code}"),
                (None, None) => "no exit status".to_owned(),
            };
            eprintln!(
                "  {:<24} {:<20} {} ({:.1} s)",
                r.name.as_deref().unwrap_or("-"),
                r.id,
                what,
                Duration::from_millis(r.duration_ms).as_secs_f64()
            );
        }
    }
    if results.len() == 1 {
        // One instance (exec --json on one target): its own status, as without --json.
        return Ok(ExitCode::from(match failed.first() {
            Some(Result1 {
                status: Some(code),
                error: None,
                ..
            }) => (*code & 0xff) as u8,
            _ => 1,
        }));
    }
    Ok(ExitCode::from(SOME_FAILED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_for_sh() {
        let cmd = ["echo", "it's", "", "$HOME", "a b"].map(str::to_owned);
        assert_eq!(
            build_script(&cmd, None),
            b"'echo' 'it'\\''s' '' '$HOME' 'a b' </dev/null\n".to_vec()
        );
    }

    #[test]
    fn long_commands_and_control_characters_travel_as_base64() {
        let long = "x".repeat(5000);
        let script =
            String::from_utf8(build_script(&["echo".to_owned(), long.clone()], None)).unwrap();
        assert!(
            script.starts_with("ssmtui_cmd=$(base64 -d <<'SSMTUI_CMD_"),
            "{script}"
        );
        assert!(
            script.lines().all(|l| l.len() < 200),
            "no long line reaches the terminal"
        );
        assert!(script.ends_with("eval \"$ssmtui_cmd\" </dev/null\n"));
        let tab = build_script(&["printf".to_owned(), "a\tb".to_owned()], None);
        assert!(String::from_utf8(tab).unwrap().contains("eval"));
    }

    #[test]
    fn stdin_travels_as_base64_in_a_here_document() {
        let input: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let script = String::from_utf8(build_script(&["wc".to_owned()], Some(&input))).unwrap();
        let mut lines = script.lines();
        let first = lines.next().unwrap();
        let delim = first
            .strip_prefix("base64 -d <<'")
            .and_then(|r| r.strip_suffix("' | 'wc'"))
            .unwrap();
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != delim).collect();
        assert!(body.iter().all(|l| l.len() <= 76 && !l.contains('_')));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(body.concat())
            .unwrap();
        assert_eq!(decoded, input);
        assert_eq!(lines.next(), None, "the delimiter ends the script");
    }
}
