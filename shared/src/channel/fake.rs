//! An in-process payment channel for tests and the skeleton's dev stack. It keeps each order's
//! state like WeChat Pay would, and lets tests pay orders and inject failures.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
};

use super::{
    ChannelError, ChannelNotice, CloseOutcome, JsapiPayParams, NoticeError, NoticeTrade,
    PayChannel, PaymentNotice, PrepayRequest, TradeState,
};
use crate::{
    model::{Fen, OrderNo, PayCredential, PayType, Timestamp},
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

    /// How many channel calls were made (prepay, query, close).
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
        self.trades
            .lock()
            .ok()
            .and_then(|t| t.get(order_no).map(|trade| trade.state.clone()))
            .unwrap_or(TradeState::NotFound)
    }
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
        Ok(self
            .trades()?
            .get(order_no)
            .map_or(TradeState::NotFound, |t| t.state.clone()))
    }

    async fn close(&self, order_no: &OrderNo) -> Result<CloseOutcome, ChannelError> {
        self.begin_call()?;
        if self.close_says_paid.load(Ordering::SeqCst) {
            return Ok(CloseOutcome::AlreadyPaid);
        }
        let mut trades = self.trades()?;
        match trades.get_mut(order_no) {
            Some(FakeTrade {
                state: TradeState::Paid { .. },
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
    /// amount}` with the header `x-fake-verified: yes` standing in for a valid signature.
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
