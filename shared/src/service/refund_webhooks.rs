//! Refund webhooks (`refund.succeeded`, `refund.abnormal`, `refund.closed`): queued once per
//! final state of a refund, only for a merchant who subscribed to the event, and delivered by
//! the notify-worker like `order.paid` (same signature, schedule and attempt log), with the
//! refund's own webhook state instead of the order's.
//!
//! A refund has one webhook state ([`Refund::webhook`]). Its first final state is generation 0;
//! an abnormal refund WeChat Pay pays out later is a second event (`refund.succeeded`, its own
//! event id) in generation 1 ([`Refund::settle`] starts it), which supersedes what is left of
//! the abnormal event's jobs.

use serde::Serialize;

use super::{
    error::Error,
    webhook_jobs::refund_event,
    webhook_jobs::ATTEMPTS_SHOWN,
    webhook_worker::{Delivery, JobError, SkipReason, WebhookWorker},
    Backends, Ferrypay, WebhookJob,
};
use crate::{
    model::{
        AttemptResult, Fen, Merchant, Order, OrderNo, OutRefundNo, OutTradeNo, Refund, RefundNo,
        RefundReason, RefundRefused, RefundSource, RefundStatus, RefundWebhookUpdate, Timestamp,
        WebhookAttempt,
    },
    queue::{OutgoingMessage, Queue},
    store::{MerchantStore, OrderStore, RefundStore, UpdateRefundError, WebhookAttemptStore},
};

/// The refund inside a refund webhook: the same fields, names and formats as the API's refund
/// object (`{"refund": {...}}` of `POST /api/v1/pay/refund`).
#[derive(Debug, Serialize)]
pub struct RefundJson<'a> {
    pub refund_no: &'a RefundNo,
    pub out_refund_no: &'a Option<OutRefundNo>,
    pub order_no: &'a OrderNo,
    pub out_trade_no: &'a Option<OutTradeNo>,
    pub amount: Fen,
    pub status: RefundStatus,
    pub reason: &'a Option<RefundReason>,
    /// Beijing time, `yyyy-mm-dd HH:MM:SS`.
    pub created_at: String,
    pub succeeded_at: Option<String>,
    pub source: RefundSource,
}

impl<'a> From<&'a Refund> for RefundJson<'a> {
    fn from(refund: &'a Refund) -> Self {
        RefundJson {
            refund_no: &refund.refund_no,
            out_refund_no: &refund.out_refund_no,
            order_no: &refund.order_no,
            out_trade_no: &refund.out_trade_no,
            amount: refund.amount,
            status: refund.status,
            reason: &refund.reason,
            created_at: refund.created_at.to_beijing_string(),
            succeeded_at: refund.succeeded_at.map(Timestamp::to_beijing_string),
            source: refund.source,
        }
    }
}

/// The body of a `refund.*` webhook, from the refund and its order as they are now: the
/// order's amount, refunded sum and status, then the refund.
#[derive(Debug, Serialize)]
pub struct RefundWebhookBody<'a> {
    pub event: &'a str,
    pub order_no: &'a str,
    pub out_trade_no: Option<&'a str>,
    /// The order's amount.
    pub amount: i64,
    /// The order's succeeded refunds, in sum.
    pub refunded_amount: i64,
    /// The order's status (`paid`, or `refunded` once the whole amount is).
    pub status: &'a str,
    pub refund: RefundJson<'a>,
    pub attach: Option<&'a str>,
}

impl<'a> RefundWebhookBody<'a> {
    pub fn new(event: &'a str, order: &'a Order, refund: &'a Refund) -> Self {
        RefundWebhookBody {
            event,
            order_no: order.order_no.as_str(),
            out_trade_no: order.out_trade_no.as_ref().map(|o| o.as_str()),
            amount: order.amount.get(),
            refunded_amount: order.refunds.refunded.get(),
            status: order.status.as_str(),
            refund: RefundJson::from(refund),
            attach: order.attach.as_deref(),
        }
    }
}

impl<B: Backends> Ferrypay<B> {
    /// Queues the webhook of `refund`'s final state unless there is none to send, then
    /// records it on the refund; returns the refund as it is then. Call it after every write
    /// that may leave a refund final (settling it, recording one made outside ferrypay) and,
    /// to heal a crash between the two writes, whenever a final refund is read.
    ///
    /// Nothing is queued (the refund is returned as given) while the refund is processing,
    /// when this generation's job was queued before (`webhook.queued_at`), or when its merchant
    /// did not subscribe to the event (`notify_events`). Otherwise the job is queued first and
    /// the refund records it after: a crash in between queues it again on the next call, with
    /// the same event id (`evt_{refund_no}_{status}`), and the worker sends it once.
    pub async fn ensure_refund_webhook_queued(&self, refund: Refund) -> Result<Refund, Error> {
        if !refund.status.is_final() || refund.webhook.queued_at.is_some() {
            return Ok(refund);
        }
        let merchant = self
            .store
            .get_merchant(&refund.merchant_id)
            .await?
            .ok_or_else(|| {
                Error::internal(format_args!(
                    "refund {} of unknown merchant {}",
                    refund.refund_no, refund.merchant_id
                ))
            })?;
        self.queue_refund_webhook_for(refund, &merchant).await
    }

