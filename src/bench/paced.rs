//! Group `paced`: what a session costs at the real agent's cadence. amazon-ssm-agent sends at
//! most 1 KiB per message and then sleeps 1 ms, so on AWS every message is a wake-up of its
//! own; the sandbox agent in `real` pacing does the same. The client is the real binary in a
//! child process, measured from `/proc/PID`, as users run it.
//!
//! * `paced.download_cpu_per_msg`: `ssmtui forward` carries a download from a loopback source
//!   on the "instance"; its CPU time during the transfer over the agent's messages (bytes /
//!   1024). `paced.ctx_switches_per_msg`: its threads' context switches in the same window.
//!   `paced.download_throughput`: MB/s, against the ceiling of 1 KiB per ms.
//! * `paced.shell_flood_cpu_per_msg`: `ssmtui connect` in pipe mode while the shell prints
//!   N bytes (between two markers). Baseline, the floor: a minimal client on one thread of
//!   this process, the protocol core over blocking tungstenite: read a frame, let the session
//!   acknowledge it, write the payload to a socket — same document (KMS-encrypted), same
//!   flood.
//!
//! CPU of a process comes from `/proc/PID/stat` in ticks of 10 ms; the transfers are sized
//! so that a tick is a few per cent of the figure at most.

use std::io::{BufRead, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::runtime::Handle;

use super::forward::Source;
use super::shell::{ConnectEnv, sandbox_env};
use super::{ChildSandbox, Figure, Group, Results, Sizes, pick_instance, sys};
use crate::aws::{SessionTarget, SsmApi};
use crate::engine::started::Ending;
use crate::protocol::{Session, SessionConfig, SessionEvent};

/// The agent's largest message payload.
const MESSAGE: f64 = 1024.0;
/// What a paced agent carries at most: 1 KiB per millisecond.
const CEILING_MB_S: f64 = 1024.0 * 1000.0 / 1e6;
/// The longest any one part may take.
const LIMIT: Duration = Duration::from_secs(300);

/// The flood's markers, printed by `printf` so that the echoed command line does not contain
/// them.
const START: &[u8] = b"ssmtui-flood-start";
const END: &[u8] = b"ssmtui-flood-end";

/// The script that prints `n` bytes between the markers.
fn flood_script(n: usize) -> String {
    format!(
        "printf 'ssmtui-%s\\n' flood-start\n\
         yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c {n}\n\
         printf '\\nssmtui-%s\\n' flood-end\n"
    )
}

/// Runs the group.
pub async fn run(sizes: Sizes, io: &Handle) -> anyhow::Result<Results> {
    let download_bytes: u64 = sizes.pick(2 << 20, 16 << 20);
    let flood_bytes: usize = sizes.pick(1 << 20, 8 << 20);
    let sandbox = ChildSandbox::start_paced(crate::sandbox::DEFAULT_INSTANCES, "real")?;
    let api = sandbox.api().await?;
    let target = pick_instance(&api.list_instances(&[]).await?)?;
    let env = sandbox_env(&sandbox, &target)?;

    let source = Source::start(io, download_bytes).await?;
    let port = source.addr.port();
    // The same download on the multi-threaded runtime, side by side.
    let downloads = tokio::task::block_in_place(|| {
        let single = forward_download(&env, &target, port, download_bytes, false)?;
        let multi = forward_download(&env, &target, port, download_bytes, true)?;
        Ok::<_, anyhow::Error>((single, multi))
    });
    source.stop();
    let (download, multi) = downloads?;

    // Striping: the same four downloads through one session, then through four.
    let each: u64 = sizes.pick(512 << 10, 4 << 20);
    let source = Source::start(io, each).await?;
    let port = source.addr.port();
    let striped = tokio::task::block_in_place(|| {
        let one = parallel_downloads(&env, &target, port, 1, 4, each)?;
        let four = parallel_downloads(&env, &target, port, 4, 4, each)?;
        Ok::<_, anyhow::Error>((one, four))
    });
    source.stop();
    let (one, four) = striped?;

    let flood = tokio::task::block_in_place(|| connect_flood(&env, &target, flood_bytes))?;
    let floor = minimal_flood(&api, &target, io, flood_bytes).await?;
    drop(sandbox);

    let messages = download.bytes as f64 / MESSAGE;
    let per_msg = |cpu: Duration, messages: f64| cpu.as_secs_f64() * 1e6 / messages.max(1.0);
    let mut figures = vec![
        Figure::new(
            Group::Paced,
            "paced.download_cpu_per_msg",
            per_msg(download.cpu, messages),
            "µs",
        )
        .vs(
            "multi-thread runtime",
            per_msg(multi.cpu, multi.bytes as f64 / MESSAGE),
        )
        .goal("≤ 25 µs")
        .note(format!(
            "`ssmtui forward` (child process) carrying {} MiB from the paced sandbox agent: CPU {:.2} s over {messages:.0} messages",
            download_bytes >> 20,
            download.cpu.as_secs_f64()
        )),
    ];
    if let (Some(switches), Some(multi_switches)) = (download.switches, multi.switches) {
        figures.push(
            Figure::new(
                Group::Paced,
                "paced.ctx_switches_per_msg",
                switches as f64 / messages,
                "switches",
            )
            .vs(
                "multi-thread runtime",
                multi_switches as f64 / (multi.bytes as f64 / MESSAGE),
            )
            .note("voluntary + involuntary, all threads of `ssmtui forward`, same window"),
        );
    }
    figures.push(
        Figure::new(
            Group::Paced,
            "paced.download_throughput",
            download.bytes as f64 / download.elapsed.as_secs_f64().max(1e-9) / 1e6,
            "MB/s",
        )
        .vs("1 KiB/ms ceiling", CEILING_MB_S),
    );
    let flood_msgs = flood.bytes as f64 / MESSAGE;
    let floor_msgs = floor.bytes as f64 / MESSAGE;
    figures.push(
        Figure::new(
            Group::Paced,
            "paced.shell_flood_cpu_per_msg",
            per_msg(flood.cpu, flood_msgs),
            "µs",
        )
        .vs("minimal client", per_msg(floor.cpu, floor_msgs))
        .goal("≤ 25 µs")
        .note(format!(
            "`ssmtui connect` in pipe mode, the shell printing {} MiB (KMS-encrypted SSM-sudo); the minimal client: protocol core + blocking tungstenite on one thread, same flood",
            flood_bytes >> 20
        )),
    );
    // A long link: frames to the client 80–120 ms late (sandbox fault), an upload through
    // the adaptive window and through the plugin's fixed one.
    // Long enough that the window's ramp (about four round trips) is not the whole story.
    let long_bytes: u64 = sizes.pick(8 << 20, 256 << 20);
    let (adaptive, fixed) = tokio::task::block_in_place(|| long_link(long_bytes))?;
    let long_rate = |d: Duration| long_bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6;
    figures.push(
        Figure::new(
            Group::Paced,
            "paced.long_link_upload",
            long_rate(adaptive),
            "MB/s",
        )
        .vs("fixed 10 000-message window", long_rate(fixed))
        .note(format!(
            "{} MiB uploaded through `ssmtui forward`, sandbox agent unpaced with delay-ms=80-120 (frames to the client), adaptive byte window vs SSMTUI_OUTGOING_WINDOW=fixed",
            long_bytes >> 20
        )),
    );
    let rate = |d: Duration| 4.0 * each as f64 / d.as_secs_f64().max(1e-9) / 1e6;
    figures.push(
        Figure::new(Group::Paced, "paced.striped4_ratio", rate(four) / rate(one), "×")
            .goal("≥ 3.5")
            .note(format!(
                "4 downloads of {} KiB at once: {:.2} MB/s through `--sessions 4`, {:.2} MB/s through one session (session start-up included)",
                each >> 10,
                rate(four),
                rate(one)
            )),
    );
    Ok(Results {
        figures,
        skipped: Vec::new(),
    })
}

/// One upload of `bytes` through `ssmtui forward` over a long link, with the adaptive window
/// and with the fixed one: the time until the sink has every byte.
fn long_link(bytes: u64) -> anyhow::Result<(Duration, Duration)> {
    let sandbox = ChildSandbox::start_with(
        crate::sandbox::DEFAULT_INSTANCES,
        "off",
        Some("delay-ms=80-120"),
    )?;
    let target = Handle::current().block_on(async {
        let api = sandbox.api().await?;
        pick_instance(&api.list_instances(&[]).await?)
    })?;
    let env = sandbox_env(&sandbox, &target)?;
    let mut times = Vec::new();
    for vars in [&[][..], &[(crate::engine::driver::ENV_WINDOW, "fixed")][..]] {
        let sink = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let port = sink.local_addr()?.port();
        let (mut child, addr) = spawn_forward(&env, &target, port, 1, vars)?;
        let reader = std::thread::spawn(move || -> std::io::Result<Instant> {
            let (mut conn, _) = sink.accept()?;
            conn.set_read_timeout(Some(LIMIT))?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0u64;
            while got < bytes {
                match conn.read(&mut buf)? {
                    0 => break,
                    n => got += n as u64,
                }
            }
            if got < bytes {
                return Err(std::io::Error::other(format!(
                    "the sink got {got} of {bytes} bytes"
                )));
            }
            Ok(Instant::now())
        });
        let started = Instant::now();
        let sent = (|| -> std::io::Result<()> {
            let mut tcp = std::net::TcpStream::connect(&addr)?;
            let chunk = vec![0x5au8; 64 * 1024];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                tcp.write_all(chunk.get(..n).unwrap_or_default())?;
                left -= n as u64;
            }
            // Held open until the sink has everything (a FIN would linger, see forwards).
            let done = reader.join();
            drop(tcp);
            match done {
                Ok(Ok(at)) => {
                    times.push(at.duration_since(started));
                    Ok(())
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(std::io::Error::other("the sink thread panicked")),
            }
        })();
        stop(&mut child);
        sent?;
    }
    drop(sandbox);
    match times.as_slice() {
        [adaptive, fixed] => Ok((*adaptive, *fixed)),
        _ => anyhow::bail!("the long-link uploads did not both finish"),
    }
}

/// CPU and context switches a child spent in a window, and how long the window was.
struct Spent {
    cpu: Duration,
    switches: Option<u64>,
    elapsed: Duration,
    bytes: u64,
}

/// A snapshot of a child process's counters.
fn counters(pid: u32) -> anyhow::Result<(Duration, Option<u64>)> {
    let cpu = sys::pid_cpu(pid).context("cannot read the child's CPU time from /proc")?;
    Ok((cpu, sys::pid_ctx_switches(pid)))
}

/// `ssmtui ARGS…` as a child in the benchmark's environment.
fn ssmtui(env: &ConnectEnv, args: &[&str]) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env_clear()
        .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(env.dir.path());
    Ok(cmd)
}

