//! ssmtui: a terminal UI and CLI for AWS Systems Manager Session Manager.
//!
//! The crate is a library with a thin binary (`src/main.rs`) so that integration tests and the
//! fuzz targets can use the same code. Layering, from the bottom up:
//!
//! - [`protocol`]: the sans-IO Session Manager data channel and smux (no tokio, AWS, terminal);
//! - [`engine`]: one tokio task per websocket driving a protocol session; shell passthrough
//!   ([`clock`]: the millisecond time it and the sandbox agent give the protocol core);
//! - [`aws`]: the AWS calls behind one trait, with the SDK implementation and a fake;
//! - [`access`] and [`resolve`]: access classes and target resolution (pure, no I/O);
//! - [`audit`]: the local audit log of sessions (JSON lines, rotated by size);
//! - [`config`]: the TOML configuration, its layering and the platform paths;
//! - [`app`]: the interactive app as pure state (update → effects), [`ui`]: its views, and
//!   [`tui`]: the terminal and the runtime loop that performs the effects;
//! - [`doctor`]: the checks behind `ssmtui doctor` (over the API trait, unit-testable);
//! - [`cli`]: one module per subcommand, converting arguments into validated values;
//! - [`error`]: the single place where errors become messages, hints and exit codes;
//! - [`bench`]: the benchmark harness behind the hidden `ssmtui bench`;
//! - [`sandbox`]: a loopback emulation of the AWS APIs ssmtui uses, for `ssmtui sandbox` and tests.
//!

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
pub mod forwarding;
pub mod humanize;
pub mod launch;
pub mod logging;
pub mod output;
pub use ssmtui_protocol as protocol;
pub mod report;
pub mod resolve;
pub mod rules;
pub mod sandbox;
pub mod secret;
pub mod signals;
pub mod tui;
pub mod ui;