    /// [`Ferrypay::ensure_refund_webhook_queued`] with the refund's merchant already at hand
    /// (the merchant API's calls): no read of it.
    pub async fn queue_refund_webhook_for(
        &self,
        refund: Refund,
        merchant: &Merchant,
    ) -> Result<Refund, Error> {
        let Some(job) = WebhookJob::refund_final(&refund) else {
            return Ok(refund);
        };
        if refund.webhook.queued_at.is_some() {
            return Ok(refund);
        }
        if !subscribed(merchant, &refund) {
            tracing::debug!(refund_no = %refund.refund_no, event = %job.event, "merchant not subscribed: no refund webhook");
            return Ok(refund);
        }
        let body = serde_json::to_string(&job)
            .map_err(|e| Error::internal(format_args!("webhook job does not serialise: {e}")))?;
        self.queue.send(&OutgoingMessage::now(body)).await?;
        let update = RefundWebhookUpdate::Queued {
            generation: refund.webhook.generation,
            at: self.clock.now(),
        };
        match self
            .store
            .update_refund_webhook(&refund.refund_no, &update)
            .await
        {
            Ok(updated) => Ok(updated),
            // The abnormal refund succeeded meanwhile: that settle's caller queues the new
            // generation's job; this one's will be skipped as superseded.
            Err(UpdateRefundError::Refused {
                current,
                reason: RefundRefused::WebhookSuperseded { .. },
            }) => Ok(*current),
            Err(UpdateRefundError::Store(e)) => Err(e.into()),
            Err(e) => Err(Error::internal(format_args!(
                "could not record the queued webhook of refund {}: {e}",
                refund.refund_no
            ))),
        }
    }

    /// The latest delivery attempts of a refund's webhook, newest first.
    pub async fn refund_webhook_attempts(
        &self,
        refund: &Refund,
    ) -> Result<Vec<WebhookAttempt>, Error> {
        Ok(self
            .store
            .refund_webhook_attempts(&refund.order_no, &refund.refund_no, ATTEMPTS_SHOWN)
            .await?)
    }
}

/// Whether the refund's merchant takes the event of the refund's state.
fn subscribed(merchant: &Merchant, refund: &Refund) -> bool {
    refund_event(refund.status).is_some_and(|event| merchant.notify_events.contains(event))
}

impl<S, Q> WebhookWorker<'_, S, Q>
where
    S: MerchantStore + OrderStore + RefundStore + WebhookAttemptStore,
    Q: Queue,
{
    /// What a refund job sends, or why it sends nothing: the refund's webhook state decides
    /// as the order's does for order jobs, and a merchant no longer subscribed gets nothing.
    pub(super) async fn prepare_refund(
        &self,
        job: &WebhookJob,
        refund_no: &RefundNo,
    ) -> Result<Result<Delivery, SkipReason>, JobError> {
        let refund = self
            .store()
            .get_refund(refund_no)
            .await?
            .ok_or_else(|| JobError::RefundNotFound(refund_no.clone()))?;
        if refund.order_no != job.order_no {
            return Err(JobError::Malformed(format!(
                "job names order {} for refund {refund_no} of order {}",
                job.order_no, refund.order_no
            )));
        }
        let Some(current) = WebhookJob::refund_final(&refund) else {
            return Err(JobError::RefundNotFinal(refund_no.clone()));
        };
        if let Some(skip) = super::webhook_worker::skip_reason(job, &refund.webhook).map_err(
            |(job_generation, current)| JobError::AheadOfRefund {
                refund_no: refund_no.clone(),
                job: job_generation,
                refund: current,
            },
        )? {
            return Ok(Err(skip));
        }
        // Same generation, another event: cannot happen (a new final state is a new
        // generation); the refund's state is the truth, so this job sends nothing.
        if current.event_id != job.event_id {
            tracing::warn!(%refund_no, job_event = %job.event_id, refund_event = %current.event_id, "refund job of another event than the refund's");
            return Ok(Err(SkipReason::Superseded));
        }
        let merchant = self
            .store()
            .get_merchant(&refund.merchant_id)
            .await?
            .ok_or_else(|| JobError::MerchantNotFound {
                order_no: refund.order_no.clone(),
                merchant_id: refund.merchant_id.clone(),
            })?;
        if !subscribed(&merchant, &refund) {
            tracing::info!(%refund_no, event = %job.event, merchant_id = %merchant.id, "merchant not subscribed (any more): refund webhook not sent");
            return Ok(Err(SkipReason::NotSubscribed));
        }
        let order = self
            .store()
            .get_order(&refund.order_no)
            .await?
            .ok_or_else(|| JobError::OrderNotFound(refund.order_no.clone()))?;
        let body = serde_json::to_vec(&RefundWebhookBody::new(&job.event, &order, &refund))
            .map_err(|e| format!("body does not serialise: {e}"));
        Ok(Ok(Delivery {
            url: order
                .notify_url
                .clone()
                .or_else(|| merchant.notify_url.clone()),
            body,
            merchant,
        }))
    }

    /// Records the attempt's result on the refund.
    pub(super) async fn record_on_refund(
        &self,
        job: &WebhookJob,
        refund_no: &RefundNo,
        attempt: u32,
        at: Timestamp,
        result: AttemptResult,
    ) -> Result<(), JobError> {
        let update = RefundWebhookUpdate::Attempt {
            generation: job.generation,
            attempt,
            at,
            result,
        };
        match self.store().update_refund_webhook(refund_no, &update).await {
            Ok(_) => Ok(()),
            // The abnormal refund succeeded meanwhile: the new generation's jobs take over.
            Err(UpdateRefundError::Refused {
                reason: RefundRefused::WebhookSuperseded { .. },
                ..
            }) => Ok(()),
            Err(UpdateRefundError::Refused { reason, .. }) => {
                tracing::error!(%refund_no, %reason, "the refund refused to record a webhook attempt");
                Ok(())
            }
            Err(UpdateRefundError::NotFound) => Err(JobError::RefundNotFound(refund_no.clone())),
            Err(UpdateRefundError::Conflict) => Err(JobError::RefundConflict(refund_no.clone())),
            Err(UpdateRefundError::Store(e)) => Err(e.into()),
        }
    }
}
