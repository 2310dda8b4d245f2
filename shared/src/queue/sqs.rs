//! The production queue: an SQS standard queue. Visibility timeout, `maxReceiveCount` and the
//! dead-letter queue are the queue's own settings (the SAM template); this side sends with
//! per-message delays, receives without long polling, and deletes.

use std::{fmt, time::Duration};

use aws_sdk_sqs::{
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    operation::delete_message::DeleteMessageError,
    types::{MessageSystemAttributeName, SendMessageBatchRequestEntry},
    Client,
};

use super::{validate, OutgoingMessage, Queue, QueueError, ReceivedMessage, MAX_BATCH};
use crate::model::Cause;

/// A batch is sent this many times at most while SQS fails some entries on its side.
const MAX_BATCH_ATTEMPTS: u32 = 3;

/// An SQS queue, by URL. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

/// SQS counts delays in whole seconds: round up, so a message never arrives early.
fn delay_seconds(delay: Duration) -> i32 {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i32::try_from(secs.min(super::MAX_DELAY.as_secs())).unwrap_or(0)
}

/// Codes SQS gives for a request that can never succeed as sent.
fn is_sender_fault(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "InvalidMessageContents"
                | "InvalidParameterValue"
                | "MissingParameter"
                | "BatchRequestTooLong"
                | "TooManyEntriesInBatchRequest"
                | "BatchEntryIdsNotDistinct"
                | "InvalidBatchEntryId"
                | "EmptyBatchRequest"
                | "UnsupportedOperation"
        )
    )
}

fn sdk_error<E, R>(context: &str, error: SdkError<E, R>) -> QueueError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: fmt::Debug,
{
    let detail = format!("SQS {context}: {}", DisplayErrorContext(&error));
    if is_sender_fault(error.code()) {
        QueueError::Invalid(detail)
    } else {
        QueueError::Unavailable(Cause::new(detail))
    }
}

impl Queue for SqsQueue {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), QueueError> {
        validate(std::slice::from_ref(message))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(&message.body)
            .delay_seconds(delay_seconds(message.delay))
            .send()
            .await
            .map_err(|e| sdk_error("send", e))?;
        Ok(())
    }

    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        validate(messages)?;
        // Entry ids are the positions in `messages`; unsent ones are sent again.
        let mut unsent: Vec<(String, &OutgoingMessage)> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (i.to_string(), m))
            .collect();
        let mut attempt = 0;
        while !unsent.is_empty() {
            attempt += 1;
            let entries = unsent
                .iter()
                .map(|(id, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(&m.body)
                        .delay_seconds(delay_seconds(m.delay))
                        .build()
                        .map_err(|e| QueueError::Invalid(format!("batch entry {id}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("send batch", e))?;
            let failed = out.failed();
            if let Some(refused) = failed.iter().find(|f| f.sender_fault()) {
                return Err(QueueError::Invalid(format!(
                    "SQS refused message {} of the batch: {} {}",
                    refused.id(),
                    refused.code(),
                    refused.message().unwrap_or_default()
                )));
            }
            unsent.retain(|(id, _)| failed.iter().any(|f| f.id() == id.as_str()));
            if unsent.is_empty() {
                break;
            }
            let codes: Vec<&str> = failed.iter().map(|f| f.code()).collect();
            if attempt >= MAX_BATCH_ATTEMPTS {
                return Err(QueueError::Unavailable(Cause::new(format!(
                    "SQS failed {} of {} messages after {attempt} attempts: {codes:?}",
                    unsent.len(),
                    messages.len()
                ))));
            }
            tracing::warn!(
                attempt,
                ?codes,
                "SQS failed part of a batch; resending those"
            );
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        Ok(())
    }

    async fn receive(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max = i32::try_from(max.clamp(1, MAX_BATCH)).unwrap_or(1);
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sdk_error("receive", e))?;
        out.messages()
            .iter()
            .map(|m| {
                let missing = |what: &str| {
                    QueueError::Unavailable(Cause::new(format!(
                        "SQS returned a message without {what}"
                    )))
                };
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse::<u32>().ok())
                    .ok_or_else(|| missing("ApproximateReceiveCount"))?;
                Ok(ReceivedMessage {
                    message_id: m
                        .message_id()
                        .ok_or_else(|| missing("MessageId"))?
                        .to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receipt: m
                        .receipt_handle()
                        .ok_or_else(|| missing("ReceiptHandle"))?
                        .to_string(),
                    receive_count,
                })
            })
            .collect()
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let deleted = self
            .client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            // A receipt from an earlier delivery (or of a message already deleted): the
            // message was or will be handled through its newer receipt.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteMessageError::ReceiptHandleIsInvalid(_))
                ) || e
                    .message()
                    .is_some_and(|m| m.contains("receipt handle has expired")) =>
            {
                tracing::debug!(
                    "SQS delete with a stale receipt: {}",
                    DisplayErrorContext(&e)
                );
                Ok(())
            }
            Err(e) => Err(sdk_error("delete", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_to_whole_seconds() {
        assert_eq!(delay_seconds(Duration::ZERO), 0);
        assert_eq!(delay_seconds(Duration::from_millis(1)), 1);
        assert_eq!(delay_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(delay_seconds(Duration::from_secs(900)), 900);
    }
}
