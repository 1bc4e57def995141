//! The lab's message gateway (MGS): the data channel's websocket endpoint between a client and
//! the lab's exec agent, kept apart from the agent loop ([`super::agent`]).
//!
//! It checks the open-data-channel token, attaches a (re)connected socket to its channel and
//! relays frames both ways. Its own choices, where MGS's behaviour is not public:
//! - `agent_session_state` frames (Connected, Terminating) are agent→MGS only (notes §2.8):
//!   the gateway consumes them (the last one is kept on the channel) and never forwards them.
//! - `channel_closed` is the gateway's: when the agent ends its side (after Terminating it just
//!   closes), the gateway sends the client `channel_closed`, with the agent's error text (what
//!   the agent reports to MGS in `agent_task_complete`) as `Output`, and closes the socket.
//!   A command that cannot start writes nothing, so that frame is all the client gets (§9 row 9).
//! - A client that is away (its socket dropped, until it resumes with a new one): the gateway
//!   pauses the agent (MGS pauses the peer still connected while the other side is away,
//!   §3.8, inferred) and starts it again when a socket is attached; frames the agent sent in
//!   between are lost and recovered by its resends.
//! - Backlog: while more than [`GATEWAY_BACKLOG_FRAMES`] frames wait to be written to the
//!   client (a client that stops reading), the gateway sends the agent `pause_publication`
//!   and `start_publication` once the backlog is down to half; since any ack or input resumes
//!   the real agent (§9 row 4), the gateway pauses it again on its next frame if needed.
//!
//! Faults from `/_lab/faults` act here, on the wire: loss, duplication and reordering of agent
//! frames, loss and delayed acks from the client, a publication pause after N frames, one
//! dropped socket after N frames (the session survives and can be resumed), every socket cut N
//! ms after it attached (a flaky network), sockets left unread (frames and pings unanswered),
//! and one oversized binary message. A late websocket upgrade is the server's
//! (`data_channel_open_delay_ms`). What was lost is counted per channel (agent frames dropped
//! or sent with no client attached, client frames dropped), with the output frames whose last
//! transmission or whose ack was lost, so the agent's record of its drain can tell the frames
//! only a resend brings to the client from those on their way to it.

use super::hub::{Faults, Shared};
use super::state::{ExecGrant, now_ms};
use axum::extract::ws::{Message, WebSocket};
use evoctl_ssm::frame::{Frame, message_type};
use evoctl_ssm::messages::{Acknowledge, ChannelClosed, OpenDataChannel};
use futures::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// Frames waiting to be written to a client above which the gateway pauses the agent.
pub const GATEWAY_BACKLOG_FRAMES: usize = 256;

enum WireOut {
    Frame(Vec<u8>),
    Close,
}

/// One session's data channel through the gateway.
pub struct Channel {
    pub grant: ExecGrant,
    /// Frames for the client, through whichever socket is attached now.
    socket: Mutex<Option<mpsc::UnboundedSender<WireOut>>>,
    /// Frames for the agent.
    to_agent: mpsc::UnboundedSender<Vec<u8>>,
    from_gateway: Mutex<Option<mpsc::UnboundedReceiver<Vec<u8>>>>,
    frames_sent: AtomicU64,
    /// Agent frames that never reached the client: dropped by the loss fault, or sent while no
    /// client socket was attached.
    frames_lost: AtomicU64,
    /// Client frames the loss fault dropped on their way to the agent.
    client_frames_lost: AtomicU64,
    /// Sequence numbers of the output frames whose last transmission was lost (dropped, or
    /// sent while no client socket was attached); a later one handed to a socket clears it.
    transmission_lost: Mutex<HashSet<i64>>,
    /// Sequence numbers of the output frames whose ack from the client the loss fault dropped.
    acks_lost: Mutex<HashSet<i64>>,
    /// Output frames handed to a client socket whose ack has not been read from it yet, with
    /// the socket they went to (its number, [`Channel::sockets`]). When that socket ends, the
    /// frame or its ack went with it: only a resend brings it, as for a lost transmission.
    awaiting_ack: Mutex<HashMap<i64, u64>>,
    /// Sockets attached so far; the current one is numbered this.
    sockets: AtomicU64,
    disconnected_once: AtomicBool,
    oversized_sent: AtomicBool,
    /// Frames handed to the client's socket and not written yet.
    backlog: AtomicUsize,
    /// The gateway has paused the agent for the backlog (and no ack or input resumed it).
    backlog_paused: AtomicBool,
    /// The gateway has paused the agent because no client socket is attached (and no ack or
    /// input resumed it).
    away_paused: AtomicBool,
    /// TerminateSession: the agent kills the command and the channel closes.
    cancelled: Notify,
    cancel_requested: AtomicBool,
    /// The last `agent_session_state` the agent reported.
    agent_state: Mutex<Option<String>>,
}

