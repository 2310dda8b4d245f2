//! The in-memory store: tests and `ferrypay dev`. One mutex makes every write atomic.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Mutex, MutexGuard},
};

use super::{
    external_anomalies, newest_refunds_first, BeginRefundError, ExternalRefundRecorded,
    HealthStore, InsertMerchantError, InsertOrderError, ListQuery, MerchantStore, OrderPage,
    OrderStore, PageStart, RateLimitStore, RecordRefundError, RefundSettled, RefundStore,
    StoreError, UpdateMerchantError, UpdateOrderError, UpdateRefundError, WebhookAttemptStore,
};
use crate::model::{
    KeyHash, KeyKind, Merchant, MerchantId, Order, OrderNo, OrderStatus, OrderUpdate, OutRefundNo,
    OutTradeNo, Refund, RefundNo, RefundSettlement, RefundStatus, RefundWebhookUpdate, Timestamp,
    WebhookAttempt,
};

#[derive(Default)]
struct Tables {
    merchants: HashMap<MerchantId, Merchant>,
    keys: HashMap<KeyHash, (MerchantId, KeyKind)>,
    orders: HashMap<OrderNo, Order>,
    /// Per merchant, its order numbers: they sort by creation time.
    orders_by_merchant: HashMap<MerchantId, BTreeSet<OrderNo>>,
    out_trade_nos: HashMap<(MerchantId, OutTradeNo), OrderNo>,
    windows: HashMap<String, (u64, Timestamp)>,
    /// Per order, its webhook attempts by (generation, attempt).
    webhook_attempts: HashMap<OrderNo, BTreeMap<(u32, u32), WebhookAttempt>>,
    /// Per refund, its webhook attempts by (generation, attempt).
    refund_webhook_attempts: HashMap<RefundNo, BTreeMap<(u32, u32), WebhookAttempt>>,
    refunds: HashMap<RefundNo, Refund>,
    /// Per order, its refunds' numbers.
    refunds_by_order: HashMap<OrderNo, BTreeSet<RefundNo>>,
    out_refund_nos: HashMap<(MerchantId, OutRefundNo), RefundNo>,
}

impl Tables {
    fn refund_by_out_refund_no(
        &self,
        merchant_id: &MerchantId,
        no: &OutRefundNo,
    ) -> Option<&Refund> {
        self.out_refund_nos
            .get(&(merchant_id.clone(), no.clone()))
            .and_then(|refund_no| self.refunds.get(refund_no))
    }

    /// `merchant_id`'s order `order_no`.
    fn own_order(&self, order_no: &OrderNo, merchant_id: &MerchantId) -> Option<&Order> {
        self.orders
            .get(order_no)
            .filter(|order| order.merchant_id == *merchant_id)
    }

    fn order_refunds(&self, order_no: &OrderNo) -> Vec<Refund> {
        self.refunds_by_order
            .get(order_no)
            .map(|numbers| {
                numbers
                    .iter()
                    .filter_map(|no| self.refunds.get(no))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn insert_refund(&mut self, refund: &Refund) {
        if let Some(out_refund_no) = &refund.out_refund_no {
            self.out_refund_nos.insert(
                (refund.merchant_id.clone(), out_refund_no.clone()),
                refund.refund_no.clone(),
            );
        }
        self.refunds_by_order
            .entry(refund.order_no.clone())
            .or_default()
            .insert(refund.refund_no.clone());
        self.refunds
            .insert(refund.refund_no.clone(), refund.clone());
    }
}

#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Tables>, StoreError> {
        self.tables
            .lock()
            .map_err(|_| StoreError::new("memory store lock poisoned"))
    }

    /// Replaces a merchant's record (status, notify URL, keys) as given, with no version
    /// check: tests.
    pub fn save_merchant(&self, merchant: &Merchant) -> Result<(), StoreError> {
        save_merchant_in(&mut *self.lock()?, merchant);
        Ok(())
    }
}

/// The merchant and its two key entries (the replaced ones dropped), under one lock.
fn save_merchant_in(t: &mut Tables, merchant: &Merchant) {
    if let Some(old) = t.merchants.get(&merchant.id).cloned() {
        t.keys.remove(&old.secret_key_hash);
        t.keys.remove(&old.publishable_key_hash);
    }
    t.keys.insert(
        merchant.secret_key_hash.clone(),
        (merchant.id.clone(), KeyKind::Secret),
    );
    t.keys.insert(
        merchant.publishable_key_hash.clone(),
        (merchant.id.clone(), KeyKind::Publishable),
    );
    t.merchants.insert(merchant.id.clone(), merchant.clone());
}

impl MerchantStore for MemoryStore {
    async fn insert_merchant(&self, merchant: &Merchant) -> Result<(), InsertMerchantError> {
        let mut t = self.lock()?;
        if t.merchants.contains_key(&merchant.id)
            || t.keys.contains_key(&merchant.secret_key_hash)
            || t.keys.contains_key(&merchant.publishable_key_hash)
        {
            return Err(InsertMerchantError::Exists);
        }
        save_merchant_in(&mut t, merchant);
        Ok(())
    }

