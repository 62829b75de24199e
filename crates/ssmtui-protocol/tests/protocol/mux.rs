//! Integration tests for `protocol::mux` (smux v1 codec and the sans-IO `Mux`) and
//! `protocol::version` (the basic-vs-mux decision of both sides).
//!
//! Everything is deterministic: randomness comes from proptest or a seeded xorshift, time is a
//! virtual `now_ms`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use proptest::prelude::*;
use ssmtui_protocol::mux::{
    CMD_FIN, CMD_NOP, CMD_PSH, CMD_SYN, CMD_UPD, DEFAULT_MAX_FRAME_DATA, Frame, FrameDecoder,
    FrameHeader, HEADER_LEN, Keepalive, MAX_FRAME_DATA, Mux, MuxConfig, MuxError, MuxEvent, Role,
    StreamId, decode_frame,
};
use ssmtui_protocol::version::{
    CLIENT_VERSION, DottedVersion, LOCAL_PORT_FORWARDING,
    MUX_KEEPALIVE_DISABLED_AFTER_CLIENT_VERSION, MUX_SUPPORTED_CLIENT_VERSION, PortMode,
    SMUX_KEEPALIVE_DISABLED_AFTER_AGENT_VERSION, TCP_MULTIPLEXING_SUPPORTED_AFTER_AGENT_VERSION,
    VersionError, agent_port_mode, client_port_mode, client_supports_terminate_session_flag,
    compare_agent, compare_plugin, emulated_agent_port_mode, is_greater_plugin,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// TV-8 (protocol.md §12).
const TV8_SYN: [u8; 8] = [0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00];
const TV8_PSH: [u8; 11] = [
    0x01, 0x02, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x47, 0x45, 0x54,
];
const TV8_FIN: [u8; 8] = [0x01, 0x01, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00];
const TV8_NOP: [u8; 8] = [0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];

fn tv8_frames() -> Vec<(Frame, Vec<u8>)> {
    vec![
        (Frame::Syn(StreamId(3)), TV8_SYN.to_vec()),
        (Frame::Psh(StreamId(3), b"GET".to_vec()), TV8_PSH.to_vec()),
        (Frame::Fin(StreamId(3)), TV8_FIN.to_vec()),
        (Frame::Nop(StreamId(0)), TV8_NOP.to_vec()),
    ]
}

fn no_keepalive() -> MuxConfig {
    MuxConfig {
        keepalive: None,
        ..MuxConfig::default()
    }
}

/// Seeded xorshift64*: deterministic chunk sizes without OS randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `1..=max`.
    fn size(&mut self, max: usize) -> usize {
        1 + (self.next() % max as u64) as usize
    }
}

/// Period of the test payload pattern.
const PERIOD: usize = 1 << 16;

/// `PERIOD + PERIOD` bytes where byte `i` depends on the low 16 bits of `i` only, so any
/// window of the pattern is a plain slice (memcmp-fast even in debug builds).
static PATTERN: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let period: Vec<u8> = (0..PERIOD)
        .map(|i| (i as u8) ^ ((i >> 8) as u8).rotate_left(3) ^ ((i >> 13) as u8))
        .collect();
    period.repeat(2)
});

/// `len` (≤ 65536) payload bytes of the stream with `salt` starting at `offset`. Each stream
/// starts at a different phase; a chunk lost, duplicated or moved by less than 64 KiB, or
/// delivered to the wrong stream, shows up as a mismatch.
fn pattern_slice(salt: u32, offset: u64, len: usize) -> &'static [u8] {
    assert!(len <= PERIOD);
    let phase = (u64::from(salt).wrapping_mul(0x9e37_79b9) >> 7) as usize;
    let start = (offset as usize).wrapping_add(phase) % PERIOD;
    &PATTERN[start..start + len]
}

/// Like [`pattern_slice`] for any length.
fn fill_pattern(salt: u32, offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let n = (len - out.len()).min(PERIOD);
        out.extend_from_slice(pattern_slice(salt, offset + out.len() as u64, n));
    }
    out
}

fn events(mux: &mut Mux) -> Vec<MuxEvent> {
    std::iter::from_fn(|| mux.poll_event()).collect()
}

/// Moves everything `from` has to send into `to`, in random chunks of at most 1024 bytes
/// (one Output message each). Returns the number of bytes moved.
fn transfer(from: &mut Mux, to: &mut Mux, rng: &mut Rng, now_ms: u64) -> usize {
    let mut moved = 0;
    while let Some(bytes) = from.poll_transmit(rng.size(1024)) {
        assert!(!bytes.is_empty() && bytes.len() <= 1024);
        moved += bytes.len();
        assert_eq!(to.handle_incoming(&bytes, now_ms), Ok(()));
    }
    moved
}

fn all_frames(bytes: &[u8]) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new();
    let frames = decoder.feed(bytes).expect("valid frames");
    assert!(decoder.is_at_boundary(), "trailing partial frame");
    frames
}

// ---------------------------------------------------------------------------------------------
// Codec: TV-8, boundaries, errors
// ---------------------------------------------------------------------------------------------

#[test]
fn tv8_encodes_byte_exact() {
    for (frame, bytes) in tv8_frames() {
        assert_eq!(frame.encode().expect("encodes"), bytes, "{frame:?}");
        assert_eq!(frame.encoded_len(), bytes.len());
    }
}

#[test]
fn tv8_decodes_byte_exact() {
    for (frame, bytes) in tv8_frames() {
        assert_eq!(decode_frame(&bytes), Ok(Some((frame.clone(), bytes.len()))));
        // Every strict prefix is "need more bytes", never an error.
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_frame(&bytes[..cut]),
                Ok(None),
                "{frame:?} cut at {cut}"
            );
        }
        let header = FrameHeader::parse(bytes[..HEADER_LEN].try_into().expect("8 bytes"));
        assert_eq!(header.encode().as_slice(), &bytes[..HEADER_LEN]);
        assert_eq!(header.validate(), Ok(()));
    }
}

#[test]
fn split_at_every_boundary_decodes_the_same() {
    let big = Frame::Psh(StreamId(7), fill_pattern(7, 0, DEFAULT_MAX_FRAME_DATA));
    let mut frames: Vec<Frame> = tv8_frames().into_iter().map(|(f, _)| f).collect();
    frames.push(big);
    frames.push(Frame::Psh(StreamId(9), Vec::new()));
    let mut wire = Vec::new();
    for frame in &frames {
        frame.encode_into(&mut wire).expect("encodes");
    }

    for cut in 0..=wire.len() {
        let mut decoder = FrameDecoder::new();
        let mut got = decoder.feed(&wire[..cut]).expect("valid");
        got.extend(decoder.feed(&wire[cut..]).expect("valid"));
        assert_eq!(got, frames, "split at {cut}");
        assert!(decoder.is_at_boundary());
    }

    // And one byte at a time.
    let mut decoder = FrameDecoder::new();
    let mut got = Vec::new();
    for byte in &wire {
        got.extend(decoder.feed(std::slice::from_ref(byte)).expect("valid"));
        assert!(decoder.buffered_len() <= HEADER_LEN + DEFAULT_MAX_FRAME_DATA);
    }
    assert_eq!(got, frames);
}

