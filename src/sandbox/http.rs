//! The HTTP face of the API half: one `POST /` handler that decides the service and the
//! identity, and the response shapes of the two AWS protocol families.
//!
//! Service selection, in order: the SigV4 credential scope
//! (`Credential=AKID/DATE/REGION/SERVICE/aws4_request`), then `X-Amz-Target`
//! (`AmazonSSM.*` → ssm, `TrentService.*` → kms, `Logs_20140328.*` → logs), then the query `Version`
//! (`2016-11-15` → ec2, `2011-06-15` → sts). The signature itself is never checked; the access
//! key id picks the [`Identity`]. An unknown or missing key gets the error each service gives
//! for an invalid key, with its status code.
//!
//! The response shapes of both families, and the helpers every service uses, are in
//! [`super::wire`].

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::identity;
use super::state::SandboxState;
use super::wire::{ec2_error, form_pairs, json_error, param, sts_error};
use super::{ec2, kms, logs, ssm, sts};

/// The AWS service a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Ec2,
    Ssm,
    Sts,
    Kms,
    Logs,
}

/// The `POST /` handler.
pub(crate) async fn handle(
    State(state): State<SandboxState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if state.agents().is_shutting_down() {
        return shutting_down();
    }
    if let Some(latency) = state.api_latency() {
        tokio::time::sleep(latency).await;
    }
    let target = header_str(&headers, "x-amz-target");
    let (scope_key, _) = credential_scope(header_str(&headers, "authorization"));
    let Some((service, form)) = service_of(&headers, &body) else {
        return (
            StatusCode::BAD_REQUEST,
            "ssmtui sandbox: cannot tell which AWS service this request is for\n",
        )
            .into_response();
    };
    let who = match scope_key.as_deref() {
        Some(key) => match state.identity(key).map(Ok) {
            Some(found) => Some(found),
            None => state.temporary_identity(key),
        },
        None => None,
    };
    tracing::debug!(?service, identity = ?who.map(|w| w.map(|i| i.name)), "sandbox request");
    let who = match who {
        Some(Ok(who)) => who,
        Some(Err(())) => return expired_key(service),
        None => return unknown_key(service),
    };
    let op = target
        .and_then(|t| t.split_once('.'))
        .map(|(_, op)| op)
        .unwrap_or_default();
    match service {
        Service::Ec2 => ec2::handle(&state, who, &form),
        Service::Sts => sts::handle(&state, who, &form),
        Service::Ssm => ssm::handle(&state, who, op, &body),
        Service::Kms => kms::handle(&state, who, op, &body),
        Service::Logs => logs::handle(&state, who, op, &body),
    }
}

/// What a request to a region the account has not enabled gets, as from AWS: the service's
/// invalid-token error.
pub(crate) fn region_not_enabled(headers: &HeaderMap, body: &Bytes) -> Response {
    match service_of(headers, body) {
        Some((service, _)) => unknown_key(service),
        None => (
            StatusCode::FORBIDDEN,
            "ssmtui sandbox: this account does not serve that region\n",
        )
            .into_response(),
    }
}

/// (access key id, region) of a signed request.
pub(crate) fn key_and_region(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let Some(cred) = header_str(headers, "authorization")
        .and_then(|a| a.split_once("Credential="))
        .map(|(_, rest)| rest.split([',', ' ']).next().unwrap_or_default())
    else {
        return (None, None);
    };
    let mut parts = cred.split('/');
    let key = parts.next().map(str::to_owned);
    let region = parts.nth(1).map(str::to_owned);
    (key, region)
}

