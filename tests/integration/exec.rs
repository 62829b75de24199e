//! `ssmtui exec` through the real binary against the sandbox (agent paced like the real one):
//! the command's exit status and output, stdin, `--all` with a failing instance, JSON, the
//! Windows refusal and the audit lines.

use crate::common::sandbox::{SandboxEnv, faithful};

use serde_json::Value;
use ssmtui::sandbox::PlatformType;

const CLASSES: &str = r#"
[classes.sudo]
document = "SSM-sudo"
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*"]
"#;

/// `ssmtui exec ARGS…` as alice with `stdin`: exit code, stdout, stderr.
fn exec(env: &SandboxEnv, args: &[&str], stdin: &str) -> (i32, String, String) {
    let out = env
        .cmd("alice")
        .arg("exec")
        .args(args)
        .write_stdin(stdin)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exec_returns_the_commands_status_output_and_stdin() {
    let env = SandboxEnv::blocking(CLASSES, faithful());
    let name = env.linux_name();
    let (code, out, err) = exec(&env, &[&name, "--", "echo", "hello", "two  words"], "");
    assert_eq!((code, out.as_str()), (0, "hello two  words\n"), "{err}");
    for (command, want) in [
        (vec!["false"], 1),
        (vec!["sh", "-c", "exit 7"], 7),
        (vec!["sh", "-c", "kill -TERM $$"], 128 + 15),
    ] {
        let mut args = vec![name.as_str(), "--"];
        args.extend(command.iter().copied());
        let (code, _, err) = exec(&env, &args, "");
        assert_eq!(code, want, "{command:?}: {err}");
    }
    // stdin reaches the command, byte for byte, and only the command.
    let (code, out, err) = exec(&env, &[&name, "--", "wc", "-l"], "a\nb\nc\n");
    assert_eq!((code, out.trim()), (0, "3"), "{err}");
    let input = "no newline at the end, and a quote ' and \\ too";
    let (code, out, err) = exec(&env, &[&name, "--", "sha256sum"], input);
    assert_eq!(code, 0, "{err}");
    let digest: String = <sha2::Sha256 as sha2::Digest>::digest(input.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(out, format!("{digest}  -\n"));
    // Every session is audited as exec, with the class document.
    let audit = env.audit_lines();
    assert_eq!(audit.len(), 2 * 6, "{audit:#?}");
    for line in &audit {
        assert_eq!(line["kind"], "exec", "{line}");
        assert_eq!(line["document"], "SSM-sudo", "{line}");
    }
}

#[test]
fn exec_all_runs_everywhere_and_reports_the_one_that_failed() {
    let env = SandboxEnv::blocking(CLASSES, faithful());
    // Every connectable instance of one environment; one of them is marked to fail.
    let world = env.sb().state().world();
    let mut dev: Vec<_> = world
        .instances
        .iter()
        .filter(|i| i.connected() && i.environment() == Some("dev"))
        .cloned()
        .collect();
    drop(world);
    dev.sort_by(|a, b| a.tag("Name").cmp(&b.tag("Name")));
    let linux: Vec<_> = dev
        .iter()
        .filter(|i| i.platform_type == PlatformType::Linux)
        .collect();
    assert!(linux.len() >= 3, "the seeded world has dev instances");
    let marked = linux[1];
    let home = env.home.path().join("homes").join(&marked.id);
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("fail-here"), "").unwrap();
    let command = ["--", "sh", "-c", "test ! -e fail-here && echo ok"];

    let mut args = vec!["Environment=dev", "--all", "--json"];
    args.extend(command);
    let (code, out, err) = exec(&env, &args, "");
    assert_eq!(code, 6, "{err}");
    let results: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), dev.len(), "{out}");
    for (r, i) in results.iter().zip(&dev) {
        assert_eq!(r["id"], i.id.as_str(), "{r}");
        assert_eq!(r["name"], i.tag("Name").unwrap(), "{r}");
        if i.platform_type == PlatformType::Windows {
            assert!(r["error"].as_str().unwrap().contains("Windows"), "{r}");
        } else if i.id == marked.id {
            assert_eq!(
                (r["status"].as_i64(), r["stdout"].as_str()),
                (Some(1), Some(""))
            );
        } else {
            assert_eq!(
                (r["status"].as_i64(), r["stdout"].as_str()),
                (Some(0), Some("ok\n"))
            );
        }
    }
    assert!(err.contains("failed:") && err.contains(&marked.id), "{err}");

    // Without --json: each line carries the instance's Name.
    let mut args = vec!["Environment=dev", "--all"];
    args.extend(command);
    let (code, out, _) = exec(&env, &args, "");
    assert_eq!(code, 6);
    for i in &linux {
        let name = i.tag("Name").unwrap();
        let ok = out
            .lines()
            .any(|l| l.starts_with(name) && l.ends_with(" | ok"));
        assert_eq!(ok, i.id != marked.id, "{name}:\n{out}");
    }
    let sessions = 2 * linux.len();
    assert_eq!(
        env.audit_lines().len(),
        2 * sessions,
        "one start and end per session"
    );
}

#[test]
fn exec_refuses_a_windows_target_and_needs_a_command() {
    let env = SandboxEnv::blocking(CLASSES, faithful());
    let windows = env.find(|i| i.platform_type == PlatformType::Windows);
    assert!(windows.connected(), "the seeded Windows host is online");
    let (code, _, err) = exec(&env, &[&windows.id, "--", "true"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Windows instance"), "{err}");
    let name = env.linux_name();
    let (code, _, err) = exec(&env, &[&name], "");
    assert_eq!(code, 2, "{err}");
    assert!(env.audit_lines().is_empty(), "no session was started");
}
