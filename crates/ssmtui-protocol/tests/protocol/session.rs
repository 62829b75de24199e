//! The session state machine, one behaviour at a time.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use ssmtui_protocol::crypto::{DataKey, SessionCipher};
use ssmtui_protocol::message::ClientMessage;
use ssmtui_protocol::payload::{
    AcknowledgeContent, AgentSessionStatePayload, AgentState, EncChallengePayload,
    HandshakeCompletePayload,
};
use ssmtui_protocol::session::{RttEstimator, channel_closed_frame, publication_frame};
use ssmtui_protocol::types::{ActionStatus, Flag, MessageType, PayloadType, Role, SessionType};
use ssmtui_protocol::{ProtocolError, Session, SessionConfig, SessionEvent, SessionState};
use uuid::Uuid;

use super::common::*;

fn decode_all(frames: &[Vec<u8>]) -> Vec<ClientMessage> {
    frames
        .iter()
        .map(|f| ClientMessage::decode_exact(f).unwrap())
        .collect()
}

fn transmits(s: &mut Session) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| s.poll_transmit().map(|f| f.to_vec())).collect()
}

/// Feeds every frame of `from` into `to`.
fn relay(from: &mut Session, to: &mut Session, now: u64) -> usize {
    let frames = transmits(from);
    for f in &frames {
        to.handle_incoming(f, now);
    }
    frames.len()
}

fn exchange(a: &mut Session, b: &mut Session, now: u64) {
    for _ in 0..20 {
        if relay(a, b, now) + relay(b, a, now) == 0 {
            return;
        }
    }
}

fn agent_frame(seq: i64, payload_type: PayloadType, payload: &[u8]) -> Vec<u8> {
    ClientMessage {
        message_type: MessageType::OutputStreamData,
        schema_version: 1,
        created_date: T0,
        sequence_number: seq,
        flags: u64::from(seq == 0),
        message_id: Uuid::from_u128(0x1000 + seq as u128),
        payload_type,
        payload: payload.to_vec(),
    }
    .encode()
}

fn acked_seqs(frames: &[Vec<u8>]) -> Vec<i64> {
    decode_all(frames)
        .into_iter()
        .filter(|m| m.message_type == MessageType::Acknowledge)
        .map(|m| {
            AcknowledgeContent::decode(&m.payload)
                .unwrap()
                .sequence_number
        })
        .collect()
}

#[test]
fn ack_frame_fields() {
    let mut c = Session::new(SessionConfig::client("s", "i", 1));
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"$ "), T0 + 5);
    let out = decode_all(&transmits(&mut c));
    assert_eq!(out.len(), 1);
    let ack = &out[0];
    assert_eq!(ack.message_type, MessageType::Acknowledge);
    assert_eq!(ack.sequence_number, 0);
    assert_eq!(ack.flags, 3);
    assert_eq!(ack.payload_type, PayloadType::Null);
    assert_eq!(ack.created_date, T0 + 5);
    let content = AcknowledgeContent::decode(&ack.payload).unwrap();
    assert_eq!(content.message_type, "output_stream_data");
    assert_eq!(content.message_id, Uuid::from_u128(0x1000).to_string());
    assert!(content.is_sequential_message);
}

#[test]
fn no_handshake_shell_detects_type_from_first_output_and_queues_input() {
    let mut c = Session::new(SessionConfig::client("s", "i", 1));
    // Input and size before the shell exists are queued, not sent (G10).
    c.resize(120, 40, T0).unwrap();
    assert_eq!(c.send_input(b"echo hi\r", T0), 8);
    c.resize(100, 30, T0).unwrap(); // replaces the queued size in place
    assert!(transmits(&mut c).is_empty());
    assert_eq!(c.state(), SessionState::Opening);

    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"$ "), T0 + 1000);
    assert_eq!(c.state(), SessionState::Running);
    let ev = events(&mut c);
    assert_eq!(
        ev,
        vec![
            SessionEvent::Ready {
                session_type: SessionType::StandardStream,
                customer_message: String::new(),
                encrypted: false
            },
            SessionEvent::Output(b"$ ".to_vec()),
        ]
    );
    let out = decode_all(&transmits(&mut c));
    // ack, then Size at seq 0 (G8), then the input at seq 1.
    assert_eq!(out[0].message_type, MessageType::Acknowledge);
    assert_eq!(out[1].payload_type, PayloadType::Size);
    assert_eq!(out[1].sequence_number, 0);
    assert_eq!(out[1].flags, 0);
    assert_eq!(out[1].payload, br#"{"cols":100,"rows":30}"#);
    assert_eq!(out[2].payload_type, PayloadType::Output);
    assert_eq!(out[2].sequence_number, 1);
    assert_eq!(out[2].payload, b"echo hi\r");
    assert_eq!(out.len(), 3);
}

