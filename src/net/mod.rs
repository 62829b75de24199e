//! How ssmtui reaches AWS from a corporate network: which certificates it trusts and which
//! proxy it goes through. One [`Network`] serves the SDK clients and the data-channel
//! websocket alike, so an API call and the session it starts take the same path.
//!
//! - Trust ([`trust`]): the system's roots, plus `[aws] ca_bundle`, plus `AWS_CA_BUNDLE` or
//!   else the profile's `ca_bundle` (as the AWS CLI reads them).
//! - Proxy ([`proxy`]): `[aws] proxy`, else `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` (either
//!   case) with `NO_PROXY` (curl's rules: suffixes, CIDR blocks, `*`). Loopback destinations
//!   go direct unless `[aws] proxy_loopback = true`. `http://` proxies are reached with
//!   CONNECT (Basic auth from the URL), `https://` proxies over TLS, `socks5://`/`socks5h://`
//!   with the SOCKS5 handshake (the data channel only: the SDK's HTTP client has no SOCKS).
//!
//! Nothing here holds a secret beyond a proxy password from a URL the user gave, which is
//! never displayed ([`proxy::ProxyUrl`] redacts it).

pub mod proxy;
pub mod trust;

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Classified, Classify, ErrorKind};

pub use self::proxy::{ProxyRules, ProxyUrl, Route};
pub use self::trust::{BundleOrigin, Trust};

/// What the configuration says about the network (`[aws] ca_bundle`, `proxy`,
/// `proxy_loopback`); the environment and the profile add the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSettings {
    /// A PEM bundle trusted on top of the system roots.
    pub ca_bundle: Option<PathBuf>,
    /// One proxy for every destination, winning over the environment.
    pub proxy: Option<String>,
    /// Send loopback destinations through the proxy too (tests, a local proxy in front of
    /// the sandbox).
    pub proxy_loopback: bool,
    /// The profile's `ca_bundle` (the caller reads the shared config file).
    pub profile_ca_bundle: Option<PathBuf>,
}

/// The trust and proxy rules every connection to AWS follows. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    trust: Trust,
    proxy: ProxyRules,
}

impl Network {
    /// Resolves the settings against the environment.
    pub fn resolve(settings: &NetSettings) -> Result<Self, NetError> {
        let trust = Trust::resolve(
            settings.ca_bundle.as_deref(),
            settings.profile_ca_bundle.as_deref(),
        )?;
        let proxy = ProxyRules::resolve(settings.proxy.as_deref(), settings.proxy_loopback)?;
        Ok(Self::new(trust, proxy))
    }

    /// Direct connections and the system roots only (the fake API, unit tests).
    pub fn direct() -> Self {
        Self::new(Trust::system(), ProxyRules::none())
    }

    fn new(trust: Trust, proxy: ProxyRules) -> Self {
        Self {
            inner: Arc::new(Inner { trust, proxy }),
        }
    }

    /// Which certificates are trusted.
    pub fn trust(&self) -> &Trust {
        &self.inner.trust
    }

    /// Which proxy, if any, each destination goes through.
    pub fn proxy(&self) -> &ProxyRules {
        &self.inner.proxy
    }
}

