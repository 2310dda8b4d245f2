//! Refunds: the refund item in its order's partition, its number's pointer, its
//! `out_refund_no` guard, and the order's tally (record, `out_trade_no` guard copy and, on a
//! status change, the merchant's counts), each write one transaction.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};

use super::{
    build_error,
    condition::Condition,
    item::{guard_item, n, order_from_item, order_record, s, Item},
    refund_item::{
        pointer_target, refund_from_item, refund_guard_item, refund_item, refund_no_item,
    },
    schema::{
        count_attribute, guard_pk, order_pk, refund_guard_pk, refund_no_pk, COMMITTED, GUARD_SK,
        ORDER_SK, PK, REFUND_COUNT, REFUND_GUARD_SK, REFUND_NO_SK, REFUND_SK_PREFIX, RESERVED, SK,
        VERSION,
    },
    sdk_error, Cancelled, DynamoStore, MAX_ATTEMPTS,
};
use crate::{
    model::{
        MerchantId, Order, OrderNo, OrderStatus, OutRefundNo, Refund, RefundNo, RefundSettlement,
        RefundStatus, RefundWebhookUpdate, MAX_REFUNDS_PER_ORDER,
    },
    store::{
        external_anomalies, newest_refunds_first, BeginRefundError, ExternalRefundRecorded,
        RecordRefundError, RefundSettled, RefundStore, StoreError, UpdateRefundError,
    },
};

/// The items of `begin_refund`'s transaction, by index (then the optional `out_refund_no`
/// guard and the order's `out_trade_no` guard copy).
const ORDER_ITEM: usize = 0;
const REFUND_ITEM: usize = 1;
const POINTER_ITEM: usize = 2;

impl RefundStore for DynamoStore {
    async fn begin_refund(&self, refund: &Refund) -> Result<Refund, BeginRefundError> {
        if refund.status != RefundStatus::Processing {
            return Err(StoreError::new(format!(
                "begin refund {}: not processing",
                refund.refund_no
            ))
            .into());
        }
        let context = format!("begin refund {} of {}", refund.refund_no, refund.order_no);
        // A strongly consistent read refuses at once what it already shows (a refusal true at
        // that moment); the transaction's conditions decide the rest against concurrent writes.
        let order = self.read_order(&refund.order_no).await?.map(|(o, _)| o);
        if let Some(refusal) = refusal(order.as_ref(), refund) {
            return Err(self.unless_out_refund_no_taken(refund, refusal).await);
        }
        let Some(order) = order else {
            return Err(BeginRefundError::OrderNotFound);
        };

        let mut items = vec![
            TransactWriteItem::builder()
                .update(self.reserve_on_order(&order, refund)?)
                .build(),
            TransactWriteItem::builder()
                .put(self.put(refund_item(refund, 0), absent())?)
                .build(),
            TransactWriteItem::builder()
                .put(self.put(refund_no_item(refund), absent())?)
                .build(),
        ];
        let guard_index = match refund_guard_item(refund) {
            Some(guard) => {
                items.push(
                    TransactWriteItem::builder()
                        .put(self.put(guard, absent())?)
                        .build(),
                );
                Some(items.len() - 1)
            }
            None => None,
        };
        if let Some(out_trade_no) = &order.out_trade_no {
            // The guard copy of the order follows its record.
            let copy = self.add_to_tally(
                guard_pk(&order.merchant_id, out_trade_no),
                GUARD_SK,
                refund,
                Condition::new("attribute_exists(#pk)").name("#pk", PK),
                false,
            )?;
            items.push(TransactWriteItem::builder().update(copy).build());
        }

        match self.transact_detailed(items, &context).await? {
            Ok(()) => Ok(refund.clone()),
            Err(Cancelled::Contended(error)) => {
                tracing::warn!(%error, "begin refund: contention did not settle");
                Err(BeginRefundError::Conflict)
            }
            Err(Cancelled::Conditions { failed, old }) => {
                if guard_index.is_some_and(|i| failed.contains(&i)) {
                    return Err(self.out_refund_no_taken(refund).await);
                }
                if failed.contains(&ORDER_ITEM) {
                    // The order as the condition saw it (DynamoDB returns it), or as it is now.
                    let current = match old.get(&ORDER_ITEM) {
                        Some(item) => Some(order_from_item(item)?.0),
                        None => self.read_order(&refund.order_no).await?.map(|(o, _)| o),
                    };
                    return Err(refusal(current.as_ref(), refund).unwrap_or_else(|| {
                        tracing::debug!(%context, "order changed between the write and the read");
                        BeginRefundError::Conflict
                    }));
                }
                if failed.contains(&REFUND_ITEM) || failed.contains(&POINTER_ITEM) {
                    return Err(BeginRefundError::RefundNoTaken);
                }
                Err(StoreError::new(format!(
                    "{context}: unexpected condition failure on items {failed:?} (order {} has no guard copy?)",
                    refund.order_no
                ))
                .into())
            }
        }
    }

