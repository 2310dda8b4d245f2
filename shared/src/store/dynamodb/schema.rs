//! The production store: one DynamoDB table (on-demand), every access pattern one request,
//! every state change a conditional write.
//!
//! # Table layout
//!
//! Table key: `pk` (S, hash) + `sk` (S, range). Two global secondary indexes, both projecting
//! all attributes and sorted by `order_no` (order numbers sort by creation time):
//! `orders_by_merchant` (hash `list_pk`) and `orders_by_merchant_status` (hash `status_list_pk`).
//! Only order records carry `list_pk`/`status_list_pk`, so the indexes hold orders and nothing else.
//! TTL is on `purge_at` (rate-limit windows and webhook attempts have it). [`DynamoStore::create_table`] is the
//! one definition of this schema; `infra/template.yaml` mirrors it.
//!
//! | item | `pk` | `sk` | other keys | holds | written by |
//! | --- | --- | --- | --- | --- | --- |
//! | merchant | `MERCHANT#{id}` | `MERCHANT` | | the merchant + `version`, its secrets sealed | the operator's CLI |
//! | API key | `KEY#{sha256 hex}` | `KEY` | | a copy of the merchant + `key_kind` | the operator's CLI |
//! | keyring | `KEYRING#{purpose}` | `KEYRING` | | a data key wrapped by KMS (`wrapped_key` B, `wrapped_by`, `kms_key_id`) | the operator's CLI, once |
//! | order | `ORDER#{order_no}` | `ORDER` | `list_pk` = `MERCHANT#{id}`, `status_list_pk` = `MERCHANT#{id}#{status}` | the order + `version` | functions |
//! | out_trade_no guard | `OTN#{merchant id}#{out_trade_no}` | `OTN` | | a copy of the order + `version` | functions |
//! | order counts | `COUNTS#{id}` | `COUNTS` | | `count_all`, `count_{status}` | functions |
//! | rate-limit window | `WINDOW#{bucket}` | `WINDOW` | | `n`, `expires_at`, `purge_at` (TTL) | functions |
//! | webhook attempt | `ORDER#{order_no}` | `ATTEMPT#{generation:010}#{attempt:010}` | | the attempt, `purge_at` (TTL, 90 days) | functions |
//! | refund | `ORDER#{order_no}` | `REFUND#{refund_no}` | | the refund + `version` (in no index) | functions |
//! | refund number | `REFUNDNO#{refund_no}` | `REFUNDNO` | | `refund_no`, `order_no`, `merchant_id`: where the refund is; never changes | functions |
//! | out_refund_no guard | `ORF#{merchant id}#{out_refund_no}` | `ORF` | | as the refund number's item | functions |
//! | refund webhook attempt | `ORDER#{order_no}` | `RATTEMPT#{refund_no}#{generation:010}#{attempt:010}` | | the attempt + `refund_no`, `purge_at` (TTL, 90 days) | functions |
//!
//! So Lambda functions write only `ORDER#`, `OTN#`, `COUNTS#`, `WINDOW#` and (refunds)
//! `REFUNDNO#` and `ORF#` partitions (what the template's `dynamodb:LeadingKeys` conditions
//! allow; no function is granted the refund partitions yet); `MERCHANT#`, `KEY#` and `KEYRING#`
//! are the operator's (a store without [`SecretKeys::operator`] refuses merchant writes).
//! Tables written before the counts moved may still hold `MERCHANT#{id}`/`COUNTS`: it is read
//! and added to the new item until `ferrypay merchant migrate-counts` folds it in.
//!
//! Merchants' secrets (`webhook_secret`, `previous_webhook_secret`, `link_signing_secret`) are
//! sealed (`fps1:` + base64 of AES-256-GCM, bound to the merchant and attribute; see
//! [`crate::seal`]) with the data key of their purpose (`webhook`, `link`), the same sealed
//! value in the record and both key items. Items from before sealing hold them in plain text,
//! which still reads (`ferrypay merchant reseal --all` seals them). `version` counts a
//! merchant's updates (absent: 0); each update is conditional on the version read.
//! `ip_allowlist` (L of S, CIDRs) is absent when empty. A merchant's payment-link settings are
//! optional attributes, absent at their defaults, so items written before payment links existed
//! read as the defaults: `link_signing_secret` (S, sealed), `link_require_signed` (BOOL, only
//! when true), `link_return_hosts` (L of S, only when not empty).
//!
//! An order (record and guard copy) carries `source` (S: `api`, `link` or `signed_link`);
//! orders written before it was recorded have none and read back as `api`. It also carries its
//! refund tally: `refunded_amount`, `reserved_amount`, `refund_count` and `committed_amount`
//! (N; `committed` = `refunded` + `reserved`, kept because a condition expression cannot add);
//! orders written before refunds have none, which read as 0 (an `ADD` starts them from 0).
//!
//! A refund's number is ferrypay's `RF…` or, for a refund made in WeChat Pay's merchant
//! platform, WeChat Pay's `out_refund_no` (any of its characters): either way the number
//! WeChat Pay knows it by, unique through its `REFUNDNO#` item.
//!
//! | access pattern | how |
//! | --- | --- |
//! | merchant by API-key hash (either kind) | `GetItem KEY#…` (strongly consistent; the item names its kind) |
//! | merchant by id | `GetItem MERCHANT#…` |
//! | a purpose's data key | `GetItem KEYRING#…`, then KMS `Decrypt` with the context `{"ferrypay:purpose": …}`: once per process |
//! | order by number | `GetItem ORDER#…` |
//! | order by merchant + `out_trade_no` | `GetItem OTN#…` (strongly consistent, unlike a GSI) |
//! | a merchant's orders, newest first | `Query orders_by_merchant` (or `orders_by_merchant_status` for one status), descending; a cursor is the key condition `order_no < :after` inside the caller's own partition, so it can never reach another merchant's orders; `total` is a `GetItem` of the counts item (and of the old one, see above), sent concurrently |
//! | rate-limit window | `UpdateItem ADD n` |
//! | an order's latest webhook attempts | `Query pk = ORDER#… AND begins_with(sk, ATTEMPT#)`, descending (zero-padded numbers sort) |
//! | refund by number | `GetItem REFUNDNO#…`, then `GetItem ORDER#… / REFUND#…` (both strongly consistent) |
//! | refund by merchant + `out_refund_no` | `GetItem ORF#…`, then the refund |
//! | an order's refunds (newest first; the processing ones) | `Query pk = ORDER#… AND begins_with(sk, REFUND#)`, strongly consistent, sorted by `created_at` in code (at most about 50 items; WeChat Pay's own numbers do not sort by time) |
//! | a refund's latest webhook attempts | `Query pk = ORDER#… AND begins_with(sk, RATTEMPT#{refund_no}#)`, descending (a refund number has no `#`, so one refund's prefix never takes in another's) |
//!
//! Writes:
//! - `insert_merchant`: one transaction putting the merchant and both key items, each only if new.
//!   The key items copy the merchant, so whoever changes a merchant (status, notify URL, keys,
//!   payment-link settings, allowlist) must rewrite all three items in one transaction.
//! - `update_merchant`: one transaction: the record only if its `version` is still the one read
//!   (so of two updates from one read, the second writes nothing, none of its key items
//!   either), each key item, and the deletes of replaced key items.
//! - keyring: a put only if absent (two operators at once: the loser reads the winner's).
//! - `insert_order`: one transaction putting the order and (with an `out_trade_no`) its guard,
//!   each only if new, and adding to the merchant's counts.
//! - `update_order`: reads the order (strongly consistent), computes the next state with
//!   [`Order::apply`] (refusing at once if it says no), then writes it in one transaction (order,
//!   guard copy, counts on a status change) under `Order::apply`'s rules as a condition (`status
//!   = pending`, `AND amount = :amount` to pay; `status = paid` for the webhook updates, `AND
//!   webhook_generation = :generation` to record a queued job or an attempt) plus
//!   `version = :read_version`, so the order returned is exactly the one written. If the
//!   condition fails it reads again and `Order::apply` gives the reason (or, if only the version
//!   moved, it tries again, bounded).
//! - `begin_refund`: reads the order (strongly consistent) and refuses at once what that shows;
//!   then one transaction: `UpdateItem` of the order record `ADD reserved_amount :a,
//!   committed_amount :a, refund_count :1, version :1` under `merchant_id = :m AND status = paid
//!   AND (committed_amount absent OR <= amount - :a) AND (refund_count absent OR < 50)` with
//!   `ReturnValuesOnConditionCheckFailure = ALL_OLD`; puts of the refund and its `REFUNDNO#`
//!   item, each only if new; the `ORF#` guard (with an `out_refund_no`) only if new; the same
//!   `ADD` on the `OTN#` copy (with an `out_trade_no`). No version condition: concurrent
//!   reservations each see the others' instead of conflicting. A cancelled transaction names
//!   its refusal by item: the guard (the refund that has the number is read and returned), the
//!   order (the returned item says which condition: not found, not paid, too many, exceeds;
//!   none of them: a conflict), the refund or its number (a number collision).
//! - `settle_refund`, `record_external_refund`: read the refund (and its order), compute the
//!   next state with `Refund::settle` / `RefundTally::{settle, record}` and
//!   `Order::with_refunds`, then one transaction: the refund under `version = :read` (or, for a
//!   refund recorded from WeChat Pay, its `REFUNDNO#` item and the refund only if new), the
//!   order and its `OTN#` copy under `version = :read`, and, when the order becomes
//!   `refunded`, the counts (`count_paid` -1, `count_refunded` +1; the new record carries its
//!   new `status_list_pk`). If a condition fails they read again and the model decides
//!   (bounded).
//! - `update_refund_webhook`: a put of the refund under `version = :read`, re-read on a race.
//! - `count_in_window`: `ADD n :1` if the item's `expires_at` is this window's (or it is new);
//!   otherwise the item is an earlier window that TTL has not deleted yet (TTL deletion lags by
//!   up to days), and it is replaced by a fresh count of 1.
//!
//! Deep page numbers read the orders they skip (DynamoDB has no offset); cursors do not.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
};

