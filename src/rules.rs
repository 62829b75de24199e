//! The syntax of access rules: ARN glob patterns, `Key=Value` tag rules and the limits of a
//! session reason.
//!
//! A leaf: `config` validates these when it loads a file and `access` applies them to callers
//! and instances, and both must agree on what a pattern or a reason is, so they share this one
//! definition instead of one importing the other.

use crate::error::{ErrorKind, UserError};

/// Longest StartSession Reason AWS accepts, in characters.
pub const MAX_REASON: usize = 256;

/// `*` matches any run of characters (including `/`), everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    wildcard_match(pattern, text, false)
}

/// The matcher behind [`glob_match`]; with `single`, `?` also matches any one character (IAM's
/// wildcards, which the sandbox's policies use). Iterative, backtracking to the last `*`, so
/// it is linear in practice and never recurses.
pub fn wildcard_match(pattern: &str, text: &str, single: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if Some(c) == t.get(ti) || (single && *c == '?') => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

/// What is wrong with an ARN glob pattern, or `None` if it is usable.
pub fn glob_problem(pattern: &str) -> Option<&'static str> {
    if pattern.is_empty() {
        Some("is empty")
    } else if pattern.chars().any(char::is_whitespace) {
        Some("contains whitespace, which no ARN does")
    } else if !(pattern.starts_with("arn:") || pattern.starts_with('*')) {
        Some("does not start with \"arn:\" or \"*\", so it can never match an ARN")
    } else {
        None
    }
}

/// Splits a `Key=Value` tag rule (used by `[ui] reason_required_tags` and
/// `[classes.X] reason_required_tags`); `None` when there is no `=` or either side is empty.
pub fn parse_tag_rule(rule: &str) -> Option<(&str, &str)> {
    let (key, value) = rule.split_once('=')?;
    let (key, value) = (key.trim(), value.trim());
    (!key.is_empty() && !value.is_empty()).then_some((key, value))
}

/// What is wrong with a reason's length (after trimming), or `None` if AWS accepts it.
pub fn reason_problem(reason: &str) -> Option<String> {
    match reason.trim().chars().count() {
        0 => Some("the reason is empty".to_owned()),
        n if n > MAX_REASON => Some(format!(
            "the reason is {n} characters long; AWS accepts at most {MAX_REASON}"
        )),
        _ => None,
    }
}

/// Checks a reason given on the command line (or typed at a prompt) against the StartSession
/// limits; the trimmed reason, or a usage error with a hint.
pub fn validate_reason(reason: Option<&str>) -> Result<Option<String>, UserError> {
    let Some(reason) = reason else {
        return Ok(None);
    };
    match reason_problem(reason) {
        None => Ok(Some(reason.trim().to_owned())),
        Some(problem) => Err(UserError::new(ErrorKind::Usage, problem).hint(
            "say why you connect, 1 to 256 characters, e.g. --reason \"INC-1234 disk full\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_sso_role_arns() {
        let p = "arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*";
        assert!(glob_match(
            p,
            "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_PlatformAdmin_0a1b/alice"
        ));
        assert!(!glob_match(
            p,
            "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Developer_0a1b/bob"
        ));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYbc"));
        assert!(!glob_match("a*b*c", "a-c-b"));
        assert!(!glob_match("a*b", "ab/c"));
        assert!(glob_match("*alice", "user/alice"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        // `?` is literal in class patterns; only the sandbox's IAM-style matching opts in.
        assert!(!glob_match("web-?1", "web-01"));
        assert!(glob_match("web-?1", "web-?1"));
        assert!(wildcard_match("web-?1", "web-01", true));
    }

    #[test]
    fn glob_and_rule_syntax() {
        assert_eq!(glob_problem(""), Some("is empty"));
        assert!(glob_problem("arn:aws:sts::* x").is_some());
        assert!(glob_problem("alice").is_some());
        assert_eq!(glob_problem("*/alice"), None);
        assert_eq!(
            parse_tag_rule(" Environment = prod "),
            Some(("Environment", "prod"))
        );
        assert_eq!(parse_tag_rule("Environment="), None);
        assert_eq!(parse_tag_rule("prod"), None);
    }

    #[test]
    fn reasons_are_trimmed_and_bounded() {
        assert_eq!(validate_reason(None).unwrap(), None);
        assert_eq!(
            validate_reason(Some("  INC-1 disk  ")).unwrap().as_deref(),
            Some("INC-1 disk")
        );
        assert_eq!(
            validate_reason(Some("   ")).unwrap_err().to_string(),
            "the reason is empty"
        );
        let long = "x".repeat(MAX_REASON + 1);
        assert!(
            validate_reason(Some(&long))
                .unwrap_err()
                .to_string()
                .contains("at most 256")
        );
        assert!(validate_reason(Some(&"é".repeat(MAX_REASON))).is_ok());
    }
}
