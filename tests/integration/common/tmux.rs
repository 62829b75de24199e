//! A private tmux server for the end-to-end tests that need a real terminal.

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a wait for the screen may take: CI machines are shared, and a debug build under
/// load starts slowly.
const WAIT: Duration = Duration::from_secs(40);

/// A tmux server on its own socket with one session (`target`), killed on drop.
pub struct Tmux {
    socket: String,
    target: String,
}

impl Tmux {
    /// Whether tmux is installed (the tests skip, with a message, when it is not).
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Starts the server with one `width`×`height` session running `sh` in exactly `env`
    /// (the first command starts the server, which passes its environment to the pane).
    pub fn start(
        name: &str,
        target: &str,
        env: &[(&str, OsString)],
        width: u16,
        height: u16,
    ) -> Self {
        let tmux = Self {
            socket: format!("ssmtui-{name}-{}", std::process::id()),
            target: target.to_owned(),
        };
        let out = tmux
            .cmd()
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args([
                "new-session",
                "-d",
                "-s",
                target,
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
        tmux
    }

    /// A tmux command on this server.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    /// Runs a tmux command, which must succeed.
    pub fn run(&self, args: &[&str]) {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends keys by tmux name (`Enter`, `Escape`, `C-c`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.target];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Types `text` literally.
    pub fn literal(&self, text: &str) {
        self.run(&["send-keys", "-t", &self.target, "-l", text]);
    }

    /// Types `text` and Enter.
    pub fn type_line(&self, text: &str) {
        self.literal(text);
        self.keys(&["Enter"]);
    }

    /// The visible pane.
    pub fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", &self.target])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane's whole history, scrolled-off lines included.
    pub fn history(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-S", "-", "-t", &self.target])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the pane's history until `pred` holds; fails with the last screen after `limit`.
    pub fn wait_in_history(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.poll(what, limit, Self::history, pred)
    }

    /// Polls the pane until `pred` holds; fails with the last screen after a while.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.poll(what, WAIT, Self::screen, pred)
    }

    /// Reads the pane with `read` until `pred` holds; fails with the screen after `limit`.
    fn poll(
        &self,
        what: &str,
        limit: Duration,
        read: impl Fn(&Self) -> String,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let text = read(self);
            if pred(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the pane shows `text`.
    pub fn wait_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?}"), |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}
