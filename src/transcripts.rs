//! Session transcripts: where the agent put a session's log (from its document's inputs), which
//! copy to read, fetching it, and turning it into text.
//!
//! The agent (3.3.1142.0) writes a shell session's terminal output to S3 as
//! `<s3KeyPrefix>/<SessionId>.log` once the session has ended, and/or to CloudWatch Logs in
//! the stream `<SessionId>` of `cloudWatchLogGroupName`: as it happens when
//! `cloudWatchStreamingEnabled` (each event a JSON record whose `sessionData` holds the
//! output), else as plain lines at the end. An ended session's S3 object is the complete copy;
//! a live session can only be read (and followed) from a streamed log.

use std::collections::HashMap;

use serde_json::Value;

use crate::aws::{AwsError, LogRecord, SessionState, SessionSummary, SsmApi};

/// Where a session's transcript is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// S3 `(bucket, key)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Location>,
    /// CloudWatch Logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloudwatch: Option<CloudWatchLocation>,
}

/// An S3 object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct S3Location {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

/// A CloudWatch Logs stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CloudWatchLocation {
    /// Log group.
    pub group: String,
    /// Log stream (the session id).
    pub stream: String,
    /// Whether events arrive while the session runs.
    pub streaming: bool,
}

/// Which copy to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// The S3 object (complete once the session has ended).
    S3,
    /// The CloudWatch Logs stream.
    Cloudwatch,
}

impl Location {
    /// Where the document whose JSON content is `document` logs the session `session_id`.
    pub fn from_document(document: &str, session_id: &str) -> Self {
        let json: Value = serde_json::from_str(document).unwrap_or(Value::Null);
        let inputs = json.get("inputs").unwrap_or(&Value::Null);
        let text = |name: &str| {
            inputs
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        let bucket = text("s3BucketName");
        let prefix = text("s3KeyPrefix");
        let prefix = prefix.trim_matches('/');
        let group = text("cloudWatchLogGroupName");
        Self {
            s3: (!bucket.is_empty()).then(|| S3Location {
                bucket,
                key: if prefix.is_empty() {
                    format!("{session_id}.log")
                } else {
                    format!("{prefix}/{session_id}.log")
                },
            }),
            cloudwatch: (!group.is_empty()).then(|| CloudWatchLocation {
                group,
                stream: session_id.to_owned(),
                streaming: inputs
                    .get("cloudWatchStreamingEnabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }),
        }
    }

    /// Whether the document logs anywhere.
    pub fn is_logged(&self) -> bool {
        self.s3.is_some() || self.cloudwatch.is_some()
    }

    /// Where, in a few words: `s3://bucket/key`, `cloudwatch:group (streamed)`, both, or "-".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s3) = &self.s3 {
            parts.push(format!("s3://{}/{}", s3.bucket, s3.key));
        }
        if let Some(cw) = &self.cloudwatch {
            parts.push(format!(
                "cloudwatch:{}{}",
                cw.group,
                if cw.streaming { " (streamed)" } else { "" }
            ));
        }
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join(" + ")
        }
    }

    /// The copy to read: the one asked for, else S3 for an ended session (complete) and a
    /// streamed log for a live one. `None` when the document logs to neither.
    pub fn choose(&self, wanted: Option<Source>, active: bool) -> Option<Source> {
        match wanted {
            Some(s) => Some(s),
            None => match (&self.s3, &self.cloudwatch) {
                (Some(_), Some(cw)) if active && cw.streaming => Some(Source::Cloudwatch),
                (Some(_), _) => Some(Source::S3),
                (None, Some(_)) => Some(Source::Cloudwatch),
                (None, None) => None,
            },
        }
    }
}

/// Session documents' contents, fetched once each (GetDocument).
#[derive(Debug, Default)]
pub struct Documents {
    contents: HashMap<String, Option<String>>,
}

impl Documents {
    /// Where `document` logs `session_id`; a document that cannot be read logs nowhere we
    /// know of (the error is logged).
    pub async fn location(
        &mut self,
        api: &dyn SsmApi,
        document: &str,
        session_id: &str,
    ) -> Location {
        if !self.contents.contains_key(document) {
            let content = match api.get_document(document).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::debug!(document, error = %e, "cannot read the session document");
                    None
                }
            };
            self.contents.insert(document.to_owned(), content);
        }
        self.contents
            .get(document)
            .and_then(Option::as_ref)
            .map(|c| Location::from_document(c, session_id))
            .unwrap_or_default()
    }
}

