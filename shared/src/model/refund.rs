//! Refunds: money going back to the payer, whole or in part, and what an order has given back.
//!
//! A refund starts `processing` (its amount reserved on the order) and ends `succeeded` (the
//! reservation becomes refunded), `closed` or `abnormal` (the reservation is released). Only
//! `processing` may change, and only once, except that an abnormal refund WeChat Pay pays out
//! after all becomes succeeded (refunded again).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    check_characters,
    ids::{check_merchant_number, generate_timed_number, is_timed_number},
    AttemptResult, Fen, FieldError, MerchantId, OrderNo, OutTradeNo, RandomError, Timestamp,
    WebhookState,
};

/// At most this many refunds per order (WeChat Pay's limit on partial refunds).
pub const MAX_REFUNDS_PER_ORDER: u32 = 50;
/// A payment may be refunded until this many days after it was paid (WeChat Pay's limit).
pub const REFUND_WINDOW_DAYS: i64 = 365;
/// The longest `reason`, in bytes of UTF-8 (WeChat Pay counts bytes and shows it to the payer).
pub const MAX_REASON_BYTES: usize = 80;

/// ferrypay's refund number: `RF` + Beijing `yyyymmddHHMMSS` + 6 random uppercase letters or
/// digits; 22 characters, so a valid WeChat Pay `out_refund_no` (at most 64 of
/// `[0-9A-Za-z_-|*@]`). It is the number WeChat Pay knows the refund by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RefundNo(String);

impl RefundNo {
    pub const LEN: usize = 22;

    pub fn generate(now: Timestamp) -> Result<Self, RandomError> {
        generate_timed_number("RF", now).map(RefundNo)
    }

    /// Accepts only strings of the exact shape `generate` produces.
    pub fn parse(s: &str) -> Option<Self> {
        is_timed_number(s, "RF").then(|| RefundNo(s.to_string()))
    }

    /// The number WeChat Pay knows a refund by when it was made outside ferrypay (in the
    /// merchant platform, source [`RefundSource::Wechat`]): its `out_refund_no` as WeChat Pay
    /// reported it, any 1..=64 of `[0-9A-Za-z_-|*@]`, not necessarily of [`RefundNo::parse`]'s
    /// shape. A refund has one number in ferrypay and at WeChat Pay alike, so a notification's
    /// `out_refund_no` finds ferrypay's refunds and these the same way.
    pub fn from_wechat(s: &str) -> Result<Self, FieldError> {
        OutRefundNo::parse(s).map(|no| RefundNo(no.0))
    }

