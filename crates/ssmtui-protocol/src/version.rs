//! Version comparison and the basic-vs-multiplexed port-forwarding decision (protocol §9.2).
//!
//! Client and agent pick the port-forwarding mode **independently**: the client looks at the
//! `AgentVersion` from the handshake request, the agent looks at the `ClientVersion` from the
//! handshake response. Nothing on the wire says which mode was chosen, so if the two decisions
//! differ the byte stream is misread on one side (smux frames treated as raw TCP bytes or the
//! reverse) and forwarding breaks (gotcha G21). This module therefore reproduces both sides'
//! rules *exactly*, including the quirks of their two different comparators:
//!
//! | Side | Comparator | Rule |
//! |---|---|---|
//! | client (session-manager-plugin) | [`is_greater_plugin`] | mux iff `type == "LocalPortForwarding"` and `AgentVersion > 3.0.196.0`; smux keepalive off iff `AgentVersion > 3.1.1511.0`; `TerminateSession` flag iff `AgentVersion > 2.3.722.0` |
//! | agent (amazon-ssm-agent) | [`compare_agent`] | mux iff `type == "LocalPortForwarding"` and `ClientVersion >= 1.1.70`; smux keepalive off iff `ClientVersion > 1.2.331.0` |
//!
//! The plugin comparator (`src/version/versionutil.go` of the plugin) only answers "greater"
//! for strings with the **same number of components** whose components are integers, so
//! `3.1.1511` vs `3.0.196.0` is *not greater* (G15). The agent comparator
//! (`agent/versionutil/versionutil.go`, `Compare(a, b, strictSort = true)`) uses semver rules when
//! both strings are semver, and otherwise compares component by component (numerically when
//! both are integers, byte-wise otherwise), the longer string winning a tie.
//!
//! Everything here is pure string logic: no allocation beyond splitting, no panics.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The `ClientVersion` we report in the handshake response.
///
/// Chosen so that both sides agree on the port-forwarding mode:
///
/// * it is **plainly numeric with four components**, so the agent's comparator takes its
///   component-wise path (it is not semver: semver needs exactly three parts) and there is no
///   lexical or semver-prerelease surprise;
/// * it is `>= 1.1.70` (agent: use smux for `LocalPortForwarding`) and `> 1.2.331.0` (agent:
///   turn smux keepalive off), i.e. above both agent-side thresholds, so a current agent picks
///   exactly what our client rules pick for that agent's version;
/// * it equals the newest session-manager-plugin release our protocol notes were checked against
///   (protocol.md, source snapshot table), so an agent that keys any other behaviour on the
///   client version treats us like that plugin — the implementation we mirror.
pub const CLIENT_VERSION: &str = "1.2.650.0";

/// The only port-forwarding `type` property for which either side multiplexes.
pub const LOCAL_PORT_FORWARDING: &str = "LocalPortForwarding";

/// Client rule: smux is used iff the agent version is **greater** than this
/// (plugin `TCPMultiplexingSupportedAfterThisAgentVersion`).
pub const TCP_MULTIPLEXING_SUPPORTED_AFTER_AGENT_VERSION: &str = "3.0.196.0";

/// Client rule: smux keepalive is off iff the agent version is **greater** than this
/// (plugin `TCPMultiplexingWithSmuxKeepAliveDisabledAfterThisAgentVersion`).
pub const SMUX_KEEPALIVE_DISABLED_AFTER_AGENT_VERSION: &str = "3.1.1511.0";

/// Client rule: the `TerminateSession` flag is understood iff the agent version is **greater**
/// than this (plugin `TerminateSessionFlagSupportedAfterThisAgentVersion`).
pub const TERMINATE_SESSION_FLAG_SUPPORTED_AFTER_AGENT_VERSION: &str = "2.3.722.0";

/// Agent rule: smux is used iff the client version is **at least** this
/// (agent `muxSupportedClientVersion`). Note: three components, so it parses as semver.
pub const MUX_SUPPORTED_CLIENT_VERSION: &str = "1.1.70";

/// Agent rule: smux keepalive is off iff the client version is **greater** than this
/// (agent `muxKeepAliveDisabledAfterThisClientVersion`).
pub const MUX_KEEPALIVE_DISABLED_AFTER_CLIENT_VERSION: &str = "1.2.331.0";

/// How the port-forwarding byte stream is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortMode {
    /// One TCP connection at a time, raw bytes in Output payloads, `DisconnectToPort` between
    /// connections (protocol §9.3).
    Basic,
    /// smux v1 over the Output byte stream, one smux stream per TCP connection (§9.4).
    Mux {
        /// Whether smux keepalive (NOP every 10 s, give up after 30 s of silence) is on.
        keepalive: bool,
    },
}

/// The client-side decision, exactly as session-manager-plugin makes it.
///
/// `port_type` is the `type` property of the session (pass `""` when it is absent, as for
/// `AWS-StartSSHSession`); `agent_version` is `AgentVersion` from the handshake request.
pub fn client_port_mode(port_type: &str, agent_version: &str) -> PortMode {
    if port_type == LOCAL_PORT_FORWARDING
        && is_greater_plugin(
            agent_version,
            TCP_MULTIPLEXING_SUPPORTED_AFTER_AGENT_VERSION,
        )
    {
        PortMode::Mux {
            keepalive: !is_greater_plugin(
                agent_version,
                SMUX_KEEPALIVE_DISABLED_AFTER_AGENT_VERSION,
            ),
        }
    } else {
        PortMode::Basic
    }
}

