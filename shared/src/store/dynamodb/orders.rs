//! Orders: the record, its `out_trade_no` guard copy and the merchant's counts.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::TransactWriteItem;

use super::{
    condition::{apply_rules, Condition},
    item::{guard_item, n, order_from_item, order_record, s, Item, Reader},
    schema::{
        count_attribute, counts_pk, guard_pk, merchant_pk, order_pk, status_list_pk, COUNTS_SK,
        GUARD_SK, INDEX_BY_MERCHANT, INDEX_BY_MERCHANT_STATUS, LIST_PK, ORDER_NO, ORDER_SK, PK,
        STATUS_LIST_PK, VERSION,
    },
    sdk_error, DynamoStore, MAX_ATTEMPTS,
};
use crate::{
    model::{MerchantId, Order, OrderNo, OrderStatus, OrderUpdate, OutTradeNo},
    store::{
        InsertOrderError, ListQuery, OrderPage, OrderStore, PageStart, StoreError, UpdateOrderError,
    },
};

impl OrderStore for DynamoStore {
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
            Err(failed) => Err(StoreError::new(format!(
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
        Err(StoreError::new(format!("{context}: the order kept changing; gave up")).into())
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
}

impl DynamoStore {
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
        // Counts written before they moved to `COUNTS#` may still sit in the merchant's
        // partition (until `ferrypay merchant migrate-counts` folds them in): both are read and
        // added, so a total is right before, during and after the migration.
        let (current, legacy) = tokio::join!(
            self.get(counts_pk(merchant_id), COUNTS_SK),
            self.get(merchant_pk(merchant_id), COUNTS_SK)
        );
        let mut total = 0i64;
        for item in [current?, legacy?].into_iter().flatten() {
            let counts = Reader::new(&item, "order counts");
            total += counts.opt_int(&count_attribute(status))?.unwrap_or(0);
        }
        Ok(u64::try_from(total).unwrap_or(0))
    }
}
