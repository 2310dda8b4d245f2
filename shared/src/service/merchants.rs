//! Merchants: onboarding and API-key authentication.

use super::{Backends, Ferrypay};
use crate::{
    api::{orders::notify_url_acceptable, ApiError},
    model::{
        Clock, KeyKind, Merchant, MerchantId, MerchantStatus, PaymentLinkSettings, RetiringSecret,
        Secret,
    },
    sign::{
        generate_publishable_key, generate_secret_key, generate_webhook_secret, hash_api_key,
        webhook::webhook_key, PUBLISHABLE_KEY_PREFIX, SECRET_KEY_PREFIX, WEBHOOK_SECRET_PREFIX,
    },
    store::{InsertMerchantError, Store, StoreError, UpdateMerchantError},
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
    #[error("notify URL must be an https URL without credentials")]
    BadNotifyUrl,
    #[error("webhook secret must be whsec_ followed by base64")]
    BadWebhookSecret,
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

/// Merchant administration (onboarding and operator actions), over any store.
pub struct MerchantAdmin<'a, S> {
    store: &'a S,
    clock: &'a dyn Clock,
    /// Accept `http://` notify URLs (dev tables only).
    allow_http_notify_urls: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no merchant {0}")]
    NotFound(MerchantId),
    #[error("{0}")]
    Invalid(String),
    #[error("storage failure: {0}")]
    Store(String),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Store(e.0)
    }
}

impl<'a, S: Store> MerchantAdmin<'a, S> {
    pub fn new(store: &'a S, clock: &'a dyn Clock, allow_http_notify_urls: bool) -> Self {
        MerchantAdmin {
            store,
            clock,
            allow_http_notify_urls,
        }
    }

    /// Creates a merchant and returns it with its keys (the only time the keys are shown).
    pub async fn onboard(&self, new: NewMerchant) -> Result<(Merchant, IssuedKeys), OnboardError> {
        let name_len = new.name.chars().count();
        if name_len == 0 || name_len > 127 || new.name.chars().any(char::is_control) {
            return Err(OnboardError::BadName);
        }
        if let Some(url) = &new.notify_url {
            if !notify_url_acceptable(url, self.allow_http_notify_urls) {
                return Err(OnboardError::BadNotifyUrl);
            }
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
        // It must be usable as a Standard Webhooks key (base64 after the prefix).
        webhook_key(webhook_secret.expose()).map_err(|_| OnboardError::BadWebhookSecret)?;
        let id = MerchantId::generate().map_err(|e| OnboardError::Other(e.to_string()))?;
        let merchant = Merchant {
            id,
            name: new.name,
            secret_key_hash: hash_api_key(secret_key.expose()),
            publishable_key_hash: hash_api_key(publishable_key.expose()),
            webhook_secret: webhook_secret.clone(),
            previous_webhook_secret: None,
            notify_url: new.notify_url,
            status: MerchantStatus::Active,
            created_at: self.clock.now(),
            payment_links: PaymentLinkSettings::default(),
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

    pub async fn list(&self) -> Result<Vec<Merchant>, AdminError> {
        Ok(self.store.list_merchants().await?)
    }

    pub async fn get(&self, id: &MerchantId) -> Result<Merchant, AdminError> {
        self.store
            .get_merchant(id)
            .await?
            .ok_or_else(|| AdminError::NotFound(id.clone()))
    }

    async fn save(&self, merchant: Merchant) -> Result<Merchant, AdminError> {
        match self.store.update_merchant(&merchant).await {
            Ok(()) => Ok(merchant),
            Err(UpdateMerchantError::NotFound) => Err(AdminError::NotFound(merchant.id)),
            Err(UpdateMerchantError::KeyTaken) => Err(AdminError::Invalid(
                "the new key collides with another merchant's".into(),
            )),
            Err(UpdateMerchantError::Store(e)) => Err(e.into()),
        }
    }

    /// Enables or disables a merchant: a disabled one gets `403 Product disabled` at once.
    pub async fn set_status(
        &self,
        id: &MerchantId,
        status: MerchantStatus,
    ) -> Result<Merchant, AdminError> {
        let merchant = self.get(id).await?;
        self.save(Merchant { status, ..merchant }).await
    }

    /// Sets (or with `None` clears) the default notify URL.
    pub async fn set_notify_url(
        &self,
        id: &MerchantId,
        url: Option<String>,
    ) -> Result<Merchant, AdminError> {
        if let Some(url) = &url {
            if !notify_url_acceptable(url, self.allow_http_notify_urls) {
                return Err(AdminError::Invalid(format!(
                    "{url:?} is not an https URL without credentials"
                )));
            }
        }
        let merchant = self.get(id).await?;
        self.save(Merchant {
            notify_url: url,
            ..merchant
        })
        .await
    }

    /// Replaces one of the merchant's API keys; the old one stops working at once. Returns the
    /// new key: the only time it is shown.
    pub async fn rotate_key(
        &self,
        id: &MerchantId,
        kind: KeyKind,
    ) -> Result<(Merchant, Secret<String>), AdminError> {
        let merchant = self.get(id).await?;
        let random = |e: crate::model::RandomError| AdminError::Store(e.to_string());
        let (key, rotated) = match kind {
            KeyKind::Secret => {
                let key = generate_secret_key().map_err(random)?;
                let hash = hash_api_key(key.expose());
                (
                    key,
                    Merchant {
                        secret_key_hash: hash,
                        ..merchant
                    },
                )
            }
            KeyKind::Publishable => {
                let key = Secret::new(generate_publishable_key().map_err(random)?);
                let hash = hash_api_key(key.expose());
                (
                    key,
                    Merchant {
                        publishable_key_hash: hash,
                        ..merchant
                    },
                )
            }
        };
        Ok((self.save(rotated).await?, key))
    }

    /// Replaces the webhook secret. For `overlap` the old secret keeps signing too (a second
    /// signature in `webhook-signature`), so the merchant can deploy the new one without
    /// rejecting a webhook; a rotation during an overlap ends the earlier one. Returns the new
    /// secret.
    pub async fn rotate_webhook_secret(
        &self,
        id: &MerchantId,
        overlap: std::time::Duration,
    ) -> Result<(Merchant, Secret<String>), AdminError> {
        let merchant = self.get(id).await?;
        let secret = generate_webhook_secret().map_err(|e| AdminError::Store(e.to_string()))?;
        let overlap_secs = i64::try_from(overlap.as_secs()).unwrap_or(i64::MAX);
        let previous = (overlap_secs > 0).then(|| RetiringSecret {
            secret: merchant.webhook_secret.clone(),
            until: self.clock.now().plus_secs(overlap_secs),
        });
        let rotated = Merchant {
            webhook_secret: secret.clone(),
            previous_webhook_secret: previous,
            ..merchant
        };
        Ok((self.save(rotated).await?, secret))
    }
}

impl<B: Backends> Ferrypay<B> {
    /// Creates a merchant and returns it with its keys (the only time the keys are shown).
    pub async fn onboard_merchant(
        &self,
        new: NewMerchant,
    ) -> Result<(Merchant, IssuedKeys), OnboardError> {
        MerchantAdmin::new(
            &self.store,
            &*self.clock,
            self.config.allow_http_notify_urls,
        )
        .onboard(new)
        .await
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
