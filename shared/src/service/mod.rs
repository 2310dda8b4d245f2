//! Use cases, generic over storage and payment channel. All I/O goes through the traits, so
//! every rule here is tested with the in-memory store and the fake channel.

mod merchants;
mod orders;

use std::sync::Arc;

pub use merchants::{IssuedKeys, NewMerchant};
pub use orders::{CreateOrder, CreatedOrder, ListOrders, OrderRef, PaymentInfo};

use crate::{
    channel::PayChannel,
    model::{Clock, SystemClock},
    store::Store,
};

/// Settings of the services, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Minutes an order stays payable when the request does not say (1..=120).
    pub default_expire_minutes: u32,
    /// Requests per merchant per minute; `None` disables the limit.
    pub rate_limit_per_minute: Option<u32>,
    /// Accept `http://` notify URLs (the dev stack only; production requires https).
    pub allow_http_notify_urls: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            default_expire_minutes: 120,
            rate_limit_per_minute: Some(600),
            allow_http_notify_urls: false,
        }
    }
}

/// ferrypay's services over one store and one payment channel.
pub struct Ferrypay<S, C> {
    pub store: S,
    pub channel: C,
    pub clock: Arc<dyn Clock>,
    pub config: ServiceConfig,
}

impl<S: Store, C: PayChannel> Ferrypay<S, C> {
    pub fn new(store: S, channel: C, config: ServiceConfig) -> Self {
        Self::with_clock(store, channel, config, Arc::new(SystemClock))
    }

    pub fn with_clock(store: S, channel: C, config: ServiceConfig, clock: Arc<dyn Clock>) -> Self {
        Ferrypay {
            store,
            channel,
            clock,
            config,
        }
    }
}
