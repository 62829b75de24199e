//! Sans-IO core of the SSM Session Manager data channel: bytes and `now` in; frames, events
//! and deadlines out. No sockets, clocks, threads, OS randomness or async runtime live here:
//! this crate's dependencies leave out tokio, the AWS SDK and the terminal, and its
//! `clippy.toml` refuses std's clocks, sockets, threads and files. ssmtui re-exports it as
//! `ssmtui::protocol`. The contract is `shared/protocol.md`; section numbers (§) refer to it.
//!
//! # Wire format
//!
//! After one text frame (`OpenDataChannelInput` JSON, carrying the bearer token, §2.3), every
//! websocket message is one binary `ClientMessage`. Integers are big-endian.
//!
//! ```text
//! offset 0      4                                36     40             48             56             64
//!        +------+--------------------------------+------+--------------+--------------+--------------+
//!        | HL   | MessageType (32 B, space-pad)  | SchV | CreatedDate  | SequenceNum  | Flags        |
//!        +------+--------------------------------+------+--------------+--------------+--------------+
//! offset 64                   80                                 112    116    120
//!        +--------------------+----------------------------------+------+------+--------------+
//!        | MessageId (16 B,   | PayloadDigest (32 B,             | PTyp | PLen | Payload      |
//!        | halves swapped)    | SHA-256 of Payload)              |      |      | (PLen bytes) |
//!        +--------------------+----------------------------------+------+------+--------------+
//! ```
//!
//! * `HL` (u32) is 116 when we send: the offset of `PLen`. Decoding locates `PLen` and the
//!   payload through the frame's own `HL`; `HL` 112 (no `PTyp`, seen on service frames) reads
//!   as PayloadType 0; `HL` outside 112..=1024 is an error.
//! * `MessageType` is ASCII, space-padded when sent; on receipt NULs and then whitespace are
//!   trimmed from both ends. `SchV` (u32) is 1. `CreatedDate` (u64) is Unix epoch ms, never 0.
//!   `SequenceNum` (i64) numbers stream data per direction from 0 and is 0 otherwise. `Flags`
//!   (u64): bit 0 SYN, bit 1 FIN; 3 on acks and agent control messages; nobody reads them.
//! * `MessageId`: RFC 4122 bytes with the two 8-byte halves swapped; in JSON payloads ids are
//!   normal lower-case text.
//! * `PayloadDigest` = SHA-256 of exactly the payload bytes (ciphertext when encrypted),
//!   always written; checked on receipt when `PLen` ≠ 0.
//! * `PTyp` (u32): 0 control, 1 Output, 3 Size, 5–7 handshake, 8–9 KMS challenge, 10 Flag,
//!   11 StdErr, 12 ExitCode (§4.2). `PLen` (u32) = payload length; total = `HL` + 4 + `PLen`.
//!
//! # Limits
//!
//! A payload larger than the decoder's cap (default 1 MiB; real ones are ≤ ~1 KiB of data
//! plus 28 bytes of GCM overhead) is an error, detected before waiting for the bytes, and
//! nothing is ever allocated beyond the declared payload or the input. Outgoing data is cut
//! into messages of at most 1024 bytes. Every session buffer (unacknowledged, pending,
//! out-of-order, undelivered) has a cap; full buffers push back instead of evicting.
//!
//! # Ordering
//!
//! `input_stream_data` / `output_stream_data` are sequenced, acknowledged selectively by an
//! `acknowledge` message naming the sequence number, retransmitted until acknowledged, and
//! delivered exactly once in sequence order. Handshake messages are ordinary stream data.
//! Acks and service messages (`channel_closed`, `start_publication`, `pause_publication`)
//! are never acknowledged and never sequenced.
//!
//! # Unknown values
//!
//! Unknown MessageTypes (and `agent_session_state` at the client) are ignored, as the plugin
//! does. Stream messages with unknown PayloadTypes are acknowledged and skipped. Unknown JSON
//! keys are ignored. Every wire enum has an `Unknown(..)` variant so nothing is lost when
//! decoding for display.
//!
//! # Modules
//!
//! [`message`] frames, [`types`] wire enums, [`payload`] JSON/binary payloads, [`crypto`]
//! KMS AES-GCM, [`session`] the state machine for client and agent roles, [`debug`] the JSON
//! view for `ssmtui debug`, [`mux`] smux v1 for port forwarding, [`version`] version rules.

pub mod crypto;
pub mod debug;
pub mod error;
pub mod message;
pub mod mux;
pub mod payload;
pub mod session;
pub mod types;
pub mod version;

pub use crypto::{DataKey, SessionCipher};
pub use debug::{frame_to_json, json_to_frame, message_from_json, message_to_json};
pub use error::ProtocolError;
pub use message::{ClientMessage, DecodeOptions, DecodedFrame};
pub use payload::{
    AcknowledgeContent, AgentSessionStatePayload, AgentState, ChannelClosedPayload,
    HandshakeCompletePayload, HandshakeRequestPayload, HandshakeResponsePayload,
    OpenDataChannelInput, SizeData,
};
pub use session::{
    RttEstimator, Session, SessionConfig, SessionEvent, SessionState, SessionStats,
    channel_closed_frame, publication_frame,
};
pub use types::{ActionStatus, ActionType, Flag, MessageType, PayloadType, Role, SessionType};
