//! `App::update` without a terminal: keys go through the real keymap, results are fed as actions.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::app::forwards::{FormField, ForwardSample, Phase};
use crate::aws::SessionSummary;
use crate::aws::fake::{WORLD_ARN, world_instances, world_sessions};
use crate::config::ClassConfig;
use crate::forwarding::{DOC_PORT, DOC_REMOTE_HOST, ForwardSnapshot, ForwardSpec, ForwardState};

/// A class every caller belongs to, so shells have a document.
fn everyone_class() -> BTreeMap<String, ClassConfig> {
    BTreeMap::from([(
        "sudo".into(),
        ClassConfig {
            document: "SSM-sudo".into(),
            forward_documents: vec![
                "AWS-StartPortForwardingSession".into(),
                "AWS-StartPortForwardingSessionToRemoteHost".into(),
            ],
            principals: vec!["*".into()],
            ..ClassConfig::default()
        },
    )])
}

fn opts() -> AppOptions {
    AppOptions {
        ui: UiConfig::default(),
        classes: everyone_class(),
        remembered: BTreeMap::new(),
        keymap: Keymap::defaults().unwrap(),
        profile: Some("dev".into()),
        region: Some("eu-west-1".into()),
        readonly: false,
        profiles: vec![
            "default".into(),
            "dev".into(),
            "prod-admin".into(),
            "prod-ro".into(),
        ],
        aliases: BTreeMap::new(),
        forwards: Vec::new(),
        fleet: Vec::new(),
        fleet_aliases: BTreeMap::new(),
    }
}

fn inst(id: &str, name: &str, env: &str) -> Instance {
    Instance {
        id: id.into(),
        name: Some(name.into()),
        state: "running".into(),
        ping: Some("Online".into()),
        private_ip: Some(format!("10.0.0.{}", id.len())),
        tags: BTreeMap::from([
            ("Name".into(), name.into()),
            ("Environment".into(), env.into()),
        ]),
        ..Instance::default()
    }
}

fn identity(arn: &str) -> Identity {
    Identity {
        account: "123456789012".into(),
        arn: arn.into(),
        user_id: "AIDA".into(),
    }
}

/// An app that has loaded `instances` and the caller identity.
fn loaded_with(opts: AppOptions, instances: Vec<Instance>) -> App {
    let mut app = App::new(opts);
    let effects = app.start();
    assert_eq!(
        effects,
        [
            Effect::LoadIdentity { generation: 0 },
            Effect::LoadInstances { generation: 0 }
        ]
    );
    app.update(Action::Resize {
        width: 80,
        height: 24,
    });
    app.update(Action::IdentityLoaded {
        generation: 0,
        result: Ok(identity(WORLD_ARN)),
    });
    app.update(Action::InstancesPage {
        generation: 0,
        result: Ok(instances),
        done: true,
    });
    app
}

fn loaded(instances: Vec<Instance>) -> App {
    loaded_with(opts(), instances)
}

/// Presses keys through the keymap of the focused mode, like the runtime does.
fn press(app: &mut App, keys: &[&str]) -> Vec<Effect> {
    let mut effects = Vec::new();
    for k in keys {
        let key = Key::parse(k).unwrap();
        if let Some(action) = app.resolve_key(key) {
            effects.extend(app.update(action));
        }
    }
    effects
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        let key = Key::parse(&c.to_string()).unwrap();
        let action = app.resolve_key(key).unwrap();
        app.update(action);
    }
}

fn visible_ids(app: &App) -> Vec<String> {
    (0..app.instances.visible_len())
        .map(|i| app.instances.visible_row(i).unwrap().instance.id.clone())
        .collect()
}

fn selected_id(app: &App) -> Option<String> {
    app.instances.selected().map(|r| r.instance.id.clone())
}

fn status(app: &App) -> String {
    app.status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default()
}

fn three() -> Vec<Instance> {
    vec![
        inst("i-1", "web-prod", "prod"),
        inst("i-22", "api-staging", "staging"),
        inst("i-333", "worker-dev", "dev"),
    ]
}

#[test]
fn fuzzy_filter_matches_name_id_ip_and_tags_and_highlights_the_name() {
    for (filter, expected) in [
        ("", &["i-22", "i-1", "i-333"][..]),
        ("wp", &["i-1"]),
        ("web", &["i-1"]),
        ("i-33", &["i-333"]),
        ("10.0.0.4", &["i-22"]),
        ("staging", &["i-22"]),
        ("Environment=dev", &["i-333"]),
        ("Environment=de", &[]),
        ("environment=dev", &[]),
        ("Environment=prod web", &["i-1"]),
        ("Environment=prod api", &[]),
        ("zzz", &[]),
    ] {
        let mut app = loaded(three());
        press(&mut app, &["/"]);
        type_text(&mut app, filter);
        assert_eq!(visible_ids(&app), expected, "filter {filter:?}");
    }
    let mut app = loaded(three());
    press(&mut app, &["/"]);
    type_text(&mut app, "wp");
    // "web-prod": w at 0, p at 4.
    assert_eq!(app.instances.name_highlights(0), [0, 4]);
}

#[test]
fn filter_keys_enter_keeps_esc_clears() {
    let mut app = loaded(three());
    press(&mut app, &["/"]);
    assert_eq!(app.mode(), Mode::Filter);
    type_text(&mut app, "work");
    press(&mut app, &["enter"]);
    assert_eq!(app.mode(), Mode::Instances);
    assert_eq!(visible_ids(&app), ["i-333"]);
    // "/" again edits the kept filter; backspace widens it live.
    press(&mut app, &["/"]);
    assert_eq!(app.filter_input, "work");
    press(
        &mut app,
        &["backspace", "backspace", "backspace", "backspace"],
    );
    assert_eq!(app.instances.visible_len(), 3);
    type_text(&mut app, "api");
    press(&mut app, &["esc"]);
    assert_eq!(app.mode(), Mode::Instances);
    assert_eq!(app.instances.filter_text(), "");
    assert_eq!(app.instances.visible_len(), 3);
    // Esc in the list clears a kept filter too.
    press(&mut app, &["/"]);
    type_text(&mut app, "web");
    press(&mut app, &["enter", "esc"]);
    assert_eq!(app.instances.visible_len(), 3);
}

#[test]
fn typing_narrows_and_widening_rescans() {
    let mut app = loaded(world_instances(500));
    press(&mut app, &["/"]);
    type_text(&mut app, "web-prod");
    let narrowed = visible_ids(&app);
    assert!(!narrowed.is_empty());
    // Same text from scratch gives the same rows (the narrowing shortcut changes nothing).
    let mut fresh = loaded(world_instances(500));
    fresh.instances.set_filter("web-prod");
    assert_eq!(visible_ids(&fresh), narrowed);
    // "Environment=pro" matches nothing, "…=prod" matches again: exact terms always rescan.
    press(&mut app, &["ctrl+u"]);
    type_text(&mut app, "Environment=pro");
    assert_eq!(app.instances.visible_len(), 0);
    type_text(&mut app, "d");
    assert!(app.instances.visible_len() > 100);
    // A negated term that grows matches more, not less.
    press(&mut app, &["ctrl+u"]);
    type_text(&mut app, "!w");
    let fewer = app.instances.visible_len();
    type_text(&mut app, "eb");
    assert!(app.instances.visible_len() > fewer);
}

#[test]
fn selection_stays_on_the_same_instance_across_filter_changes() {
    let mut app = loaded(three());
    // Sorted by name: api-staging, web-prod, worker-dev.
    press(&mut app, &["j"]);
    assert_eq!(selected_id(&app).as_deref(), Some("i-1"));
    press(&mut app, &["/"]);
    type_text(&mut app, "w");
    // web-prod and worker-dev remain; the selection is still web-prod (now row 0).
    assert_eq!(selected_id(&app).as_deref(), Some("i-1"));
    type_text(&mut app, "ork");
    // "work" matches worker-dev only: the selection moves to what is there.
    assert_eq!(selected_id(&app).as_deref(), Some("i-333"));
    press(&mut app, &["esc"]);
    assert_eq!(selected_id(&app).as_deref(), Some("i-333"));
}

#[test]
fn sorting_cycles_columns_and_reverses() {
    let mut app = loaded(three());
    assert_eq!(visible_ids(&app), ["i-22", "i-1", "i-333"]);
    press(&mut app, &["S"]);
    assert_eq!(visible_ids(&app), ["i-333", "i-1", "i-22"]);
    press(&mut app, &["s"]);
    assert_eq!(app.instances.sort(), (instances::Column::Id, false));
    assert_eq!(visible_ids(&app), ["i-1", "i-22", "i-333"]);
    // IP sorts numerically: 10.0.0.3 < 10.0.0.4 < 10.0.0.5.
    press(&mut app, &["s", "s", "s", "s"]);
    assert_eq!(app.instances.sort().0, instances::Column::Ip);
    assert_eq!(visible_ids(&app), ["i-1", "i-22", "i-333"]);
    // Tag column: Environment dev < prod < staging.
    press(&mut app, &["s"]);
    assert_eq!(app.instances.sort().0, instances::Column::Tag(0));
    assert_eq!(visible_ids(&app), ["i-333", "i-1", "i-22"]);
    // Past the last column it wraps to Name.
    press(&mut app, &["s", "s"]);
    assert_eq!(app.instances.sort().0, instances::Column::Name);
}

