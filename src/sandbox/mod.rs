//! The sandbox: an in-process emulation of the AWS APIs ssmtui calls, on one loopback HTTP
//! listener, reached by the real AWS SDK clients through the standard endpoint override
//! (`AWS_ENDPOINT_URL`, or `endpoint_url` on a client config).
//!
//! One `POST /` route serves EC2 and STS (query protocol, XML) and SSM and KMS (JSON 1.1); see
//! [`http`] for how a request finds its service and identity. The world (instances, documents,
//! keys) is generated from a seed ([`world`]); who may do what is decided by the seeded
//! identities ([`identity`]); sessions, their single-use tokens and the KMS keys live in the
//! shared [`SandboxState`], which the data-channel half reads through
//! [`SandboxState::validate_and_consume_token`] and [`SandboxState::kms_decrypt`].
//!
//! The StreamUrl StartSession returns is
//! `ws://<addr>/v1/data-channel/<SessionId>?role=publish_subscribe` on this same listener;
//! [`datachannel`] accepts it and hands each session to its [`agent`] task: a real pty shell
//! for shell documents, real loopback TCP for port documents, with KMS encryption, idle and
//! maximum-duration timeouts and transcripts in a local "bucket" directory. [`faults`] injects
//! drops, duplicates, reordering, delays, stalled acknowledgements and agent restarts.
//!
//! Not emulated: SigV4 signature checks, every API not listed in the submodules, real IAM policy
//! evaluation, and anything outside loopback.

pub mod agent;
mod datachannel;
mod ec2;
pub mod faults;
pub mod fleet;
mod http;
pub mod identity;
mod kms;
mod logs;
mod s3;
pub mod ssm;
mod state;
mod sts;
mod tasks;
pub mod tls;
pub mod transcripts;
mod wire;
pub mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use faults::{FaultCounts, FaultKind, FaultSpecError, Faults};
pub use identity::{ACCOUNT_ID, IDENTITIES, Identity, SECRET_ACCESS_KEY};
pub use state::{
    AgentPacing, CONTEXT_SESSION_ID, CONTEXT_TARGET_ID, DataKey, DataPaths, KmsError, SandboxState,
    SessionInfo, SessionStatus, TimeoutOverrides, TokenError,
};
pub use world::{Document, Instance, InstanceState, PingStatus, PlatformType, World};

/// Default number of instances in the world.
pub const DEFAULT_INSTANCES: usize = 40;
/// Default world seed.
pub const DEFAULT_SEED: u64 = 1;
/// Default region.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How to start a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// World seed.
    pub seed: u64,
    /// Number of instances.
    pub instances: usize,
    /// A world file to load instead of generating (not supported yet; must be `None`).
    pub world_file: Option<PathBuf>,
    /// The region the sandbox answers for.
    pub region: String,
    /// The account it answers for, as an index into [`identity::ACCOUNT_IDS`] (0: the
    /// single sandbox's account).
    pub account: usize,
    /// The directory standing in for the S3 bucket: session transcripts go here, as
    /// `<s3KeyPrefix><SessionId>.log`. `None`: `ssmtui-sandbox-<port>-XXXX/bucket` in the temp dir,
    /// removed when the sandbox stops.
    pub bucket_dir: Option<PathBuf>,
    /// Parent of the per-instance home directories shells start in. `None`:
    /// `ssmtui-sandbox-<port>-XXXX/home` in the temp dir, removed when the sandbox stops.
    pub homes_dir: Option<PathBuf>,
    /// Faults to inject from the start.
    pub faults: Faults,
    /// How fast the agent feeds the data channel: like the real agent (the default), or as
    /// fast as it can.
    pub pacing: AgentPacing,
    /// Serve HTTPS and `wss://` with a CA kept in this directory ([`tls::SandboxCa`]);
    /// `None`: plain HTTP and `ws://`.
    pub tls_dir: Option<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: DEFAULT_SEED,
            instances: DEFAULT_INSTANCES,
            world_file: None,
            region: DEFAULT_REGION.to_owned(),
            account: 0,
            bucket_dir: None,
            homes_dir: None,
            faults: Faults::default(),
            pacing: AgentPacing::default(),
            tls_dir: None,
        }
    }
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Binding the listener failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The OS random source failed (the KMS master key needs it).
    #[error("no randomness available for the sandbox keys")]
    Random,
    /// The temp directory for the bucket, homes and agent files could not be made.
    #[error("cannot create the sandbox's directory in the temp dir")]
    Scratch {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate authority could not be loaded or made.
    #[error("cannot set up TLS in {dir}")]
    Tls {
        /// The CA's directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// More accounts than a fleet sandbox has.
    #[error("the sandbox serves at most {max} accounts, not {asked}")]
    TooManyAccounts {
        /// The number asked for.
        asked: usize,
        /// The most there can be.
        max: usize,
    },
    /// World files are not supported yet.
    #[error("loading a world from a file is not supported yet")]
    WorldFileUnsupported,
}

/// Entry point: `Sandbox::start(config)`.
#[derive(Debug)]
pub struct Sandbox;

impl Sandbox {
    /// Binds the listener, generates the world and starts serving on the current runtime.
    pub async fn start(config: SandboxConfig) -> Result<RunningSandbox, SandboxError> {
        if config.world_file.is_some() {
            return Err(SandboxError::WorldFileUnsupported);
        }
        let Some(&account) = identity::ACCOUNT_IDS.get(config.account) else {
            return Err(SandboxError::TooManyAccounts {
                asked: config.account + 1,
                max: identity::MAX_ACCOUNTS,
            });
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: config.listen,
            source,
        })?;
        let world = World::generate_in(account, config.seed, config.instances, &config.region);
        // A directory of its own, removed when the sandbox stops: a port is reused by later
        // sandboxes, and a bucket must not show an earlier one's transcripts.
        let scratch = tempfile::Builder::new()
            .prefix(&format!("ssmtui-sandbox-{}-", addr.port()))
            .tempdir()
            .map_err(|source| SandboxError::Scratch { source })?;
        let scratch_dir = scratch.path().to_path_buf();
        let paths = DataPaths {
            bucket: config
                .bucket_dir
                .unwrap_or_else(|| scratch_dir.join("bucket")),
            homes: config.homes_dir.unwrap_or_else(|| scratch_dir.join("home")),
            orchestration: scratch_dir.join("orchestration"),
            scratch: Some(std::sync::Arc::new(scratch)),
        };
        let tls = match &config.tls_dir {
            Some(dir) => {
                let fail = |source| SandboxError::Tls {
                    dir: dir.clone(),
                    source,
                };
                let ca = tls::SandboxCa::load_or_create(dir).map_err(fail)?;
                Some((ca.cert_path(), ca.server_config().map_err(fail)?))
            }
            None => None,
        };
        let state =
            SandboxState::new(world, config.region, addr, paths).ok_or(SandboxError::Random)?;
        state.set_tls(tls.is_some());
        state.set_faults(config.faults);
        state.set_pacing(config.pacing);
        let app = router(state.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let ca_bundle = tls.as_ref().map(|(path, _)| path.clone());
        let task = match tls {
            Some((_, config)) => tokio::spawn(serve_tls(listener, app, config, stop_rx)),
            None => tokio::spawn(serve_plain(listener, app, stop_rx)),
        };
        tracing::info!(%addr, tls = ca_bundle.is_some(), "sandbox listening");
        Ok(RunningSandbox {
            addr,
            state,
            ca_bundle,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// Without TCP_NODELAY a small frame (a keystroke's echo, an ack) waits behind the previous
/// unacknowledged segment until the peer's delayed ACK fires, ~40 ms on Linux: `ssmtui bench`
/// measured every echo at that. The client already disables Nagle.
fn no_delay(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on a sandbox connection");
    }
}

pub(crate) async fn serve_plain(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: oneshot::Receiver<()>,
) {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| no_delay(tcp));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stop.await;
        })
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "sandbox listener stopped with an error");
    }
}

