//! What every HTTP Lambda of ferrypay does around `ferrypay::api`: build the services once per
//! cold start, then turn each `lambda_http` request into an `http::Request<Bytes>` (the exact
//! body bytes: notifications are verified over them) and the answer back. Kept out of
//! `ferrypay` so that crate stays free of the Lambda runtime.

use bytes::Bytes;
use ferrypay::{
    api::{self, notify::handle_wechat_notify, ApiRequest, ApiResponse, Endpoint},
    service::{Backends, Ferrypay},
};
use lambda_http::{run, service_fn, Body, Error, Request, Response};

/// Which part of the API a function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Merchant(Endpoint),
    WechatNotify,
}

/// The whole `main` of a function: logging, services from the environment, the runtime loop.
pub async fn serve(route: Route) -> Result<(), Error> {
    ferrypay::telemetry::init_lambda();
    let app = ferrypay::runtime::lambda_app_from_env().await?;
    run(service_fn(|req| handle(&app, route, req))).await
}

/// One invocation: every expected failure is an HTTP answer, never an invocation error.
pub async fn handle<B: Backends>(
    app: &Ferrypay<B>,
    route: Route,
    req: Request,
) -> Result<Response<Body>, Error> {
    let req = into_api_request(req);
    let response: ApiResponse = match route {
        Route::Merchant(endpoint) => api::handle_endpoint(app, endpoint, req).await,
        Route::WechatNotify => handle_wechat_notify(app, req).await,
    };
    Ok(response.map(Body::from))
}

fn into_api_request(req: Request) -> ApiRequest {
    let (parts, body) = req.into_parts();
    lambda_http::http::Request::from_parts(parts, Bytes::copy_from_slice(body.as_ref()))
}

/// Runs `handle` on an API Gateway HTTP API (v2) event, as the functions' tests do with the
/// events in `events/`: (status, body text).
pub async fn run_event<B: Backends>(
    app: &Ferrypay<B>,
    route: Route,
    event: &str,
) -> Result<(u16, String), Error> {
    let request = lambda_http::request::from_str(event)?;
    let response = handle(app, route, request).await?;
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
