//! The one place a session starts, for the CLI and the TUI alike: shells, forwards, proxies,
//! and every later kind of session.
//!
//! [`Launcher::start`] calls StartSession (an AccessDenied is explained with identity, class,
//! document and target) and writes the audit start line; the audit fails closed, so a session
//! that cannot be recorded is terminated at once. What it returns is an
//! [`engine::started::StartedSession`]: the engine runs it and must finish it, and finishing
//! is this module's guarantee — every started session ends with an audit end line and, unless
//! it is already over on the service side, a TerminateSession, whatever happened after
//! StartSession (the data channel failed, the handshake never came, the user pressed Ctrl-C,
//! a sibling forward failed, the task was dropped). [`Launcher::run_shell`] and
//! [`Launcher::forward`] build the two session kinds on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::access::{self, Who};
use crate::audit::{AuditLog, EndStatus, SessionAudit, SessionEnd, SessionKind, SessionStart};
use crate::aws::{Instance, SsmApi, StartSessionRequest};
use crate::engine::forward::{self, Acceptor, ForwardHandle, ForwardRequest, PortSessions};
use crate::engine::shell::{self, ShellOptions, ShellOutcome};
use crate::engine::started::{EndOutcome, Ending, Finish, StartedSession};
use crate::engine::{self, CloseReason, EngineEvent, SessionHandle, SessionTuning};
use crate::error::{ErrorKind, UserError};
use crate::forwarding::ForwardSpec;
use crate::signals::Interrupts;

/// The longest wait for TerminateSession when ending a session that may still be open.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// What starts sessions: the API, the audit log, and who is asking (identity, class,
/// profile, region), resolved once by the caller through `crate::access`.
#[derive(Clone)]
pub struct Launcher {
    /// The API client.
    pub api: Arc<dyn SsmApi>,
    /// Where sessions are recorded.
    pub audit: AuditLog,
    /// The caller.
    pub who: Who,
    /// How its sessions ride out lost connections.
    pub tuning: SessionTuning,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher")
            .field("audit", &self.audit)
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

/// A forward to start.
#[derive(Debug, Clone)]
pub struct ForwardPlan {
    /// Forward (a listener) or proxy (stdin/stdout).
    pub kind: SessionKind,
    /// The target.
    pub instance: Instance,
    /// What to forward.
    pub spec: ForwardSpec,
    /// The port-forwarding document (from the caller's class).
    pub document: String,
    /// Why.
    pub reason: Option<String>,
    /// Keep idle sessions alive (defeats the idle timeout; opt-in).
    pub keepalive: bool,
    /// The most sessions serving the forward at once (striping); 1 for one session.
    pub sessions: usize,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Shell, forward or proxy.
    pub kind: SessionKind,
    /// The target.
    pub instance: Instance,
    /// The document (from the caller's class).
    pub document: String,
    /// Document parameters.
    pub parameters: HashMap<String, Vec<String>>,
    /// Why.
    pub reason: Option<String>,
}

impl Launcher {
    /// StartSession plus the audit start line. The session is ended (audit end line,
    /// TerminateSession when needed) through the returned value, also when it is dropped.
    pub async fn start(&self, plan: &Plan) -> anyhow::Result<StartedSession> {
        let target = self
            .api
            .start_session(&StartSessionRequest {
                target: plan.instance.id.clone(),
                document: plan.document.clone(),
                parameters: plan.parameters.clone(),
                reason: plan.reason.clone(),
            })
            .await
            .map_err(|e| {
                access::explain_start_denied(
                    e,
                    access::Attempt {
                        identity: &self.who.identity,
                        class: self.who.class(),
                        document: &plan.document,
                        instance: &plan.instance,
                    },
                )
            })?;
        let record = SessionStart {
            session_id: target.session_id.clone(),
            kind: Some(plan.kind),
            identity_arn: self.who.identity.arn.clone(),
            account: self.who.identity.account.clone(),
            profile: self.who.profile.clone(),
            region: self.who.region.clone(),
            class: self.who.class.as_ref().map(|c| c.name.clone()),
            document: plan.document.clone(),
            target_id: plan.instance.id.clone(),
            target_name: plan.instance.name.clone(),
            reason: plan.reason.clone(),
        };
        match self.audit.start(record) {
            Ok(audit) => {
                tracing::info!(session_id = %target.session_id, target = %plan.instance.id, document = %plan.document, kind = ?plan.kind, "session started");
                let finish = AuditedEnd {
                    api: Arc::clone(&self.api),
                    session_id: target.session_id.clone(),
                    audit: Some(audit),
                    pending: None,
                };
                Ok(StartedSession::new(target, Box::new(finish)))
            }
            Err(e) => {
                let _ = terminate(self.api.as_ref(), &target.session_id).await;
                Err(anyhow::Error::new(e)
                    .context("the session was ended because it cannot be audited"))
            }
        }
    }

