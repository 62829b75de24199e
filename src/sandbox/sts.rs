//! STS (query protocol, XML responses): GetCallerIdentity for the calling identity, and
//! AssumeRole of an identity's own role (`arn:aws:iam::ACCOUNT:role/NAME`), which issues
//! temporary credentials that expire (after [`SandboxState::set_credential_ttl`]): clients
//! that run for longer must refresh them, as with SSO and assumed roles on AWS.

use axum::http::StatusCode;
use axum::response::Response;

use super::identity::{Identity, SECRET_ACCESS_KEY};
use super::state::SandboxState;
use super::wire::{param, request_id, sts_error, xml_escape, xml_ok};

pub(crate) fn handle(
    state: &SandboxState,
    who: &'static Identity,
    form: &[(String, String)],
) -> Response {
    match param(form, "Action") {
        Some("GetCallerIdentity") => xml_ok(format!(
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetCallerIdentityResult>\n    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
            xml_escape(&who.arn()),
            xml_escape(&who.user_id()),
            who.account,
            request_id()
        )),
        Some("AssumeRole") => assume_role(state, who, form),
        other => sts_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!(
                "Could not find operation {} for version 2011-06-15",
                other.unwrap_or_default()
            ),
        ),
    }
}

/// An identity may assume its own role; the credentials act as that identity.
fn assume_role(
    state: &SandboxState,
    who: &'static Identity,
    form: &[(String, String)],
) -> Response {
    let role = param(form, "RoleArn").unwrap_or_default();
    let own = format!("arn:aws:iam::{}:role/{}", who.account, who.name);
    if role != own {
        return sts_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            &format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role}",
                who.arn()
            ),
        );
    }
    let Some((key, ttl)) = state.issue_temporary(who) else {
        return sts_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "no randomness available",
        );
    };
    let expiration = time::OffsetDateTime::now_utc() + ttl;
    let expiration = expiration
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let session = param(form, "RoleSessionName").unwrap_or("sandbox");
    xml_ok(format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <AssumeRoleResult>\n    <Credentials>\n      <AccessKeyId>{key}</AccessKeyId>\n      <SecretAccessKey>{SECRET_ACCESS_KEY}</SecretAccessKey>\n      <SessionToken>sandbox-session-{key}</SessionToken>\n      <Expiration>{expiration}</Expiration>\n    </Credentials>\n    <AssumedRoleUser>\n      <AssumedRoleId>{}:{}</AssumedRoleId>\n      <Arn>arn:aws:sts::{}:assumed-role/{}/{}</Arn>\n    </AssumedRoleUser>\n  </AssumeRoleResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</AssumeRoleResponse>\n",
        who.role_id,
        xml_escape(session),
        who.account,
        who.name,
        xml_escape(session),
        request_id()
    ))
}
