//! The merchant API: one `http::Request` in, one `http::Response` out. Lambda functions (through
//! `lambda_http`) and `ferrypay dev` (through a local HTTP server) run exactly this code.

mod error;
pub mod gateway;
pub mod health;
pub mod notify;
pub mod orders;
pub mod params;
pub mod refunds;
pub mod wire;

use std::net::IpAddr;

use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use serde::Serialize;

pub use error::ApiError;
use params::{api_key, Params};
use refunds::RefundAnswer;
use wire::{CreatedAnswer, ListAnswer, OrderAnswer, OrderWire, ResendAnswer};

use crate::service::{Backends, Ferrypay};

pub type ApiRequest = http::Request<Bytes>;
pub type ApiResponse = http::Response<String>;

/// The address the request came from, as the platform saw it: API Gateway's
/// `requestContext.http.sourceIp` in Lambda, the socket's peer in `ferrypay dev`. The runtime
/// puts it in the request's extensions; it is never read from a client's headers
/// (`X-Forwarded-For` and the like are whatever the client wants them to be).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The client address the runtime recorded on `req`, if it knew one.
    pub fn of<B>(req: &http::Request<B>) -> Option<IpAddr> {
        req.extensions().get::<ClientAddr>().map(|addr| addr.0)
    }

    /// Records the client address on `req` (the runtime's part).
    pub fn attach<B>(req: &mut http::Request<B>, ip: IpAddr) {
        req.extensions_mut().insert(ClientAddr(ip));
    }
}

/// The merchant API's endpoints; each is one Lambda function in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Create,
    Query,
    Close,
    List,
    /// Sends a paid order's webhook again.
    Resend,
    /// Refunds a paid order, whole or in part.
    Refund,
    /// One refund, asking WeChat Pay about a processing one.
    RefundQuery,
}

impl Endpoint {
    pub const ALL: [Endpoint; 7] = [
        Endpoint::Create,
        Endpoint::Query,
        Endpoint::Close,
        Endpoint::List,
        Endpoint::Resend,
        Endpoint::Refund,
        Endpoint::RefundQuery,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Create => "/api/v1/pay/create",
            Endpoint::Query => "/api/v1/pay/query",
            Endpoint::Close => "/api/v1/pay/close",
            Endpoint::List => "/api/v1/pay/list",
            Endpoint::Resend => "/api/v1/pay/notify/resend",
            Endpoint::Refund => "/api/v1/pay/refund",
            Endpoint::RefundQuery => "/api/v1/pay/refund/query",
        }
    }

    /// The Lambda function that serves the endpoint: one per endpoint, but the refund
    /// function serves both refund endpoints.
    pub fn function(self) -> &'static str {
        match self {
            Endpoint::Create => "create",
            Endpoint::Query => "query",
            Endpoint::Close => "close",
            Endpoint::List => "list",
            Endpoint::Resend => "resend",
            Endpoint::Refund | Endpoint::RefundQuery => "refund",
        }
    }

    pub fn methods(self) -> &'static [Method] {
        match self {
            Endpoint::Create | Endpoint::Close | Endpoint::Resend | Endpoint::Refund => {
                &[Method::POST]
            }
            Endpoint::Query | Endpoint::List | Endpoint::RefundQuery => {
                &[Method::GET, Method::POST]
            }
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
        None => route_not_found(),
    }
}

/// The answer to a path no endpoint serves.
pub fn route_not_found() -> ApiResponse {
    error_response(&ApiError::RouteNotFound)
}

/// Serves one endpoint.
pub async fn handle_endpoint<B: Backends>(
    app: &Ferrypay<B>,
    endpoint: Endpoint,
    req: ApiRequest,
) -> ApiResponse {
    let response = match dispatch(app, endpoint, &req).await {
        Ok(body) => build(StatusCode::OK, body, None),
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

/// Parses, calls the use case, and answers with the endpoint's wire type as JSON.
async fn dispatch<B: Backends>(
    app: &Ferrypay<B>,
    endpoint: Endpoint,
    req: &ApiRequest,
) -> Result<String, ApiError> {
    if !endpoint.methods().contains(req.method()) {
        return Err(ApiError::MethodNotAllowed);
    }
    let params = Params::parse(req.uri().query(), req.body())?;
    let merchant = app
        .authenticate(
            api_key(req.headers(), &params).as_deref(),
            ClientAddr::of(req),
        )
        .await?;
    match endpoint {
        Endpoint::Create => {
            let request = orders::parse_create(&params, app.config.allow_http_notify_urls)?;
            let created = app.create_order(&merchant, request).await?;
            to_json(&CreatedAnswer::from(&created))
        }
        Endpoint::Query => {
            let by = orders::parse_order_ref(&params)?;
            let order = app.query_order(&merchant, &by).await?;
            let attempts = app.webhook_attempts(&order).await?;
            // No read at all for an order never refunded.
            let refunds = app.refunds_of(&order).await?;
            to_json(&OrderAnswer::from(OrderWire::for_query(
                &order, &attempts, &refunds,
            )))
        }
        Endpoint::Close => {
            let by = orders::parse_order_ref(&params)?;
            let order = app.close_order(&merchant, &by).await?;
            to_json(&OrderAnswer::from(OrderWire::from(&order)))
        }
        Endpoint::List => {
            let request = orders::parse_list(&params)?;
            let page = app.list_orders(&merchant, request.clone()).await?;
            to_json(&ListAnswer::new(&page, &request))
        }
        Endpoint::Resend => {
            let by = orders::parse_order_ref(&params)?;
            let order = app.resend_webhook(&merchant, &by).await?;
            to_json(&ResendAnswer::from(&order))
        }
        Endpoint::Refund => {
            let request = refunds::parse_refund(&params)?;
            let refund = app.refund_order(&merchant, request).await?;
            to_json(&RefundAnswer::from(&refund))
        }
        Endpoint::RefundQuery => {
            let by = refunds::parse_refund_ref(&params)?;
            let refund = app.query_refund(&merchant, &by).await?;
            to_json(&RefundAnswer::from(&refund))
        }
    }
}

fn to_json<T: Serialize + ?Sized>(body: &T) -> Result<String, ApiError> {
    serde_json::to_string(body).map_err(|e| {
        tracing::error!(error = %e, "an answer does not serialise");
        ApiError::Internal
    })
}

/// Any serialisable body as a JSON answer.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> ApiResponse {
    match to_json(body) {
        Ok(body) => build(status, body, None),
        Err(err) => error_response(&err),
    }
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
