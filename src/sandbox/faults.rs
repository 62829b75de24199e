//! Fault injection: what can go wrong on purpose, how it is spelled on the command line, and
//! the counters that prove it did.
//!
//! [`Faults`] holds the switches (set with [`super::SandboxState::set_faults`] or
//! `ssmtui sandbox --faults SPEC`); the data channel applies them per connection through
//! [`FaultLayer`], a small deterministic (seeded) filter between the agent's protocol session
//! and the client's websocket. Every fault applied bumps a counter in [`FaultCounters`] and is
//! logged, so a test can assert that the faults really happened and a user can see them in the
//! log.
//!
//! # Spec syntax
//!
//! A comma-separated list of `name` or `name=value` items:
//!
//! | item | effect |
//! |---|---|
//! | `drop-every=N` | drop the client websocket once it has sent N frames that make progress (new data, acknowledgements) |
//! | `drop-every=Ts` / `drop-every=Tms` | drop the client websocket T seconds / ms after it attached |
//! | `close-every=Ts` / `close-every=Tms` | T seconds / ms after each attach the service closes the client websocket with close code 1000, as the real service does from time to time (the client resumes) |
//! | `blackhole-every=Ts` / `blackhole-every=Tms` | every T seconds / ms of a session's life the path in use goes silent: the service stops reading and writing the client websocket but never closes it (a laptop that slept, a Wi-Fi change); the client must notice and resume. Counted apart from attaches, so it combines with `close-every` |
//! | `corrupt-every=N` | change one letter or digit in every Nth chunk of shell data, each way, before the protocol digests it (only end-to-end checks such as `ssmtui cp`'s SHA-256 can notice) |
//! | `dup=P` | send (and receive) each frame twice with probability P (0..=1) |
//! | `reorder=P` | hold a frame to the client back behind the next one with probability P |
//! | `delay-ms=A-B` or `delay-ms=A` | delay each frame to the client by A..=B ms (order is kept) |
//! | `api-latency-ms=N` | answer every API call N ms later, as a remote region would |
//! | `stall-acks-ms=N` | hold back the agent's acknowledgements for the first N ms of each connection |
//! | `restart-agent-every=N` | every N frames to the client, the agent "restarts": `pause_publication`, 300 ms of silence, `start_publication` |
//! | `expire-tokens` | issue every token already expired (every open is refused; exercises the client's error path) |
//! | `token-ttl-ms=N` | tokens expire N ms after they are issued |
//! | `connection-lost=ID` | the instance's agent reports ConnectionLost (repeatable) |
//! | `withhold-handshake` | the agent never starts the handshake: sessions open but never become ready |
//! | `seed=N` | seed of the fault dice (default 0) |
//!
//! Example: `drop-every=200,dup=0.02,reorder=0.02,delay-ms=0-20,seed=7`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::world::SplitMix64;

/// How long an emulated agent restart keeps the channel silent.
pub const AGENT_RESTART_PAUSE: Duration = Duration::from_millis(300);

/// How long a reordered frame waits for a successor before it is sent anyway.
const REORDER_HOLD: Duration = Duration::from_millis(20);

