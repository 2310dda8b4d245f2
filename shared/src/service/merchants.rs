//! Merchants: onboarding and API-key authentication.

use super::{Backends, Ferrypay};
use crate::{
    api::ApiError,
    model::{KeyKind, Merchant, MerchantId, MerchantStatus, Secret},
    sign::{
        generate_publishable_key, generate_secret_key, generate_webhook_secret, hash_api_key,
        PUBLISHABLE_KEY_PREFIX, SECRET_KEY_PREFIX, WEBHOOK_SECRET_PREFIX,
    },
    store::{InsertMerchantError, Store},
};

/// A merchant to onboard. Keys left `None` are generated; given ones must carry their prefix.
#[derive(Debug, Clone, Default)]
pub struct NewMerchant {
    pub name: String,
    pub notify_url: Option<String>,
    pub secret_key: Option<Secret<String>>,
    pub publishable_key: Option<String>,
    pub webhook_secret: Option<Secret<String>>,
}

/// The keys of a new merchant: shown once, then only their hashes remain (but the webhook
/// secret, which signs webhooks).
#[derive(Debug, Clone)]
pub struct IssuedKeys {
    pub secret_key: Secret<String>,
    pub publishable_key: String,
    pub webhook_secret: Secret<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    #[error("{0} must start with {1}")]
    BadPrefix(&'static str, &'static str),
    #[error("merchant name must be 1..=127 characters")]
    BadName,
    #[error("a merchant with this id or key already exists")]
    Exists,
    /// The random source or the store failed.
    #[error("{0}")]
    Other(String),
}

fn given_or_generated(
    given: Option<Secret<String>>,
    name: &'static str,
    prefix: &'static str,
    generate: impl FnOnce() -> Result<Secret<String>, crate::model::RandomError>,
) -> Result<Secret<String>, OnboardError> {
    match given {
        Some(key) if key.expose().starts_with(prefix) && key.expose().len() > prefix.len() => {
            Ok(key)
        }
        Some(_) => Err(OnboardError::BadPrefix(name, prefix)),
        None => generate().map_err(|e| OnboardError::Other(e.to_string())),
    }
}

impl<B: Backends> Ferrypay<B> {
    /// Creates a merchant and returns it with its keys (the only time the keys are shown).
    pub async fn onboard_merchant(
        &self,
        new: NewMerchant,
    ) -> Result<(Merchant, IssuedKeys), OnboardError> {
        let name_len = new.name.chars().count();
        if name_len == 0 || name_len > 127 || new.name.chars().any(char::is_control) {
            return Err(OnboardError::BadName);
        }
        let secret_key = given_or_generated(
            new.secret_key,
            "secret key",
            SECRET_KEY_PREFIX,
            generate_secret_key,
        )?;
        let publishable_key = given_or_generated(
            new.publishable_key.map(Secret::new),
            "publishable key",
            PUBLISHABLE_KEY_PREFIX,
            || generate_publishable_key().map(Secret::new),
        )?;
        let webhook_secret = given_or_generated(
            new.webhook_secret,
            "webhook secret",
            WEBHOOK_SECRET_PREFIX,
            generate_webhook_secret,
        )?;
        let id = MerchantId::generate().map_err(|e| OnboardError::Other(e.to_string()))?;
        let merchant = Merchant {
            id,
            name: new.name,
            secret_key_hash: hash_api_key(secret_key.expose()),
            publishable_key_hash: hash_api_key(publishable_key.expose()),
            webhook_secret: webhook_secret.clone(),
            notify_url: new.notify_url,
            status: MerchantStatus::Active,
            created_at: self.clock.now(),
        };
        self.store
            .insert_merchant(&merchant)
            .await
            .map_err(|e| match e {
                InsertMerchantError::Exists => OnboardError::Exists,
                InsertMerchantError::Store(e) => OnboardError::Other(e.0),
            })?;
        let keys = IssuedKeys {
            secret_key,
            publishable_key: publishable_key.expose().clone(),
            webhook_secret,
        };
        Ok((merchant, keys))
    }

    /// The merchant behind a secret API key, if it may use the server endpoints now.
    /// Counts the request against the merchant's per-minute limit.
    pub async fn authenticate(&self, key: Option<&str>) -> Result<Merchant, ApiError> {
        let key = key
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::MissingApiKey)?;
        let (merchant, kind) = self
            .store
            .merchant_by_key(&hash_api_key(key))
            .await?
            .ok_or(ApiError::InvalidApiKey)?;
        if kind != KeyKind::Secret {
            return Err(ApiError::PermissionDenied);
        }
        if merchant.status != MerchantStatus::Active {
            return Err(ApiError::ProductDisabled);
        }
        self.check_rate_limit(&merchant).await?;
        Ok(merchant)
    }

    async fn check_rate_limit(&self, merchant: &Merchant) -> Result<(), ApiError> {
        let Some(limit) = self.config.rate_limit_per_minute else {
            return Ok(());
        };
        let now = self.clock.now().unix();
        let window_start = now - now.rem_euclid(60);
        let window_end = crate::model::Timestamp::from_unix(window_start + 60);
        let bucket = format!("rate#{}#{window_start}", merchant.id);
        let count = self.store.count_in_window(&bucket, window_end).await?;
        if count > u64::from(limit) {
            let retry_after_secs = u64::try_from(window_start + 60 - now).unwrap_or(1).max(1);
            return Err(ApiError::RateLimited { retry_after_secs });
        }
        Ok(())
    }
}
