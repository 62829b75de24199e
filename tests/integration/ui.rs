//! Snapshots of every screen, rendered with ratatui's `TestBackend` from deterministic data at
//! 80×24 and 160×48. `SSMTUI_WRITE_SCREENSHOTS=1 cargo test --test integration ui::` also writes the README
//! screenshots to `assets/screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::BTreeMap;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Modifier;

use ssmtui::app::forwards::ForwardSample;
use ssmtui::app::{Action, App, AppOptions, Effect};
use ssmtui::aws::Identity;
use ssmtui::aws::fake::{WORLD_ARN, world_instances, world_sessions};
use ssmtui::config::keymap::{Key, Keymap};
use ssmtui::config::{ClassConfig, ForwardConfig, Theme, UiConfig};
use ssmtui::forwarding::{DOC_PORT, DOC_REMOTE_HOST, ForwardSnapshot, ForwardState};

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

fn app(width: u16, height: u16, readonly: bool) -> App {
    app_with(width, height, options(readonly))
}

fn options(readonly: bool) -> AppOptions {
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
            ..ClassConfig::default()
        },
    )]);
    AppOptions {
        ui,
        classes,
        remembered: BTreeMap::new(),
        keymap: Keymap::defaults().unwrap(),
        profile: Some("platform-dev".to_owned()),
        region: Some("eu-west-1".to_owned()),
        readonly,
        profiles: vec!["platform-dev".to_owned(), "platform-prod".to_owned()],
        aliases: BTreeMap::new(),
        forwards: Vec::new(),
        fleet: Vec::new(),
        fleet_aliases: BTreeMap::new(),
    }
}

