//! Items to and from the model: every attribute ferrypay writes, and typed reads of them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::schema::{
    attempt_sk, guard_pk, merchant_pk, order_pk, status_list_pk, GUARD_SK, ITEM_TYPE, LIST_PK,
    ORDER_NO, ORDER_SK, PK, PURGE_AT, SK, STATUS_LIST_PK, VERSION,
};
use crate::{
    model::{
        Cidr, Fen, KeyHash, KeyKind, Merchant, MerchantId, MerchantSecret, MerchantStatus, Order,
        OrderNo, OrderStatus, OutTradeNo, PayCredential, PayType, PaymentLinkSettings,
        RetiringSecret, SecretPurpose, Timestamp, WebhookAttempt, WebhookState, WebhookStatus,
    },
    seal::{self, DataKey},
    store::{StoreError, WEBHOOK_ATTEMPT_RETENTION_DAYS},
};

/// One DynamoDB item: attribute name to value.
pub(super) type Item = HashMap<String, AttributeValue>;

/// A merchant's payment-link settings, each absent when it has its default.
pub(super) const LINK_SIGNING_SECRET: &str = "link_signing_secret";
const LINK_REQUIRE_SIGNED: &str = "link_require_signed";
const LINK_RETURN_HOSTS: &str = "link_return_hosts";

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn insert_opt(item: &mut Item, name: &str, value: Option<AttributeValue>) {
    if let Some(value) = value {
        item.insert(name.to_string(), value);
    }
}

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

/// The order's own attributes (no keys).
fn order_attributes(order: &Order, version: i64) -> Item {
    // Destructured so that a new field fails to compile here until it is stored.
    let Order {
        order_no,
        merchant_id,
        out_trade_no,
        amount,
        description,
        pay_type,
        openid,
        client_ip,
        attach,
        notify_url,
        status,
        credential,
        transaction_id,
        paid_at,
        closed_at,
        webhook,
        created_at,
        expires_at,
        request_fingerprint,
    } = order;
    let WebhookState {
        generation: webhook_generation,
        queued_at: webhook_queued_at,
        status: webhook_status,
        attempts: webhook_attempts,
        last_attempt_at: webhook_last_attempt_at,
        next_attempt_at: webhook_next_attempt_at,
        delivered_at: webhook_delivered_at,
    } = webhook;
    let mut item = HashMap::from([
        (ORDER_NO.to_string(), s(order_no.as_str())),
        ("merchant_id".to_string(), s(merchant_id.as_str())),
        ("amount".to_string(), n(amount.get())),
        ("description".to_string(), s(description.as_str())),
        ("pay_type".to_string(), s(pay_type.as_str())),
        ("status".to_string(), s(status.as_str())),
        ("created_at".to_string(), n(created_at.unix())),
        ("expires_at".to_string(), n(expires_at.unix())),
        (
            "request_fingerprint".to_string(),
            s(request_fingerprint.as_str()),
        ),
        (VERSION.to_string(), n(version)),
        (
            "webhook_generation".to_string(),
            n(i64::from(*webhook_generation)),
        ),
        ("webhook_status".to_string(), s(webhook_status.as_str())),
        (
            "webhook_attempts".to_string(),
            n(i64::from(*webhook_attempts)),
        ),
    ]);
    insert_opt(
        &mut item,
        "out_trade_no",
        out_trade_no.as_ref().map(|o| s(o.as_str())),
    );
    insert_opt(&mut item, "openid", openid.as_deref().map(s));
    insert_opt(&mut item, "client_ip", client_ip.as_deref().map(s));
    insert_opt(&mut item, "attach", attach.as_deref().map(s));
    insert_opt(&mut item, "notify_url", notify_url.as_deref().map(s));
    insert_opt(
        &mut item,
        "credential",
        credential.as_ref().map(credential_value),
    );
    insert_opt(
        &mut item,
        "transaction_id",
        transaction_id.as_deref().map(s),
    );
    insert_opt(&mut item, "paid_at", paid_at.map(|t| n(t.unix())));
    insert_opt(&mut item, "closed_at", closed_at.map(|t| n(t.unix())));
    for (name, at) in [
        ("webhook_queued_at", webhook_queued_at),
        ("webhook_last_attempt_at", webhook_last_attempt_at),
        ("webhook_next_attempt_at", webhook_next_attempt_at),
        ("webhook_delivered_at", webhook_delivered_at),
    ] {
        insert_opt(&mut item, name, at.map(|t| n(t.unix())));
    }
    item
}

