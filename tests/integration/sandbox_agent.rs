//! The data-channel half of the sandbox, end to end: ssmtui's own engine
//! (`engine::spawn_session`) with the real SDK (`aws::sdk::SdkApi`) against a sandbox on
//! loopback, whose agent runs real pty shells and real TCP. Each test starts and stops its own
//! sandbox on port 0, with its transcripts and shell homes in a temporary directory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::common::eventually;
use crate::common::sandbox::{SandboxEnv, faithful, fast};
use ssmtui::aws::sdk::SdkApi;
use ssmtui::aws::{SsmApi, StartSessionRequest};
use ssmtui::engine::shell::OutputFilter;
use ssmtui::engine::{CloseReason, EngineEvent, SessionHandle, SessionOptions, spawn_session};
use ssmtui::protocol::mux::{Mux, MuxConfig, MuxEvent, Role as MuxRole};
use ssmtui::protocol::version::{PortMode, client_port_mode};
use ssmtui::protocol::{Flag, SessionType};
use ssmtui::sandbox::world::CURRENT_AGENT_VERSION;
use ssmtui::sandbox::{Faults, PlatformType, SandboxConfig, SessionStatus, TimeoutOverrides};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const REGION: &str = "eu-west-1";

/// The shared sandbox environment in [`REGION`], with `faults`, its agent as fast as it can
/// be (most tests here move many MiB or inject faults; [`start_faithful`] is the real cadence).
async fn start(faults: Faults) -> SandboxEnv {
    start_with(faults, fast()).await
}

/// [`start`] with the agent paced like the real one.
async fn start_faithful(faults: Faults) -> SandboxEnv {
    start_with(faults, faithful()).await
}

async fn start_with(faults: Faults, config: SandboxConfig) -> SandboxEnv {
    SandboxEnv::start(
        "",
        SandboxConfig {
            region: REGION.to_owned(),
            faults,
            ..config
        },
    )
    .await
}

async fn open(
    api: &Arc<SdkApi>,
    target: &str,
    document: &str,
    parameters: &[(&str, String)],
) -> (SessionHandle, mpsc::Receiver<EngineEvent>) {
    open_with_capacity(api, target, document, parameters, 4096).await
}

async fn open_with_capacity(
    api: &Arc<SdkApi>,
    target: &str,
    document: &str,
    parameters: &[(&str, String)],
    event_capacity: usize,
) -> (SessionHandle, mpsc::Receiver<EngineEvent>) {
    open_with(api, target, document, parameters, |o| {
        o.event_capacity = event_capacity;
    })
    .await
}

/// Starts a session and opens its data channel with `options` adjusted by `adjust`.
async fn open_with(
    api: &Arc<SdkApi>,
    target: &str,
    document: &str,
    parameters: &[(&str, String)],
    adjust: impl FnOnce(&mut SessionOptions),
) -> (SessionHandle, mpsc::Receiver<EngineEvent>) {
    let req = StartSessionRequest {
        target: target.to_owned(),
        document: document.to_owned(),
        parameters: parameters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), vec![v.clone()]))
            .collect::<HashMap<_, _>>(),
        reason: None,
    };
    let started = api.start_session(&req).await.unwrap();
    let mut options = SessionOptions::new(target);
    adjust(&mut options);
    let api: Arc<dyn SsmApi> = api.clone();
    spawn_session(api, started, options).await.unwrap()
}

/// Output and notable events seen so far.
#[derive(Default)]
struct Seen {
    output: Vec<u8>,
    ready: Option<(SessionType, String, bool)>,
    reconnecting: usize,
    reconnected: usize,
    flags: Vec<Flag>,
    closed: Option<CloseReason>,
    agent_version: Option<String>,
    pauses: usize,
}

impl Seen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    fn take(&mut self, ev: EngineEvent) {
        match ev {
            EngineEvent::Output(b) | EngineEvent::StdErr(b) => self.output.extend_from_slice(&b),
            EngineEvent::Ready {
                session_type,
                customer_message,
                encrypted,
            } => self.ready = Some((session_type, customer_message, encrypted)),
            EngineEvent::HandshakeRequested { agent_version, .. } => {
                self.agent_version = Some(agent_version);
            }
            EngineEvent::Reconnecting { .. } => self.reconnecting += 1,
            EngineEvent::Reconnected { .. } => self.reconnected += 1,
            EngineEvent::Flag(f) => self.flags.push(f),
            EngineEvent::Paused(true) => self.pauses += 1,
            EngineEvent::Closed(r) => self.closed = Some(r),
            _ => {}
        }
    }

    /// Takes events until `done` holds; panics on timeout or an unexpected end.
    async fn until(
        &mut self,
        events: &mut mpsc::Receiver<EngineEvent>,
        limit: Duration,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(self) {
            if let Some(r) = &self.closed {
                panic!(
                    "session closed ({r:?}) while waiting for {what}; output:\n{}",
                    self.text()
                );
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(ev)) => self.take(ev),
                Ok(None) => panic!("event channel closed while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}; output:\n{}", self.text()),
            }
        }
    }

    async fn until_closed(&mut self, events: &mut mpsc::Receiver<EngineEvent>, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.closed.is_none() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(ev)) => self.take(ev),
                Ok(None) => panic!("event channel closed before Closed"),
                Err(_) => panic!("timed out waiting for the end; output:\n{}", self.text()),
            }
        }
    }
}

