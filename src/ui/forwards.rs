//! The forwards tab: one row per forward with its state, counters and rate; the add-forward
//! form; and the details pane of one forward. Columns are dropped by priority when the
//! terminal is narrow, and the selected forward's last error is always shown at the bottom of
//! the table, whatever fits.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, Wrap};

use super::{Theme, centered};
use crate::app::App;
use crate::app::forwards::{FormField, ForwardEntry, KEEPALIVE_NOTE, Phase};
use crate::forwarding::{DOC_PORT, ForwardSpec, ForwardState};
use crate::humanize::human_bytes;

/// A column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Name,
    Target,
    Spec,
    Local,
    State,
    Conn,
    In,
    Out,
    Rate,
    Uptime,
    Error,
}

impl Col {
    /// Display order.
    const ALL: [Self; 11] = [
        Self::Name,
        Self::Target,
        Self::Spec,
        Self::Local,
        Self::State,
        Self::Conn,
        Self::In,
        Self::Out,
        Self::Rate,
        Self::Uptime,
        Self::Error,
    ];

    fn title(self) -> &'static str {
        match self {
            Self::Name => "NAME",
            Self::Target => "TARGET",
            Self::Spec => "SPEC",
            Self::Local => "LOCAL",
            Self::State => "STATE",
            Self::Conn => "CONN",
            Self::In => "IN",
            Self::Out => "OUT",
            Self::Rate => "RATE",
            Self::Uptime => "UPTIME",
            Self::Error => "LAST ERROR",
        }
    }

    /// Width; Name and Error are minimums and share what is left.
    fn width(self) -> u16 {
        match self {
            Self::Name => 10,
            Self::Target => 20,
            Self::Spec => 22,
            Self::Local => 15,
            Self::State => 12,
            Self::Conn => 4,
            Self::In | Self::Out => 10,
            Self::Rate => 11,
            Self::Uptime => 7,
            Self::Error => 16,
        }
    }

    /// Lower keeps longer when narrow: what a forward is and whether it works first.
    fn priority(self) -> u8 {
        match self {
            Self::Name => 0,
            Self::State => 1,
            Self::Local => 2,
            Self::Rate => 3,
            Self::Conn => 4,
            Self::In => 5,
            Self::Out => 6,
            Self::Spec => 7,
            Self::Target => 8,
            Self::Uptime => 9,
            Self::Error => 10,
        }
    }
}

/// The columns that fit in `avail` cells, in display order.
fn fitting(avail: u16) -> Vec<Col> {
    let mut cols = Col::ALL.to_vec();
    while cols.len() > 1 {
        let needed: u16 = cols.iter().map(|c| c.width() + 1).sum::<u16>() - 1;
        if needed <= avail {
            break;
        }
        if let Some(pos) = cols
            .iter()
            .enumerate()
            .max_by_key(|(_, c)| c.priority())
            .map(|(i, _)| i)
        {
            cols.remove(pos);
        }
    }
    cols
}

