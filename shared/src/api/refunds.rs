//! The refund endpoints: request parsing, every field validated and named, and the refund as
//! merchants see it.

use serde::Serialize;

use super::{orders::field, params::Params, ApiError};
use crate::{
    model::{Fen, OrderNo, OutRefundNo, OutTradeNo, Refund, RefundNo, RefundReason, RefundSource},
    service::{OrderRef, RefundOrder, RefundRef},
};

const REFUND_FIELDS: &[&str] = &[
    "order_no",
    "out_trade_no",
    "amount",
    "out_refund_no",
    "reason",
];
const REFUND_REF_FIELDS: &[&str] = &["refund_no", "out_refund_no"];

/// Validates a refund request: the order by `order_no` or `out_trade_no`, an optional amount
/// (fen, at least 1: the order's own bound is the service's), an optional `out_refund_no` and
/// `reason`.
pub fn parse_refund(params: &Params) -> Result<RefundOrder, ApiError> {
    params.only(REFUND_FIELDS)?;
    let order = order_ref(params)?;
    let amount = match params.integer("amount") {
        Ok(None) => None,
        Ok(Some(fen)) if fen >= 1 && fen <= Fen::MAX_ORDER.get() => Some(Fen::new(fen)),
        Ok(Some(_)) | Err(_) => return Err(ApiError::InvalidAmount),
    };
    Ok(RefundOrder {
        order,
        amount,
        out_refund_no: field(params, "out_refund_no", OutRefundNo::parse)?,
        reason: field(params, "reason", RefundReason::parse)?,
        source: RefundSource::Api,
    })
}

/// `refund_no` or `out_refund_no` (refund query).
pub fn parse_refund_ref(params: &Params) -> Result<RefundRef, ApiError> {
    params.only(REFUND_REF_FIELDS)?;
    if let Some(no) = params.text("refund_no")? {
        return RefundNo::parse(&no)
            .map(RefundRef::RefundNo)
            .ok_or(ApiError::InvalidField("refund_no"));
    }
    if let Some(no) = field(params, "out_refund_no", OutRefundNo::parse)? {
        return Ok(RefundRef::OutRefundNo(no));
    }
    Err(ApiError::MissingField("refund_no"))
}

/// The order of a refund request (`order_no` wins when both are given, as for queries).
fn order_ref(params: &Params) -> Result<OrderRef, ApiError> {
    if let Some(no) = params.text("order_no")? {
        return OrderNo::parse(&no)
            .map(OrderRef::OrderNo)
            .ok_or(ApiError::InvalidField("order_no"));
    }
    if let Some(no) = field(params, "out_trade_no", OutTradeNo::parse)? {
        return Ok(OrderRef::OutTradeNo(no));
    }
    Err(ApiError::MissingField("order_no"))
}

/// A refund as merchants see it (in refund answers, an order's `refunds` and refund webhooks):
/// the service's refund JSON, so the answer and the webhook cannot drift apart.
pub use crate::service::RefundJson as RefundWire;

/// `{"success": true, "refund": {...}}`.
#[derive(Debug, Serialize)]
pub struct RefundAnswer<'a> {
    pub success: bool,
    pub refund: RefundWire<'a>,
}

