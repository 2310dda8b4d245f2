//! Jump-pay links, the use case. A link (`key=pk_...&amount=..`, parsed by the caller) is
//! opened against its merchant ([`Ferrypay::open_link`]); then, by what the caller saw:
//!
//! - inside WeChat ([`Gateway::visit_in_wechat`]), a silent OAuth (`snsapi_base`) for the
//!   payer's openid. The way back carries the link's own parameters and a `state` binding them
//!   (`sign::oauth_state`: an attempt number, a time and a MAC), so a state is good for one
//!   link, for [`STATE_TTL_SECS`], and a replayed code restarts the authorization a bounded
//!   number of times. One state is good for [`MAX_CODE_EXCHANGES_PER_STATE`] code exchanges
//!   in all (a counter in the rate-limit store, forgotten when the state expires), so junk
//!   codes replayed on one state cannot spend WeChat's OAuth quota. Then a JSAPI order is
//!   created (counted in the merchant's link bucket) and the payer goes to its cashier;
//! - on a computer that asked for a QR code ([`Gateway::pay_by_qr`]), a native order.
//!
//! The cashier and its status checks are reached with an order-scoped [`CashierTicket`]
//! (`sign::ticket`): a MAC over the order number, the return URL and an expiry. It shows one
//! order's status and nothing else; the merchant's keys never reach the payer's browser. Its
//! status checks answer from the store and ask WeChat Pay about a pending order at most once
//! per [`POLL_QUERY_SECS`] (a paid or closed order never).
//!
//! The MAC keys are derived from the official account's OAuth secret (a label per use), so the
//! gateway needs no secret of its own; rotating that secret ends open states and tickets, which
//! only asks payers in the middle of paying to open the link again. Paths, browsers and URLs
//! are the HTTP side's (the api layer's gateway module); the openid comes through the [`OAuth`]
//! port.

mod link;
mod oauth;

use sha2::{Digest, Sha256};
use url::Url;

pub use super::limits::POLL_QUERY_SECS;
pub use crate::sign::oauth_state::{MAX_OAUTH_ATTEMPTS, STATE_TTL_SECS};
pub use link::{LinkError, LinkFields, LinkQuery, PaymentLink};
pub use oauth::{FakeOAuth, OAuth};

use super::{Backends, CreateOrder, CreatedOrder, Error, ErrorCode, Ferrypay};
use crate::{
    model::{Openid, Order, OrderNo, OrderStatus, PayType, ReturnUrl, Timestamp},
    sign::{
        hex_lower,
        oauth_state::{check_state, issue_state, StateKey},
        ticket::{ticket_expiry, ticket_token, TicketKey},
    },
    store::OrderStore,
    wechat::oauth::{OAuthClient, OAuthConfig, OAuthError},
};

/// Code exchanges one OAuth state allows in all, whatever the codes.
pub const MAX_CODE_EXCHANGES_PER_STATE: u64 = 3;

/// A ticket outlives its order by this much, so the payer can still see the result.
pub const TICKET_GRACE_SECS: i64 = 3600;

/// What the gateway needs besides the services: where it is reached and the official
/// account's OAuth settings.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// `FERRYPAY_PUBLIC_URL`: the base of the OAuth `redirect_uri` and of the cashier links.
    pub public_url: String,
    pub oauth: OAuthConfig,
}

/// The jump-pay gateway: its settings, the OAuth port and the keys of its states and tickets.
/// Built once.
pub struct Gateway<O: OAuth = OAuthClient> {
    public_url: String,
    oauth_config: OAuthConfig,
    oauth: O,
    state_key: StateKey,
    ticket_key: TicketKey,
}

impl<O: OAuth> std::fmt::Debug for Gateway<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("public_url", &self.public_url)
            .field("appid", &self.oauth_config.appid)
            .finish_non_exhaustive()
    }
}