/// A shell session as alice on a current agent, once it is ready: the API client, the
/// target, the handle, its events and what was seen so far.
async fn ready_shell(
    env: &SandboxEnv,
) -> (
    Arc<SdkApi>,
    String,
    SessionHandle,
    mpsc::Receiver<EngineEvent>,
    Seen,
) {
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let (handle, mut events) = open(&api, &target, "SSM-sudo", &[]).await;
    let mut seen = Seen::default();
    seen.until(&mut events, Duration::from_secs(20), "Ready", |s| {
        s.ready.is_some()
    })
    .await;
    (api, target, handle, events, seen)
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_session_runs_a_real_shell_encrypted_with_kms() {
    let env = start(Faults::default()).await;
    let (_api, target, handle, mut events, mut seen) = ready_shell(&env).await;
    let (session_type, message, encrypted) = seen.ready.clone().unwrap();
    assert_eq!(session_type, SessionType::StandardStream);
    assert!(encrypted, "SSM-sudo names a KMS key");
    assert_eq!(message, "This session is encrypted using AWS KMS.");

    seen.until(
        &mut events,
        Duration::from_secs(20),
        "the run-as line",
        |s| s.text().contains("running as ssm-sudo"),
    )
    .await;
    handle.resize(123, 45).await.unwrap();
    // Quoting splits the words, so only the commands' output (not their echo) matches.
    handle
        .send(b"stty size; echo hel\"\"lo; echo \"HOME=$HOME\"; exit 3\n".to_vec())
        .await
        .unwrap();
    seen.until_closed(&mut events, Duration::from_secs(20))
        .await;
    let text = seen.text();
    assert!(
        text.contains("45 123"),
        "stty size shows the size sent:\n{text}"
    );
    assert!(text.contains("hello"), "{text}");
    assert!(
        matches!(seen.closed, Some(CloseReason::ChannelClosed { .. })),
        "{:?}",
        seen.closed
    );
    let home = env.home.path().join("homes").join(&target);
    assert!(text.contains(&format!("HOME={}", home.display())), "{text}");

    // The transcript stands in for the S3 log: the document's key prefix, one file per session.
    let transcript = env
        .home
        .path()
        .join("bucket/sudo")
        .join(format!("{}.log", handle.session_id()));
    let logged = std::fs::read_to_string(&transcript).unwrap();
    assert!(
        logged.contains("hello") && logged.contains("running as ssm-sudo"),
        "{logged}"
    );
    let info = env.sb().state().session(handle.session_id()).unwrap();
    assert_eq!(info.status, SessionStatus::Terminated);
    env.stop().await;
}

/// A deterministic, non-repeating byte stream (xorshift64*), so a reordered, lost or
/// duplicated chunk anywhere changes the digest.
struct Pattern(u64);

impl Pattern {
    fn take(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            out.extend_from_slice(&self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// A loopback echo server on port 0; counts the connections it accepted.
async fn echo_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepts);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (port, accepts)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Drives one smux stream (client role, as the forward engine will) over the session: sends
/// `total` pattern bytes, reads the whole echo, then closes (FIN) and waits for the agent's
/// FIN. The FIN waits for the echo because the agent has no half-close: a FIN makes it close
/// the target connection at once. Returns the digests of what was sent and what came back,
/// and the byte count received.
async fn mux_echo(
    handle: &SessionHandle,
    events: &mut mpsc::Receiver<EngineEvent>,
    seen: &mut Seen,
    total: usize,
    seed: u64,
    limit: Duration,
) -> ([u8; 32], [u8; 32], usize) {
    let mut mux = Mux::new(MuxRole::Client, MuxConfig::with_keepalive(false), now_ms());
    let id = mux.open_stream().unwrap();
    let mut pattern = Pattern(seed | 1);
    let (mut tx_hash, mut rx_hash) = (Sha256::new(), Sha256::new());
    let (mut sent, mut received) = (0usize, 0usize);
    let (mut closed, mut fin) = (false, false);
    let mut outgoing: Option<Vec<u8>> = None;
    let deadline = tokio::time::Instant::now() + limit;
    while !(fin && outgoing.is_none() && closed) {
        while sent < total && mux.send_capacity(id) > 0 {
            let n = mux.send_capacity(id).min(16 * 1024).min(total - sent);
            let chunk = pattern.take(n);
            tx_hash.update(&chunk);
            assert_eq!(mux.write(id, &chunk).unwrap(), n);
            sent += n;
        }
        if received >= total && !closed {
            mux.close(id).unwrap();
            closed = true;
        }
        if outgoing.is_none() {
            outgoing = mux.poll_transmit(16 * 1024);
        }
        tokio::select! {
            r = handle.send(outgoing.clone().unwrap_or_default()), if outgoing.is_some() => {
                r.unwrap();
                outgoing = None;
            }
            ev = tokio::time::timeout_at(deadline, events.recv()) => match ev {
                Err(_) => panic!("transfer timed out: sent {sent}, received {received}"),
                Ok(None) => panic!("event channel closed"),
                Ok(Some(EngineEvent::Output(b))) => {
                    mux.handle_incoming(&b, now_ms()).unwrap();
                    while let Some(e) = mux.poll_event() {
                        match e {
                            MuxEvent::Data(_, d) => {
                                rx_hash.update(&d);
                                received += d.len();
                            }
                            MuxEvent::Fin(_) => fin = true,
                            _ => {}
                        }
                    }
                }
                Ok(Some(ev)) => {
                    seen.take(ev);
                    if let Some(r) = &seen.closed {
                        panic!("session closed during the transfer: {r:?}");
                    }
                }
            },
        }
    }
    (
        tx_hash.finalize().into(),
        rx_hash.finalize().into(),
        received,
    )
}

/// Basic mode: sends `total` pattern bytes as raw Output and reads the echo back.
async fn basic_echo(
    handle: &SessionHandle,
    events: &mut mpsc::Receiver<EngineEvent>,
    seen: &mut Seen,
    total: usize,
    seed: u64,
) -> ([u8; 32], [u8; 32]) {
    let mut pattern = Pattern(seed | 1);
    let (mut tx_hash, mut rx_hash) = (Sha256::new(), Sha256::new());
    let (mut sent, mut received) = (0usize, 0usize);
    let mut outgoing: Option<Vec<u8>> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received < total {
        if outgoing.is_none() && sent < total {
            let chunk = pattern.take((total - sent).min(16 * 1024));
            tx_hash.update(&chunk);
            sent += chunk.len();
            outgoing = Some(chunk);
        }
        tokio::select! {
            r = handle.send(outgoing.clone().unwrap_or_default()), if outgoing.is_some() => {
                r.unwrap();
                outgoing = None;
            }
            ev = tokio::time::timeout_at(deadline, events.recv()) => match ev {
                Err(_) => panic!("transfer timed out: sent {sent}, received {received}"),
                Ok(None) => panic!("event channel closed"),
                Ok(Some(EngineEvent::Output(b))) => {
                    rx_hash.update(&b);
                    received += b.len();
                }
                Ok(Some(ev)) => {
                    seen.take(ev);
                    if let Some(r) = &seen.closed {
                        panic!("session closed during the transfer: {r:?}");
                    }
                }
            },
        }
    }
    assert_eq!(received, total, "no byte more than was sent");
    (tx_hash.finalize().into(), rx_hash.finalize().into())
}

async fn open_port_session(
    api: &Arc<SdkApi>,
    target: &str,
    params: &[(&str, String)],
    document: &str,
) -> (SessionHandle, mpsc::Receiver<EngineEvent>, Seen) {
    let (handle, mut events) = open(api, target, document, params).await;
    let mut seen = Seen::default();
    seen.until(&mut events, Duration::from_secs(20), "Ready", |s| {
        s.ready.is_some()
    })
    .await;
    let (session_type, _, encrypted) = seen.ready.clone().unwrap();
    assert_eq!(session_type, SessionType::Port);
    assert!(!encrypted, "the agent never encrypts port sessions");
    (handle, events, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_session_moves_64_mib_through_smux_intact() {
    let env = start(Faults::default()).await;
    let api = env.api("alice").await;
    let (port, accepts) = echo_server().await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let (handle, mut events, mut seen) = open_port_session(
        &api,
        &target,
        &[("portNumber", port.to_string())],
        "AWS-StartPortForwardingSession",
    )
    .await;
    let version = seen.agent_version.clone().unwrap();
    assert_eq!(
        client_port_mode("LocalPortForwarding", &version),
        PortMode::Mux { keepalive: false }
    );
    let total = 64 << 20;
    let started = std::time::Instant::now();
    let (sent, echoed, n) = mux_echo(
        &handle,
        &mut events,
        &mut seen,
        total,
        42,
        Duration::from_secs(120),
    )
    .await;
    eprintln!("64 MiB echoed through smux in {:?}", started.elapsed());
    assert_eq!(n, total);
    assert_eq!(sent, echoed, "the echo is byte-identical");
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        1,
        "one stream, one connection"
    );
    handle.send_flag(Flag::TerminateSession).await.unwrap();
    seen.until_closed(&mut events, Duration::from_secs(10))
        .await;
    assert!(
        matches!(seen.closed, Some(CloseReason::ChannelClosed { .. })),
        "{:?}",
        seen.closed
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_mode_on_an_old_agent_redials_after_disconnect_to_port() {
    let env = start(Faults::default()).await;
    let api = env.api("alice").await;
    let (port, accepts) = echo_server().await;
    let target = env.linux("3.0.161.0");
    let (handle, mut events, mut seen) = open_port_session(
        &api,
        &target,
        &[("portNumber", port.to_string())],
        "AWS-StartPortForwardingSession",
    )
    .await;
    let version = seen.agent_version.clone().unwrap();
    assert_eq!(version, "3.0.161.0");
    assert_eq!(
        client_port_mode("LocalPortForwarding", &version),
        PortMode::Basic
    );

    let (sent, echoed) = basic_echo(&handle, &mut events, &mut seen, 4 << 20, 1).await;
    assert_eq!(sent, echoed);
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
    // The local connection "went away": the agent closes its target connection and dials a
    // new one with the next Output.
    // The flag travels in order with the data, so what is sent next goes to a new connection.
    handle.send_flag(Flag::DisconnectToPort).await.unwrap();
    let (sent, echoed) = basic_echo(&handle, &mut events, &mut seen, 4 << 20, 2).await;
    assert_eq!(sent, echoed);
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        2,
        "a second connection after the flag"
    );
    handle.send_flag(Flag::TerminateSession).await.unwrap();
    seen.until_closed(&mut events, Duration::from_secs(10))
        .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_and_closed_targets_get_connect_to_port_error() {
    let env = start(Faults::default()).await;
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    // A port nobody listens on: bind, note the port, close.
    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    for (document, params) in [
        (
            "AWS-StartPortForwardingSessionToRemoteHost",
            vec![
                ("host", "10.1.2.3".to_owned()),
                ("portNumber", "22".to_owned()),
            ],
        ),
        (
            "AWS-StartPortForwardingSession",
            vec![("portNumber", closed_port.to_string())],
        ),
    ] {
        let (handle, mut events, mut seen) =
            open_port_session(&api, &target, &params, document).await;
        let mut mux = Mux::new(MuxRole::Client, MuxConfig::with_keepalive(false), now_ms());
        let id = mux.open_stream().unwrap();
        mux.write(id, b"hello?").unwrap();
        handle.send(mux.poll_transmit(1024).unwrap()).await.unwrap();
        let mut fin = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !(fin && seen.flags.contains(&Flag::ConnectToPortError)) {
            match tokio::time::timeout_at(deadline, events.recv())
                .await
                .unwrap()
                .unwrap()
            {
                EngineEvent::Output(b) => {
                    mux.handle_incoming(&b, now_ms()).unwrap();
                    while let Some(e) = mux.poll_event() {
                        match e {
                            MuxEvent::Fin(_) => fin = true,
                            MuxEvent::Data(..) => panic!("no data from a refused target"),
                            _ => {}
                        }
                    }
                }
                ev => seen.take(ev),
            }
            assert!(
                seen.closed.is_none(),
                "the session stays up: {:?}",
                seen.closed
            );
        }
        handle.send_flag(Flag::TerminateSession).await.unwrap();
        seen.until_closed(&mut events, Duration::from_secs(10))
            .await;
    }
    env.stop().await;
}

// `ssmtui connect` in pipe mode frames the session with the engine's own PRELUDE/EPILOGUE;
// here they are proven against a real bash on a real pty.
use ssmtui::engine::shell::{EPILOGUE, PRELUDE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_mode_framing_extracts_the_exit_status_from_a_real_bash() {
    let env = start(Faults::default()).await;
    // bob: SSM-nosudo, staging and dev only.
    let api = env.api("bob").await;
    let target = {
        let world = env.sb().state().world();
        world
            .instances
            .iter()
            .find(|i| {
                i.connected()
                    && i.platform_type == PlatformType::Linux
                    && matches!(i.environment(), Some("staging" | "dev"))
            })
            .map(|i| i.id.clone())
            .unwrap()
    };
    let (handle, mut events) = open(&api, &target, "SSM-nosudo", &[]).await;
    handle.send(PRELUDE.to_vec()).await.unwrap();
    handle
        .send(b"echo framed-$((6 * 7)); printf 'no newline'; (exit 7)".to_vec())
        .await
        .unwrap();
    handle.send(EPILOGUE.to_vec()).await.unwrap();
    let mut filter = OutputFilter::default();
    let mut shown = Vec::new();
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.closed.is_none() {
        match tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            EngineEvent::Output(b) => {
                seen.output.extend_from_slice(&b);
                shown.extend(filter.feed(&b));
            }
            ev => seen.take(ev),
        }
    }
    // bash >= 5.1 would wrap each prompt in bracketed-paste escapes; the prelude turns that
    // off, so none may reach the output. Readline's redisplay may still emit a bare "\r".
    assert!(
        !String::from_utf8_lossy(&shown).contains("\x1b["),
        "{shown:?}"
    );
    let shown = String::from_utf8_lossy(&shown).replace('\r', "");
    assert_eq!(filter.exit_code, Some(7), "raw output:\n{}", seen.text());
    assert_eq!(
        shown.trim_matches('\n'),
        "framed-42\nno newline",
        "raw output:\n{}",
        seen.text()
    );
    assert!(seen.text().contains("running as ssm-nosudo"));
    assert!(matches!(
        seen.closed,
        Some(CloseReason::ChannelClosed { .. })
    ));
    env.stop().await;
}

/// Opens the data channel by hand and sends `OpenDataChannelInput` with `token`; returns the
/// first frame the sandbox sends back.
async fn raw_open(url: &str, token: &str) -> tokio_tungstenite::tungstenite::Message {
    use futures_util::{SinkExt, StreamExt};
    use ssmtui::protocol::OpenDataChannelInput;
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let input = OpenDataChannelInput::client(
        "00000000-0000-4000-8000-000000000001",
        token,
        "00000000-0000-4000-8000-000000000002",
        "1.2.650.0",
    );
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        input.to_json_string().into(),
    ))
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

fn policy_close_reason(msg: &tokio_tungstenite::tungstenite::Message) -> String {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    match msg {
        Message::Close(Some(f)) if f.code == CloseCode::Policy => f.reason.to_string(),
        other => panic!("expected a policy-violation close, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_single_use_bound_to_their_session_and_expire() {
    let env = start(Faults::default()).await;
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let req = StartSessionRequest {
        target: target.clone(),
        document: "SSM-sudo".to_owned(),
        ..StartSessionRequest::default()
    };
    let started = api.start_session(&req).await.unwrap();
    let url = started.stream_url.clone();
    let token = started.token.expose().to_owned();

    // A wrong token is refused before anything reaches the agent.
    let refused = raw_open(&url, "not-the-token").await;
    assert_eq!(
        policy_close_reason(&refused),
        "the token is not valid for this session"
    );
    // The right one opens the channel: the agent's first frame is its (KMS) handshake request.
    let first = raw_open(&url, &token).await;
    assert!(
        matches!(&first, tokio_tungstenite::tungstenite::Message::Binary(b) if b.get(4..22) == Some(&b"output_stream_data"[..])),
        "{first:?}"
    );
    // Used once, never again.
    let reused = raw_open(&url, &token).await;
    assert_eq!(policy_close_reason(&reused), "the token was already used");
    // A token from ResumeSession works once; an expired one does not.
    let resumed = api.resume_session(&started.session_id).await.unwrap();
    env.sb().state().expire_tokens(&started.session_id);
    let expired = raw_open(&url, resumed.token.expose()).await;
    assert_eq!(policy_close_reason(&expired), "the token has expired");
    // Another session's URL with this session's token: refused.
    let other = api.start_session(&req).await.unwrap();
    let fresh = api.resume_session(&started.session_id).await.unwrap();
    let cross = raw_open(&other.stream_url, fresh.token.expose()).await;
    assert_eq!(
        policy_close_reason(&cross),
        "the token is not valid for this session"
    );
    env.stop().await;
}

/// The numbers printed after `pid=` (the shell's `$$`), ignoring the echoed command.
fn shell_pid(text: &str) -> Option<u32> {
    text.match_indices("pid=").find_map(|(i, _)| {
        let digits: String = text[i + 4..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_session_ends_the_shell_with_channel_closed_and_kills_it() {
    let env = start(Faults::default()).await;
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let (handle, mut events) = open(&api, &target, "SSM-sudo", &[]).await;
    let mut seen = Seen::default();
    handle.send(b"echo pid=$$\n".to_vec()).await.unwrap();
    seen.until(
        &mut events,
        Duration::from_secs(20),
        "the shell's pid",
        |s| shell_pid(&s.text()).is_some(),
    )
    .await;
    let pid = shell_pid(&seen.text()).unwrap();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists(), "the shell runs as a real process");

    // TerminateSession from elsewhere (another client of the same user), not from the engine.
    api.terminate_session(handle.session_id()).await.unwrap();
    seen.until_closed(&mut events, Duration::from_secs(10))
        .await;
    assert_eq!(
        seen.closed,
        Some(CloseReason::ChannelClosed {
            output: "The session was terminated.".to_owned()
        })
    );
    assert_eq!(
        env.sb()
            .state()
            .session(handle.session_id())
            .unwrap()
            .status,
        SessionStatus::Terminated
    );
    // The shell is gone and reaped (a zombie would keep /proc/<pid>).
    eventually(
        &format!("shell {pid} to end with its session"),
        Duration::from_secs(5),
        || !proc_dir.exists(),
    )
    .await;
    // The transcript is uploaded into the sandbox's own directory, and that directory goes
    // when the sandbox and its last session are gone (not re-created by a late upload).
    let bucket = env.sb().state().data_paths().bucket.clone();
    let scratch = bucket.parent().unwrap().to_path_buf();
    let log = bucket
        .join("sudo")
        .join(format!("{}.log", handle.session_id()));
    eventually("the transcript uploaded", Duration::from_secs(10), || {
        log.exists()
    })
    .await;
    env.stop().await;
    eventually(
        "the sandbox's directory removed",
        Duration::from_secs(10),
        || !scratch.exists(),
    )
    .await;
}

/// A shell that prints a lot and exits while its reader is slow: the session must end with
/// channel_closed, not take the service's close frame (which follows channel_closed at once)
/// for a lost connection and fail to resume a session that is over. (It did, once the driver
/// read on while an event waited for the reader.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_sees_the_end_of_a_chatty_session_as_channel_closed() {
    let env = start(Faults::default()).await;
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let (handle, mut events) = open_with_capacity(&api, &target, "SSM-sudo", &[], 4).await;
    handle
        .send(b"head -c 1500000 /dev/zero | tr '\\0' x; exit\n".to_vec())
        .await
        .unwrap();
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.closed.is_none() {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ev)) => seen.take(ev),
            Ok(None) => panic!("event channel closed before Closed"),
            Err(_) => panic!("timed out waiting for the end"),
        }
        // The reader is slower than the shell.
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    assert!(
        matches!(seen.closed, Some(CloseReason::ChannelClosed { .. })),
        "{:?} after {} reconnect attempts",
        seen.closed,
        seen.reconnecting
    );
    assert_eq!(seen.reconnecting, 0);
    assert!(
        count(&seen.text(), "x") >= 1_000_000,
        "most of the output arrived"
    );
    env.stop().await;
}

/// A client that stops reading for longer than the agent's 2 s close flush (a loaded machine,
/// a laptop busy writing the file) still gets every byte and then channel_closed: the service
/// delivers what the agent sent however slowly the client reads, and never drops the
/// connection of a finished session, which would leave the client resuming a session that is
/// gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pauses_at_the_end_still_gets_everything() {
    let env = start(Faults::default()).await;
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let (handle, mut events) = open_with_capacity(&api, &target, "SSM-sudo", &[], 4).await;
    handle
        .send(b"head -c 1800000 /dev/zero | tr '\\0' '\\132'; exit\n".to_vec())
        .await
        .unwrap();
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut paused = false;
    while seen.closed.is_none() {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ev)) => seen.take(ev),
            Ok(None) => panic!("event channel closed before Closed"),
            Err(_) => panic!("timed out waiting for the end"),
        }
        if !paused && count(&seen.text(), "Z") > 1_000 {
            // Long enough for the shell to finish, the close flush to give up and the
            // service's last writes to find the client's socket full.
            paused = true;
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
    }
    assert!(
        matches!(seen.closed, Some(CloseReason::ChannelClosed { .. })),
        "{:?} after {} reconnect attempts",
        seen.closed,
        seen.reconnecting
    );
    assert_eq!(seen.reconnecting, 0);
    assert_eq!(count(&seen.text(), "Z"), 1_800_000);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_and_max_duration_end_sessions() {
    let env = start(Faults::default()).await;
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);

    env.sb().state().set_timeout_overrides(TimeoutOverrides {
        idle: Some(Duration::from_millis(1500)),
        max_duration: None,
        ..TimeoutOverrides::default()
    });
    let started = std::time::Instant::now();
    let (_idle, mut idle_events) = open(&api, &target, "SSM-sudo", &[]).await;
    // Overrides are read when a session's data channel first opens: wait for that before
    // changing them for the second session.
    let mut idle_seen = Seen::default();
    idle_seen
        .until(&mut idle_events, Duration::from_secs(20), "Ready", |s| {
            s.ready.is_some()
        })
        .await;

    env.sb().state().set_timeout_overrides(TimeoutOverrides {
        idle: Some(Duration::from_secs(60)),
        max_duration: Some(Duration::from_secs(2)),
        ..TimeoutOverrides::default()
    });
    let (busy, mut busy_events) = open(&api, &target, "SSM-sudo", &[]).await;
    // Keep the second one busy: it must end by its maximum duration, not by idleness.
    let keep_busy = tokio::spawn(async move {
        for _ in 0..40 {
            if busy.send(b"true\n".to_vec()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    idle_seen
        .until_closed(&mut idle_events, Duration::from_secs(10))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(
        idle_seen.closed,
        Some(CloseReason::ChannelClosed {
            output: "Your session timed out due to inactivity and has been terminated.".to_owned()
        })
    );
    let mut busy_seen = Seen::default();
    busy_seen
        .until_closed(&mut busy_events, Duration::from_secs(10))
        .await;
    assert_eq!(
        busy_seen.closed,
        Some(CloseReason::ChannelClosed {
            output: "Your session has reached its maximum duration and has been terminated."
                .to_owned()
        })
    );
    keep_busy.abort();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_cannot_break_exactly_once_delivery() {
    let faults = Faults::parse("drop-every=200,dup=0.02,reorder=0.02,seed=11").unwrap();
    let env = start(faults).await;
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);

    // Shell: 30000 numbered lines (~350 messages, enough for the drops to hit), each must
    // arrive once and in order.
    let seen = numbered_lines_once(&api, &target, "line", 30000).await;
    assert_eq!(count(&seen.text(), "line-30000\r\n"), 1);
    let shell_reconnects = seen.reconnected;

    // Port: 16 MiB through smux, exactly once.
    let (port, _) = echo_server().await;
    let (handle, mut events, mut seen) = open_port_session(
        &api,
        &target,
        &[("portNumber", port.to_string())],
        "AWS-StartPortForwardingSession",
    )
    .await;
    let total = 16 << 20;
    let t = std::time::Instant::now();
    let (sent, echoed, n) = mux_echo(
        &handle,
        &mut events,
        &mut seen,
        total,
        7,
        Duration::from_secs(120),
    )
    .await;
    eprintln!(
        "16 MiB echoed through smux with faults in {:?} ({} reconnects)",
        t.elapsed(),
        seen.reconnected
    );
    assert_eq!(n, total);
    assert_eq!(sent, echoed);

    let counts = env.sb().state().fault_counts();
    eprintln!("{counts:?}");
    assert!(
        counts.drops > 0 && counts.duplicates > 0 && counts.reorders > 0,
        "{counts:?}"
    );
    assert!(
        shell_reconnects > 0 && seen.reconnected > 0,
        "the engine reconnected"
    );
    assert!(seen.reconnecting >= seen.reconnected);
    handle.send_flag(Flag::TerminateSession).await.unwrap();
    seen.until_closed(&mut events, Duration::from_secs(20))
        .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_stalled_acks_and_agent_restarts_keep_a_shell_intact() {
    let faults =
        // Acks are held for the first 3 s of the connection: the first message they hold
        // back is the handshake's, which waits for a KMS call, so a shorter stall could be
        // over before any ack was sent on a loaded machine.
        Faults::parse("delay-ms=0-5,stall-acks-ms=3000,restart-agent-every=60,seed=3").unwrap();
    let env = start(faults).await;
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    // 20 000 rows are about 230 KB, so at least 220 messages of at most 1 KiB: several
    // restarts (every 60 frames) however the agent's reads of the pty fall. (5 000 rows
    // could be 53 full messages, and a fast machine then saw no restart at all.)
    let seen = numbered_lines_once(&api, &target, "row", 20_000).await;
    let counts = env.sb().state().fault_counts();
    assert!(
        counts.delays > 0 && counts.stalled_acks > 0 && counts.agent_restarts > 0,
        "{counts:?}"
    );
    assert!(seen.pauses > 0, "the engine saw pause_publication");
    env.stop().await;
}

/// A shell prints `prefix-1` … `prefix-n` and exits: every line arrives once, in order, and
/// the session ends with `channel_closed`.
async fn numbered_lines_once(api: &Arc<SdkApi>, target: &str, prefix: &str, n: usize) -> Seen {
    numbered_lines_with_pause(api, target, prefix, n, async || {}).await
}

/// [`numbered_lines_once`], running `pause` without taking output once line 100 (of at least
/// 100) has arrived.
async fn numbered_lines_with_pause(
    api: &Arc<SdkApi>,
    target: &str,
    prefix: &str,
    n: usize,
    pause: impl AsyncFnOnce(),
) -> Seen {
    let (handle, mut events) = open(api, target, "SSM-sudo", &[]).await;
    let mut seen = Seen::default();
    handle
        .send(format!("for i in $(seq 1 {n}); do echo {prefix}-$i; done; exit\n").into_bytes())
        .await
        .unwrap();
    let hundredth = format!("{prefix}-100\r\n");
    seen.until(&mut events, Duration::from_secs(30), "line 100", |s| {
        n < 100 || s.text().contains(&hundredth)
    })
    .await;
    pause().await;
    seen.until_closed(&mut events, Duration::from_secs(90))
        .await;
    assert!(
        matches!(seen.closed, Some(CloseReason::ChannelClosed { .. })),
        "{:?}",
        seen.closed
    );
    let expected: String = (1..=n).map(|i| format!("{prefix}-{i}\r\n")).collect();
    assert_eq!(
        count(&seen.text(), &expected),
        1,
        "every line once, in order"
    );
    seen
}

/// A session whose service has gone away keeps trying to reconnect (with backoff, up to its
/// reconnect timeout of a minute); a caller that gives up meanwhile must not wait for that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_reconnecting_session_ends_it_at_once() {
    let env = start(Faults::default()).await;
    let (_, _, handle, mut events, mut seen) = ready_shell(&env).await;
    // The whole sandbox goes: the websocket drops and every ResumeSession fails.
    env.stop().await;
    seen.until(
        &mut events,
        Duration::from_secs(20),
        "a reconnect attempt",
        |s| s.reconnecting > 0,
    )
    .await;
    let cancelled = tokio::time::Instant::now();
    handle.cancel();
    seen.until_closed(&mut events, Duration::from_secs(20))
        .await;
    assert_eq!(seen.closed, Some(CloseReason::Detached));
    assert!(
        // The bug this guards against waits out the minute-long reconnect timeout.
        cancelled.elapsed() < Duration::from_secs(15),
        "the end took {:?}",
        cancelled.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Fidelity to the real agent: pacing, no half-close, the keepalive rule, service-side closes

/// `open`, with a different `ClientVersion` reported to the agent.
async fn open_as_version(
    api: &Arc<SdkApi>,
    target: &str,
    document: &str,
    parameters: &[(&str, String)],
    client_version: &str,
) -> (SessionHandle, mpsc::Receiver<EngineEvent>) {
    open_with(api, target, document, parameters, |o| {
        o.event_capacity = 4096;
        o.client_version = Some(client_version.to_owned());
    })
    .await
}

/// Takes events until the session closes, counting the Output messages and the largest.
async fn count_messages(
    seen: &mut Seen,
    events: &mut mpsc::Receiver<EngineEvent>,
    limit: Duration,
) -> (usize, usize, Option<std::time::Instant>) {
    let deadline = tokio::time::Instant::now() + limit;
    let (mut messages, mut largest, mut first) = (0, 0, None);
    while seen.closed.is_none() {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(EngineEvent::Output(b))) => {
                messages += 1;
                largest = largest.max(b.len());
                first.get_or_insert_with(std::time::Instant::now);
                seen.output.extend_from_slice(&b);
            }
            Ok(Some(ev)) => seen.take(ev),
            Ok(None) => panic!("event channel closed before Closed"),
            Err(_) => panic!("timed out; output so far:\n{}", seen.text()),
        }
    }
    (messages, largest, first)
}

/// Paced like the real agent, a shell's first output comes a second after it started, and a
/// flood comes 1 KiB per message at most with a pause after each: it takes at least as many
/// milliseconds as it has messages. (Lower bounds only: a slow machine cannot fail them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_shell_sends_a_kib_per_message_a_millisecond_apart() {
    let env = start_faithful(Faults::default()).await;
    // Before the session opens, so before the shell starts: its first output is then at
    // least a second away whatever the machine's load.
    let opened = std::time::Instant::now();
    let (_, _, handle, mut events, mut seen) = ready_shell(&env).await;
    let ready = std::time::Instant::now();
    let total = 200_000;
    handle
        .send(format!("head -c {total} /dev/zero | tr '\\0' x; echo; exit\n").into_bytes())
        .await
        .unwrap();
    let (messages, largest, first) =
        count_messages(&mut seen, &mut events, Duration::from_secs(60)).await;
    let took = ready.elapsed();
    let first = first.unwrap().duration_since(opened);
    eprintln!(
        "paced shell: {messages} messages, largest {largest} B, first after {first:.2?}, all in {took:.2?}"
    );
    assert!(count(&seen.text(), "x") >= total, "the whole flood arrived");
    assert!(largest <= 1024, "largest message {largest} bytes");
    assert!(messages >= total / 1024, "{messages} messages");
    assert!(
        first >= Duration::from_millis(1000),
        "first output {first:?} after the start"
    );
    assert!(
        took >= Duration::from_millis(messages as u64),
        "{messages} messages in {took:?}"
    );
    env.stop().await;
}

/// A source server that writes `total` bytes of `byte` and closes.
async fn source(total: usize, byte: u8) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let _ = sock.write_all(&vec![byte; total]).await;
    });
    port
}

/// A paced port session (smux) downloads 1 KiB per message at most, a millisecond apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_port_session_sends_a_kib_per_message_a_millisecond_apart() {
    let env = start_faithful(Faults::default()).await;
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let total = 256 * 1024;
    let port = source(total, b'z').await;
    let (handle, mut events, mut seen) = open_port_session(
        &api,
        &target,
        &[("portNumber", port.to_string())],
        "AWS-StartPortForwardingSession",
    )
    .await;
    let mut mux = Mux::new(MuxRole::Client, MuxConfig::with_keepalive(false), now_ms());
    let id = mux.open_stream().unwrap();
    while let Some(bytes) = mux.poll_transmit(16 * 1024) {
        handle.send(bytes).await.unwrap();
    }
    let started = std::time::Instant::now();
    let (mut received, mut messages, mut largest, mut fin) = (0, 0, 0, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !fin {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(EngineEvent::Output(b))) => {
                messages += 1;
                largest = largest.max(b.len());
                mux.handle_incoming(&b, now_ms()).unwrap();
                while let Some(e) = mux.poll_event() {
                    match e {
                        MuxEvent::Data(_, d) => received += d.len(),
                        MuxEvent::Fin(_) => fin = true,
                        _ => {}
                    }
                }
            }
            Ok(Some(ev)) => seen.take(ev),
            Ok(None) => panic!("event channel closed"),
            Err(_) => panic!("download timed out after {received} bytes"),
        }
    }
    let took = started.elapsed();
    eprintln!("paced smux download: {received} B in {messages} messages, {took:.2?}");
    assert_eq!(received, total);
    assert!(largest <= 1024, "largest message {largest} bytes");
    assert!(messages > total / 1024, "{messages} messages");
    assert!(
        took >= Duration::from_millis(messages as u64 - 1),
        "{messages} messages in {took:?}"
    );
    let _ = mux.close(id);
    handle.send_flag(Flag::TerminateSession).await.unwrap();
    seen.until_closed(&mut events, Duration::from_secs(10))
        .await;
    env.stop().await;
}

/// Opens one smux stream on a fresh port session to `port`: the handle, events, the client
/// mux and the stream.
async fn one_stream(
    env: &SandboxEnv,
    port: u16,
) -> (
    SessionHandle,
    mpsc::Receiver<EngineEvent>,
    Seen,
    Mux,
    ssmtui::protocol::mux::StreamId,
) {
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let (handle, events, seen) = open_port_session(
        &api,
        &target,
        &[("portNumber", port.to_string())],
        "AWS-StartPortForwardingSession",
    )
    .await;
    let mut mux = Mux::new(MuxRole::Client, MuxConfig::with_keepalive(false), now_ms());
    let id = mux.open_stream().unwrap();
    (handle, events, seen, mux, id)
}

/// Sends what the mux has queued.
async fn flush_mux(mux: &mut Mux, handle: &SessionHandle) {
    while let Some(bytes) = mux.poll_transmit(16 * 1024) {
        handle.send(bytes).await.unwrap();
    }
}

/// Reads the stream until the agent's FIN: the bytes that came.
async fn until_fin(
    mux: &mut Mux,
    events: &mut mpsc::Receiver<EngineEvent>,
    seen: &mut Seen,
) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(EngineEvent::Output(b))) => {
                mux.handle_incoming(&b, now_ms()).unwrap();
                while let Some(e) = mux.poll_event() {
                    match e {
                        MuxEvent::Data(_, d) => got.extend_from_slice(&d),
                        MuxEvent::Fin(_) => return got,
                        _ => {}
                    }
                }
            }
            Ok(Some(ev)) => seen.take(ev),
            Ok(None) => panic!("event channel closed"),
            Err(_) => panic!("no FIN from the agent; got {} bytes", got.len()),
        }
    }
}