    /// An audited shell on `instance`: start, passthrough until the end (or until `stop`
    /// fires, which terminates it and ends with an "interrupted" error, exit 130), then the
    /// end line with the outcome.
    pub async fn run_shell(
        &self,
        instance: &Instance,
        document: &str,
        reason: Option<String>,
        options: &ShellOptions,
        stop: &Interrupts,
    ) -> anyhow::Result<ShellOutcome> {
        let plan = Plan {
            kind: SessionKind::Shell,
            instance: instance.clone(),
            document: document.to_owned(),
            parameters: HashMap::new(),
            reason,
        };
        let announce = options.interactive;
        self.shell_session(plan, announce, stop, async |handle, events| {
            shell::run(handle, events, options, stop.token()).await
        })
        .await
    }

    /// An audited script (`exec`, `cp`; `kind` says which): `script` runs in a framed shell
    /// session of the class document on a POSIX `instance`, its output goes to `out`, and the
    /// outcome carries its exit status. Ends like [`Self::run_shell`].
    #[allow(
        clippy::too_many_arguments,
        reason = "one audited session and its inputs"
    )]
    pub async fn run_script(
        &self,
        kind: SessionKind,
        instance: &Instance,
        document: &str,
        reason: Option<String>,
        input: mpsc::Receiver<Vec<u8>>,
        out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        stop: &Interrupts,
    ) -> anyhow::Result<ShellOutcome> {
        let plan = Plan {
            kind,
            instance: instance.clone(),
            document: document.to_owned(),
            parameters: HashMap::new(),
            reason,
        };
        self.shell_session(plan, false, stop, async |handle, events| {
            shell::run_script(handle, events, input, out, stop.token()).await
        })
        .await
    }

    /// Starts `plan`'s session, runs `body` on its data channel, and writes the end line with
    /// the outcome; an interrupted or failed session is an error.
    async fn shell_session(
        &self,
        plan: Plan,
        announce: bool,
        stop: &Interrupts,
        body: impl AsyncFnOnce(
            &SessionHandle,
            &mut mpsc::Receiver<EngineEvent>,
        ) -> anyhow::Result<ShellOutcome>,
    ) -> anyhow::Result<ShellOutcome> {
        let instance = &plan.instance;
        let mut started = self.start(&plan).await?;
        if announce {
            eprint!(
                "connected to {} with {}{}; session {} (~? for escapes)\r\n",
                instance.label(),
                plan.document,
                self.who
                    .class
                    .as_ref()
                    .map(|c| format!(" (class {})", c.name))
                    .unwrap_or_default(),
                started.session_id(),
            );
        }
        let outcome = async {
            let target = started
                .take_target()
                .ok_or_else(|| anyhow::anyhow!("the session had no data channel"))?;
            let (handle, mut events) = engine::spawn_session(
                Arc::clone(&self.api),
                target,
                self.tuning.options(&instance.id),
            )
            .await?;
            body(&handle, &mut events).await
        }
        .await;
        let mut ending = match &outcome {
            Ok(o) => {
                let mut ending = match &o.reason {
                    CloseReason::ChannelClosed { .. } => Ending::new(EndOutcome::Exited),
                    CloseReason::Terminated => Ending::new(EndOutcome::Terminated),
                    CloseReason::Detached => Ending::interrupted("the session was detached"),
                    CloseReason::Failed(message) => Ending::failed(message.clone()),
                };
                if o.interrupted {
                    ending = Ending {
                        outcome: EndOutcome::Interrupted,
                        detail: Some(interrupted_by(stop.signal())),
                        terminated: o.reason == CloseReason::Terminated,
                        ..ending
                    };
                }
                ending
            }
            Err(e) => Ending::failed(format!("{e:#}")),
        };
        ending.exit_code = outcome.as_ref().ok().and_then(|o| o.exit_code);
        started.finish(ending).await;
        let outcome = outcome?;
        if outcome.interrupted {
            return Err(anyhow::Error::new(
                UserError::new(
                    ErrorKind::Interrupted,
                    format!(
                        "{}; the session was terminated",
                        interrupted_by(stop.signal())
                    ),
                )
                .hint("the audit log records the session as interrupted"),
            ));
        }
        if let CloseReason::Failed(message) = &outcome.reason {
            return Err(anyhow::Error::new(
                UserError::new(ErrorKind::Network, format!("the session failed: {message}"))
                    .hint("run `ssmtui sessions` to see whether it is still active"),
            ));
        }
        Ok(outcome)
    }

    /// Starts an audited forward: its first session now (so a denial is reported now), later
    /// ones when a connection arrives after the previous session ended.
    pub async fn forward(
        &self,
        plan: ForwardPlan,
        acceptor: Acceptor,
    ) -> anyhow::Result<ForwardHandle> {
        let request = ForwardRequest {
            target: plan.instance.id.clone(),
            spec: plan.spec.clone(),
            keepalive: plan.keepalive,
            sessions: plan.sessions,
            tuning: self.tuning,
        };
        let sessions = Arc::new(PortStarter {
            launcher: self.clone(),
            spec: plan.spec,
            plan: Plan {
                kind: plan.kind,
                instance: plan.instance,
                document: plan.document,
                parameters: HashMap::new(),
                reason: plan.reason,
            },
        });
        forward::start(sessions, Arc::clone(&self.api), request, acceptor).await
    }
}

