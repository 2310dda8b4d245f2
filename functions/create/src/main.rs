//! Lambda `create`: the merchant API's `create` endpoint behind API Gateway (HTTP API, payload v2).
//! Wiring only: the services are built once per cold start; all logic is in `ferrypay`.

use ferrypay::api::Endpoint;
use ferrypay_lambda::{serve, Route};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve(Route::Merchant(Endpoint::Create)).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrypay::{api::Endpoint, model::SystemClock, testing::*};
    use ferrypay_lambda::{run_json_event, Route};

    /// Runs the function on a real API Gateway HTTP API (v2) event from `events/`.
    async fn run_event(app: &TestApp, event: &str) -> (u16, serde_json::Value) {
        run_json_event(app, Route::Merchant(Endpoint::Create), event)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn create_event_creates_an_order() {
        let app = app_with_clock(Arc::new(SystemClock));
        onboard_test_merchant(&app, "Event Shop").await;
        let (status, body) = run_event(&app, include_str!("../../../events/create.json")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["success"], true);
        assert_eq!(body["amount"], 100);
        assert_eq!(body["out_trade_no"], "evt-1001");
        assert!(body["code_url"].as_str().unwrap().starts_with("weixin://"));
        assert!(body["qrcode"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,"));
        // The same event again (an API Gateway retry) returns the same order.
        let (_, again) = run_event(&app, include_str!("../../../events/create.json")).await;
        assert_eq!(again["order_no"], body["order_no"]);
    }

    #[tokio::test]
    async fn create_event_without_a_merchant_is_401() {
        let app = app_with_clock(Arc::new(SystemClock));
        let (status, body) = run_event(&app, include_str!("../../../events/create.json")).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["code"], "invalid_api_key");
    }
}
