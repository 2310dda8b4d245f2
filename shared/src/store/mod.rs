//! Storage: the traits the services use, one per capability, and their implementations.
//!
//! A use case names the capabilities it needs ([`OrderStore`], [`MerchantStore`],
//! [`WebhookAttemptStore`], [`RateLimitStore`]); [`Store`] is all four, implemented for every
//! type that has them. Code calling a concrete store's methods imports [`prelude`].
//!
//! Every state change is conditional: the store applies an [`OrderUpdate`] only if the order is
//! still in the state the update requires (see [`Order::apply`]), atomically.

mod dynamodb;
mod either;
mod error;
mod memory;
mod secret_keys;

use std::future::Future;

pub use dynamodb::DynamoStore;
pub use either::EitherStore;
pub use error::{
    InsertMerchantError, InsertOrderError, StoreError, StoreErrorSource, UpdateMerchantError,
    UpdateOrderError,
};
pub use memory::MemoryStore;
pub use secret_keys::{
    DataKeySource, LocalDevKeys, SecretKeys, WrappedKey, WRAPPED_BY_KMS, WRAPPED_BY_LOCAL_DEV,
};

use crate::model::{
    KeyHash, KeyKind, Merchant, MerchantId, Order, OrderNo, OrderStatus, OrderUpdate, OutTradeNo,
    Timestamp, WebhookAttempt,
};

/// Every store trait, for code that calls a concrete store's methods:
/// `use ferrypay::store::prelude::*`.
pub mod prelude {
    pub use super::{MerchantStore, OrderStore, RateLimitStore, Store, WebhookAttemptStore};
}

/// How long attempt records are kept (DynamoDB deletes them by TTL afterwards).
pub const WEBHOOK_ATTEMPT_RETENTION_DAYS: i64 = 90;

/// Where a page of a merchant's order list starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageStart {
    /// 1-based page number: skips `(page - 1) * per_page` orders.
    Page(u32),
    /// The orders strictly older than this one (cursor paging).
    After(OrderNo),
}

/// One merchant's orders, newest first, optionally of one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub merchant_id: MerchantId,
    pub status: Option<OrderStatus>,
    pub start: PageStart,
    pub per_page: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// All of the merchant's orders matching the filter, on every page.
    pub total: u64,
    /// Set when more orders follow this page: the last order on it.
    pub next_after: Option<OrderNo>,
}

impl OrderPage {
    /// A page from up to `per_page + 1` orders read in list order: the extra one, if there,
    /// only says that another page follows (the cursor is then the page's last order).
    pub fn from_overfetch(mut orders: Vec<Order>, per_page: u32, total: u64) -> Self {
        let per_page = per_page as usize;
        let more = orders.len() > per_page;
        orders.truncate(per_page);
        let next_after = if more {
            orders.last().map(|o| o.order_no.clone())
        } else {
            None
        };
        OrderPage {
            orders,
            total,
            next_after,
        }
    }
}

/// Merchants and their API keys.
pub trait MerchantStore: Send + Sync + 'static {
    /// Adds a merchant; its id and both key hashes must be new.
    fn insert_merchant(
        &self,
        merchant: &Merchant,
    ) -> impl Future<Output = Result<(), InsertMerchantError>> + Send;

    /// The merchant owning an API key (by hash), and which of its keys it is.
    fn merchant_by_key(
        &self,
        hash: &KeyHash,
    ) -> impl Future<Output = Result<Option<(Merchant, KeyKind)>, StoreError>> + Send;

    fn get_merchant(
        &self,
        id: &MerchantId,
    ) -> impl Future<Output = Result<Option<Merchant>, StoreError>> + Send;

    /// Replaces an existing merchant (status, name, notify URL, keys, secrets, allowlist) in one
    /// atomic write, only if it is still at `merchant.version` (else
    /// [`UpdateMerchantError::Conflict`]: someone else's update came first); new key hashes must
    /// be unused, replaced ones stop working at once. Returns the merchant as written (its
    /// version one more).
    fn update_merchant(
        &self,
        merchant: &Merchant,
    ) -> impl Future<Output = Result<Merchant, UpdateMerchantError>> + Send;

    /// Every merchant, ordered by id (operators; DynamoDB scans for it).
    fn list_merchants(&self) -> impl Future<Output = Result<Vec<Merchant>, StoreError>> + Send;
}

/// Orders: created, read, listed, and changed only as [`Order::apply`] allows.
pub trait OrderStore: Send + Sync + 'static {
    /// Adds a new order. The order number and the merchant's `out_trade_no` are unique,
    /// both checked in the same atomic write.
    fn insert_order(
        &self,
        order: &Order,
    ) -> impl Future<Output = Result<(), InsertOrderError>> + Send;

    /// An order by number, whoever owns it: callers check the owner.
    fn get_order(
        &self,
        order_no: &OrderNo,
    ) -> impl Future<Output = Result<Option<Order>, StoreError>> + Send;

    fn order_by_out_trade_no(
        &self,
        merchant_id: &MerchantId,
        out_trade_no: &OutTradeNo,
    ) -> impl Future<Output = Result<Option<Order>, StoreError>> + Send;

    /// Applies `update` if, at the moment of writing, `Order::apply` allows it; returns the
    /// order as written.
    fn update_order(
        &self,
        order_no: &OrderNo,
        update: &OrderUpdate,
    ) -> impl Future<Output = Result<Order, UpdateOrderError>> + Send;

    fn list_orders(
        &self,
        query: &ListQuery,
    ) -> impl Future<Output = Result<OrderPage, StoreError>> + Send;
}

/// The log of webhook delivery attempts (kept [`WEBHOOK_ATTEMPT_RETENTION_DAYS`]).
pub trait WebhookAttemptStore: Send + Sync + 'static {
    /// Records one webhook delivery attempt. Idempotent: the same order, generation and attempt
    /// number replace the earlier record (a redelivered job that attempts again).
    fn record_webhook_attempt(
        &self,
        attempt: &WebhookAttempt,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// An order's latest webhook attempts, newest first (by generation, then attempt number),
    /// at most `limit`.
    fn webhook_attempts(
        &self,
        order_no: &OrderNo,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<WebhookAttempt>, StoreError>> + Send;
}

/// Fixed-window request counters (rate limits).
pub trait RateLimitStore: Send + Sync + 'static {
    /// Counts one request against a fixed window `bucket` (e.g. merchant + minute) and returns
    /// the count so far, including this one. The window is forgotten after `expires_at`.
    fn count_in_window(
        &self,
        bucket: &str,
        expires_at: Timestamp,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// The deep health check's one read: proves the store answers (DynamoDB: a `GetItem` of the
/// fixed key `HEALTH`/`HEALTH`, whose absence is fine). Not part of [`Store`]: only the health
/// check needs it.
pub trait HealthStore: Send + Sync + 'static {
    fn check_health(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Everything ferrypay keeps: every capability. Implementations: [`MemoryStore`] (tests,
/// `ferrypay dev`), [`DynamoStore`] (production) and [`EitherStore`] (one of them, chosen at run
/// time). Implemented for any type with all four capabilities.
pub trait Store: MerchantStore + OrderStore + WebhookAttemptStore + RateLimitStore {}

impl<T> Store for T where T: MerchantStore + OrderStore + WebhookAttemptStore + RateLimitStore {}
