//! [`SsmApi`] on the AWS SDK for Rust.
//!
//! Credentials and region come from the standard chain (environment, shared config and
//! credentials files, IAM Identity Center/SSO, assume-role, container and instance metadata),
//! narrowed by `--profile`/`--region` or `[aws]` in the config. Endpoints can be overridden for
//! all services (`[aws] endpoint_url`, `AWS_ENDPOINT_URL`) or per service (`[aws.endpoints]`,
//! `AWS_ENDPOINT_URL_SSM`, …), which is how the sandbox is reached. Every call is bounded by
//! `[aws] call_timeout_seconds`. The user agent carries `app/ssmtui-<version>` so CloudTrail
//! shows which client started a session.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{AppName, BehaviorVersion, Region, timeout::TimeoutConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};

use super::{
    AwsError, DataKey, DocumentSummary, EndpointInfo, Identity, Instance, LogPage, LogRecord,
    Service, SessionState, SessionSummary, SessionTarget, SsmApi, StartSessionRequest, TagFilter,
};
use crate::config::AwsConfig;
use crate::error::display_chain;
use crate::net::{NetError, NetSettings, Network};
use crate::secret::Secret;

/// The SDK clients for one profile and region.
#[derive(Debug, Clone)]
pub struct SdkApi {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    sts: aws_sdk_sts::Client,
    kms: aws_sdk_kms::Client,
    s3: aws_sdk_s3::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    profile: Option<String>,
    timeout_seconds: u64,
    region: String,
    network: Network,
    endpoints: Vec<EndpointInfo>,
}

impl SdkApi {
    /// Resolves credentials/region per the config and builds the clients. Nothing is called yet.
    pub async fn new(aws: &AwsConfig) -> Result<Self, AwsError> {
        Self::build(aws, None).await
    }

    /// Like [`SdkApi::new`], but with fixed credentials instead of the default chain: for the
    /// sandbox (`ssmtui demo`, tests), whose access key id selects the identity. The secret is
    /// only used to sign; it is never logged.
    pub async fn with_static_credentials(
        aws: &AwsConfig,
        access_key_id: &str,
        secret_access_key: &Secret,
    ) -> Result<Self, AwsError> {
        let creds = aws_credential_types::Credentials::new(
            access_key_id,
            secret_access_key.expose(),
            None,
            None,
            "ssmtui-static",
        );
        Self::build(aws, Some(creds)).await
    }

