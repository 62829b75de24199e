//! Port forwarding and `ssmtui proxy` end to end, over loopback against an in-process sandbox
//! whose agent dials real TCP targets: the real binary as a child process where the user's view
//! matters (listener lines, stderr, exit codes, the audit log), the engine API where a test
//! needs the forward's counters (reconnects, sessions).
//!
//! Every server is started by its test on port 0 and stopped at its end; every child process is
//! killed on drop; every wait is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use crate::common::eventually;
use crate::common::sandbox::{SandboxEnv, faithful, fast};

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use ssmtui::access::Who;
use ssmtui::audit::{AuditLog, SessionKind};
use ssmtui::aws::Instance;
use ssmtui::aws::SsmApi;
use ssmtui::engine::forward::{self, Acceptor, ForwardHandle};
use ssmtui::forwarding::{DOC_PORT, DOC_REMOTE_HOST, ForwardSpec, ForwardState};
use ssmtui::launch::{ForwardPlan, Launcher};
use ssmtui::sandbox::world::CURRENT_AGENT_VERSION;
use ssmtui::sandbox::{Faults, SandboxConfig, SessionStatus};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

const CONFIG: &str = r#"
[classes.sudo]
document = "SSM-sudo"
forward_documents = ["AWS-StartPortForwardingSession", "AWS-StartPortForwardingSessionToRemoteHost"]
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*"]
"#;

const MIB: usize = 1 << 20;

/// The agent version the seeded world gives a few instances, old enough for basic mode.
const OLD_AGENT: &str = "3.0.161.0";

// ---------------------------------------------------------------------------------------------
// Byte streams with known digests

/// An endless stream: a random block whose length (a prime) is unrelated to any frame or
/// buffer size, repeated. A lost, duplicated or reordered frame changes the digest.
#[derive(Clone)]
struct Pattern(Arc<Vec<u8>>);

impl Pattern {
    fn new(seed: u64) -> Self {
        const LEN: usize = 1_048_573;
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut block = Vec::with_capacity(LEN + 8);
        while block.len() < LEN {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            block.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        block.truncate(LEN);
        Self(Arc::new(block))
    }

    /// The bytes at stream offset `pos`, at most `max` of them.
    fn at(&self, pos: usize, max: usize) -> &[u8] {
        let off = pos % self.0.len();
        let end = (off + max).min(self.0.len());
        &self.0[off..end]
    }

    /// Writes `total` bytes and shuts the writer down; returns their digest.
    async fn write_to(&self, w: &mut (impl AsyncWrite + Unpin), total: usize) -> [u8; 32] {
        let digest = self.write_only(w, total).await;
        w.shutdown().await.unwrap();
        digest
    }

    /// Writes `total` bytes (the writer stays open); returns their digest.
    async fn write_only(&self, w: &mut (impl AsyncWrite + Unpin), total: usize) -> [u8; 32] {
        let mut hash = Sha256::new();
        let mut sent = 0;
        while sent < total {
            let chunk = self.at(sent, (total - sent).min(256 * 1024));
            hash.update(chunk);
            w.write_all(chunk).await.unwrap();
            sent += chunk.len();
        }
        w.flush().await.unwrap();
        hash.finalize().into()
    }
}

/// Reads to end of file; returns the byte count and digest.
async fn drain(r: &mut (impl AsyncRead + Unpin)) -> (usize, [u8; 32]) {
    drain_counting(r, &AtomicUsize::new(0)).await
}

/// [`drain`], counting the bytes in `progress` as they come.
async fn drain_counting(
    r: &mut (impl AsyncRead + Unpin),
    progress: &AtomicUsize,
) -> (usize, [u8; 32]) {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0;
    loop {
        match r.read(&mut buf).await {
            Ok(0) => break,
            Ok(k) => {
                hash.update(&buf[..k]);
                n += k;
                progress.fetch_add(k, Ordering::Relaxed);
            }
            Err(e) => panic!("read failed after {n} bytes: {e}"),
        }
    }
    (n, hash.finalize().into())
}

fn hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Local servers (the forwards' targets)

/// A server task, aborted when dropped (so a failing test stops it too).
struct Server<T> {
    addr: SocketAddr,
    task: JoinHandle<T>,
    accepts: Arc<AtomicUsize>,
}

impl<T> Server<T> {
    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// Its result, within `limit`.
    async fn result(&mut self, limit: Duration) -> T {
        tokio::time::timeout(limit, &mut self.task)
            .await
            .expect("the server did not finish in time")
            .unwrap()
    }
}

impl<T> Drop for Server<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts one connection, reads it to the end: `(bytes, digest)`. `progress` counts the
/// bytes read so far.
async fn sink_server(progress: Arc<AtomicUsize>) -> Server<(usize, [u8; 32])> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepts);
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        counter.fetch_add(1, Ordering::SeqCst);
        drain_counting(&mut sock, &progress).await
    });
    Server {
        addr,
        task,
        accepts,
    }
}

/// Accepts one connection, writes `total` pattern bytes and closes: their digest.
async fn source_server(pattern: Pattern, total: usize) -> Server<[u8; 32]> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepts);
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        counter.fetch_add(1, Ordering::SeqCst);
        pattern.write_to(&mut sock, total).await
    });
    Server {
        addr,
        task,
        accepts,
    }
}

/// An echo server on `ip`, port 0, for any number of connections.
async fn echo_server(ip: &str) -> Server<()> {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepts);
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            conns.spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Server {
        addr,
        task,
        accepts,
    }
}

