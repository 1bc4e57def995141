//! The agent's half of the KMS handshake, sans-IO, written from the data-channel notes (§2.5,
//! §2.6, §3.4, §3.5) for the lab agent alone: the HandshakeRequest body (SessionType
//! InteractiveCommands first, then KMSEncryption with the cluster's key id and a random
//! 16-byte challenge), reading the client's HandshakeResponse (every action must have
//! ActionStatus 1; the KMS result carries `KMSCipherTextKey` and maybe
//! `ChallengeAcknowledgement`), the encryption context the task role's Decrypt uses
//! (`aws:ssm:SessionId`, `aws:ssm:TargetId`, plus `aws:ssm:RandomChallenge` when the client
//! acknowledged the challenge), the encryption challenge (64 random bytes sealed with the
//! agent's key; the answer must open with the client's key to the same bytes) and
//! HandshakeComplete. Sending, timeouts and the KMS call stay with the agent loop.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use evoctl_ssm::crypto::SessionCipher;
use evoctl_ssm::messages::{
    EncryptionChallenge, HandshakeComplete, HandshakeRequest, HandshakeResponse, RequestedClientAction,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The agent version the lab reports unless the scenario says otherwise (`ssm_agent_version`).
pub const AGENT_VERSION: &str = "3.3.1802.0";
/// What the agent tells the client once a KMS session is set up.
pub const KMS_CUSTOMER_MESSAGE: &str = "This session is encrypted using AWS KMS.";
/// Bytes of the random challenge in the KMSEncryption action.
pub const CHALLENGE_BYTES: usize = 16;
/// Bytes of the encryption challenge's secret.
pub const SECRET_BYTES: usize = 64;

/// Random bytes from the system.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    bytes
}

/// A fresh random challenge string (base64 of 16 bytes).
pub fn new_challenge() -> String {
    BASE64.encode(random_bytes(CHALLENGE_BYTES))
}

/// The HandshakeRequest body: SessionType first, then KMSEncryption.
pub fn request(agent_version: &str, key_id: &str, challenge: &str) -> Vec<u8> {
    let request = HandshakeRequest {
        agent_version: agent_version.into(),
        requested_client_actions: vec![
            RequestedClientAction {
                action_type: "SessionType".into(),
                action_parameters: json!({"SessionType": "InteractiveCommands", "Properties": null}),
            },
            RequestedClientAction {
                action_type: "KMSEncryption".into(),
                action_parameters: json!({"KMSKeyId": key_id, "Challenge": challenge}),
            },
        ],
    };
    serde_json::to_vec(&request).expect("serialises")
}

/// What the client's HandshakeResponse says about KMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsResult {
    pub ciphertext: Vec<u8>,
    pub challenge_acknowledged: bool,
}

/// Read the HandshakeResponse: any action with a status other than 1 fails the session, and
/// the KMSEncryption result must carry the data key's ciphertext.
pub fn read_response(body: &[u8]) -> Result<KmsResult, String> {
    let response: HandshakeResponse =
        serde_json::from_slice(body).map_err(|e| format!("Failed to unmarshal handshake response: {e}"))?;
    let mut kms = None;
    for action in &response.processed_client_actions {
        if action.action_status != 1 {
            return Err(format!(
                "{} failed on client with status {} error: {}",
                action.action_type, action.action_status, action.error
            ));
        }
        if action.action_type == "KMSEncryption" {
            let key = action.action_result.get("KMSCipherTextKey").and_then(Value::as_str).unwrap_or_default();
            let ciphertext = BASE64.decode(key).map_err(|e| format!("KMSCipherTextKey is not base64: {e}"))?;
            let challenge_acknowledged =
                action.action_result.get("ChallengeAcknowledgement").and_then(Value::as_bool).unwrap_or(false);
            kms = Some(KmsResult { ciphertext, challenge_acknowledged });
        }
    }
    kms.filter(|k| !k.ciphertext.is_empty()).ok_or_else(|| "KMSEncryption was not processed by the client".into())
}

/// The Decrypt's encryption context.
pub fn encryption_context(session_id: &str, target_id: &str, challenge: Option<&str>) -> BTreeMap<String, String> {
    let mut context = BTreeMap::new();
    context.insert("aws:ssm:SessionId".to_owned(), session_id.to_owned());
    context.insert("aws:ssm:TargetId".to_owned(), target_id.to_owned());
    if let Some(challenge) = challenge {
        context.insert("aws:ssm:RandomChallenge".to_owned(), challenge.to_owned());
    }
    context
}

