//! The task that owns one websocket and its protocol session.
//!
//! Invariants: only this task touches the websocket and the [`Session`]; every frame the
//! session produces is written before the task waits again; events leave the session only as
//! fast as the caller takes them (at most one is parked in `pending_event`), so the session's
//! own cap on undelivered bytes becomes back-pressure on the agent: while the session is
//! backlogged the websocket is not read, so the agent is slowed by TCP flow control, as it is
//! by the plugin, whose read loop blocks on its writes (never by refusing messages, which
//! leaves holes the agent refills at one message per resend tick); input is offered to the
//! session only while it has room, the rest waits in `pending_input`; once the session has
//! ended (channel_closed) nothing more is read.
//!
//! No write waits forever: every websocket write and flush is bounded by
//! [`SessionOptions::write_timeout`], and one that does not finish in time counts as a dropped
//! connection (the driver resumes on a new one). Reconnecting obeys cancellation, so a caller
//! stopping the session is never kept waiting by the backoff.
//!
//! Each wake-up takes everything already queued (input while the session has room, up to
//! `READ_BATCH` buffered websocket messages) before one flush: per-message loop turns and
//! writes, not the protocol, were what limited forward throughput.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::transport::{self, WsStream};
use super::{CloseReason, EngineError, EngineEvent, InputItem, SessionCommand, SessionOptions};
use crate::aws::{AwsError, DataKey, SessionTarget, SsmApi};
use crate::clock::Clock;
use crate::net::{NetError, Network};
use crate::protocol::{Session, SessionConfig, SessionEvent, SessionState};

/// Environment variable: `fixed` gives sessions the plugin's fixed outgoing window (about
/// 10 000 messages) instead of the adaptive byte window, to compare the two.
pub const ENV_WINDOW: &str = "SSMTUI_OUTGOING_WINDOW";

/// Most websocket messages handled per wake-up before the answers are flushed.
const READ_BATCH: usize = 64;
/// The longest wait for a close frame to be written to a connection being replaced or ended.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The channels connecting a driver to its handle.
#[derive(Debug)]
pub struct Channels {
    /// Bytes to send.
    pub input: mpsc::Receiver<InputItem>,
    /// Control commands.
    pub commands: mpsc::Receiver<SessionCommand>,
    /// Events out.
    pub events: mpsc::Sender<EngineEvent>,
    /// Stops the driver.
    pub cancel: CancellationToken,
}

/// A random 64-bit seed for message ids and backoff jitter.
fn random_seed() -> u64 {
    let mut buf = [0u8; 8];
    if getrandom::fill(&mut buf).is_err() {
        // Ids only need to be unique per session; time is an acceptable fallback.
        return Clock::new().now();
    }
    u64::from_le_bytes(buf)
}

/// One session's driver.
pub struct Driver {
    api: Arc<dyn SsmApi>,
    session_id: String,
    stream_url: String,
    network: Network,
    options: SessionOptions,
    session: Session,
    ws: WsStream,
    clock: Clock,
    ch: Channels,
    kms_tx: mpsc::Sender<Result<DataKey, AwsError>>,
    kms_rx: mpsc::Receiver<Result<DataKey, AwsError>>,
    kms_error: Option<AwsError>,
    pending_input: Option<(Vec<u8>, usize)>,
    pending_event: Option<EngineEvent>,
    input_closed: bool,
    last_received: Instant,
    /// Whether the service has answered a ping on this session (then silence means a dead
    /// path, see [`SessionOptions::dead_after`]).
    pong_seen: bool,
    stall_reported: bool,
    reconnects: u32,
    jitter: u64,
}

