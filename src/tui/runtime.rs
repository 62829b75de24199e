//! The one loop of the TUI: `select!` over terminal input, results of effects, and a tick; apply
//! each as an [`Action`], drain whatever else is queued, then render once if anything changed —
//! at most every [`FRAME`], so a burst of results cannot drive the frame rate.
//!
//! Effects that call AWS run as spawned tasks and post their results back through a bounded
//! channel; the loop never awaits AWS itself. Opening a shell is the exception: it is the
//! terminal takeover of style.md §2.5 — take the one-permit terminal-owner semaphore, stop the
//! input task, leave the alternate screen and raw mode, run the [`ShellLauncher`] on the real
//! stdin/stdout, then re-enter, force a full redraw and a resize, and report the outcome. Tasks
//! started before the shell keep running; their results queue and are applied after it.
//!
//! Port forwards: the runtime owns every [`ForwardHandle`] (a map from the app's forward id to
//! the handle of its current run). Starting one binds the port and opens the first session in
//! a spawned task, which hands the handle back through the result channel; a stop (or a
//! restart's stop half) runs in a task the next start of the same forward waits for, so a
//! fixed local port is free again before it is bound. Counters are sampled every
//! [`SAMPLE_MS`] into one [`Action::ForwardStats`] — never per byte — so a busy forward costs
//! two small actions a second, and the frame rate stays bound by [`FRAME`]. Forwards are
//! independent tasks and keep running during a shell takeover (sampling simply resumes after
//! it). When the loop ends, every forward is stopped and its session terminated.

use crate::engine::SessionTuning;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::events::{EventInput, TermEvent};
use super::terminal::TerminalGuard;
use super::{ShellLauncher, ShellOutcome};
use crate::access::Who;
use crate::app::forwards::{ForwardSample, SAMPLE_MS};
use crate::app::transcript::{Follow, LoadedTranscript};
use crate::app::{Action, App, Effect, SignInFailure, TICK_MS};
use crate::audit::{AuditLog, SessionKind};
use crate::aws::{AwsError, Instance, SessionState, SsmApi};
use crate::config::keymap::Key;
use crate::engine::forward::{self, Acceptor, ForwardHandle};
use crate::launch::{ForwardPlan, Launcher};
use crate::signals::Interrupts;
use crate::transcripts::Source;

/// Minimum time between two frames (~60 fps).
pub const FRAME: Duration = Duration::from_millis(16);

/// Capacity of the result channel; a full channel slows the producing tasks, not the UI.
const QUEUE: usize = 256;

/// How long quitting waits for forwards to stop (and their sessions to be terminated): a
/// runner's own wait for its driver (10 s) plus the launcher's TerminateSession (10 s), with
/// room to spare, so that a dead network does not cut an orderly end short.
const STOP_GRACE: Duration = Duration::from_secs(25);

pub use crate::aws::factory::{ApiFactory, SameApi, SdkFactory};

/// The fleet's clients, one per (profile, region) source, built when the source is first
/// loaded and kept (a retry after a failure builds a fresh one).
#[derive(Default)]
pub struct ApiCache(std::sync::Mutex<Vec<ApiCacheEntry>>);

type ApiCacheEntry = ((Option<String>, Option<String>), Arc<dyn SsmApi>);

impl ApiCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ApiCacheEntry>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The client for a source: the cached one unless `fresh`, else a new one from `factory`.
    pub async fn get(
        &self,
        factory: &dyn ApiFactory,
        profile: Option<String>,
        region: Option<String>,
        fresh: bool,
    ) -> Result<Arc<dyn SsmApi>, AwsError> {
        let key = (profile, region);
        if !fresh && let Some((_, api)) = self.lock().iter().find(|(k, _)| *k == key) {
            return Ok(Arc::clone(api));
        }
        let api = factory.build(key.0.clone(), key.1.clone()).await?;
        let mut cache = self.lock();
        cache.retain(|(k, _)| *k != key);
        cache.push((key, Arc::clone(&api)));
        Ok(api)
    }

    /// The client a fleet row's `who` acts through: its source's profile, and the region
    /// asked for or, for a source in its profile's own region, the one the client uses.
    pub fn find(&self, who: &Who) -> Option<Arc<dyn SsmApi>> {
        self.lock()
            .iter()
            .find(|((profile, region), api)| {
                *profile == who.profile
                    && match region {
                        Some(r) => who.region.as_ref() == Some(r),
                        None => api.location().1 == who.region,
                    }
            })
            .map(|(_, api)| Arc::clone(api))
    }
}

