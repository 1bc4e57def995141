//! The data-channel session state machine, for either end of the channel, without sockets or
//! clocks: the caller feeds received frames and the current time in milliseconds, and drains
//! frames to transmit, events, and the next timer deadline.
//!
//! Rules (from the official client and agent): each direction numbers its stream messages from
//! 0; every stream message is acknowledged by sequence number (acks are selective, not
//! cumulative); messages ahead of the expected number are acked and buffered, up to
//! [`MAX_BUFFERED_BYTES`] (beyond that they are dropped unacked and come again); duplicates are
//! re-acked (the official client does not, which makes a lost ack loop forever); a 100 ms timer
//! looks at the **oldest** unacked message only and resends it once it is older than the RFC
//! 6298 retransmission timeout (start 200 ms, cap 1 s), as the plugin and the agent do, so K lost
//! frames are recovered one after another instead of in a burst. The
//! client holds its input and terminal size until the agent's first output, because the agent
//! drops input that arrives before it is ready; when that first message is a HandshakeRequest
//! (KMS sessions) it holds them until HandshakeComplete and sends only handshake replies. Once a
//! data key is installed, Output payloads (and the agent's StdErr/ExitCode) travel AES-256-GCM
//! sealed, and the encryption challenge is answered here. `pause_publication` stops an agent's
//! sending until `start_publication`; a client ignores both.

use super::crypto::{CounterNonce, CryptoError, SessionCipher, random_nonce};
use super::frame::{Frame, FrameError, PayloadType, message_type};
use super::messages::{
    Acknowledge, ChannelClosed, EncryptionChallenge, HandshakeComplete, HandshakeRequest, HandshakeResponse,
    TerminalSize,
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

/// Which unacked messages a timer tick resends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendPolicy {
    /// The oldest only, once it is older than the RTO (the plugin's and the agent's rule).
    OldestOnly,
    /// Every overdue message at once (a test lab's shortcut for fast fault runs).
    EveryOverdue,
}

/// Which end of the channel this session plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Agent,
}

impl Role {
    fn outgoing_type(self) -> &'static str {
        match self {
            Role::Client => message_type::INPUT_STREAM_DATA,
            Role::Agent => message_type::OUTPUT_STREAM_DATA,
        }
    }

    fn incoming_type(self) -> &'static str {
        match self {
            Role::Client => message_type::OUTPUT_STREAM_DATA,
            Role::Agent => message_type::INPUT_STREAM_DATA,
        }
    }
}

/// Something the caller must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Client: terminal output from the agent (PayloadType 1, in order, exactly once).
    Output(Vec<u8>),
    /// Agent: keystrokes from the client.
    Input(Vec<u8>),
    /// Agent: the client's terminal size.
    Resize(TerminalSize),
    /// Client: the agent asked for a handshake (KMS sessions).
    HandshakeRequest(HandshakeRequest),
    /// Client: the handshake finished; held input and size are on their way.
    HandshakeComplete(HandshakeComplete),
    /// Agent: the client's reply to the HandshakeRequest.
    HandshakeResponse(HandshakeResponse),
    /// Agent: the client's answer to the encryption challenge, decrypted.
    ChallengeAnswer(Vec<u8>),
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

/// How a session picks AES-GCM nonces: the client draws them at random, the agent counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceSource {
    Random,
    Counter(CounterNonce),
}

impl NonceSource {
    fn next(&mut self) -> [u8; 12] {
        match self {
            NonceSource::Random => random_nonce(),
            NonceSource::Counter(counter) => counter.next_nonce(),
        }
    }
}

/// A client's progress towards sending: nothing until the agent speaks, only handshake replies
/// while a handshake runs, everything after.
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

/// One end of a data channel.
pub struct Session {
    role: Role,
    ids: IdSource,
    wall: WallClock,
    next_sequence: i64,
    expected_sequence: i64,
    unacked: VecDeque<Pending>,
    unacked_bytes: usize,
    resend_policy: ResendPolicy,
    last_resend_ms: Option<u64>,
    buffered: BTreeMap<i64, Frame>,
    buffered_bytes: usize,
    transmit: VecDeque<Vec<u8>>,
    /// Agent: frames held while the gateway has paused publication.
    held: VecDeque<Vec<u8>>,
    paused: bool,
    events: VecDeque<Event>,
    rtt: RttEstimator,
    gate: Gate,
    cipher: Option<(SessionCipher, NonceSource)>,
    queued_input: VecDeque<(PayloadType, Vec<u8>)>,
    size: Option<TerminalSize>,
    closed: bool,
    resends: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("next_sequence", &self.next_sequence)
            .field("expected_sequence", &self.expected_sequence)
            .field("unacked", &self.unacked.len())
            .field("buffered", &self.buffered.len())
            .finish()
    }
}