/// WeChat's redirect back to a link: the OAuth code and our state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthReturn {
    pub code: String,
    pub state: String,
}

/// Where a visit inside WeChat goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStep {
    /// To WeChat's authorization, carrying this state.
    Authorize { state: String },
    /// The order exists: to its cashier.
    Cashier(CashierTicket),
    /// WeChat's snapshot (preview) mode: its openid cannot pay; the payer must open the page.
    SnapshotUser,
}

/// A visit that could not go on.
#[derive(Debug, thiserror::Error)]
pub enum VisitError {
    /// Codes kept failing as invalid or used, [`MAX_OAUTH_ATTEMPTS`] times, or one state came
    /// back more than [`MAX_CODE_EXCHANGES_PER_STATE`] times.
    #[error("the authorization failed {MAX_OAUTH_ATTEMPTS} times")]
    AuthorizationLoop,
    /// WeChat's OAuth is unreachable, busy or refuses our configuration (the client logs it).
    #[error("WeChat OAuth unavailable")]
    OAuthUnavailable(#[source] OAuthError),
    /// Creating the order failed (payment service, rate limit, storage).
    #[error("creating the link's order")]
    Order(#[from] Error),
}

impl VisitError {
    pub fn code(&self) -> ErrorCode {
        match self {
            VisitError::AuthorizationLoop => ErrorCode::OauthFailed,
            VisitError::OAuthUnavailable(_) => ErrorCode::OauthUnavailable,
            VisitError::Order(e) => e.code(),
        }
    }
}

/// The order-scoped pass to a cashier page and its status: `order_no`, `return_url`, `t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashierTicket {
    pub order_no: OrderNo,
    pub return_url: Option<Url>,
    pub expires: Timestamp,
    /// The token `t` (expiry and MAC).
    pub token: String,
}

/// A ticket as a request gives it: each part once (the caller refuses doubled parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketParts {
    pub order_no: OrderNo,
    pub return_url: Option<String>,
    pub token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is malformed or does not match")]
    Invalid,
    #[error("the ticket has expired")]
    Expired,
}

impl TicketError {
    pub fn code(self) -> ErrorCode {
        match self {
            TicketError::Invalid => ErrorCode::InvalidTicket,
            TicketError::Expired => ErrorCode::TicketExpired,
        }
    }
}

/// How a link's payer pays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkPayment {
    Jsapi { openid: Openid },
    Native,
}

impl Gateway {
    /// The gateway with WeChat's OAuth client.
    pub fn new(settings: GatewaySettings) -> Result<Gateway, OAuthError> {
        let oauth = OAuthClient::new(&settings.oauth)?;
        Ok(Gateway::with_oauth(settings, oauth))
    }
}

impl<O: OAuth> Gateway<O> {
    /// The gateway with another OAuth implementation (a fake, in tests).
    pub fn with_oauth(settings: GatewaySettings, oauth: O) -> Gateway<O> {
        let secret = settings.oauth.secret.expose().as_bytes();
        Gateway {
            public_url: settings.public_url.trim_end_matches('/').to_string(),
            state_key: StateKey::derive(secret),
            ticket_key: TicketKey::derive(secret),
            oauth_config: settings.oauth,
            oauth,
        }
    }

    /// The base of every URL the gateway hands out, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Where the payer is sent to authorize (WeChat's host and the appid).
    pub fn oauth_config(&self) -> &OAuthConfig {
        &self.oauth_config
    }

    pub fn oauth(&self) -> &O {
        &self.oauth
    }

    /// Authorization number `attempt` for this link.
    fn authorize(&self, link: &PaymentLink, attempt: u8, now: Timestamp) -> LinkStep {
        let state = issue_state(&self.state_key, attempt, now, &link.query.state_content());
        LinkStep::Authorize { state }
    }

