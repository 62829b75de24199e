//! The `ClientMessage` binary frame (§3): encoding and robust decoding.
//!
//! Encoding is byte-exact to the official encoders (HeaderLength 116, MessageType space-padded
//! to 32 bytes, SchemaVersion as given, MessageId halves swapped, SHA-256 digest of the payload
//! always written). Decoding follows §3.2: fields are read at fixed offsets, PayloadLength and
//! the payload are located through the frame's own HeaderLength (112 is accepted, PayloadType
//! then reads as 0), trailing bytes after the declared payload are tolerated and reported via
//! the consumed byte count, and input that ends early is `Ok(None)`.
//!
//! Invariants: decoding never panics, never allocates more than the declared payload, and the
//! declared payload is checked against the cap *before* waiting for more input, so an
//! oversized frame is an error rather than an endless "need more bytes".

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ProtocolError;
use super::types::{MessageType, PayloadType, message_id_from_wire, message_id_to_wire};

/// HeaderLength we always send: the offset of PayloadLength.
pub const HEADER_LENGTH: u32 = 116;
/// Smallest accepted HeaderLength (frames without the PayloadType field, §3.2).
pub const MIN_HEADER_LENGTH: u32 = 112;
/// Largest accepted HeaderLength; nobody sends more than 116, the cap only bounds garbage.
pub const MAX_HEADER_LENGTH: u32 = 1024;
/// Size of the space-padded MessageType field.
pub const MESSAGE_TYPE_LEN: usize = 32;
/// SchemaVersion we send.
pub const SCHEMA_VERSION: u32 = 1;
/// Default cap on a decoded payload (1 MiB); real payloads are at most ~1 KiB.
pub const DEFAULT_MAX_PAYLOAD_LEN: usize = 1 << 20;

const OFF_MESSAGE_TYPE: usize = 4;
const OFF_SCHEMA_VERSION: usize = 36;
const OFF_CREATED_DATE: usize = 40;
const OFF_SEQUENCE_NUMBER: usize = 48;
const OFF_FLAGS: usize = 56;
const OFF_MESSAGE_ID: usize = 64;
const OFF_DIGEST: usize = 80;
const OFF_PAYLOAD_TYPE: usize = 112;

/// SHA-256 of the empty payload (TV-6).
pub const EMPTY_PAYLOAD_DIGEST: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// One data-channel message (the plugin's `ClientMessage`, the agent's `AgentMessage`).
///
/// HeaderLength, PayloadDigest and PayloadLength are derived when encoding and checked when
/// decoding, so they are not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// MessageType (trimmed).
    pub message_type: MessageType,
    /// SchemaVersion (1).
    pub schema_version: u32,
    /// Unix epoch milliseconds; non-zero.
    pub created_date: u64,
    /// Stream sequence number; 0 for non-stream messages.
    pub sequence_number: i64,
    /// Header flags (`FLAG_SYN`, `FLAG_FIN`).
    pub flags: u64,
    /// MessageId in normal (RFC 4122) byte order.
    pub message_id: Uuid,
    /// PayloadType.
    pub payload_type: PayloadType,
    /// Payload bytes (ciphertext when encrypted).
    pub payload: Vec<u8>,
}

/// Limits and checks for [`ClientMessage::decode_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Largest accepted PayloadLength.
    pub max_payload_len: usize,
    /// Run the plugin's validation (non-empty type, non-zero date, digest). The `debug`
    /// view turns it off to show broken frames.
    pub validate: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_payload_len: DEFAULT_MAX_PAYLOAD_LEN,
            validate: true,
        }
    }
}

/// A decoded frame with the header facts that are not part of [`ClientMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedFrame {
    /// The message.
    pub message: ClientMessage,
    /// Bytes of the input the message occupied (`HL + 4 + PayloadLength`).
    pub consumed: usize,
    /// HeaderLength as found in the frame.
    pub header_length: u32,
    /// PayloadDigest as found in the frame.
    pub payload_digest: [u8; 32],
    /// Whether the digest matches the payload.
    pub digest_valid: bool,
}

/// SHA-256 of a payload.
pub fn payload_digest(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

fn read_array<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes
        .get(offset..offset.checked_add(N)?)
        .and_then(|s| s.try_into().ok())
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    read_array(bytes, offset).map(u32::from_be_bytes)
}

fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    read_array(bytes, offset).map(u64::from_be_bytes)
}

/// Trims the MessageType field the way both Go parsers do: NULs, then whitespace, both ends.
fn trim_message_type(field: &[u8]) -> String {
    String::from_utf8_lossy(field)
        .trim_matches('\0')
        .trim()
        .to_owned()
}

impl ClientMessage {
    /// Length of the encoded frame.
    pub fn encoded_len(&self) -> usize {
        HEADER_LENGTH as usize + 4 + self.payload.len()
    }

