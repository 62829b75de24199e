//! SDK contract tests: the real `aws-sdk-ec2/ssm/sts/kms` clients against the sandbox over
//! loopback, for every emulated operation, its paging, filters, error shapes (as the SDK's
//! typed errors) and the identity rules. Each test starts and stops its own sandbox on port 0.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use crate::common::sandbox::fast;
use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region};
use ssmtui::sandbox::{
    InstanceState, PingStatus, PlatformType, RunningSandbox, Sandbox, SandboxConfig, SessionStatus,
    TokenError,
};

const REGION: &str = "eu-west-1";

async fn start(instances: usize) -> RunningSandbox {
    Sandbox::start(SandboxConfig {
        instances,
        region: REGION.to_owned(),
        ..fast()
    })
    .await
    .unwrap()
}

fn creds(who: &str) -> Credentials {
    Credentials::new(who, "x", None, None, "test")
}

fn ec2(sb: &RunningSandbox, who: &str) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(sb.endpoint_url())
        .region(Region::new(REGION))
        .credentials_provider(creds(who))
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

fn ssm(sb: &RunningSandbox, who: &str) -> aws_sdk_ssm::Client {
    let conf = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(sb.endpoint_url())
        .region(Region::new(REGION))
        .credentials_provider(creds(who))
        .build();
    aws_sdk_ssm::Client::from_conf(conf)
}

fn sts(sb: &RunningSandbox, who: &str) -> aws_sdk_sts::Client {
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(sb.endpoint_url())
        .region(Region::new(REGION))
        .credentials_provider(creds(who))
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

fn kms(sb: &RunningSandbox, who: &str) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(sb.endpoint_url())
        .region(Region::new(REGION))
        .credentials_provider(creds(who))
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

fn filter(name: &str, values: &[&str]) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| (*v).to_owned()).collect()))
        .build()
}

/// All instance ids DescribeInstances returns, following NextToken.
async fn ec2_ids(
    client: &aws_sdk_ec2::Client,
    filters: Vec<aws_sdk_ec2::types::Filter>,
    max: Option<i32>,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let out = client
            .describe_instances()
            .set_filters(Some(filters.clone()))
            .set_max_results(max)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        pages += 1;
        for r in out.reservations() {
            for i in r.instances() {
                ids.push(i.instance_id().unwrap().to_owned());
            }
        }
        if let Some(m) = max {
            assert!(out.reservations().len() <= m as usize);
        }
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
        assert!(pages < 100_000, "paging does not end");
    }
    ids
}

/// Instance ids in world order for which `keep` holds.
fn world_ids(
    sb: &RunningSandbox,
    keep: impl Fn(&ssmtui::sandbox::Instance) -> bool,
) -> Vec<String> {
    sb.state()
        .world()
        .instances
        .iter()
        .filter(|i| keep(i))
        .map(|i| i.id.clone())
        .collect()
}

/// A running, online instance in `env` with a Linux agent.
fn online_in(sb: &RunningSandbox, env: &str) -> String {
    world_ids(sb, |i| {
        i.connected() && i.environment() == Some(env) && i.platform_type == PlatformType::Linux
    })
    .into_iter()
    .next()
    .unwrap()
}

#[tokio::test]
async fn ec2_describe_instances_pages_through_the_world() {
    let sb = start(40).await;
    let client = ec2(&sb, "alice");
    let all = world_ids(&sb, |_| true);
    assert_eq!(all.len(), 40);
    assert_eq!(ec2_ids(&client, vec![], None).await, all);
    assert_eq!(ec2_ids(&client, vec![], Some(5)).await, all);
    assert_eq!(ec2_ids(&client, vec![], Some(7)).await, all);
    assert_eq!(ec2_ids(&client, vec![], Some(1000)).await, all);

    // Field mapping of one instance, as the SDK parses it.
    let want = sb.state().world().instances[0].clone();
    let out = client
        .describe_instances()
        .instance_ids(&want.id)
        .send()
        .await
        .unwrap();
    let got = &out.reservations()[0].instances()[0];
    assert_eq!(got.instance_id(), Some(want.id.as_str()));
    assert_eq!(
        got.state().unwrap().name().unwrap().as_str(),
        want.state.name()
    );
    assert_eq!(
        got.state().unwrap().code(),
        Some(i32::from(want.state.code()))
    );
    assert_eq!(
        got.private_ip_address(),
        Some(want.private_ip.to_string().as_str())
    );
    assert_eq!(got.instance_type().unwrap().as_str(), want.instance_type);
    assert_eq!(
        got.placement().unwrap().availability_zone(),
        Some(want.availability_zone.as_str())
    );
    assert_eq!(got.vpc_id(), Some(want.vpc_id.as_str()));
    assert_eq!(got.subnet_id(), Some(want.subnet_id.as_str()));
    assert_eq!(got.image_id(), Some(want.image_id.as_str()));
    assert_eq!(got.launch_time().unwrap().secs(), want.launch_time);
    let tags: Vec<(String, String)> = got
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    assert_eq!(tags, want.tags);
    assert!(got.platform_details().is_some());
    sb.shutdown().await;
}

