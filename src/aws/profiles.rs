//! Names for `:profile` and `:region` completion, and for error messages: the profiles in the
//! AWS shared config and credentials files and the public AWS regions. The SDK resolves the
//! chosen profile itself; these only name and describe profiles.

use std::path::{Path, PathBuf};

/// Public AWS regions (commercial, GovCloud and China), for completion and validation hints.
pub const REGIONS: [&str; 37] = [
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// The shared config file: `$AWS_CONFIG_FILE`, else `~/.aws/config`.
pub fn config_file() -> Option<PathBuf> {
    match std::env::var_os("AWS_CONFIG_FILE") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => directories::BaseDirs::new().map(|d| d.home_dir().join(".aws").join("config")),
    }
}

/// Profile names in the shared config file, sorted; empty when there is no file.
pub fn profile_names() -> Vec<String> {
    config_file()
        .as_deref()
        .and_then(|p| read(p).ok())
        .map(|text| parse_profile_names(&text))
        .unwrap_or_default()
}

fn read(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

/// The shared credentials file: `$AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`.
pub fn credentials_file() -> Option<PathBuf> {
    match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => directories::BaseDirs::new().map(|d| d.home_dir().join(".aws").join("credentials")),
    }
}

/// Whether a profile of this name exists in the config file (`[profile NAME]`, `[default]`)
/// or in the credentials file (`[NAME]`), where the SDK looks for it.
pub fn profile_exists(name: &str) -> bool {
    profile_names().iter().any(|p| p == name)
        || credentials_file()
            .as_deref()
            .and_then(|p| read(p).ok())
            .is_some_and(|text| parse_credentials_sections(&text).iter().any(|p| p == name))
}

/// `[NAME]` section headers of a credentials file.
pub fn parse_credentials_sections(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let inner = line.trim().strip_prefix('[')?.split(']').next()?.trim();
            (!inner.is_empty()).then(|| inner.to_owned())
        })
        .collect()
}

/// Whether the profile signs in through IAM Identity Center (its config section has
/// `sso_session` or `sso_start_url`).
pub fn is_sso_profile(name: &str) -> bool {
    config_file()
        .as_deref()
        .and_then(|p| read(p).ok())
        .is_some_and(|text| parse_is_sso(&text, name))
}

/// [`is_sso_profile`] on the text of a config file.
pub fn parse_is_sso(text: &str, name: &str) -> bool {
    parse_value(text, name, "sso_session").is_some()
        || parse_value(text, name, "sso_start_url").is_some()
}

/// A key's value in profile `name`'s section of a config file's text.
pub fn parse_value(text: &str, name: &str, key: &str) -> Option<String> {
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            let inner = header.split(']').next().unwrap_or_default().trim();
            inside = if name == "default" {
                inner == "default"
            } else {
                inner.strip_prefix("profile").is_some_and(|rest| {
                    rest.starts_with(char::is_whitespace) && rest.trim() == name
                })
            };
            continue;
        }
        if inside
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return Some(v.trim().to_owned());
        }
    }
    None
}

/// The profile's `ca_bundle` (`~/` expanded as the AWS CLI does), for profile `name` or
/// else `AWS_PROFILE` or `default`.
pub fn ca_bundle(name: Option<&str>) -> Option<PathBuf> {
    let name = name
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| "default".to_owned());
    let text = read(&config_file()?).ok()?;
    let value = parse_value(&text, &name, "ca_bundle").filter(|v| !v.is_empty())?;
    Some(match value.strip_prefix("~/") {
        Some(rest) => directories::BaseDirs::new()
            .map_or_else(|| PathBuf::from(&value), |d| d.home_dir().join(rest)),
        None => PathBuf::from(value),
    })
}

/// Up to `n` profile names that look like `query` (the same rule as instance names).
pub fn closest(query: &str, names: &[String], n: usize) -> Vec<String> {
    crate::humanize::closest(query, names.iter().cloned(), n)
}

/// `[default]` and `[profile NAME]` section headers; `[sso-session …]` and `[services …]` are
/// not profiles.
pub fn parse_profile_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let inner = line.trim().strip_prefix('[')?.split(']').next()?.trim();
            if inner == "default" {
                return Some("default".to_owned());
            }
            let name = inner.strip_prefix("profile")?;
            // "profile" must be followed by whitespace: "[profileX]" is not a profile section.
            name.starts_with(char::is_whitespace)
                .then(|| name.trim().to_owned())
                .filter(|n| !n.is_empty())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_sections_only() {
        let text = "[default]\nregion=eu-west-1\n[profile prod]\n[ profile  dev ] \n[sso-session corp]\n[services x]\n[profileX]\n# [profile commented]\n";
        assert_eq!(parse_profile_names(text), ["default", "dev", "prod"]);
    }

    #[test]
    fn sso_profiles_and_credentials_sections() {
        let text = "[default]\nregion=x\n[profile dev]\nsso_session = corp\n[profile prod]\nrole_arn=y\n[profile legacy]\nsso_start_url=https://x\n[sso-session corp]\nsso_start_url=https://x\n";
        assert!(parse_is_sso(text, "dev"));
        assert!(parse_is_sso(text, "legacy"));
        assert!(!parse_is_sso(text, "prod"));
        assert!(!parse_is_sso(text, "default"));
        assert!(!parse_is_sso(text, "corp"));
        assert_eq!(
            parse_credentials_sections("[default]\naws_access_key_id=x\n[ci]\n"),
            ["default", "ci"]
        );
        let names = ["dev-admin", "prod-readonly", "staging"].map(str::to_owned);
        assert_eq!(closest("prod", &names, 3), ["prod-readonly"]);
        assert_eq!(closest("stagin", &names, 3), ["staging"]);
        assert!(closest("zzzzzz", &names, 3).is_empty());
    }

    #[test]
    fn regions_are_sorted_and_unique() {
        let mut sorted = REGIONS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, REGIONS.to_vec());
    }
}
