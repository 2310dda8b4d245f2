//! The WeChat Pay APIv3 client (direct-merchant mode): signed calls and verified answers. The
//! payment-channel adapter over it is `channel::wechat`.
//!
//! Every request is signed; every 2xx response (a 204 with an empty body included) is verified
//! over its raw bytes before it is read. Network errors, 5xx, `SYSTEM_ERROR` and
//! `FREQUENCY_LIMITED` are retried with backoff (the same request, freshly signed: prepay,
//! query and close are idempotent for one `out_trade_no`); parameter and signature errors are not.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use http::{header, HeaderMap, Method};
use serde::Deserialize;
use serde_json::Value;

use super::{
    aead::ApiV3Key,
    certificates::{CertificatesResponse, RefreshGate},
    keys::{PrivateKey, VerifyingKey},
    signer::RequestSigner,
    verifier::{KeyStore, WechatpayHeaders},
    VerifyError,
};
use crate::model::{Cause, Clock, OrderNo};

pub const DEFAULT_BASE_URL: &str = "https://api.mch.weixin.qq.com";
/// Platform certificates are downloaded at most this often, failed attempts included (an
/// unknown serial triggers it).
const CERTIFICATE_REFRESH_INTERVAL_SECS: i64 = 60;

/// How failed calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait before the second attempt; doubled before each next one.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(200),
        }
    }
}

/// Everything the client needs, read once at start.
#[derive(Debug, Clone)]
pub struct WechatPayConfig {
    /// `https://api.mch.weixin.qq.com`, or any APIv3-compatible server (the mock).
    pub base_url: String,
    pub mchid: String,
    pub appid: String,
    /// The merchant API certificate's serial.
    pub merchant_serial: String,
    pub private_key: PrivateKey,
    pub apiv3_key: ApiV3Key,
    /// WeChat Pay public-key mode (`PUB_KEY_ID_...`, key). Without it, platform certificates
    /// are downloaded from `/v3/certificates`.
    pub public_key: Option<(String, VerifyingKey)>,
    /// Where WeChat Pay sends payment notifications (our `/api/v1/notify/wechat`).
    pub notify_url: String,
    pub retry: RetryPolicy,
    /// Per attempt, the whole exchange.
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl WechatPayConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
}

/// A failed call: the channel's own error answer, or no usable answer at all.
#[derive(Debug)]
pub(crate) enum CallError {
    /// WeChat Pay answered with an error code (after retries, if it was retryable).
    Wechat {
        status: u16,
        code: String,
        message: String,
    },
    Channel(ClientError),
}

/// A call to WeChat Pay that gave no usable answer, in the protocol's terms; the channel
/// adapter (`channel/wechat.rs`) turns it into the port's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Unreachable, timed out, failing on its side or answering unreadably: may work later.
    #[error("WeChat Pay unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// WeChat Pay refused the request; its code and message are for logs, never for merchants.
    #[error("WeChat Pay refused the request: {code}: {message}")]
    Rejected { code: String, message: String },
}

impl From<CallError> for ClientError {
    fn from(err: CallError) -> Self {
        match err {
            CallError::Wechat {
                status,
                code,
                message,
            } if status >= 500 || is_retryable_code(&code) => {
                ClientError::Unavailable(Cause::new(format!("{status} {code}: {message}")))
            }
            CallError::Wechat { code, message, .. } => ClientError::Rejected { code, message },
            CallError::Channel(err) => err,
        }
    }
}

fn is_retryable_code(code: &str) -> bool {
    matches!(code, "SYSTEM_ERROR" | "FREQUENCY_LIMITED" | "SYSTEMERROR")
}

/// A verified 2xx answer.
pub(crate) struct Verified {
    pub(crate) body: Vec<u8>,
}

#[derive(Debug, Deserialize)]
struct WechatErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// WeChat Pay's transaction, as query answers and notifications carry it.
#[derive(Debug, Deserialize)]
pub(crate) struct WxTransaction {
    #[serde(default)]
    pub(crate) appid: Option<String>,
    #[serde(default)]
    pub(crate) mchid: Option<String>,
    pub(crate) out_trade_no: String,
    #[serde(default)]
    pub(crate) transaction_id: Option<String>,
    pub(crate) trade_state: WxTradeState,
    #[serde(default)]
    pub(crate) success_time: Option<String>,
    #[serde(default)]
    pub(crate) amount: Option<WxAmount>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WxAmount {
    pub(crate) total: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum WxTradeState {
    Success,
    Refund,
    Notpay,
    Closed,
    Revoked,
    Userpaying,
    Payerror,
    Accept,
    #[serde(other)]
    Unknown,
}

impl WxTradeState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WxTradeState::Success => "SUCCESS",
            WxTradeState::Refund => "REFUND",
            WxTradeState::Notpay => "NOTPAY",
            WxTradeState::Closed => "CLOSED",
            WxTradeState::Revoked => "REVOKED",
            WxTradeState::Userpaying => "USERPAYING",
            WxTradeState::Payerror => "PAYERROR",
            WxTradeState::Accept => "ACCEPT",
            WxTradeState::Unknown => "UNKNOWN",
        }
    }
}

