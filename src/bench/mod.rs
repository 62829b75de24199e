//! The benchmark harness behind the hidden `ssmtui bench` subcommand: every performance goal
//! measured side by side with its baseline in one run on this machine, never as a timed test.
//!
//! It lives in the library and runs through the normal binary, so `cargo run --release -- bench`
//! reuses the release build and CI's `cargo run -- bench --quick` reuses the debug build it
//! already has; a `benches/` target would link a second binary with the whole AWS SDK.
//!
//! Groups ([`Group`]): [`codec`] (frame codec and in-memory sessions), [`forward`] (one forward
//! through the sandbox vs a bare websocket relay vs raw TCP; client CPU; 64-connection
//! fairness), [`shell`] (keystroke echo vs a local pty; connect to first prompt),
//! [`inventory`] (10 000 instances: list, filter, render, RSS) and memory (peak RSS with
//! 10 000 instances loaded and 8 busy forwards, also in [`inventory`]).
//!
//! Everything runs on loopback with port 0. Whenever a figure is about *our* CPU or memory the
//! sandbox runs as a child process ([`ChildSandbox`]), so its work is not counted; source and
//! sink endpoints run on a separate runtime whose threads are named [`IO_THREAD`] and are
//! subtracted from the process CPU time ([`sys`]). The `ssmtui bench` command runs each group in
//! a fresh child process of its own so one group's heap does not inflate the next one's RSS.

pub mod codec;
pub mod copy;
pub mod forward;
pub mod inventory;
pub mod paced;
pub mod shell;
pub mod sys;
pub mod traffic;

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::access::Who;
use crate::aws::SsmApi;
use crate::aws::sdk::SdkApi;
use crate::config::AwsConfig;
use crate::launch::Launcher;
use crate::secret::Secret;

/// Name prefix of the threads that play the far side (sources, sinks, relay server): their
/// CPU time is not the client's.
pub const IO_THREAD: &str = "bench-io";

/// A group of figures, selectable with `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// Frame codec and in-memory client↔agent transfer.
    Codec,
    /// Port forwarding throughput, CPU and fairness.
    Forward,
    /// Keystroke echo and connect-to-prompt.
    Shell,
    /// 10 000 instances: list, filter, render, RSS.
    Inventory,
    /// Peak RSS with 10 000 instances and 8 busy forwards.
    Memory,
    /// `ssmtui cp` both ways against an agent paced like the real one.
    Copy,
    /// CPU per message and throughput at the real agent's cadence.
    Paced,
}

impl Group {
    /// Every group, in report order.
    pub const ALL: [Group; 7] = [
        Group::Codec,
        Group::Forward,
        Group::Shell,
        Group::Inventory,
        Group::Memory,
        Group::Copy,
        Group::Paced,
    ];

    /// The lower-case name (`--only` value, JSON).
    pub fn name(self) -> &'static str {
        match self {
            Self::Codec => "codec",
            Self::Forward => "forward",
            Self::Shell => "shell",
            Self::Inventory => "inventory",
            Self::Memory => "memory",
            Self::Copy => "copy",
            Self::Paced => "paced",
        }
    }
}

/// What a baseline figure is and its value (same unit as the figure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// What it measures.
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Group name.
    pub group: String,
    /// Short identifier, e.g. `forward.throughput`.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// What it is compared with, measured in the same run.
    pub baseline: Option<Baseline>,
    /// `value / baseline`.
    pub ratio: Option<f64>,
    /// The goal from the issues, as text (e.g. "≥ 0.5 × relay"), if any.
    pub goal: Option<String>,
    /// Sizes, sample counts, caveats.
    pub note: Option<String>,
}

impl Figure {
    /// A figure without a baseline.
    pub fn new(group: Group, name: &str, value: f64, unit: &str) -> Self {
        Self {
            group: group.name().to_owned(),
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            baseline: None,
            ratio: None,
            goal: None,
            note: None,
        }
    }

    /// Adds a baseline and computes the ratio.
    pub fn vs(mut self, name: &str, value: f64) -> Self {
        self.ratio = (value != 0.0).then(|| self.value / value);
        self.baseline = Some(Baseline {
            name: name.to_owned(),
            value,
        });
        self
    }

    /// Adds the goal.
    pub fn goal(mut self, goal: &str) -> Self {
        self.goal = Some(goal.to_owned());
        self
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// A group that could not be measured, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Group name.
    pub group: String,
    /// Why.
    pub reason: String,
}

/// Figures and failures of one or more groups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Every figure.
    pub figures: Vec<Figure>,
    /// Groups or parts that did not run.
    pub skipped: Vec<Skipped>,
}

/// The machine the figures come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    /// `std::thread::available_parallelism`.
    pub cores: usize,
    /// MemTotal from /proc/meminfo, in MiB (0 if unknown).
    pub memory_mib: u64,
    /// `model name` from /proc/cpuinfo, if any.
    pub cpu: Option<String>,
    /// `std::env::consts::OS` / `ARCH`.
    pub os: String,
}