impl Driver {
    /// Opens the websocket, sends the token frame and builds the driver.
    pub async fn connect(
        api: Arc<dyn SsmApi>,
        target: SessionTarget,
        options: SessionOptions,
        ch: Channels,
    ) -> Result<Self, EngineError> {
        let seed = random_seed();
        let mut config = SessionConfig::client(&target.session_id, &options.target_id, seed);
        if let Some(version) = &options.client_version {
            config.client_version.clone_from(version);
        }
        if std::env::var_os(ENV_WINDOW).is_some_and(|v| v == "fixed") {
            // The plugin's fixed window, for side-by-side comparisons (bench `paced`).
            config.min_outgoing_window = config.max_outgoing_window;
        }
        let mut session = Session::new(config);
        let network = api.network();
        let mut ws = open_with_retry(&network, &target.stream_url).await?;
        let text = session.open_data_channel_text(target.token.expose());
        bounded(options.write_timeout, ws.send(Message::Text(text.into())))
            .await
            .map_err(EngineError::Connect)?;
        let (kms_tx, kms_rx) = mpsc::channel(1);
        tracing::info!(session_id = %target.session_id, "data channel open");
        Ok(Self {
            api,
            session_id: target.session_id,
            stream_url: target.stream_url,
            network,
            options,
            session,
            ws,
            clock: Clock::new(),
            ch,
            kms_tx,
            kms_rx,
            kms_error: None,
            pending_input: None,
            pending_event: None,
            input_closed: false,
            last_received: Instant::now(),
            pong_seen: false,
            stall_reported: false,
            reconnects: 0,
            jitter: seed,
        })
    }

    /// Runs until the session ends; the last event is always [`EngineEvent::Closed`].
    pub async fn run(mut self) {
        let reason = self.run_inner().await;
        tracing::info!(session_id = %self.session_id, ?reason, "session ended");
        if let Some(ev) = self.pending_event.take() {
            let _ = self.ch.events.send(ev).await;
        }
        let _ = self.ch.events.send(EngineEvent::Closed(reason)).await;
        let _ = bounded(CLOSE_TIMEOUT, self.ws.close(None)).await;
    }

    async fn run_inner(&mut self) -> CloseReason {
        let mut ping = tokio::time::interval(self.options.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            self.take_ready_input();
            if let Err(e) = self.flush().await {
                if let Err(end) = self.reconnect(format!("write failed: {e}")).await {
                    return end;
                }
                continue;
            }
            if let Some(reason) = self.pump_events() {
                return reason;
            }
            // Taking events can release held-back data in the session, which queues its acks;
            // they must go out before we wait, or a peer waiting for them waits forever.
            if let Err(e) = self.flush().await {
                if let Err(end) = self.reconnect(format!("write failed: {e}")).await {
                    return end;
                }
                continue;
            }
            let deadline = self
                .session
                .poll_timeout()
                .map(|ms| self.clock.instant_at(ms));
            let read_ws = self.may_read_ws();
            if !read_ws {
                // Unread frames are our doing: silence from the peer proves nothing now.
                self.mark_received();
            }
            let accept_input = self.pending_input.is_none()
                && !self.input_closed
                && self.session.send_capacity() > 0;
            tokio::select! {
                biased;
                () = self.ch.cancel.cancelled() => return CloseReason::Detached,
                permit = self.ch.events.clone().reserve_owned(), if self.pending_event.is_some() => {
                    match (permit, self.pending_event.take()) {
                        (Ok(permit), Some(ev)) => {
                            permit.send(ev);
                        }
                        _ => return CloseReason::Detached,
                    }
                }
                msg = self.ws.next(), if read_ws => {
                    if let Some(reason) = self.on_ws(msg).await {
                        return reason;
                    }
                    if let Some(reason) = self.take_ready_ws().await {
                        return reason;
                    }
                }
                data = self.ch.input.recv(), if accept_input => self.on_input(data),
                Some(cmd) = self.ch.commands.recv() => {
                    if let Some(reason) = self.command(cmd).await {
                        return reason;
                    }
                }
                Some(result) = self.kms_rx.recv() => self.data_key(result),
                () = sleep_until_opt(deadline) => self.session.handle_timeout(self.clock.now()),
                _ = ping.tick() => {
                    if let Err(reason) = self.keepalive().await {
                        return reason;
                    }
                }
            }
        }
    }

