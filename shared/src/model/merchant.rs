//! Merchants: who may create orders, and with which keys.

use serde::{Deserialize, Serialize};

use super::{
    Cidr, MerchantId, MerchantSecret, NotifyEvents, PaymentLinkSettings, SecretSealed, Timestamp,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MerchantStatus {
    Active,
    Disabled,
}

/// Which of a merchant's two keys was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// `sk_...`: for the merchant's server only.
    Secret,
    /// `pk_...`: may appear in public links (jump-pay); never accepted on server endpoints.
    Publishable,
}

/// The hex SHA-256 of an API key. Keys themselves are never stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyHash(String);

impl KeyHash {
    /// Wraps a hash read back from storage.
    pub fn from_hex(hex: impl Into<String>) -> Self {
        KeyHash(hex.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    pub id: MerchantId,
    /// Shown to payers, and the default order description.
    pub name: String,
    pub secret_key_hash: KeyHash,
    pub publishable_key_hash: KeyHash,
    /// `whsec_...`: signs this merchant's webhooks, so it is kept usable (not hashed): sealed at
    /// rest, open only where webhooks are signed (and for the operator).
    pub webhook_secret: MerchantSecret,
    /// The webhook secret replaced by the last rotation, still signing (as a second
    /// signature) until its `until`, so the merchant's receiver can switch over.
    pub previous_webhook_secret: Option<RetiringSecret>,
    pub notify_url: Option<String>,
    /// The webhook events the notify URL receives: `order.paid`, and the others only if the
    /// merchant subscribed. Merchants stored before subscriptions existed get `order.paid` only.
    #[serde(default)]
    pub notify_events: NotifyEvents,
    pub status: MerchantStatus,
    pub created_at: Timestamp,
    /// What the public jump-pay gateway accepts for this merchant. Merchants stored before
    /// payment links existed read back with the defaults (no secret, unsigned links, any host).
    #[serde(default)]
    pub payment_links: PaymentLinkSettings,
    /// Where requests with this merchant's secret key may come from; empty: anywhere.
    #[serde(default)]
    pub ip_allowlist: Vec<Cidr>,
    /// How many times the store has rewritten the merchant (0 for one never updated): an update
    /// applies only if nobody else's came first, so two operators' updates from the same read
    /// cannot both land.
    #[serde(default)]
    pub version: u64,
}

/// A replaced webhook secret and the end of its overlap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiringSecret {
    pub secret: MerchantSecret,
    pub until: Timestamp,
}

impl Merchant {
    /// The secrets that sign a webhook sent at `now`: the current one, and during a rotation's
    /// overlap the previous one too. An error where they are sealed (a process without the
    /// webhook data key).
    pub fn webhook_signing_secrets(&self, now: Timestamp) -> Result<Vec<&str>, SecretSealed> {
        let mut secrets = vec![self.webhook_secret.expose()?];
        if let Some(previous) = &self.previous_webhook_secret {
            if now < previous.until {
                secrets.push(previous.secret.expose()?);
            }
        }
        Ok(secrets)
    }
}