/// Client side: may Ctrl-C be signalled with the `TerminateSession` flag (instead of calling the
/// `TerminateSession` API and waiting for `channel_closed`)?
pub fn client_supports_terminate_session_flag(agent_version: &str) -> bool {
    is_greater_plugin(
        agent_version,
        TERMINATE_SESSION_FLAG_SUPPORTED_AFTER_AGENT_VERSION,
    )
}

/// The agent-side decision of a current agent, exactly as amazon-ssm-agent makes it.
///
/// `client_version` is `ClientVersion` from the handshake response. The sandbox agent uses this.
pub fn agent_port_mode(port_type: &str, client_version: &str) -> PortMode {
    if port_type == LOCAL_PORT_FORWARDING
        && compare_agent(client_version, MUX_SUPPORTED_CLIENT_VERSION) != Ordering::Less
    {
        PortMode::Mux {
            keepalive: compare_agent(client_version, MUX_KEEPALIVE_DISABLED_AFTER_CLIENT_VERSION)
                != Ordering::Greater,
        }
    } else {
        PortMode::Basic
    }
}

/// What an agent **of version `agent_version`** decides, for emulating older agents.
///
/// This is a model, inferred from the plugin's constant names rather than read from old agent
/// releases: agents up to and including 3.0.196.0 have no smux support (always basic), and
/// agents up to and including 3.1.1511.0 always run smux with keepalive on. Newer agents follow
/// [`agent_port_mode`]. The client thresholds exist precisely to match this history, so
/// `client_port_mode(t, v) == emulated_agent_port_mode(v, t, CLIENT_VERSION)` for real
/// (four-component) agent versions.
pub fn emulated_agent_port_mode(
    agent_version: &str,
    port_type: &str,
    client_version: &str,
) -> PortMode {
    if compare_agent(
        agent_version,
        TCP_MULTIPLEXING_SUPPORTED_AFTER_AGENT_VERSION,
    ) != Ordering::Greater
    {
        return PortMode::Basic;
    }
    match agent_port_mode(port_type, client_version) {
        PortMode::Mux { .. }
            if compare_agent(agent_version, SMUX_KEEPALIVE_DISABLED_AFTER_AGENT_VERSION)
                != Ordering::Greater =>
        {
            PortMode::Mux { keepalive: true }
        }
        mode => mode,
    }
}

/// The plugin's "is `a` greater than `b`" (`isAgentVersionGreaterThanSupportedVersion`).
///
/// Exactly the plugin's algorithm: an empty string, or a different number of `.`-separated
/// components, is an error and answers `false`. Otherwise components are compared left to
/// right; each pair is parsed as a Go `strconv.Atoi` integer (optional sign, decimal digits,
/// 64-bit range) **only when it is reached**, a parse failure answers `false`, and the first
/// unequal pair decides. Only strictly greater is `true`.
///
/// The lazy parsing is a real (if harmless) difference from "any non-integer component means
/// false": `4.x.0.0` vs `3.0.196.0` is decided by `4 > 3` before `x` is looked at.
pub fn is_greater_plugin(a: &str, b: &str) -> bool {
    compare_plugin(a, b) == Some(Ordering::Greater)
}

/// The plugin's comparison: `None` where the plugin reports an error (see
/// [`is_greater_plugin`]).
pub fn compare_plugin(a: &str, b: &str) -> Option<Ordering> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if a.split('.').count() != b.split('.').count() {
        return None;
    }
    for (x, y) in a.split('.').zip(b.split('.')) {
        let x = go_atoi(x)?;
        let y = go_atoi(y)?;
        match x.cmp(&y) {
            Ordering::Equal => {}
            decided => return Some(decided),
        }
    }
    Some(Ordering::Equal)
}

