//! Lambda `list`: the merchant API's `list` endpoint behind API Gateway (HTTP API, payload v2).
//! Wiring only: the services are built once per cold start; all logic is in `ferrypay`. It
//! never talks to WeChat Pay, so it runs without a payment channel: no WeChat Pay settings, no
//! WeChat Pay secret (nor the permission to read it).

use ferrypay::api::Endpoint;
use ferrypay_lambda::serve_store_only;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve_store_only(Endpoint::List).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrypay::{api::Endpoint, model::SystemClock, testing::*};
    use ferrypay_lambda::{run_json_event, Route};

    /// Runs the function on a real API Gateway HTTP API (v2) event from `events/`.
    async fn run_event(app: &TestApp, event: &str) -> (u16, serde_json::Value) {
        run_json_event(app, Route::Merchant(Endpoint::List), event)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn list_event_lists_pending_orders() {
        let app = app_with_clock(Arc::new(SystemClock));
        let (merchant, _) = onboard_test_merchant(&app, "Event Shop").await;
        for i in 0..3 {
            create_test_order(&app, &merchant, 100 + i, None).await;
        }
        let (status, body) = run_event(&app, include_str!("../../../events/list.json")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["total"], 3);
        assert_eq!(body["per_page"], 10);
        assert_eq!(body["orders"].as_array().unwrap().len(), 3);
    }

    /// What the function runs with in Lambda: no payment channel (here in memory).
    struct WithoutChannel;

    impl ferrypay::service::Backends for WithoutChannel {
        type Store = ferrypay::store::MemoryStore;
        type Channel = ferrypay::channel::NoChannel;
        type Queue = ferrypay::queue::MemoryQueue;
    }

    #[tokio::test]
    async fn list_event_runs_without_a_payment_channel() {
        use ferrypay::{
            model::{OrderNo, Secret},
            service::{Ferrypay, NewMerchant, ServiceConfig},
            store::prelude::*,
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
        for (i, no) in ["FP20251221103000ABC121", "FP20251221103000ABC122"]
            .into_iter()
            .enumerate()
        {
            let order = pending_order(
                OrderNo::parse(no).unwrap(),
                merchant.id.clone(),
                100 + i as i64,
                ferrypay::model::Clock::now(&SystemClock),
            );
            app.store.insert_order(&order).await.unwrap();
        }
        let (status, body) = run_json_event(
            &app,
            Route::Merchant(Endpoint::List),
            include_str!("../../../events/list.json"),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["total"], 2);
        assert_eq!(body["orders"][0]["order_no"], "FP20251221103000ABC122");
    }
}
