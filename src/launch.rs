//! Starting sessions the audited way, shared by `connect`, `forward`, `proxy` and the TUI.
//!
//! Every session goes through [`start_audited`]: StartSession (an AccessDenied is explained
//! with identity, class, document and target), then the audit start line. The audit fails
//! closed: a session that cannot be recorded is terminated at once. [`run_shell`] adds the
//! engine and the passthrough and writes the end line with the outcome.

use std::collections::HashMap;
use std::sync::Arc;

use crate::access::{self, ChosenClass};
use crate::audit::{AuditLog, EndStatus, SessionAudit, SessionEnd, SessionKind, SessionStart};
use crate::aws::{Identity, Instance, SessionTarget, SsmApi, StartSessionRequest};
use crate::engine::shell::{self, ShellOptions, ShellOutcome};
use crate::engine::{self, CloseReason, SessionOptions};
use crate::error::{ErrorKind, UserError};

/// Who is starting sessions, and from where (the five Ws' who and where).
#[derive(Debug, Clone)]
pub struct Who {
    /// The caller.
    pub identity: Identity,
    /// The caller's class.
    pub class: Option<ChosenClass>,
    /// The profile, if named.
    pub profile: Option<String>,
    /// The region.
    pub region: Option<String>,
}

/// What the interactive UI needs to audit sessions: the log and the config (for the class).
#[derive(Debug, Clone)]
pub struct AuditContext {
    /// Where records go.
    pub log: AuditLog,
    /// The configuration, for class membership.
    pub config: crate::config::Config,
}