#[test]
fn port_handshake_sequence_numbers() {
    // §5.5, Port without KMS.
    let mut agent = Session::new(SessionConfig::agent("s", "i-1", 2));
    let mut client = Session::new(SessionConfig::client("s", "i-1", 3));
    let props = json!({"portNumber": "22", "type": "LocalPortForwarding"});
    agent
        .begin_handshake(SessionType::Port, props.clone(), None, "3.3.987.0", T0)
        .unwrap();
    let req = decode_all(&transmits(&mut agent));
    assert_eq!(req.len(), 1);
    assert_eq!(
        (req[0].sequence_number, req[0].flags, req[0].payload_type),
        (0, 1, PayloadType::HandshakeRequest)
    );
    client.send_input(b"early", T0);
    client.handle_incoming(&req[0].encode(), T0 + 10);
    let ev = events(&mut client);
    assert_eq!(
        ev[0],
        SessionEvent::HandshakeRequested {
            agent_version: "3.3.987.0".into(),
            session_type: SessionType::Port,
            properties: props
        }
    );
    let out = decode_all(&transmits(&mut client));
    assert_eq!(out[0].message_type, MessageType::Acknowledge);
    assert_eq!(out[1].payload_type, PayloadType::HandshakeResponse);
    assert_eq!(out[1].sequence_number, 0);
    assert_eq!(
        String::from_utf8(out[1].payload.clone()).unwrap(),
        r#"{"ClientVersion":"1.2.650.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
    );
    assert_eq!(out.len(), 2, "no input before HandshakeComplete (G10)");
    for f in &out {
        agent.handle_incoming(&f.encode(), T0 + 20);
    }
    let a = decode_all(&transmits(&mut agent));
    assert_eq!(a[0].message_type, MessageType::Acknowledge);
    assert_eq!(a[1].payload_type, PayloadType::HandshakeComplete);
    assert_eq!(a[1].sequence_number, 1);
    assert_eq!(a[1].flags, 0);
    let hc = HandshakeCompletePayload::decode(&a[1].payload).unwrap();
    assert_eq!(hc.handshake_time_to_complete, 20_000_000, "nanoseconds");
    assert!(matches!(
        events(&mut agent).as_slice(),
        [
            SessionEvent::HandshakeResponse { .. },
            SessionEvent::Ready { .. }
        ]
    ));
    for f in &a {
        client.handle_incoming(&f.encode(), T0 + 30);
    }
    let c = decode_all(&transmits(&mut client));
    assert_eq!(c[0].message_type, MessageType::Acknowledge);
    assert_eq!(
        (
            c[1].sequence_number,
            c[1].payload_type,
            c[1].payload.as_slice()
        ),
        (1, PayloadType::Output, &b"early"[..])
    );
    assert_eq!(client.state(), SessionState::Running);
}

#[test]
fn kms_handshake_sequence_and_encryption() {
    // §5.5, shell with KMS: the client's first post-handshake message is seq 2 (G8).
    let mut agent = Session::new(SessionConfig::agent("sess-1", "i-0abc", 2));
    let mut client = Session::new(SessionConfig::client("sess-1", "i-0abc", 3));
    agent
        .begin_handshake(
            SessionType::StandardStream,
            json!({"ignored": true}),
            Some("arn:key".into()),
            "3.3.987.0",
            T0,
        )
        .unwrap();
    client.resize(80, 24, T0).unwrap();
    exchange(&mut agent, &mut client, T0 + 1);
    let ev = events(&mut client);
    let SessionEvent::KmsDataKeyRequested {
        key_id,
        encryption_context,
    } = &ev[1]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(key_id, "arn:key");
    assert_eq!(
        encryption_context,
        &BTreeMap::from([
            ("aws:ssm:SessionId".to_string(), "sess-1".to_string()),
            ("aws:ssm:TargetId".to_string(), "i-0abc".to_string()),
        ])
    );
    let key = tv7_key();
    let raw_key: Vec<u8> = (0u8..64).collect();
    client
        .provide_data_key(&raw_key, b"blob".to_vec(), T0 + 2)
        .unwrap();
    exchange(&mut client, &mut agent, T0 + 3);
    let ev = events(&mut agent);
    let Some(SessionEvent::KmsDecryptRequested {
        ciphertext_blob,
        encryption_context,
        ..
    }) = ev.get(1)
    else {
        panic!("{ev:?}")
    };
    assert_eq!(ciphertext_blob, b"blob");
    assert_eq!(encryption_context.len(), 2);
    drop(key);
    agent
        .provide_data_key(&raw_key, Vec::new(), T0 + 4)
        .unwrap();
    // Collect everything the client sends from here on.
    let mut client_sent = Vec::new();
    for _ in 0..10 {
        let a = transmits(&mut agent);
        for f in &a {
            client.handle_incoming(f, T0 + 5);
        }
        let c = transmits(&mut client);
        for f in &c {
            agent.handle_incoming(f, T0 + 5);
        }
        client_sent.extend(c);
        if a.is_empty() && client_sent.iter().all(|_| true) && transmits(&mut agent).is_empty() {
            break;
        }
    }
    let cev = events(&mut client);
    assert!(cev.contains(&SessionEvent::Ready {
        session_type: SessionType::StandardStream,
        customer_message: "This session is encrypted using AWS KMS.".into(),
        encrypted: true
    }));
    let stream: Vec<ClientMessage> = decode_all(&client_sent)
        .into_iter()
        .filter(|m| m.message_type == MessageType::InputStreamData)
        .collect();
    assert_eq!(stream[0].payload_type, PayloadType::EncChallengeResponse);
    assert_eq!(stream[0].sequence_number, 1);
    assert_eq!(stream[1].payload_type, PayloadType::Size);
    assert_eq!(stream[1].sequence_number, 2);
    assert_eq!(
        stream[1].payload, br#"{"cols":80,"rows":24}"#,
        "Size stays clear"
    );

    // Output is encrypted both ways and decrypts on the other side.
    client.send_input(b"ls\r", T0 + 6);
    let f = decode_all(&transmits(&mut client));
    assert_eq!(f[0].payload.len(), 3 + 28);
    agent.handle_incoming(&f[0].encode(), T0 + 7);
    assert!(events(&mut agent).contains(&SessionEvent::Input(b"ls\r".to_vec())));
    agent.send_output(b"file\r\n", T0 + 8);
    agent.send_stderr(b"warn", T0 + 8);
    agent.send_exit_code(3, T0 + 8).unwrap();
    let out = transmits(&mut agent);
    for f in decode_all(&out) {
        if f.message_type == MessageType::OutputStreamData {
            assert!(f.payload.len() >= 28);
            assert!(!f.payload.windows(4).any(|w| w == b"file" || w == b"warn"));
        }
    }
    for f in &out {
        client.handle_incoming(f, T0 + 9);
    }
    let ev = events(&mut client);
    assert_eq!(
        ev,
        vec![
            SessionEvent::Output(b"file\r\n".to_vec()),
            SessionEvent::StdErr(b"warn".to_vec()),
            SessionEvent::ExitCode(3)
        ]
    );
}

