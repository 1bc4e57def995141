//! The plugin stand-in's own client link, sans-IO: raw websocket frames in, frames to send and
//! events out, time passed in by the caller. It is written from the rules of the real
//! `session-manager-plugin` (aws/session-manager-plugin `src/datachannel/streaming.go`, as
//! summarised in the shared data-channel notes §2–§3.6 and §9), not from evoctl's client state
//! machine, so a fact evoctl gets wrong is not shared with the lab. It follows these rules:
//! every `output_stream_data` frame is acknowledged with a selective ack (an `acknowledge`
//! frame, SequenceNumber 0, Flags 3, PayloadType 0, whose body names the frame's MessageType,
//! MessageId and SequenceNumber with IsSequentialMessage true); handshake frames (request,
//! challenge, complete) are acked before they are processed; output is delivered once each in
//! sequence order, frames from the future are acked and buffered (10 000 at most, dropped
//! without an ack past that), and duplicates are re-acked (the one place it departs from the
//! plugin, which drops them silently, so a lost ack cannot make the agent resend forever);
//! input goes out as `input_stream_data` (Flags 0) numbered from 0, handshake replies included;
//! a 100 ms tick resends only the oldest unacked input frame once it is older than the RTO
//! (200 ms to start, RFC 6298 smoothing with 1/8 and 1/4, at least 10 ms of variance, capped at
//! 1 s), and like the plugin the stored send time is never refreshed, so an overdue frame is
//! resent on every tick; after 3000 resends of one frame the link gives up. Once the KMS data
//! key is in use the client's Output payloads are sealed with the client half of the key and the
//! agent's Output, StdErr and ExitCode payloads opened with the agent half; a payload that does
//! not open is neither acked nor delivered, as in the plugin. The encryption challenge is
//! answered here (opened with the agent-side key, re-sealed with the client-side key); the
//! HandshakeResponse is built by [`handshake_response`] from the plugin's rules.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use evoctl_ssm::crypto::{SessionCipher, random_nonce};
use evoctl_ssm::frame::{Frame, PayloadType, message_type};
use evoctl_ssm::messages::{
    Acknowledge, ChannelClosed, EncryptionChallenge, HandshakeComplete, HandshakeRequest, HandshakeResponse,
    ProcessedClientAction,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};

/// The resend timer's period.
pub const TICK_MS: u64 = 100;
/// Resends of one frame before the plugin gives up (about 5 minutes).
pub const RESEND_LIMIT: u32 = 3000;
/// Frames kept in either direction's buffer.
pub const BUFFER_CAPACITY: usize = 10_000;
/// The version the stand-in reports, as in its `--version`.
pub const CLIENT_VERSION: &str = "1.2.707.0";

const ACK_FLAGS: u64 = 3;
const INPUT_FLAGS: u64 = 0;
const STATUS_SUCCESS: i32 = 1;
const STATUS_FAILED: i32 = 2;
const SHELL_SESSION_TYPES: [&str; 4] = ["Standard_Stream", "InteractiveCommands", "NonInteractiveCommands", "Port"];

/// What the link reports to the program driving it.
#[derive(Debug)]
pub enum LinkEvent {
    /// Agent payload bytes to display (Output, StdErr or ExitCode, opened when encrypted), in
    /// sequence order.
    Output(Vec<u8>),
    /// The agent's HandshakeRequest; answer with [`PluginLink::send_handshake_response`].
    HandshakeRequest(HandshakeRequest),
    HandshakeComplete(HandshakeComplete),
    ChannelClosed(ChannelClosed),
    /// The oldest input frame was resent [`RESEND_LIMIT`] times without an ack.
    GaveUp,
    /// A frame or payload the link could not use (logged by the plugin, otherwise ignored).
    Dropped(String),
}

/// The plugin's retransmission timeout estimate, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rtt {
    pub srtt: f64,
    pub rttvar: f64,
    pub rto: f64,
}

