//! smux v1: the stream multiplexing that port forwarding uses in multiplexed mode (protocol §9.4).
//!
//! In multiplexed mode the Output payloads of each direction form **one ordered byte stream**
//! carrying smux frames (xtaci/smux, protocol version 1, as vendored by session-manager-plugin
//! and amazon-ssm-agent). Frame boundaries have nothing to do with data-channel message
//! boundaries (both Go sides read their smux pipe in 1024-byte chunks), so frames are decoded
//! with a streaming decoder that accepts arbitrary slices (gotcha G20). The client is the smux
//! client (opens streams, one per accepted local TCP connection); the agent is the smux server
//! (accepts streams and dials the target for each).
//!
//! # Wire format
//!
//! Every frame is an 8-byte header, **little-endian** (unlike the big-endian SSM framing around
//! it), followed by `length` data bytes for PSH only:
//!
//! ```text
//! offset 0     1     2               4                    8
//!        +-----+-----+---------------+--------------------+---------------------
//!        | ver | cmd | length u16 LE | stream id u32 LE   | data (length bytes, PSH only)
//!        +-----+-----+---------------+--------------------+---------------------
//! ```
//!
//! | cmd | name | data | meaning |
//! |---:|---|---|---|
//! | 0 | SYN | none | open stream `sid` |
//! | 1 | FIN | none | the sender will send no more on `sid` (smux: it has closed the stream) |
//! | 2 | PSH | 0..=65535 bytes | stream data |
//! | 3 | NOP | none | keepalive, `sid` 0 |
//! | 4 | UPD | 8 bytes | smux **v2** window update; a protocol error here (see below) |
//!
//! Limits and policies, each following smux's `recvLoop` unless stated:
//!
//! * `ver` must be 1 and `cmd` one of 0..=3, otherwise the whole mux session is dead
//!   ([`MuxError`], smux `ErrInvalidProtocol`).
//! * UPD (4) is rejected too. **This is stricter than smux**, whose receive loop reads an UPD's
//!   8 bytes whatever the session version; a v1 peer never sends one (smux only sends UPD when
//!   configured for version 2), so rejecting it can only catch a misconfigured peer.
//! * The `length` field of SYN, FIN and NOP is **ignored** and no data follows them, exactly as
//!   smux reads them; honouring a non-zero length would desynchronise us from a smux peer.
//! * A PSH frame may carry up to 65535 bytes; the decoder allocates exactly the declared length
//!   per frame and never more, so a hostile length costs at most 64 KiB.
//! * A PSH with length 0 is skipped; PSH or FIN for a stream we do not know (never opened,
//!   refused, or reset by us) is dropped; SYN for a stream that already exists is ignored.
//!   All of these are what smux does; they are counted in [`Mux::ignored_frames`].
//! * PSH after the peer's FIN is dropped (counted). smux would buffer it, but a smux peer can
//!   never produce it (after `Close` its writes fail), so only a broken peer sends it and
//!   delivering it would violate "no data after EOF" for the local socket.
//! * SYN received by the [`Role::Client`] is ignored: the agent never opens streams, and the
//!   plugin's smux client would park such a stream in a backlog nobody accepts.
//! * Client stream ids are odd, first 3, then 5, 7, … (smux starts the counter at 1 and adds 2
//!   before each open); ids are never reused and run out after `u32::MAX`.
//!
//! # What `Mux` does
//!
//! [`Mux`] is a sans-IO state machine in the quinn-proto style: bytes and `now_ms` go in through
//! `handle_*`, and bytes to send, events and the next deadline come out through `poll_*`. It
//! keeps per-stream state (send buffer, half-close flags, byte counters), schedules output
//! **round-robin** among streams with pending data in PSH frames of at most
//! [`MuxConfig::max_frame_data`] bytes, sends SYN (and NOP) ahead of data and a stream's FIN
//! after its data, and runs the optional keepalive.
//!
//! Half-close works in both directions at this layer: after [`Mux::close`] the stream still
//! delivers data until the peer's FIN, and after the peer's FIN ([`MuxEvent::Fin`]) we may still
//! write until we close. When both FINs have passed the state is freed ([`MuxEvent::Closed`]).
//! **Against a real smux peer FIN means "closed", not "half-closed"**: smux's `Stream.Close`
//! sends FIN and forgets the stream, so data we send after its FIN is discarded; and the agent
//! answers our FIN by closing its target connection (its `handleDataTransfer` closes both sides
//! when one copy ends). The forward engine should therefore close the local socket on
//! [`MuxEvent::Fin`] once it has written out the data received, and expect at most in-flight
//! data after it sends FIN. Half-close is kept for our own sandbox agent and for symmetry.
//!
//! Dial failures on the agent: the agent sends Flag `ConnectToPortError` as a separate
//! data-channel message (outside smux, the session layer reports it) and then FIN on the
//! stream. The flag does not name the stream; the engine sees `Fin` on a stream that never
//! carried data and closes the local connection.
//!
//! # No flow control
//!
//! smux v1 has **no per-stream flow control** (that is what v2's UPD adds). Every byte the
//! peer sends is turned into a [`MuxEvent::Data`] as soon as it is fed to
//! [`Mux::handle_incoming`]; this module buffers only what is fed to it until the caller
//! drains [`Mux::poll_event`]. It guarantees:
//!
//! * outgoing memory is bounded: at most [`MuxConfig::max_stream_send_buffer`] queued bytes per
//!   stream ([`Mux::write`] accepts less when full: back-pressure for the local socket), at most
//!   [`MuxConfig::max_streams`] streams, plus at most one partially sent frame;
//! * decoding memory is bounded by one frame (≤ 64 KiB);
//! * fairness between streams in our outgoing direction.
//!
//! It does **not** bound incoming data per stream: a slow local client cannot slow the peer
//! down through smux. The engine bounds per-stream receive buffering itself (bounded channel per
//! stream; when one fills, stop feeding `handle_incoming`, which delays acknowledgements at the
//! session layer and so throttles the whole session, or reset the stream).
//!
//! # Basic mode (no framing)
//!
//! When the version rules pick basic mode (see the sibling `version` module) there is no smux at
//! all and this module is not used: Output payloads are the raw bytes of **one** TCP
//! connection at a time. When that local connection ends (EOF or error) the session layer
//! sends Flag `DisconnectToPort` (1), the client accepts the next local connection and keeps
//! using the same data channel; the agent closes its target connection on the flag and redials
//! when the next Output arrives. Until a local connection exists the plugin leaves incoming
//! Output unacknowledged so the agent retransmits it. Basic mode cannot carry two connections at
//! once; mux mode never sends `DisconnectToPort`.
//!
//! # Usage sketch (client side)
//!
//! ```text
//! accept TCP          -> id = mux.open_stream()?
//! TCP readable        -> n = mux.send_capacity(id); read ≤ n bytes; mux.write(id, &buf)?
//! TCP EOF             -> mux.close(id)?
//! loop                -> while let Some(p) = mux.poll_transmit(1024) { session.send_input(p) }
//! session Output(p)   -> mux.handle_incoming(&p, now_ms)?   (Err: tear down all streams)
//! then                -> while let Some(ev) = mux.poll_event() { Data → write to TCP, Fin → shut
//!                        down TCP write side / close, Closed → drop, KeepaliveTimeout → fail }
//! timer               -> sleep until mux.poll_timeout(); mux.handle_timeout(now_ms)
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use thiserror::Error;

