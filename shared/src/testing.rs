//! Helpers for tests in other crates (enabled by the `test-util` feature): a ready app on the
//! in-memory store and fake channel, with a merchant whose keys are fixed public test values.

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{
    channel::FakeChannel,
    model::{
        Clock, Fen, Merchant, MerchantId, Order, OrderNo, OrderStatus, OutTradeNo, PayType, Secret,
        Timestamp,
    },
    queue::MemoryQueue,
    service::{CreateOrder, Ferrypay, InMemory, IssuedKeys, NewMerchant, ServiceConfig},
    store::MemoryStore,
};

/// Public test keys (never valid anywhere but in tests). The sample events in `events/` use them.
pub const TEST_SECRET_KEY: &str = "sk_test_ferrypay_events_0000000000000";
pub const TEST_PUBLISHABLE_KEY: &str = "pk_test_ferrypay_events_0000000000000";
pub const TEST_WEBHOOK_SECRET: &str = "whsec_dGVzdC13ZWJob29rLXNlY3JldC1mb3ItZXZlbnRz";

pub type TestApp = Ferrypay<InMemory>;

/// An app with default settings (rate limit off) and the given clock.
pub fn app_with_clock(clock: Arc<dyn Clock>) -> TestApp {
    let config = ServiceConfig {
        rate_limit_per_minute: None,
        ..ServiceConfig::default()
    };
    Ferrypay::with_clock(
        MemoryStore::new(),
        FakeChannel::new(),
        MemoryQueue::default(),
        config,
        clock,
    )
}

/// Onboards the test merchant (the fixed keys above).
pub async fn onboard_test_merchant(app: &TestApp, name: &str) -> (Merchant, IssuedKeys) {
    onboard(app, name, Some(TEST_SECRET_KEY), Some(TEST_PUBLISHABLE_KEY)).await
}

/// Onboards a merchant with the given keys (generated when `None`).
pub async fn onboard(
    app: &TestApp,
    name: &str,
    secret_key: Option<&str>,
    publishable_key: Option<&str>,
) -> (Merchant, IssuedKeys) {
    let new = NewMerchant {
        name: name.to_string(),
        notify_url: Some("https://merchant.example/notify".into()),
        secret_key: secret_key.map(|k| Secret::new(k.to_string())),
        publishable_key: publishable_key.map(str::to_string),
        webhook_secret: Some(Secret::new(TEST_WEBHOOK_SECRET.to_string())),
    };
    match app.onboard_merchant(new).await {
        Ok(done) => done,
        Err(e) => unreachable_in_tests(&e.to_string()),
    }
}

/// Creates a native order for `merchant` through the service (as the create endpoint would).
pub async fn create_test_order(
    app: &TestApp,
    merchant: &Merchant,
    amount: i64,
    out_trade_no: Option<&str>,
) -> Order {
    let request = CreateOrder {
        amount: Fen::new(amount),
        description: None,
        pay_type: PayType::Native,
        openid: None,
        client_ip: None,
        out_trade_no: out_trade_no.and_then(OutTradeNo::parse),
        attach: None,
        notify_url: None,
        expire_minutes: None,
    };
    match app.create_order(merchant, request).await {
        Ok(created) => created.order,
        Err(e) => unreachable_in_tests(&e.to_string()),
    }
}

/// A pending native order with nothing optional set, created at `created_at` and payable for
/// two hours: the fixture tests start from.
pub fn pending_order(
    order_no: OrderNo,
    merchant_id: MerchantId,
    amount: i64,
    created_at: Timestamp,
) -> Order {
    Order {
        order_no,
        merchant_id,
        out_trade_no: None,
        amount: Fen::new(amount),
        description: "Coffee".into(),
        pay_type: PayType::Native,
        openid: None,
        client_ip: None,
        attach: None,
        notify_url: None,
        status: OrderStatus::Pending,
        credential: None,
        transaction_id: None,
        paid_at: None,
        closed_at: None,
        webhook: Default::default(),
        created_at,
        expires_at: created_at.plus_secs(7200),
        request_fingerprint: String::new(),
    }
}

/// The AWS emulator (moto) the AWS tests run against: `FERRYPAY_TEST_AWS_ENDPOINT`, which
/// `make test` sets after starting it. Without it the tests fail, never skip.
pub fn aws_test_endpoint() -> String {
    match std::env::var("FERRYPAY_TEST_AWS_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => unreachable_in_tests(
            "FERRYPAY_TEST_AWS_ENDPOINT is not set: the AWS tests run against moto's server, \
             which `make test` installs and starts. Run `make test`.",
        ),
    }
}

/// A name no other test (in this or another run against the same emulator) uses.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

#[allow(clippy::panic)]
fn unreachable_in_tests(why: &str) -> ! {
    panic!("test setup failed: {why}")
}
