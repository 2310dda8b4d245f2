//! Merchant webhooks, the delivering side (the notify-worker): one queue message in, at most
//! one signed POST out, the attempt recorded, the next attempt queued on the retry schedule.
//!
//! Every step tolerates the at-least-once queue. A job whose attempt was already made (an SQS
//! redelivery after the next job was queued), whose generation a resend replaced, or whose
//! webhook is already delivered or given up sends nothing. On a failed attempt the next job is
//! queued *before* the order records the attempt: a crash in between repeats the attempt (the
//! merchant sees the same `webhook-id` twice, which the specification asks receivers to dedupe)
//! rather than ending the chain. A message that cannot be handled (malformed, unknown order,
//! storage down) is reported as failed: SQS redelivers it and, after the queue's
//! `maxReceiveCount`, moves it to the dead-letter queue. Nothing is dropped silently.
//!
//! A refund event's job (one with `refund_no`) goes the same way with the refund's webhook
//! state and its own attempt log; what differs is in `refund_webhooks`.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;

use super::{retry::RetrySchedule, WebhookJob, WEBHOOK_JOB_VERSION};
use crate::{
    model::{
        AttemptResult, Clock, Merchant, MerchantId, Order, OrderNo, OrderUpdate, RefundNo,
        Timestamp, UpdateRefused, WebhookAttempt, WebhookState, WebhookStatus,
    },
    outbound::{OutboundClient, OutboundError, OutboundPolicy},
    queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage, MAX_DELAY},
    sign::webhook::signature_header,
    store::{
        MerchantStore, OrderStore, RefundStore, StoreError, UpdateOrderError, WebhookAttemptStore,
    },
};

/// A receiver gets this long to answer (DESIGN.md).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// A jitter draw in `[-1, 1]` (see [`RetrySchedule::next_wait`]).
pub type JitterSource = fn() -> f64;

/// A uniform draw from the system's random source; 0 (no jitter) if it fails.
pub fn random_jitter() -> f64 {
    crate::model::random_bytes::<2>()
        .map(|bytes| f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX) * 2.0 - 1.0)
        .unwrap_or(0.0)
}

/// How webhooks are sent: the SSRF-guarded client and the retry schedule. Built once per
/// process and shared.
pub struct WebhookSender {
    client: OutboundClient,
    schedule: RetrySchedule,
    jitter: JitterSource,
}

impl WebhookSender {
    pub fn new(policy: OutboundPolicy, schedule: RetrySchedule) -> Result<Self, OutboundError> {
        Ok(WebhookSender {
            client: OutboundClient::new(policy, WEBHOOK_TIMEOUT)?,
            schedule,
            jitter: random_jitter,
        })
    }

    /// With another client (tests: shorter timeouts) and jitter source.
    pub fn with_client(
        client: OutboundClient,
        schedule: RetrySchedule,
        jitter: JitterSource,
    ) -> Self {
        WebhookSender {
            client,
            schedule,
            jitter,
        }
    }

    pub fn schedule(&self) -> &RetrySchedule {
        &self.schedule
    }
}

/// What handling one job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Delivered {
        attempt: u32,
    },
    /// The attempt failed; the next one is queued after `wait`.
    Retrying {
        attempt: u32,
        wait: Duration,
    },
    /// The attempt failed and was the schedule's last.
    GaveUp {
        attempt: u32,
    },
    /// Not due yet: queued again for the rest of the wait (waits over SQS's 15 minutes hop).
    Hopped {
        remaining: Duration,
    },
    /// Nothing to send.
    Skipped(SkipReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    AlreadyDelivered,
    AlreadyFailed,
    /// This attempt was made before (the job is a redelivered copy).
    AlreadyAttempted,
    /// A resend started a newer generation (or, for a refund, its later success did).
    Superseded,
    /// A refund event the merchant did not subscribe to (or no longer does).
    NotSubscribed,
}

/// Why a job could not be handled: the message goes back to the queue (and, if it keeps
/// failing, to the dead-letter queue).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("malformed webhook job: {0}")]
    Malformed(String),
    #[error("webhook job for unknown order {0}")]
    OrderNotFound(OrderNo),
    #[error("webhook job for order {order_no} of unknown merchant {merchant_id}")]
    MerchantNotFound {
        order_no: OrderNo,
        merchant_id: MerchantId,
    },
    /// The job is of a generation the order does not know yet (its resend is still being
    /// recorded): try again later.
    #[error("webhook job of generation {job} is ahead of order {order_no}'s {order}")]
    AheadOfOrder {
        order_no: OrderNo,
        job: u32,
        order: u32,
    },
    #[error("webhook job for unknown refund {0}")]
    RefundNotFound(RefundNo),
    /// A refund job for a refund still processing (jobs are queued for final refunds only).
    #[error("webhook job for refund {0}, which is not final")]
    RefundNotFinal(RefundNo),
    #[error("webhook job of generation {job} is ahead of refund {refund_no}'s {refund}")]
    AheadOfRefund {
        refund_no: RefundNo,
        job: u32,
        refund: u32,
    },
    /// The refund kept changing while its attempt was being recorded: try again later.
    #[error("refund {0} kept changing; its webhook attempt is not recorded")]
    RefundConflict(RefundNo),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not queue the next attempt: {0}")]
    Queue(#[from] QueueError),
}

