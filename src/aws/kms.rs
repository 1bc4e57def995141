//! The one KMS call a client makes: GenerateDataKey for a KMS-encrypted exec session, with the
//! session's encryption context. The plaintext key stays in memory, never in a log or error.

use super::{Aws, sdk_failure};
use crate::error::{Error, ExecKind, Result};
use std::collections::BTreeMap;

/// A data key: the plaintext for this end, the ciphertext for the agent to decrypt.
pub struct DataKey {
    pub plaintext: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("plaintext", &"<redacted>")
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// GenerateDataKey of `bytes` bytes under `key_id`, bound to `context`.
pub async fn generate_data_key(
    aws: &Aws,
    key_id: &str,
    bytes: usize,
    context: &BTreeMap<String, String>,
) -> Result<DataKey> {
    let out = aws
        .kms()
        .generate_data_key()
        .key_id(key_id)
        .number_of_bytes(bytes as i32)
        .set_encryption_context(Some(context.clone().into_iter().collect()))
        .send()
        .await
        .map_err(|e| {
            let failure = sdk_failure("GenerateDataKey", e);
            match failure.code.as_str() {
                "AccessDeniedException" => Error::exec(
                    ExecKind::Permission,
                    format!("this exec session is KMS-encrypted and the caller may not use key {key_id} ({})", failure.message),
                    format!(
                        "grant your IAM principal kms:GenerateDataKey on {key_id} (the task role needs kms:Decrypt on it), or use another --profile"
                    ),
                ),
                "NotFoundException" | "DisabledException" | "KMSInvalidStateException" => Error::exec(
                    ExecKind::Permission,
                    format!("the cluster's exec KMS key {key_id} is not usable: {}: {}", failure.code, failure.message),
                    "check executeCommandConfiguration.kmsKeyId on the cluster (`aws ecs describe-clusters --include CONFIGURATIONS`) and the key's state in KMS",
                ),
                _ => failure.into_error(),
            }
        })?;
    match (out.plaintext(), out.ciphertext_blob()) {
        (Some(plaintext), Some(ciphertext)) => {
            Ok(DataKey { plaintext: plaintext.as_ref().to_vec(), ciphertext: ciphertext.as_ref().to_vec() })
        }
        _ => Err(Error::exec(ExecKind::Protocol, "KMS GenerateDataKey returned no key", "retry")),
    }
}
