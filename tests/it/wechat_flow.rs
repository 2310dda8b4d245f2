//! WeChat Pay end to end over the dev stack: the real APIv3 client, the protocol-faithful mock,
//! the notification callback, the webhook queue. Faults: duplicated, tampered, stale and
//! wrong-amount notifications, lost notifications, close racing payment, upstream failures; and
//! the payer's WeChat client confirming a JSAPI pay request (`/mock/jsapi/pay`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::harness;
use base64::{engine::general_purpose::STANDARD, Engine};
use ferrypay::{
    channel::{ChannelError, NoticeError, PayChannel, PrepayRequest, TradeState},
    model::{Clock, Fen, OrderNo, OrderStatus, PayType, Secret, SystemClock, Timestamp},
    service::{NewMerchant, ServiceConfig, WebhookJob},
    store::prelude::*,
    testing::{ReceivedRequest, Reply, TestReceiver},
    wechat::{
        client::ClientError, encrypt_resource, jsapi::jsapi_message, jsapi_pay_params,
        sign_response, ApiV3Key, Notification, PrivateKey, WechatPayClient,
    },
};
use ferrypay_cli::{
    dev::{mock_client_config, DevOptions, DevStack, DevWechat},
    dev_keys,
    wechat_mock::{FailControl, MockConfig, MockServer, SigningMode},
};
use serde_json::{json, Value};

const SK: &str = "sk_test_wechat_flow";

/// The end-to-end dev stack (harness::dev_options) without a rate limit, its mock retrying a
/// notification twice.
fn options(public_url: Option<String>) -> DevOptions {
    let options = harness::dev_options(NewMerchant {
        name: "Flow Shop".into(),
        secret_key: Some(Secret::new(SK.into())),
        ..NewMerchant::default()
    });
    DevOptions {
        public_url,
        config: ServiceConfig {
            rate_limit_per_minute: None,
            ..options.config
        },
        wechat: DevWechat::Mock {
            listen: "127.0.0.1:0".parse().unwrap(),
            notify_retry: vec![Duration::from_millis(100), Duration::from_millis(200)],
        },
        ..options
    }
}

struct Flow {
    stack: DevStack,
    http: reqwest::Client,
}

impl Flow {
    async fn start() -> Flow {
        Self::with(options(None)).await
    }

    async fn with(options: DevOptions) -> Flow {
        Flow {
            stack: DevStack::start(options).await.unwrap(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    fn mock(&self) -> &MockServer {
        self.stack.mock.as_ref().unwrap()
    }

    async fn api(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}{path}", self.stack.base_url()))
            .header("X-API-Key", SK)
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    async fn create(&self, body: Value) -> String {
        let (status, created) = self.api("/api/v1/pay/create", body).await;
        assert_eq!(status, 200, "{created}");
        created["order_no"].as_str().unwrap().to_string()
    }

    /// The mock's control: the payer pays, with optional faults.
    async fn pay(&self, control: Value) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}/mock/pay", self.mock().base_url()))
            .json(&control)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    /// The order as stored, without query-through (to see what notifications did).
    async fn stored(&self, no: &str) -> ferrypay::model::Order {
        self.stack
            .app
            .store
            .get_order(&OrderNo::parse(no).unwrap())
            .await
            .unwrap()
            .unwrap()
    }

    async fn query(&self, no: &str) -> Value {
        let (status, body) = self.api("/api/v1/pay/query", json!({"order_no": no})).await;
        assert_eq!(status, 200, "{body}");
        body["order"].clone()
    }

    /// Webhook jobs queued for an order.
    fn jobs(&self, no: &str) -> Vec<WebhookJob> {
        self.stack
            .app
            .queue
            .bodies()
            .iter()
            .map(|b| serde_json::from_str::<WebhookJob>(b).unwrap())
            .filter(|job| job.order_no.as_str() == no)
            .collect()
    }
}

async fn wait_until<F: Fn() -> bool>(what: &str, condition: F) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn native_order_paid_through_the_mock_queues_exactly_one_webhook() {
    let f = Flow::start().await;
    let no = f
        .create(json!({"amount": 1990, "description": "咖啡"}))
        .await;
    assert_eq!(f.mock().mock.trade_state(&no), Some("NOTPAY"));
    let (status, paid) = f.pay(json!({"out_trade_no": no})).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["first_attempts"], json!([204]));
    let order = f.stored(&no).await;
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(
        order.transaction_id.as_deref(),
        paid["transaction_id"].as_str()
    );
    assert!(order.paid_at.is_some() && order.webhook.queued_at.is_some());
    let jobs = f.jobs(&no);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].event, "order.paid");
    assert_eq!(jobs[0].event_id, format!("evt_{no}_paid"));
    assert_eq!(jobs[0].v, 1);
    assert_eq!(f.query(&no).await["status"], "paid");
    assert_eq!(
        f.jobs(&no).len(),
        1,
        "a query of a paid order queues nothing more"
    );
}

