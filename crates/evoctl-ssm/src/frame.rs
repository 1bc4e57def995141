//! The Session Manager binary frame: a 120-byte header and a payload.
//!
//! Layout (big-endian): HeaderLength u32 (116) | MessageType 32 bytes ASCII, space padded |
//! SchemaVersion u32 | CreatedDate u64 ms | SequenceNumber i64 | Flags u64 | MessageId 16 bytes
//! (UUID halves swapped: bytes 8..16 first) | PayloadDigest SHA-256 | PayloadType u32 |
//! PayloadLength u32 | Payload. Decoding validates like the official client (header length,
//! message type, created date, digest) and reports one typed error per corruption.

use sha2::{Digest, Sha256};

/// The header length value every sender writes (offset of PayloadLength).
pub const HEADER_LENGTH: u32 = 116;
/// Offset of the payload in a frame written by [`Frame::encode`].
pub const PAYLOAD_OFFSET: usize = 120;

const MESSAGE_TYPE_LEN: usize = 32;
const OFFSET_MESSAGE_TYPE: usize = 4;
const OFFSET_SCHEMA_VERSION: usize = 36;
const OFFSET_CREATED_DATE: usize = 40;
const OFFSET_SEQUENCE_NUMBER: usize = 48;
const OFFSET_FLAGS: usize = 56;
const OFFSET_MESSAGE_ID: usize = 64;
const OFFSET_PAYLOAD_DIGEST: usize = 80;
const OFFSET_PAYLOAD_TYPE: usize = 112;

/// Message types seen on an ECS Exec data channel.
pub mod message_type {
    pub const INPUT_STREAM_DATA: &str = "input_stream_data";
    pub const OUTPUT_STREAM_DATA: &str = "output_stream_data";
    pub const ACKNOWLEDGE: &str = "acknowledge";
    pub const CHANNEL_CLOSED: &str = "channel_closed";
    pub const START_PUBLICATION: &str = "start_publication";
    pub const PAUSE_PUBLICATION: &str = "pause_publication";
    pub const AGENT_SESSION_STATE: &str = "agent_session_state";
}

/// Payload types (identical in the official client and agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadType {
    Output,
    Error,
    Size,
    Parameter,
    HandshakeRequest,
    HandshakeResponse,
    HandshakeComplete,
    EncChallengeRequest,
    EncChallengeResponse,
    Flag,
    StdErr,
    ExitCode,
    /// 0 (acks, control messages) or a value this client does not know.
    Other(u32),
}

impl PayloadType {
    pub fn from_u32(value: u32) -> PayloadType {
        match value {
            1 => PayloadType::Output,
            2 => PayloadType::Error,
            3 => PayloadType::Size,
            4 => PayloadType::Parameter,
            5 => PayloadType::HandshakeRequest,
            6 => PayloadType::HandshakeResponse,
            7 => PayloadType::HandshakeComplete,
            8 => PayloadType::EncChallengeRequest,
            9 => PayloadType::EncChallengeResponse,
            10 => PayloadType::Flag,
            11 => PayloadType::StdErr,
            12 => PayloadType::ExitCode,
            other => PayloadType::Other(other),
        }
    }