/// The agent has no half-close: the client's FIN makes it write what came before, then close
/// the target connection entirely. A target that answers only after the request is complete
/// sees its connection end instead, and the client gets nothing but the FIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_fin_closes_the_target_connection() {
    let env = start(Faults::default()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 5];
        sock.read_exact(&mut request).await.unwrap();
        // The request is complete; what comes next is the end of the connection.
        let mut more = [0u8; 64];
        let end = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut more)).await;
        (request, matches!(end, Ok(Ok(0) | Err(_))))
    });
    let (handle, mut events, mut seen, mut mux, id) = one_stream(&env, port).await;
    mux.write(id, b"hello").unwrap();
    mux.close(id).unwrap();
    flush_mux(&mut mux, &handle).await;
    let got = until_fin(&mut mux, &mut events, &mut seen).await;
    let (request, ended) = server.await.unwrap();
    assert_eq!(&request, b"hello", "the bytes before the FIN were written");
    assert!(
        ended,
        "the target's connection ended after the client's FIN"
    );
    assert!(got.is_empty(), "{} bytes came back", got.len());
    handle.send_flag(Flag::TerminateSession).await.unwrap();
    seen.until_closed(&mut events, Duration::from_secs(10))
        .await;
    env.stop().await;
}

/// The target's end of file becomes the agent's FIN, and the agent closes the connection
/// entirely, though the client never closed its side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_eof_closes_the_connection_both_ways() {
    let env = start(Faults::default()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (sock, _) = listener.accept().await.unwrap();
        let (mut r, mut w) = sock.into_split();
        w.write_all(b"banner").await.unwrap();
        w.shutdown().await.unwrap();
        // Half-closed: it would go on reading, but the agent closes the connection.
        let mut buf = [0u8; 1024];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        ended.is_ok()
    });
    let (handle, mut events, mut seen, mut mux, _id) = one_stream(&env, port).await;
    flush_mux(&mut mux, &handle).await;
    let got = until_fin(&mut mux, &mut events, &mut seen).await;
    assert_eq!(got, b"banner");
    assert!(
        server.await.unwrap(),
        "the agent closed the target's connection without the client's FIN"
    );
    handle.send_flag(Flag::TerminateSession).await.unwrap();
    seen.until_closed(&mut events, Duration::from_secs(10))
        .await;
    env.stop().await;
}

