//! The client side of smux v1 (xtaci/smux, the multiplexer the agent's port plugin speaks to
//! clients from version 1.1.70 on), sans-IO: the 8-byte frame, a decoder for a byte stream cut
//! anywhere (smux frames travel inside data-channel Output payloads with no alignment), and
//! [`Mux`], which numbers client streams (odd, from 3), cuts writes into frames of at most
//! [`MAX_FRAME_PAYLOAD`] bytes and tracks each stream's state.
//!
//! Frame (little-endian): version u8 (1) | command u8 (SYN 0, FIN 1, PSH 2, NOP 3) | length u16 |
//! stream id u32 | payload. A stream opens with SYN and carries data in PSH frames; FIN says its
//! sender will write no more. In xtaci/smux a FIN is sent by `Close`, after which that side also
//! stops reading, so a FIN from the agent means the stream is over for the agent: data the client
//! writes after it is dropped there. NOP is the keep-alive (stream id 0). v1 has no window updates
//! (command 4 is v2's): a version or command this codec does not know is a protocol error, as it is
//! for smux itself, because the rest of the byte stream can no longer be framed.
//!
//! The agent never opens streams; a SYN from it is answered with FIN and reported. Data for a
//! stream that is no longer known (it crossed a FIN) is dropped, as smux drops it.

use std::collections::{BTreeMap, VecDeque};

/// The protocol version of smux v1.
pub const VERSION: u8 = 1;
/// Bytes of a frame header.
pub const HEADER_LEN: usize = 8;
/// The largest payload this client puts in one frame (smux's default `MaxFrameSize`).
pub const MAX_FRAME_PAYLOAD: usize = 32 * 1024;
/// The first stream id a smux client opens (it counts 1, 3, 5, ... and starts by adding 2).
pub const FIRST_CLIENT_STREAM: u32 = 3;

/// A frame's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Syn,
    Fin,
    Psh,
    Nop,
}

impl Command {
    pub fn as_u8(self) -> u8 {
        match self {
            Command::Syn => 0,
            Command::Fin => 1,
            Command::Psh => 2,
            Command::Nop => 3,
        }
    }

    fn from_u8(value: u8) -> Option<Command> {
        match value {
            0 => Some(Command::Syn),
            1 => Some(Command::Fin),
            2 => Some(Command::Psh),
            3 => Some(Command::Nop),
            _ => None,
        }
    }
}

/// One smux frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub stream_id: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// Append the frame's bytes to `out`. The payload must fit the u16 length field.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let length = u16::try_from(self.payload.len()).expect("a smux payload fits 16 bits");
        out.push(VERSION);
        out.push(self.command.as_u8());
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&self.stream_id.to_le_bytes());
        out.extend_from_slice(&self.payload);
    }
}

/// The byte stream cannot be framed any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmuxError {
    #[error("smux frame with version {0} (only version 1 is spoken)")]
    Version(u8),
    #[error("smux frame with unknown command {0}")]
    Command(u8),
}

/// Frames out of a byte stream fed in pieces of any size. What is fed is kept until framed;
/// [`Mux::receive`] takes every complete frame at once, so at most one partial frame (8 + 65 535
/// bytes) stays behind.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
    start: usize,
    failed: Option<SmuxError>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Add received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buffer.len() {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes fed and not yet framed.
    pub fn pending(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// The next complete frame, `None` until one is complete; after an error, the same error
    /// for good.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SmuxError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let rest = &self.buffer[self.start..];
        let Some((header, body)) = rest.split_first_chunk::<HEADER_LEN>() else { return Ok(None) };
        let error = if header[0] != VERSION {
            Some(SmuxError::Version(header[0]))
        } else if Command::from_u8(header[1]).is_none() {
            Some(SmuxError::Command(header[1]))
        } else {
            None
        };
        if let Some(err) = error {
            self.failed = Some(err.clone());
            return Err(err);
        }
        let command = Command::from_u8(header[1]).expect("checked above");
        let length = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let stream_id = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = body.get(..length) else { return Ok(None) };
        let frame = Frame { command, stream_id, payload: payload.to_vec() };
        self.start += HEADER_LEN + length;
        Ok(Some(frame))
    }
}

