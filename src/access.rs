//! Access classes: which class the caller belongs to, which document it must use, and which
//! instances it may reach.
//!
//! A class (`[classes.NAME]` in the config) binds principals (ARN glob patterns matched against
//! STS GetCallerIdentity) to one session document and a tag scope. IAM enforces the same on
//! the server (`ssm:SessionDocumentAccessCheck`, `ssm:resourceTag`); doing it in the client too
//! means the user only ever sees the path that will work, and refusals are explained before
//! any call. Everything here is pure so it can be tested without AWS, except [`discovery`],
//! which asks SSM for tagged documents when no class is configured.
//!
//! This is the one policy module: the CLI and the TUI both ask it which class the caller is in
//! ([`known_class`], then [`discovery`] where nothing is known), whether an instance can be
//! reached ([`reachability`]: its state, its agent and the class's tag scope, each with one
//! message), which documents apply, and when a reason is needed. The syntax of patterns, tag
//! rules and reasons is the leaf [`crate::rules`], which `config` validates with.
//!
//! Reasons: a class may require one for every session (`require_reason`) or for targets with
//! certain tags (`reason_required_tags = ["Environment=prod"]`); the TUI adds `[ui]
//! reason_required_tags`. [`reason_required`] says whether and why, [`decide_reason`] combines
//! that with `--reason` and the class's `default_reason`. Prompting is the caller's job (the
//! CLI asks on stderr, the TUI in a dialog).

pub mod discovery;
pub mod memory;

use std::collections::BTreeMap;

use crate::aws::{AwsError, Identity, Instance};
use crate::error::{ErrorKind, UserError};
use crate::humanize::short_time;
use crate::rules::{glob_match, parse_tag_rule};

pub use crate::config::ClassConfig;

/// The class the caller belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Class<'a> {
    /// Its name (`sudo`, `no-sudo`, …).
    pub name: &'a str,
    /// Its settings.
    pub config: &'a ClassConfig,
}

/// Who is starting sessions, and from where (the five Ws' who and where): what StartSession's
/// explanations and the audit log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// The caller.
    pub identity: Identity,
    /// The caller's class (configured or discovered).
    pub class: Option<ChosenClass>,
    /// The profile, if named.
    pub profile: Option<String>,
    /// The region.
    pub region: Option<String>,
}

impl Who {
    /// The class as the functions here take it.
    pub fn class(&self) -> Option<Class<'_>> {
        self.class.as_ref().map(ChosenClass::as_class)
    }
}

