//! A JSON view of messages for `ssmtui debug decode|encode`.
//!
//! [`message_to_json`] shows the header fields and the payload decoded per type where that
//! is lossless; [`message_from_json`] turns such a view (possibly hand-edited) back into a
//! message. The view is canonical: `message_from_json(&message_to_json(m)) == m` for every
//! message, because a typed `payload` is only shown when re-encoding it reproduces the exact
//! bytes, and raw bytes (`payload_text` / `payload_base64`) are shown otherwise.
//!
//! Keys of the view (informational keys are ignored when encoding):
//!
//! | key | type | notes |
//! |---|---|---|
//! | `message_type` | string | required, at most 32 bytes |
//! | `schema_version` | number | default 1 |
//! | `created_date` | number | epoch ms, default 1 |
//! | `sequence_number` | number | default 0 |
//! | `flags` | number | default 0 |
//! | `message_id` | string | UUID text, default nil UUID |
//! | `payload_type` | string or number | name (`Output`, `Size`, ...) or value, default 0 |
//! | `payload` | JSON | typed payload: the payload's own JSON, `{"flag":..}`, `{"exit_code":..}` |
//! | `payload_text` | string | raw payload as UTF-8 text |
//! | `payload_base64` | string | raw payload bytes |
//! | `payload_hex` | string | raw payload bytes (input only) |
//! | `payload_length`, `payload_digest`, `header_length`, `digest_valid`, `trailing_bytes` | | informational |
//!
//! At most one of the four payload keys may be given; none means an empty payload.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::error::ProtocolError;
use super::message::{ClientMessage, DecodeOptions, SCHEMA_VERSION, payload_digest};
use super::payload::{
    AcknowledgeContent, AgentSessionStatePayload, ChannelClosedPayload, EncChallengePayload,
    HandshakeCompletePayload, HandshakeRequestPayload, HandshakeResponsePayload, SizeData,
    decode_exit_code, encode_exit_code, to_go_json,
};
use super::types::{Flag, MessageType, PayloadType};

/// How the payload of a (message type, payload type) pair is interpreted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Acknowledge,
    ChannelClosed,
    AgentSessionState,
    Size,
    HandshakeRequest,
    HandshakeResponse,
    HandshakeComplete,
    EncChallenge,
    Flag,
    ExitCode,
    Raw,
}

fn kind_of(message_type: &MessageType, payload_type: PayloadType) -> Kind {
    match message_type {
        MessageType::Acknowledge => return Kind::Acknowledge,
        MessageType::ChannelClosed => return Kind::ChannelClosed,
        MessageType::AgentSessionState => return Kind::AgentSessionState,
        _ => {}
    }
    match payload_type {
        PayloadType::Size => Kind::Size,
        PayloadType::HandshakeRequest => Kind::HandshakeRequest,
        PayloadType::HandshakeResponse => Kind::HandshakeResponse,
        PayloadType::HandshakeComplete => Kind::HandshakeComplete,
        PayloadType::EncChallengeRequest | PayloadType::EncChallengeResponse => Kind::EncChallenge,
        PayloadType::Flag => Kind::Flag,
        PayloadType::ExitCode => Kind::ExitCode,
        _ => Kind::Raw,
    }
}

fn typed_view<T: DeserializeOwned + Serialize>(payload: &[u8]) -> Option<Value> {
    let typed: T = serde_json::from_slice(payload).ok()?;
    // Only lossless views are shown: the bytes must come back exactly.
    (to_go_json(&typed) == payload)
        .then(|| serde_json::to_value(&typed).ok())
        .flatten()
}

fn payload_view(kind: Kind, payload: &[u8]) -> Option<Value> {
    match kind {
        Kind::Acknowledge => typed_view::<AcknowledgeContent>(payload),
        Kind::ChannelClosed => typed_view::<ChannelClosedPayload>(payload),
        Kind::AgentSessionState => typed_view::<AgentSessionStatePayload>(payload),
        Kind::Size => typed_view::<SizeData>(payload),
        Kind::HandshakeRequest => typed_view::<HandshakeRequestPayload>(payload),
        Kind::HandshakeResponse => typed_view::<HandshakeResponsePayload>(payload),
        Kind::HandshakeComplete => typed_view::<HandshakeCompletePayload>(payload),
        Kind::EncChallenge => typed_view::<EncChallengePayload>(payload),
        Kind::Flag => Flag::decode(payload).ok().map(|f| match f.name() {
            Some(n) => json!({ "flag": n }),
            None => json!({ "flag": f.as_u32() }),
        }),
        Kind::ExitCode => decode_exit_code(payload)
            .ok()
            .filter(|c| encode_exit_code(*c) == payload)
            .map(|c| json!({ "exit_code": c })),
        Kind::Raw => None,
    }
}