fn app_with(width: u16, height: u16, options: AppOptions) -> App {
    let mut app = App::new(options);
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

/// The transcript pane over the sessions view: the output as the terminal showed it (colours
/// kept, the carriage-return rewrite applied), a search match highlighted, where it was read.
#[test]
fn transcript_pane() {
    use ssmtui::app::transcript::LoadedTranscript;
    use ssmtui::transcripts::Source;
    let bytes = b"Script started on 2026-12-03 10:00:00Z\r\n$ ls\r\n\x1b[1;34mbin\x1b[0m  notes.txt\r\n$ echo progress 10%\rprogress done  \r\n$ grep -c ERROR app.log\r\n3\r\n$ exit\r\nScript done on 2026-12-03 10:01:00Z\r\n";
    for (w, h) in SIZES {
        let mut app = with_sessions(app(w, h, false));
        press(&mut app, &["j", "l"]);
        app.update(Action::TranscriptLoaded {
            session_id: "alice-0c1d2e3f4a5b6c7d8".to_owned(),
            result: Ok(LoadedTranscript {
                bytes: bytes.to_vec(),
                source: Source::S3,
                location: "s3://logs/sudo/alice-0c1d2e3f4a5b6c7d8.log".to_owned(),
                follow: None,
            }),
        });
        press(&mut app, &["/"]);
        type_text(&mut app, "ERROR");
        press(&mut app, &["enter"]);
        snapshot("transcript", &app);
        // The directory listing keeps its colour; the match is highlighted.
        let buf = draw(&app);
        let find = |needle: &str| {
            let t = text(&buf);
            let (row, line) = t
                .lines()
                .enumerate()
                .find(|(_, l)| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle} not on screen:\n{t}"));
            let col = line[..line.find(needle).unwrap()].chars().count();
            (col as u16, row as u16)
        };
        let (x, y) = find("bin");
        assert_eq!(buf[(x, y)].fg, ratatui::style::Color::Indexed(4));
        assert!(buf[(x, y)].modifier.contains(Modifier::BOLD));
        let (x, y) = find("ERROR");
        assert_ne!(
            buf[(x, y)].modifier,
            buf[(x - 2, y)].modifier,
            "match highlighted"
        );
    }
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
fn reason_prompt_before_a_forward() {
    // The default rule (Environment=prod) asks before a forward to a prod instance too.
    let mut opts = options(false);
    if let Some(class) = opts.classes.get_mut("sudo") {
        class.forward_documents = vec![DOC_PORT.to_owned()];
    }
    opts.forwards = vec![saved("web", "web-prod-01", "0:80", false, false)];
    let mut app = app_with(80, 24, opts);
    press(&mut app, &["F", "s"]);
    type_text(&mut app, "INC-7 check");
    snapshot("reason_forward", &app);
}

#[test]
fn command_mode_with_completions() {
    let mut app = app(80, 24, false);
    press(&mut app, &[":"]);
    type_text(&mut app, "region eu-c");
    press(&mut app, &["tab"]);
    snapshot("command", &app);
}

fn saved(name: &str, target: &str, spec: &str, autostart: bool, keepalive: bool) -> ForwardConfig {
    ForwardConfig {
        name: name.to_owned(),
        target: target.to_owned(),
        spec: spec.to_owned(),
        autostart,
        keepalive,
        sessions: 1,
    }
}

fn stats(state: ForwardState, open: u64, bytes: (u64, u64), uptime_ms: u64) -> ForwardSnapshot {
    ForwardSnapshot {
        state,
        bytes_in: bytes.0,
        bytes_out: bytes.1,
        connections_open: open,
        connections_total: open + 4,
        reconnects: 0,
        sessions: 1,
        sessions_live: 1,
        connect_errors: 0,
        last_error: None,
        session_id: Some("alice-0a1b2c3d4e5f60718".to_owned()),
        uptime: std::time::Duration::from_millis(uptime_ms),
    }
}

/// Forwards in every state, fed with deterministic results and samples: connected with
/// traffic, reconnecting, failed at start, unresolvable, stopped, idle with keepalive.
fn with_forwards(width: u16, height: u16, readonly: bool) -> App {
    let mut opts = options(readonly);
    // These forwards target prod instances; the reason rule (which fails them at autostart
    // and asks when they are started by hand, tested in app::tests) would turn every row
    // into the same refusal.
    opts.ui.reason_required_tags.clear();
    if let Some(class) = opts.classes.get_mut("sudo") {
        class.forward_documents = vec![DOC_PORT.to_owned(), DOC_REMOTE_HOST.to_owned()];
    }
    opts.forwards = vec![
        saved("web", "web-prod-01", "0:80", true, false),
        saved(
            "postgres",
            "db-prod-01",
            "5432:db.internal:5432",
            true,
            false,
        ),
        saved("api", "api-staging-01", "8080:8080", true, false),
        saved("ghost", "web-prod-99", "0:443", true, false),
        saved("cache", "cache-prod-01", "6379:6379", false, false),
        saved("bastion", "bastion-dev-01", "2222:22", true, true),
    ];
    // "web" is striped over up to 4 sessions, 3 of them open (STATE says `×3`).
    opts.forwards[0].sessions = 4;
    let mut app = app_with(width, height, opts);
    let addr = |port: u16| Ok(Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))));
    let ok = |app: &mut App, id: u64, port: u16| {
        app.update(Action::ForwardStarted {
            id,
            run: 1,
            result: addr(port),
        });
    };
    ok(&mut app, 1, 54321);
    ok(&mut app, 2, 5432);
    app.update(Action::ForwardStarted {
        id: 3,
        run: 1,
        result: Err("cannot listen on 127.0.0.1:8080: Address already in use (os error 98) (another program uses that port; pick another local port, or 0 for any free one)".to_owned()),
    });
    ok(&mut app, 6, 2222);
    // Two samples half a second apart give the rates.
    for (t, scale) in [(60_000u64, 0u64), (60_500, 1)] {
        let mut pg = stats(
            ForwardState::Reconnecting,
            2,
            (48_000_000 + scale * 200_000, 3_000_000),
            t + 3_600_000,
        );
        pg.reconnects = 2;
        pg.last_error = Some("websocket closed (1006); resuming the session".to_owned());
        app.update(Action::ForwardStats(vec![
            ForwardSample {
                id: 1,
                run: 1,
                snapshot: ForwardSnapshot {
                    sessions_live: 3,
                    ..stats(
                        ForwardState::Connected,
                        3,
                        (734_003_200 + scale * 5_242_880, 1_048_576 + scale * 65_536),
                        t,
                    )
                },
            },
            ForwardSample {
                id: 2,
                run: 1,
                snapshot: pg,
            },
            ForwardSample {
                id: 6,
                run: 1,
                snapshot: stats(ForwardState::Idle, 0, (1_200, 900), t + 7_000),
            },
        ]));
    }
    app
}

fn open_forwards(app: &mut App) {
    press(app, &["F"]);
}

#[test]
fn forwards() {
    for (w, h) in SIZES {
        let mut app = with_forwards(w, h, false);
        open_forwards(&mut app);
        press(&mut app, &["j"]);
        if w >= 100 {
            let screen = text(&draw(&app));
            let live = app.forwards.items[0]
                .stats
                .as_ref()
                .map(|s| s.sessions_live);
            assert!(screen.contains("connected ×3"), "{live:?} {screen}");
        }
        snapshot("forwards", &app);
    }
    let mut shot = with_forwards(160, 16, false);
    open_forwards(&mut shot);
    screenshot("forwards", &shot);
}

