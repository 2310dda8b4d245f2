//! The webhook attempt log: one item per attempt under the order's partition, kept by TTL.

use super::{
    item::{attempt_from_item, attempt_item, s},
    schema::{order_pk, ATTEMPT_SK_PREFIX, PK, SK},
    sdk_error, DynamoStore,
};
use crate::{
    model::{OrderNo, WebhookAttempt},
    store::{StoreError, WebhookAttemptStore},
};

impl WebhookAttemptStore for DynamoStore {
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
}