    pub fn as_u32(self) -> u32 {
        match self {
            PayloadType::Output => 1,
            PayloadType::Error => 2,
            PayloadType::Size => 3,
            PayloadType::Parameter => 4,
            PayloadType::HandshakeRequest => 5,
            PayloadType::HandshakeResponse => 6,
            PayloadType::HandshakeComplete => 7,
            PayloadType::EncChallengeRequest => 8,
            PayloadType::EncChallengeResponse => 9,
            PayloadType::Flag => 10,
            PayloadType::StdErr => 11,
            PayloadType::ExitCode => 12,
            PayloadType::Other(value) => value,
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub message_type: String,
    pub schema_version: u32,
    /// Unix epoch milliseconds.
    pub created_date: u64,
    pub sequence_number: i64,
    pub flags: u64,
    /// The UUID's 16 bytes in RFC 4122 (text) order; the wire order swaps the halves.
    pub message_id: [u8; 16],
    pub payload_digest: [u8; 32],
    pub payload_type: u32,
    pub payload: Vec<u8>,
}

/// Why bytes are not a valid frame (one variant per corruption).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is {len} bytes, shorter than the 120-byte header")]
    TooShort { len: usize },
    #[error("HeaderLength cannot be zero")]
    ZeroHeaderLength,
    #[error("HeaderLength {header_length} points past the end of a {len}-byte frame")]
    HeaderLengthOutOfRange { header_length: u32, len: usize },
    #[error("MessageType is missing")]
    MissingMessageType,
    #[error("MessageType is not ASCII text")]
    BadMessageType,
    #[error("CreatedDate is missing")]
    MissingCreatedDate,
    #[error("payload Hash is not valid (SHA-256 of the payload does not match PayloadDigest)")]
    DigestMismatch,
    #[error("MessageId is the nil UUID")]
    NilMessageId,
}

impl Frame {
    /// A frame with the digest computed from `payload`.
    pub fn new(
        message_type: &str,
        sequence_number: i64,
        flags: u64,
        message_id: [u8; 16],
        created_date: u64,
        payload_type: u32,
        payload: Vec<u8>,
    ) -> Frame {
        Frame {
            message_type: message_type.to_owned(),
            schema_version: 1,
            created_date,
            sequence_number,
            flags,
            message_id,
            payload_digest: Sha256::digest(&payload).into(),
            payload_type,
            payload,
        }
    }

    /// The payload type as an enum.
    pub fn kind(&self) -> PayloadType {
        PayloadType::from_u32(self.payload_type)
    }

    /// The message id as a lowercase hyphenated UUID string.
    pub fn message_id_string(&self) -> String {
        uuid_string(&self.message_id)
    }