/// Counts smux NOP frames in a byte stream.
#[derive(Default)]
struct NopCounter {
    decoder: ssmtui::protocol::mux::FrameDecoder,
    nops: usize,
}

impl NopCounter {
    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(frame) = self.decoder.decode_next(&mut bytes).unwrap() {
            if matches!(frame, ssmtui::protocol::mux::Frame::Nop(_)) {
                self.nops += 1;
            }
        }
    }
}

/// The agent keeps smux keepalive on for a client that reports a version up to 1.2.331.0: it
/// sends NOPs, and closes the mux when the client sends nothing for the keepalive timeout
/// (smux's 10 s / 30 s, shortened here). A client reporting ssmtui's version gets neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_client_version_gets_smux_keepalive_and_an_idle_mux_is_closed() {
    use ssmtui::protocol::mux::Keepalive;
    let env = start(Faults::default()).await;
    env.sb().state().set_timeout_overrides(TimeoutOverrides {
        mux_keepalive: Some(Keepalive {
            interval_ms: 200,
            timeout_ms: 1500,
        }),
        ..TimeoutOverrides::default()
    });
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let (port, _) = echo_server().await;
    let params = [("portNumber", port.to_string())];

    for (version, keepalive) in [
        ("1.2.0.0", true),
        (ssmtui::protocol::version::CLIENT_VERSION, false),
    ] {
        let (handle, mut events) = open_as_version(
            &api,
            &target,
            "AWS-StartPortForwardingSession",
            &params,
            version,
        )
        .await;
        let mut seen = Seen::default();
        seen.until(&mut events, Duration::from_secs(20), "Ready", |s| {
            s.ready.is_some()
        })
        .await;
        // The client's own rule for this agent: keepalive off on its side, so it says nothing
        // while the stream is idle.
        let mut mux = Mux::new(MuxRole::Client, MuxConfig::with_keepalive(false), now_ms());
        let id = mux.open_stream().unwrap();
        mux.write(id, b"ping").unwrap();
        flush_mux(&mut mux, &handle).await;
        let mut nops = NopCounter::default();
        let mut echoed = Vec::new();
        let idle_until = tokio::time::Instant::now() + Duration::from_secs(4);
        loop {
            let ev = match tokio::time::timeout_at(idle_until, events.recv()).await {
                Err(_) => break,
                Ok(None) => panic!("event channel closed"),
                Ok(Some(ev)) => ev,
            };
            match ev {
                EngineEvent::Output(b) => {
                    nops.feed(&b);
                    mux.handle_incoming(&b, now_ms()).unwrap();
                    while let Some(e) = mux.poll_event() {
                        if let MuxEvent::Data(_, d) = e {
                            echoed.extend_from_slice(&d);
                        }
                    }
                }
                ev => seen.take(ev),
            }
            if seen.closed.is_some() {
                break;
            }
        }
        assert_eq!(echoed, b"ping", "client version {version}");
        if keepalive {
            assert!(
                nops.nops >= 2,
                "{} NOPs for client version {version}",
                nops.nops
            );
            match &seen.closed {
                Some(CloseReason::ChannelClosed { output }) => {
                    assert!(output.contains("keepalive"), "{output}");
                }
                other => panic!("client version {version}: not closed by keepalive: {other:?}"),
            }
        } else {
            assert_eq!(nops.nops, 0, "client version {version}");
            assert!(seen.closed.is_none(), "{:?}", seen.closed);
            handle.send_flag(Flag::TerminateSession).await.unwrap();
            seen.until_closed(&mut events, Duration::from_secs(10))
                .await;
        }
    }
    env.stop().await;
}

