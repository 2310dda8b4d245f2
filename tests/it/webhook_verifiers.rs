//! Merchant webhooks as a merchant checks them: ferrypay's signatures (`sign::webhook`) over a
//! body serialised by `WebhookBody` (and, for refund events, `RefundWebhookBody`), verified by the example receivers in
//! `examples/webhook-verify` (Python and Node.js), each on the official Standard Webhooks
//! library of its language, run as subprocesses through their `check` command.
//!
//! Needs `FERRYPAY_TEST_PYTHON` (a Python with `examples/webhook-verify/requirements.txt`
//! installed) and `FERRYPAY_TEST_NODE` (a `node`; `npm ci` run in `examples/webhook-verify`).
//! `make test` (scripts/test.sh) installs both and sets them. Without them the tests fail,
//! never skip.

use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::harness;
use ferrypay::{
    model::{
        Fen, MerchantId, OrderNo, OrderSource, OrderStatus, OutRefundNo, OutTradeNo, Refund,
        RefundNo, RefundReason, RefundSource, RefundStatus, RefundTally, Timestamp, WebhookState,
    },
    service::{RefundWebhookBody, WebhookBody},
    sign::{generate_webhook_secret, webhook::signature_header},
    testing,
};

/// One verifier run may take this long (an interpreter start and one HMAC).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The `attach` of the test order: Chinese (multi-byte UTF-8, which serde_json leaves
/// unescaped), a quote and a slash, so a receiver that re-encodes the body fails.
const ATTACH: &str = "user_id=123&note=拿铁两杯，少糖 \"外带\"/A座";

fn examples_dir() -> PathBuf {
    harness::workspace_dir().join("examples/webhook-verify")
}

/// What is missing when a program the tests need is not set.
const ENV_HINT: &str = "the webhook verifier tests run the examples in \
             examples/webhook-verify; run `make test` (scripts/test.sh installs their \
             libraries and sets FERRYPAY_TEST_PYTHON and FERRYPAY_TEST_NODE)";

/// A receiver in another language: `program script check --secret .. --body-file ..`.
struct Verifier {
    name: &'static str,
    program: PathBuf,
    script: PathBuf,
}

fn verifiers() -> [Verifier; 2] {
    let dir = examples_dir();
    let library = dir.join("node_modules/standardwebhooks/package.json");
    assert!(
        library.is_file(),
        "{} is missing: run `npm ci` in examples/webhook-verify (`make test` does)",
        library.display()
    );
    [
        Verifier {
            name: "python",
            program: harness::required_env("FERRYPAY_TEST_PYTHON", ENV_HINT),
            script: dir.join("verify.py"),
        },
        Verifier {
            name: "node",
            program: harness::required_env("FERRYPAY_TEST_NODE", ENV_HINT),
            script: dir.join("verify.mjs"),
        },
    ]
}

/// What a verifier said: `Ok(stdout)` when it accepted, `Err(stderr)` when it refused.
type Verdict = Result<String, String>;

/// One signed delivery, as the notify-worker sends it.
struct Delivery {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Verifier {
    fn check(&self, secret: &str, delivery: &Delivery) -> Verdict {
        let body_file = BodyFile::new(&delivery.body);
        let mut command = Command::new(&self.program);
        command
            .arg(&self.script)
            .arg("check")
            .args(["--secret", secret])
            .args(["--id", &delivery.id])
            .args(["--timestamp", &delivery.timestamp])
            .args(["--signature", &delivery.signature])
            .arg("--body-file")
            .arg(&body_file.0)
            .current_dir(examples_dir());
        let (code, stdout, stderr) = harness::run_bounded(command, RUN_TIMEOUT);
        match code {
            Some(0) => Ok(stdout),
            // 1 is the receivers' "invalid webhook"; anything else is a broken run.
            Some(1) if stderr.starts_with("invalid webhook: ") => Err(stderr),
            _ => panic!(
                "the {} verifier failed to run (exit {code:?}):\nstdout: {stdout}\nstderr: {stderr}",
                self.name
            ),
        }
    }

    fn accepts(&self, secret: &str, delivery: &Delivery) -> String {
        match self.check(secret, delivery) {
            Ok(stdout) => stdout,
            Err(stderr) => panic!(
                "the {} verifier refused a good webhook: {stderr}",
                self.name
            ),
        }
    }

