//! Lambda `resend`: the merchant API's webhook resend endpoint behind API Gateway (HTTP API, payload v2).
//! Wiring only: the services are built once per cold start; all logic is in `ferrypay`. It
//! never talks to WeChat Pay, so it runs without a payment channel: no WeChat Pay settings, no
//! WeChat Pay secret (nor the permission to read it).

use ferrypay::api::Endpoint;
use ferrypay_lambda::serve_store_only;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve_store_only(Endpoint::Resend).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrypay::{
        api::Endpoint,
        model::{SystemClock, WebhookStatus},
        service::WebhookJob,
        store::prelude::*,
        testing::*,
    };
    use ferrypay_lambda::{run_json_event, Route};

    /// Runs the function on a real API Gateway HTTP API (v2) event from `events/`.
    async fn run_event(app: &TestApp, event: &str) -> (u16, serde_json::Value) {
        run_json_event(app, Route::Merchant(Endpoint::Resend), event)
            .await
            .unwrap()
    }

    fn jobs(app: &TestApp) -> Vec<WebhookJob> {
        app.queue
            .bodies()
            .iter()
            .map(|body| serde_json::from_str(body).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn resend_event_requeues_a_paid_orders_webhook() {
        let app = app_with_clock(Arc::new(SystemClock));
        let (merchant, _) = onboard_test_merchant(&app, "Event Shop").await;
        let order = create_test_order(&app, &merchant, 100, Some("evt-1001")).await;
        let paid = pay_test_order(&app, &order).await;
        assert_eq!(jobs(&app).len(), 1, "paying queued the first webhook");

        let (status, body) = run_event(&app, include_str!("../../../events/resend.json")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["success"], true);
        assert_eq!(body["order_no"], paid.order_no.as_str());
        assert_eq!(body["webhook"]["status"], "pending");
        assert_eq!(body["webhook"]["resends"], 1);

        // A new generation is queued, with the same event id (it is the same event).
        let jobs = jobs(&app);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[1].order_no, paid.order_no);
        assert_eq!(jobs[1].generation, 1);
        assert_eq!(jobs[1].attempt, 0);
        assert_eq!(jobs[1].event_id, jobs[0].event_id);
        let stored = app.store.get_order(&paid.order_no).await.unwrap().unwrap();
        assert_eq!(stored.webhook.generation, 1);
        assert_eq!(stored.webhook.status, WebhookStatus::Pending);
        assert!(stored.webhook.queued_at.is_some());
    }

    #[tokio::test]
    async fn resend_event_for_an_unpaid_order_is_409() {
        let app = app_with_clock(Arc::new(SystemClock));
        let (merchant, _) = onboard_test_merchant(&app, "Event Shop").await;
        create_test_order(&app, &merchant, 100, Some("evt-1001")).await;
        let (status, body) = run_event(&app, include_str!("../../../events/resend.json")).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["success"], false);
        assert_eq!(body["code"], "order_not_paid");
        assert!(
            app.queue.is_empty(),
            "nothing is queued for an unpaid order"
        );
    }

    #[tokio::test]
    async fn resend_event_for_an_unknown_order_is_404() {
        let app = app_with_clock(Arc::new(SystemClock));
        onboard_test_merchant(&app, "Event Shop").await;
        let (status, body) = run_event(&app, include_str!("../../../events/resend.json")).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["code"], "order_not_found");
    }

    /// What the function runs with in Lambda: no payment channel (here in memory).
    struct WithoutChannel;

    impl ferrypay::service::Backends for WithoutChannel {
        type Store = ferrypay::store::MemoryStore;
        type Channel = ferrypay::channel::NoChannel;
        type Queue = ferrypay::queue::MemoryQueue;
    }

    #[tokio::test]
    async fn resend_event_runs_without_a_payment_channel() {
        use ferrypay::{
            channel::Payment,
            model::{Clock, Fen, OrderNo, OutTradeNo, Secret},
            service::{Ferrypay, NewMerchant, ServiceConfig},
        };
        let app: Ferrypay<WithoutChannel> = Ferrypay::new(
            Default::default(),
            ferrypay::channel::NoChannel,
            Default::default(),
            ServiceConfig::default(),
        );
        let (merchant, _) = app
            .onboard_merchant(NewMerchant {
                name: "Event Shop".into(),
                secret_key: Some(Secret::new(TEST_SECRET_KEY.into())),
                publishable_key: Some(TEST_PUBLISHABLE_KEY.into()),
                ..NewMerchant::default()
            })
            .await
            .unwrap();
        // A paid order, settled as a notification would (no channel needed for that).
        let mut order = pending_order(
            OrderNo::parse("FP20251221103000ABC123").unwrap(),
            merchant.id.clone(),
            100,
            SystemClock.now(),
        );
        order.out_trade_no = Some(OutTradeNo::parse("evt-1001").unwrap());
        app.store.insert_order(&order).await.unwrap();
        app.settle_payment(
            order,
            Payment {
                transaction_id: "4200000000000000000000000001".into(),
                paid_at: SystemClock.now(),
                amount: Fen::new(100),
            },
        )
        .await
        .unwrap();
        assert_eq!(app.queue.bodies().len(), 1, "the first webhook");

        let (status, body) = run_json_event(
            &app,
            Route::Merchant(Endpoint::Resend),
            include_str!("../../../events/resend.json"),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["webhook"]["resends"], 1);
        assert_eq!(app.queue.bodies().len(), 2, "the new generation's job");
    }
}
