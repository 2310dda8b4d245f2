//! What the API benchmarks share: one core, the in-memory backends, one merchant.

use ferrypay::{
    channel::FakeChannel,
    queue::MemoryQueue,
    service::{Ferrypay, InMemory, IssuedKeys, NewMerchant, ServiceConfig},
    store::MemoryStore,
};
use tokio::runtime::Runtime;

/// A current-thread runtime (one core, as in a Lambda invocation), the services on the
/// in-memory store and the fake channel (no rate limit), and a merchant's keys.
pub fn bench_app() -> (Runtime, Ferrypay<InMemory>, IssuedKeys) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = ServiceConfig {
        rate_limit_per_minute: None,
        ..ServiceConfig::default()
    };
    let app: Ferrypay<InMemory> = Ferrypay::new(
        MemoryStore::new(),
        FakeChannel::new(),
        MemoryQueue::default(),
        config,
    );
    let (_, keys) = rt
        .block_on(app.onboard_merchant(NewMerchant {
            name: "Bench Shop".into(),
            // Never called; payment links may return to its host.
            notify_url: Some("https://shop.example/notify".into()),
            ..NewMerchant::default()
        }))
        .unwrap();
    (rt, app, keys)
}