    async fn settle_refund(
        &self,
        refund_no: &RefundNo,
        settlement: &RefundSettlement,
    ) -> Result<RefundSettled, UpdateRefundError> {
        let context = format!("settle refund {refund_no}");
        for attempt in 1..=MAX_ATTEMPTS {
            let Some((refund, refund_version)) = self.read_refund(refund_no).await? else {
                return Err(UpdateRefundError::NotFound);
            };
            let next = refund
                .settle(settlement)
                .map_err(|reason| UpdateRefundError::Refused {
                    current: Box::new(refund.clone()),
                    reason,
                })?;
            let (order, order_version) = self.order_of(&refund).await?;
            let tally = order
                .refunds
                .settle(refund.amount, refund.status, next.status);
            let next_order = order.with_refunds(tally);
            let mut items = vec![TransactWriteItem::builder()
                .put(self.put(
                    refund_item(&next, refund_version + 1),
                    version_is(refund_version),
                )?)
                .build()];
            items.extend(self.order_writes(&order, &next_order, order_version)?);
            match self.transact_detailed(items, &context).await? {
                Ok(()) => {
                    return Ok(RefundSettled {
                        over_refunded: tally.committed() > next_order.amount,
                        refund: next,
                        order: next_order,
                    })
                }
                Err(Cancelled::Contended(error)) => {
                    tracing::warn!(%error, "settle refund: contention did not settle");
                    return Err(UpdateRefundError::Conflict);
                }
                // The refund or its order changed since they were read: read again;
                // `Refund::settle` decides.
                Err(Cancelled::Conditions { .. }) => {
                    tracing::debug!(%refund_no, attempt, "refund settle raced, re-reading");
                }
            }
        }
        Err(UpdateRefundError::Conflict)
    }

