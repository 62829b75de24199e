//! What can happen to the app ([`Action`]) and what the app asks the runtime to do ([`Effect`]).
//!
//! Key presses arrive already resolved through the keymap of the active mode, as an [`Intent`]
//! (or a typed character in a text input). Async results carry the `generation` they were
//! requested for, so a late answer from before a profile/region switch is dropped instead of
//! mixing two accounts in one list.

use std::net::SocketAddr;

use super::forwards::ForwardSample;
use crate::access::Who;
use crate::aws::{Identity, Instance, SessionSummary};
use crate::forwarding::ForwardSpec;

/// A user intent: the action names of the keymap, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Select the previous row / scroll up.
    Up,
    /// Select the next row / scroll down.
    Down,
    /// One page up.
    PageUp,
    /// One page down.
    PageDown,
    /// First row.
    Top,
    /// Last row.
    Bottom,
    /// Start typing a filter.
    Filter,
    /// Drop the filter.
    ClearFilter,
    /// Start typing a `:` command.
    Command,
    /// Show the help overlay.
    Help,
    /// Show the details of the selected instance.
    Details,
    /// Open a shell on the selected instance.
    OpenShell,
    /// Reload the current view.
    Refresh,
    /// Sort by the next column.
    SortNext,
    /// Reverse the sort order.
    SortReverse,
    /// Leave ssmtui.
    Quit,
    /// Terminate the selected session.
    Terminate,
    /// Back to the previous view.
    Back,
    /// Accept the input or dialog.
    Accept,
    /// Cancel the input or dialog.
    Cancel,
    /// Delete the last typed character.
    DeleteChar,
    /// Clear the typed input.
    ClearInput,
    /// Complete the typed command.
    Complete,
    /// Close the overlay.
    Close,
    /// Show the forwards tab.
    Forwards,
    /// Add a port forward to the selected instance.
    AddForward,
    /// Start the selected forward.
    Start,
    /// Stop the selected forward.
    Stop,
    /// Stop and start the selected forward.
    Restart,
    /// Delete the selected forward (after confirmation).
    Delete,
    /// Focus the next form field.
    NextField,
    /// Focus the previous form field.
    PrevField,
    /// Flip the form's toggle.
    Toggle,
    /// Sign in again with `aws sso login` for the profile whose SSO sign-in expired.
    SsoLogin,
    /// Open the selected session's transcript.
    Transcript,
    /// Start typing a search.
    Search,
    /// The next search match.
    NextMatch,
    /// The previous search match.
    PrevMatch,
    /// Follow a live transcript (or stop following).
    Follow,
}

impl Intent {
    /// Every intent, for name lookups.
    pub const ALL: [Self; 39] = [
        Self::Up,
        Self::Down,
        Self::PageUp,
        Self::PageDown,
        Self::Top,
        Self::Bottom,
        Self::Filter,
        Self::ClearFilter,
        Self::Command,
        Self::Help,
        Self::Details,
        Self::OpenShell,
        Self::Refresh,
        Self::SortNext,
        Self::SortReverse,
        Self::Quit,
        Self::Terminate,
        Self::Back,
        Self::Accept,
        Self::Cancel,
        Self::DeleteChar,
        Self::ClearInput,
        Self::Complete,
        Self::Close,
        Self::Forwards,
        Self::AddForward,
        Self::Start,
        Self::Stop,
        Self::Restart,
        Self::Delete,
        Self::NextField,
        Self::PrevField,
        Self::Toggle,
        Self::SsoLogin,
        Self::Transcript,
        Self::Search,
        Self::NextMatch,
        Self::PrevMatch,
        Self::Follow,
    ];

