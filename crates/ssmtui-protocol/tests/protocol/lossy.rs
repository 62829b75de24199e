//! Client and agent sessions driven against each other over a seeded lossy link with a virtual clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde_json::{Value, json};
use ssmtui_protocol::message::ClientMessage;
use ssmtui_protocol::session::{channel_closed_frame, publication_frame};
use ssmtui_protocol::types::{MessageType, SessionType};
use ssmtui_protocol::{Session, SessionConfig, SessionEvent, SessionState};
use uuid::Uuid;

use super::common::*;

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
    client_stats: Option<ssmtui_protocol::SessionStats>,
    agent_stats: Option<ssmtui_protocol::SessionStats>,
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
