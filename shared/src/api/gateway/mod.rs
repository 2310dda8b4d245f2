//! The jump-pay gateway's HTTP side: `GET`/`POST /pay/gateway` (a link), `GET
//! /pay/gateway/cashier` (the cashier page) and `GET /pay/gateway/status` (its JSON status
//! check). Each answer is a page, a redirect or (status) JSON; every failure is a readable
//! page in Chinese ([`pages::errors`]) under a stable code, never a blank screen.
//!
//! A visit is read once ([`query`]), handed to the link use case once (`service::gateway`),
//! and its outcome turned into a page or a redirect ([`urls`]). Every request first counts in
//! its client's bucket (`service::limits`; the address the platform saw, never a header): over
//! it, a `rate_limited` page, or JSON for the status check, with `Retry-After`.

pub mod query;
pub mod urls;

use http::{header, Method, StatusCode};
use serde::Serialize;

use super::{json_response, ApiError, ApiRequest, ApiResponse, ClientAddr};
use crate::{
    model::{Order, OrderNo, OrderStatus},
    pages::{
        errors::{error_text, ErrorText},
        redirect, Action, CashierMode, CashierPage, CashierState, MessagePage, OpenInWechatPage,
        Tone,
    },
    qr,
    service::{
        self,
        gateway::{CashierTicket, Gateway, LinkError, LinkStep, OAuth, TicketError, VisitError},
        Backends, ErrorCode, Ferrypay, PaymentInfo,
    },
    store::MerchantStore,
};
use query::{in_wechat, link_fields, ticket_parts, LinkRequest};
use urls::{authorization_url, cashier_url, link_url, return_to, status_url};

pub const GATEWAY_PATH: &str = "/pay/gateway";
pub const CASHIER_PATH: &str = "/pay/gateway/cashier";
pub const STATUS_PATH: &str = "/pay/gateway/status";

/// Whether a path is the gateway's (the dev stack's router asks).
pub fn is_gateway_path(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        GATEWAY_PATH | CASHIER_PATH | STATUS_PATH
    )
}

/// Serves one gateway request.
pub async fn handle_gateway<B: Backends, O: OAuth>(
    app: &Ferrypay<B>,
    gateway: &Gateway<O>,
    req: ApiRequest,
) -> ApiResponse {
    let path = req.uri().path().trim_end_matches('/');
    let response = match app.check_client_limit(ClientAddr::of(&req)).await {
        Err(e) if path == STATUS_PATH => super::error_response(&ApiError::from(e)),
        Err(e) => service_error_page(&e, None),
        Ok(()) => match (req.method(), path) {
            (&Method::GET, GATEWAY_PATH) => visit_link(app, gateway, &req, false).await,
            (&Method::POST, GATEWAY_PATH) => visit_link(app, gateway, &req, true).await,
            (&Method::GET, CASHIER_PATH) => cashier(app, gateway, &req).await,
            (&Method::GET, STATUS_PATH) => status(app, gateway, &req).await,
            (_, GATEWAY_PATH | CASHIER_PATH | STATUS_PATH) => {
                error_page(ErrorCode::MethodNotAllowed, None, None)
            }
            _ => error_page(ErrorCode::RouteNotFound, None, None),
        },
    };
    tracing::info!(
        method = %req.method(),
        path,
        status = response.status().as_u16(),
        "gateway"
    );
    response
}

/// A link opened (`GET`) or its "pay on this computer" form sent (`POST`).
async fn visit_link<B: Backends, O: OAuth>(
    app: &Ferrypay<B>,
    gateway: &Gateway<O>,
    req: &ApiRequest,
    native: bool,
) -> ApiResponse {
    let request = match LinkRequest::parse(req.uri().query()) {
        Ok(request) => request,
        Err(e) => return link_error_page(&e),
    };
    let back = request.oauth_return();
    let fields = link_fields(&request.link);
    let link = match app.open_link(request.link, fields).await {
        Ok(link) => link,
        Err(e) => return link_error_page(&e),
    };
    let link_url = link_url(gateway, &link.query);
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let step = if native {
        gateway.pay_by_qr(app, &link).await.map(LinkStep::Cashier)
    } else if in_wechat(user_agent) {
        gateway.visit_in_wechat(app, &link, back.as_ref()).await
    } else {
        let link_qr = qr::png_data_uri(&link_url).unwrap_or_else(|e| {
            tracing::error!(error = %e, "QR code of a link");
            String::new()
        });
        return OpenInWechatPage {
            merchant: &link.merchant.name,
            amount: &link.amount.to_string(),
            description: link.title(),
            link_url: &link_url,
            link_qr: &link_qr,
            form_action: &link_url,
        }
        .render();
    };
    match step {
        Ok(LinkStep::Authorize { state }) => match authorization_url(gateway, &link_url, &state) {
            Ok(url) => redirect(StatusCode::FOUND, &url),
            Err(e) => {
                tracing::error!(error = %e, "building the authorization URL");
                error_page(ErrorCode::OauthUnavailable, None, Some(&link_url))
            }
        },
        Ok(LinkStep::Cashier(ticket)) => {
            redirect(StatusCode::SEE_OTHER, &cashier_url(gateway, &ticket))
        }
        Ok(LinkStep::SnapshotUser) => {
            let ErrorText {
                status,
                title,
                text,
            } = error_text(ErrorCode::SnapshotUser, None);
            MessagePage {
                page: "snapshot-user",
                tone: Tone::Info,
                title,
                message: text,
                actions: vec![],
                code: ErrorCode::SnapshotUser.as_str(),
            }
            .render(status)
        }
        Err(e) => visit_error_page(&e, &link_url),
    }
}

