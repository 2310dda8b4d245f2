//! The Lambda functions' production wiring (`ferrypay::runtime::lambda_app`) against moto:
//! DynamoDB, SQS and the WeChat Pay secret in Secrets Manager, with the WeChat Pay mock as the
//! APIv3 endpoint. Needs `FERRYPAY_TEST_AWS_ENDPOINT` (`make test` starts moto).

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use ferrypay::{
    api,
    config::Env,
    model::{OrderNo, SystemClock},
    runtime::{lambda_app, StartError},
    service::{NewMerchant, WebhookJob},
    store::DynamoStore,
    testing::{aws_test_endpoint, unique_name},
};
use ferrypay_cli::{
    dev_keys,
    wechat_mock::{MockConfig, MockServer, PayControl},
};
use serde_json::{json, Value};

/// The AWS side as `sam deploy` would create it: table, queue, secret. Returns the env map.
async fn provision(sdk: &aws_config::SdkConfig, wechat_base_url: &str) -> BTreeMap<String, String> {
    let table = unique_name("ferrypay-rt");
    DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table.clone())
        .ensure_table()
        .await
        .unwrap();
    let queue_url = aws_sdk_sqs::Client::new(sdk)
        .create_queue()
        .queue_name(unique_name("ferrypay-notify"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let secret = json!({
        "private_key_pem": dev_keys::MERCHANT_PRIVATE_KEY,
        "apiv3_key": dev_keys::APIV3_KEY,
        "public_key_pem": dev_keys::PLATFORM_PUBLIC_KEY,
        "oauth_secret": "test-oauth-secret",
    });
    let arn = aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(unique_name("ferrypay-wechat"))
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    [
        ("FERRYPAY_TABLE", table),
        ("FERRYPAY_NOTIFY_QUEUE_URL", queue_url),
        ("FERRYPAY_PUBLIC_URL", "https://pay.example.com".into()),
        ("FERRYPAY_WECHAT_SECRET_ARN", arn),
        ("WECHATPAY_BASE_URL", wechat_base_url.into()),
        ("WECHATPAY_MCHID", dev_keys::MCHID.into()),
        ("WECHATPAY_APPID", dev_keys::APPID.into()),
        (
            "WECHATPAY_MERCHANT_SERIAL",
            dev_keys::MERCHANT_SERIAL.into(),
        ),
        (
            "WECHATPAY_PUBLIC_KEY_ID",
            dev_keys::PLATFORM_PUBLIC_KEY_ID.into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[tokio::test]
async fn the_lambda_wiring_runs_on_dynamodb_sqs_and_secrets_manager() {
    let sdk = ferrypay::aws::emulator_config(&aws_test_endpoint()).await;
    let mock = MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig::dev().unwrap(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let vars = provision(&sdk, &mock.base_url()).await;
    let app = lambda_app(Env::from_map(&vars), &sdk).await.unwrap();
    assert_eq!(app.channel.mchid(), dev_keys::MCHID);

    let (_, keys) = app
        .onboard_merchant(NewMerchant {
            name: "Lambda Shop".into(),
            ..NewMerchant::default()
        })
        .await
        .unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri("/api/v1/pay/create")
        .header("x-api-key", keys.secret_key.expose())
        .body(Bytes::from_static(br#"{"amount": 1234}"#))
        .unwrap();
    let response = api::handle(&app, request).await;
    assert_eq!(response.status(), 200, "{}", response.body());
    let created: Value = serde_json::from_str(response.body()).unwrap();
    let no = created["order_no"].as_str().unwrap().to_string();

    // The payer pays; the notification would go to the public URL, so let query-through
    // settle it: the order is paid in DynamoDB and its webhook job is on SQS.
    mock.mock
        .pay(PayControl {
            out_trade_no: no.clone(),
            notify: false,
            ..PayControl::default()
        })
        .await
        .unwrap();
    let merchant = app
        .authenticate(Some(keys.secret_key.expose()))
        .await
        .unwrap();
    let by = ferrypay::service::OrderRef::OrderNo(OrderNo::parse(&no).unwrap());
    let order = app.query_order(&merchant, &by).await.unwrap();
    assert_eq!(order.status, ferrypay::model::OrderStatus::Paid);
    let messages = ferrypay::queue::Queue::receive(&app.queue, 10)
        .await
        .unwrap();
    assert_eq!(messages.len(), 1);
    let job: WebhookJob = serde_json::from_str(&messages[0].body).unwrap();
    assert_eq!(job.order_no.as_str(), no);
}

#[tokio::test]
async fn missing_settings_are_reported_all_at_once() {
    let sdk = ferrypay::aws::emulator_config(&aws_test_endpoint()).await;
    let empty = BTreeMap::new();
    let err = match lambda_app(Env::from_map(&empty), &sdk).await {
        Err(StartError::Config(e)) => e.to_string(),
        other => panic!("expected a configuration error, got {:?}", other.err()),
    };
    for name in [
        "FERRYPAY_TABLE",
        "FERRYPAY_NOTIFY_QUEUE_URL",
        "FERRYPAY_PUBLIC_URL",
        "WECHATPAY_MCHID",
        "WECHATPAY_APPID",
        "WECHATPAY_MERCHANT_SERIAL",
        "WECHATPAY_PRIVATE_KEY_FILE",
        "WECHATPAY_APIV3_KEY",
    ] {
        assert!(err.contains(name), "{name} missing from: {err}");
    }
}

#[tokio::test]
async fn a_malformed_secret_is_refused_without_echoing_it() {
    let sdk = ferrypay::aws::emulator_config(&aws_test_endpoint()).await;
    let mut vars = provision(&sdk, "http://127.0.0.1:9").await;
    let arn = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(unique_name("ferrypay-bad"))
        .secret_string("not json: hunter2")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    vars.insert("FERRYPAY_WECHAT_SECRET_ARN".into(), arn);
    match lambda_app(Env::from_map(&vars), &sdk).await {
        Err(StartError::Secret(message)) => assert!(!message.contains("hunter2"), "{message}"),
        other => panic!("expected a secret error, got {:?}", other.err()),
    }
}
