//! S3 (REST-XML, path-style on the sandbox listener): GetObject, HeadObject and ListObjectsV2
//! on the transcript bucket ([`super::transcripts::BUCKET`]), whose objects are the files the
//! agent uploaded when their sessions ended.
//!
//! The bucket's default encryption is SSE-KMS with the session key, so every object says
//! `x-amz-server-side-encryption: aws:kms`, and reading one needs `kms:Decrypt` as well as
//! `s3:GetObject` (eve has the second, not the first). Objects are named after sessions, and
//! [`Identity::may_read_transcript`] decides which ones an identity may get. Listing and HEAD
//! are open to every identity (the account's read-only policy).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use super::identity::Identity;
use super::state::SandboxState;
use super::transcripts::{BUCKET, list_objects, object_path, session_of};
use super::wire::{access_denied_message, request_id, xml_escape};

/// `GET /{bucket}?list-type=2…`
pub(crate) async fn list(
    State(state): State<SandboxState>,
    Path(bucket): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = caller(&state, &headers) {
        return *r;
    }
    if bucket != BUCKET {
        return no_such_bucket();
    }
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let max = q
        .get("max-keys")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(1000)
        .clamp(1, 1000);
    let after = q
        .get("continuation-token")
        .or_else(|| q.get("start-after"))
        .cloned()
        .unwrap_or_default();
    let all = list_objects(&state.data_paths().bucket, &prefix);
    let rest: Vec<_> = all.iter().filter(|(k, ..)| *k > after).collect();
    let page = &rest[..rest.len().min(max)];
    let truncated = rest.len() > max;
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>{max}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
        BUCKET,
        xml_escape(&prefix),
        page.len()
    );
    for (key, size, modified) in page {
        let _ = write!(
            xml,
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>&quot;{}&quot;</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            xml_escape(key),
            iso8601(*modified),
            etag(key, *size, *modified)
        );
    }
    if truncated && let Some((last, ..)) = page.last() {
        let _ = write!(
            xml,
            "<NextContinuationToken>{}</NextContinuationToken>",
            xml_escape(last)
        );
    }
    xml.push_str("</ListBucketResult>");
    let mut resp = (StatusCode::OK, xml).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// `GET` and `HEAD /{bucket}/{key…}`.
pub(crate) async fn object(
    State(state): State<SandboxState>,
    Path((bucket, key)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let head = method == Method::HEAD;
    let who = match caller(&state, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if bucket != BUCKET {
        return if head {
            bare(StatusCode::NOT_FOUND)
        } else {
            no_such_bucket()
        };
    }
    let resource = format!("arn:aws:s3:::{bucket}/{key}");
    if !who.may_read_transcript(session_of(&key)) {
        return if head {
            bare(StatusCode::FORBIDDEN)
        } else {
            s3_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                &access_denied_message(who, "s3:GetObject", &resource),
            )
        };
    }
    let path = object_path(&state.data_paths().bucket, &key);
    let meta = path.as_ref().and_then(|p| std::fs::metadata(p).ok());
    let Some((path, meta)) = path.zip(meta).filter(|(_, m)| m.is_file()) else {
        return if head {
            bare(StatusCode::NOT_FOUND)
        } else {
            s3_error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            )
        };
    };
    let key_arn = super::world::key_arn(
        state.account(),
        state.region(),
        super::world::SESSION_KEY_ID,
    );
    if !head && !who.kms {
        return s3_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            &access_denied_message(who, "kms:Decrypt", &key_arn),
        );
    }
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let body = if head {
        Body::empty()
    } else {
        match std::fs::read(&path) {
            Ok(b) => Body::from(b),
            Err(_) => {
                return s3_error(
                    StatusCode::NOT_FOUND,
                    "NoSuchKey",
                    "The specified key does not exist.",
                );
            }
        }
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set("content-length", meta.len().to_string());
    set("content-type", "binary/octet-stream".to_owned());
    set("etag", format!("\"{}\"", etag(&key, meta.len(), modified)));
    set("last-modified", http_date(modified));
    set("x-amz-server-side-encryption", "aws:kms".to_owned());
    set("x-amz-server-side-encryption-aws-kms-key-id", key_arn);
    set("x-amz-request-id", request_id());
    resp
}

/// The caller, or the error S3 gives for a key it does not know.
fn caller(state: &SandboxState, headers: &HeaderMap) -> Result<&'static Identity, Box<Response>> {
    if state.agents().is_shutting_down() {
        return Err(Box::new(super::http::shutting_down()));
    }
    match super::http::caller(state, headers) {
        Some(Ok(who)) => Ok(who),
        Some(Err(())) => Err(Box::new(s3_error(
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            "The provided token has expired.",
        ))),
        None => Err(Box::new(s3_error(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        ))),
    }
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>",
        xml_escape(code),
        xml_escape(message),
        request_id()
    );
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

fn no_such_bucket() -> Response {
    s3_error(
        StatusCode::NOT_FOUND,
        "NoSuchBucket",
        "The specified bucket does not exist",
    )
}

/// A HEAD error: status only, as S3 sends it.
fn bare(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// A stable entity tag for an object version (not an MD5: clients only compare them).
fn etag(key: &str, size: u64, modified: SystemTime) -> String {
    use sha2::Digest as _;
    let stamp = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = sha2::Sha256::digest(format!("{key}:{size}:{stamp}"));
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn iso8601(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let t = t.replace_millisecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .map(|s| s.replace('Z', ".000Z"))
        .unwrap_or_default()
}

fn http_date(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_as_s3_writes_them() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(http_date(t), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(iso8601(t), "2023-11-14T22:13:20.000Z");
        assert_eq!(etag("k", 1, t).len(), 32);
    }
}
