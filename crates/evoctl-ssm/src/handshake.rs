//! The client's side of the handshake KMS-encrypted sessions open with, sans-IO: what the
//! agent's HandshakeRequest asks for (the session type, the KMS key and its random challenge),
//! the encryption context that GenerateDataKey and the agent's Decrypt must share, and the
//! client's HandshakeResponse. The agent's half (building the request, checking the response)
//! lives in the lab crate, `crates/evoctl-lab`. Sending, KMS calls and the encryption itself
//! live elsewhere.

use super::messages::{HandshakeRequest, HandshakeResponse, ProcessedClientAction};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const SESSION_TYPE: &str = "SessionType";
pub const KMS_ENCRYPTION: &str = "KMSEncryption";
/// The session type ECS Exec asks for.
pub const INTERACTIVE_COMMANDS: &str = "InteractiveCommands";
/// Session types a shell client handles (the official plugin treats these three alike).
const SHELL_SESSION_TYPES: &[&str] = &["Standard_Stream", INTERACTIVE_COMMANDS, "NonInteractiveCommands"];

const STATUS_SUCCESS: i32 = 1;
const STATUS_FAILED: i32 = 2;
const STATUS_UNSUPPORTED: i32 = 3;

/// The KMS encryption an agent asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsAction {
    /// The cluster's `executeCommandConfiguration.kmsKeyId`, as the agent has it.
    pub key_id: String,
    /// The agent's random challenge (agents from 3.3.808 on); acknowledged when present.
    pub challenge: Option<String>,
}

/// What one HandshakeRequest asks of the client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requested {
    pub kms: Option<KmsAction>,
    /// What this client cannot honour (a port session, an unknown action), for the error.
    pub refused: Vec<String>,
}

/// Read the agent's request.
pub fn read_request(request: &HandshakeRequest) -> Requested {
    let mut requested = Requested::default();
    for action in &request.requested_client_actions {
        let parameter = |name: &str| action.action_parameters.get(name).and_then(Value::as_str).unwrap_or_default();
        match action.action_type.as_str() {
            SESSION_TYPE => {
                let session_type = parameter("SessionType");
                if !SHELL_SESSION_TYPES.contains(&session_type) {
                    requested.refused.push(format!("session type `{session_type}`"));
                }
            }
            KMS_ENCRYPTION => {
                let key_id = parameter("KMSKeyId");
                if key_id.is_empty() {
                    requested.refused.push("KMS encryption without a KMSKeyId".into());
                } else {
                    let challenge = Some(parameter("Challenge")).filter(|c| !c.is_empty()).map(str::to_owned);
                    requested.kms = Some(KmsAction { key_id: key_id.to_owned(), challenge });
                }
            }
            other => requested.refused.push(format!("action `{other}`")),
        }
    }
    requested
}

/// The encryption context of the session's data key: the session and target ids, and the
/// agent's random challenge when the client acknowledges it.
pub fn encryption_context(session_id: &str, target: &str, challenge: Option<&str>) -> BTreeMap<String, String> {
    let mut context = BTreeMap::from([
        ("aws:ssm:SessionId".to_owned(), session_id.to_owned()),
        ("aws:ssm:TargetId".to_owned(), target.to_owned()),
    ]);
    if let Some(challenge) = challenge {
        context.insert("aws:ssm:RandomChallenge".to_owned(), challenge.to_owned());
    }
    context
}

/// The KMS part of a HandshakeResponse: the data key's ciphertext, and whether the key is bound
/// to the agent's challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsReply {
    pub ciphertext: Vec<u8>,
    pub challenge_acknowledged: bool,
}

