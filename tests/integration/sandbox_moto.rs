//! The same SDK-level checks against our sandbox and against moto (an independent AWS
//! emulator, PyPI `moto[server]`), for the operations moto supports, so our emulation cannot
//! quietly drift from the shapes another implementation of the same models produces.
//!
//! Each test starts moto on loopback port 0 (the port is read back from the server), seeds it
//! through the SDK, runs the checks on both, and kills moto at the end. When moto cannot be
//! started at all the test prints why and returns early.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use crate::common;
use crate::common::sandbox::fast;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ssm::error::ProvideErrorMetadata;
use ssmtui::sandbox::{RunningSandbox, Sandbox, SandboxConfig};

const REGION: &str = "us-east-1";

const MOTO: &str = r#"
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
"#;

/// A moto server child process, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let child = Command::new("python3")
        .args(["-c", MOTO])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            common::require_tool(false, &format!("python3 ({e})"), "the moto comparison");
            return None;
        }
    };
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take()?).read_line(&mut line);
    match (read, line.trim().parse::<u16>()) {
        (Ok(_), Ok(port)) if port != 0 => Some(Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            common::require_tool(
                false,
                "moto (`python3 -m pip install 'moto[server]'`)",
                "the moto comparison",
            );
            None
        }
    }
}

async fn start_sandbox() -> RunningSandbox {
    Sandbox::start(SandboxConfig {
        region: REGION.to_owned(),
        ..fast()
    })
    .await
    .unwrap()
}

fn creds() -> Credentials {
    Credentials::new("alice", "x", None, None, "test")
}

macro_rules! client {
    ($krate:ident, $endpoint:expr) => {
        $krate::Client::from_conf(
            $krate::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .endpoint_url($endpoint)
                .region(Region::new(REGION))
                .credentials_provider(creds())
                .build(),
        )
    };
}

fn filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

async fn ec2_ids(
    client: &aws_sdk_ec2::Client,
    filters: Vec<aws_sdk_ec2::types::Filter>,
    max: Option<i32>,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .describe_instances()
            .set_filters(Some(filters.clone()))
            .set_max_results(max)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        for r in out.reservations() {
            for i in r.instances() {
                ids.push(i.instance_id().unwrap().to_owned());
            }
        }
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return ids;
        }
    }
}

/// What DescribeInstances says about an account, in a form comparable across emulators.
#[derive(Debug, PartialEq)]
struct Ec2Behaviour {
    paged_equals_unpaged: bool,
    tag_filter_matches_tags: bool,
    tag_key_filter_is_superset: bool,
    state_filter_consistent: bool,
    not_found_code: Option<String>,
    every_instance_has_fields: bool,
}

async fn ec2_behaviour(client: &aws_sdk_ec2::Client) -> Ec2Behaviour {
    let all = client.describe_instances().send().await.unwrap();
    let instances: Vec<_> = all
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .cloned()
        .collect();
    let env_of: HashMap<String, Option<String>> = instances
        .iter()
        .map(|i| {
            let env = i
                .tags()
                .iter()
                .find(|t| t.key() == Some("Environment"))
                .and_then(|t| t.value())
                .map(str::to_owned);
            (i.instance_id().unwrap().to_owned(), env)
        })
        .collect();
    let prod_unpaged = ec2_ids(client, vec![filter("tag:Environment", "prod")], None).await;
    let prod_paged = ec2_ids(client, vec![filter("tag:Environment", "prod")], Some(5)).await;
    let all_paged = ec2_ids(client, vec![], Some(5)).await;
    let with_env = ec2_ids(client, vec![filter("tag-key", "Environment")], None).await;
    let running = ec2_ids(client, vec![filter("instance-state-name", "running")], None).await;
    let not_found = client
        .describe_instances()
        .instance_ids("i-0123456789abcdef0")
        .send()
        .await
        .unwrap_err()
        .into_service_error()
        .code()
        .map(str::to_owned);
    Ec2Behaviour {
        paged_equals_unpaged: prod_paged == prod_unpaged && all_paged.len() == instances.len(),
        tag_filter_matches_tags: !prod_unpaged.is_empty()
            && prod_unpaged
                .iter()
                .all(|id| env_of[id].as_deref() == Some("prod"))
            && prod_unpaged.len()
                == env_of
                    .values()
                    .filter(|e| e.as_deref() == Some("prod"))
                    .count(),
        tag_key_filter_is_superset: with_env.len()
            == env_of.values().filter(|e| e.is_some()).count()
            && with_env.len() >= prod_unpaged.len(),
        state_filter_consistent: running.len()
            == instances
                .iter()
                .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running"))
                .count(),
        not_found_code: not_found,
        every_instance_has_fields: instances.iter().all(|i| {
            i.instance_id().is_some()
                && i.image_id().is_some()
                && i.private_ip_address().is_some()
                && i.launch_time().is_some()
                && i.placement().and_then(|p| p.availability_zone()).is_some()
        }),
    }
}

