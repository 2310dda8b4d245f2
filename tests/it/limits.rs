//! The public limits and WeChat quota guards: over HTTP on the dev stack (its mock counts
//! WeChat's calls), and on moto for the counters DynamoDB keeps (the link, API and per-client
//! buckets, the status polls' tokens, the OAuth states' exchange counts, the deep health
//! check). The moto tests need `FERRYPAY_TEST_AWS_ENDPOINT` (`make test` starts moto).

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use ferrypay::{
    api::{self, health::HEALTH_PATH, ClientAddr},
    channel::FakeChannel,
    config::{Env, DEV_IP_RATE_LIMIT_PER_MINUTE},
    model::{Clock, ManualClock, Secret, Timestamp},
    queue::MemoryQueue,
    runtime::health_app,
    service::{
        gateway::{
            FakeOAuth, Gateway, GatewaySettings, LinkFields, LinkQuery, LinkStep, OAuthReturn,
            VisitError, MAX_CODE_EXCHANGES_PER_STATE, POLL_QUERY_SECS,
        },
        health::{HealthCheck, VERSION},
        Backends, Ferrypay, NewMerchant, ServiceConfig,
    },
    store::{DynamoStore, LocalDevKeys, SecretKeys},
    testing::{clock_at_start, unique_name, START, TEST_PUBLISHABLE_KEY, TEST_SECRET_KEY},
    wechat::OAuthConfig,
};
use ferrypay_cli::{
    dev::{DevClock, DevOptions, DevStack},
    wechat_mock::OAuthEndpoint,
};
use ferrypay_lambda::{run_gateway_event, run_health_event};
use serde_json::Value;

use crate::harness;

const SK: &str = "sk_test_limits_pinned";
const PK: &str = "pk_test_limits_pinned";
const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x18003231) NetType/WIFI Language/zh_CN";

// ---------------------------------------------------------------------------- the dev stack

async fn dev_stack(config: ServiceConfig, clock: Arc<ManualClock>) -> DevStack {
    let options = harness::dev_options(NewMerchant {
        name: "Limits Shop".into(),
        notify_url: Some("http://127.0.0.1:9/notify".into()),
        secret_key: Some(Secret::new(SK.into())),
        publishable_key: Some(PK.into()),
        webhook_secret: None,
        notify_events: None,
    });
    harness::start_dev(DevOptions {
        config: ServiceConfig {
            allow_http_notify_urls: true,
            ..config
        },
        clock: DevClock(clock),
        ..options
    })
    .await
}

fn dev_config() -> ServiceConfig {
    ServiceConfig {
        ip_rate_limit_per_minute: Some(DEV_IP_RATE_LIMIT_PER_MINUTE),
        ..ServiceConfig::default()
    }
}

struct Got {
    status: u16,
    location: Option<String>,
    retry_after: Option<String>,
    body: String,
}

async fn send(method: reqwest::Method, url: &str, user_agent: &str) -> Got {
    let res = harness::no_redirect_client()
        .request(method, url)
        .header("user-agent", user_agent)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (location, retry_after) = (header("location"), header("retry-after"));
    Got {
        status: res.status().as_u16(),
        location,
        retry_after,
        body: res.text().await.unwrap(),
    }
}

async fn get(url: &str) -> Got {
    send(reqwest::Method::GET, url, "curl/8").await
}

fn link_url(stack: &DevStack) -> String {
    format!("{}/pay/gateway?key={PK}&amount=100", stack.base_url())
}

/// The value of `name="..."` in a page.
fn attr(body: &str, name: &str) -> String {
    let key = format!("{name}=\"");
    let start = body.find(&key).unwrap() + key.len();
    body[start..][..body[start..].find('"').unwrap()].replace("&amp;", "&")
}

