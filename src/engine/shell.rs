//! Shell passthrough: the local terminal (or pipe) on one side, a session on the other.
//!
//! **Interactive** (stdin is a terminal): raw mode for the duration (restored by a guard on
//! every exit path, including panics, since the guard's `Drop` runs during unwinding), the
//! terminal size sent first and on every SIGWINCH, bytes streamed both ways as they come, and
//! ssh-style escapes after a newline: `~.` terminates the session, `~?` lists the escapes,
//! `~~` sends one `~`. Ctrl-C and Ctrl-Z are ordinary bytes in raw mode, so they reach the
//! remote shell.
//!
//! **Pipe mode** (stdin is not a terminal): no raw mode; stdin is streamed until EOF. A Session
//! Manager shell always runs on a remote pty and reports no exit status, so for POSIX targets
//! the session is framed: first `stty -echo -onlcr` and empty prompts followed by a begin
//! marker, then the piped commands, then a line printing an end marker with `$?` and `exit`.
//! Output before the begin marker (motd, prompt) and after the end marker is dropped, and the
//! status inside the end marker becomes ours — so `echo uptime | ssmtui connect web-1` prints
//! just the command's output and returns its status. Markers use the byte 0x1e, which the
//! echoed command text never contains (it spells it `\036`).
//!
//! Stdin is read by a small thread that polls with a timeout and stops when asked, so after
//! the session ends no reader is left behind to steal the TUI's next keystroke.
//!
//! Input never blocks output: keystrokes (and pastes) wait in a small queue that the loop
//! hands to the session only as it has room, while session events keep being drained. If the
//! loop awaited the session's input channel instead, a large paste into an echoing program
//! would stop it taking events; the driver would then stop reading the websocket, no
//! acknowledgement would arrive, and the input would never get room. The stdin reader is
//! paused while the queue is full, which bounds the memory a paste can take.
//!
//! When the caller's `stop` token is cancelled (a signal), the session is terminated and the
//! outcome says it was interrupted.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{CloseReason, EngineEvent, InputItem, SessionCommand, SessionHandle};

/// Input items waiting for room in the session before stdin is read again.
const INPUT_QUEUE: usize = 8;
/// After a stop, the longest wait for the driver to confirm the termination.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// The longest exit status text the exit marker may carry (`-2147483648`).
const MAX_STATUS_LEN: usize = 11;

/// How the passthrough behaves.
#[derive(Debug, Clone)]
pub struct ShellOptions {
    /// Escape character (after a newline); `None` disables escapes.
    pub escape: Option<u8>,
    /// Whether stdin is a terminal (interactive) or a pipe.
    pub interactive: bool,
    /// Whether the target runs a POSIX shell (pipe mode frames the session with markers).
    pub posix_target: bool,
    /// Say nothing on stderr (the KMS notice, reconnects): `exec` on many targets.
    pub quiet: bool,
}

impl ShellOptions {
    /// Pipe mode on a POSIX target: the session is framed with markers, and the script's
    /// exit status comes back with the exit marker.
    pub fn framed(&self) -> bool {
        !self.interactive && self.posix_target
    }
}

/// How a shell session ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellOutcome {
    /// The remote exit status when it is known.
    pub exit_code: Option<i32>,
    /// Why the session ended.
    pub reason: CloseReason,
    /// The caller's `stop` token ended it (a signal).
    pub interrupted: bool,
}

const BEGIN_MARKER: &[u8] = b"\x1essmtui-begin\x1e";
const EXIT_MARKER: &[u8] = b"\x1essmtui-exit:";
/// Pipe mode's first line: quiet terminal, no prompts, an EXIT trap that prints the exit
/// marker with the shell's status, then the begin marker. The trap is what reports the status
/// of an explicit `exit N` and of a `set -e` abort, which end the shell before any line we
/// could add after the script. bash >= 5.1 also wraps prompts in bracketed-paste escapes;
/// `bind` turns that off where it exists.
pub const PRELUDE: &[u8] = b"bind 'set enable-bracketed-paste off' 2>/dev/null; stty -echo -onlcr 2>/dev/null; PS1=''; PS2=''; trap 'printf \"\\036ssmtui-exit:%d\\036\\n\" \"$?\"' EXIT; printf '\\036ssmtui-begin\\036\\n'\n";
/// Pipe mode's last line: `exit`, with the status of the script's last command (the trap
/// prints it). Its stderr goes nowhere: an interactive bash prints `logout` (login shells) or
/// `exit` there, glued to the script's last output when that has no final newline.
pub const EPILOGUE: &[u8] = b"\nexit 2>/dev/null\n";
/// What an interactive bash prints when a script's own `exit N` ends it, just before its EXIT
/// trap runs: `logout` in a login shell, `exit` otherwise (as when it is the agent's `sh`).
const EXIT_LINES: [&[u8]; 2] = [b"logout", b"exit"];

