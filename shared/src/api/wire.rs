//! The merchant API's answers as serde structs: the wire shape, converted from the domain
//! types. Field order is the JSON key order (serde_json keeps it), so a field moved here
//! changes every answer: the README and the merchants' parsers read them in this order.

use serde::Serialize;

use super::refunds::RefundWire;

use crate::{
    channel::JsapiPayParams,
    model::{
        Fen, Order, OrderNo, OrderSource, OrderStatus, OutTradeNo, PayType, Refund, Timestamp,
        WebhookAttempt, WebhookState, WebhookStatus,
    },
    service::{CreatedOrder, ListOrders, PaymentInfo},
    store::{OrderPage, PageStart},
};

fn time(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_beijing_string())
}

/// An order as merchants see it.
#[derive(Debug, Serialize)]
pub struct OrderWire<'a> {
    pub order_no: &'a OrderNo,
    pub out_trade_no: &'a Option<OutTradeNo>,
    pub amount: Fen,
    pub status: OrderStatus,
    pub description: &'a str,
    pub pay_type: PayType,
    pub attach: &'a Option<String>,
    pub transaction_id: &'a Option<String>,
    pub paid_at: Option<String>,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    /// `api`, `link` (unsigned: the payer could have changed the amount) or `signed_link`.
    pub source: OrderSource,
    /// The sum of the order's succeeded refunds (0 for none).
    pub refunded_amount: Fen,
    /// A query's order: its latest refunds, newest first (absent from lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunds: Option<Vec<RefundWire<'a>>>,
    /// `null` until the order is paid.
    pub webhook: Option<WebhookWire<'a>>,
}

impl<'a> From<&'a Order> for OrderWire<'a> {
    fn from(order: &'a Order) -> Self {
        OrderWire {
            order_no: &order.order_no,
            out_trade_no: &order.out_trade_no,
            amount: order.amount,
            status: order.status,
            description: &order.description,
            pay_type: order.pay_type,
            attach: &order.attach,
            transaction_id: &order.transaction_id,
            paid_at: time(order.paid_at),
            created_at: time(Some(order.created_at)),
            expires_at: time(Some(order.expires_at)),
            source: order.source,
            refunded_amount: order.refunds.refunded,
            refunds: None,
            webhook: WebhookWire::of(order),
        }
    }
}

impl<'a> OrderWire<'a> {
    /// A query's order: with its webhook's latest attempts and its latest refunds (newest
    /// first).
    pub fn for_query(
        order: &'a Order,
        attempts: &'a [WebhookAttempt],
        refunds: &'a [Refund],
    ) -> Self {
        let mut wire = OrderWire::from(order);
        if let Some(webhook) = &mut wire.webhook {
            webhook.log = Some(attempts.iter().map(AttemptWire::from).collect());
        }
        wire.refunds = Some(refunds.iter().map(RefundWire::from).collect());
        wire
    }
}

/// Where an order's webhook stands.
#[derive(Debug, Serialize)]
pub struct WebhookWire<'a> {
    pub status: WebhookStatus,
    pub attempts: u32,
    pub last_attempt_at: Option<String>,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    pub resends: u32,
    /// Only in a query's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<AttemptWire<'a>>>,
}

impl<'a> WebhookWire<'a> {
    /// `None` until the order is paid.
    pub fn of(order: &Order) -> Option<Self> {
        if !order.has_webhook() {
            return None;
        }
        let w: &WebhookState = &order.webhook;
        Some(WebhookWire {
            status: w.status,
            attempts: w.attempts,
            last_attempt_at: time(w.last_attempt_at),
            next_attempt_at: time(w.next_attempt_at),
            delivered_at: time(w.delivered_at),
            resends: w.generation,
            log: None,
        })
    }
}

/// One delivery attempt.
#[derive(Debug, Serialize)]
pub struct AttemptWire<'a> {
    pub attempt: u32,
    pub resend: u32,
    pub at: Option<String>,
    pub url: &'a Option<String>,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub response: &'a Option<String>,
    pub error: &'a Option<String>,
    pub delivered: bool,
}

impl<'a> From<&'a WebhookAttempt> for AttemptWire<'a> {
    fn from(a: &'a WebhookAttempt) -> Self {
        AttemptWire {
            attempt: a.attempt,
            resend: a.generation,
            at: time(Some(a.at)),
            url: &a.url,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            response: &a.response,
            error: &a.error,
            delivered: a.delivered,
        }
    }
}