#[test]
fn navigation_scrolls_the_window() {
    let mut app = loaded(world_instances(100));
    let rows = app.list_rows();
    assert_eq!(rows, 17);
    press(&mut app, &["G"]);
    assert_eq!(app.instances.scroll.selected, 99);
    assert_eq!(app.instances.scroll.offset, 100 - rows);
    press(&mut app, &["k"]);
    assert_eq!(
        app.instances.scroll.offset,
        100 - rows,
        "moving up inside the window keeps it"
    );
    press(&mut app, &["g", "pagedown"]);
    assert_eq!(app.instances.scroll.selected, rows);
    press(&mut app, &["k", "k", "up"]);
    assert_eq!(app.instances.scroll.selected, rows - 3);
}

#[test]
fn mode_switches_follow_the_stack() {
    let mut app = loaded(three());
    for (keys, mode) in [
        (&["?"][..], Mode::Help),
        (&["esc"], Mode::Instances),
        (&["d"], Mode::Details),
        (&["esc"], Mode::Instances),
        (&[":"], Mode::Command),
        (&["esc"], Mode::Instances),
        (&["/"], Mode::Filter),
        (&["enter"], Mode::Instances),
    ] {
        press(&mut app, keys);
        assert_eq!(app.mode(), mode, "after {keys:?}");
    }
    // "q" in a text input is text, not quit.
    press(&mut app, &["/"]);
    assert!(press(&mut app, &["q"]).is_empty());
    assert_eq!(app.filter_input, "q");
    press(&mut app, &["esc"]);
    assert_eq!(press(&mut app, &["q"]), [Effect::Quit]);
}

#[test]
fn enter_is_refused_without_an_access_class() {
    // No class means no document: the account default is never used silently.
    let mut app = loaded_with(
        AppOptions {
            classes: BTreeMap::new(),
            ..opts()
        },
        three(),
    );
    let effects = press(&mut app, &["enter"]);
    assert!(effects.is_empty());
    assert_eq!(app.mode(), Mode::Instances);
    assert_eq!(
        app.shell_refusal().as_deref(),
        Some(
            "no access class is configured: add [classes] to the config, or pick a tagged class once with `ssmtui connect`"
        )
    );
    assert_eq!(
        app.shell_document().1,
        Some("no access class; shells are refused")
    );
}

fn offline(id: &str) -> Instance {
    Instance {
        ping: Some("ConnectionLost".into()),
        last_ping: Some("2024-05-01T12:03:10Z".into()),
        ..inst(id, "old-box", "dev")
    }
}

fn dev_class() -> BTreeMap<String, ClassConfig> {
    BTreeMap::from([(
        "no-sudo".into(),
        ClassConfig {
            document: "SSM-nosudo".into(),
            forward_documents: vec![],
            principals: vec!["arn:aws:sts::*:assumed-role/AWSReservedSSO_Developer_*/*".into()],
            scope: BTreeMap::from([("Environment".into(), vec!["staging".into(), "dev".into()])]),
            require_reason: false,
            ..ClassConfig::default()
        },
    )])
}

#[test]
fn disabled_actions_say_why() {
    // (instances, options tweak, expected status)
    let readonly = AppOptions {
        readonly: true,
        ..opts()
    };
    let classed = AppOptions {
        classes: dev_class(),
        ..opts()
    };
    let stopped = Instance {
        state: "stopped".into(),
        ping: None,
        ..inst("i-9", "stopped-box", "dev")
    };
    for (instance, options, expected) in [
        (
            offline("i-5"),
            opts(),
            "agent offline since 12:03 UTC (2024-05-01)",
        ),
        (stopped, opts(), "instance is stopped"),
        (
            inst("i-6", "fine", "dev"),
            readonly,
            "read-only mode: sessions cannot be started",
        ),
        (
            inst("i-7", "web-prod", "prod"),
            classed,
            "outside the no-sudo class's scope: Environment must be staging or dev (it is prod)",
        ),
    ] {
        let mut app = loaded_with(options, vec![instance]);
        assert_eq!(press(&mut app, &["enter"]), []);
        assert_eq!(status(&app), expected);
        assert_eq!(app.status.as_ref().map(|s| s.level), Some(Level::Warn));
        // The next key clears the message.
        press(&mut app, &["j"]);
        assert_eq!(app.status, None);
    }
}

#[test]
fn class_resolves_from_the_arn_and_picks_its_document() {
    let mut app = loaded_with(
        AppOptions {
            classes: dev_class(),
            ..opts()
        },
        vec![inst("i-1", "api-dev", "dev")],
    );
    assert_eq!(app.class.as_ref().map(|c| c.name.as_str()), Some("no-sudo"));
    let effects = press(&mut app, &["enter"]);
    assert!(
        matches!(effects.as_slice(), [Effect::OpenShell { document, .. }] if document == "SSM-nosudo"),
        "{effects:?}"
    );
    // Another caller matches no class: the default document, no scope.
    let mut app = App::new(AppOptions {
        classes: dev_class(),
        ..opts()
    });
    app.update(Action::IdentityLoaded {
        generation: 0,
        result: Ok(identity("arn:aws:iam::123456789012:user/ops")),
    });
    assert_eq!(app.class, None);
}

#[test]
fn unreachable_rows_are_hidden_when_configured() {
    let ui = UiConfig {
        unreachable: Unreachable::Hide,
        ..UiConfig::default()
    };
    let app = loaded_with(
        AppOptions { ui, ..opts() },
        vec![offline("i-1"), inst("i-2", "ok", "dev")],
    );
    assert_eq!(visible_ids(&app), ["i-2"]);
    assert_eq!(app.instances.hidden_unreachable(), 1);
    let dim = loaded(vec![offline("i-1"), inst("i-2", "ok", "dev")]);
    assert_eq!(dim.instances.visible_len(), 2);
}

#[test]
fn reason_prompt_flow() {
    let mut app = loaded(vec![inst("i-1", "web-prod", "prod")]);
    assert_eq!(press(&mut app, &["enter"]), []);
    assert_eq!(app.mode(), Mode::Reason);
    let prompt = app.reason.as_ref().unwrap();
    assert_eq!(
        prompt.required.as_deref(),
        Some("target is tagged Environment=prod")
    );
    // Empty (or blank) is refused while required.
    type_text(&mut app, "  ");
    assert_eq!(press(&mut app, &["enter"]), []);
    assert_eq!(
        app.reason.as_ref().unwrap().error.as_deref(),
        Some("a reason is required: target is tagged Environment=prod")
    );
    assert_eq!(app.mode(), Mode::Reason);
    // "q" and "?" are text here.
    press(&mut app, &["ctrl+u"]);
    type_text(&mut app, "INC-42 q?");
    let effects = press(&mut app, &["enter"]);
    assert_eq!(
        effects,
        [Effect::OpenShell {
            instance: Box::new(inst("i-1", "web-prod", "prod")),
            document: "SSM-sudo".into(),
            reason: Some("INC-42 q?".into()),
            who: Box::new(app.who().unwrap()),
        }]
    );
    assert_eq!(app.mode(), Mode::Instances);
    // Esc cancels with a message.
    press(&mut app, &["enter"]);
    type_text(&mut app, "x");
    assert_eq!(press(&mut app, &["esc"]), []);
    assert_eq!(app.mode(), Mode::Instances);
    assert_eq!(app.reason, None);
    assert_eq!(status(&app), "shell not opened");
}

#[test]
fn always_ask_allows_an_empty_reason_when_not_required() {
    let ui = UiConfig {
        always_ask_reason: true,
        ..UiConfig::default()
    };
    let mut app = loaded_with(AppOptions { ui, ..opts() }, vec![inst("i-1", "api", "dev")]);
    assert_eq!(press(&mut app, &["enter"]), []);
    assert_eq!(app.reason.as_ref().unwrap().required, None);
    let effects = press(&mut app, &["enter"]);
    assert!(matches!(
        effects.as_slice(),
        [Effect::OpenShell { reason: None, .. }]
    ));
}

#[test]
fn class_require_reason_asks_everywhere() {
    let mut classes = dev_class();
    if let Some(c) = classes.get_mut("no-sudo") {
        c.require_reason = true;
    }
    let mut app = loaded_with(
        AppOptions { classes, ..opts() },
        vec![inst("i-1", "api", "dev")],
    );
    press(&mut app, &["enter"]);
    assert_eq!(
        app.reason.as_ref().unwrap().required.as_deref(),
        Some("the no-sudo class requires a reason for every session")
    );
}

#[test]
fn details_opens_for_the_selection_and_enter_there_opens_a_shell() {
    let mut app = loaded(vec![inst("i-1", "api", "dev")]);
    press(&mut app, &["d"]);
    assert_eq!(app.mode(), Mode::Details);
    let effects = press(&mut app, &["enter"]);
    assert!(matches!(effects.as_slice(), [Effect::OpenShell { .. }]));
    assert_eq!(app.mode(), Mode::Instances);
    // Nothing to detail in an empty list.
    let mut empty = loaded(vec![]);
    press(&mut empty, &["d"]);
    assert_eq!(empty.mode(), Mode::Instances);
    assert_eq!(status(&empty), "no instance selected");
}

