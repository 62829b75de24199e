//! Port forwarding: a local listener (or stdin/stdout for `ssmtui proxy`) bridged to a port on
//! the instance, or on a host behind it, through one Session Manager Port session.
//!
//! The listener is bound before any AWS call, so a port in use is reported at once. One session
//! serves a forward. Its mode follows the agent's version exactly as the plugin decides it
//! (`protocol::version::client_port_mode`), because the agent decides on its own and both must
//! agree:
//!
//! * **mux** (smux v1): every accepted connection is its own stream, so many parallel
//!   connections share the session. Each connection has a reader task that writes into the mux
//!   only as far as that stream's send buffer has room (a slow upload slows only its stream),
//!   and a writer task fed through a bounded channel. smux v1 has no per-stream receive window:
//!   when one local client stops reading and its channel is full, the whole session waits for
//!   it. That is the protocol's limit, documented rather than hidden by unbounded buffering.
//! * **basic** (old agents): one connection at a time; when it closes we send the
//!   `DisconnectToPort` flag and drop what the agent still sends for it until the agent has
//!   been silent a moment, so the next connection gets none of the previous one's bytes.
//!
//! Websocket drops are absorbed by the engine (ResumeSession, exactly-once delivery), so open
//! streams survive them. If the session itself ends (idle timeout, terminated), open
//! connections are closed, the listener stays up, and a new session is started only when the
//! next connection arrives — starting one eagerly would defeat the account's idle timeout,
//! which is a security control. The opt-in `keepalive` turns smux keepalives on, which keeps
//! an idle session alive: that trade-off is the user's to make, per forward.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    CloseReason, EngineError, EngineEvent, InputItem, SessionCommand, SessionHandle, SessionOptions,
};
use crate::aws::{SsmApi, StartSessionRequest};
use crate::error::{ErrorKind, UserError};
use crate::protocol::Flag;
use crate::protocol::mux::{Mux, MuxConfig, MuxEvent, Role, StreamId};
use crate::protocol::version::{self, PortMode};

/// Mux mode: smux bytes taken from the streams ahead of the session's input channel. Small,
/// so that bytes wait in the per-stream send buffers (bounded, fair) rather than here.
const OUTQ_BYTES: usize = 32 * 1024;
/// Mux mode: the most smux bytes per input item. Several frames per item: each item costs a
/// channel hop and a turn of the driver's loop, whatever its size.
const INPUT_ITEM: usize = 16 * 1024;
/// Mux mode: most bytes gathered into one write to a local connection.
const LOCAL_WRITE_BATCH: usize = 64 * 1024;
/// Mux mode: most session events handled per loop turn.
const EVENT_BATCH: usize = 64;
/// `proxy`: the longest wait for the last bytes to be written to stdout after the stream closed.
const PROXY_FLUSH_MAX: Duration = Duration::from_secs(60);
/// The longest wait for a terminated session's driver to confirm the end.
const TERMINATE_WAIT: Duration = Duration::from_secs(10);
/// Basic mode: how long the agent must be silent after `DisconnectToPort` before the next
/// connection is served (see `Runner::settle_basic`).
const BASIC_SETTLE_QUIET: Duration = Duration::from_millis(250);
/// Basic mode: the longest wait for that silence (a target that never stops talking while the
/// flag is slow to arrive).
const BASIC_SETTLE_MAX: Duration = Duration::from_secs(5);

/// The AWS document forwarding to a port on the instance itself.
pub const DOC_PORT: &str = "AWS-StartPortForwardingSession";
/// The AWS document forwarding to a host reached through the instance.
pub const DOC_REMOTE_HOST: &str = "AWS-StartPortForwardingSessionToRemoteHost";

/// `[BIND:]LOCAL:[HOST:]REMOTE`, like ssh `-L`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Local address to listen on (default 127.0.0.1).
    pub bind: IpAddr,
    /// Local port; 0 picks a free one.
    pub local_port: u16,
    /// Host behind the instance; `None` means the instance itself.
    pub host: Option<String>,
    /// Remote port.
    pub remote_port: u16,
}

