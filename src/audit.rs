//! The local audit log: who started which session, where, when, why, and how it ended.
//!
//! Format: JSON lines, append-only, at `[audit] path` or `audit.jsonl` in the state directory.
//! Every session writes two lines with the same `session_id`:
//!
//! - `"event": "start"` right after StartSession succeeded, and
//! - `"event": "end"` when the session ended for any reason (remote exit, terminated, failed
//!   to open its data channel, lost), with `ended`, `status`, the exit code when there is one,
//!   an error text when it failed, and byte counts for forwards.
//!
//! The end line repeats every field of the start line, so a single line always tells the whole
//! story; a start line without an end line means the session is still running or ssmtui was
//! killed. Records carry no token, key or credential: [`SessionRecord`] has no field that could
//! hold one, and it is built from a session id, never from a [`crate::aws::SessionTarget`].
//!
//! Rotation is by size: before a line would take the file past `max_bytes`, `audit.jsonl`
//! becomes `audit.jsonl.1`, `.1` becomes `.2`, … and the oldest beyond `keep` is deleted.
//! Several ssmtui processes may append at once: each line is one `write` on a file opened with
//! `O_APPEND`, so lines do not interleave; two processes rotating at the same moment can at worst
//! rotate twice. On Unix the files are created with mode 0600, the directory with 0700.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{AuditConfig, Paths, paths};
use crate::error::{Classified, Classify, ErrorKind};

/// What kind of session a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// An interactive or scripted shell.
    Shell,
    /// A port forward.
    Forward,
    /// A proxy (ssh ProxyCommand style stdio forward).
    Proxy,
    /// A command run with `ssmtui exec` (a shell session of the class document).
    Exec,
    /// A file copied with `ssmtui cp` (a shell session of the class document).
    Copy,
}

/// Whether the line opens or closes a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// StartSession succeeded.
    Start,
    /// The session is over.
    End,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndStatus {
    /// The remote side ended it normally (shell exit, forward stopped by the user).
    Exited,
    /// Terminated on purpose (TerminateSession, `~.`).
    Terminated,
    /// Ended by an error (data channel refused or lost, engine failure).
    Failed,
    /// Interrupted locally (Ctrl-C, signal).
    Interrupted,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// `start` or `end`.
    pub event: Event,
    /// When this line was written, RFC 3339 UTC.
    pub time: String,
    /// The session id StartSession returned.
    pub session_id: String,
    /// Shell, forward or proxy.
    pub kind: SessionKind,
    /// The caller's ARN (STS GetCallerIdentity).
    pub identity_arn: String,
    /// The caller's account id.
    pub account: String,
    /// The AWS profile in use, if one was named.
    pub profile: Option<String>,
    /// The region.
    pub region: Option<String>,
    /// The access class, if any.
    pub class: Option<String>,
    /// The session document.
    pub document: String,
    /// The target instance id.
    pub target_id: String,
    /// The target's Name tag.
    pub target_name: Option<String>,
    /// The reason given (also sent to AWS).
    pub reason: Option<String>,
    /// When the session started, RFC 3339 UTC.
    pub started: String,
    /// When it ended (end lines only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// How it ended (end lines only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EndStatus>,
    /// The remote exit code, when the remote shell reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Why it failed, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Bytes sent to the target (forwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    /// Bytes received from the target (forwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
}

/// What is known about a session when it starts; [`AuditLog::start`] turns it into a record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStart {
    /// The session id StartSession returned.
    pub session_id: String,
    /// Shell, forward or proxy.
    pub kind: Option<SessionKind>,
    /// The caller's ARN.
    pub identity_arn: String,
    /// The caller's account id.
    pub account: String,
    /// The profile, if named.
    pub profile: Option<String>,
    /// The region.
    pub region: Option<String>,
    /// The access class.
    pub class: Option<String>,
    /// The document.
    pub document: String,
    /// The target instance id.
    pub target_id: String,
    /// The target's Name tag.
    pub target_name: Option<String>,
    /// The reason.
    pub reason: Option<String>,
}

/// How a session ended, for [`SessionAudit::end`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// The outcome.
    pub status: EndStatus,
    /// The remote exit code, if any.
    pub exit_code: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Bytes sent to the target (forwards; `None` for shells).
    pub bytes_sent: Option<u64>,
    /// Bytes received from the target.
    pub bytes_received: Option<u64>,
}

impl SessionEnd {
    /// A plain outcome with nothing else to say.
    pub fn new(status: EndStatus) -> Self {
        Self {
            status,
            exit_code: None,
            error: None,
            bytes_sent: None,
            bytes_received: None,
        }
    }

    /// A failure with its reason.
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
            ..Self::new(EndStatus::Failed)
        }
    }
}

impl Classify for AuditError {
    fn classified(&self) -> Classified {
        Classified::new(
            ErrorKind::Internal,
            vec!["check the permissions of the audit log and its directory, or point [audit] path elsewhere (`ssmtui config path` shows it)".to_owned()],
        )
    }
}

