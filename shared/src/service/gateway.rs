//! Jump-pay links: `GET /pay/gateway?key=pk_...&amount=..` opened by a payer.
//!
//! - Outside WeChat the payer is asked to open the link in WeChat (or, on a computer, to pay
//!   a native QR code: `POST` to the same link).
//! - Inside WeChat the link goes through a silent OAuth (`snsapi_base`) for the payer's openid.
//!   The redirect back carries the link's own parameters (its URL is the `redirect_uri`) and a
//!   `state` binding them: an attempt number, a time and a MAC, so a state is good for one
//!   link, for [`STATE_TTL_SECS`], and a replayed code restarts the authorization a bounded
//!   number of times. Then a JSAPI order is created and the payer is sent (303, so a refresh
//!   never replays the code) to its cashier page.
//! - The cashier and its status checks are reached with an order-scoped ticket: a MAC over
//!   the order number, the return URL and an expiry. It shows one order's status and nothing
//!   else; the merchant's keys never reach the payer's browser.
//!
//! The MAC keys are derived from the official account's OAuth secret (HMAC with a label per
//! use), so the gateway needs no secret of its own; rotating that secret ends open states and
//! tickets, which only asks payers in the middle of paying to open the link again.

use aws_lc_rs::hmac;
use url::Url;

use super::{Backends, CreateOrder, CreatedOrder, Ferrypay};
use crate::{
    api::{
        orders::{ATTACH_MAX_CHARS, DESCRIPTION_MAX_CHARS},
        ApiError,
    },
    model::{Fen, KeyKind, Merchant, MerchantStatus, Order, OrderNo, PayType, Timestamp},
    sign::{
        constant_time_eq, hash_api_key, hex_lower,
        link::{link_signature_valid, link_signing_string, SIGNED_LINK_PARAMS},
        PUBLISHABLE_KEY_PREFIX, SECRET_KEY_PREFIX,
    },
    store::{MerchantStore, OrderStore},
    wechat::oauth::{authorize_url, encode_component, OAuthClient, OAuthConfig, OAuthError},
};

pub const GATEWAY_PATH: &str = "/pay/gateway";
pub const CASHIER_PATH: &str = "/pay/gateway/cashier";
pub const STATUS_PATH: &str = "/pay/gateway/status";

/// How long an authorization round trip may take (WeChat's codes live 5 minutes).
pub const STATE_TTL_SECS: i64 = 600;
/// Authorizations one visit may start: a replayed or expired code restarts it, this often.
pub const MAX_OAUTH_ATTEMPTS: u8 = 3;
/// A ticket outlives its order by this much, so the payer can still see the result.
pub const TICKET_GRACE_SECS: i64 = 3600;
/// The longest `return_url` taken (it comes back in a URL of ours).
pub const RETURN_URL_MAX_LEN: usize = 512;
/// Bytes of MAC kept in states and tickets: 128 bits.
const MAC_BYTES: usize = 16;
/// A state's or ticket's clock may run ahead of ours by this much (several instances).
const CLOCK_SKEW_SECS: i64 = 60;

/// Whether a request comes from WeChat's in-app browser.
pub fn in_wechat(user_agent: Option<&str>) -> bool {
    user_agent.is_some_and(|ua| ua.contains("MicroMessenger"))
}

/// What the gateway needs besides the services: where it is reached and the official
/// account's OAuth settings.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// `FERRYPAY_PUBLIC_URL`: the base of the OAuth `redirect_uri` and of the cashier links.
    pub public_url: String,
    pub oauth: OAuthConfig,
}

/// The jump-pay gateway: the OAuth client and the keys of its states and tickets. Built once.
pub struct Gateway {
    public_url: String,
    oauth_config: OAuthConfig,
    oauth: OAuthClient,
    state_key: hmac::Key,
    ticket_key: hmac::Key,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("public_url", &self.public_url)
            .field("appid", &self.oauth_config.appid)
            .finish_non_exhaustive()
    }
}

