//! Merchant records and their key items to and from the model, their secrets sealed.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{
    item::{corrupt, insert_opt, n, s, Item, Reader},
    schema::{ITEM_TYPE, PK, SK, VERSION},
};
use crate::{
    model::{
        Cidr, KeyHash, KeyKind, Merchant, MerchantId, MerchantSecret, MerchantStatus, NotifyEvents,
        PaymentLinkSettings, RetiringSecret, SecretPurpose, Timestamp, WebhookEvent,
    },
    seal::{self, DataKey},
    store::StoreError,
};

/// A merchant's payment-link settings, each absent when it has its default.
pub(super) const LINK_SIGNING_SECRET: &str = "link_signing_secret";
const LINK_REQUIRE_SIGNED: &str = "link_require_signed";
const LINK_RETURN_HOSTS: &str = "link_return_hosts";

fn merchant_status_str(status: MerchantStatus) -> &'static str {
    match status {
        MerchantStatus::Active => "active",
        MerchantStatus::Disabled => "disabled",
    }
}

/// A merchant's secret attributes, and the purpose (data key) each is sealed with.
pub(super) const WEBHOOK_SECRET: &str = "webhook_secret";
pub(super) const PREVIOUS_WEBHOOK_SECRET: &str = "previous_webhook_secret";
pub(super) const SECRET_ATTRIBUTES: [(&str, SecretPurpose); 3] = [
    (WEBHOOK_SECRET, SecretPurpose::Webhook),
    (PREVIOUS_WEBHOOK_SECRET, SecretPurpose::Webhook),
    (LINK_SIGNING_SECRET, SecretPurpose::Link),
];
const IP_ALLOWLIST: &str = "ip_allowlist";
const NOTIFY_EVENTS: &str = "notify_events";

/// What a store may do with each purpose's secrets for one read or write.
#[derive(Clone, Copy)]
pub(super) enum Access<'a> {
    /// Secrets of this purpose read as [`MerchantSecret::Sealed`] and cannot be written.
    Denied,
    /// They open (and seal) with this key; `None` only where no value of the purpose is sealed
    /// (plain values from before sealing still read).
    Allowed(Option<&'a DataKey>),
}

#[derive(Clone, Copy)]
pub(super) struct Keys<'a> {
    pub(super) webhook: Access<'a>,
    pub(super) link: Access<'a>,
}

impl<'a> Keys<'a> {
    pub(super) fn access(&self, purpose: SecretPurpose) -> Access<'a> {
        match purpose {
            SecretPurpose::Webhook => self.webhook,
            SecretPurpose::Link => self.link,
        }
    }
}

/// A merchant's open secrets, each with its attribute.
fn secret_values(merchant: &Merchant) -> Vec<(&'static str, SecretPurpose, &MerchantSecret)> {
    let mut values = vec![(
        WEBHOOK_SECRET,
        SecretPurpose::Webhook,
        &merchant.webhook_secret,
    )];
    if let Some(previous) = &merchant.previous_webhook_secret {
        values.push((
            PREVIOUS_WEBHOOK_SECRET,
            SecretPurpose::Webhook,
            &previous.secret,
        ));
    }
    if let Some(secret) = &merchant.payment_links.signing_secret {
        values.push((LINK_SIGNING_SECRET, SecretPurpose::Link, secret));
    }
    values
}

/// The purposes whose secrets the merchant carries.
pub(super) fn secret_purposes(merchant: &Merchant) -> Vec<SecretPurpose> {
    let mut purposes: Vec<SecretPurpose> =
        secret_values(merchant).iter().map(|(_, p, _)| *p).collect();
    purposes.dedup();
    purposes
}

/// Each of the merchant's secrets sealed (once: its three items share the value). A secret
/// that is sealed here (read without its key), or whose purpose this store may not seal, is
/// refused: a merchant is written whole or not at all.
pub(super) fn sealed_secrets(
    merchant: &Merchant,
    keys: &Keys<'_>,
) -> Result<Vec<(&'static str, String)>, StoreError> {
    secret_values(merchant)
        .into_iter()
        .map(|(attribute, purpose, secret)| {
            let plain = secret.expose().map_err(|e| {
                StoreError::new(format!("cannot write merchant {}: {e}", merchant.id))
            })?;
            let Access::Allowed(Some(key)) = keys.access(purpose) else {
                return Err(StoreError::new(format!(
                    "cannot write merchant {}: this store holds no {} data key",
                    merchant.id,
                    purpose.as_str()
                )));
            };
            let sealed = seal::seal(key, &merchant.id, attribute, plain)
                .map_err(|e| StoreError::new(format!("seal {attribute}: {e}")))?;
            Ok((attribute, sealed))
        })
        .collect()
}

