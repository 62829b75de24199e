//! The agent's side of session logging (see [`super::super::transcripts`] for where things
//! go): the IPC file a shell's output is appended to, CloudWatch streaming as it arrives, and at
//! the end the `script`-framed log uploaded to S3 and, unstreamed, sent to CloudWatch.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::super::state::SandboxState;
use super::super::transcripts::{BUCKET, object_key, object_path};

/// The logging of one shell session: what its document's inputs say, and where its IPC file is.
#[derive(Debug)]
pub struct SessionLog {
    state: SandboxState,
    session_id: String,
    target: String,
    owner_arn: String,
    run_as: String,
    ipc: PathBuf,
    /// `(key, path)` of the S3 object to write at the end.
    s3: Option<(String, PathBuf)>,
    /// `(group, streaming)`.
    cloudwatch: Option<(String, bool)>,
}

impl SessionLog {
    /// The logging a session's document asks for. An unknown bucket logs nothing to S3, as
    /// the real agent's upload would fail.
    pub fn new(
        state: &SandboxState,
        info: &super::super::state::SessionInfo,
        inputs: &Value,
        run_as: &str,
    ) -> Self {
        let text = |name: &str| {
            inputs
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let paths = state.data_paths();
        let bucket = text("s3BucketName");
        let s3 = (bucket == BUCKET)
            .then(|| {
                let key = object_key(&text("s3KeyPrefix"), &info.session_id);
                object_path(&paths.bucket, &key).map(|path| (key, path))
            })
            .flatten();
        let group = text("cloudWatchLogGroupName");
        let streaming = inputs
            .get("cloudWatchStreamingEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Self {
            state: state.clone(),
            session_id: info.session_id.clone(),
            target: info.target.clone(),
            owner_arn: info.owner_arn.clone(),
            run_as: run_as.to_owned(),
            ipc: paths
                .orchestration
                .join(&info.session_id)
                .join("ipcTempFile.log"),
            s3,
            cloudwatch: (!group.is_empty()).then_some((group, streaming)),
        }
    }

    /// The IPC file the shell appends its output to.
    pub fn ipc_path(&self) -> &Path {
        &self.ipc
    }

    /// A chunk of output: streamed to CloudWatch when the document says so.
    pub fn output(&self, chunk: &[u8]) {
        let Some((group, true)) = &self.cloudwatch else {
            return;
        };
        let text = String::from_utf8_lossy(chunk);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let record = serde_json::json!({
            "eventVersion": "1.0",
            "eventTime": crate::audit::now_rfc3339(),
            "awsRegion": self.state.region(),
            "target": { "id": self.target },
            "userIdentity": { "arn": self.owner_arn },
            "runAsUser": self.run_as,
            "sessionId": self.session_id,
            "sessionData": lines,
        });
        self.state
            .logs()
            .put(group, &self.session_id, record.to_string());
    }

    /// The session is over: the log goes to S3 and, unstreamed, to CloudWatch.
    pub fn ended(&self) {
        let raw = std::fs::read(&self.ipc).unwrap_or_default();
        let log = script_log(&self.ipc, &raw);
        if let Some((key, path)) = &self.s3
            && let Err(e) = write_atomically(path, &log)
        {
            tracing::warn!(key, error = %e, "sandbox: the transcript upload failed");
        }
        if let Some((group, false)) = &self.cloudwatch {
            let text = String::from_utf8_lossy(&log).into_owned();
            let mut logs = self.state.logs();
            for line in text.lines() {
                logs.put(group, &self.session_id, line.to_owned());
            }
        }
        if let Some(dir) = self.ipc.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What `script LOG -c "cat IPC"` leaves in LOG: a header, the bytes through a terminal (whose
/// output processing turns each `\n` into `\r\n`), and a trailer.
fn script_log(ipc: &Path, raw: &[u8]) -> Vec<u8> {
    let when = crate::audit::now_rfc3339().replace('T', " ");
    let mut log = format!(
        "Script started on {when} [COMMAND=\"cat {}\" TERM=\"xterm-256color\" TTY=\"/dev/pts/9\" COLUMNS=\"80\" LINES=\"24\"]\n",
        ipc.display()
    )
    .into_bytes();
    for &b in raw {
        if b == b'\n' {
            log.push(b'\r');
        }
        log.push(b);
    }
    log.extend_from_slice(
        format!("\nScript done on {when} [COMMAND_EXIT_CODE=\"0\"]\n").as_bytes(),
    );
    log
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("log.part");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_framed_as_script_leaves_it() {
        let log = script_log(Path::new("/ipc"), b"$ ls\r\nfile\n");
        let text = String::from_utf8(log).unwrap();
        assert!(text.starts_with("Script started on "), "{text}");
        assert!(
            text.contains("]\n$ ls\r\r\nfile\r\n\nScript done on "),
            "{text}"
        );
        assert!(text.ends_with("[COMMAND_EXIT_CODE=\"0\"]\n"));
    }
}
