//! KMS (JSON 1.1, `TrentService.*`): GenerateDataKey and Decrypt over the sandbox keys.
//!
//! Blobs are AES-256-GCM under a per-key secret derived from the sandbox's random master key,
//! with the key id and the canonical encryption context as associated data, so a blob decrypts
//! only with exactly the context it was made with (as with real KMS). The session key
//! additionally demands a context naming a live session of the caller and its target
//! (protocol.md §6.1); the agent half calls [`SandboxState::kms_decrypt`] directly.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde::Deserialize;

use super::identity::Identity;
use super::state::{KmsError, SandboxState};
use super::wire::{access_denied_message, json_error, json_ok};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyRequest {
    key_id: Option<String>,
    number_of_bytes: Option<usize>,
    key_spec: Option<String>,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest {
    ciphertext_blob: Option<String>,
    key_id: Option<String>,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
}

pub(crate) fn handle(state: &SandboxState, who: &Identity, op: &str, body: &[u8]) -> Response {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key_for_message = |key: Option<&str>| {
        key.and_then(|k| state.resolve_key(k).ok())
            .map(|id| super::world::key_arn(state.account(), state.region(), id))
            .unwrap_or_else(|| "*".to_owned())
    };
    match op {
        "GenerateDataKey" => {
            let req: GenerateDataKeyRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return serialization(&e),
            };
            if !who.kms {
                return denied(
                    who,
                    "kms:GenerateDataKey",
                    &key_for_message(req.key_id.as_deref()),
                );
            }
            let Some(key) = req.key_id.as_deref() else {
                return validation(
                    "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null",
                );
            };
            let bytes = match (req.number_of_bytes, req.key_spec.as_deref()) {
                (Some(n), None) => n,
                (None, Some("AES_256")) => 32,
                (None, Some("AES_128")) => 16,
                _ => return validation("Please specify either number of bytes or key spec."),
            };
            match state.kms_generate_data_key(who, key, bytes, &req.encryption_context) {
                Ok(dk) => json_ok(&serde_json::json!({
                    "CiphertextBlob": b64.encode(&dk.ciphertext_blob),
                    "Plaintext": b64.encode(&dk.plaintext),
                    "KeyId": dk.key_arn,
                })),
                Err(KmsError::ContextMismatch) => {
                    denied(who, "kms:GenerateDataKey", &key_for_message(Some(key)))
                }
                Err(e) => kms_error(&e),
            }
        }
        "Decrypt" => {
            let req: DecryptRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return serialization(&e),
            };
            if !who.kms {
                return denied(who, "kms:Decrypt", &key_for_message(req.key_id.as_deref()));
            }
            let Some(blob) = req
                .ciphertext_blob
                .as_deref()
                .and_then(|b| b64.decode(b).ok())
            else {
                return validation(
                    "1 validation error detected: Value null at 'ciphertextBlob' failed to satisfy constraint: Member must not be null",
                );
            };
            match state.kms_decrypt(&blob, req.key_id.as_deref(), &req.encryption_context) {
                Ok((arn, plaintext)) => json_ok(&serde_json::json!({
                    "KeyId": arn,
                    "Plaintext": b64.encode(&plaintext),
                    "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                })),
                Err(e) => kms_error(&e),
            }
        }
        other => json_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("the sandbox does not emulate kms:{other}"),
        ),
    }
}

fn kms_error(e: &KmsError) -> Response {
    let (code, message) = match e {
        KmsError::NotFound(m) => ("NotFoundException", m.clone()),
        KmsError::InvalidCiphertext => ("InvalidCiphertextException", String::new()),
        KmsError::ContextMismatch => ("AccessDeniedException", e.to_string()),
        KmsError::Validation(m) => ("ValidationException", m.clone()),
        KmsError::Random => ("KMSInternalException", e.to_string()),
    };
    let status = if matches!(e, KmsError::Random) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    json_error(status, code, &message)
}

fn denied(who: &Identity, action: &str, resource: &str) -> Response {
    json_error(
        StatusCode::BAD_REQUEST,
        "AccessDeniedException",
        &access_denied_message(who, action, resource),
    )
}

fn validation(message: &str) -> Response {
    json_error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

fn serialization(e: &serde_json::Error) -> Response {
    json_error(
        StatusCode::BAD_REQUEST,
        "SerializationException",
        &format!("cannot read the request: {e}"),
    )
}
