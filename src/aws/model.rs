//! Domain types for what ssmtui asks of AWS, independent of the SDK's types.

use std::collections::{BTreeMap, HashMap};

use crate::secret::Secret;

/// An EC2 instance joined with its Systems Manager registration.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Instance {
    /// `i-…` (or `mi-…` for hybrid nodes).
    pub id: String,
    /// The `Name` tag, if any.
    pub name: Option<String>,
    /// EC2 state name: `running`, `stopped`, … (`unknown` for SSM-only nodes).
    pub state: String,
    /// SSM agent ping status (`Online`, `ConnectionLost`, `Inactive`); `None` when the instance is
    /// not managed by Systems Manager at all.
    pub ping: Option<String>,
    /// When the agent last pinged, as RFC 3339 text.
    pub last_ping: Option<String>,
    /// SSM agent version, which decides port-forwarding behaviour.
    pub agent_version: Option<String>,
    /// Platform name as SSM reports it (`Amazon Linux`, `Ubuntu`, `Microsoft Windows Server …`),
    /// else EC2's platform details.
    pub platform: Option<String>,
    /// `Linux`, `Windows` or `MacOS` when SSM knows it.
    pub platform_type: Option<String>,
    /// Private IPv4 address.
    pub private_ip: Option<String>,
    /// All tags.
    pub tags: BTreeMap<String, String>,
    /// AMI id.
    pub image_id: Option<String>,
    /// Instance type, e.g. `t3.micro`.
    pub instance_type: Option<String>,
    /// VPC id.
    pub vpc_id: Option<String>,
    /// Subnet id.
    pub subnet_id: Option<String>,
    /// Availability zone.
    pub availability_zone: Option<String>,
}

impl Instance {
    /// Whether a session can be started now: running and agent online.
    pub fn is_connectable(&self) -> bool {
        self.state == "running" && self.ping.as_deref() == Some("Online")
    }

    /// A short human label: `web-1 (i-0abc…)` or just the id.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} ({})", self.id),
            None => self.id.clone(),
        }
    }
}

/// A tag filter `key=value` applied on the server side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    /// Tag key.
    pub key: String,
    /// Accepted values (any of them).
    pub values: Vec<String>,
}

/// What to start a session with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartSessionRequest {
    /// Instance id.
    pub target: String,
    /// Session document name.
    pub document: String,
    /// Document parameters (all values are strings, lists of one in practice).
    pub parameters: HashMap<String, Vec<String>>,
    /// Why, recorded by AWS with the session (1–256 characters).
    pub reason: Option<String>,
}

/// What StartSession and ResumeSession return.
#[derive(Debug, Clone)]
pub struct SessionTarget {
    /// The session id, e.g. `alice-0123456789abcdef0`.
    pub session_id: String,
    /// The websocket URL of the data channel, used verbatim.
    pub stream_url: String,
    /// Bearer token for the data channel; empty after a ResumeSession of a timed-out session.
    pub token: Secret,
}

/// A session as DescribeSessions reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionSummary {
    /// Session id.
    pub id: String,
    /// Target instance.
    pub target: String,
    /// `Connected`, `Terminated`, …
    pub status: String,
    /// Start time, RFC 3339.
    pub start: Option<String>,
    /// End time, RFC 3339.
    pub end: Option<String>,
    /// Document used.
    pub document: Option<String>,
    /// Owner ARN.
    pub owner: Option<String>,
    /// Reason given at start.
    pub reason: Option<String>,
}

/// One CloudWatch Logs event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogRecord {
    /// Event time, ms since the epoch.
    pub timestamp: i64,
    /// The message (for streamed session logs, a JSON record).
    pub message: String,
}

/// One page of GetLogEvents read forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// Events, oldest first.
    pub events: Vec<LogRecord>,
    /// Where the next page starts (the same token again at the end of the stream).
    pub next: Option<String>,
}

/// Which sessions DescribeSessions should list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Sessions still running.
    Active,
    /// Ended sessions.
    History,
}

/// The caller as STS sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// 12-digit account id.
    pub account: String,
    /// Caller ARN (for SSO users an `assumed-role/AWSReservedSSO_…/user` ARN).
    pub arn: String,
    /// Unique id of the caller.
    pub user_id: String,
}

/// A KMS data key: the plaintext stays in memory, the ciphertext goes to the agent.
pub struct DataKey {
    /// 64 bytes of key material; overwritten on drop.
    pub plaintext: zeroize::Zeroizing<Vec<u8>>,
    /// The encrypted key (`CiphertextBlob`).
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("plaintext", &"[redacted]")
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// A document as ListDocuments and DescribeDocument describe it (no content).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct DocumentSummary {
    /// Document name.
    pub name: String,
    /// `Session`, `Command`, … (`DocumentType`).
    pub document_type: Option<String>,
    /// `Amazon` or the owning account id.
    pub owner: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// Where a service's API calls go, and which setting said so (for `ssmtui doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Lower-case service name (`ssm`, `ec2`, `sts`, `kms`).
    pub service: &'static str,
    /// The endpoint URL.
    pub url: String,
    /// Which setting chose it: `[aws.endpoints.ssm]`, `AWS_ENDPOINT_URL_SSM`, "regional", …
    pub origin: String,
}

/// A service whose endpoint `SsmApi::check_endpoint` can probe with one cheap call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// EC2 (DescribeRegions for the configured region).
    Ec2,
    /// SSM (ListDocuments with one result).
    Ssm,
}

impl Service {
    /// Lower-case service name as in endpoint host names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ec2 => "ec2",
            Self::Ssm => "ssm",
        }
    }
}
