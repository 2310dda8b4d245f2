//! The Lambda functions' production wiring (`ferrypay::runtime::lambda_app`, `store_only_app`
//! for list and resend, `gateway_app` for gateway-redirect and `worker_app` for the
//! notify-worker) against moto: DynamoDB, SQS and the
//! WeChat Pay secret in Secrets Manager, with the WeChat Pay mock as the APIv3 endpoint and a merchant's webhook
//! receiver on 127.0.0.1. Needs `FERRYPAY_TEST_AWS_ENDPOINT` (`make test` starts moto).

use std::{collections::BTreeMap, sync::Arc};

use crate::harness;
use bytes::Bytes;
use ferrypay::{
    api,
    aws::KmsDataKeys,
    config::Env,
    model::{Clock, OrderNo, OrderStatus, SystemClock, WebhookStatus},
    outbound::OutboundPolicy,
    runtime::{
        gateway_app, lambda_app, origin_verify_secret, store_only_app, worker_app, LambdaApp,
        StartError,
    },
    service::{IssuedKeys, MerchantAdmin, NewMerchant, OrderRef, WebhookJob},
    sign::webhook,
    store::{prelude::*, DynamoStore, SecretKeys},
    testing::{unique_name, TestReceiver, TEST_WEBHOOK_SECRET},
};
use ferrypay_cli::{
    dev_keys,
    wechat_mock::{MockConfig, MockServer, PayControl},
};
use ferrypay_lambda::{failed_ids, handle_sqs_event, SqsEvent};
use serde_json::{json, Value};

/// The AWS side as `sam deploy` would create it: table, queue, secret (with an OAuth secret).
/// Returns the env map.
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
    let arn = secret_with_oauth(sdk, Some("test-oauth-secret")).await;
    // The operator's KMS key: the CLI wraps the data keys with it; the functions unwrap them
    // (moto's KMS checks the encryption context as KMS does).
    let kms_key = aws_sdk_kms::Client::new(sdk)
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    [
        ("FERRYPAY_KMS_KEY_ID", kms_key),
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

/// The operator's store on the provisioned table (what `ferrypay merchant` uses): the only
/// writer of merchants, opening and sealing every secret with the KMS key.
fn operator_store(sdk: &aws_config::SdkConfig, vars: &BTreeMap<String, String>) -> DynamoStore {
    let keys = KmsDataKeys::new(sdk, Some(vars["FERRYPAY_KMS_KEY_ID"].clone()));
    DynamoStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        vars["FERRYPAY_TABLE"].clone(),
    )
    .with_secret_keys(SecretKeys::operator(Arc::new(keys)))
}

/// Onboards a merchant as the operator does (functions cannot write merchants).
async fn onboard(
    sdk: &aws_config::SdkConfig,
    vars: &BTreeMap<String, String>,
    new: NewMerchant,
) -> (ferrypay::model::Merchant, ferrypay::service::IssuedKeys) {
    let store = operator_store(sdk, vars);
    MerchantAdmin::new(&store, &SystemClock, true)
        .onboard(new)
        .await
        .unwrap()
}

