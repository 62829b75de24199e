//! `ssmtui demo`: try ssmtui with nothing but this binary. Starts the sandbox in-process and
//! opens the product pointed at it, signed in as a sandbox identity.
//!
//! The AWS layer is pointed at the sandbox through the configuration (`[aws] endpoint_url` and
//! `region`) and fixed credentials handed to [`SdkApi::with_static_credentials`], not through
//! environment variables: changing the process environment is `unsafe` in Rust 2024 and would
//! leak into anything else the process starts. The user's own AWS profile is never read.
//!
//! On a terminal, [`open_product`] opens the TUI on the sandbox, with the sandbox's access
//! classes (sudo for alice, no-sudo for bob) so shells and forwards work as they would in an
//! organisation's account. Without a terminal (scripts, tests) it checks that the AWS layer
//! reaches the sandbox as the chosen identity, prints the `export` lines for the AWS CLI, and
//! serves until Ctrl-C.

use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use super::sandbox::{exports_text, identity_arg};
use super::server_runtime;
use crate::aws::SsmApi;
use crate::aws::sdk::SdkApi;
use crate::config::Config;
use crate::output::print_out;
use crate::sandbox::{self, RunningSandbox, SECRET_ACCESS_KEY, Sandbox, SandboxConfig, identity};
use crate::secret::Secret;
use crate::signals::Interrupts;

/// Try ssmtui against an emulated AWS account on this machine (no AWS account needed).
///
/// Starts the sandbox (EC2, SSM, STS, KMS and real shells and port forwards on loopback) and
/// opens ssmtui signed in as a sandbox identity. Stops with Ctrl-C.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Sandbox identity to sign in as: alice (sudo), bob (no-sudo) or eve (no access)
    #[arg(long = "as", value_name = "NAME", default_value = "alice")]
    pub identity: String,
    /// Number of instances in the world
    #[arg(long, value_name = "N", default_value_t = sandbox::DEFAULT_INSTANCES)]
    pub instances: usize,
    /// Seed of the generated world (same seed, same instances)
    #[arg(long, value_name = "N", default_value_t = sandbox::DEFAULT_SEED)]
    pub seed: u64,
    /// How fast the agent sends: "real" like amazon-ssm-agent (about 0.6 MB/s per session),
    /// or "off" as fast as it can
    #[arg(long, value_name = "real|off", default_value = "real", value_parser = super::sandbox::parse_pacing)]
    pub agent_pacing: sandbox::AgentPacing,
    /// Several accounts and regions in one list: the sandbox serves --accounts accounts in
    /// --regions regions, one profile per account
    #[arg(long)]
    pub fleet: bool,
    /// With --fleet, how many accounts (prod, dev, audit, …; up to 6)
    #[arg(long, value_name = "N", default_value_t = 3, requires = "fleet", value_parser = clap::value_parser!(u64).range(1..=6))]
    pub accounts: u64,
    /// With --fleet, the regions every account serves
    #[arg(
        long,
        value_name = "R1,R2",
        value_delimiter = ',',
        default_value = "eu-west-1,us-east-1",
        requires = "fleet"
    )]
    pub regions: Vec<String>,
}

/// What the product needs to run against the demo sandbox.
#[derive(Debug)]
pub struct DemoSetup<'a> {
    /// The user's configuration with `[aws]` pointed at the sandbox (endpoint, region, no
    /// profile).
    pub config: Config,
    /// The identity signed in as.
    pub identity: &'static identity::Identity,
    /// The identity's secret key (the sandbox never checks it; it only has to sign).
    pub secret: Secret,
    /// The running sandbox.
    pub sandbox: &'a RunningSandbox,
}

impl DemoSetup<'_> {
    /// The AWS layer for the product, signed in as the demo identity.
    pub async fn api(&self) -> anyhow::Result<SdkApi> {
        SdkApi::with_static_credentials(
            &self.config.aws,
            &self.identity.access_key_id(),
            &self.secret,
        )
        .await
        .context("cannot set up the AWS clients for the sandbox")
    }
}

