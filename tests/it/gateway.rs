//! Jump-pay over real HTTP: the dev stack's gateway with the WeChat Pay mock's OAuth, driven as
//! a browser would (every redirect followed by hand, so each hop is checked). The pages'
//! behaviour in a real browser is tests/it/browser.rs.

use std::collections::HashMap;

use crate::harness;
use ferrypay::{
    config::DEV_IP_RATE_LIMIT_PER_MINUTE,
    model::{Merchant, MerchantStatus, OrderNo, OrderSource, OrderStatus, Secret},
    service::{NewMerchant, ServiceConfig},
    sign::link::sign_link,
    store::prelude::*,
};
use ferrypay_cli::{
    dev::{DevClock, DevOptions, DevStack},
    wechat_mock::OAuthControl,
};
use serde_json::Value;

const SK: &str = "sk_test_gateway_pinned";
const PK: &str = "pk_test_gateway_pinned";
const LINK_SECRET: &str = "lsk_test_gateway_0123456789abcdefghijklmn";
const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x18003231) NetType/WIFI Language/zh_CN";
const DESKTOP_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
const RETURN_URL: &str = "https://shop.example/done?cart=7";

fn stack_options(config: ServiceConfig) -> DevOptions {
    let options = harness::dev_options(NewMerchant {
        name: "小店 Gateway Shop".into(),
        // Never called (no webhook worker here); its host is where links may return to.
        notify_url: Some("https://shop.example/notify".into()),
        secret_key: Some(Secret::new(SK.into())),
        publishable_key: Some(PK.into()),
        webhook_secret: None,
        notify_events: None,
    });
    DevOptions {
        config: ServiceConfig {
            allow_http_notify_urls: true,
            ..config
        },
        ..options
    }
}

async fn stack_with(config: ServiceConfig) -> DevStack {
    harness::start_dev(stack_options(config)).await
}

/// The dev stack's settings: the default limits but the per-client one, which is the dev
/// stack's (every request of these tests comes from 127.0.0.1).
fn dev_config() -> ServiceConfig {
    ServiceConfig {
        ip_rate_limit_per_minute: Some(DEV_IP_RATE_LIMIT_PER_MINUTE),
        ..ServiceConfig::default()
    }
}

async fn stack() -> DevStack {
    stack_with(dev_config()).await
}

