//! Modal dialogs: the reason prompt before a shell or a forward, and the yes/no confirmation.

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
