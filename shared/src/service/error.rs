//! The use cases' error: what went wrong in business terms, each variant with one stable
//! [`ErrorCode`]. No HTTP here: `api` maps a code to a status and a JSON body, `pages` to a
//! status and Chinese text. Infrastructure failures keep their cause for the log line written
//! where the error leaves the service layer (see [`Error::log_cause`]).

use super::ErrorCode;
use crate::{channel::ChannelError, model::RandomError, queue::QueueError, store::StoreError};

/// Why a use case (order, webhook, authentication) refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no API key")]
    MissingApiKey,
    #[error("unknown API key")]
    InvalidApiKey,
    /// A publishable key on a server endpoint.
    #[error("this key may not call this endpoint")]
    PermissionDenied,
    #[error("the merchant is disabled")]
    ProductDisabled,
    /// A key (valid or not is not said) from an address outside the merchant's allowlist.
    #[error("this address may not use this key")]
    IpNotAllowed,
    #[error("rate limited for {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("order not found")]
    OrderNotFound,
    #[error("order already paid")]
    OrderPaid,
    #[error("order closed")]
    OrderClosed,
    #[error("order refunded")]
    OrderRefunded,
    /// Only a paid order has a webhook to resend.
    #[error("order not paid")]
    OrderNotPaid,
    /// The same `out_trade_no` with other parameters.
    #[error("out_trade_no already used")]
    OutTradeNoUsed,
    /// Not positive, or more than the order's amount.
    #[error("invalid amount")]
    InvalidAmount,
    #[error("refund not found")]
    RefundNotFound,
    /// More than the order's amount less its succeeded and processing refunds.
    #[error("refund exceeds the refundable amount")]
    RefundExceedsRefundable,
    /// The same `out_refund_no` with other parameters.
    #[error("out_refund_no already used")]
    OutRefundNoUsed,
    /// The order has had its 50 refunds, or was paid over a year ago.
    #[error("refund not allowed")]
    RefundNotAllowed,
    /// The payment channel failed or refused (its detail is for the log only).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("storage failed")]
    Store(#[from] StoreError),
    /// The deep health check could not read the store (its cause was logged when found).
    #[error("storage unavailable")]
    StoreUnavailable,
    #[error("queueing failed")]
    Queue(#[from] QueueError),
    #[error("random source failed")]
    Random(#[from] RandomError),
    /// A broken invariant (an order without its credential, a QR code that cannot render).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        Error::Internal(detail.to_string())
    }

    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::MissingApiKey => ErrorCode::MissingApiKey,
            Error::InvalidApiKey => ErrorCode::InvalidApiKey,
            Error::PermissionDenied => ErrorCode::PermissionDenied,
            Error::ProductDisabled => ErrorCode::ProductDisabled,
            Error::IpNotAllowed => ErrorCode::IpNotAllowed,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::OrderNotFound => ErrorCode::OrderNotFound,
            Error::OrderPaid => ErrorCode::OrderPaid,
            Error::OrderClosed => ErrorCode::OrderClosed,
            Error::OrderRefunded => ErrorCode::OrderRefunded,
            Error::OrderNotPaid => ErrorCode::OrderNotPaid,
            Error::OutTradeNoUsed => ErrorCode::OutTradeNoUsed,
            Error::InvalidAmount => ErrorCode::InvalidAmount,
            Error::RefundNotFound => ErrorCode::RefundNotFound,
            Error::RefundExceedsRefundable => ErrorCode::RefundExceedsRefundable,
            Error::OutRefundNoUsed => ErrorCode::OutRefundNoUsed,
            Error::RefundNotAllowed => ErrorCode::RefundNotAllowed,
            Error::Channel(ChannelError::Unavailable(_)) => ErrorCode::PaymentUnavailable,
            Error::Channel(ChannelError::Rejected { .. }) => ErrorCode::PaymentFailed,
            Error::StoreUnavailable => ErrorCode::StoreUnavailable,
            Error::Store(_) | Error::Queue(_) | Error::Random(_) | Error::Internal(_) => {
                ErrorCode::InternalError
            }
        }
    }

    /// Logs the cause of an infrastructure failure (refusals are answers, not failures). Called
    /// once, where the error leaves the service layer for a response.
    pub fn log_cause(&self) {
        match self {
            Error::Channel(ChannelError::Unavailable(detail)) => {
                tracing::warn!(%detail, "payment channel unavailable");
            }
            Error::Channel(ChannelError::Rejected { code, message }) => {
                tracing::error!(%code, %message, "payment channel refused a request");
            }
            Error::Store(cause) => tracing::error!(error = %cause, "storage failure"),
            Error::Queue(cause) => tracing::error!(error = %cause, "queue failure"),
            Error::Random(cause) => tracing::error!(error = %cause, "random source failure"),
            Error::Internal(detail) => tracing::error!(%detail, "internal error"),
            _ => {}
        }
    }
}

/// The refusal for an order that is no longer pending.
pub(crate) fn not_pending(status: crate::model::OrderStatus) -> Error {
    use crate::model::OrderStatus;
    match status {
        OrderStatus::Paid => Error::OrderPaid,
        OrderStatus::Refunded => Error::OrderRefunded,
        OrderStatus::Closed | OrderStatus::Pending => Error::OrderClosed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_failures_are_unavailable_or_failed_and_infrastructure_is_internal() {
        let unavailable = Error::Channel(ChannelError::Unavailable("timeout".into()));
        assert_eq!(unavailable.code(), ErrorCode::PaymentUnavailable);
        let rejected = Error::Channel(ChannelError::Rejected {
            code: "PARAM_ERROR".into(),
            message: "bad".into(),
        });
        assert_eq!(rejected.code(), ErrorCode::PaymentFailed);
        assert_eq!(
            Error::Queue(QueueError::Unavailable("down".into())).code(),
            ErrorCode::InternalError
        );
        assert_eq!(
            Error::RateLimited {
                retry_after_secs: 3
            }
            .code(),
            ErrorCode::RateLimited
        );
    }
}
