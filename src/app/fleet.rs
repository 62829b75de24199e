//! The fleet in the app: several (profile, region) sources listed into one instance list.
//!
//! Each source loads on its own ([`Effect::LoadSource`] → [`Action::SourceLoaded`]): its rows
//! appear when it answers, with the source's ACCOUNT and REGION, and reachability decided by
//! the class of the caller *in that account*. A failing source drops its rows and shows in the
//! sources strip with its reason and hint; `r` reloads every source, retrying the failed ones
//! with fresh clients.
//!
//! Who acts follows the selection: the app's identity, class, profile and region are those of
//! the selected row's source ([`App::act_as_source`]), so the header says who a shell or a
//! forward would start as, and everything that decides a document, a reason or a refusal for
//! one account works unchanged. A forward started from the forwards tab acts as its own
//! instance's source.

use super::{Action, App, Effect, Level, SignInFailure};
use crate::access::{self, ChosenClass};
use crate::aws::{Identity, Instance};
use crate::fleet::Source;

/// One fleet source as the app tracks it.
#[derive(Debug, Clone)]
pub struct SourceState {
    /// The (profile, region) asked for.
    pub source: Source,
    /// `profile/region` for the sources strip.
    pub label: String,
    /// Where its listing stands.
    pub status: SourceStatus,
}

/// Where a source's listing stands.
#[derive(Debug, Clone)]
pub enum SourceStatus {
    /// Asked, not answered yet.
    Loading,
    /// Listed.
    Ready(Box<ReadySource>),
    /// Failed: the reason in one line and what to do.
    Failed {
        /// Why.
        reason: String,
        /// What to do (`aws sso login --profile X`, …).
        hint: Option<String>,
    },
}

/// A source that listed: who the caller is there and with which class.
#[derive(Debug, Clone)]
pub struct ReadySource {
    /// The caller in that account.
    pub identity: Identity,
    /// The caller's class there.
    pub class: Option<ChosenClass>,
    /// Why there is no class there, when refused one.
    pub class_error: Option<String>,
    /// The region the client used.
    pub region: Option<String>,
    /// Its instances' count.
    pub count: usize,
}

/// What a source answered.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceListing {
    /// The caller there.
    pub identity: Identity,
    /// The region the client used.
    pub region: Option<String>,
    /// Its instances.
    pub instances: Vec<Instance>,
}

impl App {
    /// Sources in the order given; empty without a fleet.
    pub(super) fn fleet_sources(sources: &[Source]) -> Vec<SourceState> {
        sources
            .iter()
            .map(|s| SourceState {
                source: s.clone(),
                label: s.label(),
                status: SourceStatus::Loading,
            })
            .collect()
    }

    /// Loads every source (all at first, again on `r`); a failed one is retried with a fresh
    /// client.
    pub(super) fn load_fleet(&mut self) -> Vec<Effect> {
        self.fleet_generation += 1;
        self.ticks_since_refresh = 0;
        self.instances.loading = true;
        self.instances.error = None;
        let generation = self.fleet_generation;
        self.fleet
            .iter_mut()
            .enumerate()
            .map(|(index, s)| {
                let fresh = matches!(s.status, SourceStatus::Failed { .. });
                s.status = SourceStatus::Loading;
                Effect::LoadSource {
                    generation,
                    index,
                    profile: s.source.profile.clone(),
                    region: s.source.region.clone(),
                    fresh,
                }
            })
            .collect()
    }