/// What the runtime talks to.
pub struct Services {
    /// The API client for the starting profile/region.
    pub api: Arc<dyn SsmApi>,
    /// Builds clients for `:profile` / `:region`.
    pub factory: Arc<dyn ApiFactory>,
    /// Opens shells; `None` while this build has no session engine.
    pub launcher: Option<Arc<dyn ShellLauncher>>,
    /// Where forward sessions are recorded (shells: the launcher's own).
    pub audit: AuditLog,
    /// How forward sessions ride out lost connections (`[sessions]`).
    pub tuning: SessionTuning,
}

enum Msg {
    Action(Action),
    Switched {
        generation: u64,
        result: Result<Arc<dyn SsmApi>, String>,
    },
    /// A start task finished: the handle to keep, or why it did not start.
    ForwardStarted {
        id: u64,
        run: u64,
        result: Result<ForwardHandle, String>,
    },
}

/// The forwards the runtime owns.
#[derive(Default)]
struct Forwards {
    /// Running forwards: id → (run, handle).
    running: HashMap<u64, (u64, ForwardHandle)>,
    /// Starts in flight: id → run. A result whose run is no longer here was stopped or
    /// restarted meanwhile and is stopped on arrival.
    starting: HashMap<u64, u64>,
    /// Stops in flight, which the next start of the same id waits for.
    stopping: HashMap<u64, JoinHandle<()>>,
}

/// Stops `handle` in a task and reports [`Action::ForwardStopped`] when its session is gone.
fn stop_in_background(
    tx: &mpsc::Sender<Msg>,
    id: u64,
    run: u64,
    handle: ForwardHandle,
) -> JoinHandle<()> {
    let tx = tx.clone();
    tokio::spawn(async move {
        handle.stop().await;
        let _ = tx
            .send(Msg::Action(Action::ForwardStopped { id, run }))
            .await;
    })
}

struct Runner {
    app: App,
    guard: TerminalGuard,
    input: Option<EventInput>,
    term_tx: mpsc::Sender<TermEvent>,
    tx: mpsc::Sender<Msg>,
    api: Arc<dyn SsmApi>,
    factory: Arc<dyn ApiFactory>,
    /// The fleet's clients.
    cache: Arc<ApiCache>,
    launcher: Option<Arc<dyn ShellLauncher>>,
    audit: AuditLog,
    tuning: SessionTuning,
    /// SIGTERM and SIGHUP: the loop quits (stopping every forward), a shell is terminated.
    interrupts: Interrupts,
    terminal_owner: Arc<Semaphore>,
    forwards: Forwards,
    quit: bool,
}

/// Runs the TUI until the user quits. The terminal is restored before this returns, also on
/// error, so the caller can print errors normally.
pub async fn run(app: App, services: Services) -> anyhow::Result<()> {
    let guard = TerminalGuard::enter()?;
    let (term_tx, mut term_rx) = mpsc::channel(QUEUE);
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let mut runner = Runner {
        app,
        guard,
        input: None,
        term_tx,
        tx,
        api: services.api,
        factory: services.factory,
        cache: Arc::new(ApiCache::default()),
        launcher: services.launcher,
        audit: services.audit,
        tuning: services.tuning,
        interrupts: Interrupts::watch_termination()?,
        terminal_owner: Arc::new(Semaphore::new(1)),
        forwards: Forwards::default(),
        quit: false,
    };
    runner.input = Some(EventInput::start(runner.term_tx.clone()));
    let size = runner.guard.terminal().size()?;
    runner.dispatch(Action::Resize {
        width: size.width,
        height: size.height,
    });
    let first = runner.app.start();
    runner.perform(first).await?;

    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sample = tokio::time::interval(Duration::from_millis(SAMPLE_MS));
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_frame: Option<Instant> = None;
    let mut dirty = true;
    let result = loop {
        if dirty {
            let due = last_frame.map_or(Instant::now(), |t| t + FRAME);
            if Instant::now() >= due {
                let app = &runner.app;
                if let Err(e) = runner
                    .guard
                    .terminal()
                    .draw(|frame| crate::ui::render(app, frame))
                {
                    break Err(e.into());
                }
                last_frame = Some(Instant::now());
                dirty = false;
            }
        }
        let render_at = last_frame.map_or(Instant::now(), |t| t + FRAME);
        let outcome = tokio::select! {
            Some(ev) = term_rx.recv() => runner.on_term(ev).await,
            Some(msg) = rx.recv() => runner.on_msg(msg).await,
            _ = tick.tick() => {
                let effects = runner.app.update(Action::Tick);
                runner.perform(effects).await
            }
            _ = sample.tick(), if !runner.forwards.running.is_empty() => {
                let action = runner.sample_forwards();
                let effects = runner.dispatch(action);
                runner.perform(effects).await
            }
            () = tokio::time::sleep_until(render_at), if dirty => Ok(()),
            () = runner.interrupts.token().cancelled() => {
                runner.quit = true;
                Ok(())
            }
        };
        if let Err(e) = outcome {
            break Err(e);
        }
        // Apply everything already queued before drawing once.
        let mut drained = Ok(());
        while drained.is_ok() && !runner.quit {
            if let Ok(ev) = term_rx.try_recv() {
                drained = runner.on_term(ev).await;
            } else if let Ok(msg) = rx.try_recv() {
                drained = runner.on_msg(msg).await;
            } else {
                break;
            }
        }
        if let Err(e) = drained {
            break Err(e);
        }
        if runner.quit {
            break Ok(());
        }
        dirty |= runner.app.take_dirty();
    };
    if let Some(input) = runner.input.take() {
        input.stop().await;
    }
    let forwards = std::mem::take(&mut runner.forwards);
    // Dropping the guard restores the terminal before the caller prints anything.
    drop(runner);
    stop_all(forwards, &mut rx).await;
    result
}