/// The order record: keyed by order number, listed in both indexes.
pub(super) fn order_record(order: &Order, version: i64) -> Item {
    let mut item = order_attributes(order, version);
    item.insert(PK.into(), s(order_pk(&order.order_no)));
    item.insert(SK.into(), s(ORDER_SK));
    item.insert(ITEM_TYPE.into(), s("order"));
    item.insert(LIST_PK.into(), s(merchant_pk(&order.merchant_id)));
    item.insert(
        STATUS_LIST_PK.into(),
        s(status_list_pk(&order.merchant_id, order.status)),
    );
    item
}

/// The `out_trade_no` guard, a full copy of the order (in no index), if the order has one.
pub(super) fn guard_item(order: &Order, version: i64) -> Option<Item> {
    let out_trade_no = order.out_trade_no.as_ref()?;
    let mut item = order_attributes(order, version);
    item.insert(PK.into(), s(guard_pk(&order.merchant_id, out_trade_no)));
    item.insert(SK.into(), s(GUARD_SK));
    item.insert(ITEM_TYPE.into(), s("out_trade_no"));
    Some(item)
}

pub(super) fn attempt_item(attempt: &WebhookAttempt) -> Item {
    // Destructured so that a new field fails to compile here until it is stored.
    let WebhookAttempt {
        order_no,
        event_id,
        generation,
        attempt: number,
        at,
        url,
        status_code,
        latency_ms,
        response,
        error,
        delivered,
    } = attempt;
    let purge_at = at.plus_secs(WEBHOOK_ATTEMPT_RETENTION_DAYS * 86_400);
    let mut item = HashMap::from([
        (PK.to_string(), s(order_pk(order_no))),
        (SK.to_string(), s(attempt_sk(*generation, *number))),
        (ITEM_TYPE.to_string(), s("webhook_attempt")),
        (ORDER_NO.to_string(), s(order_no.as_str())),
        ("event_id".to_string(), s(event_id.as_str())),
        ("generation".to_string(), n(i64::from(*generation))),
        ("attempt".to_string(), n(i64::from(*number))),
        ("at".to_string(), n(at.unix())),
        (
            "latency_ms".to_string(),
            n(i64::try_from(*latency_ms).unwrap_or(i64::MAX)),
        ),
        ("delivered".to_string(), AttributeValue::Bool(*delivered)),
        (PURGE_AT.to_string(), n(purge_at.unix())),
    ]);
    insert_opt(&mut item, "url", url.as_deref().map(s));
    insert_opt(
        &mut item,
        "status_code",
        status_code.map(|c| n(i64::from(c))),
    );
    insert_opt(&mut item, "response", response.as_deref().map(s));
    insert_opt(&mut item, "error", error.as_deref().map(s));
    item
}

pub(super) fn attempt_from_item(item: &Item) -> Result<WebhookAttempt, StoreError> {
    let r = Reader::new(item, "webhook attempt");
    let order_no = r.str(ORDER_NO)?;
    let order_no = OrderNo::parse(order_no)
        .ok_or_else(|| corrupt("webhook attempt", &format!("order_no {order_no:?}")))?;
    let status_code = r
        .opt_int("status_code")?
        .map(|c| u16::try_from(c).map_err(|_| corrupt("webhook attempt", "status_code")))
        .transpose()?;
    let delivered = match item.get("delivered") {
        Some(AttributeValue::Bool(b)) => *b,
        _ => return Err(corrupt("webhook attempt", "delivered is not a boolean")),
    };
    Ok(WebhookAttempt {
        order_no,
        event_id: r.str("event_id")?.to_string(),
        generation: r.u32("generation")?,
        attempt: r.u32("attempt")?,
        at: Timestamp::from_unix(r.int("at")?),
        url: r.opt_str("url")?.map(str::to_string),
        status_code,
        latency_ms: r.opt_u64("latency_ms")?.unwrap_or(0),
        response: r.opt_str("response")?.map(str::to_string),
        error: r.opt_str("error")?.map(str::to_string),
        delivered,
    })
}

