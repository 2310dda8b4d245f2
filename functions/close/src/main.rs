//! Lambda `close`: the merchant API's `close` endpoint behind API Gateway (HTTP API, payload v2).
//! Wiring only: the services are built once per cold start; all logic is in `ferrypay`.

use ferrypay::api::Endpoint;
use ferrypay_lambda::{serve, Route};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve(Route::Merchant(Endpoint::Close)).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrypay::{api::Endpoint, model::SystemClock, testing::*};
    use ferrypay_lambda::{run_json_event, Route};

    /// Runs the function on a real API Gateway HTTP API (v2) event from `events/`.
    async fn run_event(app: &TestApp, event: &str) -> (u16, serde_json::Value) {
        run_json_event(app, Route::Merchant(Endpoint::Close), event)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn close_event_with_a_base64_body_closes_the_order() {
        let app = app_with_clock(Arc::new(SystemClock));
        let (merchant, _) = onboard_test_merchant(&app, "Event Shop").await;
        create_test_order(&app, &merchant, 100, Some("evt-1001")).await;
        let (status, body) = run_event(&app, include_str!("../../../events/close.json")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["order"]["status"], "closed");
        let (status, body) = run_event(&app, include_str!("../../../events/close.json")).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["code"], "order_closed");
    }
}