/// The body of an `order.paid` webhook (DESIGN.md), from the order as it is now.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    pub event: &'a str,
    pub order_no: &'a str,
    pub out_trade_no: Option<&'a str>,
    pub amount: i64,
    pub status: &'a str,
    pub transaction_id: Option<&'a str>,
    pub paid_at: Option<String>,
    pub attach: Option<&'a str>,
    /// `api`, `link` (unsigned: check the amount) or `signed_link`.
    pub source: &'a str,
}

impl<'a> WebhookBody<'a> {
    pub fn new(event: &'a str, order: &'a Order) -> Self {
        WebhookBody {
            event,
            order_no: order.order_no.as_str(),
            out_trade_no: order.out_trade_no.as_ref().map(|o| o.as_str()),
            amount: order.amount.get(),
            status: order.status.as_str(),
            transaction_id: order.transaction_id.as_deref(),
            paid_at: order.paid_at.map(Timestamp::to_beijing_string),
            attach: order.attach.as_deref(),
            source: order.source.as_str(),
        }
    }
}

/// What a due job sends: where, the body (or why there is none), and whose secrets sign it.
pub(super) struct Delivery {
    /// `None` when neither the order nor the merchant has a notify URL.
    pub url: Option<String>,
    pub body: Result<Vec<u8>, String>,
    pub merchant: Merchant,
}

/// One message of a batch, as the queue handed it over.
#[derive(Debug, Clone)]
pub struct BatchMessage {
    pub message_id: String,
    pub body: String,
}

/// The worker over one store and queue (borrowed: the dev stack shares its services').
pub struct WebhookWorker<'a, S, Q> {
    store: &'a S,
    queue: &'a Q,
    clock: &'a dyn Clock,
    sender: &'a WebhookSender,
}

