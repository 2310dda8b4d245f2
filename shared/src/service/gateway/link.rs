//! Opening a payment link: its key (publishable only), its merchant, its signature (required if
//! the merchant says so), then its fields, its expiry and the host of its return URL.

use super::super::{Backends, ErrorCode, Ferrypay};
use crate::{
    model::{
        check_characters, Attach, Description, Fen, KeyKind, Merchant, MerchantStatus, OrderSource,
        ReturnUrl, Timestamp,
    },
    sign::{
        hash_api_key,
        link::{link_signature_valid, link_signing_string},
        PUBLISHABLE_KEY_PREFIX, SECRET_KEY_PREFIX,
    },
    store::{MerchantStore, StoreError},
};

/// A link's signed parameters and signature, exactly as given (the signature and the OAuth
/// state cover these bytes; the typed fields are in [`LinkFields`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkQuery {
    /// The signed parameters present, in `SIGNED_LINK_PARAMS` order.
    pub params: Vec<(&'static str, String)>,
    pub sign: Option<String>,
}

impl LinkQuery {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// What an OAuth state binds: the link's parameters and its signature.
    pub(super) fn state_content(&self) -> String {
        format!(
            "{}\nsign={}",
            link_signing_string(&self.pairs()),
            self.sign.as_deref().unwrap_or("")
        )
    }

    fn pairs(&self) -> Vec<(&str, &str)> {
        self.params.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }
}

/// What a link asks to be paid, its fields parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFields {
    pub amount: Fen,
    pub description: Option<Description>,
    /// Not blank (a link refuses an attach of spaces only).
    pub attach: Option<Attach>,
    /// The time after which the link is refused.
    pub expires: Option<Timestamp>,
    /// Its host is checked against the merchant's list here.
    pub return_url: Option<ReturnUrl>,
}

/// A link that passed every check: its merchant, what it asks to be paid, and where to return.
#[derive(Debug, Clone)]
pub struct PaymentLink {
    pub merchant: Merchant,
    pub amount: Fen,
    pub description: Option<Description>,
    pub attach: Option<Attach>,
    pub return_url: Option<ReturnUrl>,
    /// Signed with the merchant's link secret.
    pub signed: bool,
    /// The link as given: its canonical URL is built from it.
    pub query: LinkQuery,
}

impl PaymentLink {
    /// What its orders record as their source: signed or not.
    pub fn source(&self) -> OrderSource {
        if self.signed {
            OrderSource::SignedLink
        } else {
            OrderSource::Link
        }
    }

    /// What the payer sees as the product: the description, or the merchant's name.
    pub fn title(&self) -> &str {
        self.description
            .as_ref()
            .map_or(self.merchant.name.as_str(), Description::as_str)
    }
}

/// Why a link cannot be paid. Shown to the payer as a page, under [`LinkError::code`].
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("parameter {0} given twice")]
    DuplicateParam(&'static str),
    #[error("the link has no key")]
    MissingKey,
    /// A secret key in a public link: it is exposed, the merchant must rotate it.
    #[error("the link carries a secret key")]
    SecretKeyInLink,
    #[error("no merchant has this publishable key")]
    UnknownKey,
    #[error("the merchant is disabled")]
    MerchantDisabled,
    #[error("the merchant accepts signed links only")]
    SignatureRequired,
    #[error("the link's signature does not match its parameters")]
    SignatureInvalid,
    #[error("the link has expired")]
    Expired,
    #[error("invalid amount")]
    InvalidAmount,
    #[error("{0} is invalid")]
    InvalidField(&'static str),
    #[error("return_url must be an http(s) URL")]
    ReturnUrlInvalid,
    /// Not a registered host, or (with none registered) not the notify URL's host or one of
    /// its subdomains.
    #[error("return_url is not on a host the merchant allows")]
    ReturnHostNotAllowed,
    /// Reading the link's merchant failed (logged where it happened).
    #[error("reading the link's merchant")]
    Store(#[source] StoreError),
}

impl LinkError {
    pub fn code(&self) -> ErrorCode {
        match self {
            LinkError::DuplicateParam(_) => ErrorCode::DuplicateParameter,
            LinkError::MissingKey => ErrorCode::MissingApiKey,
            LinkError::SecretKeyInLink => ErrorCode::SecretKeyInLink,
            LinkError::UnknownKey => ErrorCode::InvalidApiKey,
            LinkError::MerchantDisabled => ErrorCode::ProductDisabled,
            LinkError::SignatureRequired => ErrorCode::SignatureRequired,
            LinkError::SignatureInvalid => ErrorCode::InvalidSignature,
            LinkError::Expired => ErrorCode::LinkExpired,
            LinkError::InvalidAmount => ErrorCode::InvalidAmount,
            LinkError::InvalidField(_) => ErrorCode::InvalidField,
            LinkError::ReturnUrlInvalid => ErrorCode::InvalidReturnUrl,
            LinkError::ReturnHostNotAllowed => ErrorCode::ReturnUrlNotAllowed,
            LinkError::Store(_) => ErrorCode::InternalError,
        }
    }

    /// The parameter the error is about, for the page's text.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            LinkError::DuplicateParam(name) | LinkError::InvalidField(name) => Some(*name),
            _ => None,
        }
    }
}