/// Bytes per second, compact: whole numbers from 100 up, so the column stays narrow.
pub fn rate_text(bytes_per_sec: f64) -> String {
    const UNITS: [&str; 4] = ["KiB/s", "MiB/s", "GiB/s", "TiB/s"];
    if bytes_per_sec < 1024.0 {
        return format!("{:.0} B/s", bytes_per_sec.max(0.0));
    }
    let mut value = bytes_per_sec / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let unit = UNITS.get(unit).copied().unwrap_or("TiB/s");
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// `1h02m`, `3m05s`, `12s`.
pub fn uptime_text(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The address a forward listens on, or will: the real one once known.
fn local_text(f: &ForwardEntry) -> String {
    match (f.local_addr, &f.spec) {
        (Some(a), _) => a.to_string(),
        (None, Some(s)) if s.local_port == 0 => format!("{}:any", s.bind),
        (None, Some(s)) => std::net::SocketAddr::new(s.bind, s.local_port).to_string(),
        (None, None) => "—".to_owned(),
    }
}

fn state_style(phase: &Phase, theme: &Theme) -> Style {
    match phase {
        Phase::Running(ForwardState::Connected | ForwardState::Listening) => theme.ok,
        Phase::Running(ForwardState::Reconnecting) | Phase::Starting | Phase::Stopping => {
            theme.warn
        }
        Phase::Failed(_) | Phase::Running(ForwardState::Failed(_)) => theme.error,
        _ => theme.dim,
    }
}

fn cell(f: &ForwardEntry, col: Col, theme: &Theme) -> Cell<'static> {
    let stats = f.stats.as_ref().filter(|_| f.phase.is_active());
    let dash = || "—".to_owned();
    match col {
        Col::Name => Cell::from(f.name.clone()),
        Col::Target => Cell::from(f.target_short()),
        Col::Spec => Cell::from(f.spec_text.clone()),
        Col::Local => Cell::from(local_text(f)),
        // A striped forward with several sessions open says how many: `connected ×3`.
        Col::State => Cell::from(Span::styled(
            match stats.map(|s| s.sessions_live) {
                Some(n) if n > 1 => format!("{} ×{n}", f.phase.word()),
                _ => f.phase.word().to_owned(),
            },
            state_style(&f.phase, theme),
        )),
        Col::Conn => Cell::from(stats.map_or_else(dash, |s| s.connections_open.to_string())),
        Col::In => Cell::from(
            f.stats
                .as_ref()
                .map_or_else(dash, |s| human_bytes(s.bytes_in)),
        ),
        Col::Out => Cell::from(
            f.stats
                .as_ref()
                .map_or_else(dash, |s| human_bytes(s.bytes_out)),
        ),
        Col::Rate => Cell::from(if f.phase.is_active() {
            rate_text(f.rate.bytes_in + f.rate.bytes_out)
        } else {
            dash()
        }),
        Col::Uptime => Cell::from(stats.map_or_else(dash, |s| uptime_text(s.uptime.as_secs()))),
        Col::Error => Cell::from(Span::styled(
            f.last_error.clone().unwrap_or_default(),
            theme.dim,
        )),
    }
}

/// Draws the forwards table into `area`.
pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let list = &app.forwards;
    let active = list.active();
    let title = Line::from(vec![
        Span::styled(" Forwards ", theme.title),
        Span::styled(
            format!("{active} running, {} in all ", list.items.len()),
            theme.value,
        ),
    ]);
    let mut block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(title);
    if let Some(f) = list.selected()
        && let Some(e) = f.phase.failure().or(f.last_error.as_deref())
    {
        let room = usize::from(area.width.saturating_sub(4));
        block = block.title_bottom(Line::styled(
            format!(
                " {} ",
                super::elide_middle(&format!("{}: {e}", f.name), room)
            ),
            theme.error,
        ));
    }
    if list.items.is_empty() {
        let text = vec![
            Line::styled("no forwards", theme.dim),
            Line::styled(
                "select an instance and press f to forward a port, or save forwards in [[forwards]] of the config",
                theme.dim,
            ),
        ];
        frame.render_widget(
            Paragraph::new(text).block(block).wrap(Wrap { trim: false }),
            area,
        );
        return;
    }
    let cols = fitting(block.inner(area).width);
    // With room for the last error, names get what they need and the error the rest;
    // without it, the name column takes the slack.
    let has_error = cols.contains(&Col::Error);
    let longest = list.items.iter().map(|f| f.name.chars().count()).max();
    let name_width = u16::try_from(longest.unwrap_or(0))
        .unwrap_or(u16::MAX)
        .clamp(Col::Name.width(), 24);
    let widths: Vec<Constraint> = cols
        .iter()
        .map(|c| match c {
            Col::Name if has_error => Constraint::Length(name_width),
            Col::Name | Col::Error => Constraint::Min(c.width()),
            _ => Constraint::Length(c.width()),
        })
        .collect();
    let start = list.scroll.offset;
    let end = (start + app.list_rows()).min(list.items.len());
    let rows = list
        .items
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let row = Row::new(cols.iter().map(|c| cell(f, *c, theme)).collect::<Vec<_>>());
            if start + n == list.scroll.selected {
                row.style(theme.selected)
            } else {
                row.style(theme.text)
            }
        });
    let table = Table::new(rows, widths)
        .header(Row::new(cols.iter().map(|c| c.title())).style(theme.title))
        .block(block);
    frame.render_widget(table, area);
}

