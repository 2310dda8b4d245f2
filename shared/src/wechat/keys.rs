//! Key material: the merchant's (or, in the mock, the platform's) RSA private key, RSA verifying
//! keys from an X.509 certificate or a bare SubjectPublicKeyInfo, and certificate serials.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    KeyPair, ParsedPublicKey, RsaKeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use x509_cert::der::{DecodePem, SecretDocument};
use x509_cert::spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned};

use super::error::{KeyError, SignError};

/// OID 1.2.840.113549.1.1.1 (`rsaEncryption`).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// An RSA private key that signs with RSASSA-PKCS1-v1_5 / SHA-256 (aws-lc).
///
/// The merchant API key (`apiclient_key.pem`) in production; the platform key in the WeChat Pay
/// mock. `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct PrivateKey {
    key_pair: RsaKeyPair,
}

impl PrivateKey {
    /// Load a PEM private key: PKCS#8 (`-----BEGIN PRIVATE KEY-----`, what WeChat Pay issues) or
    /// the older PKCS#1 (`-----BEGIN RSA PRIVATE KEY-----`). Surrounding whitespace is ignored.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, document) =
            SecretDocument::from_pem(pem.trim()).map_err(|e| match e.kind() {
                x509_cert::der::ErrorKind::Pem(e) => KeyError::Pem(e.to_string()),
                _ => KeyError::PrivateKeyRejected(e.to_string()),
            })?;
        let key_pair = match label {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(document.as_bytes()),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(document.as_bytes()),
            other => {
                return Err(KeyError::UnexpectedPemLabel {
                    expected: "PRIVATE KEY",
                    found: other.to_owned(),
                })
            }
        }
        .map_err(|e| KeyError::PrivateKeyRejected(e.to_string()))?;
        Ok(Self { key_pair })
    }

    /// Load a PKCS#8 DER private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        RsaKeyPair::from_pkcs8(der)
            .map(|key_pair| Self { key_pair })
            .map_err(|e| KeyError::PrivateKeyRejected(e.to_string()))
    }

    /// Sign `message` (RSASSA-PKCS1-v1_5, SHA-256) and return the standard base64 signature.
    pub fn sign_base64(&self, message: &[u8]) -> Result<String, SignError> {
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| SignError::Signing)?;
        Ok(STANDARD.encode(signature))
    }

    /// The matching public key, e.g. for a mock that must verify what this key signed.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::from_rsa_der(self.key_pair.public_key().as_ref())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An RSA public key that verifies RSASSA-PKCS1-v1_5 / SHA-256 signatures (2048..=8192 bits).
#[derive(Clone)]
pub struct VerifyingKey {
    key: ParsedPublicKey,
}

impl VerifyingKey {
    /// A bare SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`): the "WeChat Pay public
    /// key" (`PUB_KEY_ID_...`) mode.
    pub fn from_spki_pem(pem: &str) -> Result<Self, KeyError> {
        let spki = SubjectPublicKeyInfoOwned::from_pem(pem.trim()).map_err(pem_or_der_error)?;
        Self::from_spki(&spki)
    }

    /// A SubjectPublicKeyInfo in DER.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        use x509_cert::der::Decode as _;
        let spki =
            SubjectPublicKeyInfoOwned::from_der(der).map_err(|e| KeyError::X509(e.to_string()))?;
        Self::from_spki(&spki)
    }

    fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<Self, KeyError> {
        if spki.algorithm.oid != RSA_ENCRYPTION {
            return Err(KeyError::NotRsa(spki.algorithm.oid.to_string()));
        }
        let rsa_public_key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| KeyError::X509("public key bit string has unused bits".to_owned()))?;
        Self::from_rsa_der(rsa_public_key)
    }

    /// A PKCS#1 `RSAPublicKey` in DER.
    pub fn from_rsa_der(der: &[u8]) -> Result<Self, KeyError> {
        ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .map(|key| Self { key })
            .map_err(|e| KeyError::PublicKeyRejected(e.to_string()))
    }

    /// True if `signature` (raw bytes, not base64) is a valid signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyingKey(RSA)")
    }
}

/// An X.509 certificate reduced to what WeChat Pay needs: its serial and RSA public key.
///
/// Validity is exposed, not enforced: test certificates expire, and WeChat Pay itself stops
/// signing with a platform certificate before it expires.
#[derive(Clone, Debug)]
pub struct Certificate {
    serial_no: String,
    verifying_key: VerifyingKey,
    not_before: i64,
    not_after: i64,
}

impl Certificate {
    /// Parse a PEM certificate (`-----BEGIN CERTIFICATE-----`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let certificate = x509_cert::Certificate::from_pem(pem.trim()).map_err(pem_or_der_error)?;
        Self::from_x509(&certificate)
    }

    /// Parse a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        use x509_cert::der::Decode as _;
        let certificate =
            x509_cert::Certificate::from_der(der).map_err(|e| KeyError::X509(e.to_string()))?;
        Self::from_x509(&certificate)
    }

    fn from_x509(certificate: &x509_cert::Certificate) -> Result<Self, KeyError> {
        let tbs = certificate.tbs_certificate();
        let validity = tbs.validity();
        Ok(Self {
            serial_no: serial_hex(tbs.serial_number().as_bytes()),
            verifying_key: VerifyingKey::from_spki(tbs.subject_public_key_info())?,
            not_before: unix_seconds(validity.not_before.to_unix_duration()),
            not_after: unix_seconds(validity.not_after.to_unix_duration()),
        })
    }

    /// The serial as upper-case hex of its big-endian bytes, e.g. `D7CE59D1F522D701`
    /// (what `openssl x509 -noout -serial` prints and what `Wechatpay-Serial` carries).
    pub fn serial_no(&self) -> &str {
        &self.serial_no
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying_key
    }

    /// `notBefore`, Unix seconds.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// `notAfter`, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// True if `now` (Unix seconds) lies within the validity period.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Upper-case hex of a big-endian unsigned integer, leading zero bytes dropped (Go's