/// Runs the passthrough until the session ends, or until `stop` is cancelled (then the session
/// is terminated first).
pub async fn run(
    handle: &SessionHandle,
    events: &mut mpsc::Receiver<EngineEvent>,
    options: &ShellOptions,
    stop: &CancellationToken,
) -> anyhow::Result<ShellOutcome> {
    let _raw = if options.interactive {
        Some(RawModeGuard::enable()?)
    } else {
        None
    };
    if options.interactive {
        let (cols, rows) = crossterm::terminal::size().unwrap_or((300, 100));
        handle.resize(u32::from(cols), u32::from(rows)).await?;
    }
    let framed = options.framed();
    if framed {
        handle.send(PRELUDE.to_vec()).await?;
    }

    let reader_stop = Arc::new(AtomicBool::new(false));
    let (stdin_rx, reader) = spawn_stdin_reader(Arc::clone(&reader_stop));
    let mut stdout = DirectStdout::new();
    let outcome = pass_through(handle, events, options, stop, framed, stdin_rx, &mut stdout).await;
    // Wait for the reader to be gone before giving the terminal back (whatever the outcome):
    // a TUI resuming at once queries the cursor position, and a reader still polling would
    // swallow the answer.
    reader_stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    outcome
}

/// A fixed script as the input of [`run_script`].
pub fn script_input(script: &[u8]) -> mpsc::Receiver<Vec<u8>> {
    let chunks: Vec<Vec<u8>> = script.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
    let (tx, rx) = mpsc::channel(chunks.len().max(1));
    for chunk in chunks {
        let _ = tx.try_send(chunk);
    }
    // Closed: the script is all the input there is.
    rx
}

/// Runs a script in a framed (pipe mode) session on a POSIX target and writes what it prints
/// to `out`. `input` is the script and whatever the caller sends while it runs (a copy's data
/// once the script asks for it); when it closes, the epilogue ends the shell, and the outcome
/// carries the exit status.
pub async fn run_script(
    handle: &SessionHandle,
    events: &mut mpsc::Receiver<EngineEvent>,
    input: mpsc::Receiver<Vec<u8>>,
    out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    stop: &CancellationToken,
) -> anyhow::Result<ShellOutcome> {
    handle.send(PRELUDE.to_vec()).await?;
    let rx = input;
    let options = ShellOptions {
        escape: None,
        interactive: false,
        posix_target: true,
        quiet: true,
    };
    let outcome = pass_through(handle, events, &options, stop, true, rx, out).await;
    let _ = out.flush().await;
    outcome
}

