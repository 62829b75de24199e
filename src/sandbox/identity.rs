//! The seeded identities of the sandbox account and the IAM-like rules that bind them.
//!
//! The SigV4 signature is never verified; the access key id alone selects an [`Identity`]
//! (the key id *is* the name: `alice`, `bob`, `eve`). Each identity carries the few decisions
//! the real account's policies would make for Session Manager:
//!
//! - which session documents it may start, as an `ssm:StartSession` statement on document ARNs
//!   with `"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}` enforces (so omitting
//!   `DocumentName` checks `SSM-SessionManagerRunShell` against the same list);
//! - which instances it may reach, as an `ssm:resourceTag/Environment` condition does;
//! - that it may resume and terminate only sessions it owns (`ssm:resourceTag/aws:ssmmessages:session-id`
//!   style `${aws:userid}` scoping);
//! - whether it may use KMS at all;
//! - whose session transcripts it may read (S3 objects and CloudWatch log streams are named
//!   after the session id, which starts with the owner's name, so a policy can scope
//!   `…/${aws:username}-*`); reading an SSE-KMS object also needs `kms:Decrypt`.
//!
//! Every identity may read (Describe*, Get*, List*): the account's read-only policy is broad,
//! and a user with no session rights (`eve`) must still be able to see why they are denied.

/// The sandbox account id (any 12 digits work; this is the one from the AWS documentation).
pub const ACCOUNT_ID: &str = "123456789012";

/// The secret access key printed by `ssmtui sandbox`; never checked, present so SDKs sign.
pub const SECRET_ACCESS_KEY: &str = "sandbox-secret-not-checked";

/// One principal of the sandbox account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Short name; also the access key id and the role session name.
    pub name: &'static str,
    /// Session class this identity belongs to (`sudo`, `no-sudo`), if any.
    pub class: Option<&'static str>,
    /// IAM Identity Center permission set the assumed role comes from.
    pub permission_set: &'static str,
    /// The role's unique id (`AROA…`), which prefixes `UserId`.
    pub role_id: &'static str,
    /// Document name patterns (`*` wildcard) this identity may start sessions with.
    pub documents: &'static [&'static str],
    /// `Environment` tag values it may reach; `None` means every instance.
    pub environments: Option<&'static [&'static str]>,
    /// Whether it may call StartSession/ResumeSession/TerminateSession at all.
    pub sessions: bool,
    /// Whether it may call kms:GenerateDataKey / kms:Decrypt.
    pub kms: bool,
    /// Whose session transcripts it may read.
    pub transcripts: Reach,
}

/// Whose transcripts an identity may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every session's.
    All,
    /// Only sessions it started.
    Own,
}

const ALICE: Identity = Identity {
    name: "alice",
    class: Some("sudo"),
    permission_set: "PlatformAdmin",
    role_id: "AROA3XFRBF23ALICE0001",
    // A wildcard, as real policies write it, so an unknown port-forward document name is
    // allowed by IAM and then rejected by SSM as InvalidDocument.
    documents: &["SSM-sudo", "AWS-StartPortForwardingSession*"],
    environments: None,
    sessions: true,
    kms: true,
    transcripts: Reach::All,
};

const BOB: Identity = Identity {
    name: "bob",
    class: Some("no-sudo"),
    permission_set: "Developer",
    role_id: "AROA3XFRBF23BOB000002",
    documents: &["SSM-nosudo", "AWS-StartPortForwardingSession"],
    environments: Some(&["staging", "dev"]),
    sessions: true,
    kms: true,
    transcripts: Reach::Own,
};

const EVE: Identity = Identity {
    name: "eve",
    class: None,
    permission_set: "ReadOnly",
    role_id: "AROA3XFRBF23EVE000003",
    documents: &[],
    environments: Some(&[]),
    sessions: false,
    kms: false,
    // The read-only policy reads every bucket and log group, but not the KMS key.
    transcripts: Reach::All,
};

/// Every seeded identity, in the order they are listed to users.
pub const IDENTITIES: [Identity; 3] = [ALICE, BOB, EVE];

