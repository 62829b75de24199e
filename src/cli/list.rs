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
    /// Instance id, Name tag value, or key=value tag filters (an alias also works)
    pub filter: Vec<String>,
}

/// Runs `list`.
pub fn run(ctx: &Context, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let mut config = ctx.load_config()?.config;
    let spec = match args.filter.is_empty() {
        true => None,
        false => {
            let text = super::expand_alias(&mut config, &args.filter.join(" "));
            Some(TargetSpec::parse(&text)?)
        }
    };
    let _log = super::start_logging(ctx);
    let runtime = super::runtime()?;
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