/// Stops a child that is still running (SIGTERM through kill(1): no unsafe code here).
fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `ssmtui forward --sessions=N TARGET 0:PORT` as a child with the extra environment `vars`,
/// and the address it listens on.
fn spawn_forward(
    env: &ConnectEnv,
    target: &str,
    port: u16,
    sessions: usize,
    vars: &[(&str, &str)],
) -> anyhow::Result<(std::process::Child, String)> {
    let mut cmd = ssmtui(
        env,
        &[
            "forward",
            &format!("--sessions={sessions}"),
            target,
            &format!("0:{port}"),
        ],
    )?;
    cmd.envs(vars.iter().copied());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `ssmtui forward`")?;
    let addr = (|| {
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        // "forwarding 127.0.0.1:54321 -> …"
        let addr = loop {
            let Some(line) = lines.next() else {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                anyhow::bail!("`ssmtui forward` ended before listening: {}", err.trim());
            };
            let line = line?;
            if let Some(rest) = line.strip_prefix("forwarding ")
                && let Some((addr, _)) = rest.split_once(" -> ")
            {
                break addr.to_owned();
            }
        };
        // Nothing but listener lines goes to stdout, so it is not read further.
        Ok::<_, anyhow::Error>(addr)
    })();
    match addr {
        Ok(addr) => Ok((child, addr)),
        Err(e) => {
            stop(&mut child);
            Err(e)
        }
    }
}