#[test]
fn command_mode_switches_views_and_quits() {
    let mut app = loaded(three());
    press(&mut app, &[":"]);
    type_text(&mut app, "sessions");
    let effects = press(&mut app, &["enter"]);
    assert_eq!(effects, [Effect::LoadSessions { generation: 0 }]);
    assert_eq!(app.view(), View::Sessions);
    assert_eq!(app.mode(), Mode::Sessions);
    press(&mut app, &[":"]);
    type_text(&mut app, "instances");
    press(&mut app, &["enter"]);
    assert_eq!(app.view(), View::Instances);
    press(&mut app, &[":"]);
    type_text(&mut app, "bogus");
    assert_eq!(press(&mut app, &["enter"]), []);
    assert!(
        status(&app).starts_with("unknown command \":bogus\""),
        "{}",
        status(&app)
    );
    press(&mut app, &[":"]);
    type_text(&mut app, "q");
    assert_eq!(press(&mut app, &["enter"]), [Effect::Quit]);
}

#[test]
fn command_completion_of_commands_profiles_and_regions() {
    let mut app = loaded(three());
    for (typed, tabs, expected_input, expected_candidates) in [
        ("se", 1, "sessions", &[][..]),
        ("pro", 1, "profile ", &[]),
        (
            "profile pr",
            1,
            "profile prod-",
            &["prod-admin", "prod-ro"][..],
        ),
        ("profile prod-a", 1, "profile prod-admin", &[]),
        (
            "region eu-w",
            1,
            "region eu-west-",
            &["eu-west-1", "eu-west-2", "eu-west-3"],
        ),
        ("region us-gov-w", 1, "region us-gov-west-1", &[]),
        (
            "",
            1,
            "",
            &[
                "instances",
                "sessions",
                "forwards",
                "profile",
                "region",
                "quit",
            ],
        ),
    ] {
        press(&mut app, &[":"]);
        type_text(&mut app, typed);
        for _ in 0..tabs {
            press(&mut app, &["tab"]);
        }
        assert_eq!(app.command.input, expected_input, "after {typed:?}");
        assert_eq!(
            app.command.candidates, expected_candidates,
            "after {typed:?}"
        );
        press(&mut app, &["esc"]);
    }
}

#[test]
fn profile_and_region_switch_rebuild_and_reload_dropping_stale_results() {
    let mut app = loaded(three());
    press(&mut app, &[":"]);
    type_text(&mut app, "profile prod-ro");
    let effects = press(&mut app, &["enter"]);
    assert_eq!(
        effects,
        [Effect::SwitchAws {
            generation: 1,
            profile: Some("prod-ro".into()),
            region: Some("eu-west-1".into()),
        }]
    );
    // A late page from the old account is dropped.
    app.update(Action::InstancesPage {
        generation: 0,
        result: Ok(vec![inst("i-old", "old", "dev")]),
        done: true,
    });
    assert_eq!(app.instances.total(), 3);
    let effects = app.update(Action::AwsSwitched {
        generation: 1,
        result: Ok(()),
    });
    assert_eq!(
        effects,
        [
            Effect::LoadIdentity { generation: 1 },
            Effect::LoadInstances { generation: 1 }
        ]
    );
    assert_eq!(app.options().profile.as_deref(), Some("prod-ro"));
    assert_eq!(app.instances.total(), 0);
    assert_eq!(app.identity, None);

    press(&mut app, &[":"]);
    type_text(&mut app, "profile nope");
    assert_eq!(press(&mut app, &["enter"]), []);
    assert_eq!(status(&app), "no profile \"nope\" in the AWS config file");
    press(&mut app, &[":"]);
    type_text(&mut app, "region mars");
    assert_eq!(press(&mut app, &["enter"]), []);
    press(&mut app, &[":"]);
    type_text(&mut app, "region ap-southeast-2");
    let effects = press(&mut app, &["enter"]);
    assert!(matches!(
        effects.as_slice(),
        [Effect::SwitchAws { generation: 2, region: Some(r), .. }] if r == "ap-southeast-2"
    ));
    // A failed switch keeps the old profile/region.
    app.update(Action::AwsSwitched {
        generation: 2,
        result: Err("no credentials".into()),
    });
    assert_eq!(app.options().region.as_deref(), Some("eu-west-1"));
    assert_eq!(status(&app), "cannot switch: no credentials");
}

#[test]
fn refresh_collects_pages_and_keeps_the_selection() {
    let mut app = loaded(three());
    press(&mut app, &["G"]);
    assert_eq!(selected_id(&app).as_deref(), Some("i-333"));
    let effects = press(&mut app, &["r"]);
    assert_eq!(effects, [Effect::LoadInstances { generation: 0 }]);
    assert!(app.instances.loading);
    app.update(Action::InstancesPage {
        generation: 0,
        result: Ok(vec![inst("i-0", "aaa", "dev")]),
        done: false,
    });
    // The old list stays until the refresh is complete.
    assert_eq!(app.instances.total(), 3);
    app.update(Action::InstancesPage {
        generation: 0,
        result: Ok(three()),
        done: true,
    });
    assert_eq!(app.instances.total(), 4);
    assert!(!app.instances.loading);
    assert_eq!(selected_id(&app).as_deref(), Some("i-333"));
}

#[test]
fn first_load_shows_pages_progressively() {
    let mut app = App::new(opts());
    app.start();
    app.update(Action::InstancesPage {
        generation: 0,
        result: Ok(vec![inst("i-1", "a", "dev")]),
        done: false,
    });
    assert_eq!(app.instances.visible_len(), 1);
    assert!(app.instances.loading);
    app.update(Action::InstancesPage {
        generation: 0,
        result: Ok(vec![inst("i-2", "b", "dev")]),
        done: true,
    });
    assert_eq!(app.instances.visible_len(), 2);
    assert!(!app.instances.loading);
}

#[test]
fn ticks_refresh_on_the_configured_interval() {
    let ui = UiConfig {
        refresh_seconds: 1,
        ..UiConfig::default()
    };
    let mut app = loaded_with(AppOptions { ui, ..opts() }, three());
    let per_refresh = (1000 / TICK_MS) as usize;
    let mut loads = 0;
    for _ in 0..per_refresh * 3 {
        for e in app.update(Action::Tick) {
            assert_eq!(e, Effect::LoadInstances { generation: 0 });
            loads += 1;
            app.update(Action::InstancesPage {
                generation: 0,
                result: Ok(three()),
                done: true,
            });
        }
    }
    assert_eq!(loads, 3);
    // Idle ticks do not force renders.
    app.take_dirty();
    app.update(Action::Tick);
    assert!(!app.take_dirty());
}