/// The parameters of a link request, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkQuery {
    /// The signed parameters present, in [`SIGNED_LINK_PARAMS`] order.
    pub params: Vec<(&'static str, String)>,
    pub sign: Option<String>,
    /// WeChat's redirect back: the OAuth code and our state.
    pub code: Option<String>,
    pub state: Option<String>,
}

impl LinkQuery {
    /// Reads a query string. Parameters of no meaning here (WeChat appends `from=..` to shared
    /// links) are ignored; one of ours given twice is refused, since a signer and a reader
    /// could take different copies.
    pub fn parse(query: Option<&str>) -> Result<LinkQuery, LinkError> {
        let mut link = LinkQuery::default();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let value = value.into_owned();
            let slot = match name.as_ref() {
                "sign" => Some(&mut link.sign),
                "code" => Some(&mut link.code),
                "state" => Some(&mut link.state),
                _ => None,
            };
            if let Some(slot) = slot {
                if slot.replace(value).is_some() {
                    return Err(LinkError::DuplicateParam(match name.as_ref() {
                        "sign" => "sign",
                        "code" => "code",
                        _ => "state",
                    }));
                }
                continue;
            }
            let Some(known) = SIGNED_LINK_PARAMS.iter().find(|p| **p == name.as_ref()) else {
                continue;
            };
            if link.params.iter().any(|(n, _)| n == known) {
                return Err(LinkError::DuplicateParam(known));
            }
            link.params.push((known, value));
        }
        link.params.sort_by_key(|(name, _)| {
            SIGNED_LINK_PARAMS
                .iter()
                .position(|p| p == name)
                .unwrap_or(usize::MAX)
        });
        Ok(link)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A link that passed every check: its merchant, what it asks to be paid, and where to return.
#[derive(Debug, Clone)]
pub struct PaymentLink {
    pub merchant: Merchant,
    pub amount: Fen,
    pub description: Option<String>,
    pub attach: Option<String>,
    pub return_url: Option<Url>,
    /// Signed with the merchant's link secret.
    pub signed: bool,
    query: LinkQuery,
}

impl PaymentLink {
    /// What the payer sees as the product: the description, or the merchant's name.
    pub fn title(&self) -> &str {
        self.description.as_deref().unwrap_or(&self.merchant.name)
    }

    /// The link's own query string (its parameters and signature, nothing else).
    pub fn query_string(&self) -> String {
        let mut pairs: Vec<String> = self
            .query
            .params
            .iter()
            .map(|(name, value)| format!("{name}={}", encode_component(value)))
            .collect();
        if let Some(sign) = &self.query.sign {
            pairs.push(format!("sign={}", encode_component(sign)));
        }
        pairs.join("&")
    }

    /// What a state binds: the link's parameters and its signature.
    fn state_content(&self) -> String {
        let pairs: Vec<(&str, &str)> = self
            .query
            .params
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        format!(
            "{}\nsign={}",
            link_signing_string(&pairs),
            self.query.sign.as_deref().unwrap_or("")
        )
    }
}

/// Why a link cannot be paid. Shown to the payer as a page; each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    #[error("return_url is not on a host the merchant allows")]
    ReturnHostNotAllowed,
    #[error("storage failure")]
    Unavailable,
}

impl LinkError {
    pub fn code(&self) -> &'static str {
        match self {
            LinkError::DuplicateParam(_) => "duplicate_parameter",
            LinkError::MissingKey => "missing_key",
            LinkError::SecretKeyInLink => "secret_key_in_link",
            LinkError::UnknownKey => "invalid_key",
            LinkError::MerchantDisabled => "merchant_disabled",
            LinkError::SignatureRequired => "signature_required",
            LinkError::SignatureInvalid => "invalid_signature",
            LinkError::Expired => "link_expired",
            LinkError::InvalidAmount => "invalid_amount",
            LinkError::InvalidField(_) => "invalid_parameter",
            LinkError::ReturnUrlInvalid => "invalid_return_url",
            LinkError::ReturnHostNotAllowed => "return_url_not_allowed",
            LinkError::Unavailable => "service_unavailable",
        }
    }
}

