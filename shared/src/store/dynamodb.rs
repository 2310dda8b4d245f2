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
//! | item | `pk` | `sk` | other keys | holds |
//! | --- | --- | --- | --- | --- |
//! | merchant | `MERCHANT#{id}` | `MERCHANT` | | the merchant |
//! | API key | `KEY#{sha256 hex}` | `KEY` | | a copy of the merchant + `key_kind` |
//! | order | `ORDER#{order_no}` | `ORDER` | `list_pk` = `MERCHANT#{id}`, `status_list_pk` = `MERCHANT#{id}#{status}` | the order + `version` |
//! | out_trade_no guard | `OTN#{merchant id}#{out_trade_no}` | `OTN` | | a copy of the order + `version` |
//! | order counts | `MERCHANT#{id}` | `COUNTS` | | `count_all`, `count_{status}` |
//! | rate-limit window | `WINDOW#{bucket}` | `WINDOW` | | `n`, `expires_at`, `purge_at` (TTL) |
//! | webhook attempt | `ORDER#{order_no}` | `ATTEMPT#{generation:010}#{attempt:010}` | | the attempt, `purge_at` (TTL, 90 days) |
//!
//! A merchant's payment-link settings (in its record and both key items) are optional
//! attributes, absent when they have their default, so items written before payment links
//! existed read as the defaults: `link_signing_secret` (S), `link_require_signed` (BOOL, only
//! when true), `link_return_hosts` (L of S, only when not empty).
//!
//! | access pattern | how |
//! | --- | --- |
//! | merchant by API-key hash (either kind) | `GetItem KEY#…` (strongly consistent; the item names its kind) |
//! | merchant by id | `GetItem MERCHANT#…` |
//! | order by number | `GetItem ORDER#…` |
//! | order by merchant + `out_trade_no` | `GetItem OTN#…` (strongly consistent, unlike a GSI) |
//! | a merchant's orders, newest first | `Query orders_by_merchant` (or `orders_by_merchant_status` for one status), descending; a cursor is the key condition `order_no < :after` inside the caller's own partition, so it can never reach another merchant's orders; `total` is a `GetItem` of the counts item, sent concurrently |
//! | rate-limit window | `UpdateItem ADD n` |
//! | an order's latest webhook attempts | `Query pk = ORDER#… AND begins_with(sk, ATTEMPT#)`, descending (zero-padded numbers sort) |
//!
//! Writes:
//! - `insert_merchant`: one transaction putting the merchant and both key items, each only if new.
//!   The key items copy the merchant, so whoever changes a merchant (status, notify URL, keys,
//!   payment-link settings) must rewrite all three items in one transaction.
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
//! - `count_in_window`: `ADD n :1` if the item's `expires_at` is this window's (or it is new);
//!   otherwise the item is an earlier window that TTL has not deleted yet (TTL deletion lags by
//!   up to days), and it is replaced by a fresh count of 1.
//!
//! Deep page numbers read the orders they skip (DynamoDB has no offset); cursors do not.

use std::{collections::HashMap, fmt, time::Duration};

use aws_sdk_dynamodb::{
    error::{DisplayErrorContext, SdkError},
    operation::{
        put_item::PutItemError, transact_write_items::TransactWriteItemsError,
        update_item::UpdateItemError,
    },
    types::{
        AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex,
        IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType, Put, ReturnValue,
        ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
        TransactWriteItem, Update,
    },
    Client,
};

use super::{
    InsertMerchantError, InsertOrderError, ListQuery, OrderPage, PageStart, Store, StoreError,
    UpdateMerchantError, UpdateOrderError, WEBHOOK_ATTEMPT_RETENTION_DAYS,
};
use crate::model::{
    Fen, KeyHash, KeyKind, Merchant, MerchantId, MerchantStatus, Order, OrderNo, OrderStatus,
    OrderUpdate, OutTradeNo, PayCredential, PayType, PaymentLinkSettings, RetiringSecret, Secret,
    Timestamp, WebhookAttempt, WebhookState, WebhookStatus,
};

// ---------------------------------------------------------------- the schema, in one place

const PK: &str = "pk";
const SK: &str = "sk";
const INDEX_BY_MERCHANT: &str = "orders_by_merchant";
const INDEX_BY_MERCHANT_STATUS: &str = "orders_by_merchant_status";
const LIST_PK: &str = "list_pk";
const STATUS_LIST_PK: &str = "status_list_pk";
/// The range key of both indexes.
const ORDER_NO: &str = "order_no";
/// The TTL attribute (epoch seconds).
const PURGE_AT: &str = "purge_at";

/// A merchant's payment-link settings, each absent when it has its default.
const LINK_SIGNING_SECRET: &str = "link_signing_secret";
const LINK_REQUIRE_SIGNED: &str = "link_require_signed";
const LINK_RETURN_HOSTS: &str = "link_return_hosts";

const VERSION: &str = "version";
const ITEM_TYPE: &str = "item_type";

/// Conflicting transactions (two writes to one merchant's counts at once) and version races
/// are retried this many times before giving up with a [`StoreError`].
const MAX_ATTEMPTS: u32 = 5;
/// How long `create_table` waits for the table and its indexes to become active.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

fn merchant_pk(id: &MerchantId) -> String {
    format!("MERCHANT#{id}")
}

fn key_pk(hash: &KeyHash) -> String {
    format!("KEY#{}", hash.as_str())
}

fn order_pk(order_no: &OrderNo) -> String {
    format!("ORDER#{order_no}")
}

fn guard_pk(merchant_id: &MerchantId, out_trade_no: &OutTradeNo) -> String {
    format!("OTN#{merchant_id}#{out_trade_no}")
}

