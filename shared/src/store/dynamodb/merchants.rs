//! Merchants: the record and its two API-key items, always written together, their secrets
//! sealed (see `keyring`), every update conditional on the version read.

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem};

use super::{
    build_error,
    condition::Condition,
    item::{corrupt, n, s, Reader},
    merchant_item::{merchant_from_item, merchant_item, sealed_secrets},
    schema::{key_pk, merchant_pk, KEY_SK, MERCHANT_SK, PK, SK, VERSION},
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
        let keys = self.keys_for_write(merchant).await?;
        let sealed = sealed_secrets(merchant, &keys)?;
        let record = merchant_item(
            merchant,
            &sealed,
            merchant_pk(&merchant.id),
            MERCHANT_SK,
            None,
        );
        let secret = merchant_item(
            merchant,
            &sealed,
            key_pk(&merchant.secret_key_hash),
            KEY_SK,
            Some(KeyKind::Secret),
        );
        let publishable = merchant_item(
            merchant,
            &sealed,
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
        let keys = self.keys_for_read(&[&item]).await?;
        let merchant = merchant_from_item(&item, &keys)?;
        let kind = match Reader::new(&item, "API key").str("key_kind")? {
            "secret" => KeyKind::Secret,
            "publishable" => KeyKind::Publishable,
            other => return Err(corrupt("API key", &format!("key_kind {other:?}"))),
        };
        Ok(Some((merchant, kind)))
    }

    async fn get_merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError> {
        let Some(item) = self.get(merchant_pk(id), MERCHANT_SK).await? else {
            return Ok(None);
        };
        let keys = self.keys_for_read(&[&item]).await?;
        merchant_from_item(&item, &keys).map(Some)
    }

    /// One transaction: the merchant record (only if it exists at the version read), each key
    /// item rewritten (a new hash only if unused), and the key items of replaced hashes
    /// deleted. The version condition is what keeps two updates from the same read (two
    /// `rotate-key` runs) from both landing: the loser's new key item is never written.
    async fn update_merchant(&self, merchant: &Merchant) -> Result<Merchant, UpdateMerchantError> {
        if merchant.secret_key_hash == merchant.publishable_key_hash {
            return Err(StoreError::new("a merchant's two keys must differ").into());
        }
        let current = self
            .get_merchant(&merchant.id)
            .await?
            .ok_or(UpdateMerchantError::NotFound)?;
        if current.version != merchant.version {
            return Err(UpdateMerchantError::Conflict);
        }
        let written = Merchant {
            version: merchant.version + 1,
            ..merchant.clone()
        };
        let merchant = &written;
        let keys = self.keys_for_write(merchant).await?;
        let sealed = sealed_secrets(merchant, &keys)?;
        let exists = || Condition::new("attribute_exists(#pk)").name("#pk", PK);
        let new = || Condition::new("attribute_not_exists(#pk)").name("#pk", PK);
        // Items from before versions have none: version 0.
        let at_read_version = if current.version == 0 {
            exists().and("(attribute_not_exists(#version) OR #version = :read_version)")
        } else {
            exists().and("#version = :read_version")
        }
        .name("#version", VERSION)
        .value(
            ":read_version",
            n(i64::try_from(current.version).unwrap_or(i64::MAX)),
        );
        let mut items = vec![TransactWriteItem::builder()
            .put(self.put(
                merchant_item(
                    merchant,
                    &sealed,
                    merchant_pk(&merchant.id),
                    MERCHANT_SK,
                    None,
                ),
                at_read_version,
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
            let key_item = merchant_item(merchant, &sealed, key_pk(new_hash), KEY_SK, Some(kind));
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
            Ok(()) => Ok(written),
            Err(failed) if failed.contains(&0) => {
                match self.get(merchant_pk(&merchant.id), MERCHANT_SK).await? {
                    None => Err(UpdateMerchantError::NotFound),
                    Some(_) => Err(UpdateMerchantError::Conflict),
                }
            }
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
            let items: Vec<_> = page.items().iter().collect();
            let keys = self.keys_for_read(&items).await?;
            for item in items {
                merchants.push(merchant_from_item(item, &keys)?);
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