/// Runs a KMS handshake where the client and the agent hold different keys.
#[test]
fn kms_wrong_key_is_an_error_never_output() {
    let mut agent = Session::new(SessionConfig::agent("s", "i", 2));
    let mut client = Session::new(SessionConfig::client("s", "i", 3));
    agent
        .begin_handshake(
            SessionType::StandardStream,
            Value::Null,
            Some("k".into()),
            "3",
            T0,
        )
        .unwrap();
    exchange(&mut agent, &mut client, T0);
    client
        .provide_data_key(&[1; 64], b"b".to_vec(), T0)
        .unwrap();
    exchange(&mut client, &mut agent, T0);
    agent.provide_data_key(&[2; 64], vec![], T0).unwrap();
    exchange(&mut agent, &mut client, T0);
    let ev = events(&mut client);
    assert!(
        ev.contains(&SessionEvent::Error(ProtocolError::DecryptFailed)),
        "{ev:?}"
    );
    assert!(!ev.iter().any(|e| matches!(e, SessionEvent::Output(_))));
    assert_eq!(client.state(), SessionState::Failed);
    assert_eq!(client.poll_timeout(), None);
    assert_eq!(client.send_input(b"x", T0), 0);
}

#[test]
fn kms_tampered_ciphertext_is_an_error_never_output() {
    let key: Vec<u8> = (100u8..164).collect();
    let mut agent = Session::new(SessionConfig::agent("s", "i", 2));
    let mut client = Session::new(SessionConfig::client("s", "i", 3));
    agent
        .begin_handshake(
            SessionType::StandardStream,
            Value::Null,
            Some("k".into()),
            "3",
            T0,
        )
        .unwrap();
    exchange(&mut agent, &mut client, T0);
    client.provide_data_key(&key, b"b".to_vec(), T0).unwrap();
    exchange(&mut client, &mut agent, T0);
    agent.provide_data_key(&key, vec![], T0).unwrap();
    exchange(&mut agent, &mut client, T0);
    events(&mut client);
    assert_eq!(client.state(), SessionState::Running);
    agent.send_output(b"secret output", T0 + 1);
    let mut m = ClientMessage::decode_exact(&transmits(&mut agent)[0]).unwrap();
    m.payload[20] ^= 1; // valid digest, broken GCM tag
    client.handle_incoming(&m.encode(), T0 + 2);
    let ev = events(&mut client);
    assert_eq!(ev, vec![SessionEvent::Error(ProtocolError::DecryptFailed)]);

    // Agent side: a client that answers the challenge with the wrong key is refused.
    let mut agent = Session::new(SessionConfig::agent("s", "i", 4));
    let mut client = Session::new(SessionConfig::client("s", "i", 5));
    agent
        .begin_handshake(
            SessionType::StandardStream,
            Value::Null,
            Some("k".into()),
            "3",
            T0,
        )
        .unwrap();
    exchange(&mut agent, &mut client, T0);
    client.provide_data_key(&key, b"b".to_vec(), T0).unwrap();
    exchange(&mut client, &mut agent, T0);
    agent.provide_data_key(&key, vec![], T0).unwrap();
    let challenge = ClientMessage::decode_exact(&transmits(&mut agent)[0]).unwrap();
    let mut req = EncChallengePayload::decode(&challenge.payload).unwrap();
    let mut wrong =
        SessionCipher::new(&DataKey::from_bytes([3; 64]), Role::Client, [0; 12]).unwrap();
    req.challenge = wrong.encrypt(&[0; 64]).unwrap();
    let forged = ClientMessage {
        message_type: MessageType::InputStreamData,
        sequence_number: 1,
        payload_type: PayloadType::EncChallengeResponse,
        payload: req.encode(),
        ..challenge
    };
    agent.handle_incoming(&forged.encode(), T0 + 1);
    assert!(events(&mut agent).contains(&SessionEvent::Error(ProtocolError::DecryptFailed)));
    assert_eq!(agent.state(), SessionState::Failed);
}

#[test]
fn kms_failure_reported_to_agent() {
    let mut agent = Session::new(SessionConfig::agent("s", "i", 2));
    let mut client = Session::new(SessionConfig::client("s", "i", 3));
    agent
        .begin_handshake(
            SessionType::StandardStream,
            Value::Null,
            Some("k".into()),
            "3",
            T0,
        )
        .unwrap();
    exchange(&mut agent, &mut client, T0);
    assert!(client.provide_data_key(&[0; 10], vec![], T0).is_err());
    client.fail_kms("AccessDenied", T0).unwrap();
    exchange(&mut client, &mut agent, T0);
    let ev = events(&mut agent);
    assert!(matches!(
        ev.last(),
        Some(SessionEvent::Error(ProtocolError::HandshakeFailed(m))) if m.contains("AccessDenied")
    ));
}

