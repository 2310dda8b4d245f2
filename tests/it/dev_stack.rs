//! The local stack over real HTTP: `DevStack` is what `ferrypay dev` runs (the API server, the
//! real WeChat Pay client, the in-process WeChat Pay mock and notify-worker, and the demo
//! merchant's webhook inbox).

use std::time::{Duration, Instant};

use crate::harness;
use ferrypay::{
    model::Secret,
    service::{retry::RetrySchedule, NewMerchant},
};
use ferrypay_cli::dev::{DevOptions, DevStack, DevStore};
use serde_json::{json, Value};

const SK: &str = "sk_test_dev_stack_pinned";
const PK: &str = "pk_test_dev_stack_pinned";
const WHSEC: &str = "whsec_dGVzdC1kZXYtc3RhY2s=";

fn options() -> DevOptions {
    harness::dev_options(NewMerchant {
        name: "Dev Shop".into(),
        notify_url: Some("http://127.0.0.1:9/notify".into()),
        secret_key: Some(Secret::new(SK.into())),
        publishable_key: Some(PK.into()),
        webhook_secret: Some(Secret::new(WHSEC.into())),
        notify_events: None,
    })
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn post(base: &str, path: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    let mut req = client().post(format!("{base}{path}")).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn pinned_demo_keys_work_and_are_printed() {
    let stack = DevStack::start(options()).await.unwrap();
    let banner = stack.banner();
    let mock = stack.mock.as_ref().unwrap().base_url();
    for expected in [
        SK,
        PK,
        WHSEC,
        "http://127.0.0.1:9/notify",
        &stack.base_url(),
        &mock,
    ] {
        assert!(
            banner.contains(expected),
            "banner lacks {expected}:\n{banner}"
        );
    }
    let (status, body) = post(
        &stack.base_url(),
        "/api/v1/pay/create",
        &[("X-API-Key", SK)],
        json!({"amount": 100, "description": "Coffee"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn pay_through_the_mock_then_query_shows_paid() {
    let stack = DevStack::start(options()).await.unwrap();
    let base = stack.base_url();
    let mock = stack.mock.as_ref().unwrap().base_url();
    let (_, created) = post(
        &base,
        "/api/v1/pay/create",
        &[("X-API-Key", SK)],
        json!({"amount": 1990}),
    )
    .await;
    let no = created["order_no"].as_str().unwrap();
    let (status, paid) = post(&mock, "/mock/pay", &[], json!({"out_trade_no": no})).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(
        paid["first_attempts"],
        json!([204]),
        "the notification was accepted"
    );
    let res = client()
        .get(format!("{base}/api/v1/pay/query?order_no={no}&key={SK}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["order"]["status"], "paid");
    assert_eq!(body["order"]["transaction_id"], paid["transaction_id"]);
    // Paying twice is refused by WeChat Pay (the mock), not a second payment.
    let (status, _) = post(&mock, "/mock/pay", &[], json!({"out_trade_no": no})).await;
    assert_eq!(status, 409);
}

/// The stack as `ferrypay dev` runs it: the in-process worker on, the demo merchant's notify
/// URL left to its default (the dev inbox).
fn with_worker(schedule: &str) -> DevOptions {
    let mut o = options();
    o.demo.notify_url = None;
    o.webhook_worker = Some(RetrySchedule::parse(schedule).unwrap());
    o
}

async fn get(url: &str) -> Value {
    let res = client().get(url).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.unwrap()
}

/// Polls `url` until `done` holds for its JSON (at most 10 s).
async fn poll_until(url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = get(url).await;
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_payment_in_the_mock_reaches_the_demo_merchant_as_a_signed_webhook() {
    let stack = DevStack::start(with_worker("1s")).await.unwrap();
    let base = stack.base_url();
    let mock = stack.mock.as_ref().unwrap().base_url();
    assert_eq!(
        stack.merchant.notify_url.as_deref(),
        Some(format!("{base}/dev/webhooks").as_str())
    );
    assert!(stack.banner().contains("/dev/webhooks"));
    let (_, created) = post(
        &base,
        "/api/v1/pay/create",
        &[("X-API-Key", SK)],
        json!({"amount": 1990, "out_trade_no": "dev-7", "attach": "user_id=7&备注=是"}),
    )
    .await;
    let no = created["order_no"].as_str().unwrap();
    let (status, paid) = post(&mock, "/mock/pay", &[], json!({"out_trade_no": no})).await;
    assert_eq!(status, 200, "{paid}");

    let inbox = poll_until(&format!("{base}/dev/webhooks"), "the webhook", |b| {
        b["webhooks"].as_array().is_some_and(|w| !w.is_empty())
    })
    .await;
    let webhooks = inbox["webhooks"].as_array().unwrap();
    assert_eq!(webhooks.len(), 1, "{inbox}");
    let webhook = &webhooks[0];
    assert_eq!(webhook["signature_verified"], true, "{webhook}");
    assert_eq!(webhook["webhook_id"], format!("evt_{no}_paid"));
    assert_eq!(
        webhook["body"],
        json!({
            "event": "order.paid",
            "order_no": no,
            "out_trade_no": "dev-7",
            "amount": 1990,
            "status": "paid",
            "transaction_id": paid["transaction_id"],
            "paid_at": webhook["body"]["paid_at"],
            "attach": "user_id=7&备注=是",
            "source": "api",
        })
    );
    assert!(webhook["body"]["paid_at"].as_str().unwrap().len() == 19);

    // The query shows the delivery and its attempt log.
    let query = poll_until(
        &format!("{base}/api/v1/pay/query?order_no={no}&key={SK}"),
        "the delivered state",
        |b| b["order"]["webhook"]["status"] == "delivered",
    )
    .await;
    let state = &query["order"]["webhook"];
    assert_eq!(state["attempts"], 1, "{state}");
    assert_eq!(state["log"][0]["status_code"], 200, "{state}");
    assert_eq!(state["log"][0]["delivered"], true);
    assert_eq!(state["log"][0]["url"], format!("{base}/dev/webhooks"));

    // A resend delivers the same event again.
    let (status, resent) = post(
        &base,
        "/api/v1/pay/notify/resend",
        &[("X-API-Key", SK)],
        json!({"order_no": no}),
    )
    .await;
    assert_eq!(status, 200, "{resent}");
    assert_eq!(resent["webhook"]["resends"], 1);
    let inbox = poll_until(&format!("{base}/dev/webhooks"), "the resent webhook", |b| {
        b["webhooks"].as_array().is_some_and(|w| w.len() == 2)
    })
    .await;
    assert_eq!(inbox["webhooks"][1]["webhook_id"], format!("evt_{no}_paid"));
    assert_eq!(inbox["webhooks"][1]["signature_verified"], true);
}

#[tokio::test]
async fn an_unreachable_notify_url_is_retried_on_the_schedule_and_shown_failing() {
    let mut o = with_worker("1s,1s");
    // Nothing listens on port 9 (discard): every attempt is refused.
    o.demo.notify_url = Some("http://127.0.0.1:9/notify".into());
    let stack = DevStack::start(o).await.unwrap();
    let base = stack.base_url();
    let mock = stack.mock.as_ref().unwrap().base_url();
    let (_, created) = post(
        &base,
        "/api/v1/pay/create",
        &[("X-API-Key", SK)],
        json!({"amount": 100}),
    )
    .await;
    let no = created["order_no"].as_str().unwrap();
    post(&mock, "/mock/pay", &[], json!({"out_trade_no": no})).await;
    let query_url = format!("{base}/api/v1/pay/query?order_no={no}&key={SK}");
    let failing = poll_until(&query_url, "the first failure", |b| {
        b["order"]["webhook"]["status"] == "failing"
    })
    .await;
    assert!(failing["order"]["webhook"]["next_attempt_at"].is_string());
    assert!(failing["order"]["webhook"]["log"][0]["error"].is_string());
    let failed = poll_until(&query_url, "giving up", |b| {
        b["order"]["webhook"]["status"] == "failed"
    })
    .await;
    let state = &failed["order"]["webhook"];
    assert_eq!(state["attempts"], 3, "{state}");
    assert_eq!(state["log"].as_array().unwrap().len(), 3);
    assert_eq!(state["next_attempt_at"], Value::Null);
}

#[tokio::test]
async fn http_level_errors_are_json() {
    let stack = DevStack::start(options()).await.unwrap();
    let base = stack.base_url();
    let res = client()
        .get(format!("{base}/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "route_not_found"
    );
    // A body over the server's 1 MiB cap is refused before it reaches the API.
    let res = client()
        .post(format!("{base}/api/v1/pay/create"))
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
    let res = client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    // The dev-only mark-paid route of the skeleton is gone: payments come from WeChat Pay.
    let (status, _) = post(
        &base,
        "/dev/pay",
        &[],
        json!({"order_no": "FP20251221103000ZZZZZZ"}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_pinned_key_without_its_prefix_stops_the_start() {
    let mut bad = options();
    bad.demo.secret_key = Some(Secret::new("pk_wrong_prefix".into()));
    let err = DevStack::start(bad).await.err().unwrap();
    assert!(err.contains("must start with sk_"), "{err}");
}

#[tokio::test]
async fn the_dev_stack_runs_on_dynamodb_and_keeps_its_state() {
    let endpoint = std::env::var("FERRYPAY_TEST_AWS_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .expect("FERRYPAY_TEST_AWS_ENDPOINT is not set: run `make test`, which starts moto");
    let table = format!("ferrypay-dev-{}", std::process::id());
    let on_dynamo = || {
        let mut o = options();
        o.store = DevStore::Dynamo {
            endpoint: Some(endpoint.clone()),
            table: table.clone(),
        };
        o
    };
    let order_no = {
        let stack = DevStack::start(on_dynamo()).await.unwrap();
        let base = stack.base_url();
        let mock = stack.mock.as_ref().unwrap().base_url();
        let (status, created) = post(
            &base,
            "/api/v1/pay/create",
            &[("X-API-Key", SK)],
            json!({"amount": 880}),
        )
        .await;
        assert_eq!(status, 200, "{created}");
        let no = created["order_no"].as_str().unwrap().to_string();
        let (_, paid) = post(&mock, "/mock/pay", &[], json!({"out_trade_no": no})).await;
        assert_eq!(paid["first_attempts"], json!([204]));
        no
    };
    // A second start on the same table finds the demo merchant and its paid order.
    let stack = DevStack::start(on_dynamo()).await.unwrap();
    let (status, body) = post(
        &stack.base_url(),
        "/api/v1/pay/query",
        &[("X-API-Key", SK)],
        json!({"order_no": order_no}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order"]["status"], "paid");
}
