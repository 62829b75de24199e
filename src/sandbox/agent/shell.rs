//! A real shell on a pseudo-terminal, as the agent runs for `Standard_Stream` sessions (§8).
//!
//! The shell is `sh`, as the real agent starts it, on a fresh pty with
//! `TERM=xterm-256color` and a small, clean environment in a per-instance home directory
//! (bash only when the document's `shellProfile.linux` execs it, as the class documents do).
//! The document's profile is typed into it first, as the real agent does, preceded by a line
//! that exports `SSM_RUN_AS_USER` and prints `running as <user>`. The user is really switched
//! (through `su`) only when the sandbox runs as root and that user exists; otherwise the line
//! just reports it.
//!
//! Three plain threads serve the pty, so a blocked read or write never stalls the runtime and
//! nothing is left behind in tokio's blocking pool when a test's runtime shuts down:
//!
//! * the reader reads at most 1024 bytes at a time, cuts on UTF-8 boundaries (an incomplete
//!   multi-byte sequence is carried into the next chunk, §7.5), appends each chunk to the
//!   session's IPC file (and streams it to CloudWatch when the document says so, see
//!   [`SessionLog`]) and sends it on a bounded channel (a full channel stops the reader, and
//!   the agent takes from it only while its session has room: back-pressure end to end).
//!   When paced like the real agent ([`ShellSpec::pause`]), it waits a second before its
//!   first read and pauses after every chunk, as the agent's shell plugin does;
//! * the writer copies input to the pty;
//! * the waiter reaps the child and reports its exit.
//!
//! Dropping a [`Shell`] hangs up the shell's process group and kills the shell if it is still
//! there a second later, so no shell outlives its session.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::logging::SessionLog;
use portable_pty::{ChildKiller, CommandBuilder, MasterPty, PtySize, native_pty_system};
use tokio::sync::{mpsc, oneshot};

/// Largest chunk of pty output per message (§7.5).
pub const CHUNK: usize = 1024;

/// What to start.
#[derive(Debug, Clone)]
pub struct ShellSpec {
    /// Working and home directory.
    pub home: PathBuf,
    /// The document's run-as user, if `runAsEnabled`.
    pub run_as: Option<String>,
    /// `shellProfile.linux`.
    pub profile: String,
    /// The session's logging: the IPC file output is appended to, CloudWatch streaming, and
    /// the upload when the shell is gone.
    pub log: Arc<SessionLog>,
    /// Initial size (cols, rows).
    pub size: (u16, u16),
    /// The real agent's pacing: a pause after every chunk of output (and a second's wait
    /// before the first read), or `None` to send output as fast as it comes.
    pub pause: Option<Duration>,
}

/// Finishes a session's log when dropped: by then the shell's output has all been read.
struct Finish(Arc<SessionLog>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.ended();
    }
}

/// How long the real agent's shell plugin waits before it first reads the pty.
pub const FIRST_READ_DELAY: Duration = Duration::from_secs(1);

/// A running shell; see the module docs.
pub struct Shell {
    master: Box<dyn MasterPty + Send>,
    killer: Box<dyn ChildKiller + Send + Sync>,
    pid: Option<u32>,
    exited: Arc<AtomicBool>,
    /// Input for the pty.
    pub input: mpsc::Sender<Vec<u8>>,
}

