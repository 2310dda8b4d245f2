//! A WeChat Pay APIv3 mock that speaks the real protocol: it checks our `Authorization`
//! signatures with the merchant's public key (bad or stale ones get WeChat's 401 `SIGN_ERROR`),
//! signs every answer with its own platform key, keeps order state (NOTPAY, SUCCESS, CLOSED), and
//! on a control request pays an order and sends the `TRANSACTION.SUCCESS` notification,
//! encrypted and signed as WeChat Pay does, retried while the answer is not 2xx.
//!
//! Endpoints: `POST /v3/pay/transactions/{native,jsapi,h5}`,
//! `GET /v3/pay/transactions/out-trade-no/{no}?mchid=`,
//! `POST /v3/pay/transactions/out-trade-no/{no}/close`, `GET /v3/certificates`.
//! Control (no signature, mock only): `POST /mock/pay` with `{"out_trade_no": ..., "notify":
//! true, "duplicates": 0, "tamper_signature": false, "amount": null, "stale_seconds": 0}`,
//! `POST /mock/fail` with `{"count": 2, "status": 500, "code": "SYSTEM_ERROR"}` (the next
//! API calls fail so), `GET /mock/orders/{no}`, `GET /mock/deliveries`.
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

use std::{
    collections::{HashMap, VecDeque},
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
    sign::constant_time_eq,
    wechat::{
        encrypt_resource,
        jsapi::{pay_sign_valid, JsapiPayParams},
        oauth::{plausible_openid, MAX_STATE_BYTES},
        sign_response,
        signer::random_alphanumeric,
        ApiV3Key, AuthorizationVerifier, Certificate, EncryptedCertificate, Notification,
        PrivateKey, VerifyingKey,
    },
};
use http::{header, Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{dev_keys, http_server};

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
        })
    }
}

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

/// One notification attempt, for tests and `GET /mock/deliveries`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub out_trade_no: String,
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// Faults a pay control request can ask for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayControl {
    pub out_trade_no: String,
    /// Send the notification (false: the lost-notification case).
    #[serde(default = "yes")]
    pub notify: bool,
    /// Extra copies of the notification, sent after the first.
    #[serde(default)]
    pub duplicates: u32,
    /// Corrupt the signature (still valid base64).
    #[serde(default)]
    pub tamper_signature: bool,
    /// Report this amount in the notification instead of the order's.
    #[serde(default)]
    pub amount: Option<i64>,
    /// Date the notification's signature this many seconds in the past.
    #[serde(default)]
    pub stale_seconds: i64,
}

fn yes() -> bool {
    true
}

/// Makes the next `count` API calls fail with this status and WeChat error code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailControl {
    pub count: u32,
    pub status: u16,
    pub code: String,
}

/// How far a JSAPI `timeStamp` may be from the mock's clock, either way (seconds).
pub const JSAPI_TIMESTAMP_SKEW_SECS: i64 = 300;

/// How long an OAuth code can be exchanged (WeChat: 5 minutes).
pub const OAUTH_CODE_TTL_SECS: i64 = 300;
/// The most OAuth calls remembered.
const MAX_OAUTH_CALLS: usize = 1000;

/// Which OAuth endpoint a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthEndpoint {
    Authorize,
    AccessToken,
}

/// One OAuth call, for tests and `GET /mock/oauth`. It never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OAuthCall {
    pub endpoint: OAuthEndpoint,
    /// The code issued (authorize) or presented (access_token).
    pub code: Option<String>,
    /// The state passed through (authorize).
    pub state: Option<String>,
    /// The openid the code stands for, when the call succeeded.
    pub openid: Option<String>,
    /// Authorize: the parameter refused (`appid`, `redirect_uri`, `response_type`, `scope`,
    /// `state`).
    pub refused: Option<&'static str>,
    /// Access token: the errcode answered.
    pub errcode: Option<i64>,
}