/// Stops every forward, including starts still in flight, so no session outlives the app.
/// Bounded by [`STOP_GRACE`]: a dead network must not keep the user from their shell.
async fn stop_all(forwards: Forwards, rx: &mut mpsc::Receiver<Msg>) {
    let Forwards {
        running,
        mut starting,
        stopping,
    } = forwards;
    let count = running.len() + starting.len();
    if count == 0 && stopping.is_empty() {
        return;
    }
    if count > 0 {
        eprintln!("ssmtui: stopping {count} port forward(s)…");
    }
    let mut tasks = JoinSet::new();
    for (_, (_, handle)) in running {
        tasks.spawn(handle.stop());
    }
    for task in stopping.into_values() {
        tasks.spawn(async move {
            let _ = task.await;
        });
    }
    let deadline = Instant::now() + STOP_GRACE;
    // Starts in flight report through the channel; stop each handle as it arrives.
    while !starting.is_empty() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Msg::ForwardStarted { id, result, .. })) => {
                starting.remove(&id);
                if let Ok(handle) = result {
                    tasks.spawn(handle.stop());
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    if tokio::time::timeout_at(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("some forwards did not stop within {STOP_GRACE:?}");
    }
}

impl Runner {
    /// `who` with the profile and region the API client in use actually points at (the app's
    /// own labels may be display names, such as the demo's).
    fn located(&self, mut who: Who) -> Who {
        let (profile, region) = self.api.location();
        who.profile = profile;
        who.region = region;
        who
    }

    /// The client sessions for `who` go through, and `who` as it is recorded: a fleet row's
    /// source's client, else the current one (with the location it actually points at).
    fn api_for(&self, who: Who) -> (Arc<dyn SsmApi>, Who) {
        match self.cache.find(&who) {
            Some(api) => (api, who),
            None => (self.api.clone(), self.located(who)),
        }
    }

    /// What starts sessions for `who` with the current API client.
    fn launcher_for(&self, who: Who) -> Launcher {
        let (api, who) = self.api_for(who);
        Launcher {
            api,
            audit: self.audit.clone(),
            who,
            tuning: self.tuning,
        }
    }

    fn dispatch(&mut self, action: Action) -> Vec<Effect> {
        self.app.update(action)
    }

    async fn on_term(&mut self, ev: TermEvent) -> anyhow::Result<()> {
        match ev {
            TermEvent::Key(key) => {
                if let Some(action) = self.app.resolve_key(Key::from_event(&key)) {
                    let effects = self.dispatch(action);
                    self.perform(effects).await?;
                }
            }
            TermEvent::Resize(width, height) => {
                self.dispatch(Action::Resize { width, height });
                // A resize invalidates what is on screen; repaint everything.
                self.guard.terminal().autoresize()?;
            }
            TermEvent::Error(e) => anyhow::bail!("cannot read the terminal: {e}"),
        }
        Ok(())
    }

    /// One sample of every running forward; finished ones (failed for good) are dropped from
    /// the map after their last sample, which carries the reason.
    fn sample_forwards(&mut self) -> Action {
        let mut samples = Vec::with_capacity(self.forwards.running.len());
        let mut finished = Vec::new();
        for (id, (run, handle)) in &self.forwards.running {
            samples.push(ForwardSample {
                id: *id,
                run: *run,
                snapshot: handle.stats().snapshot(),
            });
            if handle.is_finished() {
                finished.push(*id);
            }
        }
        for id in finished {
            self.forwards.running.remove(&id);
        }
        // The map's order is arbitrary; a stable order keeps the action deterministic.
        samples.sort_by_key(|s| s.id);
        Action::ForwardStats(samples)
    }

    async fn on_msg(&mut self, msg: Msg) -> anyhow::Result<()> {
        let action = match msg {
            Msg::Action(action) => action,
            Msg::ForwardStarted { id, run, result } => {
                if self.forwards.starting.get(&id) != Some(&run) {
                    // Stopped or restarted while starting: this run is not wanted any more.
                    match result {
                        Ok(handle) => {
                            let task = stop_in_background(&self.tx, id, run, handle);
                            // A start that comes later waits for it (one already in flight
                            // does not; with a fixed local port it may then find it taken).
                            self.forwards.stopping.entry(id).or_insert(task);
                            return Ok(());
                        }
                        // It never ran, so it is stopped already.
                        Err(_) => Action::ForwardStopped { id, run },
                    }
                } else {
                    self.forwards.starting.remove(&id);
                    let result = result.map(|handle| {
                        let addr = handle.local_addr();
                        self.forwards.running.insert(id, (run, handle));
                        addr
                    });
                    Action::ForwardStarted { id, run, result }
                }
            }
            Msg::Switched { generation, result } => Action::AwsSwitched {
                generation,
                result: result.map(|api| {
                    // A switch the app has given up on (a retry, a newer switch) must not
                    // replace the client the app now talks through.
                    if self.app.awaits_switch(generation) {
                        self.api = api;
                    }
                }),
            },
        };
        let effects = self.dispatch(action);
        self.perform(effects).await
    }

    fn spawn<F>(&self, work: F)
    where
        F: std::future::Future<Output = Msg> + Send + 'static,
    {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let msg = work.await;
            // The loop may have ended meanwhile; then nobody needs the result.
            let _ = tx.send(msg).await;
        });
    }

    async fn perform(&mut self, effects: Vec<Effect>) -> anyhow::Result<()> {
        for effect in effects {
            match effect {
                Effect::Quit => self.quit = true,
                Effect::LoadIdentity { generation } => {
                    let api = self.api.clone();
                    self.spawn(async move {
                        let result = api.caller_identity().await.map_err(|e| sign_in_failure(&e));
                        Msg::Action(Action::IdentityLoaded { generation, result })
                    });
                }
                Effect::LoadInstances { generation } => {
                    let api = self.api.clone();
                    // The trait returns the whole list; it arrives as one final page. A paging
                    // API would post one InstancesPage per page here.
                    self.spawn(async move {
                        let result = api
                            .list_instances(&[])
                            .await
                            .map_err(crate::report::one_line_of);
                        Msg::Action(Action::InstancesPage {
                            generation,
                            result,
                            done: true,
                        })
                    });
                }
                Effect::LoadSource {
                    generation,
                    index,
                    profile,
                    region,
                    fresh,
                } => {
                    let factory = self.factory.clone();
                    let cache = self.cache.clone();
                    self.spawn(async move {
                        let result = async {
                            let api = cache.get(factory.as_ref(), profile, region, fresh).await?;
                            let (identity, instances) =
                                tokio::join!(api.caller_identity(), api.list_instances(&[]));
                            Ok::<_, AwsError>(crate::app::SourceListing {
                                identity: identity?,
                                region: api.location().1,
                                instances: instances?,
                            })
                        }
                        .await
                        .map_err(|e| sign_in_failure(&e));
                        Msg::Action(Action::SourceLoaded {
                            generation,
                            index,
                            result: Box::new(result),
                        })
                    });
                }
                Effect::LoadSessions { generation } => {
                    let api = self.api.clone();
                    self.spawn(async move {
                        let active = api.describe_sessions(SessionState::Active, true).await;
                        let history = api.describe_sessions(SessionState::History, true).await;
                        let result = match (active, history) {
                            (Ok(mut a), Ok(h)) => {
                                a.extend(h);
                                Ok(a)
                            }
                            (Err(e), _) | (_, Err(e)) => Err(crate::report::one_line_of(e)),
                        };
                        Msg::Action(Action::SessionsLoaded { generation, result })
                    });
                }
                Effect::SsoLogin { profile } => {
                    let result = self.sso_login(&profile).await?;
                    let effects = self.dispatch(Action::SsoLoginFinished { profile, result });
                    Box::pin(self.perform(effects)).await?;
                }
                Effect::LoadTranscript {
                    session_id,
                    document,
                    active,
                } => {
                    let api = self.api.clone();
                    self.spawn(async move {
                        let read = crate::transcripts::read(
                            api.as_ref(),
                            &mut crate::transcripts::Documents::default(),
                            &session_id,
                            document.as_deref(),
                            None,
                            active,
                        )
                        .await;
                        let result = read
                            .map(|(location, source, t)| LoadedTranscript {
                                bytes: t.bytes,
                                source,
                                location: location.describe(),
                                // Only a transcript read from the stream continues there.
                                follow: location
                                    .cloudwatch
                                    .filter(|cw| cw.streaming && source == Source::Cloudwatch)
                                    .map(|cw| Follow {
                                        group: cw.group,
                                        stream: cw.stream,
                                        token: t.next,
                                    }),
                            })
                            .map_err(crate::report::one_line_of);
                        Msg::Action(Action::TranscriptLoaded { session_id, result })
                    });
                }
                Effect::PollTranscript {
                    session_id,
                    generation,
                    follow,
                } => {
                    let api = self.api.clone();
                    self.spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let result = api
                            .log_events(&follow.group, &follow.stream, follow.token.as_deref())
                            .await
                            .map(|page| {
                                let bytes = crate::transcripts::events_output(&page.events, false);
                                (bytes, page.next)
                            })
                            .map_err(crate::report::one_line_of);
                        Msg::Action(Action::TranscriptPolled {
                            session_id,
                            generation,
                            result,
                        })
                    });
                }
                Effect::TerminateSession { id } => {
                    let api = self.api.clone();
                    self.spawn(async move {
                        let result = api
                            .terminate_session(&id)
                            .await
                            .map_err(crate::report::one_line_of);
                        Msg::Action(Action::SessionTerminated { id, result })
                    });
                }
                Effect::SwitchAws {
                    generation,
                    profile,
                    region,
                } => {
                    let factory = self.factory.clone();
                    self.spawn(async move {
                        let result = factory
                            .build(profile, region)
                            .await
                            .map_err(crate::report::one_line_of);
                        Msg::Switched { generation, result }
                    });
                }
                Effect::StartForward {
                    id,
                    run,
                    instance,
                    spec,
                    document,
                    keepalive,
                    sessions,
                    reason,
                    who,
                } => {
                    self.forwards.starting.insert(id, run);
                    let previous = self.forwards.stopping.remove(&id);
                    let launcher = self.launcher_for(*who);
                    self.spawn(async move {
                        if let Some(stop) = previous {
                            let _ = stop.await;
                        }
                        let result = async {
                            // Bind first: a port in use is reported before any AWS call.
                            let listener = forward::bind(&spec).await?;
                            launcher
                                .forward(
                                    ForwardPlan {
                                        kind: SessionKind::Forward,
                                        instance: *instance,
                                        spec: spec.clone(),
                                        document,
                                        reason,
                                        keepalive,
                                        sessions,
                                    },
                                    Acceptor::Tcp(listener),
                                )
                                .await
                        }
                        .await
                        .map_err(|e| crate::report::one_line(&e));
                        Msg::ForwardStarted { id, run, result }
                    });
                }
                Effect::StopForward { id, run } => {
                    if self.forwards.starting.get(&id) == Some(&run) {
                        // Its handle is not here yet; it is stopped when it arrives.
                        self.forwards.starting.remove(&id);
                    } else if let Some((run, handle)) = self.forwards.running.remove(&id) {
                        let task = stop_in_background(&self.tx, id, run, handle);
                        self.forwards.stopping.insert(id, task);
                    } else {
                        // Already ended by itself (failed for good): nothing to stop.
                        let effects = self.dispatch(Action::ForwardStopped { id, run });
                        Box::pin(self.perform(effects)).await?;
                    }
                }
                Effect::OpenShell {
                    instance,
                    document,
                    reason,
                    who,
                } => {
                    let outcome = self.take_over(&who, &instance, &document, reason).await?;
                    let effects = self.dispatch(Action::ShellFinished {
                        target: instance.label(),
                        result: outcome.map(|o| o.exit_code),
                    });
                    // ShellFinished yields no effects today; applying them keeps that honest.
                    Box::pin(self.perform(effects)).await?;
                }
            }
        }
        Ok(())
    }

    /// Hands the terminal to `aws sso login --profile PROFILE` (it prints a code and opens a
    /// browser) and takes it back. The outer `Err` is a terminal failure; the inner one says
    /// why the login did not succeed.
    async fn sso_login(&mut self, profile: &str) -> anyhow::Result<Result<(), String>> {
        let Ok(_permit) = self.terminal_owner.clone().try_acquire_owned() else {
            return Ok(Err("a shell owns the terminal".to_owned()));
        };
        if let Some(input) = self.input.take() {
            input.stop().await;
        }
        self.guard.suspend()?;
        println!("ssmtui: running `aws sso login --profile {profile}`");
        // The child shares our process group, so a Ctrl-C typed while it waits for the
        // browser reaches ssmtui too: catch it here, the child alone ends.
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let child = tokio::process::Command::new("aws")
            .args(["sso", "login", "--profile", profile])
            .kill_on_drop(true)
            .spawn();
        let status = match child {
            Ok(mut child) => loop {
                tokio::select! {
                    status = child.wait() => break status,
                    _ = sigint.recv() => {}
                }
            },
            Err(e) => Err(e),
        };
        let result = match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("`aws sso login` exited with {s}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err("the AWS CLI (`aws`) is not installed; install it, or sign in elsewhere and press r".to_owned())
            }
            Err(e) => Err(format!("cannot run `aws sso login`: {e}")),
        };
        self.guard.resume()?;
        self.input = Some(EventInput::start(self.term_tx.clone()));
        let size = self.guard.terminal().size()?;
        self.dispatch(Action::Resize {
            width: size.width,
            height: size.height,
        });
        Ok(result)
    }

    /// Hands the terminal to a shell and takes it back. The outer `Err` is a terminal failure
    /// (fatal); the inner one is the shell's own failure (shown in the status line).
    async fn take_over(
        &mut self,
        who: &Who,
        instance: &Instance,
        document: &str,
        reason: Option<String>,
    ) -> anyhow::Result<Result<ShellOutcome, String>> {
        let Some(launcher) = self.launcher.clone() else {
            return Ok(Err(
                "this build cannot open shells yet (the session engine is not included)".to_owned(),
            ));
        };
        let Ok(_permit) = self.terminal_owner.clone().try_acquire_owned() else {
            return Ok(Err("another shell owns the terminal".to_owned()));
        };
        if let Some(input) = self.input.take() {
            input.stop().await;
        }
        self.guard.suspend()?;
        {
            use std::io::Write as _;
            let mut out = std::io::stdout();
            let _ = writeln!(
                out,
                "ssmtui: shell on {}; exit the shell to return to the list",
                instance.label()
            );
            let _ = out.flush();
        }
        tracing::info!(target = %instance.id, document, "shell takeover");
        let (api, who) = self.api_for(who.clone());
        let outcome = launcher
            .run_shell(api, &who, instance, document, reason, &self.interrupts)
            .await
            .map_err(|e| format!("{e:#}"));
        self.guard.resume()?;
        self.input = Some(EventInput::start(self.term_tx.clone()));
        let size = self.guard.terminal().size()?;
        self.dispatch(Action::Resize {
            width: size.width,
            height: size.height,
        });
        tracing::info!(target = %instance.id, ?outcome, "shell ended, terminal taken back");
        Ok(outcome)
    }
}
/// A failed sign-in as the sign-in panel shows it: the words, the hints, and the profile
/// `aws sso login` would renew.
fn sign_in_failure(err: &AwsError) -> SignInFailure {
    SignInFailure {
        message: crate::error::display_chain(err),
        hints: crate::error::Classify::classified(err).hints,
        sso_profile: match err {
            AwsError::SsoExpired { profile } => Some(profile.clone()),
            _ => None,
        },
    }
}
