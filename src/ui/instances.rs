//! The instance table: one row per visible instance, matched filter characters highlighted in
//! the Name column, unreachable rows dimmed, columns dropped by priority when narrow.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

use super::{Theme, spinner};
use crate::app::App;
use crate::app::instances::{Column, Row as ListRow};

/// Minimum width of the Name column; it takes whatever else is left.
const NAME_MIN: u16 = 16;

/// Fixed width of a column (Name is flexible).
fn width(col: Column) -> u16 {
    match col {
        Column::Name => NAME_MIN,
        Column::Id => 19,
        Column::State => 8,
        Column::Ping => 14,
        Column::Platform => 16,
        Column::Ip => 15,
        Column::Tag(_) => 12,
        Column::Account => 14,
        Column::Region => 14,
    }
}

/// Lower keeps longer when the terminal is narrow.
fn priority(col: Column, tags: usize) -> usize {
    match col {
        Column::Name => 0,
        Column::Account => 1,
        Column::Region => 2,
        Column::Id => 3,
        Column::Ping => 4,
        Column::State => 5,
        Column::Ip => 6,
        Column::Tag(i) => 7 + i,
        Column::Platform => 7 + tags,
    }
}

/// The columns that fit in `avail` cells, in display order.
pub fn fitting_columns(all: &[Column], tags: usize, avail: u16) -> Vec<Column> {
    let mut cols = all.to_vec();
    loop {
        let needed: u16 = cols
            .iter()
            .map(|c| width(*c) + 1)
            .sum::<u16>()
            .saturating_sub(1);
        if needed <= avail || cols.len() <= 1 {
            return cols;
        }
        let Some(drop) = cols
            .iter()
            .enumerate()
            .max_by_key(|(_, c)| priority(**c, tags))
            .map(|(i, _)| i)
        else {
            return cols;
        };
        cols.remove(drop);
    }
}

/// Draws the instances view into `area`: with a fleet, the sources strip on top.
pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    if app.fleet.is_empty() {
        return render_table(app, theme, frame, area);
    }
    let strip = Rect { height: 1, ..area };
    let rest = Rect {
        y: area.y + 1,
        height: area.height.saturating_sub(1),
        ..area
    };
    frame.render_widget(Paragraph::new(sources_line(app, theme)), strip);
    render_table(app, theme, frame, rest);
}

/// One line on the fleet's sources: how many answered, which are loading, and each failure
/// with its reason (the first one's hint too), and that `r` retries.
fn sources_line<'a>(app: &'a App, theme: &Theme) -> Line<'a> {
    use crate::app::SourceStatus;
    let ready = app
        .fleet
        .iter()
        .filter(|s| matches!(s.status, SourceStatus::Ready(_)))
        .count();
    let loading = app
        .fleet
        .iter()
        .filter(|s| matches!(s.status, SourceStatus::Loading))
        .count();
    let mut spans = vec![
        Span::styled(" sources ", theme.label),
        Span::styled(format!("{ready}/{} ok", app.fleet.len()), theme.ok),
    ];
    if loading > 0 {
        spans.push(Span::styled(
            format!(" · {} {loading} loading", spinner(app)),
            theme.dim,
        ));
    }
    let mut failed = 0;
    for s in &app.fleet {
        if let SourceStatus::Failed { reason, hint } = &s.status {
            failed += 1;
            spans.push(Span::styled(" · ✗ ", theme.error));
            spans.push(Span::styled(s.label.as_str(), theme.value));
            spans.push(Span::styled(format!(": {reason}"), theme.error));
            if failed == 1
                && let Some(hint) = hint
            {
                spans.push(Span::styled(format!(" ({hint})"), theme.dim));
            }
        }
    }
    if failed > 0 {
        spans.push(Span::styled(" · r retries", theme.dim));
    }
    Line::from(spans)
}

