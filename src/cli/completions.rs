//! `ssmtui completions SHELL`: print a completion script for bash, zsh or fish.

use std::process::ExitCode;

use clap_complete::Shell;

use crate::output::print_out;

/// Print a completion script on stdout.
///
/// bash: `ssmtui completions bash > ~/.local/share/bash-completion/completions/ssmtui`
/// zsh:  `ssmtui completions zsh > "${fpath[1]}/_ssmtui"`
/// fish: `ssmtui completions fish > ~/.config/fish/completions/ssmtui.fish`
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to generate for
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// Shells we generate completions for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompletionShell {
    /// GNU bash
    Bash,
    /// Z shell
    Zsh,
    /// fish
    Fish,
}

/// Writes the script to stdout.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut cmd = super::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "ssmtui", &mut buf);
    print_out(&String::from_utf8_lossy(&buf))?;
    Ok(ExitCode::SUCCESS)
}
