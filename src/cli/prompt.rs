//! Line-based questions on the terminal: which discovered class to use, and why you connect.
//!
//! Both are one numbered list on stderr and one line read from stdin, so they work over any
//! terminal and leave nothing behind that needs restoring. They are only called when stdin and
//! stderr are terminals; callers without a terminal turn the question into an error with a
//! hint instead. Parsing the answer is pure ([`parse_pick`]) and unit-tested.

use std::io::{BufRead, IsTerminal, Write};

use crate::access::discovery::{self, Candidate, Discovery};
use crate::access::memory::Memory;
use crate::access::{self, ChosenClass, ReasonDecision};
use crate::aws::{Instance, SsmApi};
use crate::config::Config;
use crate::error::{ErrorKind, UserError};
use crate::rules::validate_reason;

/// Whether the user can be asked: stdin and stderr are both terminals.
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// What the user answered to a numbered list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Item `n` (0-based).
    Item(usize),
    /// Free text (only where free text is allowed).
    Text(String),
    /// Nothing usable; ask again.
    Again,
}

/// Interprets an answer: a number from 1 to `count` picks that item; other text is free text
/// when `free_text` is allowed; an empty line asks again.
pub fn parse_pick(answer: &str, count: usize, free_text: bool) -> Pick {
    let answer = answer.trim();
    if answer.is_empty() {
        return Pick::Again;
    }
    match answer.parse::<usize>() {
        Ok(n) if (1..=count).contains(&n) => Pick::Item(n - 1),
        _ if free_text => Pick::Text(answer.to_owned()),
        _ => Pick::Again,
    }
}

fn read_line() -> std::io::Result<Option<String>> {
    let mut line = String::new();
    let n = std::io::stdin().lock().read_line(&mut line)?;
    // End of input (Ctrl-D) is a cancel.
    Ok((n > 0).then_some(line))
}

/// Asks which discovered class to use; `None` when the user gave up (Ctrl-D).
pub fn ask_class(candidates: &[Candidate]) -> std::io::Result<Option<usize>> {
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "No access class is configured. The account tags these session documents with {}:",
        discovery::CLASS_TAG
    )?;
    for (n, c) in candidates.iter().enumerate() {
        writeln!(err, "  {}) {}  ({})", n + 1, c.class, c.document)?;
    }
    loop {
        write!(
            err,
            "Your class [1-{}] (remembered for this profile): ",
            candidates.len()
        )?;
        err.flush()?;
        let Some(line) = read_line()? else {
            return Ok(None);
        };
        if let Pick::Item(n) = parse_pick(&line, candidates.len(), false) {
            return Ok(Some(n));
        }
    }
}

/// Asks for a reason, offering the recent ones by number; `None` when the user gave up.
pub fn ask_reason(why: &str, recent: &[String]) -> std::io::Result<Option<String>> {
    let mut err = std::io::stderr().lock();
    writeln!(err, "A reason is required: {why}.")?;
    if !recent.is_empty() {
        writeln!(err, "Recent reasons:")?;
        for (n, r) in recent.iter().enumerate() {
            writeln!(err, "  {}) {r}", n + 1)?;
        }
    }
    loop {
        if recent.is_empty() {
            write!(err, "Reason: ")?;
        } else {
            write!(err, "Reason (a number, or type a new one): ")?;
        }
        err.flush()?;
        let Some(line) = read_line()? else {
            return Ok(None);
        };
        let text = match parse_pick(&line, recent.len(), true) {
            Pick::Item(n) => recent.get(n).cloned(),
            Pick::Text(t) => Some(t),
            Pick::Again => None,
        };
        let Some(text) = text else { continue };
        match validate_reason(Some(&text)) {
            Ok(Some(valid)) => return Ok(Some(valid)),
            Ok(None) => {}
            Err(e) => writeln!(err, "{e}")?,
        }
    }
}

/// Whether a subcommand has `--document`, and what was given.
#[derive(Debug, Clone, Copy)]
pub enum DocumentFlag<'a> {
    /// It has `--document` (`connect`): given or not.
    Offered(Option<&'a str>),
    /// It has none (`forward`, `proxy`: the spec decides the document).
    NotOffered,
}

impl DocumentFlag<'_> {
    fn offered(self) -> bool {
        matches!(self, Self::Offered(_))
    }
}

/// The caller's class: from the config, else (without `--document`) from the tagged
/// documents, asking on a terminal once per profile. `None` only when no class is configured
/// and a document was given explicitly.
pub async fn caller_class(
    config: &Config,
    memory: &Memory,
    api: &dyn SsmApi,
    arn: &str,
    document: DocumentFlag<'_>,
) -> anyhow::Result<Option<ChosenClass>> {
    if let Some(class) = access::class_for(&config.classes, arn)? {
        return Ok(Some(ChosenClass::from_config(class)));
    }
    if matches!(document, DocumentFlag::Offered(Some(_))) {
        return Ok(None);
    }
    let profile = discovery::profile_key(config.aws.profile.as_deref());
    let found = discovery::discover(api, memory, &profile)
        .await
        .map_err(|e| e.into_user_error(document.offered()))?;
    match found {
        Discovery::Remembered(class) => Ok(Some(class)),
        Discovery::Choose { candidates, stale } => {
            if !can_ask() {
                return Err(discovery::choice_needed(
                    &candidates,
                    stale.as_ref(),
                    document.offered(),
                )
                .into());
            }
            let shown = candidates.clone();
            let picked = tokio::task::spawn_blocking(move || ask_class(&shown)).await??;
            let Some(pick) = picked.and_then(|n| candidates.get(n)) else {
                return Err(UserError::new(ErrorKind::Interrupted, "no class chosen").into());
            };
            eprintln!(
                "using class {} ({}) for profile {profile}",
                pick.class, pick.document
            );
            Ok(Some(discovery::choose(memory, &profile, pick)))
        }
    }
}

/// The StartSession reason: `--reason`, the class default, or — when required — asked for on a
/// terminal (exit 2 without one). A reason used is added to the recent list by the caller once
/// the session has started.
pub async fn session_reason(
    given: Option<String>,
    class: Option<&ChosenClass>,
    instance: &Instance,
    memory: &Memory,
) -> anyhow::Result<Option<String>> {
    match access::decide_reason(given, class.map(ChosenClass::as_class), instance, &[]) {
        ReasonDecision::Use(reason) => Ok(reason),
        ReasonDecision::Ask { why } => {
            if !can_ask() {
                return Err(access::reason_missing(&why).into());
            }
            let recent = memory.recent_reasons();
            let answer = tokio::task::spawn_blocking(move || ask_reason(&why, &recent)).await??;
            answer
                .map(Some)
                .ok_or_else(|| UserError::new(ErrorKind::Interrupted, "no reason given").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_by_number_or_text() {
        assert_eq!(parse_pick(" 2\n", 3, false), Pick::Item(1));
        assert_eq!(parse_pick("4", 3, false), Pick::Again);
        assert_eq!(parse_pick("0", 3, false), Pick::Again);
        assert_eq!(parse_pick("\n", 3, true), Pick::Again);
        assert_eq!(parse_pick("4", 3, true), Pick::Text("4".into()));
        assert_eq!(
            parse_pick("INC-7 rotate keys\n", 3, true),
            Pick::Text("INC-7 rotate keys".into())
        );
        assert_eq!(parse_pick("1", 0, true), Pick::Text("1".into()));
    }
}
