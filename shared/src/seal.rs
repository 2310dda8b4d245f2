//! Secrets at rest: merchants' webhook and link secrets sealed with a data key (AES-256-GCM),
//! and the local key that wraps data keys where KMS is not used (`ferrypay dev`, tests).
//!
//! A sealed value is `fps1:` + base64(nonce (12 bytes) || ciphertext || tag (16 bytes)). The
//! associated data binds it to one merchant and one attribute, so a value copied to another
//! merchant's item or to another field does not open. `fps1` is the format's version: a new
//! format gets a new prefix, and values without a known prefix are not sealed (items written
//! before sealing existed hold the plain `whsec_...`/`lsk_...` text).
//!
//! Pure crypto, no I/O: where data keys come from (KMS, the table's keyring items) is the
//! store's business.

use std::fmt;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use sha2::{Digest, Sha256};

use crate::model::{random_bytes, MerchantId, Secret, SecretPurpose};

/// The prefix of a sealed value in the current format.
pub const SEALED_PREFIX: &str = "fps1:";

const TAG_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a data key must be 32 bytes")]
    KeyLength,
    #[error("the value is not sealed in a known format")]
    Format,
    /// Tampered with, moved to another merchant or attribute, or sealed under another key.
    #[error("the sealed value does not open with this key for this merchant and attribute")]
    Refused,
    #[error("the random source failed")]
    Random,
}

/// An AES-256 data key (one per [`SecretPurpose`]). `Debug` prints `[redacted]`.
pub struct DataKey(LessSafeKey);

impl DataKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<DataKey, SealError> {
        if bytes.len() != 32 {
            return Err(SealError::KeyLength);
        }
        UnboundKey::new(&AES_256_GCM, bytes)
            .map(|key| DataKey(LessSafeKey::new(key)))
            .map_err(|_| SealError::KeyLength)
    }

    /// A fresh random data key and its bytes (to wrap).
    pub fn generate() -> Result<(DataKey, Secret<[u8; 32]>), SealError> {
        let bytes: [u8; 32] = random_bytes().map_err(|_| SealError::Random)?;
        Ok((DataKey::from_bytes(&bytes)?, Secret::new(bytes)))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What a sealed value is bound to.
fn associated_data(merchant: &MerchantId, attribute: &str) -> Vec<u8> {
    format!("ferrypay-secret-v1\0{merchant}\0{attribute}").into_bytes()
}

/// Whether a stored value is sealed (in any format this code knows).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

/// Seals `plaintext` for one merchant's attribute, with a random nonce.
pub fn seal(
    key: &DataKey,
    merchant: &MerchantId,
    attribute: &str,
    plaintext: &str,
) -> Result<String, SealError> {
    let sealed = seal_bytes(
        key,
        &associated_data(merchant, attribute),
        plaintext.as_bytes(),
    )?;
    Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed)))
}

/// Opens a value [`seal`] made for this merchant's attribute.
pub fn open(
    key: &DataKey,
    merchant: &MerchantId,
    attribute: &str,
    sealed: &str,
) -> Result<Secret<String>, SealError> {
    let body = sealed
        .strip_prefix(SEALED_PREFIX)
        .ok_or(SealError::Format)?;
    let bytes = STANDARD.decode(body).map_err(|_| SealError::Format)?;
    let plain = open_bytes(key, &associated_data(merchant, attribute), bytes)?;
    String::from_utf8(plain)
        .map(Secret::new)
        .map_err(|_| SealError::Refused)
}

/// nonce || ciphertext || tag.
fn seal_bytes(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let nonce: [u8; NONCE_LEN] = random_bytes().map_err(|_| SealError::Random)?;
    let mut in_out = plaintext.to_vec();
    key.0
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut in_out,
        )
        .map_err(|_| SealError::Refused)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&in_out);
    Ok(out)
}

fn open_bytes(key: &DataKey, aad: &[u8], mut bytes: Vec<u8>) -> Result<Vec<u8>, SealError> {
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Format);
    }
    let mut in_out = bytes.split_off(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Format)?;
    let plain_len = key
        .0
        .open_in_place(nonce, Aad::from(aad), &mut in_out)
        .map_err(|_| SealError::Refused)?
        .len();
    in_out.truncate(plain_len);
    Ok(in_out)
}