fn status_list_pk(merchant_id: &MerchantId, status: OrderStatus) -> String {
    format!("MERCHANT#{merchant_id}#{}", status.as_str())
}

fn window_pk(bucket: &str) -> String {
    format!("WINDOW#{bucket}")
}

const MERCHANT_SK: &str = "MERCHANT";
const KEY_SK: &str = "KEY";
const ORDER_SK: &str = "ORDER";
const GUARD_SK: &str = "OTN";
const COUNTS_SK: &str = "COUNTS";
const WINDOW_SK: &str = "WINDOW";
const ATTEMPT_SK_PREFIX: &str = "ATTEMPT#";

/// Zero-padded, so that the attempts of an order sort by generation, then attempt number.
fn attempt_sk(generation: u32, attempt: u32) -> String {
    format!("{ATTEMPT_SK_PREFIX}{generation:010}#{attempt:010}")
}

fn count_attribute(status: Option<OrderStatus>) -> String {
    match status {
        None => "count_all".to_string(),
        Some(status) => format!("count_{}", status.as_str()),
    }
}

type Item = HashMap<String, AttributeValue>;

/// The DynamoDB [`Store`]. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store on `table_name` (which must have the layout [`DynamoStore::create_table`] makes).
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table_name.into(),
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Creates the table with ferrypay's key schema and indexes (on-demand billing), waits until
    /// it and its indexes are active, and turns TTL on. An existing table is left as it is (TTL
    /// is still turned on if it is off). For tests and `ferrypay dev`; production tables come from
    /// the SAM template, which mirrors this definition.
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

    /// Opens the connection (TLS included) with a cheap `DescribeTable`, so the first request
    /// of a cold Lambda does not pay for the handshake. Failures are only logged.
    pub async fn warm_up(&self) {
        if let Err(e) = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            tracing::warn!(table = %self.table, error = %DisplayErrorContext(&e), "DynamoDB warm-up failed");
        }
    }

    pub async fn create_table(&self) -> Result<(), StoreError> {
        let string_attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError(format!("table definition: {e}")))
        };
        let key = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(|e| StoreError(format!("table definition: {e}")))
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
                .map_err(|e| StoreError(format!("table definition: {e}")))
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
                .map_err(|e| StoreError(format!("TTL definition: {e}")))?;
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
                return Err(StoreError(format!(
                    "table {} not active after {:?}",
                    self.table, TABLE_ACTIVE_TIMEOUT
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(&pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("get {pk}"), e))?;
        Ok(out.item)
    }

    /// Runs a transaction, retrying it while DynamoDB cancels it for a conflict with another
    /// transaction or for throttling. `Ok(Err(indexes))`: the conditions of these items failed.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        context: &str,
    ) -> Result<Result<(), Vec<usize>>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let error = match sent {
                Ok(_) => return Ok(Ok(())),
                Err(e) => e,
            };
            let reasons: Vec<String> = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().unwrap_or("None").to_string())
                    .collect(),
                _ => return Err(sdk_error(context, error)),
            };
            let failed: Vec<usize> = reasons
                .iter()
                .enumerate()
                .filter(|(_, code)| code.as_str() == "ConditionalCheckFailed")
                .map(|(i, _)| i)
                .collect();
            if !failed.is_empty() {
                return Ok(Err(failed));
            }
            let transient = reasons.iter().any(|code| {
                matches!(
                    code.as_str(),
                    "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                )
            });
            if !transient || attempt >= MAX_ATTEMPTS {
                return Err(sdk_error(context, error));
            }
            tracing::debug!(
                context,
                attempt,
                ?reasons,
                "transaction cancelled, retrying"
            );
            backoff(attempt).await;
        }
    }

    /// One conditional put: `Ok(false)` if the condition failed.
    async fn put_if(&self, write: Put, context: &str) -> Result<bool, StoreError> {
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(write.item))
            .set_condition_expression(write.condition_expression)
            .set_expression_attribute_names(write.expression_attribute_names)
            .set_expression_attribute_values(write.expression_attribute_values)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error(context, e)),
        }
    }

    fn put(&self, item: Item, condition: Condition) -> Result<Put, StoreError> {
        let (expression, names, values) = condition.into_parts();
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(expression)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .build()
            .map_err(|e| StoreError(format!("put request: {e}")))
    }

    /// Adds `by` to each named count of a merchant's counts item.
    fn add_counts(
        &self,
        merchant_id: &MerchantId,
        changes: &[(String, i64)],
    ) -> Result<Update, StoreError> {
        let mut names = HashMap::from([("#type".to_string(), ITEM_TYPE.to_string())]);
        let mut values = HashMap::from([(":type".to_string(), s("order_counts"))]);
        let mut parts = Vec::new();
        for (i, (attribute, by)) in changes.iter().enumerate() {
            names.insert(format!("#c{i}"), attribute.clone());
            values.insert(format!(":c{i}"), n(*by));
            parts.push(format!("#c{i} :c{i}"));
        }
        Update::builder()
            .table_name(&self.table)
            .key(PK, s(merchant_pk(merchant_id)))
            .key(SK, s(COUNTS_SK))
            .update_expression(format!("SET #type = :type ADD {}", parts.join(", ")))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| StoreError(format!("update request: {e}")))
    }

    async fn query_orders(
        &self,
        query: &ListQuery,
        skip: usize,
        want: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let (index, pk_attribute, pk_value) = match query.status {
            None => (INDEX_BY_MERCHANT, LIST_PK, merchant_pk(&query.merchant_id)),
            Some(status) => (
                INDEX_BY_MERCHANT_STATUS,
                STATUS_LIST_PK,
                status_list_pk(&query.merchant_id, status),
            ),
        };
        let mut key_condition = "#pk = :pk".to_string();
        let mut names = HashMap::from([("#pk".to_string(), pk_attribute.to_string())]);
        let mut values = HashMap::from([(":pk".to_string(), s(pk_value))]);
        if let PageStart::After(after) = &query.start {
            key_condition.push_str(" AND #order_no < :after");
            names.insert("#order_no".into(), ORDER_NO.into());
            values.insert(":after".into(), s(after.as_str()));
        }
        let mut orders = Vec::new();
        let mut seen = 0usize;
        let mut start_key: Option<Item> = None;
        while seen < want {
            let limit = i32::try_from(want - seen).unwrap_or(i32::MAX);
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(&key_condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .limit(limit)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| sdk_error(&format!("list orders of {}", query.merchant_id), e))?;
            for item in out.items() {
                if seen >= skip && seen < want {
                    orders.push(order_from_item(item)?.0);
                }
                seen += 1;
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => break,
            }
        }
        Ok(orders)
    }

    async fn count_orders(
        &self,
        merchant_id: &MerchantId,
        status: Option<OrderStatus>,
    ) -> Result<u64, StoreError> {
        let Some(item) = self.get(merchant_pk(merchant_id), COUNTS_SK).await? else {
            return Ok(0);
        };
        let counts = Reader::new(&item, "order counts");
        let count = counts.opt_int(&count_attribute(status))?.unwrap_or(0);
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

impl Store for DynamoStore {
    async fn insert_merchant(&self, merchant: &Merchant) -> Result<(), InsertMerchantError> {
        if merchant.secret_key_hash == merchant.publishable_key_hash {
            return Err(StoreError("a merchant's two keys must differ".into()).into());
        }
        let new = || Condition::new("attribute_not_exists(#pk)").name("#pk", PK);
        let record = merchant_item(merchant, merchant_pk(&merchant.id), MERCHANT_SK, None);
        let secret = merchant_item(
            merchant,
            key_pk(&merchant.secret_key_hash),
            KEY_SK,
            Some(KeyKind::Secret),
        );
        let publishable = merchant_item(
            merchant,
            key_pk(&merchant.publishable_key_hash),
            KEY_SK,
            Some(KeyKind::Publishable),
        );
        let items = [record, secret, publishable]
            .into_iter()
            .map(|item| {
                Ok(TransactWriteItem::builder()
                    .put(self.put(item, new())?)
                    .build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        match self
            .transact(items, &format!("insert merchant {}", merchant.id))
            .await?
        {
            Ok(()) => Ok(()),
            Err(_) => Err(InsertMerchantError::Exists),
        }
    }

    async fn merchant_by_key(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<(Merchant, KeyKind)>, StoreError> {
        let Some(item) = self.get(key_pk(hash), KEY_SK).await? else {
            return Ok(None);
        };
        let merchant = merchant_from_item(&item)?;
        let kind = match Reader::new(&item, "API key").str("key_kind")? {
            "secret" => KeyKind::Secret,
            "publishable" => KeyKind::Publishable,
            other => return Err(corrupt("API key", &format!("key_kind {other:?}"))),
        };
        Ok(Some((merchant, kind)))
    }

    async fn get_merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError> {
        self.get(merchant_pk(id), MERCHANT_SK)
            .await?
            .map(|item| merchant_from_item(&item))
            .transpose()
    }

    /// One transaction: the merchant record (only if it exists), each key item rewritten (a new
    /// hash only if unused), and the key items of replaced hashes deleted.
    async fn update_merchant(&self, merchant: &Merchant) -> Result<(), UpdateMerchantError> {
        if merchant.secret_key_hash == merchant.publishable_key_hash {
            return Err(StoreError("a merchant's two keys must differ".into()).into());
        }
        let current = self
            .get_merchant(&merchant.id)
            .await?
            .ok_or(UpdateMerchantError::NotFound)?;
        let exists = || Condition::new("attribute_exists(#pk)").name("#pk", PK);
        let new = || Condition::new("attribute_not_exists(#pk)").name("#pk", PK);
        let mut items = vec![TransactWriteItem::builder()
            .put(self.put(
                merchant_item(merchant, merchant_pk(&merchant.id), MERCHANT_SK, None),
                exists(),
            )?)
            .build()];
        for (kind, old, new_hash) in [
            (
                KeyKind::Secret,
                &current.secret_key_hash,
                &merchant.secret_key_hash,
            ),
            (
                KeyKind::Publishable,
                &current.publishable_key_hash,
                &merchant.publishable_key_hash,
            ),
        ] {
            let condition = if old == new_hash { exists() } else { new() };
            let key_item = merchant_item(merchant, key_pk(new_hash), KEY_SK, Some(kind));
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(key_item, condition)?)
                    .build(),
            );
            if old != new_hash {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key(PK, s(key_pk(old)))
                    .key(SK, s(KEY_SK))
                    .build()
                    .map_err(|e| StoreError(format!("delete request: {e}")))?;
                items.push(TransactWriteItem::builder().delete(delete).build());
            }
        }
        match self
            .transact(items, &format!("update merchant {}", merchant.id))
            .await?
        {
            Ok(()) => Ok(()),
            Err(failed) if failed.contains(&0) => Err(UpdateMerchantError::NotFound),
            Err(_) => Err(UpdateMerchantError::KeyTaken),
        }
    }

    async fn list_merchants(&self) -> Result<Vec<Merchant>, StoreError> {
        let mut merchants = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#sk = :merchant")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":merchant", s(MERCHANT_SK))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("list merchants", e))?;
            for item in page.items() {
                merchants.push(merchant_from_item(item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        merchants.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(merchants)
    }

    async fn insert_order(&self, order: &Order) -> Result<(), InsertOrderError> {
        let new = || Condition::new("attribute_not_exists(#pk)").name("#pk", PK);
        let mut items = vec![TransactWriteItem::builder()
            .put(self.put(order_record(order, 0), new())?)
            .build()];
        if let Some(guard) = guard_item(order, 0) {
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(guard, new())?)
                    .build(),
            );
        }
        let counts = self.add_counts(
            &order.merchant_id,
            &[
                (count_attribute(None), 1),
                (count_attribute(Some(order.status)), 1),
            ],
        )?;
        items.push(TransactWriteItem::builder().update(counts).build());
        match self
            .transact(items, &format!("insert order {}", order.order_no))
            .await?
        {
            Ok(()) => Ok(()),
            Err(failed) if failed.contains(&0) => Err(InsertOrderError::OrderNoTaken),
            Err(failed) if failed.contains(&1) && order.out_trade_no.is_some() => {
                Err(InsertOrderError::OutTradeNoTaken)
            }
            Err(failed) => Err(StoreError(format!(
                "insert order {}: unexpected condition failure on items {failed:?}",
                order.order_no
            ))
            .into()),
        }
    }

    async fn get_order(&self, order_no: &OrderNo) -> Result<Option<Order>, StoreError> {
        Ok(self
            .get(order_pk(order_no), ORDER_SK)
            .await?
            .map(|item| order_from_item(&item))
            .transpose()?
            .map(|(order, _)| order))
    }

    async fn order_by_out_trade_no(
        &self,
        merchant_id: &MerchantId,
        out_trade_no: &OutTradeNo,
    ) -> Result<Option<Order>, StoreError> {
        Ok(self
            .get(guard_pk(merchant_id, out_trade_no), GUARD_SK)
            .await?
            .map(|item| order_from_item(&item))
            .transpose()?
            .map(|(order, _)| order))
    }

    async fn update_order(
        &self,
        order_no: &OrderNo,
        update: &OrderUpdate,
    ) -> Result<Order, UpdateOrderError> {
        let context = format!("update order {order_no}");
        for attempt in 1..=MAX_ATTEMPTS {
            let Some(item) = self.get(order_pk(order_no), ORDER_SK).await? else {
                return Err(UpdateOrderError::NotFound);
            };
            let (current, version) = order_from_item(&item)?;
            let next = current
                .apply(update)
                .map_err(|reason| UpdateOrderError::Refused {
                    current: Box::new(current.clone()),
                    reason,
                })?;

            let rules = apply_rules(update)
                .and("#version = :version")
                .name("#version", VERSION)
                .value(":version", n(version));
            let record = self.put(order_record(&next, version + 1), rules)?;

            let guard = guard_item(&next, version + 1)
                .map(|item| {
                    let same_version = Condition::new("#version = :version")
                        .name("#version", VERSION)
                        .value(":version", n(version));
                    self.put(item, same_version)
                })
                .transpose()?;
            let counts = (next.status != current.status)
                .then(|| {
                    self.add_counts(
                        &next.merchant_id,
                        &[
                            (count_attribute(Some(current.status)), -1),
                            (count_attribute(Some(next.status)), 1),
                        ],
                    )
                })
                .transpose()?;

            let written = if guard.is_none() && counts.is_none() {
                self.put_if(record, &context).await?
            } else {
                let mut items = vec![TransactWriteItem::builder().put(record).build()];
                if let Some(guard) = guard {
                    items.push(TransactWriteItem::builder().put(guard).build());
                }
                if let Some(counts) = counts {
                    items.push(TransactWriteItem::builder().update(counts).build());
                }
                self.transact(items, &context).await?.is_ok()
            };
            if written {
                return Ok(next);
            }
            // The order changed since it was read: read it again; `apply` decides.
            tracing::debug!(%order_no, attempt, "conditional update failed, re-reading");
        }
        Err(StoreError(format!("{context}: the order kept changing; gave up")).into())
    }

    async fn list_orders(&self, query: &ListQuery) -> Result<OrderPage, StoreError> {
        let per_page = query.per_page as usize;
        let skip = match query.start {
            PageStart::Page(page) => (page.max(1) as usize - 1).saturating_mul(per_page),
            PageStart::After(_) => 0,
        };
        // One more than the page, to know whether another page follows.
        let want = skip.saturating_add(per_page).saturating_add(1);
        let (orders, total) = tokio::try_join!(
            self.query_orders(query, skip, want),
            self.count_orders(&query.merchant_id, query.status),
        )?;
        Ok(OrderPage::from_overfetch(orders, query.per_page, total))
    }

    async fn record_webhook_attempt(&self, attempt: &WebhookAttempt) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attempt_item(attempt)))
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    &format!("record webhook attempt of {}", attempt.order_no),
                    e,
                )
            })?;
        Ok(())
    }

    async fn webhook_attempts(
        &self,
        order_no: &OrderNo,
        limit: u32,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(order_pk(order_no)))
            .expression_attribute_values(":prefix", s(ATTEMPT_SK_PREFIX))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("webhook attempts of {order_no}"), e))?;
        out.items().iter().map(attempt_from_item).collect()
    }

    async fn count_in_window(
        &self,
        bucket: &str,
        expires_at: Timestamp,
    ) -> Result<u64, StoreError> {
        let context = format!("count in window {bucket}");
        for attempt in 1..=MAX_ATTEMPTS {
            // This window's item, or a new one: count.
            let counted = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PK, s(window_pk(bucket)))
                .key(SK, s(WINDOW_SK))
                .update_expression(
                    "SET #expires = :expires, #purge = :expires, #type = :type ADD #n :one",
                )
                .condition_expression("attribute_not_exists(#pk) OR #expires = :expires")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#expires", "expires_at")
                .expression_attribute_names("#purge", PURGE_AT)
                .expression_attribute_names("#type", ITEM_TYPE)
                .expression_attribute_names("#n", "n")
                .expression_attribute_values(":expires", n(expires_at.unix()))
                .expression_attribute_values(":type", s("rate_window"))
                .expression_attribute_values(":one", n(1))
                .return_values(ReturnValue::UpdatedNew)
                .send()
                .await;
            match counted {
                Ok(out) => {
                    let count = out
                        .attributes()
                        .and_then(|a| a.get("n"))
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| corrupt("rate window", "n missing after ADD"))?;
                    return Ok(count);
                }
                Err(e)
                    if !matches!(
                        e.as_service_error(),
                        Some(UpdateItemError::ConditionalCheckFailedException(_))
                    ) =>
                {
                    return Err(sdk_error(&context, e));
                }
                Err(_) => {}
            }
            // An earlier window's item (TTL deletes late): start this window at 1, unless
            // another request did so first (then count again on top of it).
            let fresh = HashMap::from([
                (PK.to_string(), s(window_pk(bucket))),
                (SK.to_string(), s(WINDOW_SK)),
                (ITEM_TYPE.to_string(), s("rate_window")),
                ("n".to_string(), n(1)),
                ("expires_at".to_string(), n(expires_at.unix())),
                (PURGE_AT.to_string(), n(expires_at.unix())),
            ]);
            let stale = Condition::new("#expires <> :expires")
                .name("#expires", "expires_at")
                .value(":expires", n(expires_at.unix()));
            if self.put_if(self.put(fresh, stale)?, &context).await? {
                return Ok(1);
            }
            tracing::debug!(
                bucket,
                attempt,
                "rate window restarted concurrently, counting again"
            );
        }
        Err(StoreError(format!("{context}: kept conflicting; gave up")))
    }
}

