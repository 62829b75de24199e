//! The shared, mutable state of a running sandbox: the world, the sessions with their tokens,
//! the KMS master keys and the fault switches.
//!
//! [`SandboxState`] is a cheap clonable handle. The API handlers, the data-channel half and the
//! tests all hold one. Locks are plain `std::sync` locks held only for short, non-async
//! critical sections (never across an `.await`), and a poisoned lock is recovered rather than
//! propagated: every critical section leaves the data consistent before it can fail.
//!
//! Session tokens are stored only as SHA-256 digests; each is single use and expires
//! ([`SandboxState::set_token_ttl`], default five minutes). StartSession issues the first token
//! of a session, ResumeSession a fresh one for the same session, and the websocket side calls
//! [`SandboxState::validate_and_consume_token`] when a client opens the data channel.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::faults::{FaultCounters, FaultCounts, FaultKind, Faults};
use super::identity::Identity;
use super::tasks::SessionTasks;
use super::world::{
    Document, GENERAL_KEY_ALIAS, GENERAL_KEY_ID, InstanceState, PingStatus, SESSION_KEY_ALIAS,
    SESSION_KEY_ID, World, key_arn,
};
use crate::secret::Secret;

/// Encryption-context key naming the session (protocol.md §6.1).
pub const CONTEXT_SESSION_ID: &str = "aws:ssm:SessionId";
/// Encryption-context key naming the target (protocol.md §6.1).
pub const CONTEXT_TARGET_ID: &str = "aws:ssm:TargetId";

const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);
const BLOB_MAGIC: &[u8; 4] = b"SBX1";

/// Where a session stands, with DescribeSessions' spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Started; no data channel opened yet.
    Connecting,
    /// A data channel consumed a token.
    Connected,
    /// The data channel went away; the session can be resumed.
    Disconnected,
    /// Ended by TerminateSession or by the agent.
    Terminated,
    /// Ended by an error.
    Failed,
}

impl SessionStatus {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "Connecting",
            Self::Connected => "Connected",
            Self::Disconnected => "Disconnected",
            Self::Terminated => "Terminated",
            Self::Failed => "Failed",
        }
    }

    /// Whether DescribeSessions lists it under `State=Active` (otherwise `History`).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Connecting | Self::Connected | Self::Disconnected
        )
    }
}

/// Everything known about one session; what the data-channel half needs to serve it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// `<owner>-<17 hex>`.
    pub session_id: String,
    /// The instance id given to StartSession.
    pub target: String,
    /// The document the session runs.
    pub document: Document,
    /// StartSession `Parameters`.
    pub parameters: BTreeMap<String, Vec<String>>,
    /// StartSession `Reason`.
    pub reason: Option<String>,
    /// The identity that started it.
    pub owner: Identity,
    /// The owner's ARN (DescribeSessions `Owner`).
    pub owner_arn: String,
    /// Current status.
    pub status: SessionStatus,
    /// Start time.
    pub start: SystemTime,
    /// End time, once ended.
    pub end: Option<SystemTime>,
    /// The agent version of the target at start (selects basic or mux port forwarding).
    pub agent_version: String,
}

/// Why a data-channel token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No session with that id.
    #[error("no such session")]
    UnknownSession,
    /// The session has ended.
    #[error("the session has ended")]
    SessionEnded,
    /// The token was never issued for this session.
    #[error("the token is not valid for this session")]
    Invalid,
    /// The token was already used once.
    #[error("the token was already used")]
    AlreadyUsed,
    /// The token expired before use.
    #[error("the token has expired")]
    Expired,
}

/// Why a KMS operation failed, with the AWS error code it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// The key id, ARN or alias names no key (`NotFoundException`).
    #[error("{0}")]
    NotFound(String),
    /// The blob is not ours or the context does not match (`InvalidCiphertextException`).
    #[error("invalid ciphertext")]
    InvalidCiphertext,
    /// The encryption context does not name a live session of the caller on its target
    /// (`AccessDeniedException`, as a key-policy condition would deny it).
    #[error("the encryption context does not match an active session")]
    ContextMismatch,
    /// A bad parameter (`ValidationException`).
    #[error("{0}")]
    Validation(String),
    /// The OS random source failed.
    #[error("no randomness available")]
    Random,
}

/// Result of GenerateDataKey.
#[derive(Debug)]
pub struct DataKey {
    /// The key's ARN.
    pub key_arn: String,
    /// The data key in clear.
    pub plaintext: Vec<u8>,
    /// The data key encrypted under the key, bound to the context.
    pub ciphertext_blob: Vec<u8>,
}

