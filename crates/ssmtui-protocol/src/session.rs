//! The data-channel session state machine (§2.4, §5–§7), sans-IO, for both ends.
//!
//! A [`Session`] is fed whole websocket messages ([`Session::handle_incoming`]), local data
//! ([`Session::send_input`], [`Session::resize`], ...) and the time ([`Session::handle_timeout`]),
//! and yields frames to write ([`Session::poll_transmit`]), application events
//! ([`Session::poll_event`]) and its next deadline ([`Session::poll_timeout`]). It never reads
//! a clock, touches a socket or draws OS randomness: time is the caller's `now_ms` (Unix epoch
//! milliseconds, never decreasing; also used as CreatedDate) and randomness (message ids,
//! nonce seeds, challenges) comes from a small PRNG seeded by [`SessionConfig::rng_seed`], so a
//! run is fully deterministic.
//!
//! Roles: [`Role::Client`] is ssmtui talking to an agent; [`Role::Agent`] emulates
//! amazon-ssm-agent for the sandbox and for tests.
//!
//! Invariants:
//! * Sequence numbers start at 0 and are never reset, not even by
//!   [`Session::handle_reconnected`].
//! * Every stream message is kept in the outgoing buffer until its acknowledgement arrives; the
//!   buffer never holds more than `max_outgoing_messages`, nor (client role) more frame bytes
//!   than its window: `min_outgoing_window` at first, then [`WINDOW_GAIN`] times the path's
//!   bandwidth-delay product — the delivery rate measured over at least [`RATE_SPAN_MS`] times
//!   the shortest round trip, as BBR does, so neither queueing delay at a slow peer nor a burst
//!   of late acknowledgements inflates it — the largest such estimate of the last
//!   [`WINDOW_PEAK_MS`], at most `max_outgoing_window`. Local data beyond that waits in a
//!   bounded pending queue, and beyond *that* `send_*` accepts fewer bytes (back-pressure,
//!   followed by [`SessionEvent::Writable`]). Nothing is ever evicted.
//! * Resends are paced by the RTO estimator of §7.3, at most one per 100 ms tick, head only,
//!   with `lastSent` refreshed on each resend (unlike the plugin, G26).
//! * Incoming stream data is delivered exactly once and in order. A message is acknowledged
//!   only once it is delivered or stored for later delivery (G12); duplicates are re-acked
//!   (G11); the reorder buffer is bounded in messages, bytes and sequence distance.
//! * Local data (client input, agent output) is held until the handshake finished (G10).

use std::collections::{BTreeMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::Value;
use uuid::Uuid;

use super::crypto::{self, CHALLENGE_LEN, DataKey, NONCE_LEN, SessionCipher};
use super::error::ProtocolError;
use super::message::{ClientMessage, DEFAULT_MAX_PAYLOAD_LEN, DecodeOptions, SCHEMA_VERSION};
use super::payload::{
    AcknowledgeContent, ActionParameters, ActionResult, AgentSessionStatePayload, AgentState,
    ChannelClosedPayload, EncChallengePayload, HandshakeCompletePayload, HandshakeRequestPayload,
    HandshakeResponsePayload, KmsEncryptionRequest, KmsEncryptionResponse, OpenDataChannelInput,
    ProcessedClientAction, RequestedClientAction, SessionTypeRequest, SizeData, decode_exit_code,
    encode_exit_code,
};
use super::types::{
    ActionStatus, ActionType, FLAG_SYN, FLAGS_CONTROL, Flag, MessageType, PayloadType, Role,
    SessionType,
};

/// Client role: the outgoing byte window to start with (and never below): 256 KiB of frames,
/// enough to fill 2.5 MB/s at 100 ms before the window has measured anything.
pub const DEFAULT_MIN_OUTGOING_WINDOW: usize = 256 * 1024;
/// Client role: the largest outgoing byte window, about the plugin's 10 000 messages of 1 KiB.
pub const DEFAULT_MAX_OUTGOING_WINDOW: usize = 10_000 * 1160;
/// The window is this many times the bytes acknowledged per shortest round trip. BBR's 2 is
/// for a paced sender; ours sends in bursts and the agent acknowledges in bursts, and with 2 a
/// path whose round trips vary (80–120 ms) settled at half the fixed window's speed in bench
/// `paced` (`paced.long_link_upload`).
pub const WINDOW_GAIN: usize = 4;

/// The shortest span a delivery rate is measured over (ms; a round also lasts at least one
/// shortest round trip). A peer that was descheduled acknowledges its backlog at once: over a
/// millisecond that burst reads as gigabytes per second, and an 8-forward bench grew every
/// window to ~6 MB on loopback that way.
pub const RATE_SPAN_MS: u64 = 20;
/// How long the window keeps its largest recent estimate before a smaller one replaces it:
/// a path that slows (or a burst long past) gives the memory back.
pub const WINDOW_PEAK_MS: u64 = 10_000;

/// Initial RTO before the first sample (§7.2).
pub const DEFAULT_TRANSMISSION_TIMEOUT_MS: u64 = 200;
/// Initial RTT estimate.
pub const DEFAULT_ROUND_TRIP_TIME_MS: u64 = 100;
/// RTO cap.
pub const MAX_TRANSMISSION_TIMEOUT_MS: u64 = 1000;
/// Floor of the variance term.
pub const CLOCK_GRANULARITY_MS: u64 = 10;
/// Resend scheduler tick: at most one resend per tick.
pub const RESEND_TICK_MS: u64 = 100;
/// The agent's per-step handshake timeout (§5.6).
pub const HANDSHAKE_TIMEOUT_MS: u64 = 15_000;
/// How long a closing agent waits for its outgoing buffer to drain (§2.6).
pub const CLOSE_FLUSH_TIMEOUT_MS: u64 = 2_000;
/// CustomerMessage of a KMS-encrypted session.
pub const KMS_CUSTOMER_MESSAGE: &str = "This session is encrypted using AWS KMS.";
/// Client version reported by default: numeric and above every threshold of §9.2.
pub const DEFAULT_CLIENT_VERSION: &str = "1.2.650.0";

/// Settings of a [`Session`]. `Default` gives client-role values matching the plugin.
#[derive(Clone)]
pub struct SessionConfig {
    /// Which end this session plays.
    pub role: Role,
    /// SessionId (KMS encryption context, `agent_session_state`).
    pub session_id: String,
    /// `aws:ssm:TargetId` of the KMS encryption context: the StartSession `Target` for the
    /// client, the agent's own instance id for the agent (they must be equal, G19).
    pub target_id: String,
    /// `ClientId` of OpenDataChannelInput; empty = generated from the PRNG.
    pub client_id: String,
    /// Client role: `ClientVersion` for OpenDataChannelInput and HandshakeResponse.
    pub client_version: String,
    /// Seed of the PRNG for message ids, nonce seeds and challenges.
    pub rng_seed: u64,
    /// Largest plaintext payload per outgoing data message (1024, §7.5).
    pub max_payload: usize,
    /// Largest payload accepted from the wire.
    pub max_incoming_payload: usize,
    /// Cap on unacknowledged messages in the outgoing buffer (min 8).
    pub max_outgoing_messages: usize,
    /// Starting (and smallest) byte window of the outgoing buffer (frame bytes in flight).
    pub min_outgoing_window: usize,
    /// Largest byte window; `usize::MAX` with `min_outgoing_window` = `usize::MAX` turns the
    /// byte window off (the agent role: the real agent has none).
    pub max_outgoing_window: usize,
    /// Cap on local bytes waiting to enter the outgoing buffer (min `max_payload`).
    pub max_pending_bytes: usize,
    /// Cap on out-of-order messages held (also the accepted sequence distance).
    pub max_incoming_messages: usize,
    /// Cap on payload bytes of out-of-order messages held.
    pub max_incoming_bytes: usize,
    /// While this many delivered-but-unpolled data bytes sit in the event queue, new data is
    /// not acknowledged, so a slow consumer back-pressures the sender (G12).
    pub max_undelivered_bytes: usize,
    /// Give up (fatal [`ProtocolError::GaveUp`]) when the head message stays unacknowledged
    /// and nothing else is acknowledged for this long; the clock stands still while the
    /// receive side is backlogged ([`Session::is_receive_backlogged`]).
    pub give_up_after_ms: u64,
    /// Agent role: per-step handshake timeout.
    pub handshake_timeout_ms: u64,
    /// On [`Session::handle_reconnected`], resend every unacknowledged message at once instead
    /// of only the head (the rest would otherwise trickle at one per tick).
    pub resend_all_on_reconnect: bool,
    /// Client role: opt in to the random-challenge encryption context (§6.6).
    pub kms_challenge_opt_in: bool,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("role", &self.role)
            .field("session_id", &self.session_id)
            .field("target_id", &self.target_id)
            .field("client_version", &self.client_version)
            .field("max_payload", &self.max_payload)
            .field("max_outgoing_messages", &self.max_outgoing_messages)
            .finish_non_exhaustive()
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            role: Role::Client,
            session_id: String::new(),
            target_id: String::new(),
            client_id: String::new(),
            client_version: DEFAULT_CLIENT_VERSION.to_owned(),
            rng_seed: 0,
            max_payload: 1024,
            max_incoming_payload: DEFAULT_MAX_PAYLOAD_LEN,
            max_outgoing_messages: 10_000,
            min_outgoing_window: DEFAULT_MIN_OUTGOING_WINDOW,
            max_outgoing_window: DEFAULT_MAX_OUTGOING_WINDOW,
            max_pending_bytes: 64 * 1024,
            max_incoming_messages: 10_000,
            max_incoming_bytes: 16 * 1024 * 1024,
            max_undelivered_bytes: 1024 * 1024,
            give_up_after_ms: 5 * 60 * 1000,
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            resend_all_on_reconnect: true,
            kms_challenge_opt_in: false,
        }
    }
}

