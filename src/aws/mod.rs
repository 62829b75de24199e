//! The AWS calls ssmtui makes, behind one trait.
//!
//! [`SsmApi`] is the seam between ssmtui and AWS: the engine, the CLI and the UI only ever talk to
//! it. [`sdk::SdkApi`] implements it with the AWS SDK (default credential chain, profile,
//! region, endpoint overrides, a timeout on every call, `app/ssmtui-<version>` in the user
//! agent); [`fake::FakeApi`] implements it in memory for unit tests. Errors are classified into
//! [`AwsError`] here, once, so every caller gets the same messages and hints.

pub mod factory;
pub mod fake;
mod http;
pub mod model;
pub mod profiles;
pub mod sdk;

use std::collections::HashMap;

use async_trait::async_trait;

use crate::error::{Classified, Classify, ErrorKind};

pub use model::{
    DataKey, DocumentSummary, EndpointInfo, Identity, Instance, LogPage, LogRecord, Service,
    SessionState, SessionSummary, SessionTarget, StartSessionRequest, TagFilter,
};

/// Everything ssmtui asks of AWS.
#[async_trait]
pub trait SsmApi: Send + Sync {
    /// The profile (if named) and region this client talks to, for audit records. Fakes may
    /// know neither.
    fn location(&self) -> (Option<String>, Option<String>) {
        (None, None)
    }

    /// The trust and proxy rules the data channel follows, the same as the API calls'.
    fn network(&self) -> crate::net::Network {
        crate::net::Network::direct()
    }

    /// Where each service's calls go (empty when the client cannot say, as fakes).
    fn endpoints(&self) -> Vec<EndpointInfo> {
        Vec::new()
    }

    /// EC2 instances (filtered by tags on the server) joined with their SSM registration.
    async fn list_instances(&self, filters: &[TagFilter]) -> Result<Vec<Instance>, AwsError>;
    /// `ssm:StartSession`.
    async fn start_session(&self, req: &StartSessionRequest) -> Result<SessionTarget, AwsError>;
    /// `ssm:ResumeSession`: a fresh token for an existing session.
    async fn resume_session(&self, session_id: &str) -> Result<SessionTarget, AwsError>;
    /// `ssm:TerminateSession`.
    async fn terminate_session(&self, session_id: &str) -> Result<(), AwsError>;
    /// `ssm:DescribeSessions`; `owner_self` limits the list to the caller's own sessions (an
    /// `Owner` filter with the caller's ARN from STS).
    async fn describe_sessions(
        &self,
        state: SessionState,
        owner_self: bool,
    ) -> Result<Vec<SessionSummary>, AwsError>;
    /// `ssm:GetDocument`: the document's JSON content.
    async fn get_document(&self, name: &str) -> Result<String, AwsError>;
    /// `ssm:DescribeDocument`: type, owner and tags of a document.
    async fn describe_document(&self, name: &str) -> Result<DocumentSummary, AwsError>;
    /// `ssm:ListDocuments` of `Session` documents carrying the tag `filter.key`; with values,
    /// only those whose tag has one of them (an empty `values` means any value).
    async fn list_documents(&self, filter: &TagFilter) -> Result<Vec<DocumentSummary>, AwsError>;
    /// One cheap read-only call to `service`, proving its endpoint answers for these
    /// credentials and region.
    async fn check_endpoint(&self, service: Service) -> Result<(), AwsError>;
    /// `sts:GetCallerIdentity`.
    async fn caller_identity(&self) -> Result<Identity, AwsError>;
    /// `s3:GetObject`: the whole object (an SSE-KMS one also needs `kms:Decrypt`).
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, AwsError>;
    /// `s3:HeadObject`: the object's size, or `None` when there is no such object.
    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<u64>, AwsError>;
    /// `logs:GetLogEvents` forwards: from the head of the stream, or from `token`.
    async fn log_events(
        &self,
        group: &str,
        stream: &str,
        token: Option<&str>,
    ) -> Result<LogPage, AwsError>;
    /// `kms:GenerateDataKey` with 64 bytes and the given encryption context.
    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &HashMap<String, String>,
    ) -> Result<DataKey, AwsError>;
}

