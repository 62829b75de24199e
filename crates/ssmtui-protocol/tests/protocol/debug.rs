//! The debug JSON view of frames and messages.

use serde_json::json;
use ssmtui_protocol::debug::{frame_to_json, json_to_frame, message_from_json, message_to_json};
use ssmtui_protocol::message::payload_digest;
use ssmtui_protocol::payload::to_go_json;

use super::common::*;

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