/// The service a request is for, and its form parameters for the query-protocol services.
fn service_of(headers: &HeaderMap, body: &Bytes) -> Option<(Service, Vec<(String, String)>)> {
    let target = header_str(headers, "x-amz-target");
    let (_, scope_service) = credential_scope(header_str(headers, "authorization"));
    let form = if target.is_none() {
        form_pairs(body)
    } else {
        Vec::new()
    };
    let service = scope_service
        .as_deref()
        .and_then(|s| match s {
            "ec2" => Some(Service::Ec2),
            "ssm" => Some(Service::Ssm),
            "sts" => Some(Service::Sts),
            "kms" => Some(Service::Kms),
            "logs" => Some(Service::Logs),
            _ => None,
        })
        .or_else(|| match target {
            Some(t) if t.starts_with("AmazonSSM.") => Some(Service::Ssm),
            Some(t) if t.starts_with("TrentService.") => Some(Service::Kms),
            Some(t) if t.starts_with("Logs_20140328.") => Some(Service::Logs),
            _ => None,
        })
        .or_else(|| match param(&form, "Version") {
            Some("2016-11-15") => Some(Service::Ec2),
            Some("2011-06-15") => Some(Service::Sts),
            _ => None,
        })?;
    Some((service, form))
}

/// What every request gets once the sandbox is shutting down: a ResumeSession racing the
/// shutdown must not see its session already ended, which would make a client give up instead
/// of retrying as it would against an unreachable service.
pub(crate) fn shutting_down() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "ssmtui sandbox: shutting down\n",
    )
        .into_response()
}

fn unknown_key(service: Service) -> Response {
    const INVALID: &str = "The security token included in the request is invalid.";
    match service {
        Service::Ssm | Service::Kms | Service::Logs => json_error(
            StatusCode::BAD_REQUEST,
            "UnrecognizedClientException",
            INVALID,
        ),
        Service::Sts => sts_error(StatusCode::FORBIDDEN, "InvalidClientTokenId", INVALID),
        Service::Ec2 => ec2_error(
            StatusCode::UNAUTHORIZED,
            "AuthFailure",
            "AWS was not able to validate the provided access credentials",
        ),
    }
}

/// Temporary credentials past their expiry, in each service's words.
fn expired_key(service: Service) -> Response {
    const EXPIRED: &str = "The security token included in the request is expired";
    match service {
        Service::Ssm | Service::Kms | Service::Logs => {
            json_error(StatusCode::BAD_REQUEST, "ExpiredTokenException", EXPIRED)
        }
        Service::Sts => sts_error(StatusCode::FORBIDDEN, "ExpiredToken", EXPIRED),
        Service::Ec2 => ec2_error(
            StatusCode::BAD_REQUEST,
            "RequestExpired",
            "Request has expired.",
        ),
    }
}

/// The caller of a request signed for any service: `None` without a key we know, `Err` for
/// temporary credentials past their expiry.
pub(crate) fn caller(
    state: &SandboxState,
    headers: &HeaderMap,
) -> Option<Result<&'static identity::Identity, ()>> {
    let (key, _) = credential_scope(header_str(headers, "authorization"));
    let key = key?;
    match state.identity(&key) {
        Some(found) => Some(Ok(found)),
        None => state.temporary_identity(&key),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// (access key id, service) from `Credential=AKID/DATE/REGION/SERVICE/aws4_request`.
fn credential_scope(auth: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(cred) = auth
        .and_then(|a| a.split_once("Credential="))
        .map(|(_, rest)| rest.split([',', ' ']).next().unwrap_or_default())
    else {
        return (None, None);
    };
    let parts: Vec<&str> = cred.split('/').collect();
    let key = parts.first().map(|s| (*s).to_owned());
    let service = parts.get(3).map(|s| (*s).to_owned());
    (key, service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parsing() {
        let auth = "AWS4-HMAC-SHA256 Credential=alice/20240101/eu-west-1/ssm/aws4_request, SignedHeaders=host, Signature=abc";
        assert_eq!(
            credential_scope(Some(auth)),
            (Some("alice".into()), Some("ssm".into()))
        );
        assert_eq!(credential_scope(None), (None, None));
        assert_eq!(
            credential_scope(Some("Bearer x")),
            (None, None),
            "no credential, no identity"
        );
    }
}