/// The configured class whose principals match `arn`. `Ok(None)` when no classes are
/// configured at all; an ARN that matches no class, or several, is refused (the config cannot
/// say which document applies).
pub fn class_for<'a>(
    classes: &'a BTreeMap<String, ClassConfig>,
    arn: &str,
) -> Result<Option<Class<'a>>, UserError> {
    if classes.is_empty() {
        return Ok(None);
    }
    let matching: Vec<Class<'a>> = classes
        .iter()
        .filter(|(_, c)| c.principals.iter().any(|p| glob_match(p, arn)))
        .map(|(name, config)| Class { name, config })
        .collect();
    match matching.as_slice() {
        [one] => Ok(Some(*one)),
        [] => Err(UserError::new(
            ErrorKind::Auth,
            format!("your identity \"{arn}\" belongs to no access class"),
        )
        .hint(format!(
            "the configured classes are: {}; their principals patterns decide membership",
            classes.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
        .hint("check --profile, or ask whoever maintains the ssmtui config")),
        many => Err(UserError::new(
            ErrorKind::Usage,
            format!(
                "your identity \"{arn}\" matches several access classes: {}",
                many.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
            ),
        )
        .hint("make the principals patterns of the classes disjoint")),
    }
}

/// The caller's class as far as it is known without asking anyone: the configured class (see
/// [`class_for`]), else, when no classes are configured, the class chosen earlier for this
/// profile among the tagged documents (`remembered`). `Ok(None)`: nothing is known; the CLI
/// then runs [`discovery`] (asking on a terminal), the TUI refuses sessions and says why.
pub fn known_class(
    classes: &BTreeMap<String, ClassConfig>,
    remembered: Option<ChosenClass>,
    arn: &str,
) -> Result<Option<ChosenClass>, UserError> {
    match class_for(classes, arn)? {
        Some(class) => Ok(Some(ChosenClass::from_config(class))),
        None => Ok(remembered),
    }
}

/// The document a shell session must use. `requested` is `--document`, allowed only when it is
/// the class's own document (or when no classes are configured at all).
pub fn shell_document(
    class: Option<Class<'_>>,
    requested: Option<&str>,
) -> Result<String, UserError> {
    match (class, requested) {
        (Some(c), None) => Ok(c.config.document.clone()),
        (Some(c), Some(doc)) if doc == c.config.document => Ok(doc.to_owned()),
        (Some(c), Some(doc)) => Err(UserError::new(
            ErrorKind::Auth,
            format!(
                "the {} class starts shells with \"{}\" only, not \"{doc}\"",
                c.name, c.config.document
            ),
        )
        .hint("leave out --document; the class decides the document")),
        (None, Some(doc)) => Ok(doc.to_owned()),
        (None, None) => Err(UserError::new(
            ErrorKind::Usage,
            "no access class is configured, so ssmtui does not know which session document to use",
        )
        .hint("configure [classes.NAME] in the config (see config.example.toml), or pass --document NAME")),
    }
}

/// The port-forwarding document for `wanted` (chosen by the forward spec): allowed when the
/// class lists it in `forward_documents`, or when no classes are configured.
pub fn forward_document(class: Option<Class<'_>>, wanted: &str) -> Result<String, UserError> {
    match class {
        None => Ok(wanted.to_owned()),
        Some(c) if c.config.forward_documents.iter().any(|d| d == wanted) => Ok(wanted.to_owned()),
        Some(c) if c.config.forward_documents.is_empty() => Err(UserError::new(
            ErrorKind::Auth,
            format!("the {} class may not forward ports", c.name),
        )
        .hint(format!(
            "port forwarding needs \"{wanted}\" in [classes.{}] forward_documents",
            c.name
        ))),
        Some(c) => Err(UserError::new(
            ErrorKind::Auth,
            format!("the {} class may not use \"{wanted}\"", c.name),
        )
        .hint(format!(
            "the class allows: {}",
            c.config.forward_documents.join(", ")
        ))),
    }
}

/// Why an instance cannot take a session now. One decision, two renderings: [`Self::phrase`]
/// continues a sentence about the instance (the CLI's "web-1 (i-0…) is stopped"), and
/// [`Self::short`] stands alone (the TUI's table and status line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    /// The instance is not running (`stopped`, `pending`, …).
    State(String),
    /// Its agent is not Online (`ConnectionLost`, `Inactive`), since when if known.
    Agent {
        /// The ping status.
        status: String,
        /// The last ping (RFC 3339), if known.
        since: Option<String>,
    },
    /// It is not registered with Systems Manager.
    NotManaged,
    /// It is outside the class's tag scope.
    OutOfScope {
        /// The class.
        class: String,
        /// The scope's tag key that does not match.
        key: String,
        /// The values the class allows.
        allowed: Vec<String>,
        /// The instance's value, if it has the tag.
        value: Option<String>,
    },
}

impl Unreachable {
    /// As the rest of a sentence whose subject is the instance.
    pub fn phrase(&self) -> String {
        match self {
            Self::State(state) => format!("is {state}"),
            Self::Agent {
                status,
                since: Some(t),
            } => format!("has its SSM agent {status} since {t}"),
            Self::Agent { status, .. } => format!("has its SSM agent {status}"),
            Self::NotManaged => {
                "is not managed by Systems Manager (no SSM agent registration)".to_owned()
            }
            Self::OutOfScope { .. } => format!("is {}", self.short()),
        }
    }

    /// On its own, short.
    pub fn short(&self) -> String {
        match self {
            Self::State(state) => format!("instance is {state}"),
            Self::Agent { status, since } if status == "ConnectionLost" => {
                match since.as_deref().and_then(short_time) {
                    Some(when) => format!("agent offline since {when}"),
                    None => "agent offline (ConnectionLost)".to_owned(),
                }
            }
            Self::Agent { status, .. } => format!("agent is {status}"),
            Self::NotManaged => "not managed by Systems Manager (no agent)".to_owned(),
            Self::OutOfScope {
                class,
                key,
                allowed,
                value,
            } => format!(
                "outside the {class} class's scope: {key} must be {} ({})",
                allowed.join(" or "),
                value
                    .as_ref()
                    .map_or_else(|| format!("it has no {key} tag"), |v| format!("it is {v}"))
            ),
        }
    }
}

