//! Turning what the user typed (`prod-web`, `i-0abc…`, `Role=web Environment=prod`) into
//! instances.
//!
//! Syntax of a target: an instance id (`i-…`, `mi-…`), `key=value` tag filters separated by
//! spaces or commas (several values of one key are alternatives, different keys must all
//! match), or else a Name tag value. Aliases from `[aliases]` are expanded first by the
//! caller. Only running instances whose agent is Online can be connected to; the others are
//! reported with the reason so the user is not left guessing.

use crate::access::Unreachable;
use crate::aws::{Instance, TagFilter};
use crate::error::{ErrorKind, UserError};

/// A parsed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// An instance id.
    Id(String),
    /// Tag filters (AND across keys, OR within a key).
    Tags(Vec<TagFilter>),
    /// A Name tag value.
    Name(String),
}

impl TargetSpec {
    /// Parses a target string.
    pub fn parse(text: &str) -> Result<Self, UserError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(UserError::new(ErrorKind::Usage, "the target is empty")
                .hint("give an instance id, a Name tag value, or key=value tag filters"));
        }
        if is_instance_id(text) {
            return Ok(Self::Id(text.to_owned()));
        }
        if text.contains('=') {
            let mut filters: Vec<TagFilter> = Vec::new();
            for term in text
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|t| !t.is_empty())
            {
                let Some((key, value)) = term.split_once('=') else {
                    return Err(UserError::new(
                        ErrorKind::Usage,
                        format!("\"{term}\" is not a key=value tag filter"),
                    )
                    .hint("mix no Name values into tag filters: write Name=web-1 instead"));
                };
                if key.is_empty() || value.is_empty() {
                    return Err(UserError::new(
                        ErrorKind::Usage,
                        format!("the tag filter \"{term}\" needs both a key and a value"),
                    ));
                }
                match filters.iter_mut().find(|f| f.key == key) {
                    Some(f) => f.values.push(value.to_owned()),
                    None => filters.push(TagFilter {
                        key: key.to_owned(),
                        values: vec![value.to_owned()],
                    }),
                }
            }
            return Ok(Self::Tags(filters));
        }
        Ok(Self::Name(text.to_owned()))
    }

    /// Tag filters worth sending to EC2 (server-side narrowing).
    pub fn server_filters(&self) -> Vec<TagFilter> {
        match self {
            Self::Tags(f) => f.clone(),
            Self::Name(n) => vec![TagFilter {
                key: "Name".to_owned(),
                values: vec![n.clone()],
            }],
            Self::Id(_) => Vec::new(),
        }
    }

    /// Whether `instance` matches, whatever its state.
    pub fn matches(&self, instance: &Instance) -> bool {
        match self {
            Self::Id(id) => &instance.id == id,
            Self::Name(name) => instance.name.as_deref() == Some(name),
            Self::Tags(filters) => filters.iter().all(|f| {
                instance
                    .tags
                    .get(&f.key)
                    .is_some_and(|v| f.values.iter().any(|want| want == v))
            }),
        }
    }
}

