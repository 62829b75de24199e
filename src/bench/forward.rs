//! Group `forward`: bytes through one port forward vs the same bytes through a bare websocket
//! relay (the ceiling) vs raw loopback TCP (issue 9).
//!
//! The three paths end at the same loopback sink, which counts bytes and notes when each
//! connection reaches end of file; a source writes N bytes and closes. Time runs from the
//! source's connect to the sink's end of file.
//!
//! * forward: source → `engine::forward` (ours) → websocket → `ssmtui sandbox` child process
//!   (agent) → sink. smux, 1024-byte data messages, acknowledgements, SHA-256 digests.
//! * relay: source → a TCP-to-websocket relay client (ours, `tokio-tungstenite`) → a
//!   websocket-to-TCP relay server → sink, carrying the bytes in the same 1024-byte binary
//!   messages the data channel is limited to, with no framing, acks or digests: what any
//!   websocket-based forward could reach on this machine.
//! * raw TCP: source → sink.
//!
//! Client CPU: the process CPU time minus the [`IO_THREAD`] threads that run sources, sinks and
//! the relay server ([`super::sys`]); the sandbox is another process. 64 connections: all start
//! at once through the one forward; the spread of their completion times (max/min) shows
//! whether smux shares the session fairly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::{
    ChildSandbox, Figure, Group, IO_THREAD, Results, Sizes, mib_per_s, pick_instance, sys,
};
use crate::audit::SessionKind;
use crate::aws::Instance;
use crate::aws::SsmApi;
use crate::engine::forward::{self, Acceptor, ForwardHandle};
use crate::forwarding::{DOC_PORT, ForwardSpec};
use crate::launch::ForwardPlan;

