//! The jump-pay gateway's HTTP side: `GET`/`POST /pay/gateway` (a link), `GET
//! /pay/gateway/cashier` (the cashier page) and `GET /pay/gateway/status` (its JSON status
//! check). Each answer is a page, a redirect or (status) JSON; every failure is a readable
//! page in Chinese with a stable code, never a blank screen.

use http::{header, Method, StatusCode};
use serde_json::json;

use super::{json_response, ApiError, ApiRequest, ApiResponse};
use crate::{
    model::{Order, OrderStatus},
    pages::{
        redirect, Action, CashierMode, CashierPage, CashierState, MessagePage, OpenInWechatPage,
        Tone,
    },
    qr,
    service::{
        gateway::{
            in_wechat, return_to, Gateway, LinkError, LinkQuery, LinkStep, TicketError, VisitError,
            CASHIER_PATH, GATEWAY_PATH, STATUS_PATH,
        },
        Backends, Ferrypay, PaymentInfo,
    },
    store::MerchantStore,
};

/// Whether a path is the gateway's (the dev stack's router asks).
pub fn is_gateway_path(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        GATEWAY_PATH | CASHIER_PATH | STATUS_PATH
    )
}

/// Serves one gateway request.
pub async fn handle_gateway<B: Backends>(
    app: &Ferrypay<B>,
    gateway: &Gateway,
    req: ApiRequest,
) -> ApiResponse {
    let path = req.uri().path().trim_end_matches('/');
    let response = match (req.method(), path) {
        (&Method::GET, GATEWAY_PATH) => visit_link(app, gateway, &req, false).await,
        (&Method::POST, GATEWAY_PATH) => visit_link(app, gateway, &req, true).await,
        (&Method::GET, CASHIER_PATH) => cashier(app, gateway, &req).await,
        (&Method::GET, STATUS_PATH) => status(app, gateway, &req).await,
        (_, GATEWAY_PATH | CASHIER_PATH | STATUS_PATH) => message(
            "method_not_allowed",
            "请求方式不支持",
            "请直接打开付款链接。",
        )
        .render(StatusCode::METHOD_NOT_ALLOWED),
        _ => message("not_found", "页面不存在", "请检查付款链接是否完整。")
            .render(StatusCode::NOT_FOUND),
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
async fn visit_link<B: Backends>(
    app: &Ferrypay<B>,
    gateway: &Gateway,
    req: &ApiRequest,
    native: bool,
) -> ApiResponse {
    let link = match LinkQuery::parse(req.uri().query()) {
        Ok(query) => app.open_link(&query).await,
        Err(e) => Err(e),
    };
    let link = match link {
        Ok(link) => link,
        Err(e) => return link_error_page(&e),
    };
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let step = if native {
        gateway.pay_by_qr(app, &link).await
    } else if in_wechat(user_agent) {
        gateway.visit_in_wechat(app, &link).await
    } else {
        Ok(LinkStep::OpenInWechat)
    };
    let link_url = gateway.link_url(&link);
    match step {
        Ok(LinkStep::OpenInWechat) => {
            let link_qr = match qr::png_data_uri(&link_url) {
                Ok(qr) => qr,
                Err(e) => {
                    tracing::error!(error = %e, "QR code of a link");
                    String::new()
                }
            };
            OpenInWechatPage {
                merchant: &link.merchant.name,
                amount: &link.amount.to_string(),
                description: link.title(),
                link_url: &link_url,
                link_qr: &link_qr,
                form_action: &link_url,
            }
            .render()
        }
        Ok(LinkStep::Authorize { url }) => redirect(StatusCode::FOUND, &url),
        Ok(LinkStep::Cashier { url }) => redirect(StatusCode::SEE_OTHER, &url),
        Ok(LinkStep::SnapshotUser) => MessagePage {
            page: "snapshot-user",
            tone: Tone::Info,
            title: "请打开完整页面",
            message: "当前是预览模式，无法付款。请点击屏幕下方的“使用完整服务”后再付款。".into(),
            actions: vec![],
            code: "snapshot_user",
        }
        .render(StatusCode::OK),
        Err(e) => visit_error_page(&e, &link_url),
    }
}

/// The cashier page of one order, reached with its ticket.
async fn cashier<B: Backends>(
    app: &Ferrypay<B>,
    gateway: &Gateway,
    req: &ApiRequest,
) -> ApiResponse {
    let ticket = match gateway.ticket(req.uri().query(), app.clock.now()) {
        Ok(ticket) => ticket,
        Err(e) => return ticket_error_page(e),
    };
    let order = match app.ticket_order(&ticket, false).await {
        Ok(order) => order,
        Err(e) => return api_error_page(&e, None),
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
            Err(e) => return api_error_page(&e, fail_url.as_deref()),
        }
    } else {
        CashierMode::Jsapi {
            pay_json: String::new(),
        }
    };
    CashierPage {
        merchant: &merchant_name(app, &order).await,
        amount: &order.amount.to_string(),
        description: &order.description,
        order_no: order.order_no.as_str(),
        mode,
        state,
        status_url: &gateway.status_url(&order, ticket.return_url.as_ref()),
        fail_url: fail_url.as_deref(),
    }
    .render()
}

fn cashier_mode<B: Backends>(app: &Ferrypay<B>, order: &Order) -> Result<CashierMode, ApiError> {
    match app.payment_info(order)? {
        PaymentInfo::Jsapi(params) => Ok(CashierMode::Jsapi {
            pay_json: serde_json::to_string(&params).map_err(|_| ApiError::Internal)?,
        }),
        PaymentInfo::Native { qrcode, .. } => Ok(CashierMode::Native { qr: qrcode }),
        // Links never create H5 orders.
        PaymentInfo::H5 { .. } => Err(ApiError::Internal),
    }
}

/// The merchant's name for the page (the order's description stands in if it cannot be read).
async fn merchant_name<B: Backends>(app: &Ferrypay<B>, order: &Order) -> String {
    match app.store.get_merchant(&order.merchant_id).await {
        Ok(Some(merchant)) => merchant.name,
        _ => String::new(),
    }
}

/// The cashier's status check: `{"success", "order_no", "status", "return_to"?}`.
async fn status<B: Backends>(
    app: &Ferrypay<B>,
    gateway: &Gateway,
    req: &ApiRequest,
) -> ApiResponse {
    let ticket = match gateway.ticket(req.uri().query(), app.clock.now()) {
        Ok(ticket) => ticket,
        Err(e) => {
            let (status, code, error) = match e {
                TicketError::Invalid => (StatusCode::FORBIDDEN, "invalid_ticket", "Invalid ticket"),
                TicketError::Expired => (StatusCode::GONE, "ticket_expired", "Ticket expired"),
            };
            return json_response(
                status,
                &json!({"success": false, "error": error, "code": code}),
            );
        }
    };
    let order = match app.ticket_order(&ticket, true).await {
        Ok(order) => order,
        Err(e) => return super::error_response(&e),
    };
    let return_url = ticket
        .return_url
        .as_ref()
        .and_then(|url| match order.status {
            OrderStatus::Paid => Some(return_to(url, &order.order_no, true)),
            OrderStatus::Closed | OrderStatus::Refunded => {
                Some(return_to(url, &order.order_no, false))
            }
            OrderStatus::Pending => None,
        });
    let mut body = json!({
        "success": true,
        "order_no": order.order_no,
        "status": order.status.as_str(),
    });
    if let Some(url) = return_url {
        body["return_to"] = json!(url);
    }
    json_response(StatusCode::OK, &body)
}

fn message(code: &'static str, title: &'static str, text: &str) -> MessagePage {
    MessagePage {
        page: "error",
        tone: Tone::Error,
        title,
        message: text.to_string(),
        actions: vec![],
        code,
    }
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
    let (status, title, text) = match err {
        LinkError::DuplicateParam(name) => (
            StatusCode::BAD_REQUEST,
            "链接无效",
            format!("链接中的参数 {name} 出现了不止一次。请从商户处重新获取付款链接。"),
        ),
        LinkError::MissingKey => (
            StatusCode::BAD_REQUEST,
            "链接无效",
            "链接缺少商户公钥（key）。请从商户处重新获取付款链接。".into(),
        ),
        LinkError::SecretKeyInLink => (
            StatusCode::BAD_REQUEST,
            "链接不安全，已拒绝",
            "这个付款链接里包含商户的私密密钥（sk_ 开头），看到链接的人都能冒用商户身份。\
             请商户立即更换密钥，并在付款链接中改用公开密钥（pk_ 开头）。"
                .into(),
        ),
        LinkError::UnknownKey => (
            StatusCode::NOT_FOUND,
            "商户不存在",
            "找不到此链接对应的商户，链接可能已失效。".into(),
        ),
        LinkError::MerchantDisabled => (
            StatusCode::FORBIDDEN,
            "商户暂停收款",
            "该商户目前无法收款。".into(),
        ),
        LinkError::SignatureRequired => (
            StatusCode::FORBIDDEN,
            "链接未签名",
            "该商户只接受带签名的付款链接。请从商户处重新获取付款链接。".into(),
        ),
        LinkError::SignatureInvalid => (
            StatusCode::FORBIDDEN,
            "链接已被修改",
            "付款链接的签名与内容不符，金额或其他参数可能被改动过，已拒绝付款。\
             请从商户处重新获取付款链接。"
                .into(),
        ),
        LinkError::Expired => (
            StatusCode::GONE,
            "链接已过期",
            "此付款链接已过期。请从商户处重新获取。".into(),
        ),
        LinkError::InvalidAmount => (
            StatusCode::BAD_REQUEST,
            "金额无效",
            "付款金额（amount）须是 1 到 100000000 之间的整数，单位为分。".into(),
        ),
        LinkError::InvalidField(name) => (
            StatusCode::BAD_REQUEST,
            "链接无效",
            format!("链接中的参数 {name} 无效。"),
        ),
        LinkError::ReturnUrlInvalid => (
            StatusCode::BAD_REQUEST,
            "返回地址无效",
            "返回地址（return_url）须是完整的 http 或 https 网址。".into(),
        ),
        LinkError::ReturnHostNotAllowed => (
            StatusCode::BAD_REQUEST,
            "返回地址不被允许",
            "返回地址（return_url）不在商户登记的网站范围内。为防止付款后被带到冒充的网站，已拒绝此链接。"
                .into(),
        ),
        LinkError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "服务暂不可用",
            "请稍后重新打开付款链接。".into(),
        ),
    };
    message(err.code(), title, &text).render(status)
}

