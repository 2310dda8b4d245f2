//! The one error type of the merchant API: stable codes and the single mapping to HTTP.

use http::StatusCode;
use serde::Serialize;

use crate::{channel::ChannelError, store::StoreError};

/// Every failure a merchant can see. `message` and `code` are part of the contract: codes never
/// change; messages are the DESIGN.md table's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("Invalid JSON")]
    InvalidJson,
    #[error("Invalid amount")]
    InvalidAmount,
    #[error("JSAPI requires openid")]
    OpenidRequired,
    #[error("H5 requires client_ip")]
    ClientIpRequired,
    #[error("{0} is invalid")]
    InvalidField(&'static str),
    #[error("{0} is required")]
    MissingField(&'static str),
    #[error("Unknown field: {0}")]
    UnknownField(String),
    #[error("Request body too large")]
    BodyTooLarge,
    #[error("Missing API Key")]
    MissingApiKey,
    #[error("Invalid API Key")]
    InvalidApiKey,
    #[error("Product disabled")]
    ProductDisabled,
    #[error("Permission denied")]
    PermissionDenied,
    #[error("Order not found")]
    OrderNotFound,
    #[error("Order already paid")]
    OrderPaid,
    #[error("Order closed")]
    OrderClosed,
    #[error("Order refunded")]
    OrderRefunded,
    /// Only a paid order has a webhook to resend.
    #[error("Order not paid")]
    OrderNotPaid,
    #[error("out_trade_no already used")]
    OutTradeNoUsed,
    #[error("Too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// WeChat Pay unreachable or timing out: worth retrying.
    #[error("Payment service unavailable")]
    PaymentUnavailable,
    /// WeChat Pay answered with an error: its message is logged, never shown.
    #[error("Payment service unavailable")]
    PaymentFailed,
    #[error("Not found")]
    RouteNotFound,
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error("Internal error")]
    Internal,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    success: bool,
    error: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            InvalidJson | InvalidAmount | OpenidRequired | ClientIpRequired | InvalidField(_)
            | MissingField(_) | UnknownField(_) => StatusCode::BAD_REQUEST,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            MissingApiKey | InvalidApiKey => StatusCode::UNAUTHORIZED,
            ProductDisabled | PermissionDenied => StatusCode::FORBIDDEN,
            OrderNotFound | RouteNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            OrderPaid | OrderClosed | OrderRefunded | OrderNotPaid | OutTradeNoUsed => {
                StatusCode::CONFLICT
            }
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            PaymentFailed => StatusCode::BAD_GATEWAY,
            PaymentUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidJson => "invalid_json",
            InvalidAmount => "invalid_amount",
            OpenidRequired => "openid_required",
            ClientIpRequired => "client_ip_required",
            InvalidField(_) => "invalid_field",
            MissingField(_) => "missing_field",
            UnknownField(_) => "unknown_field",
            BodyTooLarge => "body_too_large",
            MissingApiKey => "missing_api_key",
            InvalidApiKey => "invalid_api_key",
            ProductDisabled => "product_disabled",
            PermissionDenied => "permission_denied",
            OrderNotFound => "order_not_found",
            OrderPaid => "order_paid",
            OrderClosed => "order_closed",
            OrderRefunded => "order_refunded",
            OrderNotPaid => "order_not_paid",
            OutTradeNoUsed => "out_trade_no_used",
            RateLimited { .. } => "rate_limited",
            PaymentUnavailable => "payment_unavailable",
            PaymentFailed => "payment_failed",
            RouteNotFound => "route_not_found",
            MethodNotAllowed => "method_not_allowed",
            Internal => "internal_error",
        }
    }

    /// The JSON body: `{"success": false, "error": ..., "code": ..., "field"?: ...}`.
    pub fn body(&self) -> String {
        let field = match self {
            ApiError::InvalidField(name) | ApiError::MissingField(name) => Some(*name),
            ApiError::UnknownField(name) => Some(name.as_str()),
            ApiError::InvalidAmount => Some("amount"),
            ApiError::OpenidRequired => Some("openid"),
            ApiError::ClientIpRequired => Some("client_ip"),
            _ => None,
        };
        let body = ErrorBody {
            success: false,
            error: self.to_string(),
            code: self.code(),
            field,
        };
        serde_json::to_string(&body).unwrap_or_else(|_| {
            r#"{"success":false,"error":"Internal error","code":"internal_error"}"#.into()
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "storage failure");
        ApiError::Internal
    }
}

impl From<ChannelError> for ApiError {
    fn from(err: ChannelError) -> Self {
        match err {
            ChannelError::Unavailable(detail) => {
                tracing::warn!(%detail, "payment channel unavailable");
                ApiError::PaymentUnavailable
            }
            ChannelError::Rejected { code, message } => {
                tracing::error!(%code, %message, "payment channel refused a request");
                ApiError::PaymentFailed
            }
        }
    }
}
