//! Notifications from the channel (WeChat Pay's callback): verify, decrypt, check, then for a
//! payment the conditional `pending -> paid` write and the merchant-webhook job, for a refund
//! its conditional settlement (or the record of a refund made outside ferrypay).

use super::{Backends, Error, Ferrypay, RefundNoticeOutcome, Settlement};
use crate::{
    channel::{
        ChannelError, ChannelNotice, NoticeError, NoticeHeaders, NoticeTrade, PayChannel, Payment,
    },
    model::{OrderNo, RefundNo},
    store::OrderStore,
};

/// How a notification that was answered with success was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// The order is paid (now, or it already was: a duplicate) and its webhook is queued.
    Paid { order_no: OrderNo },
    /// Not a payment, or not a successful one: acknowledged, logged, nothing changed.
    Ignored { reason: String },
    /// A payment the order cannot take (other amount, already closed): logged loudly as an
    /// anomaly for an operator, nothing changed. Retrying would not help, so it is acknowledged.
    Anomaly { order_no: OrderNo },
    /// A refund is in the state the notification states (now, or already: a duplicate), or a
    /// refund made outside ferrypay is recorded.
    Refund { refund_no: RefundNo },
    /// A refund notification that contradicts ferrypay's refund (another order or amount):
    /// logged as an anomaly, nothing changed, acknowledged.
    RefundAnomaly { refund_no: RefundNo },
}

/// A notification answered with an error. WeChat Pay retries these.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("signature verification failed")]
    Unverified,
    #[error("malformed notification")]
    Malformed,
    #[error("notification for another merchant")]
    WrongMerchant,
    #[error("unknown order")]
    UnknownOrder,
    /// Our side failed (storage, queue, certificates): WeChat Pay should try again. The cause
    /// is logged where the answer is written.
    #[error("temporarily unable to process")]
    Retry(#[source] Error),
}

impl<B: Backends> Ferrypay<B> {
    /// Handles one notification, idempotently: duplicates change nothing and queue nothing new.
    pub async fn handle_channel_notification(
        &self,
        headers: &NoticeHeaders,
        body: &[u8],
    ) -> Result<NoticeOutcome, NotifyError> {
        let notice = self
            .channel
            .open_notification(headers, body)
            .await
            .map_err(|err| {
                let refused = match err {
                    NoticeError::Unverified(_) => NotifyError::Unverified,
                    NoticeError::Malformed(_) => NotifyError::Malformed,
                    NoticeError::WrongMerchant(_) => NotifyError::WrongMerchant,
                    NoticeError::Unavailable(detail) => {
                        return NotifyError::Retry(ChannelError::Unavailable(detail).into())
                    }
                };
                tracing::warn!(error = %err, "notification refused");
                refused
            })?;
        let payment = match notice {
            ChannelNotice::Payment(payment) => payment,
            ChannelNotice::Refund(notice) => {
                return match self.handle_refund_notice(&notice.refund).await {
                    Ok(
                        RefundNoticeOutcome::Settled { refund_no }
                        | RefundNoticeOutcome::RecordedExternal { refund_no },
                    ) => Ok(NoticeOutcome::Refund { refund_no }),
                    Ok(RefundNoticeOutcome::Anomaly { refund_no }) => {
                        Ok(NoticeOutcome::RefundAnomaly { refund_no })
                    }
                    // Logged as an anomaly; WeChat Pay retries, as for an unknown payment.
                    Err(Error::OrderNotFound) => Err(NotifyError::UnknownOrder),
                    Err(e) => Err(NotifyError::Retry(e)),
                };
            }
            ChannelNotice::Other { event_type } => {
                tracing::warn!(%event_type, "notification of an event ferrypay does not handle yet; acknowledged");
                return Ok(NoticeOutcome::Ignored {
                    reason: format!("event {event_type}"),
                });
            }
        };
        let (transaction_id, amount, paid_at) = match payment.trade {
            NoticeTrade::Paid {
                transaction_id,
                amount,
                paid_at,
            } => (transaction_id, amount, paid_at),
            NoticeTrade::NotPaid { trade_state } => {
                tracing::info!(out_trade_no = %payment.out_trade_no, %trade_state, "non-success transaction notification; acknowledged");
                return Ok(NoticeOutcome::Ignored {
                    reason: format!("trade_state {trade_state}"),
                });
            }
        };
        let order = match OrderNo::parse(&payment.out_trade_no) {
            Some(no) => self
                .store
                .get_order(&no)
                .await
                .map_err(|e| NotifyError::Retry(e.into()))?,
            None => None,
        };
        let Some(order) = order else {
            tracing::error!(
                anomaly = true,
                out_trade_no = %payment.out_trade_no,
                %transaction_id,
                amount = amount.get(),
                "ANOMALY: WeChat Pay reports a payment for an order ferrypay does not know"
            );
            return Err(NotifyError::UnknownOrder);
        };
        let order_no = order.order_no.clone();
        let payment = Payment {
            transaction_id,
            paid_at: paid_at.unwrap_or_else(|| self.clock.now()),
            amount,
        };
        match self
            .settle_payment(order, payment)
            .await
            .map_err(NotifyError::Retry)?
        {
            Settlement::Paid(_) => Ok(NoticeOutcome::Paid { order_no }),
            // Paid, but unqueued: WeChat Pay's retry queues it (the write is not repeated).
            Settlement::PaidWebhookNotQueued { cause, .. } => Err(NotifyError::Retry(cause)),
            Settlement::Refused { .. } => Ok(NoticeOutcome::Anomaly { order_no }),
        }
    }
}