/// The ticket of a cashier or status request, checked against its MAC and the clock.
fn checked_ticket<B: Backends, O: OAuth>(
    app: &Ferrypay<B>,
    gateway: &Gateway<O>,
    req: &ApiRequest,
) -> Result<CashierTicket, TicketError> {
    ticket_parts(req.uri().query()).and_then(|parts| gateway.check_ticket(parts, app.clock.now()))
}

/// The cashier page of one order, reached with its ticket.
async fn cashier<B: Backends, O: OAuth>(
    app: &Ferrypay<B>,
    gateway: &Gateway<O>,
    req: &ApiRequest,
) -> ApiResponse {
    let ticket = match checked_ticket(app, gateway, req) {
        Ok(ticket) => ticket,
        Err(e) => return error_page(e.code(), None, None),
    };
    let order = match app.ticket_order(&ticket, false).await {
        Ok(order) => order,
        Err(e) => return service_error_page(&e, None),
    };
    let fail_url = ticket
        .return_url
        .as_ref()
        .map(|url| return_to(url, &order.order_no, false));
    let state = match order.status {
        OrderStatus::Pending => CashierState::Ready,
        OrderStatus::Paid => match &ticket.return_url {
            // Paid already (a refresh after paying): straight back to the merchant.
            Some(url) => {
                return redirect(
                    StatusCode::SEE_OTHER,
                    &return_to(url, &order.order_no, true),
                )
            }
            None => CashierState::Success,
        },
        OrderStatus::Closed | OrderStatus::Refunded => CashierState::Closed,
    };
    let mode = if state == CashierState::Ready {
        match cashier_mode(app, &order) {
            Ok(mode) => mode,
            Err(e) => return service_error_page(&e, fail_url.as_deref()),
        }
    } else {
        CashierMode::Jsapi {
            pay_json: String::new(),
        }
    };
    let status_ticket = gateway.ticket(&order, ticket.return_url.as_ref());
    CashierPage {
        merchant: &merchant_name(app, &order).await,
        amount: &order.amount.to_string(),
        description: &order.description,
        order_no: order.order_no.as_str(),
        mode,
        state,
        status_url: &status_url(gateway, &status_ticket),
        fail_url: fail_url.as_deref(),
    }
    .render()
}

fn cashier_mode<B: Backends>(
    app: &Ferrypay<B>,
    order: &Order,
) -> Result<CashierMode, service::Error> {
    match app.payment_info(order)? {
        PaymentInfo::Jsapi(params) => Ok(CashierMode::Jsapi {
            pay_json: serde_json::to_string(&params).map_err(service::Error::internal)?,
        }),
        PaymentInfo::Native { qrcode, .. } => Ok(CashierMode::Native { qr: qrcode }),
        // Links never create H5 orders.
        PaymentInfo::H5 { .. } => Err(service::Error::internal("an H5 order behind a link")),
    }
}

/// The merchant's name for the page (the order's description stands in if it cannot be read).
async fn merchant_name<B: Backends>(app: &Ferrypay<B>, order: &Order) -> String {
    match app.store.get_merchant(&order.merchant_id).await {
        Ok(Some(merchant)) => merchant.name,
        _ => String::new(),
    }
}

/// The status check's answer: `{"success", "order_no", "status", "return_to"?}`.
#[derive(Serialize)]
struct StatusAnswer<'a> {
    success: bool,
    order_no: &'a OrderNo,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    return_to: Option<String>,
}

