//! The merchant API contract, end to end through `ferrypay::api` (the code every Lambda and the
//! dev server run), on the in-memory store and the fake channel, with a manual clock.

use crate::harness::{self, assert_error, decode_qr_data_uri, Harness, START};
use ferrypay::{
    api::{self, ClientAddr, Endpoint},
    channel::TradeState,
    model::{Cidr, Clock, MerchantStatus, OrderNo},
    service::{AllowlistChange, MerchantAdmin, ServiceConfig, WebhookJob},
    store::prelude::*,
    testing,
};
use ferrypay_lambda::{run_json_event, Route};
use http::{Method, StatusCode};
use serde_json::{json, Value};

// ---------------------------------------------------------------- create

#[tokio::test]
async fn create_native_returns_code_url_and_a_qr_that_decodes_to_it() {
    let h = Harness::new().await;
    let (status, body) = h
        .create(r#"{"amount": 100, "description": "Latte", "attach": "user_id=123"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["amount"], 100);
    assert_eq!(body["pay_type"], "native");
    assert_eq!(body["status"], "pending");
    let order_no = body["order_no"].as_str().unwrap();
    assert!(OrderNo::parse(order_no).is_some(), "{order_no}");
    assert!(order_no.starts_with("FP20251221103000"), "{order_no}");
    // 120 minutes by default, in Beijing time.
    assert_eq!(body["expires_at"], "2025-12-21 12:30:00");
    let code_url = body["code_url"].as_str().unwrap();
    assert!(code_url.starts_with("weixin://wxpay/bizpayurl?pr="));
    assert_eq!(
        decode_qr_data_uri(body["qrcode"].as_str().unwrap()),
        code_url
    );
    // Contract order: success first.
    assert!(serde_json::to_string(&body)
        .unwrap()
        .starts_with(r#"{"success":true"#));
}

#[tokio::test]
async fn create_jsapi_returns_bridge_parameters() {
    let h = Harness::new().await;
    let (status, body) = h
        .create(r#"{"amount": 1, "pay_type": "jsapi", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let jsapi = &body["jsapi"];
    for field in [
        "appId",
        "timeStamp",
        "nonceStr",
        "package",
        "signType",
        "paySign",
    ] {
        assert!(jsapi[field].is_string(), "{field} missing in {jsapi}");
    }
    assert!(jsapi["package"].as_str().unwrap().starts_with("prepay_id="));
    assert_eq!(jsapi["signType"], "RSA");
    assert!(body.get("code_url").is_none());
}

#[tokio::test]
async fn create_h5_returns_h5_url() {
    let h = Harness::new().await;
    let (status, body) = h
        .create(r#"{"amount": 1, "pay_type": "h5", "client_ip": "203.0.113.7"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["h5_url"].as_str().unwrap().starts_with("https://"));
}

#[tokio::test]
async fn description_defaults_to_the_merchant_name_and_expiry_is_honoured() {
    let h = Harness::new().await;
    let (_, body) = h.create(r#"{"amount": 5, "expire_minutes": 1}"#).await;
    assert_eq!(body["expires_at"], "2025-12-21 10:31:00");
    let (_, q) = h.query(body["order_no"].as_str().unwrap()).await;
    assert_eq!(q["order"]["description"], "Test Coffee");
}

#[tokio::test]
async fn amounts_are_accepted_as_digit_strings_too() {
    let h = Harness::new().await;
    let (status, body) = h.create(r#"{"amount": "250"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["amount"], 250);
}

#[tokio::test]
async fn a_numeric_out_trade_no_is_kept_digit_for_digit_and_other_numbers_are_refused() {
    let h = Harness::new().await;
    let (status, body) = h
        .create(r#"{"amount": 100, "out_trade_no": 12345678901234567890}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["out_trade_no"], "12345678901234567890");
    let (status, found) = h
        .post(
            "/api/v1/pay/query",
            r#"{"out_trade_no": 12345678901234567890}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["order"]["order_no"], body["order_no"]);
    for number in ["1e3", "1.5", "-1"] {
        let (status, body) = h
            .create(&format!(r#"{{"amount": 100, "out_trade_no": {number}}}"#))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{number}: {body}");
        assert_eq!(body["code"], "invalid_field", "{number}");
        assert_eq!(body["field"], "out_trade_no", "{number}");
    }
}

#[tokio::test]
async fn format_characters_are_refused_in_description_and_attach() {
    let h = Harness::new().await;
    for field in ["description", "attach"] {
        for c in [
            r"\u202e",
            r"\u200b",
            r"\u2067",
            r"\ufeff",
            r"\u00ad",
            r"\udb40\udc41",
        ] {
            let body = format!(r#"{{"amount": 100, "{field}": "abc{c}def"}}"#);
            let (status, answer) = h.create(&body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
            assert_eq!(answer["code"], "invalid_field", "{body}");
            assert_eq!(answer["field"], field, "{body}");
        }
    }
    let (status, body) = h
        .create(r#"{"amount": 100, "description": "拿铁 · 大杯 ☕", "attach": "a=1&b=é"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn api_orders_show_their_source_in_query_and_list() {
    let h = Harness::new().await;
    let (_, created) = h
        .create(r#"{"amount": 100, "out_trade_no": "src-1"}"#)
        .await;
    let no = created["order_no"].as_str().unwrap();
    let (_, queried) = h.query(no).await;
    assert_eq!(queried["order"]["source"], "api", "{queried}");
    let (_, listed) = h.get("/api/v1/pay/list").await;
    assert_eq!(listed["orders"][0]["source"], "api", "{listed}");
}

// ---------------------------------------------------------------- keys

#[tokio::test]
async fn the_api_key_is_accepted_in_all_four_places() {
    let h = Harness::new().await;
    let sk = h.sk();
    let path = "/api/v1/pay/create";
    let body = r#"{"amount": 1}"#;
    let bearer = format!("Bearer {sk}");
    let cases = [
        h.send(Method::POST, path, &[("X-API-Key", &sk)], body)
            .await,
        h.send(Method::POST, path, &[("Authorization", &bearer)], body)
            .await,
        h.send(Method::POST, &format!("{path}?key={sk}"), &[], body)
            .await,
        h.send(
            Method::POST,
            path,
            &[],
            &format!(r#"{{"amount": 1, "key": "{sk}"}}"#),
        )
        .await,
    ];
    for (status, body) in cases {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[tokio::test]
async fn missing_and_invalid_keys_are_401() {
    let h = Harness::new().await;
    let path = "/api/v1/pay/create";
    let body = r#"{"amount": 1}"#;
    assert_error(
        &h.send(Method::POST, path, &[], body).await,
        StatusCode::UNAUTHORIZED,
        "missing_api_key",
    );
    assert_error(
        &h.send(Method::POST, path, &[("Authorization", "Basic abc")], body)
            .await,
        StatusCode::UNAUTHORIZED,
        "missing_api_key",
    );
    let wrong = h
        .send(Method::POST, path, &[("X-API-Key", "sk_wrong")], body)
        .await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_api_key");
    assert_eq!(wrong.1["error"], "Invalid API Key");
}

#[tokio::test]
async fn a_publishable_key_is_refused_on_every_server_endpoint() {
    let h = Harness::new().await;
    let order_no = h.create_ok(1).await;
    let pk = h.keys.publishable_key.clone();
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/pay/create",
            r#"{"amount": 1}"#.to_string(),
        ),
        (
            Method::POST,
            "/api/v1/pay/query",
            format!(r#"{{"order_no": "{order_no}"}}"#),
        ),
        (
            Method::POST,
            "/api/v1/pay/close",
            format!(r#"{{"order_no": "{order_no}"}}"#),
        ),
        (Method::GET, "/api/v1/pay/list", String::new()),
    ] {
        let got = h.send(method, path, &[("X-API-Key", &pk)], &body).await;
        assert_error(&got, StatusCode::FORBIDDEN, "permission_denied");
        assert_eq!(got.1["error"], "Permission denied");
    }
}

#[tokio::test]
async fn a_disabled_merchant_gets_product_disabled() {
    let h = Harness::new().await;
    let mut merchant = h.merchant.clone();
    merchant.status = MerchantStatus::Disabled;
    h.app.store.save_merchant(&merchant).unwrap();
    let got = h.create(r#"{"amount": 1}"#).await;
    assert_error(&got, StatusCode::FORBIDDEN, "product_disabled");
    assert_eq!(got.1["error"], "Product disabled");
    assert_error(
        &h.get("/api/v1/pay/list").await,
        StatusCode::FORBIDDEN,
        "product_disabled",
    );
}

// ---------------------------------------------------------------- IP allowlists

/// Sets the test merchant's allowlist (the operator's command does the same).
async fn allow_only(h: &Harness, ranges: &[&str]) {
    let ranges = ranges.iter().map(|c| Cidr::parse(c).unwrap()).collect();
    MerchantAdmin::new(&h.app.store, &*h.clock, false)
        .change_ip_allowlist(&h.merchant.id, AllowlistChange::Add(ranges))
        .await
        .unwrap();
}

/// A create request with this key, from `from` (as the runtime records it; `None`: unknown).
async fn create_from(h: &Harness, key: &str, from: Option<&str>) -> (StatusCode, Value) {
    let mut req = http::Request::builder()
        .method(Method::POST)
        .uri("/api/v1/pay/create")
        .header("x-api-key", key)
        // Client headers never count.
        .header("x-forwarded-for", "203.0.113.10")
        .body(bytes::Bytes::from_static(br#"{"amount": 1}"#))
        .unwrap();
    if let Some(ip) = from {
        ClientAddr::attach(&mut req, ip.parse().unwrap());
    }
    let res = api::handle(&h.app, req).await;
    (res.status(), serde_json::from_str(res.body()).unwrap())
}

#[tokio::test]
async fn a_key_from_outside_the_ip_allowlist_is_403_before_anything_else() {
    let h = Harness::with_app(|mut app| {
        app.config.rate_limit_per_minute = Some(2);
        app
    })
    .await;
    let sk = h.sk();
    // No list: any address, or none known.
    assert_eq!(
        create_from(&h, &sk, Some("198.51.100.1")).await.0,
        StatusCode::OK
    );
    allow_only(&h, &["203.0.113.0/24", "2001:db8::/32"]).await;

    for from in [Some("198.51.100.1"), Some("2001:db9::1"), Some("::1"), None] {
        let got = create_from(&h, &sk, from).await;
        assert_error(&got, StatusCode::FORBIDDEN, "ip_not_allowed");
        assert_eq!(got.1["error"], "Request address not allowed", "{from:?}");
        let text = got.1.to_string().to_lowercase();
        assert!(!text.contains("key") && !text.contains("sk_"), "{text}");
    }
    // Not even a publishable key's kind, nor a disabled merchant, shows from outside.
    let got = create_from(&h, testing::TEST_PUBLISHABLE_KEY, Some("198.51.100.1")).await;
    assert_error(&got, StatusCode::FORBIDDEN, "ip_not_allowed");
    // None of that spent the limit of 2 a minute (one used above): one more passes, from
    // inside, over IPv4 or IPv6 (and an IPv4-mapped IPv6 peer counts as its IPv4 address).
    assert_eq!(
        create_from(&h, &sk, Some("::ffff:203.0.113.77")).await.0,
        StatusCode::OK
    );
    let got = create_from(&h, &sk, Some("2001:db8:1::5")).await;
    assert_error(&got, StatusCode::TOO_MANY_REQUESTS, "rate_limited");

    let mut merchant = h
        .app
        .store
        .get_merchant(&h.merchant.id)
        .await
        .unwrap()
        .unwrap();
    merchant.status = MerchantStatus::Disabled;
    h.app.store.save_merchant(&merchant).unwrap();
    let got = create_from(&h, &sk, Some("198.51.100.1")).await;
    assert_error(&got, StatusCode::FORBIDDEN, "ip_not_allowed");
    let got = create_from(&h, &sk, Some("203.0.113.1")).await;
    assert_error(&got, StatusCode::FORBIDDEN, "product_disabled");
}

#[tokio::test]
async fn a_lambda_event_from_another_source_ip_is_refused_whatever_its_headers_say() {
    let h = Harness::new().await;
    let event = include_str!("../../events/create.json");
    let route = Route::Merchant(Endpoint::Create);
    allow_only(&h, &["203.0.113.0/24"]).await;
    // The sample event comes from 203.0.113.10 with the test merchant's key.
    let (status, body) = run_json_event(&h.app, route, event).await.unwrap();
    assert_eq!(status, 200, "{body}");

    let mut other: Value = serde_json::from_str(event).unwrap();
    other["requestContext"]["http"]["sourceIp"] = json!("198.51.100.9");
    other["headers"]["x-forwarded-for"] = json!("203.0.113.10");
    let (status, body) = run_json_event(&h.app, route, &other.to_string())
        .await
        .unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("ip_not_allowed")),
        "{body}"
    );

    other["requestContext"]["http"]["sourceIp"] = json!("2001:db8::10");
    let (status, _) = run_json_event(&h.app, route, &other.to_string())
        .await
        .unwrap();
    assert_eq!(status, 403);
    allow_only(&h, &["2001:db8::/64"]).await;
    let (status, body) = run_json_event(&h.app, route, &other.to_string())
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

// ---------------------------------------------------------------- validation

#[tokio::test]
async fn bad_input_is_400_with_the_field_named() {
    let h = Harness::new().await;
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        ("{not json", "invalid_json", "Invalid JSON", None),
        ("[1, 2]", "invalid_json", "Invalid JSON", None),
        (
            r#"{"amount": 0}"#,
            "invalid_amount",
            "Invalid amount",
            Some("amount"),
        ),
        (
            r#"{"amount": -5}"#,
            "invalid_amount",
            "Invalid amount",
            Some("amount"),
        ),
        (
            r#"{"amount": 100000001}"#,
            "invalid_amount",
            "Invalid amount",
            Some("amount"),
        ),
        (
            r#"{"amount": 9.99}"#,
            "invalid_amount",
            "Invalid amount",
            Some("amount"),
        ),
        (
            r#"{"description": "x"}"#,
            "invalid_amount",
            "Invalid amount",
            Some("amount"),
        ),
        (
            r#"{"amount": 1, "pay_type": "jsapi"}"#,
            "openid_required",
            "JSAPI requires openid",
            Some("openid"),
        ),
        (
            r#"{"amount": 1, "pay_type": "h5"}"#,
            "client_ip_required",
            "H5 requires client_ip",
            Some("client_ip"),
        ),
        (
            r#"{"amount": 1, "pay_type": "bank"}"#,
            "invalid_field",
            "pay_type is invalid",
            Some("pay_type"),
        ),
        (
            r#"{"amount": 1, "notify_url": "http://shop.example/n"}"#,
            "invalid_field",
            "notify_url is invalid",
            Some("notify_url"),
        ),
        (
            r#"{"amount": 1, "out_trade_no": "bad id!"}"#,
            "invalid_field",
            "out_trade_no is invalid",
            Some("out_trade_no"),
        ),
        (
            r#"{"amount": 1, "expire_minutes": 500}"#,
            "invalid_field",
            "expire_minutes is invalid",
            Some("expire_minutes"),
        ),
        (
            r#"{"amount": 1, "description": {"a": 1}}"#,
            "invalid_field",
            "description is invalid",
            Some("description"),
        ),
        (
            r#"{"amount": 1, "colour": "red"}"#,
            "unknown_field",
            "Unknown field: colour",
            Some("colour"),
        ),
    ];
    for (body, code, message, field) in cases {
        let got = h.create(body).await;
        assert_error(&got, StatusCode::BAD_REQUEST, code);
        assert_eq!(got.1["error"], *message, "{body}");
        assert_eq!(got.1["field"].as_str(), *field, "{body}");
    }
    // Nothing was stored by any of them.
    let (_, list) = h.get("/api/v1/pay/list").await;
    assert_eq!(list["total"], 0);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let h = Harness::new().await;
    let body = format!(r#"{{"amount": 1, "attach": "{}"}}"#, "a".repeat(70_000));
    assert_error(
        &h.create(&body).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let h = Harness::new().await;
    assert_error(
        &h.get("/api/v1/pay/transfer").await,
        StatusCode::NOT_FOUND,
        "route_not_found",
    );
    assert_error(
        &h.get("/api/v1/pay/refund").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error(
        &h.get("/api/v1/pay/create").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error(
        &h.send(Method::DELETE, "/api/v1/pay/query", &[], "").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

// ---------------------------------------------------------------- out_trade_no idempotency

#[tokio::test]
async fn same_out_trade_no_and_parameters_returns_the_same_order() {
    let h = Harness::new().await;
    let body = r#"{"amount": 300, "out_trade_no": "shop-1001", "attach": "a=1"}"#;
    let (s1, first) = h.create(body).await;
    let calls = h.app.channel.calls();
    let (s2, second) = h.create(body).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(first["order_no"], second["order_no"]);
    assert_eq!(first["code_url"], second["code_url"]);
    assert_eq!(second["out_trade_no"], "shop-1001");
    assert_eq!(
        h.app.channel.calls(),
        calls,
        "a replay does not call the channel again"
    );
    let (_, list) = h.get("/api/v1/pay/list").await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn same_out_trade_no_with_other_parameters_is_409() {
    let h = Harness::new().await;
    h.create(r#"{"amount": 300, "out_trade_no": "shop-1002"}"#)
        .await;
    for other in [
        r#"{"amount": 301, "out_trade_no": "shop-1002"}"#,
        r#"{"amount": 300, "out_trade_no": "shop-1002", "description": "else"}"#,
        r#"{"amount": 300, "out_trade_no": "shop-1002", "attach": "x"}"#,
    ] {
        let got = h.create(other).await;
        assert_error(&got, StatusCode::CONFLICT, "out_trade_no_used");
        assert_eq!(got.1["error"], "out_trade_no already used");
    }
}

#[tokio::test]
async fn out_trade_no_is_unique_per_merchant_not_globally() {
    let h = Harness::new().await;
    let (other, other_keys) = testing::onboard(&h.app, "Other", None, None).await;
    let body = r#"{"amount": 300, "out_trade_no": "shared-no"}"#;
    let (_, mine) = h.create(body).await;
    let sk = other_keys.secret_key.expose().clone();
    let (status, theirs) = h
        .send(
            Method::POST,
            "/api/v1/pay/create",
            &[("x-api-key", &sk)],
            body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{theirs} for {}", other.id);
    assert_ne!(mine["order_no"], theirs["order_no"]);
}

#[tokio::test]
async fn a_replay_after_a_channel_outage_finishes_the_same_order() {
    let h = Harness::new().await;
    let body = r#"{"amount": 300, "out_trade_no": "shop-1003"}"#;
    h.app.channel.fail_next_calls(1);
    let got = h.create(body).await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "payment_unavailable");
    let (status, retried) = h.create(body).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    let (_, list) = h.get("/api/v1/pay/list").await;
    assert_eq!(list["total"], 1, "the retry reused the stored order");
    assert_eq!(list["orders"][0]["order_no"], retried["order_no"]);
}

// ---------------------------------------------------------------- upstream failures

#[tokio::test]
async fn channel_outage_is_503_and_refusal_is_502_without_internal_detail() {
    let h = Harness::new().await;
    h.app.channel.fail_next_calls(1);
    let down = h.create(r#"{"amount": 1}"#).await;
    assert_error(
        &down,
        StatusCode::SERVICE_UNAVAILABLE,
        "payment_unavailable",
    );
    assert_eq!(down.1["error"], "Payment service unavailable");

    h.app.channel.reject_next_calls(1);
    let refused = h.create(r#"{"amount": 1}"#).await;
    assert_error(&refused, StatusCode::BAD_GATEWAY, "payment_failed");
    assert_eq!(refused.1["error"], "Payment service unavailable");
    let text = refused.1.to_string();
    assert!(
        !text.contains("PARAM_ERROR") && !text.contains("internal detail"),
        "{text}"
    );

    // Failed creates without out_trade_no are recorded as closed, never left payable.
    let (_, list) = h.get("/api/v1/pay/list").await;
    assert_eq!(list["total"], 2);
    assert!(list["orders"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["status"] == "closed"));
}

#[tokio::test]
async fn rate_limit_is_429_with_retry_after() {
    let h = Harness::with_app(|mut app| {
        app.config = ServiceConfig {
            rate_limit_per_minute: Some(3),
            ..app.config
        };
        app
    })
    .await;
    for _ in 0..3 {
        assert_eq!(h.get("/api/v1/pay/list").await.0, StatusCode::OK);
    }
    let limited = h.get("/api/v1/pay/list").await;
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(limited.1["error"], "Too many requests");
    let req = http::Request::builder()
        .uri("/api/v1/pay/list")
        .header("x-api-key", h.sk())
        .body(bytes::Bytes::new())
        .unwrap();
    let res = ferrypay::api::handle(&h.app, req).await;
    assert_eq!(res.headers()["retry-after"], "60");
    // The next minute is a new window.
    h.clock.advance(60);
    assert_eq!(h.get("/api/v1/pay/list").await.0, StatusCode::OK);
}

// ---------------------------------------------------------------- query

#[tokio::test]
async fn query_by_order_no_and_out_trade_no_get_and_post() {
    let h = Harness::new().await;
    let (_, created) = h
        .create(r#"{"amount": 42, "out_trade_no": "q-1", "attach": "user_id=9"}"#)
        .await;
    let no = created["order_no"].as_str().unwrap();
    let by_post = h.query(no).await;
    let by_get = h.get(&format!("/api/v1/pay/query?order_no={no}")).await;
    let by_otn = h.get("/api/v1/pay/query?out_trade_no=q-1").await;
    for (status, body) in [&by_post, &by_get, &by_otn] {
        assert_eq!(*status, StatusCode::OK, "{body}");
        let order = &body["order"];
        assert_eq!(order["order_no"], no);
        assert_eq!(order["out_trade_no"], "q-1");
        assert_eq!(order["amount"], 42);
        assert_eq!(order["status"], "pending");
        assert_eq!(order["attach"], "user_id=9");
        assert_eq!(order["pay_type"], "native");
        assert_eq!(order["transaction_id"], Value::Null);
        assert_eq!(order["paid_at"], Value::Null);
        assert_eq!(order["created_at"], "2025-12-21 10:30:00");
        assert_eq!(order["expires_at"], "2025-12-21 12:30:00");
    }
}

#[tokio::test]
async fn query_errors() {
    let h = Harness::new().await;
    assert_error(
        &h.post("/api/v1/pay/query", "{}").await,
        StatusCode::BAD_REQUEST,
        "missing_field",
    );
    assert_error(
        &h.post("/api/v1/pay/query", r#"{"order_no": "nope"}"#).await,
        StatusCode::BAD_REQUEST,
        "invalid_field",
    );
    let missing = h.query("FP20251221103000ZZZZZZ").await;
    assert_error(&missing, StatusCode::NOT_FOUND, "order_not_found");
    assert_eq!(missing.1["error"], "Order not found");
    assert_error(
        &h.post(
            "/api/v1/pay/query",
            r#"{"order_no": "FP20251221103000ZZZZZZ", "amount": 1}"#,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "unknown_field",
    );
}

#[tokio::test]
async fn query_through_settles_a_payment_whose_notification_never_came() {
    let h = Harness::new().await;
    let no = h.create_ok(100).await;
    h.clock.advance(30);
    let tx = h
        .app
        .channel
        .pay(&OrderNo::parse(&no).unwrap(), h.clock.now())
        .unwrap();
    let (status, body) = h.query(&no).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["order"]["status"], "paid");
    assert_eq!(body["order"]["transaction_id"], tx);
    assert_eq!(body["order"]["paid_at"], "2025-12-21 10:30:30");
    // Settled for good: later queries do not ask the channel again.
    let calls = h.app.channel.calls();
    assert_eq!(h.query(&no).await.1["order"]["status"], "paid");
    assert_eq!(h.app.channel.calls(), calls);
}

#[tokio::test]
async fn an_expired_unpaid_order_is_closed_upstream_and_locally_on_query() {
    let h = Harness::new().await;
    let (_, created) = h.create(r#"{"amount": 100, "expire_minutes": 5}"#).await;
    let no = created["order_no"].as_str().unwrap();
    h.clock.advance(4 * 60);
    assert_eq!(h.query(no).await.1["order"]["status"], "pending");
    h.clock.advance(60);
    assert_eq!(h.query(no).await.1["order"]["status"], "closed");
    assert_eq!(
        h.app.channel.state(&OrderNo::parse(no).unwrap()),
        TradeState::Closed
    );
}

#[tokio::test]
async fn query_answers_stored_state_when_the_channel_is_down() {
    let h = Harness::new().await;
    let no = h.create_ok(100).await;
    h.app.channel.fail_next_calls(1);
    let (status, body) = h.query(&no).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["order"]["status"], "pending");
}

#[tokio::test]
async fn a_channel_payment_of_another_amount_never_marks_the_order_paid() {
    let h = Harness::new().await;
    let no = h.create_ok(100).await;
    let order_no = OrderNo::parse(&no).unwrap();
    h.app
        .channel
        .pay_amount(&order_no, Some(ferrypay::model::Fen::new(1)), h.clock.now())
        .unwrap();
    let (_, body) = h.query(&no).await;
    assert_eq!(body["order"]["status"], "pending");
    assert_eq!(body["order"]["transaction_id"], Value::Null);
}

// ---------------------------------------------------------------- close

#[tokio::test]
async fn close_closes_upstream_then_locally() {
    let h = Harness::new().await;
    let no = h.create_ok(100).await;
    let (status, body) = h
        .post("/api/v1/pay/close", &format!(r#"{{"order_no": "{no}"}}"#))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["order"]["status"], "closed");
    assert_eq!(
        h.app.channel.state(&OrderNo::parse(&no).unwrap()),
        TradeState::Closed
    );
    // Closing again, or paying it, is a conflict.
    let again = h
        .post("/api/v1/pay/close", &format!(r#"{{"order_no": "{no}"}}"#))
        .await;
    assert_error(&again, StatusCode::CONFLICT, "order_closed");
    assert_eq!(again.1["error"], "Order closed");
    assert!(h
        .app
        .channel
        .pay(&OrderNo::parse(&no).unwrap(), h.clock.now())
        .is_none());
}

#[tokio::test]
async fn close_by_out_trade_no() {
    let h = Harness::new().await;
    h.create(r#"{"amount": 100, "out_trade_no": "c-1"}"#).await;
    let (status, body) = h
        .post("/api/v1/pay/close", r#"{"out_trade_no": "c-1"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["order"]["status"], "closed");
}

#[tokio::test]
async fn closing_an_order_the_payer_just_paid_records_the_payment_and_answers_409() {
    let h = Harness::new().await;
    let no = h.create_ok(100).await;
    // The payer pays, the notification has not arrived: locally it is still pending.
    h.app
        .channel
        .pay(&OrderNo::parse(&no).unwrap(), h.clock.now())
        .unwrap();
    let got = h
        .post("/api/v1/pay/close", &format!(r#"{{"order_no": "{no}"}}"#))
        .await;
    assert_error(&got, StatusCode::CONFLICT, "order_paid");
    assert_eq!(got.1["error"], "Order already paid");
    assert_eq!(h.query(&no).await.1["order"]["status"], "paid");
}

#[tokio::test]
async fn close_when_the_channel_is_down_changes_nothing() {
    let h = Harness::new().await;
    let no = h.create_ok(100).await;
    h.app.channel.fail_next_calls(1);
    let got = h
        .post("/api/v1/pay/close", &format!(r#"{{"order_no": "{no}"}}"#))
        .await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "payment_unavailable");
    assert_eq!(h.query(&no).await.1["order"]["status"], "pending");
}

#[tokio::test]
async fn close_of_a_missing_order_is_404() {
    let h = Harness::new().await;
    assert_error(
        &h.post(
            "/api/v1/pay/close",
            r#"{"order_no": "FP20251221103000ZZZZZZ"}"#,
        )
        .await,
        StatusCode::NOT_FOUND,
        "order_not_found",
    );
}

// ---------------------------------------------------------------- list

async fn create_many(h: &Harness, n: usize) -> Vec<String> {
    let mut numbers = Vec::new();
    for i in 0..n {
        h.clock.advance(1);
        let (status, body) = h.create(&format!(r#"{{"amount": {}}}"#, i + 1)).await;
        assert_eq!(status, StatusCode::OK);
        numbers.push(body["order_no"].as_str().unwrap().to_string());
    }
    numbers.reverse(); // newest first
    numbers
}

fn numbers_of(list: &Value) -> Vec<String> {
    list["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_no"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn list_pages_newest_first_with_totals() {
    let h = Harness::new().await;
    let all = create_many(&h, 45).await;
    let (status, p1) = h.get("/api/v1/pay/list").await;
    assert_eq!(status, StatusCode::OK, "{p1}");
    assert_eq!(
        (p1["total"].as_u64(), p1["page"].as_u64()),
        (Some(45), Some(1))
    );
    assert_eq!(
        (p1["per_page"].as_u64(), p1["pages"].as_u64()),
        (Some(20), Some(3))
    );
    assert_eq!(numbers_of(&p1), all[..20]);
    let (_, p3) = h.get("/api/v1/pay/list?page=3").await;
    assert_eq!(numbers_of(&p3), all[40..]);
    assert_eq!(p3["next_cursor"], Value::Null);
    let (_, p4) = h.get("/api/v1/pay/list?page=4").await;
    assert_eq!(numbers_of(&p4).len(), 0);
    // POST with a JSON body works the same.
    let (_, post) = h
        .post("/api/v1/pay/list", r#"{"page": 2, "per_page": 10}"#)
        .await;
    assert_eq!(numbers_of(&post), all[10..20]);
    assert_eq!(post["pages"], 5);
}

#[tokio::test]
async fn list_cursor_walks_every_order_once() {
    let h = Harness::new().await;
    let all = create_many(&h, 45).await;
    let mut seen = Vec::new();
    let mut uri = "/api/v1/pay/list?per_page=7".to_string();
    for _ in 0..10 {
        let (status, page) = h.get(&uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(numbers_of(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/pay/list?per_page=7&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, all);
}

#[tokio::test]
async fn list_filters_by_status() {
    let h = Harness::new().await;
    let all = create_many(&h, 6).await;
    for no in &all[..2] {
        h.post("/api/v1/pay/close", &format!(r#"{{"order_no": "{no}"}}"#))
            .await;
    }
    let (_, closed) = h.get("/api/v1/pay/list?status=closed").await;
    assert_eq!(closed["total"], 2);
    assert_eq!(numbers_of(&closed), all[..2]);
    let (_, pending) = h.get("/api/v1/pay/list?status=pending&per_page=3").await;
    assert_eq!(pending["total"], 4);
    assert_eq!(pending["pages"], 2);
    let (_, paid) = h.get("/api/v1/pay/list?status=paid").await;
    assert_eq!(
        (paid["total"].as_u64(), paid["pages"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn list_rejects_bad_paging() {
    let h = Harness::new().await;
    for (query, field) in [
        ("per_page=101", "per_page"),
        ("per_page=0", "per_page"),
        ("page=0", "page"),
        ("page=x", "page"),
        ("status=unpaid", "status"),
        ("cursor=garbage", "cursor"),
        ("sort=asc", "sort"),
        ("page=501", "page"),
        ("page=101&per_page=100", "page"),
        ("page=1000000", "page"),
    ] {
        let got = h.get(&format!("/api/v1/pay/list?{query}")).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{query}: {}", got.1);
        assert_eq!(got.1["field"], field, "{query}");
    }
    // Ten thousand orders deep is the limit; past it the answer says to use the cursor.
    let (status, _) = h.get("/api/v1/pay/list?page=100&per_page=100").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h
        .post("/api/v1/pay/list", r#"{"page": 10001, "per_page": 1}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_field");
    assert!(body["error"].as_str().unwrap().contains("cursor"), "{body}");
}

// ---------------------------------------------------------------- isolation

#[tokio::test]
async fn merchants_never_see_each_others_orders() {
    let h = Harness::new().await;
    let (_, other_keys) = testing::onboard(&h.app, "Other", None, None).await;
    let other = other_keys.secret_key.expose().clone();
    let as_other = |method: Method, uri: String, body: String| {
        let other = other.clone();
        let h = &h;
        async move { h.send(method, &uri, &[("x-api-key", &other)], &body).await }
    };
    let (_, mine) = h
        .create(r#"{"amount": 100, "out_trade_no": "mine-1"}"#)
        .await;
    let no = mine["order_no"].as_str().unwrap().to_string();
    create_many(&h, 5).await;

    let q = as_other(
        Method::POST,
        "/api/v1/pay/query".into(),
        format!(r#"{{"order_no": "{no}"}}"#),
    )
    .await;
    assert_error(&q, StatusCode::NOT_FOUND, "order_not_found");
    let q = as_other(
        Method::GET,
        "/api/v1/pay/query?out_trade_no=mine-1".into(),
        String::new(),
    )
    .await;
    assert_error(&q, StatusCode::NOT_FOUND, "order_not_found");
    let c = as_other(
        Method::POST,
        "/api/v1/pay/close".into(),
        format!(r#"{{"order_no": "{no}"}}"#),
    )
    .await;
    assert_error(&c, StatusCode::NOT_FOUND, "order_not_found");
    assert_eq!(
        h.query(&no).await.1["order"]["status"],
        "pending",
        "not closed by the other"
    );

    let (_, list) = as_other(Method::GET, "/api/v1/pay/list".into(), String::new()).await;
    assert_eq!(list["total"], 0);
    // A cursor taken from my list only names a position: the other merchant still sees only
    // its own (no) orders.
    let (_, my_page) = h.get("/api/v1/pay/list?per_page=2").await;
    let cursor = my_page["next_cursor"].as_str().unwrap().to_string();
    let (_, theirs) = as_other(
        Method::GET,
        format!("/api/v1/pay/list?cursor={cursor}"),
        String::new(),
    )
    .await;
    assert_eq!(numbers_of(&theirs).len(), 0);
    assert_eq!(START, harness::START);
}

// ---------------------------------------------------------------- webhook state and resend

/// A paid order (settled by query-through), its webhook job queued.
async fn paid_order(h: &Harness) -> String {
    let no = h.create_ok(100).await;
    h.app
        .channel
        .pay(&OrderNo::parse(&no).unwrap(), h.clock.now())
        .unwrap();
    assert_eq!(h.query(&no).await.1["order"]["status"], "paid");
    no
}

fn queued_jobs(h: &Harness) -> Vec<WebhookJob> {
    h.app
        .queue
        .bodies()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

#[tokio::test]
async fn query_shows_the_webhook_state_once_paid() {
    let h = Harness::new().await;
    let no = h.create_ok(100).await;
    let (_, pending) = h.query(&no).await;
    assert_eq!(pending["order"]["webhook"], Value::Null);
    let no = paid_order(&h).await;
    let (_, paid) = h.query(&no).await;
    assert_eq!(
        paid["order"]["webhook"],
        json!({
            "status": "pending",
            "attempts": 0,
            "last_attempt_at": null,
            "next_attempt_at": null,
            "delivered_at": null,
            "resends": 0,
            "log": [],
        })
    );
}

#[tokio::test]
async fn resend_queues_a_new_generation_of_a_paid_orders_webhook() {
    let h = Harness::new().await;
    let no = paid_order(&h).await;
    assert_eq!(queued_jobs(&h).len(), 1);
    let (status, body) = h
        .post(
            "/api/v1/pay/notify/resend",
            &format!(r#"{{"order_no": "{no}"}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["order_no"], no);
    assert_eq!(body["webhook"]["status"], "pending");
    assert_eq!(body["webhook"]["resends"], 1);
    let jobs = queued_jobs(&h);
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        (jobs[1].generation, jobs[1].attempt, &jobs[1].event_id),
        (1, 0, &jobs[0].event_id),
        "same event, new generation"
    );
    // By out_trade_no too.
    let (status, created) = h
        .create(r#"{"amount": 100, "out_trade_no": "resend-otn"}"#)
        .await;
    assert_eq!(status, StatusCode::OK);
    let otn_no = created["order_no"].as_str().unwrap().to_string();
    h.app
        .channel
        .pay(&OrderNo::parse(&otn_no).unwrap(), h.clock.now())
        .unwrap();
    h.query(&otn_no).await;
    let (status, body) = h
        .post(
            "/api/v1/pay/notify/resend",
            r#"{"out_trade_no": "resend-otn"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["order_no"], otn_no);
}

#[tokio::test]
async fn resend_refuses_unpaid_unknown_and_other_merchants_orders() {
    let h = Harness::new().await;
    let pending = h.create_ok(100).await;
    let got = h
        .post(
            "/api/v1/pay/notify/resend",
            &format!(r#"{{"order_no": "{pending}"}}"#),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "order_not_paid");
    assert_eq!(got.1["error"], "Order not paid");
    assert_error(
        &h.post(
            "/api/v1/pay/notify/resend",
            r#"{"order_no": "FP20251221103000ZZZZZZ"}"#,
        )
        .await,
        StatusCode::NOT_FOUND,
        "order_not_found",
    );
    assert_error(
        &h.post("/api/v1/pay/notify/resend", "{}").await,
        StatusCode::BAD_REQUEST,
        "missing_field",
    );
    assert_error(
        &h.get("/api/v1/pay/notify/resend?order_no=x").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    // Another merchant's paid order is not found.
    let no = paid_order(&h).await;
    let (_, other) = testing::onboard(&h.app, "Other Shop", None, None).await;
    let got = h
        .send(
            Method::POST,
            "/api/v1/pay/notify/resend",
            &[("X-API-Key", other.secret_key.expose().as_str())],
            &format!(r#"{{"order_no": "{no}"}}"#),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "order_not_found");
    assert_eq!(queued_jobs(&h).len(), 1, "nothing more was queued");
}