#[derive(Debug)]
struct TokenRecord {
    digest: [u8; 32],
    expires: Instant,
    used: bool,
}

#[derive(Debug)]
struct SessionRecord {
    info: SessionInfo,
    tokens: Vec<TokenRecord>,
    cancel: CancellationToken,
}

#[derive(Debug, Default)]
struct Sessions {
    list: Vec<SessionRecord>,
    index: HashMap<String, usize>,
}

#[derive(Debug)]
struct Inner {
    account: &'static str,
    region: String,
    addr: SocketAddr,
    world: RwLock<World>,
    sessions: Mutex<Sessions>,
    token_ttl: Mutex<Duration>,
    faults: Mutex<Faults>,
    master_key: [u8; 32],
    fault_counters: FaultCounters,
    timeouts: Mutex<TimeoutOverrides>,
    pacing: Mutex<AgentPacing>,
    /// Serving HTTPS and `wss://` (`ssmtui sandbox --tls`).
    tls: std::sync::atomic::AtomicBool,
    /// Temporary credentials from AssumeRole: access key id -> identity and expiry.
    temporary: Mutex<HashMap<String, (&'static Identity, Instant)>>,
    /// How long AssumeRole's credentials last.
    credential_ttl: Mutex<Duration>,
    /// AssumeRole calls answered.
    assumed: std::sync::atomic::AtomicU64,
    paths: DataPaths,
    agents: SessionTasks,
    /// Test aid: plaintext copies of issued tokens, kept only while recording is on (see
    /// [`SandboxState::record_issued_tokens`]); normally only digests exist.
    issued: Mutex<Option<Vec<Secret>>>,
    /// CloudWatch Logs.
    logs: Mutex<super::transcripts::LogStore>,
}

/// How the sandbox agent feeds the data channel.
///
/// The real amazon-ssm-agent reads at most 1024 bytes from a shell's pty or a port session's
/// smux pipe, sends them as one message and sleeps 1 ms before reading again (its shell also
/// waits a second before its first read): about 0.6 MB/s per session, whatever the client
/// does. [`AgentPacing::Real`] does the same; [`AgentPacing::Off`] sends whatever is ready,
/// for tests that move hundreds of MiB and for measuring the client's own ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AgentPacing {
    /// Like the real agent.
    #[default]
    Real,
    /// As fast as the session allows.
    Off,
}

impl AgentPacing {
    /// The pause after each message, if any.
    pub fn pause(self) -> Option<std::time::Duration> {
        match self {
            Self::Real => Some(std::time::Duration::from_millis(1)),
            Self::Off => None,
        }
    }
}

/// Where the data-channel half keeps files.
#[derive(Debug, Clone)]
pub struct DataPaths {
    /// The directory standing in for the S3 bucket of session transcripts.
    pub bucket: std::path::PathBuf,
    /// Parent of the per-instance home directories shells start in.
    pub homes: std::path::PathBuf,
    /// The agent's per-session working files (a shell's output before it is uploaded).
    pub orchestration: std::path::PathBuf,
    /// The temporary directory these live in, removed when the last holder is gone: that is
    /// after the sandbox's state, whose last users include a finished shell's reader thread
    /// writing its transcript.
    pub scratch: Option<Arc<tempfile::TempDir>>,
}

/// Replacements for the documents' `idleSessionTimeout` / `maxSessionDuration` (minutes are
/// long for tests). `None` keeps the document's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutOverrides {
    /// Idle timeout for every new session.
    pub idle: Option<Duration>,
    /// Maximum duration for every new session.
    pub max_duration: Option<Duration>,
    /// smux keepalive timing (instead of 10 s / 30 s) for port sessions whose client version
    /// leaves the agent's keepalive on.
    pub mux_keepalive: Option<crate::protocol::mux::Keepalive>,
}

/// A handle on the sandbox's shared state.
#[derive(Debug, Clone)]
pub struct SandboxState {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `N` bytes from the OS random source.
pub(crate) fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).ok()?;
    Some(buf)
}

