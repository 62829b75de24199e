//! The command line through the real binary: help text, usage errors, `config` and
//! `completions`, with exit codes and exact messages.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::Path;

use assert_cmd::Command;
use clap::CommandFactory;

/// The binary with a clean, isolated environment: no user config, no AWS or ssmtui variables.
fn ssmtui(home: &Path) -> Command {
    let mut cmd = Command::cargo_bin("ssmtui").unwrap();
    cmd.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SSMTUI_CONFIG_DIR", home.join("config"))
        .env("SSMTUI_STATE_DIR", home.join("state"));
    cmd
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn clap_definition_is_consistent() {
    ssmtui::cli::Cli::command().debug_assert();
}

#[test]
fn help_snapshots() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["config", "--help"],
        &["config", "check", "--help"],
        &["config", "path", "--help"],
        &["completions", "--help"],
        &["connect", "--help"],
        &["exec", "--help"],
        &["cp", "--help"],
        &["list", "--help"],
        &["forward", "--help"],
        &["proxy", "--help"],
        &["debug", "--help"],
        &["sandbox", "--help"],
        &["sessions", "--help"],
        &["doctor", "--help"],
        &["demo", "--help"],
    ] {
        let out = ssmtui(home.path()).args(args).assert().success();
        let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        let name = format!("help_{}", args[..args.len() - 1].join("_"));
        insta::assert_snapshot!(name.trim_end_matches('_').to_owned(), text);
    }
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().unwrap();
    ssmtui(home.path())
        .arg("bogus")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("unrecognized subcommand 'bogus'"));
    // Without a subcommand the TUI opens, which needs a terminal; tests have none.
    ssmtui(home.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "error: the interactive UI needs a terminal on stdin and stdout",
        ));
    ssmtui(home.path())
        .args(["completions", "tcsh"])
        .assert()
        .code(2);
}

#[test]
fn config_check_accepts_valid_files_and_the_example() {
    let home = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    ssmtui(home.path())
        .args(["config", "check"])
        .arg(&example)
        .assert()
        .success()
        .stdout(format!("ok: \"{}\" is valid\n", example.display()));

    let file = home.path().join("ok.toml");
    std::fs::write(
        &file,
        "[aws]\nregion = \"eu-west-1\"\n[ui]\ntheme = \"mono\"\n",
    )
    .unwrap();
    ssmtui(home.path())
        .args(["config", "check"])
        .arg(&file)
        .assert()
        .success();

    // No file at the default location is fine: built-in defaults.
    ssmtui(home.path())
        .args(["config", "check"])
        .assert()
        .success()
        .stdout(predicates::str::contains("using built-in defaults"));
}

fn check_fails(contents: &str, expected_stderr: &str) {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("bad.toml");
    std::fs::write(&file, contents).unwrap();
    let out = ssmtui(home.path())
        .args(["config", "check"])
        .arg(&file)
        .assert()
        .code(2);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    let expected = expected_stderr.replace("FILE", &file.display().to_string());
    assert_eq!(stderr, expected);
}

#[test]
fn config_check_unknown_key() {
    check_fails(
        "[ui]\ntheme = \"mono\"\ncolour = \"red\"\n",
        "error: config file \"FILE\" is invalid at line 3, column 1: unknown field `colour`, expected one of `theme`, `columns`, `unreachable`, `refresh_seconds`, `reason_required_tags`, `always_ask_reason`, `keymap`\n\
         hint: remove the key or fix its spelling\n\
         hint: every key is documented in config.example.toml (README, \"Configuration\")\n",
    );
}

#[test]
fn config_check_wrong_type() {
    check_fails(
        "[aws]\ncall_timeout_seconds = \"soon\"\n",
        "error: config file \"FILE\" is invalid at line 2, column 24: invalid type: string \"soon\", expected u64\n\
         hint: the value has the wrong type for this key\n\
         hint: every key is documented in config.example.toml (README, \"Configuration\")\n",
    );
}

#[test]
fn config_check_bad_toml() {
    check_fails(
        "[ui\ntheme = \"mono\"\n",
        "error: config file \"FILE\" is invalid at line 1, column 4: unclosed table, expected `]`\n\
         hint: every key is documented in config.example.toml (README, \"Configuration\")\n",
    );
}

#[test]
fn explicit_config_that_fails_is_fatal() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("missing.toml");
    ssmtui(home.path())
        .arg("--config")
        .arg(&missing)
        .args(["config", "check"])
        .assert()
        .code(2)
        .stderr(format!(
            "error: config file \"{}\" does not exist\nhint: create the file, or point --config / SSMTUI_CONFIG at an existing one\n",
            missing.display()
        ));
    // The environment variable is an explicit choice too.
    ssmtui(home.path())
        .env("SSMTUI_CONFIG", &missing)
        .args(["config", "check"])
        .assert()
        .code(2);
    // A broken default file is also an error (it exists, so the user meant it).
    std::fs::create_dir_all(home.path().join("config")).unwrap();
    std::fs::write(home.path().join("config/config.toml"), "nonsense").unwrap();
    ssmtui(home.path())
        .args(["config", "check"])
        .assert()
        .code(2);
}