/// HTTPS and `wss://`: TLS on each accepted connection, then HTTP/1.1 with upgrades (the
/// websockets). Accepting stops at `stop`; open connections end with their sessions.
pub(crate) async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
    mut stop: oneshot::Receiver<()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let tcp = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        no_delay(&tcp);
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "TLS handshake with a client failed");
                    return;
                }
            };
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "a TLS connection ended with an error");
            }
        });
    }
}

/// The routes of the sandbox listener: the AWS APIs on `POST /` and the data channel.
pub fn router(state: SandboxState) -> Router {
    Router::new()
        .route("/", post(http::handle))
        .route("/v1/data-channel/{session_id}", get(datachannel::handle))
        // S3, path-style: the transcript bucket.
        .route("/{bucket}", get(s3::list))
        // The SDKs list a path-style bucket as `/{bucket}/?list-type=2`.
        .route("/{bucket}/", get(s3::list))
        .route("/{bucket}/{*key}", get(s3::object).head(s3::object))
        .with_state(state)
}

/// A sandbox serving in the background; stops on [`RunningSandbox::shutdown`] or when dropped.
#[derive(Debug)]
pub struct RunningSandbox {
    addr: SocketAddr,
    state: SandboxState,
    /// The CA certificate clients must trust, when serving TLS.
    ca_bundle: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningSandbox {
    /// `http://127.0.0.1:PORT` (`https://` with TLS), for `AWS_ENDPOINT_URL` or a client's
    /// `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        let scheme = if self.ca_bundle.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA certificate to trust (`AWS_CA_BUNDLE`) when serving TLS.
    pub fn ca_bundle(&self) -> Option<&std::path::Path> {
        self.ca_bundle.as_deref()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (world, sessions, tokens, faults).
    pub fn state(&self) -> &SandboxState {
        &self.state
    }

    /// Environment variables that point an AWS SDK or the AWS CLI at this sandbox as `identity`.
    pub fn env_exports(&self, identity: &Identity) -> Vec<(String, String)> {
        let region = self.state.region().to_owned();
        [
            ("AWS_ENDPOINT_URL", self.endpoint_url()),
            ("AWS_ACCESS_KEY_ID", identity.access_key_id()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
            ("AWS_REGION", region.clone()),
            // The AWS CLI v1 and older SDKs read only this one.
            ("AWS_DEFAULT_REGION", region),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(
            self.ca_bundle
                .iter()
                .map(|p| ("AWS_CA_BUNDLE".to_owned(), p.display().to_string())),
        )
        .collect()
    }

    /// Stops accepting, ends every session (shells are killed, connections closed), lets
    /// in-flight requests finish, and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.state
            .agents()
            .shutdown(std::time::Duration::from_secs(5))
            .await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.state.agents().cancel_all();
    }
}