impl ForwardSpec {
    /// Parses a spec. Forms: `L:R`, `L:HOST:R`, `BIND:L:R`, `BIND:L:HOST:R`; an IPv6 BIND is
    /// written in brackets (`[::1]:8080:80`).
    pub fn parse(text: &str) -> Result<Self, UserError> {
        let bad = |why: &str| {
            UserError::new(
                ErrorKind::Usage,
                format!("\"{text}\" is not a forward spec: {why}"),
            )
            .hint("write [BIND:]LOCAL:[HOST:]REMOTE, e.g. 8080:80, 5432:db.internal:5432 or 0:22")
        };
        let (bind, rest): (Option<IpAddr>, &str) = if let Some(after) = text.strip_prefix('[') {
            let (addr, rest) = after
                .split_once("]:")
                .ok_or_else(|| bad("unclosed [address]"))?;
            let ip = addr
                .parse()
                .map_err(|_| bad("the bind address is not an IP address"))?;
            (Some(ip), rest)
        } else {
            (None, text)
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let port = |s: &str, what: &str| -> Result<u16, UserError> {
            s.parse::<u16>().map_err(|_| {
                bad(&format!(
                    "the {what} port \"{s}\" is not a number from 0 to 65535"
                ))
            })
        };
        let (bind, local, host, remote) = match (bind, parts.as_slice()) {
            (b, [l, r]) => (b, port(l, "local")?, None, port(r, "remote")?),
            (None, [a, b, c]) => match (a.parse::<IpAddr>(), b.parse::<u16>()) {
                // BIND:LOCAL:REMOTE when the first part is an address and the second a port.
                (Ok(ip), Ok(l)) if !a.chars().all(|c| c.is_ascii_digit()) => {
                    (Some(ip), l, None, port(c, "remote")?)
                }
                _ => (
                    None,
                    port(a, "local")?,
                    Some((*b).to_owned()),
                    port(c, "remote")?,
                ),
            },
            (Some(b), [l, h, r]) => (
                Some(b),
                port(l, "local")?,
                Some((*h).to_owned()),
                port(r, "remote")?,
            ),
            (None, [b, l, h, r]) => (
                Some(
                    b.parse()
                        .map_err(|_| bad("the bind address is not an IP address"))?,
                ),
                port(l, "local")?,
                Some((*h).to_owned()),
                port(r, "remote")?,
            ),
            _ => return Err(bad("wrong number of parts")),
        };
        if remote == 0 {
            return Err(bad("the remote port cannot be 0"));
        }
        if host.as_deref().is_some_and(str::is_empty) {
            return Err(bad("the host is empty"));
        }
        Ok(Self {
            bind: bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            local_port: local,
            host,
            remote_port: remote,
        })
    }

    /// The AWS document this spec needs.
    pub fn document(&self) -> &'static str {
        if self.host.is_some() {
            DOC_REMOTE_HOST
        } else {
            DOC_PORT
        }
    }

    /// `host:port` or `port` (the instance itself), for messages.
    pub fn remote_label(&self) -> String {
        match &self.host {
            Some(h) => format!("{h}:{}", self.remote_port),
            None => self.remote_port.to_string(),
        }
    }

    /// What to tell the user when the agent reports `ConnectToPortError` for this spec.
    pub fn connect_error(&self) -> String {
        match &self.host {
            Some(h) => format!("the agent could not connect to {h}:{}", self.remote_port),
            None => format!(
                "the agent could not connect to port {} on the instance",
                self.remote_port
            ),
        }
    }

    /// Whether listening exposes the forward to other machines (anything but loopback).
    pub fn exposes_beyond_loopback(&self) -> bool {
        !self.bind.is_loopback()
    }
}

impl fmt::Display for ForwardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.bind.is_loopback() || self.bind != IpAddr::V4(Ipv4Addr::LOCALHOST) {
            match self.bind {
                IpAddr::V6(ip) => write!(f, "[{ip}]:")?,
                IpAddr::V4(ip) => write!(f, "{ip}:")?,
            }
        }
        write!(f, "{}:{}", self.local_port, self.remote_label())
    }
}

/// Binds the local listener for `spec`; a port in use is a usage error (exit 2).
pub async fn bind(spec: &ForwardSpec) -> Result<TcpListener, UserError> {
    TcpListener::bind((spec.bind, spec.local_port)).await.map_err(|e| {
        let what = SocketAddr::new(spec.bind, spec.local_port);
        let err = UserError::new(ErrorKind::Usage, format!("cannot listen on {what}: {e}"));
        if e.kind() == std::io::ErrorKind::AddrInUse {
            err.hint("another program uses that port; pick another local port, or 0 for any free one")
        } else {
            err.hint("check the bind address is one of this machine's addresses")
        }
    })
}

/// Where a forward stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardState {
    /// Starting its first session.
    Starting,
    /// Session up, no connection open.
    Listening,
    /// Session up, connections open.
    Connected,
    /// The websocket dropped; the engine is reconnecting.
    Reconnecting,
    /// The session ended; a new one starts with the next connection.
    Idle,
    /// Stopped by the user.
    Stopped,
    /// Failed for good.
    Failed(String),
}

impl fmt::Display for ForwardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Starting => f.write_str("starting"),
            Self::Listening => f.write_str("listening"),
            Self::Connected => f.write_str("connected"),
            Self::Reconnecting => f.write_str("reconnecting"),
            Self::Idle => f.write_str("idle (session ended)"),
            Self::Stopped => f.write_str("stopped"),
            Self::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// Live counters of a forward, shared with whoever displays them.