impl Channel {
    /// The agent's end of the channel: frames from the client (once).
    pub fn take_agent_inbound(&self) -> Option<mpsc::UnboundedReceiver<Vec<u8>>> {
        self.from_gateway.lock().expect("lab lock").take()
    }

    pub fn cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::Acquire)
    }

    /// Resolves once TerminateSession is asked for (create it before checking the flag).
    pub fn cancelled(&self) -> tokio::sync::futures::Notified<'_> {
        self.cancelled.notified()
    }

    pub fn cancel(&self) {
        self.cancel_requested.store(true, Ordering::Release);
        self.cancelled.notify_waiters();
    }

    /// Agent frames lost on the way to the client so far.
    pub fn frames_lost(&self) -> u64 {
        self.frames_lost.load(Ordering::Acquire)
    }

    /// Client frames lost on the way to the agent so far.
    pub fn client_frames_lost(&self) -> u64 {
        self.client_frames_lost.load(Ordering::Acquire)
    }

    /// Whether a client socket is attached now.
    pub fn client_attached(&self) -> bool {
        self.socket.lock().expect("lab lock").is_some()
    }

    /// Of these output frames, how many only a resend can bring to the client: those whose last
    /// transmission was lost, and those whose ack from the client was lost. The rest are on
    /// their way to the client, or with it, which has its ack to send.
    pub fn needing_resend(&self, sequences: &[i64]) -> usize {
        let transmission_lost = self.transmission_lost.lock().expect("lab lock");
        let acks_lost = self.acks_lost.lock().expect("lab lock");
        sequences.iter().filter(|seq| transmission_lost.contains(seq) || acks_lost.contains(seq)).count()
    }

    /// An agent frame that will not reach the client.
    fn frame_lost(&self, bytes: &[u8]) {
        self.frames_lost.fetch_add(1, Ordering::AcqRel);
        if let Some(seq) = output_sequence(bytes) {
            self.transmission_lost.lock().expect("lab lock").insert(seq);
        }
    }

    /// A client frame the loss fault dropped (for an ack: which output frame it acked).
    fn client_frame_lost(&self, bytes: &[u8]) {
        self.client_frames_lost.fetch_add(1, Ordering::AcqRel);
        if let Ok(frame) = Frame::decode(bytes)
            && frame.message_type == message_type::ACKNOWLEDGE
            && let Ok(ack) = serde_json::from_slice::<Acknowledge>(&frame.payload)
        {
            self.acks_lost.lock().expect("lab lock").insert(ack.sequence_number);
        }
    }

    /// The last `agent_session_state` value the gateway consumed.
    pub fn agent_state(&self) -> Option<String> {
        self.agent_state.lock().expect("lab lock").clone()
    }

    /// A client frame for the agent. Any ack or input resumes the real agent (§9 row 4), so a
    /// pause the gateway wants must be sent again. The flags are cleared and the frame sent
    /// under the socket lock, as every pause and start the gateway sends is: otherwise a pause
    /// sent between the two would leave the agent paused with no flag saying so, and nothing
    /// would start it again.
    fn to_agent(&self, bytes: Vec<u8>, kind: &str) {
        if kind == message_type::ACKNOWLEDGE || kind == message_type::INPUT_STREAM_DATA {
            let _socket = self.socket.lock().expect("lab lock");
            self.backlog_paused.store(false, Ordering::Release);
            self.away_paused.store(false, Ordering::Release);
            let _ = self.to_agent.send(bytes);
            return;
        }
        let _ = self.to_agent.send(bytes);
    }

    /// An ack read from the client's socket: that frame is no longer waiting on this socket.
    fn ack_read(&self, ack: &Frame) {
        if let Ok(ack) = serde_json::from_slice::<Acknowledge>(&ack.payload) {
            self.awaiting_ack.lock().expect("lab lock").remove(&ack.sequence_number);
        }
    }

    /// Socket `number` has ended: the frames handed to it whose ack was never read are lost
    /// (unwritten when it was cut, or written with their ack still on the way back).
    fn socket_ended(&self, number: u64) {
        let mut awaiting = self.awaiting_ack.lock().expect("lab lock");
        let mut lost = self.transmission_lost.lock().expect("lab lock");
        awaiting.retain(|&seq, &mut socket| {
            if socket == number {
                lost.insert(seq);
            }
            socket != number
        });
    }

    /// The client's socket is gone: pause the agent until one is attached again.
    fn client_away(&self) {
        if !self.away_paused.swap(true, Ordering::AcqRel) {
            let _ = self.to_agent.send(publication(message_type::PAUSE_PUBLICATION));
        }
    }

    fn to_client(&self, bytes: Vec<u8>) {
        match self.socket.lock().expect("lab lock").as_ref() {
            Some(socket) => {
                if let Some(seq) = output_sequence(&bytes) {
                    self.transmission_lost.lock().expect("lab lock").remove(&seq);
                    let current = self.sockets.load(Ordering::Acquire);
                    self.awaiting_ack.lock().expect("lab lock").insert(seq, current);
                }
                self.backlog.fetch_add(1, Ordering::AcqRel);
                let _ = socket.send(WireOut::Frame(bytes));
            }
            None => self.frame_lost(&bytes),
        }
    }
}