/// Where a visit to a link goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStep {
    /// Not in WeChat: ask the payer to open the link there (or pay a native QR code).
    OpenInWechat,
    /// 302 to WeChat's authorization.
    Authorize { url: String },
    /// The order exists: 303 to its cashier.
    Cashier { url: String },
    /// WeChat's snapshot (preview) mode: its openid cannot pay; the payer must open the page.
    SnapshotUser,
}

/// A visit that could not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VisitError {
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Codes kept failing as invalid or used, [`MAX_OAUTH_ATTEMPTS`] times.
    #[error("the authorization failed {MAX_OAUTH_ATTEMPTS} times")]
    AuthorizationLoop,
    /// WeChat's OAuth is unreachable, busy or refuses our configuration (logged).
    #[error("WeChat OAuth unavailable")]
    OAuthUnavailable,
    /// Creating the order failed (payment service, rate limit, storage).
    #[error(transparent)]
    Order(#[from] ApiError),
}

/// The order-scoped pass to a cashier page and its status: `order_no`, `return_url`, `t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashierTicket {
    pub order_no: OrderNo,
    pub return_url: Option<Url>,
    pub expires: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is malformed or does not match")]
    Invalid,
    #[error("the ticket has expired")]
    Expired,
}

impl Gateway {
    pub fn new(settings: GatewaySettings) -> Result<Gateway, OAuthError> {
        let oauth = OAuthClient::new(&settings.oauth)?;
        let derive = |label: &str| {
            let root = hmac::Key::new(hmac::HMAC_SHA256, settings.oauth.secret.expose().as_bytes());
            hmac::Key::new(
                hmac::HMAC_SHA256,
                hmac::sign(&root, label.as_bytes()).as_ref(),
            )
        };
        Ok(Gateway {
            public_url: settings.public_url.trim_end_matches('/').to_string(),
            state_key: derive("ferrypay/gateway/oauth-state/v1"),
            ticket_key: derive("ferrypay/gateway/cashier-ticket/v1"),
            oauth_config: settings.oauth,
            oauth,
        })
    }

    /// The link's canonical public URL (the OAuth `redirect_uri`, and the QR on the
    /// outside-WeChat page).
    pub fn link_url(&self, link: &PaymentLink) -> String {
        format!("{}{GATEWAY_PATH}?{}", self.public_url, link.query_string())
    }

    /// Where the payer's browser goes to start (or restart) the authorization.
    pub fn authorize(
        &self,
        link: &PaymentLink,
        attempt: u8,
        now: Timestamp,
    ) -> Result<LinkStep, VisitError> {
        let state = self.state(link, attempt, now);
        let url = authorize_url(&self.oauth_config, &self.link_url(link), &state).map_err(|e| {
            tracing::error!(error = %e, "building the authorization URL");
            VisitError::OAuthUnavailable
        })?;
        Ok(LinkStep::Authorize { url })
    }

    /// `{attempt}{unix time, 10 digits}{MAC, 32 hex}`: alphanumeric, as WeChat asks.
    fn state(&self, link: &PaymentLink, attempt: u8, now: Timestamp) -> String {
        let stamp = format!("{attempt}{:010}", now.unix());
        let mac = self.mac(
            &self.state_key,
            &format!("{stamp}\n{}", link.state_content()),
        );
        format!("{stamp}{mac}")
    }