    /// Handles one websocket read; a close reason when the session cannot go on.
    async fn on_ws(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<CloseReason> {
        let now = self.clock.now();
        match msg {
            Some(Ok(Message::Binary(bytes))) => {
                self.mark_received();
                self.session.handle_incoming(&bytes, now);
            }
            Some(Ok(Message::Text(text))) => {
                self.mark_received();
                self.session.handle_incoming(text.as_bytes(), now);
            }
            Some(Ok(Message::Pong(_))) => {
                self.pong_seen = true;
                self.mark_received();
            }
            Some(Ok(Message::Ping(_) | Message::Frame(_))) => {
                self.mark_received();
            }
            Some(Ok(Message::Close(Some(frame))))
                if frame.code == tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Policy =>
            {
                // The service refused our token (bad, used or expired): resuming
                // with fresh tokens will not change its mind, so stop here.
                return Some(CloseReason::Failed(format!(
                    "the data channel refused the session token ({})",
                    frame.reason
                )));
            }
            Some(Ok(Message::Close(frame))) => {
                let why = frame.map_or_else(|| "closed by the peer".to_owned(), |f| format!("closed by the peer: {}", f.reason));
                if let Err(end) = self.reconnect(why).await {
                    return Some(end);
                }
            }
            Some(Err(e)) => {
                if let Err(end) = self.reconnect(e.to_string()).await {
                    return Some(end);
                }
            }
            None => {
                if let Err(end) = self.reconnect("connection closed".to_owned()).await {
                    return Some(end);
                }
            }
        }
        None
    }

    /// Handles the websocket messages that are already buffered, without waiting, so that one
    /// flush carries the answers to a whole burst (an ack per data message otherwise costs a
    /// loop turn and a write each). Stops where the read itself would not read.
    async fn take_ready_ws(&mut self) -> Option<CloseReason> {
        for _ in 0..READ_BATCH {
            if !self.may_read_ws() {
                break;
            }
            let Some(msg) = self.ws.next().now_or_never() else {
                break;
            };
            if let Some(reason) = self.on_ws(msg).await {
                return Some(reason);
            }
        }
        None
    }

    fn on_input(&mut self, data: Option<InputItem>) {
        match data {
            Some(InputItem::Data(data)) => self.pending_input = Some((data, 0)),
            Some(InputItem::Resize { cols, rows }) => {
                if let Err(e) = self.session.resize(cols, rows, self.clock.now()) {
                    tracing::debug!(error = %e, "resize not sent");
                }
            }
            Some(InputItem::Flag(flag)) => {
                // Only taken with no data pending, so it lands after earlier data.
                if let Err(e) = self.session.send_flag(flag, self.clock.now()) {
                    tracing::debug!(error = %e, "flag not sent");
                }
            }
            None => self.input_closed = true,
        }
    }

    /// Takes the input that is already queued while the session has room, so that a burst
    /// of writes becomes one flush instead of a loop turn each.
    fn take_ready_input(&mut self) {
        loop {
            self.offer_pending_input();
            if self.pending_input.is_some()
                || self.input_closed
                || self.session.send_capacity() == 0
            {
                return;
            }
            match self.ch.input.try_recv() {
                Ok(item) => self.on_input(Some(item)),
                Err(mpsc::error::TryRecvError::Empty) => return,
                Err(mpsc::error::TryRecvError::Disconnected) => self.on_input(None),
            }
        }
    }

    /// Whether the websocket may be read: not while the session is backlogged (the agent is
    /// slowed by TCP flow control instead), and not once it has ended (channel_closed or a
    /// fatal error): the peer's close frame would look like a lost connection while the end
    /// still waits for the caller to take its events.
    fn may_read_ws(&self) -> bool {
        !self.session.is_receive_backlogged()
            && !matches!(
                self.session.state(),
                SessionState::Closed | SessionState::Failed
            )
    }

    fn mark_received(&mut self) {
        self.last_received = Instant::now();
        self.stall_reported = false;
    }

    fn offer_pending_input(&mut self) {
        if let Some((data, offset)) = &mut self.pending_input {
            let now = self.clock.now();
            let rest = data.get(*offset..).unwrap_or_default();
            *offset += self.session.send_input(rest, now);
            if *offset >= data.len() {
                self.pending_input = None;
            }
        }
    }

    /// Writes every frame the session has produced; an error (or a write that does not finish
    /// within the write timeout) means the connection is gone.
    async fn flush(&mut self) -> Result<(), String> {
        let limit = self.options.write_timeout;
        let mut fed = false;
        while let Some(frame) = self.session.poll_transmit() {
            bounded(limit, self.ws.feed(Message::Binary(frame))).await?;
            fed = true;
        }
        if fed {
            bounded(limit, self.ws.flush()).await?;
        }
        Ok(())
    }

    /// Moves session events to the caller until one has to wait; returns a close reason when
    /// the session has ended.
    fn pump_events(&mut self) -> Option<CloseReason> {
        while self.pending_event.is_none() {
            let ev = self.session.poll_event()?;
            let out = match ev {
                SessionEvent::HandshakeRequested {
                    agent_version,
                    session_type,
                    properties,
                } => EngineEvent::HandshakeRequested {
                    agent_version,
                    session_type,
                    properties,
                },
                SessionEvent::KmsDataKeyRequested {
                    key_id,
                    encryption_context,
                } => {
                    self.request_data_key(key_id, encryption_context.into_iter().collect());
                    continue;
                }
                SessionEvent::Ready {
                    session_type,
                    customer_message,
                    encrypted,
                } => EngineEvent::Ready {
                    session_type,
                    customer_message,
                    encrypted,
                },
                SessionEvent::Output(b) => EngineEvent::Output(b),
                SessionEvent::StdErr(b) => EngineEvent::StdErr(b),
                SessionEvent::ExitCode(c) => EngineEvent::ExitCode(c),
                SessionEvent::Flag(f) => EngineEvent::Flag(f),
                SessionEvent::Paused => EngineEvent::Paused(true),
                SessionEvent::Resumed => EngineEvent::Paused(false),
                SessionEvent::ChannelClosed { output, .. } => {
                    return Some(CloseReason::ChannelClosed { output });
                }
                SessionEvent::Error(e) => {
                    let text = match self.kms_error.take() {
                        Some(kms) => format!("{e} ({kms})"),
                        None => e.to_string(),
                    };
                    return Some(CloseReason::Failed(text));
                }
                SessionEvent::FrameDropped(e) => {
                    tracing::warn!(session_id = %self.session_id, error = %e, "dropped a malformed frame");
                    continue;
                }
                // Agent-role events and Writable (handled by offer_pending_input) need nothing.
                _ => continue,
            };
            match self.ch.events.try_send(out) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(ev)) => self.pending_event = Some(ev),
                Err(mpsc::error::TrySendError::Closed(_)) => return Some(CloseReason::Detached),
            }
        }
        None
    }

    fn request_data_key(&mut self, key_id: String, context: HashMap<String, String>) {
        let api = Arc::clone(&self.api);
        let tx = self.kms_tx.clone();
        tokio::spawn(async move {
            let result = api.generate_data_key(&key_id, &context).await;
            let _ = tx.send(result).await;
        });
    }

    fn data_key(&mut self, result: Result<DataKey, AwsError>) {
        let now = self.clock.now();
        let outcome = match result {
            Ok(key) => self
                .session
                .provide_data_key(&key.plaintext, key.ciphertext.clone(), now),
            Err(e) => {
                let r = self.session.fail_kms(&e.to_string(), now);
                self.kms_error = Some(e);
                r
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(session_id = %self.session_id, error = %e, "KMS answer not accepted");
        }
    }

    async fn command(&mut self, cmd: SessionCommand) -> Option<CloseReason> {
        match cmd {
            SessionCommand::ReceiveReady(ready) => self.session.set_receive_ready(ready),
            SessionCommand::Terminate => {
                let _ = self.flush().await;
                return Some(match self.api.terminate_session(&self.session_id).await {
                    Ok(()) => CloseReason::Terminated,
                    Err(e) => CloseReason::Failed(format!("cannot terminate the session: {e}")),
                });
            }
            SessionCommand::Detach => {
                let _ = self.flush().await;
                return Some(CloseReason::Detached);
            }
        }
        None
    }

    /// Pings the peer and watches for a connection that carries nothing back while we wait for
    /// acknowledgements. An idle session is never torn down here: the service's idle timeout
    /// is a security control we do not want to fight or trip.
    async fn keepalive(&mut self) -> Result<(), CloseReason> {
        let silent = self.last_received.elapsed();
        if self.pong_seen && silent >= self.options.dead_after {
            return self
                .reconnect(format!("no answer to pings for {} s", silent.as_secs()))
                .await;
        }
        let waiting = self.session.outgoing_len() > 0;
        if waiting && silent >= self.options.stall_warning * 3 {
            return self
                .reconnect(format!("no answer for {} s", silent.as_secs()))
                .await;
        }
        if waiting && silent >= self.options.stall_warning && !self.stall_reported {
            self.stall_reported = true;
            let _ = self
                .ch
                .events
                .try_send(EngineEvent::Stalled { silent_for: silent });
        }
        let ping = self.ws.send(Message::Ping(Vec::new().into()));
        if let Err(e) = bounded(self.options.write_timeout, ping).await {
            return self.reconnect(format!("ping failed: {e}")).await;
        }
        Ok(())
    }

    /// ResumeSession + reopen with exponential backoff (§2.5 ladder, but bounded in total time
    /// and surfacing an error instead of lingering). Cancellation ends it at once (Detached).
    async fn reconnect(&mut self, reason: String) -> Result<(), CloseReason> {
        let cancel = self.ch.cancel.clone();
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(CloseReason::Detached),
            result = self.reconnect_until_done(reason) => {
                result.map_err(|e| CloseReason::Failed(e.to_string()))
            }
        }
    }

    async fn reconnect_until_done(&mut self, reason: String) -> Result<(), EngineError> {
        tracing::warn!(session_id = %self.session_id, %reason, "websocket lost; reconnecting");
        let started = Instant::now();
        let limit = self.options.resume_for;
        self.jitter = self
            .jitter
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let mut delay = Duration::from_millis(100 + (self.jitter >> 33) % 100);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let _ = self.ch.events.try_send(EngineEvent::Reconnecting {
                attempt,
                reason: reason.clone(),
            });
            match self.try_resume().await {
                Ok(()) => {
                    self.reconnects += 1;
                    self.mark_received();
                    let _ = self.ch.events.try_send(EngineEvent::Reconnected {
                        total: self.reconnects,
                    });
                    tracing::info!(session_id = %self.session_id, attempt, "reconnected");
                    return Ok(());
                }
                Err(e @ (EngineError::SessionGone | EngineError::BadStreamUrl(_))) => {
                    return Err(e);
                }
                Err(EngineError::Aws(e))
                    if matches!(
                        e,
                        AwsError::AccessDenied { .. }
                            | AwsError::NotFound { .. }
                            | AwsError::Credentials { .. }
                            | AwsError::NoCredentials { .. }
                            | AwsError::SsoExpired { .. }
                            | AwsError::Rejected { .. }
                    ) =>
                {
                    return Err(EngineError::Aws(e));
                }
                Err(e) => tracing::debug!(attempt, error = %e, "reconnect attempt failed"),
            }
            if let Some(limit) = limit
                && started.elapsed() + delay > limit
            {
                return Err(EngineError::ReconnectExhausted(limit.as_secs()));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn try_resume(&mut self) -> Result<(), EngineError> {
        let target = self.api.resume_session(&self.session_id).await?;
        if target.token.is_empty() {
            return Err(EngineError::SessionGone);
        }
        // The plugin dials the original URL again and ignores the one ResumeSession returns.
        let mut ws = transport::connect(&self.network, &self.stream_url).await?;
        let text = self.session.open_data_channel_text(target.token.expose());
        bounded(
            self.options.write_timeout,
            ws.send(Message::Text(text.into())),
        )
        .await
        .map_err(EngineError::Connect)?;
        let _ = bounded(CLOSE_TIMEOUT, self.ws.close(None)).await;
        self.ws = ws;
        // `pong_seen` stays: the service that answered pings before answers them on the new
        // connection too, and a path can die before the first ping on it is answered.
        self.session.handle_reconnected(self.clock.now());
        Ok(())
    }
}

/// A websocket write that fails after `limit`: a peer that stops reading must not stall the
/// session forever (the caller treats the error as a dropped connection).
async fn bounded<F>(limit: Duration, write: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), tokio_tungstenite::tungstenite::Error>>,
{
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no progress writing for {} s", limit.as_secs())),
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The first open is retried a few times with the same token, as the plugin does.
async fn open_with_retry(network: &Network, url: &str) -> Result<WsStream, EngineError> {
    let mut delay = Duration::from_millis(150);
    let mut last = None;
    for _ in 0..4 {
        match transport::connect(network, url).await {
            Ok(ws) => return Ok(ws),
            // Settings that are wrong stay wrong: say so at once.
            Err(
                e @ (EngineError::BadStreamUrl(_)
                | EngineError::Net(
                    NetError::Untrusted { .. }
                    | NetError::ProxyAuth { .. }
                    | NetError::BadProxy { .. },
                )),
            ) => return Err(e),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    Err(last.unwrap_or(EngineError::Connect("no attempt was made".to_owned())))
}
