//! Refund webhooks (`refund.succeeded`, `refund.abnormal`, `refund.closed`) through
//! `Ferrypay::ensure_refund_webhook_queued` and the notify-worker, on the rig of `webhooks`:
//! only for subscribed merchants, one per refund event, signed like `order.paid`, retried on
//! the same schedule with the refund's own state and attempt log, and nothing sent by a
//! superseded, unsubscribed or redelivered job.
//!
//! Refunds are begun and settled through the store here (the refund use cases call
//! `ensure_refund_webhook_queued` the same way after they settle one).

use ferrypay::{
    api::refunds::RefundWire,
    model::{
        Clock, Fen, NotifyEvents, Order, OutRefundNo, Refund, RefundNo, RefundOutcome,
        RefundReason, RefundSettlement, RefundSource, RefundStatus, Timestamp, WebhookEvent,
        WebhookState, WebhookStatus,
    },
    queue::Queue,
    service::{JobOutcome, RefundJson, SkipReason, WebhookJob},
    store::prelude::*,
    testing::{Reply, TestReceiver, START, TEST_WEBHOOK_SECRET},
};

use crate::webhooks::{bounded, job_of, retrying, verify_request, Rig};

const REFUND_EVENTS: [WebhookEvent; 3] = [
    WebhookEvent::RefundSucceeded,
    WebhookEvent::RefundAbnormal,
    WebhookEvent::RefundClosed,
];

impl Rig {
    /// The merchant now takes `events` (and `order.paid`, always).
    async fn subscribe(&self, events: impl IntoIterator<Item = WebhookEvent>) {
        self.admin()
            .set_notify_events(&self.merchant.id, NotifyEvents::with(events))
            .await
            .unwrap();
    }

    /// A paid order posting to `url`, its `order.paid` delivered (so the queue is empty).
    async fn paid_and_notified(&self, receiver: &TestReceiver, url: &str) -> Order {
        let order = self
            .paid_order(Some(url), Some("shop-1001"), Some("user_id=123"))
            .await;
        assert_eq!(self.run(3).await, [JobOutcome::Delivered { attempt: 1 }]);
        assert_eq!(receiver.count(), 1);
        order
    }

    /// A refund of `amount` of `order`, begun now and settled `outcome` 5 s later.
    async fn settled_refund(&self, order: &Order, amount: i64, outcome: RefundOutcome) -> Refund {
        let now = self.clock.now();
        let refund = Refund {
            refund_no: RefundNo::generate(now).unwrap(),
            merchant_id: self.merchant.id.clone(),
            order_no: order.order_no.clone(),
            out_trade_no: order.out_trade_no.clone(),
            out_refund_no: Some(OutRefundNo::parse(&format!("r-{amount}")).unwrap()),
            amount: Fen::new(amount),
            status: RefundStatus::Processing,
            reason: Some(RefundReason::parse("少发了一件").unwrap()),
            source: RefundSource::Api,
            channel_refund_id: None,
            created_at: now,
            succeeded_at: None,
            ended_at: None,
            request_fingerprint: format!("fingerprint-{amount}"),
            webhook: WebhookState::default(),
        };
        self.app.store.begin_refund(&refund).await.unwrap();
        self.settle(&refund, outcome).await
    }

    async fn settle(&self, refund: &Refund, outcome: RefundOutcome) -> Refund {
        let settlement = RefundSettlement {
            outcome,
            channel_refund_id: Some("50300000222025122100001".into()),
            at: Timestamp::from_unix(self.now() + 5),
        };
        self.app
            .store
            .settle_refund(&refund.refund_no, &settlement)
            .await
            .unwrap()
            .refund
    }

    async fn refund(&self, refund: &Refund) -> Refund {
        self.app
            .store
            .get_refund(&refund.refund_no)
            .await
            .unwrap()
            .unwrap()
    }

