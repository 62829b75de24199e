//! `ssmtui sandbox` and `ssmtui demo` through the real binary: the sandbox prints export lines
//! with a real port, an SDK configured from exactly those values gets answers, SIGTERM ends it
//! with status 0, a bad `--faults` spec is a usage error with the syntax as a hint, and `demo`
//! signs in to its in-process sandbox as the chosen identity.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};

/// Undoes the single-quote shell quoting the sandbox prints.
fn unquote(v: &str) -> String {
    v.strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap()
        .replace(r"'\''", "'")
}

#[tokio::test]
async fn sandbox_prints_working_exports_and_stops_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssmtui"))
        .args(["sandbox", "--as", "bob", "--seed", "3", "--instances", "12"])
        .env_clear()
        .env("HOME", home.path())
        .env("SSMTUI_CONFIG_DIR", home.path().join("config"))
        .env("SSMTUI_STATE_DIR", home.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut exports = BTreeMap::new();
    let mut comments = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("export ") {
            let (k, v) = rest.split_once('=').unwrap();
            exports.insert(k.to_owned(), unquote(v));
        } else {
            assert!(line.starts_with("# "), "{line}");
            let done = line.contains("serving until");
            comments.push(line);
            if done {
                break;
            }
        }
    }
    assert!(
        comments[0].contains("alice") && comments[0].contains("eve"),
        "{comments:?}"
    );
    let endpoint = &exports["AWS_ENDPOINT_URL"];
    let port: u16 = endpoint
        .strip_prefix("http://127.0.0.1:")
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(port, 0);
    assert_eq!(exports["AWS_ACCESS_KEY_ID"], "bob");
    assert_eq!(exports["AWS_EC2_METADATA_DISABLED"], "true");
    assert_eq!(exports["AWS_REGION"], exports["AWS_DEFAULT_REGION"]);

    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(exports["AWS_REGION"].clone()))
        .credentials_provider(Credentials::new(
            exports["AWS_ACCESS_KEY_ID"].clone(),
            exports["AWS_SECRET_ACCESS_KEY"].clone(),
            None,
            None,
            "exports",
        ))
        .build();
    let out = aws_sdk_ec2::Client::from_conf(conf)
        .describe_instances()
        .send()
        .await
        .unwrap();
    let n: usize = out.reservations().iter().map(|r| r.instances().len()).sum();
    assert_eq!(n, 12);

    // kill(1) rather than libc::kill: unsafe code is forbidden crate-wide, tests included.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn sandbox_rejects_unknown_identities_and_public_addresses() {
    let home = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (
            &["sandbox", "--as", "mallory"][..],
            "unknown sandbox identity \"mallory\"",
        ),
        (
            &["sandbox", "--listen", "0.0.0.0:0"],
            "the sandbox listens on loopback only",
        ),
        (
            &["sandbox", "--faults", "drop-every=200,bogus=1"],
            "bad --faults spec: unknown fault \"bogus\"",
        ),
        (
            &["sandbox", "--faults", "dup=1.5"],
            "fault \"dup\" needs a probability between 0 and 1",
        ),
        (
            &["sandbox", "--faults", "delay-ms=20-5"],
            "has its range backwards",
        ),
        (
            &["sandbox", "--faults", "close-every=5"],
            "fault \"close-every\" needs a duration such as 30s or 500ms",
        ),
        (&["demo", "--as", "mallory"], "unknown sandbox identity"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ssmtui"))
            .args(args)
            .env_clear()
            .env("HOME", home.path())
            .env("SSMTUI_CONFIG_DIR", home.path().join("config"))
            .env("SSMTUI_STATE_DIR", home.path().join("state"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(needle), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }
}

#[test]
fn demo_signs_in_to_its_own_sandbox_and_stops_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssmtui"))
        .args(["demo", "--as", "bob", "--instances", "12", "--seed", "5"])
        .env_clear()
        .env("HOME", home.path())
        .env("SSMTUI_CONFIG_DIR", home.path().join("config"))
        .env("SSMTUI_STATE_DIR", home.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut text = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("serving until");
        text.push(line);
        if done {
            break;
        }
    }
    let text = text.join("\n");
    // The AWS layer (SDK with the demo identity's credentials) really reached the sandbox.
    assert!(
        text.contains("signed in as bob (arn:aws:sts::123456789012:assumed-role/"),
        "{text}"
    );
    assert!(text.contains("12 instances"), "{text}");
    assert!(text.contains("# no terminal, so no UI;"), "{text}");
    assert!(text.contains("export AWS_ACCESS_KEY_ID='bob'"), "{text}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
