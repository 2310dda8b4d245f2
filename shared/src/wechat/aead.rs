//! AEAD_AES_256_GCM (RFC 5116) with the APIv3 key: notification resources and the platform
//! certificates of `/v3/certificates`.
//!
//! Key: the 32 raw bytes of the APIv3 key. Nonce: the 12 raw bytes of `resource.nonce` (not
//! base64). Associated data: the bytes of `resource.associated_data`. `ciphertext` is the
//! base64 of `ciphertext || 16-byte tag`.

use std::fmt;

use aws_lc_rs::aead::{Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::error::AeadError;

/// The only algorithm WeChat Pay uses for `resource` and `encrypt_certificate`.
pub const AEAD_AES_256_GCM: &str = "AEAD_AES_256_GCM";

const TAG_LEN: usize = 16;

/// The merchant's APIv3 key: exactly 32 bytes, used raw as the AES-256 key.
/// `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiV3Key([u8; 32]);

impl ApiV3Key {
    /// Accept exactly 32 bytes. A 16-byte key (which Go and Python silently treat as AES-128) is
    /// rejected: WeChat Pay's APIv3 key is 32 characters.
    pub fn new(key: &[u8]) -> Result<Self, AeadError> {
        <[u8; 32]>::try_from(key)
            .map(Self)
            .map_err(|_| AeadError::InvalidKeyLength { len: key.len() })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The key as configured in the merchant platform: 32 ASCII characters, used as bytes.
impl std::str::FromStr for ApiV3Key {
    type Err = AeadError;

    fn from_str(key: &str) -> Result<Self, AeadError> {
        Self::new(key.as_bytes())
    }
}

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An encrypted `resource` of a notification, or the `encrypt_certificate` of a
/// `/v3/certificates` entry (which has no `original_type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedResource {
    pub algorithm: String,
    /// base64 of `ciphertext || tag`.
    pub ciphertext: String,
    /// May be absent or empty.
    #[serde(default)]
    pub associated_data: String,
    pub nonce: String,
    /// `transaction`, `refund`, ... (absent in `encrypt_certificate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_type: Option<String>,
}

impl EncryptedResource {
    /// Check the algorithm and decrypt with the APIv3 key.
    pub fn decrypt(&self, key: &ApiV3Key) -> Result<Vec<u8>, AeadError> {
        if self.algorithm != AEAD_AES_256_GCM {
            return Err(AeadError::UnsupportedAlgorithm(self.algorithm.clone()));
        }
        decrypt(key, &self.nonce, &self.associated_data, &self.ciphertext)
    }

    /// [`EncryptedResource::decrypt`], then require UTF-8 (the plaintext is JSON or PEM).
    pub fn decrypt_to_string(&self, key: &ApiV3Key) -> Result<String, AeadError> {
        String::from_utf8(self.decrypt(key)?).map_err(|_| AeadError::InvalidUtf8)
    }
}

/// Encrypt `plaintext` into a `resource` as WeChat Pay sends it (for the WeChat Pay mock).
/// `nonce` must be 12 bytes; use a fresh one per message (e.g.
/// [`super::signer::random_alphanumeric`]`(12)`).
pub fn encrypt_resource(
    key: &ApiV3Key,
    nonce: &str,
    associated_data: &str,
    original_type: Option<&str>,
    plaintext: &[u8],
) -> Result<EncryptedResource, AeadError> {
    Ok(EncryptedResource {
        algorithm: AEAD_AES_256_GCM.to_owned(),
        ciphertext: encrypt(key, nonce, associated_data, plaintext)?,
        associated_data: associated_data.to_owned(),
        nonce: nonce.to_owned(),
        original_type: original_type.map(str::to_owned),
    })
}

/// AES-256-GCM decryption of base64 `ciphertext || tag`.
pub fn decrypt(
    key: &ApiV3Key,
    nonce: &str,
    associated_data: &str,
    ciphertext_base64: &str,
) -> Result<Vec<u8>, AeadError> {
    open(
        &AES_256_GCM,
        key.as_bytes(),
        nonce,
        associated_data,
        ciphertext_base64,
    )
}

/// AES-256-GCM encryption; returns base64 of `ciphertext || tag`.
pub fn encrypt(
    key: &ApiV3Key,
    nonce: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> Result<String, AeadError> {
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key.as_bytes()).map_err(|_| AeadError::EncryptionFailed)?,
    );
    let mut in_out = plaintext.to_vec();
    key.seal_in_place_append_tag(
        nonce_from(nonce)?,
        Aad::from(associated_data.as_bytes()),
        &mut in_out,
    )
    .map_err(|_| AeadError::EncryptionFailed)?;
    Ok(STANDARD.encode(in_out))
}

/// The decryption path shared by AES-256 (production) and, in tests only, AES-128 to check the
/// official 16-byte-key vectors.
fn open(
    algorithm: &'static Algorithm,
    key: &[u8],
    nonce: &str,
    associated_data: &str,
    ciphertext_base64: &str,
) -> Result<Vec<u8>, AeadError> {
    let nonce = nonce_from(nonce)?;
    let mut in_out = STANDARD
        .decode(ciphertext_base64)
        .map_err(|_| AeadError::MalformedCiphertext)?;
    if in_out.len() < TAG_LEN {
        return Err(AeadError::CiphertextTooShort);
    }
    let key = LessSafeKey::new(
        UnboundKey::new(algorithm, key)
            .map_err(|_| AeadError::InvalidKeyLength { len: key.len() })?,
    );
    let plaintext_len = key
        .open_in_place(nonce, Aad::from(associated_data.as_bytes()), &mut in_out)
        .map_err(|_| AeadError::DecryptionFailed)?
        .len();
    in_out.truncate(plaintext_len);
    Ok(in_out)
}

fn nonce_from(nonce: &str) -> Result<Nonce, AeadError> {
    let bytes = <[u8; NONCE_LEN]>::try_from(nonce.as_bytes())
        .map_err(|_| AeadError::InvalidNonceLength { len: nonce.len() })?;
    Ok(Nonce::assume_unique_for_key(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAVA_KEY: &str = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";

    fn key() -> ApiV3Key {
        JAVA_KEY.parse().unwrap()
    }

    #[test]
    fn java_unit_vector_both_ways() {
        assert_eq!(
            encrypt(&key(), "uluk4a9R25RW", "associatedData", b"message").unwrap(),
            "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
        );
        assert_eq!(
            decrypt(
                &key(),
                "uluk4a9R25RW",
                "associatedData",
                "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
            )
            .unwrap(),
            b"message"
        );
    }

    #[test]
    fn key_length_is_enforced() {
        assert_eq!(
            "testMchAPIv3Key0".parse::<ApiV3Key>(),
            Err(AeadError::InvalidKeyLength { len: 16 })
        );
        assert_eq!(
            ApiV3Key::new(&[0u8; 33]),
            Err(AeadError::InvalidKeyLength { len: 33 })
        );
        assert_eq!(
            ApiV3Key::new(&[]),
            Err(AeadError::InvalidKeyLength { len: 0 })
        );
        assert_eq!(format!("{:?}", key()), "[redacted]");
    }

    #[test]
    fn resource_round_trip_and_rejections() {
        let resource = encrypt_resource(
            &key(),
            "fixedNonce12",
            "transaction",
            Some("transaction"),
            "{\"支付\":1}".as_bytes(),
        )
        .unwrap();
        assert_eq!(resource.decrypt_to_string(&key()).unwrap(), "{\"支付\":1}");

        let mut wrong_algorithm = resource.clone();
        wrong_algorithm.algorithm = "AEAD_AES_128_GCM".to_owned();
        assert_eq!(
            wrong_algorithm.decrypt(&key()),
            Err(AeadError::UnsupportedAlgorithm(
                "AEAD_AES_128_GCM".to_owned()
            ))
        );

        let mut short_nonce = resource.clone();
        short_nonce.nonce = "short".to_owned();
        assert_eq!(
            short_nonce.decrypt(&key()),
            Err(AeadError::InvalidNonceLength { len: 5 })
        );

        let mut bad_base64 = resource.clone();
        bad_base64.ciphertext.push('!');
        assert_eq!(
            bad_base64.decrypt(&key()),
            Err(AeadError::MalformedCiphertext)
        );

        let mut too_short = resource.clone();
        too_short.ciphertext = STANDARD.encode([0u8; 15]);
        assert_eq!(
            too_short.decrypt(&key()),
            Err(AeadError::CiphertextTooShort)
        );

        let mut tampered_aad = resource.clone();
        tampered_aad.associated_data = "transactioN".to_owned();
        assert_eq!(
            tampered_aad.decrypt(&key()),
            Err(AeadError::DecryptionFailed)
        );

        let mut tampered_nonce = resource.clone();
        tampered_nonce.nonce = "fixedNonce13".to_owned();
        assert_eq!(
            tampered_nonce.decrypt(&key()),
            Err(AeadError::DecryptionFailed)
        );

        let other_key = ApiV3Key::new(&[b'x'; 32]).unwrap();
        assert_eq!(
            resource.decrypt(&other_key),
            Err(AeadError::DecryptionFailed)
        );
    }

    #[test]
    fn non_utf8_plaintext_is_reported() {
        let resource = encrypt_resource(&key(), "fixedNonce12", "", None, &[0xFF, 0xFE]).unwrap();
        assert_eq!(resource.decrypt(&key()).unwrap(), vec![0xFF, 0xFE]);
        assert_eq!(
            resource.decrypt_to_string(&key()),
            Err(AeadError::InvalidUtf8)
        );
    }

    /// The official Go vectors use 16-byte keys (AES-128-GCM). Production code rejects them; the
    /// shared decryption path still reproduces them when handed AES-128, which pins the base64,
    /// nonce and associated-data handling against independent code.
    #[test]
    fn go_aes128_vectors_through_the_shared_path() {
        use aws_lc_rs::aead::AES_128_GCM;
        // wechatpay-go utils/aes_test.go
        assert_eq!(
            open(
                &AES_128_GCM,
                b"testAPIv3Key0000",
                "wCq51qZv4Yfg",
                "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8",
                "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC"
            )
            .unwrap(),
            b"Hello World"
        );
        // go_notify_body.json (key testMchAPIv3Key0)
        let body: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/wechatpay/go_notify_body.json"
        ))
        .unwrap();
        let resource: EncryptedResource = serde_json::from_value(body["resource"].clone()).unwrap();
        let plaintext = open(
            &AES_128_GCM,
            b"testMchAPIv3Key0",
            &resource.nonce,
            &resource.associated_data,
            &resource.ciphertext,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(plaintext).unwrap(),
            r#"{"mchid":"1234567890","appid":"054aa7d7a2a54ab5898df65bd96f001c","create_time":"2020-06-30T12:12:00+08:00","out_contract_code":"21640bdbd08e473e828f3206a2741c6e"}"#
        );
    }
}