/// The service closes data-channel websockets from time to time (close code 1000): the
/// engine resumes, and a shell flood arrives whole, once, in order. The test stops taking
/// output early in the flood until the service has closed the websocket once more, so a
/// close lands in the middle of it however fast the machine runs the shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_side_closes_lose_nothing_in_a_shell_flood() {
    let env = start(Faults::parse("close-every=300ms").unwrap()).await;
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    // About 5 MB: more than the client and the agent hold between them (the client's 1 MiB
    // of undelivered output, the agent's outgoing window, the socket buffers), so the
    // shell is still writing when the test stops taking output.
    let seen = numbered_lines_with_pause(&api, &target, "line", 400_000, async || {
        let closes = env.sb().state().fault_counts().service_closes;
        eventually("a service close", Duration::from_secs(10), || {
            env.sb().state().fault_counts().service_closes > closes
        })
        .await;
    })
    .await;
    assert!(seen.reconnected > 0, "the engine resumed");
    env.stop().await;
}

/// A path that dies without a close (a laptop that slept, a Wi-Fi change: the websocket stays
/// open but nothing comes back, not even pongs) is noticed within `dead_after` and resumed,
/// again and again, with every line of output delivered once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_dies_silently_is_noticed_by_pings_and_resumed() {
    let env = start(Faults::parse("blackhole-every=800ms").unwrap()).await;
    let api = env.api("alice").await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let (handle, mut events) = open_with(&api, &target, "SSM-sudo", &[], |o| {
        o.ping_interval = Duration::from_millis(100);
        o.dead_after = Duration::from_millis(500);
    })
    .await;
    let mut seen = Seen::default();
    handle
        .send(b"for i in $(seq 1 40); do echo beat-$i; sleep 0.1; done; exit\n".to_vec())
        .await
        .unwrap();
    seen.until_closed(&mut events, Duration::from_secs(90))
        .await;
    assert!(
        matches!(seen.closed, Some(CloseReason::ChannelClosed { .. })),
        "{:?}",
        seen.closed
    );
    let expected: String = (1..=40).map(|i| format!("beat-{i}\r\n")).collect();
    assert_eq!(
        count(&seen.text(), &expected),
        1,
        "every line once, in order"
    );
    let counts = env.sb().state().fault_counts();
    assert!(counts.blackholes >= 2, "{counts:?}");
    assert!(seen.reconnected >= 2, "{} resumes", seen.reconnected);
    env.stop().await;
}
