//! Orders and the only state changes they allow.

use serde::{Deserialize, Serialize};

use super::{
    AttemptResult, Fen, MerchantId, OrderNo, OutTradeNo, RefundTally, Timestamp, WebhookState,
};

/// Where an order is in its life. `pending` may change to `paid` or `closed`; `paid` becomes
/// `refunded` once refunds gave the whole amount back (see [`Order::with_refunds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Paid,
    Closed,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 4] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Closed,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Closed => "closed",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// How the payer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PayType {
    /// A QR code the payer scans in WeChat.
    #[default]
    Native,
    /// Inside WeChat, through `WeixinJSBridge` (needs the payer's openid).
    Jsapi,
    /// A mobile browser outside WeChat, redirected into WeChat.
    H5,
}

impl PayType {
    pub fn as_str(self) -> &'static str {
        match self {
            PayType::Native => "native",
            PayType::Jsapi => "jsapi",
            PayType::H5 => "h5",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [PayType::Native, PayType::Jsapi, PayType::H5]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// Where an order came from. A merchant who takes payment links reads it in the webhook: an
/// unsigned link's amount (and every other parameter) is the payer's to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OrderSource {
    /// The merchant's server, with its secret key. Orders stored before sources were
    /// recorded read back as this (the few link orders among them included: nothing tells).
    #[default]
    Api,
    /// An unsigned payment link: anyone could have written its parameters.
    Link,
    /// A payment link signed with the merchant's link secret.
    SignedLink,
}

impl OrderSource {
    pub const ALL: [OrderSource; 3] =
        [OrderSource::Api, OrderSource::Link, OrderSource::SignedLink];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderSource::Api => "api",
            OrderSource::Link => "link",
            OrderSource::SignedLink => "signed_link",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|source| source.as_str() == s)
    }
}

/// What the payment channel handed back for the payer to pay with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PayCredential {
    Native { code_url: String },
    Jsapi { prepay_id: String },
    H5 { h5_url: String },
}

/// One order, as ferrypay keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_no: OrderNo,
    pub merchant_id: MerchantId,
    pub out_trade_no: Option<OutTradeNo>,
    pub amount: Fen,
    pub description: String,
    pub pay_type: PayType,
    /// Absent from orders stored before it was recorded: those read back as `api`.
    #[serde(default)]
    pub source: OrderSource,
    pub openid: Option<String>,
    pub client_ip: Option<String>,
    pub attach: Option<String>,
    pub notify_url: Option<String>,
    pub status: OrderStatus,
    /// Set once the channel accepted the order; absent while a prepay is outstanding or failed.
    pub credential: Option<PayCredential>,
    pub transaction_id: Option<String>,
    pub paid_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    /// The delivery of the merchant webhook (once paid).
    pub webhook: WebhookState,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// SHA-256 over the create parameters, so a repeated `out_trade_no` can be told apart
    /// from a retry of the same request.
    pub request_fingerprint: String,
    /// What its refunds gave back or hold. Absent from orders stored before refunds existed:
    /// those read back as nothing refunded.
    #[serde(default)]
    pub refunds: RefundTally,
}

/// A state change, applied only if the order is in the state it expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderUpdate {
    /// The channel accepted the order. Only on a pending order.
    AttachCredential(PayCredential),
    /// The channel says the payer paid. Only `pending -> paid`, and only for the exact amount.
    MarkPaid {
        transaction_id: String,
        paid_at: Timestamp,
        amount: Fen,
    },
    /// The order can no longer be paid. Only `pending -> closed`.
    MarkClosed { closed_at: Timestamp },
    /// The first job of webhook generation `generation` is on the queue. Only on a paid order
    /// and for the current generation; the first time is kept.
    RecordWebhookQueued { generation: u32, at: Timestamp },
    /// A delivery attempt of webhook generation `generation` ended. Only on a paid order and
    /// for the current generation.
    RecordWebhookAttempt {
        generation: u32,
        /// 1-based, within the generation.
        attempt: u32,
        at: Timestamp,
        result: AttemptResult,
    },
    /// A resend: the webhook starts over as a new generation. Only on a paid order.
    RestartWebhook,
}

/// Why an update was refused: the order was not in the state the update needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateRefused {
    #[error("order is {0:?}, not pending")]
    NotPending(OrderStatus),
    #[error("amount {reported} differs from the order's {expected}")]
    AmountMismatch { expected: Fen, reported: Fen },
    #[error("order is {0:?}, not paid")]
    NotPaid(OrderStatus),
    /// The attempt belongs to a webhook generation a resend has replaced.
    #[error("webhook generation {attempted} superseded by {current}")]
    WebhookSuperseded { attempted: u32, current: u32 },
}

