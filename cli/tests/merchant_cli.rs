//! `ferrypay merchant ...` against DynamoDB (moto's server, which `make test` starts): the real
//! binary, a fresh table per run.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{process::Command, sync::Arc};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::{engine::general_purpose::STANDARD, Engine as _};
use ferrypay::{
    aws::KmsDataKeys,
    model::{KeyKind, MerchantId, MerchantStatus, NotifyEvents, WebhookEvent},
    sign::hash_api_key,
    store::{prelude::*, DynamoStore, LocalDevKeys, SecretKeys},
    testing::aws_test_endpoint,
};

struct Cli {
    table: String,
    /// `FERRYPAY_KMS_KEY_ID` for the CLI; without it, the local dev key wraps data keys.
    kms_key: Option<String>,
}

impl Cli {
    /// Runs `ferrypay merchant ARGS...`; (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_ferrypay"))
            .arg("merchant")
            .args(args)
            .env("FERRYPAY_TABLE", &self.table)
            .env("FERRYPAY_DYNAMODB_ENDPOINT", aws_test_endpoint())
            .env("FERRYPAY_KMS_KEY_ID", self.kms_key.as_deref().unwrap_or(""))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "ferrypay merchant {args:?} failed: {err}");
        out
    }
}

fn field<'a>(output: &'a str, label: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|rest| rest.split_whitespace().next().unwrap())
        .unwrap_or_else(|| panic!("no {label} in:\n{output}"))
}

/// A fresh table, and a store on it that opens every secret as the operator does: with the
/// dev key, or with KMS (which needs no key id to unwrap).
async fn operator_table(tag: &str, kms: bool) -> (DynamoStore, Cli) {
    let table = format!("ferrypay-cli-{tag}-{}", std::process::id());
    let config = ferrypay::aws::emulator_config(&aws_test_endpoint()).await;
    let (source, kms_key): (Arc<dyn ferrypay::store::DataKeySource>, _) = if kms {
        let key = aws_sdk_kms::Client::new(&config)
            .create_key()
            .description("ferrypay CLI test")
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_id;
        (Arc::new(KmsDataKeys::new(&config, None)), Some(key))
    } else {
        (Arc::new(LocalDevKeys::new().unwrap()), None)
    };
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table.clone())
        .with_secret_keys(SecretKeys::operator(source));
    store.ensure_table().await.unwrap();
    (store, Cli { table, kms_key })
}

/// Every string in the table, and every base64 string decoded, as text: where a secret would
/// show if it were stored in plain text.
async fn table_text(table: &str) -> String {
    let config = ferrypay::aws::emulator_config(&aws_test_endpoint()).await;
    let page = aws_sdk_dynamodb::Client::new(&config)
        .scan()
        .table_name(table)
        .send()
        .await
        .unwrap();
    assert!(page.last_evaluated_key.is_none(), "one page is enough here");
    let mut text = String::new();
    fn walk(value: &AttributeValue, text: &mut String) {
        match value {
            AttributeValue::S(s) => {
                text.push_str(s);
                text.push('\n');
                let body = s.split_once(':').map_or(s.as_str(), |(_, b)| b);
                if let Ok(bytes) = STANDARD.decode(body) {
                    text.push_str(&String::from_utf8_lossy(&bytes));
                    text.push('\n');
                }
            }
            AttributeValue::B(b) => {
                text.push_str(&String::from_utf8_lossy(b.as_ref()));
                text.push('\n');
            }
            AttributeValue::L(values) => values.iter().for_each(|v| walk(v, text)),
            AttributeValue::M(map) => map.values().for_each(|v| walk(v, text)),
            _ => {}
        }
    }
    for item in page.items() {
        item.values().for_each(|v| walk(v, &mut text));
    }
    text
}

