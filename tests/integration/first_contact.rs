//! What a new user sees first: errors without debug dumps, named causes with a next step, and
//! hints that only name options the command has.

use crate::common::sandbox::{SandboxEnv, fast};

/// Every `--flag` a text mentions.
fn flags_in(text: &str) -> Vec<String> {
    let mut flags: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

/// Without a configured class and without a terminal to choose one, `connect`, `forward` and
/// `proxy` fail with hints, and every flag a hint suggests exists in that subcommand's help.
#[test]
fn no_class_hints_name_only_flags_the_subcommand_has() {
    let env = SandboxEnv::blocking("", fast());
    let name = env.linux_name();
    let remote = format!("{name}:x");
    for args in [
        vec!["connect", name.as_str()],
        vec!["forward", name.as_str(), "0:80"],
        vec!["proxy", name.as_str(), "22"],
        vec!["exec", name.as_str(), "--", "true"],
        vec!["cp", "-", remote.as_str()],
    ] {
        let out = env.cmd("alice").args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("hint:"), "{args:?}: {stderr}");
        let help = env.cmd("alice").args([args[0], "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        for flag in flags_in(&stderr) {
            assert!(
                help.contains(&flag),
                "`{}` suggests {flag}, which its help does not have:\n{stderr}",
                args[0]
            );
        }
    }
}

/// Environment variables for a child.
type Env = Vec<(&'static str, String)>;

/// `ssmtui ARGS` with only `env` (plus PATH, an empty HOME, no instance metadata): exit code
/// and stderr.
fn run_isolated(home: &std::path::Path, env: &[(&str, String)], args: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ssmtui"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("SSMTUI_STATE_DIR", home.join("state"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a message shown to a user must never contain: Rust's `Debug` output of an error.
fn assert_no_debug_syntax(case: &str, text: &str) {
    for needle in ["{", "}", "Some(", "Custom", "kind:", "Error("] {
        assert!(
            !text.contains(needle),
            "{case}: the message contains debug syntax {needle:?}:\n{text}"
        );
    }
}

/// An `~/.aws/config` with two IAM Identity Center profiles, as `aws configure sso` writes it.
const SSO_CONFIG: &str = "[profile dev-admin]
sso_session = corp
sso_account_id = 111111111111
sso_role_name = Admin
region = eu-west-1

[profile prod-readonly]
sso_session = corp
sso_account_id = 222222222222
sso_role_name = ReadOnly
region = eu-west-1

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = eu-west-1
";

/// A server that answers every request with AWS's throttling error, in the JSON protocol's
/// shape (SSM) or EC2's XML one (the calls `list` makes).
async fn throttling_server() -> std::net::SocketAddr {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        if headers.contains_key("x-amz-target") {
            (
                StatusCode::BAD_REQUEST,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned(),
            )
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>1</RequestID></Response>".to_owned(),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A server that answers a TLS client hello with plain text.
async fn not_tls_server() -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    addr
}

/// Each way a first run fails says its cause and the next step in words, never in debug
/// syntax, with its documented exit code. The messages are snapshotted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_class_is_a_sentence_with_a_next_step() {
    let home = tempfile::tempdir().unwrap();
    let aws_dir = home.path().join(".aws");
    std::fs::create_dir_all(aws_dir.join("sso/cache")).unwrap();
    std::fs::write(aws_dir.join("config"), SSO_CONFIG).unwrap();
    // An SSO sign-in that expired yesterday (the cache file is named after the session).
    std::fs::write(
        aws_dir.join("sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json"),
        r#"{"accessToken":"expired","expiresAt":"2020-01-01T00:00:00Z","region":"eu-west-1","startUrl":"https://corp.awsapps.com/start"}"#,
    )
    .unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let throttling = throttling_server().await;
    let not_tls = not_tls_server().await;
    let keys = |endpoint: String| {
        vec![
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "secret".to_owned()),
            ("AWS_REGION", "eu-west-1".to_owned()),
            ("AWS_ENDPOINT_URL", endpoint),
        ]
    };
    let region = || vec![("AWS_REGION", "eu-west-1".to_owned())];
    let cases: Vec<(&str, Env, i32)> = vec![
        ("no credentials", region(), 4),
        (
            "unknown profile",
            vec![("AWS_PROFILE", "prod".to_owned())],
            2,
        ),
        (
            "expired SSO sign-in",
            vec![("AWS_PROFILE", "dev-admin".to_owned())],
            4,
        ),
        (
            "DNS failure",
            keys("http://ssm.nonexistent.invalid".to_owned()),
            5,
        ),
        (
            "connection refused",
            keys(format!("http://127.0.0.1:{closed}")),
            5,
        ),
        ("TLS failure", keys(format!("https://{not_tls}")), 5),
        ("throttling", keys(format!("http://{throttling}")), 5),
    ];
    let mut transcript = String::new();
    for (case, env, code) in cases {
        let dir = home.path().to_owned();
        let (got, stderr) =
            tokio::task::spawn_blocking(move || run_isolated(&dir, &env, &["list"]))
                .await
                .unwrap();
        assert_eq!(got, code, "{case}:\n{stderr}");
        assert!(stderr.starts_with("error: "), "{case}:\n{stderr}");
        assert!(stderr.contains("\nhint: "), "{case}: no hint:\n{stderr}");
        assert_no_debug_syntax(case, &stderr);
        if case == "throttling" {
            // Which of the concurrent calls is throttled first varies.
            assert!(stderr.starts_with("error: AWS is throttling "), "{stderr}");
            continue;
        }
        // Which of the concurrent calls fails first varies.
        let shown = stderr
            .replace("DescribeInstanceInformation", "OPERATION")
            .replace("DescribeInstances", "OPERATION")
            .replace(&format!("127.0.0.1:{closed}"), "127.0.0.1:PORT")
            .replace(&not_tls.to_string(), "127.0.0.1:PORT")
            .replace(&home.path().display().to_string(), "HOME");
        // The resolver's own words differ between machines (no such name, no network).
        let shown = match shown.find("(failed to lookup address information:") {
            Some(start) => {
                let end = shown[start..]
                    .find(')')
                    .map_or(shown.len(), |e| start + e + 1);
                format!("{}(RESOLVER){}", &shown[..start], &shown[end..])
            }
            None => shown,
        };
        transcript.push_str(&format!("## {case} (exit {got})\n{shown}\n"));
    }
    insta::assert_snapshot!("first_contact_errors", transcript);
}

/// Access denied by AWS (the sandbox's read-only identity starting a session) keeps AWS's
/// words and says who asked for what.
#[test]
fn access_denied_keeps_aws_words() {
    let env = SandboxEnv::blocking("", fast());
    let name = env.linux_name();
    let out = env
        .cmd("eve")
        .args(["connect", &name, "--document", "SSM-sudo"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.starts_with("error: AWS denied a session on "),
        "{stderr}"
    );
    assert!(
        stderr.contains("is not authorized to perform: ssm:StartSession"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    assert_no_debug_syntax("access denied", &stderr);
}
