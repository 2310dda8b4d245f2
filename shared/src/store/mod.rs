//! Storage: the traits the services use, one per capability, and their implementations.
//!
//! A use case names the capabilities it needs ([`OrderStore`], [`RefundStore`],
//! [`MerchantStore`], [`WebhookAttemptStore`], [`RateLimitStore`]); [`Store`] is all five,
//! implemented for every type that has them. Code calling a concrete store's methods imports
//! [`prelude`].
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
    BeginRefundError, InsertMerchantError, InsertOrderError, RecordRefundError, StoreError,
    StoreErrorSource, UpdateMerchantError, UpdateOrderError, UpdateRefundError,
};
pub use memory::MemoryStore;
pub use secret_keys::{
    DataKeySource, LocalDevKeys, SecretKeys, WrappedKey, WRAPPED_BY_KMS, WRAPPED_BY_LOCAL_DEV,
};

use crate::model::{
    KeyHash, KeyKind, Merchant, MerchantId, Order, OrderNo, OrderStatus, OrderUpdate, OutRefundNo,
    OutTradeNo, Refund, RefundNo, RefundSettlement, RefundWebhookUpdate, Timestamp, WebhookAttempt,
};

/// Every store trait, for code that calls a concrete store's methods:
/// `use ferrypay::store::prelude::*`.
pub mod prelude {
    pub use super::{
        MerchantStore, OrderStore, RateLimitStore, RefundStore, Store, WebhookAttemptStore,
    };
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

/// A settled refund and its order, both as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundSettled {
    pub refund: Refund,
    pub order: Order,
    /// An abnormal refund WeChat Pay paid out after its reservation was released took the
    /// order past its amount (`refunded + reserved > amount`): recorded anyway, for an
    /// operator to look at.
    pub over_refunded: bool,
}

/// What WeChat Pay reported about a refund made outside ferrypay that ferrypay's own tally
/// did not allow for. Recorded anyway: the money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundAnomaly {
    /// The order here is not paid (pending or closed): its status is left as it is.
    OrderNotPaid(OrderStatus),
    /// It takes `refunded + reserved` past the order's amount.
    ExceedsRefundable,
    /// It is the order's refund number [`MAX_REFUNDS_PER_ORDER`](crate::model::MAX_REFUNDS_PER_ORDER) + 1 or later.
    TooManyRefunds,
}

/// What recording a refund WeChat Pay reported does to `order` that ferrypay would not have
/// allowed itself (`next`: the tally with it recorded).
pub(crate) fn external_anomalies(
    order: &Order,
    next: &crate::model::RefundTally,
) -> Vec<RefundAnomaly> {
    let mut anomalies = Vec::new();
    if !matches!(order.status, OrderStatus::Paid | OrderStatus::Refunded) {
        anomalies.push(RefundAnomaly::OrderNotPaid(order.status));
    }
    if next.committed() > order.amount {
        anomalies.push(RefundAnomaly::ExceedsRefundable);
    }
    if next.count > crate::model::MAX_REFUNDS_PER_ORDER {
        anomalies.push(RefundAnomaly::TooManyRefunds);
    }
    anomalies
}

/// Newest first: by `created_at`, then number.
pub(crate) fn newest_refunds_first(refunds: &mut [Refund]) {
    refunds.sort_by(|a, b| (b.created_at, &b.refund_no).cmp(&(a.created_at, &a.refund_no)));
}

/// The result of [`RefundStore::record_external_refund`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalRefundRecorded {
    /// Recorded now, with the order as written and what did not fit ferrypay's tally (empty
    /// when all was as expected).
    New {
        refund: Box<Refund>,
        order: Box<Order>,
        anomalies: Vec<RefundAnomaly>,
    },
    /// A refund with this number was already recorded (a repeated notification, or one of
    /// ferrypay's own refunds): nothing changed. The caller compares order and amount.
    Existing(Box<Refund>),
}

