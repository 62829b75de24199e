//! Discovery fallback: with no `[classes]` configured, the account's own Session documents
//! tagged `ssmtui:class=<name>` name the classes. The user picks one once per profile and the
//! choice is remembered ([`super::memory`]).
//!
//! ssmtui never falls back silently to `SSM-SessionManagerRunShell` (the account's default
//! document, often without run-as or logging): no tagged document and no configured class is an
//! error, and a choice that is needed but cannot be asked for (no terminal) is an error too.
//! [`discover`] does the AWS part and returns either the class or the candidates; asking is the
//! caller's job, so the CLI and the TUI can each ask in their own way and then call [`choose`].

use super::memory::{Memory, RememberedClass};
use super::{ChosenClass, ClassOrigin};
use crate::aws::{AwsError, SsmApi, TagFilter};
use crate::config::{ClassConfig, non_shell_document};
use crate::error::{ErrorKind, UserError};

/// The document tag that names a class.
pub const CLASS_TAG: &str = "ssmtui:class";

/// A tagged document the user may pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The class name (tag value).
    pub class: String,
    /// The document name.
    pub document: String,
}

/// The outcome of [`discover`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// The class remembered for this profile, still tagged.
    Remembered(ChosenClass),
    /// The user must pick one of these (never empty).
    Choose {
        /// The tagged documents, by class name.
        candidates: Vec<Candidate>,
        /// A remembered choice whose document is no longer tagged (now forgotten).
        stale: Option<RememberedClass>,
    },
}

/// The key remembered choices are stored under: the profile in use, else `AWS_PROFILE`, else
/// `default`.
pub fn profile_key(profile: Option<&str>) -> String {
    profile
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| "default".to_owned())
}

/// Lists the tagged Session documents and applies the remembered choice for `profile`.
pub async fn discover(
    api: &dyn SsmApi,
    memory: &Memory,
    profile: &str,
) -> Result<Discovery, DiscoveryError> {
    let documents = api
        .list_documents(&TagFilter {
            key: CLASS_TAG.to_owned(),
            values: Vec::new(),
        })
        .await?;
    let mut candidates: Vec<Candidate> = documents
        .into_iter()
        .filter(|d| d.document_type.as_deref().is_none_or(|t| t == "Session"))
        // A tagged port-forwarding document cannot be a class's shell document.
        .filter(|d| non_shell_document(&d.name).is_none())
        .filter_map(|d| {
            let class = d.tags.get(CLASS_TAG)?.trim().to_owned();
            (!class.is_empty()).then_some(Candidate {
                class,
                document: d.name,
            })
        })
        .collect();
    candidates.sort_by(|a, b| {
        a.class
            .cmp(&b.class)
            .then_with(|| a.document.cmp(&b.document))
    });
    if candidates.is_empty() {
        return Err(DiscoveryError::Nothing);
    }
    let remembered = memory.class_for_profile(profile);
    if let Some(r) = &remembered
        && candidates
            .iter()
            .any(|c| c.class == r.class && c.document == r.document)
    {
        return Ok(Discovery::Remembered(chosen(&r.class, &r.document)));
    }
    if remembered.is_some() {
        // The document lost its tag or was deleted: ask again rather than use it.
        let _ = memory.forget_class(profile);
    }
    Ok(Discovery::Choose {
        candidates,
        stale: remembered,
    })
}

/// Remembers the user's pick for `profile` and returns it as the class. A failure to remember
/// only costs asking again next time, so it is logged, not returned.
pub fn choose(memory: &Memory, profile: &str, pick: &Candidate) -> ChosenClass {
    let remembered = RememberedClass {
        class: pick.class.clone(),
        document: pick.document.clone(),
    };
    if let Err(e) = memory.remember_class(profile, &remembered) {
        tracing::warn!(error = %e, "cannot remember the class choice");
    }
    chosen(&pick.class, &pick.document)
}

/// A remembered choice as the caller's class.
pub fn remembered(choice: &RememberedClass) -> ChosenClass {
    chosen(&choice.class, &choice.document)
}

fn chosen(class: &str, document: &str) -> ChosenClass {
    ChosenClass {
        name: class.to_owned(),
        config: ClassConfig {
            document: document.to_owned(),
            ..ClassConfig::default()
        },
        origin: ClassOrigin::Discovered,
    }
}

/// The way out when no class is configured: `--document` only where the subcommand has it.
fn configure_hint(offers_document: bool) -> &'static str {
    if offers_document {
        "run the command once on a terminal to choose (it is remembered per profile), configure [classes.NAME] (see config.example.toml), or pass --document NAME"
    } else {
        "run the command once on a terminal to choose (it is remembered per profile), or configure [classes.NAME] (see config.example.toml)"
    }
}

