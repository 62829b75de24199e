//! Where ssmtui keeps its files.
//!
//! Platform directories come from `directories` (`ssmtui` project dirs): on Linux
//! `~/.config/ssmtui` for configuration and `~/.local/state/ssmtui` for logs and the audit log.
//! `SSMTUI_CONFIG_DIR` and `SSMTUI_STATE_DIR` override them (tests and unusual setups), and
//! `SSMTUI_CONFIG` / `--config` name a config file directly.

use std::path::{Path, PathBuf};

use super::ConfigError;

/// Environment variable naming the config file.
pub const ENV_CONFIG: &str = "SSMTUI_CONFIG";
/// Environment variable overriding the config directory.
pub const ENV_CONFIG_DIR: &str = "SSMTUI_CONFIG_DIR";
/// Environment variable overriding the state directory (logs, audit log, remembered choices).
pub const ENV_STATE_DIR: &str = "SSMTUI_STATE_DIR";

/// The resolved locations of ssmtui's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The config directory (holds `config.toml`).
    pub config_dir: PathBuf,
    /// The state directory (logs, audit log, remembered choices).
    pub state_dir: PathBuf,
}

impl Paths {
    /// Resolves the directories from the environment and the platform conventions.
    pub fn resolve() -> Result<Self, ConfigError> {
        let dirs = directories::ProjectDirs::from("", "", "ssmtui");
        let config_dir = match env_path(ENV_CONFIG_DIR) {
            Some(p) => p,
            None => dirs
                .as_ref()
                .map(|d| d.config_dir().to_path_buf())
                .ok_or(ConfigError::NoHome)?,
        };
        let state_dir = match env_path(ENV_STATE_DIR) {
            Some(p) => p,
            None => dirs
                .as_ref()
                .map(|d| {
                    // macOS and Windows have no state dir; the local data dir is the equivalent.
                    d.state_dir()
                        .unwrap_or_else(|| d.data_local_dir())
                        .to_path_buf()
                })
                .ok_or(ConfigError::NoHome)?,
        };
        Ok(Self {
            config_dir,
            state_dir,
        })
    }

    /// The default config file, used when neither `--config` nor `SSMTUI_CONFIG` is given.
    pub fn default_config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// Where log files are written.
    pub fn log_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    /// The default audit log file.
    pub fn default_audit_file(&self) -> PathBuf {
        self.state_dir.join("audit.jsonl")
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Expands a leading `~/` to the home directory; other paths are returned unchanged.
pub fn expand_home(path: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = directories::BaseDirs::new()
    {
        return home.home_dir().join(rest);
    }
    path.to_path_buf()
}
/// Creates `dir` (and parents) with mode 0700 on Unix if it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}
