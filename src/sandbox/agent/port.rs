//! Port sessions (§9): real TCP to a loopback target, in smux or basic mode.
//!
//! The target is `portNumber` on 127.0.0.1, or `host` when it is (or resolves to) a loopback
//! address. Anything else is refused: every connection attempt is answered with Flag
//! `ConnectToPortError` and nothing is dialled, so the sandbox can never be used to reach
//! another machine.
//!
//! **Mux mode**: the client's Output bytes feed a smux server ([`Mux`]); each stream the client
//! opens gets its own TCP connection. A failed dial is reported with `ConnectToPortError` and a
//! FIN on the stream. There is **no half-close**, as in the real agent (3.3.1142.0,
//! `handleDataTransfer` over smux v1.5.15): the client's FIN makes us write what it sent, then
//! close the target connection entirely, so whatever the target had not sent yet is lost; the
//! target's end of file becomes our FIN and closes the connection too, after the client's
//! queued bytes are written (later ones are dropped).
//!
//! **Basic mode**: one connection at a time. The first Output after the start (or after a
//! `DisconnectToPort` flag, or after the target closed) dials; the flag closes the connection.
//!
//! Each connection is one task that dials and then writes (fed by a bounded channel), plus a
//! reader task. Readers send on one shared bounded channel that the agent drains only while its
//! session (and the stream's smux buffer) has room, so a slow client slows the target instead
//! of growing memory. Everything stops when the [`Ports`] value is dropped.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::protocol::mux::{Keepalive, Mux, MuxConfig, MuxEvent, Role as MuxRole, StreamId};
use crate::protocol::version::PortMode;

/// How long a dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes per read in basic mode: one message (§7.5).
pub const BASIC_READ: usize = 1024;
/// Bytes per read in mux mode (smux frames them into ≤ 1016-byte PSH frames anyway).
const MUX_READ: usize = 16 * 1024;
/// Most bytes gathered from the connection's queue into one write to the target.
const WRITE_BATCH: usize = 64 * 1024;

/// What a connection task reports.
#[derive(Debug)]
pub enum PortEvent {
    /// Bytes from the target.
    Data {
        /// Stream id (mux) or connection generation (basic).
        conn: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The target closed its side (or reading failed).
    Eof {
        /// Stream id or generation.
        conn: u32,
    },
    /// The target could not be reached.
    DialFailed {
        /// Stream id or generation.
        conn: u32,
        /// Why.
        error: String,
    },
}

/// A write the agent must finish before it takes more input: the connection's channel was full.
#[derive(Debug)]
pub struct BlockedWrite {
    /// The connection's writer.
    pub tx: mpsc::Sender<Vec<u8>>,
    /// The bytes.
    pub data: Vec<u8>,
}

/// What the agent must do after feeding the port workload.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Send Flag `ConnectToPortError` this many times.
    pub connect_errors: usize,
    /// Stop handling input until this write is done.
    pub blocked: Option<BlockedWrite>,
    /// The mux session died; end the session with this reason.
    pub fatal: Option<String>,
}

struct Conn {
    writer: Option<mpsc::Sender<Vec<u8>>>,
}

enum Mode {
    Mux(Box<Mux>),
    Basic { current: Option<u32>, next: u32 },
}

/// The port workload of one session.
pub struct Ports {
    target: Result<SocketAddr, String>,
    mode: Mode,
    conns: HashMap<u32, Conn>,
    events_tx: mpsc::Sender<PortEvent>,
    /// Reports from the connection tasks.
    pub events: mpsc::Receiver<PortEvent>,
    /// Mux mode: target bytes that did not fit the stream's smux buffer yet.
    stash: Option<(u32, Vec<u8>)>,
    cancel: CancellationToken,
    /// The real agent's pause after each read of a target (basic mode).
    pause: Option<Duration>,
    /// Bytes handed to connection writers / received from targets (diagnostics).
    pub bytes_to_target: u64,
    /// Bytes received from targets.
    pub bytes_from_target: u64,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports")
            .field("target", &self.target)
            .field("conns", &self.conns.len())
            .field("bytes_to_target", &self.bytes_to_target)
            .field("bytes_from_target", &self.bytes_from_target)
            .finish_non_exhaustive()
    }
}

