//! The emulated SSM agent, and the part of the service (MGS) that sits between it and the
//! client: one long-lived task per session.
//!
//! The task owns a protocol [`Session`] in agent role and the session's workload (a [`Shell`]
//! on a pty, or [`Ports`] to loopback TCP). Client websockets come and go: the data-channel
//! handler validates each one's token and hands it to the session's task ([`attach`], through
//! the state's [`super::tasks::SessionTasks`]); a websocket that drops just detaches, the session keeps its sequence
//! state and buffers, and the next websocket (opened with a token from ResumeSession) is
//! attached to the same session, which then retransmits whatever the client missed.
//!
//! Service duties done here: `channel_closed` to the client when the agent has closed (it
//! sent `agent_session_state` Terminating, §2.6), when TerminateSession cancels the session,
//! or when the idle timeout or maximum duration passes; the session's status in the shared
//! state; fault injection on the client's connection ([`super::faults`]).
//!
//! Invariants: only this task touches its session, workload and websocket; frames are moved
//! from the session to the websocket without ever awaiting a write while the peer might be
//! waiting for us to read (writes and reads are branches of one `select!`); local data (pty or
//! TCP) is taken only while the session has room for it, and client input only while the
//! workload can take it.

pub mod logging;
pub mod port;
pub mod shell;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::task::ready;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, Sink, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::logging::SessionLog;
use self::port::{BlockedWrite, Outcome, Ports};
use self::shell::{Shell, ShellSpec};
use super::faults::{Dice, FaultKind, FaultLayer, Verdict};
use super::state::{SandboxState, SessionInfo, SessionStatus};
use crate::clock::Clock;
use crate::protocol::version::emulated_agent_port_mode;
use crate::protocol::{
    Flag, Session, SessionConfig, SessionEvent, SessionType, channel_closed_frame,
};

/// Both halves of a websocket nobody reads or writes any more.
type SilentPath = (
    Option<SplitSink<WebSocket, Message>>,
    Option<SplitStream<WebSocket>>,
);

/// Unacknowledged messages the agent keeps in flight: 1 MiB of data, ample on loopback, and it
/// bounds the burst resent after a reconnect.
const AGENT_WINDOW: usize = 1024;
/// Largest data chunk per message (§7.5).
const CHUNK: usize = 1024;
/// Stop reading the client while this many frames wait to be written to it (a safety valve
/// only: reading must go on while the client waits for us to read, see [`Agent::on_ws`]).
const OUTBOX_HIGH_WATER: usize = 100_000;
/// Most websocket messages handled per wake-up.
const READ_BATCH: usize = 64;
/// Client data frames held back while the workload cannot take input. The client's own window
/// (10 000 unacknowledged messages) bounds this in practice; beyond it frames are dropped and
/// the client retransmits them.
const MAX_DEFERRED: usize = 20_000;
/// After a shell exits without its pty reaching end of file (a background job holds it), close
/// anyway once no output has come for this long. Generous: on a loaded machine the pty reader
/// may take a while to hand over the shell's last bytes (its exit status marker among them).
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// A closed session waits this long for a client to come back and receive `channel_closed`.
const CLOSED_GRACE: Duration = Duration::from_secs(10);
/// How long the last frames and `channel_closed` may take to reach a client that reads
/// slowly. The agent gives up waiting for acknowledgements after 2 s (§2.6), but what it sent
/// is on its way: the service delivers it at the client's pace rather than dropping the
/// connection, which would leave the client resuming a session that is over.
const FINAL_WRITE: Duration = Duration::from_secs(60);
/// How long the close frame of a stopping sandbox may take to write.
const SHUTDOWN_WRITE: Duration = Duration::from_secs(2);

/// Idle timeout when neither the document nor the account preferences say (§10).
const DEFAULT_IDLE_MINUTES: u64 = 20;

/// Output text of `channel_closed` for the service-side endings.
pub const TERMINATED_MESSAGE: &str = "The session was terminated.";
/// Output of `channel_closed` after the idle timeout.
pub const IDLE_MESSAGE: &str = "Your session timed out due to inactivity and has been terminated.";
/// Output of `channel_closed` after the maximum session duration.
pub const MAX_DURATION_MESSAGE: &str =
    "Your session has reached its maximum duration and has been terminated.";

/// Hands a websocket whose token was accepted to its session's agent task, starting the task
/// on the session's first open. Gives the websocket back if the session's task has ended.
pub(crate) fn attach(state: &SandboxState, info: SessionInfo, ws: WebSocket) -> Option<WebSocket> {
    let session_id = info.session_id.clone();
    let owner = state.clone();
    state
        .agents()
        .attach(&session_id, ws, move |inbox, inbox_tx, shutdown| {
            Agent::new(owner, info, inbox, shutdown).run(inbox_tx)
        })
}

