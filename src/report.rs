//! Errors become exit codes and messages here, and only here.
//!
//! Each error type classifies itself where it is defined ([`crate::error::Classify`]); this
//! module lists the types to look for and walks an error chain once: the outermost classified
//! error decides the [`ErrorKind`] (hence the exit code) and the hints. The CLI prints
//! [`report`] (`error: …`, `caused by:` lines, `hint:` lines); the TUI shows [`one_line`],
//! built from the same classification, so both say the same thing about the same failure.

use std::error::Error as StdError;
use std::io::Write;

use crate::audit::AuditError;
use crate::aws::AwsError;
use crate::config::ConfigError;
use crate::engine::EngineError;
use crate::error::{Classified, Classify, ErrorKind, UserError};
use crate::output::Closed;

type Classifier = fn(&(dyn StdError + 'static)) -> Option<Classified>;

fn by_type<E: Classify + StdError + 'static>(e: &(dyn StdError + 'static)) -> Option<Classified> {
    e.downcast_ref::<E>().map(Classify::classified)
}

/// A write to a pipe whose reader left (`ssmtui list | head -1`) is a success.
fn broken_pipe(e: &(dyn StdError + 'static)) -> Option<Classified> {
    e.downcast_ref::<std::io::Error>()
        .filter(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        .map(|_| Classified::success())
}

/// Every classified error type a user can meet.
const CLASSIFIERS: &[Classifier] = &[
    by_type::<Closed>,
    by_type::<UserError>,
    by_type::<EngineError>,
    by_type::<AwsError>,
    by_type::<AuditError>,
    by_type::<ConfigError>,
    broken_pipe,
];

/// Finds the most specific classified error in the chain (the outermost one that is known);
/// anything unclassified is an internal error, with a hint saying so.
pub fn classify(err: &anyhow::Error) -> Classified {
    for cause in err.chain() {
        if let Some(found) = CLASSIFIERS.iter().find_map(|c| c(cause)) {
            return found;
        }
    }
    Classified::new(
        ErrorKind::Internal,
        vec![
            "this looks like a bug in ssmtui; run again with -v and look at the log (`ssmtui config path` shows where)"
                .to_owned(),
        ],
    )
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

/// The error as one line for the TUI: the message with its causes, then the first hint in
/// parentheses. The "looks like a bug" hint of unclassified errors belongs to the CLI's exit
/// path, not to a status line.
pub fn one_line(err: &anyhow::Error) -> String {
    crate::error::one_line(err.as_ref(), &classify(err))
}

/// [`one_line`] for a typed error that has not become an `anyhow::Error`.
pub fn one_line_of<E: StdError + Send + Sync + 'static>(err: E) -> String {
    one_line(&anyhow::Error::new(err))
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
        assert_eq!(
            one_line(&err),
            "cannot connect: no instance matches \"web\" (closest names: web-1, web-2)"
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
        assert_eq!(one_line(&err), "something odd");
    }

    #[test]
    fn every_typed_error_is_found_inside_a_chain() {
        let aws = AwsError::AccessDenied {
            operation: "StartSession",
            message: "no".to_owned(),
        };
        assert_eq!(
            classify(&anyhow::Error::new(aws).context("x")).kind,
            Some(ErrorKind::Auth)
        );
        let engine = EngineError::SessionGone;
        assert_eq!(classify(&engine.into()).kind, Some(ErrorKind::Network));
        let config = ConfigError::NoHome;
        assert_eq!(classify(&config.into()).kind, Some(ErrorKind::Usage));
    }
}
