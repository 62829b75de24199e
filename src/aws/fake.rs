//! An in-memory [`SsmApi`] for unit tests of the layers above AWS.
//!
//! It holds a list of instances and documents, records every call, and can be told to fail a
//! given operation. Sessions get ids `fake-N`, stream URLs the test chose, and tokens
//! `token-N`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    AwsError, DataKey, DocumentSummary, Identity, Instance, LogPage, LogRecord, Service,
    SessionState, SessionSummary, SessionTarget, SsmApi, StartSessionRequest, TagFilter,
};
use crate::secret::Secret;

/// Scripted state of the fake.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Instances returned by `list_instances` (filtered by tags as EC2 would).
    pub instances: Vec<Instance>,
    /// Document name to content.
    pub documents: HashMap<String, String>,
    /// Document name to tags (documents without an entry have none).
    pub document_tags: HashMap<String, std::collections::BTreeMap<String, String>>,
    /// Sessions started so far, with their status.
    pub sessions: Vec<SessionSummary>,
    /// Operation name to the error it should fail with (consumed on use).
    pub failures: HashMap<&'static str, AwsError>,
    /// Every call made, as `Operation arg`.
    pub calls: Vec<String>,
    /// The stream URL handed out by StartSession/ResumeSession.
    pub stream_url: String,
    /// Who the caller is.
    pub identity: Option<Identity>,
    /// S3 objects by (bucket, key).
    pub objects: HashMap<(String, String), Vec<u8>>,
    /// CloudWatch Logs events by (group, stream).
    pub log_streams: HashMap<(String, String), Vec<LogRecord>>,
    counter: u64,
}

/// The in-memory API.
#[derive(Debug, Default)]
pub struct FakeApi {
    /// Its state; tests lock it to script and inspect.
    pub state: Mutex<FakeState>,
}

impl FakeApi {
    /// A fake with these instances.
    pub fn with_instances(instances: Vec<Instance>) -> Self {
        let fake = Self::default();
        if let Ok(mut s) = fake.state.lock() {
            s.instances = instances;
        }
        fake
    }

    fn enter(
        &self,
        call: String,
        op: &'static str,
    ) -> Result<std::sync::MutexGuard<'_, FakeState>, AwsError> {
        let mut state = self.state.lock().map_err(|_| AwsError::Incomplete {
            operation: op,
            what: "fake state (poisoned)",
        })?;
        state.calls.push(call);
        if let Some(err) = state.failures.remove(op) {
            return Err(err);
        }
        Ok(state)
    }
}

/// The caller of the demo world.
pub const WORLD_ARN: &str =
    "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Developer_0a1b2c/alice";

