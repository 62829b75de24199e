//! Port forwarding: a local listener (or stdin/stdout for `ssmtui proxy`) bridged to a port on
//! the instance, or on a host behind it, through one Session Manager Port session at a time.
//!
//! The engine never starts a session itself: it asks its [`PortSessions`] (implemented by
//! `crate::launch`, which calls StartSession, explains denials and writes the audit log) for
//! an already-started one, and finishes every session it was given exactly once, with how it
//! ended — also when the handshake never completes or the data channel cannot be opened — so
//! no session is left open on the service and none lacks its audit end line.
//!
//! The listener is bound before any AWS call, so a port in use is reported at once. One session
//! serves a forward. Its mode follows the agent's version exactly as the plugin decides it
//! (`protocol::version::client_port_mode`), because the agent decides on its own and both must
//! agree:
//!
//! * **mux** (smux v1): every accepted connection is its own stream, so many parallel
//!   connections share the session. One task (the forward's runner) owns the [`Mux`]; each
//!   connection has a reader task and a writer task that talk to it over bounded channels. A
//!   reader reads only as many bytes as the runner has granted it (its stream's free send
//!   buffer, published on a `watch` channel), so a slow upload slows only its stream; a writer
//!   is fed through a bounded channel. smux v1 has no per-stream receive window: when one local
//!   client stops reading and its channel is full, the whole session waits for it. That is the
//!   protocol's limit, documented rather than hidden by unbounded buffering. Connection tasks
//!   are aborted when their connection, or the forward, ends (nothing outlives a forward).
//! * **basic** (old agents): one connection at a time; when it closes we send the
//!   `DisconnectToPort` flag and drop what the agent still sends for it until the agent has
//!   been silent a moment, so the next connection gets none of the previous one's bytes.
//!
//! **Half-close.** The agent has none: a stream's FIN makes it close the target connection
//! entirely, so what the target had not sent yet is lost (protocol.md §9). When a local client
//! shuts down only its sending side (`nc -N`, some upload tools), the FIN is therefore held back
//! until the stream has received nothing for [`HALF_CLOSE_LINGER`] (or the target closes
//! first): a target that answers and closes, or that answers within that time, is heard in
//! full. A target that waits for end of file before it answers cannot be served through any
//! agent; it sees its connection closed after the linger.
//!
//! Websocket drops are absorbed by the engine (ResumeSession, exactly-once delivery), so open
//! streams survive them. If the session itself ends (idle timeout, terminated), open
//! connections are closed, the listener stays up, and a new session is started only when the
//! next connection arrives — starting one eagerly would defeat the account's idle timeout,
//! which is a security control. The opt-in `keepalive` turns smux keepalives on, which keeps
//! an idle session alive: that trade-off is the user's to make, per forward.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::started::{EndOutcome, Ending, StartedSession};
use super::{CloseReason, EngineEvent, InputItem, SessionCommand, SessionHandle};
use crate::aws::SsmApi;
use crate::error::{ErrorKind, UserError};
use crate::forwarding::{ForwardSnapshot, ForwardSpec, ForwardState};
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
/// Mux mode: the most bytes a connection's reader reads at once.
const READ_CHUNK: usize = 32 * 1024;
/// Mux mode: reads queued from all connections to the runner.
const READS_QUEUED: usize = 64;
/// Mux mode: messages queued for one connection's writer.
const WRITES_QUEUED: usize = 256;
/// `proxy`: the longest wait for the last bytes to be written to stdout after the stream closed.
const PROXY_FLUSH_MAX: Duration = Duration::from_secs(60);
/// The longest wait for a terminated session's driver to confirm the end.
const TERMINATE_WAIT: Duration = Duration::from_secs(10);
/// The longest wait for the agent's handshake (the version decides the mode).
const HANDSHAKE_WAIT: Duration = Duration::from_secs(30);
/// Basic mode: how long the agent must be silent after `DisconnectToPort` before the next
/// connection is served (see `Runner::settle_basic`).
const BASIC_SETTLE_QUIET: Duration = Duration::from_millis(250);
/// Basic mode: the longest wait for that silence (a target that never stops talking while the
/// flag is slow to arrive).
const BASIC_SETTLE_MAX: Duration = Duration::from_secs(5);