use super::{build_error, sdk_error, DynamoStore};
#[cfg(doc)]
use crate::store::SecretKeys;
use crate::{
    model::{
        KeyHash, MerchantId, OrderNo, OrderStatus, OutRefundNo, OutTradeNo, RefundNo, SecretPurpose,
    },
    store::StoreError,
};

pub(super) const PK: &str = "pk";
pub(super) const SK: &str = "sk";
pub(super) const INDEX_BY_MERCHANT: &str = "orders_by_merchant";
pub(super) const INDEX_BY_MERCHANT_STATUS: &str = "orders_by_merchant_status";
pub(super) const LIST_PK: &str = "list_pk";
pub(super) const STATUS_LIST_PK: &str = "status_list_pk";
/// The range key of both indexes.
pub(super) const ORDER_NO: &str = "order_no";
/// The TTL attribute (epoch seconds).
pub(super) const PURGE_AT: &str = "purge_at";

pub(super) const VERSION: &str = "version";
/// An order's refund tally (absent: 0); `committed_amount` = `refunded_amount` +
/// `reserved_amount`, kept because condition expressions cannot add.
pub(super) const REFUNDED: &str = "refunded_amount";
pub(super) const RESERVED: &str = "reserved_amount";
pub(super) const REFUND_COUNT: &str = "refund_count";
pub(super) const COMMITTED: &str = "committed_amount";
pub(super) const ITEM_TYPE: &str = "item_type";

