//! The details pane of the selected instance: everything the table has no room for, whether it
//! is reachable (and why not), and the document a shell would use.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::{Theme, centered};
use crate::access::{ChosenClass, Unreachable, reason_required};
use crate::app::App;
use crate::humanize::short_time;

/// Draws the details pane over `area`.
pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(row) = app.instances.selected() else {
        return;
    };
    let i = &row.instance;
    let field = |label: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{label:<14}"), theme.label),
            Span::raw(value),
        ])
    };
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
    let (document, note) = app.shell_document();
    let document = match (note, &app.class) {
        (Some(note), _) => format!("{document} ({note})"),
        (None, Some(class)) => format!("{document} (class {})", class.name),
        (None, None) => document,
    };
    let mut lines = vec![
        field("id", i.id.clone()),
        field("state", i.state.clone()),
        field(
            "agent",
            format!("{} {}", or_dash(&i.ping), or_dash(&i.agent_version)),
        ),
        field(
            "last ping",
            i.last_ping.as_deref().map_or("—".to_owned(), |p| {
                short_time(p).unwrap_or_else(|| p.to_owned())
            }),
        ),
        field(
            "platform",
            format!("{} ({})", or_dash(&i.platform), or_dash(&i.platform_type)),
        ),
        field("type", or_dash(&i.instance_type)),
        field("AMI", or_dash(&i.image_id)),
        field(
            "VPC / subnet",
            format!("{} / {}", or_dash(&i.vpc_id), or_dash(&i.subnet_id)),
        ),
        field("zone", or_dash(&i.availability_zone)),
        field("private IP", or_dash(&i.private_ip)),
        field("document", document),
    ];
    lines.push(match row.access.as_ref().map(Unreachable::short) {
        None => Line::from(vec![
            Span::styled(format!("{:<14}", "reachable"), theme.label),
            Span::styled("yes", theme.ok),
        ]),
        Some(why) => Line::from(vec![
            Span::styled(format!("{:<14}", "reachable"), theme.label),
            Span::styled(format!("no: {why}"), theme.warn),
        ]),
    });
    if let Some(rule) = reason_required(
        app.class.as_ref().map(ChosenClass::as_class),
        i,
        &app.options().ui.reason_required_tags,
    ) {
        lines.push(field("reason", format!("required ({rule})")));
    }
    lines.push(Line::default());
    lines.push(Line::styled("tags", theme.title));
    for (k, v) in &i.tags {
        lines.push(Line::from(vec![
            Span::styled(format!("  {k:<20} "), theme.label),
            Span::raw(v.clone()),
        ]));
    }
    let popup = centered(area, 90, area.height);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(Line::styled(format!(" {} ", i.label()), theme.title));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        popup,
    );
}