/// A server that talks first and does not stop: connection `k` (from 0) gets the byte
/// `b'A' + k` over and over until the peer goes away.
async fn chatty_server() -> Server<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepts);
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let k = counter.fetch_add(1, Ordering::SeqCst);
            let byte = b'A' + u8::try_from(k).unwrap();
            conns.spawn(async move {
                let chunk = vec![byte; 4096];
                while sock.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    Server {
        addr,
        task,
        accepts,
    }
}

/// Connects to `addr`, sends `total` pattern bytes while reading the echo, and closes once the
/// whole echo is back: the agent has no half-close, so a client that shut down its sending
/// side first would have its echo cut short (forward.rs module docs). Returns the digests sent
/// and received, the bytes received, and how long it took.
async fn echo_through(
    addr: SocketAddr,
    pattern: Pattern,
    total: usize,
) -> ([u8; 32], [u8; 32], usize, Duration) {
    let started = Instant::now();
    let sock = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = sock.into_split();
    let writer = tokio::spawn(async move {
        let digest = pattern.write_only(&mut w, total).await;
        (digest, w)
    });
    let (n, got) = drain_exact(&mut r, total).await;
    let (sent, w) = writer.await.unwrap();
    drop((r, w));
    (sent, got, n, started.elapsed())
}

/// Reads `total` bytes (fewer if the stream ends first): the count and digest.
async fn drain_exact(r: &mut (impl AsyncRead + Unpin), total: usize) -> (usize, [u8; 32]) {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0;
    while n < total {
        let want = (total - n).min(buf.len());
        match r.read(&mut buf[..want]).await {
            Ok(0) => break,
            Ok(k) => {
                hash.update(&buf[..k]);
                n += k;
            }
            Err(e) => panic!("read failed after {n} bytes: {e}"),
        }
    }
    (n, hash.finalize().into())
}

// ---------------------------------------------------------------------------------------------
// The sandbox and the binary

/// The shared sandbox environment with this file's config, plus forwards.
struct Env(SandboxEnv);

impl std::ops::Deref for Env {
    type Target = SandboxEnv;
    fn deref(&self) -> &SandboxEnv {
        &self.0
    }
}

impl Env {
    /// The agent as fast as it can be: these tests move many MiB or inject faults
    /// ([`Env::start_faithful`] is the real cadence).
    async fn start(faults: Faults) -> Self {
        Self::start_with(SandboxConfig { faults, ..fast() }).await
    }

    /// The agent paced like the real one.
    async fn start_faithful() -> Self {
        Self::start_with(faithful()).await
    }

    async fn start_with(config: SandboxConfig) -> Self {
        Self(SandboxEnv::start(CONFIG, config).await)
    }

    async fn stop(self) {
        self.0.stop().await;
    }

    /// Starts a forward through the engine API on a fresh 127.0.0.1:0 listener.
    async fn forward(&self, target: &str, remote_port: u16) -> ForwardHandle {
        let spec = ForwardSpec::parse(&format!("0:{remote_port}")).unwrap();
        let listener = forward::bind(&spec).await.unwrap();
        let api: Arc<dyn SsmApi> = self.api("alice").await;
        let launcher = Launcher {
            who: Who {
                identity: api.caller_identity().await.unwrap(),
                class: None,
                profile: None,
                region: Some(self.sb().state().region().to_owned()),
            },
            api,
            audit: AuditLog::new(self.home.path().join("state/audit.jsonl"), 1 << 30, 0),
            tuning: ssmtui::engine::SessionTuning::default(),
        };
        let instance = Instance {
            id: target.to_owned(),
            ..Instance::default()
        };
        launcher
            .forward(
                ForwardPlan {
                    kind: SessionKind::Forward,
                    instance: instance.clone(),
                    spec: spec.clone(),
                    document: spec.document().to_owned(),
                    reason: None,
                    keepalive: false,
                    sessions: 1,
                },
                Acceptor::Tcp(listener),
            )
            .await
            .unwrap()
    }

    /// The binary as alice, pointed at `endpoint` (the sandbox, or somewhere else).
    fn cmd(&self, endpoint: &str) -> Command {
        self.cmd_as(endpoint, "alice")
    }

    /// The binary as `who`, pointed at `endpoint`.
    fn cmd_as(&self, endpoint: &str, who: &str) -> Command {
        let mut cmd = self.tokio_cmd(who);
        cmd.env("AWS_ENDPOINT_URL", endpoint);
        cmd
    }

    /// `ssmtui forward TARGET SPEC…`, once it has printed one listener line per spec.
    async fn forward_cli(&self, target: &str, specs: &[&str]) -> Cli {
        let mut cmd = self.cmd(&self.sb().endpoint_url());
        cmd.arg("forward")
            .arg(target)
            .args(specs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut cli = Cli::spawn(cmd);
        let mut stdout = BufReader::new(cli.child.stdout.take().unwrap());
        let mut line = String::new();
        // Flags (`--sessions=3`) may come among the specs; each spec prints one line.
        let listeners = specs.iter().filter(|s| !s.starts_with('-')).count();
        while cli.listeners.len() < listeners {
            line.clear();
            let n = tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line))
                .await
                .unwrap_or_else(|_| {
                    panic!("no listener line within 30 s; stderr:\n{}", cli.stderr())
                })
                .unwrap();
            assert!(n > 0, "stdout closed early; stderr:\n{}", cli.stderr());
            let (addr, dest) = parse_listener_line(&line);
            cli.listeners.push(addr);
            cli.lines.push(dest);
        }
        cli.stdout = Some(stdout);
        cli
    }
}

/// `forwarding 127.0.0.1:PORT -> NAME (ID):REMOTE` → the address and what follows `->`.
fn parse_listener_line(line: &str) -> (SocketAddr, String) {
    let rest = line
        .strip_prefix("forwarding ")
        .unwrap_or_else(|| panic!("not a listener line: {line:?}"));
    let (addr, dest) = rest.split_once(" -> ").unwrap();
    (addr.parse().unwrap(), dest.trim().to_owned())
}

/// A running `ssmtui` child: its listeners (for `forward`) and everything it wrote to stderr.
struct Cli {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stderr_task: JoinHandle<()>,
    stdout: Option<BufReader<ChildStdout>>,
    listeners: Vec<SocketAddr>,
    lines: Vec<String>,
}

impl Cli {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        let stderr_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            stderr,
            stderr_task,
            stdout: None,
            listeners: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr satisfies `done`.
    async fn wait_stderr(&self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&self.stderr()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM (through the `kill` command: this crate forbids `unsafe`), then the exit status
    /// and the whole stderr.
    async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().unwrap();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        self.wait(Duration::from_secs(15)).await
    }