/// smux protocol version spoken here.
pub const VERSION: u8 = 1;
/// Size of the frame header.
pub const HEADER_LEN: usize = 8;
/// Largest PSH payload the `length` field can express.
pub const MAX_FRAME_DATA: usize = u16::MAX as usize;

/// Command byte: open a stream.
pub const CMD_SYN: u8 = 0;
/// Command byte: the sender has finished (closed) the stream.
pub const CMD_FIN: u8 = 1;
/// Command byte: stream data.
pub const CMD_PSH: u8 = 2;
/// Command byte: keepalive.
pub const CMD_NOP: u8 = 3;
/// Command byte: smux v2 window update (invalid in v1).
pub const CMD_UPD: u8 = 4;

/// Default PSH payload size: 1016 data bytes + 8 header bytes = 1024, the data-channel chunk
/// size both Go implementations use (§7.5).
///
/// With `poll_transmit(1024)` every Output message then carries exactly one frame under load,
/// and round-robin works at the granularity of one message: a stream with megabytes queued
/// yields the channel after every 1 KiB. smux's own default (32 KiB frames) would let one
/// stream occupy 32 consecutive messages before another stream's first byte.
pub const DEFAULT_MAX_FRAME_DATA: usize = 1016;

/// Default per-stream send buffer: smux's `MaxStreamBuffer` (64 KiB).
pub const DEFAULT_MAX_STREAM_SEND_BUFFER: usize = 64 * 1024;

/// Default stream limit: smux's accept backlog (1024).
pub const DEFAULT_MAX_STREAMS: usize = 1024;

