//! `ssmtui sandbox`: run the loopback AWS emulation headless and print how to reach it.
//!
//! The binary's `main` is synchronous, so this subcommand builds its own tokio runtime. It
//! prints shell `export` lines first (flushed, so a parent process or a human can read them
//! at once), then serves until Ctrl-C or SIGTERM and exits 0. `--faults` is parsed before
//! anything starts, so a typo is a usage error (exit 2) with the syntax as a hint.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::error::{ErrorKind, UserError};
use crate::output::print_out;
use crate::sandbox::fleet::{FleetSandboxConfig, RunningFleet};
use crate::sandbox::{self, AgentPacing, Faults, RunningSandbox, Sandbox, SandboxConfig, identity};
use crate::signals::Interrupts;

/// Run an emulated AWS account on loopback for trying ssmtui, the AWS CLI or any AWS SDK.
///
/// Prints `export` lines that point AWS tools at it (paste them into another shell), then
/// serves EC2, SSM, STS and KMS until Ctrl-C or SIGTERM. Nothing leaves this machine and no
/// AWS account is used.
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on; port 0 picks a free port
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Seed of the generated world (same seed, same instances)
    #[arg(long, value_name = "N", default_value_t = sandbox::DEFAULT_SEED)]
    pub seed: u64,
    /// Number of instances in the world
    #[arg(long, value_name = "N", default_value_t = sandbox::DEFAULT_INSTANCES)]
    pub instances: usize,
    /// Identity the printed credentials select: alice (sudo), bob (no-sudo) or eve (no access)
    #[arg(long = "as", value_name = "NAME", default_value = "alice")]
    pub identity: String,
    /// Inject faults, e.g. drop-every=200,dup=0.02,reorder=0.02 (syntax in the README)
    #[arg(long, value_name = "SPEC")]
    pub faults: Option<String>,
    /// How fast the agent sends: "real" like amazon-ssm-agent (1 KiB per message, 1 ms
    /// apart: about 0.6 MB/s per session), or "off" as fast as it can
    #[arg(long, value_name = "real|off", default_value = "real", value_parser = parse_pacing)]
    pub agent_pacing: AgentPacing,
    /// Serve HTTPS and wss:// with a certificate from a CA kept in the state directory
    /// (reused across runs); the exports then include AWS_CA_BUNDLE
    #[arg(long)]
    pub tls: bool,
    /// How long the temporary credentials of STS AssumeRole last, in seconds (an identity may
    /// assume arn:aws:iam::123456789012:role/NAME, its own role)
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub credential_ttl: u64,
    /// Serve several accounts (up to 6), each with its own world, behind one endpoint, and
    /// print an AWS config with one profile per account (sandbox-prod, sandbox-dev, …)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=6))]
    pub accounts: u64,
    /// Serve these regions in every account, each with its own world (comma-separated)
    #[arg(long, value_name = "R1,R2", value_delimiter = ',')]
    pub regions: Vec<String>,
}

/// Where `--tls` keeps the sandbox's CA.
pub(crate) fn tls_dir(ctx: &Context) -> std::path::PathBuf {
    ctx.paths.state_dir.join("sandbox-ca")
}

/// Parses `--agent-pacing`.
pub(crate) fn parse_pacing(text: &str) -> Result<AgentPacing, String> {
    match text {
        "real" => Ok(AgentPacing::Real),
        "off" => Ok(AgentPacing::Off),
        _ => Err(format!("\"{text}\" is neither real nor off")),
    }
}

/// The `--faults` syntax, for hints.
pub(crate) const FAULTS_SYNTAX: &str = "a comma-separated list of: drop-every=N (or =2s, =500ms), close-every=30s (or =500ms), corrupt-every=N, dup=P, reorder=P, delay-ms=A-B, stall-acks-ms=N, api-latency-ms=N, restart-agent-every=N, expire-tokens, token-ttl-ms=N, connection-lost=INSTANCE, withhold-handshake, seed=N";

/// The identity named by `--as`, or a usage error listing the names.
pub(crate) fn identity_arg(name: &str) -> anyhow::Result<&'static identity::Identity> {
    identity::by_access_key(name).ok_or_else(|| {
        let names: Vec<&str> = identity::IDENTITIES.iter().map(|i| i.name).collect();
        UserError::new(
            ErrorKind::Usage,
            format!("unknown sandbox identity \"{name}\""),
        )
        .hint(format!("choose one of: {}", names.join(", ")))
        .into()
    })
}

/// Parses `--faults`, or a usage error with the syntax.
pub(crate) fn faults_arg(spec: Option<&str>) -> anyhow::Result<Faults> {
    let Some(spec) = spec else {
        return Ok(Faults::default());
    };
    Faults::parse(spec).map_err(|e| {
        UserError::new(ErrorKind::Usage, format!("bad --faults spec: {e}"))
            .hint(format!("--faults takes {FAULTS_SYNTAX}"))
            .into()
    })
}

/// The `export` lines for `who`, and comments on what is where.
pub(crate) fn exports_text(running: &RunningSandbox, who: &identity::Identity) -> String {
    let mut text = String::new();
    for (k, v) in running.env_exports(who) {
        text.push_str(&format!("export {k}={}\n", shell_quote(&v)));
    }
    text.push_str(&format!(
        "# session transcripts (the S3 bucket stand-in): {}\n",
        running.state().data_paths().bucket.display()
    ));
    text
}