/// Why a session task ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// The agent closed (shell exited, TerminateSession flag).
    AgentClosed,
    /// TerminateSession (the state has already ended it).
    Terminated,
    /// No activity for the idle timeout.
    Idle,
    /// The maximum session duration passed.
    MaxDuration,
    /// The protocol or the workload failed.
    Failed(String),
    /// The sandbox is stopping.
    Shutdown,
}

struct Agent {
    state: SandboxState,
    info: SessionInfo,
    session: Session,
    clock: Clock,
    attach_rx: mpsc::Receiver<WebSocket>,
    shutdown: CancellationToken,
    cancel: CancellationToken,

    sink: Option<SplitSink<WebSocket, Message>>,
    stream: Option<SplitStream<WebSocket>>,
    /// A websocket left open but silent by the `blackhole-every` fault.
    silent: Option<SilentPath>,
    /// When the `blackhole-every` fault next silences the path.
    blackhole_at: Option<Instant>,
    outbox: VecDeque<Message>,
    layer: Option<FaultLayer>,
    dice: Dice,
    handshake_started: bool,

    client_version: Option<String>,
    shell: Option<Shell>,
    shell_output: Option<mpsc::Receiver<Vec<u8>>>,
    shell_exit: Option<oneshot::Receiver<u32>>,
    exit_grace: Option<Instant>,
    shell_started: Option<Instant>,
    ports: Option<Ports>,
    blocked: Option<BlockedWrite>,
    deferred: VecDeque<Vec<u8>>,
    closing: bool,
    /// The real agent's pause after each message it reads from its workload, if paced.
    pause: Option<Duration>,
    /// Paced mux mode: when the next smux chunk may be sent.
    next_send: Option<Instant>,
    /// Shell data chunks seen each way (the `corrupt-every` fault).
    chunks_in: u64,
    chunks_out: u64,
    corrupt_every: Option<u64>,

    started: Instant,
    last_activity: Instant,
    idle: Duration,
    max_duration: Option<Duration>,
}

fn minutes(v: Option<&Value>) -> Option<Duration> {
    let text = match v? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let m: u64 = text.parse().ok().filter(|m| *m > 0)?;
    Some(Duration::from_secs(m.saturating_mul(60)))
}