fn is_instance_id(text: &str) -> bool {
    let hex = text.strip_prefix("i-").or_else(|| text.strip_prefix("mi-"));
    hex.is_some_and(|h| (8..=17).contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The outcome of matching a target against the instance list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Exactly one connectable instance.
    One(Box<Instance>),
    /// Several connectable instances.
    Many(Vec<Instance>),
}

/// Matches and picks connectable instances; errors (exit 3) say what was found instead.
/// `reach` says why an instance cannot take a session (`crate::access::reachability` with the
/// caller's class: its state, its agent, the class's scope).
pub fn resolve(
    spec: &TargetSpec,
    input: &str,
    instances: &[Instance],
    reach: &dyn Fn(&Instance) -> Option<Unreachable>,
) -> Result<Resolved, UserError> {
    let matched: Vec<&Instance> = instances.iter().filter(|i| spec.matches(i)).collect();
    let usable: Vec<Instance> = matched
        .iter()
        .filter(|i| reach(i).is_none())
        .map(|i| (*i).clone())
        .collect();
    match usable.len() {
        1 => Ok(Resolved::One(Box::new(
            usable.into_iter().next().unwrap_or_default(),
        ))),
        0 if matched.is_empty() => {
            let mut err = UserError::new(
                ErrorKind::NotFound,
                format!("no instance matches \"{input}\""),
            );
            let close = closest_names(input, instances, 5);
            if !close.is_empty() {
                err = err.hint(format!("closest names: {}", close.join(", ")));
            }
            Err(err.hint("`ssmtui list` shows every instance you can see"))
        }
        0 => {
            let lines: Vec<String> = matched
                .iter()
                .map(|i| {
                    let why = reach(i).map(|u| u.phrase()).unwrap_or_default();
                    format!("{} {why}", i.label())
                })
                .collect();
            let mut err = UserError::new(
                ErrorKind::NotFound,
                format!("\"{input}\" matches no instance you can connect to now"),
            );
            for line in lines.iter().take(10) {
                err = err.hint(line.clone());
            }
            Err(err)
        }
        _ => Ok(Resolved::Many(usable)),
    }
}

/// The error for several matches when no picker can be shown.
pub fn ambiguous(input: &str, matches: &[Instance]) -> UserError {
    let mut err = UserError::new(
        ErrorKind::NotFound,
        format!("\"{input}\" matches {} instances", matches.len()),
    );
    for i in matches.iter().take(10) {
        err = err.hint(format!("{}  {}", i.label(), describe_tags(i)));
    }
    err.hint("name one instance, or pass --first or --any")
}

/// `key=value` pairs of the interesting tags, for listings.
pub fn describe_tags(instance: &Instance) -> String {
    instance
        .tags
        .iter()
        .filter(|(k, _)| k.as_str() != "Name" && !k.starts_with("aws:"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Instance names that look like `query` (see [`crate::humanize::closest`]).
pub fn closest_names(query: &str, instances: &[Instance], n: usize) -> Vec<String> {
    crate::humanize::closest(query, instances.iter().filter_map(|i| i.name.clone()), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, name: &str, env: &str, state: &str, ping: Option<&str>) -> Instance {
        Instance {
            id: id.into(),
            name: Some(name.into()),
            state: state.into(),
            ping: ping.map(Into::into),
            tags: [
                ("Name".to_owned(), name.to_owned()),
                ("Environment".to_owned(), env.to_owned()),
            ]
            .into(),
            ..Instance::default()
        }
    }

    fn world() -> Vec<Instance> {
        vec![
            inst(
                "i-0000000000000000a",
                "web-1",
                "prod",
                "running",
                Some("Online"),
            ),
            inst(
                "i-0000000000000000b",
                "web-2",
                "prod",
                "running",
                Some("Online"),
            ),
            inst(
                "i-0000000000000000c",
                "db-1",
                "prod",
                "stopped",
                Some("ConnectionLost"),
            ),
            inst(
                "i-0000000000000000d",
                "api-1",
                "dev",
                "running",
                Some("ConnectionLost"),
            ),
        ]
    }

    fn none(i: &Instance) -> Option<Unreachable> {
        crate::access::reachability(i, None)
    }

    #[test]
    fn parses_each_form() {
        assert_eq!(
            TargetSpec::parse("i-0123abcd").unwrap(),
            TargetSpec::Id("i-0123abcd".into())
        );
        assert_eq!(
            TargetSpec::parse("mi-0123456789abcdef0").unwrap(),
            TargetSpec::Id("mi-0123456789abcdef0".into())
        );
        assert_eq!(
            TargetSpec::parse("web-1").unwrap(),
            TargetSpec::Name("web-1".into())
        );
        assert_eq!(
            TargetSpec::parse("i-am-a-name").unwrap(),
            TargetSpec::Name("i-am-a-name".into())
        );
        let TargetSpec::Tags(f) =
            TargetSpec::parse("Role=web, Environment=prod Environment=dev").unwrap()
        else {
            panic!("tags expected");
        };
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].values, ["prod", "dev"]);
        assert!(TargetSpec::parse("Role=").is_err());
        assert!(TargetSpec::parse("Role=web extra").is_err());
        assert!(TargetSpec::parse("  ").is_err());
    }

    #[test]
    fn resolves_by_id_name_and_tags() {
        let w = world();
        let one = |t: &str| match resolve(&TargetSpec::parse(t).unwrap(), t, &w, &none).unwrap() {
            Resolved::One(i) => i.id,
            Resolved::Many(m) => panic!("{t}: {} matches", m.len()),
        };
        assert_eq!(one("web-1"), "i-0000000000000000a");
        assert_eq!(one("i-0000000000000000b"), "i-0000000000000000b");
        assert_eq!(one("Name=web-2"), "i-0000000000000000b");
        let many = resolve(
            &TargetSpec::parse("Environment=prod").unwrap(),
            "x",
            &w,
            &none,
        )
        .unwrap();
        assert!(
            matches!(many, Resolved::Many(ref m) if m.len() == 2),
            "stopped db-1 does not count"
        );
    }

    #[test]
    fn explains_offline_stopped_missing_and_blocked() {
        let w = world();
        let err = |t: &str| resolve(&TargetSpec::parse(t).unwrap(), t, &w, &none).unwrap_err();
        let e = err("db-1");
        assert_eq!(
            e.to_string(),
            "\"db-1\" matches no instance you can connect to now"
        );
        let text = format!("{e:?}");
        assert!(text.contains("is stopped"), "{text}");
        assert!(format!("{:?}", err("api-1")).contains("SSM agent ConnectionLost"));
        let missing = err("wbe-1");
        assert_eq!(missing.to_string(), "no instance matches \"wbe-1\"");
        assert!(
            format!("{missing:?}").contains("closest names: web-1"),
            "{missing:?}"
        );
        let blocked = |_: &Instance| {
            Some(Unreachable::OutOfScope {
                class: "no-sudo".into(),
                key: "Environment".into(),
                allowed: vec!["dev".into()],
                value: Some("prod".into()),
            })
        };
        let e = resolve(&TargetSpec::parse("web-1").unwrap(), "web-1", &w, &blocked).unwrap_err();
        assert!(
            format!("{e:?}").contains("is outside the no-sudo class's scope"),
            "{e:?}"
        );
    }
}