/// `count` deterministic instances: a mix of roles, environments, teams and platforms, with
/// some agents offline and some instances stopped, so every row style shows up.
pub fn world_instances(count: usize) -> Vec<Instance> {
    const ROLES: [&str; 6] = ["web", "api", "worker", "db", "cache", "bastion"];
    const ENVS: [&str; 3] = ["prod", "staging", "dev"];
    const TEAMS: [&str; 4] = ["payments", "search", "platform", "data"];
    (0..count)
        .map(|n| {
            let role = ROLES[n % ROLES.len()];
            let env = ENVS[(n / ROLES.len()) % ENVS.len()];
            let team = TEAMS[(n / 3) % TEAMS.len()];
            let windows = n % 17 == 16;
            let stopped = n % 13 == 12;
            let offline = !stopped && n % 11 == 10;
            let mut tags = BTreeMap::from([
                ("Name".to_owned(), format!("{role}-{env}-{:02}", n / 18 + 1)),
                ("Environment".to_owned(), env.to_owned()),
                ("Team".to_owned(), team.to_owned()),
                ("Role".to_owned(), role.to_owned()),
            ]);
            if n % 5 == 0 {
                tags.insert("CostCenter".to_owned(), format!("cc-{}", 100 + n % 7));
            }
            Instance {
                id: format!("i-{:017x}", 0x0a1b_2c3d_0000_0000_u64 + n as u64 * 0x1_0001),
                name: tags.get("Name").cloned(),
                state: if stopped { "stopped" } else { "running" }.to_owned(),
                ping: if stopped {
                    None
                } else if offline {
                    Some("ConnectionLost".to_owned())
                } else {
                    Some("Online".to_owned())
                },
                last_ping: Some(format!(
                    "2024-05-01T{:02}:{:02}:00Z",
                    9 + n % 8,
                    (n * 7) % 60
                )),
                agent_version: Some(format!("3.3.{}.0", 1000 + n % 300)),
                platform: Some(if windows {
                    "Microsoft Windows Server 2022 Datacenter".to_owned()
                } else if n % 3 == 0 {
                    "Ubuntu".to_owned()
                } else {
                    "Amazon Linux".to_owned()
                }),
                platform_type: Some(if windows { "Windows" } else { "Linux" }.to_owned()),
                private_ip: Some(format!(
                    "10.{}.{}.{}",
                    n / 62_500 % 256,
                    n / 250 % 256,
                    n % 250 + 4
                )),
                tags,
                image_id: Some(format!("ami-{:017x}", 0x0f00_0000_u64 + (n % 4) as u64)),
                instance_type: Some(["t3.micro", "m6i.large", "r6g.xlarge"][n % 3].to_owned()),
                vpc_id: Some("vpc-0123456789abcdef0".to_owned()),
                subnet_id: Some(format!("subnet-0aa{:014x}", n % 3)),
                availability_zone: Some(
                    ["eu-west-1a", "eu-west-1b", "eu-west-1c"][n % 3].to_owned(),
                ),
            }
        })
        .collect()
}

/// Sessions of the demo world: two of the caller's (one active), one of a colleague.
pub fn world_sessions() -> Vec<SessionSummary> {
    let session =
        |id: &str, target: &str, status: &str, owner: &str, start: &str, reason: Option<&str>| {
            SessionSummary {
                id: id.to_owned(),
                target: target.to_owned(),
                status: status.to_owned(),
                start: Some(start.to_owned()),
                end: (status == "Terminated").then(|| "2024-05-01T11:00:00Z".to_owned()),
                document: Some("SSM-SessionManagerRunShell".to_owned()),
                owner: Some(owner.to_owned()),
                reason: reason.map(str::to_owned),
            }
        };
    let bob = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Developer_0a1b2c/bob";
    vec![
        session(
            "alice-0c1d2e3f4a5b6c7d8",
            "i-00000000a1b2c3d0",
            "Connected",
            WORLD_ARN,
            "2024-05-01T12:10:00Z",
            Some("INC-4711 disk full"),
        ),
        session(
            "bob-09f8e7d6c5b4a3928",
            "i-00000000a1b3c3d1",
            "Connected",
            bob,
            "2024-05-01T12:20:00Z",
            None,
        ),
        session(
            "alice-01a2b3c4d5e6f7a8b",
            "i-00000000a1b4c3d2",
            "Terminated",
            WORLD_ARN,
            "2024-05-01T10:00:00Z",
            Some("deploy check"),
        ),
    ]
}

impl FakeApi {
    /// A seeded world for the TUI's developer mode and tests: `count` instances, the demo
    /// caller and its sessions.
    pub fn world(count: usize) -> Self {
        let fake = Self::with_instances(world_instances(count));
        if let Ok(mut s) = fake.state.lock() {
            s.identity = Some(Identity {
                account: "123456789012".to_owned(),
                arn: WORLD_ARN.to_owned(),
                user_id: "AROAEXAMPLE:alice".to_owned(),
            });
            s.sessions = world_sessions();
        }
        fake
    }
}

fn matches(instance: &Instance, filters: &[TagFilter]) -> bool {
    filters.iter().all(|f| {
        instance
            .tags
            .get(&f.key)
            .is_some_and(|v| f.values.iter().any(|want| want == v))
    })
}

