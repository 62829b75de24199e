//! `ssmtui cp`: copy a file (or, with `-r`, a directory) to or from an instance over a shell
//! session of the class document — no S3 bucket, no sshd.
//!
//! The bytes cross the remote terminal as base64 lines inside a framed pipe-mode session
//! (`engine::shell::run_script`), so any content survives the pty. Both ends compute SHA-256:
//! a download is written to a partial file next to the destination and renamed only when its
//! digest matches the one the target computed; an upload is decoded into a partial file on the
//! target, checked there against ours, and renamed only then. A mismatch is an error and the
//! partial file is removed. Directories travel as a tar stream (`tar` on both ends). The
//! target needs a POSIX `sh`, `base64`, and `sha256sum`, `shasum` or `openssl`; the script
//! checks them first and says which is missing.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::io::AsyncBufReadExt;

use super::Context;
use super::exec::{ScriptTarget, script_target, sh_quote};
use super::target::{Choice, refuse_readonly};
use crate::audit::{AuditLog, SessionKind};
use crate::error::{ErrorKind, UserError};
use crate::resolve::TargetSpec;
use crate::rules::validate_reason;
use crate::signals::Interrupts;

/// Copy a file to or from an instance: `cp LOCAL TARGET:PATH` or `cp TARGET:PATH LOCAL`.
///
/// TARGET is what `connect` takes (a Name, an instance id, tag filters in quotes, an alias);
/// PATH is on the instance, relative to the session's home directory unless absolute. LOCAL
/// may be `-` for stdin or stdout. The copy is checked end to end with SHA-256 and a partial
/// file is never left behind. The session uses your access class's shell document and is
/// audited like any other.
#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// What to copy: a local path, `-` (stdin), or TARGET:PATH
    pub source: String,
    /// Where to: a local path, `-` (stdout), or TARGET:PATH
    pub destination: String,
    /// Copy a directory and everything in it (as a tar stream)
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Why you copy; recorded by AWS with the session (1 to 256 characters)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// With several matches, take the first by name
    #[arg(long, conflicts_with = "any")]
    pub first: bool,
    /// With several matches, take a random one
    #[arg(long)]
    pub any: bool,
}

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// stdin or stdout.
    Stdio,
    /// A local path.
    Local(PathBuf),
    /// A path on an instance.
    Remote { target: String, path: String },
}

/// `TARGET:PATH` is remote when the part before the first `:` has no `/` (as scp decides);
/// `-` is stdin/stdout; anything else is local (write `./a:b` for a local name with a colon).
fn place(text: &str) -> Place {
    if text == "-" {
        return Place::Stdio;
    }
    match text.split_once(':') {
        Some((target, path)) if !target.is_empty() && !target.contains('/') => Place::Remote {
            target: target.to_owned(),
            path: path.to_owned(),
        },
        _ => Place::Local(PathBuf::from(text)),
    }
}