/// Draws the add-forward form over `area`.
pub fn render_form(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(form) = &app.forwards.form else {
        return;
    };
    let label = |text: &str, field: Option<FormField>| {
        let focused = field.is_some_and(|f| f == form.focus);
        Span::styled(
            format!("{}{text:<10}", if focused { "▸ " } else { "  " }),
            if focused { theme.key } else { theme.label },
        )
    };
    let cursor = |field: FormField| {
        if field == form.focus {
            Span::styled("▏", theme.key)
        } else {
            Span::raw("")
        }
    };
    let mut lines = vec![
        Line::from(vec![
            label("spec", Some(FormField::Spec)),
            Span::raw(form.spec.clone()),
            cursor(FormField::Spec),
        ]),
        Line::from(vec![
            label("", None),
            Span::styled(
                "[BIND:]LOCAL:[HOST:]REMOTE: 8080:80, 5432:db.internal:5432, 0:22",
                theme.dim,
            ),
        ]),
    ];
    // Errors and warnings start at the left edge so a long one wraps readably.
    if let Some(e) = &form.spec_error {
        lines.push(Line::styled(format!("  {e}"), theme.error));
    } else if let Some(w) = &form.spec_warning {
        lines.push(Line::styled(format!("  warning: {w}"), theme.warn));
    }
    lines.push(Line::from(vec![
        label("name", Some(FormField::Name)),
        Span::raw(form.name.clone()),
        cursor(FormField::Name),
    ]));
    lines.push(Line::from(vec![
        label("keepalive", Some(FormField::Keepalive)),
        Span::raw(if form.keepalive {
            "[x] on   "
        } else {
            "[ ] off  "
        }),
        Span::styled(
            if form.keepalive {
                "idle sessions stay open"
            } else {
                "idle sessions end at the account's idle timeout"
            },
            theme.dim,
        ),
    ]));
    lines.push(Line::from(vec![
        label("", None),
        Span::styled(format!("({KEEPALIVE_NOTE})"), theme.dim),
    ]));
    lines.push(Line::from(vec![
        label("sessions", Some(FormField::Sessions)),
        Span::raw(format!("{:<9}", form.sessions)),
        Span::styled(
            if form.sessions > 1 {
                "connections spread over up to this many sessions (1–8)"
            } else {
                "one session for every connection (type 2–8 to stripe)"
            },
            theme.dim,
        ),
    ]));
    let wanted = ForwardSpec::parse(form.spec.trim()).map_or(DOC_PORT, |s| s.document());
    lines.push(Line::from(vec![
        label("document", None),
        match app.forward_document(wanted) {
            Ok(doc) => Span::raw(match &app.class {
                Some(c) => format!("{doc} (class {})", c.name),
                None => doc,
            }),
            Err(why) => Span::styled(why, theme.warn),
        },
    ]));
    if let Some(e) = &form.error {
        lines.push(Line::default());
        lines.push(Line::styled(format!("  {e}"), theme.error));
    }
    let popup = centered(area, 100, 14);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(Line::styled(
            format!(" Forward a port to {} ", form.instance.label()),
            theme.title,
        ))
        .title_bottom(
            Line::styled(" enter starts · tab next field · esc cancels ", theme.dim)
                .right_aligned(),
        );
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        popup,
    );
}

