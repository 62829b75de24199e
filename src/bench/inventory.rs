//! Groups `inventory` (issue 7) and `memory`: the TUI with a large world.
//!
//! `inventory`: a sandbox child process with 10 000 instances (1 000 with `--quick`);
//! `SsmApi::list_instances` through the real SDK (time to all rows), the list fed to
//! [`App::update`] and drawn once on a ratatui `TestBackend` (time to first rows: the API
//! returns the whole list at once, no paging, so first rows come after all rows plus one
//! update and one frame); filter keystrokes through the real keymap and `App::update`
//! (p50/p99 per key); frames of the unfiltered list (p50/p99 per `Terminal::draw`); RSS after
//! loading, vs RSS before.
//!
//! `memory`: the same world loaded and drawn, then 8 forwards (8 sessions) moving data at
//! once; peak RSS (VmHWM) of this process, the sandbox being another one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::forward::start_forward;
use super::traffic::TrafficChild;
use super::{
    ChildSandbox, Figure, Group, Results, Sizes, Skipped, ms, percentile, pick_instance, sys,
};
use crate::app::{Action, App, AppOptions};
use crate::aws::SsmApi;
use crate::config::UiConfig;
use crate::config::keymap::{Key, Keymap};

const WIDTH: u16 = 200;
const HEIGHT: u16 = 50;

/// Filter input typed in each pass: a name, a tag query, an id prefix, each cleared.
const TYPED: [&str; 3] = ["web-prod-1", "Environment=dev api", "i-0a"];

struct Loaded {
    app: App,
    terminal: Terminal<TestBackend>,
    list: Duration,
    first_rows: Duration,
    rows: usize,
    /// A connectable Linux instance of the list, for the forwards of the memory group.
    target: Option<String>,
}

async fn load(api: &dyn SsmApi) -> anyhow::Result<Loaded> {
    let identity = api.caller_identity().await?;
    let started = Instant::now();
    let instances = api.list_instances(&[]).await?;
    let list = started.elapsed();
    let target = pick_instance(&instances).ok();
    let mut app = App::new(AppOptions {
        ui: UiConfig::default(),
        classes: BTreeMap::new(),
        remembered: BTreeMap::new(),
        keymap: Keymap::defaults()?,
        profile: None,
        region: None,
        readonly: false,
        profiles: Vec::new(),
        aliases: BTreeMap::new(),
        forwards: Vec::new(),
        fleet: Vec::new(),
        fleet_aliases: BTreeMap::new(),
    });
    let _ = app.start();
    app.update(Action::Resize {
        width: WIDTH,
        height: HEIGHT,
    });
    app.update(Action::IdentityLoaded {
        generation: 0,
        result: Ok(identity),
    });
    app.update(Action::InstancesPage {
        generation: 0,
        result: Ok(instances),
        done: true,
    });
    let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT))?;
    terminal.draw(|f| crate::ui::render(&app, f))?;
    let first_rows = started.elapsed();
    let rows = app.instances.visible_len();
    Ok(Loaded {
        app,
        terminal,
        list,
        first_rows,
        rows,
        target,
    })
}

fn press(app: &mut App, key: &str) -> anyhow::Result<()> {
    let key = Key::parse(key).map_err(anyhow::Error::msg)?;
    if let Some(action) = app.resolve_key(key) {
        let _ = app.update(action);
    }
    Ok(())
}