/// The gateway's channels.
#[derive(Default)]
pub struct Gateway {
    channels: Mutex<HashMap<String, Arc<Channel>>>,
}

impl Gateway {
    pub fn channel(&self, session_id: &str) -> Option<Arc<Channel>> {
        self.channels.lock().expect("lab lock").get(session_id).cloned()
    }

    /// Serve one websocket: check the token, attach it to its channel (new or resumed) and
    /// relay the client's frames to the agent. `start_agent` runs for a new channel.
    pub async fn serve_socket(
        &self,
        shared: Arc<Shared>,
        session_id: String,
        socket: WebSocket,
        start_agent: impl FnOnce(Arc<Channel>),
    ) {
        let (mut sink, mut stream) = socket.split();
        let first = tokio::time::timeout(Duration::from_secs(30), stream.next()).await;
        let token = match first {
            Ok(Some(Ok(Message::Text(text)))) => {
                serde_json::from_str::<OpenDataChannel>(&text).ok().map(|o| o.token_value)
            }
            _ => None,
        };
        let grant = shared.accounts.lock().expect("lab lock").exec_session(&session_id);
        let Some(grant) = grant.filter(|g| Some(&g.token) == token.as_ref()) else {
            tracing::debug!(session = %session_id, "bad or missing token; closing");
            let _ = sink.send(Message::Close(None)).await;
            return;
        };
        let (channel, created) = {
            let mut channels = self.channels.lock().expect("lab lock");
            match channels.get(&session_id) {
                Some(existing) => (Arc::clone(existing), false),
                None => {
                    let (to_agent, from_gateway) = mpsc::unbounded_channel();
                    let created = Arc::new(Channel {
                        grant,
                        socket: Mutex::new(None),
                        to_agent,
                        from_gateway: Mutex::new(Some(from_gateway)),
                        frames_sent: AtomicU64::new(0),
                        frames_lost: AtomicU64::new(0),
                        client_frames_lost: AtomicU64::new(0),
                        transmission_lost: Mutex::default(),
                        acks_lost: Mutex::default(),
                        awaiting_ack: Mutex::default(),
                        sockets: AtomicU64::new(0),
                        disconnected_once: AtomicBool::new(false),
                        oversized_sent: AtomicBool::new(false),
                        backlog: AtomicUsize::new(0),
                        backlog_paused: AtomicBool::new(false),
                        away_paused: AtomicBool::new(false),
                        cancelled: Notify::new(),
                        cancel_requested: AtomicBool::new(false),
                        agent_state: Mutex::new(None),
                    });
                    channels.insert(session_id.clone(), Arc::clone(&created));
                    (created, true)
                }
            }
        };
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<WireOut>();
        // A new socket starts with an empty backlog.
        channel.backlog.store(0, Ordering::Release);
        let this_socket = {
            // Under the socket lock: see `send_frame`.
            let mut attached = channel.socket.lock().expect("lab lock");
            *attached = Some(out_tx.clone());
            let number = channel.sockets.fetch_add(1, Ordering::AcqRel) + 1;
            let was_paused = channel.backlog_paused.swap(false, Ordering::AcqRel);
            if channel.away_paused.swap(false, Ordering::AcqRel) || was_paused {
                let _ = channel.to_agent.send(publication(message_type::START_PUBLICATION));
            }
            number
        };
        if created {
            start_agent(Arc::clone(&channel));
        }
        let writing = Arc::clone(&channel);
        let writer = tokio::spawn(async move {
            while let Some(item) = out_rx.recv().await {
                match item {
                    WireOut::Frame(bytes) => {
                        let sent = sink.send(Message::Binary(bytes.into())).await;
                        let before = writing
                            .backlog
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)))
                            .unwrap_or(0);
                        if before <= GATEWAY_BACKLOG_FRAMES / 2 + 1 {
                            // Under the socket lock: see `Channel::to_agent`.
                            let _socket = writing.socket.lock().expect("lab lock");
                            if writing.backlog_paused.swap(false, Ordering::AcqRel) {
                                let _ = writing.to_agent.send(publication(message_type::START_PUBLICATION));
                            }
                        }
                        if sent.is_err() {
                            break;
                        }
                    }
                    WireOut::Close => {
                        let _ = sink.send(Message::Close(None)).await;
                        break;
                    }
                }
            }
        });
        // A network that cuts sockets: this one goes this long after it attached, with no close
        // frame (the client sees its connection end).
        let cut_after = shared.faults.lock().expect("lab lock").disconnect_every_ms;
        let cut = tokio::time::sleep(cut_after.map_or(Duration::MAX, Duration::from_millis));
        tokio::pin!(cut);
        'reading: loop {
            // An unresponsive peer: nothing is read, so nothing is relayed or answered (pongs
            // are written by the reading side).
            while shared.faults.lock().expect("lab lock").socket_unresponsive {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = &mut cut => break 'reading,
                }
            }
            let message = tokio::select! {
                message = stream.next() => message,
                _ = &mut cut => break 'reading,
            };
            let Some(Ok(message)) = message else { break };
            let bytes = match message {
                Message::Binary(bytes) => bytes.to_vec(),
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            let faults = shared.faults.lock().expect("lab lock").clone();
            if faults.drop_rate > 0.0 && shared.roll() < faults.drop_rate {
                channel.client_frame_lost(&bytes);
                continue;
            }
            let kind = match Frame::decode(&bytes) {
                Ok(frame) => {
                    if frame.message_type == message_type::ACKNOWLEDGE {
                        channel.ack_read(&frame);
                    }
                    frame.message_type
                }
                Err(_) => String::new(),
            };
            if kind == message_type::ACKNOWLEDGE && faults.ack_delay_ms > 0 {
                let delayed = Arc::clone(&channel);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(faults.ack_delay_ms)).await;
                    delayed.to_agent(bytes, &kind);
                });
            } else {
                channel.to_agent(bytes, &kind);
            }
        }
        if cut.is_elapsed() {
            tracing::debug!(session = %session_id, "fault: the client's socket was cut");
        }
        writer.abort();
        channel.socket_ended(this_socket);
        // The client went away: unless another socket took over, pause the agent (MGS pauses
        // the peer still connected while the other is away, §3.8). The pause is sent under the
        // socket lock: a socket attaching meanwhile must see it, to start the agent again.
        let mut socket = channel.socket.lock().expect("lab lock");
        if socket.as_ref().is_some_and(|current| current.same_channel(&out_tx)) {
            *socket = None;
            channel.client_away();
        }
    }

    /// Frames the agent put on its data channel: `agent_session_state` is consumed, the rest
    /// goes to the client through the faulty wire.
    pub fn from_agent(&self, shared: &Shared, channel: &Channel, batch: Vec<Vec<u8>>) {
        if batch.is_empty() {
            return;
        }
        let faults = shared.faults.lock().expect("lab lock").clone();
        let mut relayed = Vec::with_capacity(batch.len());
        for bytes in batch {
            match Frame::decode(&bytes) {
                Ok(frame) if frame.message_type == message_type::AGENT_SESSION_STATE => {
                    let state = serde_json::from_slice::<serde_json::Value>(&frame.payload)
                        .ok()
                        .and_then(|v| v["SessionState"].as_str().map(str::to_owned));
                    *channel.agent_state.lock().expect("lab lock") = state;
                }
                _ => relayed.push(bytes),
            }
        }
        let (shaped, dropped) = shape(relayed, &faults, shared);
        for bytes in dropped {
            channel.frame_lost(&bytes);
        }
        for bytes in shaped {
            self.send_frame(&faults, channel, bytes);
        }
    }

    /// Put one agent frame on the wire, applying the pause, disconnect and oversized faults and
    /// the backlog pause.
    fn send_frame(&self, faults: &Faults, channel: &Channel, bytes: Vec<u8>) {
        let is_output =
            Frame::decode(&bytes).map(|f| f.message_type == message_type::OUTPUT_STREAM_DATA).unwrap_or(false);
        {
            // Checked and paused under the socket lock, so a client attaching meanwhile (which
            // starts the agent under the same lock) cannot be followed by a stale pause.
            let socket = channel.socket.lock().expect("lab lock");
            if socket.is_none() {
                // No client: the frame is lost, and the agent is paused again, whatever resumed
                // it (an ack still arriving from the old socket, or the pause fault's own
                // start_publication, which must not restart an agent whose client is away).
                channel.frame_lost(&bytes);
                channel.away_paused.store(true, Ordering::Release);
                let _ = channel.to_agent.send(publication(message_type::PAUSE_PUBLICATION));
                return;
            }
        }
        channel.to_client(bytes);
        if channel.backlog.load(Ordering::Acquire) > GATEWAY_BACKLOG_FRAMES {
            // Under the socket lock: see `Channel::to_agent`.
            let _socket = channel.socket.lock().expect("lab lock");
            if !channel.backlog_paused.swap(true, Ordering::AcqRel) {
                let _ = channel.to_agent.send(publication(message_type::PAUSE_PUBLICATION));
            }
        }
        if !is_output {
            return;
        }
        let sent = channel.frames_sent.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(size) = faults.oversized_frame_bytes
            && !channel.oversized_sent.swap(true, Ordering::AcqRel)
        {
            // A broken or hostile peer: one binary message far larger than any frame.
            channel.to_client(vec![0u8; size]);
        }
        if faults.pause_after_frames == Some(sent) && faults.pause_ms > 0 {
            let pause = publication(message_type::PAUSE_PUBLICATION);
            let _ = channel.to_agent.send(pause.clone());
            channel.to_client(pause);
            let to_agent = channel.to_agent.clone();
            let socket = channel.socket.lock().expect("lab lock").clone();
            let pause_ms = faults.pause_ms;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                let start = publication(message_type::START_PUBLICATION);
                let _ = to_agent.send(start.clone());
                if let Some(socket) = socket {
                    let _ = socket.send(WireOut::Frame(start));
                }
            });
        }
        if faults.disconnect_after_frames == Some(sent) && !channel.disconnected_once.swap(true, Ordering::AcqRel) {
            let mut attached = channel.socket.lock().expect("lab lock");
            if let Some(socket) = attached.take() {
                let _ = socket.send(WireOut::Close);
                channel.client_away();
            }
        }
    }

    /// The agent closed its side (or never started and TerminateSession ended the session):
    /// send the client `channel_closed` with `output` (empty on a normal end) and close.
    pub fn agent_closed(&self, shared: &Shared, channel: &Channel, output: String) {
        let id = channel.grant.session_id.clone();
        let closed = ChannelClosed {
            message_id: uuid::Uuid::new_v4().to_string(),
            created_date: now_ms().to_string(),
            destination_id: id.clone(),
            session_id: id.clone(),
            message_type: message_type::CHANNEL_CLOSED.into(),
            schema_version: 1,
            output,
        };
        let frame = Frame::new(
            message_type::CHANNEL_CLOSED,
            0,
            0,
            *uuid::Uuid::new_v4().as_bytes(),
            now_ms(),
            0,
            serde_json::to_vec(&closed).expect("serialises"),
        );
        if let Some(socket) = channel.socket.lock().expect("lab lock").as_ref() {
            let _ = socket.send(WireOut::Frame(frame.encode().expect("fresh id")));
            let _ = socket.send(WireOut::Close);
        }
        self.channels.lock().expect("lab lock").remove(&id);
        shared.accounts.lock().expect("lab lock").remove_exec_session(&id);
    }
}

