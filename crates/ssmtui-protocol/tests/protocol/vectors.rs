//! The §12 test vectors: golden bytes, fixtures and their decoding.

use ssmtui_protocol::crypto::SessionCipher;
use ssmtui_protocol::message::{
    ClientMessage, DecodeOptions, EMPTY_PAYLOAD_DIGEST, payload_digest,
};
use ssmtui_protocol::payload::{
    AcknowledgeContent, ActionResult, ChannelClosedPayload, HandshakeResponsePayload,
    ProcessedClientAction,
};
use ssmtui_protocol::types::{
    ActionStatus, ActionType, Flag, MessageType, PayloadType, Role, message_id_from_wire,
    message_id_to_wire,
};
use ssmtui_protocol::{ProtocolError, Session, SessionConfig, SessionEvent};

use super::common::*;

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
            include_bytes!("../fixtures/tv2_acknowledge.bin"),
            tv2_message(),
        ),
        (
            include_bytes!("../fixtures/tv3_output_ls.bin"),
            tv3_message(),
        ),
        (include_bytes!("../fixtures/tv4_size.bin"), tv4_message()),
        (
            include_bytes!("../fixtures/tv5_flag_terminate.bin"),
            tv5_message(),
        ),
    ];
    for (bytes, m) in good {
        assert_eq!(m.encode(), bytes);
        assert_eq!(ClientMessage::decode_exact(bytes).unwrap(), m);
    }
    assert_eq!(
        ClientMessage::decode(include_bytes!("../fixtures/hostile_tv3_bad_digest.bin")),
        Err(ProtocolError::DigestMismatch)
    );
    assert_eq!(
        ClientMessage::decode(include_bytes!("../fixtures/hostile_tv3_truncated.bin")),
        Ok(None)
    );
    assert!(matches!(
        ClientMessage::decode(include_bytes!("../fixtures/hostile_payload_length_max.bin")),
        Err(ProtocolError::PayloadTooLarge { .. })
    ));
    let closed = ClientMessage::decode_exact(include_bytes!(
        "../fixtures/channel_closed_hl112_nul_padded.bin"
    ))
    .unwrap();
    assert_eq!(closed.message_type, MessageType::ChannelClosed);
    assert_eq!(closed.payload_type, PayloadType::Null);
    let mut c = Session::new(SessionConfig::client("user-0123", "i", 1));
    c.handle_incoming(
        include_bytes!("../fixtures/channel_closed_hl112_nul_padded.bin"),
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