impl Machine {
    /// This machine.
    pub fn detect() -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mib: sys::mem_total_kib().map_or(0, |k| k / 1024),
            cpu: sys::cpu_model(),
            os: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// The whole run, as written to the JSON file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `git rev-parse HEAD`, or "unknown".
    pub commit: String,
    /// UTC, RFC 3339.
    pub date: String,
    /// "quick" or "full".
    pub mode: String,
    /// "debug" or "release" (`cfg!(debug_assertions)`).
    pub profile: String,
    /// Where it ran.
    pub machine: Machine,
    /// The figures and what was skipped.
    #[serde(flatten)]
    pub results: Results,
}

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// `--quick`.
    pub quick: bool,
}

impl Sizes {
    /// Pick `quick` or `full`.
    pub fn pick<T>(self, quick: T, full: T) -> T {
        if self.quick { quick } else { full }
    }

    /// Instances in the inventory and memory groups.
    pub fn instances(self) -> usize {
        self.pick(1_000, 10_000)
    }
}

/// Runs `groups` in this process, on two runtimes: the client one (whose threads and the
/// calling thread are "ours"; the TUI's own runtime for the inventory and memory groups) and
/// the [`IO_THREAD`] one for far-side endpoints.
pub fn run_in_process(groups: &[Group], sizes: Sizes) -> Results {
    let mut results = Results::default();
    let runtimes = match Runtimes::new() {
        Ok(r) => r,
        Err(e) => {
            for g in groups {
                results.skipped.push(Skipped {
                    group: g.name().to_owned(),
                    reason: format!("cannot start the runtimes: {e:#}"),
                });
            }
            return results;
        }
    };
    for &group in groups {
        let io = runtimes.io.handle().clone();
        // The inventory and memory groups measure what the TUI does, on the TUI's own
        // runtime: its threads decide how many allocator arenas hold the forwards' memory,
        // and so the memory figure.
        let runtime = if matches!(group, Group::Inventory | Group::Memory) {
            &runtimes.tui
        } else {
            &runtimes.client
        };
        let outcome = runtime.block_on(async move {
            match group {
                Group::Codec => codec::run(sizes),
                Group::Forward => forward::run(sizes, &io).await,
                Group::Shell => shell::run(sizes).await,
                Group::Inventory => inventory::run_inventory(sizes).await,
                Group::Memory => inventory::run_memory(sizes).await,
                Group::Copy => copy::run(sizes).await,
                Group::Paced => paced::run(sizes, &io).await,
            }
        });
        match outcome {
            Ok(mut part) => {
                results.figures.append(&mut part.figures);
                results.skipped.append(&mut part.skipped);
            }
            Err(e) => results.skipped.push(Skipped {
                group: group.name().to_owned(),
                reason: format!("{e:#}"),
            }),
        }
    }
    let _ = std::fs::remove_file(scratch_audit_log().path());
    results
}

/// What the benchmarks start sessions with: the product's own path ([`Launcher`]), as the
/// sandbox's caller, recorded in [`scratch_audit_log`].
pub(crate) async fn launcher(api: &Arc<dyn SsmApi>) -> anyhow::Result<Launcher> {
    Ok(Launcher {
        api: Arc::clone(api),
        audit: scratch_audit_log(),
        who: Who {
            identity: api.caller_identity().await?,
            class: None,
            profile: None,
            region: None,
        },
        tuning: crate::engine::SessionTuning::default(),
    })
}

/// A KMS-encrypted `SSM-sudo` shell session to `target`, started the product's way, and its
/// data channel (the caller opens it and finishes the session).
pub(crate) async fn start_shell(
    launcher: &Launcher,
    target: &str,
) -> anyhow::Result<(
    crate::engine::started::StartedSession,
    crate::aws::SessionTarget,
)> {
    let mut session = launcher
        .start(&crate::launch::Plan {
            kind: crate::audit::SessionKind::Shell,
            instance: crate::aws::Instance {
                id: target.to_owned(),
                ..crate::aws::Instance::default()
            },
            document: "SSM-sudo".to_owned(),
            parameters: Default::default(),
            reason: None,
        })
        .await?;
    let data_channel = session
        .take_target()
        .context("the session had no data channel")?;
    Ok((session, data_channel))
}

/// Where the benchmarks' sessions are recorded: they start sessions the product's way, audit
/// line included, into a file of this process that the run removes at the end.
pub(crate) fn scratch_audit_log() -> crate::audit::AuditLog {
    let path =
        std::env::temp_dir().join(format!("ssmtui-bench-audit-{}.jsonl", std::process::id()));
    crate::audit::AuditLog::new(path, 16 * 1024 * 1024, 0)
}

