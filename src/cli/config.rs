//! `ssmtui config check [FILE]` and `ssmtui config path`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, Source, paths};
use crate::output::print_out;

/// Check the configuration or show where ssmtui keeps its files.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// What to do
    #[command(subcommand)]
    pub action: ConfigAction,
}

/// `config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigAction {
    /// Validate a config file (default: the one ssmtui would read); exit 2 if it is invalid
    Check {
        /// File to check instead of the active config file
        file: Option<PathBuf>,
    },
    /// Print the config file, its config.d drop-ins, and the log, state and audit paths
    Path,
}

/// Runs a `config` subcommand.
pub fn run(ctx: &super::Context, args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        ConfigAction::Check { file: Some(file) } => {
            Config::from_file(file)?;
            print_out(&format!("ok: \"{}\" is valid\n", file.display()))?;
        }
        ConfigAction::Check { file: None } => {
            let loaded = ctx.load_config()?;
            let mut line = match loaded.source {
                Source::File(path) => format!("ok: \"{}\" is valid\n", path.display()),
                Source::Defaults { looked_for } => format!(
                    "ok: no config file at \"{}\"; using built-in defaults\n",
                    looked_for.display()
                ),
            };
            for drop_in in &loaded.drop_ins {
                let _ = writeln!(line, "ok: merged drop-in \"{}\"", drop_in.display());
            }
            print_out(&line)?;
        }
        ConfigAction::Path => {
            let mut out = String::new();
            let config_file = match &ctx.global.config {
                Some(p) => paths::expand_home(p),
                None => ctx.paths.default_config_file(),
            };
            let exists = if config_file.exists() {
                ""
            } else {
                " (does not exist)"
            };
            let _ = writeln!(out, "config file: {}{exists}", config_file.display());
            // Drop-ins apply in this order, each over the ones before.
            let dir = crate::config::drop_in_dir(&config_file);
            match crate::config::drop_in_files(&config_file) {
                Ok(files) if !files.is_empty() => {
                    for f in files {
                        let _ = writeln!(out, "drop-in:     {}", f.display());
                    }
                }
                _ => {
                    let _ = writeln!(out, "drop-ins:    {}/*.toml (none)", dir.display());
                }
            }
            let _ = writeln!(out, "config dir:  {}", ctx.paths.config_dir.display());
            let _ = writeln!(out, "state dir:   {}", ctx.paths.state_dir.display());
            let _ = writeln!(out, "log dir:     {}", ctx.paths.log_dir().display());
            // The audit path may be configured; a broken config must not hide the other paths.
            let audit = ctx
                .load_config()
                .ok()
                .and_then(|l| l.config.audit.path)
                .map_or_else(
                    || ctx.paths.default_audit_file(),
                    |p| paths::expand_home(&p),
                );
            let _ = writeln!(out, "audit log:   {}", audit.display());
            print_out(&out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
