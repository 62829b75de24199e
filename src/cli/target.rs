//! Resolving a TARGET argument for `connect`, `forward`, `proxy` and `exec`: identity, access
//! class (configured or discovered), the instance list, and one connectable instance — or every
//! one, for `exec --all` — or a clear exit-3 error.

use std::io::IsTerminal;
use std::sync::Arc;

use super::prompt;
use crate::access::memory::Memory;
use crate::access::{self, Who};
use crate::audit::AuditLog;
use crate::aws::{AwsError, Instance, SsmApi};
use crate::config::Config;
use crate::error::{ErrorKind, UserError};
use crate::launch::Launcher;
use crate::resolve::{self, Resolved, TargetSpec};

/// A resolved target and who is asking.
pub struct Target {
    /// The API client.
    pub api: Arc<dyn SsmApi>,
    /// The caller, class and location, for StartSession and the audit log.
    pub who: Who,
    /// The chosen instance.
    pub instance: Instance,
    /// Remembered choices (class per profile, recent reasons).
    pub memory: Memory,
    /// How its sessions ride out lost connections (`[sessions]`).
    pub tuning: crate::engine::SessionTuning,
}

impl Target {
    /// The class as `access` functions take it.
    pub fn class(&self) -> Option<access::Class<'_>> {
        self.who.class()
    }

    /// What starts sessions for this caller, recording them in `audit`.
    pub fn launcher(&self, audit: AuditLog) -> Launcher {
        Launcher {
            api: Arc::clone(&self.api),
            audit,
            who: self.who.clone(),
            tuning: self.tuning,
        }
    }
}

/// How to choose among several matches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Choice {
    /// Take the first by name.
    pub first: bool,
    /// Take a random one.
    pub any: bool,
}

/// Resolves `input` (already alias-expanded into `spec`) to one connectable instance.
/// `document` says whether the subcommand has `--document` and what it was; it matters only
/// when no class is configured.
pub async fn resolve_target(
    ctx: &super::Context,
    config: &Config,
    input: &str,
    spec: &TargetSpec,
    choice: Choice,
    document: super::prompt::DocumentFlag<'_>,
) -> anyhow::Result<Target> {
    let (caller, resolved) = resolve_any(ctx, config, input, spec, document).await?;
    let instance = match resolved {
        Resolved::One(i) => *i,
        Resolved::Many(many) => choose(input, many, choice).await?,
    };
    Ok(Target {
        api: caller.api,
        who: caller.who,
        instance,
        memory: caller.memory,
        tuning: super::tuning(config),
    })
}

/// Every connectable instance `input` matches (`exec --all`), by name.
pub async fn resolve_all(
    ctx: &super::Context,
    config: &Config,
    input: &str,
    spec: &TargetSpec,
    document: super::prompt::DocumentFlag<'_>,
) -> anyhow::Result<(Target, Vec<Instance>)> {
    let (caller, resolved) = resolve_any(ctx, config, input, spec, document).await?;
    let mut all = match resolved {
        Resolved::One(i) => vec![*i],
        Resolved::Many(many) => many,
    };
    all.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    let first = all.first().cloned().unwrap_or_default();
    Ok((
        Target {
            api: caller.api,
            who: caller.who,
            instance: first,
            memory: caller.memory,
            tuning: super::tuning(config),
        },
        all,
    ))
}

/// The caller (identity, class, memory) and what `input` resolves to.
struct Caller {
    api: Arc<dyn SsmApi>,
    who: Who,
    memory: Memory,
}

async fn resolve_any(
    ctx: &super::Context,
    config: &Config,
    input: &str,
    spec: &TargetSpec,
    document: super::prompt::DocumentFlag<'_>,
) -> anyhow::Result<(Caller, Resolved)> {
    let (api, location) = super::aws_api_located(config).await?;
    let (identity, instances) =
        tokio::try_join!(api.caller_identity(), list_for(api.as_ref(), spec))?;
    let memory = Memory::new(&ctx.paths.state_dir);
    let class =
        prompt::caller_class(config, &memory, api.as_ref(), &identity.arn, document).await?;
    let class_ref = class.as_ref().map(access::ChosenClass::as_class);
    let reach = |i: &Instance| access::reachability(i, class_ref);
    let resolved = resolve::resolve(spec, input, &instances, &reach)?;
    Ok((
        Caller {
            api,
            who: Who {
                identity,
                class,
                profile: location.profile,
                region: Some(location.region),
            },
            memory,
        },
        resolved,
    ))
}