    async fn build(
        aws: &AwsConfig,
        credentials: Option<aws_credential_types::Credentials>,
    ) -> Result<Self, AwsError> {
        let profile = aws
            .profile
            .clone()
            .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()));
        if let (Some(p), None) = (&profile, &credentials) {
            check_profile_exists(p)?;
        }
        let timeout = Duration::from_secs(aws.call_timeout_seconds.max(1));
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .build(),
        );
        if let Some(name) = app_name() {
            loader = loader.app_name(name);
        }
        if let Some(profile) = &aws.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &aws.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &aws.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(creds) = credentials {
            loader = loader.credentials_provider(creds);
        }
        let network = Network::resolve(&NetSettings {
            ca_bundle: aws.ca_bundle.clone(),
            proxy: aws.proxy.clone(),
            proxy_loopback: aws.proxy_loopback,
            profile_ca_bundle: super::profiles::ca_bundle(profile.as_deref()),
        })
        .map_err(net_config_error)?;
        loader = loader.http_client(sdk_http_client(&network).map_err(net_config_error)?);
        let shared = loader.load().await;
        let region = shared
            .region()
            .map(ToString::to_string)
            .ok_or_else(|| AwsError::Config {
                message: "no AWS region is configured".to_owned(),
                hint: "pass --region NAME, set [aws] region in the config, or set AWS_REGION"
                    .to_owned(),
            })?;

        let endpoints = vec![
            endpoint_info(&shared, aws, "ssm", aws.endpoints.ssm.as_deref(), &region).await,
            endpoint_info(&shared, aws, "ec2", aws.endpoints.ec2.as_deref(), &region).await,
            endpoint_info(&shared, aws, "sts", aws.endpoints.sts.as_deref(), &region).await,
            endpoint_info(&shared, aws, "kms", aws.endpoints.kms.as_deref(), &region).await,
            endpoint_info(&shared, aws, "s3", aws.endpoints.s3.as_deref(), &region).await,
            endpoint_info(&shared, aws, "logs", aws.endpoints.logs.as_deref(), &region).await,
        ];
        let mut ec2 = aws_sdk_ec2::config::Builder::from(&shared);
        if let Some(url) = &aws.endpoints.ec2 {
            ec2 = ec2.endpoint_url(url);
        }
        let mut ssm = aws_sdk_ssm::config::Builder::from(&shared);
        if let Some(url) = &aws.endpoints.ssm {
            ssm = ssm.endpoint_url(url);
        }
        let mut sts = aws_sdk_sts::config::Builder::from(&shared);
        if let Some(url) = &aws.endpoints.sts {
            sts = sts.endpoint_url(url);
        }
        let mut kms = aws_sdk_kms::config::Builder::from(&shared);
        if let Some(url) = &aws.endpoints.kms {
            kms = kms.endpoint_url(url);
        }
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(url) = &aws.endpoints.s3 {
            s3 = s3.endpoint_url(url);
        }
        // A local endpoint (the sandbox, an emulator) has no bucket subdomains: path-style.
        if endpoints
            .iter()
            .any(|e| e.service == "s3" && url_host_is_local(&e.url))
        {
            s3 = s3.force_path_style(true);
        }
        let mut logs = aws_sdk_cloudwatchlogs::config::Builder::from(&shared);
        if let Some(url) = &aws.endpoints.logs {
            logs = logs.endpoint_url(url);
        }
        Ok(Self {
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(logs.build()),
            ec2: aws_sdk_ec2::Client::from_conf(ec2.build()),
            ssm: aws_sdk_ssm::Client::from_conf(ssm.build()),
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            kms: aws_sdk_kms::Client::from_conf(kms.build()),
            profile,
            timeout_seconds: timeout.as_secs(),
            region,
            network,
            endpoints,
        })
    }

    /// The region the clients talk to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The profile in use, if one was named.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    fn classify<E, R>(&self, operation: &'static str, err: SdkError<E, R>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        // Our own client (a SOCKS proxy) says exactly what failed on the way.
        if let SdkError::DispatchFailure(_) = &err
            && let Some(net) = find_in_chain::<NetError>(&err)
        {
            tracing::debug!(operation, error = %display_chain(&err), "AWS call failed");
            return AwsError::Net {
                operation,
                error: net.clone(),
            };
        }
        match classify_sdk_error(operation, self.profile.clone(), self.timeout_seconds, err) {
            // Say what we trusted: the usual cause is a TLS-inspecting proxy's own CA.
            AwsError::Network { operation, message }
                if message.contains("UnknownIssuer") || message.contains("certificate") =>
            {
                AwsError::Network {
                    operation,
                    message: format!("{message}; trusted: {}", self.network.trust().describe()),
                }
            }
            // The proxy wants credentials: name it (never its password), as the data channel does.
            AwsError::Network { operation, message }
                if message.contains("proxy authorization required") =>
            {
                let proxy = self.network.proxy().api_proxy();
                AwsError::Net {
                    operation,
                    error: NetError::ProxyAuth {
                        proxy: proxy.map_or_else(|| "in use".to_owned(), ToString::to_string),
                        sent: proxy.is_some_and(crate::net::ProxyUrl::has_credentials),
                    },
                }
            }
            AwsError::Network { operation, message }
                if message.contains("tunnel") && message.contains("underlying connection") =>
            {
                let proxy = self.network.proxy();
                let tls = if proxy.describe().starts_with("https://") {
                    format!(
                        " (or its certificate is not trusted; trusted: {})",
                        self.network.trust().describe()
                    )
                } else {
                    String::new()
                };
                AwsError::Network {
                    operation,
                    message: format!(
                        "the proxy could not be reached{tls}; proxy: {}",
                        proxy.describe()
                    ),
                }
            }
            other => other,
        }
    }
}