/// The error for a choice that is needed where nobody can be asked (no terminal).
/// `offers_document`: whether the subcommand has `--document` (the hint names it only then).
pub fn choice_needed(
    candidates: &[Candidate],
    stale: Option<&RememberedClass>,
    offers_document: bool,
) -> UserError {
    let list = candidates
        .iter()
        .map(|c| format!("{} ({})", c.class, c.document))
        .collect::<Vec<_>>()
        .join(", ");
    let mut e = UserError::new(
        ErrorKind::Usage,
        "no access class is configured and none has been chosen for this profile",
    );
    if let Some(s) = stale {
        e = e.hint(format!(
            "the class chosen earlier, {} ({}), is no longer tagged {CLASS_TAG}",
            s.class, s.document
        ));
    }
    e.hint(format!("the account's tagged documents: {list}"))
        .hint(configure_hint(offers_document))
}

/// Why discovery found no class.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// ListDocuments failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// No document carries the tag.
    #[error(
        "no access class is configured and no session document in the account is tagged {CLASS_TAG}"
    )]
    Nothing,
}

impl DiscoveryError {
    /// As a classified error for the user; `offers_document` as for [`choice_needed`].
    pub fn into_user_error(self, offers_document: bool) -> anyhow::Error {
        match self {
            Self::Aws(e) => e.into(),
            Self::Nothing => UserError::new(ErrorKind::Usage, Self::Nothing.to_string())
                .hint(if offers_document {
                    "configure [classes.NAME] in the config (see config.example.toml), or pass --document NAME"
                } else {
                    "configure [classes.NAME] in the config (see config.example.toml)"
                })
                .hint(format!(
                    "an administrator can tag each class's session document with {CLASS_TAG}=<class name>"
                ))
                .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::fake::FakeApi;

    fn fake() -> FakeApi {
        let fake = FakeApi::default();
        {
            let mut s = fake.state.lock().unwrap();
            for (doc, class) in [
                ("SSM-sudo", Some("sudo")),
                ("SSM-nosudo", Some("no-sudo")),
                ("SSM-SessionManagerRunShell", None),
                ("AWS-StartPortForwardingSession", Some("sudo")),
            ] {
                s.documents.insert(doc.into(), "{}".into());
                if let Some(c) = class {
                    s.document_tags
                        .insert(doc.into(), [(CLASS_TAG.to_owned(), c.to_owned())].into());
                }
            }
        }
        fake
    }

    #[tokio::test]
    async fn asks_once_then_remembers_per_profile() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Memory::new(dir.path());
        let api = fake();
        let Discovery::Choose { candidates, stale } =
            discover(&api, &memory, "default").await.unwrap()
        else {
            panic!("expected a choice");
        };
        assert_eq!(stale, None);
        let names: Vec<&str> = candidates.iter().map(|c| c.document.as_str()).collect();
        assert_eq!(names, ["SSM-nosudo", "SSM-sudo"]);
        let picked = choose(&memory, "default", &candidates[1]);
        assert_eq!(picked.config.document, "SSM-sudo");
        assert_eq!(
            discover(&api, &memory, "default").await.unwrap(),
            Discovery::Remembered(picked)
        );
        // Another profile asks again.
        assert!(matches!(
            discover(&api, &memory, "other").await.unwrap(),
            Discovery::Choose { .. }
        ));
        // The tag goes away: the remembered choice is stale and forgotten.
        api.state.lock().unwrap().document_tags.remove("SSM-sudo");
        let Discovery::Choose { candidates, stale } =
            discover(&api, &memory, "default").await.unwrap()
        else {
            panic!("expected a choice");
        };
        assert_eq!(candidates.len(), 1);
        assert_eq!(stale.unwrap().document, "SSM-sudo");
        assert_eq!(memory.class_for_profile("default"), None);
        use crate::error::Classify;
        let e = choice_needed(&candidates, None, false);
        assert!(e.to_string().contains("none has been chosen"), "{e}");
        let hints = e.classified().hints;
        assert!(!hints.iter().any(|h| h.contains("--document")), "{hints:?}");
        let hints = choice_needed(&candidates, None, true).classified().hints;
        assert!(hints.iter().any(|h| h.contains("--document")), "{hints:?}");
    }

    #[tokio::test]
    async fn nothing_tagged_is_an_error_never_the_default_document() {
        let dir = tempfile::tempdir().unwrap();
        let api = fake();
        api.state.lock().unwrap().document_tags.clear();
        let err = discover(&api, &Memory::new(dir.path()), "default")
            .await
            .unwrap_err();
        assert!(matches!(err, DiscoveryError::Nothing));
        let shown = err.into_user_error(true);
        let user = shown.downcast_ref::<UserError>().unwrap();
        assert_eq!(user.kind(), ErrorKind::Usage);
    }
}