fn render_table(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let list = &app.instances;
    let (sort, reverse) = list.sort();
    let tags = list.tag_columns();
    let mut title = vec![
        Span::styled(" Instances ", theme.title),
        Span::styled(
            format!("{}/{}", list.visible_len(), list.total()),
            theme.value,
        ),
    ];
    let hidden = list.hidden_unreachable();
    if hidden > 0 {
        title.push(Span::styled(
            format!(" · {hidden} unreachable hidden"),
            theme.dim,
        ));
    }
    if list.loading {
        title.push(Span::styled(
            format!(" {} loading", spinner(app)),
            theme.dim,
        ));
    }
    title.push(Span::raw(" "));
    let sort_title = Line::from(vec![
        Span::styled(" sort ", theme.label),
        Span::styled(
            format!("{} {} ", sort.title(tags), if reverse { "↓" } else { "↑" }),
            theme.value,
        ),
    ])
    .right_aligned();
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(Line::from(title))
        .title(sort_title);
    let inner = block.inner(area);

    if list.visible_len() == 0 {
        let text = if let Some(e) = &list.error {
            Line::styled(format!("cannot list instances: {e}"), theme.error)
        } else if list.loading {
            Line::styled(format!("{} loading instances…", spinner(app)), theme.dim)
        } else if list.total() == 0 {
            Line::styled("no instances in this account and region", theme.dim)
        } else {
            Line::styled("no instance matches the filter (Esc clears it)", theme.dim)
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    }

    let cols = fitting_columns(&list.columns(), tags.len(), inner.width);
    let header = Row::new(cols.iter().map(|c| {
        let mut t = c.title(tags).to_uppercase();
        if *c == sort {
            t.push(if reverse { '↓' } else { '↑' });
        }
        Cell::from(t)
    }))
    .style(theme.title);
    let rows_on_screen = app.list_rows();
    let start = list.scroll.offset;
    let end = (start + rows_on_screen).min(list.visible_len());
    let rows = (start..end).filter_map(|pos| {
        let row = list.visible_row(pos)?;
        let style = if pos == list.scroll.selected {
            theme.selected
        } else if row.access.is_some() {
            theme.dim
        } else {
            theme.text
        };
        Some(
            Row::new(
                cols.iter()
                    .map(|c| cell(row, *c, tags, list.name_highlights(pos), theme)),
            )
            .style(style),
        )
    });
    let widths = cols.iter().map(|c| match c {
        Column::Name => Constraint::Min(NAME_MIN),
        other => Constraint::Length(width(*other)),
    });
    let table = Table::new(rows, widths).header(header).block(block);
    frame.render_widget(table, area);
}

fn cell<'a>(
    row: &'a ListRow,
    col: Column,
    tags: &[String],
    marks: &[u32],
    theme: &Theme,
) -> Cell<'a> {
    let i = &row.instance;
    let text = |s: Option<&'a str>| Cell::from(s.unwrap_or("—"));
    match col {
        Column::Name => Cell::from(highlighted(i.name.as_deref().unwrap_or("—"), marks, theme)),
        Column::Id => Cell::from(i.id.as_str()),
        Column::State => Cell::from(i.state.as_str()),
        Column::Ping => {
            let style = match (i.ping.as_deref(), &row.access) {
                (Some("Online"), _) => theme.ok,
                (Some(_), _) => theme.error,
                (None, _) => Style::new(),
            };
            Cell::from(Span::styled(i.ping.as_deref().unwrap_or("—"), style))
        }
        Column::Platform => text(i.platform.as_deref()),
        Column::Ip => text(i.private_ip.as_deref()),
        Column::Tag(n) => text(tags.get(n).and_then(|k| i.tags.get(k)).map(String::as_str)),
        Column::Account => text(row.place.as_ref().map(|p| p.0.as_str())),
        Column::Region => text(row.place.as_ref().map(|p| p.1.as_str())),
    }
}

/// The name with the matched characters (by char index) styled.
fn highlighted<'a>(name: &'a str, marks: &[u32], theme: &Theme) -> Line<'a> {
    if marks.is_empty() {
        return Line::from(name);
    }
    let mut spans = Vec::new();
    let mut run_start = 0;
    let mut run_matched = false;
    for (n, (byte, _)) in name.char_indices().enumerate() {
        let matched = marks.binary_search(&(n as u32)).is_ok();
        if n == 0 {
            run_matched = matched;
        } else if matched != run_matched {
            spans.push(styled_run(&name[run_start..byte], run_matched, theme));
            run_start = byte;
            run_matched = matched;
        }
    }
    spans.push(styled_run(&name[run_start..], run_matched, theme));
    Line::from(spans)
}

fn styled_run<'a>(text: &'a str, matched: bool, theme: &Theme) -> Span<'a> {
    if matched {
        Span::styled(text, theme.matched)
    } else {
        Span::raw(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_terminals_drop_low_priority_columns_first() {
        let all = [
            Column::Name,
            Column::Id,
            Column::State,
            Column::Ping,
            Column::Platform,
            Column::Ip,
            Column::Tag(0),
            Column::Tag(1),
        ];
        assert_eq!(fitting_columns(&all, 2, 200), all);
        assert_eq!(
            fitting_columns(&all, 2, 78),
            [
                Column::Name,
                Column::Id,
                Column::State,
                Column::Ping,
                Column::Ip
            ]
        );
        assert_eq!(fitting_columns(&all, 2, 40), [Column::Name, Column::Id]);
        assert_eq!(fitting_columns(&all, 2, 5), [Column::Name]);
    }
}