/// The loop of [`run`] and [`run_script`]: input from `stdin_rx`, output to `out`.
async fn pass_through(
    handle: &SessionHandle,
    events: &mut mpsc::Receiver<EngineEvent>,
    options: &ShellOptions,
    stop: &CancellationToken,
    framed: bool,
    mut stdin_rx: mpsc::Receiver<Vec<u8>>,
    stdout: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
) -> anyhow::Result<ShellOutcome> {
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut escapes = EscapeState::new(options.escape.filter(|_| options.interactive));
    let mut filter = framed.then(OutputFilter::default);
    let mut exit_code = None;
    let mut stdin_open = true;
    let input = handle.input_sender();
    let mut queue: VecDeque<InputItem> = VecDeque::new();
    let mut stop_deadline: Option<tokio::time::Instant> = None;

    let outcome = loop {
        let stopping = stop_deadline.is_some();
        tokio::select! {
            () = stop.cancelled(), if !stopping => {
                // Terminate through the driver, then keep draining events until it confirms.
                handle.command(SessionCommand::Terminate).await?;
                stop_deadline = Some(tokio::time::Instant::now() + STOP_WAIT);
                stdin_open = false;
                queue.clear();
            }
            () = sleep_until_opt(stop_deadline) => {
                handle.cancel();
                break ShellOutcome {
                    exit_code,
                    reason: CloseReason::Failed("the termination was not confirmed in time".to_owned()),
                    interrupted: true,
                };
            }
            permit = input.reserve(), if !queue.is_empty() => match (permit, queue.pop_front()) {
                (Ok(permit), Some(item)) => permit.send(item),
                // The driver has stopped taking input because the session is ending: its
                // last events (the exit status, Closed) are still to come.
                _ => {
                    queue.clear();
                    stdin_open = false;
                }
            },
            chunk = stdin_rx.recv(), if stdin_open && queue.len() < INPUT_QUEUE => match chunk {
                Some(bytes) => {
                    let (send, action) = escapes.feed(&bytes);
                    if !send.is_empty() {
                        queue.push_back(InputItem::Data(send));
                    }
                    match action {
                        EscapeAction::None => {}
                        EscapeAction::Help => {
                            stdout.write_all(ESCAPE_HELP.as_bytes()).await?;
                            stdout.flush().await?;
                        }
                        EscapeAction::Terminate => {
                            stdout.write_all(b"\r\n[terminating the session]\r\n").await?;
                            stdout.flush().await?;
                            handle.command(SessionCommand::Terminate).await?;
                        }
                    }
                }
                None => {
                    stdin_open = false;
                    if framed {
                        queue.push_back(InputItem::Data(EPILOGUE.to_vec()));
                    } else if !options.interactive {
                        // End of input: ^D at the start of a line ends the remote shell, as it
                        // would at a terminal.
                        queue.push_back(InputItem::Data(b"\n\x04".to_vec()));
                    }
                }
            },
            _ = winch.recv(), if options.interactive => {
                if let Ok((cols, rows)) = crossterm::terminal::size() {
                    // Ordered with the keystrokes: what is typed after a resize runs at the
                    // new size.
                    queue.push_back(InputItem::Resize { cols: u32::from(cols), rows: u32::from(rows) });
                }
            }
            ev = events.recv() => match ev {
                Some(EngineEvent::Output(bytes) | EngineEvent::StdErr(bytes)) => {
                    let visible = match &mut filter {
                        Some(f) => {
                            let out = f.feed(&bytes);
                            if let Some(code) = f.exit_code {
                                exit_code = Some(code);
                            }
                            out
                        }
                        None => bytes,
                    };
                    if !visible.is_empty() {
                        stdout.write_all(&visible).await?;
                        stdout.flush().await?;
                    }
                }
                Some(EngineEvent::ExitCode(code)) => exit_code = Some(code),
                Some(EngineEvent::Ready { customer_message, .. }) if !customer_message.is_empty() && !options.quiet => {
                    eprint!("{customer_message}{}", if options.interactive { "\r\n" } else { "\n" });
                }
                Some(EngineEvent::Reconnecting { attempt: 1, reason }) if !options.quiet => {
                    eprint!("[connection lost ({reason}); reconnecting…]{}", if options.interactive { "\r\n" } else { "\n" });
                }
                Some(EngineEvent::Closed(reason)) => {
                    // A shell that ended by itself without ever running the prelude: everything
                    // it printed was held back as the prelude's echo. (A failed session says
                    // why in its own error.)
                    if let Some(f) = filter.as_ref().filter(|f| !f.begun)
                        && matches!(reason, CloseReason::ChannelClosed { .. })
                    {
                        tracing::warn!(?reason, held = f.buf.len(), "the framed shell ended before its first line ran");
                        if !options.quiet {
                            eprintln!("[the remote shell ended before the script started: nothing it printed is shown]");
                        }
                    }
                    break ShellOutcome { exit_code, reason, interrupted: stopping };
                }
                Some(_) => {}
                None => break ShellOutcome { exit_code, reason: CloseReason::Detached, interrupted: stopping },
            },
        }
    };
    Ok(outcome)
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

const ESCAPE_HELP: &str = "\r\nSupported escape sequences (after a newline):\r\n  ~.  terminate the session\r\n  ~?  this help\r\n  ~~  send the escape character itself\r\n";

/// What an escape sequence asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapeAction {
    /// Nothing.
    None,
    /// Show the escape help.
    Help,
    /// Terminate the session.
    Terminate,
}

/// ssh-style escape recognition over the input byte stream.
#[derive(Debug, Clone)]
pub struct EscapeState {
    escape: Option<u8>,
    at_line_start: bool,
    pending: bool,
}

