//! CPU time and memory of this process from `/proc` (Linux only).
//!
//! `getrusage` would need `unsafe` (through `libc`), which this crate forbids, so the same
//! figures are read from procfs: process CPU from `/proc/self/stat` (utime + stime, in
//! USER_HZ ticks, which Linux fixes at 100 per second for userspace on every mainstream
//! architecture), per-thread CPU from `/proc/self/task/*/schedstat` (nanoseconds), resident
//! and peak memory from `/proc/self/status` (VmRSS, VmHWM). On other systems every reader
//! returns `None` and the figures that need it are reported as not measured.

use std::time::Duration;

/// USER_HZ: the unit of utime/stime in `/proc/*/stat`.
const USER_HZ: f64 = 100.0;

/// CPU time (user + system) this process has used, all threads, dead ones included.
pub fn process_cpu() -> Option<Duration> {
    stat_cpu("/proc/self/stat")
}

/// CPU time of another process (a child we started), all threads, dead ones included.
pub fn pid_cpu(pid: u32) -> Option<Duration> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// Context switches (voluntary and not) of the live threads of process `pid`.
pub fn pid_ctx_switches(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Some(total)
}

/// CPU time of the calling thread, in nanoseconds of run time (`/proc/thread-self/schedstat`).
pub fn this_thread_cpu() -> Option<Duration> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn stat_cpu(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' the first field is number 3 (state); utime is 14 and stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / USER_HZ))
}

/// CPU time of the live threads whose name starts with `prefix`.
pub fn threads_cpu(prefix: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(entry) = entry else { continue };
        let dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        // comm is cut to 15 bytes, so compare on what is left of the prefix.
        let want = prefix.get(..prefix.len().min(15)).unwrap_or(prefix);
        if !comm.trim_end().starts_with(want) {
            continue;
        }
        let Ok(schedstat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        let ns: u64 = schedstat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        total += Duration::from_nanos(ns);
    }
    Some(total)
}

/// Our CPU time: the process minus the threads named `exclude` (the far side).
pub fn client_cpu(exclude: &str) -> Option<Duration> {
    Some(process_cpu()?.saturating_sub(threads_cpu(exclude)?))
}

fn status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// Resident set size now, in KiB.
pub fn rss_kib() -> Option<u64> {
    status_kib("VmRSS")
}

/// Peak resident set size since the start (or the last [`reset_peak`]), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM")
}

/// Resets VmHWM to the current RSS (writing 5 to `/proc/self/clear_refs`, Linux ≥ 4.0).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// MemTotal, in KiB.
pub fn mem_total_kib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    info.lines().find_map(|l| {
        l.strip_prefix("MemTotal:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// The CPU model name.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_owned())
    })
}

/// KiB → MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn procfs_readers_see_this_process() {
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_cpu().is_some());
        let rss = rss_kib().unwrap_or(0);
        assert!(rss > 0);
        // VmHWM only grows (short of a reset), so reading it second keeps it ≥ the RSS read first.
        assert!(peak_rss_kib().unwrap_or(0) >= rss);
        assert!(mem_total_kib().is_some_and(|k| k > 0));
        assert!(threads_cpu("no-such-thread-name") == Some(Duration::ZERO));
        assert!(pid_cpu(std::process::id()).is_some());
        assert!(pid_ctx_switches(std::process::id()).is_some_and(|n| n > 0));
        assert!(this_thread_cpu().is_some_and(|d| d > Duration::ZERO));
    }
}