#[tokio::test]
async fn jsapi_order_has_a_valid_pay_sign_and_is_paid_through_the_mock() {
    let f = Flow::start().await;
    let (status, created) = f
        .api(
            "/api/v1/pay/create",
            json!({"amount": 1, "pay_type": "jsapi", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let p = &created["jsapi"];
    assert_eq!(p["appId"], dev_keys::APPID);
    assert!(p["package"].as_str().unwrap().starts_with("prepay_id=wx"));
    // paySign is RSA-SHA256 over appId\ntimeStamp\nnonceStr\npackage\n with the merchant key.
    let message = jsapi_message(
        p["appId"].as_str().unwrap(),
        p["timeStamp"].as_str().unwrap(),
        p["nonceStr"].as_str().unwrap(),
        p["package"].as_str().unwrap(),
    );
    let merchant_public = PrivateKey::from_pem(dev_keys::MERCHANT_PRIVATE_KEY)
        .unwrap()
        .verifying_key()
        .unwrap();
    let signature = STANDARD.decode(p["paySign"].as_str().unwrap()).unwrap();
    assert!(merchant_public.verify(message.as_bytes(), &signature));

    let no = created["order_no"].as_str().unwrap();
    let (_, paid) = f.pay(json!({"out_trade_no": no})).await;
    assert_eq!(paid["first_attempts"], json!([204]));
    assert_eq!(f.stored(no).await.status, OrderStatus::Paid);
    assert_eq!(f.jobs(no).len(), 1);
}

impl Flow {
    /// A JSAPI order through the API: its order number and its `getBrandWCPayRequest` object.
    async fn create_jsapi(&self, amount: i64) -> (String, Value) {
        let (status, created) = self
            .api(
                "/api/v1/pay/create",
                json!({"amount": amount, "pay_type": "jsapi", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}),
            )
            .await;
        assert_eq!(status, 200, "{created}");
        (
            created["order_no"].as_str().unwrap().to_string(),
            created["jsapi"].clone(),
        )
    }

    /// The payer's WeChat client confirms the pay request: the mock's `/mock/jsapi/pay`.
    async fn jsapi_pay(&self, params: &Value) -> Value {
        let res = self
            .http
            .post(format!("{}/mock/jsapi/pay", self.mock().base_url()))
            .json(params)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "the bridge always answers 200");
        res.json().await.unwrap()
    }

    /// Asserts the bridge said fail (with a detail containing `why`) and nothing was paid.
    async fn assert_refused(&self, answer: &Value, why: &str, no: &str) {
        assert_eq!(
            answer["err_msg"], "get_brand_wcpay_request:fail",
            "{answer}"
        );
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{detail:?} should mention {why:?}");
        assert_eq!(self.mock().mock.trade_state(no), Some("NOTPAY"));
        assert_eq!(self.stored(no).await.status, OrderStatus::Pending);
        assert!(self.jobs(no).is_empty());
    }
}

/// Pay parameters for `prepay_id`, signed with `key` at `timestamp` (what a merchant server
/// could hand a page).
fn signed_params(prepay_id: &str, timestamp: i64, key: &PrivateKey) -> Value {
    serde_json::to_value(
        jsapi_pay_params(dev_keys::APPID, prepay_id, timestamp, "n0nceStr", key).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_mock_pays_a_jsapi_request_as_the_wechat_client_would() {
    let f = Flow::start().await;
    let (no, params) = f.create_jsapi(2500).await;
    assert_eq!(f.mock().mock.trade_state(&no), Some("NOTPAY"));
    let answer = f.jsapi_pay(&params).await;
    assert_eq!(answer["err_msg"], "get_brand_wcpay_request:ok", "{answer}");
    assert_eq!(answer["out_trade_no"], no.as_str());
    assert_eq!(f.mock().mock.trade_state(&no), Some("SUCCESS"));
    // Paid as /mock/pay pays: the notification reached ferrypay, which queued the webhook.
    let order = f.stored(&no).await;
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(
        order.transaction_id.as_deref(),
        answer["transaction_id"].as_str()
    );
    let jobs = f.jobs(&no);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].event, "order.paid");
    let deliveries = f.mock().mock.deliveries();
    assert!(
        deliveries
            .iter()
            .any(|d| d.out_trade_no == no && d.status == Some(204)),
        "{deliveries:?}"
    );

    // The same request again: the order is paid, the bridge says fail, nothing more happens.
    let again = f.jsapi_pay(&params).await;
    assert_eq!(again["err_msg"], "get_brand_wcpay_request:fail", "{again}");
    assert!(
        again["detail"].as_str().unwrap().contains("SUCCESS"),
        "{again}"
    );
    assert_eq!(f.jobs(&no).len(), 1);
    assert_eq!(f.stored(&no).await.transaction_id, order.transaction_id);
}

#[tokio::test]
async fn the_mock_refuses_jsapi_requests_wechat_would_refuse() {
    let f = Flow::start().await;
    let (no, params) = f.create_jsapi(300).await;
    let key = PrivateKey::from_pem(dev_keys::MERCHANT_PRIVATE_KEY).unwrap();
    let now = SystemClock.now().unix();
    let prepay_id = params["package"]
        .as_str()
        .unwrap()
        .strip_prefix("prepay_id=")
        .unwrap()
        .to_string();

    let mut tampered = params.clone();
    let sign = tampered["paySign"].as_str().unwrap();
    let flipped = if sign.starts_with('A') { "B" } else { "A" };
    tampered["paySign"] = json!(format!("{flipped}{}", &sign[1..]));
    f.assert_refused(&f.jsapi_pay(&tampered).await, "paySign", &no)
        .await;

    let mut other_app = params.clone();
    other_app["appId"] = json!("wx0000000000000000");
    f.assert_refused(&f.jsapi_pay(&other_app).await, "appId", &no)
        .await;

    let mut md5 = params.clone();
    md5["signType"] = json!("MD5");
    f.assert_refused(&f.jsapi_pay(&md5).await, "signType", &no)
        .await;

    // Correctly signed, but for a prepay id the mock never issued.
    let unknown = signed_params("wx20251221103000000000000099", now, &key);
    f.assert_refused(&f.jsapi_pay(&unknown).await, "no JSAPI order", &no)
        .await;

    // Correctly signed by another key (not the merchant's).
    let other_key = PrivateKey::from_pem(dev_keys::PLATFORM_PRIVATE_KEY).unwrap();
    let foreign = signed_params(&prepay_id, now, &other_key);
    f.assert_refused(&f.jsapi_pay(&foreign).await, "paySign", &no)
        .await;

    // A timestamp more than 5 minutes off, either way; 5 minutes is still fine.
    for stale in [now - 400, now + 400] {
        let stale = signed_params(&prepay_id, stale, &key);
        f.assert_refused(&f.jsapi_pay(&stale).await, "timeStamp", &no)
            .await;
    }
    let mut missing = params.clone();
    missing.as_object_mut().unwrap().remove("nonceStr");
    f.assert_refused(&f.jsapi_pay(&missing).await, "nonceStr", &no)
        .await;

    // After all that, a genuine request (signed 290 s ago) still pays, once.
    let late = signed_params(&prepay_id, now - 290, &key);
    let answer = f.jsapi_pay(&late).await;
    assert_eq!(answer["err_msg"], "get_brand_wcpay_request:ok", "{answer}");
    assert_eq!(f.stored(&no).await.status, OrderStatus::Paid);
    assert_eq!(f.jobs(&no).len(), 1);
}

#[tokio::test]
async fn h5_order_gets_an_h5_url_from_the_mock() {
    let f = Flow::start().await;
    let (status, created) = f
        .api(
            "/api/v1/pay/create",
            json!({"amount": 5, "pay_type": "h5", "client_ip": "203.0.113.7"}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert!(created["h5_url"]
        .as_str()
        .unwrap()
        .starts_with("https://wx.tenpay.com/"));
}

#[tokio::test]
async fn duplicated_notifications_change_nothing() {
    let f = Flow::start().await;
    let no = f.create(json!({"amount": 300})).await;
    let (_, paid) = f.pay(json!({"out_trade_no": no, "duplicates": 3})).await;
    assert_eq!(paid["first_attempts"], json!([204, 204, 204, 204]));
    let order = f.stored(&no).await;
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(f.jobs(&no).len(), 1, "duplicates queue no second webhook");
}

#[tokio::test]
async fn a_tampered_signature_is_refused_and_changes_nothing() {
    let f = Flow::start().await;
    let no = f.create(json!({"amount": 300})).await;
    let (_, paid) = f
        .pay(json!({"out_trade_no": no, "tamper_signature": true}))
        .await;
    assert_eq!(paid["first_attempts"], json!([401]));
    assert_eq!(f.stored(&no).await.status, OrderStatus::Pending);
    assert!(f.jobs(&no).is_empty());
    // WeChat Pay's own record still says paid: query-through settles it (and queues the webhook).
    assert_eq!(f.query(&no).await["status"], "paid");
    assert_eq!(f.jobs(&no).len(), 1);
}

#[tokio::test]
async fn stale_notifications_are_refused_but_300_seconds_is_accepted() {
    let f = Flow::start().await;
    let stale = f.create(json!({"amount": 300})).await;
    let (_, paid) = f
        .pay(json!({"out_trade_no": stale, "stale_seconds": 400}))
        .await;
    assert_eq!(paid["first_attempts"], json!([401]));
    assert_eq!(f.stored(&stale).await.status, OrderStatus::Pending);

    let late = f.create(json!({"amount": 300})).await;
    let (_, paid) = f
        .pay(json!({"out_trade_no": late, "stale_seconds": 290}))
        .await;
    assert_eq!(paid["first_attempts"], json!([204]));
    assert_eq!(f.stored(&late).await.status, OrderStatus::Paid);
}

#[tokio::test]
async fn a_wrong_amount_is_an_anomaly_never_a_payment() {
    let f = Flow::start().await;
    let no = f.create(json!({"amount": 10000})).await;
    let (_, paid) = f.pay(json!({"out_trade_no": no, "amount": 1})).await;
    // Acknowledged (a retry would not fix it), logged as an anomaly, nothing written.
    assert_eq!(paid["first_attempts"], json!([204]));
    let order = f.stored(&no).await;
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.transaction_id, None);
    assert!(f.jobs(&no).is_empty());
}

#[tokio::test]
async fn a_lost_notification_is_settled_by_query_through() {
    let f = Flow::start().await;
    let no = f
        .create(json!({"amount": 450, "out_trade_no": "lost-1"}))
        .await;
    let (_, paid) = f.pay(json!({"out_trade_no": no, "notify": false})).await;
    assert_eq!(paid["first_attempts"], json!([]));
    assert_eq!(f.stored(&no).await.status, OrderStatus::Pending);
    let order = f.query(&no).await;
    assert_eq!(order["status"], "paid");
    assert_eq!(order["transaction_id"], paid["transaction_id"]);
    assert_eq!(f.jobs(&no).len(), 1);
    f.query(&no).await;
    assert_eq!(f.jobs(&no).len(), 1);
}

#[tokio::test]
async fn close_racing_a_payment_records_the_payment_and_answers_409() {
    let f = Flow::start().await;
    let no = f.create(json!({"amount": 800})).await;
    // The payer paid; the notification is still on its way.
    f.pay(json!({"out_trade_no": no, "notify": false})).await;
    let (status, body) = f.api("/api/v1/pay/close", json!({"order_no": no})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("order_paid")),
        "{body}"
    );
    assert_eq!(f.stored(&no).await.status, OrderStatus::Paid);
    assert_eq!(f.jobs(&no).len(), 1);

    // The other order of events: closed first, then the payer cannot pay.
    let closed = f.create(json!({"amount": 800})).await;
    let (status, body) = f
        .api("/api/v1/pay/close", json!({"order_no": closed}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(f.mock().mock.trade_state(&closed), Some("CLOSED"));
    let (status, _) = f.pay(json!({"out_trade_no": closed})).await;
    assert_eq!(status, 409);
    assert_eq!(f.query(&closed).await["status"], "closed");
}

#[tokio::test]
async fn notifications_are_retried_until_answered_2xx() {
    // A proxy in front of the dev stack that fails the first notification.
    let stack_addr = Arc::new(std::sync::Mutex::new(String::new()));
    let target = Arc::clone(&stack_addr);
    let proxy = TestReceiver::serve(move |req: ReceivedRequest| {
        let target = Arc::clone(&target);
        async move {
            let path = req.path.split('?').next().unwrap_or_default();
            let url = format!("{}{path}", target.lock().unwrap());
            let mut forward = reqwest::Client::new().post(url).body(req.body);
            for (name, value) in &req.headers {
                if name != http::header::HOST.as_str() {
                    forward = forward.header(name, value);
                }
            }
            let res = forward.send().await.unwrap();
            Reply::status(204).body(&res.text().await.unwrap())
        }
    })
    .await;
    proxy.script([Reply::status(503).body("{\"code\":\"FAIL\"}")]);
    let proxy_url = format!("http://{}", proxy.addr());
    let f = Flow::with(options(Some(proxy_url))).await;
    *stack_addr.lock().unwrap() = f.stack.base_url();
    let no = f.create(json!({"amount": 700})).await;
    let (_, paid) = f.pay(json!({"out_trade_no": no})).await;
    assert_eq!(paid["first_attempts"], json!([503]));
    let mock = Arc::clone(&f.mock().mock);
    let no2 = no.clone();
    wait_until("the retried notification", move || {
        mock.deliveries()
            .iter()
            .any(|d| d.out_trade_no == no2 && d.attempt == 2 && d.status == Some(204))
    })
    .await;
    assert_eq!(f.stored(&no).await.status, OrderStatus::Paid);
    assert_eq!(f.jobs(&no).len(), 1);
}

#[tokio::test]
async fn the_client_retries_transient_failures_but_not_refusals() {
    let f = Flow::start().await;
    let mock = &f.mock().mock;
    let fail = |count, status: u16, code: &str| FailControl {
        count,
        status,
        code: code.into(),
        ..FailControl::default()
    };

    mock.fail_next(fail(2, 500, "SYSTEM_ERROR"));
    let before = mock.calls();
    f.create(json!({"amount": 100})).await;
    assert_eq!(mock.calls() - before, 3, "two failures, then success");

    mock.fail_next(fail(1, 429, "FREQUENCY_LIMITED"));
    let before = mock.calls();
    f.create(json!({"amount": 100})).await;
    assert_eq!(mock.calls() - before, 2);

    mock.fail_next(fail(1, 400, "PARAM_ERROR"));
    let before = mock.calls();
    let (status, body) = f.api("/api/v1/pay/create", json!({"amount": 100})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (502, Some("payment_failed"))
    );
    assert_eq!(
        body["error"], "Payment service unavailable",
        "WeChat's message is not shown"
    );
    assert_eq!(mock.calls() - before, 1, "a parameter error is not retried");

    mock.fail_next(fail(10, 503, "SYSTEM_ERROR"));
    let before = mock.calls();
    let (status, body) = f.api("/api/v1/pay/create", json!({"amount": 100})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("payment_unavailable"))
    );
    assert_eq!(mock.calls() - before, 3, "three attempts in all");
    mock.fail_next(fail(0, 500, "SYSTEM_ERROR"));
}

fn prepay_request(no: &str) -> PrepayRequest {
    PrepayRequest {
        order_no: OrderNo::parse(no).unwrap(),
        amount: Fen::new(100),
        description: "Test".into(),
        pay_type: PayType::Native,
        openid: None,
        client_ip: None,
        expires_at: Timestamp::from_unix(4_102_444_800),
    }
}

async fn mock_and_client(
    configure_mock: impl FnOnce(&mut MockConfig),
    configure_client: impl FnOnce(&mut ferrypay::wechat::WechatPayConfig),
) -> (MockServer, Result<WechatPayClient, ClientError>) {
    let mut config = MockConfig::dev().unwrap();
    configure_mock(&mut config);
    let mock = MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        config,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let mut client_config =
        mock_client_config(mock.base_url(), "http://127.0.0.1:9/notify".into()).unwrap();
    configure_client(&mut client_config);
    let client = WechatPayClient::connect(client_config, Arc::new(SystemClock)).await;
    (mock, client)
}

#[tokio::test]
async fn a_request_signed_with_the_wrong_key_gets_sign_error() {
    let (_mock, client) = mock_and_client(
        |_| {},
        |c| {
            c.private_key = PrivateKey::from_pem(include_str!(
                "../../shared/tests/fixtures/wechatpay/go_testkey_pkcs8.pem"
            ))
            .unwrap();
        },
    )
    .await;
    let err = client
        .unwrap()
        .prepay(&prepay_request("FP20251221103000SIGN01"))
        .await
        .unwrap_err();
    match err {
        ChannelError::Rejected { code, .. } => assert_eq!(code, "SIGN_ERROR"),
        other => panic!("expected SIGN_ERROR, got {other:?}"),
    }
}

#[tokio::test]
async fn an_answer_not_signed_by_wechat_pay_is_not_believed() {
    // The client expects another platform key than the one the mock signs with.
    let (_mock, client) = mock_and_client(
        |_| {},
        |c| {
            let other = PrivateKey::from_pem(include_str!(
                "../../shared/tests/fixtures/wechatpay/go_testkey_pkcs8.pem"
            ))
            .unwrap();
            c.public_key = Some((
                dev_keys::PLATFORM_PUBLIC_KEY_ID.into(),
                other.verifying_key().unwrap(),
            ));
        },
    )
    .await;
    let client = client.unwrap();
    let err = client
        .prepay(&prepay_request("FP20251221103000FORGE1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ChannelError::Unavailable(m) if m.to_string().contains("verification")),
        "{err:?}"
    );
    let err = client
        .query(&OrderNo::parse("FP20251221103000FORGE1").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelError::Unavailable(_)));
}

#[tokio::test]
async fn certificate_mode_downloads_and_uses_platform_certificates() {
    let (mock, client) = mock_and_client(
        |m| {
            m.signing = SigningMode::Certificate {
                pem: dev_keys::PLATFORM_CERTIFICATE.into(),
            }
        },
        |c| c.public_key = None,
    )
    .await;
    let client = client.unwrap();
    let no = "FP20251221103000CERT01";
    client.prepay(&prepay_request(no)).await.unwrap();
    assert_eq!(
        client.query(&OrderNo::parse(no).unwrap()).await.unwrap(),
        TradeState::NotPaid
    );
    mock.mock
        .pay(ferrypay_cli::wechat_mock::PayControl {
            out_trade_no: no.into(),
            notify: false,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(matches!(
        client.query(&OrderNo::parse(no).unwrap()).await.unwrap(),
        TradeState::Paid { amount, .. } if amount == Fen::new(100)
    ));
    // With the APIv3 key wrong, the certificates cannot be read: the client refuses to start.
    let (_mock2, bad) = mock_and_client(
        |m| {
            m.signing = SigningMode::Certificate {
                pem: dev_keys::PLATFORM_CERTIFICATE.into(),
            }
        },
        |c| {
            c.public_key = None;
            c.apiv3_key = "0123456789abcdef0123456789abcdef".parse().unwrap();
        },
    )
    .await;
    assert!(bad.is_err());
}

/// A notification signed by the platform key, with the plaintext given.
fn notification(plaintext: &Value, stale: i64) -> (http::HeaderMap, Vec<u8>) {
    let key: ApiV3Key = dev_keys::APIV3_KEY.parse().unwrap();
    let resource = encrypt_resource(
        &key,
        "0123456789ab",
        "transaction",
        Some("transaction"),
        plaintext.to_string().as_bytes(),
    )
    .unwrap();
    let body = Notification {
        id: "EV-TEST".into(),
        create_time: "2025-12-21T10:30:00+08:00".into(),
        event_type: "TRANSACTION.SUCCESS".into(),
        resource_type: "encrypt-resource".into(),
        resource,
        summary: "支付成功".into(),
    }
    .to_json()
    .unwrap();
    let platform = PrivateKey::from_pem(dev_keys::PLATFORM_PRIVATE_KEY).unwrap();
    let now = SystemClock.now().unix() - stale;
    let signed = sign_response(
        &platform,
        dev_keys::PLATFORM_PUBLIC_KEY_ID,
        now,
        "nonce123",
        body.as_bytes(),
    )
    .unwrap();
    let mut headers = http::HeaderMap::new();
    for (k, v) in signed.to_pairs() {
        headers.insert(
            http::HeaderName::from_static(static_lower(k)),
            v.parse().unwrap(),
        );
    }
    (headers, body.into_bytes())
}

fn static_lower(name: &str) -> &'static str {
    match name {
        "Wechatpay-Timestamp" => "wechatpay-timestamp",
        "Wechatpay-Nonce" => "wechatpay-nonce",
        "Wechatpay-Signature" => "wechatpay-signature",
        "Wechatpay-Serial" => "wechatpay-serial",
        _ => "wechatpay-signature-type",
    }
}

#[tokio::test]
async fn notifications_for_another_merchant_or_app_are_refused() {
    let (_mock, client) = mock_and_client(|_| {}, |_| {}).await;
    let client = client.unwrap();
    let tx = |mchid: &str, appid: &str| {
        json!({"mchid": mchid, "appid": appid, "out_trade_no": "FP20251221103000OTHER1",
               "transaction_id": "4200000001", "trade_state": "SUCCESS",
               "success_time": "2025-12-21T10:30:00+08:00", "amount": {"total": 100}})
    };
    let (h, b) = notification(&tx("1900000999", dev_keys::APPID), 0);
    assert!(matches!(
        client.open_notification(&h, &b).await,
        Err(NoticeError::WrongMerchant(_))
    ));
    let (h, b) = notification(&tx(dev_keys::MCHID, "wx0000000000000000"), 0);
    assert!(matches!(
        client.open_notification(&h, &b).await,
        Err(NoticeError::WrongMerchant(_))
    ));
    let (h, b) = notification(&tx(dev_keys::MCHID, dev_keys::APPID), 0);
    assert!(client.open_notification(&h, &b).await.is_ok());
    // The same bytes with one body byte changed fail verification before anything is parsed.
    let mut tampered = b.clone();
    tampered[5] ^= 1;
    assert!(matches!(
        client.open_notification(&h, &tampered).await,
        Err(NoticeError::Unverified(_))
    ));
    let (h, b) = notification(&tx(dev_keys::MCHID, dev_keys::APPID), 301);
    assert!(matches!(
        client.open_notification(&h, &b).await,
        Err(NoticeError::Unverified(_))
    ));
}

#[tokio::test]
async fn a_notification_for_an_unknown_order_is_404_and_unsigned_ones_401() {
    let f = Flow::start().await;
    let tx = json!({"mchid": dev_keys::MCHID, "appid": dev_keys::APPID,
        "out_trade_no": "FP20251221103000NOSUCH", "transaction_id": "4200000001",
        "trade_state": "SUCCESS", "amount": {"total": 100}});
    let (headers, body) = notification(&tx, 0);
    let url = format!("{}/api/v1/notify/wechat", f.stack.base_url());
    let res = f
        .http
        .post(&url)
        .headers(headers)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "FAIL");
    let res = f.http.post(&url).body(body).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let res = f.http.get(&url).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
}

#[tokio::test]
async fn a_crash_between_the_payment_write_and_the_enqueue_is_repaired_by_the_retry() {
    let f = Flow::start().await;
    let no = f.create(json!({"amount": 640})).await;
    // The queue is down when the notification arrives: the order is paid, the job is not
    // queued, and WeChat Pay is told to retry (500).
    f.stack.app.queue.fail_next_sends(1);
    let (_, paid) = f.pay(json!({"out_trade_no": no})).await;
    assert_eq!(paid["first_attempts"], json!([500]));
    let order = f.stored(&no).await;
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(order.webhook.queued_at, None);
    assert!(f.jobs(&no).is_empty());
    // WeChat Pay's retry finds the order paid without its job, and queues it, once.
    let mock = Arc::clone(&f.mock().mock);
    let no2 = no.clone();
    wait_until("the retried notification", move || {
        mock.deliveries()
            .iter()
            .any(|d| d.out_trade_no == no2 && d.status == Some(204))
    })
    .await;
    assert_eq!(f.jobs(&no).len(), 1);
    assert!(f.stored(&no).await.webhook.queued_at.is_some());
}

#[tokio::test]
async fn the_dev_stack_can_talk_to_an_external_apiv3_endpoint() {
    // Another WeChat Pay (here a separately started mock), configured as WECHATPAY_* would be.
    let external = MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig::dev().unwrap(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let mut opts = options(None);
    opts.wechat = DevWechat::External(Box::new(
        mock_client_config(external.base_url(), String::new()).unwrap(),
    ));
    let f = Flow::with(opts).await;
    assert!(f.stack.mock.is_none());
    let no = f.create(json!({"amount": 100})).await;
    assert_eq!(external.mock.trade_state(&no), Some("NOTPAY"));
    let (status, paid) = external
        .mock
        .pay(ferrypay_cli::wechat_mock::PayControl {
            out_trade_no: no.clone(),
            notify: true,
            ..Default::default()
        })
        .await
        .map(|v| (200, v))
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(paid["first_attempts"], json!([204]));
    assert_eq!(f.stored(&no).await.status, OrderStatus::Paid);
}
