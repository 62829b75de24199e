//! What kind of failure ended the program, and how each error type says so.
//!
//! A leaf: it imports nothing of the crate. Every error type a user can see classifies itself
//! where it is defined, by implementing [`Classify`] (its [`ErrorKind`], which decides the exit
//! status, and its `hint:` lines); [`UserError`] is the ready-made classified error for
//! messages written on the spot. `crate::report` walks an error chain, finds the most specific
//! classification, and renders it the same way for the CLI (message, causes, hints, exit code)
//! and the TUI (one line). The exit codes are part of the CLI contract and listed in the README.

use std::fmt;

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

    /// Its kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Adds a `hint:` line.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

impl Classify for UserError {
    fn classified(&self) -> Classified {
        Classified {
            kind: Some(self.kind),
            hints: self.hints.clone(),
        }
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

/// How the program ended, as decided from an error chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The kind, or `None` when the "error" is really a success (stdout closed by the reader).
    pub kind: Option<ErrorKind>,
    /// Hints to print after the message.
    pub hints: Vec<String>,
}

impl Classified {
    /// A failure of `kind` with these hints.
    pub fn new(kind: ErrorKind, hints: Vec<String>) -> Self {
        Self {
            kind: Some(kind),
            hints,
        }
    }

    /// Not a failure at all: the program ends successfully.
    pub fn success() -> Self {
        Self {
            kind: None,
            hints: Vec::new(),
        }
    }
}

/// An error type that knows what kind of failure it is and what the user can do about it.
/// Implemented next to each error type; `crate::report` lists the types it looks for.
pub trait Classify {
    /// Its classification.
    fn classified(&self) -> Classified;
}

/// An error and its causes as text: each one's `Display`, joined with ": ", leaving out a cause
/// whose text is already said (libraries often repeat their source in their own message).
/// Never `Debug`: that is for the log.
pub fn display_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// An error as one line for a status line or a table: the message and its causes joined with
/// ": ", then the first hint in parentheses. The "looks like a bug" hint of an internal error
/// belongs to the CLI's exit path, not to a status line, so internal errors show no hint.
pub fn one_line(err: &(dyn std::error::Error + 'static), classified: &Classified) -> String {
    let text = display_chain(err);
    match classified.hints.first() {
        Some(hint) if classified.kind != Some(ErrorKind::Internal) => format!("{text} ({hint})"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_user_error_classifies_itself() {
        let e = UserError::new(ErrorKind::NotFound, "no instance matches \"web\"")
            .hint("closest names: web-1");
        assert_eq!(e.to_string(), "no instance matches \"web\"");
        assert_eq!(
            e.classified(),
            Classified::new(ErrorKind::NotFound, vec!["closest names: web-1".to_owned()])
        );
        assert_eq!(
            one_line(&e, &e.classified()),
            "no instance matches \"web\" (closest names: web-1)"
        );
    }
}
