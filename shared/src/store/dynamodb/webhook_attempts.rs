//! The webhook attempt log: one item per attempt under the order's partition, kept by TTL. A
//! refund's attempts are in its order's partition too, under keys of their own
//! (`RATTEMPT#{refund_no}#…`), so the order's listing (`ATTEMPT#…`) never shows them.

use super::{
    item::{attempt_from_item, attempt_item, s, Item},
    schema::{
        order_pk, refund_attempt_sk, refund_attempts_prefix, ATTEMPT_SK_PREFIX, ITEM_TYPE, PK, SK,
    },
    sdk_error, DynamoStore,
};
use crate::{
    model::{OrderNo, RefundNo, WebhookAttempt},
    store::{StoreError, WebhookAttemptStore},
};

/// A refund's attempt: the order's attempt item under the refund's key, naming the refund.
fn refund_attempt_item(refund_no: &RefundNo, attempt: &WebhookAttempt) -> Item {
    let mut item = attempt_item(attempt);
    item.insert(
        SK.into(),
        s(refund_attempt_sk(
            refund_no,
            attempt.generation,
            attempt.attempt,
        )),
    );
    item.insert(ITEM_TYPE.into(), s("refund_webhook_attempt"));
    item.insert("refund_no".into(), s(refund_no.as_str()));
    item
}

impl DynamoStore {
    async fn put_attempt(&self, item: Item, what: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("record webhook attempt of {what}"), e))?;
        Ok(())
    }

    /// The newest `limit` attempts under `prefix` in `order_no`'s partition.
    async fn query_attempts(
        &self,
        order_no: &OrderNo,
        prefix: &str,
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
            .expression_attribute_values(":prefix", s(prefix))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("webhook attempts of {order_no} ({prefix})"), e))?;
        out.items().iter().map(attempt_from_item).collect()
    }
}

impl WebhookAttemptStore for DynamoStore {
    async fn record_webhook_attempt(&self, attempt: &WebhookAttempt) -> Result<(), StoreError> {
        self.put_attempt(attempt_item(attempt), attempt.order_no.as_str())
            .await
    }

    async fn webhook_attempts(
        &self,
        order_no: &OrderNo,
        limit: u32,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        self.query_attempts(order_no, ATTEMPT_SK_PREFIX, limit)
            .await
    }

    async fn record_refund_webhook_attempt(
        &self,
        refund_no: &RefundNo,
        attempt: &WebhookAttempt,
    ) -> Result<(), StoreError> {
        self.put_attempt(refund_attempt_item(refund_no, attempt), refund_no.as_str())
            .await
    }

    async fn refund_webhook_attempts(
        &self,
        order_no: &OrderNo,
        refund_no: &RefundNo,
        limit: u32,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        self.query_attempts(order_no, &refund_attempts_prefix(refund_no), limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    #[test]
    fn refund_attempts_have_keys_of_their_own_in_the_orders_partition() {
        let order_no = OrderNo::parse("FP20251221103000ABC123").unwrap();
        let refund_no = RefundNo::parse("RF20251221103000ABC123").unwrap();
        let attempt = WebhookAttempt {
            order_no: order_no.clone(),
            event_id: format!("evt_{refund_no}_succeeded"),
            generation: 1,
            attempt: 2,
            at: Timestamp::from_unix(1_766_284_200),
            url: None,
            status_code: None,
            latency_ms: 0,
            response: None,
            error: None,
            delivered: false,
        };
        let item = refund_attempt_item(&refund_no, &attempt);
        assert_eq!(item.get(PK), Some(&s("ORDER#FP20251221103000ABC123")));
        assert_eq!(
            item.get(SK),
            Some(&s("RATTEMPT#RF20251221103000ABC123#0000000001#0000000002"))
        );
        assert!(!refund_attempt_sk(&refund_no, 1, 2).starts_with(ATTEMPT_SK_PREFIX));
        assert_eq!(attempt_from_item(&item).unwrap(), attempt);
    }
}