/// A smux stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u32);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Everything that can go wrong in this module.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MuxError {
    /// A frame header with a version other than 1 (fatal for the mux session).
    #[error("unsupported smux version `{0}` (expected `1`)")]
    BadVersion(u8),
    /// A frame with a command outside SYN/FIN/PSH/NOP (fatal for the mux session).
    #[error("unknown smux command `{0}`")]
    UnknownCommand(u8),
    /// A v2 window update on this v1 session (fatal for the mux session).
    #[error("smux window update (UPD) received on a version 1 session")]
    UnexpectedUpdate,
    /// Encoding a PSH frame with more data than `length` can express.
    #[error("smux frame data of `{0}` bytes exceeds the limit of `65535` bytes")]
    FrameTooLarge(usize),
    /// The stream does not exist (never opened, closed, or reset).
    #[error("smux stream `{0}` does not exist")]
    UnknownStream(StreamId),
    /// `write` after `close` on the same stream.
    #[error("smux stream `{0}` is closed for writing")]
    WriteAfterClose(StreamId),
    /// Only [`Role::Client`] opens streams.
    #[error("only the smux client opens streams")]
    NotClient,
    /// [`MuxConfig::max_streams`] streams are open.
    #[error("too many open smux streams (limit `{0}`)")]
    TooManyStreams(usize),
    /// All odd stream ids have been used; a new mux session is needed.
    #[error("smux stream ids are exhausted")]
    StreamIdsExhausted,
    /// The mux session died earlier (protocol error or keepalive timeout).
    #[error("the smux session is closed")]
    SessionClosed,
}

/// The raw 8-byte header, unvalidated (see [`FrameHeader::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Protocol version, 1 for us.
    pub version: u8,
    /// Command byte (`CMD_*`).
    pub cmd: u8,
    /// Data length; meaningful for PSH only.
    pub length: u16,
    /// Stream id.
    pub stream_id: u32,
}

impl FrameHeader {
    /// Reads the little-endian fields. Never fails: validation is separate.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Self {
        let [version, cmd, l0, l1, s0, s1, s2, s3] = *bytes;
        Self {
            version,
            cmd,
            length: u16::from_le_bytes([l0, l1]),
            stream_id: u32::from_le_bytes([s0, s1, s2, s3]),
        }
    }

    /// The wire bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let [l0, l1] = self.length.to_le_bytes();
        let [s0, s1, s2, s3] = self.stream_id.to_le_bytes();
        [self.version, self.cmd, l0, l1, s0, s1, s2, s3]
    }

    /// Checks version and command the way smux's receive loop does (UPD rejected, see the
    /// module docs).
    pub fn validate(&self) -> Result<(), MuxError> {
        if self.version != VERSION {
            return Err(MuxError::BadVersion(self.version));
        }
        match self.cmd {
            CMD_SYN | CMD_FIN | CMD_PSH | CMD_NOP => Ok(()),
            CMD_UPD => Err(MuxError::UnexpectedUpdate),
            other => Err(MuxError::UnknownCommand(other)),
        }
    }

    /// Number of data bytes that follow this header on the wire (PSH only, smux semantics).
    fn data_len(&self) -> usize {
        if self.cmd == CMD_PSH {
            usize::from(self.length)
        } else {
            0
        }
    }

    /// The frame for a valid header whose data (if any) is `data`.
    fn into_frame(self, data: Vec<u8>) -> Frame {
        let id = StreamId(self.stream_id);
        match self.cmd {
            CMD_SYN => Frame::Syn(id),
            CMD_FIN => Frame::Fin(id),
            CMD_PSH => Frame::Psh(id, data),
            _ => Frame::Nop(id),
        }
    }
}

/// A validated smux v1 frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Frame {
    /// Open a stream.
    Syn(StreamId),
    /// The sender has finished the stream.
    Fin(StreamId),
    /// Stream data (at most 65535 bytes; may be empty, which smux skips).
    Psh(StreamId, Vec<u8>),
    /// Keepalive; smux always uses stream id 0.
    Nop(StreamId),
}

impl Frame {
    /// The stream id the frame carries.
    pub fn stream_id(&self) -> StreamId {
        match self {
            Frame::Syn(id) | Frame::Fin(id) | Frame::Psh(id, _) | Frame::Nop(id) => *id,
        }
    }

    /// The command byte.
    pub fn cmd(&self) -> u8 {
        match self {
            Frame::Syn(_) => CMD_SYN,
            Frame::Fin(_) => CMD_FIN,
            Frame::Psh(..) => CMD_PSH,
            Frame::Nop(_) => CMD_NOP,
        }
    }

    /// Length of the encoded frame.
    pub fn encoded_len(&self) -> usize {
        match self {
            Frame::Psh(_, data) => HEADER_LEN.saturating_add(data.len()),
            _ => HEADER_LEN,
        }
    }

    /// Appends the encoded frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), MuxError> {
        let data: &[u8] = match self {
            Frame::Psh(_, data) => data,
            _ => &[],
        };
        let length = u16::try_from(data.len()).map_err(|_| MuxError::FrameTooLarge(data.len()))?;
        let header = FrameHeader {
            version: VERSION,
            cmd: self.cmd(),
            length,
            stream_id: self.stream_id().0,
        };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(data);
        Ok(())
    }

    /// The encoded frame.
    pub fn encode(&self) -> Result<Vec<u8>, MuxError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }
}