/// `{"success": true, "order": ...}` (query, close).
#[derive(Debug, Serialize)]
pub struct OrderAnswer<'a> {
    pub success: bool,
    pub order: OrderWire<'a>,
}

impl<'a> From<OrderWire<'a>> for OrderAnswer<'a> {
    fn from(order: OrderWire<'a>) -> Self {
        OrderAnswer {
            success: true,
            order,
        }
    }
}

/// The answer to a resend: the order's number and its webhook's new state.
#[derive(Debug, Serialize)]
pub struct ResendAnswer<'a> {
    pub success: bool,
    pub order_no: &'a OrderNo,
    pub webhook: Option<WebhookWire<'a>>,
}

impl<'a> From<&'a Order> for ResendAnswer<'a> {
    fn from(order: &'a Order) -> Self {
        ResendAnswer {
            success: true,
            order_no: &order.order_no,
            webhook: WebhookWire::of(order),
        }
    }
}

/// The answer to a create: the order's summary, then what the payer needs to pay.
#[derive(Debug, Serialize)]
pub struct CreatedAnswer<'a> {
    pub success: bool,
    pub order_no: &'a OrderNo,
    pub out_trade_no: &'a Option<OutTradeNo>,
    pub amount: Fen,
    pub pay_type: PayType,
    pub status: OrderStatus,
    pub expires_at: Option<String>,
    #[serde(flatten)]
    pub payment: PaymentWire<'a>,
}

/// The payment fields of a create's answer, by pay type.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PaymentWire<'a> {
    Native { code_url: &'a str, qrcode: &'a str },
    Jsapi { jsapi: &'a JsapiPayParams },
    H5 { h5_url: &'a str },
}

impl<'a> From<&'a PaymentInfo> for PaymentWire<'a> {
    fn from(payment: &'a PaymentInfo) -> Self {
        match payment {
            PaymentInfo::Native { code_url, qrcode } => PaymentWire::Native { code_url, qrcode },
            PaymentInfo::Jsapi(jsapi) => PaymentWire::Jsapi { jsapi },
            PaymentInfo::H5 { h5_url } => PaymentWire::H5 { h5_url },
        }
    }
}

impl<'a> From<&'a CreatedOrder> for CreatedAnswer<'a> {
    fn from(created: &'a CreatedOrder) -> Self {
        let order = &created.order;
        CreatedAnswer {
            success: true,
            order_no: &order.order_no,
            out_trade_no: &order.out_trade_no,
            amount: order.amount,
            pay_type: order.pay_type,
            status: order.status,
            expires_at: time(Some(order.expires_at)),
            payment: PaymentWire::from(&created.payment),
        }
    }
}

/// One page of a merchant's orders.
#[derive(Debug, Serialize)]
pub struct ListAnswer<'a> {
    pub success: bool,
    pub orders: Vec<OrderWire<'a>>,
    pub total: u64,
    /// `null` for a page reached by cursor.
    pub page: Option<u32>,
    pub per_page: u32,
    pub pages: u64,
    pub next_cursor: Option<String>,
}

