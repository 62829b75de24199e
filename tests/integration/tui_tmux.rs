//! End to end: the real binary in a tmux pane against the in-memory fake world
//! (`SSMTUI_FAKE_WORLD`), with `SSMTUI_TEST_SHELL_COMMAND=sh` standing in for the remote shell.
//! Wait for rows, filter, open a shell, run a command, exit, find the list exactly as it was,
//! open help, quit; the terminal settings (`stty -a`) must be the same before and after.
//! Skipped, with a message, when tmux is not installed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::tmux::Tmux;

use crate::common::sandbox::{SandboxEnv, faithful};

/// The screen without its status line, which is the only line a shell round trip may change.
fn without_status(screen: &str, status_row: usize) -> Vec<&str> {
    screen
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != status_row)
        .map(|(_, l)| l)
        .collect()
}

#[test]
fn filter_shell_round_trip_help_and_quit_in_tmux() {
    if !common::require_tool(Tmux::available(), "tmux", "the tmux end-to-end test") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_ssmtui");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (width, height) = (100u16, 30u16);
    // Shells need an access class (the class decides the document); this one takes everyone.
    std::fs::create_dir_all(home.join("config")).unwrap();
    std::fs::write(
        home.join("config/config.toml"),
        "[classes.sudo]\ndocument = \"SSM-sudo\"\nprincipals = [\"arn:aws:sts::*\"]\n",
    )
    .unwrap();
    let env: Vec<(&str, std::ffi::OsString)> = vec![
        ("PATH", std::env::var_os("PATH").unwrap_or_default()),
        ("HOME", home.into()),
        ("TERM", "xterm-256color".into()),
        ("PS1", "$ ".into()),
        ("SSMTUI_CONFIG_DIR", home.join("config").into()),
        ("SSMTUI_STATE_DIR", home.join("state").into()),
        ("SSMTUI_FAKE_WORLD", "300".into()),
        ("SSMTUI_TEST_SHELL_COMMAND", "sh".into()),
    ];
    let tmux = Tmux::start("e2e", "e2e", &env, width, height);
    tmux.run(&["set-option", "-g", "escape-time", "10"]);
    // The prompt ("$ ", or "# " as root) says the shell is ready for input.
    tmux.wait_for("the shell prompt", |s| s.trim_end().ends_with(['$', '#']));

    let before = home.join("stty-before");
    let after = home.join("stty-after");
    tmux.literal(&format!(
        "stty -a > {}; {bin}; echo \"EXIT=$?\"; stty -a > {}",
        before.display(),
        after.display()
    ));
    tmux.keys(&["Enter"]);

    // Rows arrive.
    tmux.wait_text("Instances 300/300");
    tmux.wait_text("api-dev-01");

    // Incremental filter; Enter keeps it.
    tmux.literal("/web-dev");
    tmux.wait_for("the filter to narrow the list", |s| {
        s.contains("/web-dev") && s.contains("web-dev-02") && !s.contains("api-dev-01")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_text("filter web-dev");
    // web-dev-01 is stopped in the fake world: Enter says why instead of opening a shell.
    tmux.keys(&["Enter"]);
    tmux.wait_text("instance is stopped");
    tmux.literal("j");
    tmux.wait_for("the status to clear", |s| {
        !s.contains("instance is stopped")
    });
    let list_before = tmux.screen();

    // Open the shell (a local sh through the CommandLauncher), run a command, exit.
    tmux.keys(&["Enter"]);
    tmux.wait_text("ssmtui: shell on web-dev-02");
    tmux.literal("echo hi-from-$((40+2))");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the command output", |s| {
        s.lines().any(|l| l.trim_end() == "hi-from-42")
    });
    tmux.literal("exit");
    tmux.keys(&["Enter"]);
    // Wait for the status line, not the takeover banner that names the same instance.
    let list_after = tmux.wait_for("the list with the shell's outcome", |s| {
        s.contains("shell on web-dev-02 (i-") && s.contains("ended")
    });
    let status_row = usize::from(height) - 2;
    assert_eq!(
        without_status(&list_after, status_row),
        without_status(&list_before, status_row),
        "the list is not where it was:\nbefore:\n{list_before}\nafter:\n{list_after}"
    );

    // Help, generated from the keymap; Esc closes it.
    tmux.literal("?");
    tmux.wait_text("Help — keys by mode");
    tmux.wait_text("open a shell on the selected instance");
    tmux.keys(&["Escape"]);
    tmux.wait_for("help to close", |s| !s.contains("Help — keys by mode"));

    // Quit; the shell prints the exit status and the terminal settings are unchanged.
    tmux.literal("q");
    tmux.wait_text("EXIT=0");
    let read = |p: &Path| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::fs::read_to_string(p) {
                Ok(s) if !s.is_empty() => return s,
                _ if Instant::now() > deadline => panic!("{} was not written", p.display()),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    };
    assert_eq!(read(&before), read(&after), "stty -a differs after the TUI");
}