#[tokio::test]
async fn ec2_filters_select_what_the_world_says() {
    let sb = start(40).await;
    let client = ec2(&sb, "bob");
    assert_eq!(
        ec2_ids(&client, vec![filter("tag:Environment", &["prod"])], Some(5)).await,
        world_ids(&sb, |i| i.environment() == Some("prod"))
    );
    assert_eq!(
        ec2_ids(
            &client,
            vec![filter("tag:Environment", &["staging", "dev"])],
            None
        )
        .await,
        world_ids(&sb, |i| matches!(i.environment(), Some("staging" | "dev")))
    );
    let asg = world_ids(&sb, |i| i.tag("aws:autoscaling:groupName").is_some());
    assert!(!asg.is_empty());
    assert_eq!(
        ec2_ids(
            &client,
            vec![filter("tag-key", &["aws:autoscaling:groupName"])],
            None
        )
        .await,
        asg
    );
    let stopped = world_ids(&sb, |i| i.state == InstanceState::Stopped);
    assert!(!stopped.is_empty());
    assert_eq!(
        ec2_ids(
            &client,
            vec![filter("instance-state-name", &["stopped"])],
            Some(5)
        )
        .await,
        stopped
    );
    let some: Vec<String> = world_ids(&sb, |_| true).into_iter().step_by(9).collect();
    let refs: Vec<&str> = some.iter().map(String::as_str).collect();
    assert_eq!(
        ec2_ids(&client, vec![filter("instance-id", &refs)], None).await,
        some
    );
    // EC2 wildcards in values, and filters combine with AND.
    assert_eq!(
        ec2_ids(
            &client,
            vec![
                filter("tag:Name", &["prod-*"]),
                filter("instance-state-name", &["running"])
            ],
            None
        )
        .await,
        world_ids(&sb, |i| i.environment() == Some("prod")
            && i.state == InstanceState::Running)
    );
    // InstanceId.N returns exactly those, and a filter still narrows them.
    let out = client
        .describe_instances()
        .set_instance_ids(Some(some.clone()))
        .filters(filter("tag:Environment", &["prod"]))
        .send()
        .await
        .unwrap();
    let got: Vec<String> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect();
    let want: Vec<String> = {
        let world = sb.state().world();
        some.iter()
            .filter(|id| world.instance(id).unwrap().environment() == Some("prod"))
            .cloned()
            .collect()
    };
    assert_eq!(got, want);
    sb.shutdown().await;
}

#[tokio::test]
async fn ec2_errors_have_the_aws_shape() {
    let sb = start(40).await;
    let client = ec2(&sb, "alice");
    let err = client
        .describe_instances()
        .instance_ids("i-0123456789abcdef0")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidInstanceID.NotFound"));
    assert_eq!(
        err.message(),
        Some("The instance ID 'i-0123456789abcdef0' does not exist")
    );
    let err = client
        .describe_instances()
        .instance_ids("web-1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidInstanceID.Malformed"));
    for bad in [4, 1001] {
        let err = client
            .describe_instances()
            .max_results(bad)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(err.code(), Some("InvalidParameterValue"), "{bad}");
    }
    let err = client
        .describe_instances()
        .filters(filter("flavour", &["x"]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    let err = client
        .describe_instances()
        .next_token("not-a-token")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    let err = ec2(&sb, "mallory")
        .describe_instances()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 401);
    assert_eq!(err.into_service_error().code(), Some("AuthFailure"));

    let regions = client.describe_regions().send().await.unwrap();
    let names: Vec<&str> = regions
        .regions()
        .iter()
        .map(|r| r.region_name().unwrap())
        .collect();
    assert!(names.contains(&REGION) && names.contains(&"us-east-1"));
    sb.shutdown().await;
}

#[tokio::test]
async fn sts_get_caller_identity_per_identity() {
    let sb = start(10).await;
    for who in ["alice", "bob", "eve"] {
        let out = sts(&sb, who).get_caller_identity().send().await.unwrap();
        assert_eq!(out.account(), Some("123456789012"));
        let arn = out.arn().unwrap();
        assert!(
            arn.starts_with("arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_"),
            "{arn}"
        );
        assert!(arn.ends_with(&format!("/{who}")), "{arn}");
        assert!(out.user_id().unwrap().ends_with(&format!(":{who}")));
    }
    let err = sts(&sb, "mallory")
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);
    assert_eq!(
        err.into_service_error().code(),
        Some("InvalidClientTokenId")
    );
    sb.shutdown().await;
}

async fn ssm_instance_ids(
    client: &aws_sdk_ssm::Client,
    filters: Vec<aws_sdk_ssm::types::InstanceInformationStringFilter>,
    max: Option<i32>,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .describe_instance_information()
            .set_filters(Some(filters.clone()))
            .set_max_results(max)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        ids.extend(
            out.instance_information_list()
                .iter()
                .map(|i| i.instance_id().unwrap().to_owned()),
        );
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return ids;
        }
    }
}

