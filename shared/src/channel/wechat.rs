//! The WeChat Pay adapter: [`PayChannel`] over the APIv3 client. The port's types are turned
//! into WeChat's requests here, and WeChat's answers into the port's types, so `wechat` stays
//! pure protocol and never imports the port.

use http::Method;
use serde_json::{json, Value};

use super::{
    ChannelError, ChannelNotice, CloseOutcome, JsapiPayParams, NoticeError, NoticeHeaders,
    NoticeTrade, PayChannel, PaymentNotice, PrepayRequest, TradeState,
};
use crate::{
    model::{Cause, Fen, OrderNo, PayCredential, PayType, Timestamp},
    wechat::{
        client::{CallError, ClientError, WxTradeState, WxTransaction},
        jsapi_pay_params, nonce_str, Notification, VerifyError, WechatPayClient, WechatpayHeaders,
    },
};

impl From<ClientError> for ChannelError {
    fn from(err: ClientError) -> Self {
        match err {
            ClientError::Unavailable(what) => ChannelError::Unavailable(what),
            ClientError::Rejected { code, message } => ChannelError::Rejected { code, message },
        }
    }
}

impl From<CallError> for ChannelError {
    fn from(err: CallError) -> Self {
        ClientError::from(err).into()
    }
}

/// What WeChat Pay's transaction says, in the port's terms.
fn trade_state(client: &WechatPayClient, tx: WxTransaction) -> Result<TradeState, ChannelError> {
    if tx.mchid.as_deref().is_some_and(|m| m != client.mchid)
        || tx.appid.as_deref().is_some_and(|a| a != client.appid)
    {
        return Err(ChannelError::Unavailable(Cause::new(format!(
            "transaction {} belongs to another merchant or app",
            tx.out_trade_no
        ))));
    }
    Ok(match tx.trade_state {
        // REFUND: it was paid; the refund is a later event on a paid order.
        WxTradeState::Success | WxTradeState::Refund => {
            let transaction_id = tx.transaction_id.ok_or_else(|| {
                ChannelError::Unavailable("paid transaction without transaction_id".into())
            })?;
            let amount = tx.amount.map(|a| Fen::new(a.total)).ok_or_else(|| {
                ChannelError::Unavailable("paid transaction without amount".into())
            })?;
            let paid_at = tx
                .success_time
                .as_deref()
                .and_then(Timestamp::parse_rfc3339)
                .unwrap_or_else(|| client.clock.now());
            TradeState::Paid {
                transaction_id,
                paid_at,
                amount,
            }
        }
        WxTradeState::Notpay | WxTradeState::Userpaying | WxTradeState::Accept => {
            TradeState::NotPaid
        }
        WxTradeState::Closed | WxTradeState::Revoked | WxTradeState::Payerror => TradeState::Closed,
        WxTradeState::Unknown => {
            tracing::warn!(out_trade_no = %tx.out_trade_no, "unknown trade_state; treated as not paid");
            TradeState::NotPaid
        }
    })
}

