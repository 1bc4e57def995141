//! The client side of the data-channel session state machine, without sockets or clocks: the
//! caller feeds received frames and the current time in milliseconds, and drains frames to
//! transmit, events, and the next timer deadline. This crate holds the client only; the agent's
//! rules (its flags, counter nonces, publication pauses, the challenge it sends) live in the lab
//! crate, `crates/evoctl-lab`.
//!
//! Rules (from the official client and agent): each direction numbers its stream messages from
//! 0; every stream message is acknowledged by sequence number (acks are selective, not
//! cumulative); messages ahead of the expected number are acked and buffered, up to
//! [`MAX_BUFFERED_BYTES`] (beyond that they are dropped unacked and come again); duplicates are
//! re-acked (the official client does not, which makes a lost ack loop forever); a 100 ms timer
//! looks at the **oldest** unacked message only and resends it once it is older than the RFC
//! 6298 retransmission timeout (start 200 ms, cap 1 s), as the plugin and the agent do, so K lost
//! frames are recovered one after another instead of in a burst. The client holds its input and
//! terminal size until the agent's first output, because the agent drops input that arrives
//! before it is ready; when that first message is a HandshakeRequest (KMS sessions) it holds
//! them until HandshakeComplete and sends only handshake replies. Once a data key is installed,
//! keystrokes travel AES-256-GCM sealed under random nonces, the agent's Output, StdErr and
//! ExitCode are opened, and the encryption challenge is answered here. `pause_publication` and
//! `start_publication` are ignored, as the plugin does.

use super::crypto::{CryptoError, SessionCipher, random_nonce};
use super::frame::{Frame, FrameError, PayloadType, message_type};
use super::messages::{
    Acknowledge, ChannelClosed, EncryptionChallenge, HandshakeComplete, HandshakeRequest, TerminalSize,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::collections::{BTreeMap, VecDeque};

/// Largest payload of one stream message (the agent reads its pty in 1 KiB chunks).
pub const MAX_CHUNK: usize = 1024;
/// Out-of-order messages kept at most; beyond that they are dropped without an ack.
pub const MAX_BUFFERED: usize = 10_000;
/// Payload bytes of out-of-order messages kept at most (about 3 500 full agent frames).
pub const MAX_BUFFERED_BYTES: usize = 4 * 1024 * 1024;
/// The resend timer's period: each tick looks at the oldest unacked message only.
pub const RESEND_TICK_MS: u64 = 100;

/// Something the caller must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Terminal output from the agent (PayloadType 1, in order, exactly once).
    Output(Vec<u8>),
    /// The agent asked for a handshake (KMS sessions).
    HandshakeRequest(HandshakeRequest),
    /// The handshake finished; held input and size are on their way.
    HandshakeComplete(HandshakeComplete),
    /// An encrypted payload (or challenge) could not be opened: wrong key or tampering.
    Undecryptable(CryptoError),
    /// Another in-order stream payload this session does not interpret.
    Other { payload_type: u32, payload: Vec<u8> },
    /// The gateway closed the channel.
    ChannelClosed(ChannelClosed),
    /// A frame failed validation and was dropped without an ack.
    Invalid(FrameError),
}

/// RFC 6298 round-trip estimator with the official constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttEstimator {
    pub srtt_ms: f64,
    pub rttvar_ms: f64,
    pub rto_ms: f64,
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator { srtt_ms: 100.0, rttvar_ms: 0.0, rto_ms: 200.0 }
    }
}

impl RttEstimator {
    /// Fold in one round-trip sample.
    pub fn update(&mut self, sample_ms: f64) {
        self.rttvar_ms = 0.75 * self.rttvar_ms + 0.25 * (self.srtt_ms - sample_ms).abs();
        self.srtt_ms = 0.875 * self.srtt_ms + 0.125 * sample_ms;
        self.rto_ms = (self.srtt_ms + (4.0 * self.rttvar_ms).max(10.0)).min(1000.0);
    }
}

#[derive(Debug)]
struct Pending {
    sequence_number: i64,
    bytes: Vec<u8>,
    last_sent_ms: u64,
}

/// The client's progress towards sending: nothing until the agent speaks, only handshake
/// replies while a handshake runs, everything after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    AwaitingAgent,
    Handshaking,
    Open,
}

/// A source of fresh message ids (random v4 UUIDs in production, a counter in tests).
pub type IdSource = Box<dyn FnMut() -> [u8; 16] + Send>;

/// The wall clock, in Unix milliseconds, for each outgoing frame's CreatedDate. Timers never
/// read it: every `now_ms` the session is given is a monotonic clock's, so a wall-clock step
/// (NTP, a suspended laptop) cannot stall or storm retransmission.
pub type WallClock = Box<dyn FnMut() -> u64 + Send>;

/// The client end of a data channel.
pub struct Session {
    ids: IdSource,
    wall: WallClock,
    next_sequence: i64,
    expected_sequence: i64,
    unacked: VecDeque<Pending>,
    unacked_bytes: usize,
    last_resend_ms: Option<u64>,
    buffered: BTreeMap<i64, Frame>,
    buffered_bytes: usize,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    rtt: RttEstimator,
    gate: Gate,
    cipher: Option<SessionCipher>,
    queued_input: VecDeque<(PayloadType, Vec<u8>)>,
    size: Option<TerminalSize>,
    closed: bool,
    resends: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("next_sequence", &self.next_sequence)
            .field("expected_sequence", &self.expected_sequence)
            .field("unacked", &self.unacked.len())
            .field("buffered", &self.buffered.len())
            .finish()
    }
}