/// A merchant record (`kind: None`) or one of its key items, its secrets as
/// [`sealed_secrets`] gave them.
pub(super) fn merchant_item(
    merchant: &Merchant,
    sealed: &[(&'static str, String)],
    pk: String,
    sk: &str,
    kind: Option<KeyKind>,
) -> Item {
    // Destructured so that a new field fails to compile here until it is stored.
    let Merchant {
        id,
        name,
        secret_key_hash,
        publishable_key_hash,
        webhook_secret: _,
        previous_webhook_secret,
        notify_url,
        notify_events,
        status,
        created_at,
        payment_links,
        ip_allowlist,
        version,
    } = merchant;
    let mut item = HashMap::from([
        (PK.to_string(), s(pk)),
        (SK.to_string(), s(sk)),
        ("merchant_id".to_string(), s(id.as_str())),
        ("name".to_string(), s(name.as_str())),
        ("secret_key_hash".to_string(), s(secret_key_hash.as_str())),
        (
            "publishable_key_hash".to_string(),
            s(publishable_key_hash.as_str()),
        ),
        ("status".to_string(), s(merchant_status_str(*status))),
        ("created_at".to_string(), n(created_at.unix())),
        (
            VERSION.to_string(),
            n(i64::try_from(*version).unwrap_or(i64::MAX)),
        ),
    ]);
    for (attribute, value) in sealed {
        item.insert((*attribute).to_string(), s(value.as_str()));
    }
    insert_opt(&mut item, "notify_url", notify_url.as_deref().map(s));
    // The default (order.paid only) is no attribute, as merchants from before subscriptions.
    if *notify_events != NotifyEvents::default() {
        let names = notify_events.iter().map(|e| s(e.as_str())).collect();
        item.insert(NOTIFY_EVENTS.into(), AttributeValue::L(names));
    }
    if let Some(previous) = previous_webhook_secret {
        item.insert(
            "previous_webhook_secret_until".into(),
            n(previous.until.unix()),
        );
    }
    insert_payment_link_settings(&mut item, payment_links);
    if !ip_allowlist.is_empty() {
        let ranges = ip_allowlist.iter().map(|c| s(c.to_string())).collect();
        item.insert(IP_ALLOWLIST.into(), AttributeValue::L(ranges));
    }
    match kind {
        None => {
            item.insert(ITEM_TYPE.into(), s("merchant"));
        }
        Some(kind) => {
            item.insert(ITEM_TYPE.into(), s("api_key"));
            let kind = match kind {
                KeyKind::Secret => "secret",
                KeyKind::Publishable => "publishable",
            };
            item.insert("key_kind".into(), s(kind));
        }
    }
    item
}

/// Whether the item holds a sealed value of `purpose` (so reading it needs that data key).
pub(super) fn has_sealed(item: &Item, purpose: SecretPurpose) -> bool {
    SECRET_ATTRIBUTES.iter().any(|(attribute, p)| {
        *p == purpose
            && matches!(item.get(*attribute), Some(AttributeValue::S(v)) if seal::is_sealed(v))
    })
}

/// One secret attribute as this store may see it: opened with its key, plain (an item from
/// before sealing) where the store may open the purpose, else sealed.
fn read_secret(
    r: &Reader<'_>,
    merchant: &MerchantId,
    attribute: &str,
    purpose: SecretPurpose,
    keys: &Keys<'_>,
) -> Result<Option<MerchantSecret>, StoreError> {
    let Some(value) = r.opt_str(attribute)? else {
        return Ok(None);
    };
    let secret = match keys.access(purpose) {
        Access::Denied => MerchantSecret::Sealed(purpose),
        Access::Allowed(key) if seal::is_sealed(value) => {
            let key = key.ok_or_else(|| {
                corrupt(
                    "merchant",
                    &format!("{attribute} is sealed and no data key was loaded"),
                )
            })?;
            let opened = seal::open(key, merchant, attribute, value)
                .map_err(|e| corrupt("merchant", &format!("{attribute}: {e}")))?;
            MerchantSecret::Open(opened)
        }
        Access::Allowed(_) => MerchantSecret::new(value),
    };
    Ok(Some(secret))
}

pub(super) fn merchant_from_item(item: &Item, keys: &Keys<'_>) -> Result<Merchant, StoreError> {
    let r = Reader::new(item, "merchant");
    let status = match r.str("status")? {
        "active" => MerchantStatus::Active,
        "disabled" => MerchantStatus::Disabled,
        other => return Err(corrupt("merchant", &format!("status {other:?}"))),
    };
    let id = MerchantId::new(r.str("merchant_id")?);
    let webhook_secret = read_secret(&r, &id, WEBHOOK_SECRET, SecretPurpose::Webhook, keys)?
        .ok_or_else(|| corrupt("merchant", "webhook_secret missing"))?;
    let previous_webhook_secret = match read_secret(
        &r,
        &id,
        PREVIOUS_WEBHOOK_SECRET,
        SecretPurpose::Webhook,
        keys,
    )? {
        None => None,
        Some(secret) => Some(RetiringSecret {
            secret,
            until: Timestamp::from_unix(r.int("previous_webhook_secret_until")?),
        }),
    };
    let ip_allowlist = r
        .opt_str_list(IP_ALLOWLIST)?
        .unwrap_or_default()
        .iter()
        .map(|c| Cidr::parse(c).map_err(|_| corrupt("merchant", "ip_allowlist entry")))
        .collect::<Result<_, _>>()?;
    let notify_events = r
        .opt_str_list(NOTIFY_EVENTS)?
        .unwrap_or_default()
        .iter()
        .map(|name| {
            WebhookEvent::parse(name)
                .ok_or_else(|| corrupt("merchant", &format!("notify event {name:?}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(NotifyEvents::with)?;
    let version = r
        .opt_int(VERSION)?
        .map(|v| u64::try_from(v).map_err(|_| corrupt("merchant", "version is negative")))
        .transpose()?
        .unwrap_or(0);
    Ok(Merchant {
        name: r.str("name")?.to_string(),
        secret_key_hash: KeyHash::from_hex(r.str("secret_key_hash")?),
        publishable_key_hash: KeyHash::from_hex(r.str("publishable_key_hash")?),
        webhook_secret,
        previous_webhook_secret,
        notify_url: r.opt_str("notify_url")?.map(str::to_string),
        notify_events,
        status,
        created_at: Timestamp::from_unix(r.int("created_at")?),
        payment_links: payment_link_settings(&r, &id, keys)?,
        ip_allowlist,
        version,
        id,
    })
}

/// Payment-link settings as optional attributes: each default is written as no attribute, so
/// items from before payment links existed read back as the defaults. The signing secret is
/// written by [`sealed_secrets`].
fn insert_payment_link_settings(item: &mut Item, settings: &PaymentLinkSettings) {
    let PaymentLinkSettings {
        signing_secret: _,
        require_signed,
        allowed_return_hosts,
    } = settings;
    if *require_signed {
        item.insert(LINK_REQUIRE_SIGNED.into(), AttributeValue::Bool(true));
    }
    if !allowed_return_hosts.is_empty() {
        let hosts = allowed_return_hosts.iter().map(|h| s(h.as_str())).collect();
        item.insert(LINK_RETURN_HOSTS.into(), AttributeValue::L(hosts));
    }
}

fn payment_link_settings(
    r: &Reader<'_>,
    id: &MerchantId,
    keys: &Keys<'_>,
) -> Result<PaymentLinkSettings, StoreError> {
    Ok(PaymentLinkSettings {
        signing_secret: read_secret(r, id, LINK_SIGNING_SECRET, SecretPurpose::Link, keys)?,
        require_signed: r.opt_bool(LINK_REQUIRE_SIGNED)?.unwrap_or(false),
        allowed_return_hosts: r.opt_str_list(LINK_RETURN_HOSTS)?.unwrap_or_default(),
    })
}
