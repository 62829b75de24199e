//! The forwards tab: the user's port forwards (saved in `[[forwards]]` or added with `f` on an
//! instance), where each one stands, and the add-forward form.
//!
//! The app never holds a forward itself: it asks the runtime to start and stop them
//! ([`Effect::StartForward`], [`Effect::StopForward`]) and learns how they are doing from
//! [`Action::ForwardStarted`], [`Action::ForwardStopped`] and periodic
//! [`Action::ForwardStats`] samples. Every start gets a new `run` number; results and samples
//! of an older run (a forward restarted meanwhile) are ignored, so a late answer can never
//! overwrite the state of the newer run.
//!
//! The rate shown is computed here from consecutive samples, as an exponential moving average
//! with a time constant of [`RATE_TAU`] seconds. Time comes from the samples' own `uptime`
//! (the engine's monotonic clock), so the app stays clock-free and a long gap between samples
//! (the UI was suspended for a shell) still yields the right average.

use std::net::SocketAddr;
use std::time::Duration;

use super::instances::Scroll;
use super::{Action, App, Effect, Level, Mode, View};
use crate::access::{self as policy, Class};
use crate::aws::Instance;
use crate::config::ForwardConfig;
use crate::error::{Classify, UserError};
use crate::forwarding::{
    DOC_PORT, DOC_REMOTE_HOST, ForwardSnapshot, ForwardSpec, ForwardState, MAX_SESSIONS,
};
use crate::resolve::{self, Resolved, TargetSpec};

/// Time constant of the rate's moving average, in seconds: long enough to smooth out bursts
/// between two samples, short enough that a finished transfer drops to zero within seconds.
pub const RATE_TAU: f64 = 2.0;

/// Milliseconds between two stats samples the runtime takes.
pub const SAMPLE_MS: u64 = 500;

/// The one line explaining the keepalive trade-off (form and README say the same).
pub const KEEPALIVE_NOTE: &str = "on defeats the account's idle timeout, a security control";

/// Where a forward stands, as the tab shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not running.
    Stopped,
    /// Asked to start; binding the port and opening the first session.
    Starting,
    /// Running; the engine's own state.
    Running(ForwardState),
    /// Asked to stop; closing connections and terminating the session.
    Stopping,
    /// Could not start, or failed for good.
    Failed(String),
}

impl Phase {
    /// The short state word for the table (the failure reason is shown separately).
    pub fn word(&self) -> &'static str {
        match self {
            Self::Stopped | Self::Running(ForwardState::Stopped) => "stopped",
            Self::Starting | Self::Running(ForwardState::Starting) => "starting",
            Self::Stopping => "stopping",
            Self::Failed(_) | Self::Running(ForwardState::Failed(_)) => "failed",
            Self::Running(ForwardState::Listening) => "listening",
            Self::Running(ForwardState::Connected) => "connected",
            Self::Running(ForwardState::Reconnecting) => "reconnecting",
            Self::Running(ForwardState::Idle) => "idle",
        }
    }

    /// The failure reason, if failed.
    pub fn failure(&self) -> Option<&str> {
        match self {
            Self::Failed(why) | Self::Running(ForwardState::Failed(why)) => Some(why),
            _ => None,
        }
    }

    /// Whether the runtime holds (or is getting) a handle for it.
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Starting | Self::Running(_))
    }
}

/// One stats sample of a running forward, taken by the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardSample {
    /// The forward.
    pub id: u64,
    /// The run the handle belongs to.
    pub run: u64,
    /// The counters.
    pub snapshot: ForwardSnapshot,
}

/// Bytes per second in each direction.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Remote → local.
    pub bytes_in: f64,
    /// Local → remote.
    pub bytes_out: f64,
}

