//! `ssmtui connect` on a real terminal (a tmux pane) against the in-process sandbox: the
//! remote prompt appears, a resize of the pane reaches the remote `stty size`, `~.` terminates
//! the session, and the terminal settings (`stty -a`) are the same afterwards. Skipped, with a
//! message, when tmux is not installed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use crate::common;

use std::time::{Duration, Instant};

use common::tmux::Tmux;

use ssmtui::sandbox::world::{InstanceState, PingStatus};
use ssmtui::sandbox::{Sandbox, SandboxConfig};

#[test]
fn prompt_resize_escape_and_terminal_restored() {
    if !Tmux::available() {
        eprintln!("skipping the connect tty test: tmux is not installed");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sandbox = rt
        .block_on(Sandbox::start(SandboxConfig::default()))
        .unwrap();
    let name = {
        let world = sandbox.state().world();
        let i = world
            .instances
            .iter()
            .find(|i| {
                i.state == InstanceState::Running
                    && i.ping == PingStatus::Online
                    && !i.platform_name.contains("Windows")
            })
            .unwrap();
        i.tags.iter().find(|(k, _)| k == "Name").unwrap().1.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    std::fs::write(
        home.join("config.toml"),
        "[classes.sudo]\ndocument = \"SSM-sudo\"\nprincipals = [\"arn:aws:sts::*\"]\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_ssmtui");
    let mut env = common::isolated_env(home, &sandbox.endpoint_url(), sandbox.state().region());
    env.extend([
        ("TERM", "xterm-256color".into()),
        ("AWS_ACCESS_KEY_ID", "alice".into()),
        ("AWS_SECRET_ACCESS_KEY", "x".into()),
    ]);
    let tmux = Tmux::start("tty", "t", &env, 100, 30);
    // The prompt ("$ ", or "# " as root) says the shell is ready for input.
    tmux.wait_for("the local prompt", |s| s.trim_end().ends_with(['$', '#']));
    let before = home.join("stty-before");
    let after = home.join("stty-after");
    tmux.type_line(&format!("stty -a > '{}'; clear", before.display()));
    tmux.type_line(&format!("'{bin}' connect {name}; echo \"exit=$?\""));
    tmux.wait_for("the remote shell", |s| s.contains("running as ssm-sudo"));
    tmux.type_line("echo remote-$((6*7)); stty size");
    tmux.wait_for("the remote answer and size", |s| {
        s.contains("remote-42") && s.contains("30 100")
    });
    // Resize the pane: SIGWINCH must carry the new size to the remote pty.
    tmux.run(&["resize-window", "-t", "t", "-x", "90", "-y", "25"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.type_line("clear; stty size");
    tmux.wait_for("the new size remotely", |s| s.contains("25 90"));
    // ~. after a newline ends the session.
    tmux.keys(&["Enter"]);
    tmux.literal("~.");
    let screen = tmux.wait_for("the local prompt again", |s| s.contains("exit=0"));
    assert!(screen.contains("[terminating the session]"), "{screen}");
    tmux.type_line(&format!("stty -a > '{}'", after.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !after.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    // The size differs (the pane was resized); everything else must be as before.
    let strip = |t: String| -> String {
        t.lines()
            .filter(|l| !l.contains("rows") && !l.contains("columns"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(std::fs::read_to_string(&before).unwrap()),
        strip(std::fs::read_to_string(&after).unwrap()),
        "terminal settings changed"
    );
    // The session really ended on the service side.
    let sessions = sandbox.state().sessions();
    assert_eq!(sessions.len(), 1);
    assert!(!sessions[0].status.is_active(), "{:?}", sessions[0].status);
    rt.block_on(sandbox.shutdown());
}