struct Runtimes {
    client: tokio::runtime::Runtime,
    io: tokio::runtime::Runtime,
    /// The TUI's runtime ([`crate::engine::runtime::runtime`]), for the inventory and
    /// memory groups.
    tui: tokio::runtime::Runtime,
}

impl Runtimes {
    fn new() -> anyhow::Result<Self> {
        // Two workers each, like `ssmtui sandbox`: the client should not get more threads
        // than it would have on a laptop, and the far side must not starve it.
        let client = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-client")
            .enable_all()
            .build()?;
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(IO_THREAD)
            .enable_all()
            .build()?;
        Ok(Self {
            client,
            io,
            tui: crate::engine::runtime::runtime()?,
        })
    }
}

/// Builds the report around `results`.
pub fn report(results: Results, sizes: Sizes) -> Report {
    Report {
        commit: git_commit(),
        date: now_rfc3339(),
        mode: sizes.pick("quick", "full").to_owned(),
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .to_owned(),
        machine: Machine::detect(),
        results,
    }
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Formats a number with about four significant digits.
fn num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// The human table: figure, value, unit, baseline, ratio, goal; then what was skipped.
pub fn table(report: &Report) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "figure".into(),
        "value".into(),
        "unit".into(),
        "baseline".into(),
        "ratio".into(),
        "goal".into(),
    ]];
    for f in &report.results.figures {
        rows.push([
            f.name.clone(),
            num(f.value),
            f.unit.clone(),
            f.baseline
                .as_ref()
                .map(|b| format!("{} ({})", num(b.value), b.name))
                .unwrap_or_default(),
            f.ratio.map(|r| format!("{r:.3}")).unwrap_or_default(),
            f.goal.clone().unwrap_or_default(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "ssmtui bench: {} build, {} mode, commit {}, {} cores, {} MiB, {}\n\n",
        report.profile,
        report.mode,
        report.commit.get(..12).unwrap_or(&report.commit),
        report.machine.cores,
        report.machine.memory_mib,
        report.date
    );
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            // Numbers right-aligned, text left-aligned.
            if i == 1 || i == 4 {
                let _ = write!(line, "{cell:>w$}  ");
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let notes: Vec<&Figure> = report
        .results
        .figures
        .iter()
        .filter(|f| f.note.is_some())
        .collect();
    if !notes.is_empty() {
        out.push_str("\nnotes:\n");
        for f in notes {
            let _ = writeln!(out, "  {}: {}", f.name, f.note.as_deref().unwrap_or(""));
        }
    }
    if !report.results.skipped.is_empty() {
        out.push_str("\nnot measured:\n");
        for s in &report.results.skipped {
            let _ = writeln!(out, "  {}: {}", s.group, s.reason);
        }
    }
    out
}

/// Percentile (nearest rank) of `samples`, which it sorts; 0 when empty.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples
        .get(rank.saturating_sub(1).min(samples.len() - 1))
        .copied()
        .unwrap_or(0.0)
}

/// Mebibytes per second for `bytes` in `elapsed`.
pub fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-9)
}

/// Milliseconds as f64.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `ssmtui sandbox` running as a child process, so its CPU time and memory are not ours.
/// Stopped with SIGTERM (it then ends its shells) when dropped.
pub struct ChildSandbox {
    child: Child,
    /// `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret: String,
    /// `AWS_REGION`.
    pub region: String,
}

impl ChildSandbox {
    /// Starts `current_exe sandbox --instances N --agent-pacing off` (the client's own
    /// ceiling: a real agent would set the pace) and reads its `export` lines.
    pub fn start(instances: usize) -> anyhow::Result<Self> {
        Self::start_paced(instances, "off")
    }

    /// [`Self::start`] with the agent's pacing `real` or `off`.
    pub fn start_paced(instances: usize, pacing: &str) -> anyhow::Result<Self> {
        Self::start_with(instances, pacing, None)
    }

