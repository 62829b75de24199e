//! The help overlay: the effective key table (after `[ui.keymap]` overrides), grouped by mode,
//! with key, action name and description — generated, so it cannot drift from the bindings.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::{Theme, centered};
use crate::app::App;

/// Draws the help overlay over `area`.
pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let popup = centered(area, 96, area.height);
    let mut lines = Vec::new();
    for section in app.help() {
        if !lines.is_empty() {
            lines.push(Line::default());
        }
        lines.push(Line::styled(section.mode.to_uppercase(), theme.title));
        for (keys, action, desc) in section.rows {
            lines.push(Line::from(vec![
                Span::styled(format!("  {keys:<18}"), theme.key),
                Span::styled(format!("{action:<14}"), theme.dim),
                Span::raw(desc),
            ]));
        }
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(Line::styled(" Help — keys by mode ", theme.title))
        .title_bottom(Line::styled(" ? or esc closes · j/k scroll ", theme.dim).right_aligned());
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((u16::try_from(app.help_scroll).unwrap_or(u16::MAX), 0)),
        popup,
    );
}
