//! KMS session encryption (§6): key halves, nonces, challenges.

use ssmtui_protocol::ProtocolError;
use ssmtui_protocol::crypto::{self, DataKey, SessionCipher};
use ssmtui_protocol::types::Role;

use super::common::*;

#[test]
fn data_key_is_redacted_and_checked() {
    let key = tv7_key();
    assert_eq!(format!("{key:?}"), "DataKey(<redacted>)");
    assert_eq!(
        DataKey::from_slice(&[0; 63]).unwrap_err(),
        ProtocolError::BadKeyLength(63)
    );
    let c = SessionCipher::new(&key, Role::Client, [0; 12]).unwrap();
    assert!(!format!("{c:?}").contains('0'));
}

#[test]
fn counter_nonces_are_unique_and_roundtrip() {
    let key = tv7_key();
    let mut client = SessionCipher::new(&key, Role::Client, [0xff; 12]).unwrap();
    let agent = SessionCipher::new(&key, Role::Agent, [0; 12]).unwrap();
    let mut nonces = std::collections::HashSet::new();
    for i in 0..1000u32 {
        let ct = client.encrypt(&i.to_be_bytes()).unwrap();
        assert_eq!(ct.len(), 4 + crypto::OVERHEAD);
        assert!(nonces.insert(ct[..12].to_vec()), "nonce reused");
        assert_eq!(agent.decrypt(&ct).unwrap(), i.to_be_bytes());
    }
    // The seed 0xff.. wrapped to 0 then counted up.
    assert!(nonces.contains(&vec![0u8; 12]));
    assert_eq!(
        agent.decrypt(&[0; 27]),
        Err(ProtocolError::CiphertextTooShort(27))
    );
}

#[test]
fn challenge_exchange_both_roles() {
    let key = tv7_key();
    let mut agent = SessionCipher::new(&key, Role::Agent, [1; 12]).unwrap();
    let mut client = SessionCipher::new(&key, Role::Client, [2; 12]).unwrap();
    let random = [0x5a; 64];
    let req = crypto::make_challenge(&mut agent, &random).unwrap();
    assert_eq!(req.challenge.len(), 92, "base64 decodes to 92 bytes");
    let resp = crypto::answer_challenge(&mut client, &req).unwrap();
    crypto::verify_challenge(&agent, &random, &resp).unwrap();
    assert_eq!(
        crypto::verify_challenge(&agent, &[0; 64], &resp),
        Err(ProtocolError::ChallengeMismatch)
    );
    // A client with another key cannot answer.
    let other = DataKey::from_bytes([9; 64]);
    let mut wrong = SessionCipher::new(&other, Role::Client, [0; 12]).unwrap();
    assert_eq!(
        crypto::answer_challenge(&mut wrong, &req),
        Err(ProtocolError::DecryptFailed)
    );
}
