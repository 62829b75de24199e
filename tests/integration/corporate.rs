//! Corporate networks: the sandbox over TLS with its own CA (`AWS_CA_BUNDLE`), and a real
//! HTTP proxy (proxy.py from PyPI, started here on port 0) in front of it, for the API calls
//! and the data channel alike.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ssmtui::sandbox::SandboxConfig;

use crate::common::sandbox::{SandboxEnv, fast};
use crate::common::{echo_server, python_has, require_tool};

const CLASSES: &str = r#"
[classes.sudo]
document = "SSM-sudo"
principals = ["arn:aws:sts::*:assumed-role/AWSReservedSSO_PlatformAdmin_*/*"]
forward_documents = ["AWS-StartPortForwardingSession"]
"#;

/// A sandbox serving HTTPS and `wss://` with a CA kept in the test's home.
fn tls_sandbox(config: &str) -> SandboxEnv {
    SandboxEnv::blocking(
        config,
        SandboxConfig {
            tls_dir: Some(PathBuf::from("sandbox-ca")),
            ..fast()
        },
    )
}

fn run(
    env: &SandboxEnv,
    extra: &[(&str, &str)],
    args: &[&str],
    stdin: &[u8],
) -> (i32, Vec<u8>, String) {
    let mut cmd = env.cmd("alice");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.args(args).write_stdin(stdin.to_vec()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The API, a shell and a port session, all over TLS, trusting the sandbox's CA through
/// `AWS_CA_BUNDLE` (the environment [`SandboxEnv::env`] gives every child).
#[test]
fn the_api_a_shell_and_a_port_session_work_over_tls() {
    let env = tls_sandbox(CLASSES);
    assert!(env.sb().endpoint_url().starts_with("https://"));
    let target = env.linux_name();

    let (code, out, err) = run(&env, &[], &["list", "--json"], b"");
    assert_eq!(code, 0, "{err}");
    assert!(String::from_utf8_lossy(&out).contains(&target), "{err}");

    let (code, out, err) = run(
        &env,
        &[],
        &["connect", &target],
        b"echo over-tls-$((6*7))\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8_lossy(&out).trim(), "over-tls-42", "{err}");

    let port = echo_server();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (code, out, err) = run(&env, &[], &["proxy", &target, &port.to_string()], &data);
    assert_eq!(code, 0, "{err}");
    assert!(
        out == data,
        "{} bytes back of {}; {err}",
        out.len(),
        data.len()
    );
    // Both sessions ran over wss:// (the only data channel URL a TLS sandbox hands out).
    assert_eq!(env.audit_lines().len(), 4);
}

/// A bundle that is named but missing is a usage error naming the setting; no bundle at all
/// is a certificate error that says what was trusted and how to add a CA.
#[test]
fn a_missing_or_untrusted_ca_is_a_clear_error() {
    let env = tls_sandbox(CLASSES);
    let (code, _, err) = run(
        &env,
        &[("AWS_CA_BUNDLE", "/nonexistent/corp-ca.pem")],
        &["list"],
        b"",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot use the CA bundle /nonexistent/corp-ca.pem (from AWS_CA_BUNDLE)"),
        "{err}"
    );
    let (code, _, err) = run(&env, &[("AWS_CA_BUNDLE", "")], &["list"], b"");
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("UnknownIssuer") && err.contains("trusted: the system roots"),
        "{err}"
    );
    assert!(err.contains("AWS_CA_BUNDLE=/path/ca.pem"), "{err}");

    // The profile's ca_bundle is read as the AWS CLI reads it.
    let ca = env.sb().ca_bundle().unwrap().display().to_string();
    std::fs::write(
        env.home.path().join("aws-config"),
        format!("[default]\nca_bundle = {ca}\n"),
    )
    .unwrap();
    let (code, _, err) = run(&env, &[("AWS_CA_BUNDLE", "")], &["list"], b"");
    assert_eq!(code, 0, "{err}");
}

/// proxy.py on loopback port 0, its access log in a file.
struct ProxyPy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ProxyPy {
    fn start(dir: &Path, basic_auth: Option<&str>) -> Option<Self> {
        Self::start_with(dir, basic_auth, &[])
    }

    fn start_with(dir: &Path, basic_auth: Option<&str>, extra: &[&Path]) -> Option<Self> {
        let tag = format!("{}-{}", basic_auth.is_some(), extra.len());
        let port_file = dir.join(format!("proxy-{tag}.port"));
        let log = dir.join(format!("proxy-{tag}.log"));
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "proxy", "--hostname", "127.0.0.1", "--port", "0"])
            .args(["--num-workers", "1", "--num-acceptors", "1"])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log-file")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(auth) = basic_auth {
            cmd.args(["--basic-auth", auth]);
        }
        if let [cert, key] = extra {
            cmd.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
        }
        let child = cmd.spawn().ok()?;
        let mut me = Self {
            child,
            port: 0,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Ok(port) = text.trim().parse()
            {
                me.port = port;
                return Some(me);
            }
            if me.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn url(&self, auth: &str) -> String {
        format!("http://{auth}127.0.0.1:{}", self.port)
    }

    /// CONNECT requests it has logged (it logs each when the tunnel closes: wait a little).
    fn connects(&self, at_least: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(" CONNECT 127.0.0.1:"))
                .count();
            if n >= at_least || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ProxyPy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Through proxy.py (CONNECT): the API calls and the data channel both go through it (its
/// log counts the tunnels); with Basic auth a missing password is a 407 error naming the
/// proxy, the right one works and is never shown; NO_PROXY and the default loopback rule
/// bypass it.
#[test]
fn api_and_data_channel_go_through_an_http_proxy() {
    if !require_tool(
        python_has("proxy"),
        "proxy.py (pip install proxy.py)",
        "api_and_data_channel_go_through_an_http_proxy",
    ) {
        return;
    }
    let config = format!("{CLASSES}\n[aws]\nproxy_loopback = true\n");
    let env = tls_sandbox(&config);
    let target = env.linux_name();
    let dir = tempfile::tempdir().unwrap();

    let open = ProxyPy::start(dir.path(), None).expect("proxy.py starts");
    let via = [("HTTPS_PROXY", open.url(""))];
    let via: Vec<(&str, &str)> = via.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, out, err) = run(&env, &via, &["connect", &target], b"echo via-proxy\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8_lossy(&out).trim(), "via-proxy");
    // Both kinds of traffic use the proxy: `list` makes API calls only, and a shell whose API
    // calls go direct (to `localhost`, exempted by NO_PROXY) adds its websocket's tunnel.
    let tunnels = open.connects(1);
    assert!(tunnels >= 1, "no CONNECT logged");
    let (code, _, err) = run(&env, &via, &["list"], b"");
    assert_eq!(code, 0, "{err}");
    let after_list = open.connects(tunnels + 1);
    assert!(after_list > tunnels, "list's API calls went direct");
    let by_name = env.sb().endpoint_url().replace("127.0.0.1", "localhost");
    let (code, _, err) = run(
        &env,
        &[
            ("HTTPS_PROXY", &open.url("")),
            ("NO_PROXY", "localhost"),
            ("AWS_ENDPOINT_URL", &by_name),
        ],
        &["connect", &target],
        b"echo ws-only\n",
    );
    assert_eq!(code, 0, "{err}");
    let after_shell = open.connects(after_list + 1);
    assert!(after_shell > after_list, "the websocket went direct");

    // doctor says, per service, where the calls go, which setting chose it, and the route.
    let endpoint = env.sb().endpoint_url();
    let (code, out, err) = run(
        &env,
        &[
            ("HTTPS_PROXY", &open.url("")),
            ("AWS_ENDPOINT_URL_SSM", &endpoint),
        ],
        &["doctor"],
        b"",
    );
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 0, "{out}{err}");
    let via = format!("via {} (HTTPS_PROXY)", open.url(""));
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some("endpoint") && l.contains(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("ssm ").contains(&format!("{endpoint} (AWS_ENDPOINT_URL_SSM), {via}")),
        "{out}"
    );
    assert!(
        line("ec2 ").contains(&format!("{endpoint} (AWS_ENDPOINT_URL), {via}")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("pass  proxy")
            && l.contains("(HTTPS_PROXY); loopback included")),
        "{out}"
    );
    let ca = env.sb().ca_bundle().unwrap().display().to_string();
    assert!(
        out.contains(&format!(
            "the system roots and {ca} (AWS_CA_BUNDLE, 1 certificate)"
        )),
        "{out}"
    );

    // NO_PROXY wins: a dead proxy is never tried.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let (code, _, err) = run(
        &env,
        &[("HTTPS_PROXY", &dead), ("NO_PROXY", "127.0.0.1")],
        &["connect", &target],
        b"true\n",
    );
    assert_eq!(code, 0, "{err}");
    // Without the dead proxy bypassed, its absence is the error, named.
    let (code, _, err) = run(&env, &[("HTTPS_PROXY", &dead)], &["list"], b"");
    assert_ne!(code, 0);
    assert!(err.contains("127.0.0.1"), "{err}");

    let guarded = ProxyPy::start(dir.path(), Some("carol:s3cret-pw")).expect("proxy.py starts");
    let (code, _, err) = run(&env, &[("HTTPS_PROXY", &guarded.url(""))], &["list"], b"");
    // The same error and exit code as the data channel's 407.
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!(
            "the proxy {} refused the request: it needs credentials (407)",
            guarded.url("")
        )),
        "{err}"
    );
    let with = guarded.url("carol:s3cret-pw@");
    let (code, out, err) = run(
        &env,
        &[("HTTPS_PROXY", &with)],
        &["connect", &target],
        b"echo authed\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8_lossy(&out).trim(), "authed");
    assert!(guarded.connects(2) >= 2);
    assert!(!env.logs_text().contains("s3cret-pw") && !err.contains("s3cret-pw"));
}

