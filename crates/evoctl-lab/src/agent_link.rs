//! The lab exec agent's own data-channel bookkeeping, sans-IO, written from the real
//! amazon-ssm-agent's rules (the shared SSM data-channel notes, §3.6-§3.8 and §9) rather than shared with
//! evoctl's client session, so that a protocol misreading on one end is not mirrored on the
//! other. [`AgentLink`] takes raw incoming frames and a millisecond clock and yields outgoing
//! frames ([`AgentLink::poll_transmit`]) and events ([`AgentLink::poll_event`]); it shares only
//! the frame codec, the message bodies and the crypto primitives with the client.
//!
//! §9 rows implemented here: 1 (resend only the oldest unacked output per 100 ms tick, RTO from
//! 200 ms with RFC 6298 smoothing capped at 1 s, no attempt limit), 2 (input before
//! [`AgentLink::set_ready`] is neither acked nor consumed), 3 (non-handshake input during a KMS
//! handshake is acked and dropped), 4 (pause_publication stops sending and resending, acks and
//! agent_session_state still go out, start_publication or any incoming ack or input resumes),
//! 5 (the agent_session_state frame; the 1 s first-output wait is a [`Pacing`] knob), 6 (a
//! trailing incomplete UTF-8 character is held back for the next read and dropped at EOF; the
//! 1024-byte reads and 1 ms pause are [`Pacing`] knobs), 10 (the 2 s drain bound and the
//! Terminating state), 13 (loose validation: digest not checked, acks matched by sequence
//! number only, future input acked and buffered up to 100 000, past input re-acked) and 14 (with
//! a KMS key only client Output payloads are decrypted, Size stays plaintext; the 15 s step
//! timeout is a constant). The transport timings themselves stay with the caller.

use std::collections::{BTreeMap, VecDeque};

use crate::nonce::CounterNonce;
use evoctl_ssm::crypto::{CryptoError, SessionCipher};
use evoctl_ssm::frame::{Frame, FrameError, PayloadType, message_type};
use evoctl_ssm::messages::{Acknowledge, ChannelClosed, TerminalSize};
use sha2::{Digest, Sha256};

/// The resend ticker's period (`ResendStreamDataMessageScheduler`).
pub const RESEND_TICK_MS: u64 = 100;
/// The retransmission timeout before any RTT sample.
pub const INITIAL_RTO_MS: f64 = 200.0;
/// The smoothed RTT before any sample.
pub const INITIAL_SRTT_MS: f64 = 100.0;
/// The RTO never exceeds this.
pub const MAX_RTO_MS: f64 = 1000.0;
/// The clock granularity term: RTO = SRTT + max(this, 4·RTTVAR).
pub const CLOCK_GRANULARITY_MS: f64 = 10.0;
/// Unacked output frames the agent keeps for resending; past this it sends without keeping.
pub const OUTGOING_CAPACITY: usize = 100_000;
/// Future input frames the agent buffers; past this it drops them without an ack.
pub const INCOMING_CAPACITY: usize = 100_000;
/// Bytes per pty read (row 6).
pub const READ_CHUNK_BYTES: usize = 1024;
/// The write pump's sleep between pty reads (row 6): about 1000 messages/s, ~1 MB/s.
pub const READ_INTERVAL_MS: u64 = 1;
/// The pty is first read this long after the command starts (row 5, `initialWaitSecond`).
pub const FIRST_OUTPUT_DELAY_MS: u64 = 1000;
/// After the pty read fails, the agent waits at most this long for its output to be acked.
pub const CLOSE_DRAIN_MS: u64 = 2000;
/// Each KMS handshake step (response, challenge answer) must arrive within this (row 14).
pub const HANDSHAKE_STEP_TIMEOUT_MS: u64 = 15_000;
/// Flags of acks and agent_session_state.
pub const CONTROL_FLAGS: u64 = 3;

/// The transport timings of the real write pump, as knobs for the caller (the link does not
/// sleep). [`Pacing::REAL`] holds the agent's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub read_chunk_bytes: usize,
    pub read_interval_ms: u64,
    pub first_output_delay_ms: u64,
}

impl Pacing {
    pub const REAL: Pacing = Pacing {
        read_chunk_bytes: READ_CHUNK_BYTES,
        read_interval_ms: READ_INTERVAL_MS,
        first_output_delay_ms: FIRST_OUTPUT_DELAY_MS,
    };
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing::REAL
    }
}

/// Where the KMS handshake is (row 3): input other than handshake replies is acked and dropped
/// while it is in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// No handshake (ECS Exec without a KMS key) or not begun yet.
    None,
    InProgress,
    Complete,
}

/// `agent_session_state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Connected,
    Terminating,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Connected => "Connected",
            SessionState::Terminating => "Terminating",
        }
    }
}

