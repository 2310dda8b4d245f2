//! A WeChat Pay APIv3 mock that speaks the real protocol: it checks our `Authorization`
//! signatures with the merchant's public key (bad or stale ones get WeChat's 401 `SIGN_ERROR`),
//! signs every answer with its own platform key, keeps order state (NOTPAY, SUCCESS, CLOSED), and
//! on a control request pays an order and sends the `TRANSACTION.SUCCESS` notification,
//! encrypted and signed as WeChat Pay does, retried while the answer is not 2xx.
//!
//! Endpoints: `POST /v3/pay/transactions/{native,jsapi,h5}`,
//! `GET /v3/pay/transactions/out-trade-no/{no}?mchid=`,
//! `POST /v3/pay/transactions/out-trade-no/{no}/close`, `GET /v3/certificates`,
//! `POST /v3/refund/domestic/refunds`, `GET /v3/refund/domestic/refunds/{out_refund_no}`
//! (refunds: see `refund.rs`).
//! Control (no signature, mock only): `POST /mock/pay` with `{"out_trade_no": ..., "notify":
//! true, "duplicates": 0, "tamper_signature": false, "amount": null, "stale_seconds": 0}`,
//! `POST /mock/fail` with `{"count": 2, "status": 500, "code": "SYSTEM_ERROR", "delay_ms": 0,
//! "path_prefix": null}` (the next `count` API calls, of those whose path starts with
//! `path_prefix` if given, answer so after `delay_ms`; `status` 0 answers the real answer after
//! the delay, the call carried out: with a client timeout shorter than the delay, the case of
//! a refund made whose answer was lost), `GET /mock/orders/{no}`, `GET /mock/deliveries`.
//! Refunds: `POST /mock/refund` with `{"out_refund_no", "status": "SUCCESS"|"ABNORMAL"|"CLOSED",
//! "notify": true, "duplicates": 0, "tamper_signature": false, "stale_seconds": 0}` (a refund
//! reaches that state; the notification goes out), `POST /mock/refund/external` with
//! `{"out_trade_no", "amount", "status": "SUCCESS", "notify": true}` (a refund made in the
//! merchant platform, with WeChat's own `out_refund_no`), `POST /mock/refund/auto` with
//! `{"after_ms": 500, "status": "SUCCESS"}` (new refunds settle by themselves; `null`: off),
//! `GET /mock/refunds/{out_refund_no}`.
//!
//! The payer's WeChat client (`WeixinJSBridge.invoke('getBrandWCPayRequest', params, cb)`):
//! `POST /mock/jsapi/pay` with the object a page hands to the bridge, `{appId, timeStamp,
//! nonceStr, package, signType, paySign}`. The mock checks it as WeChat's client does: `appId`
//! is the mock's appid, `signType` is `RSA`, `timeStamp` is within +-5 minutes of the mock's
//! clock, `paySign` verifies with the merchant's public key (the one `Authorization` headers are
//! checked with) over `appId\ntimeStamp\nnonceStr\npackage\n`, and `package` is
//! `prepay_id=<a prepay id the mock issued>` of a JSAPI order still NOTPAY. Then it pays that
//! order as `/mock/pay` does (notification included) and answers `{"err_msg":
//! "get_brand_wcpay_request:ok", "out_trade_no", "transaction_id"}`. A failed check pays nothing
//! and answers `{"err_msg": "get_brand_wcpay_request:fail", "detail": "<why>"}`. Both are HTTP
//! 200, as the bridge's callback gets either (what a test's stand-in bridge passes on).
//!
//! WeChat OAuth (网页授权, the payer's openid; no signatures, as on WeChat's own hosts):
//! - `GET /connect/oauth2/authorize?appid=&redirect_uri=&response_type=code&scope=snsapi_base&state=`
//!   answers 302 to `redirect_uri` with `code=<fresh code>&state=<the same state>` appended
//!   (after its own query, if it has one). The appid must be the mock's, `response_type` `code`,
//!   `scope` `snsapi_base` or `snsapi_userinfo` (no consent page either way), `redirect_uri` an
//!   absolute http(s) URL, `state` at most 128 bytes; otherwise a small 400 error page. The code
//!   stands for the current payer (below).
//! - `GET /sns/oauth2/access_token?appid=&secret=&code=&grant_type=authorization_code` answers,
//!   always with HTTP 200, `{"access_token", "expires_in": 7200, "refresh_token", "openid",
//!   "scope"}` (plus `"is_snapshotuser": 1` for a snapshot-mode payer), or WeChat's error JSON:
//!   40013 wrong appid, 40125 wrong secret (the mock's OAuth secret, [`dev_keys::OAUTH_SECRET`]
//!   by default), 40002 wrong grant_type, 41002/41004/41008 appid/secret/code missing, 40163 a
//!   code used before, 40029 an unknown code or one older than 5 minutes (the mock's clock).
//!   A failed check does not use the code up.
//!
//! OAuth control: `POST /mock/oauth` with `{"openid": "o...", "snapshot_user": false, "busy": 0}`
//! (each optional, kept until changed) sets the payer's openid for the next authorizations
//! (default [`dev_keys::OAUTH_OPENID`]), whether their codes are snapshot-mode ones, and how many
//! next exchanges answer `-1` (system busy); it answers, like `GET /mock/oauth`, the current
//! settings and the OAuth calls so far (`calls`, newest last, at most 1000).
//!
//! By concern: `pay.rs` the APIv3 endpoints (prepay, query, close, certificates), `refund.rs`
//! refunds and their notifications, `oauth.rs`
//! WeChat OAuth, `control.rs` the `/mock/*` control requests and the payer's WeChat client,
//! `notify.rs` the notifications and their retries. This file routes and holds the shared state.

