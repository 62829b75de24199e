//! Configuration: the TOML model, where it is read from, and how it is layered.
//!
//! Precedence, lowest first: built-in defaults < the config file < environment variables
//! (`SSMTUI_PROFILE`, `SSMTUI_REGION`) < command-line flags. The file is found at `--config
//! FILE`, else `$SSMTUI_CONFIG`, else `config.toml` in the platform config dir ([`paths`]).
//! A missing default file means "all defaults"; a file named explicitly that cannot be read or
//! parsed is fatal. Parsing is strict: an unknown key is an error that names its line, so a
//! typo never silently becomes a default. `config.example.toml` at the repository root
//! documents every key and is tested to parse to [`Config::default`].

pub mod keymap;
pub mod paths;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Classified, Classify, ErrorKind};

pub use paths::Paths;

/// Errors reading or validating configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No home directory, so no platform directories.
    #[error("cannot find the home directory to place the config and state directories")]
    NoHome,
    /// An explicitly named config file does not exist.
    #[error("config file \"{}\" does not exist", path.display())]
    Missing {
        /// The file that was named.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cannot read config file \"{}\": {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema.
    #[error("config file \"{}\" is invalid at line {line}, column {column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column of the offending text.
        column: usize,
        /// What is wrong, from the TOML parser.
        message: String,
    },
    /// The file parses but a value is not acceptable.
    #[error("config file \"{}\" is invalid: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
        /// How to fix it.
        hint: String,
    },
}

impl Classify for ConfigError {
    fn classified(&self) -> Classified {
        Classified::new(ErrorKind::Usage, self.hints())
    }
}

impl ConfigError {
    /// The `hint:` lines for this error.
    pub fn hints(&self) -> Vec<String> {
        let doc = "every key is documented in config.example.toml (README, \"Configuration\")";
        match self {
            Self::NoHome => vec![format!(
                "set {} and {} to directories ssmtui may use",
                paths::ENV_CONFIG_DIR,
                paths::ENV_STATE_DIR
            )],
            Self::Missing { .. } => vec![format!(
                "create the file, or point --config / {} at an existing one",
                paths::ENV_CONFIG
            )],
            Self::Read { .. } => vec!["check the file's permissions".to_owned()],
            Self::Parse { message, .. } => {
                let mut hints = Vec::new();
                if message.starts_with("unknown field") {
                    hints.push("remove the key or fix its spelling".to_owned());
                } else if message.starts_with("invalid type") {
                    hints.push("the value has the wrong type for this key".to_owned());
                }
                hints.push(doc.to_owned());
                hints
            }
            Self::Invalid { hint, .. } => vec![hint.clone(), doc.to_owned()],
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How to reach AWS.
    pub aws: AwsConfig,
    /// The interactive UI.
    pub ui: UiConfig,
    /// Access classes by name (`[classes.sudo]`, `[classes.no-sudo]`, …).
    pub classes: BTreeMap<String, ClassConfig>,
    /// Short names for targets (`[aliases]`).
    pub aliases: BTreeMap<String, AliasConfig>,
    /// Saved port forwards (`[[forwards]]`).
    pub forwards: Vec<ForwardConfig>,
    /// The local audit log.
    pub audit: AuditConfig,
    /// How sessions ride out lost connections.
    pub sessions: SessionsConfig,
    /// Several profiles and regions listed as one fleet.
    pub fleet: FleetConfig,
}

/// `[fleet]`: the profiles (globs against the AWS config's profiles) and regions listed
/// together. Empty: one profile and region, as before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// Profile names or globs (`*`, `?`).
    pub profiles: Vec<String>,
    /// Regions; empty: each profile's own.
    pub regions: Vec<String>,
    /// Short names for account ids, shown instead of them.
    pub aliases: BTreeMap<String, String>,
}

/// `[sessions]`: how sessions ride out lost connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// Keep resuming a lost connection for this long ("90s", "30m", "2h"); unset: for as long
    /// as the service says the session exists.
    pub resume_for: Option<String>,
    /// Websocket ping interval in seconds (at least 1); a path that answered pings and then
    /// stays silent for 2.5 intervals is resumed on a new connection.
    pub keepalive_seconds: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            resume_for: None,
            keepalive_seconds: 30,
        }
    }
}