impl PayChannel for WechatPayClient {
    async fn prepay(&self, request: &PrepayRequest) -> Result<PayCredential, ChannelError> {
        let mut body = json!({
            "appid": self.appid,
            "mchid": self.mchid,
            "description": request.description,
            "out_trade_no": request.order_no.as_str(),
            "time_expire": request.expires_at.to_rfc3339_beijing(),
            "notify_url": self.notify_url,
            "amount": {"total": request.amount.get(), "currency": "CNY"},
        });
        let kind = match request.pay_type {
            PayType::Native => "native",
            PayType::Jsapi => {
                body["payer"] = json!({"openid": request.openid});
                "jsapi"
            }
            PayType::H5 => {
                body["scene_info"] = json!({
                    "payer_client_ip": request.client_ip,
                    "h5_info": {"type": "Wap"},
                });
                "h5"
            }
        };
        let verified = self
            .call(
                Method::POST,
                &format!("/v3/pay/transactions/{kind}"),
                Some(&body),
            )
            .await?;
        let answer: Value = WechatPayClient::parse(&verified)?;
        let field = |name: &str| {
            answer
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    ChannelError::Unavailable(Cause::new(format!("prepay answer without {name}")))
                })
        };
        Ok(match request.pay_type {
            PayType::Native => PayCredential::Native {
                code_url: field("code_url")?,
            },
            PayType::Jsapi => PayCredential::Jsapi {
                prepay_id: field("prepay_id")?,
            },
            PayType::H5 => PayCredential::H5 {
                h5_url: field("h5_url")?,
            },
        })
    }

    async fn query(&self, order_no: &OrderNo) -> Result<TradeState, ChannelError> {
        let path = format!(
            "{}?mchid={}",
            WechatPayClient::out_trade_no_path(order_no),
            self.mchid
        );
        match self.call(Method::GET, &path, None).await {
            Ok(verified) => trade_state(self, WechatPayClient::parse(&verified)?),
            Err(CallError::Wechat { code, .. })
                if code == "ORDER_NOT_EXIST" || code == "ORDERNOTEXIST" =>
            {
                Ok(TradeState::NotFound)
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn close(&self, order_no: &OrderNo) -> Result<CloseOutcome, ChannelError> {
        let path = format!("{}/close", WechatPayClient::out_trade_no_path(order_no));
        let body = json!({"mchid": self.mchid});
        match self.call(Method::POST, &path, Some(&body)).await {
            Ok(_) => Ok(CloseOutcome::Closed),
            Err(CallError::Wechat { code, .. }) if code == "ORDERPAID" || code == "ORDER_PAID" => {
                Ok(CloseOutcome::AlreadyPaid)
            }
            Err(CallError::Wechat { code, .. })
                if matches!(
                    code.as_str(),
                    "ORDER_CLOSED" | "ORDERCLOSED" | "ORDER_NOT_EXIST" | "ORDERNOTEXIST"
                ) =>
            {
                Ok(CloseOutcome::Closed)
            }
            Err(err) => Err(err.into()),
        }
    }

    fn jsapi_params(
        &self,
        prepay_id: &str,
        now: Timestamp,
    ) -> Result<JsapiPayParams, ChannelError> {
        let nonce =
            nonce_str().map_err(|e| ChannelError::Unavailable(Cause::with_source("nonce", e)))?;
        jsapi_pay_params(
            &self.appid,
            prepay_id,
            now.unix(),
            &nonce,
            self.signer.key(),
        )
        .map_err(|e| ChannelError::Unavailable(Cause::with_source("paySign", e)))
    }

    async fn open_notification(
        &self,
        headers: &NoticeHeaders,
        body: &[u8],
    ) -> Result<ChannelNotice, NoticeError> {
        let signed = WechatpayHeaders::from_header_map(headers)
            .map_err(|e| NoticeError::Unverified(e.to_string()))?;
        match self.verify_refreshing(&signed, body).await {
            Ok(()) => {}
            Err(VerifyError::UnknownSerial(serial)) if !self.public_key_mode => {
                // Possibly ours is stale and WeChat Pay unreachable: let it retry later.
                return Err(NoticeError::Unavailable(Cause::new(format!(
                    "unknown serial {serial}"
                ))));
            }
            Err(err) => return Err(NoticeError::Unverified(err.to_string())),
        }
        let notification =
            Notification::from_json(body).map_err(|e| NoticeError::Malformed(e.to_string()))?;
        if notification.event_type != "TRANSACTION.SUCCESS" {
            return Ok(ChannelNotice::Other {
                event_type: notification.event_type,
            });
        }
        let plaintext = notification
            .decrypt(&self.apiv3_key)
            .map_err(|e| NoticeError::Malformed(e.to_string()))?;
        let tx: WxTransaction = serde_json::from_str(&plaintext)
            .map_err(|e| NoticeError::Malformed(format!("transaction: {e}")))?;
        if tx.mchid.as_deref() != Some(self.mchid.as_str())
            || tx.appid.as_deref() != Some(self.appid.as_str())
        {
            return Err(NoticeError::WrongMerchant(format!(
                "mchid {:?} appid {:?}",
                tx.mchid, tx.appid
            )));
        }
        let paid_at = tx
            .success_time
            .as_deref()
            .and_then(Timestamp::parse_rfc3339);
        let amount = tx
            .amount
            .as_ref()
            .map(|a| Fen::new(a.total))
            .ok_or_else(|| NoticeError::Malformed("transaction without amount".into()))?;
        let trade = match tx.trade_state {
            WxTradeState::Success => NoticeTrade::Paid {
                // A payment is only ever recorded with the transaction that made it.
                transaction_id: tx.transaction_id.ok_or_else(|| {
                    NoticeError::Malformed("paid transaction without transaction_id".into())
                })?,
                amount,
                paid_at,
            },
            other => NoticeTrade::NotPaid {
                trade_state: other.as_str().to_string(),
            },
        };
        Ok(ChannelNotice::Payment(PaymentNotice {
            out_trade_no: tx.out_trade_no,
            trade,
        }))
    }
}