#[tokio::test]
async fn ec2_describe_instances_behaves_like_moto() {
    let Some(moto) = start_moto() else { return };
    let sandbox = start_sandbox().await;

    let moto_ec2 = client!(aws_sdk_ec2, &moto.endpoint);
    for (n, env) in [
        "prod", "staging", "dev", "prod", "dev", "prod", "staging", "prod",
    ]
    .iter()
    .enumerate()
    {
        let tags = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("Environment")
                    .value(*env)
                    .build(),
            )
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("Name")
                    .value(format!("{env}-web-{n:02}"))
                    .build(),
            )
            .build();
        moto_ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .tag_specifications(tags)
            .send()
            .await
            .unwrap();
    }
    let ours = ec2_behaviour(&client!(aws_sdk_ec2, &sandbox.endpoint_url())).await;
    let theirs = ec2_behaviour(&moto_ec2).await;
    assert_eq!(ours, theirs);
    assert_eq!(
        ours.not_found_code.as_deref(),
        Some("InvalidInstanceID.NotFound")
    );
    sandbox.shutdown().await;
}

/// GetDocument/ListDocuments facts about a Session document, comparable across emulators.
#[derive(Debug, PartialEq)]
struct DocumentBehaviour {
    document_type: Option<String>,
    format: Option<String>,
    version: Option<String>,
    content: serde_json::Value,
    listed_with_tag: Vec<String>,
    listed_tag_value: Option<String>,
    unknown_code: Option<String>,
}