/// A forward in the tab.
#[derive(Debug, Clone)]
pub struct ForwardEntry {
    /// Stable id for effects and results.
    pub id: u64,
    /// Unique name.
    pub name: String,
    /// The target as the user gave it (alias, Name, id or tag filters).
    pub target_input: String,
    /// The instance it runs against, once resolved.
    pub instance: Option<Instance>,
    /// The spec as written.
    pub spec_text: String,
    /// The parsed spec (`None` when a saved spec does not parse; the phase says why).
    pub spec: Option<ForwardSpec>,
    /// The document of the last start.
    pub document: Option<String>,
    /// Keep idle sessions alive.
    pub keepalive: bool,
    /// Up to this many sessions (striping).
    pub sessions: usize,
    /// From `[[forwards]]` (resolved again on every start).
    pub saved: bool,
    /// Started with the app.
    pub autostart: bool,
    /// The app's profile/region generation the target was picked in (added forwards only).
    generation: u64,
    /// Number of the current (or last) start.
    pub run: u64,
    /// Where it stands.
    pub phase: Phase,
    /// The address listened on (the real port when 0 was asked).
    pub local_addr: Option<SocketAddr>,
    /// The latest sample of the current run.
    pub stats: Option<ForwardSnapshot>,
    /// Current throughput.
    pub rate: Rate,
    /// Uptime and byte counters of the previous sample, for the rate.
    prev: Option<(Duration, u64, u64)>,
    /// The last error seen (start failure or the engine's last error).
    pub last_error: Option<String>,
}

impl ForwardEntry {
    /// The target for messages and details: the instance label once known, else what was
    /// given.
    pub fn target_label(&self) -> String {
        self.instance
            .as_ref()
            .map_or_else(|| self.target_input.clone(), Instance::label)
    }

    /// The target for the table: the instance's name (or id) once known, else what was given.
    pub fn target_short(&self) -> String {
        match &self.instance {
            Some(i) => i.name.clone().unwrap_or_else(|| i.id.clone()),
            None => self.target_input.clone(),
        }
    }

    fn reset_run(&mut self) {
        self.stats = None;
        self.rate = Rate::default();
        self.prev = None;
        self.local_addr = None;
    }

    /// Applies a sample of the current run; returns whether the phase changed.
    fn apply(&mut self, snapshot: ForwardSnapshot) -> bool {
        if let Some((t0, in0, out0)) = self.prev {
            let dt = snapshot.uptime.saturating_sub(t0).as_secs_f64();
            if dt > 0.0 {
                // Fraction of the old average that decays away over dt.
                let alpha = 1.0 - (-dt / RATE_TAU).exp();
                let now_in = snapshot.bytes_in.saturating_sub(in0) as f64 / dt;
                let now_out = snapshot.bytes_out.saturating_sub(out0) as f64 / dt;
                self.rate.bytes_in += alpha * (now_in - self.rate.bytes_in);
                self.rate.bytes_out += alpha * (now_out - self.rate.bytes_out);
            }
        }
        self.prev = Some((snapshot.uptime, snapshot.bytes_in, snapshot.bytes_out));
        if snapshot.last_error.is_some() {
            self.last_error.clone_from(&snapshot.last_error);
        }
        let phase = match &snapshot.state {
            ForwardState::Failed(why) => Phase::Failed(why.clone()),
            ForwardState::Stopped => Phase::Stopped,
            other => Phase::Running(other.clone()),
        };
        if !phase.is_active() {
            self.rate = Rate::default();
        }
        self.stats = Some(snapshot);
        let changed = phase != self.phase;
        self.phase = phase;
        changed
    }
}

/// The add-forward form's fields, in focus order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormField {
    /// `[BIND:]LOCAL:[HOST:]REMOTE`.
    Spec,
    /// The forward's name.
    Name,
    /// The keepalive toggle.
    Keepalive,
    /// Up to how many sessions (a digit, 1 to 8).
    Sessions,
}

/// The add-forward form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardForm {
    /// The target (kept, so a refresh meanwhile cannot change it).
    pub instance: Instance,
    /// The spec typed so far.
    pub spec: String,
    /// The name; follows the spec until the user edits it.
    pub name: String,
    /// Whether the user typed into the name.
    pub name_edited: bool,
    /// Keep idle sessions alive.
    pub keepalive: bool,
    /// Up to this many sessions.
    pub sessions: usize,
    /// The focused field.
    pub focus: FormField,
    /// Why the spec does not parse (live, as typed).
    pub spec_error: Option<String>,
    /// A warning about a valid spec (listening beyond loopback).
    pub spec_warning: Option<String>,
    /// Why the last Enter was refused.
    pub error: Option<String>,
}

impl ForwardForm {
    fn new(instance: Instance) -> Self {
        let name = default_name(&instance, None);
        Self {
            instance,
            spec: String::new(),
            name,
            name_edited: false,
            keepalive: false,
            sessions: 1,
            focus: FormField::Spec,
            spec_error: None,
            spec_warning: None,
            error: None,
        }
    }

