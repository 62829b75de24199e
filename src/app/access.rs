//! Who may reach what: the caller's access class and whether an instance is reachable.
//!
//! Deliberately small: the access-class issue extends [`reachability`] (documents tagged
//! `ssmtui:class=…`, run-as users, sudo) without touching the views. Today an instance is
//! reachable when it is running, its agent is Online, and it is inside the class's tag scope.

use std::collections::BTreeMap;

use crate::aws::Instance;
use crate::config::ClassConfig;

/// The caller's class, resolved from their ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassInfo {
    /// `[classes.NAME]`.
    pub name: String,
    /// Its configuration.
    pub config: ClassConfig,
}

/// Whether a session to an instance may be started, and if not, why (shown to the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A shell can be opened.
    Reachable,
    /// It cannot, for this reason.
    Unreachable(String),
}

impl Access {
    /// The reason, if unreachable.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Reachable => None,
            Self::Unreachable(r) => Some(r),
        }
    }
}

/// The first class (in name order) with a principal pattern matching `arn`.
pub fn resolve_class(arn: &str, classes: &BTreeMap<String, ClassConfig>) -> Option<ClassInfo> {
    classes
        .iter()
        .find(|(_, c)| c.principals.iter().any(|p| glob_match(p, arn)))
        .map(|(name, config)| ClassInfo {
            name: name.clone(),
            config: config.clone(),
        })
}

/// ARN pattern matching is the one the CLI uses, so both agree on class membership.
pub use crate::access::glob_match;

/// Whether the caller (in `class`, if any) can open a session on `instance` now.
pub fn reachability(instance: &Instance, class: Option<&ClassInfo>) -> Access {
    if instance.state != "running" {
        return Access::Unreachable(format!("instance is {}", instance.state));
    }
    match instance.ping.as_deref() {
        Some("Online") => {}
        Some("ConnectionLost") => {
            return Access::Unreachable(match instance.last_ping.as_deref().and_then(short_time) {
                Some(when) => format!("agent offline since {when}"),
                None => "agent offline (ConnectionLost)".to_owned(),
            });
        }
        Some(other) => return Access::Unreachable(format!("agent is {other}")),
        None => {
            return Access::Unreachable("not managed by Systems Manager (no agent)".to_owned());
        }
    }
    if let Some(class) = class {
        for (key, allowed) in &class.config.scope {
            let value = instance.tags.get(key);
            if !value.is_some_and(|v| allowed.iter().any(|a| a == v)) {
                let have = value.map_or_else(|| format!("no {key} tag"), |v| format!("{key}={v}"));
                return Access::Unreachable(format!(
                    "class {} cannot reach {have} (allowed: {key} = {})",
                    class.name,
                    allowed.join(", ")
                ));
            }
        }
    }
    Access::Reachable
}

/// The `key=value` rule that makes a reason mandatory for this target, if any.
pub fn reason_rule(
    instance: &Instance,
    rules: &[String],
    class: Option<&ClassInfo>,
) -> Option<String> {
    let as_class = class.map(|c| crate::access::Class {
        name: &c.name,
        config: &c.config,
    });
    // The class's own rules (require_reason, reason_required_tags) are the CLI's rules too.
    if let Some(why) = crate::access::reason_required(as_class, instance) {
        return Some(why);
    }
    rules
        .iter()
        .filter_map(|r| crate::config::parse_tag_rule(r))
        .find(|(k, v)| instance.tags.get(*k).is_some_and(|have| have == v))
        .map(|(k, v)| format!("target is tagged {k}={v}"))
}

/// `2024-05-01T12:03:44Z` → `12:03 UTC (2024-05-01)`; `None` when it is not RFC 3339.
pub fn short_time(rfc3339: &str) -> Option<String> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?
        .to_offset(time::UtcOffset::UTC);
    Some(format!(
        "{:02}:{:02} UTC ({}-{:02}-{:02})",
        t.hour(),
        t.minute(),
        t.year(),
        u8::from(t.month()),
        t.day()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_arn_patterns() {
        let p = "arn:aws:sts::*:assumed-role/AWSReservedSSO_Dev_*/*";
        assert!(glob_match(
            p,
            "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Dev_abc/alice"
        ));
        assert!(!glob_match(
            p,
            "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_abc/alice"
        ));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "a-b-b-c"));
        assert!(!glob_match("a*b*c", "a-c-b"));
        assert!(glob_match("*alice", "user/alice"));
    }

    #[test]
    fn short_time_is_utc() {
        assert_eq!(
            short_time("2024-05-01T14:03:44+02:00").as_deref(),
            Some("12:03 UTC (2024-05-01)")
        );
        assert_eq!(short_time("yesterday"), None);
    }
}
