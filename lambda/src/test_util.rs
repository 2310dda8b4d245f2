//! Running a function on a JSON event, as the functions' tests do with the events in `events/`
//! (the `test-util` feature: never in a Lambda binary).

use ferrypay::{
    model::Clock,
    queue::Queue,
    service::{gateway::Gateway, health::HealthCheck, Backends, Ferrypay, WebhookWorker},
    store::{HealthStore, RateLimitStore, Store},
};
use lambda_http::{http::HeaderMap, Body, Error, Response};

use crate::{
    handle, handle_gateway_request, handle_health_request, handle_sqs_event, EdgeTrust, Route,
    SqsBatchResponse, SqsEvent,
};

/// Runs `handle` on an API Gateway HTTP API (v2) event, as the functions' tests do with the
/// events in `events/`: (status, body text).
pub async fn run_event<B: Backends>(
    app: &Ferrypay<B>,
    route: Route,
    event: &str,
) -> Result<(u16, String), Error> {
    let request = lambda_http::request::from_str(event)?;
    let response = handle(app, route, &EdgeTrust::default(), request).await?;
    let body = String::from_utf8_lossy(response.body().as_ref()).into_owned();
    Ok((response.status().as_u16(), body))
}

/// [`run_event`] for JSON answers.
pub async fn run_json_event<B: Backends>(
    app: &Ferrypay<B>,
    route: Route,
    event: &str,
) -> Result<(u16, serde_json::Value), Error> {
    let (status, body) = run_event(app, route, event).await?;
    Ok((status, serde_json::from_str(&body)?))
}

/// A function's answer to an event, for tests: the status, the headers (`Location`,
/// `Content-Type`, ...) and the body text.
#[derive(Debug, Clone)]
pub struct EventAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl EventAnswer {
    fn from_response(response: Response<Body>) -> EventAnswer {
        let (parts, body) = response.into_parts();
        EventAnswer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(body.as_ref()).into_owned(),
        }
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.body)
    }
}

/// Runs [`handle_gateway_request`] on an API Gateway HTTP API (v2) event, as gateway-redirect's
/// tests do with the `events/gateway-*.json` events.
pub async fn run_gateway_event<B: Backends>(
    app: &Ferrypay<B>,
    gateway: &Gateway,
    event: &str,
) -> Result<EventAnswer, Error> {
    let request = lambda_http::request::from_str(event)?;
    let response = handle_gateway_request(app, gateway, &EdgeTrust::default(), request).await?;
    Ok(EventAnswer::from_response(response))
}

/// Runs [`handle_health_request`] on an API Gateway HTTP API (v2) event (the health
/// function's tests use `events/health.json`).
pub async fn run_health_event<S: RateLimitStore + HealthStore>(
    store: &S,
    clock: &dyn Clock,
    check: &HealthCheck,
    event: &str,
) -> Result<EventAnswer, Error> {
    let request = lambda_http::request::from_str(event)?;
    let response =
        handle_health_request(store, clock, check, &EdgeTrust::default(), request).await?;
    Ok(EventAnswer::from_response(response))
}

/// Runs [`handle_sqs_event`] on an SQS event in JSON, as Lambda delivers it (the
/// notify-worker's tests use `events/notify-worker.json`).
pub async fn run_sqs_event<S: Store, Q: Queue>(
    worker: &WebhookWorker<'_, S, Q>,
    event: &str,
) -> Result<SqsBatchResponse, Error> {
    let event: SqsEvent = serde_json::from_str(event)?;
    Ok(handle_sqs_event(worker, event).await)
}

/// The identifiers of a partial batch response's failures, in order.
pub fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone())
        .collect()
}