/// A session as DescribeSessions knows it, and whether it is still running: the caller's own
/// first, then anyone's (where the caller may list them).
pub async fn find_session(
    api: &dyn SsmApi,
    id: &str,
) -> Result<Option<(SessionSummary, bool)>, AwsError> {
    for owner_self in [true, false] {
        for (state, active) in [(SessionState::Active, true), (SessionState::History, false)] {
            match api.describe_sessions(state, owner_self).await {
                Ok(list) => {
                    if let Some(s) = list.into_iter().find(|s| s.id == id) {
                        return Ok(Some((s, active)));
                    }
                }
                // Listing everyone's may be denied; the caller's own was tried first.
                Err(AwsError::AccessDenied { .. }) if !owner_self => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(None)
}

/// Why a transcript cannot be read, each with what to do.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The document logs nowhere.
    #[error(
        "session {session} is not logged: its document {document} names no S3 bucket and no CloudWatch log group"
    )]
    NotLogged {
        /// Session id.
        session: String,
        /// Its document.
        document: String,
    },
    /// The document does not log to the source asked for.
    #[error("session {session} is not logged to {source_name}: its document logs to {described}")]
    NotThere {
        /// Session id.
        session: String,
        /// The source asked for.
        source_name: &'static str,
        /// [`Location::describe`].
        described: String,
    },
    /// The S3 object is not there (yet).
    #[error("the transcript of session {session} is not in S3 yet ({location})")]
    NotUploaded {
        /// Session id.
        session: String,
        /// `s3://…`.
        location: String,
        /// Whether the session is still running.
        active: bool,
    },
    /// The log stream does not exist (yet).
    #[error("session {session} has no CloudWatch log stream in {group}")]
    NoStream {
        /// Session id.
        session: String,
        /// Log group.
        group: String,
        /// Whether the document streams.
        streaming: bool,
    },
    /// AWS refused or failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl TranscriptError {
    /// What the user can do.
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::NotLogged { .. } => vec![
                "session logging is set in the session document (s3BucketName, cloudWatchLogGroupName); `ssmtui doctor` checks it".to_owned(),
            ],
            Self::NotThere { .. } => vec!["leave out --source to read where it is logged".to_owned()],
            Self::NotUploaded { active: true, .. } => vec![
                "the agent uploads to S3 when the session ends; a document that streams to CloudWatch can be read (and followed with --follow) while it runs".to_owned(),
            ],
            Self::NotUploaded { active: false, .. } => vec![
                "the agent uploads within moments of the end; if it stays missing, the instance role may lack s3:PutObject on the bucket".to_owned(),
            ],
            Self::NoStream { streaming: false, .. } => vec![
                "without cloudWatchStreamingEnabled the agent sends the log when the session ends".to_owned(),
            ],
            Self::NoStream { streaming: true, .. } => vec![
                "the stream appears with the session's first output; if it stays missing, the instance role may lack logs:PutLogEvents".to_owned(),
            ],
            Self::Aws(AwsError::AccessDenied { message, .. }) if message.contains("kms:") => vec![
                "the transcript is encrypted with KMS: reading it needs kms:Decrypt on that key as well".to_owned(),
            ],
            Self::Aws(AwsError::AccessDenied { .. }) => vec![
                "the message names the missing permission; transcripts of other people's sessions are often readable only by auditors".to_owned(),
            ],
            Self::Aws(e) => e.hints(),
        }
    }

    /// The exit-code class.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            Self::NotLogged { .. } | Self::NotThere { .. } => ErrorKind::Usage,
            Self::NotUploaded { .. } | Self::NoStream { .. } => ErrorKind::NotFound,
            Self::Aws(e) => e.kind(),
        }
    }
}

impl crate::error::Classify for TranscriptError {
    fn classified(&self) -> crate::error::Classified {
        crate::error::Classified::new(self.kind(), self.hints())
    }
}