impl SessionsConfig {
    /// `resume_for` as a duration (`None` when unset or unparsable; `validate` rejects the
    /// latter).
    pub fn resume_for(&self) -> Option<Duration> {
        self.resume_for.as_deref().and_then(parse_span)
    }

    /// The ping interval.
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive_seconds.max(1))
    }
}

/// "90s", "30m", "2h" (a whole number and a unit), more than zero.
fn parse_span(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let n: u64 = text[..text.len() - unit.len_utf8()].trim().parse().ok()?;
    let secs = match unit {
        's' => n,
        'm' => n.checked_mul(60)?,
        'h' => n.checked_mul(3600)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// `[aws]`: profile, region and endpoint overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// Shared-config profile; unset means the AWS default chain (`AWS_PROFILE`, then `default`).
    pub profile: Option<String>,
    /// Region; unset means the AWS default chain (`AWS_REGION`, the profile's region).
    pub region: Option<String>,
    /// One endpoint URL for every AWS service (e.g. the sandbox); `AWS_ENDPOINT_URL` also works.
    pub endpoint_url: Option<String>,
    /// Per-service endpoint URLs, winning over `endpoint_url`.
    pub endpoints: EndpointsConfig,
    /// Upper bound for any single AWS API call, in seconds.
    pub call_timeout_seconds: u64,
    /// A PEM bundle of CA certificates trusted on top of the system roots (and of
    /// `AWS_CA_BUNDLE` or the profile's `ca_bundle`).
    pub ca_bundle: Option<PathBuf>,
    /// One proxy URL for every AWS destination, instead of `HTTPS_PROXY`/`HTTP_PROXY`/
    /// `ALL_PROXY` (`NO_PROXY` still applies).
    pub proxy: Option<String>,
    /// Route loopback destinations through the proxy too (they go direct by default).
    pub proxy_loopback: bool,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            profile: None,
            region: None,
            endpoint_url: None,
            endpoints: EndpointsConfig::default(),
            call_timeout_seconds: 30,
            ca_bundle: None,
            proxy: None,
            proxy_loopback: false,
        }
    }
}

/// `[aws.endpoints]`: per-service endpoint URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointsConfig {
    /// EC2 endpoint.
    pub ec2: Option<String>,
    /// SSM endpoint.
    pub ssm: Option<String>,
    /// STS endpoint.
    pub sts: Option<String>,
    /// KMS endpoint.
    pub kms: Option<String>,
    /// S3 endpoint (session transcripts).
    pub s3: Option<String>,
    /// CloudWatch Logs endpoint (session transcripts).
    pub logs: Option<String>,
}

/// `[ui]`: look and behaviour of the interactive UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// Colour theme.
    pub theme: Theme,
    /// Tag keys shown as extra columns in the instance list.
    pub columns: Vec<String>,
    /// What to do with instances the user's class may not reach.
    pub unreachable: Unreachable,
    /// Seconds between automatic refreshes of the instance list; 0 turns it off.
    pub refresh_seconds: u64,
    /// `key=value` tag rules: a target carrying any of them asks for a reason before a shell.
    pub reason_required_tags: Vec<String>,
    /// Ask for a reason before every shell, even when none is required (it may stay empty).
    pub always_ask_reason: bool,
    /// Key binding overrides: mode → key → action name (`"none"` unbinds).
    pub keymap: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            theme: Theme::Default,
            columns: vec!["Environment".to_owned(), "Team".to_owned()],
            unreachable: Unreachable::Dim,
            refresh_seconds: 60,
            reason_required_tags: vec!["Environment=prod".to_owned()],
            always_ask_reason: false,
            keymap: BTreeMap::new(),
        }
    }
}

/// Colour theme of the UI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Theme {
    /// Colours on a dark or light terminal.
    #[default]
    Default,
    /// No colours, only bold/reverse (also chosen by `NO_COLOR` or `--no-color`).
    Mono,
}

/// How unreachable instances are shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unreachable {
    /// Shown dimmed, with the reason in the details pane.
    #[default]
    Dim,
    /// Not shown at all.
    Hide,
}