#[derive(Debug)]
pub struct ForwardStats {
    /// Bytes from the remote side to local clients.
    pub bytes_in: AtomicU64,
    /// Bytes from local clients to the remote side.
    pub bytes_out: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections accepted in total.
    pub connections_total: AtomicU64,
    /// Websocket reconnects absorbed.
    pub reconnects: AtomicU64,
    /// Sessions started (more than one means the session ended and was replaced).
    pub sessions: AtomicU64,
    /// Connections the agent could not make to the remote port (Flag `ConnectToPortError`),
    /// so a front end can report each one.
    pub connect_errors: AtomicU64,
    state: Mutex<ForwardState>,
    last_error: Mutex<Option<String>>,
    session_id: Mutex<Option<String>>,
    started: Instant,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSnapshot {
    /// State.
    pub state: ForwardState,
    /// Bytes remote → local.
    pub bytes_in: u64,
    /// Bytes local → remote.
    pub bytes_out: u64,
    /// Open connections.
    pub connections_open: u64,
    /// Accepted connections.
    pub connections_total: u64,
    /// Reconnects.
    pub reconnects: u64,
    /// Sessions started.
    pub sessions: u64,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// Current session id.
    pub session_id: Option<String>,
    /// Time since the forward started.
    pub uptime: Duration,
}

impl Default for ForwardStats {
    fn default() -> Self {
        Self {
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            state: Mutex::new(ForwardState::Starting),
            last_error: Mutex::new(None),
            session_id: Mutex::new(None),
            started: Instant::now(),
        }
    }
}

impl ForwardStats {
    fn set_state(&self, state: ForwardState) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    fn set_error(&self, error: String) {
        tracing::warn!(%error, "forward");
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error);
        }
    }

    fn set_session(&self, id: Option<String>) {
        if let Ok(mut s) = self.session_id.lock() {
            *s = id;
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> ForwardSnapshot {
        ForwardSnapshot {
            state: self
                .state
                .lock()
                .map_or(ForwardState::Starting, |s| s.clone()),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            connections_open: self.connections_open.load(Ordering::Relaxed),
            connections_total: self.connections_total.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            sessions: self.sessions.load(Ordering::Relaxed),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            session_id: self.session_id.lock().ok().and_then(|s| s.clone()),
            uptime: self.started.elapsed(),
        }
    }

    fn refresh_connected(&self) {
        let open = self.connections_open.load(Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock()
            && matches!(*s, ForwardState::Listening | ForwardState::Connected)
        {
            *s = if open > 0 {
                ForwardState::Connected
            } else {
                ForwardState::Listening
            };
        }
    }
}

/// Records each session a forward starts and ends (the audit log). Kept as a trait so the
/// engine does not depend on where or how records are written.
pub trait ForwardAudit: Send + Sync {
    /// A session was started. An error means it may not be used: it is terminated at once
    /// (the audit fails closed).
    fn started(&self, session_id: &str) -> Result<(), String>;
    /// A session ended: `error` is `None` for a normal end; byte counts are for this session.
    fn ended(&self, session_id: &str, error: Option<&str>, bytes_sent: u64, bytes_received: u64);
}

/// What to forward, where, and how.
#[derive(Clone)]
pub struct ForwardRequest {
    /// Instance id.
    pub target: String,
    /// The spec.
    pub spec: ForwardSpec,
    /// Port-forwarding document (from the class).
    pub document: String,
    /// StartSession Reason.
    pub reason: Option<String>,
    /// Keep an idle session alive with smux keepalives (defeats the idle timeout; opt-in).
    pub keepalive: bool,
    /// Where each session is recorded.
    pub audit: Option<Arc<dyn ForwardAudit>>,
}

impl fmt::Debug for ForwardRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardRequest")
            .field("target", &self.target)
            .field("spec", &self.spec)
            .field("document", &self.document)
            .field("keepalive", &self.keepalive)
            .finish_non_exhaustive()
    }
}

/// A local bidirectional byte stream (a TCP connection, or stdin/stdout for `proxy`).
pub struct LocalConn {
    reader: Box<dyn AsyncRead + Unpin + Send>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
}

impl LocalConn {
    /// Wraps a reader and a writer.
    pub fn new(
        reader: impl AsyncRead + Unpin + Send + 'static,
        writer: impl AsyncWrite + Unpin + Send + 'static,
    ) -> Self {
        Self {
            reader: Box::new(reader),
            writer: Box::new(writer),
        }
    }
}

/// Where connections come from.
pub enum Acceptor {
    /// A TCP listener: any number of connections.
    Tcp(TcpListener),
    /// Exactly one connection (`ssmtui proxy`); when it ends, the forward ends.
    Once(Option<LocalConn>),
}

impl Acceptor {
    async fn accept(&mut self) -> std::io::Result<LocalConn> {
        match self {
            Self::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                tracing::debug!(%peer, "forward connection accepted");
                let (r, w) = stream.into_split();
                Ok(LocalConn::new(r, w))
            }
            Self::Once(conn) => match conn.take() {
                Some(c) => Ok(c),
                None => std::future::pending().await,
            },
        }
    }

    fn is_once(&self) -> bool {
        matches!(self, Self::Once(_))
    }
}

/// A running forward.
pub struct ForwardHandle {
    stats: Arc<ForwardStats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    local_addr: Option<SocketAddr>,
}

impl ForwardHandle {
    /// The address actually listened on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Live counters.
    pub fn stats(&self) -> &Arc<ForwardStats> {
        &self.stats
    }