/// One answer: status, `Location`, body, all headers.
struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
    headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// The `data-code` of an error page.
    fn page_code(&self) -> Option<&str> {
        let start = self.body.find("data-code=\"")? + "data-code=\"".len();
        let rest = self.body.get(start..)?;
        rest.get(..rest.find('"')?)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// An attribute of the first element that has it, HTML entities undone.
    fn attr(&self, name: &str) -> Option<String> {
        let key = format!("{name}=\"");
        let start = self.body.find(&key)? + key.len();
        let rest = self.body.get(start..)?;
        Some(unescape(rest.get(..rest.find('"')?)?))
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A browser that follows nothing by itself.
struct Browser {
    http: reqwest::Client,
    user_agent: &'static str,
}

impl Browser {
    fn new(user_agent: &'static str) -> Browser {
        Browser {
            http: harness::no_redirect_client(),
            user_agent,
        }
    }

    async fn send(&self, method: reqwest::Method, url: &str) -> Answer {
        let res = self
            .http
            .request(method, url)
            .header("user-agent", self.user_agent)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let location = headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        let body = res.text().await.unwrap();
        Answer {
            status,
            location,
            body,
            headers,
        }
    }

    async fn get(&self, url: &str) -> Answer {
        self.send(reqwest::Method::GET, url).await
    }

    async fn get_owned(&self, url: String) -> Answer {
        self.get(&url).await
    }

    /// Opens a link in WeChat up to the cashier: (the OAuth callback URL, the cashier URL).
    async fn pay_in_wechat(&self, link: &str) -> (String, String) {
        let to_oauth = self.get(link).await;
        assert_eq!(to_oauth.status, 302, "{}", to_oauth.body);
        let callback = self.follow_oauth(&to_oauth).await;
        let to_cashier = self.get(&callback).await;
        assert_eq!(to_cashier.status, 303, "{}", to_cashier.body);
        (callback, to_cashier.location.unwrap())
    }

    /// The mock's authorization: its 302 back to the link, with code and state.
    async fn follow_oauth(&self, to_oauth: &Answer) -> String {
        let authorize = to_oauth.location.clone().unwrap();
        let back = self.get(&authorize).await;
        assert_eq!(back.status, 302, "{}", back.body);
        back.location.unwrap()
    }
}

fn query_of(url: &str) -> HashMap<String, String> {
    let url = url::Url::parse(url).unwrap();
    url.query_pairs().into_owned().collect()
}

fn link(stack: &DevStack, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&format!("{}/pay/gateway", stack.base_url())).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.into()
}

fn signed_link(stack: &DevStack, params: &[(&str, &str)]) -> String {
    let sign = sign_link(LINK_SECRET, params);
    let mut all = params.to_vec();
    all.push(("sign", &sign));
    link(stack, &all)
}

async fn demo_merchant(stack: &DevStack) -> Merchant {
    stack
        .app
        .store
        .get_merchant(&stack.merchant.id)
        .await
        .unwrap()
        .unwrap()
}

async fn set_link_settings(
    stack: &DevStack,
    require_signed: bool,
    secret: Option<&str>,
    hosts: &[&str],
) {
    let mut merchant = demo_merchant(stack).await;
    merchant.payment_links.signing_secret = secret.map(ferrypay::model::MerchantSecret::new);
    merchant.payment_links.require_signed = require_signed;
    merchant.payment_links.allowed_return_hosts = hosts.iter().map(|h| h.to_string()).collect();
    stack.app.store.update_merchant(&merchant).await.unwrap();
}

async fn order(stack: &DevStack, order_no: &str) -> ferrypay::model::Order {
    stack
        .app
        .store
        .get_order(&OrderNo::parse(order_no).unwrap())
        .await
        .unwrap()
        .unwrap()
}

async fn mock_pay(stack: &DevStack, order_no: &str) {
    let mock = stack.mock.as_ref().unwrap();
    let res = reqwest::Client::new()
        .post(format!("{}/mock/pay", mock.base_url()))
        .json(&serde_json::json!({"out_trade_no": order_no}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn a_link_in_wechat_goes_through_oauth_to_a_jsapi_cashier_and_back_on_payment() {
    let stack = stack().await;
    let wechat = Browser::new(WECHAT_UA);
    let link = link(
        &stack,
        &[
            ("key", PK),
            ("amount", "1234"),
            ("description", "咖啡 & 蛋糕"),
            ("attach", "user=7&x=<y>"),
            ("return_url", RETURN_URL),
        ],
    );

    // 1. To WeChat's authorization, with the link itself as the redirect_uri.
    let to_oauth = wechat.get(&link).await;
    assert_eq!(to_oauth.status, 302);
    let authorize = to_oauth.location.clone().unwrap();
    let mock = stack.mock.as_ref().unwrap();
    assert!(authorize.starts_with(&format!(
        "{}/connect/oauth2/authorize?appid=",
        mock.base_url()
    )));
    assert!(authorize.ends_with("#wechat_redirect"));
    let q = query_of(authorize.trim_end_matches("#wechat_redirect"));
    assert_eq!(q["scope"], "snsapi_base");
    assert!(q["redirect_uri"].starts_with(&format!("{}/pay/gateway?", stack.base_url())));
    let state = &q["state"];
    assert!(state.len() <= 128 && state.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(to_oauth.headers["referrer-policy"], "no-referrer");

    // 2. Back with a code: the order is created, 303 to its cashier.
    let callback = wechat.follow_oauth(&to_oauth).await;
    let to_cashier = wechat.get(&callback).await;
    assert_eq!(to_cashier.status, 303, "{}", to_cashier.body);
    let cashier_url = to_cashier.location.unwrap();
    assert!(cashier_url.starts_with(&format!("{}/pay/gateway/cashier?", stack.base_url())));
    let order_no = query_of(&cashier_url)["order_no"].clone();
    let created = order(&stack, &order_no).await;
    assert_eq!(created.amount.get(), 1234);
    assert_eq!(created.description, "咖啡 & 蛋糕");
    assert_eq!(created.attach.as_deref(), Some("user=7&x=<y>"));
    assert_eq!(created.pay_type.as_str(), "jsapi");
    assert_eq!(
        created.openid.as_deref(),
        Some(ferrypay_cli::dev_keys::OAUTH_OPENID)
    );
    assert_eq!(created.merchant_id, stack.merchant.id);

    // 3. The cashier: JSAPI parameters for the mock's appid, signed, no key anywhere.
    let cashier = wechat.get(&cashier_url).await;
    assert_eq!(cashier.status, 200);
    assert_eq!(cashier.attr("data-mode").as_deref(), Some("jsapi"));
    assert_eq!(cashier.attr("data-state").as_deref(), Some("ready"));
    let pay: Value = serde_json::from_str(&cashier.attr("data-pay").unwrap()).unwrap();
    assert_eq!(pay["appId"], ferrypay_cli::dev_keys::APPID);
    assert!(pay["package"].as_str().unwrap().starts_with("prepay_id=wx"));
    assert_eq!(pay["signType"], "RSA");
    assert!(!cashier.body.contains(SK) && !cashier.body.contains(PK));
    assert!(cashier.body.contains("12.34") && cashier.body.contains("咖啡 &amp; 蛋糕"));
    let csp = cashier.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'nonce-") && csp.contains("frame-ancestors 'none'"));
    let fail_url = cashier.attr("href").unwrap();
    assert_eq!(
        fail_url,
        format!("https://shop.example/done?cart=7&order_no={order_no}&status=fail")
    );

    // 4. The status check: pending, then paid with the way back.
    let status_url = cashier.attr("data-status-url").unwrap();
    let pending = wechat.get(&status_url).await;
    assert_eq!(pending.json()["status"], "pending");
    assert!(pending.json().get("return_to").is_none());
    mock_pay(&stack, &order_no).await;
    let paid = wechat.get(&status_url).await.json();
    assert_eq!(paid["status"], "paid");
    assert_eq!(
        paid["return_to"],
        format!("https://shop.example/done?cart=7&order_no={order_no}&status=success")
    );

    // 5. The cashier of a paid order goes straight back.
    let again = wechat.get(&cashier_url).await;
    assert_eq!(again.status, 303);
    assert_eq!(again.location.unwrap(), paid["return_to"].as_str().unwrap());

    // 6. The merchant sees where the order came from: an unsigned link.
    assert_eq!(order(&stack, &order_no).await.source, OrderSource::Link);
    let queried = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/pay/query?order_no={order_no}",
            stack.base_url()
        ))
        .header("x-api-key", SK)
        .send()
        .await
        .unwrap();
    let queried: Value = queried.json().await.unwrap();
    assert_eq!(queried["order"]["source"], "link", "{queried}");
}

#[tokio::test]
async fn a_replayed_code_restarts_the_authorization_a_bounded_number_of_times() {
    let stack = stack().await;
    let wechat = Browser::new(WECHAT_UA);
    let link = link(&stack, &[("key", PK), ("amount", "100")]);
    let (mut callback, _) = wechat.pay_in_wechat(&link).await;
    // A refresh (or back button) of the callback: the code is used (40163) → a new
    // authorization (attempt 2, then 3), each landing on a cashier again.
    for attempt in 2..=3 {
        let restart = wechat.get(&callback).await;
        assert_eq!(restart.status, 302, "{}", restart.body);
        let authorize = restart.location.clone().unwrap();
        let state = query_of(authorize.trim_end_matches("#wechat_redirect"))["state"].clone();
        assert!(state.starts_with(&attempt.to_string()), "{state}");
        callback = wechat.follow_oauth(&restart).await;
        let to_cashier = wechat.get(&callback).await;
        assert_eq!(to_cashier.status, 303, "{}", to_cashier.body);
    }
    // A third failure in one visit: a page, not a redirect loop.
    let stuck = wechat.get(&callback).await;
    assert_eq!(stuck.status, 502);
    assert_eq!(stuck.page_code(), Some("oauth_failed"));
    assert!(stuck.body.contains("id=\"retry\""));
}

#[tokio::test]
async fn a_forged_or_foreign_state_restarts_instead_of_creating_an_order() {
    let stack = stack().await;
    let wechat = Browser::new(WECHAT_UA);
    let link_100 = link(&stack, &[("key", PK), ("amount", "100")]);
    let to_oauth = wechat.get(&link_100).await;
    let callback = wechat.follow_oauth(&to_oauth).await;
    let q = query_of(&callback);
    let (code, state) = (q["code"].clone(), q["state"].clone());

    // The same code and state on a link for another amount: not this link's state.
    let foreign = format!(
        "{}&code={code}&state={state}",
        link(&stack, &[("key", PK), ("amount", "1")])
    );
    let restart = wechat.get(&foreign).await;
    assert_eq!(restart.status, 302);
    assert!(query_of(
        restart
            .location
            .unwrap()
            .trim_end_matches("#wechat_redirect")
    )["state"]
        .starts_with('1'));
    // A forged state.
    let forged = format!("{link_100}&code={code}&state=1{}", "0".repeat(42));
    assert_eq!(wechat.get(&forged).await.status, 302);
    // No code was spent and no order made: the genuine callback still works.
    let mock = stack.mock.as_ref().unwrap();
    assert!(!mock.mock.oauth_calls().iter().any(|c| c.refused.is_some()));
    let to_cashier = wechat.get(&callback).await;
    assert_eq!(to_cashier.status, 303);
}

#[tokio::test]
async fn oauth_trouble_and_snapshot_mode_are_pages_with_a_way_on() {
    let stack = stack().await;
    let wechat = Browser::new(WECHAT_UA);
    let link = link(&stack, &[("key", PK), ("amount", "100")]);
    let mock = stack.mock.as_ref().unwrap();

    mock.mock
        .set_oauth(OAuthControl {
            busy: Some(1),
            ..OAuthControl::default()
        })
        .unwrap();
    let to_oauth = wechat.get(&link).await;
    let callback = wechat.follow_oauth(&to_oauth).await;
    let busy = wechat.get(&callback).await;
    assert_eq!(busy.status, 503);
    assert_eq!(busy.page_code(), Some("oauth_unavailable"));
    assert!(busy.body.contains("id=\"retry\""));

    mock.mock
        .set_oauth(OAuthControl {
            snapshot_user: Some(true),
            ..OAuthControl::default()
        })
        .unwrap();
    let to_oauth = wechat.get(&link).await;
    let callback = wechat.follow_oauth(&to_oauth).await;
    let snapshot = wechat.get(&callback).await;
    assert_eq!(snapshot.status, 200);
    assert!(snapshot.body.contains("data-page=\"snapshot-user\""));
    assert!(snapshot.body.contains("使用完整服务"));
}

#[tokio::test]
async fn outside_wechat_the_page_shows_the_link_and_pays_by_native_qr_on_request() {
    let stack = stack().await;
    let desktop = Browser::new(DESKTOP_UA);
    let link = link(
        &stack,
        &[
            ("key", PK),
            ("amount", "250"),
            ("return_url", RETURN_URL),
            // WeChat appends these to shared links: ignored.
            ("from", "singlemessage"),
            ("isappinstalled", "0"),
        ],
    );
    let page = desktop.get(&link).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-page=\"open-in-wechat\""));
    assert!(page.body.contains("请在微信中打开") && page.body.contains("2.50"));
    // The QR code and the field hold the link's canonical URL (what WeChat's scanner opens).
    let canonical = page.attr("value").unwrap();
    assert_eq!(
        canonical,
        format!(
            "{}/pay/gateway?key={PK}&amount=250&return_url=https%3A%2F%2Fshop.example%2Fdone%3Fcart%3D7",
            stack.base_url()
        )
    );
    let qr_src = {
        let start = page.body.find("id=\"link-qr\" src=\"").unwrap() + 18;
        unescape(&page.body[start..start + page.body[start..].find('"').unwrap()])
    };
    assert_eq!(harness::decode_qr_data_uri(&qr_src), canonical);
    assert!(page.body.len() < 20 * 1024, "{}", page.body.len());
    // Opening the page made no order.
    assert_eq!(orders_total(&stack).await, 0);

    // "Pay on this computer": a native order, 303 to a cashier with its QR code.
    let form_action = page.attr("action").unwrap();
    let posted = desktop.send(reqwest::Method::POST, &form_action).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let cashier = desktop.get(&posted.location.unwrap()).await;
    assert_eq!(cashier.attr("data-mode").as_deref(), Some("native"));
    let order_no = cashier
        .body
        .split("订单号 ")
        .nth(1)
        .unwrap()
        .get(..OrderNo::LEN)
        .unwrap()
        .to_string();
    let created = order(&stack, &order_no).await;
    assert_eq!(created.pay_type.as_str(), "native");
    let qr_start = cashier.body.find("id=\"pay-qr\" src=\"").unwrap() + 17;
    let qr =
        unescape(&cashier.body[qr_start..qr_start + cashier.body[qr_start..].find('"').unwrap()]);
    assert!(harness::decode_qr_data_uri(&qr).starts_with("weixin://wxpay/bizpayurl"));
    mock_pay(&stack, &order_no).await;
    let status = desktop
        .get(&cashier.attr("data-status-url").unwrap())
        .await
        .json();
    assert_eq!(status["status"], "paid");
    assert!(status["return_to"]
        .as_str()
        .unwrap()
        .ends_with("&status=success"));
}

#[tokio::test]
async fn a_secret_key_in_a_link_is_refused_and_never_used() {
    let stack = stack().await;
    for ua in [WECHAT_UA, DESKTOP_UA] {
        let browser = Browser::new(ua);
        let answer = browser
            .get(&link(&stack, &[("key", SK), ("amount", "100")]))
            .await;
        assert_eq!(answer.status, 400);
        assert_eq!(answer.page_code(), Some("secret_key_in_link"));
        assert!(answer.body.contains("sk_") && answer.body.contains("pk_"));
        // The key itself is not echoed back.
        assert!(!answer.body.contains(SK));
        assert_eq!(answer.headers["content-type"], "text/html; charset=utf-8");
        // Nor does a POST (native) take it.
        let posted = browser
            .send(
                reqwest::Method::POST,
                &link(&stack, &[("key", SK), ("amount", "100")]),
            )
            .await;
        assert_eq!(posted.page_code(), Some("secret_key_in_link"));
    }
    // An unknown secret-looking key is refused the same way (no oracle for valid keys).
    let answer = Browser::new(DESKTOP_UA)
        .get(&link(
            &stack,
            &[("key", "sk_not_a_real_key"), ("amount", "100")],
        ))
        .await;
    assert_eq!(answer.page_code(), Some("secret_key_in_link"));
}

#[tokio::test]
async fn return_urls_cannot_redirect_payers_anywhere_else() {
    let stack = stack().await;
    let desktop = Browser::new(DESKTOP_UA);
    let visit = |return_url: &str| {
        desktop.get_owned(link(
            &stack,
            &[("key", PK), ("amount", "100"), ("return_url", return_url)],
        ))
    };
    for bad in [
        "javascript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/phish",
        "/relative/path",
        "evil.example",
        "ftp://shop.example/file",
        "https://user:pw@shop.example/",
        "https://",
        "file:///etc/passwd",
    ] {
        let answer = visit(bad).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(answer.page_code(), Some("invalid_return_url"), "{bad}");
    }
    let too_long = format!("https://shop.example/{}", "a".repeat(600));
    assert_eq!(
        visit(&too_long).await.page_code(),
        Some("invalid_return_url")
    );
    // With no registered hosts: the notify URL's host (shop.example) and its subdomains.
    for allowed in [
        "https://shop.example/done",
        "http://shop.example:8443/done",
        "https://m.shop.example/done",
    ] {
        assert_eq!(visit(allowed).await.status, 200, "{allowed}");
    }
    for refused in [
        "http://anything.example/x",
        "https://evilshop.example/",
        "https://shop.example.evil.example/",
        "https://evil.example/shop.example",
        "https://127.0.0.1/",
    ] {
        let answer = visit(refused).await;
        assert_eq!(answer.status, 400, "{refused}");
        assert_eq!(
            answer.page_code(),
            Some("return_url_not_allowed"),
            "{refused}"
        );
    }
    // A merchant with neither a notify URL nor hosts: no return URL, but links still work.
    let mut merchant = demo_merchant(&stack).await;
    merchant.notify_url = None;
    stack.app.store.update_merchant(&merchant).await.unwrap();
    let answer = visit("https://shop.example/done").await;
    assert_eq!(answer.page_code(), Some("return_url_not_allowed"));
    let bare = desktop
        .get(&link(&stack, &[("key", PK), ("amount", "100")]))
        .await;
    assert_eq!(bare.status, 200);

    set_link_settings(&stack, false, None, &["shop.example", "*.pay.example"]).await;
    for allowed in [
        "https://shop.example/done",
        "https://SHOP.example/done?x=1#top",
        "http://shop.example:8443/",
        "https://a.pay.example/",
        "https://a.b.pay.example/",
    ] {
        assert_eq!(visit(allowed).await.status, 200, "{allowed}");
    }
    for refused in [
        "https://evil.example/",
        "https://shop.example.evil.example/",
        "https://evilshop.example/",
        "https://pay.example/",
        "https://xpay.example/",
        "https://127.0.0.1/",
    ] {
        let answer = visit(refused).await;
        assert_eq!(answer.status, 400, "{refused}");
        assert_eq!(
            answer.page_code(),
            Some("return_url_not_allowed"),
            "{refused}"
        );
    }

    // A ticket binds its return URL: swapping it for another is refused.
    let wechat = Browser::new(WECHAT_UA);
    let (_, cashier) = wechat
        .pay_in_wechat(&link(
            &stack,
            &[
                ("key", PK),
                ("amount", "100"),
                ("return_url", "https://shop.example/done"),
            ],
        ))
        .await;
    let swapped = cashier.replace(
        "return_url=https%3A%2F%2Fshop.example%2Fdone",
        "return_url=https%3A%2F%2Fevil.example%2Fdone",
    );
    assert_ne!(swapped, cashier);
    let answer = wechat.get(&swapped).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.page_code(), Some("invalid_ticket"));
    let status = wechat
        .get(&swapped.replace("/pay/gateway/cashier?", "/pay/gateway/status?"))
        .await;
    assert_eq!(status.status, 403);
    assert_eq!(status.json()["code"], "invalid_ticket");
}