/// Changes to how the mock's OAuth answers (`POST /mock/oauth`); absent fields are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthControl {
    /// The payer's openid for the next authorizations.
    #[serde(default)]
    pub openid: Option<String>,
    /// Whether the next authorizations are in snapshot mode (`is_snapshotuser: 1`).
    #[serde(default)]
    pub snapshot_user: Option<bool>,
    /// How many next code exchanges answer `{"errcode": -1}` (system busy).
    #[serde(default)]
    pub busy: Option<u32>,
}

/// An OAuth code the mock issued.
#[derive(Debug, Clone)]
struct IssuedCode {
    openid: String,
    scope: String,
    snapshot_user: bool,
    issued_at: Timestamp,
    used: bool,
}

#[derive(Debug)]
struct OAuthState {
    openid: String,
    snapshot_user: bool,
    busy: u32,
    /// Codes younger than [`OAUTH_CODE_TTL_SECS`] (older ones are dropped at each authorize).
    codes: HashMap<String, IssuedCode>,
    calls: VecDeque<OAuthCall>,
}

impl OAuthState {
    fn record(&mut self, call: OAuthCall) {
        if self.calls.len() >= MAX_OAUTH_CALLS {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
    }

    fn settings(&self) -> Value {
        json!({
            "openid": self.openid,
            "snapshot_user": self.snapshot_user,
            "busy": self.busy,
            "calls": self.calls,
        })
    }
}

pub struct WechatMock {
    config: MockConfig,
    verifier: AuthorizationVerifier,
    clock: Arc<dyn Clock>,
    orders: Mutex<HashMap<String, MockOrder>>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    failures: Mutex<Option<FailControl>>,
    /// API calls answered (signature checked), failures included.
    calls: AtomicU64,
    counter: AtomicU64,
    http: reqwest::Client,
    oauth: Mutex<OAuthState>,
}

type Answer = http::Response<String>;
/// A notification ready to send: its body and its `Wechatpay-*` headers.
type SignedNotification = (String, Vec<(&'static str, String)>);

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
        let oauth = Mutex::new(OAuthState {
            openid: config.oauth_openid.clone(),
            snapshot_user: false,
            busy: 0,
            codes: HashMap::new(),
            calls: VecDeque::new(),
        });
        Ok(WechatMock {
            oauth,
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

    /// Every notification attempt so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// Makes the next API calls fail (after their signature is checked).
    pub fn fail_next(&self, control: FailControl) {
        if let Ok(mut f) = self.failures.lock() {
            *f = Some(control);
        }
    }

    /// API calls with a valid signature so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn injected_failure(&self) -> Option<Answer> {
        let mut failures = self.failures.lock().ok()?;
        let fail = failures.as_mut().filter(|f| f.count > 0)?;
        fail.count -= 1;
        let status = StatusCode::from_u16(fail.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = fail.code.clone();
        drop(failures);
        Some(self.error(status, &code, "injected failure"))
    }

    /// The mock's trade state of an order (`NOTPAY`, `SUCCESS`, `CLOSED`), if it has it.
    pub fn trade_state(&self, out_trade_no: &str) -> Option<&'static str> {
        self.orders
            .lock()
            .ok()?
            .get(out_trade_no)
            .map(|o| o.trade_state)
    }

    fn serial(&self) -> String {
        match &self.config.signing {
            SigningMode::PublicKey { id } => id.clone(),
            SigningMode::Certificate { pem } => Certificate::from_pem(pem)
                .map(|c| c.serial_no().to_string())
                .unwrap_or_default(),
        }
    }

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

    fn error(&self, status: StatusCode, code: &str, message: &str) -> Answer {
        self.signed(
            status,
            json!({"code": code, "message": message}).to_string(),
        )
    }

    pub async fn handle(self: &Arc<Self>, req: http::Request<Bytes>) -> Answer {
        let path = req.uri().path().to_string();
        if req.method() == Method::GET {
            // WeChat's OAuth hosts: no APIv3 signature there.
            match path.as_str() {
                "/connect/oauth2/authorize" => return self.oauth_authorize(req.uri().query()),
                "/sns/oauth2/access_token" => return self.oauth_access_token(req.uri().query()),
                _ => {}
            }
        }
        if let Some(control) = path.strip_prefix("/mock/") {
            return self.control(&req, control).await;
        }
        // WeChat Pay checks the signature before anything else.
        let canonical = req
            .uri()
            .path_and_query()
            .map_or(path.clone(), |pq| pq.as_str().to_string());
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(err) = self.verifier.verify(
            authorization,
            req.method().as_str(),
            &canonical,
            req.body(),
            self.clock.now().unix(),
        ) {
            let mut response = http::Response::new(err.to_json().to_string());
            *response.status_mut() =
                StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            return response;
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(failure) = self.injected_failure() {
            return failure;
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method(), segments.as_slice()) {
            (&Method::POST, ["v3", "pay", "transactions", kind @ ("native" | "jsapi" | "h5")]) => {
                self.prepay(kind, req.body())
            }
            (&Method::GET, ["v3", "pay", "transactions", "out-trade-no", no]) => {
                let mchid = req
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("mchid="))
                    .unwrap_or_default();
                if mchid != self.config.mchid {
                    return self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid 错误");
                }
                self.query(no)
            }
            (&Method::POST, ["v3", "pay", "transactions", "out-trade-no", no, "close"]) => {
                self.close(no, req.body())
            }
            (&Method::GET, ["v3", "certificates"]) => self.certificates(),
            _ => self.error(StatusCode::NOT_FOUND, "NOT_FOUND", "无效的请求"),
        }
    }

    fn prepay(&self, kind: &str, body: &[u8]) -> Answer {
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "请求体不是合法的JSON",
            );
        };
        let text = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or_default();
        if text("mchid") != self.config.mchid || text("appid") != self.config.appid {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "appid和mch_id不匹配",
            );
        }
        let out_trade_no = text("out_trade_no").to_string();
        let amount = request["amount"]["total"].as_i64().unwrap_or(0);
        let description = text("description");
        let notify_url = text("notify_url").to_string();
        let shape_ok = (6..=32).contains(&out_trade_no.len())
            && out_trade_no
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_-|*".contains(&c))
            && amount > 0
            && !description.is_empty()
            && description.chars().count() <= 127
            && notify_url.starts_with("http");
        if !shape_ok {
            return self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "参数错误");
        }
        let openid = request["payer"]["openid"].as_str().map(str::to_string);
        if kind == "jsapi" && openid.is_none() {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "缺少参数 payer.openid",
            );
        }
        if kind == "h5" && request["scene_info"]["payer_client_ip"].as_str().is_none() {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "缺少参数 scene_info",
            );
        }
        let time_expire = request["time_expire"]
            .as_str()
            .map(Timestamp::parse_rfc3339);
        if time_expire == Some(None) {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "字符串必须是符合 RFC3339 日期时间格式",
            );
        }
        let Ok(mut orders) = self.orders.lock() else {
            return self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误",
            );
        };
        if let Some(existing) = orders.get(&out_trade_no) {
            if existing.trade_state == "SUCCESS" {
                return self.error(StatusCode::FORBIDDEN, "ORDERPAID", "该订单已支付");
            }
            if existing.request != request || existing.kind != kind {
                return self.error(
                    StatusCode::BAD_REQUEST,
                    "OUT_TRADE_NO_USED",
                    "商户订单号重复",
                );
            }
            let (name, value) = existing.credential.clone();
            return self.signed(StatusCode::OK, json!({ name: value }).to_string());
        }
        let n = self.next();
        let prepay_id = format!("wx{}{:010}", self.clock.now().to_beijing_compact(), n);
        let credential = match kind {
            "native" => ("code_url".to_string(), format!("weixin://wxpay/bizpayurl?pr=mock{n:08}")),
            "jsapi" => ("prepay_id".to_string(), prepay_id),
            _ => (
                "h5_url".to_string(),
                format!("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={prepay_id}&package=1"),
            ),
        };
        orders.insert(
            out_trade_no,
            MockOrder {
                kind: kind.to_string(),
                request: request.clone(),
                amount,
                notify_url,
                openid,
                credential: credential.clone(),
                trade_state: "NOTPAY",
                transaction_id: None,
                success_time: None,
                time_expire: time_expire.flatten(),
            },
        );
        let (name, value) = credential;
        self.signed(StatusCode::OK, json!({ name: value }).to_string())
    }

    fn transaction_json(&self, no: &str, order: &MockOrder, reported_amount: i64) -> Value {
        let mut tx = json!({
            "appid": self.config.appid,
            "mchid": self.config.mchid,
            "out_trade_no": no,
            "trade_type": match order.kind.as_str() { "native" => "NATIVE", "jsapi" => "JSAPI", _ => "MWEB" },
            "trade_state": order.trade_state,
            "trade_state_desc": match order.trade_state { "SUCCESS" => "支付成功", "CLOSED" => "订单已关闭", _ => "订单未支付" },
            "attach": "",
            "amount": {"total": reported_amount, "currency": "CNY"},
        });
        if let (Some(id), Some(time)) = (&order.transaction_id, order.success_time) {
            tx["transaction_id"] = json!(id);
            tx["success_time"] = json!(time.to_rfc3339_beijing());
            tx["bank_type"] = json!("OTHERS");
            tx["amount"]["payer_total"] = json!(reported_amount);
            tx["amount"]["payer_currency"] = json!("CNY");
            tx["payer"] = json!({"openid": order.openid.clone().unwrap_or_else(|| "oMockPayer0000000000000000000".into())});
        }
        tx
    }

    fn query(&self, no: &str) -> Answer {
        let order = self.orders.lock().ok().and_then(|o| o.get(no).cloned());
        match order {
            Some(order) => {
                let tx = self.transaction_json(no, &order, order.amount);
                self.signed(StatusCode::OK, tx.to_string())
            }
            None => self.error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"),
        }
    }

    fn close(&self, no: &str, body: &[u8]) -> Answer {
        let mchid_ok = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["mchid"].as_str().map(|m| m == self.config.mchid))
            .unwrap_or(false);
        if !mchid_ok {
            return self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid 错误");
        }
        let Ok(mut orders) = self.orders.lock() else {
            return self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误",
            );
        };
        match orders.get_mut(no) {
            None => self.error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"),
            Some(order) if order.trade_state == "SUCCESS" => {
                self.error(StatusCode::BAD_REQUEST, "ORDERPAID", "订单已支付")
            }
            Some(order) => {
                order.trade_state = "CLOSED";
                self.signed(StatusCode::NO_CONTENT, String::new())
            }
        }
    }

    fn certificates(&self) -> Answer {
        let SigningMode::Certificate { pem } = &self.config.signing else {
            return self.error(StatusCode::NOT_FOUND, "NOT_FOUND", "使用微信支付公钥验签");
        };
        let nonce = random_alphanumeric(12).unwrap_or_default();
        let now = self.clock.now();
        let encrypted = EncryptedCertificate::encrypt(
            &self.config.apiv3_key,
            &nonce,
            pem,
            &now.plus_secs(-86_400).to_rfc3339_beijing(),
            &now.plus_secs(5 * 365 * 86_400).to_rfc3339_beijing(),
        );
        match encrypted {
            Ok(encrypted) => {
                let body = json!({ "data": [encrypted] });
                self.signed(StatusCode::OK, body.to_string())
            }
            Err(_) => self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误",
            ),
        }
    }

    async fn control(self: &Arc<Self>, req: &http::Request<Bytes>, path: &str) -> Answer {
        let json_answer = |status: StatusCode, body: Value| {
            let mut response = http::Response::new(body.to_string());
            *response.status_mut() = status;
            response
        };
        match (req.method(), path) {
            (&Method::POST, "pay") => match serde_json::from_slice::<PayControl>(req.body()) {
                Ok(control) => match self.pay(control).await {
                    Ok(body) => json_answer(StatusCode::OK, body),
                    Err(message) => json_answer(StatusCode::CONFLICT, json!({"error": message})),
                },
                Err(e) => json_answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
            },
            (&Method::POST, "fail") => match serde_json::from_slice::<FailControl>(req.body()) {
                Ok(control) => {
                    self.fail_next(control);
                    json_answer(StatusCode::OK, json!({"ok": true}))
                }
                Err(e) => json_answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
            },
            (&Method::POST, "jsapi/pay") => {
                json_answer(StatusCode::OK, self.jsapi_pay_answer(req.body()).await)
            }
            (&Method::GET, "deliveries") => json_answer(StatusCode::OK, json!(self.deliveries())),
            (&Method::POST, "oauth") => match serde_json::from_slice::<OAuthControl>(req.body()) {
                Ok(control) => match self.set_oauth(control) {
                    Ok(settings) => json_answer(StatusCode::OK, settings),
                    Err(message) => json_answer(StatusCode::BAD_REQUEST, json!({"error": message})),
                },
                Err(e) => json_answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
            },
            (&Method::GET, "oauth") => match self.oauth.lock() {
                Ok(oauth) => json_answer(StatusCode::OK, oauth.settings()),
                Err(_) => json_answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "lock poisoned"}),
                ),
            },
            (&Method::GET, other) if other.starts_with("orders/") => {
                let no = other.trim_start_matches("orders/");
                match self.orders.lock().ok().and_then(|o| o.get(no).cloned()) {
                    Some(order) => json_answer(
                        StatusCode::OK,
                        self.transaction_json(no, &order, order.amount),
                    ),
                    None => json_answer(StatusCode::NOT_FOUND, json!({"error": "no such order"})),
                }
            }
            _ => json_answer(StatusCode::NOT_FOUND, json!({"error": "unknown control"})),
        }
    }

    /// Changes how OAuth answers from now on; returns the settings and the calls so far.
    pub fn set_oauth(&self, control: OAuthControl) -> Result<Value, String> {
        if let Some(openid) = &control.openid {
            if !plausible_openid(openid) {
                return Err("openid: 1 to 128 characters, no control characters".into());
            }
        }
        let mut oauth = self.oauth.lock().map_err(|_| "lock poisoned".to_string())?;
        if let Some(openid) = control.openid {
            oauth.openid = openid;
        }
        if let Some(snapshot_user) = control.snapshot_user {
            oauth.snapshot_user = snapshot_user;
        }
        if let Some(busy) = control.busy {
            oauth.busy = busy;
        }
        Ok(oauth.settings())
    }

    /// Every OAuth call so far (the last 1000), oldest first.
    pub fn oauth_calls(&self) -> Vec<OAuthCall> {
        self.oauth
            .lock()
            .map(|o| o.calls.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `GET /connect/oauth2/authorize`: a silent authorization, 302 back with a fresh code.
    fn oauth_authorize(&self, query: Option<&str>) -> Answer {
        let params = query_params(query);
        let get = |name: &str| params.get(name).map(String::as_str);
        let state = get("state").unwrap_or_default().to_string();
        let redirect = get("redirect_uri")
            .and_then(|uri| url::Url::parse(uri).ok())
            .filter(|uri| matches!(uri.scheme(), "http" | "https") && uri.has_host());
        let scope = get("scope").unwrap_or_default().to_string();
        let refused = if get("appid") != Some(self.config.appid.as_str()) {
            Some(("appid", "appid 参数错误 (not the mock's appid)"))
        } else if redirect.is_none() {
            Some(("redirect_uri", "10003 redirect_uri 参数错误"))
        } else if get("response_type") != Some("code") {
            Some(("response_type", "response_type 参数错误 (must be code)"))
        } else if !matches!(scope.as_str(), "snsapi_base" | "snsapi_userinfo") {
            Some(("scope", "10005 scope 参数错误或没有 scope 权限"))
        } else if state.len() > MAX_STATE_BYTES {
            Some(("state", "state 参数错误 (at most 128 bytes)"))
        } else {
            None
        };
        let Ok(mut oauth) = self.oauth.lock() else {
            return oauth_page(StatusCode::INTERNAL_SERVER_ERROR, "系统错误");
        };
        let (Some(mut location), None) = (redirect, refused) else {
            let (param, message) = refused.unwrap_or(("redirect_uri", "参数错误"));
            oauth.record(OAuthCall {
                endpoint: OAuthEndpoint::Authorize,
                code: None,
                state: (state.len() <= MAX_STATE_BYTES).then_some(state),
                openid: None,
                refused: Some(param),
                errcode: None,
            });
            return oauth_page(StatusCode::BAD_REQUEST, message);
        };
        let Ok(code) = random_alphanumeric(32) else {
            return oauth_page(StatusCode::INTERNAL_SERVER_ERROR, "系统错误");
        };
        let now = self.clock.now();
        oauth
            .codes
            .retain(|_, issued| now.unix() - issued.issued_at.unix() < OAUTH_CODE_TTL_SECS);
        let openid = oauth.openid.clone();
        let snapshot_user = oauth.snapshot_user;
        oauth.codes.insert(
            code.clone(),
            IssuedCode {
                openid: openid.clone(),
                scope,
                snapshot_user,
                issued_at: now,
                used: false,
            },
        );
        oauth.record(OAuthCall {
            endpoint: OAuthEndpoint::Authorize,
            code: Some(code.clone()),
            state: Some(state.clone()),
            openid: Some(openid),
            refused: None,
            errcode: None,
        });
        drop(oauth);
        location
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &state);
        let mut response = http::Response::new(String::new());
        *response.status_mut() = StatusCode::FOUND;
        if let Ok(value) = header::HeaderValue::from_str(location.as_str()) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    }

    /// `GET /sns/oauth2/access_token`: a code for the payer's openid, once.
    fn oauth_access_token(&self, query: Option<&str>) -> Answer {
        let params = query_params(query);
        let code = params.get("code").cloned();
        let Ok(mut oauth) = self.oauth.lock() else {
            return oauth_json(&json!({"errcode": -1, "errmsg": "system error"}));
        };
        let result = self.exchange(&mut oauth, &params);
        let (body, openid, errcode) = match result {
            Ok((body, openid)) => (body, Some(openid), None),
            Err((errcode, errmsg)) => {
                let rid = format!("mock-{:08}", self.next());
                (
                    json!({"errcode": errcode, "errmsg": format!("{errmsg}, rid: {rid}")}),
                    None,
                    Some(errcode),
                )
            }
        };
        oauth.record(OAuthCall {
            endpoint: OAuthEndpoint::AccessToken,
            code,
            state: None,
            openid,
            refused: None,
            errcode,
        });
        oauth_json(&body)
    }

    /// Checks an exchange as WeChat does, in its order; uses the code up only on success.
    fn exchange(
        &self,
        oauth: &mut OAuthState,
        params: &HashMap<String, String>,
    ) -> Result<(Value, String), (i64, &'static str)> {
        let get = |name: &str| {
            params
                .get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        if oauth.busy > 0 {
            oauth.busy -= 1;
            return Err((-1, "system error"));
        }
        let appid = get("appid").ok_or((41002, "appid missing"))?;
        if appid != self.config.appid {
            return Err((40013, "invalid appid"));
        }
        let secret = get("secret").ok_or((41004, "appsecret missing"))?;
        if !constant_time_eq(
            secret.as_bytes(),
            self.config.oauth_secret.expose().as_bytes(),
        ) {
            return Err((40125, "invalid appsecret"));
        }
        let code = get("code").ok_or((41008, "missing code"))?;
        if get("grant_type") != Some("authorization_code") {
            return Err((40002, "invalid grant_type"));
        }
        let now = self.clock.now();
        let issued = oauth
            .codes
            .get_mut(code)
            .filter(|issued| now.unix() - issued.issued_at.unix() < OAUTH_CODE_TTL_SECS)
            .ok_or((40029, "invalid code"))?;
        if issued.used {
            return Err((40163, "code been used"));
        }
        issued.used = true;
        let n = self.next();
        let mut body = json!({
            "access_token": format!("MOCK_ACCESS_TOKEN_{n:08}"),
            "expires_in": 7200,
            "refresh_token": format!("MOCK_REFRESH_TOKEN_{n:08}"),
            "openid": issued.openid,
            "scope": issued.scope,
        });
        if issued.snapshot_user {
            body["is_snapshotuser"] = json!(1);
        }
        Ok((body, issued.openid.clone()))
    }

    /// The payer pays: NOTPAY becomes SUCCESS; then the notifications go out. Returns after the
    /// first attempt of each notification (their statuses), retries continue in the background.
    pub async fn pay(self: &Arc<Self>, control: PayControl) -> Result<Value, String> {
        let now = self.clock.now();
        let (order, transaction_id) = {
            let mut orders = self
                .orders
                .lock()
                .map_err(|_| "lock poisoned".to_string())?;
            let order = orders
                .get_mut(&control.out_trade_no)
                .ok_or("no such order")?;
            if order.trade_state != "NOTPAY" {
                return Err(format!("order is {}", order.trade_state));
            }
            if order.time_expire.is_some_and(|t| now >= t) {
                return Err("order expired".into());
            }
            let transaction_id = format!("42000{:023}", self.next());
            order.trade_state = "SUCCESS";
            order.transaction_id = Some(transaction_id.clone());
            order.success_time = Some(now);
            (order.clone(), transaction_id)
        };
        let mut statuses = Vec::new();
        if control.notify {
            let amount = control.amount.unwrap_or(order.amount);
            let plaintext = self
                .transaction_json(&control.out_trade_no, &order, amount)
                .to_string();
            for _ in 0..=control.duplicates {
                let notification = self.notification(&plaintext, &control)?;
                statuses.push(
                    self.deliver(&control.out_trade_no, &order.notify_url, notification)
                        .await,
                );
            }
        }
        Ok(json!({"transaction_id": transaction_id, "first_attempts": statuses}))
    }

    /// `POST /mock/jsapi/pay`: the bridge's answer to a raw request body.
    async fn jsapi_pay_answer(self: &Arc<Self>, body: &[u8]) -> Value {
        let result = match serde_json::from_slice::<JsapiPayParams>(body) {
            Ok(params) => self.jsapi_pay(&params).await,
            Err(e) => Err(format!("not the getBrandWCPayRequest object: {e}")),
        };
        match result {
            Ok(paid) => paid,
            Err(detail) => json!({"err_msg": "get_brand_wcpay_request:fail", "detail": detail}),
        }
    }

    /// The payer confirms a `getBrandWCPayRequest` in WeChat: checks the parameters as WeChat's
    /// client does, then pays the order as [`WechatMock::pay`] does (notification included).
    /// `Ok`: the bridge's `:ok` answer; `Err`: why it failed (nothing was paid).
    pub async fn jsapi_pay(self: &Arc<Self>, params: &JsapiPayParams) -> Result<Value, String> {
        if params.app_id != self.config.appid {
            return Err(format!("appId {:?} is not the mock's appid", params.app_id));
        }
        if params.sign_type != "RSA" {
            return Err(format!("signType {:?} is not RSA", params.sign_type));
        }
        let now = self.clock.now().unix();
        let time_stamp = params
            .time_stamp
            .parse::<i64>()
            .map_err(|_| format!("timeStamp {:?} is not Unix seconds", params.time_stamp))?;
        if (now - time_stamp).abs() > JSAPI_TIMESTAMP_SKEW_SECS {
            return Err(format!(
                "timeStamp {time_stamp} is more than {JSAPI_TIMESTAMP_SKEW_SECS} s from the mock's clock ({now})"
            ));
        }
        if !pay_sign_valid(&self.config.merchant_public_key, params) {
            return Err("paySign does not verify with the merchant's public key".into());
        }
        let prepay_id = params
            .package
            .strip_prefix("prepay_id=")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| format!("package {:?} is not prepay_id=...", params.package))?;
        let out_trade_no = {
            let orders = self
                .orders
                .lock()
                .map_err(|_| "lock poisoned".to_string())?;
            let (no, order) = orders
                .iter()
                .find(|(_, order)| {
                    order.kind == "jsapi"
                        && order.credential.0 == "prepay_id"
                        && order.credential.1 == prepay_id
                })
                .ok_or_else(|| format!("no JSAPI order has prepay_id {prepay_id}"))?;
            if order.trade_state != "NOTPAY" {
                return Err(format!("order {no} is {}", order.trade_state));
            }
            no.clone()
        };
        // pay() checks the state again under its own lock: a concurrent payment fails here.
        let paid = self
            .pay(PayControl {
                out_trade_no: out_trade_no.clone(),
                notify: true,
                ..PayControl::default()
            })
            .await?;
        Ok(json!({
            "err_msg": "get_brand_wcpay_request:ok",
            "out_trade_no": out_trade_no,
            "transaction_id": paid["transaction_id"],
        }))
    }

    /// An encrypted, signed notification: (body, headers).
    fn notification(
        &self,
        plaintext: &str,
        control: &PayControl,
    ) -> Result<SignedNotification, String> {
        let now = self.clock.now();
        let nonce = random_alphanumeric(12).map_err(|e| e.to_string())?;
        let resource = encrypt_resource(
            &self.config.apiv3_key,
            &nonce,
            "transaction",
            Some("transaction"),
            plaintext.as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        let notification = Notification {
            id: format!("EV-2018022511223320873{:08}", self.next()),
            create_time: now.to_rfc3339_beijing(),
            event_type: "TRANSACTION.SUCCESS".into(),
            resource_type: "encrypt-resource".into(),
            resource,
            summary: "支付成功".into(),
        };
        let body = notification.to_json().map_err(|e| e.to_string())?;
        let signed_at = now.unix() - control.stale_seconds;
        let sign_nonce = random_alphanumeric(32).map_err(|e| e.to_string())?;
        let mut signed = sign_response(
            &self.config.platform_key,
            &self.serial(),
            signed_at,
            &sign_nonce,
            body.as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        if control.tamper_signature {
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
    async fn deliver(
        self: &Arc<Self>,
        out_trade_no: &str,
        url: &str,
        (body, headers): SignedNotification,
    ) -> u16 {
        let first = self.attempt(out_trade_no, url, &body, &headers, 1).await;
        if !(200..300).contains(&first) {
            let mock = Arc::clone(self);
            let (no, url) = (out_trade_no.to_string(), url.to_string());
            tokio::spawn(async move {
                for (i, wait) in mock.config.notify_retry.clone().into_iter().enumerate() {
                    tokio::time::sleep(wait).await;
                    let attempt = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(2);
                    let status = mock.attempt(&no, &url, &body, &headers, attempt).await;
                    if (200..300).contains(&status) {
                        break;
                    }
                }
            });
        }
        first
    }

    async fn attempt(
        &self,
        out_trade_no: &str,
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
                attempt,
                status,
                error,
            });
        }
        status.unwrap_or(0)
    }
}

/// A query string's parameters, decoded; the first of repeated names wins.
fn query_params(query: Option<&str>) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params
}

/// WeChat's OAuth error page, small (it never echoes the request).
fn oauth_page(status: StatusCode, message: &str) -> Answer {
    let mut response = http::Response::new(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>微信网页授权 (ferrypay mock)</title></head>\
         <body><h1>授权失败</h1><p>{message}</p></body></html>\n"
    ));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// An OAuth JSON answer: always HTTP 200, as WeChat answers errors too.
fn oauth_json(body: &Value) -> Answer {
    let mut response = http::Response::new(body.to_string());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; encoding=utf-8"),
    );
    response
}

/// Changes one base64 character of a signature, keeping it valid base64.
fn tamper(signature: &str) -> String {
    let mut chars: Vec<char> = signature.chars().collect();
    if let Some(c) = chars.get_mut(10) {
        *c = if *c == 'A' { 'B' } else { 'A' };
    }
    chars.into_iter().collect()
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