/// What the link has for the agent.
#[derive(Debug)]
pub enum AgentEvent {
    /// Keystrokes (client Output, decrypted when KMS is on), in sequence order, once each.
    Input(Vec<u8>),
    /// A Size message.
    Resize(TerminalSize),
    /// A HandshakeResponse body, during the handshake.
    HandshakeResponse(Vec<u8>),
    /// An EncChallengeResponse body, during the handshake.
    ChallengeResponse(Vec<u8>),
    /// Input acked and dropped because the handshake is in progress (row 3).
    DroppedDuringHandshake { sequence_number: i64, payload_type: u32 },
    /// In-order input of another payload type (the shell handler ignores these).
    OtherInput { payload_type: u32, payload: Vec<u8> },
    /// A Size body that is not `{"cols":..,"rows":..}`.
    BadSize(Vec<u8>),
    /// Client Output that would not decrypt (acked, not delivered).
    Undecryptable(CryptoError),
    /// pause_publication arrived: do not read the pty.
    Paused,
    /// Publication resumed (start_publication, or an incoming ack or input).
    Resumed,
    /// The gateway closed the channel.
    ChannelClosed(ChannelClosed),
    /// Bytes that fail the agent's checks (dropped, no ack).
    Invalid(FrameError),
}

struct Unacked {
    sequence_number: i64,
    bytes: Vec<u8>,
    /// None while it waits for publication to resume.
    last_sent_ms: Option<u64>,
}

enum Processed {
    Done,
    NotReady,
}

/// The agent's end of one data channel.
pub struct AgentLink {
    now_ms: u64,
    next_output_seq: i64,
    expected_input_seq: i64,
    unacked: VecDeque<Unacked>,
    future_input: BTreeMap<i64, Frame>,
    srtt_ms: f64,
    rttvar_ms: f64,
    rto_ms: f64,
    next_tick_ms: u64,
    ready: bool,
    paused: bool,
    handshake: Handshake,
    cipher: Option<(SessionCipher, CounterNonce)>,
    utf8_carry: Vec<u8>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<AgentEvent>,
    /// Resend ticks run while not paused (missed ticks collapsed into one count once).
    resend_ticks: u64,
    /// Frames the ticker resent.
    resends: u64,
}

impl std::fmt::Debug for AgentLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentLink")
            .field("next_output_seq", &self.next_output_seq)
            .field("expected_input_seq", &self.expected_input_seq)
            .field("unacked", &self.unacked.len())
            .field("rto_ms", &self.rto_ms)
            .field("ready", &self.ready)
            .field("paused", &self.paused)
            .field("handshake", &self.handshake)
            .finish()
    }
}

impl AgentLink {
    /// A link whose clock reads `now_ms` (epoch milliseconds, non-decreasing: it also dates the
    /// frames). The resend ticker starts here.
    pub fn new(now_ms: u64) -> AgentLink {
        AgentLink {
            now_ms,
            next_output_seq: 0,
            expected_input_seq: 0,
            unacked: VecDeque::new(),
            future_input: BTreeMap::new(),
            srtt_ms: INITIAL_SRTT_MS,
            rttvar_ms: 0.0,
            rto_ms: INITIAL_RTO_MS,
            next_tick_ms: now_ms + RESEND_TICK_MS,
            ready: false,
            paused: false,
            handshake: Handshake::None,
            cipher: None,
            utf8_carry: Vec::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            resend_ticks: 0,
            resends: 0,
        }
    }