impl Order {
    /// The single definition of which state changes are legal. Storage backends enforce the
    /// same conditions atomically (the in-memory store calls this under its lock; DynamoDB
    /// expresses it as a condition expression).
    pub fn apply(&self, update: &OrderUpdate) -> Result<Order, UpdateRefused> {
        let mut next = self.clone();
        match update {
            OrderUpdate::AttachCredential(credential) => {
                self.require(OrderStatus::Pending)?;
                next.credential = Some(credential.clone());
            }
            OrderUpdate::MarkPaid {
                transaction_id,
                paid_at,
                amount,
            } => {
                self.require(OrderStatus::Pending)?;
                if *amount != self.amount {
                    return Err(UpdateRefused::AmountMismatch {
                        expected: self.amount,
                        reported: *amount,
                    });
                }
                next.status = OrderStatus::Paid;
                next.transaction_id = Some(transaction_id.clone());
                next.paid_at = Some(*paid_at);
            }
            OrderUpdate::MarkClosed { closed_at } => {
                self.require(OrderStatus::Pending)?;
                next.status = OrderStatus::Closed;
                next.closed_at = Some(*closed_at);
            }
            OrderUpdate::RecordWebhookQueued { generation, at } => {
                self.require_webhook()?;
                self.require_webhook_generation(*generation)?;
                next.webhook.queued_at = Some(self.webhook.queued_at.unwrap_or(*at));
            }
            OrderUpdate::RecordWebhookAttempt {
                generation,
                attempt,
                at,
                result,
            } => {
                self.require_webhook()?;
                self.require_webhook_generation(*generation)?;
                next.webhook = self.webhook.after_attempt(*attempt, *at, *result);
            }
            OrderUpdate::RestartWebhook => {
                self.require_webhook()?;
                next.webhook = self.webhook.restarted();
            }
        }
        Ok(next)
    }

    fn require_webhook_generation(&self, generation: u32) -> Result<(), UpdateRefused> {
        if generation == self.webhook.generation {
            Ok(())
        } else {
            Err(UpdateRefused::WebhookSuperseded {
                attempted: generation,
                current: self.webhook.generation,
            })
        }
    }

    /// The `order.paid` webhook belongs to a paid order, and stays its after a full refund.
    fn require_webhook(&self) -> Result<(), UpdateRefused> {
        if self.has_webhook() {
            Ok(())
        } else {
            Err(UpdateRefused::NotPaid(self.status))
        }
    }

    /// The order with its refund tally replaced: a paid order whose refunds gave the whole
    /// amount back becomes `refunded`; any other status stays (a partial refund keeps `paid`;
    /// an order that is not paid here keeps its status whatever WeChat Pay reports).
    pub fn with_refunds(&self, refunds: RefundTally) -> Order {
        let mut next = self.clone();
        next.refunds = refunds;
        if self.status == OrderStatus::Paid && refunds.refunded >= self.amount {
            next.status = OrderStatus::Refunded;
        }
        next
    }

    fn require(&self, status: OrderStatus) -> Result<(), UpdateRefused> {
        match (status, self.status) {
            (wanted, current) if wanted == current => Ok(()),
            (OrderStatus::Paid, current) => Err(UpdateRefused::NotPaid(current)),
            (_, current) => Err(UpdateRefused::NotPending(current)),
        }
    }