async fn document_behaviour(client: &aws_sdk_ssm::Client) -> DocumentBehaviour {
    use aws_sdk_ssm::types::DocumentKeyValuesFilter;
    let doc = client.get_document().name("SSM-sudo").send().await.unwrap();
    let listed = client
        .list_documents()
        .filters(
            DocumentKeyValuesFilter::builder()
                .key("tag:ssmtui:class")
                .values("sudo")
                .build(),
        )
        .filters(
            DocumentKeyValuesFilter::builder()
                .key("DocumentType")
                .values("Session")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let unknown = client
        .get_document()
        .name("SSM-does-not-exist")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    DocumentBehaviour {
        document_type: doc.document_type().map(|t| t.as_str().to_owned()),
        format: doc.document_format().map(|f| f.as_str().to_owned()),
        version: doc.document_version().map(str::to_owned),
        content: serde_json::from_str(doc.content().unwrap()).unwrap(),
        listed_with_tag: listed
            .document_identifiers()
            .iter()
            .map(|d| d.name().unwrap().to_owned())
            .collect(),
        listed_tag_value: listed
            .document_identifiers()
            .first()
            .and_then(|d| d.tags().first())
            .map(|t| t.value().to_owned()),
        unknown_code: unknown.code().map(str::to_owned),
    }
}

#[tokio::test]
async fn ssm_documents_behave_like_moto() {
    let Some(moto) = start_moto() else { return };
    let sandbox = start_sandbox().await;
    let ours_client = client!(aws_sdk_ssm, &sandbox.endpoint_url());
    let content = ours_client
        .get_document()
        .name("SSM-sudo")
        .send()
        .await
        .unwrap()
        .content()
        .unwrap()
        .to_owned();
    let moto_ssm = client!(aws_sdk_ssm, &moto.endpoint);
    moto_ssm
        .create_document()
        .name("SSM-sudo")
        .content(&content)
        .document_type(aws_sdk_ssm::types::DocumentType::Session)
        .document_format(aws_sdk_ssm::types::DocumentFormat::Json)
        .tags(
            aws_sdk_ssm::types::Tag::builder()
                .key("ssmtui:class")
                .value("sudo")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let ours = document_behaviour(&ours_client).await;
    let theirs = document_behaviour(&moto_ssm).await;
    assert_eq!(ours, theirs);
    assert_eq!(ours.listed_with_tag, ["SSM-sudo"]);
    assert_eq!(ours.unknown_code.as_deref(), Some("InvalidDocument"));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn sts_caller_identity_has_the_same_shape_as_moto() {
    let Some(moto) = start_moto() else { return };
    let sandbox = start_sandbox().await;
    for endpoint in [sandbox.endpoint_url(), moto.endpoint.clone()] {
        let out = client!(aws_sdk_sts, &endpoint)
            .get_caller_identity()
            .send()
            .await
            .unwrap();
        let account = out.account().unwrap();
        assert!(
            account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()),
            "{endpoint}: {account}"
        );
        let arn = out.arn().unwrap();
        assert!(
            arn.starts_with(&format!("arn:aws:sts::{account}:"))
                || arn.starts_with(&format!("arn:aws:iam::{account}:")),
            "{endpoint}: {arn}"
        );
        assert!(!out.user_id().unwrap().is_empty());
    }
    sandbox.shutdown().await;
}

/// GenerateDataKey/Decrypt round trip facts, comparable across emulators.
#[derive(Debug, PartialEq)]
struct KmsBehaviour {
    plaintext_len: usize,
    round_trip: bool,
    key_arn_shape: bool,
    wrong_context_code: Option<String>,
    missing_context_code: Option<String>,
}

async fn kms_behaviour(client: &aws_sdk_kms::Client, key: &str) -> KmsBehaviour {
    let dk = client
        .generate_data_key()
        .key_id(key)
        .number_of_bytes(64)
        .encryption_context("purpose", "comparison")
        .encryption_context("aws:ssm:TargetId", "i-0123456789abcdef0")
        .send()
        .await
        .unwrap();
    let plain = dk.plaintext().unwrap().as_ref().to_vec();
    let blob = dk.ciphertext_blob().unwrap().clone();
    let back = client
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("aws:ssm:TargetId", "i-0123456789abcdef0")
        .encryption_context("purpose", "comparison")
        .send()
        .await
        .unwrap();
    let wrong = client
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("purpose", "something else")
        .encryption_context("aws:ssm:TargetId", "i-0123456789abcdef0")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    let missing = client
        .decrypt()
        .ciphertext_blob(blob)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    KmsBehaviour {
        plaintext_len: plain.len(),
        round_trip: back.plaintext().unwrap().as_ref() == plain.as_slice(),
        key_arn_shape: dk
            .key_id()
            .is_some_and(|k| k.starts_with("arn:aws:kms:") && k.contains(":key/")),
        wrong_context_code: wrong.code().map(str::to_owned),
        missing_context_code: missing.code().map(str::to_owned),
    }
}

#[tokio::test]
async fn kms_round_trip_behaves_like_moto() {
    let Some(moto) = start_moto() else { return };
    let sandbox = start_sandbox().await;
    let moto_kms = client!(aws_sdk_kms, &moto.endpoint);
    let key = moto_kms.create_key().send().await.unwrap();
    let moto_key = key.key_metadata().unwrap().key_id().to_owned();
    let ours = kms_behaviour(
        &client!(aws_sdk_kms, &sandbox.endpoint_url()),
        "alias/ssmtui-general",
    )
    .await;
    let theirs = kms_behaviour(&moto_kms, &moto_key).await;
    assert_eq!(ours, theirs);
    assert_eq!(
        ours.wrong_context_code.as_deref(),
        Some("InvalidCiphertextException")
    );
    sandbox.shutdown().await;
}

/// AssumeRole answers the same shape: temporary credentials (an `ASIA` key, a secret, a session
/// token, an expiry ahead) and the assumed-role ARN, and the credentials work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_assume_role_has_the_same_shape_as_moto() {
    let Some(moto) = start_moto() else { return };
    let sandbox = start_sandbox().await;
    for endpoint in [sandbox.endpoint_url(), moto.endpoint.clone()] {
        let sts = client!(aws_sdk_sts, &endpoint);
        let account = sts
            .get_caller_identity()
            .send()
            .await
            .unwrap()
            .account()
            .unwrap()
            .to_owned();
        let out = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/alice"))
            .role_session_name("contract")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{endpoint}: {e:?}"));
        let creds = out.credentials().unwrap();
        assert!(creds.access_key_id().starts_with("ASIA"), "{endpoint}");
        assert!(!creds.secret_access_key().is_empty() && !creds.session_token().is_empty());
        let expires = creds.expiration().secs();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(expires > now, "{endpoint}: expires {expires}, now {now}");
        let user = out.assumed_role_user().unwrap();
        assert_eq!(
            user.arn(),
            format!("arn:aws:sts::{account}:assumed-role/alice/contract"),
            "{endpoint}"
        );
        let temporary = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .endpoint_url(&endpoint)
                .region(Region::new(REGION))
                .credentials_provider(aws_credential_types::Credentials::new(
                    creds.access_key_id(),
                    creds.secret_access_key(),
                    Some(creds.session_token().to_owned()),
                    None,
                    "contract",
                ))
                .build(),
        );
        temporary
            .get_caller_identity()
            .send()
            .await
            .unwrap_or_else(|e| panic!("{endpoint}: temporary credentials refused: {e:?}"));
    }
    sandbox.shutdown().await;
}

