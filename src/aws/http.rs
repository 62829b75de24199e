//! The SDK's HTTP client over our own dialer, for the networks the SDK's client cannot cross:
//! a SOCKS proxy. Every connection goes where [`ProxyRules::open`](crate::net::ProxyRules::open)
//! says (direct, CONNECT or SOCKS5, by the same `NO_PROXY` and loopback rules as the data
//! channel), then TLS with our trust store for `https://` endpoints; hyper-util's pooled
//! HTTP/1.1 client does the rest. With HTTP(S) proxies or none, the SDK's own client is used.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::net::proxy::BoxIo;
use crate::net::{NetError, Network};

/// An SDK HTTP client whose connections follow `network`.
pub fn client(network: Network) -> SharedHttpClient {
    SharedHttpClient::new(OwnClient {
        network,
        connectors: Arc::new(Mutex::new(Vec::new())),
    })
}

/// One connector (one connection pool) per distinct timeout settings, as the SDK's own
/// client keeps them: every operation of a client asks with the same settings.
#[derive(Clone)]
struct OwnClient {
    network: Network,
    connectors: Arc<Mutex<Vec<(Timeouts, SharedHttpConnector)>>>,
}

type Timeouts = (Option<Duration>, Option<Duration>);

impl fmt::Debug for OwnClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnClient")
            .field("proxy", &self.network.proxy().describe())
            .finish_non_exhaustive()
    }
}

impl HttpClient for OwnClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self
            .connectors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, c)) = connectors.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let dial = Dial {
            network: self.network.clone(),
            connect_timeout: key.0,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(dial);
        let connector = SharedHttpConnector::new(OwnConnector {
            client,
            read_timeout: key.1,
        });
        connectors.push((key, connector.clone()));
        connector
    }
}

struct OwnConnector {
    client: Client<Dial, SdkBody>,
    read_timeout: Option<Duration>,
}

impl fmt::Debug for OwnConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnConnector").finish_non_exhaustive()
    }
}

impl HttpConnector for OwnConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let response = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            // As the SDK's client: the read timeout runs until the response's head arrives.
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, response).await.map_err(|_| {
                    ConnectorError::timeout(
                        format!("no response within {} ms", limit.as_millis()).into(),
                    )
                })?,
                None => response.await,
            }
            .map_err(connector_error)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// hyper-util's error as the SDK's retry rules expect it: a failed connection or a cut one is
/// an I/O error (retried), a timeout a timeout; our [`NetError`] stays in the chain for the
/// caller's message.
fn connector_error(e: hyper_util::client::legacy::Error) -> ConnectorError {
    let timed_out =
        find::<std::io::Error>(&e).is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
    if timed_out {
        ConnectorError::timeout(e.into())
    } else if e.is_connect()
        || find::<std::io::Error>(&e).is_some()
        || find::<hyper::Error>(&e).is_some_and(|h| h.is_closed() || h.is_incomplete_message())
    {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
}

fn find<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Opens a connection to the endpoint by the network's rules, then TLS for `https://`.
#[derive(Clone)]
struct Dial {
    network: Network,
    connect_timeout: Option<Duration>,
}

impl tower_service::Service<Uri> for Dial {
    type Response = Conn;
    type Error = NetError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, NetError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let network = self.network.clone();
        let limit = self.connect_timeout;
        Box::pin(async move {
            let destination = uri
                .authority()
                .map_or_else(String::new, ToString::to_string);
            let open = open(network, uri);
            match limit {
                Some(limit) => tokio::time::timeout(limit, open).await.unwrap_or_else(|_| {
                    Err(NetError::Connect {
                        destination,
                        reason: format!("no connection within {} ms", limit.as_millis()),
                    })
                }),
                None => open.await,
            }
        })
    }
}

async fn open(network: Network, uri: Uri) -> Result<Conn, NetError> {
    let tls = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let io = network
        .proxy()
        .open(network.trust(), tls, &host, port)
        .await?;
    let io: BoxIo = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
            NetError::Connect {
                destination: format!("{host}:{port}"),
                reason: e.to_string(),
            }
        })?;
        let stream = tokio_rustls::TlsConnector::from(network.trust().tls_config()?)
            .connect(name, io)
            .await
            .map_err(|e| {
                // rustls reports a certificate it refuses as invalid data.
                if e.kind() == std::io::ErrorKind::InvalidData {
                    NetError::Untrusted {
                        host: host.clone(),
                        reason: e.to_string(),
                        trust: network.trust().describe(),
                    }
                } else {
                    NetError::Connect {
                        destination: format!("{host}:{port}"),
                        reason: format!("the TLS handshake failed: {e}"),
                    }
                }
            })?;
        Box::new(stream)
    } else {
        Box::new(io)
    };
    Ok(Conn(TokioIo::new(io)))
}

/// A connection as hyper wants it. Proxied or not, it reaches the endpoint itself (a CONNECT
/// or SOCKS tunnel), so requests keep their origin form.
struct Conn(TokioIo<BoxIo>);

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