    /// The shell handler is installed (pty started): input is accepted and acked from now on.
    pub fn set_ready(&mut self) {
        self.ready = true;
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The KMS handshake starts (the HandshakeRequest is about to go out).
    pub fn begin_handshake(&mut self) {
        self.handshake = Handshake::InProgress;
    }

    /// HandshakeComplete is about to go out: ordinary input is processed again.
    pub fn complete_handshake(&mut self) {
        self.handshake = Handshake::Complete;
    }

    pub fn handshake(&self) -> Handshake {
        self.handshake
    }

    /// From now on output (PayloadTypes 1, 11, 12) is sealed with counter nonces and client
    /// Output is opened; nothing else is encrypted.
    pub fn enable_encryption(&mut self, cipher: SessionCipher, nonces: CounterNonce) {
        self.cipher = Some((cipher, nonces));
    }

    /// Seal `plaintext` with the agent's key and its next counter nonce (the encryption
    /// challenge); None before [`AgentLink::enable_encryption`].
    pub fn seal(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        let (cipher, nonces) = self.cipher.as_mut()?;
        Some(cipher.seal(plaintext, nonces.next_nonce()))
    }

    /// The session's cipher, once encryption is on.
    pub fn cipher(&self) -> Option<&SessionCipher> {
        self.cipher.as_ref().map(|(cipher, _)| cipher)
    }

    /// Whether the gateway has paused publication: the caller must not read the pty (row 4).
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Output frames not yet acked (including those held while paused).
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// The sequence numbers of the output frames not yet acked, oldest first.
    pub fn unacked_sequences(&self) -> Vec<i64> {
        self.unacked.iter().map(|u| u.sequence_number).collect()
    }

    /// Resend ticks run so far while publication was not paused: each one a chance to resend
    /// the oldest unacked frame.
    pub fn resend_ticks(&self) -> u64 {
        self.resend_ticks
    }

    /// Frames resent so far.
    pub fn resends(&self) -> u64 {
        self.resends
    }

    /// The current retransmission timeout.
    pub fn rto_ms(&self) -> f64 {
        self.rto_ms
    }

    /// The smoothed round-trip time and its variation.
    pub fn rtt_ms(&self) -> (f64, f64) {
        (self.srtt_ms, self.rttvar_ms)
    }

    /// The sequence number the next output frame gets.
    pub fn next_output_sequence(&self) -> i64 {
        self.next_output_seq
    }

    /// The input sequence number awaited next.
    pub fn expected_input_sequence(&self) -> i64 {
        self.expected_input_seq
    }

    /// The next frame to put on the wire.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }

    /// When the resend ticker next needs [`AgentLink::handle_timeout`]: only while some sent
    /// output is unacked and publication is not paused.
    pub fn next_timeout(&self) -> Option<u64> {
        (!self.paused && !self.unacked.is_empty()).then_some(self.next_tick_ms)
    }

    /// Run the resend ticker up to `now_ms`. A due tick looks at the oldest unacked frame only
    /// and resends it when it is older than the RTO (row 1).
    ///
    /// The agent's ticker is a loop that sleeps 100 ms after each look (`time.Sleep`, not a
    /// `time.Ticker`), so the next look is 100 ms after this one however late this one ran, and
    /// a late call is one tick. A sleep never ends early and the resend's time is taken after
    /// the look, so the look two sleeps after a resend finds the frame strictly older than
    /// 200 ms: in whole milliseconds, at least the RTO. A resent frame therefore goes out again
    /// on every second tick at the 200 ms RTO.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.advance(now_ms);
        if now_ms < self.next_tick_ms {
            return;
        }
        self.next_tick_ms = now_ms + RESEND_TICK_MS;
        if self.paused {
            return;
        }
        self.resend_ticks += 1;
        let rto = self.rto_ms;
        if let Some(oldest) = self.unacked.front_mut() {
            let overdue = match oldest.last_sent_ms {
                Some(sent) => (now_ms - sent.min(now_ms)) as f64 >= rto,
                None => true,
            };
            if overdue {
                oldest.last_sent_ms = Some(now_ms);
                self.transmit.push_back(oldest.bytes.clone());
                self.resends += 1;
            }
        }
    }

    /// Send one sequenced output_stream_data message (handshake messages included); returns
    /// its sequence number. Output, StdErr and ExitCode are sealed when encryption is on.
    pub fn send_stream(&mut self, payload_type: PayloadType, payload: Vec<u8>, now_ms: u64) -> i64 {
        self.advance(now_ms);
        let sequence_number = self.next_output_seq;
        self.next_output_seq += 1;
        let payload = match (&mut self.cipher, payload_type) {
            (Some((cipher, nonces)), PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode) => {
                cipher.seal(&payload, nonces.next_nonce())
            }
            _ => payload,
        };
        let flags = if sequence_number == 0 { 1 } else { 0 };
        let bytes =
            self.encode(message_type::OUTPUT_STREAM_DATA, sequence_number, flags, payload_type.as_u32(), payload);
        if self.unacked.len() >= OUTGOING_CAPACITY {
            // The agent's buffer is full: the message goes out once and is not kept.
            if !self.paused {
                self.transmit.push_back(bytes);
            }
            return sequence_number;
        }
        let last_sent_ms = if self.paused {
            None
        } else {
            self.transmit.push_back(bytes.clone());
            Some(self.now_ms)
        };
        self.unacked.push_back(Unacked { sequence_number, bytes, last_sent_ms });
        sequence_number
    }

    /// Bytes read from the pty: an incomplete UTF-8 character at the end is held back and
    /// prefixed to the next read (so a message can be 1027 bytes); the rest goes out as one
    /// Output message. Returns its sequence number, if any was sent.
    pub fn send_output(&mut self, read: &[u8], now_ms: u64) -> Option<i64> {
        let mut chunk = std::mem::take(&mut self.utf8_carry);
        chunk.extend_from_slice(read);
        let keep = incomplete_utf8_tail(&chunk);
        self.utf8_carry = chunk.split_off(chunk.len() - keep);
        (!chunk.is_empty()).then(|| self.send_stream(PayloadType::Output, chunk, now_ms))
    }

