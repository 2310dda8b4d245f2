//! The WeChat Pay APIv3 client (direct-merchant mode): the real [`PayChannel`].
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
use serde_json::{json, Value};

use super::{
    aead::ApiV3Key,
    certificates::CertificatesResponse,
    jsapi_pay_params,
    keys::{PrivateKey, VerifyingKey},
    notification::Notification,
    signer::{nonce_str, RequestSigner},
    verifier::{KeyStore, WechatpayHeaders},
    VerifyError,
};
use crate::{
    channel::{
        ChannelError, ChannelNotice, CloseOutcome, JsapiParams, NoticeError, NoticeTrade,
        PayChannel, PaymentNotice, PrepayRequest, TradeState,
    },
    model::{Clock, Fen, OrderNo, PayCredential, PayType, Timestamp},
};

pub const DEFAULT_BASE_URL: &str = "https://api.mch.weixin.qq.com";
/// Platform certificates are re-downloaded at most this often (an unknown serial triggers it).
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
enum CallError {
    /// WeChat Pay answered with an error code (after retries, if it was retryable).
    Wechat {
        status: u16,
        code: String,
        message: String,
    },
    Channel(ChannelError),
}

impl From<CallError> for ChannelError {
    fn from(err: CallError) -> Self {
        match err {
            CallError::Wechat {
                status,
                code,
                message,
            } if status >= 500 || is_retryable_code(&code) => {
                ChannelError::Unavailable(format!("{status} {code}: {message}"))
            }
            CallError::Wechat { code, message, .. } => ChannelError::Rejected { code, message },
            CallError::Channel(err) => err,
        }
    }
}

fn is_retryable_code(code: &str) -> bool {
    matches!(code, "SYSTEM_ERROR" | "FREQUENCY_LIMITED" | "SYSTEMERROR")
}

/// A verified 2xx answer.
struct Verified {
    body: Vec<u8>,
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
struct WxTransaction {
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    mchid: Option<String>,
    out_trade_no: String,
    #[serde(default)]
    transaction_id: Option<String>,
    trade_state: WxTradeState,
    #[serde(default)]
    success_time: Option<String>,
    #[serde(default)]
    amount: Option<WxAmount>,
}

#[derive(Debug, Deserialize)]
struct WxAmount {
    total: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum WxTradeState {
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
    fn as_str(self) -> &'static str {
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
    mchid: String,
    appid: String,
    notify_url: String,
    apiv3_key: ApiV3Key,
    public_key_mode: bool,
    retry: RetryPolicy,
    signer: RequestSigner,
    http: reqwest::Client,
    keys: RwLock<KeyStore>,
    /// When certificates were last downloaded; the async lock also serialises downloads.
    last_refresh: tokio::sync::Mutex<Option<Timestamp>>,
    clock: Arc<dyn Clock>,
}

impl WechatPayClient {
    /// Builds the client. In certificate mode (no public key) it downloads the platform
    /// certificates now, so the first notification does not wait for them (and the TLS
    /// connection is warm for the first request).
    pub async fn connect(
        config: WechatPayConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ChannelError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ferrypay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ChannelError::Unavailable(format!("http client: {e}")))?;
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
            last_refresh: tokio::sync::Mutex::new(None),
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
    async fn verify_refreshing(
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

    /// Downloads `/v3/certificates`, decrypts them with the APIv3 key, checks the answer's
    /// signature with the certificate it names, and replaces the known certificates.
    pub async fn refresh_certificates(&self) -> Result<(), ChannelError> {
        let mut last = self.last_refresh.lock().await;
        let now = self.clock.now();
        if last.is_some_and(|t| now.unix() - t.unix() < CERTIFICATE_REFRESH_INTERVAL_SECS) {
            return Ok(());
        }
        let (headers, body) = self.send(&Method::GET, "/v3/certificates", None).await?;
        let certificates = CertificatesResponse::from_json(&body)
            .and_then(|response| response.decrypt(&self.apiv3_key))
            .map_err(|e| ChannelError::Unavailable(format!("certificates: {e}")))?;
        let mut fresh = KeyStore::new();
        for certificate in certificates {
            fresh.add_certificate(certificate.certificate);
        }
        let signed = WechatpayHeaders::from_header_map(&headers)
            .map_err(|e| ChannelError::Unavailable(format!("certificates answer unsigned: {e}")))?;
        fresh
            .verify(&signed, &body, now.unix())
            .map_err(|e| ChannelError::Unavailable(format!("certificates answer: {e}")))?;
        if let Ok(mut keys) = self.keys.write() {
            *keys = fresh;
        }
        *last = Some(now);
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
                Err(CallError::Channel(ChannelError::Unavailable(_))) => true,
                Err(CallError::Wechat { status, code, .. }) => {
                    *status >= 500 || *status == 429 || is_retryable_code(code)
                }
                Err(CallError::Channel(ChannelError::Rejected { .. })) => false,
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
        let unavailable = |what: String| CallError::Channel(ChannelError::Unavailable(what));
        let signed = self
            .signer
            .sign_with_random_nonce(
                method.as_str(),
                path_and_query,
                body.unwrap_or_default(),
                self.clock.now().unix(),
            )
            .map_err(|e| unavailable(format!("signing: {e}")))?;
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
            .map_err(|e| unavailable(format!("{path_and_query}: {e}")))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("{path_and_query}: reading the answer: {e}")))?;
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
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Verified, CallError> {
        let body = match body {
            Some(v) => Some(
                serde_json::to_vec(v)
                    .map_err(|e| CallError::Channel(ChannelError::Unavailable(e.to_string())))?,
            ),
            None => None,
        };
        let (headers, bytes) = self.send(&method, path_and_query, body.as_deref()).await?;
        let signed = WechatpayHeaders::from_header_map(&headers).map_err(|e| {
            CallError::Channel(ChannelError::Unavailable(format!(
                "{path_and_query}: answer not signed: {e}"
            )))
        })?;
        self.verify_refreshing(&signed, &bytes).await.map_err(|e| {
            tracing::error!(path = path_and_query, error = %e, "WeChat Pay answer failed verification");
            CallError::Channel(ChannelError::Unavailable(format!(
                "{path_and_query}: answer failed verification: {e}"
            )))
        })?;
        Ok(Verified { body: bytes })
    }

