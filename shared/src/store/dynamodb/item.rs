//! Items to and from the model: every attribute ferrypay writes for orders and attempts, and
//! typed reads of items (merchants' items are in `merchant_item`).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::schema::{
    attempt_sk, guard_pk, merchant_pk, order_pk, status_list_pk, COMMITTED, GUARD_SK, ITEM_TYPE,
    LIST_PK, ORDER_NO, ORDER_SK, PK, PURGE_AT, REFUNDED, REFUND_COUNT, RESERVED, SK,
    STATUS_LIST_PK, VERSION,
};
use crate::{
    model::{
        Fen, MerchantId, Order, OrderNo, OrderSource, OrderStatus, OutTradeNo, PayCredential,
        PayType, RefundTally, Timestamp, WebhookAttempt, WebhookState, WebhookStatus,
    },
    store::{StoreError, WEBHOOK_ATTEMPT_RETENTION_DAYS},
};

/// One DynamoDB item: attribute name to value.
pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn insert_opt(item: &mut Item, name: &str, value: Option<AttributeValue>) {
    if let Some(value) = value {
        item.insert(name.to_string(), value);
    }
}

/// The order's own attributes (no keys).
fn order_attributes(order: &Order, version: i64) -> Item {
    // Destructured so that a new field fails to compile here until it is stored.
    let Order {
        order_no,
        merchant_id,
        out_trade_no,
        amount,
        description,
        pay_type,
        source,
        openid,
        client_ip,
        attach,
        notify_url,
        status,
        credential,
        transaction_id,
        paid_at,
        closed_at,
        webhook,
        created_at,
        expires_at,
        request_fingerprint,
        refunds,
    } = order;
    let mut item = HashMap::from([
        (ORDER_NO.to_string(), s(order_no.as_str())),
        ("merchant_id".to_string(), s(merchant_id.as_str())),
        ("amount".to_string(), n(amount.get())),
        ("description".to_string(), s(description.as_str())),
        ("pay_type".to_string(), s(pay_type.as_str())),
        ("source".to_string(), s(source.as_str())),
        ("status".to_string(), s(status.as_str())),
        ("created_at".to_string(), n(created_at.unix())),
        ("expires_at".to_string(), n(expires_at.unix())),
        (
            "request_fingerprint".to_string(),
            s(request_fingerprint.as_str()),
        ),
        (VERSION.to_string(), n(version)),
    ]);
    insert_webhook_state(&mut item, webhook);
    item.extend(tally_attributes(refunds));
    insert_opt(
        &mut item,
        "out_trade_no",
        out_trade_no.as_ref().map(|o| s(o.as_str())),
    );
    insert_opt(&mut item, "openid", openid.as_deref().map(s));
    insert_opt(&mut item, "client_ip", client_ip.as_deref().map(s));
    insert_opt(&mut item, "attach", attach.as_deref().map(s));
    insert_opt(&mut item, "notify_url", notify_url.as_deref().map(s));
    insert_opt(
        &mut item,
        "credential",
        credential.as_ref().map(credential_value),
    );
    insert_opt(
        &mut item,
        "transaction_id",
        transaction_id.as_deref().map(s),
    );
    insert_opt(&mut item, "paid_at", paid_at.map(|t| n(t.unix())));
    insert_opt(&mut item, "closed_at", closed_at.map(|t| n(t.unix())));
    item
}

/// A webhook's delivery state as `webhook_*` attributes, the same on order and refund items.
pub(super) fn insert_webhook_state(item: &mut Item, webhook: &WebhookState) {
    // Destructured so that a new field fails to compile here until it is stored.
    let WebhookState {
        generation,
        queued_at,
        status,
        attempts,
        last_attempt_at,
        next_attempt_at,
        delivered_at,
    } = webhook;
    item.insert("webhook_generation".into(), n(i64::from(*generation)));
    item.insert("webhook_status".into(), s(status.as_str()));
    item.insert("webhook_attempts".into(), n(i64::from(*attempts)));
    for (name, at) in [
        ("webhook_queued_at", queued_at),
        ("webhook_last_attempt_at", last_attempt_at),
        ("webhook_next_attempt_at", next_attempt_at),
        ("webhook_delivered_at", delivered_at),
    ] {
        insert_opt(item, name, at.map(|t| n(t.unix())));
    }
}

