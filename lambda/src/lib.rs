//! What every HTTP Lambda of ferrypay does around `ferrypay::api`: build the services once per
//! cold start, then turn each `lambda_http` request into an `http::Request<Bytes>` (the exact
//! body bytes: notifications are verified over them) and the answer back; the same for the
//! jump-pay gateway (gateway-redirect), which also builds its `Gateway` once, and for the
//! functions that never talk to WeChat Pay (list, resend: [`serve_store_only`], without the
//! WeChat Pay secret). And what the notify-worker does around `ferrypay`'s webhook worker: an
//! SQS batch in, the ids of the failed messages out as a partial batch response; and what the
//! health function does around `ferrypay::api::health` (the table only). Kept out of
//! `ferrypay` so that crate stays free of the Lambda runtime. What only tests use (running an
//! event from `events/` through a function) is behind the `test-util` feature, which only
//! dev-dependencies enable.

mod edge;

pub use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
pub use edge::{EdgeTrust, ORIGIN_VERIFY_HEADER, VIEWER_ADDRESS_HEADER};
use ferrypay::{
    api::{
        self, gateway::handle_gateway, health::handle_health, notify::handle_wechat_notify,
        ApiRequest, ApiResponse, ClientAddr, Endpoint,
    },
    config::Env,
    model::Clock,
    queue::Queue,
    service::{
        gateway::Gateway, health::HealthCheck, Backends, BatchMessage, Ferrypay, WebhookWorker,
    },
    store::{HealthStore, RateLimitStore, Store},
};
use lambda_http::{
    request::RequestContext, run, service_fn, Body, Error, Request, RequestExt, Response,
};
use lambda_runtime::LambdaEvent;
#[cfg(feature = "test-util")]
pub use test_util::{
    failed_ids, run_event, run_gateway_event, run_health_event, run_json_event, run_sqs_event,
    EventAnswer,
};

#[cfg(feature = "test-util")]
mod test_util;

/// Which part of the API a function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Merchant(Endpoint),
    /// Several endpoints in one function (the refund function: refund and its query), each
    /// request to the one of its path.
    Merchants(&'static [Endpoint]),
    WechatNotify,
}

/// The whole `main` of a function that talks to WeChat Pay: logging, services from the
/// environment (the WeChat Pay secret read once), the runtime loop.
pub async fn serve(route: Route) -> Result<(), Error> {
    ferrypay::telemetry::init_lambda();
    let sdk = ferrypay::aws::sdk_config(None).await;
    let app = ferrypay::runtime::lambda_app(Env::process(), &sdk).await?;
    let edge = EdgeTrust::from_env(&Env::process(), &sdk).await?;
    run(service_fn(|req| handle(&app, route, &edge, req))).await
}

/// The whole `main` of list and resend, which never talk to WeChat Pay: their services have no
/// payment channel, so they need neither the WeChat Pay settings nor the secret.
pub async fn serve_store_only(endpoint: Endpoint) -> Result<(), Error> {
    ferrypay::telemetry::init_lambda();
    let sdk = ferrypay::aws::sdk_config(None).await;
    let app = ferrypay::runtime::store_only_app(Env::process(), &sdk).await?;
    let edge = EdgeTrust::from_env(&Env::process(), &sdk).await?;
    let route = Route::Merchant(endpoint);
    run(service_fn(|req| handle(&app, route, &edge, req))).await
}

/// One invocation: every expected failure is an HTTP answer, never an invocation error.
pub async fn handle<B: Backends>(
    app: &Ferrypay<B>,
    route: Route,
    edge: &EdgeTrust,
    req: Request,
) -> Result<Response<Body>, Error> {
    let req = into_api_request(req, edge);
    let response: ApiResponse = match route {
        Route::Merchant(endpoint) => api::handle_endpoint(app, endpoint, req).await,
        Route::Merchants(endpoints) => match api::Endpoint::for_path(req.uri().path()) {
            Some(endpoint) if endpoints.contains(&endpoint) => {
                api::handle_endpoint(app, endpoint, req).await
            }
            _ => api::route_not_found(),
        },
        Route::WechatNotify => handle_wechat_notify(app, req).await,
    };
    Ok(response.map(Body::from))
}

