//! The keyring items: each purpose's data key, wrapped, at `KEYRING#{purpose}`. Created once
//! (a conditional put: of two operators creating it at once, one wins and both use its key),
//! only by a store that may create keyrings (the operator's CLI); read and unwrapped at most
//! once per process.

use std::collections::HashMap;

use aws_sdk_dynamodb::{primitives::Blob, types::AttributeValue};

use super::{
    condition::Condition,
    item::{corrupt, s, Item, Reader},
    merchant_item::{has_sealed, secret_purposes, Access, Keys},
    schema::{keyring_pk, ITEM_TYPE, KEYRING_SK, PK, SK},
    DynamoStore,
};
use crate::{
    model::{Merchant, SecretPurpose},
    seal::DataKey,
    store::{secret_keys::WrappedKey, SecretKeys, StoreError},
};

const WRAPPED_KEY: &str = "wrapped_key";
const WRAPPED_BY: &str = "wrapped_by";
const KMS_KEY_ID: &str = "kms_key_id";

impl DynamoStore {
    /// This store with these secret permissions (without: every secret sealed, no merchant
    /// writes).
    pub fn with_secret_keys(mut self, keys: SecretKeys) -> Self {
        self.secrets = keys;
        self
    }

    pub fn secret_keys(&self) -> &SecretKeys {
        &self.secrets
    }

    /// Unwraps the data keys of the purposes this store may open, where their keyrings exist:
    /// at a function's cold start, so no request waits for KMS. A keyring created later is
    /// loaded when a sealed value first needs it.
    pub async fn load_secret_keys(&self) -> Result<(), StoreError> {
        for purpose in SecretPurpose::ALL {
            if !self.secrets.may_open(purpose) || self.secrets.cell(purpose).initialized() {
                continue;
            }
            if let Some(key) = self.fetch_data_key(purpose, false).await? {
                // Another task may have set it meanwhile: the same key.
                let _ = self.secrets.cell(purpose).set(key);
            }
        }
        Ok(())
    }

    /// Creates the keyrings that do not exist yet (the operator's `reseal`).
    pub async fn ensure_keyrings(&self) -> Result<(), StoreError> {
        for purpose in SecretPurpose::ALL {
            self.data_key(purpose, true).await?;
        }
        Ok(())
    }

    /// The purpose's data key, unwrapped once and kept; created first if `create` and this
    /// store may create keyrings. An error if the purpose is not this store's to open.
    async fn data_key(&self, purpose: SecretPurpose, create: bool) -> Result<&DataKey, StoreError> {
        if !self.secrets.may_open(purpose) {
            return Err(StoreError::new(format!(
                "this store holds no {} data key",
                purpose.as_str()
            )));
        }
        let create = create && self.secrets.may_create_keyrings();
        self.secrets
            .cell(purpose)
            .get_or_try_init(|| async {
                self.fetch_data_key(purpose, create).await?.ok_or_else(|| {
                    StoreError::new(format!(
                        "no {} keyring in the table: the operator's CLI creates it \
                         (ferrypay merchant reseal --all)",
                        purpose.as_str()
                    ))
                })
            })
            .await
    }

    /// Reads and unwraps the keyring; if it is missing and `create`, makes a data key and puts
    /// it only if still missing (a lost race reads the winner's).
    async fn fetch_data_key(
        &self,
        purpose: SecretPurpose,
        create: bool,
    ) -> Result<Option<DataKey>, StoreError> {
        let source = self.secrets.source()?;
        if let Some(item) = self.get(keyring_pk(purpose), KEYRING_SK).await? {
            return Ok(Some(source.unwrap(purpose, &wrapped_from(&item)?).await?));
        }
        if !create {
            return Ok(None);
        }
        let (key, wrapped) = source.generate(purpose).await?;
        let mut item = HashMap::from([
            (PK.to_string(), s(keyring_pk(purpose))),
            (SK.to_string(), s(KEYRING_SK)),
            (ITEM_TYPE.to_string(), s("keyring")),
            ("purpose".to_string(), s(purpose.as_str())),
            (WRAPPED_BY.to_string(), s(wrapped.wrapped_by.as_str())),
            (
                WRAPPED_KEY.to_string(),
                AttributeValue::B(Blob::new(wrapped.blob.clone())),
            ),
        ]);
        if let Some(id) = &wrapped.kms_key_id {
            item.insert(KMS_KEY_ID.into(), s(id.as_str()));
        }
        let new = Condition::new("attribute_not_exists(#pk)").name("#pk", PK);
        let put = self.put(item, new)?;
        if self
            .put_if(put, &format!("create the {} keyring", purpose.as_str()))
            .await?
        {
            return Ok(Some(key));
        }
        match self.get(keyring_pk(purpose), KEYRING_SK).await? {
            Some(item) => Ok(Some(source.unwrap(purpose, &wrapped_from(&item)?).await?)),
            None => Err(StoreError::new(format!(
                "the {} keyring vanished while being created",
                purpose.as_str()
            ))),
        }
    }

    /// The keys to read these merchant items with: the purposes this store may open, each
    /// data key loaded if an item holds a value sealed with it.
    pub(super) async fn keys_for_read(&self, items: &[&Item]) -> Result<Keys<'_>, StoreError> {
        let access = |purpose| async move {
            if !self.secrets.may_open(purpose) {
                return Ok::<_, StoreError>(Access::Denied);
            }
            if items.iter().any(|item| has_sealed(item, purpose)) {
                return Ok(Access::Allowed(Some(self.data_key(purpose, false).await?)));
            }
            Ok(Access::Allowed(self.secrets.cell(purpose).get()))
        };
        Ok(Keys {
            webhook: access(SecretPurpose::Webhook).await?,
            link: access(SecretPurpose::Link).await?,
        })
    }

    /// The keys to write this merchant with: each purpose it has a secret of (creating the
    /// keyring if this store may). A secret sealed here cannot be written (`sealed_secrets`
    /// refuses it).
    pub(super) async fn keys_for_write(&self, merchant: &Merchant) -> Result<Keys<'_>, StoreError> {
        if !self.secrets.may_write_merchants() {
            return Err(StoreError::new(format!(
                "cannot write merchant {}: only the operator's store writes merchants",
                merchant.id
            )));
        }
        let purposes = secret_purposes(merchant);
        let access = |purpose| {
            let needed = purposes.contains(&purpose);
            async move {
                if !needed || !self.secrets.may_open(purpose) {
                    return Ok::<_, StoreError>(Access::Denied);
                }
                Ok(Access::Allowed(Some(self.data_key(purpose, true).await?)))
            }
        };
        Ok(Keys {
            webhook: access(SecretPurpose::Webhook).await?,
            link: access(SecretPurpose::Link).await?,
        })
    }
}

fn wrapped_from(item: &Item) -> Result<WrappedKey, StoreError> {
    let r = Reader::new(item, "keyring");
    let blob = match item.get(WRAPPED_KEY) {
        Some(AttributeValue::B(blob)) => blob.as_ref().to_vec(),
        _ => return Err(corrupt("keyring", "wrapped_key is not binary")),
    };
    Ok(WrappedKey {
        wrapped_by: r.str(WRAPPED_BY)?.to_string(),
        kms_key_id: r.opt_str(KMS_KEY_ID)?.map(str::to_string),
        blob,
    })
}