async fn list_for(api: &dyn SsmApi, spec: &TargetSpec) -> Result<Vec<Instance>, AwsError> {
    let narrowed = api.list_instances(&spec.server_filters()).await?;
    if narrowed.iter().any(|i| spec.matches(i)) {
        return Ok(narrowed);
    }
    // Nothing matched: fetch everything so the error can suggest the closest names.
    api.list_instances(&[]).await
}

async fn choose(input: &str, mut many: Vec<Instance>, choice: Choice) -> anyhow::Result<Instance> {
    many.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    if choice.first {
        return Ok(many.swap_remove(0));
    }
    if choice.any {
        let mut buf = [0u8; 8];
        getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let n = usize::try_from(u64::from_le_bytes(buf) % many.len() as u64).unwrap_or(0);
        return Ok(many.swap_remove(n));
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(resolve::ambiguous(input, &many).into());
    }
    let prompt = format!("\"{input}\" matches {} instances", many.len());
    let picked = tokio::task::spawn_blocking(move || super::picker::pick(&prompt, &many)).await??;
    picked.ok_or_else(|| UserError::new(ErrorKind::Interrupted, "no instance chosen").into())
}

/// Refuses session-starting commands in `--readonly` mode.
pub fn refuse_readonly(readonly: bool, what: &str) -> Result<(), UserError> {
    if readonly {
        return Err(UserError::new(
            ErrorKind::Usage,
            "read-only mode: sessions cannot be started",
        )
        .hint(format!("leave out --readonly to {what}")));
    }
    Ok(())
}

/// The StartSession reason for this target: given, class default, or asked for (exit 2
/// without a terminal when required). A reason used is remembered in the recent list.
pub async fn reason_for(target: &Target, given: Option<String>) -> anyhow::Result<Option<String>> {
    let reason = prompt::session_reason(
        given,
        target.who.class.as_ref(),
        &target.instance,
        &target.memory,
    )
    .await?;
    if let Some(r) = &reason
        && let Err(e) = target.memory.add_reason(r)
    {
        tracing::warn!(error = %e, "cannot remember the reason");
    }
    Ok(reason)
}

/// `--profiles`, `--regions` and `--all-profiles`: the fleet to search for a target or to list,
/// over `[fleet]` in the config.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FleetArgs {
    /// Search or list these AWS profiles together (comma-separated; globs against
    /// ~/.aws/config); default: [fleet] profiles in the config
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub profiles: Vec<String>,
    /// In these regions (comma-separated; default: [fleet] regions, else each profile's own)
    #[arg(long, value_delimiter = ',', value_name = "X,Y")]
    pub regions: Vec<String>,
    /// Every profile in ~/.aws/config
    #[arg(long, conflicts_with = "profiles")]
    pub all_profiles: bool,
}

impl FleetArgs {
    /// Whether any of the flags was given.
    pub fn given(&self) -> bool {
        !self.profiles.is_empty() || !self.regions.is_empty() || self.all_profiles
    }

    /// The pairs asked for: these flags, else `[fleet]` unless `--profile` names one profile;
    /// `--region R` without `--regions` means that region for every profile. `None`: the
    /// single profile and region, as before.
    pub fn sources(
        &self,
        global: &super::GlobalArgs,
        config: &Config,
    ) -> Result<Option<Vec<crate::fleet::Source>>, UserError> {
        let global_profile = global.profile.as_deref();
        let mut this = self.clone();
        if this.regions.is_empty()
            && let Some(region) = &global.region
        {
            this.regions = vec![region.clone()];
        }
        let given = self.given();
        let this = &this;
        if global_profile.is_some() && (!self.profiles.is_empty() || self.all_profiles) {
            return Err(UserError::new(
                ErrorKind::Usage,
                "--profile names one profile; --profiles and --all-profiles name several",
            )
            .hint("give one or the other"));
        }
        let fleet = if global_profile.is_some() && !given {
            crate::config::FleetConfig::default()
        } else {
            config.fleet.clone()
        };
        let known = crate::aws::profiles::profile_names();
        let sources = match global_profile {
            // --profile with --regions: that profile in each region.
            Some(p) if !self.regions.is_empty() => Some(crate::fleet::sources(
                &[p.to_owned()],
                &self.regions,
                &known,
            )),
            _ => crate::fleet::requested(
                &fleet,
                &this.profiles,
                &this.regions,
                this.all_profiles,
                &known,
            ),
        };
        if sources.as_ref().is_some_and(Vec::is_empty) {
            return Err(UserError::new(
                ErrorKind::Usage,
                "no profile matches the fleet's profiles",
            )
            .hint("the names and globs are matched against the profiles of ~/.aws/config (or AWS_CONFIG_FILE)"));
        }
        Ok(sources)
    }
}

