//! Property tests (round trips, invariants) and hostile input for the decoders.

use proptest::prelude::*;
use serde_json::Value;
use ssmtui_protocol::crypto::{DataKey, SessionCipher};
use ssmtui_protocol::debug::{frame_to_json, json_to_frame, message_from_json, message_to_json};
use ssmtui_protocol::message::{ClientMessage, DecodeOptions};
use ssmtui_protocol::payload::{
    AcknowledgeContent, ActionParameters, ActionResult, AgentSessionStatePayload, AgentState,
    ChannelClosedPayload, EncChallengePayload, HandshakeCompletePayload, HandshakeRequestPayload,
    HandshakeResponsePayload, KmsEncryptionRequest, KmsEncryptionResponse, OpenDataChannelInput,
    ProcessedClientAction, RequestedClientAction, SessionTypeRequest, SizeData, decode_exit_code,
    encode_exit_code,
};
use ssmtui_protocol::types::{
    ActionStatus, ActionType, Flag, MessageType, PayloadType, Role, SessionType,
};
use ssmtui_protocol::{ProtocolError, Session, SessionConfig};
use uuid::Uuid;

use super::common::*;

fn arb_message_type() -> impl Strategy<Value = MessageType> {
    prop_oneof![
        Just(MessageType::InputStreamData),
        Just(MessageType::OutputStreamData),
        Just(MessageType::Acknowledge),
        Just(MessageType::ChannelClosed),
        Just(MessageType::StartPublication),
        Just(MessageType::PausePublication),
        Just(MessageType::AgentSessionState),
        "[a-z_][a-z_0-9]{0,31}".prop_map(|s| MessageType::from_wire(&s)),
    ]
}

fn arb_message() -> impl Strategy<Value = ClientMessage> {
    (
        arb_message_type(),
        any::<u32>(),
        1..u64::MAX,
        any::<i64>(),
        any::<u64>(),
        any::<[u8; 16]>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..700),
    )
        .prop_map(|(t, sv, cd, seq, flags, id, pt, payload)| ClientMessage {
            message_type: t,
            schema_version: sv,
            created_date: cd,
            sequence_number: seq,
            flags,
            message_id: Uuid::from_bytes(id),
            payload_type: PayloadType::from_u32(pt % 16),
            payload,
        })
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,24}", ".{0,12}"]
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        prop::collection::btree_map("[a-zA-Z]{1,8}", arb_text(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, v.into())).collect())),
    ]
}

fn arb_session_type() -> impl Strategy<Value = SessionType> {
    prop_oneof![
        Just(SessionType::StandardStream),
        Just(SessionType::InteractiveCommands),
        Just(SessionType::NonInteractiveCommands),
        Just(SessionType::Port),
        "[A-Za-z_]{1,12}".prop_map(|s| SessionType::from_wire(&s)),
    ]
}

fn arb_requested_action() -> impl Strategy<Value = RequestedClientAction> {
    prop_oneof![
        (arb_session_type(), arb_value()).prop_map(|(session_type, properties)| {
            RequestedClientAction {
                action_type: ActionType::SessionType,
                action_parameters: ActionParameters::SessionType(SessionTypeRequest {
                    session_type,
                    properties,
                }),
            }
        }),
        (arb_text(), prop::option::of("[A-Za-z0-9+/]{4}")).prop_map(|(k, c)| {
            RequestedClientAction {
                action_type: ActionType::KmsEncryption,
                action_parameters: ActionParameters::KmsEncryption(KmsEncryptionRequest {
                    kms_key_id: k,
                    challenge: c,
                }),
            }
        }),
        ("Z[a-z]{0,6}", arb_value()).prop_map(|(t, v)| RequestedClientAction {
            action_type: ActionType::from_wire(&t),
            action_parameters: ActionParameters::Other(v),
        }),
    ]
}