/// The delivery state [`insert_webhook_state`] wrote.
pub(super) fn webhook_state(r: &Reader<'_>) -> Result<WebhookState, StoreError> {
    let status = r.str("webhook_status")?;
    let status = WebhookStatus::parse(status)
        .ok_or_else(|| corrupt(r.what, &format!("webhook_status {status:?}")))?;
    let time = |name| r.opt_int(name).map(|t| t.map(Timestamp::from_unix));
    Ok(WebhookState {
        generation: r.u32("webhook_generation")?,
        queued_at: time("webhook_queued_at")?,
        status,
        attempts: r.u32("webhook_attempts")?,
        last_attempt_at: time("webhook_last_attempt_at")?,
        next_attempt_at: time("webhook_next_attempt_at")?,
        delivered_at: time("webhook_delivered_at")?,
    })
}

/// An order's refund tally: `refunded_amount`, `reserved_amount`, `refund_count`, and
/// `committed_amount` (their sum, which condition expressions, having no arithmetic, compare).
fn tally_attributes(tally: &RefundTally) -> [(String, AttributeValue); 4] {
    [
        (REFUNDED.to_string(), n(tally.refunded.get())),
        (RESERVED.to_string(), n(tally.reserved.get())),
        (REFUND_COUNT.to_string(), n(i64::from(tally.count))),
        (COMMITTED.to_string(), n(tally.committed().get())),
    ]
}

/// An order's refund tally; each attribute absent (orders stored before refunds) is 0.
fn tally_from(r: &Reader<'_>) -> Result<RefundTally, StoreError> {
    let count = r.opt_int(REFUND_COUNT)?.unwrap_or(0);
    let tally = RefundTally {
        refunded: Fen::new(r.opt_int(REFUNDED)?.unwrap_or(0)),
        reserved: Fen::new(r.opt_int(RESERVED)?.unwrap_or(0)),
        count: u32::try_from(count).map_err(|_| corrupt(r.what, "refund_count out of range"))?,
    };
    if let Some(committed) = r.opt_int(COMMITTED)? {
        if committed != tally.committed().get() {
            return Err(corrupt(
                r.what,
                "committed_amount is not refunded + reserved",
            ));
        }
    }
    Ok(tally)
}

/// The order record: keyed by order number, listed in both indexes.
pub(super) fn order_record(order: &Order, version: i64) -> Item {
    let mut item = order_attributes(order, version);
    item.insert(PK.into(), s(order_pk(&order.order_no)));
    item.insert(SK.into(), s(ORDER_SK));
    item.insert(ITEM_TYPE.into(), s("order"));
    item.insert(LIST_PK.into(), s(merchant_pk(&order.merchant_id)));
    item.insert(
        STATUS_LIST_PK.into(),
        s(status_list_pk(&order.merchant_id, order.status)),
    );
    item
}

/// The `out_trade_no` guard, a full copy of the order (in no index), if the order has one.
pub(super) fn guard_item(order: &Order, version: i64) -> Option<Item> {
    let out_trade_no = order.out_trade_no.as_ref()?;
    let mut item = order_attributes(order, version);
    item.insert(PK.into(), s(guard_pk(&order.merchant_id, out_trade_no)));
    item.insert(SK.into(), s(GUARD_SK));
    item.insert(ITEM_TYPE.into(), s("out_trade_no"));
    Some(item)
}

