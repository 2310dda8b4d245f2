//! The WeChat Pay side of the protocol, for the WeChat Pay mock and for tests: sign responses
//! and notifications with a platform key, and check our requests' `Authorization` header the
//! way WeChat Pay does (401 `SIGN_ERROR` with WeChat's messages).
//!
//! Behind the `wechat-mock` feature (on in ferrypay-cli, the mock's crate, and in tests): the
//! Lambda functions never sign as WeChat Pay, so their binaries leave it out.

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;
use thiserror::Error;

use super::error::SignError;
use super::keys::{PrivateKey, VerifyingKey};
use super::signer::{request_message_raw, AUTH_SCHEMA};
use super::verifier::{check_timestamp, response_message, Timestamp, WechatpayHeaders};

/// Sign a response or notification body with a platform private key: the returned headers
/// (timestamp, nonce, signature, `serial`, signature type) go on the HTTP message as is
/// (see [`WechatpayHeaders::to_pairs`]).
pub fn sign_response(
    platform_key: &PrivateKey,
    serial: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Result<WechatpayHeaders, SignError> {
    let timestamp = timestamp.to_string();
    let signature = platform_key.sign_base64(&response_message(&timestamp, nonce, body))?;
    Ok(WechatpayHeaders {
        timestamp,
        nonce: nonce.to_owned(),
        signature,
        serial: serial.to_owned(),
        signature_type: Some(AUTH_SCHEMA.to_owned()),
    })
}

impl WechatpayHeaders {
    /// `(header name, value)` pairs, the signature type last when present.
    pub fn to_pairs(&self) -> Vec<(&'static str, &str)> {
        use super::verifier::{
            HEADER_NONCE, HEADER_SERIAL, HEADER_SIGNATURE, HEADER_SIGNATURE_TYPE, HEADER_TIMESTAMP,
        };
        let mut pairs = vec![
            (HEADER_TIMESTAMP, self.timestamp.as_str()),
            (HEADER_NONCE, self.nonce.as_str()),
            (HEADER_SIGNATURE, self.signature.as_str()),
            (HEADER_SERIAL, self.serial.as_str()),
        ];
        if let Some(kind) = &self.signature_type {
            pairs.push((HEADER_SIGNATURE_TYPE, kind.as_str()));
        }
        pairs
    }
}

/// The five fields of a `WECHATPAY2-SHA256-RSA2048` Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationFields {
    pub mchid: String,
    pub nonce_str: String,
    /// As sent (decimal Unix seconds).
    pub timestamp: String,
    pub serial_no: String,
    pub signature: String,
}

/// What WeChat Pay echoes back on a signature mismatch to help debugging (`detail`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignInformation {
    pub method: String,
    pub url: String,
    /// The message we verified, body truncated, newlines kept.
    pub truncated_sign_message: String,
    /// Byte length of the full message.
    pub sign_message_length: usize,
}

/// Why WeChat Pay would reject a request's `Authorization`. All are HTTP 401 `SIGN_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthorizationError {
    #[error("missing Authorization header")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    #[error("unsupported Authorization schema {0:?}")]
    UnsupportedSchema(String),
    #[error("unknown mchid {0:?}")]
    UnknownMerchant(String),
    #[error("serial_no {serial_no:?} is not a certificate of merchant {mchid}")]
    UnknownSerial { mchid: String, serial_no: String },
    #[error("timestamp {0:?} is not a number of seconds")]
    InvalidTimestamp(String),
    #[error("timestamp {timestamp} is more than 300 s away from now ({now})")]
    TimestampOutOfWindow { timestamp: i64, now: i64 },
    #[error("signature is not valid base64")]
    MalformedSignature,
    #[error("signature does not match")]
    BadSignature(Box<SignInformation>),
}

const MESSAGE_FORMAT: &str =
    "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》";

impl AuthorizationError {
    /// Always 401.
    pub fn http_status(&self) -> u16 {
        401
    }

    /// Always `SIGN_ERROR`.
    pub fn code(&self) -> &'static str {
        "SIGN_ERROR"
    }

    /// WeChat Pay's message for this failure.
    pub fn message(&self) -> &'static str {
        match self {
            Self::Missing | Self::Malformed(_) | Self::InvalidTimestamp(_) => MESSAGE_FORMAT,
            Self::UnsupportedSchema(_) => "Http头Authorization认证类型不正确",
            Self::UnknownMerchant(_) => "签名信息错误，验签失败",
            Self::UnknownSerial { .. } => "商户证书序列号有误。请使用签名私钥匹配的证书序列号",
            Self::TimestampOutOfWindow { .. } => {
                "Http头Authorization中的timestamp与发起请求的时间不得超过5分钟"
            }
            Self::MalformedSignature | Self::BadSignature(_) => "错误的签名，验签失败",
        }
    }

    /// WeChat Pay's error body: `{"code":"SIGN_ERROR","message":"...","detail":{...}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "code": self.code(), "message": self.message() });
        if let Self::BadSignature(information) = self {
            body["detail"] = serde_json::json!({
                "field": "signature",
                "issue": "sign not match",
                "location": "authorization",
                "sign_information": information,
            });
        }
        body
    }
}

