//! `ssmtui debug decode|encode`: inspect or build one data-channel message, for diagnosing
//! captures. Hidden from the main help; `ssmtui debug --help` documents it.

use std::io::Read;
use std::process::ExitCode;

use crate::error::{ErrorKind, UserError};
use crate::output::print_out;
use crate::protocol::{self, message::DEFAULT_MAX_PAYLOAD_LEN};

/// Decode or encode one Session Manager data-channel message.
#[derive(Debug, clap::Args)]
pub struct DebugArgs {
    /// What to do
    #[command(subcommand)]
    pub action: DebugAction,
}

/// `debug` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DebugAction {
    /// Read one binary message (hex on stdin, or raw bytes with --raw) and print it as JSON
    Decode {
        /// Stdin holds raw bytes instead of hex
        #[arg(long)]
        raw: bool,
    },
    /// Read the JSON form on stdin and print the binary message (hex, or raw bytes with --raw)
    Encode {
        /// Write raw bytes instead of hex
        #[arg(long)]
        raw: bool,
    },
}

/// Runs a `debug` subcommand.
pub fn run(args: &DebugArgs) -> anyhow::Result<ExitCode> {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    match args.action {
        DebugAction::Decode { raw } => {
            let bytes = if raw { input } else { parse_hex(&input)? };
            let json = protocol::frame_to_json(&bytes, DEFAULT_MAX_PAYLOAD_LEN).map_err(|e| {
                UserError::new(ErrorKind::Usage, format!("cannot decode the message: {e}"))
                    .hint("pass one complete message; with --raw the bytes are read as they are")
            })?;
            print_out(&format!("{}\n", serde_json::to_string_pretty(&json)?))?;
        }
        DebugAction::Encode { raw } => {
            let value: serde_json::Value = serde_json::from_slice(&input).map_err(|e| {
                UserError::new(ErrorKind::Usage, format!("stdin is not JSON: {e}"))
                    .hint("`ssmtui debug decode` prints the expected form")
            })?;
            let frame = protocol::json_to_frame(&value).map_err(|e| {
                UserError::new(ErrorKind::Usage, format!("cannot encode the message: {e}"))
            })?;
            if raw {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                out.write_all(&frame)?;
                out.flush()?;
            } else {
                let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
                print_out(&format!("{hex}\n"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_hex(input: &[u8]) -> Result<Vec<u8>, UserError> {
    let text = String::from_utf8_lossy(input);
    let digits: Vec<u8> = text
        .split_whitespace()
        .map(|w| w.trim_start_matches("0x"))
        .flat_map(|w| w.bytes())
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(UserError::new(
            ErrorKind::Usage,
            "the hex input has an odd number of digits",
        )
        .hint("give whole bytes, e.g. \"00 00 00 74 …\" or \"00000074…\""));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| {
                    UserError::new(
                        ErrorKind::Usage,
                        format!("\"{}\" is not a hex byte", String::from_utf8_lossy(pair)),
                    )
                    .hint("use --raw for binary input")
                })
        })
        .collect()
}