/// Switches for injected faults. All off by default.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Faults {
    /// Issue tokens that are already expired (exercises the client's resume/error path).
    pub expire_tokens_on_issue: bool,
    /// Drop the client websocket once it has sent this many frames that make progress on one
    /// connection: acknowledgements and stream data not seen before.
    ///
    /// Why not every frame? After a reconnect both ends resend everything unacknowledged at
    /// once. If those bursts counted, a window larger than N would be cut off before a single
    /// new acknowledgement could pass, on every connection, forever.
    pub drop_every_messages: Option<u64>,
    /// Drop the client websocket this long after it attached.
    pub drop_every: Option<Duration>,
    /// Close the client websocket (close code 1000, after the frames already sent) this long
    /// after it attached, as the real service does from time to time.
    pub close_every: Option<Duration>,
    /// Every this long of a session's life, stop reading and writing the client websocket in
    /// use, without closing it: a path that died silently.
    pub blackhole_every: Option<Duration>,
    /// Change one letter or digit in every Nth chunk of shell data (output and input counted
    /// apart), below the protocol: a stand-in for a damaged file or a faulty pty.
    pub corrupt_every: Option<u64>,
    /// Probability of sending or receiving a frame twice.
    pub duplicate: f64,
    /// Probability of holding a frame to the client behind the next one.
    pub reorder: f64,
    /// Delay of each frame to the client, uniformly in `min..=max`.
    pub delay: Option<(Duration, Duration)>,
    /// Hold the agent's acknowledgements back for this long after each attach.
    pub stall_acks: Option<Duration>,
    /// Emulate an agent restart (pause, silence, start) every this many frames to the client.
    pub restart_agent_every_messages: Option<u64>,
    /// Lifetime of newly issued tokens (default five minutes).
    pub token_ttl: Option<Duration>,
    /// Instances whose agent reports ConnectionLost.
    pub connection_lost: Vec<String>,
    /// The agent never sends its handshake request, so no session becomes ready (a client
    /// must give up, and end the session it started).
    pub withhold_handshake: bool,
    /// Answer every API call (`POST /`) this much later, as a round trip to a remote AWS
    /// region would: a loopback sandbox answers in microseconds, which no real account does.
    pub api_latency: Option<Duration>,
    /// Seed of the fault dice.
    pub seed: u64,
}

/// A `--faults` spec that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FaultSpecError(String);

impl Faults {
    /// Parses a spec (see the module docs). An empty spec means no faults.
    pub fn parse<'a>(spec: &'a str) -> Result<Self, FaultSpecError> {
        let mut f = Self::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (item, None),
            };
            let need = |v: Option<&'a str>| -> Result<&'a str, FaultSpecError> {
                v.filter(|v| !v.is_empty())
                    .ok_or_else(|| FaultSpecError(format!("fault \"{name}\" needs a value")))
            };
            match name {
                "drop-every" => {
                    let v = need(value)?;
                    if let Some(d) = parse_duration(name, v) {
                        f.drop_every = Some(d?);
                    } else {
                        f.drop_every_messages = Some(parse_count(name, v)?);
                    }
                }
                "close-every" => {
                    let v = need(value)?;
                    f.close_every = Some(parse_duration(name, v).unwrap_or_else(|| {
                        Err(FaultSpecError(format!(
                            "fault \"close-every\" needs a duration such as 30s or 500ms, not \"{v}\""
                        )))
                    })?);
                }
                "blackhole-every" => {
                    let v = need(value)?;
                    f.blackhole_every = Some(parse_duration(name, v).unwrap_or_else(|| {
                        Err(FaultSpecError(format!(
                            "fault \"blackhole-every\" needs a duration such as 30s or 500ms, not \"{v}\""
                        )))
                    })?);
                }
                "corrupt-every" => f.corrupt_every = Some(parse_count(name, need(value)?)?),
                "dup" => f.duplicate = parse_probability(name, need(value)?)?,
                "reorder" => f.reorder = parse_probability(name, need(value)?)?,
                "delay-ms" => {
                    let v = need(value)?;
                    let (a, b) = v.split_once('-').unwrap_or((v, v));
                    let (a, b) = (parse_ms(name, a)?, parse_ms(name, b)?);
                    if a > b {
                        return Err(FaultSpecError(format!(
                            "fault \"delay-ms\" has its range backwards: \"{v}\""
                        )));
                    }
                    f.delay = Some((a, b));
                }
                "stall-acks-ms" => f.stall_acks = Some(parse_ms(name, need(value)?)?),
                "api-latency-ms" => f.api_latency = Some(parse_ms(name, need(value)?)?),
                "restart-agent-every" => {
                    f.restart_agent_every_messages = Some(parse_count(name, need(value)?)?);
                }
                "expire-tokens" => {
                    if value.is_some() {
                        return Err(FaultSpecError(
                            "fault \"expire-tokens\" takes no value".to_owned(),
                        ));
                    }
                    f.expire_tokens_on_issue = true;
                }
                "token-ttl-ms" => f.token_ttl = Some(parse_ms(name, need(value)?)?),
                "withhold-handshake" => {
                    if value.is_some() {
                        return Err(FaultSpecError(
                            "fault \"withhold-handshake\" takes no value".to_owned(),
                        ));
                    }
                    f.withhold_handshake = true;
                }
                "connection-lost" => f.connection_lost.push(need(value)?.to_owned()),
                "seed" => {
                    f.seed = need(value)?.parse().map_err(|_| {
                        FaultSpecError(format!("fault \"seed\" needs a number, not \"{item}\""))
                    })?;
                }
                _ => return Err(FaultSpecError(format!("unknown fault \"{name}\""))),
            }
        }
        Ok(f)
    }

    /// Whether any per-connection fault is on (the data channel skips the fault layer if not).
    pub fn any_channel_fault(&self) -> bool {
        self.drop_every_messages.is_some()
            || self.drop_every.is_some()
            || self.close_every.is_some()
            || self.blackhole_every.is_some()
            || self.duplicate > 0.0
            || self.reorder > 0.0
            || self.delay.is_some()
            || self.stall_acks.is_some()
            || self.restart_agent_every_messages.is_some()
    }
}

