//! Use cases, generic over storage and payment channel. All I/O goes through the traits, so
//! every rule here is tested with the in-memory store and the fake channel.

mod code;
mod error;
pub mod gateway;
pub mod health;
pub mod limits;
mod merchants;
mod notifications;
mod orders;
mod refund_webhooks;
mod refunds;
pub mod retry;
mod webhook_jobs;
mod webhook_worker;

use std::sync::Arc;

pub use code::ErrorCode;
pub use error::Error;
pub use merchants::{
    AdminError, AllowlistChange, IssuedKeys, MerchantAdmin, NewMerchant, OnboardError,
};
pub use notifications::{NoticeOutcome, NotifyError};
pub use orders::{CreateOrder, CreatedOrder, ListOrders, OrderRef, PaymentInfo, Settlement};
pub use refund_webhooks::{RefundJson, RefundWebhookBody};
pub use refunds::{RefundNoticeOutcome, RefundOrder, RefundRef, REFUNDS_SHOWN};
pub use webhook_jobs::{refund_event, WebhookJob, WEBHOOK_JOB_VERSION};
pub use webhook_worker::{
    random_jitter, BatchMessage, JitterSource, JobError, JobOutcome, SkipReason, WebhookBody,
    WebhookSender, WebhookWorker, WEBHOOK_TIMEOUT,
};

use crate::{
    channel::{FakeChannel, PayChannel},
    model::{Clock, SystemClock},
    queue::{MemoryQueue, Queue},
    store::{MemoryStore, Store},
};

/// Settings of the services, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Minutes an order stays payable when the request does not say (1..=120).
    pub default_expire_minutes: u32,
    /// Merchant API requests per merchant per minute; `None` disables the limit.
    pub rate_limit_per_minute: Option<u32>,
    /// Payment-link orders per merchant per minute (their own bucket); `None`: no limit.
    pub link_rate_limit_per_minute: Option<u32>,
    /// Unauthenticated requests per client (IPv4 address, IPv6 /64) per minute; `None`: none.
    pub ip_rate_limit_per_minute: Option<u32>,
    /// Accept `http://` notify URLs (the dev stack only; production requires https).
    pub allow_http_notify_urls: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            default_expire_minutes: 120,
            rate_limit_per_minute: Some(600),
            link_rate_limit_per_minute: Some(limits::DEFAULT_LINK_RATE_LIMIT),
            ip_rate_limit_per_minute: Some(limits::DEFAULT_IP_RATE_LIMIT),
            allow_http_notify_urls: false,
        }
    }
}

/// Which implementations a deployment plugs in: one type names all three.
pub trait Backends: Send + Sync + 'static {
    type Store: Store;
    type Channel: PayChannel;
    type Queue: Queue;
}

/// Everything in memory, with the fake channel: unit tests and benchmarks.
pub struct InMemory;

impl Backends for InMemory {
    type Store = MemoryStore;
    type Channel = FakeChannel;
    type Queue = MemoryQueue;
}

/// ferrypay's services over one store, one payment channel and one queue.
pub struct Ferrypay<B: Backends> {
    pub store: B::Store,
    pub channel: B::Channel,
    pub queue: B::Queue,
    pub clock: Arc<dyn Clock>,
    pub config: ServiceConfig,
    /// The rate-limit buckets this process saw over their limit in the current window.
    pub refused: limits::RefusedWindows,
}

impl<B: Backends> Ferrypay<B> {
    pub fn new(
        store: B::Store,
        channel: B::Channel,
        queue: B::Queue,
        config: ServiceConfig,
    ) -> Self {
        Self::with_clock(store, channel, queue, config, Arc::new(SystemClock))
    }

    pub fn with_clock(
        store: B::Store,
        channel: B::Channel,
        queue: B::Queue,
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Ferrypay {
            store,
            channel,
            queue,
            clock,
            config,
            refused: limits::RefusedWindows::default(),
        }
    }
}
