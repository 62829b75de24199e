//! ssmtui: a terminal UI and CLI for AWS Systems Manager Session Manager.
//!
//! The crate is a library with a thin binary (`src/main.rs`) so that integration tests and the
//! fuzz targets can use the same code. Layering, from the bottom up:
//!
//! - [`protocol`]: the sans-IO Session Manager data channel (no tokio, no AWS, no terminal);
//! - [`aws`]: the AWS calls behind one trait, with the SDK implementation and a fake;
//! - [`config`]: the TOML configuration, its layering and the platform paths;
//! - [`app`]: the interactive app as pure state (update → effects), [`ui`]: its views, and
//!   [`tui`]: the terminal and the runtime loop that performs the effects;
//! - [`cli`]: one module per subcommand, converting arguments into validated values;
//! - [`error`]: the single place where errors become messages, hints and exit codes.
//!
//! Later layers (`engine`, `sandbox`) are added as they are built.

pub mod app;
pub mod aws;
pub mod cli;
pub mod config;
pub mod error;
pub mod logging;
pub mod output;
pub mod secret;
pub mod tui;
pub mod ui;