#[test]
fn bad_version_and_commands_are_protocol_errors() {
    for version in [0u8, 2, 0xff] {
        let bytes = [version, CMD_SYN, 0, 0, 3, 0, 0, 0];
        assert_eq!(decode_frame(&bytes), Err(MuxError::BadVersion(version)));
    }
    // UPD is v2-only: rejected on v1 even with its 8 data bytes present.
    let upd = [1, CMD_UPD, 8, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0];
    assert_eq!(decode_frame(&upd), Err(MuxError::UnexpectedUpdate));
    for cmd in 5u8..=255 {
        let bytes = [1, cmd, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode_frame(&bytes), Err(MuxError::UnknownCommand(cmd)));
    }
    // A bad header is reported as soon as the header is complete, data or not.
    assert_eq!(
        decode_frame(&[2, CMD_PSH, 0xff, 0xff, 1, 0, 0, 0]),
        Err(MuxError::BadVersion(2))
    );
}

#[test]
fn streaming_decoder_error_is_sticky_and_earlier_frames_survive() {
    let mut wire = TV8_SYN.to_vec();
    wire.extend_from_slice(&[1, 9, 0, 0, 0, 0, 0, 0]);
    wire.extend_from_slice(&TV8_NOP);
    let mut decoder = FrameDecoder::new();
    let mut rest = wire.as_slice();
    assert_eq!(
        decoder.decode_next(&mut rest),
        Ok(Some(Frame::Syn(StreamId(3))))
    );
    assert_eq!(
        decoder.decode_next(&mut rest),
        Err(MuxError::UnknownCommand(9))
    );
    assert_eq!(rest, &TV8_NOP, "nothing after the bad header was consumed");
    assert_eq!(decoder.feed(&TV8_NOP), Err(MuxError::UnknownCommand(9)));
}

#[test]
fn control_frame_length_is_ignored_like_smux() {
    // smux reads no data after SYN/FIN/NOP whatever `length` says, so the next 8 bytes are
    // the next header.
    let mut wire = vec![1, CMD_SYN, 5, 0, 3, 0, 0, 0];
    wire.extend_from_slice(&TV8_NOP);
    assert_eq!(
        all_frames(&wire),
        vec![Frame::Syn(StreamId(3)), Frame::Nop(StreamId(0))]
    );
}

#[test]
fn psh_length_limits() {
    let max = Frame::Psh(StreamId(1), vec![0x5a; MAX_FRAME_DATA]);
    let bytes = max.encode().expect("65535 bytes fit");
    assert_eq!(&bytes[..4], &[1, CMD_PSH, 0xff, 0xff]);
    assert_eq!(
        decode_frame(&bytes),
        Ok(Some((max, HEADER_LEN + MAX_FRAME_DATA)))
    );
    let too_big = Frame::Psh(StreamId(1), vec![0; MAX_FRAME_DATA + 1]);
    assert_eq!(
        too_big.encode(),
        Err(MuxError::FrameTooLarge(MAX_FRAME_DATA + 1))
    );

    // A header announcing 65535 bytes costs one 65535-byte buffer, allocated once.
    let mut decoder = FrameDecoder::new();
    assert_eq!(
        decoder.feed(&[1, CMD_PSH, 0xff, 0xff, 1, 0, 0, 0, 42]),
        Ok(vec![])
    );
    assert_eq!(decoder.buffered_capacity(), MAX_FRAME_DATA);
    assert_eq!(decoder.buffered_len(), HEADER_LEN + 1);
}

// ---------------------------------------------------------------------------------------------
// Codec properties
// ---------------------------------------------------------------------------------------------

fn arb_frame(max_data: usize) -> impl Strategy<Value = Frame> {
    prop_oneof![
        any::<u32>().prop_map(|id| Frame::Syn(StreamId(id))),
        any::<u32>().prop_map(|id| Frame::Fin(StreamId(id))),
        any::<u32>().prop_map(|id| Frame::Nop(StreamId(id))),
        // Data content is irrelevant to framing; derive it from a salt instead of generating
        // every byte through proptest (which dominated the run time).
        (any::<u32>(), 0..=max_data, any::<u32>())
            .prop_map(|(id, len, salt)| Frame::Psh(StreamId(id), fill_pattern(salt, 0, len))),
    ]
}

/// Frame-shaped hostile bytes from a seed: mostly plausible headers (version 1, commands
/// 0..=5, small stream ids, lengths that may or may not match the data that follows),
/// sometimes garbage.
fn hostile_bytes(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..rng.next() % 6 {
        let r = rng.next();
        let header = FrameHeader {
            version: if r.is_multiple_of(9) {
                (r >> 8) as u8
            } else {
                1
            },
            cmd: if r.is_multiple_of(7) {
                (r >> 16) as u8
            } else {
                ((r >> 16) % 6) as u8
            },
            length: if r.is_multiple_of(5) {
                (r >> 24) as u16
            } else {
                ((r >> 24) % 65) as u16
            },
            stream_id: if r.is_multiple_of(4) {
                (r >> 40) as u32
            } else {
                ((r >> 40) % 9) as u32
            },
        };
        bytes.extend_from_slice(&header.encode());
        let extra = rng.next() % 49;
        for _ in 0..extra {
            bytes.push(rng.next() as u8);
        }
    }
    bytes
}

/// Random cut points for `len` bytes.
fn cut_points(rng: &mut Rng, len: usize) -> Vec<usize> {
    (0..rng.next() % 6)
        .map(|_| (rng.next() as usize) % (len + 1))
        .collect()
}

/// Decodes with the stateless decoder until it stops: (frames, error if any).
fn decode_stateless(mut bytes: &[u8]) -> (Vec<Frame>, Option<MuxError>) {
    let mut frames = Vec::new();
    loop {
        match decode_frame(bytes) {
            Ok(Some((frame, used))) => {
                assert!(used >= HEADER_LEN && used <= bytes.len());
                frames.push(frame);
                bytes = &bytes[used..];
            }
            Ok(None) => return (frames, None),
            Err(error) => return (frames, Some(error)),
        }
    }
}