/// Bytes per websocket message in the relay: the data channel's payload limit.
const RELAY_MESSAGE: usize = 1024;
/// Source write size.
const WRITE_CHUNK: usize = 64 * 1024;
/// Rounds of the single-connection measurements in full mode.
const ROUNDS: usize = 3;
/// Longest any single measurement may take before the group gives up.
const LIMIT: Duration = Duration::from_secs(900);

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Runs the group.
pub async fn run(sizes: Sizes, io: &Handle) -> anyhow::Result<Results> {
    let total: u64 = sizes.pick(16 << 20, 1 << 30);
    let per_conn: u64 = sizes.pick(256 << 10, 4 << 20);
    let conns = 64usize;

    let mut sink = Sink::start(io).await?;
    let sandbox = ChildSandbox::start(crate::sandbox::DEFAULT_INSTANCES)?;
    let api = sandbox.api().await?;
    let target = pick_instance(&api.list_instances(&[]).await?)?;
    let fwd = start_forward(&api, &target, sink.addr.port()).await?;
    let fwd_addr = fwd
        .local_addr()
        .context("the forward has no local address")?;
    let relay = Relay::start(io, sink.addr, Direction::Up).await?;
    let source = Source::start(io, total).await?;
    let down_fwd = start_forward(&api, &target, source.addr.port()).await?;
    let down_fwd_addr = down_fwd
        .local_addr()
        .context("the download forward has no local address")?;
    let down_relay = Relay::start(io, source.addr, Direction::Down).await?;

    // Warm up each path once (connection set-up, first smux stream, allocator growth).
    for addr in [sink.addr, relay.addr, fwd_addr] {
        transfer(io, addr, &mut sink, 1 << 20).await?;
    }

    // Rounds alternate the paths, so that a noisy neighbour slows each of them alike; the
    // figures are the medians.
    let mut raws = Vec::new();
    let mut relays = Vec::new();
    let mut forwards = Vec::new();
    for _ in 0..sizes.pick(1, ROUNDS) {
        raws.push(measure(io, sink.addr, &mut sink, total).await?);
        relays.push(measure(io, relay.addr, &mut sink, total).await?);
        forwards.push(measure(io, fwd_addr, &mut sink, total).await?);
    }
    let raw = Measured::median(raws);
    let relayed = Measured::median(relays);
    let forwarded = Measured::median(forwards);
    // The other direction: the far side sends, ours reads (a warm-up each first).
    download(io, down_relay.addr, total).await?;
    download(io, down_fwd_addr, total).await?;
    let mut down_relays = Vec::new();
    let mut down_forwards = Vec::new();
    for _ in 0..sizes.pick(1, ROUNDS) {
        down_relays.push(download(io, down_relay.addr, total).await?);
        down_forwards.push(download(io, down_fwd_addr, total).await?);
    }
    let down_relayed = Measured::median(down_relays);
    let down_forwarded = Measured::median(down_forwards);

    let raw_fan = fan(io, sink.addr, &mut sink, conns, per_conn).await?;
    let fwd_fan = fan(io, fwd_addr, &mut sink, conns, per_conn).await?;

    fwd.stop().await;
    down_fwd.stop().await;
    relay.stop();
    down_relay.stop();
    source.stop();
    sink.stop();
    drop(sandbox);

    // What a real agent allows: the same download from an agent paced like amazon-ssm-agent.
    let paced_total: u64 = sizes.pick(2 << 20, 16 << 20);
    let paced = paced_download(io, paced_total).await?;

    let size = if total >= 1 << 30 {
        format!("{} GiB", total >> 30)
    } else {
        format!("{} MiB", total >> 20)
    };
    let rate = |m: &Measured| mib_per_s(total, m.elapsed);
    let mut figures = vec![
        Figure::new(
            Group::Forward,
            "forward.throughput",
            rate(&forwarded),
            "MiB/s",
        )
        .vs("ws relay", rate(&relayed))
        .goal("≥ 0.5 × ws relay")
        .note(format!(
            "{size} one connection, upload to a loopback sink; sandbox in a child process; {}",
            match sizes.pick(1, ROUNDS) {
                1 => "one round".to_owned(),
                n => format!("median of {n} rounds alternating with the relay"),
            }
        )),
        Figure::new(
            Group::Forward,
            "forward.relay_throughput",
            rate(&relayed),
            "MiB/s",
        )
        .vs("raw TCP", rate(&raw))
        .note(format!(
            "bare tokio-tungstenite relay, {RELAY_MESSAGE}-byte binary messages"
        )),
        Figure::new(
            Group::Forward,
            "forward.raw_tcp_throughput",
            rate(&raw),
            "MiB/s",
        ),
    ];
    figures.push(
        Figure::new(
            Group::Forward,
            "forward.download_throughput",
            rate(&down_forwarded),
            "MiB/s",
        )
        .vs("ws relay", rate(&down_relayed))
        .note(format!(
            "{size} one connection, download from a loopback source; same rounds"
        )),
    );
    if let (Some(f), Some(r)) = (forwarded.client_cpu, relayed.client_cpu) {
        let per_gib = |cpu: Duration| cpu.as_secs_f64() / (total as f64 / GIB);
        figures.push(
            Figure::new(Group::Forward, "forward.client_cpu", per_gib(f), "s/GiB")
                .vs("ws relay client", per_gib(r))
                .note("process CPU minus source/sink/relay-server threads (/proc)"),
        );
    }
    let agg = |f: &Fan| mib_per_s(f.bytes, f.max);
    figures.push(
        Figure::new(
            Group::Forward,
            "forward.fan64_throughput",
            agg(&fwd_fan),
            "MiB/s",
        )
        .vs("raw TCP ×64", agg(&raw_fan))
        .note(format!(
            "{conns} connections × {} KiB at once through one forward",
            per_conn >> 10
        )),
    );
    figures.push(
        Figure::new(
            Group::Forward,
            "forward.fan64_fairness",
            fwd_fan.spread(),
            "max/min",
        )
        .vs("raw TCP ×64", raw_fan.spread())
        .note(format!(
            "completion times {:.0}–{:.0} ms",
            super::ms(fwd_fan.min),
            super::ms(fwd_fan.max)
        )),
    );
    let paced_rate = paced_total as f64 / paced.elapsed.as_secs_f64().max(1e-9) / 1e6;
    let per_message = paced.client_cpu.map_or_else(String::new, |cpu| {
        let messages = paced_total as f64 / 1024.0;
        format!(
            "; client CPU {:.0} µs per message",
            cpu.as_secs_f64() * 1e6 / messages
        )
    });
    let paced_figure = Figure::new(
        Group::Forward,
        "forward.paced_download_throughput",
        paced_rate,
        "MB/s",
    )
    .vs("unpaced", total as f64 / down_forwarded.elapsed.as_secs_f64().max(1e-9) / 1e6)
    .note(format!(
        "{} MiB download, sandbox agent paced like amazon-ssm-agent (1 KiB per message, 1 ms apart): what a user gets on AWS{per_message}",
        paced_total >> 20
    ));
    figures.push(paced_figure);
    Ok(Results {
        figures,
        skipped: Vec::new(),
    })
}

