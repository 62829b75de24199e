//! Typed payloads carried inside `ClientMessage` frames (§4, §5, §6.5) and the
//! `OpenDataChannelInput` text frame (§2.3).
//!
//! Serialization is byte-exact to Go's `encoding/json` as used by the plugin and the agent:
//! compact, struct keys in declaration order, map keys sorted, `[]byte` as standard base64,
//! `null` for nil slices and absent results, and Go's HTML-safe escaping of `<`, `>`, `&`,
//! U+2028 and U+2029. Decoding tolerates unknown keys and, where Go would, missing ones.
//!
//! Invariant: the bearer token of `OpenDataChannelInput` never appears in `Debug` output.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::error::ProtocolError;
use super::types::{ActionStatus, ActionType, Flag, SessionType};

// ---------------------------------------------------------------------------------------------
// Go-compatible JSON

/// serde_json formatter that escapes like Go's `json.Marshal` (HTML-safe).
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()>
    where
        W: ?Sized + std::io::Write,
    {
        // Bytes, not chars (this runs for every acknowledgement): each escaped character
        // starts with a byte that is never a UTF-8 continuation byte ('<', '>', '&', or the
        // 0xE2 lead byte of U+2028/U+2029), so a byte scan cannot split a character.
        let bytes = fragment.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            let escape: Option<(&[u8], usize)> = match b {
                b'<' => Some((b"\\u003c", 1)),
                b'>' => Some((b"\\u003e", 1)),
                b'&' => Some((b"\\u0026", 1)),
                0xE2 => match bytes.get(i + 1..i + 3) {
                    Some([0x80, 0xA8]) => Some((b"\\u2028", 3)),
                    Some([0x80, 0xA9]) => Some((b"\\u2029", 3)),
                    _ => None,
                },
                _ => None,
            };
            match escape {
                Some((escape, len)) => {
                    w.write_all(bytes.get(start..i).unwrap_or_default())?;
                    w.write_all(escape)?;
                    i += len;
                    start = i;
                }
                None => i += 1,
            }
        }
        w.write_all(bytes.get(start..).unwrap_or_default())
    }
}

/// Serializes a value as Go's `json.Marshal` would.
///
/// Serializing the payload types of this module into memory cannot fail (no I/O, only string
/// map keys), so an error can only come from a foreign `Serialize` impl; it yields `null`.
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    if value.serialize(&mut ser).is_err() {
        out.clear();
        out.extend_from_slice(b"null");
    }
    out
}

fn from_json<T: DeserializeOwned>(kind: &'static str, bytes: &[u8]) -> Result<T, ProtocolError> {
    serde_json::from_slice(bytes).map_err(|e| ProtocolError::InvalidPayload {
        kind,
        reason: e.to_string(),
    })
}

/// `[]byte` as base64 (required).
mod b64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        BASE64
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// `[]byte` as base64, `null` when absent (Go's nil slice).
mod b64opt {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&BASE64.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => BASE64
                .decode(s.as_bytes())
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// A Go string slice: `null` when empty.
/// A list written as `null` when empty, and `null` read as empty (Go's nil slices).
mod nullable_vec {
    use super::*;

    pub fn serialize<T: Serialize, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        if v.is_empty() {
            s.serialize_none()
        } else {
            v.serialize(s)
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }
}

/// Accepts a JSON string or number (the service documents a string; be lenient).
mod string_or_number {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Acknowledge (§4.3)

/// Payload of an `acknowledge` message (TV-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcknowledgeContent {
    /// Type of the acknowledged message.
    #[serde(rename = "AcknowledgedMessageType", default)]
    pub message_type: String,
    /// Its MessageId in canonical text form.
    #[serde(rename = "AcknowledgedMessageId", default)]
    pub message_id: String,
    /// Its SequenceNumber: the only field receivers match on.
    #[serde(rename = "AcknowledgedMessageSequenceNumber")]
    pub sequence_number: i64,
    /// Always `true`.
    #[serde(rename = "IsSequentialMessage", default)]
    pub is_sequential_message: bool,
}

impl AcknowledgeContent {
    /// Serializes (Go key order, compact).
    pub fn encode(&self) -> Vec<u8> {
        to_go_json(self)
    }

