//! Writing to stdout where a closed pipe is not an error.
//!
//! `ssmtui list | head -1` closes our stdout early. Rust ignores SIGPIPE, so the next write
//! fails with `BrokenPipe`; [`print_out`] turns that into [`Closed`], which the error edge maps
//! to a successful exit, as `ls`/`grep` behave.

use std::io::{self, Write};

use crate::error::{Classified, Classify};

/// Stdout was closed by the reader; stop writing and exit successfully.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct Closed;

impl Classify for Closed {
    fn classified(&self) -> Classified {
        Classified::success()
    }
}

/// Writes `bytes` to stdout as they are and flushes it.
pub fn print_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Closed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
    }
}

/// Writes `text` to stdout and flushes it.
pub fn print_out(text: &str) -> anyhow::Result<()> {
    print_bytes(text.as_bytes())
}