    /// Serialise to wire bytes.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        if self.message_id == [0; 16] {
            return Err(FrameError::NilMessageId);
        }
        let mut out = Vec::with_capacity(PAYLOAD_OFFSET + self.payload.len());
        out.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
        let mut message_type = [b' '; MESSAGE_TYPE_LEN];
        let name = self.message_type.as_bytes();
        let n = name.len().min(MESSAGE_TYPE_LEN);
        message_type[..n].copy_from_slice(&name[..n]);
        out.extend_from_slice(&message_type);
        out.extend_from_slice(&self.schema_version.to_be_bytes());
        out.extend_from_slice(&self.created_date.to_be_bytes());
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.message_id[8..]);
        out.extend_from_slice(&self.message_id[..8]);
        out.extend_from_slice(&self.payload_digest);
        out.extend_from_slice(&self.payload_type.to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    /// Parse and validate wire bytes. `start_publication` / `pause_publication` skip validation,
    /// as in the official client.
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        if bytes.len() < PAYLOAD_OFFSET {
            return Err(FrameError::TooShort { len: bytes.len() });
        }
        let header_length = be_u32(bytes, 0);
        let raw_type = &bytes[OFFSET_MESSAGE_TYPE..OFFSET_MESSAGE_TYPE + MESSAGE_TYPE_LEN];
        let message_type = std::str::from_utf8(raw_type)
            .map_err(|_| FrameError::BadMessageType)?
            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .to_owned();
        let publication =
            message_type == message_type::START_PUBLICATION || message_type == message_type::PAUSE_PUBLICATION;
        if !publication {
            if header_length == 0 {
                return Err(FrameError::ZeroHeaderLength);
            }
            if message_type.is_empty() {
                return Err(FrameError::MissingMessageType);
            }
        }
        let payload_start = header_length as usize + 4;
        if payload_start > bytes.len() || (header_length as usize) < OFFSET_PAYLOAD_TYPE + 4 {
            return Err(FrameError::HeaderLengthOutOfRange { header_length, len: bytes.len() });
        }
        let created_date = be_u64(bytes, OFFSET_CREATED_DATE);
        if !publication && created_date == 0 {
            return Err(FrameError::MissingCreatedDate);
        }
        let mut message_id = [0u8; 16];
        message_id[8..].copy_from_slice(&bytes[OFFSET_MESSAGE_ID..OFFSET_MESSAGE_ID + 8]);
        message_id[..8].copy_from_slice(&bytes[OFFSET_MESSAGE_ID + 8..OFFSET_MESSAGE_ID + 16]);
        let wire_digest = &bytes[OFFSET_PAYLOAD_DIGEST..OFFSET_PAYLOAD_DIGEST + 32];
        let payload = bytes[payload_start..].to_vec();
        let payload_digest: [u8; 32] = Sha256::digest(&payload).into();
        let declared_length = be_u32(bytes, header_length as usize);
        // The plugin checks the digest only when PayloadLength is not 0. Agents and clients
        // always write both, so for their message types a payload behind a zero length is
        // checked too (it would otherwise travel unverified); gateway-built frames keep the
        // plugin's rule. A digest nobody checked is replaced by the payload's own, so a decoded
        // frame always re-encodes to bytes that decode to it.
        let peer_built = matches!(
            message_type.as_str(),
            message_type::INPUT_STREAM_DATA | message_type::OUTPUT_STREAM_DATA | message_type::ACKNOWLEDGE
        );
        let checked = !publication && (declared_length != 0 || (peer_built && !payload.is_empty()));
        if checked && payload_digest.as_slice() != wire_digest {
            return Err(FrameError::DigestMismatch);
        }
        Ok(Frame {
            message_type,
            schema_version: be_u32(bytes, OFFSET_SCHEMA_VERSION),
            created_date,
            sequence_number: be_u64(bytes, OFFSET_SEQUENCE_NUMBER) as i64,
            flags: be_u64(bytes, OFFSET_FLAGS),
            message_id,
            payload_digest,
            payload_type: be_u32(bytes, OFFSET_PAYLOAD_TYPE),
            payload,
        })
    }
}

fn be_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

fn be_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_be_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