/// Draws the details of the selected forward over `area`.
pub fn render_details(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(f) = app.forwards.selected() else {
        return;
    };
    let field = |label: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{label:<18}"), theme.label),
            Span::raw(value),
        ])
    };
    let dash = || "—".to_owned();
    let s = f.stats.as_ref();
    let mut lines = vec![
        field("target", f.target_label()),
        field(
            "spec",
            match &f.spec {
                Some(spec) => format!("{} (to {})", f.spec_text, spec.remote_label()),
                None => f.spec_text.clone(),
            },
        ),
        field("listening on", local_text(f)),
        Line::from(vec![
            Span::styled(format!("{:<18}", "state"), theme.label),
            Span::styled(
                match f.phase.failure() {
                    Some(why) => format!("failed: {why}"),
                    None => f.phase.word().to_owned(),
                },
                state_style(&f.phase, theme),
            ),
        ]),
        field("document", f.document.clone().unwrap_or_else(dash)),
        field(
            "keepalive",
            if f.keepalive {
                format!("on — idle sessions stay open ({KEEPALIVE_NOTE})")
            } else {
                "off — idle sessions end at the account's idle timeout".to_owned()
            },
        ),
        field(
            "sessions",
            match (s.map(|s| s.sessions_live), f.sessions) {
                (Some(live), 1) => format!("{live} open (one per forward)"),
                (Some(live), max) => format!("{live} open, up to {max} (striped)"),
                (None, 1) => "one per forward".to_owned(),
                (None, max) => format!("up to {max} (striped)"),
            },
        ),
        field(
            "saved",
            if f.saved {
                format!(
                    "yes, [[forwards]] target \"{}\"{}",
                    f.target_input,
                    if f.autostart { ", autostart" } else { "" }
                )
            } else {
                "no (added in this run)".to_owned()
            },
        ),
        field(
            "session id",
            s.and_then(|s| s.session_id.clone()).unwrap_or_else(dash),
        ),
        field(
            "sessions started",
            s.map_or_else(dash, |s| s.sessions.to_string()),
        ),
        field(
            "reconnects",
            s.map_or_else(dash, |s| s.reconnects.to_string()),
        ),
        field(
            "connections",
            s.map_or_else(dash, |s| {
                format!(
                    "{} open, {} in all",
                    s.connections_open, s.connections_total
                )
            }),
        ),
        field(
            "bytes in / out",
            s.map_or_else(dash, |s| {
                format!("{} / {}", human_bytes(s.bytes_in), human_bytes(s.bytes_out))
            }),
        ),
        field(
            "rate in / out",
            format!(
                "{} / {}",
                rate_text(f.rate.bytes_in),
                rate_text(f.rate.bytes_out)
            ),
        ),
        field(
            "uptime",
            s.map_or_else(dash, |s| uptime_text(s.uptime.as_secs())),
        ),
        Line::default(),
        Line::styled("last error", theme.title),
    ];
    lines.push(match &f.last_error {
        Some(e) => Line::styled(e.clone(), theme.error),
        None => Line::styled("none", theme.dim),
    });
    let popup = centered(area, 100, area.height);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(Line::styled(format!(" Forward {} ", f.name), theme.title));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_narrow_and_wide() {
        assert_eq!(
            fitting(78),
            [
                Col::Name,
                Col::Local,
                Col::State,
                Col::Conn,
                Col::In,
                Col::Out,
                Col::Rate
            ]
        );
        assert_eq!(fitting(158), Col::ALL);
    }

    #[test]
    fn rates_and_uptimes_are_short() {
        assert_eq!(rate_text(0.0), "0 B/s");
        assert_eq!(rate_text(1536.0), "1.5 KiB/s");
        assert_eq!(rate_text(1023.0 * 1024.0), "1023 KiB/s");
        assert_eq!(rate_text(12.5 * 1024.0 * 1024.0), "12.5 MiB/s");
        assert_eq!(uptime_text(12), "12s");
        assert_eq!(uptime_text(185), "3m05s");
        assert_eq!(uptime_text(3720), "1h02m");
    }
}
