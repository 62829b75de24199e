//! The mode stack: a view at the bottom, overlays and inputs on top. The top mode selects the
//! keymap, so a key means one thing at a time and actions go only to the focused part.

/// The views the command mode switches between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The instance table.
    Instances,
    /// The caller's sessions.
    Sessions,
    /// The port forwards.
    Forwards,
}

impl View {
    /// The mode this view runs in.
    pub fn mode(self) -> Mode {
        match self {
            Self::Instances => Mode::Instances,
            Self::Sessions => Mode::Sessions,
            Self::Forwards => Mode::Forwards,
        }
    }
}

/// A mode: one keymap table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Browsing instances.
    Instances,
    /// Browsing sessions.
    Sessions,
    /// Typing a filter.
    Filter,
    /// Typing a `:` command.
    Command,
    /// Reading the help.
    Help,
    /// Reading an instance's details.
    Details,
    /// Typing a reason before a shell.
    Reason,
    /// Answering a yes/no question.
    Confirm,
    /// Browsing port forwards.
    Forwards,
    /// Filling in the add-forward form.
    ForwardForm,
    /// Reading a forward's details.
    ForwardDetails,
    /// The sign-in failed: the panel with its cause, the profiles and the ways out.
    SignIn,
    /// Reading a session's transcript.
    Transcript,
    /// Typing a search in the transcript.
    TranscriptSearch,
}

impl Mode {
    /// The keymap's name for this mode.
    pub fn name(self) -> &'static str {
        match self {
            Self::Instances => "instances",
            Self::Sessions => "sessions",
            Self::Filter => "filter",
            Self::Command => "command",
            Self::Help => "help",
            Self::Details => "details",
            Self::Reason => "reason",
            Self::Confirm => "confirm",
            Self::Forwards => "forwards",
            Self::ForwardForm => "forward_form",
            Self::ForwardDetails => "forward_details",
            Self::SignIn => "sign_in",
            Self::Transcript => "transcript",
            Self::TranscriptSearch => "transcript_search",
        }
    }

    /// Whether typed characters go into a text input instead of the keymap.
    pub fn takes_text(self) -> bool {
        matches!(
            self,
            Self::Filter
                | Self::Command
                | Self::Reason
                | Self::ForwardForm
                | Self::TranscriptSearch
        )
    }
}

/// A view with the modes stacked on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeStack {
    view: View,
    overlays: Vec<Mode>,
}

impl ModeStack {
    /// Just the view.
    pub fn new(view: View) -> Self {
        Self {
            view,
            overlays: Vec::new(),
        }
    }

    /// The view underneath.
    pub fn view(&self) -> View {
        self.view
    }

    /// The focused mode.
    pub fn top(&self) -> Mode {
        self.overlays.last().copied().unwrap_or(self.view.mode())
    }

    /// Whether `mode` is open anywhere in the stack.
    pub fn contains(&self, mode: Mode) -> bool {
        self.view.mode() == mode || self.overlays.contains(&mode)
    }

    /// Opens a mode on top.
    pub fn push(&mut self, mode: Mode) {
        self.overlays.push(mode);
    }

    /// Closes the top mode (never the view).
    pub fn pop(&mut self) {
        self.overlays.pop();
    }

    /// Opens `mode` just below the focused mode (or on top, when only the view is open).
    pub fn insert_below_top(&mut self, mode: Mode) {
        let at = self.overlays.len().saturating_sub(1);
        self.overlays.insert(at, mode);
    }

    /// Closes `mode` wherever it is in the stack (never the view).
    pub fn remove(&mut self, mode: Mode) {
        self.overlays.retain(|m| *m != mode);
    }

    /// Switches the view, closing every overlay.
    pub fn switch(&mut self, view: View) {
        self.view = view;
        self.overlays.clear();
    }
}
