//! Merchant webhooks through the notify-worker (`WebhookWorker`), against scriptable HTTP
//! receivers on 127.0.0.1 (`ferrypay::testing::TestReceiver`): retries until a 2xx, the attempt log, Standard Webhooks signatures
//! over the exact bytes received, timeouts, redirects not followed, `Retry-After`, the SSRF
//! guard, the schedule used up, SQS redelivery, resends, waits that hop past SQS's 15 minutes,
//! malformed messages ending in the dead-letter queue, secret rotation, a missing notify URL.
//!
//! Time: the store, the signatures and `not_before` read a `ManualClock`; the `MemoryQueue`
//! (delays, visibility) reads tokio's clock. When nothing is visible the tests jump both by the
//! same amount (tokio's clock is paused, advanced and resumed around the jump, never while a
//! request is in flight), so a `1s,2s,3s` schedule or a one-hour wait costs no real time.

use std::{
    cell::RefCell,
    collections::VecDeque,
    future::Future,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use ferrypay::{
    channel::FakeChannel,
    model::{
        Clock, Fen, ManualClock, Merchant, Order, OrderNo, OrderSource, OutTradeNo, PayType,
        Secret, WebhookAttempt, WebhookStatus,
    },
    outbound::{OutboundClient, OutboundError, OutboundPolicy},
    queue::{MemoryQueue, MemoryQueueConfig, OutgoingMessage, Queue, ReceivedMessage},
    service::{
        retry::RetrySchedule, CreateOrder, Ferrypay, JobError, JobOutcome, MerchantAdmin,
        NewMerchant, OrderRef, ServiceConfig, SkipReason, WebhookJob, WebhookSender, WebhookWorker,
    },
    sign::webhook::{verify, WebhookVerifyError, DEFAULT_TOLERANCE_SECS},
    store::{prelude::*, MemoryStore},
    testing::{
        clock_at_start, ReceivedRequest, Reply, TestApp, TestReceiver, START, TEST_WEBHOOK_SECRET,
    },
};
use proptest::prelude::*;

/// Real seconds any one test may take.
const LIMIT_SECS: u64 = 20;
/// The queue's visibility timeout and `maxReceiveCount` in these tests.
const VISIBILITY: Duration = Duration::from_secs(30);
const MAX_RECEIVES: u32 = 3;

// ---------------------------------------------------------------- the rig

/// Runs a test body under a real-time limit. (`tokio::time::timeout` would measure tokio's
/// clock, which the tests jump by minutes; a watchdog thread measures real seconds.)
pub(crate) async fn bounded<T>(test: impl Future<Output = T>) -> T {
    let (expired, limit) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(LIMIT_SECS));
        let _ = expired.send(());
    });
    tokio::select! {
        out = test => out,
        _ = limit => panic!("the test took longer than {LIMIT_SECS} s"),
    }
}

fn no_jitter() -> f64 {
    0.0
}

thread_local! {
    /// Jitter draws for [`scripted_jitter`] (the worker runs on the test's thread).
    static JITTER: RefCell<VecDeque<f64>> = const { RefCell::new(VecDeque::new()) };
}

fn scripted_jitter() -> f64 {
    JITTER.with(|draws| draws.borrow_mut().pop_front().unwrap_or(0.0))
}

/// An app on the memory store and queue with a manual clock, a merchant without a default
/// notify URL (orders carry theirs), and a webhook sender.
pub(crate) struct Rig {
    pub(crate) app: TestApp,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) merchant: Merchant,
    pub(crate) sender: WebhookSender,
    /// Tokio's clock when the rig started, and the whole seconds since then the manual clock
    /// has been moved by [`Rig::jump`].
    origin: tokio::time::Instant,
    synced: AtomicI64,
}

impl Rig {
    /// Loopback allowed, a 5 s timeout, no jitter.
    pub(crate) async fn new(schedule: &str) -> Rig {
        Rig::build(
            OutboundPolicy::DEV,
            Duration::from_secs(5),
            schedule,
            no_jitter,
        )
        .await
    }

    pub(crate) async fn build(
        policy: OutboundPolicy,
        timeout: Duration,
        schedule: &str,
        jitter: fn() -> f64,
    ) -> Rig {
        let clock = clock_at_start();
        let app: TestApp = Ferrypay::with_clock(
            MemoryStore::new(),
            FakeChannel::new(),
            MemoryQueue::new(MemoryQueueConfig {
                visibility_timeout: VISIBILITY,
                max_receive_count: MAX_RECEIVES,
            }),
            ServiceConfig {
                rate_limit_per_minute: None,
                allow_http_notify_urls: true,
                ..ServiceConfig::default()
            },
            clock.clone(),
        );
        let (merchant, _) = app
            .onboard_merchant(NewMerchant {
                name: "Webhook Shop".into(),
                notify_url: None,
                webhook_secret: Some(Secret::new(TEST_WEBHOOK_SECRET.into())),
                ..NewMerchant::default()
            })
            .await
            .unwrap();
        let sender = WebhookSender::with_client(
            OutboundClient::new(policy, timeout).unwrap(),
            RetrySchedule::parse(schedule).unwrap(),
            jitter,
        );
        Rig {
            app,
            clock,
            merchant,
            sender,
            origin: tokio::time::Instant::now(),
            synced: AtomicI64::new(0),
        }
    }