fn parse_count(name: &str, v: &str) -> Result<u64, FaultSpecError> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(FaultSpecError(format!(
            "fault \"{name}\" needs a positive whole number, not \"{v}\""
        ))),
    }
}

fn parse_ms(name: &str, v: &str) -> Result<Duration, FaultSpecError> {
    v.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| {
            FaultSpecError(format!(
                "fault \"{name}\" needs milliseconds as a whole number, not \"{v}\""
            ))
        })
}

/// `2s` / `500ms`; `None` when `v` has no time unit (then it is a message count).
fn parse_duration(name: &str, v: &str) -> Option<Result<Duration, FaultSpecError>> {
    let bad = || FaultSpecError(format!("fault \"{name}\" has a bad duration \"{v}\""));
    if let Some(ms) = v.strip_suffix("ms") {
        return Some(
            ms.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .map(Duration::from_millis)
                .ok_or_else(bad),
        );
    }
    let s = v.strip_suffix('s')?;
    Some(
        s.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x > 0.0 && *x < 1e9)
            .map(Duration::from_secs_f64)
            .ok_or_else(bad),
    )
}

fn parse_probability(name: &str, v: &str) -> Result<f64, FaultSpecError> {
    match v.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(FaultSpecError(format!(
            "fault \"{name}\" needs a probability between 0 and 1, not \"{v}\""
        ))),
    }
}

/// The kinds of fault that are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A client websocket was dropped.
    Drop,
    /// A frame was duplicated.
    Duplicate,
    /// A frame was sent behind its successor.
    Reorder,
    /// A frame was delayed.
    Delay,
    /// An acknowledgement was held back.
    StallAck,
    /// An agent restart was emulated.
    AgentRestart,
    /// A token was issued already expired.
    ExpiredToken,
    /// An instance was made ConnectionLost.
    ConnectionLost,
    /// The service closed a client websocket (close code 1000).
    ServiceClose,
    /// A chunk of shell data was changed.
    Corrupt,
    /// A client websocket was left open but silent.
    Blackhole,
}

impl FaultKind {
    const ALL: [Self; 11] = [
        Self::Drop,
        Self::Duplicate,
        Self::Reorder,
        Self::Delay,
        Self::StallAck,
        Self::AgentRestart,
        Self::ExpiredToken,
        Self::ConnectionLost,
        Self::ServiceClose,
        Self::Corrupt,
        Self::Blackhole,
    ];

    fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// The log name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Duplicate => "duplicate",
            Self::Reorder => "reorder",
            Self::Delay => "delay",
            Self::StallAck => "stall-ack",
            Self::AgentRestart => "agent-restart",
            Self::ExpiredToken => "expired-token",
            Self::ConnectionLost => "connection-lost",
            Self::ServiceClose => "service-close",
            Self::Corrupt => "corrupt",
            Self::Blackhole => "blackhole",
        }
    }
}

/// Live counters, shared by every connection of a sandbox.
#[derive(Debug, Default)]
pub struct FaultCounters([AtomicU64; 11]);