/// Resolves the target: `portNumber` on 127.0.0.1, or `host` if it is loopback. The error is a
/// sentence for the log.
pub async fn resolve_target(host: Option<&str>, port: &str) -> Result<SocketAddr, String> {
    let port: u16 = port
        .trim()
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port \"{port}\" is not a port number"))?;
    let host = host.map(str::trim).filter(|h| !h.is_empty());
    let Some(host) = host else {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return if ip.is_loopback() {
            Ok(SocketAddr::new(ip, port))
        } else {
            Err(format!(
                "host \"{host}\" is not a loopback address; the sandbox only connects to this machine's loopback"
            ))
        };
    }
    let addrs = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("host \"{host}\" does not resolve: {e}"))?;
    let mut addrs: Vec<SocketAddr> = addrs.collect();
    // Prefer IPv4 loopback, the address a target server most likely listens on.
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs.into_iter().find(|a| a.ip().is_loopback()).ok_or_else(|| {
        format!("host \"{host}\" does not resolve to a loopback address; the sandbox only connects to this machine's loopback")
    })
}

impl Ports {
    /// A workload for `target` in `mode`, starting at `now_ms`; `pause` paces basic-mode
    /// reads like the real agent; `keepalive_timing` replaces smux's 10 s / 30 s when the
    /// mode has keepalive on (tests).
    pub fn new(
        target: Result<SocketAddr, String>,
        mode: PortMode,
        pause: Option<Duration>,
        keepalive_timing: Option<Keepalive>,
        now_ms: u64,
    ) -> Self {
        let (events_tx, events) = mpsc::channel(16);
        let mode = match mode {
            PortMode::Mux { keepalive } => {
                let mut config = MuxConfig::with_keepalive(keepalive);
                if let (Some(k), Some(timing)) = (config.keepalive.as_mut(), keepalive_timing) {
                    *k = timing;
                }
                Mode::Mux(Box::new(Mux::new(MuxRole::Server, config, now_ms)))
            }
            PortMode::Basic => Mode::Basic {
                current: None,
                next: 1,
            },
        };
        Self {
            target,
            mode,
            conns: HashMap::new(),
            events_tx,
            events,
            stash: None,
            cancel: CancellationToken::new(),
            pause,
            bytes_to_target: 0,
            bytes_from_target: 0,
        }
    }

    /// Whether basic mode is in use.
    pub fn is_basic(&self) -> bool {
        matches!(self.mode, Mode::Basic { .. })
    }

    /// Whether the agent may take the next [`PortEvent`]: in mux mode only when no target
    /// bytes are waiting for smux buffer room; basic mode checks the session's room itself.
    pub fn can_take_event(&self) -> bool {
        self.stash.is_none()
    }

    fn spawn_conn(&mut self, conn: u32) -> Option<mpsc::Sender<Vec<u8>>> {
        let target = self.target.clone().ok()?;
        let (tx, rx) = mpsc::channel(16);
        let reading = if self.is_basic() {
            Reading {
                size: BASIC_READ,
                pause: self.pause,
            }
        } else {
            Reading {
                size: MUX_READ,
                pause: None,
            }
        };
        tokio::spawn(conn_task(
            conn,
            target,
            reading,
            rx,
            self.events_tx.clone(),
            self.cancel.child_token(),
        ));
        self.conns.insert(
            conn,
            Conn {
                writer: Some(tx.clone()),
            },
        );
        Some(tx)
    }

    fn refuse(&self) -> Outcome {
        if let Err(why) = &self.target {
            tracing::info!(reason = %why, "sandbox port connection refused");
        }
        Outcome {
            connect_errors: 1,
            ..Outcome::default()
        }
    }

    /// Client Output (port data or smux bytes).
    pub fn input(&mut self, data: Vec<u8>, now_ms: u64) -> Outcome {
        match &mut self.mode {
            Mode::Mux(mux) => {
                if let Err(e) = mux.handle_incoming(&data, now_ms) {
                    return Outcome {
                        fatal: Some(format!("port forwarding stream error: {e}")),
                        ..Outcome::default()
                    };
                }
                Outcome::default()
            }
            Mode::Basic { current, next } => {
                let conn = match *current {
                    Some(c) => c,
                    None => {
                        let c = *next;
                        *next = next.wrapping_add(1);
                        if self.target.is_err() {
                            return self.refuse();
                        }
                        *current = Some(c);
                        if self.spawn_conn(c).is_none() {
                            return self.refuse();
                        }
                        c
                    }
                };
                self.write_to(conn, data)
            }
        }
    }

