//! ssmtui: a terminal UI and CLI for AWS Systems Manager Session Manager.
//!
//! The crate is a library with a thin binary (`src/main.rs`) so that integration tests and the
//! benchmarks use the same code. Layering, from the bottom up (the README's "Architecture";
//! `tests/integration/architecture.rs` keeps the module graph acyclic and these layers apart):
//!
//! - [`protocol`]: the sans-IO Session Manager data channel and smux — the
//!   `ssmtui-protocol` crate of this workspace (no tokio, AWS, terminal, clock or socket);
//! - leaves: [`error`] (error kinds, and the `Classify` trait each error type implements),
//!   [`rules`] (ARN globs, tag rules, reason limits), [`forwarding`] (forward specs, states),
//!   [`humanize`], [`clock`] (the millisecond time the engine and the sandbox agent give the
//!   protocol core), [`secret`];
//! - [`config`]: the TOML configuration, its layering and the platform paths;
//! - [`aws`]: the AWS calls behind one trait, with the SDK implementation and a fake;
//! - [`audit`]: the local audit log of sessions (JSON lines, rotated by size);
//! - [`access`]: the one policy module (class, reachability, documents, reasons) and
//!   [`resolve`]: target resolution (pure, no I/O);
//! - [`engine`]: one tokio task per websocket driving a protocol session; shell passthrough;
//!   forwards. It runs sessions started elsewhere and never starts one;
//! - [`launch`]: the only place a session starts (StartSession, audit, and the guarantee that
//!   every started session is ended and audited);
//! - [`app`]: the interactive app as pure state (update → effects), [`ui`]: its views, and
//!   [`tui`]: the terminal and the runtime loop that performs the effects;
//! - [`doctor`]: the checks behind `ssmtui doctor` (over the API trait, unit-testable);
//! - [`report`]: where errors become messages, hints and exit codes (CLI and TUI alike);
//!   [`signals`]: the signals that end sessions politely; [`output`]: stdout that may close;
//! - [`cli`]: one module per subcommand, converting arguments into validated values;
//! - [`bench`]: the benchmark harness behind the hidden `ssmtui bench`;
//! - [`sandbox`]: a loopback emulation of the AWS APIs ssmtui uses, for `ssmtui sandbox`, the
//!   demo and the tests.

pub mod access;
pub mod app;
pub mod audit;
pub mod aws;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod fleet;
pub mod forwarding;
pub mod humanize;
pub mod launch;
pub mod logging;
pub mod net;
pub mod output;
pub use ssmtui_protocol as protocol;
pub mod report;
pub mod resolve;
pub mod rules;
pub mod sandbox;
pub mod secret;
pub mod signals;
pub mod transcripts;
pub mod tui;
pub mod ui;
