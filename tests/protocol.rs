//! Protocol core tests: spec test vectors (§12), payload shapes, property tests, hostile
//! input, the session state machine (client and agent roles driven against each other over
//! a seeded lossy link with a virtual clock), KMS, the debug JSON view, and a scan that keeps
//! `src/protocol` free of I/O, clocks and crate-internal paths.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests should fail loudly at the point of the broken assumption"
)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::{Value, json};
use ssmtui::protocol::crypto::{self, DataKey, SessionCipher};
use ssmtui::protocol::debug::{frame_to_json, json_to_frame, message_from_json, message_to_json};
use ssmtui::protocol::message::{
    ClientMessage, DecodeOptions, EMPTY_PAYLOAD_DIGEST, payload_digest,
};
use ssmtui::protocol::payload::{
    AcknowledgeContent, ActionParameters, ActionResult, AgentSessionStatePayload, AgentState,
    ChannelClosedPayload, EncChallengePayload, HandshakeCompletePayload, HandshakeRequestPayload,
    HandshakeResponsePayload, KmsEncryptionRequest, KmsEncryptionResponse, OpenDataChannelInput,
    ProcessedClientAction, RequestedClientAction, SessionTypeRequest, SizeData, decode_exit_code,
    encode_exit_code, to_go_json,
};
use ssmtui::protocol::session::{RttEstimator, channel_closed_frame, publication_frame};
use ssmtui::protocol::types::{
    ActionStatus, ActionType, Flag, MessageType, PayloadType, Role, SessionType,
    message_id_from_wire, message_id_to_wire,
};
use ssmtui::protocol::{ProtocolError, Session, SessionConfig, SessionEvent, SessionState};
use uuid::Uuid;

// =============================================================================================
// helpers

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Parses the spec's `0000  00 11 22 ...  |ascii|` dumps.
fn from_dump(dump: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in dump.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let body = line.split('|').next().unwrap();
        let mut parts = body.split_whitespace();
        let offset = usize::from_str_radix(parts.next().unwrap(), 16).unwrap();
        assert_eq!(offset, out.len(), "dump offsets are contiguous");
        for p in parts {
            out.push(u8::from_str_radix(p, 16).unwrap());
        }
    }
    out
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

fn msg(
    message_type: MessageType,
    created_date: u64,
    seq: i64,
    flags: u64,
    id: &str,
    payload_type: PayloadType,
    payload: &[u8],
) -> ClientMessage {
    ClientMessage {
        message_type,
        schema_version: 1,
        created_date,
        sequence_number: seq,
        flags,
        message_id: uuid(id),
        payload_type,
        payload: payload.to_vec(),
    }
}

const TV2_PAYLOAD: &str = r#"{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"3f2504e0-4f89-41d3-9a0c-0305e82c3301","AcknowledgedMessageSequenceNumber":0,"IsSequentialMessage":true}"#;