/// Starts the sandbox and opens the product on it.
pub fn run(ctx: &Context, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let who = identity_arg(&args.identity)?;
    if args.fleet {
        return run_fleet(ctx, args, who);
    }
    // The user's config still applies (UI, aliases); only [aws] is replaced.
    let mut config = ctx.load_config()?.config;
    let region = ctx
        .global
        .region
        .clone()
        .unwrap_or_else(|| sandbox::DEFAULT_REGION.to_owned());
    let runtime = server_runtime()?;
    runtime.block_on(async {
        let stop = Interrupts::watch()?;
        let running = Sandbox::start(SandboxConfig {
            seed: args.seed,
            instances: args.instances,
            region: region.clone(),
            pacing: args.agent_pacing,
            ..SandboxConfig::default()
        })
        .await
        .context("cannot start the sandbox")?;
        config.aws.profile = None;
        config.aws.region = Some(region);
        config.classes = demo_classes();
        config.aws.endpoint_url = Some(running.endpoint_url());
        config.aws.endpoints = crate::config::EndpointsConfig::default();
        let setup = DemoSetup {
            config,
            identity: who,
            secret: Secret::new(SECRET_ACCESS_KEY),
            sandbox: &running,
        };
        let result = open_product(ctx, &setup, stop).await;
        running.shutdown().await;
        result
    })
}

/// The access classes of the sandbox's organisation, as its documents and identities expect.
pub fn demo_classes() -> std::collections::BTreeMap<String, crate::config::ClassConfig> {
    use crate::config::ClassConfig;
    let forward = |docs: &[&str]| docs.iter().map(|d| (*d).to_owned()).collect::<Vec<_>>();
    std::collections::BTreeMap::from([
        (
            "sudo".to_owned(),
            ClassConfig {
                document: "SSM-sudo".to_owned(),
                forward_documents: forward(&[
                    "AWS-StartPortForwardingSession",
                    "AWS-StartPortForwardingSessionToRemoteHost",
                ]),
                principals: vec![
                    "arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*".to_owned(),
                ],
                reason_required_tags: vec!["Environment=prod".to_owned()],
                ..ClassConfig::default()
            },
        ),
        (
            "no-sudo".to_owned(),
            ClassConfig {
                document: "SSM-nosudo".to_owned(),
                forward_documents: forward(&["AWS-StartPortForwardingSession"]),
                principals: vec![
                    "arn:aws:sts::*:assumed-role/AWSReservedSSO_Developer_*/*".to_owned(),
                ],
                scope: std::collections::BTreeMap::from([(
                    "Environment".to_owned(),
                    vec!["staging".to_owned(), "dev".to_owned()],
                )]),
                ..ClassConfig::default()
            },
        ),
    ])
}

/// Opens the product against the sandbox: the TUI on a terminal; otherwise a check that the
/// AWS layer works as the chosen identity, the exports, and serving until Ctrl-C.
pub async fn open_product(
    ctx: &Context,
    setup: &DemoSetup<'_>,
    stop: Interrupts,
) -> anyhow::Result<ExitCode> {
    let api = setup.api().await?;
    if super::tui::has_terminal() {
        let region = api.region().to_owned();
        let api: std::sync::Arc<dyn SsmApi> = std::sync::Arc::new(api);
        let audit = crate::audit::AuditLog::from_config(&setup.config.audit, &ctx.paths);
        let services = crate::tui::runtime::Services {
            api: std::sync::Arc::clone(&api),
            // Profiles and regions of the user's real AWS setup mean nothing here.
            factory: std::sync::Arc::new(crate::tui::runtime::SameApi(api)),
            launcher: Some(std::sync::Arc::new(crate::tui::EngineLauncher::new(
                audit.clone(),
                super::tuning(&setup.config),
            ))),
            audit,
            tuning: super::tuning(&setup.config),
        };
        super::tui::run_app(
            ctx,
            &setup.config,
            services,
            Some(format!("demo ({})", setup.identity.name)),
            Some(region),
            Vec::new(),
        )
        .await?;
        return Ok(ExitCode::SUCCESS);
    }
    let me = api
        .caller_identity()
        .await
        .context("the sandbox did not answer sts:GetCallerIdentity")?;
    let instances = api
        .list_instances(&[])
        .await
        .context("the sandbox did not list its instances")?;
    let online = instances.iter().filter(|i| i.is_connectable()).count();
    let mut text = format!(
        "# ssmtui demo: sandbox on {} signed in as {} ({}), {} instances ({online} online)\n",
        setup.sandbox.endpoint_url(),
        setup.identity.name,
        me.arn,
        instances.len(),
    );
    text.push_str(
        "# no terminal, so no UI; the sandbox serves ssmtui's subcommands, the AWS CLI and any AWS SDK with:\n",
    );
    text.push_str(&exports_text(setup.sandbox, setup.identity));
    text.push_str(
        "# for example: aws ec2 describe-instances; aws ssm describe-instance-information\n",
    );
    text.push_str("# serving until Ctrl-C\n");
    print_out(&text)?;
    stop.token().cancelled().await;
    Ok(ExitCode::SUCCESS)
}