    fn out_trade_no_path(order_no: &OrderNo) -> String {
        // Our order numbers are [0-9A-Z]: nothing to percent-encode.
        format!("/v3/pay/transactions/out-trade-no/{}", order_no.as_str())
    }

    fn parse<T: for<'de> Deserialize<'de>>(verified: &Verified) -> Result<T, ChannelError> {
        serde_json::from_slice(&verified.body)
            .map_err(|e| ChannelError::Unavailable(format!("unreadable answer: {e}")))
    }

    fn trade_state(&self, tx: WxTransaction) -> Result<TradeState, ChannelError> {
        if tx.mchid.as_deref().is_some_and(|m| m != self.mchid)
            || tx.appid.as_deref().is_some_and(|a| a != self.appid)
        {
            return Err(ChannelError::Unavailable(format!(
                "transaction {} belongs to another merchant or app",
                tx.out_trade_no
            )));
        }
        Ok(match tx.trade_state {
            // REFUND: it was paid; the refund is a later event on a paid order.
            WxTradeState::Success | WxTradeState::Refund => {
                let transaction_id = tx.transaction_id.ok_or_else(|| {
                    ChannelError::Unavailable("paid transaction without transaction_id".into())
                })?;
                let amount = tx.amount.map(|a| Fen::new(a.total)).ok_or_else(|| {
                    ChannelError::Unavailable("paid transaction without amount".into())
                })?;
                let paid_at = tx
                    .success_time
                    .as_deref()
                    .and_then(Timestamp::parse_rfc3339)
                    .unwrap_or_else(|| self.clock.now());
                TradeState::Paid {
                    transaction_id,
                    paid_at,
                    amount,
                }
            }
            WxTradeState::Notpay | WxTradeState::Userpaying | WxTradeState::Accept => {
                TradeState::NotPaid
            }
            WxTradeState::Closed | WxTradeState::Revoked | WxTradeState::Payerror => {
                TradeState::Closed
            }
            WxTradeState::Unknown => {
                tracing::warn!(out_trade_no = %tx.out_trade_no, "unknown trade_state; treated as not paid");
                TradeState::NotPaid
            }
        })
    }
}

impl PayChannel for WechatPayClient {
    async fn prepay(&self, request: &PrepayRequest) -> Result<PayCredential, ChannelError> {
        let mut body = json!({
            "appid": self.appid,
            "mchid": self.mchid,
            "description": request.description,
            "out_trade_no": request.order_no.as_str(),
            "time_expire": request.expires_at.to_rfc3339_beijing(),
            "notify_url": self.notify_url,
            "amount": {"total": request.amount.get(), "currency": "CNY"},
        });
        let kind = match request.pay_type {
            PayType::Native => "native",
            PayType::Jsapi => {
                body["payer"] = json!({"openid": request.openid});
                "jsapi"
            }
            PayType::H5 => {
                body["scene_info"] = json!({
                    "payer_client_ip": request.client_ip,
                    "h5_info": {"type": "Wap"},
                });
                "h5"
            }
        };
        let verified = self
            .call(
                Method::POST,
                &format!("/v3/pay/transactions/{kind}"),
                Some(&body),
            )
            .await?;
        let answer: Value = Self::parse(&verified)?;
        let field = |name: &str| {
            answer
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ChannelError::Unavailable(format!("prepay answer without {name}")))
        };
        Ok(match request.pay_type {
            PayType::Native => PayCredential::Native {
                code_url: field("code_url")?,
            },
            PayType::Jsapi => PayCredential::Jsapi {
                prepay_id: field("prepay_id")?,
            },
            PayType::H5 => PayCredential::H5 {
                h5_url: field("h5_url")?,
            },
        })
    }