/// What a transcript reader sees of S3: a listing under a prefix, an object's bytes and size,
/// and the errors for a missing key.
#[derive(Debug, PartialEq)]
struct S3Behaviour {
    listed: Vec<(String, i64)>,
    key_count: Option<i32>,
    body: Vec<u8>,
    head_length: Option<i64>,
    missing_get_code: Option<String>,
    missing_head_is_not_found: bool,
}

const TRANSCRIPT: &[u8] =
    b"Script started on 2026-12-03 10:00:00Z\r\n$ ls\r\n\x1b[1;34mbin\x1b[0m\r\n";

async fn s3_behaviour(client: &aws_sdk_s3::Client, bucket: &str) -> S3Behaviour {
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix("sudo/")
        .send()
        .await
        .unwrap();
    let got = client
        .get_object()
        .bucket(bucket)
        .key("sudo/alice-0123.log")
        .send()
        .await
        .unwrap();
    let body = got.body.collect().await.unwrap().into_bytes().to_vec();
    let head = client
        .head_object()
        .bucket(bucket)
        .key("sudo/alice-0123.log")
        .send()
        .await
        .unwrap();
    let missing = client
        .get_object()
        .bucket(bucket)
        .key("sudo/nobody.log")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    let missing_head = client
        .head_object()
        .bucket(bucket)
        .key("sudo/nobody.log")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    S3Behaviour {
        listed: listed
            .contents()
            .iter()
            .map(|o| {
                (
                    o.key().unwrap_or_default().to_owned(),
                    o.size().unwrap_or(-1),
                )
            })
            .collect(),
        key_count: listed.key_count(),
        body,
        head_length: head.content_length(),
        missing_get_code: missing.code().map(str::to_owned),
        missing_head_is_not_found: missing_head.is_not_found(),
    }
}

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(REGION))
            .credentials_provider(creds())
            .force_path_style(true)
            .build(),
    )
}

