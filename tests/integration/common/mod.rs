//! Helpers shared by the integration tests (each test file includes this with `mod common;`
//! and uses what it needs, hence the `dead_code` allowance).

#![allow(dead_code, reason = "each test binary uses a different part")]

pub mod tmux;

use std::ffi::OsString;
use std::path::Path;

/// The environment for an `ssmtui` child process isolated in `home` and pointed at a sandbox:
/// apply it after `env_clear()`, so nothing from the developer's shell, config or AWS
/// profiles leaks in. Credentials are left to the caller (they differ per identity).
pub fn isolated_env(home: &Path, endpoint: &str, region: &str) -> Vec<(&'static str, OsString)> {
    vec![
        ("HOME", home.into()),
        ("PATH", std::env::var_os("PATH").unwrap_or_default()),
        ("SSMTUI_CONFIG", home.join("config.toml").into()),
        ("SSMTUI_STATE_DIR", home.join("state").into()),
        ("AWS_CONFIG_FILE", home.join("aws-config").into()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("aws-credentials").into(),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_ENDPOINT_URL", endpoint.into()),
        ("AWS_REGION", region.into()),
    ]
}