    /// The pty reached EOF: a held-back incomplete UTF-8 character is dropped, as the agent
    /// does. Returns how many bytes were dropped.
    pub fn finish_output(&mut self) -> usize {
        std::mem::take(&mut self.utf8_carry).len()
    }

    /// Queue an `agent_session_state` frame (seq 0, flags 3, PayloadType 0), sent even while
    /// paused: Connected when the channel opens, Terminating after the output drain.
    pub fn send_session_state(&mut self, state: SessionState, session_id: &str, now_ms: u64) {
        self.advance(now_ms);
        let body = serde_json::json!({"SchemaVersion": 1, "SessionState": state.as_str(), "SessionId": session_id});
        let bytes = self.encode(
            message_type::AGENT_SESSION_STATE,
            0,
            CONTROL_FLAGS,
            0,
            serde_json::to_vec(&body).expect("serialises"),
        );
        self.transmit.push_back(bytes);
    }

    /// One frame from the gateway.
    pub fn receive(&mut self, bytes: &[u8], now_ms: u64) {
        self.advance(now_ms);
        let frame = match decode_like_agent(bytes) {
            Ok(frame) => frame,
            Err(err) => {
                self.events.push_back(AgentEvent::Invalid(err));
                return;
            }
        };
        match frame.message_type.as_str() {
            message_type::ACKNOWLEDGE => {
                self.resume();
                self.handle_ack(&frame);
            }
            message_type::INPUT_STREAM_DATA => {
                self.resume();
                self.handle_input(frame);
            }
            // A second pause while paused changes nothing.
            message_type::PAUSE_PUBLICATION if !self.paused => {
                self.paused = true;
                self.events.push_back(AgentEvent::Paused);
            }
            message_type::START_PUBLICATION => self.resume(),
            message_type::CHANNEL_CLOSED => {
                let closed = serde_json::from_slice(&frame.payload).unwrap_or_default();
                self.events.push_back(AgentEvent::ChannelClosed(closed));
            }
            _ => {}
        }
    }

    fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    fn encode(&self, kind: &str, sequence_number: i64, flags: u64, payload_type: u32, payload: Vec<u8>) -> Vec<u8> {
        let id = *uuid::Uuid::new_v4().as_bytes();
        let created = self.now_ms.max(1);
        Frame::new(kind, sequence_number, flags, id, created, payload_type, payload).encode().expect("fresh id")
    }

    fn resume(&mut self) {
        if !self.paused {
            return;
        }
        self.paused = false;
        let now = self.now_ms;
        for held in self.unacked.iter_mut().filter(|u| u.last_sent_ms.is_none()) {
            held.last_sent_ms = Some(now);
            self.transmit.push_back(held.bytes.clone());
        }
        self.events.push_back(AgentEvent::Resumed);
    }

    /// Selective ack, matched on the sequence number only; the RTT sample updates the RTO.
    fn handle_ack(&mut self, frame: &Frame) {
        let Ok(ack) = serde_json::from_slice::<Acknowledge>(&frame.payload) else { return };
        let Some(index) = self.unacked.iter().position(|u| u.sequence_number == ack.sequence_number) else {
            return;
        };
        let acked = self.unacked.remove(index).expect("index in range");
        if let Some(sent) = acked.last_sent_ms {
            let sample = self.now_ms.saturating_sub(sent) as f64;
            self.rttvar_ms = 0.75 * self.rttvar_ms + 0.25 * (self.srtt_ms - sample).abs();
            self.srtt_ms = 0.875 * self.srtt_ms + 0.125 * sample;
            self.rto_ms = (self.srtt_ms + CLOCK_GRANULARITY_MS.max(4.0 * self.rttvar_ms)).min(MAX_RTO_MS);
        }
    }

    fn handle_input(&mut self, frame: Frame) {
        let sequence_number = frame.sequence_number;
        if sequence_number == self.expected_input_seq {
            if let Processed::NotReady = self.process(&frame) {
                return;
            }
            self.ack(&frame);
            self.expected_input_seq += 1;
            while let Some(next) = self.future_input.remove(&self.expected_input_seq) {
                if let Processed::NotReady = self.process(&next) {
                    self.future_input.insert(next.sequence_number, next);
                    break;
                }
                self.expected_input_seq += 1;
            }
        } else if sequence_number > self.expected_input_seq {
            if self.future_input.contains_key(&sequence_number) {
                self.ack(&frame);
            } else if self.future_input.len() < INCOMING_CAPACITY {
                self.ack(&frame);
                self.future_input.insert(sequence_number, frame);
            }
        } else {
            // A duplicate: the agent acks it again (its first ack may have been lost).
            self.ack(&frame);
        }
    }