    /// Parses; unknown keys are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        from_json("Acknowledge", bytes)
    }

    /// The acknowledged sequence number: what [`Self::decode`] accepts and returns in
    /// `sequence_number`, without allocating the two strings (one call per data message sent).
    pub fn decode_sequence_number(bytes: &[u8]) -> Result<i64, ProtocolError> {
        #[derive(Deserialize)]
        struct View<'a> {
            #[serde(rename = "AcknowledgedMessageType", default, borrow)]
            _message_type: Cow<'a, str>,
            #[serde(rename = "AcknowledgedMessageId", default, borrow)]
            _message_id: Cow<'a, str>,
            #[serde(rename = "AcknowledgedMessageSequenceNumber")]
            sequence_number: i64,
            #[serde(rename = "IsSequentialMessage", default)]
            _is_sequential_message: bool,
        }
        serde_json::from_slice::<View<'_>>(bytes)
            .map(|v| v.sequence_number)
            .map_err(|e| ProtocolError::InvalidPayload {
                kind: "Acknowledge",
                reason: e.to_string(),
            })
    }
}

// ---------------------------------------------------------------------------------------------
// channel_closed (§4.4)

/// Payload of a `channel_closed` message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelClosedPayload {
    /// UUID text.
    #[serde(rename = "MessageId")]
    pub message_id: String,
    /// Epoch millis as a decimal string.
    #[serde(
        rename = "CreatedDate",
        deserialize_with = "string_or_number::deserialize"
    )]
    pub created_date: String,
    /// Session target.
    #[serde(rename = "DestinationId")]
    pub destination_id: String,
    /// Session being closed.
    #[serde(rename = "SessionId")]
    pub session_id: String,
    /// `channel_closed`.
    #[serde(rename = "MessageType")]
    pub message_type: String,
    /// 1.
    #[serde(rename = "SchemaVersion")]
    pub schema_version: i64,
    /// Optional reason text for the user.
    #[serde(rename = "Output")]
    pub output: String,
}

impl ChannelClosedPayload {
    /// Serializes (Go key order, compact).
    pub fn encode(&self) -> Vec<u8> {
        to_go_json(self)
    }

    /// Parses; every key is optional.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        from_json("ChannelClosed", bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// Flag, Size, ExitCode (§4.5, §4.6, §8)

impl Flag {
    /// The 4-byte big-endian payload (TV-5).
    pub fn encode(self) -> [u8; 4] {
        self.as_u32().to_be_bytes()
    }

    /// Parses a Flag payload: exactly 4 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let arr: [u8; 4] = bytes
            .try_into()
            .map_err(|_| ProtocolError::InvalidPayload {
                kind: "Flag",
                reason: format!("expected 4 bytes, got {}", bytes.len()),
            })?;
        Ok(Self::from_u32(u32::from_be_bytes(arr)))
    }
}

/// Terminal size payload `{"cols":N,"rows":N}` (TV-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeData {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
}

impl SizeData {
    /// Serializes.
    pub fn encode(&self) -> Vec<u8> {
        to_go_json(self)
    }

    /// Parses.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        from_json("Size", bytes)
    }
}

/// Prefix of the ExitCode payload text.
const EXIT_CODE_PREFIX: &str = "EXIT_CODE:";

/// Encodes the ExitCode payload `EXIT_CODE: <n>`.
pub fn encode_exit_code(code: i32) -> Vec<u8> {
    format!("{EXIT_CODE_PREFIX} {code}").into_bytes()
}