impl FaultCounters {
    /// Counts one fault and logs it (per-frame faults at debug level, the rest at info).
    pub fn record(&self, kind: FaultKind, session_id: &str) {
        let n = self
            .0
            .get(kind.index())
            .map_or(0, |c| c.fetch_add(1, Ordering::Relaxed) + 1);
        match kind {
            FaultKind::Duplicate | FaultKind::Reorder | FaultKind::Delay | FaultKind::StallAck => {
                tracing::debug!(fault = kind.name(), count = n, session_id, "fault injected");
            }
            _ => tracing::info!(fault = kind.name(), count = n, session_id, "fault injected"),
        }
    }

    /// A snapshot.
    pub fn snapshot(&self) -> FaultCounts {
        let get = |k: FaultKind| {
            self.0
                .get(k.index())
                .map_or(0, |c| c.load(Ordering::Relaxed))
        };
        FaultCounts {
            drops: get(FaultKind::Drop),
            duplicates: get(FaultKind::Duplicate),
            reorders: get(FaultKind::Reorder),
            delays: get(FaultKind::Delay),
            stalled_acks: get(FaultKind::StallAck),
            agent_restarts: get(FaultKind::AgentRestart),
            expired_tokens: get(FaultKind::ExpiredToken),
            connection_lost: get(FaultKind::ConnectionLost),
            service_closes: get(FaultKind::ServiceClose),
            corruptions: get(FaultKind::Corrupt),
            blackholes: get(FaultKind::Blackhole),
        }
    }
}

/// How many faults of each kind have been applied since the sandbox started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultCounts {
    /// Client websockets dropped.
    pub drops: u64,
    /// Frames duplicated (either direction).
    pub duplicates: u64,
    /// Frames reordered.
    pub reorders: u64,
    /// Frames delayed.
    pub delays: u64,
    /// Acknowledgements held back.
    pub stalled_acks: u64,
    /// Agent restarts emulated.
    pub agent_restarts: u64,
    /// Tokens issued already expired.
    pub expired_tokens: u64,
    /// Instances made ConnectionLost.
    pub connection_lost: u64,
    /// Client websockets closed by the service (close code 1000).
    pub service_closes: u64,
    /// Chunks of shell data changed.
    pub corruptions: u64,
    /// Client websockets left open but silent.
    pub blackholes: u64,
}

/// What the fault layer wants done with the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep going.
    Keep,
    /// Drop the websocket now.
    Drop,
}

/// The per-connection fault filter. Frames to the client go in through [`FaultLayer::outgoing`]
/// and come out of [`FaultLayer::poll_ready`] when due; frames from the client go through
/// [`FaultLayer::incoming`]. Created afresh on every attach (a new connection has a fresh frame
/// count and ack stall), while the dice continue from the session's seed.
#[derive(Debug)]
pub struct FaultLayer {
    faults: Faults,
    frames: u64,
    frames_out: u64,
    attached_at: Instant,
    held: Option<(Instant, Vec<u8>)>,
    queue: VecDeque<(Instant, Vec<u8>)>,
    stalled: Vec<Vec<u8>>,
    silent_until: Option<Instant>,
    resume_pending: bool,
}

/// The dice of one session's fault layers and what they remember across reconnects.
#[derive(Debug, Clone)]
pub struct Dice {
    rng: SplitMix64,
    highest_input_seq: Option<i64>,
}

impl Dice {
    /// Dice from a seed.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            highest_input_seq: None,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits → [0, 1).
        let x = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    fn between(&mut self, a: Duration, b: Duration) -> Duration {
        let (a, b) = (a.as_millis(), b.as_millis());
        let span = b.saturating_sub(a).saturating_add(1);
        let pick = u128::from(self.rng.next_u64()) % span.max(1);
        Duration::from_millis(u64::try_from(a + pick).unwrap_or(u64::MAX))
    }

    /// Whether a frame from the client makes progress: an acknowledgement, or stream data
    /// with a sequence number above any seen before. Retransmissions do not.
    fn progresses(&mut self, frame: &[u8]) -> bool {
        if is_ack(frame) {
            return true;
        }
        let is_data = frame
            .get(4..36)
            .is_some_and(|t| t.starts_with(b"input_stream_data"));
        let seq = frame
            .get(48..56)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_be_bytes);
        match (is_data, seq) {
            (true, Some(seq)) if self.highest_input_seq.is_none_or(|h| seq > h) => {
                self.highest_input_seq = Some(seq);
                true
            }
            _ => false,
        }
    }
}

