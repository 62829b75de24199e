//! `ssmtui connect` on a real terminal (a tmux pane) against the in-process sandbox: the
//! remote prompt appears, a resize of the pane reaches the remote `stty size`, `~.` terminates
//! the session, and the terminal settings (`stty -a`) are the same afterwards; a 1 MiB paste
//! into a program whose terminal echoes it back completes. Skipped, with a message, when tmux
//! is not installed (a failure instead with `SSMTUI_REQUIRE_E2E=1`, as in CI).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use crate::common;

use std::time::{Duration, Instant};

use common::tmux::Tmux;

use crate::common::sandbox::{SandboxEnv, faithful};

/// A sandbox, a home with a class config, and the environment for a pane that runs
/// `ssmtui connect` against it; `None` (the test is skipped) without tmux.
struct TtyEnv {
    sandbox: SandboxEnv,
    /// The Name of a connectable Linux instance.
    name: String,
    env: Vec<(&'static str, std::ffi::OsString)>,
}

fn tty_env(test: &str) -> Option<TtyEnv> {
    if !common::require_tool(Tmux::available(), "tmux", test) {
        return None;
    }
    let sandbox = SandboxEnv::blocking(
        "[classes.sudo]\ndocument = \"SSM-sudo\"\nprincipals = [\"arn:aws:sts::*\"]\n",
        faithful(),
    );
    let name = sandbox.linux_name();
    let mut env = sandbox.env("alice");
    env.push(("TERM", "xterm-256color".into()));
    Some(TtyEnv { sandbox, name, env })
}

#[test]
fn prompt_resize_escape_and_terminal_restored() {
    let Some(TtyEnv { sandbox, name, env }) = tty_env("the connect tty test") else {
        return;
    };
    let home = sandbox.home.path();
    let bin = env!("CARGO_BIN_EXE_ssmtui");
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
    // Resize the pane: SIGWINCH must carry the new size to the remote pty. It travels on its
    // own, so ask again until the remote terminal has it.
    tmux.run(&["resize-window", "-t", "t", "-x", "90", "-y", "25"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    for attempt in 0.. {
        let marker = format!("size-{attempt}:");
        tmux.type_line(&format!("clear; echo {marker} $(stty size)"));
        let screen = tmux.wait_for("an answer", |s| s.lines().any(|l| l.starts_with(&marker)));
        if screen.lines().any(|l| l == format!("{marker} 25 90")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new size never reached the remote"
        );
    }
    // ~. after a newline ends the session.
    tmux.keys(&["Enter"]);
    tmux.literal("~.");
    let screen = tmux.wait_for("the local prompt again", |s| s.contains("exit=0"));
    assert!(screen.contains("[terminating the session]"), "{screen}");
    // The marker is computed by the shell: the typed command line must not match it before
    // `stty` has written the file.
    tmux.type_line(&format!(
        "stty -a > '{}'; echo written-$((6*7))",
        after.display()
    ));
    tmux.wait_text("written-42");
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
    let sessions = sandbox.sb().state().sessions();
    assert_eq!(sessions.len(), 1);
    assert!(!sessions[0].status.is_active(), "{:?}", sessions[0].status);
}

/// A paste of 1 MiB into a remote program while the remote terminal echoes every byte back:
/// input and output both at full volume. The passthrough must keep taking output while the
/// input waits for room (otherwise neither side moves), and nothing may be lost: `wc -c`
/// counts every byte. (The remote terminal may drop part of its echo under such a flood, as
/// any Linux terminal does; the count is what must be exact.)
#[test]
fn a_1_mib_paste_into_an_echoing_terminal_completes() {
    let Some(TtyEnv { sandbox, name, env }) = tty_env("the paste test") else {
        return;
    };
    // Lines of 63 characters: the remote terminal is in canonical mode, whose line buffer
    // holds 4 KiB.
    let line = format!("{}\n", "0123456789abcdef".repeat(4).get(..63).unwrap());
    let total = 1 << 20;
    let paste = line.repeat(total / line.len());
    assert_eq!(paste.len(), total);
    let file = sandbox.home.path().join("paste.txt");
    std::fs::write(&file, &paste).unwrap();
    let bin = env!("CARGO_BIN_EXE_ssmtui");
    let tmux = Tmux::start("paste", "p", &env, 100, 30);
    tmux.wait_for("the local prompt", |s| s.trim_end().ends_with(['$', '#']));
    tmux.type_line(&format!("'{bin}' connect {name}; echo \"exit=$?\""));
    tmux.wait_for("the remote shell", |s| s.contains("running as ssm-sudo"));
    // The paste must reach `wc`, not the shell's line editor (which takes a bracketed paste
    // as part of the command line): wait until the line has run as far as the `echo`.
    // `head` ends after exactly 1 MiB, so no end-of-file key has to follow the paste.
    tmux.type_line(&format!(
        "clear; echo ready-$((6*7)); head -c {total} | wc -c | sed 's/^/count=/'"
    ));
    tmux.wait_text("ready-42");
    tmux.run(&["load-buffer", "-b", "paste", &file.to_string_lossy()]);
    // A terminal paste: newlines arrive as carriage returns, which the remote terminal turns
    // back into newlines.
    tmux.run(&["paste-buffer", "-b", "paste", "-t", "p"]);
    // The terminal's late echo may scroll the count off the screen: look in the history.
    let history = tmux.wait_in_history("the remote count", Duration::from_secs(180), |s| {
        s.contains("count=")
    });
    let count = history
        .split("count=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default();
    assert_eq!(count, total.to_string(), "bytes were lost or added");
    tmux.keys(&["Enter"]);
    tmux.literal("~.");
    tmux.wait_for("the local prompt again", |s| s.contains("exit=0"));
}