/// Parse `WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",timestamp="..",serial_no="..",signature=".."`
/// (fields in any order, each exactly once, values double-quoted and non-empty).
pub fn parse_authorization(header: &str) -> Result<AuthorizationFields, AuthorizationError> {
    let header = header.trim();
    if header.is_empty() {
        return Err(AuthorizationError::Missing);
    }
    let (schema, params) = header
        .split_once(' ')
        .ok_or_else(|| AuthorizationError::Malformed("no parameters".to_owned()))?;
    if schema != AUTH_SCHEMA {
        if schema.starts_with("WECHATPAY2-") {
            return Err(AuthorizationError::UnsupportedSchema(schema.to_owned()));
        }
        return Err(AuthorizationError::Malformed(format!(
            "schema {schema:?} is not {AUTH_SCHEMA}"
        )));
    }
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for part in params.trim().split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| AuthorizationError::Malformed(format!("{part:?} is not name=value")))?;
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .filter(|v| !v.is_empty() && !v.contains('"'))
            .ok_or_else(|| {
                AuthorizationError::Malformed(format!("{name} is not a non-empty quoted value"))
            })?;
        if !matches!(
            name,
            "mchid" | "nonce_str" | "timestamp" | "serial_no" | "signature"
        ) {
            return Err(AuthorizationError::Malformed(format!(
                "unknown field {name:?}"
            )));
        }
        if fields.insert(name, value).is_some() {
            return Err(AuthorizationError::Malformed(format!(
                "duplicate field {name}"
            )));
        }
    }
    let take = |name: &str| -> Result<String, AuthorizationError> {
        fields
            .get(name)
            .map(|v| (*v).to_owned())
            .ok_or_else(|| AuthorizationError::Malformed(format!("missing field {name}")))
    };
    Ok(AuthorizationFields {
        mchid: take("mchid")?,
        nonce_str: take("nonce_str")?,
        timestamp: take("timestamp")?,
        serial_no: take("serial_no")?,
        signature: take("signature")?,
    })
}

/// Checks our requests as WeChat Pay would: known merchant and certificate serial, timestamp
/// within +-300 s of `now`, signature over `METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n`.
#[derive(Debug, Clone, Default)]
pub struct AuthorizationVerifier {
    /// mchid -> upper-case certificate serial -> merchant public key
    merchants: HashMap<String, HashMap<String, VerifyingKey>>,
}

impl AuthorizationVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a merchant API certificate (serial, public key) for `mchid`.
    pub fn add_merchant(&mut self, mchid: &str, serial_no: &str, key: VerifyingKey) {
        self.merchants
            .entry(mchid.to_owned())
            .or_default()
            .insert(serial_no.to_ascii_uppercase(), key);
    }

    /// Builder form of [`AuthorizationVerifier::add_merchant`].
    pub fn with_merchant(mut self, mchid: &str, serial_no: &str, key: VerifyingKey) -> Self {
        self.add_merchant(mchid, serial_no, key);
        self
    }

    /// Verify a request. `authorization` is the header value if present, `canonical_url` the
    /// raw path and query, `body` the raw bytes.
    pub fn verify(
        &self,
        authorization: Option<&str>,
        method: &str,
        canonical_url: &str,
        body: &[u8],
        now: i64,
    ) -> Result<AuthorizationFields, AuthorizationError> {
        let fields = parse_authorization(authorization.ok_or(AuthorizationError::Missing)?)?;
        let certificates = self
            .merchants
            .get(&fields.mchid)
            .ok_or_else(|| AuthorizationError::UnknownMerchant(fields.mchid.clone()))?;
        let key = certificates
            .get(&fields.serial_no.to_ascii_uppercase())
            .ok_or_else(|| AuthorizationError::UnknownSerial {
                mchid: fields.mchid.clone(),
                serial_no: fields.serial_no.clone(),
            })?;
        match check_timestamp(&fields.timestamp, now) {
            Timestamp::Valid(_) => {}
            Timestamp::OutOfWindow(timestamp) => {
                return Err(AuthorizationError::TimestampOutOfWindow { timestamp, now })
            }
            Timestamp::Invalid => {
                return Err(AuthorizationError::InvalidTimestamp(
                    fields.timestamp.clone(),
                ))
            }
        }
        let signature = STANDARD
            .decode(&fields.signature)
            .map_err(|_| AuthorizationError::MalformedSignature)?;
        let message = request_message_raw(
            method,
            canonical_url,
            &fields.timestamp,
            &fields.nonce_str,
            body,
        );
        if key.verify(&message, &signature) {
            Ok(fields)
        } else {
            Err(AuthorizationError::BadSignature(Box::new(
                SignInformation {
                    method: method.to_owned(),
                    url: canonical_url.to_owned(),
                    truncated_sign_message: truncate(&String::from_utf8_lossy(&message), 256),
                    sign_message_length: message.len(),
                },
            )))
        }
    }
}

/// The first `max` bytes of `text` (on a character boundary), `...` appended when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut out = String::with_capacity(max + 3);
    for c in text.chars() {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    let _ = write!(out, "...");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc...");
        assert_eq!(truncate("a支付", 3), "a...");
    }

    #[test]
    fn error_bodies() {
        let missing = AuthorizationError::Missing;
        assert_eq!(missing.http_status(), 401);
        assert_eq!(
            missing.to_json(),
            serde_json::json!({"code": "SIGN_ERROR", "message": MESSAGE_FORMAT})
        );
        let bad = AuthorizationError::BadSignature(Box::new(SignInformation {
            method: "GET".to_owned(),
            url: "/v3/x".to_owned(),
            truncated_sign_message: "GET\n/v3/x\n1\nn\n\n".to_owned(),
            sign_message_length: 15,
        }));
        let body = bad.to_json();
        assert_eq!(body["message"], "错误的签名，验签失败");
        assert_eq!(body["detail"]["issue"], "sign not match");
        assert_eq!(
            body["detail"]["sign_information"]["sign_message_length"],
            15
        );
    }
}
