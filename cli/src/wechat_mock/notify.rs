//! Payment and refund notifications: encrypted and signed as WeChat Pay sends them, retried on
//! the schedule while the answer is not 2xx, every attempt logged.

use std::sync::Arc;

use ferrypay::wechat::{
    encrypt_resource, sign_response, signer::random_alphanumeric, Notification,
};
use http::header;

use super::WechatMock;

/// One notification attempt, for tests and `GET /mock/deliveries`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub out_trade_no: String,
    /// For refund notifications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_refund_no: Option<String>,
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// A notification ready to send: its body and its `Wechatpay-*` headers.
type SignedNotification = (String, Vec<(&'static str, String)>);

impl WechatMock {
    /// Every notification attempt so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// An encrypted, signed notification: (body, headers). `event` is (event type, summary);
    /// `kind` both the resource's `original_type` and its associated data (`transaction`,
    /// `refund`), as WeChat Pay sends them.
    pub(super) fn notification(
        &self,
        (event_type, summary): (&str, &str),
        kind: &str,
        plaintext: &str,
        tamper_signature: bool,
        stale_seconds: i64,
    ) -> Result<SignedNotification, String> {
        let now = self.clock.now();
        let nonce = random_alphanumeric(12).map_err(|e| e.to_string())?;
        let resource = encrypt_resource(
            &self.config.apiv3_key,
            &nonce,
            kind,
            Some(kind),
            plaintext.as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        let notification = Notification {
            id: format!("EV-2018022511223320873{:08}", self.next()),
            create_time: now.to_rfc3339_beijing(),
            event_type: event_type.into(),
            resource_type: "encrypt-resource".into(),
            resource,
            summary: summary.into(),
        };
        let body = notification.to_json().map_err(|e| e.to_string())?;
        let signed_at = now.unix() - stale_seconds;
        let sign_nonce = random_alphanumeric(32).map_err(|e| e.to_string())?;
        let mut signed = sign_response(
            &self.config.platform_key,
            &self.serial(),
            signed_at,
            &sign_nonce,
            body.as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        if tamper_signature {
            signed.signature = tamper(&signed.signature);
        }
        let headers = signed
            .to_pairs()
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        Ok((body, headers))
    }

    /// Sends one notification now; while it is not answered 2xx, retries on the schedule in
    /// the background. Returns the first attempt's status (or 0 for a network error).
    /// `key`: the order's number, and the refund's for a refund notification.
    pub(super) async fn deliver(
        self: &Arc<Self>,
        key: (&str, Option<&str>),
        url: &str,
        (body, headers): SignedNotification,
    ) -> u16 {
        let first = self.attempt(key, url, &body, &headers, 1).await;
        if !(200..300).contains(&first) {
            let mock = Arc::clone(self);
            let (no, refund_no, url) = (
                key.0.to_string(),
                key.1.map(str::to_string),
                url.to_string(),
            );
            tokio::spawn(async move {
                for (i, wait) in mock.config.notify_retry.clone().into_iter().enumerate() {
                    tokio::time::sleep(wait).await;
                    let attempt = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(2);
                    let key = (no.as_str(), refund_no.as_deref());
                    let status = mock.attempt(key, &url, &body, &headers, attempt).await;
                    if (200..300).contains(&status) {
                        break;
                    }
                }
            });
        }
        first
    }

    /// One POST of a notification, logged in the deliveries; its status (0: a network error).
    async fn attempt(
        &self,
        (out_trade_no, out_refund_no): (&str, Option<&str>),
        url: &str,
        body: &str,
        headers: &[(&'static str, String)],
        attempt: u32,
    ) -> u16 {
        let mut request = self
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let (status, error) = match request.send().await {
            Ok(response) => (Some(response.status().as_u16()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        if let Ok(mut log) = self.deliveries.lock() {
            log.push(Delivery {
                out_trade_no: out_trade_no.to_string(),
                out_refund_no: out_refund_no.map(str::to_string),
                attempt,
                status,
                error,
            });
        }
        status.unwrap_or(0)
    }
}

/// Changes one base64 character of a signature, keeping it valid base64.
fn tamper(signature: &str) -> String {
    let mut chars: Vec<char> = signature.chars().collect();
    if let Some(c) = chars.get_mut(10) {
        *c = if *c == 'A' { 'B' } else { 'A' };
    }
    chars.into_iter().collect()
}