    /// The attempt a state from WeChat's redirect stands for, if it is ours, for this link, and
    /// fresh.
    fn check_state(&self, link: &PaymentLink, state: &str, now: Timestamp) -> Option<u8> {
        if state.len() != 1 + 10 + 2 * MAC_BYTES || !state.is_ascii() {
            return None;
        }
        let (stamp, mac) = state.split_at(11);
        let expected = self.mac(
            &self.state_key,
            &format!("{stamp}\n{}", link.state_content()),
        );
        if !constant_time_eq(expected.as_bytes(), mac.as_bytes()) {
            return None;
        }
        let attempt = stamp.get(..1)?.parse::<u8>().ok()?;
        let issued = stamp.get(1..)?.parse::<i64>().ok()?;
        let age = now.unix() - issued;
        ((1..=MAX_OAUTH_ATTEMPTS).contains(&attempt)
            && (-CLOCK_SKEW_SECS..=STATE_TTL_SECS).contains(&age))
        .then_some(attempt)
    }

    fn mac(&self, key: &hmac::Key, content: &str) -> String {
        let tag = hmac::sign(key, content.as_bytes());
        hex_lower(tag.as_ref().get(..MAC_BYTES).unwrap_or_default())
    }

    /// A visit inside WeChat: authorize, or on the way back exchange the code and create the
    /// JSAPI order.
    pub async fn visit_in_wechat<B: Backends>(
        &self,
        app: &Ferrypay<B>,
        link: &PaymentLink,
    ) -> Result<LinkStep, VisitError> {
        let now = app.clock.now();
        let (Some(code), Some(state)) = (&link.query.code, &link.query.state) else {
            return self.authorize(link, 1, now);
        };
        // Not our state (forged, for another link, or stale): start over, harmlessly.
        let Some(attempt) = self.check_state(link, state, now) else {
            tracing::info!("OAuth state invalid or expired: restarting the authorization");
            return self.authorize(link, 1, now);
        };
        let identity = match self.oauth.openid_for_code(code).await {
            Ok(identity) => identity,
            // A refresh or back button replays a used code: a fresh authorization fixes it.
            Err(OAuthError::CodeInvalidOrUsed { .. }) if attempt < MAX_OAUTH_ATTEMPTS => {
                return self.authorize(link, attempt + 1, now);
            }
            Err(OAuthError::CodeInvalidOrUsed { .. }) => return Err(VisitError::AuthorizationLoop),
            Err(OAuthError::Unavailable(_) | OAuthError::Rejected { .. }) => {
                return Err(VisitError::OAuthUnavailable)
            }
        };
        if identity.is_snapshot_user {
            return Ok(LinkStep::SnapshotUser);
        }
        let created = app
            .create_link_order(
                link,
                LinkPayment::Jsapi {
                    openid: identity.openid,
                },
            )
            .await?;
        Ok(LinkStep::Cashier {
            url: self.cashier_url(&created.order, link.return_url.as_ref()),
        })
    }

    /// A payer on a computer asked for a native QR code: create the order.
    pub async fn pay_by_qr<B: Backends>(
        &self,
        app: &Ferrypay<B>,
        link: &PaymentLink,
    ) -> Result<LinkStep, VisitError> {
        let created = app.create_link_order(link, LinkPayment::Native).await?;
        Ok(LinkStep::Cashier {
            url: self.cashier_url(&created.order, link.return_url.as_ref()),
        })
    }

    /// The ticket's query string: `order_no=..[&return_url=..]&t={expiry}{MAC}`.
    fn ticket_query(&self, order: &Order, return_url: Option<&Url>) -> String {
        let expires = order.expires_at.plus_secs(TICKET_GRACE_SECS);
        let return_url = return_url.map(Url::as_str);
        let t = format!(
            "{:010}{}",
            expires.unix(),
            self.ticket_mac(&order.order_no, return_url, expires)
        );
        match return_url {
            Some(url) => format!(
                "order_no={}&return_url={}&t={t}",
                order.order_no,
                encode_component(url)
            ),
            None => format!("order_no={}&t={t}", order.order_no),
        }
    }

