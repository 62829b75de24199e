//! A working day compressed into half a minute: a port session carrying traffic and a shell,
//! both through the real binary, while the service closes websockets every 700 ms, the path
//! dies silently every few seconds, and the credentials (an assumed role of the sandbox) expire
//! every 15 s. Nothing may be lost or repeated, and the audit log has one start and one end
//! per session.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ssmtui::sandbox::SandboxConfig;
use ssmtui::sandbox::faults::Faults;
use ssmtui::sandbox::identity::SECRET_ACCESS_KEY;

use crate::common::sandbox::{SandboxEnv, fast};

const CONFIG: &str = r#"
[classes.sudo]
document = "SSM-sudo"
forward_documents = ["AWS-StartPortForwardingSession"]
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*"]

[sessions]
keepalive_seconds = 1
"#;

/// Echoes every connection until the test ends.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
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

#[test]
fn a_forward_and_a_shell_survive_closes_silent_deaths_and_credential_rotations() {
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

    // The shell: a line every 100 ms for 30 s.
    let mut shell = command(&["connect", &target]);
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(b"for i in $(seq 1 300); do echo line-$i; sleep 0.1; done\n")
        .unwrap();

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

    let shell_out = shell.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&shell_out.stdout);
    let stderr = String::from_utf8_lossy(&shell_out.stderr);
    eprintln!("long run took {:.1?}", started.elapsed());
    assert_eq!(shell_out.status.code(), Some(0), "{stderr}");
    let expected: String = (1..=300).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(text, expected, "every line once, in order; {stderr}");
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