fn ssm_filter(key: &str, values: &[&str]) -> aws_sdk_ssm::types::InstanceInformationStringFilter {
    aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
        .key(key)
        .set_values(Some(values.iter().map(|v| (*v).to_owned()).collect()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn ssm_describe_instance_information_pages_filters_and_fields() {
    let sb = start(40).await;
    let client = ssm(&sb, "eve");
    let all = world_ids(&sb, |_| true);
    assert_eq!(ssm_instance_ids(&client, vec![], Some(5)).await, all);
    assert_eq!(ssm_instance_ids(&client, vec![], None).await, all);
    let lost = world_ids(&sb, |i| i.ping == PingStatus::ConnectionLost);
    assert!(lost.len() >= 4, "stopped and lost agents: {lost:?}");
    assert_eq!(
        ssm_instance_ids(
            &client,
            vec![ssm_filter("PingStatus", &["ConnectionLost"])],
            Some(5)
        )
        .await,
        lost
    );
    let windows = ssm_instance_ids(
        &client,
        vec![ssm_filter("PlatformTypes", &["Windows"])],
        None,
    )
    .await;
    assert_eq!(windows.len(), 1);
    assert_eq!(
        ssm_instance_ids(&client, vec![ssm_filter("tag:Environment", &["dev"])], None).await,
        world_ids(&sb, |i| i.environment() == Some("dev"))
    );
    assert_eq!(
        ssm_instance_ids(
            &client,
            vec![ssm_filter("tag-key", &["aws:autoscaling:groupName"])],
            None
        )
        .await,
        world_ids(&sb, |i| i.tag("aws:autoscaling:groupName").is_some())
    );
    let old = world_ids(&sb, |i| i.agent_version == "3.0.161.0");
    assert_eq!(old.len(), 1);

    // The legacy filter list and the fields of one entry.
    let out = client
        .describe_instance_information()
        .instance_information_filter_list(
            aws_sdk_ssm::types::InstanceInformationFilter::builder()
                .key(aws_sdk_ssm::types::InstanceInformationFilterKey::InstanceIds)
                .value_set(&old[0])
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let info = &out.instance_information_list()[0];
    let want = sb.state().world().instance(&old[0]).unwrap().clone();
    assert_eq!(info.agent_version(), Some("3.0.161.0"));
    assert_eq!(info.is_latest_version(), Some(false));
    assert_eq!(info.ping_status().unwrap().as_str(), want.ping.as_str());
    assert_eq!(info.platform_name(), Some(want.platform_name.as_str()));
    assert_eq!(
        info.platform_version(),
        Some(want.platform_version.as_str())
    );
    assert_eq!(
        info.ip_address(),
        Some(want.private_ip.to_string().as_str())
    );
    assert_eq!(info.resource_type().unwrap().as_str(), "EC2Instance");
    assert!(info.computer_name().is_some());
    let ping = info.last_ping_date_time().unwrap().secs();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(now - ping >= want.ping_age_secs as i64 - 2 && now - ping < 10 * 86_400);

    // Errors as typed variants.
    use aws_sdk_ssm::operation::describe_instance_information::DescribeInstanceInformationError as E;
    let err = client
        .describe_instance_information()
        .max_results(51)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationException"));
    let err = client
        .describe_instance_information()
        .filters(ssm_filter("InstanceIds", &["web-1"]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, E::InvalidInstanceId(_)), "{err:?}");
    let err = client
        .describe_instance_information()
        .filters(ssm_filter("PingStatus", &["Sleepy"]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, E::InvalidInstanceInformationFilterValue(_)),
        "{err:?}"
    );
    let err = client
        .describe_instance_information()
        .next_token("bogus")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, E::InvalidNextToken(_)), "{err:?}");
    let err = ssm(&sb, "mallory")
        .describe_instance_information()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    sb.shutdown().await;
}

fn denied(who: &str, action: &str, resource: &str) -> String {
    let arn = ssmtui::sandbox::identity::by_access_key(who).unwrap().arn();
    format!(
        "User: {arn} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action"
    )
}

#[tokio::test]
async fn start_session_follows_the_identity_rules() {
    use aws_sdk_ssm::operation::start_session::StartSessionError as E;
    let sb = start(40).await;
    let prod = online_in(&sb, "prod");
    let staging = online_in(&sb, "staging");
    let doc_arn = |d: &str| format!("arn:aws:ssm:{REGION}:123456789012:document/{d}");
    let inst_arn = |i: &str| format!("arn:aws:ec2:{REGION}:123456789012:instance/{i}");

    // alice: her class document anywhere, and port forwarding.
    let alice = ssm(&sb, "alice");
    let out = alice
        .start_session()
        .target(&prod)
        .document_name("SSM-sudo")
        .reason("incident 42")
        .send()
        .await
        .unwrap();
    let id = out.session_id().unwrap();
    let (user, hex) = id.split_once('-').unwrap();
    assert_eq!(user, "alice");
    assert!(
        hex.len() == 17 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(
        out.stream_url(),
        Some(
            format!(
                "ws://{}/v1/data-channel/{id}?role=publish_subscribe",
                sb.addr()
            )
            .as_str()
        )
    );
    assert!(!out.token_value().unwrap().is_empty());
    let info = sb.state().session(id).unwrap();
    assert_eq!(info.target, prod);
    assert_eq!(info.document.name, "SSM-sudo");
    assert_eq!(info.reason.as_deref(), Some("incident 42"));
    assert_eq!(info.status, SessionStatus::Connecting);

    alice
        .start_session()
        .target(&prod)
        .document_name("AWS-StartPortForwardingSessionToRemoteHost")
        .parameters("host", vec!["127.0.0.1".into()])
        .parameters("portNumber", vec!["5432".into()])
        .send()
        .await
        .unwrap();

    let err = alice
        .start_session()
        .target(&prod)
        .document_name("SSM-nosudo")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert_eq!(
        err.message(),
        Some(denied("alice", "ssm:StartSession", &doc_arn("SSM-nosudo")).as_str())
    );
    // No DocumentName means the default document, which the access check also covers.
    let err = alice
        .start_session()
        .target(&prod)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        err.message(),
        Some(
            denied(
                "alice",
                "ssm:StartSession",
                &doc_arn("SSM-SessionManagerRunShell")
            )
            .as_str()
        )
    );
    // Allowed by the policy's wildcard, but no such document.
    let err = alice
        .start_session()
        .target(&prod)
        .document_name("AWS-StartPortForwardingSessionToMars")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, E::InvalidDocument(_)), "{err:?}");
    let err = alice
        .start_session()
        .target(&prod)
        .document_name("AWS-StartPortForwardingSession")
        .parameters("color", vec!["red".into()])
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidParameters"));
    let err = alice
        .start_session()
        .target(&prod)
        .document_name("SSM-sudo")
        .reason("x".repeat(257))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationException"));
    assert!(err.message().unwrap().contains("at 'reason'"));

    // Not connected: stopped, agent lost, unknown.
    let stopped = world_ids(&sb, |i| i.state == InstanceState::Stopped)[0].clone();
    let lost = world_ids(&sb, |i| {
        i.state == InstanceState::Running && i.ping == PingStatus::ConnectionLost
    })[0]
        .clone();
    for target in [stopped.as_str(), lost.as_str(), "i-0123456789abcdef0"] {
        let err = alice
            .start_session()
            .target(target)
            .document_name("SSM-sudo")
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(matches!(err, E::TargetNotConnected(_)), "{target}: {err:?}");
        assert_eq!(
            err.message(),
            Some(format!("{target} is not connected.").as_str())
        );
    }

    // bob: staging/dev only, his class document only.
    let bob = ssm(&sb, "bob");
    let bob_id = bob
        .start_session()
        .target(&staging)
        .document_name("SSM-nosudo")
        .send()
        .await
        .unwrap()
        .session_id()
        .unwrap()
        .to_owned();
    assert!(bob_id.starts_with("bob-"));
    let err = bob
        .start_session()
        .target(&prod)
        .document_name("SSM-nosudo")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        err.message(),
        Some(denied("bob", "ssm:StartSession", &inst_arn(&prod)).as_str())
    );
    for doc in ["SSM-sudo", "AWS-StartPortForwardingSessionToRemoteHost"] {
        let err = bob
            .start_session()
            .target(&staging)
            .document_name(doc)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(err.code(), Some("AccessDeniedException"), "{doc}");
    }
    bob.start_session()
        .target(&staging)
        .document_name("AWS-StartPortForwardingSession")
        .parameters("portNumber", vec!["80".into()])
        .send()
        .await
        .unwrap();

    // eve: nothing.
    let err = ssm(&sb, "eve")
        .start_session()
        .target(&staging)
        .document_name("SSM-nosudo")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        err.message(),
        Some(denied("eve", "ssm:StartSession", &inst_arn(&staging)).as_str())
    );

    // Flip an instance through the state handle: the API sees it at once.
    assert!(
        sb.state()
            .set_ping_status(&staging, PingStatus::ConnectionLost)
    );
    let err = bob
        .start_session()
        .target(&staging)
        .document_name("SSM-nosudo")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, E::TargetNotConnected(_)));
    let status = bob
        .get_connection_status()
        .target(&staging)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status().unwrap().as_str(), "notconnected");
    let status = bob
        .get_connection_status()
        .target(&prod)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status().unwrap().as_str(), "connected");
    assert_eq!(sb.state().sessions().len(), 4);
    sb.shutdown().await;
}

