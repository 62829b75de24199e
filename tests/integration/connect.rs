//! `ssmtui connect` and `ssmtui list` through the real binary against an in-process sandbox:
//! target resolution (alias, id, Name, tags, ambiguous, none, offline, stopped), access classes,
//! credentials errors and exit codes. Shell data flow is covered where the sandbox agent runs.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use crate::common;
use crate::common::sandbox::{SandboxEnv, faithful};

use std::path::Path;

use assert_cmd::Command;
use ssmtui::sandbox::SandboxConfig;
use ssmtui::sandbox::world::{InstanceState, PingStatus};

const CLASSES: &str = r#"
[classes.sudo]
document = "SSM-sudo"
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*"]
[classes.no-sudo]
document = "SSM-nosudo"
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_Developer_*/*"]
scope = { Environment = ["staging", "dev"] }

[aliases]
web = { target = "Environment=prod Role=web" }
"#;

fn setup() -> SandboxEnv {
    setup_with(faithful())
}

fn setup_with(config: SandboxConfig) -> SandboxEnv {
    SandboxEnv::blocking(CLASSES, config)
}

/// Name and id of the first instance satisfying `pred`.
fn named(
    env: &SandboxEnv,
    pred: impl Fn(&ssmtui::sandbox::world::Instance) -> bool,
) -> (String, String) {
    let i = env.find(pred);
    (tag(&i, "Name"), i.id)
}

fn tag(i: &ssmtui::sandbox::world::Instance, key: &str) -> String {
    i.tags
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn stderr(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(out.get_output().stderr.clone()).unwrap()
}

#[test]
fn list_prints_a_table_and_json() {
    let env = setup();
    let out = env.cmd("alice").arg("list").assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("PING") && header.ends_with("TEAM"),
        "{header}"
    );
    let count = env.sb().state().world().instances.len();
    assert_eq!(text.lines().count(), count + 1);

    let (name, id) = named(&env, |i| {
        tag(i, "Role") == "web" && tag(i, "Environment") == "prod"
    });
    let out = env
        .cmd("alice")
        .args(["list", "--json", &name])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["id"], id.as_str());
    assert_eq!(json[0]["ping"], "Online");
    // The alias expands to its tag filters.
    let out = env
        .cmd("alice")
        .args(["list", "--json", "web"])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .all(|i| i["tags"]["Role"] == "web" && i["tags"]["Environment"] == "prod")
    );
}

#[test]
fn no_match_suggests_closest_names() {
    let env = setup();
    let (name, _) = named(&env, |i| tag(i, "Environment") == "prod");
    let typo = format!("{}x", name);
    let out = env.cmd("alice").args(["connect", &typo]).assert().code(3);
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: no instance matches \"{typo}\"\n")),
        "{err}"
    );
    assert!(
        err.contains(&format!("hint: closest names: {name}")),
        "{err}"
    );
}

#[test]
fn ambiguous_without_a_terminal_lists_matches() {
    let env = setup();
    let out = env.cmd("alice").args(["connect", "web"]).assert().code(3);
    let err = stderr(&out);
    assert!(
        err.contains("matches") && err.contains("instances"),
        "{err}"
    );
    assert!(
        err.contains("hint: name one instance, or pass --first or --any"),
        "{err}"
    );
    assert!(err.matches("Role=web").count() >= 2, "{err}");
}

#[test]
fn offline_and_stopped_targets_are_explained() {
    let env = setup();
    let (name, id) = named(&env, |i| {
        i.state == InstanceState::Running && i.ping == PingStatus::Online
    });
    env.sb()
        .state()
        .set_ping_status(&id, PingStatus::ConnectionLost);
    let out = env.cmd("alice").args(["connect", &id]).assert().code(3);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{name} ({id}) has its SSM agent ConnectionLost since"
        )),
        "{err}"
    );

    env.sb().state().set_ping_status(&id, PingStatus::Online);
    env.sb()
        .state()
        .set_instance_state(&id, InstanceState::Stopped);
    let out = env.cmd("alice").args(["connect", &name]).assert().code(3);
    assert!(stderr(&out).contains(&format!("{name} ({id}) is stopped")));
}

#[test]
fn access_classes_decide_reach_and_document() {
    let env = setup();
    let (prod, _) = named(&env, |i| {
        tag(i, "Environment") == "prod"
            && i.ping == PingStatus::Online
            && i.state == InstanceState::Running
    });
    let out = env.cmd("bob").args(["connect", &prod]).assert().code(3);
    assert!(stderr(&out).contains(
        "is outside the no-sudo class's scope: Environment must be staging or dev (it is prod)"
    ));

    let out = env.cmd("eve").args(["connect", &prod]).assert().code(4);
    assert!(stderr(&out).contains("belongs to no access class"));

    let out = env
        .cmd("alice")
        .args(["connect", &prod, "--document", "SSM-nosudo"])
        .assert()
        .code(4);
    assert_eq!(
        stderr(&out),
        "error: the sudo class starts shells with \"SSM-sudo\" only, not \"SSM-nosudo\"\nhint: leave out --document; the class decides the document\n"
    );
}

#[test]
fn usage_errors_come_before_any_aws_call() {
    let env = setup();
    env.cmd("alice")
        .args(["--readonly", "connect", "anything"])
        .assert()
        .code(2)
        .stderr("error: read-only mode: sessions cannot be started\nhint: leave out --readonly to connect\n");
    let long = "x".repeat(257);
    env.cmd("alice")
        .args(["connect", "anything", "--reason", &long])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("AWS accepts at most 256"));
    env.cmd("alice")
        .args(["connect", "Role="])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("needs both a key and a value"));
    env.cmd("alice")
        .args(["connect", "x", "--escape", "ab"])
        .assert()
        .code(2);
}

#[test]
fn credentials_problems_exit_4_with_a_hint() {
    let env = setup();
    // No credentials anywhere.
    let out = env.cmd("").arg("list").assert().code(4);
    let err = stderr(&out);
    assert!(err.starts_with("error: no AWS credentials found"), "{err}");
    assert!(err.contains("hint: pass --profile NAME"), "{err}");
    // A profile that does not exist is a usage error that names it.
    let out = env
        .cmd("")
        .args(["--profile", "ghost", "list"])
        .assert()
        .code(2);
    let err = stderr(&out);
    assert!(err.starts_with("error: no profile \"ghost\" in "), "{err}");
    // Unknown keys are rejected by the service.
    let out = env.cmd("mallory").arg("list").assert().code(4);
    assert!(stderr(&out).starts_with("error: AWS rejected the credentials"));
}

#[test]
fn debug_decode_and_encode_round_trip_tv2() {
    let home = tempfile::tempdir().unwrap();
    let tv2 = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates/ssmtui-protocol/tests/fixtures/tv2_acknowledge.bin"),
    )
    .unwrap();
    let hex: String = tv2.iter().map(|b| format!("{b:02x} ")).collect();
    let mut cmd = Command::cargo_bin("ssmtui").unwrap();
    let out = cmd
        .env("SSMTUI_STATE_DIR", home.path())
        .args(["debug", "decode"])
        .write_stdin(hex)
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["message_type"], "acknowledge");
    let mut cmd = Command::cargo_bin("ssmtui").unwrap();
    let out = cmd
        .env("SSMTUI_STATE_DIR", home.path())
        .args(["debug", "encode", "--raw"])
        .write_stdin(serde_json::to_vec(&json).unwrap())
        .assert()
        .success();
    assert_eq!(out.get_output().stdout, tv2);
    let mut cmd = Command::cargo_bin("ssmtui").unwrap();
    cmd.args(["debug", "decode"])
        .write_stdin("zz")
        .assert()
        .code(2);
}

/// A running, agent-Online Linux instance in an environment alice's class reaches.
fn linux_online(env: &SandboxEnv) -> String {
    named(env, |i| {
        i.state == InstanceState::Running
            && i.ping == PingStatus::Online
            && tag(i, "Environment") == "dev"
            && !i.platform_name.contains("Windows")
    })
    .0
}

#[test]
fn pipe_mode_prints_only_output_and_returns_the_remote_status() {
    let env = setup();
    let name = linux_online(&env);
    let out = env
        .cmd("alice")
        .args(["connect", &name])
        .write_stdin("echo hello\necho second line\n(exit 7)\n")
        .assert()
        .code(7);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).replace('\r', "");
    assert_eq!(stdout, "hello\nsecond line\n");
    // A clean end is status 0.
    env.cmd("alice")
        .args(["connect", &name])
        .write_stdin("true\n")
        .assert()
        .code(0)
        .stdout("");
    // An explicit `exit N` ends the shell before anything after the script could run: its
    // status still comes back, and nothing after the script's output (no `logout`).
    for (script, code, output) in [
        ("exit 3\n", 3, ""),
        ("echo hi\nexit 4\necho never\n", 4, "hi\n"),
        // A `set -e` abort: the failing command's status.
        ("set -e\necho a\nfalse\necho b\n", 1, "a\n"),
        ("set -e\necho a\n(exit 9)\necho b\n", 9, "a\n"),
    ] {
        let out = env
            .cmd("alice")
            .args(["connect", &name])
            .write_stdin(script)
            .assert()
            .code(code);
        let stdout = String::from_utf8_lossy(&out.get_output().stdout).replace('\r', "");
        assert_eq!(stdout, output, "{script:?}");
    }
    // A script that replaces its shell leaves no status: unknown is not success.
    let out = env
        .cmd("alice")
        .args(["connect", &name])
        .write_stdin("echo before\nexec true\n")
        .assert()
        .code(5);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).replace('\r', "");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert_eq!(stdout, "before\n");
    assert!(
        stderr.contains("the session ended before the remote exit status came back"),
        "{stderr}"
    );
}

#[test]
fn a_20_mib_cat_survives_websocket_drops_exactly_once() {
    use sha2::{Digest, Sha256};
    let faults = ssmtui::sandbox::faults::Faults::parse("drop-every=200").unwrap();
    let env = setup_with(SandboxConfig {
        faults,
        ..faithful()
    });
    let name = linux_online(&env);
    // Text, so the pty passes it unchanged: 20 MiB of numbered lines.
    let file = env.home.path().join("big.txt");
    let mut text = String::with_capacity(21 << 20);
    let mut n = 0u64;
    while text.len() < 20 << 20 {
        text.push_str(&format!(
            "{n:016x} the quick brown fox jumps over the lazy dog\n"
        ));
        n += 1;
    }
    std::fs::write(&file, &text).unwrap();
    let out = env
        .cmd("alice")
        .args(["connect", &name])
        .write_stdin(format!("cat '{}'\n", file.display()))
        .timeout(std::time::Duration::from_secs(240))
        .assert()
        .code(0);
    let got = &out.get_output().stdout;
    assert_eq!(got.len(), text.len(), "byte count");
    assert_eq!(
        Sha256::digest(got),
        Sha256::digest(text.as_bytes()),
        "content differs"
    );
    let counts = env.sb().state().fault_counts();
    assert!(
        counts.drops > 0,
        "the websocket was never dropped: {counts:?}"
    );
}

/// A reader that stops reading for a while: the pipe fills, output goes through the
/// fallback path (tokio's stdout) and then directly again, and not a byte is lost or moved.
#[test]
fn output_into_a_pipe_that_stops_being_read_arrives_whole_and_in_order() {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let env = setup_with(common::sandbox::fast());
    let name = linux_online(&env);
    let file = env.home.path().join("lines.txt");
    let text: String = (0..40_000u32)
        .map(|n| format!("{n:08} a line that stops the pipe for a while\n"))
        .collect();
    std::fs::write(&file, &text).unwrap();
    let mut child = running_script(
        &env,
        &["connect", &name],
        &format!("cat '{}'\n", file.display()),
    );
    drop(child.stdin.take());
    // Far more than a pipe holds (64 KiB) is waiting to be written meanwhile.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let mut got = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(got.len(), text.len(), "byte count");
    assert_eq!(Sha256::digest(&got), Sha256::digest(text.as_bytes()));
}

/// `ssmtui ARGS` as alice with `script` on its stdin (kept open), once its session's data
/// channel is up.
fn running_script(env: &SandboxEnv, args: &[&str], script: &str) -> std::process::Child {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ssmtui"))
        .args(args)
        .env_clear()
        .envs(env.env("alice"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    common::wait_until(
        "the session's data channel",
        std::time::Duration::from_secs(20),
        || {
            env.sb()
                .state()
                .sessions()
                .iter()
                .any(|s| s.status == ssmtui::sandbox::SessionStatus::Connected)
        },
    );
    child
}

#[test]
fn tokens_never_reach_argv_environment_logs_or_errors() {
    let env = setup();
    env.sb().state().record_issued_tokens(true);
    let name = linux_online(&env);
    let h = env.home.path();
    let mut child = running_script(&env, &["-vv", "connect", &name], "sleep 2\necho done\n");
    // While the session runs (its data channel took the token), look at what other local
    // users could see.
    let tokens = env.sb().state().issued_tokens();
    assert!(!tokens.is_empty(), "the session started no data channel");
    let pid = child.id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(h.join("state/logs")).unwrap() {
        logs.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(!logs.is_empty(), "-vv wrote a log");
    let audit = std::fs::read(h.join("state/audit.jsonl")).unwrap();
    for token in &tokens {
        let t = token.expose().as_bytes();
        for (what, hay) in [
            ("argv", &cmdline),
            ("environment", &environ),
            ("stdout", &out.stdout),
            ("stderr", &out.stderr),
            ("log", &logs),
            ("audit log", &audit),
        ] {
            assert!(
                !hay.windows(t.len()).any(|w| w == t),
                "token found in {what}"
            );
        }
    }

    // A forced error path: every token is refused, the error names no token.
    env.sb()
        .state()
        .set_faults(ssmtui::sandbox::faults::Faults::parse("expire-tokens").unwrap());
    let out = env
        .cmd("alice")
        .args(["connect", &name])
        .write_stdin("true\n")
        .assert()
        .code(5);
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    for token in env.sb().state().issued_tokens() {
        assert!(!err.contains(token.expose()), "token in the error message");
    }
}

/// SIGTERM (or SIGINT, SIGHUP) while a script runs: the session is terminated on the service
/// and audited as interrupted, and `connect` exits 130 with a message — a signal used to kill
/// it between StartSession and the audit end line, leaving the session open.
#[test]
fn a_signal_ends_the_session_properly() {
    let env = setup();
    let name = linux_online(&env);
    let child = running_script(&env, &["connect", &name], "echo started; sleep 60\n");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("error: interrupted by SIGTERM; the session was terminated\n"),
        "{stderr}"
    );
    let sessions = env.sb().state().sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0].status,
        ssmtui::sandbox::SessionStatus::Terminated
    );
    let audit = env.audit_lines();
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert_eq!(audit[1]["status"], "interrupted", "{audit:#?}");
    assert_eq!(audit[1]["error"], "interrupted by SIGTERM", "{audit:#?}");
}