    /// Whether the number has the shape ferrypay generates (else it came from WeChat Pay).
    pub fn is_ferrypays(&self) -> bool {
        Self::parse(&self.0).is_some()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefundNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A merchant's own refund number, unique per merchant: 1..=64 of `[0-9A-Za-z_-|*@]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OutRefundNo(String);

impl OutRefundNo {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        check_merchant_number(s, Self::MAX_LEN, b"_-|*@", "[0-9A-Za-z_-|*@]")?;
        Ok(OutRefundNo(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OutRefundNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why the money goes back, as the payer will read it: at most [`MAX_REASON_BYTES`] bytes of
/// UTF-8, no control or format character, not blank.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RefundReason(String);

impl RefundReason {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.trim().is_empty() {
            return Err(FieldError::Blank);
        }
        if s.len() > MAX_REASON_BYTES {
            return Err(FieldError::TooLongBytes {
                max: MAX_REASON_BYTES,
            });
        }
        check_characters(s)?;
        Ok(RefundReason(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a refund is in its life. `processing` may change to one of the three others; an
/// `abnormal` refund may still become `succeeded` (WeChat Pay: "ABNORMAL不是最终态", the money
/// waits in its refund account until an operator sends it on, see [`Refund::settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefundStatus {
    /// Asked for (or being asked for) at WeChat Pay; its amount is reserved on the order.
    Processing,
    /// The money is back with the payer (or on its way: WeChat Pay says so).
    Succeeded,
    /// WeChat Pay closed it: no money moved.
    Closed,
    /// WeChat Pay could not pay it back (the payer's card or account): no money moved, an
    /// operator must act in the merchant platform.
    Abnormal,
}

impl RefundStatus {
    pub const ALL: [RefundStatus; 4] = [
        RefundStatus::Processing,
        RefundStatus::Succeeded,
        RefundStatus::Closed,
        RefundStatus::Abnormal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Processing => "processing",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Closed => "closed",
            RefundStatus::Abnormal => "abnormal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether the refund's processing ended (its webhook may be sent). Only `abnormal` may
    /// still change afterwards, to `succeeded`.
    pub fn is_final(self) -> bool {
        self != RefundStatus::Processing
    }
}

/// Who asked for a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefundSource {
    /// The merchant's server, with its secret key.
    Api,
    /// The platform's operator (`ferrypay refund create`), for a merchant who asked.
    Operator,
    /// Made in the WeChat Pay merchant platform, outside ferrypay; found in a notification or
    /// a query, and recorded as WeChat Pay reported it.
    Wechat,
}

impl RefundSource {
    pub const ALL: [RefundSource; 3] = [
        RefundSource::Api,
        RefundSource::Operator,
        RefundSource::Wechat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundSource::Api => "api",
            RefundSource::Operator => "operator",
            RefundSource::Wechat => "wechat",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|source| source.as_str() == s)
    }
}

/// One refund of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub refund_no: RefundNo,
    pub merchant_id: MerchantId,
    pub order_no: OrderNo,
    pub out_trade_no: Option<OutTradeNo>,
    pub out_refund_no: Option<OutRefundNo>,
    pub amount: Fen,
    pub status: RefundStatus,
    pub reason: Option<RefundReason>,
    pub source: RefundSource,
    /// WeChat Pay's `refund_id`, once it has answered.
    pub channel_refund_id: Option<String>,
    pub created_at: Timestamp,
    pub succeeded_at: Option<Timestamp>,
    /// When it became closed or abnormal.
    pub ended_at: Option<Timestamp>,
    /// SHA-256 over the request's parameters, so a repeated `out_refund_no` can be told apart
    /// from a retry of the same request.
    pub request_fingerprint: String,
    /// The delivery of the webhook of its final state (when the merchant subscribed to it):
    /// generation 0 for the first final state, 1 for `succeeded` after `abnormal`.
    pub webhook: WebhookState,
}

/// What an order has given back: the sums of its succeeded refunds and of its processing ones
/// (reserved), and how many refunds it has had. `refunded + reserved <= amount` for every
/// refund ferrypay asks for; only a refund WeChat Pay reports as made (outside ferrypay, or an
/// abnormal one paid out after its reservation was released) may take it past the amount,
/// and is then recorded anyway, as an anomaly (money that moved is never dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundTally {
    pub refunded: Fen,
    pub reserved: Fen,
    pub count: u32,
}

impl Default for RefundTally {
    /// An order nothing has been refunded of.
    fn default() -> Self {
        RefundTally {
            refunded: Fen::new(0),
            reserved: Fen::new(0),
            count: 0,
        }
    }
}

impl RefundTally {
    /// What may still be refunded of an order of `amount` (negative after an anomaly).
    pub fn refundable(&self, amount: Fen) -> Fen {
        Fen::new(amount.get() - self.refunded.get() - self.reserved.get())
    }

    /// `refunded + reserved`: what is spoken for.
    pub fn committed(&self) -> Fen {
        Fen::new(self.refunded.get() + self.reserved.get())
    }

    /// The tally after a new refund of `amount` on an order of `order_amount` is reserved:
    /// only if it fits (`refunded + reserved + amount <= order_amount`, `amount > 0`) and the
    /// order has had fewer than [`MAX_REFUNDS_PER_ORDER`] refunds.
    pub fn reserve(self, amount: Fen, order_amount: Fen) -> Result<Self, ReserveRefused> {
        if amount.get() <= 0 {
            return Err(ReserveRefused::InvalidAmount);
        }
        if self.count >= MAX_REFUNDS_PER_ORDER {
            return Err(ReserveRefused::TooManyRefunds);
        }
        if amount > self.refundable(order_amount) {
            // Never below 0 (an order WeChat Pay refunded past ferrypay's tally).
            return Err(ReserveRefused::ExceedsRefundable {
                refundable: Fen::new(self.refundable(order_amount).get().max(0)),
            });
        }
        Ok(RefundTally {
            reserved: Fen::new(self.reserved.get() + amount.get()),
            count: self.count + 1,
            ..self
        })
    }

    /// The tally after a refund of `amount` moved from `from` to `to` (see [`Refund::settle`]):
    /// succeeded takes the reservation as refunded; closed releases it. Abnormal keeps it: the
    /// money has left the merchant's balance and waits at WeChat Pay for an operator (it may
    /// still succeed), so it must not be refundable a second time; when it succeeds after all,
    /// the reservation becomes refunded.
    pub fn settle(self, amount: Fen, from: RefundStatus, to: RefundStatus) -> Self {
        let a = amount.get();
        let (refunded, reserved) = match (from, to) {
            (RefundStatus::Processing | RefundStatus::Abnormal, RefundStatus::Succeeded) => (a, -a),
            (RefundStatus::Processing, RefundStatus::Closed) => (0, -a),
            _ => (0, 0),
        };
        RefundTally {
            refunded: Fen::new(self.refunded.get() + refunded),
            reserved: Fen::new(self.reserved.get() + reserved),
            count: self.count,
        }
    }

    /// The tally after a refund WeChat Pay reports (made outside ferrypay) is recorded,
    /// whatever it does to the remainder: succeeded counts as refunded, processing and
    /// abnormal as reserved (see [`RefundTally::settle`]), closed only in the count.
    pub fn record(self, amount: Fen, status: RefundStatus) -> Self {
        let a = amount.get();
        let (refunded, reserved) = match status {
            RefundStatus::Succeeded => (a, 0),
            RefundStatus::Processing | RefundStatus::Abnormal => (0, a),
            RefundStatus::Closed => (0, 0),
        };
        RefundTally {
            refunded: Fen::new(self.refunded.get() + refunded),
            reserved: Fen::new(self.reserved.get() + reserved),
            count: self.count.saturating_add(1),
        }
    }
}

/// Why a new refund cannot be reserved on an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReserveRefused {
    #[error("refund amount must be positive")]
    InvalidAmount,
    #[error("the order has had {MAX_REFUNDS_PER_ORDER} refunds")]
    TooManyRefunds,
    #[error("exceeds the refundable {refundable}")]
    ExceedsRefundable { refundable: Fen },
}

/// How a processing refund ended, as WeChat Pay reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundOutcome {
    Succeeded,
    Closed,
    Abnormal,
}

impl RefundOutcome {
    pub fn status(self) -> RefundStatus {
        match self {
            RefundOutcome::Succeeded => RefundStatus::Succeeded,
            RefundOutcome::Closed => RefundStatus::Closed,
            RefundOutcome::Abnormal => RefundStatus::Abnormal,
        }
    }
}

/// WeChat Pay's word on a refund: how it ended, when, and its `refund_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundSettlement {
    pub outcome: RefundOutcome,
    /// WeChat Pay's `refund_id`; `None` keeps the one known.
    pub channel_refund_id: Option<String>,
    /// `success_time` for a success; when it was learnt otherwise.
    pub at: Timestamp,
}

/// A change of a refund's webhook delivery state (see [`Refund::apply_webhook`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundWebhookUpdate {
    /// The first job of webhook generation `generation` is on the queue; the first time is kept.
    Queued { generation: u32, at: Timestamp },
    /// A delivery attempt of generation `generation` ended.
    Attempt {
        generation: u32,
        /// 1-based, within the generation.
        attempt: u32,
        at: Timestamp,
        result: AttemptResult,
    },
}