    /// Asserts a refusal whose reason contains `reason`.
    fn refuses(&self, secret: &str, delivery: &Delivery, reason: &str) {
        match self.check(secret, delivery) {
            Ok(stdout) => panic!(
                "the {} verifier accepted a bad webhook ({reason} expected): {stdout}",
                self.name
            ),
            Err(stderr) => assert!(
                stderr.contains(reason),
                "the {} verifier refused, but not with {reason:?}: {stderr}",
                self.name
            ),
        }
    }
}

/// The body in a temporary file, removed on drop.
struct BodyFile(PathBuf);

impl BodyFile {
    fn new(body: &[u8]) -> BodyFile {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "ferrypay-webhook-body-{}-{}.json",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, body).unwrap();
        BodyFile(path)
    }
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// The bytes the notify-worker posts for a paid order: `WebhookBody::new` over the order,
/// serialised with `serde_json::to_vec`, as `WebhookWorker` does.
fn paid_order_body() -> (String, Vec<u8>) {
    let created = Timestamp::from_unix(testing::START);
    let mut order = testing::pending_order(
        OrderNo::parse("FP20251221103000K7Q2ZX").unwrap(),
        MerchantId::new("mch_0123456789abcdef"),
        2_580,
        created,
    );
    order.out_trade_no = OutTradeNo::parse("shop-20251221-0042").ok();
    order.attach = Some(ATTACH.into());
    order.status = OrderStatus::Paid;
    order.transaction_id = Some("4200002671202512213456789012".into());
    order.paid_at = Some(created.plus_secs(95));
    order.source = OrderSource::Link;
    let body = serde_json::to_vec(&WebhookBody::new("order.paid", &order)).unwrap();
    (format!("evt_{}_paid", order.order_no), body)
}

/// The bytes the notify-worker posts for a refund that succeeded: `RefundWebhookBody::new`
/// over the order and the refund, serialised as `WebhookWorker` does.
fn refund_succeeded_body() -> (String, Vec<u8>) {
    let created = Timestamp::from_unix(testing::START);
    let mut order = testing::pending_order(
        OrderNo::parse("FP20251221103000K7Q2ZX").unwrap(),
        MerchantId::new("mch_0123456789abcdef"),
        2_580,
        created,
    );
    order.out_trade_no = OutTradeNo::parse("shop-20251221-0042").ok();
    order.attach = Some(ATTACH.into());
    order.status = OrderStatus::Paid;
    order.paid_at = Some(created.plus_secs(95));
    order.refunds = RefundTally {
        refunded: Fen::new(580),
        reserved: Fen::new(0),
        count: 1,
    };
    let refund = Refund {
        refund_no: RefundNo::parse("RF20251221110000Q4M8TZ").unwrap(),
        merchant_id: order.merchant_id.clone(),
        order_no: order.order_no.clone(),
        out_trade_no: order.out_trade_no.clone(),
        out_refund_no: OutRefundNo::parse("shop-refund-7").ok(),
        amount: Fen::new(580),
        status: RefundStatus::Succeeded,
        reason: RefundReason::parse("少发了一件 \"杯盖\"").ok(),
        source: RefundSource::Api,
        channel_refund_id: Some("50300000222025122100001".into()),
        created_at: created.plus_secs(1800),
        succeeded_at: Some(created.plus_secs(1805)),
        ended_at: None,
        request_fingerprint: String::new(),
        webhook: WebhookState::default(),
    };
    let body =
        serde_json::to_vec(&RefundWebhookBody::new("refund.succeeded", &order, &refund)).unwrap();
    (format!("evt_{}_succeeded", refund.refund_no), body)
}

fn secret() -> String {
    generate_webhook_secret().unwrap().expose().clone()
}

fn signed(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> Delivery {
    Delivery {
        id: id.to_string(),
        timestamp: timestamp.to_string(),
        signature: signature_header(secrets, id, timestamp, body).unwrap(),
        body: body.to_vec(),
    }
}

#[test]
fn the_body_is_the_contract_json_with_raw_utf8() {
    let (_, body) = paid_order_body();
    let text = std::str::from_utf8(&body).unwrap();
    assert_eq!(
        text,
        r#"{"event":"order.paid","order_no":"FP20251221103000K7Q2ZX","out_trade_no":"shop-20251221-0042","amount":2580,"status":"paid","transaction_id":"4200002671202512213456789012","paid_at":"2025-12-21 10:31:35","attach":"user_id=123&note=拿铁两杯，少糖 \"外带\"/A座","source":"link"}"#
    );
}

#[test]
fn a_webhook_signed_with_one_secret_verifies() {
    let secret = secret();
    let (id, body) = paid_order_body();
    let delivery = signed(&[&secret], &id, now(), &body);
    assert!(!delivery.signature.contains(' '));
    for verifier in verifiers() {
        let stdout = verifier.accepts(&secret, &delivery);
        assert_eq!(
            stdout.trim(),
            "valid: order.paid FP20251221103000K7Q2ZX paid",
            "{}",
            verifier.name
        );
    }
}

#[test]
fn during_a_rotation_each_secret_alone_verifies() {
    let (new, old) = (secret(), secret());
    let (id, body) = paid_order_body();
    // As the worker signs during the overlap: the current secret first, then the previous.
    let delivery = signed(&[&new, &old], &id, now(), &body);
    assert_eq!(delivery.signature.split(' ').count(), 2);
    for verifier in verifiers() {
        verifier.accepts(&new, &delivery);
        verifier.accepts(&old, &delivery);
        // Each secret's signature stands on its own: the other one alone is no help.
        let only_new = signed(&[&new], &id, now(), &body);
        verifier.refuses(&old, &only_new, "No matching signature");
    }
}

#[test]
fn a_tampered_body_is_refused() {
    let secret = secret();
    let (id, body) = paid_order_body();
    let good = signed(&[&secret], &id, now(), &body);
    let raised = Delivery {
        body: String::from_utf8(body.clone())
            .unwrap()
            .replace("\"amount\":2580", "\"amount\":25800")
            .into_bytes(),
        ..signed(&[&secret], &id, now(), &body)
    };
    // The same JSON, re-encoded with the Chinese escaped (what a careless proxy would do).
    let reencoded = Delivery {
        body: String::from_utf8(body.clone())
            .unwrap()
            .replace("拿铁", "\\u62ff\\u94c1")
            .into_bytes(),
        ..signed(&[&secret], &id, now(), &body)
    };
    for verifier in verifiers() {
        verifier.accepts(&secret, &good);
        verifier.refuses(&secret, &raised, "No matching signature");
        verifier.refuses(&secret, &reencoded, "No matching signature");
    }
}

#[test]
fn timestamps_outside_five_minutes_or_altered_are_refused() {
    let secret = secret();
    let (id, body) = paid_order_body();
    // Properly signed, but replayed ten minutes later, or dated ten minutes ahead.
    let replayed = signed(&[&secret], &id, now() - 600, &body);
    let ahead = signed(&[&secret], &id, now() + 600, &body);
    // Signed now, with the timestamp header changed afterwards (within the tolerance).
    let altered = Delivery {
        timestamp: (now() - 60).to_string(),
        ..signed(&[&secret], &id, now(), &body)
    };
    for verifier in verifiers() {
        verifier.refuses(&secret, &replayed, "too old");
        verifier.refuses(&secret, &ahead, "too new");
        verifier.refuses(&secret, &altered, "No matching signature");
    }
}

#[test]
fn a_wrong_secret_or_another_webhook_id_is_refused() {
    let (secret, other) = (secret(), secret());
    let (id, body) = paid_order_body();
    let delivery = signed(&[&secret], &id, now(), &body);
    let other_id = Delivery {
        id: format!("{id}x"),
        ..signed(&[&secret], &id, now(), &body)
    };
    for verifier in verifiers() {
        verifier.refuses(&other, &delivery, "No matching signature");
        verifier.refuses(&secret, &other_id, "No matching signature");
    }
}

#[test]
fn a_refund_webhook_verifies_like_an_order_webhook() {
    let (id, body) = refund_succeeded_body();
    let text = std::str::from_utf8(&body).unwrap();
    assert_eq!(
        text,
        r#"{"event":"refund.succeeded","order_no":"FP20251221103000K7Q2ZX","out_trade_no":"shop-20251221-0042","amount":2580,"refunded_amount":580,"status":"paid","refund":{"refund_no":"RF20251221110000Q4M8TZ","out_refund_no":"shop-refund-7","order_no":"FP20251221103000K7Q2ZX","out_trade_no":"shop-20251221-0042","amount":580,"status":"succeeded","reason":"少发了一件 \"杯盖\"","created_at":"2025-12-21 11:00:00","succeeded_at":"2025-12-21 11:00:05","source":"api"},"attach":"user_id=123&note=拿铁两杯，少糖 \"外带\"/A座"}"#
    );
    let secret = secret();
    let delivery = signed(&[&secret], &id, now(), &body);
    let mut tampered = signed(&[&secret], &id, now(), &body);
    tampered.body = text.replace("580", "590").into_bytes();
    for verifier in verifiers() {
        let stdout = verifier.accepts(&secret, &delivery);
        assert_eq!(
            stdout.trim(),
            "valid: refund.succeeded FP20251221103000K7Q2ZX paid",
            "{}",
            verifier.name
        );
        verifier.refuses(&secret, &tampered, "No matching signature");
    }
}
