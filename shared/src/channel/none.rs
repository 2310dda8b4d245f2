//! The channel of the functions that never talk to WeChat Pay (list, resend): it holds no key
//! and refuses every call, so those functions start without the WeChat Pay secret, and a code
//! path that reached for the channel there would fail loudly (a 5xx and a log line) instead of
//! needing the secret back.

use super::{
    ChannelError, ChannelNotice, ChannelRefund, CloseOutcome, JsapiPayParams, NoticeError,
    PayChannel, PrepayRequest, RefundError, RefundRequest, TradeState,
};
use crate::model::{Cause, OrderNo, PayCredential, Timestamp};

/// What every refused call says (in logs only: merchants see "Payment service unavailable").
pub const NO_CHANNEL: &str = "this function has no payment channel (it runs without the \
     WeChat Pay keys)";

/// A payment channel that refuses everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoChannel;

fn refused() -> ChannelError {
    ChannelError::Unavailable(Cause::new(NO_CHANNEL))
}

impl PayChannel for NoChannel {
    async fn prepay(&self, _: &PrepayRequest) -> Result<PayCredential, ChannelError> {
        Err(refused())
    }

    async fn query(&self, _: &OrderNo) -> Result<TradeState, ChannelError> {
        Err(refused())
    }

    async fn close(&self, _: &OrderNo) -> Result<CloseOutcome, ChannelError> {
        Err(refused())
    }

    fn jsapi_params(&self, _: &str, _: Timestamp) -> Result<JsapiPayParams, ChannelError> {
        Err(refused())
    }

    async fn refund(&self, _: &RefundRequest) -> Result<ChannelRefund, RefundError> {
        Err(RefundError::Unavailable(Cause::new(NO_CHANNEL)))
    }

    async fn query_refund(&self, _: &str) -> Result<Option<ChannelRefund>, RefundError> {
        Err(RefundError::Unavailable(Cause::new(NO_CHANNEL)))
    }

    async fn open_notification(
        &self,
        _: &super::NoticeHeaders,
        _: &[u8],
    ) -> Result<ChannelNotice, NoticeError> {
        Err(NoticeError::Unavailable(Cause::new(NO_CHANNEL)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fen, PayType};

    #[tokio::test]
    async fn every_call_is_refused_as_unavailable() {
        let no = OrderNo::parse("FP20251221103000ABC123").unwrap();
        let request = PrepayRequest {
            order_no: no.clone(),
            amount: Fen::new(100),
            description: "x".into(),
            pay_type: PayType::Native,
            openid: None,
            client_ip: None,
            expires_at: Timestamp::from_unix(1_766_000_000),
        };
        let unavailable = |e: ChannelError| matches!(e, ChannelError::Unavailable(_));
        assert!(unavailable(NoChannel.prepay(&request).await.unwrap_err()));
        assert!(unavailable(NoChannel.query(&no).await.unwrap_err()));
        assert!(unavailable(NoChannel.close(&no).await.unwrap_err()));
        assert!(unavailable(
            NoChannel
                .jsapi_params("wx1", Timestamp::from_unix(1))
                .unwrap_err()
        ));
        let refund = RefundRequest {
            refund_no: crate::model::RefundNo::parse("RF20251221103000ABC123").unwrap(),
            order_no: no.clone(),
            amount: Fen::new(1),
            total: Fen::new(100),
            reason: None,
        };
        assert!(matches!(
            NoChannel.refund(&refund).await,
            Err(RefundError::Unavailable(_))
        ));
        assert!(matches!(
            NoChannel.query_refund("RF20251221103000ABC123").await,
            Err(RefundError::Unavailable(_))
        ));
        let notice = NoChannel
            .open_notification(&http::HeaderMap::new(), b"{}")
            .await;
        assert!(matches!(notice, Err(NoticeError::Unavailable(_))));
    }
}
