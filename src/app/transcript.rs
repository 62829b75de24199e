//! The transcript pane: a session's transcript over the sessions view, rendered as the
//! terminal showed it, scrollable, searchable (`/`, `n`, `N`), and followed live (`f`) when its
//! document streams to CloudWatch Logs.

use super::{App, Effect, Intent, Level, Mode};
use crate::transcripts::{ScreenLine, Source, render_screen};

/// At most this many lines are rendered (the tail); `ssmtui logs ID` prints everything.
pub const MAX_LINES: usize = 5_000;

/// A transcript as the service layer fetched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedTranscript {
    /// The terminal output.
    pub bytes: Vec<u8>,
    /// Where it was read.
    pub source: Source,
    /// Where the session is logged, in words.
    pub location: String,
    /// The CloudWatch stream to follow (group, stream, next token), when it streams.
    pub follow: Option<Follow>,
}

/// Where a live transcript continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follow {
    /// Log group.
    pub group: String,
    /// Log stream.
    pub stream: String,
    /// GetLogEvents' forward token.
    pub token: Option<String>,
}

/// The open pane.
#[derive(Debug, Clone, Default)]
pub struct TranscriptPane {
    /// The session shown.
    pub session_id: String,
    /// Its target.
    pub target: String,
    /// Whether the session was running when the pane opened.
    pub active: bool,
    /// Fetching.
    pub loading: bool,
    /// Why it could not be read.
    pub error: Option<String>,
    /// Where it was read.
    pub source: Option<Source>,
    /// Where the session is logged.
    pub location: String,
    /// The raw output so far.
    pub bytes: Vec<u8>,
    /// The output as rendered at [`Self::width`].
    pub lines: Vec<ScreenLine>,
    /// Lines left out before the first rendered one.
    pub omitted: usize,
    /// The width the lines were rendered at.
    pub width: u16,
    /// The first line shown.
    pub top: usize,
    /// The committed search text.
    pub search: String,
    /// The search being typed.
    pub input: String,
    /// The stream to follow, if the transcript streams.
    pub follow: Option<Follow>,
    /// Following: new output is fetched every second and the view stays at the end.
    pub following: bool,
    /// Which following the polls in flight belong to: each `f` that starts one counts up, so
    /// the answer to a poll of an earlier one is dropped.
    pub follow_generation: u64,
    /// The line of the current search match.
    pub current: Option<usize>,
}

impl TranscriptPane {
    /// A pane waiting for its transcript.
    pub fn opening(session_id: &str, target: &str, active: bool) -> Self {
        Self {
            session_id: session_id.to_owned(),
            target: target.to_owned(),
            active,
            loading: true,
            ..Self::default()
        }
    }

    /// The transcript arrived.
    pub fn loaded(&mut self, t: LoadedTranscript, width: u16, page: usize) {
        self.loading = false;
        self.error = None;
        self.source = Some(t.source);
        self.location = t.location;
        self.bytes = t.bytes;
        self.follow = t.follow;
        self.render(width);
        // A live session opens at its end, an ended one at its start.
        if self.active {
            self.to_end(page);
        }
    }

    /// More output of a followed session.
    pub fn append(&mut self, bytes: &[u8], token: Option<String>, page: usize) {
        if let (Some(f), Some(t)) = (&mut self.follow, token) {
            f.token = Some(t);
        }
        if bytes.is_empty() {
            return;
        }
        let at_end = self.top + page >= self.lines.len();
        self.bytes.extend_from_slice(bytes);
        let width = self.width;
        self.render(width);
        if self.following || at_end {
            self.to_end(page);
        }
    }

    /// Renders the output at `width` columns (again, after a resize).
    pub fn render(&mut self, width: u16) {
        let (lines, omitted) = render_screen(&self.bytes, width, MAX_LINES);
        self.lines = lines;
        self.omitted = omitted;
        self.width = width;
        self.top = self.top.min(self.lines.len().saturating_sub(1));
    }

    /// Scrolls by `delta` lines, within the text.
    pub fn scroll(&mut self, delta: isize, page: usize) {
        let max = self.lines.len().saturating_sub(page);
        self.top = self.top.saturating_add_signed(delta).min(max);
    }

    /// Shows the last page.
    pub fn to_end(&mut self, page: usize) {
        self.top = self.lines.len().saturating_sub(page);
    }

    /// Lines containing the search text.
    pub fn matches(&self) -> Vec<usize> {
        if self.search.is_empty() {
            return Vec::new();
        }
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.text.contains(&self.search))
            .map(|(i, _)| i)
            .collect()
    }

    /// Moves to the next match after the current one (or the top line, before any), or the
    /// previous one; wrapping; `from_current` includes the starting line itself. False when
    /// nothing matches.
    pub fn jump(&mut self, forward: bool, from_current: bool, page: usize) -> bool {
        let matches = self.matches();
        let Some(&first) = matches.first() else {
            self.current = None;
            return false;
        };
        let here = match self.current {
            Some(c) if !from_current => c,
            _ => self.top,
        };
        let next = if forward {
            matches
                .iter()
                .copied()
                .find(|&m| if from_current { m >= here } else { m > here })
                .unwrap_or(first)
        } else {
            matches
                .iter()
                .rev()
                .copied()
                .find(|&m| m < here)
                .unwrap_or(matches[matches.len() - 1])
        };
        // The match on the first line, unless the text ends before a page is full.
        self.current = Some(next);
        self.top = next.min(self.lines.len().saturating_sub(page));
        true
    }
}

impl App {
    /// The columns inside the pane's border.
    pub(super) fn transcript_width(&self) -> u16 {
        self.size.0.saturating_sub(2).max(10)
    }

