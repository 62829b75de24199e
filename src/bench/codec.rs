//! Group `codec`: the sans-IO protocol core alone, no sockets (issue 4).
//!
//! * `codec.frame`: encode + decode (both compute the SHA-256 payload digest) of 1024-byte
//!   `input_stream_data` messages, MiB/s of payload; baseline: SHA-256 of the same bytes
//!   twice, the work the format forces on any implementation.
//! * `codec.kms`: the same with AES-GCM encryption and decryption of each payload (KMS
//!   sessions); baseline `codec.frame`.
//! * `codec.session`: client → agent through two [`Session`]s (Port session, both roles),
//!   frames handed over in memory with every acknowledgement flowing back; baseline
//!   `codec.frame`, so the ratio is what sequencing, acks and buffering cost.
//!
//! Allocations per message are not counted: a counting allocator needs `unsafe impl
//! GlobalAlloc`, and this crate forbids `unsafe`. By reading the code, one message costs the
//! encoded frame `Vec`, the decoded payload `Vec` and the event's `Vec` on the receiving side.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Figure, Group, Results, Sizes, mib_per_s};
use crate::protocol::{
    ClientMessage, DataKey, MessageType, PayloadType, Role, Session, SessionCipher, SessionConfig,
    SessionEvent, SessionType,
};

const PAYLOAD: usize = 1024;
/// A fixed epoch for `CreatedDate` (the codec never reads clocks).
const T0: u64 = 1_700_000_000_000;

/// Runs the group.
pub fn run(sizes: Sizes) -> anyhow::Result<Results> {
    let total: usize = sizes.pick(8 << 20, 256 << 20);
    let messages = total / PAYLOAD;
    let mut figures = Vec::new();

    let sha = sha_twice(messages);
    let frame = frame_roundtrip(messages)?;
    let kms = kms_roundtrip(messages)?;
    let session = session_transfer(total)?;
    let bytes = (messages * PAYLOAD) as u64;
    let sha_rate = mib_per_s(bytes, sha);
    let frame_rate = mib_per_s(bytes, frame);
    let size_note = format!("{} MiB in {PAYLOAD}-byte messages", total >> 20);
    figures.push(
        Figure::new(Group::Codec, "codec.frame", frame_rate, "MiB/s")
            .vs("sha256 ×2", sha_rate)
            .note(size_note.clone()),
    );
    figures.push(
        Figure::new(Group::Codec, "codec.kms", mib_per_s(bytes, kms), "MiB/s")
            .vs("codec.frame", frame_rate)
            .note("AES-256-GCM encrypt + decrypt of each payload on top of codec.frame"),
    );
    figures.push(
        Figure::new(
            Group::Codec,
            "codec.session",
            mib_per_s(total as u64, session),
            "MiB/s",
        )
        .vs("codec.frame", frame_rate)
        .note(format!(
            "{size_note}; client→agent Sessions in memory with acks; allocations per message not counted (needs unsafe GlobalAlloc)"
        )),
    );
    Ok(Results {
        figures,
        skipped: Vec::new(),
    })
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i * 7 + 3) as u8).collect()
}

fn sha_twice(messages: usize) -> Duration {
    let data = payload();
    let started = Instant::now();
    let mut acc = 0u8;
    for _ in 0..messages {
        acc ^= Sha256::digest(&data)[0];
        acc ^= Sha256::digest(&data)[1];
    }
    std::hint::black_box(acc);
    started.elapsed()
}

fn message(seq: i64, payload: Vec<u8>) -> ClientMessage {
    ClientMessage {
        message_type: MessageType::InputStreamData,
        schema_version: 1,
        created_date: T0,
        sequence_number: seq,
        flags: 0,
        message_id: Uuid::from_u128(seq as u128 + 1),
        payload_type: PayloadType::Output,
        payload,
    }
}

fn frame_roundtrip(messages: usize) -> anyhow::Result<Duration> {
    let data = payload();
    let mut buf = Vec::with_capacity(PAYLOAD + 200);
    let started = Instant::now();
    for seq in 0..messages {
        buf.clear();
        message(seq as i64, data.clone()).encode_into(&mut buf);
        let back = ClientMessage::decode_exact(&buf)?;
        std::hint::black_box(back.payload.len());
    }
    Ok(started.elapsed())
}

fn kms_roundtrip(messages: usize) -> anyhow::Result<Duration> {
    let data = payload();
    let key = DataKey::from_bytes([7u8; 64]);
    let mut client = SessionCipher::new(&key, Role::Client, [1u8; 12])?;
    let agent = SessionCipher::new(&key, Role::Agent, [2u8; 12])?;
    let mut buf = Vec::with_capacity(PAYLOAD + 200);
    let started = Instant::now();
    for seq in 0..messages {
        buf.clear();
        message(seq as i64, client.encrypt(&data)?).encode_into(&mut buf);
        let back = ClientMessage::decode_exact(&buf)?;
        let plain = agent.decrypt(&back.payload)?;
        std::hint::black_box(plain.len());
    }
    Ok(started.elapsed())
}

/// Hands every pending frame of `from` to `to`; returns how many there were.
fn relay(from: &mut Session, to: &mut Session, now: u64) -> usize {
    let mut n = 0;
    while let Some(frame) = from.poll_transmit() {
        to.handle_incoming(&frame, now);
        n += 1;
    }
    n
}

fn session_transfer(total: usize) -> anyhow::Result<Duration> {
    let mut agent = Session::new(SessionConfig::agent("bench", "i-bench", 1));
    let mut client = Session::new(SessionConfig::client("bench", "i-bench", 2));
    let props = serde_json::json!({"portNumber": "80", "type": "LocalPortForwarding"});
    agent.begin_handshake(SessionType::Port, props, None, "3.3.987.0", T0)?;
    // Handshake: a few round trips until the client reports Ready.
    let mut ready = false;
    for _ in 0..50 {
        relay(&mut agent, &mut client, T0);
        relay(&mut client, &mut agent, T0);
        while let Some(ev) = client.poll_event() {
            if matches!(ev, SessionEvent::Ready { .. }) {
                ready = true;
            }
        }
        while agent.poll_event().is_some() {}
        if ready {
            break;
        }
    }
    anyhow::ensure!(ready, "the in-memory handshake did not complete");

    let chunk = vec![0x5au8; 16 * 1024];
    let started = Instant::now();
    let mut sent = 0usize;
    let mut received = 0usize;
    let mut idle_rounds = 0;
    while received < total {
        // The clock only moves forward for the sessions' timers; real elapsed ms is enough.
        let now = T0 + started.elapsed().as_millis() as u64;
        if sent < total {
            let want = (total - sent).min(chunk.len());
            sent += client.send_input(chunk.get(..want).unwrap_or_default(), now);
        }
        let moved = relay(&mut client, &mut agent, now) + relay(&mut agent, &mut client, now);
        while let Some(ev) = agent.poll_event() {
            match ev {
                SessionEvent::Input(b) => received += b.len(),
                SessionEvent::Error(e) => return Err(e.into()),
                _ => {}
            }
        }
        while client.poll_event().is_some() {}
        if moved == 0 {
            idle_rounds += 1;
            anyhow::ensure!(
                idle_rounds < 10_000,
                "the in-memory transfer stalled at {received} of {total} bytes"
            );
            client.handle_timeout(now);
            agent.handle_timeout(now);
        } else {
            idle_rounds = 0;
        }
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_memory_transfer_delivers_everything() {
        assert!(session_transfer(64 * 1024).is_ok());
        assert!(frame_roundtrip(4).is_ok());
        assert!(kms_roundtrip(4).is_ok());
    }
}