/// A status check refused for its ticket: `{"success": false, "error", "code"}`.
#[derive(Serialize)]
struct TicketRefusal {
    success: bool,
    error: &'static str,
    code: ErrorCode,
}

/// The cashier's status check.
async fn status<B: Backends, O: OAuth>(
    app: &Ferrypay<B>,
    gateway: &Gateway<O>,
    req: &ApiRequest,
) -> ApiResponse {
    let ticket = match checked_ticket(app, gateway, req) {
        Ok(ticket) => ticket,
        Err(e) => {
            let (status, error) = match e {
                TicketError::Invalid => (StatusCode::FORBIDDEN, "Invalid ticket"),
                TicketError::Expired => (StatusCode::GONE, "Ticket expired"),
            };
            let refusal = TicketRefusal {
                success: false,
                error,
                code: e.code(),
            };
            return json_answer(status, &refusal);
        }
    };
    let order = match app.ticket_order(&ticket, true).await {
        Ok(order) => order,
        Err(e) => return super::error_response(&ApiError::from(e)),
    };
    let return_to = ticket
        .return_url
        .as_ref()
        .and_then(|url| match order.status {
            OrderStatus::Paid => Some(return_to(url, &order.order_no, true)),
            OrderStatus::Closed | OrderStatus::Refunded => {
                Some(return_to(url, &order.order_no, false))
            }
            OrderStatus::Pending => None,
        });
    let answer = StatusAnswer {
        success: true,
        order_no: &order.order_no,
        status: order.status.as_str(),
        return_to,
    };
    json_answer(StatusCode::OK, &answer)
}

fn json_answer(status: StatusCode, body: &impl Serialize) -> ApiResponse {
    match serde_json::to_value(body) {
        Ok(body) => json_response(status, &body),
        Err(e) => {
            tracing::error!(error = %e, "status answer");
            super::error_response(&ApiError::Internal)
        }
    }
}

/// The page of a code; `retry_url` adds a "retry" button going there.
fn error_page(code: ErrorCode, field: Option<&str>, retry_url: Option<&str>) -> ApiResponse {
    let ErrorText {
        status,
        title,
        text,
    } = error_text(code, field);
    MessagePage {
        page: "error",
        tone: Tone::Error,
        title,
        message: text,
        actions: retry_url.map(retry).into_iter().collect(),
        code: code.as_str(),
    }
    .render(status)
}

fn retry(href: &str) -> Action {
    Action {
        id: "retry",
        label: "重试",
        href: href.to_string(),
        primary: true,
    }
}

/// What a payer reads when a link cannot be paid.
pub fn link_error_page(err: &LinkError) -> ApiResponse {
    error_page(err.code(), err.field(), None)
}

/// A visit that could not go on: its page, with a retry of the link.
fn visit_error_page(err: &VisitError, link_url: &str) -> ApiResponse {
    match err {
        VisitError::Order(e) => service_error_page(e, Some(link_url)),
        // The OAuth client logged its failure.
        _ => error_page(err.code(), None, Some(link_url)),
    }
}

