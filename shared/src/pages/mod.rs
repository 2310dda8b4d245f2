//! The payer's pages (jump-pay): Chinese, mobile-first, self-contained (inline CSS and script,
//! images as data URIs, nothing from another origin), a few KiB each.
//!
//! Templates are plain HTML with `{{name}}` slots. Every value is HTML-escaped when it is put
//! in ([`Slot::Text`]); only fragments rendered here ([`Slot::Html`]) go in as they are. Data
//! for the scripts travels in `data-*` attributes (escaped like any text, read back with
//! `getAttribute`), so no value is ever written into a script.

pub mod errors;

use http::{header, HeaderValue, StatusCode};

use crate::{api::ApiResponse, model::random_base62};

const LAYOUT: &str = include_str!("layout.html");
const MESSAGE: &str = include_str!("message.html");
const OPEN_IN_WECHAT: &str = include_str!("open_in_wechat.html");
const CASHIER: &str = include_str!("cashier.html");

/// A value for a template slot.
#[derive(Debug, Clone)]
pub enum Slot<'a> {
    /// Text: escaped.
    Text(&'a str),
    /// A fragment this module rendered from escaped parts.
    Html(String),
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Fills `{{name}}` slots; a slot without a value renders empty. One pass over the template,
/// so a value that itself contains `{{...}}` is never expanded.
fn render(template: &str, slots: &[(&str, Slot<'_>)]) -> String {
    let mut out = String::with_capacity(template.len() + 512);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start + 2..).unwrap_or_default();
        let Some(end) = after.find("}}") else {
            out.push_str(rest.get(start..).unwrap_or_default());
            return out;
        };
        let name = after.get(..end).unwrap_or_default();
        match slots.iter().find(|(n, _)| *n == name).map(|(_, v)| v) {
            Some(Slot::Text(text)) => out.push_str(&escape(text)),
            Some(Slot::Html(html)) => out.push_str(html),
            None => {}
        }
        rest = after.get(end + 2..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// A page's first impression: how it is announced and what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Info,
    Success,
    Error,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Info => "",
            Tone::Success => "ok",
            Tone::Error => "error",
        }
    }
}

/// A link button under a message.
#[derive(Debug, Clone)]
pub struct Action {
    pub id: &'static str,
    pub label: &'static str,
    pub href: String,
    pub primary: bool,
}

/// A page with a title, a sentence and some ways on: errors, "payment complete", "open the
/// full page".
#[derive(Debug, Clone)]
pub struct MessagePage {
    /// `data-page`, for tests and support: which page this is.
    pub page: &'static str,
    pub tone: Tone,
    pub title: &'static str,
    pub message: String,
    pub actions: Vec<Action>,
    /// A stable code (shown small, so a payer can quote it to the merchant).
    pub code: &'static str,
}

/// The outside-WeChat page of a link.
#[derive(Debug, Clone)]
pub struct OpenInWechatPage<'a> {
    pub merchant: &'a str,
    pub amount: &'a str,
    pub description: &'a str,
    pub link_url: &'a str,
    /// The QR code of `link_url`, as a data URI.
    pub link_qr: &'a str,
    /// Where the "pay on this computer" form posts (the link itself).
    pub form_action: &'a str,
}

/// How the cashier takes the payment.
#[derive(Debug, Clone)]
pub enum CashierMode {
    /// Inside WeChat: the JSON for `getBrandWCPayRequest`.
    Jsapi { pay_json: String },
    /// On a computer: the native QR code (data URI) to scan with WeChat.
    Native { qr: String },
}

/// Where the cashier page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CashierState {
    /// Waiting for the payer.
    Ready,
    /// Paid, with no return URL to go back to.
    Success,
    Closed,
}

#[derive(Debug, Clone)]
pub struct CashierPage<'a> {
    pub merchant: &'a str,
    pub amount: &'a str,
    pub description: &'a str,
    pub order_no: &'a str,
    pub mode: CashierMode,
    pub state: CashierState,
    /// The order-scoped status URL the page confirms the payment with.
    pub status_url: &'a str,
    /// `return_url?order_no=..&status=fail`, when the link had a return URL.
    pub fail_url: Option<&'a str>,
}

impl MessagePage {
    pub fn render(&self, status: StatusCode) -> ApiResponse {
        let actions: String = self
            .actions
            .iter()
            .map(|a| {
                format!(
                    "<a class=\"btn{}\" id=\"{}\" href=\"{}\">{}</a>\n",
                    if a.primary { "" } else { " secondary" },
                    escape(a.id),
                    escape(&a.href),
                    escape(a.label)
                )
            })
            .collect();
        let detail = format!("错误代码 {}", self.code);
        let body = render(
            MESSAGE,
            &[
                ("page", Slot::Text(self.page)),
                ("code", Slot::Text(self.code)),
                ("tone", Slot::Text(self.tone.class())),
                ("title", Slot::Text(self.title)),
                ("message", Slot::Text(&self.message)),
                ("actions", Slot::Html(actions)),
                (
                    "detail",
                    Slot::Text(if self.tone == Tone::Error {
                        &detail
                    } else {
                        ""
                    }),
                ),
            ],
        );
        html_response(status, self.title, body, None)
    }
}

