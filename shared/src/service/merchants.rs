//! Merchants: onboarding, operator actions and API-key authentication.

use std::net::IpAddr;

use super::{error::Error, Backends, Ferrypay};
use crate::{
    model::{
        address_allowed, check_characters, normalize_return_host, Cidr, Clock, KeyKind, Merchant,
        MerchantId, MerchantStatus, NotifyEvents, NotifyUrl, PaymentLinkSettings, RandomError,
        RetiringSecret, Secret, MAX_ALLOWLIST_ENTRIES, MAX_RETURN_HOSTS,
    },
    sign::{
        generate_link_signing_secret, generate_publishable_key, generate_secret_key,
        generate_webhook_secret, hash_api_key, webhook::webhook_key, PUBLISHABLE_KEY_PREFIX,
        SECRET_KEY_PREFIX, WEBHOOK_SECRET_PREFIX,
    },
    store::{InsertMerchantError, MerchantStore, StoreError, UpdateMerchantError},
};

/// A merchant to onboard. Keys left `None` are generated; given ones must carry their prefix.
#[derive(Debug, Clone, Default)]
pub struct NewMerchant {
    pub name: String,
    pub notify_url: Option<String>,
    pub secret_key: Option<Secret<String>>,
    pub publishable_key: Option<String>,
    pub webhook_secret: Option<Secret<String>>,
    /// The webhook events to subscribe to; `None`: `order.paid` only.
    pub notify_events: Option<NotifyEvents>,
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
    #[error("merchant name must be 1..=127 characters, none a control or format character")]
    BadName,
    #[error("notify URL must be an https URL without credentials")]
    BadNotifyUrl,
    #[error("webhook secret must be whsec_ followed by base64")]
    BadWebhookSecret,
    #[error("a merchant with this id or key already exists")]
    Exists,
    #[error("storage failure")]
    Store(#[from] StoreError),
    #[error("the random source failed")]
    Random(#[from] RandomError),
}

fn given_or_generated(
    given: Option<Secret<String>>,
    name: &'static str,
    prefix: &'static str,
    generate: impl FnOnce() -> Result<Secret<String>, RandomError>,
) -> Result<Secret<String>, OnboardError> {
    match given {
        Some(key) if key.expose().starts_with(prefix) && key.expose().len() > prefix.len() => {
            Ok(key)
        }
        Some(_) => Err(OnboardError::BadPrefix(name, prefix)),
        None => Ok(generate()?),
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
    /// Another update of the merchant landed between this one's read and write.
    #[error("merchant {0} was changed by another update meanwhile; nothing was written: run the command again")]
    Conflict(MerchantId),
    #[error("{0}")]
    Invalid(String),
    #[error("storage failure")]
    Store(#[from] StoreError),
    #[error("the random source failed")]
    Random(#[from] RandomError),
}

impl<'a, S: MerchantStore> MerchantAdmin<'a, S> {
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
        // The name is shown on payers' pages: no control or format (bidi, zero-width) character.
        if name_len == 0 || name_len > 127 || check_characters(&new.name).is_err() {
            return Err(OnboardError::BadName);
        }
        if let Some(url) = &new.notify_url {
            if NotifyUrl::parse(url, self.allow_http_notify_urls).is_err() {
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
        let id = MerchantId::generate()?;
        let merchant = Merchant {
            id,
            name: new.name,
            secret_key_hash: hash_api_key(secret_key.expose()),
            publishable_key_hash: hash_api_key(publishable_key.expose()),
            webhook_secret: webhook_secret.clone().into(),
            previous_webhook_secret: None,
            notify_url: new.notify_url,
            notify_events: new.notify_events.unwrap_or_default(),
            status: MerchantStatus::Active,
            created_at: self.clock.now(),
            payment_links: PaymentLinkSettings::default(),
            ip_allowlist: Vec::new(),
            version: 0,
        };
        self.store
            .insert_merchant(&merchant)
            .await
            .map_err(|e| match e {
                InsertMerchantError::Exists => OnboardError::Exists,
                InsertMerchantError::Store(e) => OnboardError::Store(e),
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

    /// Writes the merchant if nobody else's update came after `merchant` was read.
    async fn save(&self, merchant: Merchant) -> Result<Merchant, AdminError> {
        match self.store.update_merchant(&merchant).await {
            Ok(written) => Ok(written),
            Err(UpdateMerchantError::NotFound) => Err(AdminError::NotFound(merchant.id)),
            Err(UpdateMerchantError::Conflict) => Err(AdminError::Conflict(merchant.id)),
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
            if NotifyUrl::parse(url, self.allow_http_notify_urls).is_err() {
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

        let (key, rotated) = match kind {
            KeyKind::Secret => {
                let key = generate_secret_key()?;
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
                let key = Secret::new(generate_publishable_key()?);
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
        let secret = generate_webhook_secret()?;
        let overlap_secs = i64::try_from(overlap.as_secs()).unwrap_or(i64::MAX);
        let previous = (overlap_secs > 0).then(|| RetiringSecret {
            secret: merchant.webhook_secret.clone(),
            until: self.clock.now().plus_secs(overlap_secs),
        });
        let rotated = Merchant {
            webhook_secret: secret.clone().into(),
            previous_webhook_secret: previous,
            ..merchant
        };
        Ok((self.save(rotated).await?, secret))
    }

    /// Issues a new payment-link signing secret (`lsk_...`), replacing any previous one at
    /// once: links signed with the old secret stop working (no overlap as for webhook secrets;
    /// the merchant re-signs the links still in use). Returns the new secret: the only time it
    /// is shown.
    pub async fn rotate_link_secret(
        &self,
        id: &MerchantId,
    ) -> Result<(Merchant, Secret<String>), AdminError> {
        let merchant = self.get(id).await?;
        let secret = generate_link_signing_secret()?;
        let rotated = Merchant {
            payment_links: PaymentLinkSettings {
                signing_secret: Some(secret.clone().into()),
                ..merchant.payment_links.clone()
            },
            ..merchant
        };
        Ok((self.save(rotated).await?, secret))
    }

    /// Sets which payment links the gateway honours; `None` leaves a setting as it is. Return
    /// hosts are normalized ([`normalize_return_host`]) and deduplicated, at most
    /// [`MAX_RETURN_HOSTS`]; an empty list allows any host. Requiring signed links needs a
    /// signing secret first, or every link would be refused.
    pub async fn set_link_policy(
        &self,
        id: &MerchantId,
        require_signed: Option<bool>,
        allowed_return_hosts: Option<Vec<String>>,
    ) -> Result<Merchant, AdminError> {
        let hosts = allowed_return_hosts
            .map(|hosts| normalize_return_hosts(&hosts))
            .transpose()?;
        let merchant = self.get(id).await?;
        let mut links = merchant.payment_links.clone();
        if let Some(require_signed) = require_signed {
            if require_signed && links.signing_secret.is_none() {
                return Err(AdminError::Invalid(format!(
                    "merchant {id} has no link signing secret to require: run rotate-link-secret first"
                )));
            }
            links.require_signed = require_signed;
        }
        if let Some(hosts) = hosts {
            links.allowed_return_hosts = hosts;
        }
        self.save(Merchant {
            payment_links: links,
            ..merchant
        })
        .await
    }

    /// Sets the webhook events the merchant's notify URL receives (`order.paid` always).
    pub async fn set_notify_events(
        &self,
        id: &MerchantId,
        events: NotifyEvents,
    ) -> Result<Merchant, AdminError> {
        let merchant = self.get(id).await?;
        self.save(Merchant {
            notify_events: events,
            ..merchant
        })
        .await
    }

    /// Changes where the merchant's secret key may be used from ([`AllowlistChange`]); at most
    /// [`MAX_ALLOWLIST_ENTRIES`] ranges, kept in the order added, without duplicates.
    pub async fn change_ip_allowlist(
        &self,
        id: &MerchantId,
        change: AllowlistChange,
    ) -> Result<Merchant, AdminError> {
        let merchant = self.get(id).await?;
        let mut list = merchant.ip_allowlist.clone();
        match change {
            AllowlistChange::Add(ranges) => {
                for range in ranges {
                    if !list.contains(&range) {
                        list.push(range);
                    }
                }
                if list.len() > MAX_ALLOWLIST_ENTRIES {
                    return Err(AdminError::Invalid(format!(
                        "at most {MAX_ALLOWLIST_ENTRIES} ranges (would be {})",
                        list.len()
                    )));
                }
            }
            AllowlistChange::Remove(ranges) => {
                if let Some(missing) = ranges.iter().find(|r| !list.contains(r)) {
                    return Err(AdminError::Invalid(format!(
                        "{missing} is not in merchant {id}'s allowlist"
                    )));
                }
                list.retain(|r| !ranges.contains(r));
            }
            AllowlistChange::Clear => list.clear(),
        }
        self.save(Merchant {
            ip_allowlist: list,
            ..merchant
        })
        .await
    }

    /// Rewrites every merchant as it is, so each secret is stored sealed (items from before
    /// sealing held them in plain text; rewriting a sealed one seals it afresh). Returns how
    /// many merchants were rewritten; stops at the first failure (run it again: it is
    /// idempotent).
    pub async fn reseal_all(&self) -> Result<usize, AdminError> {
        let merchants = self.store.list_merchants().await?;
        let count = merchants.len();
        for merchant in merchants {
            self.save(merchant).await?;
        }
        Ok(count)
    }
}

/// A change to a merchant's IP allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowlistChange {
    Add(Vec<Cidr>),
    Remove(Vec<Cidr>),
    /// An empty list: every address may use the key again.
    Clear,
}

/// Each host normalized, duplicates (after normalizing) dropped, first occurrence first.
fn normalize_return_hosts(raw: &[String]) -> Result<Vec<String>, AdminError> {
    let mut hosts: Vec<String> = Vec::with_capacity(raw.len());
    for entry in raw {
        let host = normalize_return_host(entry).map_err(AdminError::Invalid)?;
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    if hosts.len() > MAX_RETURN_HOSTS {
        return Err(AdminError::Invalid(format!(
            "at most {MAX_RETURN_HOSTS} return hosts (got {}); a *.domain entry covers many",
            hosts.len()
        )));
    }
    Ok(hosts)
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

    /// The merchant behind a secret API key, if it may use the server endpoints now, from
    /// `client` (the request's address, `None` when unknown). Counts the request against the
    /// merchant's API bucket (`service::limits`).
    pub async fn authenticate(
        &self,
        key: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Merchant, Error> {
        let key = key
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(Error::MissingApiKey)?;
        let (merchant, kind) = self
            .store
            .merchant_by_key(&hash_api_key(key))
            .await?
            .ok_or(Error::InvalidApiKey)?;
        // First, so a request from outside the list learns nothing more about the key (not
        // even its kind) and never spends the merchant's rate limit.
        if !address_allowed(&merchant.ip_allowlist, client) {
            return Err(Error::IpNotAllowed);
        }
        if kind != KeyKind::Secret {
            return Err(Error::PermissionDenied);
        }
        if merchant.status != MerchantStatus::Active {
            return Err(Error::ProductDisabled);
        }
        self.check_api_limit(&merchant).await?;
        Ok(merchant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{ManualClock, Timestamp},
        sign::LINK_SECRET_PREFIX,
        store::MemoryStore,
    };

    fn clock() -> ManualClock {
        ManualClock::new(Timestamp::from_unix(crate::testing::START))
    }

    async fn onboarded(admin: &MerchantAdmin<'_, MemoryStore>) -> Merchant {
        let new = NewMerchant {
            name: "Tea House".into(),
            ..NewMerchant::default()
        };
        admin.onboard(new).await.unwrap().0
    }

    fn hosts(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|h| h.to_string()).collect())
    }

    #[tokio::test]
    async fn names_with_control_or_format_characters_are_refused() {
        let (store, clock) = (MemoryStore::new(), clock());
        let admin = MerchantAdmin::new(&store, &clock, false);
        for name in ["", "Tea\nHouse", "Tea\u{202e}esuoH", "Tea\u{200b}House"] {
            let new = NewMerchant {
                name: name.into(),
                ..NewMerchant::default()
            };
            assert!(
                matches!(admin.onboard(new).await, Err(OnboardError::BadName)),
                "{name:?}"
            );
        }
        let new = NewMerchant {
            name: "茶馆 Tea House".into(),
            ..NewMerchant::default()
        };
        admin.onboard(new).await.unwrap();
    }

    #[tokio::test]
    async fn new_merchants_start_with_default_link_settings() {
        let (store, clock) = (MemoryStore::new(), clock());
        let admin = MerchantAdmin::new(&store, &clock, false);
        let m = onboarded(&admin).await;
        assert_eq!(m.payment_links, PaymentLinkSettings::default());
        assert_eq!(admin.get(&m.id).await.unwrap(), m);
    }

    #[tokio::test]
    async fn a_link_secret_rotation_replaces_the_old_secret_and_keeps_the_policy() {
        let (store, clock) = (MemoryStore::new(), clock());
        let admin = MerchantAdmin::new(&store, &clock, false);
        let m = onboarded(&admin).await;
        let (m, first) = admin.rotate_link_secret(&m.id).await.unwrap();
        assert!(first.expose().starts_with(LINK_SECRET_PREFIX));
        assert_eq!(m.payment_links.signing_secret, Some(first.clone().into()));
        admin
            .set_link_policy(&m.id, Some(true), hosts(&["shop.example"]))
            .await
            .unwrap();

        let (m, second) = admin.rotate_link_secret(&m.id).await.unwrap();
        assert_ne!(second, first);
        let stored = admin.get(&m.id).await.unwrap();
        assert_eq!(stored, m);
        assert_eq!(stored.payment_links.signing_secret, Some(second.into()));
        assert!(stored.payment_links.require_signed);
        assert_eq!(stored.payment_links.allowed_return_hosts, ["shop.example"]);
        // Nothing else about the merchant changed.
        assert_eq!(stored.webhook_secret, m.webhook_secret);
        assert_eq!(stored.secret_key_hash, m.secret_key_hash);

        let unknown = MerchantId::new("mch_nobody");
        assert!(matches!(
            admin.rotate_link_secret(&unknown).await,
            Err(AdminError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn requiring_signed_links_needs_a_signing_secret() {
        let (store, clock) = (MemoryStore::new(), clock());
        let admin = MerchantAdmin::new(&store, &clock, false);
        let m = onboarded(&admin).await;
        match admin.set_link_policy(&m.id, Some(true), None).await {
            Err(AdminError::Invalid(why)) => assert!(why.contains("rotate-link-secret"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(admin.get(&m.id).await.unwrap(), m, "nothing changed");
        // Allowing unsigned links needs nothing.
        admin
            .set_link_policy(&m.id, Some(false), None)
            .await
            .unwrap();

        admin.rotate_link_secret(&m.id).await.unwrap();
        let signed = admin
            .set_link_policy(&m.id, Some(true), None)
            .await
            .unwrap();
        assert!(signed.payment_links.require_signed);
        let unsigned = admin
            .set_link_policy(&m.id, Some(false), None)
            .await
            .unwrap();
        assert!(!unsigned.payment_links.require_signed);
        assert!(
            unsigned.payment_links.signing_secret.is_some(),
            "the secret stays"
        );
    }

    #[tokio::test]
    async fn return_hosts_are_normalized_deduplicated_and_limited() {
        let (store, clock) = (MemoryStore::new(), clock());
        let admin = MerchantAdmin::new(&store, &clock, false);
        let m = onboarded(&admin).await;
        let set = admin
            .set_link_policy(
                &m.id,
                None,
                hosts(&[
                    "Shop.Example",
                    "*.pay.example",
                    "shop.example.",
                    "203.0.113.7",
                ]),
            )
            .await
            .unwrap();
        assert_eq!(
            set.payment_links.allowed_return_hosts,
            ["shop.example", "*.pay.example", "203.0.113.7"]
        );
        assert!(!set.payment_links.require_signed, "left as it was");
        assert_eq!(admin.get(&m.id).await.unwrap(), set);

        // An invalid entry refuses the whole list, naming the entry.
        for bad in ["https://shop.example", "*.example", "shop.example:443", ""] {
            match admin
                .set_link_policy(&m.id, None, hosts(&["ok.example", bad]))
                .await
            {
                Err(AdminError::Invalid(why)) => {
                    assert!(why.contains(&format!("{bad:?}")), "{why}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // 20 distinct hosts (duplicates do not count), not 21.
        let mut twenty: Vec<String> = (0..20).map(|i| format!("h{i}.example")).collect();
        twenty.push("H0.example".into());
        let set = admin
            .set_link_policy(&m.id, None, Some(twenty.clone()))
            .await
            .unwrap();
        assert_eq!(set.payment_links.allowed_return_hosts.len(), 20);
        twenty.push("h20.example".into());
        match admin.set_link_policy(&m.id, None, Some(twenty)).await {
            Err(AdminError::Invalid(why)) => assert!(why.contains("at most 20"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            admin.get(&m.id).await.unwrap(),
            set,
            "refusals change nothing"
        );

        // An empty list allows any host again.
        let any = admin
            .set_link_policy(&m.id, None, Some(Vec::new()))
            .await
            .unwrap();
        assert!(any.payment_links.allowed_return_hosts.is_empty());
        assert!(matches!(
            admin
                .set_link_policy(&MerchantId::new("mch_nobody"), Some(false), None)
                .await,
            Err(AdminError::NotFound(_))
        ));
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
    }

    #[tokio::test]
    async fn two_updates_from_the_same_read_cannot_both_land() {
        let (store, clock) = (MemoryStore::new(), clock());
        let admin = MerchantAdmin::new(&store, &clock, false);
        let m = onboarded(&admin).await;
        // Two rotate-key runs that read the merchant at the same moment.
        let first = Merchant {
            secret_key_hash: crate::sign::hash_api_key("sk_first"),
            ..m.clone()
        };
        let second = Merchant {
            secret_key_hash: crate::sign::hash_api_key("sk_second"),
            ..m.clone()
        };
        let written = store.update_merchant(&first).await.unwrap();
        assert_eq!(written.version, m.version + 1);
        assert!(matches!(
            store.update_merchant(&second).await,
            Err(UpdateMerchantError::Conflict)
        ));
        // The winner's key works, the loser's key and the replaced one do not.
        let by = |key: &'static str| {
            let store = &store;
            async move {
                store
                    .merchant_by_key(&crate::sign::hash_api_key(key))
                    .await
                    .unwrap()
            }
        };
        assert!(by("sk_first").await.is_some());
        assert!(
            by("sk_second").await.is_none(),
            "no orphan key of the loser"
        );
        assert_eq!(admin.get(&m.id).await.unwrap(), written);

        // Through the admin, a stale update says to retry.
        match admin.save(m.clone()).await {
            Err(AdminError::Conflict(id)) => assert_eq!(id, m.id),
            other => panic!("{other:?}"),
        }
        let text = AdminError::Conflict(m.id.clone()).to_string();
        assert!(text.contains("run the command again"), "{text}");
    }

    #[tokio::test]
    async fn the_ip_allowlist_is_added_to_removed_from_and_cleared() {
        let (store, clock) = (MemoryStore::new(), clock());
        let admin = MerchantAdmin::new(&store, &clock, false);
        let m = onboarded(&admin).await;
        assert!(m.ip_allowlist.is_empty());
        let add = |list: &[&str]| AllowlistChange::Add(cidrs(list));
        let set = admin
            .change_ip_allowlist(&m.id, add(&["203.0.113.0/24", "2001:db8::/32"]))
            .await
            .unwrap();
        assert_eq!(
            set.ip_allowlist,
            cidrs(&["203.0.113.0/24", "2001:db8::/32"])
        );
        // Adding one already there (in another spelling) changes nothing.
        let set = admin
            .change_ip_allowlist(&m.id, add(&["203.0.113.9/24", "198.51.100.7"]))
            .await
            .unwrap();
        assert_eq!(
            set.ip_allowlist,
            cidrs(&["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"])
        );
        let removed = admin
            .change_ip_allowlist(&m.id, AllowlistChange::Remove(cidrs(&["2001:db8::/32"])))
            .await
            .unwrap();
        assert_eq!(
            removed.ip_allowlist,
            cidrs(&["203.0.113.0/24", "198.51.100.7"])
        );
        match admin
            .change_ip_allowlist(&m.id, AllowlistChange::Remove(cidrs(&["192.0.2.0/24"])))
            .await
        {
            Err(AdminError::Invalid(why)) => assert!(why.contains("192.0.2.0/24"), "{why}"),
            other => panic!("{other:?}"),
        }
        let many: Vec<String> = (0..=MAX_ALLOWLIST_ENTRIES)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            admin.change_ip_allowlist(&m.id, add(&many)).await,
            Err(AdminError::Invalid(_))
        ));
        assert_eq!(
            admin.get(&m.id).await.unwrap(),
            removed,
            "refusals change nothing"
        );
        let cleared = admin
            .change_ip_allowlist(&m.id, AllowlistChange::Clear)
            .await
            .unwrap();
        assert!(cleared.ip_allowlist.is_empty());
    }

    #[tokio::test]
    async fn outside_the_allowlist_a_key_is_refused_first_and_spends_no_rate_limit() {
        use crate::testing::{
            app_with_clock, clock_at_start, onboard_test_merchant, TEST_PUBLISHABLE_KEY,
            TEST_SECRET_KEY,
        };
        let mut app = app_with_clock(clock_at_start());
        app.config.rate_limit_per_minute = Some(2);
        let (m, _) = onboard_test_merchant(&app, "Allowlisted").await;
        let ip = |text: &str| Some(text.parse::<IpAddr>().unwrap());
        // Empty: every address (and an unknown one) may use the key.
        app.authenticate(Some(TEST_SECRET_KEY), None).await.unwrap();
        MerchantAdmin::new(&app.store, &*app.clock, false)
            .change_ip_allowlist(
                &m.id,
                AllowlistChange::Add(cidrs(&["203.0.113.0/24", "2001:db8::/32"])),
            )
            .await
            .unwrap();
        for _ in 0..5 {
            for outside in [ip("198.51.100.1"), ip("2001:db9::1"), None] {
                assert!(matches!(
                    app.authenticate(Some(TEST_SECRET_KEY), outside).await,
                    Err(Error::IpNotAllowed)
                ));
            }
            // The publishable key from outside learns nothing of its kind either.
            assert!(matches!(
                app.authenticate(Some(TEST_PUBLISHABLE_KEY), ip("198.51.100.1"))
                    .await,
                Err(Error::IpNotAllowed)
            ));
        }
        // None of those counted: the limit of 2 (one spent above) still has one left.
        app.authenticate(Some(TEST_SECRET_KEY), ip("203.0.113.5"))
            .await
            .unwrap();
        assert!(matches!(
            app.authenticate(Some(TEST_SECRET_KEY), ip("2001:db8::7"))
                .await,
            Err(Error::RateLimited { .. })
        ));
        // An unknown key is still just unknown.
        assert!(matches!(
            app.authenticate(Some("sk_nobody"), ip("198.51.100.1"))
                .await,
            Err(Error::InvalidApiKey)
        ));
    }
}