impl AuditContext {
    /// Who is calling through `api`, with their configured class.
    pub async fn who(&self, api: &dyn SsmApi) -> anyhow::Result<Who> {
        let identity = api.caller_identity().await?;
        let class = access::class_for(&self.config, &identity.arn)?.map(ChosenClass::from_config);
        let (profile, region) = api.location();
        Ok(Who {
            identity,
            class,
            profile,
            region,
        })
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Start<'a> {
    /// Shell, forward or proxy.
    pub kind: SessionKind,
    /// The target.
    pub instance: &'a Instance,
    /// The document.
    pub document: &'a str,
    /// Document parameters.
    pub parameters: HashMap<String, Vec<String>>,
    /// Why.
    pub reason: Option<String>,
}

/// StartSession plus the audit start line; terminates the session if it cannot be audited.
pub async fn start_audited(
    api: &dyn SsmApi,
    audit: &AuditLog,
    who: &Who,
    start: Start<'_>,
) -> anyhow::Result<(SessionTarget, SessionAudit)> {
    let class_ref = who.class.as_ref().map(ChosenClass::as_class);
    let started = api
        .start_session(&StartSessionRequest {
            target: start.instance.id.clone(),
            document: start.document.to_owned(),
            parameters: start.parameters,
            reason: start.reason.clone(),
        })
        .await
        .map_err(|e| {
            access::explain_start_denied(
                e,
                access::Attempt {
                    identity: &who.identity,
                    class: class_ref,
                    document: start.document,
                    instance: start.instance,
                },
            )
        })?;
    let record = SessionStart {
        session_id: started.session_id.clone(),
        kind: Some(start.kind),
        identity_arn: who.identity.arn.clone(),
        account: who.identity.account.clone(),
        profile: who.profile.clone(),
        region: who.region.clone(),
        class: who.class.as_ref().map(|c| c.name.clone()),
        document: start.document.to_owned(),
        target_id: start.instance.id.clone(),
        target_name: start.instance.name.clone(),
        reason: start.reason,
    };
    match audit.start(record) {
        Ok(a) => {
            tracing::info!(session_id = %started.session_id, target = %start.instance.id, document = start.document, kind = ?start.kind, "session started");
            Ok((started, a))
        }
        Err(e) => {
            let _ = api.terminate_session(&started.session_id).await;
            Err(anyhow::Error::new(e).context("the session was ended because it cannot be audited"))
        }
    }
}

/// An audited shell: start, passthrough until the end, end line with the outcome.
pub async fn run_shell(
    api: Arc<dyn SsmApi>,
    audit: &AuditLog,
    who: &Who,
    instance: &Instance,
    document: &str,
    reason: Option<String>,
    options: &ShellOptions,
) -> anyhow::Result<ShellOutcome> {
    let start = Start {
        kind: SessionKind::Shell,
        instance,
        document,
        parameters: HashMap::new(),
        reason,
    };
    let (started, record) = start_audited(api.as_ref(), audit, who, start).await?;
    if options.interactive {
        eprint!(
            "connected to {} with {document}{}; session {} (~? for escapes)\r\n",
            instance.label(),
            who.class
                .as_ref()
                .map(|c| format!(" (class {})", c.name))
                .unwrap_or_default(),
            started.session_id,
        );
    }
    let session_id = started.session_id.clone();
    let outcome = async {
        let (handle, mut events) =
            engine::spawn_session(Arc::clone(&api), started, SessionOptions::new(&instance.id))
                .await?;
        shell::run(&handle, &mut events, options).await
    }
    .await;
    let mut end = match &outcome {
        Ok(o) => match &o.reason {
            CloseReason::Failed(message) => SessionEnd::failed(message.clone()),
            CloseReason::Terminated => SessionEnd::new(EndStatus::Terminated),
            CloseReason::ChannelClosed { .. } | CloseReason::Detached => {
                SessionEnd::new(EndStatus::Exited)
            }
        },
        Err(e) => SessionEnd::failed(format!("{e:#}")),
    };
    end.exit_code = outcome
        .as_ref()
        .ok()
        .and_then(|o| o.exit_code)
        .map(i64::from);
    if outcome.is_err() {
        // The data channel never worked: do not leave the session dangling as Active.
        let _ = api.terminate_session(&session_id).await;
    }
    if let Err(e) = record.end(end) {
        tracing::warn!(error = %e, "cannot write the end of the session to the audit log");
        eprint!("warning: {e}\r\n");
    }
    let outcome = outcome?;
    if let CloseReason::Failed(message) = &outcome.reason {
        return Err(anyhow::Error::new(
            UserError::new(ErrorKind::Network, format!("the session failed: {message}"))
                .hint("run `ssmtui sessions` to see whether it is still active"),
        ));
    }
    Ok(outcome)
}

/// Audit records for the sessions of one forward (or proxy): a start line when each session
/// starts, an end line with the bytes it moved when it ends.
pub struct ForwardAuditLog {
    log: AuditLog,
    who: Who,
    kind: SessionKind,
    instance: Instance,
    document: String,
    reason: Option<String>,
    open: std::sync::Mutex<HashMap<String, SessionAudit>>,
}

impl ForwardAuditLog {
    /// Records sessions of `kind` to `instance` with `document`.
    pub fn new(
        log: AuditLog,
        who: Who,
        kind: SessionKind,
        instance: Instance,
        document: String,
        reason: Option<String>,
    ) -> Self {
        Self {
            log,
            who,
            kind,
            instance,
            document,
            reason,
            open: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl engine::forward::ForwardAudit for ForwardAuditLog {
    fn started(&self, session_id: &str) -> Result<(), String> {
        let record = self
            .log
            .start(SessionStart {
                session_id: session_id.to_owned(),
                kind: Some(self.kind),
                identity_arn: self.who.identity.arn.clone(),
                account: self.who.identity.account.clone(),
                profile: self.who.profile.clone(),
                region: self.who.region.clone(),
                class: self.who.class.as_ref().map(|c| c.name.clone()),
                document: self.document.clone(),
                target_id: self.instance.id.clone(),
                target_name: self.instance.name.clone(),
                reason: self.reason.clone(),
            })
            .map_err(|e| e.to_string())?;
        if let Ok(mut open) = self.open.lock() {
            open.insert(session_id.to_owned(), record);
        }
        Ok(())
    }

    fn ended(&self, session_id: &str, error: Option<&str>, bytes_sent: u64, bytes_received: u64) {
        let Some(record) = self.open.lock().ok().and_then(|mut o| o.remove(session_id)) else {
            return;
        };
        let mut end = match error {
            Some(why) => SessionEnd::failed(why),
            None => SessionEnd::new(EndStatus::Terminated),
        };
        end.bytes_sent = Some(bytes_sent);
        end.bytes_received = Some(bytes_received);
        if let Err(e) = record.end(end) {
            tracing::warn!(error = %e, "cannot write the end of a forward session to the audit log");
        }
    }
}
