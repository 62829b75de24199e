//! `ssmtui list` and `connect` over several profiles and regions (issue 21, first part): two sandboxes stand
//! for two accounts' endpoints, each behind its own profile in the AWS config (its
//! `endpoint_url` and credentials), and a third profile points at nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::ffi::OsString;

use serde_json::Value;
use ssmtui::sandbox::{Sandbox, SandboxConfig};

use ssmtui::sandbox::PlatformType;

use crate::common::sandbox::{ORG_CLASSES, SandboxEnv, fast};

#[test]
fn list_and_connect_span_the_fleet_and_a_broken_profile_does_not_fail_the_rest() {
    let env = SandboxEnv::blocking("", fast());
    let region = env.sb().state().region().to_owned();
    let second = env
        .block_on(Sandbox::start(SandboxConfig {
            seed: 7,
            instances: 12,
            region: region.clone(),
            ..fast()
        }))
        .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = env.home.path();
    std::fs::write(
        home.join("aws-config"),
        format!(
            "[profile dev-admin]\nregion = {region}\nendpoint_url = {}\n\
             [profile prod-admin]\nregion = {region}\nendpoint_url = {}\n\
             [profile old-admin]\nregion = {region}\nendpoint_url = http://127.0.0.1:{closed}\n",
            env.sb().endpoint_url(),
            second.endpoint_url()
        ),
    )
    .unwrap();
    std::fs::write(
        home.join("aws-credentials"),
        "[dev-admin]\naws_access_key_id = alice\naws_secret_access_key = x\n\
         [prod-admin]\naws_access_key_id = bob\naws_secret_access_key = x\n\
         [old-admin]\naws_access_key_id = alice\naws_secret_access_key = x\n",
    )
    .unwrap();
    // The profiles decide endpoints and keys: none of the sandbox's own variables.
    let vars: Vec<(&str, OsString)> = env
        .env("alice")
        .into_iter()
        .filter(|(k, _)| {
            !k.starts_with("AWS_")
                || matches!(
                    *k,
                    "AWS_CONFIG_FILE" | "AWS_SHARED_CREDENTIALS_FILE" | "AWS_EC2_METADATA_DISABLED"
                )
        })
        .collect();
    let run = |args: &[&str]| {
        let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_ssmtui"))
            .env_clear()
            .envs(vars.clone())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = run(&["list", "--all-profiles", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    let count = |profile: &str| rows.iter().filter(|r| r["profile"] == profile).count();
    assert_eq!(count("dev-admin"), env.sb().state().world().instances.len());
    assert_eq!(count("prod-admin"), 12);
    assert_eq!(count("old-admin"), 0);
    for r in rows {
        assert_eq!(r["account"], "123456789012", "{r}");
        assert_eq!(r["region"], region.as_str(), "{r}");
        assert!(r["id"].as_str().unwrap().starts_with("i-"), "{r}");
    }
    // The broken profile is one line with its reason; the others listed.
    let line = err
        .lines()
        .find(|l| l.starts_with("ssmtui: old-admin/"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("connection was refused"), "{line}");

    // Globs and explicit regions; the table shows where each row lives.
    let (code, out, err) = run(&["list", "--profiles", "prod-*", "--regions", &region]);
    assert_eq!(code, Some(0), "{err}");
    let header = out.lines().next().unwrap();
    assert!(header.starts_with("PROFILE"), "{out}");
    assert!(
        header.contains("ACCOUNT") && header.contains("REGION"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 13, "{out}");
    assert!(
        out.lines().skip(1).all(|l| l.starts_with("prod-admin")),
        "{out}"
    );

    // Only broken profiles: an error, with each failure said.
    let (code, _, err) = run(&["list", "--profiles", "old-admin"]);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains("no profile of the fleet could be listed"),
        "{err}"
    );
    // A glob that matches nothing is a usage error.
    let (code, _, err) = run(&["list", "--profiles", "staging-*"]);
    assert_eq!(code, Some(2), "{err}");

    // connect with [fleet]: the target decides the profile, and with it the identity and the
    // class (bob in prod-admin is no-sudo, so the no-sudo document); the audit line says where.
    std::fs::write(
        home.join("config.toml"),
        format!(
            "{ORG_CLASSES}\n[fleet]\nprofiles = [\"dev-admin\", \"prod-admin\", \"old-admin\"]\n"
        ),
    )
    .unwrap();
    let names = |sb: &ssmtui::sandbox::RunningSandbox| -> Vec<(String, bool)> {
        sb.state()
            .world()
            .instances
            .iter()
            .map(|i| {
                let reachable = i.connected()
                    && i.platform_type == PlatformType::Linux
                    && matches!(i.environment(), Some("dev" | "staging"));
                (i.tag("Name").unwrap_or_default().to_owned(), reachable)
            })
            .collect()
    };
    let first_names = names(env.sb());
    let second_names = names(&second);
    let only_second = second_names
        .iter()
        .find(|(n, ok)| *ok && !first_names.iter().any(|(m, _)| m == n))
        .map(|(n, _)| n.clone())
        .expect("an instance only the second sandbox has");
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_ssmtui"))
        .env_clear()
        .envs(vars.clone())
        .args(["connect", &only_second])
        .write_stdin("echo fleet-$((6*7))\n")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "fleet-42");
    let audit = env.audit_lines();
    let last = audit.last().unwrap();
    assert_eq!(last["profile"], "prod-admin", "{last}");
    assert_eq!(last["document"], "SSM-nosudo", "{last}");
    assert_eq!(last["class"], "no-sudo", "{last}");
    // A Name both have is ambiguous across the fleet, each place listed.
    let (both, _) = second_names
        .iter()
        .find(|(n, _)| !n.is_empty() && first_names.iter().any(|(m, _)| m == n))
        .expect("a Name both sandboxes have");
    let (code, _, err) = run(&["connect", both]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("in dev-admin/") && err.contains("in prod-admin/"),
        "{err}"
    );
    env.block_on(second.shutdown());
}