    async fn record_external_refund(
        &self,
        refund: &Refund,
    ) -> Result<ExternalRefundRecorded, RecordRefundError> {
        if refund.out_refund_no.is_some() {
            return Err(StoreError::new(format!(
                "record refund {}: a refund made outside ferrypay has no out_refund_no",
                refund.refund_no
            ))
            .into());
        }
        let context = format!("record refund {} of {}", refund.refund_no, refund.order_no);
        for attempt in 1..=MAX_ATTEMPTS {
            if let Some((existing, _)) = self.read_refund(&refund.refund_no).await? {
                return Ok(ExternalRefundRecorded::Existing(Box::new(existing)));
            }
            let Some((order, order_version)) = self
                .read_order(&refund.order_no)
                .await?
                .filter(|(o, _)| o.merchant_id == refund.merchant_id)
            else {
                return Err(RecordRefundError::OrderNotFound);
            };
            let tally = order.refunds.record(refund.amount, refund.status);
            let anomalies = external_anomalies(&order, &tally);
            let next_order = order.with_refunds(tally);
            let mut items = vec![
                TransactWriteItem::builder()
                    .put(self.put(refund_no_item(refund), absent())?)
                    .build(),
                TransactWriteItem::builder()
                    .put(self.put(refund_item(refund, 0), absent())?)
                    .build(),
            ];
            items.extend(self.order_writes(&order, &next_order, order_version)?);
            match self.transact_detailed(items, &context).await? {
                Ok(()) => {
                    return Ok(ExternalRefundRecorded::New {
                        refund: Box::new(refund.clone()),
                        order: Box::new(next_order),
                        anomalies,
                    })
                }
                Err(Cancelled::Contended(error)) => {
                    tracing::warn!(%error, "record refund: contention did not settle");
                    return Err(RecordRefundError::Conflict);
                }
                Err(Cancelled::Conditions { failed, .. })
                    if failed.contains(&1) && !failed.contains(&0) =>
                {
                    return Err(StoreError::new(format!(
                        "{context}: a refund item without its number's pointer"
                    ))
                    .into());
                }
                // Recorded meanwhile (the pointer exists: the next read returns it), or the
                // order changed: read again.
                Err(Cancelled::Conditions { .. }) => {
                    tracing::debug!(refund_no = %refund.refund_no, attempt, "refund record raced, re-reading");
                }
            }
        }
        Err(RecordRefundError::Conflict)
    }

    async fn get_refund(&self, refund_no: &RefundNo) -> Result<Option<Refund>, StoreError> {
        Ok(self.read_refund(refund_no).await?.map(|(refund, _)| refund))
    }

    async fn refund_by_out_refund_no(
        &self,
        merchant_id: &MerchantId,
        out_refund_no: &OutRefundNo,
    ) -> Result<Option<Refund>, StoreError> {
        let Some(guard) = self
            .get(refund_guard_pk(merchant_id, out_refund_no), REFUND_GUARD_SK)
            .await?
        else {
            return Ok(None);
        };
        let (order_no, refund_no) = pointer_target(&guard)?;
        Ok(self
            .refund_at(&order_no, &refund_no)
            .await?
            .map(|(refund, _)| refund))
    }

    async fn refunds_of_order(
        &self,
        order_no: &OrderNo,
        limit: u32,
    ) -> Result<Vec<Refund>, StoreError> {
        let mut refunds = self.query_refunds(order_no).await?;
        newest_refunds_first(&mut refunds);
        refunds.truncate(limit as usize);
        Ok(refunds)
    }

    async fn processing_refunds(&self, order_no: &OrderNo) -> Result<Vec<Refund>, StoreError> {
        let mut refunds = self.query_refunds(order_no).await?;
        refunds.retain(|r| r.status == RefundStatus::Processing);
        newest_refunds_first(&mut refunds);
        refunds.reverse();
        Ok(refunds)
    }

    async fn update_refund_webhook(
        &self,
        refund_no: &RefundNo,
        update: &RefundWebhookUpdate,
    ) -> Result<Refund, UpdateRefundError> {
        let context = format!("update webhook of refund {refund_no}");
        for attempt in 1..=MAX_ATTEMPTS {
            let Some((refund, version)) = self.read_refund(refund_no).await? else {
                return Err(UpdateRefundError::NotFound);
            };
            let next =
                refund
                    .apply_webhook(update)
                    .map_err(|reason| UpdateRefundError::Refused {
                        current: Box::new(refund.clone()),
                        reason,
                    })?;
            let write = self.put(refund_item(&next, version + 1), version_is(version))?;
            if self.put_if(write, &context).await? {
                return Ok(next);
            }
            tracing::debug!(%refund_no, attempt, "refund webhook update raced, re-reading");
        }
        Err(UpdateRefundError::Conflict)
    }
}