fn in_sessions(readonly: bool) -> App {
    let mut app = loaded_with(AppOptions { readonly, ..opts() }, three());
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
fn sessions_list_active_first_and_terminate_only_your_own() {
    let mut app = in_sessions(false);
    let ids: Vec<&str> = app.sessions.items.iter().map(|s| s.id.as_str()).collect();
    // Active (newest first), then history.
    assert_eq!(
        ids,
        [
            "bob-09f8e7d6c5b4a3928",
            "alice-0c1d2e3f4a5b6c7d8",
            "alice-01a2b3c4d5e6f7a8b"
        ]
    );
    // Bob's session: refused with the reason.
    assert_eq!(press(&mut app, &["x"]), []);
    assert!(
        status(&app).starts_with("session bob-09f8e7d6c5b4a3928 belongs to arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Developer_0a1b2c/bob"),
        "{}",
        status(&app)
    );
    assert_eq!(app.mode(), Mode::Sessions);
    // An ended session of mine.
    press(&mut app, &["G", "x"]);
    assert_eq!(
        status(&app),
        "session alice-01a2b3c4d5e6f7a8b has already ended (Terminated)"
    );
    // My active session: confirm, then "n" keeps it, "y" terminates.
    press(&mut app, &["k", "x"]);
    assert_eq!(app.mode(), Mode::Confirm);
    assert_eq!(press(&mut app, &["n"]), []);
    assert_eq!(app.mode(), Mode::Sessions);
    press(&mut app, &["x"]);
    assert_eq!(
        press(&mut app, &["y"]),
        [Effect::TerminateSession {
            id: "alice-0c1d2e3f4a5b6c7d8".into()
        }]
    );
    let effects = app.update(Action::SessionTerminated {
        id: "alice-0c1d2e3f4a5b6c7d8".into(),
        result: Ok(()),
    });
    assert_eq!(effects, [Effect::LoadSessions { generation: 0 }]);
    assert_eq!(status(&app), "session alice-0c1d2e3f4a5b6c7d8 terminated");
    // Esc goes back to the instances.
    press(&mut app, &["esc"]);
    assert_eq!(app.view(), View::Instances);
}

#[test]
fn readonly_refuses_terminate_too() {
    let mut app = in_sessions(true);
    press(&mut app, &["j", "x"]);
    assert_eq!(status(&app), "read-only mode: sessions cannot be ended");
    assert_eq!(app.mode(), Mode::Sessions);
}

#[test]
fn sessions_without_identity_cannot_be_judged() {
    let mut app = App::new(opts());
    app.update(Action::Intent(Intent::Command));
    type_text(&mut app, "sessions");
    press(&mut app, &["enter"]);
    let mine: Vec<SessionSummary> = world_sessions();
    app.update(Action::SessionsLoaded {
        generation: 0,
        result: Ok(mine),
    });
    press(&mut app, &["j", "x"]);
    assert!(
        status(&app).contains("identity has not loaded"),
        "{}",
        status(&app)
    );
}

#[test]
fn help_is_generated_from_the_keymap_and_follows_overrides() {
    let app = loaded(three());
    let help = app.help();
    let modes: Vec<&str> = help.iter().map(|s| s.mode.as_str()).collect();
    assert_eq!(
        modes,
        [
            "instances",
            "sessions",
            "transcript",
            "transcript_search",
            "forwards",
            "forward_form",
            "filter",
            "command",
            "reason",
            "confirm",
            "help",
            "details",
            "forward_details",
            "sign_in"
        ]
    );
    let refresh = help[0].rows.iter().find(|r| r.1 == "refresh").unwrap();
    assert_eq!(
        refresh,
        &(
            "r".into(),
            "refresh".into(),
            "reload the instance list".into()
        )
    );

    let overrides = BTreeMap::from([(
        "instances".to_owned(),
        BTreeMap::from([
            ("f5".to_owned(), "refresh".to_owned()),
            ("r".to_owned(), "none".to_owned()),
        ]),
    )]);
    let mut app = loaded_with(
        AppOptions {
            keymap: Keymap::with_overrides(&overrides).unwrap(),
            ..opts()
        },
        three(),
    );
    let refresh = app.help()[0]
        .rows
        .iter()
        .find(|r| r.1 == "refresh")
        .cloned()
        .unwrap();
    assert_eq!(refresh.0, "f5");
    assert_eq!(press(&mut app, &["r"]), []);
    assert_eq!(
        press(&mut app, &["f5"]),
        [Effect::LoadInstances { generation: 0 }]
    );
    // The footer is generated from the same table.
    let footer: Vec<String> = app.footer().into_iter().map(|(k, _)| k).collect();
    assert_eq!(footer, ["enter", "f", "/", "d", ":", "?", "q/ctrl+c"]);
    assert_eq!(app.footer()[0].1, "shell");
}

#[test]
fn every_keymap_action_is_an_intent() {
    let map = Keymap::defaults().unwrap();
    for b in map.all() {
        assert!(
            Intent::from_name(&b.action).is_some(),
            "{} in {} has no intent",
            b.action,
            b.mode
        );
    }
    for mode in [
        Mode::Instances,
        Mode::Sessions,
        Mode::Filter,
        Mode::Command,
        Mode::Help,
        Mode::Details,
        Mode::Reason,
        Mode::Confirm,
    ] {
        assert!(
            map.modes().iter().any(|m| m == mode.name()),
            "{mode:?} has no bindings"
        );
    }
}

#[test]
fn shell_outcome_lands_in_the_status_line() {
    let mut app = loaded(three());
    app.update(Action::ShellFinished {
        target: "web (i-1)".into(),
        result: Ok(Some(0)),
    });
    assert_eq!(status(&app), "shell on web (i-1) ended");
    app.update(Action::ShellFinished {
        target: "web (i-1)".into(),
        result: Ok(Some(3)),
    });
    assert_eq!(status(&app), "shell on web (i-1) ended with exit status 3");
    app.update(Action::ShellFinished {
        target: "web (i-1)".into(),
        result: Err("websocket closed".into()),
    });
    assert_eq!(app.status.as_ref().map(|s| s.level), Some(Level::Error));
}

#[test]
fn region_names() {
    for ok in ["eu-west-1", "us-gov-east-1", "ap-southeast-3"] {
        assert!(is_region_name(ok), "{ok}");
    }
    for bad in ["mars", "eu-west", "eu--1", "EU-west-1", "e-west-1"] {
        assert!(!is_region_name(bad), "{bad}");
    }
}

#[test]
fn filtering_ten_thousand_rows_per_keystroke_is_fast_enough() {
    // Not a benchmark (that is in the README); a guard against accidentally quadratic work.
    let mut app = loaded(world_instances(10_000));
    press(&mut app, &["/"]);
    let started = std::time::Instant::now();
    type_text(&mut app, "web-prod-1");
    press(&mut app, &["ctrl+u"]);
    type_text(&mut app, "Environment=dev api");
    let per_key = started.elapsed() / 30;
    assert!(app.instances.visible_len() > 0);
    // Debug builds are ~10x slower than release; this still catches O(n²) or per-row allocation storms.
    assert!(per_key.as_millis() < 100, "{per_key:?} per keystroke");
}

// ── forwards ─────────────────────────────────────────────────────────────────────────────

fn forward_class(docs: &[&str]) -> BTreeMap<String, ClassConfig> {
    let mut classes = dev_class();
    if let Some(c) = classes.get_mut("no-sudo") {
        c.forward_documents = docs.iter().map(|d| (*d).to_owned()).collect();
    }
    classes
}

fn snapshot(state: ForwardState, bytes_in: u64, bytes_out: u64, uptime_ms: u64) -> ForwardSnapshot {
    ForwardSnapshot {
        state,
        bytes_in,
        bytes_out,
        connections_open: 1,
        connections_total: 3,
        reconnects: 0,
        sessions: 1,
        sessions_live: 1,
        connect_errors: 0,
        last_error: None,
        session_id: Some("alice-0123456789abcdef0".into()),
        uptime: Duration::from_millis(uptime_ms),
    }
}

fn sample(id: u64, run: u64, snap: ForwardSnapshot) -> Action {
    Action::ForwardStats(vec![ForwardSample {
        id,
        run,
        snapshot: snap,
    }])
}

/// Opens the form on the selected instance, types `spec` and presses Enter.
fn add_forward(app: &mut App, spec: &str) -> Vec<Effect> {
    press(app, &["f"]);
    assert_eq!(app.mode(), Mode::ForwardForm, "{}", status(app));
    type_text(app, spec);
    press(app, &["enter"])
}

#[test]
fn add_forward_form_validates_the_spec_inline_and_starts_with_the_class_document() {
    let opts = AppOptions {
        classes: forward_class(&[DOC_PORT]),
        ..opts()
    };
    // api-staging (i-22) is selected first (sorted by name) and inside the class's scope.
    let mut app = loaded_with(opts, three());
    press(&mut app, &["f"]);
    let form = app.forwards.form.as_ref().unwrap();
    assert_eq!(form.name, "api-staging");
    // A bad spec shows its error while typing, and Enter refuses it.
    type_text(&mut app, "80x");
    let form = app.forwards.form.as_ref().unwrap();
    assert!(
        form.spec_error
            .as_deref()
            .unwrap()
            .starts_with("\"80x\" is not a forward spec"),
        "{form:?}"
    );
    assert_eq!(press(&mut app, &["tab", "enter"]), []);
    assert_eq!(app.mode(), Mode::ForwardForm);
    let form = app.forwards.form.as_ref().unwrap();
    assert_eq!(
        form.focus,
        FormField::Spec,
        "Enter goes back to the bad field"
    );
    assert!(form.spec_error.is_some());
    // Fixed: the error goes, the name follows the remote port.
    press(&mut app, &["ctrl+u"]);
    type_text(&mut app, "0:8080");
    let form = app.forwards.form.as_ref().unwrap();
    assert_eq!(form.spec_error, None);
    assert_eq!(form.name, "api-staging:8080");
    // A remote host needs the other document, which this class does not allow.
    press(&mut app, &["ctrl+u"]);
    type_text(&mut app, "0:db.internal:5432");
    assert_eq!(press(&mut app, &["enter"]), []);
    let error = app.forwards.form.as_ref().unwrap().error.clone().unwrap();
    assert!(
        error.starts_with(&format!(
            "the no-sudo class may not use \"{DOC_REMOTE_HOST}\""
        )),
        "{error}"
    );
    // Keepalive toggles with space on its field; Enter starts with the class's document.
    press(&mut app, &["ctrl+u"]);
    type_text(&mut app, "0:8080");
    press(&mut app, &["tab", "tab"]);
    type_text(&mut app, " ");
    // Sessions takes a digit from 1 to 8 (striping); anything else is refused on the spot.
    press(&mut app, &["tab"]);
    type_text(&mut app, "9");
    let form = app.forwards.form.as_ref().unwrap();
    assert_eq!(form.sessions, 1);
    assert!(form.error.as_deref().unwrap_or("").contains("1 to 8"));
    type_text(&mut app, "3");
    assert_eq!(app.forwards.form.as_ref().unwrap().sessions, 3);
    let effects = press(&mut app, &["enter"]);
    assert_eq!(
        effects,
        [Effect::StartForward {
            id: 1,
            run: 1,
            instance: Box::new(inst("i-22", "api-staging", "staging")),
            spec: ForwardSpec::parse("0:8080").unwrap(),
            document: DOC_PORT.into(),
            keepalive: true,
            sessions: 3,
            reason: None,
            who: Box::new(app.who().unwrap()),
        }]
    );
    assert_eq!(app.view(), View::Forwards);
    let f = app.forwards.selected().unwrap();
    assert_eq!(
        (f.name.as_str(), &f.phase),
        ("api-staging:8080", &Phase::Starting)
    );
    // A second forward may not reuse the name.
    press(&mut app, &["esc"]);
    add_forward(&mut app, "0:8080");
    assert_eq!(
        app.forwards.form.as_ref().unwrap().error.as_deref(),
        Some("a forward named \"api-staging:8080\" exists already")
    );
}

#[test]
fn add_forward_is_refused_with_the_reason() {
    // Read-only.
    let mut app = loaded_with(
        AppOptions {
            readonly: true,
            ..opts()
        },
        three(),
    );
    press(&mut app, &["f"]);
    assert_eq!(app.mode(), Mode::Instances);
    assert_eq!(status(&app), "read-only mode: forwards cannot be started");
    // A class without forwarding documents.
    let mut app = loaded_with(
        AppOptions {
            classes: forward_class(&[]),
            ..opts()
        },
        three(),
    );
    press(&mut app, &["f"]);
    assert_eq!(app.mode(), Mode::Instances);
    assert_eq!(
        status(&app),
        "the no-sudo class may not forward ports (port forwarding needs \"AWS-StartPortForwardingSession\" in [classes.no-sudo] forward_documents)"
    );
    // An unreachable instance says why, like a shell would.
    let mut app = loaded(vec![offline("i-9")]);
    press(&mut app, &["f"]);
    assert!(
        status(&app).starts_with("agent offline"),
        "{}",
        status(&app)
    );
    // Without a class configured, the spec's own document is used.
    let mut app = loaded(three());
    let effects = add_forward(&mut app, "0:db:5432");
    assert!(
        matches!(&effects[..], [Effect::StartForward { document, .. }] if document == DOC_REMOTE_HOST),
        "{effects:?}"
    );
}

/// An app with one forward added and started (id 1, run 1), answered as listening.
fn running_forward() -> App {
    let mut app = loaded(three());
    add_forward(&mut app, "0:80");
    app.update(Action::ForwardStarted {
        id: 1,
        run: 1,
        result: Ok(Some("127.0.0.1:54321".parse().unwrap())),
    });
    app
}

#[test]
fn start_stop_restart_and_delete_move_through_the_states() {
    let mut app = running_forward();
    let f = app.forwards.get(1).unwrap();
    assert_eq!(f.phase, Phase::Running(ForwardState::Listening));
    assert_eq!(f.local_addr, Some("127.0.0.1:54321".parse().unwrap()));
    assert_eq!(
        status(&app),
        "forward api-staging:80: 127.0.0.1:54321 -> api-staging (i-22):80"
    );
    // The engine reports reconnecting, then connected again.
    app.update(sample(
        1,
        1,
        snapshot(ForwardState::Reconnecting, 0, 0, 1000),
    ));
    assert_eq!(app.forwards.get(1).unwrap().phase.word(), "reconnecting");
    app.update(sample(1, 1, snapshot(ForwardState::Connected, 0, 0, 1500)));
    assert_eq!(app.forwards.get(1).unwrap().phase.word(), "connected");
    // Start while running is a no-op with a word.
    assert_eq!(press(&mut app, &["s"]), []);
    assert_eq!(status(&app), "forward api-staging:80 is connected");
    // Stop: stopping until the runtime says the session is gone.
    assert_eq!(
        press(&mut app, &["x"]),
        [Effect::StopForward { id: 1, run: 1 }]
    );
    assert_eq!(app.forwards.get(1).unwrap().phase, Phase::Stopping);
    // A late sample of the stopped run changes nothing.
    app.update(sample(1, 1, snapshot(ForwardState::Connected, 0, 0, 2000)));
    assert_eq!(app.forwards.get(1).unwrap().phase, Phase::Stopping);
    app.update(Action::ForwardStopped { id: 1, run: 1 });
    assert_eq!(app.forwards.get(1).unwrap().phase, Phase::Stopped);
    assert_eq!(press(&mut app, &["x"]), []);
    assert_eq!(status(&app), "forward api-staging:80 is not running");
    // Start again: a new run.
    let effects = press(&mut app, &["s"]);
    assert!(
        matches!(&effects[..], [Effect::StartForward { id: 1, run: 2, .. }]),
        "{effects:?}"
    );
    app.update(Action::ForwardStarted {
        id: 1,
        run: 2,
        result: Ok(Some("127.0.0.1:54322".parse().unwrap())),
    });
    // Restart: stop this run, start the next; results of the old run are ignored.
    let effects = press(&mut app, &["r"]);
    assert!(
        matches!(
            &effects[..],
            [
                Effect::StopForward { id: 1, run: 2 },
                Effect::StartForward { id: 1, run: 3, .. }
            ]
        ),
        "{effects:?}"
    );
    assert_eq!(app.forwards.get(1).unwrap().phase, Phase::Starting);
    app.update(Action::ForwardStopped { id: 1, run: 2 });
    assert_eq!(app.forwards.get(1).unwrap().phase, Phase::Starting);
    app.update(Action::ForwardStarted {
        id: 1,
        run: 3,
        result: Err("cannot listen on 127.0.0.1:8080: address in use".into()),
    });
    let f = app.forwards.get(1).unwrap();
    assert_eq!(
        f.phase,
        Phase::Failed("cannot listen on 127.0.0.1:8080: address in use".into())
    );
    assert_eq!(f.last_error, f.phase.failure().map(str::to_owned));
    // Delete asks first; "n" keeps it, "y" removes it (nothing to stop: it failed).
    press(&mut app, &["D"]);
    assert_eq!(app.mode(), Mode::Confirm);
    press(&mut app, &["n"]);
    assert_eq!(app.forwards.items.len(), 1);
    press(&mut app, &["D"]);
    assert_eq!(press(&mut app, &["y"]), []);
    assert!(app.forwards.items.is_empty());
    assert_eq!(status(&app), "forward api-staging:80 deleted");
}

#[test]
fn deleting_a_running_forward_stops_it() {
    let mut app = running_forward();
    press(&mut app, &["D"]);
    assert_eq!(
        press(&mut app, &["y"]),
        [Effect::StopForward { id: 1, run: 1 }]
    );
    assert!(app.forwards.items.is_empty());
}

#[test]
fn engine_failure_in_a_sample_marks_the_forward_failed() {
    let mut app = running_forward();
    let mut snap = snapshot(
        ForwardState::Failed("the session was terminated".into()),
        10,
        20,
        900,
    );
    snap.last_error = Some("TargetNotConnected: the agent is offline".into());
    app.update(sample(1, 1, snap));
    let f = app.forwards.get(1).unwrap();
    assert_eq!(f.phase.word(), "failed");
    assert_eq!(f.phase.failure(), Some("the session was terminated"));
    assert_eq!(
        f.last_error.as_deref(),
        Some("TargetNotConnected: the agent is offline")
    );
    // A failed forward can be started again.
    assert!(matches!(
        &press(&mut app, &["s"])[..],
        [Effect::StartForward { run: 2, .. }]
    ));
}

#[test]
fn a_forward_failed_on_an_expired_sso_sign_in_logs_in_and_starts_again() {
    let mut app = running_forward();
    // Another failure is not for `aws sso login`.
    let snap = snapshot(
        ForwardState::Failed("the agent is offline".into()),
        1,
        1,
        900,
    );
    app.update(sample(1, 1, snap));
    assert!(press(&mut app, &["l"]).is_empty());
    assert!(
        status(&app).contains("did not fail on an expired SSO sign-in"),
        "{}",
        status(&app)
    );

    let mut app = running_forward();
    let snap = snapshot(
        ForwardState::Failed(
            "cannot resume: the SSO sign-in for profile \"dev\" has expired or was never made"
                .into(),
        ),
        10,
        20,
        900,
    );
    app.update(sample(1, 1, snap));
    assert_eq!(
        press(&mut app, &["l"]),
        [Effect::SsoLogin {
            profile: "dev".into()
        }]
    );
    let effects = app.update(Action::SsoLoginFinished {
        profile: "dev".into(),
        result: Ok(()),
    });
    assert!(
        matches!(&effects[..], [Effect::StartForward { run: 2, .. }]),
        "{effects:?}"
    );
    assert!(status(&app).contains("starting the forward again"));
    // A later login from the sign-in panel is not mistaken for this one.
    let effects = app.update(Action::SsoLoginFinished {
        profile: "dev".into(),
        result: Ok(()),
    });
    assert!(!matches!(&effects[..], [Effect::StartForward { .. }]));
}

#[test]
fn rate_is_a_moving_average_of_the_samples() {
    let mut app = running_forward();
    let rate = |app: &App| app.forwards.get(1).unwrap().rate;
    // First sample: nothing to compare with yet.
    app.update(sample(1, 1, snapshot(ForwardState::Connected, 0, 0, 500)));
    assert_eq!(rate(&app).bytes_in, 0.0);
    // A steady 1 MiB/s in and 64 KiB/s out converges to those rates.
    let mut t = 500;
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    for _ in 0..40 {
        t += 500;
        bytes_in += 512 * 1024;
        bytes_out += 32 * 1024;
        app.update(sample(
            1,
            1,
            snapshot(ForwardState::Connected, bytes_in, bytes_out, t),
        ));
    }
    let r = rate(&app);
    assert!((r.bytes_in - 1024.0 * 1024.0).abs() < 1024.0, "{r:?}");
    assert!((r.bytes_out - 64.0 * 1024.0).abs() < 64.0, "{r:?}");
    // After one sample of silence it has dropped by 1 - e^(-0.5 / 2) ≈ 22 %.
    t += 500;
    app.update(sample(
        1,
        1,
        snapshot(ForwardState::Connected, bytes_in, bytes_out, t),
    ));
    let decayed = rate(&app).bytes_in / (1024.0 * 1024.0);
    assert!((decayed - (-0.25f64).exp()).abs() < 0.01, "{decayed}");
    // A long gap (the UI was suspended for a shell) is averaged over its real length.
    t += 60_000;
    bytes_in += 60 * 1024 * 1024;
    app.update(sample(
        1,
        1,
        snapshot(ForwardState::Connected, bytes_in, bytes_out, t),
    ));
    assert!((rate(&app).bytes_in - 1024.0 * 1024.0).abs() < 1024.0);
    // Stopped: no rate.
    press(&mut app, &["x"]);
    assert_eq!(rate(&app).bytes_in, 0.0);
}

fn saved(name: &str, target: &str, spec: &str, autostart: bool) -> ForwardConfig {
    ForwardConfig {
        name: name.into(),
        target: target.into(),
        spec: spec.into(),
        autostart,
        keepalive: false,
        sessions: 1,
    }
}

#[test]
fn saved_forwards_show_at_startup_and_autostart_after_the_first_load() {
    let opts = AppOptions {
        forwards: vec![
            saved("web", "web-prod", "0:80", true),
            saved("db", "db-primary", "0:5432", true),
            saved("manual", "Environment=dev", "0:22", false),
            saved("broken", "web-prod", "80", true),
            saved("aliased", "w", "0:443", true),
        ],
        aliases: BTreeMap::from([(
            "w".to_owned(),
            AliasConfig {
                target: "Name=web-prod".into(),
                profile: None,
                region: None,
            },
        )]),
        classes: BTreeMap::new(),
        // Reason rules are tested on their own below; here the targets are prod.
        ui: UiConfig {
            reason_required_tags: Vec::new(),
            ..UiConfig::default()
        },
        ..opts()
    };
    let mut app = App::new(opts);
    app.start();
    let words: Vec<&str> = app.forwards.items.iter().map(|f| f.phase.word()).collect();
    assert_eq!(
        words,
        ["stopped", "stopped", "stopped", "failed", "stopped"]
    );
    // Nothing starts before the instance list is complete.
    let effects = app.update(Action::IdentityLoaded {
        generation: 0,
        result: Ok(identity(WORLD_ARN)),
    });
    assert_eq!(effects, []);
    let effects = app.update(Action::InstancesPage {
        generation: 0,
        result: Ok(three()),
        done: true,
    });
    let started: Vec<(u64, String)> = effects
        .iter()
        .map(|e| match e {
            Effect::StartForward { id, instance, .. } => (*id, instance.id.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    // "web" by Name and "aliased" through its alias; "manual" waits for the user.
    assert_eq!(started, [(1, "i-1".to_owned()), (5, "i-1".to_owned())]);
    let db = app.forwards.get(2).unwrap();
    assert_eq!(
        db.phase.failure(),
        Some("no instance matches \"db-primary\" (`ssmtui list` shows every instance you can see)")
    );
    assert!(
        app.forwards
            .get(4)
            .unwrap()
            .phase
            .failure()
            .unwrap()
            .starts_with("\"80\" is not a forward spec"),
    );
    assert_eq!(app.forwards.get(3).unwrap().phase, Phase::Stopped);
    // Only once: a refresh does not start them again.
    assert_eq!(
        press(&mut app, &["r"]),
        [Effect::LoadInstances { generation: 0 }]
    );
    let effects = app.update(Action::InstancesPage {
        generation: 0,
        result: Ok(three()),
        done: true,
    });
    assert_eq!(effects, []);
    // The manual one starts on "s", resolving its tag filter then.
    press(&mut app, &["F"]);
    assert_eq!(app.view(), View::Forwards);
    let effects = press(&mut app, &["j", "j", "s"]);
    assert!(
        matches!(&effects[..], [Effect::StartForward { id: 3, instance, .. }] if instance.id == "i-333"),
        "{effects:?} {}",
        status(&app)
    );
}

#[test]
fn autostart_waits_for_the_class_when_classes_decide_documents() {
    let opts = AppOptions {
        forwards: vec![saved("web", "api-staging", "0:80", true)],
        classes: forward_class(&[DOC_PORT]),
        ..opts()
    };
    let mut app = App::new(opts);
    app.start();
    let effects = app.update(Action::InstancesPage {
        generation: 0,
        result: Ok(three()),
        done: true,
    });
    assert_eq!(effects, [], "no class known yet");
    let effects = app.update(Action::IdentityLoaded {
        generation: 0,
        result: Ok(identity(WORLD_ARN)),
    });
    assert!(
        matches!(&effects[..], [Effect::StartForward { document, .. }] if document == DOC_PORT),
        "{effects:?}"
    );
}

#[test]
fn saved_forward_out_of_scope_or_readonly_fails_with_the_reason() {
    let scoped = AppOptions {
        forwards: vec![saved("web", "web-prod", "0:80", true)],
        classes: forward_class(&[DOC_PORT]),
        ..opts()
    };
    let app = loaded_with(scoped, three());
    let f = app.forwards.get(1).unwrap();
    assert_eq!(f.phase.word(), "failed");
    assert!(
        f.phase
            .failure()
            .unwrap()
            .starts_with("\"web-prod\" matches no instance you can connect to now"),
        "{:?}",
        f.phase
    );
    let readonly = AppOptions {
        forwards: vec![saved("web", "web-prod", "0:80", true)],
        readonly: true,
        ..opts()
    };
    let app = loaded_with(readonly, three());
    assert_eq!(
        app.forwards.get(1).unwrap().phase.failure(),
        Some("read-only mode: forwards cannot be started")
    );
}

#[test]
fn forwards_command_and_back() {
    let mut app = loaded(three());
    press(&mut app, &[":"]);
    type_text(&mut app, "forwards");
    press(&mut app, &["enter"]);
    assert_eq!(app.view(), View::Forwards);
    assert_eq!(app.mode(), Mode::Forwards);
    press(&mut app, &["esc"]);
    assert_eq!(app.view(), View::Instances);
}

#[test]
fn an_added_forward_does_not_restart_in_another_account() {
    let mut app = running_forward();
    press(&mut app, &["x"]);
    app.update(Action::ForwardStopped { id: 1, run: 1 });
    press(&mut app, &[":"]);
    type_text(&mut app, "region eu-central-1");
    let effects = press(&mut app, &["enter"]);
    assert!(matches!(
        &effects[..],
        [Effect::SwitchAws { generation: 1, .. }]
    ));
    app.update(Action::AwsSwitched {
        generation: 1,
        result: Ok(()),
    });
    press(&mut app, &["F"]);
    assert_eq!(press(&mut app, &["s"]), []);
    assert_eq!(
        app.forwards.get(1).unwrap().phase.failure(),
        Some("added under another profile or region; switch back, or add it again here")
    );
}

/// An app started with `opts` after its identity and the three instances have loaded (the
/// point where saved forwards autostart), with the effects of that last load.
fn started_with(opts: AppOptions) -> (App, Vec<Effect>) {
    let mut app = App::new(opts);
    app.start();
    app.update(Action::IdentityLoaded {
        generation: 0,
        result: Ok(identity(WORLD_ARN)),
    });
    let effects = app.update(Action::InstancesPage {
        generation: 0,
        result: Ok(three()),
        done: true,
    });
    (app, effects)
}

#[test]
fn a_forward_to_a_target_that_requires_a_reason_asks_for_one() {
    // Autostart has nobody to ask: the default rule (Environment=prod) must not be skipped,
    // so the saved forward fails and says how to give a reason.
    let opts = AppOptions {
        forwards: vec![saved("web", "web-prod", "0:80", true)],
        ..opts()
    };
    let (mut app, effects) = started_with(opts);
    assert!(effects.is_empty(), "{effects:?}");
    let why = app.forwards.get(1).unwrap().phase.failure().unwrap();
    assert!(why.starts_with("a reason is required"), "{why}");
    assert!(why.contains("press s to give one"), "{why}");
    assert!(why.contains("ssmtui forward --reason"), "{why}");

    // "s" on it opens the reason prompt; Esc leaves it as it was.
    press(&mut app, &["F"]);
    assert_eq!(press(&mut app, &["s"]), []);
    assert_eq!(app.mode(), Mode::Reason);
    let prompt = app.reason.as_ref().unwrap();
    assert_eq!(prompt.purpose, ReasonFor::Forward(1));
    assert_eq!(
        prompt.required.as_deref(),
        Some("target is tagged Environment=prod")
    );
    assert_eq!(press(&mut app, &["esc"]), []);
    assert_eq!(status(&app), "forward web not started");
    assert_eq!(app.view(), View::Forwards);
    assert!(app.forwards.get(1).unwrap().phase.failure().is_some());

    // A blank answer is refused while required; a real one starts the forward with it.
    press(&mut app, &["s"]);
    type_text(&mut app, " ");
    assert_eq!(press(&mut app, &["enter"]), []);
    assert_eq!(app.mode(), Mode::Reason);
    press(&mut app, &["ctrl+u"]);
    type_text(&mut app, "CHG-7 db migration");
    let effects = press(&mut app, &["enter"]);
    assert!(
        matches!(
            &effects[..],
            [Effect::StartForward { id: 1, instance, reason: Some(r), .. }]
                if instance.id == "i-1" && r == "CHG-7 db migration"
        ),
        "{effects:?}"
    );
    assert_eq!(app.mode(), Mode::Forwards);
    assert_eq!(app.forwards.get(1).unwrap().phase, Phase::Starting);
}

#[test]
fn always_ask_reason_asks_before_a_forward_but_not_at_autostart() {
    let ui = UiConfig {
        always_ask_reason: true,
        reason_required_tags: Vec::new(),
        ..UiConfig::default()
    };
    let opts = AppOptions {
        forwards: vec![
            saved("auto", "api-staging", "0:80", true),
            saved("manual", "worker-dev", "0:22", false),
        ],
        ui,
        ..opts()
    };
    let (mut app, effects) = started_with(opts);
    assert!(
        matches!(
            &effects[..],
            [Effect::StartForward {
                id: 1,
                reason: None,
                ..
            }]
        ),
        "{effects:?}"
    );
    press(&mut app, &["F", "j"]);
    assert_eq!(press(&mut app, &["s"]), []);
    assert_eq!(app.reason.as_ref().unwrap().required, None);
    // Optional: Enter on an empty answer starts it without one.
    let effects = press(&mut app, &["enter"]);
    assert!(
        matches!(
            &effects[..],
            [Effect::StartForward {
                id: 2,
                reason: None,
                ..
            }]
        ),
        "{effects:?}"
    );
}

#[test]
fn a_discovered_class_decides_the_document_and_goes_with_the_shell() {
    let discovered = crate::access::ChosenClass {
        name: "sudo".into(),
        config: ClassConfig {
            document: "SSM-sudo".into(),
            ..ClassConfig::default()
        },
        origin: crate::access::ClassOrigin::Discovered,
    };
    // Remembered for this profile ("dev" in `opts`), not for another one.
    let remembered = BTreeMap::from([("dev".to_owned(), discovered.clone())]);
    let mut app = loaded_with(
        AppOptions {
            classes: BTreeMap::new(),
            remembered: remembered.clone(),
            ..opts()
        },
        vec![inst("i-1", "api", "dev")],
    );
    assert_eq!(app.class.as_ref(), Some(&discovered));
    let effects = press(&mut app, &["enter"]);
    let [Effect::OpenShell { document, who, .. }] = effects.as_slice() else {
        panic!("{effects:?}");
    };
    assert_eq!(document, "SSM-sudo");
    // The audit log records the class from this `who`.
    assert_eq!(who.class.as_ref(), Some(&discovered));
    assert_eq!(who.identity.arn, WORLD_ARN);

    let mut other = loaded_with(
        AppOptions {
            classes: BTreeMap::new(),
            remembered,
            profile: Some("prod".into()),
            ..opts()
        },
        vec![inst("i-1", "api", "dev")],
    );
    assert_eq!(other.class, None);
    assert_eq!(press(&mut other, &["enter"]), []);
    assert!(status(&other).starts_with("no access class is configured"));
}

fn sso_failure() -> SignInFailure {
    SignInFailure {
        message: "the SSO sign-in for profile \"dev\" has expired or was never made".to_owned(),
        hints: vec!["run `aws sso login --profile dev` and try again".to_owned()],
        sso_profile: Some("dev".to_owned()),
    }
}

#[test]
fn a_failed_sign_in_opens_the_panel_whose_keys_pick_a_profile_retry_or_sso_login() {
    let mut options = opts();
    options.profile = Some("dev".to_owned());
    options.profiles = vec!["dev".to_owned(), "prod".to_owned(), "sandbox".to_owned()];
    let mut app = App::new(options);
    app.start();
    app.update(Action::IdentityLoaded {
        generation: 0,
        result: Err(sso_failure()),
    });
    assert_eq!(app.mode(), Mode::SignIn);
    assert_eq!(
        app.sign_in.as_ref().unwrap().selected,
        0,
        "the current profile"
    );
    // `l` hands the terminal to `aws sso login` for the profile.
    assert_eq!(
        press(&mut app, &["l"]),
        [Effect::SsoLogin {
            profile: "dev".to_owned()
        }]
    );
    // Up wraps to the last profile; Enter switches to it.
    press(&mut app, &["k"]);
    let effects = press(&mut app, &["enter"]);
    assert!(
        matches!(
            effects.as_slice(),
            [Effect::SwitchAws { profile: Some(p), .. }] if p == "sandbox"
        ),
        "{effects:?}"
    );
    // A successful switch closes the panel and signs in again.
    let generation = match &effects[0] {
        Effect::SwitchAws { generation, .. } => *generation,
        _ => unreachable!(),
    };
    let effects = app.update(Action::AwsSwitched {
        generation,
        result: Ok(()),
    });
    assert!(!app.mode_open(Mode::SignIn));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::LoadIdentity { .. }))
    );
}

#[test]
fn the_panel_retries_and_closes_once_signed_in() {
    let mut app = App::new(opts());
    app.start();
    app.update(Action::IdentityLoaded {
        generation: 0,
        result: Err(sso_failure()),
    });
    let effects = press(&mut app, &["r"]);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::LoadIdentity { .. }))
            && effects
                .iter()
                .any(|e| matches!(e, Effect::LoadInstances { .. })),
        "{effects:?}"
    );
    assert!(!app.mode_open(Mode::SignIn));
    let generation = match effects
        .iter()
        .find(|e| matches!(e, Effect::LoadIdentity { .. }))
    {
        Some(Effect::LoadIdentity { generation }) => *generation,
        _ => unreachable!(),
    };
    // Fails again: the panel comes back; a later success closes it.
    app.update(Action::IdentityLoaded {
        generation,
        result: Err(sso_failure()),
    });
    assert!(app.mode_open(Mode::SignIn));
    app.update(Action::SsoLoginFinished {
        profile: "dev".to_owned(),
        result: Ok(()),
    });
    assert!(!app.mode_open(Mode::SignIn), "a successful login retries");
    // A profile that does not sign in with SSO has no `l`.
    app.update(Action::IdentityLoaded {
        generation: generation + 1,
        result: Err(SignInFailure {
            sso_profile: None,
            ..sso_failure()
        }),
    });
    assert!(app.mode_open(Mode::SignIn));
    assert!(press(&mut app, &["l"]).is_empty());
    assert!(
        status(&app).contains("does not sign in with SSO"),
        "{}",
        status(&app)
    );
}

