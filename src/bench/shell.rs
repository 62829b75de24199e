//! Group `shell`: keystroke echo round trip and time to the first prompt (issue 6).
//!
//! * `shell.echo_p50` / `shell.echo_p99`: one byte sent through the engine (KMS-encrypted
//!   `SSM-sudo` session, the sandbox in a child process running a real bash on a pty) until
//!   its echo comes back as output; alternately `x` and DEL so the line never grows. Baseline:
//!   the same keys written to a bash on a local pty opened with `portable-pty`, read back
//!   directly.
//! * `shell.connect_prompt`: `ssmtui connect <instance>` started as a process on a pty (config
//!   with one class for everyone) until the first prompt (`$ ` or `# `) appears in its output;
//!   baseline: a local bash started on a pty until its first prompt.
//! * `shell.session_prompt`: the same in-process from `StartSession` (SDK client already
//!   built), to show what is process start-up and what is the session.

use std::io::{Read, Write};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use tokio::sync::mpsc;

use super::{ChildSandbox, Figure, Group, Results, Sizes, Skipped, ms, percentile, pick_instance};
use crate::engine::started::Ending;
use crate::engine::{EngineEvent, SessionHandle, SessionOptions, spawn_session};
use crate::protocol::Flag;

const KEY_TIMEOUT: Duration = Duration::from_secs(5);
const PROMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Output is considered settled after this long without any.
const QUIET: Duration = Duration::from_millis(300);

fn has_prompt(text: &[u8]) -> bool {
    text.windows(2).any(|w| w == b"$ " || w == b"# ")
}

fn key(i: usize) -> &'static [u8] {
    if i.is_multiple_of(2) { b"x" } else { b"\x7f" }
}

/// Runs the group.
pub async fn run(sizes: Sizes) -> anyhow::Result<Results> {
    let keys = sizes.pick(40, 1000);
    let mut results = Results::default();
    let sandbox = ChildSandbox::start(crate::sandbox::DEFAULT_INSTANCES)?;
    let api = sandbox.api().await?;
    let target = pick_instance(&api.list_instances(&[]).await?)?;

    // In-process session: StartSession → first prompt, then the echo loop.
    let started = Instant::now();
    let launcher = super::launcher(&api).await?;
    let (session, data_channel) = super::start_shell(&launcher, &target).await?;
    let mut options = SessionOptions::new(&target);
    options.event_capacity = 4096;
    let (handle, mut events) = spawn_session(api, data_channel, options).await?;
    wait_prompt(&mut events).await?;
    let session_prompt = started.elapsed();
    settle(&mut events).await;
    let mut remote = Vec::with_capacity(keys);
    for i in 0..keys {
        remote.push(ms(echo(&handle, &mut events, key(i)).await?));
    }
    let _ = handle.send_flag(Flag::TerminateSession).await;
    handle.cancel();
    session.finish(Ending::interrupted("benchmark done")).await;

    let local = tokio::task::spawn_blocking(move || local_pty(keys)).await??;
    let mut local_keys = local.echo_ms;

    let label = format!("{keys} keys, sandbox in a child process, KMS-encrypted session");
    let (r50, r99) = (percentile(&mut remote, 50.0), percentile(&mut remote, 99.0));
    let (l50, l99) = (
        percentile(&mut local_keys, 50.0),
        percentile(&mut local_keys, 99.0),
    );
    results.figures.push(
        Figure::new(Group::Shell, "shell.echo_p50", r50, "ms")
            .vs("local pty", l50)
            .note(label),
    );
    results.figures.push(
        Figure::new(Group::Shell, "shell.echo_p99", r99, "ms")
            .vs("local pty", l99)
            .goal("≤ 16 ms"),
    );

    let exe_prompt = {
        let env = sandbox_env(&sandbox, &target)?;
        tokio::task::spawn_blocking(move || connect_process(&env)).await?
    };
    match exe_prompt {
        Ok(d) => results.figures.push(
            Figure::new(Group::Shell, "shell.connect_prompt", ms(d), "ms")
                .vs("local bash", ms(local.first_prompt))
                .note("`ssmtui connect` process start → first prompt byte, on a pty"),
        ),
        Err(e) => results.skipped.push(Skipped {
            group: "shell".into(),
            reason: format!("shell.connect_prompt: {e:#}"),
        }),
    }
    results.figures.push(
        Figure::new(
            Group::Shell,
            "shell.session_prompt",
            ms(session_prompt),
            "ms",
        )
        .vs("local bash", ms(local.first_prompt))
        .note("in-process: StartSession → first prompt byte (SDK client already built)"),
    );
    drop(sandbox);
    Ok(results)
}