/// The identity whose access key id is `key`.
pub fn by_access_key(key: &str) -> Option<&'static Identity> {
    IDENTITIES.iter().find(|i| i.name == key)
}

/// A one-line summary of the identities for humans (`alice (sudo), …`).
pub fn summary() -> String {
    IDENTITIES
        .iter()
        .map(|i| format!("{} ({})", i.name, i.describe()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Identity {
    /// The access key id that selects this identity.
    pub fn access_key_id(&self) -> &'static str {
        self.name
    }

    /// The assumed-role ARN, in the IAM Identity Center shape.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:sts::{ACCOUNT_ID}:assumed-role/AWSReservedSSO_{}_{}/{}",
            self.permission_set,
            role_suffix(self.permission_set),
            self.name
        )
    }

    /// `UserId` as GetCallerIdentity returns it for an assumed role.
    pub fn user_id(&self) -> String {
        format!("{}:{}", self.role_id, self.name)
    }

    /// What this identity may do, in a few words.
    pub fn describe(&self) -> String {
        match (self.class, self.environments) {
            (Some(class), None) => format!("class {class}, every environment"),
            (Some(class), Some(envs)) => format!("class {class}, {} only", envs.join("/")),
            (None, _) => "read-only, no sessions".to_owned(),
        }
    }

    /// Whether an `ssm:StartSession` on this document is allowed.
    pub fn may_start_document(&self, document: &str) -> bool {
        self.sessions && self.documents.iter().any(|p| glob_match(p, document))
    }

    /// Whether this identity may read the transcript of `session_id` (`<owner>-<hex>`).
    pub fn may_read_transcript(&self, session_id: &str) -> bool {
        match self.transcripts {
            Reach::All => true,
            Reach::Own => session_id
                .strip_prefix(self.name)
                .is_some_and(|rest| rest.starts_with('-')),
        }
    }

    /// Whether an instance with this `Environment` tag may be reached.
    pub fn may_reach(&self, environment: Option<&str>) -> bool {
        if !self.sessions {
            return false;
        }
        match self.environments {
            None => true,
            Some(allowed) => environment.is_some_and(|e| allowed.contains(&e)),
        }
    }
}

/// A stable hex suffix like the one Identity Center appends to its role names.
fn role_suffix(permission_set: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in permission_set.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// IAM-style wildcards: `*` matches any run (also empty), `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    crate::rules::wildcard_match(pattern, text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "AWS-StartPortForwardingSession*",
            "AWS-StartPortForwardingSession"
        ));
        assert!(glob_match(
            "AWS-StartPortForwardingSession*",
            "AWS-StartPortForwardingSessionToRemoteHost"
        ));
        assert!(!glob_match("SSM-sudo", "SSM-nosudo"));
        assert!(glob_match("web-?1", "web-01"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbxx"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn rules() {
        let alice = by_access_key("alice").unwrap();
        let bob = by_access_key("bob").unwrap();
        let eve = by_access_key("eve").unwrap();
        assert!(alice.may_start_document("SSM-sudo"));
        assert!(!alice.may_start_document("SSM-nosudo"));
        assert!(!alice.may_start_document("SSM-SessionManagerRunShell"));
        assert!(bob.may_start_document("SSM-nosudo"));
        assert!(!bob.may_start_document("AWS-StartPortForwardingSessionToRemoteHost"));
        assert!(alice.may_reach(Some("prod")) && alice.may_reach(None));
        assert!(bob.may_reach(Some("dev")) && !bob.may_reach(Some("prod")) && !bob.may_reach(None));
        assert!(!eve.may_reach(Some("dev")) && !eve.may_start_document("SSM-nosudo"));
        assert!(
            alice.arn().starts_with(
                "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_PlatformAdmin_"
            )
        );
        assert!(alice.arn().ends_with("/alice"));
        assert!(alice.may_read_transcript("bob-0123"));
        assert!(bob.may_read_transcript("bob-0123") && !bob.may_read_transcript("bobby-0123"));
        assert!(!bob.may_read_transcript("alice-0123"));
    }
}
