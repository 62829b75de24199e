//! Helpers shared by the integration test modules.

pub mod sandbox;
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

/// The environment variable that makes a missing end-to-end tool (tmux, moto) a failure
/// instead of a skip; `.ci/run` sets it, because CI installs both.
pub const REQUIRE_E2E: &str = "SSMTUI_REQUIRE_E2E";

/// Whether `python3` can import `module` (a test-only tool installed with pip).
pub fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a test that needs `tool` can run: `true` when it is available; otherwise the test
/// is skipped with a message, or fails when [`REQUIRE_E2E`] is `1`.
pub fn require_tool(available: bool, tool: &str, test: &str) -> bool {
    if available {
        return true;
    }
    assert!(
        std::env::var(REQUIRE_E2E).as_deref() != Ok("1"),
        "{test} needs {tool}, which is not available, and {REQUIRE_E2E}=1 forbids skipping"
    );
    eprintln!("skipping {test}: {tool} is not available");
    false
}

/// Polls `cond` until it holds, or fails naming `what` after `limit` (synchronous tests).
pub fn wait_until(what: &str, limit: std::time::Duration, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Polls `cond` until it holds, or fails naming `what` after `limit` (async tests).
pub async fn eventually(what: &str, limit: std::time::Duration, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A loopback TCP echo server on port 0, serving every connection on its own thread until the
/// test process ends; its port.
pub fn echo_server() -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}