/// A named profile must exist in the shared config or credentials file, as the AWS CLI
/// requires; otherwise the SDK reports it only as missing credentials. `default` may be
/// absent (credentials then come from the environment).
fn check_profile_exists(name: &str) -> Result<(), AwsError> {
    if name == "default" || super::profiles::profile_exists(name) {
        return Ok(());
    }
    let file = super::profiles::config_file()
        .map_or_else(|| "~/.aws/config".to_owned(), |p| p.display().to_string());
    let known = super::profiles::profile_names();
    let listed = if known.is_empty() {
        "it has none".to_owned()
    } else {
        format!("profiles: {}", known.join(", "))
    };
    let close = super::profiles::closest(name, &known, 3);
    let hint = if close.is_empty() {
        "check the name, or create the profile with `aws configure sso` or `aws configure --profile NAME`".to_owned()
    } else {
        format!("did you mean {}?", close.join(", "))
    };
    Err(AwsError::Config {
        message: format!("no profile \"{name}\" in {file} ({listed})"),
        hint,
    })
}

/// What the credential chain's failure means for the user: no credentials at all, an SSO
/// sign-in to renew, or the chain's own words.
fn credentials_error(profile: Option<String>, cred: &CredentialsError) -> AwsError {
    let said = display_chain(cred);
    let lower = said.to_ascii_lowercase();
    // Without a named profile the SDK reads `default`, which may sign in with SSO too.
    let in_use = profile.clone().unwrap_or_else(|| "default".to_owned());
    let sso_words = ["token", "expired", "cache", "sso"]
        .iter()
        .any(|w| lower.contains(w));
    if sso_words && super::profiles::is_sso_profile(&in_use) {
        return AwsError::SsoExpired { profile: in_use };
    }
    match profile {
        None if matches!(cred, CredentialsError::CredentialsNotLoaded(_)) => {
            AwsError::NoCredentials {
                profiles: super::profiles::profile_names(),
            }
        }
        profile => AwsError::Credentials {
            profile,
            message: said,
        },
    }
}