    pub(crate) fn worker(&self) -> WebhookWorker<'_, MemoryStore, MemoryQueue> {
        WebhookWorker::new(&self.app.store, &self.app.queue, &*self.clock, &self.sender)
    }

    pub(crate) fn admin(&self) -> MerchantAdmin<'_, MemoryStore> {
        MerchantAdmin::new(&self.app.store, &*self.clock, true)
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now().unix()
    }

    /// A 19.90 order, paid: its webhook job is on the queue.
    pub(crate) async fn paid_order(
        &self,
        notify_url: Option<&str>,
        out_trade_no: Option<&str>,
        attach: Option<&str>,
    ) -> Order {
        let created = self
            .app
            .create_order(
                &self.merchant,
                CreateOrder {
                    amount: Fen::new(1990),
                    description: None,
                    pay_type: PayType::Native,
                    openid: None,
                    client_ip: None,
                    out_trade_no: out_trade_no.map(|n| OutTradeNo::parse(n).unwrap()),
                    attach: attach.map(str::to_string),
                    notify_url: notify_url.map(str::to_string),
                    expire_minutes: None,
                    source: OrderSource::Api,
                },
            )
            .await
            .unwrap()
            .order;
        self.app
            .channel
            .pay(&created.order_no, self.clock.now())
            .unwrap();
        let paid = self.app.refresh(created).await.unwrap();
        assert_eq!(paid.status.as_str(), "paid");
        assert!(paid.webhook.queued_at.is_some());
        paid
    }

    /// A paid order posting to `url`.
    pub(crate) async fn paid_order_to(&self, url: &str) -> Order {
        self.paid_order(Some(url), None, None).await
    }

    pub(crate) async fn order(&self, order_no: &OrderNo) -> Order {
        self.app.store.get_order(order_no).await.unwrap().unwrap()
    }

    /// The attempt log, newest first.
    pub(crate) async fn attempts(&self, order_no: &OrderNo) -> Vec<WebhookAttempt> {
        self.app
            .store
            .webhook_attempts(order_no, 100)
            .await
            .unwrap()
    }

    /// Moves tokio's clock (the queue's) forward by `by`, and the manual clock with it: by the
    /// whole seconds tokio's clock has passed since the rig started (the real milliseconds
    /// the test spends in between count too), on top of any advance a test made itself. So a
    /// job the queue hands over is never early by the manual clock.
    pub(crate) async fn jump(&self, by: Duration) {
        tokio::time::pause();
        tokio::time::advance(by).await;
        tokio::time::resume();
        let elapsed = i64::try_from(self.origin.elapsed().as_secs()).unwrap();
        let synced = self.synced.swap(elapsed, Ordering::SeqCst);
        self.clock.advance(elapsed - synced);
    }

    /// The next message, jumping the clocks until one is visible.
    pub(crate) async fn next_message(&self) -> ReceivedMessage {
        for _ in 0..2 {
            if let Some(message) = self.app.queue.receive(1).await.unwrap().pop() {
                return message;
            }
            let wait = self
                .app
                .queue
                .next_visible_in()
                .expect("the queue is empty");
            self.jump(wait).await;
        }
        panic!("no message became visible")
    }

    /// Receives the next message (jumping as needed), hands it to the worker and deletes it
    /// if handled, as the Lambda runtime does.
    pub(crate) async fn step(&self) -> (ReceivedMessage, JobOutcome) {
        let message = self.next_message().await;
        let outcome = self.worker().handle_message(&message.body).await.unwrap();
        self.app.queue.delete(&message.receipt).await.unwrap();
        (message, outcome)
    }

    /// Steps until the queue is empty (at most `max` steps); the outcomes in order.
    pub(crate) async fn run(&self, max: usize) -> Vec<JobOutcome> {
        let mut outcomes = Vec::new();
        while !self.app.queue.is_empty() {
            assert!(
                outcomes.len() < max,
                "still busy after {max} steps: {outcomes:?}"
            );
            outcomes.push(self.step().await.1);
        }
        outcomes
    }
}

pub(crate) fn retrying(attempt: u32, secs: u64) -> JobOutcome {
    JobOutcome::Retrying {
        attempt,
        wait: Duration::from_secs(secs),
    }
}

fn hopped(secs: u64) -> JobOutcome {
    JobOutcome::Hopped {
        remaining: Duration::from_secs(secs),
    }
}

pub(crate) fn job_of(message: &str) -> WebhookJob {
    serde_json::from_str(message).unwrap()
}

/// Checks a received webhook as a receiver would: the signature over the exact raw body, with
/// `secret`, at the `webhook-timestamp` it carries.
pub(crate) fn verify_request(
    secret: &str,
    request: &ReceivedRequest,
) -> Result<(), WebhookVerifyError> {
    let timestamp: i64 = request
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    verify(
        secret,
        request.header("webhook-signature").unwrap(),
        request.header("webhook-id").unwrap(),
        timestamp,
        &request.body,
        timestamp,
        DEFAULT_TOLERANCE_SECS,
    )
}

// ---------------------------------------------------------------- retries and the log