/// Decodes with the streaming decoder fed at the given cut points.
fn decode_streaming(bytes: &[u8], cuts: &[usize]) -> (Vec<Frame>, Option<MuxError>) {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut start = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.push(bytes.len());
    for end in points {
        let mut rest = &bytes[start..end];
        start = end;
        loop {
            match decoder.decode_next(&mut rest) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => return (frames, Some(error)),
            }
            assert!(decoder.buffered_capacity() <= MAX_FRAME_DATA);
        }
        assert!(rest.is_empty());
        assert!(decoder.buffered_capacity() <= MAX_FRAME_DATA);
    }
    (frames, None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn prop_frame_round_trip(frame in arb_frame(96)) {
        let bytes = frame.encode().expect("small frames encode");
        prop_assert_eq!(bytes.len(), frame.encoded_len());
        prop_assert_eq!(decode_frame(&bytes), Ok(Some((frame.clone(), bytes.len()))));
        let mut decoder = FrameDecoder::new();
        prop_assert_eq!(decoder.feed(&bytes), Ok(vec![frame]));
        prop_assert!(decoder.is_at_boundary());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

    #[test]
    fn prop_concatenated_frames_split_randomly(
        frames in prop::collection::vec(arb_frame(1100), 0..10),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let mut wire = Vec::new();
        for frame in &frames {
            frame.encode_into(&mut wire).expect("encodes");
        }
        // Empty PSH frames decode as empty PSH frames: the codec keeps them, the Mux skips them.
        prop_assert_eq!(decode_streaming(&wire, &cuts), (frames.clone(), None));
        prop_assert_eq!(decode_stateless(&wire), (frames, None));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40_000, ..ProptestConfig::default() })]

    /// Never panics, never holds more than one frame's declared length, and the streaming and
    /// stateless decoders agree on hostile input however it is split.
    #[test]
    fn prop_hostile_input_is_handled(seed in 1u64..) {
        let mut rng = Rng(seed);
        let bytes = hostile_bytes(&mut rng);
        let cuts = cut_points(&mut rng, bytes.len());
        let streaming = decode_streaming(&bytes, &cuts);
        let stateless = decode_stateless(&bytes);
        prop_assert_eq!(&streaming, &stateless);
        for frame in &streaming.0 {
            if let Frame::Psh(_, data) = frame {
                prop_assert!(data.len() <= MAX_FRAME_DATA);
                prop_assert!(data.capacity() <= MAX_FRAME_DATA);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mux: wiring, ordering, smux tolerance rules
// ---------------------------------------------------------------------------------------------

#[test]
fn client_ids_are_odd_from_three_and_server_cannot_open() {
    let mut client = Mux::new(Role::Client, no_keepalive(), 0);
    let ids: Vec<StreamId> = (0..4)
        .map(|_| client.open_stream().expect("opens"))
        .collect();
    assert_eq!(ids, [StreamId(3), StreamId(5), StreamId(7), StreamId(9)]);
    assert_eq!(client.stream_ids().collect::<Vec<_>>(), ids);

    let mut server = Mux::new(Role::Server, no_keepalive(), 0);
    assert_eq!(server.open_stream(), Err(MuxError::NotClient));
}

#[test]
fn syn_before_data_and_fin_after_data_match_tv8() {
    let mut client = Mux::new(Role::Client, no_keepalive(), 0);
    let id = client.open_stream().expect("opens");
    assert_eq!(client.write(id, b"GET"), Ok(3));
    assert_eq!(client.close(id), Ok(()));
    assert_eq!(client.write(id, b"x"), Err(MuxError::WriteAfterClose(id)));
    let wire = client.poll_transmit(4096).expect("frames");
    assert_eq!(wire, [&TV8_SYN[..], &TV8_PSH[..], &TV8_FIN[..]].concat());
    assert_eq!(client.poll_transmit(4096), None);
    assert!(!client.has_pending_transmit());
}

#[test]
fn poll_transmit_respects_max_bytes_and_splits_frames() {
    let mut client = Mux::new(Role::Client, no_keepalive(), 0);
    let id = client.open_stream().expect("opens");
    let data = fill_pattern(1, 0, 5000);
    assert_eq!(client.write(id, &data), Ok(5000));
    let mut wire = Vec::new();
    let mut sizes = [3usize, 1, 7, 1024, 8, 1000, 5].into_iter().cycle();
    while let Some(chunk) = client.poll_transmit(sizes.next().expect("cycle")) {
        wire.extend(chunk);
    }
    let frames = all_frames(&wire);
    assert_eq!(frames.first(), Some(&Frame::Syn(id)));
    let mut got = Vec::new();
    for frame in &frames[1..] {
        match frame {
            Frame::Psh(s, d) if *s == id => {
                assert!(d.len() <= DEFAULT_MAX_FRAME_DATA);
                got.extend_from_slice(d);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, data);
    assert_eq!(client.poll_transmit(0), None);
}

#[test]
fn smux_tolerance_rules() {
    let mut server = Mux::new(Role::Server, no_keepalive(), 0);
    let feed = |server: &mut Mux, frame: Frame| {
        server
            .handle_incoming(&frame.encode().expect("encodes"), 0)
            .expect("tolerated");
    };

    // PSH and FIN for unknown streams are dropped.
    feed(&mut server, Frame::Psh(StreamId(3), b"lost".to_vec()));
    feed(&mut server, Frame::Fin(StreamId(3)));
    assert_eq!(events(&mut server), []);
    assert_eq!(server.ignored_frames(), 2);

    // SYN opens; a second SYN for the same id is ignored.
    feed(&mut server, Frame::Syn(StreamId(3)));
    feed(&mut server, Frame::Syn(StreamId(3)));
    assert_eq!(events(&mut server), [MuxEvent::Opened(StreamId(3))]);
    assert_eq!(server.ignored_frames(), 3);

    // NOP and empty PSH do nothing at all.
    feed(&mut server, Frame::Nop(StreamId(0)));
    feed(&mut server, Frame::Psh(StreamId(3), Vec::new()));
    assert_eq!(events(&mut server), []);
    assert_eq!(server.ignored_frames(), 3);

    // Consecutive PSH frames are merged into one Data event.
    feed(&mut server, Frame::Psh(StreamId(3), b"ab".to_vec()));
    feed(&mut server, Frame::Psh(StreamId(3), b"cd".to_vec()));
    feed(&mut server, Frame::Fin(StreamId(3)));
    assert_eq!(
        events(&mut server),
        [
            MuxEvent::Data(StreamId(3), b"abcd".to_vec()),
            MuxEvent::Fin(StreamId(3))
        ]
    );

    // Data and a second FIN after the peer's FIN are dropped.
    feed(&mut server, Frame::Psh(StreamId(3), b"late".to_vec()));
    feed(&mut server, Frame::Fin(StreamId(3)));
    assert_eq!(events(&mut server), []);
    assert_eq!(server.ignored_frames(), 5);
    let stats = server.stream_stats(StreamId(3)).expect("still half-open");
    assert_eq!(
        (stats.bytes_in, stats.remote_closed, stats.local_closed),
        (4, true, false)
    );

    // A client ignores SYN: the agent never opens streams.
    let mut client = Mux::new(Role::Client, no_keepalive(), 0);
    client.handle_incoming(&TV8_SYN, 0).expect("tolerated");
    assert_eq!(events(&mut client), []);
    assert_eq!(client.num_streams(), 0);
    assert_eq!(client.ignored_frames(), 1);
}

#[test]
fn protocol_error_kills_the_session_after_applying_earlier_frames() {
    let mut server = Mux::new(Role::Server, MuxConfig::default(), 0);
    let mut wire = TV8_SYN.to_vec();
    wire.extend_from_slice(&[2, CMD_NOP, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        server.handle_incoming(&wire, 5),
        Err(MuxError::BadVersion(2))
    );
    assert_eq!(events(&mut server), [MuxEvent::Opened(StreamId(3))]);
    assert!(server.is_closed());
    assert_eq!(
        server.handle_incoming(&TV8_NOP, 6),
        Err(MuxError::SessionClosed)
    );
    assert_eq!(
        server.write(StreamId(3), b"x"),
        Err(MuxError::SessionClosed)
    );
    assert_eq!(server.poll_transmit(1024), None);
    assert_eq!(server.poll_timeout(), None);

    let mut client = Mux::new(Role::Client, no_keepalive(), 0);
    assert_eq!(
        client.handle_incoming(&[1, CMD_UPD, 8, 0, 3, 0, 0, 0], 0),
        Err(MuxError::UnexpectedUpdate)
    );
    assert_eq!(client.open_stream(), Err(MuxError::SessionClosed));
}

#[test]
fn reset_withdraws_unsent_syn_or_sends_fin_and_forgets() {
    let mut client = Mux::new(Role::Client, no_keepalive(), 0);
    let a = client.open_stream().expect("opens");
    client.write(a, b"never sent").expect("writes");
    assert!(client.reset(a));
    assert!(!client.reset(a));
    assert_eq!(
        client.poll_transmit(1024),
        None,
        "SYN withdrawn, data dropped"
    );

    let mut server = Mux::new(Role::Server, no_keepalive(), 0);
    let b = client.open_stream().expect("opens");
    assert_eq!(b, StreamId(5), "ids are not reused");
    let mut rng = Rng(1);
    transfer(&mut client, &mut server, &mut rng, 0);
    assert_eq!(events(&mut server), [MuxEvent::Opened(b)]);
    server.write(b, b"reply").expect("writes");
    transfer(&mut server, &mut client, &mut rng, 0);
    // Undelivered events of a reset stream are purged and its later frames are ignored.
    assert!(client.reset(b));
    assert_eq!(events(&mut client), []);
    assert_eq!(client.write(b, b"x"), Err(MuxError::UnknownStream(b)));
    assert_eq!(client.close(b), Err(MuxError::UnknownStream(b)));
    assert_eq!(
        client.poll_transmit(1024),
        Some(Frame::Fin(b).encode().expect("fin"))
    );
    server.write(b, b"more").expect("writes");
    transfer(&mut server, &mut client, &mut rng, 0);
    assert_eq!(events(&mut client), []);
    assert_eq!(client.ignored_frames(), 1);
}

#[test]
fn stream_limit_refuses_on_server_and_errors_on_client() {
    let config = MuxConfig {
        max_streams: 2,
        ..no_keepalive()
    };
    let mut client = Mux::new(Role::Client, config.clone(), 0);
    client.open_stream().expect("first");
    client.open_stream().expect("second");
    assert_eq!(client.open_stream(), Err(MuxError::TooManyStreams(2)));

    let mut server = Mux::new(Role::Server, config, 0);
    let mut wire = Vec::new();
    for id in [3, 5, 7] {
        Frame::Syn(StreamId(id))
            .encode_into(&mut wire)
            .expect("encodes");
    }
    server.handle_incoming(&wire, 0).expect("valid");
    assert_eq!(
        events(&mut server),
        [
            MuxEvent::Opened(StreamId(3)),
            MuxEvent::Opened(StreamId(5)),
            MuxEvent::Refused(StreamId(7))
        ]
    );
    assert_eq!(
        server.poll_transmit(1024),
        Some(Frame::Fin(StreamId(7)).encode().expect("fin"))
    );
}

#[test]
fn write_back_pressure_is_bounded_per_stream() {
    let config = MuxConfig {
        max_stream_send_buffer: 4096,
        ..no_keepalive()
    };
    let mut client = Mux::new(Role::Client, config, 0);
    let mut server = Mux::new(Role::Server, no_keepalive(), 0);
    let id = client.open_stream().expect("opens");
    let data = fill_pattern(9, 0, 10_000);
    assert_eq!(client.send_capacity(id), 4096);
    assert_eq!(client.write(id, &data), Ok(4096));
    assert_eq!(client.send_capacity(id), 0);
    assert_eq!(client.write(id, &data[4096..]), Ok(0));
    assert_eq!(client.stream_stats(id).expect("open").queued, 4096);

    // One 1024-byte message frees one frame's worth (the first call also carries the SYN).
    let first = client.poll_transmit(1024).expect("bytes");
    server.handle_incoming(&first, 0).expect("valid");
    let freed = client.send_capacity(id);
    assert!(
        freed > 0 && freed <= DEFAULT_MAX_FRAME_DATA,
        "freed {freed}"
    );

    let mut sent = 4096;
    let mut rng = Rng(7);
    while sent < data.len() {
        let n = client.write(id, &data[sent..]).expect("writes");
        sent += n;
        assert!(client.stream_stats(id).expect("open").queued <= 4096);
        transfer(&mut client, &mut server, &mut rng, 0);
    }
    transfer(&mut client, &mut server, &mut rng, 0);
    let mut received = Vec::new();
    for event in events(&mut server) {
        match event {
            MuxEvent::Opened(_) => {}
            MuxEvent::Data(s, d) if s == id => received.extend(d),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received, data);
    assert_eq!(client.stream_stats(id).expect("open").bytes_out, 10_000);
    assert_eq!(server.stream_stats(id).expect("open").bytes_in, 10_000);
}

#[test]
fn half_close_client_first() {
    let mut client = Mux::new(Role::Client, no_keepalive(), 0);
    let mut server = Mux::new(Role::Server, no_keepalive(), 0);
    let mut rng = Rng(3);
    let id = client.open_stream().expect("opens");
    client.write(id, b"hello").expect("writes");
    client.close(id).expect("closes");
    transfer(&mut client, &mut server, &mut rng, 0);
    assert_eq!(
        events(&mut server),
        [
            MuxEvent::Opened(id),
            MuxEvent::Data(id, b"hello".to_vec()),
            MuxEvent::Fin(id)
        ]
    );

    // The server may still answer; the client still receives after its own FIN.
    server
        .write(id, b"world")
        .expect("half-closed peer can still be written to");
    transfer(&mut server, &mut client, &mut rng, 0);
    assert_eq!(events(&mut client), [MuxEvent::Data(id, b"world".to_vec())]);
    assert_eq!(client.num_streams(), 1);

    server.close(id).expect("closes");
    transfer(&mut server, &mut client, &mut rng, 0);
    assert_eq!(events(&mut server), [MuxEvent::Closed(id)]);
    assert_eq!(
        events(&mut client),
        [MuxEvent::Fin(id), MuxEvent::Closed(id)]
    );
    assert_eq!((client.num_streams(), server.num_streams()), (0, 0));
}

#[test]
fn half_close_server_first() {
    let mut client = Mux::new(Role::Client, no_keepalive(), 0);
    let mut server = Mux::new(Role::Server, no_keepalive(), 0);
    let mut rng = Rng(4);
    let id = client.open_stream().expect("opens");
    client.write(id, b"req").expect("writes");
    transfer(&mut client, &mut server, &mut rng, 0);
    events(&mut server);
    server.write(id, b"resp").expect("writes");
    server.close(id).expect("closes");
    transfer(&mut server, &mut client, &mut rng, 0);
    assert_eq!(
        events(&mut client),
        [MuxEvent::Data(id, b"resp".to_vec()), MuxEvent::Fin(id)]
    );

    // The server keeps receiving after its FIN.
    client.write(id, b"more").expect("writes");
    client.close(id).expect("closes");
    transfer(&mut client, &mut server, &mut rng, 0);
    assert_eq!(events(&mut client), [MuxEvent::Closed(id)]);
    assert_eq!(
        events(&mut server),
        [
            MuxEvent::Data(id, b"more".to_vec()),
            MuxEvent::Fin(id),
            MuxEvent::Closed(id)
        ]
    );
}

/// One direction of one stream in the pair test.
#[derive(Default)]
struct Flow {
    sent: u64,
    received: u64,
    fin_seen: bool,
    closed_seen: bool,
}

#[test]
fn many_concurrent_streams_both_directions_arrive_intact() {
    const STREAMS: usize = 64;
    const BYTES: u64 = 256 * 1024;
    let mut client = Mux::new(Role::Client, no_keepalive(), 0);
    let mut server = Mux::new(Role::Server, no_keepalive(), 0);
    let mut rng = Rng(0x5eed);

    // upstream: client -> server; downstream: server -> client. Salts differ per direction.
    let ids: Vec<StreamId> = (0..STREAMS)
        .map(|_| client.open_stream().expect("opens"))
        .collect();
    let mut up: BTreeMap<StreamId, Flow> = ids.iter().map(|&id| (id, Flow::default())).collect();
    let mut down: BTreeMap<StreamId, Flow> = BTreeMap::new();
    let up_salt = |id: StreamId| id.0;
    let down_salt = |id: StreamId| id.0.wrapping_mul(0x0101) ^ 0xa5;

    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 20_000, "transfer did not finish");
        // Writers: each side tops its streams up with a random-sized write.
        for (&id, flow) in up.iter_mut() {
            if flow.sent < BYTES {
                let n = (BYTES - flow.sent).min(rng.size(3000) as u64) as usize;
                let accepted = client
                    .write(id, pattern_slice(up_salt(id), flow.sent, n))
                    .expect("writes");
                flow.sent += accepted as u64;
                if flow.sent == BYTES {
                    client.close(id).expect("closes");
                }
            }
        }
        for (&id, flow) in down.iter_mut() {
            if flow.sent < BYTES {
                let n = (BYTES - flow.sent).min(rng.size(3000) as u64) as usize;
                let accepted = server
                    .write(id, pattern_slice(down_salt(id), flow.sent, n))
                    .expect("writes");
                flow.sent += accepted as u64;
                if flow.sent == BYTES {
                    server.close(id).expect("closes");
                }
            }
        }
        // A bounded number of messages per step each way, so writers interleave with readers.
        for _ in 0..32 {
            if let Some(bytes) = client.poll_transmit(rng.size(1024)) {
                server.handle_incoming(&bytes, 0).expect("valid");
            }
            if let Some(bytes) = server.poll_transmit(rng.size(1024)) {
                client.handle_incoming(&bytes, 0).expect("valid");
            }
        }
        for event in events(&mut server) {
            match event {
                MuxEvent::Opened(id) => {
                    assert!(up.contains_key(&id));
                    assert!(down.insert(id, Flow::default()).is_none());
                }
                MuxEvent::Data(id, data) => {
                    let flow = up.get_mut(&id).expect("known stream");
                    assert!(!flow.fin_seen);
                    assert_eq!(data, pattern_slice(up_salt(id), flow.received, data.len()));
                    flow.received += data.len() as u64;
                }
                MuxEvent::Fin(id) => {
                    let flow = up.get_mut(&id).expect("known stream");
                    assert_eq!(flow.received, BYTES, "FIN only after all data");
                    flow.fin_seen = true;
                }
                MuxEvent::Closed(id) => {
                    down.get_mut(&id).expect("known stream").closed_seen = true;
                }
                other => panic!("unexpected server event {other:?}"),
            }
        }
        for event in events(&mut client) {
            match event {
                MuxEvent::Data(id, data) => {
                    let flow = down.get_mut(&id).expect("opened on the server first");
                    assert!(!flow.fin_seen);
                    assert_eq!(
                        data,
                        pattern_slice(down_salt(id), flow.received, data.len())
                    );
                    flow.received += data.len() as u64;
                }
                MuxEvent::Fin(id) => {
                    let flow = down.get_mut(&id).expect("known stream");
                    assert_eq!(flow.received, BYTES, "FIN only after all data");
                    flow.fin_seen = true;
                }
                MuxEvent::Closed(id) => {
                    up.get_mut(&id).expect("known stream").closed_seen = true;
                }
                other => panic!("unexpected client event {other:?}"),
            }
        }
        let done = |flows: &BTreeMap<StreamId, Flow>| {
            flows.len() == STREAMS && flows.values().all(|f| f.fin_seen && f.closed_seen)
        };
        if done(&up) && done(&down) {
            break;
        }
    }
    assert_eq!((client.num_streams(), server.num_streams()), (0, 0));
    assert!(!client.has_pending_transmit() && !server.has_pending_transmit());
    assert_eq!((client.ignored_frames(), server.ignored_frames()), (0, 0));
}

/// Sends `small` (10 KiB) while `big` always has data queued; returns how many 1024-byte
/// messages it took until the small stream's FIN left, checking delivery on a real server.
fn fairness_calls(max_stream_send_buffer: usize) -> usize {
    const BIG: usize = 10 * 1024 * 1024;
    const SMALL: usize = 10 * 1024;
    let config = MuxConfig {
        max_stream_send_buffer,
        ..no_keepalive()
    };
    let mut client = Mux::new(Role::Client, config, 0);
    let mut server = Mux::new(Role::Server, no_keepalive(), 0);
    let big = client.open_stream().expect("opens");
    let small = client.open_stream().expect("opens");
    let big_data = vec![0xb1; BIG];
    let mut big_sent = client.write(big, &big_data).expect("writes");
    assert_eq!(client.write(small, &[0x5a; SMALL]), Ok(SMALL));
    client.close(small).expect("closes");

    let mut small_received = 0;
    let mut calls = 0;
    loop {
        big_sent += client.write(big, &big_data[big_sent..]).expect("writes");
        let bytes = client
            .poll_transmit(1024)
            .expect("always something to send");
        calls += 1;
        server.handle_incoming(&bytes, 0).expect("valid");
        for event in events(&mut server) {
            match event {
                MuxEvent::Data(id, data) if id == small => small_received += data.len(),
                MuxEvent::Fin(id) if id == small => {
                    assert_eq!(small_received, SMALL);
                    assert!(client.stream_stats(big).expect("open").queued > 0);
                    return calls;
                }
                _ => {}
            }
        }
        assert!(calls < 1000, "small stream starved");
    }
}

#[test]
fn fairness_small_stream_is_not_starved_by_a_bulk_stream() {
    // 10 KiB = 11 frames of ≤ 1016 bytes; round-robin with one other stream means at most
    // twice that many messages, plus the two SYNs and the FIN.
    let bound = 2 * (10 * 1024usize).div_ceil(DEFAULT_MAX_FRAME_DATA) + 4;
    let bounded = fairness_calls(64 * 1024);
    assert!(bounded <= bound, "took {bounded} messages, bound {bound}");
    // Same with the whole 10 MiB really queued at once.
    let queued = fairness_calls(16 * 1024 * 1024);
    assert!(queued <= bound, "took {queued} messages, bound {bound}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random small scenarios: several streams, random sizes and chunking, closes from either
    /// side in random order; everything arrives and all state is freed.
    #[test]
    fn prop_pair_delivers_everything(
        sizes in prop::collection::vec((0usize..6000, 0usize..6000, any::<bool>()), 1..6),
        seed in 1u64..u64::MAX,
    ) {
        let mut client = Mux::new(Role::Client, MuxConfig { max_stream_send_buffer: 2048, ..no_keepalive() }, 0);
        let mut server = Mux::new(Role::Server, no_keepalive(), 0);
        let mut rng = Rng(seed);
        let ids: Vec<StreamId> = sizes.iter().map(|_| client.open_stream().expect("opens")).collect();
        let mut up_sent = vec![0usize; ids.len()];
        let mut down_sent = vec![0usize; ids.len()];
        let mut up_got: Vec<Vec<u8>> = vec![Vec::new(); ids.len()];
        let mut down_got: Vec<Vec<u8>> = vec![Vec::new(); ids.len()];
        let mut opened = vec![false; ids.len()];
        let mut closed = (0usize, 0usize);
        for _ in 0..10_000 {
            for (i, &id) in ids.iter().enumerate() {
                let (up_len, down_len, server_first) = sizes[i];
                if up_sent[i] < up_len {
                    let data = fill_pattern(id.0, up_sent[i] as u64, up_len - up_sent[i]);
                    up_sent[i] += client.write(id, &data[..rng.size(data.len())]).expect("writes");
                } else if up_sent[i] == up_len && (!server_first || down_sent[i] > down_len) {
                    client.close(id).expect("closes");
                    up_sent[i] += 1;
                }
                if opened[i] {
                    if down_sent[i] < down_len {
                        let data = fill_pattern(!id.0, down_sent[i] as u64, down_len - down_sent[i]);
                        down_sent[i] += server.write(id, &data).expect("writes");
                    } else if down_sent[i] == down_len && (server_first || up_sent[i] > up_len) {
                        server.close(id).expect("closes");
                        down_sent[i] += 1;
                    }
                }
            }
            if let Some(bytes) = client.poll_transmit(rng.size(1024)) {
                server.handle_incoming(&bytes, 0).expect("valid");
            }
            if let Some(bytes) = server.poll_transmit(rng.size(1024)) {
                client.handle_incoming(&bytes, 0).expect("valid");
            }
            let index = |id: StreamId| ids.iter().position(|&x| x == id).expect("known");
            for event in events(&mut server) {
                match event {
                    MuxEvent::Opened(id) => opened[index(id)] = true,
                    MuxEvent::Data(id, d) => up_got[index(id)].extend(d),
                    MuxEvent::Fin(id) => prop_assert_eq!(up_got[index(id)].len(), sizes[index(id)].0),
                    MuxEvent::Closed(_) => closed.1 += 1,
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            for event in events(&mut client) {
                match event {
                    MuxEvent::Data(id, d) => down_got[index(id)].extend(d),
                    MuxEvent::Fin(id) => prop_assert_eq!(down_got[index(id)].len(), sizes[index(id)].1),
                    MuxEvent::Closed(_) => closed.0 += 1,
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            if closed == (ids.len(), ids.len()) {
                break;
            }
        }
        prop_assert_eq!(closed, (ids.len(), ids.len()));
        for (i, &id) in ids.iter().enumerate() {
            prop_assert_eq!(&up_got[i], &fill_pattern(id.0, 0, sizes[i].0));
            prop_assert_eq!(&down_got[i], &fill_pattern(!id.0, 0, sizes[i].1));
        }
        prop_assert_eq!((client.num_streams(), server.num_streams()), (0, 0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 30_000, ..ProptestConfig::default() })]

    /// A valid client byte stream with random corruption, fed in random pieces: the server
    /// never panics, fails only with a protocol error, stays dead afterwards, and its events
    /// agree with its counters.
    #[test]
    fn prop_mux_survives_corrupted_input(seed in 1u64..) {
        let mut rng = Rng(seed);
        let mut wire = Vec::new();
        for frame in [
            Frame::Syn(StreamId(3)),
            Frame::Psh(StreamId(3), b"hello".to_vec()),
            Frame::Syn(StreamId(5)),
            Frame::Psh(StreamId(5), vec![7; 40]),
            Frame::Nop(StreamId(0)),
            Frame::Fin(StreamId(3)),
            Frame::Psh(StreamId(5), b"tail".to_vec()),
        ] {
            frame.encode_into(&mut wire).expect("encodes");
        }
        wire.extend(hostile_bytes(&mut rng));
        for _ in 0..rng.next() % 4 {
            let at = (rng.next() as usize) % wire.len();
            wire[at] ^= rng.next() as u8;
        }
        if rng.next().is_multiple_of(3) {
            let keep = (rng.next() as usize) % (wire.len() + 1);
            wire.truncate(keep);
        }
        let cuts: Vec<usize> = (0..1 + rng.next() % 8).map(|_| rng.size(64)).collect();
        let mut server = Mux::new(Role::Server, MuxConfig { max_streams: 4, ..MuxConfig::default() }, 0);
        let mut rest = wire.as_slice();
        let mut failed = None;
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*cut).min(rest.len()));
            rest = tail;
            match server.handle_incoming(piece, 1) {
                Ok(()) => prop_assert!(failed.is_none()),
                Err(MuxError::SessionClosed) => prop_assert!(failed.is_some()),
                Err(error) => {
                    prop_assert!(failed.is_none());
                    prop_assert!(matches!(
                        error,
                        MuxError::BadVersion(_) | MuxError::UnknownCommand(_) | MuxError::UnexpectedUpdate
                    ));
                    failed = Some(error);
                }
            }
        }
        let mut received: BTreeMap<StreamId, u64> = BTreeMap::new();
        for event in events(&mut server) {
            if let MuxEvent::Data(id, data) = event {
                prop_assert!(!data.is_empty());
                *received.entry(id).or_default() += data.len() as u64;
            }
        }
        for (id, bytes) in received {
            if let Some(stats) = server.stream_stats(id) {
                prop_assert_eq!(stats.bytes_in, bytes);
            }
        }
        prop_assert!(server.num_streams() <= 4);
        prop_assert_eq!(server.is_closed(), failed.is_some());
        // Whatever happened, the server can still be polled without panicking.
        while server.poll_transmit(1024).is_some() {}
    }
}

// ---------------------------------------------------------------------------------------------
// Keepalive
// ---------------------------------------------------------------------------------------------

#[test]
fn keepalive_sends_nops_and_times_out_without_traffic() {
    let mut mux = Mux::new(Role::Client, MuxConfig::default(), 1_000);
    assert_eq!(mux.poll_timeout(), Some(11_000));
    mux.handle_timeout(10_999);
    assert_eq!(mux.poll_transmit(1024), None);
    mux.handle_timeout(11_000);
    assert_eq!(mux.poll_transmit(1024), Some(TV8_NOP.to_vec()));
    assert_eq!(mux.poll_timeout(), Some(21_000));

    // Anything received pushes the dead-peer deadline out.
    mux.handle_incoming(&TV8_NOP, 20_000).expect("valid");
    mux.handle_timeout(21_000);
    // Not polled in between: still only one NOP queued.
    mux.handle_timeout(31_000);
    assert_eq!(mux.poll_transmit(1024), Some(TV8_NOP.to_vec()));
    assert_eq!(events(&mut mux), []);
    assert_eq!(mux.poll_timeout(), Some(41_000));
    mux.handle_timeout(41_000);
    assert_eq!(events(&mut mux), []);
    assert_eq!(mux.poll_timeout(), Some(50_000));
    mux.handle_timeout(50_000);
    assert_eq!(events(&mut mux), [MuxEvent::KeepaliveTimeout]);
    assert!(mux.is_closed());
    assert_eq!(mux.poll_timeout(), None);
    assert_eq!(mux.poll_transmit(1024), None);
    assert_eq!(
        mux.handle_incoming(&TV8_NOP, 50_001),
        Err(MuxError::SessionClosed)
    );
}

#[test]
fn keepalive_off_means_no_nops_and_no_timeout() {
    let mut mux = Mux::new(Role::Client, MuxConfig::with_keepalive(false), 0);
    assert_eq!(mux.poll_timeout(), None);
    for hour in 1..=24 {
        mux.handle_timeout(hour * 3_600_000);
    }
    assert_eq!(mux.poll_transmit(1024), None);
    assert_eq!(events(&mut mux), []);
    assert!(!mux.is_closed());
}

/// Runs an idle pair for `duration_ms` of virtual time in 1 s ticks; returns (bytes each
/// way, events each side).
fn idle_pair(
    client_cfg: MuxConfig,
    server_cfg: MuxConfig,
    duration_ms: u64,
) -> ((usize, usize), (Vec<MuxEvent>, Vec<MuxEvent>)) {
    let mut client = Mux::new(Role::Client, client_cfg, 0);
    let mut server = Mux::new(Role::Server, server_cfg, 0);
    let mut rng = Rng(11);
    let mut moved = (0, 0);
    let mut evs = (Vec::new(), Vec::new());
    let mut now = 0;
    while now < duration_ms {
        now += 1_000;
        client.handle_timeout(now);
        server.handle_timeout(now);
        if !client.is_closed() && !server.is_closed() {
            moved.0 += transfer(&mut client, &mut server, &mut rng, now);
            moved.1 += transfer(&mut server, &mut client, &mut rng, now);
        }
        evs.0.extend(events(&mut client));
        evs.1.extend(events(&mut server));
    }
    (moved, evs)
}

#[test]
fn keepalive_on_both_sides_keeps_an_idle_session_alive() {
    let ((up, down), (client_events, server_events)) =
        idle_pair(MuxConfig::default(), MuxConfig::default(), 600_000);
    // One NOP per 10 s each way, and NOPs produce no events.
    assert_eq!(up, 60 * HEADER_LEN);
    assert_eq!(down, 60 * HEADER_LEN);
    assert_eq!(client_events, []);
    assert_eq!(server_events, []);

    // Custom timing is honoured.
    let fast = MuxConfig {
        keepalive: Some(Keepalive {
            interval_ms: 2_000,
            timeout_ms: 5_000,
        }),
        ..MuxConfig::default()
    };
    let ((up, _), (c, s)) = idle_pair(fast.clone(), fast, 60_000);
    assert_eq!(up, 30 * HEADER_LEN);
    assert_eq!((c, s), (vec![], vec![]));
}

#[test]
fn keepalive_mismatch_kills_the_side_that_expects_nops() {
    // Why both sides must agree (G21): a silent client and a keepalive server.
    let ((up, _), (client_events, server_events)) = idle_pair(
        MuxConfig::with_keepalive(false),
        MuxConfig::default(),
        60_000,
    );
    assert_eq!(up, 0);
    assert_eq!(client_events, []);
    assert_eq!(server_events, [MuxEvent::KeepaliveTimeout]);
}

// ---------------------------------------------------------------------------------------------
// Version rules
// ---------------------------------------------------------------------------------------------

#[test]
fn plugin_comparator_table() {
    let table: &[(&str, &str, bool)] = &[
        // The spec's example: different component counts are never greater.
        ("3.1.1511", "3.0.196.0", false),
        ("3.0.196.0", "3.0.196.0", false),
        ("3.0.196.1", "3.0.196.0", true),
        ("3.0.197.0", "3.0.196.0", true),
        ("3.0.1000.0", "3.0.196.0", true),
        ("3.0.20.0", "3.0.196.0", false),
        ("10.0.0.0", "3.0.196.0", true),
        ("2.9.9999.9", "3.0.196.0", false),
        ("3.3.987.0", "3.1.1511.0", true),
        ("3.1.1511.0", "3.1.1511.0", false),
        ("3.1.1511.1", "3.1.1511.0", true),
        ("", "3.0.196.0", false),
        ("3.0.196.0.1", "3.0.196.0", false),
        ("3.x.196.0", "3.0.196.0", false),
        ("3.0.196.0-rc", "3.0.196.0", false),
        (" 4.0.0.0", "3.0.196.0", false),
        // Go's Atoi accepts a sign.
        ("+4.0.0.0", "3.0.196.0", true),
        ("3.-1.0.0", "3.0.196.0", false),
        // Components are parsed only when reached: the first difference decides (source-exact).
        ("4.x.0.0", "3.0.196.0", true),
        ("99999999999999999999.0.0.0", "3.0.196.0", false),
    ];
    for &(a, b, greater) in table {
        assert_eq!(is_greater_plugin(a, b), greater, "{a:?} > {b:?}");
    }
    assert_eq!(
        compare_plugin("3.0.196.0", "3.0.196.0"),
        Some(Ordering::Equal)
    );
    assert_eq!(
        compare_plugin("3.0.20.0", "3.0.196.0"),
        Some(Ordering::Less)
    );
    assert_eq!(compare_plugin("3.1.1511", "3.0.196.0"), None);
}

#[test]
fn agent_comparator_table() {
    use Ordering::{Equal, Greater, Less};
    let table: &[(&str, &str, Ordering)] = &[
        // Not semver (four parts): component-wise.
        ("1.2.650.0", "1.1.70", Greater),
        ("1.2.650.0", "1.2.331.0", Greater),
        ("1.2.331.0", "1.2.331.0", Equal),
        ("1.2.331.1", "1.2.331.0", Greater),
        ("1.2.331", "1.2.331.0", Less),
        ("1.1.70.0", "1.1.70", Greater),
        ("1.10.0.0", "1.9.0.0", Greater),
        // Lexical when either side is not a number.
        ("1.a.0.0", "1.9.0.0", Greater),
        ("abc", "1.1.70", Greater),
        ("", "1.1.70", Less),
        // Both semver: semver precedence.
        ("1.1.70", "1.1.70", Equal),
        ("1.1.69", "1.1.70", Less),
        ("1.1.7", "1.1.70", Less),
        ("1.1.70-beta", "1.1.70", Less),
        ("1.1.70-beta.2", "1.1.70-beta.10", Less),
        ("1.1.70+build.5", "1.1.70", Equal),
        ("2.0.0", "1.1.70", Greater),
    ];
    for &(a, b, expected) in table {
        assert_eq!(compare_agent(a, b), expected, "{a:?} vs {b:?}");
        assert_eq!(compare_agent(b, a), expected.reverse(), "{b:?} vs {a:?}");
    }
}

#[test]
fn client_rules_table() {
    let lpf = LOCAL_PORT_FORWARDING;
    let table: &[(&str, &str, PortMode, bool)] = &[
        (lpf, "2.3.722.0", PortMode::Basic, false),
        (lpf, "2.3.722.1", PortMode::Basic, true),
        (lpf, "3.0.196.0", PortMode::Basic, true),
        (lpf, "3.0.196.1", PortMode::Mux { keepalive: true }, true),
        (lpf, "3.1.1511.0", PortMode::Mux { keepalive: true }, true),
        (lpf, "3.1.1512.0", PortMode::Mux { keepalive: false }, true),
        (lpf, "3.3.987.0", PortMode::Mux { keepalive: false }, true),
        (lpf, "3.1.1511", PortMode::Basic, false),
        (lpf, "", PortMode::Basic, false),
        ("", "3.3.987.0", PortMode::Basic, true),
        ("localportforwarding", "3.3.987.0", PortMode::Basic, true),
    ];
    for &(port_type, agent, mode, flag) in table {
        assert_eq!(
            client_port_mode(port_type, agent),
            mode,
            "{port_type:?} {agent:?}"
        );
        assert_eq!(
            client_supports_terminate_session_flag(agent),
            flag,
            "{agent:?}"
        );
    }
}

#[test]
fn agent_rules_table() {
    let lpf = LOCAL_PORT_FORWARDING;
    let table: &[(&str, &str, PortMode)] = &[
        (lpf, CLIENT_VERSION, PortMode::Mux { keepalive: false }),
        (lpf, "1.1.70", PortMode::Mux { keepalive: true }),
        (lpf, "1.1.69", PortMode::Basic),
        (lpf, "1.1.70.0", PortMode::Mux { keepalive: true }),
        (lpf, "1.2.331.0", PortMode::Mux { keepalive: true }),
        (lpf, "1.2.331.1", PortMode::Mux { keepalive: false }),
        (lpf, "1.2.0.0", PortMode::Mux { keepalive: true }),
        (lpf, "1.0.999.0", PortMode::Basic),
        // A non-numeric client version compares lexically: "ssmtui" > "1".
        (lpf, "ssmtui-0.1", PortMode::Mux { keepalive: false }),
        ("", CLIENT_VERSION, PortMode::Basic),
    ];
    for &(port_type, client, mode) in table {
        assert_eq!(
            agent_port_mode(port_type, client),
            mode,
            "{port_type:?} {client:?}"
        );
    }
    assert_eq!(MUX_SUPPORTED_CLIENT_VERSION, "1.1.70");
    assert_eq!(MUX_KEEPALIVE_DISABLED_AFTER_CLIENT_VERSION, "1.2.331.0");
}

#[test]
fn client_version_is_plain_and_above_every_client_threshold() {
    let parsed: DottedVersion = CLIENT_VERSION.parse().expect("numeric");
    assert_eq!(parsed.components().len(), 4);
    assert_eq!(parsed.to_string(), CLIENT_VERSION);
    assert_ne!(
        compare_agent(CLIENT_VERSION, MUX_SUPPORTED_CLIENT_VERSION),
        Ordering::Less
    );
    assert_eq!(
        compare_agent(CLIENT_VERSION, MUX_KEEPALIVE_DISABLED_AFTER_CLIENT_VERSION),
        Ordering::Greater
    );
    // The plugin's own comparator agrees where it can compare (same component count).
    assert!(is_greater_plugin(
        CLIENT_VERSION,
        MUX_KEEPALIVE_DISABLED_AFTER_CLIENT_VERSION
    ));
}

#[test]
fn both_sides_agree_on_the_mode_for_our_client_version() {
    let agents = [
        "2.3.722.0",
        "3.0.161.0",
        "3.0.196.0",
        "3.0.196.1",
        "3.0.222.0",
        "3.0.1000.0",
        "3.1.0.0",
        "3.1.1511.0",
        "3.1.1511.1",
        "3.1.1512.0",
        "3.2.582.0",
        "3.3.987.0",
        "3.3.1142.0",
        "4.0.0.0",
    ];
    for agent in agents {
        for port_type in [LOCAL_PORT_FORWARDING, "", "SomethingElse"] {
            assert_eq!(
                client_port_mode(port_type, agent),
                emulated_agent_port_mode(agent, port_type, CLIENT_VERSION),
                "agent {agent}, type {port_type:?}"
            );
        }
    }
    // The plugin's three-component quirk is a real disagreement (G15/G21); real agents
    // always report four components.
    assert_eq!(
        client_port_mode(LOCAL_PORT_FORWARDING, "3.1.1511"),
        PortMode::Basic
    );
    assert_eq!(
        emulated_agent_port_mode("3.1.1511", LOCAL_PORT_FORWARDING, CLIENT_VERSION),
        PortMode::Mux { keepalive: true }
    );
    assert_eq!(TCP_MULTIPLEXING_SUPPORTED_AFTER_AGENT_VERSION, "3.0.196.0");
    assert_eq!(SMUX_KEEPALIVE_DISABLED_AFTER_AGENT_VERSION, "3.1.1511.0");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn prop_sides_agree_for_any_four_part_agent_version(
        parts in (0u64..6, 0u64..4, 0u64..3000, 0u64..5),
        lpf in any::<bool>(),
    ) {
        let agent = format!("{}.{}.{}.{}", parts.0, parts.1, parts.2, parts.3);
        let port_type = if lpf { LOCAL_PORT_FORWARDING } else { "" };
        prop_assert_eq!(
            client_port_mode(port_type, &agent),
            emulated_agent_port_mode(&agent, port_type, CLIENT_VERSION)
        );
        // For plainly numeric four-part versions the two comparators agree on "greater".
        prop_assert_eq!(
            is_greater_plugin(&agent, "3.0.196.0"),
            compare_agent(&agent, "3.0.196.0") == Ordering::Greater
        );
    }
}

#[test]
fn dotted_version_parsing() {
    assert_eq!("".parse::<DottedVersion>(), Err(VersionError::Empty));
    assert!(matches!(
        "3.x.1".parse::<DottedVersion>(),
        Err(VersionError::NonNumeric { component, .. }) if component == "x"
    ));
    assert!("+3.0".parse::<DottedVersion>().is_err());
    assert!("3..0".parse::<DottedVersion>().is_err());
    let v: DottedVersion = "3.3.987.0".parse().expect("numeric");
    assert_eq!(v.components(), [3, 3, 987, 0]);
    assert_eq!(v.to_string(), "3.3.987.0");
    assert!(v > "3.3.986.9".parse().expect("numeric"));
}

#[test]
fn header_constants_match_the_spec() {
    assert_eq!(
        (CMD_SYN, CMD_FIN, CMD_PSH, CMD_NOP, CMD_UPD),
        (0, 1, 2, 3, 4)
    );
    assert_eq!(HEADER_LEN + DEFAULT_MAX_FRAME_DATA, 1024);
}