#[test]
fn config_path_lists_every_location() {
    let home = tempfile::tempdir().unwrap();
    let text = stdout_of(ssmtui(home.path()).args(["config", "path"]));
    let h = home.path().display();
    assert_eq!(
        text,
        format!(
            "config file: {h}/config/config.toml (does not exist)\n\
             drop-ins:    {h}/config/config.d/*.toml (none)\n\
             config dir:  {h}/config\n\
             state dir:   {h}/state\n\
             log dir:     {h}/state/logs\n\
             audit log:   {h}/state/audit.jsonl\n"
        )
    );
    let file = home.path().join("c.toml");
    std::fs::write(&file, "[audit]\npath = \"/var/log/ssmtui-audit.jsonl\"\n").unwrap();
    let text = stdout_of(
        ssmtui(home.path())
            .env("SSMTUI_CONFIG", &file)
            .args(["config", "path"]),
    );
    assert!(
        text.starts_with(&format!("config file: {}\n", file.display())),
        "{text}"
    );
    assert!(
        text.ends_with("audit log:   /var/log/ssmtui-audit.jsonl\n"),
        "{text}"
    );
}

#[test]
fn completions_for_each_shell() {
    let home = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F _ssmtui"),
        ("zsh", "#compdef ssmtui"),
        ("fish", "complete -c ssmtui"),
    ] {
        let text = stdout_of(ssmtui(home.path()).args(["completions", shell]));
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(text.contains("config"), "{shell} completes subcommands");
        // Flags of the newer commands, too (generated from the same clap definitions).
        for flag in ["parallel", "no-stdin", "recursive"] {
            assert!(text.contains(flag), "{shell} completes {flag}");
        }
    }
}

#[test]
fn closed_stdout_is_not_an_error() {
    // The reader is gone before we write (as with `ssmtui list | head -1` on a long list):
    // the write fails with EPIPE, which must be a quiet success, not an error or a panic.
    let home = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("ssmtui");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; (sleep 0.3; exec '{}' completions bash) | true",
            bin.display()
        ))
        .env("SSMTUI_CONFIG_DIR", home.path())
        .env("SSMTUI_STATE_DIR", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn drop_ins_merge_in_file_name_order_and_are_listed() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let dir = config.join("config.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(config.join("config.toml"), "[ui]\ntheme = \"mono\"\n").unwrap();
    // The team ships a class; a personal file later adds a forward and a reason default.
    std::fs::write(
        dir.join("10-team.toml"),
        "[classes.sudo]\ndocument = \"SSM-sudo\"\nprincipals = [\"*/alice\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("20-me.toml"),
        "[classes.sudo]\ndefault_reason = \"on call\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("README"), "not toml, ignored").unwrap();
    let d = dir.display();
    ssmtui(home.path())
        .args(["config", "check"])
        .assert()
        .success()
        .stdout(format!(
            "ok: \"{}\" is valid\nok: merged drop-in \"{d}/10-team.toml\"\nok: merged drop-in \"{d}/20-me.toml\"\n",
            config.join("config.toml").display()
        ));
    let text = stdout_of(ssmtui(home.path()).args(["config", "path"]));
    assert!(
        text.contains(&format!(
            "drop-in:     {d}/10-team.toml\ndrop-in:     {d}/20-me.toml\n"
        )),
        "{text}"
    );
    // An error in a drop-in names that file and its line.
    std::fs::write(dir.join("30-bad.toml"), "[ui]\n\ncolour = 1\n").unwrap();
    ssmtui(home.path())
        .args(["config", "check"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(format!(
            "config file \"{d}/30-bad.toml\" is invalid at line 3"
        )));
}

#[test]
fn class_config_errors_have_hints() {
    let home = tempfile::tempdir().unwrap();
    for (text, message, hint) in [
        (
            "[classes.sudo]\ndocument = \"AWS-StartPortForwardingSession\"\nprincipals = [\"*/a\"]\n",
            "classes.sudo.document = \"AWS-StartPortForwardingSession\" is a port-forwarding document, not a shell session document",
            "hint: set document to the class's Standard_Stream session document",
        ),
        (
            "[classes.a]\ndocument = \"SSM-a\"\nprincipals = [\"arn:aws:sts::*:assumed-role/X/*\"]\n[classes.b]\ndocument = \"SSM-b\"\nprincipals = [\"arn:aws:sts::*:assumed-role/X/*\"]\n",
            "the principals pattern \"arn:aws:sts::*:assumed-role/X/*\" appears in both classes.a and classes.b",
            "hint: a principal must belong to exactly one class",
        ),
        (
            "[classes.a]\ndocument = \"SSM-a\"\nprincipals = [\"\"]\n",
            "classes.a.principals has the pattern \"\", which is empty",
            "hint: write ARN glob patterns",
        ),
        (
            "[classes.a]\ndocument = \"SSM-a\"\nprincipals = [\"arn:aws:sts::* alice\"]\n",
            "which contains whitespace, which no ARN does",
            "hint: write ARN glob patterns",
        ),
        (
            "[classes.a]\ndocument = \"SSM-a\"\nprincipals = [\"*/a\"]\nreason_required_tags = [\"prod\"]\n",
            "classes.a.reason_required_tags has \"prod\", which is not Key=Value",
            "hint: write tag rules as \"Environment=prod\"",
        ),
    ] {
        let file = home.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let out = ssmtui(home.path())
            .args(["config", "check"])
            .arg(&file)
            .assert()
            .code(2);
        let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(err.contains(message), "{err}");
        assert!(err.contains(hint), "{err}");
    }
}

/// The benchmark harness cannot rot: its fastest group runs through the binary and writes a
/// report with figures, commit and machine. Timings are never asserted.
#[test]
fn bench_quick_codec_writes_a_report() {
    let home = tempfile::tempdir().unwrap();
    let json = home.path().join("bench.json");
    let out = ssmtui(home.path())
        .args(["bench", "--quick", "--only", "codec", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("codec.frame"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["mode"], "quick");
    assert!(report["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(report["machine"]["cores"].as_u64().is_some_and(|c| c >= 1));
    let names: Vec<&str> = report["figures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["codec.frame", "codec.kms", "codec.session"]);
    assert!(report["skipped"].as_array().unwrap().is_empty());
}