impl Session {
    /// A client session whose frames take message ids from `ids` and CreatedDate from `wall`;
    /// the `now_ms` of every call is a monotonic clock (any origin).
    pub fn new(ids: IdSource, wall: WallClock) -> Session {
        Session {
            ids,
            wall,
            next_sequence: 0,
            expected_sequence: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            last_resend_ms: None,
            buffered: BTreeMap::new(),
            buffered_bytes: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            rtt: RttEstimator::default(),
            gate: Gate::AwaitingAgent,
            cipher: None,
            queued_input: VecDeque::new(),
            size: None,
            closed: false,
            resends: 0,
        }
    }

    /// A client session with random v4 UUID message ids and the given wall clock.
    pub fn with_random_ids(wall: WallClock) -> Session {
        Session::new(Box::new(|| *uuid::Uuid::new_v4().as_bytes()), wall)
    }

    /// The next encoded frame to put on the socket.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event for the caller.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Stream messages sent and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.len() + self.queued_input.len()
    }

    /// Bytes of stream messages sent (or held back) and not yet acknowledged: the caller stops
    /// feeding input above its cap, so input waits instead of growing.
    pub fn unacked_bytes(&self) -> usize {
        self.unacked_bytes
    }

    /// How many times a message was sent again.
    pub fn resends(&self) -> u64 {
        self.resends
    }

    /// Whether the gateway closed the channel.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The current round-trip estimate.
    pub fn rtt(&self) -> RttEstimator {
        self.rtt
    }

    /// When [`Session::handle_timeout`] should next run, if anything awaits an ack.
    pub fn next_timeout(&self) -> Option<u64> {
        let rto = self.rtt.rto_ms as u64;
        let due = self.unacked.front()?.last_sent_ms + rto;
        Some(self.last_resend_ms.map_or(due, |last| due.max(last + RESEND_TICK_MS)))
    }

    /// A timer tick: resend the oldest unacked message if its retransmission timeout has
    /// passed, at most once per [`RESEND_TICK_MS`].
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.last_resend_ms.is_some_and(|last| now_ms < last + RESEND_TICK_MS) {
            return;
        }
        let rto = self.rtt.rto_ms as u64;
        let Some(oldest) = self.unacked.front_mut() else { return };
        if now_ms >= oldest.last_sent_ms + rto {
            oldest.last_sent_ms = now_ms;
            self.transmit.push_back(oldest.bytes.clone());
            self.resends += 1;
            self.last_resend_ms = Some(now_ms);
        }
    }

    /// Send keystrokes, cut into chunks of at most [`MAX_CHUNK`] bytes.
    pub fn send_data(&mut self, data: &[u8], now_ms: u64) {
        for chunk in data.chunks(MAX_CHUNK) {
            self.send_stream(PayloadType::Output, chunk.to_vec(), now_ms);
        }
    }

    /// Set the terminal size; sent once the agent is ready, and on every change.
    pub fn set_size(&mut self, size: TerminalSize, now_ms: u64) {
        if self.size == Some(size) {
            return;
        }
        self.size = Some(size);
        let payload = serde_json::to_vec(&size).expect("size serialises");
        self.send_stream(PayloadType::Size, payload, now_ms);
    }

    /// Install the session's data key (a [`SessionCipher`] for the client side): from now on
    /// keystrokes are sealed with random nonces on the way out, and the agent's Output, StdErr
    /// and ExitCode are opened on the way in.
    pub fn enable_encryption(&mut self, cipher: SessionCipher) {
        self.cipher = Some(cipher);
    }

    /// The agent asked for a handshake that has not completed yet.
    pub fn handshake_pending(&self) -> bool {
        self.gate == Gate::Handshaking
    }

    /// Whether a data key is installed.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// Send one stream message of any payload type; it is held until the agent is ready and any
    /// handshake is complete.
    pub fn send_stream(&mut self, payload_type: PayloadType, payload: Vec<u8>, now_ms: u64) {
        if self.gate != Gate::Open {
            self.unacked_bytes += payload.len();
            self.queued_input.push_back((payload_type, payload));
            return;
        }
        self.transmit_stream(payload_type, payload, now_ms);
    }

    /// Send a handshake message now (the HandshakeResponse, the challenge's answer), ahead of
    /// anything held back.
    pub fn send_handshake(&mut self, payload_type: PayloadType, payload: Vec<u8>, now_ms: u64) {
        self.transmit_stream(payload_type, payload, now_ms);
    }

    fn seal(&self, plaintext: &[u8]) -> Option<Vec<u8>> {
        Some(self.cipher.as_ref()?.seal(plaintext, random_nonce()))
    }

    fn open(&self, envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match &self.cipher {
            Some(cipher) => cipher.open(envelope),
            None => Err(CryptoError::NoKey),
        }
    }

    /// Whether the agent seals payloads of this type (and so the client opens them).
    fn sealed_incoming(payload_type: PayloadType) -> bool {
        matches!(payload_type, PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode)
    }

    fn transmit_stream(&mut self, payload_type: PayloadType, payload: Vec<u8>, now_ms: u64) {
        let payload = match payload_type == PayloadType::Output {
            true => self.seal(&payload).unwrap_or(payload),
            false => payload,
        };
        let sequence_number = self.next_sequence;
        self.next_sequence += 1;
        let frame = Frame::new(
            message_type::INPUT_STREAM_DATA,
            sequence_number,
            0,
            (self.ids)(),
            (self.wall)().max(1),
            payload_type.as_u32(),
            payload,
        );
        let bytes = frame.encode().expect("fresh ids are never nil");
        self.unacked_bytes += bytes.len();
        self.unacked.push_back(Pending { sequence_number, bytes: bytes.clone(), last_sent_ms: now_ms });
        self.transmit.push_back(bytes);
    }

    /// Feed one frame received from the socket.
    pub fn receive(&mut self, bytes: &[u8], now_ms: u64) {
        let frame = match Frame::decode(bytes) {
            Ok(frame) => frame,
            Err(err) => {
                self.events.push_back(Event::Invalid(err));
                return;
            }
        };
        match frame.message_type.as_str() {
            message_type::ACKNOWLEDGE => self.on_ack(&frame, now_ms),
            message_type::CHANNEL_CLOSED => {
                self.closed = true;
                let body = serde_json::from_slice::<ChannelClosed>(&frame.payload).unwrap_or_default();
                self.events.push_back(Event::ChannelClosed(body));
            }
            message_type::OUTPUT_STREAM_DATA => self.on_stream(frame, now_ms),
            _ => {}
        }
    }

    fn on_ack(&mut self, frame: &Frame, now_ms: u64) {
        let Ok(ack) = serde_json::from_slice::<Acknowledge>(&frame.payload) else { return };
        if let Some(index) = self.unacked.iter().position(|p| p.sequence_number == ack.sequence_number) {
            let pending = self.unacked.remove(index).expect("index is in range");
            self.unacked_bytes -= pending.bytes.len();
            self.rtt.update(now_ms.saturating_sub(pending.last_sent_ms) as f64);
        }
    }

    fn on_stream(&mut self, frame: Frame, now_ms: u64) {
        let sequence = frame.sequence_number;
        if sequence < self.expected_sequence {
            self.acknowledge(&frame);
            return;
        }
        if sequence > self.expected_sequence {
            let known = self.buffered.contains_key(&sequence);
            let room =
                self.buffered.len() < MAX_BUFFERED && self.buffered_bytes + frame.payload.len() <= MAX_BUFFERED_BYTES;
            if known || room {
                self.acknowledge(&frame);
                if !known {
                    self.buffered_bytes += frame.payload.len();
                    self.buffered.insert(sequence, frame);
                }
            }
            return;
        }
        self.acknowledge(&frame);
        self.deliver(frame, now_ms);
        self.expected_sequence += 1;
        while let Some(next) = self.buffered.remove(&self.expected_sequence) {
            self.buffered_bytes -= next.payload.len();
            self.deliver(next, now_ms);
            self.expected_sequence += 1;
        }
    }

    /// Let held input and size go.
    fn open_gate(&mut self, now_ms: u64) {
        self.gate = Gate::Open;
        while let Some((payload_type, payload)) = self.queued_input.pop_front() {
            self.unacked_bytes -= payload.len();
            self.transmit_stream(payload_type, payload, now_ms);
        }
    }

    fn deliver(&mut self, mut frame: Frame, now_ms: u64) {
        let kind = frame.kind();
        if self.gate == Gate::AwaitingAgent {
            if kind == PayloadType::HandshakeRequest {
                self.gate = Gate::Handshaking;
            } else {
                self.open_gate(now_ms);
            }
        }
        if Self::sealed_incoming(kind) && self.cipher.is_some() {
            match self.open(&frame.payload) {
                Ok(plain) => frame.payload = plain,
                Err(err) => {
                    self.events.push_back(Event::Undecryptable(err));
                    return;
                }
            }
        }
        let event = match kind {
            PayloadType::Output => Event::Output(frame.payload),
            PayloadType::HandshakeRequest => match serde_json::from_slice(&frame.payload) {
                Ok(request) => Event::HandshakeRequest(request),
                Err(_) => Event::Other { payload_type: frame.payload_type, payload: frame.payload },
            },
            PayloadType::EncChallengeRequest => match self.answer_challenge(&frame.payload, now_ms) {
                Ok(()) => return,
                Err(err) => Event::Undecryptable(err),
            },
            PayloadType::HandshakeComplete => {
                let complete: HandshakeComplete = serde_json::from_slice(&frame.payload)
                    .unwrap_or(HandshakeComplete { handshake_time_to_complete: 0, customer_message: String::new() });
                self.open_gate(now_ms);
                Event::HandshakeComplete(complete)
            }
            _ => Event::Other { payload_type: frame.payload_type, payload: frame.payload },
        };
        self.events.push_back(event);
    }

    /// The challenge body's bytes, opened with the client's key.
    fn read_challenge(&self, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let body: EncryptionChallenge = serde_json::from_slice(payload).map_err(|_| CryptoError::Malformed)?;
        let sealed = BASE64.decode(body.challenge).map_err(|_| CryptoError::Malformed)?;
        self.open(&sealed)
    }

    /// Open the agent's challenge and send it back sealed with the client's key.
    fn answer_challenge(&mut self, payload: &[u8], now_ms: u64) -> Result<(), CryptoError> {
        let plain = self.read_challenge(payload)?;
        let sealed = self.seal(&plain).ok_or(CryptoError::NoKey)?;
        let body = EncryptionChallenge { challenge: BASE64.encode(sealed) };
        self.send_handshake(PayloadType::EncChallengeResponse, serde_json::to_vec(&body).expect("serialises"), now_ms);
        Ok(())
    }

    fn acknowledge(&mut self, frame: &Frame) {
        let ack = Acknowledge {
            message_type: frame.message_type.clone(),
            message_id: frame.message_id_string(),
            sequence_number: frame.sequence_number,
            is_sequential: true,
        };
        let payload = serde_json::to_vec(&ack).expect("ack serialises");
        let reply = Frame::new(message_type::ACKNOWLEDGE, 0, 3, (self.ids)(), (self.wall)().max(1), 0, payload);
        self.transmit.push_back(reply.encode().expect("fresh ids are never nil"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{SessionCipher, Side};
    use crate::frame::Frame;
    use crate::handshake;
    use crate::messages::HandshakeResponse;

    /// The wall clock every test session reads for CreatedDate.
    const WALL_MS: u64 = 1_764_633_600_000;

    fn counter_ids(start: u8) -> IdSource {
        let mut n = 0u64;
        Box::new(move || {
            n += 1;
            let mut id = [start; 16];
            id[8..].copy_from_slice(&n.to_be_bytes());
            id
        })
    }

    fn client() -> Session {
        Session::new(counter_ids(1), Box::new(|| WALL_MS))
    }

    /// A stand-in for the agent, test-only: it builds raw `output_stream_data` frames and acks
    /// with [`Frame::new`] and reads the client's frames with [`Frame::decode`]; no `Session`.
    struct Peer {
        next_sequence: i64,
        ids: u64,
    }

    impl Peer {
        fn new() -> Peer {
            Peer { next_sequence: 0, ids: 0 }
        }

        fn id(&mut self) -> [u8; 16] {
            self.ids += 1;
            let mut id = [2u8; 16];
            id[8..].copy_from_slice(&self.ids.to_be_bytes());
            id
        }

        /// The agent's next stream message (flags 1 on seq 0, as the agent sends).
        fn stream(&mut self, payload_type: PayloadType, payload: &[u8]) -> Vec<u8> {
            let sequence = self.next_sequence;
            self.next_sequence += 1;
            self.stream_at(sequence, payload_type, payload)
        }

        fn stream_at(&mut self, sequence: i64, payload_type: PayloadType, payload: &[u8]) -> Vec<u8> {
            let flags = u64::from(sequence == 0);
            let id = self.id();
            Frame::new(
                message_type::OUTPUT_STREAM_DATA,
                sequence,
                flags,
                id,
                WALL_MS,
                payload_type.as_u32(),
                payload.to_vec(),
            )
            .encode()
            .unwrap()
        }

        fn output(&mut self, payload: &[u8]) -> Vec<u8> {
            self.stream(PayloadType::Output, payload)
        }

        /// The agent's ack of one of the client's frames.
        fn ack(&mut self, frame: &Frame) -> Vec<u8> {
            let body = Acknowledge {
                message_type: frame.message_type.clone(),
                message_id: frame.message_id_string(),
                sequence_number: frame.sequence_number,
                is_sequential: true,
            };
            let id = self.id();
            Frame::new(message_type::ACKNOWLEDGE, 0, 3, id, WALL_MS, 0, serde_json::to_vec(&body).unwrap())
                .encode()
                .unwrap()
        }
    }

    /// Every frame the client has queued, decoded.
    fn sent(client: &mut Session) -> Vec<Frame> {
        std::iter::from_fn(|| client.poll_transmit()).map(|b| decoded(&b)).collect()
    }

    fn kinds(frames: &[Frame]) -> Vec<(&str, i64, u32)> {
        frames.iter().map(|f| (f.message_type.as_str(), f.sequence_number, f.payload_type)).collect()
    }

    fn ack_body(frame: &Frame) -> Acknowledge {
        assert_eq!(frame.message_type, message_type::ACKNOWLEDGE);
        serde_json::from_slice(&frame.payload).unwrap()
    }

    fn outputs(session: &mut Session) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(event) = session.poll_event() {
            if let Event::Output(bytes) = event {
                out.extend(bytes);
            }
        }
        out
    }

    fn decoded(bytes: &[u8]) -> Frame {
        Frame::decode(bytes).unwrap()
    }

    /// A client whose gate the agent's first output has opened, with nothing left to send.
    fn open_client(peer: &mut Peer) -> Session {
        let mut client = client();
        client.receive(&peer.output(b"$ "), 1);
        assert_eq!(outputs(&mut client), b"$ ");
        assert_eq!(sent(&mut client).len(), 1, "the ack of the prompt");
        client
    }

    /// CreatedDate is the wall clock's; the timer clock (`now_ms`) is never written to a frame,
    /// input or acknowledgement.
    #[test]
    fn created_date_comes_from_the_wall_clock_not_the_timer_clock() {
        let mut peer = Peer::new();
        let mut client = open_client(&mut peer);
        client.send_data(b"x", 5);
        let frame = decoded(&client.poll_transmit().expect("a frame"));
        assert_eq!(frame.created_date, WALL_MS);
        client.receive(&peer.output(b"y"), 7);
        let ack = decoded(&client.poll_transmit().expect("the ack"));
        assert_eq!((ack.message_type.as_str(), ack.created_date), ("acknowledge", WALL_MS));
    }

    #[test]
    fn rto_update_matches_the_upstream_vector() {
        let mut rtt = RttEstimator::default();
        rtt.update(140.0);
        assert_eq!(rtt, RttEstimator { srtt_ms: 105.0, rttvar_ms: 10.0, rto_ms: 145.0 });
    }

    #[test]
    fn rto_is_capped_at_one_second() {
        let mut rtt = RttEstimator::default();
        rtt.update(5000.0);
        assert_eq!(rtt.rto_ms, 1000.0);
    }

    #[test]
    fn client_holds_input_and_size_until_the_agent_speaks() {
        let mut peer = Peer::new();
        let mut client = client();
        client.set_size(TerminalSize { cols: 80, rows: 24 }, 1);
        client.send_data(b"echo ok\r", 1);
        assert!(client.poll_transmit().is_none());
        assert_eq!(client.unacked(), 2);
        assert_eq!(client.next_timeout(), None, "nothing held back is resent");
        client.receive(&peer.output(b"$ "), 3);
        assert_eq!(outputs(&mut client), b"$ ");
        let frames = sent(&mut client);
        assert_eq!(
            kinds(&frames),
            [("acknowledge", 0, 0), ("input_stream_data", 0, 3), ("input_stream_data", 1, 1)],
            "ack first, then Size (seq 0), then the keystrokes (seq 1)"
        );
        assert_eq!(frames[1].payload, br#"{"cols":80,"rows":24}"#);
        assert_eq!(frames[2].payload, b"echo ok\r");
        // The same size again is not sent; a new one is.
        client.set_size(TerminalSize { cols: 80, rows: 24 }, 4);
        assert!(client.poll_transmit().is_none());
        client.set_size(TerminalSize { cols: 100, rows: 30 }, 4);
        assert_eq!(kinds(&sent(&mut client)), [("input_stream_data", 2, 3)]);
    }

    #[test]
    fn acks_and_input_frames_have_the_official_shape() {
        let mut peer = Peer::new();
        let mut client = client();
        let first = peer.output(b"a");
        client.receive(&first, 6);
        let first = decoded(&first);
        let acks = sent(&mut client);
        assert_eq!(acks.len(), 1);
        let ack = &acks[0];
        assert_eq!(
            (ack.message_type.as_str(), ack.sequence_number, ack.flags, ack.payload_type),
            ("acknowledge", 0, 3, 0)
        );
        let body = ack_body(ack);
        assert_eq!(body.message_type, "output_stream_data");
        assert_eq!(body.sequence_number, 0);
        assert_eq!(body.message_id, first.message_id_string());
        assert!(body.is_sequential);

        client.send_data(b"k", 7);
        client.send_data(b"l", 7);
        let input = sent(&mut client);
        let shape: Vec<(&str, i64, u64, u32)> =
            input.iter().map(|f| (f.message_type.as_str(), f.sequence_number, f.flags, f.payload_type)).collect();
        assert_eq!(shape, [("input_stream_data", 0, 0, 1), ("input_stream_data", 1, 0, 1)], "client flags are 0");
        assert_ne!(input[0].message_id, input[1].message_id, "fresh ids");
    }

    #[test]
    fn out_of_order_frames_are_buffered_and_delivered_in_order() {
        let mut peer = Peer::new();
        let mut client = client();
        let frames: Vec<Vec<u8>> = [b"one ".as_slice(), b"two ", b"three"].iter().map(|p| peer.output(p)).collect();
        client.receive(&frames[2], 2);
        assert_eq!(client.poll_event(), None, "held until its turn");
        for index in [0, 1] {
            client.receive(&frames[index], 2);
        }
        assert_eq!(outputs(&mut client), b"one two three");
        let acked: Vec<i64> = sent(&mut client).iter().map(|f| ack_body(f).sequence_number).collect();
        assert_eq!(acked, [2, 0, 1], "every frame acked as it arrives");
    }

    #[test]
    fn duplicates_are_re_acked_but_delivered_once() {
        let mut peer = Peer::new();
        let mut client = client();
        let zero = peer.output(b"x");
        let two = peer.stream_at(2, PayloadType::Output, b"z");
        client.receive(&zero, 2);
        client.receive(&zero, 3);
        client.receive(&two, 3);
        client.receive(&two, 3);
        client.receive(&peer.stream_at(1, PayloadType::Output, b"y"), 4);
        client.receive(&two, 4);
        assert_eq!(outputs(&mut client), b"xyz");
        let acked: Vec<i64> = sent(&mut client).iter().map(|f| ack_body(f).sequence_number).collect();
        assert_eq!(acked, [0, 0, 2, 2, 1, 2], "every copy is acked");
    }

    #[test]
    fn a_lost_input_frame_is_resent_after_the_rto_and_its_ack_clears_it() {
        let mut peer = Peer::new();
        let mut client = open_client(&mut peer);
        client.send_data(b"lost", 1_000);
        let dropped = client.poll_transmit().unwrap();
        assert_eq!(client.next_timeout(), Some(1_200));
        client.handle_timeout(1_199);
        assert!(client.poll_transmit().is_none());
        client.handle_timeout(1_200);
        assert_eq!(client.resends(), 1);
        let resent = client.poll_transmit().expect("resent");
        assert_eq!(resent, dropped, "the same frame, byte for byte");
        let resent = decoded(&resent);
        assert_eq!((resent.sequence_number, resent.payload.as_slice()), (0, b"lost".as_slice()));
        client.receive(&peer.ack(&resent), 1_220);
        assert_eq!(client.unacked(), 0);
        assert_eq!(client.unacked_bytes(), 0);
        assert_eq!(client.next_timeout(), None);
        assert_eq!(client.rtt().srtt_ms, 0.875 * 100.0 + 0.125 * 20.0);
        client.handle_timeout(5_000);
        assert!(client.poll_transmit().is_none(), "nothing left to resend");
    }

    /// Three lost input frames come back one after another, each only once the one before it
    /// was acknowledged and at least a tick later, never in a burst (§3.6, §9 row 1).
    #[test]
    fn only_the_oldest_unacked_frame_is_resent_per_tick() {
        let mut peer = Peer::new();
        let mut client = open_client(&mut peer);
        for key in [b"a", b"b", b"c"] {
            client.send_data(key, 1_000);
        }
        let lost = sent(&mut client);
        assert_eq!(lost.len(), 3);
        // Unacked, the oldest is resent again and again; the younger overdue ones wait.
        client.handle_timeout(1_200);
        client.handle_timeout(1_250);
        client.handle_timeout(1_400);
        let again: Vec<i64> = sent(&mut client).iter().map(|f| f.sequence_number).collect();
        assert_eq!(again, [0, 0]);
        let mut resent = Vec::new();
        let mut now = 1_400;
        while client.unacked() > 0 && now < 10_000 {
            now = client.next_timeout().expect("something awaits an ack").max(now);
            client.handle_timeout(now);
            let frames = sent(&mut client);
            assert!(frames.len() <= 1, "at most one resend per tick, got {} at {now}", frames.len());
            for frame in frames {
                resent.push((now, frame.sequence_number));
                client.receive(&peer.ack(&frame), now + 10);
            }
        }
        let sequences: Vec<i64> = resent.iter().map(|(_, seq)| *seq).collect();
        assert_eq!(sequences, [0, 1, 2], "oldest first, each once");
        assert!(resent.windows(2).all(|w| w[1].0 >= w[0].0 + RESEND_TICK_MS), "{resent:?}");
        assert_eq!(client.unacked_bytes(), 0);
        assert_eq!(client.resends(), 5);
    }

    #[test]
    fn out_of_order_buffering_is_capped_in_bytes() {
        let mut peer = Peer::new();
        let mut client = client();
        let first = peer.output(&[b'x'; 1000]);
        let frames = MAX_BUFFERED_BYTES / 1000 + 10;
        let mut acks = 0;
        for _ in 0..frames {
            client.receive(&peer.output(&[b'y'; 1000]), 2);
            acks += std::iter::from_fn(|| client.poll_transmit()).count();
        }
        assert_eq!(acks, MAX_BUFFERED_BYTES / 1000, "frames past the byte cap are not acked");
        client.receive(&first, 3);
        assert_eq!(outputs(&mut client).len(), 1000 + acks * 1000, "the buffered ones are delivered");
    }

    #[test]
    fn the_client_ignores_publication_messages() {
        let mut peer = Peer::new();
        let mut client = open_client(&mut peer);
        let pause = Frame::new("pause_publication", 0, 0, [9; 16], 1, 0, vec![]).encode().unwrap();
        let start = Frame::new("start_publication", 0, 0, [8; 16], 1, 0, vec![]).encode().unwrap();
        client.receive(&pause, 5);
        client.send_data(b"k", 5);
        assert!(client.poll_transmit().is_some(), "input still goes out");
        client.handle_timeout(10_000);
        assert!(client.poll_transmit().is_some(), "and is still resent");
        client.receive(&start, 10_001);
        assert!(client.poll_transmit().is_none());
        assert_eq!(client.poll_event(), None);
    }

    #[test]
    fn channel_closed_is_reported_with_its_output() {
        let mut client = client();
        let body = br#"{"MessageId":"x","CreatedDate":1503434274948,"SessionId":"s","MessageType":"channel_closed","SchemaVersion":1,"Output":"boom"}"#;
        let frame = Frame::new("channel_closed", 0, 0, [3; 16], 1, 0, body.to_vec()).encode().unwrap();
        client.receive(&frame, 1);
        assert!(client.is_closed());
        match client.poll_event() {
            Some(Event::ChannelClosed(closed)) => {
                assert_eq!(closed.output, "boom");
                assert_eq!(closed.created_date, "1503434274948");
            }
            other => panic!("{other:?}"),
        }
        assert!(client.poll_transmit().is_none(), "channel_closed is not acked");
    }

    #[test]
    fn corrupt_frames_are_reported_and_not_acked() {
        let mut peer = Peer::new();
        let mut client = client();
        let mut frame = peer.output(b"x");
        let last = frame.len() - 1;
        frame[last] ^= 1;
        client.receive(&frame, 2);
        assert_eq!(client.poll_event(), Some(Event::Invalid(FrameError::DigestMismatch)));
        assert!(client.poll_transmit().is_none());
    }

    #[test]
    fn large_input_is_chunked() {
        let mut peer = Peer::new();
        let mut client = open_client(&mut peer);
        client.send_data(&vec![b'a'; 2500], 1);
        let frames = sent(&mut client);
        let chunks: Vec<(i64, usize)> = frames.iter().map(|f| (f.sequence_number, f.payload.len())).collect();
        assert_eq!(chunks, [(0, 1024), (1, 1024), (2, 452)]);
        assert_eq!(client.unacked(), 3);
    }

    /// The KMS handshake of the shared doc's table (§3.4) from the client's side, the agent
    /// played by raw frames: sequence numbers, what is held back, and what travels sealed.
    #[test]
    fn a_kms_session_handshakes_then_seals_output_both_ways() {
        let mut peer = Peer::new();
        let mut client = client();
        let key = [5u8; 64];
        let agent = SessionCipher::new(&key, Side::Agent).unwrap();
        client.set_size(TerminalSize { cols: 80, rows: 24 }, 1);
        client.send_data(b"typed early", 1);

        // HandshakeRequest (agent seq 0): the client acks it and sends nothing else.
        let request = br#"{"AgentVersion":"3.3.0.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"InteractiveCommands","Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"k","Challenge":"Y2g="}}]}"#;
        client.receive(&peer.stream(PayloadType::HandshakeRequest, request), 3);
        let Some(Event::HandshakeRequest(seen)) = client.poll_event() else { panic!("no handshake request") };
        assert!(client.handshake_pending());
        let requested = handshake::read_request(&seen);
        assert_eq!(
            requested,
            handshake::Requested {
                kms: Some(handshake::KmsAction { key_id: "k".into(), challenge: Some("Y2g=".into()) }),
                refused: vec![],
            }
        );
        assert_eq!(kinds(&sent(&mut client)), [("acknowledge", 0, 0)], "only the ack while the handshake runs");

        // HandshakeResponse (client seq 0), sent ahead of the held input.
        client.enable_encryption(SessionCipher::new(&key, Side::Client).unwrap());
        assert!(client.is_encrypted());
        let wrapped = handshake::KmsReply { ciphertext: b"blob".to_vec(), challenge_acknowledged: true };
        let reply = serde_json::to_vec(&handshake::response(&seen, Some(&wrapped), "t")).unwrap();
        client.send_handshake(PayloadType::HandshakeResponse, reply, 4);
        let sent_reply = sent(&mut client);
        assert_eq!(kinds(&sent_reply), [("input_stream_data", 0, 6)]);
        let response: HandshakeResponse = serde_json::from_slice(&sent_reply[0].payload).unwrap();
        let statuses: Vec<i32> = response.processed_client_actions.iter().map(|a| a.action_status).collect();
        assert_eq!(statuses, [1, 1]);
        let kms_result = &response.processed_client_actions[1].action_result;
        assert_eq!(kms_result["KMSCipherTextKey"], "YmxvYg==");
        assert_eq!(kms_result["ChallengeAcknowledgement"], true);
        client.receive(&peer.ack(&sent_reply[0]), 5);

        // EncChallengeRequest (agent seq 1): opened with the agent's half, answered with the
        // client's (client seq 1).
        let challenge = EncryptionChallenge { challenge: BASE64.encode(agent.seal(&[9u8; 64], [7; 12])) };
        client.receive(&peer.stream(PayloadType::EncChallengeRequest, &serde_json::to_vec(&challenge).unwrap()), 7);
        assert_eq!(client.poll_event(), None, "the challenge is answered, not reported");
        let answer = sent(&mut client);
        assert_eq!(kinds(&answer), [("acknowledge", 0, 0), ("input_stream_data", 1, 9)]);
        assert_eq!(ack_body(&answer[0]).sequence_number, 1);
        let body: EncryptionChallenge = serde_json::from_slice(&answer[1].payload).unwrap();
        let sealed = BASE64.decode(body.challenge).unwrap();
        assert_eq!(agent.open(&sealed).unwrap(), [9u8; 64], "sealed back with the client's key");
        client.receive(&peer.ack(&answer[1]), 8);

        // HandshakeComplete (agent seq 2): the held Size and keystrokes go, in that order.
        let done = br#"{"HandshakeTimeToComplete":5,"CustomerMessage":"This session is encrypted using AWS KMS."}"#;
        client.receive(&peer.stream(PayloadType::HandshakeComplete, done), 10);
        assert!(matches!(client.poll_event(), Some(Event::HandshakeComplete(c)) if c.handshake_time_to_complete == 5));
        assert!(!client.handshake_pending());
        let held = sent(&mut client);
        assert_eq!(kinds(&held), [("acknowledge", 0, 0), ("input_stream_data", 2, 3), ("input_stream_data", 3, 1)]);
        assert_eq!(held[1].payload, br#"{"cols":80,"rows":24}"#, "Size stays plaintext");
        assert_eq!(held[2].payload.len(), 12 + b"typed early".len() + 16, "keystrokes are sealed");
        assert_eq!(agent.open(&held[2].payload).unwrap(), b"typed early");
        for frame in &held[1..] {
            client.receive(&peer.ack(frame), 11);
        }
        assert_eq!(client.unacked(), 0);

        // Sealed output (and StdErr) from the agent is opened; keystrokes go out sealed under
        // fresh random nonces.
        client.receive(&peer.output(&agent.seal(b"secret output", [1; 12])), 13);
        assert_eq!(outputs(&mut client), b"secret output");
        client.receive(&peer.stream(PayloadType::StdErr, &agent.seal(b"warn", [2; 12])), 13);
        assert_eq!(client.poll_event(), Some(Event::Other { payload_type: 11, payload: b"warn".to_vec() }));
        client.send_data(b"ls", 14);
        client.send_data(b"ls", 14);
        let typed: Vec<Frame> =
            sent(&mut client).into_iter().filter(|f| f.message_type == "input_stream_data").collect();
        assert_eq!(typed.len(), 2);
        assert_ne!(typed[0].payload[..12], typed[1].payload[..12], "random nonces");
        assert!(typed.iter().all(|f| agent.open(&f.payload).unwrap() == b"ls"));

        // A tampered envelope is acked (the frame itself is intact) but reported, not delivered.
        let mut forged = agent.seal(b"x", [3; 12]);
        forged[13] ^= 1;
        client.receive(&peer.output(&forged), 15);
        assert_eq!(client.poll_event(), Some(Event::Undecryptable(CryptoError::Authentication)));
        assert_eq!(kinds(&sent(&mut client)), [("acknowledge", 0, 0)]);
    }

    proptest::proptest! {
        /// Whatever the loss, duplication and order on the wire, both ways, the client gets every
        /// output byte exactly once and in order, and its resends (oldest first, one per tick)
        /// get every keystroke to the agent, given enough timer ticks.
        #[test]
        fn lossy_links_deliver_exactly_once_in_order(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 1..300), 1..40),
            fate in proptest::collection::vec(0u8..10, 1..200),
        ) {
            let mut client = client();
            let mut peer = Peer::new();
            let mut expected = Vec::new();
            // The agent's output, kept until the client acks it (the test peer resends all of
            // it every round), and the client's keystrokes: the same chunks back.
            let mut output: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
            let mut now = 1u64;
            for chunk in &chunks {
                let bytes = peer.output(chunk);
                output.insert(decoded(&bytes).sequence_number, bytes);
                client.send_data(chunk, now);
                expected.extend_from_slice(chunk);
            }
            let mut received = Vec::new();
            let mut typed: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
            let mut fates = fate.iter().cycle();
            for round in 0..1000 {
                // Faults for the first 200 rounds, then a clean link: delivery must complete.
                let mut fate_now = || if round < 200 { fates.next().copied().unwrap_or(9) } else { 9 };
                let mut to_client: Vec<Vec<u8>> = Vec::new();
                for bytes in output.values() {
                    match fate_now() {
                        0 | 1 => {}                                                   // dropped
                        2 => { to_client.push(bytes.clone()); to_client.push(bytes.clone()); } // duplicated
                        3 => to_client.insert(0, bytes.clone()),                      // reordered
                        _ => to_client.push(bytes.clone()),
                    }
                }
                for bytes in to_client {
                    client.receive(&bytes, now);
                }
                received.extend(outputs(&mut client));
                let mut to_peer: Vec<Frame> = Vec::new();
                while let Some(bytes) = client.poll_transmit() {
                    match fate_now() {
                        0 => {}
                        3 => to_peer.insert(0, decoded(&bytes)),
                        _ => to_peer.push(decoded(&bytes)),
                    }
                }
                let mut acks = Vec::new();
                for frame in to_peer {
                    if frame.message_type == message_type::ACKNOWLEDGE {
                        output.remove(&ack_body(&frame).sequence_number);
                    } else {
                        typed.entry(frame.sequence_number).or_insert_with(|| frame.payload.clone());
                        acks.push(peer.ack(&frame));
                    }
                }
                for ack in acks {
                    if fate_now() != 0 {
                        client.receive(&ack, now);
                    }
                }
                if output.is_empty() && client.unacked() == 0 { break; }
                now += 250;
                client.handle_timeout(now);
            }
            proptest::prop_assert_eq!(&received, &expected);
            let typed: Vec<u8> = typed.into_values().flatten().collect();
            proptest::prop_assert_eq!(typed, expected);
            proptest::prop_assert_eq!(client.unacked_bytes(), 0);
        }

        #[test]
        fn arbitrary_input_never_panics(frames in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..20)) {
            let mut client = client();
            for bytes in frames {
                client.receive(&bytes, 1);
            }
        }
    }
}