/// How long `create_table` waits for the table and its indexes to become active.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

pub(super) fn merchant_pk(id: &MerchantId) -> String {
    format!("MERCHANT#{id}")
}

pub(super) fn key_pk(hash: &KeyHash) -> String {
    format!("KEY#{}", hash.as_str())
}

pub(super) fn order_pk(order_no: &OrderNo) -> String {
    format!("ORDER#{order_no}")
}

pub(super) fn guard_pk(merchant_id: &MerchantId, out_trade_no: &OutTradeNo) -> String {
    format!("OTN#{merchant_id}#{out_trade_no}")
}

/// A refund's number, unique across ferrypay (the pointer to its order).
pub(super) fn refund_no_pk(refund_no: &RefundNo) -> String {
    format!("REFUNDNO#{refund_no}")
}

/// A merchant's `out_refund_no`, unique per merchant.
pub(super) fn refund_guard_pk(merchant_id: &MerchantId, out_refund_no: &OutRefundNo) -> String {
    format!("ORF#{merchant_id}#{out_refund_no}")
}

/// A refund's sort key in its order's partition.
pub(super) fn refund_sk(refund_no: &RefundNo) -> String {
    format!("{REFUND_SK_PREFIX}{refund_no}")
}

pub(super) fn status_list_pk(merchant_id: &MerchantId, status: OrderStatus) -> String {
    format!("MERCHANT#{merchant_id}#{}", status.as_str())
}

/// Order counts live in a partition of their own (not the merchant's), so a function that
/// creates orders writes no `MERCHANT#` item (IAM's `dynamodb:LeadingKeys`).
pub(super) fn counts_pk(merchant_id: &MerchantId) -> String {
    format!("COUNTS#{merchant_id}")
}

pub(super) fn keyring_pk(purpose: SecretPurpose) -> String {
    format!("KEYRING#{}", purpose.as_str())
}

pub(super) fn window_pk(bucket: &str) -> String {
    format!("WINDOW#{bucket}")
}