/// Saved forwards from a config file show in the forwards tab at start; against the fake world
/// (whose sessions have no stream URL) an autostarted one fails with the reason, a manual one
/// stays stopped, an unresolvable one says why; quitting still leaves the terminal intact.
#[test]
fn saved_forwards_show_in_the_forwards_tab_in_tmux() {
    if !common::require_tool(Tmux::available(), "tmux", "the tmux end-to-end test") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_ssmtui");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let config_dir = home.join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    // Port 0 everywhere: the test must not depend on a free fixed port.
    std::fs::write(
        config_dir.join("config.toml"),
        r#"
[[forwards]]
name = "web-http"
target = "web-dev-02"
spec = "0:80"
autostart = true

[[forwards]]
name = "manual-ssh"
target = "Name=api-dev-01"
spec = "0:22"

[[forwards]]
name = "ghost"
target = "no-such-box"
spec = "0:443"
autostart = true
"#,
    )
    .unwrap();
    let env: Vec<(&str, std::ffi::OsString)> = vec![
        ("PATH", std::env::var_os("PATH").unwrap_or_default()),
        ("HOME", home.into()),
        ("TERM", "xterm-256color".into()),
        ("PS1", "$ ".into()),
        ("SSMTUI_CONFIG_DIR", config_dir.clone().into()),
        ("SSMTUI_STATE_DIR", home.join("state").into()),
        ("SSMTUI_FAKE_WORLD", "300".into()),
    ];
    let tmux = Tmux::start("e2e-fwd", "e2e", &env, 160, 30);
    tmux.run(&["set-option", "-g", "escape-time", "10"]);
    tmux.wait_for("the shell prompt", |s| s.trim_end().ends_with(['$', '#']));
    tmux.literal(&format!("{bin}; echo \"EXIT=$?\""));
    tmux.keys(&["Enter"]);
    tmux.wait_text("Instances 300/300");

    tmux.literal("F");
    tmux.wait_text("Forwards");
    let row = |screen: &str, name: &str| {
        screen
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_owned()
    };
    let screen = tmux.wait_for("the autostarted forward to fail against the fake", |s| {
        row(s, "web-http").contains("failed")
    });
    assert!(row(&screen, "manual-ssh").contains("stopped"), "{screen}");
    assert!(row(&screen, "ghost").contains("failed"), "{screen}");
    assert!(
        row(&screen, "ghost").contains("no instance matches"),
        "{screen}"
    );
    // Details of the failed one carry the full error.
    tmux.keys(&["Enter"]);
    tmux.wait_text("Forward web-http");
    tmux.wait_text("last error");
    tmux.keys(&["Escape"]);
    tmux.wait_for("details to close", |s| !s.contains("Forward web-http"));

    tmux.literal("q");
    tmux.wait_text("EXIT=0");
}

