//! What a port forward is, independent of how it runs: the `[BIND:]LOCAL:[HOST:]REMOTE` spec,
//! the AWS documents it needs, and the state and counters a forward reports.
//!
//! A leaf shared by the engine (which runs forwards), the app and its views (which show them)
//! and the CLI (which parses specs from arguments), so none of them depends on another for
//! these types.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::error::{ErrorKind, UserError};

/// The AWS document forwarding to a port on the instance itself.
pub const DOC_PORT: &str = "AWS-StartPortForwardingSession";
/// The AWS document forwarding to a host reached through the instance.
pub const DOC_REMOTE_HOST: &str = "AWS-StartPortForwardingSessionToRemoteHost";

/// `[BIND:]LOCAL:[HOST:]REMOTE`, like ssh `-L`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Local address to listen on (default 127.0.0.1).
    pub bind: IpAddr,
    /// Local port; 0 picks a free one.
    pub local_port: u16,
    /// Host behind the instance; `None` means the instance itself.
    pub host: Option<String>,
    /// Remote port.
    pub remote_port: u16,
}

impl ForwardSpec {
    /// Parses a spec. Forms: `L:R`, `L:HOST:R`, `BIND:L:R`, `BIND:L:HOST:R`; an IPv6 BIND is
    /// written in brackets (`[::1]:8080:80`).
    pub fn parse(text: &str) -> Result<Self, UserError> {
        let bad = |why: &str| {
            UserError::new(
                ErrorKind::Usage,
                format!("\"{text}\" is not a forward spec: {why}"),
            )
            .hint("write [BIND:]LOCAL:[HOST:]REMOTE, e.g. 8080:80, 5432:db.internal:5432 or 0:22")
        };
        let (bind, rest): (Option<IpAddr>, &str) = if let Some(after) = text.strip_prefix('[') {
            let (addr, rest) = after
                .split_once("]:")
                .ok_or_else(|| bad("unclosed [address]"))?;
            let ip = addr
                .parse()
                .map_err(|_| bad("the bind address is not an IP address"))?;
            (Some(ip), rest)
        } else {
            (None, text)
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let port = |s: &str, what: &str| -> Result<u16, UserError> {
            s.parse::<u16>().map_err(|_| {
                bad(&format!(
                    "the {what} port \"{s}\" is not a number from 0 to 65535"
                ))
            })
        };
        let (bind, local, host, remote) = match (bind, parts.as_slice()) {
            (b, [l, r]) => (b, port(l, "local")?, None, port(r, "remote")?),
            (None, [a, b, c]) => match (a.parse::<IpAddr>(), b.parse::<u16>()) {
                // BIND:LOCAL:REMOTE when the first part is an address and the second a port.
                (Ok(ip), Ok(l)) if !a.chars().all(|c| c.is_ascii_digit()) => {
                    (Some(ip), l, None, port(c, "remote")?)
                }
                _ => (
                    None,
                    port(a, "local")?,
                    Some((*b).to_owned()),
                    port(c, "remote")?,
                ),
            },
            (Some(b), [l, h, r]) => (
                Some(b),
                port(l, "local")?,
                Some((*h).to_owned()),
                port(r, "remote")?,
            ),
            (None, [b, l, h, r]) => (
                Some(
                    b.parse()
                        .map_err(|_| bad("the bind address is not an IP address"))?,
                ),
                port(l, "local")?,
                Some((*h).to_owned()),
                port(r, "remote")?,
            ),
            _ => return Err(bad("wrong number of parts")),
        };
        if remote == 0 {
            return Err(bad("the remote port cannot be 0"));
        }
        if host.as_deref().is_some_and(str::is_empty) {
            return Err(bad("the host is empty"));
        }
        Ok(Self {
            bind: bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            local_port: local,
            host,
            remote_port: remote,
        })
    }

    /// The AWS document this spec needs.
    pub fn document(&self) -> &'static str {
        if self.host.is_some() {
            DOC_REMOTE_HOST
        } else {
            DOC_PORT
        }
    }

    /// `host:port` or `port` (the instance itself), for messages.
    pub fn remote_label(&self) -> String {
        match &self.host {
            Some(h) => format!("{h}:{}", self.remote_port),
            None => self.remote_port.to_string(),
        }
    }

