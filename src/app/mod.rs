//! The interactive app as pure state: [`App::update`] takes an [`Action`] and returns the
//! [`Effect`]s to perform. No terminal, no network, no clock — the runtime feeds time in as
//! [`Action::Tick`] — so every behaviour here is a plain unit test.
//!
//! Invariants: actions go to the focused mode only (the top of the [`ModeStack`]); async results
//! from an older `generation` (before a profile/region switch) are dropped; every refused action
//! leaves a status line saying why.

pub mod action;
pub mod fleet;
pub mod forwards;
pub mod instances;
pub mod mode;
pub mod sessions;
pub mod transcript;

use std::collections::BTreeMap;

pub use action::{Action, Effect, Intent, SignInFailure};
pub use fleet::{ReadySource, SourceListing, SourceState, SourceStatus};
pub use mode::{Mode, ModeStack, View};

use crate::access::{self, ChosenClass, Who};
use crate::aws::profiles::REGIONS;
use crate::aws::{Identity, Instance};
use crate::config::keymap::{Key, Keymap};
use crate::config::{AliasConfig, ClassConfig, ForwardConfig, UiConfig, Unreachable};
use forwards::ForwardsState;
use instances::InstancesState;
use sessions::SessionsState;

/// Milliseconds between [`Action::Tick`]s.
pub const TICK_MS: u64 = 100;

/// Rows of screen the instance and session tables do not get: header (2), footer (1), status
/// line (1), table borders (2) and column titles (1). `ui` lays out exactly this.
pub const LIST_CHROME_ROWS: u16 = 7;

/// Longest reason AWS accepts.
pub use crate::rules::MAX_REASON;

/// The `:` commands, for completion.
pub const COMMANDS: [&str; 6] = [
    "instances",
    "sessions",
    "forwards",
    "profile",
    "region",
    "quit",
];

/// Everything the app needs from configuration and the command line.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// `[ui]`.
    pub ui: UiConfig,
    /// `[classes.*]`.
    pub classes: BTreeMap<String, ClassConfig>,
    /// With no classes configured: the class chosen earlier among the account's tagged
    /// documents, by profile (`None` as "default"), as `ssmtui connect` remembers it.
    pub remembered: BTreeMap<String, ChosenClass>,
    /// The effective key table.
    pub keymap: Keymap,
    /// Profile in use (`None`: the default chain).
    pub profile: Option<String>,
    /// Region in use (`None`: the default chain).
    pub region: Option<String>,
    /// `--readonly`.
    pub readonly: bool,
    /// Profile names from the AWS config file, for `:profile` completion.
    pub profiles: Vec<String>,
    /// `[aliases]`, for the targets of saved forwards.
    pub aliases: BTreeMap<String, AliasConfig>,
    /// `[[forwards]]`: shown in the forwards tab, `autostart` ones started.
    pub forwards: Vec<ForwardConfig>,
    /// The fleet's (profile, region) sources, listed together; empty: one profile and region.
    pub fleet: Vec<crate::fleet::Source>,
    /// `[fleet.aliases]`: names for account ids.
    pub fleet_aliases: BTreeMap<String, String>,
}

/// How the status line is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Neutral news.
    Info,
    /// Something was refused, with the reason.
    Warn,
    /// Something failed.
    Error,
}

/// One line of news at the bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The text.
    pub text: String,
    /// How it is shown.
    pub level: Level,
}

/// What a reason prompt starts once answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonFor {
    /// A shell on the prompt's instance.
    Shell,
    /// Forward `id` of the forwards tab.
    Forward(u64),
}

/// The reason prompt before a shell or a forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonPrompt {
    /// What Enter starts.
    pub purpose: ReasonFor,
    /// The target (kept, so a refresh meanwhile cannot change it).
    pub instance: Instance,
    /// The document the shell will use.
    pub document: String,
    /// Why a reason is required, if it is.
    pub required: Option<String>,
    /// What has been typed.
    pub input: String,
    /// Why the last Enter was refused.
    pub error: Option<String>,
}

/// A yes/no question and what "yes" does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// The question.
    pub question: String,
    /// What "yes" does.
    pub on_yes: ConfirmAction,
}

/// What a confirmed question does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmAction {
    /// Terminate this session.
    TerminateSession(String),
    /// Delete this forward (stopping it first).
    DeleteForward(u64),
}

/// The `:` command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// What has been typed.
    pub input: String,
    /// The candidates of the last Tab, shown under the input.
    pub candidates: Vec<String>,
}

/// A group of the help overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpSection {
    /// The mode name.
    pub mode: String,
    /// Keys (joined), action name, description.
    pub rows: Vec<(String, String, String)>,
}

/// The sign-in panel: why signing in failed and which profile is selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInPanel {
    /// Why.
    pub failure: SignInFailure,
    /// The selected profile (index into the options' profiles).
    pub selected: usize,
}