#[tokio::test]
async fn signed_links_protect_the_amount() {
    let stack = stack().await;
    let desktop = Browser::new(DESKTOP_UA);
    let params = [
        ("key", PK),
        ("amount", "100"),
        ("description", "会员 1 个月"),
        ("return_url", RETURN_URL),
    ];
    // The merchant has no link secret yet: a signature it cannot check is refused.
    let signed = signed_link(&stack, &params);
    assert_eq!(
        desktop.get(&signed).await.page_code(),
        Some("invalid_signature")
    );

    set_link_settings(&stack, true, Some(LINK_SECRET), &[]).await;
    assert_eq!(desktop.get(&signed).await.status, 200);
    // WeChat's sharing parameters do not break the signature; upper-case hex is fine.
    assert_eq!(
        desktop.get(&format!("{signed}&from=timeline")).await.status,
        200
    );
    let upper = {
        let sign = sign_link(LINK_SECRET, &params).to_uppercase();
        let mut all = params.to_vec();
        all.push(("sign", &sign));
        link(&stack, &all)
    };
    assert_eq!(desktop.get(&upper).await.status, 200);

    let tampered = signed.replace("amount=100", "amount=1");
    assert_ne!(tampered, signed);
    let refused = desktop.get(&tampered).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.page_code(), Some("invalid_signature"));
    assert!(refused.body.contains("链接已被修改"));
    // Nor may a parameter be added, dropped, or given twice.
    let added = format!("{signed}&attach=extra");
    assert_eq!(
        desktop.get(&added).await.page_code(),
        Some("invalid_signature")
    );
    let dropped = link(
        &stack,
        &[
            ("key", PK),
            ("amount", "100"),
            ("sign", &sign_link(LINK_SECRET, &params)),
        ],
    );
    assert_eq!(
        desktop.get(&dropped).await.page_code(),
        Some("invalid_signature")
    );
    let doubled = format!("{signed}&amount=1");
    assert_eq!(
        desktop.get(&doubled).await.page_code(),
        Some("duplicate_parameter")
    );
    // Unsigned links are refused while the merchant requires signatures.
    let unsigned = link(&stack, &params);
    let answer = desktop.get(&unsigned).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.page_code(), Some("signature_required"));
    // POST (native) is held to the same rules.
    let posted = desktop.send(reqwest::Method::POST, &tampered).await;
    assert_eq!(posted.page_code(), Some("invalid_signature"));
    // In WeChat, the signed link goes all the way; the tampered one never reaches OAuth.
    let wechat = Browser::new(WECHAT_UA);
    let (_, cashier) = wechat.pay_in_wechat(&signed).await;
    let order_no = query_of(&cashier)["order_no"].clone();
    assert_eq!(order(&stack, &order_no).await.amount.get(), 100);
    assert_eq!(
        order(&stack, &order_no).await.source,
        OrderSource::SignedLink
    );
    assert_eq!(wechat.get(&tampered).await.status, 403);

    // An expiring signed link.
    let past = (unix_now() - 60).to_string();
    let expired = signed_link(
        &stack,
        &[("key", PK), ("amount", "100"), ("expires", &past)],
    );
    let answer = desktop.get(&expired).await;
    assert_eq!(answer.status, 410);
    assert_eq!(answer.page_code(), Some("link_expired"));
    let future = (unix_now() + 3600).to_string();
    let fresh = signed_link(
        &stack,
        &[("key", PK), ("amount", "100"), ("expires", &future)],
    );
    assert_eq!(desktop.get(&fresh).await.status, 200);
}