/// "interrupted by SIGTERM", or "interrupted" when no signal is known.
fn interrupted_by(signal: Option<&'static str>) -> String {
    signal.map_or_else(
        || "interrupted".to_owned(),
        |s| format!("interrupted by {s}"),
    )
}

/// The sessions of one forward: each started through the launcher with the forward's
/// parameters.
struct PortStarter {
    launcher: Launcher,
    spec: ForwardSpec,
    plan: Plan,
}

#[async_trait]
impl PortSessions for PortStarter {
    async fn start(&self, local_port: u16) -> anyhow::Result<StartedSession> {
        let mut plan = self.plan.clone();
        plan.parameters.insert(
            "portNumber".to_owned(),
            vec![self.spec.remote_port.to_string()],
        );
        plan.parameters
            .insert("localPortNumber".to_owned(), vec![local_port.to_string()]);
        if let Some(host) = &self.spec.host {
            plan.parameters
                .insert("host".to_owned(), vec![host.clone()]);
        }
        self.launcher.start(&plan).await
    }
}

/// TerminateSession, bounded in time.
async fn terminate(api: &dyn SsmApi, session_id: &str) -> Result<(), String> {
    match tokio::time::timeout(TERMINATE_TIMEOUT, api.terminate_session(session_id)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} s",
            TERMINATE_TIMEOUT.as_secs()
        )),
    }
}

/// The end of an audited session: TerminateSession when it may still be open, then the audit
/// end line. The end line is written even when the caller stops waiting during
/// TerminateSession (the future is dropped): from `Drop`, with what is known.
struct AuditedEnd {
    api: Arc<dyn SsmApi>,
    session_id: String,
    audit: Option<SessionAudit>,
    /// The ending being written, kept while TerminateSession runs.
    pending: Option<Ending>,
}

impl AuditedEnd {
    fn write(&mut self, ending: Ending, terminate_error: Option<String>) {
        let Some(audit) = self.audit.take() else {
            return;
        };
        let mut end = SessionEnd::new(match ending.outcome {
            EndOutcome::Exited => EndStatus::Exited,
            EndOutcome::Terminated => EndStatus::Terminated,
            EndOutcome::Failed => EndStatus::Failed,
            EndOutcome::Interrupted => EndStatus::Interrupted,
        });
        end.error = match (ending.detail, terminate_error) {
            (Some(d), Some(t)) => Some(format!("{d}; TerminateSession failed: {t}")),
            (None, Some(t)) => Some(format!("TerminateSession failed: {t}")),
            (d, None) => d.filter(|_| ending.outcome != EndOutcome::Exited),
        };
        end.exit_code = ending.exit_code.map(i64::from);
        end.bytes_sent = ending.bytes_sent;
        end.bytes_received = ending.bytes_received;
        if let Err(e) = audit.end(end) {
            tracing::warn!(error = %e, "cannot write the end of a session to the audit log");
            eprint!("warning: {e}\r\n");
        }
    }
}

impl Drop for AuditedEnd {
    fn drop(&mut self) {
        if let Some(ending) = self.pending.take() {
            self.write(
                ending,
                Some("ssmtui stopped before the answer came".to_owned()),
            );
        }
    }
}

#[async_trait]
impl Finish for AuditedEnd {
    async fn finish(mut self: Box<Self>, ending: Ending) {
        let terminate_error = if ending.needs_terminate() {
            self.pending = Some(ending.clone());
            let result = terminate(self.api.as_ref(), &self.session_id).await.err();
            self.pending = None;
            result
        } else {
            None
        };
        tracing::info!(session_id = %self.session_id, outcome = ?ending.outcome, "session finished");
        self.write(ending, terminate_error);
    }

    fn abandon(mut self: Box<Self>, ending: Ending) {
        if ending.needs_terminate()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let api = Arc::clone(&self.api);
            let id = self.session_id.clone();
            runtime.spawn(async move {
                if let Err(e) = terminate(api.as_ref(), &id).await {
                    tracing::warn!(session_id = %id, error = %e, "cannot terminate an abandoned session");
                }
            });
        }
        self.write(ending, None);
    }
}