fn visit_error_page(err: &VisitError, link_url: &str) -> ApiResponse {
    let (status, page) = match err {
        VisitError::Link(e) => return link_error_page(e),
        VisitError::Order(e) => return api_error_page(e, Some(link_url)),
        VisitError::AuthorizationLoop => (
            StatusCode::BAD_GATEWAY,
            message(
                "oauth_failed",
                "微信授权未成功",
                "多次授权都没有成功。请关闭页面，稍后重新打开付款链接。",
            ),
        ),
        VisitError::OAuthUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            message(
                "oauth_unavailable",
                "微信授权暂不可用",
                "暂时无法获取微信授权，请稍后重试。",
            ),
        ),
    };
    MessagePage {
        actions: vec![retry(link_url)],
        ..page
    }
    .render(status)
}

/// An order could not be created or read: a page (`retry_url`: where "retry" goes).
fn api_error_page(err: &ApiError, retry_url: Option<&str>) -> ApiResponse {
    let status = err.status();
    let page = match err {
        ApiError::RateLimited { .. } => message("rate_limited", "请求过于频繁", "请稍等片刻再试。"),
        ApiError::PaymentUnavailable | ApiError::PaymentFailed => message(
            "payment_unavailable",
            "支付服务暂不可用",
            "暂时无法发起支付，请稍后重试。",
        ),
        ApiError::OrderNotFound => message("order_not_found", "订单不存在", "找不到此订单。"),
        ApiError::ProductDisabled => {
            message("merchant_disabled", "商户暂停收款", "该商户目前无法收款。")
        }
        _ => message("internal_error", "出错了", "请稍后重试。"),
    };
    MessagePage {
        actions: retry_url.map(retry).into_iter().collect(),
        ..page
    }
    .render(status)
}

fn ticket_error_page(err: TicketError) -> ApiResponse {
    match err {
        TicketError::Invalid => message(
            "invalid_ticket",
            "收银台链接无效",
            "此收银台链接不完整或已被改动。请重新打开商户的付款链接。",
        )
        .render(StatusCode::FORBIDDEN),
        TicketError::Expired => message(
            "ticket_expired",
            "收银台已过期",
            "此订单的收银台已过期。请重新打开商户的付款链接。",
        )
        .render(StatusCode::GONE),
    }
}