impl EscapeState {
    /// Recognises `escape` after a newline (or at the very start); `None` disables it.
    pub fn new(escape: Option<u8>) -> Self {
        Self {
            escape,
            at_line_start: true,
            pending: false,
        }
    }

    /// Splits input into bytes to send and an action; bytes after an action are dropped, as ssh
    /// does after `~.`.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, EscapeAction) {
        let Some(esc) = self.escape else {
            return (input.to_vec(), EscapeAction::None);
        };
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.pending {
                self.pending = false;
                match b {
                    b'.' => return (out, EscapeAction::Terminate),
                    b'?' => {
                        self.at_line_start = false;
                        return (out, EscapeAction::Help);
                    }
                    _ if b == esc => {
                        out.push(esc);
                        self.at_line_start = false;
                        continue;
                    }
                    _ => out.push(esc),
                }
            } else if self.at_line_start && b == esc {
                self.pending = true;
                continue;
            }
            out.push(b);
            self.at_line_start = b == b'\r' || b == b'\n';
        }
        (out, EscapeAction::None)
    }
}

/// Drops output outside the begin/exit markers and extracts the exit status. It holds back at
/// most an exit marker with its status: output that only looks like the start of a marker is
/// released once it cannot be one.
#[derive(Debug, Default)]
pub struct OutputFilter {
    begun: bool,
    skip_newline: bool,
    buf: Vec<u8>,
    /// The status from the exit marker, once seen.
    pub exit_code: Option<i32>,
}

impl OutputFilter {
    /// Feeds output; returns what should be shown.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.exit_code.is_some() {
            return Vec::new();
        }
        self.buf.extend_from_slice(bytes);
        if !self.begun {
            match find(&self.buf, BEGIN_MARKER) {
                Some(i) => {
                    self.buf = self.buf.split_off(i + BEGIN_MARKER.len());
                    self.begun = true;
                    self.skip_newline = true;
                }
                None => {
                    // Keep only a tail that could be the start of a split marker.
                    let keep = BEGIN_MARKER.len().saturating_sub(1);
                    let cut = self.buf.len().saturating_sub(keep);
                    self.buf.drain(..cut);
                    return Vec::new();
                }
            }
        }
        if self.skip_newline {
            // The begin marker's own line end, possibly split from it across messages.
            match self.buf.as_slice() {
                [] | [b'\r'] => return Vec::new(),
                [b'\r', b'\n', ..] => {
                    self.buf.drain(..2);
                }
                [b'\n', ..] => {
                    self.buf.remove(0);
                }
                _ => {}
            }
            self.skip_newline = false;
        }
        let mut shown = Vec::new();
        while let Some(i) = find(&self.buf, EXIT_MARKER) {
            let tail = self.buf.get(i + EXIT_MARKER.len()..).unwrap_or_default();
            let end = tail
                .iter()
                .take(MAX_STATUS_LEN + 1)
                .position(|&b| b == 0x1e);
            match end {
                Some(end) => {
                    let code = std::str::from_utf8(tail.get(..end).unwrap_or_default())
                        .ok()
                        .and_then(|s| s.trim().parse().ok());
                    if let Some(code) = code {
                        let before = self.buf.get(..i).unwrap_or_default();
                        let cut = before.len() - logout_len(before);
                        shown.extend_from_slice(before.get(..cut).unwrap_or_default());
                        self.exit_code = Some(code);
                        self.buf.clear();
                        return shown;
                    }
                }
                None if tail.len() <= MAX_STATUS_LEN => {
                    // The marker has started but its end has not arrived: show what precedes
                    // it and hold back the marker (never more than a `logout` line, a marker
                    // and a status).
                    let cut = i - logout_len(self.buf.get(..i).unwrap_or_default());
                    shown.extend(self.buf.drain(..cut));
                    return shown;
                }
                None => {}
            }
            // Not our marker, only output that looks like its start: release it and look on.
            shown.extend(self.buf.drain(..=i));
        }
        // Hold back what could be the start of the exit marker, or of a login bash's `logout`
        // line followed by it.
        let hold = held_tail(&self.buf);
        let cut = self.buf.len() - hold;
        shown.extend(self.buf.drain(..cut));
        shown
    }
}