pub(super) fn attempt_item(attempt: &WebhookAttempt) -> Item {
    // Destructured so that a new field fails to compile here until it is stored.
    let WebhookAttempt {
        order_no,
        event_id,
        generation,
        attempt: number,
        at,
        url,
        status_code,
        latency_ms,
        response,
        error,
        delivered,
    } = attempt;
    let purge_at = at.plus_secs(WEBHOOK_ATTEMPT_RETENTION_DAYS * 86_400);
    let mut item = HashMap::from([
        (PK.to_string(), s(order_pk(order_no))),
        (SK.to_string(), s(attempt_sk(*generation, *number))),
        (ITEM_TYPE.to_string(), s("webhook_attempt")),
        (ORDER_NO.to_string(), s(order_no.as_str())),
        ("event_id".to_string(), s(event_id.as_str())),
        ("generation".to_string(), n(i64::from(*generation))),
        ("attempt".to_string(), n(i64::from(*number))),
        ("at".to_string(), n(at.unix())),
        (
            "latency_ms".to_string(),
            n(i64::try_from(*latency_ms).unwrap_or(i64::MAX)),
        ),
        ("delivered".to_string(), AttributeValue::Bool(*delivered)),
        (PURGE_AT.to_string(), n(purge_at.unix())),
    ]);
    insert_opt(&mut item, "url", url.as_deref().map(s));
    insert_opt(
        &mut item,
        "status_code",
        status_code.map(|c| n(i64::from(c))),
    );
    insert_opt(&mut item, "response", response.as_deref().map(s));
    insert_opt(&mut item, "error", error.as_deref().map(s));
    item
}

pub(super) fn attempt_from_item(item: &Item) -> Result<WebhookAttempt, StoreError> {
    let r = Reader::new(item, "webhook attempt");
    let order_no = r.str(ORDER_NO)?;
    let order_no = OrderNo::parse(order_no)
        .ok_or_else(|| corrupt("webhook attempt", &format!("order_no {order_no:?}")))?;
    let status_code = r
        .opt_int("status_code")?
        .map(|c| u16::try_from(c).map_err(|_| corrupt("webhook attempt", "status_code")))
        .transpose()?;
    let delivered = match item.get("delivered") {
        Some(AttributeValue::Bool(b)) => *b,
        _ => return Err(corrupt("webhook attempt", "delivered is not a boolean")),
    };
    Ok(WebhookAttempt {
        order_no,
        event_id: r.str("event_id")?.to_string(),
        generation: r.u32("generation")?,
        attempt: r.u32("attempt")?,
        at: Timestamp::from_unix(r.int("at")?),
        url: r.opt_str("url")?.map(str::to_string),
        status_code,
        latency_ms: r.opt_u64("latency_ms")?.unwrap_or(0),
        response: r.opt_str("response")?.map(str::to_string),
        error: r.opt_str("error")?.map(str::to_string),
        delivered,
    })
}

fn credential_value(credential: &PayCredential) -> AttributeValue {
    let (kind, field, value) = match credential {
        PayCredential::Native { code_url } => ("native", "code_url", code_url),
        PayCredential::Jsapi { prepay_id } => ("jsapi", "prepay_id", prepay_id),
        PayCredential::H5 { h5_url } => ("h5", "h5_url", h5_url),
    };
    AttributeValue::M(HashMap::from([
        ("kind".to_string(), s(kind)),
        (field.to_string(), s(value.as_str())),
    ]))
}

fn credential_from(value: &AttributeValue) -> Result<PayCredential, StoreError> {
    let map = value
        .as_m()
        .map_err(|_| corrupt("order", "credential is not a map"))?;
    let r = Reader::new(map, "order credential");
    Ok(match r.str("kind")? {
        "native" => PayCredential::Native {
            code_url: r.str("code_url")?.to_string(),
        },
        "jsapi" => PayCredential::Jsapi {
            prepay_id: r.str("prepay_id")?.to_string(),
        },
        "h5" => PayCredential::H5 {
            h5_url: r.str("h5_url")?.to_string(),
        },
        other => return Err(corrupt("order", &format!("credential kind {other:?}"))),
    })
}

