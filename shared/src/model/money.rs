//! Money is integer fen (1/100 yuan). Never a float.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of money in fen (100 = 1.00 yuan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fen(i64);

impl Fen {
    /// The smallest order WeChat Pay accepts.
    pub const MIN_ORDER: Fen = Fen(1);
    /// The largest order ferrypay accepts (1,000,000.00 yuan).
    pub const MAX_ORDER: Fen = Fen(100_000_000);

    pub const fn new(fen: i64) -> Self {
        Fen(fen)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// An amount a payer may be asked to pay: within `MIN_ORDER..=MAX_ORDER`.
    pub fn order_amount(fen: i64) -> Option<Fen> {
        (Self::MIN_ORDER.0..=Self::MAX_ORDER.0)
            .contains(&fen)
            .then_some(Fen(fen))
    }
}

impl fmt::Display for Fen {
    /// Renders as yuan with two decimals, for people (logs, CLI), never for the wire.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_amount_bounds() {
        assert_eq!(Fen::order_amount(0), None);
        assert_eq!(Fen::order_amount(-1), None);
        assert_eq!(Fen::order_amount(1), Some(Fen::new(1)));
        assert_eq!(Fen::order_amount(100_000_000), Some(Fen::new(100_000_000)));
        assert_eq!(Fen::order_amount(100_000_001), None);
    }

    #[test]
    fn displays_as_yuan() {
        assert_eq!(Fen::new(1).to_string(), "0.01");
        assert_eq!(Fen::new(12345).to_string(), "123.45");
        assert_eq!(Fen::new(-250).to_string(), "-2.50");
    }
}