/// Why a refund change was refused; the refund stays as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundRefused {
    /// The refund's processing already ended (duplicates and late notifications land here).
    #[error("refund is already {0:?}")]
    AlreadyFinal(RefundStatus),
    /// Webhooks are for final refunds only.
    #[error("refund is still processing")]
    NotFinal,
    #[error("webhook generation {attempted} superseded by {current}")]
    WebhookSuperseded { attempted: u32, current: u32 },
}

impl Refund {
    /// The refund after WeChat Pay's `settlement`: only a processing refund changes (to the
    /// outcome), or an abnormal one to succeeded (WeChat Pay paid it out after all). The
    /// `refund_id` given replaces none known; a success sets `succeeded_at`, closed and
    /// abnormal set `ended_at`. An abnormal refund that succeeds has a second final state, so a
    /// second webhook event (`refund.succeeded` after `refund.abnormal`): its webhook starts a
    /// new generation, not yet queued, and the abnormal event's jobs still queued are
    /// superseded (they send nothing; the refund's own state is the truth).
    pub fn settle(&self, settlement: &RefundSettlement) -> Result<Refund, RefundRefused> {
        let to = settlement.outcome.status();
        match (self.status, to) {
            (RefundStatus::Processing, _) => {}
            (RefundStatus::Abnormal, RefundStatus::Succeeded) => {}
            (current, _) => return Err(RefundRefused::AlreadyFinal(current)),
        }
        let mut next = self.clone();
        next.status = to;
        if self.channel_refund_id.is_none() {
            next.channel_refund_id = settlement.channel_refund_id.clone();
        }
        match to {
            RefundStatus::Succeeded => next.succeeded_at = Some(settlement.at),
            _ => next.ended_at = Some(settlement.at),
        }
        if self.status == RefundStatus::Abnormal {
            // The merchant heard `refund.abnormal`; `refund.succeeded` is a new webhook.
            next.webhook = self.webhook.restarted();
        }
        Ok(next)
    }

