//! An in-process payment channel for tests and the skeleton's dev stack. It keeps each order's
//! state like WeChat Pay would, and lets tests pay orders, settle refunds and inject failures.
//!
//! Refunds behave as WeChat Pay's do (see `wechat::refund`): they start `Processing`; the
//! same number with the same parameters is the same refund, with others `INVALID_REQUEST`;
//! more than the refundable rest, more than 50 refunds, or the total not the order's are
//! `INVALID_REQUEST`; an unknown or unpaid order is `RESOURCE_NOT_EXISTS`. Tests settle them
//! ([`FakeChannel::settle_refund`]), script failures ([`FakeChannel::script_refund_errors`],
//! [`FakeChannel::lose_next_refund_answers`]) and make refunds outside ferrypay
//! ([`FakeChannel::refund_externally`]). The fake has no clock: the 1-year limit is not kept.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
};

use super::{
    ChannelError, ChannelNotice, ChannelRefund, ChannelRefundState, CloseOutcome, JsapiPayParams,
    NoticeError, NoticeTrade, PayChannel, PaymentNotice, PrepayRequest, RefundError, RefundNotice,
    RefundRequest, TradeState,
};
use crate::{
    model::{Fen, OrderNo, PayCredential, PayType, Timestamp, MAX_REFUNDS_PER_ORDER},
    sign::hex_lower,
};

#[derive(Debug, Clone)]
struct FakeTrade {
    amount: Fen,
    state: TradeState,
}

#[derive(Default)]
pub struct FakeChannel {
    trades: Mutex<HashMap<OrderNo, FakeTrade>>,
    /// The next N calls of any kind fail as unavailable.
    fail_next: AtomicU32,
    /// The next N calls of any kind are refused (as WeChat refuses bad parameters).
    reject_next: AtomicU32,
    calls: AtomicU64,
    queries: AtomicU64,
    /// Every close answers "already paid" (WeChat's ORDERPAID), whatever the query says.
    close_says_paid: AtomicBool,
    next_transaction: AtomicU64,
    /// Refunds by `out_refund_no`, in the order they were made.
    refunds: Mutex<Vec<ChannelRefund>>,
    /// What the next refund calls answer instead of refunding (one each).
    refund_script: Mutex<VecDeque<RefundError>>,
    /// The next N refund calls refund, but answer unavailable (the answer was lost).
    lose_refund_answers: AtomicU32,
    refund_calls: AtomicU64,
    next_refund: AtomicU64,
}

impl FakeChannel {
    pub fn new() -> Self {
        Self::default()
    }

