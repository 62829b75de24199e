//! Small remembered choices in the state directory: the discovered class picked per profile
//! (`class-choice.json`) and the last reasons given (`recent-reasons.json`).
//!
//! Both are plain JSON, written whole to a temporary file and renamed into place so a crash
//! never leaves half a file, with mode 0600 (reasons can name incidents). A file that is
//! missing or does not parse reads as empty: losing a remembered choice only means asking
//! again, which is better than refusing to work.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How many recent reasons are kept.
pub const RECENT_REASONS: usize = 10;

/// The file with the remembered class choices.
pub const CLASS_CHOICE_FILE: &str = "class-choice.json";
/// The file with the recent reasons.
pub const RECENT_REASONS_FILE: &str = "recent-reasons.json";

/// A class picked from the tagged documents, remembered for one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RememberedClass {
    /// The class name (the `ssmtui:class` tag value).
    pub class: String,
    /// The document carrying the tag.
    pub document: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ClassChoices {
    #[serde(default)]
    profiles: BTreeMap<String, RememberedClass>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecentReasons {
    #[serde(default)]
    reasons: Vec<String>,
}

/// The remembered choices in one state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    dir: PathBuf,
}

impl Memory {
    /// Choices kept in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.to_path_buf(),
        }
    }

    /// Every remembered class, by profile.
    pub fn remembered_classes(&self) -> BTreeMap<String, RememberedClass> {
        read::<ClassChoices>(&self.dir.join(CLASS_CHOICE_FILE)).profiles
    }

    /// The class remembered for `profile`.
    pub fn class_for_profile(&self, profile: &str) -> Option<RememberedClass> {
        read::<ClassChoices>(&self.dir.join(CLASS_CHOICE_FILE))
            .profiles
            .remove(profile)
    }

    /// Remembers `choice` for `profile`.
    pub fn remember_class(&self, profile: &str, choice: &RememberedClass) -> io::Result<()> {
        let path = self.dir.join(CLASS_CHOICE_FILE);
        let mut all = read::<ClassChoices>(&path);
        all.profiles.insert(profile.to_owned(), choice.clone());
        write(&path, &all)
    }

    /// Forgets the class remembered for `profile` (its document is gone).
    pub fn forget_class(&self, profile: &str) -> io::Result<()> {
        let path = self.dir.join(CLASS_CHOICE_FILE);
        let mut all = read::<ClassChoices>(&path);
        if all.profiles.remove(profile).is_some() {
            write(&path, &all)?;
        }
        Ok(())
    }

    /// The recent reasons, newest first.
    pub fn recent_reasons(&self) -> Vec<String> {
        read::<RecentReasons>(&self.dir.join(RECENT_REASONS_FILE)).reasons
    }

    /// Puts `reason` first in the recent list (once), keeping [`RECENT_REASONS`].
    pub fn add_reason(&self, reason: &str) -> io::Result<()> {
        let path = self.dir.join(RECENT_REASONS_FILE);
        let mut recent = read::<RecentReasons>(&path);
        recent.reasons.retain(|r| r != reason);
        recent.reasons.insert(0, reason.to_owned());
        recent.reasons.truncate(RECENT_REASONS);
        write(&path, &recent)
    }
}

fn read<T: Default + for<'de> Deserialize<'de>>(path: &Path) -> T {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn write<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("the state file has no directory"))?;
    crate::config::paths::create_private_dir(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(value).map_err(io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_choices_are_per_profile() {
        let dir = tempfile::tempdir().unwrap();
        let m = Memory::new(&dir.path().join("state"));
        assert_eq!(m.class_for_profile("default"), None);
        let sudo = RememberedClass {
            class: "sudo".into(),
            document: "SSM-sudo".into(),
        };
        m.remember_class("default", &sudo).unwrap();
        m.remember_class(
            "dev",
            &RememberedClass {
                class: "no-sudo".into(),
                document: "SSM-nosudo".into(),
            },
        )
        .unwrap();
        assert_eq!(m.class_for_profile("default"), Some(sudo));
        assert_eq!(m.class_for_profile("dev").unwrap().class, "no-sudo");
        m.forget_class("dev").unwrap();
        assert_eq!(m.class_for_profile("dev"), None);
        // A broken file reads as empty.
        std::fs::write(dir.path().join("state").join(CLASS_CHOICE_FILE), "{").unwrap();
        assert_eq!(m.class_for_profile("default"), None);
    }

    #[test]
    fn recent_reasons_are_newest_first_unique_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let m = Memory::new(dir.path());
        for n in 0..12 {
            m.add_reason(&format!("r{n}")).unwrap();
        }
        m.add_reason("r5").unwrap();
        let recent = m.recent_reasons();
        assert_eq!(recent.len(), RECENT_REASONS);
        assert_eq!(recent[0], "r5");
        assert_eq!(recent[1], "r11");
        assert_eq!(recent.iter().filter(|r| *r == "r5").count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(RECENT_REASONS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
