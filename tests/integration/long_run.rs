//! A working day compressed into half a minute: a port session carrying traffic and an
//! interactive shell on a terminal (a tmux pane), both through the real binary, while the
//! service closes websockets every 700 ms, the path dies silently every few seconds, and the
//! credentials (an assumed role of the sandbox) expire every 15 s. Nothing may be lost or repeated, and the audit log has one start and one end
//! per session.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ssmtui::sandbox::SandboxConfig;
use ssmtui::sandbox::faults::Faults;
use ssmtui::sandbox::identity::SECRET_ACCESS_KEY;

use crate::common::echo_server;
use crate::common::sandbox::{SandboxEnv, fast};
use crate::common::tmux::Tmux;

const CONFIG: &str = r#"
[classes.sudo]
document = "SSM-sudo"
forward_documents = ["AWS-StartPortForwardingSession"]
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*"]

[sessions]
keepalive_seconds = 1
"#;

#[test]
fn a_forward_and_a_shell_survive_closes_silent_deaths_and_credential_rotations() {
    if !crate::common::require_tool(Tmux::available(), "tmux", "the long-run test") {
        return;
    }
    let faults = Faults::parse("close-every=700ms,blackhole-every=4s").unwrap();
    let env = SandboxEnv::blocking(CONFIG, SandboxConfig { faults, ..fast() });
    env.sb().state().set_credential_ttl(Duration::from_secs(15));
    // alice's long-lived key only assumes her role; everything runs on the role's
    // temporary credentials, which the SDK must refresh as they expire.
    std::fs::write(
        env.home.path().join("aws-config"),
        "[profile base]\nregion = us-east-1\n\n[profile rotating]\nrole_arn = arn:aws:iam::123456789012:role/alice\nsource_profile = base\nregion = us-east-1\n",
    )
    .unwrap();
    std::fs::write(
        env.home.path().join("aws-credentials"),
        format!("[base]\naws_access_key_id = alice\naws_secret_access_key = {SECRET_ACCESS_KEY}\n"),
    )
    .unwrap();
    let target = env.linux_name();
    let command = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ssmtui"));
        cmd.env_clear()
            .envs(env.env(""))
            .env("AWS_PROFILE", "rotating")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let started = Instant::now();

    // The shell, interactive on a terminal: a line every 100 ms for 30 s.
    let mut pane_env = env.env("");
    pane_env.push(("AWS_PROFILE", "rotating".into()));
    pane_env.push(("TERM", "xterm-256color".into()));
    let tmux = Tmux::start("longrun", "t", &pane_env, 120, 40);
    tmux.wait_for("the local prompt", |s| s.trim_end().ends_with(['$', '#']));
    tmux.type_line(&format!(
        "'{}' connect {target}; echo \"exit=$?\"",
        env!("CARGO_BIN_EXE_ssmtui")
    ));
    tmux.wait_for("the remote shell", |s| s.contains("running as ssm-sudo"));
    tmux.type_line("for i in $(seq 1 300); do echo line-$i; sleep 0.1; done; echo all-done");

    // The port session: 4 KiB every 25 ms for about 30 s, echoed back.
    let port = echo_server();
    let mut proxy = command(&["proxy", &target, &port.to_string()]);
    let mut stdin = proxy.stdin.take().unwrap();
    let mut stdout = proxy.stdout.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut sent = Vec::new();
        for i in 0..1200u32 {
            let chunk: Vec<u8> = (0..4096u32).map(|j| ((i * 7 + j) % 251) as u8).collect();
            if stdin.write_all(&chunk).is_err() {
                break;
            }
            sent.extend_from_slice(&chunk);
            std::thread::sleep(Duration::from_millis(25));
        }
        sent
    });
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        while got.len() < 1200 * 4096 {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    });
    // The writer closes stdin when done, which ends the proxy (and its session) politely.
    let sent = writer.join().unwrap();
    let got = reader.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = proxy.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = proxy.kill();
            break proxy.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut proxy_err = String::new();
    proxy
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut proxy_err)
        .unwrap();

    tmux.wait_in_history("the loop's end", Duration::from_secs(120), |h| {
        h.lines().any(|l| l.trim_end() == "all-done")
    });
    tmux.type_line("exit");
    let history = tmux.wait_in_history("the local prompt", Duration::from_secs(60), |h| {
        h.contains("exit=0")
    });
    eprintln!("long run took {:.1?}", started.elapsed());
    // Every line once and in order, between the reconnect notices on the terminal.
    let seen: Vec<u32> = history
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("line-")?.parse().ok())
        .collect();
    let expected: Vec<u32> = (1..=300).collect();
    assert_eq!(seen, expected, "{history}");
    assert!(status.success(), "{status}: {proxy_err}");
    assert_eq!(got.len(), sent.len(), "{proxy_err}");
    assert!(got == sent, "the echo differs; {proxy_err}");

    let counts = env.sb().state().fault_counts();
    let rotations = env.sb().state().assume_role_count();
    eprintln!("{counts:?}; {rotations} AssumeRole calls");
    assert!(counts.service_closes >= 20, "{counts:?}");
    assert!(counts.blackholes >= 5, "{counts:?}");
    assert!(
        rotations >= 4,
        "at least three rotations: {rotations} AssumeRole calls"
    );

    // One start and one end per session, whatever happened in between.
    let audit = env.audit_lines();
    let mut sessions: Vec<&str> = audit
        .iter()
        .filter_map(|l| l["session_id"].as_str())
        .collect();
    sessions.sort_unstable();
    sessions.dedup();
    assert_eq!(sessions.len(), 2, "{audit:#?}");
    for id in sessions {
        let events: Vec<&str> = audit
            .iter()
            .filter(|l| l["session_id"] == id)
            .filter_map(|l| l["event"].as_str())
            .collect();
        assert_eq!(events, ["start", "end"], "{id}: {audit:#?}");
    }
}