/// The whole app state.
#[derive(Debug)]
pub struct App {
    opts: AppOptions,
    modes: ModeStack,
    /// The instance list.
    pub instances: InstancesState,
    /// The sessions list.
    pub sessions: SessionsState,
    /// The forwards tab.
    pub forwards: ForwardsState,
    /// The caller, once STS answered.
    pub identity: Option<Identity>,
    /// Why STS failed, if it did.
    pub identity_error: Option<String>,
    /// The sign-in panel, while signing in has failed.
    pub sign_in: Option<SignInPanel>,
    /// The caller's class (configured, or remembered from discovery).
    pub class: Option<ChosenClass>,
    /// Why the caller has no class, when the policy refused them one.
    pub class_error: Option<String>,
    /// The status line.
    pub status: Option<Status>,
    /// The `:` input.
    pub command: CommandLine,
    /// The filter input while typing (the list follows it live).
    pub filter_input: String,
    /// The reason prompt, when open.
    pub reason: Option<ReasonPrompt>,
    /// The confirm dialog, when open.
    pub confirm: Option<Confirm>,
    /// First line of the help overlay on screen.
    pub help_scroll: usize,
    /// Terminal size.
    pub size: (u16, u16),
    /// The transcript pane, while open.
    pub transcript: Option<transcript::TranscriptPane>,
    /// A profile/region switch in progress.
    pub switching: Option<(Option<String>, Option<String>)>,
    /// The fleet's sources (empty without a fleet).
    pub fleet: Vec<SourceState>,
    /// Generation of the fleet's current loads; older answers are dropped.
    fleet_generation: u64,
    /// The fleet source the app acts as now (see [`fleet`]).
    acting: Option<usize>,
    /// The forward to start again once the `aws sso login` run for it has succeeded.
    sso_retry_forward: Option<u64>,
    generation: u64,
    ticks: u64,
    ticks_since_refresh: u64,
    dirty: bool,
}

impl App {
    /// A new app; call [`App::start`] for the first effects.
    pub fn new(opts: AppOptions) -> Self {
        let instances = InstancesState::new(
            opts.ui.columns.clone(),
            opts.ui.unreachable == Unreachable::Hide,
        );
        let forwards = ForwardsState::from_config(&opts.forwards);
        let fleet = Self::fleet_sources(&opts.fleet);
        Self {
            opts,
            modes: ModeStack::new(View::Instances),
            instances,
            sessions: SessionsState::default(),
            forwards,
            identity: None,
            identity_error: None,
            sign_in: None,
            class: None,
            class_error: None,
            status: None,
            command: CommandLine::default(),
            filter_input: String::new(),
            reason: None,
            confirm: None,
            help_scroll: 0,
            size: (80, 24),
            transcript: None,
            switching: None,
            sso_retry_forward: None,
            fleet,
            fleet_generation: 0,
            acting: None,
            generation: 0,
            ticks: 0,
            ticks_since_refresh: 0,
            dirty: true,
        }
    }

    /// The first loads.
    pub fn start(&mut self) -> Vec<Effect> {
        if !self.fleet.is_empty() {
            self.instances.set_fleet(true);
            return self.load_fleet();
        }
        self.instances.begin_load();
        vec![
            Effect::LoadIdentity {
                generation: self.generation,
            },
            Effect::LoadInstances {
                generation: self.generation,
            },
        ]
    }

    /// The options the app runs with.
    pub fn options(&self) -> &AppOptions {
        &self.opts
    }

    /// The key table.
    pub fn keymap(&self) -> &Keymap {
        &self.opts.keymap
    }

    /// The focused mode.
    pub fn mode(&self) -> Mode {
        self.modes.top()
    }

    /// The view underneath.
    pub fn view(&self) -> View {
        self.modes.view()
    }

    /// Whether `mode` is open.
    pub fn mode_open(&self, mode: Mode) -> bool {
        self.modes.contains(mode)
    }

    /// Spinner frame counter.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Whether something changed since the last [`App::take_dirty`].
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Whether anything is loading (the spinner turns).
    pub fn busy(&self) -> bool {
        if !self.fleet.is_empty() {
            return self.fleet_loading() || self.sessions.loading;
        }
        self.instances.loading
            || self.sessions.loading
            || self.switching.is_some()
            || (self.identity.is_none() && self.identity_error.is_none())
    }

    /// Rows of the instance/session table on screen.
    pub fn list_rows(&self) -> usize {
        // With a fleet, the sources strip takes a row of the instances view.
        let strip = u16::from(!self.fleet.is_empty() && self.view() == View::Instances);
        usize::from(self.size.1.saturating_sub(LIST_CHROME_ROWS + strip)).max(1)
    }

    /// The document shells will use, or a note saying why there is none. Without a class
    /// there is no document: falling back to the account default would bypass the classes.
    pub fn shell_document(&self) -> (String, Option<&'static str>) {
        match &self.class {
            Some(class) => (class.config.document.clone(), None),
            None => (
                "none".to_owned(),
                Some("no access class; shells are refused"),
            ),
        }
    }

    /// Who would start sessions now: the caller and their class, once STS has answered.
    pub fn who(&self) -> Option<Who> {
        Some(Who {
            identity: self.identity.clone()?,
            class: self.class.clone(),
            profile: self.opts.profile.clone(),
            region: self.opts.region.clone(),
        })
    }