/// Whether the instance itself can take a session now: running (or `unknown`, as hybrid
/// managed instances report) with its agent Online.
pub fn availability(instance: &Instance) -> Option<Unreachable> {
    if instance.state != "running" && instance.state != "unknown" {
        return Some(Unreachable::State(instance.state.clone()));
    }
    match instance.ping.as_deref() {
        Some("Online") => None,
        Some(other) => Some(Unreachable::Agent {
            status: other.to_owned(),
            since: instance.last_ping.clone(),
        }),
        None => Some(Unreachable::NotManaged),
    }
}

/// Why the class may not reach `instance` (its tag scope), or `None` when it may.
pub fn out_of_scope(class: Option<Class<'_>>, instance: &Instance) -> Option<Unreachable> {
    let class = class?;
    for (key, allowed) in &class.config.scope {
        let value = instance.tags.get(key);
        if !value.is_some_and(|v| allowed.iter().any(|a| a == v)) {
            return Some(Unreachable::OutOfScope {
                class: class.name.to_owned(),
                key: key.clone(),
                allowed: allowed.clone(),
                value: value.cloned(),
            });
        }
    }
    None
}

/// Whether the caller, in `class`, can start a session on `instance` now, and if not why: the
/// instance's state and agent first, then the class's scope. The CLI's target resolution and
/// the TUI's rows both decide with this.
pub fn reachability(instance: &Instance, class: Option<Class<'_>>) -> Option<Unreachable> {
    availability(instance).or_else(|| out_of_scope(class, instance))
}

/// An access class owned rather than borrowed from the config: the result of configuration
/// or of discovery ([`discovery`]), so callers hold one type either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenClass {
    /// The class name.
    pub name: String,
    /// Its settings (for a discovered class: only the document).
    pub config: ClassConfig,
    /// Where it came from.
    pub origin: ClassOrigin,
}

/// How the caller's class was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassOrigin {
    /// `[classes.NAME]` whose principals match the caller.
    Config,
    /// A document tagged `ssmtui:class=NAME`, chosen by the user (now or earlier).
    Discovered,
}

impl ChosenClass {
    /// Copies a configured class.
    pub fn from_config(class: Class<'_>) -> Self {
        Self {
            name: class.name.to_owned(),
            config: class.config.clone(),
            origin: ClassOrigin::Config,
        }
    }

    /// The borrowed view the other functions here take.
    pub fn as_class(&self) -> Class<'_> {
        Class {
            name: &self.name,
            config: &self.config,
        }
    }
}

/// Why a session on `instance` needs a reason, or `None` when it does not: the class's
/// `require_reason` and `reason_required_tags`, then `extra_rules` (the TUI's `[ui]
/// reason_required_tags`; the CLI passes none). Every rule is `Key=Value` with `*` in the
/// value matching anything.
pub fn reason_required(
    class: Option<Class<'_>>,
    instance: &Instance,
    extra_rules: &[String],
) -> Option<String> {
    let tagged = |rules: &[String]| {
        rules
            .iter()
            .filter_map(|rule| parse_tag_rule(rule))
            .find(|(key, pattern)| {
                instance
                    .tags
                    .get(*key)
                    .is_some_and(|v| glob_match(pattern, v))
            })
            .map(|(key, _)| {
                (
                    key.to_owned(),
                    instance.tags.get(key).cloned().unwrap_or_default(),
                )
            })
    };
    if let Some(class) = class {
        if class.config.require_reason {
            return Some(format!(
                "the {} class requires a reason for every session",
                class.name
            ));
        }
        if let Some((key, value)) = tagged(&class.config.reason_required_tags) {
            return Some(format!(
                "{} is tagged {key}={value}, and the {} class requires a reason there",
                instance.label(),
                class.name
            ));
        }
    }
    tagged(extra_rules).map(|(key, value)| format!("target is tagged {key}={value}"))
}

/// What to do about the StartSession reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReasonDecision {
    /// Use this reason (or none).
    Use(Option<String>),
    /// A reason is required and none was given: ask the user, or fail without a terminal.
    Ask {
        /// Why one is required, for the prompt and the error.
        why: String,
    },
}

/// Combines `--reason` (already validated), the class's `default_reason` and the rules.
pub fn decide_reason(
    given: Option<String>,
    class: Option<Class<'_>>,
    instance: &Instance,
    extra_rules: &[String],
) -> ReasonDecision {
    if given.is_some() {
        return ReasonDecision::Use(given);
    }
    if let Some(default) = class.and_then(|c| c.config.default_reason.as_deref()) {
        return ReasonDecision::Use(Some(default.trim().to_owned()));
    }
    match reason_required(class, instance, extra_rules) {
        Some(why) => ReasonDecision::Ask { why },
        None => ReasonDecision::Use(None),
    }
}

