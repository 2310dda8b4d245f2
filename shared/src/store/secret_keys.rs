//! Which merchants' secrets a store may open and seal, and where its data keys come from.
//!
//! Envelope encryption: each [`SecretPurpose`] has one data key (AES-256), kept in the table
//! wrapped (by KMS in AWS, by [`LocalWrapKey::dev`] in `ferrypay dev` and tests) in its keyring
//! item. A process may open only the purposes it is given ([`SecretKeys::opening`]): the
//! notify-worker `webhook`, gateway-redirect `link`, the operator both
//! ([`SecretKeys::operator`], which also creates a missing keyring). Each data key is unwrapped
//! at most once per process (at start, [`crate::store::DynamoStore::load_secret_keys`], or
//! when first needed) and kept in memory.

use std::{collections::BTreeSet, sync::Arc};

use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;

use super::StoreError;
use crate::{
    model::SecretPurpose,
    seal::{DataKey, LocalWrapKey},
};

/// A data key as stored: who wrapped it, and the wrapped bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// [`WRAPPED_BY_KMS`] or [`WRAPPED_BY_LOCAL_DEV`].
    pub wrapped_by: String,
    /// The KMS key that wrapped it (for people reading the item), if KMS did.
    pub kms_key_id: Option<String>,
    pub blob: Vec<u8>,
}

pub const WRAPPED_BY_KMS: &str = "aws-kms";
pub const WRAPPED_BY_LOCAL_DEV: &str = "local-dev";

/// Makes and unwraps data keys (KMS `GenerateDataKey`/`Decrypt` with the encryption context
/// `{"ferrypay:purpose": "<purpose>"}`, or the local dev key).
pub trait DataKeySource: Send + Sync + 'static {
    /// A new data key for `purpose` and its wrapped form (to store).
    fn generate(
        &self,
        purpose: SecretPurpose,
    ) -> BoxFuture<'_, Result<(DataKey, WrappedKey), StoreError>>;

    fn unwrap<'a>(
        &'a self,
        purpose: SecretPurpose,
        wrapped: &'a WrappedKey,
    ) -> BoxFuture<'a, Result<DataKey, StoreError>>;
}

/// Data keys wrapped by the public dev/test key ([`LocalWrapKey::dev`]): `ferrypay dev --store
/// dynamodb` and tests. It refuses keyrings wrapped by KMS, and KMS refuses its keyrings.
pub struct LocalDevKeys(LocalWrapKey);

impl LocalDevKeys {
    pub fn new() -> Result<LocalDevKeys, StoreError> {
        LocalWrapKey::dev()
            .map(LocalDevKeys)
            .map_err(|e| StoreError::new(format!("local dev key: {e}")))
    }
}

impl DataKeySource for LocalDevKeys {
    fn generate(
        &self,
        purpose: SecretPurpose,
    ) -> BoxFuture<'_, Result<(DataKey, WrappedKey), StoreError>> {
        Box::pin(async move {
            let fail = |e: crate::seal::SealError| StoreError::new(format!("local data key: {e}"));
            let (key, bytes) = DataKey::generate().map_err(fail)?;
            let blob = self.0.wrap(purpose, bytes.expose()).map_err(fail)?;
            let wrapped = WrappedKey {
                wrapped_by: WRAPPED_BY_LOCAL_DEV.into(),
                kms_key_id: None,
                blob,
            };
            Ok((key, wrapped))
        })
    }

    fn unwrap<'a>(
        &'a self,
        purpose: SecretPurpose,
        wrapped: &'a WrappedKey,
    ) -> BoxFuture<'a, Result<DataKey, StoreError>> {
        Box::pin(async move {
            if wrapped.wrapped_by != WRAPPED_BY_LOCAL_DEV {
                return Err(StoreError::new(format!(
                    "the {} keyring is wrapped by {}, not the local dev key",
                    purpose.as_str(),
                    wrapped.wrapped_by
                )));
            }
            self.0.unwrap(purpose, &wrapped.blob).map_err(|e| {
                StoreError::new(format!("unwrap the {} data key: {e}", purpose.as_str()))
            })
        })
    }
}

/// What one store may do with merchants' secrets.
#[derive(Clone, Default)]
pub struct SecretKeys {
    source: Option<Arc<dyn DataKeySource>>,
    may_open: BTreeSet<SecretPurpose>,
    may_create_keyrings: bool,
    webhook: Arc<OnceCell<DataKey>>,
    link: Arc<OnceCell<DataKey>>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys")
            .field("may_open", &self.may_open)
            .field("may_create_keyrings", &self.may_create_keyrings)
            .finish_non_exhaustive()
    }
}

impl SecretKeys {
    /// No secret opens: merchants read with every secret sealed, and cannot be written.
    pub fn none() -> SecretKeys {
        SecretKeys::default()
    }

    /// A function's: opens (and seals) only `purposes`, with keyrings the operator made.
    pub fn opening(purposes: &[SecretPurpose], source: Arc<dyn DataKeySource>) -> SecretKeys {
        SecretKeys {
            source: Some(source),
            may_open: purposes.iter().copied().collect(),
            ..SecretKeys::default()
        }
    }

    /// The operator's (and `ferrypay dev`'s): every purpose, and a missing keyring is created.
    pub fn operator(source: Arc<dyn DataKeySource>) -> SecretKeys {
        SecretKeys {
            may_create_keyrings: true,
            ..SecretKeys::opening(&SecretPurpose::ALL, source)
        }
    }

    pub fn may_open(&self, purpose: SecretPurpose) -> bool {
        self.may_open.contains(&purpose)
    }

    pub fn may_create_keyrings(&self) -> bool {
        self.may_create_keyrings
    }

    /// Only the operator writes merchants and their key items (so a function's store refuses
    /// to, as its IAM role does): the same permission as creating keyrings.
    pub fn may_write_merchants(&self) -> bool {
        self.may_create_keyrings
    }

    pub(super) fn source(&self) -> Result<&dyn DataKeySource, StoreError> {
        self.source
            .as_deref()
            .ok_or_else(|| StoreError::new("no data key source"))
    }

    pub(super) fn cell(&self, purpose: SecretPurpose) -> &OnceCell<DataKey> {
        match purpose {
            SecretPurpose::Webhook => &self.webhook,
            SecretPurpose::Link => &self.link,
        }
    }
}
