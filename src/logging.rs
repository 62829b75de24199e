//! Logging to a file, never to the terminal.
//!
//! The TUI owns the terminal and the shell passthrough owns stdout, so diagnostics go to a daily
//! rolling file `ssmtui.log.YYYY-MM-DD` in the state dir's `logs/` (see `ssmtui config path`).
//! The filter comes from `SSMTUI_LOG` (tracing-subscriber `EnvFilter` syntax, e.g.
//! `ssmtui=debug`), else from `-v` (`-v` debug, `-vv` trace), else `info`. Writing happens on a
//! background thread; the returned guard flushes it on drop, so `main` keeps it alive.
//!
//! Secrets never reach this file: tokens and keys are [`crate::secret::Secret`] values, which
//! format as `[redacted]`.

use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;

/// Environment variable with the log filter.
pub const ENV_LOG: &str = "SSMTUI_LOG";

/// Prefix of the log files in the log directory.
pub const FILE_PREFIX: &str = "ssmtui.log";

/// Keeps the background log writer alive; flushes on drop.
pub struct LogGuard {
    _guard: WorkerGuard,
    /// The directory the log files are written to.
    pub dir: PathBuf,
}

/// Caps the libraries that log message bodies at trace level: the AWS SDK logs deserialized
/// responses (StartSession's `TokenValue`) and tungstenite logs sent frames (the token frame).
/// Applied after the user's filter, so not even `SSMTUI_LOG=trace` can write a token.
pub fn secret_safe() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("aws_smithy_runtime", LevelFilter::DEBUG)
        .with_target("aws_smithy_runtime_api", LevelFilter::DEBUG)
        .with_target("aws_smithy_http", LevelFilter::DEBUG)
        .with_target("aws_smithy_http_client", LevelFilter::DEBUG)
        .with_target("aws_sigv4", LevelFilter::DEBUG)
        .with_target("tungstenite", LevelFilter::DEBUG)
        .with_target("tokio_tungstenite", LevelFilter::DEBUG)
        .with_target("hyper", LevelFilter::DEBUG)
        .with_target("hyper_util", LevelFilter::DEBUG)
        .with_target("axum", LevelFilter::DEBUG)
}

/// Starts file logging in `dir`. Fails only if the directory cannot be created or the filter in
/// `SSMTUI_LOG` is malformed; callers treat that as a warning, not a reason to stop.
pub fn init(dir: &Path, verbosity: u8) -> anyhow::Result<LogGuard> {
    std::fs::create_dir_all(dir)?;
    let filter = match std::env::var(ENV_LOG) {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(spec)?,
        _ => EnvFilter::new(match verbosity {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }),
    };
    let appender = tracing_appender::rolling::daily(dir, FILE_PREFIX);
    let (writer, guard) = tracing_appender::non_blocking(appender);
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(filter)
                .with_filter(secret_safe()),
        )
        .try_init()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(LogGuard {
        _guard: guard,
        dir: dir.to_path_buf(),
    })
}
