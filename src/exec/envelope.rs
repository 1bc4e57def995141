//! The run envelope: how evoctl runs a command in the container and gets back its exact
//! output and exit status through a pty that merges streams, rewrites line ends and echoes.
//!
//! The command string of every run is the same small bootstrap (`bootstrap.js`, at most
//! [`MAX_COMMAND_BYTES`]) followed by a fresh nonce: no program, argument, URL, instance name or
//! request ever rides in it, so CloudTrail, exec logging and `ps` in the container see only the
//! bootstrap. The bootstrap switches the tty to raw mode (no echo), prints the ready mark and
//! reads the program from the data channel (encrypted where KMS is on): the runner with its spec
//! (the command's argv, or a node program that a child node reads from fd 3). The runner spawns
//! the command at once, without a shell, and passes on what follows as it arrives: a node program
//! too large for the spec (to the child's fd 3), then the command's input (to its stdin), each a
//! stream of base64 pieces separated by `,` and ended by `.` — the end of input the command sees.
//! Everything comes back on marker lines, `EVOCTL-<nonce>:<kind>:<base64>` — O stdout, E stderr,
//! o and e the same compressed (one raw deflate stream per piece, sent when it is smaller: see
//! [`super::inflate`]), R ready for input, X exit status. The parser reads only whole marker lines
//! carrying that nonce, so banners, CRLF, ANSI sequences and forged markers cannot corrupt or
//! spoof the result; a compressed piece with the nonce that does not inflate within
//! [`MAX_INFLATED`] bytes ends the run as a protocol error.

use super::inflate::{InflateError, Inflater, MAX_INFLATED, PIECE_BYTES};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::sync::LazyLock;

/// The command line's program (comment lines dropped, joined into one line).
const BOOTSTRAP: &str = include_str!("bootstrap.js");
/// The runner the bootstrap receives over the data channel, with its spec.
const RUNNER: &str = include_str!("runner.js");
/// The largest command string evoctl sends (the bootstrap and a nonce); everything else travels
/// over the data channel.
pub const MAX_COMMAND_BYTES: usize = 1024;
/// Marker lines longer than this are not evoctl's and are skipped without being stored.
const MAX_LINE: usize = 8 * 1024 * 1024;

/// The bootstrap as it appears on the command line.
static BOOTSTRAP_LINE: LazyLock<String> = LazyLock::new(|| {
    BOOTSTRAP.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with("//")).collect()
});

/// What to run remotely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    pub program: Program,
    /// The command's stdin, sent over the data channel after the program.
    pub stdin: Option<Stdin>,
}

/// The command a run starts in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// An executable and its arguments, spawned without a shell.
    Argv(Vec<String>),
    /// A node program (its source), run by a child node that reads it from a pipe.
    Node(String),
    /// A node program streamed from this source (a large file, or evoctl's stdin): sent after
    /// the runner and before the input, to the same pipe of the child node.
    NodeFrom(Stdin),
}

impl RunSpec {
    /// Run `argv` with no input.
    pub fn argv(argv: Vec<String>) -> RunSpec {
        RunSpec { program: Program::Argv(argv), stdin: None }
    }

    /// Run the node program `source`.
    pub fn node(source: String, stdin: Option<Stdin>) -> RunSpec {
        RunSpec { program: Program::Node(source), stdin }
    }
}

/// Where a stream typed into the session (a command's stdin, a streamed program) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stdin {
    /// Bytes in memory (a secret, a small input).
    Bytes(Vec<u8>),
    /// A local file, streamed in pieces so its size never becomes evoctl's memory.
    File(std::path::PathBuf),
    /// evoctl's own stdin (a pipe, a file, or a terminal when asked), streamed as it is read
    /// until its end.
    Local,
    /// Local files one after another, each exactly the size given (`evoctl cp`: the program
    /// splits the stream by these sizes); a file that is shorter now is a read error.
    Files(Vec<(std::path::PathBuf, u64)>),
}

/// Input is read and encoded in pieces of at most this many bytes.
pub const STDIN_CHUNK: usize = 48 * 1024;
/// Ends one piece of a stream (the next piece is encoded on its own).
pub const PIECE_END: u8 = b',';
/// Ends a stream: the command (or the program's pipe) sees the end of its input.
pub const STREAM_END: u8 = b'.';

/// A prepared run: the command string for ExecuteCommand, the program to send once the
/// bootstrap is ready, and the nonce to parse with.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub command: String,
    /// The runner and its spec, base64 ended by `.`: the bootstrap's first input.
    pub program: Vec<u8>,
    pub nonce: String,
}

impl Envelope {
    /// Wrap `spec` with a fresh nonce.
    pub fn new(spec: &RunSpec) -> Envelope {
        let nonce = hex::encode(uuid::Uuid::new_v4().as_bytes());
        Envelope::with_nonce(spec, nonce)
    }