impl SessionConfig {
    /// Client-role defaults for a session.
    pub fn client(session_id: &str, target_id: &str, rng_seed: u64) -> Self {
        Self {
            role: Role::Client,
            session_id: session_id.to_owned(),
            target_id: target_id.to_owned(),
            rng_seed,
            ..Self::default()
        }
    }

    /// Agent-role defaults (agent capacities of §7.2).
    pub fn agent(session_id: &str, instance_id: &str, rng_seed: u64) -> Self {
        Self {
            role: Role::Agent,
            session_id: session_id.to_owned(),
            target_id: instance_id.to_owned(),
            rng_seed,
            max_outgoing_messages: 100_000,
            min_outgoing_window: usize::MAX,
            max_outgoing_window: usize::MAX,
            max_incoming_messages: 100_000,
            ..Self::default()
        }
    }
}

/// Coarse session state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Client: waiting for the first agent message. Agent: handshake not started.
    Opening,
    /// Handshake in progress.
    Handshaking,
    /// Data flows.
    Running,
    /// Agent: flushing before reporting `Terminating`.
    Closing,
    /// `channel_closed` received, or the agent finished closing.
    Closed,
    /// A fatal error was reported; nothing more happens.
    Failed,
}

/// What a session reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Client: the agent's HandshakeRequest (agent version and session type now known).
    HandshakeRequested {
        /// Agent version (selects port-forwarding behaviour).
        agent_version: String,
        /// Requested session type.
        session_type: SessionType,
        /// Port sessions: the document's properties; otherwise `null`.
        properties: Value,
    },
    /// Client: call `kms:GenerateDataKey` (64 bytes) and answer with
    /// [`Session::provide_data_key`] or [`Session::fail_kms`].
    KmsDataKeyRequested {
        /// `KeyId`.
        key_id: String,
        /// Exact `EncryptionContext`.
        encryption_context: BTreeMap<String, String>,
    },
    /// Agent: call `kms:Decrypt` and answer with [`Session::provide_data_key`] or
    /// [`Session::fail_kms`].
    KmsDecryptRequested {
        /// `KeyId`.
        key_id: String,
        /// CiphertextBlob from the client.
        ciphertext_blob: Vec<u8>,
        /// Exact `EncryptionContext`.
        encryption_context: BTreeMap<String, String>,
    },
    /// Agent: the client's HandshakeResponse.
    HandshakeResponse {
        /// Client version (selects mux mode, §9.2).
        client_version: String,
        /// Processed actions as received.
        processed_actions: Vec<ProcessedClientAction>,
    },
    /// The session is running: local data may flow (queued data is being sent).
    Ready {
        /// Session type (Standard_Stream when inferred without a handshake).
        session_type: SessionType,
        /// HandshakeComplete's CustomerMessage (print when not empty).
        customer_message: String,
        /// Whether KMS encryption is on.
        encrypted: bool,
    },
    /// Client: stdout / port data from the agent (decrypted).
    Output(Vec<u8>),
    /// Client: stderr bytes (NonInteractiveCommands).
    StdErr(Vec<u8>),
    /// Client: the remote command's exit code.
    ExitCode(i32),
    /// Agent: input / port data from the client (decrypted).
    Input(Vec<u8>),
    /// Agent: terminal size from the client.
    Resize(SizeData),
    /// A Flag from the peer.
    Flag(Flag),
    /// `send_*` accepted less than offered earlier; there is room again.
    Writable,
    /// `pause_publication`: the peer's channel is gone; sending is held.
    Paused,
    /// The pause ended.
    Resumed,
    /// `channel_closed`: all in-order data has been delivered before this event.
    ChannelClosed {
        /// Reason text (may be empty).
        output: String,
        /// Session id from the payload.
        session_id: String,
    },
    /// Agent: flushed (or timed out) and sent `agent_session_state` Terminating.
    Closed,
    /// A received frame was malformed or unexpected and was dropped (not fatal).
    FrameDropped(ProtocolError),
    /// Fatal error; the session is now [`SessionState::Failed`].
    Error(ProtocolError),
}

/// Counters for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Stream messages sent for the first time.
    pub messages_sent: u64,
    /// Stream messages resent.
    pub resends: u64,
    /// Acknowledges sent (including re-acks).
    pub acks_sent: u64,
    /// Acknowledges that removed an outgoing entry.
    pub acks_received: u64,
    /// Acknowledges for nothing buffered (late duplicates).
    pub stale_acks: u64,
    /// Stream messages delivered in order.
    pub messages_delivered: u64,
    /// Duplicates received (re-acked).
    pub duplicates: u64,
    /// Messages stored out of order.
    pub stored_out_of_order: u64,
    /// Stream messages refused without ack (not ready, buffer full, too far ahead).
    pub refused: u64,
    /// Frames dropped as malformed.
    pub malformed: u64,
    /// Agent role: input discarded before the handshake finished.
    pub discarded_before_ready: u64,
}

/// The RTT estimator of §7.3, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimator {
    rtt_us: u64,
    rttvar_us: u64,
    rto_us: u64,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self {
            rtt_us: DEFAULT_ROUND_TRIP_TIME_MS * 1000,
            rttvar_us: 0,
            rto_us: DEFAULT_TRANSMISSION_TIMEOUT_MS * 1000,
        }
    }
}

impl RttEstimator {
    /// Feeds one sample (ms). RTTVAR uses the old RTT, as both official sides do.
    pub fn sample(&mut self, sample_ms: u64) {
        // Clamp absurd samples (a caller clock jump) so the arithmetic cannot overflow; any
        // sample above the RTO cap already pins the RTO at the cap.
        let sample = sample_ms.min(3_600_000) * 1000;
        self.rttvar_us = (3 * self.rttvar_us + self.rtt_us.abs_diff(sample)) / 4;
        self.rtt_us = (7 * self.rtt_us + sample) / 8;
        self.rto_us = (self.rtt_us + (CLOCK_GRANULARITY_MS * 1000).max(4 * self.rttvar_us))
            .min(MAX_TRANSMISSION_TIMEOUT_MS * 1000);
    }

    /// Smoothed RTT (µs).
    pub fn rtt_micros(&self) -> u64 {
        self.rtt_us
    }

    /// RTT variation (µs).
    pub fn rttvar_micros(&self) -> u64 {
        self.rttvar_us
    }

    /// Retransmission timeout (µs).
    pub fn rto_micros(&self) -> u64 {
        self.rto_us
    }

    /// First `now` at which `now − last_sent > RTO` holds.
    fn due_at(&self, last_sent: u64) -> u64 {
        last_sent.saturating_add(self.rto_us / 1000 + 1)
    }
}