impl Default for Rtt {
    fn default() -> Rtt {
        Rtt { srtt: 100.0, rttvar: 0.0, rto: 200.0 }
    }
}

impl Rtt {
    /// RFC 6298 with the plugin's constants: 1/4 for the variance, 1/8 for the smoothed time,
    /// a 10 ms clock granularity and a 1 s ceiling.
    pub fn update(&mut self, sample: f64) {
        self.rttvar = 0.75 * self.rttvar + 0.25 * (self.srtt - sample).abs();
        self.srtt = 0.875 * self.srtt + 0.125 * sample;
        self.rto = (self.srtt + (4.0 * self.rttvar).max(10.0)).min(1000.0);
    }
}

struct Unacked {
    sequence: i64,
    bytes: Vec<u8>,
    /// When it was first sent: the plugin refreshes the time on a copy, so this never moves.
    sent_at: u64,
    resends: u32,
}

/// The client side of one data channel, as the plugin runs it.
pub struct PluginLink {
    expected: i64,
    next_sequence: i64,
    future: BTreeMap<i64, Frame>,
    unacked: VecDeque<Unacked>,
    rtt: Rtt,
    cipher: Option<SessionCipher>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<LinkEvent>,
    gave_up: bool,
    resends: u64,
}

impl Default for PluginLink {
    fn default() -> PluginLink {
        PluginLink::new()
    }
}

impl PluginLink {
    pub fn new() -> PluginLink {
        PluginLink {
            expected: 0,
            next_sequence: 0,
            future: BTreeMap::new(),
            unacked: VecDeque::new(),
            rtt: Rtt::default(),
            cipher: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            gave_up: false,
            resends: 0,
        }
    }

    /// The next frame to send on the websocket (binary).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// Input frames sent and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Resends so far, all frames together.
    pub fn resends(&self) -> u64 {
        self.resends
    }

    pub fn rtt(&self) -> Rtt {
        self.rtt
    }

    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// From now on seal Output input and open the agent's Output, StdErr and ExitCode.
    pub fn enable_encryption(&mut self, cipher: SessionCipher) {
        self.cipher = Some(cipher);
    }

    /// Keystrokes as read from stdin: one Output message, sealed once the KMS key is in use.
    pub fn send_input(&mut self, data: &[u8], now_ms: u64) {
        let payload = match &self.cipher {
            Some(cipher) => cipher.seal(data, random_nonce()),
            None => data.to_vec(),
        };
        self.send_stream(PayloadType::Output, payload, now_ms);
    }

    /// The answer to the agent's HandshakeRequest (plaintext JSON, a normal sequence number).
    pub fn send_handshake_response(&mut self, response: &HandshakeResponse, now_ms: u64) {
        let body = serde_json::to_vec(response).expect("a HandshakeResponse serialises");
        self.send_stream(PayloadType::HandshakeResponse, body, now_ms);
    }