mod control;
mod notify;
mod oauth;
mod pay;
mod refund;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use ferrypay::{
    model::{Clock, Secret, Timestamp},
    wechat::{
        sign_response, signer::random_alphanumeric, ApiV3Key, AuthorizationVerifier, Certificate,
        PrivateKey, VerifyingKey,
    },
};
use http::{header, Method, StatusCode};
use serde_json::{json, Value};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{dev_keys, http_server};

pub use control::{FailControl, PayControl, JSAPI_TIMESTAMP_SKEW_SECS};
pub use notify::Delivery;
use oauth::OAuthState;
pub use oauth::{OAuthCall, OAuthControl, OAuthEndpoint, OAUTH_CODE_TTL_SECS};
use refund::MockRefund;
pub use refund::{ExternalRefundControl, RefundAuto, RefundAutoControl, RefundControl};

/// How the mock signs: with a WeChat Pay public key id, or as a platform certificate.
#[derive(Debug, Clone)]
pub enum SigningMode {
    PublicKey { id: String },
    Certificate { pem: String },
}

#[derive(Debug, Clone)]
pub struct MockConfig {
    pub mchid: String,
    pub appid: String,
    pub merchant_serial: String,
    pub merchant_public_key: VerifyingKey,
    pub platform_key: PrivateKey,
    pub signing: SigningMode,
    pub apiv3_key: ApiV3Key,
    /// Waits between notification attempts while the answer is not 2xx (WeChat Pay's own is
    /// 15s, 15s, 30s, 3m, 10m, 20m, 30m, ... over about a day; the mock's default is short).
    pub notify_retry: Vec<Duration>,
    /// The official account's AppSecret `/sns/oauth2/access_token` accepts.
    pub oauth_secret: Secret<String>,
    /// The payer's openid OAuth codes stand for until `POST /mock/oauth` says otherwise.
    pub oauth_openid: String,
    /// New refunds leave `PROCESSING` by themselves (None: only on `POST /mock/refund`).
    pub refund_auto: Option<RefundAuto>,
    /// WeChat Pay wants a minute between refunds of one order ("同一笔订单多次退款的请求需相隔1分钟");
    /// closer ones get 429 `FREQUENCY_LIMITED`. Zero (the dev default): no such limit.
    pub refund_min_interval: Duration,
}

impl MockConfig {
    /// The dev stack's notification retry waits, in seconds (short: a developer is watching).
    pub const DEV_NOTIFY_RETRY: [u64; 6] = [1, 2, 4, 8, 15, 30];

    /// The dev keys (public test keys), public-key mode, a short retry schedule.
    pub fn dev() -> Result<MockConfig, String> {
        let merchant_key =
            PrivateKey::from_pem(dev_keys::MERCHANT_PRIVATE_KEY).map_err(|e| e.to_string())?;
        Ok(MockConfig {
            mchid: dev_keys::MCHID.into(),
            appid: dev_keys::APPID.into(),
            merchant_serial: dev_keys::MERCHANT_SERIAL.into(),
            merchant_public_key: merchant_key.verifying_key().map_err(|e| e.to_string())?,
            platform_key: PrivateKey::from_pem(dev_keys::PLATFORM_PRIVATE_KEY)
                .map_err(|e| e.to_string())?,
            signing: SigningMode::PublicKey {
                id: dev_keys::PLATFORM_PUBLIC_KEY_ID.into(),
            },
            apiv3_key: dev_keys::APIV3_KEY.parse().map_err(|e| format!("{e}"))?,
            notify_retry: Self::DEV_NOTIFY_RETRY.map(Duration::from_secs).to_vec(),
            oauth_secret: Secret::new(dev_keys::OAUTH_SECRET.into()),
            oauth_openid: dev_keys::OAUTH_OPENID.into(),
            refund_auto: None,
            refund_min_interval: Duration::ZERO,
        })
    }
}