/// SplitMix64: tiny, deterministic, good enough for ids and nonce seeds.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            for (d, s) in chunk.iter_mut().zip(v) {
                *d = s;
            }
        }
    }

    fn uuid(&mut self) -> Uuid {
        let mut b = [0u8; 16];
        self.fill(&mut b);
        uuid::Builder::from_random_bytes(b).into_uuid()
    }
}

/// One unacknowledged stream message.
struct OutgoingEntry {
    seq: i64,
    /// Shared with `transmits`: a resend or a pending transmit costs no copy.
    frame: Bytes,
    /// `None` while held by a pause.
    first_sent: Option<u64>,
    last_sent: Option<u64>,
}

/// Local data waiting to become a stream message (plaintext).
struct PendingMessage {
    payload_type: PayloadType,
    payload: Vec<u8>,
}

enum Phase {
    /// Client: nothing received yet. Agent: handshake not begun.
    Opening,
    /// Client: waiting for the caller's KMS data key.
    ClientAwaitingDataKey {
        actions: Vec<ProcessedClientAction>,
        kms_index: usize,
        challenge_ack: bool,
    },
    /// Client: response sent, waiting for challenge / complete.
    ClientHandshaking,
    /// Agent: request sent.
    AgentAwaitingResponse {
        deadline: u64,
        kms: Option<KmsEncryptionRequest>,
    },
    /// Agent: waiting for the caller's `kms:Decrypt`.
    AgentAwaitingDecrypt,
    /// Agent: challenge sent.
    AgentAwaitingChallenge {
        deadline: u64,
        expected: Box<[u8; CHALLENGE_LEN]>,
    },
    Running,
    /// Agent: closing, flush deadline.
    Closing {
        deadline: u64,
    },
    Closed,
    Failed,
}

/// The data-channel state machine. See the module docs.
pub struct Session {
    config: SessionConfig,
    rng: Rng,
    phase: Phase,
    session_type: Option<SessionType>,
    agent_version: Option<String>,
    peer_client_version: Option<String>,
    handshake_started_at: u64,
    cipher: Option<SessionCipher>,
    now: u64,

    // sending
    next_seq: i64,
    outgoing: VecDeque<OutgoingEntry>,
    /// Frame bytes in `outgoing`.
    outgoing_bytes: usize,
    /// The byte window (see the module docs).
    window: usize,
    /// The shortest round trip sampled on this connection (ms).
    min_rtt: Option<u64>,
    /// The current measuring round: when it began, and the frame bytes acknowledged since.
    round_started: u64,
    round_acked: usize,
    /// The largest window estimate of the last [`WINDOW_PEAK_MS`] and when it was made.
    window_peak: (usize, u64),
    pending: VecDeque<PendingMessage>,
    pending_bytes: usize,
    send_blocked: bool,
    paused: bool,
    rtt: RttEstimator,
    last_resend_at: Option<u64>,
    last_progress_at: u64,

    // receiving
    expected_seq: i64,
    incoming: BTreeMap<i64, ClientMessage>,
    incoming_bytes: usize,
    receive_ready: bool,
    undelivered_bytes: usize,

