//! KMS (AWS JSON 1.1, `TrentService`), as much as KMS-encrypted exec sessions need:
//! GenerateDataKey for the client and Decrypt for the agent (which calls it in-process with the
//! task role). The keys are the clusters' exec keys. A ciphertext blob is the key id and an
//! AES-256-GCM envelope under the lab's own master key, with the encryption context as
//! associated data, so Decrypt with any other context fails as KMS does
//! (InvalidCiphertextException).

use super::{ActionResult, ApiError, required};
use crate::state::Account;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn handle(account: &mut Account, action: &str, params: &Value, denied: bool) -> ActionResult {
    match action {
        "GenerateDataKey" => {
            let key_id = required(params, "KeyId", "ValidationException")?;
            if denied {
                return Err(ApiError::client(
                    "AccessDeniedException",
                    format!(
                        "User: arn:aws:sts::{}:assumed-role/Operator/evoctl is not authorized to perform: kms:GenerateDataKey on resource: {} because no identity-based policy allows the kms:GenerateDataKey action",
                        account.account,
                        key_arn(account, key_id)
                    ),
                ));
            }
            let bytes = params.get("NumberOfBytes").and_then(Value::as_u64).unwrap_or(0);
            if !(1..=1024).contains(&bytes) {
                return Err(ApiError::client(
                    "ValidationException",
                    "1 validation error detected: Value at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024",
                ));
            }
            known_key(account, key_id)?;
            let mut plaintext = vec![0u8; bytes as usize];
            aws_lc_rs::rand::fill(&mut plaintext).expect("system randomness");
            let blob = seal(account, key_id, &context_of(params), &plaintext);
            // Tests check that no data key shows up anywhere, as they do for session tokens.
            account.issued_tokens.push(BASE64.encode(&plaintext));
            account.issued_tokens.push(hex::encode(&plaintext));
            Ok(json!({
                "CiphertextBlob": BASE64.encode(blob),
                "Plaintext": BASE64.encode(plaintext),
                "KeyId": key_arn(account, key_id),
            }))
        }
        "Decrypt" => {
            let blob = required(params, "CiphertextBlob", "ValidationException")?;
            let blob = BASE64.decode(blob).map_err(|_| ApiError::client("InvalidCiphertextException", ""))?;
            let (key_id, plaintext) = open(account, &blob, &context_of(params))?;
            Ok(json!({"Plaintext": BASE64.encode(plaintext), "KeyId": key_arn(account, &key_id)}))
        }
        _ => Err(ApiError::client("InvalidAction", format!("The action {action} is not valid for this web service."))),
    }
}

/// The encryption context of a request (missing = empty).
fn context_of(params: &Value) -> BTreeMap<String, String> {
    params
        .get("EncryptionContext")
        .and_then(Value::as_object)
        .map(|map| map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

fn known_key(account: &Account, key_id: &str) -> Result<(), ApiError> {
    if account.clusters.values().any(|c| c.exec_kms_key_id.as_deref() == Some(key_id)) {
        Ok(())
    } else {
        Err(ApiError::client("NotFoundException", format!("Key '{}' does not exist", key_arn(account, key_id))))
    }
}

fn key_arn(account: &Account, key_id: &str) -> String {
    if key_id.starts_with("arn:") {
        key_id.to_owned()
    } else {
        format!("arn:aws:kms:{}:{}:key/{key_id}", account.region, account.account)
    }
}

fn master(account: &Account) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &account.kms_master_key).expect("32-byte key"))
}

fn associated_data(key_id: &str, context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut aad = key_id.as_bytes().to_vec();
    aad.push(0);
    aad.extend_from_slice(&serde_json::to_vec(context).expect("serialises"));
    aad
}

/// Blob: key-id length (u16 BE) ‖ key id ‖ nonce ‖ sealed data key.
fn seal(account: &Account, key_id: &str, context: &BTreeMap<String, String>, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).expect("system randomness");
    let mut body = plaintext.to_vec();
    master(account)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(key_id, context).as_slice()),
            &mut body,
        )
        .expect("sealing in memory");
    let mut blob = (key_id.len() as u16).to_be_bytes().to_vec();
    blob.extend_from_slice(key_id.as_bytes());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&body);
    blob
}