    /// What to tell the user when the agent reports `ConnectToPortError` for this spec.
    pub fn connect_error(&self) -> String {
        match &self.host {
            Some(h) => format!("the agent could not connect to {h}:{}", self.remote_port),
            None => format!(
                "the agent could not connect to port {} on the instance",
                self.remote_port
            ),
        }
    }

    /// Whether listening exposes the forward to other machines (anything but loopback).
    pub fn exposes_beyond_loopback(&self) -> bool {
        !self.bind.is_loopback()
    }
}

impl fmt::Display for ForwardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.bind.is_loopback() || self.bind != IpAddr::V4(Ipv4Addr::LOCALHOST) {
            match self.bind {
                IpAddr::V6(ip) => write!(f, "[{ip}]:")?,
                IpAddr::V4(ip) => write!(f, "{ip}:")?,
            }
        }
        write!(f, "{}:{}", self.local_port, self.remote_label())
    }
}

/// Where a forward stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardState {
    /// Starting its first session.
    Starting,
    /// Session up, no connection open.
    Listening,
    /// Session up, connections open.
    Connected,
    /// The websocket dropped; the engine is reconnecting.
    Reconnecting,
    /// The session ended; a new one starts with the next connection.
    Idle,
    /// Stopped by the user.
    Stopped,
    /// Failed for good.
    Failed(String),
}

impl fmt::Display for ForwardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Starting => f.write_str("starting"),
            Self::Listening => f.write_str("listening"),
            Self::Connected => f.write_str("connected"),
            Self::Reconnecting => f.write_str("reconnecting"),
            Self::Idle => f.write_str("idle (session ended)"),
            Self::Stopped => f.write_str("stopped"),
            Self::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// The most sessions one forward may stripe its connections over (`--sessions`,
/// `sessions =`): each is a session against the account's limits and in the audit log.
pub const MAX_SESSIONS: usize = 8;

/// A copy of the counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSnapshot {
    /// State.
    pub state: ForwardState,
    /// Bytes remote → local.
    pub bytes_in: u64,
    /// Bytes local → remote.
    pub bytes_out: u64,
    /// Open connections.
    pub connections_open: u64,
    /// Accepted connections.
    pub connections_total: u64,
    /// Reconnects.
    pub reconnects: u64,
    /// Sessions started.
    pub sessions: u64,
    /// Sessions open now (more than one only for a striped forward).
    pub sessions_live: u64,
    /// Connections the agent could not make to the remote port.
    pub connect_errors: u64,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// Current session id.
    pub session_id: Option<String>,
    /// Time since the forward started.
    pub uptime: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> ForwardSpec {
        ForwardSpec::parse(s).unwrap()
    }

    #[test]
    fn parses_every_form() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            spec("8080:80"),
            ForwardSpec {
                bind: lo,
                local_port: 8080,
                host: None,
                remote_port: 80
            }
        );
        assert_eq!(
            spec("5432:db.internal:5432"),
            ForwardSpec {
                bind: lo,
                local_port: 5432,
                host: Some("db.internal".into()),
                remote_port: 5432
            }
        );
        assert_eq!(spec("0:22").local_port, 0);
        let any = spec("0.0.0.0:8080:80");
        assert_eq!(any.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(any.host, None);
        assert!(any.exposes_beyond_loopback());
        let four = spec("127.0.0.2:8080:10.0.0.5:80");
        assert_eq!(four.host.as_deref(), Some("10.0.0.5"));
        assert_eq!(four.bind, "127.0.0.2".parse::<IpAddr>().unwrap());
        let v6 = spec("[::1]:8080:80");
        assert_eq!(v6.bind, "::1".parse::<IpAddr>().unwrap());
        // A numeric host with three parts is LOCAL:HOST:REMOTE, not BIND:LOCAL:REMOTE.
        assert_eq!(spec("8080:10.0.0.5:80").host.as_deref(), Some("10.0.0.5"));
        for bad in [
            "80",
            "a:80",
            "8080:0",
            "8080::80",
            "1:2:3:4:5",
            "[::1:80:80",
            "70000:80",
        ] {
            assert!(ForwardSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn documents_follow_the_spec() {
        assert_eq!(spec("1:2").document(), DOC_PORT);
        assert_eq!(spec("1:h:2").document(), DOC_REMOTE_HOST);
        assert_eq!(spec("8080:db:5432").to_string(), "8080:db:5432");
        assert_eq!(spec("0.0.0.0:8080:80").to_string(), "0.0.0.0:8080:80");
    }
}