    transmits: VecDeque<Bytes>,
    events: VecDeque<SessionEvent>,
    stats: SessionStats,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.config.role)
            .field("state", &self.state())
            .field("next_seq", &self.next_seq)
            .field("expected_seq", &self.expected_seq)
            .field("outgoing", &self.outgoing.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn is_data_payload(role: Role, t: PayloadType) -> bool {
    match role {
        Role::Client => matches!(
            t,
            PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode
        ),
        Role::Agent => t == PayloadType::Output,
    }
}

/// Payload types this role encrypts when sending (§6.4).
fn encrypted_when_sent(role: Role, t: PayloadType) -> bool {
    match role {
        Role::Client => t == PayloadType::Output,
        Role::Agent => matches!(
            t,
            PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode
        ),
    }
}

impl Session {
    /// Creates a session (client: waiting for the agent; agent: call
    /// [`Session::begin_handshake`]).
    pub fn new(mut config: SessionConfig) -> Self {
        config.max_payload = config.max_payload.max(1);
        config.max_outgoing_messages = config.max_outgoing_messages.max(8);
        config.max_pending_bytes = config.max_pending_bytes.max(config.max_payload);
        config.min_outgoing_window = config.min_outgoing_window.max(1);
        config.max_outgoing_window = config.max_outgoing_window.max(config.min_outgoing_window);
        let window = config.min_outgoing_window;
        config.max_incoming_messages = config.max_incoming_messages.max(1);
        let mut rng = Rng(config.rng_seed);
        if config.client_id.is_empty() {
            config.client_id = rng.uuid().to_string();
        }
        Self {
            config,
            rng,
            phase: Phase::Opening,
            session_type: None,
            agent_version: None,
            peer_client_version: None,
            handshake_started_at: 0,
            cipher: None,
            now: 0,
            next_seq: 0,
            outgoing: VecDeque::new(),
            outgoing_bytes: 0,
            window,
            min_rtt: None,
            round_started: 0,
            round_acked: 0,
            window_peak: (0, 0),
            pending: VecDeque::new(),
            pending_bytes: 0,
            send_blocked: false,
            paused: false,
            rtt: RttEstimator::default(),
            last_resend_at: None,
            last_progress_at: 0,
            expected_seq: 0,
            incoming: BTreeMap::new(),
            incoming_bytes: 0,
            receive_ready: true,
            undelivered_bytes: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: SessionStats::default(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // accessors

    /// The role.
    pub fn role(&self) -> Role {
        self.config.role
    }

    /// The configuration in use (after clamping).
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Coarse state.
    pub fn state(&self) -> SessionState {
        match self.phase {
            Phase::Opening => SessionState::Opening,
            Phase::ClientAwaitingDataKey { .. }
            | Phase::ClientHandshaking
            | Phase::AgentAwaitingResponse { .. }
            | Phase::AgentAwaitingDecrypt
            | Phase::AgentAwaitingChallenge { .. } => SessionState::Handshaking,
            Phase::Running => SessionState::Running,
            Phase::Closing { .. } => SessionState::Closing,
            Phase::Closed => SessionState::Closed,
            Phase::Failed => SessionState::Failed,
        }
    }

    /// Session type, once known.
    pub fn session_type(&self) -> Option<&SessionType> {
        self.session_type.as_ref()
    }

    /// Agent version from the handshake (client role) or as configured (agent role).
    pub fn agent_version(&self) -> Option<&str> {
        self.agent_version.as_deref()
    }

    /// Agent role: the client version from the HandshakeResponse.
    pub fn peer_client_version(&self) -> Option<&str> {
        self.peer_client_version.as_deref()
    }

    /// Whether KMS encryption is active.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// Whether a `pause_publication` is in force.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The RTT estimator.
    pub fn rtt(&self) -> RttEstimator {
        self.rtt
    }

    /// Unacknowledged messages in the outgoing buffer.
    pub fn outgoing_len(&self) -> usize {
        self.outgoing.len()
    }

    /// Frame bytes of the unacknowledged messages.
    pub fn outgoing_bytes(&self) -> usize {
        self.outgoing_bytes
    }

    /// The outgoing byte window now (see the module docs).
    pub fn outgoing_window(&self) -> usize {
        self.window
    }

    /// Local bytes waiting to enter the outgoing buffer.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Nothing pending and nothing unacknowledged.
    pub fn is_flushed(&self) -> bool {
        self.outgoing.is_empty() && self.pending.is_empty()
    }

    /// Bytes `send_input`/`send_output` would accept right now.
    pub fn send_capacity(&self) -> usize {
        if self.is_terminal() {
            return 0;
        }
        self.config
            .max_pending_bytes
            .saturating_sub(self.pending_bytes)
    }

    /// Next sequence number to send.
    pub fn next_sequence_number(&self) -> i64 {
        self.next_seq
    }

    /// Next sequence number expected from the peer.
    pub fn expected_sequence_number(&self) -> i64 {
        self.expected_seq
    }

    /// Out-of-order messages held.
    pub fn incoming_len(&self) -> usize {
        self.incoming.len()
    }

    /// The application is behind: delivered data it has not polled has reached
    /// `max_undelivered_bytes`. The IO layer should stop reading the transport until this
    /// clears, so the peer is slowed by the transport's own flow control. Reading on would
    /// make the in-order message undeliverable (G12: refused, no ack) while the ones after it
    /// are stored and acknowledged; each such hole then costs the sender one resend tick, and
    /// a long backlog turns into a crawl of ten messages a second.
    pub fn is_receive_backlogged(&self) -> bool {
        self.undelivered_bytes >= self.config.max_undelivered_bytes
    }

    fn is_terminal(&self) -> bool {
        matches!(self.phase, Phase::Closed | Phase::Failed)
    }

    // -----------------------------------------------------------------------------------------
    // polling

    /// Next frame to write to the websocket as a binary message.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    /// Next event. Polling data events frees room for more incoming data; drain
    /// [`Session::poll_transmit`] again afterwards.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        let ev = self.events.pop_front()?;
        if let SessionEvent::Output(b) | SessionEvent::StdErr(b) | SessionEvent::Input(b) = &ev {
            let was_full = self.undelivered_bytes >= self.config.max_undelivered_bytes;
            self.undelivered_bytes = self.undelivered_bytes.saturating_sub(b.len());
            if was_full && self.undelivered_bytes < self.config.max_undelivered_bytes {
                self.drain_incoming(false);
            }
        }
        Some(ev)
    }

    /// Earliest time [`Session::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t: Option<u64> = None;
        let mut take = |x: u64| t = Some(t.map_or(x, |t| t.min(x)));
        match &self.phase {
            Phase::Closed | Phase::Failed => return None,
            Phase::AgentAwaitingResponse { deadline, .. }
            | Phase::AgentAwaitingChallenge { deadline, .. }
            | Phase::Closing { deadline } => take(*deadline),
            _ => {}
        }
        if let Some(head) = self.outgoing.front() {
            if let Some(first) = head.first_sent {
                take(
                    first
                        .max(self.last_progress_at)
                        .saturating_add(self.config.give_up_after_ms)
                        .saturating_add(1),
                );
            }
            if let Some(d) = self.resend_due_at() {
                take(d);
            }
        }
        t
    }

    fn resend_due_at(&self) -> Option<u64> {
        if self.paused {
            return None;
        }
        let last = self.outgoing.front()?.last_sent?;
        let due = self.rtt.due_at(last);
        Some(match self.last_resend_at {
            Some(r) => due.max(r.saturating_add(RESEND_TICK_MS)),
            None => due,
        })
    }

    /// Runs timers: give-up deadline, handshake/close deadlines, one head resend.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        let now = self.now;
        match &self.phase {
            Phase::Closed | Phase::Failed => return,
            Phase::AgentAwaitingResponse { deadline, .. }
            | Phase::AgentAwaitingChallenge { deadline, .. }
                if now >= *deadline =>
            {
                let ms = self.config.handshake_timeout_ms;
                self.fail(ProtocolError::HandshakeTimeout(ms));
                return;
            }
            Phase::Closing { deadline } if now >= *deadline => {
                self.finish_close();
                return;
            }
            _ => {}
        }
        if self.is_receive_backlogged() {
            // The peer's acknowledgements wait unread behind our own slow consumer (see
            // `is_receive_backlogged`): that silence is ours, not the peer's.
            self.last_progress_at = now;
        }
        if let Some(head) = self.outgoing.front()
            && let Some(first) = head.first_sent
        {
            let since = first.max(self.last_progress_at);
            let waited = now.saturating_sub(since);
            if waited > self.config.give_up_after_ms {
                let sequence_number = head.seq;
                self.fail(ProtocolError::GaveUp {
                    sequence_number,
                    waited_ms: waited,
                });
                return;
            }
        }
        if self.resend_due_at().is_some_and(|d| now >= d)
            && let Some(head) = self.outgoing.front_mut()
        {
            head.last_sent = Some(now);
            self.transmits.push_back(head.frame.clone());
            self.last_resend_at = Some(now);
            self.stats.resends += 1;
        }
    }

    /// The engine reopened the websocket: resend unacknowledged data now (sequence state is
    /// kept). Only the head unless `resend_all_on_reconnect`.
    pub fn handle_reconnected(&mut self, now: u64) {
        self.now = self.now.max(now);
        let now = self.now;
        // A new connection, perhaps to another endpoint: its round trip is measured afresh.
        self.min_rtt = None;
        if self.is_terminal() || self.paused {
            return;
        }
        let all = self.config.resend_all_on_reconnect;
        for entry in self.outgoing.iter_mut() {
            if entry.last_sent.is_some() {
                entry.last_sent = Some(now);
                self.transmits.push_back(entry.frame.clone());
                self.stats.resends += 1;
                if !all {
                    break;
                }
            }
        }
        self.last_resend_at = Some(now);
    }

    // -----------------------------------------------------------------------------------------
    // local input

    /// Text frame that opens the data channel (OpenDataChannelInput, §2.3), with a fresh
    /// RequestId. The token is used, never stored; do not log the result.
    pub fn open_data_channel_text(&mut self, token: &str) -> String {
        let request_id = self.rng.uuid().to_string();
        let mut input = OpenDataChannelInput::client(
            &request_id,
            token,
            &self.config.client_id,
            &self.config.client_version,
        );
        if self.config.role == Role::Agent {
            input.client_version = None;
            input.client_instance_id = Some(self.config.target_id.clone());
        }
        input.to_json_string()
    }

    /// Basic port mode: whether incoming data can be delivered (a local connection exists).
    /// While false, incoming data is not acknowledged, so the agent retransmits it later.
    pub fn set_receive_ready(&mut self, ready: bool) {
        let was = self.receive_ready;
        self.receive_ready = ready;
        if ready && !was {
            self.drain_incoming(false);
        }
    }

    /// Client: sends keystrokes / port data as Output, in messages of at most `max_payload`
    /// bytes. Returns how many bytes were taken; fewer than offered means back-pressure, and
    /// [`SessionEvent::Writable`] follows when there is room. Data offered before the session
    /// is running is queued (G10).
    pub fn send_input(&mut self, data: &[u8], now: u64) -> usize {
        self.send_data(PayloadType::Output, data, now)
    }

    /// Agent: sends stdout / port data as Output (see [`Session::send_input`]).
    pub fn send_output(&mut self, data: &[u8], now: u64) -> usize {
        self.send_data(PayloadType::Output, data, now)
    }

    /// Agent: sends stderr bytes (PayloadType 11).
    pub fn send_stderr(&mut self, data: &[u8], now: u64) -> usize {
        self.send_data(PayloadType::StdErr, data, now)
    }

    fn send_data(&mut self, payload_type: PayloadType, data: &[u8], now: u64) -> usize {
        self.now = self.now.max(now);
        if self.is_terminal() || matches!(self.phase, Phase::Closing { .. }) {
            return 0;
        }
        let mut taken = 0;
        for chunk in data.chunks(self.config.max_payload) {
            let room = self
                .config
                .max_pending_bytes
                .saturating_sub(self.pending_bytes);
            if room == 0 {
                break;
            }
            let part = chunk.get(..room.min(chunk.len())).unwrap_or_default();
            self.pending_bytes += part.len();
            self.pending.push_back(PendingMessage {
                payload_type,
                payload: part.to_vec(),
            });
            taken += part.len();
            self.pump();
            if part.len() < chunk.len() {
                break;
            }
        }
        if taken < data.len() {
            self.send_blocked = true;
        }
        taken
    }

    /// Client: sends the terminal size (Size payload). Queued until running; a queued,
    /// unsent size is replaced rather than duplicated.
    pub fn resize(&mut self, cols: u32, rows: u32, now: u64) -> Result<(), ProtocolError> {
        if self.is_terminal() {
            return Err(ProtocolError::InvalidState("resize"));
        }
        let payload = SizeData { cols, rows }.encode();
        if let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.payload_type == PayloadType::Size)
        {
            self.pending_bytes = self.pending_bytes.saturating_sub(p.payload.len()) + payload.len();
            p.payload = payload;
            return Ok(());
        }
        self.send_control(PayloadType::Size, payload, now)
    }

    /// Sends a Flag (client: DisconnectToPort / TerminateSession; agent: ConnectToPortError).
    pub fn send_flag(&mut self, flag: Flag, now: u64) -> Result<(), ProtocolError> {
        self.send_control(PayloadType::Flag, flag.encode().to_vec(), now)
    }

    /// Agent: sends the exit code (`EXIT_CODE: <n>`, PayloadType 12).
    pub fn send_exit_code(&mut self, code: i32, now: u64) -> Result<(), ProtocolError> {
        self.send_control(PayloadType::ExitCode, encode_exit_code(code), now)
    }

    /// Control messages may exceed the pending byte cap by a bounded count so a flag or a
    /// resize is never refused just because bulk data filled the queue.
    fn send_control(
        &mut self,
        payload_type: PayloadType,
        payload: Vec<u8>,
        now: u64,
    ) -> Result<(), ProtocolError> {
        self.now = self.now.max(now);
        if self.is_terminal() || matches!(self.phase, Phase::Closing { .. }) {
            return Err(ProtocolError::InvalidState("send"));
        }
        let limit = self.config.max_pending_bytes.saturating_add(64 * 1024);
        if self.pending_bytes.saturating_add(payload.len()) > limit {
            return Err(ProtocolError::OutgoingBufferFull);
        }
        self.pending_bytes += payload.len();
        self.pending.push_back(PendingMessage {
            payload_type,
            payload,
        });
        self.pump();
        Ok(())
    }

    /// Agent: closes like the real agent (§2.6): stop taking data, wait up to 2 s for the
    /// outgoing buffer to be acknowledged, then send `agent_session_state` Terminating and
    /// report [`SessionEvent::Closed`].
    pub fn close(&mut self, now: u64) -> Result<(), ProtocolError> {
        self.now = self.now.max(now);
        if self.config.role != Role::Agent || self.is_terminal() {
            return Err(ProtocolError::InvalidState("close"));
        }
        self.phase = Phase::Closing {
            deadline: self.now.saturating_add(CLOSE_FLUSH_TIMEOUT_MS),
        };
        self.pump();
        self.check_close_flushed();
        Ok(())
    }

    /// Agent: sends an `agent_session_state` message (Connected right after the channel
    /// opens, Terminating on close).
    pub fn send_session_state(&mut self, state: AgentState, now: u64) {
        self.now = self.now.max(now);
        let payload = AgentSessionStatePayload {
            schema_version: 1,
            session_state: state,
            session_id: self.config.session_id.clone(),
        }
        .encode();
        self.send_unsequenced(MessageType::AgentSessionState, payload);
    }

    fn finish_close(&mut self) {
        self.send_session_state(AgentState::Terminating, self.now);
        self.phase = Phase::Closed;
        self.events.push_back(SessionEvent::Closed);
    }

    fn check_close_flushed(&mut self) {
        if matches!(self.phase, Phase::Closing { .. }) && self.is_flushed() {
            self.finish_close();
        }
    }

    // -----------------------------------------------------------------------------------------
    // handshake (agent role)

    /// Agent: starts the session. For `Standard_Stream`/`InteractiveCommands` without KMS
    /// there is no handshake (the session is running at once, §5.1); otherwise a
    /// HandshakeRequest is sent. `properties` is sent for Port sessions only.
    pub fn begin_handshake(
        &mut self,
        session_type: SessionType,
        properties: Value,
        kms_key_id: Option<String>,
        agent_version: &str,
        now: u64,
    ) -> Result<(), ProtocolError> {
        self.now = self.now.max(now);
        if self.config.role != Role::Agent || !matches!(self.phase, Phase::Opening) {
            return Err(ProtocolError::InvalidState("begin_handshake"));
        }
        self.agent_version = Some(agent_version.to_owned());
        self.session_type = Some(session_type.clone());
        self.handshake_started_at = self.now;
        // The agent never encrypts Port sessions (§5.1).
        let kms_key_id = kms_key_id.filter(|_| session_type != SessionType::Port);
        if kms_key_id.is_none() && !session_type.handshake_without_kms() {
            self.enter_running(String::new());
            return Ok(());
        }
        let properties = if session_type == SessionType::Port {
            properties
        } else {
            Value::Null
        };
        let mut actions = vec![RequestedClientAction {
            action_type: ActionType::SessionType,
            action_parameters: ActionParameters::SessionType(SessionTypeRequest {
                session_type,
                properties,
            }),
        }];
        let kms = kms_key_id.map(|kms_key_id| {
            let mut challenge = [0u8; 16];
            self.rng.fill(&mut challenge);
            KmsEncryptionRequest {
                kms_key_id,
                challenge: Some(BASE64.encode(challenge)),
            }
        });
        if let Some(k) = &kms {
            actions.push(RequestedClientAction {
                action_type: ActionType::KmsEncryption,
                action_parameters: ActionParameters::KmsEncryption(k.clone()),
            });
        }
        let request = HandshakeRequestPayload {
            agent_version: agent_version.to_owned(),
            requested_client_actions: actions,
        };
        self.phase = Phase::AgentAwaitingResponse {
            deadline: self.now.saturating_add(self.config.handshake_timeout_ms),
            kms,
        };
        self.send_stream_now(PayloadType::HandshakeRequest, request.encode());
        Ok(())
    }

    fn on_handshake_response(&mut self, payload: &[u8]) {
        let Phase::AgentAwaitingResponse { kms, .. } = &self.phase else {
            self.drop_frame(ProtocolError::HandshakeFailed(
                "unexpected HandshakeResponse".to_owned(),
            ));
            return;
        };
        let kms = kms.clone();
        let response = match HandshakeResponsePayload::decode(payload) {
            Ok(r) => r,
            Err(e) => return self.fail(e),
        };
        self.peer_client_version = Some(response.client_version.clone());
        self.events.push_back(SessionEvent::HandshakeResponse {
            client_version: response.client_version.clone(),
            processed_actions: response.processed_client_actions.clone(),
        });
        if let Some(bad) = response
            .processed_client_actions
            .iter()
            .find(|a| a.action_status != ActionStatus::Success)
        {
            let msg = format!(
                "client refused action `{}` (status {}): {}",
                bad.action_type.as_str(),
                bad.action_status.as_i64(),
                bad.error
            );
            return self.fail(ProtocolError::HandshakeFailed(msg));
        }
        let expected = if kms.is_some() { 2 } else { 1 };
        if response.processed_client_actions.len() < expected {
            return self.fail(ProtocolError::HandshakeFailed(
                "client did not process every requested action".to_owned(),
            ));
        }
        let Some(kms) = kms else {
            self.agent_complete_handshake(String::new());
            return;
        };
        let result =
            response
                .processed_client_actions
                .iter()
                .find_map(|a| match &a.action_result {
                    ActionResult::Kms(r) if a.action_type == ActionType::KmsEncryption => Some(r),
                    _ => None,
                });
        let Some(KmsEncryptionResponse {
            kms_cipher_text_key: Some(blob),
            challenge_acknowledgement,
            ..
        }) = result
        else {
            return self.fail(ProtocolError::HandshakeFailed(
                "KMSEncryption result has no KMSCipherTextKey".to_owned(),
            ));
        };
        let mut encryption_context = self.encryption_context();
        if *challenge_acknowledgement && let Some(c) = &kms.challenge {
            encryption_context.insert("aws:ssm:RandomChallenge".to_owned(), c.clone());
        }
        self.events.push_back(SessionEvent::KmsDecryptRequested {
            key_id: kms.kms_key_id.clone(),
            ciphertext_blob: blob.clone(),
            encryption_context,
        });
        self.phase = Phase::AgentAwaitingDecrypt;
    }

    fn on_challenge_response(&mut self, payload: &[u8]) {
        let Phase::AgentAwaitingChallenge { expected, .. } = &self.phase else {
            self.drop_frame(ProtocolError::HandshakeFailed(
                "unexpected EncChallengeResponse".to_owned(),
            ));
            return;
        };
        let expected = expected.clone();
        let result = EncChallengePayload::decode(payload).and_then(|r| match &self.cipher {
            Some(c) => crypto::verify_challenge(c, &expected, &r),
            None => Err(ProtocolError::InvalidState("challenge without key")),
        });
        match result {
            Ok(()) => self.agent_complete_handshake(KMS_CUSTOMER_MESSAGE.to_owned()),
            Err(e) => self.fail(e),
        }
    }

    fn agent_complete_handshake(&mut self, customer_message: String) {
        let elapsed_ms = self.now.saturating_sub(self.handshake_started_at);
        let complete = HandshakeCompletePayload {
            handshake_time_to_complete: i64::try_from(elapsed_ms.saturating_mul(1_000_000))
                .unwrap_or(i64::MAX),
            customer_message: customer_message.clone(),
        };
        self.send_stream_now(PayloadType::HandshakeComplete, complete.encode());
        self.enter_running(customer_message);
    }

    fn encryption_context(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "aws:ssm:SessionId".to_owned(),
                self.config.session_id.clone(),
            ),
            ("aws:ssm:TargetId".to_owned(), self.config.target_id.clone()),
        ])
    }

    // -----------------------------------------------------------------------------------------
    // handshake (client role) and KMS answers

    fn on_handshake_request(&mut self, payload: &[u8]) {
        if !matches!(self.phase, Phase::Opening) {
            self.drop_frame(ProtocolError::HandshakeFailed(
                "unexpected HandshakeRequest".to_owned(),
            ));
            return;
        }
        let request = match HandshakeRequestPayload::decode(payload) {
            Ok(r) => r,
            Err(e) => return self.fail(e),
        };
        let (session_type, properties) = match request.session_type() {
            Some(p) => (p.session_type.clone(), p.properties.clone()),
            None => (SessionType::Unknown(String::new()), Value::Null),
        };
        self.agent_version = Some(request.agent_version.clone());
        self.session_type = Some(session_type.clone());
        self.events.push_back(SessionEvent::HandshakeRequested {
            agent_version: request.agent_version.clone(),
            session_type,
            properties,
        });

        let mut actions = Vec::with_capacity(request.requested_client_actions.len());
        let mut kms: Option<(usize, KmsEncryptionRequest)> = None;
        for action in &request.requested_client_actions {
            let (status, error) = match &action.action_parameters {
                ActionParameters::SessionType(p) => {
                    if p.session_type.is_shell_like() || p.session_type == SessionType::Port {
                        (ActionStatus::Success, String::new())
                    } else {
                        (
                            ActionStatus::Failed,
                            format!("unknown session type `{}`", p.session_type.as_str()),
                        )
                    }
                }
                ActionParameters::KmsEncryption(p) if kms.is_none() => {
                    kms = Some((actions.len(), p.clone()));
                    (ActionStatus::Failed, "kms data key unavailable".to_owned())
                }
                _ => (
                    ActionStatus::Unsupported,
                    format!(
                        "unsupported action `{}` or invalid parameters",
                        action.action_type.as_str()
                    ),
                ),
            };
            actions.push(ProcessedClientAction {
                action_type: action.action_type.clone(),
                action_status: status,
                action_result: ActionResult::None,
                error,
            });
        }
        match kms {
            Some((kms_index, p)) => {
                let challenge_ack = self.config.kms_challenge_opt_in && p.challenge.is_some();
                let mut encryption_context = self.encryption_context();
                if challenge_ack && let Some(c) = &p.challenge {
                    encryption_context.insert("aws:ssm:RandomChallenge".to_owned(), c.clone());
                }
                self.events.push_back(SessionEvent::KmsDataKeyRequested {
                    key_id: p.kms_key_id,
                    encryption_context,
                });
                self.phase = Phase::ClientAwaitingDataKey {
                    actions,
                    kms_index,
                    challenge_ack,
                };
            }
            None => self.client_send_response(actions),
        }
    }

    fn client_send_response(&mut self, actions: Vec<ProcessedClientAction>) {
        let response = HandshakeResponsePayload {
            client_version: self.config.client_version.clone(),
            processed_client_actions: actions,
            errors: Vec::new(),
        };
        self.phase = Phase::ClientHandshaking;
        self.send_stream_now(PayloadType::HandshakeResponse, response.encode());
    }

    /// Answers the pending KMS request with the 64-byte plaintext data key.
    ///
    /// Client: `ciphertext_blob` is GenerateDataKey's CiphertextBlob, sent to the agent.
    /// Agent: the plaintext from `kms:Decrypt`; `ciphertext_blob` is ignored.
    pub fn provide_data_key(
        &mut self,
        plaintext: &[u8],
        ciphertext_blob: Vec<u8>,
        now: u64,
    ) -> Result<(), ProtocolError> {
        self.now = self.now.max(now);
        if !matches!(
            self.phase,
            Phase::ClientAwaitingDataKey { .. } | Phase::AgentAwaitingDecrypt
        ) {
            return Err(ProtocolError::InvalidState("provide_data_key"));
        }
        let key = DataKey::from_slice(plaintext)?;
        let mut seed = [0u8; NONCE_LEN];
        self.rng.fill(&mut seed);
        let mut cipher = SessionCipher::new(&key, self.config.role, seed)?;
        match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::ClientAwaitingDataKey {
                mut actions,
                kms_index,
                challenge_ack,
            } => {
                self.cipher = Some(cipher);
                if let Some(a) = actions.get_mut(kms_index) {
                    a.action_status = ActionStatus::Success;
                    a.error = String::new();
                    a.action_result = ActionResult::Kms(KmsEncryptionResponse {
                        kms_cipher_text_key: Some(ciphertext_blob),
                        kms_cipher_text_hash: None,
                        challenge_acknowledgement: challenge_ack,
                    });
                }
                self.client_send_response(actions);
                Ok(())
            }
            Phase::AgentAwaitingDecrypt => {
                let mut random = Box::new([0u8; CHALLENGE_LEN]);
                self.rng.fill(random.as_mut_slice());
                let request = match crypto::make_challenge(&mut cipher, &random) {
                    Ok(r) => r,
                    Err(e) => {
                        self.fail(e.clone());
                        return Err(e);
                    }
                };
                self.cipher = Some(cipher);
                self.phase = Phase::AgentAwaitingChallenge {
                    deadline: self.now.saturating_add(self.config.handshake_timeout_ms),
                    expected: random,
                };
                self.send_stream_now(PayloadType::EncChallengeRequest, request.encode());
                Ok(())
            }
            other => {
                self.phase = other;
                Err(ProtocolError::InvalidState("provide_data_key"))
            }
        }
    }

    /// Reports that the KMS call failed. Client: the KMS action is answered as failed (the
    /// agent will end the session). Agent: the session fails.
    pub fn fail_kms(&mut self, reason: &str, now: u64) -> Result<(), ProtocolError> {
        self.now = self.now.max(now);
        match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::ClientAwaitingDataKey {
                mut actions,
                kms_index,
                ..
            } => {
                if let Some(a) = actions.get_mut(kms_index) {
                    a.action_status = ActionStatus::Failed;
                    a.error = reason.to_owned();
                }
                self.client_send_response(actions);
                Ok(())
            }
            Phase::AgentAwaitingDecrypt => {
                self.phase = Phase::AgentAwaitingDecrypt;
                self.fail(ProtocolError::KmsFailed(reason.to_owned()));
                Ok(())
            }
            other => {
                self.phase = other;
                Err(ProtocolError::InvalidState("fail_kms"))
            }
        }
    }

    fn on_enc_challenge_request(&mut self, payload: &[u8]) {
        if !matches!(self.phase, Phase::ClientHandshaking) {
            self.drop_frame(ProtocolError::HandshakeFailed(
                "unexpected EncChallengeRequest".to_owned(),
            ));
            return;
        }
        let result = EncChallengePayload::decode(payload).and_then(|r| match &mut self.cipher {
            Some(c) => crypto::answer_challenge(c, &r),
            None => Err(ProtocolError::HandshakeFailed(
                "challenge received without a data key".to_owned(),
            )),
        });
        match result {
            Ok(answer) => self.send_stream_now(PayloadType::EncChallengeResponse, answer.encode()),
            Err(e) => self.fail(e),
        }
    }

    fn on_handshake_complete(&mut self, payload: &[u8]) {
        if !matches!(self.phase, Phase::ClientHandshaking) {
            self.drop_frame(ProtocolError::HandshakeFailed(
                "unexpected HandshakeComplete".to_owned(),
            ));
            return;
        }
        match HandshakeCompletePayload::decode(payload) {
            Ok(c) => self.enter_running(c.customer_message),
            Err(e) => self.fail(e),
        }
    }

    fn enter_running(&mut self, customer_message: String) {
        self.phase = Phase::Running;
        let session_type = self
            .session_type
            .get_or_insert(SessionType::StandardStream)
            .clone();
        self.events.push_back(SessionEvent::Ready {
            session_type,
            customer_message,
            encrypted: self.cipher.is_some(),
        });
        self.pump();
    }

    // -----------------------------------------------------------------------------------------
    // sending internals

    fn created_date(&self) -> u64 {
        // CreatedDate must be non-zero (the plugin rejects 0).
        self.now.max(1)
    }

    fn stream_message_type(&self) -> MessageType {
        match self.config.role {
            Role::Client => MessageType::InputStreamData,
            Role::Agent => MessageType::OutputStreamData,
        }
    }

    /// Builds, buffers and (unless paused) transmits one stream message.
    fn send_stream_now(&mut self, payload_type: PayloadType, payload: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let flags = if self.config.role == Role::Agent && seq == 0 {
            FLAG_SYN
        } else {
            0
        };
        let msg = ClientMessage {
            message_type: self.stream_message_type(),
            schema_version: SCHEMA_VERSION,
            created_date: self.created_date(),
            sequence_number: seq,
            flags,
            message_id: self.rng.uuid(),
            payload_type,
            payload,
        };
        let frame = Bytes::from(msg.encode());
        let sent = if self.paused {
            None
        } else {
            self.transmits.push_back(frame.clone());
            self.stats.messages_sent += 1;
            Some(self.now)
        };
        if self.outgoing.is_empty() {
            self.last_progress_at = self.now;
            // Nothing was in flight: the time since the round began was idle, no measure of
            // the path's rate.
            self.round_started = self.now;
            self.round_acked = 0;
        }
        self.outgoing_bytes += frame.len();
        self.outgoing.push_back(OutgoingEntry {
            seq,
            frame,
            first_sent: sent,
            last_sent: sent,
        });
    }

    fn send_unsequenced(&mut self, message_type: MessageType, payload: Vec<u8>) {
        let msg = ClientMessage {
            message_type,
            schema_version: SCHEMA_VERSION,
            created_date: self.created_date(),
            sequence_number: 0,
            flags: FLAGS_CONTROL,
            message_id: self.rng.uuid(),
            payload_type: PayloadType::Null,
            payload,
        };
        self.transmits.push_back(Bytes::from(msg.encode()));
    }

    /// Moves pending local data into the outgoing buffer while running and below the cap.
    fn pump(&mut self) {
        if !matches!(self.phase, Phase::Running | Phase::Closing { .. }) {
            return;
        }
        while self.outgoing.len() < self.config.max_outgoing_messages
            && self.outgoing_bytes < self.window
        {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes = self.pending_bytes.saturating_sub(p.payload.len());
            let payload = match &mut self.cipher {
                Some(c) if encrypted_when_sent(self.config.role, p.payload_type) => {
                    match c.encrypt(&p.payload) {
                        Ok(ct) => ct,
                        Err(e) => return self.fail(e),
                    }
                }
                _ => p.payload,
            };
            self.send_stream_now(p.payload_type, payload);
        }
        if self.send_blocked && self.pending_bytes < self.config.max_pending_bytes {
            self.send_blocked = false;
            self.events.push_back(SessionEvent::Writable);
        }
    }

    /// Keeps the shortest round trip of this connection. It never expires while the
    /// connection lasts: every later sample includes the queue our own window builds, so a
    /// fresher minimum would be an inflated one (a reconnect starts over: a new path).
    fn note_min_rtt(&mut self, sample: u64) {
        if self.min_rtt.is_none_or(|min| sample < min) {
            self.min_rtt = Some(sample);
        }
    }

    /// Counts `bytes` acknowledged in the current round. A round lasts one shortest round trip
    /// and at least [`RATE_SPAN_MS`]; at its end the rate it delivered times the shortest round
    /// trip is the path's bandwidth-delay product, and [`WINDOW_GAIN`] times that is the
    /// estimate. The window is the largest estimate of the last [`WINDOW_PEAK_MS`], between
    /// `min_outgoing_window` and `max_outgoing_window`.
    fn grow_window(&mut self, bytes: usize) {
        if self.config.min_outgoing_window >= self.config.max_outgoing_window {
            return;
        }
        self.round_acked += bytes;
        let min_rtt = self.min_rtt.unwrap_or(DEFAULT_ROUND_TRIP_TIME_MS).max(1);
        let span = self.now.saturating_sub(self.round_started);
        if span < min_rtt.max(RATE_SPAN_MS) {
            return;
        }
        let bdp =
            usize::try_from(self.round_acked as u128 * u128::from(min_rtt) / u128::from(span))
                .unwrap_or(usize::MAX);
        let estimate = bdp.saturating_mul(WINDOW_GAIN);
        let (peak, at) = self.window_peak;
        if estimate >= peak || self.now.saturating_sub(at) > WINDOW_PEAK_MS {
            self.window_peak = (estimate, self.now);
        }
        self.window = self.window_peak.0.clamp(
            self.config.min_outgoing_window,
            self.config.max_outgoing_window,
        );
        self.round_started = self.now;
        self.round_acked = 0;
    }

    fn send_ack(&mut self, msg: &ClientMessage) {
        let content = AcknowledgeContent {
            message_type: msg.message_type.as_str().to_owned(),
            message_id: msg.message_id.to_string(),
            sequence_number: msg.sequence_number,
            is_sequential_message: true,
        };
        self.send_unsequenced(MessageType::Acknowledge, content.encode());
        self.stats.acks_sent += 1;
    }

    fn resume_if_paused(&mut self) {
        if !self.paused {
            return;
        }
        self.paused = false;
        self.events.push_back(SessionEvent::Resumed);
        let now = self.now;
        for entry in self.outgoing.iter_mut() {
            if entry.last_sent.is_none() {
                entry.first_sent = Some(now);
                entry.last_sent = Some(now);
                self.transmits.push_back(entry.frame.clone());
                self.stats.messages_sent += 1;
            }
        }
    }

    fn fail(&mut self, error: ProtocolError) {
        self.phase = Phase::Failed;
        self.pending.clear();
        self.pending_bytes = 0;
        self.events.push_back(SessionEvent::Error(error));
    }

    fn drop_frame(&mut self, error: ProtocolError) {
        self.stats.malformed += 1;
        self.events.push_back(SessionEvent::FrameDropped(error));
    }

    // -----------------------------------------------------------------------------------------
    // receiving

    /// Feeds one websocket message (binary, or text: parsed the same way, as the plugin does).
    pub fn handle_incoming(&mut self, bytes: &[u8], now: u64) {
        self.now = self.now.max(now);
        if self.is_terminal() {
            return;
        }
        let opts = DecodeOptions {
            max_payload_len: self.config.max_incoming_payload,
            validate: true,
        };
        let msg = match ClientMessage::decode_exact_with(bytes, &opts) {
            Ok(d) => d.message,
            Err(e) => return self.drop_frame(e),
        };
        let peer_stream = match self.config.role {
            Role::Client => MessageType::OutputStreamData,
            Role::Agent => MessageType::InputStreamData,
        };
        match &msg.message_type {
            t if *t == peer_stream => {
                self.resume_if_paused();
                self.on_stream_message(msg);
            }
            MessageType::Acknowledge => {
                self.resume_if_paused();
                self.on_ack(&msg.payload);
            }
            MessageType::ChannelClosed => self.on_channel_closed(&msg.payload),
            MessageType::StartPublication => self.resume_if_paused(),
            MessageType::PausePublication if !self.paused => {
                self.paused = true;
                self.events.push_back(SessionEvent::Paused);
            }
            // A repeated pause, our own stream type echoed back, agent_session_state, unknown
            // types: ignored, as the plugin does (§4.1).
            _ => {}
        }
    }

    fn on_ack(&mut self, payload: &[u8]) {
        let acked = match AcknowledgeContent::decode_sequence_number(payload) {
            Ok(seq) => seq,
            Err(e) => return self.drop_frame(e),
        };
        let Ok(idx) = self.outgoing.binary_search_by_key(&acked, |e| e.seq) else {
            self.stats.stale_acks += 1;
            return;
        };
        let Some(entry) = self.outgoing.remove(idx) else {
            return;
        };
        self.outgoing_bytes = self.outgoing_bytes.saturating_sub(entry.frame.len());
        if let Some(last) = entry.last_sent {
            let sample = self.now.saturating_sub(last);
            self.rtt.sample(sample);
            // Only first transmissions say how short the path is (a resend's ack may answer
            // the original).
            if entry.first_sent == entry.last_sent {
                self.note_min_rtt(sample);
            }
        }
        self.grow_window(entry.frame.len());
        self.stats.acks_received += 1;
        self.last_progress_at = self.now;
        self.pump();
        self.check_close_flushed();
    }

    /// Whether `msg` can be handed to the application now (G12).
    fn can_deliver(&self, msg: &ClientMessage) -> bool {
        if self.is_terminal() {
            return false;
        }
        if is_data_payload(self.config.role, msg.payload_type) {
            self.receive_ready && self.undelivered_bytes < self.config.max_undelivered_bytes
        } else {
            true
        }
    }

    fn on_stream_message(&mut self, msg: ClientMessage) {
        let seq = msg.sequence_number;
        if seq < self.expected_seq {
            // Our earlier ack was lost: re-ack so the sender stops retransmitting (G11).
            self.stats.duplicates += 1;
            self.send_ack(&msg);
            return;
        }
        if seq == self.expected_seq {
            if !self.can_deliver(&msg) {
                self.stats.refused += 1;
                return;
            }
            self.send_ack(&msg);
            self.expected_seq = self.expected_seq.saturating_add(1);
            self.deliver(msg);
            self.drain_incoming(false);
            return;
        }
        if self.incoming.contains_key(&seq) {
            self.stats.duplicates += 1;
            self.send_ack(&msg);
            return;
        }
        let distance = seq.saturating_sub(self.expected_seq);
        let too_far =
            usize::try_from(distance).map_or(true, |d| d > self.config.max_incoming_messages);
        if too_far
            || self.incoming.len() >= self.config.max_incoming_messages
            || self.incoming_bytes.saturating_add(msg.payload.len())
                > self.config.max_incoming_bytes
        {
            self.stats.refused += 1;
            return;
        }
        self.send_ack(&msg);
        self.stats.stored_out_of_order += 1;
        self.incoming_bytes += msg.payload.len();
        self.incoming.insert(seq, msg);
    }

    /// Delivers stored messages that are now in order. `force` ignores readiness (used
    /// before reporting `channel_closed`).
    fn drain_incoming(&mut self, force: bool) {
        loop {
            if self.is_terminal() {
                return;
            }
            let Some(next) = self.incoming.get(&self.expected_seq) else {
                return;
            };
            if !force && !self.can_deliver(next) {
                return;
            }
            let Some(msg) = self.incoming.remove(&self.expected_seq) else {
                return;
            };
            self.incoming_bytes = self.incoming_bytes.saturating_sub(msg.payload.len());
            self.expected_seq = self.expected_seq.saturating_add(1);
            self.deliver(msg);
        }
    }

    fn push_data_event(&mut self, ev: SessionEvent) {
        if let SessionEvent::Output(b) | SessionEvent::StdErr(b) | SessionEvent::Input(b) = &ev {
            if b.is_empty() {
                return;
            }
            self.undelivered_bytes += b.len();
        }
        self.events.push_back(ev);
    }

    /// Processes one in-order stream message (already acknowledged).
    fn deliver(&mut self, msg: ClientMessage) {
        self.stats.messages_delivered += 1;
        match self.config.role {
            Role::Client => self.deliver_client(msg),
            Role::Agent => self.deliver_agent(msg),
        }
    }

    fn decrypt_if_needed(&mut self, payload: Vec<u8>) -> Option<Vec<u8>> {
        match &self.cipher {
            Some(c) => match c.decrypt(&payload) {
                Ok(p) => Some(p),
                Err(e) => {
                    // Never pass undecryptable bytes on as data.
                    self.fail(e);
                    None
                }
            },
            None => Some(payload),
        }
    }

    fn deliver_client(&mut self, msg: ClientMessage) {
        match msg.payload_type {
            PayloadType::HandshakeRequest => self.on_handshake_request(&msg.payload),
            PayloadType::EncChallengeRequest => self.on_enc_challenge_request(&msg.payload),
            PayloadType::HandshakeComplete => self.on_handshake_complete(&msg.payload),
            PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode => {
                if matches!(self.phase, Phase::Opening) {
                    // No handshake: a plain shell announces itself with its first output (G9).
                    self.enter_running(String::new());
                }
                let Some(data) = self.decrypt_if_needed(msg.payload) else {
                    return;
                };
                let ev = match msg.payload_type {
                    PayloadType::StdErr => SessionEvent::StdErr(data),
                    PayloadType::ExitCode => match decode_exit_code(&data) {
                        Ok(code) => SessionEvent::ExitCode(code),
                        Err(_) => SessionEvent::Output(data),
                    },
                    _ => SessionEvent::Output(data),
                };
                self.push_data_event(ev);
            }
            PayloadType::Flag => match Flag::decode(&msg.payload) {
                Ok(f) => self.events.push_back(SessionEvent::Flag(f)),
                Err(e) => self.drop_frame(e),
            },
            _ => {}
        }
    }

    fn deliver_agent(&mut self, msg: ClientMessage) {
        match msg.payload_type {
            PayloadType::HandshakeResponse => return self.on_handshake_response(&msg.payload),
            PayloadType::EncChallengeResponse => return self.on_challenge_response(&msg.payload),
            _ => {}
        }
        if !matches!(self.phase, Phase::Running | Phase::Closing { .. }) {
            // The real agent acks and drops input until the handshake is done (§5.6).
            self.stats.discarded_before_ready += 1;
            return;
        }
        match msg.payload_type {
            PayloadType::Output => {
                if let Some(data) = self.decrypt_if_needed(msg.payload) {
                    self.push_data_event(SessionEvent::Input(data));
                }
            }
            PayloadType::Size => match SizeData::decode(&msg.payload) {
                Ok(s) => self.events.push_back(SessionEvent::Resize(s)),
                Err(e) => self.drop_frame(e),
            },
            PayloadType::Flag => match Flag::decode(&msg.payload) {
                Ok(f) => self.events.push_back(SessionEvent::Flag(f)),
                Err(e) => self.drop_frame(e),
            },
            _ => {}
        }
    }

    fn on_channel_closed(&mut self, payload: &[u8]) {
        let closed = ChannelClosedPayload::decode(payload).unwrap_or_default();
        // Everything already in order goes out first (§8 "Output after channel_closed").
        self.drain_incoming(true);
        if self.is_terminal() {
            return;
        }
        self.phase = Phase::Closed;
        self.pending.clear();
        self.pending_bytes = 0;
        self.events.push_back(SessionEvent::ChannelClosed {
            output: closed.output,
            session_id: closed.session_id,
        });
    }
}

