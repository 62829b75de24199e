//! Which proxy a destination goes through, and opening a connection through it.
//!
//! The rules are curl's, as most tools read them: `HTTPS_PROXY` for `https://`/`wss://`
//! destinations, `HTTP_PROXY` for `http://`/`ws://` ones, `ALL_PROXY` for both, each in
//! either case, and `NO_PROXY` (host suffixes, IP addresses and CIDR blocks, `*`). `[aws] proxy`
//! in the config replaces the three proxy variables (`NO_PROXY` still applies). Loopback
//! destinations go direct unless `proxy_loopback` is set. Routing is hyper-util's matcher; the
//! tunnels are hyper-util's CONNECT and SOCKS5 connectors over our own dialer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::NetError;
use super::trust::Trust;

/// A byte stream to a destination, direct or through a proxy, before TLS to the destination.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed [`Io`].
pub type BoxIo = Box<dyn Io>;

/// The kinds of proxy we speak to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyScheme {
    /// `http://`: CONNECT in clear to the proxy.
    Http,
    /// `https://`: TLS to the proxy, then CONNECT.
    Https,
    /// `socks5://`: the destination's name is resolved here.
    Socks5,
    /// `socks5h://`: the proxy resolves the name.
    Socks5h,
}

/// A proxy URL, validated. Its password is never displayed.
#[derive(Clone)]
pub struct ProxyUrl {
    scheme: ProxyScheme,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    /// Which setting named it.
    origin: &'static str,
}

impl ProxyScheme {
    /// As written in a URL.
    fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Socks5 => "socks5",
            Self::Socks5h => "socks5h",
        }
    }
}

/// `host` as in a URL: an IPv6 address in brackets.
fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.name())?;
        if let Some(user) = &self.user {
            write!(f, "{user}:***@")?;
        }
        write!(f, "{}:{}", url_host(&self.host), self.port)
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self} from {})", self.origin)
    }
}

impl ProxyUrl {
    /// Parses a proxy URL as curl reads one (no scheme means `http://`).
    pub fn parse(text: &str, origin: &'static str) -> Result<Self, NetError> {
        let text = text.trim();
        let bad = |reason: &str| NetError::BadProxy {
            shown: redact(text),
            origin,
            reason: reason.to_owned(),
        };
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let uri: Uri = with_scheme.parse().map_err(|_| bad("it is not a URL"))?;
        let scheme = match uri.scheme_str().unwrap_or("http") {
            "http" => ProxyScheme::Http,
            "https" => ProxyScheme::Https,
            "socks5" => ProxyScheme::Socks5,
            "socks5h" => ProxyScheme::Socks5h,
            other => {
                return Err(bad(&format!(
                    "the scheme \"{other}\" is not one of http, https, socks5, socks5h"
                )));
            }
        };
        let authority = uri.authority().ok_or_else(|| bad("it names no host"))?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("it names no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(match scheme {
            ProxyScheme::Http => 80,
            ProxyScheme::Https => 443,
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => 1080,
        });
        let (user, password) = match authority.as_str().rsplit_once('@') {
            Some((info, _)) => {
                let (u, p) = info.split_once(':').unwrap_or((info, ""));
                (Some(decode(u)), Some(decode(p)))
            }
            None => (None, None),
        };
        Ok(Self {
            scheme,
            host,
            port,
            user,
            password,
            origin,
        })
    }

    /// Its kind.
    pub fn scheme(&self) -> ProxyScheme {
        self.scheme
    }

    /// Which setting named it.
    pub fn origin(&self) -> &'static str {
        self.origin
    }

    /// Whether the URL carries credentials.
    pub fn has_credentials(&self) -> bool {
        self.user.is_some()
    }

    /// The URL with credentials, for the SDK's proxy settings (never displayed).
    fn full_url(&self) -> String {
        let scheme = self.scheme.name();
        let host = url_host(&self.host);
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => format!(
                "{scheme}://{}:{}@{host}:{}",
                encode(u),
                encode(p),
                self.port
            ),
            _ => format!("{scheme}://{host}:{}", self.port),
        }
    }

    /// The proxy's own address as a URI for hyper-util's connectors (no credentials).
    fn address_uri(&self) -> Uri {
        let host = url_host(&self.host);
        let scheme = if self.scheme == ProxyScheme::Https {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}:{}", self.port)
            .parse()
            .unwrap_or_else(|_| Uri::from_static("http://invalid"))
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A URL as given, with any password replaced (for messages about a URL we could not parse).
fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return redact(&format!("http://{text}"))
            .trim_start_matches("http://")
            .to_owned();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let shown = match authority.rsplit_once('@') {
        Some((info, host)) => {
            let user = info.split_once(':').map_or(info, |(u, _)| u);
            format!("{user}:***@{host}")
        }
        None => authority.to_owned(),
    };
    if path.is_empty() {
        format!("{scheme}://{shown}")
    } else {
        format!("{scheme}://{shown}/{path}")
    }
}

