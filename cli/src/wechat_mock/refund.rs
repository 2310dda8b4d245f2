//! Domestic refunds as WeChat Pay keeps them: `POST /v3/refund/domestic/refunds` and
//! `GET /v3/refund/domestic/refunds/{out_refund_no}`, with WeChat's checks and error codes
//! (the refunds reference, §1.1-§1.6), and the `REFUND.*` notifications of final states.
//!
//! Create, in this order: JSON and parameter shapes (400 `PARAM_ERROR`: exactly one of
//! `out_trade_no`/`transaction_id` is not enforced, at least one is; `out_refund_no` 1..=64 of
//! `[0-9A-Za-z_-|*@]`; `reason` <= 80 bytes; `notify_url` http(s), no query, <= 256;
//! `amount.refund` > 0, `amount.total` > 0, `currency` `CNY`); the order (404
//! `RESOURCE_NOT_EXISTS` when unknown or unpaid: "未支付的订单不能发起退款"); a known
//! `out_refund_no`: with the same order and amounts the same refund again (200, its current
//! state; idempotent), otherwise 400 `INVALID_REQUEST` "订单金额或退款金额与之前请求不一致" (v2's
//! wording: v3's is unverified); `amount.total` not the order's (400 `INVALID_REQUEST`
//! "您的请求参数与订单信息不一致"); paid more than 365 days ago, 50 refunds already, more than
//! the refundable rest (400 `INVALID_REQUEST`); a refund on the same order less than
//! `refund_min_interval` ago (429 `FREQUENCY_LIMITED`; off unless configured). Then a new
//! refund, `PROCESSING`, answered as a Refund object.
//!
//! A refund leaves `PROCESSING` on `POST /mock/refund` or, when configured
//! ([`super::MockConfig::refund_auto`] or `POST /mock/refund/auto`), by itself after a delay; each final
//! state is notified (encrypted with associated data `refund`, signed, retried like payment
//! notifications). `ABNORMAL` may still become `SUCCESS` (an operator resolved it). The order's
//! `trade_state` is `REFUND` while any of its refunds is not `CLOSED` (WeChat shows `REFUND`
//! after partial refunds too); a `CLOSED` refund gives its amount back to the refundable rest,
//! an `ABNORMAL` one does not (the money left the merchant).

use std::{sync::Arc, time::Duration};

use ferrypay::model::Timestamp;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Answer, WechatMock};

/// A refund as the mock keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MockRefund {
    pub(super) out_refund_no: String,
    pub(super) refund_id: String,
    pub(super) out_trade_no: String,
    pub(super) transaction_id: String,
    pub(super) amount: i64,
    pub(super) total: i64,
    pub(super) notify_url: String,
    pub(super) status: &'static str,
    pub(super) create_time: Timestamp,
    pub(super) success_time: Option<Timestamp>,
}

/// Refunds leave `PROCESSING` by themselves after `after`, to `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundAuto {
    pub after: Duration,
    /// `SUCCESS`, `ABNORMAL` or `CLOSED`.
    pub status: String,
}

/// `POST /mock/refund`: a refund reaches a state, and the notification goes out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundControl {
    pub out_refund_no: String,
    /// `SUCCESS`, `ABNORMAL` or `CLOSED`.
    pub status: String,
    #[serde(default = "yes")]
    pub notify: bool,
    #[serde(default)]
    pub duplicates: u32,
    #[serde(default)]
    pub tamper_signature: bool,
    #[serde(default)]
    pub stale_seconds: i64,
}

/// `POST /mock/refund/external`: a refund made in the merchant platform, outside ferrypay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalRefundControl {
    pub out_trade_no: String,
    pub amount: i64,
    /// The state it reaches at once (`PROCESSING`: none yet, no notification).
    #[serde(default = "success")]
    pub status: String,
    #[serde(default = "yes")]
    pub notify: bool,
}

/// `POST /mock/refund/auto`: `{"after_ms": 500, "status": "SUCCESS"}`, `{"after_ms": null}` off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundAutoControl {
    pub after_ms: Option<u64>,
    #[serde(default = "success")]
    pub status: String,
}

fn yes() -> bool {
    true
}

fn success() -> String {
    "SUCCESS".into()
}