/// Seconds since the epoch as the JSON protocols send timestamps.
pub(crate) fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl SandboxState {
    pub(crate) fn new(
        world: World,
        region: String,
        addr: SocketAddr,
        paths: DataPaths,
    ) -> Option<Self> {
        Some(Self {
            inner: Arc::new(Inner {
                account: world.account,
                region,
                addr,
                world: RwLock::new(world),
                sessions: Mutex::new(Sessions::default()),
                token_ttl: Mutex::new(DEFAULT_TOKEN_TTL),
                faults: Mutex::new(Faults::default()),
                master_key: random_bytes::<32>()?,
                fault_counters: FaultCounters::default(),
                timeouts: Mutex::new(TimeoutOverrides::default()),
                pacing: Mutex::new(AgentPacing::default()),
                tls: std::sync::atomic::AtomicBool::new(false),
                temporary: Mutex::new(HashMap::new()),
                credential_ttl: Mutex::new(Duration::from_secs(3600)),
                assumed: std::sync::atomic::AtomicU64::new(0),
                paths,
                agents: SessionTasks::default(),
                issued: Mutex::new(None),
                logs: Mutex::new(super::transcripts::LogStore::default()),
            }),
        })
    }

    /// The sandbox's CloudWatch Logs (session transcripts streamed or uploaded there).
    pub fn logs(&self) -> MutexGuard<'_, super::transcripts::LogStore> {
        lock(&self.inner.logs)
    }

    /// The region the sandbox answers for.
    pub fn region(&self) -> &str {
        &self.inner.region
    }

    /// The account the sandbox answers for.
    pub fn account(&self) -> &'static str {
        self.inner.account
    }

    /// The index of that account among [`super::identity::ACCOUNT_IDS`].
    pub fn account_index(&self) -> usize {
        super::identity::ACCOUNT_IDS
            .iter()
            .position(|a| *a == self.inner.account)
            .unwrap_or(0)
    }

    /// The identity a long-term access key id selects in this account.
    pub fn identity(&self, key: &str) -> Option<&'static Identity> {
        super::identity::by_access_key_in(self.account_index(), key)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The websocket URL of a session's data channel on the same listener.
    pub fn stream_url(&self, session_id: &str) -> String {
        format!(
            "{}://{}/v1/data-channel/{session_id}?role=publish_subscribe",
            if self.is_tls() { "wss" } else { "ws" },
            self.inner.addr
        )
    }

    /// Read access to the world.
    pub fn world(&self) -> RwLockReadGuard<'_, World> {
        self.inner
            .world
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Write access to the world (tests flip instances; the agent half may too).
    pub fn world_mut(&self) -> RwLockWriteGuard<'_, World> {
        self.inner
            .world
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets an instance's agent ping status; false if there is no such instance.
    pub fn set_ping_status(&self, instance_id: &str, ping: PingStatus) -> bool {
        self.world_mut()
            .instance_mut(instance_id)
            .map(|i| i.ping = ping)
            .is_some()
    }

    /// Sets an instance's EC2 state (a stopped instance's agent is ConnectionLost too).
    pub fn set_instance_state(&self, instance_id: &str, state: InstanceState) -> bool {
        self.world_mut()
            .instance_mut(instance_id)
            .map(|i| {
                i.state = state;
                i.ping = match state {
                    InstanceState::Running => PingStatus::Online,
                    InstanceState::Stopped => PingStatus::ConnectionLost,
                };
            })
            .is_some()
    }

    /// How long newly issued tokens stay valid.
    pub fn set_token_ttl(&self, ttl: Duration) {
        *lock(&self.inner.token_ttl) = ttl;
    }

    /// A copy of the fault switches.
    pub fn faults(&self) -> Faults {
        lock(&self.inner.faults).clone()
    }

    /// How much later API calls are answered (fault `api-latency-ms`).
    pub fn api_latency(&self) -> Option<Duration> {
        lock(&self.inner.faults).api_latency
    }

    /// Replaces the fault switches. Side effects happen now: `token_ttl` becomes the token
    /// lifetime and every `connection_lost` instance goes ConnectionLost (counted).
    pub fn set_faults(&self, faults: Faults) {
        if let Some(ttl) = faults.token_ttl {
            self.set_token_ttl(ttl);
        }
        for id in &faults.connection_lost {
            if self.set_ping_status(id, PingStatus::ConnectionLost) {
                self.record_fault(FaultKind::ConnectionLost, id);
            } else {
                tracing::warn!(instance = %id, "fault connection-lost names no instance");
            }
        }
        *lock(&self.inner.faults) = faults;
    }

    /// Counts (and logs) one applied fault.
    pub fn record_fault(&self, kind: FaultKind, session_id: &str) {
        self.inner.fault_counters.record(kind, session_id);
    }

    pub(crate) fn fault_counters(&self) -> &FaultCounters {
        &self.inner.fault_counters
    }

    /// How many faults of each kind have been applied so far.
    pub fn fault_counts(&self) -> FaultCounts {
        self.inner.fault_counters.snapshot()
    }

    /// Overrides the documents' idle timeout and maximum duration for sessions whose data
    /// channel opens from now on (tests use seconds where documents say minutes).
    pub fn set_timeout_overrides(&self, overrides: TimeoutOverrides) {
        *lock(&self.inner.timeouts) = overrides;
    }

    /// The current overrides.
    pub fn timeout_overrides(&self) -> TimeoutOverrides {
        *lock(&self.inner.timeouts)
    }

    /// Sets the agent's pacing for sessions whose data channel opens from now on.
    pub fn set_pacing(&self, pacing: AgentPacing) {
        *lock(&self.inner.pacing) = pacing;
    }

    /// How long the credentials AssumeRole issues last (AWS: an hour by default; tests make
    /// them expire in seconds, so clients must refresh them while sessions run).
    pub fn set_credential_ttl(&self, ttl: Duration) {
        *lock(&self.inner.credential_ttl) = ttl;
    }

    /// Issues temporary credentials for `who`: the access key id and the expiry.
    pub(crate) fn issue_temporary(&self, who: &'static Identity) -> Option<(String, Duration)> {
        let id = random_bytes::<8>()?;
        let key = format!(
            "ASIA{}",
            id.iter().map(|b| format!("{b:02X}")).collect::<String>()
        );
        let ttl = *lock(&self.inner.credential_ttl);
        let mut temporary = lock(&self.inner.temporary);
        let now = Instant::now();
        temporary.retain(|_, (_, expires)| *expires + Duration::from_secs(600) > now);
        temporary.insert(key.clone(), (who, now + ttl));
        self.inner
            .assumed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some((key, ttl))
    }

    /// The identity behind a temporary access key id: `Some(Ok)` while valid, `Some(Err(()))`
    /// once expired, `None` for a key never issued.
    pub(crate) fn temporary_identity(&self, key: &str) -> Option<Result<&'static Identity, ()>> {
        let temporary = lock(&self.inner.temporary);
        let (who, expires) = temporary.get(key)?;
        Some(if Instant::now() < *expires {
            Ok(*who)
        } else {
            Err(())
        })
    }

    /// How many times AssumeRole has issued credentials.
    pub fn assume_role_count(&self) -> u64 {
        self.inner
            .assumed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Says the listener speaks TLS: stream URLs are `wss://`.
    pub(crate) fn set_tls(&self, tls: bool) {
        self.inner
            .tls
            .store(tls, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.inner.tls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The agent's pacing.
    pub fn pacing(&self) -> AgentPacing {
        *lock(&self.inner.pacing)
    }

    /// Where transcripts and shell homes live.
    pub fn data_paths(&self) -> &DataPaths {
        &self.inner.paths
    }

    pub(crate) fn agents(&self) -> &SessionTasks {
        &self.inner.agents
    }

    /// Every session, oldest first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        lock(&self.inner.sessions)
            .list
            .iter()
            .map(|r| r.info.clone())
            .collect()
    }

    /// One session.
    pub fn session(&self, session_id: &str) -> Option<SessionInfo> {
        let s = lock(&self.inner.sessions);
        s.index.get(session_id).map(|&i| s.list[i].info.clone())
    }

    /// Cancelled when the session ends (TerminateSession or [`Self::end_session`]); the data
    /// channel task selects on it to close the websocket.
    pub fn session_cancelled(&self, session_id: &str) -> Option<CancellationToken> {
        let s = lock(&self.inner.sessions);
        s.index.get(session_id).map(|&i| s.list[i].cancel.clone())
    }

    /// Records a new session and issues its first token.
    pub(crate) fn create_session(&self, info: SessionInfo) -> Option<Secret> {
        let (token, record) = self.new_token()?;
        let id = info.session_id.clone();
        let mut s = lock(&self.inner.sessions);
        let n = s.list.len();
        s.list.push(SessionRecord {
            info,
            tokens: vec![record],
            cancel: CancellationToken::new(),
        });
        s.index.insert(id, n);
        Some(token)
    }

    /// Issues a fresh token for a live session (ResumeSession). `None` if it has ended.
    pub(crate) fn reissue_token(&self, session_id: &str) -> Option<Secret> {
        let (token, record) = self.new_token()?;
        let mut s = lock(&self.inner.sessions);
        let i = *s.index.get(session_id)?;
        let rec = &mut s.list[i];
        if !rec.info.status.is_active() {
            return None;
        }
        rec.tokens.push(record);
        Some(token)
    }

    fn new_token(&self) -> Option<(Secret, TokenRecord)> {
        let bytes = random_bytes::<64>()?;
        let token = base64::engine::general_purpose::STANDARD.encode(bytes);
        let ttl = if self.faults().expire_tokens_on_issue {
            self.record_fault(FaultKind::ExpiredToken, "");
            Duration::ZERO
        } else {
            *lock(&self.inner.token_ttl)
        };
        let record = TokenRecord {
            digest: Sha256::digest(token.as_bytes()).into(),
            expires: Instant::now() + ttl,
            used: false,
        };
        if let Some(issued) = lock(&self.inner.issued).as_mut() {
            issued.push(Secret::new(token.clone()));
        }
        Some((Secret::new(token), record))
    }

    /// Test aid: start (or stop) keeping plaintext copies of the tokens issued from now on, so
    /// a test can prove a client never exposes them (argv, environment, logs). Off by default:
    /// the sandbox otherwise keeps only digests, like a service should.
    pub fn record_issued_tokens(&self, on: bool) {
        *lock(&self.inner.issued) = on.then(Vec::new);
    }

    /// The tokens issued while recording was on.
    pub fn issued_tokens(&self) -> Vec<Secret> {
        lock(&self.inner.issued).clone().unwrap_or_default()
    }

    /// Checks a data-channel token and burns it. On success the session is `Connected`.
    pub fn validate_and_consume_token(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<SessionInfo, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        let mut s = lock(&self.inner.sessions);
        let i = *s.index.get(session_id).ok_or(TokenError::UnknownSession)?;
        let rec = &mut s.list[i];
        if !rec.info.status.is_active() {
            return Err(TokenError::SessionEnded);
        }
        let tok = rec
            .tokens
            .iter_mut()
            .find(|t| t.digest == digest)
            .ok_or(TokenError::Invalid)?;
        if tok.used {
            return Err(TokenError::AlreadyUsed);
        }
        if now >= tok.expires {
            return Err(TokenError::Expired);
        }
        tok.used = true;
        rec.info.status = SessionStatus::Connected;
        Ok(rec.info.clone())
    }

    /// Makes every outstanding token of a session expired (fault injection and tests).
    pub fn expire_tokens(&self, session_id: &str) {
        let now = Instant::now();
        let mut s = lock(&self.inner.sessions);
        if let Some(&i) = s.index.get(session_id) {
            for t in &mut s.list[i].tokens {
                t.expires = now;
            }
        }
    }

    /// Marks a live session Disconnected (its data channel dropped; it may be resumed).
    pub fn mark_disconnected(&self, session_id: &str) {
        let mut s = lock(&self.inner.sessions);
        if let Some(&i) = s.index.get(session_id) {
            let info = &mut s.list[i].info;
            if info.status.is_active() {
                info.status = SessionStatus::Disconnected;
            }
        }
    }

    /// Ends a session (`Terminated` or `Failed`), burns its tokens and cancels its channel.
    /// Ending an ended session changes nothing. Returns false if there is no such session.
    pub fn end_session(&self, session_id: &str, status: SessionStatus) -> bool {
        let mut s = lock(&self.inner.sessions);
        let Some(&i) = s.index.get(session_id) else {
            return false;
        };
        let rec = &mut s.list[i];
        if rec.info.status.is_active() {
            rec.info.status = if status.is_active() {
                SessionStatus::Terminated
            } else {
                status
            };
            rec.info.end = Some(SystemTime::now());
            for t in &mut rec.tokens {
                t.used = true;
            }
            rec.cancel.cancel();
        }
        true
    }

    /// Resolves a KMS key id, key ARN, alias name or alias ARN to the key id.
    pub fn resolve_key(&self, key: &str) -> Result<&'static str, KmsError> {
        let region = self.region();
        for (id, alias) in [
            (SESSION_KEY_ID, SESSION_KEY_ALIAS),
            (GENERAL_KEY_ID, GENERAL_KEY_ALIAS),
        ] {
            let alias_arn = format!("arn:aws:kms:{region}:{}:{alias}", self.account());
            if key == id
                || key == key_arn(self.account(), region, id)
                || key == alias
                || key == alias_arn
            {
                return Ok(id);
            }
        }
        Err(KmsError::NotFound(format!(
            "Key '{}' does not exist",
            if key.starts_with("arn:") {
                key.to_owned()
            } else {
                key_arn(self.account(), region, key)
            }
        )))
    }

    /// kms:GenerateDataKey. For the session key, the context must name a live session of
    /// `caller` and that session's target, as the sandbox key policy demands.
    pub fn kms_generate_data_key(
        &self,
        caller: &Identity,
        key: &str,
        bytes: usize,
        context: &BTreeMap<String, String>,
    ) -> Result<DataKey, KmsError> {
        let key_id = self.resolve_key(key)?;
        if !(1..=1024).contains(&bytes) {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value '{bytes}' at 'numberOfBytes' failed to satisfy constraint: Member must have value less than or equal to 1024"
            )));
        }
        if key_id == SESSION_KEY_ID {
            let sid = context.get(CONTEXT_SESSION_ID);
            let target = context.get(CONTEXT_TARGET_ID);
            let ok = match (sid, target) {
                (Some(sid), Some(target)) => self.session(sid).is_some_and(|s| {
                    s.status.is_active() && &s.target == target && s.owner.name == caller.name
                }),
                _ => false,
            };
            if !ok {
                return Err(KmsError::ContextMismatch);
            }
        }
        let mut plaintext = vec![0u8; bytes];
        getrandom::fill(&mut plaintext).map_err(|_| KmsError::Random)?;
        let ciphertext_blob = self.seal(key_id, &plaintext, context)?;
        Ok(DataKey {
            key_arn: key_arn(self.account(), self.region(), key_id),
            plaintext,
            ciphertext_blob,
        })
    }

    /// kms:Decrypt: returns (key ARN, plaintext). The context must equal the one the blob was
    /// made with; `key`, if given, must name the key the blob belongs to.
    pub fn kms_decrypt(
        &self,
        blob: &[u8],
        key: Option<&str>,
        context: &BTreeMap<String, String>,
    ) -> Result<(String, Vec<u8>), KmsError> {
        if blob.len() < BLOB_MAGIC.len() + 1 + 12 + 16 || &blob[..4] != BLOB_MAGIC {
            return Err(KmsError::InvalidCiphertext);
        }
        let key_id = match blob[4] {
            0 => SESSION_KEY_ID,
            1 => GENERAL_KEY_ID,
            _ => return Err(KmsError::InvalidCiphertext),
        };
        if let Some(k) = key
            && self.resolve_key(k)? != key_id
        {
            return Err(KmsError::InvalidCiphertext);
        }
        let cipher = self.cipher(key_id)?;
        let nonce = Nonce::from_slice(&blob[5..17]);
        let aad = canonical_context(key_id, context);
        let plaintext = cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &blob[17..],
                    aad: &aad,
                },
            )
            .map_err(|_| KmsError::InvalidCiphertext)?;
        Ok((key_arn(self.account(), self.region(), key_id), plaintext))
    }

    fn cipher(&self, key_id: &str) -> Result<Aes256Gcm, KmsError> {
        // One key per KMS key, derived from the sandbox's random master key.
        let mut h = Sha256::new();
        h.update(self.inner.master_key);
        h.update(key_id.as_bytes());
        Aes256Gcm::new_from_slice(&h.finalize()).map_err(|_| KmsError::InvalidCiphertext)
    }

    fn seal(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, KmsError> {
        let nonce = random_bytes::<12>().ok_or(KmsError::Random)?;
        let aad = canonical_context(key_id, context);
        let ct = self
            .cipher(key_id)?
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| KmsError::InvalidCiphertext)?;
        let mut blob = Vec::with_capacity(17 + ct.len());
        blob.extend_from_slice(BLOB_MAGIC);
        blob.push(u8::from(key_id != SESSION_KEY_ID));
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        Ok(blob)
    }
}

/// The associated data binding a blob to its key and context: key id, then the context as JSON
/// with sorted keys (a BTreeMap serialises in order, so equal maps give equal bytes).
fn canonical_context(key_id: &str, context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut aad = key_id.as_bytes().to_vec();
    aad.push(0);
    aad.extend_from_slice(
        serde_json::to_string(context)
            .unwrap_or_default()
            .as_bytes(),
    );
    aad
}