/// Decodes one frame from the start of `buf` without keeping state.
///
/// `Ok(None)` means "need more bytes" and consumes nothing; a complete header that fails
/// validation is reported at once, even before its data has arrived. On success returns the
/// frame and the number of bytes it occupied.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, MuxError> {
    let Some(header_bytes) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let header = FrameHeader::parse(header_bytes);
    header.validate()?;
    let total = HEADER_LEN.saturating_add(header.data_len());
    let Some(data) = buf.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    Ok(Some((header.into_frame(data.to_vec()), total)))
}

/// Streaming decoder: feed arbitrary slices, get whole frames.
///
/// Holds at most one partial frame: up to 7 header bytes, or the data of one PSH frame in a
/// buffer allocated once with exactly the declared length. After a protocol error it stays
/// failed and returns that error for every further call.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    header: [u8; HEADER_LEN],
    header_len: usize,
    body: Option<PartialData>,
    error: Option<MuxError>,
}

#[derive(Debug)]
struct PartialData {
    header: FrameHeader,
    want: usize,
    data: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder at a frame boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes the next frame, consuming bytes from the front of `input`.
    ///
    /// Returns `Ok(None)` only once `input` is empty (everything consumed into the partial
    /// frame), so `while let Some(frame) = decoder.decode_next(&mut rest)? {}` drains a slice.
    pub fn decode_next(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, MuxError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        loop {
            if let Some(body) = &mut self.body {
                let missing = body.want.saturating_sub(body.data.len());
                let (take, rest) = split_prefix(input, missing);
                body.data.extend_from_slice(take);
                *input = rest;
                if body.data.len() < body.want {
                    return Ok(None);
                }
                return Ok(self
                    .body
                    .take()
                    .map(|body| body.header.into_frame(body.data)));
            }

            let (take, rest) = split_prefix(input, HEADER_LEN.saturating_sub(self.header_len));
            let end = self.header_len.saturating_add(take.len());
            if let Some(slot) = self.header.get_mut(self.header_len..end) {
                slot.copy_from_slice(take);
            }
            *input = rest;
            self.header_len = end;
            if self.header_len < HEADER_LEN {
                return Ok(None);
            }
            self.header_len = 0;

            let header = FrameHeader::parse(&self.header);
            if let Err(error) = header.validate() {
                self.error = Some(error.clone());
                return Err(error);
            }
            let want = header.data_len();
            if want == 0 {
                return Ok(Some(header.into_frame(Vec::new())));
            }
            // `want` ≤ 65535: one allocation of exactly the declared size.
            self.body = Some(PartialData {
                header,
                want,
                data: Vec::with_capacity(want),
            });
        }
    }

    /// Decodes every complete frame in `input` (convenience over [`Self::decode_next`]).
    pub fn feed(&mut self, input: &[u8]) -> Result<Vec<Frame>, MuxError> {
        let mut rest = input;
        let mut frames = Vec::new();
        while let Some(frame) = self.decode_next(&mut rest)? {
            frames.push(frame);
        }
        Ok(frames)
    }

    /// Bytes of a partial frame held (header bytes or PSH data so far).
    pub fn buffered_len(&self) -> usize {
        self.body.as_ref().map_or(self.header_len, |body| {
            HEADER_LEN.saturating_add(body.data.len())
        })
    }

    /// Capacity of the partial-frame data buffer (≤ 65535; for allocation tests).
    pub fn buffered_capacity(&self) -> usize {
        self.body.as_ref().map_or(0, |body| body.data.capacity())
    }

    /// Whether the decoder sits exactly at a frame boundary.
    pub fn is_at_boundary(&self) -> bool {
        self.header_len == 0 && self.body.is_none()
    }
}

/// `input.split_at(min(n, len))` without a panicking path.
fn split_prefix(input: &[u8], n: usize) -> (&[u8], &[u8]) {
    input
        .split_at_checked(n.min(input.len()))
        .unwrap_or((input, &[]))
}

/// Which end of the mux session we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Opens streams (our port-forward client; the plugin).
    Client,
    /// Accepts streams on SYN (the agent; our sandbox agent).
    Server,
}

/// smux keepalive timing.
///
/// smux checks at every `timeout` tick whether anything arrived since the previous tick, so it
/// notices silence after one to two timeouts (30–60 s). Here the deadline is exactly
/// `timeout_ms` after the last received byte: never later than smux, at most one period earlier,
/// and a live peer sending NOPs every `interval_ms < timeout_ms` never trips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keepalive {
    /// Send a NOP this often.
    pub interval_ms: u64,
    /// Declare the peer dead after this long without receiving anything.
    pub timeout_ms: u64,
}

impl Keepalive {
    /// smux `DefaultConfig`: NOP every 10 s, dead after 30 s of silence.
    pub const SMUX_DEFAULT: Self = Self {
        interval_ms: 10_000,
        timeout_ms: 30_000,
    };
}

