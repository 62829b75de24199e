//! The seeded world: EC2 instances with their SSM agent status, session documents and KMS keys.
//!
//! Everything here is a pure function of `(seed, instance count, region)`: the generator uses
//! its own splitmix64 stream and never the OS's randomness, so two sandboxes started with the
//! same seed describe the same account, instance for instance. Special instances (stopped,
//! agent ConnectionLost, the one Windows host, old agents) are placed by a seeded shuffle so
//! every world of ten or more instances has each kind, at any scale.
//!
//! Generation and lookups are linear or better (an id → index map), so 10 000+ instances are
//! cheap to build and to page through.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::identity::ACCOUNT_ID;

/// The agent version most instances run.
pub const CURRENT_AGENT_VERSION: &str = "3.3.987.0";
/// Old agent versions a few instances run; 3.0.161.0 selects basic port forwarding (§9.2).
pub const OLD_AGENT_VERSIONS: [&str; 2] = ["3.0.161.0", "3.1.1188.0"];
/// Environments, in the order they are assigned.
pub const ENVIRONMENTS: [&str; 3] = ["prod", "staging", "dev"];

/// Key id of the KMS key named by the session documents (`kmsKeyId`).
pub const SESSION_KEY_ID: &str = "5a4e7d1c-0b3f-4c2a-9e8d-7f6a5b4c3d2e";
/// Alias of the session key.
pub const SESSION_KEY_ALIAS: &str = "alias/ssmtui-sessions";
/// Key id of a general-purpose key with no session binding (plain encrypt/decrypt round trips).
pub const GENERAL_KEY_ID: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
/// Alias of the general key.
pub const GENERAL_KEY_ALIAS: &str = "alias/ssmtui-general";

const ROLES: [(&str, &str, bool); 6] = [
    // (role, team, in an auto scaling group)
    ("web", "frontend", true),
    ("api", "payments", true),
    ("worker", "data", true),
    ("db-bastion", "platform", false),
    ("cache", "platform", false),
    ("batch", "data", false),
];

/// A small, fast, seedable PRNG (splitmix64); good enough for a fake world, not for secrets.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`); the tiny modulo bias does not matter here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// EC2 instance state as DescribeInstances reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Running (code 16).
    Running,
    /// Stopped (code 80).
    Stopped,
}

impl InstanceState {
    /// The state name (`running`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }

    /// The numeric state code.
    pub fn code(self) -> u16 {
        match self {
            Self::Running => 16,
            Self::Stopped => 80,
        }
    }
}

/// SSM agent ping status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingStatus {
    /// The agent pings regularly.
    Online,
    /// The agent has not pinged for a while.
    ConnectionLost,
}

impl PingStatus {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "Online",
            Self::ConnectionLost => "ConnectionLost",
        }
    }
}

/// Operating system family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformType {
    /// Linux.
    Linux,
    /// Windows.
    Windows,
}

impl PlatformType {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linux => "Linux",
            Self::Windows => "Windows",
        }
    }
}

/// One EC2 instance and its SSM agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `i-` and 17 hex digits.
    pub id: String,
    /// Tags in a stable order (Name first).
    pub tags: Vec<(String, String)>,
    /// EC2 state.
    pub state: InstanceState,
    /// Agent ping status (stopped instances are always ConnectionLost).
    pub ping: PingStatus,
    /// How long ago the agent last pinged, in seconds, relative to the request time.
    pub ping_age_secs: u64,
    /// SSM agent version.
    pub agent_version: String,
    /// OS family.
    pub platform_type: PlatformType,
    /// OS name (`Amazon Linux`).
    pub platform_name: String,
    /// OS version (`2023`).
    pub platform_version: String,
    /// Private IPv4 address.
    pub private_ip: Ipv4Addr,
    /// `t3.small` etc.
    pub instance_type: String,
    /// AMI id.
    pub image_id: String,
    /// Launch time, seconds since the epoch.
    pub launch_time: i64,
    /// Availability zone.
    pub availability_zone: String,
    /// VPC id.
    pub vpc_id: String,
    /// Subnet id.
    pub subnet_id: String,
}

impl Instance {
    /// The value of tag `key`, if set.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `Environment` tag.
    pub fn environment(&self) -> Option<&str> {
        self.tag("Environment")
    }

