//! `ssmtui forward TARGET SPEC…`: headless port forwards until Ctrl-C.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use super::Context;
use super::prompt::DocumentFlag;
use super::target::{Choice, FleetArgs, place_target, refuse_readonly, resolve_target};
use crate::access;
use crate::audit::{AuditLog, SessionKind};
use crate::engine::forward::{self, Acceptor, ForwardHandle};
use crate::error::{ErrorKind, UserError};
use crate::forwarding::ForwardSpec;
use crate::humanize::human_bytes;
use crate::launch::ForwardPlan;
use crate::rules::validate_reason;
use crate::signals::Interrupts;

/// Forward local ports to an instance, or to hosts reachable from it, until Ctrl-C.
///
/// SPEC is like ssh -L: [BIND:]LOCAL:[HOST:]REMOTE. `8080:80` forwards local port 8080 to port
/// 80 on the instance; `5432:db.internal:5432` reaches db.internal through the instance; `0:80`
/// picks a free local port (printed). Listeners bind to 127.0.0.1 unless BIND says otherwise.
/// Many connections share one session per forward. Ctrl-C (or SIGTERM, SIGHUP) stops the
/// forwards, terminates their sessions and exits 0. If one SPEC cannot start, the forwards
/// already started are stopped too.
#[derive(Debug, clap::Args)]
pub struct ForwardArgs {
    /// Instance id, Name tag value, key=value tag filters, or an alias
    pub target: String,
    /// One or more forward specs: [BIND:]LOCAL:[HOST:]REMOTE
    #[arg(required = true, value_name = "SPEC")]
    pub specs: Vec<String>,
    /// Why you connect; recorded by AWS with each session
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// With several matching instances, take the first by name
    #[arg(long, conflicts_with = "any")]
    pub first: bool,
    /// With several matching instances, take a random one
    #[arg(long)]
    pub any: bool,
    /// Keep idle sessions alive (defeats the account's idle timeout, a security control)
    #[arg(long)]
    pub keepalive: bool,
    /// Spread connections over up to N sessions per forward, opened as connections arrive
    /// (each session is capped at about 1 MB/s by the agent); 1 to 8
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub sessions: u8,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Runs `forward`.
pub fn run(ctx: &Context, args: &ForwardArgs) -> anyhow::Result<ExitCode> {
    refuse_readonly(ctx.global.readonly, "forward ports")?;
    let specs = args
        .specs
        .iter()
        .map(|s| ForwardSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    for spec in specs.iter().filter(|s| s.exposes_beyond_loopback()) {
        eprintln!(
            "warning: {}:{} accepts connections from other machines; anyone who can reach it reaches the instance",
            spec.bind, spec.local_port
        );
    }
    let reason = validate_reason(args.reason.as_deref())?;
    let mut config = ctx.load_config()?.config;
    let pinned = super::alias_pins(&config, &args.target);
    let target_text = super::expand_alias(&mut config, &args.target);
    let _log = super::start_logging(ctx);
    let runtime = super::session_runtime()?;
    runtime.block_on(async {
        // Bind first: a port in use is reported before any AWS call.
        let mut listeners = Vec::new();
        for spec in &specs {
            listeners.push(forward::bind(spec).await?);
        }
        let choice = Choice {
            first: args.first,
            any: args.any,
        };
        let mut config = config;
        let (_, target_spec) =
            place_target(ctx, &mut config, &args.fleet, &target_text, pinned).await?;
        let config = config;
        let target = resolve_target(
            ctx,
            &config,
            &args.target,
            &target_spec,
            choice,
            DocumentFlag::NotOffered,
        )
        .await?;
        let reason = super::target::reason_for(&target, reason).await?;
        let documents = specs
            .iter()
            .map(|spec| access::forward_document(target.class(), spec.document()))
            .collect::<Result<Vec<_>, _>>()?;
        let launcher = target.launcher(AuditLog::from_config(&config.audit, &ctx.paths));
        // From here a signal stops the forwards properly instead of killing us mid-way.
        let interrupts = Interrupts::watch()?;
        let mut forwards: Vec<(ForwardSpec, ForwardHandle)> = Vec::new();
        for ((spec, listener), document) in specs.into_iter().zip(listeners).zip(documents) {
            if interrupts.token().is_cancelled() {
                // Stopped while starting: start no more; the loop below stops the others.
                break;
            }
            let started = launcher
                .forward(
                    ForwardPlan {
                        kind: SessionKind::Forward,
                        instance: target.instance.clone(),
                        spec: spec.clone(),
                        document: document.clone(),
                        reason: reason.clone(),
                        keepalive: args.keepalive,
                        sessions: usize::from(args.sessions),
                    },
                    Acceptor::Tcp(listener),
                )
                .await;
            let handle = match started {
                Ok(handle) => handle,
                Err(e) => {
                    // The forwards already running must not outlive this failure: stop them
                    // (their sessions are terminated and their audit lines closed) first.
                    for (_, running) in forwards {
                        running.stop().await;
                    }
                    return Err(e.context(format!("cannot start the forward {spec}")));
                }
            };
            if let Some(addr) = handle.local_addr() {
                println!(
                    "forwarding {addr} -> {}:{}",
                    target.instance.label(),
                    spec.remote_label()
                );
            }
            forwards.push((spec, handle));
        }
        let live = std::io::stderr().is_terminal();
        // Often enough that a refused connection is reported while the user still looks at it.
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut reported = vec![0u64; forwards.len()];
        let failed = loop {
            tokio::select! {
                () = interrupts.token().cancelled() => break None,
                _ = tick.tick() => {
                    if forwards.iter().all(|(_, h)| h.is_finished()) {
                        let why = forwards
                            .first()
                            .and_then(|(_, h)| h.stats().snapshot().last_error)
                            .unwrap_or_else(|| "every forward stopped".to_owned());
                        break Some(why);
                    }
                    let errors = connect_errors(&forwards, &mut reported);
                    if live && !errors.is_empty() {
                        eprint!("\r\x1b[K");
                    }
                    for line in errors {
                        eprintln!("{line}");
                    }
                    if live {
                        eprint!("\r\x1b[K{}", status_line(&forwards));
                    }
                }
            }
        };
        if live {
            eprintln!();
        }
        for line in connect_errors(&forwards, &mut reported) {
            eprintln!("{line}");
        }
        for (_, handle) in forwards {
            handle.stop().await;
        }
        match failed {
            Some(why) => Err(anyhow::Error::new(UserError::new(
                ErrorKind::Network,
                format!("the forwards failed: {why}"),
            ))),
            None => Ok::<(), anyhow::Error>(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One message per `ConnectToPortError` not reported yet (`reported` holds the counts already
/// shown, per forward). Without them a refused connection would just close, silently.
fn connect_errors(forwards: &[(ForwardSpec, ForwardHandle)], reported: &mut [u64]) -> Vec<String> {
    let mut lines = Vec::new();
    for ((spec, handle), seen) in forwards.iter().zip(reported.iter_mut()) {
        let now = handle.stats().snapshot().connect_errors;
        for _ in *seen..now {
            lines.push(format!(
                "error: {} (a connection to {})",
                spec.connect_error(),
                handle
                    .local_addr()
                    .map_or_else(|| spec.to_string(), |a| a.to_string())
            ));
        }
        *seen = now;
    }
    lines
}

/// One line summarising every forward: state, connections, bytes each way.
pub fn status_line(forwards: &[(ForwardSpec, ForwardHandle)]) -> String {
    forwards
        .iter()
        .map(|(spec, h)| {
            let s = h.stats().snapshot();
            format!(
                "{}: {} · {} open{} · ↑ {} ↓ {}{}",
                spec.local_port_label(h),
                s.state,
                s.connections_open,
                if s.sessions_live > 1 {
                    format!(" · {} sessions", s.sessions_live)
                } else {
                    String::new()
                },
                human_bytes(s.bytes_out),
                human_bytes(s.bytes_in),
                if s.reconnects > 0 {
                    format!(" · {} reconnects", s.reconnects)
                } else {
                    String::new()
                }
            )
        })
        .collect::<Vec<_>>()
        .join("  |  ")
}

trait LocalPortLabel {
    fn local_port_label(&self, handle: &ForwardHandle) -> String;
}

impl LocalPortLabel for ForwardSpec {
    fn local_port_label(&self, handle: &ForwardHandle) -> String {
        handle
            .local_addr()
            .map_or_else(|| self.local_port.to_string(), |a| a.port().to_string())
    }
}