/// The sequence number of an `output_stream_data` frame (None for any other frame).
fn output_sequence(bytes: &[u8]) -> Option<i64> {
    Frame::decode(bytes).ok().filter(|f| f.message_type == message_type::OUTPUT_STREAM_DATA).map(|f| f.sequence_number)
}

/// A `pause_publication` or `start_publication` frame.
pub fn publication(kind: &str) -> Vec<u8> {
    Frame::new(kind, 0, 0, *uuid::Uuid::new_v4().as_bytes(), now_ms(), 0, Vec::new()).encode().expect("fresh id")
}

/// Loss, duplication and reordering of agent frames: what goes on the wire, and the frames
/// dropped.
fn shape(batch: Vec<Vec<u8>>, faults: &Faults, shared: &Shared) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut out = Vec::with_capacity(batch.len());
    let mut dropped = Vec::new();
    for bytes in batch {
        if faults.drop_rate > 0.0 && shared.roll() < faults.drop_rate {
            dropped.push(bytes);
            continue;
        }
        if faults.duplicate_rate > 0.0 && shared.roll() < faults.duplicate_rate {
            out.push(bytes.clone());
        }
        out.push(bytes);
    }
    if faults.reorder_window > 1 {
        for window in out.chunks_mut(faults.reorder_window) {
            for i in (1..window.len()).rev() {
                let j = (shared.roll() * (i + 1) as f64) as usize;
                window.swap(i, j.min(i));
            }
        }
    }
    (out, dropped)
}