fn final_status(status: &str) -> Option<&'static str> {
    match status {
        "SUCCESS" => Some("SUCCESS"),
        "ABNORMAL" => Some("ABNORMAL"),
        "CLOSED" => Some("CLOSED"),
        _ => None,
    }
}

/// 365 days, in seconds ("按支付成功时间+365天计算").
const REFUND_WINDOW_SECS: i64 = 365 * 86_400;
const MAX_REFUNDS: usize = 50;

impl WechatMock {
    /// The Refund object (create and query answers).
    fn refund_json(&self, r: &MockRefund) -> Value {
        let mut v = json!({
            "refund_id": r.refund_id,
            "out_refund_no": r.out_refund_no,
            "transaction_id": r.transaction_id,
            "out_trade_no": r.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": r.create_time.to_rfc3339_beijing(),
            "status": r.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": r.total, "refund": r.amount, "from": [],
                "payer_total": r.total, "payer_refund": r.amount,
                "settlement_refund": r.amount, "settlement_total": r.total,
                "discount_refund": 0, "currency": "CNY",
            },
            "promotion_detail": [],
        });
        if let Some(at) = r.success_time {
            v["success_time"] = json!(at.to_rfc3339_beijing());
        }
        v
    }

    /// The decrypted resource of a refund notification.
    fn refund_notice_json(&self, r: &MockRefund) -> Value {
        let mut v = json!({
            "mchid": self.config.mchid,
            "out_trade_no": r.out_trade_no,
            "transaction_id": r.transaction_id,
            "out_refund_no": r.out_refund_no,
            "refund_id": r.refund_id,
            "refund_status": r.status,
            "user_received_account": "支付用户零钱",
            "amount": {"total": r.total, "refund": r.amount,
                       "payer_total": r.total, "payer_refund": r.amount},
        });
        if let Some(at) = r.success_time {
            v["success_time"] = json!(at.to_rfc3339_beijing());
        }
        v
    }

    /// The mock's refund of this number, as the query answers it (for tests).
    pub fn refund(&self, out_refund_no: &str) -> Option<Value> {
        let refunds = self.refunds.lock().ok()?;
        refunds.get(out_refund_no).map(|r| self.refund_json(r))
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}` (the segment percent-decoded).
    pub(super) fn query_refund(&self, raw: &str) -> Answer {
        let no = percent_decode(raw);
        match self.refund(&no) {
            Some(refund) => self.signed(StatusCode::OK, refund.to_string()),
            None => self.error(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_EXISTS",
                "退款单号错误或退款单状态不正确",
            ),
        }
    }

    /// `POST /v3/refund/domestic/refunds` (see the module doc for the checks, in order).
    pub(super) fn create_refund(self: &Arc<Self>, body: &[u8]) -> Answer {
        let param = |message: &str| self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", message);
        let invalid =
            |message: &str| self.error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message);
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return param("请求体不是合法的JSON");
        };
        let text = |k: &str| request.get(k).and_then(Value::as_str);
        let out_refund_no = text("out_refund_no").unwrap_or_default().to_string();
        if !ferrypay::wechat::refund::out_refund_no_valid(&out_refund_no) {
            return param("out_refund_no 格式错误");
        }
        let (out_trade_no, transaction_id) = (text("out_trade_no"), text("transaction_id"));
        if out_trade_no.is_none() && transaction_id.is_none() {
            return param("transaction_id和out_trade_no必须二选一进行传参");
        }
        if text("reason").is_some_and(|r| r.len() > 80) {
            return param("reason 不可超过80个字节");
        }
        let notify_url = text("notify_url");
        if notify_url.is_some_and(|u| {
            !(u.starts_with("https://") || u.starts_with("http://"))
                || u.contains('?')
                || u.len() > 256
        }) {
            return param("notify_url 格式错误");
        }
        let amount = &request["amount"];
        let (refund, total) = (amount["refund"].as_i64(), amount["total"].as_i64());
        let (Some(refund), Some(total)) = (refund.filter(|r| *r > 0), total.filter(|t| *t > 0))
        else {
            return param("amount.refund 和 amount.total 必须是正整数");
        };
        if amount["currency"].as_str() != Some("CNY") {
            return param("amount.currency 必须为 CNY");
        }
        let now = self.clock.now();
        let (Ok(mut orders), Ok(mut refunds)) = (self.orders.lock(), self.refunds.lock()) else {
            return self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误",
            );
        };
        let found = orders.iter_mut().find(|(no, order)| {
            out_trade_no.is_none_or(|n| n == no.as_str())
                && transaction_id.is_none_or(|t| order.transaction_id.as_deref() == Some(t))
        });
        let Some((order_no, order)) = found else {
            return self.error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单号不存在");
        };
        let (Some(paid_tx), Some(paid_at)) = (order.transaction_id.clone(), order.success_time)
        else {
            return self.error(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_EXISTS",
                "订单号不存在，请检查你的订单号是否正确且是否已支付，未支付的订单不能发起退款",
            );
        };
        if let Some(existing) = refunds.get(&out_refund_no) {
            if existing.out_trade_no == *order_no
                && existing.amount == refund
                && existing.total == total
            {
                return self.signed(StatusCode::OK, self.refund_json(existing).to_string());
            }
            return invalid("订单金额或退款金额与之前请求不一致，请核实后再试");
        }
        if total != order.amount {
            return invalid("您的请求参数与订单信息不一致");
        }
        if now.unix() - paid_at.unix() > REFUND_WINDOW_SECS {
            return invalid("订单已超过退款期限");
        }
        let on_order: Vec<&MockRefund> = refunds
            .values()
            .filter(|r| r.out_trade_no == *order_no)
            .collect();
        if on_order.len() >= MAX_REFUNDS {
            return invalid("部分退款次数超过50次");
        }
        let interval = i64::try_from(self.config.refund_min_interval.as_secs()).unwrap_or(0);
        if on_order
            .iter()
            .any(|r| now.unix() - r.create_time.unix() < interval)
        {
            return self.error(
                StatusCode::TOO_MANY_REQUESTS,
                "FREQUENCY_LIMITED",
                "同一笔订单多次退款的请求需相隔1分钟",
            );
        }
        let taken: i64 = on_order
            .iter()
            .filter(|r| r.status != "CLOSED")
            .map(|r| r.amount)
            .sum();
        if refund > order.amount - taken {
            return invalid("申请退款金额超过订单可退金额");
        }
        let created = MockRefund {
            out_refund_no: out_refund_no.clone(),
            refund_id: format!("503000{:023}", self.next()),
            out_trade_no: order_no.clone(),
            transaction_id: paid_tx,
            amount: refund,
            total,
            notify_url: notify_url.map_or_else(|| order.notify_url.clone(), str::to_string),
            status: "PROCESSING",
            create_time: now,
            success_time: None,
        };
        order.trade_state = "REFUND";
        let answer = self.refund_json(&created);
        refunds.insert(out_refund_no.clone(), created);
        drop((orders, refunds));
        self.schedule_auto_settle(&out_refund_no);
        self.signed(StatusCode::OK, answer.to_string())
    }

    /// Sets (or clears) the automatic settling of new refunds.
    pub fn set_refund_auto(&self, auto: Option<RefundAuto>) -> Result<(), String> {
        if let Some(a) = &auto {
            final_status(&a.status).ok_or(format!("status {:?}", a.status))?;
        }
        let mut current = self.refund_auto.lock().map_err(|_| "lock poisoned")?;
        *current = auto;
        Ok(())
    }

    fn schedule_auto_settle(self: &Arc<Self>, out_refund_no: &str) {
        let Some(auto) = self.refund_auto.lock().ok().and_then(|a| a.clone()) else {
            return;
        };
        let mock = Arc::clone(self);
        let control = RefundControl {
            out_refund_no: out_refund_no.to_string(),
            status: auto.status,
            notify: true,
            duplicates: 0,
            tamper_signature: false,
            stale_seconds: 0,
        };
        tokio::spawn(async move {
            tokio::time::sleep(auto.after).await;
            // A control request may have settled it first: then nothing happens.
            let _ = mock.settle_refund(control).await;
        });
    }

    /// A refund leaves `PROCESSING` (or `ABNORMAL` becomes `SUCCESS`), the order's trade
    /// state follows, and the notification goes out. Answers the refund and the first
    /// attempts' statuses.
    pub async fn settle_refund(self: &Arc<Self>, control: RefundControl) -> Result<Value, String> {
        let status = final_status(&control.status).ok_or_else(|| {
            format!(
                "status {:?} is not SUCCESS, ABNORMAL or CLOSED",
                control.status
            )
        })?;
        let refund = {
            let orders = self.orders.lock();
            let refunds = self.refunds.lock();
            let (Ok(mut orders), Ok(mut refunds)) = (orders, refunds) else {
                return Err("lock poisoned".into());
            };
            let refund = refunds
                .get_mut(&control.out_refund_no)
                .ok_or("no such refund")?;
            let allowed = refund.status == "PROCESSING"
                || (refund.status == "ABNORMAL" && status == "SUCCESS");
            if !allowed {
                return Err(format!("refund is {}", refund.status));
            }
            refund.status = status;
            if status == "SUCCESS" {
                refund.success_time = Some(self.clock.now());
            }
            let refund = refund.clone();
            let open = refunds
                .values()
                .any(|r| r.out_trade_no == refund.out_trade_no && r.status != "CLOSED");
            if let Some(order) = orders.get_mut(&refund.out_trade_no) {
                order.trade_state = if open { "REFUND" } else { "SUCCESS" };
            }
            refund
        };
        let statuses = if control.notify {
            self.notify_refund(&refund, &control).await?
        } else {
            Vec::new()
        };
        Ok(json!({"refund": self.refund_json(&refund), "first_attempts": statuses}))
    }

    async fn notify_refund(
        self: &Arc<Self>,
        refund: &MockRefund,
        control: &RefundControl,
    ) -> Result<Vec<u16>, String> {
        let (event, summary) = match refund.status {
            "SUCCESS" => ("REFUND.SUCCESS", "退款成功"),
            "ABNORMAL" => ("REFUND.ABNORMAL", "退款异常"),
            _ => ("REFUND.CLOSED", "退款关闭"),
        };
        let plaintext = self.refund_notice_json(refund).to_string();
        let mut statuses = Vec::new();
        for _ in 0..=control.duplicates {
            let notification = self.notification(
                (event, summary),
                "refund",
                &plaintext,
                control.tamper_signature,
                control.stale_seconds,
            )?;
            let key = (
                refund.out_trade_no.as_str(),
                Some(refund.out_refund_no.as_str()),
            );
            statuses.push(self.deliver(key, &refund.notify_url, notification).await);
        }
        Ok(statuses)
    }

    /// A refund made in the merchant platform: WeChat's own `out_refund_no` (the mock uses the
    /// refund id: what the platform gives such refunds is unverified), the order's notify URL,
    /// the API's checks on amounts.
    pub async fn refund_externally(
        self: &Arc<Self>,
        control: ExternalRefundControl,
    ) -> Result<Value, String> {
        if control.status != "PROCESSING" && final_status(&control.status).is_none() {
            return Err(format!("status {:?}", control.status));
        }
        let now = self.clock.now();
        let out_refund_no = {
            let orders = self.orders.lock();
            let refunds = self.refunds.lock();
            let (Ok(mut orders), Ok(mut refunds)) = (orders, refunds) else {
                return Err("lock poisoned".into());
            };
            let order = orders
                .get_mut(&control.out_trade_no)
                .ok_or("no such order")?;
            let transaction_id = order.transaction_id.clone().ok_or("order not paid")?;
            let taken: i64 = refunds
                .values()
                .filter(|r| r.out_trade_no == control.out_trade_no && r.status != "CLOSED")
                .map(|r| r.amount)
                .sum();
            if control.amount <= 0 || control.amount > order.amount - taken {
                return Err("amount over the refundable rest".into());
            }
            let refund_id = format!("503000{:023}", self.next());
            order.trade_state = "REFUND";
            refunds.insert(
                refund_id.clone(),
                MockRefund {
                    out_refund_no: refund_id.clone(),
                    refund_id: refund_id.clone(),
                    out_trade_no: control.out_trade_no.clone(),
                    transaction_id,
                    amount: control.amount,
                    total: order.amount,
                    notify_url: order.notify_url.clone(),
                    status: "PROCESSING",
                    create_time: now,
                    success_time: None,
                },
            );
            refund_id
        };
        if control.status == "PROCESSING" {
            return Ok(json!({"refund": self.refund(&out_refund_no), "first_attempts": []}));
        }
        self.settle_refund(RefundControl {
            out_refund_no,
            status: control.status,
            notify: control.notify,
            duplicates: 0,
            tamper_signature: false,
            stale_seconds: 0,
        })
        .await
    }
}

/// `%XX` sequences decoded (a path segment as our client escapes it); anything malformed is
/// kept as is.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