    /// The action name used in the keymap.
    pub fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::PageUp => "page_up",
            Self::PageDown => "page_down",
            Self::Top => "top",
            Self::Bottom => "bottom",
            Self::Filter => "filter",
            Self::ClearFilter => "clear_filter",
            Self::Command => "command",
            Self::Help => "help",
            Self::Details => "details",
            Self::OpenShell => "open_shell",
            Self::Refresh => "refresh",
            Self::SortNext => "sort_next",
            Self::SortReverse => "sort_reverse",
            Self::Quit => "quit",
            Self::Terminate => "terminate",
            Self::Back => "back",
            Self::Accept => "accept",
            Self::Cancel => "cancel",
            Self::DeleteChar => "delete_char",
            Self::ClearInput => "clear_input",
            Self::Complete => "complete",
            Self::Close => "close",
            Self::Forwards => "forwards",
            Self::AddForward => "add_forward",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Delete => "delete",
            Self::NextField => "next_field",
            Self::PrevField => "prev_field",
            Self::Toggle => "toggle",
            Self::SsoLogin => "sso_login",
            Self::Transcript => "transcript",
            Self::Search => "search",
            Self::NextMatch => "next_match",
            Self::PrevMatch => "prev_match",
            Self::Follow => "follow",
        }
    }

    /// The intent of a keymap action name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// Everything that changes the app's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A key resolved through the active keymap.
    Intent(Intent),
    /// A character typed into the active text input.
    Char(char),
    /// The terminal has this size now.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// Time passed ([`super::TICK_MS`]); drives the spinner and the auto-refresh.
    Tick,
    /// STS answered.
    IdentityLoaded {
        /// Generation of the request.
        generation: u64,
        /// The caller, or why not.
        result: Result<Identity, SignInFailure>,
    },
    /// `aws sso login` asked for with [`Effect::SsoLogin`] has ended.
    SsoLoginFinished {
        /// The profile.
        profile: String,
        /// Success, or why not.
        result: Result<(), String>,
    },
    /// A fleet source answered [`Effect::LoadSource`].
    SourceLoaded {
        /// Generation of the fleet's loads.
        generation: u64,
        /// The source's index.
        index: usize,
        /// The caller and instances there, or why not.
        result: Box<Result<super::SourceListing, SignInFailure>>,
    },
    /// A page of instances arrived; `done` marks the last one.
    InstancesPage {
        /// Generation of the request.
        generation: u64,
        /// The page, or why the listing failed.
        result: Result<Vec<Instance>, String>,
        /// Whether this is the last page.
        done: bool,
    },
    /// DescribeSessions answered (active and history together).
    SessionsLoaded {
        /// Generation of the request.
        generation: u64,
        /// The sessions, or why not.
        result: Result<Vec<SessionSummary>, String>,
    },
    /// TerminateSession answered.
    SessionTerminated {
        /// The session.
        id: String,
        /// Done, or why not.
        result: Result<(), String>,
    },
    /// The API client for a new profile/region is ready (or could not be built).
    AwsSwitched {
        /// Generation the switch started.
        generation: u64,
        /// Done, or why not.
        result: Result<(), String>,
    },
    /// The shell the user opened has ended and the TUI owns the terminal again.
    ShellFinished {
        /// Which instance, as a label.
        target: String,
        /// The remote exit status if known, or why the shell failed.
        result: Result<Option<i32>, String>,
    },
    /// A forward asked for with [`Effect::StartForward`] is listening, or could not start.
    ForwardStarted {
        /// The forward.
        id: u64,
        /// The run it was started as.
        run: u64,
        /// The address listened on, or why it did not start.
        result: Result<Option<SocketAddr>, String>,
    },
    /// A forward asked to stop has stopped (its session terminated).
    ForwardStopped {
        /// The forward.
        id: u64,
        /// The run that stopped.
        run: u64,
    },
    /// Counters of every running forward, sampled together every
    /// [`super::forwards::SAMPLE_MS`].
    ForwardStats(Vec<ForwardSample>),
    /// A transcript asked for with [`Effect::LoadTranscript`] arrived, or could not be read.
    TranscriptLoaded {
        /// The session.
        session_id: String,
        /// The transcript, or why not (one line).
        result: Result<super::transcript::LoadedTranscript, String>,
    },
    /// New output of a followed transcript ([`Effect::PollTranscript`]).
    TranscriptPolled {
        /// The session.
        session_id: String,
        /// The following it belongs to (a stopped and restarted follow is a new one).
        generation: u64,
        /// The new bytes and the next token, or why not.
        result: Result<(Vec<u8>, Option<String>), String>,
    },
}