/// `conns` downloads of `bytes` each at once through `ssmtui forward --sessions=N`: the time
/// from the first connection until the last byte.
fn parallel_downloads(
    env: &ConnectEnv,
    target: &str,
    port: u16,
    sessions: usize,
    conns: usize,
    bytes: u64,
) -> anyhow::Result<Duration> {
    let (mut child, addr) = spawn_forward(env, target, port, sessions, &[])?;
    let started = Instant::now();
    let readers: Vec<_> = (0..conns)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || -> std::io::Result<u64> {
                let mut tcp = std::net::TcpStream::connect(&addr)?;
                tcp.set_read_timeout(Some(LIMIT))?;
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0u64;
                while got < bytes {
                    match tcp.read(&mut buf)? {
                        0 => break,
                        n => got += n as u64,
                    }
                }
                Ok(got)
            })
        })
        .collect();
    let mut result = Ok(());
    for r in readers {
        match r.join() {
            Ok(Ok(got)) if got == bytes => {}
            Ok(Ok(got)) => result = Err(anyhow::anyhow!("a download got {got} of {bytes} bytes")),
            Ok(Err(e)) => result = Err(e.into()),
            Err(_) => result = Err(anyhow::anyhow!("a download thread panicked")),
        }
    }
    let elapsed = started.elapsed();
    stop(&mut child);
    result.map(|()| elapsed)
}