impl<B: Backends> Ferrypay<B> {
    /// Checks a link against its merchant: the key, the merchant, the signature, and only
    /// then its `fields` (parsed by the caller; their error waits until the link is known to
    /// be the merchant's), the expiry and the return URL's host.
    pub async fn open_link(
        &self,
        query: LinkQuery,
        fields: Result<LinkFields, LinkError>,
    ) -> Result<PaymentLink, LinkError> {
        let key = query
            .get("key")
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(LinkError::MissingKey)?;
        if key.starts_with(SECRET_KEY_PREFIX) {
            self.warn_secret_key_in_link(key).await;
            return Err(LinkError::SecretKeyInLink);
        }
        if !key.starts_with(PUBLISHABLE_KEY_PREFIX) {
            return Err(LinkError::UnknownKey);
        }
        let (merchant, kind) = self
            .store
            .merchant_by_key(&hash_api_key(key))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "reading a link's merchant");
                LinkError::Store(e)
            })?
            .ok_or(LinkError::UnknownKey)?;
        if kind != KeyKind::Publishable {
            return Err(LinkError::SecretKeyInLink);
        }
        if merchant.status != MerchantStatus::Active {
            return Err(LinkError::MerchantDisabled);
        }
        // No value may hold a control character (the signing string's lines must read back
        // one way only) or a format character (invisible, they change what the payer reads),
        // the merchant API's rule for its text fields.
        if let Some((name, _)) = query
            .params
            .iter()
            .find(|(_, v)| check_characters(v).is_err())
        {
            return Err(LinkError::InvalidField(name));
        }
        let signed = check_link_signature(&merchant, &query)?;
        let fields = fields?;
        if fields
            .expires
            .is_some_and(|expires| self.clock.now() > expires)
        {
            return Err(LinkError::Expired);
        }
        if let Some(url) = &fields.return_url {
            let notify_url = merchant.notify_url.as_deref();
            if !merchant
                .payment_links
                .return_url_allowed(url.url(), notify_url)
            {
                return Err(LinkError::ReturnHostNotAllowed);
            }
        }
        Ok(PaymentLink {
            merchant,
            amount: fields.amount,
            description: fields.description,
            attach: fields.attach,
            return_url: fields.return_url,
            signed,
            query,
        })
    }

    /// A secret key was put in a public link: refuse it, and tell the operator whose it is.
    async fn warn_secret_key_in_link(&self, key: &str) {
        if let Ok(Some((merchant, KeyKind::Secret))) =
            self.store.merchant_by_key(&hash_api_key(key)).await
        {
            tracing::warn!(merchant_id = %merchant.id, "a payment link carries this merchant's secret key: it is exposed and must be rotated");
        }
    }
}

