//! Terminal input: a task reads crossterm's `EventStream` and forwards key presses and resizes
//! to the runtime, which resolves keys through the keymap of the mode that is focused *when the
//! key is applied* (so "/abc" typed fast is a filter, not three commands). The task is stopped
//! before a shell takes the terminal, so it cannot steal the shell's keystrokes.

use crossterm::event::{Event, EventStream, KeyEvent, KeyEventKind};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Input the runtime cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermEvent {
    /// A key press (not release or repeat-release).
    Key(KeyEvent),
    /// The terminal has a new size.
    Resize(u16, u16),
    /// Reading the terminal failed.
    Error(String),
}

/// The running input task.
pub struct EventInput {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl EventInput {
    /// Starts reading input into `tx`.
    pub fn start(tx: mpsc::Sender<TermEvent>) -> Self {
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let task = tokio::spawn(async move {
            let mut stream = EventStream::new();
            loop {
                let next = tokio::select! {
                    () = token.cancelled() => break,
                    next = stream.next() => next,
                };
                let event = match next {
                    Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                        TermEvent::Key(key)
                    }
                    Some(Ok(Event::Resize(w, h))) => TermEvent::Resize(w, h),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => TermEvent::Error(e.to_string()),
                    None => break,
                };
                if tx.send(event).await.is_err() {
                    break;
                }
            }
            // Dropping the stream here stops crossterm's wake thread, so nothing reads the tty.
        });
        Self { cancel, task }
    }

    /// Stops reading and waits until the reader is gone.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}
