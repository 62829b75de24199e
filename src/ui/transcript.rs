//! The transcript pane over the sessions view: the session's output with its colours (as the
//! app rendered it through a terminal emulation), search matches highlighted, and where it
//! was read.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::{Theme, spinner};
use crate::app::App;
use crate::app::transcript::TranscriptPane;
use crate::transcripts::{Colour, Look, Source};

/// Draws the pane over `area`.
pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(pane) = &app.transcript else {
        return;
    };
    frame.render_widget(Clear, area);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(title(app, pane, theme));
    let inner = block.inner(area);
    let body: Vec<Line> = if pane.loading {
        vec![Line::styled(
            format!("{} reading the transcript…", spinner(app)),
            theme.dim,
        )]
    } else if let Some(e) = &pane.error {
        vec![Line::styled(
            format!("cannot read the transcript: {e}"),
            theme.error,
        )]
    } else if pane.lines.is_empty() {
        vec![Line::styled("the transcript is empty", theme.dim)]
    } else {
        pane.lines
            .iter()
            .skip(pane.top)
            .take(usize::from(inner.height))
            .map(|l| {
                let runs = l
                    .runs
                    .iter()
                    .map(|(look, text)| (style(*look), text.as_str()));
                highlight(runs, &pane.search, theme)
            })
            .collect()
    };
    frame.render_widget(Paragraph::new(body).block(block), area);
}

fn title<'a>(app: &App, pane: &'a TranscriptPane, theme: &Theme) -> Line<'a> {
    // Most telling first: a narrow border cuts the end.
    let mut spans = vec![
        Span::styled(" Transcript ", theme.title),
        Span::styled(format!("{} ", pane.session_id), theme.value),
    ];
    if let Some(source) = pane.source {
        let from = match source {
            Source::S3 => "S3",
            Source::Cloudwatch => "CloudWatch Logs",
        };
        spans.push(Span::styled(format!("from {from} "), theme.dim));
    }
    if !pane.lines.is_empty() {
        let last = (pane.top + app.transcript_rows()).min(pane.lines.len());
        spans.push(Span::styled(
            format!(
                "{}–{last}/{}{} ",
                pane.top + 1,
                pane.lines.len(),
                if pane.omitted > 0 {
                    format!(" (the first {} left out)", pane.omitted)
                } else {
                    String::new()
                }
            ),
            theme.dim,
        ));
    }
    if pane.following {
        spans.push(Span::styled(" FOLLOWING ", theme.badge));
        spans.push(Span::raw(" "));
    }
    if !pane.search.is_empty() {
        spans.push(Span::styled(format!("/{} ", pane.search), theme.key));
    }
    spans.push(Span::styled(format!("on {} ", pane.target), theme.text));
    Line::from(spans)
}

/// Runs of styled text, with every occurrence of `needle` shown in the match style.
fn highlight<'a>(
    runs: impl Iterator<Item = (Style, &'a str)>,
    needle: &str,
    theme: &Theme,
) -> Line<'static> {
    let runs: Vec<(Style, &str)> = runs.collect();
    if needle.is_empty() {
        return Line::from(
            runs.into_iter()
                .map(|(s, t)| Span::styled(t.to_owned(), s))
                .collect::<Vec<_>>(),
        );
    }
    // Byte ranges of the matches in the whole line, then each run cut at their edges.
    let text: String = runs.iter().map(|(_, t)| *t).collect();
    let ranges: Vec<(usize, usize)> = text
        .match_indices(needle)
        .map(|(i, m)| (i, i + m.len()))
        .collect();
    let mut spans = Vec::new();
    let mut at = 0usize;
    for (style, t) in runs {
        let end = at + t.len();
        let mut cuts = vec![at, end];
        for &(a, b) in &ranges {
            for c in [a, b] {
                if c > at && c < end {
                    cuts.push(c);
                }
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        for w in cuts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let piece = text.get(a..b).unwrap_or_default().to_owned();
            let inside = ranges.iter().any(|&(x, y)| a >= x && b <= y);
            spans.push(Span::styled(
                piece,
                if inside { theme.matched } else { style },
            ));
        }
        at = end;
    }
    Line::from(spans)
}

fn style(look: Look) -> Style {
    let mut s = Style::default();
    if let Some(c) = colour(look.fg) {
        s = s.fg(c);
    }
    if let Some(c) = colour(look.bg) {
        s = s.bg(c);
    }
    let mut m = Modifier::empty();
    if look.bold {
        m |= Modifier::BOLD;
    }
    if look.italic {
        m |= Modifier::ITALIC;
    }
    if look.underline {
        m |= Modifier::UNDERLINED;
    }
    if look.inverse {
        m |= Modifier::REVERSED;
    }
    s.add_modifier(m)
}

fn colour(c: Colour) -> Option<Color> {
    match c {
        Colour::Default => None,
        Colour::Indexed(i) => Some(Color::Indexed(i)),
        Colour::Rgb(r, g, b) => Some(Color::Rgb(r, g, b)),
    }
}