    /// A visit inside WeChat: authorize, or on the way back exchange the code and create the
    /// JSAPI order.
    pub async fn visit_in_wechat<B: Backends>(
        &self,
        app: &Ferrypay<B>,
        link: &PaymentLink,
        back: Option<&OAuthReturn>,
    ) -> Result<LinkStep, VisitError> {
        let now = app.clock.now();
        let Some(back) = back else {
            return Ok(self.authorize(link, 1, now));
        };
        // Not our state (forged, for another link, or stale): start over, harmlessly.
        let content = link.query.state_content();
        let Some(checked) = check_state(&self.state_key, &back.state, &content, now) else {
            tracing::info!("OAuth state invalid or expired: restarting the authorization");
            return Ok(self.authorize(link, 1, now));
        };
        let attempt = checked.attempt;
        let uses = format!(
            "oauth#{}",
            hex_lower(&Sha256::digest(back.state.as_bytes()))
        );
        if !app
            .within_uses(&uses, checked.expires(), MAX_CODE_EXCHANGES_PER_STATE)
            .await?
        {
            tracing::warn!("an OAuth state came back too often: refused without asking WeChat");
            return Err(VisitError::AuthorizationLoop);
        }
        let identity = match self.oauth.exchange_code(&back.code).await {
            Ok(identity) => identity,
            // A refresh or back button replays a used code: a fresh authorization fixes it.
            Err(OAuthError::CodeInvalidOrUsed { .. }) if attempt < MAX_OAUTH_ATTEMPTS => {
                return Ok(self.authorize(link, attempt + 1, now));
            }
            Err(OAuthError::CodeInvalidOrUsed { .. }) => return Err(VisitError::AuthorizationLoop),
            Err(e @ (OAuthError::Unavailable(_) | OAuthError::Rejected { .. })) => {
                return Err(VisitError::OAuthUnavailable(e))
            }
        };
        if identity.is_snapshot_user {
            return Ok(LinkStep::SnapshotUser);
        }
        // WeChat's openids are `[A-Za-z0-9_-]`: anything else is no usable answer.
        let openid = Openid::parse(&identity.openid).map_err(|e| {
            let e = OAuthError::Unavailable(format!("the openid is not one: {e}"));
            tracing::warn!(error = %e, "OAuth code exchange");
            VisitError::OAuthUnavailable(e)
        })?;
        let payment = LinkPayment::Jsapi { openid };
        let created = app.create_link_order(link, payment).await?;
        Ok(LinkStep::Cashier(self.ticket(
            &created.order,
            link.return_url.as_ref().map(ReturnUrl::url),
        )))
    }

    /// A payer on a computer asked for a native QR code: create the order.
    pub async fn pay_by_qr<B: Backends>(
        &self,
        app: &Ferrypay<B>,
        link: &PaymentLink,
    ) -> Result<CashierTicket, VisitError> {
        let created = app.create_link_order(link, LinkPayment::Native).await?;
        Ok(self.ticket(&created.order, link.return_url.as_ref().map(ReturnUrl::url)))
    }

    /// The ticket of an order's cashier, good until [`TICKET_GRACE_SECS`] after its expiry.
    pub fn ticket(&self, order: &Order, return_url: Option<&Url>) -> CashierTicket {
        let expires = order.expires_at.plus_secs(TICKET_GRACE_SECS);
        let token = ticket_token(
            &self.ticket_key,
            &order.order_no,
            return_url.map(Url::as_str),
            expires,
        );
        CashierTicket {
            order_no: order.order_no.clone(),
            return_url: return_url.cloned(),
            expires,
            token,
        }
    }

    /// Checks the ticket of a cashier or status request.
    pub fn check_ticket(
        &self,
        parts: TicketParts,
        now: Timestamp,
    ) -> Result<CashierTicket, TicketError> {
        let expires = ticket_expiry(
            &self.ticket_key,
            &parts.order_no,
            parts.return_url.as_deref(),
            &parts.token,
        )
        .ok_or(TicketError::Invalid)?;
        if now > expires {
            return Err(TicketError::Expired);
        }
        let return_url = match parts.return_url {
            Some(url) => Some(Url::parse(&url).map_err(|_| TicketError::Invalid)?),
            None => None,
        };
        Ok(CashierTicket {
            order_no: parts.order_no,
            return_url,
            expires,
            token: parts.token,
        })
    }
}