/// The EncChallengeRequest body for `sealed` (the secret sealed with the agent's key).
pub fn challenge_request(sealed: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&EncryptionChallenge { challenge: BASE64.encode(sealed) }).expect("serialises")
}

/// Check the EncChallengeResponse body: it must open with the client's key to `secret`.
pub fn check_challenge_response(body: &[u8], cipher: &SessionCipher, secret: &[u8]) -> Result<(), String> {
    let answer: EncryptionChallenge =
        serde_json::from_slice(body).map_err(|e| format!("Failed to unmarshal challenge response: {e}"))?;
    let sealed = BASE64.decode(answer.challenge).map_err(|e| format!("challenge response is not base64: {e}"))?;
    let opened = cipher.open(&sealed).map_err(|e| format!("Unable to decrypt challenge response: {e}"))?;
    if opened != secret {
        return Err("Encryption challenge does not match.".into());
    }
    Ok(())
}

/// The HandshakeComplete body.
pub fn complete(elapsed: std::time::Duration) -> Vec<u8> {
    let complete = HandshakeComplete {
        handshake_time_to_complete: elapsed.as_nanos() as i64,
        customer_message: KMS_CUSTOMER_MESSAGE.into(),
    };
    serde_json::to_vec(&complete).expect("serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use evoctl_ssm::crypto::Side;

    #[test]
    fn the_request_puts_the_session_type_first_then_kms() {
        let body: Value = serde_json::from_slice(&request(AGENT_VERSION, "arn:k", "Y2g=")).unwrap();
        assert_eq!(
            body,
            json!({"AgentVersion": "3.3.1802.0", "RequestedClientActions": [
                {"ActionType": "SessionType", "ActionParameters": {"SessionType": "InteractiveCommands", "Properties": null}},
                {"ActionType": "KMSEncryption", "ActionParameters": {"KMSKeyId": "arn:k", "Challenge": "Y2g="}}]})
        );
        assert_eq!(BASE64.decode(new_challenge()).unwrap().len(), 16);
    }

    #[test]
    fn the_response_must_succeed_and_carry_the_ciphertext() {
        let ok = br#"{"ClientVersion":"1.2.677.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""},{"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":{"KMSCipherTextKey":"YmxvYg==","KMSCipherTextHash":null},"Error":""}],"Errors":null}"#;
        assert_eq!(
            read_response(ok).unwrap(),
            KmsResult { ciphertext: b"blob".to_vec(), challenge_acknowledged: false }
        );
        let acked =
            String::from_utf8_lossy(ok).replace("\"KMSCipherTextHash\":null", "\"ChallengeAcknowledgement\":true");
        assert!(read_response(acked.as_bytes()).unwrap().challenge_acknowledged);
        let failed = String::from_utf8_lossy(ok).replacen("\"ActionStatus\":1", "\"ActionStatus\":0", 1);
        assert!(read_response(failed.as_bytes()).unwrap_err().contains("SessionType failed on client"));
        assert!(read_response(b"{}").is_err());
    }

    #[test]
    fn the_context_names_session_and_target_and_the_challenge_when_acknowledged() {
        let context = encryption_context("s-1", "ecs:c_t_r", None);
        assert_eq!(
            serde_json::to_string(&context).unwrap(),
            r#"{"aws:ssm:SessionId":"s-1","aws:ssm:TargetId":"ecs:c_t_r"}"#
        );
        assert_eq!(encryption_context("s", "t", Some("ch"))["aws:ssm:RandomChallenge"], "ch");
    }

    #[test]
    fn the_challenge_round_trips_through_the_client_keys() {
        let key: Vec<u8> = (0..64).collect();
        let agent = SessionCipher::new(&key, Side::Agent).unwrap();
        let client = SessionCipher::new(&key, Side::Client).unwrap();
        let secret = random_bytes(SECRET_BYTES);
        let request: EncryptionChallenge =
            serde_json::from_slice(&challenge_request(&agent.seal(&secret, [1; 12]))).unwrap();
        assert_eq!(request.challenge.len(), 124, "12 + 64 + 16 bytes in base64");
        let plain = client.open(&BASE64.decode(&request.challenge).unwrap()).unwrap();
        let answer =
            serde_json::to_vec(&EncryptionChallenge { challenge: BASE64.encode(client.seal(&plain, [2; 12])) })
                .unwrap();
        check_challenge_response(&answer, &agent, &secret).unwrap();
        let wrong =
            serde_json::to_vec(&EncryptionChallenge { challenge: BASE64.encode(client.seal(b"x", [3; 12])) }).unwrap();
        assert_eq!(
            check_challenge_response(&wrong, &agent, &secret).unwrap_err(),
            "Encryption challenge does not match."
        );
    }
}