// ---------------------------------------------------------------- conditions

/// `Order::apply`'s preconditions for `update`, as a DynamoDB condition on the order record.
/// Keep in step with `Order::apply`: the contract tests check both stores refuse alike.
fn apply_rules(update: &OrderUpdate) -> Condition {
    let status_is = |status: OrderStatus| {
        Condition::new("attribute_exists(#pk) AND #status = :status")
            .name("#pk", PK)
            .name("#status", "status")
            .value(":status", s(status.as_str()))
    };
    match update {
        OrderUpdate::AttachCredential(_) | OrderUpdate::MarkClosed { .. } => {
            status_is(OrderStatus::Pending)
        }
        OrderUpdate::MarkPaid { amount, .. } => status_is(OrderStatus::Pending)
            .and("#amount = :amount")
            .name("#amount", "amount")
            .value(":amount", n(amount.get())),
        OrderUpdate::RestartWebhook => status_is(OrderStatus::Paid),
        OrderUpdate::RecordWebhookQueued { generation, .. }
        | OrderUpdate::RecordWebhookAttempt { generation, .. } => status_is(OrderStatus::Paid)
            .and("#webhook_generation = :webhook_generation")
            .name("#webhook_generation", "webhook_generation")
            .value(":webhook_generation", n(i64::from(*generation))),
    }
}