impl<B: Backends> Ferrypay<B> {
    /// Creates the order a link asks for, counted against the merchant's link bucket (never
    /// its API bucket). The bucket bounds the prepay calls links cause; an order nobody pays
    /// expires as any other (and one whose prepay failed is closed at once).
    pub async fn create_link_order(
        &self,
        link: &PaymentLink,
        payment: LinkPayment,
    ) -> Result<CreatedOrder, Error> {
        self.check_link_limit(&link.merchant).await?;
        let (pay_type, openid) = match payment {
            LinkPayment::Jsapi { openid } => (PayType::Jsapi, Some(openid.into_string())),
            LinkPayment::Native => (PayType::Native, None),
        };
        let request = CreateOrder {
            amount: link.amount,
            description: link.description.as_ref().map(|d| d.as_str().to_string()),
            pay_type,
            openid,
            client_ip: None,
            out_trade_no: None,
            attach: link.attach.as_ref().map(|a| a.as_str().to_string()),
            notify_url: None,
            expire_minutes: None,
            source: link.source(),
        };
        self.create_order(&link.merchant, request).await
    }

    /// The order a ticket names. With `query_through` a pending order asks the channel (the
    /// status checks: a payment whose notification is late still shows); without, only an
    /// expired pending order does (the cashier page). Either asks at most once per order per
    /// [`POLL_QUERY_SECS`] (a token in the rate-limit store), and a paid or closed order
    /// never: in between the store answers.
    pub async fn ticket_order(
        &self,
        ticket: &CashierTicket,
        query_through: bool,
    ) -> Result<Order, Error> {
        let order = self
            .store
            .get_order(&ticket.order_no)
            .await?
            .ok_or(Error::OrderNotFound)?;
        if order.status != OrderStatus::Pending {
            return Ok(order);
        }
        if !query_through && !order.is_expired(self.clock.now()) {
            return Ok(order);
        }
        let token = format!("poll#{}", order.order_no);
        if self.first_in_window(&token, POLL_QUERY_SECS).await? {
            self.refresh(order).await
        } else {
            Ok(order)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        model::{Clock, Fen, ManualClock, OrderStatus, Secret},
        testing::*,
        wechat::oauth::OAuthIdentity,
    };

    use crate::testing::START;

    fn settings(secret: &str) -> GatewaySettings {
        GatewaySettings {
            public_url: "https://pay.example.com/".into(),
            oauth: OAuthConfig::new("wxappid", Secret::new(secret.into())),
        }
    }

    fn gateway() -> Gateway<FakeOAuth> {
        Gateway::with_oauth(settings("oauth-secret"), FakeOAuth::new())
    }

    async fn setup() -> (TestApp, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix(START)));
        let app = app_with_clock(clock.clone());
        onboard_test_merchant(&app, "Shop").await;
        (app, clock)
    }

    fn query(amount: &str) -> LinkQuery {
        LinkQuery {
            params: vec![
                ("key", TEST_PUBLISHABLE_KEY.to_string()),
                ("amount", amount.to_string()),
            ],
            sign: None,
        }
    }

    fn fields(amount: i64) -> LinkFields {
        LinkFields {
            amount: Fen::new(amount),
            description: None,
            attach: None,
            expires: None,
            return_url: None,
        }
    }

    async fn open(app: &TestApp, amount: i64) -> PaymentLink {
        app.open_link(query(&amount.to_string()), Ok(fields(amount)))
            .await
            .unwrap()
    }

    fn payer(openid: &str) -> Result<OAuthIdentity, OAuthError> {
        Ok(OAuthIdentity {
            openid: openid.into(),
            scope: "snsapi_base".into(),
            unionid: None,
            is_snapshot_user: false,
        })
    }

    fn back(code: &str, state: &str) -> OAuthReturn {
        OAuthReturn {
            code: code.into(),
            state: state.into(),
        }
    }

    fn state_of(step: LinkStep) -> String {
        let LinkStep::Authorize { state } = step else {
            panic!("{step:?}")
        };
        state
    }

    async fn visit(
        app: &TestApp,
        gateway: &Gateway<FakeOAuth>,
        link: &PaymentLink,
        back: Option<&OAuthReturn>,
    ) -> Result<LinkStep, VisitError> {
        gateway.visit_in_wechat(app, link, back).await
    }

    #[tokio::test]
    async fn a_state_is_good_for_its_link_for_ten_minutes() {
        let (app, clock) = setup().await;
        let gateway = gateway();
        let link = open(&app, 100).await;
        let other = open(&app, 101).await;
        let state = state_of(visit(&app, &gateway, &link, None).await.unwrap());
        assert_eq!(state.len(), 43);
        assert!(state.starts_with('1'), "the first attempt: {state}");
        // Another link's state starts the authorization over, and spends no code.
        gateway.oauth().issue("c1", payer("o_payer"));
        let step = visit(&app, &gateway, &other, Some(&back("c1", &state))).await;
        assert!(state_of(step.unwrap()).starts_with('1'));
        assert_eq!(gateway.oauth().pending(), 1, "the code was not exchanged");
        // So does a stale one.
        clock.set(clock.now().plus_secs(STATE_TTL_SECS + 1));
        let step = visit(&app, &gateway, &link, Some(&back("c1", &state))).await;
        assert!(state_of(step.unwrap()).starts_with('1'));
        // Another gateway secret knows nothing of a fresh one.
        let fresh = state_of(visit(&app, &gateway, &link, None).await.unwrap());
        let rotated = Gateway::with_oauth(settings("rotated"), FakeOAuth::new());
        rotated.oauth().issue("c2", payer("o_payer"));
        let step = visit(&app, &rotated, &link, Some(&back("c2", &fresh))).await;
        assert!(state_of(step.unwrap()).starts_with('1'));
        // Its own gateway takes it: the order is created, the payer goes to its cashier.
        let step = visit(&app, &gateway, &link, Some(&back("c1", &fresh))).await;
        let Ok(LinkStep::Cashier(ticket)) = step else {
            panic!("{step:?}")
        };
        let order = stored_order(&app, &ticket.order_no).await;
        assert_eq!(order.amount, Fen::new(100));
        assert_eq!(order.pay_type, PayType::Jsapi);
        assert_eq!(order.status, OrderStatus::Pending);
    }

    #[tokio::test]
    async fn a_replayed_code_restarts_the_authorization_three_times_at_most() {
        let (app, _) = setup().await;
        let gateway = gateway();
        let link = open(&app, 100).await;
        let mut state = state_of(visit(&app, &gateway, &link, None).await.unwrap());
        // No code was issued: each is refused as used, and the next attempt begins.
        for attempt in 2..=MAX_OAUTH_ATTEMPTS {
            let step = visit(&app, &gateway, &link, Some(&back("used", &state))).await;
            state = state_of(step.unwrap());
            assert!(state.starts_with(&attempt.to_string()), "{state}");
        }
        let last = visit(&app, &gateway, &link, Some(&back("used", &state))).await;
        assert!(
            matches!(last, Err(VisitError::AuthorizationLoop)),
            "{last:?}"
        );
        assert_eq!(last.unwrap_err().code(), ErrorCode::OauthFailed);
        assert_eq!(app.channel.calls(), 0, "no order without an openid");
    }

    #[tokio::test]
    async fn one_state_allows_three_code_exchanges_in_all() {
        let (app, clock) = setup().await;
        let gateway = gateway();
        let link = open(&app, 100).await;
        let state = state_of(visit(&app, &gateway, &link, None).await.unwrap());
        let mut refused = 0;
        for i in 0..20 {
            let junk = back(&format!("junk{i}"), &state);
            match visit(&app, &gateway, &link, Some(&junk)).await {
                Ok(LinkStep::Authorize { .. }) => {}
                Err(VisitError::AuthorizationLoop) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(gateway.oauth().exchanges(), MAX_CODE_EXCHANGES_PER_STATE);
        assert_eq!(refused, 20 - MAX_CODE_EXCHANGES_PER_STATE);
        // Even a good code is not exchanged on a spent state; a fresh state takes it.
        gateway.oauth().issue("good", payer("o_payer"));
        let spent = visit(&app, &gateway, &link, Some(&back("good", &state))).await;
        assert!(
            matches!(spent, Err(VisitError::AuthorizationLoop)),
            "{spent:?}"
        );
        assert_eq!(gateway.oauth().pending(), 1);
        clock.set(clock.now().plus_secs(1));
        let fresh = state_of(visit(&app, &gateway, &link, None).await.unwrap());
        let step = visit(&app, &gateway, &link, Some(&back("good", &fresh))).await;
        assert!(matches!(step, Ok(LinkStep::Cashier(_))), "{step:?}");
    }

    #[tokio::test]
    async fn status_polls_ask_wechat_at_most_once_per_order_per_few_seconds() {
        let (app, clock) = setup().await;
        let gateway = gateway();
        let link = open(&app, 100).await;
        let ticket = gateway.pay_by_qr(&app, &link).await.unwrap();
        // 30 polls, one every second (the cashier polls every 2 s; 1 s is a hurried one).
        for _ in 0..30 {
            let order = app.ticket_order(&ticket, true).await.unwrap();
            assert_eq!(order.status, OrderStatus::Pending);
            clock.set(clock.now().plus_secs(1));
        }
        let queries = app.channel.queries();
        assert!(
            queries <= 30 / POLL_QUERY_SECS as u64 + 1,
            "{queries} queries"
        );
        assert!(queries >= 1);
        // Paid: the next asking poll settles it; after that WeChat is never asked again.
        let order = stored_order(&app, &ticket.order_no).await;
        app.channel.pay(&order.order_no, clock.now()).unwrap();
        clock.set(clock.now().plus_secs(POLL_QUERY_SECS));
        let paid = app.ticket_order(&ticket, true).await.unwrap();
        assert_eq!(paid.status, OrderStatus::Paid);
        let settled = app.channel.queries();
        for _ in 0..30 {
            clock.set(clock.now().plus_secs(1));
            let order = app.ticket_order(&ticket, true).await.unwrap();
            assert_eq!(order.status, OrderStatus::Paid);
        }
        assert_eq!(app.channel.queries(), settled, "no query for a paid order");
    }

    #[tokio::test]
    async fn link_orders_spend_the_link_bucket_never_the_api_bucket() {
        let (mut app, _) = setup().await;
        app.config.rate_limit_per_minute = Some(2);
        app.config.link_rate_limit_per_minute = Some(3);
        let gateway = gateway();
        let link = open(&app, 100).await;
        for _ in 0..3 {
            gateway.pay_by_qr(&app, &link).await.unwrap();
        }
        let calls = app.channel.calls();
        let limited = gateway.pay_by_qr(&app, &link).await.unwrap_err();
        assert_eq!(limited.code(), ErrorCode::RateLimited);
        assert_eq!(app.channel.calls(), calls, "no prepay over the limit");
        let merchant = app.authenticate(Some(TEST_SECRET_KEY), None).await.unwrap();
        assert_eq!(merchant.id, link.merchant.id);
    }

    #[tokio::test]
    async fn wechat_trouble_and_snapshot_users_create_no_order() {
        let (app, _) = setup().await;
        let gateway = gateway();
        let link = open(&app, 100).await;
        let state = state_of(visit(&app, &gateway, &link, None).await.unwrap());
        gateway.oauth().issue(
            "busy",
            Err(OAuthError::Unavailable("errcode -1: system busy".into())),
        );
        let busy = visit(&app, &gateway, &link, Some(&back("busy", &state))).await;
        let Err(err @ VisitError::OAuthUnavailable(_)) = busy else {
            panic!("{busy:?}")
        };
        assert_eq!(err.code(), ErrorCode::OauthUnavailable);
        assert!(std::error::Error::source(&err).is_some(), "keeps its cause");
        let mut snapshot = payer("o_virtual");
        if let Ok(identity) = &mut snapshot {
            identity.is_snapshot_user = true;
        }
        gateway.oauth().issue("preview", snapshot);
        let step = visit(&app, &gateway, &link, Some(&back("preview", &state))).await;
        assert_eq!(step.unwrap(), LinkStep::SnapshotUser);
        assert_eq!(app.channel.calls(), 0);
    }

    #[tokio::test]
    async fn a_ticket_names_one_order_and_return_url_until_an_hour_after_expiry() {
        let (app, clock) = setup().await;
        let gateway = gateway();
        let mut link = open(&app, 100).await;
        link.return_url = Some(ReturnUrl::parse("https://m.example/r").unwrap());
        let ticket = gateway.pay_by_qr(&app, &link).await.unwrap();
        let order = stored_order(&app, &ticket.order_no).await;
        assert_eq!(order.pay_type, PayType::Native);
        assert_eq!(
            ticket.expires,
            order.expires_at.plus_secs(TICKET_GRACE_SECS)
        );
        let parts = |ticket: &CashierTicket| TicketParts {
            order_no: ticket.order_no.clone(),
            return_url: ticket.return_url.as_ref().map(|u| u.to_string()),
            token: ticket.token.clone(),
        };
        let checked = gateway.check_ticket(parts(&ticket), clock.now()).unwrap();
        assert_eq!(checked, ticket);
        assert_eq!(
            checked.return_url.as_ref().map(Url::as_str),
            Some("https://m.example/r")
        );
        let last = ticket.expires;
        assert!(gateway.check_ticket(parts(&ticket), last).is_ok());
        assert_eq!(
            gateway.check_ticket(parts(&ticket), last.plus_secs(1)),
            Err(TicketError::Expired)
        );
        // Any edit is refused: the order, the return URL, the expiry.
        let other_no = OrderNo::generate(clock.now()).unwrap();
        let mut edits = vec![parts(&ticket); 4];
        edits[0].order_no = other_no;
        edits[1].return_url = Some("https://evil.example/r".into());
        edits[2].return_url = None;
        edits[3].token = edits[3].token.replacen('1', "2", 1);
        for edited in edits {
            assert_eq!(
                gateway.check_ticket(edited.clone(), clock.now()),
                Err(TicketError::Invalid),
                "{edited:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_link_is_checked_before_its_fields() {
        let (app, _) = setup().await;
        let mut unknown = query("100");
        unknown.params[0].1 = "pk_unknown".into();
        let bad_fields = || Err(LinkError::InvalidAmount);
        let err = app.open_link(unknown, bad_fields()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidApiKey);
        let err = app.open_link(query("x"), bad_fields()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidAmount);
        let mut expired = fields(100);
        expired.expires = Some(Timestamp::from_unix(START - 1));
        let err = app.open_link(query("100"), Ok(expired)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::LinkExpired);
        let mut controlled = query("100");
        controlled.params.push(("attach", "x\u{7}".into()));
        let err = app
            .open_link(controlled, Ok(fields(100)))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.field()),
            (ErrorCode::InvalidField, Some("attach"))
        );
    }
}