    async fn merchant_by_key(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<(Merchant, KeyKind)>, StoreError> {
        let t = self.lock()?;
        Ok(t.keys.get(hash).and_then(|(id, kind)| {
            t.merchants
                .get(id)
                .map(|merchant| (merchant.clone(), *kind))
        }))
    }

    async fn get_merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError> {
        Ok(self.lock()?.merchants.get(id).cloned())
    }

    async fn update_merchant(&self, merchant: &Merchant) -> Result<Merchant, UpdateMerchantError> {
        let mut t = self.lock()?;
        {
            let current = t
                .merchants
                .get(&merchant.id)
                .ok_or(UpdateMerchantError::NotFound)?;
            if current.version != merchant.version {
                return Err(UpdateMerchantError::Conflict);
            }
            let taken_by_other = |hash| {
                t.keys
                    .get(hash)
                    .is_some_and(|(owner, _)| *owner != merchant.id)
            };
            if taken_by_other(&merchant.secret_key_hash)
                || taken_by_other(&merchant.publishable_key_hash)
            {
                return Err(UpdateMerchantError::KeyTaken);
            }
        }
        let written = Merchant {
            version: merchant.version + 1,
            ..merchant.clone()
        };
        save_merchant_in(&mut t, &written);
        Ok(written)
    }

    async fn list_merchants(&self) -> Result<Vec<Merchant>, StoreError> {
        let mut merchants: Vec<Merchant> = self.lock()?.merchants.values().cloned().collect();
        merchants.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(merchants)
    }
}

impl OrderStore for MemoryStore {
    async fn insert_order(&self, order: &Order) -> Result<(), InsertOrderError> {
        let mut t = self.lock()?;
        if t.orders.contains_key(&order.order_no) {
            return Err(InsertOrderError::OrderNoTaken);
        }
        if let Some(out_trade_no) = &order.out_trade_no {
            let key = (order.merchant_id.clone(), out_trade_no.clone());
            if t.out_trade_nos.contains_key(&key) {
                return Err(InsertOrderError::OutTradeNoTaken);
            }
            t.out_trade_nos.insert(key, order.order_no.clone());
        }
        t.orders_by_merchant
            .entry(order.merchant_id.clone())
            .or_default()
            .insert(order.order_no.clone());
        t.orders.insert(order.order_no.clone(), order.clone());
        Ok(())
    }

    async fn get_order(&self, order_no: &OrderNo) -> Result<Option<Order>, StoreError> {
        Ok(self.lock()?.orders.get(order_no).cloned())
    }

    async fn order_by_out_trade_no(
        &self,
        merchant_id: &MerchantId,
        out_trade_no: &OutTradeNo,
    ) -> Result<Option<Order>, StoreError> {
        let t = self.lock()?;
        Ok(t.out_trade_nos
            .get(&(merchant_id.clone(), out_trade_no.clone()))
            .and_then(|no| t.orders.get(no))
            .cloned())
    }