/// Starts the sandbox, prints the exports and serves until interrupted.
pub fn run(ctx: &Context, args: &SandboxArgs) -> anyhow::Result<ExitCode> {
    let who = identity_arg(&args.identity)?;
    let faults = faults_arg(args.faults.as_deref())?;
    if !args.listen.ip().is_loopback() {
        return Err(UserError::new(
            ErrorKind::Usage,
            format!(
                "the sandbox listens on loopback only, not \"{}\"",
                args.listen
            ),
        )
        .hint("use an address such as 127.0.0.1:0")
        .into());
    }
    let config = SandboxConfig {
        listen: args.listen,
        seed: args.seed,
        instances: args.instances,
        world_file: None,
        bucket_dir: None,
        homes_dir: None,
        faults,
        pacing: args.agent_pacing,
        tls_dir: args.tls.then(|| tls_dir(ctx)),
        account: 0,
        region: ctx
            .global
            .region
            .clone()
            .unwrap_or_else(|| sandbox::DEFAULT_REGION.to_owned()),
    };
    if args.accounts > 1 || !args.regions.is_empty() {
        return run_fleet(args, config, who);
    }
    let runtime = super::server_runtime()?;
    runtime.block_on(async {
        // Before telling anyone we are ready: a quick SIGTERM must find the handler there.
        let stop = Interrupts::watch()?;
        let running = Sandbox::start(config)
            .await
            .context("cannot start the sandbox")?;
        running
            .state()
            .set_credential_ttl(std::time::Duration::from_secs(args.credential_ttl));
        let mut text = format!(
            "# ssmtui sandbox on {} (seed {}, {} instances, region {}); identities: {}\n",
            running.endpoint_url(),
            args.seed,
            args.instances,
            running.state().region(),
            identity::summary()
        );
        text.push_str(&exports_text(&running, who));
        if let Some(spec) = &args.faults {
            text.push_str(&format!("# injecting faults: {spec}\n"));
        }
        text.push_str("# serving until Ctrl-C or SIGTERM\n");
        print_out(&text)?;
        stop.token().cancelled().await;
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `--accounts`/`--regions`: the fleet sandbox, with a profile file to use it.
fn run_fleet(
    args: &SandboxArgs,
    base: SandboxConfig,
    who: &identity::Identity,
) -> anyhow::Result<ExitCode> {
    let runtime = super::server_runtime()?;
    runtime.block_on(async {
        let stop = Interrupts::watch()?;
        let fleet = RunningFleet::start(FleetSandboxConfig {
            accounts: usize::try_from(args.accounts).unwrap_or(1),
            regions: args.regions.clone(),
            base,
        })
        .await
        .context("cannot start the sandbox")?;
        for m in fleet.members() {
            m.sandbox
                .state()
                .set_credential_ttl(std::time::Duration::from_secs(args.credential_ttl));
        }
        let (config_file, credentials_file) = fleet
            .write_profiles_in_temp(who.name)
            .context("cannot write the sandbox's AWS profile files")?;
        print_out(&fleet_text(
            &fleet,
            args,
            who,
            &config_file,
            &credentials_file,
        ))?;
        stop.token().cancelled().await;
        fleet.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// What `ssmtui sandbox --accounts/--regions` prints: where it is, the accounts, the exports
/// and the `[fleet]` section for ssmtui's config.
fn fleet_text(
    fleet: &RunningFleet,
    args: &SandboxArgs,
    who: &identity::Identity,
    config_file: &std::path::Path,
    credentials_file: &std::path::Path,
) -> String {
    let regions = fleet.regions();
    let mut text = format!(
        "# ssmtui fleet sandbox on {}: {} account(s) x {} region(s) ({}), {} instances each, seed {}\n",
        fleet.endpoint_url(),
        fleet.accounts(),
        regions.len(),
        regions.join(", "),
        args.instances,
        args.seed
    );
    for account in 0..fleet.accounts() {
        let people: Vec<String> = identity::ACCOUNTS[account]
            .iter()
            .map(|i| format!("{} ({})", i.name, i.describe()))
            .collect();
        text.push_str(&format!(
            "# profile {} = account {} \"{}\": {}\n",
            sandbox::fleet::profile_name(account),
            identity::ACCOUNT_IDS[account],
            identity::ACCOUNT_NAMES[account],
            people.join(", ")
        ));
    }
    text.push_str(&format!("# the profiles sign in as {}\n", who.name));
    for (k, v) in [
        ("AWS_CONFIG_FILE", config_file.display().to_string()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            credentials_file.display().to_string(),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ] {
        text.push_str(&format!("export {k}={}\n", shell_quote(&v)));
    }
    text.push_str(
        "# then: ssmtui list --profiles 'sandbox-*' --regions REGIONS, or this in ssmtui's config.toml:\n",
    );
    for line in fleet.fleet_toml().lines() {
        match line.is_empty() {
            true => text.push_str("#\n"),
            false => text.push_str(&format!("#   {line}\n")),
        }
    }
    text.push_str("# serving until Ctrl-C or SIGTERM\n");
    text
}

/// Quotes a value for POSIX shells (single quotes; an embedded `'` becomes `'\''`).
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("http://127.0.0.1:1"), "'http://127.0.0.1:1'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
