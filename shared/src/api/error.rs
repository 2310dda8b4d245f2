//! The one error type of the merchant API: the request's own shape errors plus the use cases'
//! refusals, each with its stable [`ErrorCode`], and the single mapping to HTTP.

use http::StatusCode;
use serde::Serialize;

use crate::{
    channel::ChannelError,
    service::{self, ErrorCode},
};

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
    /// `page` reaches past [`super::orders::MAX_PAGE_DEPTH`] orders: deep pages are read by
    /// cursor (each skipped order would be read).
    #[error("page is invalid: page * per_page is over {max}; use cursor (next_cursor) to read further", max = super::orders::MAX_PAGE_DEPTH)]
    PageTooDeep,
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
    /// The request's address is outside the merchant's IP allowlist; says nothing of the key.
    #[error("Request address not allowed")]
    IpNotAllowed,
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
    #[error("Refund not found")]
    RefundNotFound,
    #[error("Refund exceeds the refundable amount")]
    RefundExceedsRefundable,
    #[error("out_refund_no already used")]
    OutRefundNoUsed,
    /// 50 refunds already, or paid over a year ago.
    #[error("Refund not allowed")]
    RefundNotAllowed,
    #[error("Too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// WeChat Pay unreachable or timing out: worth retrying.
    #[error("Payment service unavailable")]
    PaymentUnavailable,
    /// WeChat Pay answered with an error: its message is logged, never shown.
    #[error("Payment service unavailable")]
    PaymentFailed,
    /// The deep health check could not read the table.
    #[error("Storage unavailable")]
    StoreUnavailable,
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
            | PageTooDeep | MissingField(_) | UnknownField(_) => StatusCode::BAD_REQUEST,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            MissingApiKey | InvalidApiKey => StatusCode::UNAUTHORIZED,
            ProductDisabled | PermissionDenied | IpNotAllowed => StatusCode::FORBIDDEN,
            OrderNotFound | RefundNotFound | RouteNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            OrderPaid
            | OrderClosed
            | OrderRefunded
            | OrderNotPaid
            | OutTradeNoUsed
            | RefundExceedsRefundable
            | OutRefundNoUsed
            | RefundNotAllowed => StatusCode::CONFLICT,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            PaymentFailed => StatusCode::BAD_GATEWAY,
            PaymentUnavailable | StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> ErrorCode {
        use ApiError::*;
        match self {
            InvalidJson => ErrorCode::InvalidJson,
            InvalidAmount => ErrorCode::InvalidAmount,
            OpenidRequired => ErrorCode::OpenidRequired,
            ClientIpRequired => ErrorCode::ClientIpRequired,
            InvalidField(_) | PageTooDeep => ErrorCode::InvalidField,
            MissingField(_) => ErrorCode::MissingField,
            UnknownField(_) => ErrorCode::UnknownField,
            BodyTooLarge => ErrorCode::BodyTooLarge,
            MissingApiKey => ErrorCode::MissingApiKey,
            InvalidApiKey => ErrorCode::InvalidApiKey,
            ProductDisabled => ErrorCode::ProductDisabled,
            PermissionDenied => ErrorCode::PermissionDenied,
            IpNotAllowed => ErrorCode::IpNotAllowed,
            OrderNotFound => ErrorCode::OrderNotFound,
            OrderPaid => ErrorCode::OrderPaid,
            OrderClosed => ErrorCode::OrderClosed,
            OrderRefunded => ErrorCode::OrderRefunded,
            OrderNotPaid => ErrorCode::OrderNotPaid,
            OutTradeNoUsed => ErrorCode::OutTradeNoUsed,
            RefundNotFound => ErrorCode::RefundNotFound,
            RefundExceedsRefundable => ErrorCode::RefundExceedsRefundable,
            OutRefundNoUsed => ErrorCode::OutRefundNoUsed,
            RefundNotAllowed => ErrorCode::RefundNotAllowed,
            RateLimited { .. } => ErrorCode::RateLimited,
            PaymentUnavailable => ErrorCode::PaymentUnavailable,
            PaymentFailed => ErrorCode::PaymentFailed,
            StoreUnavailable => ErrorCode::StoreUnavailable,
            RouteNotFound => ErrorCode::RouteNotFound,
            MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Internal => ErrorCode::InternalError,
        }
    }

    /// The JSON body: `{"success": false, "error": ..., "code": ..., "field"?: ...}`.
    pub fn body(&self) -> String {
        let field = match self {
            ApiError::InvalidField(name) | ApiError::MissingField(name) => Some(*name),
            ApiError::UnknownField(name) => Some(name.as_str()),
            ApiError::PageTooDeep => Some("page"),
            ApiError::InvalidAmount => Some("amount"),
            ApiError::OpenidRequired => Some("openid"),
            ApiError::ClientIpRequired => Some("client_ip"),
            _ => None,
        };
        let body = ErrorBody {
            success: false,
            error: self.to_string(),
            code: self.code().as_str(),
            field,
        };
        serde_json::to_string(&body).unwrap_or_else(|_| {
            r#"{"success":false,"error":"Internal error","code":"internal_error"}"#.into()
        })
    }
}