#[tokio::test]
async fn tokens_are_single_use_and_resume_issues_fresh_ones() {
    use aws_sdk_ssm::operation::resume_session::ResumeSessionError as R;
    let sb = start(40).await;
    let state = sb.state().clone();
    let target = online_in(&sb, "dev");
    let alice = ssm(&sb, "alice");
    let bob = ssm(&sb, "bob");
    let out = alice
        .start_session()
        .target(&target)
        .document_name("SSM-sudo")
        .send()
        .await
        .unwrap();
    let id = out.session_id().unwrap().to_owned();
    let token = out.token_value().unwrap().to_owned();

    assert_eq!(
        state
            .validate_and_consume_token(&id, "not-the-token")
            .unwrap_err(),
        TokenError::Invalid
    );
    assert_eq!(
        state
            .validate_and_consume_token("alice-00000000000000000", &token)
            .unwrap_err(),
        TokenError::UnknownSession
    );
    let info = state.validate_and_consume_token(&id, &token).unwrap();
    assert_eq!(info.target, target);
    assert_eq!(info.status, SessionStatus::Connected);
    assert_eq!(
        state.validate_and_consume_token(&id, &token).unwrap_err(),
        TokenError::AlreadyUsed
    );

    // Resume: a fresh token for the same session, also single use.
    state.mark_disconnected(&id);
    let resumed = alice.resume_session().session_id(&id).send().await.unwrap();
    assert_eq!(resumed.session_id(), Some(id.as_str()));
    let fresh = resumed.token_value().unwrap().to_owned();
    assert_ne!(fresh, token);
    assert!(resumed.stream_url().unwrap().contains(&id));
    state.validate_and_consume_token(&id, &fresh).unwrap();
    // Expired tokens are refused.
    let again = alice.resume_session().session_id(&id).send().await.unwrap();
    state.expire_tokens(&id);
    assert_eq!(
        state
            .validate_and_consume_token(&id, again.token_value().unwrap())
            .unwrap_err(),
        TokenError::Expired
    );

    // Only the owner may resume or terminate.
    let err = bob
        .resume_session()
        .session_id(&id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDeniedException"));
    let session_arn = format!("arn:aws:ssm:{REGION}:123456789012:session/{id}");
    let err = bob
        .terminate_session()
        .session_id(&id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        err.message(),
        Some(denied("bob", "ssm:TerminateSession", &session_arn).as_str())
    );
    let err = alice
        .resume_session()
        .session_id("alice-0123456789abcdef0")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, R::DoesNotExistException(_)), "{err:?}");

    // Terminate: the channel is cancelled, tokens die, resume yields an empty token.
    let last = alice.resume_session().session_id(&id).send().await.unwrap();
    let cancelled = state.session_cancelled(&id).unwrap();
    assert!(!cancelled.is_cancelled());
    let out = alice
        .terminate_session()
        .session_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(out.session_id(), Some(id.as_str()));
    assert!(cancelled.is_cancelled());
    assert_eq!(
        state.session(&id).unwrap().status,
        SessionStatus::Terminated
    );
    assert!(state.session(&id).unwrap().end.is_some());
    assert_eq!(
        state
            .validate_and_consume_token(&id, last.token_value().unwrap())
            .unwrap_err(),
        TokenError::SessionEnded
    );
    let after = alice.resume_session().session_id(&id).send().await.unwrap();
    assert_eq!(after.token_value(), Some(""));
    // Terminating again is fine.
    alice
        .terminate_session()
        .session_id(&id)
        .send()
        .await
        .unwrap();
    sb.shutdown().await;
}