#[tokio::test]
async fn fails_three_times_then_succeeds_with_every_attempt_logged() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let long = "0123456789abcdef".repeat(200); // 3200 bytes
        receiver.script([
            Reply::status(500).body(&long),
            Reply::status(503)
                .body("busy")
                .after(Duration::from_millis(150)),
            Reply::status(404).body("no such hook"),
        ]);
        let rig = Rig::new("1s,2s,3s,4s").await;
        let url = receiver.url_for("/hooks/paid");
        let order = rig.paid_order_to(&url).await;
        assert_eq!(order.webhook.status, WebhookStatus::Pending);

        let mut due = Vec::new();
        for (attempt, wait) in [(1, 1), (2, 2), (3, 3)] {
            let (_, outcome) = rig.step().await;
            assert_eq!(outcome, retrying(attempt, wait));
            let state = rig.order(&order.order_no).await.webhook;
            assert_eq!(state.status, WebhookStatus::Failing);
            assert_eq!(state.attempts, attempt);
            let last = state.last_attempt_at.unwrap().unix();
            assert_eq!(last, rig.now());
            let next = state.next_attempt_at.unwrap().unix();
            assert_eq!(next - last, i64::try_from(wait).unwrap());
            due.push(next);
        }
        assert!(due.windows(2).all(|w| w[0] < w[1]), "{due:?}");
        let (_, outcome) = rig.step().await;
        assert_eq!(outcome, JobOutcome::Delivered { attempt: 4 });
        assert!(rig.app.queue.is_empty(), "nothing more is queued");
        assert_eq!(receiver.count(), 4, "exactly N+1 requests");

        let state = rig.order(&order.order_no).await.webhook;
        assert_eq!(state.status, WebhookStatus::Delivered);
        assert_eq!(state.attempts, 4);
        assert_eq!(state.delivered_at.unwrap().unix(), START + 6);
        assert_eq!(state.next_attempt_at, None);

        let log = rig.attempts(&order.order_no).await;
        let numbers: Vec<u32> = log.iter().map(|a| a.attempt).collect();
        assert_eq!(numbers, [4, 3, 2, 1], "newest first");
        let codes: Vec<Option<u16>> = log.iter().map(|a| a.status_code).collect();
        assert_eq!(codes, [Some(200), Some(404), Some(503), Some(500)]);
        let at: Vec<i64> = log.iter().map(|a| a.at.unix()).collect();
        assert_eq!(at, [START + 6, START + 3, START + 1, START]);
        let delivered: Vec<bool> = log.iter().map(|a| a.delivered).collect();
        assert_eq!(delivered, [true, false, false, false]);
        assert_eq!(log[0].response.as_deref(), Some("ok"));
        assert_eq!(log[1].response.as_deref(), Some("no such hook"));
        assert_eq!(log[2].response.as_deref(), Some("busy"));
        assert_eq!(
            log[3].response.as_deref(),
            Some(&long[..1024]),
            "the first KiB"
        );
        assert!(log[2].latency_ms >= 150, "latency {}", log[2].latency_ms);
        assert!(log.iter().all(|a| a.latency_ms < 5_000));
        for a in &log {
            assert_eq!(a.url.as_deref(), Some(url.as_str()));
            assert_eq!(a.error, None);
            assert_eq!(a.generation, 0);
            assert_eq!(a.event_id, format!("evt_{}_paid", order.order_no));
        }
    })
    .await;
}

#[tokio::test]
async fn every_retry_carries_the_same_id_a_fresh_timestamp_and_a_signature_over_the_raw_body() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        receiver.script([Reply::status(500), Reply::status(500)]);
        let rig = Rig::new("1s,5s").await;
        let full = rig
            .paid_order(
                Some(&receiver.url_for("/hooks/paid?shop=1")),
                Some("shop-1001"),
                Some("user_id=123"),
            )
            .await;
        let outcomes = rig.run(10).await;
        assert_eq!(
            outcomes,
            [
                retrying(1, 1),
                retrying(2, 5),
                JobOutcome::Delivered { attempt: 3 }
            ]
        );
        let requests = receiver.requests();
        assert_eq!(requests.len(), 3);

        let expected = format!(
            r#"{{"event":"order.paid","order_no":"{}","out_trade_no":"shop-1001","amount":1990,"status":"paid","transaction_id":"{}","paid_at":"2025-12-21 10:30:00","attach":"user_id=123","source":"api"}}"#,
            full.order_no,
            full.transaction_id.as_deref().unwrap()
        );
        let id = format!("evt_{}_paid", full.order_no);
        let mut timestamps = Vec::new();
        for request in &requests {
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, "/hooks/paid?shop=1");
            assert_eq!(request.header("content-type").unwrap(), "application/json");
            assert!(request.header("user-agent").unwrap().starts_with("ferrypay-webhooks/"));
            assert_eq!(request.header("webhook-id").unwrap(), id, "stable across retries");
            assert_eq!(String::from_utf8(request.body.clone()).unwrap(), expected);
            let signature = request.header("webhook-signature").unwrap();
            assert!(signature.starts_with("v1,") && !signature.contains(' '));
            verify_request(TEST_WEBHOOK_SECRET, request).unwrap();
            timestamps.push(request.header("webhook-timestamp").unwrap().parse::<i64>().unwrap());
        }
        assert_eq!(timestamps, [START, START + 1, START + 6], "fresh on every attempt");

        // The signature covers the bytes: one changed byte, or another id, fails.
        let mut tampered = requests[0].clone();
        tampered.body = expected.replace("1990", "1991").into_bytes();
        assert_eq!(
            verify_request(TEST_WEBHOOK_SECRET, &tampered),
            Err(WebhookVerifyError::NoMatch)
        );

        // Nothing optional set: the same nine fields, the optional ones as nulls.
        let bare = rig.paid_order_to(&receiver.url_for("/hooks/paid")).await;
        assert_eq!(rig.run(5).await, [JobOutcome::Delivered { attempt: 1 }]);
        let last = receiver.requests().pop().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&last.body).unwrap();
        let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
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
        assert_eq!(body["order_no"], bare.order_no.as_str());
        assert!(body["out_trade_no"].is_null() && body["attach"].is_null());
        assert_eq!(body["source"], "api");
        verify_request(TEST_WEBHOOK_SECRET, &last).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_a_failed_attempt_and_retried() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        receiver.script([Reply::status(200).after(Duration::from_secs(5))]);
        let rig = Rig::build(
            OutboundPolicy::DEV,
            Duration::from_millis(500),
            "1s",
            no_jitter,
        )
        .await;
        let order = rig.paid_order_to(&receiver.url_for("/slow")).await;
        let (_, outcome) = rig.step().await;
        assert_eq!(outcome, retrying(1, 1));
        let log = rig.attempts(&order.order_no).await;
        assert_eq!(log[0].status_code, None);
        assert!(!log[0].delivered);
        let error = log[0].error.as_deref().unwrap();
        assert!(error.contains("timed out"), "{error}");
        assert!(log[0].latency_ms >= 450, "latency {}", log[0].latency_ms);

        let (_, outcome) = rig.step().await;
        assert_eq!(outcome, JobOutcome::Delivered { attempt: 2 });
        assert_eq!(receiver.count(), 2);
    })
    .await;
}

