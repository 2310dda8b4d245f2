//! Lambda `refund`: the merchant API's refund endpoints behind API Gateway (HTTP API, payload
//! v2): `POST /api/v1/pay/refund` and `GET|POST /api/v1/pay/refund/query`. Wiring only: the
//! services are built once per cold start; all logic is in `ferrypay`.

use ferrypay::api::Endpoint;
use ferrypay_lambda::{serve, Route};

/// The endpoints this function serves, each request to the one of its path.
const ENDPOINTS: &[Endpoint] = &[Endpoint::Refund, Endpoint::RefundQuery];

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve(Route::Merchants(ENDPOINTS)).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrypay::{
        channel::ChannelRefundState,
        model::{ManualClock, Timestamp},
        testing::*,
    };
    use ferrypay_lambda::{run_json_event, Route};

    use super::ENDPOINTS;

    const REFUND: &str = include_str!("../../../events/refund.json");
    const REFUND_QUERY: &str = include_str!("../../../events/refund-query.json");

    async fn run_event(app: &TestApp, event: &str) -> (u16, serde_json::Value) {
        run_json_event(app, Route::Merchants(ENDPOINTS), event)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn refund_and_refund_query_events_refund_part_of_a_paid_order() {
        // The events' order was paid at 2025-12-21 10:30 Beijing: refunds are allowed then.
        let app = app_with_clock(Arc::new(ManualClock::new(Timestamp::from_unix(START))));
        let (merchant, _) = onboard_test_merchant(&app, "Event Shop").await;
        let order = create_test_order(&app, &merchant, 100, Some("evt-1001")).await;
        pay_test_order(&app, &order).await;

        let (status, body) = run_event(&app, REFUND).await;
        assert_eq!(status, 200, "{body}");
        let refund = &body["refund"];
        assert_eq!(refund["status"], "processing", "{body}");
        assert_eq!(refund["amount"], 30);
        assert_eq!(refund["out_refund_no"], "evt-r-1");
        assert_eq!(refund["reason"], "缺货");
        assert_eq!(refund["source"], "api");
        let refund_no = refund["refund_no"].as_str().unwrap().to_string();

        // WeChat Pay finishes it; the query asks and answers succeeded.
        let at = Timestamp::from_unix(START + 60);
        app.channel
            .settle_refund(&refund_no, ChannelRefundState::Succeeded { at })
            .unwrap();
        let (status, body) = run_event(&app, REFUND_QUERY).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["refund"]["status"], "succeeded", "{body}");
        assert_eq!(body["refund"]["refund_no"], refund_no.as_str());

        // The same refund request again is the same refund.
        let (status, body) = run_event(&app, REFUND).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["refund"]["refund_no"], refund_no.as_str());
        assert_eq!(body["refund"]["status"], "succeeded");
    }

    #[tokio::test]
    async fn the_refund_function_serves_only_its_own_paths() {
        let app = app_with_clock(Arc::new(ManualClock::new(Timestamp::from_unix(START))));
        let close = include_str!("../../../events/close.json");
        let (status, body) = run_event(&app, close).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["code"], "route_not_found");
    }
}