    async fn query(&self, order_no: &OrderNo) -> Result<TradeState, ChannelError> {
        let path = format!("{}?mchid={}", Self::out_trade_no_path(order_no), self.mchid);
        match self.call(Method::GET, &path, None).await {
            Ok(verified) => self.trade_state(Self::parse(&verified)?),
            Err(CallError::Wechat { code, .. })
                if code == "ORDER_NOT_EXIST" || code == "ORDERNOTEXIST" =>
            {
                Ok(TradeState::NotFound)
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn close(&self, order_no: &OrderNo) -> Result<CloseOutcome, ChannelError> {
        let path = format!("{}/close", Self::out_trade_no_path(order_no));
        let body = json!({"mchid": self.mchid});
        match self.call(Method::POST, &path, Some(&body)).await {
            Ok(_) => Ok(CloseOutcome::Closed),
            Err(CallError::Wechat { code, .. }) if code == "ORDERPAID" || code == "ORDER_PAID" => {
                Ok(CloseOutcome::AlreadyPaid)
            }
            Err(CallError::Wechat { code, .. })
                if matches!(
                    code.as_str(),
                    "ORDER_CLOSED" | "ORDERCLOSED" | "ORDER_NOT_EXIST" | "ORDERNOTEXIST"
                ) =>
            {
                Ok(CloseOutcome::Closed)
            }
            Err(err) => Err(err.into()),
        }
    }

    fn jsapi_params(&self, prepay_id: &str, now: Timestamp) -> Result<JsapiParams, ChannelError> {
        let nonce = nonce_str().map_err(|e| ChannelError::Unavailable(e.to_string()))?;
        jsapi_pay_params(
            &self.appid,
            prepay_id,
            now.unix(),
            &nonce,
            self.signer.key(),
        )
        .map_err(|e| ChannelError::Unavailable(format!("paySign: {e}")))
    }

    async fn open_notification(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<ChannelNotice, NoticeError> {
        let signed = WechatpayHeaders::from_header_map(headers)
            .map_err(|e| NoticeError::Unverified(e.to_string()))?;
        match self.verify_refreshing(&signed, body).await {
            Ok(()) => {}
            Err(VerifyError::UnknownSerial(serial)) if !self.public_key_mode => {
                // Possibly ours is stale and WeChat Pay unreachable: let it retry later.
                return Err(NoticeError::Unavailable(format!("unknown serial {serial}")));
            }
            Err(err) => return Err(NoticeError::Unverified(err.to_string())),
        }
        let notification =
            Notification::from_json(body).map_err(|e| NoticeError::Malformed(e.to_string()))?;
        if notification.event_type != "TRANSACTION.SUCCESS" {
            return Ok(ChannelNotice::Other {
                event_type: notification.event_type,
            });
        }
        let plaintext = notification
            .decrypt(&self.apiv3_key)
            .map_err(|e| NoticeError::Malformed(e.to_string()))?;
        let tx: WxTransaction = serde_json::from_str(&plaintext)
            .map_err(|e| NoticeError::Malformed(format!("transaction: {e}")))?;
        if tx.mchid.as_deref() != Some(self.mchid.as_str())
            || tx.appid.as_deref() != Some(self.appid.as_str())
        {
            return Err(NoticeError::WrongMerchant(format!(
                "mchid {:?} appid {:?}",
                tx.mchid, tx.appid
            )));
        }
        let paid_at = tx
            .success_time
            .as_deref()
            .and_then(Timestamp::parse_rfc3339);
        let amount = tx
            .amount
            .as_ref()
            .map(|a| Fen::new(a.total))
            .ok_or_else(|| NoticeError::Malformed("transaction without amount".into()))?;
        let trade = match tx.trade_state {
            WxTradeState::Success => NoticeTrade::Paid {
                // A payment is only ever recorded with the transaction that made it.
                transaction_id: tx.transaction_id.ok_or_else(|| {
                    NoticeError::Malformed("paid transaction without transaction_id".into())
                })?,
                amount,
                paid_at,
            },
            other => NoticeTrade::NotPaid {
                trade_state: other.as_str().to_string(),
            },
        };
        Ok(ChannelNotice::Payment(PaymentNotice {
            out_trade_no: tx.out_trade_no,
            trade,
        }))
    }
}