#[tokio::test]
async fn describe_sessions_filters_pages_and_reports_history() {
    use aws_sdk_ssm::operation::describe_sessions::DescribeSessionsError as E;
    use aws_sdk_ssm::types::{SessionFilter, SessionFilterKey, SessionState};
    let sb = start(40).await;
    let dev = online_in(&sb, "dev");
    let staging = online_in(&sb, "staging");
    let alice = ssm(&sb, "alice");
    let bob = ssm(&sb, "bob");
    let mut alice_ids = Vec::new();
    for n in 0..5 {
        let target = if n % 2 == 0 { &dev } else { &staging };
        let out = alice
            .start_session()
            .target(target)
            .document_name("SSM-sudo")
            .reason(format!("task {n}"))
            .send()
            .await
            .unwrap();
        alice_ids.push(out.session_id().unwrap().to_owned());
    }
    let bob_id = bob
        .start_session()
        .target(&dev)
        .document_name("SSM-nosudo")
        .send()
        .await
        .unwrap()
        .session_id()
        .unwrap()
        .to_owned();
    alice
        .terminate_session()
        .session_id(&alice_ids[0])
        .send()
        .await
        .unwrap();

    let list = |state: SessionState, filters: Vec<SessionFilter>, max: Option<i32>| {
        let client = ssm(&sb, "eve");
        async move {
            let mut out = Vec::new();
            let mut token = None;
            loop {
                let page = client
                    .describe_sessions()
                    .state(state.clone())
                    .set_filters(Some(filters.clone()))
                    .set_max_results(max)
                    .set_next_token(token)
                    .send()
                    .await
                    .unwrap();
                out.extend(page.sessions().iter().cloned());
                token = page.next_token().map(str::to_owned);
                if token.is_none() {
                    return out;
                }
            }
        }
    };
    let f =
        |k: SessionFilterKey, v: &str| SessionFilter::builder().key(k).value(v).build().unwrap();
    let ids = |s: &[aws_sdk_ssm::types::Session]| -> BTreeSet<String> {
        s.iter()
            .map(|s| s.session_id().unwrap().to_owned())
            .collect()
    };

    let active = list(SessionState::Active, vec![], Some(1)).await;
    assert_eq!(active.len(), 5);
    let history = list(SessionState::History, vec![], None).await;
    assert_eq!(ids(&history), BTreeSet::from([alice_ids[0].clone()]));
    assert_eq!(history[0].status().unwrap().as_str(), "Terminated");
    assert!(history[0].end_date().is_some());

    let alice_arn = ssmtui::sandbox::identity::by_access_key("alice")
        .unwrap()
        .arn();
    let mine = list(
        SessionState::Active,
        vec![f(SessionFilterKey::Owner, &alice_arn)],
        Some(2),
    )
    .await;
    assert_eq!(ids(&mine), alice_ids[1..].iter().cloned().collect());
    let on_dev = list(
        SessionState::Active,
        vec![f(SessionFilterKey::TargetId, &dev)],
        None,
    )
    .await;
    assert_eq!(
        ids(&on_dev),
        BTreeSet::from([alice_ids[2].clone(), alice_ids[4].clone(), bob_id.clone()])
    );
    let one = list(
        SessionState::Active,
        vec![f(SessionFilterKey::SessionId, &bob_id)],
        None,
    )
    .await;
    let s = &one[0];
    assert_eq!(s.target(), Some(dev.as_str()));
    assert_eq!(s.document_name(), Some("SSM-nosudo"));
    assert_eq!(s.max_session_duration(), Some("60"));
    assert_eq!(s.status().unwrap().as_str(), "Connecting");
    assert!(s.owner().unwrap().ends_with("/bob"));
    assert!(s.start_date().is_some() && s.end_date().is_none());
    let task = list(
        SessionState::Active,
        vec![f(SessionFilterKey::SessionId, &alice_ids[3])],
        None,
    )
    .await;
    assert_eq!(task[0].reason(), Some("task 3"));

    let err = ssm(&sb, "eve")
        .describe_sessions()
        .state(SessionState::Active)
        .filters(
            SessionFilter::builder()
                .key(SessionFilterKey::from("Colour"))
                .value("x")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, E::InvalidFilterKey(_)), "{err:?}");
    let err = ssm(&sb, "eve")
        .describe_sessions()
        .state(SessionState::Active)
        .next_token("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, E::InvalidNextToken(_)), "{err:?}");
    sb.shutdown().await;
}

