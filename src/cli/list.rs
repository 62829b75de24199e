//! `ssmtui list [FILTER…]`: the instances you can see, as a table or JSON.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::Context;
use crate::aws::Instance;
use crate::output::print_out;
use crate::resolve::TargetSpec;

/// List instances with their SSM agent status.
///
/// FILTER uses the `connect` syntax: an instance id, a Name tag value, or key=value tag filters.
/// Without a filter, every instance in the region is listed (running and stopped).
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Instance id, Name tag value, or key=value tag filters (an alias also works); with a
    /// fleet, account=ID|ALIAS and region=NAME narrow where to list
    pub filter: Vec<String>,
    #[command(flatten)]
    pub fleet: super::target::FleetArgs,
}

/// A row of a fleet listing: the instance and where it lives.
#[derive(Debug, serde::Serialize)]
struct FleetRow<'a> {
    #[serde(flatten)]
    instance: &'a Instance,
    profile: Option<&'a str>,
    account: Option<&'a str>,
    account_alias: Option<&'a str>,
    region: Option<&'a str>,
}

/// Runs `list`.
pub fn run(ctx: &Context, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let mut config = ctx.load_config()?.config;
    let (text, place) = match args.filter.is_empty() {
        true => (String::new(), crate::fleet::Place::default()),
        false => {
            crate::fleet::split_place(&super::expand_alias(&mut config, &args.filter.join(" ")))
        }
    };
    let spec = match text.trim().is_empty() {
        true => None,
        false => Some(TargetSpec::parse(&text)?),
    };
    let _log = super::start_logging(ctx);
    let runtime = super::runtime()?;
    let sources = match args.fleet.sources(&ctx.global, &config)? {
        Some(sources) => Some(sources),
        None if !place.is_empty() => Some(vec![crate::fleet::Source {
            profile: config.aws.profile.clone(),
            region: place.region.clone().or_else(|| config.aws.region.clone()),
        }]),
        None => None,
    };
    if let Some(sources) = sources {
        return runtime.block_on(fleet(&config, args, spec.as_ref(), &place, &sources));
    }
    let instances = runtime.block_on(async {
        let api = super::aws_api(&config).await?;
        let filters = spec
            .as_ref()
            .map(TargetSpec::server_filters)
            .unwrap_or_default();
        let all = api.list_instances(&filters).await?;
        Ok::<_, anyhow::Error>(match &spec {
            Some(s) => all.into_iter().filter(|i| s.matches(i)).collect::<Vec<_>>(),
            None => all,
        })
    })?;
    if args.json {
        print_out(&format!("{}\n", serde_json::to_string_pretty(&instances)?))?;
    } else {
        print_out(&table(&instances, &config.ui.columns))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `list` over several (profile, region) pairs: every pair's rows with where they live; a pair
/// that fails is one line on stderr with its reason and hint, and the others still list.
async fn fleet(
    config: &crate::config::Config,
    args: &ListArgs,
    spec: Option<&TargetSpec>,
    place: &crate::fleet::Place,
    sources: &[crate::fleet::Source],
) -> anyhow::Result<ExitCode> {
    use crate::error::Classify as _;
    if sources.is_empty() {
        return Err(crate::error::UserError::new(
            crate::error::ErrorKind::Usage,
            "no profile matches the fleet's profiles",
        )
        .hint("the names and globs are matched against the profiles of ~/.aws/config (or AWS_CONFIG_FILE)")
        .into());
    }
    let filters = spec.map(TargetSpec::server_filters).unwrap_or_default();
    let listed = crate::fleet::list(&config.aws, sources, &filters).await;
    let mut rows = Vec::new();
    let mut failed = 0usize;
    let mut considered = 0usize;
    let mut first_error = None;
    for l in &listed {
        let alias = l.account.as_ref().and_then(|a| config.fleet.aliases.get(a));
        if !place.admits(
            l.account.as_deref(),
            alias.map(String::as_str),
            l.region.as_deref(),
        ) {
            continue;
        }
        considered += 1;
        match &l.result {
            Ok(instances) => {
                for i in instances
                    .iter()
                    .filter(|i| spec.is_none_or(|s| s.matches(i)))
                {
                    rows.push(FleetRow {
                        instance: i,
                        profile: l.source.profile.as_deref(),
                        account: l.account.as_deref(),
                        account_alias: l
                            .account
                            .as_ref()
                            .and_then(|a| config.fleet.aliases.get(a))
                            .map(String::as_str),
                        region: l.region.as_deref(),
                    });
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("ssmtui: {}: {e}", l.source.label());
                for hint in e.classified().hints {
                    eprintln!("  hint: {hint}");
                }
                first_error.get_or_insert(e);
            }
        }
    }
    if failed == considered
        && let Some(e) = first_error
    {
        return Err(crate::error::UserError::new(
            e.kind(),
            format!("no profile of the fleet could be listed ({failed} failed)"),
        )
        .hint("each failure is above, with what to do")
        .into());
    }
    if args.json {
        print_out(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
    } else {
        let dash = || "-".to_owned();
        let mut out = table(
            &rows.iter().map(|r| r.instance.clone()).collect::<Vec<_>>(),
            &config.ui.columns,
        );
        // Where each row lives, in front.
        let mut lines = out.lines().map(str::to_owned).collect::<Vec<_>>();
        let places: Vec<[String; 3]> = std::iter::once([
            "PROFILE".to_owned(),
            "ACCOUNT".to_owned(),
            "REGION".to_owned(),
        ])
        .chain(rows.iter().map(|r| {
            [
                r.profile.map_or_else(dash, str::to_owned),
                r.account_alias
                    .or(r.account)
                    .map_or_else(dash, str::to_owned),
                r.region.map_or_else(dash, str::to_owned),
            ]
        }))
        .collect();
        let widths: Vec<usize> = (0..3)
            .map(|c| {
                places
                    .iter()
                    .map(|p| p[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (line, place) in lines.iter_mut().zip(&places) {
            let prefix: Vec<String> = place
                .iter()
                .zip(&widths)
                .map(|(p, w)| format!("{p:<w$}"))
                .collect();
            *line = format!("{}  {line}", prefix.join("  "));
        }
        out = lines.join("\n");
        out.push('\n');
        print_out(&out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A plain aligned table: id, Name, state, ping, platform, private IP, then tag columns.
pub fn table(instances: &[Instance], tag_columns: &[String]) -> String {
    let mut header: Vec<String> = ["ID", "NAME", "STATE", "PING", "PLATFORM", "IP"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    header.extend(tag_columns.iter().map(|c| c.to_uppercase()));
    let dash = || "-".to_owned();
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            let mut row = vec![
                i.id.clone(),
                i.name.clone().unwrap_or_else(dash),
                i.state.clone(),
                i.ping.clone().unwrap_or_else(dash),
                i.platform.clone().unwrap_or_else(dash),
                i.private_ip.clone().unwrap_or_else(dash),
            ];
            row.extend(
                tag_columns
                    .iter()
                    .map(|c| i.tags.get(c).cloned().unwrap_or_else(dash)),
            );
            row
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .chain(std::iter::once(header.get(c).map_or(0, String::len)))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}