/// An order (from its record or its guard copy) and its version.
pub(super) fn order_from_item(item: &Item) -> Result<(Order, i64), StoreError> {
    let r = Reader::new(item, "order");
    let order_no = r.str(ORDER_NO)?;
    let order_no = OrderNo::parse(order_no)
        .ok_or_else(|| corrupt("order", &format!("order_no {order_no:?}")))?;
    let out_trade_no = r
        .opt_str("out_trade_no")?
        .map(|o| OutTradeNo::parse(o).map_err(|_| corrupt("order", &format!("out_trade_no {o:?}"))))
        .transpose()?;
    let pay_type = r.str("pay_type")?;
    let pay_type = PayType::parse(pay_type)
        .ok_or_else(|| corrupt("order", &format!("pay_type {pay_type:?}")))?;
    // Orders stored before sources were recorded have none: they read back as `api`.
    let source = match r.opt_str("source")? {
        None => OrderSource::Api,
        Some(source) => OrderSource::parse(source)
            .ok_or_else(|| corrupt("order", &format!("source {source:?}")))?,
    };
    let status = r.str("status")?;
    let status = OrderStatus::parse(status)
        .ok_or_else(|| corrupt("order", &format!("status {status:?}")))?;
    let webhook = webhook_state(&r)?;
    let order = Order {
        order_no,
        merchant_id: MerchantId::new(r.str("merchant_id")?),
        out_trade_no,
        amount: Fen::new(r.int("amount")?),
        description: r.str("description")?.to_string(),
        pay_type,
        source,
        openid: r.opt_str("openid")?.map(str::to_string),
        client_ip: r.opt_str("client_ip")?.map(str::to_string),
        attach: r.opt_str("attach")?.map(str::to_string),
        notify_url: r.opt_str("notify_url")?.map(str::to_string),
        status,
        credential: item.get("credential").map(credential_from).transpose()?,
        transaction_id: r.opt_str("transaction_id")?.map(str::to_string),
        paid_at: r.opt_int("paid_at")?.map(Timestamp::from_unix),
        closed_at: r.opt_int("closed_at")?.map(Timestamp::from_unix),
        webhook,
        created_at: Timestamp::from_unix(r.int("created_at")?),
        expires_at: Timestamp::from_unix(r.int("expires_at")?),
        request_fingerprint: r.str("request_fingerprint")?.to_string(),
        refunds: tally_from(&r)?,
    };
    Ok((order, r.int(VERSION)?))
}

/// Typed reads from an item, with errors that say which item and attribute is wrong.
pub(super) struct Reader<'a> {
    item: &'a Item,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(item: &'a Item, what: &'static str) -> Self {
        Reader { item, what }
    }

    pub(super) fn opt_str(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(value)) => Ok(Some(value.as_str())),
            Some(_) => Err(corrupt(self.what, &format!("{name} is not a string"))),
        }
    }

    pub(super) fn str(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_str(name)?
            .ok_or_else(|| corrupt(self.what, &format!("{name} missing")))
    }

    pub(super) fn opt_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(value)) => value
                .parse()
                .map(Some)
                .map_err(|_| corrupt(self.what, &format!("{name} is not an integer"))),
            Some(_) => Err(corrupt(self.what, &format!("{name} is not a number"))),
        }
    }

    pub(super) fn opt_bool(&self, name: &str) -> Result<Option<bool>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::Bool(value)) => Ok(Some(*value)),
            Some(_) => Err(corrupt(self.what, &format!("{name} is not a boolean"))),
        }
    }

    /// A list of strings (`L` of `S`).
    pub(super) fn opt_str_list(&self, name: &str) -> Result<Option<Vec<String>>, StoreError> {
        let not_strings = || corrupt(self.what, &format!("{name} is not a list of strings"));
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::L(values)) => values
                .iter()
                .map(|value| match value {
                    AttributeValue::S(value) => Ok(value.clone()),
                    _ => Err(not_strings()),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(not_strings()),
        }
    }

    pub(super) fn int(&self, name: &str) -> Result<i64, StoreError> {
        self.opt_int(name)?
            .ok_or_else(|| corrupt(self.what, &format!("{name} missing")))
    }

    pub(super) fn u32(&self, name: &str) -> Result<u32, StoreError> {
        u32::try_from(self.int(name)?)
            .map_err(|_| corrupt(self.what, &format!("{name} out of range")))
    }

    pub(super) fn opt_u64(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.opt_int(name)?
            .map(|v| {
                u64::try_from(v).map_err(|_| corrupt(self.what, &format!("{name} is negative")))
            })
            .transpose()
    }
}

