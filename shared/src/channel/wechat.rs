//! The WeChat Pay adapter: [`PayChannel`] over the APIv3 client. The port's types are turned
//! into WeChat's requests here, and WeChat's answers into the port's types, so `wechat` stays
//! pure protocol and never imports the port.

use http::Method;
use serde_json::{json, Value};

use super::{
    ChannelError, ChannelNotice, ChannelRefund, ChannelRefundState, CloseOutcome, JsapiPayParams,
    NoticeError, NoticeHeaders, NoticeTrade, PayChannel, PaymentNotice, PrepayRequest, RefundError,
    RefundNotice, RefundRequest, TradeState,
};
use crate::{
    model::{Cause, Fen, OrderNo, PayCredential, PayType, Timestamp},
    wechat::{
        client::{CallError, ClientError, WxTradeState, WxTransaction},
        jsapi_pay_params, nonce_str,
        refund::{
            parse_refund_notification, refund_event_status, RefundApply, RefundApplyAmount,
            RefundCallError, WxRefund, WxRefundState, WxRefundStatus,
        },
        Notification, VerifyError, WechatPayClient, WechatpayHeaders,
    },
};

impl From<RefundCallError> for RefundError {
    fn from(err: RefundCallError) -> Self {
        match err {
            RefundCallError::Unavailable(cause) => RefundError::Unavailable(cause),
            RefundCallError::Declined { code, message } => RefundError::Declined { code, message },
            RefundCallError::Rejected { code, message } => RefundError::Rejected { code, message },
        }
    }
}

