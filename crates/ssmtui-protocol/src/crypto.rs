//! KMS session encryption (§6): AES-256-GCM with the two halves of a 64-byte data key.
//!
//! Key halves: bytes `[0..32)` protect agent → client traffic, `[32..64)` client → agent, so
//! the client encrypts with the upper half and decrypts with the lower one and the agent does
//! the reverse. An encrypted payload is `nonce (12) ‖ ciphertext ‖ tag (16)`, no AAD.
//!
//! Nonces: each [`SessionCipher`] counts up from a caller-provided 96-bit seed (incremented as
//! a little-endian number, like the agent). GCM only needs a nonce to be unique per key; every
//! session uses a fresh data key and each direction its own half, so a counter is enough and
//! needs no OS randomness. The seed only has to differ between ciphers sharing a key half,
//! which never happens within one session.
//!
//! Key hygiene: [`DataKey`] overwrites its bytes on drop and its `Debug` is redacted. The AES
//! key schedules inside [`SessionCipher`] are not wiped (the `aes` crate does that only with its
//! `zeroize` feature); they live exactly as long as the session.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};

use super::error::ProtocolError;
use super::payload::EncChallengePayload;
use super::types::Role;

/// Length of the KMS data key (`NumberOfBytes` 64).
pub const DATA_KEY_LEN: usize = 64;
/// GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// GCM tag length.
pub const TAG_LEN: usize = 16;
/// Bytes an encrypted payload adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Length of the agent's random challenge.
pub const CHALLENGE_LEN: usize = 64;

/// The 64-byte plaintext data key from `kms:GenerateDataKey` / `kms:Decrypt`.
///
/// Overwritten with zeros on drop; `Debug` shows nothing of it.
#[derive(Clone)]
pub struct DataKey {
    bytes: [u8; DATA_KEY_LEN],
}

impl DataKey {
    /// Wraps exactly 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let bytes: [u8; DATA_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| ProtocolError::BadKeyLength(bytes.len()))?;
        Ok(Self { bytes })
    }

    /// Wraps a 64-byte array.
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> Self {
        Self { bytes }
    }

    /// `[0..32)`: agent → client traffic.
    fn agent_to_client(&self) -> &[u8] {
        self.bytes.get(..32).unwrap_or_default()
    }

    /// `[32..64)`: client → agent traffic.
    fn client_to_agent(&self) -> &[u8] {
        self.bytes.get(32..).unwrap_or_default()
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.bytes.fill(0);
        // Keep the zeroing from being optimised away as a dead store.
        std::hint::black_box(&mut self.bytes);
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// One side's encrypt and decrypt ciphers plus its nonce counter.
pub struct SessionCipher {
    encrypt: Aes256Gcm,
    decrypt: Aes256Gcm,
    next_nonce: [u8; NONCE_LEN],
}

impl std::fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCipher(<redacted>)")
    }
}

fn aes(half: &[u8]) -> Result<Aes256Gcm, ProtocolError> {
    // Halves of a `DataKey` are always 32 bytes; the error is unreachable in practice.
    Aes256Gcm::new_from_slice(half).map_err(|_| ProtocolError::BadKeyLength(half.len() * 2))
}

impl SessionCipher {
    /// Builds the ciphers for `role` from the data key; nonces count up from `nonce_seed`.
    pub fn new(
        key: &DataKey,
        role: Role,
        nonce_seed: [u8; NONCE_LEN],
    ) -> Result<Self, ProtocolError> {
        let (enc, dec) = match role {
            Role::Client => (key.client_to_agent(), key.agent_to_client()),
            Role::Agent => (key.agent_to_client(), key.client_to_agent()),
        };
        Ok(Self {
            encrypt: aes(enc)?,
            decrypt: aes(dec)?,
            next_nonce: nonce_seed,
        })
    }

    /// Encrypts with the next counter nonce: `nonce ‖ ct ‖ tag`.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let nonce = self.next_nonce;
        increment_le(&mut self.next_nonce);
        self.encrypt_with_nonce(nonce, plaintext)
    }

    /// Encrypts with an explicit nonce (test vectors; callers must never repeat a nonce).
    pub fn encrypt_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let body = out.get_mut(NONCE_LEN..).unwrap_or_default();
        let tag = self
            .encrypt
            .encrypt_in_place_detached(&GenericArray::from(nonce), b"", body)
            .map_err(|_| ProtocolError::EncryptFailed)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decrypts `nonce ‖ ct ‖ tag` from the peer; fails on a wrong key or any tampering.
    pub fn decrypt(&self, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        if payload.len() < OVERHEAD {
            return Err(ProtocolError::CiphertextTooShort(payload.len()));
        }
        let short = || ProtocolError::CiphertextTooShort(payload.len());
        let (nonce, rest) = payload.split_at_checked(NONCE_LEN).ok_or_else(short)?;
        let (ct, tag) = rest
            .split_at_checked(rest.len().saturating_sub(TAG_LEN))
            .ok_or_else(short)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| short())?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| short())?;
        let mut out = ct.to_vec();
        self.decrypt
            .decrypt_in_place_detached(
                &GenericArray::from(nonce),
                b"",
                &mut out,
                &GenericArray::from(tag),
            )
            .map_err(|_| ProtocolError::DecryptFailed)?;
        Ok(out)
    }
}

/// Adds one to a 96-bit little-endian counter (wraps around; 2^96 messages never happen).
fn increment_le(n: &mut [u8; NONCE_LEN]) {
    for b in n.iter_mut() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            break;
        }
    }
}

/// Agent, step 1 of §6.5: encrypts the random challenge for EncChallengeRequest.
pub fn make_challenge(
    agent: &mut SessionCipher,
    random: &[u8; CHALLENGE_LEN],
) -> Result<EncChallengePayload, ProtocolError> {
    Ok(EncChallengePayload {
        challenge: agent.encrypt(random)?,
    })
}

/// Client, step 2 of §6.5: decrypts the challenge and re-encrypts it with the other half.
pub fn answer_challenge(
    client: &mut SessionCipher,
    request: &EncChallengePayload,
) -> Result<EncChallengePayload, ProtocolError> {
    let plain = client.decrypt(&request.challenge)?;
    Ok(EncChallengePayload {
        challenge: client.encrypt(&plain)?,
    })
}

/// Agent, step 3 of §6.5: checks the client's answer against the original challenge.
pub fn verify_challenge(
    agent: &SessionCipher,
    expected: &[u8; CHALLENGE_LEN],
    response: &EncChallengePayload,
) -> Result<(), ProtocolError> {
    let plain = agent.decrypt(&response.challenge)?;
    if plain.as_slice() == expected.as_slice() {
        Ok(())
    } else {
        Err(ProtocolError::ChallengeMismatch)
    }
}
