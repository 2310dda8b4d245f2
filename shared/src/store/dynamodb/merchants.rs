//! Merchants: the record and its two API-key items, always written together.

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem};

use super::{
    build_error,
    condition::Condition,
    item::{corrupt, merchant_from_item, merchant_item, s, Reader},
    schema::{key_pk, merchant_pk, KEY_SK, MERCHANT_SK, PK, SK},
    sdk_error, DynamoStore,
};
use crate::{
    model::{KeyHash, KeyKind, Merchant, MerchantId},
    store::{InsertMerchantError, MerchantStore, StoreError, UpdateMerchantError},
};

impl MerchantStore for DynamoStore {
    async fn insert_merchant(&self, merchant: &Merchant) -> Result<(), InsertMerchantError> {
        if merchant.secret_key_hash == merchant.publishable_key_hash {
            return Err(StoreError::new("a merchant's two keys must differ").into());
        }
        let new = || Condition::new("attribute_not_exists(#pk)").name("#pk", PK);
        let record = merchant_item(merchant, merchant_pk(&merchant.id), MERCHANT_SK, None);
        let secret = merchant_item(
            merchant,
            key_pk(&merchant.secret_key_hash),
            KEY_SK,
            Some(KeyKind::Secret),
        );
        let publishable = merchant_item(
            merchant,
            key_pk(&merchant.publishable_key_hash),
            KEY_SK,
            Some(KeyKind::Publishable),
        );
        let items = [record, secret, publishable]
            .into_iter()
            .map(|item| {
                Ok(TransactWriteItem::builder()
                    .put(self.put(item, new())?)
                    .build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        match self
            .transact(items, &format!("insert merchant {}", merchant.id))
            .await?
        {
            Ok(()) => Ok(()),
            Err(_) => Err(InsertMerchantError::Exists),
        }
    }

    async fn merchant_by_key(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<(Merchant, KeyKind)>, StoreError> {
        let Some(item) = self.get(key_pk(hash), KEY_SK).await? else {
            return Ok(None);
        };
        let merchant = merchant_from_item(&item)?;
        let kind = match Reader::new(&item, "API key").str("key_kind")? {
            "secret" => KeyKind::Secret,
            "publishable" => KeyKind::Publishable,
            other => return Err(corrupt("API key", &format!("key_kind {other:?}"))),
        };
        Ok(Some((merchant, kind)))
    }

    async fn get_merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError> {
        self.get(merchant_pk(id), MERCHANT_SK)
            .await?
            .map(|item| merchant_from_item(&item))
            .transpose()
    }

    /// One transaction: the merchant record (only if it exists), each key item rewritten (a new
    /// hash only if unused), and the key items of replaced hashes deleted.
    async fn update_merchant(&self, merchant: &Merchant) -> Result<(), UpdateMerchantError> {
        if merchant.secret_key_hash == merchant.publishable_key_hash {
            return Err(StoreError::new("a merchant's two keys must differ").into());
        }
        let current = self
            .get_merchant(&merchant.id)
            .await?
            .ok_or(UpdateMerchantError::NotFound)?;
        let exists = || Condition::new("attribute_exists(#pk)").name("#pk", PK);
        let new = || Condition::new("attribute_not_exists(#pk)").name("#pk", PK);
        let mut items = vec![TransactWriteItem::builder()
            .put(self.put(
                merchant_item(merchant, merchant_pk(&merchant.id), MERCHANT_SK, None),
                exists(),
            )?)
            .build()];
        for (kind, old, new_hash) in [
            (
                KeyKind::Secret,
                &current.secret_key_hash,
                &merchant.secret_key_hash,
            ),
            (
                KeyKind::Publishable,
                &current.publishable_key_hash,
                &merchant.publishable_key_hash,
            ),
        ] {
            let condition = if old == new_hash { exists() } else { new() };
            let key_item = merchant_item(merchant, key_pk(new_hash), KEY_SK, Some(kind));
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(key_item, condition)?)
                    .build(),
            );
            if old != new_hash {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key(PK, s(key_pk(old)))
                    .key(SK, s(KEY_SK))
                    .build()
                    .map_err(|e| build_error("delete request", e))?;
                items.push(TransactWriteItem::builder().delete(delete).build());
            }
        }
        match self
            .transact(items, &format!("update merchant {}", merchant.id))
            .await?
        {
            Ok(()) => Ok(()),
            Err(failed) if failed.contains(&0) => Err(UpdateMerchantError::NotFound),
            Err(_) => Err(UpdateMerchantError::KeyTaken),
        }
    }

    async fn list_merchants(&self) -> Result<Vec<Merchant>, StoreError> {
        let mut merchants = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#sk = :merchant")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":merchant", s(MERCHANT_SK))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("list merchants", e))?;
            for item in page.items() {
                merchants.push(merchant_from_item(item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        merchants.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(merchants)
    }
}
