//! `ssmtui connect TARGET`: resolve the target, start a session with the class's document and
//! pass the terminal (or pipe) through until the remote shell ends.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::Context;
use super::prompt::DocumentFlag;
use super::target::{Choice, FleetArgs, place_target, reason_for, refuse_readonly, resolve_target};
use crate::access::{self, ChosenClass, ClassOrigin};
use crate::audit::AuditLog;
use crate::aws::{AwsError, SsmApi};
use crate::engine::shell::ShellOptions;
use crate::error::{ErrorKind, UserError};
use crate::rules::validate_reason;
use crate::signals::Interrupts;

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
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Runs `connect`.
pub fn run(ctx: &Context, args: &ConnectArgs) -> anyhow::Result<ExitCode> {
    refuse_readonly(ctx.global.readonly, "connect")?;
    let escape = parse_escape(&args.escape)?;
    let reason = validate_reason(args.reason.as_deref())?;
    let mut config = ctx.load_config()?.config;
    let pinned = super::alias_pins(&config, &args.target);
    let target_text = super::expand_alias(&mut config, &args.target);
    let _log = super::start_logging(ctx);

    let runtime = super::session_runtime()?;
    let code = runtime.block_on(async {
        // With a fleet, the target decides the profile and region: the one pair whose
        // instances match.
        let mut config = config;
        let (_, spec) = place_target(ctx, &mut config, &args.fleet, &target_text, pinned).await?;
        let config = config;
        let choice = Choice {
            first: args.first,
            any: args.any,
        };
        let target = resolve_target(
            ctx,
            &config,
            &args.target,
            &spec,
            choice,
            DocumentFlag::Offered(args.document.as_deref()),
        )
        .await?;
        let document = access::shell_document(target.class(), args.document.as_deref())?;
        check_document(target.api.as_ref(), &document, target.who.class.as_ref()).await?;
        let reason = reason_for(&target, reason).await?;
        let instance = &target.instance;
        let options = ShellOptions {
            escape,
            interactive: std::io::stdin().is_terminal(),
            posix_target: instance.platform_type.as_deref() != Some("Windows"),
            quiet: false,
        };
        let launcher = target.launcher(AuditLog::from_config(&config.audit, &ctx.paths));
        // From here a signal ends the session properly instead of killing us mid-way.
        let interrupts = Interrupts::watch()?;
        let outcome = launcher
            .run_shell(instance, &document, reason, &options, &interrupts)
            .await?;
        match outcome.exit_code {
            Some(c) => Ok((c & 0xff) as u8),
            // Piped input runs framed: the script's status always comes back with the exit
            // marker, so its absence means the status is unknown, not that it was 0.
            None if options.framed() => Err(super::exec::no_status().into()),
            // A terminal session: the real agent never sends the shell's status.
            None => Ok::<u8, anyhow::Error>(0),
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