/// The emulator's SDK config, the WeChat Pay mock, a provisioned environment pointing at it,
/// and the services `lambda_app` builds from that environment.
async fn provisioned_with_mock() -> (
    aws_config::SdkConfig,
    MockServer,
    BTreeMap<String, String>,
    ferrypay::runtime::LambdaApp,
) {
    let sdk = harness::emulator().await;
    let mock = MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig::dev().unwrap(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let vars = provision(&sdk, &mock.base_url()).await;
    let app = lambda_app(Env::from_map(&vars), &sdk).await.unwrap();
    (sdk, mock, vars, app)
}

#[tokio::test]
async fn the_lambda_wiring_runs_on_dynamodb_sqs_and_secrets_manager() {
    let (sdk, mock, vars, app) = provisioned_with_mock().await;
    assert_eq!(app.channel.mchid(), dev_keys::MCHID);

    let (_, keys) = onboard(
        &sdk,
        &vars,
        NewMerchant {
            name: "Lambda Shop".into(),
            ..NewMerchant::default()
        },
    )
    .await;
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
        .authenticate(Some(keys.secret_key.expose()), None)
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
    let sdk = harness::emulator().await;
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
    let sdk = harness::emulator().await;
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

/// A merchant whose webhooks go to `notify_url` (an operator's setting: http is allowed for
/// the receiver on 127.0.0.1), and a paid order of it whose webhook job is on the real queue.
/// Returns the order number.
async fn paid_order_with_queued_webhook(
    (sdk, vars): (&aws_config::SdkConfig, &BTreeMap<String, String>),
    app: &LambdaApp,
    mock: &MockServer,
    notify_url: &str,
) -> OrderNo {
    paid_order_and_keys((sdk, vars), app, mock, notify_url)
        .await
        .0
}

/// [`paid_order_with_queued_webhook`], and the merchant's keys.
async fn paid_order_and_keys(
    (sdk, vars): (&aws_config::SdkConfig, &BTreeMap<String, String>),
    app: &LambdaApp,
    mock: &MockServer,
    notify_url: &str,
) -> (OrderNo, IssuedKeys) {
    let (merchant, keys) = onboard(
        sdk,
        vars,
        NewMerchant {
            name: "Webhook Shop".into(),
            webhook_secret: Some(ferrypay::model::Secret::new(TEST_WEBHOOK_SECRET.into())),
            ..NewMerchant::default()
        },
    )
    .await;
    MerchantAdmin::new(&operator_store(sdk, vars), &*app.clock, true)
        .set_notify_url(&merchant.id, Some(notify_url.to_string()))
        .await
        .unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri("/api/v1/pay/create")
        .header("x-api-key", keys.secret_key.expose())
        .body(Bytes::from_static(
            br#"{"amount": 4321, "out_trade_no": "rt-webhook-1", "attach": "user_id=123"}"#,
        ))
        .unwrap();
    let response = api::handle(app, request).await;
    assert_eq!(response.status(), 200, "{}", response.body());
    let created: Value = serde_json::from_str(response.body()).unwrap();
    let no = OrderNo::parse(created["order_no"].as_str().unwrap()).unwrap();
    mock.mock
        .pay(PayControl {
            out_trade_no: no.to_string(),
            notify: false,
            ..PayControl::default()
        })
        .await
        .unwrap();
    let merchant = app
        .authenticate(Some(keys.secret_key.expose()), None)
        .await
        .unwrap();
    let order = app
        .query_order(&merchant, &OrderRef::OrderNo(no.clone()))
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    (no, keys)
}

/// Receives the queue's visible messages (a bounded number of tries) and builds the event
/// Lambda's SQS event source would hand the function for them.
async fn sqs_event_from_queue(
    sdk: &aws_config::SdkConfig,
    queue_url: &str,
    expected: usize,
) -> SqsEvent {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let arn = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .unwrap()
        .clone();
    let mut records = Vec::new();
    for _ in 0..10 {
        if records.len() >= expected {
            break;
        }
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for message in out.messages.unwrap_or_default() {
            let attributes: serde_json::Map<String, Value> = message
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(name, value)| (name.as_str().to_string(), Value::String(value)))
                .collect();
            records.push(json!({
                "messageId": message.message_id,
                "receiptHandle": message.receipt_handle,
                "body": message.body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": message.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": ferrypay::aws::EMULATOR_REGION,
            }));
        }
    }
    assert_eq!(records.len(), expected, "messages on {queue_url}");
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// Only what the notify-worker needs: no WeChat Pay settings, no secret.
fn worker_vars(vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    ["FERRYPAY_TABLE", "FERRYPAY_NOTIFY_QUEUE_URL"]
        .into_iter()
        .map(|name| (name.to_string(), vars[name].clone()))
        .collect()
}

#[tokio::test]
async fn the_notify_worker_delivers_a_paid_orders_webhook_from_sqs() {
    let (sdk, mock, vars, app) = provisioned_with_mock().await;
    let receiver = TestReceiver::start(200).await;
    let no = paid_order_with_queued_webhook((&sdk, &vars), &app, &mock, &receiver.url()).await;

    // The webhook job is on the real queue; hand it to the worker as Lambda would.
    let event = sqs_event_from_queue(&sdk, &vars["FERRYPAY_NOTIFY_QUEUE_URL"], 1).await;
    assert_eq!(
        event.records[0].attributes["ApproximateReceiveCount"], "1",
        "{event:?}"
    );
    let worker_app = worker_app(
        Env::from_map(&worker_vars(&vars)),
        &sdk,
        OutboundPolicy::DEV,
    )
    .await
    .unwrap();
    let worker = worker_app.worker();
    let response = handle_sqs_event(&worker, event).await;
    assert!(failed_ids(&response).is_empty(), "{response:?}");

    // The merchant got one signed POST with the DESIGN.md body.
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/webhook");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let id = request.header("webhook-id").unwrap();
    assert_eq!(id, format!("evt_{no}_paid"));
    let timestamp: i64 = request
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!((SystemClock.now().unix() - timestamp).abs() < 60);
    let signature = request.header("webhook-signature").unwrap();
    assert!(signature.starts_with("v1,"), "{signature}");
    webhook::verify(
        TEST_WEBHOOK_SECRET,
        signature,
        id,
        timestamp,
        &request.body,
        SystemClock.now().unix(),
        300,
    )
    .unwrap();
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "event",
            "order_no",
            "out_trade_no",
            "amount",
            "status",
            "transaction_id",
            "paid_at",
            "attach",
            "source"
        ]
    );
    assert_eq!(body["event"], "order.paid");
    assert_eq!(body["order_no"], no.as_str());
    assert_eq!(body["out_trade_no"], "rt-webhook-1");
    assert_eq!(body["amount"], 4321);
    assert_eq!(body["status"], "paid");
    assert_eq!(body["source"], "api");
    assert!(body["transaction_id"].as_str().unwrap().len() > 10);
    let paid_at = body["paid_at"].as_str().unwrap();
    assert_eq!(paid_at.len(), "2025-12-21 10:30:00".len(), "{paid_at}");
    assert_eq!(body["attach"], "user_id=123");

    // DynamoDB has the delivery on the order, and the attempt in its log.
    let order = app.store.get_order(&no).await.unwrap().unwrap();
    assert_eq!(order.webhook.status, WebhookStatus::Delivered);
    assert_eq!(order.webhook.attempts, 1);
    assert!(order.webhook.delivered_at.is_some());
    let attempts = app.store.webhook_attempts(&no, 10).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].delivered);
    assert_eq!(attempts[0].status_code, Some(200));
}