/// A side effect for the runtime to perform; results come back as [`Action`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `sts:GetCallerIdentity`, answered with [`Action::IdentityLoaded`].
    LoadIdentity {
        /// Generation to tag the answer with.
        generation: u64,
    },
    /// List instances, answered with [`Action::InstancesPage`]s.
    LoadInstances {
        /// Generation to tag the answers with.
        generation: u64,
    },
    /// Sign in to one fleet source and list its instances, answered with
    /// [`Action::SourceLoaded`].
    LoadSource {
        /// Generation of the fleet's loads.
        generation: u64,
        /// The source's index.
        index: usize,
        /// Its profile.
        profile: Option<String>,
        /// Its region (`None`: the profile's own).
        region: Option<String>,
        /// Build a new client (a retry after a failure: a fresh sign-in may have fixed it).
        fresh: bool,
    },
    /// List the caller's sessions, answered with [`Action::SessionsLoaded`].
    LoadSessions {
        /// Generation to tag the answer with.
        generation: u64,
    },
    /// Hand the terminal to a shell on `instance`, answered with [`Action::ShellFinished`].
    OpenShell {
        /// The target.
        instance: Box<Instance>,
        /// The session document (the caller's class document).
        document: String,
        /// Why, when asked.
        reason: Option<String>,
        /// Who starts it: identity and class, as the audit log records them.
        who: Box<Who>,
    },
    /// Hand the terminal to `aws sso login --profile PROFILE`, answered with
    /// [`Action::SsoLoginFinished`].
    SsoLogin {
        /// The profile.
        profile: String,
    },
    /// `ssm:TerminateSession`, answered with [`Action::SessionTerminated`].
    TerminateSession {
        /// The session.
        id: String,
    },
    /// Read a session's transcript, answered with [`Action::TranscriptLoaded`].
    LoadTranscript {
        /// The session.
        session_id: String,
        /// Its document (which says where it is logged).
        document: Option<String>,
        /// Whether it is still running.
        active: bool,
    },
    /// After a second, read a followed transcript's new events, answered with
    /// [`Action::TranscriptPolled`].
    PollTranscript {
        /// The session.
        session_id: String,
        /// The following it belongs to.
        generation: u64,
        /// Where to continue.
        follow: super::transcript::Follow,
    },
    /// Rebuild the API client for another profile/region, answered with [`Action::AwsSwitched`].
    SwitchAws {
        /// Generation of the switch.
        generation: u64,
        /// Profile to use (`None`: the default chain).
        profile: Option<String>,
        /// Region to use (`None`: the default chain).
        region: Option<String>,
    },
    /// Bind the spec's port and start forwarding to `instance`, answered with
    /// [`Action::ForwardStarted`] and then sampled into [`Action::ForwardStats`].
    StartForward {
        /// The forward.
        id: u64,
        /// The run number; results carry it back.
        run: u64,
        /// The target.
        instance: Box<Instance>,
        /// What to forward.
        spec: ForwardSpec,
        /// The port-forwarding document (from the caller's class).
        document: String,
        /// Keep idle sessions alive.
        keepalive: bool,
        /// Up to this many sessions (striping).
        sessions: usize,
        /// Why (the reason prompt's answer), recorded with the session and in the audit log.
        reason: Option<String>,
        /// Who starts its sessions: identity and class, as the audit log records them.
        who: Box<Who>,
    },
    /// Stop forward `id` (closing its connections and terminating its session), answered
    /// with [`Action::ForwardStopped`].
    StopForward {
        /// The forward.
        id: u64,
        /// The run to stop.
        run: u64,
    },
    /// Leave the TUI (the runtime stops every forward on the way out).
    Quit,
}

/// Why signing in (STS GetCallerIdentity) failed, as the sign-in panel shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInFailure {
    /// The error and its causes, in words.
    pub message: String,
    /// What to do about it.
    pub hints: Vec<String>,
    /// The profile whose SSO sign-in expired, when that is the cause (`aws sso login` fixes it).
    pub sso_profile: Option<String>,
}

impl std::fmt::Display for SignInFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = self.hints.first() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}