fn arb_processed_action() -> impl Strategy<Value = ProcessedClientAction> {
    (
        any::<i8>(),
        prop_oneof![
            Just(ActionResult::None),
            (
                prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..8)),
                any::<bool>()
            )
                .prop_map(|(k, h, c)| ActionResult::Kms(KmsEncryptionResponse {
                    kms_cipher_text_key: k,
                    kms_cipher_text_hash: h,
                    challenge_acknowledgement: c,
                })),
        ],
        arb_text(),
    )
        .prop_map(|(status, result, error)| ProcessedClientAction {
            action_type: match result {
                ActionResult::Kms(_) => ActionType::KmsEncryption,
                _ => ActionType::SessionType,
            },
            action_status: ActionStatus::from_i64(status.into()),
            action_result: result,
            error,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn prop_message_roundtrip(m in arb_message(), trailing in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut wire = m.encode();
        prop_assert_eq!(wire.len(), m.encoded_len());
        let n = wire.len();
        wire.extend_from_slice(&trailing);
        let (d, used) = ClientMessage::decode(&wire).unwrap().unwrap();
        prop_assert_eq!(used, n);
        prop_assert_eq!(&d, &m);
        // Every strict prefix is "need more bytes".
        let cut = (m.payload.len() * 7919 + 13) % n;
        prop_assert_eq!(ClientMessage::decode(&wire[..cut]), Ok(None));
        // The debug JSON view is canonical.
        let v = message_to_json(&m);
        prop_assert_eq!(&message_from_json(&v).unwrap(), &m);
        prop_assert_eq!(json_to_frame(&v).unwrap(), m.encode());
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn prop_mutated_frame_never_panics(m in arb_message(), pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let mut wire = m.encode();
        let p = pos % wire.len();
        wire[p] = byte;
        let wire = &wire[..(cut % (wire.len() + 1))];
        if let Ok(Some((d, used))) = ClientMessage::decode(wire) {
            prop_assert!(used <= wire.len());
            prop_assert!(d.payload.len() <= wire.len());
        }
        let _ = frame_to_json(wire, 1 << 20);
    }

    #[test]
    fn prop_ack_roundtrip(t in arb_text(), id in arb_text(), seq in any::<i64>(), s in any::<bool>()) {
        let a = AcknowledgeContent { message_type: t, message_id: id, sequence_number: seq, is_sequential_message: s };
        prop_assert_eq!(AcknowledgeContent::decode_sequence_number(&a.encode()).unwrap(), seq);
        prop_assert_eq!(AcknowledgeContent::decode(&a.encode()).unwrap(), a);
    }

    /// The session's allocation-free ack parser accepts exactly what the full one accepts.
    #[test]
    fn prop_ack_sequence_parser_agrees(
        t in prop_oneof![arb_text().prop_map(|t| format!("{t:?}")), Just("7".to_owned()), Just("null".to_owned())],
        seq in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), Just("\"5\"".to_owned()), Just("1.5".to_owned())],
        flag in prop_oneof![Just("true"), Just("0")],
        junk in arb_text(),
        cut in any::<usize>(),
    ) {
        let text = format!(
            r#"{{"AcknowledgedMessageType":{t},"AcknowledgedMessageId":{junk:?},"AcknowledgedMessageSequenceNumber":{seq},"IsSequentialMessage":{flag},"Extra":[1]}}"#
        );
        let bytes = &text.as_bytes()[..cut % (text.len() + 1)];
        prop_assert_eq!(
            AcknowledgeContent::decode_sequence_number(bytes).ok(),
            AcknowledgeContent::decode(bytes).ok().map(|a| a.sequence_number)
        );
    }

    #[test]
    fn prop_channel_closed_roundtrip(a in arb_text(), b in any::<u64>(), c in arb_text(), d in arb_text(), e in any::<i64>(), f in arb_text()) {
        let p = ChannelClosedPayload { message_id: a, created_date: b.to_string(), destination_id: c, session_id: d, message_type: "channel_closed".into(), schema_version: e, output: f };
        prop_assert_eq!(ChannelClosedPayload::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn prop_small_payloads_roundtrip(cols in any::<u32>(), rows in any::<u32>(), flag in any::<u32>(), code in any::<i32>(), ns in any::<i64>(), msg in arb_text(), ch in prop::collection::vec(any::<u8>(), 0..100), sid in arb_text()) {
        let s = SizeData { cols, rows };
        prop_assert_eq!(SizeData::decode(&s.encode()).unwrap(), s);
        let f = Flag::from_u32(flag);
        prop_assert_eq!(Flag::decode(&f.encode()).unwrap(), f);
        prop_assert_eq!(decode_exit_code(&encode_exit_code(code)).unwrap(), code);
        let c = HandshakeCompletePayload { handshake_time_to_complete: ns, customer_message: msg };
        prop_assert_eq!(HandshakeCompletePayload::decode(&c.encode()).unwrap(), c);
        let e = EncChallengePayload { challenge: ch };
        prop_assert_eq!(EncChallengePayload::decode(&e.encode()).unwrap(), e);
        let st = AgentSessionStatePayload { schema_version: 1, session_state: AgentState::from_wire(&sid), session_id: sid.clone() };
        prop_assert_eq!(AgentSessionStatePayload::decode(&st.encode()).unwrap(), st);
        let o = OpenDataChannelInput::client(&sid, &sid, &sid, &sid);
        prop_assert_eq!(OpenDataChannelInput::parse(o.to_json_string().as_bytes()).unwrap(), o);
    }

    #[test]
    fn prop_handshake_roundtrip(v in arb_text(), req in prop::collection::vec(arb_requested_action(), 0..4), resp in prop::collection::vec(arb_processed_action(), 0..4), errors in prop::collection::vec(arb_text(), 0..3)) {
        let r = HandshakeRequestPayload { agent_version: v.clone(), requested_client_actions: req };
        let bytes = r.encode();
        prop_assert_eq!(HandshakeRequestPayload::decode(&bytes).unwrap(), r.clone());
        // Go JSON is valid JSON with the same content.
        let _: Value = serde_json::from_slice(&bytes).unwrap();
        let p = HandshakeResponsePayload { client_version: v, processed_client_actions: resp, errors };
        prop_assert_eq!(HandshakeResponsePayload::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn prop_crypto_roundtrip(key in any::<[u8; 32]>(), seed in any::<[u8; 12]>(), pt in prop::collection::vec(any::<u8>(), 0..600), flip in any::<usize>()) {
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&key);
        k[32..].copy_from_slice(&key.map(|b| b ^ 0x55));
        let key = DataKey::from_bytes(k);
        let mut client = SessionCipher::new(&key, Role::Client, seed).unwrap();
        let mut agent = SessionCipher::new(&key, Role::Agent, seed).unwrap();
        let ct = client.encrypt(&pt).unwrap();
        prop_assert_eq!(agent.decrypt(&ct).unwrap(), pt.clone());
        let ct2 = agent.encrypt(&pt).unwrap();
        prop_assert_eq!(client.decrypt(&ct2).unwrap(), pt);
        let mut bad = ct.clone();
        let i = flip % bad.len();
        bad[i] ^= 0x80;
        prop_assert_eq!(agent.decrypt(&bad), Err(ProtocolError::DecryptFailed));
    }
}

#[test]
fn hostile_bytes_never_panic_or_overallocate() {
    // 120 000 cases: random bytes, bytes with a plausible header, and mutated valid frames.
    let mut rng = TestRng(42);
    let seeds: Vec<Vec<u8>> = all_vectors().into_iter().map(|(_, w)| w).collect();
    let opts = DecodeOptions {
        max_payload_len: 4096,
        validate: true,
    };
    let mut decoded = 0;
    for case in 0..120_000u32 {
        let mut buf: Vec<u8> = match case % 3 {
            0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
            1 => {
                let mut b: Vec<u8> = (0..120 + rng.below(200))
                    .map(|_| rng.next() as u8)
                    .collect();
                let hl = [112u32, 116, 120, rng.next() as u32][rng.below(4) as usize];
                b[..4].copy_from_slice(&hl.to_be_bytes());
                if let Some(pl) = b.get_mut(hl as usize..hl as usize + 4) {
                    pl.copy_from_slice(&(rng.below(400) as u32).to_be_bytes());
                }
                b
            }
            _ => {
                let mut b = seeds[rng.below(seeds.len() as u64) as usize].clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(b.len() as u64) as usize;
                    b[i] = rng.next() as u8;
                }
                let keep = b.len() - rng.below(b.len() as u64 / 4) as usize;
                b.truncate(keep);
                b
            }
        };
        if case % 1000 == 0 {
            buf.extend_from_slice(&[0xff; 64]);
        }
        if let Ok(Some(d)) = ClientMessage::decode_with(&buf, &opts) {
            decoded += 1;
            assert!(d.consumed <= buf.len());
            assert!(d.message.payload.len() <= buf.len().min(4096));
        }
    }
    assert!(
        decoded > 100,
        "some mutated frames still decode ({decoded})"
    );
}

#[test]
fn sessions_survive_hostile_frames() {
    let mut rng = TestRng(7);
    let seeds: Vec<Vec<u8>> = all_vectors().into_iter().map(|(_, w)| w).collect();
    for role in [Role::Client, Role::Agent] {
        let mut cfg = SessionConfig::client("s", "i", 1);
        cfg.role = role;
        let mut s = Session::new(cfg);
        if role == Role::Agent {
            s.begin_handshake(SessionType::StandardStream, Value::Null, None, "3.3.0.0", 1)
                .unwrap();
        }
        for i in 0..10_000u64 {
            let mut b = seeds[rng.below(seeds.len() as u64) as usize].clone();
            // Make it the peer's stream type half the time so it reaches the session logic.
            if i % 2 == 0 {
                let t = if role == Role::Client {
                    b"output_stream_data"
                } else {
                    b"input_stream_data\x20"
                };
                b[4..4 + t.len()].copy_from_slice(t);
            }
            let j = rng.below(b.len() as u64) as usize;
            b[j] = rng.next() as u8;
            s.handle_incoming(&b, 1_700_000_000_000 + i);
            s.handle_timeout(1_700_000_000_000 + i);
            while s.poll_transmit().is_some() {}
            while s.poll_event().is_some() {}
        }
    }
}
