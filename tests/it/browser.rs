//! Jump-pay in a real browser: Debian's headless Chromium, driven by playwright-core
//! (`tests/browser/jumppay.mjs`), pays payment links on the dev stack, inside WeChat (OAuth
//! through the mock, the cashier, a stand-in `WeixinJSBridge` that pays through the mock's
//! `/mock/jsapi/pay`) and outside it (the open-in-WeChat page, a native QR code), and meets the
//! refusals (a changed or unsigned link where signing is required, a secret key in a link, a
//! return URL elsewhere). This test starts the stack and a stand-in merchant site (the
//! `return_url`), runs the script with a bounded time, and then checks what the server stored.
//!
//! Needs `FERRYPAY_TEST_NODE` (a `node`, 20 or later; `npm ci` run in `tests/browser`) and
//! `FERRYPAY_TEST_CHROMIUM` (Chromium, e.g. `/usr/bin/chromium` from Debian's `chromium`).
//! `make test` (scripts/test.sh) installs both and sets them. Without them the test fails,
//! never skips. Screenshots of every page go to `$CARGO_TARGET_DIR/browser-screenshots` (default
//! `target/browser-screenshots`).

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::harness;
use ferrypay::{
    model::{Fen, MerchantId, OrderNo, OrderStatus, PayType, Secret},
    service::{NewMerchant, ServiceConfig},
    sign::link::sign_link,
    store::{prelude::*, ListQuery, PageStart},
    testing::{ReceivedRequest, Reply, TestReceiver},
};
use ferrypay_cli::{
    dev::{DevOptions, DevStack},
    dev_keys,
};
use serde_json::Value;

/// The whole browser run: Chromium's start and the scenarios take about 12 s here; the script
/// stops itself after 90 s, and is killed after this.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

const SK: &str = "sk_test_browser_demo_shop";
const PK: &str = "pk_test_browser_demo_shop";
const SIGNED_SK: &str = "sk_test_browser_signed_shop";
const SIGNED_PK: &str = "pk_test_browser_signed_shop";
const LINK_SECRET: &str = "lsk_test_browser_0123456789abcdefghijkl";
const SIGNED_AMOUNT: i64 = 990;

/// What is missing when a program the tests need is not set.
const ENV_HINT: &str = "the browser test runs tests/browser/jumppay.mjs with node in \
             headless Chromium; run `make test` (scripts/test.sh runs `npm ci` in tests/browser, \
             installs Chromium if it can and sets FERRYPAY_TEST_NODE and FERRYPAY_TEST_CHROMIUM)";

/// `$CARGO_TARGET_DIR/browser-screenshots`, emptied of earlier runs' screenshots.
fn screenshot_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => harness::workspace_dir().join("target"),
    };
    let dir = target.join("browser-screenshots");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "png") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options() -> DevOptions {
    let options = harness::dev_options(NewMerchant {
        name: "咖啡小站".into(),
        notify_url: Some("http://127.0.0.1:9/notify".into()),
        secret_key: Some(Secret::new(SK.into())),
        publishable_key: Some(PK.into()),
        webhook_secret: None,
        notify_events: None,
    });
    DevOptions {
        config: ServiceConfig {
            rate_limit_per_minute: None,
            ..options.config
        },
        ..options
    }
}

/// The merchant's site: answers any request with a small page saying which order came back and
/// how (`#merchant-site[data-order][data-status]`), and remembers each request's path and query.
struct MerchantSite {
    url: String,
    server: TestReceiver,
}

impl MerchantSite {
    async fn start() -> MerchantSite {
        let server =
            TestReceiver::serve(
                |request: ReceivedRequest| async move { merchant_page(&request.path) },
            )
            .await;
        MerchantSite {
            url: server.url_for("/paid?shop=demo"),
            server,
        }
    }

    fn visits(&self) -> Vec<String> {
        self.server
            .requests()
            .into_iter()
            .map(|request| request.path)
            .collect()
    }
}