/// Parses an ExitCode payload (surrounding whitespace tolerated).
pub fn decode_exit_code(bytes: &[u8]) -> Result<i32, ProtocolError> {
    let bad = |reason: &str| ProtocolError::InvalidPayload {
        kind: "ExitCode",
        reason: reason.to_owned(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not utf-8"))?;
    let rest = text
        .trim()
        .strip_prefix(EXIT_CODE_PREFIX)
        .ok_or_else(|| bad("missing `EXIT_CODE:` prefix"))?;
    rest.trim()
        .parse()
        .map_err(|_| bad("exit code is not an integer"))
}

// ---------------------------------------------------------------------------------------------
// Handshake (§5)

/// Parameters of the `SessionType` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTypeRequest {
    /// Session type.
    #[serde(rename = "SessionType")]
    pub session_type: SessionType,
    /// The document's `properties` for Port sessions, `null` otherwise.
    #[serde(rename = "Properties", default)]
    pub properties: Value,
}

/// Parameters of the `KMSEncryption` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsEncryptionRequest {
    /// KMS key to use for GenerateDataKey.
    #[serde(rename = "KMSKeyId", default)]
    pub kms_key_id: String,
    /// Newer agents: the random challenge (§6.6); omitted when absent.
    #[serde(rename = "Challenge", default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
}

/// `ActionParameters`, typed by `ActionType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionParameters {
    /// For `SessionType`.
    SessionType(SessionTypeRequest),
    /// For `KMSEncryption`.
    KmsEncryption(KmsEncryptionRequest),
    /// Unknown action types, or known ones whose parameters did not parse.
    Other(Value),
}

/// One entry of `RequestedClientActions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedClientAction {
    /// Action type.
    pub action_type: ActionType,
    /// Its parameters.
    pub action_parameters: ActionParameters,
}

impl Serialize for RequestedClientAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("RequestedClientAction", 2)?;
        st.serialize_field("ActionType", &self.action_type)?;
        match &self.action_parameters {
            ActionParameters::SessionType(p) => st.serialize_field("ActionParameters", p)?,
            ActionParameters::KmsEncryption(p) => st.serialize_field("ActionParameters", p)?,
            ActionParameters::Other(v) => st.serialize_field("ActionParameters", v)?,
        }
        st.end()
    }
}

impl<'de> Deserialize<'de> for RequestedClientAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "ActionType", default)]
            action_type: String,
            #[serde(rename = "ActionParameters", default)]
            action_parameters: Value,
        }
        let raw = Raw::deserialize(d)?;
        let action_type = ActionType::from_wire(&raw.action_type);
        let v = raw.action_parameters;
        let action_parameters = match action_type {
            ActionType::SessionType => serde_json::from_value(v.clone())
                .map(ActionParameters::SessionType)
                .unwrap_or(ActionParameters::Other(v)),
            ActionType::KmsEncryption => serde_json::from_value(v.clone())
                .map(ActionParameters::KmsEncryption)
                .unwrap_or(ActionParameters::Other(v)),
            ActionType::Unknown(_) => ActionParameters::Other(v),
        };
        Ok(Self {
            action_type,
            action_parameters,
        })
    }
}

/// HandshakeRequest (agent → client, PayloadType 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeRequestPayload {
    /// Agent version, selects port-forwarding behaviour.
    #[serde(rename = "AgentVersion", default)]
    pub agent_version: String,
    /// Actions, `SessionType` first.
    #[serde(rename = "RequestedClientActions", default, with = "nullable_vec")]
    pub requested_client_actions: Vec<RequestedClientAction>,
}

impl HandshakeRequestPayload {
    /// Serializes.
    pub fn encode(&self) -> Vec<u8> {
        to_go_json(self)
    }

    /// Parses.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        from_json("HandshakeRequest", bytes)
    }

    /// The `SessionType` action's parameters, if present and well-formed.
    pub fn session_type(&self) -> Option<&SessionTypeRequest> {
        self.requested_client_actions
            .iter()
            .find_map(|a| match &a.action_parameters {
                ActionParameters::SessionType(p) => Some(p),
                _ => None,
            })
    }

    /// The `KMSEncryption` action's parameters, if present and well-formed.
    pub fn kms_encryption(&self) -> Option<&KmsEncryptionRequest> {
        self.requested_client_actions
            .iter()
            .find_map(|a| match &a.action_parameters {
                ActionParameters::KmsEncryption(p) => Some(p),
                _ => None,
            })
    }
}

