//! A fleet sandbox: several accounts, each in several regions, behind one endpoint, as an
//! organisation with IAM Identity Center looks to a person with one profile per account.
//!
//! Every (account, region) pair is a whole sandbox of its own ([`RunningSandbox`]: its own
//! seeded world, sessions, keys and transcripts, on its own loopback listener). A front
//! listener takes every API request and hands it to the pair it is for, read from the request's
//! SigV4 credential scope as AWS reads it: the access key id picks the account (`NAME` is the
//! first account, `NAME@ACCOUNT` another; temporary keys are found where they were issued) and
//! the scope's region picks the region. A region the fleet does not serve answers as a region
//! the account has not enabled does: the service's invalid-token error. Data channels never
//! pass the front: a session's StreamUrl names its own pair's listener.
//!
//! The people are the same in every account, but not what they may do (see
//! [`super::identity::ACCOUNT_NAMES`]): bob is class sudo in `dev`, alice class no-sudo in
//! `audit`.
//!
//! [`FleetSandboxFactory`] builds ssmtui's clients for its profiles without any AWS config file
//! (`ssmtui demo --fleet`, the bench).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::identity::{self, ACCOUNT_IDS, ACCOUNT_NAMES, MAX_ACCOUNTS, SECRET_ACCESS_KEY};
use super::{RunningSandbox, Sandbox, SandboxConfig, SandboxError, http};

/// How to start a fleet sandbox.
#[derive(Debug, Clone)]
pub struct FleetSandboxConfig {
    /// Number of accounts, 1 to [`MAX_ACCOUNTS`].
    pub accounts: usize,
    /// Regions every account serves (at least one).
    pub regions: Vec<String>,
    /// Everything else, for every pair; `listen` is the front's address, `seed` the first
    /// pair's seed (the others derive theirs from it), `bucket_dir`/`homes_dir` are ignored
    /// (each pair keeps its own).
    pub base: SandboxConfig,
}

/// One (account, region) pair of a running fleet.
#[derive(Debug)]
pub struct Member {
    /// Index of the account in [`ACCOUNT_IDS`].
    pub account: usize,
    /// The region.
    pub region: String,
    /// The pair's sandbox.
    pub sandbox: RunningSandbox,
}