#[test]
fn the_transcript_pane_opens_searches_and_follows() {
    use crate::app::transcript::{Follow, LoadedTranscript};
    use crate::transcripts::Source;
    let mut app = in_sessions(false);
    app.update(Action::Resize {
        width: 60,
        height: 20,
    });
    // The first row is bob's active session.
    let effects = press(&mut app, &["l"]);
    assert_eq!(
        effects,
        [Effect::LoadTranscript {
            session_id: "bob-09f8e7d6c5b4a3928".to_owned(),
            document: Some("SSM-SessionManagerRunShell".to_owned()),
            active: true,
        }]
    );
    assert_eq!(app.mode(), Mode::Transcript);
    assert!(app.transcript.as_ref().unwrap().loading);
    // `f` before anything arrived says why not.
    assert!(press(&mut app, &["f"]).is_empty());
    assert_eq!(status(&app), "the transcript is still loading");
    let text: String = (0..40).map(|i| format!("$ echo {i}\r\n{i}\r\n")).collect();
    let follow = Follow {
        group: "/g".to_owned(),
        stream: "bob-09f8e7d6c5b4a3928".to_owned(),
        token: Some("f/1".to_owned()),
    };
    // An answer for another session is ignored.
    app.update(Action::TranscriptLoaded {
        session_id: "someone-else".to_owned(),
        result: Ok(LoadedTranscript {
            bytes: b"x".to_vec(),
            source: Source::S3,
            location: String::new(),
            follow: None,
        }),
    });
    assert!(app.transcript.as_ref().unwrap().loading);
    app.update(Action::TranscriptLoaded {
        session_id: "bob-09f8e7d6c5b4a3928".to_owned(),
        result: Ok(LoadedTranscript {
            bytes: text.into_bytes(),
            source: Source::Cloudwatch,
            location: "cloudwatch:/g (streamed)".to_owned(),
            follow: Some(follow.clone()),
        }),
    });
    let page = app.transcript_rows();
    let pane = app.transcript.as_ref().unwrap();
    assert_eq!(pane.lines.len(), 80);
    assert_eq!(pane.width, 58);
    // A live session opens at its end.
    assert_eq!(pane.top, 80 - page);
    // Search: `/`, text, enter goes to the first match at or after the top, wrapping.
    press(&mut app, &["g", "/"]);
    assert_eq!(app.mode(), Mode::TranscriptSearch);
    type_text(&mut app, "echo 1");
    press(&mut app, &["enter"]);
    assert_eq!(app.mode(), Mode::Transcript);
    let top_text = |app: &App| {
        let p = app.transcript.as_ref().unwrap();
        p.lines[p.top].text.clone()
    };
    assert_eq!(top_text(&app), "$ echo 1");
    press(&mut app, &["n"]);
    assert_eq!(top_text(&app), "$ echo 10");
    press(&mut app, &["N"]);
    assert_eq!(top_text(&app), "$ echo 1");
    // Backwards from the first match wraps to the last one within reach of a full page.
    press(&mut app, &["N"]);
    assert_eq!(app.transcript.as_ref().unwrap().top, 38);
    press(&mut app, &["/"]);
    press(&mut app, &["ctrl+u"]);
    type_text(&mut app, "nowhere");
    press(&mut app, &["enter"]);
    assert_eq!(status(&app), "\"nowhere\" is not in the transcript");
    // Follow: a poll, new output at the end, and the next poll.
    let effects = press(&mut app, &["f"]);
    assert_eq!(
        effects,
        [Effect::PollTranscript {
            session_id: "bob-09f8e7d6c5b4a3928".to_owned(),
            generation: 1,
            follow,
        }]
    );
    let effects = app.update(Action::TranscriptPolled {
        session_id: "bob-09f8e7d6c5b4a3928".to_owned(),
        generation: 1,
        result: Ok((b"$ echo late\r\nlate\r\n".to_vec(), Some("f/9".to_owned()))),
    });
    let pane = app.transcript.as_ref().unwrap();
    assert_eq!(pane.lines[pane.lines.len() - 1].text, "late");
    assert_eq!(pane.top, pane.lines.len() - page);
    match effects.as_slice() {
        [Effect::PollTranscript { follow, .. }] => {
            assert_eq!(follow.token.as_deref(), Some("f/9"));
        }
        other => panic!("{other:?}"),
    }
    // `f` again stops; `f` once more starts a new following, and the answer to a poll of the
    // first one appends nothing and asks for nothing.
    press(&mut app, &["f"]);
    let effects = press(&mut app, &["f"]);
    assert!(
        matches!(
            effects.as_slice(),
            [Effect::PollTranscript { generation: 2, .. }]
        ),
        "{effects:?}"
    );
    let before = app.transcript.as_ref().unwrap().lines.len();
    let effects = app.update(Action::TranscriptPolled {
        session_id: "bob-09f8e7d6c5b4a3928".to_owned(),
        generation: 1,
        result: Ok((b"stale\r\n".to_vec(), None)),
    });
    assert!(effects.is_empty());
    assert_eq!(app.transcript.as_ref().unwrap().lines.len(), before);
    press(&mut app, &["f"]);
    let effects = app.update(Action::TranscriptPolled {
        session_id: "bob-09f8e7d6c5b4a3928".to_owned(),
        generation: 1,
        result: Ok((Vec::new(), None)),
    });
    assert!(effects.is_empty());
    // Esc closes the pane.
    press(&mut app, &["esc"]);
    assert_eq!(app.mode(), Mode::Sessions);
    assert!(app.transcript.is_none());
}

