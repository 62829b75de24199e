//! `ssmtui` with no subcommand: the interactive UI.
//!
//! Loads the config, starts file logging (the TUI owns the terminal, so nothing is logged to
//! it), builds the API client and runs [`crate::tui::runtime::run`]. Errors before the UI opens
//! and after it closes reach the normal error edge in `cli::main`; the terminal is restored
//! before either.
//!
//! Developer aids, documented in the README and never needed by users:
//! - `SSMTUI_FAKE_WORLD=N` runs against an in-memory fake with N deterministic instances
//!   instead of AWS (used by the tmux end-to-end test and for trying the UI without an account);
//! - `SSMTUI_TEST_SHELL_COMMAND=CMD` (only together with the fake world) runs `sh -c CMD` on the
//!   terminal in place of a remote shell, to exercise the shell takeover.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use super::Context;
use crate::access::ChosenClass;
use crate::access::discovery;
use crate::app::{App, AppOptions};
use crate::audit::AuditLog;
use crate::aws::SsmApi;
use crate::aws::fake::FakeApi;
use crate::aws::profiles::profile_names;
use crate::aws::sdk::SdkApi;
use crate::config::Theme;
use crate::config::keymap::Keymap;
use crate::error::{ErrorKind, UserError};
use crate::tui::runtime::{self, SameApi, SdkFactory, Services};
use crate::tui::{CommandLauncher, ENV_TEST_SHELL, ShellLauncher};

/// Environment variable switching the TUI to the in-memory fake world (developer aid).
pub const ENV_FAKE_WORLD: &str = "SSMTUI_FAKE_WORLD";

/// Opens the interactive UI; with `fleet` (or `[fleet]`), over several profiles and regions.
pub fn run(ctx: &Context, fleet: &super::target::FleetArgs) -> anyhow::Result<ExitCode> {
    if !has_terminal() {
        return Err(UserError::new(
            ErrorKind::Usage,
            "the interactive UI needs a terminal on stdin and stdout",
        )
        .hint("run it in a terminal, or use a subcommand (`ssmtui --help` lists them)")
        .into());
    }
    let loaded = ctx.load_config()?;
    let mut config = loaded.config;
    let fake_world = fake_world_size()?;
    let sources = match fake_world {
        Some(_) => None,
        None => fleet.sources(&ctx.global, &config)?,
    };
    // Logging is best effort: the UI works without it, and must not print to the terminal.
    let _log = crate::logging::init(&ctx.paths.log_dir(), ctx.global.verbose).ok();
    let tokio = super::runtime()?;
    tokio.block_on(async {
        let (services, profile, region) = match fake_world {
            Some(count) => {
                let api: Arc<dyn SsmApi> = Arc::new(FakeApi::world(count));
                let launcher = std::env::var(ENV_TEST_SHELL)
                    .ok()
                    .filter(|c| !c.is_empty())
                    .map(|c| Arc::new(CommandLauncher::new(c)) as Arc<dyn ShellLauncher>);
                let services = Services {
                    api: api.clone(),
                    factory: Arc::new(SameApi(api)),
                    launcher,
                    audit: AuditLog::from_config(&config.audit, &ctx.paths),
                    tuning: super::tuning(&config),
                };
                let profile = config.aws.profile.clone().or(Some("fake-world".to_owned()));
                let region = config.aws.region.clone().or(Some("eu-west-1".to_owned()));
                (services, profile, region)
            }
            None => {
                // With a fleet, the first source whose client builds stands for the sessions
                // view; every source gets its own client as it loads.
                if let Some(first) = sources.as_ref().and_then(|s| s.first()) {
                    config.aws.profile.clone_from(&first.profile);
                    if first.region.is_some() {
                        config.aws.region.clone_from(&first.region);
                    }
                }
                let sdk = SdkApi::new(&config.aws).await?;
                let audit = AuditLog::from_config(&config.audit, &ctx.paths);
                let profile = sdk.profile().map(str::to_owned);
                let region = Some(sdk.region().to_owned());
                let services = Services {
                    api: Arc::new(sdk),
                    factory: Arc::new(SdkFactory {
                        aws: config.aws.clone(),
                    }),
                    launcher: Some(Arc::new(crate::tui::EngineLauncher::new(
                        audit.clone(),
                        super::tuning(&config),
                    ))),
                    audit,
                    tuning: super::tuning(&config),
                };
                (services, profile, region)
            }
        };
        run_app(
            ctx,
            &config,
            services,
            profile,
            region,
            sources.unwrap_or_default(),
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The UI on `services` until the user quits; shared by `ssmtui` and `ssmtui demo`.
pub async fn run_app(
    ctx: &Context,
    config: &crate::config::Config,
    services: Services,
    profile: Option<String>,
    region: Option<String>,
    fleet: Vec<crate::fleet::Source>,
) -> anyhow::Result<()> {
    let keymap = Keymap::with_overrides(&config.ui.keymap)
        .map_err(|e| UserError::new(ErrorKind::Usage, e.to_string()).hint(e.hint()))?;
    let mut ui = config.ui.clone();
    if !ctx.global.color_allowed() {
        ui.theme = Theme::Mono;
    }
    let app = App::new(AppOptions {
        ui,
        classes: config.classes.clone(),
        remembered: remembered_classes(ctx),
        keymap,
        profile,
        region,
        readonly: ctx.global.readonly,
        profiles: profile_names(),
        aliases: config.aliases.clone(),
        forwards: config.forwards.clone(),
        fleet,
        fleet_aliases: config.fleet.aliases.clone(),
    });
    runtime::run(app, services).await
}

/// Whether stdin and stdout are both terminals (the UI needs them).
pub fn has_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

fn fake_world_size() -> anyhow::Result<Option<usize>> {
    match std::env::var(ENV_FAKE_WORLD) {
        Ok(v) if !v.is_empty() => v.parse().map(Some).map_err(|_| {
            UserError::new(
                ErrorKind::Usage,
                format!("{ENV_FAKE_WORLD}=\"{v}\" is not a number of instances"),
            )
            .hint(format!(
                "set {ENV_FAKE_WORLD}=300 for 300 fake instances, or unset it"
            ))
            .into()
        }),
        _ => Ok(None),
    }
}

/// The classes the user picked earlier among the account's tagged documents, by profile
/// (`ssmtui connect` asks once per profile). The app uses the one for its profile when no
/// classes are configured; without either it refuses sessions and says why.
fn remembered_classes(ctx: &Context) -> BTreeMap<String, ChosenClass> {
    let memory = crate::access::memory::Memory::new(&ctx.paths.state_dir);
    memory
        .remembered_classes()
        .into_iter()
        .map(|(profile, r)| (profile, discovery::remembered(&r)))
        .collect()
}