    /// Re-validates the spec and lets the name follow it.
    fn spec_changed(&mut self) {
        self.error = None;
        self.spec_warning = None;
        let parsed = if self.spec.trim().is_empty() {
            self.spec_error = None;
            None
        } else {
            match ForwardSpec::parse(self.spec.trim()) {
                Ok(spec) => {
                    self.spec_error = None;
                    if spec.exposes_beyond_loopback() {
                        self.spec_warning = Some(format!(
                            "listens on {}: anyone who can reach it reaches the instance",
                            spec.bind
                        ));
                    }
                    Some(spec)
                }
                Err(e) => {
                    self.spec_error = Some(e.to_string());
                    None
                }
            }
        };
        if !self.name_edited {
            self.name = default_name(&self.instance, parsed.as_ref());
        }
    }
}

/// `web-1:80` — the instance's name (or id) and the remote port (with the host behind it).
fn default_name(instance: &Instance, spec: Option<&ForwardSpec>) -> String {
    let base = instance.name.clone().unwrap_or_else(|| instance.id.clone());
    match spec {
        Some(s) => format!("{base}:{}", s.remote_label()),
        None => base,
    }
}

/// The forwards tab.
#[derive(Debug, Default)]
pub struct ForwardsState {
    /// The forwards, in the order they were added (saved ones first).
    pub items: Vec<ForwardEntry>,
    /// Selection and window.
    pub scroll: Scroll,
    /// The add-forward form, when open.
    pub form: Option<ForwardForm>,
    next_id: u64,
    /// Whether the saved `autostart` forwards have been started (once per app).
    autostarted: bool,
}

impl ForwardsState {
    /// The tab with the saved forwards, all stopped (a spec that does not parse: failed).
    pub fn from_config(saved: &[ForwardConfig]) -> Self {
        let mut state = Self::default();
        for f in saved {
            let (spec, phase) = match ForwardSpec::parse(f.spec.trim()) {
                Ok(s) => (Some(s), Phase::Stopped),
                Err(e) => (None, Phase::Failed(user_text(e))),
            };
            let id = state.alloc_id();
            state.items.push(ForwardEntry {
                id,
                name: f.name.clone(),
                target_input: f.target.clone(),
                instance: None,
                spec_text: f.spec.clone(),
                spec,
                document: None,
                keepalive: f.keepalive,
                sessions: f.sessions.clamp(1, MAX_SESSIONS),
                saved: true,
                autostart: f.autostart,
                generation: 0,
                run: 0,
                last_error: phase.failure().map(str::to_owned),
                phase,
                local_addr: None,
                stats: None,
                rate: Rate::default(),
                prev: None,
            });
        }
        state
    }

    fn alloc_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The selected forward.
    pub fn selected(&self) -> Option<&ForwardEntry> {
        self.items.get(self.scroll.selected)
    }

    /// The forward with this id.
    pub fn get(&self, id: u64) -> Option<&ForwardEntry> {
        self.items.iter().find(|f| f.id == id)
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut ForwardEntry> {
        self.items.iter_mut().find(|f| f.id == id)
    }

    /// Forwards that are running or starting.
    pub fn active(&self) -> usize {
        self.items.iter().filter(|f| f.phase.is_active()).count()
    }
}

/// A user error as one line: the message and its first hint.
fn user_text(e: UserError) -> String {
    crate::error::one_line(&e, &e.classified())
}

/// How a start came about, which decides what a needed reason does.
enum Start {
    /// The user asked: a needed reason (or `always_ask_reason`) opens the prompt.
    Interactive,
    /// Autostart, nobody to ask: a required reason fails the start with the way out.
    Unattended,
    /// The prompt was answered (`None`: left empty where that is allowed).
    Answered(Option<String>),
}

/// Why `prepare_start` did not produce a start.
enum Refusal {
    /// It cannot start; the text says why.
    Failed(String),
    /// It can once someone gives a reason (required, or asked for by `always_ask_reason`).
    AskReason {
        instance: Box<Instance>,
        document: String,
        required: Option<String>,
    },
}

impl App {
    /// The caller's class as the access rules take it.
    fn policy_class(&self) -> Option<Class<'_>> {
        self.class.as_ref().map(policy::ChosenClass::as_class)
    }