/// Whether a frame is an `acknowledge` message (MessageType at bytes 4..36).
fn is_ack(frame: &[u8]) -> bool {
    frame
        .get(4..36)
        .is_some_and(|t| t.starts_with(b"acknowledge") && t.get(11).is_none_or(|&c| c == b' '))
}

impl FaultLayer {
    /// A layer for a connection attached `now`.
    pub fn new(faults: Faults, now: Instant) -> Self {
        Self {
            faults,
            frames: 0,
            frames_out: 0,
            attached_at: now,
            held: None,
            queue: VecDeque::new(),
            stalled: Vec::new(),
            silent_until: None,
            resume_pending: false,
        }
    }

    /// Takes one frame the agent wants to send to the client.
    pub fn outgoing(
        &mut self,
        frame: Vec<u8>,
        now: Instant,
        dice: &mut Dice,
        counters: &FaultCounters,
        session_id: &str,
    ) {
        if let Some(stall) = self.faults.stall_acks
            && now < self.attached_at + stall
            && is_ack(&frame)
        {
            counters.record(FaultKind::StallAck, session_id);
            self.stalled.push(frame);
            return;
        }
        self.frames_out += 1;
        if let Some(n) = self.faults.restart_agent_every_messages
            && self.frames_out.is_multiple_of(n)
            && self.silent_until.is_none()
        {
            counters.record(FaultKind::AgentRestart, session_id);
            self.queue.push_back((
                now,
                crate::protocol::publication_frame(true, epoch_ms(), uuid::Uuid::new_v4()),
            ));
            self.silent_until = Some(now + AGENT_RESTART_PAUSE);
            self.resume_pending = true;
        }
        let copies = if dice.chance(self.faults.duplicate) {
            counters.record(FaultKind::Duplicate, session_id);
            2
        } else {
            1
        };
        for _ in 0..copies {
            if let Some((_, held)) = self.held.take() {
                self.enqueue(frame.clone(), now, dice, counters, session_id);
                self.enqueue(held, now, dice, counters, session_id);
                continue;
            }
            if dice.chance(self.faults.reorder) {
                counters.record(FaultKind::Reorder, session_id);
                self.held = Some((now + REORDER_HOLD, frame.clone()));
                continue;
            }
            self.enqueue(frame.clone(), now, dice, counters, session_id);
        }
    }

    fn enqueue(
        &mut self,
        frame: Vec<u8>,
        now: Instant,
        dice: &mut Dice,
        counters: &FaultCounters,
        session_id: &str,
    ) {
        let mut due = now;
        if let Some((a, b)) = self.faults.delay {
            let d = dice.between(a, b);
            if !d.is_zero() {
                counters.record(FaultKind::Delay, session_id);
            }
            due = now + d;
        }
        // Delays never reorder: a frame is never due before the one queued ahead of it.
        if let Some((last, _)) = self.queue.back() {
            due = due.max(*last);
        }
        self.queue.push_back((due, frame));
    }

    /// Takes one frame received from the client; returns the copies to feed the session.
    pub fn incoming(
        &mut self,
        frame: Vec<u8>,
        dice: &mut Dice,
        counters: &FaultCounters,
        session_id: &str,
    ) -> (Vec<Vec<u8>>, Verdict) {
        if dice.progresses(&frame) {
            self.frames += 1;
        }
        let verdict = match self.faults.drop_every_messages {
            Some(n) if self.frames >= n => Verdict::Drop,
            _ => Verdict::Keep,
        };
        let frames = if dice.chance(self.faults.duplicate) {
            counters.record(FaultKind::Duplicate, session_id);
            vec![frame.clone(), frame]
        } else {
            vec![frame]
        };
        (frames, verdict)
    }

