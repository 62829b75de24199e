//! Fuzz the `ClientMessage` decoder, the debug JSON view and both session roles.
//!
//! Checks, besides "never panics":
//! - a decoded message never claims more bytes than the input, nor a payload larger than
//!   the input or the cap;
//! - re-encoding a decoded message and decoding again gives the same message;
//! - the debug JSON view is canonical (`message_from_json(message_to_json(m)) == m`);
//! - a client and an agent `Session` accept any sequence of frames (the input is split into
//!   websocket messages at points chosen by its first byte) and stay pollable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ssmtui_protocol::debug::{frame_to_json, message_from_json, message_to_json};
use ssmtui_protocol::message::{ClientMessage, DecodeOptions};
use ssmtui_protocol::session::{Session, SessionConfig};
use ssmtui_protocol::types::SessionType;

const CAP: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    for validate in [true, false] {
        let opts = DecodeOptions {
            max_payload_len: CAP,
            validate,
        };
        if let Ok(Some(d)) = ClientMessage::decode_with(data, &opts) {
            assert!(d.consumed <= data.len());
            assert!(d.message.payload.len() <= data.len().min(CAP));
            let again = ClientMessage::decode_with(&d.message.encode(), &opts)
                .ok()
                .flatten()
                .map(|d| d.message);
            // Invalid UTF-8 in the type field decodes lossily and may no longer fit 32 bytes;
            // everything else must round-trip exactly, through bytes and through JSON.
            if d.message.message_type.as_str().len() <= 32 {
                assert_eq!(again.as_ref(), Some(&d.message));
                let view = message_to_json(&d.message);
                assert_eq!(message_from_json(&view).ok().as_ref(), Some(&d.message));
            }
        }
    }
    let _ = frame_to_json(data, CAP);

    let (step, body) = match data.split_first() {
        Some((first, rest)) => (usize::from(*first) * 4 + 1, rest),
        None => return,
    };
    let mut client = Session::new(SessionConfig::client("s", "i", 1));
    let mut agent = Session::new(SessionConfig::agent("s", "i", 2));
    let _ = agent.begin_handshake(
        SessionType::Port,
        serde_json::Value::Null,
        None,
        "3.3.987.0",
        1,
    );
    for (i, piece) in body.chunks(step).enumerate() {
        let now = 1_700_000_000_000 + i as u64 * 50;
        for s in [&mut client, &mut agent] {
            s.handle_incoming(piece, now);
            s.handle_timeout(now);
            let _ = s.send_input(piece, now);
            while s.poll_transmit().is_some() {}
            while s.poll_event().is_some() {}
            assert!(s.outgoing_len() <= s.config().max_outgoing_messages);
        }
    }
});
