//! The payment channel: who actually takes the payer's money (WeChat Pay). Services talk to it
//! only through [`PayChannel`], so the real APIv3 client and the in-process fake are
//! interchangeable.

mod fake;
mod none;
mod wechat;

use std::future::Future;

/// The parameters a WeChat page hands to `WeixinJSBridge.invoke('getBrandWCPayRequest', ...)`.
pub use crate::wechat::JsapiPayParams;
pub use fake::FakeChannel;
pub use none::{NoChannel, NO_CHANNEL};

use crate::model::{Cause, Fen, OrderNo, PayCredential, PayType, Timestamp};

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
    /// Any other event (refunds, later): acknowledged and logged, not acted on yet.
    Other { event_type: String },
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

    /// Verifies (over the raw body, before parsing anything) and decrypts a notification.
    fn open_notification(
        &self,
        headers: &NoticeHeaders,
        body: &[u8],
    ) -> impl Future<Output = Result<ChannelNotice, NoticeError>> + Send;
}
