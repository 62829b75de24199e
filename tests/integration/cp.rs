//! `ssmtui cp` through the real binary against the sandbox: files both ways byte for byte,
//! stdin/stdout, directories with `-r`, damage detected (sandbox fault `corrupt-every`) with no
//! partial file left, errors, and the audit lines.

use std::path::{Path, PathBuf};

use crate::common::sandbox::{SandboxEnv, faithful, fast};
use ssmtui::sandbox::{Faults, SandboxConfig};

const CLASSES: &str = r#"
[classes.sudo]
document = "SSM-sudo"
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*"]
"#;

/// `ssmtui cp ARGS…` as alice with `stdin`: exit code, stdout, stderr.
fn cp(env: &SandboxEnv, args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let out = env
        .cmd("alice")
        .arg("cp")
        .args(args)
        .write_stdin(stdin.to_vec())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Bytes that are neither text nor compressible.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The instance's home directory in the sandbox (where relative remote paths land).
fn remote_home(env: &SandboxEnv, id: &str) -> PathBuf {
    env.home.path().join("homes").join(id)
}

/// Where a copy test works: a connectable Linux instance, its home directory on the
/// "instance" and a local directory, both created.
struct Places {
    target: ssmtui::sandbox::Instance,
    home: PathBuf,
    local: PathBuf,
}

fn places(env: &SandboxEnv) -> Places {
    let target =
        env.find(|i| i.connected() && i.platform_type == ssmtui::sandbox::PlatformType::Linux);
    let home = remote_home(env, &target.id);
    let local = env.home.path().join("local");
    for dir in [&home, &local] {
        std::fs::create_dir_all(dir).unwrap();
    }
    Places {
        target,
        home,
        local,
    }
}

fn partial_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("ssmtui-partial"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cp_moves_5_mib_both_ways_byte_for_byte() {
    let env = SandboxEnv::blocking(CLASSES, fast());
    let Places { target, local, .. } = places(&env);
    let name = target.tag("Name").unwrap().to_owned();
    let data = random_bytes(5 << 20, 7);
    std::fs::write(local.join("up.bin"), &data).unwrap();

    let up = local.join("up.bin").display().to_string();
    let (code, _, err) = cp(&env, &[&up, &format!("{name}:up.bin")], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(remote_home(&env, &target.id).join("up.bin")).unwrap(),
        data
    );

    let down = local.join("down.bin").display().to_string();
    let (code, _, err) = cp(&env, &[&format!("{name}:up.bin"), &down], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&down).unwrap(), data);
    assert!(partial_files(&local).is_empty());

    // stdin and stdout.
    let text = b"line one\nno newline at the end, a quote ' and a \\ too".to_vec();
    let (code, _, err) = cp(&env, &["-", &format!("{name}:from-stdin.txt")], &text);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cp(&env, &[&format!("{name}:from-stdin.txt"), "-"], b"");
    assert_eq!((code, out), (0, text), "{err}");

    // A directory with -r, there and back.
    let tree = local.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(tree.join("sub/b.bin"), random_bytes(100_000, 9)).unwrap();
    let (code, _, err) = cp(
        &env,
        &["-r", &tree.display().to_string(), &format!("{name}:copies")],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    let there = remote_home(&env, &target.id).join("copies/tree");
    assert_eq!(std::fs::read(there.join("a.txt")).unwrap(), b"alpha\n");
    let back = local.join("back");
    let (code, _, err) = cp(
        &env,
        &[
            "-r",
            &format!("{name}:copies/tree"),
            &back.display().to_string(),
        ],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(back.join("tree/sub/b.bin")).unwrap(),
        random_bytes(100_000, 9)
    );

    // Every copy is its own audited session.
    let audit = env.audit_lines();
    assert_eq!(audit.len(), 2 * 6, "{audit:#?}");
    assert!(audit.iter().all(|l| l["kind"] == "copy"), "{audit:#?}");
}

#[test]
fn damage_on_the_way_is_detected_and_no_partial_file_is_left() {
    let env = SandboxEnv::blocking(
        CLASSES,
        SandboxConfig {
            faults: Faults::parse("corrupt-every=40").unwrap(),
            ..fast()
        },
    );
    let Places {
        target,
        home,
        local,
    } = places(&env);
    let name = target.tag("Name").unwrap().to_owned();
    let data = random_bytes(256 * 1024, 3);
    std::fs::write(home.join("there.bin"), &data).unwrap();

    let down = local.join("down.bin");
    let (code, _, err) = cp(
        &env,
        &[&format!("{name}:there.bin"), &down.display().to_string()],
        b"",
    );
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("arrived damaged"), "{err}");
    assert!(!down.exists() && partial_files(&local).is_empty());

    let up = local.join("up.bin");
    std::fs::write(&up, &data).unwrap();
    let (code, _, err) = cp(
        &env,
        &[&up.display().to_string(), &format!("{name}:up.bin")],
        b"",
    );
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("arrived damaged"), "{err}");
    assert!(
        !home.join("up.bin").exists(),
        "nothing was renamed into place"
    );
    assert!(
        partial_files(&home).is_empty(),
        "{:?}",
        partial_files(&home)
    );
    assert!(env.sb().state().fault_counts().corruptions > 0);
}

