//! Access classes, reasons, the audit log, `sessions` and `doctor` through the real binary
//! against an in-process sandbox (the shared sandbox environment of tests/integration/common), plus the
//! StartSession denial explanation through the SDK directly.
//!
//! Sessions here run for real against the sandbox agent: `connect` gets an empty script on
//! stdin (pipe mode), so each shell starts, runs nothing and exits 0, and the audit log has
//! its start and end lines with the status `exited`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use crate::common::sandbox::{SandboxEnv, fast};

use serde_json::Value;

const CLASSES: &str = r#"
[classes.sudo]
document = "SSM-sudo"
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*"]
reason_required_tags = ["Environment=prod"]
[classes.no-sudo]
document = "SSM-nosudo"
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_Developer_*/*"]
scope = { Environment = ["staging", "dev"] }
"#;

fn setup(config: &str) -> SandboxEnv {
    SandboxEnv::blocking(config, fast())
}

/// The raw SDK client, for what ssmtui itself does not do.
fn ssm(env: &SandboxEnv, who: &str) -> aws_sdk_ssm::Client {
    let conf = aws_sdk_ssm::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(env.sb().endpoint_url())
        .region(aws_config::Region::new(
            env.sb().state().region().to_owned(),
        ))
        .credentials_provider(aws_credential_types::Credentials::new(
            who, "x", None, None, "test",
        ))
        .build();
    aws_sdk_ssm::Client::from_conf(conf)
}

/// Starts a session through the SDK (it stays active: nobody opens its data channel).
fn start_session(env: &SandboxEnv, who: &str, target: &str, document: &str) -> String {
    let client = ssm(env, who);
    env.block_on(
        client
            .start_session()
            .target(target)
            .document_name(document)
            .send(),
    )
    .unwrap()
    .session_id()
    .unwrap()
    .to_owned()
}

fn stderr(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(out.get_output().stderr.clone()).unwrap()
}

fn stdout_json(out: &assert_cmd::assert::Assert) -> Value {
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

/// A connect that ran its (empty) script on the instance and exited 0.
fn connected(out: &assert_cmd::assert::Assert) {
    let code = out.get_output().status.code();
    assert_eq!(code, Some(0), "{}", stderr(out));
}

#[test]
fn alice_uses_sudo_and_the_audit_log_has_start_and_end_without_token() {
    let env = setup(CLASSES);
    let target = env.online("prod");
    let out = env
        .cmd("alice")
        .args(["connect", &target, "--reason", "INC-42 disk full"])
        .assert();
    connected(&out);
    let lines = env.audit_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (start, end) = (&lines[0], &lines[1]);
    assert_eq!(start["event"], "start");
    assert_eq!(end["event"], "end");
    assert_eq!(start["session_id"], end["session_id"]);
    assert!(start["session_id"].as_str().unwrap().starts_with("alice-"));
    assert_eq!(start["class"], "sudo");
    assert_eq!(start["document"], "SSM-sudo");
    assert_eq!(start["kind"], "shell");
    assert_eq!(start["target_id"], target.as_str());
    assert!(start["target_name"].as_str().unwrap().starts_with("prod-"));
    assert_eq!(start["reason"], "INC-42 disk full");
    assert_eq!(start["account"], "123456789012");
    assert_eq!(start["region"], "us-east-1");
    assert!(start["identity_arn"].as_str().unwrap().ends_with("/alice"));
    assert!(end["ended"].is_string());
    assert_eq!(end["status"], "exited");
    assert_eq!(end["exit_code"], 0);
    // AWS saw the same session with the reason, and it is not left dangling.
    let session = env
        .sb()
        .state()
        .session(start["session_id"].as_str().unwrap())
        .unwrap();
    assert_eq!(session.reason.as_deref(), Some("INC-42 disk full"));
    assert_eq!(session.document.name, "SSM-sudo");
    assert!(!session.status.is_active());

    // `sessions --local` shows it (one row per session) as a table and as JSON.
    let out = env
        .cmd("alice")
        .args(["sessions", "--local"])
        .assert()
        .success();
    let table = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(table.starts_with("STARTED"), "{table}");
    assert!(table.contains("INC-42 disk full"), "{table}");
    let out = env
        .cmd("alice")
        .args(["sessions", "--local", "--json"])
        .assert()
        .success();
    let json = stdout_json(&out);
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["event"], "end");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.home.path().join("state/audit.jsonl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn bob_gets_nosudo_and_never_sudo() {
    let env = setup(CLASSES);
    let dev = env.online("dev");
    connected(&env.cmd("bob").args(["connect", &dev]).assert());
    let lines = env.audit_lines();
    assert_eq!(lines[0]["document"], "SSM-nosudo");
    assert_eq!(lines[0]["class"], "no-sudo");
    assert!(lines[0]["reason"].is_null());

    // The client refuses before any StartSession.
    let before = env.sb().state().sessions().len();
    let out = env
        .cmd("bob")
        .args(["connect", &dev, "--document", "SSM-sudo"])
        .assert()
        .code(4);
    assert!(stderr(&out).contains("the no-sudo class starts shells with \"SSM-nosudo\" only"));
    assert_eq!(env.sb().state().sessions().len(), before);
}

#[test]
fn a_forced_sudo_session_is_explained() {
    // Without classes, --document is passed through, so the sandbox's IAM decides.
    let env = setup("");
    let dev = env.online("dev");
    let out = env
        .cmd("bob")
        .args(["connect", &dev, "--document", "SSM-sudo"])
        .assert()
        .code(4);
    let err = stderr(&out);
    assert!(
        err.starts_with("error: AWS denied a session on dev-"),
        "{err}"
    );
    assert!(err.contains("with the document \"SSM-sudo\""), "{err}");
    assert!(
        err.contains(
            "hint: AWS said: User: arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Developer_"
        ),
        "{err}"
    );
    assert!(
        err.contains("/bob (no class); document SSM-sudo; target dev-"),
        "{err}"
    );
    assert!(
        err.contains("hint: likely missing permission: ssm:StartSession on arn:aws:ssm:us-east-1:123456789012:document/SSM-sudo"),
        "{err}"
    );
    // Nothing was started, so nothing was audited.
    assert!(env.audit_lines().is_empty());

    // The same through the SDK directly: our error mapping explains the sandbox's denial.
    let client = ssm(&env, "bob");
    let err = env
        .block_on(
            client
                .start_session()
                .target(&dev)
                .document_name("SSM-sudo")
                .send(),
        )
        .unwrap_err();
    let aws = ssmtui::aws::sdk::classify_sdk_error("StartSession", None, 30, err);
    let identity = ssmtui::aws::Identity {
        account: "123456789012".into(),
        arn: ssmtui::sandbox::IDENTITIES[1].arn(),
        user_id: String::new(),
    };
    let instance = ssmtui::aws::Instance {
        id: dev.clone(),
        ..Default::default()
    };
    let explained = ssmtui::access::explain_start_denied(
        aws,
        ssmtui::access::Attempt {
            identity: &identity,
            class: None,
            document: "SSM-sudo",
            instance: &instance,
        },
    );
    let mut text = Vec::new();
    assert_eq!(ssmtui::report::report(&explained, &mut text), 4);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(":document/SSM-sudo (your role may not use this document)"),
        "{text}"
    );
}

#[test]
fn eve_is_told_she_has_no_class() {
    let env = setup(CLASSES);
    let dev = env.online("dev");
    let out = env.cmd("eve").args(["connect", &dev]).assert().code(4);
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "error: your identity \"arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_ReadOnly_"
        ),
        "{err}"
    );
    assert!(err.contains("belongs to no access class"), "{err}");
    assert!(
        err.contains("hint: the configured classes are: no-sudo, sudo"),
        "{err}"
    );
}

#[test]
fn reasons_are_required_for_prod_and_defaults_satisfy_them() {
    let env = setup(CLASSES);
    let prod = env.online("prod");
    let out = env.cmd("alice").args(["connect", &prod]).assert().code(2);
    let err = stderr(&out);
    assert!(
        err.starts_with("error: a reason is required: prod-"),
        "{err}"
    );
    assert!(
        err.contains("is tagged Environment=prod, and the sudo class requires a reason there"),
        "{err}"
    );
    assert!(err.contains("hint: pass --reason"), "{err}");
    assert!(env.sb().state().sessions().is_empty());

    // Not prod: no reason needed.
    let dev = env.online("dev");
    connected(&env.cmd("alice").args(["connect", &dev]).assert());

    // A class default satisfies the rule and is recorded.
    let with_default = CLASSES.replace(
        "reason_required_tags = [\"Environment=prod\"]",
        "reason_required_tags = [\"Environment=prod\"]\ndefault_reason = \"on-call duty\"",
    );
    std::fs::write(env.home.path().join("config.toml"), with_default).unwrap();
    connected(&env.cmd("alice").args(["connect", &prod]).assert());
    let lines = env.audit_lines();
    assert_eq!(lines.last().unwrap()["reason"], "on-call duty");

    // require_reason covers every target.
    let always = CLASSES.replace(
        "reason_required_tags = [\"Environment=prod\"]",
        "require_reason = true",
    );
    std::fs::write(env.home.path().join("config.toml"), always).unwrap();
    let out = env.cmd("alice").args(["connect", &dev]).assert().code(2);
    assert!(stderr(&out).contains("the sudo class requires a reason for every session"));
}

#[test]
fn discovery_needs_a_choice_and_remembers_it_per_profile() {
    let env = setup("");
    let dev = env.online("dev");
    let out = env.cmd("alice").args(["connect", &dev]).assert().code(2);
    let err = stderr(&out);
    assert!(
        err.starts_with("error: no access class is configured and none has been chosen"),
        "{err}"
    );
    assert!(
        err.contains("hint: the account's tagged documents: no-sudo (SSM-nosudo), sudo (SSM-sudo)"),
        "{err}"
    );
    // Never the default document.
    assert!(env.sb().state().sessions().is_empty());

    // A choice remembered for the default profile (as the terminal prompt would store it).
    let state = env.home.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("class-choice.json"),
        r#"{"profiles":{"default":{"class":"sudo","document":"SSM-sudo"}}}"#,
    )
    .unwrap();
    connected(&env.cmd("alice").args(["connect", &dev]).assert());
    let lines = env.audit_lines();
    assert_eq!(lines[0]["class"], "sudo");
    assert_eq!(lines[0]["document"], "SSM-sudo");
    // Another profile has no choice yet.
    let out = env
        .cmd("alice")
        .env("AWS_PROFILE", "other")
        .env("AWS_CONFIG_FILE", env.home.path().join("aws-config-other"))
        .args(["connect", &dev])
        .assert();
    let code = out.get_output().status.code();
    // (The profile does not exist in the AWS config, so the SDK may refuse it first.)
    assert!(matches!(code, Some(2 | 4)), "{code:?} {}", stderr(&out));

    // Nothing tagged at all: a clear error, no silent fallback.
    for d in &mut env.sb().state().world_mut().documents {
        d.tags.clear();
    }
    std::fs::remove_file(state.join("class-choice.json")).unwrap();
    let out = env.cmd("alice").args(["connect", &dev]).assert().code(2);
    assert!(stderr(&out).contains("no session document in the account is tagged ssmtui:class"));
}

#[test]
fn an_unknown_class_document_is_a_configuration_error() {
    let env = setup(&CLASSES.replace("\"SSM-sudo\"", "\"SSM-missing\""));
    let dev = env.online("dev");
    let out = env.cmd("alice").args(["connect", &dev]).assert().code(2);
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "error: the sudo class's session document \"SSM-missing\" does not exist in this account and region"
        ),
        "{err}"
    );
    assert!(
        err.contains("`ssmtui doctor` checks every class document"),
        "{err}"
    );
}

#[test]
fn sessions_lists_own_and_all_and_terminates_only_own() {
    let env = setup(CLASSES);
    let dev = env.online("dev");
    let mine = start_session(&env, "alice", &dev, "SSM-sudo");
    let theirs = start_session(&env, "bob", &dev, "SSM-nosudo");

    let out = env
        .cmd("alice")
        .args(["sessions", "--json"])
        .assert()
        .success();
    let json = stdout_json(&out);
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&json["active"]), std::slice::from_ref(&mine));
    assert!(json["history"].as_array().unwrap().is_empty());
    let out = env
        .cmd("alice")
        .args(["sessions", "--json", "--all"])
        .assert()
        .success();
    let all = ids(&stdout_json(&out)["active"]);
    assert!(all.contains(&mine) && all.contains(&theirs), "{all:?}");

    let out = env
        .cmd("alice")
        .args(["sessions", "--terminate", &theirs])
        .assert()
        .code(4);
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "error: AWS refused to terminate session \"{theirs}\""
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: you can terminate only your own sessions"),
        "{err}"
    );

    env.cmd("alice")
        .args(["sessions", "--terminate", &mine])
        .assert()
        .success()
        .stdout(format!("terminated {mine}\n"));
    let out = env
        .cmd("alice")
        .args(["sessions", "--json"])
        .assert()
        .success();
    let json = stdout_json(&out);
    assert!(json["active"].as_array().unwrap().is_empty());
    assert_eq!(ids(&json["history"]), std::slice::from_ref(&mine));
    assert_eq!(json["history"][0]["status"], "Terminated");

    let out = env.cmd("alice").args(["sessions"]).assert().success();
    let table = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(table.starts_with("STATE"), "{table}");
    assert!(table.contains(&format!("history  {mine}")), "{table}");
}

fn doctor(env: &SandboxEnv, who: &str) -> (Option<i32>, Value) {
    let out = env.cmd(who).args(["doctor", "--json"]).assert();
    let code = out.get_output().status.code();
    (code, stdout_json(&out))
}

fn named(report: &Value, status: &str) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn doctor_passes_the_default_sandbox_with_explained_warnings() {
    let env = setup(CLASSES);
    let (code, report) = doctor(&env, "alice");
    assert_eq!(named(&report, "fail"), Vec::<String>::new(), "{report:#}");
    assert_eq!(code, Some(0));
    // Warnings only where the sandbox cannot be checked, and for the preferences document.
    let warned = named(&report, "warn");
    for w in &warned {
        assert!(
            w == "endpoint ssmmessages"
                || w.starts_with("SSM-SessionManagerRunShell: ")
                || w.starts_with("kms ")
                // A fresh sandbox has no ended session whose transcript could be read.
                || w.ends_with(": transcripts"),
            "unexpected warning {w}: {report:#}"
        );
    }
    assert!(warned.contains(&"endpoint ssmmessages".to_owned()));
    for pass in [
        "config",
        "region",
        "credentials",
        "endpoint ssm",
        "endpoint ec2",
        "SSM-sudo: run-as",
        "SSM-nosudo: logging",
        "log directory",
        "audit log",
    ] {
        assert!(
            named(&report, "pass").contains(&pass.to_owned()),
            "{pass}: {report:#}"
        );
    }
    // The text form has a summary line.
    let out = env.cmd("alice").arg("doctor").assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.lines().last().unwrap().ends_with("0 failed"), "{text}");
}

#[test]
fn doctor_fails_exactly_on_a_weakened_document() {
    let env = setup(CLASSES);
    {
        let mut world = env.sb().state().world_mut();
        let doc = world
            .documents
            .iter_mut()
            .find(|d| d.name == "SSM-sudo")
            .unwrap();
        let mut json: Value = serde_json::from_str(&doc.content).unwrap();
        let inputs = &mut json["inputs"];
        inputs["s3EncryptionEnabled"] = Value::Bool(false);
        inputs["cloudWatchEncryptionEnabled"] = Value::Bool(false);
        inputs["runAsEnabled"] = Value::Bool(false);
        inputs["idleSessionTimeout"] = Value::String("60".into());
        doc.content = json.to_string();
    }
    let (code, report) = doctor(&env, "alice");
    assert_eq!(
        named(&report, "fail"),
        [
            "SSM-sudo: run-as",
            "SSM-sudo: logging",
            "SSM-sudo: idle timeout"
        ],
        "{report:#}"
    );
    assert_eq!(code, Some(1));
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .all(|c| c["hint"].is_string())
    );
}

#[test]
fn doctor_exit_codes_for_credentials_and_config() {
    let env = setup(CLASSES);
    let (code, report) = doctor(&env, "mallory");
    assert_eq!(named(&report, "fail"), ["credentials"], "{report:#}");
    assert_eq!(code, Some(4));

    std::fs::write(env.home.path().join("config.toml"), "[ui]\ncolour = 1\n").unwrap();
    let (code, report) = doctor(&env, "alice");
    assert_eq!(named(&report, "fail"), ["config"], "{report:#}");
    assert_eq!(code, Some(2));
}

/// Two classes whose (different) principal patterns both match alice: which document applies
/// is undecidable, so both front ends refuse with the same words — `connect` as its error,
/// the TUI as the reason a shell is refused (the TUI used to take the first class silently).
#[test]
fn an_identity_in_two_classes_is_refused_alike_by_connect_and_the_tui() {
    const TWO: &str = r#"
[classes.sudo]
document = "SSM-sudo"
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*"]
[classes.named]
document = "SSM-nosudo"
principals = ["*/alice"]
"#;
    let env = setup(TWO);
    let dev = env.online("dev");
    let out = env.cmd("alice").args(["connect", &dev]).assert().code(2);
    let err = stderr(&out);
    let first = err.lines().next().unwrap();
    let message = first.strip_prefix("error: ").unwrap();
    assert!(
        message.ends_with("matches several access classes: named, sudo"),
        "{err}"
    );
    assert!(env.sb().state().sessions().is_empty());

    // The TUI, with the same config and the same identity and instance from the sandbox.
    let config = ssmtui::config::Config::parse(TWO, std::path::Path::new("t.toml")).unwrap();
    let api = env.block_on(env.api("alice"));
    let (identity, instances) = env.block_on(async {
        use ssmtui::aws::SsmApi;
        let identity = api.caller_identity().await.unwrap();
        let instances = api.list_instances(&[]).await.unwrap();
        (identity, instances)
    });
    let instance = instances.into_iter().find(|i| i.id == dev).unwrap();
    let mut app = ssmtui::app::App::new(ssmtui::app::AppOptions {
        ui: config.ui.clone(),
        classes: config.classes.clone(),
        remembered: std::collections::BTreeMap::new(),
        keymap: ssmtui::config::keymap::Keymap::defaults().unwrap(),
        profile: None,
        region: None,
        readonly: false,
        profiles: Vec::new(),
        aliases: config.aliases.clone(),
        forwards: Vec::new(),
        fleet: Vec::new(),
        fleet_aliases: std::collections::BTreeMap::new(),
    });
    let _ = app.start();
    app.update(ssmtui::app::Action::IdentityLoaded {
        generation: 0,
        result: Ok(identity),
    });
    app.update(ssmtui::app::Action::InstancesPage {
        generation: 0,
        result: Ok(vec![instance]),
        done: true,
    });
    assert_eq!(app.shell_refusal().as_deref(), Some(message));
}
