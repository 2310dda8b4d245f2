//! AWS SDK configuration, built once per process (Lambda init, `ferrypay dev`, tests) and
//! shared by every client made from it.

use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_kms::primitives::Blob;
use futures_util::future::BoxFuture;

use crate::{
    model::SecretPurpose,
    seal::DataKey,
    store::{
        DataKeySource, LocalDevKeys, StoreError, WrappedKey, WRAPPED_BY_KMS, WRAPPED_BY_LOCAL_DEV,
    },
};

/// The region [`emulator_config`] claims (an emulator accepts any).
pub const EMULATOR_REGION: &str = "us-east-1";

/// The SDK configuration from the environment: in Lambda, the function role's credentials and
/// region; elsewhere the usual `AWS_*` variables and profile. `endpoint_url` points every client
/// at another endpoint (an AWS emulator); without it the SDK still honours `AWS_ENDPOINT_URL`.
pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    loader(endpoint_url).load().await
}

/// The loader behind [`sdk_config`], for callers that set more before loading.
pub fn loader(endpoint_url: Option<&str>) -> ConfigLoader {
    let loader = aws_config::defaults(BehaviorVersion::latest());
    match endpoint_url {
        Some(url) => loader.endpoint_url(url),
        None => loader,
    }
}

/// For a local AWS emulator (moto): the given endpoint, a fixed region and dummy credentials
/// (`testing`/`testing`), so nothing is looked up (no profile, no instance metadata) and no
/// real account can be reached with them. Used by the contract tests and `ferrypay dev`.
pub async fn emulator_config(endpoint_url: &str) -> SdkConfig {
    loader(Some(endpoint_url))
        .region(Region::new(EMULATOR_REGION))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "ferrypay-emulator",
        ))
        .load()
        .await
}

/// Data keys made and unwrapped by AWS KMS (envelope encryption of merchants' secrets), with
/// the encryption context `{"ferrypay:purpose": "<purpose>"}`, so a function role whose
/// `kms:Decrypt` is conditioned on one purpose can unwrap that purpose's key only.
pub struct KmsDataKeys {
    client: aws_sdk_kms::Client,
    /// The key that wraps new data keys (`FERRYPAY_KMS_KEY_ID`); unwrapping needs none (the
    /// wrapped blob names its key).
    key_id: Option<String>,
    /// The operator on a local emulator: keyrings wrapped by the public dev key open too, and
    /// without `key_id` new ones are wrapped by it.
    local_dev: Option<LocalDevKeys>,
}

/// The encryption context's one entry.
pub const KMS_CONTEXT_KEY: &str = "ferrypay:purpose";

impl KmsDataKeys {
    pub fn new(sdk: &SdkConfig, key_id: Option<String>) -> KmsDataKeys {
        KmsDataKeys {
            client: aws_sdk_kms::Client::new(sdk),
            key_id,
            local_dev: None,
        }
    }

    /// Also the public local dev key ([`LocalDevKeys`]): for tables on a local emulator only.
    pub fn with_local_dev_key(mut self) -> Result<KmsDataKeys, StoreError> {
        self.local_dev = Some(LocalDevKeys::new()?);
        Ok(self)
    }
}

impl DataKeySource for KmsDataKeys {
    fn generate(
        &self,
        purpose: SecretPurpose,
    ) -> BoxFuture<'_, Result<(DataKey, WrappedKey), StoreError>> {
        Box::pin(async move {
            if let (None, Some(local)) = (&self.key_id, &self.local_dev) {
                return local.generate(purpose).await;
            }
            let key_id = self.key_id.as_deref().ok_or_else(|| {
                StoreError::new(format!(
                    "creating the {} keyring needs a KMS key: set FERRYPAY_KMS_KEY_ID",
                    purpose.as_str()
                ))
            })?;
            let out = self
                .client
                .generate_data_key()
                .key_id(key_id)
                .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                .encryption_context(KMS_CONTEXT_KEY, purpose.as_str())
                .send()
                .await
                .map_err(|e| {
                    StoreError::caused_by(
                        format!("KMS GenerateDataKey ({})", purpose.as_str()),
                        aws_sdk_kms::error::DisplayErrorContext(e).to_string(),
                    )
                })?;
            let (Some(plain), Some(blob)) = (out.plaintext, out.ciphertext_blob) else {
                return Err(StoreError::new(
                    "KMS GenerateDataKey answered without a key",
                ));
            };
            let key = DataKey::from_bytes(plain.as_ref())
                .map_err(|e| StoreError::new(format!("KMS data key: {e}")))?;
            let wrapped = WrappedKey {
                wrapped_by: WRAPPED_BY_KMS.into(),
                kms_key_id: out.key_id.or_else(|| Some(key_id.to_string())),
                blob: blob.into_inner(),
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
            if let (WRAPPED_BY_LOCAL_DEV, Some(local)) =
                (wrapped.wrapped_by.as_str(), &self.local_dev)
            {
                return local.unwrap(purpose, wrapped).await;
            }
            if wrapped.wrapped_by != WRAPPED_BY_KMS {
                return Err(StoreError::new(format!(
                    "the {} keyring is wrapped by {}, not KMS (a dev table?)",
                    purpose.as_str(),
                    wrapped.wrapped_by
                )));
            }
            let out = self
                .client
                .decrypt()
                .ciphertext_blob(Blob::new(wrapped.blob.clone()))
                .encryption_context(KMS_CONTEXT_KEY, purpose.as_str())
                .send()
                .await
                .map_err(|e| {
                    StoreError::caused_by(
                        format!("KMS Decrypt ({} data key)", purpose.as_str()),
                        aws_sdk_kms::error::DisplayErrorContext(e).to_string(),
                    )
                })?;
            let plain = out
                .plaintext
                .ok_or_else(|| StoreError::new("KMS Decrypt answered without plaintext"))?;
            DataKey::from_bytes(plain.as_ref())
                .map_err(|e| StoreError::new(format!("KMS data key: {e}")))
        })
    }
}
