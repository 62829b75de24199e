//! `ssmtui doctor`'s checks: is this machine, this identity and this account set up for
//! Session Manager the way the access classes assume?
//!
//! Every check ends as pass, warn or fail with a detail and, unless it passed, a hint. The AWS
//! checks go through [`SsmApi`] only (so they run against the fake in unit tests); DNS for the
//! data-channel host is resolved by the caller and handed in as [`HostCheck`]. Doctor never
//! starts a session: it reads documents and asks KMS for a data key with a placeholder context,
//! and says what each check proves.
//!
//! Severity: the class documents are what ssmtui uses, so their weaknesses fail. The account
//! preferences document `SSM-SessionManagerRunShell` only applies to sessions started without a
//! document, which IAM should forbid (`ssm:SessionDocumentAccessCheck`), so its weaknesses warn.
//! A failed check decides the exit status: 2 if it is the config or the region, 4 if it is the
//! credentials, 1 otherwise (no new exit codes).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::access::discovery::CLASS_TAG;
use crate::aws::{AwsError, Service, SsmApi, TagFilter};
use crate::config::Config;

/// The account preferences document.
pub const PREFERENCES_DOCUMENT: &str = "SSM-SessionManagerRunShell";
/// The longest idle timeout (minutes) doctor accepts.
pub const MAX_IDLE_MINUTES: u64 = 20;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Pass,
    /// Worth a look, or could not be checked.
    Warn,
    /// Broken or unsafe.
    Fail,
}

/// What a failure is about, which decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    /// The config file or the region (exit 2).
    Config,
    /// Credentials (exit 4).
    Auth,
    /// Anything else (exit 1).
    Other,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short name, e.g. `SSM-sudo: run-as`.
    pub name: String,
    /// pass, warn or fail.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// What a failure is about.
    #[serde(skip)]
    pub area: Area,
}

impl Check {
    fn new(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
            hint: None,
            area: Area::Other,
        }
    }

    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Pass, detail)
    }

    fn warn(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, detail)
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, detail)
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn area(mut self, area: Area) -> Self {
        self.area = area;
        self
    }
}

/// All checks, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// How many checks ended with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// 0 without failures; else 2 for config/region, 4 for credentials, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        let failed: Vec<Area> = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.area)
            .collect();
        if failed.is_empty() {
            0
        } else if failed.contains(&Area::Config) {
            2
        } else if failed.contains(&Area::Auth) {
            4
        } else {
            1
        }
    }

    /// The checks that failed, by name.
    pub fn failed(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.as_str())
            .collect()
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(0)
            // A very long document name should not push every detail off the screen.
            .min(34);
        let mut out = String::new();
        for c in &self.checks {
            let status = match c.status {
                Status::Pass => "pass",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            out.push_str(&format!("{status}  {:<width$}  {}\n", c.name, c.detail));
            if let Some(h) = &c.hint {
                out.push_str(&format!("      {:<width$}  hint: {h}\n", ""));
            }
        }
        out.push_str(&format!(
            "{} passed, {} warnings, {} failed\n",
            self.count(Status::Pass),
            self.count(Status::Warn),
            self.count(Status::Fail)
        ));
        out
    }
}

/// The data-channel (ssmmessages) host check, done by the caller because it needs DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCheck {
    /// The host resolved.
    Resolved {
        /// The host name.
        host: String,
    },
    /// It did not.
    Unresolvable {
        /// The host name.
        host: String,
        /// Why.
        error: String,
    },
    /// Endpoints are overridden (a sandbox, a VPC endpoint): the data-channel host is only
    /// known from a StartSession's StreamUrl, and doctor starts no sessions.
    Overridden,
}

/// The config as loaded, or why it could not be.
#[derive(Debug, Clone)]
pub enum ConfigState<'a> {
    /// Loaded; the text says from where.
    Loaded {
        /// The configuration.
        config: &'a Config,
        /// Where it came from, for the detail line.
        source: String,
    },
    /// It failed; doctor continues with the defaults.
    Invalid {
        /// The error message.
        error: String,
        /// The error's hint.
        hint: Option<String>,
    },
}