/// The agent's `versionutil.Compare(a, b, true)`.
///
/// If both strings are semver (go-semver: `MAJOR.MINOR.PATCH[-pre][+meta]`, exactly three
/// numeric core parts) semver precedence applies, with build metadata ignored. Otherwise both
/// are split on `.` and compared pairwise: numerically when both components are Go integers,
/// byte-wise otherwise; if all compared pairs are equal, the one with more components is
/// greater (`1.2.3.0 > 1.2.3`). `strictSort = true` means trailing zeros are significant.
pub fn compare_agent(a: &str, b: &str) -> Ordering {
    if let (Some(x), Some(y)) = (SemVer::parse(a), SemVer::parse(b)) {
        return x.compare(&y);
    }
    let xs: Vec<&str> = a.split('.').collect();
    let ys: Vec<&str> = b.split('.').collect();
    for (x, y) in xs.iter().zip(ys.iter()) {
        let ord = match (go_atoi(x), go_atoi(y)) {
            (Some(x), Some(y)) => x.cmp(&y),
            // Go compares strings byte-wise, as `str::cmp` does.
            _ => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    xs.len().cmp(&ys.len())
}

/// Go's `strconv.Atoi` (and `ParseInt(s, 10, 64)`): an optional `+`/`-`, then at least one
/// ASCII digit, within the `i64` range. Rust's `i64::from_str` accepts exactly that language.
fn go_atoi(s: &str) -> Option<i64> {
    s.parse::<i64>().ok()
}

/// A version parsed the way `github.com/coreos/go-semver` (v0.3) does.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SemVer<'a> {
    core: [i64; 3],
    pre_release: &'a str,
}

impl<'a> SemVer<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        // Metadata is split off at the first `+`, then the pre-release at the first `-`.
        let (rest, metadata) = match s.split_once('+') {
            Some((rest, meta)) => (rest, meta),
            None => (s, ""),
        };
        let (core, pre_release) = match rest.split_once('-') {
            Some((core, pre)) => (core, pre),
            None => (rest, ""),
        };
        if !valid_identifier(pre_release) || !valid_identifier(metadata) {
            return None;
        }
        // `SplitN(core, ".", 3)` must give three parts, and each must be an integer, so a
        // fourth component ends up inside the third part and fails to parse.
        let mut parts = core.splitn(3, '.');
        let major = go_atoi(parts.next()?)?;
        let minor = go_atoi(parts.next()?)?;
        let patch = go_atoi(parts.next()?)?;
        Some(Self {
            core: [major, minor, patch],
            pre_release,
        })
    }

    /// go-semver `Version.Compare`: core numerically, then "no pre-release beats a
    /// pre-release", then pre-release identifiers pairwise.
    fn compare(&self, other: &Self) -> Ordering {
        match self.core.cmp(&other.core) {
            Ordering::Equal => {}
            decided => return decided,
        }
        match (self.pre_release.is_empty(), other.pre_release.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                let mut xs = self.pre_release.split('.');
                let mut ys = other.pre_release.split('.');
                loop {
                    match (xs.next(), ys.next()) {
                        // go-semver: running out first on the left is "equal", on the right
                        // is "greater" (not the semver spec's rule, but what the agent does).
                        (None, _) => return Ordering::Equal,
                        (Some(_), None) => return Ordering::Greater,
                        (Some(x), Some(y)) => {
                            if let (Some(a), Some(b)) = (go_atoi(x), go_atoi(y)) {
                                match a.cmp(&b) {
                                    Ordering::Equal => {}
                                    decided => return decided,
                                }
                            }
                            // Equal integers still fall through to the string comparison
                            // (`01` vs `1`), as in go-semver.
                            match x.cmp(y) {
                                Ordering::Equal => {}
                                decided => return decided,
                            }
                        }
                    }
                }
            }
        }
    }
}

/// go-semver v0.3 identifier check: empty, or `[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*`.
fn valid_identifier(id: &str) -> bool {
    id.is_empty()
        || id.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A plainly numeric dotted version such as `3.3.987.0` (what real agents and plugins report).
///
/// Ordering is component-wise numeric, shorter-is-less on a common prefix; use the comparator
/// functions above, not this ordering, for protocol decisions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DottedVersion(Vec<u64>);

/// Why a string is not a [`DottedVersion`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The string is empty.
    #[error("version is empty")]
    Empty,
    /// A component is empty or not all ASCII digits, or does not fit in 64 bits.
    #[error("version `{version}` has a non-numeric component `{component}`")]
    NonNumeric {
        /// The whole input.
        version: String,
        /// The offending component.
        component: String,
    },
}

impl DottedVersion {
    /// The numeric components.
    pub fn components(&self) -> &[u64] {
        &self.0
    }
}

impl FromStr for DottedVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        s.split('.')
            .map(|c| {
                // Digits only: no sign, unlike Go's Atoi, because "plainly numeric" is the point.
                if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) {
                    c.parse::<u64>().ok()
                } else {
                    None
                }
                .ok_or_else(|| VersionError::NonNumeric {
                    version: s.to_owned(),
                    component: c.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl fmt::Display for DottedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_atoi_matches_go() {
        assert_eq!(go_atoi("+7"), Some(7));
        assert_eq!(go_atoi("-0"), Some(0));
        assert_eq!(go_atoi(""), None);
        assert_eq!(go_atoi("+"), None);
        assert_eq!(go_atoi(" 1"), None);
        assert_eq!(go_atoi("1_0"), None);
        assert_eq!(go_atoi("9223372036854775807"), Some(i64::MAX));
        assert_eq!(go_atoi("9223372036854775808"), None);
    }

    #[test]
    fn semver_parse_shapes() {
        assert!(SemVer::parse("1.1.70").is_some());
        assert!(SemVer::parse("1.2.3-rc.1+build.5").is_some());
        assert!(SemVer::parse("1.2.650.0").is_none());
        assert!(SemVer::parse("1.2").is_none());
        // An empty pre-release after `-` is accepted by go-semver too.
        assert!(SemVer::parse("1.2.3-").is_some());
        assert!(SemVer::parse("1.2.3-a..b").is_none());
    }
}