    /// Whether Session Manager can reach it now (running and agent online).
    pub fn connected(&self) -> bool {
        self.state == InstanceState::Running && self.ping == PingStatus::Online
    }

    /// The host name the agent reports (`ip-10-0-1-2.ec2.internal` style).
    pub fn computer_name(&self, region: &str) -> String {
        let ip = self.private_ip.to_string().replace('.', "-");
        match self.platform_type {
            PlatformType::Windows => format!(
                "EC2AMAZ-{}",
                self.id.get(2..9).unwrap_or("0").to_uppercase()
            ),
            PlatformType::Linux => format!("ip-{ip}.{region}.compute.internal"),
        }
    }

    /// `arn:aws:ec2:<region>:<account>:instance/<id>`.
    pub fn arn(&self, account: &str, region: &str) -> String {
        format!("arn:aws:ec2:{region}:{account}:instance/{}", self.id)
    }
}

/// A Session Manager document (all sandbox documents are `Session` documents, version 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Name.
    pub name: String,
    /// JSON content, with the region-specific values filled in.
    pub content: String,
    /// `Amazon` for AWS-owned documents, the account id otherwise.
    pub owner: String,
    /// Tags.
    pub tags: Vec<(String, String)>,
    /// Creation time, seconds since the epoch.
    pub created: i64,
}

impl Document {
    /// The parsed content (the embedded files are checked by a test, so this is infallible in
    /// practice; a world file could still carry bad JSON, which then reads as `null`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.content).unwrap_or(serde_json::Value::Null)
    }

    /// `sessionType` (`Standard_Stream`, `Port`, …).
    pub fn session_type(&self) -> Option<String> {
        self.json()
            .get("sessionType")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }

    /// `inputs.maxSessionDuration` if set and non-empty.
    pub fn max_session_duration(&self) -> Option<String> {
        self.json()
            .pointer("/inputs/maxSessionDuration")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    /// `arn:aws:ssm:<region>:<account>:document/<name>`.
    pub fn arn(&self, region: &str) -> String {
        if self.owner == "Amazon" {
            format!("arn:aws:ssm:{region}::document/{}", self.name)
        } else {
            format!("arn:aws:ssm:{region}:{}:document/{}", self.owner, self.name)
        }
    }
}

/// The embedded document sources: (name, JSON, owned by Amazon, class tag).
const DOCUMENTS: [(&str, &str, bool, Option<&str>); 5] = [
    (
        "SSM-sudo",
        include_str!("../../assets/sandbox/documents/SSM-sudo.json"),
        false,
        Some("sudo"),
    ),
    (
        "SSM-nosudo",
        include_str!("../../assets/sandbox/documents/SSM-nosudo.json"),
        false,
        Some("no-sudo"),
    ),
    (
        "SSM-SessionManagerRunShell",
        include_str!("../../assets/sandbox/documents/SSM-SessionManagerRunShell.json"),
        false,
        None,
    ),
    (
        "AWS-StartPortForwardingSession",
        include_str!("../../assets/sandbox/documents/AWS-StartPortForwardingSession.json"),
        true,
        None,
    ),
    (
        "AWS-StartPortForwardingSessionToRemoteHost",
        include_str!(
            "../../assets/sandbox/documents/AWS-StartPortForwardingSessionToRemoteHost.json"
        ),
        true,
        None,
    ),
];

/// `arn:aws:kms:<region>:<account>:key/<id>`.
pub fn key_arn(account: &str, region: &str, key_id: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{key_id}")
}

/// The whole emulated account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    /// Instances in DescribeInstances order.
    pub instances: Vec<Instance>,
    /// Documents in ListDocuments order.
    pub documents: Vec<Document>,
    index: HashMap<String, usize>,
    /// The account that owns it.
    pub account: &'static str,
}

impl World {
    /// Generates the world for `seed` with `count` instances in `region` of the first account.
    pub fn generate(seed: u64, count: usize, region: &str) -> Self {
        Self::generate_in(ACCOUNT_ID, seed, count, region)
    }

