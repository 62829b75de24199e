//! `ssmtui sandbox`: run the loopback AWS emulation headless and print how to reach it.
//!
//! The binary's `main` is synchronous, so this subcommand builds its own tokio runtime. It
//! prints shell `export` lines first (flushed, so a parent process or a human can read them
//! at once), then serves until Ctrl-C or SIGTERM and exits 0.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::error::{ErrorKind, UserError};
use crate::output::print_out;
use crate::sandbox::{self, Sandbox, SandboxConfig, identity};

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
}

/// Starts the sandbox, prints the exports and serves until interrupted.
pub fn run(ctx: &Context, args: &SandboxArgs) -> anyhow::Result<ExitCode> {
    let Some(who) = identity::by_access_key(&args.identity) else {
        let names: Vec<&str> = identity::IDENTITIES.iter().map(|i| i.name).collect();
        return Err(UserError::new(
            ErrorKind::Usage,
            format!("unknown sandbox identity \"{}\"", args.identity),
        )
        .hint(format!("choose one of: {}", names.join(", ")))
        .into());
    };
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
        faults: sandbox::Faults::default(),
        region: ctx
            .global
            .region
            .clone()
            .unwrap_or_else(|| sandbox::DEFAULT_REGION.to_owned()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let running = Sandbox::start(config)
            .await
            .context("cannot start the sandbox")?;
        let mut text = format!(
            "# ssmtui sandbox on {} (seed {}, {} instances, region {}); identities: {}\n",
            running.endpoint_url(),
            args.seed,
            args.instances,
            running.state().region(),
            identity::summary()
        );
        for (k, v) in running.env_exports(who) {
            text.push_str(&format!("export {k}={}\n", shell_quote(&v)));
        }
        text.push_str("# serving until Ctrl-C or SIGTERM\n");
        print_out(&text)?;
        wait_for_stop().await?;
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_stop() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot listen for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
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