/// Why the audit log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Creating, rotating or writing the file failed.
    #[error("cannot write the audit log \"{}\": {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Reading the file failed.
    #[error("cannot read the audit log \"{}\": {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// The audit log file with its rotation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
}

/// The current time as RFC 3339 UTC with second precision.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

impl AuditLog {
    /// The log `[audit]` describes: its `path`, else `audit.jsonl` in the state directory.
    pub fn from_config(config: &AuditConfig, dirs: &Paths) -> Self {
        let path = config
            .path
            .as_deref()
            .map_or_else(|| dirs.default_audit_file(), paths::expand_home);
        Self::new(path, config.max_bytes, config.keep)
    }

    /// A log at `path` rotated past `max_bytes`, keeping `keep` old files.
    pub fn new(path: PathBuf, max_bytes: u64, keep: u32) -> Self {
        Self {
            path,
            max_bytes,
            keep,
        }
    }

    /// The current file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `audit.jsonl.N`.
    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Writes the start line and returns the handle that writes the end line.
    pub fn start(&self, start: SessionStart) -> Result<SessionAudit, AuditError> {
        let now = now_rfc3339();
        let record = SessionRecord {
            event: Event::Start,
            time: now.clone(),
            session_id: start.session_id,
            kind: start.kind.unwrap_or(SessionKind::Shell),
            identity_arn: start.identity_arn,
            account: start.account,
            profile: start.profile,
            region: start.region,
            class: start.class,
            document: start.document,
            target_id: start.target_id,
            target_name: start.target_name,
            reason: start.reason,
            started: now,
            ended: None,
            status: None,
            exit_code: None,
            error: None,
            bytes_sent: None,
            bytes_received: None,
        };
        self.append(&record)?;
        Ok(SessionAudit {
            log: self.clone(),
            record,
        })
    }

    /// Appends one record as one line, rotating first if the line would overflow the file.
    pub fn append(&self, record: &SessionRecord) -> Result<(), AuditError> {
        let write_err = |source| AuditError::Write {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(record).map_err(|e| write_err(io::Error::other(e)))?;
        line.push(b'\n');
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            paths::create_private_dir(dir).map_err(write_err)?;
        }
        let size = match fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(write_err(e)),
        };
        if size > 0 && size + line.len() as u64 > self.max_bytes {
            self.rotate().map_err(write_err)?;
        }
        let mut file = open_append(&self.path).map_err(write_err)?;
        // One write call per line, so concurrent appenders never interleave within a line.
        file.write_all(&line).map_err(write_err)?;
        file.flush().map_err(write_err)
    }

    fn rotate(&self) -> io::Result<()> {
        if self.keep == 0 {
            return remove_if_exists(&self.path);
        }
        remove_if_exists(&self.rotated(self.keep))?;
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        fs::rename(&self.path, self.rotated(1))
    }

    /// Every record, oldest first: the rotated files from `.keep` down to `.1`, then the
    /// current file. A missing log is empty; a line that does not parse is skipped, since a
    /// half-written line after a crash must not hide the rest.
    pub fn read_all(&self) -> Result<Vec<SessionRecord>, AuditError> {
        let mut files: Vec<PathBuf> = (1..=self.keep).rev().map(|n| self.rotated(n)).collect();
        files.push(self.path.clone());
        let mut out = Vec::new();
        for path in files {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(AuditError::Read { path, source }),
            };
            for line in BufReader::new(file).lines() {
                let line = line.map_err(|source| AuditError::Read {
                    path: path.clone(),
                    source,
                })?;
                if let Ok(record) = serde_json::from_str::<SessionRecord>(&line) {
                    out.push(record);
                }
            }
        }
        Ok(out)
    }

    /// One record per session, oldest first: its end line if there is one, else its start
    /// line (a session still running, or one whose ssmtui was killed).
    pub fn sessions(&self) -> Result<Vec<SessionRecord>, AuditError> {
        Ok(latest_per_session(self.read_all()?))
    }
}

/// Keeps the last record of each session id, in the order the sessions started.
pub fn latest_per_session(records: Vec<SessionRecord>) -> Vec<SessionRecord> {
    let mut order: Vec<String> = Vec::new();
    let mut latest: std::collections::HashMap<String, SessionRecord> =
        std::collections::HashMap::new();
    for r in records {
        if !latest.contains_key(&r.session_id) {
            order.push(r.session_id.clone());
        }
        latest.insert(r.session_id.clone(), r);
    }
    order
        .into_iter()
        .filter_map(|id| latest.remove(&id))
        .collect()
}

/// A started session whose end line is still to be written.
#[derive(Debug)]
#[must_use = "a session's end must be recorded with SessionAudit::end"]
pub struct SessionAudit {
    log: AuditLog,
    record: SessionRecord,
}

impl SessionAudit {
    /// The start record as written.
    pub fn record(&self) -> &SessionRecord {
        &self.record
    }