#[tokio::test]
async fn operators_manage_merchants_from_the_command_line() {
    let (store, cli) = operator_table("kms", true).await;

    let created = cli.ok(&[
        "create",
        "--name",
        "Tea House",
        "--notify-url",
        "https://tea.example/n",
    ]);
    let id = MerchantId::new(field(&created, "merchant"));
    let sk = field(&created, "secret key").to_string();
    assert!(sk.starts_with("sk_"), "{created}");
    assert!(created.contains("shown once"));
    let (m, kind) = store
        .merchant_by_key(&hash_api_key(&sk))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((m.id.clone(), kind), (id.clone(), KeyKind::Secret));

    let shown = cli.ok(&["show", id.as_str()]);
    assert!(
        shown.contains("Tea House") && shown.contains("active"),
        "{shown}"
    );
    assert!(!shown.contains(&sk), "show never prints a key");
    assert!(
        !shown.contains(m.webhook_secret.expose().unwrap()),
        "nor the whole webhook secret"
    );
    assert!(cli.ok(&["list"]).contains(id.as_str()));

    cli.ok(&["disable", id.as_str()]);
    let status = store.get_merchant(&id).await.unwrap().unwrap().status;
    assert_eq!(status, MerchantStatus::Disabled);
    cli.ok(&["enable", id.as_str()]);
    let status = store.get_merchant(&id).await.unwrap().unwrap().status;
    assert_eq!(status, MerchantStatus::Active);

    let rotated = cli.ok(&["rotate-key", id.as_str()]);
    let new_sk = field(&rotated, "new secret key");
    assert_ne!(new_sk, sk);
    assert!(store
        .merchant_by_key(&hash_api_key(&sk))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .merchant_by_key(&hash_api_key(new_sk))
        .await
        .unwrap()
        .is_some());

    cli.ok(&["set-notify-url", id.as_str(), "https://tea.example/v2"]);
    let m = store.get_merchant(&id).await.unwrap().unwrap();
    assert_eq!(m.notify_url.as_deref(), Some("https://tea.example/v2"));
    let (ok, _, err) = cli.run(&["set-notify-url", id.as_str(), "http://tea.example/v2"]);
    assert!(!ok && err.contains("https"), "{err}");
    cli.ok(&["set-notify-url", id.as_str(), "--clear"]);
    assert_eq!(
        store.get_merchant(&id).await.unwrap().unwrap().notify_url,
        None
    );

    // Webhook events: order.paid only until the merchant asks for more; order.paid stays.
    assert_eq!(
        field(&cli.ok(&["show", id.as_str()]), "notify events"),
        "order.paid"
    );
    let set = cli.ok(&["set-events", id.as_str(), "refund.succeeded,refund.closed"]);
    assert_eq!(
        field(&set, "notify events"),
        "order.paid,refund.succeeded,refund.closed",
        "{set}"
    );
    let events = store
        .get_merchant(&id)
        .await
        .unwrap()
        .unwrap()
        .notify_events;
    assert!(events.contains(WebhookEvent::RefundSucceeded));
    assert!(!events.contains(WebhookEvent::RefundAbnormal));
    let by_key = store
        .merchant_by_key(&hash_api_key(new_sk))
        .await
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(by_key.notify_events, events, "the key items carry it too");
    let (ok, _, err) = cli.run(&["set-events", id.as_str(), "refund.success"]);
    assert!(!ok && err.contains("refund.success"), "{err}");
    assert_eq!(
        store
            .get_merchant(&id)
            .await
            .unwrap()
            .unwrap()
            .notify_events,
        events,
        "a refused list changes nothing"
    );
    cli.ok(&["set-events", id.as_str(), "order.paid"]);
    assert_eq!(
        store
            .get_merchant(&id)
            .await
            .unwrap()
            .unwrap()
            .notify_events,
        NotifyEvents::default()
    );

    // A webhook secret rotation keeps the old secret signing for the overlap.
    let old_secret = store
        .get_merchant(&id)
        .await
        .unwrap()
        .unwrap()
        .webhook_secret;
    let rotated = cli.ok(&["rotate-webhook-secret", id.as_str(), "--overlap", "2h"]);
    let new_secret = field(&rotated, "new webhook secret");
    assert!(new_secret.starts_with("whsec_"), "{rotated}");
    assert!(
        rotated.contains("the previous one also signs until"),
        "{rotated}"
    );
    let m = store.get_merchant(&id).await.unwrap().unwrap();
    assert_eq!(m.webhook_secret.expose(), Ok(new_secret));
    let previous = m.previous_webhook_secret.unwrap();
    assert_eq!(previous.secret, old_secret);
    let overlap = previous.until.unix() - m.created_at.unix();
    assert!((7000..=7300).contains(&overlap), "{overlap}");
    let (ok, _, err) = cli.run(&["rotate-webhook-secret", id.as_str(), "--overlap", "1h,2h"]);
    assert!(!ok && err.contains("--overlap"), "{err}");

    let (ok, _, err) = cli.run(&["disable", "mch_nosuchmerchant00"]);
    assert!(!ok && err.contains("no merchant"), "{err}");
    let (ok, _, err) = cli.run(&["create"]);
    assert!(!ok && err.contains("--name"), "{err}");

    // After onboarding and rotating with KMS: no secret anywhere in the table.
    cli.ok(&["rotate-link-secret", id.as_str()]);
    let m = store.get_merchant(&id).await.unwrap().unwrap();
    let text = table_text(&cli.table).await;
    for secret in [
        m.webhook_secret.expose().unwrap(),
        m.previous_webhook_secret
            .as_ref()
            .unwrap()
            .secret
            .expose()
            .unwrap(),
        m.payment_links
            .signing_secret
            .as_ref()
            .unwrap()
            .expose()
            .unwrap(),
    ] {
        assert!(!text.contains(secret), "a secret is stored in plain text");
    }
    assert!(!text.contains("whsec_") && !text.contains("lsk_"), "{text}");
    assert!(text.contains("aws-kms"), "the keyrings are KMS's");
}

