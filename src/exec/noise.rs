//! The session-manager-plugin's own lines, recognised and removed: what remains is exactly the
//! bytes the remote pty produced, plus how the session ended.
//!
//! The plugin prints everything on stdout: the AWS CLI's "installed successfully" banner, the
//! `Starting session with SessionId:` line, a KMS customer message, the payload raw, then
//! `Exiting session with sessionId: ….`, or `SessionId: … : <agent error>`, or — when stdin hit
//! EOF — `Cannot perform start session: EOF` glued to whatever output had arrived (the session
//! was cut short, yet the plugin exits 0). Through a terminal every `\n` it wrote became `\r\n`.

/// How the plugin's session ended, as far as its output tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// `Exiting session with sessionId: <id>.`: a normal end.
    Exited,
    /// `SessionId: <id> : <text>`: the gateway closed the channel with an error.
    ChannelError(String),
    /// `Cannot perform start session: <error>`: the plugin gave up (output may be cut short).
    CannotStart(String),
    /// `Session: <id> timed out.`
    TimedOut,
    /// No ending line at all (killed, crashed, or never started).
    Missing,
}

impl Ending {
    /// Whether the payload can be trusted to be complete.
    pub fn is_complete(&self) -> bool {
        matches!(self, Ending::Exited | Ending::ChannelError(_))
    }
}

/// A plugin transcript taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped {
    pub session_id: Option<String>,
    pub payload: Vec<u8>,
    pub ending: Ending,
}

const BANNER: &[u8] = b"The Session Manager plugin was installed successfully. Use the AWS CLI to start a session.\n";
const STARTING: &[u8] = b"Starting session with SessionId: ";
const KMS_MESSAGE: &[u8] = b"This session is encrypted using AWS KMS.\n";
const CANNOT_START: &[u8] = b"Cannot perform start session: ";

/// Take a complete plugin transcript apart.
pub fn strip(raw: &[u8]) -> Stripped {
    // Through a terminal, the plugin's "\n" arrived as "\r\n" (and the payload's "\r\n" as
    // "\r\r\n"): undo that first when the start line shows it.
    let terminal = find(raw, STARTING)
        .and_then(|at| raw[at..].iter().position(|&b| b == b'\n').map(|end| (at, end)))
        .is_some_and(|(at, end)| end > 0 && raw[at + end - 1] == b'\r');
    let text: Vec<u8> = if terminal { replace(raw, b"\r\n", b"\n") } else { raw.to_vec() };
    let mut rest: &[u8] = &text;
    if let Some(at) = find(rest, BANNER) {
        rest = &rest[at + BANNER.len()..];
    }
    let Some(start) = find(rest, STARTING) else {
        let ending = cannot_start(rest).map(Ending::CannotStart).unwrap_or(Ending::Missing);
        return Stripped { session_id: None, payload: Vec::new(), ending };
    };
    let after = &rest[start + STARTING.len()..];
    let line_end = after.iter().position(|&b| b == b'\n').unwrap_or(after.len());
    let session_id = String::from_utf8_lossy(&after[..line_end]).trim().to_owned();
    let mut payload = &after[(line_end + 1).min(after.len())..];
    if payload.starts_with(KMS_MESSAGE) {
        payload = &payload[KMS_MESSAGE.len()..];
    }
    let exiting = format!("\n\nExiting session with sessionId: {session_id}.\n\n").into_bytes();
    let channel_error = format!("\n\nSessionId: {session_id} : ").into_bytes();
    let timed_out = format!("Session: {session_id} timed out.\n").into_bytes();
    let (payload, ending) = if let Some(at) = rfind(payload, &exiting) {
        (&payload[..at], Ending::Exited)
    } else if let Some(at) = rfind(payload, &channel_error) {
        let message = String::from_utf8_lossy(&payload[at + channel_error.len()..]).trim().to_owned();
        (&payload[..at], Ending::ChannelError(message))
    } else if let Some(at) = rfind(payload, CANNOT_START) {
        let message = String::from_utf8_lossy(&payload[at + CANNOT_START.len()..]).trim().to_owned();
        (&payload[..at], Ending::CannotStart(message))
    } else if let Some(at) = rfind(payload, &timed_out) {
        (&payload[..at], Ending::TimedOut)
    } else {
        (payload, Ending::Missing)
    };
    Stripped { session_id: Some(session_id), payload: payload.to_vec(), ending }
}

