//! `ssmtui proxy TARGET [PORT]`: stdin/stdout to a port on the instance, for ssh's
//! ProxyCommand.

use std::process::ExitCode;

use super::Context;
use super::prompt::DocumentFlag;
use super::target::{Choice, refuse_readonly, resolve_target};
use crate::access;
use crate::audit::{AuditLog, SessionKind};
use crate::engine::forward::{Acceptor, LocalConn};
use crate::error::{ErrorKind, UserError};
use crate::forwarding::{ForwardSpec, ForwardState};
use crate::launch::ForwardPlan;
use crate::resolve::TargetSpec;
use crate::rules::validate_reason;
use crate::signals::Interrupts;

/// Connect stdin/stdout to a port on an instance (default 22), for ssh.
///
/// Use it as ssh's ProxyCommand, e.g. `ProxyCommand ssmtui proxy %h %p` under a `Host` entry in
/// ~/.ssh/config (the README shows a full snippet). The session uses your access class's port-forwarding document; the byte stream is carried
/// through Session Manager, so no inbound port or bastion is needed.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Instance id, Name tag value, key=value tag filters, or an alias
    pub target: String,
    /// Port on the instance
    #[arg(default_value_t = 22)]
    pub port: u16,
    /// Why you connect; recorded by AWS with the session
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// With several matching instances, take the first by name
    #[arg(long, conflicts_with = "any")]
    pub first: bool,
    /// With several matching instances, take a random one
    #[arg(long)]
    pub any: bool,
}

/// Runs `proxy`.
pub fn run(ctx: &Context, args: &ProxyArgs) -> anyhow::Result<ExitCode> {
    refuse_readonly(ctx.global.readonly, "open a proxy")?;
    if args.port == 0 {
        return Err(UserError::new(ErrorKind::Usage, "the port cannot be 0")
            .hint("give the port on the instance, e.g. 22")
            .into());
    }
    let reason = validate_reason(args.reason.as_deref())?;
    let mut config = ctx.load_config()?.config;
    let target_text = super::expand_alias(&mut config, &args.target);
    let target_spec = TargetSpec::parse(&target_text)?;
    let _log = super::start_logging(ctx);
    let runtime = super::session_runtime()?;
    let result = runtime.block_on(async {
        let choice = Choice {
            first: args.first,
            any: args.any,
        };
        let target = resolve_target(
            ctx,
            &config,
            &args.target,
            &target_spec,
            choice,
            DocumentFlag::NotOffered,
        ).await?;
        let reason = super::target::reason_for(&target, reason).await?;
        let spec = ForwardSpec {
            bind: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            local_port: 0,
            host: None,
            remote_port: args.port,
        };
        let document = access::forward_document(target.class(), spec.document())?;
        let launcher = target.launcher(AuditLog::from_config(&config.audit, &ctx.paths));
        // From here a signal ends the session properly instead of killing us mid-way.
        let interrupts = Interrupts::watch()?;
        let conn = LocalConn::new(tokio::io::stdin(), tokio::io::stdout());
        let mut handle = launcher
            .forward(
                ForwardPlan {
                    kind: SessionKind::Proxy,
                    instance: target.instance.clone(),
                    spec: spec.clone(),
                    document: document.clone(),
                    reason,
                    keepalive: false,
                    sessions: 1,
                },
                Acceptor::Once(Some(conn)),
            )
            .await?;
        tokio::select! {
            () = handle.wait() => {}
            () = interrupts.token().cancelled() => {
                handle.stop().await;
                let why = interrupts.signal().map_or_else(|| "interrupted".to_owned(), |s| format!("interrupted by {s}"));
                return Err(anyhow::Error::new(UserError::new(
                    ErrorKind::Interrupted,
                    format!("{why}; the session was terminated"),
                )));
            }
        }
        let stats = handle.stats().snapshot();
        // The agent could not reach the port: the stream just closed, so without this the
        // user (or ssh) would see an unexplained end of file and exit status 0.
        if stats.connect_errors > 0 {
            return Err(anyhow::Error::new(
                UserError::new(ErrorKind::Network, spec.connect_error()).hint(
                    "check that something listens on that port on the instance (and that its firewall allows the agent)",
                ),
            ));
        }
        if let ForwardState::Failed(why) = stats.state {
            return Err(anyhow::Error::new(UserError::new(
                ErrorKind::Network,
                format!("the proxy session failed: {why}"),
            )));
        }
        Ok::<(), anyhow::Error>(())
    });
    // stdin may still be held by tokio's blocking reader; exit without waiting for it.
    runtime.shutdown_background();
    result?;
    Ok(ExitCode::SUCCESS)
}