/// `{{ name }}` → the parameter's value (or its declared default) in every string of `v`.
fn substitute(v: &Value, params: &BTreeMap<String, Vec<String>>, declared: &Value) -> Value {
    match v {
        Value::String(s) => {
            let mut out = s.clone();
            while let Some(start) = out.find("{{") {
                let Some(len) = out.get(start..).and_then(|r| r.find("}}")) else {
                    break;
                };
                let name = out
                    .get(start + 2..start + len)
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                let value = params
                    .get(&name)
                    .and_then(|v| v.first().cloned())
                    .or_else(|| {
                        declared
                            .pointer(&format!("/{name}/default"))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                out.replace_range(start..start + len + 2, &value);
            }
            Value::String(out)
        }
        Value::Array(a) => {
            Value::Array(a.iter().map(|x| substitute(x, params, declared)).collect())
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), substitute(x, params, declared)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A relative path below the bucket from an S3 key prefix, without `..` or roots.
fn safe_prefix(prefix: &str) -> PathBuf {
    Path::new(prefix)
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect()
}

async fn ws_next(
    stream: Option<&mut SplitStream<WebSocket>>,
) -> Option<Result<Message, axum::Error>> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn recv_opt<T>(rx: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn exit_opt(rx: Option<&mut oneshot::Receiver<u32>>) -> Option<u32> {
    match rx {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    }
}

async fn reserve_opt(tx: Option<mpsc::Sender<Vec<u8>>>) -> Option<mpsc::OwnedPermit<Vec<u8>>> {
    match tx {
        Some(tx) => tx.reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Writes the outbox to the sink and flushes. Cancel-safe: a message leaves the outbox only
/// when the sink has taken it.
async fn write_outbox(
    sink: Option<&mut SplitSink<WebSocket, Message>>,
    outbox: &mut VecDeque<Message>,
) -> Result<(), axum::Error> {
    let Some(sink) = sink else {
        return std::future::pending().await;
    };
    std::future::poll_fn(|cx| {
        loop {
            if outbox.is_empty() {
                return Sink::poll_flush(std::pin::Pin::new(&mut *sink), cx);
            }
            ready!(Sink::poll_ready(std::pin::Pin::new(&mut *sink), cx))?;
            let Some(m) = outbox.pop_front() else {
                continue;
            };
            Sink::start_send(std::pin::Pin::new(&mut *sink), m)?;
        }
    })
    .await
}

fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl Agent {
    fn new(
        state: SandboxState,
        info: SessionInfo,
        attach_rx: mpsc::Receiver<WebSocket>,
        shutdown: CancellationToken,
    ) -> Self {
        let seed = {
            let mut b = [0u8; 8];
            let _ = getrandom::fill(&mut b);
            u64::from_le_bytes(b)
        };
        let mut config = SessionConfig::agent(&info.session_id, &info.target, seed);
        config.max_outgoing_messages = AGENT_WINDOW;
        let session = Session::new(config);
        let cancel = state
            .session_cancelled(&info.session_id)
            .unwrap_or_default();
        let doc = info.document.json();
        let overrides = state.timeout_overrides();
        let prefs = state
            .world()
            .document("SSM-SessionManagerRunShell")
            .map(super::world::Document::json)
            .unwrap_or(Value::Null);
        let idle = overrides
            .idle
            .or_else(|| minutes(doc.pointer("/inputs/idleSessionTimeout")))
            .or_else(|| minutes(prefs.pointer("/inputs/idleSessionTimeout")))
            .unwrap_or(Duration::from_secs(DEFAULT_IDLE_MINUTES * 60));
        let max_duration = overrides
            .max_duration
            .or_else(|| minutes(doc.pointer("/inputs/maxSessionDuration")));
        // The dice continue across reconnects; the seed makes a faulty run repeatable per
        // session id.
        let fault_seed = state.faults().seed
            ^ info
                .session_id
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
        let now = Instant::now();
        let pause = state.pacing().pause();
        let corrupt_every = state.faults().corrupt_every;
        Self {
            state,
            info,
            session,
            clock: Clock::new(),
            attach_rx,
            shutdown,
            cancel,
            sink: None,
            silent: None,
            blackhole_at: None,
            stream: None,
            outbox: VecDeque::new(),
            layer: None,
            dice: Dice::new(fault_seed),
            handshake_started: false,
            client_version: None,
            shell: None,
            shell_output: None,
            shell_exit: None,
            exit_grace: None,
            shell_started: None,
            ports: None,
            blocked: None,
            deferred: VecDeque::new(),
            closing: false,
            pause,
            next_send: None,
            chunks_in: 0,
            chunks_out: 0,
            corrupt_every,
            started: now,
            last_activity: now,
            idle,
            max_duration,
        }
    }

    fn id(&self) -> &str {
        &self.info.session_id
    }

    async fn run(mut self, registry_tx: mpsc::Sender<WebSocket>) {
        tracing::info!(session_id = %self.id(), target = %self.info.target, document = %self.info.document.name, "sandbox agent started");
        let ending = self.main_loop().await;
        self.finish(&ending).await;
        self.state
            .agents()
            .remove(&self.info.session_id, &registry_tx);
        tracing::info!(session_id = %self.id(), ?ending, "sandbox agent stopped");
    }

    async fn main_loop(&mut self) -> Ending {
        loop {
            if let Some(end) = self.drain().await {
                return end;
            }
            self.move_transmits();
            let now = Instant::now();
            if self.layer.as_ref().is_some_and(|l| l.drop_due(now)) {
                self.drop_connection("time-based drop");
            }
            if self.layer.as_ref().is_some_and(|l| l.close_due(now)) {
                self.service_close();
            }
            if self.blackhole_at.is_some_and(|t| now >= t) {
                self.blackhole_at = self.state.faults().blackhole_every.map(|d| now + d);
                if self.sink.is_some() {
                    self.go_silent();
                }
            }
            let mut deadline = self
                .session
                .poll_timeout()
                .map(|ms| self.clock.instant_at(ms));
            if let Some(p) = &self.ports {
                deadline = min_instant(
                    deadline,
                    p.poll_timeout().map(|ms| self.clock.instant_at(ms)),
                );
            }
            deadline = min_instant(
                deadline,
                self.layer.as_ref().and_then(FaultLayer::next_deadline),
            );
            deadline = min_instant(deadline, self.exit_grace);
            deadline = min_instant(deadline, self.blackhole_at);
            deadline = min_instant(deadline, self.next_send);
            if !self.closing {
                deadline = min_instant(deadline, Some(self.last_activity + self.idle));
                deadline = min_instant(deadline, self.max_duration.map(|m| self.started + m));
            }
            let room = self.session.send_capacity() >= CHUNK;
            let take_shell = room && !self.closing && self.shell_output.is_some();
            let take_port = !self.closing
                && self
                    .ports
                    .as_ref()
                    .is_some_and(|p| p.can_take_event() && (!p.is_basic() || room));
            let read_ws = self.outbox.len() < OUTBOX_HIGH_WATER;
            let blocked_tx = self.blocked.as_ref().map(|b| b.tx.clone());
            let writing = !self.outbox.is_empty();

            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Ending::Shutdown,
                () = self.cancel.cancelled() => return Ending::Terminated,
                ws = self.attach_rx.recv() => {
                    if let Some(ws) = ws {
                        self.attach(ws);
                    }
                }
                r = write_outbox(self.sink.as_mut(), &mut self.outbox), if writing => {
                    if let Err(e) = r {
                        self.drop_connection(&format!("write failed: {e}"));
                    }
                }
                msg = ws_next(self.stream.as_mut()), if read_ws => {
                    self.on_ws(msg);
                    self.take_ready_ws();
                }
                permit = reserve_opt(blocked_tx) => {
                    if let (Some(permit), Some(b)) = (permit, self.blocked.take()) {
                        permit.send(b.data);
                    } else {
                        // The connection's writer is gone: its bytes have nowhere to go.
                        self.blocked = None;
                    }
                }
                out = recv_opt(self.shell_output.as_mut()), if take_shell => match out {
                    Some(mut data) => {
                        self.last_activity = Instant::now();
                        if let Some(grace) = &mut self.exit_grace {
                            // Still talking: the grace counts from the last output.
                            *grace = (*grace).max(Instant::now() + EXIT_GRACE);
                        }
                        self.maybe_corrupt(&mut data, false);
                        self.session.send_output(&data, self.clock.now());
                    }
                    None => {
                        self.shell_output = None;
                        self.begin_close();
                    }
                },
                code = exit_opt(self.shell_exit.as_mut()) => {
                    self.shell_exit = None;
                    tracing::info!(session_id = %self.info.session_id, exit_code = ?code, "sandbox shell exited");
                    // A paced reader does not read before its first-read delay: the grace
                    // starts once it reads.
                    let reading_from = self
                        .shell_started
                        .filter(|_| self.pause.is_some())
                        .map(|t| t + shell::FIRST_READ_DELAY);
                    let from = reading_from.map_or(Instant::now(), |t| t.max(Instant::now()));
                    self.exit_grace = Some(from + EXIT_GRACE);
                }
                ev = recv_opt(self.ports.as_mut().map(|p| &mut p.events)), if take_port => {
                    if let (Some(ev), Some(ports)) = (ev, self.ports.as_mut()) {
                        self.last_activity = Instant::now();
                        let (data, outcome) = ports.event(ev);
                        if let Some(data) = data {
                            self.session.send_output(&data, self.clock.now());
                        }
                        if let Some(end) = self.apply(outcome) {
                            return end;
                        }
                    }
                }
                () = sleep_opt(deadline) => {
                    if let Some(end) = self.on_timer() {
                        return end;
                    }
                }
            }
        }
    }

    fn on_timer(&mut self) -> Option<Ending> {
        let now = Instant::now();
        let now_ms = self.clock.now();
        self.session.handle_timeout(now_ms);
        if let Some(p) = &mut self.ports {
            p.handle_timeout(now_ms);
        }
        if self.exit_grace.is_some_and(|t| now >= t) {
            self.exit_grace = None;
            self.shell_output = None;
            self.begin_close();
        }
        if !self.closing {
            if now >= self.last_activity + self.idle {
                return Some(Ending::Idle);
            }
            if self.max_duration.is_some_and(|m| now >= self.started + m) {
                return Some(Ending::MaxDuration);
            }
        }
        None
    }

    /// Closes like the real agent: flush, then `agent_session_state` Terminating (the session
    /// reports [`SessionEvent::Closed`]).
    fn begin_close(&mut self) {
        if self.closing {
            return;
        }
        self.closing = true;
        if let Err(e) = self.session.close(self.clock.now()) {
            tracing::debug!(session_id = %self.info.session_id, error = %e, "close refused");
        }
    }

    fn attach(&mut self, ws: WebSocket) {
        // A silent path the client has given up on closes now.
        self.silent = None;
        let reattach = self.sink.is_some() || self.handshake_started;
        if self.sink.is_some() {
            self.drop_connection("replaced by a newer connection");
        }
        let (sink, stream) = ws.split();
        self.sink = Some(sink);
        self.stream = Some(stream);
        let faults = self.state.faults();
        if self.blackhole_at.is_none() {
            self.blackhole_at = faults.blackhole_every.map(|d| Instant::now() + d);
        }
        let withhold_handshake = faults.withhold_handshake;
        self.layer = faults
            .any_channel_fault()
            .then(|| FaultLayer::new(faults, Instant::now()));
        let now = self.clock.now();
        if !self.handshake_started {
            self.handshake_started = true;
            if withhold_handshake {
                tracing::info!(session_id = %self.info.session_id, "fault injection: handshake withheld");
            } else {
                self.begin_handshake(now);
            }
        } else if reattach {
            tracing::info!(session_id = %self.info.session_id, "client reattached");
            self.session.handle_reconnected(now);
        }
    }

    fn begin_handshake(&mut self, now: u64) {
        let doc = self.info.document.json();
        let session_type = SessionType::from_wire(
            doc.get("sessionType")
                .and_then(Value::as_str)
                .unwrap_or("Standard_Stream"),
        );
        let kms = doc
            .pointer("/inputs/kmsKeyId")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(str::to_owned);
        let properties = if session_type == SessionType::Port {
            substitute(
                doc.get("properties").unwrap_or(&Value::Null),
                &self.info.parameters,
                doc.get("parameters").unwrap_or(&Value::Null),
            )
        } else {
            Value::Null
        };
        let version = self.info.agent_version.clone();
        if let Err(e) = self
            .session
            .begin_handshake(session_type, properties, kms, &version, now)
        {
            tracing::warn!(session_id = %self.info.session_id, error = %e, "handshake not started");
        }
    }

    fn drop_connection(&mut self, why: &str) {
        if self.sink.is_none() && self.stream.is_none() {
            return;
        }
        tracing::info!(session_id = %self.info.session_id, reason = why, "client websocket detached");
        self.sink = None;
        self.stream = None;
        self.outbox.clear();
        self.layer = None;
        self.state.mark_disconnected(&self.info.session_id);
    }

    /// Handles the websocket messages already buffered, without waiting: one loop turn (and
    /// one write of the acknowledgements) per burst instead of per message.
    fn take_ready_ws(&mut self) {
        for _ in 0..READ_BATCH {
            if self.outbox.len() >= OUTBOX_HIGH_WATER {
                return;
            }
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let Some(msg) = stream.next().now_or_never() else {
                return;
            };
            self.on_ws(msg);
        }
    }

    fn on_ws(&mut self, msg: Option<Result<Message, axum::Error>>) {
        let bytes: Vec<u8> = match msg {
            Some(Ok(Message::Binary(b))) => b.to_vec(),
            // The plugin parses text frames like binary ones; so does the agent.
            Some(Ok(Message::Text(t))) => t.as_str().as_bytes().to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return,
            Some(Ok(Message::Close(_))) | None => {
                self.drop_connection("closed by the client");
                return;
            }
            Some(Err(e)) => {
                self.drop_connection(&format!("read failed: {e}"));
                return;
            }
        };
        let Some(layer) = &mut self.layer else {
            self.incoming(bytes);
            return;
        };
        let (frames, verdict) = layer.incoming(
            bytes,
            &mut self.dice,
            self.state.fault_counters(),
            &self.info.session_id,
        );
        for f in frames {
            self.incoming(f);
        }
        if verdict == Verdict::Drop {
            self.fault_drop();
        }
    }

    /// Feeds a frame to the session, or holds client data back while the workload cannot take
    /// input.
    ///
    /// Why not just let the session refuse it (no acknowledgement, G12)? Every refused message
    /// costs a retransmission, and senders retransmit only the oldest message per 100 ms tick,
    /// so a burst of refusals turns into a crawl. Why not stop reading the websocket? The
    /// acknowledgements for our own output arrive on it too, and without them our window stays
    /// full, the target's bytes cannot be read, the target stops reading ours, and the input
    /// never drains: a deadlock. So acknowledgements and control messages are always handled
    /// at once, and only client data waits here, bounded by the client's own window.
    fn incoming(&mut self, frame: Vec<u8>) {
        let is_data = frame
            .get(4..36)
            .is_some_and(|t| t.starts_with(b"input_stream_data"));
        if is_data && (self.blocked.is_some() || !self.deferred.is_empty()) {
            if self.deferred.len() < MAX_DEFERRED {
                self.deferred.push_back(frame);
            } else {
                tracing::debug!(session_id = %self.info.session_id, "client data dropped: too much held back");
            }
            return;
        }
        self.session.handle_incoming(&frame, self.clock.now());
    }

    /// Cuts the connection as a network failure would, but only after the frames already
    /// handed to it (acknowledgements of what the client sent) are out: the client's reads
    /// then end in the middle of a healthy stream.
    fn fault_drop(&mut self) {
        self.state
            .record_fault(FaultKind::Drop, &self.info.session_id);
        self.move_transmits();
        let sink = self.sink.take();
        let mut outbox = std::mem::take(&mut self.outbox);
        self.drop_connection("fault injection");
        if let Some(mut sink) = sink {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_millis(200),
                    write_outbox(Some(&mut sink), &mut outbox),
                )
                .await;
            });
        }
    }

    /// The `corrupt-every` fault on shell data (`input`: from the client).
    fn maybe_corrupt(&mut self, data: &mut [u8], input: bool) {
        let Some(n) = self.corrupt_every else {
            return;
        };
        let count = if input {
            &mut self.chunks_in
        } else {
            &mut self.chunks_out
        };
        *count += 1;
        if (*count).is_multiple_of(n) && super::faults::corrupt(data) {
            self.state
                .record_fault(FaultKind::Corrupt, &self.info.session_id);
        }
    }

    /// Closes the client's websocket as the service does from time to time: the frames
    /// already handed to it go out, then a close frame with code 1000. The session stays; the
    /// client resumes it with ResumeSession.
    fn service_close(&mut self) {
        self.state
            .record_fault(FaultKind::ServiceClose, &self.info.session_id);
        self.move_transmits();
        let sink = self.sink.take();
        let mut outbox = std::mem::take(&mut self.outbox);
        self.drop_connection("closed by the service");
        if let Some(mut sink) = sink {
            outbox.push_back(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            })));
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(FINAL_WRITE, write_outbox(Some(&mut sink), &mut outbox))
                        .await;
            });
        }
    }

    /// The path dies silently: the websocket stays open, unread and unwritten, until the
    /// client gives up on it and resumes on a new one (which replaces it).
    fn go_silent(&mut self) {
        self.state
            .record_fault(FaultKind::Blackhole, &self.info.session_id);
        tracing::info!(session_id = %self.info.session_id, "fault injection: the path went silent");
        self.silent = Some((self.sink.take(), self.stream.take()));
        self.outbox.clear();
        self.layer = None;
        self.state.mark_disconnected(&self.info.session_id);
    }

    /// Moves frames from the session (through the fault layer) to the outbox. Without a
    /// client they are discarded: unacknowledged data stays in the session for resending.
    fn move_transmits(&mut self) {
        if self.sink.is_none() {
            while self.session.poll_transmit().is_some() {}
            return;
        }
        let now = Instant::now();
        let Some(layer) = &mut self.layer else {
            while let Some(f) = self.session.poll_transmit() {
                self.outbox.push_back(Message::Binary(f));
            }
            return;
        };
        while let Some(f) = self.session.poll_transmit() {
            layer.outgoing(
                f.to_vec(),
                now,
                &mut self.dice,
                self.state.fault_counters(),
                &self.info.session_id,
            );
        }
        while let Some(f) = layer.poll_ready(now) {
            self.outbox.push_back(Message::Binary(f.into()));
        }
    }

    /// Handles session and smux events until there are none or input has to wait.
    async fn drain(&mut self) -> Option<Ending> {
        loop {
            self.pump_mux();
            if self.blocked.is_some() {
                return None;
            }
            if let Some(ports) = &mut self.ports
                && let Some(outcome) = ports.next_mux_event()
            {
                if let Some(end) = self.apply(outcome) {
                    return Some(end);
                }
                continue;
            }
            if let Some(ev) = self.session.poll_event() {
                if let Some(end) = self.on_event(ev).await {
                    return Some(end);
                }
                continue;
            }
            let frame = self.deferred.pop_front()?;
            self.session.handle_incoming(&frame, self.clock.now());
        }
    }

    /// Mux mode: moves smux output into the session while it has room for whole messages.
    /// Paced like the real agent (`transferDataToMgs`: read at most 1024 bytes, send one
    /// message, sleep 1 ms), one message per pause.
    fn pump_mux(&mut self) {
        let Some(ports) = &mut self.ports else {
            return;
        };
        if self.next_send.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.next_send = None;
        while self.session.send_capacity() >= CHUNK {
            let Some(bytes) = ports.poll_transmit(CHUNK) else {
                break;
            };
            self.session.send_output(&bytes, self.clock.now());
            if let Some(pause) = self.pause {
                self.next_send = Some(Instant::now() + pause);
                break;
            }
        }
    }

    fn apply(&mut self, outcome: Outcome) -> Option<Ending> {
        let now = self.clock.now();
        for _ in 0..outcome.connect_errors {
            if let Err(e) = self.session.send_flag(Flag::ConnectToPortError, now) {
                tracing::debug!(error = %e, "ConnectToPortError not sent");
            }
        }
        if let Some(b) = outcome.blocked {
            self.blocked = Some(b);
        }
        outcome.fatal.map(Ending::Failed)
    }

    async fn on_event(&mut self, ev: SessionEvent) -> Option<Ending> {
        let now = self.clock.now();
        match ev {
            SessionEvent::HandshakeResponse { client_version, .. } => {
                self.client_version = Some(client_version);
            }
            SessionEvent::KmsDecryptRequested {
                key_id,
                ciphertext_blob,
                encryption_context,
            } => {
                let result =
                    self.state
                        .kms_decrypt(&ciphertext_blob, Some(&key_id), &encryption_context);
                let answer = match result {
                    Ok((_, mut plaintext)) => {
                        let r = self.session.provide_data_key(&plaintext, Vec::new(), now);
                        zeroize::Zeroize::zeroize(&mut plaintext);
                        r
                    }
                    Err(e) => self
                        .session
                        .fail_kms(&format!("kms:Decrypt failed: {e}"), now),
                };
                if let Err(e) = answer {
                    tracing::warn!(session_id = %self.info.session_id, error = %e, "KMS answer not accepted");
                }
            }
            SessionEvent::Ready {
                session_type,
                encrypted,
                ..
            } => {
                tracing::info!(session_id = %self.info.session_id, session_type = session_type.as_str(), encrypted, "sandbox session ready");
                return self.start_workload(&session_type).await;
            }
            SessionEvent::Input(mut data) => {
                self.last_activity = Instant::now();
                if self.shell.is_some() {
                    self.maybe_corrupt(&mut data, true);
                }
                if let Some(shell) = &self.shell {
                    match shell.input.try_send(data) {
                        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                        Err(mpsc::error::TrySendError::Full(data)) => {
                            self.blocked = Some(BlockedWrite {
                                tx: shell.input.clone(),
                                data,
                            });
                        }
                    }
                } else if let Some(ports) = &mut self.ports {
                    let outcome = ports.input(data, now);
                    return self.apply(outcome);
                }
            }
            SessionEvent::Resize(size) => {
                self.last_activity = Instant::now();
                if let Some(shell) = &self.shell {
                    shell.resize(size.cols, size.rows);
                }
            }
            SessionEvent::Flag(Flag::TerminateSession) => {
                tracing::info!(session_id = %self.info.session_id, "client asked to terminate");
                self.shell_output = None;
                self.begin_close();
            }
            SessionEvent::Flag(Flag::DisconnectToPort) => {
                if let Some(ports) = &mut self.ports {
                    ports.disconnect();
                }
            }
            SessionEvent::Closed => return Some(Ending::AgentClosed),
            SessionEvent::Error(e) => return Some(Ending::Failed(e.to_string())),
            SessionEvent::FrameDropped(e) => {
                tracing::debug!(session_id = %self.info.session_id, error = %e, "dropped a frame from the client");
            }
            _ => {}
        }
        None
    }

    async fn start_workload(&mut self, session_type: &SessionType) -> Option<Ending> {
        if session_type.is_shell_like() {
            let doc = self.info.document.json();
            let inputs = doc.get("inputs").cloned().unwrap_or(Value::Null);
            let run_as = (inputs.get("runAsEnabled") == Some(&Value::Bool(true)))
                .then(|| {
                    inputs
                        .get("runAsDefaultUser")
                        .and_then(Value::as_str)
                        .filter(|u| !u.is_empty())
                        .map(str::to_owned)
                })
                .flatten();
            let profile = inputs
                .pointer("/shellProfile/linux")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let paths = self.state.data_paths();
            let log = SessionLog::new(
                &self.state,
                &self.info,
                &inputs,
                run_as.as_deref().unwrap_or("ssm-user"),
            );
            let spec = ShellSpec {
                home: paths.homes.join(safe_prefix(&self.info.target)),
                run_as,
                profile,
                log: std::sync::Arc::new(log),
                size: (80, 24),
                pause: self.pause,
            };
            return match Shell::spawn(&spec) {
                Ok((shell, io)) => {
                    tracing::info!(session_id = %self.info.session_id, pid = ?shell.pid(), ipc = %spec.log.ipc_path().display(), "sandbox shell started");
                    self.shell = Some(shell);
                    self.shell_started = Some(Instant::now());
                    self.shell_output = Some(io.output);
                    self.shell_exit = Some(io.exit);
                    None
                }
                Err(e) => Some(Ending::Failed(format!("cannot start a shell: {e}"))),
            };
        }
        if *session_type == SessionType::Port {
            let doc = self.info.document.json();
            let props = substitute(
                doc.get("properties").unwrap_or(&Value::Null),
                &self.info.parameters,
                doc.get("parameters").unwrap_or(&Value::Null),
            );
            let get = |k: &str| props.get(k).and_then(Value::as_str).map(str::to_owned);
            let port = get("portNumber").unwrap_or_default();
            let host = get("host");
            let target = port::resolve_target(host.as_deref(), &port).await;
            let mode = emulated_agent_port_mode(
                &self.info.agent_version,
                &get("type").unwrap_or_default(),
                self.client_version.as_deref().unwrap_or_default(),
            );
            tracing::info!(session_id = %self.info.session_id, ?mode, target = ?target, "sandbox port session");
            let keepalive_timing = self.state.timeout_overrides().mux_keepalive;
            self.ports = Some(Ports::new(
                target,
                mode,
                self.pause,
                keepalive_timing,
                self.clock.now(),
            ));
            return None;
        }
        Some(Ending::Failed(format!(
            "the sandbox agent cannot run {} sessions",
            session_type.as_str()
        )))
    }

    /// The service's part of the ending: status, `channel_closed`, closing the websocket, and
    /// stopping the workload.
    async fn finish(&mut self, ending: &Ending) {
        // Stop the workload first: no shell outlives its session.
        self.shell = None;
        self.shell_output = None;
        self.shell_exit = None;
        self.ports = None;
        self.blocked = None;
        let output = match ending {
            Ending::AgentClosed | Ending::Shutdown => String::new(),
            Ending::Terminated => TERMINATED_MESSAGE.to_owned(),
            Ending::Idle => IDLE_MESSAGE.to_owned(),
            Ending::MaxDuration => MAX_DURATION_MESSAGE.to_owned(),
            Ending::Failed(why) => format!("The session failed: {why}"),
        };
        if *ending == Ending::AgentClosed && self.sink.is_none() {
            // Give a client that is reconnecting the chance to see the end.
            let _ = tokio::time::timeout(CLOSED_GRACE, async {
                tokio::select! {
                    ws = self.attach_rx.recv() => if let Some(ws) = ws { self.attach(ws) },
                    () = self.shutdown.cancelled() => {}
                }
            })
            .await;
        }
        let status = match ending {
            Ending::Failed(_) => SessionStatus::Failed,
            _ => SessionStatus::Terminated,
        };
        // Ending before the last write keeps a racing reconnect from attaching.
        self.state.end_session(&self.info.session_id, status);
        if self.sink.is_some() {
            self.move_transmits();
            if let Some(layer) = &mut self.layer {
                // Whatever the faults still hold goes out now.
                let far = Instant::now() + Duration::from_secs(3600);
                while let Some(f) = layer.poll_ready(far) {
                    self.outbox.push_back(Message::Binary(f.into()));
                }
            }
            if *ending != Ending::Shutdown {
                let frame = channel_closed_frame(
                    &self.info.session_id,
                    &self.info.target,
                    &output,
                    self.clock.now(),
                    uuid::Uuid::new_v4(),
                );
                self.outbox.push_back(Message::Binary(frame.into()));
            }
            let (code, reason) = if *ending == Ending::Shutdown {
                (close_code::AWAY, "the sandbox is stopping")
            } else {
                (close_code::NORMAL, "session ended")
            };
            self.outbox.push_back(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })));
            self.final_write().await;
        }
        self.sink = None;
        self.stream = None;
    }

    /// Writes the outbox (ending with our close frame), then waits for the client's close, as
    /// a websocket server closes (RFC 6455 §7.1.1). What the client sends meanwhile is read and
    /// dropped: a client that stops reading until its acknowledgements are written must not
    /// deadlock the last write, and a socket closed with unread input is reset, which throws
    /// away what the client had not read yet (`channel_closed` among it).
    async fn final_write(&mut self) {
        let (sink, outbox, stream) = (&mut self.sink, &mut self.outbox, &mut self.stream);
        let shutdown = self.shutdown.clone();
        if shutdown.is_cancelled() {
            // The sandbox is stopping: say so, but wait for nobody.
            let _ = tokio::time::timeout(SHUTDOWN_WRITE, write_outbox(sink.as_mut(), outbox)).await;
            return;
        }
        let deliver = async {
            let mut written = false;
            loop {
                tokio::select! {
                    r = write_outbox(sink.as_mut(), outbox), if !written => {
                        if r.is_err() {
                            return;
                        }
                        written = true;
                    }
                    msg = ws_next(stream.as_mut()) => {
                        if !matches!(msg, Some(Ok(ref m)) if !matches!(m, Message::Close(_))) {
                            // The client closed too, or is gone.
                            return;
                        }
                    }
                }
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => {}
            _ = tokio::time::timeout(FINAL_WRITE, deliver) => {}
        }
    }
}