#[tokio::test]
async fn documents_get_describe_and_list() {
    use aws_sdk_ssm::operation::get_document::GetDocumentError as G;
    use aws_sdk_ssm::types::{DocumentKeyValuesFilter, DocumentType};
    let sb = start(10).await;
    let client = ssm(&sb, "bob");

    let doc = client.get_document().name("SSM-sudo").send().await.unwrap();
    assert_eq!(doc.document_type(), Some(&DocumentType::Session));
    assert_eq!(doc.document_version(), Some("1"));
    assert_eq!(doc.document_format().unwrap().as_str(), "JSON");
    assert_eq!(doc.status().unwrap().as_str(), "Active");
    let content: serde_json::Value = serde_json::from_str(doc.content().unwrap()).unwrap();
    assert_eq!(content["sessionType"], "Standard_Stream");
    assert_eq!(content["inputs"]["runAsEnabled"], true);
    assert_eq!(content["inputs"]["runAsDefaultUser"], "ssm-sudo");
    assert_eq!(content["inputs"]["s3EncryptionEnabled"], true);
    assert_eq!(content["inputs"]["idleSessionTimeout"], "20");
    assert_eq!(
        content["inputs"]["kmsKeyId"],
        format!(
            "arn:aws:kms:{REGION}:123456789012:key/{}",
            ssmtui::sandbox::world::SESSION_KEY_ID
        )
    );
    let nosudo = client
        .get_document()
        .name("SSM-nosudo")
        .send()
        .await
        .unwrap();
    let content: serde_json::Value = serde_json::from_str(nosudo.content().unwrap()).unwrap();
    assert_eq!(content["inputs"]["runAsDefaultUser"], "ssm-nosudo");

    let err = client
        .get_document()
        .name("SSM-nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, G::InvalidDocument(_)), "{err:?}");
    let err = client
        .get_document()
        .name("SSM-sudo")
        .document_version("7")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, G::InvalidDocumentVersion(_)), "{err:?}");

    let described = client
        .describe_document()
        .name("AWS-StartPortForwardingSessionToRemoteHost")
        .send()
        .await
        .unwrap();
    let d = described.document().unwrap();
    assert_eq!(d.owner(), Some("Amazon"));
    assert_eq!(d.document_type(), Some(&DocumentType::Session));
    let params: BTreeSet<&str> = d.parameters().iter().map(|p| p.name().unwrap()).collect();
    assert_eq!(
        params,
        BTreeSet::from(["host", "localPortNumber", "portNumber"])
    );
    let tags = client
        .describe_document()
        .name("SSM-nosudo")
        .send()
        .await
        .unwrap();
    let tags = tags.document().unwrap().tags();
    assert_eq!(tags[0].key(), "ssmtui:class");
    assert_eq!(tags[0].value(), "no-sudo");

    let names = |filters: Vec<DocumentKeyValuesFilter>, max: Option<i32>| {
        let client = client.clone();
        async move {
            let mut out = Vec::new();
            let mut token = None;
            loop {
                let page = client
                    .list_documents()
                    .set_filters(Some(filters.clone()))
                    .set_max_results(max)
                    .set_next_token(token)
                    .send()
                    .await
                    .unwrap();
                out.extend(
                    page.document_identifiers()
                        .iter()
                        .map(|d| d.name().unwrap().to_owned()),
                );
                token = page.next_token().map(str::to_owned);
                if token.is_none() {
                    return out;
                }
            }
        }
    };
    let kv = |k: &str, v: &str| DocumentKeyValuesFilter::builder().key(k).values(v).build();
    assert_eq!(
        names(vec![kv("DocumentType", "Session")], Some(2))
            .await
            .len(),
        5
    );
    assert_eq!(
        names(vec![kv("tag:ssmtui:class", "no-sudo")], None).await,
        ["SSM-nosudo"]
    );
    assert_eq!(
        names(vec![kv("Owner", "Amazon")], None).await,
        [
            "AWS-StartPortForwardingSession",
            "AWS-StartPortForwardingSessionToRemoteHost"
        ]
    );
    assert_eq!(names(vec![kv("Owner", "Self")], None).await.len(), 3);
    let listed = client
        .list_documents()
        .filters(kv("Name", "SSM-sudo"))
        .send()
        .await
        .unwrap();
    let ident = &listed.document_identifiers()[0];
    assert_eq!(ident.tags()[0].value(), "sudo");
    assert_eq!(ident.document_type(), Some(&DocumentType::Session));
    sb.shutdown().await;
}

