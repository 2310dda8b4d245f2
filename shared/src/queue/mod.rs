//! Queues: the trait the services use to hand work (merchant webhooks) to the notify-worker,
//! and its implementations. Messages carry ids, not payloads; delivery is at least once, so
//! every consumer is idempotent.

mod memory;
mod sqs;

use std::{future::Future, time::Duration};

use crate::model::Cause;

pub use memory::{MemoryQueue, MemoryQueueConfig};
pub use sqs::SqsQueue;

/// SQS's longest per-message delay. Longer waits are the caller's hops.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's largest batch.
pub const MAX_BATCH: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    /// How long the message stays invisible after sending (at most [`MAX_DELAY`]).
    pub delay: Duration,
}

impl OutgoingMessage {
    pub fn now(body: impl Into<String>) -> Self {
        OutgoingMessage {
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(body: impl Into<String>, delay: Duration) -> Self {
        OutgoingMessage {
            body: body.into(),
            delay,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub body: String,
    /// Pass back to [`Queue::delete`] once the message is handled.
    pub receipt: String,
    /// 1 on the first delivery; SQS's `ApproximateReceiveCount`.
    pub receive_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The message breaks a queue limit (delay over 900 s, batch over 10, empty body).
    #[error("message refused: {0}")]
    Invalid(String),
    /// The queue could not be reached: the caller should retry or fail so it is retried.
    #[error("queue unavailable: {0}")]
    Unavailable(#[source] Cause),
}

/// Checks the limits every implementation shares, so memory and SQS refuse the same things.
pub fn validate(messages: &[OutgoingMessage]) -> Result<(), QueueError> {
    if messages.len() > MAX_BATCH {
        return Err(QueueError::Invalid(format!(
            "a batch holds at most {MAX_BATCH} messages, not {}",
            messages.len()
        )));
    }
    for m in messages {
        if m.delay > MAX_DELAY {
            return Err(QueueError::Invalid(format!(
                "delay {:?} exceeds {:?}",
                m.delay, MAX_DELAY
            )));
        }
        if m.body.is_empty() {
            return Err(QueueError::Invalid("empty message body".into()));
        }
    }
    Ok(())
}

pub trait Queue: Send + Sync + 'static {
    fn send(
        &self,
        message: &OutgoingMessage,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Sends up to [`MAX_BATCH`] messages. Implementations retry entries the queue refused
    /// for transient reasons and return an error only if some could not be sent.
    fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Up to `max` visible messages (at most [`MAX_BATCH`]), each hidden for the visibility
    /// timeout. Returns at once (no long polling) when none are visible.
    fn receive(
        &self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, QueueError>> + Send;

    /// Removes a handled message. A stale receipt (the message was redelivered) is not an error.
    fn delete(&self, receipt: &str) -> impl Future<Output = Result<(), QueueError>> + Send;
}