#[tokio::test]
async fn operators_set_ip_allowlists_from_the_command_line() {
    let (store, cli) = operator_table("ip", false).await;
    let created = cli.ok(&["create", "--name", "Locked Shop"]);
    let id = MerchantId::new(field(&created, "merchant"));
    assert_eq!(field(&created, "ip allowlist"), "any", "{created}");

    let set = cli.ok(&[
        "ip-allowlist",
        id.as_str(),
        "--add",
        "203.0.113.0/24,2001:db8::/32",
    ]);
    assert!(
        set.contains("ip allowlist    203.0.113.0/24, 2001:db8::/32\n"),
        "{set}"
    );
    let m = store.get_merchant(&id).await.unwrap().unwrap();
    let shown: Vec<String> = m.ip_allowlist.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["203.0.113.0/24", "2001:db8::/32"]);
    assert!(cli.ok(&["list"]).contains("203.0.113.0/24,2001:db8::/32"));
    assert!(cli.ok(&["show", id.as_str()]).contains("2001:db8::/32"));

    let removed = cli.ok(&["ip-allowlist", id.as_str(), "--remove", "203.0.113.0/24"]);
    assert_eq!(
        field(&removed, "ip allowlist"),
        "2001:db8::/32",
        "{removed}"
    );
    for (args, why) in [
        (
            vec!["ip-allowlist", id.as_str(), "--add", "203.0.113.0/33"],
            "not an IPv4",
        ),
        (
            vec!["ip-allowlist", id.as_str(), "--remove", "192.0.2.1"],
            "not in",
        ),
        (vec!["ip-allowlist", id.as_str()], "one of --add"),
        (
            vec!["ip-allowlist", id.as_str(), "--clear", "--add", "192.0.2.1"],
            "one of --add",
        ),
        (
            vec!["ip-allowlist", "mch_nosuchmerchant00", "--clear"],
            "no merchant",
        ),
    ] {
        let (ok, _, err) = cli.run(&args);
        assert!(!ok && err.contains(why), "{args:?}: {err}");
    }
    let cleared = cli.ok(&["ip-allowlist", id.as_str(), "--clear"]);
    assert_eq!(field(&cleared, "ip allowlist"), "any", "{cleared}");
    assert!(store
        .get_merchant(&id)
        .await
        .unwrap()
        .unwrap()
        .ip_allowlist
        .is_empty());
}