    /// One `input_stream_data` message with the next sequence number, kept until acked.
    pub fn send_stream(&mut self, payload_type: PayloadType, payload: Vec<u8>, now_ms: u64) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let frame = Frame::new(
            message_type::INPUT_STREAM_DATA,
            sequence,
            INPUT_FLAGS,
            new_id(),
            wall(now_ms),
            payload_type.as_u32(),
            payload,
        );
        let bytes = frame.encode().expect("a fresh id is never nil");
        if self.unacked.len() >= BUFFER_CAPACITY {
            // The plugin's outgoing list drops its oldest entry when full.
            self.unacked.pop_front();
        }
        self.unacked.push_back(Unacked { sequence, bytes: bytes.clone(), sent_at: now_ms, resends: 0 });
        self.transmit.push_back(bytes);
    }

    /// The 100 ms resend timer: look at the oldest unacked frame only and resend it when it is
    /// older than the RTO; give up once it has been resent [`RESEND_LIMIT`] times.
    pub fn tick(&mut self, now_ms: u64) {
        if self.gave_up {
            return;
        }
        let rto = self.rtt.rto;
        let Some(oldest) = self.unacked.front_mut() else { return };
        if (now_ms.saturating_sub(oldest.sent_at) as f64) <= rto {
            return;
        }
        if oldest.resends >= RESEND_LIMIT {
            self.gave_up = true;
            self.events.push_back(LinkEvent::GaveUp);
            return;
        }
        oldest.resends += 1;
        self.resends += 1;
        self.transmit.push_back(oldest.bytes.clone());
    }

    /// One websocket message from the gateway (text and binary are read alike).
    pub fn receive(&mut self, bytes: &[u8], now_ms: u64) {
        let frame = match Frame::decode(bytes) {
            Ok(frame) => frame,
            Err(err) => return self.events.push_back(LinkEvent::Dropped(format!("invalid message: {err}"))),
        };
        match frame.message_type.as_str() {
            message_type::ACKNOWLEDGE => self.on_ack(&frame, now_ms),
            message_type::OUTPUT_STREAM_DATA => self.on_stream(frame, now_ms),
            message_type::CHANNEL_CLOSED => match serde_json::from_slice::<ChannelClosed>(&frame.payload) {
                Ok(closed) => self.events.push_back(LinkEvent::ChannelClosed(closed)),
                Err(err) => self.events.push_back(LinkEvent::Dropped(format!("channel_closed: {err}"))),
            },
            // start/pause_publication are ignored, as by the plugin since 1.2.295.0.
            _ => {}
        }
    }

    fn on_ack(&mut self, frame: &Frame, now_ms: u64) {
        let ack: Acknowledge = match serde_json::from_slice(&frame.payload) {
            Ok(ack) => ack,
            Err(err) => return self.events.push_back(LinkEvent::Dropped(format!("acknowledge: {err}"))),
        };
        // Acks match on the sequence number only, and each removes exactly one frame.
        if let Some(index) = self.unacked.iter().position(|u| u.sequence == ack.sequence_number) {
            let acked = self.unacked.remove(index).expect("index from position");
            self.rtt.update(now_ms.saturating_sub(acked.sent_at) as f64);
        }
    }

    fn on_stream(&mut self, frame: Frame, now_ms: u64) {
        use std::cmp::Ordering;
        match frame.sequence_number.cmp(&self.expected) {
            Ordering::Less => self.acknowledge(&frame, now_ms),
            Ordering::Greater => {
                if self.future.len() < BUFFER_CAPACITY || self.future.contains_key(&frame.sequence_number) {
                    self.acknowledge(&frame, now_ms);
                    self.future.entry(frame.sequence_number).or_insert(frame);
                }
            }
            Ordering::Equal => {
                if self.process(frame, true, now_ms) {
                    self.expected += 1;
                    while let Some(next) = self.future.remove(&self.expected) {
                        if !self.process(next, false, now_ms) {
                            break;
                        }
                        self.expected += 1;
                    }
                }
            }
        }
    }

    /// Handle the frame that is next in sequence; false when it was not consumed (not acked,
    /// the agent resends it).
    fn process(&mut self, frame: Frame, ack: bool, now_ms: u64) -> bool {
        let kind = frame.kind();
        match kind {
            PayloadType::HandshakeRequest | PayloadType::EncChallengeRequest | PayloadType::HandshakeComplete => {
                if ack {
                    self.acknowledge(&frame, now_ms);
                }
                self.handshake_message(kind, &frame.payload, now_ms);
                true
            }
            _ => {
                let displayed = matches!(kind, PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode);
                let payload = match (&self.cipher, displayed) {
                    (Some(cipher), true) => match cipher.open(&frame.payload) {
                        Ok(plain) => plain,
                        Err(err) => {
                            let detail = format!("sequence {}: {err}", frame.sequence_number);
                            self.events.push_back(LinkEvent::Dropped(detail));
                            if !ack {
                                // Already acked when buffered: put it back for the resend.
                                self.future.insert(frame.sequence_number, frame);
                            }
                            return false;
                        }
                    },
                    _ => frame.payload.clone(),
                };
                if ack {
                    self.acknowledge(&frame, now_ms);
                }
                if displayed {
                    self.events.push_back(LinkEvent::Output(payload));
                }
                true
            }
        }
    }

    fn handshake_message(&mut self, kind: PayloadType, payload: &[u8], now_ms: u64) {
        match kind {
            PayloadType::HandshakeRequest => match serde_json::from_slice(payload) {
                Ok(request) => self.events.push_back(LinkEvent::HandshakeRequest(request)),
                Err(err) => self.events.push_back(LinkEvent::Dropped(format!("HandshakeRequest: {err}"))),
            },
            PayloadType::HandshakeComplete => match serde_json::from_slice(payload) {
                Ok(done) => self.events.push_back(LinkEvent::HandshakeComplete(done)),
                Err(err) => self.events.push_back(LinkEvent::Dropped(format!("HandshakeComplete: {err}"))),
            },
            _ => match self.answer_challenge(payload) {
                Ok(answer) => self.send_stream(PayloadType::EncChallengeResponse, answer, now_ms),
                Err(err) => self.events.push_back(LinkEvent::Dropped(format!("EncChallengeRequest: {err}"))),
            },
        }
    }

    /// Open the agent's challenge with the agent-side key and seal it again with the client's.
    fn answer_challenge(&self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let cipher = self.cipher.as_ref().ok_or("no data key yet")?;
        let request: EncryptionChallenge = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        let sealed = BASE64.decode(&request.challenge).map_err(|e| e.to_string())?;
        let plain = cipher.open(&sealed).map_err(|e| e.to_string())?;
        let answer = EncryptionChallenge { challenge: BASE64.encode(cipher.seal(&plain, random_nonce())) };
        Ok(serde_json::to_vec(&answer).expect("a challenge serialises"))
    }

    fn acknowledge(&mut self, frame: &Frame, now_ms: u64) {
        let body = Acknowledge {
            message_type: frame.message_type.clone(),
            message_id: frame.message_id_string(),
            sequence_number: frame.sequence_number,
            is_sequential: true,
        };
        let payload = serde_json::to_vec(&body).expect("an ack serialises");
        let ack = Frame::new(message_type::ACKNOWLEDGE, 0, ACK_FLAGS, new_id(), wall(now_ms), 0, payload);
        self.transmit.push_back(ack.encode().expect("a fresh id is never nil"));
    }
}