/// WeChat's refund in the port's terms.
fn channel_refund(refund: WxRefund) -> ChannelRefund {
    ChannelRefund {
        refund_id: refund.refund_id,
        out_refund_no: refund.out_refund_no,
        out_trade_no: refund.out_trade_no,
        transaction_id: refund.transaction_id,
        state: match refund.state {
            WxRefundState::Processing => ChannelRefundState::Processing,
            WxRefundState::Success { at } => ChannelRefundState::Succeeded { at },
            WxRefundState::Closed => ChannelRefundState::Closed,
            WxRefundState::Abnormal => ChannelRefundState::Abnormal,
        },
        amount: Fen::new(refund.refund),
        total: Fen::new(refund.total),
        payer_total: refund.payer_total.map(Fen::new),
        payer_refund: refund.payer_refund.map(Fen::new),
    }
}

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
            if tx.trade_state == WxTradeState::Refund {
                // It was paid; refunds are later events on a paid order.
                TradeState::Refunded {
                    transaction_id,
                    paid_at,
                    amount,
                }
            } else {
                TradeState::Paid {
                    transaction_id,
                    paid_at,
                    amount,
                }
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

    async fn refund(&self, request: &RefundRequest) -> Result<ChannelRefund, RefundError> {
        let apply = RefundApply {
            out_trade_no: request.order_no.as_str().to_string(),
            out_refund_no: request.refund_no.as_str().to_string(),
            reason: request.reason.as_ref().map(|r| r.as_str().to_string()),
            notify_url: self.notify_url().to_string(),
            amount: RefundApplyAmount {
                refund: request.amount.get(),
                total: request.total.get(),
                currency: "CNY",
            },
        };
        let refund = channel_refund(self.create_refund(&apply).await?);
        if refund.out_refund_no != apply.out_refund_no
            || refund.out_trade_no != apply.out_trade_no
            || refund.amount != request.amount
        {
            // Not the refund asked for: believe neither success nor failure.
            tracing::error!(anomaly = true, refund_no = %request.refund_no, answered = ?refund, "refund answer does not match the request");
            return Err(RefundError::Unavailable(Cause::new(format!(
                "refund answer for {} does not match the request",
                request.refund_no
            ))));
        }
        Ok(refund)
    }

    async fn query_refund(
        &self,
        out_refund_no: &str,
    ) -> Result<Option<ChannelRefund>, RefundError> {
        let refund = self
            .query_refund_no(out_refund_no)
            .await?
            .map(channel_refund);
        match refund {
            Some(r) if r.out_refund_no != out_refund_no => {
                Err(RefundError::Unavailable(Cause::new(format!(
                    "refund query for {out_refund_no} answered {}",
                    r.out_refund_no
                ))))
            }
            other => Ok(other),
        }
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
        if let Some(announced) = refund_event_status(&notification.event_type) {
            return self.refund_notice(notification, announced);
        }
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

impl WechatPayClient {
    /// A verified `REFUND.*` notification: decrypted (with the associated data it names), read
    /// strictly, for this merchant, and saying what its event type says.
    fn refund_notice(
        &self,
        notification: Notification,
        announced: WxRefundStatus,
    ) -> Result<ChannelNotice, NoticeError> {
        let plaintext = notification
            .decrypt(&self.apiv3_key)
            .map_err(|e| NoticeError::Malformed(e.to_string()))?;
        let refund = parse_refund_notification(plaintext.as_bytes())
            .map_err(|e| NoticeError::Malformed(e.to_string()))?;
        if refund.mchid.as_deref() != Some(self.mchid.as_str()) {
            return Err(NoticeError::WrongMerchant(format!(
                "mchid {:?}",
                refund.mchid
            )));
        }
        let stated = match refund.state {
            WxRefundState::Success { .. } => WxRefundStatus::Success,
            WxRefundState::Closed => WxRefundStatus::Closed,
            WxRefundState::Abnormal => WxRefundStatus::Abnormal,
            WxRefundState::Processing => WxRefundStatus::Processing,
        };
        if stated != announced {
            return Err(NoticeError::Malformed(format!(
                "{} carries refund_status {}",
                notification.event_type,
                stated.as_str()
            )));
        }
        Ok(ChannelNotice::Refund(RefundNotice {
            event_type: notification.event_type,
            refund: channel_refund(refund),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::{
        model::ManualClock,
        wechat::{
            encrypt_resource, sign_response, ApiV3Key, PrivateKey, RetryPolicy, VerifyingKey,
            WechatPayConfig,
        },
    };

    const MERCHANT_KEY: &str =
        include_str!("../../tests/fixtures/wechatpay/java_merchant_private_key.pem");
    const PLATFORM_KEY: &str =
        include_str!("../../tests/fixtures/wechatpay/java_wechat_pay_private_key.pem");
    const PLATFORM_PUBLIC: &str =
        include_str!("../../tests/fixtures/wechatpay/java_wechat_pay_public_key.pem");
    /// The public test APIv3 key of the Java SDK's tests.
    const APIV3: &str = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
    const KEY_ID: &str = "PUB_KEY_ID_0000000000000024101100397200000006";
    const MCHID: &str = "1900000109";
    const NOW: i64 = 1_766_284_200;

    async fn client() -> WechatPayClient {
        let config = WechatPayConfig {
            base_url: "http://127.0.0.1:9".into(),
            mchid: MCHID.into(),
            appid: "wxd678efh567hg6787".into(),
            merchant_serial: "5F1C72E2A8931B72A2E13AF8DEE92471EB397115".into(),
            private_key: PrivateKey::from_pem(MERCHANT_KEY).unwrap(),
            apiv3_key: APIV3.parse().unwrap(),
            public_key: Some((
                KEY_ID.into(),
                VerifyingKey::from_spki_pem(PLATFORM_PUBLIC).unwrap(),
            )),
            notify_url: "https://pay.example.com/api/v1/notify/wechat".into(),
            retry: RetryPolicy::default(),
            timeout: WechatPayConfig::DEFAULT_TIMEOUT,
            connect_timeout: WechatPayConfig::DEFAULT_CONNECT_TIMEOUT,
        };
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix(NOW)));
        WechatPayClient::connect(config, clock).await.unwrap()
    }

    fn resource(status: &str, mchid: Option<&str>) -> serde_json::Value {
        let mut v = json!({"out_trade_no": "FP20251221103000ABC123",
            "transaction_id": "4200001417202206214219765470",
            "out_refund_no": "RF20251221103000XYZ789", "refund_id": "50300002272022062121864292533",
            "refund_status": status, "user_received_account": "支付用户零钱",
            "amount": {"total": 100, "refund": 30, "payer_total": 100, "payer_refund": 30}});
        if status == "SUCCESS" {
            v["success_time"] = json!("2025-12-21T10:31:00+08:00");
        }
        if let Some(m) = mchid {
            v["mchid"] = json!(m);
        }
        v
    }

    /// A signed notification; `encrypt_aad` is what the resource was encrypted with,
    /// `stated_aad` what the envelope says.
    fn notice(
        event: &str,
        plaintext: &serde_json::Value,
        encrypt_aad: &str,
        stated_aad: &str,
    ) -> (http::HeaderMap, Vec<u8>) {
        let key: ApiV3Key = APIV3.parse().unwrap();
        let mut resource = encrypt_resource(
            &key,
            "fixedNonce12",
            encrypt_aad,
            Some("refund"),
            plaintext.to_string().as_bytes(),
        )
        .unwrap();
        resource.associated_data = stated_aad.into();
        let body = Notification {
            id: "4a553265-1f28-53a3-9395-8d902b902462".into(),
            create_time: "2025-12-21T10:31:00+08:00".into(),
            event_type: event.into(),
            resource_type: "encrypt-resource".into(),
            resource,
            summary: "退款成功".into(),
        }
        .to_json()
        .unwrap();
        let platform = PrivateKey::from_pem(PLATFORM_KEY).unwrap();
        let signed = sign_response(&platform, KEY_ID, NOW, "nonce", body.as_bytes()).unwrap();
        let mut headers = http::HeaderMap::new();
        for (name, value) in signed.to_pairs() {
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        (headers, body.into_bytes())
    }

    #[tokio::test]
    async fn refund_notifications_are_verified_decrypted_and_read() {
        let client = client().await;
        let (h, b) = notice(
            "REFUND.SUCCESS",
            &resource("SUCCESS", Some(MCHID)),
            "refund",
            "refund",
        );
        let Ok(ChannelNotice::Refund(opened)) = client.open_notification(&h, &b).await else {
            panic!("not a refund notice");
        };
        assert_eq!(opened.event_type, "REFUND.SUCCESS");
        let r = opened.refund;
        assert_eq!(r.out_refund_no, "RF20251221103000XYZ789");
        assert_eq!(r.out_trade_no, "FP20251221103000ABC123");
        assert_eq!(r.refund_id, "50300002272022062121864292533");
        assert_eq!(
            r.state,
            ChannelRefundState::Succeeded {
                at: Timestamp::parse_rfc3339("2025-12-21T10:31:00+08:00").unwrap()
            }
        );
        assert_eq!((r.amount, r.total), (Fen::new(30), Fen::new(100)));
        assert_eq!(
            (r.payer_total, r.payer_refund),
            (Some(Fen::new(100)), Some(Fen::new(30)))
        );

        for (event, status, state) in [
            ("REFUND.ABNORMAL", "ABNORMAL", ChannelRefundState::Abnormal),
            ("REFUND.CLOSED", "CLOSED", ChannelRefundState::Closed),
        ] {
            let (h, b) = notice(event, &resource(status, Some(MCHID)), "refund", "refund");
            match client.open_notification(&h, &b).await {
                Ok(ChannelNotice::Refund(n)) => assert_eq!(n.refund.state, state),
                other => panic!("{event}: {other:?}"),
            }
        }
        // The associated data is whatever the envelope says (the official examples show "").
        let (h, b) = notice("REFUND.CLOSED", &resource("CLOSED", Some(MCHID)), "", "");
        assert!(matches!(
            client.open_notification(&h, &b).await,
            Ok(ChannelNotice::Refund(_))
        ));
    }

    #[tokio::test]
    async fn refund_notifications_that_do_not_check_out_are_refused() {
        let client = client().await;
        let ok = resource("SUCCESS", Some(MCHID));
        let open = |(h, b): (http::HeaderMap, Vec<u8>)| {
            let client = &client;
            async move { client.open_notification(&h, &b).await }
        };
        // Wrong associated data: the tag does not check.
        for (encrypted, stated) in [("refund", "transaction"), ("refund", ""), ("", "refund")] {
            assert!(
                matches!(
                    open(notice("REFUND.SUCCESS", &ok, encrypted, stated)).await,
                    Err(NoticeError::Malformed(_))
                ),
                "{encrypted:?} stated as {stated:?}"
            );
        }
        // A tampered signature (or body) fails before anything is read.
        let (mut h, b) = notice("REFUND.SUCCESS", &ok, "refund", "refund");
        let signature = h["wechatpay-signature"].to_str().unwrap().to_string();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        h.insert(
            "wechatpay-signature",
            format!("{flipped}{}", &signature[1..]).parse().unwrap(),
        );
        assert!(matches!(
            open((h, b)).await,
            Err(NoticeError::Unverified(_))
        ));
        let (h, mut b) = notice("REFUND.SUCCESS", &ok, "refund", "refund");
        b[3] ^= 1;
        assert!(matches!(
            open((h, b)).await,
            Err(NoticeError::Unverified(_))
        ));
        // Another merchant's, or no merchant named.
        for mchid in [Some("1900000999"), None] {
            assert!(matches!(
                open(notice(
                    "REFUND.SUCCESS",
                    &resource("SUCCESS", mchid),
                    "refund",
                    "refund"
                ))
                .await,
                Err(NoticeError::WrongMerchant(_))
            ));
        }
        // The event type and the status disagree; an unknown status; PROCESSING; malformed.
        let mut unknown = ok.clone();
        unknown["refund_status"] = json!("REFUNDED");
        let mut no_id = ok.clone();
        no_id.as_object_mut().unwrap().remove("refund_id");
        for (event, plaintext) in [
            ("REFUND.CLOSED", ok.clone()),
            ("REFUND.SUCCESS", unknown),
            ("REFUND.SUCCESS", resource("PROCESSING", Some(MCHID))),
            ("REFUND.SUCCESS", no_id),
            (
                "REFUND.SUCCESS",
                resource("SUCCESS", Some(MCHID))["amount"].clone(),
            ),
        ] {
            assert!(
                matches!(
                    open(notice(event, &plaintext, "refund", "refund")).await,
                    Err(NoticeError::Malformed(_))
                ),
                "{event} {plaintext}"
            );
        }
        // Other event types stay Other, unread.
        assert_eq!(
            open(notice("REFUND.SOMETHING", &ok, "refund", "refund")).await,
            Ok(ChannelNotice::Other {
                event_type: "REFUND.SOMETHING".into()
            })
        );
    }

    #[tokio::test]
    async fn an_unreachable_channel_makes_refunds_unavailable_never_failed() {
        let mut config_client = client().await;
        config_client.set_retry_for_tests(RetryPolicy {
            attempts: 1,
            base_delay: std::time::Duration::ZERO,
        });
        let request = RefundRequest {
            refund_no: crate::model::RefundNo::parse("RF20251221103000XYZ789").unwrap(),
            order_no: OrderNo::parse("FP20251221103000ABC123").unwrap(),
            amount: Fen::new(30),
            total: Fen::new(100),
            reason: None,
        };
        assert!(matches!(
            config_client.refund(&request).await,
            Err(RefundError::Unavailable(_))
        ));
        assert!(matches!(
            config_client.query_refund("RF20251221103000XYZ789").await,
            Err(RefundError::Unavailable(_))
        ));
        // A number WeChat could not have is refused before any call.
        assert!(matches!(
            config_client.query_refund("a/b").await,
            Err(RefundError::Rejected { .. })
        ));
    }
}
