//! `ssmtui connect TARGET`: resolve the target, start a session with the class's document and
//! pass the terminal (or pipe) through until the remote shell ends.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use super::{Context, prompt};
use crate::access::memory::Memory;
use crate::access::{self, ChosenClass, ClassOrigin};
use crate::audit::{AuditLog, EndStatus, SessionEnd, SessionKind, SessionStart};
use crate::aws::{AwsError, Instance, SsmApi, StartSessionRequest};
use crate::engine::shell::{self, ShellOptions};
use crate::engine::{self, CloseReason, SessionOptions};
use crate::error::{ErrorKind, UserError};
use crate::resolve::{self, Resolved, TargetSpec};

/// Open a shell on an instance.
///
/// TARGET is an alias from [aliases], an instance id (i-…, mi-…), a Name tag value, or key=value
/// tag filters ("Role=web Environment=prod"). Only running instances whose SSM agent is Online
/// count. With several matches you get a picker on a terminal; in scripts name one instance or
/// pass --first/--any.
///
/// With stdin not a terminal, the input is run as a script and the remote exit status becomes
/// ours: `echo uptime | ssmtui connect web-1`. Interactive escapes (after a newline): `~.`
/// terminates the session, `~?` lists escapes, `~~` sends a `~`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// Instance id, Name tag value, key=value tag filters, or an alias
    pub target: String,
    /// Why you connect; recorded by AWS with the session (1 to 256 characters)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Session document; only your access class's own document is accepted
    #[arg(long, value_name = "NAME")]
    pub document: Option<String>,
    /// With several matches, take the first by name
    #[arg(long, conflicts_with = "any")]
    pub first: bool,
    /// With several matches, take a random one
    #[arg(long)]
    pub any: bool,
    /// Escape character for ~. and friends, or "none"
    #[arg(long, value_name = "CHAR", default_value = "~")]
    pub escape: String,
}

/// Maximum length of a StartSession Reason.
pub const MAX_REASON: usize = 256;

/// Runs `connect`.
pub fn run(ctx: &Context, args: &ConnectArgs) -> anyhow::Result<ExitCode> {
    if ctx.global.readonly {
        return Err(UserError::new(
            ErrorKind::Usage,
            "read-only mode: sessions cannot be started",
        )
        .hint("leave out --readonly to connect")
        .into());
    }
    let escape = parse_escape(&args.escape)?;
    let reason = validate_reason(args.reason.as_deref())?;
    let mut config = ctx.load_config()?.config;
    let target_text = super::expand_alias(&mut config, &args.target);
    let spec = TargetSpec::parse(&target_text)?;
    let _log = super::start_logging(ctx);

    let runtime = super::runtime()?;
    let code = runtime.block_on(async {
        let (api, location) = super::aws_api_located(&config).await?;
        let (identity, instances) = tokio::try_join!(
            api.caller_identity(),
            list_for(api.as_ref(), &spec)
        )?;
        let memory = Memory::new(&ctx.paths.state_dir);
        let class = prompt::caller_class(
            &config,
            &memory,
            api.as_ref(),
            &identity.arn,
            args.document.as_deref(),
        )
        .await?;
        let class_ref = class.as_ref().map(ChosenClass::as_class);
        let document = access::shell_document(class_ref, args.document.as_deref())?;
        check_document(api.as_ref(), &document, class.as_ref()).await?;
        let blocked = |i: &Instance| access::out_of_scope(class_ref, i);
        let instance = match resolve::resolve(&spec, &args.target, &instances, &blocked)? {
            Resolved::One(i) => *i,
            Resolved::Many(many) => choose(&args.target, many, args.first, args.any).await?,
        };
        let reason = prompt::session_reason(reason, class.as_ref(), &instance, &memory).await?;
        let interactive = std::io::stdin().is_terminal();
        let started = api
            .start_session(&StartSessionRequest {
                target: instance.id.clone(),
                document: document.clone(),
                parameters: Default::default(),
                reason: reason.clone(),
            })
            .await
            .map_err(|e| {
                access::explain_start_denied(
                    e,
                    access::Attempt {
                        identity: &identity,
                        class: class_ref,
                        document: &document,
                        instance: &instance,
                    },
                )
            })?;
        // Fail closed: a session that cannot be audited is ended at once.
        let audit_log = AuditLog::from_config(&config.audit, &ctx.paths);
        let audit = match audit_log.start(SessionStart {
            session_id: started.session_id.clone(),
            kind: Some(SessionKind::Shell),
            identity_arn: identity.arn.clone(),
            account: identity.account.clone(),
            profile: location.profile.clone(),
            region: Some(location.region.clone()),
            class: class.as_ref().map(|c| c.name.clone()),
            document: document.clone(),
            target_id: instance.id.clone(),
            target_name: instance.name.clone(),
            reason: reason.clone(),
        }) {
            Ok(a) => a,
            Err(e) => {
                let _ = api.terminate_session(&started.session_id).await;
                return Err(anyhow::Error::new(e).context("the session was ended because it cannot be audited"));
            }
        };
        if let Some(r) = &reason
            && let Err(e) = memory.add_reason(r)
        {
            tracing::warn!(error = %e, "cannot remember the reason");
        }
        if interactive {
            eprint!(
                "connected to {} with {document}{}; session {} (~? for escapes)\r\n",
                instance.label(),
                class.as_ref().map(|c| format!(" (class {})", c.name)).unwrap_or_default(),
                started.session_id,
            );
        }
        tracing::info!(session_id = %started.session_id, target = %instance.id, %document, "shell session started");
        let session_id = started.session_id.clone();
        let options = ShellOptions {
            escape,
            interactive,
            posix_target: instance.platform_type.as_deref() != Some("Windows"),
        };
        let outcome = async {
            let (handle, mut events) =
                engine::spawn_session(Arc::clone(&api), started, SessionOptions::new(&instance.id))
                    .await?;
            shell::run(&handle, &mut events, &options).await
        }
        .await;
        let end = match &outcome {
            Ok(o) => match &o.reason {
                CloseReason::Failed(message) => SessionEnd::failed(message.clone()),
                CloseReason::Terminated => SessionEnd::new(EndStatus::Terminated),
                CloseReason::ChannelClosed { .. } | CloseReason::Detached => SessionEnd::new(EndStatus::Exited),
            },
            Err(e) => SessionEnd::failed(e.to_string()),
        };
        let end = SessionEnd {
            exit_code: outcome.as_ref().ok().and_then(|o| o.exit_code).map(i64::from),
            ..end
        };
        if outcome.is_err() {
            // The data channel never worked: do not leave the session dangling as Active.
            let _ = api.terminate_session(&session_id).await;
        }
        if let Err(e) = audit.end(end) {
            tracing::warn!(error = %e, "cannot write the end of the session to the audit log");
            eprint!("warning: {e}\r\n");
        }
        let outcome = outcome?;
        match outcome.reason {
            CloseReason::Failed(message) => Err(anyhow::Error::new(
                UserError::new(ErrorKind::Network, format!("the session failed: {message}"))
                    .hint("run `ssmtui sessions` to see whether it is still active"),
            )),
            _ => Ok(outcome.exit_code.map_or(0, |c| (c & 0xff) as u8)),
        }
    })?;
    Ok(ExitCode::from(code))
}