/// The KMS key the agent asks for, if its request has a KMSEncryption action.
pub fn requested_kms_key(request: &HandshakeRequest) -> Option<String> {
    request
        .requested_client_actions
        .iter()
        .find(|a| a.action_type == "KMSEncryption")
        .map(|a| a.action_parameters.get("KMSKeyId").and_then(Value::as_str).unwrap_or_default().to_owned())
}

/// The plugin's HandshakeResponse: one processed action per requested one, in the request's
/// order. SessionType succeeds for the shell and port types; KMSEncryption succeeds with the
/// data key's ciphertext (`kms` = Ok) or fails with the GenerateDataKey error (`kms` = Err, or
/// None when no key was fetched); a failure sets ActionStatus 2 and its text goes to `Errors`
/// too. An unknown action type gets the plugin's bug: ActionResult 3 (Unsupported) with
/// ActionStatus left at 0.
pub fn handshake_response(
    request: &HandshakeRequest,
    kms: Option<Result<&[u8], String>>,
    client_version: &str,
) -> HandshakeResponse {
    let mut errors = Vec::new();
    let mut processed = Vec::new();
    for action in &request.requested_client_actions {
        let kind = action.action_type.as_str();
        let failed =
            |detail: String| (STATUS_FAILED, Value::Null, format!("Failed to process action {kind}: {detail}"));
        let (status, result, error) = match kind {
            "SessionType" => {
                let session_type = action.action_parameters.get("SessionType").and_then(Value::as_str);
                match session_type {
                    Some(t) if SHELL_SESSION_TYPES.contains(&t) => (STATUS_SUCCESS, Value::Null, String::new()),
                    other => failed(format!("unknown session type {}", other.unwrap_or_default())),
                }
            }
            "KMSEncryption" => match &kms {
                Some(Ok(ciphertext)) => (
                    STATUS_SUCCESS,
                    json!({"KMSCipherTextKey": BASE64.encode(ciphertext), "KMSCipherTextHash": null}),
                    String::new(),
                ),
                Some(Err(err)) => failed(err.clone()),
                None => failed("no data key".into()),
            },
            _ => (0, json!(3), String::new()),
        };
        if !error.is_empty() {
            errors.push(error.clone());
        }
        processed.push(ProcessedClientAction {
            action_type: kind.to_owned(),
            action_status: status,
            action_result: result,
            error,
        });
    }
    HandshakeResponse {
        client_version: client_version.to_owned(),
        processed_client_actions: processed,
        errors: (!errors.is_empty()).then_some(errors),
    }
}

