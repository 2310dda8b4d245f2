//! The production store: one DynamoDB table (on-demand), every access pattern one request,
//! every state change a conditional write. The table design (keys, indexes, access patterns,
//! writes) is documented in `schema.rs`, next to [`DynamoStore::create_table`], its one
//! definition.
//!
//! - `schema`: key names and formats, `create_table`;
//! - `item`: items to and from the model;
//! - `condition`: condition expressions, among them `Order::apply`'s rules;
//! - `keyring`: the wrapped data keys that seal merchants' secrets;
//! - `refund_item`: refund items (and their pointers) to and from the model;
//! - one file per capability: `merchants`, `orders`, `refunds`, `webhook_attempts`,
//!   `rate_limits`, `health`.

mod condition;
mod health;
mod item;
mod keyring;
mod merchant_item;
mod merchants;
mod migrate;
mod orders;
mod rate_limits;
mod refund_item;
mod refunds;
mod schema;
mod webhook_attempts;

use std::{collections::HashMap, time::Duration};

use aws_sdk_dynamodb::{
    error::{DisplayErrorContext, SdkError},
    operation::{put_item::PutItemError, transact_write_items::TransactWriteItemsError},
    types::{Put, TransactWriteItem, Update},
    Client,
};

use self::{
    condition::Condition,
    item::{n, s, Item},
    schema::{counts_pk, COUNTS_SK, ITEM_TYPE, KEY_SK, PK, SK},
};
use crate::{
    model::MerchantId,
    store::{SecretKeys, StoreError},
};

/// Conflicting transactions (two writes to one merchant's counts at once) and version races
/// are retried this many times before giving up with a [`StoreError`].
const MAX_ATTEMPTS: u32 = 5;

/// The DynamoDB [`Store`](crate::store::Store). Cheap to clone (the client and the data keys
/// are shared).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// Which merchants' secrets this store may open and seal.
    secrets: SecretKeys,
}

impl DynamoStore {
    /// A store on `table_name` (which must have the layout [`DynamoStore::create_table`] makes)
    /// that opens no merchant secret ([`DynamoStore::with_secret_keys`] gives it some).
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table_name.into(),
            secrets: SecretKeys::none(),
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
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
            .map_err(|e| sdk_error(&get_op(&pk, sk), e))?;
        Ok(out.item)
    }

    /// Runs a transaction, retrying it while DynamoDB cancels it for a conflict with another
    /// transaction or for throttling. `Ok(Err(indexes))`: the conditions of these items failed.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        context: &str,
    ) -> Result<Result<(), Vec<usize>>, StoreError> {
        match self.transact_detailed(items, context).await? {
            Ok(()) => Ok(Ok(())),
            Err(Cancelled::Conditions { failed, .. }) => Ok(Err(failed)),
            Err(Cancelled::Contended(error)) => Err(error),
        }
    }

    /// [`DynamoStore::transact`], telling apart the two ways it can be cancelled: conditions
    /// that failed (with the items DynamoDB returned for those that asked for
    /// `ReturnValuesOnConditionCheckFailure: ALL_OLD`), and conflicts or throttling that went
    /// on for [`MAX_ATTEMPTS`] (nothing was written; the caller may try again).
    async fn transact_detailed(
        &self,
        items: Vec<TransactWriteItem>,
        context: &str,
    ) -> Result<Result<(), Cancelled>, StoreError> {
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
            let (reasons, mut old): (Vec<String>, HashMap<usize, Item>) =
                match error.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                        let reasons = cancelled.cancellation_reasons();
                        (
                            reasons
                                .iter()
                                .map(|r| r.code().unwrap_or("None").to_string())
                                .collect(),
                            reasons
                                .iter()
                                .enumerate()
                                .filter_map(|(i, r)| r.item().map(|item| (i, item.clone())))
                                .collect(),
                        )
                    }
                    _ => return Err(sdk_error(context, error)),
                };
            let failed: Vec<usize> = reasons
                .iter()
                .enumerate()
                .filter(|(_, code)| code.as_str() == "ConditionalCheckFailed")
                .map(|(i, _)| i)
                .collect();
            if !failed.is_empty() {
                old.retain(|i, _| failed.contains(i));
                return Ok(Err(Cancelled::Conditions { failed, old }));
            }
            let transient = reasons.iter().any(|code| {
                matches!(
                    code.as_str(),
                    "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                )
            });
            if !transient {
                return Err(sdk_error(context, error));
            }
            if attempt >= MAX_ATTEMPTS {
                return Ok(Err(Cancelled::Contended(sdk_error(context, error))));
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
            .map_err(|e| build_error("put request", e))
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
            .key(PK, s(counts_pk(merchant_id)))
            .key(SK, s(COUNTS_SK))
            .update_expression(format!("SET #type = :type ADD {}", parts.join(", ")))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| build_error("update request", e))
    }
}

/// Why a transaction wrote nothing (see [`DynamoStore::transact_detailed`]).
enum Cancelled {
    /// The conditions of these items (indexes) failed; `old` holds, by index, the items as they
    /// were, for those that asked for them (and exist).
    Conditions {
        failed: Vec<usize>,
        old: HashMap<usize, Item>,
    },
    /// Conflicting transactions or throttling did not settle within [`MAX_ATTEMPTS`].
    Contended(StoreError),
}

/// A failed SDK call, its error kept as the cause. `op` names what was done (ids, never
/// attribute values).
fn sdk_error<E, R>(op: &str, error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::caused_by(format!("DynamoDB {op}"), error)
}

/// What a `GetItem` read, for errors: the key, except an API key's (its hash identifies a key).
fn get_op(pk: &str, sk: &str) -> String {
    if sk == KEY_SK {
        "get API key".to_string()
    } else {
        format!("get {pk}")
    }
}

/// A request the SDK's builder refused to build (a missing required field: a bug here).
fn build_error(what: &str, error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::caused_by(format!("DynamoDB {what}"), error)
}

/// 20 ms, 40 ms, 80 ms, ... with up to 50% jitter.
async fn backoff(attempt: u32) {
    let base = 20u64.saturating_mul(1 << attempt.min(6));
    let jitter = crate::model::random_bytes::<1>()
        .map(|[b]| u64::from(b) * base / 512)
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_api_key_read_does_not_name_the_key_hash() {
        assert_eq!(get_op("KEY#0123abcd", KEY_SK), "get API key");
        assert_eq!(get_op("ORDER#FP1", "ORDER"), "get ORDER#FP1");
    }
}