/// The request `ferrypay::api` takes: the exact body bytes, and the client's address. That is
/// API Gateway's `requestContext.http.sourceIp` (set from the connection; client headers never
/// count), except behind CloudFront, where `edge` may take CloudFront's viewer address
/// instead, and only from a request that proves it came through CloudFront (see
/// [`EdgeTrust`]). The edge headers never reach `ferrypay::api`.
fn into_api_request(req: Request, edge: &EdgeTrust) -> ApiRequest {
    let source_ip = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .http
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok()),
        _ => None,
    };
    let (mut parts, body) = req.into_parts();
    let client = edge.client_addr(&parts.headers, source_ip);
    edge::strip(&mut parts.headers);
    let mut req =
        lambda_http::http::Request::from_parts(parts, Bytes::copy_from_slice(body.as_ref()));
    if let Some(ip) = client {
        ClientAddr::attach(&mut req, ip);
    }
    req
}

/// The whole `main` of gateway-redirect (the jump-pay gateway): logging, its services and the
/// gateway from the environment (the OAuth secret is required), the runtime loop.
pub async fn serve_gateway() -> Result<(), Error> {
    ferrypay::telemetry::init_lambda();
    let sdk = ferrypay::aws::sdk_config(None).await;
    let (app, gateway) = ferrypay::runtime::gateway_app(Env::process(), &sdk).await?;
    let edge = EdgeTrust::from_env(&Env::process(), &sdk).await?;
    run(service_fn(|req| {
        handle_gateway_request(&app, &gateway, &edge, req)
    }))
    .await
}

/// One gateway invocation (`/pay/gateway`, its cashier and status): a page, a redirect or
/// JSON, never an invocation error.
pub async fn handle_gateway_request<B: Backends>(
    app: &Ferrypay<B>,
    gateway: &Gateway,
    edge: &EdgeTrust,
    req: Request,
) -> Result<Response<Body>, Error> {
    let response = handle_gateway(app, gateway, into_api_request(req, edge)).await;
    Ok(response.map(Body::from))
}

/// The whole `main` of the health function (`GET /api/v1/health`): logging, the table and the
/// health check from the environment (no WeChat Pay secret), the runtime loop.
pub async fn serve_health() -> Result<(), Error> {
    ferrypay::telemetry::init_lambda();
    let sdk = ferrypay::aws::sdk_config(None).await;
    let app = ferrypay::runtime::health_app(Env::process(), &sdk).await?;
    let edge = EdgeTrust::from_env(&Env::process(), &sdk).await?;
    run(service_fn(|req| {
        handle_health_request(&app.store, app.clock.as_ref(), &app.check, &edge, req)
    }))
    .await
}

/// One health invocation: JSON, never an invocation error.
pub async fn handle_health_request<S: RateLimitStore + HealthStore>(
    store: &S,
    clock: &dyn Clock,
    check: &HealthCheck,
    edge: &EdgeTrust,
    req: Request,
) -> Result<Response<Body>, Error> {
    let response = handle_health(store, clock, check, into_api_request(req, edge)).await;
    Ok(response.map(Body::from))
}

/// The whole `main` of the notify-worker: logging, its services from the environment (no
/// WeChat Pay secret), the runtime loop over SQS batches.
pub async fn serve_notify_worker() -> Result<(), Error> {
    ferrypay::telemetry::init_lambda();
    let app = ferrypay::runtime::worker_app_from_env().await?;
    let worker = app.worker();
    let worker = &worker;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<SqsEvent>| async move {
            Ok::<_, Error>(handle_sqs_event(worker, event.payload).await)
        },
    ))
    .await
}

