//! Refunds: money going back to the payer, whole or in part, and what an order has given back.
//!
//! A refund starts `processing` (its amount reserved on the order) and ends `succeeded` (the
//! reservation becomes refunded), `closed` or `abnormal` (the reservation is released). Only
//! `processing` may change, and only once.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    check_characters, ids::random_string, Fen, FieldError, MerchantId, OrderNo, OutTradeNo,
    RandomError, Timestamp, WebhookState,
};

/// At most this many refunds per order (WeChat Pay's limit on partial refunds).
pub const MAX_REFUNDS_PER_ORDER: u32 = 50;
/// A payment may be refunded until this many days after it was paid (WeChat Pay's limit).
pub const REFUND_WINDOW_DAYS: i64 = 365;
/// The longest `reason`, in bytes of UTF-8 (WeChat Pay counts bytes and shows it to the payer).
pub const MAX_REASON_BYTES: usize = 80;

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// ferrypay's refund number: `RF` + Beijing `yyyymmddHHMMSS` + 6 random uppercase letters or
/// digits; 22 characters, so a valid WeChat Pay `out_refund_no` (at most 64 of
/// `[0-9A-Za-z_-|*@]`). It is the number WeChat Pay knows the refund by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RefundNo(String);

impl RefundNo {
    pub const LEN: usize = 22;

    pub fn generate(now: Timestamp) -> Result<Self, RandomError> {
        Ok(RefundNo(format!(
            "RF{}{}",
            now.to_beijing_compact(),
            random_string(UPPER_ALNUM, 6)?
        )))
    }

    /// Accepts only strings of the exact shape `generate` produces.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let well_formed = b.len() == Self::LEN
            && s.starts_with("RF")
            && b.iter().skip(2).take(14).all(u8::is_ascii_digit)
            && b.iter()
                .skip(16)
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        well_formed.then(|| RefundNo(s.to_string()))
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
        if s.is_empty() {
            return Err(FieldError::Blank);
        }
        if s.len() > Self::MAX_LEN {
            return Err(FieldError::TooLong { max: Self::MAX_LEN });
        }
        let allowed =
            |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'|' | b'*' | b'@');
        if !s.bytes().all(allowed) {
            return Err(FieldError::Character {
                allowed: "[0-9A-Za-z_-|*@]",
            });
        }
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

/// Where a refund is in its life. Only `processing` may change, to one of the three others.
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

    /// Whether the refund can no longer change.
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
    /// The delivery of the webhook of its final state (when the merchant subscribed to it).
    pub webhook: WebhookState,
}

/// What an order has given back: the sums of its succeeded refunds and of its processing ones
/// (reserved), and how many refunds it has had. `refunded + reserved <= amount`, always.
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
    /// What may still be refunded of an order of `amount`.
    pub fn refundable(&self, amount: Fen) -> Fen {
        Fen::new(amount.get() - self.refunded.get() - self.reserved.get())
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
}