/// Where a connection goes.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// Straight to the destination.
    Direct,
    /// Through this proxy.
    Via(&'a ProxyUrl),
}

/// The proxy rules in force.
#[derive(Clone)]
pub struct ProxyRules {
    /// For `https://`/`wss://` destinations.
    https: Option<ProxyUrl>,
    /// For `http://`/`ws://` destinations.
    http: Option<ProxyUrl>,
    /// `NO_PROXY` as given.
    no_proxy: Option<String>,
    /// Route loopback destinations through the proxy too.
    loopback: bool,
    matcher: Arc<Matcher>,
}

impl fmt::Debug for ProxyRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyRules")
            .field("https", &self.https)
            .field("http", &self.http)
            .field("no_proxy", &self.no_proxy)
            .field("loopback", &self.loopback)
            .finish()
    }
}

/// The first non-empty variable among `names`, with its name.
fn first_env(names: &[&'static str]) -> Option<(&'static str, String)> {
    names.iter().find_map(|n| {
        std::env::var(n)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (*n, v))
    })
}

impl ProxyRules {
    /// No proxy at all.
    pub fn none() -> Self {
        Self::build(None, None, None, false)
    }

    /// `config` (`[aws] proxy`) for every destination, else the environment's variables.
    pub fn resolve(config: Option<&str>, loopback: bool) -> Result<Self, NetError> {
        let no_proxy = first_env(&["NO_PROXY", "no_proxy"]).map(|(_, v)| v);
        if let Some(url) = config.filter(|c| !c.trim().is_empty()) {
            let p = ProxyUrl::parse(url, "[aws] proxy")?;
            return Ok(Self::build(Some(p.clone()), Some(p), no_proxy, loopback));
        }
        let all = first_env(&["ALL_PROXY", "all_proxy"]);
        let https = first_env(&["HTTPS_PROXY", "https_proxy"]).or_else(|| all.clone());
        let http = first_env(&["HTTP_PROXY", "http_proxy"]).or(all);
        let parse = |v: Option<(&'static str, String)>| {
            v.map(|(name, url)| ProxyUrl::parse(&url, name)).transpose()
        };
        Ok(Self::build(parse(https)?, parse(http)?, no_proxy, loopback))
    }

    fn build(
        https: Option<ProxyUrl>,
        http: Option<ProxyUrl>,
        no_proxy: Option<String>,
        loopback: bool,
    ) -> Self {
        let mut b = Matcher::builder();
        if let Some(p) = &https {
            b = b.https(p.full_url());
        }
        if let Some(p) = &http {
            b = b.http(p.full_url());
        }
        if let Some(no) = &no_proxy {
            b = b.no(no.clone());
        }
        Self {
            https,
            http,
            no_proxy,
            loopback,
            matcher: Arc::new(b.build()),
        }
    }

    /// Whether any proxy is configured.
    pub fn is_set(&self) -> bool {
        self.https.is_some() || self.http.is_some()
    }

