//! WeChat Pay notifications (回调通知): the envelope, and verify-then-parse-then-decrypt.

use serde::{Deserialize, Serialize};

use super::aead::{ApiV3Key, EncryptedResource};
use super::error::NotificationError;
use super::verifier::{KeyStore, WechatpayHeaders};

/// The notification body as WeChat Pay posts it, e.g.
/// `{"id":"EV-...","create_time":"2015-05-20T13:29:35+08:00","resource_type":"encrypt-resource",
/// "event_type":"TRANSACTION.SUCCESS","summary":"支付成功","resource":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    /// RFC 3339 with offset.
    pub create_time: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`, ...
    pub event_type: String,
    /// `encrypt-resource`.
    pub resource_type: String,
    pub resource: EncryptedResource,
    #[serde(default)]
    pub summary: String,
}

impl Notification {
    /// Parse a body. Call this only after [`KeyStore::verify`] accepted the raw bytes.
    pub fn from_json(body: &[u8]) -> Result<Self, NotificationError> {
        serde_json::from_slice(body).map_err(|e| NotificationError::Json(e.to_string()))
    }

    /// The body to send (for the WeChat Pay mock).
    pub fn to_json(&self) -> Result<String, NotificationError> {
        serde_json::to_string(self).map_err(|e| NotificationError::Json(e.to_string()))
    }

    /// Decrypt the resource to its plaintext JSON (a transaction or refund object).
    pub fn decrypt(&self, key: &ApiV3Key) -> Result<String, NotificationError> {
        Ok(self.resource.decrypt_to_string(key)?)
    }
}

/// A verified, parsed and decrypted notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNotification {
    pub notification: Notification,
    /// The decrypted resource (JSON text).
    pub plaintext: String,
}

/// Verify the signature over the raw body (with `now` in Unix seconds), then parse the
/// envelope, then decrypt the resource with the APIv3 key.
pub fn open_notification(
    keys: &KeyStore,
    headers: &WechatpayHeaders,
    body: &[u8],
    api_v3_key: &ApiV3Key,
    now: i64,
) -> Result<OpenedNotification, NotificationError> {
    keys.verify(headers, body, now)?;
    let notification = Notification::from_json(body)?;
    let plaintext = notification.decrypt(api_v3_key)?;
    Ok(OpenedNotification {
        notification,
        plaintext,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::aead::encrypt_resource;
    use crate::wechat::error::{AeadError, VerifyError};
    use crate::wechat::keys::{Certificate, PrivateKey};
    use crate::wechat::server::sign_response;

    const GO_KEY: &str = include_str!("../../tests/fixtures/wechatpay/go_testkey_pkcs8.pem");
    const GO_CERT: &str = include_str!("../../tests/fixtures/wechatpay/go_wechatpay_cert.pem");

    #[test]
    fn round_trip_through_the_mock_helpers() {
        let api_v3_key: ApiV3Key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb".parse().unwrap();
        let notification = Notification {
            id: "EV-1".to_owned(),
            create_time: "2024-01-01T12:00:06+08:00".to_owned(),
            event_type: "TRANSACTION.SUCCESS".to_owned(),
            resource_type: "encrypt-resource".to_owned(),
            resource: encrypt_resource(
                &api_v3_key,
                "abcdefghijkl",
                "transaction",
                Some("transaction"),
                br#"{"trade_state":"SUCCESS"}"#,
            )
            .unwrap(),
            summary: "支付成功".to_owned(),
        };
        let body = notification.to_json().unwrap();
        let platform_key = PrivateKey::from_pem(GO_KEY).unwrap();
        let signed = sign_response(
            &platform_key,
            "D7CE59D1F522D701",
            1_700_000_000,
            "nonce",
            body.as_bytes(),
        )
        .unwrap();
        let headers = signed;
        let keys = KeyStore::new().with_certificate(Certificate::from_pem(GO_CERT).unwrap());

        let opened =
            open_notification(&keys, &headers, body.as_bytes(), &api_v3_key, 1_700_000_100)
                .unwrap();
        assert_eq!(opened.notification, notification);
        assert_eq!(opened.plaintext, r#"{"trade_state":"SUCCESS"}"#);

        // verification comes first: a stale message is rejected before anything is parsed
        assert_eq!(
            open_notification(&keys, &headers, b"not json", &api_v3_key, 1_700_000_301),
            Err(NotificationError::Verify(
                VerifyError::TimestampOutOfWindow {
                    timestamp: 1_700_000_000,
                    now: 1_700_000_301
                }
            ))
        );
        // a signed body that is not a notification
        let signed = sign_response(&platform_key, "D7CE59D1F522D701", 1, "n", b"[]").unwrap();
        assert!(matches!(
            open_notification(&keys, &signed, b"[]", &api_v3_key, 1),
            Err(NotificationError::Json(_))
        ));
        // wrong APIv3 key
        let other: ApiV3Key = "b7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb".parse().unwrap();
        assert_eq!(
            open_notification(&keys, &headers, body.as_bytes(), &other, 1_700_000_000),
            Err(NotificationError::Decrypt(AeadError::DecryptionFailed))
        );
    }
}