/// The TUI against the sandbox with no classes configured and a class chosen earlier among
/// the tagged documents (as `ssmtui connect` remembers it): a shell opens with that class's
/// document, and its audit lines carry the class (they said `class: null`, because the TUI's
/// audit re-read the class from the config alone).
#[test]
fn a_tui_shell_with_a_discovered_class_is_audited_with_it() {
    if !common::require_tool(Tmux::available(), "tmux", "the TUI sandbox shell test") {
        return;
    }
    let sandbox = SandboxEnv::blocking("", faithful());
    let name = sandbox.linux_name();
    let home = sandbox.home.path();
    std::fs::create_dir_all(home.join("state")).unwrap();
    std::fs::write(
        home.join("state/class-choice.json"),
        r#"{"profiles":{"default":{"class":"sudo","document":"SSM-sudo"}}}"#,
    )
    .unwrap();
    let mut env = sandbox.env("alice");
    env.extend([("TERM", "xterm-256color".into()), ("PS1", "$ ".into())]);
    let tmux = Tmux::start("tui-sandbox", "s", &env, 120, 30);
    tmux.run(&["set-option", "-g", "escape-time", "10"]);
    tmux.wait_for("the shell prompt", |s| s.trim_end().ends_with(['$', '#']));
    let bin = env!("CARGO_BIN_EXE_ssmtui");
    tmux.type_line(&format!("{bin}; echo \"EXIT=$?\""));
    // The discovered class is the TUI's class.
    tmux.wait_text("class sudo");
    tmux.wait_for("the instance list", |s| s.contains("Instances 40/40"));
    tmux.literal(&format!("/{name}"));
    tmux.keys(&["Enter"]);
    tmux.wait_text(&format!("filter {name}"));
    tmux.keys(&["Enter"]);
    tmux.wait_text("running as ssm-sudo");
    tmux.type_line("echo remote-$((6*7))");
    tmux.wait_text("remote-42");
    tmux.type_line("exit");
    tmux.wait_for("the list again", |s| {
        s.contains(&format!("shell on {name} (i-")) && s.contains("ended")
    });
    tmux.literal("q");
    tmux.wait_text("EXIT=0");
    let audit = std::fs::read_to_string(home.join("state/audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{audit}");
    for line in &lines {
        assert_eq!(line["class"], "sudo", "{line}");
        assert_eq!(line["document"], "SSM-sudo", "{line}");
        assert_eq!(line["kind"], "shell", "{line}");
    }
    assert_eq!(lines[1]["event"], "end");
    assert_eq!(lines[1]["status"], "exited");
}

/// The TUI started with a profile whose SSO sign-in expired shows the sign-in panel with the
/// cause and the profiles of the AWS config; picking a working profile there loads the list.
#[test]
fn the_sign_in_panel_picks_a_working_profile() {
    if !common::require_tool(Tmux::available(), "tmux", "the TUI sign-in test") {
        return;
    }
    let sandbox = SandboxEnv::blocking("", faithful());
    let home = sandbox.home.path();
    let region = sandbox.sb().state().region().to_owned();
    std::fs::write(
        home.join("aws-config"),
        format!(
            "[profile expired]\nsso_session = corp\nsso_account_id = 111111111111\nsso_role_name = Admin\nregion = {region}\n\n[profile sandbox]\nregion = {region}\n\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n"
        ),
    )
    .unwrap();
    std::fs::write(
        home.join("aws-credentials"),
        format!(
            "[sandbox]\naws_access_key_id = alice\naws_secret_access_key = {}\n",
            ssmtui::sandbox::SECRET_ACCESS_KEY
        ),
    )
    .unwrap();
    // A stand-in for the AWS CLI that records how it was called.
    let bin_dir = home.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let called = home.join("aws-called");
    let fake_aws = bin_dir.join("aws");
    std::fs::write(
        &fake_aws,
        format!(
            "#!/bin/sh\necho \"$@\" > {}\necho fake aws sso login\n",
            called.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x", &fake_aws.display().to_string()])
        .status()
        .unwrap();
    let mut env = sandbox.env("");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.retain(|(k, _)| *k != "PATH");
    env.extend([
        ("PATH", path.into()),
        ("TERM", "xterm-256color".into()),
        ("PS1", "$ ".into()),
        ("AWS_PROFILE", "expired".into()),
    ]);
    let tmux = Tmux::start("tui-signin", "s", &env, 120, 30);
    tmux.run(&["set-option", "-g", "escape-time", "10"]);
    tmux.wait_for("the shell prompt", |s| s.trim_end().ends_with(['$', '#']));
    let bin = env!("CARGO_BIN_EXE_ssmtui");
    tmux.type_line(&format!("{bin}; echo \"EXIT=$?\""));
    tmux.wait_for("the sign-in panel", |s| {
        s.contains("Sign in")
            && s.contains("SSO sign-in for profile \"expired\" has expired")
            && s.contains("aws sso login --profile expired")
            && s.contains("sandbox")
    });
    // `l` hands the terminal to `aws sso login` for the profile, then signs in again (the
    // stand-in renews nothing, so the panel comes back).
    tmux.literal("l");
    common::wait_until("the AWS CLI stand-in", Duration::from_secs(20), || {
        called.exists()
    });
    tmux.wait_for("the sign-in panel after the login", |s| {
        s.contains("Sign in") && s.contains("profile \"expired\" has expired")
    });
    assert_eq!(
        std::fs::read_to_string(&called).unwrap().trim(),
        "sso login --profile expired"
    );
    // The profiles are listed in order; the current one is selected. Pick the next.
    tmux.literal("j");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the instance list of the working profile", |s| {
        s.contains("Instances 40/40") && s.contains("profile sandbox") && !s.contains("Sign in")
    });
    tmux.literal("q");
    tmux.wait_text("EXIT=0");
}

/// The transcript pane end to end: a shell session run with `ssmtui connect` prints a marker;
/// in the TUI, `:sessions`, `l` on it shows its transcript (read from the sandbox's S3 once
/// the agent has uploaded it), `/` finds the marker, `esc` closes the pane.
#[test]
fn the_sessions_view_opens_a_transcript_and_searches_it() {
    if !common::require_tool(Tmux::available(), "tmux", "the TUI transcript test") {
        return;
    }
    let sandbox = SandboxEnv::blocking(
        "[classes.sudo]\ndocument = \"SSM-sudo\"\nprincipals = [\"arn:aws:sts::*\"]\n",
        crate::common::sandbox::fast(),
    );
    let name = sandbox.linux_name();
    let out = sandbox
        .cmd("alice")
        .args(["connect", &name])
        .write_stdin("echo transcript-marker-$((6*7))\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = sandbox.audit_lines().last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The agent uploads once the session has ended.
    common::wait_until("the upload", Duration::from_secs(20), || {
        sandbox
            .cmd("alice")
            .args(["logs", &id, "--source", "s3"])
            .output()
            .unwrap()
            .status
            .success()
    });
    let mut env = sandbox.env("alice");
    env.extend([("TERM", "xterm-256color".into()), ("PS1", "$ ".into())]);
    let tmux = Tmux::start("tui-transcript", "t", &env, 120, 30);
    tmux.run(&["set-option", "-g", "escape-time", "10"]);
    tmux.wait_for("the shell prompt", |s| s.trim_end().ends_with(['$', '#']));
    tmux.type_line(&format!(
        "{}; echo \"EXIT=$?\"",
        env!("CARGO_BIN_EXE_ssmtui")
    ));
    tmux.wait_for("the instance list", |s| s.contains("Instances 40/40"));
    tmux.literal(":sessions");
    tmux.keys(&["Enter"]);
    tmux.wait_text(&id);
    tmux.literal("l");
    tmux.wait_for("the transcript", |s| {
        s.contains(&format!("Transcript {id}")) && s.contains("from S3")
    });
    tmux.literal("/");
    tmux.literal("marker-42");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_text("/marker-42");
    assert!(
        screen.lines().any(|l| l.contains("transcript-marker-42")),
        "{screen}"
    );
    tmux.keys(&["Escape"]);
    tmux.wait_for("the sessions list again", |s| {
        !s.contains("Transcript ") && s.contains(&id)
    });
    tmux.literal("q");
    tmux.wait_text("EXIT=0");
}

/// `ssmtui demo --fleet`: every account and region of the fleet sandbox in one list, filtered
/// by account and region, and a shell on a dev row goes through the dev account with bob's
/// class there (sudo; he is no-sudo in prod), as the audit line records.
#[test]
fn the_fleet_demo_lists_every_account_and_opens_a_shell_as_that_accounts_class() {
    use ssmtui::sandbox::fleet::member_seed;
    use ssmtui::sandbox::identity::ACCOUNT_IDS;
    use ssmtui::sandbox::{PlatformType, World};
    if !common::require_tool(Tmux::available(), "tmux", "the TUI fleet demo test") {
        return;
    }
    // The demo's dev world in eu-west-1, generated here the way the demo generates it.
    let world = World::generate_in(ACCOUNT_IDS[1], member_seed(1, 1, 0), 12, "eu-west-1");
    let name = world
        .instances
        .iter()
        // Not prod: the demo's sudo class asks a reason there.
        .find(|i| {
            i.connected()
                && i.platform_type == PlatformType::Linux
                && i.environment() != Some("prod")
        })
        .and_then(|i| i.tag("Name"))
        .unwrap()
        .to_owned();
    let sandbox = SandboxEnv::blocking("", faithful());
    let home = sandbox.home.path();
    let mut env = sandbox.env("");
    env.retain(|(k, _)| !k.starts_with("AWS_"));
    env.extend([("TERM", "xterm-256color".into()), ("PS1", "$ ".into())]);
    let tmux = Tmux::start("tui-fleet", "s", &env, 140, 34);
    tmux.run(&["set-option", "-g", "escape-time", "10"]);
    tmux.wait_for("the shell prompt", |s| s.trim_end().ends_with(['$', '#']));
    let bin = env!("CARGO_BIN_EXE_ssmtui");
    tmux.type_line(&format!(
        "{bin} demo --fleet --as bob --instances 12 --accounts 2 --regions eu-west-1,us-east-1; echo \"EXIT=$?\""
    ));
    tmux.wait_for("every source", |s| {
        s.contains("sources 4/4 ok") && s.contains("Instances 48/48")
    });
    let screen = tmux.screen();
    assert!(
        screen.contains("ACCOUNT") && screen.contains("REGION"),
        "{screen}"
    );
    tmux.literal(&format!("/{name} account=dev region=eu-west-1"));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the one dev row", |s| s.contains("Instances 1/48"));
    tmux.wait_text("class sudo");
    tmux.keys(&["Enter"]);
    tmux.wait_text("running as ssm-sudo");
    tmux.type_line("echo fleet-$((6*7))");
    tmux.wait_text("fleet-42");
    tmux.type_line("exit");
    tmux.wait_for("the list again", |s| s.contains("ended"));
    tmux.literal("q");
    tmux.wait_text("EXIT=0");
    let audit = std::fs::read_to_string(home.join("state/audit.jsonl")).unwrap();
    let start: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(start["profile"], "sandbox-dev", "{start}");
    assert_eq!(start["region"], "eu-west-1", "{start}");
    assert_eq!(start["account"], "210987654321", "{start}");
    assert_eq!(start["class"], "sudo", "{start}");
    assert_eq!(start["document"], "SSM-sudo", "{start}");
    assert_eq!(start["target_name"], name.as_str(), "{start}");
}