mod fleet {
    use super::*;
    use crate::app::{SourceListing, SourceStatus};
    use crate::fleet::Source;

    const ADMIN: &str = "arn:aws:sts::210987654321:assumed-role/AWSReservedSSO_PlatformAdmin_x/bob";
    const DEV: &str = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Developer_x/bob";

    /// Two classes decided by the permission set, as an organisation has them.
    fn org_classes() -> BTreeMap<String, ClassConfig> {
        BTreeMap::from([
            (
                "sudo".into(),
                ClassConfig {
                    document: "SSM-sudo".into(),
                    forward_documents: vec!["AWS-StartPortForwardingSession".into()],
                    principals: vec![
                        "arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*".into(),
                    ],
                    ..ClassConfig::default()
                },
            ),
            (
                "no-sudo".into(),
                ClassConfig {
                    document: "SSM-nosudo".into(),
                    forward_documents: vec!["AWS-StartPortForwardingSession".into()],
                    principals: vec![
                        "arn:aws:sts::*:assumed-role/AWSReservedSSO_Developer_*/*".into(),
                    ],
                    scope: BTreeMap::from([("Environment".into(), vec!["dev".into()])]),
                    ..ClassConfig::default()
                },
            ),
        ])
    }

    fn source(profile: &str, region: &str) -> Source {
        Source {
            profile: Some(profile.into()),
            region: Some(region.into()),
        }
    }