/// A fetched transcript.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// The terminal output, raw.
    pub bytes: Vec<u8>,
    /// The CloudWatch events it came from (empty for S3).
    pub records: Vec<LogRecord>,
    /// Where GetLogEvents continues (CloudWatch only), for following.
    pub next: Option<String>,
}

/// Where a session is logged, the copy to read and its content: the copy asked for, else the
/// one its document suggests (see [`Location::choose`]).
pub async fn read(
    api: &dyn SsmApi,
    documents: &mut Documents,
    session: &str,
    document: Option<&str>,
    wanted: Option<Source>,
    active: bool,
) -> Result<(Location, Source, Transcript), TranscriptError> {
    let location = match document {
        Some(doc) => documents.location(api, doc, session).await,
        None => Location::default(),
    };
    let source = location
        .choose(wanted, active)
        .ok_or_else(|| TranscriptError::NotLogged {
            session: session.to_owned(),
            document: document.unwrap_or("(none)").to_owned(),
        })?;
    let transcript = fetch(api, session, &location, source, active).await?;
    Ok((location, source, transcript))
}

/// Reads a session's transcript from `source`.
pub async fn fetch(
    api: &dyn SsmApi,
    session: &str,
    location: &Location,
    source: Source,
    active: bool,
) -> Result<Transcript, TranscriptError> {
    match source {
        Source::S3 => {
            let s3 = location
                .s3
                .as_ref()
                .ok_or_else(|| not_there(session, "S3", location))?;
            match api.get_object(&s3.bucket, &s3.key).await {
                Ok(bytes) => Ok(Transcript {
                    bytes,
                    ..Transcript::default()
                }),
                Err(AwsError::NotFound { .. }) => Err(TranscriptError::NotUploaded {
                    session: session.to_owned(),
                    location: format!("s3://{}/{}", s3.bucket, s3.key),
                    active,
                }),
                Err(e) => Err(e.into()),
            }
        }
        Source::Cloudwatch => {
            let cw = location
                .cloudwatch
                .as_ref()
                .ok_or_else(|| not_there(session, "CloudWatch Logs", location))?;
            let mut out = Transcript::default();
            let mut token: Option<String> = None;
            loop {
                let page = match api
                    .log_events(&cw.group, &cw.stream, token.as_deref())
                    .await
                {
                    Ok(p) => p,
                    Err(AwsError::NotFound { .. }) => {
                        return Err(TranscriptError::NoStream {
                            session: session.to_owned(),
                            group: cw.group.clone(),
                            streaming: cw.streaming,
                        });
                    }
                    Err(e) => return Err(e.into()),
                };
                let done = page.events.is_empty() || page.next == token;
                for r in &page.events {
                    out.bytes
                        .extend_from_slice(&record_output(&r.message, !cw.streaming));
                }
                out.records.extend(page.events);
                token = page.next;
                if done {
                    break;
                }
            }
            out.next = token;
            Ok(out)
        }
    }
}

fn not_there(session: &str, source_name: &'static str, location: &Location) -> TranscriptError {
    if location.is_logged() {
        TranscriptError::NotThere {
            session: session.to_owned(),
            source_name,
            described: location.describe(),
        }
    } else {
        TranscriptError::NotLogged {
            session: session.to_owned(),
            document: "(unknown)".to_owned(),
        }
    }
}

/// The terminal output one CloudWatch event carries: a streamed record's `sessionData`, or a
/// plain line (uploaded at the end, one event per line).
pub fn record_output(message: &str, plain: bool) -> Vec<u8> {
    if !plain
        && let Ok(v) = serde_json::from_str::<Value>(message)
        && let Some(data) = v.get("sessionData").and_then(Value::as_array)
    {
        return data
            .iter()
            .filter_map(Value::as_str)
            .collect::<String>()
            .into_bytes();
    }
    let mut line = message.as_bytes().to_vec();
    line.push(b'\n');
    line
}

