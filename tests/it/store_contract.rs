//! The `Store` contract: every behaviour is written once, generic over the store, and runs
//! against the in-memory store and against DynamoDB (moto's server, a fresh table per test).
//!
//! The DynamoDB runs need `FERRYPAY_TEST_AWS_ENDPOINT`, which `make test` sets after starting
//! moto; without it they fail (never skip).

use std::{collections::HashMap, sync::Arc, time::Duration};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::{engine::general_purpose::STANDARD, Engine as _};

use ferrypay::{
    aws::KmsDataKeys,
    model::{
        AttemptResult, Cidr, Fen, KeyKind, Merchant, MerchantId, MerchantSecret, MerchantStatus,
        NotifyEvents, Order, OrderNo, OrderSource, OrderStatus, OrderUpdate, OutRefundNo,
        OutTradeNo, PayCredential, PayType, PaymentLinkSettings, Refund, RefundNo, RefundOutcome,
        RefundReason, RefundRefused, RefundSettlement, RefundSource, RefundStatus, RefundTally,
        RefundWebhookUpdate, RetiringSecret, SecretPurpose, SecretSealed, Timestamp, UpdateRefused,
        WebhookAttempt, WebhookState, WebhookStatus,
    },
    service::{AllowlistChange, MerchantAdmin, NewMerchant},
    sign::hash_api_key,
    store::{
        prelude::*, BeginRefundError, DataKeySource, DynamoStore, ExternalRefundRecorded,
        InsertMerchantError, InsertOrderError, ListQuery, LocalDevKeys, OrderPage, PageStart,
        RecordRefundError, RefundAnomaly, SecretKeys, UpdateMerchantError, UpdateOrderError,
        UpdateRefundError,
    },
    testing::{pending_order, unique_name, START},
};

/// Declares each behaviour as one test per store.
macro_rules! contract {
    ($($behaviour:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    crate::harness::within(super::TEST_TIMEOUT, super::$behaviour(ferrypay::store::MemoryStore::new())).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    crate::harness::within(super::TEST_TIMEOUT, super::$behaviour(super::dynamo_store().await)).await;
                }
            )*
        }
    };
}

contract!(
    merchants_are_found_by_id_and_by_either_key,
    merchant_conflicts_are_refused_and_change_nothing,
    merchant_updates_are_atomic_and_replaced_keys_stop_working,
    merchants_are_listed_by_id,
    payment_link_settings_are_stored_with_the_merchant_and_its_keys,
    two_updates_from_one_read_leave_no_orphan_key,
    ip_allowlists_are_stored_with_the_merchant_and_its_keys,
    notify_events_are_stored_with_the_merchant_and_its_keys,
    orders_are_found_by_number_and_by_out_trade_no,
    orders_keep_their_source,
    a_replay_right_after_create_sees_the_order,
    order_conflicts_are_refused_and_change_nothing,
    out_trade_no_is_unique_per_merchant_only,
    an_order_is_paid_once_and_only_for_its_amount,
    closed_orders_cannot_be_paid_or_credentialed,
    paid_orders_cannot_be_closed,
    credentials_attach_to_pending_orders,
    webhook_jobs_are_recorded_only_on_paid_orders,
    webhook_attempts_follow_the_generation_and_delivered_stays,
    webhook_attempt_logs_are_newest_first_per_order,
    a_rotated_webhook_secret_is_kept_with_its_overlap,
    unknown_orders_cannot_be_updated,
    lists_are_newest_first_with_page_numbers_and_totals,
    a_cursor_walks_every_order_once_newest_first,
    status_filters_and_totals_follow_state_changes,
    lists_never_show_another_merchants_orders,
    rate_windows_count_and_restart,
    a_partial_then_a_full_refund_makes_the_order_refunded,
    the_refundable_remainder_is_the_amount_less_refunded_and_reserved,
    refunds_of_unpaid_unknown_or_others_orders_are_refused,
    a_reused_out_refund_no_returns_the_existing_refund,
    the_fifty_first_refund_of_an_order_is_refused,
    a_refund_is_settled_once,
    closed_refunds_release_their_reservation_and_abnormal_ones_keep_it,
    refunds_made_outside_ferrypay_are_recorded_once,
    refund_webhooks_are_recorded_on_final_refunds,
    an_abnormal_refund_that_succeeds_starts_a_new_webhook_generation,
    refund_webhook_attempts_are_kept_apart_from_the_orders,
);

// ---------------------------------------------------------------- the two stores

/// Every test finishes within this, whatever the backend does.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A fresh table, and a store on it that opens and seals every secret (as the operator's
/// does), with the local dev key; `secrets.rs` runs KMS.
async fn dynamo_store() -> DynamoStore {
    let config = crate::harness::emulator().await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        unique_name("ferrypay-store"),
    )
    .with_secret_keys(SecretKeys::operator(std::sync::Arc::new(
        LocalDevKeys::new().unwrap(),
    )));
    store.create_table().await.expect("create the test table");
    store
}

// ---------------------------------------------------------------- fixtures

fn merchant(tag: &str) -> Merchant {
    Merchant {
        id: MerchantId::new(format!("mch_{tag}")),
        name: format!("Shop {tag}"),
        secret_key_hash: hash_api_key(&format!("sk_{tag}")),
        publishable_key_hash: hash_api_key(&format!("pk_{tag}")),
        webhook_secret: MerchantSecret::new(format!("whsec_{tag}")),
        previous_webhook_secret: None,
        notify_url: Some(format!("https://{tag}.example/notify")),
        notify_events: NotifyEvents::default(),
        status: MerchantStatus::Active,
        created_at: Timestamp::from_unix(START),
        payment_links: PaymentLinkSettings::default(),
        ip_allowlist: Vec::new(),
        version: 0,
    }
}

/// A pending order created `second` seconds after START (so later orders sort first).
fn order(merchant: &Merchant, second: i64, out_trade_no: Option<&str>) -> Order {
    let created_at = Timestamp::from_unix(START + second);
    let number = OrderNo::generate(created_at).unwrap();
    Order {
        out_trade_no: out_trade_no.map(|o| OutTradeNo::parse(o).unwrap()),
        description: format!("Order {second}"),
        request_fingerprint: format!("fingerprint-{second}"),
        ..pending_order(number, merchant.id.clone(), 100 + second, created_at)
    }
}

/// An order with every optional field set.
fn full_order(merchant: &Merchant, second: i64, out_trade_no: &str) -> Order {
    Order {
        pay_type: PayType::Jsapi,
        openid: Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into()),
        client_ip: Some("203.0.113.7".into()),
        attach: Some("user_id=123&note=是".into()),
        notify_url: Some("https://merchant.example/orders/notify".into()),
        credential: Some(PayCredential::Jsapi {
            prepay_id: "wx201410272009395522657a690389285100".into(),
        }),
        ..order(merchant, second, Some(out_trade_no))
    }
}

fn pay(order: &Order) -> OrderUpdate {
    OrderUpdate::MarkPaid {
        transaction_id: format!("4200{}", order.order_no.as_str().get(2..16).unwrap()),
        paid_at: order.created_at.plus_secs(30),
        amount: order.amount,
    }
}

fn close(order: &Order) -> OrderUpdate {
    OrderUpdate::MarkClosed {
        closed_at: order.created_at.plus_secs(60),
    }
}

fn otn(s: &str) -> OutTradeNo {
    OutTradeNo::parse(s).unwrap()
}

async fn insert_orders<S: Store>(store: &S, merchant: &Merchant, seconds: &[i64]) -> Vec<Order> {
    let mut orders = Vec::new();
    for &second in seconds {
        let order = order(merchant, second, None);
        store.insert_order(&order).await.unwrap();
        orders.push(order);
    }
    orders
}

/// Newest first, as lists return them.
fn newest_first(mut orders: Vec<Order>) -> Vec<Order> {
    orders.sort_by(|a, b| b.order_no.cmp(&a.order_no));
    orders
}

fn numbers(orders: &[Order]) -> Vec<&str> {
    orders.iter().map(|o| o.order_no.as_str()).collect()
}

async fn list<S: Store>(
    store: &S,
    merchant: &Merchant,
    status: Option<OrderStatus>,
    start: PageStart,
    per_page: u32,
) -> OrderPage {
    store
        .list_orders(&ListQuery {
            merchant_id: merchant.id.clone(),
            status,
            start,
            per_page,
        })
        .await
        .unwrap()
}

/// Follows `next_after` from the first page to the last (at most 50 pages).
async fn walk<S: Store>(
    store: &S,
    merchant: &Merchant,
    status: Option<OrderStatus>,
    per_page: u32,
) -> Vec<Order> {
    let mut all = Vec::new();
    let mut start = PageStart::Page(1);
    for _ in 0..50 {
        let page = list(store, merchant, status, start, per_page).await;
        assert!(page.orders.len() <= per_page as usize);
        all.extend(page.orders);
        match page.next_after {
            Some(after) => start = PageStart::After(after),
            None => return all,
        }
    }
    panic!("cursor paging did not end within 50 pages");
}

fn assert_refused(result: Result<Order, UpdateOrderError>, current: &Order, reason: UpdateRefused) {
    match result {
        Err(UpdateOrderError::Refused {
            current: actual,
            reason: actual_reason,
        }) => {
            assert_eq!(*actual, *current, "the refusal carries the order as it is");
            assert_eq!(actual_reason, reason);
        }
        other => panic!("expected a refusal ({reason}), got {other:?}"),
    }
}

// ---------------------------------------------------------------- merchants