/// What refuses `refund` on `order` (as read), in the in-memory store's order: not found
/// (or another merchant's), not paid, then the tally's own refusals. `None`: it fits.
fn refusal(order: Option<&Order>, refund: &Refund) -> Option<BeginRefundError> {
    let Some(order) = order.filter(|o| o.merchant_id == refund.merchant_id) else {
        return Some(BeginRefundError::OrderNotFound);
    };
    if order.status != OrderStatus::Paid {
        return Some(BeginRefundError::OrderNotPaid(order.status));
    }
    order
        .refunds
        .reserve(refund.amount, order.amount)
        .err()
        .map(BeginRefundError::from)
}

/// Only if the item does not exist yet.
fn absent() -> Condition {
    Condition::new("attribute_not_exists(#pk)").name("#pk", PK)
}

/// Only if the item is still at `version`.
fn version_is(version: i64) -> Condition {
    Condition::new("#version = :version")
        .name("#version", VERSION)
        .value(":version", n(version))
}

impl DynamoStore {
    async fn read_order(&self, order_no: &OrderNo) -> Result<Option<(Order, i64)>, StoreError> {
        self.get(order_pk(order_no), ORDER_SK)
            .await?
            .map(|item| order_from_item(&item))
            .transpose()
    }

    /// The order a stored refund belongs to (it must exist).
    async fn order_of(&self, refund: &Refund) -> Result<(Order, i64), StoreError> {
        self.read_order(&refund.order_no).await?.ok_or_else(|| {
            StoreError::new(format!(
                "refund {}: its order {} is missing",
                refund.refund_no, refund.order_no
            ))
        })
    }

    /// A refund by number (through its pointer), and its item's version.
    async fn read_refund(&self, refund_no: &RefundNo) -> Result<Option<(Refund, i64)>, StoreError> {
        let Some(pointer) = self.get(refund_no_pk(refund_no), REFUND_NO_SK).await? else {
            return Ok(None);
        };
        let (order_no, pointed) = pointer_target(&pointer)?;
        let found = self.refund_at(&order_no, &pointed).await?;
        if found.is_none() {
            return Err(StoreError::new(format!(
                "refund {refund_no}: its pointer names order {order_no}, which has no such refund"
            )));
        }
        Ok(found)
    }

    async fn refund_at(
        &self,
        order_no: &OrderNo,
        refund_no: &RefundNo,
    ) -> Result<Option<(Refund, i64)>, StoreError> {
        self.get(order_pk(order_no), &super::schema::refund_sk(refund_no))
            .await?
            .map(|item| refund_from_item(&item))
            .transpose()
    }

    /// `refusal`, unless the refund's `out_refund_no` is taken: that comes first (a retry of a
    /// refund that took the whole remainder must find its refund, not "exceeds").
    async fn unless_out_refund_no_taken(
        &self,
        refund: &Refund,
        refusal: BeginRefundError,
    ) -> BeginRefundError {
        let Some(out_refund_no) = &refund.out_refund_no else {
            return refusal;
        };
        match self
            .refund_by_out_refund_no(&refund.merchant_id, out_refund_no)
            .await
        {
            Ok(Some(existing)) => BeginRefundError::OutRefundNoTaken {
                existing: Box::new(existing),
            },
            Ok(None) => refusal,
            Err(error) => error.into(),
        }
    }

    /// The refusal for an `out_refund_no` the transaction found taken, with its refund.
    async fn out_refund_no_taken(&self, refund: &Refund) -> BeginRefundError {
        let refusal = StoreError::new(format!(
            "begin refund {}: out_refund_no taken, but its refund cannot be read",
            refund.refund_no
        ));
        self.unless_out_refund_no_taken(refund, refusal.into())
            .await
    }

