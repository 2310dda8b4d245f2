//! Refund items to and from the model: the refund (in its order's partition), its number's
//! pointer and its `out_refund_no` guard.

use std::collections::HashMap;

use super::{
    item::{corrupt, insert_opt, insert_webhook_state, n, s, webhook_state, Item, Reader},
    schema::{
        order_pk, refund_guard_pk, refund_no_pk, refund_sk, ITEM_TYPE, ORDER_NO, PK,
        REFUND_GUARD_SK, REFUND_NO_SK, SK, VERSION,
    },
};
use crate::{
    model::{
        Fen, MerchantId, OrderNo, OutRefundNo, OutTradeNo, Refund, RefundNo, RefundReason,
        RefundSource, RefundStatus, Timestamp,
    },
    store::StoreError,
};

const REFUND_NO: &str = "refund_no";

/// The refund item: `ORDER#{order_no}` / `REFUND#{refund_no}`, with its `version`.
pub(super) fn refund_item(refund: &Refund, version: i64) -> Item {
    // Destructured so that a new field fails to compile here until it is stored.
    let Refund {
        refund_no,
        merchant_id,
        order_no,
        out_trade_no,
        out_refund_no,
        amount,
        status,
        reason,
        source,
        channel_refund_id,
        created_at,
        succeeded_at,
        ended_at,
        request_fingerprint,
        webhook,
    } = refund;
    let mut item = HashMap::from([
        (PK.to_string(), s(order_pk(order_no))),
        (SK.to_string(), s(refund_sk(refund_no))),
        (ITEM_TYPE.to_string(), s("refund")),
        (REFUND_NO.to_string(), s(refund_no.as_str())),
        ("merchant_id".to_string(), s(merchant_id.as_str())),
        (ORDER_NO.to_string(), s(order_no.as_str())),
        ("amount".to_string(), n(amount.get())),
        ("status".to_string(), s(status.as_str())),
        ("source".to_string(), s(source.as_str())),
        ("created_at".to_string(), n(created_at.unix())),
        (
            "request_fingerprint".to_string(),
            s(request_fingerprint.as_str()),
        ),
        (VERSION.to_string(), n(version)),
    ]);
    insert_webhook_state(&mut item, webhook);
    insert_opt(
        &mut item,
        "out_trade_no",
        out_trade_no.as_ref().map(|o| s(o.as_str())),
    );
    insert_opt(
        &mut item,
        "out_refund_no",
        out_refund_no.as_ref().map(|o| s(o.as_str())),
    );
    insert_opt(&mut item, "reason", reason.as_ref().map(|r| s(r.as_str())));
    insert_opt(
        &mut item,
        "channel_refund_id",
        channel_refund_id.as_deref().map(s),
    );
    for (name, at) in [("succeeded_at", succeeded_at), ("ended_at", ended_at)] {
        insert_opt(&mut item, name, at.map(|t| n(t.unix())));
    }
    item
}

/// A refund from its item, and the item's version.
pub(super) fn refund_from_item(item: &Item) -> Result<(Refund, i64), StoreError> {
    let r = Reader::new(item, "refund");
    let refund_no = r.str(REFUND_NO)?;
    // ferrypay's numbers and WeChat Pay's (refunds made outside ferrypay) alike.
    let refund_no = RefundNo::from_wechat(refund_no)
        .map_err(|_| corrupt("refund", &format!("refund_no {refund_no:?}")))?;
    let order_no = r.str(ORDER_NO)?;
    let order_no = OrderNo::parse(order_no)
        .ok_or_else(|| corrupt("refund", &format!("order_no {order_no:?}")))?;
    let out_trade_no = r
        .opt_str("out_trade_no")?
        .map(|o| OutTradeNo::parse(o).map_err(|_| corrupt("refund", "out_trade_no")))
        .transpose()?;
    let out_refund_no = r
        .opt_str("out_refund_no")?
        .map(|o| OutRefundNo::parse(o).map_err(|_| corrupt("refund", "out_refund_no")))
        .transpose()?;
    let reason = r
        .opt_str("reason")?
        .map(|o| RefundReason::parse(o).map_err(|_| corrupt("refund", "reason")))
        .transpose()?;
    let status = r.str("status")?;
    let status = RefundStatus::parse(status)
        .ok_or_else(|| corrupt("refund", &format!("status {status:?}")))?;
    let source = r.str("source")?;
    let source = RefundSource::parse(source)
        .ok_or_else(|| corrupt("refund", &format!("source {source:?}")))?;
    let time = |name| r.opt_int(name).map(|t| t.map(Timestamp::from_unix));
    let refund = Refund {
        refund_no,
        merchant_id: MerchantId::new(r.str("merchant_id")?),
        order_no,
        out_trade_no,
        out_refund_no,
        amount: Fen::new(r.int("amount")?),
        status,
        reason,
        source,
        channel_refund_id: r.opt_str("channel_refund_id")?.map(str::to_string),
        created_at: Timestamp::from_unix(r.int("created_at")?),
        succeeded_at: time("succeeded_at")?,
        ended_at: time("ended_at")?,
        request_fingerprint: r.str("request_fingerprint")?.to_string(),
        webhook: webhook_state(&r)?,
    };
    Ok((refund, r.int(VERSION)?))
}

/// The refund number's pointer, `REFUNDNO#{refund_no}` / `REFUNDNO`: which order's partition
/// holds the refund. Written once, with the refund; it makes the number unique.
pub(super) fn refund_no_item(refund: &Refund) -> Item {
    let mut item = pointer_attributes(refund);
    item.insert(PK.into(), s(refund_no_pk(&refund.refund_no)));
    item.insert(SK.into(), s(REFUND_NO_SK));
    item.insert(ITEM_TYPE.into(), s("refund_no"));
    item
}