/// How many bytes at the end of `before` (the output before an exit marker) are bash's
/// `logout` or `exit` line ([`EXIT_LINES`]), which it prints on a script's `exit N` just before
/// the EXIT trap runs: it is the shell's, not the script's. (A script whose very last output
/// line is `logout` or `exit` loses it.)
fn logout_len(before: &[u8]) -> usize {
    for word in EXIT_LINES {
        for end in [&b"\r\n"[..], b"\n"] {
            let line = [word, end].concat();
            if let Some(start) = before.len().checked_sub(line.len())
                && before.ends_with(&line)
                && (start == 0 || before.get(start - 1) == Some(&b'\n'))
            {
                return line.len();
            }
        }
    }
    0
}

/// How many bytes at the end of `buf` may be the start of an exit marker, or of a `logout`
/// line followed by one, and must wait for what comes next.
fn held_tail(buf: &[u8]) -> usize {
    let mut tails = vec![(EXIT_MARKER.to_vec(), false)];
    for word in EXIT_LINES {
        for end in [&b"\r\n"[..], b"\n"] {
            tails.push(([word, end, EXIT_MARKER].concat(), true));
        }
    }
    let mut hold = 0;
    for (tail, at_line_start) in tails {
        let fits = (1..tail.len()).rev().find(|&n| {
            let Some(start) = buf.len().checked_sub(n) else {
                return false;
            };
            buf.ends_with(tail.get(..n).unwrap_or_default())
                && (!at_line_start || start == 0 || buf.get(start - 1) == Some(&b'\n'))
        });
        hold = hold.max(fits.unwrap_or(0));
    }
    hold
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Restores the terminal's previous mode when dropped.
pub struct RawModeGuard(());

impl RawModeGuard {
    /// Enters raw mode.
    pub fn enable() -> std::io::Result<Self> {
        crossterm::terminal::enable_raw_mode()?;
        Ok(Self(()))
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
        let _ = std::io::stdout().flush();
    }
}

/// Standard output for a session's output. tokio's stdout hands every write to its blocking
/// pool: two thread switches per 1 KiB message at the real agent's cadence (bench `paced`,
/// `shell_flood_cpu_per_msg`). When stdout is a pipe (Linux), this one writes on the
/// session's own thread if the pipe can take the bytes now: `poll` says writable, which for a
/// Linux pipe means a free 4 KiB page, and at most [`DIRECT_WRITE`] bytes go at a time, so
/// the write cannot block. Otherwise, and always for terminals (whose `poll` promises only
/// one byte of room) and files, it writes through tokio's stdout, so a reader that does not
/// keep up never blocks the session's thread. Order is kept: after a write through tokio's
/// stdout, direct writes resume only once it has been flushed.
struct DirectWriter<F, W> {
    /// The descriptor written directly.
    fd: F,
    /// The same output, written from elsewhere (tokio's stdout: its blocking pool).
    inner: W,
    /// A write went through `inner` and is not flushed yet.
    through_inner: bool,
    /// `fd` is a pipe whose `poll` guarantees a non-blocking [`DIRECT_WRITE`].
    direct: bool,
}

/// Most bytes written directly at once: Linux's atomic pipe write size (a page), what a
/// writable pipe is sure to take.
const DIRECT_WRITE: usize = 4096;

type DirectStdout = DirectWriter<std::io::Stdout, tokio::io::Stdout>;

impl DirectStdout {
    fn new() -> Self {
        // Direct writes go to the descriptor: nothing may wait in std's buffer before them.
        let _ = std::io::stdout().flush();
        let fd = std::io::stdout();
        let direct = cfg!(target_os = "linux")
            && rustix::fs::fstat(&fd).is_ok_and(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo
            });
        Self {
            fd,
            inner: tokio::io::stdout(),
            through_inner: false,
            direct,
        }
    }
}

impl<F: std::os::fd::AsFd, W> DirectWriter<F, W> {
    /// Writes directly if the descriptor can take bytes right now; `None`: it cannot (or would
    /// block).
    fn try_direct(&self, buf: &[u8]) -> Option<std::io::Result<usize>> {
        if !ready_now(&self.fd, rustix::event::PollFlags::OUT) {
            return None;
        }
        let chunk = buf.get(..buf.len().min(DIRECT_WRITE)).unwrap_or_default();
        match rustix::io::write(&self.fd, chunk) {
            Ok(n) => Some(Ok(n)),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => None,
            Err(e) => Some(Err(e.into())),
        }
    }
}