#[tokio::test]
async fn thirty_status_polls_ask_wechat_pay_a_few_times_on_the_dev_stack() {
    let clock = clock_at_start();
    let stack = dev_stack(dev_config(), clock.clone()).await;
    let to_cashier = send(
        reqwest::Method::POST,
        &link_url(&stack),
        "Mozilla/5.0 (X11)",
    )
    .await;
    assert_eq!(to_cashier.status, 303, "{}", to_cashier.body);
    // The cashier's URL is absolute: the stack's public URL.
    let cashier = get(&to_cashier.location.unwrap()).await;
    assert_eq!(cashier.status, 200, "{}", cashier.body);
    let status_url = attr(&cashier.body, "data-status-url");
    let mock = &stack.mock.as_ref().unwrap().mock;
    let before = mock.calls();
    // A poll a second for 30 seconds (the cashier polls every 2 s).
    for _ in 0..30 {
        let status = get(&status_url).await;
        assert_eq!(status.status, 200, "{}", status.body);
        assert_eq!(
            serde_json::from_str::<Value>(&status.body).unwrap()["status"],
            "pending"
        );
        clock.set(clock.now().plus_secs(1));
    }
    let queries = mock.calls() - before;
    let bound = 30 / POLL_QUERY_SECS as u64 + 1;
    assert!(
        (1..=bound).contains(&queries),
        "{queries} WeChat queries for 30 polls"
    );
}

#[tokio::test]
async fn twenty_junk_codes_on_one_state_cost_at_most_three_exchanges_on_the_dev_stack() {
    let stack = dev_stack(dev_config(), clock_at_start()).await;
    let to_oauth = send(reqwest::Method::GET, &link_url(&stack), WECHAT_UA).await;
    assert_eq!(to_oauth.status, 302, "{}", to_oauth.body);
    let back = send(reqwest::Method::GET, &to_oauth.location.unwrap(), WECHAT_UA).await;
    assert_eq!(back.status, 302, "{}", back.body);
    let callback = url::Url::parse(&back.location.unwrap()).unwrap();
    let mock = &stack.mock.as_ref().unwrap().mock;
    let exchanges = || {
        mock.oauth_calls()
            .iter()
            .filter(|call| call.endpoint == OAuthEndpoint::AccessToken)
            .count()
    };
    let mut statuses = Vec::new();
    for i in 0..20 {
        let mut junk = callback.clone();
        let pairs: Vec<(String, String)> = callback
            .query_pairs()
            .map(|(k, v)| match k.as_ref() {
                "code" => (k.into_owned(), format!("junk{i}")),
                _ => (k.into_owned(), v.into_owned()),
            })
            .collect();
        junk.query_pairs_mut().clear().extend_pairs(pairs);
        statuses.push(
            send(reqwest::Method::GET, junk.as_str(), WECHAT_UA)
                .await
                .status,
        );
    }
    let exchanged = exchanges() as u64;
    assert_eq!(exchanged, MAX_CODE_EXCHANGES_PER_STATE, "{statuses:?}");
    // The first ones restart the authorization; the rest are refused with a page.
    assert!(statuses[..3].iter().all(|s| *s == 302), "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 502), "{statuses:?}");
}

#[tokio::test]
async fn health_and_deep_health_on_the_dev_stack_and_one_bucket_per_client() {
    let stack = dev_stack(
        ServiceConfig {
            ip_rate_limit_per_minute: Some(4),
            ..ServiceConfig::default()
        },
        clock_at_start(),
    )
    .await;
    let health = get(&format!("{}{HEALTH_PATH}", stack.base_url())).await;
    assert_eq!(health.status, 200, "{}", health.body);
    let body: Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "ok", "version": VERSION})
    );
    let deep = get(&format!("{}{HEALTH_PATH}?deep=1", stack.base_url())).await;
    assert_eq!(deep.status, 200, "{}", deep.body);
    let body: Value = serde_json::from_str(&deep.body).unwrap();
    assert_eq!(body["checks"]["table"], "ok");
    assert!(!deep.body.contains(SK) && !deep.body.contains("ferrypay-dev"));
    // The health checks and the gateway count in one bucket per client: two more go through.
    assert_eq!(get(&link_url(&stack)).await.status, 200);
    assert_eq!(get(&link_url(&stack)).await.status, 200);
    let page = get(&link_url(&stack)).await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(
        page.body.contains("data-code=\"rate_limited\""),
        "{}",
        page.body
    );
    assert!(page.retry_after.is_some());
    let limited = get(&format!("{}{HEALTH_PATH}", stack.base_url())).await;
    assert_eq!(limited.status, 429);
    assert_eq!(
        serde_json::from_str::<Value>(&limited.body).unwrap()["code"],
        "rate_limited"
    );
    // The merchant's API (secret key) is not an unauthenticated route: it still answers.
    let listed = reqwest::Client::new()
        .get(format!("{}/api/v1/pay/list", stack.base_url()))
        .header("x-api-key", SK)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
}

// ---------------------------------------------------------------------------- moto

/// The services over a DynamoDB table on moto, the fake channel and the in-memory queue.
struct OnMoto;