    /// Whether the order has a merchant webhook: once paid (and still after a refund).
    pub fn has_webhook(&self) -> bool {
        match self.status {
            OrderStatus::Paid | OrderStatus::Refunded => true,
            OrderStatus::Pending | OrderStatus::Closed => false,
        }
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending_order() -> Order {
        crate::testing::pending_order(
            OrderNo::parse("FP20251221103000ABCDEF").unwrap(),
            MerchantId::new("mch_test"),
            100,
            Timestamp::from_unix(crate::testing::START),
        )
    }

    fn paid() -> OrderUpdate {
        OrderUpdate::MarkPaid {
            transaction_id: "4200000001".into(),
            paid_at: Timestamp::from_unix(1_766_284_300),
            amount: Fen::new(100),
        }
    }

    #[test]
    fn pending_becomes_paid_once() {
        let order = pending_order().apply(&paid()).unwrap();
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(order.transaction_id.as_deref(), Some("4200000001"));
        assert_eq!(
            order.apply(&paid()),
            Err(UpdateRefused::NotPending(OrderStatus::Paid))
        );
    }

    #[test]
    fn paid_needs_the_exact_amount() {
        let wrong = OrderUpdate::MarkPaid {
            transaction_id: "4200000001".into(),
            paid_at: Timestamp::from_unix(1),
            amount: Fen::new(1),
        };
        assert_eq!(
            pending_order().apply(&wrong),
            Err(UpdateRefused::AmountMismatch {
                expected: Fen::new(100),
                reported: Fen::new(1)
            })
        );
    }

    #[test]
    fn closed_orders_cannot_be_paid_or_credentialed() {
        let closed = pending_order()
            .apply(&OrderUpdate::MarkClosed {
                closed_at: Timestamp::from_unix(5),
            })
            .unwrap();
        assert_eq!(closed.status, OrderStatus::Closed);
        assert!(closed.apply(&paid()).is_err());
        assert!(closed
            .apply(&OrderUpdate::AttachCredential(PayCredential::Native {
                code_url: "weixin://x".into()
            }))
            .is_err());
    }

    #[test]
    fn webhook_queued_only_on_paid_orders_and_the_first_time_stays() {
        let queued = |at| OrderUpdate::RecordWebhookQueued {
            generation: 0,
            at: Timestamp::from_unix(at),
        };
        assert_eq!(
            pending_order().apply(&queued(1)),
            Err(UpdateRefused::NotPaid(OrderStatus::Pending))
        );
        let paid = pending_order().apply(&paid()).unwrap();
        let once = paid.apply(&queued(10)).unwrap();
        let twice = once.apply(&queued(20)).unwrap();
        assert_eq!(twice.webhook.queued_at, Some(Timestamp::from_unix(10)));
        assert_eq!(twice.status, OrderStatus::Paid);
    }

    #[test]
    fn webhook_attempts_need_a_paid_order_and_the_current_generation() {
        let attempt = |generation| OrderUpdate::RecordWebhookAttempt {
            generation,
            attempt: 1,
            at: Timestamp::from_unix(30),
            result: AttemptResult::Delivered,
        };
        assert_eq!(
            pending_order().apply(&attempt(0)),
            Err(UpdateRefused::NotPaid(OrderStatus::Pending))
        );
        let paid = pending_order().apply(&paid()).unwrap();
        let delivered = paid.apply(&attempt(0)).unwrap();
        assert_eq!(
            delivered.webhook.status,
            crate::model::WebhookStatus::Delivered
        );

        let resent = delivered.apply(&OrderUpdate::RestartWebhook).unwrap();
        assert_eq!(resent.webhook.generation, 1);
        assert_eq!(resent.webhook.status, crate::model::WebhookStatus::Pending);
        assert_eq!(
            resent.apply(&attempt(0)),
            Err(UpdateRefused::WebhookSuperseded {
                attempted: 0,
                current: 1
            })
        );
        assert_eq!(
            pending_order().apply(&OrderUpdate::RestartWebhook),
            Err(UpdateRefused::NotPaid(OrderStatus::Pending))
        );
    }

    #[test]
    fn a_fully_refunded_order_becomes_refunded_and_keeps_its_webhook() {
        let paid = pending_order().apply(&paid()).unwrap();
        let partial = paid.with_refunds(RefundTally {
            refunded: Fen::new(99),
            reserved: Fen::new(1),
            count: 2,
        });
        assert_eq!(partial.status, OrderStatus::Paid);
        let full = partial.with_refunds(RefundTally {
            refunded: Fen::new(100),
            reserved: Fen::new(0),
            count: 2,
        });
        assert_eq!(full.status, OrderStatus::Refunded);
        // Its order.paid webhook is still delivered and may be resent.
        let queued = full
            .apply(&OrderUpdate::RecordWebhookQueued {
                generation: 0,
                at: Timestamp::from_unix(40),
            })
            .unwrap();
        assert!(queued.apply(&OrderUpdate::RestartWebhook).is_ok());
        // A pending order keeps its status whatever is recorded on it.
        let odd = pending_order().with_refunds(full.refunds);
        assert_eq!(odd.status, OrderStatus::Pending);
    }

    #[test]
    fn orders_serialized_before_refunds_read_as_nothing_refunded() {
        let order = pending_order();
        let mut json = serde_json::to_value(&order).unwrap();
        json.as_object_mut().unwrap().remove("refunds");
        let read: Order = serde_json::from_value(json).unwrap();
        assert_eq!(read.refunds, RefundTally::default());
        assert_eq!(read, order);
    }

    #[test]
    fn status_and_pay_type_strings_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderStatus::parse("PAID"), None);
        assert_eq!(PayType::parse("jsapi"), Some(PayType::Jsapi));
        assert_eq!(PayType::parse("app"), None);
        for s in OrderSource::ALL {
            assert_eq!(OrderSource::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(OrderSource::parse("signed-link"), None);
        assert_eq!(OrderSource::default(), OrderSource::Api);
    }
}
