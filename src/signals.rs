//! The signals that end ssmtui politely: SIGINT (Ctrl-C outside raw mode), SIGTERM and SIGHUP
//! (the terminal went away).
//!
//! A command that has sessions open listens for them with [`Interrupts::watch`] before its
//! first StartSession, so no signal can kill it between StartSession and the audit end line:
//! the first signal cancels a token, the session is terminated and finished, and the command
//! exits with the documented status. A Ctrl-C pressed again a second or more later means the
//! user has run out of patience: it exits at once with status 130 (sessions then end by the
//! account's idle timeout, and their audit lines stay open). Other repeats are ignored:
//! signals come in pairs on their own (ssh sends its ProxyCommand SIGINT, then SIGHUP).

use std::sync::{Arc, OnceLock};

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// How soon after the first signal a Ctrl-C counts as "stop waiting".
const IMPATIENCE: Duration = Duration::from_secs(1);

/// The signals seen, as a token to select on and the name of the first one.
#[derive(Debug, Clone)]
pub struct Interrupts {
    token: CancellationToken,
    first: Arc<OnceLock<&'static str>>,
}

impl Interrupts {
    /// Starts listening for SIGINT, SIGTERM and SIGHUP (on the current tokio runtime).
    pub fn watch() -> std::io::Result<Self> {
        Self::listen(true)
    }

    /// Starts listening for SIGTERM and SIGHUP only: for the TUI, where Ctrl-C is a key, and
    /// where a local test shell sharing the terminal may deliver SIGINT to us too.
    pub fn watch_termination() -> std::io::Result<Self> {
        Self::listen(false)
    }

    fn listen(with_sigint: bool) -> std::io::Result<Self> {
        let mut int = if with_sigint {
            Some(signal(SignalKind::interrupt())?)
        } else {
            None
        };
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let token = CancellationToken::new();
        let first = Arc::new(OnceLock::new());
        let (t, f) = (token.clone(), Arc::clone(&first));
        tokio::spawn(async move {
            let mut first_at: Option<std::time::Instant> = None;
            loop {
                let name = tokio::select! {
                    Some(()) = recv_opt(&mut int) => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                    _ = hup.recv() => "SIGHUP",
                };
                match first_at {
                    None => {
                        tracing::info!(signal = name, "stopping");
                        first_at = Some(std::time::Instant::now());
                        let _ = f.set(name);
                        t.cancel();
                    }
                    // Only a person presses Ctrl-C again, and not within the same second:
                    // signals that come in pairs on their own (ssh's SIGINT to the process
                    // group then SIGHUP, a closing terminal's two SIGHUPs) must not cut the
                    // orderly end short.
                    Some(at) if name == "SIGINT" && at.elapsed() >= IMPATIENCE => {
                        eprintln!("ssmtui: {name} again; exiting without waiting");
                        std::process::exit(130);
                    }
                    Some(_) => tracing::info!(signal = name, "already stopping"),
                }
            }
        });
        Ok(Self { token, first })
    }

    /// Interrupts that no signal triggers, only [`Self::cancel`] (the TUI, which watches
    /// signals in its own loop, and tests).
    pub fn manual() -> Self {
        Self {
            token: CancellationToken::new(),
            first: Arc::new(OnceLock::new()),
        }
    }

    /// Triggers the interrupts by hand, naming the cause (a signal name, or what the caller
    /// calls it).
    pub fn cancel(&self, cause: &'static str) {
        let _ = self.first.set(cause);
        self.token.cancel();
    }

    /// Cancelled at the first signal (or [`Self::cancel`]).
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The first signal, once one arrived.
    pub fn signal(&self) -> Option<&'static str> {
        self.first.get().copied()
    }
}

async fn recv_opt(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