/// `Ok(true)` for a valid signature, `Ok(false)` for an unsigned link the merchant allows.
fn check_link_signature(merchant: &Merchant, query: &LinkQuery) -> Result<bool, LinkError> {
    let settings = &merchant.payment_links;
    match (&query.sign, &settings.signing_secret) {
        (None, _) if settings.require_signed => Err(LinkError::SignatureRequired),
        (None, _) => Ok(false),
        (Some(sign), Some(secret)) => {
            // Sealed here (a process without the link data key) is a deployment error, never
            // a pass: the link is refused and the cause logged.
            let secret = secret.expose().map_err(|e| {
                tracing::error!(merchant_id = %merchant.id, error = %e, "cannot check a signed link");
                LinkError::SignatureInvalid
            })?;
            if link_signature_valid(secret, &query.pairs(), sign) {
                Ok(true)
            } else {
                Err(LinkError::SignatureInvalid)
            }
        }
        // A signature we cannot check is never ignored.
        (Some(_), None) => Err(LinkError::SignatureInvalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{MerchantSecret, OrderSource},
        service::gateway::LinkPayment,
        sign::link::sign_link,
        store::MerchantStore,
        testing::*,
    };

    /// A link of these parameters (key and amount first), signed with `secret` if given.
    fn query(extra: &[(&'static str, &str)], secret: Option<&str>) -> LinkQuery {
        let mut params = vec![
            ("key", TEST_PUBLISHABLE_KEY.to_string()),
            ("amount", "100".to_string()),
        ];
        params.extend(extra.iter().map(|(n, v)| (*n, v.to_string())));
        let pairs: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let sign = secret.map(|secret| sign_link(secret, &pairs));
        LinkQuery { params, sign }
    }

    fn fields(return_url: Option<&str>) -> LinkFields {
        LinkFields {
            amount: Fen::new(100),
            description: None,
            attach: None,
            expires: None,
            return_url: return_url.map(|url| ReturnUrl::parse(url).unwrap()),
        }
    }

    async fn open(app: &TestApp, return_url: Option<&str>) -> Result<PaymentLink, LinkError> {
        let extra: Vec<(&'static str, &str)> =
            return_url.map(|u| ("return_url", u)).into_iter().collect();
        app.open_link(query(&extra, None), Ok(fields(return_url)))
            .await
    }

    async fn edit_merchant(app: &TestApp, edit: impl FnOnce(&mut Merchant)) {
        let id = app.store.list_merchants().await.unwrap()[0].id.clone();
        let mut merchant = app.store.get_merchant(&id).await.unwrap().unwrap();
        edit(&mut merchant);
        app.store.update_merchant(&merchant).await.unwrap();
    }

    #[tokio::test]
    async fn with_no_registered_hosts_a_return_url_must_be_on_the_notify_urls_site() {
        let app = app_with_clock(clock_at_start());
        onboard_test_merchant(&app, "Shop").await; // notify URL https://merchant.example/notify
        for allowed in [
            "https://merchant.example/done",
            "http://merchant.example:8080/done?cart=7",
            "https://m.merchant.example/done",
        ] {
            assert!(open(&app, Some(allowed)).await.is_ok(), "{allowed}");
        }
        for refused in [
            "https://evil.example/done",
            "https://evilmerchant.example/done",
            "https://merchant.example.evil.example/done",
            "https://evil.example/merchant.example",
            "https://127.0.0.1/done",
        ] {
            let err = open(&app, Some(refused)).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::ReturnUrlNotAllowed, "{refused}");
        }
        assert!(open(&app, None).await.is_ok());

        // Registered hosts work as before, and replace the default.
        edit_merchant(&app, |m| {
            m.payment_links.allowed_return_hosts = vec!["shop.example".into()];
        })
        .await;
        assert!(open(&app, Some("https://shop.example/done")).await.is_ok());
        let err = open(&app, Some("https://merchant.example/done")).await;
        assert_eq!(err.unwrap_err().code(), ErrorCode::ReturnUrlNotAllowed);

        // With neither a notify URL nor hosts, only links without a return URL work.
        edit_merchant(&app, |m| {
            m.payment_links.allowed_return_hosts.clear();
            m.notify_url = None;
        })
        .await;
        let err = open(&app, Some("https://merchant.example/done")).await;
        assert_eq!(err.unwrap_err().code(), ErrorCode::ReturnUrlNotAllowed);
        assert!(open(&app, None).await.is_ok());
    }

    #[tokio::test]
    async fn format_characters_in_any_link_value_are_refused_naming_it() {
        let app = app_with_clock(clock_at_start());
        onboard_test_merchant(&app, "Shop").await;
        for name in ["description", "attach", "return_url", "expires"] {
            for c in [
                '\u{202E}',
                '\u{200B}',
                '\u{2066}',
                '\u{FEFF}',
                '\u{AD}',
                '\u{E0041}',
            ] {
                let value = format!("ab{c}c");
                let link = query(&[(name, &value)], None);
                let err = app.open_link(link, Ok(fields(None))).await.unwrap_err();
                assert_eq!(
                    (err.code(), err.field()),
                    (ErrorCode::InvalidField, Some(name)),
                    "{name} with U+{:04X}",
                    u32::from(c)
                );
            }
        }
        let mut key = query(&[], None);
        key.params[0].1.push('\u{200D}');
        // The key is looked up first: with a stray character it is no merchant's.
        let err = app.open_link(key, Ok(fields(None))).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidApiKey);
    }

    #[tokio::test]
    async fn link_orders_record_whether_the_link_was_signed() {
        let app = app_with_clock(clock_at_start());
        onboard_test_merchant(&app, "Shop").await;
        const SECRET: &str = "lsk_test_0123456789abcdefghijklmnop";
        edit_merchant(&app, |m| {
            m.payment_links.signing_secret = Some(MerchantSecret::new(SECRET));
        })
        .await;
        let unsigned = app
            .open_link(query(&[], None), Ok(fields(None)))
            .await
            .unwrap();
        let signed = app
            .open_link(query(&[], Some(SECRET)), Ok(fields(None)))
            .await
            .unwrap();
        for (link, source) in [
            (&unsigned, OrderSource::Link),
            (&signed, OrderSource::SignedLink),
        ] {
            assert_eq!(link.source(), source);
            let created = app
                .create_link_order(link, LinkPayment::Native)
                .await
                .unwrap();
            assert_eq!(created.order.source, source);
            assert_eq!(
                stored_order(&app, &created.order.order_no).await.source,
                source
            );
        }
        let merchant = &unsigned.merchant;
        let api = create_test_order(&app, merchant, 100, Some("shop-1")).await;
        assert_eq!(api.source, OrderSource::Api);
    }
}