    /// The route to `host` for a TLS (`https`/`wss`) or clear (`http`/`ws`) destination.
    pub fn route(&self, tls: bool, host: &str) -> Route<'_> {
        let proxy = if tls { &self.https } else { &self.http };
        let Some(proxy) = proxy else {
            return Route::Direct;
        };
        if !self.loopback && is_loopback_host(host) {
            return Route::Direct;
        }
        let shown = url_host(host.trim_start_matches('[').trim_end_matches(']'));
        let probe: Result<Uri, _> =
            format!("{}://{shown}/", if tls { "https" } else { "http" }).parse();
        match probe {
            Ok(uri) if self.matcher.intercept(&uri).is_some() => Route::Via(proxy),
            Ok(_) => Route::Direct,
            // A host that makes no URI cannot be matched by NO_PROXY either.
            Err(_) => Route::Via(proxy),
        }
    }

    /// "none", or "http://proxy:3128 (HTTPS_PROXY); NO_PROXY=…".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match (&self.https, &self.http) {
            (None, None) => return "none".to_owned(),
            (Some(a), Some(b)) if a.full_url() == b.full_url() => {
                parts.push(format!("{a} ({})", a.origin));
            }
            (a, b) => {
                if let Some(a) = a {
                    parts.push(format!("{a} for https ({})", a.origin));
                }
                if let Some(b) = b {
                    parts.push(format!("{b} for http ({})", b.origin));
                }
            }
        }
        if let Some(no) = &self.no_proxy {
            parts.push(format!("NO_PROXY={no}"));
        }
        if self.loopback {
            parts.push("loopback included".to_owned());
        }
        parts.join("; ")
    }

    /// The proxy the SDK's own client is given for the API calls (AWS endpoints are https://).
    pub fn api_proxy(&self) -> Option<&ProxyUrl> {
        self.https.as_ref().or(self.http.as_ref())
    }

    /// Whether a SOCKS proxy is among the rules: the SDK's own HTTP client cannot use one, so
    /// the API calls then go through ours (`aws::http`), which dials by [`Self::open`].
    pub fn uses_socks(&self) -> bool {
        [&self.https, &self.http]
            .into_iter()
            .flatten()
            .any(|p| matches!(p.scheme, ProxyScheme::Socks5 | ProxyScheme::Socks5h))
    }

    /// The AWS SDK's proxy settings, by the same rules as [`Self::route`], `NO_PROXY` and the
    /// loopback rule included. `None` when no proxy is set; an error for a SOCKS proxy, which
    /// the SDK's HTTP client cannot use (see [`Self::uses_socks`]).
    pub fn sdk_config(
        &self,
    ) -> Result<Option<aws_smithy_http_client::proxy::ProxyConfig>, NetError> {
        let Some(p) = self.api_proxy() else {
            return Ok(None);
        };
        if matches!(p.scheme, ProxyScheme::Socks5 | ProxyScheme::Socks5h) {
            return Err(NetError::BadProxy {
                shown: p.to_string(),
                origin: p.origin,
                reason:
                    "the AWS API calls cannot go through a SOCKS proxy (only the data channel can)"
                        .to_owned(),
            });
        }
        let mut no: Vec<String> = self.no_proxy.iter().cloned().collect();
        if !self.loopback {
            no.push("localhost,127.0.0.0/8,::1".to_owned());
        }
        // The same destinations as the data channel: HTTPS_PROXY for https:// endpoints,
        // HTTP_PROXY for http:// ones (a sandbox); the SDK's client takes one rule, and AWS
        // endpoints are https://, so a different HTTP_PROXY is left out.
        use aws_smithy_http_client::proxy::ProxyConfig;
        let config = match (&self.https, &self.http) {
            (Some(h), Some(p)) if h.full_url() == p.full_url() => ProxyConfig::all(h.full_url()),
            (Some(h), _) => ProxyConfig::https(h.full_url()),
            (None, _) => ProxyConfig::http(p.full_url()),
        }
        .map_err(|e| NetError::BadProxy {
            shown: p.to_string(),
            origin: p.origin,
            reason: e.to_string(),
        })?;
        Ok(Some(config.no_proxy(no.join(","))))
    }

    /// A byte stream to `host:port`, through the proxy when the rules say so; TLS to the
    /// destination (when `tls`) is the caller's.
    pub async fn open(
        &self,
        trust: &Trust,
        tls: bool,
        host: &str,
        port: u16,
    ) -> Result<BoxIo, NetError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match self.route(tls, bare) {
            Route::Direct => Ok(Box::new(dial(bare, port).await.map_err(|e| {
                NetError::Connect {
                    destination: format!("{bare}:{port}"),
                    reason: e.to_string(),
                }
            })?)),
            Route::Via(proxy) => through(proxy, trust, bare, port).await,
        }
    }
}

/// Whether `host` (as in a URL, IPv6 possibly bracketed) is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn dial(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect((host, port)).await?;
    // Keystrokes are small and latency matters more than packet count.
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