async fn merchants_are_found_by_id_and_by_either_key<S: Store>(store: S) {
    let a = merchant("a");
    let b = Merchant {
        notify_url: None,
        status: MerchantStatus::Disabled,
        ..merchant("b")
    };
    store.insert_merchant(&a).await.unwrap();
    store.insert_merchant(&b).await.unwrap();

    assert_eq!(store.get_merchant(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_merchant(&b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(
        store.merchant_by_key(&a.secret_key_hash).await.unwrap(),
        Some((a.clone(), KeyKind::Secret))
    );
    assert_eq!(
        store
            .merchant_by_key(&a.publishable_key_hash)
            .await
            .unwrap(),
        Some((a.clone(), KeyKind::Publishable))
    );
    assert_eq!(
        store
            .merchant_by_key(&b.publishable_key_hash)
            .await
            .unwrap(),
        Some((b.clone(), KeyKind::Publishable))
    );
    assert_eq!(
        store
            .merchant_by_key(&hash_api_key("sk_nobody"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_merchant(&MerchantId::new("mch_nobody"))
            .await
            .unwrap(),
        None
    );
}

async fn merchant_conflicts_are_refused_and_change_nothing<S: Store>(store: S) {
    let a = merchant("a");
    store.insert_merchant(&a).await.unwrap();

    let fresh = merchant("fresh");
    let attempts = [
        // Same id, new keys.
        Merchant {
            id: a.id.clone(),
            ..fresh.clone()
        },
        // New id, a's secret key.
        Merchant {
            secret_key_hash: a.secret_key_hash.clone(),
            ..fresh.clone()
        },
        // New id, a's publishable key.
        Merchant {
            publishable_key_hash: a.publishable_key_hash.clone(),
            ..fresh.clone()
        },
        // New id, a's secret key offered as a publishable one.
        Merchant {
            publishable_key_hash: a.secret_key_hash.clone(),
            ..fresh.clone()
        },
    ];
    for attempt in &attempts {
        assert!(
            matches!(
                store.insert_merchant(attempt).await,
                Err(InsertMerchantError::Exists)
            ),
            "{attempt:?}"
        );
    }
    // Nothing of the refused merchants was stored, and a is as it was.
    assert_eq!(store.get_merchant(&fresh.id).await.unwrap(), None);
    assert_eq!(
        store.merchant_by_key(&fresh.secret_key_hash).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .merchant_by_key(&fresh.publishable_key_hash)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.get_merchant(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store.merchant_by_key(&a.secret_key_hash).await.unwrap(),
        Some((a.clone(), KeyKind::Secret))
    );
    // The fresh merchant itself is fine.
    store.insert_merchant(&fresh).await.unwrap();
    assert_eq!(
        store.merchant_by_key(&fresh.secret_key_hash).await.unwrap(),
        Some((fresh, KeyKind::Secret))
    );
}

// ---------------------------------------------------------------- orders

async fn orders_are_found_by_number_and_by_out_trade_no<S: Store>(store: S) {
    let a = merchant("a");
    let full = full_order(&a, 1, "shop-1001");
    let bare = order(&a, 2, None);
    let h5 = Order {
        pay_type: PayType::H5,
        credential: Some(PayCredential::H5 {
            h5_url: "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx1".into(),
        }),
        ..order(&a, 3, Some("shop-1003"))
    };
    for o in [&full, &bare, &h5] {
        store.insert_order(o).await.unwrap();
    }
    for o in [&full, &bare, &h5] {
        assert_eq!(
            store.get_order(&o.order_no).await.unwrap().as_ref(),
            Some(o)
        );
    }
    assert_eq!(
        store
            .order_by_out_trade_no(&a.id, &otn("shop-1001"))
            .await
            .unwrap(),
        Some(full.clone())
    );
    assert_eq!(
        store
            .order_by_out_trade_no(&a.id, &otn("shop-1003"))
            .await
            .unwrap(),
        Some(h5)
    );
    assert_eq!(
        store
            .order_by_out_trade_no(&a.id, &otn("shop-9999"))
            .await
            .unwrap(),
        None
    );
    // Another merchant's number is not found through this merchant.
    assert_eq!(
        store
            .order_by_out_trade_no(&merchant("b").id, &otn("shop-1001"))
            .await
            .unwrap(),
        None
    );
    let unknown = OrderNo::generate(Timestamp::from_unix(START)).unwrap();
    assert_eq!(store.get_order(&unknown).await.unwrap(), None);
}

async fn orders_keep_their_source<S: Store>(store: S) {
    let a = merchant("a");
    let mut orders = Vec::new();
    for (i, source) in (1..).zip(OrderSource::ALL) {
        let o = Order {
            source,
            ..order(&a, i, Some(&format!("src-{i}")))
        };
        store.insert_order(&o).await.unwrap();
        orders.push(o);
    }
    for o in &orders {
        let paid = store.update_order(&o.order_no, &pay(o)).await.unwrap();
        assert_eq!(paid.source, o.source);
        let by_no = store.get_order(&o.order_no).await.unwrap().unwrap();
        assert_eq!(by_no.source, o.source);
        let otn = o.out_trade_no.clone().unwrap();
        let by_otn = store.order_by_out_trade_no(&a.id, &otn).await.unwrap();
        assert_eq!(by_otn.unwrap().source, o.source);
    }
    let listed = list(&store, &a, None, PageStart::Page(1), 10).await;
    let mut sources: Vec<OrderSource> = listed.orders.iter().map(|o| o.source).collect();
    sources.reverse();
    assert_eq!(sources, OrderSource::ALL);
}

async fn a_replay_right_after_create_sees_the_order<S: Store>(store: S) {
    let a = merchant("a");
    for i in 0..5 {
        let number = format!("replay-{i}");
        let first = order(&a, i, Some(&number));
        store.insert_order(&first).await.unwrap();
        // At once, with no pause: the lookup a replayed create makes.
        assert_eq!(
            store
                .order_by_out_trade_no(&a.id, &otn(&number))
                .await
                .unwrap(),
            Some(first.clone())
        );
        let replay = order(&a, i + 100, Some(&number));
        assert!(matches!(
            store.insert_order(&replay).await,
            Err(InsertOrderError::OutTradeNoTaken)
        ));
    }
}

async fn order_conflicts_are_refused_and_change_nothing<S: Store>(store: S) {
    let a = merchant("a");
    let first = order(&a, 1, Some("shop-1"));
    store.insert_order(&first).await.unwrap();

    // The same order number again (even with another out_trade_no).
    let same_number = Order {
        out_trade_no: Some(otn("shop-2")),
        ..first.clone()
    };
    assert!(matches!(
        store.insert_order(&same_number).await,
        Err(InsertOrderError::OrderNoTaken)
    ));
    // The other out_trade_no was not taken by the refused insert.
    assert_eq!(
        store
            .order_by_out_trade_no(&a.id, &otn("shop-2"))
            .await
            .unwrap(),
        None
    );

    // The same out_trade_no on a new order number.
    let same_out_trade_no = order(&a, 2, Some("shop-1"));
    assert!(matches!(
        store.insert_order(&same_out_trade_no).await,
        Err(InsertOrderError::OutTradeNoTaken)
    ));
    assert_eq!(
        store.get_order(&same_out_trade_no.order_no).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .order_by_out_trade_no(&a.id, &otn("shop-1"))
            .await
            .unwrap(),
        Some(first.clone())
    );

    // Only the first order exists, and counts.
    let page = list(&store, &a, None, PageStart::Page(1), 10).await;
    assert_eq!(page.orders, vec![first]);
    assert_eq!(page.total, 1);
}

async fn out_trade_no_is_unique_per_merchant_only<S: Store>(store: S) {
    let (a, b) = (merchant("a"), merchant("b"));
    let for_a = order(&a, 1, Some("shared-42"));
    let for_b = order(&b, 2, Some("shared-42"));
    store.insert_order(&for_a).await.unwrap();
    store.insert_order(&for_b).await.unwrap();
    assert_eq!(
        store
            .order_by_out_trade_no(&a.id, &otn("shared-42"))
            .await
            .unwrap(),
        Some(for_a)
    );
    assert_eq!(
        store
            .order_by_out_trade_no(&b.id, &otn("shared-42"))
            .await
            .unwrap(),
        Some(for_b)
    );
    // Orders without an out_trade_no never conflict with each other.
    insert_orders(&store, &a, &[3, 4, 5]).await;
}

// ---------------------------------------------------------------- conditional updates

async fn an_order_is_paid_once_and_only_for_its_amount<S: Store>(store: S) {
    let a = merchant("a");
    let pending = order(&a, 1, Some("shop-1"));
    store.insert_order(&pending).await.unwrap();

    // The wrong amount is refused and changes nothing.
    let wrong = OrderUpdate::MarkPaid {
        transaction_id: "4200000000000001".into(),
        paid_at: pending.created_at.plus_secs(10),
        amount: Fen::new(pending.amount.get() - 1),
    };
    assert_refused(
        store.update_order(&pending.order_no, &wrong).await,
        &pending,
        UpdateRefused::AmountMismatch {
            expected: pending.amount,
            reported: Fen::new(pending.amount.get() - 1),
        },
    );
    assert_eq!(
        store.get_order(&pending.order_no).await.unwrap(),
        Some(pending.clone())
    );

    // The right amount pays it.
    let paid = store
        .update_order(&pending.order_no, &pay(&pending))
        .await
        .unwrap();
    assert_eq!(paid, pending.apply(&pay(&pending)).unwrap());
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_eq!(
        store.get_order(&pending.order_no).await.unwrap(),
        Some(paid.clone())
    );
    assert_eq!(
        store
            .order_by_out_trade_no(&a.id, &otn("shop-1"))
            .await
            .unwrap(),
        Some(paid.clone()),
        "the out_trade_no lookup sees the payment too"
    );

    // A duplicate notification (even with another transaction id) changes nothing.
    let again = OrderUpdate::MarkPaid {
        transaction_id: "4200000000000099".into(),
        paid_at: pending.created_at.plus_secs(99),
        amount: pending.amount,
    };
    assert_refused(
        store.update_order(&pending.order_no, &again).await,
        &paid,
        UpdateRefused::NotPending(OrderStatus::Paid),
    );
    assert_eq!(
        store.get_order(&pending.order_no).await.unwrap(),
        Some(paid)
    );
}

async fn closed_orders_cannot_be_paid_or_credentialed<S: Store>(store: S) {
    let a = merchant("a");
    let pending = order(&a, 1, Some("shop-1"));
    store.insert_order(&pending).await.unwrap();
    let closed = store
        .update_order(&pending.order_no, &close(&pending))
        .await
        .unwrap();
    assert_eq!(closed, pending.apply(&close(&pending)).unwrap());
    assert_eq!(closed.status, OrderStatus::Closed);

    let refused = UpdateRefused::NotPending(OrderStatus::Closed);
    assert_refused(
        store.update_order(&pending.order_no, &pay(&pending)).await,
        &closed,
        refused.clone(),
    );
    let credential = OrderUpdate::AttachCredential(PayCredential::Native {
        code_url: "weixin://wxpay/bizpayurl?pr=late".into(),
    });
    assert_refused(
        store.update_order(&pending.order_no, &credential).await,
        &closed,
        refused.clone(),
    );
    assert_refused(
        store
            .update_order(&pending.order_no, &close(&pending))
            .await,
        &closed,
        refused,
    );
    assert_eq!(
        store
            .order_by_out_trade_no(&a.id, &otn("shop-1"))
            .await
            .unwrap(),
        Some(closed)
    );
}

async fn paid_orders_cannot_be_closed<S: Store>(store: S) {
    let a = merchant("a");
    let pending = order(&a, 1, None);
    store.insert_order(&pending).await.unwrap();
    let paid = store
        .update_order(&pending.order_no, &pay(&pending))
        .await
        .unwrap();
    assert_refused(
        store
            .update_order(&pending.order_no, &close(&pending))
            .await,
        &paid,
        UpdateRefused::NotPending(OrderStatus::Paid),
    );
    assert_eq!(
        store.get_order(&pending.order_no).await.unwrap(),
        Some(paid)
    );
}

async fn credentials_attach_to_pending_orders<S: Store>(store: S) {
    let a = merchant("a");
    let with_number = order(&a, 1, Some("shop-1"));
    let without = order(&a, 2, None);
    store.insert_order(&with_number).await.unwrap();
    store.insert_order(&without).await.unwrap();

    let native = OrderUpdate::AttachCredential(PayCredential::Native {
        code_url: "weixin://wxpay/bizpayurl?pr=abc123".into(),
    });
    let updated = store
        .update_order(&with_number.order_no, &native)
        .await
        .unwrap();
    assert_eq!(updated.status, OrderStatus::Pending);
    assert_eq!(updated, with_number.apply(&native).unwrap());
    assert_eq!(
        store
            .order_by_out_trade_no(&a.id, &otn("shop-1"))
            .await
            .unwrap(),
        Some(updated.clone())
    );

    let jsapi = OrderUpdate::AttachCredential(PayCredential::Jsapi {
        prepay_id: "wx201410272009395522657a690389285100".into(),
    });
    let updated_without = store.update_order(&without.order_no, &jsapi).await.unwrap();
    assert_eq!(
        store.get_order(&without.order_no).await.unwrap(),
        Some(updated_without.clone())
    );

    // Still pending: it can be paid, and the credential stays.
    let paid = store
        .update_order(&with_number.order_no, &pay(&with_number))
        .await
        .unwrap();
    assert_eq!(paid.credential, updated.credential);
    assert_eq!(paid.status, OrderStatus::Paid);
}

async fn webhook_jobs_are_recorded_only_on_paid_orders<S: Store>(store: S) {
    let a = merchant("a");
    let pending = order(&a, 1, Some("shop-1"));
    store.insert_order(&pending).await.unwrap();
    let queued = |second: i64| OrderUpdate::RecordWebhookQueued {
        generation: 0,
        at: pending.created_at.plus_secs(second),
    };
    assert_refused(
        store.update_order(&pending.order_no, &queued(40)).await,
        &pending,
        UpdateRefused::NotPaid(OrderStatus::Pending),
    );
    let paid = store
        .update_order(&pending.order_no, &pay(&pending))
        .await
        .unwrap();
    let once = store
        .update_order(&pending.order_no, &queued(40))
        .await
        .unwrap();
    assert_eq!(once, paid.apply(&queued(40)).unwrap());
    // The first time stays.
    let twice = store
        .update_order(&pending.order_no, &queued(50))
        .await
        .unwrap();
    assert_eq!(twice, once);
    assert_eq!(
        store
            .order_by_out_trade_no(&a.id, &otn("shop-1"))
            .await
            .unwrap(),
        Some(twice)
    );
}

async fn webhook_attempts_follow_the_generation_and_delivered_stays<S: Store>(store: S) {
    let a = merchant("a");
    let pending = order(&a, 1, Some("shop-1"));
    store.insert_order(&pending).await.unwrap();
    let at = |second: i64| pending.created_at.plus_secs(second);
    let attempt = |generation, attempt, second, result| OrderUpdate::RecordWebhookAttempt {
        generation,
        attempt,
        at: at(second),
        result,
    };
    assert_refused(
        store
            .update_order(
                &pending.order_no,
                &attempt(0, 1, 40, AttemptResult::Delivered),
            )
            .await,
        &pending,
        UpdateRefused::NotPaid(OrderStatus::Pending),
    );
    store
        .update_order(&pending.order_no, &pay(&pending))
        .await
        .unwrap();
    let queued = store
        .update_order(
            &pending.order_no,
            &OrderUpdate::RecordWebhookQueued {
                generation: 0,
                at: at(31),
            },
        )
        .await
        .unwrap();
    let failing = store
        .update_order(
            &pending.order_no,
            &attempt(0, 1, 40, AttemptResult::Retrying { next_at: at(55) }),
        )
        .await
        .unwrap();
    assert_eq!(failing.webhook.status, WebhookStatus::Failing);
    assert_eq!(failing.webhook.next_attempt_at, Some(at(55)));
    assert_eq!(failing.webhook.queued_at, queued.webhook.queued_at);

    // A resend starts generation 1: the old generation's attempts are refused.
    let resent = store
        .update_order(&pending.order_no, &OrderUpdate::RestartWebhook)
        .await
        .unwrap();
    assert_eq!(resent.webhook.generation, 1);
    assert_eq!(resent.webhook.status, WebhookStatus::Pending);
    assert_eq!(resent.webhook.queued_at, None);
    assert_refused(
        store
            .update_order(
                &pending.order_no,
                &attempt(0, 2, 60, AttemptResult::Delivered),
            )
            .await,
        &resent,
        UpdateRefused::WebhookSuperseded {
            attempted: 0,
            current: 1,
        },
    );
    let delivered = store
        .update_order(
            &pending.order_no,
            &attempt(1, 1, 70, AttemptResult::Delivered),
        )
        .await
        .unwrap();
    assert_eq!(delivered.webhook.status, WebhookStatus::Delivered);
    assert_eq!(delivered.webhook.delivered_at, Some(at(70)));
    // A late failure of the same generation leaves it delivered.
    let late = store
        .update_order(&pending.order_no, &attempt(1, 2, 80, AttemptResult::GaveUp))
        .await
        .unwrap();
    assert_eq!(late.webhook, delivered.webhook);
    // Every field round-trips, and the out_trade_no copy follows.
    assert_eq!(
        store.get_order(&pending.order_no).await.unwrap(),
        Some(late.clone())
    );
    assert_eq!(
        store
            .order_by_out_trade_no(&a.id, &otn("shop-1"))
            .await
            .unwrap(),
        Some(late)
    );
}

fn attempt_record(order: &Order, generation: u32, attempt: u32, delivered: bool) -> WebhookAttempt {
    WebhookAttempt {
        order_no: order.order_no.clone(),
        event_id: format!("evt_{}_paid", order.order_no),
        generation,
        attempt,
        at: order
            .created_at
            .plus_secs(i64::from(generation * 100 + attempt)),
        url: Some("https://merchant.example/notify".into()),
        status_code: if delivered { Some(200) } else { None },
        latency_ms: 12,
        response: delivered.then(|| "ok 是".to_string()),
        error: (!delivered).then(|| "timed out after 10s".to_string()),
        delivered,
    }
}

async fn webhook_attempt_logs_are_newest_first_per_order<S: Store>(store: S) {
    let a = merchant("a");
    let first = order(&a, 1, None);
    let second = order(&a, 2, None);
    for o in [&first, &second] {
        store.insert_order(o).await.unwrap();
    }
    assert!(store
        .webhook_attempts(&first.order_no, 20)
        .await
        .unwrap()
        .is_empty());
    // Twelve attempts in generation 0 (more than 10, so the zero-padding matters), one in 1.
    for n in 1..=12 {
        store
            .record_webhook_attempt(&attempt_record(&first, 0, n, false))
            .await
            .unwrap();
    }
    store
        .record_webhook_attempt(&attempt_record(&first, 1, 1, true))
        .await
        .unwrap();
    store
        .record_webhook_attempt(&attempt_record(&second, 0, 1, true))
        .await
        .unwrap();
    // The same attempt recorded again replaces the earlier record.
    let mut again = attempt_record(&first, 0, 12, false);
    again.error = Some("connection refused".into());
    store.record_webhook_attempt(&again).await.unwrap();

    let all = store.webhook_attempts(&first.order_no, 100).await.unwrap();
    let keys: Vec<(u32, u32)> = all.iter().map(|a| (a.generation, a.attempt)).collect();
    let mut expected = vec![(1, 1)];
    expected.extend((1..=12).rev().map(|n| (0, n)));
    assert_eq!(keys, expected);
    assert_eq!(all[0], attempt_record(&first, 1, 1, true));
    assert_eq!(all[1], again);
    let latest = store.webhook_attempts(&first.order_no, 3).await.unwrap();
    assert_eq!(latest, all[..3].to_vec());
    assert_eq!(
        store.webhook_attempts(&second.order_no, 20).await.unwrap(),
        vec![attempt_record(&second, 0, 1, true)]
    );
    // Attempt records are not orders: lists do not show them.
    let page = list(&store, &a, None, PageStart::Page(1), 20).await;
    assert_eq!(page.total, 2);
    assert_eq!(page.orders.len(), 2);
}

async fn a_rotated_webhook_secret_is_kept_with_its_overlap<S: Store>(store: S) {
    let a = merchant("rot");
    store.insert_merchant(&a).await.unwrap();
    let rotated = Merchant {
        webhook_secret: MerchantSecret::new("whsec_new"),
        previous_webhook_secret: Some(RetiringSecret {
            secret: a.webhook_secret.clone(),
            until: Timestamp::from_unix(START + 86_400),
        }),
        ..a.clone()
    };
    let rotated = store.update_merchant(&rotated).await.unwrap();
    assert_eq!(rotated.version, 1);
    assert_eq!(
        store.get_merchant(&a.id).await.unwrap(),
        Some(rotated.clone())
    );
    let (by_key, _) = store
        .merchant_by_key(&a.secret_key_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_key, rotated);
}

async fn unknown_orders_cannot_be_updated<S: Store>(store: S) {
    let unknown = OrderNo::generate(Timestamp::from_unix(START)).unwrap();
    let update = OrderUpdate::MarkClosed {
        closed_at: Timestamp::from_unix(START),
    };
    assert!(matches!(
        store.update_order(&unknown, &update).await,
        Err(UpdateOrderError::NotFound)
    ));
}

// ---------------------------------------------------------------- lists

async fn lists_are_newest_first_with_page_numbers_and_totals<S: Store>(store: S) {
    let a = merchant("a");
    let all = newest_first(insert_orders(&store, &a, &[1, 2, 3, 4, 5, 6, 7]).await);

    let page1 = list(&store, &a, None, PageStart::Page(1), 3).await;
    assert_eq!(numbers(&page1.orders), numbers(&all[0..3]));
    assert_eq!(page1.total, 7);
    assert_eq!(page1.next_after.as_ref(), Some(&all[2].order_no));

    let page2 = list(&store, &a, None, PageStart::Page(2), 3).await;
    assert_eq!(numbers(&page2.orders), numbers(&all[3..6]));
    assert_eq!(page2.total, 7);
    assert_eq!(page2.next_after.as_ref(), Some(&all[5].order_no));

    let page3 = list(&store, &a, None, PageStart::Page(3), 3).await;
    assert_eq!(
        page3.orders,
        all[6..7].to_vec(),
        "full orders, not just numbers"
    );
    assert_eq!(page3.next_after, None);

    let page4 = list(&store, &a, None, PageStart::Page(4), 3).await;
    assert!(page4.orders.is_empty());
    assert_eq!(page4.total, 7);
    assert_eq!(page4.next_after, None);

    // A page that ends exactly at the last order has no next page.
    let exact = list(&store, &a, None, PageStart::Page(1), 7).await;
    assert_eq!(exact.orders, all);
    assert_eq!(exact.next_after, None);

    // A merchant without orders.
    let empty = list(&store, &merchant("b"), None, PageStart::Page(1), 20).await;
    assert_eq!(
        empty,
        OrderPage {
            orders: Vec::new(),
            total: 0,
            next_after: None
        }
    );
}

async fn a_cursor_walks_every_order_once_newest_first<S: Store>(store: S) {
    let a = merchant("a");
    let all = newest_first(insert_orders(&store, &a, &[5, 1, 9, 3, 7, 2, 8, 4, 6]).await);
    for per_page in [1, 2, 4, 9, 100] {
        let walked = walk(&store, &a, None, per_page).await;
        assert_eq!(numbers(&walked), numbers(&all), "per_page {per_page}");
    }
    // A cursor taken in the middle continues strictly after it.
    let after = list(
        &store,
        &a,
        None,
        PageStart::After(all[3].order_no.clone()),
        3,
    )
    .await;
    assert_eq!(numbers(&after.orders), numbers(&all[4..7]));
    assert_eq!(after.total, 9, "total counts every page");
    assert_eq!(after.next_after.as_ref(), Some(&all[6].order_no));
}

async fn status_filters_and_totals_follow_state_changes<S: Store>(store: S) {
    let a = merchant("a");
    let orders = insert_orders(&store, &a, &[1, 2, 3, 4, 5, 6]).await;
    for o in [&orders[1], &orders[4]] {
        store.update_order(&o.order_no, &pay(o)).await.unwrap();
    }
    store
        .update_order(&orders[2].order_no, &close(&orders[2]))
        .await
        .unwrap();
    // A refused update moves no count.
    let _ = store
        .update_order(&orders[1].order_no, &close(&orders[1]))
        .await;

    // What the store now holds.
    let stored: Vec<Order> = orders
        .iter()
        .enumerate()
        .map(|(i, o)| match i {
            1 | 4 => o.apply(&pay(o)).unwrap(),
            2 => o.apply(&close(o)).unwrap(),
            _ => o.clone(),
        })
        .collect();
    let expect = |status: OrderStatus| -> Vec<Order> {
        newest_first(
            stored
                .iter()
                .filter(|o| o.status == status)
                .cloned()
                .collect(),
        )
    };
    for (status, count) in [
        (OrderStatus::Pending, 3),
        (OrderStatus::Paid, 2),
        (OrderStatus::Closed, 1),
        (OrderStatus::Refunded, 0),
    ] {
        let page = list(&store, &a, Some(status), PageStart::Page(1), 20).await;
        assert_eq!(page.total, count, "{status:?}");
        assert_eq!(page.orders, expect(status), "{status:?}");
        assert_eq!(page.next_after, None);
    }
    let everything = list(&store, &a, None, PageStart::Page(1), 20).await;
    assert_eq!(everything.total, 6);

    // Paging within a status: page numbers and the cursor.
    let pending = expect(OrderStatus::Pending);
    let first = list(
        &store,
        &a,
        Some(OrderStatus::Pending),
        PageStart::Page(1),
        2,
    )
    .await;
    assert_eq!(numbers(&first.orders), numbers(&pending[0..2]));
    assert_eq!(first.total, 3);
    let second = list(
        &store,
        &a,
        Some(OrderStatus::Pending),
        PageStart::Page(2),
        2,
    )
    .await;
    assert_eq!(numbers(&second.orders), numbers(&pending[2..3]));
    assert_eq!(second.next_after, None);
    let walked = walk(&store, &a, Some(OrderStatus::Pending), 2).await;
    assert_eq!(numbers(&walked), numbers(&pending));
}

async fn lists_never_show_another_merchants_orders<S: Store>(store: S) {
    let (a, b) = (merchant("a"), merchant("b"));
    // Interleaved in time: a at odd seconds, b at even ones.
    let a_orders = newest_first(insert_orders(&store, &a, &[1, 3, 5, 7, 9]).await);
    let b_orders = newest_first(insert_orders(&store, &b, &[2, 4, 6, 8]).await);
    store
        .update_order(&b_orders[0].order_no, &pay(&b_orders[0]))
        .await
        .unwrap();

    let a_list = list(&store, &a, None, PageStart::Page(1), 100).await;
    assert_eq!(numbers(&a_list.orders), numbers(&a_orders));
    assert_eq!(a_list.total, 5);
    let b_list = list(&store, &b, None, PageStart::Page(1), 100).await;
    assert_eq!(numbers(&b_list.orders), numbers(&b_orders));
    assert_eq!(b_list.total, 4);
    assert_eq!(
        numbers(&walk(&store, &a, None, 2).await),
        numbers(&a_orders)
    );

    // A cursor taken from b's list, used by a: only a's orders older than it.
    let foreign = b_orders[1].order_no.clone();
    let expected: Vec<&Order> = a_orders.iter().filter(|o| o.order_no < foreign).collect();
    for status in [None, Some(OrderStatus::Pending)] {
        let page = list(&store, &a, status, PageStart::After(foreign.clone()), 100).await;
        assert!(page.orders.iter().all(|o| o.merchant_id == a.id));
        assert_eq!(
            page.orders.iter().collect::<Vec<_>>(),
            expected,
            "{status:?}"
        );
        assert_eq!(page.total, 5);
    }
    // b's paid order is not in a's paid list.
    let a_paid = list(&store, &a, Some(OrderStatus::Paid), PageStart::Page(1), 100).await;
    assert!(a_paid.orders.is_empty());
    assert_eq!(a_paid.total, 0);
}

// ---------------------------------------------------------------- rate windows

async fn rate_windows_count_and_restart<S: Store>(store: S) {
    let end = Timestamp::from_unix(START + 60);
    for expected in 1..=3 {
        assert_eq!(
            store.count_in_window("rate#mch_a#0", end).await.unwrap(),
            expected
        );
    }
    // Another bucket counts on its own.
    assert_eq!(store.count_in_window("rate#mch_b#0", end).await.unwrap(), 1);
    // The same bucket with a new window starts again (the old window may still be stored).
    let next_end = end.plus_secs(60);
    assert_eq!(
        store
            .count_in_window("rate#mch_a#0", next_end)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .count_in_window("rate#mch_a#0", next_end)
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.count_in_window("rate#mch_b#0", end).await.unwrap(), 2);
}

// ---------------------------------------------------------------- merchant administration

async fn merchant_updates_are_atomic_and_replaced_keys_stop_working<S: Store>(store: S) {
    let a = merchant("upd_a");
    let b = merchant("upd_b");
    store.insert_merchant(&a).await.unwrap();
    store.insert_merchant(&b).await.unwrap();

    // Disable and rotate the secret key in one update.
    let rotated = Merchant {
        status: MerchantStatus::Disabled,
        secret_key_hash: hash_api_key("sk_upd_a_rotated"),
        notify_url: None,
        ..a.clone()
    };
    let rotated = store.update_merchant(&rotated).await.unwrap();
    assert!(store
        .merchant_by_key(&a.secret_key_hash)
        .await
        .unwrap()
        .is_none());
    let (by_new, kind) = store
        .merchant_by_key(&hash_api_key("sk_upd_a_rotated"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((by_new.clone(), kind), (rotated.clone(), KeyKind::Secret));
    // The unchanged publishable key sees the new state too.
    let (by_pk, kind) = store
        .merchant_by_key(&a.publishable_key_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((by_pk, kind), (rotated.clone(), KeyKind::Publishable));
    assert_eq!(
        store.get_merchant(&a.id).await.unwrap(),
        Some(rotated.clone())
    );

    // Taking another merchant's key is refused and changes nothing.
    let thief = Merchant {
        secret_key_hash: b.secret_key_hash.clone(),
        ..rotated.clone()
    };
    assert!(matches!(
        store.update_merchant(&thief).await,
        Err(UpdateMerchantError::KeyTaken)
    ));
    assert_eq!(
        store.get_merchant(&a.id).await.unwrap(),
        Some(rotated.clone())
    );
    let (owner, _) = store
        .merchant_by_key(&b.secret_key_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.id, b.id);

    // An unknown merchant cannot be updated into existence.
    let ghost = merchant("upd_ghost");
    assert!(matches!(
        store.update_merchant(&ghost).await,
        Err(UpdateMerchantError::NotFound)
    ));
    assert!(store
        .merchant_by_key(&ghost.secret_key_hash)
        .await
        .unwrap()
        .is_none());
}

async fn merchants_are_listed_by_id<S: Store>(store: S) {
    let b = merchant("list_b");
    let a = merchant("list_a");
    store.insert_merchant(&b).await.unwrap();
    store.insert_merchant(&a).await.unwrap();
    insert_orders(&store, &a, &[1, 2]).await;
    let ids: Vec<String> = store
        .list_merchants()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id.as_str().to_string())
        .collect();
    assert_eq!(ids, ["mch_list_a", "mch_list_b"]);
}

/// The merchant reads back as `expected` by id, by either key and in the list.
async fn assert_merchant_stored<S: Store>(store: &S, expected: &Merchant) {
    assert_eq!(
        store.get_merchant(&expected.id).await.unwrap().as_ref(),
        Some(expected)
    );
    for (hash, kind) in [
        (&expected.secret_key_hash, KeyKind::Secret),
        (&expected.publishable_key_hash, KeyKind::Publishable),
    ] {
        assert_eq!(
            store.merchant_by_key(hash).await.unwrap(),
            Some((expected.clone(), kind)),
            "{kind:?}"
        );
    }
    let listed = store.list_merchants().await.unwrap();
    assert!(listed.contains(expected), "{listed:?}");
}

async fn payment_link_settings_are_stored_with_the_merchant_and_its_keys<S: Store>(store: S) {
    let plain = merchant("links_plain");
    let a = Merchant {
        payment_links: PaymentLinkSettings {
            signing_secret: Some(MerchantSecret::new("lsk_links_a")),
            require_signed: true,
            allowed_return_hosts: vec!["shop.example".into(), "*.pay.example".into()],
        },
        ..merchant("links_a")
    };
    store.insert_merchant(&plain).await.unwrap();
    store.insert_merchant(&a).await.unwrap();
    assert_merchant_stored(&store, &plain).await;
    assert_merchant_stored(&store, &a).await;

    // Each change reaches the record and both key copies.
    let changed = Merchant {
        payment_links: PaymentLinkSettings {
            signing_secret: Some(MerchantSecret::new("lsk_links_a_rotated")),
            require_signed: false,
            allowed_return_hosts: vec!["203.0.113.7".into()],
        },
        ..a.clone()
    };
    let changed = store.update_merchant(&changed).await.unwrap();
    assert_merchant_stored(&store, &changed).await;
    let cleared = Merchant {
        payment_links: PaymentLinkSettings::default(),
        ..changed.clone()
    };
    let cleared = store.update_merchant(&cleared).await.unwrap();
    assert_merchant_stored(&store, &cleared).await;
    // A setting alone, the others at their defaults.
    let signed_only = Merchant {
        payment_links: PaymentLinkSettings {
            signing_secret: Some(MerchantSecret::new("lsk_links_plain")),
            require_signed: true,
            ..PaymentLinkSettings::default()
        },
        ..plain.clone()
    };
    let signed_only = store.update_merchant(&signed_only).await.unwrap();
    assert_merchant_stored(&store, &signed_only).await;
}

/// Two operators' updates from the same read (two `rotate-key` runs, or a rotation and a
/// disable): one lands, the other is refused whole, and no key item of the loser's exists.
async fn two_updates_from_one_read_leave_no_orphan_key<S: Store>(store: S) {
    let a = merchant("race");
    store.insert_merchant(&a).await.unwrap();
    let read = store.get_merchant(&a.id).await.unwrap().unwrap();
    let first = Merchant {
        secret_key_hash: hash_api_key("sk_race_first"),
        ..read.clone()
    };
    let second = Merchant {
        secret_key_hash: hash_api_key("sk_race_second"),
        publishable_key_hash: hash_api_key("pk_race_second"),
        ..read.clone()
    };
    let disable = Merchant {
        status: MerchantStatus::Disabled,
        ..read.clone()
    };
    let (one, two) = tokio::join!(
        store.update_merchant(&first),
        store.update_merchant(&second)
    );
    let (winner, loser) = match (one, two) {
        (Ok(w), Err(UpdateMerchantError::Conflict)) => (w, second),
        (Err(UpdateMerchantError::Conflict), Ok(w)) => (w, first),
        other => panic!("exactly one must land: {other:?}"),
    };
    assert_eq!(winner.version, read.version + 1);
    assert!(matches!(
        store.update_merchant(&disable).await,
        Err(UpdateMerchantError::Conflict)
    ));
    assert_merchant_stored(&store, &winner).await;
    for hash in [&loser.secret_key_hash, &loser.publishable_key_hash] {
        if *hash != winner.secret_key_hash && *hash != winner.publishable_key_hash {
            assert!(
                store.merchant_by_key(hash).await.unwrap().is_none(),
                "orphan key"
            );
        }
    }
    assert!(store
        .merchant_by_key(&a.secret_key_hash)
        .await
        .unwrap()
        .is_none());
    // Read again, the update goes through.
    let disabled = store
        .update_merchant(&Merchant {
            status: MerchantStatus::Disabled,
            ..winner.clone()
        })
        .await
        .unwrap();
    assert_eq!(disabled.version, winner.version + 1);
    assert_merchant_stored(&store, &disabled).await;
}

async fn ip_allowlists_are_stored_with_the_merchant_and_its_keys<S: Store>(store: S) {
    let a = merchant("ips");
    store.insert_merchant(&a).await.unwrap();
    let listed = Merchant {
        ip_allowlist: ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]
            .iter()
            .map(|c| Cidr::parse(c).unwrap())
            .collect(),
        ..a.clone()
    };
    let listed = store.update_merchant(&listed).await.unwrap();
    assert_merchant_stored(&store, &listed).await;
    let cleared = store
        .update_merchant(&Merchant {
            ip_allowlist: Vec::new(),
            ..listed
        })
        .await
        .unwrap();
    assert_merchant_stored(&store, &cleared).await;
}

/// The webhook events a merchant subscribed to are on its record and its key items (the API
/// reads merchants by key); back to the default, they are gone.
async fn notify_events_are_stored_with_the_merchant_and_its_keys<S: Store>(store: S) {
    let a = merchant("events");
    store.insert_merchant(&a).await.unwrap();
    let subscribed = Merchant {
        notify_events: NotifyEvents::all(),
        ..a.clone()
    };
    let subscribed = store.update_merchant(&subscribed).await.unwrap();
    assert_merchant_stored(&store, &subscribed).await;
    let back = store
        .update_merchant(&Merchant {
            notify_events: NotifyEvents::default(),
            ..subscribed
        })
        .await
        .unwrap();
    assert_merchant_stored(&store, &back).await;
}

// ---------------------------------------------------------------- DynamoDB items

const LINK_ATTRIBUTES: [&str; 3] = [
    "link_signing_secret",
    "link_require_signed",
    "link_return_hosts",
];

async fn raw_client() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&crate::harness::emulator().await)
}

async fn raw_item(
    client: &aws_sdk_dynamodb::Client,
    store: &DynamoStore,
    pk: String,
    sk: &str,
) -> HashMap<String, AttributeValue> {
    client
        .get_item()
        .table_name(store.table_name())
        .key("pk", AttributeValue::S(pk))
        .key("sk", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap()
}

/// A merchant record and its key items as written before payment links existed.
fn old_shaped_items(m: &Merchant) -> Vec<HashMap<String, AttributeValue>> {
    let s = |v: &str| AttributeValue::S(v.to_string());
    let common = HashMap::from([
        ("merchant_id".to_string(), s(m.id.as_str())),
        ("name".to_string(), s(&m.name)),
        ("secret_key_hash".to_string(), s(m.secret_key_hash.as_str())),
        (
            "publishable_key_hash".to_string(),
            s(m.publishable_key_hash.as_str()),
        ),
        (
            "webhook_secret".to_string(),
            s(m.webhook_secret.expose().unwrap()),
        ),
        (
            "notify_url".to_string(),
            s(m.notify_url.as_deref().unwrap()),
        ),
        ("status".to_string(), s("active")),
        (
            "created_at".to_string(),
            AttributeValue::N(m.created_at.unix().to_string()),
        ),
    ]);
    let with = |extra: &[(&str, &str)]| {
        let mut item = common.clone();
        item.extend(extra.iter().map(|(k, v)| (k.to_string(), s(v))));
        item
    };
    let record_pk = format!("MERCHANT#{}", m.id);
    let sk_pk = format!("KEY#{}", m.secret_key_hash.as_str());
    let pk_pk = format!("KEY#{}", m.publishable_key_hash.as_str());
    vec![
        with(&[
            ("pk", &record_pk),
            ("sk", "MERCHANT"),
            ("item_type", "merchant"),
        ]),
        with(&[
            ("pk", &sk_pk),
            ("sk", "KEY"),
            ("item_type", "api_key"),
            ("key_kind", "secret"),
        ]),
        with(&[
            ("pk", &pk_pk),
            ("sk", "KEY"),
            ("item_type", "api_key"),
            ("key_kind", "publishable"),
        ]),
    ]
}

#[tokio::test]
async fn dynamodb_orders_stored_before_sources_read_back_as_api() {
    crate::harness::within(TEST_TIMEOUT, async {
        let store = dynamo_store().await;
        let client = raw_client().await;
        let a = merchant("old_order");
        let o = Order {
            source: OrderSource::SignedLink,
            ..order(&a, 1, Some("old-1"))
        };
        store.insert_order(&o).await.unwrap();
        let keys = [
            (format!("ORDER#{}", o.order_no), "ORDER"),
            (format!("OTN#{}#old-1", a.id), "OTN"),
        ];
        for (pk, sk) in &keys {
            let item = raw_item(&client, &store, pk.clone(), sk).await;
            assert_eq!(
                item.get("source"),
                Some(&AttributeValue::S("signed_link".into())),
                "{pk}"
            );
            // As written before the attribute existed.
            client
                .update_item()
                .table_name(store.table_name())
                .key("pk", AttributeValue::S(pk.clone()))
                .key("sk", AttributeValue::S(sk.to_string()))
                .update_expression("REMOVE #source")
                .expression_attribute_names("#source", "source")
                .send()
                .await
                .unwrap();
        }
        let by_no = store.get_order(&o.order_no).await.unwrap().unwrap();
        assert_eq!(by_no.source, OrderSource::Api);
        let by_otn = store
            .order_by_out_trade_no(&a.id, &otn("old-1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_otn.source, OrderSource::Api);
        let listed = list(&store, &a, None, PageStart::Page(1), 10).await;
        assert_eq!(listed.orders[0].source, OrderSource::Api);
        // An update keeps it (and now writes it).
        let paid = store.update_order(&o.order_no, &pay(&o)).await.unwrap();
        assert_eq!(paid.source, OrderSource::Api);
        let item = raw_item(&client, &store, keys[0].0.clone(), "ORDER").await;
        assert_eq!(item.get("source"), Some(&AttributeValue::S("api".into())));
    })
    .await;
}

#[tokio::test]
async fn dynamodb_merchants_stored_before_payment_links_read_with_the_defaults() {
    crate::harness::within(TEST_TIMEOUT, async {
        let store = dynamo_store().await;
        let client = raw_client().await;
        let old = merchant("old_shape");
        for item in old_shaped_items(&old) {
            client
                .put_item()
                .table_name(store.table_name())
                .set_item(Some(item))
                .send()
                .await
                .unwrap();
        }
        // The fixture has the default settings: it reads back exactly, by id, key and list.
        assert_eq!(old.payment_links, PaymentLinkSettings::default());
        assert_merchant_stored(&store, &old).await;

        // An update writes the settings into all three items, with the documented types...
        let updated = Merchant {
            payment_links: PaymentLinkSettings {
                signing_secret: Some(MerchantSecret::new("lsk_old_shape")),
                require_signed: true,
                allowed_return_hosts: vec!["shop.example".into(), "*.pay.example".into()],
            },
            ..old.clone()
        };
        let updated = store.update_merchant(&updated).await.unwrap();
        assert_merchant_stored(&store, &updated).await;
        let keys = [
            (format!("MERCHANT#{}", old.id), "MERCHANT"),
            (format!("KEY#{}", old.secret_key_hash.as_str()), "KEY"),
            (format!("KEY#{}", old.publishable_key_hash.as_str()), "KEY"),
        ];
        let record = raw_item(&client, &store, keys[0].0.clone(), "MERCHANT").await;
        let sealed = record.get("link_signing_secret").unwrap().as_s().unwrap();
        assert!(sealed.starts_with("fps1:"), "sealed, never plain: {sealed}");
        for (pk, sk) in &keys {
            let item = raw_item(&client, &store, pk.clone(), sk).await;
            assert_eq!(
                item.get("link_signing_secret"),
                Some(&AttributeValue::S(sealed.clone())),
                "{pk}: the same sealed value in all three items"
            );
            assert_eq!(
                item.get("link_require_signed"),
                Some(&AttributeValue::Bool(true)),
                "{pk}"
            );
            assert_eq!(
                item.get("link_return_hosts"),
                Some(&AttributeValue::L(vec![
                    AttributeValue::S("shop.example".into()),
                    AttributeValue::S("*.pay.example".into()),
                ])),
                "{pk}"
            );
        }

        // ...and back at the defaults the attributes are gone, not empty or false.
        let old = store
            .update_merchant(&Merchant {
                version: updated.version,
                ..old.clone()
            })
            .await
            .unwrap();
        assert_merchant_stored(&store, &old).await;
        for (pk, sk) in &keys {
            let item = raw_item(&client, &store, pk.clone(), sk).await;
            for name in LINK_ATTRIBUTES {
                assert!(!item.contains_key(name), "{pk} still has {name}");
            }
        }

        // An explicit false reads as false (a hand-edited or future item).
        let mut record = raw_item(&client, &store, keys[0].0.clone(), "MERCHANT").await;
        record.insert("link_require_signed".into(), AttributeValue::Bool(false));
        client
            .put_item()
            .table_name(store.table_name())
            .set_item(Some(record.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            store.get_merchant(&old.id).await.unwrap(),
            Some(old.clone())
        );
        // A wrongly typed attribute is reported, not read as a default.
        record.insert(
            "link_return_hosts".into(),
            AttributeValue::S("shop.example".into()),
        );
        client
            .put_item()
            .table_name(store.table_name())
            .set_item(Some(record))
            .send()
            .await
            .unwrap();
        let err = store.get_merchant(&old.id).await.unwrap_err();
        assert!(err.to_string().contains("link_return_hosts"), "{err:?}");
    })
    .await;
}

// ---------------------------------------------------------------- secrets at rest (DynamoDB)

/// A KMS key on the emulator, made with the real SDK client.
async fn kms_key() -> String {
    aws_sdk_kms::Client::new(&crate::harness::emulator().await)
        .create_key()
        .description("ferrypay store tests")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id
}

/// A store on `table` with these secret permissions, unwrapping with KMS (`key_id` to create).
async fn kms_store(table: &str, keys: fn(Arc<dyn DataKeySource>) -> SecretKeys) -> DynamoStore {
    kms_store_with(table, None, keys).await
}

async fn kms_store_with(
    table: &str,
    key_id: Option<String>,
    keys: fn(Arc<dyn DataKeySource>) -> SecretKeys,
) -> DynamoStore {
    let config = crate::harness::emulator().await;
    let source = Arc::new(KmsDataKeys::new(&config, key_id));
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table).with_secret_keys(keys(source))
}

fn webhook_only(source: Arc<dyn DataKeySource>) -> SecretKeys {
    SecretKeys::opening(&[SecretPurpose::Webhook], source)
}

fn link_only(source: Arc<dyn DataKeySource>) -> SecretKeys {
    SecretKeys::opening(&[SecretPurpose::Link], source)
}

fn no_secrets(_: Arc<dyn DataKeySource>) -> SecretKeys {
    SecretKeys::none()
}

async fn scan_all(table: &str) -> Vec<HashMap<String, AttributeValue>> {
    let client = raw_client().await;
    let mut items = Vec::new();
    let mut start = None;
    for _ in 0..100 {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(page.items().iter().cloned());
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
    panic!("the scan did not end");
}

/// Every attribute's bytes as stored, and for text also base64-decoded (whole, and after a
/// `prefix:`), so a secret cannot hide behind an encoding.
fn stored_bytes(items: &[HashMap<String, AttributeValue>]) -> Vec<Vec<u8>> {
    fn walk(value: &AttributeValue, out: &mut Vec<Vec<u8>>) {
        match value {
            AttributeValue::S(text) => {
                out.push(text.as_bytes().to_vec());
                let after_prefix = text.split_once(':').map_or(text.as_str(), |(_, b)| b);
                for candidate in [text.as_str(), after_prefix] {
                    if let Ok(bytes) = STANDARD.decode(candidate) {
                        out.push(bytes);
                    }
                }
            }
            AttributeValue::B(blob) => out.push(blob.as_ref().to_vec()),
            AttributeValue::L(values) => values.iter().for_each(|v| walk(v, out)),
            AttributeValue::M(map) => map.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for item in items {
        for value in item.values() {
            walk(value, &mut out);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.len() <= haystack.len() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn dynamodb_a_table_scan_finds_no_secret_after_onboarding_and_rotations() {
    crate::harness::within(TEST_TIMEOUT, async {
        let table = dynamo_store().await.table_name().to_string();
        let operator = kms_store_with(&table, Some(kms_key().await), SecretKeys::operator).await;
        let clock = ferrypay::model::ManualClock::new(Timestamp::from_unix(START));
        let admin = MerchantAdmin::new(&operator, &clock, false);
        let mut secrets: Vec<String> = Vec::new();
        for name in ["Scan One", "Scan Two"] {
            let (m, keys) = admin
                .onboard(NewMerchant {
                    name: name.into(),
                    ..NewMerchant::default()
                })
                .await
                .unwrap();
            secrets.push(keys.webhook_secret.expose().clone());
            let (_, rotated) = admin
                .rotate_webhook_secret(&m.id, Duration::from_secs(3600))
                .await
                .unwrap();
            secrets.push(rotated.expose().clone());
            let (_, link) = admin.rotate_link_secret(&m.id).await.unwrap();
            secrets.push(link.expose().clone());
            let m = admin
                .change_ip_allowlist(
                    &m.id,
                    AllowlistChange::Add(vec![Cidr::parse("203.0.113.0/24").unwrap()]),
                )
                .await
                .unwrap();
            // The operator reads them all back open.
            assert_eq!(m.webhook_secret.expose(), Ok(rotated.expose().as_str()));
            let previous = m.previous_webhook_secret.as_ref().unwrap();
            assert_eq!(
                previous.secret.expose(),
                Ok(keys.webhook_secret.expose().as_str())
            );
            let link_secret = m.payment_links.signing_secret.as_ref().unwrap();
            assert_eq!(link_secret.expose(), Ok(link.expose().as_str()));
        }

        let items = scan_all(&table).await;
        let keyrings = items
            .iter()
            .filter(|i| i["pk"].as_s().unwrap().starts_with("KEYRING#"))
            .count();
        assert_eq!(keyrings, 2, "one keyring per purpose");
        let stored = stored_bytes(&items);
        for prefix in ["whsec_", "lsk_"] {
            assert!(
                !stored.iter().any(|b| contains(b, prefix.as_bytes())),
                "a {prefix} value is stored"
            );
        }
        for secret in &secrets {
            // The text, and for webhook secrets the raw key bytes behind the base64.
            let mut forms = vec![secret.as_bytes().to_vec()];
            if let Some(body) = secret.strip_prefix("whsec_") {
                forms.push(STANDARD.decode(body).unwrap());
            }
            if let Some(body) = secret.strip_prefix("lsk_") {
                forms.push(body.as_bytes().to_vec());
            }
            for form in forms {
                assert!(
                    !stored.iter().any(|b| contains(b, &form)),
                    "a secret's bytes are stored"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn dynamodb_function_stores_open_only_their_purposes_and_write_no_merchant() {
    crate::harness::within(TEST_TIMEOUT, async {
        let table = dynamo_store().await.table_name().to_string();
        let operator = kms_store_with(&table, Some(kms_key().await), SecretKeys::operator).await;
        let m = Merchant {
            previous_webhook_secret: Some(RetiringSecret {
                secret: MerchantSecret::new("whsec_cHJldmlvdXM="),
                until: Timestamp::from_unix(START + 60),
            }),
            payment_links: PaymentLinkSettings {
                signing_secret: Some(MerchantSecret::new("lsk_purposes")),
                ..PaymentLinkSettings::default()
            },
            ..merchant("purposes")
        };
        operator.insert_merchant(&m).await.unwrap();

        let worker = kms_store(&table, webhook_only).await;
        worker.load_secret_keys().await.unwrap();
        let (seen, _) = worker
            .merchant_by_key(&m.secret_key_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.webhook_secret, m.webhook_secret);
        assert_eq!(
            seen.webhook_signing_secrets(Timestamp::from_unix(START)),
            Ok(vec!["whsec_purposes", "whsec_cHJldmlvdXM="])
        );
        let sealed_link = Some(MerchantSecret::Sealed(SecretPurpose::Link));
        assert_eq!(seen.payment_links.signing_secret, sealed_link);

        let gateway = kms_store(&table, link_only).await;
        let (seen, _) = gateway
            .merchant_by_key(&m.publishable_key_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            seen.payment_links.signing_secret,
            m.payment_links.signing_secret
        );
        assert_eq!(
            seen.webhook_signing_secrets(Timestamp::from_unix(START)),
            Err(SecretSealed(SecretPurpose::Webhook))
        );

        // Create, query, list...: no key at all, and everything but the secrets still reads.
        let api = kms_store(&table, no_secrets).await;
        let (seen, kind) = api
            .merchant_by_key(&m.secret_key_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kind, KeyKind::Secret);
        assert_eq!(
            (seen.id.clone(), seen.status, seen.version),
            (m.id.clone(), m.status, 0)
        );
        assert_eq!(
            seen.webhook_secret,
            MerchantSecret::Sealed(SecretPurpose::Webhook)
        );
        assert_eq!(
            seen.previous_webhook_secret.as_ref().unwrap().secret,
            MerchantSecret::Sealed(SecretPurpose::Webhook)
        );
        assert_eq!(seen.payment_links.signing_secret, sealed_link);
        assert_eq!(api.list_merchants().await.unwrap().len(), 1);
        // ...and no function can write a merchant (its sealed secrets could not be written
        // back anyway), not even one whose secrets it could seal.
        for store in [&api, &worker, &gateway] {
            let (seen, _) = store
                .merchant_by_key(&m.secret_key_hash)
                .await
                .unwrap()
                .unwrap();
            let disabled = Merchant {
                status: MerchantStatus::Disabled,
                ..seen
            };
            let err = store
                .update_merchant(&disabled)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("only the operator"), "{err}");
            let err = store
                .insert_merchant(&merchant("by_function"))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("only the operator"), "{err}");
        }
        // Even a sealed secret cannot be written back by the operator: it would be lost.
        let err = operator
            .update_merchant(&Merchant {
                webhook_secret: MerchantSecret::Sealed(SecretPurpose::Webhook),
                ..m.clone()
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("sealed"), "{err}");
        assert_merchant_stored(&operator, &m).await;

        // A function never creates a keyring: on a table without one, starting leaves it so.
        let bare = dynamo_store_without_keys().await;
        let worker = kms_store(bare.table_name(), webhook_only).await;
        worker.load_secret_keys().await.unwrap();
        assert!(scan_all(bare.table_name()).await.is_empty());
    })
    .await;
}

/// A fresh table with no keyring, and a store on it that opens nothing.
async fn dynamo_store_without_keys() -> DynamoStore {
    let config = crate::harness::emulator().await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        unique_name("ferrypay-bare"),
    );
    store.create_table().await.unwrap();
    store
}

#[tokio::test]
async fn dynamodb_a_tampered_moved_or_foreign_sealed_value_is_refused() {
    crate::harness::within(TEST_TIMEOUT, async {
        let store = dynamo_store().await;
        let client = raw_client().await;
        let a = Merchant {
            previous_webhook_secret: Some(RetiringSecret {
                secret: MerchantSecret::new("whsec_b2xk"),
                until: Timestamp::from_unix(START + 60),
            }),
            ..merchant("seal_a")
        };
        let b = merchant("seal_b");
        store.insert_merchant(&a).await.unwrap();
        store.insert_merchant(&b).await.unwrap();
        let a_pk = format!("MERCHANT#{}", a.id);
        let b_pk = format!("MERCHANT#{}", b.id);
        let a_record = raw_item(&client, &store, a_pk.clone(), "MERCHANT").await;
        let b_record = raw_item(&client, &store, b_pk.clone(), "MERCHANT").await;
        let put = |item: HashMap<String, AttributeValue>| {
            let client = client.clone();
            let table = store.table_name().to_string();
            async move {
                client
                    .put_item()
                    .table_name(table)
                    .set_item(Some(item))
                    .send()
                    .await
                    .unwrap();
            }
        };
        let refused = |what: &'static str| {
            let store = &store;
            let id = b.id.clone();
            async move {
                let err = store.get_merchant(&id).await.unwrap_err().to_string();
                assert!(err.contains("does not open"), "{what}: {err}");
                assert!(!err.contains("whsec_"), "{what}: {err}");
            }
        };

        // a's sealed secret copied into b's record: another merchant.
        let mut moved = b_record.clone();
        moved.insert("webhook_secret".into(), a_record["webhook_secret"].clone());
        put(moved).await;
        refused("another merchant").await;
        // b's own current secret moved to the previous secret's attribute: another field.
        let mut moved = b_record.clone();
        moved.insert(
            "previous_webhook_secret".into(),
            b_record["webhook_secret"].clone(),
        );
        moved.insert(
            "previous_webhook_secret_until".into(),
            AttributeValue::N((START + 60).to_string()),
        );
        put(moved).await;
        refused("another attribute").await;
        // One character of the sealed value changed: inside the ciphertext, well before the
        // base64 padding (changing a final character can make the text invalid base64, a
        // different refusal).
        let mut tampered = b_record.clone();
        let value = b_record["webhook_secret"].as_s().unwrap();
        let mut chars: Vec<char> = value.chars().collect();
        let at = "fps1:".len() + 20;
        chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
        tampered.insert(
            "webhook_secret".into(),
            AttributeValue::S(chars.into_iter().collect()),
        );
        put(tampered).await;
        refused("tampered").await;
        put(b_record.clone()).await;
        assert_merchant_stored(&store, &b).await;

        // Another table's keyring (another data key) in place of this one's: a store that
        // loads it cannot open the values sealed under the first.
        let other = dynamo_store().await;
        other
            .insert_merchant(&merchant("other_table"))
            .await
            .unwrap();
        let foreign = raw_item(&client, &other, "KEYRING#webhook".into(), "KEYRING").await;
        put(foreign).await;
        let fresh = store
            .clone()
            .with_secret_keys(SecretKeys::operator(Arc::new(LocalDevKeys::new().unwrap())));
        let err = fresh.get_merchant(&a.id).await.unwrap_err().to_string();
        assert!(err.contains("does not open"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn dynamodb_two_operators_creating_a_keyring_at_once_share_one_key() {
    crate::harness::within(TEST_TIMEOUT, async {
        let bare = dynamo_store_without_keys().await;
        let key = kms_key().await;
        let one = kms_store_with(bare.table_name(), Some(key.clone()), SecretKeys::operator).await;
        let two = kms_store_with(bare.table_name(), Some(key), SecretKeys::operator).await;
        let (a, b) = tokio::join!(one.ensure_keyrings(), two.ensure_keyrings());
        a.unwrap();
        b.unwrap();
        let m = Merchant {
            payment_links: PaymentLinkSettings {
                signing_secret: Some(MerchantSecret::new("lsk_race")),
                ..PaymentLinkSettings::default()
            },
            ..merchant("keyring_race")
        };
        one.insert_merchant(&m).await.unwrap();
        assert_merchant_stored(&two, &m).await;
        let keyrings = scan_all(bare.table_name())
            .await
            .into_iter()
            .filter(|i| i["pk"].as_s().unwrap().starts_with("KEYRING#"))
            .count();
        assert_eq!(keyrings, 2);
    })
    .await;
}

#[tokio::test]
async fn dynamodb_plain_secrets_from_before_sealing_read_and_are_resealed() {
    crate::harness::within(TEST_TIMEOUT, async {
        let store = dynamo_store().await;
        let client = raw_client().await;
        let old = merchant("plain_old");
        for item in old_shaped_items(&old) {
            client
                .put_item()
                .table_name(store.table_name())
                .set_item(Some(item))
                .send()
                .await
                .unwrap();
        }
        // The operator (and a function that may open webhook secrets) reads the plain value;
        // a function that may not sees it sealed, as if it were.
        assert_merchant_stored(&store, &old).await;
        let api = store.clone().with_secret_keys(SecretKeys::none());
        let seen = api.get_merchant(&old.id).await.unwrap().unwrap();
        assert_eq!(
            seen.webhook_secret,
            MerchantSecret::Sealed(SecretPurpose::Webhook)
        );

        let clock = ferrypay::model::ManualClock::new(Timestamp::from_unix(START));
        let resealed = MerchantAdmin::new(&store, &clock, false)
            .reseal_all()
            .await
            .unwrap();
        assert_eq!(resealed, 1);
        let expected = Merchant {
            version: 1,
            ..old.clone()
        };
        assert_merchant_stored(&store, &expected).await;
        for (pk, sk) in [
            (format!("MERCHANT#{}", old.id), "MERCHANT"),
            (format!("KEY#{}", old.secret_key_hash.as_str()), "KEY"),
            (format!("KEY#{}", old.publishable_key_hash.as_str()), "KEY"),
        ] {
            let item = raw_item(&client, &store, pk.clone(), sk).await;
            let value = item["webhook_secret"].as_s().unwrap();
            assert!(
                value.starts_with("fps1:") && !value.contains("whsec_"),
                "{pk}: {value}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn dynamodb_old_counts_are_added_until_migrated_and_functions_write_no_merchant_item() {
    crate::harness::within(TEST_TIMEOUT, async {
        let store = dynamo_store().await;
        let client = raw_client().await;
        let m = merchant("counts");
        store.insert_merchant(&m).await.unwrap();
        let before: std::collections::BTreeSet<String> = scan_all(store.table_name())
            .await
            .iter()
            .map(|i| i["pk"].as_s().unwrap().clone())
            .collect();

        // Counts an earlier ferrypay kept in the merchant's partition: 5 orders, 4 pending.
        let n = |v: i64| AttributeValue::N(v.to_string());
        client
            .put_item()
            .table_name(store.table_name())
            .item("pk", AttributeValue::S(format!("MERCHANT#{}", m.id)))
            .item("sk", AttributeValue::S("COUNTS".into()))
            .item("item_type", AttributeValue::S("order_counts".into()))
            .item("count_all", n(5))
            .item("count_pending", n(4))
            .item("count_paid", n(1))
            .send()
            .await
            .unwrap();

        // What the functions do: orders (one with an out_trade_no), a payment, a rate window,
        // a webhook attempt, all through a store that opens no secret.
        let api = store.clone().with_secret_keys(SecretKeys::none());
        let orders = insert_orders(&api, &m, &[1, 2]).await;
        let guarded = order(&m, 3, Some("counts-otn"));
        api.insert_order(&guarded).await.unwrap();
        api.update_order(&orders[0].order_no, &pay(&orders[0]))
            .await
            .unwrap();
        api.count_in_window("rate#counts#0", Timestamp::from_unix(START + 60))
            .await
            .unwrap();
        api.record_webhook_attempt(&attempt_record(&orders[0], 0, 1, true))
            .await
            .unwrap();
        let written: Vec<String> = scan_all(store.table_name())
            .await
            .iter()
            .map(|i| i["pk"].as_s().unwrap().clone())
            .filter(|pk| !before.contains(pk) && *pk != format!("MERCHANT#{}", m.id))
            .collect();
        assert!(!written.is_empty());
        for pk in &written {
            assert!(
                ["ORDER#", "OTN#", "COUNTS#", "WINDOW#"]
                    .iter()
                    .any(|prefix| pk.starts_with(prefix)),
                "a function wrote {pk}"
            );
        }

        let totals = |status| {
            let api = &api;
            let id = m.id.clone();
            async move {
                api.list_orders(&ListQuery {
                    merchant_id: id,
                    status,
                    start: PageStart::Page(1),
                    per_page: 1,
                })
                .await
                .unwrap()
                .total
            }
        };
        let expected = [
            (None, 8),
            (Some(OrderStatus::Pending), 6),
            (Some(OrderStatus::Paid), 2),
        ];
        for (status, total) in expected {
            assert_eq!(
                totals(status).await,
                total,
                "{status:?} before the migration"
            );
        }
        assert_eq!(store.migrate_legacy_counts().await.unwrap(), 1);
        for (status, total) in expected {
            assert_eq!(
                totals(status).await,
                total,
                "{status:?} after the migration"
            );
        }
        let old = client
            .get_item()
            .table_name(store.table_name())
            .key("pk", AttributeValue::S(format!("MERCHANT#{}", m.id)))
            .key("sk", AttributeValue::S("COUNTS".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        assert!(old.item.is_none(), "the old counts item is gone");
        assert_eq!(
            store.migrate_legacy_counts().await.unwrap(),
            0,
            "idempotent"
        );
    })
    .await;
}

// ---------------------------------------------------------------- refunds

/// A paid order of `amount` fen, created `second` seconds after START.
async fn paid_order<S: Store>(
    store: &S,
    merchant: &Merchant,
    second: i64,
    amount: i64,
    out_trade_no: Option<&str>,
) -> Order {
    let o = Order {
        amount: Fen::new(amount),
        ..order(merchant, second, out_trade_no)
    };
    store.insert_order(&o).await.unwrap();
    store.update_order(&o.order_no, &pay(&o)).await.unwrap()
}

/// A new refund of `order` (processing, as the service begins it), made `second` seconds
/// into the refunds (so later ones are newer).
fn refund_of(order: &Order, second: i64, amount: i64, out_refund_no: Option<&str>) -> Refund {
    let created_at = Timestamp::from_unix(START + 1000 + second);
    Refund {
        refund_no: RefundNo::generate(created_at).unwrap(),
        merchant_id: order.merchant_id.clone(),
        order_no: order.order_no.clone(),
        out_trade_no: order.out_trade_no.clone(),
        out_refund_no: out_refund_no.map(|o| OutRefundNo::parse(o).unwrap()),
        amount: Fen::new(amount),
        status: RefundStatus::Processing,
        reason: Some(RefundReason::parse("退货").unwrap()),
        source: RefundSource::Api,
        channel_refund_id: None,
        created_at,
        succeeded_at: None,
        ended_at: None,
        request_fingerprint: format!("refund-fingerprint-{second}"),
        webhook: WebhookState::default(),
    }
}

/// A refund made in WeChat Pay's merchant platform, as a notification reports it.
fn external_refund(order: &Order, number: &str, amount: i64, status: RefundStatus) -> Refund {
    let made = refund_of(order, 500, amount, None);
    Refund {
        refund_no: RefundNo::from_wechat(number).unwrap(),
        status,
        reason: None,
        source: RefundSource::Wechat,
        channel_refund_id: Some(format!("50300{amount}")),
        succeeded_at: (status == RefundStatus::Succeeded).then_some(made.created_at),
        request_fingerprint: String::new(),
        ..made
    }
}

fn settled(outcome: RefundOutcome, second: i64) -> RefundSettlement {
    RefundSettlement {
        outcome,
        channel_refund_id: Some(format!("503000022720220621{second:04}")),
        at: Timestamp::from_unix(START + 2000 + second),
    }
}

fn tally(refunded: i64, reserved: i64, count: u32) -> RefundTally {
    RefundTally {
        refunded: Fen::new(refunded),
        reserved: Fen::new(reserved),
        count,
    }
}

/// The order's tally, read by number and through its `out_trade_no` (both copies agree).
async fn tally_of<S: Store>(store: &S, order: &Order) -> RefundTally {
    let stored = store.get_order(&order.order_no).await.unwrap().unwrap();
    if let Some(out_trade_no) = &order.out_trade_no {
        let copy = store
            .order_by_out_trade_no(&order.merchant_id, out_trade_no)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(copy, stored, "the out_trade_no copy follows the order");
    }
    stored.refunds
}

fn assert_exceeds(result: Result<Refund, BeginRefundError>, refundable: i64) {
    match result {
        Err(BeginRefundError::ExceedsRefundable { refundable: left }) => {
            assert_eq!(left, Fen::new(refundable))
        }
        other => panic!("expected exceeds refundable {refundable}, got {other:?}"),
    }
}

async fn a_partial_then_a_full_refund_makes_the_order_refunded<S: Store>(store: S) {
    let a = merchant("a");
    let o = paid_order(&store, &a, 1, 100, Some("shop-r1")).await;
    let other = paid_order(&store, &a, 2, 100, None).await;

    let first = store
        .begin_refund(&refund_of(&o, 1, 30, None))
        .await
        .unwrap();
    assert_eq!(first.status, RefundStatus::Processing);
    assert_eq!(tally_of(&store, &o).await, tally(0, 30, 1));
    let partial = store
        .settle_refund(&first.refund_no, &settled(RefundOutcome::Succeeded, 1))
        .await
        .unwrap();
    assert_eq!(partial.refund.status, RefundStatus::Succeeded);
    assert_eq!(
        partial.refund.succeeded_at,
        Some(Timestamp::from_unix(START + 2001))
    );
    assert!(partial.refund.channel_refund_id.is_some());
    // A partial refund keeps the order paid.
    assert_eq!(partial.order.status, OrderStatus::Paid);
    assert_eq!(partial.order.refunds, tally(30, 0, 1));
    assert!(!partial.over_refunded);
    assert_eq!(tally_of(&store, &o).await, tally(30, 0, 1));

    let rest = store
        .begin_refund(&refund_of(&o, 2, 70, None))
        .await
        .unwrap();
    let full = store
        .settle_refund(&rest.refund_no, &settled(RefundOutcome::Succeeded, 2))
        .await
        .unwrap();
    assert_eq!(full.order.status, OrderStatus::Refunded);
    assert_eq!(full.order.refunds, tally(100, 0, 2));
    assert_eq!(
        store.get_order(&o.order_no).await.unwrap().unwrap(),
        full.order
    );
    assert_eq!(tally_of(&store, &o).await, tally(100, 0, 2));

    // The counts and the status list moved from paid to refunded.
    let paid = list(&store, &a, Some(OrderStatus::Paid), PageStart::Page(1), 20).await;
    assert_eq!((paid.total, paid.orders), (1, vec![other]));
    let refunded = list(
        &store,
        &a,
        Some(OrderStatus::Refunded),
        PageStart::Page(1),
        20,
    )
    .await;
    assert_eq!(
        (refunded.total, refunded.orders),
        (1, vec![full.order.clone()])
    );
    assert_eq!(
        list(&store, &a, None, PageStart::Page(1), 20).await.total,
        2
    );

    // Nothing is left to refund.
    match store.begin_refund(&refund_of(&o, 3, 1, None)).await {
        Err(BeginRefundError::OrderNotPaid(OrderStatus::Refunded)) => {}
        other => panic!("{other:?}"),
    }
    // The order.paid webhook of a refunded order is still recorded.
    store
        .update_order(
            &o.order_no,
            &OrderUpdate::RecordWebhookQueued {
                generation: 0,
                at: Timestamp::from_unix(START + 3000),
            },
        )
        .await
        .unwrap();

    assert_eq!(
        store.refunds_of_order(&o.order_no, 50).await.unwrap(),
        vec![full.refund.clone(), partial.refund.clone()]
    );
    assert_eq!(
        store.get_refund(&first.refund_no).await.unwrap(),
        Some(partial.refund)
    );
}

async fn the_refundable_remainder_is_the_amount_less_refunded_and_reserved<S: Store>(store: S) {
    let a = merchant("a");
    let o = paid_order(&store, &a, 1, 100, Some("shop-rem")).await;
    let r30 = store
        .begin_refund(&refund_of(&o, 1, 30, None))
        .await
        .unwrap();
    assert_exceeds(store.begin_refund(&refund_of(&o, 2, 71, None)).await, 70);
    let r70 = store
        .begin_refund(&refund_of(&o, 3, 70, None))
        .await
        .unwrap();
    assert_exceeds(store.begin_refund(&refund_of(&o, 4, 1, None)).await, 0);
    assert_eq!(tally_of(&store, &o).await, tally(0, 100, 2));

    // A closed refund gives its amount back to the remainder.
    store
        .settle_refund(&r30.refund_no, &settled(RefundOutcome::Closed, 1))
        .await
        .unwrap();
    assert_eq!(tally_of(&store, &o).await, tally(0, 70, 2));
    assert_exceeds(store.begin_refund(&refund_of(&o, 5, 31, None)).await, 30);
    store
        .begin_refund(&refund_of(&o, 6, 30, None))
        .await
        .unwrap();
    let settled_70 = store
        .settle_refund(&r70.refund_no, &settled(RefundOutcome::Succeeded, 2))
        .await
        .unwrap();
    assert_eq!(settled_70.order.refunds, tally(70, 30, 3));
    assert_eq!(settled_70.order.status, OrderStatus::Paid);
    assert_eq!(
        settled_70.order.refunds.refundable(settled_70.order.amount),
        Fen::new(0)
    );
}

#[tokio::test]
async fn memory_concurrent_refunds_never_take_more_than_the_order() {
    crate::harness::within(
        TEST_TIMEOUT,
        concurrent_refunds_of_ten(Arc::new(ferrypay::store::MemoryStore::new())),
    )
    .await;
}

/// The same on DynamoDB. The ten tasks interleave their reads and transactions freely, but the
/// emulator is sent one request at a time: moto's transactions are not atomic under concurrent
/// requests (a cancelled one restores a copy of the table taken before it, undoing the
/// transactions that landed meanwhile), DynamoDB's are. So this proves what is ferrypay's: that
/// the conditions refuse every reservation made on a stale read.
#[tokio::test]
async fn dynamodb_concurrent_refunds_never_take_more_than_the_order() {
    crate::harness::within(TEST_TIMEOUT, async {
        let config = crate::harness::emulator().await;
        // The SDK's own default client (hyper + rustls on aws-lc), one request at a time.
        let http = one_at_a_time::OneAtATime::new(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .build_https(),
        );
        let client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&config)
                .http_client(http)
                .build(),
        );
        let store = DynamoStore::new(client, unique_name("ferrypay-store"));
        store.create_table().await.expect("create the test table");
        concurrent_refunds_of_ten(Arc::new(store)).await;
    })
    .await;
}

/// An HTTP client that sends one request at a time (the others wait their turn).
mod one_at_a_time {
    use std::sync::Arc;

    use aws_sdk_dynamodb::config::{http::HttpRequest, RuntimeComponents, SharedHttpClient};
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
    };
    use tokio::sync::Mutex;

    #[derive(Debug, Clone)]
    pub struct OneAtATime {
        inner: SharedHttpClient,
        turn: Arc<Mutex<()>>,
    }

    impl OneAtATime {
        pub fn new(inner: SharedHttpClient) -> Self {
            OneAtATime {
                inner,
                turn: Arc::new(Mutex::new(())),
            }
        }
    }

    impl HttpClient for OneAtATime {
        fn http_connector(
            &self,
            settings: &HttpConnectorSettings,
            components: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(Connector {
                inner: self.inner.http_connector(settings, components),
                turn: self.turn.clone(),
            })
        }
    }

    #[derive(Debug)]
    struct Connector {
        inner: SharedHttpConnector,
        turn: Arc<Mutex<()>>,
    }

    impl HttpConnector for Connector {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let (inner, turn) = (self.inner.clone(), self.turn.clone());
            HttpConnectorFuture::new(async move {
                let _turn = turn.lock().await;
                inner.call(request).await
            })
        }
    }
}

/// Ten concurrent refunds of 10 on an order of 50: exactly five begin.
async fn concurrent_refunds_of_ten<S: Store>(store: Arc<S>) {
    let a = merchant("a");
    let o = paid_order(&*store, &a, 1, 50, Some("shop-race")).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let store = store.clone();
        let refund = refund_of(&o, i, 10, Some(&format!("race-{i}")));
        tasks.spawn(async move { store.begin_refund(&refund).await });
    }
    let mut begun = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok(refund) => begun.push(refund),
            Err(BeginRefundError::ExceedsRefundable { refundable }) => {
                assert_eq!(refundable, Fen::new(0))
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(begun.len(), 5);
    assert_eq!(tally_of(&*store, &o).await, tally(0, 50, 5));
    let stored = store.refunds_of_order(&o.order_no, 50).await.unwrap();
    assert_eq!(stored.len(), 5);
    for refund in &begun {
        assert!(stored.contains(refund));
    }
}

async fn refunds_of_unpaid_unknown_or_others_orders_are_refused<S: Store>(store: S) {
    let (a, b) = (merchant("a"), merchant("b"));
    let pending = order(&a, 1, None);
    store.insert_order(&pending).await.unwrap();
    let closed = order(&a, 2, None);
    store.insert_order(&closed).await.unwrap();
    store
        .update_order(&closed.order_no, &close(&closed))
        .await
        .unwrap();
    let paid = paid_order(&store, &a, 3, 100, None).await;
    let unknown = order(&a, 4, None);

    for (o, status) in [
        (&pending, OrderStatus::Pending),
        (&closed, OrderStatus::Closed),
    ] {
        match store.begin_refund(&refund_of(o, 1, 10, None)).await {
            Err(BeginRefundError::OrderNotPaid(s)) => assert_eq!(s, status),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        store.begin_refund(&refund_of(&unknown, 2, 10, None)).await,
        Err(BeginRefundError::OrderNotFound)
    ));
    // Another merchant's order is not found, never refunded.
    let foreign = Refund {
        merchant_id: b.id.clone(),
        ..refund_of(&paid, 3, 10, None)
    };
    assert!(matches!(
        store.begin_refund(&foreign).await,
        Err(BeginRefundError::OrderNotFound)
    ));
    assert_exceeds(
        store.begin_refund(&refund_of(&paid, 4, 101, None)).await,
        100,
    );
    assert!(matches!(
        store.begin_refund(&refund_of(&paid, 5, 0, None)).await,
        Err(BeginRefundError::InvalidAmount)
    ));

    // Nothing was written.
    for o in [&pending, &closed, &paid] {
        assert_eq!(tally_of(&store, o).await, RefundTally::default());
        assert!(store
            .refunds_of_order(&o.order_no, 50)
            .await
            .unwrap()
            .is_empty());
    }
    assert_eq!(store.get_refund(&foreign.refund_no).await.unwrap(), None);
}

async fn a_reused_out_refund_no_returns_the_existing_refund<S: Store>(store: S) {
    let (a, b) = (merchant("a"), merchant("b"));
    let o = paid_order(&store, &a, 1, 100, None).await;
    let first = store
        .begin_refund(&refund_of(&o, 1, 100, Some("r-1")))
        .await
        .unwrap();
    // Again, and with other parameters, and on another order: the refund that has the number
    // (even though the order has nothing left to refund).
    let o2 = paid_order(&store, &a, 2, 100, None).await;
    for again in [
        refund_of(&o, 2, 100, Some("r-1")),
        refund_of(&o, 3, 5, Some("r-1")),
        refund_of(&o2, 4, 5, Some("r-1")),
    ] {
        match store.begin_refund(&again).await {
            Err(BeginRefundError::OutRefundNoTaken { existing }) => assert_eq!(*existing, first),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.get_refund(&again.refund_no).await.unwrap(), None);
    }
    assert_eq!(tally_of(&store, &o).await, tally(0, 100, 1));
    assert_eq!(tally_of(&store, &o2).await, RefundTally::default());

    // Unique per merchant only.
    let ob = paid_order(&store, &b, 3, 100, None).await;
    let theirs = store
        .begin_refund(&refund_of(&ob, 5, 5, Some("r-1")))
        .await
        .unwrap();
    let by = |m: &Merchant, no: &str| {
        let m = m.id.clone();
        let no = OutRefundNo::parse(no).unwrap();
        let store = &store;
        async move { store.refund_by_out_refund_no(&m, &no).await.unwrap() }
    };
    assert_eq!(by(&a, "r-1").await, Some(first));
    assert_eq!(by(&b, "r-1").await, Some(theirs));
    assert_eq!(by(&a, "r-2").await, None);
}

async fn the_fifty_first_refund_of_an_order_is_refused<S: Store>(store: S) {
    let a = merchant("a");
    let o = paid_order(&store, &a, 1, 100, Some("shop-51")).await;
    let mut begun = Vec::new();
    for i in 0..50 {
        begun.push(
            store
                .begin_refund(&refund_of(&o, i, 1, None))
                .await
                .unwrap(),
        );
    }
    assert!(matches!(
        store.begin_refund(&refund_of(&o, 50, 1, None)).await,
        Err(BeginRefundError::TooManyRefunds)
    ));
    assert_eq!(tally_of(&store, &o).await, tally(0, 50, 50));

    let newest_first: Vec<Refund> = begun.iter().rev().cloned().collect();
    assert_eq!(
        store.refunds_of_order(&o.order_no, 50).await.unwrap(),
        newest_first
    );
    assert_eq!(
        store.refunds_of_order(&o.order_no, 3).await.unwrap(),
        newest_first[..3].to_vec()
    );
    assert_eq!(store.processing_refunds(&o.order_no).await.unwrap(), begun);

    // Closing one frees its amount, not its place: the count is of refunds made.
    store
        .settle_refund(&begun[0].refund_no, &settled(RefundOutcome::Closed, 1))
        .await
        .unwrap();
    assert!(matches!(
        store.begin_refund(&refund_of(&o, 51, 1, None)).await,
        Err(BeginRefundError::TooManyRefunds)
    ));
    assert_eq!(
        store.processing_refunds(&o.order_no).await.unwrap(),
        begun[1..].to_vec()
    );
}

async fn a_refund_is_settled_once<S: Store>(store: S) {
    let a = merchant("a");
    let o = paid_order(&store, &a, 1, 100, Some("shop-once")).await;
    let r = store
        .begin_refund(&refund_of(&o, 1, 40, None))
        .await
        .unwrap();
    let first = store
        .settle_refund(&r.refund_no, &settled(RefundOutcome::Succeeded, 1))
        .await
        .unwrap();
    for outcome in [
        RefundOutcome::Succeeded,
        RefundOutcome::Closed,
        RefundOutcome::Abnormal,
    ] {
        match store
            .settle_refund(&r.refund_no, &settled(outcome, 2))
            .await
        {
            Err(UpdateRefundError::Refused { current, reason }) => {
                assert_eq!(*current, first.refund);
                assert_eq!(reason, RefundRefused::AlreadyFinal(RefundStatus::Succeeded));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(tally_of(&store, &o).await, tally(40, 0, 1));
    assert_eq!(
        store.get_refund(&r.refund_no).await.unwrap(),
        Some(first.refund)
    );
    let unknown = RefundNo::generate(Timestamp::from_unix(START)).unwrap();
    assert!(matches!(
        store
            .settle_refund(&unknown, &settled(RefundOutcome::Succeeded, 3))
            .await,
        Err(UpdateRefundError::NotFound)
    ));
}

/// A closed refund moved no money: its amount is refundable again. An abnormal one did (it waits
/// at WeChat Pay for an operator), so its amount stays reserved, and when it is paid out after
/// all it becomes refunded.
async fn closed_refunds_release_their_reservation_and_abnormal_ones_keep_it<S: Store>(store: S) {
    let a = merchant("a");
    let o = paid_order(&store, &a, 1, 100, Some("shop-rel")).await;
    let closed = store
        .begin_refund(&refund_of(&o, 1, 30, None))
        .await
        .unwrap();
    let abnormal = store
        .begin_refund(&refund_of(&o, 2, 50, None))
        .await
        .unwrap();
    assert_eq!(tally_of(&store, &o).await, tally(0, 80, 2));
    assert_eq!(
        store.processing_refunds(&o.order_no).await.unwrap(),
        vec![closed.clone(), abnormal.clone()]
    );

    let c = store
        .settle_refund(&closed.refund_no, &settled(RefundOutcome::Closed, 1))
        .await
        .unwrap();
    assert_eq!(c.refund.status, RefundStatus::Closed);
    assert_eq!(c.refund.ended_at, Some(Timestamp::from_unix(START + 2001)));
    assert_eq!(c.order.refunds, tally(0, 50, 2));
    let ab = store
        .settle_refund(&abnormal.refund_no, &settled(RefundOutcome::Abnormal, 2))
        .await
        .unwrap();
    assert_eq!(ab.refund.status, RefundStatus::Abnormal);
    assert_eq!(ab.order.refunds, tally(0, 50, 2));
    assert_eq!(ab.order.status, OrderStatus::Paid);
    assert!(store
        .processing_refunds(&o.order_no)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(tally_of(&store, &o).await, tally(0, 50, 2));

    // The closed amount may be refunded again, the abnormal one not.
    assert_exceeds(store.begin_refund(&refund_of(&o, 3, 51, None)).await, 50);
    store
        .begin_refund(&refund_of(&o, 3, 50, None))
        .await
        .unwrap();
    // Paid out after all, the abnormal refund's reservation becomes refunded.
    let paid_out = store
        .settle_refund(&abnormal.refund_no, &settled(RefundOutcome::Succeeded, 3))
        .await
        .unwrap();
    assert_eq!(paid_out.refund.status, RefundStatus::Succeeded);
    assert_eq!(paid_out.order.refunds, tally(50, 50, 3));
    assert!(!paid_out.over_refunded);
    assert_eq!(tally_of(&store, &o).await, tally(50, 50, 3));
    // Nothing is refundable then.
    assert_exceeds(store.begin_refund(&refund_of(&o, 4, 1, None)).await, 0);
}

async fn refunds_made_outside_ferrypay_are_recorded_once<S: Store>(store: S) {
    let a = merchant("a");
    let o = paid_order(&store, &a, 1, 100, Some("shop-ext")).await;
    let ext = external_refund(
        &o,
        "1217752501201407033233368018",
        40,
        RefundStatus::Succeeded,
    );
    match store.record_external_refund(&ext).await.unwrap() {
        ExternalRefundRecorded::New {
            refund,
            order,
            anomalies,
        } => {
            assert_eq!(*refund, ext);
            assert_eq!(order.refunds, tally(40, 0, 1));
            assert_eq!(order.status, OrderStatus::Paid);
            assert!(anomalies.is_empty(), "{anomalies:?}");
        }
        other => panic!("{other:?}"),
    }
    // Reported again: nothing changes.
    match store.record_external_refund(&ext).await.unwrap() {
        ExternalRefundRecorded::Existing(existing) => assert_eq!(*existing, ext),
        other => panic!("{other:?}"),
    }
    assert_eq!(tally_of(&store, &o).await, tally(40, 0, 1));
    assert_eq!(
        store.get_refund(&ext.refund_no).await.unwrap(),
        Some(ext.clone())
    );

    // Still processing: reserved.
    let pending = external_refund(&o, "ext_2", 20, RefundStatus::Processing);
    store.record_external_refund(&pending).await.unwrap();
    assert_eq!(tally_of(&store, &o).await, tally(40, 20, 2));
    // More than ferrypay thought was left: recorded anyway, and said so.
    let more = external_refund(&o, "ext-3|x", 60, RefundStatus::Succeeded);
    match store.record_external_refund(&more).await.unwrap() {
        ExternalRefundRecorded::New {
            order, anomalies, ..
        } => {
            assert_eq!(anomalies, vec![RefundAnomaly::ExceedsRefundable]);
            assert_eq!(order.status, OrderStatus::Refunded);
            assert_eq!(order.refunds, tally(100, 20, 3));
        }
        other => panic!("{other:?}"),
    }
    let refunded = list(
        &store,
        &a,
        Some(OrderStatus::Refunded),
        PageStart::Page(1),
        20,
    )
    .await;
    assert_eq!(refunded.total, 1);
    assert_eq!(tally_of(&store, &o).await, tally(100, 20, 3));

    // One of ferrypay's own refunds, reported as if made outside: the one recorded stays.
    let o2 = paid_order(&store, &a, 2, 100, None).await;
    let own = store
        .begin_refund(&refund_of(&o2, 1, 10, None))
        .await
        .unwrap();
    let reported = Refund {
        status: RefundStatus::Succeeded,
        source: RefundSource::Wechat,
        ..own.clone()
    };
    match store.record_external_refund(&reported).await.unwrap() {
        ExternalRefundRecorded::Existing(existing) => assert_eq!(*existing, own),
        other => panic!("{other:?}"),
    }
    assert_eq!(tally_of(&store, &o2).await, tally(0, 10, 1));

    // An order ferrypay does not have.
    let unknown = order(&a, 3, None);
    assert!(matches!(
        store
            .record_external_refund(&external_refund(
                &unknown,
                "ext-4",
                1,
                RefundStatus::Succeeded
            ))
            .await,
        Err(RecordRefundError::OrderNotFound)
    ));
}

async fn refund_webhooks_are_recorded_on_final_refunds<S: Store>(store: S) {
    let a = merchant("a");
    let o = paid_order(&store, &a, 1, 100, None).await;
    let r = store
        .begin_refund(&refund_of(&o, 1, 10, None))
        .await
        .unwrap();
    let at = |s: i64| Timestamp::from_unix(START + 3000 + s);
    let queued = RefundWebhookUpdate::Queued {
        generation: 0,
        at: at(1),
    };
    match store.update_refund_webhook(&r.refund_no, &queued).await {
        Err(UpdateRefundError::Refused { current, reason }) => {
            assert_eq!(*current, r);
            assert_eq!(reason, RefundRefused::NotFinal);
        }
        other => panic!("{other:?}"),
    }
    store
        .settle_refund(&r.refund_no, &settled(RefundOutcome::Succeeded, 1))
        .await
        .unwrap();
    let q = store
        .update_refund_webhook(&r.refund_no, &queued)
        .await
        .unwrap();
    assert_eq!(q.webhook.queued_at, Some(at(1)));
    let failing = store
        .update_refund_webhook(
            &r.refund_no,
            &RefundWebhookUpdate::Attempt {
                generation: 0,
                attempt: 1,
                at: at(2),
                result: AttemptResult::Retrying { next_at: at(30) },
            },
        )
        .await
        .unwrap();
    assert_eq!(failing.webhook.status, WebhookStatus::Failing);
    assert_eq!(failing.webhook.next_attempt_at, Some(at(30)));
    let delivered = store
        .update_refund_webhook(
            &r.refund_no,
            &RefundWebhookUpdate::Attempt {
                generation: 0,
                attempt: 2,
                at: at(30),
                result: AttemptResult::Delivered,
            },
        )
        .await
        .unwrap();
    assert_eq!(delivered.webhook.status, WebhookStatus::Delivered);
    assert_eq!(
        store.get_refund(&r.refund_no).await.unwrap(),
        Some(delivered.clone())
    );
    match store
        .update_refund_webhook(
            &r.refund_no,
            &RefundWebhookUpdate::Queued {
                generation: 1,
                at: at(40),
            },
        )
        .await
    {
        Err(UpdateRefundError::Refused { reason, .. }) => assert_eq!(
            reason,
            RefundRefused::WebhookSuperseded {
                attempted: 1,
                current: 0
            }
        ),
        other => panic!("{other:?}"),
    }
    let unknown = RefundNo::generate(Timestamp::from_unix(START)).unwrap();
    assert!(matches!(
        store.update_refund_webhook(&unknown, &queued).await,
        Err(UpdateRefundError::NotFound)
    ));
}

async fn an_abnormal_refund_that_succeeds_starts_a_new_webhook_generation<S: Store>(store: S) {
    let a = merchant("a");
    let o = paid_order(&store, &a, 1, 100, None).await;
    let r = store
        .begin_refund(&refund_of(&o, 1, 10, None))
        .await
        .unwrap();
    let at = |s: i64| Timestamp::from_unix(START + 3000 + s);
    let queued = |generation| RefundWebhookUpdate::Queued {
        generation,
        at: at(1),
    };
    let abnormal = store
        .settle_refund(&r.refund_no, &settled(RefundOutcome::Abnormal, 1))
        .await
        .unwrap()
        .refund;
    assert_eq!(abnormal.webhook, WebhookState::default());
    store
        .update_refund_webhook(&r.refund_no, &queued(0))
        .await
        .unwrap();
    let paid_out = store
        .settle_refund(&r.refund_no, &settled(RefundOutcome::Succeeded, 2))
        .await
        .unwrap()
        .refund;
    assert_eq!(paid_out.status, RefundStatus::Succeeded);
    assert_eq!(paid_out.webhook.generation, 1);
    assert_eq!(paid_out.webhook.queued_at, None);
    assert_eq!(
        store.get_refund(&r.refund_no).await.unwrap(),
        Some(paid_out.clone())
    );
    // The abnormal event's generation is over; the success's may be queued.
    match store.update_refund_webhook(&r.refund_no, &queued(0)).await {
        Err(UpdateRefundError::Refused { reason, .. }) => assert_eq!(
            reason,
            RefundRefused::WebhookSuperseded {
                attempted: 0,
                current: 1
            }
        ),
        other => panic!("{other:?}"),
    }
    let q = store
        .update_refund_webhook(&r.refund_no, &queued(1))
        .await
        .unwrap();
    assert_eq!(q.webhook.generation, 1);
    assert_eq!(q.webhook.queued_at, Some(at(1)));
}

/// An attempt of `refund`'s webhook.
fn refund_attempt_record(refund: &Refund, generation: u32, attempt: u32) -> WebhookAttempt {
    let order = Order {
        order_no: refund.order_no.clone(),
        ..order(&merchant("a"), 1, None)
    };
    WebhookAttempt {
        event_id: format!("evt_{}_succeeded", refund.refund_no),
        ..attempt_record(&order, generation, attempt, attempt.is_multiple_of(2))
    }
}

async fn refund_webhook_attempts_are_kept_apart_from_the_orders<S: Store>(store: S) {
    let a = merchant("a");
    let o = paid_order(&store, &a, 1, 100, None).await;
    let first = store
        .begin_refund(&refund_of(&o, 1, 10, None))
        .await
        .unwrap();
    let second = store
        .begin_refund(&refund_of(&o, 2, 10, None))
        .await
        .unwrap();
    let refund_attempts = |r: &Refund, limit| {
        let (order_no, refund_no) = (r.order_no.clone(), r.refund_no.clone());
        let store = &store;
        async move {
            store
                .refund_webhook_attempts(&order_no, &refund_no, limit)
                .await
                .unwrap()
        }
    };
    assert!(refund_attempts(&first, 20).await.is_empty());
    store
        .record_webhook_attempt(&attempt_record(&o, 0, 1, true))
        .await
        .unwrap();
    // Eleven attempts of the first refund (the zero-padding matters), one of generation 1.
    for n in 1..=11 {
        store
            .record_refund_webhook_attempt(&first.refund_no, &refund_attempt_record(&first, 0, n))
            .await
            .unwrap();
    }
    store
        .record_refund_webhook_attempt(&first.refund_no, &refund_attempt_record(&first, 1, 1))
        .await
        .unwrap();
    store
        .record_refund_webhook_attempt(&second.refund_no, &refund_attempt_record(&second, 0, 1))
        .await
        .unwrap();
    // The same attempt recorded again replaces the earlier record (a redelivered job).
    let mut again = refund_attempt_record(&first, 0, 11);
    again.error = Some("connection refused".into());
    store
        .record_refund_webhook_attempt(&first.refund_no, &again)
        .await
        .unwrap();

    // The order's own log is as it was: its one attempt.
    assert_eq!(
        store.webhook_attempts(&o.order_no, 100).await.unwrap(),
        vec![attempt_record(&o, 0, 1, true)]
    );
    let all = refund_attempts(&first, 100).await;
    let keys: Vec<(u32, u32)> = all.iter().map(|a| (a.generation, a.attempt)).collect();
    let mut expected = vec![(1, 1)];
    expected.extend((1..=11).rev().map(|n| (0, n)));
    assert_eq!(keys, expected);
    assert_eq!(all[0], refund_attempt_record(&first, 1, 1));
    assert_eq!(all[1], again);
    assert_eq!(refund_attempts(&first, 3).await, all[..3].to_vec());
    assert_eq!(
        refund_attempts(&second, 100).await,
        vec![refund_attempt_record(&second, 0, 1)]
    );
    assert!(refund_attempts(&first, 0).await.is_empty());
}

#[tokio::test]
async fn dynamodb_orders_stored_before_refunds_read_as_nothing_refunded() {
    crate::harness::within(TEST_TIMEOUT, async {
        let store = dynamo_store().await;
        let client = raw_client().await;
        let a = merchant("old_refunds");
        let o = paid_order(&store, &a, 1, 100, Some("old-r")).await;
        let keys = [
            (format!("ORDER#{}", o.order_no), "ORDER"),
            (format!("OTN#{}#old-r", a.id), "OTN"),
        ];
        for (pk, sk) in &keys {
            let item = raw_item(&client, &store, pk.clone(), sk).await;
            assert_eq!(
                item.get("refund_count"),
                Some(&AttributeValue::N("0".into())),
                "{pk}"
            );
            // As written before refunds existed.
            client
                .update_item()
                .table_name(store.table_name())
                .key("pk", AttributeValue::S(pk.clone()))
                .key("sk", AttributeValue::S(sk.to_string()))
                .update_expression(
                    "REMOVE refunded_amount, reserved_amount, refund_count, committed_amount",
                )
                .send()
                .await
                .unwrap();
        }
        assert_eq!(tally_of(&store, &o).await, RefundTally::default());
        // Refunds begin on it as on any paid order, and the attributes appear.
        assert_exceeds(store.begin_refund(&refund_of(&o, 1, 101, None)).await, 100);
        let r = store
            .begin_refund(&refund_of(&o, 2, 60, None))
            .await
            .unwrap();
        assert_eq!(tally_of(&store, &o).await, tally(0, 60, 1));
        let item = raw_item(&client, &store, keys[0].0.clone(), "ORDER").await;
        assert_eq!(
            item.get("committed_amount"),
            Some(&AttributeValue::N("60".into()))
        );
        assert_exceeds(store.begin_refund(&refund_of(&o, 3, 41, None)).await, 40);
        let done = store
            .settle_refund(&r.refund_no, &settled(RefundOutcome::Succeeded, 1))
            .await
            .unwrap();
        assert_eq!(done.order.refunds, tally(60, 0, 1));
        // The refund's items: in the order's partition, with its number's pointer.
        let refund_item = raw_item(
            &client,
            &store,
            keys[0].0.clone(),
            &format!("REFUND#{}", r.refund_no),
        )
        .await;
        assert_eq!(
            refund_item.get("status"),
            Some(&AttributeValue::S("succeeded".into()))
        );
        raw_item(
            &client,
            &store,
            format!("REFUNDNO#{}", r.refund_no),
            "REFUNDNO",
        )
        .await;
    })
    .await;
}