/// A key that wraps data keys without KMS, with the same encryption context as KMS (the
/// purpose) as associated data. Only for `ferrypay dev --store dynamodb` and tests: its
/// [`LocalWrapKey::dev`] key is derived from a public string, so it protects nothing.
pub struct LocalWrapKey(DataKey);

impl LocalWrapKey {
    /// THE DEV/TEST KEY: public, derived from a fixed string. Never for a real table.
    pub fn dev() -> Result<LocalWrapKey, SealError> {
        let bytes = Sha256::digest(b"ferrypay local dev/test wrapping key: NOT A SECRET");
        DataKey::from_bytes(&bytes).map(LocalWrapKey)
    }

    pub fn wrap(&self, purpose: SecretPurpose, data_key: &[u8; 32]) -> Result<Vec<u8>, SealError> {
        seal_bytes(&self.0, &wrap_context(purpose), data_key)
    }

    pub fn unwrap(&self, purpose: SecretPurpose, wrapped: &[u8]) -> Result<DataKey, SealError> {
        let bytes = open_bytes(&self.0, &wrap_context(purpose), wrapped.to_vec())?;
        DataKey::from_bytes(&bytes)
    }
}

/// The encryption context KMS is given, `{"ferrypay:purpose": "<purpose>"}`, as bytes.
fn wrap_context(purpose: SecretPurpose) -> Vec<u8> {
    format!("ferrypay:purpose={}", purpose.as_str()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        DataKey::generate().unwrap().0
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_merchant_attribute_and_key() {
        let (k, other) = (key(), key());
        let (m, n) = (MerchantId::new("mch_a"), MerchantId::new("mch_b"));
        let sealed = seal(&k, &m, "webhook_secret", "whsec_abc").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("whsec"));
        assert_eq!(
            open(&k, &m, "webhook_secret", &sealed).unwrap().expose(),
            "whsec_abc"
        );
        assert_ne!(
            sealed,
            seal(&k, &m, "webhook_secret", "whsec_abc").unwrap(),
            "random nonce"
        );

        let refused =
            |r: Result<Secret<String>, SealError>| assert_eq!(r.err(), Some(SealError::Refused));
        refused(open(&k, &n, "webhook_secret", &sealed));
        refused(open(&k, &m, "previous_webhook_secret", &sealed));
        refused(open(&other, &m, "webhook_secret", &sealed));
        // One flipped bit anywhere (nonce, ciphertext, tag).
        let raw = STANDARD.decode(&sealed[SEALED_PREFIX.len()..]).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            let mut bad = raw.clone();
            bad[i] ^= 1;
            let tampered = format!("{SEALED_PREFIX}{}", STANDARD.encode(bad));
            refused(open(&k, &m, "webhook_secret", &tampered));
        }
        for junk in ["whsec_abc", "fps1:", "fps1:!!", "fps1:AAAA", "fps9:AAAA"] {
            assert_eq!(
                open(&k, &m, "webhook_secret", junk).err(),
                Some(SealError::Format),
                "{junk}"
            );
        }
    }

    #[test]
    fn local_wrapping_is_bound_to_the_purpose() {
        let wrap = LocalWrapKey::dev().unwrap();
        let (_, bytes) = DataKey::generate().unwrap();
        let wrapped = wrap.wrap(SecretPurpose::Webhook, bytes.expose()).unwrap();
        let unwrapped = wrap.unwrap(SecretPurpose::Webhook, &wrapped).unwrap();
        let m = MerchantId::new("mch_a");
        let sealed = seal(&unwrapped, &m, "a", "x").unwrap();
        assert_eq!(
            open(
                &DataKey::from_bytes(bytes.expose()).unwrap(),
                &m,
                "a",
                &sealed
            )
            .unwrap()
            .expose(),
            "x"
        );
        assert!(wrap.unwrap(SecretPurpose::Link, &wrapped).is_err());
        assert_eq!(format!("{:?}", unwrapped), "[redacted]");
    }
}
