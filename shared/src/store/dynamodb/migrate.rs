//! The operator's one-off upgrade of a table written by an earlier ferrypay: order counts
//! moved out of the merchant's partition (`MERCHANT#{id}`/`COUNTS` to `COUNTS#{id}`/`COUNTS`).
//!
//! Until migrated, `count_orders` reads both items and adds them, so totals are right before,
//! during and after; the migration folds each old item into the new one and deletes it in one
//! transaction, conditional on the old counts being exactly what was read (an old function
//! still adding to it during a deploy makes that merchant's fold fail; run it again).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem};

use super::{
    build_error,
    condition::Condition,
    item::{n, s},
    schema::{COUNTS_SK, PK, SK},
    sdk_error, DynamoStore,
};
use crate::{model::MerchantId, store::StoreError};

impl DynamoStore {
    /// Folds every old counts item into its merchant's new one; returns how many were folded.
    pub async fn migrate_legacy_counts(&self) -> Result<usize, StoreError> {
        let mut folded = 0;
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#sk = :counts AND begins_with(#pk, :merchant)")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":counts", s(COUNTS_SK))
                .expression_attribute_values(":merchant", s("MERCHANT#"))
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| sdk_error("scan for old counts items", e))?;
            for item in page.items() {
                self.fold_legacy_counts(item).await?;
                folded += 1;
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(folded);
            }
        }
    }

    async fn fold_legacy_counts(
        &self,
        item: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    ) -> Result<(), StoreError> {
        let pk = match item.get(PK) {
            Some(aws_sdk_dynamodb::types::AttributeValue::S(pk)) => pk.clone(),
            _ => return Err(StoreError::new("an old counts item without a pk")),
        };
        let merchant = MerchantId::new(pk.trim_start_matches("MERCHANT#"));
        let counts: Vec<(String, i64)> = item
            .iter()
            .filter(|(name, _)| name.starts_with("count_"))
            .map(|(name, value)| {
                let count = value
                    .as_n()
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| StoreError::new(format!("old counts of {merchant}: {name}")))?;
                Ok((name.clone(), count))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut unchanged = Condition::new("attribute_exists(#pk)").name("#pk", PK);
        for (i, (name, count)) in counts.iter().enumerate() {
            unchanged = unchanged
                .and(&format!("#o{i} = :o{i}"))
                .name(&format!("#o{i}"), name)
                .value(&format!(":o{i}"), n(*count));
        }
        let (expression, names, values) = unchanged.into_parts();
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(COUNTS_SK))
            .condition_expression(expression)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .build()
            .map_err(|e| build_error("delete request", e))?;
        let mut items = vec![TransactWriteItem::builder().delete(delete).build()];
        if !counts.is_empty() {
            let add = self.add_counts(&merchant, &counts)?;
            items.push(TransactWriteItem::builder().update(add).build());
        }
        match self
            .transact(items, &format!("fold the old counts of {merchant}"))
            .await?
        {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::new(format!(
                "the old counts of {merchant} changed while folding them (an old function still \
                 running?): run the migration again"
            ))),
        }
    }
}