    /// Whether the forward's task has ended (proxy connection closed, or failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the forward: open connections close and the session is terminated.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Waits for the forward to end by itself.
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Starts a forward: starts its first session (so access problems surface now), then serves
/// connections from `acceptor` in a background task.
pub async fn start(
    api: Arc<dyn SsmApi>,
    request: ForwardRequest,
    acceptor: Acceptor,
) -> anyhow::Result<ForwardHandle> {
    let local_addr = match &acceptor {
        Acceptor::Tcp(l) => Some(l.local_addr()?),
        Acceptor::Once(_) => None,
    };
    let local_port = local_addr.map_or(0, |a| a.port());
    let stats = Arc::new(ForwardStats::default());
    let first = open_session(&api, &request, local_port, &stats).await?;
    let stop = CancellationToken::new();
    let runner = Runner {
        api,
        request,
        local_port,
        stats: Arc::clone(&stats),
        stop: stop.clone(),
    };
    let task = tokio::spawn(runner.run(acceptor, first));
    Ok(ForwardHandle {
        stats,
        stop,
        task,
        local_addr,
    })
}

/// A started session and how to talk to its agent.
struct PortSession {
    handle: SessionHandle,
    events: mpsc::Receiver<EngineEvent>,
    mode: PortMode,
    terminate_flag: bool,
}

async fn open_session(
    api: &Arc<dyn SsmApi>,
    request: &ForwardRequest,
    local_port: u16,
    stats: &ForwardStats,
) -> anyhow::Result<PortSession> {
    let mut parameters = HashMap::new();
    parameters.insert(
        "portNumber".to_owned(),
        vec![request.spec.remote_port.to_string()],
    );
    parameters.insert("localPortNumber".to_owned(), vec![local_port.to_string()]);
    if let Some(host) = &request.spec.host {
        parameters.insert("host".to_owned(), vec![host.clone()]);
    }
    let target = api
        .start_session(&StartSessionRequest {
            target: request.target.clone(),
            document: request.document.clone(),
            parameters,
            reason: request.reason.clone(),
        })
        .await?;
    let session_id = target.session_id.clone();
    tracing::info!(%session_id, target = %request.target, spec = %request.spec, "port session started");
    if let Some(audit) = &request.audit
        && let Err(why) = audit.started(&session_id)
    {
        let _ = api.terminate_session(&session_id).await;
        anyhow::bail!("the session was ended because it cannot be audited: {why}");
    }
    let (handle, mut events) = super::spawn_session(
        Arc::clone(api),
        target,
        SessionOptions::new(&request.target),
    )
    .await?;
    stats.sessions.fetch_add(1, Ordering::Relaxed);
    stats.set_session(Some(session_id));
    // The handshake tells us the agent version and port type, which decide the mode.
    let mut agent_version = String::new();
    let mut port_type = String::new();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = events.recv().await {
            match ev {
                EngineEvent::HandshakeRequested {
                    agent_version: v,
                    properties,
                    ..
                } => {
                    agent_version = v;
                    port_type = properties
                        .get("type")
                        .and_then(|t| t.as_str())
                        .unwrap_or_default()
                        .to_owned();
                }
                EngineEvent::Ready { .. } => return Ok(()),
                EngineEvent::Closed(reason) => return Err(reason),
                _ => {}
            }
        }
        Err(CloseReason::Detached)
    })
    .await;
    match ready {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => {
            anyhow::bail!(EngineError::Connect(format!(
                "the port session ended during its handshake: {reason:?}"
            )))
        }
        Err(_) => {
            handle.cancel();
            anyhow::bail!(EngineError::Connect(
                "the agent did not complete the port-forwarding handshake within 30 s".to_owned()
            ))
        }
    }
    let mut mode = version::client_port_mode(&port_type, &agent_version);
    if request.keepalive
        && let PortMode::Mux { keepalive } = &mut mode
    {
        *keepalive = true;
    }
    tracing::info!(?mode, %agent_version, "port session ready");
    Ok(PortSession {
        handle,
        events,
        mode,
        terminate_flag: version::client_supports_terminate_session_flag(&agent_version),
    })
}

/// How a session's run ended.
enum SessionEnd {
    /// The user stopped the forward (the session was terminated).
    Stopped,
    /// The session ended or failed; the forward may start another.
    Ended(String),
    /// The single `proxy` connection finished.
    ProxyDone,
}

struct Runner {
    api: Arc<dyn SsmApi>,
    request: ForwardRequest,
    local_port: u16,
    stats: Arc<ForwardStats>,
    stop: CancellationToken,
}

