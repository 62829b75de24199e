//! The async side of a Session Manager session: one task per websocket.
//!
//! [`spawn_session`] opens the data channel for a started session and spawns a driver task that
//! alone owns the websocket and the sans-IO [`crate::protocol::Session`]. It loops on one
//! `select!` over the websocket, commands from the [`SessionHandle`], the session's next
//! deadline, KMS results, a ping timer and cancellation. Callers hold the handle (bounded
//! input channel + control commands) and a bounded receiver of [`EngineEvent`]s; when the
//! receiver is not drained, the driver stops taking events from the session, which then stops
//! acknowledging, so a slow consumer slows the sender instead of growing memory.
//!
//! When the websocket drops, the driver calls ResumeSession for a fresh token, reopens the
//! original stream URL with exponential backoff (for as long as the session lives, or [`SessionOptions::resume_for`])
//! and lets the session retransmit what was not acknowledged; sequence numbers make delivery
//! exactly-once. A session that is gone (empty token, not found, access denied) ends with a
//! clear reason instead of retrying.

pub mod driver;
pub mod forward;
pub mod runtime;
pub mod shell;
pub mod started;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::aws::{AwsError, SessionTarget, SsmApi};
use crate::error::{Classified, Classify, ErrorKind};
use crate::protocol::{Flag, ProtocolError, SessionType};

/// Environment variable: `multi-thread` runs the session commands (`connect`, `forward`,
/// `proxy`, `exec`, `cp`) on the two-worker runtime instead of one thread, to compare the two
/// ([`runtime::session_runtime`], bench `paced`).
pub const ENV_RUNTIME: &str = "SSMTUI_RUNTIME";

/// Tunables of a session driver.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The instance id (KMS encryption context `aws:ssm:TargetId`).
    pub target_id: String,
    /// Keep resuming a lost connection for this long; `None`: for as long as the service says
    /// the session exists (ResumeSession answers with a token). A session that is gone,
    /// terminated or denied ends the attempts at once either way.
    pub resume_for: Option<Duration>,
    /// A connection whose peer has answered a ping before and has now sent nothing at all
    /// (no data, no pong) for this long is dead — a laptop that slept, a Wi-Fi change — and is
    /// resumed. Peers that never answer pings are judged by unacknowledged data only.
    pub dead_after: Duration,
    /// Tell the user when the peer has been silent this long while data is unacknowledged.
    pub stall_warning: Duration,
    /// Websocket ping interval (keeps NATs and proxies from dropping an idle connection).
    pub ping_interval: Duration,
    /// The longest a websocket write may take before the connection counts as dropped.
    pub write_timeout: Duration,
    /// Capacity of the event channel, in events.
    pub event_capacity: usize,
    /// The `ClientVersion` reported to the agent instead of ours (interop tests: the agent
    /// keys smux and keepalive choices on it).
    pub client_version: Option<String>,
}

/// The user's say in how sessions ride out lost connections (`[sessions]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTuning {
    /// [`SessionOptions::resume_for`].
    pub resume_for: Option<Duration>,
    /// The ping interval; a path is dead after 2.5 intervals of silence.
    pub keepalive: Duration,
}

impl Default for SessionTuning {
    fn default() -> Self {
        Self {
            resume_for: None,
            keepalive: Duration::from_secs(30),
        }
    }
}

impl SessionTuning {
    /// Options for a session to `target_id`, tuned.
    pub fn options(&self, target_id: &str) -> SessionOptions {
        SessionOptions {
            resume_for: self.resume_for,
            ping_interval: self.keepalive,
            dead_after: self.keepalive * 5 / 2,
            ..SessionOptions::new(target_id)
        }
    }
}

impl SessionOptions {
    /// Defaults for a session to `target_id`.
    pub fn new(target_id: &str) -> Self {
        Self {
            target_id: target_id.to_owned(),
            resume_for: None,
            stall_warning: Duration::from_secs(15),
            ping_interval: Duration::from_secs(30),
            dead_after: Duration::from_secs(75),
            write_timeout: Duration::from_secs(30),
            event_capacity: 64,
            client_version: None,
        }
    }
}

/// What the driver reports.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// The agent's handshake request arrived (port sessions use it to pick basic vs mux mode).
    HandshakeRequested {
        /// Agent version.
        agent_version: String,
        /// Session type requested.
        session_type: SessionType,
        /// Port sessions: the document's properties.
        properties: serde_json::Value,
    },
    /// Data may flow.
    Ready {
        /// The session type.
        session_type: SessionType,
        /// Message for the user (e.g. "This session is encrypted using AWS KMS."), may be empty.
        customer_message: String,
        /// Whether the session is KMS-encrypted.
        encrypted: bool,
    },
    /// Output (shell stdout or port data).
    Output(Vec<u8>),
    /// Standard error (NonInteractiveCommands).
    StdErr(Vec<u8>),
    /// Exit code of the remote command, when the agent sends one.
    ExitCode(i32),
    /// A Flag from the agent (e.g. ConnectToPortError).
    Flag(Flag),
    /// The websocket dropped; reconnecting (attempt counts from 1).
    Reconnecting {
        /// Attempt number.
        attempt: u32,
        /// Why the connection was lost.
        reason: String,
    },
    /// Reconnected to the same session; nothing was lost.
    Reconnected {
        /// How many reconnects this session has had.
        total: u32,
    },
    /// The peer has been silent while our data waits for acknowledgement.
    Stalled {
        /// For how long.
        silent_for: Duration,
    },
    /// The service paused / resumed publication (the agent's side dropped and came back).
    Paused(bool),
    /// The session is over; nothing follows.
    Closed(CloseReason),
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CloseReason {
    /// The service closed the channel (shell exited, terminated elsewhere, timeout).
    ChannelClosed {
        /// The service's message, may be empty.
        output: String,
    },
    /// We terminated it (`~.` or a Terminate command).
    Terminated,
    /// The handle asked the driver to stop without terminating.
    Detached,
    /// It failed.
    Failed(String),
}

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The stream URL is unusable.
    #[error("{0}")]
    BadStreamUrl(String),
    /// The websocket could not be opened.
    #[error("cannot open the session's data channel: {0}")]
    Connect(String),
    /// The path to the data channel failed: a proxy, or a certificate we do not trust.
    #[error("cannot open the session's data channel: {0}")]
    Net(#[from] crate::net::NetError),
    /// An AWS call the session needed failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The session no longer exists on the service side.
    #[error("the session has ended on the service side (timed out or terminated)")]
    SessionGone,
    /// Reconnecting did not succeed in time.
    #[error("the connection was lost and could not be re-established within {0} s")]
    ReconnectExhausted(u64),
    /// The data channel protocol failed.
    #[error("data channel protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The driver task is gone.
    #[error("the session has already ended")]
    Ended,
}

