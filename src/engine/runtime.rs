//! The tokio runtimes ssmtui runs on (the binary's `main` is synchronous): which command
//! gets how many threads, and why. Built here, in one place, for the commands and the bench.

/// The runtime of the TUI and of the commands that only call AWS APIs (`list`, `doctor`,
/// `logs`, `sessions`): the caller's thread runs the command (the TUI's loop) and one worker
/// runs what it spawns (loads, forwards, shells). One worker is plenty: a session moves at
/// most about 1 MB/s against a real agent, and listing is waiting on AWS. It is also what
/// keeps the TUI small: glibc gives every thread that allocates an arena of its own and keeps
/// what each frees, so a second worker carrying forward traffic cost 4 MiB of peak RSS (bench
/// `memory.peak_rss`, 1 000 instances and 8 busy forwards: 41 MiB with two workers, 37 MiB
/// with one, 2026-12-04), while listing six accounts at once was as fast with one
/// (`inventory.fleet_ratio` 1.05 both).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(1)
}

/// The runtime of `sandbox` and `demo`, which serve the emulated AWS endpoints and agents in
/// this process beside the client: two workers, so the far side does not starve it.
pub fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(2)
}

fn runtime_with(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The runtime of the commands that carry sessions (`connect`, `forward`, `proxy`, `exec`,
/// `cp`): one thread. Their work is I/O, a session moves at most a few MB/s, and nothing in
/// them blocks the loop (blocking reads such as stdin go to tokio's blocking pool), so one
/// thread serves the websocket, the session and the local sockets. It was chosen to save the
/// cross-thread wake-ups per message at the real agent's cadence; bench `paced` compares it
/// with the two-worker runtime (`SSMTUI_RUNTIME=multi-thread`) side by side, and on the
/// 2-core VM of 2026-12-03 the two were within run-to-run noise (both about 2 context switches
/// and 90–130 µs of CPU per message, mostly the kernel's loopback and scheduler work): kept
/// for its fewer threads, not for speed.
pub fn session_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    if std::env::var_os(super::ENV_RUNTIME).is_some_and(|v| v == "multi-thread") {
        return runtime_with(2);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