/// A download of `total` bytes through a forward from an agent paced like the real one.
async fn paced_download(io: &Handle, total: u64) -> anyhow::Result<Measured> {
    let sandbox = ChildSandbox::start_paced(crate::sandbox::DEFAULT_INSTANCES, "real")?;
    let api = sandbox.api().await?;
    let target = pick_instance(&api.list_instances(&[]).await?)?;
    let source = Source::start(io, total).await?;
    let fwd = start_forward(&api, &target, source.addr.port()).await?;
    let addr = fwd
        .local_addr()
        .context("the paced forward has no local address")?;
    let measured = download(io, addr, total).await;
    fwd.stop().await;
    source.stop();
    drop(sandbox);
    measured
}

/// Starts a forward `0:port` to the instance (it dials the sink on its loopback), the way
/// `ssmtui forward` does: through [`Launcher`], recorded in the benchmark's scratch audit log.
pub(crate) async fn start_forward(
    api: &Arc<dyn SsmApi>,
    target: &str,
    port: u16,
) -> anyhow::Result<ForwardHandle> {
    let spec = ForwardSpec::parse(&format!("0:{port}"))?;
    let listener = forward::bind(&spec).await?;
    let launcher = super::launcher(api).await?;
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
                document: DOC_PORT.to_owned(),
                reason: None,
                keepalive: false,
                sessions: 1,
            },
            Acceptor::Tcp(listener),
        )
        .await
}

/// A loopback TCP sink on the io runtime: reports `(bytes, when)` at each connection's EOF.
pub(crate) struct Sink {
    pub(crate) addr: SocketAddr,
    done: mpsc::UnboundedReceiver<(u64, Instant)>,
    /// Bytes each connection is expected to bring: it is reported when they are in (or at
    /// its end, if fewer came). Not at end of file: a forward holds a half-closed stream's
    /// FIN back for a while (`forward::HALF_CLOSE_LINGER`), which is no part of the transfer.
    expect: Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

impl Sink {
    pub(crate) async fn start(io: &Handle) -> anyhow::Result<Self> {
        use std::sync::atomic::Ordering;
        let (tx, done) = mpsc::unbounded_channel();
        let listener = io.spawn(TcpListener::bind(("127.0.0.1", 0))).await??;
        let addr = listener.local_addr()?;
        let expect = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
        let expected = Arc::clone(&expect);
        let task = io.spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                let want = expected.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; WRITE_CHUNK];
                    let mut n = 0u64;
                    let mut reported = false;
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => n += k as u64,
                        }
                        if n >= want && !reported {
                            reported = true;
                            let _ = tx.send((n, Instant::now()));
                        }
                    }
                    if !reported {
                        let _ = tx.send((n, Instant::now()));
                    }
                });
            }
        });
        Ok(Self {
            addr,
            done,
            expect,
            task,
        })
    }

    /// Bytes each of the next connections brings.
    pub(crate) fn expect(&self, bytes: u64) {
        self.expect
            .store(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) async fn next(&mut self) -> anyhow::Result<(u64, Instant)> {
        tokio::time::timeout(LIMIT, self.done.recv())
            .await
            .context("timed out waiting for the sink")?
            .context("the sink stopped")
    }

    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

/// Writes `bytes` to `addr` from the io runtime, then closes.
pub(crate) fn push(io: &Handle, addr: SocketAddr, bytes: u64) -> JoinHandle<std::io::Result<()>> {
    io.spawn(async move {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let chunk: Vec<u8> = (0..WRITE_CHUNK).map(|i| (i * 13 + 1) as u8).collect();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(WRITE_CHUNK as u64) as usize;
            stream.write_all(chunk.get(..n).unwrap_or_default()).await?;
            left -= n as u64;
        }
        stream.shutdown().await
    })
}