fn credential_value(credential: &PayCredential) -> AttributeValue {
    let (kind, field, value) = match credential {
        PayCredential::Native { code_url } => ("native", "code_url", code_url),
        PayCredential::Jsapi { prepay_id } => ("jsapi", "prepay_id", prepay_id),
        PayCredential::H5 { h5_url } => ("h5", "h5_url", h5_url),
    };
    AttributeValue::M(HashMap::from([
        ("kind".to_string(), s(kind)),
        (field.to_string(), s(value.as_str())),
    ]))
}

fn credential_from(value: &AttributeValue) -> Result<PayCredential, StoreError> {
    let map = value
        .as_m()
        .map_err(|_| corrupt("order", "credential is not a map"))?;
    let r = Reader::new(map, "order credential");
    Ok(match r.str("kind")? {
        "native" => PayCredential::Native {
            code_url: r.str("code_url")?.to_string(),
        },
        "jsapi" => PayCredential::Jsapi {
            prepay_id: r.str("prepay_id")?.to_string(),
        },
        "h5" => PayCredential::H5 {
            h5_url: r.str("h5_url")?.to_string(),
        },
        other => return Err(corrupt("order", &format!("credential kind {other:?}"))),
    })
}

/// An order (from its record or its guard copy) and its version.
pub(super) fn order_from_item(item: &Item) -> Result<(Order, i64), StoreError> {
    let r = Reader::new(item, "order");
    let order_no = r.str(ORDER_NO)?;
    let order_no = OrderNo::parse(order_no)
        .ok_or_else(|| corrupt("order", &format!("order_no {order_no:?}")))?;
    let out_trade_no = r
        .opt_str("out_trade_no")?
        .map(|o| OutTradeNo::parse(o).map_err(|_| corrupt("order", &format!("out_trade_no {o:?}"))))
        .transpose()?;
    let pay_type = r.str("pay_type")?;
    let pay_type = PayType::parse(pay_type)
        .ok_or_else(|| corrupt("order", &format!("pay_type {pay_type:?}")))?;
    let status = r.str("status")?;
    let status = OrderStatus::parse(status)
        .ok_or_else(|| corrupt("order", &format!("status {status:?}")))?;
    let webhook_status = r.str("webhook_status")?;
    let webhook_status = WebhookStatus::parse(webhook_status)
        .ok_or_else(|| corrupt("order", &format!("webhook_status {webhook_status:?}")))?;
    let time = |name| r.opt_int(name).map(|t| t.map(Timestamp::from_unix));
    let webhook = WebhookState {
        generation: r.u32("webhook_generation")?,
        queued_at: time("webhook_queued_at")?,
        status: webhook_status,
        attempts: r.u32("webhook_attempts")?,
        last_attempt_at: time("webhook_last_attempt_at")?,
        next_attempt_at: time("webhook_next_attempt_at")?,
        delivered_at: time("webhook_delivered_at")?,
    };
    let order = Order {
        order_no,
        merchant_id: MerchantId::new(r.str("merchant_id")?),
        out_trade_no,
        amount: Fen::new(r.int("amount")?),
        description: r.str("description")?.to_string(),
        pay_type,
        openid: r.opt_str("openid")?.map(str::to_string),
        client_ip: r.opt_str("client_ip")?.map(str::to_string),
        attach: r.opt_str("attach")?.map(str::to_string),
        notify_url: r.opt_str("notify_url")?.map(str::to_string),
        status,
        credential: item.get("credential").map(credential_from).transpose()?,
        transaction_id: r.opt_str("transaction_id")?.map(str::to_string),
        paid_at: r.opt_int("paid_at")?.map(Timestamp::from_unix),
        closed_at: r.opt_int("closed_at")?.map(Timestamp::from_unix),
        webhook,
        created_at: Timestamp::from_unix(r.int("created_at")?),
        expires_at: Timestamp::from_unix(r.int("expires_at")?),
        request_fingerprint: r.str("request_fingerprint")?.to_string(),
    };
    Ok((order, r.int(VERSION)?))
}

