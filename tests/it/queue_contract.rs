//! The `Queue` contract: every behaviour is written once, generic over the queue, and runs
//! against the in-memory queue and against SQS (moto's server, a fresh queue and dead-letter
//! queue per test). Real time: delays and visibility timeouts of 1-2 s, every wait bounded.
//!
//! The SQS runs need `FERRYPAY_TEST_AWS_ENDPOINT`, which `make test` sets after starting moto;
//! without it they fail (never skip).

use std::{collections::BTreeSet, future::Future, sync::Mutex, time::Duration};

use aws_sdk_sqs::types::QueueAttributeName;
use ferrypay::{
    queue::{
        MemoryQueue, MemoryQueueConfig, OutgoingMessage, Queue, QueueError, ReceivedMessage,
        SqsQueue,
    },
    testing::unique_name,
};
use tokio::time::{sleep, Instant};

/// How long a received message stays hidden (both queues).
const VISIBILITY: Duration = Duration::from_secs(2);
/// Receives before a message moves to the dead-letter queue (both queues).
const MAX_RECEIVE_COUNT: u32 = 2;
/// Every test finishes within this, whatever the backend does.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Declares each behaviour as one test per queue.
macro_rules! contract {
    ($($behaviour:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    crate::harness::within(super::TEST_TIMEOUT, super::$behaviour(super::memory_queue())).await;
                }
            )*
        }
        mod sqs {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    crate::harness::within(super::TEST_TIMEOUT, super::$behaviour(super::sqs_queue().await)).await;
                }
            )*
        }
    };
}

contract!(
    messages_sent_now_arrive_at_once,
    delayed_messages_wait_for_their_delay,
    unacknowledged_messages_come_back_with_receive_counts,
    delete_acknowledges,
    stale_receipts_are_not_errors,
    messages_received_too_often_move_to_the_dead_letter_queue,
    a_batch_holds_at_most_ten,
    limits_are_enforced_before_sending,
);

// ---------------------------------------------------------------- the two queues

/// A queue under test and a way to see its dead letters.
trait Harness {
    type Q: Queue;
    fn queue(&self) -> &Self::Q;
    /// Every body moved to the dead-letter queue so far.
    fn dead_letters(&self) -> impl Future<Output = Vec<String>>;
}

struct Memory(MemoryQueue);

impl Harness for Memory {
    type Q = MemoryQueue;
    fn queue(&self) -> &MemoryQueue {
        &self.0
    }
    async fn dead_letters(&self) -> Vec<String> {
        self.0.dead_letters()
    }
}

fn memory_queue() -> Memory {
    Memory(MemoryQueue::new(MemoryQueueConfig {
        visibility_timeout: VISIBILITY,
        max_receive_count: MAX_RECEIVE_COUNT,
    }))
}

struct Sqs {
    queue: SqsQueue,
    dead_letter_queue: SqsQueue,
    dead: Mutex<Vec<String>>,
}

impl Harness for Sqs {
    type Q = SqsQueue;
    fn queue(&self) -> &SqsQueue {
        &self.queue
    }
    async fn dead_letters(&self) -> Vec<String> {
        let arrived = self.dead_letter_queue.receive(10).await.unwrap();
        for message in &arrived {
            self.dead_letter_queue
                .delete(&message.receipt)
                .await
                .unwrap();
        }
        let mut dead = self.dead.lock().unwrap();
        dead.extend(arrived.into_iter().map(|m| m.body));
        dead.clone()
    }
}