#[async_trait]
impl SsmApi for FakeApi {
    async fn list_instances(&self, filters: &[TagFilter]) -> Result<Vec<Instance>, AwsError> {
        let state = self.enter("ListInstances".to_owned(), "DescribeInstances")?;
        Ok(state
            .instances
            .iter()
            .filter(|i| matches(i, filters))
            .cloned()
            .collect())
    }

    async fn start_session(&self, req: &StartSessionRequest) -> Result<SessionTarget, AwsError> {
        let mut state = self.enter(
            format!("StartSession {} {}", req.target, req.document),
            "StartSession",
        )?;
        state.counter += 1;
        let id = format!("fake-{}", state.counter);
        let summary = SessionSummary {
            id: id.clone(),
            target: req.target.clone(),
            status: "Connected".to_owned(),
            start: None,
            end: None,
            document: Some(req.document.clone()),
            owner: state.identity.as_ref().map(|i| i.arn.clone()),
            reason: req.reason.clone(),
        };
        state.sessions.push(summary);
        Ok(SessionTarget {
            session_id: id,
            stream_url: state.stream_url.clone(),
            token: Secret::new(format!("token-{}", state.counter)),
        })
    }

    async fn resume_session(&self, session_id: &str) -> Result<SessionTarget, AwsError> {
        let mut state = self.enter(format!("ResumeSession {session_id}"), "ResumeSession")?;
        state.counter += 1;
        let alive = state
            .sessions
            .iter()
            .any(|s| s.id == session_id && s.status == "Connected");
        Ok(SessionTarget {
            session_id: session_id.to_owned(),
            stream_url: state.stream_url.clone(),
            token: Secret::new(if alive {
                format!("token-{}", state.counter)
            } else {
                String::new()
            }),
        })
    }

    async fn terminate_session(&self, session_id: &str) -> Result<(), AwsError> {
        let mut state = self.enter(format!("TerminateSession {session_id}"), "TerminateSession")?;
        for s in &mut state.sessions {
            if s.id == session_id {
                s.status = "Terminated".to_owned();
            }
        }
        Ok(())
    }