    /// The port-forwarding document for `wanted` (chosen by the spec), or why there is none.
    pub fn forward_document(&self, wanted: &str) -> Result<String, String> {
        if self.class.is_none() && !self.opts.classes.is_empty() {
            // Without a class the allowed documents are unknown; guessing could bypass them.
            return Err(match (&self.class_error, &self.identity_error) {
                // The same words `ssmtui forward` uses for the same identity.
                (Some(refused), _) => {
                    format!("{refused}, so no forwarding document is allowed")
                }
                (None, Some(e)) => format!("the caller identity is unknown ({e})"),
                (None, None) => {
                    "the caller identity has not loaded yet, so the forwarding document is unknown"
                        .to_owned()
                }
            });
        }
        policy::forward_document(self.policy_class(), wanted).map_err(user_text)
    }

    /// Why adding a forward on the selected instance is refused, if it is.
    pub fn add_forward_refusal(&self) -> Option<String> {
        let Some(row) = self.instances.selected() else {
            return Some("no instance selected".to_owned());
        };
        if self.opts.readonly {
            return Some("read-only mode: forwards cannot be started".to_owned());
        }
        if let Some(why) = &row.access {
            return Some(why.short());
        }
        // Refuse up front only when neither document is allowed; a class allowing one of the
        // two is told about the other when the spec needs it.
        match (
            self.forward_document(DOC_PORT),
            self.forward_document(DOC_REMOTE_HOST),
        ) {
            (Err(why), Err(_)) => Some(why),
            _ => None,
        }
    }

    pub(super) fn open_forward_form(&mut self) -> Vec<Effect> {
        if let Some(why) = self.add_forward_refusal() {
            self.set_status(Level::Warn, why);
            return Vec::new();
        }
        let Some(row) = self.instances.selected() else {
            return Vec::new();
        };
        self.forwards.form = Some(ForwardForm::new(row.instance.clone()));
        self.modes.push(Mode::ForwardForm);
        Vec::new()
    }

    pub(super) fn form_typed(&mut self, c: char) {
        let Some(form) = &mut self.forwards.form else {
            return;
        };
        match form.focus {
            FormField::Spec => {
                form.spec.push(c);
                form.spec_changed();
            }
            FormField::Name => {
                form.name.push(c);
                form.name_edited = true;
                form.error = None;
            }
            FormField::Keepalive => {
                if c == ' ' {
                    form.keepalive = !form.keepalive;
                }
            }
            FormField::Sessions => match c.to_digit(10).map(|d| d as usize) {
                Some(n) if (1..=MAX_SESSIONS).contains(&n) => {
                    form.sessions = n;
                    form.error = None;
                }
                _ => form.error = Some(format!("sessions: a number from 1 to {MAX_SESSIONS}")),
            },
        }
    }

    pub(super) fn form_intent(&mut self, intent: super::Intent) -> Vec<Effect> {
        use super::Intent;
        let Some(form) = &mut self.forwards.form else {
            self.modes.pop();
            return Vec::new();
        };
        match intent {
            Intent::Cancel => {
                self.forwards.form = None;
                self.modes.pop();
                self.set_status(Level::Info, "no forward added".to_owned());
            }
            Intent::NextField | Intent::PrevField => {
                const ORDER: [FormField; 4] = [
                    FormField::Spec,
                    FormField::Name,
                    FormField::Keepalive,
                    FormField::Sessions,
                ];
                let at = ORDER.iter().position(|f| *f == form.focus).unwrap_or(0);
                let step = if intent == Intent::NextField {
                    1
                } else {
                    ORDER.len() - 1
                };
                form.focus = ORDER
                    .get((at + step) % ORDER.len())
                    .copied()
                    .unwrap_or(FormField::Spec);
            }
            Intent::Toggle => form.keepalive = !form.keepalive,
            Intent::DeleteChar => match form.focus {
                FormField::Spec => {
                    form.spec.pop();
                    form.spec_changed();
                }
                FormField::Name => {
                    form.name.pop();
                    form.name_edited = true;
                    form.error = None;
                }
                FormField::Keepalive => {}
                FormField::Sessions => form.sessions = 1,
            },
            Intent::ClearInput => match form.focus {
                FormField::Spec => {
                    form.spec.clear();
                    form.spec_changed();
                }
                FormField::Name => {
                    form.name.clear();
                    form.name_edited = true;
                }
                FormField::Keepalive => {}
                FormField::Sessions => form.sessions = 1,
            },
            Intent::Accept => return self.submit_form(),
            _ => {}
        }
        Vec::new()
    }