    async fn update_order(
        &self,
        order_no: &OrderNo,
        update: &OrderUpdate,
    ) -> Result<Order, UpdateOrderError> {
        let mut t = self.lock()?;
        let current = t.orders.get(order_no).ok_or(UpdateOrderError::NotFound)?;
        let next = current
            .apply(update)
            .map_err(|reason| UpdateOrderError::Refused {
                current: Box::new(current.clone()),
                reason,
            })?;
        t.orders.insert(order_no.clone(), next.clone());
        Ok(next)
    }

    async fn list_orders(&self, query: &ListQuery) -> Result<OrderPage, StoreError> {
        let t = self.lock()?;
        let Some(numbers) = t.orders_by_merchant.get(&query.merchant_id) else {
            return Ok(OrderPage {
                orders: Vec::new(),
                total: 0,
                next_after: None,
            });
        };
        let matching = || {
            numbers
                .iter()
                .rev()
                .filter_map(|no| t.orders.get(no))
                .filter(|o| query.status.is_none_or(|s| o.status == s))
        };
        let total = matching().count() as u64;
        let per_page = query.per_page as usize;
        let page: Vec<Order> = match &query.start {
            PageStart::Page(n) => matching()
                .skip((*n as usize).saturating_sub(1).saturating_mul(per_page))
                .take(per_page + 1)
                .cloned()
                .collect(),
            PageStart::After(after) => matching()
                .skip_while(|o| o.order_no >= *after)
                .take(per_page + 1)
                .cloned()
                .collect(),
        };
        Ok(OrderPage::from_overfetch(page, query.per_page, total))
    }
}

impl RefundStore for MemoryStore {
    async fn begin_refund(&self, refund: &Refund) -> Result<Refund, BeginRefundError> {
        if refund.status != RefundStatus::Processing {
            return Err(StoreError::new(format!(
                "begin refund {}: not processing",
                refund.refund_no
            ))
            .into());
        }
        let mut t = self.lock()?;
        if let Some(out_refund_no) = &refund.out_refund_no {
            if let Some(existing) = t.refund_by_out_refund_no(&refund.merchant_id, out_refund_no) {
                return Err(BeginRefundError::OutRefundNoTaken {
                    existing: Box::new(existing.clone()),
                });
            }
        }
        let order = t
            .own_order(&refund.order_no, &refund.merchant_id)
            .ok_or(BeginRefundError::OrderNotFound)?;
        if order.status != OrderStatus::Paid {
            return Err(BeginRefundError::OrderNotPaid(order.status));
        }
        let tally = order
            .refunds
            .reserve(refund.amount, order.amount)
            .map_err(BeginRefundError::from)?;
        if t.refunds.contains_key(&refund.refund_no) {
            return Err(BeginRefundError::RefundNoTaken);
        }
        let next = order.with_refunds(tally);
        t.orders.insert(next.order_no.clone(), next);
        t.insert_refund(refund);
        Ok(refund.clone())
    }

    async fn settle_refund(
        &self,
        refund_no: &RefundNo,
        settlement: &RefundSettlement,
    ) -> Result<RefundSettled, UpdateRefundError> {
        let mut t = self.lock()?;
        let refund = t
            .refunds
            .get(refund_no)
            .ok_or(UpdateRefundError::NotFound)?;
        let next = refund
            .settle(settlement)
            .map_err(|reason| UpdateRefundError::Refused {
                current: Box::new(refund.clone()),
                reason,
            })?;
        let order = t
            .orders
            .get(&refund.order_no)
            .ok_or_else(|| StoreError::new(format!("refund {refund_no}: its order is missing")))?;
        let tally = order
            .refunds
            .settle(refund.amount, refund.status, next.status);
        let order = order.with_refunds(tally);
        let over_refunded = tally.committed() > order.amount;
        t.orders.insert(order.order_no.clone(), order.clone());
        t.refunds.insert(refund_no.clone(), next.clone());
        Ok(RefundSettled {
            refund: next,
            order,
            over_refunded,
        })
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
        let mut t = self.lock()?;
        if let Some(existing) = t.refunds.get(&refund.refund_no) {
            return Ok(ExternalRefundRecorded::Existing(Box::new(existing.clone())));
        }
        let order = t
            .own_order(&refund.order_no, &refund.merchant_id)
            .ok_or(RecordRefundError::OrderNotFound)?;
        let tally = order.refunds.record(refund.amount, refund.status);
        let anomalies = external_anomalies(order, &tally);
        let order = order.with_refunds(tally);
        t.orders.insert(order.order_no.clone(), order.clone());
        t.insert_refund(refund);
        Ok(ExternalRefundRecorded::New {
            refund: Box::new(refund.clone()),
            order: Box::new(order),
            anomalies,
        })
    }