#[test]
fn agent_handshake_timeout_and_unknown_session_type() {
    let mut agent = Session::new(SessionConfig::agent("s", "i", 2));
    agent
        .begin_handshake(SessionType::Port, json!({}), None, "3", T0)
        .unwrap();
    assert_eq!(agent.poll_timeout(), Some(T0 + 201));
    agent.handle_timeout(T0 + 15_000);
    assert!(
        events(&mut agent).contains(&SessionEvent::Error(ProtocolError::HandshakeTimeout(
            15_000
        )))
    );

    // A client refuses a session type it does not know (the agent then fails the session).
    let mut agent = Session::new(SessionConfig::agent("s", "i", 2));
    let mut client = Session::new(SessionConfig::client("s", "i", 3));
    agent
        .begin_handshake(
            SessionType::Unknown("Weird".into()),
            Value::Null,
            None,
            "3",
            T0,
        )
        .unwrap();
    exchange(&mut agent, &mut client, T0);
    let ev = events(&mut agent);
    let Some(SessionEvent::HandshakeResponse {
        processed_actions, ..
    }) = ev.first()
    else {
        panic!("{ev:?}")
    };
    assert_eq!(processed_actions[0].action_status, ActionStatus::Failed);
    assert!(matches!(ev.last(), Some(SessionEvent::Error(_))));
}

#[test]
fn agent_discards_input_before_handshake_completes() {
    let mut agent = Session::new(SessionConfig::agent("s", "i", 2));
    agent
        .begin_handshake(SessionType::Port, json!({}), None, "3", T0)
        .unwrap();
    transmits(&mut agent);
    let early = ClientMessage {
        message_type: MessageType::InputStreamData,
        schema_version: 1,
        created_date: T0,
        sequence_number: 0,
        flags: 0,
        message_id: Uuid::from_u128(5),
        payload_type: PayloadType::Output,
        payload: b"lost".to_vec(),
    };
    agent.handle_incoming(&early.encode(), T0 + 1);
    assert_eq!(acked_seqs(&transmits(&mut agent)), vec![0], "acked...");
    assert!(events(&mut agent).is_empty(), "...and dropped (§5.6)");
    assert_eq!(agent.stats().discarded_before_ready, 1);
}

#[test]
fn rtt_estimator_matches_spec_example() {
    let mut r = RttEstimator::default();
    assert_eq!(r.rto_micros(), 200_000);
    r.sample(50);
    assert_eq!(r.rttvar_micros(), 12_500);
    assert_eq!(r.rtt_micros(), 93_750);
    assert_eq!(r.rto_micros(), 143_750);
    for _ in 0..50 {
        r.sample(5000);
    }
    assert_eq!(r.rto_micros(), 1_000_000, "capped at 1 s");
    let mut r = RttEstimator::default();
    for _ in 0..200 {
        r.sample(0);
    }
    assert!(r.rto_micros() >= 10_000, "variance floor");
}

#[test]
fn resends_are_rto_paced_head_only_and_stop_when_acked() {
    let mut c = Session::new(SessionConfig::client("s", "i", 1));
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"$"), T0);
    transmits(&mut c);
    c.send_input(b"a", T0);
    c.send_input(b"b", T0);
    assert_eq!(transmits(&mut c).len(), 2);
    // Initial RTO 200 ms: resend when now - lastSent > 200.
    assert_eq!(c.poll_timeout(), Some(T0 + 201));
    c.handle_timeout(T0 + 200);
    assert!(transmits(&mut c).is_empty());
    c.handle_timeout(T0 + 201);
    let r = decode_all(&transmits(&mut c));
    assert_eq!(r.len(), 1, "head only, one per tick");
    assert_eq!(r[0].sequence_number, 0);
    // lastSent refreshed: next resend one RTO later, not every 100 ms (G26).
    assert_eq!(c.poll_timeout(), Some(T0 + 201 + 201));
    c.handle_timeout(T0 + 301);
    assert!(transmits(&mut c).is_empty());
    // Ack the tail first (selective), then the head.
    let ack = |seq: i64| {
        ClientMessage {
            message_type: MessageType::Acknowledge,
            schema_version: 1,
            created_date: T0,
            sequence_number: 0,
            flags: 3,
            message_id: Uuid::from_u128(9),
            payload_type: PayloadType::Null,
            payload: AcknowledgeContent {
                message_type: "input_stream_data".into(),
                message_id: String::new(),
                sequence_number: seq,
                is_sequential_message: true,
            }
            .encode(),
        }
        .encode()
    };
    c.handle_incoming(&ack(1), T0 + 350);
    assert_eq!(c.outgoing_len(), 1);
    assert_eq!(c.rtt().rtt_micros(), (7 * 100_000 + 350_000) / 8);
    c.handle_incoming(&ack(0), T0 + 450);
    assert_eq!(c.outgoing_len(), 0);
    assert_eq!(
        c.poll_timeout(),
        None,
        "nothing to resend once acknowledged"
    );
    c.handle_incoming(&ack(0), T0 + 460);
    assert_eq!(c.stats().stale_acks, 1);
    assert!(transmits(&mut c).is_empty(), "acks are never acked (G5)");
}

#[test]
fn one_resend_per_tick_even_with_short_rto() {
    let mut c = Session::new(SessionConfig::client("s", "i", 1));
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"$"), T0);
    transmits(&mut c);
    // Drive the RTO down to ~10 ms with fast acks.
    for i in 0..40 {
        c.send_input(b"x", T0 + i * 10);
        let f = decode_all(&transmits(&mut c));
        let ack = ClientMessage {
            message_type: MessageType::Acknowledge,
            schema_version: 1,
            created_date: T0,
            sequence_number: 0,
            flags: 3,
            message_id: Uuid::from_u128(9),
            payload_type: PayloadType::Null,
            payload: AcknowledgeContent {
                message_type: String::new(),
                message_id: String::new(),
                sequence_number: f[0].sequence_number,
                is_sequential_message: true,
            }
            .encode(),
        };
        c.handle_incoming(&ack.encode(), T0 + i * 10);
    }
    assert!(c.rtt().rto_micros() <= 11_000);
    let base = T0 + 1000;
    c.send_input(b"y", base);
    transmits(&mut c);
    let mut resend_times = Vec::new();
    let mut now = base;
    while now < base + 500 {
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
        if !transmits(&mut c).is_empty() {
            resend_times.push(now - base);
        }
    }
    assert_eq!(resend_times[0], 11);
    assert!(
        resend_times.windows(2).all(|w| w[1] - w[0] >= 100),
        "{resend_times:?}"
    );
}