/// A transport failure as a named cause and the innermost error's words.
fn network_message(err: &(dyn std::error::Error + 'static)) -> String {
    let chain = display_chain(err);
    let lower = chain.to_ascii_lowercase();
    let cause = if [
        "dns error",
        "failed to lookup address",
        "name or service not known",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        "the endpoint's host name does not resolve"
    } else if lower.contains("connection refused") {
        "the connection was refused: nothing listens at the endpoint"
    } else if ["certificate", "tls", "handshake", "corrupt message"]
        .iter()
        .any(|w| lower.contains(w))
    {
        "the TLS handshake with the endpoint failed"
    } else if lower.contains("connection reset") || lower.contains("broken pipe") {
        "the connection was cut"
    } else {
        "the connection failed"
    };
    let mut innermost = err;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    format!("{cause} ({innermost})")
}

/// `app/ssmtui-<version>` in the user agent. The SDK only allows token characters, hence `-`
/// rather than `/` before the version.
fn app_name() -> Option<AppName> {
    AppName::new(concat!("ssmtui-", env!("CARGO_PKG_VERSION"))).ok()
}

/// Where `service`'s calls go, by the SDK's own precedence: our per-service setting, then
/// `[aws] endpoint_url` (client config wins over the environment), then
/// `AWS_ENDPOINT_URL_<SERVICE>` or the profile's `services` section, then `AWS_ENDPOINT_URL` or
/// the profile's `endpoint_url`, then the regional endpoint (FIPS and dual-stack as the
/// profile or environment say).
async fn endpoint_info(
    shared: &aws_config::SdkConfig,
    aws: &AwsConfig,
    service: &'static str,
    ours: Option<&str>,
    region: &str,
) -> EndpointInfo {
    let info = |url: &str, origin: String| EndpointInfo {
        service,
        url: url.to_owned(),
        origin,
    };
    if let Some(url) = ours {
        return info(url, format!("[aws.endpoints] {service}"));
    }
    if let Some(url) = &aws.endpoint_url {
        return info(url, "[aws] endpoint_url".to_owned());
    }
    // The SDK's service ids, as in AWS_ENDPOINT_URL_<ID> and profile `services` sections.
    let upper = match service {
        "logs" => "CLOUDWATCH_LOGS".to_owned(),
        s => s.to_ascii_uppercase(),
    };
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id(&upper)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build();
    if let Ok(key) = key
        && let Some(url) = shared.service_config().and_then(|c| c.load_config(key))
    {
        // The loader also falls back to the global variable and the profile's endpoint_url.
        let env = format!("AWS_ENDPOINT_URL_{upper}");
        let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let origin = if set(&env).is_some() {
            env
        } else if set("AWS_ENDPOINT_URL").as_deref() == Some(url.as_str()) {
            "AWS_ENDPOINT_URL".to_owned()
        } else {
            "the profile (services section or endpoint_url)".to_owned()
        };
        return info(&url, origin);
    }
    if let Some(url) = shared.endpoint_url() {
        let origin = if std::env::var_os("AWS_ENDPOINT_URL").is_some_and(|v| !v.is_empty()) {
            "AWS_ENDPOINT_URL"
        } else {
            "the profile's endpoint_url"
        };
        return info(url, origin.to_owned());
    }
    let fips = shared.use_fips().unwrap_or(false);
    let dual = shared.use_dual_stack().unwrap_or(false);
    let url = regional_endpoint(service, region, fips, dual)
        .await
        .unwrap_or_else(|| format!("https://{service}.{region}.amazonaws.com"));
    let mut origin = "regional".to_owned();
    if fips {
        origin.push_str(", FIPS");
    }
    if dual {
        origin.push_str(", dual-stack");
    }
    info(&url, origin)
}

/// The service's default endpoint for the region, from its own endpoint rules.
async fn regional_endpoint(service: &str, region: &str, fips: bool, dual: bool) -> Option<String> {
    macro_rules! resolve {
        ($krate:ident) => {{
            use $krate::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
            let params = Params::builder()
                .region(region)
                .use_fips(fips)
                .use_dual_stack(dual)
                .build()
                .ok()?;
            DefaultResolver::new()
                .resolve_endpoint(&params)
                .await
                .ok()
                .map(|e| e.url().to_owned())
        }};
    }
    match service {
        "ssm" => resolve!(aws_sdk_ssm),
        "ec2" => resolve!(aws_sdk_ec2),
        "sts" => resolve!(aws_sdk_sts),
        "kms" => resolve!(aws_sdk_kms),
        "s3" => resolve!(aws_sdk_s3),
        "logs" => resolve!(aws_sdk_cloudwatchlogs),
        _ => None,
    }
}

/// Whether a URL's host is this machine (`localhost`, a loopback address).
fn url_host_is_local(url: &str) -> bool {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(crate::net::proxy::is_loopback_host))
        .unwrap_or(false)
}

/// A network setting that cannot be used, as the configuration error it is.
fn net_config_error(e: NetError) -> AwsError {
    AwsError::Config {
        message: e.to_string(),
        hint: e.hints().join("; "),
    }
}

/// The SDK's HTTP client with our trust store (system roots and the CA bundles) and proxy:
/// the SDK's own, or ours when a SOCKS proxy is set (the SDK's client has no SOCKS).
fn sdk_http_client(network: &Network) -> Result<aws_sdk_ssm::config::SharedHttpClient, NetError> {
    use aws_smithy_http_client::{Builder, Connector, tls};
    if network.proxy().uses_socks() {
        // The trust store is checked now, as the SDK's client does, not at the first call.
        network.trust().tls_config()?;
        return Ok(super::http::client(network.clone()));
    }
    let mut store = tls::TrustStore::default();
    for pem in network.trust().bundle_pem() {
        store = store.with_pem_certificate(pem.to_vec());
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(store)
        .build()
        .map_err(|e| NetError::Untrusted {
            host: "any AWS endpoint".to_owned(),
            reason: e.to_string(),
            trust: network.trust().describe(),
        })?;
    let proxy = network.proxy().sdk_config()?;
    Ok(
        Builder::new().build_with_connector_fn(move |settings, components| {
            let mut builder = Connector::builder();
            builder.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                builder.set_sleep_impl(components.sleep_impl());
            }
            builder.set_proxy_config(proxy.clone());
            builder
                .enable_tcp_nodelay(true)
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .tls_context(context.clone())
                .build()
        }),
    )
}

