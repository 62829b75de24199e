//! A session that has already started on the service, as the engine receives it.
//!
//! The engine never calls StartSession: `crate::launch` does (it explains denials and writes
//! the audit start line), then hands the engine a [`StartedSession`]: the data-channel target
//! and a [`Finish`] that the engine must call exactly once, with how the session ended
//! ([`Ending`]). The launcher's `Finish` writes the audit end line and calls TerminateSession
//! unless the session is already over on the service side, so whatever fails after
//! StartSession (the websocket, the handshake, a sibling forward, Ctrl-C) no session is left
//! open and none is left without its end line.
//!
//! Dropping a [`StartedSession`] without finishing it (a panic, a task aborted mid-way) still
//! finishes it, as [`EndOutcome::Interrupted`], through [`Finish::abandon`], which must not
//! block: it writes the end line and leaves TerminateSession to a background task.

use async_trait::async_trait;

use crate::aws::SessionTarget;

/// How a session ended, as far as its starter needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOutcome {
    /// The service closed the data channel (the shell exited, an idle timeout, terminated
    /// elsewhere): nothing is left to terminate.
    Exited,
    /// We terminated it (TerminateSession succeeded).
    Terminated,
    /// It failed (data channel refused or lost, handshake timeout, protocol error); it may
    /// still be open on the service.
    Failed,
    /// It was cut short locally (a signal, the program ending, the task dropped); it may still
    /// be open on the service.
    Interrupted,
}

impl EndOutcome {
    /// Whether the session may still be open on the service, so that ending it properly needs
    /// a TerminateSession call.
    pub fn may_be_open(self) -> bool {
        matches!(self, Self::Failed | Self::Interrupted)
    }
}

/// How a session ended, with what the audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The outcome.
    pub outcome: EndOutcome,
    /// Why it failed or was interrupted.
    pub detail: Option<String>,
    /// The remote exit status, when known (pipe-mode shells).
    pub exit_code: Option<i32>,
    /// Bytes sent to the target (forwards).
    pub bytes_sent: Option<u64>,
    /// Bytes received from the target (forwards).
    pub bytes_received: Option<u64>,
    /// TerminateSession already succeeded for it (an interrupted session we ended ourselves).
    pub terminated: bool,
}

impl Ending {
    /// An ending with nothing else to say.
    pub fn new(outcome: EndOutcome) -> Self {
        Self {
            outcome,
            detail: None,
            exit_code: None,
            bytes_sent: None,
            bytes_received: None,
            terminated: outcome == EndOutcome::Terminated,
        }
    }

    /// Whether ending it properly still needs a TerminateSession call.
    pub fn needs_terminate(&self) -> bool {
        self.outcome.may_be_open() && !self.terminated
    }

    /// A failure, with why.
    pub fn failed(detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Self::new(EndOutcome::Failed)
        }
    }

    /// An interruption, with what interrupted it.
    pub fn interrupted(detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Self::new(EndOutcome::Interrupted)
        }
    }

    /// With byte counts (forwards).
    #[must_use]
    pub fn with_bytes(mut self, sent: u64, received: u64) -> Self {
        self.bytes_sent = Some(sent);
        self.bytes_received = Some(received);
        self
    }
}

/// What ends a started session on the starter's side (audit end line, TerminateSession).
#[async_trait]
pub trait Finish: Send + Sync {
    /// Ends the session: called exactly once, with how it ended.
    async fn finish(self: Box<Self>, ending: Ending);

    /// Ends the session without waiting, for a session dropped unfinished; must not block.
    fn abandon(self: Box<Self>, ending: Ending);
}

/// A started session: the data channel to open and the duty to finish it.
pub struct StartedSession {
    session_id: String,
    target: Option<SessionTarget>,
    finish: Option<Box<dyn Finish>>,
}

impl std::fmt::Debug for StartedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedSession")
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl StartedSession {
    /// Wraps what StartSession returned and how to finish it.
    pub fn new(target: SessionTarget, finish: Box<dyn Finish>) -> Self {
        Self {
            session_id: target.session_id.clone(),
            target: Some(target),
            finish: Some(finish),
        }
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The data channel's URL and token, once (the token is single-use).
    pub fn take_target(&mut self) -> Option<SessionTarget> {
        self.target.take()
    }

    /// Ends the session with `ending`.
    pub async fn finish(mut self, ending: Ending) {
        if let Some(finish) = self.finish.take() {
            finish.finish(ending).await;
        }
    }
}

impl Drop for StartedSession {
    fn drop(&mut self) {
        if let Some(finish) = self.finish.take() {
            tracing::warn!(session_id = %self.session_id, "a started session was dropped without an end");
            finish.abandon(Ending::interrupted(
                "ssmtui stopped before the session ended",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::secret::Secret;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(&'static str, Ending)>>);

    struct Recorder(Arc<Seen>);

    #[async_trait]
    impl Finish for Recorder {
        async fn finish(self: Box<Self>, ending: Ending) {
            self.0.0.lock().unwrap().push(("finish", ending));
        }
        fn abandon(self: Box<Self>, ending: Ending) {
            self.0.0.lock().unwrap().push(("abandon", ending));
        }
    }

    fn started(seen: &Arc<Seen>) -> StartedSession {
        StartedSession::new(
            SessionTarget {
                session_id: "s-1".into(),
                stream_url: "wss://x".into(),
                token: Secret::new("t"),
            },
            Box::new(Recorder(Arc::clone(seen))),
        )
    }

    #[tokio::test]
    async fn finished_once_or_abandoned_when_dropped() {
        let seen = Arc::new(Seen::default());
        let mut s = started(&seen);
        assert!(s.take_target().is_some());
        assert!(s.take_target().is_none(), "the token is handed out once");
        s.finish(Ending::new(EndOutcome::Exited)).await;
        drop(started(&seen));
        let seen = seen.0.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0], ("finish", Ending::new(EndOutcome::Exited)));
        assert_eq!(seen[1].0, "abandon");
        assert_eq!(seen[1].1.outcome, EndOutcome::Interrupted);
        assert!(EndOutcome::Interrupted.may_be_open() && !EndOutcome::Exited.may_be_open());
        assert!(Ending::failed("x").needs_terminate());
        assert!(!Ending::new(EndOutcome::Terminated).needs_terminate());
        let ended_by_us = Ending {
            terminated: true,
            ..Ending::interrupted("SIGTERM")
        };
        assert!(!ended_by_us.needs_terminate());
    }
}