/// `ssmtui forward TARGET 0:PORT`, one download of `bytes` through it.
fn forward_download(
    env: &ConnectEnv,
    target: &str,
    port: u16,
    bytes: u64,
    multi: bool,
) -> anyhow::Result<Spent> {
    let vars: &[(&str, &str)] = if multi {
        &[(crate::engine::ENV_RUNTIME, "multi-thread")]
    } else {
        &[]
    };
    let (mut child, addr) = spawn_forward(env, target, port, 1, vars)?;
    let result = (|| {
        // The first connection opens the smux stream; measure from there.
        let mut tcp = std::net::TcpStream::connect(&addr)?;
        tcp.set_read_timeout(Some(LIMIT))?;
        let mut buf = vec![0u8; 64 * 1024];
        let first = tcp.read(&mut buf)?;
        let (cpu0, sw0) = counters(child.id())?;
        let started = Instant::now();
        let mut got = first as u64;
        while got < bytes {
            match tcp.read(&mut buf)? {
                0 => break,
                n => got += n as u64,
            }
        }
        let elapsed = started.elapsed();
        let (cpu1, sw1) = counters(child.id())?;
        anyhow::ensure!(got == bytes, "the download got {got} of {bytes} bytes");
        Ok(Spent {
            cpu: cpu1.saturating_sub(cpu0),
            switches: sw0.zip(sw1).map(|(a, b)| b.saturating_sub(a)),
            elapsed,
            bytes: bytes - first as u64,
        })
    })();
    stop(&mut child);
    result
}

/// Finds markers in a stream that arrives in pieces and counts the bytes between them.
#[derive(Default)]
struct Markers {
    tail: Vec<u8>,
    started: bool,
    ended: bool,
    between: u64,
}

impl Markers {
    /// Feeds output; returns (start seen now, end seen now).
    fn feed(&mut self, bytes: &[u8]) -> (bool, bool) {
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(bytes);
        let found = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        let mut now = (false, false);
        if !self.started && found(&window, START) {
            self.started = true;
            now.0 = true;
        } else if self.started && !self.ended {
            self.between += bytes.len() as u64;
            if found(&window, END) {
                self.ended = true;
                now.1 = true;
            }
        }
        let keep = window.len().saturating_sub(END.len().max(START.len()));
        self.tail = window.split_off(keep);
        now
    }
}

/// `ssmtui connect TARGET` with the flood script on stdin (pipe mode).
fn connect_flood(env: &ConnectEnv, target: &str, n: usize) -> anyhow::Result<Spent> {
    let mut child = ssmtui(env, &["connect", target])?
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run `ssmtui connect`")?;
    let result = (|| {
        child
            .stdin
            .take()
            .context("no stdin")?
            .write_all(flood_script(n).as_bytes())?;
        let mut stdout = child.stdout.take().context("no stdout")?;
        let mut markers = Markers::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut start = None;
        let started = Instant::now();
        loop {
            let k = stdout.read(&mut buf)?;
            anyhow::ensure!(k > 0, "`ssmtui connect` ended before the flood did");
            let (s, e) = markers.feed(buf.get(..k).unwrap_or_default());
            if s {
                start = Some((counters(child.id())?, Instant::now()));
            }
            if e {
                break;
            }
            anyhow::ensure!(started.elapsed() < LIMIT, "the flood took too long");
        }
        let (cpu1, _) = counters(child.id())?;
        let ((cpu0, _), t0) = start.context("no start marker")?;
        Ok(Spent {
            cpu: cpu1.saturating_sub(cpu0),
            switches: None,
            elapsed: t0.elapsed(),
            bytes: markers.between,
        })
    })();
    stop(&mut child);
    result
}