/// What doctor needs besides the API.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The configuration (or why it is broken).
    pub config: ConfigState<'a>,
    /// The configuration actually used for the other checks (the defaults when broken).
    pub effective: &'a Config,
    /// The region, or why there is none.
    pub region: Result<String, String>,
    /// The data-channel host.
    pub ssmmessages: HostCheck,
    /// The log directory.
    pub log_dir: PathBuf,
    /// The audit log file.
    pub audit_file: PathBuf,
}

/// Runs every check. `api` is `None` when no API could be built (no region); the AWS checks
/// are then left out.
pub async fn run(api: Option<&dyn SsmApi>, inputs: &Inputs<'_>) -> Report {
    let mut report = Report::default();
    let checks = &mut report.checks;
    checks.push(match &inputs.config {
        ConfigState::Loaded { source, .. } => Check::pass("config", source.clone()),
        ConfigState::Invalid { error, hint } => Check::fail("config", error.clone())
            .hint(
                hint.clone()
                    .unwrap_or_else(|| "run `ssmtui config check`".to_owned()),
            )
            .area(Area::Config),
    });
    checks.push(match &inputs.region {
        Ok(r) => Check::pass("region", r.clone()),
        Err(e) => Check::fail("region", e.clone())
            .hint("pass --region NAME, set [aws] region in the config, or set AWS_REGION")
            .area(Area::Config),
    });
    if let Some(api) = api {
        aws_checks(api, inputs, checks).await;
    }
    checks.push(writable("log directory", &inputs.log_dir, true));
    checks.push(writable("audit log", &inputs.audit_file, false));
    report
}

async fn aws_checks(api: &dyn SsmApi, inputs: &Inputs<'_>, checks: &mut Vec<Check>) {
    match api.caller_identity().await {
        Ok(id) => checks.push(Check::pass(
            "credentials",
            format!("{} (account {})", id.arn, id.account),
        )),
        Err(e) => {
            let hint = e.hints().into_iter().next().unwrap_or_default();
            checks.push(
                Check::fail("credentials", e.to_string())
                    .hint(hint)
                    .area(Area::Auth),
            );
            // Every other AWS check would fail the same way.
            return;
        }
    }
    let network = api.network();
    checks.push(Check::pass("trust", network.trust().describe()));
    checks.push(Check::pass("proxy", network.proxy().describe()));
    let endpoints = api.endpoints();
    let place = |service: &str| {
        endpoints
            .iter()
            .find(|e| e.service == service)
            .map(|e| {
                format!(
                    " — {} ({}), {}",
                    e.url,
                    e.origin,
                    route_text(&network, &e.url)
                )
            })
            .unwrap_or_default()
    };
    for service in [Service::Ssm, Service::Ec2] {
        let name = format!("endpoint {}", service.name());
        let at = place(service.name());
        checks.push(match api.check_endpoint(service).await {
            Ok(()) => Check::pass(name, format!("reachable{at}")),
            Err(e @ AwsError::AccessDenied { .. }) => {
                Check::warn(name, format!("reachable, but {e}{at}"))
                    .hint("ssmtui needs read access here (DescribeInstances, ListDocuments)")
            }
            Err(e) => Check::fail(name, format!("{e}{at}")).hint(
                "check the network, the region, and any endpoint override ([aws] endpoint_url, AWS_ENDPOINT_URL)",
            ),
        });
    }
    for service in ["sts", "kms"] {
        let at = place(service);
        if !at.is_empty() {
            let what = if service == "sts" {
                "reachable (the credentials check called it)"
            } else {
                "used for encrypted sessions"
            };
            checks.push(Check::pass(
                format!("endpoint {service}"),
                format!("{what}{at}"),
            ));
        }
    }
    checks.push(match &inputs.ssmmessages {
        HostCheck::Resolved { host } => Check::pass(
            "endpoint ssmmessages",
            format!(
                "{host} resolves; the data channel goes {}",
                route_text(&network, &format!("wss://{host}/"))
            ),
        ),
        HostCheck::Unresolvable { host, error } => Check::fail(
            "endpoint ssmmessages",
            format!("{host} does not resolve: {error}"),
        )
        .hint("sessions need DNS and HTTPS to ssmmessages (or its VPC endpoint)"),
        HostCheck::Overridden => Check::warn(
            "endpoint ssmmessages",
            "cannot check without a session: with overridden endpoints the data-channel host comes from StartSession's StreamUrl",
        )
        .hint("doctor starts no sessions; `ssmtui connect` shows whether the data channel opens"),
    });

    let documents = documents_to_check(api, inputs.effective, checks).await;
    let mut keys: BTreeSet<String> = BTreeSet::new();
    for (name, role) in &documents {
        if let Some(key) = check_document(api, name, role, checks).await {
            keys.insert(key);
        }
    }
    for key in keys {
        checks.push(check_data_key(api, &key).await);
    }
}