pub(super) const MERCHANT_SK: &str = "MERCHANT";
pub(super) const KEY_SK: &str = "KEY";
pub(super) const ORDER_SK: &str = "ORDER";
pub(super) const GUARD_SK: &str = "OTN";
pub(super) const COUNTS_SK: &str = "COUNTS";
pub(super) const WINDOW_SK: &str = "WINDOW";
pub(super) const KEYRING_SK: &str = "KEYRING";
pub(super) const ATTEMPT_SK_PREFIX: &str = "ATTEMPT#";
pub(super) const REFUND_ATTEMPT_SK_PREFIX: &str = "RATTEMPT#";
pub(super) const REFUND_SK_PREFIX: &str = "REFUND#";
pub(super) const REFUND_NO_SK: &str = "REFUNDNO";
pub(super) const REFUND_GUARD_SK: &str = "ORF";

/// Zero-padded, so that the attempts of an order sort by generation, then attempt number.
pub(super) fn attempt_sk(generation: u32, attempt: u32) -> String {
    format!("{ATTEMPT_SK_PREFIX}{generation:010}#{attempt:010}")
}

/// Where a refund's attempts start in its order's partition (see [`refund_attempt_sk`]).
pub(super) fn refund_attempts_prefix(refund_no: &RefundNo) -> String {
    format!("{REFUND_ATTEMPT_SK_PREFIX}{refund_no}#")
}

/// A refund's attempt: apart from the order's own (`ATTEMPT#`), sorted like them.
pub(super) fn refund_attempt_sk(refund_no: &RefundNo, generation: u32, attempt: u32) -> String {
    format!(
        "{}{generation:010}#{attempt:010}",
        refund_attempts_prefix(refund_no)
    )
}

pub(super) fn count_attribute(status: Option<OrderStatus>) -> String {
    match status {
        None => "count_all".to_string(),
        Some(status) => format!("count_{}", status.as_str()),
    }
}

impl DynamoStore {
    /// Creates the table unless it exists (`ferrypay dev --store dynamodb`, operators' local
    /// tables); in AWS the SAM template creates it.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                self.create_table().await
            }
            Err(e) => Err(sdk_error(&format!("describe table {}", self.table), e)),
        }
    }

    /// Creates the table with ferrypay's key schema and indexes (on-demand billing), waits until
    /// it and its indexes are active, and turns TTL on. An existing table is left as it is (TTL
    /// is still turned on if it is off). For tests and `ferrypay dev`; production tables come from
    /// the SAM template, which mirrors this definition.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let string_attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| build_error("table definition", e))
        };
        let key = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(|e| build_error("table definition", e))
        };
        let index = |name: &str, hash: &str| -> Result<GlobalSecondaryIndex, StoreError> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash)?)
                .key_schema(key(ORDER_NO, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(|e| build_error("table definition", e))
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attribute(PK)?)
            .attribute_definitions(string_attribute(SK)?)
            .attribute_definitions(string_attribute(LIST_PK)?)
            .attribute_definitions(string_attribute(STATUS_LIST_PK)?)
            .attribute_definitions(string_attribute(ORDER_NO)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .global_secondary_indexes(index(INDEX_BY_MERCHANT, LIST_PK)?)
            .global_secondary_indexes(index(INDEX_BY_MERCHANT_STATUS, STATUS_LIST_PK)?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(e) => return Err(sdk_error(&format!("create table {}", self.table), e)),
        }
        self.wait_until_active().await?;

        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| sdk_error("describe TTL", e))?;
        let ttl_on = ttl
            .time_to_live_description()
            .and_then(|d| d.time_to_live_status())
            .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
        if !ttl_on {
            let spec = TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(PURGE_AT)
                .build()
                .map_err(|e| build_error("TTL definition", e))?;
            self.client
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| sdk_error("enable TTL", e))?;
        }
        Ok(())
    }

    async fn wait_until_active(&self) -> Result<(), StoreError> {
        let started = tokio::time::Instant::now();
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| sdk_error(&format!("describe table {}", self.table), e))?;
            let active = described.table().is_some_and(|t| {
                t.table_status() == Some(&TableStatus::Active)
                    && t.global_secondary_indexes()
                        .iter()
                        .all(|i| i.index_status() == Some(&IndexStatus::Active))
            });
            if active {
                return Ok(());
            }
            if started.elapsed() > TABLE_ACTIVE_TIMEOUT {
                return Err(StoreError::new(format!(
                    "table {} not active after {:?}",
                    self.table, TABLE_ACTIVE_TIMEOUT
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
