//! The views: pure functions of [`App`] that draw into a [`Frame`]. Nothing here changes state.
//!
//! Layout, top to bottom: a two-line header (identity, profile, region, class, read-only), the
//! body (the current view in a bordered block; overlays on top), one status line (the filter or
//! command being typed, or the latest message) and one footer line of keys for the focused mode.
//! The body gets exactly `height - app::LIST_CHROME_ROWS` table rows, which the app uses for
//! scrolling. Narrow terminals drop table columns by priority rather than truncating every one.

pub mod details;
pub mod dialogs;
pub mod forwards;
pub mod help;
pub mod instances;
pub mod sessions;
pub mod theme;
pub mod transcript;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::{App, Level, Mode, View};
pub use theme::Theme;

/// Braille spinner frames, advanced by ticks.
const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// Draws the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let theme = Theme::new(app.options().ui.theme);
    let [header, body, status, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_header(app, &theme, frame, header);
    match app.view() {
        View::Instances => instances::render(app, &theme, frame, body),
        View::Sessions => sessions::render(app, &theme, frame, body),
        View::Forwards => forwards::render(app, &theme, frame, body),
    }
    if app.mode_open(Mode::Details) {
        details::render(app, &theme, frame, body);
    }
    if app.mode_open(Mode::ForwardDetails) {
        forwards::render_details(app, &theme, frame, body);
    }
    if app.mode_open(Mode::ForwardForm) {
        forwards::render_form(app, &theme, frame, body);
    }
    if app.mode_open(Mode::Transcript) {
        transcript::render(app, &theme, frame, body);
    }
    if app.mode_open(Mode::Help) {
        help::render(app, &theme, frame, body);
    }
    if app.mode_open(Mode::Reason) {
        dialogs::render_reason(app, &theme, frame, body);
    }
    if app.mode_open(Mode::SignIn) && !app.mode_open(Mode::Help) {
        dialogs::render_sign_in(app, &theme, frame, body);
    }
    if app.mode_open(Mode::Confirm) {
        dialogs::render_confirm(app, &theme, frame, body);
    }
    render_status(app, &theme, frame, status);
    render_footer(app, &theme, frame, footer);
}

/// The spinner frame for now, or a space when idle.
pub fn spinner(app: &App) -> &'static str {
    if app.busy() {
        SPINNER[(app.ticks() as usize) % SPINNER.len()]
    } else {
        " "
    }
}

fn render_header(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let opts = app.options();
    let mut first = vec![
        Span::styled(" ssmtui ", theme.title),
        Span::styled(" profile ", theme.label),
        Span::styled(
            opts.profile.as_deref().unwrap_or("(default)").to_owned(),
            theme.value,
        ),
        Span::styled("  region ", theme.label),
        Span::styled(
            opts.region.as_deref().unwrap_or("(default)").to_owned(),
            theme.value,
        ),
        Span::styled("  class ", theme.label),
        Span::styled(
            app.class
                .as_ref()
                .map_or("no class", |c| c.name.as_str())
                .to_owned(),
            theme.value,
        ),
    ];
    let forwarding = app.forwards.active();
    if forwarding > 0 {
        // Forwards run whatever view is shown; say so, so none is forgotten.
        first.push(Span::styled("  forwards ", theme.label));
        first.push(Span::styled(format!("{forwarding} running"), theme.value));
    }
    if opts.readonly {
        first.push(Span::raw("  "));
        first.push(Span::styled(" READ-ONLY ", theme.badge));
    }
    let second = match (&app.identity, &app.identity_error) {
        (Some(id), _) => {
            // A fleet names accounts by their aliases.
            let account = match opts.fleet_aliases.get(&id.account) {
                Some(alias) => format!("{alias} ({})", id.account),
                None => id.account.clone(),
            };
            let room = usize::from(area.width).saturating_sub(account.chars().count() + 11);
            Line::from(vec![
                Span::styled(" account ", theme.label),
                Span::styled(account, theme.value),
                Span::raw("  "),
                Span::styled(elide_middle(&id.arn, room), theme.text),
            ])
        }
        (None, Some(e)) => Line::from(vec![
            Span::styled(" identity ", theme.label),
            Span::styled(e.clone(), theme.error),
        ]),
        (None, None) => Line::from(vec![
            Span::styled(" identity ", theme.label),
            Span::styled(format!("{} loading", spinner(app)), theme.dim),
        ]),
    };
    frame.render_widget(Paragraph::new(vec![Line::from(first), second]), area);
}

fn render_status(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let line = match app.mode() {
        Mode::Filter => Line::from(vec![
            Span::styled("/", theme.key),
            Span::raw(app.filter_input.clone()),
            Span::styled("▏", theme.key),
        ]),
        Mode::TranscriptSearch => Line::from(vec![
            Span::styled("/", theme.key),
            Span::raw(
                app.transcript
                    .as_ref()
                    .map(|p| p.input.clone())
                    .unwrap_or_default(),
            ),
            Span::styled("▏", theme.key),
        ]),
        Mode::Command => {
            let mut spans = vec![
                Span::styled(":", theme.key),
                Span::raw(app.command.input.clone()),
                Span::styled("▏", theme.key),
            ];
            if !app.command.candidates.is_empty() {
                spans.push(Span::styled(
                    format!("   {}", app.command.candidates.join("  ")),
                    theme.dim,
                ));
            }
            Line::from(spans)
        }
        _ => match &app.status {
            Some(s) => Line::styled(
                s.text.clone(),
                match s.level {
                    Level::Info => theme.text,
                    Level::Warn => theme.warn,
                    Level::Error => theme.error,
                },
            ),
            None if !app.instances.filter_text().is_empty() && app.view() == View::Instances => {
                Line::from(vec![
                    Span::styled("filter ", theme.label),
                    Span::raw(app.instances.filter_text().to_owned()),
                ])
            }
            None => Line::default(),
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn render_footer(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let mut spans = Vec::new();
    for (keys, desc) in app.footer() {
        spans.push(Span::styled(format!("<{keys}>"), theme.key));
        spans.push(Span::styled(format!(" {desc}  "), theme.dim));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// `text` shortened to `max` characters by replacing its middle with `…`: both ends of an ARN
/// (account and role, user name) say more than its middle.
pub fn elide_middle(text: &str, max: usize) -> String {
    let len = text.chars().count();
    if len <= max {
        return text.to_owned();
    }
    if max < 3 {
        return text.chars().take(max).collect();
    }
    let keep = max - 1;
    let head = keep / 2;
    let tail = keep - head;
    let mut out: String = text.chars().take(head).collect();
    out.push('…');
    out.extend(text.chars().skip(len - tail));
    out
}

/// A rectangle of at most `width` × `height` centred in `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}
