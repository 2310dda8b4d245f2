//! What a store call can fail with: the backend's failure ([`StoreError`], with its cause) and,
//! per write, the refusals a caller acts on.

use std::{borrow::Cow, error::Error, fmt};

use crate::model::{Fen, Order, OrderStatus, Refund, RefundRefused, ReserveRefused, UpdateRefused};

/// The cause of a [`StoreError`]: any error (the DynamoDB SDK's, a poisoned lock, ...).
pub type StoreErrorSource = Box<dyn Error + Send + Sync + 'static>;

/// The backend failed (unreachable, throttled, corrupt item, contention that did not settle).
/// Never shown to merchants.
///
/// `op` says what the store was doing (`"get order 20250101..."`): ids and table names, never
/// an item's attributes or a key hash. `Display` prints `op` and then the messages of the cause
/// chain, so a log line that prints the error once says why; the cause itself stays typed
/// behind [`Error::source`].
#[derive(Debug)]
pub struct StoreError {
    op: Cow<'static, str>,
    source: Option<StoreErrorSource>,
}

impl StoreError {
    /// A failure with no underlying error (an invariant the store checks itself, or gave up on).
    pub fn new(op: impl Into<Cow<'static, str>>) -> Self {
        StoreError {
            op: op.into(),
            source: None,
        }
    }

    /// A failure of `op` caused by `source`.
    pub fn caused_by(
        op: impl Into<Cow<'static, str>>,
        source: impl Into<StoreErrorSource>,
    ) -> Self {
        StoreError {
            op: op.into(),
            source: Some(source.into()),
        }
    }

    /// What the store was doing when it failed.
    pub fn op(&self) -> &str {
        &self.op
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage failure: {}", self.op)?;
        let mut cause = self.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InsertMerchantError {
    #[error("a merchant with this id or key already exists")]
    Exists,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateMerchantError {
    #[error("no such merchant")]
    NotFound,
    /// Another update was written since the merchant was read (its version moved): nothing
    /// of this one was written.
    #[error("the merchant changed since it was read")]
    Conflict,
    /// A new key hash belongs to another merchant (a collision, or a reused key).
    #[error("key already in use")]
    KeyTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum InsertOrderError {
    /// The merchant already has an order with this `out_trade_no`.
    #[error("out_trade_no already used by this merchant")]
    OutTradeNoTaken,
    /// Two generated order numbers collided (36^6 per second: retry with a new one).
    #[error("order number already exists")]
    OrderNoTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateOrderError {
    #[error("order not found")]
    NotFound,
    /// The order was not in the required state; `current` is how it is now.
    #[error("update refused: {reason}")]
    Refused {
        current: Box<Order>,
        reason: UpdateRefused,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`RefundStore::begin_refund`](super::RefundStore::begin_refund) wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum BeginRefundError {
    /// No such order, or it is another merchant's (never revealed).
    #[error("order not found")]
    OrderNotFound,
    /// The order is not `paid` (pending, closed, or already refunded in full).
    #[error("order is {0:?}, not paid")]
    OrderNotPaid(OrderStatus),
    /// The amount is more than what is left: `refundable` (at the moment of writing).
    #[error("refund exceeds the refundable {refundable}")]
    ExceedsRefundable { refundable: Fen },
    /// The order has had [`MAX_REFUNDS_PER_ORDER`](crate::model::MAX_REFUNDS_PER_ORDER).
    #[error("the order has had the most refunds allowed")]
    TooManyRefunds,
    /// The amount is not positive.
    #[error("refund amount must be positive")]
    InvalidAmount,
    /// The merchant already used this `out_refund_no`: `existing` is that refund (compare its
    /// `request_fingerprint`: the same request again, or another one).
    #[error("out_refund_no already used by this merchant")]
    OutRefundNoTaken { existing: Box<Refund> },
    /// The generated refund number exists already: retry with a new one.
    #[error("refund number already exists")]
    RefundNoTaken,
    /// Other writes to the order kept getting in the way (DynamoDB's transaction conflicts, or
    /// the order changed between the write and the read of why it failed): nothing written;
    /// safe to retry the same call.
    #[error("the order kept changing; nothing written")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ReserveRefused> for BeginRefundError {
    fn from(refused: ReserveRefused) -> Self {
        match refused {
            ReserveRefused::InvalidAmount => BeginRefundError::InvalidAmount,
            ReserveRefused::TooManyRefunds => BeginRefundError::TooManyRefunds,
            ReserveRefused::ExceedsRefundable { refundable } => {
                BeginRefundError::ExceedsRefundable { refundable }
            }
        }
    }
}

/// Why [`RefundStore::settle_refund`](super::RefundStore::settle_refund) or
/// [`RefundStore::update_refund_webhook`](super::RefundStore::update_refund_webhook) changed
/// nothing.
#[derive(Debug, thiserror::Error)]
pub enum UpdateRefundError {
    #[error("refund not found")]
    NotFound,
    /// The refund is not in a state the change applies to; `current` is how it is now (a
    /// duplicate or late notification: nothing changes twice).
    #[error("refund update refused: {reason}")]
    Refused {
        current: Box<Refund>,
        reason: RefundRefused,
    },
    /// The refund or its order kept changing: nothing written; safe to retry.
    #[error("the refund or its order kept changing; nothing written")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`RefundStore::record_external_refund`](super::RefundStore::record_external_refund)
/// wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum RecordRefundError {
    /// ferrypay has no such order (or it is another merchant's).
    #[error("order not found")]
    OrderNotFound,
    /// The order kept changing: nothing written; safe to retry.
    #[error("the order kept changing; nothing written")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;

    #[derive(Debug, thiserror::Error)]
    #[error("dispatch failure")]
    struct Dispatch(#[source] Refused);

    #[test]
    fn store_error_display_names_the_op_and_every_cause() {
        let error = StoreError::caused_by("get order 1", Dispatch(Refused));
        assert_eq!(
            error.to_string(),
            "storage failure: get order 1: dispatch failure: connection refused"
        );
        assert_eq!(error.op(), "get order 1");
        let source = error.source().map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("dispatch failure"));
    }

    #[test]
    fn store_error_without_a_cause_is_its_op() {
        let error = StoreError::new("table t not active after 300s");
        assert_eq!(
            error.to_string(),
            "storage failure: table t not active after 300s"
        );
        assert!(error.source().is_none());
    }
}