fn context(session: &str, target: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("aws:ssm:SessionId".to_owned(), session.to_owned()),
        ("aws:ssm:TargetId".to_owned(), target.to_owned()),
    ])
}

#[tokio::test]
async fn kms_data_keys_are_bound_to_the_session_context() {
    use aws_sdk_kms::operation::decrypt::DecryptError as D;
    use aws_sdk_kms::operation::generate_data_key::GenerateDataKeyError as G;
    use aws_sdk_kms::primitives::Blob;
    let sb = start(40).await;
    let target = online_in(&sb, "dev");
    let session = ssm(&sb, "alice")
        .start_session()
        .target(&target)
        .document_name("SSM-sudo")
        .send()
        .await
        .unwrap()
        .session_id()
        .unwrap()
        .to_owned();
    let key_arn = format!(
        "arn:aws:kms:{REGION}:123456789012:key/{}",
        ssmtui::sandbox::world::SESSION_KEY_ID
    );
    let alice = kms(&sb, "alice");
    let ctx = context(&session, &target);
    let dk = alice
        .generate_data_key()
        .key_id(&key_arn)
        .number_of_bytes(64)
        .set_encryption_context(Some(ctx.clone().into_iter().collect()))
        .send()
        .await
        .unwrap();
    assert_eq!(dk.key_id(), Some(key_arn.as_str()));
    let plain = dk.plaintext().unwrap().as_ref().to_vec();
    assert_eq!(plain.len(), 64);
    let blob = dk.ciphertext_blob().unwrap().clone();

    let out = alice
        .decrypt()
        .ciphertext_blob(blob.clone())
        .set_encryption_context(Some(ctx.clone().into_iter().collect()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.plaintext().unwrap().as_ref(), plain.as_slice());
    assert_eq!(out.key_id(), Some(key_arn.as_str()));
    // The agent half decrypts in-process with its own instance id as TargetId.
    let (arn, agent_plain) = sb
        .state()
        .kms_decrypt(blob.as_ref(), Some(&key_arn), &ctx)
        .unwrap();
    assert_eq!(
        (arn.as_str(), agent_plain.as_slice()),
        (key_arn.as_str(), plain.as_slice())
    );

    // Another context, even one differing only in the target, does not decrypt.
    let other = context(&session, "i-0123456789abcdef0");
    let err = alice
        .decrypt()
        .ciphertext_blob(blob.clone())
        .set_encryption_context(Some(other.clone().into_iter().collect()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, D::InvalidCiphertextException(_)), "{err:?}");
    let err = alice
        .decrypt()
        .ciphertext_blob(Blob::new(
            b"garbage that is long enough to look like a blob".to_vec(),
        ))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, D::InvalidCiphertextException(_)), "{err:?}");

    // The session key needs a live session of the caller on that target.
    for (who, ctx) in [
        ("alice", other.clone()),
        ("alice", context("alice-00000000000000000", &target)),
        ("alice", BTreeMap::new()),
        ("bob", ctx.clone()),
        ("eve", ctx.clone()),
    ] {
        let err = kms(&sb, who)
            .generate_data_key()
            .key_id("alias/ssmtui-sessions")
            .number_of_bytes(64)
            .set_encryption_context(Some(ctx.into_iter().collect()))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(err.code(), Some("AccessDeniedException"), "{who}");
    }
    let err = kms(&sb, "eve")
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert!(err.message().unwrap().contains("kms:Decrypt"));

    // After TerminateSession, no new data keys for it.
    ssm(&sb, "alice")
        .terminate_session()
        .session_id(&session)
        .send()
        .await
        .unwrap();
    let err = alice
        .generate_data_key()
        .key_id(&key_arn)
        .number_of_bytes(64)
        .set_encryption_context(Some(ctx.into_iter().collect()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDeniedException"));

    // The general key takes any context; unknown keys are NotFound.
    let g = alice
        .generate_data_key()
        .key_id("alias/ssmtui-general")
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .encryption_context("purpose", "test")
        .send()
        .await
        .unwrap();
    assert_eq!(g.plaintext().unwrap().as_ref().len(), 32);
    let err = alice
        .generate_data_key()
        .key_id("alias/nope")
        .number_of_bytes(64)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(matches!(err, G::NotFoundException(_)), "{err:?}");
    let err = kms(&sb, "mallory")
        .generate_data_key()
        .key_id("alias/ssmtui-general")
        .number_of_bytes(64)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    sb.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_instances_page_through() {
    let sb = start(10_000).await;
    let ec2 = ec2(&sb, "alice");
    let ids = ec2_ids(&ec2, vec![], Some(1000)).await;
    assert_eq!(ids.len(), 10_000);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 10_000);
    let prod = ec2_ids(&ec2, vec![filter("tag:Environment", &["prod"])], Some(1000)).await;
    assert_eq!(prod, world_ids(&sb, |i| i.environment() == Some("prod")));
    let ssm_ids = ssm_instance_ids(&ssm(&sb, "alice"), vec![], Some(50)).await;
    assert_eq!(ssm_ids, ids);
    {
        let world = sb.state().world();
        assert_eq!(
            world
                .instances
                .iter()
                .filter(|i| i.platform_type == PlatformType::Windows)
                .count(),
            1
        );
        assert!(
            world
                .instances
                .iter()
                .filter(|i| i.state == InstanceState::Stopped)
                .count()
                > 100
        );
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn same_seed_same_world_through_the_api() {
    let a = start(40).await;
    let b = start(40).await;
    let c = Sandbox::start(SandboxConfig {
        seed: 2,
        region: REGION.to_owned(),
        ..fast()
    })
    .await
    .unwrap();
    let ids = |sb: &RunningSandbox| {
        let client = ec2(sb, "alice");
        async move { ec2_ids(&client, vec![], None).await }
    };
    assert_eq!(ids(&a).await, ids(&b).await);
    assert_ne!(ids(&a).await, ids(&c).await);
    assert_eq!(*a.state().world(), *b.state().world());
    for sb in [a, b, c] {
        sb.shutdown().await;
    }
}

/// AssumeRole's credentials act as the identity until they expire, then every service refuses
/// them in its own words; only an identity's own role may be assumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assumed_role_credentials_work_until_they_expire() {
    let sb = start(5).await;
    sb.state()
        .set_credential_ttl(std::time::Duration::from_millis(5000));
    let denied = sts(&sb, "bob")
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/alice")
        .role_session_name("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Some("AccessDenied"));
    let out = sts(&sb, "alice")
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/alice")
        .role_session_name("x")
        .send()
        .await
        .unwrap();
    let key = out.credentials().unwrap().access_key_id().to_owned();
    assert_eq!(sb.state().assume_role_count(), 1);
    let id = sts(&sb, &key).get_caller_identity().send().await.unwrap();
    assert!(id.arn().unwrap().ends_with("/alice"), "{id:?}");
    ssm(&sb, &key)
        .describe_instance_information()
        .send()
        .await
        .unwrap();

    tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
    let e = sts(&sb, &key)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ExpiredToken"));
    let e = ssm(&sb, &key)
        .describe_instance_information()
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ExpiredTokenException"));
    let e = ec2(&sb, &key)
        .describe_instances()
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("RequestExpired"));
    sb.shutdown().await;
}
