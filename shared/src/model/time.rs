//! Time as unix seconds, shown in Beijing time (UTC+8, no daylight saving), and an injectable clock.

use std::{
    fmt,
    sync::atomic::{AtomicI64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

const BEIJING_OFFSET_SECS: i64 = 8 * 3600;
const SECS_PER_DAY: i64 = 86_400;

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

    pub fn beijing(self) -> BeijingDateTime {
        let local = self.0 + BEIJING_OFFSET_SECS;
        let days = local.div_euclid(SECS_PER_DAY);
        let secs_of_day = local.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        // secs_of_day is in 0..86400, so these casts cannot truncate.
        BeijingDateTime {
            year,
            month,
            day,
            hour: (secs_of_day / 3600) as u32,
            minute: (secs_of_day % 3600 / 60) as u32,
            second: (secs_of_day % 60) as u32,
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

    /// Parses RFC 3339 (`2018-06-08T10:34:56+08:00`, `...Z`, optional fractional seconds).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
            return None;
        }
        if !matches!(b.get(10), Some(b'T' | b't' | b' '))
            || b.get(13) != Some(&b':')
            || b.get(16) != Some(&b':')
        {
            return None;
        }
        let num = |from: usize, to: usize| -> Option<i64> {
            let part = s.get(from..to)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
        let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut rest = s.get(19..)?;
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            rest = frac.get(digits..)?;
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ => {
                let sign = match rest.get(..1)? {
                    "+" => 1,
                    "-" => -1,
                    _ => return None,
                };
                if rest.len() != 6 || rest.get(3..4)? != ":" {
                    return None;
                }
                let oh = num_of(rest.get(1..3)?)?;
                let om = num_of(rest.get(4..6)?)?;
                if oh > 23 || om > 59 {
                    return None;
                }
                sign * (oh * 3600 + om * 60)
            }
        };
        let days = days_from_civil(year, month, day);
        Some(Timestamp(
            days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset,
        ))
    }
}

fn num_of(part: &str) -> Option<i64> {
    if part.bytes().all(|c| c.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_beijing_string())
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01; Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    use super::*;

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
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp::from_unix(100));
        assert_eq!(clock.now().unix(), 100);
        clock.advance(5);
        assert_eq!(clock.now().unix(), 105);
    }
}