/// The data channel alone through a proxy that refuses its credentials (the API calls go to
/// `localhost`, which NO_PROXY exempts; the stream URL names 127.0.0.1): the 407 is one error
/// line naming the proxy, not its password.
#[test]
fn a_refused_tunnel_names_the_proxy_and_not_its_password() {
    if !require_tool(
        python_has("proxy"),
        "proxy.py (pip install proxy.py)",
        "a_refused_tunnel_names_the_proxy_and_not_its_password",
    ) {
        return;
    }
    let env = tls_sandbox(&format!("{CLASSES}\n[aws]\nproxy_loopback = true\n"));
    let target = env.linux_name();
    let dir = tempfile::tempdir().unwrap();
    let guarded = ProxyPy::start(dir.path(), Some("carol:right")).expect("proxy.py starts");
    let wrong = guarded.url("carol:wrong-pw@");
    let by_name = env.sb().endpoint_url().replace("127.0.0.1", "localhost");
    let (code, _, err) = run(
        &env,
        &[
            ("HTTPS_PROXY", &wrong),
            ("NO_PROXY", "localhost"),
            ("AWS_ENDPOINT_URL", &by_name),
        ],
        &["connect", &target],
        b"true\n",
    );
    assert_eq!(code, 4, "{err}");
    assert!(!err.contains("wrong-pw"), "{err}");
    assert!(
        err.contains(&format!(
            "the proxy http://carol:***@127.0.0.1:{} refused the request: it needs credentials (407)",
            guarded.port
        )),
        "{err}"
    );
    assert!(err.contains("check the user name and password"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
}

/// A loopback port with nothing listening.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `ssmtui forward` through proxy.py: the listener carries bytes to a loopback service on the
/// instance, and its session's websocket is one more tunnel in the proxy's log.
#[test]
fn a_forward_goes_through_the_proxy_too() {
    use std::io::BufRead as _;
    if !require_tool(
        python_has("proxy"),
        "proxy.py (pip install proxy.py)",
        "a_forward_goes_through_the_proxy_too",
    ) {
        return;
    }
    let env = tls_sandbox(&format!("{CLASSES}\n[aws]\nproxy_loopback = true\n"));
    let target = env.linux_name();
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyPy::start(dir.path(), None).expect("proxy.py starts");
    let echo = echo_server();
    // The API calls go to `localhost`, which NO_PROXY exempts: every tunnel in the proxy's log
    // is the forward's websocket (whose stream URL names 127.0.0.1).
    let by_name = env.sb().endpoint_url().replace("127.0.0.1", "localhost");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssmtui"))
        .env_clear()
        .envs(env.env("alice"))
        .env("HTTPS_PROXY", proxy.url(""))
        .env("NO_PROXY", "localhost")
        .env("AWS_ENDPOINT_URL", &by_name)
        .args(["forward", &target, &format!("0:{echo}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("forwarding ")
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("not a listener line: {line:?}"))
        .to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.write_all(b"forwarded through the proxy").unwrap();
    let mut back = [0u8; 27];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"forwarded through the proxy");
    drop(conn);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let tunnels = proxy.connects(1);
    assert!(tunnels >= 1, "the forward's websocket went direct");
}

/// An `https://` proxy (proxy.py speaking TLS to its clients, with a certificate from a CA of
/// the test's own): reached over TLS with the same trust as AWS — its CA must be in the bundle.
#[test]
fn an_https_proxy_is_reached_over_tls_with_the_same_trust() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    if !require_tool(
        python_has("proxy"),
        "proxy.py (pip install proxy.py)",
        "an_https_proxy_is_reached_over_tls_with_the_same_trust",
    ) {
        return;
    }
    let env = tls_sandbox(&format!("{CLASSES}\n[aws]\nproxy_loopback = true\n"));
    let target = env.linux_name();
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ssmtui test proxy CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, &ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let cert = dir.path().join("proxy.pem");
    let key = dir.path().join("proxy.key");
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    let sandbox_ca = std::fs::read_to_string(env.sb().ca_bundle().unwrap()).unwrap();
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, format!("{sandbox_ca}{ca_pem}")).unwrap();

    let proxy = ProxyPy::start_with(dir.path(), None, &[&cert, &key]).expect("proxy.py starts");
    let url = format!("https://127.0.0.1:{}", proxy.port);
    let bundle_text = bundle.display().to_string();
    let (code, out, err) = run(
        &env,
        &[("HTTPS_PROXY", &url), ("AWS_CA_BUNDLE", &bundle_text)],
        &["connect", &target],
        b"echo via-tls-proxy\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8_lossy(&out).trim(), "via-tls-proxy");
    assert!(
        proxy.connects(2) >= 2,
        "the proxy carried the API and the websocket"
    );

    // Without the proxy's CA, TLS to the proxy fails, and says so.
    let (code, _, err) = run(&env, &[("HTTPS_PROXY", &url)], &["list"], b"");
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("or its certificate is not trusted; trusted: the system roots and"),
        "{err}"
    );
}

/// The TUI behind a proxy: a shell opened from the list has its websocket go through proxy.py
/// (the API calls go to `localhost`, exempted by NO_PROXY, so the tunnel in the log is the
/// websocket's); and with a proxy that wants credentials, the TUI says so (its API calls go
/// through the proxy too).
#[test]
fn the_tui_works_behind_the_proxy() {
    use crate::common::tmux::Tmux;
    if !require_tool(
        python_has("proxy") && Tmux::available(),
        "proxy.py and tmux",
        "the_tui_works_behind_the_proxy",
    ) {
        return;
    }
    let env = tls_sandbox(&format!("{CLASSES}\n[aws]\nproxy_loopback = true\n"));
    let name = env.linux_name();
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyPy::start(dir.path(), None).expect("proxy.py starts");
    let bin = env!("CARGO_BIN_EXE_ssmtui");
    let by_name = env.sb().endpoint_url().replace("127.0.0.1", "localhost");
    let mut pane = env.env("alice");
    pane.extend([
        ("TERM", "xterm-256color".into()),
        ("PS1", "$ ".into()),
        ("HTTPS_PROXY", proxy.url("").into()),
        ("NO_PROXY", "localhost".into()),
        ("AWS_ENDPOINT_URL", by_name.into()),
    ]);
    let tmux = Tmux::start("tui-proxy", "p", &pane, 120, 30);
    tmux.run(&["set-option", "-g", "escape-time", "10"]);
    tmux.wait_for("the shell prompt", |s| s.trim_end().ends_with(['$', '#']));
    tmux.type_line(&format!("{bin}; echo \"EXIT=$?\""));
    tmux.wait_for("the instance list", |s| s.contains("Instances 40/40"));
    tmux.literal(&format!("/{name}"));
    tmux.keys(&["Enter"]);
    tmux.wait_text(&format!("filter {name}"));
    tmux.keys(&["Enter"]);
    tmux.wait_text("running as ssm-sudo");
    tmux.type_line("echo behind-the-proxy-$((6*7))");
    tmux.wait_text("behind-the-proxy-42");
    tmux.type_line("exit");
    tmux.wait_for("the list again", |s| s.contains("ended"));
    tmux.literal("q");
    tmux.wait_text("EXIT=0");
    assert!(
        proxy.connects(1) >= 1,
        "the TUI shell's websocket went direct"
    );

    // API calls through a proxy that wants credentials: the TUI shows the 407, naming it.
    let guarded = ProxyPy::start(dir.path(), Some("carol:pw")).expect("proxy.py starts");
    tmux.type_line(&format!(
        "HTTPS_PROXY={} NO_PROXY= AWS_ENDPOINT_URL={} {bin}; echo \"EXIT=$?\"",
        guarded.url(""),
        env.sb().endpoint_url()
    ));
    tmux.wait_for("the proxy's refusal", |s| s.contains("407"));
    tmux.literal("q");
}

/// pproxy (PyPI) serving SOCKS5 on loopback port 0; it logs every tunnel to a file.
struct Pproxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Pproxy {
    fn start(dir: &Path, auth: Option<&str>) -> Option<Self> {
        let log = dir.join(format!("pproxy-{}.log", auth.is_some()));
        let file = std::fs::File::create(&log).ok()?;
        let listen = format!(
            "socks5://127.0.0.1:0{}",
            auth.map_or(String::new(), |a| format!("#{a}"))
        );
        let child = Command::new("python3")
            .args(["-u", "-m", "pproxy", "-v", "-l", &listen])
            .stdout(file.try_clone().ok()?)
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .ok()?;
        let mut me = Self {
            child,
            port: 0,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // "Serving on ipv? 127.0.0.1:PORT by socks5"
            let text = std::fs::read_to_string(&me.log).unwrap_or_default();
            if let Some(port) = text
                .lines()
                .find_map(|l| l.strip_prefix("Serving on "))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
            {
                me.port = port;
                return Some(me);
            }
            if me.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn url(&self, scheme: &str, auth: &str) -> String {
        format!("{scheme}://{auth}127.0.0.1:{}", self.port)
    }

    /// Tunnels it has opened ("socks5 CLIENT -> DESTINATION").
    fn tunnels(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("socks5 ") && l.contains(" -> "))
            .count()
    }
}

impl Drop for Pproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Through a SOCKS5 proxy (pproxy): the API calls (our own HTTP client for the SDK, since the
/// SDK's has no SOCKS) and the data channel both go through it, over TLS to the sandbox;
/// `socks5://` and `socks5h://` alike. A proxy that wants credentials is one error line
/// naming it (exit 4, never the password); with them, everything works.
#[test]
fn api_and_data_channel_go_through_a_socks_proxy() {
    if !require_tool(
        python_has("pproxy"),
        "pproxy (pip install pproxy)",
        "api_and_data_channel_go_through_a_socks_proxy",
    ) {
        return;
    }
    let env = tls_sandbox(&format!("{CLASSES}\n[aws]\nproxy_loopback = true\n"));
    let target = env.linux_name();
    let dir = tempfile::tempdir().unwrap();
    let socks = Pproxy::start(dir.path(), None).expect("pproxy starts");

    let via = socks.url("socks5h", "");
    let (code, out, err) = run(&env, &[("ALL_PROXY", &via)], &["list", "--json"], b"");
    assert_eq!(code, 0, "{err}");
    assert!(String::from_utf8_lossy(&out).contains(&target), "{err}");
    let after_list = socks.tunnels();
    assert!(after_list >= 1, "list's API calls went direct");

    let via = socks.url("socks5", "");
    let (code, out, err) = run(
        &env,
        &[("HTTPS_PROXY", &via)],
        &["connect", &target],
        b"echo through-socks-$((6*7))\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8_lossy(&out).trim(), "through-socks-42");
    let after_shell = socks.tunnels();
    // The shell's API calls and its websocket.
    assert!(
        after_shell >= after_list + 2,
        "{after_list} then {after_shell}"
    );

    let port = echo_server();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let (code, out, err) = run(
        &env,
        &[("HTTPS_PROXY", &via)],
        &["proxy", &target, &port.to_string()],
        &data,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out == data, "{} bytes back of {}", out.len(), data.len());
    assert!(socks.tunnels() > after_shell);

    // doctor says the API calls go through it.
    let (code, out, err) = run(&env, &[("ALL_PROXY", &via)], &["doctor"], b"");
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("via {via} (ALL_PROXY)")), "{out}");

    let guarded = Pproxy::start(dir.path(), Some("carol:s3cret-pw")).expect("pproxy starts");
    let (code, _, err) = run(
        &env,
        &[("ALL_PROXY", &guarded.url("socks5h", ""))],
        &["list"],
        b"",
    );
    // pproxy hangs up on a client that offers no credentials (rather than answering "no
    // acceptable method"): a network error that says what to try.
    assert_eq!(code, 5, "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "the SOCKS proxy {} closed the connection during its handshake",
            guarded.url("socks5h", "")
        )),
        "{err}"
    );
    assert!(
        err.contains("put them in the URL: socks5h://USER:PASSWORD@HOST:PORT"),
        "{err}"
    );
    // It hangs up on a wrong password too (an RFC 1929 refusal, exit 4, is the unit test's).
    let (code, _, err) = run(
        &env,
        &[("ALL_PROXY", &guarded.url("socks5h", "carol:wrong@"))],
        &["list"],
        b"",
    );
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains(&guarded.url("socks5h", "carol:***@"))
            && err.contains("check the user name and password")
            && !err.contains("wrong"),
        "{err}"
    );
    let with = guarded.url("socks5h", "carol:s3cret-pw@");
    let (code, out, err) = run(
        &env,
        &[("ALL_PROXY", &with)],
        &["connect", &target],
        b"echo authed\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8_lossy(&out).trim(), "authed");
    assert!(guarded.tunnels() >= 2);
    assert!(!err.contains("s3cret-pw"));
    assert!(!env.logs_text().contains("s3cret-pw"));
}