/// Where one stream is. FIN either way half-closes it; both ways, it is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    Open,
    /// This client sent FIN: it writes no more, the agent may still send.
    LocalClosed,
    /// The agent sent FIN: it sends no more (and drops what it is sent).
    RemoteClosed,
}

/// What the agent's frames mean for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxEvent {
    /// Bytes for a stream.
    Data { stream_id: u32, bytes: Vec<u8> },
    /// The agent closed a stream; `received` says whether any data came on it first (a stream
    /// closed without data right after the agent's ConnectToPortError flag is the one whose
    /// destination could not be reached).
    Closed { stream_id: u32, received: bool },
    /// The agent tried to open a stream (agents never do); it was refused with FIN.
    Refused { stream_id: u32 },
}

/// Writing to a stream that is not open for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("smux stream {0} is not open")]
    Unknown(u32),
    #[error("smux stream {0} was already closed by this side")]
    Closed(u32),
}

#[derive(Debug)]
struct Stream {
    state: StreamState,
    received: bool,
}

/// The client end of one smux session.
#[derive(Debug)]
pub struct Mux {
    decoder: Decoder,
    next_id: u32,
    streams: BTreeMap<u32, Stream>,
    outgoing: Vec<u8>,
    events: VecDeque<MuxEvent>,
}

impl Default for Mux {
    fn default() -> Self {
        Mux::new()
    }
}

impl Mux {
    pub fn new() -> Mux {
        Mux {
            decoder: Decoder::new(),
            next_id: FIRST_CLIENT_STREAM,
            streams: BTreeMap::new(),
            outgoing: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Open a stream (SYN) and return its id.
    pub fn open_stream(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(2);
        self.push(Command::Syn, id, &[]);
        self.streams.insert(id, Stream { state: StreamState::Open, received: false });
        id
    }

    /// Write `data` on a stream, in PSH frames of at most [`MAX_FRAME_PAYLOAD`] bytes. Writing to
    /// a stream the agent closed is allowed and harmless (the agent drops it), as in smux.
    pub fn write(&mut self, stream_id: u32, data: &[u8]) -> Result<(), StreamError> {
        match self.streams.get(&stream_id).map(|s| s.state) {
            None => Err(StreamError::Unknown(stream_id)),
            Some(StreamState::LocalClosed) => Err(StreamError::Closed(stream_id)),
            Some(_) => {
                for chunk in data.chunks(MAX_FRAME_PAYLOAD) {
                    self.push(Command::Psh, stream_id, chunk);
                }
                Ok(())
            }
        }
    }

    /// Close a stream for writing (FIN). Closing twice, or a stream already gone, does nothing.
    pub fn close(&mut self, stream_id: u32) {
        let Some(stream) = self.streams.get_mut(&stream_id) else { return };
        match stream.state {
            StreamState::Open => stream.state = StreamState::LocalClosed,
            StreamState::RemoteClosed => {
                self.streams.remove(&stream_id);
            }
            StreamState::LocalClosed => return,
        }
        self.push(Command::Fin, stream_id, &[]);
    }

    /// A keep-alive frame (NOP on stream 0).
    pub fn keepalive(&mut self) {
        self.push(Command::Nop, 0, &[]);
    }

    /// A stream's state, `None` once it is closed both ways (or never existed).
    pub fn state(&self, stream_id: u32) -> Option<StreamState> {
        self.streams.get(&stream_id).map(|s| s.state)
    }

    /// Streams not yet closed both ways.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// The bytes to send to the agent (as data-channel Output payloads), taken all at once.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outgoing)
    }

    /// Whether anything waits in [`Mux::take_outgoing`].
    pub fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// The next thing the agent's frames mean.
    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        self.events.pop_front()
    }