#[tokio::test]
async fn the_production_worker_refuses_a_loopback_notify_url_and_retries() {
    let (sdk, mock, vars, app) = provisioned_with_mock().await;
    let receiver = TestReceiver::start(200).await;
    let no = paid_order_with_queued_webhook((&sdk, &vars), &app, &mock, &receiver.url()).await;

    let event = sqs_event_from_queue(&sdk, &vars["FERRYPAY_NOTIFY_QUEUE_URL"], 1).await;
    let worker_app = worker_app(
        Env::from_map(&worker_vars(&vars)),
        &sdk,
        OutboundPolicy::PRODUCTION,
    )
    .await
    .unwrap();
    let worker = worker_app.worker();
    let response = handle_sqs_event(&worker, event).await;
    // A refused URL is a failed attempt on the retry schedule, not a failed message.
    assert!(failed_ids(&response).is_empty(), "{response:?}");
    assert!(receiver.requests().is_empty(), "nothing reached 127.0.0.1");
    let order = app.store.get_order(&no).await.unwrap().unwrap();
    assert_eq!(order.webhook.status, WebhookStatus::Failing);
    let attempts = app.store.webhook_attempts(&no, 10).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(
        attempts[0].error.as_deref().unwrap().contains("refused"),
        "{attempts:?}"
    );
    // The next attempt is on the queue (15 s later, +-20%: not visible yet).
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let counts = sqs
        .get_queue_attributes()
        .queue_url(&vars["FERRYPAY_NOTIFY_QUEUE_URL"])
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(
        counts[&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed],
        "1"
    );
}

