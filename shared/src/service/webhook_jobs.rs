//! Merchant webhooks, the queueing side: every payment queues exactly one job, even across a
//! crash between the payment write and the enqueue. (The notify-worker delivers them.)

use serde::{Deserialize, Serialize};

use super::{error::Error, Backends, Ferrypay, OrderRef};
use crate::{
    model::{
        Merchant, Order, OrderNo, OrderStatus, OrderUpdate, Refund, RefundNo, RefundStatus,
        Timestamp, UpdateRefused, WebhookAttempt, WebhookEvent,
    },
    queue::{OutgoingMessage, Queue},
    store::{OrderStore, UpdateOrderError, WebhookAttemptStore},
};

/// How many attempts a query shows (newest first); the store keeps them all for 90 days.
pub const ATTEMPTS_SHOWN: u32 = 20;

pub const WEBHOOK_JOB_VERSION: u32 = 1;

/// A notify-queue message: versioned, and carrying ids only (the worker loads the order, so a
/// retry always sends the order as it is). A refund event's job also names the refund
/// (`refund_no`, absent from order jobs, so jobs queued before refunds existed read as they
/// were: still version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookJob {
    pub v: u32,
    /// The Standard Webhooks `webhook-id`: the same on every retry of one event.
    pub event_id: String,
    pub event: String,
    pub order_no: OrderNo,
    /// The refund of a `refund.*` event (its webhook state is the refund's, not the order's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_no: Option<RefundNo>,
    /// The order's (or the refund's) webhook generation this job belongs to (a resend starts
    /// a new one; so does an abnormal refund's later success).
    pub generation: u32,
    /// Delivery attempts made so far in this generation.
    pub attempt: u32,
    /// Not to be delivered before this time (waits longer than the queue's delay cap hop).
    pub not_before: Option<Timestamp>,
}

impl WebhookJob {
    pub fn order_paid(order_no: &OrderNo, generation: u32) -> Self {
        WebhookJob {
            v: WEBHOOK_JOB_VERSION,
            event_id: format!("evt_{order_no}_paid"),
            event: "order.paid".into(),
            order_no: order_no.clone(),
            refund_no: None,
            generation,
            attempt: 0,
            not_before: None,
        }
    }

    /// The job of `refund`'s final state (`None` while it is processing), for its current
    /// webhook generation. The event id is stable per refund event:
    /// `evt_{refund_no}_{succeeded|abnormal|closed}`.
    pub fn refund_final(refund: &Refund) -> Option<Self> {
        let event = refund_event(refund.status)?;
        Some(WebhookJob {
            v: WEBHOOK_JOB_VERSION,
            event_id: format!("evt_{}_{}", refund.refund_no, refund.status.as_str()),
            event: event.as_str().into(),
            order_no: refund.order_no.clone(),
            refund_no: Some(refund.refund_no.clone()),
            generation: refund.webhook.generation,
            attempt: 0,
            not_before: None,
        })
    }
}

/// The webhook event of a refund in `status`: none while processing.
pub fn refund_event(status: RefundStatus) -> Option<WebhookEvent> {
    match status {
        RefundStatus::Processing => None,
        RefundStatus::Succeeded => Some(WebhookEvent::RefundSucceeded),
        RefundStatus::Abnormal => Some(WebhookEvent::RefundAbnormal),
        RefundStatus::Closed => Some(WebhookEvent::RefundClosed),
    }
}

impl<B: Backends> Ferrypay<B> {
    /// `POST /api/v1/pay/notify/resend`: sends the webhook of a paid order again, as a new
    /// generation with a fresh schedule (same `webhook-id`: it is the same event). Jobs of the
    /// earlier generation still queued send nothing.
    pub async fn resend_webhook(&self, merchant: &Merchant, by: &OrderRef) -> Result<Order, Error> {
        let order = self.find_owned(merchant, by).await?;
        if order.status != OrderStatus::Paid {
            return Err(Error::OrderNotPaid);
        }
        let restarted = match self
            .store
            .update_order(&order.order_no, &OrderUpdate::RestartWebhook)
            .await
        {
            Ok(order) => order,
            Err(UpdateOrderError::Refused { .. }) => return Err(Error::OrderNotPaid),
            Err(UpdateOrderError::NotFound) => return Err(Error::OrderNotFound),
            Err(UpdateOrderError::Store(e)) => return Err(e.into()),
        };
        tracing::info!(order_no = %order.order_no, generation = restarted.webhook.generation, "webhook resend requested");
        self.ensure_webhook_queued(restarted).await
    }

    /// The latest delivery attempts of an order's webhook, newest first.
    pub async fn webhook_attempts(&self, order: &Order) -> Result<Vec<WebhookAttempt>, Error> {
        if !order.has_webhook() {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .webhook_attempts(&order.order_no, ATTEMPTS_SHOWN)
            .await?)
    }

    /// Queues the `order.paid` webhook of a paid order unless that was done before, then
    /// records it on the order. A crash in between queues it again on the next try: the job
    /// carries a stable event id, so the worker sends it once.
    pub async fn ensure_webhook_queued(&self, order: Order) -> Result<Order, Error> {
        if order.status != OrderStatus::Paid || order.webhook.queued_at.is_some() {
            return Ok(order);
        }
        let job = WebhookJob::order_paid(&order.order_no, order.webhook.generation);
        let body = serde_json::to_string(&job)
            .map_err(|e| Error::internal(format_args!("webhook job does not serialise: {e}")))?;
        self.queue.send(&OutgoingMessage::now(body)).await?;
        let update = OrderUpdate::RecordWebhookQueued {
            generation: order.webhook.generation,
            at: self.clock.now(),
        };
        match self.store.update_order(&order.order_no, &update).await {
            Ok(updated) => Ok(updated),
            // A concurrent resend started a newer generation; it queues its own job.
            Err(UpdateOrderError::Refused {
                current,
                reason: UpdateRefused::WebhookSuperseded { .. },
            }) => Ok(*current),
            Err(UpdateOrderError::Store(e)) => Err(e.into()),
            Err(e) => Err(Error::internal(format_args!(
                "could not record the queued webhook of {}: {e}",
                order.order_no
            ))),
        }
    }
}