    /// Frames due now, in order (nothing while an emulated agent restart keeps silence).
    pub fn poll_ready(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(stall) = self.faults.stall_acks
            && now >= self.attached_at + stall
            && !self.stalled.is_empty()
        {
            // Released acks jump the queue: they are late, not delayed further.
            for f in self.stalled.drain(..).rev() {
                self.queue.push_front((now, f));
            }
        }
        if self.held.as_ref().is_some_and(|(t, _)| now >= *t)
            && let Some((_, f)) = self.held.take()
        {
            self.queue.push_back((now, f));
        }
        match self.silent_until {
            Some(t) if now < t => {
                // Only the pause announcement itself may pass during the silence.
                return match self.queue.front() {
                    Some((due, f)) if *due <= now && is_publication(f) => {
                        self.queue.pop_front().map(|(_, f)| f)
                    }
                    _ => None,
                };
            }
            Some(_) => {
                self.silent_until = None;
                if self.resume_pending {
                    self.resume_pending = false;
                    return Some(crate::protocol::publication_frame(
                        false,
                        epoch_ms(),
                        uuid::Uuid::new_v4(),
                    ));
                }
            }
            None => {}
        }
        match self.queue.front() {
            Some((due, _)) if *due <= now => self.queue.pop_front().map(|(_, f)| f),
            _ => None,
        }
    }

    /// When [`FaultLayer::poll_ready`] may next return something, or the connection must drop.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut take = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if let Some((due, _)) = self.queue.front() {
            take(*due);
        }
        if let Some((due, _)) = &self.held {
            take(*due);
        }
        if let Some(s) = self.silent_until {
            take(s);
        }
        if let Some(stall) = self.faults.stall_acks
            && !self.stalled.is_empty()
        {
            take(self.attached_at + stall);
        }
        if let Some(d) = self.faults.drop_every {
            take(self.attached_at + d);
        }
        if let Some(d) = self.faults.close_every {
            take(self.attached_at + d);
        }
        t
    }

    /// Whether the service's close is due.
    pub fn close_due(&self, now: Instant) -> bool {
        self.faults
            .close_every
            .is_some_and(|d| now >= self.attached_at + d)
    }

    /// Whether the time-based drop is due.
    pub fn drop_due(&self, now: Instant) -> bool {
        self.faults
            .drop_every
            .is_some_and(|d| now >= self.attached_at + d)
    }
}

