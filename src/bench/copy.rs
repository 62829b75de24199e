//! Group `copy`: `ssmtui cp` (the real binary, as a child process) uploads and then downloads a
//! file of random bytes to and from an instance of a sandbox whose agent is paced like
//! amazon-ssm-agent, and the result must match. Against such an agent a download cannot beat
//! 1 KiB of base64 per millisecond, 0.768 MB/s of the file's own bytes: that is the baseline.
//! Uploads are not paced by the agent. The same size of log-like text goes gzipped (the
//! target has gzip), so its figures show what compression buys over that ceiling.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::shell::{ConnectEnv, sandbox_env};
use super::{ChildSandbox, Figure, Group, Results, Sizes, pick_instance};

/// File bytes per second a paced agent can carry at most (1024 base64 characters per ms).
const CEILING_MB_S: f64 = 1024.0 * 3.0 / 4.0 * 1000.0 / 1e6;

/// Runs the group.
pub async fn run(sizes: Sizes) -> anyhow::Result<Results> {
    let size: usize = sizes.pick(1 << 20, 8 << 20);
    let sandbox = ChildSandbox::start_paced(crate::sandbox::DEFAULT_INSTANCES, "real")?;
    let api = sandbox.api().await?;
    let target = pick_instance(&api.list_instances(&[]).await?)?;
    let env = sandbox_env(&sandbox, &target)?;
    let data = pseudo_random(size);
    let local = env.dir.path().join("bench-up.bin");
    std::fs::write(&local, &data)?;
    let remote = format!("{target}:ssmtui-bench-copy.bin");
    let up = tokio::task::block_in_place(|| cp(&env, &local.to_string_lossy(), &remote))?;
    let back = env.dir.path().join("bench-down.bin");
    let down = tokio::task::block_in_place(|| cp(&env, &remote, &back.to_string_lossy()))?;
    anyhow::ensure!(
        std::fs::read(&back)? == data,
        "the downloaded copy differs from the upload"
    );
    let text = log_text(size);
    std::fs::write(&local, &text)?;
    let text_up = tokio::task::block_in_place(|| cp(&env, &local.to_string_lossy(), &remote))?;
    let text_down = tokio::task::block_in_place(|| cp(&env, &remote, &back.to_string_lossy()))?;
    anyhow::ensure!(
        std::fs::read(&back)? == text,
        "the downloaded text differs from the upload"
    );
    drop(sandbox);
    let mb_s = |d: Duration| size as f64 / d.as_secs_f64().max(1e-9) / 1e6;
    let note = format!(
        "{} MiB of random bytes through `ssmtui cp` (process start included), sandbox agent paced like amazon-ssm-agent",
        size >> 20
    );
    let text_note = format!(
        "{} MiB of log-like text (gzip on both ends), file bytes per second",
        size >> 20
    );
    Ok(Results {
        figures: vec![
            Figure::new(Group::Copy, "copy.upload_throughput", mb_s(up), "MB/s").note(note.clone()),
            Figure::new(Group::Copy, "copy.download_throughput", mb_s(down), "MB/s")
                .vs("paced agent ceiling", CEILING_MB_S)
                .note(note),
            Figure::new(
                Group::Copy,
                "copy.text_upload_throughput",
                mb_s(text_up),
                "MB/s",
            )
            .note(text_note.clone()),
            Figure::new(
                Group::Copy,
                "copy.text_download_throughput",
                mb_s(text_down),
                "MB/s",
            )
            .vs("paced agent ceiling", CEILING_MB_S)
            .note(text_note),
        ],
        skipped: Vec::new(),
    })
}

/// One `ssmtui cp FROM TO`: how long it took.
fn cp(env: &ConnectEnv, from: &str, to: &str) -> anyhow::Result<Duration> {
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let started = Instant::now();
    let out = Command::new(exe)
        .args(["cp", from, to])
        .env_clear()
        .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(env.dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run `ssmtui cp`")?;
    let took = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "`ssmtui cp {from} {to}` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(took)
}

/// Bytes that do not compress.
fn pseudo_random(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Log-like text: compresses about tenfold, as real logs do.
fn log_text(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = Vec::with_capacity(n + 128);
    let mut i = 0u64;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(
            format!(
                "2026-12-03T10:{:02}:{:02}Z INFO request id={:08x} path=/api/v1/items/{} status=200 took={}ms\n",
                i / 60 % 60,
                i % 60,
                x as u32,
                x % 5000,
                x % 300
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(n);
    out
}
