//! Merchant webhook signatures, per the Standard Webhooks specification (v1, symmetric):
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`, the
//! key being the base64 part of the merchant's `whsec_...` secret. During a secret rotation the
//! header carries one signature per secret, space-separated.

use aws_lc_rs::hmac;
use base64::{engine::general_purpose::STANDARD, Engine};

use super::WEBHOOK_SECRET_PREFIX;

/// How far a receiver lets `webhook-timestamp` drift from its clock (the specification's 5 min).
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSignError {
    #[error("a webhook secret is whsec_ followed by base64")]
    BadSecret,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookVerifyError {
    #[error("webhook-timestamp is outside the tolerance")]
    Timestamp,
    #[error("no v1 signature matches")]
    NoMatch,
    #[error(transparent)]
    Secret(#[from] WebhookSignError),
}

/// The HMAC key of a `whsec_...` secret.
pub fn webhook_key(secret: &str) -> Result<hmac::Key, WebhookSignError> {
    let encoded = secret
        .strip_prefix(WEBHOOK_SECRET_PREFIX)
        .ok_or(WebhookSignError::BadSecret)?;
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| WebhookSignError::BadSecret)?;
    if bytes.is_empty() {
        return Err(WebhookSignError::BadSecret);
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}

fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + 24 + body.len());
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The `webhook-signature` header: one `v1,<base64>` per secret (current first), space-separated.
pub fn signature_header(
    secrets: &[&str],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, WebhookSignError> {
    let content = signed_content(id, timestamp, body);
    let mut parts = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let tag = hmac::sign(&webhook_key(secret)?, &content);
        parts.push(format!("v1,{}", STANDARD.encode(tag.as_ref())));
    }
    Ok(parts.join(" "))
}

/// Verifies a `webhook-signature` header as a receiver would: any `v1` signature made with
/// `secret` over the raw body, compared in constant time, the timestamp within `tolerance_secs`.
pub fn verify(
    secret: &str,
    header: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), WebhookVerifyError> {
    if (now - timestamp).abs() > tolerance_secs {
        return Err(WebhookVerifyError::Timestamp);
    }
    let key = webhook_key(secret)?;
    let content = signed_content(id, timestamp, body);
    let matched = header
        .split(' ')
        .filter_map(|part| part.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|tag| hmac::verify(&key, &content, &tag).is_ok());
    if matched {
        Ok(())
    } else {
        Err(WebhookVerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference libraries' test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn reproduces_the_standard_webhooks_vector() {
        assert_eq!(signature_header(&[SECRET], ID, TS, BODY).unwrap(), EXPECTED);
        verify(SECRET, EXPECTED, ID, TS, BODY, TS, DEFAULT_TOLERANCE_SECS).unwrap();
    }

    #[test]
    fn rotation_carries_both_signatures_and_either_verifies() {
        let new = "whsec_dGhlLW5ldy1zZWNyZXQtb2YtdGhlLW1lcmNoYW50";
        let header = signature_header(&[new, SECRET], ID, TS, BODY).unwrap();
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.ends_with(EXPECTED));
        verify(new, &header, ID, TS, BODY, TS, 300).unwrap();
        verify(SECRET, &header, ID, TS, BODY, TS, 300).unwrap();
    }

    #[test]
    fn tampering_and_replays_are_refused() {
        let tampered = br#"{"test": 2432232315}"#;
        assert_eq!(
            verify(SECRET, EXPECTED, ID, TS, tampered, TS, 300),
            Err(WebhookVerifyError::NoMatch)
        );
        assert_eq!(
            verify(SECRET, EXPECTED, "msg_other", TS, BODY, TS, 300),
            Err(WebhookVerifyError::NoMatch)
        );
        assert_eq!(
            verify(SECRET, EXPECTED, ID, TS, BODY, TS + 301, 300),
            Err(WebhookVerifyError::Timestamp)
        );
        let other = "whsec_b3RoZXItc2VjcmV0LW9mLWFub3RoZXItbWVyY2hhbnQ=";
        assert_eq!(
            verify(other, EXPECTED, ID, TS, BODY, TS, 300),
            Err(WebhookVerifyError::NoMatch)
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64() {
        assert_eq!(
            signature_header(&["sk_abc"], ID, TS, BODY),
            Err(WebhookSignError::BadSecret)
        );
        assert_eq!(
            signature_header(&["whsec_not base64!"], ID, TS, BODY),
            Err(WebhookSignError::BadSecret)
        );
    }
}