/// `[classes.NAME]`: an access class and the documents bound to it.
///
/// `Default` is only a starting point for struct literals in code and tests: an empty
/// `document` is not a valid class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// The session document every shell session of this class uses.
    pub document: String,
    /// Port-forwarding documents the class may use.
    #[serde(default)]
    pub forward_documents: Vec<String>,
    /// ARN glob patterns of the principals in this class.
    #[serde(default)]
    pub principals: Vec<String>,
    /// Tag scope: tag key to allowed values; an instance must match every key.
    #[serde(default)]
    pub scope: BTreeMap<String, Vec<String>>,
    /// Whether every session of this class needs a reason.
    #[serde(default)]
    pub require_reason: bool,
    /// `Key=Value` instance tags for which this class needs a reason (`*` globs in the value).
    #[serde(default)]
    pub reason_required_tags: Vec<String>,
    /// The reason used when none is given (it also satisfies a requirement).
    #[serde(default)]
    pub default_reason: Option<String>,
}

/// `[aliases] NAME = { … }`: a short name for a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// What the alias stands for, in the `ssmtui connect TARGET` syntax: an instance id, a Name
    /// tag value, or `key=value` tag filters separated by spaces.
    pub target: String,
    /// Profile to use for this alias.
    #[serde(default)]
    pub profile: Option<String>,
    /// Region to use for this alias.
    #[serde(default)]
    pub region: Option<String>,
}

/// `[[forwards]]`: a saved port forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Unique name shown in the forwards tab.
    pub name: String,
    /// Target, in the `ssmtui connect TARGET` syntax (aliases allowed).
    pub target: String,
    /// `[BIND:]LOCAL:[HOST:]REMOTE`, as ssh `-L`.
    pub spec: String,
    /// Start when the UI starts.
    #[serde(default)]
    pub autostart: bool,
    /// Keep the session alive when idle (defeats the account's idle timeout; off by default).
    #[serde(default)]
    pub keepalive: bool,
    /// Up to this many sessions, opened as connections arrive (striping past the per-session
    /// throughput cap); 1 to 8, default 1.
    #[serde(default = "one_session")]
    pub sessions: usize,
}

fn one_session() -> usize {
    1
}

/// `[audit]`: the local audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// File to append to; unset means `audit.jsonl` in the state directory.
    pub path: Option<PathBuf>,
    /// Rotate when the file grows past this many bytes.
    pub max_bytes: u64,
    /// How many rotated files to keep.
    pub keep: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            max_bytes: 10 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Nothing was read: the default file does not exist.
    Defaults {
        /// The default file that was looked for.
        looked_for: PathBuf,
    },
    /// Read from this file.
    File(PathBuf),
}

/// A loaded configuration and its origin.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Where it came from.
    pub source: Source,
    /// The `config.d/*.toml` drop-ins merged over it, in the order they were applied.
    pub drop_ins: Vec<PathBuf>,
}

/// The directory of drop-ins for a config file: `config.d` next to it.
pub fn drop_in_dir(config_file: &Path) -> PathBuf {
    config_file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("config.d")
}

/// The `*.toml` files in [`drop_in_dir`], sorted by file name (byte order), so `10-team.toml`
/// comes before `20-me.toml`. A missing directory has none.
pub fn drop_in_files(config_file: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = drop_in_dir(config_file);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir, source }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Parses one file of a merged configuration: TOML syntax and the schema, except that keys may
/// be missing (another file may supply them). Errors name this file and the line.
fn parse_fragment(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    let at = |e: &toml::de::Error| {
        let (line, column) = e.span().map_or((1, 1), |span| line_column(text, &span));
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| at(&e))?;
    if let Err(e) = toml::from_str::<Config>(text)
        && !e.message().starts_with("missing field")
    {
        return Err(at(&e));
    }
    Ok(table)
}

/// Merges `over` into `base`: tables merge key by key (recursively), the top-level
/// `[[forwards]]` arrays are appended, and every other value in `over` replaces the one in
/// `base` (so a later file wins per key, and lists such as `principals` are replaced whole).
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    merge_at(base, over, true);
}

