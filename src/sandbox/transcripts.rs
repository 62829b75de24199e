//! Session transcripts, kept where the real agent (3.3.1142.0, `agent/session/shell`) puts them:
//!
//! - while the shell runs, its output goes to an IPC file beside the session (never in the
//!   bucket);
//! - **S3** (`s3BucketName`): when the session ends the agent turns the IPC file into the log
//!   with `script LOG -c "cat IPC"` and uploads it as `<s3KeyPrefix>/<SessionId>.log`: the raw
//!   terminal output between `script`'s "Script started" and "Script done" lines. Here the
//!   bucket is a directory and the upload is a rename into it, so an object exists only once its
//!   session has ended;
//! - **CloudWatch Logs** (`cloudWatchLogGroupName`, stream named after the session): with
//!   `cloudWatchStreamingEnabled`, events as the output arrives, each a JSON record
//!   (`eventVersion`, `eventTime`, `awsRegion`, `target.id`, `userIdentity.arn`, `runAsUser`,
//!   `sessionId`, `sessionData`: the chunk's lines); without streaming, the log's lines as
//!   plain-text events when the session ends.
//!
//! The S3 and CloudWatch Logs APIs that read them back are [`super::s3`] and [`super::logs`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The bucket the class documents log to; the sandbox serves no other.
pub const BUCKET: &str = "ssmtui-sandbox-session-logs";

/// The log group the sudo class document streams to (KMS-encrypted, as doctor wants).
pub const LOG_GROUP: &str = "/ssmtui/sandbox/sessions";

/// One CloudWatch Logs event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Event time, ms since the epoch.
    pub timestamp: i64,
    /// When the service took it, ms since the epoch.
    pub ingestion: i64,
    /// The message.
    pub message: String,
}

/// One log stream.
#[derive(Debug, Clone, Default)]
pub struct LogStream {
    /// Creation time, ms since the epoch.
    pub created: i64,
    /// Its events, oldest first.
    pub events: Vec<LogEvent>,
}

/// The sandbox's CloudWatch Logs: log groups and their streams.
#[derive(Debug)]
pub struct LogStore {
    groups: BTreeMap<String, LogGroup>,
}

/// One log group.
#[derive(Debug, Clone, Default)]
pub struct LogGroup {
    /// Creation time, ms since the epoch.
    pub created: i64,
    /// Streams by name.
    pub streams: BTreeMap<String, LogStream>,
}

impl Default for LogStore {
    fn default() -> Self {
        let mut groups = BTreeMap::new();
        groups.insert(
            LOG_GROUP.to_owned(),
            LogGroup {
                created: now_ms(),
                streams: BTreeMap::new(),
            },
        );
        Self { groups }
    }
}

impl LogStore {
    /// The group, if it exists.
    pub fn group(&self, name: &str) -> Option<&LogGroup> {
        self.groups.get(name)
    }

    /// Every group, by name.
    pub fn groups(&self) -> impl Iterator<Item = (&String, &LogGroup)> {
        self.groups.iter()
    }

    /// Appends an event to `group`/`stream`, creating the stream; false if the group does
    /// not exist (the agent then logs nothing there, as the real one does).
    pub fn put(&mut self, group: &str, stream: &str, message: String) -> bool {
        let Some(g) = self.groups.get_mut(group) else {
            return false;
        };
        let now = now_ms();
        let s = g
            .streams
            .entry(stream.to_owned())
            .or_insert_with(|| LogStream {
                created: now,
                events: Vec::new(),
            });
        s.events.push(LogEvent {
            timestamp: now,
            ingestion: now,
            message,
        });
        true
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The S3 key of a session's log: `BuildS3Path(prefix, id + ".log")`.
pub fn object_key(prefix: &str, session_id: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{session_id}.log")
    } else {
        format!("{prefix}/{session_id}.log")
    }
}

/// The session id an object key or stream name belongs to (`…/<id>.log` or `<id>`).
pub fn session_of(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.strip_suffix(".log").unwrap_or(name)
}

/// Where an object of [`BUCKET`] lives on disk, if the key is a plain relative path.
pub fn object_path(bucket_dir: &Path, key: &str) -> Option<PathBuf> {
    let mut path = bucket_dir.to_path_buf();
    for part in key.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return None;
        }
        path.push(part);
    }
    Some(path)
}

/// The objects of the bucket under `prefix`, as (key, size, modified), sorted by key.
pub fn list_objects(bucket_dir: &Path, prefix: &str) -> Vec<(String, u64, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![(bucket_dir.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push((e.path(), key));
            } else if !name.ends_with(".part") && key.starts_with(prefix) {
                out.push((
                    key,
                    meta.len(),
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                ));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_paths() {
        assert_eq!(object_key("sudo/", "alice-1"), "sudo/alice-1.log");
        assert_eq!(object_key("", "alice-1"), "alice-1.log");
        assert_eq!(session_of("sudo/alice-1.log"), "alice-1");
        assert_eq!(session_of("alice-1"), "alice-1");
        assert!(object_path(Path::new("/b"), "a/../x").is_none());
        assert_eq!(
            object_path(Path::new("/b"), "sudo/x.log"),
            Some(PathBuf::from("/b/sudo/x.log"))
        );
    }

    #[test]
    fn streams_appear_with_their_first_event_in_known_groups_only() {
        let mut logs = LogStore::default();
        assert!(!logs.put("/nope", "s", "x".to_owned()));
        assert!(logs.put(LOG_GROUP, "alice-1", "one".to_owned()));
        assert!(logs.put(LOG_GROUP, "alice-1", "two".to_owned()));
        let g = logs.group(LOG_GROUP).unwrap();
        let messages: Vec<_> = g.streams["alice-1"]
            .events
            .iter()
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(messages, ["one", "two"]);
    }
}