/// Runs the `inventory` group.
pub async fn run_inventory(sizes: Sizes) -> anyhow::Result<Results> {
    let n = sizes.instances();
    sys::reset_peak();
    let rss_before = sys::rss_kib();
    let sandbox = ChildSandbox::start(n)?;
    let api = sandbox.api().await?;
    let Loaded {
        mut app,
        mut terminal,
        list,
        first_rows,
        rows,
        ..
    } = load(api.as_ref()).await?;
    let rss_loaded = sys::rss_kib();
    anyhow::ensure!(rows >= n, "only {rows} of {n} instances are listed");

    // Filter keystrokes: "/" opens the filter, each character updates it, ctrl+u clears.
    press(&mut app, "/")?;
    let passes = sizes.pick(1, 5);
    let mut keys = Vec::new();
    for _ in 0..passes {
        for text in TYPED {
            for c in text.chars() {
                let k = c.to_string();
                let started = Instant::now();
                press(&mut app, &k)?;
                keys.push(ms(started.elapsed()));
            }
            let started = Instant::now();
            press(&mut app, "ctrl+u")?;
            keys.push(ms(started.elapsed()));
        }
    }
    press(&mut app, "esc")?;

    // Frames of the full list; the selection moves between frames so each one differs.
    let frames = sizes.pick(20, 200);
    let mut draws = Vec::with_capacity(frames);
    for _ in 0..frames {
        press(&mut app, "down")?;
        let started = Instant::now();
        terminal.draw(|f| crate::ui::render(&app, f))?;
        draws.push(ms(started.elapsed()));
    }
    drop(sandbox);

    let rows_note = format!("{n} instances, sandbox in a child process, real SDK");
    let mut figures = vec![
        Figure::new(Group::Inventory, "inventory.list_all", ms(list), "ms")
            .goal("< 2000 ms")
            .note(rows_note),
        Figure::new(
            Group::Inventory,
            "inventory.first_rows",
            ms(first_rows),
            "ms",
        )
        .vs("list_all", ms(list))
        .note("list + App::update + first frame; the API returns the whole list (no paging)"),
        Figure::new(
            Group::Inventory,
            "inventory.filter_p50",
            percentile(&mut keys, 50.0),
            "ms",
        )
        .note(format!(
            "{} keystrokes through the keymap and App::update",
            keys.len()
        )),
        Figure::new(
            Group::Inventory,
            "inventory.filter_p99",
            percentile(&mut keys, 99.0),
            "ms",
        )
        .goal("< 16 ms"),
        Figure::new(
            Group::Inventory,
            "inventory.render_p50",
            percentile(&mut draws, 50.0),
            "ms",
        )
        .note(format!(
            "{frames} frames {WIDTH}×{HEIGHT} on ratatui TestBackend"
        )),
        Figure::new(
            Group::Inventory,
            "inventory.render_p99",
            percentile(&mut draws, 99.0),
            "ms",
        ),
    ];
    match (rss_loaded, rss_before) {
        (Some(after), Some(before)) => figures.push(
            Figure::new(Group::Inventory, "inventory.rss", sys::mib(after), "MiB")
                .vs("before loading", sys::mib(before))
                .goal("< 40 MB")
                .note("VmRSS of the bench process after list + load + first frame"),
        ),
        _ => {
            return Ok(Results {
                figures,
                skipped: vec![Skipped {
                    group: "inventory".into(),
                    reason: "inventory.rss: /proc/self/status is not readable".into(),
                }],
            });
        }
    }
    figures.extend(fleet_ratio(sizes).await?);
    Ok(Results {
        figures,
        skipped: Vec::new(),
    })
}

/// The fleet: 3 accounts × 2 regions of a fleet sandbox (2 000 instances each; 200 with
/// `--quick`) listed together through `fleet::list_with` (clients built, STS and EC2/SSM per
/// pair, 6 at once) against the slowest of the same pairs listed alone, side by side in each
/// pass; medians over the passes. Twice: with each API call answered 50 ms later, as from an
/// AWS region (the goal's figure: listing real accounts waits on the service), and on bare
/// loopback, where the work is all CPU and 2 cores bound the ratio.
async fn fleet_ratio(sizes: Sizes) -> anyhow::Result<Vec<Figure>> {
    let each = sizes.pick(200, 2_000);
    let (all, slowest, _) = fleet_pass(sizes, each, Some("api-latency-ms=50")).await?;
    let (all_cpu, slowest_cpu, listed) = fleet_pass(sizes, each, None).await?;
    let merges = fleet_merges(listed)?;
    let note = format!(
        "6 pairs × {each} instances (fleet sandbox child, real SDK, {} at once), API calls answered 50 ms later",
        crate::fleet::PARALLEL
    );
    Ok(vec![
        Figure::new(Group::Inventory, "inventory.fleet_all", all, "ms").note(note),
        Figure::new(Group::Inventory, "inventory.fleet_slowest_pair", slowest, "ms"),
        Figure::new(
            Group::Inventory,
            "inventory.fleet_ratio",
            all / slowest.max(f64::EPSILON),
            "x",
        )
        .goal("<= 1.5 x")
        .note("all pairs together / the slowest pair alone"),
        Figure::new(
            Group::Inventory,
            "inventory.fleet_ratio_loopback",
            all_cpu / slowest_cpu.max(f64::EPSILON),
            "x",
        )
        .note(format!(
            "the same with no API latency: {all_cpu:.0} ms / {slowest_cpu:.0} ms, CPU-bound (client and sandbox share the cores)"
        )),
        Figure::new(Group::Inventory, "inventory.fleet_merge_max", merges, "ms")
            .goal("< 16 ms")
            .note("the UI's work as a source answers (App::update with its rows merged into the others'), the slowest of the 6"),
    ])
}

