//! Time as unix seconds, shown in Beijing time (UTC+8, no daylight saving), and an injectable clock.

use std::{
    borrow::Cow,
    fmt,
    sync::atomic::{AtomicI64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use time::{format_description::well_known::Rfc3339, OffsetDateTime, UtcOffset};

/// Beijing time: a fixed +08:00 (China has kept no daylight saving since 1991), so no time
/// zone database is needed.
const BEIJING: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

/// A point in time, in whole seconds since the unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

/// Calendar fields of a timestamp in Beijing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeijingDateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl BeijingDateTime {
    /// The first and last seconds `time` can show (years -9999 and 9999); no real order,
    /// webhook or certificate is near either.
    const FIRST: BeijingDateTime = BeijingDateTime {
        year: -9999,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
    };
    const LAST: BeijingDateTime = BeijingDateTime {
        year: 9999,
        month: 12,
        day: 31,
        hour: 23,
        minute: 59,
        second: 59,
    };
}

impl Timestamp {
    pub const fn from_unix(secs: i64) -> Self {
        Timestamp(secs)
    }

    pub const fn unix(self) -> i64 {
        self.0
    }

    pub fn plus_secs(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_add(secs))
    }

    /// The calendar fields in Beijing time; a timestamp past what `time` can show is shown
    /// as the nearest second it can (see [`BeijingDateTime::LAST`]).
    pub fn beijing(self) -> BeijingDateTime {
        let Some(t) = OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|utc| utc.checked_to_offset(BEIJING))
        else {
            return if self.0 < 0 {
                BeijingDateTime::FIRST
            } else {
                BeijingDateTime::LAST
            };
        };
        BeijingDateTime {
            year: i64::from(t.year()),
            month: u32::from(u8::from(t.month())),
            day: u32::from(t.day()),
            hour: u32::from(t.hour()),
            minute: u32::from(t.minute()),
            second: u32::from(t.second()),
        }
    }

    /// `YYYY-MM-DD HH:MM:SS` in Beijing time: the merchant API's format.
    pub fn to_beijing_string(self) -> String {
        let t = self.beijing();
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        )
    }

    /// `YYYYMMDDHHMMSS` in Beijing time: the time part of an order number.
    pub fn to_beijing_compact(self) -> String {
        let t = self.beijing();
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        )
    }

    /// RFC 3339 with the `+08:00` offset, as WeChat Pay writes and expects times.
    pub fn to_rfc3339_beijing(self) -> String {
        let t = self.beijing();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+08:00",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        )
    }

    /// Parses RFC 3339 (`2018-06-08T10:34:56+08:00`, `...Z`, optional fractional seconds,
    /// which are dropped).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        // `time` takes any one byte between date and time; RFC 3339 names `T` and allows a
        // space, and that is all this parser has ever taken.
        if !matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
            return None;
        }
        // A leap second (`:60`) has always counted as the next second here, whatever the
        // time of day; `time` takes it only at a month's last UTC second, and as `:59`.
        let (text, leap) = match (s.get(..17), s.get(17..19), s.get(19..)) {
            (Some(head), Some("60"), Some(tail)) => (Cow::Owned(format!("{head}59{tail}")), 1),
            _ => (Cow::Borrowed(s), 0),
        };
        let t = OffsetDateTime::parse(&text, &Rfc3339).ok()?;
        Some(Timestamp(t.unix_timestamp() + leap))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_beijing_string())
    }
}

/// Where "now" comes from. Services take it by injection so tests control time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

