//! `ProtocolError`: every way the data-channel protocol core can fail.
//!
//! Decoders never panic and never report short input as an error (that is `Ok(None)`); every
//! other problem with bytes from the wire, a JSON payload, the cipher or the session state is
//! one of these variants. Messages are one lower-case sentence, values quoted with backticks.

use thiserror::Error;

/// Errors of the protocol core (codec, payloads, crypto, session).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// HeaderLength below 112 (no room for the fixed fields) or absurdly large.
    #[error("header length `{0}` is outside the accepted range 112..=1024")]
    BadHeaderLength(u32),
    /// The declared payload is larger than the configured cap.
    #[error("payload length `{len}` exceeds the limit of `{max}` bytes")]
    PayloadTooLarge {
        /// Declared (or actual) payload length.
        len: u64,
        /// Configured cap.
        max: usize,
    },
    /// A complete message was required but the input ended early.
    #[error("message truncated: need `{needed}` bytes, have `{available}`")]
    Truncated {
        /// Bytes required to finish the message (at least).
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// MessageType is empty after trimming.
    #[error("message type is empty")]
    EmptyMessageType,
    /// MessageType longer than its 32-byte field.
    #[error("message type `{0}` is longer than 32 bytes")]
    MessageTypeTooLong(String),
    /// CreatedDate is zero.
    #[error("created date is zero")]
    ZeroCreatedDate,
    /// PayloadDigest does not match SHA-256 of the payload.
    #[error("payload digest does not match the payload")]
    DigestMismatch,
    /// A payload did not have the shape its payload type requires.
    #[error("invalid `{kind}` payload: {reason}")]
    InvalidPayload {
        /// Which payload (e.g. `Flag`, `HandshakeRequest`).
        kind: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A `debug` JSON view could not be turned back into a message.
    #[error("invalid message JSON: {0}")]
    InvalidJson(String),
    /// A data key of the wrong length.
    #[error("data key must be 64 bytes, got `{0}`")]
    BadKeyLength(usize),
    /// Encrypted payload shorter than nonce + tag.
    #[error("encrypted payload of `{0}` bytes is shorter than nonce and tag (28 bytes)")]
    CiphertextTooShort(usize),
    /// AES-GCM authentication failed: wrong key or tampered data.
    #[error("decryption failed: wrong key or tampered ciphertext")]
    DecryptFailed,
    /// AES-GCM refused to encrypt (only for absurd lengths).
    #[error("encryption failed")]
    EncryptFailed,
    /// The KMS challenge answer did not match.
    #[error("kms challenge response does not match the challenge")]
    ChallengeMismatch,
    /// Handshake failed (an action was refused, or a step arrived out of order).
    #[error("handshake failed: {0}")]
    HandshakeFailed(String),
    /// The peer did not answer a handshake step in time (agent role, 15 s per step).
    #[error("handshake step timed out after `{0}` ms")]
    HandshakeTimeout(u64),
    /// The KMS data key could not be obtained (reported by the caller via `fail_kms`).
    #[error("kms data key unavailable: {0}")]
    KmsFailed(String),
    /// The oldest unacknowledged message was not acknowledged for too long.
    #[error(
        "peer stopped acknowledging: message `{sequence_number}` unacknowledged for `{waited_ms}` ms"
    )]
    GaveUp {
        /// Sequence number of the stuck head message.
        sequence_number: i64,
        /// How long it has been waiting.
        waited_ms: u64,
    },
    /// The outgoing buffer is full; retry after `SessionEvent::Writable`.
    #[error("outgoing buffer is full")]
    OutgoingBufferFull,
    /// The operation is not valid in the session's current state or role.
    #[error("operation `{0}` is not valid in the current session state")]
    InvalidState(&'static str),
}