/// An order as the mock keeps it: the prepay request, its credential, its trade state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MockOrder {
    kind: String,
    request: Value,
    amount: i64,
    notify_url: String,
    openid: Option<String>,
    credential: (String, String),
    trade_state: &'static str,
    transaction_id: Option<String>,
    success_time: Option<Timestamp>,
    time_expire: Option<Timestamp>,
}

/// The mock's state, shared by every request (see the module doc).
pub struct WechatMock {
    config: MockConfig,
    verifier: AuthorizationVerifier,
    clock: Arc<dyn Clock>,
    orders: Mutex<HashMap<String, MockOrder>>,
    /// Refunds by `out_refund_no`. Lock order: `orders` first, then `refunds`.
    refunds: Mutex<HashMap<String, MockRefund>>,
    refund_auto: Mutex<Option<RefundAuto>>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    failures: Mutex<Option<FailControl>>,
    /// API calls answered (signature checked), failures included.
    calls: AtomicU64,
    counter: AtomicU64,
    http: reqwest::Client,
    oauth: Mutex<OAuthState>,
}

/// Every answer: WeChat Pay's bodies are small JSON (or HTML for the OAuth error page).
type Answer = http::Response<String>;

impl WechatMock {
    pub fn new(config: MockConfig, clock: Arc<dyn Clock>) -> Result<WechatMock, String> {
        let verifier = AuthorizationVerifier::new().with_merchant(
            &config.mchid,
            &config.merchant_serial,
            config.merchant_public_key.clone(),
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let oauth = Mutex::new(OAuthState::new(config.oauth_openid.clone()));
        Ok(WechatMock {
            oauth,
            refunds: Mutex::default(),
            refund_auto: Mutex::new(config.refund_auto.clone()),
            config,
            verifier,
            clock,
            orders: Mutex::default(),
            deliveries: Arc::default(),
            failures: Mutex::default(),
            calls: AtomicU64::new(0),
            counter: AtomicU64::new(0),
            http,
        })
    }

    /// The `Wechatpay-Serial` the mock signs with.
    fn serial(&self) -> String {
        match &self.config.signing {
            SigningMode::PublicKey { id } => id.clone(),
            SigningMode::Certificate { pem } => Certificate::from_pem(pem)
                .map(|c| c.serial_no().to_string())
                .unwrap_or_default(),
        }
    }

    /// A fresh number for ids (prepay ids, transaction ids, notification ids).
    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// An answer signed with the platform key, as WeChat Pay signs all of its answers.
    fn signed(&self, status: StatusCode, body: String) -> Answer {
        let nonce = random_alphanumeric(32).unwrap_or_else(|_| "nonce".into());
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        if !response.body().is_empty() {
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
        }
        let signed = sign_response(
            &self.config.platform_key,
            &self.serial(),
            self.clock.now().unix(),
            &nonce,
            response.body().as_bytes(),
        );
        if let Ok(signed) = signed {
            for (name, value) in signed.to_pairs() {
                if let Ok(value) = header::HeaderValue::from_str(value) {
                    response.headers_mut().insert(name, value);
                }
            }
        }
        response
    }

    /// WeChat Pay's error answer, `{"code", "message"}`, signed.
    fn error(&self, status: StatusCode, code: &str, message: &str) -> Answer {
        self.signed(
            status,
            json!({"code": code, "message": message}).to_string(),
        )
    }

    /// Routes a request: WeChat's OAuth hosts, the mock's control requests, else the APIv3.
    pub async fn handle(self: &Arc<Self>, req: http::Request<Bytes>) -> Answer {
        let path = req.uri().path();
        if req.method() == Method::GET {
            // WeChat's OAuth hosts: no APIv3 signature there.
            match path {
                "/connect/oauth2/authorize" => return self.oauth_authorize(req.uri().query()),
                "/sns/oauth2/access_token" => return self.oauth_access_token(req.uri().query()),
                _ => {}
            }
        }
        if let Some(control) = path.strip_prefix("/mock/") {
            return self.control(&req, control).await;
        }
        self.api(&req).await
    }
}

/// A running mock server. Dropping it stops the server.
pub struct MockServer {
    pub addr: SocketAddr,
    pub mock: Arc<WechatMock>,
    server: JoinHandle<()>,
}

impl MockServer {
    pub async fn start(
        listen: SocketAddr,
        config: MockConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<MockServer, String> {
        let mock = Arc::new(WechatMock::new(config, clock)?);
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let served = Arc::clone(&mock);
        let server = http_server::serve(listener, move |req, _peer| {
            let mock = Arc::clone(&served);
            async move { mock.handle(req).await }
        });
        Ok(MockServer { addr, mock, server })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}