    /// Encodes the frame, appending to `out`.
    ///
    /// Never fails: a MessageType longer than 32 bytes is cut to 32 bytes and a payload
    /// longer than `u32::MAX` declares `u32::MAX`. Use [`ClientMessage::try_encode`] where
    /// such values can occur (user-provided JSON); the session never builds them.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
        let mut type_field = [b' '; MESSAGE_TYPE_LEN];
        for (dst, src) in type_field
            .iter_mut()
            .zip(self.message_type.as_str().as_bytes())
        {
            *dst = *src;
        }
        out.extend_from_slice(&type_field);
        out.extend_from_slice(&self.schema_version.to_be_bytes());
        out.extend_from_slice(&self.created_date.to_be_bytes());
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&message_id_to_wire(&self.message_id));
        out.extend_from_slice(&payload_digest(&self.payload));
        out.extend_from_slice(&self.payload_type.as_u32().to_be_bytes());
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// Encodes the frame into a new vector (see [`ClientMessage::encode_into`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Encodes the frame, refusing values that cannot be represented exactly.
    pub fn try_encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let ty = self.message_type.as_str();
        if ty.len() > MESSAGE_TYPE_LEN {
            return Err(ProtocolError::MessageTypeTooLong(ty.to_owned()));
        }
        if u32::try_from(self.payload.len()).is_err() {
            return Err(ProtocolError::PayloadTooLarge {
                len: self.payload.len() as u64,
                max: u32::MAX as usize,
            });
        }
        Ok(self.encode())
    }

    /// Decodes one message from the start of `bytes` with default limits.
    ///
    /// Returns the message and the bytes it occupied, `Ok(None)` if `bytes` ends before the
    /// message does (nothing consumed), or an error for a malformed or invalid frame.
    pub fn decode(bytes: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        Ok(Self::decode_with(bytes, &DecodeOptions::default())?.map(|d| (d.message, d.consumed)))
    }

    /// Decodes exactly one message (one websocket message); trailing bytes are tolerated,
    /// missing bytes are [`ProtocolError::Truncated`].
    pub fn decode_exact(bytes: &[u8]) -> Result<Self, ProtocolError> {
        Self::decode_exact_with(bytes, &DecodeOptions::default()).map(|d| d.message)
    }

    /// [`ClientMessage::decode_exact`] with explicit options and header facts.
    pub fn decode_exact_with(
        bytes: &[u8],
        opts: &DecodeOptions,
    ) -> Result<DecodedFrame, ProtocolError> {
        match Self::decode_with(bytes, opts)? {
            Some(d) => Ok(d),
            None => Err(ProtocolError::Truncated {
                needed: needed_len(bytes),
                available: bytes.len(),
            }),
        }
    }

    /// Decodes one message from the start of `bytes` (see [`ClientMessage::decode`]).
    pub fn decode_with(
        bytes: &[u8],
        opts: &DecodeOptions,
    ) -> Result<Option<DecodedFrame>, ProtocolError> {
        let Some(header_length) = read_u32(bytes, 0) else {
            return Ok(None);
        };
        if !(MIN_HEADER_LENGTH..=MAX_HEADER_LENGTH).contains(&header_length) {
            return Err(ProtocolError::BadHeaderLength(header_length));
        }
        let hl = header_length as usize;
        let Some(payload_len) = read_u32(bytes, hl) else {
            return Ok(None);
        };
        // Checked before waiting for the payload so a huge declaration fails fast.
        if payload_len as usize > opts.max_payload_len {
            return Err(ProtocolError::PayloadTooLarge {
                len: u64::from(payload_len),
                max: opts.max_payload_len,
            });
        }
        let start = hl + 4;
        let Some(end) = start.checked_add(payload_len as usize) else {
            return Err(ProtocolError::PayloadTooLarge {
                len: u64::from(payload_len),
                max: opts.max_payload_len,
            });
        };
        let Some(payload) = bytes.get(start..end) else {
            return Ok(None);
        };

        // All fixed fields lie below offset 112 <= hl, so these reads cannot miss; the
        // fallbacks only keep the code panic-free.
        let message_type = MessageType::from_wire(&trim_message_type(
            bytes
                .get(OFF_MESSAGE_TYPE..OFF_MESSAGE_TYPE + MESSAGE_TYPE_LEN)
                .unwrap_or_default(),
        ));
        let schema_version = read_u32(bytes, OFF_SCHEMA_VERSION).unwrap_or_default();
        let created_date = read_u64(bytes, OFF_CREATED_DATE).unwrap_or_default();
        let sequence_number = read_u64(bytes, OFF_SEQUENCE_NUMBER).unwrap_or_default() as i64;
        let flags = read_u64(bytes, OFF_FLAGS).unwrap_or_default();
        let message_id =
            message_id_from_wire(read_array(bytes, OFF_MESSAGE_ID).unwrap_or_default());
        let payload_digest_field: [u8; 32] = read_array(bytes, OFF_DIGEST).unwrap_or_default();
        // HL 112: the frame has no PayloadType field (service channel_closed, §3.2).
        let payload_type = if hl >= OFF_PAYLOAD_TYPE + 4 {
            PayloadType::from_u32(read_u32(bytes, OFF_PAYLOAD_TYPE).unwrap_or_default())
        } else {
            PayloadType::Null
        };
        let digest_valid = payload_digest(payload) == payload_digest_field;

        if opts.validate {
            if message_type.as_str().is_empty() {
                return Err(ProtocolError::EmptyMessageType);
            }
            // The plugin skips every check for these two service messages.
            let exempt = matches!(
                message_type,
                MessageType::StartPublication | MessageType::PausePublication
            );
            if !exempt {
                if created_date == 0 {
                    return Err(ProtocolError::ZeroCreatedDate);
                }
                if payload_len != 0 && !digest_valid {
                    return Err(ProtocolError::DigestMismatch);
                }
            }
        }

        Ok(Some(DecodedFrame {
            message: ClientMessage {
                message_type,
                schema_version,
                created_date,
                sequence_number,
                flags,
                message_id,
                payload_type,
                payload: payload.to_vec(),
            },
            consumed: end,
            header_length,
            payload_digest: payload_digest_field,
            digest_valid,
        }))
    }
}

/// Lower bound of the bytes a frame starting with `bytes` needs (for error messages).
fn needed_len(bytes: &[u8]) -> usize {
    let Some(hl) = read_u32(bytes, 0) else {
        return 4;
    };
    let hl = hl as usize;
    match read_u32(bytes, hl) {
        Some(plen) => hl.saturating_add(4).saturating_add(plen as usize),
        None => hl.saturating_add(4),
    }
}
