//! A store chosen at run time (`ferrypay dev --store memory|dynamodb`).

use super::{
    BeginRefundError, DynamoStore, ExternalRefundRecorded, HealthStore, InsertMerchantError,
    InsertOrderError, ListQuery, MemoryStore, MerchantStore, OrderPage, OrderStore, RateLimitStore,
    RecordRefundError, RefundSettled, RefundStore, StoreError, UpdateMerchantError,
    UpdateOrderError, UpdateRefundError, WebhookAttemptStore,
};
use crate::model::{
    KeyHash, KeyKind, Merchant, MerchantId, Order, OrderNo, OrderUpdate, OutRefundNo, OutTradeNo,
    Refund, RefundNo, RefundSettlement, RefundWebhookUpdate, Timestamp, WebhookAttempt,
};

pub enum EitherStore {
    Memory(Box<MemoryStore>),
    Dynamo(DynamoStore),
}

/// Forwards one call to whichever store this is.
macro_rules! forward {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            EitherStore::Memory($store) => $call.await,
            EitherStore::Dynamo($store) => $call.await,
        }
    };
}

impl MerchantStore for EitherStore {
    async fn insert_merchant(&self, merchant: &Merchant) -> Result<(), InsertMerchantError> {
        forward!(self, s => s.insert_merchant(merchant))
    }

    async fn merchant_by_key(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<(Merchant, KeyKind)>, StoreError> {
        forward!(self, s => s.merchant_by_key(hash))
    }

    async fn get_merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError> {
        forward!(self, s => s.get_merchant(id))
    }

    async fn update_merchant(&self, merchant: &Merchant) -> Result<Merchant, UpdateMerchantError> {
        forward!(self, s => s.update_merchant(merchant))
    }

    async fn list_merchants(&self) -> Result<Vec<Merchant>, StoreError> {
        forward!(self, s => s.list_merchants())
    }
}

impl OrderStore for EitherStore {
    async fn insert_order(&self, order: &Order) -> Result<(), InsertOrderError> {
        forward!(self, s => s.insert_order(order))
    }

    async fn get_order(&self, order_no: &OrderNo) -> Result<Option<Order>, StoreError> {
        forward!(self, s => s.get_order(order_no))
    }

    async fn order_by_out_trade_no(
        &self,
        merchant_id: &MerchantId,
        out_trade_no: &OutTradeNo,
    ) -> Result<Option<Order>, StoreError> {
        forward!(self, s => s.order_by_out_trade_no(merchant_id, out_trade_no))
    }

    async fn update_order(
        &self,
        order_no: &OrderNo,
        update: &OrderUpdate,
    ) -> Result<Order, UpdateOrderError> {
        forward!(self, s => s.update_order(order_no, update))
    }

    async fn list_orders(&self, query: &ListQuery) -> Result<OrderPage, StoreError> {
        forward!(self, s => s.list_orders(query))
    }
}

impl RefundStore for EitherStore {
    async fn begin_refund(&self, refund: &Refund) -> Result<Refund, BeginRefundError> {
        forward!(self, s => s.begin_refund(refund))
    }

    async fn settle_refund(
        &self,
        refund_no: &RefundNo,
        settlement: &RefundSettlement,
    ) -> Result<RefundSettled, UpdateRefundError> {
        forward!(self, s => s.settle_refund(refund_no, settlement))
    }

    async fn record_external_refund(
        &self,
        refund: &Refund,
    ) -> Result<ExternalRefundRecorded, RecordRefundError> {
        forward!(self, s => s.record_external_refund(refund))
    }

    async fn get_refund(&self, refund_no: &RefundNo) -> Result<Option<Refund>, StoreError> {
        forward!(self, s => s.get_refund(refund_no))
    }

    async fn refund_by_out_refund_no(
        &self,
        merchant_id: &MerchantId,
        out_refund_no: &OutRefundNo,
    ) -> Result<Option<Refund>, StoreError> {
        forward!(self, s => s.refund_by_out_refund_no(merchant_id, out_refund_no))
    }

    async fn refunds_of_order(
        &self,
        order_no: &OrderNo,
        limit: u32,
    ) -> Result<Vec<Refund>, StoreError> {
        forward!(self, s => s.refunds_of_order(order_no, limit))
    }

    async fn processing_refunds(&self, order_no: &OrderNo) -> Result<Vec<Refund>, StoreError> {
        forward!(self, s => s.processing_refunds(order_no))
    }

    async fn update_refund_webhook(
        &self,
        refund_no: &RefundNo,
        update: &RefundWebhookUpdate,
    ) -> Result<Refund, UpdateRefundError> {
        forward!(self, s => s.update_refund_webhook(refund_no, update))
    }
}

impl WebhookAttemptStore for EitherStore {
    async fn record_webhook_attempt(&self, attempt: &WebhookAttempt) -> Result<(), StoreError> {
        forward!(self, s => s.record_webhook_attempt(attempt))
    }

    async fn webhook_attempts(
        &self,
        order_no: &OrderNo,
        limit: u32,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        forward!(self, s => s.webhook_attempts(order_no, limit))
    }

    async fn record_refund_webhook_attempt(
        &self,
        refund_no: &RefundNo,
        attempt: &WebhookAttempt,
    ) -> Result<(), StoreError> {
        forward!(self, s => s.record_refund_webhook_attempt(refund_no, attempt))
    }

    async fn refund_webhook_attempts(
        &self,
        order_no: &OrderNo,
        refund_no: &RefundNo,
        limit: u32,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        forward!(self, s => s.refund_webhook_attempts(order_no, refund_no, limit))
    }
}

impl RateLimitStore for EitherStore {
    async fn count_in_window(
        &self,
        bucket: &str,
        expires_at: Timestamp,
    ) -> Result<u64, StoreError> {
        forward!(self, s => s.count_in_window(bucket, expires_at))
    }
}

impl HealthStore for EitherStore {
    async fn check_health(&self) -> Result<(), StoreError> {
        forward!(self, s => s.check_health())
    }
}