/// The floor: the same flood through a minimal client on one thread of this process.
async fn minimal_flood(
    api: &Arc<dyn SsmApi>,
    target: &str,
    io: &Handle,
    n: usize,
) -> anyhow::Result<Spent> {
    let launcher = super::launcher(api).await?;
    let (session, data_channel) = super::start_shell(&launcher, target).await?;
    let api = Arc::clone(api);
    let io = io.clone();
    let instance = target.to_owned();
    let spent =
        tokio::task::spawn_blocking(move || minimal_client(&api, &io, &data_channel, &instance, n))
            .await?;
    session.finish(Ending::interrupted("benchmark done")).await;
    spent
}

/// Read a frame, hand it to the session, write what it answers, write the output to a socket.
fn minimal_client(
    api: &Arc<dyn SsmApi>,
    io: &Handle,
    target: &SessionTarget,
    instance: &str,
    n: usize,
) -> anyhow::Result<Spent> {
    use tokio_tungstenite::tungstenite::{self, Message, stream::MaybeTlsStream};
    // The same buffers as ssmtui's websockets: the floor must not pay for a bigger memset.
    let (mut ws, _) = tungstenite::client::connect_with_config(
        target.stream_url.as_str(),
        Some(crate::engine::transport::ws_config()),
        3,
    )?;
    if let MaybeTlsStream::Plain(tcp) = ws.get_mut() {
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_millis(50)))?;
    }
    // The output goes to a socket whose other end only reads.
    let drain = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let mut sink = std::net::TcpStream::connect(drain.local_addr()?)?;
    let (mut far, _) = drain.accept()?;
    let drainer = std::thread::spawn(move || std::io::copy(&mut far, &mut std::io::sink()));

    let clock = crate::clock::Clock::new();
    let mut session = Session::new(SessionConfig::client(&target.session_id, instance, 7));
    ws.send(Message::Text(
        session.open_data_channel_text(target.token.expose()).into(),
    ))?;
    let script = flood_script(n);
    let mut markers = Markers::default();
    let mut start = None;
    let began = Instant::now();
    let result = loop {
        anyhow::ensure!(
            began.elapsed() < LIMIT,
            "the minimal client's flood took too long"
        );
        match ws.read() {
            Ok(Message::Binary(frame)) => session.handle_incoming(&frame, clock.now()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
        session.handle_timeout(clock.now());
        let mut done = None;
        while let Some(ev) = session.poll_event() {
            match ev {
                SessionEvent::KmsDataKeyRequested {
                    key_id,
                    encryption_context,
                } => {
                    let context = encryption_context.into_iter().collect();
                    let key = io.block_on(api.generate_data_key(&key_id, &context))?;
                    session.provide_data_key(
                        &key.plaintext,
                        key.ciphertext.clone(),
                        clock.now(),
                    )?;
                }
                SessionEvent::Ready { .. } => {
                    let sent = session.send_input(script.as_bytes(), clock.now());
                    anyhow::ensure!(sent == script.len(), "the script did not fit");
                }
                SessionEvent::Output(bytes) => {
                    sink.write_all(&bytes)?;
                    let (s, e) = markers.feed(&bytes);
                    if s {
                        start = Some(sys::this_thread_cpu().context("no thread CPU")?);
                    }
                    if e {
                        let cpu0 = start.context("no start marker")?;
                        let cpu1 = sys::this_thread_cpu().context("no thread CPU")?;
                        done = Some(cpu1.saturating_sub(cpu0));
                    }
                }
                SessionEvent::ChannelClosed { .. } => {
                    anyhow::bail!("the session closed before the flood ended")
                }
                SessionEvent::Error(e) => anyhow::bail!("protocol error: {e}"),
                _ => {}
            }
        }
        while let Some(frame) = session.poll_transmit() {
            ws.send(Message::Binary(frame))?;
        }
        if let Some(cpu) = done {
            break Ok(Spent {
                cpu,
                switches: None,
                elapsed: began.elapsed(),
                bytes: markers.between,
            });
        }
    };
    drop(sink);
    let _ = ws.close(None);
    let _ = drainer.join();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_across_pieces_and_count_what_lies_between() {
        let mut m = Markers::default();
        let text = b"$ printf 'ssmtui-%s\\n' flood-start\r\nssmtui-flood-start\r\nabcdefgh\r\nssmtui-flood-end\r\n";
        let mut seen = (false, false);
        for piece in text.chunks(5) {
            let (s, e) = m.feed(piece);
            seen.0 |= s;
            seen.1 |= e;
        }
        assert_eq!(seen, (true, true));
        assert!(m.between >= 10 && m.between < 40, "{}", m.between);
    }
}