/// A condition expression with its placeholders.
struct Condition {
    expression: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Condition {
    fn new(expression: &str) -> Self {
        Condition {
            expression: expression.to_string(),
            names: HashMap::new(),
            values: HashMap::new(),
        }
    }

    fn and(mut self, expression: &str) -> Self {
        self.expression = format!("{} AND {expression}", self.expression);
        self
    }

    fn name(mut self, placeholder: &str, attribute: &str) -> Self {
        self.names
            .insert(placeholder.to_string(), attribute.to_string());
        self
    }

    fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_string(), value);
        self
    }

    #[allow(clippy::type_complexity)]
    fn into_parts(
        self,
    ) -> (
        String,
        Option<HashMap<String, String>>,
        Option<HashMap<String, AttributeValue>>,
    ) {
        let names = (!self.names.is_empty()).then_some(self.names);
        let values = (!self.values.is_empty()).then_some(self.values);
        (self.expression, names, values)
    }
}

// ---------------------------------------------------------------- items <-> model

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn insert_opt(item: &mut Item, name: &str, value: Option<AttributeValue>) {
    if let Some(value) = value {
        item.insert(name.to_string(), value);
    }
}

fn merchant_status_str(status: MerchantStatus) -> &'static str {
    match status {
        MerchantStatus::Active => "active",
        MerchantStatus::Disabled => "disabled",
    }
}