/// The client's HandshakeResponse: every requested action in the request's order. The KMS one
/// carries the data key's ciphertext and, when the key was bound to it, acknowledges the
/// challenge; what this client cannot do is reported Unsupported (the agent then ends the
/// session).
pub fn response(request: &HandshakeRequest, kms: Option<&KmsReply>, client_version: &str) -> HandshakeResponse {
    let mut errors = Vec::new();
    let mut processed = Vec::new();
    for action in &request.requested_client_actions {
        let kind = action.action_type.as_str();
        let session_type_ok = kind == SESSION_TYPE
            && action
                .action_parameters
                .get("SessionType")
                .and_then(Value::as_str)
                .is_some_and(|t| SHELL_SESSION_TYPES.contains(&t));
        let (status, result, error) = match (kind, kms) {
            (SESSION_TYPE, _) if session_type_ok => (STATUS_SUCCESS, Value::Null, String::new()),
            (KMS_ENCRYPTION, Some(kms)) => {
                let mut result = json!({"KMSCipherTextKey": BASE64.encode(&kms.ciphertext), "KMSCipherTextHash": null});
                if kms.challenge_acknowledged {
                    result["ChallengeAcknowledgement"] = json!(true);
                }
                (STATUS_SUCCESS, result, String::new())
            }
            (KMS_ENCRYPTION, None) => {
                (STATUS_FAILED, Value::Null, format!("Failed to process action {kind}: no data key"))
            }
            _ => (STATUS_UNSUPPORTED, Value::Null, format!("Failed to process action {kind}: unsupported")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::RequestedClientAction;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k1";

    fn kms(challenge: Option<&str>) -> KmsAction {
        KmsAction { key_id: KEY.into(), challenge: challenge.map(str::to_owned) }
    }

    /// The request an ECS Exec agent sends, as JSON on the wire (session type first, then KMS
    /// when configured).
    fn agent_request(agent_version: &str, challenge: Option<Option<&str>>) -> HandshakeRequest {
        let mut actions = vec![
            json!({"ActionType": "SessionType", "ActionParameters": {"SessionType": "InteractiveCommands", "Properties": null}}),
        ];
        if let Some(challenge) = challenge {
            actions.push(json!({"ActionType": "KMSEncryption", "ActionParameters": {"KMSKeyId": KEY, "Challenge": challenge.unwrap_or_default()}}));
        }
        let wire = json!({"AgentVersion": agent_version, "RequestedClientActions": actions}).to_string();
        serde_json::from_str(&wire).unwrap()
    }

    fn as_value(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_agents_request_is_read_and_the_response_has_the_plugins_shape() {
        let wire = r#"{"AgentVersion":"3.3.1802.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"InteractiveCommands","Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"arn:aws:kms:us-east-1:111122223333:key/k1","Challenge":"Y2hhbGxlbmdl"}}]}"#;
        let parsed: HandshakeRequest = serde_json::from_str(wire).unwrap();
        assert_eq!(parsed, agent_request("3.3.1802.0", Some(Some("Y2hhbGxlbmdl"))));
        assert_eq!(read_request(&parsed), Requested { kms: Some(kms(Some("Y2hhbGxlbmdl"))), refused: vec![] });

        let blob = KmsReply { ciphertext: b"blob".to_vec(), challenge_acknowledged: true };
        let reply = response(&parsed, Some(&blob), "evoctl-0.1.0");
        assert_eq!(
            as_value(&serde_json::to_string(&reply).unwrap()),
            as_value(
                r#"{"ClientVersion":"evoctl-0.1.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""},{"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":{"KMSCipherTextKey":"YmxvYg==","KMSCipherTextHash":null,"ChallengeAcknowledgement":true},"Error":""}],"Errors":null}"#
            )
        );
    }

    #[test]
    fn without_a_challenge_nothing_is_acknowledged_and_the_context_has_two_keys() {
        let request = agent_request("3.2.0.0", Some(None));
        assert_eq!(read_request(&request).kms, Some(kms(None)), "an empty challenge is none");
        let plain = KmsReply { ciphertext: b"k".to_vec(), challenge_acknowledged: false };
        let reply = response(&request, Some(&plain), "v");
        assert_eq!(reply.processed_client_actions[1].action_status, 1);
        assert_eq!(reply.processed_client_actions[1].action_result.get("ChallengeAcknowledgement"), None);
        assert_eq!(reply.processed_client_actions[1].action_result["KMSCipherTextKey"], "aw==");
        assert_eq!(reply.errors, None);
        assert_eq!(
            serde_json::to_string(&encryption_context("s-1", "ecs:c_t_r", None)).unwrap(),
            r#"{"aws:ssm:SessionId":"s-1","aws:ssm:TargetId":"ecs:c_t_r"}"#
        );
        assert_eq!(
            serde_json::to_string(&encryption_context("s-1", "ecs:c_t_r", Some("ch"))).unwrap(),
            r#"{"aws:ssm:RandomChallenge":"ch","aws:ssm:SessionId":"s-1","aws:ssm:TargetId":"ecs:c_t_r"}"#
        );
    }

    #[test]
    fn a_port_session_or_unknown_action_is_refused_and_reported_unsupported() {
        let mut request = agent_request("3.3.0.0", None);
        request.requested_client_actions[0].action_parameters = json!({"SessionType": "Port"});
        request
            .requested_client_actions
            .push(RequestedClientAction { action_type: "Telepathy".into(), action_parameters: Value::Null });
        assert_eq!(read_request(&request).refused, ["session type `Port`", "action `Telepathy`"]);
        let reply = response(&request, None, "v");
        let statuses: Vec<i32> = reply.processed_client_actions.iter().map(|a| a.action_status).collect();
        assert_eq!(statuses, [3, 3]);
        assert_eq!(
            reply.errors.as_deref(),
            Some(
                [
                    "Failed to process action SessionType: unsupported".to_owned(),
                    "Failed to process action Telepathy: unsupported".to_owned()
                ]
                .as_slice()
            )
        );
    }

    #[test]
    fn kms_without_a_data_key_or_a_key_id_fails() {
        let request = agent_request("3.3.0.0", Some(None));
        let reply = response(&request, None, "v");
        assert_eq!(reply.processed_client_actions[1].action_status, 2);
        assert_eq!(reply.processed_client_actions[1].error, "Failed to process action KMSEncryption: no data key");
        assert_eq!(reply.errors.as_ref().map(Vec::len), Some(1));
        let mut no_key = request.clone();
        no_key.requested_client_actions[1].action_parameters = json!({"KMSKeyId": ""});
        assert_eq!(
            read_request(&no_key),
            Requested { kms: None, refused: vec!["KMS encryption without a KMSKeyId".into()] }
        );
    }
}