/// Maps an SDK error to an [`AwsError`] by its AWS error code or transport failure.
pub fn classify_sdk_error<E, R>(
    operation: &'static str,
    profile: Option<String>,
    timeout_seconds: u64,
    err: SdkError<E, R>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    // The whole story, debug form included, goes to the log (`-v`); the user sees words.
    tracing::debug!(operation, error = %aws_sdk_ssm::error::DisplayErrorContext(&err), "AWS call failed");
    if let Some(cred) = find_in_chain::<CredentialsError>(&err) {
        return credentials_error(profile, cred);
    }
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown").to_owned();
            let message = e.message().unwrap_or("no message").to_owned();
            match code.as_str() {
                "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation" => {
                    AwsError::AccessDenied { operation, message }
                }
                "ExpiredTokenException"
                | "ExpiredToken"
                | "RequestExpired"
                | "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "AuthFailure"
                | "InvalidSignatureException"
                | "SignatureDoesNotMatch" => AwsError::Rejected {
                    profile,
                    operation,
                    message: format!("{code}: {message}"),
                },
                "TargetNotConnected" => AwsError::TargetNotConnected { message },
                "ThrottlingException"
                | "Throttling"
                | "ThrottledException"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
                | "RequestThrottled"
                | "RequestThrottledException" => AwsError::Throttled {
                    operation,
                    code,
                    message,
                },
                "InvalidInstanceId"
                | "InvalidInstanceID.NotFound"
                | "DoesNotExistException"
                | "InvalidDocument"
                | "NoSuchKey"
                | "NoSuchBucket"
                | "ResourceNotFoundException" => AwsError::NotFound { operation, message },
                _ => AwsError::Service {
                    operation,
                    code,
                    message,
                },
            }
        }
        SdkError::TimeoutError(_) => AwsError::Timeout {
            operation,
            seconds: timeout_seconds,
        },
        SdkError::DispatchFailure(failure) if failure.is_timeout() => AwsError::Timeout {
            operation,
            seconds: timeout_seconds,
        },
        _ => AwsError::Network {
            operation,
            message: network_message(&err),
        },
    }
}

fn find_in_chain<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

fn ssm_time(t: Option<&aws_sdk_ssm::primitives::DateTime>) -> Option<String> {
    t.and_then(|t| {
        t.fmt(aws_sdk_ssm::primitives::DateTimeFormat::DateTime)
            .ok()
    })
}

#[async_trait]
impl SsmApi for SdkApi {
    fn location(&self) -> (Option<String>, Option<String>) {
        (self.profile.clone(), Some(self.region.clone()))
    }

    fn network(&self) -> Network {
        self.network.clone()
    }

    fn endpoints(&self) -> Vec<EndpointInfo> {
        self.endpoints.clone()
    }