/// A merchant record (`kind: None`) or one of its key items.
fn merchant_item(merchant: &Merchant, pk: String, sk: &str, kind: Option<KeyKind>) -> Item {
    // Destructured so that a new field fails to compile here until it is stored.
    let Merchant {
        id,
        name,
        secret_key_hash,
        publishable_key_hash,
        webhook_secret,
        previous_webhook_secret,
        notify_url,
        status,
        created_at,
        payment_links,
    } = merchant;
    let mut item = HashMap::from([
        (PK.to_string(), s(pk)),
        (SK.to_string(), s(sk)),
        ("merchant_id".to_string(), s(id.as_str())),
        ("name".to_string(), s(name.as_str())),
        ("secret_key_hash".to_string(), s(secret_key_hash.as_str())),
        (
            "publishable_key_hash".to_string(),
            s(publishable_key_hash.as_str()),
        ),
        (
            "webhook_secret".to_string(),
            s(webhook_secret.expose().as_str()),
        ),
        ("status".to_string(), s(merchant_status_str(*status))),
        ("created_at".to_string(), n(created_at.unix())),
    ]);
    insert_opt(&mut item, "notify_url", notify_url.as_deref().map(s));
    if let Some(previous) = previous_webhook_secret {
        item.insert(
            "previous_webhook_secret".into(),
            s(previous.secret.expose().as_str()),
        );
        item.insert(
            "previous_webhook_secret_until".into(),
            n(previous.until.unix()),
        );
    }
    insert_payment_link_settings(&mut item, payment_links);
    match kind {
        None => {
            item.insert(ITEM_TYPE.into(), s("merchant"));
        }
        Some(kind) => {
            item.insert(ITEM_TYPE.into(), s("api_key"));
            let kind = match kind {
                KeyKind::Secret => "secret",
                KeyKind::Publishable => "publishable",
            };
            item.insert("key_kind".into(), s(kind));
        }
    }
    item
}

