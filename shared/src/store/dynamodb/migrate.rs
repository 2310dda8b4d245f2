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
    schema::{merchant_pk, COUNTS_SK, PK, SK},
    DynamoStore,
};
use crate::{
    model::MerchantId,
    store::{MerchantStore, StoreError},
};

impl DynamoStore {
    /// Folds every merchant's old counts item into its new one; returns how many were folded.
    /// (Merchant by merchant, from the operator's merchant list: no scan of the orders.)
    pub async fn migrate_legacy_counts(&self) -> Result<usize, StoreError> {
        let mut folded = 0;
        for merchant in self.list_merchants().await? {
            if let Some(item) = self.get(merchant_pk(&merchant.id), COUNTS_SK).await? {
                self.fold_legacy_counts(&item).await?;
                folded += 1;
            }
        }
        Ok(folded)
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
