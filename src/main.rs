//! The `ssmtui` binary: parse arguments, run, and turn the outcome into an exit status.
//! Everything else lives in the library so tests exercise the same code.

fn main() -> std::process::ExitCode {
    ssmtui::cli::main()
}