impl<F: std::os::fd::AsFd + Unpin, W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite
    for DirectWriter<F, W>
{
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.direct
            && !self.through_inner
            && let Some(done) = self.try_direct(buf)
        {
            return std::task::Poll::Ready(done);
        }
        self.through_inner = true;
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let flushed = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        if flushed.is_ready() {
            self.through_inner = false;
        }
        flushed
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether `fd` is ready for `flags` right now (a `poll` that does not wait).
fn ready_now(fd: impl std::os::fd::AsFd, flags: rustix::event::PollFlags) -> bool {
    let mut fds = [rustix::event::PollFd::new(&fd, flags)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(1..))
        && fds[0].revents().contains(flags)
}

/// Reads stdin on a thread that checks `stop` every 100 ms (and before every read, so nothing
/// is consumed after it is set); closes the channel at EOF.
fn spawn_stdin_reader(
    stop: Arc<AtomicBool>,
) -> (mpsc::Receiver<Vec<u8>>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(8);
    let handle = std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut buf = vec![0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            let mut fds = [rustix::event::PollFd::new(
                &stdin,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            match rustix::io::read(&stdin, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default().to_vec();
                    if tx.blocking_send(chunk).is_err() {
                        break;
                    }
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(_) => break,
            }
        }
    });
    (rx, handle)
}

/// The poll timeout above, for documentation and tests.
pub const STDIN_POLL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    /// Output written elsewhere that completes only when allowed to: tokio's stdout with its
    /// write still running in the blocking pool.
    #[derive(Default)]
    struct Held {
        staged: Vec<u8>,
        done: Vec<u8>,
        may_finish: bool,
    }

    impl tokio::io::AsyncWrite for Held {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.staged.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if !self.may_finish {
                return std::task::Poll::Pending;
            }
            let staged = std::mem::take(&mut self.staged);
            self.done.extend(staged);
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// What the pipe holds now, without waiting.
    fn drain(reader: &mut std::io::PipeReader) -> Vec<u8> {
        use std::io::Read;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while ready_now(&*reader, rustix::event::PollFlags::IN) {
            let n = reader.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// One `poll_write` that must finish at once; the bytes it took.
    fn write_now<F: std::os::fd::AsFd + Unpin>(
        out: &mut DirectWriter<F, Held>,
        bytes: &[u8],
    ) -> usize {
        use tokio::io::AsyncWrite;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(out).poll_write(&mut cx, bytes) {
            std::task::Poll::Ready(Ok(n)) => n,
            other => panic!("{other:?}"),
        }
    }

    /// Direct writes while the pipe can take them; through the other path when it cannot; and
    /// not directly again until that path has flushed, even once the pipe has room.
    #[test]
    fn direct_writes_wait_for_the_other_path_to_flush() {
        use std::task::{Context, Waker};
        use tokio::io::AsyncWrite;
        let (mut reader, writer) = std::io::pipe().unwrap();
        let mut out = DirectWriter {
            fd: writer,
            inner: Held::default(),
            through_inner: false,
            direct: true,
        };
        // Fill the pipe with direct writes.
        let mut direct = 0usize;
        loop {
            let n = write_now(&mut out, &[b'a'; 1024]);
            if out.through_inner {
                break;
            }
            direct += n;
        }
        assert!(direct >= 4096, "{direct}");
        assert_eq!(out.inner.staged.len(), 1024, "the write that found it full");
        let first = drain(&mut reader);
        assert_eq!(first.len(), direct);
        // The pipe has room again, but the other path has not flushed: still through it.
        write_now(&mut out, b"b");
        assert!(drain(&mut reader).is_empty());
        assert_eq!(out.inner.staged.last(), Some(&b'b'));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            std::pin::Pin::new(&mut out)
                .poll_flush(&mut cx)
                .is_pending()
        );
        assert!(out.through_inner);
        out.inner.may_finish = true;
        assert!(std::pin::Pin::new(&mut out).poll_flush(&mut cx).is_ready());
        assert!(!out.through_inner);
        assert_eq!(out.inner.done.len(), 1025);
        // Flushed: direct again.
        assert_eq!(write_now(&mut out, b"c"), 1);
        assert_eq!(drain(&mut reader), b"c");
    }

    #[test]
    fn escapes_after_newline_only() {
        let mut e = EscapeState::new(Some(b'~'));
        assert_eq!(e.feed(b"a~b"), (b"a~b".to_vec(), EscapeAction::None));
        assert_eq!(e.feed(b"\r~~x"), (b"\r~x".to_vec(), EscapeAction::None));
        assert_eq!(e.feed(b"\r~?"), (b"\r".to_vec(), EscapeAction::Help));
        assert_eq!(e.feed(b"\n~"), (b"\n".to_vec(), EscapeAction::None));
        assert_eq!(e.feed(b"."), (Vec::new(), EscapeAction::Terminate));
        let mut start = EscapeState::new(Some(b'~'));
        assert_eq!(start.feed(b"~."), (Vec::new(), EscapeAction::Terminate));
        let mut other = EscapeState::new(Some(b'~'));
        assert_eq!(other.feed(b"~x"), (b"~x".to_vec(), EscapeAction::None));
        let mut off = EscapeState::new(None);
        assert_eq!(off.feed(b"~."), (b"~.".to_vec(), EscapeAction::None));
    }

    #[test]
    fn output_filter_frames_and_extracts_status() {
        let mut f = OutputFilter::default();
        let stream: &[u8] = b"Last login: x\r\n$ stty -echo; printf '\\036ssmtui-begin\\036\\n'\r\n\x1essmtui-begin\x1e\nhello\nworld\n\x1essmtui-exit:3\x1e\nlogout\n";
        // Feed in every possible split to prove markers split across messages are found.
        for split in 0..stream.len() {
            let mut f2 = OutputFilter::default();
            let (a, b) = stream.split_at(split);
            let mut shown = f2.feed(a);
            shown.extend(f2.feed(b));
            assert_eq!(shown, b"hello\nworld\n", "split at {split}");
            assert_eq!(f2.exit_code, Some(3), "split at {split}");
        }
        assert_eq!(f.feed(stream), b"hello\nworld\n");
        assert_eq!(f.exit_code, Some(3));
        assert!(f.feed(b"more").is_empty());
    }

    #[test]
    fn a_login_shells_logout_line_is_not_output() {
        for stream in [
            &b"\x1essmtui-begin\x1e\nhi\nlogout\n\x1essmtui-exit:3\x1e\n"[..],
            b"\x1essmtui-begin\x1e\nhi\r\nexit\r\n\x1essmtui-exit:3\x1e\r\n",
        ] {
            for split in 0..stream.len() {
                let mut f = OutputFilter::default();
                let (a, b) = stream.split_at(split);
                let mut shown = f.feed(a);
                shown.extend(f.feed(b));
                let shown = String::from_utf8_lossy(&shown).replace('\r', "");
                assert_eq!(shown, "hi\n", "split at {split}");
                assert_eq!(f.exit_code, Some(3), "split at {split}");
            }
        }
        // The script's own `logout` in the middle of its output stays.
        let mut f = OutputFilter::default();
        let mut shown = f.feed(b"\x1essmtui-begin\x1e\nlogout\nmore\n");
        shown.extend(f.feed(b"\x1essmtui-exit:0\x1e\n"));
        assert_eq!(shown, b"logout\nmore\n");
        // Held back only at a line start.
        let mut f = OutputFilter::default();
        let shown = f.feed(b"\x1essmtui-begin\x1e\nno logout");
        assert_eq!(shown, b"no logout");
    }

    #[test]
    fn output_filter_holds_back_at_most_a_marker() {
        let mut f = OutputFilter::default();
        assert!(f.feed(b"\x1essmtui-begin\x1e\n").is_empty());
        // Output that starts like an exit marker and never ends like one is released, not
        // buffered forever.
        let mut shown = f.feed(b"a\x1essmtui-exit:");
        assert_eq!(shown, b"a");
        for _ in 0..10_000 {
            shown.extend(f.feed(b"0123456789"));
        }
        assert!(
            f.buf.len() <= b"logout".len() + 2 + EXIT_MARKER.len() + MAX_STATUS_LEN,
            "{}",
            f.buf.len()
        );
        assert_eq!(shown.len(), 1 + EXIT_MARKER.len() + 100_000 - f.buf.len());
        assert_eq!(f.exit_code, None);
        // A look-alike with a non-numeric status is output too; the real marker still counts.
        let mut g = OutputFilter::default();
        let out =
            g.feed(b"\x1essmtui-begin\x1e\nx\x1essmtui-exit:no\x1e y\n\x1essmtui-exit:7\x1e\n");
        assert_eq!(out, b"x\x1essmtui-exit:no\x1e y\n");
        assert_eq!(g.exit_code, Some(7));
    }
}