    async fn list_instances(&self, filters: &[TagFilter]) -> Result<Vec<Instance>, AwsError> {
        let ec2 = async {
            let mut req = self.ec2.describe_instances().max_results(1000).filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(
                        ["pending", "running", "stopping", "stopped"]
                            .map(str::to_owned)
                            .to_vec(),
                    ))
                    .build(),
            );
            for f in filters {
                req = req.filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name(format!("tag:{}", f.key))
                        .set_values(Some(f.values.clone()))
                        .build(),
                );
            }
            let mut pages = req.into_paginator().send();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.classify("DescribeInstances", e))?;
                for reservation in page.reservations() {
                    out.extend(reservation.instances().iter().map(ec2_instance));
                }
            }
            Ok::<_, AwsError>(out)
        };
        let ssm = async {
            let mut pages = self
                .ssm
                .describe_instance_information()
                .max_results(50)
                .into_paginator()
                .send();
            let mut out = HashMap::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.classify("DescribeInstanceInformation", e))?;
                for info in page.instance_information_list() {
                    if let Some(id) = info.instance_id() {
                        out.insert(id.to_owned(), info.clone());
                    }
                }
            }
            Ok::<_, AwsError>(out)
        };
        let (mut instances, mut infos) = tokio::try_join!(ec2, ssm)?;
        for instance in &mut instances {
            if let Some(info) = infos.remove(&instance.id) {
                apply_ssm_info(instance, &info);
            }
        }
        if filters.is_empty() {
            // Hybrid (`mi-`) nodes exist only in SSM; they are reachable too.
            for (id, info) in infos {
                if id.starts_with("mi-") {
                    let mut node = Instance {
                        id,
                        state: "unknown".to_owned(),
                        name: info.name().map(str::to_owned),
                        private_ip: info.ip_address().map(str::to_owned),
                        ..Instance::default()
                    };
                    apply_ssm_info(&mut node, &info);
                    instances.push(node);
                }
            }
        }
        instances.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(instances)
    }

    async fn start_session(&self, req: &StartSessionRequest) -> Result<SessionTarget, AwsError> {
        let out = self
            .ssm
            .start_session()
            .target(&req.target)
            .document_name(&req.document)
            .set_parameters((!req.parameters.is_empty()).then(|| req.parameters.clone()))
            .set_reason(req.reason.clone())
            .send()
            .await
            .map_err(|e| self.classify("StartSession", e))?;
        session_target(
            "StartSession",
            out.session_id(),
            out.stream_url(),
            out.token_value(),
        )
    }

    async fn resume_session(&self, session_id: &str) -> Result<SessionTarget, AwsError> {
        let out = self
            .ssm
            .resume_session()
            .session_id(session_id)
            .send()
            .await
            .map_err(|e| self.classify("ResumeSession", e))?;
        session_target(
            "ResumeSession",
            out.session_id().or(Some(session_id)),
            out.stream_url(),
            out.token_value(),
        )
    }

    async fn terminate_session(&self, session_id: &str) -> Result<(), AwsError> {
        self.ssm
            .terminate_session()
            .session_id(session_id)
            .send()
            .await
            .map_err(|e| self.classify("TerminateSession", e))?;
        Ok(())
    }

    async fn describe_sessions(
        &self,
        state: SessionState,
        owner_self: bool,
    ) -> Result<Vec<SessionSummary>, AwsError> {
        use aws_sdk_ssm::types::{SessionFilter, SessionFilterKey};
        let mut req = self.ssm.describe_sessions().state(match state {
            SessionState::Active => aws_sdk_ssm::types::SessionState::Active,
            SessionState::History => aws_sdk_ssm::types::SessionState::History,
        });
        if owner_self {
            // The Owner filter takes the owner's ARN ("Self" is not a documented value), and
            // sessions are owned by the caller ARN as STS reports it (the assumed-role ARN).
            let me = self.caller_identity().await?;
            let filter = SessionFilter::builder()
                .key(SessionFilterKey::Owner)
                .value(me.arn)
                .build()
                .map_err(|_| AwsError::Incomplete {
                    operation: "DescribeSessions",
                    what: "filter",
                })?;
            req = req.filters(filter);
        }
        let mut pages = req.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.classify("DescribeSessions", e))?;
            out.extend(page.sessions().iter().map(|s| {
                SessionSummary {
                    id: s.session_id().unwrap_or_default().to_owned(),
                    target: s.target().unwrap_or_default().to_owned(),
                    status: s
                        .status()
                        .map(|st| st.as_str().to_owned())
                        .unwrap_or_default(),
                    start: ssm_time(s.start_date()),
                    end: ssm_time(s.end_date()),
                    document: s.document_name().map(str::to_owned),
                    owner: s.owner().map(str::to_owned),
                    reason: s.reason().map(str::to_owned),
                }
            }));
        }
        Ok(out)
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, AwsError> {
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.classify("GetObject", e))?;
        let body = out.body.collect().await.map_err(|e| AwsError::Network {
            operation: "GetObject",
            message: format!("the object's body was cut off ({e})"),
        })?;
        Ok(body.into_bytes().to_vec())
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<u64>, AwsError> {
        match self.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(out) => Ok(Some(
                out.content_length().unwrap_or(0).try_into().unwrap_or(0),
            )),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(self.classify("HeadObject", e)),
        }
    }

    async fn log_events(
        &self,
        group: &str,
        stream: &str,
        token: Option<&str>,
    ) -> Result<LogPage, AwsError> {
        let out = self
            .logs
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.map(str::to_owned))
            .send()
            .await
            .map_err(|e| self.classify("GetLogEvents", e))?;
        Ok(LogPage {
            events: out
                .events()
                .iter()
                .map(|e| LogRecord {
                    timestamp: e.timestamp().unwrap_or(0),
                    message: e.message().unwrap_or_default().to_owned(),
                })
                .collect(),
            next: out.next_forward_token().map(str::to_owned),
        })
    }

    async fn get_document(&self, name: &str) -> Result<String, AwsError> {
        let out = self
            .ssm
            .get_document()
            .name(name)
            .send()
            .await
            .map_err(|e| self.classify("GetDocument", e))?;
        out.content()
            .map(str::to_owned)
            .ok_or(AwsError::Incomplete {
                operation: "GetDocument",
                what: "Content",
            })
    }

    async fn describe_document(&self, name: &str) -> Result<DocumentSummary, AwsError> {
        let out = self
            .ssm
            .describe_document()
            .name(name)
            .send()
            .await
            .map_err(|e| self.classify("DescribeDocument", e))?;
        let d = out.document().ok_or(AwsError::Incomplete {
            operation: "DescribeDocument",
            what: "Document",
        })?;
        Ok(DocumentSummary {
            name: d.name().unwrap_or(name).to_owned(),
            document_type: d.document_type().map(|t| t.as_str().to_owned()),
            owner: d.owner().map(str::to_owned),
            tags: d
                .tags()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect(),
        })
    }

    async fn list_documents(&self, filter: &TagFilter) -> Result<Vec<DocumentSummary>, AwsError> {
        use aws_sdk_ssm::types::DocumentKeyValuesFilter;
        let tag = if filter.values.is_empty() {
            DocumentKeyValuesFilter::builder()
                .key("TagKeys")
                .values(&filter.key)
                .build()
        } else {
            DocumentKeyValuesFilter::builder()
                .key(format!("tag:{}", filter.key))
                .set_values(Some(filter.values.clone()))
                .build()
        };
        let session = DocumentKeyValuesFilter::builder()
            .key("DocumentType")
            .values("Session")
            .build();
        let mut pages = self
            .ssm
            .list_documents()
            .filters(session)
            .filters(tag)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.classify("ListDocuments", e))?;
            out.extend(page.document_identifiers().iter().map(|d| {
                DocumentSummary {
                    name: d.name().unwrap_or_default().to_owned(),
                    document_type: d.document_type().map(|t| t.as_str().to_owned()),
                    owner: d.owner().map(str::to_owned),
                    tags: d
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_owned(), t.value().to_owned()))
                        .collect(),
                }
            }));
        }
        Ok(out)
    }

    async fn check_endpoint(&self, service: Service) -> Result<(), AwsError> {
        match service {
            Service::Ec2 => {
                self.ec2
                    .describe_regions()
                    .region_names(&self.region)
                    .send()
                    .await
                    .map_err(|e| self.classify("DescribeRegions", e))?;
            }
            Service::Ssm => {
                self.ssm
                    .list_documents()
                    .max_results(1)
                    .send()
                    .await
                    .map_err(|e| self.classify("ListDocuments", e))?;
            }
        }
        Ok(())
    }

    async fn caller_identity(&self) -> Result<Identity, AwsError> {
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| self.classify("GetCallerIdentity", e))?;
        Ok(Identity {
            account: out.account().unwrap_or_default().to_owned(),
            arn: out
                .arn()
                .ok_or(AwsError::Incomplete {
                    operation: "GetCallerIdentity",
                    what: "Arn",
                })?
                .to_owned(),
            user_id: out.user_id().unwrap_or_default().to_owned(),
        })
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &HashMap<String, String>,
    ) -> Result<DataKey, AwsError> {
        let out = self
            .kms
            .generate_data_key()
            .key_id(key_id)
            .number_of_bytes(64)
            .set_encryption_context(Some(context.clone()))
            .send()
            .await
            .map_err(|e| self.classify("GenerateDataKey", e))?;
        let plaintext = out.plaintext.ok_or(AwsError::Incomplete {
            operation: "GenerateDataKey",
            what: "Plaintext",
        })?;
        let ciphertext = out.ciphertext_blob.ok_or(AwsError::Incomplete {
            operation: "GenerateDataKey",
            what: "CiphertextBlob",
        })?;
        Ok(DataKey {
            plaintext: zeroize::Zeroizing::new(plaintext.into_inner()),
            ciphertext: ciphertext.into_inner(),
        })
    }
}

