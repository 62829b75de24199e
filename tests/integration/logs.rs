//! `ssmtui logs` through the real binary against the sandbox, whose agent writes transcripts
//! as the real one does: the sudo document to S3 (at the end) and streamed to CloudWatch Logs,
//! the no-sudo document to S3 only. Listing, printing from each copy, raw and JSON forms,
//! `--grep`, `--follow`, and the permission rules (bob reads only his own, eve lacks
//! `kms:Decrypt`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::sandbox::{ORG_CLASSES, SandboxEnv, fast};
use crate::common::wait_until;

/// `ssmtui …` as `who`: (exit code, stdout, stderr).
fn run(env: &SandboxEnv, who: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    let out = env
        .cmd(who)
        .args(args)
        .write_stdin(stdin.to_owned())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a shell session that prints `marker` in red, and returns its session id.
fn session_with_marker(env: &SandboxEnv, who: &str, target: &str, marker: &str) -> String {
    let script = format!("printf '\\033[1;31m%s\\033[0m\\n' {marker}\n");
    let (code, out, err) = run(env, who, &["connect", target], &script);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(marker), "{out}");
    let lines = env.audit_lines();
    lines.last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The agent uploads when the session has ended: wait for the object.
fn wait_for_upload(env: &SandboxEnv, who: &str, id: &str) {
    wait_until("the transcript in S3", Duration::from_secs(20), || {
        run(env, who, &["logs", id, "--source", "s3"], "").0 == 0
    });
}

#[test]
fn a_session_is_listed_and_read_from_s3_and_cloudwatch() {
    let env = SandboxEnv::blocking(ORG_CLASSES, fast());
    let name = env.linux_name();
    let id = session_with_marker(&env, "alice", &name, "marker-4711");
    wait_for_upload(&env, "alice", &id);

    // The list: the session, its Name from the audit log, and where the transcript is.
    let (code, out, err) = run(&env, "alice", &["logs", "--json"], "");
    assert_eq!(code, 0, "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(row["name"], name.as_str());
    assert_eq!(row["active"], false);
    assert_eq!(
        row["transcript"]["s3"]["key"],
        format!("sudo/{id}.log").as_str()
    );
    assert_eq!(row["transcript"]["cloudwatch"]["streaming"], true);
    let (code, out, _) = run(&env, "alice", &["logs"], "");
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&id) && l.contains(&name) && l.contains("s3://")),
        "{out}"
    );

    // Text by default (stdout is a pipe): the marker without its colour codes.
    let (code, text, err) = run(&env, "alice", &["logs", &id], "");
    assert_eq!(code, 0, "{err}");
    assert!(text.starts_with("Script started on "), "{text}");
    assert!(text.lines().any(|l| l == "marker-4711"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
    // --raw: the bytes the terminal got.
    let (_, raw, _) = run(&env, "alice", &["logs", &id, "--raw"], "");
    assert!(raw.contains("\u{1b}[1;31mmarker-4711\u{1b}[0m"), "{raw}");
    // The CloudWatch copy, and its records.
    let (code, cw, err) = run(&env, "alice", &["logs", &id, "--source", "cloudwatch"], "");
    assert_eq!(code, 0, "{err}");
    assert!(cw.lines().any(|l| l == "marker-4711"), "{cw}");
    let (code, json, err) = run(&env, "alice", &["logs", &id, "--json"], "");
    assert_eq!(code, 0, "{err}");
    let records: Value = serde_json::from_str(&json).unwrap();
    let records = records.as_array().unwrap();
    assert!(!records.is_empty());
    for r in records {
        assert_eq!(r["sessionId"], id.as_str());
        assert_eq!(r["runAsUser"], "ssm-sudo");
        assert!(
            r["userIdentity"]["arn"]
                .as_str()
                .unwrap()
                .ends_with("/alice")
        );
        assert!(r["sessionData"].is_array());
    }

    // --grep across the listed transcripts: session and line.
    let (code, out, err) = run(&env, "alice", &["logs", "--grep", "marker-4711"], "");
    assert_eq!(code, 0, "{err}");
    // The typed command line matches too (the terminal echoed it); the output line is there.
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("{id}:")) && l.ends_with(": marker-4711")),
        "{out}"
    );
    let (code, _, err) = run(&env, "alice", &["logs", "--grep", "never-printed-0815"], "");
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no transcript line contains"), "{err}");
}