    fn write_to(&mut self, conn: u32, data: Vec<u8>) -> Outcome {
        let Some(tx) = self.conns.get(&conn).and_then(|c| c.writer.clone()) else {
            return Outcome::default();
        };
        self.bytes_to_target += data.len() as u64;
        match tx.try_send(data) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Outcome::default(),
            Err(mpsc::error::TrySendError::Full(data)) => Outcome {
                blocked: Some(BlockedWrite { tx, data }),
                ..Outcome::default()
            },
        }
    }

    /// Handles the next smux event, if any. `None` when there was none.
    pub fn next_mux_event(&mut self) -> Option<Outcome> {
        let Mode::Mux(mux) = &mut self.mode else {
            return None;
        };
        let ev = mux.poll_event()?;
        Some(match ev {
            MuxEvent::Opened(id) => {
                if self.target.is_err() || self.spawn_conn(id.0).is_none() {
                    if let Mode::Mux(mux) = &mut self.mode {
                        mux.reset(id);
                    }
                    self.refuse()
                } else {
                    Outcome::default()
                }
            }
            MuxEvent::Data(id, data) => self.write_to(id.0, data),
            MuxEvent::Fin(id) => {
                // Dropping the writer lets the task write what is queued, then close the
                // whole connection (there is no half-close through the agent).
                if let Some(c) = self.conns.get_mut(&id.0) {
                    c.writer = None;
                }
                Outcome::default()
            }
            MuxEvent::Closed(id) => {
                self.conns.remove(&id.0);
                Outcome::default()
            }
            MuxEvent::KeepaliveTimeout => Outcome {
                fatal: Some("the client's smux keepalive timed out".to_owned()),
                ..Outcome::default()
            },
            _ => Outcome::default(),
        })
    }

    /// Client Flag `DisconnectToPort` (basic mode): close the current connection.
    pub fn disconnect(&mut self) {
        if let Mode::Basic { current, .. } = &mut self.mode
            && let Some(c) = current.take()
        {
            // The writer finishes what the client sent before the flag, then shuts down.
            self.conns.remove(&c);
        }
    }

    /// A report from a connection task. Returns bytes for the session (basic mode) and what
    /// else to do.
    pub fn event(&mut self, ev: PortEvent) -> (Option<Vec<u8>>, Outcome) {
        if let PortEvent::Data { data, .. } = &ev {
            self.bytes_from_target += data.len() as u64;
        }
        match (&mut self.mode, ev) {
            (Mode::Basic { current, .. }, PortEvent::Data { conn, data }) => {
                // Data of a connection that was closed by the flag is dropped, as the
                // client has nowhere to put it.
                ((*current == Some(conn)).then_some(data), Outcome::default())
            }
            (Mode::Basic { current, .. }, PortEvent::Eof { conn }) => {
                if *current == Some(conn) {
                    *current = None;
                }
                self.conns.remove(&conn);
                (None, Outcome::default())
            }
            (Mode::Basic { current, .. }, PortEvent::DialFailed { conn, error }) => {
                tracing::info!(%error, "sandbox port dial failed");
                if *current == Some(conn) {
                    *current = None;
                }
                self.conns.remove(&conn);
                (
                    None,
                    Outcome {
                        connect_errors: 1,
                        ..Outcome::default()
                    },
                )
            }
            (Mode::Mux(_), PortEvent::Data { conn, data }) => {
                self.stash = Some((conn, data));
                self.retry_stash();
                (None, Outcome::default())
            }
            (Mode::Mux(mux), PortEvent::Eof { conn }) => {
                // The agent closes the stream and then the whole connection: what the
                // client sends from now on is dropped.
                let _ = mux.close(StreamId(conn));
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.writer = None;
                }
                (None, Outcome::default())
            }
            (Mode::Mux(mux), PortEvent::DialFailed { conn, error }) => {
                tracing::info!(%error, stream = conn, "sandbox port dial failed");
                mux.reset(StreamId(conn));
                self.conns.remove(&conn);
                (
                    None,
                    Outcome {
                        connect_errors: 1,
                        ..Outcome::default()
                    },
                )
            }
        }
    }

    /// Moves stashed target bytes into the stream's smux buffer as room allows.
    fn retry_stash(&mut self) {
        let Mode::Mux(mux) = &mut self.mode else {
            return;
        };
        let Some((conn, data)) = self.stash.take() else {
            return;
        };
        match mux.write(StreamId(conn), &data) {
            Ok(n) if n < data.len() => {
                self.stash = Some((conn, data.get(n..).unwrap_or_default().to_vec()))
            }
            Ok(_) => {}
            // The stream is gone (reset or closed): its bytes have nowhere to go.
            Err(_) => {}
        }
    }

    /// Mux mode: the next bytes for the session (at most `max`), after moving stashed bytes.
    pub fn poll_transmit(&mut self, max: usize) -> Option<Vec<u8>> {
        self.retry_stash();
        let Mode::Mux(mux) = &mut self.mode else {
            return None;
        };
        let out = mux.poll_transmit(max);
        if out.is_some() {
            self.retry_stash();
        }
        out
    }

    /// Mux keepalive deadline.
    pub fn poll_timeout(&self) -> Option<u64> {
        match &self.mode {
            Mode::Mux(mux) => mux.poll_timeout(),
            Mode::Basic { .. } => None,
        }
    }

    /// Runs the mux keepalive.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if let Mode::Mux(mux) = &mut self.mode {
            mux.handle_timeout(now_ms);
        }
    }
}