/// An item that does not read as the model says (written by hand, or by a bug). The detail
/// names the attribute, never its value when that could be a secret.
pub(super) fn corrupt(what: &str, detail: &str) -> StoreError {
    StoreError::new(format!("corrupt {what} item: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pending_order;

    fn paid_order() -> Order {
        let mut order = pending_order(
            OrderNo::parse("FP20251221103000ABCDEF").unwrap(),
            MerchantId::new("m_1"),
            1234,
            Timestamp::from_unix(crate::testing::START),
        );
        order.status = OrderStatus::Paid;
        order.credential = Some(PayCredential::Native {
            code_url: "weixin://wxpay/bizpayurl?pr=abc".into(),
        });
        order.transaction_id = Some("4200000001".into());
        order.paid_at = Some(Timestamp::from_unix(1_766_284_300));
        order.webhook.generation = 2;
        order
    }

    #[test]
    fn an_order_record_reads_back_as_the_order_and_its_version() {
        let order = paid_order();
        let item = order_record(&order, 7);
        assert_eq!(order_from_item(&item).unwrap(), (order.clone(), 7));
        // Listed in both indexes: the merchant's, and the merchant's for its status.
        assert_eq!(item.get(LIST_PK), Some(&s("MERCHANT#m_1")));
        assert_eq!(item.get(STATUS_LIST_PK), Some(&s("MERCHANT#m_1#paid")));
    }

    #[test]
    fn an_orders_source_is_stored_and_reads_back_as_api_when_absent() {
        for source in OrderSource::ALL {
            let mut order = paid_order();
            order.source = source;
            order.out_trade_no = OutTradeNo::parse("shop-1").ok();
            let record = order_record(&order, 1);
            let guard = guard_item(&order, 1).unwrap();
            for item in [&record, &guard] {
                assert_eq!(order_from_item(item).unwrap().0.source, source);
                assert_eq!(item.get("source"), Some(&s(source.as_str())));
            }
        }
        // An item written before sources existed has no attribute: it is an API order.
        let mut old = order_record(&paid_order(), 0);
        old.remove("source");
        assert_eq!(order_from_item(&old).unwrap().0.source, OrderSource::Api);
        let mut corrupt = order_record(&paid_order(), 0);
        corrupt.insert("source".into(), s("email"));
        let error = order_from_item(&corrupt).unwrap_err().to_string();
        assert!(error.contains("corrupt order item: source"), "{error}");
    }

    #[test]
    fn an_orders_refund_tally_is_stored_and_reads_as_zero_when_absent() {
        let mut order = paid_order();
        order.refunds = RefundTally {
            refunded: Fen::new(300),
            reserved: Fen::new(34),
            count: 3,
        };
        let item = order_record(&order, 2);
        assert_eq!(item.get("refunded_amount"), Some(&n(300)));
        assert_eq!(item.get("reserved_amount"), Some(&n(34)));
        assert_eq!(item.get("refund_count"), Some(&n(3)));
        assert_eq!(item.get("committed_amount"), Some(&n(334)));
        assert_eq!(order_from_item(&item).unwrap().0, order);

        // An item written before refunds existed has none of them: nothing refunded.
        let mut old = item.clone();
        for name in [
            "refunded_amount",
            "reserved_amount",
            "refund_count",
            "committed_amount",
        ] {
            old.remove(name);
        }
        assert_eq!(
            order_from_item(&old).unwrap().0.refunds,
            RefundTally::default()
        );

        // A sum that does not add up is refused, not believed.
        let mut corrupt = item;
        corrupt.insert("committed_amount".into(), n(1));
        let error = order_from_item(&corrupt).unwrap_err().to_string();
        assert!(error.contains("committed_amount"), "{error}");
    }

    #[test]
    fn an_order_without_out_trade_no_has_no_guard_item() {
        assert!(guard_item(&paid_order(), 0).is_none());
    }

    #[test]
    fn a_corrupt_order_item_names_the_attribute() {
        let mut item = order_record(&paid_order(), 0);
        item.insert("status".into(), s("refunded?"));
        let error = order_from_item(&item).unwrap_err().to_string();
        assert!(error.contains("corrupt order item: status"), "{error}");
    }
}