/// After a local client shuts down its sending side, how long the stream must receive nothing
/// before it is closed (module docs, half-close).
pub const HALF_CLOSE_LINGER: Duration = Duration::from_secs(3);

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
    /// Sessions open now.
    pub sessions_live: AtomicU64,
    /// A striped forward's other lanes (each with a session of its own); snapshots sum them.
    lanes: Mutex<Vec<Arc<ForwardStats>>>,
    /// The forward a lane belongs to (errors are reported there too).
    parent: Option<std::sync::Weak<ForwardStats>>,
    state: Mutex<ForwardState>,
    last_error: Mutex<Option<String>>,
    session_id: Mutex<Option<String>>,
    started: Instant,
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
            sessions_live: AtomicU64::new(0),
            lanes: Mutex::new(Vec::new()),
            parent: None,
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
        if let Some(parent) = self.parent.as_ref().and_then(std::sync::Weak::upgrade) {
            parent.set_error(error.clone());
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error);
        }
    }

    /// A new lane of this (striped) forward: its own counters, summed into this one's
    /// snapshots.
    fn add_lane(self: &Arc<Self>) -> Arc<Self> {
        let lane = Arc::new(Self {
            parent: Some(Arc::downgrade(self)),
            ..Self::default()
        });
        if let Ok(mut lanes) = self.lanes.lock() {
            lanes.push(Arc::clone(&lane));
        }
        lane
    }

    /// A counter summed over this forward and its lanes.
    fn total(&self, counter: impl Fn(&Self) -> &AtomicU64) -> u64 {
        let own = counter(self).load(Ordering::Relaxed);
        let lanes = self.lanes.lock().map_or(0, |lanes| {
            lanes
                .iter()
                .map(|l| counter(l).load(Ordering::Relaxed))
                .sum()
        });
        own + lanes
    }

    fn set_session(&self, id: Option<String>) {
        if let Ok(mut s) = self.session_id.lock() {
            *s = id;
        }
    }

    /// The counters now (a striped forward's summed over its lanes).
    pub fn snapshot(&self) -> ForwardSnapshot {
        let connections_open = self.total(|s| &s.connections_open);
        let mut state = self
            .state
            .lock()
            .map_or(ForwardState::Starting, |s| s.clone());
        // The first lane sets the state; another lane's connections make it Connected.
        if connections_open > 0 && matches!(state, ForwardState::Listening | ForwardState::Idle) {
            state = ForwardState::Connected;
        }
        ForwardSnapshot {
            state,
            bytes_in: self.total(|s| &s.bytes_in),
            bytes_out: self.total(|s| &s.bytes_out),
            connections_open,
            connections_total: self.total(|s| &s.connections_total),
            reconnects: self.total(|s| &s.reconnects),
            sessions: self.total(|s| &s.sessions),
            sessions_live: self.total(|s| &s.sessions_live),
            connect_errors: self.total(|s| &s.connect_errors),
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
    /// A lane of a striped forward: connections handed over by its dispatcher.
    Lane(mpsc::Receiver<LocalConn>),
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
            Self::Lane(rx) => match rx.recv().await {
                Some(c) => Ok(c),
                // The dispatcher is gone: the forward is stopping.
                None => std::future::pending().await,
            },
        }
    }

    fn is_once(&self) -> bool {
        matches!(self, Self::Once(_))
    }
}

/// Where a forward's sessions come from: `crate::launch` starts them (StartSession with the
/// forward's document, reason and parameters, the audit start line) and finishes them (the
/// audit end line, TerminateSession when needed) through the [`StartedSession`] it returns.
#[async_trait]
pub trait PortSessions: Send + Sync {
    /// Starts a session to the forward's remote port; `local_port` is what the agent is told
    /// the local side listens on (0 for `proxy`).
    async fn start(&self, local_port: u16) -> anyhow::Result<StartedSession>;
}

/// What to forward, and how.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    /// Instance id (the KMS encryption context of its sessions).
    pub target: String,
    /// The spec.
    pub spec: ForwardSpec,
    /// Keep an idle session alive with smux keepalives (defeats the idle timeout; opt-in).
    pub keepalive: bool,
    /// The most sessions serving the forward at once (striping; 1 = one session).
    pub sessions: usize,
    /// How its sessions ride out lost connections.
    pub tuning: super::SessionTuning,
}

/// A running forward. Dropping it stops the forward in the background (its session is
/// terminated and finished); [`Self::stop`] does the same and waits for it.
pub struct ForwardHandle {
    stats: Arc<ForwardStats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    local_addr: Option<SocketAddr>,
}

impl fmt::Debug for ForwardHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
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

    /// Stops the forward: open connections close, the session is terminated and finished.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }

    /// Waits for the forward to end by itself.
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for ForwardHandle {
    fn drop(&mut self) {
        // The runner notices, terminates its session and finishes it; nothing is leaked when
        // a caller forgets to stop a forward.
        self.stop.cancel();
    }
}

/// Starts a forward: starts its first session (so access problems surface now), then serves
/// connections from `acceptor` in a background task. `api` serves the sessions' data channels
/// (ResumeSession, KMS, TerminateSession).
pub async fn start(
    sessions: Arc<dyn PortSessions>,
    api: Arc<dyn SsmApi>,
    request: ForwardRequest,
    acceptor: Acceptor,
) -> anyhow::Result<ForwardHandle> {
    let local_addr = match &acceptor {
        Acceptor::Tcp(l) => Some(l.local_addr()?),
        Acceptor::Once(_) | Acceptor::Lane(_) => None,
    };
    let local_port = local_addr.map_or(0, |a| a.port());
    let stats = Arc::new(ForwardStats::default());
    let lanes = request.sessions.max(1);
    let runner = Runner {
        sessions,
        api,
        request,
        local_port,
        stats: Arc::clone(&stats),
        stop: CancellationToken::new(),
        draining: Vec::new(),
        fallback: None,
    };
    let first = runner.open_session().await?;
    let stop = runner.stop.clone();
    let task = match acceptor {
        Acceptor::Tcp(_) if lanes > 1 => tokio::spawn(stripe(runner, acceptor, first, lanes)),
        _ => tokio::spawn(runner.run(acceptor, Some(first))),
    };
    Ok(ForwardHandle {
        stats,
        stop,
        task,
        local_addr,
    })
}