fn is_publication(frame: &[u8]) -> bool {
    frame
        .get(4..36)
        .is_some_and(|t| t.starts_with(b"pause_publication") || t.starts_with(b"start_publication"))
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Changes one letter or digit of `data` (the middle-most one) into another, keeping the text's
/// shape; `true` if there was one to change.
pub fn corrupt(data: &mut [u8]) -> bool {
    let middle = data.len() / 2;
    let pick = (0..data.len())
        .map(|k| {
            if k % 2 == 0 {
                middle + k / 2
            } else {
                middle.wrapping_sub(k / 2 + 1)
            }
        })
        .filter(|&i| i < data.len())
        .find(|&i| data.get(i).is_some_and(u8::is_ascii_alphanumeric));
    match pick.and_then(|i| data.get_mut(i)) {
        Some(b) => {
            *b = match *b {
                b'z' => b'a',
                b'Z' => b'A',
                b'9' => b'0',
                other => other + 1,
            };
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let f = Faults::parse(
            "drop-every=200, dup=0.02,reorder=0.02,delay-ms=0-20,stall-acks-ms=300,expire-tokens,restart-agent-every=1000,drop-every=2s,token-ttl-ms=50,connection-lost=i-1,withhold-handshake,seed=7",
        )
        .unwrap();
        assert_eq!(f.drop_every_messages, Some(200));
        assert_eq!(f.drop_every, Some(Duration::from_secs(2)));
        assert!((f.duplicate - 0.02).abs() < 1e-12);
        assert_eq!(f.delay, Some((Duration::ZERO, Duration::from_millis(20))));
        assert_eq!(f.stall_acks, Some(Duration::from_millis(300)));
        assert!(f.expire_tokens_on_issue);
        assert_eq!(f.restart_agent_every_messages, Some(1000));
        assert_eq!(f.token_ttl, Some(Duration::from_millis(50)));
        assert_eq!(f.connection_lost, vec!["i-1".to_owned()]);
        assert!(f.withhold_handshake);
        assert_eq!(f.seed, 7);
        assert_eq!(Faults::parse("").unwrap(), Faults::default());
        assert_eq!(
            Faults::parse("drop-every=500ms").unwrap().drop_every,
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            Faults::parse("corrupt-every=50").unwrap().corrupt_every,
            Some(50)
        );
        assert_eq!(
            Faults::parse("api-latency-ms=80").unwrap().api_latency,
            Some(Duration::from_millis(80))
        );
        let f = Faults::parse("close-every=2s").unwrap();
        assert_eq!(f.close_every, Some(Duration::from_secs(2)));
        assert!(f.any_channel_fault());
    }

    #[test]
    fn corruption_changes_one_letter_or_digit_and_keeps_the_shape() {
        let mut line = b"QUJD\n".to_vec();
        assert!(corrupt(&mut line));
        assert_ne!(line, b"QUJD\n");
        assert_eq!(line.len(), 5);
        assert_eq!(line[4], b'\n');
        assert!(line[..4].iter().all(u8::is_ascii_alphanumeric));
        let mut nothing = b"\r\n--".to_vec();
        assert!(!corrupt(&mut nothing));
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        for (spec, needle) in [
            ("bogus", "unknown fault \"bogus\""),
            ("dup=2", "probability"),
            ("dup", "needs a value"),
            ("drop-every=0", "positive"),
            ("drop-every=xs", "bad duration"),
            ("close-every=30", "needs a duration"),
            ("close-every=0ms", "bad duration"),
            ("delay-ms=20-5", "backwards"),
            ("expire-tokens=1", "takes no value"),
            ("withhold-handshake=yes", "takes no value"),
            ("seed=x", "number"),
        ] {
            let e = Faults::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn layer_duplicates_reorders_and_drops_deterministically() {
        let mut faults = Faults::parse("dup=0.5,reorder=0.5,drop-every=50").unwrap();
        faults.seed = 3;
        let counters = FaultCounters::default();
        let mut dice = Dice::new(3);
        let now = Instant::now();
        let mut layer = FaultLayer::new(faults, now);
        let mut out = Vec::new();
        for i in 0u32..50 {
            layer.outgoing(i.to_be_bytes().to_vec(), now, &mut dice, &counters, "s");
            while let Some(f) = layer.poll_ready(now) {
                out.push(f);
            }
        }
        let mut dropped_at = None;
        let mut ack = b"\0\0\0\x74acknowledge".to_vec();
        ack.resize(120, b' ');
        for i in 0u32..100 {
            let (copies, v) = layer.incoming(ack.clone(), &mut dice, &counters, "s");
            assert!(!copies.is_empty());
            if v == Verdict::Drop {
                dropped_at = Some(i);
                break;
            }
        }
        assert_eq!(
            dropped_at,
            Some(49),
            "the 50th frame from the client cuts the connection"
        );
        let c = counters.snapshot();
        assert!(c.duplicates > 0 && c.reorders > 0, "{c:?}");
        // Every frame arrives at least once; order differs from the sent order.
        let mut seen: Vec<u32> = out
            .iter()
            .map(|f| u32::from_be_bytes([f[0], f[1], f[2], f[3]]))
            .collect();
        assert_ne!(seen, (0..seen.len() as u32).collect::<Vec<_>>());
        seen.sort_unstable();
        seen.dedup();
        assert!(seen.len() >= 49, "{}", seen.len());
    }

    #[test]
    fn retransmitted_data_does_not_count_towards_a_drop() {
        let data = |seq: i64| {
            let mut f = b"\0\0\0\x74input_stream_data".to_vec();
            f.resize(48, b' ');
            f.extend_from_slice(&seq.to_be_bytes());
            f.resize(120, 0);
            f
        };
        let mut dice = Dice::new(1);
        assert!(dice.progresses(&data(0)));
        assert!(dice.progresses(&data(1)));
        assert!(!dice.progresses(&data(1)), "a retransmission");
        assert!(!dice.progresses(&data(0)));
        assert!(dice.progresses(&data(5)));
        assert!(!dice.progresses(b"short"));
    }

    #[test]
    fn acks_are_recognised() {
        let mut t = b"\0\0\0\x74acknowledge".to_vec();
        t.resize(36, b' ');
        assert!(is_ack(&t));
        let mut o = b"\0\0\0\x74output_stream_data".to_vec();
        o.resize(36, b' ');
        assert!(!is_ack(&o));
    }
}