#[tokio::test]
async fn redirects_are_failures_and_are_never_followed() {
    bounded(async {
        let target = TestReceiver::start(200).await;
        let redirector = TestReceiver::start(200).await;
        let location = target.url_for("/stolen");
        redirector.script(
            [301, 302, 307, 308].map(|code| Reply::status(code).header("location", &location)),
        );
        let rig = Rig::new("1s,1s,1s").await;
        let order = rig.paid_order_to(&redirector.url_for("/hook")).await;
        let outcomes = rig.run(10).await;
        assert_eq!(
            outcomes,
            [
                retrying(1, 1),
                retrying(2, 1),
                retrying(3, 1),
                JobOutcome::GaveUp { attempt: 4 }
            ]
        );
        assert_eq!(redirector.count(), 4);
        assert_eq!(target.count(), 0, "the Location target receives nothing");
        assert_eq!(target.connections(), 0);
        let codes: Vec<Option<u16>> = rig
            .attempts(&order.order_no)
            .await
            .iter()
            .map(|a| a.status_code)
            .collect();
        assert_eq!(codes, [Some(308), Some(307), Some(302), Some(301)]);
        assert_eq!(
            rig.order(&order.order_no).await.webhook.status,
            WebhookStatus::Failed
        );
    })
    .await;
}

#[tokio::test]
async fn gone_and_server_errors_are_failures() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        receiver.script([
            Reply::status(410).body("gone"),
            Reply::status(500).body("oops"),
        ]);
        let rig = Rig::new("1s,1s,1s").await;
        let order = rig.paid_order_to(&receiver.url_for("/hook")).await;
        assert_eq!(
            rig.run(10).await,
            [
                retrying(1, 1),
                retrying(2, 1),
                JobOutcome::Delivered { attempt: 3 }
            ]
        );
        let log = rig.attempts(&order.order_no).await;
        assert_eq!(log[1].status_code, Some(500));
        assert_eq!(log[2].status_code, Some(410));
        assert!(!log[1].delivered && !log[2].delivered);
        assert_eq!(log[2].response.as_deref(), Some("gone"));
    })
    .await;
}

#[tokio::test]
async fn retry_after_is_honoured_within_the_schedule_limits() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        receiver.script([
            // Asked for more than scheduled: granted.
            Reply::status(503).header("retry-after", "3"),
            // Asked for an hour: capped at twice the scheduled wait.
            Reply::status(503).header("retry-after", "3600"),
            // Asked for less than scheduled: the schedule wins.
            Reply::status(429).header("retry-after", "1"),
            // An HTTP date is not understood: the schedule.
            Reply::status(503).header("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ]);
        let rig = Rig::new("2s,2s,2s,2s,2s").await;
        let order = rig.paid_order_to(&receiver.url_for("/hook")).await;
        for (attempt, wait) in [(1, 3), (2, 4), (3, 2), (4, 2)] {
            let (_, outcome) = rig.step().await;
            assert_eq!(outcome, retrying(attempt, wait));
            let queued = rig.app.queue.next_visible_in().unwrap();
            assert!(
                queued <= Duration::from_secs(wait)
                    && queued > Duration::from_secs(wait) - Duration::from_millis(100),
                "attempt {attempt}: queued for {queued:?}"
            );
            let state = rig.order(&order.order_no).await.webhook;
            let gap = state.next_attempt_at.unwrap().unix() - state.last_attempt_at.unwrap().unix();
            assert_eq!(gap, i64::try_from(wait).unwrap());
        }
        assert_eq!(rig.step().await.1, JobOutcome::Delivered { attempt: 5 });
        assert_eq!(rig.now(), START + 3 + 4 + 2 + 2);
    })
    .await;
}

// ---------------------------------------------------------------- SSRF

