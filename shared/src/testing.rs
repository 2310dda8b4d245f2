//! Helpers for tests in other crates (enabled by the `test-util` feature): a ready app on the
//! in-memory store and fake channel, with a merchant whose keys are fixed public test values,
//! and a webhook receiver on 127.0.0.1.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use crate::{
    channel::FakeChannel,
    model::{
        Clock, Fen, Merchant, MerchantId, Order, OrderNo, OrderStatus, OutTradeNo, PayType, Secret,
        Timestamp,
    },
    queue::MemoryQueue,
    service::{
        CreateOrder, Ferrypay, InMemory, IssuedKeys, MerchantAdmin, NewMerchant, ServiceConfig,
    },
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

/// The payer pays `order` (the fake channel), and query-through settles it as the query
/// endpoint would: the order is paid and its webhook job is on the app's queue.
pub async fn pay_test_order(app: &TestApp, order: &Order) -> Order {
    if app.channel.pay(&order.order_no, app.clock.now()).is_none() {
        unreachable_in_tests(&format!("{} cannot be paid", order.order_no));
    }
    match app.refresh(order.clone()).await {
        Ok(paid) if paid.status == OrderStatus::Paid => paid,
        Ok(other) => unreachable_in_tests(&format!("{} is {:?}", other.order_no, other.status)),
        Err(e) => unreachable_in_tests(&e.to_string()),
    }
}

/// Points the merchant's webhooks at `url`, which may be `http://` (an operator's dev-table
/// setting; tests use it for receivers on 127.0.0.1).
pub async fn set_test_notify_url(app: &TestApp, merchant: &MerchantId, url: &str) -> Merchant {
    match MerchantAdmin::new(&app.store, &*app.clock, true)
        .set_notify_url(merchant, Some(url.to_string()))
        .await
    {
        Ok(merchant) => merchant,
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

/// One request a [`TestReceiver`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The most a [`TestReceiver`] reads of one request, and the most connections it serves.
const RECEIVER_MAX_REQUEST: usize = 64 * 1024;
const RECEIVER_MAX_CONNECTIONS: usize = 1000;
const RECEIVER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A merchant's webhook endpoint for tests: an HTTP/1.1 server on 127.0.0.1 (a free port)
/// answering every request with one status and recording it. Stops when dropped.
pub struct TestReceiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<ReceivedRequest>>>,
    task: JoinHandle<()>,
}

impl TestReceiver {
    pub async fn start(status: u16) -> TestReceiver {
        let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
            Ok(listener) => listener,
            Err(e) => unreachable_in_tests(&format!("binding a receiver on 127.0.0.1: {e}")),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(e) => unreachable_in_tests(&e.to_string()),
        };
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            for _ in 0..RECEIVER_MAX_CONNECTIONS {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                tokio::spawn(tokio::time::timeout(
                    RECEIVER_READ_TIMEOUT,
                    answer_one(stream, status, recorded),
                ));
            }
        });
        TestReceiver {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:<port>/webhook`.
    pub fn url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.requests
            .lock()
            .map(|all| all.clone())
            .unwrap_or_default()
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (headers, then `content-length` bytes of body), records it (before
/// answering, so a client that has its answer finds it recorded), answers `status` and closes
/// the connection.
async fn answer_one(
    mut stream: TcpStream,
    status: u16,
    recorded: Arc<Mutex<Vec<ReceivedRequest>>>,
) -> Option<()> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if data.len() > RECEIVER_MAX_REQUEST {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(RECEIVER_MAX_REQUEST);
    let mut body = data[header_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    if let Ok(mut all) = recorded.lock() {
        all.push(ReceivedRequest {
            method,
            path,
            headers,
            body,
        });
    }
    let answer = format!(
        "HTTP/1.1 {status} Test\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
    stream.write_all(answer.as_bytes()).await.ok()?;
    let _ = stream.shutdown().await;
    Some(())
}

#[allow(clippy::panic)]
fn unreachable_in_tests(why: &str) -> ! {
    panic!("test setup failed: {why}")
}