/// "direct" or "via http://proxy:3128 (HTTPS_PROXY)" for a URL.
fn route_text(network: &crate::net::Network, url: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return "direct".to_owned();
    };
    let tls = matches!(uri.scheme_str(), Some("https" | "wss"));
    match network.proxy().route(tls, uri.host().unwrap_or_default()) {
        crate::net::Route::Direct => "direct".to_owned(),
        crate::net::Route::Via(p) => format!("via {p} ({})", p.origin()),
    }
}

/// Why a document is checked, which decides what is expected of it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// A class's shell document.
    Shell(String),
    /// A class's port-forwarding document.
    Forward(String),
    /// The account preferences.
    Preferences,
}

async fn documents_to_check(
    api: &dyn SsmApi,
    config: &Config,
    checks: &mut Vec<Check>,
) -> Vec<(String, Role)> {
    let mut out: Vec<(String, Role)> = Vec::new();
    let mut add = |name: &str, role: Role| {
        if !out.iter().any(|(n, _)| n == name) {
            out.push((name.to_owned(), role));
        }
    };
    if config.classes.is_empty() {
        match api
            .list_documents(&TagFilter {
                key: CLASS_TAG.to_owned(),
                values: Vec::new(),
            })
            .await
        {
            Ok(docs) if !docs.is_empty() => {
                let classes: Vec<String> = docs
                    .iter()
                    .map(|d| {
                        let class = d.tags.get(CLASS_TAG).cloned().unwrap_or_default();
                        format!("{class} ({})", d.name)
                    })
                    .collect();
                checks.push(Check::pass(
                    "classes",
                    format!("none configured; tagged documents: {}", classes.join(", ")),
                ));
                for d in &docs {
                    let class = d.tags.get(CLASS_TAG).cloned().unwrap_or_default();
                    add(&d.name, Role::Shell(class));
                }
            }
            Ok(_) => checks.push(
                Check::warn(
                    "classes",
                    format!("none configured and no session document is tagged {CLASS_TAG}"),
                )
                .hint("configure [classes.NAME], or tag each class's session document ssmtui:class=<name>"),
            ),
            Err(e) => checks.push(
                Check::warn("classes", format!("none configured; cannot list tagged documents: {e}"))
                    .hint("configure [classes.NAME] in the config"),
            ),
        }
    } else {
        checks.push(Check::pass(
            "classes",
            format!(
                "configured: {}",
                config
                    .classes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
        for (name, class) in &config.classes {
            add(&class.document, Role::Shell(name.clone()));
        }
        for (name, class) in &config.classes {
            for doc in &class.forward_documents {
                add(doc, Role::Forward(name.clone()));
            }
        }
    }
    add(PREFERENCES_DOCUMENT, Role::Preferences);
    out
}

/// Checks one document; returns its `kmsKeyId` when it names one.
async fn check_document(
    api: &dyn SsmApi,
    name: &str,
    role: &Role,
    checks: &mut Vec<Check>,
) -> Option<String> {
    let label = match role {
        Role::Shell(class) => format!("shell document of class {class}"),
        Role::Forward(class) => format!("port-forwarding document of class {class}"),
        Role::Preferences => "account preferences".to_owned(),
    };
    let content = match api.get_document(name).await {
        Ok(c) => c,
        Err(e @ AwsError::NotFound { .. }) => {
            let check = Check::fail(name, format!("{label}: does not exist ({e})"));
            checks.push(match role {
                Role::Preferences => Check {
                    status: Status::Warn,
                    ..check.hint("the account has no Session Manager preferences; `aws ssm update-document` or the console's Preferences page creates them")
                },
                _ => check.hint("fix the document name in [classes], or check the region"),
            });
            return None;
        }
        Err(e) => {
            checks.push(
                Check::fail(name, format!("{label}: cannot read it: {e}")).hint(
                    "doctor needs ssm:GetDocument and ssm:DescribeDocument on the class documents",
                ),
            );
            return None;
        }
    };
    let described = api.describe_document(name).await;
    let json: Value = serde_json::from_str(&content).unwrap_or(Value::Null);
    let session_type = json.get("sessionType").and_then(Value::as_str);
    let expected = match role {
        Role::Forward(_) => "Port",
        _ => "Standard_Stream",
    };
    let doc_type = described
        .as_ref()
        .ok()
        .and_then(|d| d.document_type.clone());
    checks.push(match (doc_type.as_deref(), session_type) {
        (Some("Session"), Some(t)) if t == expected => {
            Check::pass(name, format!("{label}: a {t} Session document"))
        }
        (Some("Session") | None, t) if described.is_err() && t == Some(expected) => Check::warn(
            name,
            format!("{label}: sessionType {expected}, but DescribeDocument failed"),
        )
        .hint("doctor needs ssm:DescribeDocument to confirm the document type"),
        (Some(other), _) if other != "Session" => Check::fail(
            name,
            format!("{label}: a {other} document, not a Session document"),
        )
        .hint("Session Manager only starts sessions with Session documents"),
        (_, t) => Check::fail(
            name,
            format!(
                "{label}: sessionType is {}, expected {expected}",
                t.unwrap_or("missing")
            ),
        )
        .hint(match role {
            Role::Forward(_) => {
                "forward_documents must be port-forwarding (sessionType Port) documents"
            }
            _ => "a class's shell document must have sessionType Standard_Stream",
        }),
    });
    if matches!(role, Role::Forward(_)) {
        return None;
    }
    let inputs = json.get("inputs").cloned().unwrap_or(Value::Null);
    let soften = |c: Check| match (role, c.status) {
        // The preferences only apply to sessions without a document; see the module docs.
        (Role::Preferences, Status::Fail) => Check {
            status: Status::Warn,
            ..c
        },
        _ => c,
    };
    for check in settings_checks(name, &inputs) {
        checks.push(soften(check));
    }
    if matches!(role, Role::Shell(_)) {
        checks.extend(transcript_check(api, name, &content).await);
    }
    Some(str_input(&inputs, "kmsKeyId")).filter(|k| !k.is_empty())
}

/// Whether the caller can read the transcripts a logging shell document produces: the newest
/// ended session of that document (the caller's own first) is read as `ssmtui logs` would.
async fn transcript_check(api: &dyn SsmApi, name: &str, content: &str) -> Option<Check> {
    use crate::transcripts::{Location, TranscriptError, fetch};
    if !Location::from_document(content, "-").is_logged() {
        // The logging check has said so already.
        return None;
    }
    let label = format!("{name}: transcripts");
    let mut sample = None;
    for owner_self in [true, false] {
        if let Ok(list) = api
            .describe_sessions(crate::aws::SessionState::History, owner_self)
            .await
            && let Some(s) = list
                .into_iter()
                .find(|s| s.document.as_deref() == Some(name))
        {
            sample = Some(s);
            break;
        }
    }
    let Some(session) = sample else {
        return Some(
            Check::warn(
                label,
                "no ended session of this document to test reading its transcript with",
            )
            .hint("after a session with this class, doctor tries to read its transcript as `ssmtui logs` does"),
        );
    };
    let location = Location::from_document(content, &session.id);
    let source = location.choose(None, false)?;
    Some(
        match fetch(api, &session.id, &location, source, false).await {
            Ok(_) => Check::pass(
                label,
                format!(
                    "readable: session {} from {}",
                    session.id,
                    location.describe()
                ),
            ),
            Err(e @ TranscriptError::Aws(AwsError::AccessDenied { .. })) => {
                let hint = e.hints().into_iter().next().unwrap_or_default();
                Check::warn(label, format!("cannot read session {}: {e}", session.id)).hint(hint)
            }
            Err(e) => {
                let hint = e.hints().into_iter().next().unwrap_or_default();
                Check::warn(label, format!("session {}: {e}", session.id)).hint(hint)
            }
        },
    )
}

fn str_input(inputs: &Value, key: &str) -> String {
    match inputs.get(key) {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn bool_input(inputs: &Value, key: &str) -> bool {
    match inputs.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The posture checks on a shell document's `inputs` (also used for the preferences).
pub fn settings_checks(name: &str, inputs: &Value) -> Vec<Check> {
    let mut out = Vec::new();
    let user = str_input(inputs, "runAsDefaultUser");
    out.push(if bool_input(inputs, "runAsEnabled") && !user.is_empty() {
        Check::pass(format!("{name}: run-as"), format!("runs as {user}"))
    } else {
        Check::fail(
            format!("{name}: run-as"),
            "runAsEnabled with a runAsDefaultUser is not set: sessions run as ssm-user",
        )
        .hint("set runAsEnabled: true and runAsDefaultUser to the class's shared user")
    });

    let bucket = str_input(inputs, "s3BucketName");
    let group = str_input(inputs, "cloudWatchLogGroupName");
    let s3 = !bucket.is_empty() && bool_input(inputs, "s3EncryptionEnabled");
    let cw = !group.is_empty() && bool_input(inputs, "cloudWatchEncryptionEnabled");
    out.push(match (s3, cw) {
        (true, true) => Check::pass(
            format!("{name}: logging"),
            format!("encrypted logs to S3 {bucket} and CloudWatch {group}"),
        ),
        (true, false) => Check::pass(
            format!("{name}: logging"),
            format!("encrypted logs to S3 {bucket}"),
        ),
        (false, true) => Check::pass(
            format!("{name}: logging"),
            format!("encrypted logs to CloudWatch {group}"),
        ),
        (false, false) if bucket.is_empty() && group.is_empty() => {
            Check::fail(format!("{name}: logging"), "sessions are not logged")
                .hint("set s3BucketName with s3EncryptionEnabled, and/or cloudWatchLogGroupName with cloudWatchEncryptionEnabled")
        }
        (false, false) => Check::fail(
            format!("{name}: logging"),
            "session logs are not encrypted (s3EncryptionEnabled / cloudWatchEncryptionEnabled is off)",
        )
        .hint("turn on s3EncryptionEnabled or cloudWatchEncryptionEnabled for the configured destination"),
    });

    let key = str_input(inputs, "kmsKeyId");
    out.push(if key.is_empty() {
        Check::fail(
            format!("{name}: kms"),
            "kmsKeyId is not set: session data is only TLS-protected",
        )
        .hint("set kmsKeyId to a KMS key the class's users may GenerateDataKey on")
    } else {
        Check::pass(
            format!("{name}: kms"),
            format!("session data encrypted with {key}"),
        )
    });

    let idle = str_input(inputs, "idleSessionTimeout");
    out.push(match idle.parse::<u64>() {
        Ok(n) if (1..=MAX_IDLE_MINUTES).contains(&n) => {
            Check::pass(format!("{name}: idle timeout"), format!("{n} minutes"))
        }
        Ok(n) => Check::fail(
            format!("{name}: idle timeout"),
            format!("{n} minutes, more than {MAX_IDLE_MINUTES}"),
        )
        .hint(format!(
            "set idleSessionTimeout to at most {MAX_IDLE_MINUTES}"
        )),
        Err(_) if idle.is_empty() => Check::warn(
            format!("{name}: idle timeout"),
            "not set (the AWS default is 20 minutes)",
        )
        .hint("set idleSessionTimeout explicitly"),
        Err(_) => Check::fail(
            format!("{name}: idle timeout"),
            format!("\"{idle}\" is not a number of minutes"),
        )
        .hint(format!("set idleSessionTimeout to 1..{MAX_IDLE_MINUTES}")),
    });

    let max = str_input(inputs, "maxSessionDuration");
    out.push(match max.parse::<u64>() {
        Ok(n) if (1..=1440).contains(&n) => {
            Check::pass(format!("{name}: max duration"), format!("{n} minutes"))
        }
        _ if max.is_empty() => Check::fail(
            format!("{name}: max duration"),
            "maxSessionDuration is not set: sessions can run forever while active",
        )
        .hint("set maxSessionDuration (1 to 1440 minutes)"),
        _ => Check::fail(
            format!("{name}: max duration"),
            format!("\"{max}\" is not 1 to 1440 minutes"),
        )
        .hint("set maxSessionDuration (1 to 1440 minutes)"),
    });
    out
}

/// GenerateDataKey with a placeholder session context. A success proves the key exists and the
/// caller may make session data keys; a denial may only mean the key policy demands a live
/// session's context, which doctor cannot give without starting one.
async fn check_data_key(api: &dyn SsmApi, key: &str) -> Check {
    // The key id or alias, not the whole ARN, keeps the report's name column narrow.
    let short = key.rsplit_once(":key/").map_or(key, |(_, id)| id);
    let name = format!("kms {short}");
    let context: HashMap<String, String> = [
        ("aws:ssm:SessionId", "ssmtui-doctor"),
        ("aws:ssm:TargetId", "ssmtui-doctor"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    match api.generate_data_key(key, &context).await {
        Ok(_) => Check::pass(
            name,
            format!("GenerateDataKey on {key} works: the key exists and you may make session data keys"),
        ),
        Err(e @ AwsError::AccessDenied { .. }) => Check::warn(
            name,
            format!("GenerateDataKey on {key} with a placeholder session context was denied ({e})"),
        )
        .hint("this proves only that KMS answers: the key policy may allow data keys just for a live session's context (aws:ssm:SessionId), or you lack kms:GenerateDataKey; `ssmtui connect` will tell"),
        Err(e @ AwsError::NotFound { .. }) => Check::fail(name, format!("the key does not exist: {e}"))
            .hint("set kmsKeyId in the document to an existing key in this region"),
        Err(e) => Check::fail(name, format!("GenerateDataKey failed: {e}"))
            .hint("sessions with KMS encryption need kms:GenerateDataKey on this key"),
    }
}

/// Whether `path` (a directory when `dir`, else a file) can be written, without changing it:
/// a probe file is created and removed in the directory; an existing file is opened for append.
pub fn writable(name: &str, path: &Path, dir: bool) -> Check {
    let directory = if dir { Some(path) } else { path.parent() };
    let probe = |d: &Path| -> std::io::Result<()> {
        crate::config::paths::create_private_dir(d)?;
        let file = d.join(format!(".ssmtui-doctor-{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)?;
        std::fs::remove_file(&file)
    };
    let result = match directory {
        Some(d) => probe(d).and_then(|()| {
            if !dir && path.exists() {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map(|_| ())
            } else {
                Ok(())
            }
        }),
        None => Err(std::io::Error::other("no parent directory")),
    };
    match result {
        Ok(()) => Check::pass(name, format!("{} is writable", path.display())),
        Err(e) => {
            Check::fail(name, format!("{} is not writable: {e}", path.display())).hint(if dir {
                "set SSMTUI_STATE_DIR to a writable directory"
            } else {
                "fix the permissions, or point [audit] path at a writable file"
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Identity;
    use crate::aws::fake::FakeApi;

    const GOOD: &str = r#"{"schemaVersion":"1.0","sessionType":"Standard_Stream","inputs":{
        "s3BucketName":"logs","s3EncryptionEnabled":true,"cloudWatchLogGroupName":"",
        "cloudWatchEncryptionEnabled":true,"kmsKeyId":"alias/k","runAsEnabled":true,
        "runAsDefaultUser":"ssm-sudo","idleSessionTimeout":"20","maxSessionDuration":"60"}}"#;
    const PREFS: &str = r#"{"schemaVersion":"1.0","sessionType":"Standard_Stream","inputs":{
        "s3BucketName":"","kmsKeyId":"","runAsEnabled":false,"idleSessionTimeout":"20",
        "maxSessionDuration":""}}"#;
    const PORT: &str = r#"{"schemaVersion":"1.0","sessionType":"Port","inputs":{}}"#;

    fn fake(sudo: &str) -> FakeApi {
        let fake = FakeApi::default();
        {
            let mut s = fake.state.lock().unwrap();
            s.identity = Some(Identity {
                account: "123456789012".into(),
                arn: "arn:aws:sts::123456789012:assumed-role/R/alice".into(),
                user_id: "AROA:alice".into(),
            });
            s.documents.insert("SSM-sudo".into(), sudo.into());
            s.documents
                .insert(PREFERENCES_DOCUMENT.into(), PREFS.into());
            s.documents
                .insert("AWS-StartPortForwardingSession".into(), PORT.into());
        }
        fake
    }

    fn config() -> Config {
        Config::parse(
            r#"
            [classes.sudo]
            document = "SSM-sudo"
            forward_documents = ["AWS-StartPortForwardingSession"]
            principals = ["*/alice"]
            "#,
            Path::new("t.toml"),
        )
        .unwrap()
    }

    fn inputs<'a>(config: &'a Config, dir: &Path) -> Inputs<'a> {
        Inputs {
            config: ConfigState::Loaded {
                config,
                source: "t.toml is valid".into(),
            },
            effective: config,
            region: Ok("eu-west-1".into()),
            ssmmessages: HostCheck::Overridden,
            log_dir: dir.join("logs"),
            audit_file: dir.join("audit.jsonl"),
        }
    }

    #[tokio::test]
    async fn good_documents_pass_and_preferences_only_warn() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config();
        let api = fake(GOOD);
        {
            // An ended session of the class document, its transcript in the bucket.
            let mut s = api.state.lock().unwrap();
            s.sessions.push(crate::aws::SessionSummary {
                id: "alice-1".into(),
                target: "i-1".into(),
                status: "Terminated".into(),
                start: None,
                end: None,
                document: Some("SSM-sudo".into()),
                owner: None,
                reason: None,
            });
            s.objects
                .insert(("logs".into(), "alice-1.log".into()), b"$ ls\r\n".to_vec());
        }
        let report = run(Some(&api), &inputs(&cfg, dir.path())).await;
        assert!(
            report
                .text()
                .contains("pass  SSM-sudo: transcripts               readable: session alice-1 from s3://logs/alice-1.log"),
            "{}",
            report.text()
        );
        assert_eq!(report.failed(), Vec::<&str>::new(), "{}", report.text());
        assert_eq!(report.exit_code(), 0);
        let warned: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| c.status == Status::Warn)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            warned,
            [
                "endpoint ssmmessages",
                "SSM-SessionManagerRunShell: run-as",
                "SSM-SessionManagerRunShell: logging",
                "SSM-SessionManagerRunShell: kms",
                "SSM-SessionManagerRunShell: max duration",
            ],
            "{}",
            report.text()
        );
        assert!(
            report.text().contains("pass  kms alias/k"),
            "{}",
            report.text()
        );
    }

    #[tokio::test]
    async fn weak_document_fails_exactly_where_weak() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config();
        let weak = GOOD
            .replace(
                "\"s3EncryptionEnabled\":true",
                "\"s3EncryptionEnabled\":false",
            )
            .replace("\"runAsEnabled\":true", "\"runAsEnabled\":false")
            .replace(
                "\"idleSessionTimeout\":\"20\"",
                "\"idleSessionTimeout\":\"60\"",
            );
        let api = fake(&weak);
        let report = run(Some(&api), &inputs(&cfg, dir.path())).await;
        assert_eq!(
            report.failed(),
            [
                "SSM-sudo: run-as",
                "SSM-sudo: logging",
                "SSM-sudo: idle timeout"
            ],
            "{}",
            report.text()
        );
        assert_eq!(report.exit_code(), 1);
    }

    #[tokio::test]
    async fn failures_pick_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config();
        let api = fake(GOOD);
        api.state.lock().unwrap().identity = None;
        let report = run(Some(&api), &inputs(&cfg, dir.path())).await;
        assert_eq!(report.failed(), ["credentials"]);
        assert_eq!(report.exit_code(), 4);

        let mut broken = inputs(&cfg, dir.path());
        broken.config = ConfigState::Invalid {
            error: "bad".into(),
            hint: None,
        };
        broken.region = Err("no region".into());
        let report = run(None, &broken).await;
        assert_eq!(report.failed(), ["config", "region"]);
        assert_eq!(report.exit_code(), 2);

        // A missing class document fails; a missing key fails; unresolvable ssmmessages fails.
        let api = fake(GOOD);
        api.state.lock().unwrap().documents.remove("SSM-sudo");
        let mut real = inputs(&cfg, dir.path());
        real.ssmmessages = HostCheck::Unresolvable {
            host: "ssmmessages.eu-west-1.amazonaws.com".into(),
            error: "no DNS".into(),
        };
        let report = run(Some(&api), &real).await;
        assert_eq!(
            report.failed(),
            ["endpoint ssmmessages", "SSM-sudo"],
            "{}",
            report.text()
        );
    }

    #[test]
    fn unwritable_paths_fail() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        // A directory below a regular file cannot be created.
        let check = writable("log directory", &file.join("logs"), true);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            writable("audit log", &dir.path().join("a.jsonl"), false).status,
            Status::Pass
        );
    }
}
