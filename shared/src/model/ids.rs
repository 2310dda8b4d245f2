//! Typed identifiers and the random strings behind them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{fields::FieldError, time::Timestamp};

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The operating system's random source failed: nothing safe can be generated.
#[derive(Debug, thiserror::Error)]
#[error("the system random source failed: {0}")]
pub struct RandomError(String);

/// `len` characters drawn uniformly from `alphabet` (at most 256 symbols) with the OS CSPRNG.
pub fn random_string(alphabet: &[u8], len: usize) -> Result<String, RandomError> {
    // Rejection sampling: accept only bytes below the largest multiple of the alphabet size,
    // so every symbol is equally likely.
    let n = alphabet.len();
    let limit = 256 - (256 % n);
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| RandomError(e.to_string()))?;
        for &b in &buf {
            if usize::from(b) < limit {
                if let Some(&c) = alphabet.get(usize::from(b) % n) {
                    out.push(char::from(c));
                }
                if out.len() == len {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// `len` random base62 characters: the body of API keys.
pub fn random_base62(len: usize) -> Result<String, RandomError> {
    random_string(BASE62, len)
}

/// Random bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| RandomError(e.to_string()))?;
    Ok(buf)
}

/// A number of ferrypay's own: `prefix` (two letters) + Beijing `yyyymmddHHMMSS` + 6 random
/// uppercase letters/digits (22 characters, sorting by creation time).
pub(super) fn generate_timed_number(prefix: &str, now: Timestamp) -> Result<String, RandomError> {
    Ok(format!(
        "{prefix}{}{}",
        now.to_beijing_compact(),
        random_string(UPPER_ALNUM, 6)?
    ))
}

/// Whether `s` has exactly the shape [`generate_timed_number`] gives with `prefix`.
pub(super) fn is_timed_number(s: &str, prefix: &str) -> bool {
    let b = s.as_bytes();
    b.len() == TIMED_NUMBER_LEN
        && s.starts_with(prefix)
        && b.iter().skip(2).take(14).all(u8::is_ascii_digit)
        && b.iter()
            .skip(16)
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

const TIMED_NUMBER_LEN: usize = 22;

/// A merchant's own number (order or refund): 1..=`max` ASCII letters, digits and `extra`
/// characters (`allowed` names them all, for the error).
pub(super) fn check_merchant_number(
    s: &str,
    max: usize,
    extra: &[u8],
    allowed: &'static str,
) -> Result<(), FieldError> {
    if s.is_empty() {
        return Err(FieldError::Blank);
    }
    if s.len() > max {
        return Err(FieldError::TooLong { max });
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    {
        return Err(FieldError::Character { allowed });
    }
    Ok(())
}

/// ferrypay's order number: `FP` + Beijing `yyyymmddHHMMSS` + 6 random uppercase letters/digits.
/// 22 characters of `[0-9A-Z]`, so it is a valid WeChat Pay `out_trade_no` (6..=32 of
/// `[0-9A-Za-z_-|*]`) and sorts by creation time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderNo(String);

impl OrderNo {
    pub const LEN: usize = TIMED_NUMBER_LEN;

    pub fn generate(now: Timestamp) -> Result<Self, RandomError> {
        generate_timed_number("FP", now).map(OrderNo)
    }

    /// Accepts only strings of the exact shape `generate` produces.
    pub fn parse(s: &str) -> Option<Self> {
        is_timed_number(s, "FP").then(|| OrderNo(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A merchant's own order number, unique per merchant: 1..=64 characters of `[0-9A-Za-z_-|*.]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OutTradeNo(String);

impl OutTradeNo {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        check_merchant_number(s, Self::MAX_LEN, b"_-|*.", "[0-9A-Za-z_-|*.]")?;
        Ok(OutTradeNo(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OutTradeNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A merchant's id: `mch_` + 16 lowercase letters/digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MerchantId(String);

impl MerchantId {
    pub fn generate() -> Result<Self, RandomError> {
        Ok(MerchantId(format!(
            "mch_{}",
            random_string(LOWER_ALNUM, 16)?
        )))
    }

    /// Wraps an id read back from storage or given by an operator.
    pub fn new(id: impl Into<String>) -> Self {
        MerchantId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MerchantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn order_numbers_have_the_documented_shape() {
        let now = Timestamp::from_unix(crate::testing::START); // 2025-12-21 10:30:00 Beijing
        let no = OrderNo::generate(now).unwrap();
        let s = no.as_str();
        assert_eq!(s.len(), 22);
        assert!(s.starts_with("FP20251221103000"), "{s}");
        assert!(s[16..]
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_eq!(OrderNo::parse(s), Some(no.clone()));
        // A valid WeChat out_trade_no: 6..=32 of [0-9A-Za-z_-|*].
        assert!((6..=32).contains(&s.len()));
    }

    #[test]
    fn order_numbers_do_not_repeat() {
        let now = Timestamp::from_unix(crate::testing::START);
        let set: HashSet<_> = (0..1000).map(|_| OrderNo::generate(now).unwrap()).collect();
        assert_eq!(set.len(), 1000);
    }

    #[test]
    fn order_number_parse_rejects_other_shapes() {
        for bad in [
            "",
            "FP2025122110300",
            "FP20251221103000abcdef",
            "XP20251221103000ABCDEF",
            "FP2025122110300XABCDEF",
            "FP20251221103000ABCDEFG",
        ] {
            assert_eq!(OrderNo::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn out_trade_no_rules() {
        assert!(OutTradeNo::parse("shop-42_a|b*c.d").is_ok());
        assert!(OutTradeNo::parse(&"a".repeat(64)).is_ok());
        assert!(OutTradeNo::parse(&"a".repeat(65)).is_err());
        assert!(OutTradeNo::parse("").is_err());
        assert!(OutTradeNo::parse("has space").is_err());
        assert!(OutTradeNo::parse("订单1").is_err());
    }

    #[test]
    fn random_strings_use_only_the_alphabet() {
        let s = random_base62(1000).unwrap();
        assert_eq!(s.len(), 1000);
        assert!(s.bytes().all(|c| c.is_ascii_alphanumeric()));
        // All 62 symbols show up in 1000 draws (probability of a miss is ~1e-5).
        let distinct: HashSet<_> = s.bytes().collect();
        assert!(distinct.len() >= 60);
    }
}
