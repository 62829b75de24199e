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

/// Instances of one pair of the fleet sandbox: (id, Name, Environment, reachable Linux).
fn pair_instances(
    fleet: &ssmtui::sandbox::fleet::RunningFleet,
    account: usize,
    region: &str,
) -> Vec<(String, String, String, bool)> {
    fleet
        .member(account, region)
        .unwrap()
        .state()
        .world()
        .instances
        .iter()
        .map(|i| {
            (
                i.id.clone(),
                i.tag("Name").unwrap_or_default().to_owned(),
                i.environment().unwrap_or_default().to_owned(),
                i.connected() && i.platform_type == PlatformType::Linux,
            )
        })
        .collect()
}

#[test]
fn the_multi_account_sandbox_is_one_fleet_with_each_accounts_class() {
    use ssmtui::sandbox::fleet::{FleetSandboxConfig, RunningFleet};
    let env = SandboxEnv::blocking("", fast());
    let regions = ["eu-west-1".to_owned(), "us-east-1".to_owned()];
    let fleet = env
        .block_on(RunningFleet::start(FleetSandboxConfig {
            accounts: 3,
            regions: regions.to_vec(),
            base: SandboxConfig {
                instances: 12,
                ..fast()
            },
        }))
        .unwrap();
    let home = env.home.path();
    // The printed profile file, signed in as bob: no-sudo in prod, sudo in dev.
    fleet.write_profiles(home, "bob").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut aws_config = std::fs::read_to_string(home.join("aws-config")).unwrap();
    aws_config.push_str(&format!(
        "[profile sandbox-gone]\nregion = eu-west-1\nendpoint_url = http://127.0.0.1:{closed}\n"
    ));
    std::fs::write(home.join("aws-config"), aws_config).unwrap();
    let mut creds = std::fs::read_to_string(home.join("aws-credentials")).unwrap();
    creds.push_str("[sandbox-gone]\naws_access_key_id = bob\naws_secret_access_key = x\n");
    std::fs::write(home.join("aws-credentials"), creds).unwrap();
    // The organisation's classes, the sudo one allowed to forward ports.
    let classes = ORG_CLASSES.replace(
        "document = \"SSM-sudo\"",
        "document = \"SSM-sudo\"\nforward_documents = [\"AWS-StartPortForwardingSession\"]",
    );
    std::fs::write(
        home.join("config.toml"),
        format!("{classes}\n{}", fleet.fleet_toml()),
    )
    .unwrap();
    let vars: Vec<(&str, OsString)> = env
        .env("")
        .into_iter()
        .filter(|(k, _)| {
            !k.starts_with("AWS_")
                || matches!(
                    *k,
                    "AWS_CONFIG_FILE" | "AWS_SHARED_CREDENTIALS_FILE" | "AWS_EC2_METADATA_DISABLED"
                )
        })
        .collect();
    let run = |args: &[&str], stdin: &str| {
        let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_ssmtui"))
            .env_clear()
            .envs(vars.clone())
            .args(args)
            .write_stdin(stdin.to_owned())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Every account in every region, plus a region no account has enabled: rows carry where
    // they live; the failing pairs are one line each and do not fail the rest.
    let (code, out, err) = run(
        &[
            "list",
            "--profiles",
            "sandbox-*",
            "--regions",
            "eu-west-1,us-east-1,ap-south-1",
            "--json",
        ],
        "",
    );
    assert_eq!(code, Some(0), "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3 * 2 * 12, "{err}");
    for (account, alias) in [
        ("123456789012", "prod"),
        ("210987654321", "dev"),
        ("345678901234", "audit"),
    ] {
        for region in &regions {
            let here: Vec<&Value> = rows
                .iter()
                .filter(|r| r["account"] == account && r["region"] == region.as_str())
                .collect();
            assert_eq!(here.len(), 12, "{account} {region}");
            assert!(here.iter().all(|r| r["account_alias"] == alias), "{here:?}");
            assert!(
                here.iter()
                    .all(|r| r["profile"] == format!("sandbox-{alias}").as_str()),
                "{here:?}"
            );
        }
    }
    // Distinct worlds: no instance id twice.
    let mut ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), rows.len());
    for alias in ["prod", "dev", "audit"] {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("ssmtui: sandbox-{alias}/ap-south-1:")))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(line.contains("invalid"), "{line}");
    }
    assert!(
        err.lines()
            .any(|l| l.starts_with("ssmtui: sandbox-gone/") && l.contains("refused")),
        "{err}"
    );
    // account= and region= terms narrow the listing.
    let (code, out, err) = run(&["list", "account=dev", "region=us-east-1", "--json"], "");
    assert_eq!(code, Some(0), "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 12, "{out}");
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["account"] == "210987654321" && r["region"] == "us-east-1")
    );

    // connect by id goes through the account the instance is in, with bob's class there.
    let dev = pair_instances(&fleet, 1, "us-east-1");
    let (dev_id, _, _, _) = dev
        .iter()
        .find(|(_, _, env, ok)| *ok && env == "prod")
        .expect("a reachable prod-tagged Linux instance in dev");
    // A shell on `id` that prints `marker`; its audit start line.
    let shell = |id: &str, marker: &str| -> Value {
        let (code, out, err) = run(&["connect", id], &format!("echo {marker}-$((6*7))\n"));
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out.trim(), format!("{marker}-42"));
        env.audit_lines()
            .into_iter()
            .rev()
            .find(|l| l["event"] == "start")
            .unwrap()
    };
    let last = shell(dev_id, "dev");
    assert_eq!(last["profile"], "sandbox-dev", "{last}");
    assert_eq!(last["class"], "sudo", "{last}");
    assert_eq!(last["document"], "SSM-sudo", "{last}");
    assert_eq!(last["account"], "210987654321", "{last}");
    assert!(
        last["identity_arn"]
            .as_str()
            .is_some_and(|a| a.contains("::210987654321:")),
        "{last}"
    );
    let prod = pair_instances(&fleet, 0, "eu-west-1");
    let (prod_id, _, _, _) = prod
        .iter()
        .find(|(_, _, env, ok)| *ok && env == "staging")
        .expect("a reachable staging Linux instance in prod");
    let last = shell(prod_id, "prod");
    assert_eq!(last["profile"], "sandbox-prod", "{last}");
    assert_eq!(last["region"], "eu-west-1", "{last}");
    assert_eq!(last["class"], "no-sudo", "{last}");
    assert_eq!(last["document"], "SSM-nosudo", "{last}");

    // A Name in two accounts is ambiguous, each place said; account= and region= pick one.
    // Names bob can reach in audit (class no-sudo there: staging and dev only).
    let names = |account: usize, region: &str| -> Vec<String> {
        pair_instances(&fleet, account, region)
            .into_iter()
            .filter(|(_, name, env, ok)| {
                *ok && !name.is_empty() && matches!(env.as_str(), "staging" | "dev")
            })
            .map(|(_, name, _, _)| name)
            .collect()
    };
    let audit_names: Vec<String> = regions.iter().flat_map(|r| names(2, r)).collect();
    let (shared, dev_region) = regions
        .iter()
        .flat_map(|r| {
            pair_instances(&fleet, 1, r)
                .into_iter()
                .map(move |(_, name, _, ok)| (name, r.clone(), ok))
        })
        .find(|(name, _, ok)| *ok && audit_names.contains(name))
        .map(|(name, region, _)| (name, region))
        .expect("a Name bob reaches in dev and in audit");
    let shared = &shared;
    let (code, _, err) = run(&["connect", shared], "");
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("(account dev, 210987654321)")
            && err.contains("(account audit, 345678901234)"),
        "{err}"
    );
    assert!(err.contains("account="), "{err}");
    let narrowed = format!("{shared} account=dev region={dev_region}");
    let (code, out, err) = run(&["connect", &narrowed], "echo narrowed\n");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "narrowed", "{err}");
    assert_eq!(env.audit_lines().last().unwrap()["profile"], "sandbox-dev");
    // An alias that pins a profile and region goes there, fleet or not.
    std::fs::write(
        home.join("config.toml"),
        format!(
            "{classes}\n{}\n[aliases]\ndevbox = {{ target = \"{shared}\", profile = \"sandbox-dev\", region = \"{dev_region}\" }}\n",
            fleet.fleet_toml()
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["connect", "devbox"], "echo pinned\n");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "pinned", "{err}");
    assert_eq!(env.audit_lines().last().unwrap()["profile"], "sandbox-dev");
    let (code, _, err) = run(&["connect", &format!("{shared} account=nowhere")], "");
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("account=nowhere"), "{err}");

    // exec --all runs in every account that has matches, each session with its own class.
    let before = env.audit_lines().len();
    let (code, out, err) = run(
        &[
            "exec",
            &format!("Name={shared}"),
            "--all",
            "--json",
            "--",
            "echo",
            "hi",
        ],
        "",
    );
    let results: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let audit = env.audit_lines();
    let started: Vec<&Value> = audit[before..]
        .iter()
        .filter(|l| l["event"] == "start")
        .collect();
    assert!(
        started.iter().any(|l| l["profile"] == "sandbox-dev"),
        "{started:?} {err}"
    );
    assert!(
        started.iter().any(|l| l["profile"] == "sandbox-audit"),
        "{started:?} {err}"
    );
    assert!(
        started
            .iter()
            .all(|l| l["class"] == "no-sudo" || l["profile"] == "sandbox-dev"),
        "{started:?}"
    );
    assert_eq!(results.len(), started.len(), "{out}");
    assert_eq!(code, Some(0), "{out}\n{err}");

    // forward finds its target across the fleet too, and goes through that account.
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut sock, _)) = echo.accept() {
            let mut r = sock.try_clone().unwrap();
            let _ = std::io::copy(&mut r, &mut sock);
        }
    });
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ssmtui"))
        .env_clear()
        .envs(vars.clone())
        .args(["forward", dev_id.as_str(), &format!("0:{echo_port}")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .strip_prefix("forwarding ")
        .and_then(|l| l.split_once(" -> "))
        .map(|(a, _)| a.to_owned())
        .unwrap_or_else(|| {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            panic!("{line:?}: {err}")
        });
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut sock, b"through-dev").unwrap();
    let mut back = [0u8; 11];
    std::io::Read::read_exact(&mut sock, &mut back).unwrap();
    assert_eq!(&back, b"through-dev");
    drop(sock);
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let audit = env.audit_lines();
    let forward = audit
        .iter()
        .rev()
        .find(|l| l["kind"] == "forward" && l["event"] == "start")
        .unwrap_or_else(|| panic!("{audit:?}"));
    assert_eq!(forward["profile"], "sandbox-dev", "{forward}");
    assert_eq!(forward["account"], "210987654321", "{forward}");
    assert_eq!(forward["class"], "sudo", "{forward}");
    env.block_on(fleet.shutdown());
}