/// A fresh queue with the settings the SAM template gives the notify queue, scaled down:
/// visibility timeout, and a dead-letter queue after `MAX_RECEIVE_COUNT` receives.
async fn sqs_queue() -> Sqs {
    let config = crate::harness::emulator().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let name = unique_name("ferrypay-queue");

    let dlq_url = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create the dead-letter queue")
        .queue_url
        .expect("a queue URL");
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("the dead-letter queue's ARN")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("a queue ARN");
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{MAX_RECEIVE_COUNT}"}}"#);
    let url = client
        .create_queue()
        .queue_name(&name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            VISIBILITY.as_secs().to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .expect("create the queue")
        .queue_url
        .expect("a queue URL");
    Sqs {
        queue: SqsQueue::new(client.clone(), url),
        dead_letter_queue: SqsQueue::new(client, dlq_url),
        dead: Mutex::new(Vec::new()),
    }
}

// ---------------------------------------------------------------- helpers

/// Receives until `count` messages arrived or `within` passed (polling every 100 ms).
async fn receive_until<Q: Queue>(
    queue: &Q,
    count: usize,
    within: Duration,
) -> Vec<ReceivedMessage> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    for _ in 0..1000 {
        got.extend(queue.receive(10).await.unwrap());
        if got.len() >= count || Instant::now() >= deadline {
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    got
}

/// Receives for `during`, expecting nothing.
async fn assert_nothing_for<Q: Queue>(queue: &Q, during: Duration) {
    let deadline = Instant::now() + during;
    for _ in 0..1000 {
        let got = queue.receive(10).await.unwrap();
        assert!(got.is_empty(), "expected no message, got {got:?}");
        if Instant::now() >= deadline {
            return;
        }
        sleep(Duration::from_millis(100)).await;
    }
}

fn bodies(messages: &[ReceivedMessage]) -> BTreeSet<String> {
    messages.iter().map(|m| m.body.clone()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------- behaviours

async fn messages_sent_now_arrive_at_once<H: Harness>(h: H) {
    let q = h.queue();
    q.send(&OutgoingMessage::now("a")).await.unwrap();
    q.send_batch(&[OutgoingMessage::now("b"), OutgoingMessage::now("c")])
        .await
        .unwrap();
    let got = receive_until(q, 3, Duration::from_secs(3)).await;
    assert_eq!(bodies(&got), set(&["a", "b", "c"]));
    assert!(got.iter().all(|m| m.receive_count == 1), "{got:?}");
    let ids: BTreeSet<_> = got.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(ids.len(), 3, "distinct message ids");
    // An empty batch sends nothing and is no error.
    q.send_batch(&[]).await.unwrap();
}

async fn delayed_messages_wait_for_their_delay<H: Harness>(h: H) {
    let q = h.queue();
    let sent = Instant::now();
    q.send(&OutgoingMessage::delayed("later", Duration::from_secs(2)))
        .await
        .unwrap();
    q.send_batch(&[
        OutgoingMessage::now("now"),
        OutgoingMessage::delayed("batch-later", Duration::from_secs(1)),
    ])
    .await
    .unwrap();

    let first = receive_until(q, 1, Duration::from_secs(1)).await;
    assert_eq!(bodies(&first), set(&["now"]), "delayed messages are hidden");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "test machine too slow"
    );
    q.delete(&first[0].receipt).await.unwrap();

    let rest = receive_until(q, 2, Duration::from_secs(6)).await;
    assert_eq!(bodies(&rest), set(&["later", "batch-later"]));
    // Not early: the 2 s message came no sooner than about 2 s after sending.
    assert!(
        sent.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        sent.elapsed()
    );
}

async fn unacknowledged_messages_come_back_with_receive_counts<H: Harness>(h: H) {
    let q = h.queue();
    q.send(&OutgoingMessage::now("job")).await.unwrap();
    let first = receive_until(q, 1, Duration::from_secs(2)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    let hidden_at = Instant::now();

    // In flight: hidden for the visibility timeout.
    assert_nothing_for(q, Duration::from_millis(1000)).await;

    let second = receive_until(q, 1, VISIBILITY + Duration::from_secs(3)).await;
    assert_eq!(second.len(), 1);
    assert!(hidden_at.elapsed() >= VISIBILITY - Duration::from_millis(300));
    assert_eq!(second[0].body, "job");
    assert_eq!(second[0].message_id, first[0].message_id);
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(
        second[0].receipt, first[0].receipt,
        "a new receipt per delivery"
    );
}

async fn delete_acknowledges<H: Harness>(h: H) {
    let q = h.queue();
    q.send_batch(&[OutgoingMessage::now("x"), OutgoingMessage::now("y")])
        .await
        .unwrap();
    let got = receive_until(q, 2, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 2);
    let x = got.iter().find(|m| m.body == "x").unwrap();
    q.delete(&x.receipt).await.unwrap();
    // After the visibility timeout only the unacknowledged one comes back.
    sleep(VISIBILITY).await;
    let again = receive_until(q, 1, Duration::from_secs(3)).await;
    assert_eq!(bodies(&again), set(&["y"]));
    q.delete(&again[0].receipt).await.unwrap();
    assert_nothing_for(q, VISIBILITY + Duration::from_millis(500)).await;
}

async fn stale_receipts_are_not_errors<H: Harness>(h: H) {
    let q = h.queue();
    q.send(&OutgoingMessage::now("job")).await.unwrap();
    let first = receive_until(q, 1, Duration::from_secs(2)).await;
    let second = receive_until(q, 1, VISIBILITY + Duration::from_secs(3)).await;
    assert_eq!(second[0].receive_count, 2);

    // The first delivery's receipt is stale now: no error.
    q.delete(&first[0].receipt).await.unwrap();
    // The current one acknowledges (twice is no error either).
    q.delete(&second[0].receipt).await.unwrap();
    q.delete(&second[0].receipt).await.unwrap();
    assert_nothing_for(q, VISIBILITY + Duration::from_millis(500)).await;
    assert!(h.dead_letters().await.is_empty());
}

async fn messages_received_too_often_move_to_the_dead_letter_queue<H: Harness>(h: H) {
    let q = h.queue();
    q.send(&OutgoingMessage::now("poison")).await.unwrap();
    q.send(&OutgoingMessage::now("fine")).await.unwrap();
    for expected_count in 1..=MAX_RECEIVE_COUNT {
        let got = receive_until(q, 2, VISIBILITY + Duration::from_secs(3)).await;
        assert_eq!(bodies(&got), set(&["fine", "poison"]));
        assert!(
            got.iter().all(|m| m.receive_count == expected_count),
            "{got:?}"
        );
        if expected_count == MAX_RECEIVE_COUNT {
            // The worker finally handles "fine"; "poison" keeps failing.
            let fine = got.iter().find(|m| m.body == "fine").unwrap();
            q.delete(&fine.receipt).await.unwrap();
        }
    }
    // The next receive after the visibility timeout moves "poison" to the dead-letter queue.
    let mut dead = Vec::new();
    for _ in 0..60 {
        let got = q.receive(10).await.unwrap();
        assert!(got.is_empty(), "{got:?}");
        dead = h.dead_letters().await;
        if !dead.is_empty() {
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead, vec!["poison".to_string()]);
    assert_nothing_for(q, Duration::from_millis(500)).await;
}

async fn a_batch_holds_at_most_ten<H: Harness>(h: H) {
    let q = h.queue();
    let ten: Vec<_> = (0..10)
        .map(|i| OutgoingMessage::now(format!("m{i}")))
        .collect();
    q.send_batch(&ten).await.unwrap();
    let got = receive_until(q, 10, Duration::from_secs(3)).await;
    assert_eq!(
        bodies(&got),
        (0..10).map(|i| format!("m{i}")).collect::<BTreeSet<_>>()
    );
    for m in &got {
        q.delete(&m.receipt).await.unwrap();
    }

    let eleven: Vec<_> = (0..11)
        .map(|i| OutgoingMessage::now(format!("n{i}")))
        .collect();
    assert!(matches!(
        q.send_batch(&eleven).await,
        Err(QueueError::Invalid(_))
    ));
    // A refused batch sends nothing.
    assert_nothing_for(q, Duration::from_millis(500)).await;
}

async fn limits_are_enforced_before_sending<H: Harness>(h: H) {
    let q = h.queue();
    let too_late = OutgoingMessage::delayed("late", Duration::from_secs(901));
    assert!(matches!(
        q.send(&too_late).await,
        Err(QueueError::Invalid(_))
    ));
    assert!(matches!(
        q.send_batch(&[OutgoingMessage::now("ok"), too_late.clone()])
            .await,
        Err(QueueError::Invalid(_))
    ));
    assert!(matches!(
        q.send(&OutgoingMessage::now("")).await,
        Err(QueueError::Invalid(_))
    ));
    // Exactly 15 minutes is allowed (and stays hidden).
    q.send(&OutgoingMessage::delayed("max", Duration::from_secs(900)))
        .await
        .unwrap();
    assert_nothing_for(q, Duration::from_millis(500)).await;
}
