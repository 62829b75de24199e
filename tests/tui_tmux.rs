//! End to end: the real binary in a tmux pane against the in-memory fake world
//! (`SSMTUI_FAKE_WORLD`), with `SSMTUI_TEST_SHELL_COMMAND=sh` standing in for the remote shell.
//! Wait for rows, filter, open a shell, run a command, exit, find the list exactly as it was,
//! open help, quit; the terminal settings (`stty -a`) must be the same before and after.
//! Skipped, with a message, when tmux is not installed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A private tmux server, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn run(&self, args: &[&str]) {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn literal(&self, text: &str) {
        self.run(&["send-keys", "-t", "e2e", "-l", text]);
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "e2e"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the pane until `pred` holds; fails with the last screen after `timeout`.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        // Generous: CI machines are shared and a debug build under load starts slowly.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?}"), |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The screen without its status line, which is the only line a shell round trip may change.
fn without_status(screen: &str, status_row: usize) -> Vec<&str> {
    screen
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != status_row)
        .map(|(_, l)| l)
        .collect()
}

#[test]
fn filter_shell_round_trip_help_and_quit_in_tmux() {
    if !tmux_available() {
        eprintln!("skipping the tmux end-to-end test: tmux is not installed");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_ssmtui");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let socket = format!("ssmtui-e2e-{}", std::process::id());
    let tmux = Tmux { socket };
    let (width, height) = (100u16, 30u16);
    // Shells need an access class (the class decides the document); this one takes everyone.
    std::fs::create_dir_all(home.join("config")).unwrap();
    std::fs::write(
        home.join("config/config.toml"),
        "[classes.sudo]\ndocument = \"SSM-sudo\"\nprincipals = [\"arn:aws:sts::*\"]\n",
    )
    .unwrap();
    // The first tmux command starts the server, which passes its environment to the pane.
    let out = tmux
        .cmd()
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TERM", "xterm-256color")
        .env("PS1", "$ ")
        .env("SSMTUI_CONFIG_DIR", home.join("config"))
        .env("SSMTUI_STATE_DIR", home.join("state"))
        .env("SSMTUI_FAKE_WORLD", "300")
        .env("SSMTUI_TEST_SHELL_COMMAND", "sh")
        .args([
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "sh",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tmux.run(&["set-option", "-g", "escape-time", "10"]);
    // The prompt ("$ ", or "# " as root) says the shell is ready for input.
    tmux.wait_for("the shell prompt", |s| s.trim_end().ends_with(['$', '#']));

    let before = home.join("stty-before");
    let after = home.join("stty-after");
    tmux.literal(&format!(
        "stty -a > {}; {bin}; echo \"EXIT=$?\"; stty -a > {}",
        before.display(),
        after.display()
    ));
    tmux.keys(&["Enter"]);

    // Rows arrive.
    tmux.wait_text("Instances 300/300");
    tmux.wait_text("api-dev-01");

    // Incremental filter; Enter keeps it.
    tmux.literal("/web-dev");
    tmux.wait_for("the filter to narrow the list", |s| {
        s.contains("/web-dev") && s.contains("web-dev-02") && !s.contains("api-dev-01")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_text("filter web-dev");
    // web-dev-01 is stopped in the fake world: Enter says why instead of opening a shell.
    tmux.keys(&["Enter"]);
    tmux.wait_text("instance is stopped");
    tmux.literal("j");
    tmux.wait_for("the status to clear", |s| {
        !s.contains("instance is stopped")
    });
    let list_before = tmux.screen();

    // Open the shell (a local sh through the CommandLauncher), run a command, exit.
    tmux.keys(&["Enter"]);
    tmux.wait_text("ssmtui: shell on web-dev-02");
    tmux.literal("echo hi-from-$((40+2))");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the command output", |s| {
        s.lines().any(|l| l.trim_end() == "hi-from-42")
    });
    tmux.literal("exit");
    tmux.keys(&["Enter"]);
    // Wait for the status line, not the takeover banner that names the same instance.
    let list_after = tmux.wait_for("the list with the shell's outcome", |s| {
        s.contains("shell on web-dev-02 (i-") && s.contains("ended")
    });
    let status_row = usize::from(height) - 2;
    assert_eq!(
        without_status(&list_after, status_row),
        without_status(&list_before, status_row),
        "the list is not where it was:\nbefore:\n{list_before}\nafter:\n{list_after}"
    );

    // Help, generated from the keymap; Esc closes it.
    tmux.literal("?");
    tmux.wait_text("Help — keys by mode");
    tmux.wait_text("open a shell on the selected instance");
    tmux.keys(&["Escape"]);
    tmux.wait_for("help to close", |s| !s.contains("Help — keys by mode"));

    // Quit; the shell prints the exit status and the terminal settings are unchanged.
    tmux.literal("q");
    tmux.wait_text("EXIT=0");
    let read = |p: &Path| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::fs::read_to_string(p) {
                Ok(s) if !s.is_empty() => return s,
                _ if Instant::now() > deadline => panic!("{} was not written", p.display()),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    };
    assert_eq!(read(&before), read(&after), "stty -a differs after the TUI");
}

/// Saved forwards from a config file show in the forwards tab at start; against the fake world
/// (whose sessions have no stream URL) an autostarted one fails with the reason, a manual one
/// stays stopped, an unresolvable one says why; quitting still leaves the terminal intact.
#[test]
fn saved_forwards_show_in_the_forwards_tab_in_tmux() {
    if !tmux_available() {
        eprintln!("skipping the tmux end-to-end test: tmux is not installed");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_ssmtui");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let config_dir = home.join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    // Port 0 everywhere: the test must not depend on a free fixed port.
    std::fs::write(
        config_dir.join("config.toml"),
        r#"
[[forwards]]
name = "web-http"
target = "web-dev-02"
spec = "0:80"
autostart = true

[[forwards]]
name = "manual-ssh"
target = "Name=api-dev-01"
spec = "0:22"

[[forwards]]
name = "ghost"
target = "no-such-box"
spec = "0:443"
autostart = true
"#,
    )
    .unwrap();
    let socket = format!("ssmtui-e2e-fwd-{}", std::process::id());
    let tmux = Tmux { socket };
    let out = tmux
        .cmd()
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TERM", "xterm-256color")
        .env("PS1", "$ ")
        .env("SSMTUI_CONFIG_DIR", &config_dir)
        .env("SSMTUI_STATE_DIR", home.join("state"))
        .env("SSMTUI_FAKE_WORLD", "300")
        .args([
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            "160",
            "-y",
            "30",
            "sh",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tmux.run(&["set-option", "-g", "escape-time", "10"]);
    tmux.wait_for("the shell prompt", |s| s.trim_end().ends_with(['$', '#']));
    tmux.literal(&format!("{bin}; echo \"EXIT=$?\""));
    tmux.keys(&["Enter"]);
    tmux.wait_text("Instances 300/300");

    tmux.literal("F");
    tmux.wait_text("Forwards");
    let row = |screen: &str, name: &str| {
        screen
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_owned()
    };
    let screen = tmux.wait_for("the autostarted forward to fail against the fake", |s| {
        row(s, "web-http").contains("failed")
    });
    assert!(row(&screen, "manual-ssh").contains("stopped"), "{screen}");
    assert!(row(&screen, "ghost").contains("failed"), "{screen}");
    assert!(
        row(&screen, "ghost").contains("no instance matches"),
        "{screen}"
    );
    // Details of the failed one carry the full error.
    tmux.keys(&["Enter"]);
    tmux.wait_text("Forward web-http");
    tmux.wait_text("last error");
    tmux.keys(&["Escape"]);
    tmux.wait_for("details to close", |s| !s.contains("Forward web-http"));

    tmux.literal("q");
    tmux.wait_text("EXIT=0");
}
