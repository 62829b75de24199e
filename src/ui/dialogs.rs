//! Modal dialogs: the reason prompt before a shell or a forward, the yes/no confirmation, and
//! the sign-in panel.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::{Theme, centered};
use crate::app::{App, ReasonFor};

/// Draws the reason prompt over `area`.
pub fn render_reason(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(p) = &app.reason else {
        return;
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled("target    ", theme.label),
            Span::raw(p.instance.label()),
        ]),
        Line::from(vec![
            Span::styled("document  ", theme.label),
            Span::raw(p.document.clone()),
        ]),
        Line::from(vec![
            Span::styled("reason    ", theme.label),
            match &p.required {
                Some(why) => Span::styled(format!("required: {why}"), theme.warn),
                None => Span::styled("optional (recorded with the session)", theme.dim),
            },
        ]),
        Line::default(),
        Line::from(vec![
            Span::styled("> ", theme.key),
            Span::raw(p.input.clone()),
            Span::styled("▏", theme.key),
        ]),
    ];
    if let Some(e) = &p.error {
        lines.push(Line::styled(e.clone(), theme.error));
    }
    let popup = centered(area, 72, 10);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(Line::styled(
            match p.purpose {
                ReasonFor::Shell => " Why are you opening this shell? ",
                ReasonFor::Forward(_) => " Why are you starting this forward? ",
            },
            theme.title,
        ))
        .title_bottom(
            Line::styled(
                match p.purpose {
                    ReasonFor::Shell => " enter opens · esc cancels ",
                    ReasonFor::Forward(_) => " enter starts · esc cancels ",
                },
                theme.dim,
            )
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

/// Draws the confirmation dialog over `area`.
pub fn render_confirm(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(c) = &app.confirm else {
        return;
    };
    let popup = centered(area, 64, 6);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.warn)
        .title(Line::styled(" Confirm ", theme.title));
    let lines = vec![
        Line::raw(c.question.clone()),
        Line::default(),
        Line::from(vec![
            Span::styled("y", theme.key),
            Span::raw(" yes    "),
            Span::styled("n/esc", theme.key),
            Span::raw(" no"),
        ]),
    ];
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        popup,
    );
}

/// Draws the sign-in panel over `area`: why signing in failed (wrapped, never cut), the hints,
/// the profiles of the shared config file to pick from, and the keys.
pub fn render_sign_in(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(panel) = &app.sign_in else {
        return;
    };
    let width = area.width.saturating_sub(4).clamp(20, 90);
    let text_width = usize::from(width.saturating_sub(2)).max(10);
    let mut lines = vec![Line::styled(
        format!("Cannot sign in ({}).", app.where_label()),
        theme.error,
    )];
    lines.push(Line::default());
    for chunk in wrap_words(&panel.failure.message, text_width) {
        lines.push(Line::raw(chunk));
    }
    for hint in &panel.failure.hints {
        for (n, chunk) in wrap_words(&format!("hint: {hint}"), text_width)
            .into_iter()
            .enumerate()
        {
            let indent = if n == 0 { "" } else { "      " };
            lines.push(Line::styled(format!("{indent}{chunk}"), theme.label));
        }
    }
    lines.push(Line::default());
    let profiles = &app.options().profiles;
    if profiles.is_empty() {
        lines.push(Line::raw(
            "~/.aws/config has no profiles; create one with `aws configure sso`.",
        ));
    } else {
        lines.push(Line::styled("Profiles in ~/.aws/config:", theme.label));
        let current = app.options().profile.as_deref().unwrap_or("default");
        // As many profiles as fit, around the selected one.
        let room = usize::from(area.height)
            .saturating_sub(lines.len() + 5)
            .max(3);
        let first = panel
            .selected
            .saturating_sub(room / 2)
            .min(profiles.len().saturating_sub(room));
        if first > 0 {
            lines.push(Line::styled(format!("  … {first} more",), theme.label));
        }
        let shown = room.min(profiles.len() - first);
        for (i, name) in profiles.iter().enumerate().skip(first).take(shown) {
            let marker = if name == current { " (current)" } else { "" };
            let text = format!("  {name}{marker}");
            if i == panel.selected {
                lines.push(Line::styled(text, theme.selected));
            } else {
                lines.push(Line::raw(text));
            }
        }
        let after = profiles.len() - first - shown;
        if after > 0 {
            lines.push(Line::styled(format!("  … {after} more"), theme.label));
        }
    }
    lines.push(Line::default());
    let mut keys = vec![
        Span::styled("enter", theme.key),
        Span::raw(" use profile   "),
        Span::styled("r", theme.key),
        Span::raw(" retry   "),
    ];
    if panel.failure.sso_profile.is_some() {
        keys.push(Span::styled("l", theme.key));
        keys.push(Span::raw(" aws sso login   "));
    }
    keys.extend([
        Span::styled(":region", theme.key),
        Span::raw(" NAME   "),
        Span::styled("q", theme.key),
        Span::raw(" quit"),
    ]);
    lines.push(Line::from(keys));
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let popup = centered(area, width, height);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.error)
        .title(Line::styled(" Sign in ", theme.title));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        popup,
    );
}

/// `text` in lines of at most `width` characters, broken between words (a word longer than
/// the line is cut).
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > width {
            let rest: String = line.chars().skip(width).collect();
            line = line.chars().take(width).collect();
            lines.push(std::mem::replace(&mut line, rest));
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