/// `ActionResult` of the `KMSEncryption` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsEncryptionResponse {
    /// GenerateDataKey's CiphertextBlob.
    #[serde(rename = "KMSCipherTextKey", default, with = "b64opt")]
    pub kms_cipher_text_key: Option<Vec<u8>>,
    /// Unused by current clients (`null`).
    #[serde(rename = "KMSCipherTextHash", default, with = "b64opt")]
    pub kms_cipher_text_hash: Option<Vec<u8>>,
    /// Opt-in to the random-challenge encryption context (§6.6); omitted when false.
    #[serde(
        rename = "ChallengeAcknowledgement",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub challenge_acknowledgement: bool,
}

/// `ActionResult` of a processed action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    /// `null`.
    None,
    /// KMS result.
    Kms(KmsEncryptionResponse),
    /// Anything else (e.g. the plugin's `3` for unknown actions).
    Other(Value),
}

/// One entry of `ProcessedClientActions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedClientAction {
    /// Same type as the request.
    pub action_type: ActionType,
    /// Outcome.
    pub action_status: ActionStatus,
    /// Result.
    pub action_result: ActionResult,
    /// Error text, `""` on success.
    pub error: String,
}

impl Serialize for ProcessedClientAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ProcessedClientAction", 4)?;
        st.serialize_field("ActionType", &self.action_type)?;
        st.serialize_field("ActionStatus", &self.action_status)?;
        match &self.action_result {
            ActionResult::None => st.serialize_field("ActionResult", &Value::Null)?,
            ActionResult::Kms(r) => st.serialize_field("ActionResult", r)?,
            ActionResult::Other(v) => st.serialize_field("ActionResult", v)?,
        }
        st.serialize_field("Error", &self.error)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for ProcessedClientAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "ActionType", default)]
            action_type: String,
            #[serde(rename = "ActionStatus", default)]
            action_status: i64,
            #[serde(rename = "ActionResult", default)]
            action_result: Value,
            #[serde(
                rename = "Error",
                default,
                deserialize_with = "string_or_number::deserialize"
            )]
            error: String,
        }
        let raw = Raw::deserialize(d)?;
        let action_type = ActionType::from_wire(&raw.action_type);
        let action_result = match raw.action_result {
            Value::Null => ActionResult::None,
            v if action_type == ActionType::KmsEncryption => serde_json::from_value(v.clone())
                .map(ActionResult::Kms)
                .unwrap_or(ActionResult::Other(v)),
            v => ActionResult::Other(v),
        };
        Ok(Self {
            action_type,
            action_status: ActionStatus::from_i64(raw.action_status),
            action_result,
            error: raw.error,
        })
    }
}

/// HandshakeResponse (client → agent, PayloadType 6; TV-6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeResponsePayload {
    /// Client version the agent compares against its thresholds.
    #[serde(rename = "ClientVersion", default)]
    pub client_version: String,
    /// One entry per requested action, same order.
    #[serde(rename = "ProcessedClientActions", default, with = "nullable_vec")]
    pub processed_client_actions: Vec<ProcessedClientAction>,
    /// Errors; `null` when empty.
    #[serde(rename = "Errors", default, with = "nullable_vec")]
    pub errors: Vec<String>,
}

impl HandshakeResponsePayload {
    /// Serializes.
    pub fn encode(&self) -> Vec<u8> {
        to_go_json(self)
    }

    /// Parses.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        from_json("HandshakeResponse", bytes)
    }
}

/// HandshakeComplete (agent → client, PayloadType 7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeCompletePayload {
    /// Go duration: nanoseconds.
    #[serde(rename = "HandshakeTimeToComplete", default)]
    pub handshake_time_to_complete: i64,
    /// Printed to the user when not empty.
    #[serde(rename = "CustomerMessage", default)]
    pub customer_message: String,
}

impl HandshakeCompletePayload {
    /// Serializes.
    pub fn encode(&self) -> Vec<u8> {
        to_go_json(self)
    }