fn merchant_from_item(item: &Item) -> Result<Merchant, StoreError> {
    let r = Reader::new(item, "merchant");
    let status = match r.str("status")? {
        "active" => MerchantStatus::Active,
        "disabled" => MerchantStatus::Disabled,
        other => return Err(corrupt("merchant", &format!("status {other:?}"))),
    };
    Ok(Merchant {
        id: MerchantId::new(r.str("merchant_id")?),
        name: r.str("name")?.to_string(),
        secret_key_hash: KeyHash::from_hex(r.str("secret_key_hash")?),
        publishable_key_hash: KeyHash::from_hex(r.str("publishable_key_hash")?),
        webhook_secret: Secret::new(r.str("webhook_secret")?.to_string()),
        previous_webhook_secret: match r.opt_str("previous_webhook_secret")? {
            None => None,
            Some(secret) => Some(RetiringSecret {
                secret: Secret::new(secret.to_string()),
                until: Timestamp::from_unix(r.int("previous_webhook_secret_until")?),
            }),
        },
        notify_url: r.opt_str("notify_url")?.map(str::to_string),
        status,
        created_at: Timestamp::from_unix(r.int("created_at")?),
        payment_links: payment_link_settings(&r)?,
    })
}

/// Payment-link settings as optional attributes: each default is written as no attribute, so
/// items from before payment links existed read back as the defaults.
fn insert_payment_link_settings(item: &mut Item, settings: &PaymentLinkSettings) {
    let PaymentLinkSettings {
        signing_secret,
        require_signed,
        allowed_return_hosts,
    } = settings;
    insert_opt(
        item,
        LINK_SIGNING_SECRET,
        signing_secret
            .as_ref()
            .map(|secret| s(secret.expose().as_str())),
    );
    if *require_signed {
        item.insert(LINK_REQUIRE_SIGNED.into(), AttributeValue::Bool(true));
    }
    if !allowed_return_hosts.is_empty() {
        let hosts = allowed_return_hosts.iter().map(|h| s(h.as_str())).collect();
        item.insert(LINK_RETURN_HOSTS.into(), AttributeValue::L(hosts));
    }
}

fn payment_link_settings(r: &Reader<'_>) -> Result<PaymentLinkSettings, StoreError> {
    Ok(PaymentLinkSettings {
        signing_secret: r
            .opt_str(LINK_SIGNING_SECRET)?
            .map(|secret| Secret::new(secret.to_string())),
        require_signed: r.opt_bool(LINK_REQUIRE_SIGNED)?.unwrap_or(false),
        allowed_return_hosts: r.opt_str_list(LINK_RETURN_HOSTS)?.unwrap_or_default(),
    })
}

/// The order's own attributes (no keys).
fn order_attributes(order: &Order, version: i64) -> Item {
    // Destructured so that a new field fails to compile here until it is stored.
    let Order {
        order_no,
        merchant_id,
        out_trade_no,
        amount,
        description,
        pay_type,
        openid,
        client_ip,
        attach,
        notify_url,
        status,
        credential,
        transaction_id,
        paid_at,
        closed_at,
        webhook,
        created_at,
        expires_at,
        request_fingerprint,
    } = order;
    let WebhookState {
        generation: webhook_generation,
        queued_at: webhook_queued_at,
        status: webhook_status,
        attempts: webhook_attempts,
        last_attempt_at: webhook_last_attempt_at,
        next_attempt_at: webhook_next_attempt_at,
        delivered_at: webhook_delivered_at,
    } = webhook;
    let mut item = HashMap::from([
        (ORDER_NO.to_string(), s(order_no.as_str())),
        ("merchant_id".to_string(), s(merchant_id.as_str())),
        ("amount".to_string(), n(amount.get())),
        ("description".to_string(), s(description.as_str())),
        ("pay_type".to_string(), s(pay_type.as_str())),
        ("status".to_string(), s(status.as_str())),
        ("created_at".to_string(), n(created_at.unix())),
        ("expires_at".to_string(), n(expires_at.unix())),
        (
            "request_fingerprint".to_string(),
            s(request_fingerprint.as_str()),
        ),
        (VERSION.to_string(), n(version)),
        (
            "webhook_generation".to_string(),
            n(i64::from(*webhook_generation)),
        ),
        ("webhook_status".to_string(), s(webhook_status.as_str())),
        (
            "webhook_attempts".to_string(),
            n(i64::from(*webhook_attempts)),
        ),
    ]);
    insert_opt(
        &mut item,
        "out_trade_no",
        out_trade_no.as_ref().map(|o| s(o.as_str())),
    );
    insert_opt(&mut item, "openid", openid.as_deref().map(s));
    insert_opt(&mut item, "client_ip", client_ip.as_deref().map(s));
    insert_opt(&mut item, "attach", attach.as_deref().map(s));
    insert_opt(&mut item, "notify_url", notify_url.as_deref().map(s));
    insert_opt(
        &mut item,
        "credential",
        credential.as_ref().map(credential_value),
    );
    insert_opt(
        &mut item,
        "transaction_id",
        transaction_id.as_deref().map(s),
    );
    insert_opt(&mut item, "paid_at", paid_at.map(|t| n(t.unix())));
    insert_opt(&mut item, "closed_at", closed_at.map(|t| n(t.unix())));
    for (name, at) in [
        ("webhook_queued_at", webhook_queued_at),
        ("webhook_last_attempt_at", webhook_last_attempt_at),
        ("webhook_next_attempt_at", webhook_next_attempt_at),
        ("webhook_delivered_at", webhook_delivered_at),
    ] {
        insert_opt(&mut item, name, at.map(|t| n(t.unix())));
    }
    item
}