/// The transcript as plain text: escape sequences removed, and each line as a terminal would
/// have left it (a carriage return starts the line over, a backspace erases).
pub fn to_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let (body, newline) = match line.strip_suffix(b"\n") {
            Some(b) => (b, true),
            None => (line, false),
        };
        let mut cells: Vec<char> = Vec::new();
        let mut col = 0usize;
        // Carriage returns and backspaces move the cursor; the text between them is stripped
        // of escape sequences by strip-ansi-escapes (which drops those two as well).
        let mut rest = body;
        loop {
            let cut = rest.iter().position(|&b| b == b'\r' || b == 0x08);
            let (segment, mover) = match cut {
                Some(i) => (&rest[..i], rest.get(i).copied()),
                None => (rest, None),
            };
            for c in String::from_utf8_lossy(&strip_ansi_escapes::strip(segment)).chars() {
                if col < cells.len() {
                    cells[col] = c;
                } else {
                    cells.push(c);
                }
                col += 1;
            }
            match (mover, cut) {
                (Some(b'\r'), Some(i)) => {
                    col = 0;
                    rest = &rest[i + 1..];
                }
                (Some(_), Some(i)) => {
                    col = col.saturating_sub(1);
                    rest = &rest[i + 1..];
                }
                _ => break,
            }
        }
        out.extend(cells);
        if newline {
            out.push('\n');
        }
    }
    out
}

/// A cell colour as the terminal had it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Colour {
    /// The terminal's default.
    #[default]
    Default,
    /// One of the 256 indexed colours.
    Indexed(u8),
    /// A 24-bit colour.
    Rgb(u8, u8, u8),
}

/// How a run of cells looked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Look {
    /// Foreground.
    pub fg: Colour,
    /// Background.
    pub bg: Colour,
    /// Bold.
    pub bold: bool,
    /// Italic.
    pub italic: bool,
    /// Underlined.
    pub underline: bool,
    /// Foreground and background swapped.
    pub inverse: bool,
}

/// One line of the rendered transcript: runs of text with their looks, and the plain text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScreenLine {
    /// Text runs, left to right.
    pub runs: Vec<(Look, String)>,
    /// The line's text without looks (for searching).
    pub text: String,
}

/// The transcript as a terminal `width` columns wide showed it, line by line: a vt100 screen
/// emulation (vt100 crate) tall enough to hold it all, so cursor movements, erasing and colours
/// come out as they did. At most `max_lines` lines are kept: the transcript's tail, with the
/// count of lines left out before it.
pub fn render_screen(bytes: &[u8], width: u16, max_lines: usize) -> (Vec<ScreenLine>, usize) {
    let width = width.max(10);
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    // Beyond the cap, start after the newline that leaves `max_lines` lines.
    let (start, omitted) = if newlines >= max_lines {
        let skip = newlines + 1 - max_lines;
        let at = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(skip - 1)
            .map_or(0, |(i, _)| i + 1);
        (at, skip)
    } else {
        (0, 0)
    };
    let bytes = &bytes[start..];
    // Rows: every line, each wrapped as the width needs, and a screenful to spare.
    let wrapped: usize = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.len() / usize::from(width) + 1)
        .sum();
    let rows = u16::try_from((wrapped + 2).min(usize::from(u16::MAX))).unwrap_or(u16::MAX);
    let (Some(rows_nz), Some(cols)) = (
        std::num::NonZeroU16::new(rows.max(1)),
        std::num::NonZeroU16::new(width),
    ) else {
        return (Vec::new(), omitted);
    };
    let mut parser = vt100::Parser::new(rows_nz, cols, 0);
    // Lines end with bare newlines in some copies (CloudWatch's plain lines): a terminal in
    // its usual mode would return to the first column on each.
    let mut fed = Vec::with_capacity(bytes.len() + newlines);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            fed.push(b'\r');
        }
        fed.push(b);
        prev = b;
    }
    parser.process(&fed);
    let screen = parser.screen();
    let used = screen.cursor_position().0.saturating_add(1).min(rows);
    let mut lines = Vec::with_capacity(usize::from(used));
    for row in 0..used {
        let mut line = ScreenLine::default();
        for col in 0..width {
            let Some(cell) = screen.cell(row, col) else {
                break;
            };
            if cell.is_wide_continuation() {
                continue;
            }
            let text = if cell.has_contents() {
                cell.contents()
            } else {
                " "
            };
            let look = Look {
                fg: colour(cell.fgcolor()),
                bg: colour(cell.bgcolor()),
                bold: cell.bold(),
                italic: cell.italic(),
                underline: cell.underline(),
                inverse: cell.inverse(),
            };
            match line.runs.last_mut() {
                Some((l, t)) if *l == look => t.push_str(text),
                _ => line.runs.push((look, text.to_owned())),
            }
            line.text.push_str(text);
        }
        // Trailing blanks are not part of the line, unless a background shows them.
        let trimmed = line.text.trim_end().len();
        line.text.truncate(trimmed);
        while let Some((look, t)) = line.runs.last_mut() {
            if look.bg != Colour::Default || look.inverse {
                break;
            }
            let keep = t.trim_end().len();
            t.truncate(keep);
            if !t.is_empty() {
                break;
            }
            line.runs.pop();
        }
        lines.push(line);
    }
    (lines, omitted)
}