    fn process(&mut self, frame: &Frame) -> Processed {
        if self.handshake == Handshake::InProgress {
            let event = match frame.kind() {
                PayloadType::HandshakeResponse => AgentEvent::HandshakeResponse(frame.payload.clone()),
                PayloadType::EncChallengeResponse => AgentEvent::ChallengeResponse(frame.payload.clone()),
                _ => AgentEvent::DroppedDuringHandshake {
                    sequence_number: frame.sequence_number,
                    payload_type: frame.payload_type,
                },
            };
            self.events.push_back(event);
            return Processed::Done;
        }
        if !self.ready {
            return Processed::NotReady;
        }
        let event = match frame.kind() {
            PayloadType::Output => match &self.cipher {
                Some((cipher, _)) => match cipher.open(&frame.payload) {
                    Ok(plain) => AgentEvent::Input(plain),
                    Err(err) => AgentEvent::Undecryptable(err),
                },
                None => AgentEvent::Input(frame.payload.clone()),
            },
            PayloadType::Size => match serde_json::from_slice::<TerminalSize>(&frame.payload) {
                Ok(size) => AgentEvent::Resize(size),
                Err(_) => AgentEvent::BadSize(frame.payload.clone()),
            },
            _ => AgentEvent::OtherInput { payload_type: frame.payload_type, payload: frame.payload.clone() },
        };
        self.events.push_back(event);
        Processed::Done
    }

    fn ack(&mut self, frame: &Frame) {
        let body = Acknowledge {
            message_type: frame.message_type.clone(),
            message_id: frame.message_id_string(),
            sequence_number: frame.sequence_number,
            is_sequential: true,
        };
        let bytes =
            self.encode(message_type::ACKNOWLEDGE, 0, CONTROL_FLAGS, 0, serde_json::to_vec(&body).expect("serialises"));
        self.transmit.push_back(bytes);
    }
}

/// Decode with the agent's checks only (row 13): HeaderLength, MessageType and CreatedDate;
/// the payload digest is not checked (a mismatching one is replaced by the payload's own).
pub fn decode_like_agent(bytes: &[u8]) -> Result<Frame, FrameError> {
    match Frame::decode(bytes) {
        Err(FrameError::DigestMismatch) => {
            let mut patched = bytes.to_vec();
            let header_length = u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
            let digest: [u8; 32] = Sha256::digest(&bytes[header_length + 4..]).into();
            patched[80..112].copy_from_slice(&digest);
            Frame::decode(&patched)
        }
        other => other,
    }
}

