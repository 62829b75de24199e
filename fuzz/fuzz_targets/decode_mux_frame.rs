//! Fuzz the smux v1 decoders and the sans-IO `Mux` with arbitrary bytes.
//!
//! The first input byte chooses how the rest is split into pieces (frames straddle
//! data-channel messages, G20). Checks, besides "never panics":
//! - the stateless `decode_frame` and the streaming `FrameDecoder` agree on every input and
//!   every split, and a decoded PSH never exceeds 65535 bytes;
//! - the streaming decoder never holds a buffer larger than one frame's declared length;
//! - a server `Mux` and a client `Mux` fed the same bytes fail only with a protocol error,
//!   stay failed afterwards, and can still be polled.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ssmtui_protocol::mux::{
    Frame, FrameDecoder, HEADER_LEN, MAX_FRAME_DATA, Mux, MuxConfig, MuxError, Role, decode_frame,
};

fuzz_target!(|data: &[u8]| {
    let (chunk, bytes) = match data.split_first() {
        Some((first, rest)) => (usize::from(*first % 64) + 1, rest),
        None => (1, data),
    };

    // Stateless decoder, frame by frame.
    let mut stateless = Vec::new();
    let mut stateless_error = None;
    let mut rest = bytes;
    loop {
        match decode_frame(rest) {
            Ok(Some((frame, used))) => {
                assert!(used >= HEADER_LEN && used <= rest.len());
                stateless.push(frame);
                rest = &rest[used..];
            }
            Ok(None) => break,
            Err(error) => {
                stateless_error = Some(error);
                break;
            }
        }
    }

    // Streaming decoder, in pieces of `chunk` bytes.
    let mut decoder = FrameDecoder::new();
    let mut streaming = Vec::new();
    let mut streaming_error = None;
    'pieces: for piece in bytes.chunks(chunk) {
        let mut input = piece;
        loop {
            match decoder.decode_next(&mut input) {
                Ok(Some(frame)) => streaming.push(frame),
                Ok(None) => break,
                Err(error) => {
                    streaming_error = Some(error);
                    break 'pieces;
                }
            }
            assert!(decoder.buffered_capacity() <= MAX_FRAME_DATA);
        }
        assert!(input.is_empty());
    }
    assert_eq!(stateless, streaming);
    assert_eq!(stateless_error, streaming_error);
    for frame in &streaming {
        if let Frame::Psh(_, payload) = frame {
            assert!(payload.len() <= MAX_FRAME_DATA);
        }
    }

    // Both roles of the state machine.
    for role in [Role::Server, Role::Client] {
        let config = MuxConfig {
            max_streams: 8,
            ..MuxConfig::default()
        };
        let mut mux = Mux::new(role, config, 0);
        let mut failed = false;
        for (i, piece) in bytes.chunks(chunk).enumerate() {
            match mux.handle_incoming(piece, i as u64) {
                Ok(()) => assert!(!failed),
                Err(MuxError::SessionClosed) => assert!(failed),
                Err(
                    MuxError::BadVersion(_)
                    | MuxError::UnknownCommand(_)
                    | MuxError::UnexpectedUpdate,
                ) => {
                    assert!(!failed);
                    failed = true;
                }
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        assert_eq!(mux.is_closed(), failed);
        assert!(mux.num_streams() <= 8);
        while mux.poll_event().is_some() {}
        mux.handle_timeout(u64::MAX);
        let mut polls = 0;
        while mux.poll_transmit(1024).is_some() {
            polls += 1;
            assert!(polls < 100_000, "poll_transmit does not drain");
        }
    }
});