    fn ticket_mac(
        &self,
        order_no: &OrderNo,
        return_url: Option<&str>,
        expires: Timestamp,
    ) -> String {
        self.mac(
            &self.ticket_key,
            &format!(
                "{order_no}\n{}\n{}",
                return_url.unwrap_or(""),
                expires.unix()
            ),
        )
    }

    pub fn cashier_url(&self, order: &Order, return_url: Option<&Url>) -> String {
        format!(
            "{}{CASHIER_PATH}?{}",
            self.public_url,
            self.ticket_query(order, return_url)
        )
    }

    pub fn status_url(&self, order: &Order, return_url: Option<&Url>) -> String {
        format!(
            "{}{STATUS_PATH}?{}",
            self.public_url,
            self.ticket_query(order, return_url)
        )
    }

    /// Reads and checks the ticket of a cashier or status request.
    pub fn ticket(
        &self,
        query: Option<&str>,
        now: Timestamp,
    ) -> Result<CashierTicket, TicketError> {
        let mut order_no = None;
        let mut return_url = None;
        let mut t = None;
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match name.as_ref() {
                "order_no" => &mut order_no,
                "return_url" => &mut return_url,
                "t" => &mut t,
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(TicketError::Invalid);
            }
        }
        let order_no = order_no
            .as_deref()
            .and_then(OrderNo::parse)
            .ok_or(TicketError::Invalid)?;
        let t = t.ok_or(TicketError::Invalid)?;
        if t.len() != 10 + 2 * MAC_BYTES || !t.is_ascii() {
            return Err(TicketError::Invalid);
        }
        let (expires, mac) = t.split_at(10);
        let expires = Timestamp::from_unix(expires.parse().map_err(|_| TicketError::Invalid)?);
        let expected = self.ticket_mac(&order_no, return_url.as_deref(), expires);
        if !constant_time_eq(expected.as_bytes(), mac.as_bytes()) {
            return Err(TicketError::Invalid);
        }
        if now > expires {
            return Err(TicketError::Expired);
        }
        let return_url = match return_url {
            Some(url) => Some(Url::parse(&url).map_err(|_| TicketError::Invalid)?),
            None => None,
        };
        Ok(CashierTicket {
            order_no,
            return_url,
            expires,
        })
    }
}

/// `return_url` with `order_no` and `status` (`success` or `fail`) added to its query. The
/// merchant must still confirm the payment (webhook or query): this is the payer's way back,
/// not a proof.
pub fn return_to(return_url: &Url, order_no: &OrderNo, paid: bool) -> String {
    let mut url = return_url.clone();
    url.query_pairs_mut()
        .append_pair("order_no", order_no.as_str())
        .append_pair("status", if paid { "success" } else { "fail" });
    url.into()
}

/// How a link's payer pays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkPayment {
    Jsapi { openid: String },
    Native,
}