fn payload_from_view(kind: Kind, v: &Value) -> Result<Vec<u8>, ProtocolError> {
    fn typed<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Vec<u8>, ProtocolError> {
        let t: T = serde_json::from_value(v.clone())
            .map_err(|e| ProtocolError::InvalidJson(format!("`payload`: {e}")))?;
        Ok(to_go_json(&t))
    }
    match kind {
        Kind::Acknowledge => typed::<AcknowledgeContent>(v),
        Kind::ChannelClosed => typed::<ChannelClosedPayload>(v),
        Kind::AgentSessionState => typed::<AgentSessionStatePayload>(v),
        Kind::Size => typed::<SizeData>(v),
        Kind::HandshakeRequest => typed::<HandshakeRequestPayload>(v),
        Kind::HandshakeResponse => typed::<HandshakeResponsePayload>(v),
        Kind::HandshakeComplete => typed::<HandshakeCompletePayload>(v),
        Kind::EncChallenge => typed::<EncChallengePayload>(v),
        Kind::Flag => {
            let flag = match v.get("flag") {
                Some(Value::String(name)) => Flag::from_name(name),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Flag::from_u32),
                _ => None,
            }
            .ok_or_else(|| {
                ProtocolError::InvalidJson("`payload.flag` must be a flag name or u32".to_owned())
            })?;
            Ok(flag.encode().to_vec())
        }
        Kind::ExitCode => {
            let code = v
                .get("exit_code")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok())
                .ok_or_else(|| {
                    ProtocolError::InvalidJson("`payload.exit_code` must be an i32".to_owned())
                })?;
            Ok(encode_exit_code(code))
        }
        // Free-form JSON for other types: Go-style compact encoding, keys sorted.
        Kind::Raw => Ok(to_go_json(v)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// The JSON view of a message (see the module docs).
pub fn message_to_json(msg: &ClientMessage) -> Value {
    let mut m = Map::new();
    m.insert("message_type".into(), msg.message_type.as_str().into());
    m.insert("schema_version".into(), msg.schema_version.into());
    m.insert("created_date".into(), msg.created_date.into());
    m.insert("sequence_number".into(), msg.sequence_number.into());
    m.insert("flags".into(), msg.flags.into());
    m.insert("message_id".into(), msg.message_id.to_string().into());
    m.insert(
        "payload_type".into(),
        match msg.payload_type.name() {
            Some(n) => n.into(),
            None => msg.payload_type.as_u32().into(),
        },
    );
    m.insert("payload_length".into(), msg.payload.len().into());
    m.insert(
        "payload_digest".into(),
        hex(&payload_digest(&msg.payload)).into(),
    );
    let kind = kind_of(&msg.message_type, msg.payload_type);
    if msg.payload.is_empty() {
        // Nothing to show.
    } else if let Some(v) = payload_view(kind, &msg.payload) {
        m.insert("payload".into(), v);
    } else if let Ok(text) = std::str::from_utf8(&msg.payload) {
        m.insert("payload_text".into(), text.into());
    } else {
        m.insert("payload_base64".into(), BASE64.encode(&msg.payload).into());
    }
    Value::Object(m)
}

/// Decodes a frame leniently (no validation, so broken frames can be inspected) into the
/// JSON view plus `header_length`, the digest found in the frame, `digest_valid` and
/// `trailing_bytes`. Short input is [`ProtocolError::Truncated`].
pub fn frame_to_json(bytes: &[u8], max_payload_len: usize) -> Result<Value, ProtocolError> {
    let opts = DecodeOptions {
        max_payload_len,
        validate: false,
    };
    let d = ClientMessage::decode_exact_with(bytes, &opts)?;
    let mut v = message_to_json(&d.message);
    if let Value::Object(m) = &mut v {
        m.insert("header_length".into(), d.header_length.into());
        m.insert("payload_digest".into(), hex(&d.payload_digest).into());
        m.insert("digest_valid".into(), d.digest_valid.into());
        m.insert(
            "trailing_bytes".into(),
            bytes.len().saturating_sub(d.consumed).into(),
        );
    }
    Ok(v)
}

fn field_u64(m: &Map<String, Value>, key: &str, default: u64) -> Result<u64, ProtocolError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().ok_or_else(|| {
            ProtocolError::InvalidJson(format!("`{key}` must be an unsigned integer"))
        }),
    }
}