    /// Waits for the child to exit by itself.
    async fn wait(&mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("ssmtui did not exit in time; stderr:\n{}", self.stderr()))
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.stderr_task).await;
        (status, self.stderr())
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Uploads `mib` MiB through one forward to a sink and downloads `mib` MiB through another
/// from a source, both through the real binary; checks digests, exit status and the audit log.
async fn transfer_each_way(mib: usize, limit: Duration) {
    let env = Env::start(Faults::default()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let total = mib * MIB;
    let pattern = Pattern::new(1);
    let up_progress = Arc::new(AtomicUsize::new(0));
    let down_progress = Arc::new(AtomicUsize::new(0));
    let mut sink = sink_server(Arc::clone(&up_progress)).await;
    let mut source = source_server(Pattern::new(2), total).await;
    let cli = env
        .forward_cli(
            &target,
            &[
                &format!("0:{}", sink.port()),
                &format!("0:{}", source.port()),
            ],
        )
        .await;
    for (addr, remote) in cli.listeners.iter().zip([sink.port(), source.port()]) {
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
        assert!(
            cli.lines
                .iter()
                .any(|l| l.contains(&target) && l.ends_with(&format!(":{remote}"))),
            "{:?}",
            cli.lines
        );
    }

    let t = Instant::now();
    let mut up = TcpStream::connect(cli.listeners[0]).await.unwrap();
    let stalled = |what: &str, progress: &AtomicUsize| {
        format!(
            "{what} timed out after {} of {total} bytes; sandbox sessions: {:?}",
            progress.load(Ordering::Relaxed),
            env.sb()
                .state()
                .sessions()
                .iter()
                .map(|s| (s.session_id.clone(), s.status))
                .collect::<Vec<_>>()
        )
    };
    let sent = tokio::time::timeout(limit, pattern.write_to(&mut up, total))
        .await
        .unwrap_or_else(|_| panic!("{}", stalled("upload", &up_progress)));
    let (n, got) = tokio::time::timeout(limit, &mut sink.task)
        .await
        .unwrap_or_else(|_| panic!("{}", stalled("upload", &up_progress)))
        .unwrap();
    let upload = t.elapsed();
    assert_eq!(n, total);
    assert_eq!(hex(&got), hex(&sent), "upload digest");
    drop(up);

    let t = Instant::now();
    let mut down = TcpStream::connect(cli.listeners[1]).await.unwrap();
    let (n, got) = tokio::time::timeout(limit, drain_counting(&mut down, &down_progress))
        .await
        .unwrap_or_else(|_| panic!("{}", stalled("download", &down_progress)));
    let sent = source.result(limit).await;
    let download = t.elapsed();
    assert_eq!(n, total);
    assert_eq!(hex(&got), hex(&sent), "download digest");
    let rate = |d: Duration| mib as f64 / d.as_secs_f64();
    eprintln!(
        "{mib} MiB up in {upload:.1?} ({:.1} MiB/s), down in {download:.1?} ({:.1} MiB/s)",
        rate(upload),
        rate(download)
    );

    let (status, stderr) = cli.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");

    // One session per forward, each with a start and an end line carrying its byte counts.
    let audit = env.audit_lines();
    let starts: Vec<&Value> = audit.iter().filter(|l| l["event"] == "start").collect();
    let ends: Vec<&Value> = audit.iter().filter(|l| l["event"] == "end").collect();
    assert_eq!((starts.len(), ends.len()), (2, 2), "{audit:#?}");
    for line in &audit {
        assert_eq!(line["kind"], "forward", "{line}");
        assert_eq!(line["target_id"], target.as_str(), "{line}");
        assert_eq!(line["document"], DOC_PORT, "{line}");
    }
    let mut counts: Vec<(u64, u64)> = ends
        .iter()
        .map(|l| {
            assert!(
                starts.iter().any(|s| s["session_id"] == l["session_id"]),
                "{l}"
            );
            (
                l["bytes_sent"].as_u64().unwrap(),
                l["bytes_received"].as_u64().unwrap(),
            )
        })
        .collect();
    counts.sort_unstable();
    let total = total as u64;
    assert_eq!(counts, vec![(0, total), (total, 0)], "{audit:#?}");
    assert_eq!(env.active_sessions(), 0, "SIGTERM terminated both sessions");
    env.stop().await;
}

/// The issue's size, 256 MiB each way through `ssmtui forward`, arrives exact; the audit log
/// has a start and an end line per session with the bytes moved. (~20 s each way in a debug
/// build on the shared 2-core machine.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_256_mib_each_way_is_exact_and_audited() {
    transfer_each_way(256, Duration::from_secs(300)).await;
}