/// The transcript bucket reads like moto's S3 with the same objects in it.
#[tokio::test]
async fn s3_transcript_reads_behave_like_moto() {
    let Some(moto) = start_moto() else { return };
    let sandbox = start_sandbox().await;
    let bucket = ssmtui::sandbox::transcripts::BUCKET;
    let theirs = s3_client(&moto.endpoint);
    theirs.create_bucket().bucket(bucket).send().await.unwrap();
    for (key, body) in [
        ("sudo/alice-0123.log", TRANSCRIPT),
        ("nosudo/bob-0456.log", b"other".as_slice()),
    ] {
        theirs
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
        // The sandbox's bucket is a directory the agent uploads into.
        let path = sandbox.state().data_paths().bucket.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    let ours = s3_behaviour(&s3_client(&sandbox.endpoint_url()), bucket).await;
    let moto_view = s3_behaviour(&theirs, bucket).await;
    assert_eq!(ours, moto_view);
    assert_eq!(ours.missing_get_code.as_deref(), Some("NoSuchKey"));
    sandbox.shutdown().await;
}

/// What a transcript reader sees of CloudWatch Logs: the streams of a group, a stream's
/// events from the head, where the next page starts, and the error for a missing group.
#[derive(Debug, PartialEq)]
struct LogsBehaviour {
    streams: Vec<String>,
    messages: Vec<String>,
    forward_token_shape: bool,
    after_the_end: usize,
    missing_group_code: Option<String>,
}

async fn logs_behaviour(client: &aws_sdk_cloudwatchlogs::Client, group: &str) -> LogsBehaviour {
    let streams = client
        .describe_log_streams()
        .log_group_name(group)
        .send()
        .await
        .unwrap();
    let first = client
        .get_log_events()
        .log_group_name(group)
        .log_stream_name("alice-0123")
        .start_from_head(true)
        .send()
        .await
        .unwrap();
    let token = first.next_forward_token().unwrap_or_default().to_owned();
    let next = client
        .get_log_events()
        .log_group_name(group)
        .log_stream_name("alice-0123")
        .start_from_head(true)
        .next_token(&token)
        .send()
        .await
        .unwrap();
    let missing = client
        .get_log_events()
        .log_group_name("/no/such/group")
        .log_stream_name("alice-0123")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    LogsBehaviour {
        streams: streams
            .log_streams()
            .iter()
            .map(|s| s.log_stream_name().unwrap_or_default().to_owned())
            .collect(),
        messages: first
            .events()
            .iter()
            .map(|e| e.message().unwrap_or_default().to_owned())
            .collect(),
        forward_token_shape: token.starts_with("f/"),
        after_the_end: next.events().len(),
        missing_group_code: missing.code().map(str::to_owned),
    }
}

/// The session log group reads like moto's CloudWatch Logs with the same events in it.
#[tokio::test]
async fn cloudwatch_log_reads_behave_like_moto() {
    let Some(moto) = start_moto() else { return };
    let sandbox = start_sandbox().await;
    let group = ssmtui::sandbox::transcripts::LOG_GROUP;
    let messages = [
        r#"{"sessionId":"alice-0123","sessionData":["$ ls\r\n"]}"#,
        r#"{"sessionId":"alice-0123","sessionData":["bin\r\n"]}"#,
    ];
    let theirs = client!(aws_sdk_cloudwatchlogs, &moto.endpoint);
    theirs
        .create_log_group()
        .log_group_name(group)
        .send()
        .await
        .unwrap();
    for stream in ["alice-0123", "bob-0456"] {
        theirs
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await
            .unwrap();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut put = theirs
        .put_log_events()
        .log_group_name(group)
        .log_stream_name("alice-0123");
    for m in messages {
        put = put.log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now)
                .message(m)
                .build()
                .unwrap(),
        );
        // The sandbox agent writes the same events.
        sandbox
            .state()
            .logs()
            .put(group, "alice-0123", m.to_owned());
    }
    put.send().await.unwrap();
    sandbox
        .state()
        .logs()
        .put(group, "bob-0456", "x".to_owned());
    theirs
        .put_log_events()
        .log_group_name(group)
        .log_stream_name("bob-0456")
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now)
                .message("x")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let ours = logs_behaviour(
        &client!(aws_sdk_cloudwatchlogs, &sandbox.endpoint_url()),
        group,
    )
    .await;
    let moto_view = logs_behaviour(&theirs, group).await;
    assert_eq!(ours, moto_view);
    assert_eq!(
        ours.missing_group_code.as_deref(),
        Some("ResourceNotFoundException")
    );
    sandbox.shutdown().await;
}
