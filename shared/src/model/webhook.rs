//! Merchant-webhook delivery, as the order keeps it: where the delivery of its `order.paid`
//! event stands, and one record per attempt.

use serde::{Deserialize, Serialize};

use super::{OrderNo, Timestamp};

/// Where the webhook of a paid order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebhookStatus {
    /// Queued, not yet attempted.
    #[default]
    Pending,
    /// A 2xx answer was received. Final (until a resend).
    Delivered,
    /// Attempts failed; another is scheduled.
    Failing,
    /// Every attempt of the schedule failed. Final (until a resend).
    Failed,
}

impl WebhookStatus {
    pub const ALL: [WebhookStatus; 4] = [
        WebhookStatus::Pending,
        WebhookStatus::Delivered,
        WebhookStatus::Failing,
        WebhookStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Pending => "pending",
            WebhookStatus::Delivered => "delivered",
            WebhookStatus::Failing => "failing",
            WebhookStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Delivered and failed end a generation: its remaining jobs send nothing.
    pub fn is_final(self) -> bool {
        matches!(self, WebhookStatus::Delivered | WebhookStatus::Failed)
    }
}

/// The delivery of an order's webhook. Meaningful once the order is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WebhookState {
    /// 0 for the first delivery, one more for each resend. Jobs of an older generation are
    /// superseded and send nothing.
    pub generation: u32,
    /// When this generation's first job was queued. Paid without it means the job still has
    /// to be queued (a crash between the two writes): the next notification or query queues it.
    pub queued_at: Option<Timestamp>,
    pub status: WebhookStatus,
    /// Attempts made in this generation.
    pub attempts: u32,
    pub last_attempt_at: Option<Timestamp>,
    /// While failing: when the next attempt is due.
    pub next_attempt_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
}

/// What one attempt led to, as the order records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Delivered,
    /// Failed; the next attempt is queued for `next_at`.
    Retrying {
        next_at: Timestamp,
    },
    /// Failed, and the schedule is used up.
    GaveUp,
}

impl WebhookState {
    /// The state after attempt number `attempt` (1-based) of this generation ended in `result`.
    /// A delivered webhook stays delivered, and the record of an attempt older than the latest
    /// one known (a slow duplicate) changes nothing.
    pub fn after_attempt(self, attempt: u32, at: Timestamp, result: AttemptResult) -> Self {
        if self.status == WebhookStatus::Delivered || attempt < self.attempts {
            return self;
        }
        let mut next = self;
        next.attempts = attempt;
        next.last_attempt_at = Some(at);
        next.next_attempt_at = None;
        match result {
            AttemptResult::Delivered => {
                next.status = WebhookStatus::Delivered;
                next.delivered_at = Some(at);
            }
            AttemptResult::Retrying { next_at } => {
                next.status = WebhookStatus::Failing;
                next.next_attempt_at = Some(next_at);
            }
            AttemptResult::GaveUp => next.status = WebhookStatus::Failed,
        }
        next
    }

    /// A new generation (a resend): everything starts over, not yet queued.
    pub fn restarted(self) -> Self {
        WebhookState {
            generation: self.generation.saturating_add(1),
            ..WebhookState::default()
        }
    }
}

/// One delivery attempt, as the attempt log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookAttempt {
    pub order_no: OrderNo,
    /// The `webhook-id` sent.
    pub event_id: String,
    pub generation: u32,
    /// 1-based, within the generation.
    pub attempt: u32,
    pub at: Timestamp,
    /// Where it was sent; `None` when neither the order nor the merchant has a notify URL.
    pub url: Option<String>,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// The first KiB of the answer's body.
    pub response: Option<String>,
    /// Why there was no usable answer (timeout, refused address, network error, no URL).
    pub error: Option<String>,
    pub delivered: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix(secs)
    }

    #[test]
    fn status_strings_round_trip() {
        for s in WebhookStatus::ALL {
            assert_eq!(WebhookStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(WebhookStatus::parse("DELIVERED"), None);
    }

    #[test]
    fn failing_then_delivered() {
        let state = WebhookState::default().after_attempt(
            1,
            at(10),
            AttemptResult::Retrying { next_at: at(25) },
        );
        assert_eq!(state.status, WebhookStatus::Failing);
        assert_eq!(state.attempts, 1);
        assert_eq!(state.next_attempt_at, Some(at(25)));
        let state = state.after_attempt(2, at(25), AttemptResult::Delivered);
        assert_eq!(state.status, WebhookStatus::Delivered);
        assert_eq!(state.delivered_at, Some(at(25)));
        assert_eq!(state.next_attempt_at, None);
    }

    #[test]
    fn delivered_stays_delivered_and_old_attempts_change_nothing() {
        let delivered = WebhookState::default().after_attempt(2, at(5), AttemptResult::Delivered);
        let late = delivered.after_attempt(3, at(6), AttemptResult::GaveUp);
        assert_eq!(late, delivered);

        let failing = WebhookState::default().after_attempt(
            3,
            at(30),
            AttemptResult::Retrying { next_at: at(90) },
        );
        let slow_duplicate =
            failing.after_attempt(2, at(31), AttemptResult::Retrying { next_at: at(40) });
        assert_eq!(slow_duplicate, failing);
    }

    #[test]
    fn gave_up_is_failed_and_a_restart_starts_a_new_generation() {
        let failed = WebhookState::default().after_attempt(13, at(9), AttemptResult::GaveUp);
        assert_eq!(failed.status, WebhookStatus::Failed);
        assert!(failed.status.is_final());
        let restarted = failed.restarted();
        assert_eq!(restarted.generation, 1);
        assert_eq!(restarted.status, WebhookStatus::Pending);
        assert_eq!(restarted.attempts, 0);
        assert_eq!(restarted.queued_at, None);
    }
}