/// How many trailing bytes form an incomplete UTF-8 character (0 to 3).
pub fn incomplete_utf8_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue;
        }
        let needed = match byte {
            0b1100_0000..=0b1101_1111 => 2,
            0b1110_0000..=0b1110_1111 => 3,
            0b1111_0000..=0b1111_0111 => 4,
            _ => 1,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use evoctl_ssm::crypto::Side;

    const T0: u64 = 1_700_000_000_000;

    fn client_frame(kind: &str, seq: i64, payload_type: u32, payload: &[u8]) -> Vec<u8> {
        Frame::new(kind, seq, 0, *uuid::Uuid::new_v4().as_bytes(), T0, payload_type, payload.to_vec()).encode().unwrap()
    }

    fn input(seq: i64, payload: &[u8]) -> Vec<u8> {
        client_frame(message_type::INPUT_STREAM_DATA, seq, 1, payload)
    }

    fn ack_of(seq: i64) -> Vec<u8> {
        let body = Acknowledge {
            message_type: message_type::OUTPUT_STREAM_DATA.into(),
            // A wrong id on purpose: the agent matches on the sequence number only.
            message_id: uuid::Uuid::new_v4().to_string(),
            sequence_number: seq,
            is_sequential: true,
        };
        client_frame(message_type::ACKNOWLEDGE, 0, 0, &serde_json::to_vec(&body).unwrap())
    }

    fn sent(link: &mut AgentLink) -> Vec<Frame> {
        std::iter::from_fn(|| link.poll_transmit()).map(|b| Frame::decode(&b).unwrap()).collect()
    }

    fn acked_seqs(frames: &[Frame]) -> Vec<i64> {
        frames
            .iter()
            .filter(|f| f.message_type == message_type::ACKNOWLEDGE)
            .map(|f| serde_json::from_slice::<Acknowledge>(&f.payload).unwrap().sequence_number)
            .collect()
    }

    fn output_seqs(frames: &[Frame]) -> Vec<i64> {
        frames
            .iter()
            .filter(|f| f.message_type == message_type::OUTPUT_STREAM_DATA)
            .map(|f| f.sequence_number)
            .collect()
    }

    fn inputs(link: &mut AgentLink) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| link.poll_event())
            .filter_map(|e| match e {
                AgentEvent::Input(bytes) => Some(bytes),
                _ => None,
            })
            .collect()
    }

    fn ready_link() -> AgentLink {
        let mut link = AgentLink::new(T0);
        link.set_ready();
        link
    }

    #[test]
    fn row1_lost_frames_are_resent_one_per_tick_oldest_first() {
        let mut link = ready_link();
        for text in ["a", "b", "c"] {
            link.send_output(text.as_bytes(), T0 + 50);
        }
        let first = sent(&mut link);
        assert_eq!(output_seqs(&first), [0, 1, 2]);
        assert_eq!(first[0].flags, 1);
        assert_eq!(first[1].flags, 0);
        // All three are lost. Ticks at 100 and 200 ms: 50 and 150 ms old, not yet the 200 ms RTO.
        link.handle_timeout(T0 + 100);
        link.handle_timeout(T0 + 200);
        assert!(sent(&mut link).is_empty());
        let mut order = Vec::new();
        for tick in 3..6 {
            let now = T0 + tick * RESEND_TICK_MS;
            link.handle_timeout(now);
            let resent = sent(&mut link);
            assert_eq!(resent.len(), 1, "one frame per tick at {tick}00 ms");
            order.push(resent[0].sequence_number);
            link.receive(&ack_of(resent[0].sequence_number), now + 20);
        }
        assert_eq!(order, [0, 1, 2]);
        assert_eq!(link.unacked(), 0);
        assert_eq!(link.next_timeout(), None);
        // Five ticks ran, three of them resent a frame (the process table's drain record).
        assert_eq!((link.resend_ticks(), link.resends()), (5, 3));
    }

    #[test]
    fn row1_the_oldest_is_resent_until_acked_without_limit_and_others_wait() {
        let mut link = ready_link();
        link.send_output(b"x", T0);
        link.send_output(b"y", T0);
        sent(&mut link);
        let mut resends = 0;
        for tick in 1..=3000 {
            link.handle_timeout(T0 + tick * RESEND_TICK_MS);
            for frame in sent(&mut link) {
                assert_eq!(frame.sequence_number, 0, "only the oldest");
                resends += 1;
            }
        }
        // The resend's time is stored, so the frame goes out again only once two 100 ms sleeps
        // have passed, i.e. every second tick at the 200 ms RTO, and the agent never gives up.
        assert_eq!(resends, 1500);
        assert_eq!(link.unacked_sequences(), [0, 1]);
        assert_eq!((link.resend_ticks(), link.resends()), (3000, 1500));
    }

    #[test]
    fn row1_rto_follows_rfc6298_from_200_ms_and_is_capped_at_1_s() {
        let mut link = ready_link();
        assert_eq!(link.rto_ms(), 200.0);
        link.send_output(b"a", T0);
        link.receive(&ack_of(0), T0 + 140);
        assert_eq!(link.rtt_ms(), (105.0, 10.0));
        assert_eq!(link.rto_ms(), 145.0);
        for seq in 1..20 {
            let now = T0 + seq as u64 * 10_000;
            link.send_output(b"b", now);
            link.receive(&ack_of(seq), now + 5_000);
        }
        assert_eq!(link.rto_ms(), MAX_RTO_MS);
    }

    #[test]
    fn row2_input_before_ready_is_not_acked_and_is_accepted_when_resent() {
        let mut link = AgentLink::new(T0);
        link.receive(&input(0, b"ls\r"), T0 + 10);
        link.receive(&client_frame(message_type::INPUT_STREAM_DATA, 0, 3, br#"{"cols":80,"rows":24}"#), T0 + 10);
        assert!(acked_seqs(&sent(&mut link)).is_empty());
        assert!(inputs(&mut link).is_empty());
        assert_eq!(link.expected_input_sequence(), 0);
        link.set_ready();
        link.receive(&input(0, b"ls\r"), T0 + 300);
        assert_eq!(acked_seqs(&sent(&mut link)), [0]);
        assert_eq!(inputs(&mut link), [b"ls\r".to_vec()]);
        assert_eq!(link.expected_input_sequence(), 1);
    }

    #[test]
    fn row3_input_during_the_kms_handshake_is_acked_and_dropped() {
        let mut link = AgentLink::new(T0);
        link.begin_handshake();
        link.send_stream(PayloadType::HandshakeRequest, b"{}".to_vec(), T0);
        sent(&mut link);
        link.receive(&input(0, b"early"), T0 + 5);
        link.receive(&client_frame(message_type::INPUT_STREAM_DATA, 1, 6, b"{\"r\":1}"), T0 + 6);
        assert_eq!(acked_seqs(&sent(&mut link)), [0, 1]);
        let events: Vec<_> = std::iter::from_fn(|| link.poll_event()).collect();
        assert!(matches!(events[0], AgentEvent::DroppedDuringHandshake { sequence_number: 0, payload_type: 1 }));
        assert!(matches!(&events[1], AgentEvent::HandshakeResponse(body) if body == b"{\"r\":1}"));
        assert_eq!(events.len(), 2);
        link.complete_handshake();
        link.set_ready();
        link.receive(&input(2, b"late"), T0 + 7);
        assert_eq!(acked_seqs(&sent(&mut link)), [2]);
        assert_eq!(inputs(&mut link), [b"late".to_vec()]);
    }

    #[test]
    fn row4_pause_stops_sending_and_resending_and_any_ack_input_or_start_resumes() {
        let publication = |kind| Frame::new(kind, 0, 0, [7; 16], T0, 0, Vec::new()).encode().unwrap();
        let mut link = ready_link();
        link.send_output(b"lost", T0);
        sent(&mut link);
        link.receive(&publication(message_type::PAUSE_PUBLICATION), T0 + 10);
        assert!(link.is_paused());
        link.send_output(b"held", T0 + 20);
        link.handle_timeout(T0 + 500);
        assert!(sent(&mut link).is_empty(), "nothing new sent, nothing resent");
        assert_eq!((link.resend_ticks(), link.resends()), (0, 0), "a paused tick is no chance to resend");
        assert_eq!(link.next_timeout(), None);
        link.send_session_state(SessionState::Connected, "s-1", T0 + 600);
        let state = sent(&mut link);
        assert_eq!(state[0].message_type, message_type::AGENT_SESSION_STATE);
        // An ack resumes: the held frame goes out at once.
        link.receive(&ack_of(0), T0 + 700);
        assert!(!link.is_paused());
        assert_eq!(output_seqs(&sent(&mut link)), [1]);
        // Input resumes too, and is acked even when it arrives paused.
        link.receive(&publication(message_type::PAUSE_PUBLICATION), T0 + 800);
        link.send_output(b"held2", T0 + 810);
        link.receive(&input(0, b"k"), T0 + 820);
        let out = sent(&mut link);
        assert_eq!(output_seqs(&out), [2]);
        assert_eq!(acked_seqs(&out), [0]);
        // And start_publication.
        link.receive(&publication(message_type::PAUSE_PUBLICATION), T0 + 900);
        link.send_output(b"held3", T0 + 910);
        link.receive(&publication(message_type::START_PUBLICATION), T0 + 920);
        assert_eq!(output_seqs(&sent(&mut link)), [3]);
        let events: Vec<_> = std::iter::from_fn(|| link.poll_event()).collect();
        assert_eq!(events.iter().filter(|e| matches!(e, AgentEvent::Paused)).count(), 3);
        assert_eq!(events.iter().filter(|e| matches!(e, AgentEvent::Resumed)).count(), 3);
    }

    #[test]
    fn row5_session_state_and_first_output_wait() {
        let mut link = AgentLink::new(T0);
        link.send_session_state(SessionState::Connected, "sess-1", T0);
        let frame = &sent(&mut link)[0];
        assert_eq!((frame.sequence_number, frame.flags, frame.payload_type), (0, 3, 0));
        let body: serde_json::Value = serde_json::from_slice(&frame.payload).unwrap();
        assert_eq!(body, serde_json::json!({"SchemaVersion": 1, "SessionState": "Connected", "SessionId": "sess-1"}));
        assert_eq!(link.next_output_sequence(), 0, "outside the sequence");
        assert_eq!(Pacing::default().first_output_delay_ms, 1000);
    }

    #[test]
    fn row6_incomplete_utf8_is_held_back_then_dropped_at_eof() {
        let mut link = ready_link();
        assert_eq!(incomplete_utf8_tail("aé".as_bytes()), 0, "a complete character is sent");
        let euro = "€".as_bytes();
        let mut read = vec![b'a'; 1022];
        read.extend_from_slice(&euro[..2]);
        link.send_output(&read, T0);
        link.send_output(&[&euro[2..], &[b'b'; 1023][..]].concat(), T0);
        let out = sent(&mut link);
        assert_eq!(out[0].payload.len(), 1022);
        assert_eq!(out[1].payload.len(), 1026, "the held-back bytes lead the next message");
        assert!(out[1].payload.starts_with(euro));
        // A read ending in 3 bytes of a 4-byte character: the message is 1024 + 3 later.
        let emoji = "😀".as_bytes();
        link.send_output(&[&[b'c'; 1021][..], &emoji[..3]].concat(), T0);
        link.send_output(&[&emoji[3..], &[b'd'; 1023][..]].concat(), T0);
        let out = sent(&mut link);
        assert_eq!(out[0].payload.len(), 1021);
        assert_eq!(out[1].payload.len(), READ_CHUNK_BYTES + 3);
        link.send_output(&[b'e', 0xE2, 0x82], T0);
        assert_eq!(sent(&mut link)[0].payload, b"e");
        assert_eq!(link.finish_output(), 2, "dropped at EOF, never sent");
        assert!(sent(&mut link).is_empty());
        assert_eq!(Pacing::REAL, Pacing { read_chunk_bytes: 1024, read_interval_ms: 1, first_output_delay_ms: 1000 });
    }

    #[test]
    fn row10_drain_bookkeeping_and_terminating_state() {
        let mut link = ready_link();
        link.send_output(b"bye", T0);
        sent(&mut link);
        assert_eq!(link.unacked(), 1);
        link.receive(&ack_of(0), T0 + 30);
        assert_eq!(link.unacked(), 0, "drained before the 2 s bound");
        link.send_session_state(SessionState::Terminating, "s", T0 + 40);
        let frame = &sent(&mut link)[0];
        assert!(String::from_utf8_lossy(&frame.payload).contains("\"Terminating\""));
        assert_eq!(CLOSE_DRAIN_MS, 2000);
    }

    #[test]
    fn row13_loose_checks_selective_acks_buffering_and_reacks() {
        let mut link = ready_link();
        // A wrong digest is accepted, as the agent never checks it.
        let mut tampered = input(0, b"a");
        tampered[80] ^= 0xff;
        link.receive(&tampered, T0);
        // CreatedDate 0 is refused: no ack.
        let undated = Frame::new(message_type::INPUT_STREAM_DATA, 1, 0, [1; 16], 0, 1, b"z".to_vec()).encode().unwrap();
        link.receive(&undated, T0);
        assert_eq!(acked_seqs(&sent(&mut link)), [0]);
        // Future frames are acked and buffered, duplicates (3 again, 0 again) re-acked, each
        // delivered once in order.
        link.receive(&input(3, b"d"), T0);
        link.receive(&input(2, b"c"), T0);
        link.receive(&input(3, b"d"), T0);
        link.receive(&input(0, b"a"), T0);
        link.receive(&input(1, b"b"), T0);
        assert_eq!(acked_seqs(&sent(&mut link)), [3, 2, 3, 0, 1]);
        assert_eq!(inputs(&mut link), [b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]);
        assert_eq!(link.expected_input_sequence(), 4);
        // Acks remove exactly the frame with that sequence number (ids are not compared).
        for text in ["x", "y", "z"] {
            link.send_output(text.as_bytes(), T0);
        }
        sent(&mut link);
        link.receive(&ack_of(1), T0 + 10);
        assert_eq!(link.unacked(), 2);
        link.handle_timeout(T0 + 300);
        assert_eq!(output_seqs(&sent(&mut link)), [0]);
    }

    #[test]
    fn row14_with_kms_only_client_output_is_decrypted_and_size_stays_plain() {
        let key: Vec<u8> = (0..64).collect();
        let client = SessionCipher::new(&key, Side::Client).unwrap();
        let mut link = ready_link();
        link.enable_encryption(SessionCipher::new(&key, Side::Agent).unwrap(), CounterNonce::starting_at([5, 0, 0]));
        link.receive(&input(0, &client.seal(b"secret", [9; 12])), T0);
        link.receive(&client_frame(message_type::INPUT_STREAM_DATA, 1, 3, br#"{"cols":100,"rows":30}"#), T0);
        let events: Vec<_> = std::iter::from_fn(|| link.poll_event()).collect();
        assert!(matches!(&events[0], AgentEvent::Input(plain) if plain == b"secret"));
        assert!(matches!(events[1], AgentEvent::Resize(TerminalSize { cols: 100, rows: 30 })));
        link.send_output(b"out", T0);
        link.send_stream(PayloadType::HandshakeComplete, b"{}".to_vec(), T0);
        let out = sent(&mut link);
        let out: Vec<_> = out.iter().filter(|f| f.message_type == message_type::OUTPUT_STREAM_DATA).collect();
        assert_eq!(&out[0].payload[..4], &5u32.to_le_bytes(), "counter nonce");
        assert_eq!(client.open(&out[0].payload).unwrap(), b"out");
        assert_eq!(out[1].payload, b"{}", "handshake payloads are plaintext");
        assert_eq!(HANDSHAKE_STEP_TIMEOUT_MS, 15_000);
    }
}
