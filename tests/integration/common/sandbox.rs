//! The sandbox environment the tests share: an in-process sandbox on loopback port 0, a fresh
//! home directory (ssmtui's `config.toml`, its `state/` with the audit log and logs, and the
//! sandbox's transcripts and shell homes), and the ways in: the `ssmtui` binary with an
//! isolated environment, ssmtui's own API client, the audit log, the sandbox's own state.
//!
//! Synchronous tests use [`SandboxEnv::blocking`], which runs the sandbox on a runtime of its
//! own; async tests use [`SandboxEnv::start`] on theirs and end with [`SandboxEnv::stop`].

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use ssmtui::aws::sdk::SdkApi;
use ssmtui::config::AwsConfig;
use ssmtui::sandbox::world::Instance;
use ssmtui::sandbox::{
    AgentPacing, PlatformType, RunningSandbox, SECRET_ACCESS_KEY, Sandbox, SandboxConfig,
};
use ssmtui::secret::Secret;

use super::isolated_env;

/// The sandbox organisation's two classes as a config: `sudo` for the PlatformAdmin
/// permission set (alice), `no-sudo` for Developer (bob) on staging and dev.
pub const ORG_CLASSES: &str = r#"
[classes.sudo]
document = "SSM-sudo"
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*"]
[classes.no-sudo]
document = "SSM-nosudo"
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_Developer_*/*"]
scope = { Environment = ["staging", "dev"] }
"#;

/// A sandbox whose agent paces its output like the real amazon-ssm-agent (1 KiB per message,
/// 1 ms apart; shells first read after a second): for tests whose result would differ on AWS.
pub fn faithful() -> SandboxConfig {
    SandboxConfig {
        pacing: AgentPacing::Real,
        ..SandboxConfig::default()
    }
}

/// A sandbox whose agent sends as fast as it can: for tests that move many MiB or inject
/// faults, where the real cadence would only make them slow.
pub fn fast() -> SandboxConfig {
    SandboxConfig {
        pacing: AgentPacing::Off,
        ..SandboxConfig::default()
    }
}

/// A sandbox and a home for the `ssmtui` processes that talk to it.
pub struct SandboxEnv {
    sb: Option<RunningSandbox>,
    /// The home directory (see the module docs).
    pub home: tempfile::TempDir,
    rt: Option<tokio::runtime::Runtime>,
}

impl SandboxEnv {
    /// Starts a sandbox on the current runtime, with `config` as ssmtui's config file.
    pub async fn start(config: &str, sandbox: SandboxConfig) -> Self {
        let home = home(config);
        let sb = Sandbox::start(with_dirs(home.path(), sandbox))
            .await
            .unwrap();
        Self {
            sb: Some(sb),
            home,
            rt: None,
        }
    }

    /// Starts a sandbox on a runtime of its own, for synchronous tests.
    pub fn blocking(config: &str, sandbox: SandboxConfig) -> Self {
        let home = home(config);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sb = rt
            .block_on(Sandbox::start(with_dirs(home.path(), sandbox)))
            .unwrap();
        Self {
            sb: Some(sb),
            home,
            rt: Some(rt),
        }
    }

    /// The sandbox.
    pub fn sb(&self) -> &RunningSandbox {
        self.sb.as_ref().unwrap()
    }

    /// Runs `future` on the sandbox's runtime ([`Self::blocking`] only).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.rt
            .as_ref()
            .expect("block_on needs SandboxEnv::blocking")
            .block_on(future)
    }

    /// The environment of an `ssmtui` child isolated in the home and signed in as `who`
    /// (no credentials at all for an empty `who`).
    pub fn env(&self, who: &str) -> Vec<(&'static str, OsString)> {
        let mut env = isolated_env(
            self.home.path(),
            &self.sb().endpoint_url(),
            self.sb().state().region(),
        );
        if let Some(ca) = self.sb().ca_bundle() {
            env.push(("AWS_CA_BUNDLE", ca.into()));
        }
        if !who.is_empty() {
            env.push(("AWS_ACCESS_KEY_ID", who.into()));
            env.push(("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()));
        }
        env
    }

    /// `ssmtui` as `who`, for synchronous tests; stdin is empty (pipe mode, nothing to run).
    pub fn cmd(&self, who: &str) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_ssmtui"));
        cmd.env_clear().envs(self.env(who));
        cmd.write_stdin("");
        cmd
    }

    /// `ssmtui` as `who`, for async tests; killed if the test drops it.
    pub fn tokio_cmd(&self, who: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ssmtui"));
        cmd.env_clear().envs(self.env(who)).kill_on_drop(true);
        cmd
    }

    /// ssmtui's own API client, signed in as `who`.
    pub async fn api(&self, who: &str) -> Arc<SdkApi> {
        let aws = AwsConfig {
            region: Some(self.sb().state().region().to_owned()),
            endpoint_url: Some(self.sb().endpoint_url()),
            ca_bundle: self.sb().ca_bundle().map(Path::to_path_buf),
            ..AwsConfig::default()
        };
        Arc::new(
            SdkApi::with_static_credentials(&aws, who, &Secret::new(SECRET_ACCESS_KEY))
                .await
                .unwrap(),
        )
    }

    /// The first instance of the sandbox's world that satisfies `pred`.
    pub fn find(&self, pred: impl Fn(&Instance) -> bool) -> Instance {
        let world = self.sb().state().world();
        world
            .instances
            .iter()
            .find(|i| pred(i))
            .cloned()
            .expect("no instance in the sandbox's world fits")
    }

    /// The id of a connectable Linux instance whose agent is `version`.
    pub fn linux(&self, version: &str) -> String {
        self.find(|i| {
            i.connected() && i.platform_type == PlatformType::Linux && i.agent_version == version
        })
        .id
    }

    /// The id of a connectable Linux instance tagged `Environment=environment`.
    pub fn online(&self, environment: &str) -> String {
        self.find(|i| {
            i.connected()
                && i.platform_type == PlatformType::Linux
                && i.environment() == Some(environment)
        })
        .id
    }

    /// The Name of a connectable Linux instance.
    pub fn linux_name(&self) -> String {
        let i = self.find(|i| i.connected() && i.platform_type == PlatformType::Linux);
        i.tag("Name").unwrap_or_default().to_owned()
    }

    /// The audit log's lines (none if it does not exist). Tokens never appear in it.
    pub fn audit_lines(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.home.path().join("state/audit.jsonl")).unwrap_or_default();
        assert!(!text.to_lowercase().contains("token"), "{text}");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The debug logs written so far (`state/logs`, oldest file first), as one text.
    pub fn logs_text(&self) -> String {
        let Ok(dir) = std::fs::read_dir(self.home.path().join("state/logs")) else {
            return String::new();
        };
        let mut files: Vec<_> = dir.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect()
    }

    /// Sessions still active on the service.
    pub fn active_sessions(&self) -> usize {
        self.sb()
            .state()
            .sessions()
            .iter()
            .filter(|s| s.status.is_active())
            .count()
    }

    /// Shuts the sandbox down (its shells are hung up) and waits for it.
    pub async fn stop(mut self) {
        if let Some(sb) = self.sb.take() {
            sb.shutdown().await;
        }
    }
}

impl Drop for SandboxEnv {
    fn drop(&mut self) {
        if let (Some(rt), Some(sb)) = (self.rt.as_ref(), self.sb.take()) {
            rt.block_on(sb.shutdown());
        }
    }
}

fn home(config: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    home
}

/// `sandbox` with its transcripts and shell homes under `home`, and a relative TLS directory
/// taken as relative to it.
fn with_dirs(home: &Path, sandbox: SandboxConfig) -> SandboxConfig {
    SandboxConfig {
        bucket_dir: Some(home.join("bucket")),
        homes_dir: Some(home.join("homes")),
        tls_dir: sandbox.tls_dir.as_ref().map(|d| home.join(d)),
        ..sandbox
    }
}
