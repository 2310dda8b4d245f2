//! Error types of the WeChat Pay APIv3 crypto layer. None of them carries secret material.

use thiserror::Error;

/// A key or certificate could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The text is not a well-formed PEM document.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// The PEM block has another label than the one expected here.
    #[error("expected a PEM block labelled {expected}, found {found:?}")]
    UnexpectedPemLabel {
        expected: &'static str,
        found: String,
    },
    /// aws-lc rejected the private key (not RSA, bad encoding, unsupported size...).
    #[error("private key rejected: {0}")]
    PrivateKeyRejected(String),
    /// aws-lc rejected the public key.
    #[error("public key rejected: {0}")]
    PublicKeyRejected(String),
    /// The public key is not an `rsaEncryption` key.
    #[error("not an RSA public key (algorithm {0})")]
    NotRsa(String),
    /// The certificate (or bare public key) is not valid DER.
    #[error("invalid X.509 data: {0}")]
    X509(String),
}

/// Signing failed (the private key operation or the random number generator).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    #[error("RSA signing failed")]
    Signing,
    #[error("the operating system's random number generator failed")]
    Random,
}

/// A WeChat Pay response or notification failed verification.
///
/// Every variant means "do not trust this message". [`VerifyError::UnknownSerial`] is the one
/// case where refreshing the platform certificates (`GET /v3/certificates`) and retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// A required `Wechatpay-*` header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A `Wechatpay-*` header is present but not visible ASCII text.
    #[error("header {0} is not valid text")]
    InvalidHeader(&'static str),
    /// `Wechatpay-Signature-Type` names an algorithm other than `WECHATPAY2-SHA256-RSA2048`.
    #[error("unsupported signature type {0:?}")]
    UnsupportedSignatureType(String),
    /// A `WECHATPAY/SIGNTEST/` signature: WeChat's deliberate probe, which must fail.
    #[error("signature probe (WECHATPAY/SIGNTEST/): deliberately not verified")]
    SignatureProbe,
    /// `Wechatpay-Timestamp` is not a decimal number of Unix seconds.
    #[error("invalid timestamp {0:?}")]
    InvalidTimestamp(String),
    /// The timestamp is more than 300 s away from `now`.
    #[error("timestamp {timestamp} is more than 300 s away from now ({now})")]
    TimestampOutOfWindow { timestamp: i64, now: i64 },
    /// No platform certificate or WeChat Pay public key is known under this serial / id.
    #[error("unknown Wechatpay-Serial {0:?}")]
    UnknownSerial(String),
    /// The signature is not valid standard base64.
    #[error("signature is not valid base64")]
    MalformedSignature,
    /// The RSA signature does not match the message.
    #[error("signature does not match")]
    BadSignature,
}

impl VerifyError {
    /// True when the caller should refresh its platform certificates and try again.
    pub fn is_unknown_serial(&self) -> bool {
        matches!(self, VerifyError::UnknownSerial(_))
    }
}

/// AES-256-GCM encryption or decryption of a `resource` failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AeadError {
    /// The APIv3 key must be exactly 32 bytes (AES-256).
    #[error("the APIv3 key must be 32 bytes, got {len}")]
    InvalidKeyLength { len: usize },
    /// The resource's `algorithm` is not `AEAD_AES_256_GCM`.
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The nonce must be 12 bytes.
    #[error("the nonce must be 12 bytes, got {len}")]
    InvalidNonceLength { len: usize },
    /// The ciphertext is not valid standard base64.
    #[error("ciphertext is not valid base64")]
    MalformedCiphertext,
    /// The ciphertext is shorter than the 16-byte tag.
    #[error("ciphertext is shorter than the authentication tag")]
    CiphertextTooShort,
    /// Authentication failed: wrong APIv3 key, or tampered ciphertext, tag, nonce or associated data.
    #[error("decryption failed (wrong APIv3 key or tampered data)")]
    DecryptionFailed,
    /// Encryption failed inside aws-lc.
    #[error("encryption failed")]
    EncryptionFailed,
    /// The plaintext is not UTF-8 (when text was expected).
    #[error("plaintext is not UTF-8")]
    InvalidUtf8,
}

/// A notification could not be opened (verified, parsed and decrypted).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NotificationError {
    #[error("notification signature: {0}")]
    Verify(#[from] VerifyError),
    #[error("notification body is not a valid notification: {0}")]
    Json(String),
    #[error("notification resource: {0}")]
    Decrypt(#[from] AeadError),
}

/// A `/v3/certificates` response could not be turned into certificates.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertificatesError {
    #[error("certificates response is not valid JSON: {0}")]
    Json(String),
    /// The APIv3 key is unusable (not 32 bytes).
    #[error("APIv3 key: {0}")]
    InvalidKey(AeadError),
    #[error("certificate {serial_no}: {source}")]
    Decrypt {
        serial_no: String,
        #[source]
        source: AeadError,
    },
    #[error("certificate {serial_no}: {source}")]
    Certificate {
        serial_no: String,
        #[source]
        source: KeyError,
    },
    /// The decrypted certificate's serial differs from the `serial_no` it was listed under.
    #[error("certificate listed as {declared} has serial {actual}")]
    SerialMismatch { declared: String, actual: String },
}