    fn submit_form(&mut self) -> Vec<Effect> {
        let Some(form) = &self.forwards.form else {
            return Vec::new();
        };
        let refuse = |app: &mut Self, why: String, focus: FormField| {
            if let Some(form) = &mut app.forwards.form {
                form.error = Some(why);
                form.focus = focus;
            }
            Vec::new()
        };
        if form.spec.trim().is_empty() {
            return refuse(
                self,
                "type a forward spec, e.g. 8080:80 or 0:22".to_owned(),
                FormField::Spec,
            );
        }
        let spec = match ForwardSpec::parse(form.spec.trim()) {
            Ok(s) => s,
            Err(e) => {
                // The error is on screen under the field already; just go back to it.
                if let Some(form) = &mut self.forwards.form {
                    form.spec_error = Some(e.to_string());
                    form.focus = FormField::Spec;
                }
                return Vec::new();
            }
        };
        let name = form.name.trim().to_owned();
        if name.is_empty() {
            return refuse(self, "the forward needs a name".to_owned(), FormField::Name);
        }
        if self.forwards.items.iter().any(|f| f.name == name) {
            return refuse(
                self,
                format!("a forward named \"{name}\" exists already"),
                FormField::Name,
            );
        }
        if self.opts.readonly {
            return refuse(
                self,
                "read-only mode: forwards cannot be started".to_owned(),
                FormField::Spec,
            );
        }
        let document = match self.forward_document(spec.document()) {
            Ok(d) => d,
            Err(why) => return refuse(self, why, FormField::Spec),
        };
        let Some(form) = self.forwards.form.take() else {
            return Vec::new();
        };
        self.modes.pop();
        let id = self.forwards.alloc_id();
        self.forwards.items.push(ForwardEntry {
            id,
            name,
            target_input: form.instance.id.clone(),
            instance: Some(form.instance),
            spec_text: form.spec.trim().to_owned(),
            spec: Some(spec),
            document: Some(document),
            keepalive: form.keepalive,
            sessions: form.sessions,
            saved: false,
            autostart: false,
            generation: self.generation,
            run: 0,
            phase: Phase::Stopped,
            local_addr: None,
            stats: None,
            rate: Rate::default(),
            prev: None,
            last_error: None,
        });
        self.forwards.scroll.selected = self.forwards.items.len() - 1;
        self.modes.switch(View::Forwards);
        self.start_forward(id)
    }

    /// Resolves, checks and starts forward `id` at the user's request; a refusal marks it
    /// failed with the reason (so the table always says why something did not start), and a
    /// target that needs a reason (or `always_ask_reason`) opens the reason prompt first.
    pub(super) fn start_forward(&mut self, id: u64) -> Vec<Effect> {
        match self.prepare_start(id, Start::Interactive) {
            Err(Refusal::AskReason {
                instance,
                document,
                required,
            }) => {
                self.reason = Some(super::ReasonPrompt {
                    purpose: super::ReasonFor::Forward(id),
                    instance: *instance,
                    document,
                    required,
                    input: String::new(),
                    error: None,
                });
                self.modes.push(Mode::Reason);
                Vec::new()
            }
            other => self.started_or_failed(id, other),
        }
    }

    /// Starts forward `id` with the reason the prompt got (`None`: left empty, allowed).
    pub(super) fn start_forward_with_reason(
        &mut self,
        id: u64,
        reason: Option<String>,
    ) -> Vec<Effect> {
        let result = self.prepare_start(id, Start::Answered(reason));
        self.started_or_failed(id, result)
    }

    fn started_or_failed(&mut self, id: u64, result: Result<Effect, Refusal>) -> Vec<Effect> {
        let why = match result {
            Ok(effect) => return vec![effect],
            Err(Refusal::Failed(why)) => why,
            // Only an interactive start asks, and it opens the prompt instead.
            Err(Refusal::AskReason { .. }) => "a reason is required".to_owned(),
        };
        if let Some(f) = self.forwards.get_mut(id) {
            f.phase = Phase::Failed(why.clone());
            f.last_error = Some(why.clone());
            let name = f.name.clone();
            self.set_status(Level::Warn, format!("forward {name} not started: {why}"));
        }
        Vec::new()
    }

