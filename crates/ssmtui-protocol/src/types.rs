//! Wire enums of the data channel: message types, payload types, payload flags, session types,
//! handshake action types and statuses, and the on-wire MessageId byte order.
//!
//! Invariant: every enum keeps unknown values representable (`Unknown(..)`), and the
//! `from_*` constructors never produce `Unknown` for a known value, so
//! `from_wire(x.as_wire()) == x` holds for every value built through them.

use uuid::Uuid;

/// The 32-byte MessageType string (§4.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// `input_stream_data`: client → agent stream data.
    InputStreamData,
    /// `output_stream_data`: agent → client stream data.
    OutputStreamData,
    /// `acknowledge` (both directions, never acknowledged itself).
    Acknowledge,
    /// `channel_closed` (service → peer).
    ChannelClosed,
    /// `start_publication` (service → peer): the other side is back.
    StartPublication,
    /// `pause_publication` (service → peer): the other side is gone for now.
    PausePublication,
    /// `agent_session_state` (agent → service).
    AgentSessionState,
    /// Anything else, trimmed as received. Ignored by the session.
    Unknown(String),
}

impl MessageType {
    /// Parses an already trimmed message type.
    pub fn from_wire(s: &str) -> Self {
        match s {
            "input_stream_data" => Self::InputStreamData,
            "output_stream_data" => Self::OutputStreamData,
            "acknowledge" => Self::Acknowledge,
            "channel_closed" => Self::ChannelClosed,
            "start_publication" => Self::StartPublication,
            "pause_publication" => Self::PausePublication,
            "agent_session_state" => Self::AgentSessionState,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The string as written on the wire (before padding).
    pub fn as_str(&self) -> &str {
        match self {
            Self::InputStreamData => "input_stream_data",
            Self::OutputStreamData => "output_stream_data",
            Self::Acknowledge => "acknowledge",
            Self::ChannelClosed => "channel_closed",
            Self::StartPublication => "start_publication",
            Self::PausePublication => "pause_publication",
            Self::AgentSessionState => "agent_session_state",
            Self::Unknown(s) => s,
        }
    }

    /// True for the two sequenced, acknowledged stream-data types.
    pub fn is_stream_data(&self) -> bool {
        matches!(self, Self::InputStreamData | Self::OutputStreamData)
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PayloadType, the u32 at offset 112 (§4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadType {
    /// 0: acks and other control messages.
    Null,
    /// 1: raw stream bytes (keystrokes, terminal output, forwarded TCP).
    Output,
    /// 2: defined, unused.
    Error,
    /// 3: terminal size JSON.
    Size,
    /// 4: defined, unused.
    Parameter,
    /// 5: agent's HandshakeRequest JSON.
    HandshakeRequest,
    /// 6: client's HandshakeResponse JSON.
    HandshakeResponse,
    /// 7: agent's HandshakeComplete JSON.
    HandshakeComplete,
    /// 8: agent's KMS challenge.
    EncChallengeRequest,
    /// 9: client's KMS challenge answer.
    EncChallengeResponse,
    /// 10: 4-byte big-endian flag.
    Flag,
    /// 11: stderr bytes (NonInteractiveCommands).
    StdErr,
    /// 12: `EXIT_CODE: <n>` text.
    ExitCode,
    /// Any other value.
    Unknown(u32),
}

impl PayloadType {
    /// Maps a wire value; known values never become `Unknown`.
    pub fn from_u32(v: u32) -> Self {
        match v {
            0 => Self::Null,
            1 => Self::Output,
            2 => Self::Error,
            3 => Self::Size,
            4 => Self::Parameter,
            5 => Self::HandshakeRequest,
            6 => Self::HandshakeResponse,
            7 => Self::HandshakeComplete,
            8 => Self::EncChallengeRequest,
            9 => Self::EncChallengeResponse,
            10 => Self::Flag,
            11 => Self::StdErr,
            12 => Self::ExitCode,
            other => Self::Unknown(other),
        }
    }

    /// The wire value.
    pub fn as_u32(self) -> u32 {
        match self {
            Self::Null => 0,
            Self::Output => 1,
            Self::Error => 2,
            Self::Size => 3,
            Self::Parameter => 4,
            Self::HandshakeRequest => 5,
            Self::HandshakeResponse => 6,
            Self::HandshakeComplete => 7,
            Self::EncChallengeRequest => 8,
            Self::EncChallengeResponse => 9,
            Self::Flag => 10,
            Self::StdErr => 11,
            Self::ExitCode => 12,
            Self::Unknown(v) => v,
        }
    }

    /// Name used by the `debug` JSON view (`Unknown` values are shown as numbers instead).
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::Null => "Null",
            Self::Output => "Output",
            Self::Error => "Error",
            Self::Size => "Size",
            Self::Parameter => "Parameter",
            Self::HandshakeRequest => "HandshakeRequest",
            Self::HandshakeResponse => "HandshakeResponse",
            Self::HandshakeComplete => "HandshakeComplete",
            Self::EncChallengeRequest => "EncChallengeRequest",
            Self::EncChallengeResponse => "EncChallengeResponse",
            Self::Flag => "Flag",
            Self::StdErr => "StdErr",
            Self::ExitCode => "ExitCode",
            Self::Unknown(_) => return None,
        })
    }

    /// Inverse of [`PayloadType::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        (0..=12)
            .map(Self::from_u32)
            .find(|t| t.name() == Some(name))
    }
}

/// Header flag bit 0.
pub const FLAG_SYN: u64 = 1;
/// Header flag bit 1.
pub const FLAG_FIN: u64 = 2;
/// Flags of acknowledge and agent control messages (SYN | FIN).
pub const FLAGS_CONTROL: u64 = FLAG_SYN | FLAG_FIN;

/// The Flag payload (PayloadType 10): a u32 big-endian value (§4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// 1: basic port mode, the local TCP client went away.
    DisconnectToPort,
    /// 2: port sessions, end the session now.
    TerminateSession,
    /// 3: mux mode, the agent could not dial the target for a new stream.
    ConnectToPortError,
    /// Any other value.
    Unknown(u32),
}