#[test]
fn duplicates_are_reacked_and_not_redelivered() {
    let mut c = Session::new(SessionConfig::client("s", "i", 1));
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"a"), T0);
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"a"), T0);
    assert_eq!(acked_seqs(&transmits(&mut c)), vec![0, 0], "re-ack (G11)");
    // Out of order: 2 stored and acked, duplicate of 2 re-acked, then 1 releases both.
    c.handle_incoming(&agent_frame(2, PayloadType::Output, b"c"), T0);
    c.handle_incoming(&agent_frame(2, PayloadType::Output, b"c"), T0);
    c.handle_incoming(&agent_frame(1, PayloadType::Output, b"b"), T0);
    assert_eq!(acked_seqs(&transmits(&mut c)), vec![2, 2, 1]);
    let data: Vec<u8> = events(&mut c)
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::Output(b) => Some(b),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(data, b"abc");
    assert_eq!(c.expected_sequence_number(), 3);
    assert_eq!(c.stats().duplicates, 2);
}

#[test]
fn not_ready_means_no_ack() {
    // Basic port mode before a local connection exists (G12).
    let mut c = Session::new(SessionConfig::client("s", "i", 1));
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"$"), T0);
    transmits(&mut c);
    events(&mut c);
    c.set_receive_ready(false);
    c.handle_incoming(&agent_frame(1, PayloadType::Output, b"x"), T0);
    assert!(transmits(&mut c).is_empty(), "not acked");
    assert_eq!(c.expected_sequence_number(), 1);
    // A flag still goes through... once its turn comes; out-of-order data is stored + acked.
    c.handle_incoming(&agent_frame(2, PayloadType::Output, b"y"), T0);
    assert_eq!(acked_seqs(&transmits(&mut c)), vec![2]);
    c.set_receive_ready(true);
    assert!(events(&mut c).is_empty(), "seq 1 was never accepted");
    c.handle_incoming(&agent_frame(1, PayloadType::Output, b"x"), T0);
    assert_eq!(acked_seqs(&transmits(&mut c)), vec![1]);
    assert_eq!(
        events(&mut c),
        vec![
            SessionEvent::Output(b"x".to_vec()),
            SessionEvent::Output(b"y".to_vec())
        ]
    );
}

#[test]
fn slow_consumer_backpressure_and_channel_closed_delivers_in_order_data_first() {
    let mut cfg = SessionConfig::client("s", "i", 1);
    cfg.max_undelivered_bytes = 4;
    let mut c = Session::new(cfg);
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"0123"), T0);
    c.handle_incoming(&agent_frame(2, PayloadType::Output, b"2"), T0);
    c.handle_incoming(&agent_frame(1, PayloadType::Output, b"1"), T0);
    // 4 bytes undelivered: seq 1 is refused (no ack), seq 2 stored (acked).
    assert_eq!(acked_seqs(&transmits(&mut c)), vec![0, 2]);
    // Polling frees room; the retransmitted seq 1 then releases seq 2.
    assert_eq!(events(&mut c).len(), 2); // Ready + Output
    c.handle_incoming(&agent_frame(1, PayloadType::Output, b"1"), T0);
    assert_eq!(acked_seqs(&transmits(&mut c)), vec![1]);
    assert_eq!(
        events(&mut c),
        vec![
            SessionEvent::Output(b"1".to_vec()),
            SessionEvent::Output(b"2".to_vec())
        ]
    );
    // Now fill again and let channel_closed arrive while in-order data waits in the buffer.
    c.handle_incoming(&agent_frame(3, PayloadType::Output, b"3333"), T0);
    c.handle_incoming(&agent_frame(5, PayloadType::Output, b"5"), T0);
    c.handle_incoming(&agent_frame(4, PayloadType::Output, b"4"), T0); // refused: full
    c.handle_incoming(&agent_frame(6, PayloadType::Output, b"6"), T0);
    let closed = channel_closed_frame("s", "i", "bye", T0, Uuid::from_u128(1));
    c.handle_incoming(&closed, T0);
    let ev = events(&mut c);
    assert_eq!(
        ev,
        vec![
            SessionEvent::Output(b"3333".to_vec()),
            SessionEvent::ChannelClosed {
                output: "bye".into(),
                session_id: "s".into()
            }
        ],
        "5 and 6 are not in order (4 missing), so they are lost as in the plugin"
    );
    assert_eq!(c.state(), SessionState::Closed);
    c.handle_incoming(&agent_frame(4, PayloadType::Output, b"4"), T0);
    assert!(!acked_seqs(&transmits(&mut c)).contains(&4));
    assert!(
        events(&mut c).is_empty(),
        "nothing processed after channel_closed"
    );

    // The forced drain case: stored, in-order, held back only by the consumer.
    let mut cfg = SessionConfig::client("s", "i", 1);
    cfg.max_undelivered_bytes = 2;
    let mut c = Session::new(cfg);
    c.handle_incoming(&agent_frame(1, PayloadType::Output, b"bb"), T0);
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"aa"), T0);
    assert_eq!(c.incoming_len(), 1, "seq 1 waits for the consumer");
    c.handle_incoming(&closed, T0);
    let outs: Vec<SessionEvent> = events(&mut c)
        .into_iter()
        .filter(|e| !matches!(e, SessionEvent::Ready { .. }))
        .collect();
    assert_eq!(
        outs,
        vec![
            SessionEvent::Output(b"aa".to_vec()),
            SessionEvent::Output(b"bb".to_vec()),
            SessionEvent::ChannelClosed {
                output: "bye".into(),
                session_id: "s".into()
            }
        ]
    );
}

