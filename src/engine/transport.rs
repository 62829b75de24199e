//! Opening the data-channel websocket.
//!
//! The stream URL from StartSession is used verbatim. TLS (`wss://`) is required unless the
//! host is a loopback address — the only place a plain `ws://` URL is legitimate is a sandbox
//! on this machine, and a token sent in clear over a real network would be a leak. The
//! connection follows the session's [`Network`] (proxy, and the system roots plus the CA
//! bundles for rustls), as the API calls do. Nagle is off: keystrokes are small and latency
//! matters more than packet count.

use std::time::Duration;

use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::EngineError;
use crate::net::proxy::BoxIo;
use crate::net::{NetError, Network};

/// The websocket type the engine drives.
pub type WsStream = WebSocketStream<MaybeTlsStream<BoxIo>>;

/// How long the websocket handshake may take (the plugin's dialer uses 45 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

/// Checks the scheme: `wss://` anywhere, `ws://` only to a loopback host.
pub fn validate_stream_url(url: &str) -> Result<(), EngineError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| EngineError::BadStreamUrl("the stream URL is not a valid URL".to_owned()))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("wss") => Ok(()),
        Some("ws") if is_loopback_host(host) => Ok(()),
        Some("ws") => Err(EngineError::BadStreamUrl(format!(
            "refusing an unencrypted ws:// stream URL to the non-loopback host \"{host}\""
        ))),
        _ => Err(EngineError::BadStreamUrl(
            "the stream URL is not a websocket URL".to_owned(),
        )),
    }
}

pub use crate::net::proxy::is_loopback_host;

/// The websocket's buffers. tungstenite's default is 128 KiB each way per connection, for
/// bulk transfer; a data channel carries frames of at most ~1.2 KiB and the session sends
/// them in batches of its window, so 32 KiB each way keeps syscalls few at a quarter of the
/// memory (eight busy forwards: ~1.5 MiB less). tungstenite also zero-fills the read
/// buffer's free space before each read, which against a real agent (one 1 KiB message per
/// read) was a 128 KiB memset per message; 8 KiB measured no better than 32 KiB (bench
/// `paced`, 2026-12-04).
pub fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_BUFFER)
}

/// Bytes of each websocket's read and write buffers.
const WS_BUFFER: usize = 32 * 1024;

/// Opens the websocket (no data is sent yet), through the proxy and with the trust `network`
/// says: the same as the API calls that started the session.
pub async fn connect(network: &Network, url: &str) -> Result<WsStream, EngineError> {
    validate_stream_url(url)?;
    let uri: Uri = url
        .parse()
        .map_err(|_| EngineError::BadStreamUrl("the stream URL is not a valid URL".to_owned()))?;
    let tls = uri.scheme_str() == Some("wss");
    let host = uri.host().unwrap_or_default().to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let open = async {
        let io = network
            .proxy()
            .open(network.trust(), tls, &host, port)
            .await?;
        let connector = if tls {
            Connector::Rustls(network.trust().tls_config()?)
        } else {
            Connector::Plain
        };
        tokio_tungstenite::client_async_tls_with_config(url, io, Some(ws_config()), Some(connector))
            .await
            .map(|(ws, _response)| ws)
            .map_err(|e| handshake_error(&e, &host, network))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
        Ok(result) => result,
        Err(_) => Err(EngineError::Connect(format!(
            "no websocket handshake within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// A failed TLS or websocket handshake. The error text of tungstenite never includes the URL's
/// query, but we still do not echo the URL: it is not secret, yet it is long and says nothing
/// useful to the user.
fn handshake_error(
    e: &tokio_tungstenite::tungstenite::Error,
    host: &str,
    network: &Network,
) -> EngineError {
    let text = crate::error::display_chain(e);
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        return EngineError::Net(NetError::Untrusted {
            host: host.to_owned(),
            reason: text,
            trust: network.trust().describe(),
        });
    }
    EngineError::Connect(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wss_anywhere_ws_only_on_loopback() {
        assert!(
            validate_stream_url(
                "wss://ssmmessages.eu-west-1.amazonaws.com/v1/data-channel/s?role=publish_subscribe"
            )
            .is_ok()
        );
        assert!(validate_stream_url("ws://127.0.0.1:1234/v1/data-channel/s").is_ok());
        assert!(validate_stream_url("ws://127.0.0.2:1234/x").is_ok());
        assert!(validate_stream_url("ws://[::1]:1234/x").is_ok());
        assert!(validate_stream_url("ws://localhost:1234/x").is_ok());
        assert!(validate_stream_url("ws://10.0.0.1:1234/x").is_err());
        assert!(validate_stream_url("ws://example.com/x").is_err());
        assert!(validate_stream_url("https://example.com/x").is_err());
        assert!(validate_stream_url("not a url").is_err());
    }
}