/// The order record: keyed by order number, listed in both indexes.
fn order_record(order: &Order, version: i64) -> Item {
    let mut item = order_attributes(order, version);
    item.insert(PK.into(), s(order_pk(&order.order_no)));
    item.insert(SK.into(), s(ORDER_SK));
    item.insert(ITEM_TYPE.into(), s("order"));
    item.insert(LIST_PK.into(), s(merchant_pk(&order.merchant_id)));
    item.insert(
        STATUS_LIST_PK.into(),
        s(status_list_pk(&order.merchant_id, order.status)),
    );
    item
}

/// The `out_trade_no` guard, a full copy of the order (in no index), if the order has one.
fn guard_item(order: &Order, version: i64) -> Option<Item> {
    let out_trade_no = order.out_trade_no.as_ref()?;
    let mut item = order_attributes(order, version);
    item.insert(PK.into(), s(guard_pk(&order.merchant_id, out_trade_no)));
    item.insert(SK.into(), s(GUARD_SK));
    item.insert(ITEM_TYPE.into(), s("out_trade_no"));
    Some(item)
}

fn attempt_item(attempt: &WebhookAttempt) -> Item {
    // Destructured so that a new field fails to compile here until it is stored.
    let WebhookAttempt {
        order_no,
        event_id,
        generation,
        attempt: number,
        at,
        url,
        status_code,
        latency_ms,
        response,
        error,
        delivered,
    } = attempt;
    let purge_at = at.plus_secs(WEBHOOK_ATTEMPT_RETENTION_DAYS * 86_400);
    let mut item = HashMap::from([
        (PK.to_string(), s(order_pk(order_no))),
        (SK.to_string(), s(attempt_sk(*generation, *number))),
        (ITEM_TYPE.to_string(), s("webhook_attempt")),
        (ORDER_NO.to_string(), s(order_no.as_str())),
        ("event_id".to_string(), s(event_id.as_str())),
        ("generation".to_string(), n(i64::from(*generation))),
        ("attempt".to_string(), n(i64::from(*number))),
        ("at".to_string(), n(at.unix())),
        (
            "latency_ms".to_string(),
            n(i64::try_from(*latency_ms).unwrap_or(i64::MAX)),
        ),
        ("delivered".to_string(), AttributeValue::Bool(*delivered)),
        (PURGE_AT.to_string(), n(purge_at.unix())),
    ]);
    insert_opt(&mut item, "url", url.as_deref().map(s));
    insert_opt(
        &mut item,
        "status_code",
        status_code.map(|c| n(i64::from(c))),
    );
    insert_opt(&mut item, "response", response.as_deref().map(s));
    insert_opt(&mut item, "error", error.as_deref().map(s));
    item
}

fn attempt_from_item(item: &Item) -> Result<WebhookAttempt, StoreError> {
    let r = Reader::new(item, "webhook attempt");
    let order_no = r.str(ORDER_NO)?;
    let order_no = OrderNo::parse(order_no)
        .ok_or_else(|| corrupt("webhook attempt", &format!("order_no {order_no:?}")))?;
    let status_code = r
        .opt_int("status_code")?
        .map(|c| u16::try_from(c).map_err(|_| corrupt("webhook attempt", "status_code")))
        .transpose()?;
    let delivered = match item.get("delivered") {
        Some(AttributeValue::Bool(b)) => *b,
        _ => return Err(corrupt("webhook attempt", "delivered is not a boolean")),
    };
    Ok(WebhookAttempt {
        order_no,
        event_id: r.str("event_id")?.to_string(),
        generation: r.u32("generation")?,
        attempt: r.u32("attempt")?,
        at: Timestamp::from_unix(r.int("at")?),
        url: r.opt_str("url")?.map(str::to_string),
        status_code,
        latency_ms: r.opt_u64("latency_ms")?.unwrap_or(0),
        response: r.opt_str("response")?.map(str::to_string),
        error: r.opt_str("error")?.map(str::to_string),
        delivered,
    })
}

fn credential_value(credential: &PayCredential) -> AttributeValue {
    let (kind, field, value) = match credential {
        PayCredential::Native { code_url } => ("native", "code_url", code_url),
        PayCredential::Jsapi { prepay_id } => ("jsapi", "prepay_id", prepay_id),
        PayCredential::H5 { h5_url } => ("h5", "h5_url", h5_url),
    };
    AttributeValue::M(HashMap::from([
        ("kind".to_string(), s(kind)),
        (field.to_string(), s(value.as_str())),
    ]))
}

fn credential_from(value: &AttributeValue) -> Result<PayCredential, StoreError> {
    let map = value
        .as_m()
        .map_err(|_| corrupt("order", "credential is not a map"))?;
    let r = Reader::new(map, "order credential");
    Ok(match r.str("kind")? {
        "native" => PayCredential::Native {
            code_url: r.str("code_url")?.to_string(),
        },
        "jsapi" => PayCredential::Jsapi {
            prepay_id: r.str("prepay_id")?.to_string(),
        },
        "h5" => PayCredential::H5 {
            h5_url: r.str("h5_url")?.to_string(),
        },
        other => return Err(corrupt("order", &format!("credential kind {other:?}"))),
    })
}