    fn fleet_app() -> (App, Vec<Effect>) {
        let mut app = App::new(AppOptions {
            classes: org_classes(),
            profile: None,
            region: None,
            fleet: vec![
                source("prod", "eu-west-1"),
                source("dev", "eu-west-1"),
                source("gone", "eu-west-1"),
            ],
            fleet_aliases: BTreeMap::from([("210987654321".into(), "dev".into())]),
            ..opts()
        });
        app.update(Action::Resize {
            width: 120,
            height: 30,
        });
        let effects = app.start();
        (app, effects)
    }

    fn listing(
        arn: &str,
        account: &str,
        instances: Vec<Instance>,
    ) -> Box<Result<SourceListing, SignInFailure>> {
        Box::new(Ok(SourceListing {
            identity: Identity {
                account: account.into(),
                ..identity(arn)
            },
            region: Some("eu-west-1".into()),
            instances,
        }))
    }

    fn failure() -> Box<Result<SourceListing, SignInFailure>> {
        Box::new(Err(SignInFailure {
            message: "the SSO session for profile gone has expired".into(),
            hints: vec!["run `aws sso login --profile gone`".into()],
            sso_profile: Some("gone".into()),
        }))
    }

    #[test]
    fn sources_load_on_their_own_and_rows_carry_account_region_and_that_accounts_class() {
        let (mut app, effects) = fleet_app();
        assert_eq!(effects.len(), 3);
        assert!(matches!(
            &effects[1],
            Effect::LoadSource { generation: 1, index: 1, profile: Some(p), fresh: false, .. } if p == "dev"
        ));
        assert!(app.busy());
        // prod answers first: its rows show while the others load.
        app.update(Action::SourceLoaded {
            generation: 1,
            index: 0,
            result: listing(
                DEV,
                "123456789012",
                vec![inst("i-1", "web-1", "prod"), inst("i-2", "api-1", "dev")],
            ),
        });
        assert_eq!(app.instances.total(), 2);
        assert!(app.instances.loading && app.busy());
        app.update(Action::SourceLoaded {
            generation: 1,
            index: 1,
            result: listing(ADMIN, "210987654321", vec![inst("i-3", "web-1", "prod")]),
        });
        app.update(Action::SourceLoaded {
            generation: 1,
            index: 2,
            result: failure(),
        });
        assert!(!app.instances.loading && !app.busy());
        assert_eq!(app.instances.total(), 3);
        assert!(
            matches!(&app.fleet[2].status, SourceStatus::Failed { reason, hint: Some(h) } if reason.contains("expired") && h.contains("sso login"))
        );
        // The columns and places.
        let cols = app.instances.columns();
        assert_eq!(
            &cols[..3],
            &[
                instances::Column::Name,
                instances::Column::Account,
                instances::Column::Region
            ]
        );
        let place = |id: &str| {
            (0..app.instances.visible_len())
                .filter_map(|p| app.instances.visible_row(p))
                .find(|r| r.instance.id == id)
                .and_then(|r| r.place.clone())
                .unwrap()
        };
        assert_eq!(
            place("i-1"),
            ("123456789012".to_owned(), "eu-west-1".to_owned())
        );
        assert_eq!(place("i-3"), ("dev".to_owned(), "eu-west-1".to_owned()));
        // Reachability by each account's class: no-sudo (dev only) in prod, sudo in dev.
        let access = |id: &str| {
            (0..app.instances.visible_len())
                .filter_map(|p| app.instances.visible_row(p))
                .find(|r| r.instance.id == id)
                .map(|r| r.access.is_none())
                .unwrap()
        };
        assert!(!access("i-1") && access("i-2") && access("i-3"));
        // account= narrows by where rows come from.
        app.instances.set_filter("account=dev");
        assert_eq!(app.instances.visible_len(), 1);
        app.instances.set_filter("");
    }