impl Flag {
    /// Maps a wire value; known values never become `Unknown`.
    pub fn from_u32(v: u32) -> Self {
        match v {
            1 => Self::DisconnectToPort,
            2 => Self::TerminateSession,
            3 => Self::ConnectToPortError,
            other => Self::Unknown(other),
        }
    }

    /// The wire value.
    pub fn as_u32(self) -> u32 {
        match self {
            Self::DisconnectToPort => 1,
            Self::TerminateSession => 2,
            Self::ConnectToPortError => 3,
            Self::Unknown(v) => v,
        }
    }

    /// Name for the `debug` view (`None` for unknown values).
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::DisconnectToPort => Some("DisconnectToPort"),
            Self::TerminateSession => Some("TerminateSession"),
            Self::ConnectToPortError => Some("ConnectToPortError"),
            Self::Unknown(_) => None,
        }
    }

    /// Inverse of [`Flag::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        (1..=3).map(Self::from_u32).find(|f| f.name() == Some(name))
    }
}

/// Session type announced in the handshake (§5.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionType {
    /// `Standard_Stream`: interactive shell (also inferred when there is no handshake).
    StandardStream,
    /// `InteractiveCommands`.
    InteractiveCommands,
    /// `NonInteractiveCommands`.
    NonInteractiveCommands,
    /// `Port`: port forwarding.
    Port,
    /// Anything else (the client fails the action).
    Unknown(String),
}

impl SessionType {
    /// Parses the wire string.
    pub fn from_wire(s: &str) -> Self {
        match s {
            "Standard_Stream" => Self::StandardStream,
            "InteractiveCommands" => Self::InteractiveCommands,
            "NonInteractiveCommands" => Self::NonInteractiveCommands,
            "Port" => Self::Port,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::StandardStream => "Standard_Stream",
            Self::InteractiveCommands => "InteractiveCommands",
            Self::NonInteractiveCommands => "NonInteractiveCommands",
            Self::Port => "Port",
            Self::Unknown(s) => s,
        }
    }

    /// The three types the plugin treats as an interactive shell.
    pub fn is_shell_like(&self) -> bool {
        matches!(
            self,
            Self::StandardStream | Self::InteractiveCommands | Self::NonInteractiveCommands
        )
    }

    /// Whether a real agent runs a handshake for this type even without KMS (§5.1).
    pub fn handshake_without_kms(&self) -> bool {
        !matches!(self, Self::StandardStream | Self::InteractiveCommands)
    }
}

/// Handshake action type (§5.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ActionType {
    /// `SessionType`.
    SessionType,
    /// `KMSEncryption`.
    KmsEncryption,
    /// Anything else (answered as unsupported).
    Unknown(String),
}

impl ActionType {
    /// Parses the wire string.
    pub fn from_wire(s: &str) -> Self {
        match s {
            "SessionType" => Self::SessionType,
            "KMSEncryption" => Self::KmsEncryption,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::SessionType => "SessionType",
            Self::KmsEncryption => "KMSEncryption",
            Self::Unknown(s) => s,
        }
    }
}

/// Outcome of one processed handshake action (§5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionStatus {
    /// 1.
    Success,
    /// 2.
    Failed,
    /// 3.
    Unsupported,
    /// Anything else (the plugin writes 0 for unknown actions).
    Unknown(i64),
}

impl ActionStatus {
    /// Maps a wire value; known values never become `Unknown`.
    pub fn from_i64(v: i64) -> Self {
        match v {
            1 => Self::Success,
            2 => Self::Failed,
            3 => Self::Unsupported,
            other => Self::Unknown(other),
        }
    }

    /// The wire value.
    pub fn as_i64(self) -> i64 {
        match self {
            Self::Success => 1,
            Self::Failed => 2,
            Self::Unsupported => 3,
            Self::Unknown(v) => v,
        }
    }
}

/// Encodes a MessageId for the wire: the two 8-byte halves swapped (§3.3).
pub fn message_id_to_wire(id: &Uuid) -> [u8; 16] {
    swap_halves(*id.as_bytes())
}

/// Decodes a wire MessageId (swaps the halves back).
pub fn message_id_from_wire(wire: [u8; 16]) -> Uuid {
    Uuid::from_bytes(swap_halves(wire))
}

fn swap_halves(mut b: [u8; 16]) -> [u8; 16] {
    // Swapping the halves of 16 bytes is a rotation by 8 either way.
    b.rotate_left(8);
    b
}

// JSON forms: the string/number each enum has on the wire, so payload structs can embed the
// typed values and still serialize byte-exactly.
macro_rules! serde_as_str {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Ok(Self::from_wire(&s))
            }
        }
    };
}
serde_as_str!(MessageType);
serde_as_str!(SessionType);
serde_as_str!(ActionType);

impl serde::Serialize for ActionStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.as_i64())
    }
}

impl<'de> serde::Deserialize<'de> for ActionStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_i64(<i64 as serde::Deserialize>::deserialize(d)?))
    }
}

/// Which end of the data channel a [`Session`](super::session::Session) plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The plugin's side (us): sends `input_stream_data`.
    Client,
    /// The agent's side (sandbox and tests): sends `output_stream_data`.
    Agent,
}