#[test]
fn receive_backlog_is_signalled_and_stops_the_give_up_clock() {
    let mut cfg = SessionConfig::client("s", "i", 1);
    cfg.max_undelivered_bytes = 4;
    cfg.give_up_after_ms = 1_000;
    let mut c = Session::new(cfg);
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"012"), T0);
    assert!(!c.is_receive_backlogged(), "3 of 4 bytes");
    c.handle_incoming(&agent_frame(1, PayloadType::Output, b"3"), T0);
    assert!(
        c.is_receive_backlogged(),
        "the IO layer must stop reading now"
    );
    assert_eq!(
        acked_seqs(&transmits(&mut c)),
        vec![0, 1],
        "nothing refused"
    );
    c.send_input(b"x", T0);
    transmits(&mut c);
    // The agent's ack for "x" would wait unread behind the backlog: no give-up meanwhile.
    c.handle_timeout(T0 + 5_000);
    assert_ne!(c.state(), SessionState::Failed);
    assert_eq!(
        events(&mut c)
            .into_iter()
            .filter(|e| matches!(e, SessionEvent::Output(_)))
            .count(),
        2
    );
    assert!(!c.is_receive_backlogged());
    // The clock runs again from the last moment it was held.
    c.handle_timeout(T0 + 5_900);
    assert_ne!(c.state(), SessionState::Failed);
    c.handle_timeout(T0 + 6_100);
    assert_eq!(c.state(), SessionState::Failed);
}

#[test]
fn outgoing_cap_backpressure_and_writable() {
    let mut cfg = SessionConfig::client("s", "i", 1);
    cfg.max_outgoing_messages = 8;
    cfg.max_pending_bytes = 4096;
    let mut c = Session::new(cfg);
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"$"), T0);
    transmits(&mut c);
    events(&mut c);
    let data = vec![7u8; 100_000];
    let taken = c.send_input(&data, T0);
    assert_eq!(
        taken,
        8 * 1024 + 4096,
        "8 messages in flight + 4 KiB pending"
    );
    assert_eq!(c.outgoing_len(), 8);
    assert_eq!(c.send_input(&data, T0), 0);
    assert_eq!(c.send_capacity(), 0);
    // Control messages still queue (bounded).
    c.resize(1, 1, T0).unwrap();
    c.send_flag(Flag::TerminateSession, T0).unwrap();
    let sent = decode_all(&transmits(&mut c));
    assert_eq!(sent.len(), 8);
    assert!(sent.iter().all(|m| m.payload.len() == 1024));
    assert!(events(&mut c).is_empty());
    // Acks free room: pending moves into the buffer and Writable is reported.
    for m in &sent {
        c.handle_incoming(&ack_of(m, T0), T0 + 10);
        assert!(c.outgoing_len() <= 8);
    }
    assert_eq!(events(&mut c), vec![SessionEvent::Writable]);
    let next = decode_all(&transmits(&mut c));
    assert_eq!(next.len(), 6, "4 data + Size + Flag");
    assert_eq!(next[4].payload_type, PayloadType::Size);
    assert_eq!(next[5].payload_type, PayloadType::Flag);
    assert_eq!(next[5].payload, [0, 0, 0, 2]);
    let seqs: Vec<i64> = next.iter().map(|m| m.sequence_number).collect();
    assert_eq!(seqs, vec![8, 9, 10, 11, 12, 13]);
}

#[test]
fn pause_holds_and_start_resumes() {
    let mut c = Session::new(SessionConfig::client("s", "i", 1));
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"$"), T0);
    transmits(&mut c);
    c.send_input(b"a", T0);
    transmits(&mut c);
    c.handle_incoming(&publication_frame(true, T0, Uuid::from_u128(1)), T0 + 1);
    assert!(c.is_paused());
    assert_eq!(
        c.poll_timeout().map(|t| t > T0 + 10_000),
        Some(true),
        "no resends while paused"
    );
    c.send_input(b"b", T0 + 2);
    assert!(transmits(&mut c).is_empty(), "held while paused");
    c.handle_timeout(T0 + 5000);
    assert!(transmits(&mut c).is_empty());
    c.handle_incoming(&publication_frame(false, T0, Uuid::from_u128(2)), T0 + 6000);
    let out = decode_all(&transmits(&mut c));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload, b"b");
    assert!(events(&mut c).ends_with(&[SessionEvent::Paused, SessionEvent::Resumed]));
    // The head is overdue and goes out on the next timeout.
    c.handle_timeout(c.poll_timeout().unwrap());
    assert_eq!(decode_all(&transmits(&mut c))[0].payload, b"a");
    // Stream data from the peer also clears a pause.
    c.handle_incoming(&publication_frame(true, T0, Uuid::from_u128(3)), T0 + 7000);
    c.handle_incoming(&agent_frame(1, PayloadType::Output, b"x"), T0 + 7001);
    assert!(!c.is_paused());
}

