//! Resolving a TARGET argument for `connect`, `forward` and `proxy`: identity, access class,
//! the instance list, and a single connectable instance (or a clear exit-3 error).

use std::io::IsTerminal;
use std::sync::Arc;

use crate::access;
use crate::aws::{AwsError, Identity, Instance, SsmApi};
use crate::config::{ClassConfig, Config};
use crate::error::{ErrorKind, UserError};
use crate::resolve::{self, Resolved, TargetSpec};

/// A resolved target and who is asking.
pub struct Target {
    /// The API client.
    pub api: Arc<dyn SsmApi>,
    /// The caller.
    pub identity: Identity,
    /// The caller's class name and settings, if classes are configured.
    pub class: Option<(String, ClassConfig)>,
    /// The chosen instance.
    pub instance: Instance,
}

impl Target {
    /// The class as `access` functions take it.
    pub fn class(&self) -> Option<access::Class<'_>> {
        self.class
            .as_ref()
            .map(|(name, config)| access::Class { name, config })
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
pub async fn resolve_target(
    config: &Config,
    input: &str,
    spec: &TargetSpec,
    choice: Choice,
) -> anyhow::Result<Target> {
    let api = super::aws_api(config).await?;
    let (identity, instances) =
        tokio::try_join!(api.caller_identity(), list_for(api.as_ref(), spec))?;
    let class = access::class_for(config, &identity.arn)?;
    let blocked = |i: &Instance| access::out_of_scope(class, i);
    let instance = match resolve::resolve(spec, input, &instances, &blocked)? {
        Resolved::One(i) => *i,
        Resolved::Many(many) => choose(input, many, choice).await?,
    };
    let class = class.map(|c| (c.name.to_owned(), c.config.clone()));
    Ok(Target {
        api,
        identity,
        class,
        instance,
    })
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
