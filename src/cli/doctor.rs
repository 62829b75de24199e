//! `ssmtui doctor`: check credentials, region, endpoints, the class documents, KMS and local
//! paths, and print each as pass/warn/fail with a hint. The checks live in [`crate::doctor`].

use std::process::ExitCode;

use super::Context;
use crate::config::{Config, Source, paths};
use crate::doctor::{self, ConfigState, HostCheck, Inputs};
use crate::output::print_out;

/// Check your setup and the account's Session Manager posture.
///
/// Checks the config file, the region, the credentials (STS), the ssm/ec2/ssmmessages
/// endpoints, every class's documents (Session type, run-as user, encrypted logging, KMS key,
/// idle timeout of at most 20 minutes, a maximum duration), the account preferences document
/// SSM-SessionManagerRunShell, GenerateDataKey on the documents' KMS keys, and whether the log
/// and audit paths are writable. Never starts a session.
///
/// Exit status: 0 when nothing failed (warnings allowed); 2 when the config or region failed,
/// 4 when the credentials failed, 1 for any other failure.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs `doctor`.
pub fn run(ctx: &Context, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let loaded = ctx.load_config();
    let defaults = Config::default();
    let (state, effective) = match &loaded {
        Ok(l) => {
            let source = match &l.source {
                Source::File(p) => format!("\"{}\" is valid", p.display()),
                Source::Defaults { looked_for } => format!(
                    "no config file at \"{}\"; using built-in defaults",
                    looked_for.display()
                ),
            };
            let source = if l.drop_ins.is_empty() {
                source
            } else {
                format!("{source} (with {} config.d drop-ins)", l.drop_ins.len())
            };
            (
                ConfigState::Loaded {
                    config: &l.config,
                    source,
                },
                &l.config,
            )
        }
        Err(e) => (
            ConfigState::Invalid {
                error: e.to_string(),
                hint: crate::report::classify(e).hints.into_iter().next(),
            },
            &defaults,
        ),
    };
    // Even with a broken file, flags and environment still choose profile and region.
    let mut effective = effective.clone();
    if loaded.is_err() {
        effective.aws.profile.clone_from(&ctx.global.profile);
        effective.aws.region.clone_from(&ctx.global.region);
    }
    let audit_file = effective
        .audit
        .path
        .as_deref()
        .map_or_else(|| ctx.paths.default_audit_file(), paths::expand_home);
    let _log = super::start_logging(ctx);
    let runtime = super::runtime()?;
    let report = runtime.block_on(async {
        let located = super::aws_api_located(&effective).await;
        let region = match &located {
            Ok((_, loc)) => Ok(loc.region.clone()),
            Err(e) => Err(e.to_string()),
        };
        let ssmmessages = match &region {
            Ok(r) => ssmmessages_check(&effective, r).await,
            Err(_) => HostCheck::Overridden,
        };
        let inputs = Inputs {
            config: state,
            effective: &effective,
            region,
            ssmmessages,
            log_dir: ctx.paths.log_dir(),
            audit_file,
        };
        let api = located.as_ref().ok().map(|(api, _)| api.as_ref());
        doctor::run(api, &inputs).await
    });
    if args.json {
        let json = serde_json::json!({
            "checks": report.checks,
            "pass": report.count(doctor::Status::Pass),
            "warn": report.count(doctor::Status::Warn),
            "fail": report.count(doctor::Status::Fail),
        });
        print_out(&format!("{}\n", serde_json::to_string_pretty(&json)?))?;
    } else {
        print_out(&report.text())?;
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// Resolves the regional ssmmessages host, unless endpoints are overridden (then the
/// data-channel host is whatever StartSession's StreamUrl says, and doctor starts no sessions).
async fn ssmmessages_check(config: &Config, region: &str) -> HostCheck {
    let overridden = config.aws.endpoint_url.is_some()
        || config.aws.endpoints.ssm.is_some()
        || [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_SSM",
            "AWS_ENDPOINT_URL_SSMMESSAGES",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    if overridden {
        return HostCheck::Overridden;
    }
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    let host = format!("ssmmessages.{region}.{suffix}");
    let lookup = tokio::net::lookup_host((host.clone(), 443));
    match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
        Ok(Ok(addrs)) => match addrs.count() {
            0 => HostCheck::Unresolvable {
                host,
                error: "no addresses".to_owned(),
            },
            _ => HostCheck::Resolved { host },
        },
        Ok(Err(e)) => HostCheck::Unresolvable {
            host,
            error: e.to_string(),
        },
        Err(_) => HostCheck::Unresolvable {
            host,
            error: "DNS timed out after 5 s".to_owned(),
        },
    }
}
