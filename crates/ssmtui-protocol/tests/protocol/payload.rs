//! Payload shapes: the JSON of every payload type as the agent writes and reads it.

use serde_json::{Value, json};
use ssmtui_protocol::payload::{
    ActionParameters, ActionResult, AgentSessionStatePayload, AgentState, ChannelClosedPayload,
    EncChallengePayload, HandshakeCompletePayload, HandshakeRequestPayload,
    HandshakeResponsePayload, KmsEncryptionResponse, OpenDataChannelInput, ProcessedClientAction,
    SizeData, decode_exit_code, encode_exit_code,
};
use ssmtui_protocol::types::{ActionStatus, ActionType, SessionType};
use ssmtui_protocol::{Session, SessionConfig};
use uuid::Uuid;

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