fn merchant_page(target: &str) -> Reply {
    let query: Vec<(String, String)> =
        match reqwest::Url::parse(&format!("http://merchant.site{target}")) {
            Ok(url) => url.query_pairs().into_owned().collect(),
            Err(_) => Vec::new(),
        };
    let get = |name: &str| {
        query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    // Only plain values are echoed (order numbers and statuses are alphanumeric).
    let plain = |v: &str| -> String { v.chars().filter(char::is_ascii_alphanumeric).collect() };
    let (order, status) = (plain(get("order_no")), plain(get("status")));
    let headline = match status.as_str() {
        "success" => "付款成功，谢谢惠顾",
        "fail" => "未完成付款",
        _ => "咖啡小站",
    };
    let body = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>咖啡小站</title></head><body style=\"font:16px sans-serif;padding:24px\">\
         <main id=\"merchant-site\" data-order=\"{order}\" data-status=\"{status}\">\
         <h1>{headline}</h1><p>订单号 {order}</p><p>（商户网站，测试用）</p></main></body></html>"
    );
    Reply::status(200)
        .header("content-type", "text/html; charset=utf-8")
        .body(&body)
}

async fn order(stack: &DevStack, no: &Value) -> ferrypay::model::Order {
    let no = OrderNo::parse(no.as_str().unwrap()).unwrap();
    stack.app.store.get_order(&no).await.unwrap().unwrap()
}