#[tokio::test]
async fn operators_manage_payment_link_settings_from_the_command_line() {
    let (store, cli) = operator_table("links", false).await;
    let links = |id: &MerchantId| {
        let store = &store;
        let id = id.clone();
        async move {
            store
                .get_merchant(&id)
                .await
                .unwrap()
                .unwrap()
                .payment_links
        }
    };

    let created = cli.ok(&["create", "--name", "Link Shop"]);
    let id = MerchantId::new(field(&created, "merchant"));
    assert_eq!(field(&created, "link secret"), "none", "{created}");
    assert_eq!(field(&created, "return hosts"), "default", "{created}");
    assert!(
        created.contains("signed links    not required"),
        "{created}"
    );

    // Requiring signed links needs a secret first.
    let (ok, _, err) = cli.run(&["link-policy", id.as_str(), "--require-signed"]);
    assert!(!ok && err.contains("rotate-link-secret"), "{err}");
    assert!(!links(&id).await.require_signed);

    let rotated = cli.ok(&["rotate-link-secret", id.as_str()]);
    let first = field(&rotated, "new link signing secret").to_string();
    assert!(first.starts_with("lsk_") && first.len() == 44, "{rotated}");
    assert!(rotated.contains("shown once"), "{rotated}");
    assert_eq!(
        links(&id).await.signing_secret.unwrap().expose().unwrap(),
        first
    );
    let shown = cli.ok(&["show", id.as_str()]);
    assert_eq!(field(&shown, "link secret"), "set", "{shown}");
    assert!(!shown.contains(&first), "show never prints the link secret");
    // A second rotation replaces the first secret at once.
    let rotated = cli.ok(&["rotate-link-secret", id.as_str()]);
    let second = field(&rotated, "new link signing secret").to_string();
    assert_ne!(second, first);
    assert_eq!(
        links(&id).await.signing_secret.unwrap().expose().unwrap(),
        second
    );

    let set = cli.ok(&[
        "link-policy",
        id.as_str(),
        "--require-signed",
        "--return-hosts",
        "Tea.Example, *.tea.example,tea.example",
    ]);
    assert!(set.contains("signed links    required"), "{set}");
    assert!(
        set.contains("return hosts    tea.example, *.tea.example\n"),
        "{set}"
    );
    let now = links(&id).await;
    assert!(now.require_signed);
    assert_eq!(now.allowed_return_hosts, ["tea.example", "*.tea.example"]);

    // Each option changes its own setting only.
    let default = cli.ok(&["link-policy", id.as_str(), "--default-return-hosts"]);
    assert_eq!(field(&default, "return hosts"), "default", "{default}");
    let now = links(&id).await;
    assert!(now.require_signed && now.allowed_return_hosts.is_empty());
    // The older name of the same switch still works.
    cli.ok(&["link-policy", id.as_str(), "--return-hosts", "tea.example"]);
    let old = cli.ok(&["link-policy", id.as_str(), "--any-return-host"]);
    assert_eq!(field(&old, "return hosts"), "default", "{old}");
    cli.ok(&["link-policy", id.as_str(), "--allow-unsigned"]);
    let now = links(&id).await;
    assert!(!now.require_signed);
    assert_eq!(now.signing_secret.unwrap().expose().unwrap(), second);

    // Refusals say why and change nothing.
    let before = links(&id).await;
    for (args, why) in [
        (vec!["link-policy", id.as_str()], "--require-signed"),
        (
            vec![
                "link-policy",
                id.as_str(),
                "--require-signed",
                "--allow-unsigned",
            ],
            "not both",
        ),
        (
            vec![
                "link-policy",
                id.as_str(),
                "--return-hosts",
                "tea.example",
                "--default-return-hosts",
            ],
            "not both",
        ),
        (
            vec![
                "link-policy",
                id.as_str(),
                "--return-hosts",
                "tea.example,https://tea.example",
            ],
            "\"https://tea.example\"",
        ),
        (
            vec!["link-policy", id.as_str(), "--return-hosts", "*.example"],
            "two labels",
        ),
        (
            vec!["rotate-link-secret", "mch_nosuchmerchant00"],
            "no merchant",
        ),
    ] {
        let (ok, _, err) = cli.run(&args);
        assert!(!ok && err.contains(why), "{args:?}: {err}");
    }
    assert_eq!(links(&id).await, before);
}