impl Drop for Ports {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn conn_task(
    conn: u32,
    target: SocketAddr,
    reading: Reading,
    mut rx: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<PortEvent>,
    cancel: CancellationToken,
) {
    let dial = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(target));
    let stream = tokio::select! {
        () = cancel.cancelled() => return,
        r = dial => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = events.send(PortEvent::DialFailed { conn, error: format!("cannot connect to {target}: {e}") }).await;
                return;
            }
            Err(_) => {
                let _ = events.send(PortEvent::DialFailed { conn, error: format!("no answer from {target} within {} s", DIAL_TIMEOUT.as_secs()) }).await;
                return;
            }
        },
    };
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    // The connection is closed as a whole, as the agent's `target.Close()` does: once the
    // writer is done (the client's FIN, the target's end of file, or a failed write), the
    // reader stops too and both halves are dropped. Whatever the target still sends is lost
    // (it sees a reset if it writes on).
    let closed = cancel.child_token();
    tokio::spawn(read_target(
        conn,
        rd,
        reading,
        events,
        cancel.clone(),
        closed.clone(),
    ));
    let _close_on_exit = closed.drop_guard();
    loop {
        let data = tokio::select! {
            () = cancel.cancelled() => return,
            d = rx.recv() => d,
        };
        let Some(mut data) = data else {
            return;
        };
        // Whatever else is queued goes out in the same write (a closed queue still yields
        // what it holds; the next `recv` then ends the loop).
        while data.len() < WRITE_BATCH
            && let Ok(more) = rx.try_recv()
        {
            data.extend_from_slice(&more);
        }
        let written = tokio::select! {
            () = cancel.cancelled() => return,
            r = wr.write_all(&data) => r,
        };
        if written.is_err() {
            return;
        }
    }
}

/// How a connection's reader reads the target.
#[derive(Debug, Clone, Copy)]
struct Reading {
    /// Bytes per read.
    size: usize,
    /// The real agent's pause after each read (basic mode; mux mode paces the session).
    pause: Option<Duration>,
}

/// Reads the target into [`PortEvent`]s until its end of file or until the connection is
/// closed, then reports [`PortEvent::Eof`] (the agent answers it with a FIN). `cancel` is the
/// workload's: once it fires nothing is reported.
async fn read_target(
    conn: u32,
    mut rd: tokio::net::tcp::OwnedReadHalf,
    reading: Reading,
    events: mpsc::Sender<PortEvent>,
    cancel: CancellationToken,
    closed: CancellationToken,
) {
    let mut buf = vec![0u8; reading.size];
    loop {
        let n = tokio::select! {
            biased;
            () = closed.cancelled() => 0,
            r = rd.read(&mut buf) => r.unwrap_or(0),
        };
        let ev = if n == 0 {
            PortEvent::Eof { conn }
        } else {
            PortEvent::Data {
                conn,
                data: buf.get(..n).unwrap_or_default().to_vec(),
            }
        };
        let sent = tokio::select! {
            () = cancel.cancelled() => return,
            r = events.send(ev) => r.is_ok(),
        };
        if n == 0 || !sent {
            return;
        }
        if let Some(pause) = reading.pause {
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_targets_resolve() {
        assert_eq!(
            resolve_target(None, "8080").await,
            Ok(SocketAddr::from(([127, 0, 0, 1], 8080)))
        );
        assert!(resolve_target(Some("127.0.0.9"), "1").await.is_ok());
        assert!(resolve_target(Some("::1"), "1").await.is_ok());
        assert!(resolve_target(Some("[::1]"), "1").await.is_ok());
        assert!(resolve_target(Some("localhost"), "22").await.is_ok());
        let e = resolve_target(Some("10.1.2.3"), "22").await.unwrap_err();
        assert!(e.contains("not a loopback"), "{e}");
        assert!(resolve_target(None, "0").await.is_err());
        assert!(resolve_target(None, "x").await.is_err());
    }
}
