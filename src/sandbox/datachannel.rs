//! The data-channel endpoint: `GET /v1/data-channel/{session_id}?role=publish_subscribe`,
//! upgraded to a websocket on the API listener, as the StreamUrl of StartSession names it.
//!
//! The first frame must be a text frame holding `OpenDataChannelInput` (§2.3). Its token is
//! checked with [`SandboxState::validate_and_consume_token`] (single use, expiring; ResumeSession
//! issues fresh ones). A refused channel is closed with a policy-violation close frame (1008)
//! whose reason says why, and logged without the token. An accepted websocket is handed to the
//! session's agent task ([`super::agent`]), which outlives it.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;

use super::agent::{self, policy_close, send_and_close};
use super::state::SandboxState;
use crate::protocol::OpenDataChannelInput;

/// How long a client may take to send `OpenDataChannelInput` after the upgrade.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The route handler.
pub(crate) async fn handle(
    State(state): State<SandboxState>,
    Path(session_id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    if state.agents().is_shutting_down() {
        return super::http::shutting_down();
    }
    ws.on_upgrade(move |socket| open(state, session_id, socket))
}

async fn open(state: SandboxState, session_id: String, mut ws: WebSocket) {
    let first = tokio::time::timeout(OPEN_TIMEOUT, ws.recv()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(_))) => {
            return refuse(
                &mut ws,
                &session_id,
                "the first frame must be OpenDataChannelInput text",
            )
            .await;
        }
        Ok(Some(Err(_)) | None) => return,
        Err(_) => {
            return refuse(&mut ws, &session_id, "no OpenDataChannelInput within 30 s").await;
        }
    };
    let input = match OpenDataChannelInput::parse(text.as_str().as_bytes()) {
        Ok(i) => i,
        Err(_) => {
            return refuse(
                &mut ws,
                &session_id,
                "OpenDataChannelInput is not valid JSON",
            )
            .await;
        }
    };
    let info = match state.validate_and_consume_token(&session_id, &input.token_value) {
        Ok(info) => info,
        Err(e) => return refuse(&mut ws, &session_id, &e.to_string()).await,
    };
    tracing::info!(
        %session_id,
        client_id = %input.client_id,
        client_version = input.client_version.as_deref().unwrap_or(""),
        "data channel opened"
    );
    if let Some(mut ws) = agent::attach(&state, info, ws) {
        send_and_close(&mut ws, policy_close("the session has ended")).await;
    }
}

async fn refuse(ws: &mut WebSocket, session_id: &str, reason: &str) {
    // The reason never contains the token: TokenError and our own texts are fixed sentences.
    tracing::warn!(%session_id, %reason, "data channel refused");
    send_and_close(ws, policy_close(reason)).await;
}