    /// The start effect for forward `id`, or why there is none.
    fn prepare_start(&mut self, id: u64, start: Start) -> Result<Effect, Refusal> {
        if self.opts.readonly {
            return Err(Refusal::Failed(
                "read-only mode: forwards cannot be started".to_owned(),
            ));
        }
        let Some(entry) = self.forwards.get(id) else {
            return Err(Refusal::Failed("no such forward".to_owned()));
        };
        let Some(spec) = entry.spec.clone() else {
            return Err(Refusal::Failed(
                entry
                    .phase
                    .failure()
                    .unwrap_or("the spec does not parse")
                    .to_owned(),
            ));
        };
        let instance = if entry.saved {
            self.resolve_saved(&entry.target_input)
                .map_err(Refusal::Failed)?
        } else if entry.generation != self.generation {
            // The instance was picked in another account or region; starting it with the
            // current client would ask the wrong account for that instance id.
            return Err(Refusal::Failed(
                "added under another profile or region; switch back, or add it again here"
                    .to_owned(),
            ));
        } else {
            entry
                .instance
                .clone()
                .ok_or_else(|| Refusal::Failed("the forward has no target".to_owned()))?
        };
        // In a fleet, the forward's own account decides the caller and class.
        self.act_as_instance(&instance.id);
        let document = self
            .forward_document(spec.document())
            .map_err(Refusal::Failed)?;
        let required = policy::reason_required(
            self.class.as_ref().map(policy::ChosenClass::as_class),
            &instance,
            &self.opts.ui.reason_required_tags,
        );
        let reason = match start {
            // The prompt refuses an empty answer where one is required; never start without.
            Start::Answered(None) if required.is_some() => {
                return Err(Refusal::Failed("a reason is required".to_owned()));
            }
            Start::Answered(answer) => answer,
            Start::Unattended => match required {
                Some(why) => {
                    return Err(Refusal::Failed(format!(
                        "a reason is required ({why}); select it and press s to give one, or use `ssmtui forward --reason TEXT`"
                    )));
                }
                None => None,
            },
            Start::Interactive if required.is_some() || self.opts.ui.always_ask_reason => {
                return Err(Refusal::AskReason {
                    instance: Box::new(instance),
                    document,
                    required,
                });
            }
            Start::Interactive => None,
        };
        let who = self.who().ok_or_else(|| {
            Refusal::Failed(match &self.identity_error {
                Some(e) => format!("the caller identity is unknown ({e})"),
                None => "the caller identity has not loaded yet".to_owned(),
            })
        })?;
        let Some(entry) = self.forwards.get_mut(id) else {
            return Err(Refusal::Failed("no such forward".to_owned()));
        };
        entry.run += 1;
        entry.reset_run();
        entry.phase = Phase::Starting;
        entry.instance = Some(instance.clone());
        entry.document = Some(document.clone());
        Ok(Effect::StartForward {
            id,
            run: entry.run,
            instance: Box::new(instance),
            spec,
            document,
            keepalive: entry.keepalive,
            sessions: entry.sessions,
            reason,
            who: Box::new(who),
        })
    }

    /// A saved forward's target, resolved the way `ssmtui forward` resolves it (aliases, then
    /// id / Name / tag filters against the loaded instances, class scope applied).
    fn resolve_saved(&self, input: &str) -> Result<Instance, String> {
        let text = match self.opts.aliases.get(input) {
            Some(alias) => {
                let other = |want: &Option<String>, have: &Option<String>| {
                    want.as_ref().is_some_and(|w| have.as_ref() != Some(w))
                };
                if other(&alias.profile, &self.opts.profile)
                    || other(&alias.region, &self.opts.region)
                {
                    return Err(format!(
                        "alias \"{input}\" is for profile {}, region {}; the UI forwards within {}",
                        alias.profile.as_deref().unwrap_or("(default)"),
                        alias.region.as_deref().unwrap_or("(default)"),
                        self.where_label()
                    ));
                }
                alias.target.clone()
            }
            None => input.to_owned(),
        };
        if !self.instances.loaded() {
            return Err("the instance list has not loaded yet".to_owned());
        }
        let spec = TargetSpec::parse(&text).map_err(user_text)?;
        let all = self.instances.all_instances();
        let class = self.policy_class();
        let reach = |i: &Instance| policy::reachability(i, class);
        match resolve::resolve(&spec, input, &all, &reach).map_err(user_text)? {
            Resolved::One(i) => Ok(*i),
            Resolved::Many(many) => Err(user_text(resolve::ambiguous(input, &many))),
        }
    }