/// Builds a message from its JSON view (see the module docs).
pub fn message_from_json(v: &Value) -> Result<ClientMessage, ProtocolError> {
    let m = v
        .as_object()
        .ok_or_else(|| ProtocolError::InvalidJson("expected a JSON object".to_owned()))?;
    let message_type = m
        .get("message_type")
        .and_then(Value::as_str)
        .ok_or_else(|| ProtocolError::InvalidJson("`message_type` is required".to_owned()))?;
    if message_type.len() > 32 {
        return Err(ProtocolError::MessageTypeTooLong(message_type.to_owned()));
    }
    let message_type = MessageType::from_wire(message_type);
    let schema_version = u32::try_from(field_u64(m, "schema_version", SCHEMA_VERSION.into())?)
        .map_err(|_| ProtocolError::InvalidJson("`schema_version` must fit u32".to_owned()))?;
    let created_date = field_u64(m, "created_date", 1)?;
    let sequence_number = match m.get("sequence_number") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_i64().ok_or_else(|| {
            ProtocolError::InvalidJson("`sequence_number` must be an i64".to_owned())
        })?,
    };
    let flags = field_u64(m, "flags", 0)?;
    let message_id = match m.get("message_id") {
        None | Some(Value::Null) => Uuid::nil(),
        Some(v) => v
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| ProtocolError::InvalidJson("`message_id` must be a UUID".to_owned()))?,
    };
    let payload_type = match m.get("payload_type") {
        None | Some(Value::Null) => PayloadType::Null,
        Some(Value::String(s)) => PayloadType::from_name(s).ok_or_else(|| {
            ProtocolError::InvalidJson(format!("unknown `payload_type` name `{s}`"))
        })?,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(PayloadType::from_u32)
            .ok_or_else(|| {
                ProtocolError::InvalidJson("`payload_type` must be a name or u32".to_owned())
            })?,
    };

    let given: Vec<&str> = ["payload", "payload_text", "payload_base64", "payload_hex"]
        .into_iter()
        .filter(|k| m.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if given.len() > 1 {
        return Err(ProtocolError::InvalidJson(format!(
            "give at most one of `payload`, `payload_text`, `payload_base64`, `payload_hex` (got {})",
            given.join(", ")
        )));
    }
    let str_field = |key: &str| {
        m.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| ProtocolError::InvalidJson(format!("`{key}` must be a string")))
    };
    let payload = match given.first().copied() {
        None => Vec::new(),
        Some("payload_text") => str_field("payload_text")?.as_bytes().to_vec(),
        Some("payload_base64") => BASE64
            .decode(str_field("payload_base64")?.as_bytes())
            .map_err(|e| ProtocolError::InvalidJson(format!("`payload_base64`: {e}")))?,
        Some("payload_hex") => unhex(str_field("payload_hex")?)
            .ok_or_else(|| ProtocolError::InvalidJson("`payload_hex` is not hex".to_owned()))?,
        Some(_) => payload_from_view(
            kind_of(&message_type, payload_type),
            m.get("payload").unwrap_or(&Value::Null),
        )?,
    };
    Ok(ClientMessage {
        message_type,
        schema_version,
        created_date,
        sequence_number,
        flags,
        message_id,
        payload_type,
        payload,
    })
}

/// JSON view → frame bytes (`ssmtui debug encode`).
pub fn json_to_frame(v: &Value) -> Result<Vec<u8>, ProtocolError> {
    message_from_json(v)?.try_encode()
}