    /// Generates the world of `account` for `seed` with `count` instances in `region`.
    pub fn generate_in(account: &'static str, seed: u64, count: usize, region: &str) -> Self {
        let mut rng = SplitMix64::new(seed);
        let base_time: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z: launch times are before "now"

        // Seeded shuffle of positions: the first few are the special instances.
        let mut order: Vec<usize> = (0..count).collect();
        for i in (1..count).rev() {
            let j = rng.below(i + 1);
            order.swap(i, j);
        }
        let special = (count / 13).max(if count >= 10 { 2 } else { 0 });
        let mut kind = vec![Special::None; count];
        let mut slots = order.iter().copied();
        for _ in 0..special {
            if let Some(i) = slots.next() {
                kind[i] = Special::Stopped;
            }
        }
        for _ in 0..special {
            if let Some(i) = slots.next() {
                kind[i] = Special::ConnectionLost;
            }
        }
        if let Some(i) = slots.next() {
            kind[i] = Special::Windows;
        }
        for v in OLD_AGENT_VERSIONS {
            if let Some(i) = slots.next() {
                kind[i] = Special::OldAgent(v);
            }
        }

        let mut counters: HashMap<(usize, usize), usize> = HashMap::new();
        let mut instances = Vec::with_capacity(count);
        let mut index = HashMap::with_capacity(count);
        let azs = ["a", "b", "c"];
        for (n, special) in kind.iter().copied().enumerate() {
            let env = rng.below(ENVIRONMENTS.len());
            let role = rng.below(ROLES.len());
            let (role_name, team, asg) = ROLES[role];
            let env_name = ENVIRONMENTS[env];
            let seq = counters.entry((env, role)).or_insert(0);
            *seq += 1;
            let mut id;
            loop {
                id = format!("i-0{:016x}", rng.next_u64());
                if !index.contains_key(&id) {
                    break;
                }
            }
            let name = format!("{env_name}-{role_name}-{:02}", *seq);
            let mut tags = vec![
                ("Name".to_owned(), name),
                ("Environment".to_owned(), env_name.to_owned()),
                ("Team".to_owned(), team.to_owned()),
                ("Role".to_owned(), role_name.to_owned()),
            ];
            if asg {
                tags.push((
                    "aws:autoscaling:groupName".to_owned(),
                    format!("{env_name}-{role_name}-asg"),
                ));
            }
            let az = format!("{region}{}", azs[rng.below(azs.len())]);
            let subnet = rng.below(4);
            let ip = Ipv4Addr::new(
                10,
                env as u8,
                (rng.below(250) + 1) as u8,
                (n % 250 + 2) as u8,
            );
            let (platform_type, platform_name, platform_version) = match special {
                Special::Windows => (
                    PlatformType::Windows,
                    "Microsoft Windows Server 2022 Datacenter",
                    "10.0.20348",
                ),
                _ if rng.below(4) == 0 => (PlatformType::Linux, "Ubuntu", "22.04"),
                _ => (PlatformType::Linux, "Amazon Linux", "2023"),
            };
            let instance_type = [
                "t3.micro",
                "t3.small",
                "t3.medium",
                "m6i.large",
                "c6i.xlarge",
            ][rng.below(5)]
            .to_owned();
            let launch_time = base_time - (rng.below(300 * 24 * 3600) as i64);
            let ping_age_secs = rng.below(240) as u64 + 5;
            let (state, ping, ping_age_secs) = match special {
                Special::Stopped => (
                    InstanceState::Stopped,
                    PingStatus::ConnectionLost,
                    ping_age_secs + 86_400 * 3,
                ),
                Special::ConnectionLost => (
                    InstanceState::Running,
                    PingStatus::ConnectionLost,
                    ping_age_secs + 3_600,
                ),
                _ => (InstanceState::Running, PingStatus::Online, ping_age_secs),
            };
            let agent_version = match special {
                Special::OldAgent(v) => v.to_owned(),
                _ => CURRENT_AGENT_VERSION.to_owned(),
            };
            index.insert(id.clone(), n);
            instances.push(Instance {
                image_id: format!(
                    "ami-0{:016x}",
                    (platform_type as u64 + 1) * 0x1234_5678_9abc
                ),
                vpc_id: format!("vpc-0{:016x}", 0xa11c_e000 + env as u64),
                subnet_id: format!("subnet-0{:016x}", 0x5ab0_0000 + (env * 4 + subnet) as u64),
                id,
                tags,
                state,
                ping,
                ping_age_secs,
                agent_version,
                platform_type,
                platform_name: platform_name.to_owned(),
                platform_version: platform_version.to_owned(),
                private_ip: ip,
                instance_type,
                launch_time,
                availability_zone: az,
            });
        }

        let documents = DOCUMENTS
            .iter()
            .map(|(name, content, amazon, class)| Document {
                name: (*name).to_owned(),
                content: content
                    .replace(
                        "${SESSION_KEY_ARN}",
                        &key_arn(account, region, SESSION_KEY_ID),
                    )
                    .trim_end()
                    .to_owned(),
                owner: if *amazon {
                    "Amazon".to_owned()
                } else {
                    account.to_owned()
                },
                tags: class
                    .map(|c| vec![("ssmtui:class".to_owned(), c.to_owned())])
                    .unwrap_or_default(),
                created: base_time - 86_400 * 30,
            })
            .collect();

        Self {
            instances,
            documents,
            index,
            account,
        }
    }