impl Backends for OnMoto {
    type Store = DynamoStore;
    type Channel = FakeChannel;
    type Queue = MemoryQueue;
}

/// A new table, through the operator's store (the one that may write merchants, with the dev
/// keys), so the test can onboard its merchant through the same app: these tests are about
/// limits, not about which store may write what (store_contract.rs tests that).
async fn table() -> DynamoStore {
    let sdk = harness::emulator().await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        unique_name("ferrypay-limits"),
    )
    .with_secret_keys(SecretKeys::operator(Arc::new(LocalDevKeys::new().unwrap())));
    store.ensure_table().await.unwrap();
    store
}

async fn moto_app(config: ServiceConfig, clock: Arc<ManualClock>) -> Ferrypay<OnMoto> {
    let app = Ferrypay::<OnMoto>::with_clock(
        table().await,
        FakeChannel::new(),
        MemoryQueue::default(),
        config,
        clock,
    );
    app.onboard_merchant(NewMerchant {
        name: "Moto Shop".into(),
        notify_url: None,
        secret_key: Some(Secret::new(TEST_SECRET_KEY.into())),
        publishable_key: Some(TEST_PUBLISHABLE_KEY.into()),
        webhook_secret: None,
        notify_events: None,
    })
    .await
    .unwrap();
    app
}

fn oauth_settings() -> GatewaySettings {
    GatewaySettings {
        public_url: "https://pay.example.com".into(),
        oauth: OAuthConfig {
            open_base_url: "https://open.weixin.qq.com".into(),
            api_base_url: "http://127.0.0.1:9".into(),
            appid: "wxd678efh567hg6787".into(),
            secret: Secret::new("test-oauth-secret-not-real".into()),
        },
    }
}

/// `event` from another client address (API Gateway's `requestContext.http.sourceIp`).
fn from_ip(event: &str, ip: &str) -> String {
    let mut event: Value = serde_json::from_str(event).unwrap();
    event["requestContext"]["http"]["sourceIp"] = ip.into();
    event.to_string()
}

const PAY_BY_QR: &str = include_str!("../../events/gateway-pay-qr.json");
const LINK: &str = include_str!("../../events/gateway-link.json");