async fn orders_total(stack: &DevStack) -> u64 {
    let res = reqwest::Client::new()
        .get(format!("{}/api/v1/pay/list", stack.base_url()))
        .header("x-api-key", SK)
        .send()
        .await
        .unwrap();
    res.json::<Value>().await.unwrap()["total"]
        .as_u64()
        .unwrap()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A link's parameters, the status and the page code they get.
type BadLink<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);

#[tokio::test]
async fn bad_parameters_get_readable_pages() {
    let stack = stack().await;
    let desktop = Browser::new(DESKTOP_UA);
    let cases: &[BadLink] = &[
        (&[("amount", "100")], 400, "missing_api_key"),
        (&[("key", ""), ("amount", "100")], 400, "missing_api_key"),
        (
            &[("key", "pk_unknown"), ("amount", "100")],
            404,
            "invalid_api_key",
        ),
        (
            &[("key", "whsec_abc"), ("amount", "100")],
            404,
            "invalid_api_key",
        ),
        (&[("key", PK)], 400, "invalid_amount"),
        (&[("key", PK), ("amount", "0")], 400, "invalid_amount"),
        (&[("key", PK), ("amount", "-5")], 400, "invalid_amount"),
        (&[("key", PK), ("amount", "1.50")], 400, "invalid_amount"),
        (&[("key", PK), ("amount", "1e3")], 400, "invalid_amount"),
        (
            &[("key", PK), ("amount", "100000001")],
            400,
            "invalid_amount",
        ),
        (
            &[("key", PK), ("amount", "99999999999999999999")],
            400,
            "invalid_amount",
        ),
        (&[("key", PK), ("amount", "１００")], 400, "invalid_amount"),
        (
            &[("key", PK), ("amount", "100"), ("description", "a\nb")],
            400,
            "invalid_field",
        ),
        (
            &[("key", PK), ("amount", "100"), ("description", "   ")],
            400,
            "invalid_field",
        ),
        (
            &[("key", PK), ("amount", "100"), ("attach", "x\u{7}")],
            400,
            "invalid_field",
        ),
        (
            &[("key", PK), ("amount", "100"), ("expires", "soon")],
            400,
            "invalid_field",
        ),
        (
            &[("key", PK), ("amount", "100"), ("amount", "1")],
            400,
            "duplicate_parameter",
        ),
    ];
    let long_description = "长".repeat(128);
    let long_attach = "a".repeat(129);
    let long: &[BadLink] = &[
        (
            &[
                ("key", PK),
                ("amount", "100"),
                ("description", &long_description),
            ],
            400,
            "invalid_field",
        ),
        (
            &[("key", PK), ("amount", "100"), ("attach", &long_attach)],
            400,
            "invalid_field",
        ),
    ];
    for (params, status, code) in cases.iter().chain(long) {
        let answer = desktop.get(&link(&stack, params)).await;
        assert_eq!(answer.status, *status, "{params:?}: {}", answer.body);
        assert_eq!(answer.page_code(), Some(*code), "{params:?}");
        assert!(answer.body.starts_with("<!doctype html>"), "{params:?}");
        assert!(answer.body.contains("lang=\"zh-CN\""));
    }
    // A disabled merchant.
    let mut merchant = demo_merchant(&stack).await;
    merchant.status = MerchantStatus::Disabled;
    stack.app.store.update_merchant(&merchant).await.unwrap();
    let answer = desktop
        .get(&link(&stack, &[("key", PK), ("amount", "100")]))
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.page_code(), Some("product_disabled"));

    // Other methods and paths under the gateway.
    let put = desktop
        .send(
            reqwest::Method::PUT,
            &link(&stack, &[("key", PK), ("amount", "100")]),
        )
        .await;
    assert_eq!(put.status, 405);
    let cashier = desktop
        .get(&format!(
            "{}/pay/gateway/cashier?order_no=nope",
            stack.base_url()
        ))
        .await;
    assert_eq!(cashier.status, 403);
    assert_eq!(cashier.page_code(), Some("invalid_ticket"));
}

