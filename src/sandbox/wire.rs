//! The wire shapes of the two AWS protocol families the sandbox speaks, shared by every service
//! module: form parameters, request ids and paging tokens, and the responses.
//!
//! Response shapes: JSON 1.1 (SSM, KMS) errors are HTTP 400 with `x-amzn-ErrorType` and a
//! `{"__type", "message"}` body; EC2 errors are `<Response><Errors><Error>…` XML; STS errors are
//! `<ErrorResponse><Error><Type>Sender</Type>…` XML.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::identity::Identity;

/// The pairs of an `application/x-www-form-urlencoded` body.
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The first value of a form parameter.
pub(crate) fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A fresh request id.
pub(crate) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A successful JSON 1.1 response.
pub(crate) fn json_ok(value: &serde_json::Value) -> Response {
    let mut resp = (StatusCode::OK, value.to_string()).into_response();
    set_json_headers(&mut resp);
    resp
}

/// A JSON 1.1 error response.
pub(crate) fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": code, "message": message });
    let mut resp = (status, body.to_string()).into_response();
    set_json_headers(&mut resp);
    if let Ok(v) = HeaderValue::from_str(code) {
        resp.headers_mut().insert("x-amzn-ErrorType", v);
    }
    resp
}

fn set_json_headers(resp: &mut Response) {
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
}

/// A successful XML response.
pub(crate) fn xml_ok(body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    resp
}

/// An EC2 query-protocol error.
pub(crate) fn ec2_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        xml_escape(code),
        xml_escape(message),
        request_id()
    );
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    resp
}

/// An STS (AWS query) error.
pub(crate) fn sts_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        xml_escape(code),
        xml_escape(message),
        request_id()
    );
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    resp
}

/// Escapes text for XML element content and attribute values.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// AWS's message for an action no identity-based policy allows on a resource.
pub(crate) fn access_denied_message(who: &Identity, action: &str, resource: &str) -> String {
    format!(
        "User: {} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action",
        who.arn()
    )
}

/// Opaque paging tokens: a position in a list, tagged with the operation so a token from one
/// operation is not accepted by another.
pub(crate) fn encode_next_token(op: &str, position: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{op}:{position}"))
}

/// The position in a paging token made by [`encode_next_token`] for `op`.
pub(crate) fn decode_next_token(op: &str, token: &str) -> Option<usize> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (o, pos) = text.split_once(':')?;
    if o != op {
        return None;
    }
    pos.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_tokens() {
        assert_eq!(xml_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        let t = encode_next_token("ec2", 42);
        assert_eq!(decode_next_token("ec2", &t), Some(42));
        assert_eq!(decode_next_token("ssm", &t), None);
        assert_eq!(decode_next_token("ec2", "garbage!"), None);
    }
}
