//! A refund through the whole API layer (parse, authenticate, the order's rules, the refund
//! begun with its reservation, the fake channel's answer), and a refund query that asks the
//! channel about a processing refund, on the in-memory store and the fake channel. Each refund
//! gets a freshly paid order (an order takes at most 50 refunds); making it is not timed.
//!
//! `cargo bench -p ferrypay --bench refunds`

// A benchmark is test code: a failed setup should stop it loudly.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ferrypay::{api, model::Clock};
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
    // A paid order of 100 (created through the API, paid at the fake channel, settled by the
    // query-through): its order_no.
    let paid_order = || {
        let res = rt.block_on(api::handle(
            &app,
            request(
                Method::POST,
                "/api/v1/pay/create",
                &key,
                r#"{"amount": 100}"#,
            ),
        ));
        let created: serde_json::Value = serde_json::from_str(res.body()).unwrap();
        let order_no = created["order_no"].as_str().unwrap().to_string();
        let no = ferrypay::model::OrderNo::parse(&order_no).unwrap();
        app.channel.pay(&no, app.clock.now()).unwrap();
        let uri = format!("/api/v1/pay/query?order_no={order_no}");
        let res = rt.block_on(api::handle(&app, request(Method::GET, &uri, &key, "")));
        assert!(res.body().contains(r#""status":"paid""#), "{}", res.body());
        order_no
    };

    c.bench_function("refund 30 of a paid order via api (fake channel)", |b| {
        b.iter_batched(
            &paid_order,
            |order_no| {
                let body = format!(r#"{{"order_no": "{order_no}", "amount": 30}}"#);
                let res = rt.block_on(api::handle(
                    &app,
                    request(Method::POST, "/api/v1/pay/refund", &key, &body),
                ));
                assert_eq!(res.status(), 200, "{}", res.body());
                res
            },
            BatchSize::SmallInput,
        )
    });

    let order_no = paid_order();
    let body = format!(r#"{{"order_no": "{order_no}", "amount": 30}}"#);
    let res = rt.block_on(api::handle(
        &app,
        request(Method::POST, "/api/v1/pay/refund", &key, &body),
    ));
    let refund: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    let refund_no = refund["refund"]["refund_no"].as_str().unwrap().to_string();
    let query_uri = format!("/api/v1/pay/refund/query?refund_no={refund_no}");
    c.bench_function(
        "refund query, processing (query-through to the fake channel)",
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
}

criterion_group!(refunds, benches);
criterion_main!(refunds);