    /// Parses.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        from_json("HandshakeComplete", bytes)
    }
}

/// EncChallengeRequest / EncChallengeResponse (PayloadTypes 8 and 9): `{"Challenge":"<b64>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncChallengePayload {
    /// Encrypted challenge bytes (nonce ‖ ciphertext ‖ tag).
    #[serde(rename = "Challenge", with = "b64")]
    pub challenge: Vec<u8>,
}

impl EncChallengePayload {
    /// Serializes.
    pub fn encode(&self) -> Vec<u8> {
        to_go_json(self)
    }

    /// Parses.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        from_json("EncChallenge", bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// agent_session_state (§4.7)

/// `SessionState` values of `agent_session_state`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// Data channel open.
    Connected,
    /// Shell exited normally.
    Terminating,
    /// Anything else.
    Unknown(String),
}

impl AgentState {
    /// Parses the wire string.
    pub fn from_wire(s: &str) -> Self {
        match s {
            "Connected" => Self::Connected,
            "Terminating" => Self::Terminating,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Connected => "Connected",
            Self::Terminating => "Terminating",
            Self::Unknown(s) => s,
        }
    }
}

impl Serialize for AgentState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AgentState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_wire(&String::deserialize(d)?))
    }
}

/// Payload of `agent_session_state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSessionStatePayload {
    /// 1.
    #[serde(rename = "SchemaVersion", default)]
    pub schema_version: i64,
    /// State.
    #[serde(rename = "SessionState")]
    pub session_state: AgentState,
    /// Session id.
    #[serde(rename = "SessionId", default)]
    pub session_id: String,
}

impl AgentSessionStatePayload {
    /// Serializes.
    pub fn encode(&self) -> Vec<u8> {
        to_go_json(self)
    }

    /// Parses.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        from_json("AgentSessionState", bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// OpenDataChannelInput (§2.3)

/// The first (text) websocket frame: authenticates the data channel with the bearer token.
///
/// `Debug` redacts `token_value`; do not log the serialized JSON.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDataChannelInput {
    /// `"1.0"`.
    #[serde(rename = "MessageSchemaVersion", default)]
    pub message_schema_version: String,
    /// Fresh UUID v4 per open.
    #[serde(rename = "RequestId", default)]
    pub request_id: String,
    /// Bearer token from StartSession/ResumeSession.
    #[serde(rename = "TokenValue", default)]
    pub token_value: String,
    /// UUID v4 per client process, reused on reconnect.
    #[serde(rename = "ClientId", default)]
    pub client_id: String,
    /// Client form: plugin version string.
    #[serde(
        rename = "ClientVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_version: Option<String>,
    /// Agent form: the agent's instance id.
    #[serde(
        rename = "ClientInstanceId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_instance_id: Option<String>,
}

impl std::fmt::Debug for OpenDataChannelInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenDataChannelInput")
            .field("message_schema_version", &self.message_schema_version)
            .field("request_id", &self.request_id)
            .field("token_value", &"<redacted>")
            .field("client_id", &self.client_id)
            .field("client_version", &self.client_version)
            .field("client_instance_id", &self.client_instance_id)
            .finish()
    }
}

impl OpenDataChannelInput {
    /// The client form (`ClientVersion` last).
    pub fn client(request_id: &str, token: &str, client_id: &str, client_version: &str) -> Self {
        Self {
            message_schema_version: "1.0".to_owned(),
            request_id: request_id.to_owned(),
            token_value: token.to_owned(),
            client_id: client_id.to_owned(),
            client_version: Some(client_version.to_owned()),
            client_instance_id: None,
        }
    }

    /// The text frame contents (Go key order, compact).
    pub fn to_json_string(&self) -> String {
        String::from_utf8(to_go_json(self)).unwrap_or_default()
    }

    /// Parses a text frame (the sandbox's service side).
    pub fn parse(text: &[u8]) -> Result<Self, ProtocolError> {
        from_json("OpenDataChannelInput", text)
    }
}