#[test]
fn cp_errors_say_what_is_wrong() {
    let env = SandboxEnv::blocking(CLASSES, faithful());
    let name = env.linux_name();
    // A file that is not there.
    let (code, _, err) = cp(&env, &[&format!("{name}:no/such/file"), "-"], b"");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no such file on the target"), "{err}");
    // Both sides local, both remote, a directory without -r: before any session.
    for (args, needle) in [
        (vec!["a", "b"], "neither side is on an instance"),
        (
            vec![&*format!("{name}:a"), &*format!("{name}:b")],
            "both sides are on instances",
        ),
        (vec![".", &*format!("{name}:x")], "is a directory"),
    ] {
        let (code, _, err) = cp(&env, &args, b"");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // Windows instances have no POSIX sh.
    let windows = env.find(|i| i.platform_type == ssmtui::sandbox::PlatformType::Windows);
    assert!(windows.connected(), "the seeded Windows host is online");
    let (code, _, err) = cp(&env, &[&format!("{}:x", windows.id), "-"], b"");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Windows instance"), "{err}");
    assert_eq!(
        env.audit_lines().len(),
        2,
        "only the first copy started a session"
    );
}

/// On a terminal, a download shows a progress bar (bytes, rate, time left) while it runs and
/// a one-line summary at the end; the file arrives whole.
#[test]
fn a_download_on_a_terminal_shows_its_progress() {
    use crate::common::tmux::Tmux;
    if !crate::common::require_tool(Tmux::available(), "tmux", "the cp progress test") {
        return;
    }
    let env = SandboxEnv::blocking(CLASSES, faithful());
    let target =
        env.find(|i| i.connected() && i.platform_type == ssmtui::sandbox::PlatformType::Linux);
    let home = remote_home(&env, &target.id);
    std::fs::create_dir_all(&home).unwrap();
    // About 3 s at the paced agent's rate: long enough to see the bar.
    let data = random_bytes(1 << 20, 11);
    std::fs::write(home.join("big.bin"), &data).unwrap();
    let local = env.home.path().join("got.bin");
    let mut vars = env.env("alice");
    vars.extend([("TERM", "xterm-256color".into()), ("PS1", "$ ".into())]);
    let tmux = Tmux::start("cp-progress", "s", &vars, 120, 10);
    tmux.wait_for("the shell prompt", |s| s.trim_end().ends_with(['$', '#']));
    tmux.type_line(&format!(
        "{} cp {}:big.bin {}; echo \"EXIT=$?\"",
        env!("CARGO_BIN_EXE_ssmtui"),
        target.id,
        local.display()
    ));
    tmux.wait_for("the progress bar", |s| {
        s.contains("receiving [") && s.contains("iB/") && s.contains("left")
    });
    tmux.wait_text("EXIT=0");
    tmux.wait_text("SHA-256 checked on both ends");
    assert_eq!(std::fs::read(&local).unwrap(), data);
}

/// `ssmtui cp ARGS…` as alice, running in the background with stdin closed.
fn spawn_cp(env: &SandboxEnv, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_ssmtui"))
        .arg("cp")
        .args(args)
        .env_clear()
        .envs(env.env("alice"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends SIGINT (what Ctrl-C sends) to `child` and returns its exit code and stderr.
fn interrupt(child: std::process::Child) -> (i32, String) {
    // kill(1) rather than libc::kill: unsafe code is forbidden crate-wide, tests included.
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ctrl-C in the middle of a copy ends the session (exit 130, audited as interrupted) and
/// leaves no partial file on either end.
#[test]
fn ctrl_c_mid_copy_removes_the_partial_file_on_both_ends() {
    let env = SandboxEnv::blocking(CLASSES, faithful());
    let Places {
        target,
        home,
        local,
    } = places(&env);
    let has_partial = |dir: &Path| {
        partial_files(dir)
            .iter()
            .any(|n| std::fs::metadata(dir.join(n)).is_ok_and(|m| m.len() > 0))
    };

    // An upload: big enough to be still running when interrupted.
    std::fs::write(local.join("up.bin"), random_bytes(64 << 20, 5)).unwrap();
    let child = spawn_cp(
        &env,
        &[
            &local.join("up.bin").display().to_string(),
            &format!("{}:up.bin", target.id),
        ],
    );
    crate::common::wait_until(
        "a partial file on the target",
        std::time::Duration::from_secs(30),
        || has_partial(&home),
    );
    let (code, err) = interrupt(child);
    assert_eq!(code, 130, "{err}");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
    crate::common::wait_until(
        "the target's partial file to go",
        std::time::Duration::from_secs(15),
        || partial_files(&home).is_empty(),
    );
    assert!(!home.join("up.bin").exists());

    // A download, at the paced agent's rate (about 1 MB/s).
    std::fs::write(home.join("down.bin"), random_bytes(16 << 20, 6)).unwrap();
    let child = spawn_cp(
        &env,
        &[
            &format!("{}:down.bin", target.id),
            &local.join("down.bin").display().to_string(),
        ],
    );
    crate::common::wait_until(
        "a partial file here",
        std::time::Duration::from_secs(30),
        || has_partial(&local),
    );
    let (code, err) = interrupt(child);
    assert_eq!(code, 130, "{err}");
    assert!(
        partial_files(&local).is_empty(),
        "{:?}",
        partial_files(&local)
    );
    assert!(!local.join("down.bin").exists());

    let audit = env.audit_lines();
    assert_eq!(audit.len(), 4, "{audit:#?}");
    assert!(
        audit
            .iter()
            .filter(|l| l.get("status").is_some())
            .all(|l| l["status"] == "interrupted"),
        "{audit:#?}"
    );
}

/// The "copy complete" log lines so far: (upload, bytes, bytes on the wire, gzip).
fn copies_logged(env: &SandboxEnv) -> Vec<(bool, u64, u64, bool)> {
    env.logs_text()
        .lines()
        .filter(|line| line.contains("copy complete"))
        .map(|line| {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                field("upload") == "true",
                field("bytes").parse().unwrap(),
                field("wire").parse().unwrap(),
                field("gzip") == "true",
            )
        })
        .collect()
}

/// Text goes gzipped both ways when the target has gzip (and arrives whole); noise and
/// targets without gzip go plain.
#[test]
fn compressible_data_travels_gzipped_when_the_target_has_gzip() {
    let env = SandboxEnv::blocking(CLASSES, fast());
    let Places {
        target,
        home,
        local,
    } = places(&env);
    let text: Vec<u8> = (0..200_000)
        .flat_map(|i| format!("{i} INFO request served in {} ms\n", i % 300).into_bytes())
        .collect();
    std::fs::write(local.join("app.log"), &text).unwrap();
    std::fs::write(local.join("noise.bin"), random_bytes(300_000, 4)).unwrap();

    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = cp(&env, &args, b"");
        assert_eq!(code, 0, "{args:?}: {err}");
    };
    let round_trip = |name: &str, data: &[u8]| {
        let up = local.join(name).display().to_string();
        let there = format!("{}:{name}", target.id);
        run(&[up, there.clone()]);
        assert_eq!(std::fs::read(home.join(name)).unwrap(), data);
        let back = local.join(format!("{name}.back"));
        run(&[there, back.display().to_string()]);
        assert_eq!(std::fs::read(&back).unwrap(), data);
    };
    round_trip("app.log", &text);
    round_trip("noise.bin", &random_bytes(300_000, 4));
    let logged = copies_logged(&env);
    assert_eq!(logged.len(), 4, "{logged:?}");
    for (i, &(upload, bytes, wire, gzip)) in logged.iter().enumerate() {
        assert_eq!(upload, i % 2 == 0, "{logged:?}");
        if i < 2 {
            assert_eq!(bytes, text.len() as u64);
            assert!(gzip && wire * 4 < bytes, "{logged:?}");
        } else {
            assert_eq!((bytes, wire, gzip), (300_000, 300_000, false), "{logged:?}");
        }
    }

    // A target without gzip: the login shell's PATH has every tool but gzip.
    let tools = home.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    for dir in ["/usr/bin", "/bin"] {
        for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
            let name = entry.file_name();
            if name != "gzip" && !tools.join(&name).exists() {
                let _ = std::os::unix::fs::symlink(entry.path(), tools.join(&name));
            }
        }
    }
    std::fs::write(
        home.join(".bash_profile"),
        format!("PATH={}\n", tools.display()),
    )
    .unwrap();
    std::fs::remove_file(home.join("app.log")).unwrap();
    std::fs::remove_file(local.join("app.log.back")).unwrap();
    round_trip("app.log", &text);
    let logged = copies_logged(&env);
    assert_eq!(logged.len(), 6, "{logged:?}");
    for &(_, bytes, wire, gzip) in &logged[4..] {
        assert_eq!(
            (bytes, wire, gzip),
            (text.len() as u64, bytes, false),
            "{logged:?}"
        );
    }
}
