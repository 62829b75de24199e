//! The sessions table: the caller's active sessions first, then history.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

use super::{Theme, spinner};
use crate::app::App;
use crate::app::sessions::is_active;

/// Draws the sessions view into `area`.
pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let list = &app.sessions;
    let active = list.items.iter().filter(|s| is_active(s)).count();
    let mut title = vec![
        Span::styled(" Sessions ", theme.title),
        Span::styled(
            format!("{active} active, {} ended", list.items.len() - active),
            theme.value,
        ),
    ];
    if list.loading {
        title.push(Span::styled(
            format!(" {} loading", spinner(app)),
            theme.dim,
        ));
    }
    title.push(Span::raw(" "));
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(Line::from(title));
    if list.items.is_empty() {
        let text = match (&list.error, list.loading) {
            (Some(e), _) => Line::styled(format!("cannot list sessions: {e}"), theme.error),
            (None, true) => Line::styled(format!("{} loading sessions…", spinner(app)), theme.dim),
            (None, false) => Line::styled("no sessions", theme.dim),
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    let me = app.identity.as_ref().map(|i| i.arn.as_str());
    // Narrow terminals drop the start time, then never show the document column.
    let inner = block.inner(area).width;
    let show_start = inner >= 96;
    let show_doc = inner >= 126;
    let mut titles = vec!["SESSION", "TARGET", "STATUS"];
    let mut widths = vec![
        Constraint::Min(24),
        Constraint::Length(19),
        Constraint::Length(10),
    ];
    if show_start {
        titles.push("START");
        widths.push(Constraint::Length(17));
    }
    titles.extend(["OWNER", "REASON"]);
    widths.extend([Constraint::Length(8), Constraint::Min(10)]);
    if show_doc {
        titles.push("DOCUMENT");
        widths.push(Constraint::Length(28));
    }
    let start = list.scroll.offset;
    let end = (start + app.list_rows()).min(list.items.len());
    let rows = list
        .items
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let owner = match (&s.owner, me) {
                (Some(o), Some(me)) if o == me => "you".to_owned(),
                (Some(o), _) => o.rsplit('/').next().unwrap_or(o).to_owned(),
                (None, _) => "—".to_owned(),
            };
            let style = if start + n == list.scroll.selected {
                theme.selected
            } else if is_active(s) {
                theme.text
            } else {
                theme.dim
            };
            let mut cells = vec![
                Cell::from(s.id.clone()),
                Cell::from(s.target.clone()),
                Cell::from(s.status.clone()),
            ];
            if show_start {
                cells.push(Cell::from(
                    s.start.as_deref().map_or("—".to_owned(), short_rfc3339),
                ));
            }
            cells.push(Cell::from(owner));
            cells.push(Cell::from(
                s.reason.clone().unwrap_or_else(|| "—".to_owned()),
            ));
            if show_doc {
                cells.push(Cell::from(
                    s.document.clone().unwrap_or_else(|| "—".to_owned()),
                ));
            }
            Row::new(cells).style(style)
        });
    let table = Table::new(rows, widths)
        .header(Row::new(titles).style(theme.title))
        .block(block);
    frame.render_widget(table, area);
}

/// `2024-05-01T12:10:00Z` → `2024-05-01 12:10Z`: minutes are enough in a table.
fn short_rfc3339(s: &str) -> String {
    match (s.get(..10), s.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time}Z"),
        _ => s.to_owned(),
    }
}
