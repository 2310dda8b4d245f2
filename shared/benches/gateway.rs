//! The jump-pay gateway through its HTTP handler, on the in-memory store and the fake channel:
//! a link opened outside WeChat (the page with the link's QR code), a link's native order (the
//! POST: order, ticket, 303), the cashier page and its status check. The OAuth exchange is a
//! network call to WeChat and is not in here. Budget: each under 2 ms on one core.
//!
//! `cargo bench -p ferrypay --bench gateway`

// A benchmark is test code: a failed setup should stop it loudly.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use ferrypay::{
    api::gateway::handle_gateway,
    model::Secret,
    service::gateway::{Gateway, GatewaySettings},
    wechat::OAuthConfig,
};
use http::Method;

fn request(method: Method, uri: &str) -> ferrypay::api::ApiRequest {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0")
        .body(Bytes::new())
        .unwrap()
}

fn benches(c: &mut Criterion) {
    let (rt, app, keys) = common::bench_app();
    let gateway = rt.block_on(async {
        Gateway::new(GatewaySettings {
            public_url: "https://pay.example.com".into(),
            oauth: OAuthConfig::new("wxbenchappid0000", Secret::new("bench-oauth-secret".into())),
        })
        .unwrap()
    });
    let link = format!(
        "/pay/gateway?key={}&amount=1990&description=%E6%8B%BF%E9%93%81&attach=user_id%3D123&return_url=https%3A%2F%2Fshop.example%2Fdone",
        keys.publishable_key
    );

    c.bench_function(
        "gateway: link outside WeChat (page + QR of the link)",
        |b| {
            b.iter(|| {
                let res = rt.block_on(handle_gateway(&app, &gateway, request(Method::GET, &link)));
                assert_eq!(res.status(), 200);
            })
        },
    );

    c.bench_function(
        "gateway: link's native order (POST, 303 to the cashier)",
        |b| {
            b.iter(|| {
                let res = rt.block_on(handle_gateway(&app, &gateway, request(Method::POST, &link)));
                assert_eq!(res.status(), 303);
            })
        },
    );

    let posted = rt.block_on(handle_gateway(&app, &gateway, request(Method::POST, &link)));
    let cashier = posted.headers()["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("https://pay.example.com")
        .to_string();
    c.bench_function("gateway: native cashier page (QR PNG included)", |b| {
        b.iter(|| {
            let res = rt.block_on(handle_gateway(
                &app,
                &gateway,
                request(Method::GET, &cashier),
            ));
            assert_eq!(res.status(), 200);
        })
    });

    let status = cashier.replace("/pay/gateway/cashier?", "/pay/gateway/status?");
    c.bench_function(
        "gateway: status check (query-through to the channel)",
        |b| {
            b.iter(|| {
                let res = rt.block_on(handle_gateway(
                    &app,
                    &gateway,
                    request(Method::GET, &status),
                ));
                assert_eq!(res.status(), 200);
            })
        },
    );
}

criterion_group!(gateway_benches, benches);
criterion_main!(gateway_benches);