    async fn refund_attempts(&self, refund: &Refund) -> Vec<ferrypay::model::WebhookAttempt> {
        self.app
            .store
            .refund_webhook_attempts(&refund.order_no, &refund.refund_no, 100)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_subscribed_merchant_gets_one_signed_refund_webhook_with_the_refund() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let rig = Rig::new("1s").await;
        rig.subscribe(REFUND_EVENTS).await;
        let url = receiver.url_for("/hooks");
        let order = rig.paid_and_notified(&receiver, &url).await;
        let refund = rig.settled_refund(&order, 500, RefundOutcome::Succeeded).await;
        assert_eq!(refund.webhook.queued_at, None);

        let queued = rig.app.ensure_refund_webhook_queued(refund.clone()).await.unwrap();
        assert_eq!(queued.webhook.queued_at, Some(rig.clock.now()));
        assert_eq!(rig.refund(&refund).await, queued);
        // Asked again (a repeated notification, a query), it queues nothing more.
        let again = rig.app.ensure_refund_webhook_queued(queued.clone()).await.unwrap();
        assert_eq!(again, queued);
        assert_eq!(rig.app.queue.len(), 1);

        assert_eq!(rig.run(3).await, [JobOutcome::Delivered { attempt: 1 }]);
        let requests = receiver.requests();
        assert_eq!(requests.len(), 2, "order.paid, then the refund's");
        let request = &requests[1];
        let id = format!("evt_{}_succeeded", refund.refund_no);
        assert_eq!(request.header("webhook-id").unwrap(), id);
        verify_request(TEST_WEBHOOK_SECRET, request).unwrap();
        let expected = format!(
            concat!(
                r#"{{"event":"refund.succeeded","order_no":"{order}","out_trade_no":"shop-1001","amount":1990,"#,
                r#""refunded_amount":500,"status":"paid","refund":{{"refund_no":"{refund}","out_refund_no":"r-500","#,
                r#""order_no":"{order}","out_trade_no":"shop-1001","amount":500,"status":"succeeded","#,
                r#""reason":"少发了一件","created_at":"2025-12-21 10:30:00","succeeded_at":"2025-12-21 10:30:05","#,
                r#""source":"api"}},"attach":"user_id=123"}}"#
            ),
            order = order.order_no,
            refund = refund.refund_no,
        );
        assert_eq!(String::from_utf8(request.body.clone()).unwrap(), expected);

        let state = rig.refund(&refund).await.webhook;
        assert_eq!(state.status, WebhookStatus::Delivered);
        assert_eq!(state.attempts, 1);
        let log = rig.refund_attempts(&refund).await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].event_id, id);
        assert!(log[0].delivered);
        // The order's own webhook and log are untouched.
        assert_eq!(rig.attempts(&order.order_no).await.len(), 1);
        assert_eq!(rig.order(&order.order_no).await.webhook.attempts, 1);
    })
    .await;
}