/// One SQS batch: every message goes to the worker; the ones it could not handle are named in
/// the partial batch response (the event source mapping has `ReportBatchItemFailures`), so
/// SQS delivers them again and, after the queue's `maxReceiveCount`, moves them to the
/// dead-letter queue. Nothing is dropped silently: a record without a body fails by its id, and
/// a record without an id (which SQS never sends) is answered with an empty identifier, which
/// Lambda treats as the failure of the whole batch. Never an invocation error: that would
/// retry the whole batch for one bad message.
pub async fn handle_sqs_event<S: Store, Q: Queue>(
    worker: &WebhookWorker<'_, S, Q>,
    event: SqsEvent,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut messages = Vec::with_capacity(event.records.len());
    let mut unnamed = false;
    for record in event.records {
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .cloned()
            .unwrap_or_default();
        match (record.message_id.filter(|id| !id.is_empty()), record.body) {
            (Some(message_id), Some(body)) => messages.push(BatchMessage { message_id, body }),
            (Some(message_id), None) => {
                tracing::error!(%message_id, %receive_count, "SQS record without a body; it goes back to the queue");
                response.add_failure(message_id);
            }
            (None, _) => {
                tracing::error!(%receive_count, "SQS record without a message id; the whole batch goes back to the queue");
                unnamed = true;
            }
        }
    }
    for message_id in worker.handle_batch(&messages).await {
        response.add_failure(message_id);
    }
    if unnamed {
        response.add_failure(String::new());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_api_gateways_source_ip_never_a_header() {
        let event = include_str!("../../events/create.json");
        let mut request = lambda_http::request::from_str(event).unwrap();
        request
            .headers_mut()
            .insert("x-forwarded-for", "198.51.100.7".parse().unwrap());
        let req = into_api_request(request, &EdgeTrust::default());
        assert_eq!(ClientAddr::of(&req), Some("203.0.113.10".parse().unwrap()));

        let without: serde_json::Value = serde_json::from_str(event).unwrap();
        let mut without = without;
        without["requestContext"]["http"]
            .as_object_mut()
            .unwrap()
            .remove("sourceIp");
        let request = lambda_http::request::from_str(&without.to_string()).unwrap();
        assert_eq!(
            ClientAddr::of(&into_api_request(request, &EdgeTrust::default())),
            None
        );
    }

    #[test]
    fn behind_cloudfront_the_viewer_address_counts_only_with_the_secret_and_is_stripped() {
        let secret = "0123456789abcdefghijABCDEFGHIJ0123456789xyzXYZ";
        let edge = EdgeTrust::cloudfront(ferrypay::model::Secret::new(secret.to_string()));
        let event = include_str!("../../events/create.json");
        let request = |verify: Option<&str>| {
            let mut request = lambda_http::request::from_str(event).unwrap();
            let headers = request.headers_mut();
            headers.insert(VIEWER_ADDRESS_HEADER, "198.51.100.7:40000".parse().unwrap());
            if let Some(verify) = verify {
                headers.insert(ORIGIN_VERIFY_HEADER, verify.parse().unwrap());
            }
            request
        };

        let req = into_api_request(request(Some(secret)), &edge);
        assert_eq!(ClientAddr::of(&req), Some("198.51.100.7".parse().unwrap()));
        assert!(req.headers().get(ORIGIN_VERIFY_HEADER).is_none());
        assert!(req.headers().get(VIEWER_ADDRESS_HEADER).is_none());

        // Forged: the viewer header without the secret, or with a wrong one, straight to the
        // API's own URL. sourceIp stands, and the forged headers are gone too.
        for verify in [None, Some("not-the-secret")] {
            let req = into_api_request(request(verify), &edge);
            assert_eq!(ClientAddr::of(&req), Some("203.0.113.10".parse().unwrap()));
            assert!(req.headers().get(ORIGIN_VERIFY_HEADER).is_none());
            assert!(req.headers().get(VIEWER_ADDRESS_HEADER).is_none());
        }
    }
}