/// `ssmtui demo --fleet`: the fleet sandbox, and the UI over all its accounts and regions.
fn run_fleet(
    ctx: &Context,
    args: &DemoArgs,
    who: &'static identity::Identity,
) -> anyhow::Result<ExitCode> {
    use crate::sandbox::fleet::{FleetSandboxConfig, RunningFleet, profile_name};
    let mut config = ctx.load_config()?.config;
    let runtime = server_runtime()?;
    runtime.block_on(async {
        let stop = Interrupts::watch()?;
        let fleet = RunningFleet::start(FleetSandboxConfig {
            accounts: usize::try_from(args.accounts).unwrap_or(3),
            regions: args.regions.clone(),
            base: SandboxConfig {
                seed: args.seed,
                instances: args.instances,
                pacing: args.agent_pacing,
                ..SandboxConfig::default()
            },
        })
        .await
        .context("cannot start the sandbox")?;
        let regions = fleet.regions();
        let factory = crate::sandbox::fleet::FleetSandboxFactory::new(
            fleet.endpoint_url(),
            regions.first().cloned().unwrap_or_default(),
            fleet.accounts(),
            who.name,
        );
        let sources: Vec<crate::fleet::Source> = (0..fleet.accounts())
            .map(profile_name)
            .flat_map(|p| {
                regions.iter().map(move |r| crate::fleet::Source {
                    profile: Some(p.clone()),
                    region: Some(r.clone()),
                })
            })
            .collect();
        config.aws = crate::config::AwsConfig::default();
        config.classes = demo_classes();
        config.fleet.aliases = (0..fleet.accounts())
            .map(|a| {
                (
                    identity::ACCOUNT_IDS[a].to_owned(),
                    identity::ACCOUNT_NAMES[a].to_owned(),
                )
            })
            .collect();
        let factory = std::sync::Arc::new(factory);
        let result = fleet_product(ctx, &config, &fleet, factory, sources, who, stop).await;
        fleet.shutdown().await;
        result
    })
}

/// The UI over the fleet on a terminal; otherwise a count per source, the profile file for
/// other tools, and serving until Ctrl-C.
async fn fleet_product(
    ctx: &Context,
    config: &Config,
    fleet: &crate::sandbox::fleet::RunningFleet,
    factory: std::sync::Arc<dyn crate::aws::factory::ApiFactory>,
    sources: Vec<crate::fleet::Source>,
    who: &identity::Identity,
    stop: Interrupts,
) -> anyhow::Result<ExitCode> {
    let first = sources.first().cloned().unwrap_or(crate::fleet::Source {
        profile: None,
        region: None,
    });
    let api = factory
        .build(first.profile.clone(), first.region.clone())
        .await
        .context("cannot set up the AWS clients for the sandbox")?;
    if super::tui::has_terminal() {
        let audit = crate::audit::AuditLog::from_config(&config.audit, &ctx.paths);
        let services = crate::tui::runtime::Services {
            api,
            factory,
            launcher: Some(std::sync::Arc::new(crate::tui::EngineLauncher::new(
                audit.clone(),
                super::tuning(config),
            ))),
            audit,
            tuning: super::tuning(config),
        };
        super::tui::run_app(ctx, config, services, first.profile, first.region, sources).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!(
        "# ssmtui demo --fleet: sandbox on {} signed in as {} in {} account(s) x {} region(s)\n",
        fleet.endpoint_url(),
        who.name,
        fleet.accounts(),
        fleet.regions().len()
    );
    for s in &sources {
        let api = factory.build(s.profile.clone(), s.region.clone()).await?;
        let count = api
            .list_instances(&[])
            .await
            .context("the sandbox did not list its instances")?
            .len();
        text.push_str(&format!("# {}: {count} instances\n", s.label()));
    }
    let (config_file, credentials_file) = fleet
        .write_profiles_in_temp(who.name)
        .context("cannot write the sandbox's AWS profile files")?;
    text.push_str("# no terminal, so no UI; for the AWS CLI and ssmtui's subcommands:\n");
    text.push_str(&format!(
        "export AWS_CONFIG_FILE='{}'\nexport AWS_SHARED_CREDENTIALS_FILE='{}'\n",
        config_file.display(),
        credentials_file.display()
    ));
    text.push_str("# serving until Ctrl-C\n");
    print_out(&text)?;
    stop.token().cancelled().await;
    Ok(ExitCode::SUCCESS)
}