/// Why the network settings are unusable, or a connection failed on the way.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    /// A CA bundle named by a setting cannot be used.
    #[error("cannot use the CA bundle {path} (from {origin}): {reason}")]
    Bundle {
        /// The file.
        path: PathBuf,
        /// Which setting named it.
        origin: BundleOrigin,
        /// What is wrong with it.
        reason: String,
    },
    /// A proxy URL cannot be used.
    #[error("cannot use the proxy {shown} (from {origin}): {reason}")]
    BadProxy {
        /// The URL, password redacted.
        shown: String,
        /// Which setting named it.
        origin: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The proxy could not be reached.
    #[error("cannot reach the proxy {proxy}: {reason}")]
    ProxyUnreachable {
        /// The proxy, password redacted.
        proxy: String,
        /// The transport error.
        reason: String,
    },
    /// The proxy wants credentials we do not have, or refused the ones we sent.
    #[error("the proxy {proxy} refused the request: it needs credentials{}", status_407(.proxy))]
    ProxyAuth {
        /// The proxy, password redacted.
        proxy: String,
        /// Whether credentials were sent.
        sent: bool,
    },
    /// A SOCKS proxy hung up during its handshake without saying why: most often one that
    /// wants credentials and does not answer a client offering none, as RFC 1928 would.
    #[error("the SOCKS proxy {proxy} closed the connection during its handshake")]
    SocksClosed {
        /// The proxy, password redacted.
        proxy: String,
        /// Whether credentials were offered.
        sent: bool,
    },
    /// The proxy would not open a tunnel to the destination.
    #[error("the proxy {proxy} refused to connect to {destination}{}", detail_suffix(.detail))]
    ProxyRefused {
        /// The proxy, password redacted.
        proxy: String,
        /// host:port asked for.
        destination: String,
        /// What the proxy said, when it said something.
        detail: Option<String>,
    },
    /// The server's certificate is not signed by anything we trust.
    #[error("the certificate of {host} is not trusted ({reason}); trusted: {trust}")]
    Untrusted {
        /// The server.
        host: String,
        /// What rustls said.
        reason: String,
        /// [`Trust::describe`].
        trust: String,
    },
    /// The TLS configuration could not be built.
    #[error("the TLS configuration cannot be built: {0}")]
    Tls(String),
    /// A direct connection failed.
    #[error("cannot connect to {destination}: {reason}")]
    Connect {
        /// host:port.
        destination: String,
        /// The transport error.
        reason: String,
    },
}

/// HTTP proxies say 407; SOCKS ones have no status code.
fn status_407(proxy: &str) -> &'static str {
    if proxy.starts_with("socks") {
        ""
    } else {
        " (407)"
    }
}

/// `scheme://USER:PASSWORD@HOST:PORT` in the proxy's own scheme, for hints.
fn with_credentials(proxy: &str) -> String {
    let scheme = proxy.split_once("://").map_or("http", |(s, _)| s);
    format!("{scheme}://USER:PASSWORD@HOST:PORT")
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

impl NetError {
    /// What the user can do about it.
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Bundle { origin, .. } => vec![format!(
                "fix the path or the file, or remove {origin}; a bundle is a PEM file of one or more CA certificates"
            )],
            Self::BadProxy { .. } => vec![
                "a proxy URL looks like http://HOST:PORT, http://USER:PASSWORD@HOST:PORT, https://HOST:PORT or socks5h://HOST:PORT"
                    .to_owned(),
            ],
            Self::ProxyUnreachable { .. } => vec![
                "check the proxy's address (HTTPS_PROXY, ALL_PROXY or [aws] proxy), or list the destination in NO_PROXY"
                    .to_owned(),
            ],
            Self::ProxyAuth { sent: false, proxy } => vec![format!(
                "put the credentials in the proxy URL: {} (percent-encode special characters)",
                with_credentials(proxy)
            )],
            Self::ProxyAuth { sent: true, .. } => vec![
                "check the user name and password in the proxy URL (percent-encode special characters)"
                    .to_owned(),
            ],
            Self::SocksClosed { sent: false, proxy } => vec![format!(
                "if it wants credentials, put them in the URL: {} (percent-encode special characters); otherwise check that it speaks SOCKS5",
                with_credentials(proxy)
            )],
            Self::SocksClosed { sent: true, .. } => vec![
                "check the user name and password in the proxy URL, and that it speaks SOCKS5"
                    .to_owned(),
            ],
            Self::ProxyRefused { .. } => vec![
                "the proxy's rules may not allow this host; ask its owners to allow ssmmessages.*.amazonaws.com and the AWS API hosts, or list the destination in NO_PROXY"
                    .to_owned(),
            ],
            Self::Untrusted { .. } => vec![
                "a TLS-inspecting proxy signs with its own CA: add that CA with AWS_CA_BUNDLE=/path/ca.pem (or ca_bundle in the profile, or [aws] ca_bundle)"
                    .to_owned(),
            ],
            Self::Tls(_) => Vec::new(),
            Self::Connect { .. } => vec![
                "check the network; behind a proxy, set HTTPS_PROXY (or [aws] proxy)".to_owned(),
            ],
        }
    }
}

impl Classify for NetError {
    fn classified(&self) -> Classified {
        let kind = match self {
            Self::Bundle { .. } | Self::BadProxy { .. } => ErrorKind::Usage,
            Self::Tls(_) => ErrorKind::Internal,
            Self::ProxyAuth { .. } => ErrorKind::Auth,
            _ => ErrorKind::Network,
        };
        Classified::new(kind, self.hints())
    }
}