    #[test]
    fn a_shell_goes_through_the_selected_rows_account_and_r_retries_the_failed_source() {
        let (mut app, _) = fleet_app();
        app.update(Action::SourceLoaded {
            generation: 1,
            index: 0,
            result: listing(DEV, "123456789012", vec![inst("i-2", "api-1", "dev")]),
        });
        app.update(Action::SourceLoaded {
            generation: 1,
            index: 1,
            result: listing(ADMIN, "210987654321", vec![inst("i-3", "web-1", "staging")]),
        });
        app.update(Action::SourceLoaded {
            generation: 1,
            index: 2,
            result: failure(),
        });
        // Sorted by name: api-1 (prod account) then web-1 (dev account).
        press(&mut app, &["g"]);
        assert_eq!(app.instances.selected().unwrap().instance.id, "i-2");
        assert_eq!(app.opts.profile.as_deref(), Some("prod"));
        let effects = press(&mut app, &["enter"]);
        assert!(
            matches!(effects.as_slice(), [Effect::OpenShell { document, who, .. }]
                if document == "SSM-nosudo" && who.profile.as_deref() == Some("prod")
                    && who.class.as_ref().is_some_and(|c| c.name == "no-sudo")),
            "{effects:?}"
        );
        press(&mut app, &["j"]);
        assert_eq!(app.instances.selected().unwrap().instance.id, "i-3");
        let effects = press(&mut app, &["enter"]);
        assert!(
            matches!(effects.as_slice(), [Effect::OpenShell { document, who, .. }]
                if document == "SSM-sudo" && who.profile.as_deref() == Some("dev")
                    && who.identity.account == "210987654321"
                    && who.region.as_deref() == Some("eu-west-1")),
            "{effects:?}"
        );
        // :profile cannot switch the fleet away.
        let before = app.instances.total();
        app.switch_aws(Some("prod".into()), None);
        assert_eq!(app.instances.total(), before);
        // r: every source again, a fresh client for the failed one; rows stay meanwhile.
        let effects = press(&mut app, &["r"]);
        let fresh: Vec<(usize, bool)> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::LoadSource {
                    index,
                    fresh,
                    generation: 2,
                    ..
                } => Some((*index, *fresh)),
                _ => None,
            })
            .collect();
        assert_eq!(fresh, [(0, false), (1, false), (2, true)]);
        assert_eq!(app.instances.total(), 2);
        // A late answer of the old generation is dropped.
        app.update(Action::SourceLoaded {
            generation: 1,
            index: 0,
            result: listing(DEV, "123456789012", vec![]),
        });
        assert_eq!(app.instances.total(), 2);
        app.update(Action::SourceLoaded {
            generation: 2,
            index: 2,
            result: listing(DEV, "345678901234", vec![inst("i-9", "zz-1", "dev")]),
        });
        assert!(matches!(&app.fleet[2].status, SourceStatus::Ready(r) if r.count == 1));
        assert_eq!(app.instances.total(), 3);
    }
}