    /// Resolves a key for the focused mode: a bound action, or a character for a text input.
    pub fn resolve_key(&self, key: Key) -> Option<Action> {
        let mode = self.mode();
        if let Some(name) = self.opts.keymap.lookup(mode.name(), key) {
            return Intent::from_name(name).map(Action::Intent);
        }
        match key.code {
            crossterm::event::KeyCode::Char(c)
                if mode.takes_text()
                    && key
                        .mods
                        .difference(crossterm::event::KeyModifiers::SHIFT)
                        .is_empty() =>
            {
                Some(Action::Char(c))
            }
            _ => None,
        }
    }

    /// Applies an action and returns what to do.
    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        let effects = self.apply(action);
        self.follow_selection();
        effects
    }

    fn apply(&mut self, action: Action) -> Vec<Effect> {
        let effects = match action {
            action @ Action::SourceLoaded { .. } => self.fleet_action(action),
            Action::Tick => return self.tick(),
            Action::ForwardStarted { .. }
            | Action::ForwardStopped { .. }
            | Action::ForwardStats(_) => {
                // Samples arrive twice a second whatever is on screen; only redraw for them
                // when something visible changed.
                if self.forward_action(action) {
                    self.dirty = true;
                }
                return Vec::new();
            }
            Action::Intent(intent) => {
                self.status = None;
                self.intent(intent)
            }
            Action::Char(c) => self.typed(c),
            Action::Resize { width, height } => {
                self.size = (width, height);
                let inner = self.transcript_width();
                if let Some(pane) = &mut self.transcript
                    && pane.width != inner
                    && !pane.loading
                {
                    pane.render(inner);
                }
                Vec::new()
            }
            Action::TranscriptLoaded { session_id, result } => {
                let (width, page) = (self.transcript_width(), self.transcript_rows());
                let Some(pane) = self
                    .transcript
                    .as_mut()
                    .filter(|p| p.session_id == session_id)
                else {
                    return Vec::new();
                };
                match result {
                    Ok(t) => pane.loaded(t, width, page),
                    Err(e) => {
                        pane.loading = false;
                        pane.error = Some(e);
                    }
                }
                Vec::new()
            }
            Action::TranscriptPolled {
                session_id,
                generation,
                result,
            } => {
                let page = self.transcript_rows();
                let Some(pane) = self.transcript.as_mut().filter(|p| {
                    p.session_id == session_id && p.following && p.follow_generation == generation
                }) else {
                    return Vec::new();
                };
                match result {
                    Ok((bytes, token)) => {
                        pane.append(&bytes, token, page);
                        pane.follow
                            .clone()
                            .map(|follow| Effect::PollTranscript {
                                session_id,
                                generation,
                                follow,
                            })
                            .into_iter()
                            .collect()
                    }
                    Err(e) => {
                        pane.following = false;
                        self.set_status(Level::Error, format!("stopped following: {e}"));
                        Vec::new()
                    }
                }
            }
            Action::IdentityLoaded { generation, result } => {
                if generation != self.generation {
                    return Vec::new();
                }
                match result {
                    Ok(identity) => {
                        let profile = self.opts.profile.as_deref().unwrap_or("default");
                        let remembered = self.opts.remembered.get(profile).cloned();
                        match access::known_class(&self.opts.classes, remembered, &identity.arn) {
                            Ok(class) => {
                                self.class = class;
                                self.class_error = None;
                            }
                            Err(e) => {
                                self.class = None;
                                self.class_error = Some(e.to_string());
                            }
                        }
                        self.identity = Some(identity);
                        self.identity_error = None;
                        self.sign_in = None;
                        self.modes.remove(Mode::SignIn);
                        self.instances.set_class(self.class.as_ref());
                    }
                    Err(failure) => {
                        self.identity_error = Some(failure.to_string());
                        let current = self.opts.profile.as_deref().unwrap_or("default");
                        let selected = self
                            .opts
                            .profiles
                            .iter()
                            .position(|p| p == current)
                            .unwrap_or(0);
                        self.sign_in = Some(SignInPanel { failure, selected });
                        if !self.mode_open(Mode::SignIn) {
                            if self.mode().takes_text() {
                                // Keys being typed stay in their input; the panel waits below.
                                self.modes.insert_below_top(Mode::SignIn);
                            } else {
                                self.modes.push(Mode::SignIn);
                            }
                        }
                        self.set_status(Level::Error, "cannot sign in".to_owned());
                    }
                }
                self.maybe_autostart()
            }
            Action::InstancesPage {
                generation,
                result,
                done,
            } => {
                if generation != self.generation {
                    return Vec::new();
                }
                match result {
                    Ok(page) => self.instances.add_page(page, done, self.class.as_ref()),
                    Err(e) => {
                        // While the sign-in panel says why, the list failing too is no news.
                        if self.sign_in.is_none() {
                            self.set_status(Level::Error, format!("cannot list instances: {e}"));
                        }
                        self.instances.fail(e);
                    }
                }
                self.maybe_autostart()
            }
            Action::SessionsLoaded { generation, result } => {
                if generation != self.generation {
                    return Vec::new();
                }
                match result {
                    Ok(items) => self.sessions.set(items),
                    Err(e) => {
                        self.sessions.loading = false;
                        self.set_status(Level::Error, format!("cannot list sessions: {e}"));
                        self.sessions.error = Some(e);
                    }
                }
                Vec::new()
            }
            Action::SessionTerminated { id, result } => match result {
                Ok(()) => {
                    self.set_status(Level::Info, format!("session {id} terminated"));
                    self.load_sessions()
                }
                Err(e) => {
                    self.set_status(Level::Error, format!("cannot terminate {id}: {e}"));
                    Vec::new()
                }
            },
            Action::AwsSwitched { generation, result } => {
                if generation != self.generation {
                    return Vec::new();
                }
                let Some((profile, region)) = self.switching.take() else {
                    return Vec::new();
                };
                match result {
                    Ok(()) => {
                        self.opts.profile = profile;
                        self.opts.region = region;
                        self.identity = None;
                        self.identity_error = None;
                        self.sign_in = None;
                        self.modes.remove(Mode::SignIn);
                        self.class = None;
                        self.class_error = None;
                        self.instances.clear();
                        self.sessions = SessionsState::default();
                        self.set_status(Level::Info, format!("switched to {}", self.where_label()));
                        let mut effects = self.start();
                        if self.view() == View::Sessions {
                            effects.extend(self.load_sessions());
                        }
                        effects
                    }
                    Err(e) => {
                        self.set_status(Level::Error, format!("cannot switch: {e}"));
                        Vec::new()
                    }
                }
            }
            Action::SsoLoginFinished { profile, result } if self.sso_retry_forward.is_some() => {
                let id = self.sso_retry_forward.take().unwrap_or_default();
                match result {
                    Ok(()) => {
                        self.set_status(
                            Level::Info,
                            format!("`aws sso login --profile {profile}` succeeded; starting the forward again"),
                        );
                        self.start_forward(id)
                    }
                    Err(e) => {
                        self.set_status(Level::Error, format!("aws sso login failed: {e}"));
                        Vec::new()
                    }
                }
            }
            Action::SsoLoginFinished { profile, result } => match result {
                Ok(()) => {
                    let effects = self.retry_sign_in();
                    self.set_status(
                        Level::Info,
                        format!("`aws sso login --profile {profile}` succeeded; signing in again"),
                    );
                    effects
                }
                Err(e) => {
                    self.set_status(Level::Error, format!("aws sso login failed: {e}"));
                    Vec::new()
                }
            },
            Action::ShellFinished { target, result } => {
                match result {
                    Ok(Some(0)) | Ok(None) => {
                        self.set_status(Level::Info, format!("shell on {target} ended"));
                    }
                    Ok(Some(code)) => self.set_status(
                        Level::Warn,
                        format!("shell on {target} ended with exit status {code}"),
                    ),
                    Err(e) => {
                        self.set_status(Level::Error, format!("shell on {target} failed: {e}"))
                    }
                }
                Vec::new()
            }
        };
        self.dirty = true;
        let rows = self.list_rows();
        self.instances.sync(rows);
        self.sessions.scroll.clamp(self.sessions.items.len(), rows);
        self.forwards.scroll.clamp(self.forwards.items.len(), rows);
        effects
    }

    fn tick(&mut self) -> Vec<Effect> {
        self.ticks += 1;
        self.ticks_since_refresh += 1;
        if self.busy() {
            self.dirty = true;
        }
        let every = self.opts.ui.refresh_seconds.saturating_mul(1000);
        if every > 0 && self.ticks_since_refresh.saturating_mul(TICK_MS) >= every {
            self.ticks_since_refresh = 0;
            let mut effects = Vec::new();
            if !self.instances.loading && self.switching.is_none() {
                effects.extend(self.load_instances());
            }
            if self.view() == View::Sessions && !self.sessions.loading {
                effects.extend(self.load_sessions());
            }
            return effects;
        }
        Vec::new()
    }

    fn set_status(&mut self, level: Level, text: String) {
        self.status = Some(Status { text, level });
    }

    /// `profile X, region Y` for messages and the header.
    pub fn where_label(&self) -> String {
        format!(
            "profile {}, region {}",
            self.opts.profile.as_deref().unwrap_or("(default)"),
            self.opts.region.as_deref().unwrap_or("(default)")
        )
    }

    fn load_instances(&mut self) -> Vec<Effect> {
        if !self.fleet.is_empty() {
            return self.load_fleet();
        }
        self.instances.begin_load();
        self.ticks_since_refresh = 0;
        vec![Effect::LoadInstances {
            generation: self.generation,
        }]
    }

    fn load_sessions(&mut self) -> Vec<Effect> {
        self.sessions.loading = true;
        vec![Effect::LoadSessions {
            generation: self.generation,
        }]
    }

    fn intent(&mut self, intent: Intent) -> Vec<Effect> {
        match self.mode() {
            Mode::Instances => self.instances_intent(intent),
            Mode::Sessions => self.sessions_intent(intent),
            Mode::Forwards => self.forwards_intent(intent),
            Mode::ForwardForm => self.form_intent(intent),
            Mode::ForwardDetails => {
                if intent == Intent::Close {
                    self.modes.pop();
                }
                Vec::new()
            }
            Mode::SignIn => self.sign_in_intent(intent),
            Mode::Transcript => self.transcript_intent(intent),
            Mode::TranscriptSearch => self.transcript_search_intent(intent),
            Mode::Filter => self.filter_intent(intent),
            Mode::Command => self.command_intent(intent),
            Mode::Help => {
                let page = self.list_rows().max(1) as isize;
                match intent {
                    Intent::Close => self.modes.pop(),
                    Intent::Down => self.scroll_help(1),
                    Intent::Up => self.scroll_help(-1),
                    Intent::PageDown => self.scroll_help(page),
                    Intent::PageUp => self.scroll_help(-page),
                    _ => {}
                }
                Vec::new()
            }
            Mode::Details => match intent {
                Intent::Close => {
                    self.modes.pop();
                    Vec::new()
                }
                Intent::OpenShell => self.open_shell(),
                _ => Vec::new(),
            },
            Mode::Reason => self.reason_intent(intent),
            Mode::Confirm => match intent {
                Intent::Accept => {
                    self.modes.pop();
                    match self.confirm.take().map(|c| c.on_yes) {
                        Some(ConfirmAction::TerminateSession(id)) => {
                            self.set_status(Level::Info, format!("terminating {id}…"));
                            vec![Effect::TerminateSession { id }]
                        }
                        Some(ConfirmAction::DeleteForward(id)) => self.delete_forward(id),
                        None => Vec::new(),
                    }
                }
                Intent::Cancel => {
                    self.modes.pop();
                    self.confirm = None;
                    Vec::new()
                }
                _ => Vec::new(),
            },
        }
    }

    fn scroll_help(&mut self, delta: isize) {
        let lines: usize = self.help().iter().map(|s| s.rows.len() + 2).sum();
        self.help_scroll = self
            .help_scroll
            .saturating_add_signed(delta)
            .min(lines.saturating_sub(1));
    }

    /// Intents shared by the two list views.
    fn common_intent(&mut self, intent: Intent) -> Option<Vec<Effect>> {
        match intent {
            Intent::Quit => Some(vec![Effect::Quit]),
            Intent::Help => {
                self.help_scroll = 0;
                self.modes.push(Mode::Help);
                Some(Vec::new())
            }
            Intent::Command => {
                self.command = CommandLine::default();
                self.modes.push(Mode::Command);
                Some(Vec::new())
            }
            Intent::Forwards => {
                self.modes.switch(View::Forwards);
                Some(Vec::new())
            }
            _ => None,
        }
    }

    fn instances_intent(&mut self, intent: Intent) -> Vec<Effect> {
        if let Some(effects) = self.common_intent(intent) {
            return effects;
        }
        let len = self.instances.visible_len();
        let page = self.list_rows() as isize;
        let scroll = &mut self.instances.scroll;
        match intent {
            Intent::Down => scroll.move_by(1, len),
            Intent::Up => scroll.move_by(-1, len),
            Intent::PageDown => scroll.move_by(page, len),
            Intent::PageUp => scroll.move_by(-page, len),
            Intent::Top => scroll.selected = 0,
            Intent::Bottom => scroll.selected = len.saturating_sub(1),
            Intent::Filter => {
                self.filter_input = self.instances.filter_text().to_owned();
                self.modes.push(Mode::Filter);
            }
            Intent::ClearFilter => self.instances.set_filter(""),
            Intent::SortNext => self.instances.sort_next(),
            Intent::SortReverse => self.instances.sort_reverse(),
            Intent::Refresh => {
                if self.instances.loading {
                    self.set_status(Level::Info, "already loading".to_owned());
                } else {
                    return self.load_instances();
                }
            }
            Intent::Details => {
                if self.instances.selected().is_some() {
                    self.modes.push(Mode::Details);
                } else {
                    self.set_status(Level::Warn, "no instance selected".to_owned());
                }
            }
            Intent::OpenShell => return self.open_shell(),
            Intent::AddForward => return self.open_forward_form(),
            _ => {}
        }
        Vec::new()
    }

    /// Why opening a shell on the selected instance is refused, if it is.
    pub fn shell_refusal(&self) -> Option<String> {
        let Some(row) = self.instances.selected() else {
            return Some("no instance selected".to_owned());
        };
        if self.opts.readonly {
            return Some("read-only mode: sessions cannot be started".to_owned());
        }
        if let Some(why) = &row.access {
            return Some(why.short());
        }
        if self.class.is_none() {
            // The class decides the document; guessing the account default could bypass the
            // class's restrictions (and the issue forbids a silent fallback).
            return Some(if let Some(refused) = &self.class_error {
                // The same words `ssmtui connect` uses for the same identity.
                refused.clone()
            } else if self.identity.is_none() {
                "the caller identity has not loaded yet, so the session document is unknown"
                    .to_owned()
            } else {
                "no access class is configured: add [classes] to the config, or pick a tagged class once with `ssmtui connect`".to_owned()
            });
        }
        None
    }

    fn open_shell(&mut self) -> Vec<Effect> {
        if let Some(why) = self.shell_refusal() {
            self.set_status(Level::Warn, why);
            return Vec::new();
        }
        let Some(row) = self.instances.selected() else {
            return Vec::new();
        };
        let instance = row.instance.clone();
        let (document, _) = self.shell_document();
        let required = access::reason_required(
            self.class.as_ref().map(ChosenClass::as_class),
            &instance,
            &self.opts.ui.reason_required_tags,
        );
        if self.mode() == Mode::Details {
            self.modes.pop();
        }
        if required.is_some() || self.opts.ui.always_ask_reason {
            self.reason = Some(ReasonPrompt {
                purpose: ReasonFor::Shell,
                instance,
                document,
                required,
                input: String::new(),
                error: None,
            });
            self.modes.push(Mode::Reason);
            return Vec::new();
        }
        self.set_status(
            Level::Info,
            format!("opening a shell on {}…", instance.label()),
        );
        let Some(who) = self.who() else {
            return Vec::new();
        };
        vec![Effect::OpenShell {
            instance: Box::new(instance),
            document,
            reason: None,
            who: Box::new(who),
        }]
    }

    fn reason_intent(&mut self, intent: Intent) -> Vec<Effect> {
        let Some(prompt) = &mut self.reason else {
            self.modes.pop();
            return Vec::new();
        };
        match intent {
            Intent::Cancel => {
                let purpose = prompt.purpose;
                self.reason = None;
                self.modes.pop();
                let message = match purpose {
                    ReasonFor::Shell => "shell not opened".to_owned(),
                    ReasonFor::Forward(id) => format!(
                        "forward {} not started",
                        self.forwards.get(id).map_or("?", |f| f.name.as_str())
                    ),
                };
                self.set_status(Level::Info, message);
            }
            Intent::DeleteChar => {
                prompt.input.pop();
            }
            Intent::ClearInput => prompt.input.clear(),
            Intent::Accept => {
                let text = prompt.input.trim().to_owned();
                if text.is_empty()
                    && let Some(why) = &prompt.required
                {
                    prompt.error = Some(format!("a reason is required: {why}"));
                    return Vec::new();
                }
                let purpose = prompt.purpose;
                let instance = prompt.instance.clone();
                let document = prompt.document.clone();
                self.reason = None;
                self.modes.pop();
                let reason = (!text.is_empty()).then_some(text);
                if let ReasonFor::Forward(id) = purpose {
                    return self.start_forward_with_reason(id, reason);
                }
                self.set_status(
                    Level::Info,
                    format!("opening a shell on {}…", instance.label()),
                );
                let Some(who) = self.who() else {
                    return Vec::new();
                };
                return vec![Effect::OpenShell {
                    instance: Box::new(instance),
                    document,
                    reason,
                    who: Box::new(who),
                }];
            }
            _ => {}
        }
        Vec::new()
    }

    fn filter_intent(&mut self, intent: Intent) -> Vec<Effect> {
        let len = self.instances.visible_len();
        match intent {
            Intent::Accept => self.modes.pop(),
            Intent::Cancel => {
                self.filter_input.clear();
                self.instances.set_filter("");
                self.modes.pop();
            }
            Intent::DeleteChar => {
                self.filter_input.pop();
                self.instances.set_filter(&self.filter_input);
            }
            Intent::ClearInput => {
                self.filter_input.clear();
                self.instances.set_filter("");
            }
            Intent::Down => self.instances.scroll.move_by(1, len),
            Intent::Up => self.instances.scroll.move_by(-1, len),
            _ => {}
        }
        Vec::new()
    }

    fn typed(&mut self, c: char) -> Vec<Effect> {
        match self.mode() {
            Mode::Filter => {
                self.filter_input.push(c);
                self.instances.set_filter(&self.filter_input);
            }
            Mode::Command => {
                self.command.input.push(c);
                self.command.candidates.clear();
            }
            Mode::Reason => {
                if let Some(p) = &mut self.reason {
                    if p.input.chars().count() < MAX_REASON {
                        p.input.push(c);
                        p.error = None;
                    } else {
                        p.error = Some(format!("a reason is at most {MAX_REASON} characters"));
                    }
                }
            }
            Mode::ForwardForm => self.form_typed(c),
            Mode::TranscriptSearch => {
                if let Some(p) = &mut self.transcript {
                    p.input.push(c);
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn sessions_intent(&mut self, intent: Intent) -> Vec<Effect> {
        if let Some(effects) = self.common_intent(intent) {
            return effects;
        }
        let len = self.sessions.items.len();
        let scroll = &mut self.sessions.scroll;
        match intent {
            Intent::Down => scroll.move_by(1, len),
            Intent::Up => scroll.move_by(-1, len),
            Intent::Top => scroll.selected = 0,
            Intent::Bottom => scroll.selected = len.saturating_sub(1),
            Intent::Back => self.modes.switch(View::Instances),
            Intent::Refresh => return self.load_sessions(),
            Intent::Transcript => return self.open_transcript(),
            Intent::Terminate => match self.terminate_refusal() {
                Some(why) => self.set_status(Level::Warn, why),
                None => {
                    if let Some(s) = self.sessions.selected() {
                        self.confirm = Some(Confirm {
                            question: format!("Terminate session {} on {}?", s.id, s.target),
                            on_yes: ConfirmAction::TerminateSession(s.id.clone()),
                        });
                        self.modes.push(Mode::Confirm);
                    }
                }
            },
            _ => {}
        }
        Vec::new()
    }

    /// Why terminating the selected session is refused, if it is.
    pub fn terminate_refusal(&self) -> Option<String> {
        let Some(s) = self.sessions.selected() else {
            return Some("no session selected".to_owned());
        };
        if self.opts.readonly {
            return Some("read-only mode: sessions cannot be ended".to_owned());
        }
        if !sessions::is_active(s) {
            return Some(format!("session {} has already ended ({})", s.id, s.status));
        }
        let Some(me) = &self.identity else {
            return Some(
                "the caller identity has not loaded yet, so ownership cannot be checked".to_owned(),
            );
        };
        match &s.owner {
            Some(owner) if owner == &me.arn => None,
            Some(owner) => Some(format!(
                "session {} belongs to {owner}; you can only terminate your own",
                s.id
            )),
            None => Some(format!("session {} has no recorded owner", s.id)),
        }
    }

    fn command_intent(&mut self, intent: Intent) -> Vec<Effect> {
        match intent {
            Intent::Cancel => self.modes.pop(),
            Intent::DeleteChar => {
                self.command.input.pop();
                self.command.candidates.clear();
            }
            Intent::ClearInput => self.command.input.clear(),
            Intent::Complete => self.complete(),
            Intent::Accept => {
                self.modes.pop();
                let input = std::mem::take(&mut self.command.input);
                self.command.candidates.clear();
                return self.run_command(&input);
            }
            _ => {}
        }
        Vec::new()
    }

    /// Candidates for the current command input.
    fn candidates(&self) -> (String, Vec<String>) {
        let input = self.command.input.trim_start();
        match input.split_once(' ') {
            Some((cmd, arg)) => {
                let arg = arg.trim_start();
                let pool: Vec<String> = match cmd {
                    "profile" => self.opts.profiles.clone(),
                    "region" => REGIONS.iter().map(|r| (*r).to_owned()).collect(),
                    _ => Vec::new(),
                };
                (
                    format!("{cmd} "),
                    pool.into_iter().filter(|p| p.starts_with(arg)).collect(),
                )
            }
            None => (
                String::new(),
                COMMANDS
                    .iter()
                    .filter(|c| c.starts_with(input))
                    .map(|c| (*c).to_owned())
                    .collect(),
            ),
        }
    }

    fn complete(&mut self) {
        let (prefix, candidates) = self.candidates();
        match candidates.as_slice() {
            [] => self.set_status(Level::Warn, "no completion".to_owned()),
            [only] => {
                let takes_arg = prefix.is_empty() && matches!(only.as_str(), "profile" | "region");
                self.command.input = format!("{prefix}{only}{}", if takes_arg { " " } else { "" });
                self.command.candidates.clear();
                return;
            }
            many => {
                let common = common_prefix(many);
                self.command.input = format!("{prefix}{common}");
            }
        }
        self.command.candidates = candidates;
    }

    fn run_command(&mut self, input: &str) -> Vec<Effect> {
        let mut words = input.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let arg = words.next();
        match (cmd, arg) {
            ("", _) => Vec::new(),
            ("q" | "q!" | "quit" | "exit", _) => vec![Effect::Quit],
            ("instances" | "instance" | "i" | "ec2", _) => {
                self.modes.switch(View::Instances);
                Vec::new()
            }
            ("forwards" | "forward" | "fw" | "f", _) => {
                self.modes.switch(View::Forwards);
                Vec::new()
            }
            ("sessions" | "session" | "s", _) => {
                self.modes.switch(View::Sessions);
                if self.sessions.loading {
                    Vec::new()
                } else {
                    self.load_sessions()
                }
            }
            ("profile" | "region", None) => {
                self.set_status(Level::Warn, format!(":{cmd} needs a name (Tab completes)"));
                Vec::new()
            }
            ("profile", Some(name)) => {
                if !self.opts.profiles.is_empty() && !self.opts.profiles.iter().any(|p| p == name) {
                    self.set_status(
                        Level::Warn,
                        format!("no profile \"{name}\" in the AWS config file"),
                    );
                    return Vec::new();
                }
                self.switch_aws(Some(name.to_owned()), self.opts.region.clone())
            }
            ("region", Some(name)) => {
                if !is_region_name(name) {
                    self.set_status(
                        Level::Warn,
                        format!("\"{name}\" is not a region name (like eu-west-1)"),
                    );
                    return Vec::new();
                }
                self.switch_aws(self.opts.profile.clone(), Some(name.to_owned()))
            }
            (other, _) => {
                self.set_status(
                    Level::Warn,
                    format!(
                        "unknown command \":{other}\"; commands are {}",
                        COMMANDS.map(|c| format!(":{c}")).join(", ")
                    ),
                );
                Vec::new()
            }
        }
    }

    /// Keys of the sign-in panel: pick a profile, retry, sign in with SSO, or close it to
    /// look at the (empty) list and use `:` commands.
    fn sign_in_intent(&mut self, intent: Intent) -> Vec<Effect> {
        let count = self.opts.profiles.len();
        match intent {
            Intent::Up | Intent::Down => {
                if let Some(panel) = &mut self.sign_in
                    && count > 0
                {
                    panel.selected = if intent == Intent::Up {
                        panel.selected.checked_sub(1).unwrap_or(count - 1)
                    } else {
                        (panel.selected + 1) % count
                    };
                }
                Vec::new()
            }
            Intent::Accept => {
                let picked = self
                    .sign_in
                    .as_ref()
                    .and_then(|p| self.opts.profiles.get(p.selected))
                    .cloned();
                match picked {
                    Some(profile) => {
                        let region = self.opts.region.clone();
                        self.switch_aws(Some(profile), region)
                    }
                    None => {
                        self.set_status(
                            Level::Warn,
                            "~/.aws/config has no profiles to pick from".to_owned(),
                        );
                        Vec::new()
                    }
                }
            }
            Intent::Refresh => self.retry_sign_in(),
            Intent::SsoLogin => {
                match self
                    .sign_in
                    .as_ref()
                    .and_then(|p| p.failure.sso_profile.clone())
                {
                    Some(profile) => vec![Effect::SsoLogin { profile }],
                    None => {
                        self.set_status(
                            Level::Warn,
                            "this profile does not sign in with SSO".to_owned(),
                        );
                        Vec::new()
                    }
                }
            }
            Intent::Close => {
                self.modes.remove(Mode::SignIn);
                Vec::new()
            }
            _ => self.common_intent(intent).unwrap_or_default(),
        }
    }

    /// Whether the app still waits for the switch of `generation` (the runtime installs its
    /// new client only then).
    pub fn awaits_switch(&self, generation: u64) -> bool {
        self.switching.is_some() && generation == self.generation
    }

    /// Signs in again with the same profile and region.
    fn retry_sign_in(&mut self) -> Vec<Effect> {
        self.switching = None;
        self.modes.remove(Mode::SignIn);
        self.sign_in = None;
        self.identity = None;
        self.identity_error = None;
        self.generation += 1;
        self.instances.clear();
        self.start()
    }

    fn switch_aws(&mut self, profile: Option<String>, region: Option<String>) -> Vec<Effect> {
        if !self.fleet.is_empty() {
            self.set_status(
                Level::Warn,
                "the fleet lists its profiles and regions together; start ssmtui without --profiles/[fleet] for one".to_owned(),
            );
            return Vec::new();
        }
        self.generation += 1;
        self.switching = Some((profile.clone(), region.clone()));
        self.set_status(
            Level::Info,
            format!(
                "switching to profile {}, region {}…",
                profile.as_deref().unwrap_or("(default)"),
                region.as_deref().unwrap_or("(default)")
            ),
        );
        vec![Effect::SwitchAws {
            generation: self.generation,
            profile,
            region,
        }]
    }

    /// The help overlay's content, generated from the key table.
    pub fn help(&self) -> Vec<HelpSection> {
        let map = &self.opts.keymap;
        map.modes()
            .into_iter()
            .map(|mode| HelpSection {
                rows: map
                    .bindings(&mode)
                    .map(|b| (join_keys(&b.keys), b.action.clone(), b.desc.clone()))
                    .collect(),
                mode,
            })
            .collect()
    }

    /// The footer's `(keys, description)` pairs for the focused mode.
    pub fn footer(&self) -> Vec<(String, String)> {
        self.opts
            .keymap
            .bindings(self.mode().name())
            .filter_map(|b| Some((join_keys(&b.keys), b.footer.clone()?)))
            .collect()
    }
}

fn join_keys(keys: &[Key]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("/")
}

fn common_prefix(items: &[String]) -> String {
    let Some(first) = items.first() else {
        return String::new();
    };
    let mut len = first.len();
    for item in items {
        len = len.min(
            first
                .char_indices()
                .zip(item.chars())
                .take_while(|((_, a), b)| a == b)
                .map(|((i, a), _)| i + a.len_utf8())
                .last()
                .unwrap_or(0),
        );
    }
    first.get(..len).unwrap_or("").to_owned()
}

/// `eu-west-1`, `us-gov-east-1`, `ap-southeast-3`: letters and dashes, ending in a number.
fn is_region_name(name: &str) -> bool {
    let mut parts = name.split('-');
    let Some(first) = parts.next() else {
        return false;
    };
    let rest: Vec<&str> = parts.collect();
    let Some((last, middle)) = rest.split_last() else {
        return false;
    };
    first.len() == 2
        && first.chars().all(|c| c.is_ascii_lowercase())
        && !middle.is_empty()
        && middle
            .iter()
            .all(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_lowercase()))
        && !last.is_empty()
        && last.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests;
