//! The payment channel: who actually takes the payer's money (WeChat Pay). Services talk to it
//! only through [`PayChannel`], so the real APIv3 client and the in-process fake are
//! interchangeable.
//!
//! Refunds, for the use cases built on this port: persist the refund (number, order, amount,
//! `processing`) before [`PayChannel::refund`], since its notification can arrive first. Then:
//! `Ok` with [`ChannelRefundState::Processing`] (the usual answer) waits for a
//! [`ChannelNotice::Refund`] or a [`PayChannel::query_refund`]; [`RefundError::Unavailable`]
//! keeps it processing and retries the identical request (or queries: `Ok(None)` means it was
//! never made); [`RefundError::Declined`] and [`RefundError::Rejected`] mean no money moved.
//! `Closed` and `Abnormal` both mean the money is not back with the payer, but only `Closed`
//! may be retried, with a new number; `Abnormal` waits for an operator. An order's refunds
//! make its [`TradeState`] `Refunded`, which still means paid.

mod fake;
mod none;
mod wechat;

use std::future::Future;

/// The parameters a WeChat page hands to `WeixinJSBridge.invoke('getBrandWCPayRequest', ...)`.
pub use crate::wechat::JsapiPayParams;
pub use fake::FakeChannel;
pub use none::{NoChannel, NO_CHANNEL};

use crate::model::{
    Cause, Fen, OrderNo, PayCredential, PayType, RefundNo, RefundReason, Timestamp,
};

/// A notification's raw headers, handed through untouched: only the channel reads them (its
/// signature covers them), so the use cases need no HTTP of their own.
pub type NoticeHeaders = http::HeaderMap;

/// What the channel needs to open an order for payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepayRequest {
    pub order_no: OrderNo,
    pub amount: Fen,
    pub description: String,
    pub pay_type: PayType,
    /// The payer's openid: required for jsapi.
    pub openid: Option<String>,
    /// The payer's IP: required for h5.
    pub client_ip: Option<String>,
    pub expires_at: Timestamp,
}

/// The channel's view of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeState {
    /// The channel never heard of it (prepay never reached it).
    NotFound,
    /// Open and unpaid (`NOTPAY`, or `USERPAYING` while a payer is entering a password).
    NotPaid,
    Paid {
        transaction_id: String,
        paid_at: Timestamp,
        amount: Fen,
    },
    /// Paid, then (partly or fully) refunded: WeChat's `REFUND` ("转入退款"), which it reports
    /// from the first accepted refund on, partial ones included. The payment's facts stay: the
    /// order *was* paid. How much was refunded is not said here (WeChat's transaction does not
    /// say it either): keep the refunded sum per order from the refunds themselves.
    Refunded {
        transaction_id: String,
        paid_at: Timestamp,
        amount: Fen,
    },
    /// Closed, revoked or failed (`CLOSED`, `REVOKED`, `PAYERROR`): it can no longer be paid.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOutcome {
    Closed,
    /// The payer paid before the close arrived (WeChat's `ORDERPAID`).
    AlreadyPaid,
}

/// A notification from the channel, verified (signature, timestamp, merchant) and decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelNotice {
    /// A transaction's state (WeChat's `TRANSACTION.SUCCESS`).
    Payment(PaymentNotice),
    /// A refund's final state (WeChat's `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`).
    Refund(RefundNotice),
    /// Any other event: acknowledged and logged, not acted on.
    Other { event_type: String },
}

/// A refund notification, verified (signature over the raw body, timestamp, merchant) and
/// decrypted. Check before acting (the channel cannot): `refund.out_refund_no` is a refund you
/// know, or, when it is not yours (a refund made in the merchant platform has a number of
/// WeChat's, not of the `RF...` shape), `refund.out_trade_no` is your order; `refund.amount`
/// is what was asked for; then change the refund only if it is not final yet (duplicates are
/// normal and must be no-ops that are still acknowledged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundNotice {
    /// `REFUND.SUCCESS`, `REFUND.ABNORMAL` or `REFUND.CLOSED`, for the log.
    pub event_type: String,
    /// The refund as the notification states it; its state agrees with the event type and is
    /// never `Processing` (there is no notification for that).
    pub refund: ChannelRefund,
}

/// What the channel needs to give money back. `refund_no` is the channel's idempotency key:
/// the same number with the same parameters is the same refund, however often it is sent, so
/// an ambiguous failure is always retried with this *identical* request (never a new number,
/// which could refund twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// Our refund number (WeChat's `out_refund_no`).
    pub refund_no: RefundNo,
    /// The paid order (WeChat's `out_trade_no`).
    pub order_no: OrderNo,
    /// What to give back.
    pub amount: Fen,
    /// The order's total as paid (not what is left of it).
    pub total: Fen,
    /// Shown to the payer.
    pub reason: Option<RefundReason>,
}

/// A refund as the channel reports it (create and query answers, notifications).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRefund {
    /// The channel's id of the refund (WeChat's `refund_id`).
    pub refund_id: String,
    /// The refund's number: ours (`RF...`) for refunds we asked for, anything of WeChat's
    /// characters for refunds made in the merchant platform. Hence a string.
    pub out_refund_no: String,
    /// The order's number at the channel: ours, if the order is ours.
    pub out_trade_no: String,
    pub transaction_id: Option<String>,
    pub state: ChannelRefundState,
    /// The amount refunded (or being refunded).
    pub amount: Fen,
    /// The order's total.
    pub total: Fen,
    /// What the payer paid of the total, and gets back of the refund (coupons excluded), when
    /// the channel says.
    pub payer_total: Option<Fen>,
    pub payer_refund: Option<Fen>,
}