#[tokio::test]
async fn production_policy_refuses_loopback_private_and_metadata_targets_before_connecting() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let port = receiver.addr().port();
        let rig = Rig::build(
            OutboundPolicy::PRODUCTION,
            Duration::from_secs(2),
            "1s",
            no_jitter,
        )
        .await;
        let targets = [
            format!("http://127.0.0.1:{port}/hook"),
            format!("https://127.0.0.1:{port}/hook"),
            "https://10.0.0.1/hook".to_string(),
            format!("https://[::1]:{port}/hook"),
            "https://169.254.169.254/latest/meta-data/".to_string(),
            format!("https://localhost:{port}/hook"),
            format!("https://[::ffff:127.0.0.1]:{port}/hook"),
            format!("https://[::127.0.0.1]:{port}/hook"),
            format!("https://2130706433:{port}/hook"),
            format!("https://0x7f.1:{port}/hook"),
        ];
        let mut orders = Vec::new();
        for url in &targets {
            orders.push(rig.paid_order_to(url).await);
        }
        let outcomes = rig.run(4 * targets.len()).await;
        assert_eq!(outcomes.len(), 2 * targets.len(), "{outcomes:?}");
        for (url, order) in targets.iter().zip(&orders) {
            let log = rig.attempts(&order.order_no).await;
            assert_eq!(log.len(), 2, "{url}");
            for attempt in &log {
                let error = attempt.error.as_deref().unwrap_or_default();
                assert!(error.starts_with("refused"), "{url}: {error}");
                assert_eq!(attempt.status_code, None, "{url}");
                assert_eq!(attempt.url.as_deref(), Some(url.as_str()));
            }
            assert_eq!(
                rig.order(&order.order_no).await.webhook.status,
                WebhookStatus::Failed
            );
        }
        assert_eq!(receiver.count(), 0, "nothing reached the receiver");
        assert_eq!(receiver.connections(), 0, "nothing even connected");

        // The same receiver is reachable when loopback is allowed (the dev policy).
        let dev = Rig::new("1s").await;
        dev.paid_order_to(&format!("http://127.0.0.1:{port}/hook"))
            .await;
        assert_eq!(dev.run(3).await, [JobOutcome::Delivered { attempt: 1 }]);
        assert_eq!(receiver.count(), 1);
    })
    .await;
}

/// Set in the child process of [`a_proxy_in_the_environment_carries_no_webhook`].
const PROXY_CHILD: &str = "FERRYPAY_TEST_PROXY_CHILD";

/// A proxy in the environment (`HTTPS_PROXY`, `ALL_PROXY`) must not carry webhooks: the proxy
/// would resolve the merchant's host itself, past the guarded resolver (`localhost`, or a
/// name pointing at the metadata address, would be fetched). The environment is the
/// process's, so the client runs in a child process: this test binary, filtered to this test.
#[tokio::test]
async fn a_proxy_in_the_environment_carries_no_webhook() {
    if std::env::var_os(PROXY_CHILD).is_some() {
        let client =
            OutboundClient::new(OutboundPolicy::PRODUCTION, Duration::from_secs(2)).unwrap();
        let target = std::env::var(PROXY_CHILD).unwrap();
        let result = client.post_json(&target, &[], b"{}".to_vec()).await;
        assert!(
            matches!(result, Err(OutboundError::Refused(_))),
            "{result:?}"
        );
        return;
    }
    bounded(async {
        let proxy = TestReceiver::start(200).await;
        let proxy_url = proxy.url_for("");
        let target = format!("https://localhost:{}/hook", proxy.addr().port());
        // This test's name in the test binary: its module path without the crate's name.
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        let child_test_name = format!("{module}::a_proxy_in_the_environment_carries_no_webhook");
        let child = tokio::task::spawn_blocking(move || {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", &child_test_name, "--nocapture"])
                .env(PROXY_CHILD, &target)
                .env("HTTPS_PROXY", &proxy_url)
                .env("https_proxy", &proxy_url)
                .env("ALL_PROXY", &proxy_url)
                .env_remove("NO_PROXY")
                .env_remove("no_proxy")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let output = String::from_utf8_lossy(&child.stdout).into_owned()
            + &String::from_utf8_lossy(&child.stderr);
        assert!(output.contains("1 passed"), "{output}");
        assert!(child.status.success(), "{output}");
        assert_eq!(proxy.count(), 0, "{:?}", proxy.requests());
        assert_eq!(proxy.connections(), 0);
    })
    .await;
}

// ---------------------------------------------------------------- giving up, redelivery

#[tokio::test]
async fn a_used_up_schedule_ends_failed_with_exactly_max_attempts() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        receiver.answer_by_default(Reply::status(500));
        let rig = Rig::new("1s,2s").await;
        assert_eq!(rig.sender.schedule().max_attempts(), 3);
        let order = rig.paid_order_to(&receiver.url_for("/hook")).await;
        let mut last = None;
        let mut outcomes = Vec::new();
        while !rig.app.queue.is_empty() {
            assert!(outcomes.len() < 10);
            let (message, outcome) = rig.step().await;
            outcomes.push(outcome);
            last = Some(message);
        }
        assert_eq!(
            outcomes,
            [
                retrying(1, 1),
                retrying(2, 2),
                JobOutcome::GaveUp { attempt: 3 }
            ]
        );
        assert_eq!(receiver.count(), 3);
        assert!(rig.app.queue.is_empty(), "no more jobs");
        let state = rig.order(&order.order_no).await.webhook;
        assert_eq!(state.status, WebhookStatus::Failed);
        assert_eq!(state.attempts, 3);
        assert_eq!(state.next_attempt_at, None);
        assert_eq!(rig.attempts(&order.order_no).await.len(), 3);

        // A redelivered copy of the last job sends nothing.
        let again = rig
            .worker()
            .handle_message(&last.unwrap().body)
            .await
            .unwrap();
        assert_eq!(again, JobOutcome::Skipped(SkipReason::AlreadyFailed));
        assert_eq!(receiver.count(), 3);
    })
    .await;
}