/// Typed reads from an item, with errors that say which item and attribute is wrong.
pub(super) struct Reader<'a> {
    item: &'a Item,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(item: &'a Item, what: &'static str) -> Self {
        Reader { item, what }
    }

    pub(super) fn opt_str(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(value)) => Ok(Some(value.as_str())),
            Some(_) => Err(corrupt(self.what, &format!("{name} is not a string"))),
        }
    }

    pub(super) fn str(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_str(name)?
            .ok_or_else(|| corrupt(self.what, &format!("{name} missing")))
    }

    pub(super) fn opt_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(value)) => value
                .parse()
                .map(Some)
                .map_err(|_| corrupt(self.what, &format!("{name} is not an integer"))),
            Some(_) => Err(corrupt(self.what, &format!("{name} is not a number"))),
        }
    }

    pub(super) fn opt_bool(&self, name: &str) -> Result<Option<bool>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::Bool(value)) => Ok(Some(*value)),
            Some(_) => Err(corrupt(self.what, &format!("{name} is not a boolean"))),
        }
    }

    /// A list of strings (`L` of `S`).
    pub(super) fn opt_str_list(&self, name: &str) -> Result<Option<Vec<String>>, StoreError> {
        let not_strings = || corrupt(self.what, &format!("{name} is not a list of strings"));
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::L(values)) => values
                .iter()
                .map(|value| match value {
                    AttributeValue::S(value) => Ok(value.clone()),
                    _ => Err(not_strings()),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(not_strings()),
        }
    }

    pub(super) fn int(&self, name: &str) -> Result<i64, StoreError> {
        self.opt_int(name)?
            .ok_or_else(|| corrupt(self.what, &format!("{name} missing")))
    }

    pub(super) fn u32(&self, name: &str) -> Result<u32, StoreError> {
        u32::try_from(self.int(name)?)
            .map_err(|_| corrupt(self.what, &format!("{name} out of range")))
    }

    pub(super) fn opt_u64(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.opt_int(name)?
            .map(|v| {
                u64::try_from(v).map_err(|_| corrupt(self.what, &format!("{name} is negative")))
            })
            .transpose()
    }
}

/// An item that does not read as the model says (written by hand, or by a bug). The detail
/// names the attribute, never its value when that could be a secret.
pub(super) fn corrupt(what: &str, detail: &str) -> StoreError {
    StoreError::new(format!("corrupt {what} item: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pending_order;

    fn paid_order() -> Order {
        let mut order = pending_order(
            OrderNo::parse("FP20251221103000ABCDEF").unwrap(),
            MerchantId::new("m_1"),
            1234,
            Timestamp::from_unix(crate::testing::START),
        );
        order.status = OrderStatus::Paid;
        order.credential = Some(PayCredential::Native {
            code_url: "weixin://wxpay/bizpayurl?pr=abc".into(),
        });
        order.transaction_id = Some("4200000001".into());
        order.paid_at = Some(Timestamp::from_unix(1_766_284_300));
        order.webhook.generation = 2;
        order
    }

    #[test]
    fn an_order_record_reads_back_as_the_order_and_its_version() {
        let order = paid_order();
        let item = order_record(&order, 7);
        assert_eq!(order_from_item(&item).unwrap(), (order.clone(), 7));
        // Listed in both indexes: the merchant's, and the merchant's for its status.
        assert_eq!(item.get(LIST_PK), Some(&s("MERCHANT#m_1")));
        assert_eq!(item.get(STATUS_LIST_PK), Some(&s("MERCHANT#m_1#paid")));
    }

    #[test]
    fn an_order_without_out_trade_no_has_no_guard_item() {
        assert!(guard_item(&paid_order(), 0).is_none());
    }

    #[test]
    fn a_corrupt_order_item_names_the_attribute() {
        let mut item = order_record(&paid_order(), 0);
        item.insert("status".into(), s("refunded?"));
        let error = order_from_item(&item).unwrap_err().to_string();
        assert!(error.contains("corrupt order item: status"), "{error}");
    }
}