/// An order (from its record or its guard copy) and its version.
fn order_from_item(item: &Item) -> Result<(Order, i64), StoreError> {
    let r = Reader::new(item, "order");
    let order_no = r.str(ORDER_NO)?;
    let order_no = OrderNo::parse(order_no)
        .ok_or_else(|| corrupt("order", &format!("order_no {order_no:?}")))?;
    let out_trade_no = r
        .opt_str("out_trade_no")?
        .map(|o| {
            OutTradeNo::parse(o).ok_or_else(|| corrupt("order", &format!("out_trade_no {o:?}")))
        })
        .transpose()?;
    let pay_type = r.str("pay_type")?;
    let pay_type = PayType::parse(pay_type)
        .ok_or_else(|| corrupt("order", &format!("pay_type {pay_type:?}")))?;
    let status = r.str("status")?;
    let status = OrderStatus::parse(status)
        .ok_or_else(|| corrupt("order", &format!("status {status:?}")))?;
    let webhook_status = r.str("webhook_status")?;
    let webhook_status = WebhookStatus::parse(webhook_status)
        .ok_or_else(|| corrupt("order", &format!("webhook_status {webhook_status:?}")))?;
    let time = |name| r.opt_int(name).map(|t| t.map(Timestamp::from_unix));
    let webhook = WebhookState {
        generation: r.u32("webhook_generation")?,
        queued_at: time("webhook_queued_at")?,
        status: webhook_status,
        attempts: r.u32("webhook_attempts")?,
        last_attempt_at: time("webhook_last_attempt_at")?,
        next_attempt_at: time("webhook_next_attempt_at")?,
        delivered_at: time("webhook_delivered_at")?,
    };
    let order = Order {
        order_no,
        merchant_id: MerchantId::new(r.str("merchant_id")?),
        out_trade_no,
        amount: Fen::new(r.int("amount")?),
        description: r.str("description")?.to_string(),
        pay_type,
        openid: r.opt_str("openid")?.map(str::to_string),
        client_ip: r.opt_str("client_ip")?.map(str::to_string),
        attach: r.opt_str("attach")?.map(str::to_string),
        notify_url: r.opt_str("notify_url")?.map(str::to_string),
        status,
        credential: item.get("credential").map(credential_from).transpose()?,
        transaction_id: r.opt_str("transaction_id")?.map(str::to_string),
        paid_at: r.opt_int("paid_at")?.map(Timestamp::from_unix),
        closed_at: r.opt_int("closed_at")?.map(Timestamp::from_unix),
        webhook,
        created_at: Timestamp::from_unix(r.int("created_at")?),
        expires_at: Timestamp::from_unix(r.int("expires_at")?),
        request_fingerprint: r.str("request_fingerprint")?.to_string(),
    };
    Ok((order, r.int(VERSION)?))
}

/// Typed reads from an item, with errors that say which item and attribute is wrong.
struct Reader<'a> {
    item: &'a Item,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(item: &'a Item, what: &'static str) -> Self {
        Reader { item, what }
    }

    fn opt_str(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(value)) => Ok(Some(value.as_str())),
            Some(_) => Err(corrupt(self.what, &format!("{name} is not a string"))),
        }
    }

    fn str(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_str(name)?
            .ok_or_else(|| corrupt(self.what, &format!("{name} missing")))
    }

    fn opt_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(value)) => value
                .parse()
                .map(Some)
                .map_err(|_| corrupt(self.what, &format!("{name} is not an integer"))),
            Some(_) => Err(corrupt(self.what, &format!("{name} is not a number"))),
        }
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::Bool(value)) => Ok(Some(*value)),
            Some(_) => Err(corrupt(self.what, &format!("{name} is not a boolean"))),
        }
    }

    /// A list of strings (`L` of `S`).
    fn opt_str_list(&self, name: &str) -> Result<Option<Vec<String>>, StoreError> {
        let not_strings = || corrupt(self.what, &format!("{name} is not a list of strings"));
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::L(values)) => values
                .iter()
                .map(|value| match value {
                    AttributeValue::S(value) => Ok(value.clone()),
                    _ => Err(not_strings()),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(not_strings()),
        }
    }

    fn int(&self, name: &str) -> Result<i64, StoreError> {
        self.opt_int(name)?
            .ok_or_else(|| corrupt(self.what, &format!("{name} missing")))
    }

    fn u32(&self, name: &str) -> Result<u32, StoreError> {
        u32::try_from(self.int(name)?)
            .map_err(|_| corrupt(self.what, &format!("{name} out of range")))
    }

    fn opt_u64(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.opt_int(name)?
            .map(|v| {
                u64::try_from(v).map_err(|_| corrupt(self.what, &format!("{name} is negative")))
            })
            .transpose()
    }
}

// ---------------------------------------------------------------- errors and retries

fn corrupt(what: &str, detail: &str) -> StoreError {
    StoreError(format!("corrupt {what} item: {detail}"))
}

fn sdk_error<E, R>(context: &str, error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    StoreError(format!(
        "DynamoDB {context}: {}",
        DisplayErrorContext(&error)
    ))
}

/// 20 ms, 40 ms, 80 ms, ... with up to 50% jitter.
async fn backoff(attempt: u32) {
    let base = 20u64.saturating_mul(1 << attempt.min(6));
    let jitter = crate::model::random_bytes::<1>()
        .map(|[b]| u64::from(b) * base / 512)
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}
