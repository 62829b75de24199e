//! The sessions view: the caller's active sessions and recent history, and whose they are.

use super::instances::Scroll;
use crate::aws::SessionSummary;

/// The session list.
#[derive(Debug, Default)]
pub struct SessionsState {
    /// Active sessions first, then history, newest first within each.
    pub items: Vec<SessionSummary>,
    /// Selection and window.
    pub scroll: Scroll,
    /// A listing is in progress.
    pub loading: bool,
    /// Whether a listing finished at least once.
    pub loaded: bool,
    /// The last listing failed.
    pub error: Option<String>,
}

impl SessionsState {
    /// Replaces the list, keeping the selected session when it is still there.
    pub fn set(&mut self, mut items: Vec<SessionSummary>) {
        let keep = self.selected().map(|s| s.id.clone());
        // RFC 3339 in one time zone sorts as text; AWS returns UTC.
        items.sort_by(|a, b| {
            is_active(b)
                .cmp(&is_active(a))
                .then_with(|| b.start.cmp(&a.start))
                .then_with(|| a.id.cmp(&b.id))
        });
        self.items = items;
        self.loading = false;
        self.loaded = true;
        self.error = None;
        if let Some(id) = keep
            && let Some(pos) = self.items.iter().position(|s| s.id == id)
        {
            self.scroll.selected = pos;
        }
    }

    /// The selected session.
    pub fn selected(&self) -> Option<&SessionSummary> {
        self.items.get(self.scroll.selected)
    }
}

/// Whether the session is still running.
pub fn is_active(s: &SessionSummary) -> bool {
    matches!(
        s.status.as_str(),
        "Connected" | "Connecting" | "Disconnected"
    )
}
