//! A small inline picker for ambiguous targets: arrow keys to move, typing to filter, Enter to
//! choose, Esc or Ctrl-C to cancel. Drawn on stderr below the cursor, erased afterwards.

use std::io::Write;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, style, terminal};

use crate::aws::Instance;
use crate::resolve::describe_tags;

const VISIBLE: usize = 10;

/// Items matching `filter` (case-insensitive substring of label or tags), by index.
pub fn filtered(items: &[Instance], filter: &str) -> Vec<usize> {
    let f = filter.to_lowercase();
    items
        .iter()
        .enumerate()
        .filter(|(_, i)| {
            f.is_empty()
                || i.label().to_lowercase().contains(&f)
                || describe_tags(i).to_lowercase().contains(&f)
        })
        .map(|(n, _)| n)
        .collect()
}

/// Lets the user choose one instance; `None` when cancelled.
pub fn pick(prompt: &str, items: &[Instance]) -> std::io::Result<Option<Instance>> {
    let mut err = std::io::stderr();
    terminal::enable_raw_mode()?;
    let result = run(&mut err, prompt, items);
    let _ = execute!(
        err,
        cursor::MoveToColumn(0),
        terminal::Clear(terminal::ClearType::FromCursorDown),
        cursor::Show
    );
    let _ = terminal::disable_raw_mode();
    result
}

fn run(
    err: &mut std::io::Stderr,
    prompt: &str,
    items: &[Instance],
) -> std::io::Result<Option<Instance>> {
    let mut filter = String::new();
    let mut selected = 0usize;
    queue!(err, cursor::Hide)?;
    loop {
        let shown = filtered(items, &filter);
        selected = selected.min(shown.len().saturating_sub(1));
        let first = selected.saturating_sub(VISIBLE - 1);
        queue!(
            err,
            cursor::MoveToColumn(0),
            terminal::Clear(terminal::ClearType::FromCursorDown),
            style::Print(format!(
                "{prompt} (type to filter, ↑/↓, Enter, Esc)\r\n> {filter}\r\n"
            ))
        )?;
        let mut lines = 2u16;
        for (row, &index) in shown.iter().enumerate().skip(first).take(VISIBLE) {
            let Some(item) = items.get(index) else {
                continue;
            };
            let text = format!("{}  {}", item.label(), describe_tags(item));
            if row == selected {
                queue!(
                    err,
                    style::PrintStyledContent(style::Stylize::reverse(format!("› {text}"))),
                    style::Print("\r\n")
                )?;
            } else {
                queue!(err, style::Print(format!("  {text}\r\n")))?;
            }
            lines += 1;
        }
        queue!(err, cursor::MoveUp(lines))?;
        err.flush()?;
        let Event::Key(KeyEvent {
            code,
            modifiers,
            kind,
            ..
        }) = crossterm::event::read()?
        else {
            continue;
        };
        if kind == KeyEventKind::Release {
            continue;
        }
        match code {
            KeyCode::Esc => return Ok(None),
            KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => return Ok(None),
            KeyCode::Enter => {
                return Ok(shown.get(selected).and_then(|&i| items.get(i)).cloned());
            }
            KeyCode::Up => selected = selected.saturating_sub(1),
            KeyCode::Down => selected = (selected + 1).min(shown.len().saturating_sub(1)),
            KeyCode::Backspace => {
                filter.pop();
            }
            KeyCode::Char(c) => {
                filter.push(c);
                selected = 0;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_matches_label_and_tags() {
        let mk = |id: &str, name: &str, role: &str| Instance {
            id: id.into(),
            name: Some(name.into()),
            tags: [("Role".to_owned(), role.to_owned())].into(),
            ..Instance::default()
        };
        let items = vec![
            mk("i-1", "web-1", "web"),
            mk("i-2", "db-1", "db"),
            mk("i-3", "x", "Web"),
        ];
        assert_eq!(filtered(&items, ""), [0, 1, 2]);
        assert_eq!(filtered(&items, "WEB"), [0, 2]);
        assert_eq!(filtered(&items, "i-2"), [1]);
    }
}