#[test]
fn forward_details() {
    for (w, h) in SIZES {
        let mut app = with_forwards(w, h, false);
        open_forwards(&mut app);
        press(&mut app, &["j", "enter"]);
        snapshot("forward_details", &app);
    }
}

#[test]
fn add_forward_form() {
    for (w, h) in SIZES {
        let mut app = with_forwards(w, h, false);
        press(&mut app, &["/"]);
        type_text(&mut app, "web-prod-01");
        press(&mut app, &["enter", "f"]);
        type_text(&mut app, "8443:443");
        press(&mut app, &["tab", "tab", "space"]);
        snapshot("forward_form", &app);
    }
    let mut shot = with_forwards(120, 24, false);
    press(&mut shot, &["/"]);
    type_text(&mut shot, "web-prod-01");
    press(&mut shot, &["enter", "f"]);
    type_text(&mut shot, "8443:443");
    screenshot("forward_form", &shot);
}

#[test]
fn add_forward_form_shows_a_bad_spec_inline() {
    let mut app = with_forwards(80, 24, false);
    press(&mut app, &["f"]);
    type_text(&mut app, "8080:http");
    let effects: Vec<Effect> = app.update(Action::Intent(ssmtui::app::Intent::Accept));
    assert!(effects.is_empty());
    snapshot("forward_form_error", &app);
}

/// Signing in failed (an SSO profile whose sign-in expired): the panel with the cause, the
/// hint, the profiles to pick from and the keys, wrapped rather than cut.
#[test]
fn sign_in_panel() {
    for (w, h) in SIZES {
        let mut app = App::new(options(false));
        app.start();
        app.update(Action::Resize {
            width: w,
            height: h,
        });
        app.update(Action::IdentityLoaded {
            generation: 0,
            result: Err(ssmtui::app::SignInFailure {
                message:
                    "the SSO sign-in for profile \"platform-dev\" has expired or was never made"
                        .to_owned(),
                hints: vec!["run `aws sso login --profile platform-dev` and try again".to_owned()],
                sso_profile: Some("platform-dev".to_owned()),
            }),
        });
        press(&mut app, &["j"]);
        snapshot("sign_in", &app);
    }
}

/// The fleet: three sources, two listed (their rows with ACCOUNT and REGION), one failed with
/// its reason and hint in the sources strip.
#[test]
fn instances_fleet_with_a_failing_source() {
    use ssmtui::app::{SignInFailure, SourceListing};
    use ssmtui::fleet::Source;
    let source = |p: &str, r: &str| Source {
        profile: Some(p.to_owned()),
        region: Some(r.to_owned()),
    };
    for (w, h) in SIZES {
        let mut app = App::new(AppOptions {
            profile: None,
            region: None,
            fleet: vec![
                source("platform-dev", "eu-west-1"),
                source("platform-prod", "us-east-1"),
                source("legacy", "eu-west-1"),
            ],
            fleet_aliases: BTreeMap::from([
                ("123456789012".to_owned(), "dev".to_owned()),
                ("210987654321".to_owned(), "prod".to_owned()),
            ]),
            ..options(false)
        });
        app.start();
        app.update(Action::Resize {
            width: w,
            height: h,
        });
        let all = world_instances(40);
        for (index, account, region, rows) in [
            (0, "123456789012", "eu-west-1", &all[..20]),
            (1, "210987654321", "us-east-1", &all[20..]),
        ] {
            app.update(Action::SourceLoaded {
                generation: 1,
                index,
                result: Box::new(Ok(SourceListing {
                    identity: Identity {
                        account: account.to_owned(),
                        arn: WORLD_ARN.replace("123456789012", account),
                        user_id: "AROAEXAMPLE:alice".to_owned(),
                    },
                    region: Some(region.to_owned()),
                    instances: rows.to_vec(),
                })),
            });
        }
        app.update(Action::SourceLoaded {
            generation: 1,
            index: 2,
            result: Box::new(Err(SignInFailure {
                message: "the SSO session has expired".to_owned(),
                hints: vec!["run `aws sso login --profile legacy`".to_owned()],
                sso_profile: Some("legacy".to_owned()),
            })),
        });
        press(&mut app, &["g", "j"]);
        let screen = text(&draw(&app));
        assert!(
            screen.contains("ACCOUNT") && screen.contains("REGION"),
            "{screen}"
        );
        assert!(screen.contains("legacy/eu-west-1"), "{screen}");
        snapshot("instances_fleet", &app);
    }
}