    /// The order record's part of `begin_refund`: its amount reserved, one more refund, under
    /// the conditions that make it safe whatever else is written at the same time (no version:
    /// concurrent reservations each see the others'). On failure DynamoDB returns the order as
    /// the condition saw it, which says why.
    fn reserve_on_order(&self, order: &Order, refund: &Refund) -> Result<Update, StoreError> {
        // What may be committed before this refund (>= 0: the read checked the amount).
        let room = order.amount.get() - refund.amount.get();
        let condition = Condition::new(
            "attribute_exists(#pk) AND #merchant = :merchant AND #status = :paid \
             AND (attribute_not_exists(#committed) OR #committed <= :room) \
             AND (attribute_not_exists(#count) OR #count < :max)",
        )
        .name("#pk", PK)
        .name("#merchant", "merchant_id")
        .name("#status", "status")
        .name("#committed", COMMITTED)
        .name("#count", REFUND_COUNT)
        .value(":merchant", s(refund.merchant_id.as_str()))
        .value(":paid", s(OrderStatus::Paid.as_str()))
        .value(":room", n(room))
        .value(":max", n(i64::from(MAX_REFUNDS_PER_ORDER)));
        self.add_to_tally(order_pk(&order.order_no), ORDER_SK, refund, condition, true)
    }

    /// `ADD reserved_amount, committed_amount :amount, refund_count, version :1` on one
    /// order item (the record or its guard copy), under `condition`; `all_old`: a failed
    /// condition returns the item as it was.
    fn add_to_tally(
        &self,
        pk: String,
        sk: &str,
        refund: &Refund,
        condition: Condition,
        all_old: bool,
    ) -> Result<Update, StoreError> {
        let condition = condition
            .name("#reserved", RESERVED)
            .name("#committed", COMMITTED)
            .name("#count", REFUND_COUNT)
            .name("#version", VERSION)
            .value(":amount", n(refund.amount.get()))
            .value(":one", n(1));
        let (expression, names, values) = condition.into_parts();
        Update::builder()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .update_expression(
                "ADD #reserved :amount, #committed :amount, #count :one, #version :one",
            )
            .condition_expression(expression)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .set_return_values_on_condition_check_failure(
                all_old.then_some(ReturnValuesOnConditionCheckFailure::AllOld),
            )
            .build()
            .map_err(|e| build_error("update request", e))
    }

    /// Writing `next` over `current` (read at `version`): the record and its guard copy, each
    /// only if still at `version`, and on a status change the merchant's counts.
    fn order_writes(
        &self,
        current: &Order,
        next: &Order,
        version: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut items = vec![TransactWriteItem::builder()
            .put(self.put(order_record(next, version + 1), version_is(version))?)
            .build()];
        if let Some(copy) = guard_item(next, version + 1) {
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(copy, version_is(version))?)
                    .build(),
            );
        }
        if next.status != current.status {
            let counts = self.add_counts(
                &next.merchant_id,
                &[
                    (count_attribute(Some(current.status)), -1),
                    (count_attribute(Some(next.status)), 1),
                ],
            )?;
            items.push(TransactWriteItem::builder().update(counts).build());
        }
        Ok(items)
    }

    /// Every refund of an order: one strongly consistent query of its partition (at most
    /// about 50 items, paged all the same).
    async fn query_refunds(&self, order_no: &OrderNo) -> Result<Vec<Refund>, StoreError> {
        let mut refunds = Vec::new();
        let mut start_key: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .set_expression_attribute_names(Some(HashMap::from([
                    ("#pk".to_string(), PK.to_string()),
                    ("#sk".to_string(), SK.to_string()),
                ])))
                .set_expression_attribute_values(Some(HashMap::from([
                    (":pk".to_string(), s(order_pk(order_no))),
                    (":prefix".to_string(), s(REFUND_SK_PREFIX)),
                ])))
                .consistent_read(true)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| sdk_error(&format!("refunds of {order_no}"), e))?;
            for item in out.items() {
                refunds.push(refund_from_item(item)?.0);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => break,
            }
        }
        Ok(refunds)
    }
}
