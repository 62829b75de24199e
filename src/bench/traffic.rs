//! The far ends of the memory group's busy forwards — the applications a user forwards from
//! and to — in a child process of their own (`bench --traffic BYTES`), so that the group's
//! peak RSS is ssmtui's alone and not also that of eight sources, a sink and their runtime.
//!
//! Line protocol: the child prints `sink PORT` once its sink listens on loopback. Each
//! `push PORT` line on its stdin makes it write BYTES to `127.0.0.1:PORT` and close. For each
//! connection to the sink it prints `got N` once N ≥ BYTES have arrived (or at the
//! connection's end, with what came), and `error TEXT` for a push that failed. It exits at the
//! end of its input.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::forward::{Sink, push};

/// Runs the child's side until its stdin ends (on a runtime of its own: one thread).
pub fn serve(bytes: u64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let io = Handle::current();
        let mut sink = Sink::start(&io).await?;
        sink.expect(bytes);
        let mut out = tokio::io::stdout();
        say(&mut out, &format!("sink {}", sink.addr.port())).await?;
        let mut input = BufReader::new(tokio::io::stdin()).lines();
        let (failed_tx, mut failed) = mpsc::unbounded_channel::<String>();
        loop {
            tokio::select! {
                line = input.next_line() => {
                    let Some(line) = line? else { break };
                    let port: u16 = line
                        .strip_prefix("push ")
                        .and_then(|p| p.trim().parse().ok())
                        .with_context(|| format!("not a `push PORT` line: {line:?}"))?;
                    let task = push(&io, SocketAddr::from((Ipv4Addr::LOCALHOST, port)), bytes);
                    let failed_tx = failed_tx.clone();
                    tokio::spawn(async move {
                        let outcome = match task.await {
                            Ok(Ok(())) => return,
                            Ok(Err(e)) => e.to_string(),
                            Err(e) => e.to_string(),
                        };
                        let _ = failed_tx.send(outcome);
                    });
                }
                got = sink.next() => {
                    let (n, _) = got?;
                    say(&mut out, &format!("got {n}")).await?;
                }
                Some(e) = failed.recv() => say(&mut out, &format!("error {e}")).await?,
            }
        }
        sink.stop();
        Ok(())
    })
}

async fn say(out: &mut tokio::io::Stdout, line: &str) -> std::io::Result<()> {
    out.write_all(format!("{line}\n").as_bytes()).await?;
    out.flush().await
}

/// The parent's handle on a `bench --traffic` child.
pub struct TrafficChild {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// The loopback port of the child's sink.
    pub sink_port: u16,
}

impl TrafficChild {
    /// Starts the child; each push will write `bytes`, each sink connection expects as many.
    pub async fn start(bytes: u64) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find our own executable")?;
        let mut child = tokio::process::Command::new(exe)
            .args(["bench", "--traffic", &bytes.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the traffic child process")?;
        let stdin = child
            .stdin
            .take()
            .context("the traffic child has no stdin")?;
        let stdout = child
            .stdout
            .take()
            .context("the traffic child has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .context("the traffic child did not start within 30 s")??
            .unwrap_or_default();
        let sink_port = first
            .strip_prefix("sink ")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("the traffic child said {first:?}, not `sink PORT`"))?;
        Ok(Self {
            child,
            stdin,
            lines,
            sink_port,
        })
    }

    /// Starts a source writing to `port` (a forward's local port).
    pub async fn push(&mut self, port: u16) -> anyhow::Result<()> {
        self.stdin
            .write_all(format!("push {port}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// The byte count of the next connection the sink finished with.
    pub async fn next(&mut self) -> anyhow::Result<u64> {
        let line = self
            .lines
            .next_line()
            .await?
            .context("the traffic child stopped")?;
        if let Some(n) = line.strip_prefix("got ") {
            return n
                .parse()
                .with_context(|| format!("the traffic child said {line:?}"));
        }
        anyhow::bail!(
            "the traffic child: {}",
            line.strip_prefix("error ").unwrap_or(&line)
        )
    }

    /// Ends the child (end of its input) and waits for it (killed after 10 s).
    pub async fn stop(mut self) {
        drop(self.stdin);
        let wait = tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait());
        if wait.await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}