impl<'a> ListAnswer<'a> {
    pub fn new(page: &'a OrderPage, request: &ListOrders) -> Self {
        ListAnswer {
            success: true,
            orders: page.orders.iter().map(OrderWire::from).collect(),
            total: page.total,
            page: match request.start {
                PageStart::Page(n) => Some(n),
                PageStart::After(_) => None,
            },
            per_page: request.per_page,
            pages: page.total.div_ceil(u64::from(request.per_page)),
            next_cursor: page.next_after.as_ref().map(super::orders::encode_cursor),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every answer is compared with the `json!` it replaced, byte for byte.
    use serde_json::{json, Value};

    use super::*;
    use crate::model::{MerchantId, WebhookAttempt};

    // The rendering as it was, kept to prove the wire types change no byte.
    fn legacy_time(t: Option<Timestamp>) -> Value {
        t.map_or(Value::Null, |t| Value::String(t.to_beijing_string()))
    }

    /// An order as merchants see it.
    fn legacy_order_json(order: &Order) -> Value {
        json!({
            "order_no": order.order_no,
            "out_trade_no": order.out_trade_no,
            "amount": order.amount,
            "status": order.status,
            "description": order.description,
            "pay_type": order.pay_type,
            "attach": order.attach,
            "transaction_id": order.transaction_id,
            "paid_at": legacy_time(order.paid_at),
            "created_at": legacy_time(Some(order.created_at)),
            "expires_at": legacy_time(Some(order.expires_at)),
            "source": order.source.as_str(),
            "refunded_amount": order.refunds.refunded,
            "webhook": legacy_webhook_json(order),
        })
    }

    /// Where the order's webhook stands; `null` until the order is paid.
    fn legacy_webhook_json(order: &Order) -> Value {
        if !order.has_webhook() {
            return Value::Null;
        }
        let w = &order.webhook;
        json!({
            "status": w.status,
            "attempts": w.attempts,
            "last_attempt_at": legacy_time(w.last_attempt_at),
            "next_attempt_at": legacy_time(w.next_attempt_at),
            "delivered_at": legacy_time(w.delivered_at),
            "resends": w.generation,
        })
    }

    /// A query's order: with its webhook's latest attempts (newest first) and, before the
    /// webhook, its refunds (none here).
    fn legacy_order_with_attempts_json(order: &Order, attempts: &[WebhookAttempt]) -> Value {
        let mut body = serde_json::Map::new();
        for (key, value) in legacy_order_json(order).as_object().unwrap().clone() {
            if key == "webhook" {
                body.insert("refunds".into(), json!([]));
            }
            body.insert(key, value);
        }
        if let Some(Value::Object(webhook)) = body.get_mut("webhook") {
            let log: Vec<Value> = attempts.iter().map(legacy_attempt_json).collect();
            webhook.insert("log".into(), Value::Array(log));
        }
        Value::Object(body)
    }

    fn legacy_attempt_json(a: &WebhookAttempt) -> Value {
        json!({
            "attempt": a.attempt,
            "resend": a.generation,
            "at": legacy_time(Some(a.at)),
            "url": a.url,
            "status_code": a.status_code,
            "latency_ms": a.latency_ms,
            "response": a.response,
            "error": a.error,
            "delivered": a.delivered,
        })
    }

    fn legacy_created_json(created: &CreatedOrder) -> Value {
        let order = &created.order;
        let mut body = json!({
            "success": true,
            "order_no": order.order_no,
            "out_trade_no": order.out_trade_no,
            "amount": order.amount,
            "pay_type": order.pay_type,
            "status": order.status,
            "expires_at": legacy_time(Some(order.expires_at)),
        });
        if let Value::Object(map) = &mut body {
            match &created.payment {
                PaymentInfo::Native { code_url, qrcode } => {
                    map.insert("code_url".into(), json!(code_url));
                    map.insert("qrcode".into(), json!(qrcode));
                }
                PaymentInfo::Jsapi(params) => {
                    map.insert("jsapi".into(), json!(params));
                }
                PaymentInfo::H5 { h5_url } => {
                    map.insert("h5_url".into(), json!(h5_url));
                }
            }
        }
        body
    }

    fn legacy_list_json(page: &OrderPage, request: &ListOrders) -> Value {
        let pages = page.total.div_ceil(u64::from(request.per_page));
        let page_no = match request.start {
            PageStart::Page(n) => json!(n),
            PageStart::After(_) => Value::Null,
        };
        json!({
            "success": true,
            "orders": page.orders.iter().map(legacy_order_json).collect::<Vec<_>>(),
            "total": page.total,
            "page": page_no,
            "per_page": request.per_page,
            "pages": pages,
            "next_cursor": page.next_after.as_ref().map(crate::api::orders::encode_cursor),
        })
    }

    const AT: i64 = crate::testing::START;

    fn order(status: OrderStatus) -> Order {
        let created_at = Timestamp::from_unix(AT);
        Order {
            order_no: OrderNo::parse("FP20251221103000ABCDEF").unwrap(),
            merchant_id: MerchantId::new("mch_0123456789abcdef"),
            out_trade_no: OutTradeNo::parse("shop-42").ok(),
            amount: Fen::new(1234),
            description: "咖啡 \"Latte\"".into(),
            pay_type: PayType::Native,
            source: OrderSource::SignedLink,
            openid: None,
            client_ip: None,
            attach: Some("a&b<c>".into()),
            notify_url: None,
            status,
            credential: None,
            transaction_id: (status == OrderStatus::Paid).then(|| "4200000001".into()),
            paid_at: (status == OrderStatus::Paid).then(|| created_at.plus_secs(30)),
            closed_at: None,
            webhook: WebhookState {
                generation: 1,
                queued_at: Some(created_at.plus_secs(31)),
                status: WebhookStatus::Failing,
                attempts: 2,
                last_attempt_at: Some(created_at.plus_secs(40)),
                next_attempt_at: Some(created_at.plus_secs(100)),
                delivered_at: None,
            },
            created_at,
            expires_at: created_at.plus_secs(7200),
            request_fingerprint: String::new(),
            refunds: Default::default(),
        }
    }

    fn attempt(n: u32, delivered: bool) -> WebhookAttempt {
        WebhookAttempt {
            order_no: OrderNo::parse("FP20251221103000ABCDEF").unwrap(),
            event_id: "evt".into(),
            generation: 1,
            attempt: n,
            at: Timestamp::from_unix(AT + 40),
            url: Some("https://shop.example/n".into()),
            status_code: delivered.then_some(200),
            latency_ms: 12,
            response: Some("ok".into()),
            error: (!delivered).then(|| "timeout".into()),
            delivered,
        }
    }

    fn same<T: Serialize>(wire: &T, legacy: Value) {
        assert_eq!(serde_json::to_string(wire).unwrap(), legacy.to_string());
    }

    #[test]
    fn orders_queries_closes_and_resends_render_as_before() {
        for status in OrderStatus::ALL {
            let order = order(status);
            same(
                &OrderAnswer::from(OrderWire::from(&order)),
                json!({"success": true, "order": legacy_order_json(&order)}),
            );
            let attempts = [attempt(2, false), attempt(1, true)];
            same(
                &OrderAnswer::from(OrderWire::for_query(&order, &attempts, &[])),
                json!({"success": true, "order": legacy_order_with_attempts_json(&order, &attempts)}),
            );
            same(
                &OrderAnswer::from(OrderWire::for_query(&order, &[], &[])),
                json!({"success": true, "order": legacy_order_with_attempts_json(&order, &[])}),
            );
            same(
                &ResendAnswer::from(&order),
                json!({"success": true, "order_no": order.order_no, "webhook": legacy_webhook_json(&order)}),
            );
        }
        let mut bare = order(OrderStatus::Pending);
        bare.out_trade_no = None;
        bare.attach = None;
        same(&OrderWire::from(&bare), legacy_order_json(&bare));
        for source in OrderSource::ALL {
            bare.source = source;
            let wire = serde_json::to_value(OrderWire::from(&bare)).unwrap();
            assert_eq!(wire["source"], source.as_str());
        }
    }

    #[test]
    fn creates_render_as_before_for_every_pay_type() {
        let payments = [
            PaymentInfo::Native {
                code_url: "weixin://wxpay/bizpayurl?pr=abc".into(),
                qrcode: "data:image/png;base64,AAAA".into(),
            },
            PaymentInfo::Jsapi(JsapiPayParams {
                app_id: "wx1".into(),
                time_stamp: "1766284200".into(),
                nonce_str: "n".into(),
                package: "prepay_id=wx2".into(),
                sign_type: "RSA".into(),
                pay_sign: "sig".into(),
            }),
            PaymentInfo::H5 {
                h5_url: "https://wx.tenpay.com/h5".into(),
            },
        ];
        for payment in payments {
            let created = CreatedOrder {
                order: order(OrderStatus::Pending),
                payment,
            };
            same(
                &CreatedAnswer::from(&created),
                legacy_created_json(&created),
            );
        }
    }

    #[test]
    fn lists_render_as_before_by_page_and_by_cursor() {
        let page = OrderPage {
            orders: vec![order(OrderStatus::Paid), order(OrderStatus::Closed)],
            total: 41,
            next_after: OrderNo::parse("FP20251221103000ABCDEF"),
        };
        let starts = [
            PageStart::Page(2),
            PageStart::After(OrderNo::parse("FP20251221103000ZZZZZZ").unwrap()),
        ];
        for start in starts {
            let request = ListOrders {
                status: None,
                start,
                per_page: 20,
            };
            same(
                &ListAnswer::new(&page, &request),
                legacy_list_json(&page, &request),
            );
        }
        let empty = OrderPage {
            orders: vec![],
            total: 0,
            next_after: None,
        };
        let request = ListOrders {
            status: Some(OrderStatus::Pending),
            start: PageStart::Page(1),
            per_page: 100,
        };
        same(
            &ListAnswer::new(&empty, &request),
            legacy_list_json(&empty, &request),
        );
    }
}