#[tokio::test]
async fn without_refund_events_no_refund_webhook_and_with_one_only_that_one() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let rig = Rig::new("1s").await;
        let url = receiver.url_for("/hooks");
        let order = rig.paid_and_notified(&receiver, &url).await;
        // order.paid only (the default): no refund event is queued, whatever the outcome.
        for (amount, outcome) in [
            (100, RefundOutcome::Succeeded),
            (101, RefundOutcome::Closed),
            (102, RefundOutcome::Abnormal),
        ] {
            let refund = rig.settled_refund(&order, amount, outcome).await;
            let after = rig
                .app
                .ensure_refund_webhook_queued(refund.clone())
                .await
                .unwrap();
            assert_eq!(after, refund, "nothing recorded");
        }
        assert!(rig.app.queue.is_empty());

        rig.subscribe([WebhookEvent::RefundSucceeded]).await;
        let closed = rig.settled_refund(&order, 103, RefundOutcome::Closed).await;
        rig.app.ensure_refund_webhook_queued(closed).await.unwrap();
        assert!(rig.app.queue.is_empty(), "refund.closed is not subscribed");
        let succeeded = rig
            .settled_refund(&order, 104, RefundOutcome::Succeeded)
            .await;
        rig.app
            .ensure_refund_webhook_queued(succeeded.clone())
            .await
            .unwrap();
        assert_eq!(rig.run(3).await, [JobOutcome::Delivered { attempt: 1 }]);
        let requests = receiver.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(
            requests[1].header("webhook-id").unwrap(),
            format!("evt_{}_succeeded", succeeded.refund_no)
        );
        // A processing refund has nothing to send.
        let processing = Refund {
            status: RefundStatus::Processing,
            ..succeeded.clone()
        };
        assert_eq!(
            rig.app
                .ensure_refund_webhook_queued(processing.clone())
                .await
                .unwrap(),
            processing
        );
        assert!(rig.app.queue.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_failing_refund_webhook_retries_then_is_delivered_with_each_attempt_logged() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let rig = Rig::new("1s,2s").await;
        rig.subscribe(REFUND_EVENTS).await;
        let order = rig
            .paid_and_notified(&receiver, &receiver.url_for("/hooks"))
            .await;
        receiver.script([Reply::status(503).body("busy")]);
        let refund = rig.settled_refund(&order, 300, RefundOutcome::Closed).await;
        rig.app
            .ensure_refund_webhook_queued(refund.clone())
            .await
            .unwrap();

        let (_, outcome) = rig.step().await;
        assert_eq!(outcome, retrying(1, 1));
        let state = rig.refund(&refund).await.webhook;
        assert_eq!(state.status, WebhookStatus::Failing);
        assert_eq!(state.attempts, 1);
        assert_eq!(state.next_attempt_at.unwrap().unix(), rig.now() + 1);
        assert_eq!(rig.run(3).await, [JobOutcome::Delivered { attempt: 2 }]);

        let state = rig.refund(&refund).await.webhook;
        assert_eq!(state.status, WebhookStatus::Delivered);
        assert_eq!(state.attempts, 2);
        let log = rig.refund_attempts(&refund).await;
        let codes: Vec<Option<u16>> = log.iter().map(|a| a.status_code).collect();
        assert_eq!(codes, [Some(200), Some(503)], "newest first");
        let id = format!("evt_{}_closed", refund.refund_no);
        assert!(log.iter().all(|a| a.event_id == id && a.generation == 0));
        let requests = receiver.requests();
        assert_eq!(requests.len(), 3);
        for request in &requests[1..] {
            assert_eq!(
                request.header("webhook-id").unwrap(),
                id,
                "stable across retries"
            );
            verify_request(TEST_WEBHOOK_SECRET, request).unwrap();
        }
        assert_eq!(rig.attempts(&order.order_no).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_refund_webhook_gives_up_when_the_schedule_is_used_up_and_a_copy_sends_nothing() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let rig = Rig::new("1s,2s").await;
        rig.subscribe(REFUND_EVENTS).await;
        let order = rig
            .paid_and_notified(&receiver, &receiver.url_for("/hooks"))
            .await;
        receiver.answer_by_default(Reply::status(500));
        let refund = rig
            .settled_refund(&order, 300, RefundOutcome::Abnormal)
            .await;
        rig.app
            .ensure_refund_webhook_queued(refund.clone())
            .await
            .unwrap();
        let mut outcomes = Vec::new();
        let mut last = None;
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
        let state = rig.refund(&refund).await.webhook;
        assert_eq!(state.status, WebhookStatus::Failed);
        assert_eq!(state.attempts, 3);
        assert_eq!(rig.refund_attempts(&refund).await.len(), 3);
        assert_eq!(receiver.count(), 4);
        let again = rig
            .worker()
            .handle_message(&last.unwrap().body)
            .await
            .unwrap();
        assert_eq!(again, JobOutcome::Skipped(SkipReason::AlreadyFailed));
        assert_eq!(receiver.count(), 4);
    })
    .await;
}

