//! Helpers shared by the protocol tests: hex and dump parsing, the §12 test vectors as messages.

use ssmtui_protocol::crypto::DataKey;
use ssmtui_protocol::message::ClientMessage;
use ssmtui_protocol::payload::SizeData;
use ssmtui_protocol::types::{Flag, MessageType, PayloadType};
use ssmtui_protocol::{Session, SessionEvent};
use uuid::Uuid;

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Parses the spec's `0000  00 11 22 ...  |ascii|` dumps.
pub(crate) fn from_dump(dump: &str) -> Vec<u8> {
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

pub(crate) fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

pub(crate) fn msg(
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

pub(crate) const TV2_PAYLOAD: &str = r#"{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"3f2504e0-4f89-41d3-9a0c-0305e82c3301","AcknowledgedMessageSequenceNumber":0,"IsSequentialMessage":true}"#;

pub(crate) const TV2_DUMP: &str = r#"
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

pub(crate) const TV3_DUMP: &str = r#"
0000  00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d  |...tinput_stream|
0010  5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20  |_data           |
0020  20 20 20 20 00 00 00 01 00 00 01 8b cf e5 68 7b  |    ..........h{|
0030  00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00  |................|
0040  8a bc de f0 12 34 56 78 a1 b2 c3 d4 e5 f6 47 89  |.....4Vx......G.|
0050  1d 88 7c e0 f8 67 2e 49 14 d9 00 0e 80 1c d7 4e  |..|..g.I.......N|
0060  cd 80 5d d9 36 6c 0b c4 2d c1 6a dc 01 97 dc 2f  |..].6l..-.j..../|
0070  00 00 00 01 00 00 00 03 6c 73 0d                 |........ls.|
"#;

pub(crate) const TV4_DUMP: &str = r#"
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

pub(crate) const TV5_DUMP: &str = r#"
0000  00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d  |...tinput_stream|
0010  5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20  |_data           |
0020  20 20 20 20 00 00 00 01 00 00 01 8b cf e5 6b 15  |    ..........k.|
0030  00 00 00 00 00 00 00 05 00 00 00 00 00 00 00 00  |................|
0040  9d ef 00 00 00 00 be ef c0 ff ee 00 12 34 4a bc  |.............4J.|
0050  43 3e bf 5b c0 3d ff a3 85 36 67 32 07 a2 12 81  |C>.[.=...6g2....|
0060  61 2c ef 5f aa 9b c7 a4 d5 b9 be 2f db 12 cf 1a  |a,._......./....|
0070  00 00 00 0a 00 00 00 04 00 00 00 02              |............|
"#;

pub(crate) fn tv2_message() -> ClientMessage {
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

pub(crate) fn tv3_message() -> ClientMessage {
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

pub(crate) fn tv4_message() -> ClientMessage {
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

pub(crate) fn tv5_message() -> ClientMessage {
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

pub(crate) fn all_vectors() -> Vec<(ClientMessage, Vec<u8>)> {
    vec![
        (tv2_message(), from_dump(TV2_DUMP)),
        (tv3_message(), from_dump(TV3_DUMP)),
        (tv4_message(), from_dump(TV4_DUMP)),
        (tv5_message(), from_dump(TV5_DUMP)),
    ]
}

/// Tiny deterministic PRNG for the hostile-input loops and the link simulation.
#[derive(Clone)]
pub(crate) struct TestRng(pub(crate) u64);

impl TestRng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

pub(crate) const T0: u64 = 1_700_000_000_000;

pub(crate) fn events(s: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

pub(crate) fn tv7_key() -> DataKey {
    let mut k = [0u8; 64];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    DataKey::from_bytes(k)
}