    /// Starts the saved `autostart` forwards, once, when both the instance list and (if
    /// classes decide documents) the caller's class are known.
    pub(super) fn maybe_autostart(&mut self) -> Vec<Effect> {
        if self.forwards.autostarted || !self.instances.loaded() {
            return Vec::new();
        }
        // Sessions are audited with the caller's identity (and class, when classes decide the
        // documents), so wait until STS has answered either way.
        let identity_settled = self.identity.is_some() || self.identity_error.is_some();
        if !identity_settled {
            return Vec::new();
        }
        self.forwards.autostarted = true;
        let ids: Vec<u64> = self
            .forwards
            .items
            .iter()
            .filter(|f| f.autostart && f.phase == Phase::Stopped)
            .map(|f| f.id)
            .collect();
        let mut effects = Vec::new();
        for id in ids {
            let result = self.prepare_start(id, Start::Unattended);
            effects.extend(self.started_or_failed(id, result));
        }
        if !effects.is_empty() {
            self.set_status(
                Level::Info,
                format!("starting {} saved forward(s)…", effects.len()),
            );
        }
        effects
    }

    /// `aws sso login` for the selected forward when it failed because the SSO sign-in of
    /// its profile expired (a resume or a new session found out), then a restart of it.
    fn sso_login_for_forward(&mut self) -> Vec<Effect> {
        let Some(f) = self.forwards.selected() else {
            self.set_status(Level::Warn, "no forward selected".to_owned());
            return Vec::new();
        };
        let expired = [f.last_error.as_deref(), f.phase.failure()]
            .into_iter()
            .flatten()
            .find_map(sso_expired_profile);
        let Some(profile) = expired else {
            self.set_status(
                Level::Warn,
                format!("forward {} did not fail on an expired SSO sign-in", f.name),
            );
            return Vec::new();
        };
        if f.phase.is_active() {
            self.set_status(
                Level::Info,
                format!("forward {} is {}", f.name, f.phase.word()),
            );
            return Vec::new();
        }
        self.sso_retry_forward = Some(f.id);
        vec![Effect::SsoLogin { profile }]
    }

    pub(super) fn forwards_intent(&mut self, intent: super::Intent) -> Vec<Effect> {
        use super::Intent;
        if let Some(effects) = self.common_intent(intent) {
            return effects;
        }
        let len = self.forwards.items.len();
        let page = self.list_rows() as isize;
        let scroll = &mut self.forwards.scroll;
        match intent {
            Intent::Down => scroll.move_by(1, len),
            Intent::Up => scroll.move_by(-1, len),
            Intent::PageDown => scroll.move_by(page, len),
            Intent::PageUp => scroll.move_by(-page, len),
            Intent::Top => scroll.selected = 0,
            Intent::Bottom => scroll.selected = len.saturating_sub(1),
            Intent::Back => self.modes.switch(View::Instances),
            Intent::SsoLogin => return self.sso_login_for_forward(),
            Intent::Details => {
                if self.forwards.selected().is_some() {
                    self.modes.push(Mode::ForwardDetails);
                } else {
                    self.set_status(Level::Warn, "no forward selected".to_owned());
                }
            }
            Intent::Start | Intent::Stop | Intent::Restart | Intent::Delete => {
                let Some(f) = self.forwards.selected() else {
                    self.set_status(Level::Warn, "no forward selected".to_owned());
                    return Vec::new();
                };
                let (id, name, phase) = (f.id, f.name.clone(), f.phase.clone());
                return match intent {
                    Intent::Start if phase.is_active() || phase == Phase::Stopping => {
                        self.set_status(Level::Info, format!("forward {name} is {}", phase.word()));
                        Vec::new()
                    }
                    Intent::Start => self.start_forward(id),
                    Intent::Stop if !phase.is_active() => {
                        self.set_status(Level::Info, format!("forward {name} is not running"));
                        Vec::new()
                    }
                    Intent::Stop => self.stop_forward(id),
                    Intent::Restart => {
                        if self.opts.readonly {
                            self.set_status(
                                Level::Warn,
                                "read-only mode: forwards cannot be started".to_owned(),
                            );
                            return Vec::new();
                        }
                        // Stop then start: the runtime lets the new start wait for the old
                        // listener to close, so a fixed local port is free again.
                        let mut effects = if phase.is_active() {
                            self.stop_forward(id)
                        } else {
                            Vec::new()
                        };
                        effects.extend(self.start_forward(id));
                        effects
                    }
                    _ => {
                        self.confirm = Some(super::Confirm {
                            question: format!(
                                "Delete forward {name}?{}",
                                if phase.is_active() {
                                    " It is running and will be stopped."
                                } else {
                                    ""
                                }
                            ),
                            on_yes: super::ConfirmAction::DeleteForward(id),
                        });
                        self.modes.push(Mode::Confirm);
                        Vec::new()
                    }
                };
            }
            _ => {}
        }
        Vec::new()
    }

