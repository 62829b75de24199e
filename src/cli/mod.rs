//! The command line: the root parser, global flags, and dispatch to one module per subcommand.
//!
//! Each subcommand module has an `…Args` struct whose doc comments are its `--help`, and a
//! `run` function. Subcommands appear here only once they work.

pub mod bench;
pub mod completions;
pub mod config;
pub mod connect;
pub mod cp;
pub mod debug;
pub mod demo;
pub mod doctor;
pub mod exec;
pub mod forward;
pub mod list;
pub mod logs;
pub mod picker;
pub mod prompt;
pub mod proxy;
pub mod sandbox;
pub mod sessions;
pub mod target;
pub mod tui;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ColorChoice, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{Config, Loaded, Paths};
use crate::error::ErrorKind;

/// Session Manager for engineers: browse instances, open shells and port forwards over AWS
/// Systems Manager with a native data channel (no plugin, no token in `ps`). Without a
/// subcommand it opens the interactive UI
#[derive(Debug, Parser)]
#[command(name = "ssmtui", version, max_term_width = 100)]
pub struct Cli {
    /// Flags every subcommand accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do; without a subcommand the interactive UI opens.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The UI over several profiles and regions (see also [fleet] in the config).
    #[command(
        flatten,
        next_help_heading = "Fleet (the UI over several profiles and regions)"
    )]
    pub fleet: target::FleetArgs,
}

/// Flags shared by every subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Global options")]
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

/// The subcommands; each one's help is the doc comment of its `…Args` struct.
#[derive(Debug, Subcommand)]
pub enum Command {
    Connect(connect::ConnectArgs),
    Exec(exec::ExecArgs),
    Cp(cp::CpArgs),
    List(list::ListArgs),
    Forward(forward::ForwardArgs),
    Proxy(proxy::ProxyArgs),
    Sessions(sessions::SessionsArgs),
    Logs(logs::LogsArgs),
    Doctor(doctor::DoctorArgs),
    Config(config::ConfigArgs),
    Completions(completions::CompletionsArgs),
    Sandbox(sandbox::SandboxArgs),
    #[command(hide = true)]
    Debug(debug::DebugArgs),
    #[command(hide = true)]
    Bench(bench::BenchArgs),
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
            ExitCode::from(crate::report::report(&err, &mut stderr))
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
        Some(Command::Connect(args)) => connect::run(&ctx, &args),
        Some(Command::Exec(args)) => exec::run(&ctx, &args),
        Some(Command::Cp(args)) => cp::run(&ctx, &args),
        Some(Command::List(args)) => list::run(&ctx, &args),
        Some(Command::Forward(args)) => forward::run(&ctx, &args),
        Some(Command::Proxy(args)) => proxy::run(&ctx, &args),
        Some(Command::Sessions(args)) => sessions::run(&ctx, &args),
        Some(Command::Logs(args)) => logs::run(&ctx, &args),
        Some(Command::Doctor(args)) => doctor::run(&ctx, &args),
        Some(Command::Debug(args)) => debug::run(&args),
        Some(Command::Bench(args)) => bench::run(&args),
        None => tui::run(&ctx, &cli.fleet),
        Some(Command::Demo(args)) => demo::run(&ctx, &args),
    }
}

/// Whether stdout is a terminal (tables and colours) or a pipe (plain, stable output).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// `[sessions]` as the engine takes it.
pub fn tuning(config: &crate::config::Config) -> crate::engine::SessionTuning {
    crate::engine::SessionTuning {
        resume_for: config.sessions.resume_for(),
        keepalive: config.sessions.keepalive(),
    }
}

pub use crate::engine::runtime::{runtime, server_runtime, session_runtime};

/// The AWS API for the configured profile, region and endpoints.
pub async fn aws_api(
    config: &Config,
) -> Result<std::sync::Arc<dyn crate::aws::SsmApi>, crate::aws::AwsError> {
    Ok(std::sync::Arc::new(
        crate::aws::sdk::SdkApi::new(&config.aws).await?,
    ))
}

/// The AWS API plus where it points: the resolved region and the profile in use (for audit
/// records and doctor, which must say which account view they describe).
pub async fn aws_api_located(
    config: &Config,
) -> Result<(std::sync::Arc<dyn crate::aws::SsmApi>, ApiLocation), crate::aws::AwsError> {
    let api = crate::aws::sdk::SdkApi::new(&config.aws).await?;
    let location = ApiLocation {
        region: api.region().to_owned(),
        profile: api.profile().map(str::to_owned),
    };
    Ok((std::sync::Arc::new(api), location))
}

/// Where an [`aws_api_located`] API points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLocation {
    /// The resolved region.
    pub region: String,
    /// The profile, if one was named (flag, config or `AWS_PROFILE`).
    pub profile: Option<String>,
}

/// If `target` names an alias, returns its target and applies its profile/region (unless
/// given on the command line, which always wins); otherwise returns `target` unchanged.
pub fn expand_alias(config: &mut Config, target: &str) -> String {
    match config.aliases.get(target).cloned() {
        Some(alias) => {
            if let Some(profile) = alias.profile {
                config.aws.profile.get_or_insert(profile);
            }
            if let Some(region) = alias.region {
                config.aws.region.get_or_insert(region);
            }
            alias.target
        }
        None => target.to_owned(),
    }
}

/// Whether `target` is an alias that pins a profile or region: it then says where to go, and
/// the fleet is not searched.
pub fn alias_pins(config: &Config, target: &str) -> bool {
    config
        .aliases
        .get(target)
        .is_some_and(|a| a.profile.is_some() || a.region.is_some())
}

/// Starts file logging; a failure only costs the log, never the command.
pub fn start_logging(ctx: &Context) -> Option<crate::logging::LogGuard> {
    crate::logging::init(&ctx.paths.log_dir(), ctx.global.verbose).ok()
}