/// The shell's outputs, kept apart from [`Shell`] so the agent can wait on them while it
/// holds the shell for input and resizes.
#[derive(Debug)]
pub struct ShellIo {
    /// Output chunks; closed once the pty reports end of file.
    pub output: mpsc::Receiver<Vec<u8>>,
    /// The child's exit code, once it exits.
    pub exit: oneshot::Receiver<u32>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// The shell binary to run: the agent runs `sh`.
const SHELL_PROGRAM: &str = "/bin/sh";

/// Whether `user` has an entry in `/etc/passwd`.
fn user_exists(user: &str) -> bool {
    std::fs::read_to_string("/etc/passwd").is_ok_and(|p| {
        p.lines()
            .any(|l| l.split(':').next().is_some_and(|name| name == user))
    })
}

/// Single-quotes a value for the shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The first line typed into the shell: run-as report, then the document's profile.
fn profile_line(run_as: Option<&str>, switched: bool, profile: &str) -> String {
    let mut line = String::new();
    if let Some(user) = run_as {
        // printf with an argument, so the echoed command line never contains the output text.
        line.push_str(&format!(
            "export SSM_RUN_AS_USER={}; printf 'running as %s%s\\n' \"$SSM_RUN_AS_USER\" {}; ",
            quote(user),
            quote(if switched {
                ""
            } else {
                " (reported only: the sandbox does not switch users)"
            })
        ));
    }
    let profile = profile.trim();
    if profile.is_empty() {
        line.push_str("cd ~");
    } else {
        line.push_str(profile);
    }
    line.push('\n');
    line
}

impl Shell {
    /// Starts the shell and its threads.
    pub fn spawn(spec: &ShellSpec) -> anyhow::Result<(Self, ShellIo)> {
        std::fs::create_dir_all(&spec.home)?;
        if let Some(dir) = spec.log.ipc_path().parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut transcript = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.log.ipc_path())?;
        let log = Arc::clone(&spec.log);

        let pair = native_pty_system().openpty(PtySize {
            rows: spec.size.1.max(1),
            cols: spec.size.0.max(1),
            pixel_width: 0,
            pixel_height: 0,
        })?;
        let program = SHELL_PROGRAM;
        let switch = spec
            .run_as
            .as_deref()
            .filter(|u| rustix::process::geteuid().is_root() && user_exists(u));
        let mut cmd = match switch {
            Some(user) => {
                let mut c = CommandBuilder::new("su");
                c.args(["-s", program, "-", user]);
                c
            }
            None => CommandBuilder::new(program),
        };
        cmd.env_clear();
        cmd.env("TERM", "xterm-256color");
        cmd.env("HOME", &spec.home);
        cmd.env(
            "PATH",
            "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
        );
        cmd.env("SHELL", program);
        cmd.env("LANG", "C.UTF-8");
        cmd.cwd(&spec.home);
        let mut child = pair.slave.spawn_command(cmd)?;
        // Our copy of the slave must go, or the reader never sees end of file.
        drop(pair.slave);
        let killer = child.clone_killer();
        let pid = child.process_id();

        let mut reader = pair.master.try_clone_reader()?;
        let mut writer = pair.master.take_writer()?;
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(16);
        let (in_tx, mut in_rx) = mpsc::channel::<Vec<u8>>(64);
        let (exit_tx, exit_rx) = oneshot::channel();
        let exited = Arc::new(AtomicBool::new(false));
        let pause = spec.pause;

        // However the reader stops (end of file, or its session gone), the log is finished.
        let finish = Finish(Arc::clone(&spec.log));
        std::thread::Builder::new()
            .name("sandbox-pty-read".to_owned())
            .spawn(move || {
                let mut buf = [0u8; CHUNK];
                let mut carry = 0usize;
                if pause.is_some() {
                    std::thread::sleep(FIRST_READ_DELAY);
                }
                loop {
                    let n = match reader.read(buf.get_mut(carry..).unwrap_or_default()) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        // EIO is how Linux reports that the other side of the pty is gone.
                        Err(_) => break,
                    };
                    let total = carry + n;
                    let filled = buf.get(..total).unwrap_or_default();
                    let mut cut = utf8_complete_len(filled);
                    if cut == 0 && total == CHUNK {
                        // Not UTF-8 at all: pass it on rather than hold it forever.
                        cut = total;
                    }
                    if cut > 0 {
                        let chunk = filled.get(..cut).unwrap_or_default().to_vec();
                        let _ = transcript.write_all(&chunk);
                        log.output(&chunk);
                        if out_tx.blocking_send(chunk).is_err() {
                            return;
                        }
                        if let Some(pause) = pause {
                            std::thread::sleep(pause);
                        }
                    }
                    buf.copy_within(cut..total, 0);
                    carry = total - cut;
                }
                if carry > 0 {
                    let rest = buf.get(..carry).unwrap_or_default().to_vec();
                    let _ = transcript.write_all(&rest);
                    log.output(&rest);
                    let _ = out_tx.blocking_send(rest);
                }
                let _ = transcript.flush();
                drop(transcript);
                drop(finish);
            })?;

