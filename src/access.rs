//! Access classes: which class the caller belongs to, which document it must use, and which
//! instances it may reach.
//!
//! A class (`[classes.NAME]` in the config) binds principals (ARN glob patterns matched against
//! STS GetCallerIdentity) to one session document and a tag scope. IAM enforces the same on
//! the server (`ssm:SessionDocumentAccessCheck`, `ssm:resourceTag`); doing it in the client too
//! means the user only ever sees the path that will work, and refusals are explained before
//! any call. Everything here is pure so it can be tested without AWS.

use crate::aws::Instance;
use crate::config::{ClassConfig, Config};
use crate::error::{ErrorKind, UserError};

/// The class the caller belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Class<'a> {
    /// Its name (`sudo`, `no-sudo`, …).
    pub name: &'a str,
    /// Its settings.
    pub config: &'a ClassConfig,
}

/// `*` matches any run of characters (including `/`), everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if Some(c) == t.get(ti) => {
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

/// The caller's class. `Ok(None)` when no classes are configured at all.
pub fn class_for<'a>(config: &'a Config, arn: &str) -> Result<Option<Class<'a>>, UserError> {
    if config.classes.is_empty() {
        return Ok(None);
    }
    let matching: Vec<Class<'a>> = config
        .classes
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
            config
                .classes
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
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

/// Why the class may not reach `instance`, or `None` when it may.
pub fn out_of_scope(class: Option<Class<'_>>, instance: &Instance) -> Option<String> {
    let class = class?;
    for (key, allowed) in &class.config.scope {
        let value = instance.tags.get(key);
        if !value.is_some_and(|v| allowed.iter().any(|a| a == v)) {
            return Some(format!(
                "is outside the {} class's scope: {key} must be {} ({})",
                class.name,
                allowed.join(" or "),
                value.map_or_else(|| format!("it has no {key} tag"), |v| format!("it is {v}"))
            ));
        }
    }
    None
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
        assert!(!glob_match("a*b", "ab/c"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

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
            principals = ["*/both"]
        "#;
        Config::parse(text, std::path::Path::new("t.toml")).unwrap()
    }

    #[test]
    fn class_membership_and_documents() {
        let cfg = config();
        let alice = class_for(&cfg, "arn:x/alice").unwrap().unwrap();
        assert_eq!(alice.name, "sudo");
        assert_eq!(shell_document(Some(alice), None).unwrap(), "SSM-sudo");
        assert!(shell_document(Some(alice), Some("SSM-nosudo")).is_err());
        assert_eq!(
            class_for(&cfg, "arn:x/eve").unwrap_err().to_string(),
            "your identity \"arn:x/eve\" belongs to no access class"
        );
        assert!(
            class_for(&cfg, "arn:x/both")
                .unwrap_err()
                .to_string()
                .contains("several")
        );
        assert!(
            class_for(&Config::default(), "arn:x/alice")
                .unwrap()
                .is_none()
        );
        assert!(shell_document(None, None).is_err());
        assert_eq!(shell_document(None, Some("Doc")).unwrap(), "Doc");
    }

    #[test]
    fn forward_documents_come_from_the_class() {
        let cfg = config();
        let alice = class_for(&cfg, "arn:x/alice").unwrap();
        assert!(
            forward_document(alice, "AWS-StartPortForwardingSession")
                .unwrap_err()
                .to_string()
                .contains("may not forward ports")
        );
        let mut cfg2 = cfg.clone();
        cfg2.classes.get_mut("sudo").unwrap().forward_documents =
            vec!["AWS-StartPortForwardingSession".into()];
        let alice = class_for(&cfg2, "arn:x/alice").unwrap();
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
        let bob = class_for(&cfg, "arn:x/bob").unwrap();
        let mut i = Instance::default();
        assert_eq!(
            out_of_scope(bob, &i).unwrap(),
            "is outside the no-sudo class's scope: Environment must be dev or staging (it has no Environment tag)"
        );
        i.tags.insert("Environment".into(), "prod".into());
        assert!(out_of_scope(bob, &i).unwrap().ends_with("(it is prod)"));
        i.tags.insert("Environment".into(), "dev".into());
        assert_eq!(out_of_scope(bob, &i), None);
        assert_eq!(out_of_scope(None, &i), None);
    }
}
