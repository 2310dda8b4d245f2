//! The payer's pages (jump-pay): Chinese, mobile-first, self-contained (inline CSS and script,
//! images as data URIs, nothing from another origin), a few KiB each.
//!
//! Templates are askama `.html` files beside this module, checked and compiled with the
//! crate: each page `{% extends "layout.html" %}` and fills its `body` block. Every value is
//! HTML-escaped when it is put in (askama escapes by default, with the escaper that
//! `askama.toml` names, [`Html`]); no template marks a value `|safe`. Data for the scripts
//! travels in `data-*` attributes (escaped like any text, read back with `getAttribute`), so
//! no value is ever written into a script.

pub mod errors;

use std::fmt;

use askama::{filters::Escaper, Template};
use http::{header, HeaderValue, StatusCode};

use crate::{api::ApiResponse, model::random_base62};

/// The HTML escaper of every template (named in `askama.toml`). askama's stock one writes
/// numeric references (`&#34;`, `&#38;`, `&#60;`); this one writes the named entities these
/// pages have always carried (`&quot;`, `&amp;`, `&lt;`, `&gt;`, and `&#39;`), so the pages
/// stay byte for byte what they were.
#[derive(Debug, Clone, Copy)]
pub struct Html;

impl Escaper for Html {
    fn write_escaped_str<W: fmt::Write>(&self, mut dest: W, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, byte) in text.bytes().enumerate() {
            let entity = match byte {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            // `at` is an ASCII byte, so both cuts fall on character boundaries.
            dest.write_str(text.get(plain..at).unwrap_or_default())?;
            dest.write_str(entity)?;
            plain = at + 1;
        }
        dest.write_str(text.get(plain..).unwrap_or_default())
    }
}

/// Escapes text for HTML element content and quoted attribute values, as the templates do.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    // Writing into a String cannot fail.
    let _ = Html.write_escaped_str(&mut out, text);
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

#[derive(Template)]
#[template(path = "message.html", config = "src/pages/askama.toml")]
struct MessageHtml<'a> {
    title: &'a str,
    page: &'a str,
    code: &'a str,
    tone: &'a str,
    message: &'a str,
    actions: &'a [Action],
    /// Error pages show their code, so a payer can quote it.
    show_code: bool,
}

#[derive(Template)]
#[template(path = "open_in_wechat.html", config = "src/pages/askama.toml")]
struct OpenInWechatHtml<'a> {
    title: &'a str,
    merchant: &'a str,
    amount: &'a str,
    description: &'a str,
    link_url: &'a str,
    link_qr: &'a str,
    form_action: &'a str,
    nonce: &'a str,
}

#[derive(Template)]
#[template(path = "cashier.html", config = "src/pages/askama.toml")]
struct CashierHtml<'a> {
    title: &'a str,
    mode: &'a str,
    state: &'a str,
    status_url: &'a str,
    pay: &'a str,
    merchant: &'a str,
    amount: &'a str,
    description: &'a str,
    /// The native QR code (data URI), shown as an image.
    qr: Option<&'a str>,
    message: &'a str,
    fail_url: &'a str,
    order_no: &'a str,
    nonce: &'a str,
}

impl MessagePage {
    pub fn render(&self, status: StatusCode) -> ApiResponse {
        let page = MessageHtml {
            title: self.title,
            page: self.page,
            code: self.code,
            tone: self.tone.class(),
            message: &self.message,
            actions: &self.actions,
            show_code: self.tone == Tone::Error,
        };
        html_response(status, &page, None)
    }
}

impl OpenInWechatPage<'_> {
    pub fn render(&self) -> ApiResponse {
        let nonce = script_nonce();
        let page = OpenInWechatHtml {
            title: "请在微信中打开",
            merchant: self.merchant,
            amount: self.amount,
            description: self.description,
            link_url: self.link_url,
            link_qr: self.link_qr,
            form_action: self.form_action,
            nonce: &nonce,
        };
        html_response(StatusCode::OK, &page, Some(&nonce))
    }
}

impl CashierPage<'_> {
    pub fn render(&self) -> ApiResponse {
        let nonce = script_nonce();
        let (mode, pay, qr, ready_message) = match &self.mode {
            CashierMode::Jsapi { pay_json } => {
                ("jsapi", pay_json.as_str(), None, "正在调起微信支付…")
            }
            CashierMode::Native { qr } => (
                "native",
                "",
                Some(qr.as_str()),
                "请使用微信“扫一扫”扫描二维码付款",
            ),
        };
        let (state, message) = match self.state {
            CashierState::Ready => ("ready", ready_message),
            CashierState::Success => ("success", "支付成功"),
            CashierState::Closed => ("closed", "订单已关闭，未完成支付"),
        };
        let page = CashierHtml {
            title: "微信支付",
            mode,
            state,
            status_url: self.status_url,
            pay,
            merchant: self.merchant,
            amount: self.amount,
            description: self.description,
            qr,
            message,
            fail_url: self.fail_url.unwrap_or(""),
            order_no: self.order_no,
            nonce: &nonce,
        };
        html_response(StatusCode::OK, &page, Some(&nonce))
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
    page: &impl Template,
    script_nonce: Option<&str>,
) -> ApiResponse {
    let (status, page) = match page.render() {
        Ok(html) => (status, html),
        // Only a failing `Display` fails a render, and these pages print strings: never seen,
        // but a blank 500 beats a half page.
        Err(error) => {
            tracing::error!(%error, "page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, String::new())
        }
    };
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

    /// A template of its own, to show the engine's escaping apart from any page.
    #[derive(Template)]
    #[template(
        source = "<p title=\"{{ a }}\">{{ b }}</p>",
        ext = "html",
        config = "src/pages/askama.toml"
    )]
    struct Probe<'a> {
        a: &'a str,
        b: &'a str,
    }

    #[test]
    fn values_are_escaped_in_text_and_attributes() {
        let html = Probe {
            a: "\"><script>alert(1)</script>",
            b: "{{c}} & '",
        }
        .render()
        .unwrap();
        assert_eq!(
            html,
            "<p title=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\">{{c}} &amp; &#39;</p>"
        );
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn template_syntax_in_a_value_is_printed_not_run() {
        let page = MessagePage {
            page: "error",
            tone: Tone::Error,
            title: "{{ title }}",
            message: "a {{b {% if true %}x{% endif %}".into(),
            actions: vec![],
            code: "invalid_amount",
        }
        .render(StatusCode::BAD_REQUEST);
        assert!(page
            .body()
            .contains("<p>a {{b {% if true %}x{% endif %}</p>"));
        assert!(page.body().contains("<title>{{ title }}</title>"));
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
        for template in [
            include_str!("layout.html"),
            include_str!("message.html"),
            include_str!("open_in_wechat.html"),
            include_str!("cashier.html"),
        ] {
            assert!(template.len() < 8 * 1024, "{}", template.len());
        }
    }
}
