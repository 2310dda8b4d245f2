//! Helpers for tests in other crates (enabled by the `test-util` feature): a ready app on the
//! in-memory store and fake channel, with a merchant whose keys are fixed public test values,
//! the instant the tests' manual clocks start at, and an HTTP receiver on 127.0.0.1 (hyper).

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpListener,
    task::{JoinHandle, JoinSet},
};

use crate::{
    channel::FakeChannel,
    model::{
        Clock, Fen, ManualClock, Merchant, MerchantId, Order, OrderNo, OrderSource, OrderStatus,
        OutTradeNo, PayType, Secret, Timestamp,
    },
    queue::MemoryQueue,
    service::{
        CreateOrder, Ferrypay, InMemory, IssuedKeys, MerchantAdmin, NewMerchant, ServiceConfig,
    },
    store::{MemoryStore, OrderStore},
};

/// Public test keys (never valid anywhere but in tests). The sample events in `events/` use them.
pub const TEST_SECRET_KEY: &str = "sk_test_ferrypay_events_0000000000000";
pub const TEST_PUBLISHABLE_KEY: &str = "pk_test_ferrypay_events_0000000000000";
pub const TEST_WEBHOOK_SECRET: &str = "whsec_dGVzdC13ZWJob29rLXNlY3JldC1mb3ItZXZlbnRz";

/// 2025-12-21 10:30:00 Beijing time: where the tests' manual clocks start.
pub const START: i64 = 1_766_284_200;

/// A manual clock at [`START`].
pub fn clock_at_start() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_unix(START)))
}

pub type TestApp = Ferrypay<InMemory>;

/// An app with default settings (rate limits off) and the given clock.
pub fn app_with_clock(clock: Arc<dyn Clock>) -> TestApp {
    let config = ServiceConfig {
        rate_limit_per_minute: None,
        link_rate_limit_per_minute: None,
        ip_rate_limit_per_minute: None,
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
        notify_events: None,
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
        out_trade_no: out_trade_no.and_then(|o| OutTradeNo::parse(o).ok()),
        attach: None,
        notify_url: None,
        expire_minutes: None,
        source: OrderSource::Api,
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

/// The order as the app's store holds it now (which must exist).
pub async fn stored_order(app: &TestApp, order_no: &OrderNo) -> Order {
    match app.store.get_order(order_no).await {
        Ok(Some(order)) => order,
        Ok(None) => unreachable_in_tests(&format!("{order_no} is not stored")),
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
        source: OrderSource::Api,
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
        refunds: Default::default(),
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
    /// The request target: path and query.
    pub path: String,
    /// Names in lower case, in the order received (a repeated name's values together).
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte.
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

/// What a [`TestReceiver`] answers: a status, headers, a body, and how long it waits first
/// (longer than a client's timeout: a timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_string();
        self
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;
type Responder = Arc<dyn Fn(ReceivedRequest) -> ReplyFuture + Send + Sync>;

/// How a [`TestReceiver`] answers once its script is used up.
#[derive(Clone)]
enum Fallback {
    Fixed(Reply),
    Responder(Responder),
}

struct ReceiverState {
    script: VecDeque<Reply>,
    fallback: Fallback,
    requests: Vec<ReceivedRequest>,
    connections: usize,
}

/// The most a [`TestReceiver`] reads of one request body (more is answered 413).
const RECEIVER_MAX_BODY: usize = 1024 * 1024;

/// An HTTP/1.1 server on 127.0.0.1 (a free port, keep-alive) for tests: a merchant's webhook
/// endpoint, a merchant's site, a proxy. It records every request (before answering, so a
/// client that has its answer finds it recorded), answers the scripted replies in order, then
/// its fallback: one fixed reply, or a function of the request. Stops when dropped.
pub struct TestReceiver {
    addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    task: JoinHandle<()>,
}

impl TestReceiver {
    /// Answers every request `status` with the body `ok` (until scripted otherwise).
    pub async fn start(status: u16) -> TestReceiver {
        Self::with_fallback(Fallback::Fixed(Reply::status(status).body("ok"))).await
    }

    /// Answers every request with what `respond` makes of it (until scripted otherwise).
    pub async fn serve<F, Fut>(respond: F) -> TestReceiver
    where
        F: Fn(ReceivedRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        let responder: Responder = Arc::new(move |request| Box::pin(respond(request)));
        Self::with_fallback(Fallback::Responder(responder)).await
    }

    async fn with_fallback(fallback: Fallback) -> TestReceiver {
        let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
            Ok(listener) => listener,
            Err(e) => unreachable_in_tests(&format!("binding a receiver on 127.0.0.1: {e}")),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(e) => unreachable_in_tests(&e.to_string()),
        };
        let state = Arc::new(Mutex::new(ReceiverState {
            script: VecDeque::new(),
            fallback,
            requests: Vec::new(),
            connections: 0,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            // Dropping this task drops the set, which aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if let Ok(mut state) = shared.lock() {
                    state.connections += 1;
                }
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| answer(request, shared.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        TestReceiver { addr, state, task }
    }

    /// Replies for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        if let Ok(mut state) = self.state.lock() {
            state.script.extend(replies);
        }
    }

    /// The reply once the script is used up.
    pub fn answer_by_default(&self, reply: Reply) {
        if let Ok(mut state) = self.state.lock() {
            state.fallback = Fallback::Fixed(reply);
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/webhook`.
    pub fn url(&self) -> String {
        self.url_for("/webhook")
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url_for(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.state
            .lock()
            .map(|state| state.requests.clone())
            .unwrap_or_default()
    }

    /// How many requests it has received.
    pub fn count(&self) -> usize {
        self.state
            .lock()
            .map(|state| state.requests.len())
            .unwrap_or_default()
    }

    /// TCP connections accepted (a refused target must not even be connected to).
    pub fn connections(&self) -> usize {
        self.state
            .lock()
            .map(|state| state.connections)
            .unwrap_or_default()
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request: read whole, recorded, answered (the next scripted reply, else the fallback).
async fn answer(
    request: http::Request<Incoming>,
    state: Arc<Mutex<ReceiverState>>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let Ok(body) = Limited::new(body, RECEIVER_MAX_BODY).collect().await else {
        return Ok(response(&Reply::status(413)));
    };
    let received = ReceivedRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path_and_query().map_or_else(
            || parts.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        ),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
        body: body.to_bytes().to_vec(),
    };
    let next = match state.lock() {
        Ok(mut state) => {
            state.requests.push(received.clone());
            match state.script.pop_front() {
                Some(reply) => Fallback::Fixed(reply),
                None => state.fallback.clone(),
            }
        }
        Err(_) => Fallback::Fixed(Reply::status(500)),
    };
    let reply = match next {
        Fallback::Fixed(reply) => reply,
        Fallback::Responder(respond) => respond(received).await,
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    Ok(response(&reply))
}

fn response(reply: &Reply) -> http::Response<Full<Bytes>> {
    let mut builder = http::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(reply.body.clone())))
        .unwrap_or_else(|e| unreachable_in_tests(&format!("a receiver's reply {reply:?}: {e}")))
}

#[allow(clippy::panic)]
fn unreachable_in_tests(why: &str) -> ! {
    panic!("test setup failed: {why}")
}
