//! Styles, from `[ui] theme` — with `NO_COLOR`/`--no-color` the runtime forces `mono`, which
//! uses only bold, reverse, dim and underline so the UI stays readable without colour.

use ratatui::style::{Color, Modifier, Style};

use crate::config;

/// Every style the views use.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    /// Plain text.
    pub text: Style,
    /// The header's labels.
    pub label: Style,
    /// The header's values.
    pub value: Style,
    /// Block titles and column titles.
    pub title: Style,
    /// Borders.
    pub border: Style,
    /// The selected row.
    pub selected: Style,
    /// Unreachable rows and secondary text.
    pub dim: Style,
    /// Matched characters of the filter.
    pub matched: Style,
    /// Key names in the footer and help.
    pub key: Style,
    /// Good news (agent Online).
    pub ok: Style,
    /// Refusals.
    pub warn: Style,
    /// Failures (agent offline).
    pub error: Style,
    /// The read-only marker.
    pub badge: Style,
}

impl Theme {
    /// The theme for a config choice.
    pub fn new(theme: config::Theme) -> Self {
        match theme {
            config::Theme::Default => Self {
                text: Style::new(),
                label: Style::new().fg(Color::DarkGray),
                value: Style::new().fg(Color::Cyan),
                title: Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
                border: Style::new().fg(Color::Blue),
                selected: Style::new()
                    .bg(Color::Blue)
                    .fg(Color::White)
                    .add_modifier(Modifier::BOLD),
                dim: Style::new().fg(Color::DarkGray),
                matched: Style::new()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
                key: Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD),
                ok: Style::new().fg(Color::Green),
                warn: Style::new().fg(Color::Yellow),
                error: Style::new().fg(Color::Red),
                badge: Style::new()
                    .fg(Color::Black)
                    .bg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            },
            config::Theme::Mono => Self {
                text: Style::new(),
                label: Style::new(),
                value: Style::new().add_modifier(Modifier::BOLD),
                title: Style::new().add_modifier(Modifier::BOLD),
                border: Style::new(),
                selected: Style::new().add_modifier(Modifier::REVERSED),
                dim: Style::new().add_modifier(Modifier::DIM),
                matched: Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
                key: Style::new().add_modifier(Modifier::BOLD),
                ok: Style::new(),
                warn: Style::new().add_modifier(Modifier::BOLD),
                error: Style::new().add_modifier(Modifier::BOLD),
                badge: Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD),
            },
        }
    }
}