#[tokio::test]
async fn operators_upgrade_a_table_written_before_sealing_and_the_counts_move() {
    let (store, cli) = operator_table("upgrade", false).await;
    let config = ferrypay::aws::emulator_config(&aws_test_endpoint()).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    // A merchant as an earlier ferrypay wrote it: the secrets in plain text, the order counts
    // in the merchant's partition.
    let s = |v: &str| AttributeValue::S(v.to_string());
    let (sk_hash, pk_hash) = (hash_api_key("sk_upgrade"), hash_api_key("pk_upgrade"));
    for (pk, sk, kind) in [
        ("MERCHANT#mch_upgrade".to_string(), "MERCHANT", None),
        (format!("KEY#{}", sk_hash.as_str()), "KEY", Some("secret")),
        (
            format!("KEY#{}", pk_hash.as_str()),
            "KEY",
            Some("publishable"),
        ),
    ] {
        let mut put = client
            .put_item()
            .table_name(&cli.table)
            .item("pk", s(&pk))
            .item("sk", s(sk))
            .item("merchant_id", s("mch_upgrade"))
            .item("name", s("Old Shop"))
            .item("secret_key_hash", s(sk_hash.as_str()))
            .item("publishable_key_hash", s(pk_hash.as_str()))
            .item("webhook_secret", s("whsec_b2xkLXNlY3JldA=="))
            .item("link_signing_secret", s("lsk_oldlinksecret"))
            .item("status", s("active"))
            .item("created_at", AttributeValue::N("1766284200".into()));
        if let Some(kind) = kind {
            put = put.item("key_kind", s(kind));
        }
        put.send().await.unwrap();
    }
    client
        .put_item()
        .table_name(&cli.table)
        .item("pk", s("MERCHANT#mch_upgrade"))
        .item("sk", s("COUNTS"))
        .item("count_all", AttributeValue::N("3".into()))
        .item("count_pending", AttributeValue::N("3".into()))
        .send()
        .await
        .unwrap();
    assert!(table_text(&cli.table).await.contains("whsec_b2xk"));
    // Still readable as it is.
    let shown = cli.ok(&["show", "mch_upgrade"]);
    assert!(shown.contains("whsec_b2xk..."), "{shown}");

    let (ok, _, err) = cli.run(&["reseal"]);
    assert!(!ok && err.contains("--all"), "{err}");
    let out = cli.ok(&["reseal", "--all"]);
    assert!(out.contains("1 merchant(s) rewritten"), "{out}");
    let text = table_text(&cli.table).await;
    assert!(!text.contains("whsec_") && !text.contains("lsk_"), "{text}");
    let m = store
        .get_merchant(&MerchantId::new("mch_upgrade"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.webhook_secret.expose(), Ok("whsec_b2xkLXNlY3JldA=="));
    let link = m.payment_links.signing_secret.unwrap();
    assert_eq!(link.expose(), Ok("lsk_oldlinksecret"));
    // Idempotent.
    assert!(cli.ok(&["reseal", "--all"]).contains("1 merchant(s)"));

    let out = cli.ok(&["migrate-counts"]);
    assert!(out.contains("1 old counts item(s) moved"), "{out}");
    assert!(cli.ok(&["migrate-counts"]).contains("0 old counts"));
    let moved = client
        .get_item()
        .table_name(&cli.table)
        .key("pk", s("COUNTS#mch_upgrade"))
        .key("sk", s("COUNTS"))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(moved["count_all"], AttributeValue::N("3".into()));
}