/// Runs `cp`.
pub fn run(ctx: &Context, args: &CpArgs) -> anyhow::Result<ExitCode> {
    refuse_readonly(ctx.global.readonly, "copy files")?;
    let reason = validate_reason(args.reason.as_deref())?;
    let (target_text, remote_path, local, upload) =
        match (place(&args.source), place(&args.destination)) {
            (Place::Remote { target, path }, local @ (Place::Local(_) | Place::Stdio)) => {
                (target, path, local, false)
            }
            (local @ (Place::Local(_) | Place::Stdio), Place::Remote { target, path }) => {
                (target, path, local, true)
            }
            (Place::Remote { .. }, Place::Remote { .. }) => {
                return Err(usage("both sides are on instances")
                    .hint("copy to this machine first, then to the other instance")
                    .into());
            }
            _ => {
                return Err(usage("neither side is on an instance")
                    .hint("write the remote side as TARGET:PATH, e.g. web-1:/tmp/app.log")
                    .into());
            }
        };
    if args.recursive && local == Place::Stdio {
        return Err(
            usage("-r copies a directory, which cannot come from stdin or go to stdout")
                .hint("name a local directory")
                .into(),
        );
    }
    // The local side is read or checked before any AWS call.
    let payload = if upload {
        Some(read_local(&local, args.recursive)?)
    } else {
        None
    };
    let mut config = ctx.load_config()?.config;
    let expanded = super::expand_alias(&mut config, &target_text);
    let spec = TargetSpec::parse(&expanded)?;
    let _log = super::start_logging(ctx);
    let audit = AuditLog::from_config(&config.audit, &ctx.paths);
    let runtime = super::session_runtime()?;
    runtime.block_on(async {
        let choice = Choice {
            first: args.first,
            any: args.any,
        };
        let ScriptTarget {
            target,
            document,
            reason,
            launcher,
        } = script_target(ctx, &config, &target_text, &spec, choice, reason, audit).await?;
        let interrupts = Interrupts::watch()?;
        let started = Instant::now();
        let (moved, sent) = if let Some(payload) = payload {
            let script = upload_script(&remote_path, &payload.sha, args.recursive);
            let size = payload.size;
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            for chunk in script.chunks(16 * 1024) {
                tx.send(chunk.to_vec()).await?;
            }
            let mut out = tokio::io::duplex(64 * 1024);
            let bar = progress_bar("sending", Some(size));
            let reader = tokio::spawn(upload_dialogue(out.1, tx, payload, bar.clone()));
            let outcome = launcher
                .run_script(
                    SessionKind::Copy,
                    &target.instance,
                    &document,
                    reason,
                    rx,
                    &mut out.0,
                    &interrupts,
                )
                .await;
            drop(out.0);
            let (lines, sent) = reader.await.unwrap_or_default();
            bar.finish_and_clear();
            let outcome = outcome?;
            check_upload(&lines, outcome.exit_code)?;
            (size, sent)
        } else {
            let script = download_script(&remote_path, args.recursive);
            let landing = Landing::new(&local, &remote_path, args.recursive)?;
            let sink = landing.open().await?;
            let (mut writer, reader) = tokio::io::duplex(64 * 1024);
            let bar = progress_bar("receiving", None);
            let receive = tokio::spawn(receive(reader, sink, bar.clone()));
            let outcome = launcher
                .run_script(
                    SessionKind::Copy,
                    &target.instance,
                    &document,
                    reason,
                    crate::engine::shell::script_input(&script),
                    &mut writer,
                    &interrupts,
                )
                .await;
            drop(writer);
            let received = receive
                .await
                .map_err(|e| anyhow::anyhow!("the receiver failed: {e}"));
            bar.finish_and_clear();
            let (checked, sent) = match (received, outcome) {
                (Ok(r), Ok(o)) => {
                    let sent = r.sent();
                    (r.check(o.exit_code), Some(sent))
                }
                (Err(e), _) | (_, Err(e)) => (Err(e), None),
            };
            (landing.land(checked)?, sent)
        };
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let wire = sent.map_or(moved, |s| s.wire);
        let gzip = sent.is_some_and(|s| s.gzip);
        tracing::info!(upload, bytes = moved, wire, gzip, secs, "copy complete");
        if std::io::stderr().is_terminal() {
            let compressed = if gzip {
                format!(" ({} with gzip)", crate::humanize::human_bytes(wire))
            } else {
                String::new()
            };
            eprintln!(
                "{} {}{compressed} in {secs:.1} s ({:.2} MB/s), SHA-256 checked on both ends",
                if upload { "sent" } else { "received" },
                crate::humanize::human_bytes(moved),
                moved as f64 / secs / 1e6
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn usage(message: &str) -> UserError {
    UserError::new(ErrorKind::Usage, message.to_owned())
}

/// What an upload sends: the size and SHA-256 of the bytes (the target checks them), where
/// those bytes are, and a gzip copy of them when that is at least a tenth smaller.
struct Payload {
    size: u64,
    sha: String,
    /// The file itself, or a temporary copy of stdin or a tar stream (deleted when dropped).
    plain: std::fs::File,
    /// A temporary gzip copy and its length.
    gzipped: Option<(std::fs::File, u64)>,
}

/// Bytes per read of a file being sent: a multiple of 57, so each read encodes to whole
/// 76-character base64 lines and the lines match those of the whole file.
const SEND_CHUNK: usize = 57 * 1024;

/// The length of `size` bytes as base64 lines of 76 characters, each with its newline.
fn encoded_len(size: u64) -> usize {
    let chars = usize::try_from(size.div_ceil(3) * 4).unwrap_or(usize::MAX);
    chars + chars.div_ceil(76)
}

/// How much of the data is compressed before deciding whether compressing it pays.
const GZIP_SAMPLE: u64 = 1 << 20;

/// Whether `compressed` bytes for `original` saves at least a tenth (what gzip must earn to be
/// worth its time on both ends; already-compressed data never does).
fn gzip_pays(compressed: u64, original: u64) -> bool {
    original > 0 && compressed.saturating_mul(10) < original.saturating_mul(9)
}

/// A writer that counts what passes through it.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: std::io::Write> std::io::Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What one pass over an upload's input gave.
struct Taken {
    size: u64,
    sha: String,
    copy: Option<std::fs::File>,
    gzipped: Option<(std::fs::File, u64)>,
}

/// Reads `input` once: counts and hashes it, copies it to a temporary file when `spool` (for
/// input that cannot be read twice), and gzips it into another alongside for as long as that
/// pays. Memory stays at one buffer whatever the size.
fn take_in(mut input: impl Read, spool: bool) -> std::io::Result<Taken> {
    use std::io::Write as _;
    let mut hasher = Sha256::new();
    let mut copy = if spool {
        Some(std::io::BufWriter::new(tempfile::tempfile()?))
    } else {
        None
    };
    let mut gz = Some(flate2::write::GzEncoder::new(
        Counting {
            inner: std::io::BufWriter::new(tempfile::tempfile()?),
            count: 0,
        },
        flate2::Compression::default(),
    ));
    let mut buf = vec![0u8; SEND_CHUNK];
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        size += n as u64;
        if let Some(c) = copy.as_mut() {
            c.write_all(chunk)?;
        }
        if let Some(z) = gz.as_mut() {
            z.write_all(chunk)?;
            // Judged once on the first MiB: data that does not compress there rarely does later.
            if size >= GZIP_SAMPLE && size - (n as u64) < GZIP_SAMPLE {
                z.flush()?;
                if !gzip_pays(z.get_ref().count, size) {
                    gz = None;
                }
            }
        }
    }
    let rewound = |w: std::io::BufWriter<std::fs::File>| -> std::io::Result<std::fs::File> {
        let mut f = w
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        std::io::Seek::rewind(&mut f)?;
        Ok(f)
    };
    let copy = copy.map(rewound).transpose()?;
    let gzipped = match gz {
        Some(z) => {
            let counted = z.finish()?;
            let len = counted.count;
            gzip_pays(len, size)
                .then(|| rewound(counted.inner).map(|f| (f, len)))
                .transpose()?
        }
        None => None,
    };
    Ok(Taken {
        size,
        sha: hex(&hasher.finalize()),
        copy,
        gzipped,
    })
}

/// The local bytes to upload: a file, stdin, or (`recursive`) a directory as a tar stream.
fn read_local(local: &Place, recursive: bool) -> anyhow::Result<Payload> {
    let payload = |t: Taken, path: &Path| -> std::io::Result<Payload> {
        // A file is read a second time, while it is sent.
        let plain = match t.copy {
            Some(f) => f,
            None => std::fs::File::open(path)?,
        };
        Ok(Payload {
            size: t.size,
            sha: t.sha,
            plain,
            gzipped: t.gzipped,
        })
    };
    match local {
        Place::Stdio => {
            let taken = take_in(std::io::stdin().lock(), true)
                .map_err(|e| anyhow::anyhow!("cannot read stdin: {e}"))?;
            Ok(payload(taken, Path::new("-"))?)
        }
        Place::Local(path) if recursive => {
            if !path.is_dir() {
                return Err(usage(&format!("\"{}\" is not a directory", path.display()))
                    .hint("leave out -r to copy a file")
                    .into());
            }
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = path.file_name().unwrap_or(path.as_os_str());
            let mut tar = std::process::Command::new("tar")
                .arg("-C")
                .arg(parent)
                .arg("-cf")
                .arg("-")
                .arg(name)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot run tar: {e}"))?;
            let taken = tar.stdout.take().map(|out| take_in(out, true));
            let done = tar.wait_with_output()?;
            if !done.status.success() {
                anyhow::bail!(
                    "tar failed: {}",
                    String::from_utf8_lossy(&done.stderr).trim()
                );
            }
            let taken = taken
                .ok_or_else(|| anyhow::anyhow!("tar gave no output"))?
                .map_err(|e| anyhow::anyhow!("cannot read tar's output: {e}"))?;
            Ok(payload(taken, path)?)
        }
        Place::Local(path) => {
            if path.is_dir() {
                return Err(usage(&format!("\"{}\" is a directory", path.display()))
                    .hint("pass -r to copy a directory")
                    .into());
            }
            let unreadable = |e: std::io::Error| {
                UserError::new(
                    ErrorKind::Usage,
                    format!("cannot read \"{}\": {e}", path.display()),
                )
            };
            let file = std::fs::File::open(path).map_err(unreadable)?;
            Ok(payload(take_in(file, false).map_err(unreadable)?, path).map_err(unreadable)?)
        }
        Place::Remote { .. } => unreachable!("the local side is never remote"),
    }
}

/// The first lines of every copy script: the tools it needs, and `ssmtui_sha` (stdin → hex).
const PROBE: &str = r#"ssmtui_fail() { printf 'ssmtui-cp-error %s\n' "$1"; exit 90; }
command -v base64 >/dev/null 2>&1 || ssmtui_fail "the target has no base64"
if command -v sha256sum >/dev/null 2>&1; then ssmtui_sha() { sha256sum | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then ssmtui_sha() { shasum -a 256 | cut -d' ' -f1; }
elif command -v openssl >/dev/null 2>&1; then ssmtui_sha() { openssl dgst -sha256 | sed 's/.*= *//'; }
else ssmtui_fail "the target has neither sha256sum, shasum nor openssl"; fi
"#;

/// The remote half of a download: checks, then `begin SIZE SHA MODE`, base64 lines, `end`.
/// MODE is `gzip` when the target has gzip and the first MiB shrinks by a tenth with it.
fn download_script(path: &str, recursive: bool) -> Vec<u8> {
    let q = sh_quote(path);
    let mut s = String::from("(\n");
    s.push_str(PROBE);
    if recursive {
        s.push_str(&format!(
            r#"[ -d {q} ] || ssmtui_fail "not a directory on the target: "{q}
command -v tar >/dev/null 2>&1 || ssmtui_fail "the target has no tar"
t=$(mktemp) || ssmtui_fail "cannot create a temporary file on the target"
trap 'rm -f "$t"' EXIT
( cd "$(dirname {q})" && tar -cf - "$(basename {q})" ) > "$t" 2>/dev/null || ssmtui_fail "tar failed on the target"
src=$t
"#
        ));
    } else {
        s.push_str(&format!(
            r#"[ -e {q} ] || ssmtui_fail "no such file on the target: "{q}
[ -d {q} ] && ssmtui_fail "a directory (pass -r): "{q}
[ -r {q} ] || ssmtui_fail "cannot read on the target: "{q}
src={q}
"#
        ));
    }
    s.push_str(
        r#"size=$(wc -c < "$src" | tr -d ' ')
sha=$(ssmtui_sha < "$src")
z=plain
if [ "$size" -gt 1024 ] && command -v gzip >/dev/null 2>&1 && command -v head >/dev/null 2>&1; then
  n=$size; [ "$n" -gt 1048576 ] && n=1048576
  s=$(head -c "$n" < "$src" | gzip -c | wc -c | tr -d ' ')
  [ "$((s * 10))" -lt "$((n * 9))" ] && z=gzip
fi
printf 'ssmtui-cp-begin %s %s %s\n' "$size" "$sha" "$z"
if [ "$z" = gzip ]; then gzip -c < "$src" | base64; else base64 < "$src"; fi
printf 'ssmtui-cp-end\n'
)
"#,
    );
    s.into_bytes()
}

/// `bytes` as base64 lines of 76 characters, each ending in a newline.
fn encode_lines(bytes: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 76 + 1);
    for line in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

/// How an upload went over the wire.
#[derive(Debug, Clone, Copy)]
struct Sent {
    gzip: bool,
    /// Bytes sent before base64.
    wire: u64,
}

/// The local half of an upload's conversation: once the script says it is reading
/// (`ssmtui-cp-ready MODE`, MODE `gzip` when the target has it), a header line `MODE LENGTH`
/// and the encoded bytes go out, then the input closes; an error or the end closes it at once
/// (the shell then gets the epilogue). Returns every output line and what was sent.
async fn upload_dialogue(
    reader: tokio::io::DuplexStream,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    payload: Payload,
    bar: indicatif::ProgressBar,
) -> (Vec<String>, Option<Sent>) {
    let mut tx = Some(tx);
    let mut payload = Some(payload);
    let mut sent = None;
    let mut sender = None;
    let mut lines = tokio::io::BufReader::new(reader).lines();
    let mut out = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim_end_matches('\r').to_owned();
        if let Some(mode) = line.strip_prefix("ssmtui-cp-ready ") {
            if let (Some(tx), Some(p)) = (tx.take(), payload.take()) {
                let (file, len, gzip) = match p.gzipped {
                    Some((z, len)) if mode == "gzip" => (z, len, true),
                    _ => (p.plain, p.size, false),
                };
                let header = format!(
                    "{} {}\n",
                    if gzip { "gzip" } else { "plain" },
                    encoded_len(len)
                );
                bar.set_length(len);
                if gzip {
                    bar.set_message("sending (gzip)");
                }
                sent = Some(Sent { gzip, wire: len });
                let bar = bar.clone();
                // A task of its own: this loop must keep reading the output meanwhile.
                sender = Some(tokio::spawn(async move {
                    if tx.send(header.into_bytes()).await.is_ok() {
                        send_encoded(file, tx, bar).await;
                    }
                }));
            }
        } else if line.starts_with("ssmtui-cp-") {
            // An error, a mismatch, or the end: nothing more goes in.
            tx = None;
        }
        out.push(line);
    }
    drop(tx);
    if let Some(s) = sender {
        s.abort();
    }
    (out, sent)
}

/// A progress bar on stderr (bytes, rate, time left) when it is a terminal; hidden otherwise.
fn progress_bar(what: &'static str, total: Option<u64>) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(total, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}

/// Sends `file` as base64 lines, read as it goes.
async fn send_encoded(
    file: std::fs::File,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    bar: indicatif::ProgressBar,
) {
    use tokio::io::AsyncReadExt as _;
    let mut file = tokio::fs::File::from_std(file);
    let mut buf = vec![0u8; SEND_CHUNK];
    loop {
        // Fill the chunk: only the last one may be short.
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(buf.get_mut(filled..).unwrap_or_default()).await {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
        }
        if filled == 0 {
            return;
        }
        let lines = encode_lines(buf.get(..filled).unwrap_or_default());
        if tx.send(lines).await.is_err() {
            return;
        }
        bar.inc(filled as u64);
        if filled < buf.len() {
            return;
        }
    }
}

/// The remote half of an upload: checks, then `ssmtui-cp-ready MODE` (`gzip` when the target
/// can decompress), then from the terminal a header line `MODE LENGTH` and exactly LENGTH bytes
/// of base64 into a partial file (through `gzip -dc` for MODE `gzip`), the digest compared
/// there, then the rename (or, `recursive`, the extraction). The whole script is one command,
/// read by the shell before it runs, so the next input the terminal has is the header.
fn upload_script(path: &str, sha: &str, recursive: bool) -> Vec<u8> {
    let q = sh_quote(path);
    let mut s = String::from("(\n");
    s.push_str(PROBE);
    if recursive {
        s.push_str(&format!(
            r#"command -v tar >/dev/null 2>&1 || ssmtui_fail "the target has no tar"
mkdir -p {q} || ssmtui_fail "cannot create the directory on the target: "{q}
part=$(mktemp) || ssmtui_fail "cannot create a temporary file on the target"
"#
        ));
    } else {
        s.push_str(&format!(
            r#"dst={q}
[ -d "$dst" ] && ssmtui_fail "a directory on the target (name the file): "{q}
part="$dst.ssmtui-partial.$$"
: > "$part" 2>/dev/null || ssmtui_fail "cannot write on the target: "{q}
"#
        ));
    }
    // An interrupted copy (Ctrl-C terminates the session; the agent hangs up the terminal)
    // leaves no partial file behind.
    s.push_str("trap 'rm -f \"$part\"' EXIT\ntrap 'rm -f \"$part\"; exit 129' HUP INT TERM\n");
    s.push_str(
        r#"command -v head >/dev/null 2>&1 || ssmtui_fail "the target has no head"
z=plain; command -v gzip >/dev/null 2>&1 && z=gzip
printf 'ssmtui-cp-ready %s\n' "$z"
IFS=' ' read -r mode len || ssmtui_fail "the upload's header did not arrive"
case "$mode $len" in
  "plain "[0-9]*) head -c "$len" | base64 -d > "$part" ;;
  "gzip "[0-9]*) head -c "$len" | base64 -d | gzip -dc > "$part" ;;
  *) ssmtui_fail "the upload's header is not understood" ;;
esac
"#,
    );
    s.push_str(&format!(
        r#"got=$(ssmtui_sha < "$part")
if [ "$got" != {sha} ]; then rm -f "$part"; printf 'ssmtui-cp-mismatch %s\n' "$got"; exit 92; fi
"#
    ));
    if recursive {
        s.push_str(&format!(
            r#"tar -xf "$part" -C {q} 2>/dev/null || {{ rm -f "$part"; ssmtui_fail "tar could not unpack on the target"; }}
rm -f "$part"
"#
        ));
    } else {
        s.push_str(
            r#"mv -f "$part" "$dst" || { rm -f "$part"; ssmtui_fail "cannot rename the partial file on the target"; }
"#,
        );
    }
    s.push_str("printf 'ssmtui-cp-ok\\n'\n");
    // On the closing line: nothing may follow the command in the terminal's input.
    s.push_str(
        "); ssmtui_rc=$?; printf 'ssmtui-cp-done %s\\n' \"$ssmtui_rc\"; (exit $ssmtui_rc)\n",
    );
    s.into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an upload's output and status say.
fn check_upload(lines: &[String], status: Option<i32>) -> anyhow::Result<()> {
    if lines.iter().any(|l| l == "ssmtui-cp-ok") && status == Some(0) {
        return Ok(());
    }
    Err(remote_failure(lines, status, "the upload").into())
}

/// The error a copy script reported, or the status it ended with.
fn remote_failure(lines: &[String], status: Option<i32>, what: &str) -> UserError {
    if let Some(msg) = lines
        .iter()
        .find_map(|l| l.strip_prefix("ssmtui-cp-error "))
    {
        return UserError::new(ErrorKind::Usage, msg.to_owned())
            .hint("the target needs a POSIX sh with base64, and sha256sum, shasum or openssl");
    }
    if let Some(got) = lines
        .iter()
        .find_map(|l| l.strip_prefix("ssmtui-cp-mismatch "))
    {
        return UserError::new(
            ErrorKind::Network,
            format!(
                "{what} arrived damaged (SHA-256 {got} on the target); the partial file was removed"
            ),
        )
        .hint("try again; if it keeps failing, run `ssmtui doctor` and check the log (-v)");
    }
    UserError::new(
        ErrorKind::Network,
        format!(
            "{what} did not complete ({})",
            status.map_or_else(
                || "no exit status".to_owned(),
                |s| format!("exit status {s}")
            )
        ),
    )
    .hint("run again with -v and look at the log")
}

/// Where a download is written while it arrives, and where it ends up once checked.
enum Landing {
    /// stdout, as it comes (a damaged download is reported, but already written).
    Stdout,
    /// A hidden partial file next to the destination, renamed into place.
    File { partial: PathBuf, path: PathBuf },
    /// A partial tar file in the destination directory, unpacked there.
    Tree { partial: PathBuf, dir: PathBuf },
}

impl Landing {
    /// Decides the paths before anything is transferred (a directory destination takes the
    /// remote file's name).
    fn new(local: &Place, remote: &str, recursive: bool) -> anyhow::Result<Self> {
        let path = match local {
            Place::Stdio => return Ok(Self::Stdout),
            Place::Local(p) => p.clone(),
            Place::Remote { .. } => unreachable!("the local side is never remote"),
        };
        if recursive {
            std::fs::create_dir_all(&path).map_err(|e| {
                UserError::new(
                    ErrorKind::Usage,
                    format!("cannot create \"{}\": {e}", path.display()),
                )
            })?;
            let partial = path.join(format!(".ssmtui-partial-{}.tar", std::process::id()));
            return Ok(Self::Tree { partial, dir: path });
        }
        let path = if path.is_dir() {
            let name = Path::new(remote)
                .file_name()
                .ok_or_else(|| usage(&format!("\"{remote}\" names no file")))?;
            path.join(name)
        } else {
            path
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let partial = dir.join(format!(".{name}.ssmtui-partial-{}", std::process::id()));
        Ok(Self::File { partial, path })
    }

    /// Where the bytes go as they arrive.
    async fn open(&self) -> anyhow::Result<Box<dyn tokio::io::AsyncWrite + Unpin + Send>> {
        match self {
            Self::Stdout => Ok(Box::new(tokio::io::stdout())),
            Self::File { partial, .. } | Self::Tree { partial, .. } => {
                let file = tokio::fs::File::create(partial).await.map_err(|e| {
                    UserError::new(
                        ErrorKind::Usage,
                        format!("cannot write \"{}\": {e}", partial.display()),
                    )
                })?;
                Ok(Box::new(file))
            }
        }
    }

    /// Puts a checked download in place (or removes the partial file); the byte count.
    fn land(self, checked: anyhow::Result<u64>) -> anyhow::Result<u64> {
        let n = match checked {
            Ok(n) => n,
            Err(e) => {
                if let Self::File { partial, .. } | Self::Tree { partial, .. } = &self {
                    let _ = std::fs::remove_file(partial);
                }
                return Err(e);
            }
        };
        match self {
            Self::Stdout => {}
            Self::File { partial, path } => {
                if let Err(e) = std::fs::rename(&partial, &path) {
                    let _ = std::fs::remove_file(&partial);
                    return Err(UserError::new(
                        ErrorKind::Usage,
                        format!("cannot write \"{}\": {e}", path.display()),
                    )
                    .into());
                }
            }
            Self::Tree { partial, dir } => {
                let out = std::process::Command::new("tar")
                    .arg("-xf")
                    .arg(&partial)
                    .arg("-C")
                    .arg(&dir)
                    .output();
                let _ = std::fs::remove_file(&partial);
                let out = out.map_err(|e| anyhow::anyhow!("cannot run tar: {e}"))?;
                if !out.status.success() {
                    anyhow::bail!(
                        "tar could not unpack: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
        Ok(n)
    }
}

/// A download as it arrived: the announced size and digest, what was decoded (counted and
/// hashed as it was written), the script's own lines.
#[derive(Default)]
struct Received {
    announced: Option<(u64, String)>,
    ended: bool,
    /// Bytes after base64 (compressed, with gzip).
    wire: u64,
    gzip: bool,
    /// Bytes of the file itself.
    count: u64,
    hasher: Sha256,
    undecodable: bool,
    write_error: Option<String>,
    lines: Vec<String>,
}

impl Received {
    fn sent(&self) -> Sent {
        Sent {
            gzip: self.gzip,
            wire: self.wire,
        }
    }

    /// Counts, hashes and writes bytes of the file.
    async fn take(
        &mut self,
        bytes: &[u8],
        sink: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        bar: &indicatif::ProgressBar,
    ) {
        use tokio::io::AsyncWriteExt as _;
        self.count += bytes.len() as u64;
        bar.inc(bytes.len() as u64);
        self.hasher.update(bytes);
        if self.write_error.is_none()
            && let Err(e) = sink.write_all(bytes).await
        {
            self.write_error = Some(e.to_string());
        }
    }

    /// The byte count, when complete and matching the target's digest.
    fn check(self, status: Option<i32>) -> anyhow::Result<u64> {
        if let Some(e) = self.write_error {
            return Err(
                UserError::new(ErrorKind::Usage, format!("cannot write the copy: {e}")).into(),
            );
        }
        let Some((size, sha)) = &self.announced else {
            return Err(remote_failure(&self.lines, status, "the download").into());
        };
        let got = hex(&self.hasher.finalize());
        if !self.ended || self.undecodable || self.count != *size || got != *sha {
            return Err(UserError::new(
                ErrorKind::Network,
                format!(
                    "the download arrived damaged ({} of {size} bytes, SHA-256 {got}, the target's {sha})",
                    self.count
                ),
            )
            .hint("nothing was put in place (to stdout it was written as it came); try again, and if it keeps failing run with -v and look at the log")
            .into());
        }
        Ok(self.count)
    }
}

/// Reads a download script's output, writing the decoded (and, with gzip, inflated) bytes
/// to `sink` as they come.
async fn receive(
    reader: tokio::io::DuplexStream,
    mut sink: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
    bar: indicatif::ProgressBar,
) -> Received {
    use std::io::Write as _;
    use tokio::io::AsyncWriteExt as _;
    let mut lines = tokio::io::BufReader::new(reader).lines();
    let mut r = Received::default();
    let mut inflate: Option<flate2::write::GzDecoder<Vec<u8>>> = None;
    let mut pending = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim_end_matches('\r');
        if r.announced.is_none() {
            if let Some(rest) = line.strip_prefix("ssmtui-cp-begin ") {
                let mut parts = rest.split(' ');
                let size = parts.next().and_then(|s| s.parse().ok());
                let sha = parts.next().map(str::to_owned);
                if let (Some(size), Some(sha)) = (size, sha) {
                    bar.set_length(size);
                    r.announced = Some((size, sha));
                    if parts.next() == Some("gzip") {
                        r.gzip = true;
                        inflate = Some(flate2::write::GzDecoder::new(Vec::new()));
                    }
                    continue;
                }
            }
            r.lines.push(line.to_owned());
            continue;
        }
        if r.ended {
            r.lines.push(line.to_owned());
            continue;
        }
        if line == "ssmtui-cp-end" {
            r.ended = true;
            if !pending.is_empty() {
                r.undecodable = true;
            }
            if let Some(z) = inflate.as_mut() {
                match z.try_finish() {
                    Ok(()) => {
                        let rest = std::mem::take(z.get_mut());
                        r.take(&rest, &mut *sink, &bar).await;
                    }
                    Err(_) => r.undecodable = true,
                }
            }
            continue;
        }
        // Decode in whole 4-character groups (lines may be of any length).
        pending.push_str(line.trim());
        let whole = pending.len() / 4 * 4;
        match base64::engine::general_purpose::STANDARD.decode(&pending[..whole]) {
            Ok(bytes) => {
                r.wire += bytes.len() as u64;
                match inflate.as_mut() {
                    None => r.take(&bytes, &mut *sink, &bar).await,
                    Some(z) => match z.write_all(&bytes) {
                        Ok(()) => {
                            let out = std::mem::take(z.get_mut());
                            r.take(&out, &mut *sink, &bar).await;
                        }
                        Err(_) => r.undecodable = true,
                    },
                }
            }
            Err(_) => r.undecodable = true,
        }
        pending.drain(..whole);
    }
    if let Err(e) = sink.flush().await
        && r.write_error.is_none()
    {
        r.write_error = Some(e.to_string());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_length_matches_the_lines_sent_in_chunks() {
        for size in [
            0usize,
            1,
            2,
            3,
            56,
            57,
            58,
            1000,
            SEND_CHUNK - 1,
            SEND_CHUNK,
            SEND_CHUNK * 2 + 5,
        ] {
            let bytes: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            let whole = encode_lines(&bytes);
            let chunked: Vec<u8> = bytes.chunks(SEND_CHUNK).flat_map(encode_lines).collect();
            assert_eq!(chunked, whole, "size {size}");
            assert_eq!(encoded_len(size as u64), whole.len(), "size {size}");
        }
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    fn text(n: usize) -> Vec<u8> {
        (0..)
            .flat_map(|i| format!("{i} GET /api/v1/items?page={} 200\n", i % 97).into_bytes())
            .take(n)
            .collect()
    }

    fn read_all(mut f: std::fs::File) -> Vec<u8> {
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn one_pass_hashes_spools_and_gzips_only_what_compresses() {
        let data = text(3 << 20);
        let t = take_in(&data[..], true).unwrap();
        assert_eq!(t.size, data.len() as u64);
        assert_eq!(t.sha, hex(&Sha256::digest(&data)));
        assert_eq!(read_all(t.copy.unwrap()), data);
        let (z, len) = t.gzipped.expect("text compresses");
        let z = read_all(z);
        assert_eq!(z.len() as u64, len);
        assert!(len * 5 < data.len() as u64, "{len}");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);

        // Noise: given up after the first MiB; a file is not copied.
        let t = take_in(&noise(3 << 20)[..], false).unwrap();
        assert!(t.gzipped.is_none() && t.copy.is_none());
        // Small and empty inputs are judged at the end.
        assert!(take_in(&text(4000)[..], false).unwrap().gzipped.is_some());
        assert!(take_in(&noise(4000)[..], false).unwrap().gzipped.is_none());
        assert!(take_in(&b""[..], true).unwrap().gzipped.is_none());
    }

    #[test]
    fn gzip_pays_only_for_a_tenth_saved() {
        assert!(gzip_pays(89, 100));
        assert!(!gzip_pays(90, 100));
        assert!(!gzip_pays(0, 0));
    }

    /// A download's output as the script prints it, through `receive`.
    async fn received(data: &[u8], gzip: bool, damage: bool) -> Received {
        use std::io::Write as _;
        use tokio::io::AsyncWriteExt as _;
        let wire = if gzip {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(data).unwrap();
            z.finish().unwrap()
        } else {
            data.to_vec()
        };
        let mut lines = encode_lines(&wire);
        if damage {
            // A valid base64 character changed in the middle.
            let i = lines.len() / 2;
            lines[i] = if lines[i] == b'A' { b'B' } else { b'A' };
        }
        let mut out = format!(
            "ssmtui-cp-begin {} {} {}\r\n",
            data.len(),
            hex(&Sha256::digest(data)),
            if gzip { "gzip" } else { "plain" }
        )
        .into_bytes();
        out.extend_from_slice(&lines);
        out.extend_from_slice(b"ssmtui-cp-end\r\n");
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(receive(
            r,
            Box::new(tokio::io::sink()),
            indicatif::ProgressBar::hidden(),
        ));
        w.write_all(&out).await.unwrap();
        drop(w);
        task.await.unwrap()
    }

    #[tokio::test]
    async fn downloads_are_inflated_and_checked_as_they_come() {
        let data = text(300_000);
        let r = received(&data, true, false).await;
        assert!(r.gzip && r.wire < data.len() as u64 / 5);
        assert_eq!(r.check(Some(0)).unwrap(), data.len() as u64);
        let r = received(&data, false, false).await;
        assert_eq!((r.gzip, r.wire), (false, data.len() as u64));
        assert!(r.check(Some(0)).is_ok());
        for gzip in [true, false] {
            let r = received(&data, gzip, true).await;
            let err = r.check(Some(0)).unwrap_err().to_string();
            assert!(err.contains("arrived damaged"), "{err}");
        }
    }

    #[test]
    fn places_are_told_apart_as_scp_does() {
        assert_eq!(place("-"), Place::Stdio);
        assert_eq!(
            place("web-1:/tmp/a"),
            Place::Remote {
                target: "web-1".into(),
                path: "/tmp/a".into()
            }
        );
        assert_eq!(place("./a:b"), Place::Local("./a:b".into()));
        assert_eq!(place("/x/y:z"), Place::Local("/x/y:z".into()));
        assert_eq!(place("plain"), Place::Local("plain".into()));
        assert_eq!(
            place("i-0123456789abcdef0:rel/path"),
            Place::Remote {
                target: "i-0123456789abcdef0".into(),
                path: "rel/path".into()
            }
        );
    }
}