/// One connection's transfer: elapsed from connect to the sink's EOF.
async fn transfer(
    io: &Handle,
    addr: SocketAddr,
    sink: &mut Sink,
    bytes: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    sink.expect(bytes);
    let source = push(io, addr, bytes);
    let (got, at) = sink.next().await?;
    source.await?.context("the source failed")?;
    anyhow::ensure!(got == bytes, "the sink got {got} of {bytes} bytes");
    Ok(at.saturating_duration_since(started))
}

struct Measured {
    elapsed: Duration,
    client_cpu: Option<Duration>,
}

impl Measured {
    /// The median time and the median CPU of several rounds (each its own median).
    fn median(mut rounds: Vec<Self>) -> Self {
        let mid = rounds.len() / 2;
        rounds.sort_by_key(|m| m.elapsed);
        let elapsed = rounds.get(mid).map_or(Duration::ZERO, |m| m.elapsed);
        let mut cpu: Vec<Duration> = rounds.iter().filter_map(|m| m.client_cpu).collect();
        cpu.sort();
        let client_cpu = (cpu.len() == rounds.len())
            .then(|| cpu.get(mid).copied())
            .flatten();
        Self {
            elapsed,
            client_cpu,
        }
    }
}

async fn measure(
    io: &Handle,
    addr: SocketAddr,
    sink: &mut Sink,
    bytes: u64,
) -> anyhow::Result<Measured> {
    let before = sys::client_cpu(IO_THREAD);
    let elapsed = transfer(io, addr, sink, bytes).await?;
    let after = sys::client_cpu(IO_THREAD);
    Ok(Measured {
        elapsed,
        client_cpu: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
    })
}

struct Fan {
    bytes: u64,
    min: Duration,
    max: Duration,
}

impl Fan {
    fn spread(&self) -> f64 {
        self.max.as_secs_f64() / self.min.as_secs_f64().max(1e-9)
    }
}

/// `conns` connections of `each` bytes started together; completion time of each.
async fn fan(
    io: &Handle,
    addr: SocketAddr,
    sink: &mut Sink,
    conns: usize,
    each: u64,
) -> anyhow::Result<Fan> {
    let started = Instant::now();
    sink.expect(each);
    let sources: Vec<_> = (0..conns).map(|_| push(io, addr, each)).collect();
    let mut times = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (got, at) = sink.next().await?;
        anyhow::ensure!(got == each, "a connection got {got} of {each} bytes");
        times.push(at.saturating_duration_since(started));
    }
    for s in sources {
        s.await?.context("a source failed")?;
    }
    Ok(Fan {
        bytes: each * conns as u64,
        min: times.iter().copied().min().unwrap_or_default(),
        max: times.iter().copied().max().unwrap_or_default(),
    })
}

/// Which way a relay carries the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Local connection → far target (the sink).
    Up,
    /// Far target (a source) → local connection.
    Down,
}

/// The bare websocket relay: a client side on the client runtime (ours) and a server side on
/// the io runtime (the far side, like the sandbox).
struct Relay {
    addr: SocketAddr,
    client: JoinHandle<()>,
    server: JoinHandle<()>,
}

impl Relay {
    async fn start(io: &Handle, target: SocketAddr, direction: Direction) -> anyhow::Result<Self> {
        let server_listener = io.spawn(TcpListener::bind(("127.0.0.1", 0))).await??;
        let server_addr = server_listener.local_addr()?;
        let server = io.spawn(async move {
            while let Ok((stream, _)) = server_listener.accept().await {
                tokio::spawn(async move {
                    let result = match direction {
                        Direction::Up => relay_server_conn(stream, target).await,
                        Direction::Down => relay_server_download(stream, target).await,
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "bench relay server connection failed");
                    }
                });
            }
        });
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let client = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let result = match direction {
                        Direction::Up => relay_client_conn(stream, server_addr).await,
                        Direction::Down => relay_client_download(stream, server_addr).await,
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "bench relay client connection failed");
                    }
                });
            }
        });
        Ok(Self {
            addr,
            client,
            server,
        })
    }

    fn stop(&self) {
        self.client.abort();
        self.server.abort();
    }
}