    async fn get_refund(&self, refund_no: &RefundNo) -> Result<Option<Refund>, StoreError> {
        Ok(self.lock()?.refunds.get(refund_no).cloned())
    }

    async fn refund_by_out_refund_no(
        &self,
        merchant_id: &MerchantId,
        out_refund_no: &OutRefundNo,
    ) -> Result<Option<Refund>, StoreError> {
        Ok(self
            .lock()?
            .refund_by_out_refund_no(merchant_id, out_refund_no)
            .cloned())
    }

    async fn refunds_of_order(
        &self,
        order_no: &OrderNo,
        limit: u32,
    ) -> Result<Vec<Refund>, StoreError> {
        let mut refunds = self.lock()?.order_refunds(order_no);
        newest_refunds_first(&mut refunds);
        refunds.truncate(limit as usize);
        Ok(refunds)
    }

    async fn processing_refunds(&self, order_no: &OrderNo) -> Result<Vec<Refund>, StoreError> {
        let mut refunds = self.lock()?.order_refunds(order_no);
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
        let mut t = self.lock()?;
        let refund = t
            .refunds
            .get(refund_no)
            .ok_or(UpdateRefundError::NotFound)?;
        let next = refund
            .apply_webhook(update)
            .map_err(|reason| UpdateRefundError::Refused {
                current: Box::new(refund.clone()),
                reason,
            })?;
        t.refunds.insert(refund_no.clone(), next.clone());
        Ok(next)
    }
}

impl WebhookAttemptStore for MemoryStore {
    async fn record_webhook_attempt(&self, attempt: &WebhookAttempt) -> Result<(), StoreError> {
        self.lock()?
            .webhook_attempts
            .entry(attempt.order_no.clone())
            .or_default()
            .insert((attempt.generation, attempt.attempt), attempt.clone());
        Ok(())
    }

    async fn webhook_attempts(
        &self,
        order_no: &OrderNo,
        limit: u32,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        Ok(self
            .lock()?
            .webhook_attempts
            .get(order_no)
            .map(|attempts| {
                attempts
                    .values()
                    .rev()
                    .take(limit as usize)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn record_refund_webhook_attempt(
        &self,
        refund_no: &RefundNo,
        attempt: &WebhookAttempt,
    ) -> Result<(), StoreError> {
        self.lock()?
            .refund_webhook_attempts
            .entry(refund_no.clone())
            .or_default()
            .insert((attempt.generation, attempt.attempt), attempt.clone());
        Ok(())
    }

    async fn refund_webhook_attempts(
        &self,
        order_no: &OrderNo,
        refund_no: &RefundNo,
        limit: u32,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        Ok(self
            .lock()?
            .refund_webhook_attempts
            .get(refund_no)
            .map(|attempts| {
                attempts
                    .values()
                    .rev()
                    .filter(|a| a.order_no == *order_no)
                    .take(limit as usize)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl RateLimitStore for MemoryStore {
    async fn count_in_window(
        &self,
        bucket: &str,
        expires_at: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut t = self.lock()?;
        // Forget windows that have ended (and reset a reused bucket name).
        t.windows
            .retain(|_, (_, until)| *until > expires_at.plus_secs(-3600));
        let entry = t
            .windows
            .entry(bucket.to_string())
            .or_insert((0, expires_at));
        if entry.1 != expires_at {
            *entry = (0, expires_at);
        }
        entry.0 += 1;
        Ok(entry.0)
    }
}

impl HealthStore for MemoryStore {
    async fn check_health(&self) -> Result<(), StoreError> {
        self.lock().map(|_| ())
    }
}