/// Many parallel connections through one forward (one session, one smux stream each): every
/// echo comes back exact. Prints the slowest/fastest completion ratio (fairness; not asserted).
async fn parallel_echoes(conns: usize, each: usize, limit: Duration) {
    let env = Env::start(Faults::default()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let echo = echo_server("127.0.0.1").await;
    let cli = env
        .forward_cli(&target, &[&format!("0:{}", echo.port())])
        .await;
    let addr = cli.listeners[0];
    let patterns: Vec<Pattern> = (0..8).map(|s| Pattern::new(100 + s)).collect();
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..conns {
        // Connections sharing a pattern start at different offsets, so no two streams agree.
        let pattern = patterns[i % patterns.len()].clone();
        set.spawn(async move {
            let skip = i * 4099;
            let sock = TcpStream::connect(addr).await.unwrap();
            let t = Instant::now();
            let (mut r, mut w) = sock.into_split();
            let writer = tokio::spawn(async move {
                let mut hash = Sha256::new();
                let mut sent = 0;
                while sent < each {
                    let chunk = pattern.at(skip + sent, (each - sent).min(64 * 1024));
                    hash.update(chunk);
                    w.write_all(chunk).await.unwrap();
                    sent += chunk.len();
                }
                (<[u8; 32]>::from(hash.finalize()), w)
            });
            // The whole echo, then close (no half-close through the agent).
            let (n, got) = drain_exact(&mut r, each).await;
            let (sent, w) = writer.await.unwrap();
            drop((r, w));
            (i, sent, got, n, t.elapsed())
        });
    }
    let mut times = Vec::new();
    let all = tokio::time::timeout(limit, async {
        while let Some(done) = set.join_next().await {
            let (i, sent, got, n, took) = done.unwrap();
            assert_eq!(n, each, "connection {i}: bytes");
            assert_eq!(hex(&got), hex(&sent), "connection {i}: digest");
            times.push(took);
        }
    })
    .await;
    assert!(
        all.is_ok(),
        "{} of {conns} connections finished in {limit:?}",
        times.len()
    );
    let total = started.elapsed();
    let (min, max) = (times.iter().min().unwrap(), times.iter().max().unwrap());
    eprintln!(
        "{conns} connections x {} KiB echoed in {total:.1?}; fastest {min:.1?}, slowest {max:.1?}, max/min ratio {:.2}",
        each / 1024,
        max.as_secs_f64() / min.as_secs_f64()
    );
    assert_eq!(echo.accepted(), conns);
    assert_eq!(
        env.sb().state().sessions().len(),
        1,
        "every connection shared one session"
    );
    let (status, stderr) = cli.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    env.stop().await;
}

/// The issue's size: 64 connections x 4 MiB echoed through one forward (256 MiB each way;
/// ~45 s in a debug build here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_64_x_4_mib_share_one_session_and_agree() {
    parallel_echoes(64, 4 * MIB, Duration::from_secs(300)).await;
}

/// `0:127.0.0.2:PORT` uses the remote-host document and reaches a server listening only on
/// the second loopback address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_host_forward_reaches_a_second_loopback_address() {
    let env = Env::start(Faults::default()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let echo = echo_server("127.0.0.2").await;
    let spec = format!("0:127.0.0.2:{}", echo.port());
    let cli = env.forward_cli(&target, &[&spec]).await;
    assert!(
        cli.lines[0].ends_with(&format!(":127.0.0.2:{}", echo.port())),
        "{}",
        cli.lines[0]
    );
    let (sent, got, n, _) = echo_through(cli.listeners[0], Pattern::new(3), 2 * MIB).await;
    assert_eq!(n, 2 * MIB);
    assert_eq!(hex(&got), hex(&sent));
    assert_eq!(echo.accepted(), 1);
    let sessions = env.sb().state().sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0].document.name,
        "AWS-StartPortForwardingSessionToRemoteHost"
    );
    assert_eq!(
        sessions[0].parameters.get("host"),
        Some(&vec!["127.0.0.2".to_owned()])
    );
    let (status, stderr) = cli.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    env.stop().await;
}

/// A host outside loopback is refused by the sandbox's agent: the local connection closes
/// without data, the forward stays up, and the user reads why on stderr, once per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_host_is_refused_and_reported() {
    let env = Env::start(Faults::default()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let cli = env.forward_cli(&target, &["0:10.1.2.3:80"]).await;
    let message = "the agent could not connect to 10.1.2.3:80";
    for attempt in 1..=2 {
        let mut sock = TcpStream::connect(cli.listeners[0]).await.unwrap();
        let _ = sock.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(20), sock.read(&mut buf))
            .await
            .expect("the refused connection was not closed");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "no data from a refused target: {read:?}"
        );
        cli.wait_stderr(&format!("message {attempt}"), |e| {
            e.matches(message).count() >= attempt
        })
        .await;
    }
    // The second attempt found the listener up, on the same session.
    assert_eq!(env.sb().state().sessions().len(), 1);
    let (status, stderr) = cli.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    assert_eq!(
        stderr.matches(message).count(),
        2,
        "reported once per attempt:\n{stderr}"
    );
    env.stop().await;
}

/// The issue's fault case: with the websocket dropped every 2 s and frames duplicated and
/// reordered, 256 MiB echoed through the engine's forward (256 MiB each way) comes back
/// exact, the session is kept, and the forward's stats count the reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_leave_a_256_mib_transfer_exact_and_show_reconnects() {
    let faults = Faults::parse("drop-every=2s,dup=0.02,reorder=0.02,seed=5").unwrap();
    let env = Env::start(faults).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let echo = echo_server("127.0.0.1").await;
    let fwd = env.forward(&target, echo.port()).await;
    let addr = fwd.local_addr().unwrap();
    let total = 256 * MIB;
    let (sent, got, n, took) = tokio::time::timeout(
        Duration::from_secs(300),
        echo_through(addr, Pattern::new(10), total),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "echo under faults timed out: {:?} {:?}",
            fwd.stats().snapshot(),
            env.sb().state().fault_counts()
        )
    });
    assert_eq!(n, total);
    assert_eq!(hex(&got), hex(&sent));
    // The drops come every 2 s of a connection's life, so a machine that echoes 512 MiB in
    // under 4 s sees fewer than two of them: more echoes, each exact, until two reconnects
    // have happened (on this VM the 256 MiB alone takes about 10 s and 5 reconnects).
    let mut echoed = total;
    let mut extra = 0;
    while fwd.stats().snapshot().reconnects < 2 {
        extra += 1;
        assert!(
            extra <= 20,
            "no second reconnect: {:?}",
            fwd.stats().snapshot()
        );
        let more = 32 * MIB;
        let (sent, got, n, _) = echo_through(addr, Pattern::new(10 + extra), more).await;
        assert_eq!(n, more);
        assert_eq!(hex(&got), hex(&sent));
        echoed += more;
    }
    let snap = fwd.stats().snapshot();
    let counts = env.sb().state().fault_counts();
    eprintln!(
        "{} MiB echoed exact under faults in {took:.1?} (+{extra} × 32 MiB); {} reconnects; {counts:?}",
        total / MIB,
        snap.reconnects
    );
    // Time-based drops are not in `counts.drops` (the sandbox counts only message-count
    // drops); the reconnects are what proves them.
    assert!(snap.reconnects >= 2, "{snap:?}");
    assert!(counts.duplicates > 0 && counts.reorders > 0, "{counts:?}");
    assert_eq!(snap.sessions, 1, "drops are absorbed, the session is kept");
    // The echo can be read before the forward's writer has counted its last write.
    eventually("the forward's byte counts", Duration::from_secs(10), || {
        let snap = fwd.stats().snapshot();
        snap.bytes_out == echoed as u64 && snap.bytes_in == echoed as u64
    })
    .await;
    fwd.stop().await;
    env.stop().await;
}