    /// Wrap `spec` with a given nonce (tests).
    pub fn with_nonce(spec: &RunSpec, nonce: String) -> Envelope {
        let (argv, program) = match &spec.program {
            Program::Argv(argv) => (Some(argv), None),
            Program::Node(source) => (None, Some(source)),
            Program::NodeFrom(_) => (None, None),
        };
        let spec_json = serde_json::json!({
            "n": nonce,
            "argv": argv,
            "program": program,
            "streamed": matches!(spec.program, Program::NodeFrom(_)),
            "stdin": spec.stdin.is_some(),
        });
        let runner = RUNNER.replace("__SPEC__", &spec_json.to_string());
        Envelope { command: Envelope::command(&nonce), program: Envelope::stdin_payload(runner.as_bytes()), nonce }
    }

    /// The command string for a run with this nonce: the bootstrap, nothing else.
    pub fn command(nonce: &str) -> String {
        format!("node -e \"{}\" {nonce}", *BOOTSTRAP_LINE)
    }

    /// A whole stream in one piece, as it is typed: its base64, then the end mark.
    pub fn stdin_payload(input: &[u8]) -> Vec<u8> {
        Self::stdin_piece(input, STREAM_END)
    }

    /// One piece of a stream as it is typed: its own base64 (padded), then `end` ([`PIECE_END`]
    /// when more follows, [`STREAM_END`] for the last).
    pub fn stdin_piece(input: &[u8], end: u8) -> Vec<u8> {
        let mut piece = STANDARD.encode(input).into_bytes();
        piece.push(end);
        piece
    }
}

/// One piece of a parsed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The remote program is ready for input.
    Ready,
    /// The command exited with this status.
    Exit(i32),
}

/// Why a run produced no status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the output ended before the command's exit status arrived (output truncated)")]
    Truncated,
    /// Not one byte arrived: how the ECS Exec agent reports a command it could not start.
    #[error("the session ended without a byte of output (the command did not start)")]
    NeverStarted,
    /// A compressed piece carrying the nonce inflates past the limit: not the runner's.
    #[error(
        "a compressed output piece inflates past {MAX_INFLATED} bytes, evoctl's limit per piece (the runner sends at most {PIECE_BYTES} bytes in one)"
    )]
    InflatesTooLarge,
    /// A compressed piece carrying the nonce is not one whole raw deflate stream.
    #[error("a compressed output piece is not a whole raw deflate stream")]
    NotDeflate,
}

/// Streaming parser for one run's terminal output.
#[derive(Debug)]
pub struct EnvelopeParser {
    prefix: Vec<u8>,
    line: Vec<u8>,
    overlong: bool,
    exit: Option<i32>,
    /// Whether any byte arrived at all.
    received: bool,
    inflater: Inflater,
    /// A piece that broke the protocol: nothing after it counts.
    failure: Option<EnvelopeError>,
}

impl EnvelopeParser {
    pub fn new(nonce: &str) -> EnvelopeParser {
        EnvelopeParser {
            prefix: format!("EVOCTL-{nonce}:").into_bytes(),
            line: Vec::new(),
            overlong: false,
            exit: None,
            received: false,
            inflater: Inflater::default(),
            failure: None,
        }
    }

    /// The piece that broke the protocol, once one did (no piece is returned after it).
    pub fn failure(&self) -> Option<&EnvelopeError> {
        self.failure.as_ref()
    }

    /// The exit status, once seen.
    pub fn exit_status(&self) -> Option<i32> {
        self.exit
    }

