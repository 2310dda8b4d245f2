//! Create (native, QR PNG included) and query, through the whole API layer, on the in-memory
//! store and the fake channel. Budget: native create under 1 ms per order on one core.
//!
//! `cargo bench -p ferrypay --bench orders`

// A benchmark is test code: a failed setup should stop it loudly.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use ferrypay::{api, qr};
use http::Method;

fn request(method: Method, uri: &str, key: &str, body: &str) -> api::ApiRequest {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("x-api-key", key)
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

fn benches(c: &mut Criterion) {
    let (rt, app, keys) = common::bench_app();
    let key = keys.secret_key.expose().clone();
    let create_body = r#"{"amount": 1990, "description": "Latte", "attach": "user_id=123"}"#;

    c.bench_function("create native via api (QR PNG included)", |b| {
        b.iter(|| {
            let res = rt.block_on(api::handle(
                &app,
                request(Method::POST, "/api/v1/pay/create", &key, create_body),
            ));
            assert_eq!(res.status(), 200);
            res
        })
    });

    let res = rt.block_on(api::handle(
        &app,
        request(Method::POST, "/api/v1/pay/create", &key, create_body),
    ));
    let created: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    let order_no = created["order_no"].as_str().unwrap().to_string();
    let code_url = created["code_url"].as_str().unwrap().to_string();
    let query_uri = format!("/api/v1/pay/query?order_no={order_no}");

    c.bench_function(
        "query pending via api (query-through to the fake channel)",
        |b| {
            b.iter(|| {
                let res = rt.block_on(api::handle(
                    &app,
                    request(Method::GET, &query_uri, &key, ""),
                ));
                assert_eq!(res.status(), 200);
                res
            })
        },
    );

    c.bench_function("qr png data uri alone", |b| {
        b.iter(|| qr::png_data_uri(&code_url).unwrap())
    });
}

criterion_group!(orders, benches);
criterion_main!(orders);