#[test]
fn give_up_after_deadline_and_reconnect_resends() {
    let mut c = Session::new(SessionConfig::client("s", "i", 1));
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"$"), T0);
    transmits(&mut c);
    c.send_input(b"a", T0);
    c.send_input(b"b", T0);
    transmits(&mut c);
    c.handle_reconnected(T0 + 50);
    assert_eq!(
        transmits(&mut c).len(),
        2,
        "everything unacked goes out again at once"
    );
    let mut now = T0;
    let mut resends = 0;
    loop {
        let t = c.poll_timeout().expect("a deadline while unacked");
        assert!(t >= now);
        now = t;
        c.handle_timeout(now);
        resends += transmits(&mut c).len();
        if c.state() == SessionState::Failed {
            break;
        }
    }
    assert_eq!(now, T0 + 300_001);
    assert!(matches!(
        events(&mut c).last(),
        Some(SessionEvent::Error(ProtocolError::GaveUp {
            sequence_number: 0,
            ..
        }))
    ));
    assert!(resends > 250 && resends < 3000, "{resends}");
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn malformed_and_unknown_frames() {
    let mut c = Session::new(SessionConfig::client("s", "i", 1));
    c.handle_incoming(&[0, 0, 0], T0);
    c.handle_incoming(b"short", T0);
    let mut bad = agent_frame(0, PayloadType::Output, b"x");
    let n = bad.len();
    bad[n - 1] ^= 1;
    c.handle_incoming(&bad, T0);
    assert!(transmits(&mut c).is_empty(), "digest mismatch: no ack");
    let ev = events(&mut c);
    assert!(matches!(
        ev[0],
        SessionEvent::FrameDropped(ProtocolError::Truncated { .. })
    ));
    assert!(matches!(
        ev[1],
        SessionEvent::FrameDropped(ProtocolError::BadHeaderLength(_))
    ));
    assert_eq!(
        ev[2],
        SessionEvent::FrameDropped(ProtocolError::DigestMismatch)
    );
    // Unknown message type and agent_session_state: ignored silently.
    let mut m = ClientMessage::decode_exact(&agent_frame(0, PayloadType::Output, b"x")).unwrap();
    m.message_type = MessageType::Unknown("agent_job".into());
    c.handle_incoming(&m.encode(), T0);
    m.message_type = MessageType::AgentSessionState;
    c.handle_incoming(&m.encode(), T0);
    assert!(transmits(&mut c).is_empty());
    assert!(events(&mut c).is_empty());
    // Unknown payload type on stream data: acknowledged, skipped.
    c.handle_incoming(&agent_frame(0, PayloadType::Unknown(77), b"?"), T0);
    assert_eq!(acked_seqs(&transmits(&mut c)), vec![0]);
    assert!(events(&mut c).is_empty());
    // Flag with a bad payload is dropped with a diagnostic; a good one is an event.
    c.handle_incoming(&agent_frame(1, PayloadType::Flag, &[3]), T0);
    c.handle_incoming(&agent_frame(2, PayloadType::Flag, &[0, 0, 0, 3]), T0);
    let ev = events(&mut c);
    assert!(matches!(ev[0], SessionEvent::FrameDropped(_)));
    assert_eq!(ev[1], SessionEvent::Flag(Flag::ConnectToPortError));
}

#[test]
fn agent_close_flushes_then_reports_terminating() {
    let mut agent = Session::new(SessionConfig::agent("sess", "i", 2));
    let mut client = Session::new(SessionConfig::client("sess", "i", 3));
    agent
        .begin_handshake(SessionType::StandardStream, Value::Null, None, "3", T0)
        .unwrap();
    agent.send_output(b"bye\r\n", T0);
    agent.close(T0).unwrap();
    assert_eq!(agent.send_output(b"more", T0), 0);
    let out = transmits(&mut agent);
    assert_eq!(out.len(), 1, "not Terminating before the ack");
    client.handle_incoming(&out[0], T0 + 1);
    relay(&mut client, &mut agent, T0 + 2);
    let out = decode_all(&transmits(&mut agent));
    assert_eq!(out[0].message_type, MessageType::AgentSessionState);
    let st = AgentSessionStatePayload::decode(&out[0].payload).unwrap();
    assert_eq!(st.session_state, AgentState::Terminating);
    assert_eq!(st.session_id, "sess");
    assert!(events(&mut agent).contains(&SessionEvent::Closed));
    assert_eq!(agent.state(), SessionState::Closed);
    // Timeout path.
    let mut agent = Session::new(SessionConfig::agent("sess", "i", 2));
    agent
        .begin_handshake(SessionType::StandardStream, Value::Null, None, "3", T0)
        .unwrap();
    agent.send_output(b"x", T0);
    agent.close(T0).unwrap();
    agent.handle_timeout(T0 + 2000);
    assert_eq!(agent.state(), SessionState::Closed);
}

/// The agent's acknowledgement of `m`.
fn ack_of(m: &ClientMessage, now: u64) -> Vec<u8> {
    ClientMessage {
        message_type: MessageType::Acknowledge,
        schema_version: 1,
        created_date: now,
        sequence_number: 0,
        flags: 3,
        message_id: Uuid::from_u128(1),
        payload_type: PayloadType::Null,
        payload: AcknowledgeContent {
            message_type: "input_stream_data".into(),
            message_id: m.message_id.to_string(),
            sequence_number: m.sequence_number,
            is_sequential_message: true,
        }
        .encode(),
    }
    .encode()
}

/// A shell client with data to send for as long as it will take it.
fn busy_client() -> Session {
    let mut c = Session::new(SessionConfig::client("s", "i", 1));
    c.handle_incoming(&agent_frame(0, PayloadType::Output, b"$"), T0);
    transmits(&mut c);
    events(&mut c);
    c
}

