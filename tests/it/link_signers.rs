//! Signed payment links as merchants make them: the examples in `examples/payment-link`
//! (Python and Node.js, no dependencies) sign links that ferrypay accepts, with the same
//! signature as `sign::link`, for values full of characters that encode differently (Chinese,
//! `&`, `=`, `+`, `%`, spaces, quotes, emoji).
//!
//! Needs `FERRYPAY_TEST_PYTHON` and `FERRYPAY_TEST_NODE` (set by `make test`); without them the
//! tests fail, never skip. (The PHP example is checked by hand: PHP is not on CI machines.)

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::harness;
use ferrypay::{
    model::MerchantSecret, service::NewMerchant, sign::link::sign_link, store::prelude::*,
};

const PK: &str = "pk_test_link_signers";
const LINK_SECRET: &str = "lsk_test_link_signers_0123456789abcdefgh";

/// What is missing when a program the tests need is not set.
const ENV_HINT: &str = "the link signer tests run the examples in examples/payment-link; \
             run `make test` (scripts/test.sh sets FERRYPAY_TEST_PYTHON and FERRYPAY_TEST_NODE)";

fn signers() -> [(&'static str, PathBuf, PathBuf); 2] {
    let dir = harness::workspace_dir().join("examples/payment-link");
    [
        (
            "python",
            harness::required_env("FERRYPAY_TEST_PYTHON", ENV_HINT),
            dir.join("sign_link.py"),
        ),
        (
            "node",
            harness::required_env("FERRYPAY_TEST_NODE", ENV_HINT),
            dir.join("sign_link.mjs"),
        ),
    ]
}

/// Runs a signer (`program script --base .. --secret .. name=value...`): the link it printed.
fn run_signer(program: &Path, script: &Path, base: &str, params: &[(&str, &str)]) -> String {
    let mut command = Command::new(program);
    command
        .arg(script)
        .args(["--base", base, "--secret", LINK_SECRET]);
    for (name, value) in params {
        command.arg(format!("{name}={value}"));
    }
    // One interpreter start and one HMAC: quick, but bounded anyway.
    let (code, stdout, stderr) = harness::run_bounded(command, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}: {stderr}", script.display());
    stdout.trim().to_string()
}

fn hard_params(return_url: &str) -> Vec<(&str, &str)> {
    vec![
        ("key", PK),
        ("amount", "12345"),
        ("description", "拿铁 Latte + 蛋糕 & \"外带\" 100% 🍰"),
        ("attach", "user_id=123&note=a+b c=d"),
        ("return_url", return_url),
        ("expires", "4102444800"),
    ]
}

#[test]
fn the_examples_sign_exactly_as_ferrypay_verifies() {
    let return_url = "https://shop.example/done?order=1&x=%20y#frag";
    let params = hard_params(return_url);
    let expected = sign_link(LINK_SECRET, &params);
    for (name, program, script) in signers() {
        let link = run_signer(&program, &script, "https://pay.example.com/", &params);
        let url = url::Url::parse(&link).unwrap();
        assert_eq!(url.path(), "/pay/gateway", "{name}: {link}");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let (signed, sign): (Vec<_>, Vec<_>) = pairs.iter().partition(|(n, _)| n != "sign");
        let signed: Vec<(&str, &str)> = signed
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(signed, params, "{name}: values read back as given");
        assert_eq!(sign[0].1, expected, "{name}");
    }
}

#[tokio::test]
async fn links_signed_by_the_examples_open_and_tampered_ones_do_not() {
    let stack = harness::start_dev(harness::dev_options(NewMerchant {
        name: "Signer Shop".into(),
        publishable_key: Some(PK.into()),
        ..NewMerchant::default()
    }))
    .await;
    let mut merchant = stack
        .app
        .store
        .get_merchant(&stack.merchant.id)
        .await
        .unwrap()
        .unwrap();
    merchant.payment_links.signing_secret = Some(MerchantSecret::new(LINK_SECRET));
    merchant.payment_links.require_signed = true;
    // The demo's notify URL is the dev inbox: the return URL's host is registered instead.
    merchant.payment_links.allowed_return_hosts = vec!["shop.example".into()];
    stack.app.store.update_merchant(&merchant).await.unwrap();

    let http = harness::no_redirect_client();
    let params = hard_params("https://shop.example/done?order=1");
    for (name, program, script) in signers() {
        let link = run_signer(&program, &script, &stack.base_url(), &params);
        let page = http.get(&link).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 200, "{name}: {link}");
        let body = page.text().await.unwrap();
        assert!(body.contains("123.45"), "{name}");
        let tampered = link.replace("amount=12345", "amount=12344");
        let page = http.get(&tampered).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 403, "{name}");
        assert!(page.text().await.unwrap().contains("invalid_signature"));
    }
}
