//! Fixed-window rate-limit counters, one item per window.

use std::collections::HashMap;

use aws_sdk_dynamodb::{operation::update_item::UpdateItemError, types::ReturnValue};

use super::{
    condition::Condition,
    item::{corrupt, n, s},
    schema::{window_pk, ITEM_TYPE, PK, PURGE_AT, SK, WINDOW_SK},
    sdk_error, DynamoStore, MAX_ATTEMPTS,
};
use crate::{
    model::Timestamp,
    store::{RateLimitStore, StoreError},
};

impl RateLimitStore for DynamoStore {
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
        Err(StoreError::new(format!(
            "{context}: kept conflicting; gave up"
        )))
    }
}