/// A use case's error leaves the service layer here: an infrastructure cause is logged (once),
/// and the merchant sees only the code and its fixed message.
impl From<service::Error> for ApiError {
    fn from(err: service::Error) -> Self {
        use service::Error as E;
        err.log_cause();
        match err {
            E::MissingApiKey => ApiError::MissingApiKey,
            E::InvalidApiKey => ApiError::InvalidApiKey,
            E::PermissionDenied => ApiError::PermissionDenied,
            E::ProductDisabled => ApiError::ProductDisabled,
            E::IpNotAllowed => ApiError::IpNotAllowed,
            E::RateLimited { retry_after_secs } => ApiError::RateLimited { retry_after_secs },
            E::OrderNotFound => ApiError::OrderNotFound,
            E::OrderPaid => ApiError::OrderPaid,
            E::OrderClosed => ApiError::OrderClosed,
            E::OrderRefunded => ApiError::OrderRefunded,
            E::OrderNotPaid => ApiError::OrderNotPaid,
            E::OutTradeNoUsed => ApiError::OutTradeNoUsed,
            E::InvalidAmount => ApiError::InvalidAmount,
            E::RefundNotFound => ApiError::RefundNotFound,
            E::RefundExceedsRefundable => ApiError::RefundExceedsRefundable,
            E::OutRefundNoUsed => ApiError::OutRefundNoUsed,
            E::RefundNotAllowed => ApiError::RefundNotAllowed,
            E::Channel(ChannelError::Unavailable(_)) => ApiError::PaymentUnavailable,
            E::Channel(ChannelError::Rejected { .. }) => ApiError::PaymentFailed,
            E::StoreUnavailable => ApiError::StoreUnavailable,
            E::Store(_) | E::Queue(_) | E::Random(_) | E::Internal(_) => ApiError::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_error_keeps_its_code_through_the_api() {
        let cases = [
            service::Error::MissingApiKey,
            service::Error::InvalidApiKey,
            service::Error::PermissionDenied,
            service::Error::ProductDisabled,
            service::Error::IpNotAllowed,
            service::Error::RateLimited {
                retry_after_secs: 7,
            },
            service::Error::OrderNotFound,
            service::Error::OrderPaid,
            service::Error::OrderClosed,
            service::Error::OrderRefunded,
            service::Error::OrderNotPaid,
            service::Error::OutTradeNoUsed,
            service::Error::InvalidAmount,
            service::Error::RefundNotFound,
            service::Error::RefundExceedsRefundable,
            service::Error::OutRefundNoUsed,
            service::Error::RefundNotAllowed,
            service::Error::Channel(ChannelError::Unavailable("x".into())),
            service::Error::Channel(ChannelError::Rejected {
                code: "c".into(),
                message: "m".into(),
            }),
            service::Error::StoreUnavailable,
            service::Error::Internal("x".into()),
        ];
        for err in cases {
            let code = err.code();
            assert_eq!(ApiError::from(err).code(), code);
        }
    }

    #[test]
    fn bodies_name_the_field_and_never_carry_detail() {
        assert_eq!(
            ApiError::InvalidField("notify_url").body(),
            r#"{"success":false,"error":"notify_url is invalid","code":"invalid_field","field":"notify_url"}"#
        );
        assert_eq!(
            ApiError::from(service::Error::Internal("secret detail".into())).body(),
            r#"{"success":false,"error":"Internal error","code":"internal_error"}"#
        );
    }
}