/// Connections queued to a lane before it takes them.
const LANE_QUEUE: usize = 64;

/// A striped forward (`sessions` > 1): the listener's connections are dealt to up to `lanes`
/// runners, each with a session of its own. A connection goes to the lane holding the fewest
/// open connections; a new lane (and session) is started only when every lane already holds
/// one, so sessions open as connections arrive, and a lane whose session ends (idle timeout)
/// waits for demand like a single-session forward. Stopping the forward stops every lane and
/// waits for their sessions to be terminated and finished.
async fn stripe(first_lane: Runner, mut listener: Acceptor, first: PortSession, lanes: usize) {
    struct Lane {
        tx: mpsc::Sender<LocalConn>,
        load: Arc<AtomicU64>,
        task: tokio::task::JoinHandle<()>,
    }
    let stop = first_lane.stop.clone();
    let stats = Arc::clone(&first_lane.stats);
    // What the further lanes are made from (the first lane moves into its task).
    let template = first_lane.lane(Arc::clone(&stats), None);
    let (tx, rx) = mpsc::channel(LANE_QUEUE);
    let mut all = vec![Lane {
        tx: tx.clone(),
        load: Arc::new(AtomicU64::new(0)),
        task: tokio::spawn(first_lane.run(Acceptor::Lane(rx), Some(first))),
    }];
    let first_tx = tx;
    loop {
        let conn = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            conn = listener.accept() => conn,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                stats.set_error(format!("accept failed: {e}"));
                continue;
            }
        };
        let pick = all
            .iter()
            .enumerate()
            .min_by_key(|(i, l)| (l.load.load(Ordering::Relaxed), *i))
            .map_or(0, |(i, l)| {
                if l.load.load(Ordering::Relaxed) > 0 && all.len() < lanes {
                    all.len()
                } else {
                    i
                }
            });
        if pick == all.len() {
            let (tx, rx) = mpsc::channel(LANE_QUEUE);
            let runner = template.lane(stats.add_lane(), Some(first_tx.clone()));
            tracing::info!(
                lane = pick + 1,
                "striped forward: another session for a connection"
            );
            all.push(Lane {
                tx,
                load: Arc::new(AtomicU64::new(0)),
                task: tokio::spawn(runner.run(Acceptor::Lane(rx), None)),
            });
        }
        if let Some(lane) = all.get(pick) {
            let conn = conn.counted(&lane.load);
            if lane.tx.send(conn).await.is_err() {
                stats.set_error("a lane of the forward has ended".to_owned());
            }
        }
    }
    drop(first_tx);
    for lane in all {
        drop(lane.tx);
        let _ = lane.task.await;
    }
    stats.set_state(ForwardState::Stopped);
}

