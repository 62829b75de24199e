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
    contents: HashMap<String, String>,
}

impl Documents {
    /// Where `document` logs `session_id`.
    pub async fn location(
        &mut self,
        api: &dyn SsmApi,
        document: &str,
        session_id: &str,
    ) -> Result<Location, AwsError> {
        if let Some(content) = self.contents.get(document) {
            return Ok(Location::from_document(content, session_id));
        }
        let content = api.get_document(document).await?;
        let location = Location::from_document(&content, session_id);
        self.contents.insert(document.to_owned(), content);
        Ok(location)
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
            Self::NotThere { .. } => vec![
                "leave out --source (and --json and --follow, which read CloudWatch Logs) to read the copy the document suggests".to_owned(),
            ],
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
            Self::Aws(AwsError::AccessDenied {
                operation: "GetObject",
                message,
            }) if !message.contains("kms:") && !message.contains("s3:GetObject") => vec![
                "S3 also answers AccessDenied for an object that does not exist when s3:ListBucket is not allowed: a session that ended moments ago may not be uploaded yet".to_owned(),
                "otherwise reading transcripts needs s3:GetObject on the bucket (and kms:Decrypt on its key)".to_owned(),
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
        Some(doc) => documents.location(api, doc, session).await?,
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
                Err(e @ AwsError::NotFound { .. }) if e.to_string().contains("bucket") => {
                    Err(e.into())
                }
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
                // The end of a stream is where the token comes back unchanged (empty pages may
                // come before it, for gaps in time).
                let done = page.next.is_none() || page.next == token;
                out.bytes
                    .extend_from_slice(&events_output(&page.events, !cw.streaming));
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

/// The terminal output CloudWatch events carry: each streamed record's `sessionData`, or
/// plain lines (uploaded at the end, one event per line).
pub fn events_output(events: &[LogRecord], plain: bool) -> Vec<u8> {
    events
        .iter()
        .flat_map(|r| record_output(&r.message, plain))
        .collect()
}

/// The terminal output of one event (see [`events_output`]).
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

/// Columns of the terminal the plain text is rendered on: wide, so lines are rarely wrapped.
pub const TEXT_WIDTH: u16 = 1024;

/// The transcript as plain text: each line as the terminal left it (escape sequences applied
/// by the same screen emulation as [`render_screen`], then dropped with the colours).
pub fn to_text(bytes: &[u8]) -> String {
    let (lines, _) = render_screen(bytes, TEXT_WIDTH, usize::MAX);
    let mut out = String::with_capacity(bytes.len());
    for l in lines {
        out.push_str(&l.text);
        out.push('\n');
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

/// Rows of the emulated screen; output scrolls through it into the scrollback, which is
/// harvested and emptied every few lines, so memory stays bounded whatever the length.
const SCREEN_ROWS: u16 = 50;
/// Scrollback rows kept between harvests (bytes are fed at most this many lines at a time).
const SCROLLBACK: usize = 200;

/// The transcript as a terminal `width` columns wide showed it, line by line: the bytes go
/// through a vt100 screen emulation (the vt100 crate), so colours, cursor movements and
/// erasing come out as they did. Rows that scroll off the top are final and collected; what
/// is on the screen at the end is added. Two things differ from a terminal on purpose, to
/// keep history: a full-screen clear first scrolls the screen into the history (as many
/// terminal emulators do), and a session that ended inside a full-screen program (`less`,
/// `vim`) is shown with that program left. At most `max_lines` lines are kept: the tail,
/// with the count of lines left out before it.
pub fn render_screen(bytes: &[u8], width: u16, max_lines: usize) -> (Vec<ScreenLine>, usize) {
    let max_lines = max_lines.max(1);
    let (Some(rows), Some(cols)) = (
        std::num::NonZeroU16::new(SCREEN_ROWS),
        std::num::NonZeroU16::new(width.max(10)),
    ) else {
        return (Vec::new(), 0);
    };
    let mut parser = vt100::Parser::new(rows, cols, SCROLLBACK + usize::from(SCREEN_ROWS));
    let mut lines: std::collections::VecDeque<ScreenLine> = std::collections::VecDeque::new();
    let mut omitted = 0usize;
    let mut keep = |line: ScreenLine, lines: &mut std::collections::VecDeque<ScreenLine>| {
        lines.push_back(line);
        if lines.len() > max_lines {
            lines.pop_front();
            omitted += 1;
        }
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut prev = 0u8;
    // Rows the pending bytes can add at most: one per line feed, one per `width` characters.
    let mut pending_rows = 0usize;
    let per_row = usize::from(cols.get());
    let mut i = 0usize;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"\x1b[2J") || rest.starts_with(b"\x1b[3J") {
            // A full-screen (or scrollback) clear: scroll what the screen shows into the
            // history first, by line feeds on the last row, one per row in use.
            parser.process(&pending);
            pending.clear();
            pending_rows = 0;
            let used = last_written_row(parser.screen()).map_or(0, |r| usize::from(r) + 1);
            let push = format!("\x1b7\x1b[{SCREEN_ROWS};1H{}\x1b8", "\n".repeat(used));
            parser.process(push.as_bytes());
            for line in harvest(&mut parser, false) {
                keep(line, &mut lines);
            }
        }
        let b = bytes[i];
        // Copies whose lines end with a bare newline (CloudWatch's plain lines): a terminal in
        // its usual mode would return to the first column.
        if b == b'\n' && prev != b'\r' {
            pending.push(b'\r');
        }
        pending.push(b);
        prev = b;
        i += 1;
        if b == b'\n' {
            pending_rows += 1;
        }
        if pending_rows + pending.len() / per_row >= SCROLLBACK {
            parser.process(&pending);
            pending.clear();
            pending_rows = 0;
            for line in harvest(&mut parser, false) {
                keep(line, &mut lines);
            }
        }
    }
    parser.process(&pending);
    // Leave a full-screen program the session ended in.
    parser.process(b"\x1b[?1049l");
    for line in harvest(&mut parser, true) {
        keep(line, &mut lines);
    }
    (lines.into(), omitted)
}

/// The rows that have scrolled into the scrollback (oldest first), which is then emptied;
/// with `all`, also the screen's rows down to the cursor or the last written one.
fn harvest(parser: &mut vt100::Parser, all: bool) -> Vec<ScreenLine> {
    let screen = parser.screen_mut();
    let mut out = Vec::new();
    let back = screen.scrollback_len();
    for k in (1..=back).rev() {
        screen.set_scrollback(k);
        out.push(screen_line(screen, 0));
    }
    screen.set_scrollback(0);
    screen.clear_scrollback();
    if all {
        let cursor = screen.cursor_position().0;
        let last = last_written_row(screen).map_or(cursor, |r| r.max(cursor));
        for row in 0..=last {
            out.push(screen_line(screen, row));
        }
        // The cursor's own empty line after the last output is not a line of the transcript.
        if out.last().is_some_and(|l: &ScreenLine| l.text.is_empty()) {
            out.pop();
        }
    }
    out
}

/// The lowest row of the screen with anything written in it.
fn last_written_row(screen: &vt100::Screen) -> Option<u16> {
    let (rows, cols) = screen.size();
    (0..rows.get()).rev().find(|&r| {
        (0..cols.get()).any(|c| screen.cell(r, c).is_some_and(vt100::Cell::has_contents))
    })
}

/// One visible row of the screen as runs of text with their looks.
fn screen_line(screen: &vt100::Screen, row: u16) -> ScreenLine {
    let mut line = ScreenLine::default();
    for col in 0..screen.size().1.get() {
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
    line
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
        // The cap keeps the tail and says how much it left out; far more lines than the screen
        // and its scrollback hold come through whole.
        let many: String = (0..5000).map(|i| format!("line {i}\r\n")).collect();
        let (lines, omitted) = render_screen(many.as_bytes(), 20, 10);
        assert_eq!(omitted, 4990);
        assert_eq!(lines.first().unwrap().text, "line 4990");
        assert_eq!(lines.len(), 10);
        let (all, omitted) = render_screen(many.as_bytes(), 20, usize::MAX);
        assert_eq!((all.len(), omitted), (5000, 0));
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, l)| l.text == format!("line {i}"))
        );
        // A clear keeps what was on the screen; a full-screen program left at the end is left.
        let (lines, _) = render_screen(b"a\r\nb\r\n\x1b[H\x1b[2Jafter\r\n", 20, 100);
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "after"]);
        let (lines, _) = render_screen(b"$ less f\r\n\x1b[?1049h\x1b[Hpage of f", 20, 100);
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["$ less f"]);
        // Erasing is applied: what the terminal showed, not what was typed first.
        assert_eq!(to_text(b"$ rm -rf /tmp/x\r$ \x1b[Kls\r\n"), "$ ls\n");
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