#[test]
fn who_may_read_which_transcript() {
    let env = SandboxEnv::blocking(ORG_CLASSES, fast());
    let dev = env
        .sb()
        .state()
        .world()
        .instances
        .iter()
        .find(|i| i.id == env.online("dev"))
        .and_then(|i| i.tag("Name").map(str::to_owned))
        .unwrap();
    let alices = session_with_marker(&env, "alice", &dev, "alice-was-here");
    let bobs = session_with_marker(&env, "bob", &dev, "bob-was-here");
    wait_for_upload(&env, "alice", &alices);
    wait_for_upload(&env, "bob", &bobs);

    // The no-sudo document logs to S3 only.
    let (code, _, err) = run(&env, "bob", &["logs", &bobs, "--source", "cloudwatch"], "");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("session {bobs} is not logged to CloudWatch Logs")),
        "{err}"
    );
    let (code, out, err) = run(&env, "bob", &["logs", &bobs], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bob-was-here"));
    // Alice (an administrator) reads bob's; bob cannot read hers, from either copy.
    let (code, out, err) = run(&env, "alice", &["logs", &bobs], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bob-was-here"));
    for source in ["s3", "cloudwatch"] {
        let (code, _, err) = run(&env, "bob", &["logs", &alices, "--source", source], "");
        assert_eq!(code, 4, "{err}");
        let action = if source == "s3" {
            "s3:GetObject"
        } else {
            "logs:GetLogEvents"
        };
        assert!(
            err.contains(&format!("not authorized to perform: {action}")),
            "{err}"
        );
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1);
    }
    // A search in a transcript that cannot be read says why, not "no match".
    let (code, _, err) = run(&env, "bob", &["logs", &alices, "--grep", "alice"], "");
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("not authorized to perform: s3:GetObject"),
        "{err}"
    );
    // Eve may read the bucket but not decrypt: the KMS reason.
    let (code, _, err) = run(&env, "eve", &["logs", &bobs], "");
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("not authorized to perform: kms:Decrypt"),
        "{err}"
    );
    assert!(
        err.contains("hint: the transcript is encrypted with KMS"),
        "{err}"
    );

    // doctor says, per class document, whether the caller can read its transcripts.
    let line = |out: &str, doc: &str| {
        out.lines()
            .find(|l| l.contains(&format!("{doc}: transcripts")))
            .unwrap_or_else(|| panic!("no transcripts line for {doc}:\n{out}"))
            .to_owned()
    };
    let (_, out, _) = run(&env, "alice", &["doctor"], "");
    for doc in ["SSM-sudo", "SSM-nosudo"] {
        let l = line(&out, doc);
        assert!(l.starts_with("pass") && l.contains("readable"), "{l}");
    }
    let (_, out, _) = run(&env, "eve", &["doctor"], "");
    let l = line(&out, "SSM-nosudo");
    assert!(l.starts_with("warn") && l.contains("kms:Decrypt"), "{l}");
}

#[test]
fn a_live_session_is_followed_from_cloudwatch_and_not_yet_in_s3() {
    let env = SandboxEnv::blocking(ORG_CLASSES, fast());
    let name = env.linux_name();
    let bin = env!("CARGO_BIN_EXE_ssmtui");
    // A shell session kept open: its stdin is ours.
    let mut shell = Command::new(bin)
        .env_clear()
        .envs(env.env("alice"))
        .args(["connect", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = shell.stdin.take().unwrap();
    let mut output = BufReader::new(shell.stdout.take().unwrap());
    writeln!(input, "echo first-$((6*7))").unwrap();
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "first-42");
    let id = env.audit_lines().last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Not in S3 while it runs: the reason and what to do.
    let (code, _, err) = run(&env, "alice", &["logs", &id, "--source", "s3"], "");
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("is not in S3 yet"), "{err}");
    assert!(err.contains("--follow"), "{err}");

    let mut follow = Command::new(bin)
        .env_clear()
        .envs(env.env("alice"))
        .args(["logs", &id, "--follow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let followed = BufReader::new(follow.stdout.take().unwrap());
    let reader = std::thread::spawn(move || {
        for l in followed.lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let wait_line = |want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l == want => return,
                Ok(_) => {}
                Err(e) => panic!("--follow never printed {want:?}: {e}"),
            }
        }
    };
    wait_line("first-42");
    // A line typed after --follow started arrives too.
    writeln!(input, "echo second-$((6*7))").unwrap();
    wait_line("second-42");
    // The session ends: --follow ends with it.
    drop(input);
    assert!(shell.wait().unwrap().success());
    let status = follow.wait().unwrap();
    assert!(status.success(), "{status:?}");
    reader.join().unwrap();
}