    /// The refund after a change of its webhook's state: only on a final refund and for the
    /// current generation (as `Order::apply` does for orders).
    pub fn apply_webhook(&self, update: &RefundWebhookUpdate) -> Result<Refund, RefundRefused> {
        if !self.status.is_final() {
            return Err(RefundRefused::NotFinal);
        }
        let generation = match update {
            RefundWebhookUpdate::Queued { generation, .. }
            | RefundWebhookUpdate::Attempt { generation, .. } => *generation,
        };
        if generation != self.webhook.generation {
            return Err(RefundRefused::WebhookSuperseded {
                attempted: generation,
                current: self.webhook.generation,
            });
        }
        let mut next = self.clone();
        match update {
            RefundWebhookUpdate::Queued { at, .. } => {
                next.webhook.queued_at = Some(self.webhook.queued_at.unwrap_or(*at));
            }
            RefundWebhookUpdate::Attempt {
                attempt,
                at,
                result,
                ..
            } => next.webhook = self.webhook.after_attempt(*attempt, *at, *result),
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_numbers_have_the_documented_shape_and_parse_back() {
        let now = Timestamp::from_unix(crate::testing::START); // 2025-12-21 10:30:00 Beijing
        let no = RefundNo::generate(now).unwrap();
        assert_eq!(no.as_str().len(), RefundNo::LEN);
        assert!(no.as_str().starts_with("RF20251221103000"), "{no}");
        assert_eq!(RefundNo::parse(no.as_str()), Some(no.clone()));
        // A valid WeChat out_refund_no too.
        assert!(OutRefundNo::parse(no.as_str()).is_ok());
        for bad in [
            "",
            "FP20251221103000ABCDEF",
            "RF2025122110300XABCDEF",
            "RF20251221103000abcdef",
            "RF20251221103000ABCDEFG",
        ] {
            assert_eq!(RefundNo::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn out_refund_numbers_take_wechats_characters_only() {
        for good in ["r-1", "A_b|c*d@e", &"9".repeat(64)] {
            assert!(OutRefundNo::parse(good).is_ok(), "{good}");
        }
        assert_eq!(OutRefundNo::parse(""), Err(FieldError::Blank));
        assert_eq!(
            OutRefundNo::parse(&"9".repeat(65)),
            Err(FieldError::TooLong { max: 64 })
        );
        for bad in ["a.b", "a b", "退款", "a/b"] {
            assert!(
                matches!(OutRefundNo::parse(bad), Err(FieldError::Character { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn reasons_are_counted_in_bytes_and_refuse_hidden_characters() {
        // 26 Chinese characters are 78 bytes; 27 are 81.
        assert!(RefundReason::parse(&"退".repeat(26)).is_ok());
        assert_eq!(
            RefundReason::parse(&"退".repeat(27)),
            Err(FieldError::TooLongBytes { max: 80 })
        );
        assert_eq!(RefundReason::parse("  "), Err(FieldError::Blank));
        assert_eq!(
            RefundReason::parse("a\u{202e}b"),
            Err(FieldError::FormatCharacter)
        );
        assert_eq!(
            RefundReason::parse("a\nb"),
            Err(FieldError::ControlCharacter)
        );
    }

    #[test]
    fn statuses_and_sources_read_back_and_only_processing_may_change() {
        for status in RefundStatus::ALL {
            assert_eq!(RefundStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.is_final(), status != RefundStatus::Processing);
        }
        for source in RefundSource::ALL {
            assert_eq!(RefundSource::parse(source.as_str()), Some(source));
        }
        assert_eq!(RefundStatus::parse("success"), None);
    }

    #[test]
    fn the_refundable_remainder_counts_succeeded_and_processing_refunds() {
        let tally = RefundTally {
            refunded: Fen::new(30),
            reserved: Fen::new(10),
            count: 2,
        };
        assert_eq!(tally.refundable(Fen::new(50)), Fen::new(10));
        assert_eq!(
            RefundTally::default().refundable(Fen::new(50)),
            Fen::new(50)
        );
    }
    fn tally(refunded: i64, reserved: i64, count: u32) -> RefundTally {
        RefundTally {
            refunded: Fen::new(refunded),
            reserved: Fen::new(reserved),
            count,
        }
    }

    #[test]
    fn a_reservation_fits_the_remainder_and_the_count() {
        let order = Fen::new(50);
        assert_eq!(
            tally(30, 10, 2).reserve(Fen::new(10), order),
            Ok(tally(30, 20, 3))
        );
        assert_eq!(
            tally(30, 10, 2).reserve(Fen::new(11), order),
            Err(ReserveRefused::ExceedsRefundable {
                refundable: Fen::new(10)
            })
        );
        assert_eq!(
            tally(0, 0, 0).reserve(Fen::new(0), order),
            Err(ReserveRefused::InvalidAmount)
        );
        assert_eq!(
            tally(0, 0, MAX_REFUNDS_PER_ORDER).reserve(Fen::new(1), order),
            Err(ReserveRefused::TooManyRefunds)
        );
        assert_eq!(
            tally(60, 0, 2).reserve(Fen::new(1), Fen::new(50)),
            Err(ReserveRefused::ExceedsRefundable {
                refundable: Fen::new(0)
            })
        );
    }

    #[test]
    fn settling_moves_or_releases_the_reservation() {
        use RefundStatus::*;
        let t = tally(10, 20, 3);
        let a = Fen::new(20);
        assert_eq!(t.settle(a, Processing, Succeeded), tally(30, 0, 3));
        assert_eq!(t.settle(a, Processing, Closed), tally(10, 0, 3));
        // Abnormal keeps its reservation (the money waits at WeChat Pay), and paid out after
        // all, the reservation becomes refunded.
        assert_eq!(t.settle(a, Processing, Abnormal), tally(10, 20, 3));
        assert_eq!(t.settle(a, Abnormal, Succeeded), tally(30, 0, 3));
        assert_eq!(t.record(a, Succeeded), tally(30, 20, 4));
        assert_eq!(t.record(a, Processing), tally(10, 40, 4));
        assert_eq!(t.record(a, Abnormal), tally(10, 40, 4));
        assert_eq!(t.record(a, Closed), tally(10, 20, 4));
    }

    fn processing_refund() -> Refund {
        let now = Timestamp::from_unix(crate::testing::START);
        Refund {
            refund_no: RefundNo::generate(now).unwrap(),
            merchant_id: MerchantId::new("m_1"),
            order_no: OrderNo::parse("FP20251221103000ABCDEF").unwrap(),
            out_trade_no: None,
            out_refund_no: None,
            amount: Fen::new(10),
            status: RefundStatus::Processing,
            reason: None,
            source: RefundSource::Api,
            channel_refund_id: None,
            created_at: now,
            succeeded_at: None,
            ended_at: None,
            request_fingerprint: String::new(),
            webhook: WebhookState::default(),
        }
    }

    fn settlement(outcome: RefundOutcome, at: i64) -> RefundSettlement {
        RefundSettlement {
            outcome,
            channel_refund_id: Some(format!("503{at}")),
            at: Timestamp::from_unix(at),
        }
    }

    #[test]
    fn a_refund_settles_once_and_an_abnormal_one_may_still_succeed() {
        let refund = processing_refund();
        let succeeded = refund
            .settle(&settlement(RefundOutcome::Succeeded, 5))
            .unwrap();
        assert_eq!(succeeded.status, RefundStatus::Succeeded);
        assert_eq!(succeeded.succeeded_at, Some(Timestamp::from_unix(5)));
        assert_eq!(succeeded.channel_refund_id.as_deref(), Some("5035"));
        for outcome in [
            RefundOutcome::Succeeded,
            RefundOutcome::Closed,
            RefundOutcome::Abnormal,
        ] {
            assert_eq!(
                succeeded.settle(&settlement(outcome, 6)),
                Err(RefundRefused::AlreadyFinal(RefundStatus::Succeeded))
            );
        }
        let closed = refund
            .settle(&settlement(RefundOutcome::Closed, 7))
            .unwrap();
        assert_eq!(closed.ended_at, Some(Timestamp::from_unix(7)));
        assert!(closed
            .settle(&settlement(RefundOutcome::Succeeded, 8))
            .is_err());

        let abnormal = refund
            .settle(&settlement(RefundOutcome::Abnormal, 9))
            .unwrap();
        assert_eq!(
            abnormal.settle(&settlement(RefundOutcome::Closed, 10)),
            Err(RefundRefused::AlreadyFinal(RefundStatus::Abnormal))
        );
        let paid_out = abnormal
            .settle(&settlement(RefundOutcome::Succeeded, 11))
            .unwrap();
        assert_eq!(paid_out.status, RefundStatus::Succeeded);
        // The first refund_id known stays.
        assert_eq!(paid_out.channel_refund_id.as_deref(), Some("5039"));
        assert_eq!(paid_out.ended_at, Some(Timestamp::from_unix(9)));
        assert_eq!(paid_out.webhook.generation, abnormal.webhook.generation + 1);
        assert_eq!(succeeded.webhook, refund.webhook);
    }

    #[test]
    fn an_abnormal_refund_that_succeeds_starts_a_new_webhook_generation() {
        let queued = |generation| RefundWebhookUpdate::Queued {
            generation,
            at: Timestamp::from_unix(20),
        };
        let abnormal = processing_refund()
            .settle(&settlement(RefundOutcome::Abnormal, 9))
            .unwrap();
        assert_eq!(abnormal.webhook, WebhookState::default());
        let abnormal = abnormal.apply_webhook(&queued(0)).unwrap();
        let paid_out = abnormal
            .settle(&settlement(RefundOutcome::Succeeded, 11))
            .unwrap();
        assert_eq!(paid_out.webhook.generation, 1);
        assert_eq!(paid_out.webhook.queued_at, None);
        assert_eq!(
            paid_out.apply_webhook(&queued(0)),
            Err(RefundRefused::WebhookSuperseded {
                attempted: 0,
                current: 1
            })
        );
        assert!(paid_out.apply_webhook(&queued(1)).is_ok());
        // A processing refund's first final state keeps generation 0.
        let succeeded = processing_refund()
            .settle(&settlement(RefundOutcome::Succeeded, 5))
            .unwrap();
        assert_eq!(succeeded.webhook.generation, 0);
    }

    #[test]
    fn refund_webhooks_are_for_final_refunds_of_the_current_generation() {
        let queued = |generation| RefundWebhookUpdate::Queued {
            generation,
            at: Timestamp::from_unix(20),
        };
        let refund = processing_refund();
        assert_eq!(
            refund.apply_webhook(&queued(0)),
            Err(RefundRefused::NotFinal)
        );
        let done = refund
            .settle(&settlement(RefundOutcome::Succeeded, 5))
            .unwrap();
        let once = done.apply_webhook(&queued(0)).unwrap();
        assert_eq!(once.webhook.queued_at, Some(Timestamp::from_unix(20)));
        assert_eq!(
            once.apply_webhook(&queued(1)),
            Err(RefundRefused::WebhookSuperseded {
                attempted: 1,
                current: 0
            })
        );
        let delivered = once
            .apply_webhook(&RefundWebhookUpdate::Attempt {
                generation: 0,
                attempt: 1,
                at: Timestamp::from_unix(21),
                result: AttemptResult::Delivered,
            })
            .unwrap();
        assert_eq!(
            delivered.webhook.status,
            crate::model::WebhookStatus::Delivered
        );
    }

    #[test]
    fn wechats_own_refund_numbers_are_refund_numbers_too() {
        let external = RefundNo::from_wechat("1217752501201407033233368018").unwrap();
        assert!(!external.is_ferrypays());
        assert!(
            RefundNo::generate(Timestamp::from_unix(crate::testing::START))
                .unwrap()
                .is_ferrypays()
        );
        assert!(RefundNo::from_wechat("a b").is_err());
        assert!(RefundNo::from_wechat("").is_err());
    }
}