impl Classify for EngineError {
    fn classified(&self) -> Classified {
        Classified::new(self.kind(), self.hints())
    }
}

impl EngineError {
    /// Exit-code class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Aws(e) => e.kind(),
            Self::Net(e) => e.classified().kind.unwrap_or(ErrorKind::Network),
            Self::BadStreamUrl(_) | Self::Protocol(_) => ErrorKind::Internal,
            _ => ErrorKind::Network,
        }
    }

    /// Hints for the user.
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Aws(e) => e.hints(),
            Self::Net(e) => e.hints(),
            Self::Connect(_) | Self::ReconnectExhausted(_) => vec![
                "check the network path to ssmmessages.<region>.amazonaws.com (HTTPS, port 443)"
                    .to_owned(),
            ],
            Self::SessionGone => vec![
                "the account's idle timeout or maximum session duration may have ended it; start a new session"
                    .to_owned(),
            ],
            _ => Vec::new(),
        }
    }
}

/// What goes into a session in order: data and flags share one channel, because a flag's
/// meaning depends on its place in the stream (DisconnectToPort ends the previous
/// connection's bytes; TerminateSession comes after the last ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputItem {
    /// Bytes (keystrokes, port data).
    Data(Vec<u8>),
    /// A Flag (DisconnectToPort, TerminateSession).
    Flag(Flag),
    /// A terminal size (ordered too: commands typed after a resize run at the new size).
    Resize {
        /// Columns.
        cols: u32,
        /// Rows.
        rows: u32,
    },
}

/// Control commands for the driver (not ordered with data).
#[derive(Debug)]
pub enum SessionCommand {
    /// Basic port mode: whether a local connection exists to take agent output.
    ReceiveReady(bool),
    /// Call TerminateSession and end.
    Terminate,
    /// End the driver without terminating the session (it stays resumable until it times out).
    Detach,
}

/// The caller's side of a running session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    session_id: String,
    input: mpsc::Sender<InputItem>,
    commands: mpsc::Sender<SessionCommand>,
    cancel: CancellationToken,
}

impl SessionHandle {
    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Sends bytes (keystrokes, port data); waits while the session pushes back.
    pub async fn send(&self, data: Vec<u8>) -> Result<(), EngineError> {
        self.input
            .send(InputItem::Data(data))
            .await
            .map_err(|_| EngineError::Ended)
    }

    /// Sends a Flag, ordered after everything sent before it.
    pub async fn send_flag(&self, flag: Flag) -> Result<(), EngineError> {
        self.input
            .send(InputItem::Flag(flag))
            .await
            .map_err(|_| EngineError::Ended)
    }

    /// Sends a terminal size, ordered with the data.
    pub async fn resize(&self, cols: u32, rows: u32) -> Result<(), EngineError> {
        self.input
            .send(InputItem::Resize { cols, rows })
            .await
            .map_err(|_| EngineError::Ended)
    }

    /// A clone of the input sender, for callers that select on `reserve_owned` instead of
    /// awaiting [`Self::send`] (the forwarder must keep reading events while it waits).
    pub fn input_sender(&self) -> mpsc::Sender<InputItem> {
        self.input.clone()
    }

    /// Sends a control command.
    pub async fn command(&self, cmd: SessionCommand) -> Result<(), EngineError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| EngineError::Ended)
    }

    /// Stops the driver at once (the session is left to time out on the service side).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// Opens the data channel of a started session and spawns its driver.
///
/// The first connection is made before returning, so a bad URL or an unreachable endpoint is
/// reported here rather than as an event.
pub async fn spawn_session(
    api: Arc<dyn SsmApi>,
    target: SessionTarget,
    options: SessionOptions,
) -> Result<(SessionHandle, mpsc::Receiver<EngineEvent>), EngineError> {
    let (input_tx, input_rx) = mpsc::channel(16);
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (event_tx, event_rx) = mpsc::channel(options.event_capacity.max(1));
    let cancel = CancellationToken::new();
    let handle = SessionHandle {
        session_id: target.session_id.clone(),
        input: input_tx,
        commands: cmd_tx,
        cancel: cancel.clone(),
    };
    let driver = driver::Driver::connect(
        api,
        target,
        options,
        driver::Channels {
            input: input_rx,
            commands: cmd_rx,
            events: event_tx,
            cancel,
        },
    )
    .await?;
    tokio::spawn(driver.run());
    Ok((handle, event_rx))
}