#[tokio::test]
async fn redelivered_refund_jobs_send_nothing() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        // The retry waits a minute; an unacknowledged copy comes back after 30 s, first.
        let rig = Rig::new("1m").await;
        rig.subscribe(REFUND_EVENTS).await;
        let order = rig
            .paid_and_notified(&receiver, &receiver.url_for("/hooks"))
            .await;
        receiver.script([Reply::status(500)]);
        let refund = rig
            .settled_refund(&order, 300, RefundOutcome::Succeeded)
            .await;
        rig.app
            .ensure_refund_webhook_queued(refund.clone())
            .await
            .unwrap();

        let first = rig.next_message().await;
        let outcome = rig.worker().handle_message(&first.body).await.unwrap();
        assert_eq!(outcome, retrying(1, 60));
        let copy = rig.next_message().await;
        assert_eq!(copy.message_id, first.message_id);
        let outcome = rig.worker().handle_message(&copy.body).await.unwrap();
        assert_eq!(outcome, JobOutcome::Skipped(SkipReason::AlreadyAttempted));
        rig.app.queue.delete(&copy.receipt).await.unwrap();
        assert_eq!(receiver.count(), 2, "the copy sent nothing");

        let delivered = rig.next_message().await;
        let outcome = rig.worker().handle_message(&delivered.body).await.unwrap();
        assert_eq!(outcome, JobOutcome::Delivered { attempt: 2 });
        // Not acknowledged: it comes back and sends nothing.
        let again = rig.next_message().await;
        assert_eq!(again.message_id, delivered.message_id);
        let outcome = rig.worker().handle_message(&again.body).await.unwrap();
        assert_eq!(outcome, JobOutcome::Skipped(SkipReason::AlreadyDelivered));
        rig.app.queue.delete(&again.receipt).await.unwrap();
        assert!(rig.app.queue.is_empty());
        assert_eq!(receiver.count(), 3);
        assert_eq!(rig.refund_attempts(&refund).await.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_merchant_who_unsubscribed_gets_nothing_from_a_queued_refund_job() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let rig = Rig::new("1s").await;
        rig.subscribe(REFUND_EVENTS).await;
        let order = rig
            .paid_and_notified(&receiver, &receiver.url_for("/hooks"))
            .await;
        let refund = rig
            .settled_refund(&order, 300, RefundOutcome::Succeeded)
            .await;
        rig.app
            .ensure_refund_webhook_queued(refund.clone())
            .await
            .unwrap();
        rig.subscribe([]).await;
        assert_eq!(
            rig.run(3).await,
            [JobOutcome::Skipped(SkipReason::NotSubscribed)]
        );
        assert_eq!(receiver.count(), 1, "only order.paid");
        assert!(rig.refund_attempts(&refund).await.is_empty());
        assert_eq!(rig.refund(&refund).await.webhook.attempts, 0);
    })
    .await;
}

#[tokio::test]
async fn an_abnormal_refund_paid_out_later_sends_its_own_event_and_supersedes_the_first() {
    bounded(async {
        let receiver = TestReceiver::start(200).await;
        let rig = Rig::new("1m").await;
        rig.subscribe(REFUND_EVENTS).await;
        let order = rig
            .paid_and_notified(&receiver, &receiver.url_for("/hooks"))
            .await;
        receiver.script([Reply::status(500)]);
        let abnormal = rig
            .settled_refund(&order, 300, RefundOutcome::Abnormal)
            .await;
        rig.app
            .ensure_refund_webhook_queued(abnormal.clone())
            .await
            .unwrap();
        let (_, outcome) = rig.step().await;
        assert_eq!(outcome, retrying(1, 60), "refund.abnormal failed once");

        let paid_out = rig.settle(&abnormal, RefundOutcome::Succeeded).await;
        assert_eq!(paid_out.webhook.generation, 1);
        let queued = rig
            .app
            .ensure_refund_webhook_queued(paid_out)
            .await
            .unwrap();
        assert!(queued.webhook.queued_at.is_some());
        let mut outcomes = rig.run(5).await;
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            outcomes,
            [
                JobOutcome::Delivered { attempt: 1 },
                JobOutcome::Skipped(SkipReason::Superseded),
            ]
        );
        let ids: Vec<String> = receiver.requests()[1..]
            .iter()
            .map(|r| r.header("webhook-id").unwrap().to_string())
            .collect();
        assert_eq!(
            ids,
            [
                format!("evt_{}_abnormal", abnormal.refund_no),
                format!("evt_{}_succeeded", abnormal.refund_no),
            ]
        );
        let refund = rig.refund(&abnormal).await;
        assert_eq!(refund.webhook.generation, 1);
        assert_eq!(refund.webhook.status, WebhookStatus::Delivered);
        let log = rig.refund_attempts(&abnormal).await;
        let keys: Vec<(u32, u32)> = log.iter().map(|a| (a.generation, a.attempt)).collect();
        assert_eq!(keys, [(1, 1), (0, 1)]);
    })
    .await;
}