    /// Feed bytes the agent sent (an Output payload); an error ends the session.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), SmuxError> {
        self.decoder.feed(bytes);
        while let Some(frame) = self.decoder.next_frame()? {
            self.on_frame(frame);
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame) {
        let id = frame.stream_id;
        match frame.command {
            Command::Nop => {}
            Command::Syn => {
                if !self.streams.contains_key(&id) {
                    self.push(Command::Fin, id, &[]);
                    self.events.push_back(MuxEvent::Refused { stream_id: id });
                }
            }
            Command::Psh => {
                if let Some(stream) = self.streams.get_mut(&id)
                    && stream.state != StreamState::RemoteClosed
                    && !frame.payload.is_empty()
                {
                    stream.received = true;
                    self.events.push_back(MuxEvent::Data { stream_id: id, bytes: frame.payload });
                }
            }
            Command::Fin => {
                let Some(stream) = self.streams.get_mut(&id) else { return };
                let received = stream.received;
                match stream.state {
                    StreamState::Open => stream.state = StreamState::RemoteClosed,
                    StreamState::LocalClosed => {
                        self.streams.remove(&id);
                    }
                    StreamState::RemoteClosed => return,
                }
                self.events.push_back(MuxEvent::Closed { stream_id: id, received });
            }
        }
    }