fn fill(c: &mut Session, now: u64) -> Vec<ClientMessage> {
    let data = vec![7u8; 64 * 1024];
    while c.send_input(&data, now) > 0 {}
    decode_all(&transmits(c))
        .into_iter()
        .filter(|m| m.message_type == MessageType::InputStreamData)
        .collect()
}

/// The client's outgoing buffer starts at a 256 KiB window, not the plugin's 10 000 messages,
/// and doubles per round trip while the path takes everything in flight (a long fast link).
#[test]
fn the_byte_window_grows_to_fill_a_long_fat_path() {
    let mut c = busy_client();
    let first = fill(&mut c, T0);
    let window = c.outgoing_window();
    assert_eq!(
        window,
        ssmtui_protocol::session::DEFAULT_MIN_OUTGOING_WINDOW
    );
    assert!(
        c.outgoing_bytes() <= window + 2048,
        "{}",
        c.outgoing_bytes()
    );
    assert!(first.len() < 300, "{} messages in flight", first.len());
    // Everything in flight is acknowledged one round trip (100 ms) later, every time.
    let mut in_flight = first;
    let mut windows = vec![window];
    for round in 1..=6u64 {
        let now = T0 + 100 * round;
        for m in &in_flight {
            c.handle_incoming(&ack_of(m, now), now);
        }
        in_flight = fill(&mut c, now);
        windows.push(c.outgoing_window());
    }
    assert!(
        windows.windows(2).all(|w| w[1] >= w[0]),
        "the window only grows: {windows:?}"
    );
    assert!(
        windows[6] >= 8 * windows[0],
        "it doubles per round trip: {windows:?}"
    );
    assert!(windows[6] <= ssmtui_protocol::session::DEFAULT_MAX_OUTGOING_WINDOW);
}

/// A peer that acknowledges slowly (the queue in front of it makes every later round trip
/// longer) does not grow the window: it is measured against the shortest round trip, so what
/// sits in memory stays at the small window instead of the plugin's 10 000 messages.
#[test]
fn a_slow_peer_leaves_the_window_small() {
    let mut c = busy_client();
    let mut queue: std::collections::VecDeque<ClientMessage> = fill(&mut c, T0).into();
    // Ten messages (~11 KiB) acknowledged per millisecond, for three seconds.
    for ms in 1..=3000u64 {
        let now = T0 + ms;
        for _ in 0..10 {
            if let Some(m) = queue.pop_front() {
                c.handle_incoming(&ack_of(&m, now), now);
            }
        }
        queue.extend(fill(&mut c, now));
    }
    assert_eq!(
        c.outgoing_window(),
        ssmtui_protocol::session::DEFAULT_MIN_OUTGOING_WINDOW,
        "4 × 11 KiB per 1 ms round is below the floor"
    );
    assert!(c.outgoing_bytes() <= c.outgoing_window() + 2048);
}

/// A peer that is descheduled for 20 ms at a time, then acknowledges its whole backlog at once
/// (an agent sharing two cores with eight busy forwards): the burst arrives within a
/// millisecond, but the path delivers one window per 20 ms, so the window stays at its floor.
/// Measured over the burst alone it grew to ~6 MB per session.
#[test]
fn a_burst_of_late_acknowledgements_does_not_inflate_the_window() {
    let mut c = busy_client();
    let mut in_flight = fill(&mut c, T0);
    // The first acknowledgements come back within a millisecond: the path is short.
    let now = T0 + 1;
    for m in in_flight.drain(..10) {
        c.handle_incoming(&ack_of(&m, now), now);
    }
    in_flight.extend(fill(&mut c, now));
    for cycle in 1..=100u64 {
        let now = T0 + 1 + 20 * cycle;
        for m in in_flight.drain(..) {
            c.handle_incoming(&ack_of(&m, now), now);
        }
        in_flight = fill(&mut c, now);
    }
    assert_eq!(
        c.outgoing_window(),
        ssmtui_protocol::session::DEFAULT_MIN_OUTGOING_WINDOW
    );
}

/// The window keeps its largest estimate for a while, then follows the path down: after a
/// fast long link turns slow, the memory in flight goes back to the floor.
#[test]
fn the_window_gives_memory_back_when_the_path_slows() {
    let mut c = busy_client();
    let mut in_flight = fill(&mut c, T0);
    let mut now = T0;
    for _ in 1..=6 {
        now += 100;
        for m in in_flight.drain(..) {
            c.handle_incoming(&ack_of(&m, now), now);
        }
        in_flight = fill(&mut c, now);
    }
    let grown = c.outgoing_window();
    assert!(grown >= 8 * ssmtui_protocol::session::DEFAULT_MIN_OUTGOING_WINDOW);
    // The same round trip, but the far end now takes ten messages per 100 ms.
    let mut queue: std::collections::VecDeque<ClientMessage> = in_flight.into();
    let slow_from = now;
    let mut at_peak_expiry = 0;
    while now < slow_from + ssmtui_protocol::session::WINDOW_PEAK_MS + 2_000 {
        now += 100;
        for _ in 0..10 {
            if let Some(m) = queue.pop_front() {
                c.handle_incoming(&ack_of(&m, now), now);
            }
        }
        queue.extend(fill(&mut c, now));
        if now <= slow_from + ssmtui_protocol::session::WINDOW_PEAK_MS / 2 {
            at_peak_expiry = c.outgoing_window();
        }
    }
    assert_eq!(at_peak_expiry, grown, "kept for a while");
    assert_eq!(
        c.outgoing_window(),
        ssmtui_protocol::session::DEFAULT_MIN_OUTGOING_WINDOW,
        "then back to the floor"
    );
}