async fn orders_of(stack: &DevStack, merchant: &MerchantId) -> Vec<ferrypay::model::Order> {
    stack
        .app
        .store
        .list_orders(&ListQuery {
            merchant_id: merchant.clone(),
            status: None,
            start: PageStart::Page(1),
            per_page: 100,
        })
        .await
        .unwrap()
        .orders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payers_pay_links_in_headless_chromium() {
    let node = harness::required_env("FERRYPAY_TEST_NODE", ENV_HINT);
    let chromium = harness::required_env("FERRYPAY_TEST_CHROMIUM", ENV_HINT);
    assert!(
        chromium.is_file(),
        "FERRYPAY_TEST_CHROMIUM={} is not a file",
        chromium.display()
    );
    let script_dir = harness::workspace_dir().join("tests/browser");
    assert!(
        script_dir
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "tests/browser/node_modules/playwright-core is missing: run `npm ci` in tests/browser \
         (`make test` does)"
    );
    let screenshots = screenshot_dir();

    let stack = DevStack::start(options()).await.unwrap();
    let site = MerchantSite::start().await;
    let site_host = reqwest::Url::parse(&site.url)
        .unwrap()
        .host_str()
        .unwrap()
        .to_string();

    // The demo merchant takes unsigned links, returning to its own site only.
    let mut demo = stack
        .app
        .store
        .get_merchant(&stack.merchant.id)
        .await
        .unwrap()
        .unwrap();
    demo.payment_links.allowed_return_hosts = vec![site_host.clone()];
    stack.app.store.update_merchant(&demo).await.unwrap();

    // A second merchant takes signed links only.
    let (mut signed_shop, _) = stack
        .app
        .onboard_merchant(NewMerchant {
            name: "签名书店".into(),
            notify_url: Some("http://127.0.0.1:9/notify".into()),
            secret_key: Some(Secret::new(SIGNED_SK.into())),
            publishable_key: Some(SIGNED_PK.into()),
            webhook_secret: None,
            notify_events: None,
        })
        .await
        .unwrap();
    signed_shop.payment_links.signing_secret =
        Some(ferrypay::model::MerchantSecret::new(LINK_SECRET));
    signed_shop.payment_links.require_signed = true;
    signed_shop.payment_links.allowed_return_hosts = vec![site_host];
    stack.app.store.update_merchant(&signed_shop).await.unwrap();
    let amount = SIGNED_AMOUNT.to_string();
    let params = [
        ("key", SIGNED_PK),
        ("amount", amount.as_str()),
        ("description", "《支付系统设计》"),
        ("return_url", site.url.as_str()),
    ];
    let mut signed_link =
        reqwest::Url::parse(&format!("{}/pay/gateway", stack.public_url)).unwrap();
    signed_link
        .query_pairs_mut()
        .extend_pairs(params)
        .append_pair("sign", &sign_link(LINK_SECRET, &params));

    let mock = stack.mock.as_ref().unwrap();
    let mut command = Command::new(&node);
    command
        .arg("jumppay.mjs")
        .current_dir(&script_dir)
        .env(
            "FERRYPAY_BROWSER_GATEWAY",
            format!("{}/pay/gateway", stack.public_url),
        )
        .env("FERRYPAY_BROWSER_MOCK", mock.base_url())
        .env("FERRYPAY_BROWSER_PK", PK)
        .env("FERRYPAY_BROWSER_SK", SK)
        .env("FERRYPAY_BROWSER_SIGNED_LINK", signed_link.as_str())
        .env("FERRYPAY_BROWSER_LINK_SECRET", LINK_SECRET)
        .env("FERRYPAY_BROWSER_RETURN_URL", &site.url)
        .env("FERRYPAY_BROWSER_SCREENSHOTS", &screenshots)
        .env("FERRYPAY_BROWSER_CHROMIUM", &chromium);
    let started = Instant::now();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || harness::run_bounded(command, RUN_TIMEOUT))
            .await
            .unwrap();
    println!("{stdout}");
    eprintln!("{stderr}");
    assert_eq!(
        code,
        Some(0),
        "the browser test failed (screenshots in {}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        screenshots.display()
    );
    println!(
        "browser run: {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        screenshots.display()
    );
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("FERRYPAY_BROWSER_RESULT "))
        .map(|json| serde_json::from_str(json).unwrap())
        .unwrap_or_else(|| panic!("no FERRYPAY_BROWSER_RESULT line:\n{stdout}"));
    let results = &report["results"];

    // a and b paid by the bridge through the mock (JSAPI, the OAuth payer), c by a QR code.
    for (scenario, pay_type, amount) in [
        ("a", PayType::Jsapi, 100),
        ("b", PayType::Jsapi, 2990),
        ("c", PayType::Native, 12800),
    ] {
        let paid = order(&stack, &results[scenario]["paid"]).await;
        assert_eq!(paid.status, OrderStatus::Paid, "scenario {scenario}");
        assert_eq!(paid.pay_type, pay_type, "scenario {scenario}");
        assert_eq!(paid.amount, Fen::new(amount), "scenario {scenario}");
        assert_eq!(paid.merchant_id, stack.merchant.id, "scenario {scenario}");
        assert!(paid.webhook.queued_at.is_some(), "scenario {scenario}");
        if pay_type == PayType::Jsapi {
            assert_eq!(paid.openid.as_deref(), Some(dev_keys::OAUTH_OPENID));
        }
        assert_eq!(
            mock.mock.trade_state(paid.order_no.as_str()),
            Some("SUCCESS")
        );
        let back = format!("/paid?shop=demo&order_no={}&status=success", paid.order_no);
        assert!(
            site.visits().contains(&back),
            "scenario {scenario}: the merchant site saw {:?}",
            site.visits()
        );
    }
    let a = order(&stack, &results["a"]["paid"]).await;
    assert_eq!(a.description, "拿铁咖啡 大杯");
    assert_eq!(a.attach.as_deref(), Some("order-a"));

    // d: the signed link made one order, unpaid; the changed and unsigned ones made none.
    let signed = order(&stack, &results["d"]["pending"]).await;
    assert_eq!(signed.status, OrderStatus::Pending);
    assert_eq!(signed.merchant_id, signed_shop.id);
    assert_eq!(signed.amount, Fen::new(SIGNED_AMOUNT));
    assert_eq!(signed.description, "《支付系统设计》");
    let signed_orders = orders_of(&stack, &signed_shop.id).await;
    assert_eq!(signed_orders.len(), 1, "{signed_orders:?}");

    // e: going back to the used OAuth callback authorized again (the mock refused the used
    // code with 40163) and made a second, separate order.
    let pending: Vec<Value> = results["e"]["pending"].as_array().unwrap().clone();
    assert_eq!(pending.len(), 2);
    for no in &pending {
        let o = order(&stack, no).await;
        assert_eq!(o.status, OrderStatus::Pending);
        assert_eq!(o.amount, Fen::new(500));
    }
    assert_ne!(pending[0], pending[1]);
    assert!(
        mock.mock
            .oauth_calls()
            .iter()
            .any(|call| call.errcode == Some(40163)),
        "the used code was presented again"
    );

    // f made nothing; in all, the demo merchant has exactly the orders above.
    let demo_orders = orders_of(&stack, &stack.merchant.id).await;
    assert_eq!(demo_orders.len(), 5, "{demo_orders:?}");

    println!("timings (ms): {}", report["timings"]);
}