fn session_target(
    operation: &'static str,
    session_id: Option<&str>,
    stream_url: Option<&str>,
    token: Option<&str>,
) -> Result<SessionTarget, AwsError> {
    Ok(SessionTarget {
        session_id: session_id
            .ok_or(AwsError::Incomplete {
                operation,
                what: "SessionId",
            })?
            .to_owned(),
        stream_url: stream_url
            .ok_or(AwsError::Incomplete {
                operation,
                what: "StreamUrl",
            })?
            .to_owned(),
        token: Secret::new(token.unwrap_or_default()),
    })
}

fn ec2_instance(i: &aws_sdk_ec2::types::Instance) -> Instance {
    let tags: std::collections::BTreeMap<String, String> = i
        .tags()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect();
    Instance {
        id: i.instance_id().unwrap_or_default().to_owned(),
        name: tags.get("Name").cloned(),
        state: i
            .state()
            .and_then(|s| s.name())
            .map_or_else(|| "unknown".to_owned(), |n| n.as_str().to_owned()),
        ping: None,
        last_ping: None,
        agent_version: None,
        platform: i.platform_details().map(str::to_owned),
        platform_type: None,
        private_ip: i.private_ip_address().map(str::to_owned),
        image_id: i.image_id().map(str::to_owned),
        instance_type: i.instance_type().map(|t| t.as_str().to_owned()),
        vpc_id: i.vpc_id().map(str::to_owned),
        subnet_id: i.subnet_id().map(str::to_owned),
        availability_zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_owned),
        tags,
    }
}