/// `fmt.Sprintf("%X", serial.Bytes())`).
fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].iter().map(|b| format!("{b:02X}")).collect()
}

fn unix_seconds(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn pem_or_der_error(error: x509_cert::der::Error) -> KeyError {
    match error.kind() {
        x509_cert::der::ErrorKind::Pem(e) => KeyError::Pem(e.to_string()),
        _ => KeyError::X509(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GO_KEY: &str = include_str!("../../tests/fixtures/wechatpay/go_testkey_pkcs8.pem");
    const GO_CERT: &str = include_str!("../../tests/fixtures/wechatpay/go_wechatpay_cert.pem");
    const JAVA_PUBLIC_KEY: &str =
        include_str!("../../tests/fixtures/wechatpay/java_wechat_pay_public_key.pem");

    #[test]
    fn private_key_debug_is_redacted() {
        let key = PrivateKey::from_pem(GO_KEY).unwrap();
        assert_eq!(format!("{key:?}"), "[redacted]");
    }

    #[test]
    fn private_key_accepts_crlf_and_surrounding_whitespace() {
        let crlf = format!("\n  {}\n\n", GO_KEY.trim().replace('\n', "\r\n"));
        let a = PrivateKey::from_pem(&crlf)
            .unwrap()
            .sign_base64(b"x")
            .unwrap();
        let b = PrivateKey::from_pem(GO_KEY)
            .unwrap()
            .sign_base64(b"x")
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn private_key_rejects_wrong_label_and_garbage() {
        assert!(matches!(
            PrivateKey::from_pem(GO_CERT),
            Err(KeyError::UnexpectedPemLabel { found, .. }) if found == "CERTIFICATE"
        ));
        assert!(matches!(
            PrivateKey::from_pem("not a pem"),
            Err(KeyError::Pem(_))
        ));
        for body in ["AAAA", "MAMCAQE="] {
            let bad = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
            assert!(matches!(
                PrivateKey::from_pem(&bad),
                Err(KeyError::PrivateKeyRejected(_))
            ));
        }
        assert!(matches!(
            PrivateKey::from_pkcs8_der(b"\x30\x03\x02\x01\x01"),
            Err(KeyError::PrivateKeyRejected(_))
        ));
    }

    #[test]
    fn private_key_pkcs8_der_round_trip() {
        let (_, document) = SecretDocument::from_pem(GO_KEY.trim()).unwrap();
        let from_der = PrivateKey::from_pkcs8_der(document.as_bytes()).unwrap();
        assert_eq!(
            from_der.sign_base64(b"source").unwrap(),
            PrivateKey::from_pem(GO_KEY)
                .unwrap()
                .sign_base64(b"source")
                .unwrap()
        );
    }

    #[test]
    fn certificate_serial_and_validity() {
        let certificate = Certificate::from_pem(GO_CERT).unwrap();
        assert_eq!(certificate.serial_no(), "D7CE59D1F522D701");
        // 2021-04-27T08:55:23Z .. 2031-04-25T08:55:23Z
        assert_eq!(certificate.not_before(), 1_619_513_723);
        assert_eq!(certificate.not_after(), 1_934_873_723);
        assert!(certificate.is_valid_at(1_704_081_606));
        assert!(!certificate.is_valid_at(1_600_000_000));
    }

    #[test]
    fn certificate_and_spki_rejections() {
        assert!(matches!(
            Certificate::from_pem(JAVA_PUBLIC_KEY),
            Err(KeyError::Pem(_))
        ));
        assert!(VerifyingKey::from_spki_pem(GO_CERT).is_err());
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            Certificate::from_pem(garbage),
            Err(KeyError::X509(_))
        ));
        assert!(Certificate::from_der(&[0x30, 0x03, 0x02, 0x01, 0x01]).is_err());
    }

    #[test]
    fn serial_hex_strips_leading_zero_bytes() {
        assert_eq!(serial_hex(&[0x00, 0x0A, 0xBC]), "0ABC");
        assert_eq!(serial_hex(&[0xD7, 0xCE]), "D7CE");
    }

    #[test]
    fn verifying_key_from_private_key_verifies() {
        let key = PrivateKey::from_pem(GO_KEY).unwrap();
        let signature = STANDARD.decode(key.sign_base64(b"abc").unwrap()).unwrap();
        let verifying_key = key.verifying_key().unwrap();
        assert!(verifying_key.verify(b"abc", &signature));
        assert!(!verifying_key.verify(b"abd", &signature));
        assert_eq!(format!("{verifying_key:?}"), "VerifyingKey(RSA)");
    }
}