    fn stop_forward(&mut self, id: u64) -> Vec<Effect> {
        let Some(f) = self.forwards.get_mut(id) else {
            return Vec::new();
        };
        f.phase = Phase::Stopping;
        f.rate = Rate::default();
        let run = f.run;
        vec![Effect::StopForward { id, run }]
    }

    /// Removes forward `id`, stopping it first when it runs.
    pub(super) fn delete_forward(&mut self, id: u64) -> Vec<Effect> {
        let Some(pos) = self.forwards.items.iter().position(|f| f.id == id) else {
            return Vec::new();
        };
        let entry = self.forwards.items.remove(pos);
        let rows = self.list_rows();
        self.forwards.scroll.clamp(self.forwards.items.len(), rows);
        self.set_status(
            Level::Info,
            if entry.saved {
                format!(
                    "forward {} removed for this run (it is still in the config file)",
                    entry.name
                )
            } else {
                format!("forward {} deleted", entry.name)
            },
        );
        if entry.phase.is_active() || entry.phase == Phase::Stopping {
            vec![Effect::StopForward { id, run: entry.run }]
        } else {
            Vec::new()
        }
    }

    /// Applies forward results and samples; returns whether anything visible changed.
    pub(super) fn forward_action(&mut self, action: Action) -> bool {
        match action {
            Action::ForwardStarted { id, run, result } => {
                let Some(f) = self.forwards.get_mut(id) else {
                    return false;
                };
                if f.run != run || f.phase != Phase::Starting {
                    return false;
                }
                let name = f.name.clone();
                match result {
                    Ok(addr) => {
                        f.local_addr = addr;
                        f.phase = Phase::Running(ForwardState::Listening);
                        let to = format!(
                            "{}:{}",
                            f.target_label(),
                            f.spec
                                .as_ref()
                                .map_or_else(String::new, ForwardSpec::remote_label)
                        );
                        let text = match addr {
                            Some(a) => format!("forward {name}: {a} -> {to}"),
                            None => format!("forward {name} started -> {to}"),
                        };
                        self.set_status(Level::Info, text);
                    }
                    Err(e) => {
                        f.phase = Phase::Failed(e.clone());
                        f.last_error = Some(e.clone());
                        self.set_status(Level::Error, format!("forward {name} failed: {e}"));
                    }
                }
                true
            }
            Action::ForwardStopped { id, run } => {
                let Some(f) = self.forwards.get_mut(id) else {
                    return false;
                };
                if f.run != run || f.phase != Phase::Stopping {
                    return false;
                }
                f.phase = Phase::Stopped;
                true
            }
            Action::ForwardStats(samples) => {
                let mut changed = false;
                for s in samples {
                    if let Some(f) = self.forwards.get_mut(s.id)
                        && f.run == s.run
                        && matches!(f.phase, Phase::Running(_))
                    {
                        changed |= f.apply(s.snapshot);
                    }
                }
                // Counters only matter when the tab is on screen; state changes also show in
                // the status of other views, so they always redraw.
                changed || self.view() == View::Forwards
            }
            _ => false,
        }
    }
}

/// The profile named by an expired-SSO error ("the SSO sign-in for profile "dev" has expired"),
/// as ssmtui's own message words it.
fn sso_expired_profile(text: &str) -> Option<String> {
    let rest = text.split("the SSO sign-in for profile \"").nth(1)?;
    let profile = rest.split('"').next()?;
    (!profile.is_empty() && rest.contains("has expired")).then(|| profile.to_owned())
}