/// Tuning for a [`Mux`]. Out-of-range values are clamped by [`Mux::new`] (frame data to
/// 1..=65535, everything else to at least 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MuxConfig {
    /// Largest PSH payload we send. Default [`DEFAULT_MAX_FRAME_DATA`] (1016).
    pub max_frame_data: usize,
    /// Keepalive, or `None` when the version rules turn it off. Default smux's (10 s / 30 s).
    pub keepalive: Option<Keepalive>,
    /// Bytes [`Mux::write`] will queue per stream before pushing back. Default 64 KiB.
    pub max_stream_send_buffer: usize,
    /// Streams open at once (both roles). Default 1024.
    pub max_streams: usize,
}

impl Default for MuxConfig {
    fn default() -> Self {
        Self {
            max_frame_data: DEFAULT_MAX_FRAME_DATA,
            keepalive: Some(Keepalive::SMUX_DEFAULT),
            max_stream_send_buffer: DEFAULT_MAX_STREAM_SEND_BUFFER,
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }
}

impl MuxConfig {
    /// The defaults with smux's keepalive on or off (from `version::PortMode::Mux`).
    pub fn with_keepalive(keepalive: bool) -> Self {
        Self {
            keepalive: keepalive.then_some(Keepalive::SMUX_DEFAULT),
            ..Self::default()
        }
    }

    fn sanitized(mut self) -> Self {
        self.max_frame_data = self.max_frame_data.clamp(1, MAX_FRAME_DATA);
        self.max_stream_send_buffer = self.max_stream_send_buffer.max(1);
        self.max_streams = self.max_streams.max(1);
        if let Some(k) = &mut self.keepalive {
            k.interval_ms = k.interval_ms.max(1);
            k.timeout_ms = k.timeout_ms.max(1);
        }
        self
    }
}

/// Something the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MuxEvent {
    /// Server: the peer opened this stream (SYN). Dial the target for it.
    Opened(StreamId),
    /// Data from the peer, in order. Consecutive PSH frames are merged.
    Data(StreamId, Vec<u8>),
    /// The peer sent FIN: no more data will arrive on this stream (against smux: the peer
    /// has closed it, see the module docs).
    Fin(StreamId),
    /// Both FINs have passed (ours is queued for transmission); the stream's state is freed.
    Closed(StreamId),
    /// Server: a SYN beyond [`MuxConfig::max_streams`]; answered with FIN at once.
    Refused(StreamId),
    /// Keepalive on and nothing received for `timeout_ms`: the mux session is dead.
    KeepaliveTimeout,
}

/// Counters and flags of one stream, for the forward view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamStats {
    /// Data bytes received from the peer (delivered as [`MuxEvent::Data`]).
    pub bytes_in: u64,
    /// Data bytes framed for sending.
    pub bytes_out: u64,
    /// Data bytes accepted by [`Mux::write`] and not yet framed.
    pub queued: usize,
    /// We have closed our direction ([`Mux::close`]); FIN queued or sent.
    pub local_closed: bool,
    /// The peer's FIN has arrived.
    pub remote_closed: bool,
}

/// A FIFO of bytes with cheap consumption from the front, built on memcpy.
#[derive(Debug, Default)]
struct ByteQueue {
    buf: Vec<u8>,
    start: usize,
}