impl OpenInWechatPage<'_> {
    pub fn render(&self) -> ApiResponse {
        let nonce = script_nonce();
        let body = render(
            OPEN_IN_WECHAT,
            &[
                ("merchant", Slot::Text(self.merchant)),
                ("amount", Slot::Text(self.amount)),
                ("description", Slot::Text(self.description)),
                ("link_url", Slot::Text(self.link_url)),
                ("link_qr", Slot::Text(self.link_qr)),
                ("form_action", Slot::Text(self.form_action)),
                ("nonce", Slot::Text(&nonce)),
            ],
        );
        html_response(StatusCode::OK, "请在微信中打开", body, Some(&nonce))
    }
}

impl CashierPage<'_> {
    pub fn render(&self) -> ApiResponse {
        let nonce = script_nonce();
        let (mode, pay, qr, ready_message) = match &self.mode {
            CashierMode::Jsapi { pay_json } => (
                "jsapi",
                pay_json.as_str(),
                String::new(),
                "正在调起微信支付…",
            ),
            CashierMode::Native { qr } => (
                "native",
                "",
                format!(
                    "<img class=\"qr\" id=\"pay-qr\" src=\"{}\" alt=\"微信支付二维码\">",
                    escape(qr)
                ),
                "请使用微信“扫一扫”扫描二维码付款",
            ),
        };
        let (state, message) = match self.state {
            CashierState::Ready => ("ready", ready_message),
            CashierState::Success => ("success", "支付成功"),
            CashierState::Closed => ("closed", "订单已关闭，未完成支付"),
        };
        let body = render(
            CASHIER,
            &[
                ("mode", Slot::Text(mode)),
                ("state", Slot::Text(state)),
                ("status_url", Slot::Text(self.status_url)),
                ("pay", Slot::Text(pay)),
                ("merchant", Slot::Text(self.merchant)),
                ("amount", Slot::Text(self.amount)),
                ("description", Slot::Text(self.description)),
                ("qr", Slot::Html(qr)),
                ("message", Slot::Text(message)),
                ("fail_url", Slot::Text(self.fail_url.unwrap_or(""))),
                ("order_no", Slot::Text(self.order_no)),
                ("nonce", Slot::Text(&nonce)),
            ],
        );
        html_response(StatusCode::OK, "微信支付", body, Some(&nonce))
    }
}

/// A fresh nonce for the page's one inline script (the CSP admits no other).
fn script_nonce() -> String {
    // Our templates escape every value, so the nonce is a second line of defence: with no
    // random source (never seen) a fixed one keeps the page working rather than block payment.
    random_base62(22).unwrap_or_else(|_| "ferrypay".to_string())
}

/// An HTML answer with the headers every payer page carries: no caching (tickets and codes are
/// in URLs), no referrer (so neither leaks to the merchant's site), no framing, and a CSP that
/// admits nothing but the page itself.
fn html_response(
    status: StatusCode,
    title: &str,
    body: String,
    script_nonce: Option<&str>,
) -> ApiResponse {
    let page = render(
        LAYOUT,
        &[("title", Slot::Text(title)), ("body", Slot::Html(body))],
    );
    let script = match script_nonce {
        Some(nonce) => format!("'nonce-{nonce}'"),
        None => "'none'".to_string(),
    };
    let csp = format!(
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src {script}; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    let mut response = http::Response::new(page);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// A redirect: `302` for a GET that goes elsewhere (OAuth), `303` after a POST or a one-shot
/// step (PRG: a refresh must not repeat it). Carries the same privacy headers as a page.
pub fn redirect(status: StatusCode, location: &str) -> ApiResponse {
    let mut response = http::Response::new(String::new());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_never_expanded() {
        let html = render(
            "<p title=\"{{a}}\">{{b}}</p>{{c}}{{missing}}",
            &[
                ("a", Slot::Text("\"><script>alert(1)</script>")),
                ("b", Slot::Text("{{c}} & '")),
                ("c", Slot::Html("<b>ok</b>".into())),
            ],
        );
        assert_eq!(
            html,
            "<p title=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\">{{c}} &amp; &#39;</p><b>ok</b>"
        );
    }

    #[test]
    fn an_unclosed_slot_is_left_as_text() {
        assert_eq!(render("a {{b", &[]), "a {{b");
    }

    #[test]
    fn message_pages_carry_the_privacy_headers() {
        let page = MessagePage {
            page: "error",
            tone: Tone::Error,
            title: "链接无效",
            message: "金额无效 <b>".into(),
            actions: vec![],
            code: "invalid_amount",
        }
        .render(StatusCode::BAD_REQUEST);
        assert_eq!(page.status(), StatusCode::BAD_REQUEST);
        let h = page.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'none'"));
        assert!(page.body().contains("金额无效 &lt;b&gt;"));
        assert!(page.body().contains("invalid_amount"));
    }

    #[test]
    fn pages_are_small() {
        for template in [LAYOUT, MESSAGE, OPEN_IN_WECHAT, CASHIER] {
            assert!(template.len() < 8 * 1024, "{}", template.len());
        }
    }
}