impl<B: Backends> Ferrypay<B> {
    /// Checks a link against its merchant: the key (publishable only), the signature (required
    /// if the merchant says so), every parameter, the expiry and the return URL.
    pub async fn open_link(&self, query: &LinkQuery) -> Result<PaymentLink, LinkError> {
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
                LinkError::Unavailable
            })?
            .ok_or(LinkError::UnknownKey)?;
        if kind != KeyKind::Publishable {
            return Err(LinkError::SecretKeyInLink);
        }
        if merchant.status != MerchantStatus::Active {
            return Err(LinkError::MerchantDisabled);
        }
        // No value may hold a control character: the signing string's lines must read back
        // one way only.
        if let Some((name, _)) = query
            .params
            .iter()
            .find(|(_, v)| v.chars().any(char::is_control))
        {
            return Err(LinkError::InvalidField(name));
        }
        let signed = self.check_link_signature(&merchant, query)?;
        let amount = query
            .get("amount")
            .filter(|a| !a.is_empty() && a.len() <= 12 && a.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|a| a.parse::<i64>().ok())
            .and_then(Fen::order_amount)
            .ok_or(LinkError::InvalidAmount)?;
        let description = text_param(query, "description", DESCRIPTION_MAX_CHARS)?;
        let attach = text_param(query, "attach", ATTACH_MAX_CHARS)?;
        if let Some(expires) = query.get("expires").filter(|e| !e.is_empty()) {
            let expires = expires
                .parse::<i64>()
                .map_err(|_| LinkError::InvalidField("expires"))?;
            if self.clock.now().unix() > expires {
                return Err(LinkError::Expired);
            }
        }
        let return_url = match query.get("return_url").filter(|u| !u.is_empty()) {
            None => None,
            Some(raw) => Some(acceptable_return_url(&merchant, raw)?),
        };
        Ok(PaymentLink {
            merchant,
            amount,
            description,
            attach,
            return_url,
            signed,
            query: query.clone(),
        })
    }

    /// `Ok(true)` for a valid signature, `Ok(false)` for an unsigned link the merchant allows.
    fn check_link_signature(
        &self,
        merchant: &Merchant,
        query: &LinkQuery,
    ) -> Result<bool, LinkError> {
        let settings = &merchant.payment_links;
        match (&query.sign, &settings.signing_secret) {
            (None, _) if settings.require_signed => Err(LinkError::SignatureRequired),
            (None, _) => Ok(false),
            (Some(sign), Some(secret)) => {
                let pairs: Vec<(&str, &str)> =
                    query.params.iter().map(|(n, v)| (*n, v.as_str())).collect();
                if link_signature_valid(secret.expose(), &pairs, sign) {
                    Ok(true)
                } else {
                    Err(LinkError::SignatureInvalid)
                }
            }
            // A signature we cannot check is never ignored.
            (Some(_), None) => Err(LinkError::SignatureInvalid),
        }
    }

    /// A secret key was put in a public link: refuse it, and tell the operator whose it is.
    async fn warn_secret_key_in_link(&self, key: &str) {
        if let Ok(Some((merchant, KeyKind::Secret))) =
            self.store.merchant_by_key(&hash_api_key(key)).await
        {
            tracing::warn!(merchant_id = %merchant.id, "a payment link carries this merchant's secret key: it is exposed and must be rotated");
        }
    }

    /// Creates the order a link asks for, counted against the merchant's rate limit.
    pub async fn create_link_order(
        &self,
        link: &PaymentLink,
        payment: LinkPayment,
    ) -> Result<CreatedOrder, ApiError> {
        self.check_rate_limit(&link.merchant).await?;
        let (pay_type, openid) = match payment {
            LinkPayment::Jsapi { openid } => (PayType::Jsapi, Some(openid)),
            LinkPayment::Native => (PayType::Native, None),
        };
        let request = CreateOrder {
            amount: link.amount,
            description: link.description.clone(),
            pay_type,
            openid,
            client_ip: None,
            out_trade_no: None,
            attach: link.attach.clone(),
            notify_url: None,
            expire_minutes: None,
        };
        Ok(self.create_order(&link.merchant, request).await?)
    }

    /// The order a ticket names. With `query_through` a pending order asks the channel (the
    /// status checks: a payment whose notification is late still shows); without, only an
    /// expired pending order does (the cashier page, loaded once).
    pub async fn ticket_order(
        &self,
        ticket: &CashierTicket,
        query_through: bool,
    ) -> Result<Order, ApiError> {
        let order = self
            .store
            .get_order(&ticket.order_no)
            .await?
            .ok_or(ApiError::OrderNotFound)?;
        if query_through || order.is_expired(self.clock.now()) {
            Ok(self.refresh(order).await?)
        } else {
            Ok(order)
        }
    }
}

/// An optional text parameter: at most `max` characters, not blank (control characters are
/// refused for every parameter before this).
fn text_param(
    query: &LinkQuery,
    name: &'static str,
    max: usize,
) -> Result<Option<String>, LinkError> {
    match query.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.chars().count() <= max && !v.trim().is_empty() => Ok(Some(v.to_string())),
        Some(_) => Err(LinkError::InvalidField(name)),
    }
}