    async fn describe_sessions(
        &self,
        session_state: SessionState,
        _owner_self: bool,
    ) -> Result<Vec<SessionSummary>, AwsError> {
        let state = self.enter("DescribeSessions".to_owned(), "DescribeSessions")?;
        let active = session_state == SessionState::Active;
        Ok(state
            .sessions
            .iter()
            .filter(|s| (s.status == "Connected") == active)
            .cloned()
            .collect())
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, AwsError> {
        let state = self.enter(format!("GetObject {bucket}/{key}"), "GetObject")?;
        state
            .objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
            .ok_or_else(|| AwsError::NotFound {
                operation: "GetObject",
                message: "The specified key does not exist.".to_owned(),
            })
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<u64>, AwsError> {
        let state = self.enter(format!("HeadObject {bucket}/{key}"), "HeadObject")?;
        Ok(state
            .objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|o| o.len() as u64))
    }

    async fn log_events(
        &self,
        group: &str,
        stream: &str,
        token: Option<&str>,
    ) -> Result<LogPage, AwsError> {
        let state = self.enter(format!("GetLogEvents {group} {stream}"), "GetLogEvents")?;
        let events = state
            .log_streams
            .get(&(group.to_owned(), stream.to_owned()))
            .ok_or_else(|| AwsError::NotFound {
                operation: "GetLogEvents",
                message: "The specified log stream does not exist.".to_owned(),
            })?;
        let from: usize = token.and_then(|t| t.parse().ok()).unwrap_or(0);
        Ok(LogPage {
            events: events.get(from..).unwrap_or_default().to_vec(),
            next: Some(events.len().to_string()),
        })
    }

    async fn get_document(&self, name: &str) -> Result<String, AwsError> {
        let state = self.enter(format!("GetDocument {name}"), "GetDocument")?;
        state
            .documents
            .get(name)
            .cloned()
            .ok_or_else(|| AwsError::NotFound {
                operation: "GetDocument",
                message: format!("document {name} does not exist"),
            })
    }

    async fn describe_document(&self, name: &str) -> Result<DocumentSummary, AwsError> {
        let state = self.enter(format!("DescribeDocument {name}"), "DescribeDocument")?;
        if !state.documents.contains_key(name) {
            return Err(AwsError::NotFound {
                operation: "DescribeDocument",
                message: format!("document {name} does not exist"),
            });
        }
        Ok(fake_summary(&state, name))
    }

    async fn list_documents(&self, filter: &TagFilter) -> Result<Vec<DocumentSummary>, AwsError> {
        let state = self.enter(format!("ListDocuments {}", filter.key), "ListDocuments")?;
        let mut names: Vec<&String> = state.documents.keys().collect();
        names.sort();
        Ok(names
            .into_iter()
            .map(|n| fake_summary(&state, n))
            .filter(|d| {
                d.tags.get(&filter.key).is_some_and(|v| {
                    filter.values.is_empty() || filter.values.iter().any(|w| w == v)
                })
            })
            .collect())
    }

    async fn check_endpoint(&self, service: Service) -> Result<(), AwsError> {
        let op = match service {
            Service::Ec2 => "DescribeRegions",
            Service::Ssm => "ListDocuments",
        };
        let _state = self.enter(format!("CheckEndpoint {}", service.name()), op)?;
        Ok(())
    }

    async fn caller_identity(&self) -> Result<Identity, AwsError> {
        let state = self.enter("GetCallerIdentity".to_owned(), "GetCallerIdentity")?;
        state.identity.clone().ok_or(AwsError::Credentials {
            profile: None,
            message: "the fake has no identity".to_owned(),
        })
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        _context: &HashMap<String, String>,
    ) -> Result<DataKey, AwsError> {
        let _state = self.enter(format!("GenerateDataKey {key_id}"), "GenerateDataKey")?;
        Ok(DataKey {
            plaintext: zeroize::Zeroizing::new((0u8..64).collect()),
            ciphertext: key_id.as_bytes().to_vec(),
        })
    }
}

/// Every fake document is a `Session` document owned by the account.
fn fake_summary(state: &FakeState, name: &str) -> DocumentSummary {
    DocumentSummary {
        name: name.to_owned(),
        document_type: Some("Session".to_owned()),
        owner: Some("123456789012".to_owned()),
        tags: state.document_tags.get(name).cloned().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, env: &str) -> Instance {
        Instance {
            id: id.to_owned(),
            state: "running".to_owned(),
            ping: Some("Online".to_owned()),
            tags: [("Environment".to_owned(), env.to_owned())].into(),
            ..Instance::default()
        }
    }

    #[tokio::test]
    async fn filters_sessions_and_scripted_failures() {
        let fake = FakeApi::with_instances(vec![instance("i-1", "prod"), instance("i-2", "dev")]);
        let prod = fake
            .list_instances(&[TagFilter {
                key: "Environment".into(),
                values: vec!["prod".into()],
            }])
            .await
            .unwrap();
        assert_eq!(prod.len(), 1);
        assert_eq!(prod[0].id, "i-1");

        let started = fake
            .start_session(&StartSessionRequest {
                target: "i-1".into(),
                document: "SSM-sudo".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(started.token.expose(), "token-1");
        fake.terminate_session(&started.session_id).await.unwrap();
        let resumed = fake.resume_session(&started.session_id).await.unwrap();
        assert!(
            resumed.token.is_empty(),
            "a terminated session resumes with no token"
        );

        fake.state.lock().unwrap().failures.insert(
            "StartSession",
            AwsError::TargetNotConnected {
                message: "offline".into(),
            },
        );
        let err = fake
            .start_session(&StartSessionRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::NotFound);
    }
}