#[tokio::test]
async fn a_redelivered_job_after_delivery_sends_nothing() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let rig = Rig::new("1s").await;
        let order = rig.paid_order_to(&receiver.url_for("/hook")).await;
        let first = rig.next_message().await;
        let outcome = rig.worker().handle_message(&first.body).await.unwrap();
        assert_eq!(outcome, JobOutcome::Delivered { attempt: 1 });
        // Not deleted (the Lambda died before acknowledging): SQS delivers it again.
        let again = rig.next_message().await;
        assert_eq!(again.message_id, first.message_id);
        assert_eq!(again.receive_count, 2);
        let outcome = rig.worker().handle_message(&again.body).await.unwrap();
        assert_eq!(outcome, JobOutcome::Skipped(SkipReason::AlreadyDelivered));
        rig.app.queue.delete(&again.receipt).await.unwrap();
        assert!(rig.app.queue.is_empty());
        assert_eq!(receiver.count(), 1, "no second send");
        assert_eq!(rig.attempts(&order.order_no).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_redelivered_copy_of_an_attempted_job_sends_nothing() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        receiver.script([Reply::status(500)]);
        // The retry waits a minute; the unacknowledged copy comes back after 30 s, first.
        let rig = Rig::new("1m").await;
        let order = rig.paid_order_to(&receiver.url_for("/hook")).await;
        let first = rig.next_message().await;
        let outcome = rig.worker().handle_message(&first.body).await.unwrap();
        assert_eq!(outcome, retrying(1, 60));
        let copy = rig.next_message().await;
        assert_eq!(copy.message_id, first.message_id);
        let outcome = rig.worker().handle_message(&copy.body).await.unwrap();
        assert_eq!(outcome, JobOutcome::Skipped(SkipReason::AlreadyAttempted));
        rig.app.queue.delete(&copy.receipt).await.unwrap();
        assert_eq!(receiver.count(), 1, "the copy sent nothing");
        assert_eq!(rig.app.queue.len(), 1, "and queued nothing");

        assert_eq!(rig.run(3).await, [JobOutcome::Delivered { attempt: 2 }]);
        assert_eq!(receiver.count(), 2);
        assert_eq!(rig.now(), START + 60);
        assert_eq!(rig.attempts(&order.order_no).await.len(), 2);
    })
    .await;
}

// ---------------------------------------------------------------- resend

#[tokio::test]
async fn a_resend_starts_a_new_generation_and_the_old_jobs_send_nothing() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        receiver.script([Reply::status(500)]);
        let rig = Rig::new("1s,1s").await;
        let order = rig.paid_order_to(&receiver.url_for("/hook")).await;
        let by = OrderRef::OrderNo(order.order_no.clone());

        // Generation 0 fails once; its retry is still queued when the merchant asks for a resend.
        assert_eq!(rig.step().await.1, retrying(1, 1));
        let old_job = rig.app.queue.bodies().pop().unwrap();
        assert_eq!(job_of(&old_job).generation, 0);
        let resent = rig.app.resend_webhook(&rig.merchant, &by).await.unwrap();
        assert_eq!(resent.webhook.generation, 1);
        assert_eq!(resent.webhook.status, WebhookStatus::Pending);
        assert_eq!(resent.webhook.attempts, 0);
        // The new generation's job is due at once; the old retry a second later.
        assert_eq!(
            rig.run(5).await,
            [
                JobOutcome::Delivered { attempt: 1 },
                JobOutcome::Skipped(SkipReason::Superseded)
            ]
        );
        assert_eq!(receiver.count(), 2);

        // After delivery: a resend sends once more, with the same webhook-id.
        let delivered = rig.order(&order.order_no).await;
        assert_eq!(delivered.webhook.status, WebhookStatus::Delivered);
        rig.app.resend_webhook(&rig.merchant, &by).await.unwrap();
        assert_eq!(rig.run(5).await, [JobOutcome::Delivered { attempt: 1 }]);
        assert_eq!(receiver.count(), 3);
        let ids: Vec<String> = receiver
            .requests()
            .iter()
            .map(|r| r.header("webhook-id").unwrap().to_string())
            .collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        for request in receiver.requests() {
            verify_request(TEST_WEBHOOK_SECRET, &request).unwrap();
        }

        // Old generations' jobs, delivered late, send nothing.
        let outcome = rig.worker().handle_message(&old_job).await.unwrap();
        assert_eq!(outcome, JobOutcome::Skipped(SkipReason::Superseded));
        assert_eq!(receiver.count(), 3);

        let state = rig.order(&order.order_no).await.webhook;
        assert_eq!(
            (state.generation, state.status),
            (2, WebhookStatus::Delivered)
        );
        let log: Vec<(u32, u32)> = rig
            .attempts(&order.order_no)
            .await
            .iter()
            .map(|a| (a.generation, a.attempt))
            .collect();
        assert_eq!(log, [(2, 1), (1, 1), (0, 1)]);
    })
    .await;
}

// ---------------------------------------------------------------- long waits hop