fn merge_at(base: &mut toml::Table, over: toml::Table, top: bool) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_at(b, o, false),
            (Some(toml::Value::Array(b)), toml::Value::Array(o)) if top && key == "forwards" => {
                b.extend(o);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl Config {
    /// Parses and validates TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |span| line_column(text, &span));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Reads, parses and validates a file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Self::parse(&text, path)
    }

    /// Loads the configuration: `explicit` (from `--config` or `SSMTUI_CONFIG`) must exist;
    /// otherwise the default file is read if present. Then the drop-ins `config.d/*.toml` next
    /// to that file (present or not) are merged over it, in file-name order ([`merge`]).
    pub fn load(explicit: Option<&Path>, paths: &Paths) -> Result<Loaded, ConfigError> {
        let (path, must_exist) = match explicit {
            Some(p) => (paths::expand_home(p), true),
            None => (paths.default_config_file(), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing { path });
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let source = match text {
            Some(_) => Source::File(path.clone()),
            None => Source::Defaults {
                looked_for: path.clone(),
            },
        };
        let drop_ins = drop_in_files(&path)?;
        if drop_ins.is_empty() {
            let config = match &text {
                Some(t) => Self::parse(t, &path)?,
                None => Self::default(),
            };
            return Ok(Loaded {
                config,
                source,
                drop_ins,
            });
        }
        let mut merged = match &text {
            Some(t) => parse_fragment(t, &path)?,
            None => toml::Table::new(),
        };
        for file in &drop_ins {
            let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
                path: file.clone(),
                source,
            })?;
            merge(&mut merged, parse_fragment(&text, file)?);
        }
        let config: Self = toml::Value::Table(merged).try_into().map_err(|e: toml::de::Error| {
            ConfigError::Invalid {
                path: path.clone(),
                message: format!(
                    "merged with its config.d drop-ins it does not fit the schema: {}",
                    e.message().trim()
                ),
                hint: "a key may be split across files, but the merged [classes.NAME] tables must be complete".to_owned(),
            }
        })?;
        config.validate(&path)?;
        Ok(Loaded {
            config,
            source,
            drop_ins,
        })
    }

    /// Checks values the schema alone cannot.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String, hint: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
            hint: hint.to_owned(),
        };
        for (name, url) in [
            ("aws.endpoint_url", &self.aws.endpoint_url),
            ("aws.endpoints.ec2", &self.aws.endpoints.ec2),
            ("aws.endpoints.ssm", &self.aws.endpoints.ssm),
            ("aws.endpoints.sts", &self.aws.endpoints.sts),
            ("aws.endpoints.kms", &self.aws.endpoints.kms),
        ] {
            if let Some(url) = url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(invalid(
                    format!("{name} = \"{url}\" is not an http(s) URL"),
                    "write a full URL such as \"https://ssm.eu-west-1.amazonaws.com\"",
                ));
            }
        }
        if let Some(proxy) = &self.aws.proxy
            && let Err(e) = crate::net::ProxyUrl::parse(proxy, "[aws] proxy")
        {
            return Err(invalid(e.to_string(), &e.hints().join("; ")));
        }
        if let Some(span) = &self.sessions.resume_for
            && parse_span(span).is_none()
        {
            return Err(invalid(
                format!("sessions.resume_for = \"{span}\" is not a duration"),
                "write a whole number with s, m or h, such as \"90s\", \"30m\" or \"2h\"; leave it out to resume for as long as the session lives",
            ));
        }
        if self.sessions.keepalive_seconds == 0 {
            return Err(invalid(
                "sessions.keepalive_seconds must be at least 1".to_owned(),
                "the default is 30",
            ));
        }
        if self.aws.call_timeout_seconds == 0 {
            return Err(invalid(
                "aws.call_timeout_seconds must be at least 1".to_owned(),
                "the default is 30",
            ));
        }
        self.validate_classes(path)?;
        for rule in &self.ui.reason_required_tags {
            if crate::rules::parse_tag_rule(rule).is_none() {
                return Err(invalid(
                    format!("ui.reason_required_tags contains \"{rule}\", which is not key=value"),
                    "write tag rules as \"Key=Value\", e.g. \"Environment=prod\"",
                ));
            }
        }
        if let Err(e) = keymap::Keymap::with_overrides(&self.ui.keymap) {
            return Err(invalid(e.to_string(), &e.hint()));
        }
        for (name, alias) in &self.aliases {
            if alias.target.trim().is_empty() {
                return Err(invalid(
                    format!("aliases.{name} has an empty target"),
                    "set target to an instance id, a Name tag value or key=value filters",
                ));
            }
        }
        let mut names = BTreeSet::new();
        for forward in &self.forwards {
            if forward.name.trim().is_empty() {
                return Err(invalid(
                    "a [[forwards]] entry has an empty name".to_owned(),
                    "give every forward a unique name",
                ));
            }
            if !names.insert(forward.name.as_str()) {
                return Err(invalid(
                    format!("the forward name \"{}\" is used twice", forward.name),
                    "give every forward a unique name",
                ));
            }
            if !(1..=crate::forwarding::MAX_SESSIONS).contains(&forward.sessions) {
                return Err(invalid(
                    format!(
                        "forward \"{}\": sessions = {} is out of range",
                        forward.name, forward.sessions
                    ),
                    &format!(
                        "use 1 to {} (1 is one session for the forward)",
                        crate::forwarding::MAX_SESSIONS
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The class checks: document names, principals patterns, reason rules.
    fn validate_classes(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String, hint: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
            hint: hint.to_owned(),
        };
        // pattern -> the first class that uses it
        let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, class) in &self.classes {
            for doc in std::iter::once(&class.document).chain(&class.forward_documents) {
                if !is_document_name(doc) {
                    return Err(invalid(
                        format!(
                            "classes.{name} names the document \"{doc}\", which is not a valid document name"
                        ),
                        "document names are 3 to 128 characters of letters, digits and _-.:/",
                    ));
                }
            }
            if let Some(kind) = non_shell_document(&class.document) {
                return Err(invalid(
                    format!(
                        "classes.{name}.document = \"{}\" is {kind}, not a shell session document",
                        class.document
                    ),
                    "set document to the class's Standard_Stream session document (e.g. \"SSM-sudo\"); port-forwarding documents belong in forward_documents",
                ));
            }
            if class.forward_documents.contains(&class.document) {
                return Err(invalid(
                    format!(
                        "classes.{name} lists its shell document \"{}\" in forward_documents",
                        class.document
                    ),
                    "forward_documents are port-forwarding documents such as \"AWS-StartPortForwardingSession\"",
                ));
            }
            for pattern in &class.principals {
                if let Some(problem) = crate::rules::glob_problem(pattern) {
                    return Err(invalid(
                        format!(
                            "classes.{name}.principals has the pattern \"{pattern}\", which {problem}"
                        ),
                        "write ARN glob patterns such as \"arn:aws:sts::*:assumed-role/AWSReservedSSO_Developer_*/*\" (* matches anything)",
                    ));
                }
                if let Some(other) = owners.insert(pattern, name) {
                    return Err(invalid(
                        format!(
                            "the principals pattern \"{pattern}\" appears in both classes.{other} and classes.{name}"
                        ),
                        "a principal must belong to exactly one class; remove the pattern from one of them",
                    ));
                }
            }
            for rule in &class.reason_required_tags {
                if crate::rules::parse_tag_rule(rule).is_none() {
                    return Err(invalid(
                        format!(
                            "classes.{name}.reason_required_tags has \"{rule}\", which is not Key=Value"
                        ),
                        "write tag rules as \"Environment=prod\" (* in the value matches anything)",
                    ));
                }
            }
            if let Some(reason) = &class.default_reason
                && crate::rules::reason_problem(reason).is_some()
            {
                let n = reason.trim().chars().count();
                let max = crate::rules::MAX_REASON;
                return Err(invalid(
                    format!("classes.{name}.default_reason must be 1 to {max} characters, not {n}"),
                    &format!("AWS accepts StartSession reasons of 1 to {max} characters"),
                ));
            }
        }
        Ok(())
    }
}

/// What a well-known document is if it cannot run a shell (`None` for anything else, which is
/// checked against AWS at run time and by `ssmtui doctor`).
pub fn non_shell_document(name: &str) -> Option<&'static str> {
    let base = name.rsplit('/').next().unwrap_or(name);
    if base.starts_with("AWS-StartPortForwardingSession") {
        Some("a port-forwarding document")
    } else if base == "AWS-StartSSHSession" {
        Some("the SSH proxy document")
    } else if base == "AWS-StartNonInteractiveCommand" || base == "AWS-StartInteractiveCommand" {
        Some("a command document")
    } else {
        None
    }
}

/// The SSM API's document-name pattern `[a-zA-Z0-9_\-.:/]{3,128}`.
pub fn is_document_name(name: &str) -> bool {
    (3..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
}

/// 1-based line and column (in characters) of the start of `span` in `text`.
fn line_column(text: &str, span: &Range<usize>) -> (usize, usize) {
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/cfg.toml"))
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").ok(), Some(Config::default()));
    }

    #[test]
    fn sessions_spans_and_keepalive_are_checked() {
        let c = parse("[sessions]\nresume_for = \"90m\"\nkeepalive_seconds = 10\n").unwrap();
        assert_eq!(c.sessions.resume_for(), Some(Duration::from_secs(5400)));
        assert_eq!(c.sessions.keepalive(), Duration::from_secs(10));
        assert_eq!(Config::default().sessions.resume_for(), None);
        assert_eq!(parse_span("45s"), Some(Duration::from_secs(45)));
        assert_eq!(parse_span("2h"), Some(Duration::from_secs(7200)));
        for bad in ["0m", "forever", "1.5h", "10", ""] {
            assert_eq!(parse_span(bad), None, "{bad}");
        }
        let e = parse("[sessions]\nresume_for = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sessions.resume_for = \"soon\" is not a duration"),
            "{e}"
        );
        assert!(parse("[sessions]\nkeepalive_seconds = 0\n").is_err());
        let e = parse("[aws]\nproxy = \"ftp://u:pw@p\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ftp://u:***@p") && !e.contains("pw@"), "{e}");
    }

    #[test]
    fn unknown_key_names_its_line_and_column() {
        let err = parse("[ui]\ntheme = \"mono\"\n  colour = 1\n").err();
        let Some(ConfigError::Parse {
            line,
            column,
            message,
            ..
        }) = err
        else {
            panic!("expected a parse error, got {err:?}");
        };
        assert_eq!((line, column), (3, 3));
        assert!(message.starts_with("unknown field `colour`"), "{message}");
    }

    #[test]
    fn invalid_values_are_rejected_with_the_key() {
        let err = parse("[classes.sudo]\ndocument = \"x\"\n").err();
        assert!(
            matches!(&err, Some(ConfigError::Invalid { message, .. }) if message.contains("classes.sudo")),
            "{err:?}"
        );
        let err = parse("[[forwards]]\nname=\"a\"\ntarget=\"t\"\nspec=\"1:2\"\n[[forwards]]\nname=\"a\"\ntarget=\"t\"\nspec=\"1:2\"\n").err();
        assert!(matches!(err, Some(ConfigError::Invalid { .. })), "{err:?}");
        let err =
            parse("[[forwards]]\nname=\"a\"\ntarget=\"t\"\nspec=\"1:2\"\nsessions = 9\n").err();
        assert!(
            matches!(&err, Some(ConfigError::Invalid { message, .. }) if message.contains("sessions = 9")),
            "{err:?}"
        );
        let ok = parse("[[forwards]]\nname=\"a\"\ntarget=\"t\"\nspec=\"1:2\"\nsessions = 4\n");
        assert_eq!(ok.map(|c| c.forwards[0].sessions).ok(), Some(4));
        let err = parse("[aws]\nendpoint_url = \"localhost:4566\"\n").err();
        assert!(matches!(err, Some(ConfigError::Invalid { .. })), "{err:?}");
    }

    #[test]
    fn ui_reason_rules_and_keymap_are_validated() {
        let err = parse("[ui]\nreason_required_tags = [\"prod\"]\n").err();
        assert!(
            matches!(&err, Some(ConfigError::Invalid { message, .. }) if message.contains("reason_required_tags")),
            "{err:?}"
        );
        let err = parse("[ui.keymap.instances]\n\"ctrl+bogus\" = \"quit\"\n").err();
        let Some(ConfigError::Invalid { message, hint, .. }) = err else {
            panic!("expected an invalid-config error, got {err:?}");
        };
        assert!(message.contains("\"ctrl+bogus\""), "{message}");
        assert!(hint.contains("key name"), "{hint}");
        let err = parse("[ui.keymap.instances]\n\"x\" = \"explode\"\n").err();
        assert!(
            matches!(&err, Some(ConfigError::Invalid { message, .. }) if message.contains("explode")),
            "{err:?}"
        );
        let ok =
            parse("[ui.keymap.instances]\n\"f5\" = \"refresh\"\n\"shift+tab\" = \"sort_next\"\n")
                .unwrap();
        assert_eq!(ok.ui.keymap["instances"]["f5"], "refresh");
    }

    #[test]
    fn merge_tables_by_key_appends_forwards_replaces_lists() {
        let mut base: toml::Table = toml::from_str(
            "[ui]\ntheme = \"mono\"\ncolumns = [\"A\"]\n[[forwards]]\nname = \"a\"\ntarget = \"t\"\nspec = \"1:2\"\n",
        )
        .unwrap();
        let over: toml::Table = toml::from_str(
            "[ui]\ncolumns = [\"B\"]\nrefresh_seconds = 5\n[[forwards]]\nname = \"b\"\ntarget = \"t\"\nspec = \"3:4\"\n",
        )
        .unwrap();
        merge(&mut base, over);
        let config: Config = toml::Value::Table(base).try_into().unwrap();
        assert_eq!(config.ui.theme, Theme::Mono);
        assert_eq!(config.ui.columns, ["B"]);
        assert_eq!(config.ui.refresh_seconds, 5);
        let names: Vec<&str> = config.forwards.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn drop_ins_apply_over_a_missing_default_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            config_dir: dir.path().to_path_buf(),
            state_dir: dir.path().join("state"),
        };
        std::fs::create_dir(dir.path().join("config.d")).unwrap();
        std::fs::write(
            dir.path().join("config.d/team.toml"),
            "[classes.sudo]\ndocument = \"SSM-sudo\"\nprincipals = [\"*/a\"]\n",
        )
        .unwrap();
        let loaded = Config::load(None, &paths).unwrap();
        assert!(matches!(loaded.source, Source::Defaults { .. }));
        assert_eq!(loaded.drop_ins.len(), 1);
        assert_eq!(loaded.config.classes["sudo"].document, "SSM-sudo");
        // An incomplete class after merging is an error naming the problem.
        std::fs::write(
            dir.path().join("config.d/zz.toml"),
            "[classes.other]\nprincipals = [\"*/b\"]\n",
        )
        .unwrap();
        let err = Config::load(None, &paths).unwrap_err().to_string();
        assert!(err.contains("missing field `document`"), "{err}");
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", &(4..5)), (2, 2));
        assert_eq!(line_column("ab", &(0..1)), (1, 1));
    }

    #[test]
    fn document_names_follow_the_api_pattern() {
        assert!(is_document_name("SSM-sudo"));
        assert!(is_document_name(
            "arn:aws:ssm:eu-west-1:123456789012:document/SSM-sudo"
        ));
        assert!(!is_document_name("ab"));
        assert!(!is_document_name("has space"));
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config.example.toml");

    #[test]
    fn example_is_exactly_the_defaults() {
        let parsed = Config::parse(EXAMPLE, Path::new("config.example.toml"));
        assert_eq!(parsed.ok(), Some(Config::default()));
    }

    #[test]
    fn example_sections_parse_when_uncommented() {
        // Lines starting with "#: " are documented examples; enabling them must give a valid file.
        let enabled: String = EXAMPLE
            .lines()
            .map(|l| match l.strip_prefix("#:") {
                Some(rest) => rest.strip_prefix(' ').unwrap_or(rest),
                None => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let config = Config::parse(&enabled, Path::new("enabled.toml")).unwrap();
        assert_eq!(config.classes["sudo"].document, "SSM-sudo");
        assert_eq!(
            config.classes["sudo"].reason_required_tags,
            ["Environment=prod"]
        );
        assert_eq!(
            config.classes["no-sudo"].scope["Environment"],
            ["staging", "dev"]
        );
        assert_eq!(
            config.aliases["prod-web"].target,
            "Environment=prod Role=web"
        );
        assert_eq!(config.forwards.len(), 1);
        assert!(config.forwards[0].autostart && !config.forwards[0].keepalive);
        // Everything outside the examples is still the default.
        assert_eq!(config.ui, UiConfig::default());
        assert_eq!(config.audit, AuditConfig::default());
    }
}