/// The default listener is on 127.0.0.1 only; a port in use fails with exit 2 and the bind
/// message before any AWS call (AWS points at a closed port, and the sandbox sees no session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_is_loopback_only_and_a_busy_port_fails_before_aws() {
    let env = Env::start(Faults::default()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let echo = echo_server("127.0.0.1").await;
    let cli = env
        .forward_cli(&target, &[&format!("0:{}", echo.port())])
        .await;
    let addr = cli.listeners[0];
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    let other = SocketAddr::from(([127, 0, 0, 2], addr.port()));
    let refused = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(other))
        .await
        .unwrap();
    assert!(refused.is_err(), "{other} must not accept: {refused:?}");
    let (sent, got, n, _) = echo_through(addr, Pattern::new(4), 64 * 1024).await;
    assert_eq!((n, hex(&got)), (64 * 1024, hex(&sent)));
    let (status, stderr) = cli.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");

    // The port the forward would need is taken.
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let sessions_before = env.sb().state().sessions().len();
    for endpoint in [closed, env.sb().endpoint_url()] {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            env.cmd(&endpoint)
                .args(["forward", &target, &format!("{port}:22")])
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{endpoint}: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: cannot listen on 127.0.0.1:{port}: ")),
            "{stderr}"
        );
        assert!(
            stderr.contains(
                "hint: another program uses that port; pick another local port, or 0 for any free one"
            ),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    assert_eq!(env.sb().state().sessions().len(), sessions_before);
    drop(taken);
    env.stop().await;
}

/// Basic mode (an old agent): connections take turns on one session, separated by the
/// DisconnectToPort flag, and the second connection never sees bytes meant for the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_mode_takes_connections_in_turn() {
    let env = Env::start(Faults::default()).await;
    let target = env.linux(OLD_AGENT);
    let echo = echo_server("127.0.0.1").await;
    let chatty = chatty_server().await;
    let cli = env
        .forward_cli(
            &target,
            &[
                &format!("0:{}", echo.port()),
                &format!("0:{}", chatty.port()),
            ],
        )
        .await;

    // Basic mode has no half-close (the flag closes both directions), so each client reads
    // its whole echo before it closes.
    for round in 1..=2 {
        let t = Instant::now();
        let sock = TcpStream::connect(cli.listeners[0]).await.unwrap();
        let (mut r, mut w) = sock.into_split();
        let pattern = Pattern::new(20 + round);
        let writer = tokio::spawn(async move {
            let digest = pattern.write_only(&mut w, MIB).await;
            (digest, w)
        });
        let mut echoed = vec![0u8; MIB];
        tokio::time::timeout(Duration::from_secs(30), r.read_exact(&mut echoed))
            .await
            .expect("basic-mode echo timed out")
            .unwrap();
        let (sent, w) = writer.await.unwrap();
        drop((r, w));
        let got: [u8; 32] = Sha256::digest(&echoed).into();
        let took = t.elapsed();
        assert_eq!(hex(&got), hex(&sent), "connection {round}");
        eprintln!("basic mode: connection {round} echoed 1 MiB in {took:.1?}");
        eventually("the target connection", Duration::from_secs(10), || {
            echo.accepted() as u64 == round
        })
        .await;
    }

    // The chatty target streams 'A's to the first connection until the agent closes it; none
    // of them may reach the second connection, which must get only 'B's.
    for (round, byte) in [(1, b'A'), (2, b'B')] {
        let mut sock = TcpStream::connect(cli.listeners[1]).await.unwrap();
        // Basic mode dials the target on the first bytes from the client.
        sock.write_all(b"hi").await.unwrap();
        let mut got = vec![0u8; 256 * 1024];
        tokio::time::timeout(Duration::from_secs(20), sock.read_exact(&mut got))
            .await
            .expect("no data from the chatty target")
            .unwrap();
        let wrong = got.iter().filter(|&&b| b != byte).count();
        assert_eq!(
            wrong,
            0,
            "connection {round}: {wrong} bytes were not {:?} (first: {:?})",
            byte as char,
            got.iter().find(|&&b| b != byte).map(|&b| b as char)
        );
        drop(sock);
        if round == 1 {
            eventually(
                "the first target connection",
                Duration::from_secs(10),
                || chatty.accepted() == 1,
            )
            .await;
        }
    }
    assert_eq!(chatty.accepted(), 2);
    assert_eq!(
        env.sb().state().sessions().len(),
        2,
        "one session per forward"
    );
    let (status, stderr) = cli.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    env.stop().await;
}

/// `ssmtui proxy TARGET PORT` carries a byte stream between stdin/stdout and a loopback echo
/// server intact, exits 0 when stdin closes, and audits the session as `proxy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_carries_a_byte_stream_intact() {
    let env = Env::start(Faults::default()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let echo = echo_server("127.0.0.1").await;
    let total = 8 * MIB;
    let mut cmd = env.cmd(&env.sb().endpoint_url());
    cmd.args(["proxy", &target, &echo.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut cli = Cli::spawn(cmd);
    let mut stdin = cli.child.stdin.take().unwrap();
    let mut stdout = cli.child.stdout.take().unwrap();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        // Closing stdin (shutdown + drop) ends the proxy.
        Pattern::new(30).write_to(&mut stdin, total).await
    });
    let (n, got) = tokio::time::timeout(Duration::from_secs(60), drain(&mut stdout))
        .await
        .unwrap_or_else(|_| panic!("proxy output timed out; stderr:\n{}", cli.stderr()));
    let sent = writer.await.unwrap();
    assert_eq!(n, total, "stderr:\n{}", cli.stderr());
    assert_eq!(hex(&got), hex(&sent));
    let (status, stderr) = cli.wait(Duration::from_secs(20)).await;
    eprintln!(
        "proxy: {} MiB echoed in {:.1?}",
        total / MIB,
        started.elapsed()
    );
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    assert_eq!(echo.accepted(), 1);

    let audit = env.audit_lines();
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert_eq!(audit[0]["event"], "start");
    assert_eq!(audit[1]["event"], "end");
    for line in &audit {
        assert_eq!(line["kind"], "proxy", "{line}");
        assert_eq!(line["target_id"], target.as_str());
    }
    assert_eq!(audit[0]["session_id"], audit[1]["session_id"]);
    assert_eq!(audit[1]["bytes_sent"], total as u64);
    assert_eq!(audit[1]["bytes_received"], total as u64);
    assert_eq!(env.active_sessions(), 0, "the proxy terminated its session");
    env.stop().await;
}

