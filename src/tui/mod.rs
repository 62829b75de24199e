//! Terminal ownership and the runtime loop around the pure [`crate::app`].
//!
//! [`terminal`] owns raw mode and the alternate screen (restored on drop and on panic);
//! [`events`] turns terminal input into keys and can be stopped so a shell gets the keyboard;
//! [`runtime`] runs the one loop that applies actions, performs effects and renders. Shells are
//! opened through [`ShellLauncher`], so the runtime does not depend on the session engine: the
//! engine's launcher plugs in here, and [`CommandLauncher`] runs a local command for tests.

pub mod events;
pub mod runtime;
pub mod terminal;

use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;

use crate::access::Who;
use crate::audit::AuditLog;
use crate::aws::{Instance, SsmApi};
use crate::launch::Launcher;
use crate::signals::Interrupts;

/// How a shell ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellOutcome {
    /// The remote (or local) exit status, when known.
    pub exit_code: Option<i32>,
}

/// Runs an interactive shell on the real stdin/stdout. The runtime has already left the
/// alternate screen and raw mode and stopped reading input when this is called; the launcher
/// owns the terminal until it returns (setting raw mode itself if it needs it, and restoring
/// it before returning).
#[async_trait]
pub trait ShellLauncher: Send + Sync {
    /// Runs a shell on `target` with the session `document` and the user's `reason` for `who`
    /// (the app's caller and class, which the audit log records), until it ends or `stop`
    /// fires (SIGTERM, SIGHUP).
    async fn run_shell(
        &self,
        api: Arc<dyn SsmApi>,
        who: &Who,
        target: &Instance,
        document: &str,
        reason: Option<String>,
        stop: &Interrupts,
    ) -> anyhow::Result<ShellOutcome>;
}

/// Environment variable naming a local command that [`CommandLauncher`] runs instead of a
/// remote shell. Developer aid: honoured only together with `SSMTUI_FAKE_WORLD`, so it can
/// never stand in for a real session (and it never talks to AWS).
pub const ENV_TEST_SHELL: &str = "SSMTUI_TEST_SHELL_COMMAND";

/// Runs `sh -c COMMAND` on the terminal in place of a remote shell, with `SSMTUI_TARGET`,
/// `SSMTUI_DOCUMENT`, `SSMTUI_REASON` and `SSMTUI_CLASS` in its environment. For tests and
/// manual testing of the takeover; it does not contact AWS.
#[derive(Debug, Clone)]
pub struct CommandLauncher {
    command: String,
}

impl CommandLauncher {
    /// A launcher for this shell command line.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
        }
    }
}

#[async_trait]
impl ShellLauncher for CommandLauncher {
    async fn run_shell(
        &self,
        _api: Arc<dyn SsmApi>,
        who: &Who,
        target: &Instance,
        document: &str,
        reason: Option<String>,
        stop: &Interrupts,
    ) -> anyhow::Result<ShellOutcome> {
        // The child shares our process group, so a Ctrl-C typed in it (cooked mode) is
        // delivered to ssmtui too; catching SIGINT here keeps the TUI alive underneath.
        let mut interrupts =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .env("SSMTUI_TARGET", &target.id)
            .env("SSMTUI_DOCUMENT", document)
            .env("SSMTUI_REASON", reason.unwrap_or_default())
            .env(
                "SSMTUI_CLASS",
                who.class
                    .as_ref()
                    .map(|c| c.name.as_str())
                    .unwrap_or_default(),
            )
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        loop {
            tokio::select! {
                status = child.wait() => {
                    return Ok(ShellOutcome { exit_code: status?.code() });
                }
                () = stop.token().cancelled() => {
                    let _ = child.kill().await;
                    anyhow::bail!("the shell was stopped");
                }
                _ = interrupts.recv() => {}
            }
        }
    }
}

/// Opens real Session Manager shells through [`crate::launch`]: StartSession with the class's
/// document, the audit start/end lines, and the same passthrough `ssmtui connect` uses
/// (escapes, resize, raw mode).
#[derive(Debug, Clone)]
pub struct EngineLauncher {
    audit: AuditLog,
    tuning: crate::engine::SessionTuning,
}

impl EngineLauncher {
    /// A launcher recording its sessions in `audit`, its sessions tuned by `tuning`.
    pub fn new(audit: AuditLog, tuning: crate::engine::SessionTuning) -> Self {
        Self { audit, tuning }
    }
}

#[async_trait]
impl ShellLauncher for EngineLauncher {
    async fn run_shell(
        &self,
        api: Arc<dyn SsmApi>,
        who: &Who,
        target: &Instance,
        document: &str,
        reason: Option<String>,
        stop: &Interrupts,
    ) -> anyhow::Result<ShellOutcome> {
        let options = crate::engine::shell::ShellOptions {
            escape: Some(b'~'),
            interactive: true,
            posix_target: target.platform_type.as_deref() != Some("Windows"),
            quiet: false,
        };
        let launcher = Launcher {
            api,
            audit: self.audit.clone(),
            who: who.clone(),
            tuning: self.tuning,
        };
        let outcome = launcher
            .run_shell(target, document, reason, &options, stop)
            .await?;
        Ok(ShellOutcome {
            exit_code: outcome.exit_code,
        })
    }
}
