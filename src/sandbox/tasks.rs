//! The running session tasks of a sandbox, by session id.
//!
//! Knows nothing of what a task does: the agent module starts one per session on its first
//! websocket ([`SessionTasks::attach`] with a starter) and later websockets of the session
//! (reconnects) go to the running task's inbox. The sandbox stops them all from here on
//! shutdown. Kept apart from the agent so the shared state can own it without depending on
//! the agent, which depends on the state.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::ws::WebSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Reconnects queued for one session task.
const INBOX: usize = 4;

/// The session tasks of a sandbox.
#[derive(Debug, Default)]
pub struct SessionTasks {
    inboxes: Mutex<HashMap<String, mpsc::Sender<WebSocket>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl SessionTasks {
    /// Hands `ws` to the task of `session_id`; when none runs, starts one with
    /// `start(inbox, inbox_tx, shutdown)`, the inbox already holding `ws`. Gives the websocket
    /// back if the session's task has ended (or its inbox is full).
    pub(crate) fn attach<F, Fut>(
        &self,
        session_id: &str,
        ws: WebSocket,
        start: F,
    ) -> Option<WebSocket>
    where
        F: FnOnce(mpsc::Receiver<WebSocket>, mpsc::Sender<WebSocket>, CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut inboxes = self
            .inboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = inboxes.get(session_id) {
            return tx.try_send(ws).err().map(|e| match e {
                mpsc::error::TrySendError::Full(ws) | mpsc::error::TrySendError::Closed(ws) => ws,
            });
        }
        let (tx, rx) = mpsc::channel(INBOX);
        if let Err(e) = tx.try_send(ws) {
            return Some(e.into_inner());
        }
        inboxes.insert(session_id.to_owned(), tx.clone());
        drop(inboxes);
        self.tasks.spawn(start(rx, tx, self.shutdown.child_token()));
        None
    }

    /// Forgets the task of `session_id` whose inbox is `tx` (a newer task of the same id stays).
    pub(crate) fn remove(&self, session_id: &str, tx: &mpsc::Sender<WebSocket>) {
        let mut inboxes = self
            .inboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inboxes.get(session_id).is_some_and(|t| t.same_channel(tx)) {
            inboxes.remove(session_id);
        }
    }

    /// Stops every session task (shells are killed, connections closed) and waits for them,
    /// at most `limit`.
    pub(crate) async fn shutdown(&self, limit: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(limit, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("sandbox sessions did not stop in time");
        }
    }

    /// Whether the sandbox is shutting down (requests are then refused with 503, as a
    /// service going away does, instead of finding sessions half torn down).
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Signals every session task to stop, without waiting (for `Drop`).
    pub(crate) fn cancel_all(&self) {
        self.shutdown.cancel();
    }
}