fn colour(c: vt100::Color) -> Colour {
    match c {
        vt100::Color::Default => Colour::Default,
        vt100::Color::Idx(i) => Colour::Indexed(i),
        vt100::Color::Rgb(r, g, b) => Colour::Rgb(r, g, b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_screen_keeps_colours_and_what_the_cursor_did() {
        let raw = b"plain\r\n\x1b[1;31mred\x1b[0m after\r\nabc\rX\r\nbare\nnext";
        let (lines, omitted) = render_screen(raw, 40, 100);
        assert_eq!(omitted, 0);
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["plain", "red after", "Xbc", "bare", "next"]);
        let red = &lines[1].runs[0];
        assert_eq!(red.1, "red");
        assert!(red.0.bold);
        assert_eq!(red.0.fg, Colour::Indexed(1));
        assert_eq!(lines[1].runs[1], (Look::default(), " after".to_owned()));
        // The cap keeps the tail and says how much it left out.
        let many: String = (0..50).map(|i| format!("line {i}\r\n")).collect();
        let (lines, omitted) = render_screen(many.as_bytes(), 20, 10);
        assert_eq!(omitted, 41);
        assert_eq!(lines.first().unwrap().text, "line 41");
        assert_eq!(lines.len(), 10);
        // Long lines wrap at the width.
        let (lines, _) = render_screen(&[b'x'; 25], 10, 10);
        assert_eq!(lines.len(), 3);
    }

    const SUDO: &str = r#"{"inputs":{"s3BucketName":"logs","s3KeyPrefix":"sudo/","cloudWatchLogGroupName":"/g","cloudWatchStreamingEnabled":true}}"#;

    #[test]
    fn locations_follow_the_document_and_the_session_state() {
        let l = Location::from_document(SUDO, "alice-1");
        assert_eq!(l.s3.as_ref().unwrap().key, "sudo/alice-1.log");
        assert_eq!(l.cloudwatch.as_ref().unwrap().stream, "alice-1");
        assert_eq!(
            l.describe(),
            "s3://logs/sudo/alice-1.log + cloudwatch:/g (streamed)"
        );
        assert_eq!(l.choose(None, false), Some(Source::S3));
        assert_eq!(l.choose(None, true), Some(Source::Cloudwatch));
        assert_eq!(l.choose(Some(Source::S3), true), Some(Source::S3));
        let plain = Location::from_document(r#"{"inputs":{"s3BucketName":"logs"}}"#, "b-2");
        assert_eq!(plain.s3.unwrap().key, "b-2.log");
        let none = Location::from_document("{}", "x");
        assert!(!none.is_logged());
        assert_eq!(none.choose(None, false), None);
        assert_eq!(none.describe(), "-");
    }

    #[test]
    fn text_is_what_the_terminal_showed() {
        let raw = b"\x1b[1;32muser@host\x1b[0m:~$ ls\r\r\nfile\r\nabc\rX\nab\x08\x08Z\n";
        assert_eq!(to_text(raw), "user@host:~$ ls\nfile\nXbc\nZb\n");
        let streamed = r#"{"sessionData":["one\r\n","two"]}"#;
        assert_eq!(record_output(streamed, false), b"one\r\ntwo");
        assert_eq!(record_output("plain line", true), b"plain line\n");
    }
}