    /// [`Self::start_paced`] with `--faults` (e.g. `delay-ms=80-120` for a long link).
    pub fn start_with(
        instances: usize,
        pacing: &str,
        faults: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            "sandbox".to_owned(),
            "--instances".to_owned(),
            instances.to_string(),
            "--agent-pacing".to_owned(),
            pacing.to_owned(),
        ];
        if let Some(f) = faults {
            args.extend(["--faults".to_owned(), f.to_owned()]);
        }
        Self::spawn(&args)
    }

    /// `sandbox --accounts N --regions R1,R2 --instances EACH --agent-pacing off`: the fleet
    /// sandbox; `endpoint` is its front, `access_key` empty (each account has its own keys).
    pub fn start_fleet(
        accounts: usize,
        regions: &[&str],
        each: usize,
        faults: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            "sandbox".to_owned(),
            "--accounts".to_owned(),
            accounts.to_string(),
            "--regions".to_owned(),
            regions.join(","),
            "--instances".to_owned(),
            each.to_string(),
            "--agent-pacing".to_owned(),
            "off".to_owned(),
        ];
        if let Some(f) = faults {
            args.extend(["--faults".to_owned(), f.to_owned()]);
        }
        Self::spawn(&args)
    }

    fn spawn(args: &[String]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find our own executable")?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start `ssmtui sandbox` as a child process")?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("the sandbox child has no stdout");
        };
        let mut this = Self {
            child,
            endpoint: String::new(),
            access_key: String::new(),
            secret: String::new(),
            region: String::new(),
        };
        // Blocking reads are fine here: the sandbox prints its exports within milliseconds,
        // and nothing else on this thread needs to run meanwhile.
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.context("reading the sandbox's exports")?;
            if line.starts_with("# serving") {
                break;
            }
            // A fleet sandbox names its front on its first line.
            if let Some(url) = line
                .strip_prefix("# ssmtui fleet sandbox on ")
                .and_then(|rest| rest.split_once(": "))
                .map(|(url, _)| url)
            {
                this.endpoint = url.to_owned();
            }
            let Some((key, value)) = line
                .strip_prefix("export ")
                .and_then(|rest| rest.split_once('='))
            else {
                continue;
            };
            let value = value.trim_matches('\'').to_owned();
            match key {
                "AWS_ENDPOINT_URL" => this.endpoint = value,
                "AWS_ACCESS_KEY_ID" => this.access_key = value,
                "AWS_SECRET_ACCESS_KEY" => this.secret = value,
                "AWS_REGION" => this.region = value,
                _ => {}
            }
        }
        let fleet = args.iter().any(|a| a == "--accounts");
        if this.endpoint.is_empty() || (this.access_key.is_empty() && !fleet) {
            anyhow::bail!("the sandbox child did not print its endpoint and credentials");
        }
        Ok(this)
    }

    /// The SDK-backed API pointed at this sandbox.
    pub async fn api(&self) -> anyhow::Result<Arc<dyn SsmApi>> {
        let aws = AwsConfig {
            region: Some(self.region.clone()),
            endpoint_url: Some(self.endpoint.clone()),
            ..AwsConfig::default()
        };
        let api =
            SdkApi::with_static_credentials(&aws, &self.access_key, &Secret::new(&self.secret))
                .await?;
        Ok(Arc::new(api))
    }

    /// The port it listens on (its scratch directory is named after it).
    fn port(&self) -> Option<u16> {
        self.endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
    }
}

impl Drop for ChildSandbox {
    fn drop(&mut self) {
        // SIGTERM lets it hang up its shells; SIGKILL only if it does not exit in time.
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        if let Some(port) = self.port() {
            let _ =
                std::fs::remove_dir_all(std::env::temp_dir().join(format!("ssmtui-fleet-{port}")));
            let scratch: PathBuf = std::env::temp_dir().join(format!("ssmtui-sandbox-{port}"));
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

/// A running Linux instance with an online agent of the current version, from the list.
pub fn pick_instance(instances: &[crate::aws::Instance]) -> anyhow::Result<String> {
    instances
        .iter()
        .find(|i| {
            i.is_connectable()
                && i.platform_type.as_deref() == Some("Linux")
                && i.agent_version.as_deref() == Some(crate::sandbox::world::CURRENT_AGENT_VERSION)
        })
        .map(|i| i.id.clone())
        .context("the sandbox world has no online Linux instance with a current agent")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut s, 50.0), 50.0);
        assert_eq!(percentile(&mut s, 99.0), 99.0);
        assert_eq!(percentile(&mut s, 100.0), 100.0);
        assert_eq!(percentile(&mut [], 50.0), 0.0);
        assert_eq!(percentile(&mut [3.0], 99.0), 3.0);
    }

    #[test]
    fn ratio_is_value_over_baseline() {
        let f = Figure::new(Group::Forward, "x", 50.0, "MiB/s").vs("relay", 100.0);
        assert_eq!(f.ratio, Some(0.5));
        let z = Figure::new(Group::Forward, "x", 50.0, "MiB/s").vs("zero", 0.0);
        assert_eq!(z.ratio, None);
    }

    #[test]
    fn table_lists_figures_and_skips() {
        let results = Results {
            figures: vec![
                Figure::new(Group::Codec, "codec.frame", 123.456, "MiB/s")
                    .vs("sha256", 200.0)
                    .note("n"),
            ],
            skipped: vec![Skipped {
                group: "shell".into(),
                reason: "no pty".into(),
            }],
        };
        let text = table(&report(results, Sizes { quick: true }));
        assert!(text.contains("codec.frame"), "{text}");
        assert!(text.contains("0.617"), "{text}");
        assert!(text.contains("shell: no pty"), "{text}");
    }
}