/// Where a refund is at the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRefundState {
    /// Accepted, money not yet back with the payer. Not final: wait for the notification or
    /// query again (WeChat suggests every minute, backing off after five).
    Processing,
    /// The money is back with the payer (or on its way to the payer's bank card).
    Succeeded { at: Timestamp },
    /// Final failure: the channel closed it (e.g. the merchant's balance stayed short for 7
    /// days); no money moved. A new attempt needs a NEW refund number.
    Closed,
    /// The payer's card or account could not take it: the money is parked at the channel, not
    /// back with the merchant. NOT a failure to refund again elsewhere (that would refund twice):
    /// an operator resolves it in the merchant platform, after which it may become `Succeeded`.
    Abnormal,
}

/// Why a refund call gave no refund. Each variant says what may be done next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundError {
    /// Ambiguous: unreachable, timed out, failing on its side, rate-limited, or an answer that
    /// could not be verified or read. The refund may or may not exist: keep it processing and
    /// retry the IDENTICAL request later (or query it first).
    #[error("payment channel unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The channel stated the refund failed and no money moved (WeChat's `NOT_ENOUGH`: the
    /// merchant balance is short; `USER_ACCOUNT_ABNORMAL`: the payer's account is gone, refund
    /// offline). After the cause is fixed, the same number may be sent again.
    #[error("refund declined by the payment channel: {code}: {message}")]
    Declined { code: String, message: String },
    /// The request is wrong or not allowed (parameters, an amount over what is refundable, over
    /// 1 year or 50 refunds, an order unknown or unpaid, a number reused with other parameters,
    /// signature or account configuration). No refund was made; never retry it as is.
    #[error("refund refused by the payment channel: {code}: {message}")]
    Rejected { code: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentNotice {
    /// The channel's `out_trade_no`: ours, if the order is ours.
    pub out_trade_no: String,
    pub trade: NoticeTrade,
}

/// What a transaction notification says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeTrade {
    /// Paid (WeChat's `SUCCESS`) with this transaction.
    Paid {
        transaction_id: String,
        amount: Fen,
        /// When the channel says it was paid, if it says.
        paid_at: Option<Timestamp>,
    },
    /// Any other state: nothing to record. The channel's name for it, for the log.
    NotPaid { trade_state: String },
}

/// A payment the channel confirmed, ready to settle an order with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub transaction_id: String,
    pub paid_at: Timestamp,
    pub amount: Fen,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    /// Signature, timestamp or key check failed: the notification is not from the channel.
    #[error("notification not verified: {0}")]
    Unverified(String),
    /// Verified, but its body or resource cannot be read.
    #[error("notification malformed: {0}")]
    Malformed(String),
    /// Verified, but for another merchant or app.
    #[error("notification for another merchant: {0}")]
    WrongMerchant(String),
    /// The check itself could not run (platform certificates unreachable): ask for a retry.
    #[error("notification check unavailable: {0}")]
    Unavailable(#[source] Cause),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Unreachable, timed out or failing on its side: the same call may work later.
    #[error("payment channel unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The channel refused the request (a parameter, account or signature problem).
    /// The code and message are the channel's, for logs, never for merchants.
    #[error("payment channel refused the request: {code}: {message}")]
    Rejected { code: String, message: String },
}

pub trait PayChannel: Send + Sync + 'static {
    fn prepay(
        &self,
        request: &PrepayRequest,
    ) -> impl Future<Output = Result<PayCredential, ChannelError>> + Send;

    fn query(
        &self,
        order_no: &OrderNo,
    ) -> impl Future<Output = Result<TradeState, ChannelError>> + Send;

    fn close(
        &self,
        order_no: &OrderNo,
    ) -> impl Future<Output = Result<CloseOutcome, ChannelError>> + Send;

    /// Signs fresh JSAPI parameters for a prepay id (a new timestamp and nonce each time).
    fn jsapi_params(&self, prepay_id: &str, now: Timestamp)
        -> Result<JsapiPayParams, ChannelError>;

    /// Asks the channel to give money back. `Ok` means accepted, usually `Processing`: the
    /// final state comes by notification or [`query_refund`](PayChannel::query_refund). Persist
    /// the refund (number, order, amount, processing) BEFORE calling: the notification can
    /// arrive before this returns.
    fn refund(
        &self,
        request: &RefundRequest,
    ) -> impl Future<Output = Result<ChannelRefund, RefundError>> + Send;

    /// The channel's refund of this number (ours, or one of WeChat's from the merchant
    /// platform); `Ok(None)`: the channel has no such refund (it was never created, so the
    /// identical create may be sent again).
    fn query_refund(
        &self,
        out_refund_no: &str,
    ) -> impl Future<Output = Result<Option<ChannelRefund>, RefundError>> + Send;

    /// Verifies (over the raw body, before parsing anything) and decrypts a notification.
    fn open_notification(
        &self,
        headers: &NoticeHeaders,
        body: &[u8],
    ) -> impl Future<Output = Result<ChannelNotice, NoticeError>> + Send;
}