/// An http(s) URL with a host and no credentials, on a host the merchant allows: the payer is
/// sent there, so nothing else may pass (no open redirect through ferrypay's domain).
fn acceptable_return_url(merchant: &Merchant, raw: &str) -> Result<Url, LinkError> {
    if raw.len() > RETURN_URL_MAX_LEN {
        return Err(LinkError::ReturnUrlInvalid);
    }
    let url = Url::parse(raw).map_err(|_| LinkError::ReturnUrlInvalid)?;
    let host = match url.host_str() {
        Some(host) if !host.is_empty() => host,
        _ => return Err(LinkError::ReturnUrlInvalid),
    };
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(LinkError::ReturnUrlInvalid);
    }
    if !merchant.payment_links.return_host_allowed(host) {
        return Err(LinkError::ReturnHostNotAllowed);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        model::{Clock, ManualClock, Secret},
        testing::*,
    };

    const START: i64 = 1_766_284_200;

    fn gateway() -> Gateway {
        Gateway::new(GatewaySettings {
            public_url: "https://pay.example.com/".into(),
            oauth: OAuthConfig::new("wxappid", Secret::new("oauth-secret".into())),
        })
        .unwrap()
    }

    async fn setup() -> (TestApp, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix(START)));
        let app = app_with_clock(clock.clone());
        onboard_test_merchant(&app, "Shop").await;
        (app, clock)
    }

    async fn open(app: &TestApp, query: &str) -> Result<PaymentLink, LinkError> {
        app.open_link(&LinkQuery::parse(Some(query))?).await
    }

    fn state_of(step: LinkStep) -> String {
        let LinkStep::Authorize { url } = step else {
            panic!("{step:?}")
        };
        let url = Url::parse(url.trim_end_matches("#wechat_redirect")).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned()
    }

    #[tokio::test]
    async fn a_state_is_good_for_its_link_for_ten_minutes() {
        let (app, clock) = setup().await;
        let gateway = gateway();
        let link = open(&app, &format!("key={TEST_PUBLISHABLE_KEY}&amount=100"))
            .await
            .unwrap();
        let other = open(&app, &format!("key={TEST_PUBLISHABLE_KEY}&amount=101"))
            .await
            .unwrap();
        let now = clock.now();
        let state = state_of(gateway.authorize(&link, 2, now).unwrap());
        assert_eq!(state.len(), 43);
        assert_eq!(gateway.check_state(&link, &state, now), Some(2));
        assert_eq!(gateway.check_state(&other, &state, now), None);
        assert_eq!(
            gateway.check_state(&link, &state, now.plus_secs(STATE_TTL_SECS)),
            Some(2)
        );
        assert_eq!(
            gateway.check_state(&link, &state, now.plus_secs(STATE_TTL_SECS + 1)),
            None
        );
        // From a clock running ahead: a minute's grace, no more.
        assert_eq!(
            gateway.check_state(&link, &state, now.plus_secs(-60)),
            Some(2)
        );
        assert_eq!(gateway.check_state(&link, &state, now.plus_secs(-61)), None);
        // Another attempt number under the same MAC is another state.
        let bumped = format!("3{}", &state[1..]);
        assert_eq!(gateway.check_state(&link, &bumped, now), None);
        // Another gateway secret knows nothing of it.
        let other_gateway = Gateway::new(GatewaySettings {
            public_url: "https://pay.example.com".into(),
            oauth: OAuthConfig::new("wxappid", Secret::new("rotated".into())),
        })
        .unwrap();
        assert_eq!(other_gateway.check_state(&link, &state, now), None);
        for junk in ["", "1", "é", &"9".repeat(43), &state[..42]] {
            assert_eq!(gateway.check_state(&link, junk, now), None, "{junk}");
        }
    }

    #[tokio::test]
    async fn a_ticket_names_one_order_and_return_url_until_an_hour_after_expiry() {
        let (app, clock) = setup().await;
        let gateway = gateway();
        let link = open(
            &app,
            &format!(
                "key={TEST_PUBLISHABLE_KEY}&amount=100&return_url=https%3A%2F%2Fm.example%2Fr"
            ),
        )
        .await
        .unwrap();
        let order = app
            .create_link_order(&link, LinkPayment::Native)
            .await
            .unwrap()
            .order;
        let url = gateway.cashier_url(&order, link.return_url.as_ref());
        assert!(url.starts_with("https://pay.example.com/pay/gateway/cashier?order_no="));
        let query = url.split_once('?').unwrap().1.to_string();
        let ticket = gateway.ticket(Some(&query), clock.now()).unwrap();
        assert_eq!(ticket.order_no, order.order_no);
        assert_eq!(
            ticket.return_url.as_ref().map(Url::as_str),
            Some("https://m.example/r")
        );
        let last = order.expires_at.plus_secs(TICKET_GRACE_SECS);
        assert!(gateway.ticket(Some(&query), last).is_ok());
        assert_eq!(
            gateway.ticket(Some(&query), last.plus_secs(1)),
            Err(TicketError::Expired)
        );
        // Any edit is refused: the order, the return URL, the expiry, a missing or doubled part.
        let other_no = OrderNo::generate(clock.now()).unwrap();
        for edited in [
            query.replace(order.order_no.as_str(), other_no.as_str()),
            query.replace("m.example", "evil.example"),
            query.replace("&return_url=https%3A%2F%2Fm.example%2Fr", ""),
            query.replace("t=1", "t=2"),
            format!("{query}&t=1"),
            format!("{query}&order_no={other_no}"),
            String::new(),
        ] {
            assert_eq!(
                gateway.ticket(Some(&edited), clock.now()),
                Err(TicketError::Invalid),
                "{edited}"
            );
        }
    }

    #[test]
    fn the_way_back_keeps_the_merchants_query_and_fragment() {
        let no = OrderNo::parse("FP20251221103000ABC123").unwrap();
        let url = Url::parse("https://m.example/r?cart=7&x=a%20b#top").unwrap();
        assert_eq!(
            return_to(&url, &no, true),
            "https://m.example/r?cart=7&x=a%20b&order_no=FP20251221103000ABC123&status=success#top"
        );
        let bare = Url::parse("https://m.example").unwrap();
        assert_eq!(
            return_to(&bare, &no, false),
            "https://m.example/?order_no=FP20251221103000ABC123&status=fail"
        );
    }

    #[test]
    fn a_link_query_keeps_its_parameters_and_drops_the_rest() {
        let q = LinkQuery::parse(Some(
            "from=singlemessage&amount=1&sign=ab&key=pk_x&isappinstalled=0&code=c&state=s",
        ))
        .unwrap();
        assert_eq!(
            q.params,
            vec![("key", "pk_x".to_string()), ("amount", "1".to_string())]
        );
        assert_eq!(q.sign.as_deref(), Some("ab"));
        assert_eq!(
            (q.code.as_deref(), q.state.as_deref()),
            (Some("c"), Some("s"))
        );
        for doubled in [
            "key=a&key=b",
            "sign=a&sign=b",
            "code=a&code=b",
            "state=a&state=b",
        ] {
            assert!(matches!(
                LinkQuery::parse(Some(doubled)),
                Err(LinkError::DuplicateParam(_))
            ));
        }
        assert_eq!(LinkQuery::parse(None).unwrap(), LinkQuery::default());
    }

    #[test]
    fn only_wechat_user_agents_count_as_wechat() {
        assert!(in_wechat(Some(
            "Mozilla/5.0 ... MicroMessenger/8.0.50 NetType/WIFI"
        )));
        assert!(!in_wechat(Some("Mozilla/5.0 Chrome/126")));
        assert!(!in_wechat(None));
    }
}