    /// Writes the end line: the start record with `ended`, the status and the counters.
    pub fn end(self, end: SessionEnd) -> Result<(), AuditError> {
        let now = now_rfc3339();
        let record = SessionRecord {
            event: Event::End,
            time: now.clone(),
            ended: Some(now),
            status: Some(end.status),
            exit_code: end.exit_code,
            error: end.error,
            bytes_sent: end.bytes_sent,
            bytes_received: end.bytes_received,
            ..self.record
        };
        self.log.append(&record)
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Opens for appending, creating the file readable by its owner only (the log says who went
/// where and why, which is nobody else's business on a shared machine).
fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{SsmApi, StartSessionRequest};

    fn start(id: &str) -> SessionStart {
        SessionStart {
            session_id: id.to_owned(),
            kind: Some(SessionKind::Shell),
            identity_arn:
                "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_PlatformAdmin_x/alice"
                    .to_owned(),
            account: "123456789012".to_owned(),
            profile: Some("prod".to_owned()),
            region: Some("eu-west-1".to_owned()),
            class: Some("sudo".to_owned()),
            document: "SSM-sudo".to_owned(),
            target_id: "i-0123456789abcdef0".to_owned(),
            target_name: Some("prod-web-01".to_owned()),
            reason: Some("INC-1 disk full".to_owned()),
        }
    }

    #[tokio::test]
    async fn start_and_end_lines_carry_every_field_and_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("sub/audit.jsonl"), 1 << 20, 3);
        // A real StartSession result: its token must never reach the file.
        let api = crate::aws::fake::FakeApi::default();
        let started = api
            .start_session(&StartSessionRequest {
                target: "i-0123456789abcdef0".into(),
                document: "SSM-sudo".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let audit = log.start(start(&started.session_id)).unwrap();
        audit
            .end(SessionEnd {
                exit_code: Some(3),
                bytes_sent: Some(10),
                bytes_received: Some(20),
                ..SessionEnd::new(EndStatus::Exited)
            })
            .unwrap();
        let text = fs::read_to_string(log.path()).unwrap();
        assert!(!text.contains(started.token.expose()), "{text}");
        assert!(!text.to_lowercase().contains("token"), "{text}");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        for key in [
            "session_id",
            "kind",
            "identity_arn",
            "account",
            "profile",
            "region",
            "class",
            "document",
            "target_id",
            "target_name",
            "reason",
            "started",
        ] {
            assert!(!lines[0][key].is_null(), "start lacks {key}");
            assert_eq!(lines[0][key], lines[1][key], "{key}");
        }
        assert_eq!(lines[0]["event"], "start");
        assert_eq!(lines[1]["event"], "end");
        assert_eq!(lines[1]["session_id"], started.session_id.as_str());
        assert_eq!(lines[1]["status"], "exited");
        assert_eq!(lines[1]["exit_code"], 3);
        assert_eq!(lines[1]["bytes_received"], 20);
        assert!(lines[1]["ended"].as_str().unwrap().ends_with('Z'));
        time::OffsetDateTime::parse(
            lines[0]["time"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();

        let sessions = log.sessions().unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].event, Event::End);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(log.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let one_line = serde_json::to_vec(log_start_record()).unwrap().len() as u64 + 1;
        // Room for two lines per file.
        let log = AuditLog::new(path.clone(), one_line * 2, 2);
        for n in 0..7 {
            let _ = log.start(start(&format!("s-{n}"))).unwrap();
        }
        let name = |suffix: &str| dir.path().join(format!("audit.jsonl{suffix}"));
        let lines = |p: PathBuf| fs::read_to_string(p).unwrap().lines().count();
        assert_eq!(lines(name("")), 1);
        assert_eq!(lines(name(".1")), 2);
        assert_eq!(lines(name(".2")), 2);
        assert!(!name(".3").exists());
        // Oldest first across the files; the two oldest sessions were rotated away.
        let ids: Vec<String> = log
            .read_all()
            .unwrap()
            .into_iter()
            .map(|r| r.session_id)
            .collect();
        assert_eq!(ids, ["s-2", "s-3", "s-4", "s-5", "s-6"]);

        let none = AuditLog::new(dir.path().join("zero.jsonl"), one_line, 0);
        for n in 0..3 {
            let _ = none.start(start(&format!("z-{n}"))).unwrap();
        }
        assert_eq!(none.read_all().unwrap().len(), 1);
    }

    fn log_start_record() -> &'static SessionRecord {
        static RECORD: std::sync::OnceLock<SessionRecord> = std::sync::OnceLock::new();
        RECORD.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let log = AuditLog::new(dir.path().join("a"), u64::MAX, 1);
            log.start(start("s-0")).unwrap().record().clone()
        })
    }

    #[test]
    fn unparsable_lines_are_skipped_and_missing_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"), 1 << 20, 1);
        assert!(log.read_all().unwrap().is_empty());
        let _ = log.start(start("a")).unwrap();
        let mut f = open_append(log.path()).unwrap();
        f.write_all(b"{\"half\n").unwrap();
        let _ = log.start(start("b")).unwrap();
        assert_eq!(log.read_all().unwrap().len(), 2);
    }
}