/// Why a data channel was refused, for the log.
pub(crate) fn policy_close(reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: close_code::POLICY,
        reason: reason.into(),
    }))
}

/// Sends and flushes one message, ignoring errors (the connection is being refused anyway).
pub(crate) async fn send_and_close(ws: &mut WebSocket, msg: Message) {
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.send(msg)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_substituted_with_defaults() {
        let declared = serde_json::json!({"portNumber": {"default": "80"}, "localPortNumber": {"default": "0"}});
        let props = serde_json::json!({"portNumber": "{{ portNumber }}", "localPortNumber": "{{localPortNumber}}", "type": "LocalPortForwarding"});
        let params = BTreeMap::from([("portNumber".to_owned(), vec!["8080".to_owned()])]);
        let out = substitute(&props, &params, &declared);
        assert_eq!(
            out,
            serde_json::json!({"portNumber": "8080", "localPortNumber": "0", "type": "LocalPortForwarding"})
        );
    }

    #[test]
    fn prefixes_cannot_escape_the_bucket() {
        assert_eq!(safe_prefix("sudo/"), PathBuf::from("sudo"));
        assert_eq!(safe_prefix("/../../etc/x"), PathBuf::from("etc/x"));
        assert_eq!(safe_prefix(""), PathBuf::new());
    }

    #[test]
    fn minutes_parse_strings_and_numbers() {
        assert_eq!(
            minutes(Some(&serde_json::json!("20"))),
            Some(Duration::from_secs(1200))
        );
        assert_eq!(
            minutes(Some(&serde_json::json!(1))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(minutes(Some(&serde_json::json!(""))), None);
        assert_eq!(minutes(None), None);
    }
}
