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