fn apply_ssm_info(instance: &mut Instance, info: &aws_sdk_ssm::types::InstanceInformation) {
    instance.ping = info.ping_status().map(|p| p.as_str().to_owned());
    instance.last_ping = ssm_time(info.last_ping_date_time());
    instance.agent_version = info.agent_version().map(str::to_owned);
    if let Some(platform) = info.platform_name() {
        instance.platform = Some(platform.to_owned());
    }
    instance.platform_type = info.platform_type().map(|p| p.as_str().to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn regional_endpoints_follow_each_service_s_rules_for_fips_and_dual_stack() {
        let url = |s, fips, dual| regional_endpoint(s, "us-east-1", fips, dual);
        assert_eq!(
            url("ssm", false, false).await.as_deref(),
            Some("https://ssm.us-east-1.amazonaws.com")
        );
        assert_eq!(
            url("ssm", true, false).await.as_deref(),
            Some("https://ssm-fips.us-east-1.amazonaws.com")
        );
        assert_eq!(
            url("ec2", false, true).await.as_deref(),
            Some("https://ec2.us-east-1.api.aws")
        );
        assert_eq!(
            url("kms", true, false).await.as_deref(),
            Some("https://kms-fips.us-east-1.amazonaws.com")
        );
        assert_eq!(url("nope", false, false).await, None);
    }
}