#[tokio::test]
async fn a_closed_order_shows_closed_and_sends_the_payer_back_with_fail() {
    let stack = stack().await;
    let wechat = Browser::new(WECHAT_UA);
    let (_, cashier_url) = wechat
        .pay_in_wechat(&link(
            &stack,
            &[("key", PK), ("amount", "100"), ("return_url", RETURN_URL)],
        ))
        .await;
    let order_no = query_of(&cashier_url)["order_no"].clone();
    // The merchant closes it (its API).
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/pay/close", stack.base_url()))
        .header("x-api-key", SK)
        .json(&serde_json::json!({"order_no": order_no}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let cashier = wechat.get(&cashier_url).await;
    assert_eq!(cashier.attr("data-state").as_deref(), Some("closed"));
    let status = wechat
        .get(&cashier.attr("data-status-url").unwrap())
        .await
        .json();
    assert_eq!(status["status"], "closed");
    assert!(status["return_to"]
        .as_str()
        .unwrap()
        .ends_with("&status=fail"));
    assert_eq!(order(&stack, &order_no).await.status, OrderStatus::Closed);
}

#[tokio::test]
async fn link_orders_spend_their_own_bucket_never_the_merchants_api() {
    // A clock that stands still: all 25 orders fall in one minute window.
    let clock = ferrypay::testing::clock_at_start();
    let options = stack_options(ServiceConfig {
        link_rate_limit_per_minute: Some(20),
        ..dev_config()
    });
    let stack = harness::start_dev(DevOptions {
        clock: DevClock(clock.clone()),
        ..options
    })
    .await;
    let desktop = Browser::new(DESKTOP_UA);
    let link = link(&stack, &[("key", PK), ("amount", "100")]);
    let prepays_before = stack.mock.as_ref().unwrap().mock.calls();
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..25 {
        let answer = desktop.send(reqwest::Method::POST, &link).await;
        statuses.push(answer.status);
        if answer.status == 429 {
            limited = Some(answer);
        }
    }
    assert_eq!(statuses[..20], [303; 20], "{statuses:?}");
    assert_eq!(statuses[20..], [429; 5], "{statuses:?}");
    let limited = limited.unwrap();
    assert_eq!(limited.page_code(), Some("rate_limited"));
    let retry_after = limited
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(retry_after.parse::<u64>().unwrap() >= 1, "{retry_after}");
    // Only the 20 orders reached WeChat Pay.
    assert_eq!(
        stack.mock.as_ref().unwrap().mock.calls() - prepays_before,
        20
    );
    // The merchant's own API is untouched: create and list answer 200.
    let api = reqwest::Client::new();
    let created = api
        .post(format!("{}/api/v1/pay/create", stack.base_url()))
        .header("x-api-key", SK)
        .json(&serde_json::json!({"amount": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let listed = api
        .get(format!("{}/api/v1/pay/list?per_page=1", stack.base_url()))
        .header("x-api-key", SK)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["total"], 21, "20 link orders and the API's");
    // Opening the page creates nothing and is not counted.
    assert_eq!(desktop.get(&link).await.status, 200);
}
