//! Verification of WeChat Pay's signed responses and notifications.
//!
//! Message: `TIMESTAMP\nNONCE\nBODY\n` over the raw body bytes, RSASSA-PKCS1-v1_5 / SHA-256
//! with the platform certificate or WeChat Pay public key named by `Wechatpay-Serial`.
//! Verify before you parse: call [`KeyStore::verify`] on the raw bytes, then parse the JSON.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::error::VerifyError;
use super::keys::{Certificate, VerifyingKey};
use super::signer::AUTH_SCHEMA;

pub const HEADER_TIMESTAMP: &str = "Wechatpay-Timestamp";
pub const HEADER_NONCE: &str = "Wechatpay-Nonce";
pub const HEADER_SIGNATURE: &str = "Wechatpay-Signature";
pub const HEADER_SERIAL: &str = "Wechatpay-Serial";
pub const HEADER_SIGNATURE_TYPE: &str = "Wechatpay-Signature-Type";

/// Maximum distance, in seconds, between a message's timestamp and `now` (inclusive).
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Prefix of WeChat Pay's deliberately wrong "signature probe" signatures.
pub const SIGNATURE_PROBE_PREFIX: &str = "WECHATPAY/SIGNTEST/";

/// The signed message of a response or notification: `TIMESTAMP\nNONCE\nBODY\n`.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(nonce.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// The signature headers of a response or notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WechatpayHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub serial: String,
    /// `Wechatpay-Signature-Type`, optional (default `WECHATPAY2-SHA256-RSA2048`).
    pub signature_type: Option<String>,
}

impl WechatpayHeaders {
    /// Read the headers through a getter. The getter is asked for the lower-case name first
    /// (`wechatpay-timestamp`, as `http` and API Gateway store them), then the canonical one
    /// (`Wechatpay-Timestamp`); for a truly case-insensitive lookup over arbitrary spellings
    /// use [`WechatpayHeaders::from_pairs`].
    pub fn from_fn<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, VerifyError> {
        let lookup = |name: &'static str| -> Option<&'a str> {
            get(&name.to_ascii_lowercase()).or_else(|| get(name))
        };
        Self::build(|name| Ok(lookup(name)))
    }

    /// Read the headers from `(name, value)` pairs, names compared case-insensitively.
    pub fn from_pairs<'a, I>(pairs: I) -> Result<Self, VerifyError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
    {
        Self::build(|name| {
            Ok(pairs
                .clone()
                .into_iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v))
        })
    }

    /// Read the headers from an `http::HeaderMap` (whose names are case-insensitive).
    pub fn from_header_map(headers: &http::HeaderMap) -> Result<Self, VerifyError> {
        Self::build(|name| {
            headers
                .get(name)
                .map(|v| v.to_str().map_err(|_| VerifyError::InvalidHeader(name)))
                .transpose()
        })
    }

    fn build<'a>(
        get: impl Fn(&'static str) -> Result<Option<&'a str>, VerifyError>,
    ) -> Result<Self, VerifyError> {
        let required = |name: &'static str| -> Result<String, VerifyError> {
            match get(name)? {
                Some(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
                _ => Err(VerifyError::MissingHeader(name)),
            }
        };
        Ok(Self {
            timestamp: required(HEADER_TIMESTAMP)?,
            nonce: required(HEADER_NONCE)?,
            signature: required(HEADER_SIGNATURE)?,
            serial: required(HEADER_SERIAL)?,
            signature_type: get(HEADER_SIGNATURE_TYPE)?.map(|v| v.trim().to_owned()),
        })
    }
}

/// What a [`KeyStore`] entry was loaded from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A platform certificate (from `/v3/certificates` or configuration).
    Certificate(Certificate),
    /// A WeChat Pay public key (`PUB_KEY_ID_...`).
    PublicKey(VerifyingKey),
}

impl KeySource {
    pub fn verifying_key(&self) -> &VerifyingKey {
        match self {
            KeySource::Certificate(certificate) => certificate.verifying_key(),
            KeySource::PublicKey(key) => key,
        }
    }
}

/// The keys WeChat Pay may sign with, by `Wechatpay-Serial`: platform certificates by their
/// serial, and/or the WeChat Pay public key by its `PUB_KEY_ID_...` (both during a migration).
/// Serials are compared case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    keys: HashMap<String, KeySource>,
    public_key_id: Option<String>,
}