async fn wait_prompt(events: &mut mpsc::Receiver<EngineEvent>) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PROMPT_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(EngineEvent::Output(b))) => {
                seen.extend_from_slice(&b);
                if has_prompt(&seen) {
                    return Ok(());
                }
            }
            Ok(Some(EngineEvent::Closed(r))) => anyhow::bail!("the session closed: {r:?}"),
            Ok(Some(_)) => {}
            Ok(None) => anyhow::bail!("the session ended before a prompt"),
            Err(_) => anyhow::bail!(
                "no prompt within {PROMPT_TIMEOUT:?}; output: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

/// Swallows output until the shell has been quiet for [`QUIET`] (profile lines, second prompt).
async fn settle(events: &mut mpsc::Receiver<EngineEvent>) {
    while let Ok(Some(_)) = tokio::time::timeout(QUIET, events.recv()).await {}
}

async fn echo(
    handle: &SessionHandle,
    events: &mut mpsc::Receiver<EngineEvent>,
    key: &[u8],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    handle.send(key.to_vec()).await?;
    loop {
        match tokio::time::timeout(KEY_TIMEOUT, events.recv()).await {
            Ok(Some(EngineEvent::Output(b))) if !b.is_empty() => return Ok(started.elapsed()),
            Ok(Some(EngineEvent::Closed(r))) => anyhow::bail!("the session closed: {r:?}"),
            Ok(Some(_)) => {}
            Ok(None) => anyhow::bail!("the session ended"),
            Err(_) => anyhow::bail!("no echo within {KEY_TIMEOUT:?}"),
        }
    }
}

struct Local {
    first_prompt: Duration,
    echo_ms: Vec<f64>,
}

/// A pty with a reader thread feeding a channel; the child is killed on drop.
struct Pty {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    output: std_mpsc::Receiver<Vec<u8>>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Pty {
    fn spawn(cmd: CommandBuilder) -> anyhow::Result<Self> {
        let pair = native_pty_system().openpty(PtySize {
            rows: 40,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })?;
        let child = pair.slave.spawn_command(cmd)?;
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader()?;
        let writer = pair.master.take_writer()?;
        let (tx, output) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("bench-pty-read".to_owned())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 || tx.send(buf.get(..n).unwrap_or_default().to_vec()).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            child,
            writer,
            output,
            _master: pair.master,
        })
    }

    fn wait_prompt(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + PROMPT_TIMEOUT;
        let mut seen = Vec::new();
        while !has_prompt(&seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(b) => seen.extend_from_slice(&b),
                Err(_) => anyhow::bail!(
                    "no prompt within {PROMPT_TIMEOUT:?}; output: {}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
        Ok(())
    }

    fn settle(&self) {
        while self.output.recv_timeout(QUIET).is_ok() {}
    }

    fn echo(&mut self, key: &[u8]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.writer.write_all(key)?;
        self.writer.flush()?;
        self.output
            .recv_timeout(KEY_TIMEOUT)
            .context("no echo from the local pty")?;
        Ok(started.elapsed())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn local_pty(keys: usize) -> anyhow::Result<Local> {
    let home = std::env::temp_dir().join(format!("ssmtui-bench-home-{}", std::process::id()));
    std::fs::create_dir_all(&home)?;
    let mut cmd = CommandBuilder::new(if std::path::Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    });
    cmd.arg("-i");
    cmd.env_clear();
    cmd.env("TERM", "xterm-256color");
    cmd.env("HOME", &home);
    cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    cmd.env("LANG", "C.UTF-8");
    cmd.cwd(&home);
    let started = Instant::now();
    let mut pty = Pty::spawn(cmd)?;
    pty.wait_prompt()?;
    let first_prompt = started.elapsed();
    pty.settle();
    let mut echo_ms = Vec::with_capacity(keys);
    for i in 0..keys {
        echo_ms.push(ms(pty.echo(key(i))?));
    }
    drop(pty);
    let _ = std::fs::remove_dir_all(&home);
    Ok(Local {
        first_prompt,
        echo_ms,
    })
}

/// What `ssmtui connect` needs to reach the sandbox, isolated from the user's config.
pub(super) struct ConnectEnv {
    pub(super) dir: tempfile_dir::Dir,
    pub(super) vars: Vec<(String, String)>,
    pub(super) target: String,
}

/// A scratch directory removed on drop (the crate has `tempfile` only as a dev-dependency).
pub(super) mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub(in crate::bench) struct Dir(PathBuf);

    impl Dir {
        pub(in crate::bench) fn new(name: &str) -> std::io::Result<Self> {
            let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
            std::fs::create_dir_all(&path)?;
            Ok(Self(path))
        }

        pub(in crate::bench) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

const CONFIG: &str = r#"
[classes.everyone]
document = "SSM-sudo"
principals = ["*"]
forward_documents = ["AWS-StartPortForwardingSession"]
"#;

pub(super) fn sandbox_env(sandbox: &ChildSandbox, target: &str) -> anyhow::Result<ConnectEnv> {
    let dir = tempfile_dir::Dir::new("ssmtui-bench-connect")?;
    let h = dir.path();
    std::fs::write(h.join("config.toml"), CONFIG)?;
    let p = |name: &str| h.join(name).to_string_lossy().into_owned();
    let vars = vec![
        ("HOME".into(), p("")),
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        ),
        ("TERM".into(), "xterm-256color".into()),
        ("SSMTUI_CONFIG".into(), p("config.toml")),
        ("SSMTUI_STATE_DIR".into(), p("state")),
        ("AWS_CONFIG_FILE".into(), p("aws-config")),
        ("AWS_SHARED_CREDENTIALS_FILE".into(), p("aws-credentials")),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("AWS_ENDPOINT_URL".into(), sandbox.endpoint.clone()),
        ("AWS_REGION".into(), sandbox.region.clone()),
        ("AWS_ACCESS_KEY_ID".into(), sandbox.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY".into(), sandbox.secret.clone()),
    ];
    Ok(ConnectEnv {
        dir,
        vars,
        target: target.to_owned(),
    })
}

fn connect_process(env: &ConnectEnv) -> anyhow::Result<Duration> {
    let exe = std::env::current_exe()?;
    let mut cmd = CommandBuilder::new(exe);
    cmd.args(["connect", &env.target]);
    cmd.env_clear();
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    cmd.cwd(env.dir.path());
    let started = Instant::now();
    let pty = Pty::spawn(cmd)?;
    pty.wait_prompt()?;
    Ok(started.elapsed())
}