    fn trades(&self) -> Result<MutexGuard<'_, HashMap<OrderNo, FakeTrade>>, ChannelError> {
        self.trades
            .lock()
            .map_err(|_| ChannelError::Unavailable("fake channel lock poisoned".into()))
    }

    fn begin_call(&self) -> Result<(), ChannelError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(ChannelError::Unavailable("injected failure".into()));
        }
        let rejecting = self
            .reject_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if rejecting {
            return Err(ChannelError::Rejected {
                code: "PARAM_ERROR".into(),
                message: "injected refusal (internal detail)".into(),
            });
        }
        Ok(())
    }

    /// Makes the next `n` channel calls be refused with a parameter error.
    pub fn reject_next_calls(&self, n: u32) {
        self.reject_next.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` channel calls fail as unavailable.
    pub fn fail_next_calls(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// How many order queries were made.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::SeqCst)
    }

    /// From now on every close answers "already paid" while queries answer the trade's state:
    /// a channel contradicting itself.
    pub fn close_always_says_paid(&self) {
        self.close_says_paid.store(true, Ordering::SeqCst);
    }

    /// How many channel calls were made (prepay, query, close, refund, query_refund).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The payer pays: a NOTPAY order becomes paid. Returns the transaction id, or `None` if
    /// the order is unknown or no longer payable.
    pub fn pay(&self, order_no: &OrderNo, now: Timestamp) -> Option<String> {
        self.pay_amount(order_no, None, now)
    }

    /// Like [`pay`](Self::pay) but reporting a different amount (a fault the services must catch).
    pub fn pay_amount(
        &self,
        order_no: &OrderNo,
        reported: Option<Fen>,
        now: Timestamp,
    ) -> Option<String> {
        let mut trades = self.trades.lock().ok()?;
        let trade = trades.get_mut(order_no)?;
        if trade.state != TradeState::NotPaid {
            return None;
        }
        let n = self.next_transaction.fetch_add(1, Ordering::SeqCst);
        let transaction_id = format!("42000000{:020}", n + 1);
        trade.state = TradeState::Paid {
            transaction_id: transaction_id.clone(),
            paid_at: now,
            amount: reported.unwrap_or(trade.amount),
        };
        Some(transaction_id)
    }

    /// The channel's state of an order, as a test would inspect it.
    pub fn state(&self, order_no: &OrderNo) -> TradeState {
        let state = self
            .trades
            .lock()
            .ok()
            .and_then(|t| t.get(order_no).map(|trade| trade.state.clone()))
            .unwrap_or(TradeState::NotFound);
        self.with_refunds(order_no, state)
    }

    /// `REFUND` once a refund on a paid order is not closed, as WeChat reports it.
    fn with_refunds(&self, order_no: &OrderNo, state: TradeState) -> TradeState {
        let refunded = self.refunds.lock().is_ok_and(|refunds| {
            refunds.iter().any(|r| {
                r.out_trade_no == order_no.as_str() && r.state != ChannelRefundState::Closed
            })
        });
        match state {
            TradeState::Paid {
                transaction_id,
                paid_at,
                amount,
            } if refunded => TradeState::Refunded {
                transaction_id,
                paid_at,
                amount,
            },
            other => other,
        }
    }

    /// The next refund calls (create or query) answer these errors, one each, refunding nothing.
    pub fn script_refund_errors(&self, errors: impl IntoIterator<Item = RefundError>) {
        if let Ok(mut script) = self.refund_script.lock() {
            script.extend(errors);
        }
    }

    /// The next `n` refund creations make the refund but answer unavailable: the ambiguous
    /// case (a timeout after WeChat Pay accepted it).
    pub fn lose_next_refund_answers(&self, n: u32) {
        self.lose_refund_answers.store(n, Ordering::SeqCst);
    }

    /// How many refund calls (create and query) were made.
    pub fn refund_calls(&self) -> u64 {
        self.refund_calls.load(Ordering::SeqCst)
    }

    /// The channel's refund of this number, as a test would inspect it.
    pub fn refund_state(&self, out_refund_no: &str) -> Option<ChannelRefund> {
        let refunds = self.refunds.lock().ok()?;
        refunds
            .iter()
            .find(|r| r.out_refund_no == out_refund_no)
            .cloned()
    }

    /// A processing refund reaches a final state (or an abnormal one succeeds, once an operator
    /// resolved it). Returns the notification body of that state for
    /// [`PayChannel::open_notification`] (with the header `x-fake-verified: yes`), or `None` if
    /// the refund is unknown or cannot change so.
    pub fn settle_refund(&self, out_refund_no: &str, state: ChannelRefundState) -> Option<Vec<u8>> {
        let mut refunds = self.refunds.lock().ok()?;
        let refund = refunds
            .iter_mut()
            .find(|r| r.out_refund_no == out_refund_no)?;
        let allowed = match (refund.state, state) {
            (ChannelRefundState::Processing, ChannelRefundState::Processing) => false,
            (ChannelRefundState::Processing, _) => true,
            (ChannelRefundState::Abnormal, ChannelRefundState::Succeeded { .. }) => true,
            _ => false,
        };
        if !allowed {
            return None;
        }
        refund.state = state;
        Some(refund_notice_body(refund))
    }

    /// A refund made in the merchant platform, outside ferrypay: it has a number of WeChat's
    /// (not `RF...`) and succeeds at once. Returns its `out_refund_no` and the notification
    /// body, or `None` if the order is not paid or `amount` is more than is refundable.
    pub fn refund_externally(
        &self,
        order_no: &OrderNo,
        amount: Fen,
        now: Timestamp,
    ) -> Option<(String, Vec<u8>)> {
        let (total, transaction_id) = self.paid_trade(order_no)?;
        let mut refunds = self.refunds.lock().ok()?;
        if amount.get() <= 0 || amount.get() > refundable(&refunds, order_no, total) {
            return None;
        }
        let n = self.next_refund.fetch_add(1, Ordering::SeqCst) + 1;
        let refund = ChannelRefund {
            refund_id: format!("50300000{:021}", n),
            out_refund_no: format!("50300000{:021}", n),
            out_trade_no: order_no.as_str().to_string(),
            transaction_id: Some(transaction_id),
            state: ChannelRefundState::Succeeded { at: now },
            amount,
            total,
            payer_total: Some(total),
            payer_refund: Some(amount),
        };
        let body = refund_notice_body(&refund);
        let out_refund_no = refund.out_refund_no.clone();
        refunds.push(refund);
        Some((out_refund_no, body))
    }

    /// A paid order's total and transaction id.
    fn paid_trade(&self, order_no: &OrderNo) -> Option<(Fen, String)> {
        let trades = self.trades.lock().ok()?;
        match &trades.get(order_no)?.state {
            TradeState::Paid {
                transaction_id,
                amount,
                ..
            } => Some((*amount, transaction_id.clone())),
            _ => None,
        }
    }

    fn begin_refund_call(&self) -> Result<(), RefundError> {
        self.refund_calls.fetch_add(1, Ordering::SeqCst);
        self.begin_call().map_err(|e| match e {
            ChannelError::Unavailable(cause) => RefundError::Unavailable(cause),
            ChannelError::Rejected { code, message } => RefundError::Rejected { code, message },
        })?;
        let scripted = self
            .refund_script
            .lock()
            .map_err(|_| RefundError::Unavailable("fake channel lock poisoned".into()))?
            .pop_front();
        scripted.map_or(Ok(()), Err)
    }
}

/// What is left to refund of an order of `total`: closed refunds gave nothing.
fn refundable(refunds: &[ChannelRefund], order_no: &OrderNo, total: Fen) -> i64 {
    let taken: i64 = refunds
        .iter()
        .filter(|r| r.out_trade_no == order_no.as_str() && r.state != ChannelRefundState::Closed)
        .map(|r| r.amount.get())
        .sum();
    total.get() - taken
}

fn rejected(code: &str, message: &str) -> RefundError {
    RefundError::Rejected {
        code: code.into(),
        message: message.into(),
    }
}

/// The fake's refund notification: `{event_type, refund_id, out_refund_no, out_trade_no,
/// transaction_id, refund_status, success_time (Unix seconds), amount, total}`.
fn refund_notice_body(refund: &ChannelRefund) -> Vec<u8> {
    let (status, at) = match refund.state {
        ChannelRefundState::Processing => ("PROCESSING", None),
        ChannelRefundState::Succeeded { at } => ("SUCCESS", Some(at.unix())),
        ChannelRefundState::Closed => ("CLOSED", None),
        ChannelRefundState::Abnormal => ("ABNORMAL", None),
    };
    serde_json::json!({
        "event_type": format!("REFUND.{status}"),
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "out_trade_no": refund.out_trade_no,
        "transaction_id": refund.transaction_id,
        "refund_status": status,
        "success_time": at,
        "amount": refund.amount.get(),
        "total": refund.total.get(),
    })
    .to_string()
    .into_bytes()
}

/// Reads [`refund_notice_body`]'s shape back.
fn parse_refund_notice(v: &serde_json::Value) -> Result<ChannelNotice, NoticeError> {
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let number = |k: &str| v.get(k).and_then(serde_json::Value::as_i64);
    let malformed = || NoticeError::Malformed("fake refund notification".into());
    let event_type = text("event_type").ok_or_else(malformed)?;
    let state = match (text("refund_status").as_deref(), number("success_time")) {
        (Some("SUCCESS"), Some(at)) => ChannelRefundState::Succeeded {
            at: Timestamp::from_unix(at),
        },
        (Some("CLOSED"), _) => ChannelRefundState::Closed,
        (Some("ABNORMAL"), _) => ChannelRefundState::Abnormal,
        _ => return Err(malformed()),
    };
    let refund = ChannelRefund {
        refund_id: text("refund_id").ok_or_else(malformed)?,
        out_refund_no: text("out_refund_no").ok_or_else(malformed)?,
        out_trade_no: text("out_trade_no").ok_or_else(malformed)?,
        transaction_id: text("transaction_id"),
        state,
        amount: Fen::new(number("amount").ok_or_else(malformed)?),
        total: Fen::new(number("total").ok_or_else(malformed)?),
        payer_total: None,
        payer_refund: None,
    };
    Ok(ChannelNotice::Refund(RefundNotice { event_type, refund }))
}

impl PayChannel for FakeChannel {
    async fn prepay(&self, request: &PrepayRequest) -> Result<PayCredential, ChannelError> {
        self.begin_call()?;
        let mut trades = self.trades()?;
        trades
            .entry(request.order_no.clone())
            .or_insert_with(|| FakeTrade {
                amount: request.amount,
                state: TradeState::NotPaid,
            });
        let no = request.order_no.as_str();
        Ok(match request.pay_type {
            PayType::Native => PayCredential::Native {
                code_url: format!("weixin://wxpay/bizpayurl?pr=fake{no}"),
            },
            PayType::Jsapi => PayCredential::Jsapi {
                prepay_id: format!("wx_fake_{no}"),
            },
            PayType::H5 => PayCredential::H5 {
                h5_url: format!(
                    "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx_fake_{no}"
                ),
            },
        })
    }

    async fn query(&self, order_no: &OrderNo) -> Result<TradeState, ChannelError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        self.begin_call()?;
        let state = self
            .trades()?
            .get(order_no)
            .map_or(TradeState::NotFound, |t| t.state.clone());
        Ok(self.with_refunds(order_no, state))
    }

    async fn close(&self, order_no: &OrderNo) -> Result<CloseOutcome, ChannelError> {
        self.begin_call()?;
        if self.close_says_paid.load(Ordering::SeqCst) {
            return Ok(CloseOutcome::AlreadyPaid);
        }
        let mut trades = self.trades()?;
        match trades.get_mut(order_no) {
            Some(FakeTrade {
                state: TradeState::Paid { .. } | TradeState::Refunded { .. },
                ..
            }) => Ok(CloseOutcome::AlreadyPaid),
            Some(trade) => {
                trade.state = TradeState::Closed;
                Ok(CloseOutcome::Closed)
            }
            // WeChat answers ORDER_NOT_EXIST; nothing is open, so the order is closed.
            None => Ok(CloseOutcome::Closed),
        }
    }

    async fn refund(&self, request: &RefundRequest) -> Result<ChannelRefund, RefundError> {
        self.begin_refund_call()?;
        let Some((total, transaction_id)) = self.paid_trade(&request.order_no) else {
            return Err(rejected("RESOURCE_NOT_EXISTS", "订单号不存在或未支付"));
        };
        let mut refunds = self
            .refunds
            .lock()
            .map_err(|_| RefundError::Unavailable("fake channel lock poisoned".into()))?;
        let no = request.refund_no.as_str();
        if let Some(existing) = refunds.iter().find(|r| r.out_refund_no == no) {
            return if existing.out_trade_no == request.order_no.as_str()
                && existing.amount == request.amount
                && existing.total == request.total
            {
                Ok(existing.clone())
            } else {
                Err(rejected(
                    "INVALID_REQUEST",
                    "订单金额或退款金额与之前请求不一致，请核实后再试",
                ))
            };
        }
        if request.total != total {
            return Err(rejected("INVALID_REQUEST", "您的请求参数与订单信息不一致"));
        }
        let count = refunds
            .iter()
            .filter(|r| r.out_trade_no == request.order_no.as_str())
            .count();
        if count >= MAX_REFUNDS_PER_ORDER as usize {
            return Err(rejected("INVALID_REQUEST", "部分退款次数超过50次"));
        }
        if request.amount.get() <= 0 {
            return Err(rejected("PARAM_ERROR", "amount.refund 必须大于0"));
        }
        if request.amount.get() > refundable(&refunds, &request.order_no, total) {
            return Err(rejected("INVALID_REQUEST", "申请退款金额超过订单可退金额"));
        }
        let n = self.next_refund.fetch_add(1, Ordering::SeqCst) + 1;
        let refund = ChannelRefund {
            refund_id: format!("50300000{:021}", n),
            out_refund_no: no.to_string(),
            out_trade_no: request.order_no.as_str().to_string(),
            transaction_id: Some(transaction_id),
            state: ChannelRefundState::Processing,
            amount: request.amount,
            total,
            payer_total: Some(total),
            payer_refund: Some(request.amount),
        };
        refunds.push(refund.clone());
        let lost = self
            .lose_refund_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lost {
            return Err(RefundError::Unavailable(
                "injected lost answer (the refund was made)".into(),
            ));
        }
        Ok(refund)
    }

    async fn query_refund(
        &self,
        out_refund_no: &str,
    ) -> Result<Option<ChannelRefund>, RefundError> {
        self.begin_refund_call()?;
        Ok(self.refund_state(out_refund_no))
    }

    fn jsapi_params(
        &self,
        prepay_id: &str,
        now: Timestamp,
    ) -> Result<JsapiPayParams, ChannelError> {
        // Not an RSA signature: the fake stands in for the channel, not for WeChat's crypto.
        let nonce = hex_lower(&now.unix().to_be_bytes());
        Ok(JsapiPayParams {
            app_id: "wxfakeappid00000".into(),
            time_stamp: now.unix().to_string(),
            nonce_str: nonce,
            package: format!("prepay_id={prepay_id}"),
            sign_type: "RSA".into(),
            pay_sign: "FAKE-SIGNATURE".into(),
        })
    }

    /// The fake's notifications are plain JSON `{out_trade_no, transaction_id, trade_state,
    /// amount}` with the header `x-fake-verified: yes` standing in for a valid signature;
    /// refund notifications are those [`FakeChannel::settle_refund`] returns.
    async fn open_notification(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<ChannelNotice, NoticeError> {
        if headers.get("x-fake-verified").and_then(|v| v.to_str().ok()) != Some("yes") {
            return Err(NoticeError::Unverified("missing x-fake-verified".into()));
        }
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| NoticeError::Malformed(e.to_string()))?;
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        if text("event_type").is_some_and(|e| e.starts_with("REFUND.")) {
            return parse_refund_notice(&v);
        }
        match (
            text("out_trade_no"),
            text("transaction_id"),
            text("trade_state"),
            v.get("amount").and_then(serde_json::Value::as_i64),
        ) {
            (Some(out_trade_no), Some(transaction_id), Some(trade_state), Some(amount)) => {
                let trade = if trade_state == "SUCCESS" {
                    NoticeTrade::Paid {
                        transaction_id,
                        amount: Fen::new(amount),
                        paid_at: None,
                    }
                } else {
                    NoticeTrade::NotPaid { trade_state }
                };
                Ok(ChannelNotice::Payment(PaymentNotice {
                    out_trade_no,
                    trade,
                }))
            }
            _ => Ok(ChannelNotice::Other {
                event_type: text("event_type").unwrap_or_default(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RefundNo;

    const ORDER: &str = "FP20251221103000ABC123";

    async fn paid(fake: &FakeChannel, amount: i64) -> OrderNo {
        let no = OrderNo::parse(ORDER).unwrap();
        fake.prepay(&PrepayRequest {
            order_no: no.clone(),
            amount: Fen::new(amount),
            description: "x".into(),
            pay_type: PayType::Native,
            openid: None,
            client_ip: None,
            expires_at: Timestamp::from_unix(4_102_444_800),
        })
        .await
        .unwrap();
        fake.pay(&no, Timestamp::from_unix(1_766_284_200)).unwrap();
        no
    }

    fn request(no: &OrderNo, refund_no: &str, amount: i64) -> RefundRequest {
        RefundRequest {
            refund_no: RefundNo::parse(refund_no).unwrap(),
            order_no: no.clone(),
            amount: Fen::new(amount),
            total: Fen::new(100),
            reason: None,
        }
    }

    fn code(result: Result<ChannelRefund, RefundError>) -> String {
        match result {
            Err(RefundError::Rejected { code, .. }) => code,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn refunds_behave_as_wechats() {
        let fake = FakeChannel::new();
        let unpaid = OrderNo::parse("FP20251221103000NOTPAI").unwrap();
        assert_eq!(
            code(
                fake.refund(&request(&unpaid, "RF20251221103000AAAAAA", 1))
                    .await
            ),
            "RESOURCE_NOT_EXISTS"
        );
        let no = paid(&fake, 100).await;
        let first = fake
            .refund(&request(&no, "RF20251221103000AAAAAA", 30))
            .await
            .unwrap();
        assert_eq!(first.state, ChannelRefundState::Processing);
        assert!(
            matches!(fake.state(&no), TradeState::Refunded { amount, .. } if amount == Fen::new(100))
        );
        // idempotent; the same number with another amount is refused
        assert_eq!(
            fake.refund(&request(&no, "RF20251221103000AAAAAA", 30))
                .await
                .unwrap(),
            first
        );
        assert_eq!(
            code(
                fake.refund(&request(&no, "RF20251221103000AAAAAA", 31))
                    .await
            ),
            "INVALID_REQUEST"
        );
        // over the rest; the total must be the order's
        assert_eq!(
            code(
                fake.refund(&request(&no, "RF20251221103000BBBBBB", 71))
                    .await
            ),
            "INVALID_REQUEST"
        );
        let mut wrong_total = request(&no, "RF20251221103000BBBBBB", 1);
        wrong_total.total = Fen::new(99);
        assert_eq!(code(fake.refund(&wrong_total).await), "INVALID_REQUEST");
        // a closed refund gives its amount back
        let body = fake
            .settle_refund("RF20251221103000AAAAAA", ChannelRefundState::Closed)
            .unwrap();
        assert!(fake
            .settle_refund("RF20251221103000AAAAAA", ChannelRefundState::Abnormal)
            .is_none());
        assert!(matches!(fake.state(&no), TradeState::Paid { .. }));
        let mut headers = http::HeaderMap::new();
        headers.insert("x-fake-verified", "yes".parse().unwrap());
        match fake.open_notification(&headers, &body).await.unwrap() {
            ChannelNotice::Refund(n) => {
                assert_eq!(n.event_type, "REFUND.CLOSED");
                assert_eq!(n.refund.state, ChannelRefundState::Closed);
            }
            other => panic!("{other:?}"),
        }
        fake.refund(&request(&no, "RF20251221103000BBBBBB", 100))
            .await
            .unwrap();
        let at = Timestamp::from_unix(1_766_284_300);
        fake.settle_refund(
            "RF20251221103000BBBBBB",
            ChannelRefundState::Succeeded { at },
        )
        .unwrap();
        assert_eq!(
            fake.query_refund("RF20251221103000BBBBBB")
                .await
                .unwrap()
                .unwrap()
                .state,
            ChannelRefundState::Succeeded { at }
        );
        assert_eq!(
            fake.query_refund("RF20251221103000CCCCCC").await.unwrap(),
            None
        );
        assert!(
            fake.refund_externally(&no, Fen::new(1), at).is_none(),
            "nothing left"
        );
    }

    #[tokio::test]
    async fn refund_failures_and_outside_refunds_are_controllable() {
        let fake = FakeChannel::new();
        let no = paid(&fake, 100).await;
        fake.script_refund_errors([RefundError::Declined {
            code: "NOT_ENOUGH".into(),
            message: "余额不足".into(),
        }]);
        assert!(matches!(
            fake.refund(&request(&no, "RF20251221103000AAAAAA", 10))
                .await,
            Err(RefundError::Declined { .. })
        ));
        assert_eq!(
            fake.refund_state("RF20251221103000AAAAAA"),
            None,
            "nothing made"
        );
        fake.lose_next_refund_answers(1);
        assert!(matches!(
            fake.refund(&request(&no, "RF20251221103000AAAAAA", 10))
                .await,
            Err(RefundError::Unavailable(_))
        ));
        assert!(
            fake.refund_state("RF20251221103000AAAAAA").is_some(),
            "made all the same"
        );
        fake.fail_next_calls(1);
        assert!(matches!(
            fake.query_refund("RF20251221103000AAAAAA").await,
            Err(RefundError::Unavailable(_))
        ));
        let at = Timestamp::from_unix(1_766_284_300);
        let (outside, body) = fake.refund_externally(&no, Fen::new(5), at).unwrap();
        assert!(
            RefundNo::parse(&outside).is_none(),
            "not our shape: {outside}"
        );
        let mut headers = http::HeaderMap::new();
        headers.insert("x-fake-verified", "yes".parse().unwrap());
        match fake.open_notification(&headers, &body).await.unwrap() {
            ChannelNotice::Refund(n) => {
                assert_eq!(n.refund.out_refund_no, outside);
                assert_eq!(n.refund.amount, Fen::new(5));
                assert_eq!(n.refund.state, ChannelRefundState::Succeeded { at });
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fake.refund_calls(), 3, "the outside refund is no call");
    }
}