/// Why an AWS call failed, classified for the user.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No usable credentials (none found, SSO session expired, bad profile).
    #[error("no usable AWS credentials{}: {message}", profile_suffix(.profile))]
    Credentials {
        /// Profile in use, if any.
        profile: Option<String>,
        /// What the credential chain said.
        message: String,
    },
    /// No credentials anywhere: no profile chosen, none in the environment.
    #[error("no AWS credentials found (no profile is chosen and none are in the environment)")]
    NoCredentials {
        /// The profiles of the shared config file, for the hint.
        profiles: Vec<String>,
    },
    /// The profile signs in through IAM Identity Center (SSO) and its sign-in has expired or
    /// was never made.
    #[error("the SSO sign-in for profile \"{profile}\" has expired or was never made")]
    SsoExpired {
        /// The profile.
        profile: String,
    },
    /// AWS is throttling the calls.
    #[error("AWS is throttling {operation} ({code}): {message}")]
    Throttled {
        /// The API operation.
        operation: &'static str,
        /// The AWS error code.
        code: String,
        /// What AWS said.
        message: String,
    },
    /// The credentials were rejected or have expired.
    #[error("AWS rejected the credentials{} in {operation}: {message}", profile_suffix(.profile))]
    Rejected {
        /// Profile in use, if any.
        profile: Option<String>,
        /// The API operation.
        operation: &'static str,
        /// What AWS said.
        message: String,
    },
    /// Authenticated, but not allowed.
    #[error("access denied in {operation}: {message}")]
    AccessDenied {
        /// The API operation.
        operation: &'static str,
        /// What AWS said (it names the missing permission).
        message: String,
    },
    /// The thing asked for does not exist.
    #[error("{operation} failed: {message}")]
    NotFound {
        /// The API operation.
        operation: &'static str,
        /// What AWS said.
        message: String,
    },
    /// The instance's agent is not connected to Systems Manager.
    #[error("the instance is not connected to Systems Manager: {message}")]
    TargetNotConnected {
        /// What AWS said.
        message: String,
    },
    /// The call did not finish in time.
    #[error("{operation} timed out after {seconds} s")]
    Timeout {
        /// The API operation.
        operation: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// The endpoint could not be reached.
    #[error("cannot reach AWS for {operation}: {message}")]
    Network {
        /// The API operation.
        operation: &'static str,
        /// The transport error.
        message: String,
    },
    /// The network on the way failed in a way we know exactly (a proxy's answer, a
    /// certificate), classified as the data channel classifies it.
    #[error("cannot reach AWS for {operation}: {error}")]
    Net {
        /// The API operation.
        operation: &'static str,
        /// What failed.
        error: crate::net::NetError,
    },
    /// Any other error the service returned.
    #[error("{operation} failed with {code}: {message}")]
    Service {
        /// The API operation.
        operation: &'static str,
        /// The AWS error code.
        code: String,
        /// What AWS said.
        message: String,
    },
    /// The AWS configuration is unusable (no region, bad profile name).
    #[error("{message}")]
    Config {
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// The response lacked something we need.
    #[error("{operation} returned an incomplete response: {what} is missing")]
    Incomplete {
        /// The API operation.
        operation: &'static str,
        /// The missing field.
        what: &'static str,
    },
}

fn profile_suffix(profile: &Option<String>) -> String {
    profile
        .as_ref()
        .map(|p| format!(" for profile \"{p}\""))
        .unwrap_or_default()
}

impl Classify for AwsError {
    fn classified(&self) -> Classified {
        Classified::new(self.kind(), self.hints())
    }
}

impl AwsError {
    /// The exit-code class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Credentials { .. }
            | Self::NoCredentials { .. }
            | Self::SsoExpired { .. }
            | Self::Rejected { .. }
            | Self::AccessDenied { .. } => ErrorKind::Auth,
            Self::Throttled { .. } => ErrorKind::Network,
            Self::NotFound { .. } | Self::TargetNotConnected { .. } => ErrorKind::NotFound,
            Self::Timeout { .. } | Self::Network { .. } => ErrorKind::Network,
            Self::Net { error, .. } => error.classified().kind.unwrap_or(ErrorKind::Network),
            Self::Service { code, .. } if code == "ValidationException" => ErrorKind::Usage,
            Self::Config { .. } => ErrorKind::Usage,
            Self::Service { .. } | Self::Incomplete { .. } => ErrorKind::Internal,
        }
    }

    /// What the user can do about it.
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Credentials { profile, message } | Self::Rejected { profile, message, .. } => {
                let lower = message.to_ascii_lowercase();
                let mut hints = Vec::new();
                match profile {
                    Some(p) if lower.contains("sso") || lower.contains("token") => {
                        hints.push(format!("run `aws sso login --profile {p}` and try again"));
                    }
                    Some(p) => hints.push(format!(
                        "check the profile with `aws sts get-caller-identity --profile {p}`"
                    )),
                    None => hints.push(
                        "choose a profile with --profile NAME (or AWS_PROFILE), or export AWS credentials"
                            .to_owned(),
                    ),
                }
                hints
            }
            Self::NoCredentials { profiles } => {
                let mut hints = vec![if profiles.is_empty() {
                    "pass --profile NAME (or export AWS_PROFILE=NAME) for a profile in ~/.aws/config; there is none yet".to_owned()
                } else {
                    format!(
                        "pass --profile NAME (or export AWS_PROFILE=NAME); profiles in ~/.aws/config: {}",
                        profiles.join(", ")
                    )
                }];
                hints.push(
                    "or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)"
                        .to_owned(),
                );
                hints.push(
                    "or create a profile with `aws configure sso` (IAM Identity Center) or `aws configure`"
                        .to_owned(),
                );
                hints
            }
            Self::SsoExpired { profile } => vec![format!(
                "run `aws sso login --profile {profile}` and try again"
            )],
            Self::Throttled { .. } => vec![
                "try again in a moment; scripts or tools calling the same API at once share the account's rate"
                    .to_owned(),
            ],
            Self::AccessDenied { .. } => vec![
                "your IAM policy does not allow this; the message names the missing permission"
                    .to_owned(),
            ],
            Self::TargetNotConnected { .. } => vec![
                "the SSM agent on the instance is offline or the instance is stopped; pick an Online instance"
                    .to_owned(),
            ],
            Self::Network { message, .. }
                if message.starts_with("the TLS handshake") && message.contains("trusted: ") =>
            {
                vec![
                    "a TLS-inspecting proxy signs with its own CA: add that CA with AWS_CA_BUNDLE=/path/ca.pem (or ca_bundle in the profile, or [aws] ca_bundle)"
                        .to_owned(),
                ]
            }
            Self::Network { message, .. } if message.starts_with("the TLS handshake") => vec![
                "a proxy that inspects TLS, or an endpoint override with https:// where the server speaks http, causes this; check [aws] endpoint_url and AWS_ENDPOINT_URL"
                    .to_owned(),
            ],
            Self::Network { message, .. } if message.starts_with("the proxy") => vec![
                "check the proxy's address (HTTPS_PROXY, ALL_PROXY or [aws] proxy), or list the destination in NO_PROXY"
                    .to_owned(),
            ],
            Self::Network { message, .. } if message.starts_with("the endpoint's host name") => vec![
                "check the region name, your DNS or VPN, and any endpoint override ([aws] endpoint_url, AWS_ENDPOINT_URL)"
                    .to_owned(),
            ],
            Self::Timeout { .. } | Self::Network { .. } => vec![
                "check the network, the region, and any endpoint override ([aws] endpoint_url, AWS_ENDPOINT_URL)"
                    .to_owned(),
            ],
            Self::Config { hint, .. } => vec![hint.clone()],
            Self::Net { error, .. } => error.hints(),
            Self::NotFound { .. } | Self::Service { .. } | Self::Incomplete { .. } => Vec::new(),
        }
    }
}
