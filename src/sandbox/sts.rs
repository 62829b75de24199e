//! STS (query protocol, XML responses): GetCallerIdentity for the calling identity.

use axum::http::StatusCode;
use axum::response::Response;

use super::identity::{ACCOUNT_ID, Identity};
use super::state::SandboxState;
use super::wire::{param, request_id, sts_error, xml_escape, xml_ok};

pub(crate) fn handle(_state: &SandboxState, who: &Identity, form: &[(String, String)]) -> Response {
    match param(form, "Action") {
        Some("GetCallerIdentity") => xml_ok(format!(
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetCallerIdentityResult>\n    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{ACCOUNT_ID}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
            xml_escape(&who.arn()),
            xml_escape(&who.user_id()),
            request_id()
        )),
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