/// Builds a `channel_closed` frame as the service sends it (sandbox use).
pub fn channel_closed_frame(
    session_id: &str,
    destination_id: &str,
    output: &str,
    now_ms: u64,
    message_id: Uuid,
) -> Vec<u8> {
    let payload = ChannelClosedPayload {
        message_id: message_id.to_string(),
        created_date: now_ms.to_string(),
        destination_id: destination_id.to_owned(),
        session_id: session_id.to_owned(),
        message_type: "channel_closed".to_owned(),
        schema_version: 1,
        output: output.to_owned(),
    };
    ClientMessage {
        message_type: MessageType::ChannelClosed,
        schema_version: SCHEMA_VERSION,
        created_date: now_ms.max(1),
        sequence_number: 0,
        flags: FLAGS_CONTROL,
        message_id,
        payload_type: PayloadType::Null,
        payload: payload.encode(),
    }
    .encode()
}

/// Builds a `start_publication` or `pause_publication` frame (sandbox use).
pub fn publication_frame(pause: bool, now_ms: u64, message_id: Uuid) -> Vec<u8> {
    ClientMessage {
        message_type: if pause {
            MessageType::PausePublication
        } else {
            MessageType::StartPublication
        },
        schema_version: SCHEMA_VERSION,
        created_date: now_ms.max(1),
        sequence_number: 0,
        flags: FLAGS_CONTROL,
        message_id,
        payload_type: PayloadType::Null,
        payload: Vec::new(),
    }
    .encode()
}