impl Runner {
    async fn run(self, mut acceptor: Acceptor, first: PortSession) {
        let mut session = Some(first);
        let mut pending: Option<LocalConn> = None;
        loop {
            let current = match session.take() {
                Some(s) => s,
                None => {
                    // Wait for demand before starting a new session (see module docs).
                    self.stats.set_state(ForwardState::Idle);
                    tokio::select! {
                        () = self.stop.cancelled() => break,
                        conn = acceptor.accept() => match conn {
                            Ok(c) => pending = Some(c),
                            Err(e) => { self.stats.set_error(format!("accept failed: {e}")); continue; }
                        },
                    }
                    match open_session(&self.api, &self.request, self.local_port, &self.stats).await
                    {
                        Ok(s) => s,
                        Err(e) => {
                            self.stats
                                .set_error(format!("cannot start a new session: {e:#}"));
                            pending = None;
                            if acceptor.is_once() {
                                self.stats.set_state(ForwardState::Failed(format!("{e:#}")));
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            self.stats.set_state(ForwardState::Listening);
            let session_id = current.handle.session_id().to_owned();
            let (sent0, received0) = (
                self.stats.bytes_out.load(Ordering::Relaxed),
                self.stats.bytes_in.load(Ordering::Relaxed),
            );
            let end = match current.mode {
                PortMode::Mux { keepalive } => {
                    self.run_mux(current, keepalive, &mut acceptor, pending.take())
                        .await
                }
                PortMode::Basic => self.run_basic(current, &mut acceptor, pending.take()).await,
            };
            self.stats.connections_open.store(0, Ordering::Relaxed);
            self.stats.set_session(None);
            if let Some(audit) = &self.request.audit {
                let error = match &end {
                    SessionEnd::Ended(why) => Some(why.as_str()),
                    SessionEnd::Stopped | SessionEnd::ProxyDone => None,
                };
                audit.ended(
                    &session_id,
                    error,
                    self.stats
                        .bytes_out
                        .load(Ordering::Relaxed)
                        .saturating_sub(sent0),
                    self.stats
                        .bytes_in
                        .load(Ordering::Relaxed)
                        .saturating_sub(received0),
                );
            }
            match end {
                SessionEnd::Stopped => break,
                SessionEnd::ProxyDone => {
                    self.stats.set_state(ForwardState::Stopped);
                    return;
                }
                SessionEnd::Ended(why) => {
                    self.stats.set_error(format!("session ended: {why}"));
                    if acceptor.is_once() {
                        self.stats.set_state(ForwardState::Failed(why));
                        return;
                    }
                }
            }
        }
        self.stats.set_state(ForwardState::Stopped);
    }

    /// Ends a session on purpose: the TerminateSession flag where the agent supports it (the
    /// plugin's behaviour), else the API.
    ///
    /// Waits (bounded) until the driver has called TerminateSession and closed: `ssmtui
    /// forward` and `proxy` exit right after, and a session left behind would stay open on the
    /// service until its idle timeout.
    async fn terminate(&self, session: &mut PortSession) {
        if session.terminate_flag {
            let _ = session.handle.send_flag(Flag::TerminateSession).await;
        }
        let _ = session.handle.command(SessionCommand::Terminate).await;
        let closed = tokio::time::timeout(TERMINATE_WAIT, async {
            while let Some(ev) = session.events.recv().await {
                if matches!(ev, EngineEvent::Closed(_)) {
                    break;
                }
            }
        })
        .await;
        if closed.is_err() {
            tracing::warn!(session_id = %session.handle.session_id(), "the session did not confirm its termination in time");
        }
    }

    async fn run_mux(
        &self,
        mut session: PortSession,
        keepalive: bool,
        acceptor: &mut Acceptor,
        mut pending: Option<LocalConn>,
    ) -> SessionEnd {
        let clock = Instant::now();
        let now_ms = || u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mux = Arc::new(Mutex::new(Mux::new(
            Role::Client,
            MuxConfig::with_keepalive(keepalive),
            now_ms(),
        )));
        let capacity = Arc::new(Notify::new());
        let data_ready = Arc::new(Notify::new());
        let mut conns: HashMap<StreamId, Conn> = HashMap::new();
        let input = session.handle.input_sender();
        let mut outq: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
        let once = acceptor.is_once();
        let mut had_conn = false;
        let mut finished_writers: Vec<tokio::task::JoinHandle<()>> = Vec::new();

        loop {
            if let Some(conn) = pending.take() {
                let opened = lock(&mux).and_then(|mut m| m.open_stream().ok());
                match opened {
                    Some(id) => {
                        had_conn = true;
                        conns.insert(
                            id,
                            Conn::spawn(id, conn, &mux, &capacity, &data_ready, &self.stats),
                        );
                        data_ready.notify_one();
                    }
                    None => self
                        .stats
                        .set_error("too many connections on one session".to_owned()),
                }
            }
            if once && had_conn && conns.is_empty() {
                // The stream is closed, but its last bytes may still be on their way to the
                // local side (stdout): the process exits after this, so wait for them.
                for writer in finished_writers.drain(..) {
                    if tokio::time::timeout(PROXY_FLUSH_MAX, writer).await.is_err() {
                        tracing::warn!("the proxy's output was not written out in time");
                    }
                }
                self.terminate(&mut session).await;
                return SessionEnd::ProxyDone;
            }
            // Hand the session's input queue what it has room for now; only wait (in the
            // select below) when it is full.
            let mut drained = false;
            loop {
                let queued: usize = outq.iter().map(Vec::len).sum();
                if queued < OUTQ_BYTES
                    && let Some(mut m) = lock(&mux)
                {
                    let mut queued = queued;
                    while queued < OUTQ_BYTES
                        && let Some(bytes) = m.poll_transmit(INPUT_ITEM)
                    {
                        queued += bytes.len();
                        outq.push_back(bytes);
                        drained = true;
                    }
                }
                if outq.is_empty() {
                    break;
                }
                match input.try_reserve() {
                    Ok(permit) => {
                        if let Some(bytes) = outq.pop_front() {
                            permit.send(InputItem::Data(bytes));
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(())) => break,
                    Err(mpsc::error::TrySendError::Closed(())) => {
                        return SessionEnd::Ended("the session's input closed".to_owned());
                    }
                }
            }
            if drained {
                capacity.notify_waiters();
            }
            let deadline = lock(&mux).and_then(|m| m.poll_timeout());
            let sleep = async {
                match deadline {
                    Some(d) => {
                        tokio::time::sleep(Duration::from_millis(d.saturating_sub(now_ms()))).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    self.terminate(&mut session).await;
                    return SessionEnd::Stopped;
                }
                permit = input.clone().reserve_owned(), if !outq.is_empty() => match (permit, outq.pop_front()) {
                    (Ok(permit), Some(bytes)) => { permit.send(InputItem::Data(bytes)); }
                    _ => return SessionEnd::Ended("the session's input closed".to_owned()),
                },
                ev = session.events.recv() => {
                    // Whatever else the session has produced is handled in the same turn.
                    let mut ev = ev;
                    for turn in 1..=EVENT_BATCH {
                        match ev {
                            Some(EngineEvent::Output(bytes)) => {
                                let result = lock(&mux).map(|mut m| m.handle_incoming(&bytes, now_ms()));
                                if let Some(Err(e)) = result {
                                    self.terminate(&mut session).await;
                                    return SessionEnd::Ended(format!("port-forwarding protocol error: {e}"));
                                }
                                while let Some(event) = lock(&mux).and_then(|mut m| m.poll_event()) {
                                    match event {
                                        MuxEvent::Data(id, data) => {
                                            if let Some(tx) = conns.get(&id).and_then(|c| c.to_local.as_ref()) {
                                                // Waits when this client is slow: smux v1 has no
                                                // per-stream window (module docs).
                                                let _ = tx.send(data).await;
                                            }
                                        }
                                        MuxEvent::Fin(id) => {
                                            // A smux FIN closes the stream: flush what came, close
                                            // our side too.
                                            if let Some(c) = conns.get_mut(&id) {
                                                c.to_local = None;
                                                c.stop_reading.cancel();
                                            }
                                            if let Some(mut m) = lock(&mux) {
                                                let _ = m.close(id);
                                            }
                                        }
                                        MuxEvent::Closed(id) | MuxEvent::Refused(id) => {
                                            if let Some(c) = conns.remove(&id) {
                                                c.stop_reading.cancel();
                                                if once {
                                                    finished_writers.push(c.writer);
                                                }
                                            }
                                            self.stats.connections_open.store(conns.len() as u64, Ordering::Relaxed);
                                            self.stats.refresh_connected();
                                        }
                                        MuxEvent::KeepaliveTimeout => {
                                            self.terminate(&mut session).await;
                                            return SessionEnd::Ended("the agent stopped answering keepalives".to_owned());
                                        }
                                        _ => {}
                                    }
                                }
                            }
                            Some(other) => {
                                if let Some(end) = self.common_event(other) {
                                    return end;
                                }
                            }
                            None => return SessionEnd::Ended("the session task ended".to_owned()),
                        }
                        if turn == EVENT_BATCH {
                            break;
                        }
                        match session.events.try_recv() {
                            Ok(next) => ev = Some(next),
                            Err(_) => break,
                        }
                    }
                }
                conn = acceptor.accept(), if pending.is_none() => match conn {
                    Ok(c) => {
                        pending = Some(c);
                        self.stats.connections_total.fetch_add(1, Ordering::Relaxed);
                        self.stats.connections_open.store(conns.len() as u64 + 1, Ordering::Relaxed);
                        self.stats.refresh_connected();
                    }
                    Err(e) => self.stats.set_error(format!("accept failed: {e}")),
                },
                () = data_ready.notified() => {}
                () = sleep => {
                    if let Some(mut m) = lock(&mux) {
                        m.handle_timeout(now_ms());
                    }
                }
            }
        }
    }

    async fn run_basic(
        &self,
        mut session: PortSession,
        acceptor: &mut Acceptor,
        mut pending: Option<LocalConn>,
    ) -> SessionEnd {
        let _ = session
            .handle
            .command(SessionCommand::ReceiveReady(false))
            .await;
        let once = acceptor.is_once();
        loop {
            let conn = match pending.take() {
                Some(c) => c,
                None => tokio::select! {
                    () = self.stop.cancelled() => {
                        self.terminate(&mut session).await;
                        return SessionEnd::Stopped;
                    }
                    conn = acceptor.accept() => match conn {
                        Ok(c) => {
                            self.stats.connections_total.fetch_add(1, Ordering::Relaxed);
                            c
                        }
                        Err(e) => { self.stats.set_error(format!("accept failed: {e}")); continue; }
                    },
                    ev = session.events.recv() => match ev {
                        Some(other) => match self.common_event(other) {
                            Some(end) => return end,
                            None => continue,
                        },
                        None => return SessionEnd::Ended("the session task ended".to_owned()),
                    },
                },
            };
            self.stats.connections_open.store(1, Ordering::Relaxed);
            self.stats.refresh_connected();
            let _ = session
                .handle
                .command(SessionCommand::ReceiveReady(true))
                .await;
            let end = self.pipe_basic(&mut session, conn).await;
            self.stats.connections_open.store(0, Ordering::Relaxed);
            self.stats.refresh_connected();
            if let Some(end) = end {
                return end;
            }
            if once {
                self.terminate(&mut session).await;
                return SessionEnd::ProxyDone;
            }
            // The local client went away: tell the agent to drop its target connection, then
            // let the old connection's bytes still in flight drain away before the next one.
            let _ = session.handle.send_flag(Flag::DisconnectToPort).await;
            if let Some(end) = self.settle_basic(&mut session).await {
                return end;
            }
        }
    }

    /// Basic mode after `DisconnectToPort`: the agent keeps sending what its old target
    /// connection had until the flag reaches it, and the protocol does not say which
    /// connection bytes belong to. They are acknowledged and dropped (holding them back
    /// unacknowledged would hand them to the next connection) until the agent has been silent
    /// for [`BASIC_SETTLE_QUIET`], at most [`BASIC_SETTLE_MAX`]; only then is the next
    /// connection taken, whose bytes the agent sends only after it has seen ours. `Some` when
    /// the session ended meanwhile.
    async fn settle_basic(&self, session: &mut PortSession) -> Option<SessionEnd> {
        let deadline = tokio::time::Instant::now() + BASIC_SETTLE_MAX;
        loop {
            let quiet = tokio::time::Instant::now() + BASIC_SETTLE_QUIET;
            tokio::select! {
                () = self.stop.cancelled() => {
                    self.terminate(session).await;
                    return Some(SessionEnd::Stopped);
                }
                () = tokio::time::sleep_until(quiet.min(deadline)) => return None,
                ev = session.events.recv() => match ev {
                    Some(EngineEvent::Output(bytes)) => {
                        tracing::debug!(bytes = bytes.len(), "dropped data of a closed basic-mode connection");
                    }
                    Some(other) => {
                        if let Some(end) = self.common_event(other) {
                            return Some(end);
                        }
                    }
                    None => return Some(SessionEnd::Ended("the session task ended".to_owned())),
                },
            }
        }
    }

    /// Pipes one connection in basic mode; `Some` when the session (not the connection) ended.
    async fn pipe_basic(&self, session: &mut PortSession, conn: LocalConn) -> Option<SessionEnd> {
        let LocalConn {
            mut reader,
            mut writer,
        } = conn;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                () = self.stop.cancelled() => {
                    self.terminate(session).await;
                    return Some(SessionEnd::Stopped);
                }
                n = reader.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => {
                        self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                        if session.handle.send(buf.get(..n).unwrap_or_default().to_vec()).await.is_err() {
                            return Some(SessionEnd::Ended("the session's input closed".to_owned()));
                        }
                    }
                },
                ev = session.events.recv() => match ev {
                    Some(EngineEvent::Output(bytes)) => {
                        if writer.write_all(&bytes).await.is_err() {
                            return None;
                        }
                        let _ = writer.flush().await;
                        self.stats.bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                    Some(other) => if let Some(end) = self.common_event(other) { return Some(end) },
                    None => return Some(SessionEnd::Ended("the session task ended".to_owned())),
                },
            }
        }
    }

    /// Events both modes treat alike; `Some` when the session is over.
    fn common_event(&self, ev: EngineEvent) -> Option<SessionEnd> {
        match ev {
            EngineEvent::Reconnecting { reason, .. } => {
                self.stats.set_state(ForwardState::Reconnecting);
                self.stats.set_error(format!("connection lost: {reason}"));
            }
            EngineEvent::Reconnected { .. } => {
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                self.stats.set_state(ForwardState::Listening);
                self.stats.refresh_connected();
            }
            EngineEvent::Flag(Flag::ConnectToPortError) => {
                self.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                self.stats.set_error(self.request.spec.connect_error());
            }
            EngineEvent::Stalled { silent_for } => self.stats.set_error(format!(
                "no answer from the agent for {} s",
                silent_for.as_secs()
            )),
            EngineEvent::Closed(reason) => {
                return Some(SessionEnd::Ended(match reason {
                    CloseReason::ChannelClosed { output } if output.is_empty() => {
                        "closed by the service".to_owned()
                    }
                    CloseReason::ChannelClosed { output } => output,
                    CloseReason::Terminated => "terminated".to_owned(),
                    CloseReason::Detached => "detached".to_owned(),
                    CloseReason::Failed(why) => why,
                }));
            }
            _ => {}
        }
        None
    }
}

fn lock(mux: &Arc<Mutex<Mux>>) -> Option<std::sync::MutexGuard<'_, Mux>> {
    mux.lock().ok()
}

/// One local connection in mux mode.
struct Conn {
    /// Agent → local data; `None` once the agent has closed the stream.
    to_local: Option<mpsc::Sender<Vec<u8>>>,
    /// Stops the reader task.
    stop_reading: CancellationToken,
    /// The writer task, which ends once everything received is written and the local side
    /// shut down.
    writer: tokio::task::JoinHandle<()>,
}

impl Conn {
    fn spawn(
        id: StreamId,
        conn: LocalConn,
        mux: &Arc<Mutex<Mux>>,
        capacity: &Arc<Notify>,
        data_ready: &Arc<Notify>,
        stats: &Arc<ForwardStats>,
    ) -> Self {
        let LocalConn { reader, writer } = conn;
        let (tx, rx) = mpsc::channel(256);
        let stop_reading = CancellationToken::new();
        let writer = tokio::spawn(write_local(writer, rx, Arc::clone(stats)));
        tokio::spawn(read_local(
            id,
            reader,
            Arc::clone(mux),
            Arc::clone(capacity),
            Arc::clone(data_ready),
            Arc::clone(stats),
            stop_reading.clone(),
        ));
        Self {
            to_local: Some(tx),
            stop_reading,
            writer,
        }
    }
}

async fn write_local(
    mut writer: Box<dyn AsyncWrite + Unpin + Send>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    stats: Arc<ForwardStats>,
) {
    while let Some(mut bytes) = rx.recv().await {
        // What else has arrived goes out in the same write (a message is only 1 KiB).
        while bytes.len() < LOCAL_WRITE_BATCH
            && let Ok(more) = rx.try_recv()
        {
            bytes.extend_from_slice(&more);
        }
        if writer.write_all(&bytes).await.is_err() {
            break;
        }
        stats
            .bytes_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if rx.is_empty() && writer.flush().await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

async fn read_local(
    id: StreamId,
    mut reader: Box<dyn AsyncRead + Unpin + Send>,
    mux: Arc<Mutex<Mux>>,
    capacity: Arc<Notify>,
    data_ready: Arc<Notify>,
    stats: Arc<ForwardStats>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let room = capacity.notified();
        tokio::pin!(room);
        room.as_mut().enable();
        let free = lock(&mux).map_or(0, |m| m.send_capacity(id));
        if free == 0 {
            tokio::select! {
                () = stop.cancelled() => return,
                () = room => continue,
            }
        }
        let want = free.min(buf.len());
        let n = tokio::select! {
            () = stop.cancelled() => return,
            n = reader.read(buf.get_mut(..want).unwrap_or_default()) => n,
        };
        match n {
            Ok(0) | Err(_) => {
                if let Some(mut m) = lock(&mux) {
                    let _ = m.close(id);
                }
                data_ready.notify_one();
                return;
            }
            Ok(n) => {
                let data = buf.get(..n).unwrap_or_default();
                if let Some(mut m) = lock(&mux) {
                    // `free` bytes fit; only this task writes to this stream.
                    let _ = m.write(id, data);
                }
                stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                data_ready.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> ForwardSpec {
        ForwardSpec::parse(s).unwrap()
    }

    #[test]
    fn parses_every_form() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            spec("8080:80"),
            ForwardSpec {
                bind: lo,
                local_port: 8080,
                host: None,
                remote_port: 80
            }
        );
        assert_eq!(
            spec("5432:db.internal:5432"),
            ForwardSpec {
                bind: lo,
                local_port: 5432,
                host: Some("db.internal".into()),
                remote_port: 5432
            }
        );
        assert_eq!(spec("0:22").local_port, 0);
        let any = spec("0.0.0.0:8080:80");
        assert_eq!(any.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(any.host, None);
        assert!(any.exposes_beyond_loopback());
        let four = spec("127.0.0.2:8080:10.0.0.5:80");
        assert_eq!(four.host.as_deref(), Some("10.0.0.5"));
        assert_eq!(four.bind, "127.0.0.2".parse::<IpAddr>().unwrap());
        let v6 = spec("[::1]:8080:80");
        assert_eq!(v6.bind, "::1".parse::<IpAddr>().unwrap());
        // A numeric host with three parts is LOCAL:HOST:REMOTE, not BIND:LOCAL:REMOTE.
        assert_eq!(spec("8080:10.0.0.5:80").host.as_deref(), Some("10.0.0.5"));
        for bad in [
            "80",
            "a:80",
            "8080:0",
            "8080::80",
            "1:2:3:4:5",
            "[::1:80:80",
            "70000:80",
        ] {
            assert!(ForwardSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn documents_follow_the_spec() {
        assert_eq!(spec("1:2").document(), DOC_PORT);
        assert_eq!(spec("1:h:2").document(), DOC_REMOTE_HOST);
        assert_eq!(spec("8080:db:5432").to_string(), "8080:db:5432");
        assert_eq!(spec("0.0.0.0:8080:80").to_string(), "0.0.0.0:8080:80");
    }

    #[tokio::test]
    async fn port_in_use_is_reported_before_anything_else() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = bind(&spec(&format!("{port}:80"))).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on 127.0.0.1:{port}")),
            "{err}"
        );
        assert!(format!("{err:?}").contains("pick another local port"));
    }
}