    /// Feed raw terminal bytes; returns the pieces completed by them, in order, up to a piece
    /// that breaks the protocol ([`EnvelopeParser::failure`]).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Piece> {
        self.received |= !bytes.is_empty();
        let mut pieces = Vec::new();
        for &byte in bytes {
            if self.failure.is_some() {
                break;
            }
            if byte == b'\n' {
                if !self.overlong
                    && let Some(piece) = self.parse_line()
                {
                    if let Piece::Exit(code) = piece {
                        self.exit.get_or_insert(code);
                    }
                    pieces.push(piece);
                }
                self.line.clear();
                self.overlong = false;
            } else if self.line.len() < MAX_LINE {
                self.line.push(byte);
            } else {
                self.overlong = true;
            }
        }
        pieces
    }

    /// The run is over: its exit status, or an error when the output stopped short or broke
    /// the protocol.
    pub fn finish(&self) -> Result<i32, EnvelopeError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        match (self.exit, self.received) {
            (Some(code), _) => Ok(code),
            (None, false) => Err(EnvelopeError::NeverStarted),
            (None, true) => Err(EnvelopeError::Truncated),
        }
    }

    fn parse_line(&mut self) -> Option<Piece> {
        if self.exit.is_some() {
            return None;
        }
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let rest = line.strip_prefix(self.prefix.as_slice())?;
        let (&kind, rest) = rest.split_first()?;
        let data = STANDARD.decode(rest.strip_prefix(b":")?).ok()?;
        match kind {
            b'O' => Some(Piece::Stdout(data)),
            b'E' => Some(Piece::Stderr(data)),
            b'o' | b'e' => match self.inflater.inflate(&data) {
                Ok(data) if kind == b'o' => Some(Piece::Stdout(data)),
                Ok(data) => Some(Piece::Stderr(data)),
                Err(err) => {
                    self.failure = Some(match err {
                        InflateError::TooLarge => EnvelopeError::InflatesTooLarge,
                        InflateError::Corrupt => EnvelopeError::NotDeflate,
                    });
                    None
                }
            },
            b'R' => Some(Piece::Ready),
            b'X' => std::str::from_utf8(&data).ok()?.parse().ok().map(Piece::Exit),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(nonce: &str, kind: char, data: &[u8]) -> Vec<u8> {
        format!("\r\nEVOCTL-{nonce}:{kind}:{}\r\n", STANDARD.encode(data)).into_bytes()
    }

    #[test]
    fn the_command_string_is_the_bootstrap_alone() {
        let spec = RunSpec::node("console.log('# not a comment', process.env.X)".into(), None);
        let envelope = Envelope::with_nonce(&spec, "0123456789abcdef0123456789abcdef".into());
        assert!(envelope.command.len() <= MAX_COMMAND_BYTES, "{} bytes", envelope.command.len());
        let (head, nonce) = envelope.command.rsplit_once(' ').unwrap();
        assert_eq!(nonce, "0123456789abcdef0123456789abcdef");
        let body = head.strip_prefix("node -e \"").and_then(|b| b.strip_suffix('"')).unwrap();
        for forbidden in ['"', '\\', '$', '`', '#', '\n'] {
            assert!(!body.contains(forbidden), "{forbidden:?} in the bootstrap");
        }
        // The same command for every run: nothing of the spec is in it.
        let other = Envelope::with_nonce(&RunSpec::argv(vec!["ls".into()]), "0123456789abcdef0123456789abcdef".into());
        assert_eq!(other.command, envelope.command);
        let sent = String::from_utf8(envelope.program.clone()).unwrap();
        let runner = String::from_utf8(STANDARD.decode(sent.strip_suffix('.').unwrap()).unwrap()).unwrap();
        assert!(runner.contains(r#""program":"console.log('# not a comment', process.env.X)""#), "{runner}");
    }

    #[test]
    fn parses_pieces_through_crlf_noise_and_chunking() {
        let nonce = "abc";
        let mut stream = b"Starting session with SessionId: x\r\n\x1b[0m".to_vec();
        stream.extend(marker(nonce, 'O', b"hi\n"));
        stream.extend(marker(nonce, 'E', b"warn"));
        stream.extend(b"EVOCTL-forged:X:MA==\r\n".as_slice());
        stream.extend(marker("other", 'X', b"0"));
        stream.extend(marker(nonce, 'X', b"3"));
        stream.extend(b"\r\n\r\nExiting session with sessionId: x.\r\n".as_slice());
        for split in [1, 2, 7, 1024] {
            let mut parser = EnvelopeParser::new(nonce);
            let pieces: Vec<Piece> = stream.chunks(split).flat_map(|c| parser.feed(c)).collect();
            assert_eq!(
                pieces,
                [Piece::Stdout(b"hi\n".to_vec()), Piece::Stderr(b"warn".to_vec()), Piece::Exit(3)],
                "split {split}"
            );
            assert_eq!(parser.finish(), Ok(3));
        }
    }

    /// The real agent writes nothing at all for a command it cannot start (ssm-data-channel.md
    /// §9 row 9): no byte is not the same as a cut-off run.
    #[test]
    fn no_byte_at_all_is_a_command_that_never_started() {
        let mut parser = EnvelopeParser::new("n");
        assert_eq!(parser.finish(), Err(EnvelopeError::NeverStarted));
        parser.feed(b"");
        assert_eq!(parser.finish(), Err(EnvelopeError::NeverStarted));
        parser.feed(b"\r\n");
        assert_eq!(parser.finish(), Err(EnvelopeError::Truncated));
    }

    #[test]
    fn missing_exit_is_truncation() {
        let mut parser = EnvelopeParser::new("n");
        let mut stream = marker("n", 'O', b"partial");
        stream.extend(b"Cannot perform start session: EOF\n".as_slice());
        assert_eq!(parser.feed(&stream), [Piece::Stdout(b"partial".to_vec())]);
        assert_eq!(parser.finish(), Err(EnvelopeError::Truncated));
    }

    #[test]
    fn a_marker_glued_to_other_text_is_not_accepted() {
        let mut parser = EnvelopeParser::new("n");
        let mut stream = b"noise".to_vec();
        stream.extend(format!("EVOCTL-n:X:{}\n", STANDARD.encode("0")).as_bytes());
        assert!(parser.feed(&stream).is_empty());
    }

    #[test]
    fn nothing_after_the_exit_counts() {
        let mut parser = EnvelopeParser::new("n");
        let mut stream = marker("n", 'X', b"0");
        stream.extend(marker("n", 'O', b"late"));
        stream.extend(marker("n", 'X', b"9"));
        assert_eq!(parser.feed(&stream), [Piece::Exit(0)]);
        assert_eq!(parser.finish(), Ok(0));
    }

    fn deflated(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn compressed_and_plain_pieces_of_both_streams_keep_their_order() {
        let json = br#"{"instanceName":"named1","connectionStatus":"open"}"#.repeat(300);
        let mut stream = marker("n", 'O', b"plain out\n");
        stream.extend(marker("n", 'o', &deflated(&json)));
        stream.extend(marker("n", 'e', &deflated(b"compressed err")));
        stream.extend(marker("n", 'E', b"plain err"));
        stream.extend(marker("n", 'o', &deflated(b"")));
        stream.extend(marker("n", 'o', &deflated(b"tail")));
        stream.extend(marker("n", 'X', b"0"));
        for split in [1, 3, 64, 100_000] {
            let mut parser = EnvelopeParser::new("n");
            let pieces: Vec<Piece> = stream.chunks(split).flat_map(|c| parser.feed(c)).collect();
            assert_eq!(
                pieces,
                [
                    Piece::Stdout(b"plain out\n".to_vec()),
                    Piece::Stdout(json.clone()),
                    Piece::Stderr(b"compressed err".to_vec()),
                    Piece::Stderr(b"plain err".to_vec()),
                    Piece::Stdout(Vec::new()),
                    Piece::Stdout(b"tail".to_vec()),
                    Piece::Exit(0),
                ],
                "split {split}"
            );
            assert_eq!((parser.failure(), parser.finish()), (None, Ok(0)));
        }
    }

    #[test]
    fn a_compressed_piece_past_the_limit_ends_the_parse() {
        let mut parser = EnvelopeParser::new("n");
        let mut stream = marker("n", 'O', b"before");
        stream.extend(marker("n", 'e', &deflated(&vec![0; MAX_INFLATED + 1])));
        stream.extend(marker("n", 'O', b"after"));
        stream.extend(marker("n", 'X', b"0"));
        assert_eq!(parser.feed(&stream), [Piece::Stdout(b"before".to_vec())]);
        assert_eq!(parser.failure(), Some(&EnvelopeError::InflatesTooLarge));
        assert_eq!(parser.feed(&marker("n", 'O', b"later")), []);
        assert_eq!(parser.finish(), Err(EnvelopeError::InflatesTooLarge));
        assert_eq!(
            EnvelopeError::InflatesTooLarge.to_string(),
            "a compressed output piece inflates past 1048576 bytes, evoctl's limit per piece (the runner sends at most 65536 bytes in one)"
        );
    }

    #[test]
    fn a_compressed_piece_that_is_not_deflate_ends_the_parse_but_noise_does_not() {
        // Without the nonce, or cut short by the line limit, it is noise like any other line.
        let mut parser = EnvelopeParser::new("n");
        let mut stream = marker("other", 'o', b"\xff\xff");
        stream.extend(marker("n", 'O', b"kept"));
        assert_eq!(parser.feed(&stream), [Piece::Stdout(b"kept".to_vec())]);
        assert_eq!(parser.failure(), None);
        assert_eq!(parser.feed(&marker("n", 'o', b"\xff\xff")), []);
        assert_eq!(parser.failure(), Some(&EnvelopeError::NotDeflate));
    }

    #[test]
    fn stdin_payload_is_base64_then_dot() {
        assert_eq!(Envelope::stdin_payload(b"secret"), b"c2VjcmV0.");
    }

    proptest::proptest! {
        #[test]
        fn any_output_round_trips_under_any_chunking(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            split in 1usize..64,
        ) {
            let mut stream = noise.clone();
            stream.extend(marker("z", 'O', &data));
            stream.extend(noise);
            stream.extend(marker("z", 'X', b"42"));
            let mut parser = EnvelopeParser::new("z");
            let mut out = Vec::new();
            for chunk in stream.chunks(split) {
                for piece in parser.feed(chunk) {
                    if let Piece::Stdout(bytes) = piece { out.extend(bytes); }
                }
            }
            proptest::prop_assert_eq!(out, data);
            proptest::prop_assert_eq!(parser.finish(), Ok(42));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            let mut parser = EnvelopeParser::new("z");
            parser.feed(&bytes);
        }
    }
}
