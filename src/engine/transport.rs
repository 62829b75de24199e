//! Opening the data-channel websocket.
//!
//! The stream URL from StartSession is used verbatim. TLS (`wss://`) is required unless the
//! host is a loopback address — the only place a plain `ws://` URL is legitimate is a sandbox
//! on this machine, and a token sent in clear over a real network would be a leak. Server
//! certificates are checked against the webpki roots by rustls. Nagle is off: keystrokes are
//! small and latency matters more than packet count.

use std::net::IpAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::EngineError;

/// The websocket type the engine drives.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

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

/// Whether `host` (as in a URL, IPv6 possibly bracketed) is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Opens the websocket (no data is sent yet).
pub async fn connect(url: &str) -> Result<WsStream, EngineError> {
    validate_stream_url(url)?;
    let fut = tokio_tungstenite::connect_async_with_config(url, None, true);
    match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
        Ok(Ok((ws, _response))) => Ok(ws),
        // The error text of tungstenite never includes the URL's query, but we still do not
        // echo the URL: it is not secret, yet it is long and says nothing useful to the user.
        Ok(Err(e)) => Err(EngineError::Connect(e.to_string())),
        Err(_) => Err(EngineError::Connect(format!(
            "no websocket handshake within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
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