/// Refunds: begun (reserving their amount on the order), settled once, looked up, and their
/// webhook's delivery recorded. Every write changes the refund and its order's tally (and
/// status, counts and list index when the order becomes `refunded`) in one atomic write.
pub trait RefundStore: Send + Sync + 'static {
    /// Begins `refund` (status `processing`, source `api` or `operator`) of `refund.order_no`
    /// in one atomic write: the refund is stored, its amount reserved on the order, and (if it
    /// has one) its `out_refund_no` taken for the merchant. Only if, at that moment, the order
    /// exists and is `refund.merchant_id`'s, is `paid` (a partly refunded order is still
    /// paid), has had fewer than 50 refunds and `refunded + reserved + amount <= amount`; and
    /// the `out_refund_no` and refund number are unused. Each refusal is its own
    /// [`BeginRefundError`]; a used `out_refund_no` is checked first and returns the refund
    /// that has it. Concurrent calls on one order never reserve more than it has: each sees
    /// the others' reservations. Returns the refund as written (read the order for its tally).
    fn begin_refund(
        &self,
        refund: &Refund,
    ) -> impl Future<Output = Result<Refund, BeginRefundError>> + Send;

    /// Settles refund `refund_no` as WeChat Pay reported ([`Refund::settle`]: `processing` to
    /// succeeded, closed or abnormal, or `abnormal` to succeeded), and in the same atomic write
    /// its order's tally ([`RefundTally::settle`](crate::model::RefundTally::settle): a success
    /// takes the reservation as refunded, closed and abnormal release it), the order becoming
    /// `refunded` (with its counts and status list) when the whole amount is refunded. A
    /// refund whose state does not allow it (already final: a duplicate or late notification)
    /// is [`UpdateRefundError::Refused`] with the refund as it is: nothing changes twice.
    fn settle_refund(
        &self,
        refund_no: &RefundNo,
        settlement: &RefundSettlement,
    ) -> impl Future<Output = Result<RefundSettled, UpdateRefundError>> + Send;

    /// Records `refund` (source `wechat`: made outside ferrypay and reported by WeChat Pay,
    /// `processing` or already final, its number WeChat Pay's `out_refund_no`, see
    /// [`RefundNo::from_wechat`]) on its order, idempotently by its number: a second record of
    /// the same number changes nothing ([`ExternalRefundRecorded::Existing`]). It counts in
    /// the tally ([`RefundTally::record`](crate::model::RefundTally::record)) and can make the
    /// order `refunded`; what ferrypay's tally would have refused is recorded anyway and
    /// reported as [`RefundAnomaly`]s. The order must exist and be `refund.merchant_id`'s.
    fn record_external_refund(
        &self,
        refund: &Refund,
    ) -> impl Future<Output = Result<ExternalRefundRecorded, RecordRefundError>> + Send;

    /// A refund by its number, whoever owns it: callers check the owner.
    fn get_refund(
        &self,
        refund_no: &RefundNo,
    ) -> impl Future<Output = Result<Option<Refund>, StoreError>> + Send;

    /// A merchant's refund by its `out_refund_no`.
    fn refund_by_out_refund_no(
        &self,
        merchant_id: &MerchantId,
        out_refund_no: &OutRefundNo,
    ) -> impl Future<Output = Result<Option<Refund>, StoreError>> + Send;

    /// An order's refunds, newest first (by `created_at`, then number), at most `limit`.
    fn refunds_of_order(
        &self,
        order_no: &OrderNo,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Refund>, StoreError>> + Send;

    /// An order's refunds still `processing` (to ask WeChat Pay about), oldest first.
    fn processing_refunds(
        &self,
        order_no: &OrderNo,
    ) -> impl Future<Output = Result<Vec<Refund>, StoreError>> + Send;

    /// Applies a change of the refund's webhook delivery state ([`Refund::apply_webhook`]:
    /// final refunds only, current generation); returns the refund as written.
    fn update_refund_webhook(
        &self,
        refund_no: &RefundNo,
        update: &RefundWebhookUpdate,
    ) -> impl Future<Output = Result<Refund, UpdateRefundError>> + Send;
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

    /// Records one delivery attempt of refund `refund_no`'s webhook (`attempt.order_no` is its
    /// order). Kept apart from the order's own attempts: [`Self::webhook_attempts`] never
    /// lists it. Idempotent like [`Self::record_webhook_attempt`]: the same refund, generation
    /// and attempt number replace the earlier record.
    fn record_refund_webhook_attempt(
        &self,
        refund_no: &RefundNo,
        attempt: &WebhookAttempt,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A refund's latest webhook attempts (of order `order_no`, where they are kept), newest
    /// first (by generation, then attempt number), at most `limit`.
    fn refund_webhook_attempts(
        &self,
        order_no: &OrderNo,
        refund_no: &RefundNo,
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
/// time). Implemented for any type with all five capabilities.
pub trait Store:
    MerchantStore + OrderStore + RefundStore + WebhookAttemptStore + RateLimitStore
{
}

impl<T> Store for T where
    T: MerchantStore + OrderStore + RefundStore + WebhookAttemptStore + RateLimitStore
{
}