const TV2_DUMP: &str = r#"
0000  00 00 00 74 61 63 6b 6e 6f 77 6c 65 64 67 65 20  |...tacknowledge |
0010  20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20  |                |
0020  20 20 20 20 00 00 00 01 00 00 01 8b cf e5 68 00  |    ..........h.|
0030  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 03  |................|
0040  88 99 aa bb cc dd ee ff 00 11 22 33 44 55 66 77  |.........."3DUfw|
0050  43 21 eb 22 ef 34 f6 77 7a c5 be 0c 03 53 00 a5  |C!.".4.wz....S..|
0060  2f 4e ba 06 f5 f7 a3 3a 70 e0 b2 fd 2b e8 ef a2  |/N.....:p...+...|
0070  00 00 00 00 00 00 00 b0 7b 22 41 63 6b 6e 6f 77  |........{"Acknow|
0080  6c 65 64 67 65 64 4d 65 73 73 61 67 65 54 79 70  |ledgedMessageTyp|
0090  65 22 3a 22 6f 75 74 70 75 74 5f 73 74 72 65 61  |e":"output_strea|
00a0  6d 5f 64 61 74 61 22 2c 22 41 63 6b 6e 6f 77 6c  |m_data","Acknowl|
00b0  65 64 67 65 64 4d 65 73 73 61 67 65 49 64 22 3a  |edgedMessageId":|
00c0  22 33 66 32 35 30 34 65 30 2d 34 66 38 39 2d 34  |"3f2504e0-4f89-4|
00d0  31 64 33 2d 39 61 30 63 2d 30 33 30 35 65 38 32  |1d3-9a0c-0305e82|
00e0  63 33 33 30 31 22 2c 22 41 63 6b 6e 6f 77 6c 65  |c3301","Acknowle|
00f0  64 67 65 64 4d 65 73 73 61 67 65 53 65 71 75 65  |dgedMessageSeque|
0100  6e 63 65 4e 75 6d 62 65 72 22 3a 30 2c 22 49 73  |nceNumber":0,"Is|
0110  53 65 71 75 65 6e 74 69 61 6c 4d 65 73 73 61 67  |SequentialMessag|
0120  65 22 3a 74 72 75 65 7d                          |e":true}|
"#;

const TV3_DUMP: &str = r#"
0000  00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d  |...tinput_stream|
0010  5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20  |_data           |
0020  20 20 20 20 00 00 00 01 00 00 01 8b cf e5 68 7b  |    ..........h{|
0030  00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00  |................|
0040  8a bc de f0 12 34 56 78 a1 b2 c3 d4 e5 f6 47 89  |.....4Vx......G.|
0050  1d 88 7c e0 f8 67 2e 49 14 d9 00 0e 80 1c d7 4e  |..|..g.I.......N|
0060  cd 80 5d d9 36 6c 0b c4 2d c1 6a dc 01 97 dc 2f  |..].6l..-.j..../|
0070  00 00 00 01 00 00 00 03 6c 73 0d                 |........ls.|
"#;

const TV4_DUMP: &str = r#"
0000  00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d  |...tinput_stream|
0010  5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20  |_data           |
0020  20 20 20 20 00 00 00 01 00 00 01 8b cf e5 69 c8  |    ..........i.|
0030  00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 00  |................|
0040  87 06 05 04 03 02 01 00 0f 0e 0d 0c 0b 0a 49 08  |..............I.|
0050  ed f7 35 9c 89 07 7b 60 8a 6b 3e 8b 19 e6 3b bf  |..5...{`.k>...;.|
0060  c7 aa 72 49 89 a0 5e a3 71 a9 96 6a 6e 9d b7 cc  |..rI..^.q..jn...|
0070  00 00 00 03 00 00 00 16 7b 22 63 6f 6c 73 22 3a  |........{"cols":|
0080  31 32 30 2c 22 72 6f 77 73 22 3a 34 30 7d        |120,"rows":40}|
"#;

const TV5_DUMP: &str = r#"
0000  00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d  |...tinput_stream|
0010  5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20  |_data           |
0020  20 20 20 20 00 00 00 01 00 00 01 8b cf e5 6b 15  |    ..........k.|
0030  00 00 00 00 00 00 00 05 00 00 00 00 00 00 00 00  |................|
0040  9d ef 00 00 00 00 be ef c0 ff ee 00 12 34 4a bc  |.............4J.|
0050  43 3e bf 5b c0 3d ff a3 85 36 67 32 07 a2 12 81  |C>.[.=...6g2....|
0060  61 2c ef 5f aa 9b c7 a4 d5 b9 be 2f db 12 cf 1a  |a,._......./....|
0070  00 00 00 0a 00 00 00 04 00 00 00 02              |............|
"#;

fn tv2_message() -> ClientMessage {
    msg(
        MessageType::Acknowledge,
        1_700_000_000_000,
        0,
        3,
        "00112233-4455-6677-8899-aabbccddeeff",
        PayloadType::Null,
        TV2_PAYLOAD.as_bytes(),
    )
}

fn tv3_message() -> ClientMessage {
    msg(
        MessageType::InputStreamData,
        1_700_000_000_123,
        1,
        0,
        "a1b2c3d4-e5f6-4789-8abc-def012345678",
        PayloadType::Output,
        b"ls\r",
    )
}

fn tv4_message() -> ClientMessage {
    msg(
        MessageType::InputStreamData,
        1_700_000_000_456,
        2,
        0,
        "0f0e0d0c-0b0a-4908-8706-050403020100",
        PayloadType::Size,
        &SizeData {
            cols: 120,
            rows: 40,
        }
        .encode(),
    )
}

fn tv5_message() -> ClientMessage {
    msg(
        MessageType::InputStreamData,
        1_700_000_000_789,
        5,
        0,
        "c0ffee00-1234-4abc-9def-00000000beef",
        PayloadType::Flag,
        &Flag::TerminateSession.encode(),
    )
}

fn all_vectors() -> Vec<(ClientMessage, Vec<u8>)> {
    vec![
        (tv2_message(), from_dump(TV2_DUMP)),
        (tv3_message(), from_dump(TV3_DUMP)),
        (tv4_message(), from_dump(TV4_DUMP)),
        (tv5_message(), from_dump(TV5_DUMP)),
    ]
}

// =============================================================================================
// §12 test vectors

#[test]
fn tv1_message_id_wire_order() {
    for (text, wire) in [
        (
            "00112233-4455-6677-8899-aabbccddeeff",
            "8899aabbccddeeff0011223344556677",
        ),
        (
            "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
            "9a0c0305e82c33013f2504e04f8941d3",
        ),
    ] {
        let id = uuid(text);
        assert_eq!(message_id_to_wire(&id).to_vec(), unhex(wire));
        let back = message_id_from_wire(unhex(wire).try_into().unwrap());
        assert_eq!(back, id);
        assert_eq!(back.to_string(), text, "text form is normal, lower-case");
    }
}

#[test]
fn tv2_acknowledge_payload_is_go_json() {
    let ack = AcknowledgeContent {
        message_type: "output_stream_data".into(),
        message_id: "3f2504e0-4f89-41d3-9a0c-0305e82c3301".into(),
        sequence_number: 0,
        is_sequential_message: true,
    };
    let bytes = ack.encode();
    assert_eq!(bytes.len(), 176);
    assert_eq!(bytes, TV2_PAYLOAD.as_bytes());
    assert_eq!(AcknowledgeContent::decode(&bytes).unwrap(), ack);
    assert_eq!(
        payload_digest(&bytes).to_vec(),
        unhex("4321eb22ef34f6777ac5be0c035300a52f4eba06f5f7a33a70e0b2fd2be8efa2")
    );
}

#[test]
fn tv2_to_tv5_encode_and_decode_byte_exact() {
    let sizes = [296, 123, 142, 124];
    for ((m, wire), size) in all_vectors().into_iter().zip(sizes) {
        assert_eq!(wire.len(), size);
        assert_eq!(m.encode(), wire, "{}", m.message_type);
        assert_eq!(m.try_encode().unwrap(), wire);
        assert_eq!(m.encoded_len(), wire.len());
        let (decoded, used) = ClientMessage::decode(&wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(decoded, m);
        assert_eq!(ClientMessage::decode_exact(&wire).unwrap(), m);
    }
}

#[test]
fn tv5_flag_payload() {
    assert_eq!(Flag::TerminateSession.encode(), [0, 0, 0, 2]);
    assert_eq!(Flag::decode(&[0, 0, 0, 2]).unwrap(), Flag::TerminateSession);
    assert_eq!(Flag::decode(&[0, 0, 0, 1]).unwrap(), Flag::DisconnectToPort);
    assert_eq!(
        Flag::decode(&[0, 0, 0, 3]).unwrap(),
        Flag::ConnectToPortError
    );
    assert_eq!(Flag::decode(&[0, 0, 1, 0]).unwrap(), Flag::Unknown(256));
    assert!(
        Flag::decode(&[2]).is_err(),
        "a single byte is not a flag (G13)"
    );
    assert!(Flag::decode(&[0, 0, 0, 0, 2]).is_err());
}

#[test]
fn tv6_handshake_response_and_digests() {
    let response = HandshakeResponsePayload {
        client_version: "1.2.650.0".into(),
        processed_client_actions: vec![ProcessedClientAction {
            action_type: ActionType::SessionType,
            action_status: ActionStatus::Success,
            action_result: ActionResult::None,
            error: String::new(),
        }],
        errors: vec![],
    };
    let bytes = response.encode();
    let expected = r#"{"ClientVersion":"1.2.650.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#;
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
    assert_eq!(bytes.len(), 147);
    assert_eq!(
        payload_digest(&bytes).to_vec(),
        unhex("c15970f285b82fe29690a5c8f2ce9b2f4267eae1785947d095631a5cd98cfa40")
    );
    assert_eq!(HandshakeResponsePayload::decode(&bytes).unwrap(), response);
    assert_eq!(
        payload_digest(b"").to_vec(),
        unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(payload_digest(b""), EMPTY_PAYLOAD_DIGEST);
}

fn tv7_key() -> DataKey {
    let mut k = [0u8; 64];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    DataKey::from_bytes(k)
}

#[test]
fn tv7_aes_gcm_both_directions() {
    let key = tv7_key();
    let client = SessionCipher::new(&key, Role::Client, [0; 12]).unwrap();
    let agent = SessionCipher::new(&key, Role::Agent, [0; 12]).unwrap();

    let c2a = client
        .encrypt_with_nonce(
            unhex("000102030405060708090a0b").try_into().unwrap(),
            b"ls\r",
        )
        .unwrap();
    assert_eq!(
        c2a,
        unhex("000102030405060708090a0b302150796b6ce92de9e02938ee56f3d16b8741")
    );
    assert_eq!(agent.decrypt(&c2a).unwrap(), b"ls\r");
    assert_eq!(
        client.decrypt(&c2a),
        Err(ProtocolError::DecryptFailed),
        "wrong half"
    );

    let a2c = agent.encrypt_with_nonce([0xff; 12], b"$ ").unwrap();
    assert_eq!(
        a2c,
        unhex("ffffffffffffffffffffffff1ea11b8d3c26c87e1efdeb9d696d1593a05a")
    );
    assert_eq!(client.decrypt(&a2c).unwrap(), b"$ ");
    assert_eq!(agent.decrypt(&a2c), Err(ProtocolError::DecryptFailed));
}

#[test]
fn golden_fixture_files() {
    // Golden frames for the codec and for `ssmtui debug decode` tests elsewhere.
    let good: [(&[u8], ClientMessage); 4] = [
        (
            include_bytes!("fixtures/tv2_acknowledge.bin"),
            tv2_message(),
        ),
        (include_bytes!("fixtures/tv3_output_ls.bin"), tv3_message()),
        (include_bytes!("fixtures/tv4_size.bin"), tv4_message()),
        (
            include_bytes!("fixtures/tv5_flag_terminate.bin"),
            tv5_message(),
        ),
    ];
    for (bytes, m) in good {
        assert_eq!(m.encode(), bytes);
        assert_eq!(ClientMessage::decode_exact(bytes).unwrap(), m);
    }
    assert_eq!(
        ClientMessage::decode(include_bytes!("fixtures/hostile_tv3_bad_digest.bin")),
        Err(ProtocolError::DigestMismatch)
    );
    assert_eq!(
        ClientMessage::decode(include_bytes!("fixtures/hostile_tv3_truncated.bin")),
        Ok(None)
    );
    assert!(matches!(
        ClientMessage::decode(include_bytes!("fixtures/hostile_payload_length_max.bin")),
        Err(ProtocolError::PayloadTooLarge { .. })
    ));
    let closed = ClientMessage::decode_exact(include_bytes!(
        "fixtures/channel_closed_hl112_nul_padded.bin"
    ))
    .unwrap();
    assert_eq!(closed.message_type, MessageType::ChannelClosed);
    assert_eq!(closed.payload_type, PayloadType::Null);
    let mut c = Session::new(SessionConfig::client("user-0123", "i", 1));
    c.handle_incoming(
        include_bytes!("fixtures/channel_closed_hl112_nul_padded.bin"),
        T0,
    );
    assert_eq!(
        events(&mut c),
        vec![SessionEvent::ChannelClosed {
            output: "bye".into(),
            session_id: "user-0123".into()
        }]
    );
}

// "Decoding checks worth adding" (end of §12).

#[test]
fn nul_padded_message_type_decodes() {
    let mut wire = from_dump(TV2_DUMP);
    for b in &mut wire[4 + 11..36] {
        *b = 0;
    }
    let m = ClientMessage::decode_exact(&wire).unwrap();
    assert_eq!(m.message_type, MessageType::Acknowledge);
    // Leading NULs/whitespace too.
    let mut wire2 = from_dump(TV2_DUMP);
    let field: Vec<u8> = [&[0u8, 0, b' ', b'\t'][..], b"acknowledge", &[b' '; 17][..]].concat();
    wire2[4..36].copy_from_slice(&field);
    assert_eq!(
        ClientMessage::decode_exact(&wire2).unwrap().message_type,
        MessageType::Acknowledge
    );
}

#[test]
fn header_length_112_has_no_payload_type() {
    let payload = ChannelClosedPayload {
        message_id: "3f2504e0-4f89-41d3-9a0c-0305e82c3301".into(),
        created_date: "1700000000000".into(),
        destination_id: "i-0123456789abcdef0".into(),
        session_id: "user-0123".into(),
        message_type: "channel_closed".into(),
        schema_version: 1,
        output: "bye".into(),
    }
    .encode();
    let mut wire = Vec::new();
    wire.extend_from_slice(&112u32.to_be_bytes());
    let mut ty = [0u8; 32];
    ty[..14].copy_from_slice(b"channel_closed");
    wire.extend_from_slice(&ty);
    wire.extend_from_slice(&1u32.to_be_bytes());
    wire.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
    wire.extend_from_slice(&0u64.to_be_bytes());
    wire.extend_from_slice(&3u64.to_be_bytes());
    wire.extend_from_slice(&[7; 16]);
    wire.extend_from_slice(&payload_digest(&payload));
    wire.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    wire.extend_from_slice(&payload);
    let (m, used) = ClientMessage::decode(&wire).unwrap().unwrap();
    assert_eq!(used, wire.len());
    assert_eq!(m.message_type, MessageType::ChannelClosed);
    assert_eq!(m.payload_type, PayloadType::Null);
    assert_eq!(m.payload, payload);
    assert_eq!(
        ChannelClosedPayload::decode(&m.payload).unwrap().output,
        "bye"
    );
}

#[test]
fn flipped_payload_byte_fails_digest() {
    let mut wire = from_dump(TV3_DUMP);
    let last = wire.len() - 1;
    wire[last] ^= 0x01;
    assert_eq!(
        ClientMessage::decode(&wire),
        Err(ProtocolError::DigestMismatch)
    );
    // The lenient decoder still shows it, flagged.
    let d = ClientMessage::decode_exact_with(
        &wire,
        &DecodeOptions {
            validate: false,
            ..DecodeOptions::default()
        },
    )
    .unwrap();
    assert!(!d.digest_valid);
}

#[test]
fn truncated_frame_needs_more_bytes() {
    let wire = from_dump(TV3_DUMP);
    for cut in 0..wire.len() {
        assert_eq!(
            ClientMessage::decode(&wire[..cut]),
            Ok(None),
            "cut at {cut}"
        );
    }
    assert!(matches!(
        ClientMessage::decode_exact(&wire[..wire.len() - 1]),
        Err(ProtocolError::Truncated {
            needed: 123,
            available: 122
        })
    ));
}

#[test]
fn trailing_bytes_are_tolerated_and_reported() {
    let mut wire = from_dump(TV3_DUMP);
    wire.extend_from_slice(b"garbage");
    let (m, used) = ClientMessage::decode(&wire).unwrap().unwrap();
    assert_eq!(m, tv3_message());
    assert_eq!(used, 123);
}

#[test]
fn decoder_validation_rules() {
    // Zero CreatedDate.
    let mut m = tv3_message();
    m.created_date = 0;
    assert_eq!(
        ClientMessage::decode(&m.encode()),
        Err(ProtocolError::ZeroCreatedDate)
    );
    // ...but start/pause_publication skip every check.
    let mut p = m.clone();
    p.message_type = MessageType::PausePublication;
    let mut wire = p.encode();
    wire[80] ^= 0xff; // break the digest too
    assert!(ClientMessage::decode(&wire).unwrap().is_some());
    // Empty message type.
    let mut wire = tv3_message().encode();
    wire[4..36].fill(b' ');
    assert_eq!(
        ClientMessage::decode(&wire),
        Err(ProtocolError::EmptyMessageType)
    );
    // Empty payload with a wrong digest: the plugin only checks when PayloadLength != 0.
    let mut e = tv3_message();
    e.payload.clear();
    let mut wire = e.encode();
    wire[80..112].fill(0);
    assert!(ClientMessage::decode(&wire).unwrap().is_some());
    // Header length out of range.
    let mut wire = tv3_message().encode();
    wire[..4].copy_from_slice(&111u32.to_be_bytes());
    assert_eq!(
        ClientMessage::decode(&wire),
        Err(ProtocolError::BadHeaderLength(111))
    );
    wire[..4].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(
        ClientMessage::decode(&wire),
        Err(ProtocolError::BadHeaderLength(0))
    );
    wire[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(ClientMessage::decode(&wire).is_err());
}

#[test]
fn header_length_above_116_locates_payload_via_hl() {
    // HL 120: four extra header bytes before PayloadLength.
    let m = tv3_message();
    let wire = m.encode();
    let mut big = Vec::new();
    big.extend_from_slice(&120u32.to_be_bytes());
    big.extend_from_slice(&wire[4..116]);
    big.extend_from_slice(&[0xAA; 4]);
    big.extend_from_slice(&wire[116..]);
    let (d, used) = ClientMessage::decode(&big).unwrap().unwrap();
    assert_eq!(used, big.len());
    assert_eq!(d, m);
}

#[test]
fn oversized_payload_is_an_error_not_a_wait() {
    let mut wire = tv3_message().encode();
    wire[116..120].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        ClientMessage::decode(&wire[..120]),
        Err(ProtocolError::PayloadTooLarge { .. })
    ));
    let opts = DecodeOptions {
        max_payload_len: 2,
        validate: true,
    };
    assert!(matches!(
        ClientMessage::decode_with(&tv3_message().encode(), &opts),
        Err(ProtocolError::PayloadTooLarge { len: 3, max: 2 })
    ));
    // A declared 1 MiB payload with 120 bytes of input: just "need more", no allocation.
    wire[116..120].copy_from_slice(&(1u32 << 20).to_be_bytes());
    assert_eq!(ClientMessage::decode(&wire[..120]), Ok(None));
}

#[test]
fn unknown_types_are_representable() {
    let mut m = tv3_message();
    m.message_type = MessageType::Unknown("interactive_shell".into());
    m.payload_type = PayloadType::Unknown(99);
    let d = ClientMessage::decode_exact(&m.encode()).unwrap();
    assert_eq!(d, m);
    // A 32-byte type fills the field exactly; a longer one is refused by try_encode.
    m.message_type = MessageType::Unknown("x".repeat(32));
    assert_eq!(ClientMessage::decode_exact(&m.encode()).unwrap(), m);
    m.message_type = MessageType::Unknown("x".repeat(33));
    assert!(matches!(
        m.try_encode(),
        Err(ProtocolError::MessageTypeTooLong(_))
    ));
}

// =============================================================================================
// payload shapes

#[test]
fn handshake_request_shapes() {
    let text = r#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"22","type":"LocalPortForwarding"}}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"arn:aws:kms:us-east-1:1:key/k","Challenge":"AAECAwQFBgcICQoLDA0ODw=="}}]}"#;
    let req = HandshakeRequestPayload::decode(text.as_bytes()).unwrap();
    assert_eq!(req.agent_version, "3.3.987.0");
    let st = req.session_type().unwrap();
    assert_eq!(st.session_type, SessionType::Port);
    assert_eq!(st.properties["portNumber"], "22");
    let kms = req.kms_encryption().unwrap();
    assert_eq!(kms.kms_key_id, "arn:aws:kms:us-east-1:1:key/k");
    assert_eq!(kms.challenge.as_deref(), Some("AAECAwQFBgcICQoLDA0ODw=="));
    assert_eq!(String::from_utf8(req.encode()).unwrap(), text);

    // Shell: Properties null, old agent without Challenge, an unknown action, extra keys.
    let text = r#"{"AgentVersion":"3.0.0.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"k"}},{"ActionType":"Future","ActionParameters":{"x":1}}],"Extra":true}"#;
    let req = HandshakeRequestPayload::decode(text.as_bytes()).unwrap();
    assert_eq!(req.requested_client_actions.len(), 3);
    assert_eq!(req.kms_encryption().unwrap().challenge, None);
    assert_eq!(
        req.requested_client_actions[2].action_type,
        ActionType::Unknown("Future".into())
    );
    assert!(matches!(
        req.requested_client_actions[2].action_parameters,
        ActionParameters::Other(_)
    ));
    let re = String::from_utf8(req.encode()).unwrap();
    assert!(re.starts_with(r#"{"AgentVersion":"3.0.0.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"k"}}"#));
}

#[test]
fn handshake_response_with_kms_shape() {
    let response = HandshakeResponsePayload {
        client_version: "1.2.650.0".into(),
        processed_client_actions: vec![
            ProcessedClientAction {
                action_type: ActionType::SessionType,
                action_status: ActionStatus::Success,
                action_result: ActionResult::None,
                error: String::new(),
            },
            ProcessedClientAction {
                action_type: ActionType::KmsEncryption,
                action_status: ActionStatus::Success,
                action_result: ActionResult::Kms(KmsEncryptionResponse {
                    kms_cipher_text_key: Some(vec![1, 2, 3, 250]),
                    kms_cipher_text_hash: None,
                    challenge_acknowledgement: false,
                }),
                error: String::new(),
            },
        ],
        errors: vec![],
    };
    let text = String::from_utf8(response.encode()).unwrap();
    assert_eq!(
        text,
        r#"{"ClientVersion":"1.2.650.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""},{"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":{"KMSCipherTextKey":"AQID+g==","KMSCipherTextHash":null},"Error":""}],"Errors":null}"#
    );
    assert_eq!(
        HandshakeResponsePayload::decode(text.as_bytes()).unwrap(),
        response
    );
    // Plugin quirk: unknown action → ActionStatus 0, ActionResult 3.
    let quirk = r#"{"ClientVersion":"1","ProcessedClientActions":[{"ActionType":"X","ActionStatus":0,"ActionResult":3,"Error":"nope"}],"Errors":["a"]}"#;
    let r = HandshakeResponsePayload::decode(quirk.as_bytes()).unwrap();
    assert_eq!(
        r.processed_client_actions[0].action_status,
        ActionStatus::Unknown(0)
    );
    assert_eq!(
        r.processed_client_actions[0].action_result,
        ActionResult::Other(json!(3))
    );
    assert_eq!(r.errors, vec!["a".to_string()]);
    assert_eq!(String::from_utf8(r.encode()).unwrap(), quirk);
}

#[test]
fn handshake_complete_challenge_state_shapes() {
    let c = HandshakeCompletePayload {
        handshake_time_to_complete: 123_456_789,
        customer_message: "This session is encrypted using AWS KMS.".into(),
    };
    assert_eq!(
        String::from_utf8(c.encode()).unwrap(),
        r#"{"HandshakeTimeToComplete":123456789,"CustomerMessage":"This session is encrypted using AWS KMS."}"#
    );
    let e = EncChallengePayload {
        challenge: vec![0xfb; 4],
    };
    assert_eq!(
        String::from_utf8(e.encode()).unwrap(),
        r#"{"Challenge":"+/v7+w=="}"#
    );
    assert!(EncChallengePayload::decode(br#"{"Challenge":"not base64!"}"#).is_err());
    let s = AgentSessionStatePayload {
        schema_version: 1,
        session_state: AgentState::Terminating,
        session_id: "s-1".into(),
    };
    assert_eq!(
        String::from_utf8(s.encode()).unwrap(),
        r#"{"SchemaVersion":1,"SessionState":"Terminating","SessionId":"s-1"}"#
    );
    let size = SizeData {
        cols: 300,
        rows: 100,
    };
    assert_eq!(size.encode(), br#"{"cols":300,"rows":100}"#);
    assert_eq!(
        SizeData::decode(br#"{"rows":1,"cols":2,"x":null}"#).unwrap(),
        SizeData { cols: 2, rows: 1 }
    );
    assert!(SizeData::decode(br#"{"cols":-1,"rows":1}"#).is_err());
}

#[test]
fn channel_closed_created_date_is_a_string() {
    let text = r#"{"MessageId":"m","CreatedDate":"1700000000000","DestinationId":"i-1","SessionId":"s","MessageType":"channel_closed","SchemaVersion":1,"Output":"timed out"}"#;
    let c = ChannelClosedPayload::decode(text.as_bytes()).unwrap();
    assert_eq!(c.created_date, "1700000000000");
    assert_eq!(String::from_utf8(c.encode()).unwrap(), text);
    // Lenient: a number, missing keys.
    let c = ChannelClosedPayload::decode(br#"{"CreatedDate":17,"SessionId":"s"}"#).unwrap();
    assert_eq!(c.created_date, "17");
    assert_eq!(c.output, "");
}

#[test]
fn exit_code_text() {
    assert_eq!(encode_exit_code(0), b"EXIT_CODE: 0");
    assert_eq!(encode_exit_code(-1), b"EXIT_CODE: -1");
    assert_eq!(decode_exit_code(b"EXIT_CODE: 127").unwrap(), 127);
    assert_eq!(decode_exit_code(b" EXIT_CODE:3\n").unwrap(), 3);
    assert!(decode_exit_code(b"EXIT: 3").is_err());
    assert!(decode_exit_code(b"EXIT_CODE: x").is_err());
    assert!(decode_exit_code(&[0xff]).is_err());
}

#[test]
fn go_json_escaping() {
    let c = HandshakeCompletePayload {
        handshake_time_to_complete: 0,
        customer_message: "<a&b>\u{2028}\"\n".into(),
    };
    assert_eq!(
        String::from_utf8(c.encode()).unwrap(),
        r#"{"HandshakeTimeToComplete":0,"CustomerMessage":"\u003ca\u0026b\u003e\u2028\"\n"}"#
    );
    assert_eq!(HandshakeCompletePayload::decode(&c.encode()).unwrap(), c);
}

#[test]
fn open_data_channel_input_client_and_agent_forms() {
    let input = OpenDataChannelInput::client(
        "9f7a0b1c-0000-4000-8000-000000000001",
        "SECRET-TOKEN",
        "11111111-2222-4333-8444-555555555555",
        "1.2.650.0",
    );
    let text = input.to_json_string();
    assert_eq!(
        text,
        r#"{"MessageSchemaVersion":"1.0","RequestId":"9f7a0b1c-0000-4000-8000-000000000001","TokenValue":"SECRET-TOKEN","ClientId":"11111111-2222-4333-8444-555555555555","ClientVersion":"1.2.650.0"}"#
    );
    assert!(!format!("{input:?}").contains("SECRET"));
    assert_eq!(OpenDataChannelInput::parse(text.as_bytes()).unwrap(), input);

    let agent = r#"{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t","ClientId":"c","ClientInstanceId":"i-0abc"}"#;
    let parsed = OpenDataChannelInput::parse(agent.as_bytes()).unwrap();
    assert_eq!(parsed.client_instance_id.as_deref(), Some("i-0abc"));
    assert_eq!(parsed.client_version, None);
    assert_eq!(parsed.to_json_string(), agent);

    // Through a session: fresh RequestId each time, same ClientId, token never kept.
    let mut s = Session::new(SessionConfig::client("sess", "i-0abc", 7));
    let a: Value = serde_json::from_str(&s.open_data_channel_text("TOKEN-A")).unwrap();
    let b: Value = serde_json::from_str(&s.open_data_channel_text("TOKEN-B")).unwrap();
    assert_ne!(a["RequestId"], b["RequestId"]);
    assert_eq!(a["ClientId"], b["ClientId"]);
    assert_eq!(a["ClientVersion"], "1.2.650.0");
    assert_eq!(b["TokenValue"], "TOKEN-B");
    assert!(Uuid::parse_str(a["RequestId"].as_str().unwrap()).is_ok());
    assert!(!format!("{s:?}").contains("TOKEN"));
}

// =============================================================================================
// crypto

#[test]
fn data_key_is_redacted_and_checked() {
    let key = tv7_key();
    assert_eq!(format!("{key:?}"), "DataKey(<redacted>)");
    assert_eq!(
        DataKey::from_slice(&[0; 63]).unwrap_err(),
        ProtocolError::BadKeyLength(63)
    );
    let c = SessionCipher::new(&key, Role::Client, [0; 12]).unwrap();
    assert!(!format!("{c:?}").contains('0'));
}

#[test]
fn counter_nonces_are_unique_and_roundtrip() {
    let key = tv7_key();
    let mut client = SessionCipher::new(&key, Role::Client, [0xff; 12]).unwrap();
    let agent = SessionCipher::new(&key, Role::Agent, [0; 12]).unwrap();
    let mut nonces = std::collections::HashSet::new();
    for i in 0..1000u32 {
        let ct = client.encrypt(&i.to_be_bytes()).unwrap();
        assert_eq!(ct.len(), 4 + crypto::OVERHEAD);
        assert!(nonces.insert(ct[..12].to_vec()), "nonce reused");
        assert_eq!(agent.decrypt(&ct).unwrap(), i.to_be_bytes());
    }
    // The seed 0xff.. wrapped to 0 then counted up.
    assert!(nonces.contains(&vec![0u8; 12]));
    assert_eq!(
        agent.decrypt(&[0; 27]),
        Err(ProtocolError::CiphertextTooShort(27))
    );
}

#[test]
fn challenge_exchange_both_roles() {
    let key = tv7_key();
    let mut agent = SessionCipher::new(&key, Role::Agent, [1; 12]).unwrap();
    let mut client = SessionCipher::new(&key, Role::Client, [2; 12]).unwrap();
    let random = [0x5a; 64];
    let req = crypto::make_challenge(&mut agent, &random).unwrap();
    assert_eq!(req.challenge.len(), 92, "base64 decodes to 92 bytes");
    let resp = crypto::answer_challenge(&mut client, &req).unwrap();
    crypto::verify_challenge(&agent, &random, &resp).unwrap();
    assert_eq!(
        crypto::verify_challenge(&agent, &[0; 64], &resp),
        Err(ProtocolError::ChallengeMismatch)
    );
    // A client with another key cannot answer.
    let other = DataKey::from_bytes([9; 64]);
    let mut wrong = SessionCipher::new(&other, Role::Client, [0; 12]).unwrap();
    assert_eq!(
        crypto::answer_challenge(&mut wrong, &req),
        Err(ProtocolError::DecryptFailed)
    );
}

// =============================================================================================
// property tests and hostile input

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

/// Tiny deterministic PRNG for the hostile-input loops and the link simulation.
#[derive(Clone)]
struct TestRng(u64);

impl TestRng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
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

// =============================================================================================
// session: focused behaviours

const T0: u64 = 1_700_000_000_000;

fn decode_all(frames: &[Vec<u8>]) -> Vec<ClientMessage> {
    frames
        .iter()
        .map(|f| ClientMessage::decode_exact(f).unwrap())
        .collect()
}

fn transmits(s: &mut Session) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| s.poll_transmit().map(|f| f.to_vec())).collect()
}

fn events(s: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
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
        let ack = ClientMessage {
            message_type: MessageType::Acknowledge,
            schema_version: 1,
            created_date: T0,
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
        };
        c.handle_incoming(&ack.encode(), T0 + 10);
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

// =============================================================================================
// session: client and agent over a lossy link

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Dir {
    ToAgent,
    ToClient,
}

#[derive(Clone, Copy)]
struct LinkConfig {
    drop_per_mille: u64,
    dup_per_mille: u64,
    min_delay: u64,
    max_delay: u64,
}

struct Link {
    cfg: LinkConfig,
    rng: TestRng,
    order: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Dir)>>,
    frames: std::collections::HashMap<u64, Vec<u8>>,
    dropped: u64,
    blackout_until: u64,
}

impl Link {
    fn new(cfg: LinkConfig, seed: u64) -> Self {
        Self {
            cfg,
            rng: TestRng(seed),
            order: 0,
            queue: BinaryHeap::new(),
            frames: Default::default(),
            dropped: 0,
            blackout_until: 0,
        }
    }

    fn push(&mut self, dir: Dir, at: u64, frame: Vec<u8>) {
        self.order += 1;
        self.frames.insert(self.order, frame);
        self.queue.push(Reverse((at, self.order, dir)));
    }

    fn send(&mut self, dir: Dir, now: u64, frame: Vec<u8>) {
        if now < self.blackout_until || self.rng.chance(self.cfg.drop_per_mille) {
            self.dropped += 1;
            return;
        }
        let span = self.cfg.max_delay - self.cfg.min_delay + 1;
        if self.rng.chance(self.cfg.dup_per_mille) {
            let d = self.cfg.min_delay + self.rng.below(span);
            self.push(dir, now + d, frame.clone());
        }
        let d = self.cfg.min_delay + self.rng.below(span);
        self.push(dir, now + d, frame);
    }

    fn next_time(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    fn pop_due(&mut self, now: u64) -> Option<(Dir, Vec<u8>)> {
        match self.queue.peek() {
            Some(Reverse((t, _, _))) if *t <= now => {
                let Reverse((_, order, dir)) = self.queue.pop().unwrap();
                Some((dir, self.frames.remove(&order).unwrap()))
            }
            _ => None,
        }
    }
}

/// Period of the test data pattern: prime, so message boundaries (1024) never line up with it
/// and a lost, duplicated or reordered chunk is always detected.
const PATTERN_PERIOD: usize = 1_048_573;

fn pattern_table() -> &'static [u8] {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rng = TestRng(0xdada);
        (0..PATTERN_PERIOD).map(|_| rng.next() as u8).collect()
    })
}

/// Bytes `start..start+len` of the stream named by `seed`.
fn pattern(seed: u64, start: u64, len: usize) -> Vec<u8> {
    let table = pattern_table();
    let mut out = Vec::with_capacity(len);
    let mut pos = ((start + seed * 7919) % PATTERN_PERIOD as u64) as usize;
    while out.len() < len {
        let n = (len - out.len()).min(PATTERN_PERIOD - pos);
        out.extend_from_slice(&table[pos..pos + n]);
        pos = (pos + n) % PATTERN_PERIOD;
    }
    out
}

/// One direction of application data: a deterministic stream and its verification.
struct Stream {
    seed: u64,
    total: u64,
    sent: u64,
    received: u64,
    blocked_sends: u64,
    writable_events: u64,
}

impl Stream {
    fn new(seed: u64, total: u64) -> Self {
        Self {
            seed,
            total,
            sent: 0,
            received: 0,
            blocked_sends: 0,
            writable_events: 0,
        }
    }

    fn check(&mut self, data: &[u8]) {
        assert!(
            self.received + data.len() as u64 <= self.total,
            "more data than sent"
        );
        assert_eq!(
            data,
            pattern(self.seed, self.received, data.len()).as_slice(),
            "corrupt or reordered data at offset {}",
            self.received
        );
        self.received += data.len() as u64;
    }

    fn done(&self) -> bool {
        self.received == self.total
    }
}

struct Scenario {
    session_type: SessionType,
    kms: bool,
    bytes: u64,
    link: LinkConfig,
    seed: u64,
    client_outgoing_cap: usize,
    agent_outgoing_cap: usize,
    /// Client not ready to receive until this many ms after Ready (basic port mode).
    client_ready_delay: Option<u64>,
    /// (start, end): client stops polling events in this window (slow consumer).
    client_consumer_stall: Option<(u64, u64)>,
    /// (start, length): pause_publication to the client, then start_publication.
    pause_client: Option<(u64, u64)>,
    /// (start, length): the client's websocket drops everything, then reconnects.
    client_blackout: Option<(u64, u64)>,
}

impl Scenario {
    fn new(session_type: SessionType, kms: bool, bytes: u64, seed: u64) -> Self {
        Self {
            session_type,
            kms,
            bytes,
            link: LinkConfig {
                drop_per_mille: 20,
                dup_per_mille: 20,
                min_delay: 1,
                max_delay: 40,
            },
            seed,
            client_outgoing_cap: 256,
            agent_outgoing_cap: 256,
            client_ready_delay: None,
            client_consumer_stall: None,
            pause_client: None,
            client_blackout: None,
        }
    }
}

#[derive(Debug, Default)]
struct Outcome {
    steps: u64,
    virtual_ms: u64,
    client_stats: Option<ssmtui::protocol::SessionStats>,
    agent_stats: Option<ssmtui::protocol::SessionStats>,
    dropped: u64,
}

const KMS_KEY: [u8; 64] = {
    let mut k = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        k[i] = (i as u8).wrapping_mul(37).wrapping_add(11);
        i += 1;
    }
    k
};

fn run_pair(sc: &Scenario) -> Outcome {
    const MAX_STEPS: u64 = 3_000_000;
    let mut ccfg = SessionConfig::client("sess-1", "i-0123", sc.seed);
    ccfg.max_outgoing_messages = sc.client_outgoing_cap;
    ccfg.max_pending_bytes = 8 * 1024;
    let mut acfg = SessionConfig::agent("sess-1", "i-0123", sc.seed ^ 0xabc);
    acfg.max_outgoing_messages = sc.agent_outgoing_cap;
    acfg.max_pending_bytes = 8 * 1024;
    let mut client = Session::new(ccfg);
    let mut agent = Session::new(acfg);
    let mut link = Link::new(sc.link, sc.seed ^ 0x5eed);
    let mut now = T0;

    let props = if sc.session_type == SessionType::Port {
        json!({"portNumber": "5432", "type": "LocalPortForwarding"})
    } else {
        Value::Null
    };
    agent
        .begin_handshake(
            sc.session_type.clone(),
            props,
            sc.kms.then(|| "arn:aws:kms:eu-west-1:1:key/x".to_string()),
            "3.3.987.0",
            now,
        )
        .unwrap();

    let mut up = Stream::new(sc.seed ^ 1, sc.bytes); // client → agent
    let mut down = Stream::new(sc.seed ^ 2, sc.bytes); // agent → client
    let mut client_ready_at: Option<u64> = None;
    let mut agent_ready = false;
    let mut closed_sent = false;
    let mut client_closed = false;
    let mut agent_closed = false;
    let mut paused_done = sc.pause_client.is_none();
    let mut resumed_done = sc.pause_client.is_none();
    let mut blackout_started = sc.client_blackout.is_none();
    let mut reconnected = sc.client_blackout.is_none();
    if sc.client_ready_delay.is_some() {
        client.set_receive_ready(false);
    }
    let mut receive_ready_set = sc.client_ready_delay.is_none();
    let mut steps = 0;

    loop {
        steps += 1;
        assert!(
            steps < MAX_STEPS,
            "not converging: up {} down {}",
            up.received,
            down.received
        );

        // Scheduled disturbances.
        if let Some((start, len)) = sc.pause_client {
            if !paused_done && now >= T0 + start {
                paused_done = true;
                client.handle_incoming(&publication_frame(true, now, Uuid::from_u128(1)), now);
            }
            if paused_done && !resumed_done && now >= T0 + start + len {
                resumed_done = true;
                client.handle_incoming(&publication_frame(false, now, Uuid::from_u128(2)), now);
            }
        }
        if let Some((start, len)) = sc.client_blackout {
            if !blackout_started && now >= T0 + start {
                blackout_started = true;
                link.blackout_until = now + len;
            }
            if blackout_started && !reconnected && now >= link.blackout_until {
                reconnected = true;
                client.handle_reconnected(now);
            }
        }
        if !receive_ready_set
            && let (Some(at), Some(delay)) = (client_ready_at, sc.client_ready_delay)
            && now >= at + delay
        {
            receive_ready_set = true;
            client.set_receive_ready(true);
        }

        // Applications write as much as the sessions take.
        while up.sent < up.total && client.send_capacity() > 0 {
            let n = ((up.total - up.sent) as usize).min(client.send_capacity() + 1024);
            let taken = client.send_input(&pattern(up.seed, up.sent, n), now);
            up.sent += taken as u64;
            if taken < n {
                up.blocked_sends += 1;
                break;
            }
        }
        if agent_ready {
            while down.sent < down.total && agent.send_capacity() > 0 {
                let n = ((down.total - down.sent) as usize).min(agent.send_capacity() + 1024);
                let taken = agent.send_output(&pattern(down.seed, down.sent, n), now);
                down.sent += taken as u64;
                if taken < n {
                    down.blocked_sends += 1;
                    break;
                }
            }
        }
        assert!(client.outgoing_len() <= sc.client_outgoing_cap);
        assert!(agent.outgoing_len() <= sc.agent_outgoing_cap);

        // Events.
        let stalled = sc
            .client_consumer_stall
            .is_some_and(|(a, b)| now >= T0 + a && now < T0 + b);
        while !stalled && let Some(ev) = client.poll_event() {
            match ev {
                SessionEvent::Output(b) => down.check(&b),
                SessionEvent::Writable => up.writable_events += 1,
                SessionEvent::KmsDataKeyRequested {
                    encryption_context, ..
                } => {
                    assert_eq!(encryption_context["aws:ssm:TargetId"], "i-0123");
                    client
                        .provide_data_key(&KMS_KEY, b"ciphertext-blob".to_vec(), now)
                        .unwrap();
                }
                SessionEvent::Ready {
                    session_type,
                    encrypted,
                    ..
                } => {
                    assert_eq!(encrypted, sc.kms);
                    // Without a handshake the type is inferred as Standard_Stream (G9).
                    let announced = sc.kms || sc.session_type.handshake_without_kms();
                    let expected = if announced {
                        sc.session_type.clone()
                    } else {
                        SessionType::StandardStream
                    };
                    assert_eq!(session_type, expected);
                    client_ready_at = Some(now);
                }
                SessionEvent::ChannelClosed { .. } => client_closed = true,
                SessionEvent::HandshakeRequested { .. }
                | SessionEvent::Paused
                | SessionEvent::Resumed => {}
                other => panic!("client event {other:?}"),
            }
        }
        while let Some(ev) = agent.poll_event() {
            match ev {
                SessionEvent::Input(b) => up.check(&b),
                SessionEvent::Writable => down.writable_events += 1,
                SessionEvent::Ready { encrypted, .. } => {
                    assert_eq!(encrypted, sc.kms);
                    agent_ready = true;
                }
                SessionEvent::KmsDecryptRequested {
                    ciphertext_blob, ..
                } => {
                    assert_eq!(ciphertext_blob, b"ciphertext-blob");
                    agent.provide_data_key(&KMS_KEY, vec![], now).unwrap();
                }
                SessionEvent::Closed => agent_closed = true,
                SessionEvent::HandshakeResponse { .. } => {}
                other => panic!("agent event {other:?}"),
            }
        }

        // Once everything arrived, the agent closes; the "service" then tells the client.
        if up.done() && down.done() && agent_ready && !closed_sent && agent.is_flushed() {
            agent.close(now).unwrap();
            closed_sent = true;
        }

        // Transmit.
        while let Some(f) = client.poll_transmit() {
            link.send(Dir::ToAgent, now, f.to_vec());
        }
        while let Some(f) = agent.poll_transmit() {
            let m = ClientMessage::decode_exact(&f).unwrap();
            if m.message_type == MessageType::AgentSessionState {
                // Goes to the service, which closes the channel towards the client (reliably).
                link.push(
                    Dir::ToClient,
                    now + 5,
                    channel_closed_frame("sess-1", "i-0123", "", now, Uuid::from_u128(3)),
                );
                continue;
            }
            link.send(Dir::ToClient, now, f.to_vec());
        }

        if client_closed && agent_closed {
            break;
        }

        // The applications can write more right away (e.g. the agent just became ready).
        if (up.sent < up.total && client.send_capacity() > 0)
            || (agent_ready && down.sent < down.total && agent.send_capacity() > 0)
        {
            continue;
        }

        // Advance the virtual clock to the next thing that happens.
        let mut next = [
            link.next_time(),
            client.poll_timeout(),
            agent.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some((a, b)) = sc.client_consumer_stall {
            for t in [T0 + a, T0 + b] {
                if t > now {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
        }
        if let (Some(at), Some(delay), false) =
            (client_ready_at, sc.client_ready_delay, receive_ready_set)
        {
            next = Some(next.map_or(at + delay, |n| n.min(at + delay)));
        }
        for (start, len) in [sc.pause_client, sc.client_blackout].into_iter().flatten() {
            for t in [T0 + start, T0 + start + len] {
                if t > now {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
        }
        let Some(next) = next else {
            panic!(
                "idle before completion: up {}/{} down {}/{}",
                up.received, up.total, down.received, down.total
            );
        };
        now = now.max(next);
        while let Some((dir, f)) = link.pop_due(now) {
            match dir {
                Dir::ToAgent => agent.handle_incoming(&f, now),
                Dir::ToClient => client.handle_incoming(&f, now),
            }
        }
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
        if agent.poll_timeout().is_some_and(|t| t <= now) {
            agent.handle_timeout(now);
        }
    }

    assert!(up.done() && down.done());
    assert_eq!(client.state(), SessionState::Closed);
    assert_eq!(agent.state(), SessionState::Closed);
    // Retransmission stopped: nothing unacknowledged, no timers, nothing more to send.
    assert!(agent.is_flushed());
    assert_eq!(agent.poll_timeout(), None);
    assert_eq!(client.poll_timeout(), None);
    assert!(agent.poll_transmit().is_none());
    if sc.link.drop_per_mille > 0 || sc.client_blackout.is_some() {
        assert!(
            client.stats().resends + agent.stats().resends > 0,
            "losses must have caused resends"
        );
    }
    if sc.bytes >= 1 << 20 {
        assert!(
            up.blocked_sends > 0 && up.writable_events > 0,
            "client back-pressure seen"
        );
        assert!(
            down.blocked_sends > 0 && down.writable_events > 0,
            "agent back-pressure seen"
        );
    }
    Outcome {
        steps,
        virtual_ms: now - T0,
        client_stats: Some(client.stats()),
        agent_stats: Some(agent.stats()),
        dropped: link.dropped,
    }
}

fn check_efficiency(o: &Outcome, bytes: u64) {
    let c = o.client_stats.unwrap();
    let a = o.agent_stats.unwrap();
    let data_msgs = bytes.div_ceil(1024);
    // Resends are caused by losses (and by link delay spikes above the RTO), not by a timer
    // that fires regardless: they stay well below the number of messages.
    assert!(
        c.resends < data_msgs / 4 + 100 && a.resends < data_msgs / 4 + 100,
        "too many resends: {o:?}"
    );
    assert!(c.messages_sent >= data_msgs && a.messages_sent >= data_msgs);
    eprintln!("{o:?}");
}

#[test]
fn lossy_link_16mib_each_way_shell() {
    let bytes = 16 << 20;
    let o = run_pair(&Scenario::new(
        SessionType::StandardStream,
        false,
        bytes,
        11,
    ));
    check_efficiency(&o, bytes);
}

#[test]
fn lossy_link_kms_shell() {
    let bytes = 4 << 20;
    let mut sc = Scenario::new(SessionType::StandardStream, true, bytes, 12);
    sc.pause_client = Some((3000, 1500));
    let o = run_pair(&sc);
    check_efficiency(&o, bytes);
}

#[test]
fn lossy_link_port_session() {
    let bytes = 4 << 20;
    let mut sc = Scenario::new(SessionType::Port, false, bytes, 13);
    sc.client_ready_delay = Some(700);
    sc.client_blackout = Some((4000, 800));
    let o = run_pair(&sc);
    check_efficiency(&o, bytes);
}

#[test]
fn lossy_link_slow_consumer_and_heavy_loss() {
    let bytes = 1 << 20;
    let mut sc = Scenario::new(SessionType::NonInteractiveCommands, true, bytes, 14);
    sc.link = LinkConfig {
        drop_per_mille: 150,
        dup_per_mille: 100,
        min_delay: 0,
        max_delay: 200,
    };
    sc.client_outgoing_cap = 16;
    sc.agent_outgoing_cap = 16;
    sc.client_consumer_stall = Some((500, 3000));
    let o = run_pair(&sc);
    assert!(o.dropped > 100);
    assert!(o.steps > 0 && o.virtual_ms > 2500);
}

#[test]
fn lossless_link_needs_no_resends() {
    let bytes = 2 << 20;
    let mut sc = Scenario::new(SessionType::Port, false, bytes, 15);
    sc.link = LinkConfig {
        drop_per_mille: 0,
        dup_per_mille: 0,
        min_delay: 5,
        max_delay: 5,
    };
    let o = run_pair(&sc);
    let c = o.client_stats.unwrap();
    let a = o.agent_stats.unwrap();
    assert_eq!(c.resends + a.resends, 0, "{o:?}");
    assert_eq!(c.duplicates + a.duplicates, 0);
    assert_eq!(
        c.messages_sent,
        (bytes / 1024) + 1,
        "data + HandshakeResponse"
    );
}

// =============================================================================================
// debug JSON view

#[test]
fn debug_json_of_vectors() {
    let v = message_to_json(&tv3_message());
    assert_eq!(v["message_type"], "input_stream_data");
    assert_eq!(v["payload_type"], "Output");
    assert_eq!(v["payload_text"], "ls\r");
    assert_eq!(v["message_id"], "a1b2c3d4-e5f6-4789-8abc-def012345678");
    assert_eq!(
        v["payload_digest"],
        "1d887ce0f8672e4914d9000e801cd74ecd805dd9366c0bc42dc16adc0197dc2f"
    );
    let v2 = message_to_json(&tv2_message());
    assert_eq!(v2["payload"]["AcknowledgedMessageSequenceNumber"], 0);
    let v4 = message_to_json(&tv4_message());
    assert_eq!(v4["payload"], json!({"cols": 120, "rows": 40}));
    let v5 = message_to_json(&tv5_message());
    assert_eq!(v5["payload"], json!({"flag": "TerminateSession"}));
    for (m, wire) in all_vectors() {
        let v = message_to_json(&m);
        assert_eq!(json_to_frame(&v).unwrap(), wire);
        let f = frame_to_json(&wire, 1 << 20).unwrap();
        assert_eq!(f["header_length"], 116);
        assert_eq!(f["digest_valid"], true);
        assert_eq!(
            json_to_frame(&f).unwrap(),
            wire,
            "frame view re-encodes too"
        );
    }
}

#[test]
fn debug_json_hand_written_and_errors() {
    let v = json!({
        "message_type": "input_stream_data",
        "created_date": 1_700_000_000_456u64,
        "sequence_number": 2,
        "message_id": "0f0e0d0c-0b0a-4908-8706-050403020100",
        "payload_type": "Size",
        "payload": {"rows": 40, "cols": 120}
    });
    assert_eq!(json_to_frame(&v).unwrap(), from_dump(TV4_DUMP));
    let hs = json!({
        "message_type": "input_stream_data", "created_date": 5, "payload_type": 6,
        "payload": {"ClientVersion":"1.2.650.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}]}
    });
    let m = message_from_json(&hs).unwrap();
    assert_eq!(
        payload_digest(&m.payload).to_vec(),
        unhex("c15970f285b82fe29690a5c8f2ce9b2f4267eae1785947d095631a5cd98cfa40")
    );
    let hex = json!({"message_type": "x", "payload_hex": "00 01 ff"});
    assert_eq!(message_from_json(&hex).unwrap().payload, vec![0, 1, 255]);
    for bad in [
        json!([]),
        json!({}),
        json!({"message_type": "x".repeat(33)}),
        json!({"message_type": "x", "payload_text": "a", "payload_base64": "YQ=="}),
        json!({"message_type": "x", "payload_type": "Nope"}),
        json!({"message_type": "x", "message_id": "nope"}),
        json!({"message_type": "x", "payload_hex": "0"}),
        json!({"message_type": "x", "payload_type": "Flag", "payload": {"flag": "Nope"}}),
        json!({"message_type": "x", "payload_type": "Size", "payload": {"cols": "a"}}),
        json!({"message_type": "x", "created_date": -1}),
    ] {
        assert!(message_from_json(&bad).is_err(), "{bad}");
    }
    // A frame with a broken digest is still shown, flagged.
    let mut wire = from_dump(TV3_DUMP);
    wire[100] ^= 1;
    wire.push(0);
    let f = frame_to_json(&wire, 1 << 20).unwrap();
    assert_eq!(f["digest_valid"], false);
    assert_eq!(f["trailing_bytes"], 1);
    // Binary output shows as base64; non-canonical JSON payloads fall back to raw text.
    let mut m = tv3_message();
    m.payload = vec![0xff, 0xfe];
    assert_eq!(message_to_json(&m)["payload_base64"], "//4=");
    let mut m = tv4_message();
    m.payload = br#"{"rows":40,"cols":120}"#.to_vec();
    let v = message_to_json(&m);
    assert!(v.get("payload").is_none());
    assert_eq!(v["payload_text"], r#"{"rows":40,"cols":120}"#);
    assert_eq!(message_from_json(&v).unwrap(), m);
}

#[test]
fn go_json_escapes_only_what_go_escapes() {
    // Other characters with the same 0xE2 lead byte (U+2027, '€', U+202A) and a line separator
    // at the very end: only <, >, &, U+2028 and U+2029 become \u escapes.
    let v = json!("a<b>&\u{2027}€\u{2028}x\u{202A}\u{2029}");
    assert_eq!(
        String::from_utf8(to_go_json(&v)).unwrap(),
        "\"a\\u003cb\\u003e\\u0026\u{2027}€\\u2028x\u{202A}\\u2029\""
    );
}

#[test]
fn go_json_helper_sorts_free_form_maps() {
    let v = json!({"b": 1, "a": "<"});
    assert_eq!(to_go_json(&v), br#"{"a":"\u003c","b":1}"#);
}

// =============================================================================================
// architecture guard

#[test]
fn protocol_sources_stay_sans_io() {
    let test_file = Path::new(file!());
    let test_file: PathBuf = if test_file.is_absolute() {
        test_file.to_path_buf()
    } else {
        // `file!()` is relative to the workspace root, which is the package root here.
        Path::new(env!("CARGO_MANIFEST_DIR")).join(test_file)
    };
    let dir = test_file
        .parent()
        .unwrap()
        .join("../src/protocol")
        .canonicalize()
        .expect("src/protocol next to tests/");
    let banned = [
        "tokio",
        "aws_",
        "ratatui",
        "crossterm",
        "std::net",
        "Instant",
        "SystemTime",
        "thread::",
        "crate::",
    ];
    let mut scanned = 0;
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for word in banned {
                assert!(!text.contains(word), "{} mentions `{word}`", path.display());
            }
            scanned += 1;
        }
    }
    assert!(scanned >= 8, "found only {scanned} files");
}
