//! Lambda `list`: the merchant API's `list` endpoint behind API Gateway (HTTP API, payload v2).
//! Wiring only: the services are built once per cold start; all logic is in `ferrypay`.

use ferrypay::{
    api::{self, Endpoint},
    service::{Backends, Ferrypay},
};
use lambda_http::{run, service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    ferrypay::telemetry::init_lambda();
    let app = ferrypay::runtime::lambda_app_from_env().await?;
    run(service_fn(|req| handler(&app, req))).await
}

async fn handler<B: Backends>(app: &Ferrypay<B>, req: Request) -> Result<Response<Body>, Error> {
    let (parts, body) = req.into_parts();
    let body = bytes::Bytes::copy_from_slice(body.as_ref());
    let response = api::handle_endpoint(
        app,
        Endpoint::List,
        lambda_http::http::Request::from_parts(parts, body),
    )
    .await;
    Ok(response.map(Body::from))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrypay::{model::SystemClock, testing::*};
    use serde_json::Value;

    use super::*;

    /// Runs the handler on a real API Gateway HTTP API (v2) event from `events/`.
    async fn run_event(app: &TestApp, event: &str) -> (u16, Value) {
        let request = lambda_http::request::from_str(event).unwrap();
        let response = handler(app, request).await.unwrap();
        let body = std::str::from_utf8(response.body().as_ref())
            .unwrap()
            .to_string();
        (
            response.status().as_u16(),
            serde_json::from_str(&body).unwrap(),
        )
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
}
