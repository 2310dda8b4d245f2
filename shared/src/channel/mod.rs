//! The payment channel: who actually takes the payer's money (WeChat Pay). Services talk to it
//! only through [`PayChannel`], so the real APIv3 client and the in-process fake are
//! interchangeable.

mod fake;

use std::future::Future;

use serde::{Deserialize, Serialize};

pub use fake::FakeChannel;

use crate::model::{Fen, OrderNo, PayCredential, PayType, Timestamp};

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

/// The parameters a WeChat page hands to `WeixinJSBridge.invoke('getBrandWCPayRequest', ...)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsapiParams {
    pub app_id: String,
    pub time_stamp: String,
    pub nonce_str: String,
    pub package: String,
    pub sign_type: String,
    pub pay_sign: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Unreachable, timed out or failing on its side: the same call may work later.
    #[error("payment channel unavailable: {0}")]
    Unavailable(String),
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
    fn jsapi_params(&self, prepay_id: &str, now: Timestamp) -> Result<JsapiParams, ChannelError>;
}