#[tokio::test]
async fn waits_beyond_fifteen_minutes_hop_until_due_then_send() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        receiver.script([Reply::status(500)]);
        let rig = Rig::new("50m").await;
        let order = rig.paid_order_to(&receiver.url_for("/hook")).await;
        assert_eq!(rig.step().await.1, retrying(1, 3000));
        let due = START + 3000;
        let state = rig.order(&order.order_no).await.webhook;
        assert_eq!(state.next_attempt_at.unwrap().unix(), due);
        let queued = job_of(&rig.app.queue.bodies()[0]);
        assert_eq!(queued.not_before.unwrap().unix(), due);
        assert_eq!(queued.attempt, 1);

        for remaining in [2100, 1200, 300] {
            let delay = rig.app.queue.next_visible_in().unwrap();
            assert!(
                delay <= Duration::from_secs(900) && delay > Duration::from_secs(899),
                "capped at SQS's 900 s: {delay:?}"
            );
            assert_eq!(rig.step().await.1, hopped(remaining));
            assert_eq!(receiver.count(), 1, "a hop sends nothing");
            assert_eq!(rig.app.queue.len(), 1, "it re-queued itself");
        }
        let delay = rig.app.queue.next_visible_in().unwrap();
        assert!(delay <= Duration::from_secs(300) && delay > Duration::from_secs(299));
        assert_eq!(rig.step().await.1, JobOutcome::Delivered { attempt: 2 });
        assert_eq!(rig.now(), due);
        assert_eq!(receiver.count(), 2);
        assert!(rig.app.queue.is_empty());
        assert_eq!(rig.attempts(&order.order_no).await[0].at.unix(), due);
    })
    .await;
}

// ---------------------------------------------------------------- malformed messages

#[tokio::test]
async fn malformed_messages_end_in_the_dead_letter_queue_never_deleted() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let rig = Rig::new("1s").await;
        let order = rig.paid_order_to(&receiver.url_for("/hook")).await;
        let future_version = serde_json::to_string(&WebhookJob {
            v: 2,
            ..WebhookJob::order_paid(&order.order_no, 0)
        })
        .unwrap();
        let unknown_order = serde_json::to_string(&WebhookJob::order_paid(
            &OrderNo::parse("FP20251221103000ZZZZZZ").unwrap(),
            0,
        ))
        .unwrap();
        let bad = ["not json".to_string(), future_version, unknown_order];
        for body in &bad {
            rig.app
                .queue
                .send(&OutgoingMessage::now(body.clone()))
                .await
                .unwrap();
        }

        let worker = rig.worker();
        assert!(matches!(
            worker.handle_message(&bad[0]).await,
            Err(JobError::Malformed(_))
        ));
        assert!(matches!(
            worker.handle_message(&bad[1]).await,
            Err(JobError::Malformed(e)) if e.contains("unknown version 2")
        ));
        assert!(matches!(
            worker.handle_message(&bad[2]).await,
            Err(JobError::OrderNotFound(_))
        ));

        // As the Lambda runtime does: a batch, the reported failures left on the queue.
        let mut rounds = 0;
        loop {
            let received = rig.app.queue.receive(10).await.unwrap();
            if received.is_empty() {
                match rig.app.queue.next_visible_in() {
                    Some(wait) => {
                        rig.jump(wait).await;
                        continue;
                    }
                    None => break,
                }
            }
            rounds += 1;
            assert!(rounds <= MAX_RECEIVES, "received too often");
            let failed = worker.handle_received(&received).await;
            let bad_ids: Vec<String> = received
                .iter()
                .filter(|m| bad.contains(&m.body))
                .map(|m| m.message_id.clone())
                .collect();
            assert_eq!(failed, bad_ids, "round {rounds}: exactly the bad ones fail");
        }
        assert_eq!(rounds, MAX_RECEIVES);
        assert_eq!(rig.app.queue.dead_letters(), bad.to_vec());
        assert!(rig.app.queue.is_empty());
        assert_eq!(
            receiver.count(),
            1,
            "the good job in the first batch was delivered"
        );
        assert_eq!(
            rig.order(&order.order_no).await.webhook.status,
            WebhookStatus::Delivered
        );
    })
    .await;
}

// ---------------------------------------------------------------- batches, rotation, no URL

#[tokio::test]
async fn a_batch_of_ten_is_delivered_concurrently() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let rig = Rig::new("1s").await;
        let mut orders = Vec::new();
        for _ in 0..10 {
            orders.push(rig.paid_order_to(&receiver.url_for("/hook")).await);
        }
        let received = rig.app.queue.receive(10).await.unwrap();
        assert_eq!(received.len(), 10);
        assert!(rig.worker().handle_received(&received).await.is_empty());
        assert_eq!(receiver.count(), 10);
        for order in &orders {
            let state = rig.order(&order.order_no).await.webhook;
            assert_eq!(state.status, WebhookStatus::Delivered);
        }
        let mut ids: Vec<String> = receiver
            .requests()
            .iter()
            .map(|r| r.header("webhook-id").unwrap().to_string())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10);
    })
    .await;
}