/// Finds where a target lives and points `config.aws` at that profile and region, so that
/// resolving it, its class and its session all go through that pair. Takes the
/// `account=`/`region=` terms off `target` and returns the rest, parsed. Without a fleet and
/// without those terms, nothing changes.
pub async fn place_target(
    ctx: &super::Context,
    config: &mut Config,
    fleet: &FleetArgs,
    target: &str,
    pinned: bool,
) -> anyhow::Result<(String, TargetSpec)> {
    let (rest, place) = crate::fleet::split_place(target);
    let spec = TargetSpec::parse(&rest)?;
    let Some(sources) = search_sources(ctx, config, fleet, &place, pinned)? else {
        return Ok((rest, spec));
    };
    let located = crate::fleet::locate(
        &config.aws,
        &sources,
        &place,
        &config.fleet.aliases,
        &spec.server_filters(),
        |i| spec.matches(i),
    )
    .await?;
    match located {
        Some(pair) => {
            config.aws.profile = pair.profile;
            config.aws.region = pair.region;
        }
        None if !place.is_empty() => {
            return Err(UserError::new(
                ErrorKind::NotFound,
                format!("no instance matches \"{rest}\" in {}", place.describe()),
            )
            .hint("`ssmtui list --profiles … --regions …` shows where each instance lives")
            .into());
        }
        // Not found anywhere: resolving in the default pair says so as usual.
        None => {}
    }
    Ok((rest, spec))
}

/// The pairs to search for a target: the fleet (unless an alias `pinned` the profile or
/// region and no fleet flag was given), else (with `account=`/`region=` terms) the one pair of
/// the profile; `None`: no search, the single pair as before.
fn search_sources(
    ctx: &super::Context,
    config: &Config,
    fleet: &FleetArgs,
    place: &crate::fleet::Place,
    pinned: bool,
) -> Result<Option<Vec<crate::fleet::Source>>, UserError> {
    let asked = if pinned && !fleet.given() {
        None
    } else {
        fleet.sources(&ctx.global, config)?
    };
    Ok(match asked {
        Some(sources) => Some(sources),
        None if !place.is_empty() => Some(vec![crate::fleet::Source {
            profile: config.aws.profile.clone(),
            region: place.region.clone().or_else(|| config.aws.region.clone()),
        }]),
        None => None,
    })
}

/// Like [`place_target`] for `exec --all`: one config per pair that has matches (each with its
/// own identity and class), or the config unchanged without a fleet. No match anywhere leaves
/// the default pair, whose resolution reports it.
pub async fn place_all(
    ctx: &super::Context,
    config: &Config,
    fleet: &FleetArgs,
    target: &str,
    pinned: bool,
) -> anyhow::Result<(String, TargetSpec, Vec<Config>)> {
    let (rest, place) = crate::fleet::split_place(target);
    let spec = TargetSpec::parse(&rest)?;
    let Some(sources) = search_sources(ctx, config, fleet, &place, pinned)? else {
        return Ok((rest, spec, vec![config.clone()]));
    };
    let found = crate::fleet::find(
        &config.aws,
        &sources,
        &place,
        &config.fleet.aliases,
        &spec.server_filters(),
        |i| spec.matches(i),
    )
    .await;
    if found.is_empty() {
        return Err(UserError::new(
            ErrorKind::NotFound,
            format!("no instance matches \"{rest}\" in the fleet"),
        )
        .hint("`ssmtui list --profiles … --regions …` shows where each instance lives")
        .into());
    }
    let configs = found
        .into_iter()
        .map(|(pair, _, _)| {
            let mut c = config.clone();
            c.aws.profile = pair.profile;
            c.aws.region = pair.region;
            c
        })
        .collect();
    Ok((rest, spec, configs))
}