fn open(account: &Account, blob: &[u8], context: &BTreeMap<String, String>) -> Result<(String, Vec<u8>), ApiError> {
    let invalid = || ApiError::client("InvalidCiphertextException", "");
    let length = usize::from(u16::from_be_bytes(blob.get(..2).ok_or_else(invalid)?.try_into().expect("2 bytes")));
    let key_id = std::str::from_utf8(blob.get(2..2 + length).ok_or_else(invalid)?).map_err(|_| invalid())?.to_owned();
    let rest = blob.get(2 + length..).ok_or_else(invalid)?;
    if rest.len() < NONCE_LEN + 16 {
        return Err(invalid());
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| invalid())?;
    let mut body = sealed.to_vec();
    let plain = master(account)
        .open_in_place(nonce, Aad::from(associated_data(&key_id, context).as_slice()), &mut body)
        .map_err(|_| invalid())?;
    Ok((key_id, plain.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario;
    use crate::state::Timing;

    fn account() -> Account {
        let timing = Timing { task_start_ms: 0, task_stop_ms: 0, agent_start_ms: 0 };
        Account::from_scenario(&scenario::load("kms-exec").unwrap(), timing).unwrap()
    }

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/6f1c2d34-production-exec";

    #[test]
    fn a_data_key_decrypts_only_under_its_own_context() {
        let mut account = account();
        let context = json!({"aws:ssm:SessionId": "s-1", "aws:ssm:TargetId": "ecs:c_t_r"});
        let generated = handle(
            &mut account,
            "GenerateDataKey",
            &json!({"KeyId": KEY, "NumberOfBytes": 64, "EncryptionContext": context}),
            false,
        )
        .unwrap();
        let plaintext = BASE64.decode(generated["Plaintext"].as_str().unwrap()).unwrap();
        assert_eq!(plaintext.len(), 64);
        assert_eq!(generated["KeyId"], KEY);
        let blob = generated["CiphertextBlob"].clone();
        let decrypted =
            handle(&mut account, "Decrypt", &json!({"CiphertextBlob": blob, "EncryptionContext": context}), false)
                .unwrap();
        assert_eq!(BASE64.decode(decrypted["Plaintext"].as_str().unwrap()).unwrap(), plaintext);

        let other = json!({"aws:ssm:SessionId": "s-2", "aws:ssm:TargetId": "ecs:c_t_r"});
        let refused =
            handle(&mut account, "Decrypt", &json!({"CiphertextBlob": blob, "EncryptionContext": other}), false);
        assert_eq!(refused.unwrap_err().code, "InvalidCiphertextException");
        let truncated = json!({"CiphertextBlob": "AAE=", "EncryptionContext": context});
        assert_eq!(handle(&mut account, "Decrypt", &truncated, false).unwrap_err().code, "InvalidCiphertextException");
    }

    #[test]
    fn unknown_keys_bad_sizes_and_denials_are_kms_errors() {
        let mut account = account();
        let unknown =
            handle(&mut account, "GenerateDataKey", &json!({"KeyId": "alias/nope", "NumberOfBytes": 64}), false);
        assert_eq!(
            unknown.unwrap_err().message,
            "Key 'arn:aws:kms:us-east-1:123456789012:key/alias/nope' does not exist"
        );
        let zero = handle(&mut account, "GenerateDataKey", &json!({"KeyId": KEY, "NumberOfBytes": 0}), false);
        assert_eq!(zero.unwrap_err().code, "ValidationException");
        let denied = handle(&mut account, "GenerateDataKey", &json!({"KeyId": KEY, "NumberOfBytes": 64}), true);
        assert_eq!(denied.unwrap_err().code, "AccessDeniedException");
        assert!(account.issued_tokens.is_empty(), "no key was handed out");
    }
}
