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
/// A single sandbox is this account; a fleet sandbox's first account is too.
pub const ACCOUNT_ID: &str = "123456789012";

/// The accounts a fleet sandbox (`ssmtui sandbox --accounts N`) can serve, in order.
pub const ACCOUNT_IDS: [&str; 6] = [
    ACCOUNT_ID,
    "210987654321",
    "345678901234",
    "456789012345",
    "567890123456",
    "678901234567",
];

/// The most accounts a fleet sandbox serves.
pub const MAX_ACCOUNTS: usize = ACCOUNT_IDS.len();

/// A short name for each account of a fleet sandbox, used for its profile and alias. Who may
/// do what differs by account, as it does in organisations: in `dev` the developers (bob) are
/// admins (class sudo), in `audit` everyone is class no-sudo, `prod` is the single sandbox's
/// account.
pub const ACCOUNT_NAMES: [&str; 6] = ["prod", "dev", "audit", "prod2", "dev2", "audit2"];

/// The secret access key printed by `ssmtui sandbox`; never checked, present so SDKs sign.
pub const SECRET_ACCESS_KEY: &str = "sandbox-secret-not-checked";

/// One principal of the sandbox account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Short name; also the access key id (in the first account; `NAME@ACCOUNT` in the
    /// others) and the role session name.
    pub name: &'static str,
    /// The account the identity is in.
    pub account: &'static str,
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
    account: ACCOUNT_ID,
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
    account: ACCOUNT_ID,
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
    account: ACCOUNT_ID,
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

/// Every seeded identity of the first account, in the order they are listed to users.
pub const IDENTITIES: [Identity; 3] = [ALICE, BOB, EVE];

/// The identities of account `index` of a fleet sandbox: the same people, with what each may
/// do depending on the account (see [`ACCOUNT_NAMES`]).
const fn account_identities(index: usize) -> [Identity; 3] {
    let account = ACCOUNT_IDS[index];
    match index % 3 {
        // dev: bob's permission set there is the admin one, so his class is sudo.
        1 => [
            Identity { account, ..ALICE },
            Identity {
                account,
                class: Some("sudo"),
                permission_set: "PlatformAdmin",
                documents: ALICE.documents,
                environments: None,
                ..BOB
            },
            Identity { account, ..EVE },
        ],
        // audit: read-mostly; alice has the developer set there, so her class is no-sudo.
        2 => [
            Identity {
                account,
                class: Some("no-sudo"),
                permission_set: "Developer",
                documents: BOB.documents,
                environments: None,
                transcripts: Reach::Own,
                ..ALICE
            },
            Identity { account, ..BOB },
            Identity { account, ..EVE },
        ],
        _ => [
            Identity { account, ..ALICE },
            Identity { account, ..BOB },
            Identity { account, ..EVE },
        ],
    }
}

/// The identities of every account a fleet sandbox can serve.
pub static ACCOUNTS: [[Identity; 3]; MAX_ACCOUNTS] = [
    account_identities(0),
    account_identities(1),
    account_identities(2),
    account_identities(3),
    account_identities(4),
    account_identities(5),
];

/// The identity whose access key id is `key`, in the first account.
pub fn by_access_key(key: &str) -> Option<&'static Identity> {
    ACCOUNTS[0].iter().find(|i| i.name == key)
}

/// The identity an access key selects in account `index`: `NAME` (the first account only, so
/// one-account setups keep their keys) or `NAME@ACCOUNT`.
pub fn by_access_key_in(index: usize, key: &str) -> Option<&'static Identity> {
    let identities = ACCOUNTS.get(index)?;
    let name = match key.split_once('@') {
        Some((name, account)) if account == ACCOUNT_IDS[index] => name,
        Some(_) => return None,
        None if index == 0 => key,
        None => return None,
    };
    identities.iter().find(|i| i.name == name)
}

/// The account index an access key names (`NAME@ACCOUNT`; plain `NAME` is the first account),
/// or `None` for an account no fleet sandbox serves.
pub fn account_of_key(key: &str) -> Option<usize> {
    match key.split_once('@') {
        Some((_, account)) => ACCOUNT_IDS.iter().position(|a| *a == account),
        None => Some(0),
    }
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
    /// The access key id that selects this identity: `NAME` in the first account,
    /// `NAME@ACCOUNT` in the others.
    pub fn access_key_id(&self) -> String {
        if self.account == ACCOUNT_ID {
            self.name.to_owned()
        } else {
            format!("{}@{}", self.name, self.account)
        }
    }

    /// The assumed-role ARN, in the IAM Identity Center shape.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:sts::{}:assumed-role/AWSReservedSSO_{}_{}/{}",
            self.account,
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