/// The error for a required reason that cannot be asked for (no terminal).
pub fn reason_missing(why: &str) -> UserError {
    UserError::new(ErrorKind::Usage, format!("a reason is required: {why}"))
        .hint(format!(
            "pass --reason \"TEXT\" (1 to {} characters), e.g. --reason \"INC-1234 disk full\"",
            crate::rules::MAX_REASON
        ))
        .hint("on a terminal ssmtui asks for it")
}

/// What was being attempted when AWS said no, for [`explain_start_denied`].
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The caller.
    pub identity: &'a Identity,
    /// The caller's class, if any.
    pub class: Option<Class<'a>>,
    /// The document used.
    pub document: &'a str,
    /// The target.
    pub instance: &'a Instance,
}

/// Turns an AccessDenied from StartSession into an explanation: who, which class, which
/// document, which target, and the permission that is probably missing. Other errors pass
/// through unchanged.
pub fn explain_start_denied(err: AwsError, attempt: Attempt<'_>) -> anyhow::Error {
    let AwsError::AccessDenied { message, .. } = &err else {
        return err.into();
    };
    // AWS names the resource: "... not authorized to perform: ssm:StartSession on resource: ARN ..."
    let resource = message
        .split("on resource: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|r| r.trim_end_matches([',', '.']).to_owned());
    let class = attempt
        .class
        .map_or_else(|| "no class".to_owned(), |c| format!("class {}", c.name));
    let mut e = UserError::new(
        ErrorKind::Auth,
        format!(
            "AWS denied a session on {} with the document \"{}\"",
            attempt.instance.label(),
            attempt.document
        ),
    )
    .hint(format!("AWS said: {message}"))
    .hint(format!(
        "you are {} ({class}); document {}; target {}",
        attempt.identity.arn,
        attempt.document,
        attempt.instance.label()
    ));
    e = match resource.as_deref() {
        Some(r) if r.contains(":document/") => e.hint(format!(
            "likely missing permission: ssm:StartSession on {r} (your role may not use this document)"
        )),
        Some(r) if r.contains(":instance/") || r.contains(":managed-instance/") => e.hint(format!(
            "likely missing permission: ssm:StartSession on {r} (an ssm:resourceTag condition may exclude this instance)"
        )),
        Some(r) => e.hint(format!("likely missing permission: ssm:StartSession on {r}")),
        None => e.hint(
            "likely missing permission: ssm:StartSession on the document and the instance ARNs",
        ),
    };
    e.hint("ask whoever maintains your IAM Identity Center permission set or the ssmtui classes")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::error::Classify;

    fn config() -> Config {
        let text = r#"
            [classes.sudo]
            document = "SSM-sudo"
            principals = ["*/alice"]
            [classes.no-sudo]
            document = "SSM-nosudo"
            principals = ["*/bob", "*/both"]
            scope = { Environment = ["dev", "staging"] }
            [classes.other]
            document = "SSM-other"
            # Overlaps with no-sudo without being identical, which only the run time can catch.
            principals = ["*/bot*"]
        "#;
        Config::parse(text, std::path::Path::new("t.toml")).unwrap()
    }

    #[test]
    fn class_membership_and_documents() {
        let cfg = config();
        let alice = class_for(&cfg.classes, "arn:x/alice").unwrap().unwrap();
        assert_eq!(alice.name, "sudo");
        assert_eq!(shell_document(Some(alice), None).unwrap(), "SSM-sudo");
        assert!(shell_document(Some(alice), Some("SSM-nosudo")).is_err());
        assert_eq!(
            class_for(&cfg.classes, "arn:x/eve")
                .unwrap_err()
                .to_string(),
            "your identity \"arn:x/eve\" belongs to no access class"
        );
        assert!(
            class_for(&cfg.classes, "arn:x/both")
                .unwrap_err()
                .to_string()
                .contains("several")
        );
        assert!(
            class_for(&Config::default().classes, "arn:x/alice")
                .unwrap()
                .is_none()
        );
        assert!(shell_document(None, None).is_err());
        assert_eq!(shell_document(None, Some("Doc")).unwrap(), "Doc");
    }

    #[test]
    fn forward_documents_come_from_the_class() {
        let cfg = config();
        let alice = class_for(&cfg.classes, "arn:x/alice").unwrap();
        assert!(
            forward_document(alice, "AWS-StartPortForwardingSession")
                .unwrap_err()
                .to_string()
                .contains("may not forward ports")
        );
        let mut cfg2 = cfg.clone();
        cfg2.classes.get_mut("sudo").unwrap().forward_documents =
            vec!["AWS-StartPortForwardingSession".into()];
        let alice = class_for(&cfg2.classes, "arn:x/alice").unwrap();
        assert_eq!(
            forward_document(alice, "AWS-StartPortForwardingSession").unwrap(),
            "AWS-StartPortForwardingSession"
        );
        assert!(forward_document(alice, "AWS-StartPortForwardingSessionToRemoteHost").is_err());
        assert_eq!(forward_document(None, "X-Doc").unwrap(), "X-Doc");
    }

    #[test]
    fn scope_checks_every_key() {
        let cfg = config();
        let bob = class_for(&cfg.classes, "arn:x/bob").unwrap();
        let mut i = Instance::default();
        assert_eq!(
            out_of_scope(bob, &i).unwrap().phrase(),
            "is outside the no-sudo class's scope: Environment must be dev or staging (it has no Environment tag)"
        );
        i.tags.insert("Environment".into(), "prod".into());
        let why = out_of_scope(bob, &i).unwrap();
        assert!(why.short().starts_with("outside the no-sudo class's scope"));
        assert!(why.phrase().ends_with("(it is prod)"));
        i.tags.insert("Environment".into(), "dev".into());
        assert_eq!(out_of_scope(bob, &i), None);
        assert_eq!(out_of_scope(None, &i), None);
    }

    #[test]
    fn reasons_follow_class_rules_and_defaults() {
        let text = r#"
            [classes.sudo]
            document = "SSM-sudo"
            principals = ["*/alice"]
            reason_required_tags = ["Environment=prod*"]
        "#;
        let mut cfg = Config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let mut i = Instance {
            id: "i-1".into(),
            name: Some("web".into()),
            ..Instance::default()
        };
        i.tags.insert("Environment".into(), "production".into());
        let class = class_for(&cfg.classes, "arn:x/alice").unwrap();
        assert_eq!(
            reason_required(class, &i, &[]).unwrap(),
            "web (i-1) is tagged Environment=production, and the sudo class requires a reason there"
        );
        assert!(matches!(
            decide_reason(None, class, &i, &[]),
            ReasonDecision::Ask { .. }
        ));
        assert_eq!(
            decide_reason(Some("x".into()), class, &i, &[]),
            ReasonDecision::Use(Some("x".into()))
        );
        i.tags.insert("Environment".into(), "dev".into());
        assert_eq!(
            decide_reason(None, class, &i, &[]),
            ReasonDecision::Use(None)
        );
        assert_eq!(reason_required(None, &i, &[]), None);
        if let Some(c) = cfg.classes.get_mut("sudo") {
            c.require_reason = true;
            c.default_reason = Some(" on call ".into());
        }
        let class = class_for(&cfg.classes, "arn:x/alice").unwrap();
        assert!(
            reason_required(class, &i, &[])
                .unwrap()
                .contains("every session")
        );
        assert_eq!(
            decide_reason(None, class, &i, &[]),
            ReasonDecision::Use(Some("on call".into()))
        );
    }

    #[test]
    fn denials_name_the_missing_permission() {
        let identity = Identity {
            account: "1".into(),
            arn: "arn:aws:sts::1:assumed-role/R/bob".into(),
            user_id: String::new(),
        };
        let instance = Instance {
            id: "i-1".into(),
            ..Instance::default()
        };
        let attempt = Attempt {
            identity: &identity,
            class: None,
            document: "SSM-sudo",
            instance: &instance,
        };
        let denied = |resource: &str| AwsError::AccessDenied {
            operation: "StartSession",
            message: format!(
                "User: x is not authorized to perform: ssm:StartSession on resource: {resource} because no identity-based policy allows it"
            ),
        };
        let err = explain_start_denied(denied("arn:aws:ec2:r:1:instance/i-1"), attempt);
        let user = err.downcast_ref::<UserError>().unwrap();
        assert_eq!(user.kind(), ErrorKind::Auth);
        let text = Classify::classified(user).hints.join("\n");
        assert!(
            text.contains("likely missing permission: ssm:StartSession on arn:aws:ec2:r:1:instance/i-1 (an ssm:resourceTag condition"),
            "{text}"
        );
        // Anything but a denial passes through unchanged.
        let other = explain_start_denied(
            AwsError::TargetNotConnected {
                message: "x".into(),
            },
            attempt,
        );
        assert!(other.downcast_ref::<AwsError>().is_some());
    }
}
