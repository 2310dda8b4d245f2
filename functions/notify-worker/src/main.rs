//! Lambda `notify-worker`: delivers merchant webhooks from the notify queue (SQS event source,
//! partial batch responses). Wiring only: the services are built once per cold start (no
//! WeChat Pay secret); all logic is in `ferrypay`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferrypay_lambda::serve_notify_worker().await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrypay::{
        model::{Clock, Fen, Merchant, Order, OrderNo, OrderUpdate, SystemClock, WebhookStatus},
        outbound::OutboundPolicy,
        service::{retry::RetrySchedule, WebhookJob, WebhookSender, WebhookWorker},
        sign::webhook,
        store::prelude::*,
        testing::*,
    };
    use ferrypay_lambda::{failed_ids, run_sqs_event};
    use serde_json::{json, Value};

    /// A real SQS event (two webhook jobs), as Lambda hands it to the function.
    const EVENT: &str = include_str!("../../../events/notify-worker.json");

    fn event() -> Value {
        serde_json::from_str(EVENT).unwrap()
    }

    fn message_id(event: &Value, i: usize) -> String {
        event["Records"][i]["messageId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn order_no(event: &Value, i: usize) -> OrderNo {
        let job: WebhookJob =
            serde_json::from_str(event["Records"][i]["body"].as_str().unwrap()).unwrap();
        job.order_no
    }

    /// The worker's sender, allowed to reach receivers on 127.0.0.1 over http (tests only).
    fn sender() -> WebhookSender {
        WebhookSender::new(OutboundPolicy::DEV, RetrySchedule::parse("1s,2s").unwrap()).unwrap()
    }

    /// Runs the function's handler on `event` over the app's in-memory store and queue.
    async fn run(app: &TestApp, sender: &WebhookSender, event: &str) -> Vec<String> {
        let worker = WebhookWorker::new(&app.store, &app.queue, &*app.clock, sender);
        failed_ids(&run_sqs_event(&worker, event).await.unwrap())
    }

    /// A paid order with the given number (the event's jobs name fixed numbers).
    async fn paid_order(app: &TestApp, merchant: &Merchant, no: &OrderNo) -> Order {
        let now = app.clock.now();
        let order = pending_order(no.clone(), merchant.id.clone(), 100, now);
        app.store.insert_order(&order).await.unwrap();
        let paid = OrderUpdate::MarkPaid {
            transaction_id: "4200000000202512210000000001".into(),
            paid_at: now,
            amount: Fen::new(100),
        };
        app.store.update_order(no, &paid).await.unwrap()
    }

    #[tokio::test]
    async fn jobs_for_unknown_orders_are_batch_item_failures() {
        let app = app_with_clock(Arc::new(SystemClock));
        let sender = sender();
        let event = event();
        let failed = run(&app, &sender, EVENT).await;
        assert_eq!(failed, vec![message_id(&event, 0), message_id(&event, 1)]);
        assert!(app.queue.is_empty(), "a failed job queues nothing");
    }

    #[tokio::test]
    async fn a_known_paid_order_is_delivered_and_only_the_unknown_one_fails() {
        let app = app_with_clock(Arc::new(SystemClock));
        let sender = sender();
        let receiver = TestReceiver::start(200).await;
        let (merchant, _) = onboard_test_merchant(&app, "Event Shop").await;
        let merchant = set_test_notify_url(&app, &merchant.id, &receiver.url()).await;
        let event = event();
        let no = order_no(&event, 0);
        paid_order(&app, &merchant, &no).await;

        let failed = run(&app, &sender, EVENT).await;
        assert_eq!(
            failed,
            vec![message_id(&event, 1)],
            "a partial batch failure"
        );

        let requests = receiver.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        let id = request.header("webhook-id").unwrap();
        assert_eq!(id, format!("evt_{no}_paid"));
        let timestamp: i64 = request
            .header("webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        let signature = request.header("webhook-signature").unwrap();
        webhook::verify(
            TEST_WEBHOOK_SECRET,
            signature,
            id,
            timestamp,
            &request.body,
            app.clock.now().unix(),
            300,
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["event"], "order.paid");
        assert_eq!(body["order_no"], no.as_str());
        assert_eq!(body["amount"], 100);
        assert_eq!(body["status"], "paid");
        assert_eq!(body["transaction_id"], "4200000000202512210000000001");

        let order = app.store.get_order(&no).await.unwrap().unwrap();
        assert_eq!(order.webhook.status, WebhookStatus::Delivered);
        assert_eq!(order.webhook.attempts, 1);

        // SQS delivers the same batch again: the delivered webhook is not sent twice.
        let failed = run(&app, &sender, EVENT).await;
        assert_eq!(failed, vec![message_id(&event, 1)]);
        assert_eq!(receiver.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_refusing_merchant_is_retried_on_schedule_not_failed() {
        let app = app_with_clock(Arc::new(SystemClock));
        let sender = sender();
        let receiver = TestReceiver::start(503).await;
        let (merchant, _) = onboard_test_merchant(&app, "Event Shop").await;
        let merchant = set_test_notify_url(&app, &merchant.id, &receiver.url()).await;
        let event = event();
        let no = order_no(&event, 0);
        paid_order(&app, &merchant, &no).await;

        let failed = run(&app, &sender, EVENT).await;
        assert_eq!(failed, vec![message_id(&event, 1)]);
        assert_eq!(receiver.requests().len(), 1);
        let order = app.store.get_order(&no).await.unwrap().unwrap();
        assert_eq!(order.webhook.status, WebhookStatus::Failing);
        assert_eq!(order.webhook.attempts, 1);
        // The next attempt is a new message on the queue, not a redelivery of this one.
        let queued: Vec<WebhookJob> = app
            .queue
            .bodies()
            .iter()
            .map(|body| serde_json::from_str(body).unwrap())
            .collect();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].order_no, no);
        assert_eq!(queued[0].attempt, 1);
    }

    #[tokio::test]
    async fn bad_records_are_batch_item_failures_never_dropped() {
        let app = app_with_clock(Arc::new(SystemClock));
        let sender = sender();
        let template = event()["Records"][0].clone();
        let record = |id: Option<&str>, body: Option<&str>| {
            let mut record = template.clone();
            match id {
                Some(id) => record["messageId"] = json!(id),
                None => {
                    record.as_object_mut().unwrap().remove("messageId");
                }
            }
            match body {
                Some(body) => record["body"] = json!(body),
                None => {
                    record.as_object_mut().unwrap().remove("body");
                }
            }
            record
        };
        let future_version = template["body"]
            .as_str()
            .unwrap()
            .replace("\"v\":1", "\"v\":2");
        let event = json!({"Records": [
            record(Some("malformed"), Some("not json")),
            record(Some("empty"), Some("")),
            record(Some("future-version"), Some(&future_version)),
            record(Some("no-body"), None),
            record(None, Some(template["body"].as_str().unwrap())),
        ]});
        let mut failed = run(&app, &sender, &event.to_string()).await;
        failed.sort();
        // The record without an id fails as "": Lambda then retries the whole batch.
        assert_eq!(
            failed,
            ["", "empty", "future-version", "malformed", "no-body"]
        );
    }

    #[tokio::test]
    async fn an_empty_batch_has_no_failures() {
        let app = app_with_clock(Arc::new(SystemClock));
        let sender = sender();
        assert!(run(&app, &sender, r#"{"Records": []}"#).await.is_empty());
    }
}
