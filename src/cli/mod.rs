//! The command line: the root parser, global flags, and dispatch to one module per subcommand.
//!
//! Each subcommand module has an `…Args` struct whose doc comments are its `--help`, and a
//! `run` function. Subcommands appear here only once they work.

pub mod completions;
pub mod config;
pub mod demo;
pub mod sandbox;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ColorChoice, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{Config, Loaded, Paths};
use crate::error::{self, ErrorKind};

/// Session Manager for engineers: browse instances, open shells and port forwards over AWS
/// Systems Manager with a native data channel (no plugin, no token in `ps`).
#[derive(Debug, Parser)]
#[command(
    name = "ssmtui",
    version,
    arg_required_else_help = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Flags every subcommand accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags shared by every subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// AWS profile to use (default: [aws] profile in the config, then the AWS default chain)
    #[arg(
        long,
        global = true,
        env = "SSMTUI_PROFILE",
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub profile: Option<String>,
    /// AWS region to use (default: [aws] region in the config, then the AWS default chain)
    #[arg(
        long,
        global = true,
        env = "SSMTUI_REGION",
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub region: Option<String>,
    /// Config file to read instead of the default one
    #[arg(
        long,
        global = true,
        env = "SSMTUI_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// More detail in the log file (-v debug, -vv trace); SSMTUI_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Browse only: never start or end a session
    #[arg(long, global = true)]
    pub readonly: bool,
    /// Do not use colours (also when NO_COLOR is set)
    #[arg(long, global = true)]
    pub no_color: bool,
}

impl GlobalArgs {
    /// Whether output may use colour: not with `--no-color`, not with `NO_COLOR` set.
    pub fn color_allowed(&self) -> bool {
        !self.no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration or show where ssmtui keeps its files
    Config(config::ConfigArgs),
    /// Print a shell completion script
    Completions(completions::CompletionsArgs),
    /// Run an emulated AWS account on loopback (no AWS account needed)
    Sandbox(sandbox::SandboxArgs),
    /// Try ssmtui against an emulated AWS account on this machine
    Demo(demo::DemoArgs),
}

/// Everything a subcommand needs from the environment: global flags, paths and the config.
#[derive(Debug)]
pub struct Context {
    /// Global flags as given.
    pub global: GlobalArgs,
    /// Resolved directories.
    pub paths: Paths,
}

impl Context {
    /// Loads the configuration per the documented precedence (flags and env win over the file).
    pub fn load_config(&self) -> anyhow::Result<Loaded> {
        let mut loaded = Config::load(self.global.config.as_deref(), &self.paths)?;
        if let Some(profile) = &self.global.profile {
            loaded.config.aws.profile = Some(profile.clone());
        }
        if let Some(region) = &self.global.region {
            loaded.config.aws.region = Some(region.clone());
        }
        Ok(loaded)
    }
}

/// The clap command with colour chosen from `NO_COLOR` / `--no-color` / the terminal.
pub fn command() -> clap::Command {
    let no_color = std::env::args_os().any(|a| a == "--no-color")
        || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let color = if no_color {
        ColorChoice::Never
    } else {
        ColorChoice::Auto
    };
    Cli::command().color(color)
}

/// Runs the program and returns the exit status.
pub fn main() -> ExitCode {
    let matches = match command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return exit_for_clap(&e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return exit_for_clap(&e),
    };
    let result = run(cli);
    match result {
        Ok(code) => code,
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            ExitCode::from(error::report(&err, &mut stderr))
        }
    }
}

fn exit_for_clap(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(ErrorKind::Usage.exit_code())
    } else {
        // --help and --version print to stdout and succeed.
        ExitCode::SUCCESS
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve()?;
    let ctx = Context {
        global: cli.global,
        paths,
    };
    match cli.command {
        Some(Command::Completions(args)) => completions::run(&args),
        Some(Command::Config(args)) => config::run(&ctx, &args),
        Some(Command::Sandbox(args)) => sandbox::run(&ctx, &args),
        Some(Command::Demo(args)) => demo::run(&ctx, &args),
        None => {
            // arg_required_else_help means clap already printed help; reaching here is a bug.
            Err(
                error::UserError::new(ErrorKind::Usage, "no subcommand given")
                    .hint("run `ssmtui --help` for the list of subcommands")
                    .into(),
            )
        }
    }
}

/// Whether stdout is a terminal (tables and colours) or a pipe (plain, stable output).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}
