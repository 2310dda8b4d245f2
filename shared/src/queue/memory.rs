//! An in-memory queue with SQS's semantics: per-message delay, visibility timeout, receive
//! counts and a dead-letter queue after too many receives. For tests and `ferrypay dev`.

use std::{
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
    time::Duration,
};

use tokio::time::Instant;

use super::{validate, OutgoingMessage, Queue, QueueError, ReceivedMessage, MAX_BATCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryQueueConfig {
    /// How long a received message stays hidden before it is delivered again.
    pub visibility_timeout: Duration,
    /// A message received this many times without being deleted moves to the dead-letter
    /// queue on its next receive (SQS's `maxReceiveCount`).
    pub max_receive_count: u32,
}

impl Default for MemoryQueueConfig {
    fn default() -> Self {
        MemoryQueueConfig {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    id: String,
    body: String,
    visible_at: Instant,
    receive_count: u32,
    /// The receipt of the latest delivery; older receipts no longer delete.
    receipt: Option<String>,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    dead: Vec<String>,
}

#[derive(Default)]
pub struct MemoryQueue {
    config: MemoryQueueConfig,
    state: Mutex<State>,
    counter: AtomicU64,
    /// The next N sends fail as unavailable (fault tests).
    fail_sends: AtomicU32,
}

impl MemoryQueue {
    pub fn new(config: MemoryQueueConfig) -> Self {
        MemoryQueue {
            config,
            state: Mutex::default(),
            counter: AtomicU64::new(0),
            fail_sends: AtomicU32::new(0),
        }
    }

    /// Makes the next `n` sends fail as if the queue were unreachable.
    pub fn fail_next_sends(&self, n: u32) {
        self.fail_sends.store(n, Ordering::SeqCst);
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, QueueError> {
        self.state
            .lock()
            .map_err(|_| QueueError::Unavailable("memory queue lock poisoned".into()))
    }

    fn next_id(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}",
            self.counter.fetch_add(1, Ordering::SeqCst) + 1
        )
    }

    /// Messages not yet deleted (visible or in flight).
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.entries.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bodies of every message not yet deleted, oldest first (for tests).
    pub fn bodies(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.entries.iter().map(|e| e.body.clone()).collect())
            .unwrap_or_default()
    }

    /// The bodies moved to the dead-letter queue.
    pub fn dead_letters(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.dead.clone())
            .unwrap_or_default()
    }

    /// How long until the next message becomes visible (`None` if the queue is empty).
    pub fn next_visible_in(&self) -> Option<Duration> {
        let now = Instant::now();
        self.state.lock().ok().and_then(|s| {
            s.entries
                .iter()
                .map(|e| e.visible_at.saturating_duration_since(now))
                .min()
        })
    }
}

impl Queue for MemoryQueue {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), QueueError> {
        self.send_batch(std::slice::from_ref(message)).await
    }

    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        validate(messages)?;
        let failing = self
            .fail_sends
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(QueueError::Unavailable("injected failure".into()));
        }
        let now = Instant::now();
        let entries: Vec<Entry> = messages
            .iter()
            .map(|m| Entry {
                id: self.next_id("msg"),
                body: m.body.clone(),
                visible_at: now + m.delay,
                receive_count: 0,
                receipt: None,
            })
            .collect();
        self.state()?.entries.extend(entries);
        Ok(())
    }

    async fn receive(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        let now = Instant::now();
        let max = max.clamp(1, MAX_BATCH);
        let mut state = self.state()?;
        let State { entries, dead } = &mut *state;
        let mut out = Vec::new();
        let mut i = 0;
        while i < entries.len() && out.len() < max {
            let Some(entry) = entries.get_mut(i) else {
                break;
            };
            if entry.visible_at > now {
                i += 1;
                continue;
            }
            if entry.receive_count >= self.config.max_receive_count {
                let moved = entries.remove(i);
                dead.push(moved.body);
                continue;
            }
            entry.receive_count += 1;
            entry.visible_at = now + self.config.visibility_timeout;
            let receipt = format!(
                "{}#{}",
                entry.id,
                self.counter.fetch_add(1, Ordering::SeqCst) + 1
            );
            entry.receipt = Some(receipt.clone());
            out.push(ReceivedMessage {
                message_id: entry.id.clone(),
                body: entry.body.clone(),
                receipt,
                receive_count: entry.receive_count,
            });
            i += 1;
        }
        Ok(out)
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.state()?
            .entries
            .retain(|e| e.receipt.as_deref() != Some(receipt));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> MemoryQueue {
        MemoryQueue::new(MemoryQueueConfig {
            visibility_timeout: Duration::from_secs(10),
            max_receive_count: 2,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn delay_hides_a_message_until_due() {
        let q = queue();
        q.send(&OutgoingMessage::delayed("later", Duration::from_secs(5)))
            .await
            .unwrap();
        q.send(&OutgoingMessage::now("now")).await.unwrap();
        let first = q.receive(10).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].body, "now");
        tokio::time::advance(Duration::from_secs(5)).await;
        let second = q.receive(10).await.unwrap();
        assert_eq!(second[0].body, "later");
    }

    #[tokio::test(start_paused = true)]
    async fn unacknowledged_messages_come_back_then_go_to_the_dead_letter_queue() {
        let q = queue();
        q.send(&OutgoingMessage::now("job")).await.unwrap();
        let a = q.receive(1).await.unwrap();
        assert_eq!(a[0].receive_count, 1);
        assert!(
            q.receive(1).await.unwrap().is_empty(),
            "hidden while in flight"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        let b = q.receive(1).await.unwrap();
        assert_eq!(b[0].receive_count, 2);
        // The first receipt is stale now: deleting with it does nothing.
        q.delete(&a[0].receipt).await.unwrap();
        assert_eq!(q.len(), 1);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(q.receive(1).await.unwrap().is_empty());
        assert_eq!(q.dead_letters(), vec!["job".to_string()]);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn delete_acknowledges_and_limits_are_enforced() {
        let q = queue();
        q.send(&OutgoingMessage::now("x")).await.unwrap();
        let got = q.receive(10).await.unwrap();
        q.delete(&got[0].receipt).await.unwrap();
        assert!(q.is_empty());
        let too_late = OutgoingMessage::delayed("y", Duration::from_secs(901));
        assert!(matches!(
            q.send(&too_late).await,
            Err(QueueError::Invalid(_))
        ));
        let eleven: Vec<_> = (0..11)
            .map(|i| OutgoingMessage::now(i.to_string()))
            .collect();
        assert!(matches!(
            q.send_batch(&eleven).await,
            Err(QueueError::Invalid(_))
        ));
        assert!(q.is_empty(), "a refused batch sends nothing");
    }
}