    /// A source answered.
    pub(super) fn source_loaded(
        &mut self,
        generation: u64,
        index: usize,
        result: Result<SourceListing, SignInFailure>,
    ) -> Vec<Effect> {
        if generation != self.fleet_generation || index >= self.fleet.len() {
            return Vec::new();
        }
        let profile = self.fleet[index]
            .source
            .profile
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        match result {
            Ok(listing) => {
                let remembered = self.opts.remembered.get(&profile).cloned();
                let (class, class_error) = match access::known_class(
                    &self.opts.classes,
                    remembered,
                    &listing.identity.arn,
                ) {
                    Ok(class) => (class, None),
                    Err(e) => (None, Some(e.to_string())),
                };
                let account = self
                    .opts
                    .fleet_aliases
                    .get(&listing.identity.account)
                    .cloned()
                    .unwrap_or_else(|| listing.identity.account.clone());
                let region = listing
                    .region
                    .clone()
                    .or_else(|| self.fleet[index].source.region.clone());
                let place = (account, region.clone().unwrap_or_else(|| "-".to_owned()));
                let count = listing.instances.len();
                self.instances
                    .set_source(index, &place, listing.instances, class.as_ref());
                self.fleet[index].status = SourceStatus::Ready(Box::new(ReadySource {
                    identity: listing.identity,
                    class,
                    class_error,
                    region,
                    count,
                }));
            }
            Err(failure) => {
                self.instances.drop_source(index);
                self.fleet[index].status = SourceStatus::Failed {
                    reason: failure.message.clone(),
                    hint: failure.hints.first().cloned(),
                };
                let label = self.fleet[index].label.clone();
                self.set_status(Level::Error, format!("{label}: {failure}"));
            }
        }
        if self
            .fleet
            .iter()
            .all(|s| !matches!(s.status, SourceStatus::Loading))
        {
            self.instances.finish_fleet_load();
        }
        // The selection may now sit on another source's row.
        self.acting = None;
        self.maybe_autostart()
    }

    /// Acts as the source of the instance `id`: its caller, class, profile and region become
    /// the app's, so what follows (documents, reasons, refusals, the audit's `who`) is that
    /// account's. Does nothing without a fleet or for an instance no source has.
    pub fn act_as_instance(&mut self, id: &str) {
        if self.fleet.is_empty() {
            return;
        }
        if let Some(source) = self.instances.source_of(id) {
            self.act_as_source(source);
        }
    }

    /// Acts as fleet source `index` (see [`App::act_as_instance`]).
    pub fn act_as_source(&mut self, index: usize) {
        if self.acting == Some(index) {
            return;
        }
        let Some(state) = self.fleet.get(index) else {
            return;
        };
        self.opts.profile.clone_from(&state.source.profile);
        match &state.status {
            SourceStatus::Ready(ready) => {
                self.identity = Some(ready.identity.clone());
                self.class.clone_from(&ready.class);
                self.class_error.clone_from(&ready.class_error);
                self.identity_error = None;
                self.opts.region.clone_from(&ready.region);
            }
            SourceStatus::Loading => {
                self.identity = None;
                self.class = None;
                self.class_error = None;
                self.identity_error = None;
                self.opts.region.clone_from(&state.source.region);
            }
            SourceStatus::Failed { reason, .. } => {
                self.identity = None;
                self.class = None;
                self.class_error = None;
                self.identity_error = Some(reason.clone());
                self.opts.region.clone_from(&state.source.region);
            }
        }
        self.acting = Some(index);
    }

    /// After each update: act as the selected row's source.
    pub(super) fn follow_selection(&mut self) {
        if self.fleet.is_empty() {
            return;
        }
        let source = self.instances.selected().map(|r| r.source);
        match source {
            Some(index) => self.act_as_source(index),
            None if self.acting.is_none() => {
                // Nothing selected yet: the first source that answered speaks for the header.
                if let Some(index) = self
                    .fleet
                    .iter()
                    .position(|s| matches!(s.status, SourceStatus::Ready(_)))
                {
                    self.act_as_source(index);
                }
            }
            None => {}
        }
    }

    /// Whether a fleet source is still loading.
    pub(super) fn fleet_loading(&self) -> bool {
        self.fleet
            .iter()
            .any(|s| matches!(s.status, SourceStatus::Loading))
    }

    /// Handles a [`Action::SourceLoaded`].
    pub(super) fn fleet_action(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::SourceLoaded {
                generation,
                index,
                result,
            } => self.source_loaded(generation, index, *result),
            _ => Vec::new(),
        }
    }
}
