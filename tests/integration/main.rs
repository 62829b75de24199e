//! ssmtui's integration tests, one module per area, in one test binary: each test binary
//! links the whole crate and the AWS SDK, so one binary instead of eleven cuts the link time
//! of every `cargo test` (figures in the README's Development section). The protocol core's
//! tests live with it, in crates/ssmtui-protocol.
//!
//! Every test starts what it needs on loopback port 0 (sandboxes, servers, moto, tmux) and
//! stops it; nothing touches real AWS.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests and their helpers should fail loudly at the point of the broken assumption"
)]

mod common;

mod access;
mod architecture;
mod cli;
mod connect;
mod connect_tty;
mod corporate;
mod cp;
mod exec;
mod first_contact;
mod fleet;
mod forward;
mod logs;
mod long_run;
mod sandbox_agent;
mod sandbox_api;
mod sandbox_cli;
mod sandbox_moto;
mod tui_tmux;
mod ui;