    /// The lines the pane shows: the body less its border (no column titles, unlike the
    /// tables [`App::list_rows`] is for).
    pub fn transcript_rows(&self) -> usize {
        usize::from(self.size.1.saturating_sub(super::LIST_CHROME_ROWS - 1)).max(1)
    }

    /// `l` in the sessions view: the selected session's transcript.
    pub(super) fn open_transcript(&mut self) -> Vec<Effect> {
        let Some(s) = self.sessions.selected() else {
            self.set_status(Level::Warn, "no session selected".to_owned());
            return Vec::new();
        };
        let active = super::sessions::is_active(s);
        let effect = Effect::LoadTranscript {
            session_id: s.id.clone(),
            document: s.document.clone(),
            active,
        };
        self.transcript = Some(TranscriptPane::opening(&s.id, &s.target, active));
        self.modes.push(Mode::Transcript);
        vec![effect]
    }

    pub(super) fn transcript_intent(&mut self, intent: Intent) -> Vec<Effect> {
        let page = self.transcript_rows();
        let Some(pane) = &mut self.transcript else {
            self.modes.pop();
            return Vec::new();
        };
        let step = page as isize;
        match intent {
            Intent::Close => {
                self.transcript = None;
                self.modes.pop();
            }
            Intent::Down => pane.scroll(1, page),
            Intent::Up => pane.scroll(-1, page),
            Intent::PageDown => pane.scroll(step, page),
            Intent::PageUp => pane.scroll(-step, page),
            Intent::Top => pane.top = 0,
            Intent::Bottom => pane.to_end(page),
            Intent::Search => {
                pane.input = pane.search.clone();
                pane.current = None;
                self.modes.push(Mode::TranscriptSearch);
            }
            Intent::NextMatch | Intent::PrevMatch => {
                if pane.search.is_empty() {
                    self.set_status(Level::Info, "type / to search".to_owned());
                } else if !pane.jump(intent == Intent::NextMatch, false, page) {
                    let text = format!("\"{}\" is not in the transcript", pane.search);
                    self.set_status(Level::Warn, text);
                }
            }
            Intent::Follow => return self.toggle_follow(),
            Intent::Help => {
                self.help_scroll = 0;
                self.modes.push(Mode::Help);
            }
            _ => {}
        }
        Vec::new()
    }

    fn toggle_follow(&mut self) -> Vec<Effect> {
        let page = self.transcript_rows();
        let Some(pane) = &mut self.transcript else {
            return Vec::new();
        };
        if pane.following {
            pane.following = false;
            self.set_status(Level::Info, "stopped following".to_owned());
            return Vec::new();
        }
        let Some(follow) = pane.follow.clone() else {
            let why = if pane.loading {
                "the transcript is still loading".to_owned()
            } else {
                "only a transcript streamed to CloudWatch Logs can be followed".to_owned()
            };
            self.set_status(Level::Warn, why);
            return Vec::new();
        };
        pane.following = true;
        pane.follow_generation += 1;
        pane.to_end(page);
        let session_id = pane.session_id.clone();
        let generation = pane.follow_generation;
        self.set_status(
            Level::Info,
            "following: new output appears as it arrives".to_owned(),
        );
        vec![Effect::PollTranscript {
            session_id,
            generation,
            follow,
        }]
    }

    pub(super) fn transcript_search_intent(&mut self, intent: Intent) -> Vec<Effect> {
        let page = self.transcript_rows();
        let Some(pane) = &mut self.transcript else {
            self.modes.pop();
            return Vec::new();
        };
        match intent {
            Intent::Accept => {
                pane.search = std::mem::take(&mut pane.input);
                self.modes.pop();
                if !pane.search.is_empty() && !pane.jump(true, true, page) {
                    let text = format!("\"{}\" is not in the transcript", pane.search);
                    self.set_status(Level::Warn, text);
                }
            }
            Intent::Cancel => {
                pane.input.clear();
                self.modes.pop();
            }
            Intent::DeleteChar => {
                pane.input.pop();
            }
            Intent::ClearInput => pane.input.clear(),
            _ => {}
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pane(text: &str) -> TranscriptPane {
        let mut p = TranscriptPane::opening("alice-1", "i-1", false);
        p.loaded(
            LoadedTranscript {
                bytes: text.as_bytes().to_vec(),
                source: Source::S3,
                location: "s3://b/k".to_owned(),
                follow: None,
            },
            40,
            3,
        );
        p
    }

    #[test]
    fn scrolling_searching_and_following() {
        let text: String = (0..10).map(|i| format!("line {i}\r\n")).collect();
        let mut p = pane(&text);
        assert_eq!(p.lines.len(), 10);
        assert_eq!(p.top, 0);
        p.scroll(100, 3);
        assert_eq!(p.top, 7);
        p.scroll(-100, 3);
        assert_eq!(p.top, 0);
        p.search = "line 7".to_owned();
        assert!(p.jump(true, true, 3));
        assert_eq!((p.current, p.top), (Some(7), 7));
        // `n` goes on from the current match even where the page cannot scroll further, and
        // wraps to the first.
        p.search = "line".to_owned();
        for want in [8, 9, 0] {
            assert!(p.jump(true, false, 3));
            assert_eq!(p.current, Some(want));
        }
        assert_eq!(p.top, 0);
        assert!(p.jump(false, false, 3));
        assert_eq!((p.current, p.top), (Some(9), 7));
        p.search = "absent".to_owned();
        assert!(!p.jump(true, true, 3));
        // Appended output keeps a follower at the end.
        p.following = true;
        p.append(b"more\r\nand more\r\n", Some("f/2".to_owned()), 3);
        assert_eq!(p.lines.len(), 12);
        assert_eq!(p.top, 9);
    }
}
