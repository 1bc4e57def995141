//! The JSON bodies carried on the data channel: the opening token, acknowledgements,
//! channel_closed, the handshake, the encryption challenge, and terminal size.
//!
//! Field names follow the wire exactly (PascalCase, `cols`/`rows`). Incoming bodies are parsed
//! leniently (unknown fields ignored, numbers or strings where the service is inconsistent).

use serde::{Deserialize, Serialize};

/// The first (text) frame on a new or resumed connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OpenDataChannel {
    #[serde(rename = "MessageSchemaVersion")]
    pub message_schema_version: String,
    #[serde(rename = "RequestId")]
    pub request_id: String,
    #[serde(rename = "TokenValue")]
    pub token_value: String,
    #[serde(rename = "ClientId")]
    pub client_id: String,
    #[serde(rename = "ClientVersion", default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
}

/// `acknowledge` payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Acknowledge {
    #[serde(rename = "AcknowledgedMessageType")]
    pub message_type: String,
    #[serde(rename = "AcknowledgedMessageId")]
    pub message_id: String,
    #[serde(rename = "AcknowledgedMessageSequenceNumber")]
    pub sequence_number: i64,
    #[serde(rename = "IsSequentialMessage")]
    pub is_sequential: bool,
}

/// `channel_closed` payload (sent by the gateway when the session ends).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ChannelClosed {
    #[serde(rename = "MessageId", default)]
    pub message_id: String,
    #[serde(rename = "CreatedDate", default, deserialize_with = "string_or_number")]
    pub created_date: String,
    #[serde(rename = "DestinationId", default)]
    pub destination_id: String,
    #[serde(rename = "SessionId", default)]
    pub session_id: String,
    #[serde(rename = "MessageType", default)]
    pub message_type: String,
    #[serde(rename = "SchemaVersion", default)]
    pub schema_version: i64,
    #[serde(rename = "Output", default)]
    pub output: String,
}

/// Terminal size (PayloadType 3), key order cols then rows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct TerminalSize {
    pub cols: u32,
    pub rows: u32,
}

/// HandshakeRequest (agent to client, PayloadType 5).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HandshakeRequest {
    #[serde(rename = "AgentVersion", default)]
    pub agent_version: String,
    #[serde(rename = "RequestedClientActions", default)]
    pub requested_client_actions: Vec<RequestedClientAction>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestedClientAction {
    #[serde(rename = "ActionType")]
    pub action_type: String,
    #[serde(rename = "ActionParameters", default)]
    pub action_parameters: serde_json::Value,
}

/// HandshakeResponse (client to agent, PayloadType 6).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HandshakeResponse {
    #[serde(rename = "ClientVersion")]
    pub client_version: String,
    #[serde(rename = "ProcessedClientActions")]
    pub processed_client_actions: Vec<ProcessedClientAction>,
    #[serde(rename = "Errors")]
    pub errors: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessedClientAction {
    #[serde(rename = "ActionType")]
    pub action_type: String,
    /// 1 success, 2 failed, 3 unsupported.
    #[serde(rename = "ActionStatus")]
    pub action_status: i32,
    #[serde(rename = "ActionResult")]
    pub action_result: serde_json::Value,
    #[serde(rename = "Error")]
    pub error: String,
}

/// HandshakeComplete (agent to client, PayloadType 7).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HandshakeComplete {
    #[serde(rename = "HandshakeTimeToComplete", default)]
    pub handshake_time_to_complete: i64,
    #[serde(rename = "CustomerMessage", default)]
    pub customer_message: String,
}

/// EncChallengeRequest / EncChallengeResponse (PayloadTypes 8 and 9): an encrypted random value
/// the client must decrypt and seal again with its own key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EncryptionChallenge {
    /// Base64 of nonce ‖ ciphertext ‖ tag.
    #[serde(rename = "Challenge")]
    pub challenge: String,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(match value {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}