/// Only the ending, from the tail of a transcript (for streaming readers).
pub fn ending(tail: &[u8]) -> Ending {
    let text = replace(tail, b"\r\n", b"\n");
    const EXITING: &[u8] = b"\n\nExiting session with sessionId: ";
    if let Some(at) = rfind(&text, EXITING) {
        let line = &text[at + EXITING.len()..];
        let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
        if line.ends_with(b".") {
            return Ending::Exited;
        }
    }
    if let Some(message) = cannot_start(&text) {
        return Ending::CannotStart(message);
    }
    if let Some(at) = rfind(&text, b"\n\nSessionId: ") {
        let line = String::from_utf8_lossy(&text[at + 2..]).into_owned();
        if let Some((_, message)) = line.split_once(" : ") {
            return Ending::ChannelError(message.trim().to_owned());
        }
    }
    if rfind(&text, b" timed out.\n").is_some() && rfind(&text, b"Session: ").is_some() {
        return Ending::TimedOut;
    }
    Ending::Missing
}

fn cannot_start(text: &[u8]) -> Option<String> {
    rfind(text, CANNOT_START).map(|at| {
        let rest = &text[at + CANNOT_START.len()..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end]).trim().to_owned()
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/plugin-transcripts/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    const ID: &str = "ecs-execute-command-0f1e2d3c4b5a69788";

    #[test]
    fn every_real_transcript_yields_its_exact_payload() {
        let cases = [
            ("aws-cli-1.45-normal.out", "payload-small.bin", Ending::Exited),
            ("plugin-normal.out", "payload-small.bin", Ending::Exited),
            ("plugin-stdin-devnull-complete.out", "payload-small.bin", Ending::CannotStart("EOF".into())),
            ("plugin-multi-frame.out", "payload-multi-frame.bin", Ending::Exited),
            ("plugin-on-terminal.out", "payload-small.bin", Ending::Exited),
        ];
        for (transcript, payload, ending) in cases {
            let stripped = strip(&fixture(transcript));
            assert_eq!(stripped.session_id.as_deref(), Some(ID), "{transcript}");
            assert_eq!(stripped.payload, fixture(payload), "{transcript}");
            assert_eq!(stripped.ending, ending, "{transcript}");
            assert_eq!(super::ending(&fixture(transcript)), ending, "{transcript} (tail only)");
        }
    }

    #[test]
    fn a_channel_error_keeps_the_payload_and_the_agent_message() {
        let stripped = strip(&fixture("plugin-channel-closed-error.out"));
        assert_eq!(stripped.payload, fixture("payload-error.bin"));
        match &stripped.ending {
            Ending::ChannelError(message) => {
                assert!(
                    message.starts_with("----------ERROR-------\nEncountered error while initiating handshake."),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(stripped.ending.is_complete());
    }

    #[test]
    fn the_banner_alone_is_no_session() {
        let stripped = strip(&fixture("plugin-installed-banner.out"));
        assert_eq!(stripped, Stripped { session_id: None, payload: Vec::new(), ending: Ending::Missing });
    }

    #[test]
    fn a_cut_short_session_is_not_complete() {
        let mut raw = b"\nStarting session with SessionId: s-1\npartial out".to_vec();
        raw.extend_from_slice(b"Cannot perform start session: EOF\n");
        let stripped = strip(&raw);
        assert_eq!(stripped.payload, b"partial out");
        assert_eq!(stripped.ending, Ending::CannotStart("EOF".into()));
        assert!(!stripped.ending.is_complete());
    }
}
