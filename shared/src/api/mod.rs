//! The merchant API: one `http::Request` in, one `http::Response` out. Lambda functions (through
//! `lambda_http`) and `ferrypay dev` (through a local HTTP server) run exactly this code.

mod error;
pub mod gateway;
pub mod notify;
pub mod orders;
pub mod params;

use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use serde_json::{json, Value};

pub use error::ApiError;
use params::{api_key, Params};

use crate::service::{Backends, Ferrypay};

pub type ApiRequest = http::Request<Bytes>;
pub type ApiResponse = http::Response<String>;

/// The merchant API's endpoints; each is one Lambda function in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Create,
    Query,
    Close,
    List,
    /// Sends a paid order's webhook again.
    Resend,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Create,
        Endpoint::Query,
        Endpoint::Close,
        Endpoint::List,
        Endpoint::Resend,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Create => "/api/v1/pay/create",
            Endpoint::Query => "/api/v1/pay/query",
            Endpoint::Close => "/api/v1/pay/close",
            Endpoint::List => "/api/v1/pay/list",
            Endpoint::Resend => "/api/v1/pay/notify/resend",
        }
    }

    pub fn methods(self) -> &'static [Method] {
        match self {
            Endpoint::Create | Endpoint::Close | Endpoint::Resend => &[Method::POST],
            Endpoint::Query | Endpoint::List => &[Method::GET, Method::POST],
        }
    }

    /// The endpoint serving `path` (a trailing slash is tolerated).
    pub fn for_path(path: &str) -> Option<Endpoint> {
        let path = path.strip_suffix('/').unwrap_or(path);
        Self::ALL.into_iter().find(|e| e.path() == path)
    }
}

/// Routes any request of the public API (the dev stack's single server): the merchant
/// endpoints and WeChat Pay's notification callback.
pub async fn handle<B: Backends>(app: &Ferrypay<B>, req: ApiRequest) -> ApiResponse {
    if req.uri().path() == notify::WECHAT_NOTIFY_PATH {
        return notify::handle_wechat_notify(app, req).await;
    }
    match Endpoint::for_path(req.uri().path()) {
        Some(endpoint) => handle_endpoint(app, endpoint, req).await,
        None => error_response(&ApiError::RouteNotFound),
    }
}

/// Serves one endpoint (a Lambda function is wired to exactly one).
pub async fn handle_endpoint<B: Backends>(
    app: &Ferrypay<B>,
    endpoint: Endpoint,
    req: ApiRequest,
) -> ApiResponse {
    let response = match dispatch(app, endpoint, &req).await {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(err) => error_response(&err),
    };
    tracing::info!(
        method = %req.method(),
        path = req.uri().path(),
        status = response.status().as_u16(),
        "merchant api"
    );
    response
}

async fn dispatch<B: Backends>(
    app: &Ferrypay<B>,
    endpoint: Endpoint,
    req: &ApiRequest,
) -> Result<Value, ApiError> {
    if !endpoint.methods().contains(req.method()) {
        return Err(ApiError::MethodNotAllowed);
    }
    let params = Params::parse(req.uri().query(), req.body())?;
    let merchant = app
        .authenticate(api_key(req.headers(), &params).as_deref())
        .await?;
    match endpoint {
        Endpoint::Create => {
            let request = orders::parse_create(&params, app.config.allow_http_notify_urls)?;
            let created = app.create_order(&merchant, request).await?;
            Ok(orders::created_json(&created))
        }
        Endpoint::Query => {
            let by = orders::parse_order_ref(&params)?;
            let order = app.query_order(&merchant, &by).await?;
            let attempts = app.webhook_attempts(&order).await?;
            Ok(
                json!({"success": true, "order": orders::order_with_attempts_json(&order, &attempts)}),
            )
        }
        Endpoint::Close => {
            let by = orders::parse_order_ref(&params)?;
            let order = app.close_order(&merchant, &by).await?;
            Ok(json!({"success": true, "order": orders::order_json(&order)}))
        }
        Endpoint::List => {
            let request = orders::parse_list(&params)?;
            let page = app.list_orders(&merchant, request.clone()).await?;
            Ok(orders::list_json(&page, &request))
        }
        Endpoint::Resend => {
            let by = orders::parse_order_ref(&params)?;
            let order = app.resend_webhook(&merchant, &by).await?;
            Ok(
                json!({"success": true, "order_no": order.order_no, "webhook": orders::webhook_json(&order)}),
            )
        }
    }
}

pub fn json_response(status: StatusCode, body: &Value) -> ApiResponse {
    build(status, body.to_string(), None)
}

/// The one place an [`ApiError`] becomes HTTP.
pub fn error_response(err: &ApiError) -> ApiResponse {
    let retry_after = match err {
        ApiError::RateLimited { retry_after_secs } => Some(retry_after_secs.to_string()),
        _ => None,
    };
    build(err.status(), err.body(), retry_after)
}

fn build(status: StatusCode, body: String, retry_after: Option<String>) -> ApiResponse {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if let Some(value) = retry_after.and_then(|v| header::HeaderValue::from_str(&v).ok()) {
        headers.insert(header::RETRY_AFTER, value);
    }
    response
}
