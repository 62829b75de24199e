//! `ssmtui bench` (hidden): the benchmark harness of [`crate::bench`], one command for every
//! performance goal.
//!
//! A hidden subcommand rather than a `benches/` target: it reuses the binary cargo already
//! built (release for `cargo run --release -- bench`, debug for CI's `--quick` smoke run),
//! where a bench target would link a second binary with the whole AWS SDK.
//!
//! Each group runs in a child process of its own (`bench --child --only GROUP`, printing its
//! results as JSON on stdout), so RSS figures start from a fresh heap and one group's load
//! does not linger into the next. The parent merges them, prints the table and writes the
//! JSON report.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context as _;

use crate::bench::{self, Group, Results, Sizes, Skipped};
use crate::output::print_out;

/// Measure every performance goal side by side with its baseline (prints a table, writes JSON)
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Small sizes for a smoke run (well under a minute even in a debug build)
    #[arg(long)]
    pub quick: bool,
    /// Where to write the JSON report [default: target/bench/latest.json]
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Run only these groups
    #[arg(long, value_enum, num_args = 1.., value_name = "GROUP")]
    pub only: Vec<Group>,
    /// Internal: run the groups in this process and print their results as JSON
    #[arg(long, hide = true)]
    pub child: bool,
    /// Internal: be the sources and sink of the memory group's forwards, BYTES each
    #[arg(long, hide = true, value_name = "BYTES")]
    pub traffic: Option<u64>,
}

/// Runs the benchmark.
pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let sizes = Sizes { quick: args.quick };
    let mut groups: Vec<Group> = if args.only.is_empty() {
        Group::ALL.to_vec()
    } else {
        args.only.clone()
    };
    groups.sort();
    groups.dedup();

    if let Some(bytes) = args.traffic {
        bench::traffic::serve(bytes)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.child {
        let results = bench::run_in_process(&groups, sizes);
        print_out(&serde_json::to_string(&results)?)?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut results = Results::default();
    let mut failed = false;
    for &group in &groups {
        eprintln!("ssmtui bench: {} …", group.name());
        match run_child(group, sizes) {
            Ok(mut part) => {
                failed |= part.figures.is_empty();
                results.figures.append(&mut part.figures);
                results.skipped.append(&mut part.skipped);
            }
            Err(e) => {
                failed = true;
                results.skipped.push(Skipped {
                    group: group.name().to_owned(),
                    reason: format!("{e:#}"),
                });
            }
        }
    }
    let report = bench::report(results, sizes);
    let path = args
        .json
        .clone()
        .unwrap_or_else(|| PathBuf::from("target").join("bench").join("latest.json"));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut text = bench::table(&report);
    text.push_str(&format!("\nJSON: {}\n", path.display()));
    print_out(&text)?;
    // A group without a single figure means the harness is broken (CI must notice); a part
    // that could not be measured is reported above but is not a failure.
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs one group in a fresh child process of this binary.
fn run_child(group: Group, sizes: Sizes) -> anyhow::Result<Results> {
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "--child", "--only", group.name()]);
    if sizes.quick {
        cmd.arg("--quick");
    }
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start the benchmark child process")?;
    anyhow::ensure!(
        out.status.success(),
        "the benchmark child process failed ({})",
        out.status
    );
    serde_json::from_slice(&out.stdout).context("the benchmark child printed no results")
}