#[tokio::test]
async fn a_rotated_secret_signs_twice_during_the_overlap_and_once_after() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let rig = Rig::new("1s").await;
        let (_, new_secret) = rig
            .admin()
            .rotate_webhook_secret(&rig.merchant.id, Duration::from_secs(3600))
            .await
            .unwrap();
        let new_secret = new_secret.expose().clone();
        assert_ne!(new_secret, TEST_WEBHOOK_SECRET);

        rig.paid_order_to(&receiver.url_for("/hook")).await;
        assert_eq!(rig.run(3).await, [JobOutcome::Delivered { attempt: 1 }]);
        let during = receiver.requests().pop().unwrap();
        let header = during.header("webhook-signature").unwrap().to_string();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2, "{header}");
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        // Each secret verifies the header alone, and each signature is one secret's.
        verify_request(&new_secret, &during).unwrap();
        verify_request(TEST_WEBHOOK_SECRET, &during).unwrap();
        let with_part = |part: &str| {
            let mut request = during.clone();
            for (name, value) in &mut request.headers {
                if name == "webhook-signature" {
                    *value = part.to_string();
                }
            }
            request
        };
        verify_request(&new_secret, &with_part(parts[0])).unwrap();
        verify_request(TEST_WEBHOOK_SECRET, &with_part(parts[1])).unwrap();
        assert!(verify_request(TEST_WEBHOOK_SECRET, &with_part(parts[0])).is_err());

        // The overlap ends: only the new secret signs.
        rig.clock.advance(3600);
        rig.paid_order_to(&receiver.url_for("/hook")).await;
        assert_eq!(rig.run(3).await, [JobOutcome::Delivered { attempt: 1 }]);
        let after = receiver.requests().pop().unwrap();
        assert!(!after.header("webhook-signature").unwrap().contains(' '));
        verify_request(&new_secret, &after).unwrap();
        assert_eq!(
            verify_request(TEST_WEBHOOK_SECRET, &after),
            Err(WebhookVerifyError::NoMatch)
        );
    })
    .await;
}

#[tokio::test]
async fn no_notify_url_anywhere_is_a_failed_attempt_with_a_clear_error_and_retried() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let rig = Rig::new("1s,1s").await;
        let order = rig.paid_order(None, None, None).await;
        assert_eq!(rig.step().await.1, retrying(1, 1));
        let log = rig.attempts(&order.order_no).await;
        assert_eq!(log[0].url, None);
        assert_eq!(log[0].status_code, None);
        let error = log[0].error.as_deref().unwrap();
        assert!(error.contains("no notify URL"), "{error}");
        assert_eq!(
            rig.order(&order.order_no).await.webhook.status,
            WebhookStatus::Failing
        );

        // The merchant sets a default URL: the retry uses it.
        rig.admin()
            .set_notify_url(&rig.merchant.id, Some(receiver.url_for("/default")))
            .await
            .unwrap();
        assert_eq!(rig.step().await.1, JobOutcome::Delivered { attempt: 2 });
        assert_eq!(receiver.requests()[0].path, "/default");
    })
    .await;
}

// ---------------------------------------------------------------- the schedule, through the worker

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the schedule and the jitter draws, the worker (its clock injected) makes
    /// exactly `max_attempts` attempts, each due time no earlier than the one before, each
    /// gap within ±20% of its scheduled wait (plus the rounding to whole seconds), hops
    /// included; the order's `next_attempt_at` is when the next attempt happened.
    #[test]
    fn the_worker_spaces_its_attempts_as_the_schedule_says(
        waits in proptest::collection::vec(1u64..4_000, 1..6),
        draws in proptest::collection::vec(-1.0f64..=1.0, 6),
    ) {
        let schedule: Vec<String> = waits.iter().map(|w| format!("{w}s")).collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(bounded(async {
            JITTER.with(|j| *j.borrow_mut() = draws.iter().copied().collect());
            let rig = Rig::build(
                OutboundPolicy::DEV,
                Duration::from_secs(1),
                &schedule.join(","),
                scripted_jitter,
            )
            .await;
            // No notify URL: every attempt fails without a request.
            let order = rig.paid_order(None, None, None).await;
            let mut due = Vec::new();
            let mut steps = 0;
            while !rig.app.queue.is_empty() {
                steps += 1;
                assert!(steps < 100, "too many steps");
                if let (_, JobOutcome::Retrying { .. }) = rig.step().await {
                    due.push(rig.order(&order.order_no).await.webhook.next_attempt_at.unwrap().unix());
                }
            }
            let state = rig.order(&order.order_no).await.webhook;
            assert_eq!(state.status, WebhookStatus::Failed);
            assert_eq!(state.attempts, rig.sender.schedule().max_attempts());
            let mut at: Vec<i64> = rig.attempts(&order.order_no).await.iter().map(|a| a.at.unix()).collect();
            at.reverse();
            assert_eq!(at.len(), waits.len() + 1);
            assert!(due.windows(2).all(|w| w[0] <= w[1]), "{due:?}");
            for (i, wait) in waits.iter().enumerate() {
                let gap = (at[i + 1] - at[i]) as f64;
                let w = *wait as f64;
                assert!(gap >= w * 0.8 - 1.0 && gap <= w * 1.2 + 1.0, "gap {gap} for {w}");
                // The order said when; the attempt came then (give or take the rounding to seconds).
                assert!((0..=2).contains(&(at[i + 1] - due[i])), "due {} at {}", due[i], at[i + 1]);
            }
            let span: u64 = waits.iter().sum();
            let total = (at[waits.len()] - at[0]) as f64;
            assert!(total >= span as f64 * 0.8 - waits.len() as f64);
            assert!(total <= span as f64 * 1.2 + waits.len() as f64);
        }));
    }
}