async fn through(
    proxy: &ProxyUrl,
    trust: &Trust,
    host: &str,
    port: u16,
) -> Result<BoxIo, NetError> {
    let shown = proxy.to_string();
    let destination = format!("{}:{port}", url_host(host));
    let dst: Uri = format!("http://{destination}")
        .parse()
        .map_err(|_| NetError::Connect {
            destination: destination.clone(),
            reason: "not a valid host name".to_owned(),
        })?;
    let dialer = Dialer {
        tls: if proxy.scheme == ProxyScheme::Https {
            Some(trust.tls_config()?)
        } else {
            None
        },
    };
    match proxy.scheme {
        ProxyScheme::Http | ProxyScheme::Https => {
            let mut tunnel = Tunnel::new(proxy.address_uri(), dialer);
            if let (Some(u), Some(p)) = (&proxy.user, &proxy.password) {
                tunnel = tunnel.with_auth(basic_auth(u, p));
            }
            let io = tower_service::Service::call(&mut tunnel, dst)
                .await
                .map_err(|e| tunnel_error(&e, proxy, &destination))?;
            Ok(io.into_inner())
        }
        ProxyScheme::Socks5 | ProxyScheme::Socks5h => {
            let mut socks = SocksV5::new(proxy.address_uri(), dialer)
                .local_dns(proxy.scheme == ProxyScheme::Socks5);
            if let (Some(u), Some(p)) = (&proxy.user, &proxy.password) {
                socks = socks.with_auth(u.clone(), p.clone());
            }
            let io = tower_service::Service::call(&mut socks, dst)
                .await
                .map_err(|e| {
                    let text = e.to_string();
                    if text.contains("connect") && text.contains("underlying") {
                        NetError::ProxyUnreachable {
                            proxy: shown.clone(),
                            reason: crate::error::display_chain(&e),
                        }
                    } else if text.contains("io error during SOCKS handshake") {
                        // hyper-util's error type is private; its texts are stable.
                        NetError::SocksClosed {
                            proxy: shown.clone(),
                            sent: proxy.user.is_some(),
                        }
                    } else if text.to_ascii_lowercase().contains("auth") {
                        NetError::ProxyAuth {
                            proxy: shown.clone(),
                            sent: proxy.user.is_some(),
                        }
                    } else {
                        NetError::ProxyRefused {
                            proxy: shown.clone(),
                            destination: destination.clone(),
                            detail: Some(crate::error::display_chain(&e)),
                        }
                    }
                })?;
            Ok(io.into_inner())
        }
    }
}