/// Reads the merchant (its webhook secret), moves the order's (or refund's) webhook state, logs
/// each attempt.
impl<'a, S, Q> WebhookWorker<'a, S, Q>
where
    S: MerchantStore + OrderStore + RefundStore + WebhookAttemptStore,
    Q: Queue,
{
    pub fn new(
        store: &'a S,
        queue: &'a Q,
        clock: &'a dyn Clock,
        sender: &'a WebhookSender,
    ) -> Self {
        WebhookWorker {
            store,
            queue,
            clock,
            sender,
        }
    }

    pub(super) fn store(&self) -> &'a S {
        self.store
    }

    /// Handles a batch concurrently (each POST may take its full timeout); returns the ids of
    /// the messages to hand back to the queue (SQS's partial batch response).
    pub async fn handle_batch(&self, messages: &[BatchMessage]) -> Vec<String> {
        let results = join_all(messages.iter().map(|m| self.handle_message(&m.body))).await;
        messages
            .iter()
            .zip(results)
            .filter_map(|(message, result)| match result {
                Ok(outcome) => {
                    tracing::debug!(message_id = %message.message_id, ?outcome, "webhook job handled");
                    None
                }
                Err(error) => {
                    tracing::error!(message_id = %message.message_id, %error, "webhook job failed; it goes back to the queue");
                    Some(message.message_id.clone())
                }
            })
            .collect()
    }

    /// One round of what Lambda's SQS event source does with received messages: handle them as
    /// a batch, delete the handled ones, leave the failed ones to come back after the visibility
    /// timeout (and, after too many receives, go to the dead-letter queue). Returns the failed
    /// ids. A delete that fails is only logged: the message comes back and sends nothing more.
    pub async fn handle_received(&self, received: &[ReceivedMessage]) -> Vec<String> {
        let batch: Vec<BatchMessage> = received
            .iter()
            .map(|m| BatchMessage {
                message_id: m.message_id.clone(),
                body: m.body.clone(),
            })
            .collect();
        let failed = self.handle_batch(&batch).await;
        for message in received.iter().filter(|m| !failed.contains(&m.message_id)) {
            if let Err(error) = self.queue.delete(&message.receipt).await {
                tracing::error!(message_id = %message.message_id, %error, "could not delete a handled webhook job");
            }
        }
        failed
    }

    /// Handles one queue message.
    pub async fn handle_message(&self, body: &str) -> Result<JobOutcome, JobError> {
        let job: WebhookJob =
            serde_json::from_str(body).map_err(|e| JobError::Malformed(e.to_string()))?;
        if job.v != WEBHOOK_JOB_VERSION {
            return Err(JobError::Malformed(format!("unknown version {}", job.v)));
        }
        self.handle_job(&job).await
    }

    pub async fn handle_job(&self, job: &WebhookJob) -> Result<JobOutcome, JobError> {
        let now = self.clock.now();
        if let Some(not_before) = job.not_before.filter(|t| *t > now) {
            let remaining = secs(not_before.unix() - now.unix());
            self.enqueue(job, remaining).await?;
            return Ok(JobOutcome::Hopped { remaining });
        }
        let prepared = match &job.refund_no {
            None => self.prepare_order(job).await?,
            Some(refund_no) => self.prepare_refund(job, refund_no).await?,
        };
        let delivery = match prepared {
            Ok(delivery) => delivery,
            Err(skip) => return Ok(JobOutcome::Skipped(skip)),
        };
        let order_no = &job.order_no;
        let refund_no = job.refund_no.as_ref();

        let attempt = job.attempt.saturating_add(1);
        let record = self.attempt(job, attempt, delivery).await;
        match refund_no {
            None => self.store.record_webhook_attempt(&record.log).await?,
            Some(no) => {
                self.store
                    .record_refund_webhook_attempt(no, &record.log)
                    .await?
            }
        }

        if record.log.delivered {
            self.record_result(job, attempt, now, AttemptResult::Delivered)
                .await?;
            tracing::info!(%order_no, ?refund_no, attempt, "webhook delivered");
            return Ok(JobOutcome::Delivered { attempt });
        }
        let next = self.sender.schedule.next_attempt(
            attempt,
            now,
            (self.sender.jitter)(),
            record.retry_after,
        );
        let Some((wait, next_at)) = next else {
            self.record_result(job, attempt, now, AttemptResult::GaveUp)
                .await?;
            tracing::warn!(%order_no, ?refund_no, attempt, "webhook failed for good: the retry schedule is used up");
            return Ok(JobOutcome::GaveUp { attempt });
        };
        let next = WebhookJob {
            attempt,
            not_before: (wait > MAX_DELAY).then_some(next_at),
            ..job.clone()
        };
        self.enqueue(&next, wait).await?;
        self.record_result(job, attempt, now, AttemptResult::Retrying { next_at })
            .await?;
        tracing::info!(%order_no, ?refund_no, attempt, ?wait, "webhook attempt failed; retrying");
        Ok(JobOutcome::Retrying { attempt, wait })
    }

    /// What an order job sends, or why it sends nothing.
    async fn prepare_order(
        &self,
        job: &WebhookJob,
    ) -> Result<Result<Delivery, SkipReason>, JobError> {
        let order = self
            .store
            .get_order(&job.order_no)
            .await?
            .ok_or_else(|| JobError::OrderNotFound(job.order_no.clone()))?;
        let skip = skip_reason(job, &order.webhook).map_err(|(job, order_generation)| {
            JobError::AheadOfOrder {
                order_no: order.order_no.clone(),
                job,
                order: order_generation,
            }
        })?;
        if let Some(skip) = skip {
            return Ok(Err(skip));
        }
        let merchant = self
            .store
            .get_merchant(&order.merchant_id)
            .await?
            .ok_or_else(|| JobError::MerchantNotFound {
                order_no: order.order_no.clone(),
                merchant_id: order.merchant_id.clone(),
            })?;
        let body = serde_json::to_vec(&WebhookBody::new(&job.event, &order))
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

    /// Signs and POSTs the webhook once.
    async fn attempt(&self, job: &WebhookJob, attempt: u32, delivery: Delivery) -> Attempted {
        let now = self.clock.now();
        let Delivery {
            url,
            body,
            merchant,
        } = delivery;
        let mut log = WebhookAttempt {
            order_no: job.order_no.clone(),
            event_id: job.event_id.clone(),
            generation: job.generation,
            attempt,
            at: now,
            url: url.clone(),
            status_code: None,
            latency_ms: 0,
            response: None,
            error: None,
            delivered: false,
        };
        let Some(url) = url else {
            log.error =
                Some("no notify URL: the order has none and neither has the merchant".into());
            return Attempted {
                log,
                retry_after: None,
            };
        };
        let body = match body {
            Ok(body) => body,
            Err(e) => {
                log.error = Some(e);
                return Attempted {
                    log,
                    retry_after: None,
                };
            }
        };
        // Sealed: this process was not given the webhook data key (a deployment error, logged
        // as the attempt's failure and retried on the schedule).
        let secrets = match merchant.webhook_signing_secrets(now) {
            Ok(secrets) => secrets,
            Err(e) => {
                log.error = Some(e.to_string());
                return Attempted {
                    log,
                    retry_after: None,
                };
            }
        };
        let signature = match signature_header(&secrets, &job.event_id, now.unix(), &body) {
            Ok(signature) => signature,
            Err(e) => {
                log.error = Some(format!("merchant webhook secret unusable: {e}"));
                return Attempted {
                    log,
                    retry_after: None,
                };
            }
        };
        let headers = [
            ("webhook-id", job.event_id.clone()),
            ("webhook-timestamp", now.unix().to_string()),
            ("webhook-signature", signature),
        ];
        let started = Instant::now();
        match self.sender.client.post_json(&url, &headers, body).await {
            Ok(answer) => {
                log.status_code = Some(answer.status);
                log.latency_ms = millis(answer.latency);
                log.response = Some(answer.body_prefix);
                log.delivered = (200..300).contains(&answer.status);
                Attempted {
                    log,
                    retry_after: answer.retry_after,
                }
            }
            Err(error) => {
                log.latency_ms = millis(started.elapsed());
                log.error = Some(error.to_string());
                Attempted {
                    log,
                    retry_after: None,
                }
            }
        }
    }

    /// Records the attempt's result on the job's order or refund.
    async fn record_result(
        &self,
        job: &WebhookJob,
        attempt: u32,
        at: Timestamp,
        result: AttemptResult,
    ) -> Result<(), JobError> {
        match &job.refund_no {
            None => self.record_on_order(job, attempt, at, result).await,
            Some(refund_no) => {
                self.record_on_refund(job, refund_no, attempt, at, result)
                    .await
            }
        }
    }

    async fn record_on_order(
        &self,
        job: &WebhookJob,
        attempt: u32,
        at: Timestamp,
        result: AttemptResult,
    ) -> Result<(), JobError> {
        let update = OrderUpdate::RecordWebhookAttempt {
            generation: job.generation,
            attempt,
            at,
            result,
        };
        match self.store.update_order(&job.order_no, &update).await {
            Ok(_) => Ok(()),
            // A resend replaced this generation meanwhile: its own jobs take over.
            Err(UpdateOrderError::Refused {
                reason: UpdateRefused::WebhookSuperseded { .. },
                ..
            }) => Ok(()),
            Err(UpdateOrderError::NotFound) => Err(JobError::OrderNotFound(job.order_no.clone())),
            // Not paid any more: the attempt was made and logged; there is nothing to retry.
            Err(UpdateOrderError::Refused { reason, .. }) => {
                tracing::error!(order_no = %job.order_no, %reason, "the order refused to record a webhook attempt");
                Ok(())
            }
            Err(UpdateOrderError::Store(e)) => Err(e.into()),
        }
    }

    /// Queues `job` to arrive after `wait` (at most SQS's delay; `not_before` covers the rest).
    async fn enqueue(&self, job: &WebhookJob, wait: Duration) -> Result<(), JobError> {
        let body = serde_json::to_string(job).map_err(|e| JobError::Malformed(e.to_string()))?;
        self.queue
            .send(&OutgoingMessage::delayed(body, wait.min(MAX_DELAY)))
            .await?;
        Ok(())
    }
}

/// An attempt's record, and the receiver's `Retry-After` if it asked for one.
struct Attempted {
    log: WebhookAttempt,
    retry_after: Option<Duration>,
}

/// Why `job` must not send, if so, by the webhook state of its order or refund. A job of a
/// generation the state does not know yet is `Err((job's, state's))`.
pub(super) fn skip_reason(
    job: &WebhookJob,
    state: &WebhookState,
) -> Result<Option<SkipReason>, (u32, u32)> {
    if job.generation < state.generation {
        return Ok(Some(SkipReason::Superseded));
    }
    if job.generation > state.generation {
        return Err((job.generation, state.generation));
    }
    Ok(match state.status {
        WebhookStatus::Delivered => Some(SkipReason::AlreadyDelivered),
        WebhookStatus::Failed => Some(SkipReason::AlreadyFailed),
        WebhookStatus::Pending | WebhookStatus::Failing if job.attempt < state.attempts => {
            Some(SkipReason::AlreadyAttempted)
        }
        WebhookStatus::Pending | WebhookStatus::Failing => None,
    })
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
