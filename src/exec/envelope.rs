//! The run envelope: how evoctl runs a command in the container and gets back its exact
//! output and exit status through a pty that merges streams, rewrites line ends and echoes.
//!
//! The command string is `node -e '<loader>' <base64 program>`: no quoting hazards under the
//! agent's shell-word splitting and no `#` that would start a comment. The program spawns the
//! real command without a shell and reports everything on marker lines,
//! `EVOCTL-<nonce>:<kind>:<base64>` — O stdout, E stderr, R ready for input, X exit status —
//! where the nonce is fresh per run. The parser reads only whole marker lines carrying that
//! nonce, so banners, CRLF, ANSI sequences, echoed input and forged markers cannot corrupt or
//! spoof the result. Input (secrets, large scripts) is sent after R, base64 and ended by `.`,
//! once the remote tty is in raw mode (no echo). Secrets never enter the command string.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The program shipped (base64) in every command string.
const RUNNER: &str = include_str!("runner.js");
/// Decodes and runs the program; kept free of `#`, quotes-within-quotes and shell syntax.
const LOADER: &str = "eval(Buffer.from(process.argv[1],'base64').toString())";
/// The largest command string evoctl sends; bigger inputs travel over stdin.
pub const MAX_COMMAND_BYTES: usize = 6 * 1024;
/// Marker lines longer than this are not evoctl's and are skipped without being stored.
const MAX_LINE: usize = 8 * 1024 * 1024;

/// What to run remotely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    pub argv: Vec<String>,
    /// The command's stdin, sent over the data channel after the ready mark.
    pub stdin: Option<Stdin>,
}

/// Where a command's stdin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stdin {
    /// Bytes in memory (a secret, a small input).
    Bytes(Vec<u8>),
    /// A local file, streamed in chunks so its size never becomes evoctl's memory.
    File(std::path::PathBuf),
}

/// Input is read and encoded in pieces this large (a multiple of 3, so the pieces' base64
/// concatenates to the whole input's).
pub const STDIN_CHUNK: usize = 48 * 1024;

/// A prepared run: the command string for ExecuteCommand and the nonce to parse with.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub command: String,
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
        let spec_json = serde_json::json!({"n": nonce, "argv": spec.argv, "stdin": spec.stdin.is_some()});
        let program = RUNNER.replace("__SPEC__", &spec_json.to_string());
        let command = format!("node -e \"{LOADER}\" {}", STANDARD.encode(program));
        Envelope { command, nonce }
    }

    /// The bytes to type once the remote side is ready: base64 of the input, then `.`.
    pub fn stdin_payload(input: &[u8]) -> Vec<u8> {
        let mut payload = Self::stdin_piece(input);
        payload.push(b'.');
        payload
    }

    /// One piece of the input (a multiple of 3 bytes except the last), as it is typed.
    pub fn stdin_piece(input: &[u8]) -> Vec<u8> {
        STANDARD.encode(input).into_bytes()
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
}

impl EnvelopeParser {
    pub fn new(nonce: &str) -> EnvelopeParser {
        EnvelopeParser {
            prefix: format!("EVOCTL-{nonce}:").into_bytes(),
            line: Vec::new(),
            overlong: false,
            exit: None,
            received: false,
        }
    }

    /// The exit status, once seen.
    pub fn exit_status(&self) -> Option<i32> {
        self.exit
    }

    /// Feed raw terminal bytes; returns the pieces completed by them, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Piece> {
        self.received |= !bytes.is_empty();
        let mut pieces = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                if let Some(piece) = self.parse_line().filter(|_| !self.overlong) {
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

    /// The run is over: its exit status, or an error when the output stopped short.
    pub fn finish(&self) -> Result<i32, EnvelopeError> {
        match (self.exit, self.received) {
            (Some(code), _) => Ok(code),
            (None, false) => Err(EnvelopeError::NeverStarted),
            (None, true) => Err(EnvelopeError::Truncated),
        }
    }

    fn parse_line(&self) -> Option<Piece> {
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
    fn the_command_string_is_shell_word_safe() {
        let spec =
            RunSpec { argv: vec!["node".into(), "-e".into(), "console.log('# not a comment')".into()], stdin: None };
        let envelope = Envelope::with_nonce(&spec, "n1".into());
        assert!(envelope.command.starts_with("node -e \"eval(Buffer.from(process.argv[1],'base64').toString())\" "));
        assert!(!envelope.command.contains('#'));
        let words: Vec<&str> = envelope.command.splitn(3, ' ').collect();
        let program =
            String::from_utf8(STANDARD.decode(envelope.command.rsplit(' ').next().unwrap()).unwrap()).unwrap();
        assert!(program.contains(r#""argv":["node","-e","console.log('# not a comment')"]"#), "{program}");
        assert_eq!(words[0], "node");
        assert!(envelope.command.len() < MAX_COMMAND_BYTES);
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