#[test]
fn refund_jobs_name_the_refund_and_order_jobs_read_as_before() {
    // A job as queued before refunds existed.
    let v1 = r#"{"v":1,"event_id":"evt_FP20251221103000ABC123_paid","event":"order.paid","order_no":"FP20251221103000ABC123","generation":0,"attempt":2,"not_before":null}"#;
    let job = job_of(v1);
    assert_eq!(job.refund_no, None);
    assert_eq!(
        serde_json::to_string(&job).unwrap(),
        v1,
        "written as before"
    );

    let mut refund = Refund {
        refund_no: RefundNo::parse("RF20251221103000ABC123").unwrap(),
        merchant_id: ferrypay::model::MerchantId::new("mch_a"),
        order_no: job.order_no.clone(),
        out_trade_no: None,
        out_refund_no: None,
        amount: Fen::new(1),
        status: RefundStatus::Processing,
        reason: None,
        source: RefundSource::Wechat,
        channel_refund_id: None,
        created_at: Timestamp::from_unix(START),
        succeeded_at: None,
        ended_at: None,
        request_fingerprint: String::new(),
        webhook: WebhookState::default(),
    };
    assert_eq!(WebhookJob::refund_final(&refund), None);
    for (status, event) in [
        (RefundStatus::Succeeded, "refund.succeeded"),
        (RefundStatus::Closed, "refund.closed"),
        (RefundStatus::Abnormal, "refund.abnormal"),
    ] {
        refund.status = status;
        let job = WebhookJob::refund_final(&refund).unwrap();
        assert_eq!(job.event, event);
        assert_eq!(
            job.event_id,
            format!("evt_RF20251221103000ABC123_{}", status.as_str())
        );
        assert_eq!(job.refund_no, Some(refund.refund_no.clone()));
        let text = serde_json::to_string(&job).unwrap();
        assert!(
            text.contains(r#""refund_no":"RF20251221103000ABC123""#),
            "{text}"
        );
        assert_eq!(job_of(&text), job);
    }
}

#[test]
fn the_webhooks_refund_is_the_apis_refund_object() {
    let refund = Refund {
        refund_no: RefundNo::parse("RF20251221103000ABC123").unwrap(),
        merchant_id: ferrypay::model::MerchantId::new("mch_a"),
        order_no: ferrypay::model::OrderNo::parse("FP20251221103000ABC123").unwrap(),
        out_trade_no: ferrypay::model::OutTradeNo::parse("shop-1").ok(),
        out_refund_no: OutRefundNo::parse("r-1").ok(),
        amount: Fen::new(30),
        status: RefundStatus::Succeeded,
        reason: RefundReason::parse("少发了一件").ok(),
        source: RefundSource::Operator,
        channel_refund_id: Some("503".into()),
        created_at: Timestamp::from_unix(START),
        succeeded_at: Some(Timestamp::from_unix(START + 61)),
        ended_at: None,
        request_fingerprint: String::new(),
        webhook: WebhookState::default(),
    };
    let bare = Refund {
        out_trade_no: None,
        out_refund_no: None,
        reason: None,
        succeeded_at: None,
        status: RefundStatus::Closed,
        ..refund.clone()
    };
    for r in [&refund, &bare] {
        assert_eq!(
            serde_json::to_value(RefundJson::from(r)).unwrap(),
            serde_json::to_value(RefundWire::from(r)).unwrap()
        );
    }
}