#[tokio::test]
async fn on_dynamodb_25_link_orders_over_a_limit_of_20_leave_the_merchants_api_alone() {
    let clock = clock_at_start();
    let config = ServiceConfig {
        link_rate_limit_per_minute: Some(20),
        ..dev_config()
    };
    let app = moto_app(config, clock).await;
    let gateway = Gateway::new(oauth_settings()).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..25 {
        let answer = run_gateway_event(&app, &gateway, PAY_BY_QR).await.unwrap();
        statuses.push(answer.status);
    }
    assert_eq!(statuses[..20], [303; 20], "{statuses:?}");
    assert_eq!(statuses[20..], [429; 5], "{statuses:?}");
    assert_eq!(app.channel.calls(), 20, "no prepay over the limit");
    let create = http::Request::post("/api/v1/pay/create")
        .header("x-api-key", TEST_SECRET_KEY)
        .body(Bytes::from(r#"{"amount": 100}"#))
        .unwrap();
    let created = api::handle(&app, create).await;
    assert_eq!(created.status(), 200, "{}", created.body());
}

#[tokio::test]
async fn on_dynamodb_one_exhausted_client_leaves_another_alone() {
    let clock = clock_at_start();
    let config = ServiceConfig {
        ip_rate_limit_per_minute: Some(3),
        ..ServiceConfig::default()
    };
    let app = moto_app(config, clock.clone()).await;
    let gateway = Gateway::new(oauth_settings()).unwrap();
    let run = |event: String| {
        let (app, gateway) = (&app, &gateway);
        async move { run_gateway_event(app, gateway, &event).await.unwrap() }
    };
    for _ in 0..3 {
        assert_eq!(run(from_ip(LINK, "203.0.113.20")).await.status, 200);
    }
    let limited = run(from_ip(LINK, "203.0.113.20")).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.header("retry-after").is_some());
    assert!(limited.body.contains("rate_limited"), "{}", limited.body);
    // Another address, even with the same X-Forwarded-For header, is another client.
    assert_eq!(run(from_ip(LINK, "198.51.100.7")).await.status, 200);
    // IPv6: one /64 is one client.
    for host in ["2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6:ffff::3"] {
        assert_eq!(run(from_ip(LINK, host)).await.status, 200, "{host}");
    }
    assert_eq!(run(from_ip(LINK, "2001:db8:5:6::4")).await.status, 429);
    assert_eq!(run(from_ip(LINK, "2001:db8:5:7::1")).await.status, 200);
    // The API's own client address is never counted in the public bucket.
    let mut list = http::Request::get("/api/v1/pay/list")
        .header("x-api-key", TEST_SECRET_KEY)
        .body(Bytes::new())
        .unwrap();
    ClientAddr::attach(&mut list, "203.0.113.20".parse().unwrap());
    assert_eq!(api::handle(&app, list).await.status(), 200);
    // The next minute, the exhausted client is back.
    clock.set(clock.now().plus_secs(60));
    assert_eq!(run(from_ip(LINK, "203.0.113.20")).await.status, 200);
}

#[tokio::test]
async fn on_dynamodb_status_polls_and_oauth_states_are_counted_in_the_table() {
    let clock = clock_at_start();
    let app = moto_app(dev_config(), clock.clone()).await;
    let gateway = Gateway::with_oauth(oauth_settings(), FakeOAuth::new());
    let link = app
        .open_link(
            LinkQuery {
                params: vec![
                    ("key", TEST_PUBLISHABLE_KEY.to_string()),
                    ("amount", "100".to_string()),
                ],
                sign: None,
            },
            Ok(LinkFields {
                amount: ferrypay::model::Fen::new(100),
                description: None,
                attach: None,
                expires: None,
                return_url: None,
            }),
        )
        .await
        .unwrap();
    let ticket = gateway.pay_by_qr(&app, &link).await.unwrap();
    for _ in 0..30 {
        app.ticket_order(&ticket, true).await.unwrap();
        clock.set(clock.now().plus_secs(1));
    }
    let queries = app.channel.queries();
    assert!(
        (1..=30 / POLL_QUERY_SECS as u64 + 1).contains(&queries),
        "{queries} queries for 30 polls"
    );
    let LinkStep::Authorize { state } = gateway.visit_in_wechat(&app, &link, None).await.unwrap()
    else {
        panic!("no authorization")
    };
    let mut refused = 0;
    for i in 0..20 {
        let back = OAuthReturn {
            code: format!("junk{i}"),
            state: state.clone(),
        };
        if let Err(VisitError::AuthorizationLoop) =
            gateway.visit_in_wechat(&app, &link, Some(&back)).await
        {
            refused += 1;
        }
    }
    assert_eq!(gateway.oauth().exchanges(), MAX_CODE_EXCHANGES_PER_STATE);
    assert_eq!(refused, 20 - MAX_CODE_EXCHANGES_PER_STATE);
}

#[tokio::test]
async fn on_dynamodb_deep_health_reads_the_table_and_a_missing_table_is_503() {
    let sdk = harness::emulator().await;
    let store = table().await;
    let env: BTreeMap<String, String> = [("FERRYPAY_TABLE", store.table_name())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let app = health_app(Env::from_map(&env), &sdk).await.unwrap();
    let event = include_str!("../../events/health.json");
    let clock = ManualClock::new(Timestamp::from_unix(START));
    let ok = run_health_event(&app.store, &clock, &app.check, event)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json().unwrap()["checks"]["table"], "ok");
    assert!(
        !ok.body.contains(store.table_name()),
        "no config in the answer"
    );

    let gone = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        unique_name("ferrypay-missing"),
    );
    let check = HealthCheck::new(None);
    let failing = run_health_event(&gone, &clock, &check, event)
        .await
        .unwrap();
    assert_eq!(failing.status, 503, "{}", failing.body);
    assert_eq!(failing.json().unwrap()["code"], "store_unavailable");
    assert!(
        !failing.body.contains("ferrypay-missing"),
        "{}",
        failing.body
    );
    // The shallow check does not read the table: a missing one does not fail it (its rate
    // limit is off here, so nothing is written either).
    let shallow = from_query(event, "");
    let shallow = run_health_event(&gone, &clock, &check, &shallow)
        .await
        .unwrap();
    assert_eq!(shallow.status, 200, "{}", shallow.body);
}

/// `event` with another raw query string.
fn from_query(event: &str, query: &str) -> String {
    let mut event: Value = serde_json::from_str(event).unwrap();
    event["rawQueryString"] = query.into();
    event["queryStringParameters"] = Value::Object(Default::default());
    event.to_string()
}
