//! Session Manager's KMS encryption, sans-IO: the 64-byte data key from GenerateDataKey split in
//! two (the agent encrypts with the first half, the client with the second), AES-256-GCM with a
//! 12-byte nonce prefix and a 16-byte tag suffix and no AAD, and the client's random nonces.
//! [`SessionCipher`] can take either [`Side`] (tests play the agent with it), but this crate
//! holds the client only: the agent's counter nonces live in the lab crate, `crates/evoctl-lab`.
//! Which payloads are encrypted is the session's business; this module only seals and opens.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Bytes of the data key GenerateDataKey is asked for.
pub const DATA_KEY_LEN: usize = 64;
const TAG_LEN: usize = 16;

/// Why a payload could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the KMS data key has {0} bytes; Session Manager uses 64")]
    KeyLength(usize),
    #[error("an encrypted payload of {0} bytes is shorter than nonce and tag")]
    TooShort(usize),
    #[error("an encrypted payload failed authentication (wrong key or tampered)")]
    Authentication,
    #[error("an encrypted payload arrived before the session had a data key")]
    NoKey,
    #[error("an encryption challenge is not base64 JSON")]
    Malformed,
}

/// Which end of the session this cipher is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Agent,
}

/// The two AES-256-GCM keys of one session, from one end's point of view.
pub struct SessionCipher {
    seal_key: LessSafeKey,
    open_key: LessSafeKey,
}

impl std::fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCipher(..)")
    }
}

impl SessionCipher {
    /// Split the plaintext data key for `side`.
    pub fn new(data_key: &[u8], side: Side) -> Result<SessionCipher, CryptoError> {
        if data_key.len() != DATA_KEY_LEN {
            return Err(CryptoError::KeyLength(data_key.len()));
        }
        let (agent_half, client_half) = data_key.split_at(DATA_KEY_LEN / 2);
        let key = |bytes: &[u8]| LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32-byte AES-256 key"));
        let (seal, open) = match side {
            Side::Client => (client_half, agent_half),
            Side::Agent => (agent_half, client_half),
        };
        Ok(SessionCipher { seal_key: key(seal), open_key: key(open) })
    }

    /// Encrypt `plaintext` with `nonce`: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, plaintext: &[u8], nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        let mut body = plaintext.to_vec();
        self.seal_key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
            .expect("AES-GCM sealing of an in-memory buffer");
        let mut envelope = nonce.to_vec();
        envelope.extend_from_slice(&body);
        envelope
    }

    /// Decrypt an envelope sealed by the other end.
    pub fn open(&self, envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if envelope.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::TooShort(envelope.len()));
        }
        let (nonce, sealed) = envelope.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::TooShort(envelope.len()))?;
        let mut body = sealed.to_vec();
        let plain =
            self.open_key.open_in_place(nonce, Aad::empty(), &mut body).map_err(|_| CryptoError::Authentication)?;
        Ok(plain.to_vec())
    }
}

/// A random nonce, as the client uses for each message.
pub fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).expect("system randomness");
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vector() -> Value {
        let vectors: Value = serde_json::from_str(include_str!("../../../tests/fixtures/ssm-vectors.json")).unwrap();
        vectors["derived_aes_gcm"].clone()
    }

    #[test]
    fn the_agents_envelope_opens_with_the_clients_key_and_seals_back_identically() {
        let v = vector();
        let key = hex::decode(v["kms_plaintext_data_key_hex"].as_str().unwrap()).unwrap();
        let envelope = hex::decode(v["envelope_hex_nonce_ciphertext_tag"].as_str().unwrap()).unwrap();
        let plaintext = v["plaintext_utf8"].as_str().unwrap().as_bytes();
        let client = SessionCipher::new(&key, Side::Client).unwrap();
        assert_eq!(client.open(&envelope).unwrap(), plaintext);
        let agent = SessionCipher::new(&key, Side::Agent).unwrap();
        let nonce: [u8; 12] = hex::decode(v["nonce_hex"].as_str().unwrap()).unwrap().try_into().unwrap();
        assert_eq!(agent.seal(plaintext, nonce), envelope, "the agent's sealing is byte-identical");
        // The other direction uses the other half.
        let sealed = client.seal(b"keystrokes", random_nonce());
        assert_eq!(agent.open(&sealed).unwrap(), b"keystrokes");
        assert_eq!(client.open(&sealed), Err(CryptoError::Authentication), "a client cannot open its own messages");
    }

    #[test]
    fn tampering_short_payloads_and_wrong_keys_are_errors() {
        let key = [7u8; 64];
        let agent = SessionCipher::new(&key, Side::Agent).unwrap();
        let client = SessionCipher::new(&key, Side::Client).unwrap();
        let mut sealed = agent.seal(b"hello", [1; 12]);
        assert_eq!(client.open(&sealed).unwrap(), b"hello");
        sealed[14] ^= 1;
        assert_eq!(client.open(&sealed), Err(CryptoError::Authentication));
        assert_eq!(client.open(&[0; 27]), Err(CryptoError::TooShort(27)));
        assert_eq!(SessionCipher::new(&[0; 32], Side::Client).unwrap_err(), CryptoError::KeyLength(32));
    }

    #[test]
    fn random_nonces_are_fresh_and_lead_the_envelope() {
        let key = [3u8; 64];
        let client = SessionCipher::new(&key, Side::Client).unwrap();
        let agent = SessionCipher::new(&key, Side::Agent).unwrap();
        let (first, second) = (random_nonce(), random_nonce());
        assert_ne!(first, second);
        let sealed = client.seal(b"ls", first);
        assert_eq!(sealed[..12], first, "the nonce is the envelope's prefix");
        assert_eq!(sealed.len(), 12 + 2 + 16);
        assert_eq!(agent.open(&sealed).unwrap(), b"ls");
    }
}