impl ByteQueue {
    fn len(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, data: &[u8]) {
        // Compact once the consumed prefix dominates, so memory stays within ~2× the live bytes.
        if self.start > 0 && self.start >= self.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    fn front(&self, n: usize) -> &[u8] {
        let end = self.start.saturating_add(n.min(self.len()));
        self.buf.get(self.start..end).unwrap_or(&[])
    }

    fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalState {
    Open,
    FinQueued,
    FinSent,
}

#[derive(Debug)]
struct Stream {
    send: ByteQueue,
    /// Client-opened stream whose SYN has not been framed yet.
    syn_pending: bool,
    local: LocalState,
    remote_fin: bool,
    /// In the round-robin queue.
    scheduled: bool,
    bytes_in: u64,
    bytes_out: u64,
}

impl Stream {
    fn new(syn_pending: bool) -> Self {
        Self {
            send: ByteQueue::default(),
            syn_pending,
            local: LocalState::Open,
            remote_fin: false,
            scheduled: false,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    fn has_work(&self) -> bool {
        !self.send.is_empty() || self.local == LocalState::FinQueued
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Syn(u32),
    Fin(u32),
    Nop,
}

#[derive(Debug)]
struct KeepaliveTimer {
    config: Keepalive,
    last_rx_ms: u64,
    next_nop_ms: u64,
}

/// A sans-IO smux v1 session (see the module docs).
#[derive(Debug)]
pub struct Mux {
    role: Role,
    config: MuxConfig,
    decoder: FrameDecoder,
    streams: BTreeMap<u32, Stream>,
    /// Last id handed out (client: 1 before the first open, as in smux).
    last_stream_id: u32,
    /// SYN, NOP and FIN of forgotten streams: sent before any data.
    control: VecDeque<Control>,
    /// Round-robin order of streams with data or a FIN to send.
    schedule: VecDeque<u32>,
    /// Encoded bytes not yet returned by `poll_transmit` (at most one frame beyond a request).
    out: ByteQueue,
    events: VecDeque<MuxEvent>,
    keepalive: Option<KeepaliveTimer>,
    dead: bool,
    ignored_frames: u64,
}

impl Mux {
    /// A new mux session; `now_ms` starts the keepalive clock.
    pub fn new(role: Role, config: MuxConfig, now_ms: u64) -> Self {
        let config = config.sanitized();
        let keepalive = config.keepalive.map(|k| KeepaliveTimer {
            config: k,
            last_rx_ms: now_ms,
            next_nop_ms: now_ms.saturating_add(k.interval_ms),
        });
        Self {
            role,
            config,
            decoder: FrameDecoder::new(),
            streams: BTreeMap::new(),
            last_stream_id: 1,
            control: VecDeque::new(),
            schedule: VecDeque::new(),
            out: ByteQueue::default(),
            events: VecDeque::new(),
            keepalive,
            dead: false,
            ignored_frames: 0,
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The effective (clamped) configuration.
    pub fn config(&self) -> &MuxConfig {
        &self.config
    }

    /// Whether the session died (protocol error or keepalive timeout). Nothing more is sent.
    pub fn is_closed(&self) -> bool {
        self.dead
    }

    /// Opens a stream (client only): allocates the next odd id and queues its SYN.
    pub fn open_stream(&mut self) -> Result<StreamId, MuxError> {
        self.check_alive()?;
        if self.role != Role::Client {
            return Err(MuxError::NotClient);
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(MuxError::TooManyStreams(self.config.max_streams));
        }
        let id = self
            .last_stream_id
            .checked_add(2)
            .ok_or(MuxError::StreamIdsExhausted)?;
        self.last_stream_id = id;
        self.streams.insert(id, Stream::new(true));
        self.control.push_back(Control::Syn(id));
        Ok(StreamId(id))
    }

    /// Queues data on a stream; returns how many bytes were accepted.
    ///
    /// Accepts at most [`Self::send_capacity`] bytes (back-pressure: keep the rest and retry
    /// after `poll_transmit` has drained some). Writing after the peer's FIN is allowed
    /// (half-close), though a smux peer discards it.
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, MuxError> {
        self.check_alive()?;
        let capacity = self.config.max_stream_send_buffer;
        let stream = self
            .streams
            .get_mut(&id.0)
            .ok_or(MuxError::UnknownStream(id))?;
        if stream.local != LocalState::Open {
            return Err(MuxError::WriteAfterClose(id));
        }
        let n = data.len().min(capacity.saturating_sub(stream.send.len()));
        if n > 0 {
            stream.send.push(data.get(..n).unwrap_or(&[]));
            if !stream.scheduled {
                stream.scheduled = true;
                self.schedule.push_back(id.0);
            }
        }
        Ok(n)
    }

    /// How many bytes [`Self::write`] would accept now (0 for unknown or closed streams).
    pub fn send_capacity(&self, id: StreamId) -> usize {
        match self.streams.get(&id.0) {
            Some(stream) if stream.local == LocalState::Open && !self.dead => self
                .config
                .max_stream_send_buffer
                .saturating_sub(stream.send.len()),
            _ => 0,
        }
    }

    /// Closes our direction: FIN goes out after the data already queued. The stream keeps
    /// delivering data until the peer's FIN. Closing twice is a no-op.
    pub fn close(&mut self, id: StreamId) -> Result<(), MuxError> {
        self.check_alive()?;
        let stream = self
            .streams
            .get_mut(&id.0)
            .ok_or(MuxError::UnknownStream(id))?;
        if stream.local == LocalState::Open {
            stream.local = LocalState::FinQueued;
            if !stream.scheduled {
                stream.scheduled = true;
                self.schedule.push_back(id.0);
            }
        }
        Ok(())
    }

    /// Abandons a stream at once: drops its queued data and undelivered events, sends FIN
    /// if the peer knows the stream and has not had our FIN, and forgets it, so later frames
    /// for it are ignored (what smux's `Stream.Close` amounts to). Returns whether it existed.
    pub fn reset(&mut self, id: StreamId) -> bool {
        let Some(stream) = self.streams.remove(&id.0) else {
            return false;
        };
        self.schedule.retain(|&s| s != id.0);
        self.events.retain(|event| event_stream(event) != Some(id));
        if stream.syn_pending {
            // The peer never heard of it: withdraw the SYN instead of sending SYN + FIN.
            self.control.retain(|&c| c != Control::Syn(id.0));
        } else if stream.local != LocalState::FinSent {
            self.control.push_back(Control::Fin(id.0));
        }
        true
    }

    /// Feeds bytes received from the peer (the payload of an Output message, any split).
    ///
    /// Frames decoded before an error have been applied. Any error is fatal: the mux session
    /// is dead, later calls return [`MuxError::SessionClosed`] and the caller should tear
    /// down every stream (smux closes the session on a protocol error).
    pub fn handle_incoming(&mut self, data: &[u8], now_ms: u64) -> Result<(), MuxError> {
        self.check_alive()?;
        if !data.is_empty()
            && let Some(k) = &mut self.keepalive
        {
            // Any byte from the peer proves it is alive (smux: any frame header).
            k.last_rx_ms = k.last_rx_ms.max(now_ms);
        }
        let mut rest = data;
        loop {
            match self.decoder.decode_next(&mut rest) {
                Ok(Some(frame)) => self.apply(frame),
                Ok(None) => return Ok(()),
                Err(error) => {
                    self.dead = true;
                    return Err(error);
                }
            }
        }
    }

    fn apply(&mut self, frame: Frame) {
        match frame {
            Frame::Nop(_) => {}
            Frame::Syn(id) => self.on_syn(id),
            Frame::Fin(id) => {
                let Some(stream) = self.streams.get_mut(&id.0) else {
                    self.ignored_frames = self.ignored_frames.saturating_add(1);
                    return;
                };
                if stream.remote_fin {
                    self.ignored_frames = self.ignored_frames.saturating_add(1);
                    return;
                }
                stream.remote_fin = true;
                let done = stream.local == LocalState::FinSent;
                self.events.push_back(MuxEvent::Fin(id));
                if done {
                    self.streams.remove(&id.0);
                    self.events.push_back(MuxEvent::Closed(id));
                }
            }
            Frame::Psh(id, data) => {
                if data.is_empty() {
                    // smux skips empty PSH before even looking up the stream.
                    return;
                }
                match self.streams.get_mut(&id.0) {
                    Some(stream) if !stream.remote_fin => {
                        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
                        stream.bytes_in = stream.bytes_in.saturating_add(len);
                        match self.events.back_mut() {
                            Some(MuxEvent::Data(last, buf)) if *last == id => {
                                buf.extend_from_slice(&data);
                            }
                            _ => self.events.push_back(MuxEvent::Data(id, data)),
                        }
                    }
                    _ => self.ignored_frames = self.ignored_frames.saturating_add(1),
                }
            }
        }
    }

    fn on_syn(&mut self, id: StreamId) {
        if self.role == Role::Client || self.streams.contains_key(&id.0) {
            self.ignored_frames = self.ignored_frames.saturating_add(1);
            return;
        }
        if self.streams.len() >= self.config.max_streams {
            self.control.push_back(Control::Fin(id.0));
            self.events.push_back(MuxEvent::Refused(id));
            return;
        }
        self.streams.insert(id.0, Stream::new(false));
        self.events.push_back(MuxEvent::Opened(id));
    }

    /// The next event, in the order things happened.
    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        self.events.pop_front()
    }

    /// The next bytes to send to the peer, at most `max_bytes` of them (pass 1024 to fill
    /// one Output message). `None` when there is nothing to send or the session is dead.
    ///
    /// Frames are produced in this order: queued control frames (SYN, NOP, FIN of reset or
    /// refused streams), then one frame per stream in round-robin order — a PSH of at most
    /// `max_frame_data` bytes, or the stream's FIN once its data is gone. A frame may be split
    /// across two calls; the remainder comes first next time.
    pub fn poll_transmit(&mut self, max_bytes: usize) -> Option<Vec<u8>> {
        if self.dead || max_bytes == 0 {
            return None;
        }
        while self.out.len() < max_bytes && self.next_frame() {}
        let n = max_bytes.min(self.out.len());
        if n == 0 {
            return None;
        }
        let bytes = self.out.front(n).to_vec();
        self.out.consume(n);
        Some(bytes)
    }

    /// Whether `poll_transmit` would return something.
    pub fn has_pending_transmit(&self) -> bool {
        !self.dead
            && (!self.out.is_empty() || !self.control.is_empty() || !self.schedule.is_empty())
    }

    /// Encodes the next frame into `out`; `false` when there is nothing to send.
    fn next_frame(&mut self) -> bool {
        if let Some(control) = self.control.pop_front() {
            let (cmd, id) = match control {
                Control::Syn(id) => {
                    if let Some(stream) = self.streams.get_mut(&id) {
                        stream.syn_pending = false;
                    }
                    (CMD_SYN, id)
                }
                Control::Fin(id) => (CMD_FIN, id),
                Control::Nop => (CMD_NOP, 0),
            };
            self.push_header(cmd, 0, id);
            return true;
        }
        while let Some(id) = self.schedule.pop_front() {
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            stream.scheduled = false;
            if !stream.send.is_empty() {
                let chunk = stream.send.front(self.config.max_frame_data);
                let n = chunk.len();
                // n ≤ max_frame_data ≤ 65535 by `sanitized`.
                let length = u16::try_from(n).unwrap_or(u16::MAX);
                let header = FrameHeader {
                    version: VERSION,
                    cmd: CMD_PSH,
                    length,
                    stream_id: id,
                };
                self.out.push(&header.encode());
                self.out.push(chunk);
                stream.send.consume(n);
                stream.bytes_out = stream
                    .bytes_out
                    .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
            } else if stream.local == LocalState::FinQueued {
                stream.local = LocalState::FinSent;
                let done = stream.remote_fin;
                self.push_header(CMD_FIN, 0, id);
                if done {
                    self.streams.remove(&id);
                    self.events.push_back(MuxEvent::Closed(StreamId(id)));
                }
                return true;
            } else {
                continue;
            }
            if stream.has_work() {
                stream.scheduled = true;
                self.schedule.push_back(id);
            }
            return true;
        }
        false
    }

    fn push_header(&mut self, cmd: u8, length: u16, stream_id: u32) {
        let header = FrameHeader {
            version: VERSION,
            cmd,
            length,
            stream_id,
        };
        self.out.push(&header.encode());
    }

    /// When [`Self::handle_timeout`] should be called next (`None`: keepalive off or dead).
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.dead {
            return None;
        }
        let k = self.keepalive.as_ref()?;
        Some(
            k.next_nop_ms
                .min(k.last_rx_ms.saturating_add(k.config.timeout_ms)),
        )
    }

    /// Runs the keepalive: queues a NOP every interval and declares the session dead
    /// ([`MuxEvent::KeepaliveTimeout`]) after `timeout_ms` without receiving anything.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.dead {
            return;
        }
        let Some(k) = &mut self.keepalive else {
            return;
        };
        if now_ms >= k.last_rx_ms.saturating_add(k.config.timeout_ms) {
            self.dead = true;
            self.events.push_back(MuxEvent::KeepaliveTimeout);
            return;
        }
        if now_ms >= k.next_nop_ms {
            k.next_nop_ms = now_ms.saturating_add(k.config.interval_ms);
            // One NOP in the queue is enough if the caller has not been transmitting.
            if !self.control.contains(&Control::Nop) {
                self.control.push_back(Control::Nop);
            }
        }
    }

    /// Ids of the streams currently known, ascending.
    pub fn stream_ids(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.streams.keys().map(|&id| StreamId(id))
    }

    /// Number of streams currently known.
    pub fn num_streams(&self) -> usize {
        self.streams.len()
    }

    /// Counters and flags of a stream.
    pub fn stream_stats(&self, id: StreamId) -> Option<StreamStats> {
        self.streams.get(&id.0).map(|s| StreamStats {
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            queued: s.send.len(),
            local_closed: s.local != LocalState::Open,
            remote_closed: s.remote_fin,
        })
    }

    /// Frames dropped by the smux tolerance rules (unknown stream, duplicate SYN, data after
    /// FIN, SYN to a client). Useful in logs when a peer misbehaves.
    pub fn ignored_frames(&self) -> u64 {
        self.ignored_frames
    }

    fn check_alive(&self) -> Result<(), MuxError> {
        if self.dead {
            Err(MuxError::SessionClosed)
        } else {
            Ok(())
        }
    }
}

fn event_stream(event: &MuxEvent) -> Option<StreamId> {
    match event {
        MuxEvent::Opened(id)
        | MuxEvent::Data(id, _)
        | MuxEvent::Fin(id)
        | MuxEvent::Closed(id)
        | MuxEvent::Refused(id) => Some(*id),
        MuxEvent::KeepaliveTimeout => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_run_out_after_u32_max() {
        let mut mux = Mux::new(Role::Client, MuxConfig::default(), 0);
        mux.last_stream_id = u32::MAX - 2;
        assert_eq!(mux.open_stream(), Ok(StreamId(u32::MAX)));
        assert_eq!(mux.open_stream(), Err(MuxError::StreamIdsExhausted));
    }

    #[test]
    fn byte_queue_compacts_and_keeps_order() {
        let mut q = ByteQueue::default();
        let mut expected = VecDeque::new();
        for round in 0u8..200 {
            let chunk: Vec<u8> = (0..(round % 37)).map(|i| i ^ round).collect();
            q.push(&chunk);
            expected.extend(chunk.iter().copied());
            let take = usize::from(round % 23);
            let got = q.front(take).to_vec();
            let want: Vec<u8> = expected.iter().take(take).copied().collect();
            assert_eq!(got, want);
            q.consume(got.len());
            expected.drain(..got.len());
            assert_eq!(q.len(), expected.len());
            assert!(q.buf.len() <= 2 * q.len() + 100);
        }
    }
}