    /// The instance with this id.
    pub fn instance(&self, id: &str) -> Option<&Instance> {
        self.index.get(id).and_then(|&i| self.instances.get(i))
    }

    /// The instance with this id, for changing it.
    pub fn instance_mut(&mut self, id: &str) -> Option<&mut Instance> {
        self.index.get(id).and_then(|&i| self.instances.get_mut(i))
    }

    /// The document with this name.
    pub fn document(&self, name: &str) -> Option<&Document> {
        self.documents.iter().find(|d| d.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    Stopped,
    ConnectionLost,
    Windows,
    OldAgent(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_world_has_every_kind() {
        let w = World::generate(1, 40, "eu-west-1");
        assert_eq!(w.instances.len(), 40);
        let stopped = w
            .instances
            .iter()
            .filter(|i| i.state == InstanceState::Stopped)
            .count();
        let lost = w
            .instances
            .iter()
            .filter(|i| i.state == InstanceState::Running && i.ping == PingStatus::ConnectionLost)
            .count();
        let windows = w
            .instances
            .iter()
            .filter(|i| i.platform_type == PlatformType::Windows)
            .count();
        assert!((2..=4).contains(&stopped), "{stopped}");
        assert!((2..=4).contains(&lost), "{lost}");
        assert_eq!(windows, 1);
        // Online, so that tests can rely on reaching it (and being refused a shell there).
        assert!(
            w.instances
                .iter()
                .any(|i| i.platform_type == PlatformType::Windows && i.connected())
        );
        assert!(w.instances.iter().any(|i| i.agent_version == "3.0.161.0"));
        for env in ENVIRONMENTS {
            assert!(w.instances.iter().any(|i| i.environment() == Some(env)));
        }
        assert!(
            w.instances
                .iter()
                .any(|i| i.tag("aws:autoscaling:groupName").is_some())
        );
        for i in &w.instances {
            assert_eq!(i.id.len(), 19);
            assert_eq!(w.instance(&i.id), Some(i));
        }
    }

    #[test]
    fn same_seed_same_world_other_seed_other_world() {
        assert_eq!(
            World::generate(7, 100, "us-east-1"),
            World::generate(7, 100, "us-east-1")
        );
        assert_ne!(
            World::generate(7, 100, "us-east-1").instances,
            World::generate(8, 100, "us-east-1").instances
        );
    }

    #[test]
    fn documents_are_valid_json_with_the_key_filled_in() {
        let w = World::generate(1, 1, "eu-west-1");
        assert_eq!(w.documents.len(), 5);
        for d in &w.documents {
            assert!(d.json().is_object(), "{}", d.name);
            assert!(!d.content.contains("${"), "{}", d.name);
        }
        let sudo = w.document("SSM-sudo").unwrap();
        assert_eq!(
            sudo.json().pointer("/inputs/kmsKeyId").unwrap(),
            &serde_json::json!(key_arn(ACCOUNT_ID, "eu-west-1", SESSION_KEY_ID))
        );
        assert_eq!(sudo.max_session_duration().as_deref(), Some("60"));
        assert_eq!(
            w.document("AWS-StartPortForwardingSession")
                .unwrap()
                .session_type()
                .as_deref(),
            Some("Port")
        );
    }
}