impl KeyStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) a platform certificate under its own serial.
    pub fn add_certificate(&mut self, certificate: Certificate) {
        self.keys.insert(
            certificate.serial_no().to_ascii_uppercase(),
            KeySource::Certificate(certificate),
        );
    }

    /// Add (or replace) the WeChat Pay public key under its id (`PUB_KEY_ID_...`).
    pub fn add_public_key(&mut self, public_key_id: impl Into<String>, key: VerifyingKey) {
        let id = public_key_id.into();
        self.keys
            .insert(id.to_ascii_uppercase(), KeySource::PublicKey(key));
        self.public_key_id = Some(id);
    }

    /// Builder form of [`KeyStore::add_certificate`].
    pub fn with_certificate(mut self, certificate: Certificate) -> Self {
        self.add_certificate(certificate);
        self
    }

    /// Builder form of [`KeyStore::add_public_key`].
    pub fn with_public_key(mut self, public_key_id: impl Into<String>, key: VerifyingKey) -> Self {
        self.add_public_key(public_key_id, key);
        self
    }

    /// The key registered under `serial`, if any.
    pub fn get(&self, serial: &str) -> Option<&KeySource> {
        self.keys.get(&serial.to_ascii_uppercase())
    }

    pub fn contains(&self, serial: &str) -> bool {
        self.get(serial).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The serials and key ids held, in no particular order.
    pub fn serials(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The value to send in our requests' `Wechatpay-Serial` header: the public key id when one
    /// is configured, otherwise the serial of the certificate that expires last.
    pub fn preferred_serial(&self) -> Option<&str> {
        if let Some(id) = &self.public_key_id {
            return Some(id);
        }
        self.keys
            .values()
            .filter_map(|source| match source {
                KeySource::Certificate(certificate) => Some(certificate),
                KeySource::PublicKey(_) => None,
            })
            .max_by_key(|certificate| certificate.not_after())
            .map(Certificate::serial_no)
    }

    /// Verify a response or notification over its raw body, with `now` in Unix seconds.
    ///
    /// Checks, in order: signature type, signature probe, timestamp format and window (+-300 s,
    /// inclusive), serial known, base64, RSA signature.
    pub fn verify(
        &self,
        headers: &WechatpayHeaders,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        if let Some(kind) = &headers.signature_type {
            if kind != AUTH_SCHEMA {
                return Err(VerifyError::UnsupportedSignatureType(kind.clone()));
            }
        }
        if headers.signature.starts_with(SIGNATURE_PROBE_PREFIX) {
            return Err(VerifyError::SignatureProbe);
        }
        match check_timestamp(&headers.timestamp, now) {
            Timestamp::Valid(_) => {}
            Timestamp::OutOfWindow(timestamp) => {
                return Err(VerifyError::TimestampOutOfWindow { timestamp, now })
            }
            Timestamp::Invalid => {
                return Err(VerifyError::InvalidTimestamp(headers.timestamp.clone()))
            }
        }
        let source = self
            .get(&headers.serial)
            .ok_or_else(|| VerifyError::UnknownSerial(headers.serial.clone()))?;
        let signature = STANDARD
            .decode(&headers.signature)
            .map_err(|_| VerifyError::MalformedSignature)?;
        let message = response_message(&headers.timestamp, &headers.nonce, body);
        if source.verifying_key().verify(&message, &signature) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

/// A timestamp header checked against `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timestamp {
    /// Within +-300 s of now.
    Valid(i64),
    /// A number, but too far from now.
    OutOfWindow(i64),
    /// Not a plain decimal number of seconds.
    Invalid,
}

/// Parse a decimal Unix-seconds timestamp (digits only) and check it against `now`.
pub(crate) fn check_timestamp(timestamp: &str, now: i64) -> Timestamp {
    if timestamp.is_empty()
        || timestamp.len() > 18
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Timestamp::Invalid;
    }
    match timestamp.parse::<i64>() {
        Ok(value) if value.abs_diff(now) <= MAX_CLOCK_SKEW_SECS => Timestamp::Valid(value),
        Ok(value) => Timestamp::OutOfWindow(value),
        Err(_) => Timestamp::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::keys::PrivateKey;

    const GO_KEY: &str = include_str!("../../tests/fixtures/wechatpay/go_testkey_pkcs8.pem");
    const GO_CERT: &str = include_str!("../../tests/fixtures/wechatpay/go_wechatpay_cert.pem");

    fn signed(timestamp: &str, body: &[u8]) -> WechatpayHeaders {
        let key = PrivateKey::from_pem(GO_KEY).unwrap();
        let signature = key
            .sign_base64(&response_message(timestamp, "nonce", body))
            .unwrap();
        WechatpayHeaders {
            timestamp: timestamp.to_owned(),
            nonce: "nonce".to_owned(),
            signature,
            serial: "D7CE59D1F522D701".to_owned(),
            signature_type: None,
        }
    }

    fn store() -> KeyStore {
        KeyStore::new().with_certificate(Certificate::from_pem(GO_CERT).unwrap())
    }

    #[test]
    fn empty_body_message() {
        assert_eq!(response_message("1", "n", b""), b"1\nn\n\n");
    }

    #[test]
    fn serial_lookup_is_case_insensitive() {
        let mut headers = signed("1000", b"{}");
        headers.serial = "d7ce59d1f522d701".to_owned();
        assert_eq!(store().verify(&headers, b"{}", 1000), Ok(()));
    }

    #[test]
    fn timestamp_must_be_plain_digits() {
        for bad in [
            "",
            "+1000",
            "-1000",
            " 1000",
            "10.0",
            "1e3",
            "99999999999999999999",
        ] {
            let headers = signed(bad, b"{}");
            assert_eq!(
                store().verify(&headers, b"{}", 1000),
                Err(VerifyError::InvalidTimestamp(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn timestamp_window_does_not_overflow() {
        let headers = signed("999999999999999999", b"{}");
        assert_eq!(
            store().verify(&headers, b"{}", i64::MIN),
            Err(VerifyError::TimestampOutOfWindow {
                timestamp: 999_999_999_999_999_999,
                now: i64::MIN
            })
        );
    }

    #[test]
    fn signature_type_is_checked() {
        let mut headers = signed("1000", b"{}");
        headers.signature_type = Some(AUTH_SCHEMA.to_owned());
        assert_eq!(store().verify(&headers, b"{}", 1000), Ok(()));
        headers.signature_type = Some("WECHATPAY2-SM2-WITH-SM3".to_owned());
        assert_eq!(
            store().verify(&headers, b"{}", 1000),
            Err(VerifyError::UnsupportedSignatureType(
                "WECHATPAY2-SM2-WITH-SM3".to_owned()
            ))
        );
    }

    #[test]
    fn header_getters() {
        let pairs = [
            ("WECHATPAY-TIMESTAMP", "1"),
            ("wechatpay-nonce", "n"),
            ("Wechatpay-Signature", "s"),
            ("wEchatpay-serial", "S"),
        ];
        let from_pairs = WechatpayHeaders::from_pairs(pairs.iter().copied()).unwrap();
        assert_eq!(from_pairs.timestamp, "1");
        assert_eq!(from_pairs.serial, "S");
        assert_eq!(from_pairs.signature_type, None);

        let lower: HashMap<String, &str> = pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), *v))
            .collect();
        let from_fn = WechatpayHeaders::from_fn(|name| lower.get(name).copied()).unwrap();
        assert_eq!(from_fn, from_pairs);
        let odd_case: HashMap<&str, &str> = pairs.iter().copied().collect();
        assert_eq!(
            WechatpayHeaders::from_fn(|name| odd_case.get(name).copied()),
            Err(VerifyError::MissingHeader(HEADER_TIMESTAMP))
        );

        let canonical: HashMap<&str, &str> = [
            (HEADER_TIMESTAMP, "1"),
            (HEADER_NONCE, "n"),
            (HEADER_SIGNATURE, "s"),
            (HEADER_SERIAL, "S"),
            (HEADER_SIGNATURE_TYPE, AUTH_SCHEMA),
        ]
        .into_iter()
        .collect();
        let from_fn = WechatpayHeaders::from_fn(|name| canonical.get(name).copied()).unwrap();
        assert_eq!(from_fn.signature_type.as_deref(), Some(AUTH_SCHEMA));

        let mut map = http::HeaderMap::new();
        map.insert("wechatpay-timestamp", "1".parse().unwrap());
        map.insert("Wechatpay-Nonce", "n".parse().unwrap());
        map.insert("WECHATPAY-SIGNATURE", "s".parse().unwrap());
        assert_eq!(
            WechatpayHeaders::from_header_map(&map),
            Err(VerifyError::MissingHeader(HEADER_SERIAL))
        );
        map.insert(
            "wechatpay-serial",
            http::HeaderValue::from_bytes(b"\xFF").unwrap(),
        );
        assert_eq!(
            WechatpayHeaders::from_header_map(&map),
            Err(VerifyError::InvalidHeader(HEADER_SERIAL))
        );
        map.insert("wechatpay-serial", "  ".parse().unwrap());
        assert_eq!(
            WechatpayHeaders::from_header_map(&map),
            Err(VerifyError::MissingHeader(HEADER_SERIAL))
        );
        map.insert("wechatpay-serial", "S".parse().unwrap());
        assert_eq!(WechatpayHeaders::from_header_map(&map).unwrap(), from_pairs);
    }

    #[test]
    fn preferred_serial() {
        assert_eq!(KeyStore::new().preferred_serial(), None);
        let store = store();
        assert_eq!(store.preferred_serial(), Some("D7CE59D1F522D701"));
        assert!(!store.is_empty());
        assert_eq!(store.serials().collect::<Vec<_>>(), ["D7CE59D1F522D701"]);
        let key = PrivateKey::from_pem(GO_KEY)
            .unwrap()
            .verifying_key()
            .unwrap();
        let store = store.with_public_key("PUB_KEY_ID_0114", key);
        assert_eq!(store.preferred_serial(), Some("PUB_KEY_ID_0114"));
        assert!(store.contains("pub_key_id_0114"));
        assert!(matches!(
            store.get("PUB_KEY_ID_0114"),
            Some(KeySource::PublicKey(_))
        ));
    }
}
