//! The demo merchant's webhook receiver in `ferrypay dev` (`/dev/webhooks`, the demo merchant's
//! default notify URL): it checks each webhook's signature the way a merchant's server would,
//! answers 200 (or 400 if the signature does not verify), and keeps what it got, so
//! `GET /dev/webhooks` shows the webhooks a merchant would have received.

use std::sync::Mutex;

use bytes::Bytes;
use ferrypay::{
    api::json_response,
    model::{Merchant, Timestamp},
    sign::webhook::{verify, DEFAULT_TOLERANCE_SECS},
};
use http::StatusCode;
use serde_json::{json, Value};

pub const DEV_INBOX_PATH: &str = "/dev/webhooks";
/// The inbox keeps the latest this many webhooks.
const KEPT: usize = 200;

#[derive(Default)]
pub struct DevInbox {
    received: Mutex<Vec<Value>>,
}

impl DevInbox {
    /// Takes one webhook for `merchant` (the demo merchant, as stored now).
    pub fn receive(
        &self,
        merchant: Option<&Merchant>,
        req: &http::Request<Bytes>,
        now: Timestamp,
    ) -> http::Response<String> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let id = header("webhook-id");
        let timestamp = header("webhook-timestamp");
        let signature = header("webhook-signature");
        let verified = match (merchant, timestamp.parse::<i64>()) {
            (Some(merchant), Ok(ts)) => merchant
                .webhook_secret
                .expose()
                .map_err(|e| e.to_string())
                .and_then(|secret| {
                    verify(
                        secret,
                        &signature,
                        &id,
                        ts,
                        req.body(),
                        now.unix(),
                        DEFAULT_TOLERANCE_SECS,
                    )
                    .map_err(|e| e.to_string())
                }),
            (None, _) => Err("no demo merchant".to_string()),
            (_, Err(_)) => Err("webhook-timestamp is not a number".to_string()),
        };
        let body = serde_json::from_slice::<Value>(req.body())
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(req.body()).into_owned()));
        let entry = json!({
            "webhook_id": id,
            "webhook_timestamp": timestamp,
            "signature_verified": verified.is_ok(),
            "error": verified.as_ref().err(),
            "body": body,
        });
        if let Ok(mut received) = self.received.lock() {
            received.push(entry);
            let excess = received.len().saturating_sub(KEPT);
            received.drain(..excess);
        }
        match verified {
            Ok(()) => json_response(StatusCode::OK, &json!({"received": true})),
            Err(error) => json_response(
                StatusCode::BAD_REQUEST,
                &json!({"received": false, "error": error}),
            ),
        }
    }

    /// Everything received, oldest first.
    pub fn received(&self) -> Vec<Value> {
        self.received
            .lock()
            .map(|received| received.clone())
            .unwrap_or_default()
    }

    pub fn list(&self) -> http::Response<String> {
        json_response(StatusCode::OK, &json!({"webhooks": self.received()}))
    }
}