/// A clock that stands still until told to move: for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(AtomicI64::new(start.unix()))
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    pub fn set(&self, to: Timestamp) {
        self.0.store(to.unix(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const BEIJING_SECS: i64 = 8 * 3600;

    #[test]
    fn formats_in_beijing_time() {
        // 2025-12-21 02:30:00 UTC is 10:30:00 in Beijing.
        let t = Timestamp::from_unix(1_766_284_200);
        assert_eq!(t.to_beijing_string(), "2025-12-21 10:30:00");
        assert_eq!(t.to_beijing_compact(), "20251221103000");
        assert_eq!(t.to_rfc3339_beijing(), "2025-12-21T10:30:00+08:00");
    }

    #[test]
    fn beijing_day_rolls_over_at_16_utc() {
        // 2024-02-28 16:00:00 UTC is 2024-02-29 00:00:00 in Beijing (a leap day).
        let t = Timestamp::from_unix(1_709_136_000);
        assert_eq!(t.to_beijing_string(), "2024-02-29 00:00:00");
        assert_eq!(
            Timestamp::from_unix(0).to_beijing_string(),
            "1970-01-01 08:00:00"
        );
    }

    #[test]
    fn parses_rfc3339_round_trip_and_offsets() {
        for secs in [
            0,
            1_704_081_606,
            1_766_284_200,
            1_709_136_000,
            4_102_444_800,
        ] {
            let t = Timestamp::from_unix(secs);
            assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339_beijing()), Some(t));
        }
        assert_eq!(
            Timestamp::parse_rfc3339("2018-06-08T10:34:56+08:00"),
            Timestamp::parse_rfc3339("2018-06-08T02:34:56Z")
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2018-06-08T02:34:56.123Z"),
            Timestamp::parse_rfc3339("2018-06-08T02:34:56Z")
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2018-06-08T02:34:56Z").map(Timestamp::unix),
            Some(1_528_425_296)
        );
    }

    #[test]
    fn rejects_malformed_rfc3339() {
        for bad in [
            "",
            "2018-06-08",
            "2018-13-08T10:34:56+08:00",
            "2018-02-30T10:34:56+08:00",
            "2018-06-08T24:34:56+08:00",
            "2018-06-08T10:34:56+0800",
            "2018-06-08T10:34:56",
            "2018-06-08T10:34:56.Z",
            "2O18-06-08T10:34:56Z",
            "2018-06-08T10:34:56+08:00x",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_leap_second_counts_as_the_next_second() {
        assert_eq!(
            Timestamp::parse_rfc3339("2016-12-31T23:59:60Z"),
            Timestamp::parse_rfc3339("2017-01-01T00:00:00Z")
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2018-06-08T10:34:60.5+08:00"),
            Timestamp::parse_rfc3339("2018-06-08T10:35:00+08:00")
        );
        for bad in ["2018-06-08T10:34:61+08:00", "2018-06-08x10:34:56+08:00"] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_past_year_9999_show_the_nearest_second_there_is() {
        assert_eq!(
            Timestamp::from_unix(i64::MAX).to_beijing_string(),
            "9999-12-31 23:59:59"
        );
        assert_eq!(
            Timestamp::from_unix(i64::MIN).to_rfc3339_beijing(),
            "-9999-01-01T00:00:00+08:00"
        );
    }

    proptest! {
        /// Any second of years 1 to 9999: the three formats agree, and both RFC 3339 forms
        /// (`+08:00` and `Z`) parse back to it.
        #[test]
        fn formats_agree_and_parse_back(secs in -62_135_596_800i64..=253_402_271_999) {
            let t = Timestamp::from_unix(secs);
            let rfc = t.to_rfc3339_beijing();
            prop_assert_eq!(Timestamp::parse_rfc3339(&rfc), Some(t));
            let plain = t.to_beijing_string();
            let spaced = rfc.replacen('T', " ", 1);
            prop_assert_eq!(spaced.trim_end_matches("+08:00"), plain.as_str());
            let digits: String = plain.chars().filter(char::is_ascii_digit).collect();
            prop_assert_eq!(t.to_beijing_compact(), digits);
            let utc = t.plus_secs(-BEIJING_SECS).to_rfc3339_beijing().replace("+08:00", "Z");
            prop_assert_eq!(Timestamp::parse_rfc3339(&utc), Some(t));
        }

        /// Any valid Beijing wall time parses to a second that shows the same fields.
        #[test]
        fn calendar_fields_round_trip(
            year in 0i64..=9999, month in 1u32..=12, day in 1u32..=28,
            hour in 0u32..24, minute in 0u32..60, second in 0u32..60,
        ) {
            let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}+08:00");
            let t = Timestamp::parse_rfc3339(&text);
            prop_assert_eq!(
                t.map(Timestamp::beijing),
                Some(BeijingDateTime { year, month, day, hour, minute, second })
            );
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp::from_unix(100));
        assert_eq!(clock.now().unix(), 100);
        clock.advance(5);
        assert_eq!(clock.now().unix(), 105);
    }
}