/// An order could not be created or read: a page (`retry_url`: where "retry" goes; a rate
/// limit also says when in `Retry-After`). The error leaves the service layer here, so its
/// cause is logged here.
fn service_error_page(err: &service::Error, retry_url: Option<&str>) -> ApiResponse {
    err.log_cause();
    let mut page = error_page(err.code(), None, retry_url);
    if let service::Error::RateLimited { retry_after_secs } = err {
        if let Ok(value) = header::HeaderValue::from_str(&retry_after_secs.to_string()) {
            page.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    page
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use url::Url;

    use super::*;
    use crate::{
        model::{Clock, ManualClock, Secret, Timestamp},
        service::gateway::{FakeOAuth, GatewaySettings, TICKET_GRACE_SECS},
        testing::*,
        wechat::OAuthConfig,
    };

    use crate::testing::START;

    fn gateway() -> Gateway<FakeOAuth> {
        Gateway::with_oauth(
            GatewaySettings {
                public_url: "https://pay.example.com/".into(),
                oauth: OAuthConfig::new("wxappid", Secret::new("oauth-secret".into())),
            },
            FakeOAuth::new(),
        )
    }

    #[tokio::test]
    async fn a_ticket_names_one_order_and_return_url_until_an_hour_after_expiry() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix(START)));
        let app = app_with_clock(clock.clone());
        onboard_test_merchant(&app, "Shop").await;
        let gateway = gateway();
        let request = LinkRequest::parse(Some(&format!(
            "key={TEST_PUBLISHABLE_KEY}&amount=100&return_url=https%3A%2F%2Fshop.merchant.example%2Fr"
        )))
        .unwrap();
        let fields = link_fields(&request.link);
        let link = app.open_link(request.link, fields).await.unwrap();
        let ticket = gateway.pay_by_qr(&app, &link).await.unwrap();
        let order = stored_order(&app, &ticket.order_no).await;
        let url = cashier_url(&gateway, &ticket);
        assert!(url.starts_with("https://pay.example.com/pay/gateway/cashier?order_no="));
        let query = url.split_once('?').unwrap().1.to_string();
        let check = |query: &str, now| {
            ticket_parts(Some(query)).and_then(|parts| gateway.check_ticket(parts, now))
        };
        let ticket = check(&query, clock.now()).unwrap();
        assert_eq!(ticket.order_no, order.order_no);
        assert_eq!(
            ticket.return_url.as_ref().map(Url::as_str),
            Some("https://shop.merchant.example/r")
        );
        let last = order.expires_at.plus_secs(TICKET_GRACE_SECS);
        assert!(check(&query, last).is_ok());
        assert_eq!(check(&query, last.plus_secs(1)), Err(TicketError::Expired));
        // Any edit is refused: the order, the return URL, the expiry, a missing or doubled part.
        let other_no = OrderNo::generate(clock.now()).unwrap();
        for edited in [
            query.replace(order.order_no.as_str(), other_no.as_str()),
            query.replace("shop.merchant.example", "evil.example"),
            query.replace("&return_url=https%3A%2F%2Fshop.merchant.example%2Fr", ""),
            query.replace("t=1", "t=2"),
            format!("{query}&t=1"),
            format!("{query}&order_no={other_no}"),
            String::new(),
        ] {
            assert_eq!(
                check(&edited, clock.now()),
                Err(TicketError::Invalid),
                "{edited}"
            );
        }
        // The status URL carries the same ticket.
        assert_eq!(
            status_url(&gateway, &ticket),
            url.replace(CASHIER_PATH, STATUS_PATH)
        );
    }

    #[tokio::test]
    async fn a_client_over_its_limit_gets_429_with_retry_after_as_a_page_or_as_json() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix(START + 15)));
        let mut app = app_with_clock(clock);
        app.config.ip_rate_limit_per_minute = Some(1);
        let gateway = gateway();
        let request = |path: &str, ip: &str| {
            let mut req = http::Request::get(path).body(bytes::Bytes::new()).unwrap();
            ClientAddr::attach(&mut req, ip.parse().unwrap());
            req
        };
        let first = handle_gateway(&app, &gateway, request(CASHIER_PATH, "203.0.113.5")).await;
        assert_eq!(
            first.status(),
            StatusCode::FORBIDDEN,
            "a bad ticket, but counted"
        );
        let page = handle_gateway(&app, &gateway, request(CASHIER_PATH, "203.0.113.5")).await;
        assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(page.headers()[header::RETRY_AFTER], "45");
        assert!(
            page.body().contains("data-code=\"rate_limited\""),
            "{}",
            page.body()
        );
        let json = handle_gateway(&app, &gateway, request(STATUS_PATH, "203.0.113.5")).await;
        assert_eq!(json.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(json.headers()[header::RETRY_AFTER], "45");
        let body: serde_json::Value = serde_json::from_str(json.body()).unwrap();
        assert_eq!(body["code"], "rate_limited");
        let other = handle_gateway(&app, &gateway, request(STATUS_PATH, "203.0.113.6")).await;
        assert_eq!(
            other.status(),
            StatusCode::FORBIDDEN,
            "another client: its ticket is checked"
        );
    }

    #[test]
    fn the_status_answers_are_the_documented_json() {
        let no = OrderNo::parse("FP20251221103000ABC123").unwrap();
        let answer = StatusAnswer {
            success: true,
            order_no: &no,
            status: "paid",
            return_to: Some("https://m.example/r?status=success".into()),
        };
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            r#"{"success":true,"order_no":"FP20251221103000ABC123","status":"paid","return_to":"https://m.example/r?status=success"}"#
        );
        let pending = StatusAnswer {
            return_to: None,
            status: "pending",
            ..answer
        };
        assert_eq!(
            serde_json::to_string(&pending).unwrap(),
            r#"{"success":true,"order_no":"FP20251221103000ABC123","status":"pending"}"#
        );
        let refusal = TicketRefusal {
            success: false,
            error: "Invalid ticket",
            code: TicketError::Invalid.code(),
        };
        assert_eq!(
            serde_json::to_string(&refusal).unwrap(),
            r#"{"success":false,"error":"Invalid ticket","code":"invalid_ticket"}"#
        );
    }
}