/// Upload relay, our side: the local connection's bytes go to the far side.
async fn relay_client_conn(mut tcp: TcpStream, server: SocketAddr) -> anyhow::Result<()> {
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{server}/")).await?;
    tcp_to_ws(&mut tcp, ws).await
}

/// Upload relay, far side: the messages go to the sink.
async fn relay_server_conn(stream: TcpStream, sink: SocketAddr) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let ws = tokio_tungstenite::accept_async(stream).await?;
    let mut out = TcpStream::connect(sink).await?;
    out.set_nodelay(true)?;
    ws_to_tcp(ws, &mut out).await
}

/// Download relay, far side: the source's bytes go to our side.
async fn relay_server_download(stream: TcpStream, source: SocketAddr) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let ws = tokio_tungstenite::accept_async(stream).await?;
    let mut from = TcpStream::connect(source).await?;
    from.set_nodelay(true)?;
    tcp_to_ws(&mut from, ws).await
}

/// Download relay, our side: the messages go to the local connection.
async fn relay_client_download(mut tcp: TcpStream, server: SocketAddr) -> anyhow::Result<()> {
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{server}/")).await?;
    ws_to_tcp(ws, &mut tcp).await
}

/// Sends what `tcp` reads until its EOF in data-channel-sized binary messages, one flush per
/// read (like the session driver), then closes and waits for the close reply, so every
/// message is known delivered.
async fn tcp_to_ws<S>(
    tcp: &mut TcpStream,
    mut ws: tokio_tungstenite::WebSocketStream<S>,
) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; WRITE_CHUNK];
    loop {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        for chunk in buf.get(..n).unwrap_or_default().chunks(RELAY_MESSAGE) {
            ws.feed(Message::Binary(chunk.to_vec().into())).await?;
        }
        ws.flush().await?;
    }
    ws.close(None).await?;
    while let Some(msg) = ws.next().await {
        if msg.is_err() {
            break;
        }
    }
    Ok(())
}

/// Writes every binary message to `tcp` until the close, then shuts `tcp` down.
async fn ws_to_tcp<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    tcp: &mut TcpStream,
) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Binary(b) => tcp.write_all(&b).await?,
            Message::Close(_) => break,
            _ => {}
        }
    }
    tcp.shutdown().await?;
    Ok(())
}

/// A loopback TCP source on the io runtime: every connection gets `bytes` bytes, then EOF.
pub(crate) struct Source {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Source {
    pub(crate) async fn start(io: &Handle, bytes: u64) -> anyhow::Result<Self> {
        let listener = io.spawn(TcpListener::bind(("127.0.0.1", 0))).await??;
        let addr = listener.local_addr()?;
        let task = io.spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let chunk: Vec<u8> = (0..WRITE_CHUNK).map(|i| (i * 7 + 3) as u8).collect();
                    let mut left = bytes;
                    while left > 0 {
                        let n = left.min(WRITE_CHUNK as u64) as usize;
                        if stream
                            .write_all(chunk.get(..n).unwrap_or_default())
                            .await
                            .is_err()
                        {
                            return;
                        }
                        left -= n as u64;
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

/// One download from `addr` read to EOF on the io runtime: the time from connect to EOF.
async fn download(io: &Handle, addr: SocketAddr, bytes: u64) -> anyhow::Result<Measured> {
    let before = sys::client_cpu(IO_THREAD);
    let started = Instant::now();
    let got = tokio::time::timeout(
        LIMIT,
        io.spawn(async move {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut buf = vec![0u8; WRITE_CHUNK];
            let mut n = 0u64;
            loop {
                match stream.read(&mut buf).await? {
                    0 => return Ok::<_, std::io::Error>(n),
                    k => n += k as u64,
                }
            }
        }),
    )
    .await
    .context("timed out waiting for a download")???;
    let elapsed = started.elapsed();
    let after = sys::client_cpu(IO_THREAD);
    anyhow::ensure!(got == bytes, "the download got {got} of {bytes} bytes");
    Ok(Measured {
        elapsed,
        client_cpu: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
    })
}
