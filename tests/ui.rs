//! Snapshots of every screen, rendered with ratatui's `TestBackend` from deterministic data at
//! 80×24 and 160×48. `SSMTUI_WRITE_SCREENSHOTS=1 cargo test --test ui` also writes the README
//! screenshots to `assets/screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::BTreeMap;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Modifier;

use ssmtui::app::{Action, App, AppOptions};
use ssmtui::aws::Identity;
use ssmtui::aws::fake::{WORLD_ARN, world_instances, world_sessions};
use ssmtui::config::keymap::{Key, Keymap};
use ssmtui::config::{ClassConfig, Theme, UiConfig};

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

fn app(width: u16, height: u16, readonly: bool) -> App {
    let ui = UiConfig {
        theme: Theme::Mono,
        ..UiConfig::default()
    };
    let classes = BTreeMap::from([(
        "sudo".to_owned(),
        ClassConfig {
            document: "SSM-sudo".to_owned(),
            forward_documents: vec![],
            principals: vec!["arn:aws:sts::*:assumed-role/AWSReservedSSO_Developer_*/*".to_owned()],
            scope: BTreeMap::from([(
                "Environment".to_owned(),
                vec!["staging".to_owned(), "dev".to_owned(), "prod".to_owned()],
            )]),
            require_reason: false,
        },
    )]);
    let mut app = App::new(AppOptions {
        ui,
        classes,
        keymap: Keymap::defaults().unwrap(),
        profile: Some("platform-dev".to_owned()),
        region: Some("eu-west-1".to_owned()),
        readonly,
        profiles: vec!["platform-dev".to_owned(), "platform-prod".to_owned()],
        aliases: BTreeMap::new(),
        forwards: Vec::new(),
    });
    app.start();
    app.update(Action::Resize { width, height });
    app.update(Action::IdentityLoaded {
        generation: 0,
        result: Ok(Identity {
            account: "123456789012".to_owned(),
            arn: WORLD_ARN.to_owned(),
            user_id: "AROAEXAMPLE:alice".to_owned(),
        }),
    });
    app.update(Action::InstancesPage {
        generation: 0,
        result: Ok(world_instances(300)),
        done: true,
    });
    app
}

fn press(app: &mut App, keys: &[&str]) {
    for k in keys {
        if let Some(action) = app.resolve_key(Key::parse(k).unwrap()) {
            app.update(action);
        }
    }
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(Action::Char(c));
    }
}

fn draw(app: &App) -> Buffer {
    let (w, h) = app.size;
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| ssmtui::ui::render(app, f)).unwrap();
    terminal.backend().buffer().clone()
}

/// The screen as text, one line per row, trailing blanks trimmed.
fn text(buffer: &Buffer) -> String {
    let width = buffer.area.width as usize;
    let mut out = String::new();
    for row in buffer.content.chunks(width) {
        let line: String = row.iter().map(|c| c.symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn snapshot(name: &str, app: &App) {
    let (w, h) = app.size;
    insta::assert_snapshot!(format!("{name}_{w}x{h}"), text(&draw(app)));
}

fn screenshot(name: &str, app: &App) {
    if std::env::var_os("SSMTUI_WRITE_SCREENSHOTS").is_some() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.txt")), text(&draw(app))).unwrap();
    }
}

#[test]
fn instances() {
    for (w, h) in SIZES {
        let mut app = app(w, h, false);
        press(&mut app, &["j", "j"]);
        snapshot("instances", &app);
    }
    let mut shot = app(120, 30, false);
    press(&mut shot, &["j", "j"]);
    screenshot("instances", &shot);
}

#[test]
fn instances_readonly_and_narrow() {
    let mut app = app(60, 20, true);
    press(&mut app, &["enter"]);
    snapshot("instances_readonly", &app);
}

#[test]
fn filter_active() {
    for (w, h) in SIZES {
        let mut app = app(w, h, false);
        press(&mut app, &["/"]);
        type_text(&mut app, "wbprd");
        snapshot("filter", &app);
    }
}

#[test]
fn filter_highlights_matched_name_characters() {
    let mut app = app(80, 24, false);
    press(&mut app, &["/"]);
    type_text(&mut app, "wbprd");
    let buf = draw(&app);
    // Row 4 is the first data row; the Name column starts at x = 1.
    let name: String = (1..12).map(|x| buf[(x, 4)].symbol().to_owned()).collect();
    assert_eq!(name, "web-prod-01");
    let underlined: Vec<u16> = (1..12)
        .filter(|&x| buf[(x, 4)].modifier.contains(Modifier::UNDERLINED))
        .map(|x| x - 1)
        .collect();
    // w, b, p, r, d of "web-prod-01".
    assert_eq!(underlined, [0, 2, 4, 5, 7]);
}

#[test]
fn details() {
    for (w, h) in SIZES {
        let mut app = app(w, h, false);
        press(&mut app, &["/"]);
        type_text(&mut app, "web-prod-01");
        press(&mut app, &["enter", "d"]);
        snapshot("details", &app);
    }
}

#[test]
fn help() {
    for (w, h) in SIZES {
        let mut app = app(w, h, false);
        press(&mut app, &["?"]);
        snapshot("help", &app);
    }
    let mut shot = app(120, 40, false);
    press(&mut shot, &["?"]);
    screenshot("help", &shot);
}

fn with_sessions(mut app: App) -> App {
    press(&mut app, &[":"]);
    type_text(&mut app, "sessions");
    press(&mut app, &["enter"]);
    app.update(Action::SessionsLoaded {
        generation: 0,
        result: Ok(world_sessions()),
    });
    app
}

#[test]
fn sessions() {
    for (w, h) in SIZES {
        let mut app = with_sessions(app(w, h, false));
        press(&mut app, &["x"]);
        snapshot("sessions", &app);
    }
    screenshot("sessions", &with_sessions(app(120, 16, false)));
}

#[test]
fn confirm_dialog() {
    for (w, h) in SIZES {
        let mut app = with_sessions(app(w, h, false));
        press(&mut app, &["j", "x"]);
        snapshot("confirm", &app);
    }
}

#[test]
fn reason_prompt() {
    for (w, h) in SIZES {
        let mut app = app(w, h, false);
        press(&mut app, &["/"]);
        type_text(&mut app, "api-prod-01");
        press(&mut app, &["enter", "enter"]);
        type_text(&mut app, "  ");
        press(&mut app, &["enter"]);
        snapshot("reason", &app);
    }
}

#[test]
fn command_mode_with_completions() {
    let mut app = app(80, 24, false);
    press(&mut app, &[":"]);
    type_text(&mut app, "region eu-c");
    press(&mut app, &["tab"]);
    snapshot("command", &app);
}
