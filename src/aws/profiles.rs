//! Names for `:profile` and `:region` completion: the profiles in the AWS shared config file and
//! the public AWS regions. Completion only — the SDK resolves the chosen profile itself.

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
    fn regions_are_sorted_and_unique() {
        let mut sorted = REGIONS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, REGIONS.to_vec());
    }
}