/// A fleet sandbox serving in the background; stops on [`RunningFleet::shutdown`] or when
/// dropped.
#[derive(Debug)]
pub struct RunningFleet {
    addr: SocketAddr,
    tls: bool,
    members: Vec<Member>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The seed of pair (account, region): the base seed for the first, distinct for the others.
pub fn member_seed(base: u64, account: usize, region: usize) -> u64 {
    base ^ ((account as u64) << 32 | region as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl RunningFleet {
    /// Starts every pair, then the front listener.
    pub async fn start(config: FleetSandboxConfig) -> Result<Self, SandboxError> {
        if config.accounts == 0 || config.accounts > MAX_ACCOUNTS {
            return Err(SandboxError::TooManyAccounts {
                asked: config.accounts,
                max: MAX_ACCOUNTS,
            });
        }
        let regions = if config.regions.is_empty() {
            vec![config.base.region.clone()]
        } else {
            config.regions.clone()
        };
        let front = tokio::net::TcpListener::bind(config.base.listen)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: config.base.listen,
                source,
            })?;
        let addr = front.local_addr().map_err(|source| SandboxError::Bind {
            addr: config.base.listen,
            source,
        })?;
        let mut members = Vec::new();
        for account in 0..config.accounts {
            for (r, region) in regions.iter().enumerate() {
                let sandbox = Sandbox::start(SandboxConfig {
                    listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    seed: member_seed(config.base.seed, account, r),
                    region: region.clone(),
                    account,
                    bucket_dir: None,
                    homes_dir: None,
                    ..config.base.clone()
                })
                .await?;
                members.push(Member {
                    account,
                    region: region.clone(),
                    sandbox,
                });
            }
        }
        let routes: Vec<Route> = members
            .iter()
            .map(|m| Route {
                account: m.account,
                region: m.region.clone(),
                state: m.sandbox.state().clone(),
                app: super::router(m.sandbox.state().clone()),
            })
            .collect();
        let tls = config.base.tls_dir.is_some();
        let app = Router::new().fallback(route).with_state(Arc::new(routes));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = match &config.base.tls_dir {
            Some(dir) => {
                let fail = |source| SandboxError::Tls {
                    dir: dir.clone(),
                    source,
                };
                let ca = super::tls::SandboxCa::load_or_create(dir).map_err(fail)?;
                let server = ca.server_config().map_err(fail)?;
                tokio::spawn(super::serve_tls(front, app, server, stop_rx))
            }
            None => tokio::spawn(super::serve_plain(front, app, stop_rx)),
        };
        tracing::info!(%addr, pairs = members.len(), "fleet sandbox listening");
        Ok(Self {
            addr,
            tls,
            members,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The front's URL, for every profile's `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Every (account, region) pair, accounts first.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The pair of account `index` in `region`.
    pub fn member(&self, account: usize, region: &str) -> Option<&RunningSandbox> {
        self.members
            .iter()
            .find(|m| m.account == account && m.region == region)
            .map(|m| &m.sandbox)
    }

    /// Number of accounts served.
    pub fn accounts(&self) -> usize {
        self.members
            .iter()
            .map(|m| m.account + 1)
            .max()
            .unwrap_or(0)
    }

    /// The regions served, in order.
    pub fn regions(&self) -> Vec<String> {
        let mut regions: Vec<String> = Vec::new();
        for m in &self.members {
            if !regions.contains(&m.region) {
                regions.push(m.region.clone());
            }
        }
        regions
    }

    /// The CA certificate to trust when serving TLS.
    pub fn ca_bundle(&self) -> Option<&Path> {
        self.members.first().and_then(|m| m.sandbox.ca_bundle())
    }

    /// Writes an AWS config file and a credentials file naming one profile per account,
    /// `sandbox-<name>` (`sandbox-prod`, `sandbox-dev`, …), signed in as `person` (`alice`,
    /// `bob`, `eve`), with the first region as each profile's own. Returns the two paths.
    pub fn write_profiles(&self, dir: &Path, person: &str) -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let mut config = String::new();
        let mut credentials = String::new();
        let first_region = self.regions().into_iter().next().unwrap_or_default();
        for account in 0..self.accounts() {
            let profile = profile_name(account);
            let who = identity::ACCOUNTS[account]
                .iter()
                .find(|i| i.name == person)
                .unwrap_or(&identity::ACCOUNTS[account][0]);
            config.push_str(&format!(
                "[profile {profile}]\nregion = {first_region}\nendpoint_url = {}\n",
                self.endpoint_url()
            ));
            if let Some(ca) = self.ca_bundle() {
                config.push_str(&format!("ca_bundle = {}\n", ca.display()));
            }
            config.push('\n');
            credentials.push_str(&format!(
                "[{profile}]\naws_access_key_id = {}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n\n",
                who.access_key_id()
            ));
        }
        let config_path = dir.join("aws-config");
        let credentials_path = dir.join("aws-credentials");
        std::fs::write(&config_path, config)?;
        std::fs::write(&credentials_path, credentials)?;
        Ok((config_path, credentials_path))
    }

    /// [`RunningFleet::write_profiles`] into `ssmtui-fleet-<port>` in the temp directory.
    pub fn write_profiles_in_temp(&self, person: &str) -> std::io::Result<(PathBuf, PathBuf)> {
        let dir = std::env::temp_dir().join(format!("ssmtui-fleet-{}", self.addr.port()));
        self.write_profiles(&dir, person)
    }

    /// The `[fleet]` section of an ssmtui config that lists this fleet, with an alias per
    /// account.
    pub fn fleet_toml(&self) -> String {
        let regions: Vec<String> = self.regions().iter().map(|r| format!("\"{r}\"")).collect();
        let mut text = format!(
            "[fleet]\nprofiles = [\"sandbox-*\"]\nregions = [{}]\n\n[fleet.aliases]\n",
            regions.join(", ")
        );
        for account in 0..self.accounts() {
            text.push_str(&format!(
                "\"{}\" = \"{}\"\n",
                ACCOUNT_IDS[account], ACCOUNT_NAMES[account]
            ));
        }
        text
    }

    /// Stops the front, then every pair.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        for m in std::mem::take(&mut self.members) {
            m.sandbox.shutdown().await;
        }
    }
}

impl Drop for RunningFleet {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The profile name of account `index` in the printed AWS config.
pub fn profile_name(index: usize) -> String {
    format!(
        "sandbox-{}",
        ACCOUNT_NAMES.get(index).copied().unwrap_or("other")
    )
}

/// What the front knows of a pair.
#[derive(Debug, Clone)]
struct Route {
    account: usize,
    region: String,
    state: super::SandboxState,
    app: Router,
}

/// The front: hands a request to the pair its credential scope names.
async fn route(State(routes): State<Arc<Vec<Route>>>, request: Request) -> Response {
    let (key, region) = http::key_and_region(request.headers());
    match pick(&routes, key.as_deref(), region.as_deref()) {
        Some(route) => {
            let mut app = route.app.clone();
            match tower_service::Service::call(&mut app, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
        None => {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            http::region_not_enabled(&parts.headers, &body)
        }
    }
}

/// The pair a request is for: by account (from the key) and region (from the scope).
fn pick<'a>(routes: &'a [Route], key: Option<&str>, region: Option<&str>) -> Option<&'a Route> {
    let region = region?;
    let in_region = || routes.iter().filter(move |r| r.region == region);
    let key = key.unwrap_or_default();
    // Temporary credentials are known only where AssumeRole issued them.
    if let Some(r) = in_region().find(|r| r.state.temporary_identity(key).is_some()) {
        return Some(r);
    }
    let account = identity::account_of_key(key).unwrap_or(0);
    in_region()
        .find(|m| m.account == account)
        // An account the fleet does not have: its first, which refuses the key.
        .or_else(|| in_region().next())
}

/// Clients for the fleet sandbox's profiles: each profile is an account, signed in as the
/// demo's person with that account's key; no AWS config file is read.
pub struct FleetSandboxFactory {
    pub endpoint: String,
    pub first_region: String,
    /// Profile name → access key id.
    pub keys: std::collections::BTreeMap<String, String>,
}

impl FleetSandboxFactory {
    /// Clients for the fleet sandbox at `endpoint` with `accounts` accounts, signed in as
    /// `person` in each.
    pub fn new(endpoint: String, first_region: String, accounts: usize, person: &str) -> Self {
        let keys = (0..accounts.min(identity::MAX_ACCOUNTS))
            .map(|a| {
                let who = identity::ACCOUNTS[a]
                    .iter()
                    .find(|i| i.name == person)
                    .unwrap_or(&identity::ACCOUNTS[a][0]);
                (profile_name(a), who.access_key_id())
            })
            .collect();
        Self {
            endpoint,
            first_region,
            keys,
        }
    }
}

#[async_trait::async_trait]
impl crate::aws::factory::ApiFactory for FleetSandboxFactory {
    async fn build(
        &self,
        profile: Option<String>,
        region: Option<String>,
    ) -> Result<Arc<dyn crate::aws::SsmApi>, crate::aws::AwsError> {
        let name = profile.unwrap_or_default();
        let key = self
            .keys
            .get(&name)
            .ok_or_else(|| crate::aws::AwsError::Config {
                message: format!("the demo has no profile \"{name}\""),
                hint: "the demo's profiles are sandbox-prod, sandbox-dev, …".to_owned(),
            })?;
        let aws = crate::config::AwsConfig {
            region: Some(region.unwrap_or_else(|| self.first_region.clone())),
            endpoint_url: Some(self.endpoint.clone()),
            ..crate::config::AwsConfig::default()
        };
        let api = crate::aws::sdk::SdkApi::with_static_credentials(
            &aws,
            key,
            &crate::secret::Secret::new(SECRET_ACCESS_KEY),
        )
        .await?;
        Ok(Arc::new(api))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_per_pair_and_the_first_keeps_its_own() {
        assert_eq!(member_seed(1, 0, 0), 1);
        let seeds: std::collections::BTreeSet<u64> = (0..3)
            .flat_map(|a| (0..2).map(move |r| member_seed(1, a, r)))
            .collect();
        assert_eq!(seeds.len(), 6);
    }

    #[test]
    fn keys_name_their_account() {
        assert_eq!(identity::account_of_key("alice"), Some(0));
        assert_eq!(identity::account_of_key("bob@210987654321"), Some(1));
        assert_eq!(identity::account_of_key("bob@999999999999"), None);
        let bob_dev = identity::by_access_key_in(1, "bob@210987654321").unwrap();
        assert_eq!(bob_dev.class, Some("sudo"));
        assert!(bob_dev.arn().starts_with("arn:aws:sts::210987654321:"));
        assert_eq!(bob_dev.access_key_id(), "bob@210987654321");
        assert!(identity::by_access_key_in(1, "bob").is_none());
        assert!(identity::by_access_key_in(0, "bob@210987654321").is_none());
        let alice_audit = identity::by_access_key_in(2, "alice@345678901234").unwrap();
        assert_eq!(alice_audit.class, Some("no-sudo"));
        assert_eq!(
            identity::by_access_key_in(0, "alice").unwrap().class,
            Some("sudo")
        );
    }
}