/// Checks that the session document exists before starting a session with it, so a class
/// pointing at a missing document is reported as the configuration problem it is. Only a
/// definite "does not exist" stops us: without ssm:GetDocument the session may still work.
async fn check_document(
    api: &dyn SsmApi,
    document: &str,
    class: Option<&ChosenClass>,
) -> anyhow::Result<()> {
    match api.get_document(document).await {
        Err(AwsError::NotFound { message, .. }) => {
            let owner = match class {
                Some(c) if c.origin == ClassOrigin::Config => {
                    format!("the {} class's session document", c.name)
                }
                Some(c) => format!("the document tagged for class {}", c.name),
                None => "the session document".to_owned(),
            };
            Err(UserError::new(
                ErrorKind::Usage,
                format!("{owner} \"{document}\" does not exist in this account and region"),
            )
            .hint(format!("AWS said: {message}"))
            .hint("check the document name in [classes] and the region (--region); `ssmtui doctor` checks every class document")
            .into())
        }
        Err(e) => {
            tracing::debug!(error = %e, %document, "cannot read the session document; trying the session anyway");
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

async fn list_for(
    api: &dyn SsmApi,
    spec: &TargetSpec,
) -> Result<Vec<Instance>, crate::aws::AwsError> {
    let narrowed = api.list_instances(&spec.server_filters()).await?;
    if narrowed.iter().any(|i| spec.matches(i)) {
        return Ok(narrowed);
    }
    // Nothing matched: fetch everything so the error can suggest the closest names.
    api.list_instances(&[]).await
}

async fn choose(
    input: &str,
    mut many: Vec<Instance>,
    first: bool,
    any: bool,
) -> anyhow::Result<Instance> {
    many.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    if first {
        return Ok(many.swap_remove(0));
    }
    if any {
        let mut buf = [0u8; 8];
        getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let n = usize::try_from(u64::from_le_bytes(buf) % many.len() as u64).unwrap_or(0);
        return Ok(many.swap_remove(n));
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(resolve::ambiguous(input, &many).into());
    }
    let prompt = format!("\"{input}\" matches {} instances", many.len());
    let picked = tokio::task::spawn_blocking(move || super::picker::pick(&prompt, &many)).await??;
    picked.ok_or_else(|| UserError::new(ErrorKind::Interrupted, "no instance chosen").into())
}

fn parse_escape(text: &str) -> Result<Option<u8>, UserError> {
    match text.as_bytes() {
        b"none" => Ok(None),
        [c] if c.is_ascii_graphic() => Ok(Some(*c)),
        _ => Err(UserError::new(
            ErrorKind::Usage,
            format!("\"{text}\" is not a usable escape character"),
        )
        .hint("give one printable ASCII character, such as ~ or %, or \"none\"")),
    }
}

/// Checks a reason against the StartSession limits.
pub fn validate_reason(reason: Option<&str>) -> Result<Option<String>, UserError> {
    match reason.map(str::trim) {
        None => Ok(None),
        Some("") => Err(UserError::new(ErrorKind::Usage, "the reason is empty")
            .hint("say why you connect, e.g. --reason \"INC-1234 disk full\"")),
        Some(r) if r.chars().count() > MAX_REASON => Err(UserError::new(
            ErrorKind::Usage,
            format!(
                "the reason is {} characters long; AWS accepts at most {MAX_REASON}",
                r.chars().count()
            ),
        )),
        Some(r) => Ok(Some(r.to_owned())),
    }
}