pub struct WechatPayClient {
    base_url: String,
    pub(crate) mchid: String,
    pub(crate) appid: String,
    pub(crate) notify_url: String,
    pub(crate) apiv3_key: ApiV3Key,
    pub(crate) public_key_mode: bool,
    retry: RetryPolicy,
    pub(crate) signer: RequestSigner,
    http: reqwest::Client,
    keys: RwLock<KeyStore>,
    /// Certificate downloads: one at a time, at most one per interval, failures included.
    refresh_gate: RefreshGate,
    pub(crate) clock: Arc<dyn Clock>,
}

impl WechatPayClient {
    /// Builds the client. In certificate mode (no public key) it downloads the platform
    /// certificates now, so the first notification does not wait for them (and the TLS
    /// connection is warm for the first request).
    pub async fn connect(
        config: WechatPayConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ferrypay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Unavailable(Cause::with_source("http client", e)))?;
        let mut keys = KeyStore::new();
        let public_key_mode = config.public_key.is_some();
        if let Some((id, key)) = config.public_key {
            keys.add_public_key(id, key);
        }
        let client = WechatPayClient {
            base_url: config.base_url.trim_end_matches('/').to_string(),
            mchid: config.mchid.clone(),
            appid: config.appid,
            notify_url: config.notify_url,
            apiv3_key: config.apiv3_key,
            public_key_mode,
            retry: config.retry,
            signer: RequestSigner::new(config.mchid, config.merchant_serial, config.private_key),
            http,
            keys: RwLock::new(keys),
            refresh_gate: RefreshGate::new(CERTIFICATE_REFRESH_INTERVAL_SECS),
            clock,
        };
        if !client.public_key_mode {
            client.refresh_certificates().await?;
        }
        Ok(client)
    }

    pub fn mchid(&self) -> &str {
        &self.mchid
    }

    #[cfg(test)]
    pub(crate) fn set_retry_for_tests(&mut self, retry: RetryPolicy) {
        self.retry = retry;
    }

    pub fn appid(&self) -> &str {
        &self.appid
    }

    fn verify(&self, headers: &WechatpayHeaders, body: &[u8]) -> Result<(), VerifyError> {
        let now = self.clock.now().unix();
        match self.keys.read() {
            Ok(keys) => keys.verify(headers, body, now),
            Err(_) => Err(VerifyError::UnknownSerial(headers.serial.clone())),
        }
    }

    /// Verifies a response or notification; an unknown serial in certificate mode downloads the
    /// certificates once more (rate-limited) and tries again.
    pub(crate) async fn verify_refreshing(
        &self,
        headers: &WechatpayHeaders,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        match self.verify(headers, body) {
            Err(VerifyError::UnknownSerial(serial)) if !self.public_key_mode => {
                if let Err(err) = self.refresh_certificates().await {
                    tracing::warn!(error = %err, "platform certificate refresh failed");
                }
                self.verify(headers, body).map_err(|e| match e {
                    VerifyError::UnknownSerial(_) => VerifyError::UnknownSerial(serial),
                    other => other,
                })
            }
            other => other,
        }
    }

    /// Downloads the certificates through the gate: concurrent callers share one download,
    /// and none starts within [`CERTIFICATE_REFRESH_INTERVAL_SECS`] of the last attempt,
    /// whether it failed or not (a held-back call is `Ok`: the caller verifies with the
    /// certificates known).
    pub async fn refresh_certificates(&self) -> Result<(), ClientError> {
        self.refresh_gate
            .run(|| self.clock.now(), || self.download_certificates())
            .await
            .unwrap_or(Ok(()))
    }

    /// Downloads `/v3/certificates`, decrypts them with the APIv3 key, checks the answer's
    /// signature with the certificate it names, and replaces the known certificates.
    async fn download_certificates(&self) -> Result<(), ClientError> {
        let now = self.clock.now();
        let (headers, body) = self.send(&Method::GET, "/v3/certificates", None).await?;
        let certificates = CertificatesResponse::from_json(&body)
            .and_then(|response| response.decrypt(&self.apiv3_key))
            .map_err(|e| ClientError::Unavailable(Cause::with_source("certificates", e)))?;
        let mut fresh = KeyStore::new();
        for certificate in certificates {
            fresh.add_certificate(certificate.certificate);
        }
        let signed = WechatpayHeaders::from_header_map(&headers).map_err(|e| {
            ClientError::Unavailable(Cause::with_source("certificates answer unsigned", e))
        })?;
        fresh
            .verify(&signed, &body, now.unix())
            .map_err(|e| ClientError::Unavailable(Cause::with_source("certificates answer", e)))?;
        if let Ok(mut keys) = self.keys.write() {
            *keys = fresh;
        }
        tracing::info!("platform certificates refreshed");
        Ok(())
    }

    /// One signed exchange, retried on network errors and retryable answers. Returns the raw
    /// answer of the last attempt; the caller verifies it.
    async fn send(
        &self,
        method: &Method,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Result<(HeaderMap, Vec<u8>), CallError> {
        let mut delay = self.retry.base_delay;
        let mut attempt = 1;
        loop {
            let outcome = self.send_once(method, path_and_query, body).await;
            let retryable = match &outcome {
                Ok(_) => false,
                Err(CallError::Channel(ClientError::Unavailable(_))) => true,
                Err(CallError::Wechat { status, code, .. }) => {
                    *status >= 500 || *status == 429 || is_retryable_code(code)
                }
                Err(CallError::Channel(ClientError::Rejected { .. })) => false,
            };
            if !retryable || attempt >= self.retry.attempts {
                return outcome;
            }
            if let Err(err) = &outcome {
                tracing::warn!(
                    path = path_and_query,
                    attempt,
                    ?err,
                    "WeChat Pay call failed; retrying"
                );
            }
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
            attempt += 1;
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Result<(HeaderMap, Vec<u8>), CallError> {
        let unavailable = |cause: Cause| CallError::Channel(ClientError::Unavailable(cause));
        let signed = self
            .signer
            .sign_with_random_nonce(
                method.as_str(),
                path_and_query,
                body.unwrap_or_default(),
                self.clock.now().unix(),
            )
            .map_err(|e| unavailable(Cause::with_source("signing", e)))?;
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.base_url))
            .header(header::AUTHORIZATION, signed.authorization)
            .header(header::ACCEPT, "application/json");
        let serial = self
            .keys
            .read()
            .ok()
            .and_then(|keys| keys.preferred_serial().map(str::to_string));
        if let Some(serial) = serial {
            request = request.header("Wechatpay-Serial", serial);
        }
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(Cause::with_source(path_and_query, e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(|e| {
            unavailable(Cause::with_source(
                format!("{path_and_query}: reading the answer"),
                e,
            ))
        })?;
        if status.is_success() {
            return Ok((headers, bytes.to_vec()));
        }
        let error: WechatErrorBody = serde_json::from_slice(&bytes).unwrap_or(WechatErrorBody {
            code: String::new(),
            message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        });
        Err(CallError::Wechat {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
        })
    }

    /// A call whose 2xx answer must carry WeChat Pay's valid signature.
    pub(crate) async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Verified, CallError> {
        let body = match body {
            Some(v) => Some(serde_json::to_vec(v).map_err(|e| {
                CallError::Channel(ClientError::Unavailable(Cause::with_source(
                    "request body",
                    e,
                )))
            })?),
            None => None,
        };
        let (headers, bytes) = self.send(&method, path_and_query, body.as_deref()).await?;
        let signed = WechatpayHeaders::from_header_map(&headers).map_err(|e| {
            CallError::Channel(ClientError::Unavailable(Cause::with_source(
                format!("{path_and_query}: answer not signed"),
                e,
            )))
        })?;
        self.verify_refreshing(&signed, &bytes).await.map_err(|e| {
            tracing::error!(path = path_and_query, error = %e, "WeChat Pay answer failed verification");
            CallError::Channel(ClientError::Unavailable(Cause::with_source(
                format!("{path_and_query}: answer failed verification"),
                e,
            )))
        })?;
        Ok(Verified { body: bytes })
    }

    pub(crate) fn out_trade_no_path(order_no: &OrderNo) -> String {
        // Our order numbers are [0-9A-Z]: nothing to percent-encode.
        format!("/v3/pay/transactions/out-trade-no/{}", order_no.as_str())
    }

    pub(crate) fn parse<T: for<'de> Deserialize<'de>>(
        verified: &Verified,
    ) -> Result<T, ClientError> {
        serde_json::from_slice(&verified.body)
            .map_err(|e| ClientError::Unavailable(Cause::with_source("unreadable answer", e)))
    }
}