/// Format 16 bytes as a lowercase hyphenated UUID.
pub fn uuid_string(bytes: &[u8; 16]) -> String {
    let hex = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Parse a hyphenated UUID into its 16 bytes.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let bytes = hex::decode(hex).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../../../tests/fixtures/ssm-vectors.json")).expect("vectors parse")
    }

    #[test]
    fn every_derived_frame_decodes_to_its_fields_and_re_encodes_identically() {
        let vectors = vectors();
        let frames = vectors["derived_frames"].as_array().unwrap();
        assert_eq!(frames.len(), 7);
        for vector in frames {
            let name = vector["name"].as_str().unwrap();
            let bytes = hex::decode(vector["hex"].as_str().unwrap()).unwrap();
            assert_eq!(bytes.len() as u64, vector["length"].as_u64().unwrap(), "{name}");
            let frame = Frame::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let fields = &vector["fields"];
            assert_eq!(frame.message_type, fields["MessageType"].as_str().unwrap(), "{name}");
            assert_eq!(frame.schema_version as u64, fields["SchemaVersion"].as_u64().unwrap(), "{name}");
            assert_eq!(frame.created_date, fields["CreatedDate"].as_u64().unwrap(), "{name}");
            assert_eq!(frame.sequence_number, fields["SequenceNumber"].as_i64().unwrap(), "{name}");
            assert_eq!(frame.flags, fields["Flags"].as_u64().unwrap(), "{name}");
            assert_eq!(frame.message_id_string(), fields["MessageId"].as_str().unwrap(), "{name}");
            if let Some(digest) = fields.get("PayloadDigest").and_then(Value::as_str) {
                assert_eq!(hex::encode(frame.payload_digest), digest, "{name}");
            }
            assert_eq!(frame.payload_digest, <[u8; 32]>::from(Sha256::digest(&frame.payload)), "{name}");
            assert_eq!(frame.payload_type as u64, fields["PayloadType"].as_u64().unwrap(), "{name}");
            assert_eq!(frame.payload.len() as u64, fields["PayloadLength"].as_u64().unwrap(), "{name}");
            assert_eq!(frame.payload, fields["Payload_utf8"].as_str().unwrap().as_bytes(), "{name}");
            assert_eq!(frame.encode().unwrap(), bytes, "{name}: re-encoding differs");
            let rebuilt = Frame::new(
                &frame.message_type,
                frame.sequence_number,
                frame.flags,
                frame.message_id,
                frame.created_date,
                frame.payload_type,
                frame.payload.clone(),
            );
            assert_eq!(rebuilt.encode().unwrap(), bytes, "{name}: building from fields differs");
        }
    }

    #[test]
    fn message_id_halves_are_swapped_on_the_wire() {
        let id = parse_uuid("dd01e56b-ff48-483e-a508-b5f073f31b16").unwrap();
        let frame = Frame::new("input_stream_data", 0, 0, id, 1, 1, vec![]);
        let bytes = frame.encode().unwrap();
        assert_eq!(hex::encode(&bytes[64..80]), "a508b5f073f31b16dd01e56bff48483e");
    }

    #[test]
    fn the_digest_of_payload_matches_the_upstream_literal() {
        let vectors = vectors();
        let literal = vectors["literal"].as_array().unwrap().iter().find(|l| l["name"] == "validate_order").unwrap();
        let text = literal.to_string();
        let frame = Frame::new("x", 0, 0, [1; 16], 1, 0, b"payload".to_vec());
        assert!(text.contains(&hex::encode(frame.payload_digest)), "{text}");
    }

    fn sample() -> Vec<u8> {
        Frame::new("output_stream_data", 7, 0, [7; 16], 1_503_434_274_948, 1, b"hello".to_vec()).encode().unwrap()
    }

    #[test]
    fn too_short() {
        assert_eq!(Frame::decode(&sample()[..119]), Err(FrameError::TooShort { len: 119 }));
        assert_eq!(Frame::decode(&[]), Err(FrameError::TooShort { len: 0 }));
    }

    #[test]
    fn zero_header_length() {
        let mut bytes = sample();
        bytes[..4].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(Frame::decode(&bytes), Err(FrameError::ZeroHeaderLength));
    }

    #[test]
    fn header_length_out_of_range() {
        let mut bytes = sample();
        bytes[..4].copy_from_slice(&500u32.to_be_bytes());
        assert_eq!(Frame::decode(&bytes), Err(FrameError::HeaderLengthOutOfRange { header_length: 500, len: 125 }));
        bytes[..4].copy_from_slice(&20u32.to_be_bytes());
        assert_eq!(Frame::decode(&bytes), Err(FrameError::HeaderLengthOutOfRange { header_length: 20, len: 125 }));
    }

    #[test]
    fn missing_message_type() {
        let mut bytes = sample();
        bytes[4..36].fill(b' ');
        assert_eq!(Frame::decode(&bytes), Err(FrameError::MissingMessageType));
        bytes[4..36].fill(0);
        assert_eq!(Frame::decode(&bytes), Err(FrameError::MissingMessageType));
    }

    #[test]
    fn bad_message_type() {
        let mut bytes = sample();
        bytes[4] = 0xff;
        assert_eq!(Frame::decode(&bytes), Err(FrameError::BadMessageType));
    }

    #[test]
    fn missing_created_date() {
        let mut bytes = sample();
        bytes[40..48].fill(0);
        assert_eq!(Frame::decode(&bytes), Err(FrameError::MissingCreatedDate));
    }

    #[test]
    fn digest_mismatch() {
        let mut bytes = sample();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(Frame::decode(&bytes), Err(FrameError::DigestMismatch));
        let mut bytes = sample();
        bytes[90] ^= 1;
        assert_eq!(Frame::decode(&bytes), Err(FrameError::DigestMismatch));
    }

    #[test]
    fn nil_message_id_is_not_encoded() {
        let frame = Frame::new("acknowledge", 0, 3, [0; 16], 1, 0, vec![]);
        assert_eq!(frame.encode(), Err(FrameError::NilMessageId));
    }

    #[test]
    fn publication_messages_skip_validation() {
        let mut bytes = Frame::new("pause_publication", 0, 0, [2; 16], 1, 0, vec![]).encode().unwrap();
        bytes[40..48].fill(0);
        bytes[80..112].fill(9);
        assert_eq!(Frame::decode(&bytes).unwrap().message_type, "pause_publication");
    }

    #[test]
    fn empty_payload_digest_is_not_checked() {
        let mut bytes = Frame::new("acknowledge", 0, 3, [2; 16], 1, 0, vec![]).encode().unwrap();
        bytes[80..112].fill(9);
        assert!(Frame::decode(&bytes).is_ok());
    }

    /// Found by `scripts/fuzz` (fuzz/artifacts/frame_decode/crash-bf461c30…): HeaderLength 120,
    /// PayloadLength 0, a payload and a digest that is not its own. Accepted unchecked (as the
    /// plugin does for a gateway-built type), it used to keep the wire digest and re-encode to a
    /// frame that no longer decoded.
    #[test]
    fn an_unchecked_digest_is_normalised_so_the_frame_round_trips() {
        let crash = hex::decode(
            "0000007800000000000000000000000000002e00000000000000000000000000000000000000000000000000000032323232\
             3232323232323232323232323232323232323232323200000000000000000000000000000000000000000000000000000000\
             0000000200dadadadadab0000000000000000000000000000200dadadadadadadadadadada00000000000000000000000000\
             000000000000000000000000000000000a",
        )
        .unwrap();
        let frame = Frame::decode(&crash).unwrap();
        assert_eq!(frame.message_type, ".");
        assert_eq!(frame.payload_digest, <[u8; 32]>::from(Sha256::digest(&frame.payload)));
        assert_eq!(Frame::decode(&frame.encode().unwrap()), Ok(frame));
    }

    #[test]
    fn stream_data_behind_a_zero_payload_length_is_still_checked() {
        let mut bytes = Frame::new("output_stream_data", 0, 1, [2; 16], 1, 1, b"forged".to_vec()).encode().unwrap();
        bytes[116..120].fill(0);
        assert!(Frame::decode(&bytes).is_ok(), "an honest digest passes");
        bytes[80] ^= 1;
        assert_eq!(Frame::decode(&bytes), Err(FrameError::DigestMismatch));
    }

    proptest! {
        #[test]
        fn round_trip(
            kind in "[a-z_]{1,32}",
            seq in any::<i64>(),
            flags in any::<u64>(),
            id in any::<[u8; 16]>().prop_filter("not nil", |id| *id != [0; 16]),
            created in 1u64..,
            payload_type in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let frame = Frame::new(&kind, seq, flags, id, created, payload_type, payload);
            let bytes = frame.encode().unwrap();
            prop_assert_eq!(Frame::decode(&bytes).unwrap(), frame);
        }

        /// The fuzz target's property: never a panic, and whatever decodes re-encodes to bytes
        /// that decode to the same frame.
        #[test]
        fn arbitrary_bytes_never_panic_and_accepted_frames_round_trip(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            if let Ok(frame) = Frame::decode(&bytes)
                && let Ok(encoded) = frame.encode()
            {
                prop_assert_eq!(Frame::decode(&encoded), Ok(frame));
            }
        }
    }
}
