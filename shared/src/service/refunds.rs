//! Refunds, the requests: what a merchant (or the operator) asks to give back, and how a
//! refund is named. The use cases build on the store's refund port and the channel's refund
//! calls.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::OrderRef;
use crate::{
    model::{Fen, OutRefundNo, RefundNo, RefundReason, RefundSource},
    sign::hex_lower,
};

/// A refund request, validated field by field (the order's own rules come later: paid, within
/// the refundable remainder, under the limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOrder {
    pub order: OrderRef,
    /// `None`: the whole refundable remainder, at the time of the request.
    pub amount: Option<Fen>,
    pub out_refund_no: Option<OutRefundNo>,
    pub reason: Option<RefundReason>,
    pub source: RefundSource,
}

impl RefundOrder {
    /// SHA-256 over the parameters as given (an omitted amount stays omitted), so a repeated
    /// `out_refund_no` can be told apart from a retry of the same request: a retry that
    /// omitted the amount is the same request even after the remainder changed.
    pub fn fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct Canonical<'a> {
            order: (&'a str, &'a str),
            amount: Option<i64>,
            out_refund_no: Option<&'a str>,
            reason: Option<&'a str>,
        }
        let order = match &self.order {
            OrderRef::OrderNo(no) => ("order_no", no.as_str()),
            OrderRef::OutTradeNo(no) => ("out_trade_no", no.as_str()),
        };
        let canonical = Canonical {
            order,
            amount: self.amount.map(Fen::get),
            out_refund_no: self.out_refund_no.as_ref().map(OutRefundNo::as_str),
            reason: self.reason.as_ref().map(RefundReason::as_str),
        };
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        hex_lower(&Sha256::digest(bytes))
    }
}

/// How a merchant names one of its refunds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundRef {
    RefundNo(RefundNo),
    OutRefundNo(OutRefundNo),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OrderNo, OutTradeNo};

    fn request(amount: Option<i64>, reason: Option<&str>) -> RefundOrder {
        RefundOrder {
            order: OrderRef::OutTradeNo(OutTradeNo::parse("shop-1").unwrap()),
            amount: amount.map(Fen::new),
            out_refund_no: Some(OutRefundNo::parse("r-1").unwrap()),
            reason: reason.map(|r| RefundReason::parse(r).unwrap()),
            source: RefundSource::Api,
        }
    }

    #[test]
    fn the_fingerprint_tells_other_parameters_apart_and_keeps_an_omitted_amount_omitted() {
        assert_eq!(
            request(Some(30), None).fingerprint(),
            request(Some(30), None).fingerprint()
        );
        for other in [
            request(Some(31), None),
            request(None, None),
            request(Some(30), Some("broken")),
        ] {
            assert_ne!(request(Some(30), None).fingerprint(), other.fingerprint());
        }
        let by_number = RefundOrder {
            order: OrderRef::OrderNo(OrderNo::parse("FP20251221103000ABC123").unwrap()),
            ..request(Some(30), None)
        };
        assert_ne!(
            by_number.fingerprint(),
            request(Some(30), None).fingerprint()
        );
        // Who asked is not a parameter: the operator finishing a merchant's refund is the same.
        let by_operator = RefundOrder {
            source: RefundSource::Operator,
            ..request(Some(30), None)
        };
        assert_eq!(
            by_operator.fingerprint(),
            request(Some(30), None).fingerprint()
        );
    }
}