fn new_id() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

/// CreatedDate must not be 0 (receivers reject it).
fn wall(now_ms: u64) -> u64 {
    now_ms.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use evoctl_ssm::crypto::{DATA_KEY_LEN, Side};
    use evoctl_ssm::messages::RequestedClientAction;

    const T0: u64 = 1_700_000_000_000;

    fn output(sequence: i64, payload_type: PayloadType, payload: &[u8]) -> Vec<u8> {
        let id = uuid::Uuid::new_v4().into_bytes();
        Frame::new(
            message_type::OUTPUT_STREAM_DATA,
            sequence,
            u64::from(sequence == 0),
            id,
            T0,
            payload_type.as_u32(),
            payload.to_vec(),
        )
        .encode()
        .unwrap()
    }

    fn ack_of(sequence: i64) -> Vec<u8> {
        let body = Acknowledge {
            message_type: message_type::INPUT_STREAM_DATA.into(),
            message_id: uuid::Uuid::new_v4().to_string(),
            sequence_number: sequence,
            is_sequential: true,
        };
        Frame::new(message_type::ACKNOWLEDGE, 0, 3, new_id(), T0, 0, serde_json::to_vec(&body).unwrap())
            .encode()
            .unwrap()
    }

    fn sent(link: &mut PluginLink) -> Vec<Frame> {
        std::iter::from_fn(|| link.poll_transmit()).map(|bytes| Frame::decode(&bytes).unwrap()).collect()
    }

    fn acked(frames: &[Frame]) -> Vec<i64> {
        frames
            .iter()
            .filter(|f| f.message_type == message_type::ACKNOWLEDGE)
            .map(|f| serde_json::from_slice::<Acknowledge>(&f.payload).unwrap().sequence_number)
            .collect()
    }

    fn outputs(link: &mut PluginLink) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(event) = link.poll_event() {
            if let LinkEvent::Output(bytes) = event {
                all.extend(bytes);
            }
        }
        all
    }

    #[test]
    fn every_output_frame_gets_a_selective_ack_of_the_plugins_shape() {
        let mut link = PluginLink::new();
        let raw = output(0, PayloadType::Output, b"hi");
        let incoming = Frame::decode(&raw).unwrap();
        link.receive(&raw, T0 + 5);
        let frames = sent(&mut link);
        assert_eq!(frames.len(), 1);
        let ack = &frames[0];
        assert_eq!(ack.message_type, "acknowledge");
        assert_eq!((ack.sequence_number, ack.flags, ack.payload_type, ack.schema_version), (0, 3, 0, 1));
        assert_ne!(ack.message_id, incoming.message_id, "an ack has a fresh MessageId");
        let body: Value = serde_json::from_slice(&ack.payload).unwrap();
        assert_eq!(
            body,
            json!({
                "AcknowledgedMessageType": "output_stream_data",
                "AcknowledgedMessageId": incoming.message_id_string(),
                "AcknowledgedMessageSequenceNumber": 0,
                "IsSequentialMessage": true
            })
        );
        assert_eq!(outputs(&mut link), b"hi");
    }

    #[test]
    fn reordered_frames_are_acked_on_arrival_and_delivered_in_sequence_order() {
        let mut link = PluginLink::new();
        for sequence in [2, 1, 3] {
            link.receive(&output(sequence, PayloadType::Output, format!("<{sequence}>").as_bytes()), T0);
        }
        assert_eq!(acked(&sent(&mut link)), vec![2, 1, 3], "future frames are acked and buffered");
        assert_eq!(outputs(&mut link), b"", "nothing is delivered before sequence 0");
        link.receive(&output(0, PayloadType::Output, b"<0>"), T0);
        assert_eq!(acked(&sent(&mut link)), vec![0], "buffered frames are not acked again when drained");
        assert_eq!(outputs(&mut link), b"<0><1><2><3>");
    }

    #[test]
    fn duplicates_are_re_acked_and_delivered_once() {
        let mut link = PluginLink::new();
        link.receive(&output(0, PayloadType::Output, b"a"), T0);
        link.receive(&output(0, PayloadType::Output, b"a"), T0);
        link.receive(&output(2, PayloadType::Output, b"c"), T0);
        link.receive(&output(2, PayloadType::Output, b"c"), T0);
        link.receive(&output(1, PayloadType::Output, b"b"), T0);
        link.receive(&output(1, PayloadType::Output, b"b"), T0);
        assert_eq!(acked(&sent(&mut link)), vec![0, 0, 2, 2, 1, 1]);
        assert_eq!(outputs(&mut link), b"abc");
    }

    #[test]
    fn input_is_numbered_from_zero_and_an_ack_clears_exactly_its_frame() {
        let mut link = PluginLink::new();
        link.send_input(b"ls\r", T0);
        link.send_input(b"\r", T0);
        let frames = sent(&mut link);
        let shape: Vec<_> =
            frames.iter().map(|f| (f.message_type.as_str(), f.sequence_number, f.flags, f.payload_type)).collect();
        assert_eq!(shape, vec![("input_stream_data", 0, 0, 1), ("input_stream_data", 1, 0, 1)]);
        assert_eq!(frames[0].payload, b"ls\r");
        link.receive(&ack_of(1), T0 + 140);
        assert_eq!(link.unacked(), 1, "acks are selective, not cumulative");
        let rtt = link.rtt();
        assert_eq!((rtt.srtt, rtt.rttvar, rtt.rto), (105.0, 10.0, 145.0), "the RFC 6298 test vector");
        link.receive(&ack_of(1), T0 + 150);
        assert_eq!(link.unacked(), 1, "a second ack of the same frame changes nothing");
        link.receive(&ack_of(0), T0 + 150);
        assert_eq!(link.unacked(), 0);
    }

    #[test]
    fn the_rto_is_capped_at_one_second() {
        let mut rtt = Rtt::default();
        rtt.update(5000.0);
        assert_eq!(rtt.rto, 1000.0);
    }

    #[test]
    fn only_the_oldest_unacked_frame_is_resent_per_tick_once_older_than_the_rto() {
        let mut link = PluginLink::new();
        for n in 0..3 {
            link.send_input(format!("k{n}").as_bytes(), T0);
        }
        sent(&mut link);
        link.tick(T0 + 100);
        link.tick(T0 + 200);
        assert!(sent(&mut link).is_empty(), "nothing is older than the 200 ms RTO yet");
        link.tick(T0 + 300);
        let resent = sent(&mut link);
        assert_eq!(resent.iter().map(|f| f.sequence_number).collect::<Vec<_>>(), vec![0]);
        link.tick(T0 + 400);
        assert_eq!(
            sent(&mut link).iter().map(|f| f.sequence_number).collect::<Vec<_>>(),
            vec![0],
            "every tick, as the plugin's stale send time makes it"
        );
        link.receive(&ack_of(0), T0 + 450);
        link.tick(T0 + 500);
        let next = sent(&mut link);
        assert_eq!(next.iter().map(|f| f.sequence_number).collect::<Vec<_>>(), vec![1], "then the next oldest");
        assert_eq!(next[0].payload, b"k1", "a resend is the same frame");
        assert_eq!(link.resends(), 3);
    }

    #[test]
    fn it_gives_up_after_3000_resends_of_one_frame() {
        let mut link = PluginLink::new();
        link.send_input(b"x", T0);
        sent(&mut link);
        let mut now = T0;
        let mut resent = 0;
        let mut gave_up_at = None;
        for tick in 1..=3100u64 {
            now += TICK_MS;
            link.tick(now);
            resent += sent(&mut link).len();
            if let Some(LinkEvent::GaveUp) = link.poll_event() {
                gave_up_at = Some(tick);
                break;
            }
        }
        assert_eq!(resent, 3000);
        assert_eq!(gave_up_at, Some(3003), "two ticks within the RTO, 3000 resends, then the give-up");
        assert!(link.gave_up());
        link.tick(now + TICK_MS);
        assert!(sent(&mut link).is_empty() && link.poll_event().is_none(), "nothing after giving up");
    }

    fn request(kms: bool) -> HandshakeRequest {
        let mut actions = vec![RequestedClientAction {
            action_type: "SessionType".into(),
            action_parameters: json!({"SessionType": "InteractiveCommands", "Properties": null}),
        }];
        if kms {
            actions.push(RequestedClientAction {
                action_type: "KMSEncryption".into(),
                action_parameters: json!({"KMSKeyId": "alias/exec", "Challenge": "Y2g="}),
            });
        }
        HandshakeRequest { agent_version: "3.3.987.0".into(), requested_client_actions: actions }
    }

    #[test]
    fn the_handshake_response_has_the_plugins_shape() {
        let request = request(true);
        assert_eq!(requested_kms_key(&request).as_deref(), Some("alias/exec"));
        let reply = handshake_response(&request, Some(Ok(b"blob")), CLIENT_VERSION);
        assert_eq!(
            serde_json::to_value(&reply).unwrap(),
            json!({"ClientVersion":"1.2.707.0","ProcessedClientActions":[
                {"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""},
                {"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":{"KMSCipherTextKey":"YmxvYg==","KMSCipherTextHash":null},"Error":""}],
             "Errors":null})
        );
        let failed = handshake_response(&request, Some(Err("Fetching data key failed: denied".into())), CLIENT_VERSION);
        let kms = &failed.processed_client_actions[1];
        assert_eq!(kms.action_status, 2);
        assert_eq!(kms.error, "Failed to process action KMSEncryption: Fetching data key failed: denied");
        assert_eq!(failed.errors, Some(vec![kms.error.clone()]));
        let mut odd = super::tests::request(false);
        odd.requested_client_actions
            .push(RequestedClientAction { action_type: "Mystery".into(), action_parameters: Value::Null });
        let odd = handshake_response(&odd, None, CLIENT_VERSION);
        assert_eq!(
            (odd.processed_client_actions[1].action_status, &odd.processed_client_actions[1].action_result),
            (0, &json!(3))
        );
    }

    #[test]
    fn a_kms_session_answers_the_challenge_and_seals_and_opens_output() {
        let key: Vec<u8> = (0..DATA_KEY_LEN as u8).collect();
        let agent = SessionCipher::new(&key, Side::Agent).unwrap();
        let mut link = PluginLink::new();
        let body = serde_json::to_vec(&request(true)).unwrap();
        link.receive(&output(0, PayloadType::HandshakeRequest, &body), T0);
        assert_eq!(acked(&sent(&mut link)), vec![0], "acked before it is processed");
        let Some(LinkEvent::HandshakeRequest(request)) = link.poll_event() else { panic!("no request") };
        link.enable_encryption(SessionCipher::new(&key, Side::Client).unwrap());
        link.send_handshake_response(&handshake_response(&request, Some(Ok(b"blob")), CLIENT_VERSION), T0);
        let response = sent(&mut link);
        assert_eq!((response[0].sequence_number, response[0].payload_type), (0, 6));

        let secret = [9u8; 64];
        let challenge = EncryptionChallenge { challenge: BASE64.encode(agent.seal(&secret, [1; 12])) };
        link.receive(&output(1, PayloadType::EncChallengeRequest, &serde_json::to_vec(&challenge).unwrap()), T0);
        let frames = sent(&mut link);
        assert_eq!(acked(&frames), vec![1]);
        let answer = frames.iter().find(|f| f.message_type == "input_stream_data").unwrap();
        assert_eq!((answer.sequence_number, answer.payload_type), (1, 9));
        let answer: EncryptionChallenge = serde_json::from_slice(&answer.payload).unwrap();
        assert_eq!(agent.open(&BASE64.decode(answer.challenge).unwrap()).unwrap(), secret);

        let done = json!({"HandshakeTimeToComplete": 5, "CustomerMessage": "This session is encrypted using AWS KMS."});
        link.receive(&output(2, PayloadType::HandshakeComplete, done.to_string().as_bytes()), T0);
        link.receive(&output(3, PayloadType::Output, &agent.seal(b"secret output", [2; 12])), T0);
        assert_eq!(acked(&sent(&mut link)), vec![2, 3]);
        assert!(
            matches!(link.poll_event(), Some(LinkEvent::HandshakeComplete(d)) if d.customer_message.contains("KMS"))
        );
        assert_eq!(outputs(&mut link), b"secret output");

        link.send_input(b"typed", T0);
        let input = sent(&mut link);
        assert_eq!((input[0].sequence_number, input[0].payload_type), (2, 1));
        assert_eq!(agent.open(&input[0].payload).unwrap(), b"typed", "input Output is sealed with the client half");

        link.receive(&output(4, PayloadType::Output, b"not sealed"), T0);
        assert!(acked(&sent(&mut link)).is_empty(), "a payload that does not open is not acked");
        assert!(matches!(link.poll_event(), Some(LinkEvent::Dropped(_))));
        link.receive(&output(4, PayloadType::Output, &agent.seal(b"again", [3; 12])), T0);
        assert_eq!(acked(&sent(&mut link)), vec![4]);
        assert_eq!(outputs(&mut link), b"again", "the resend is delivered");
    }

    #[test]
    fn channel_closed_is_reported_and_corrupt_frames_are_dropped_unacked() {
        let mut link = PluginLink::new();
        let mut corrupt = output(0, PayloadType::Output, b"x");
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        link.receive(&corrupt, T0);
        assert!(sent(&mut link).is_empty());
        assert!(matches!(link.poll_event(), Some(LinkEvent::Dropped(_))));
        let closed = json!({"MessageId":"m","CreatedDate":"1503434274948","DestinationId":"d","SessionId":"s","MessageType":"channel_closed","SchemaVersion":1,"Output":"boom"});
        let frame = Frame::new(message_type::CHANNEL_CLOSED, 0, 0, new_id(), T0, 0, closed.to_string().into_bytes());
        link.receive(&frame.encode().unwrap(), T0);
        assert!(sent(&mut link).is_empty(), "channel_closed is not acked");
        assert!(matches!(link.poll_event(), Some(LinkEvent::ChannelClosed(c)) if c.output == "boom"));
    }
}
