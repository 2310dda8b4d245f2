//! WeChat Pay crypto on the hot paths, with the official-SDK-derived vectors:
//! - a payment notification through the production path (`WechatPayClient::open_notification`:
//!   header parsing, RSA-SHA256 verification over the raw body, AES-256-GCM decryption,
//!   transaction parsing and the merchant checks);
//! - request signing (message + RSA-SHA256 + the Authorization header).
//!
//! `cargo bench -p ferrypay --bench wechat`; `scripts/bench-wechatpayv3.sh` runs the same
//! notification through the `wechatpayv3` Python SDK in the same run and prints the ratio.

// A benchmark is test code: a failed setup should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use ferrypay::{
    channel::{ChannelNotice, PayChannel},
    model::{ManualClock, Timestamp},
    wechat::{
        Certificate, PrivateKey, RequestSigner, RetryPolicy, WechatPayClient, WechatPayConfig,
    },
};
use serde_json::Value;

const DERIVED: &str = include_str!("../tests/fixtures/wechatpay/derived_vectors.json");
const GO_KEY: &str = include_str!("../tests/fixtures/wechatpay/go_testkey_pkcs8.pem");
const GO_CERT: &str = include_str!("../tests/fixtures/wechatpay/go_wechatpay_cert.pem");

fn benches(c: &mut Criterion) {
    let vectors: Value = serde_json::from_str(DERIVED).unwrap();
    let n = &vectors["notification_aes256"];
    let mut headers = http::HeaderMap::new();
    for (name, value) in n["headers"].as_object().unwrap() {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.as_str().unwrap().parse().unwrap(),
        );
    }
    let body = n["body"].as_str().unwrap().as_bytes().to_vec();
    let timestamp: i64 = n["headers"]["Wechatpay-Timestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let certificate = Certificate::from_pem(GO_CERT).unwrap();
    let config = WechatPayConfig {
        base_url: "http://127.0.0.1:9".into(),
        mchid: "1900000109".into(),
        appid: "wxd678efh567hg6787".into(),
        merchant_serial: "D7CE59D1F522D701".into(),
        private_key: PrivateKey::from_pem(GO_KEY).unwrap(),
        apiv3_key: n["apiv3_key"].as_str().unwrap().parse().unwrap(),
        // The vector names the platform certificate's serial; public-key mode under that id
        // verifies with the same key without a certificate download.
        public_key: Some((
            certificate.serial_no().to_string(),
            certificate.verifying_key().clone(),
        )),
        notify_url: "https://pay.example.com/api/v1/notify/wechat".into(),
        retry: RetryPolicy::default(),
        timeout: WechatPayConfig::DEFAULT_TIMEOUT,
        connect_timeout: WechatPayConfig::DEFAULT_CONNECT_TIMEOUT,
    };
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix(timestamp)));
    let client = rt
        .block_on(WechatPayClient::connect(config, clock))
        .unwrap();

    c.bench_function("notification: verify + decrypt + parse", |b| {
        b.iter(|| {
            let notice = rt
                .block_on(client.open_notification(&headers, &body))
                .unwrap();
            assert!(matches!(notice, ChannelNotice::Payment(_)));
            notice
        })
    });

    let r = &vectors["request_sign"];
    let signer = RequestSigner::new(
        "1900000109",
        "D7CE59D1F522D701",
        PrivateKey::from_pem(GO_KEY).unwrap(),
    );
    let (method, url, nonce) = (
        r["method"].as_str().unwrap(),
        r["url"].as_str().unwrap(),
        r["nonce"].as_str().unwrap(),
    );
    let (ts, req_body) = (
        r["timestamp"].as_i64().unwrap(),
        r["body"].as_str().unwrap(),
    );
    c.bench_function("request signing: Authorization header", |b| {
        b.iter(|| {
            signer
                .sign(method, url, req_body.as_bytes(), ts, nonce)
                .unwrap()
        })
    });
}

criterion_group!(wechat, benches);
criterion_main!(wechat);