/// Decrements a lane's count of open connections when the connection is gone (both of its
/// halves dropped).
struct Ticket(Arc<AtomicU64>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A half of a local connection that holds its lane's [`Ticket`].
struct Counted<T> {
    inner: T,
    _ticket: Arc<Ticket>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl LocalConn {
    /// This connection, counted in `load` until both of its halves are dropped.
    fn counted(self, load: &Arc<AtomicU64>) -> Self {
        load.fetch_add(1, Ordering::Relaxed);
        let ticket = Arc::new(Ticket(Arc::clone(load)));
        Self {
            reader: Box::new(Counted {
                inner: self.reader,
                _ticket: Arc::clone(&ticket),
            }),
            writer: Box::new(Counted {
                inner: self.writer,
                _ticket: ticket,
            }),
        }
    }
}

/// A started session and how to talk to its agent.
struct PortSession {
    handle: SessionHandle,
    events: mpsc::Receiver<EngineEvent>,
    mode: PortMode,
    terminate_flag: bool,
    started: StartedSession,
}

/// How a session's run ended.
enum SessionEnd {
    /// The user stopped the forward (the session was terminated).
    Stopped(Ending),
    /// The session ended or failed; the forward may start another.
    Ended(Ending),
    /// The single `proxy` connection finished (the session was terminated).
    ProxyDone(Ending),
}

impl SessionEnd {
    fn ending(&self) -> &Ending {
        match self {
            Self::Stopped(e) | Self::Ended(e) | Self::ProxyDone(e) => e,
        }
    }
}

/// The ending of a session whose driver reported `reason`.
fn ending_of(reason: CloseReason) -> Ending {
    match reason {
        CloseReason::ChannelClosed { output } => Ending {
            detail: Some(if output.is_empty() {
                "closed by the service".to_owned()
            } else {
                output
            }),
            ..Ending::new(EndOutcome::Exited)
        },
        CloseReason::Terminated => Ending::new(EndOutcome::Terminated),
        CloseReason::Detached => Ending::interrupted("detached"),
        CloseReason::Failed(why) => Ending::failed(why),
    }
}

struct Runner {
    sessions: Arc<dyn PortSessions>,
    api: Arc<dyn SsmApi>,
    request: ForwardRequest,
    local_port: u16,
    stats: Arc<ForwardStats>,
    stop: CancellationToken,
    /// Writers of closed connections still flushing what they were given; aborted when the
    /// forward ends.
    draining: Vec<AbortOnDropHandle<()>>,
    /// A striped forward's other lanes: where a connection goes when this lane cannot start
    /// a session for it (the account's session limit, say), instead of being dropped.
    fallback: Option<mpsc::Sender<LocalConn>>,
}

impl Runner {
    /// Another runner of the same forward, with its own counters: a lane of a striped one.
    fn lane(&self, stats: Arc<ForwardStats>, fallback: Option<mpsc::Sender<LocalConn>>) -> Self {
        Self {
            sessions: Arc::clone(&self.sessions),
            api: Arc::clone(&self.api),
            request: self.request.clone(),
            local_port: self.local_port,
            stats,
            stop: self.stop.clone(),
            draining: Vec::new(),
            fallback,
        }
    }

    /// Gets a started session from [`PortSessions`], opens its data channel and waits for the
    /// handshake. A session that gets that far and no further is finished as failed (the
    /// launcher then terminates it and writes the audit end line).
    async fn open_session(&self) -> anyhow::Result<PortSession> {
        let mut started = self.sessions.start(self.local_port).await?;
        let session_id = started.session_id().to_owned();
        tracing::info!(%session_id, target = %self.request.target, spec = %self.request.spec, "port session started");
        let Some(target) = started.take_target() else {
            started
                .finish(Ending::failed("the session had no data channel"))
                .await;
            anyhow::bail!("the port session had no data channel");
        };
        let spawned = super::spawn_session(
            Arc::clone(&self.api),
            target,
            self.request.tuning.options(&self.request.target),
        )
        .await;
        let (handle, mut events) = match spawned {
            Ok(s) => s,
            Err(e) => {
                started.finish(Ending::failed(e.to_string())).await;
                return Err(e.into());
            }
        };
        self.stats.sessions.fetch_add(1, Ordering::Relaxed);
        self.stats.sessions_live.fetch_add(1, Ordering::Relaxed);
        self.stats.set_session(Some(session_id));
        // The handshake tells us the agent version and port type, which decide the mode.
        let mut agent_version = String::new();
        let mut port_type = String::new();
        let ready = tokio::time::timeout(HANDSHAKE_WAIT, async {
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
        let failure = match ready {
            Ok(Ok(())) => None,
            Ok(Err(reason)) => {
                let why = format!("the port session ended during its handshake: {reason:?}");
                Some((ending_of(reason), why))
            }
            Err(_) => {
                handle.cancel();
                let why = format!(
                    "the agent did not complete the port-forwarding handshake within {} s",
                    HANDSHAKE_WAIT.as_secs()
                );
                Some((Ending::failed(why.clone()), why))
            }
        };
        if let Some((ending, why)) = failure {
            self.stats.set_session(None);
            self.stats.sessions_live.fetch_sub(1, Ordering::Relaxed);
            started.finish(ending).await;
            anyhow::bail!(super::EngineError::Connect(why));
        }
        let mut mode = version::client_port_mode(&port_type, &agent_version);
        if self.request.keepalive
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
            started,
        })
    }

    async fn run(mut self, mut acceptor: Acceptor, first: Option<PortSession>) {
        let mut session = first;
        let mut pending: Option<LocalConn> = None;
        loop {
            let current = match session.take() {
                Some(s) => s,
                None => {
                    // Wait for demand before starting a new session (see module docs),
                    // unless a connection is already waiting (taken while the last one ended).
                    self.stats.set_state(ForwardState::Idle);
                    if pending.is_none() {
                        tokio::select! {
                            () = self.stop.cancelled() => break,
                            conn = acceptor.accept() => match conn {
                                Ok(c) => pending = Some(c),
                                Err(e) => { self.stats.set_error(format!("accept failed: {e}")); continue; }
                            },
                        }
                    }
                    match self.open_session().await {
                        Ok(s) => s,
                        Err(e) => {
                            self.stats
                                .set_error(format!("cannot start a new session: {e:#}"));
                            if let (Some(conn), Some(other)) = (pending.take(), &self.fallback) {
                                // Another lane's session serves it instead.
                                let _ = other.try_send(conn);
                            }
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
            let (sent0, received0) = (
                self.stats.bytes_out.load(Ordering::Relaxed),
                self.stats.bytes_in.load(Ordering::Relaxed),
            );
            let mut current = current;
            let end = match current.mode {
                PortMode::Mux { keepalive } => {
                    self.run_mux(&mut current, keepalive, &mut acceptor, pending.take())
                        .await
                }
                PortMode::Basic => {
                    self.run_basic(&mut current, &mut acceptor, &mut pending)
                        .await
                }
            };
            self.stats.connections_open.store(0, Ordering::Relaxed);
            self.stats.set_session(None);
            let ending = end.ending().clone().with_bytes(
                self.stats
                    .bytes_out
                    .load(Ordering::Relaxed)
                    .saturating_sub(sent0),
                self.stats
                    .bytes_in
                    .load(Ordering::Relaxed)
                    .saturating_sub(received0),
            );
            current.started.finish(ending).await;
            self.stats.sessions_live.fetch_sub(1, Ordering::Relaxed);
            match end {
                SessionEnd::Stopped(_) => break,
                SessionEnd::ProxyDone(_) => {
                    self.stats.set_state(ForwardState::Stopped);
                    return;
                }
                SessionEnd::Ended(ending) => {
                    let why = ending.detail.unwrap_or_else(|| "ended".to_owned());
                    self.stats.set_error(format!("session ended: {why}"));
                    if acceptor.is_once() {
                        // What the agent sent before the end still goes to stdout.
                        self.flush_draining().await;
                        self.stats.set_state(ForwardState::Failed(why));
                        return;
                    }
                }
            }
        }
        self.stats.set_state(ForwardState::Stopped);
    }

    /// Ends a session on purpose: the TerminateSession flag where the agent supports it (the
    /// plugin's behaviour), then TerminateSession through the driver, and returns how it
    /// ended.
    ///
    /// Waits (bounded) until the driver has called TerminateSession and closed: `ssmtui
    /// forward` and `proxy` exit right after, and a session left behind would stay open on the
    /// service until its idle timeout. If the driver does not confirm, the ending says the
    /// session may still be open, and the launcher calls TerminateSession itself.
    async fn terminate(&self, session: &mut PortSession) -> Ending {
        if session.terminate_flag {
            // Never waits: the input queue may be full and stay full (a busy upload while the
            // driver is backlogged by a busy download); the API call below does the job then.
            let _ = session
                .handle
                .input_sender()
                .try_send(InputItem::Flag(Flag::TerminateSession));
        }
        let closed = tokio::time::timeout(TERMINATE_WAIT, async {
            let _ = session.handle.command(SessionCommand::Terminate).await;
            while let Some(ev) = session.events.recv().await {
                match ev {
                    // The agent closes the channel on the TerminateSession flag, before the
                    // driver gets to call the API: either way, we ended it.
                    EngineEvent::Closed(
                        CloseReason::Terminated | CloseReason::ChannelClosed { .. },
                    ) => return Ending::new(EndOutcome::Terminated),
                    EngineEvent::Closed(reason) => return ending_of(reason),
                    _ => {}
                }
            }
            Ending::failed("the session's driver ended without confirming the termination")
        })
        .await;
        closed.unwrap_or_else(|_| {
            tracing::warn!(session_id = %session.handle.session_id(), "the session did not confirm its termination in time");
            session.handle.cancel();
            Ending::failed("the termination was not confirmed in time")
        })
    }

    async fn run_mux(
        &mut self,
        session: &mut PortSession,
        keepalive: bool,
        acceptor: &mut Acceptor,
        mut pending: Option<LocalConn>,
    ) -> SessionEnd {
        self.draining.retain(|w| !w.is_finished());
        let clock = Instant::now();
        let now_ms = || u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        // This task alone owns the mux; connection tasks talk to it over channels.
        let mut mux = Mux::new(Role::Client, MuxConfig::with_keepalive(keepalive), now_ms());
        let (reads_tx, mut reads) = mpsc::channel::<LocalRead>(READS_QUEUED);
        let mut conns: HashMap<StreamId, Conn> = HashMap::new();
        let input = session.handle.input_sender();
        let mut outq: VecDeque<Vec<u8>> = VecDeque::new();
        let once = acceptor.is_once();
        let mut had_conn = false;

        let end = 'session: loop {
            if let Some(conn) = pending.take() {
                match mux.open_stream() {
                    Ok(id) => {
                        had_conn = true;
                        conns.insert(id, Conn::spawn(id, conn, &reads_tx, &self.stats));
                    }
                    Err(e) => self
                        .stats
                        .set_error(format!("cannot open a stream for a connection: {e}")),
                }
            }
            // Hand the session's input queue what it has room for now, refilling from the
            // streams as it goes, and act on what the mux produced meanwhile; repeat until it
            // is quiet. Sending can produce events (our FIN completes a close) and events can
            // produce frames (a peer's FIN is answered with ours), and neither wakes the
            // select below by itself.
            loop {
                if let Err(closed) = transmit(&mut mux, &mut outq, &input) {
                    break 'session closed;
                }
                match self.mux_events(&mut mux, &mut conns, session, once).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(end) => break 'session end,
                }
            }
            if once && had_conn && conns.is_empty() {
                // The stream is closed, but its last bytes may still be on their way to the
                // local side (stdout): the process exits after this, so wait for them.
                self.flush_draining().await;
                break SessionEnd::ProxyDone(self.terminate(session).await);
            }
            // Room freed in the streams' send buffers becomes reading credit.
            for (id, conn) in &mut conns {
                conn.grant(mux.send_capacity(*id));
            }
            let deadline = mux.poll_timeout();
            let linger = conns.values().filter_map(|c| c.linger).min();
            let sleep = async {
                let mux_due = deadline.map(|d| {
                    tokio::time::Instant::now() + Duration::from_millis(d.saturating_sub(now_ms()))
                });
                let due = match (mux_due, linger.map(tokio::time::Instant::from_std)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                match due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break SessionEnd::Stopped(self.terminate(session).await),
                permit = input.clone().reserve_owned(), if !outq.is_empty() => match (permit, outq.pop_front()) {
                    (Ok(permit), Some(bytes)) => { permit.send(InputItem::Data(bytes)); }
                    _ => break SessionEnd::Ended(Ending::failed("the session's input closed")),
                },
                ev = session.events.recv() => {
                    // Whatever else the session has produced is handled in the same turn.
                    let mut ev = ev;
                    let mut over = None;
                    for turn in 1..=EVENT_BATCH {
                        match ev {
                            Some(EngineEvent::Output(bytes)) => {
                                if let Err(e) = mux.handle_incoming(&bytes, now_ms()) {
                                    let _ = self.terminate(session).await;
                                    over = Some(SessionEnd::Ended(Ending::failed(format!("port-forwarding protocol error: {e}"))));
                                    break;
                                }
                                if let Err(end) = self.mux_events(&mut mux, &mut conns, session, once).await {
                                    over = Some(end);
                                    break;
                                }
                            }
                            Some(other) => {
                                if let Some(end) = self.common_event(other) {
                                    over = Some(end);
                                    break;
                                }
                            }
                            None => {
                                over = Some(SessionEnd::Ended(Ending::failed("the session task ended")));
                                break;
                            }
                        }
                        if turn == EVENT_BATCH {
                            break;
                        }
                        match session.events.try_recv() {
                            Ok(next) => ev = Some(next),
                            Err(_) => break,
                        }
                    }
                    if let Some(end) = over {
                        break end;
                    }
                }
                read = reads.recv() => {
                    // `reads_tx` lives in this function, so the channel never closes here.
                    if let Some(read) = read {
                        self.local_read(&mut mux, &mut conns, read);
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
                () = sleep => {
                    mux.handle_timeout(now_ms());
                    let now = Instant::now();
                    for (id, conn) in &mut conns {
                        if conn.linger.is_some_and(|t| now >= t) {
                            conn.linger = None;
                            let _ = mux.close(*id);
                        }
                    }
                }
            }
        };
        // The session is over: readers stop at once; writers keep flushing what they were
        // given (bounded by the forward's lifetime).
        for (_, conn) in conns.drain() {
            self.draining.push(conn.close());
        }
        end
    }

    /// Applies the mux's events: how many there were, or the end of the session.
    async fn mux_events(
        &mut self,
        mux: &mut Mux,
        conns: &mut HashMap<StreamId, Conn>,
        session: &mut PortSession,
        once: bool,
    ) -> Result<usize, SessionEnd> {
        let mut handled = 0;
        while let Some(event) = mux.poll_event() {
            handled += 1;
            match event {
                MuxEvent::Data(id, data) => {
                    let Some(conn) = conns.get_mut(&id) else {
                        continue;
                    };
                    if let Some(tx) = conn.to_local.as_ref() {
                        // Waits when this client is slow: smux v1 has no per-stream window
                        // (module docs). A stop does not wait for it.
                        let delivered = tokio::select! {
                            r = tx.send(data) => r.is_ok(),
                            () = self.stop.cancelled() => {
                                return Err(SessionEnd::Stopped(self.terminate(session).await));
                            }
                        };
                        if !delivered {
                            // The local side is gone for good: so is the stream.
                            conn.stop_reading();
                            conn.linger = None;
                            let _ = mux.close(id);
                        } else if conn.linger.is_some() {
                            // Counted from when the data was handed on: a slow local reader
                            // must not make the stream look quiet.
                            conn.linger = Some(Instant::now() + HALF_CLOSE_LINGER);
                        }
                    }
                }
                MuxEvent::Fin(id) => {
                    // A smux FIN closes the stream: flush what came, close our side too.
                    if let Some(c) = conns.get_mut(&id) {
                        c.stop_reading();
                        c.linger = None;
                    }
                    let _ = mux.close(id);
                }
                MuxEvent::Closed(id) | MuxEvent::Refused(id) => {
                    if let Some(c) = conns.remove(&id) {
                        self.draining.retain(|w| !w.is_finished());
                        let writer = c.close();
                        if once || !writer.is_finished() {
                            self.draining.push(writer);
                        }
                    }
                    self.stats
                        .connections_open
                        .store(conns.len() as u64, Ordering::Relaxed);
                    self.stats.refresh_connected();
                }
                MuxEvent::KeepaliveTimeout => {
                    let _ = self.terminate(session).await;
                    return Err(SessionEnd::Ended(Ending::failed(
                        "the agent stopped answering keepalives",
                    )));
                }
                // Client role: the agent never opens streams toward us.
                _ => {}
            }
        }
        Ok(handled)
    }

    /// Waits (bounded) for the writers of closed connections to write out what they were
    /// given: `proxy` exits right after, and its last bytes must reach stdout.
    async fn flush_draining(&mut self) {
        for writer in self.draining.drain(..) {
            if tokio::time::timeout(PROXY_FLUSH_MAX, writer).await.is_err() {
                tracing::warn!("the proxy's output was not written out in time");
            }
        }
    }

    /// What a connection's reader read: into its stream (it fits: the reader read no more
    /// than its credit), or the end of its input.
    fn local_read(&self, mux: &mut Mux, conns: &mut HashMap<StreamId, Conn>, read: LocalRead) {
        match read {
            LocalRead::Data(id, data) => {
                // A stream that stopped reading (the agent closed it) takes no more; what
                // its reader had read by then goes nowhere, and is not counted as sent.
                let Some(conn) = conns.get_mut(&id).filter(|c| c.reader.is_some()) else {
                    return;
                };
                conn.received += data.len() as u64;
                self.stats
                    .bytes_out
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                match mux.write(id, &data) {
                    Ok(n) if n == data.len() => {}
                    // Only a bug in the credit arithmetic gets here; losing bytes silently
                    // would be worse than closing the connection.
                    other => {
                        self.stats.set_error(format!(
                            "a connection was closed: its stream refused data ({other:?})"
                        ));
                        conn.stop_reading();
                        let _ = mux.close(id);
                    }
                }
            }
            LocalRead::End(id) => {
                // Held back: the agent would close the target at once (module docs).
                if let Some(conn) = conns.get_mut(&id) {
                    conn.linger = Some(Instant::now() + HALF_CLOSE_LINGER);
                }
            }
            LocalRead::Failed(id) => {
                let _ = mux.close(id);
            }
        }
    }

    /// Basic mode: connections in turn. A connection accepted when the session ends is left
    /// in `pending` for the next one.
    async fn run_basic(
        &self,
        session: &mut PortSession,
        acceptor: &mut Acceptor,
        pending: &mut Option<LocalConn>,
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
                        return SessionEnd::Stopped(self.terminate(session).await);
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
                        None => return SessionEnd::Ended(Ending::failed("the session task ended")),
                    },
                },
            };
            self.stats.connections_open.store(1, Ordering::Relaxed);
            self.stats.refresh_connected();
            let _ = session
                .handle
                .command(SessionCommand::ReceiveReady(true))
                .await;
            let (end, next) = self.pipe_basic(session, conn, acceptor).await;
            if next.is_some() {
                self.stats.connections_total.fetch_add(1, Ordering::Relaxed);
                *pending = next;
            }
            self.stats.connections_open.store(0, Ordering::Relaxed);
            self.stats.refresh_connected();
            if let Some(end) = end {
                return end;
            }
            if once {
                return SessionEnd::ProxyDone(self.terminate(session).await);
            }
            // The local client went away: tell the agent to drop its target connection, then
            // let the old connection's bytes still in flight drain away before the next one.
            let _ = session.handle.send_flag(Flag::DisconnectToPort).await;
            if let Some(end) = self.settle_basic(session).await {
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
                    return Some(SessionEnd::Stopped(self.terminate(session).await));
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
                    None => return Some(SessionEnd::Ended(Ending::failed("the session task ended"))),
                },
            }
        }
    }

    /// Pipes one connection in basic mode; `Some` when the session (not the connection) ended.
    /// A connection that shut down its sending side lingers (module docs, half-close) unless
    /// the next connection arrives meanwhile, which is then returned: one connection at a
    /// time is all basic mode has.
    async fn pipe_basic(
        &self,
        session: &mut PortSession,
        conn: LocalConn,
        acceptor: &mut Acceptor,
    ) -> (Option<SessionEnd>, Option<LocalConn>) {
        let LocalConn {
            mut reader,
            mut writer,
        } = conn;
        let input = session.handle.input_sender();
        let mut buf = vec![0u8; 16 * 1024];
        // Bytes read and not yet taken by the session: the next read waits for them, while
        // the session's events keep being taken (awaiting the send instead could leave both
        // sides waiting on each other).
        let mut unsent: Option<Vec<u8>> = None;
        // Set once the local side shut down its sending half (module docs, half-close).
        let mut linger: Option<tokio::time::Instant> = None;
        loop {
            let lingering = async {
                match linger {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.stop.cancelled() => {
                    return (Some(SessionEnd::Stopped(self.terminate(session).await)), None);
                }
                permit = input.reserve(), if unsent.is_some() => match (permit, unsent.take()) {
                    (Ok(permit), Some(data)) => permit.send(InputItem::Data(data)),
                    _ => return (Some(SessionEnd::Ended(Ending::failed("the session's input closed"))), None),
                },
                () = lingering => return (None, None),
                next = acceptor.accept(), if linger.is_some() && !acceptor.is_once() => match next {
                    // The next client is waiting: the lingering one yields.
                    Ok(c) => return (None, Some(c)),
                    Err(e) => self.stats.set_error(format!("accept failed: {e}")),
                },
                n = reader.read(&mut buf), if unsent.is_none() && linger.is_none() => match n {
                    Ok(0) => {
                        linger = Some(tokio::time::Instant::now() + HALF_CLOSE_LINGER);
                    }
                    Err(_) => return (None, None),
                    Ok(n) => {
                        self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                        unsent = Some(buf.get(..n).unwrap_or_default().to_vec());
                    }
                },
                ev = session.events.recv() => match ev {
                    Some(EngineEvent::Output(bytes)) => {
                        let written = tokio::select! {
                            r = writer.write_all(&bytes) => r,
                            () = self.stop.cancelled() => {
                                return (Some(SessionEnd::Stopped(self.terminate(session).await)), None);
                            }
                        };
                        if written.is_err() {
                            return (None, None);
                        }
                        let _ = writer.flush().await;
                        self.stats.bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        if linger.is_some() {
                            linger = Some(tokio::time::Instant::now() + HALF_CLOSE_LINGER);
                        }
                    }
                    Some(other) => if let Some(end) = self.common_event(other) { return (Some(end), None) },
                    None => return (Some(SessionEnd::Ended(Ending::failed("the session task ended"))), None),
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
            EngineEvent::Closed(reason) => return Some(SessionEnd::Ended(ending_of(reason))),
            _ => {}
        }
        None
    }
}

/// Hands the session's input queue what it has room for, refilling `outq` from the mux as it
/// goes; what does not fit waits in `outq`. The end of the session when its input is gone.
fn transmit(
    mux: &mut Mux,
    outq: &mut VecDeque<Vec<u8>>,
    input: &mpsc::Sender<InputItem>,
) -> Result<(), SessionEnd> {
    loop {
        let mut queued: usize = outq.iter().map(Vec::len).sum();
        while queued < OUTQ_BYTES
            && let Some(bytes) = mux.poll_transmit(INPUT_ITEM)
        {
            queued += bytes.len();
            outq.push_back(bytes);
        }
        let Some(bytes) = outq.pop_front() else {
            return Ok(());
        };
        match input.try_reserve() {
            Ok(permit) => permit.send(InputItem::Data(bytes)),
            Err(mpsc::error::TrySendError::Full(())) => {
                outq.push_front(bytes);
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err(SessionEnd::Ended(Ending::failed(
                    "the session's input closed",
                )));
            }
        }
    }
}

/// What a connection's reader hands the runner.
enum LocalRead {
    /// Bytes read (never more than the credit the runner granted).
    Data(StreamId, Vec<u8>),
    /// The local side closed its sending half.
    End(StreamId),
    /// Reading failed (the connection was reset).
    Failed(StreamId),
}

/// One local connection in mux mode, as its runner sees it.
struct Conn {
    /// Agent → local data; `None` once the agent has closed the stream.
    to_local: Option<mpsc::Sender<Vec<u8>>>,
    /// Total bytes the reader may have read so far (its credit).
    credit: watch::Sender<u64>,
    /// Total bytes received from the reader.
    received: u64,
    /// The reader task; `None` once stopped.
    reader: Option<AbortOnDropHandle<()>>,
    /// The writer task, which ends once everything received is written and the local side
    /// shut down.
    writer: AbortOnDropHandle<()>,
    /// After the local side shut down its sending half: when to close the stream unless
    /// more data arrives (module docs, half-close).
    linger: Option<Instant>,
}

impl Conn {
    fn spawn(
        id: StreamId,
        conn: LocalConn,
        reads: &mpsc::Sender<LocalRead>,
        stats: &Arc<ForwardStats>,
    ) -> Self {
        let LocalConn { reader, writer } = conn;
        let (tx, rx) = mpsc::channel(WRITES_QUEUED);
        let (credit, credit_rx) = watch::channel(0);
        let writer =
            AbortOnDropHandle::new(tokio::spawn(write_local(writer, rx, Arc::clone(stats))));
        let reader = AbortOnDropHandle::new(tokio::spawn(read_local(
            id,
            reader,
            credit_rx,
            reads.clone(),
        )));
        Self {
            to_local: Some(tx),
            credit,
            received: 0,
            reader: Some(reader),
            writer,
            linger: None,
        }
    }

    /// Lets the reader read what the stream can take now: `room` is its free send buffer,
    /// of which what was granted and has not arrived yet is already spoken for.
    fn grant(&mut self, room: usize) {
        let granted = *self.credit.borrow();
        let outstanding = granted.saturating_sub(self.received);
        let room = room as u64;
        if room > outstanding {
            self.credit.send_replace(granted + (room - outstanding));
        }
    }

    /// Stops reading (the stream is closing); the writer still flushes.
    fn stop_reading(&mut self) {
        self.reader = None;
        self.to_local = None;
    }

    /// Ends the connection: its reader stops now, its writer once it has written what it was
    /// given. Returns the writer, which is aborted when dropped.
    fn close(mut self) -> AbortOnDropHandle<()> {
        self.stop_reading();
        self.writer
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

/// Reads the local connection into its stream, never more than its credit.
async fn read_local(
    id: StreamId,
    mut reader: Box<dyn AsyncRead + Unpin + Send>,
    mut credit: watch::Receiver<u64>,
    reads: mpsc::Sender<LocalRead>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut used = 0u64;
    loop {
        let allowed = credit.borrow_and_update().saturating_sub(used);
        if allowed == 0 {
            if credit.changed().await.is_err() {
                return;
            }
            continue;
        }
        let want = usize::try_from(allowed)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        match reader.read(buf.get_mut(..want).unwrap_or_default()).await {
            Ok(0) => {
                let _ = reads.send(LocalRead::End(id)).await;
                return;
            }
            Err(_) => {
                let _ = reads.send(LocalRead::Failed(id)).await;
                return;
            }
            Ok(n) => {
                used += n as u64;
                let data = buf.get(..n).unwrap_or_default().to_vec();
                if reads.send(LocalRead::Data(id, data)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_in_use_is_reported_before_anything_else() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let spec = ForwardSpec::parse(&format!("{port}:80")).unwrap();
        let err = bind(&spec).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on 127.0.0.1:{port}")),
            "{err}"
        );
        assert!(format!("{err:?}").contains("pick another local port"));
    }
}