/// The longest [`App::update`] that merges one source's listing into the fleet list, feeding
/// `listed` (6 sources) as the TUI receives them: what a source's answer costs the UI loop.
fn fleet_merges(listed: Vec<crate::fleet::Listed>) -> anyhow::Result<f64> {
    use crate::app::SourceListing;
    let mut app = App::new(AppOptions {
        ui: UiConfig::default(),
        classes: BTreeMap::new(),
        remembered: BTreeMap::new(),
        keymap: Keymap::defaults()?,
        profile: None,
        region: None,
        readonly: false,
        profiles: Vec::new(),
        aliases: BTreeMap::new(),
        forwards: Vec::new(),
        fleet: listed.iter().map(|l| l.source.clone()).collect(),
        fleet_aliases: BTreeMap::new(),
    });
    let _ = app.start();
    let _ = app.update(Action::Resize {
        width: WIDTH,
        height: HEIGHT,
    });
    let mut worst = 0f64;
    for (index, l) in listed.into_iter().enumerate() {
        let account = l.account.unwrap_or_default();
        let listing = SourceListing {
            identity: crate::aws::Identity {
                arn: format!("arn:aws:sts::{account}:assumed-role/AWSReservedSSO_Bench_0/alice"),
                account,
                user_id: "AROABENCH:alice".to_owned(),
            },
            region: l.region,
            instances: l.result.map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        let started = Instant::now();
        let _ = app.update(Action::SourceLoaded {
            generation: 1,
            index,
            result: Box::new(Ok(listing)),
        });
        worst = worst.max(ms(started.elapsed()));
    }
    Ok(worst)
}

/// One measurement of [`fleet_ratio`]: (all together, slowest alone), medians in ms, and the
/// last listing of all.
async fn fleet_pass(
    sizes: Sizes,
    each: usize,
    faults: Option<&str>,
) -> anyhow::Result<(f64, f64, Vec<crate::fleet::Listed>)> {
    use crate::fleet::{Source, list_with};
    use crate::sandbox::fleet::FleetSandboxFactory;
    let regions = ["eu-west-1", "us-east-1"];
    let accounts = 3;
    let sandbox = ChildSandbox::start_fleet(accounts, &regions, each, faults)?;
    let factory = FleetSandboxFactory::new(
        sandbox.endpoint.clone(),
        regions[0].to_owned(),
        accounts,
        "alice",
    );
    let sources: Vec<Source> = (0..accounts)
        .flat_map(|a| {
            regions.iter().map(move |r| Source {
                profile: Some(crate::sandbox::fleet::profile_name(a)),
                region: Some((*r).to_owned()),
            })
        })
        .collect();
    let check = |listed: &[crate::fleet::Listed]| -> anyhow::Result<()> {
        for l in listed {
            let n = l
                .result
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{}: {e}", l.source.label()))?
                .len();
            anyhow::ensure!(n == each, "{} listed {n} of {each}", l.source.label());
        }
        Ok(())
    };
    // Warm-up: the child's first answers build its caches.
    check(&list_with(&factory, &sources, &[]).await)?;
    let passes = sizes.pick(2, 5);
    let (mut all, mut slowest) = (Vec::new(), Vec::new());
    let mut last = Vec::new();
    for _ in 0..passes {
        let mut worst = 0f64;
        for s in &sources {
            let started = Instant::now();
            check(&list_with(&factory, std::slice::from_ref(s), &[]).await)?;
            worst = worst.max(ms(started.elapsed()));
        }
        slowest.push(worst);
        let started = Instant::now();
        last = list_with(&factory, &sources, &[]).await;
        all.push(ms(started.elapsed()));
        check(&last)?;
    }
    drop(sandbox);
    Ok((
        percentile(&mut all, 50.0),
        percentile(&mut slowest, 50.0),
        last,
    ))
}

/// Runs the `memory` group.
pub async fn run_memory(sizes: Sizes) -> anyhow::Result<Results> {
    // Issue 17's goal: 1 000 instances and 8 busy forwards. The full run also keeps the
    // earlier 10 000-instance figure, for comparison over time.
    let mut results = peak_with(sizes, 1_000, "memory.peak_rss").await?;
    if sizes.instances() != 1_000 {
        let mut more = peak_with(sizes, sizes.instances(), "memory.peak_rss_10k").await?;
        results.figures.append(&mut more.figures);
        results.skipped.append(&mut more.skipped);
    }
    Ok(results)
}

/// Peak RSS with `n` instances loaded and drawn and 8 forwards busy at once, as `name`.
async fn peak_with(sizes: Sizes, n: usize, name: &str) -> anyhow::Result<Results> {
    let forwards = 8usize;
    let each: u64 = sizes.pick(8 << 20, 128 << 20);
    let peak_reset = sys::reset_peak();
    let rss_before = sys::rss_kib();
    let sandbox = ChildSandbox::start(n)?;
    let api = sandbox.api().await?;
    let loaded = load(api.as_ref()).await?;
    // The list the app loaded names the target: a second listing would add its own transient
    // memory, which the TUI never spends.
    let target = loaded
        .target
        .clone()
        .context("the sandbox world has no online Linux instance with a current agent")?;
    let loading_peak = sys::peak_rss_kib();
    // The sources and the sink are another process: the figure is ssmtui's memory, not that
    // of the applications at either end of its forwards.
    let mut traffic = TrafficChild::start(each).await?;
    let mut handles = Vec::with_capacity(forwards);
    for _ in 0..forwards {
        handles.push(start_forward(&api, &target, traffic.sink_port).await?);
    }
    let started = Instant::now();
    for h in &handles {
        let addr = h
            .local_addr()
            .ok_or_else(|| anyhow::anyhow!("a forward has no local address"))?;
        traffic.push(addr.port()).await?;
    }
    let mut sampled_max = 0u64;
    let mut done = 0usize;
    while done < forwards {
        // Sample VmRSS every 100 ms while waiting; VmHWM is the authoritative peak.
        match tokio::time::timeout(Duration::from_millis(100), traffic.next()).await {
            Ok(Ok(got)) => {
                anyhow::ensure!(got == each, "a forward delivered {got} of {each} bytes");
                done += 1;
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {}
        }
        sampled_max = sampled_max.max(sys::rss_kib().unwrap_or(0));
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the busy forwards did not finish"
        );
    }
    let busy = started.elapsed();
    let peak = sys::peak_rss_kib();
    for h in handles {
        h.stop().await;
    }
    traffic.stop().await;
    drop(loaded);
    drop(sandbox);

    let mut results = Results::default();
    let peak_kib = if peak_reset {
        peak.unwrap_or(sampled_max)
    } else {
        // Without a reset VmHWM may include an earlier group; the sampled maximum does not.
        sampled_max
    };
    let before = rss_before.unwrap_or(0);
    if peak_kib == 0 {
        results.skipped.push(Skipped {
            group: "memory".into(),
            reason: "/proc/self/status is not readable".into(),
        });
        return Ok(results);
    }
    results.figures.push(
        Figure::new(Group::Memory, name, sys::mib(peak_kib), "MiB")
            .vs("before loading", sys::mib(before))
            .goal("< 40 MB")
            .note(format!(
                "{n} instances loaded and drawn + {forwards} forwards × {} MiB at once ({:.1} s; sources and sink in a child process); VmHWM{}",
                each >> 20,
                busy.as_secs_f64(),
                match loading_peak {
                    Some(kib) if peak_reset => format!(" (loading alone: {:.1} MiB)", sys::mib(kib)),
                    _ => String::new(),
                }
            )),
    );
    Ok(results)
}
