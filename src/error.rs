//! Errors become exit codes and messages here, and only here.
//!
//! Modules raise typed errors (`ConfigError`, later `AwsError`, `ProtocolError`, …). The
//! subcommands pass them up with `anyhow` context. [`report`] walks the chain once, finds the
//! most specific classified error, picks the [`ErrorKind`] and its exit code, and prints one
//! line `error: …` followed by `caused by:` lines and `hint:` lines. The exit codes are part of
//! the CLI contract and listed in the README.

use std::fmt;
use std::io::Write;

use crate::audit::AuditError;
use crate::aws::AwsError;
use crate::config::ConfigError;
use crate::engine::EngineError;
use crate::output::Closed;

/// What kind of failure ended the program; decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bug or an unexpected local failure.
    Internal,
    /// Bad command-line usage or configuration.
    Usage,
    /// The target does not exist, is ambiguous, or is not reachable.
    NotFound,
    /// Missing or expired credentials, or access denied by AWS.
    Auth,
    /// The network failed or the session was lost.
    Network,
    /// The user interrupted the program (Ctrl-C).
    Interrupted,
}

impl ErrorKind {
    /// The documented exit status for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Internal => 1,
            Self::Usage => 2,
            Self::NotFound => 3,
            Self::Auth => 4,
            Self::Network => 5,
            Self::Interrupted => 130,
        }
    }
}

/// An error raised directly by a subcommand, already classified, with optional hints.
#[derive(Debug)]
pub struct UserError {
    kind: ErrorKind,
    message: String,
    hints: Vec<String>,
}

impl UserError {
    /// A classified error with a one-sentence, lower-case message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    /// Adds a `hint:` line.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

/// How the program ended, as decided from an error chain.
#[derive(Debug, PartialEq, Eq)]
pub struct Classified {
    /// The kind, or `None` when the "error" is really a success (stdout closed by the reader).
    pub kind: Option<ErrorKind>,
    /// Hints to print after the message.
    pub hints: Vec<String>,
}

/// Finds the most specific classified error in the chain (the outermost one that is known).
pub fn classify(err: &anyhow::Error) -> Classified {
    for cause in err.chain() {
        if cause.downcast_ref::<Closed>().is_some() {
            return Classified {
                kind: None,
                hints: Vec::new(),
            };
        }
        if let Some(e) = cause.downcast_ref::<UserError>() {
            return Classified {
                kind: Some(e.kind),
                hints: e.hints.clone(),
            };
        }
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            return Classified {
                kind: Some(e.kind()),
                hints: e.hints(),
            };
        }
        if let Some(e) = cause.downcast_ref::<AwsError>() {
            return Classified {
                kind: Some(e.kind()),
                hints: e.hints(),
            };
        }
        if cause.downcast_ref::<AuditError>().is_some() {
            return Classified {
                kind: Some(ErrorKind::Internal),
                hints: vec![
                    "check the permissions of the audit log and its directory, or point [audit] path elsewhere (`ssmtui config path` shows it)"
                        .to_owned(),
                ],
            };
        }
        if let Some(e) = cause.downcast_ref::<ConfigError>() {
            return Classified {
                kind: Some(ErrorKind::Usage),
                hints: e.hints(),
            };
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>()
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            return Classified {
                kind: None,
                hints: Vec::new(),
            };
        }
    }
    Classified {
        kind: Some(ErrorKind::Internal),
        hints: vec![
            "this looks like a bug in ssmtui; run again with -v and look at the log (`ssmtui config path` shows where)"
                .to_owned(),
        ],
    }
}

/// Prints the error with its causes and hints to `out` and returns the exit status.
pub fn report(err: &anyhow::Error, out: &mut dyn Write) -> u8 {
    let classified = classify(err);
    let Some(kind) = classified.kind else {
        return 0;
    };
    let mut chain = err.chain();
    if let Some(top) = chain.next() {
        let _ = writeln!(out, "error: {top}");
    }
    let mut previous = err.to_string();
    for cause in chain {
        let text = cause.to_string();
        // `#[error("…: {0}")]` wrappers repeat their source; print each fact once.
        if !previous.contains(&text) {
            let _ = writeln!(out, "  caused by: {text}");
        }
        previous = text;
    }
    for hint in &classified.hints {
        let _ = writeln!(out, "hint: {hint}");
    }
    kind.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(err: &anyhow::Error) -> (u8, String) {
        let mut buf = Vec::new();
        let code = report(err, &mut buf);
        (code, String::from_utf8_lossy(&buf).into_owned())
    }

    #[test]
    fn user_error_keeps_kind_and_hints_through_context() {
        let err = anyhow::Error::new(
            UserError::new(ErrorKind::NotFound, "no instance matches \"web\"")
                .hint("closest names: web-1, web-2"),
        )
        .context("cannot connect");
        let (code, text) = render(&err);
        assert_eq!(code, 3);
        assert_eq!(
            text,
            "error: cannot connect\n  caused by: no instance matches \"web\"\nhint: closest names: web-1, web-2\n"
        );
    }

    #[test]
    fn closed_stdout_is_success() {
        let err = anyhow::Error::new(Closed).context("printing the list");
        assert_eq!(render(&err), (0, String::new()));
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(render(&pipe).0, 0);
    }

    #[test]
    fn unknown_errors_are_internal_with_a_hint() {
        let err = anyhow::anyhow!("something odd");
        let (code, text) = render(&err);
        assert_eq!(code, 1);
        assert!(text.starts_with("error: something odd\nhint: this looks like a bug"));
    }

    #[test]
    fn exit_codes_are_the_documented_ones() {
        let codes: Vec<u8> = [
            ErrorKind::Internal,
            ErrorKind::Usage,
            ErrorKind::NotFound,
            ErrorKind::Auth,
            ErrorKind::Network,
            ErrorKind::Interrupted,
        ]
        .iter()
        .map(|k| k.exit_code())
        .collect();
        assert_eq!(codes, [1, 2, 3, 4, 5, 130]);
    }
}