/// The `out_refund_no` guard, `ORF#{merchant}#{out_refund_no}` / `ORF`, if the refund has one:
/// a pointer like the number's, unique per merchant.
pub(super) fn refund_guard_item(refund: &Refund) -> Option<Item> {
    let out_refund_no = refund.out_refund_no.as_ref()?;
    let mut item = pointer_attributes(refund);
    item.insert(
        PK.into(),
        s(refund_guard_pk(&refund.merchant_id, out_refund_no)),
    );
    item.insert(SK.into(), s(REFUND_GUARD_SK));
    item.insert(ITEM_TYPE.into(), s("out_refund_no"));
    Some(item)
}

fn pointer_attributes(refund: &Refund) -> Item {
    HashMap::from([
        (REFUND_NO.to_string(), s(refund.refund_no.as_str())),
        (ORDER_NO.to_string(), s(refund.order_no.as_str())),
        ("merchant_id".to_string(), s(refund.merchant_id.as_str())),
    ])
}

/// Where a pointer (number or guard) says the refund is: its order and number.
pub(super) fn pointer_target(item: &Item) -> Result<(OrderNo, RefundNo), StoreError> {
    let r = Reader::new(item, "refund pointer");
    let order_no = r.str(ORDER_NO)?;
    let order_no = OrderNo::parse(order_no)
        .ok_or_else(|| corrupt("refund pointer", &format!("order_no {order_no:?}")))?;
    let refund_no = r.str(REFUND_NO)?;
    let refund_no = RefundNo::from_wechat(refund_no)
        .map_err(|_| corrupt("refund pointer", &format!("refund_no {refund_no:?}")))?;
    Ok((order_no, refund_no))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttemptResult, WebhookState};

    fn refund() -> Refund {
        let created_at = Timestamp::from_unix(crate::testing::START);
        Refund {
            refund_no: RefundNo::generate(created_at).unwrap(),
            merchant_id: MerchantId::new("m_1"),
            order_no: OrderNo::parse("FP20251221103000ABCDEF").unwrap(),
            out_trade_no: OutTradeNo::parse("shop-1").ok(),
            out_refund_no: OutRefundNo::parse("r-1|a*b@c").ok(),
            amount: Fen::new(250),
            status: RefundStatus::Succeeded,
            reason: RefundReason::parse("退货").ok(),
            source: RefundSource::Api,
            channel_refund_id: Some("50300002272022062121864292533".into()),
            created_at,
            succeeded_at: Some(created_at.plus_secs(60)),
            ended_at: None,
            request_fingerprint: "fp".into(),
            webhook: WebhookState::default().after_attempt(
                1,
                created_at.plus_secs(61),
                AttemptResult::Retrying {
                    next_at: created_at.plus_secs(80),
                },
            ),
        }
    }

    #[test]
    fn a_refund_item_reads_back_as_the_refund_and_its_version() {
        let refund = refund();
        let item = refund_item(&refund, 3);
        assert_eq!(refund_from_item(&item).unwrap(), (refund.clone(), 3));
        assert_eq!(
            item.get(PK),
            Some(&s("ORDER#FP20251221103000ABCDEF".to_string()))
        );
        assert_eq!(
            item.get(SK),
            Some(&s(format!("REFUND#{}", refund.refund_no)))
        );
        // In no index: only order records carry the list keys.
        assert!(!item.contains_key("list_pk") && !item.contains_key("status_list_pk"));

        let bare = Refund {
            out_trade_no: None,
            out_refund_no: None,
            reason: None,
            channel_refund_id: None,
            succeeded_at: None,
            status: RefundStatus::Processing,
            webhook: WebhookState::default(),
            ..refund
        };
        assert_eq!(refund_from_item(&refund_item(&bare, 0)).unwrap().0, bare);
    }

    #[test]
    fn refunds_made_outside_ferrypay_keep_wechats_number() {
        let external = Refund {
            refund_no: RefundNo::from_wechat("1217752501201407033233368018").unwrap(),
            source: RefundSource::Wechat,
            out_refund_no: None,
            ..refund()
        };
        let item = refund_item(&external, 0);
        assert_eq!(refund_from_item(&item).unwrap().0, external);
        let pointer = refund_no_item(&external);
        assert_eq!(
            pointer.get(PK),
            Some(&s("REFUNDNO#1217752501201407033233368018".to_string()))
        );
        assert_eq!(
            pointer_target(&pointer).unwrap(),
            (external.order_no.clone(), external.refund_no.clone())
        );
        assert!(refund_guard_item(&external).is_none());
    }

    #[test]
    fn the_out_refund_no_guard_is_per_merchant_and_points_at_the_refund() {
        let refund = refund();
        let guard = refund_guard_item(&refund).unwrap();
        assert_eq!(guard.get(PK), Some(&s("ORF#m_1#r-1|a*b@c".to_string())));
        assert_eq!(guard.get(SK), Some(&s("ORF".to_string())));
        assert_eq!(
            pointer_target(&guard).unwrap(),
            (refund.order_no.clone(), refund.refund_no.clone())
        );
    }

    #[test]
    fn a_corrupt_refund_item_names_the_attribute() {
        let mut item = refund_item(&refund(), 0);
        item.insert("status".into(), s("refunded"));
        let error = refund_from_item(&item).unwrap_err().to_string();
        assert!(error.contains("corrupt refund item: status"), "{error}");
    }
}