/// The other way round: the target talks and closes while ssh (stdin) stays open. The proxy
/// must pass everything on and end — it used to wait forever, because the stream's end showed
/// only once more data came from the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_ends_when_the_target_closes_first() {
    let env = Env::start(Faults::default()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let total = MIB;
    let mut source = source_server(Pattern::new(31), total).await;
    let mut cmd = env.cmd(&env.sb().endpoint_url());
    cmd.args(["proxy", &target, &source.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut cli = Cli::spawn(cmd);
    // Held open, never written: the local side does not end the stream.
    let _stdin = cli.child.stdin.take().unwrap();
    let mut stdout = cli.child.stdout.take().unwrap();
    let (n, got) = tokio::time::timeout(Duration::from_secs(60), drain(&mut stdout))
        .await
        .unwrap_or_else(|_| panic!("the proxy did not end; stderr:\n{}", cli.stderr()));
    let sent = source.result(Duration::from_secs(10)).await;
    assert_eq!(
        (n, hex(&got)),
        (total, hex(&sent)),
        "stderr:\n{}",
        cli.stderr()
    );
    let (status, stderr) = cli.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    assert_eq!(env.active_sessions(), 0, "the proxy terminated its session");
    let audit = env.audit_lines();
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert_eq!(audit[1]["bytes_received"], total as u64);
    env.stop().await;
}

/// When the session ends under it (TerminateSession elsewhere), the forward closes its open
/// connection, keeps listening, and starts a new session for the next connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_session_is_replaced_on_the_next_connection() {
    let env = Env::start(Faults::default()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let echo = echo_server("127.0.0.1").await;
    let fwd = env.forward(&target, echo.port()).await;
    let addr = fwd.local_addr().unwrap();

    let (sent, got, n, _) = echo_through(addr, Pattern::new(40), MIB).await;
    assert_eq!((n, hex(&got)), (MIB, hex(&sent)));
    // A connection left open across the end of the session.
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), open.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");

    let first = fwd.stats().snapshot();
    assert_eq!(first.sessions, 1);
    let id = first.session_id.clone().unwrap();
    assert!(env.sb().state().end_session(&id, SessionStatus::Terminated));
    eventually("the forward to notice", Duration::from_secs(20), || {
        fwd.stats().snapshot().state == ForwardState::Idle
    })
    .await;
    let read = tokio::time::timeout(Duration::from_secs(10), open.read(&mut buf))
        .await
        .expect("the open connection was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let idle = fwd.stats().snapshot();
    assert_eq!(idle.sessions, 1, "no new session without demand");
    assert!(idle.last_error.is_some(), "{idle:?}");

    let (sent, got, n, _) = tokio::time::timeout(
        Duration::from_secs(30),
        echo_through(addr, Pattern::new(41), MIB),
    )
    .await
    .expect("echo after replacement timed out");
    assert_eq!((n, hex(&got)), (MIB, hex(&sent)));
    let after = fwd.stats().snapshot();
    assert_eq!(after.sessions, 2, "{after:?}");
    assert_ne!(after.session_id.as_deref(), Some(id.as_str()));
    assert_eq!(fwd.local_addr(), Some(addr), "the listener stayed up");
    assert_eq!(env.sb().state().sessions().len(), 2);
    fwd.stop().await;
    eventually("the second session to end", Duration::from_secs(10), || {
        env.active_sessions() == 0
    })
    .await;
    env.stop().await;
}

/// Three forwards each downloading 64 MiB at once, all in this process, so the client is
/// slower than the sandbox agent. Regression test: the driver used to keep reading the
/// websocket while its consumer was behind, so the in-order message was refused (no ack) while
/// the ones after it were stored; once the reorder buffer was full every refusal left a hole
/// the agent refilled at one message per 100 ms resend tick, and the downloads crawled at
/// ~10 KB/s for minutes. A download that moves less than 1 MiB in 20 s fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_downloads_do_not_stall() {
    let env = Env::start(Faults::default()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let total = 64 * MIB;
    let mut tasks = Vec::new();
    for k in 0..3u64 {
        let source = source_server(Pattern::new(50 + k), total).await;
        let fwd = env.forward(&target, source.port()).await;
        tasks.push(tokio::spawn(async move {
            let progress = Arc::new(AtomicUsize::new(0));
            let mut sock = TcpStream::connect(fwd.local_addr().unwrap()).await.unwrap();
            let p = Arc::clone(&progress);
            let reader = tokio::spawn(async move { drain_counting(&mut sock, &p).await });
            // Progress is sampled every second; less than 1 MiB over any 20 s window is a
            // stall (the old crawl moved ~200 KB in that time; a healthy debug build moves
            // several MiB a second here even on a loaded machine).
            let mut window = std::collections::VecDeque::from([0usize]);
            while !reader.is_finished() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = progress.load(Ordering::Relaxed);
                window.push_back(now);
                if window.len() > 21 {
                    window.pop_front();
                    let moved = now - window.front().copied().unwrap_or(0);
                    assert!(
                        moved >= MIB || reader.is_finished(),
                        "download {k} crawled: {moved} bytes in 20 s, at {now}: {:?}",
                        fwd.stats().snapshot()
                    );
                }
            }
            let (n, _) = reader.await.unwrap();
            assert_eq!(n, total);
            drop(source);
            fwd.stop().await;
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(180), t)
            .await
            .expect("bounded")
            .unwrap();
    }
    env.stop().await;
}

/// bob's class (in this config) allows both forwarding documents, but his IAM policy only
/// the first: of `ssmtui forward T A B`, A starts and B is denied by AWS.
const BOB_FORWARDS: &str = r#"
[classes.no-sudo]
document = "SSM-nosudo"
forward_documents = ["AWS-StartPortForwardingSession", "AWS-StartPortForwardingSessionToRemoteHost"]
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_Developer_*/*"]
"#;

/// When one forward of several cannot start after another has, the ones already running
/// are stopped before the command fails: no session is left open on the service, and each
/// started session has its audit end line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_that_cannot_start_stops_the_ones_already_running() {
    let env = Env::start(Faults::default()).await;
    std::fs::write(env.home.path().join("config.toml"), BOB_FORWARDS).unwrap();
    let target = env.online("dev");
    let echo = echo_server("127.0.0.1").await;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        env.cmd_as(&env.sb().endpoint_url(), "bob")
            .arg("forward")
            .arg(&target)
            .arg(format!("0:{}", echo.port()))
            .arg(format!("0:127.0.0.2:{}", echo.port()))
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("ssmtui forward did not exit")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.starts_with("forwarding 127.0.0.1:"),
        "A started: {stdout}"
    );
    assert!(
        stderr.contains("AWS denied a session") && stderr.contains(DOC_REMOTE_HOST),
        "{stderr}"
    );
    // A was stopped: terminated on the service, and audited start and end.
    let sessions = env.sb().state().sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].status, SessionStatus::Terminated);
    let audit = env.audit_lines();
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert_eq!(
        (&audit[0]["event"], &audit[1]["event"]),
        (&json!("start"), &json!("end"))
    );
    assert_eq!(audit[1]["session_id"], json!(sessions[0].session_id));
    assert_eq!(audit[1]["status"], "terminated", "{audit:#?}");
    assert_eq!(audit[1]["class"], "no-sudo");
    env.stop().await;
}

/// A session whose handshake never comes: the forward gives up after its 30 s, and the
/// session it started is terminated on the service and audited as failed, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_whose_handshake_never_completes_ends_its_session() {
    let env = Env::start(Faults::parse("withhold-handshake").unwrap()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let echo = echo_server("127.0.0.1").await;
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        env.cmd(&env.sb().endpoint_url())
            .arg("forward")
            .arg(&target)
            .arg(format!("0:{}", echo.port()))
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("ssmtui forward did not give up")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("did not complete the port-forwarding handshake within 30 s"),
        "{stderr}"
    );
    assert!(started.elapsed() >= Duration::from_secs(30));
    let sessions = env.sb().state().sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].status, SessionStatus::Terminated);
    let audit = env.audit_lines();
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert_eq!(audit[1]["event"], "end");
    assert_eq!(audit[1]["status"], "failed");
    assert!(
        audit[1]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("did not complete the port-forwarding handshake"),
        "{audit:#?}"
    );
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// What a real agent allows: its cadence, no half-close, service-side closes

/// A download through `ssmtui forward` at the real agent's cadence (1 KiB per message, 1 ms
/// apart) arrives exact, and takes at least a millisecond per KiB (a lower bound: a slow
/// machine cannot fail it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_at_the_real_agents_cadence_is_exact() {
    let env = Env::start_faithful().await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let total = 2 * MIB;
    let mut source = source_server(Pattern::new(50), total).await;
    let cli = env
        .forward_cli(&target, &[&format!("0:{}", source.port())])
        .await;
    let started = Instant::now();
    let mut down = TcpStream::connect(cli.listeners[0]).await.unwrap();
    let (n, got) = tokio::time::timeout(Duration::from_secs(60), drain(&mut down))
        .await
        .expect("the paced download timed out");
    let took = started.elapsed();
    let sent = source.result(Duration::from_secs(10)).await;
    assert_eq!(n, total);
    assert_eq!(hex(&got), hex(&sent));
    eprintln!(
        "paced download: {} MiB in {took:.2?} ({:.2} MB/s)",
        total / MIB,
        total as f64 / took.as_secs_f64() / 1e6
    );
    assert!(
        took >= Duration::from_millis((total / 1024) as u64),
        "{total} bytes in {took:?}: faster than the agent's cadence allows"
    );
    let (status, stderr) = cli.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    env.stop().await;
}

/// A client that sends its request and shuts down its sending side (`nc -N`) still hears the
/// whole answer of a target that answers and closes: ssmtui holds the stream's FIN back while
/// the answer comes (the agent would close the target at the FIN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_request_hears_the_whole_answer() {
    let env = Env::start_faithful().await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = Pattern::new(51);
    let total = 128 * 1024;
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4];
        sock.read_exact(&mut request).await.unwrap();
        // Think a while, then answer and close.
        tokio::time::sleep(Duration::from_millis(500)).await;
        answer.write_to(&mut sock, total).await
    });
    let cli = env.forward_cli(&target, &[&format!("0:{port}")]).await;
    let mut sock = TcpStream::connect(cli.listeners[0]).await.unwrap();
    sock.write_all(b"GET\n").await.unwrap();
    sock.shutdown().await.unwrap();
    let (n, got) = tokio::time::timeout(Duration::from_secs(60), drain(&mut sock))
        .await
        .expect("the answer timed out");
    let sent = server.await.unwrap();
    assert_eq!(n, total, "the whole answer");
    assert_eq!(hex(&got), hex(&sent));
    let (status, stderr) = cli.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    env.stop().await;
}

/// What no client can get through the agent: a target that waits for the end of the input
/// before it answers. The FIN that would tell it closes its connection instead; ssmtui sends
/// it once the stream has been quiet for the linger, and the local client then sees the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_waiting_for_end_of_file_is_closed_after_the_linger() {
    let env = Env::start_faithful().await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut input = Vec::new();
        let _ = sock.read_to_end(&mut input).await;
        // Too late: the agent closed the whole connection, not just its sending side, so
        // this answer goes nowhere.
        let _ = sock.write_all(b"checksum").await;
        input
    });
    let cli = env.forward_cli(&target, &[&format!("0:{port}")]).await;
    let started = Instant::now();
    let mut sock = TcpStream::connect(cli.listeners[0]).await.unwrap();
    sock.write_all(b"0123456789").await.unwrap();
    sock.shutdown().await.unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(30), drain(&mut sock))
        .await
        .expect("the connection was not closed");
    let took = started.elapsed();
    let input = server.await.unwrap();
    assert_eq!(input, b"0123456789", "everything sent arrived");
    assert_eq!(n, 0, "no answer can come back");
    assert!(
        took >= forward::HALF_CLOSE_LINGER,
        "closed after {took:?}, before the linger"
    );
    let (status, stderr) = cli.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    env.stop().await;
}

/// The service closes the data channel's websocket from time to time (close code 1000):
/// the forward resumes its session and the download arrives exact. The test stops reading
/// after the first MiB until the service has closed the websocket once more, so a close
/// lands in the middle of the download however fast the machine moves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_side_closes_leave_a_download_exact() {
    let env = Env::start(Faults::parse("close-every=400ms").unwrap()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let total = 64 * MIB;
    let mut source = source_server(Pattern::new(52), total).await;
    let cli = env
        .forward_cli(&target, &[&format!("0:{}", source.port())])
        .await;
    let mut down = TcpStream::connect(cli.listeners[0]).await.unwrap();
    let mut hash = Sha256::new();
    let mut first = vec![0u8; MIB];
    tokio::time::timeout(Duration::from_secs(60), down.read_exact(&mut first))
        .await
        .expect("the first MiB timed out")
        .unwrap();
    hash.update(&first);
    let closes = env.sb().state().fault_counts().service_closes;
    eventually("a service close", Duration::from_secs(10), || {
        env.sb().state().fault_counts().service_closes > closes
    })
    .await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), down.read_to_end(&mut rest))
        .await
        .expect("the download timed out")
        .unwrap();
    hash.update(&rest);
    let n = first.len() + rest.len();
    let got: [u8; 32] = hash.finalize().into();
    let sent = source.result(Duration::from_secs(10)).await;
    assert_eq!(n, total);
    assert_eq!(hex(&got), hex(&sent));
    let counts = env.sb().state().fault_counts();
    assert!(counts.service_closes > 0, "{counts:?}");
    let (status, stderr) = cli.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    env.stop().await;
}

/// `--sessions 3`: connections are dealt to up to three sessions as they arrive (a fourth
/// connection shares one), every byte echoes back on its own connection, each session has its
/// audit lines, and stopping the forward terminates them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_striped_forward_spreads_connections_over_its_sessions() {
    let env = Env::start(Faults::default()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let echo = echo_server("127.0.0.1").await;
    let cli = env
        .forward_cli(&target, &["--sessions=3", &format!("0:{}", echo.port())])
        .await;
    let live = |env: &Env| {
        env.sb()
            .state()
            .sessions()
            .iter()
            .filter(|s| s.status == ssmtui::sandbox::SessionStatus::Connected)
            .count()
    };
    // The first session starts with the forward.
    crate::common::wait_until("the first session", Duration::from_secs(20), || {
        live(&env) == 1
    });
    let mut conns = Vec::new();
    for k in 0..4u8 {
        let mut c = TcpStream::connect(cli.listeners[0]).await.unwrap();
        // Each connection proves it is open (an echo) before the next one comes, so the
        // dealing is deterministic: three sessions, then the fourth shares one.
        let hello = vec![b'a' + k; 1000];
        c.write_all(&hello).await.unwrap();
        let mut back = vec![0u8; hello.len()];
        tokio::time::timeout(Duration::from_secs(20), c.read_exact(&mut back))
            .await
            .expect("no echo")
            .unwrap();
        assert_eq!(back, hello);
        conns.push(c);
    }
    assert_eq!(live(&env), 3, "three sessions for four connections");
    // All four at once, each with its own bytes.
    let mut tasks = Vec::new();
    for (k, mut c) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let data: Vec<u8> = (0..256 * 1024).map(|i| (i * 7 + k * 13) as u8).collect();
            let (mut r, mut w) = c.split();
            let (_, got) = tokio::join!(w.write_all(&data), async {
                let mut got = vec![0u8; data.len()];
                r.read_exact(&mut got).await.map(|_| got)
            });
            assert!(got.unwrap() == data, "connection {k} got another's bytes");
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("a striped echo timed out")
            .unwrap();
    }
    let (status, stderr) = cli.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    assert_eq!(live(&env), 0, "every session was ended");
    let audit = env.audit_lines();
    let starts = audit.iter().filter(|l| l["event"] == "start").count();
    let ends = audit.iter().filter(|l| l["event"] == "end").count();
    assert_eq!((starts, ends), (3, 3), "{audit:#?}");
    env.stop().await;
}

/// A striped forward whose further session cannot start (the agent just went offline) serves
/// the connection through the session it has instead of dropping it, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_striped_forward_falls_back_to_its_first_session() {
    let env = Env::start(Faults::default()).await;
    let target = env.linux(CURRENT_AGENT_VERSION);
    let echo = echo_server("127.0.0.1").await;
    let cli = env
        .forward_cli(&target, &["--sessions=2", &format!("0:{}", echo.port())])
        .await;
    let mut first = TcpStream::connect(cli.listeners[0]).await.unwrap();
    first.write_all(b"one").await.unwrap();
    let mut back = [0u8; 3];
    first.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"one");
    // No new session can start now; the open one goes on.
    assert!(
        env.sb()
            .state()
            .set_ping_status(&target, ssmtui::sandbox::PingStatus::ConnectionLost)
    );
    let mut second = TcpStream::connect(cli.listeners[0]).await.unwrap();
    second.write_all(b"two").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), second.read_exact(&mut back))
        .await
        .expect("the second connection was not served")
        .unwrap();
    assert_eq!(&back, b"two");
    let sessions = env.sb().state().sessions();
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    drop((first, second));
    let (status, stderr) = cli.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    env.stop().await;
}