    fn push(&mut self, command: Command, stream_id: u32, payload: &[u8]) {
        Frame { command, stream_id, payload: payload.to_vec() }.encode_into(&mut self.outgoing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by hand from the frame layout: version 1, command, length LE, stream id LE.
    const SYN_3: [u8; 8] = [0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00];
    const FIN_3: [u8; 8] = [0x01, 0x01, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00];
    const NOP_0: [u8; 8] = [0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
    /// PSH of "hello" on stream 3.
    const PSH_3_HELLO: [u8; 13] = [0x01, 0x02, 0x05, 0x00, 0x03, 0x00, 0x00, 0x00, b'h', b'e', b'l', b'l', b'o'];
    /// PSH of "ok" on stream 0x01020305 (the id's bytes reversed on the wire).
    const PSH_BIG_ID: [u8; 10] = [0x01, 0x02, 0x02, 0x00, 0x05, 0x03, 0x02, 0x01, b'o', b'k'];

    fn decode_all(bytes: &[u8]) -> Vec<Frame> {
        let mut decoder = Decoder::new();
        decoder.feed(bytes);
        std::iter::from_fn(|| decoder.next_frame().unwrap()).collect()
    }

    #[test]
    fn the_spec_vectors_decode() {
        let mut wire = Vec::new();
        for part in [&SYN_3[..], &PSH_3_HELLO, &PSH_BIG_ID, &NOP_0, &FIN_3] {
            wire.extend_from_slice(part);
        }
        assert_eq!(
            decode_all(&wire),
            [
                Frame { command: Command::Syn, stream_id: 3, payload: vec![] },
                Frame { command: Command::Psh, stream_id: 3, payload: b"hello".to_vec() },
                Frame { command: Command::Psh, stream_id: 0x0102_0305, payload: b"ok".to_vec() },
                Frame { command: Command::Nop, stream_id: 0, payload: vec![] },
                Frame { command: Command::Fin, stream_id: 3, payload: vec![] },
            ]
        );
    }

    #[test]
    fn the_client_encodes_the_spec_vectors() {
        let mut mux = Mux::new();
        let id = mux.open_stream();
        assert_eq!(id, 3);
        mux.write(id, b"hello").unwrap();
        mux.keepalive();
        mux.close(id);
        let expected: Vec<u8> = [&SYN_3[..], &PSH_3_HELLO, &NOP_0, &FIN_3].concat();
        assert_eq!(mux.take_outgoing(), expected);
        assert!(!mux.has_outgoing());
    }

    #[test]
    fn client_stream_ids_are_odd_from_three() {
        let mut mux = Mux::new();
        let ids: Vec<u32> = (0..4).map(|_| mux.open_stream()).collect();
        assert_eq!(ids, [3, 5, 7, 9]);
        let syns: Vec<u8> = mux.take_outgoing();
        assert_eq!(&syns[8..16], [0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00]);
    }

    #[test]
    fn a_frame_split_at_every_byte_comes_out_once_whole() {
        let wire: Vec<u8> = [&PSH_3_HELLO[..], &FIN_3].concat();
        for cut in 0..=wire.len() {
            let mut decoder = Decoder::new();
            let mut frames = Vec::new();
            for piece in [&wire[..cut], &wire[cut..]] {
                decoder.feed(piece);
                frames.extend(std::iter::from_fn(|| decoder.next_frame().unwrap()));
            }
            assert_eq!(frames.len(), 2, "cut at {cut}");
            assert_eq!(frames[0].payload, b"hello", "cut at {cut}");
            assert_eq!(frames[1].command, Command::Fin, "cut at {cut}");
            assert_eq!(decoder.pending(), 0);
        }
    }

    #[test]
    fn byte_by_byte_feeding_holds_a_partial_frame_until_it_is_complete() {
        let mut decoder = Decoder::new();
        for (i, byte) in PSH_3_HELLO.iter().enumerate() {
            assert_eq!(decoder.next_frame().unwrap(), None, "after {i} bytes");
            decoder.feed(&[*byte]);
        }
        assert_eq!(decoder.next_frame().unwrap().unwrap().payload, b"hello");
        assert_eq!(decoder.next_frame().unwrap(), None);
    }

    #[test]
    fn a_write_over_32_kib_is_cut_into_frames_of_at_most_32_kib() {
        let mut mux = Mux::new();
        let id = mux.open_stream();
        mux.take_outgoing();
        let data: Vec<u8> = (0..(2 * 32768 + 100)).map(|i| (i % 251) as u8).collect();
        mux.write(id, &data).unwrap();
        let wire = mux.take_outgoing();
        assert_eq!(wire.len(), 3 * HEADER_LEN + data.len());
        // The headers, by hand: 32768 = 0x8000, 100 = 0x64.
        assert_eq!(wire[..8], [0x01, 0x02, 0x00, 0x80, 0x03, 0x00, 0x00, 0x00]);
        assert_eq!(wire[8 + 32768..16 + 32768], [0x01, 0x02, 0x00, 0x80, 0x03, 0x00, 0x00, 0x00]);
        assert_eq!(wire[2 * (8 + 32768)..2 * (8 + 32768) + 8], [0x01, 0x02, 0x64, 0x00, 0x03, 0x00, 0x00, 0x00]);
        let frames = decode_all(&wire);
        let sizes: Vec<usize> = frames.iter().map(|f| f.payload.len()).collect();
        assert_eq!(sizes, [32768, 32768, 100]);
        assert_eq!(frames.into_iter().flat_map(|f| f.payload).collect::<Vec<u8>>(), data);
    }

    #[test]
    fn an_unknown_version_or_command_is_an_error_for_good() {
        let mut decoder = Decoder::new();
        decoder.feed(&[0x02, 0x02, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00]);
        assert_eq!(decoder.next_frame(), Err(SmuxError::Version(2)));
        decoder.feed(&SYN_3);
        assert_eq!(decoder.next_frame(), Err(SmuxError::Version(2)), "the stream cannot be framed again");
        let mut decoder = Decoder::new();
        // Command 4 is smux v2's window update.
        decoder.feed(&[0x01, 0x04, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00]);
        assert_eq!(decoder.next_frame(), Err(SmuxError::Command(4)));
        let mut mux = Mux::new();
        assert_eq!(mux.receive(&[0x01, 0x07, 0, 0, 0, 0, 0, 0]), Err(SmuxError::Command(7)));
    }

    #[test]
    fn streams_half_close_either_way_then_go() {
        let mut mux = Mux::new();
        // Local FIN first, then the agent's.
        let a = mux.open_stream();
        mux.close(a);
        assert_eq!(mux.state(a), Some(StreamState::LocalClosed));
        assert_eq!(mux.write(a, b"late"), Err(StreamError::Closed(a)));
        mux.receive(&PSH_3_HELLO).unwrap();
        assert_eq!(mux.poll_event(), Some(MuxEvent::Data { stream_id: 3, bytes: b"hello".to_vec() }));
        mux.receive(&FIN_3).unwrap();
        assert_eq!(mux.poll_event(), Some(MuxEvent::Closed { stream_id: 3, received: true }));
        assert_eq!(mux.state(a), None);
        assert_eq!(mux.write(a, b"x"), Err(StreamError::Unknown(3)));

        // The agent's FIN first (without data), then the local one.
        let b = mux.open_stream();
        mux.take_outgoing();
        mux.receive(&[0x01, 0x01, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00]).unwrap();
        assert_eq!(mux.poll_event(), Some(MuxEvent::Closed { stream_id: b, received: false }));
        assert_eq!(mux.state(b), Some(StreamState::RemoteClosed));
        mux.receive(&[0x01, 0x02, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, b'z']).unwrap();
        assert_eq!(mux.poll_event(), None, "data after the agent's FIN is dropped");
        mux.write(b, b"ignored by the agent").unwrap();
        mux.take_outgoing();
        mux.close(b);
        assert_eq!(mux.take_outgoing(), [0x01, 0x01, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00]);
        assert_eq!(mux.state(b), None);
        assert_eq!(mux.streams(), 0);
        mux.close(b);
        assert!(!mux.has_outgoing(), "closing a gone stream sends nothing");
    }

    #[test]
    fn data_for_unknown_streams_and_nops_are_dropped_and_agent_syns_refused() {
        let mut mux = Mux::new();
        mux.receive(&PSH_3_HELLO).unwrap();
        mux.receive(&NOP_0).unwrap();
        assert_eq!(mux.poll_event(), None);
        // An agent-opened stream 2 is refused with FIN 2.
        mux.receive(&[0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]).unwrap();
        assert_eq!(mux.poll_event(), Some(MuxEvent::Refused { stream_id: 2 }));
        assert_eq!(mux.take_outgoing(), [0x01, 0x01, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]);
    }

    proptest::proptest! {
        /// However the agent's byte stream is cut into Output payloads, the same data arrives
        /// per stream, in order.
        #[test]
        fn arbitrary_chunking_delivers_the_same_bytes(
            writes in proptest::collection::vec((0usize..3, proptest::collection::vec(proptest::prelude::any::<u8>(), 1..3000)), 1..30),
            cuts in proptest::collection::vec(1usize..5000, 1..50),
        ) {
            let mut mux = Mux::new();
            let ids: Vec<u32> = (0..3).map(|_| mux.open_stream()).collect();
            // The agent's side of the wire, built by hand from the layout.
            let mut wire = Vec::new();
            let mut expected: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
            for (which, data) in &writes {
                let id = ids[*which];
                wire.extend_from_slice(&[1, 2]);
                wire.extend_from_slice(&(data.len() as u16).to_le_bytes());
                wire.extend_from_slice(&id.to_le_bytes());
                wire.extend_from_slice(data);
                expected.entry(id).or_default().extend_from_slice(data);
            }
            let mut got: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at >= wire.len() { break; }
                let end = (at + cut).min(wire.len());
                mux.receive(&wire[at..end]).unwrap();
                at = end;
                while let Some(event) = mux.poll_event() {
                    let MuxEvent::Data { stream_id, bytes } = event else { panic!("{event:?}") };
                    got.entry(stream_id).or_default().extend_from_slice(&bytes);
                }
            }
            proptest::prop_assert_eq!(got, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut mux = Mux::new();
            mux.open_stream();
            let _ = mux.receive(&bytes);
        }
    }
}