impl<'a> From<&'a Refund> for RefundAnswer<'a> {
    fn from(refund: &'a Refund) -> Self {
        RefundAnswer {
            success: true,
            refund: RefundWire::from(refund),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(body: &str) -> Params {
        Params::parse(None, body.as_bytes()).unwrap()
    }

    fn refund(body: &str) -> Result<RefundOrder, ApiError> {
        parse_refund(&params(body))
    }

    #[test]
    fn a_refund_names_its_order_and_may_leave_the_amount_out() {
        let r = refund(r#"{"out_trade_no": "shop-1"}"#).unwrap();
        assert_eq!(
            r.order,
            OrderRef::OutTradeNo(OutTradeNo::parse("shop-1").unwrap())
        );
        assert_eq!((r.amount, r.out_refund_no, r.reason), (None, None, None));
        assert_eq!(r.source, RefundSource::Api);
        let r = refund(
            r#"{"order_no": "FP20251221103000ABC123", "amount": 30, "out_refund_no": "r-1",
                "reason": "少发了一件"}"#,
        )
        .unwrap();
        assert_eq!(r.amount, Some(Fen::new(30)));
        assert_eq!(r.out_refund_no.unwrap().as_str(), "r-1");
        assert_eq!(r.reason.unwrap().as_str(), "少发了一件");
    }

    #[test]
    fn bad_refund_fields_are_named() {
        for (body, expected) in [
            (r#"{"amount": 30}"#, ApiError::MissingField("order_no")),
            (
                r#"{"order_no": "FP1", "amount": 30}"#,
                ApiError::InvalidField("order_no"),
            ),
            (
                r#"{"out_trade_no": "shop-1", "amount": 0}"#,
                ApiError::InvalidAmount,
            ),
            (
                r#"{"out_trade_no": "shop-1", "amount": -5}"#,
                ApiError::InvalidAmount,
            ),
            (
                r#"{"out_trade_no": "shop-1", "amount": 1.5}"#,
                ApiError::InvalidAmount,
            ),
            (
                r#"{"out_trade_no": "shop-1", "amount": "thirty"}"#,
                ApiError::InvalidAmount,
            ),
            (
                r#"{"out_trade_no": "shop-1", "out_refund_no": "a.b"}"#,
                ApiError::InvalidField("out_refund_no"),
            ),
            (
                r#"{"out_trade_no": "shop-1", "reason": "a\u202eb"}"#,
                ApiError::InvalidField("reason"),
            ),
            (
                r#"{"out_trade_no": "shop-1", "refund_amount": 3}"#,
                ApiError::UnknownField("refund_amount".into()),
            ),
        ] {
            assert_eq!(refund(body).unwrap_err(), expected, "{body}");
        }
        let long = format!(
            r#"{{"out_trade_no": "shop-1", "reason": "{}"}}"#,
            "退".repeat(27)
        );
        assert_eq!(refund(&long).unwrap_err(), ApiError::InvalidField("reason"));
    }

    #[test]
    fn a_refund_answers_in_the_documented_shape() {
        use crate::model::{MerchantId, RefundStatus, Timestamp, WebhookState};
        let created = Timestamp::from_unix(crate::testing::START);
        let refund = Refund {
            refund_no: RefundNo::parse("RF20251221103000ABC123").unwrap(),
            merchant_id: MerchantId::new("mch_a"),
            order_no: OrderNo::parse("FP20251221103000ABC123").unwrap(),
            out_trade_no: Some(OutTradeNo::parse("shop-1").unwrap()),
            out_refund_no: Some(OutRefundNo::parse("r-1").unwrap()),
            amount: Fen::new(30),
            status: RefundStatus::Succeeded,
            reason: Some(RefundReason::parse("缺货").unwrap()),
            source: RefundSource::Api,
            channel_refund_id: Some("50300000000000000001".into()),
            created_at: created,
            succeeded_at: Some(created.plus_secs(5)),
            ended_at: None,
            request_fingerprint: "f".into(),
            webhook: WebhookState::default(),
        };
        let json = serde_json::to_string(&RefundAnswer::from(&refund)).unwrap();
        assert_eq!(
            json,
            r#"{"success":true,"refund":{"refund_no":"RF20251221103000ABC123","out_refund_no":"r-1","order_no":"FP20251221103000ABC123","out_trade_no":"shop-1","amount":30,"status":"succeeded","reason":"缺货","created_at":"2025-12-21 10:30:00","succeeded_at":"2025-12-21 10:30:05","source":"api"}}"#
        );
    }

    #[test]
    fn a_refund_is_named_by_either_number() {
        let by_ours = parse_refund_ref(&params(r#"{"refund_no": "RF20251221103000ABC123"}"#));
        assert!(matches!(by_ours, Ok(RefundRef::RefundNo(_))));
        let by_theirs = parse_refund_ref(&Params::parse(Some("out_refund_no=r-1"), b"").unwrap());
        assert!(matches!(by_theirs, Ok(RefundRef::OutRefundNo(_))));
        assert_eq!(
            parse_refund_ref(&params(r#"{"refund_no": "FP20251221103000ABC123"}"#)).unwrap_err(),
            ApiError::InvalidField("refund_no")
        );
        assert_eq!(
            parse_refund_ref(&params("{}")).unwrap_err(),
            ApiError::MissingField("refund_no")
        );
    }
}