/// hyper-util's tunnel error (its type is not exported; its texts are stable).
fn tunnel_error(
    e: &(dyn std::error::Error + 'static),
    proxy: &ProxyUrl,
    destination: &str,
) -> NetError {
    let shown = proxy.to_string();
    let text = e.to_string();
    if text.contains("proxy authorization required") {
        NetError::ProxyAuth {
            proxy: shown,
            sent: proxy.user.is_some(),
        }
    } else if text.contains("failed to create underlying connection") {
        NetError::ProxyUnreachable {
            proxy: shown,
            reason: e.source().map_or(text.clone(), crate::error::display_chain),
        }
    } else if text.ends_with("unsuccessful") {
        NetError::ProxyRefused {
            proxy: shown,
            destination: destination.to_owned(),
            detail: None,
        }
    } else {
        NetError::ProxyRefused {
            proxy: shown,
            destination: destination.to_owned(),
            detail: Some(crate::error::display_chain(e)),
        }
    }
}

fn basic_auth(user: &str, password: &str) -> http::HeaderValue {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = http::HeaderValue::from_str(&format!("Basic {token}"))
        .unwrap_or_else(|_| http::HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// Opens the connection to the proxy itself (TLS for an `https://` proxy), for hyper-util's
/// CONNECT and SOCKS5 connectors.
#[derive(Clone)]
struct Dialer {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<BoxIo>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<BoxIo>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, proxy: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = proxy
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = proxy.port_u16().unwrap_or(80);
            let tcp = dial(&host, port).await?;
            let io: BoxIo = match tls {
                None => Box::new(tcp),
                Some(config) => {
                    let name = rustls::pki_types::ServerName::try_from(host.clone())
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                    let stream = tokio_rustls::TlsConnector::from(config)
                        .connect(name, tcp)
                        .await?;
                    Box::new(stream)
                }
            };
            Ok(TokioIo::new(io))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_like_curl_and_never_show_the_password() {
        let p = ProxyUrl::parse("http://alice:s%40cret@proxy.corp:3128", "HTTPS_PROXY").unwrap();
        assert_eq!(p.to_string(), "http://alice:***@proxy.corp:3128");
        assert_eq!(p.password.as_deref(), Some("s@cret"));
        assert!(!format!("{p:?}").contains("cret"));
        assert_eq!(
            ProxyUrl::parse("proxy.corp:8080", "x").unwrap().to_string(),
            "http://proxy.corp:8080"
        );
        assert_eq!(
            ProxyUrl::parse("socks5h://[::1]", "x").unwrap().to_string(),
            "socks5h://[::1]:1080"
        );
        assert_eq!(
            ProxyUrl::parse("https://p.corp", "x").unwrap().to_string(),
            "https://p.corp:443"
        );
        let e = ProxyUrl::parse("ftp://bob:hunter2@p:21", "[aws] proxy")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ftp://bob:***@p:21") && !e.contains("hunter2"),
            "{e}"
        );
        assert!(e.contains("(from [aws] proxy)"), "{e}");
    }

    #[test]
    fn no_proxy_and_loopback_decide_the_route() {
        let p = ProxyUrl::parse("http://proxy.corp:3128", "HTTPS_PROXY").unwrap();
        let rules = ProxyRules::build(
            Some(p.clone()),
            None,
            Some(".internal.corp,10.0.0.0/8,vpce.example.com".to_owned()),
            false,
        );
        let via = |tls, host| matches!(rules.route(tls, host), Route::Via(_));
        assert!(via(true, "ssmmessages.eu-west-1.amazonaws.com"));
        assert!(
            !via(false, "ssmmessages.eu-west-1.amazonaws.com"),
            "no http proxy set"
        );
        assert!(!via(true, "db.internal.corp"));
        assert!(!via(true, "10.1.2.3"));
        assert!(via(true, "11.1.2.3"));
        assert!(!via(true, "a.vpce.example.com"));
        assert!(!via(true, "127.0.0.1"));
        assert!(!via(true, "[::1]"));
        assert!(!via(true, "localhost"));

        let everything = ProxyRules::build(Some(p.clone()), None, None, true);
        assert!(matches!(everything.route(true, "127.0.0.1"), Route::Via(_)));
        let star = ProxyRules::build(Some(p), None, Some("*".to_owned()), true);
        assert!(matches!(star.route(true, "example.com"), Route::Direct));
    }

    #[test]
    fn describe_says_where_each_proxy_came_from() {
        assert_eq!(ProxyRules::none().describe(), "none");
        let p = ProxyUrl::parse("http://u:p@proxy:3128", "[aws] proxy").unwrap();
        let rules = ProxyRules::build(Some(p.clone()), Some(p), Some("corp".to_owned()), false);
        assert_eq!(
            rules.describe(),
            "http://u:***@proxy:3128 ([aws] proxy); NO_PROXY=corp"
        );
    }

    /// A minimal SOCKS5 server (RFC 1928, user/password per RFC 1929) for one connection:
    /// what it was asked for, then a plain relay.
    async fn socks5_once(
        auth: Option<(&'static str, &'static str)>,
    ) -> (u16, tokio::sync::oneshot::Receiver<String>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 2];
            c.read_exact(&mut head).await.unwrap();
            let mut methods = vec![0u8; head[1] as usize];
            c.read_exact(&mut methods).await.unwrap();
            let mut seen = String::new();
            if let Some((user, pass)) = auth {
                assert!(methods.contains(&2), "user/password offered");
                c.write_all(&[5, 2]).await.unwrap();
                let mut v = [0u8; 2];
                c.read_exact(&mut v).await.unwrap();
                let mut u = vec![0u8; v[1] as usize];
                c.read_exact(&mut u).await.unwrap();
                let mut pl = [0u8; 1];
                c.read_exact(&mut pl).await.unwrap();
                let mut p = vec![0u8; pl[0] as usize];
                c.read_exact(&mut p).await.unwrap();
                let ok = u == user.as_bytes() && p == pass.as_bytes();
                c.write_all(&[1, if ok { 0 } else { 1 }]).await.unwrap();
                if !ok {
                    let _ = tx.send("bad credentials".to_owned());
                    return;
                }
                seen.push_str("authenticated ");
            } else {
                c.write_all(&[5, 0]).await.unwrap();
            }
            let mut req = [0u8; 4];
            c.read_exact(&mut req).await.unwrap();
            let host = match req[3] {
                1 => {
                    let mut ip = [0u8; 4];
                    c.read_exact(&mut ip).await.unwrap();
                    std::net::Ipv4Addr::from(ip).to_string()
                }
                3 => {
                    let mut n = [0u8; 1];
                    c.read_exact(&mut n).await.unwrap();
                    let mut name = vec![0u8; n[0] as usize];
                    c.read_exact(&mut name).await.unwrap();
                    format!("name {}", String::from_utf8(name).unwrap())
                }
                other => panic!("address type {other}"),
            };
            let p = c.read_u16().await.unwrap();
            seen.push_str(&format!("{host}:{p}"));
            let target = if host.starts_with("name ") {
                "127.0.0.1"
            } else {
                host.as_str()
            };
            let mut up = TcpStream::connect((target, p)).await.unwrap();
            c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
            let _ = tx.send(seen);
            let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
        });
        (port, rx)
    }

    async fn echo_once() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let (mut r, mut w) = c.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        port
    }

    #[tokio::test]
    async fn socks5_tunnels_carry_bytes_with_and_without_credentials() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        for (scheme, auth, host, expect) in [
            ("socks5", None, "127.0.0.1", "127.0.0.1"),
            (
                "socks5h",
                Some(("carol", "p@ss")),
                "localhost",
                "authenticated name localhost",
            ),
        ] {
            let echo = echo_once().await;
            let (port, seen) = socks5_once(auth).await;
            let creds = auth.map_or(String::new(), |(u, p)| format!("{u}:{}@", encode(p)));
            let proxy =
                ProxyUrl::parse(&format!("{scheme}://{creds}127.0.0.1:{port}"), "ALL_PROXY")
                    .unwrap();
            let rules = ProxyRules::build(Some(proxy.clone()), Some(proxy), None, true);
            let mut io = rules
                .open(&Trust::system(), false, host, echo)
                .await
                .unwrap();
            io.write_all(b"through socks").await.unwrap();
            let mut back = [0u8; 13];
            io.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"through socks");
            assert_eq!(seen.await.unwrap(), format!("{expect}:{echo}"));
        }
        // Wrong credentials: an error naming the proxy, not the password.
        let (port, _) = socks5_once(Some(("carol", "right"))).await;
        let proxy = ProxyUrl::parse(
            &format!("socks5h://carol:wrong@127.0.0.1:{port}"),
            "ALL_PROXY",
        )
        .unwrap();
        let rules = ProxyRules::build(Some(proxy.clone()), Some(proxy), None, true);
        let e = match rules.open(&Trust::system(), false, "127.0.0.1", 9).await {
            Ok(_) => panic!("wrong credentials were accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains(&format!("socks5h://carol:***@127.0.0.1:{port}")),
            "{e}"
        );
        assert!(!e.contains("wrong"), "{e}");
    }

    #[test]
    fn socks_proxies_are_refused_for_the_sdk_only() {
        let p = ProxyUrl::parse("socks5h://proxy:1080", "ALL_PROXY").unwrap();
        let rules = ProxyRules::build(Some(p.clone()), Some(p), None, false);
        let e = rules.sdk_config().unwrap_err().to_string();
        assert!(e.contains("SOCKS"), "{e}");
        assert!(ProxyRules::none().sdk_config().unwrap().is_none());
        let http = ProxyUrl::parse("http://proxy:3128", "HTTPS_PROXY").unwrap();
        let kind = |rules: ProxyRules| format!("{:?}", rules.sdk_config().unwrap().unwrap());
        // HTTPS_PROXY only: https:// endpoints; HTTP_PROXY only: http:// ones, as for the
        // data channel; the same URL for both: everything.
        let one = |https: bool| {
            let p = Some(http.clone());
            if https {
                ProxyRules::build(p, None, None, false)
            } else {
                ProxyRules::build(None, p, None, false)
            }
        };
        assert!(kind(one(true)).contains("Https {"), "{}", kind(one(true)));
        assert!(kind(one(false)).contains("Http {"), "{}", kind(one(false)));
        let both = ProxyRules::build(Some(http.clone()), Some(http.clone()), None, false);
        assert!(kind(both).contains("All {"));
    }
}
