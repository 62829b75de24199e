//! An in-memory [`SsmApi`] for unit tests of the layers above AWS.
//!
//! It holds a list of instances and documents, records every call, and can be told to fail a
//! given operation. Sessions get ids `fake-N`, stream URLs the test chose, and tokens
//! `token-N`.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    AwsError, DataKey, DocumentSummary, Identity, Instance, Service, SessionState, SessionSummary,
    SessionTarget, SsmApi, StartSessionRequest, TagFilter,
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