        let line = profile_line(spec.run_as.as_deref(), switch.is_some(), &spec.profile);
        std::thread::Builder::new()
            .name("sandbox-pty-write".to_owned())
            .spawn(move || {
                if writer.write_all(line.as_bytes()).is_err() {
                    return;
                }
                while let Some(data) = in_rx.blocking_recv() {
                    if writer
                        .write_all(&data)
                        .and_then(|()| writer.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            })?;

        let exited_flag = Arc::clone(&exited);
        std::thread::Builder::new()
            .name("sandbox-pty-wait".to_owned())
            .spawn(move || {
                let code = child.wait().map_or(255, |s| s.exit_code());
                exited_flag.store(true, Ordering::SeqCst);
                let _ = exit_tx.send(code);
            })?;

        tracing::debug!(?pid, program, "sandbox shell started");
        Ok((
            Self {
                master: pair.master,
                killer,
                pid,
                exited,
                input: in_tx,
            },
            ShellIo {
                output: out_rx,
                exit: exit_rx,
            },
        ))
    }

    /// The shell's process id.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Applies a terminal size (`TIOCSWINSZ`; the shell gets SIGWINCH).
    pub fn resize(&self, cols: u32, rows: u32) {
        let size = PtySize {
            cols: u16::try_from(cols).unwrap_or(u16::MAX).max(1),
            rows: u16::try_from(rows).unwrap_or(u16::MAX).max(1),
            pixel_width: 0,
            pixel_height: 0,
        };
        if let Err(e) = self.master.resize(size) {
            tracing::debug!(error = %e, "pty resize failed");
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if self.exited.load(Ordering::SeqCst) {
            return;
        }
        let pid = self
            .pid
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw);
        // The shell leads its own session and process group (setsid): hang up all of it.
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::HUP);
        }
        let _ = self.killer.kill();
        let exited = Arc::clone(&self.exited);
        // A shell that ignores SIGHUP is killed outright a moment later; the waiter thread
        // then reaps it.
        let _ = std::thread::Builder::new()
            .name("sandbox-pty-kill".to_owned())
            .spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                if !exited.load(Ordering::SeqCst)
                    && let Some(pid) = pid
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            });
    }
}

/// Length of the longest prefix of `b` that does not end inside a UTF-8 sequence. Bytes that
/// are not UTF-8 at all count as complete (they are passed on as they are).
pub fn utf8_complete_len(b: &[u8]) -> usize {
    let len = b.len();
    for back in 1..=4.min(len) {
        let i = len - back;
        let Some(&byte) = b.get(i) else {
            return len;
        };
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // continuation byte: keep looking for the lead
        }
        let need = match byte {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if back < need { i } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_cuts_hold_back_only_incomplete_sequences() {
        assert_eq!(utf8_complete_len(b"abc"), 3);
        assert_eq!(utf8_complete_len("aé".as_bytes()), 3);
        assert_eq!(utf8_complete_len(&"aé".as_bytes()[..2]), 1);
        let euro = "€".as_bytes(); // 3 bytes
        assert_eq!(utf8_complete_len(&euro[..1]), 0);
        assert_eq!(utf8_complete_len(&euro[..2]), 0);
        assert_eq!(utf8_complete_len(euro), 3);
        let emoji = "x😀".as_bytes(); // 1 + 4
        assert_eq!(utf8_complete_len(&emoji[..4]), 1);
        assert_eq!(utf8_complete_len(emoji), 5);
        assert_eq!(utf8_complete_len(&[0x80, 0x80, 0x80, 0x80]), 4);
        assert_eq!(utf8_complete_len(&[]), 0);
    }

    #[test]
    fn profile_line_reports_the_user_without_spelling_the_output() {
        let line = profile_line(Some("ssm-sudo"), false, "cd ~ && exec bash -l");
        assert!(line.contains("SSM_RUN_AS_USER='ssm-sudo'"));
        assert!(!line.contains("running as ssm-sudo"));
        assert!(line.ends_with("cd ~ && exec bash -l\n"));
        assert_eq!(profile_line(None, false, ""), "cd ~\n");
    }
}