#[tokio::test]
async fn a_bad_retry_schedule_is_a_start_error_naming_the_variable() {
    let sdk = harness::emulator().await;
    let vars: BTreeMap<String, String> =
        [("FERRYPAY_WEBHOOK_RETRY_SCHEDULE", "every now and then")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let err = match worker_app(Env::from_map(&vars), &sdk, OutboundPolicy::PRODUCTION).await {
        Err(StartError::Config(e)) => e.to_string(),
        other => panic!("expected a configuration error, got {:?}", other.err()),
    };
    // Reported with every other problem at once; the worker needs nothing of WeChat Pay's.
    for name in [
        "FERRYPAY_WEBHOOK_RETRY_SCHEDULE",
        "every now and then",
        "FERRYPAY_TABLE",
        "FERRYPAY_NOTIFY_QUEUE_URL",
    ] {
        assert!(err.contains(name), "{name} missing from: {err}");
    }
    assert!(!err.contains("WECHATPAY"), "{err}");
}

#[tokio::test]
async fn the_notify_worker_starts_without_any_wechat_pay_setting() {
    let sdk = harness::emulator().await;
    let vars = provision(&sdk, "http://127.0.0.1:9").await;
    let mut worker_vars = worker_vars(&vars);
    worker_vars.insert("FERRYPAY_WEBHOOK_RETRY_SCHEDULE".into(), "1s,2s,5m".into());
    let app = worker_app(
        Env::from_map(&worker_vars),
        &sdk,
        OutboundPolicy::PRODUCTION,
    )
    .await
    .unwrap();
    assert_eq!(app.sender.schedule().max_attempts(), 4);
    assert_eq!(app.store.table_name(), vars["FERRYPAY_TABLE"]);
    // An empty batch touches nothing and fails nothing.
    assert!(app.handle_batch(&[]).await.is_empty());
}

/// A secret like `provision`'s, with another `oauth_secret` (`None`: the field left out).
/// A WeChat Pay secret in Secrets Manager (the dev keys), with `oauth_secret` when given: its ARN.
async fn secret_with_oauth(sdk: &aws_config::SdkConfig, oauth_secret: Option<&str>) -> String {
    let mut secret = json!({
        "private_key_pem": dev_keys::MERCHANT_PRIVATE_KEY,
        "apiv3_key": dev_keys::APIV3_KEY,
        "public_key_pem": dev_keys::PLATFORM_PUBLIC_KEY,
    });
    if let Some(oauth_secret) = oauth_secret {
        secret["oauth_secret"] = json!(oauth_secret);
    }
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(unique_name("ferrypay-wechat"))
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

#[tokio::test]
async fn the_gateway_starts_with_the_oauth_secret_from_the_wechat_pay_secret() {
    let sdk = harness::emulator().await;
    let mut vars = provision(&sdk, "http://127.0.0.1:9").await;
    vars.insert(
        "WECHAT_OPEN_BASE_URL".into(),
        "https://open.weixin.example".into(),
    );
    let (app, gateway) = gateway_app(Env::from_map(&vars), &sdk).await.unwrap();
    assert_eq!(app.channel.mchid(), dev_keys::MCHID);
    assert_eq!(app.store.table_name(), vars["FERRYPAY_TABLE"]);

    // A link opened inside WeChat: the merchant comes from DynamoDB by its publishable key,
    // and the payer goes to the configured OAuth host with the account's appid and a
    // redirect_uri on FERRYPAY_PUBLIC_URL.
    let (_, keys) = onboard(
        &sdk,
        &vars,
        NewMerchant {
            name: "Gateway Shop".into(),
            ..NewMerchant::default()
        },
    )
    .await;
    let request = http::Request::builder()
        .method("GET")
        .uri(format!(
            "/pay/gateway?key={}&amount=1234",
            keys.publishable_key
        ))
        .header(
            "user-agent",
            "Mozilla/5.0 (iPhone) AppleWebKit/605.1.15 MicroMessenger/8.0.50",
        )
        .body(Bytes::new())
        .unwrap();
    let response = api::gateway::handle_gateway(&app, &gateway, request).await;
    assert_eq!(response.status(), 302, "{}", response.body());
    let location = response.headers()["location"].to_str().unwrap();
    let expected = format!(
        "https://open.weixin.example/connect/oauth2/authorize?appid={}&redirect_uri=\
         https%3A%2F%2Fpay.example.com%2Fpay%2Fgateway%3Fkey%3D{}",
        dev_keys::APPID,
        keys.publishable_key
    );
    assert!(location.starts_with(&expected), "{location}");
    assert!(location.ends_with("#wechat_redirect"), "{location}");
}

#[tokio::test]
async fn the_gateway_refuses_to_start_without_the_oauth_secret() {
    let sdk = harness::emulator().await;
    let mut vars = provision(&sdk, "http://127.0.0.1:9").await;
    for oauth_secret in [None, Some("")] {
        let arn = secret_with_oauth(&sdk, oauth_secret).await;
        vars.insert("FERRYPAY_WECHAT_SECRET_ARN".into(), arn);
        // The other functions start from this environment: only the gateway needs the secret.
        lambda_app(Env::from_map(&vars), &sdk).await.unwrap();
        // The gateway does not, and says where the secret goes, together with every other
        // problem.
        let mut incomplete = vars.clone();
        incomplete.remove("FERRYPAY_TABLE");
        let err = match gateway_app(Env::from_map(&incomplete), &sdk).await {
            Err(StartError::Config(e)) => e,
            other => panic!("expected a configuration error, got {:?}", other.err()),
        };
        assert_eq!(err.0.len(), 2, "{err}");
        let text = err.to_string();
        for name in ["FERRYPAY_TABLE", "WECHAT_OAUTH_SECRET", "oauth_secret"] {
            assert!(text.contains(name), "{name} missing from: {text}");
        }
    }

    // Without Secrets Manager (key files, as in local runs) the same: every variable at once.
    let empty = BTreeMap::new();
    let text = match gateway_app(Env::from_map(&empty), &sdk).await {
        Err(StartError::Config(e)) => e.to_string(),
        other => panic!("expected a configuration error, got {:?}", other.err()),
    };
    for name in [
        "FERRYPAY_TABLE",
        "FERRYPAY_NOTIFY_QUEUE_URL",
        "FERRYPAY_PUBLIC_URL",
        "WECHATPAY_MCHID",
        "WECHATPAY_APPID",
        "WECHATPAY_PRIVATE_KEY_FILE",
        "WECHAT_OAUTH_SECRET",
        "oauth_secret",
    ] {
        assert!(text.contains(name), "{name} missing from: {text}");
    }
}

/// A secret holding `value` as its string: its ARN.
async fn plain_secret(sdk: &aws_config::SdkConfig, prefix: &str, value: &str) -> String {
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(unique_name(prefix))
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

/// What list and resend get: the table and the queue, nothing of WeChat Pay's.
fn store_only_vars(vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    worker_vars(vars)
}

#[tokio::test]
async fn list_and_resend_run_without_any_wechat_pay_setting_or_secret() {
    let (sdk, mock, vars, app) = provisioned_with_mock().await;
    let receiver = TestReceiver::start(200).await;
    let (no, keys) = paid_order_and_keys((&sdk, &vars), &app, &mock, &receiver.url()).await;

    // No FERRYPAY_WECHAT_SECRET_ARN, no WECHATPAY_*: the store-only services start.
    let store_app = store_only_app(Env::from_map(&store_only_vars(&vars)), &sdk)
        .await
        .unwrap();
    let request = |method: &str, uri: &str, body: &'static [u8]| {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .header("x-api-key", keys.secret_key.expose())
            .body(Bytes::from_static(body))
            .unwrap()
    };
    let response = api::handle(&store_app, request("GET", "/api/v1/pay/list", b"")).await;
    assert_eq!(response.status(), 200, "{}", response.body());
    let listed: Value = serde_json::from_str(response.body()).unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["orders"][0]["order_no"], no.as_str());
    assert_eq!(listed["orders"][0]["status"], "paid");

    let response = api::handle(
        &store_app,
        request(
            "POST",
            "/api/v1/pay/notify/resend",
            br#"{"out_trade_no": "rt-webhook-1"}"#,
        ),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.body());
    let stored = app.store.get_order(&no).await.unwrap().unwrap();
    assert_eq!(stored.webhook.generation, 1, "a new generation was queued");

    // A path that reached for the channel there is refused, never a call to WeChat Pay.
    let response = api::handle(
        &store_app,
        request("POST", "/api/v1/pay/create", br#"{"amount": 100}"#),
    )
    .await;
    assert!(response.status().is_server_error(), "{}", response.body());
    assert!(
        !response.body().contains("payment channel"),
        "{}",
        response.body()
    );
}

#[tokio::test]
async fn the_store_only_wiring_asks_for_its_own_variables_only() {
    let sdk = harness::emulator().await;
    let err = match store_only_app(Env::from_map(&BTreeMap::new()), &sdk).await {
        Err(StartError::Config(e)) => e,
        other => panic!("expected a configuration error, got {:?}", other.err()),
    };
    assert_eq!(
        err.variables(),
        ["FERRYPAY_TABLE", "FERRYPAY_NOTIFY_QUEUE_URL"],
        "{err}"
    );
}

#[tokio::test]
async fn the_gateway_reads_the_oauth_secret_from_a_secret_of_its_own() {
    let sdk = harness::emulator().await;
    let mut vars = provision(&sdk, "http://127.0.0.1:9").await;
    // The payment functions' secret without oauth_secret; the AppSecret in its own secret.
    vars.insert(
        "FERRYPAY_WECHAT_SECRET_ARN".into(),
        secret_with_oauth(&sdk, None).await,
    );
    for form in [
        "own-oauth-secret",
        r#"{"oauth_secret": "own-oauth-secret"}"#,
    ] {
        let arn = plain_secret(&sdk, "ferrypay-oauth", form).await;
        vars.insert("FERRYPAY_WECHAT_OAUTH_SECRET_ARN".into(), arn);
        gateway_app(Env::from_map(&vars), &sdk).await.unwrap();
    }
    // The other functions neither need nor read it.
    let mut payment_vars = vars.clone();
    payment_vars.remove("FERRYPAY_WECHAT_OAUTH_SECRET_ARN");
    lambda_app(Env::from_map(&payment_vars), &sdk)
        .await
        .unwrap();

    // Moving from the single secret: the old field with another value is refused, unshown.
    vars.insert(
        "FERRYPAY_WECHAT_SECRET_ARN".into(),
        secret_with_oauth(&sdk, Some("hunter2-old")).await,
    );
    let err = match gateway_app(Env::from_map(&vars), &sdk).await {
        Err(StartError::Config(e)) => e,
        other => panic!("expected a configuration error, got {:?}", other.err()),
    };
    assert_eq!(
        err.variables(),
        ["FERRYPAY_WECHAT_OAUTH_SECRET_ARN"],
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");

    // A secret that is neither form: a start error that does not echo it.
    let arn = plain_secret(&sdk, "ferrypay-oauth", r#"{"app_secret": "hunter2"}"#).await;
    vars.insert("FERRYPAY_WECHAT_OAUTH_SECRET_ARN".into(), arn);
    match gateway_app(Env::from_map(&vars), &sdk).await {
        Err(StartError::Secret(message)) => assert!(!message.contains("hunter2"), "{message}"),
        other => panic!("expected a secret error, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn the_origin_verification_secret_is_read_once_and_must_be_long() {
    let sdk = harness::emulator().await;
    assert!(origin_verify_secret(&Env::from_map(&BTreeMap::new()), &sdk)
        .await
        .unwrap()
        .is_none());
    let value = "a".repeat(24) + &"B".repeat(24);
    let mut vars = BTreeMap::new();
    vars.insert(
        "FERRYPAY_ORIGIN_VERIFY_SECRET_ARN".to_string(),
        plain_secret(&sdk, "ferrypay-origin", &value).await,
    );
    let secret = origin_verify_secret(&Env::from_map(&vars), &sdk)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(secret.expose(), &value);

    vars.insert(
        "FERRYPAY_ORIGIN_VERIFY_SECRET_ARN".to_string(),
        plain_secret(&sdk, "ferrypay-origin", "hunter2").await,
    );
    match origin_verify_secret(&Env::from_map(&vars), &sdk).await {
        Err(StartError::Secret(message)) => {
            assert!(message.contains("fewer than"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("expected a secret error, got {other:?}"),
    };
}