impl Session {
    /// A session for `role` whose frames take message ids from `ids` and CreatedDate from
    /// `wall`; the `now_ms` of every call is a monotonic clock (any origin).
    pub fn new(role: Role, ids: IdSource, wall: WallClock) -> Session {
        Session {
            role,
            ids,
            wall,
            next_sequence: 0,
            expected_sequence: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            resend_policy: ResendPolicy::OldestOnly,
            last_resend_ms: None,
            buffered: BTreeMap::new(),
            buffered_bytes: 0,
            transmit: VecDeque::new(),
            held: VecDeque::new(),
            paused: false,
            events: VecDeque::new(),
            rtt: RttEstimator::default(),
            gate: if role == Role::Agent { Gate::Open } else { Gate::AwaitingAgent },
            cipher: None,
            queued_input: VecDeque::new(),
            size: None,
            closed: false,
            resends: 0,
        }
    }

    /// A session with random v4 UUID message ids and the given wall clock.
    pub fn with_random_ids(role: Role, wall: WallClock) -> Session {
        Session::new(role, Box::new(|| *uuid::Uuid::new_v4().as_bytes()), wall)
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

    /// Resend every overdue message per tick instead of the oldest only.
    pub fn set_resend_policy(&mut self, policy: ResendPolicy) {
        self.resend_policy = policy;
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
        if self.paused {
            return None;
        }
        let rto = self.rtt.rto_ms as u64;
        match self.resend_policy {
            ResendPolicy::OldestOnly => {
                let due = self.unacked.front()?.last_sent_ms + rto;
                Some(self.last_resend_ms.map_or(due, |last| due.max(last + RESEND_TICK_MS)))
            }
            ResendPolicy::EveryOverdue => self.unacked.iter().map(|p| p.last_sent_ms + rto).min(),
        }
    }

    /// A timer tick: resend the oldest unacked message if its retransmission timeout has passed
    /// (every overdue one under [`ResendPolicy::EveryOverdue`]).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.paused {
            return;
        }
        if self.resend_policy == ResendPolicy::OldestOnly
            && self.last_resend_ms.is_some_and(|last| now_ms < last + RESEND_TICK_MS)
        {
            return;
        }
        let rto = self.rtt.rto_ms as u64;
        let limit = match self.resend_policy {
            ResendPolicy::OldestOnly => 1,
            ResendPolicy::EveryOverdue => usize::MAX,
        };
        let mut resent = false;
        for pending in self.unacked.iter_mut().take(limit) {
            if now_ms >= pending.last_sent_ms + rto {
                pending.last_sent_ms = now_ms;
                self.transmit.push_back(pending.bytes.clone());
                self.resends += 1;
                resent = true;
            }
        }
        if resent {
            self.last_resend_ms = Some(now_ms);
        }
    }

    /// Send stream data (keystrokes for a client, terminal output for an agent), cut into
    /// chunks of at most [`MAX_CHUNK`] bytes.
    pub fn send_data(&mut self, data: &[u8], now_ms: u64) {
        for chunk in data.chunks(MAX_CHUNK) {
            self.send_stream(PayloadType::Output, chunk.to_vec(), now_ms);
        }
    }

    /// Client: set the terminal size; sent once the agent is ready, and on every change.
    pub fn set_size(&mut self, size: TerminalSize, now_ms: u64) {
        if self.size == Some(size) {
            return;
        }
        self.size = Some(size);
        let payload = serde_json::to_vec(&size).expect("size serialises");
        self.send_stream(PayloadType::Size, payload, now_ms);
    }

    /// Install the session's data key: from now on Output payloads are sealed on the way out
    /// (and StdErr/ExitCode too from an agent) and opened on the way in.
    pub fn enable_encryption(&mut self, cipher: SessionCipher, nonces: NonceSource) {
        self.cipher = Some((cipher, nonces));
    }

    /// Client: the agent asked for a handshake that has not completed yet.
    pub fn handshake_pending(&self) -> bool {
        self.gate == Gate::Handshaking
    }

    /// Whether a data key is installed.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// Send one stream message of any payload type; a client holds it until the agent is ready
    /// and any handshake is complete.
    pub fn send_stream(&mut self, payload_type: PayloadType, payload: Vec<u8>, now_ms: u64) {
        if self.gate != Gate::Open {
            self.unacked_bytes += payload.len();
            self.queued_input.push_back((payload_type, payload));
            return;
        }
        self.transmit_stream(payload_type, payload, now_ms);
    }

    /// Send a handshake message now (HandshakeRequest/Response, the challenge and its answer),
    /// ahead of anything held back.
    pub fn send_handshake(&mut self, payload_type: PayloadType, payload: Vec<u8>, now_ms: u64) {
        self.transmit_stream(payload_type, payload, now_ms);
    }

    /// Agent: seal `plaintext` and send it as the encryption challenge.
    pub fn send_challenge(&mut self, plaintext: &[u8], now_ms: u64) -> Result<(), CryptoError> {
        let sealed = self.seal(plaintext).ok_or(CryptoError::NoKey)?;
        let body = EncryptionChallenge { challenge: BASE64.encode(sealed) };
        self.send_handshake(PayloadType::EncChallengeRequest, serde_json::to_vec(&body).expect("serialises"), now_ms);
        Ok(())
    }

    fn seal(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        let (cipher, nonces) = self.cipher.as_mut()?;
        Some(cipher.seal(plaintext, nonces.next()))
    }

    fn open(&self, envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match &self.cipher {
            Some((cipher, _)) => cipher.open(envelope),
            None => Err(CryptoError::NoKey),
        }
    }

    /// Which payload types travel sealed from this end (and so are opened from the other).
    fn sealed_outgoing(role: Role, payload_type: PayloadType) -> bool {
        match role {
            Role::Client => payload_type == PayloadType::Output,
            Role::Agent => matches!(payload_type, PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode),
        }
    }

    fn transmit_stream(&mut self, payload_type: PayloadType, payload: Vec<u8>, now_ms: u64) {
        let payload = match Self::sealed_outgoing(self.role, payload_type) {
            true => self.seal(&payload).unwrap_or(payload),
            false => payload,
        };
        let sequence_number = self.next_sequence;
        self.next_sequence += 1;
        let flags = match (self.role, sequence_number) {
            (Role::Agent, 0) => 1,
            _ => 0,
        };
        let frame = Frame::new(
            self.role.outgoing_type(),
            sequence_number,
            flags,
            (self.ids)(),
            (self.wall)().max(1),
            payload_type.as_u32(),
            payload,
        );
        let bytes = frame.encode().expect("fresh ids are never nil");
        self.unacked_bytes += bytes.len();
        self.unacked.push_back(Pending { sequence_number, bytes: bytes.clone(), last_sent_ms: now_ms });
        self.emit(bytes);
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
            message_type::PAUSE_PUBLICATION if self.role == Role::Agent => self.paused = true,
            message_type::START_PUBLICATION if self.role == Role::Agent => {
                self.paused = false;
                while let Some(bytes) = self.held.pop_front() {
                    self.transmit.push_back(bytes);
                }
            }
            kind if kind == self.role.incoming_type() => self.on_stream(frame, now_ms),
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
            self.acknowledge(&frame, now_ms);
            return;
        }
        if sequence > self.expected_sequence {
            let known = self.buffered.contains_key(&sequence);
            let room =
                self.buffered.len() < MAX_BUFFERED && self.buffered_bytes + frame.payload.len() <= MAX_BUFFERED_BYTES;
            if known || room {
                self.acknowledge(&frame, now_ms);
                if !known {
                    self.buffered_bytes += frame.payload.len();
                    self.buffered.insert(sequence, frame);
                }
            }
            return;
        }
        self.acknowledge(&frame, now_ms);
        self.deliver(frame, now_ms);
        self.expected_sequence += 1;
        while let Some(next) = self.buffered.remove(&self.expected_sequence) {
            self.buffered_bytes -= next.payload.len();
            self.deliver(next, now_ms);
            self.expected_sequence += 1;
        }
    }

    /// Client: let held input and size go.
    fn open_gate(&mut self, now_ms: u64) {
        self.gate = Gate::Open;
        while let Some((payload_type, payload)) = self.queued_input.pop_front() {
            self.unacked_bytes -= payload.len();
            self.transmit_stream(payload_type, payload, now_ms);
        }
    }

    fn deliver(&mut self, mut frame: Frame, now_ms: u64) {
        let kind = frame.kind();
        if self.role == Role::Client && self.gate == Gate::AwaitingAgent {
            if kind == PayloadType::HandshakeRequest {
                self.gate = Gate::Handshaking;
            } else {
                self.open_gate(now_ms);
            }
        }
        let sealed_incoming = Self::sealed_outgoing(self.other_role(), kind);
        if sealed_incoming && self.cipher.is_some() {
            match self.open(&frame.payload) {
                Ok(plain) => frame.payload = plain,
                Err(err) => {
                    self.events.push_back(Event::Undecryptable(err));
                    return;
                }
            }
        }
        let event = match (self.role, kind) {
            (Role::Client, PayloadType::Output) => Event::Output(frame.payload),
            (Role::Client, PayloadType::HandshakeRequest) => match serde_json::from_slice(&frame.payload) {
                Ok(request) => Event::HandshakeRequest(request),
                Err(_) => Event::Other { payload_type: frame.payload_type, payload: frame.payload },
            },
            (Role::Client, PayloadType::EncChallengeRequest) => match self.answer_challenge(&frame.payload, now_ms) {
                Ok(()) => return,
                Err(err) => Event::Undecryptable(err),
            },
            (Role::Client, PayloadType::HandshakeComplete) => {
                let complete: HandshakeComplete = serde_json::from_slice(&frame.payload)
                    .unwrap_or(HandshakeComplete { handshake_time_to_complete: 0, customer_message: String::new() });
                self.open_gate(now_ms);
                Event::HandshakeComplete(complete)
            }
            (Role::Agent, PayloadType::Output) => Event::Input(frame.payload),
            (Role::Agent, PayloadType::HandshakeResponse) => match serde_json::from_slice(&frame.payload) {
                Ok(response) => Event::HandshakeResponse(response),
                Err(_) => Event::Other { payload_type: frame.payload_type, payload: frame.payload },
            },
            (Role::Agent, PayloadType::EncChallengeResponse) => match self.read_challenge(&frame.payload) {
                Ok(plain) => Event::ChallengeAnswer(plain),
                Err(err) => Event::Undecryptable(err),
            },
            (Role::Agent, PayloadType::Size) => match serde_json::from_slice(&frame.payload) {
                Ok(size) => Event::Resize(size),
                Err(_) => Event::Other { payload_type: frame.payload_type, payload: frame.payload },
            },
            _ => Event::Other { payload_type: frame.payload_type, payload: frame.payload },
        };
        self.events.push_back(event);
    }

    fn other_role(&self) -> Role {
        match self.role {
            Role::Client => Role::Agent,
            Role::Agent => Role::Client,
        }
    }

    /// The challenge body's bytes, opened with this end's key.
    fn read_challenge(&self, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let body: EncryptionChallenge = serde_json::from_slice(payload).map_err(|_| CryptoError::Malformed)?;
        let sealed = BASE64.decode(body.challenge).map_err(|_| CryptoError::Malformed)?;
        self.open(&sealed)
    }

    /// Client: open the agent's challenge and send it back sealed with the client's key.
    fn answer_challenge(&mut self, payload: &[u8], now_ms: u64) -> Result<(), CryptoError> {
        let plain = self.read_challenge(payload)?;
        let sealed = self.seal(&plain).ok_or(CryptoError::NoKey)?;
        let body = EncryptionChallenge { challenge: BASE64.encode(sealed) };
        self.send_handshake(PayloadType::EncChallengeResponse, serde_json::to_vec(&body).expect("serialises"), now_ms);
        Ok(())
    }

    fn acknowledge(&mut self, frame: &Frame, now_ms: u64) {
        let ack = Acknowledge {
            message_type: frame.message_type.clone(),
            message_id: frame.message_id_string(),
            sequence_number: frame.sequence_number,
            is_sequential: true,
        };
        let payload = serde_json::to_vec(&ack).expect("ack serialises");
        let reply = Frame::new(message_type::ACKNOWLEDGE, 0, 3, (self.ids)(), now_ms.max(1), 0, payload);
        self.emit(reply.encode().expect("fresh ids are never nil"));
    }

    fn emit(&mut self, bytes: Vec<u8>) {
        if self.paused {
            self.held.push_back(bytes);
        } else {
            self.transmit.push_back(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    /// The wall clock every test session reads for CreatedDate.
    const WALL_MS: u64 = 1_764_633_600_000;

    /// CreatedDate is the wall clock's; the timer clock (`now_ms`) is never written to a frame.
    #[test]
    fn created_date_comes_from_the_wall_clock_not_the_timer_clock() {
        let mut agent = Session::new(Role::Agent, counter_ids(2), Box::new(|| WALL_MS));
        agent.send_data(b"x", 5);
        let frame = Frame::decode(&agent.poll_transmit().expect("a frame")).expect("decodes");
        assert_eq!(frame.created_date, WALL_MS);
    }

    fn counter_ids(start: u8) -> IdSource {
        let mut n = 0u64;
        Box::new(move || {
            n += 1;
            let mut id = [start; 16];
            id[8..].copy_from_slice(&n.to_be_bytes());
            id
        })
    }

    fn pair() -> (Session, Session) {
        (
            Session::new(Role::Client, counter_ids(1), Box::new(|| WALL_MS)),
            Session::new(Role::Agent, counter_ids(2), Box::new(|| WALL_MS)),
        )
    }

    /// Move every pending frame from `from` to `to`; returns how many moved.
    fn pump(from: &mut Session, to: &mut Session, now: u64) -> usize {
        let mut moved = 0;
        while let Some(bytes) = from.poll_transmit() {
            to.receive(&bytes, now);
            moved += 1;
        }
        moved
    }

    fn outputs(session: &mut Session) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(event) = session.poll_event() {
            match event {
                Event::Output(bytes) | Event::Input(bytes) => out.extend(bytes),
                _ => {}
            }
        }
        out
    }

    fn decoded(bytes: &[u8]) -> Frame {
        Frame::decode(bytes).unwrap()
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
        let (mut client, mut agent) = pair();
        client.set_size(TerminalSize { cols: 80, rows: 24 }, 1);
        client.send_data(b"echo ok\r", 1);
        assert!(client.poll_transmit().is_none());
        assert_eq!(client.unacked(), 2);
        agent.send_data(b"$ ", 2);
        pump(&mut agent, &mut client, 3);
        assert_eq!(outputs(&mut client), b"$ ");
        let sent: Vec<Frame> = std::iter::from_fn(|| client.poll_transmit()).map(|b| decoded(&b)).collect();
        let kinds: Vec<(&str, i64, u32)> =
            sent.iter().map(|f| (f.message_type.as_str(), f.sequence_number, f.payload_type)).collect();
        assert_eq!(
            kinds,
            [("acknowledge", 0, 0), ("input_stream_data", 0, 3), ("input_stream_data", 1, 1)],
            "ack first, then Size (seq 0), then the keystrokes (seq 1)"
        );
        assert_eq!(sent[1].payload, br#"{"cols":80,"rows":24}"#);
    }

    #[test]
    fn agent_flags_and_ack_shape() {
        let (mut client, mut agent) = pair();
        agent.send_data(b"a", 5);
        agent.send_data(b"b", 5);
        let first = decoded(&agent.poll_transmit().unwrap());
        let second = decoded(&agent.poll_transmit().unwrap());
        assert_eq!((first.sequence_number, first.flags), (0, 1));
        assert_eq!((second.sequence_number, second.flags), (1, 0));
        client.receive(&first.encode().unwrap(), 6);
        let ack = decoded(&client.poll_transmit().unwrap());
        assert_eq!((ack.message_type.as_str(), ack.sequence_number, ack.flags), ("acknowledge", 0, 3));
        let body: Acknowledge = serde_json::from_slice(&ack.payload).unwrap();
        assert_eq!(body.message_type, "output_stream_data");
        assert_eq!(body.sequence_number, 0);
        assert_eq!(body.message_id, first.message_id_string());
        assert!(body.is_sequential);
    }

    #[test]
    fn out_of_order_frames_are_buffered_and_delivered_in_order() {
        let (mut client, mut agent) = pair();
        for part in [b"one ".as_slice(), b"two ", b"three"] {
            agent.send_data(part, 1);
        }
        let frames: Vec<Vec<u8>> = std::iter::from_fn(|| agent.poll_transmit()).collect();
        for index in [2, 0, 1] {
            client.receive(&frames[index], 2);
        }
        assert_eq!(outputs(&mut client), b"one two three");
        let acks = std::iter::from_fn(|| client.poll_transmit()).count();
        assert_eq!(acks, 3);
        pump(&mut client, &mut agent, 3);
    }

    #[test]
    fn duplicates_are_re_acked_but_delivered_once() {
        let (mut client, mut agent) = pair();
        agent.send_data(b"x", 1);
        let frame = agent.poll_transmit().unwrap();
        client.receive(&frame, 2);
        client.receive(&frame, 3);
        assert_eq!(outputs(&mut client), b"x");
        assert_eq!(std::iter::from_fn(|| client.poll_transmit()).count(), 2, "both copies are acked");
    }

    #[test]
    fn lost_frames_are_resent_after_the_rto_and_acks_clear_them() {
        let (mut client, mut agent) = pair();
        agent.set_resend_policy(ResendPolicy::EveryOverdue);
        agent.send_data(b"lost", 1_000);
        let _dropped = agent.poll_transmit().unwrap();
        assert_eq!(agent.next_timeout(), Some(1_200));
        agent.handle_timeout(1_199);
        assert!(agent.poll_transmit().is_none());
        agent.handle_timeout(1_200);
        assert_eq!(agent.resends(), 1);
        pump(&mut agent, &mut client, 1_210);
        assert_eq!(outputs(&mut client), b"lost");
        pump(&mut client, &mut agent, 1_220);
        assert_eq!(agent.unacked(), 0);
        assert_eq!(agent.next_timeout(), None);
        assert_eq!(agent.rtt().srtt_ms, 0.875 * 100.0 + 0.125 * 20.0);
    }

    /// Three lost frames come back one after another, each only once the one before it was
    /// acknowledged and at least a tick later, never in a burst (§3.6, §9 row 1).
    #[test]
    fn only_the_oldest_unacked_frame_is_resent_per_tick() {
        let (mut client, mut agent) = pair();
        client.receive(&agent_speaks(&mut agent), 1);
        while client.poll_transmit().is_some() {}
        for key in [b"a", b"b", b"c"] {
            client.send_data(key, 1_000);
        }
        let lost: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
        assert_eq!(lost.len(), 3);
        let mut resent = Vec::new();
        let mut now = 1_000;
        while client.unacked() > 0 && now < 10_000 {
            now = client.next_timeout().expect("something awaits an ack").max(now);
            client.handle_timeout(now);
            let frames: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
            assert!(frames.len() <= 1, "at most one resend per tick, got {} at {now}", frames.len());
            for frame in frames {
                resent.push((now, decoded(&frame).sequence_number));
                agent.receive(&frame, now + 5);
                pump(&mut agent, &mut client, now + 10);
            }
        }
        let sequences: Vec<i64> = resent.iter().map(|(_, seq)| *seq).collect();
        assert_eq!(sequences, [0, 1, 2], "oldest first, each once");
        assert!(resent.windows(2).all(|w| w[1].0 >= w[0].0 + RESEND_TICK_MS), "{resent:?}");
        assert_eq!(client.unacked_bytes(), 0);
    }

    /// The agent's first output, as the client sees it (opens the client's gate).
    fn agent_speaks(agent: &mut Session) -> Vec<u8> {
        agent.send_data(b"$ ", 1);
        agent.poll_transmit().unwrap()
    }

    #[test]
    fn out_of_order_buffering_is_capped_in_bytes() {
        let (mut client, mut agent) = pair();
        let first = {
            agent.send_data(&[b'x'; 1000], 1);
            agent.poll_transmit().unwrap()
        };
        let frames = MAX_BUFFERED_BYTES / 1000 + 10;
        let mut acks = 0;
        for _ in 0..frames {
            agent.send_data(&[b'y'; 1000], 1);
            client.receive(&agent.poll_transmit().unwrap(), 2);
            acks += std::iter::from_fn(|| client.poll_transmit()).count();
        }
        assert_eq!(acks, MAX_BUFFERED_BYTES / 1000, "frames past the byte cap are not acked");
        client.receive(&first, 3);
        assert_eq!(outputs(&mut client).len(), 1000 + acks * 1000, "the buffered ones are delivered");
    }

    #[test]
    fn a_paused_agent_holds_output_until_started() {
        let (mut client, mut agent) = pair();
        let pause = Frame::new("pause_publication", 0, 0, [9; 16], 1, 0, vec![]).encode().unwrap();
        let start = Frame::new("start_publication", 0, 0, [8; 16], 1, 0, vec![]).encode().unwrap();
        agent.receive(&pause, 1);
        agent.send_data(b"later", 2);
        assert!(agent.poll_transmit().is_none());
        agent.handle_timeout(10_000);
        assert!(agent.poll_transmit().is_none(), "no resends while paused");
        agent.receive(&start, 3);
        pump(&mut agent, &mut client, 4);
        assert_eq!(outputs(&mut client), b"later");
        // A client ignores publication messages.
        client.receive(&pause, 5);
        client.send_data(b"k", 5);
        assert!(client.poll_transmit().is_some());
    }

    #[test]
    fn channel_closed_is_reported_with_its_output() {
        let (mut client, _) = pair();
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
    }

    #[test]
    fn corrupt_frames_are_reported_and_not_acked() {
        let (mut client, mut agent) = pair();
        agent.send_data(b"x", 1);
        let mut frame = agent.poll_transmit().unwrap();
        let last = frame.len() - 1;
        frame[last] ^= 1;
        client.receive(&frame, 2);
        assert_eq!(client.poll_event(), Some(Event::Invalid(FrameError::DigestMismatch)));
        assert!(client.poll_transmit().is_none());
    }

    #[test]
    fn large_data_is_chunked() {
        let (mut client, mut agent) = pair();
        agent.send_data(&vec![b'a'; 2500], 1);
        let sizes: Vec<usize> =
            std::iter::from_fn(|| agent.poll_transmit()).map(|b| decoded(&b).payload.len()).collect();
        assert_eq!(sizes, [1024, 1024, 452]);
        let _ = &mut client;
    }

    /// The KMS handshake of the shared doc's table (§3.4), both ends driven by this module:
    /// sequence numbers, what is held back, and what travels sealed.
    #[test]
    fn a_kms_session_handshakes_then_seals_output_both_ways() {
        use crate::crypto::{SessionCipher, Side};
        use crate::handshake;
        use sha2::Digest;
        let (mut client, mut agent) = pair();
        let key = [5u8; 64];
        client.set_size(TerminalSize { cols: 80, rows: 24 }, 1);
        client.send_data(b"typed early", 1);
        let kms = handshake::KmsAction { key_id: "k".into(), challenge: Some("Y2g=".into()) };
        let request = serde_json::to_vec(&handshake::request("3.3.0.0", Some(&kms))).unwrap();
        agent.send_handshake(PayloadType::HandshakeRequest, request, 2);
        pump(&mut agent, &mut client, 3);
        let Some(Event::HandshakeRequest(seen)) = client.poll_event() else { panic!("no handshake request") };
        let sent: Vec<Frame> = std::iter::from_fn(|| client.poll_transmit()).map(|b| decoded(&b)).collect();
        assert_eq!(sent.len(), 1, "only the ack while the handshake runs: {sent:?}");

        client.enable_encryption(SessionCipher::new(&key, Side::Client).unwrap(), NonceSource::Random);
        let wrapped = handshake::KmsReply { ciphertext: b"blob".to_vec(), challenge_acknowledged: true };
        let reply = serde_json::to_vec(&handshake::response(&seen, Some(&wrapped), "t")).unwrap();
        client.send_handshake(PayloadType::HandshakeResponse, reply, 4);
        pump(&mut client, &mut agent, 5);
        let Some(Event::HandshakeResponse(response)) = agent.poll_event() else { panic!("no response") };
        assert_eq!(handshake::read_response(&response).unwrap().unwrap().ciphertext, b"blob");

        agent.enable_encryption(
            SessionCipher::new(&key, Side::Agent).unwrap(),
            NonceSource::Counter(CounterNonce::starting_at([1, 2, 3])),
        );
        agent.send_challenge(&[9u8; 64], 6).unwrap();
        pump(&mut agent, &mut client, 7);
        let answer: Vec<Frame> = std::iter::from_fn(|| client.poll_transmit()).map(|b| decoded(&b)).collect();
        assert_eq!(answer.iter().map(|f| (f.sequence_number, f.payload_type)).collect::<Vec<_>>(), [(0, 0), (1, 9)]);
        for frame in &answer {
            agent.receive(&frame.encode().unwrap(), 8);
        }
        assert_eq!(agent.poll_event(), Some(Event::ChallengeAnswer(vec![9u8; 64])));

        let done = br#"{"HandshakeTimeToComplete":5,"CustomerMessage":"This session is encrypted using AWS KMS."}"#;
        agent.send_handshake(PayloadType::HandshakeComplete, done.to_vec(), 9);
        pump(&mut agent, &mut client, 10);
        assert!(matches!(client.poll_event(), Some(Event::HandshakeComplete(c)) if c.handshake_time_to_complete == 5));
        let held: Vec<Frame> = std::iter::from_fn(|| client.poll_transmit()).map(|b| decoded(&b)).collect();
        let kinds: Vec<(&str, i64, u32)> =
            held.iter().map(|f| (f.message_type.as_str(), f.sequence_number, f.payload_type)).collect();
        assert_eq!(kinds, [("acknowledge", 0, 0), ("input_stream_data", 2, 3), ("input_stream_data", 3, 1)]);
        assert_eq!(held[1].payload, br#"{"cols":80,"rows":24}"#, "Size stays plaintext");
        assert_eq!(held[2].payload.len(), 12 + b"typed early".len() + 16, "keystrokes are sealed");
        for frame in &held {
            agent.receive(&frame.encode().unwrap(), 11);
        }
        let events: Vec<Event> = std::iter::from_fn(|| agent.poll_event()).collect();
        assert_eq!(events, [Event::Resize(TerminalSize { cols: 80, rows: 24 }), Event::Input(b"typed early".to_vec())]);

        while agent.poll_transmit().is_some() {} // the acks of Size and keystrokes
        agent.send_data(b"secret output", 12);
        let frame = agent.poll_transmit().unwrap();
        let on_wire = decoded(&frame);
        assert_eq!(&on_wire.payload[..12], hex::decode("020000000200000003000000").unwrap(), "the counter moved on");
        assert!(!on_wire.payload.windows(6).any(|w| w == b"secret"));
        client.receive(&frame, 13);
        assert_eq!(outputs(&mut client), b"secret output");

        // A tampered envelope is acked (the frame itself is intact) but reported, not delivered.
        let mut forged = decoded(&{
            agent.send_data(b"x", 14);
            agent.poll_transmit().unwrap()
        });
        forged.payload[13] ^= 1;
        forged.payload_digest = sha2::Sha256::digest(&forged.payload).into();
        client.receive(&forged.encode().unwrap(), 15);
        assert_eq!(client.poll_event(), Some(Event::Undecryptable(CryptoError::Authentication)));
    }

    proptest::proptest! {
        /// Whatever the loss, duplication and order on the wire, the receiver gets every byte
        /// exactly once and in order, given enough timer ticks.
        #[test]
        fn lossy_links_deliver_exactly_once_in_order(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 1..300), 1..40),
            fate in proptest::collection::vec(0u8..10, 1..200),
        ) {
            let (mut client, mut agent) = pair();
            let mut expected = Vec::new();
            let mut now = 1u64;
            for chunk in &chunks {
                agent.send_data(chunk, now);
                expected.extend_from_slice(chunk);
            }
            let mut received = Vec::new();
            let mut fates = fate.iter().cycle();
            let mut in_flight: Vec<Vec<u8>> = Vec::new();
            for round in 0..400 {
                // Faults for the first 200 rounds, then a clean link: delivery must complete.
                let mut fate_now = || if round < 200 { fates.next().copied().unwrap_or(9) } else { 9 };
                while let Some(bytes) = agent.poll_transmit() {
                    match fate_now() {
                        0 | 1 => {}                                   // dropped
                        2 => { in_flight.push(bytes.clone()); in_flight.push(bytes); } // duplicated
                        3 => in_flight.insert(0, bytes),               // reordered
                        _ => in_flight.push(bytes),
                    }
                }
                for bytes in in_flight.drain(..) {
                    client.receive(&bytes, now);
                }
                received.extend(outputs(&mut client));
                while let Some(ack) = client.poll_transmit() {
                    if fate_now() != 0 {
                        agent.receive(&ack, now);
                    }
                }
                if agent.unacked() == 0 { break; }
                now += 250;
                agent.handle_timeout(now);
            }
            proptest::prop_assert_eq!(received, expected);
        }

        #[test]
        fn arbitrary_input_never_panics(frames in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..20)) {
            let (mut client, _) = pair();
            for bytes in frames {
                client.receive(&bytes, 1);
            }
        }
    }
}
