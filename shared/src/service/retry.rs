//! The merchant-webhook retry schedule, as data: the waits after each failed attempt, with
//! ±20% jitter and `Retry-After` honoured within limits. Pure functions: the caller supplies
//! the jitter draw and the clock.

use std::time::Duration;

use crate::model::Timestamp;

/// ±20%: spreads the retries of many orders that failed together.
pub const JITTER: f64 = 0.2;
/// A receiver's `Retry-After` is honoured up to this many times the scheduled wait.
pub const RETRY_AFTER_MAX_FACTOR: u32 = 2;

/// Waits between attempts: entry `i` is the wait after the `i+1`-th failed attempt. When all
/// are used, the delivery has failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retry schedule {0:?}: expected comma-separated durations like 15s,1m,2h,1d")]
pub struct ScheduleError(String);

impl Default for RetrySchedule {
    /// About three days: 15s, 1m, 5m, 15m, 30m, 1h, 2h, 4h, 8h, 12h, 24h, 24h (13 attempts).
    fn default() -> Self {
        const MINUTE: u64 = 60;
        const HOUR: u64 = 3600;
        RetrySchedule(
            [
                15,
                MINUTE,
                5 * MINUTE,
                15 * MINUTE,
                30 * MINUTE,
                HOUR,
                2 * HOUR,
                4 * HOUR,
                8 * HOUR,
                12 * HOUR,
                24 * HOUR,
                24 * HOUR,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
        )
    }
}

impl RetrySchedule {
    pub fn new(waits: Vec<Duration>) -> Self {
        RetrySchedule(waits)
    }

    /// Parses `FERRYPAY_WEBHOOK_RETRY_SCHEDULE`: `1s,2s,5s`, each wait a whole number and a
    /// unit in humantime's words: `ms`, `s`, `m`, `h`, `d` (also `w`, `min`, `hours`, ...).
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let bad = || ScheduleError(text.to_string());
        let mut waits = Vec::new();
        for part in text.split(',').map(str::trim) {
            // Whole numbers only (humantime also reads `1.5s` and `1h 30m`): what `Display`
            // prints, so a schedule in the logs can be pasted back as it is.
            if !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(bad());
            }
            waits.push(humantime::parse_duration(part).map_err(|_| bad())?);
        }
        if waits.is_empty() {
            return Err(bad());
        }
        Ok(RetrySchedule(waits))
    }

    pub fn waits(&self) -> &[Duration] {
        &self.0
    }

    /// Attempts in all: the first, then one after each wait.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.0.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The wait before the next attempt, after `failed_attempts` failures (1 after the first
    /// attempt failed); `None` when the schedule is used up. `jitter` is a draw in `[-1, 1]`,
    /// scaled to ±20%; `retry_after` is the receiver's ask, honoured between the scheduled wait
    /// and twice it.
    pub fn next_wait(
        &self,
        failed_attempts: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let index = usize::try_from(failed_attempts.checked_sub(1)?).ok()?;
        let scheduled = *self.0.get(index)?;
        let factor = 1.0 + JITTER * jitter.clamp(-1.0, 1.0);
        let jittered = scheduled.mul_f64(factor);
        Some(match retry_after {
            Some(asked) => asked.clamp(jittered, scheduled.saturating_mul(RETRY_AFTER_MAX_FACTOR)),
            None => jittered,
        })
    }

    /// The next attempt after attempt number `failed_attempts` failed at `now` (the injected
    /// clock's reading): how long the queue should hold the job, and when the attempt is due
    /// (whole seconds, rounded down, as the order records it). `None` when the schedule is used
    /// up. The worker computes its retries with this and nothing else.
    pub fn next_attempt(
        &self,
        failed_attempts: u32,
        now: Timestamp,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Option<(Duration, Timestamp)> {
        let wait = self.next_wait(failed_attempts, jitter, retry_after)?;
        let due = now.plus_secs(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX));
        Some((wait, due))
    }

    /// The time from the first attempt to the last, without jitter.
    pub fn total_span(&self) -> Duration {
        self.0.iter().sum()
    }
}

/// The schedule in [`RetrySchedule::parse`]'s format (largest whole unit per wait), so that
/// printing and parsing round-trip.
impl std::fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, wait) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let ms = wait.as_millis();
            let (n, unit) = [
                (86_400_000, "d"),
                (3_600_000, "h"),
                (60_000, "m"),
                (1000, "s"),
            ]
            .into_iter()
            .find(|(size, _)| ms >= *size && ms % size == 0)
            .map_or((ms, "ms"), |(size, unit)| (ms / size, unit));
            write!(f, "{n}{unit}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn printing_and_parsing_round_trip() {
        let default = RetrySchedule::default();
        assert_eq!(
            default.to_string(),
            "15s,1m,5m,15m,30m,1h,2h,4h,8h,12h,1d,1d"
        );
        assert_eq!(RetrySchedule::parse(&default.to_string()), Ok(default));
        let odd = RetrySchedule::parse("500ms,90s,0s").unwrap();
        assert_eq!(odd.to_string(), "500ms,90s,0ms");
        assert_eq!(RetrySchedule::parse(&odd.to_string()), Ok(odd));
    }

    #[test]
    fn the_default_spans_about_three_days_in_13_attempts() {
        let s = RetrySchedule::default();
        assert_eq!(s.max_attempts(), 13);
        let span = s.total_span().as_secs();
        // 15s + 1m + 5m + 15m + 30m + 1h + 2h + 4h + 8h + 12h + 24h + 24h = 75h 51m 15s
        assert_eq!(span, 273_075);
        assert!((2.5 * 86_400.0..=3.5 * 86_400.0).contains(&(span as f64)));
    }

    #[test]
    fn parses_the_environment_format() {
        let s = RetrySchedule::parse("1s, 2s,500ms,1m,2h,1d").unwrap();
        assert_eq!(
            s.waits(),
            [1_000, 2_000, 500, 60_000, 7_200_000, 86_400_000]
                .map(Duration::from_millis)
                .as_slice()
        );
        for bad in [
            "",
            "1",
            "s",
            "1x",
            "1s,,2s",
            "-1s",
            "1.5s",
            "99999999999999999999d",
        ] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retry_after_is_honoured_within_limits() {
        let s = RetrySchedule::parse("60s").unwrap();
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs());
        assert_eq!(
            secs(s.next_wait(1, 0.0, Some(Duration::from_secs(90)))),
            Some(90)
        );
        assert_eq!(
            secs(s.next_wait(1, 0.0, Some(Duration::from_secs(5)))),
            Some(60)
        );
        assert_eq!(
            secs(s.next_wait(1, 0.0, Some(Duration::from_secs(3600)))),
            Some(120)
        );
        assert_eq!(s.next_wait(2, 0.0, None), None);
        assert_eq!(s.next_wait(0, 0.0, None), None);
    }

    proptest! {
        #[test]
        fn waits_stay_within_jitter_and_the_schedule_is_bounded(
            waits in proptest::collection::vec(1u64..200_000, 1..20),
            jitters in proptest::collection::vec(-1.0f64..=1.0, 20),
        ) {
            let schedule = RetrySchedule::new(waits.iter().copied().map(Duration::from_secs).collect());
            let mut total = Duration::ZERO;
            for (i, scheduled) in waits.iter().enumerate() {
                let failed = u32::try_from(i + 1).unwrap();
                let wait = schedule.next_wait(failed, jitters[i], None).unwrap();
                let secs = wait.as_secs_f64();
                let base = *scheduled as f64;
                prop_assert!(secs >= base * 0.8 - 1e-6 && secs <= base * 1.2 + 1e-6);
                total += wait;
            }
            // Exhausted after the last wait; the jittered total stays within ±20% of the span.
            prop_assert_eq!(schedule.next_wait(schedule.max_attempts(), 0.0, None), None);
            let span = schedule.total_span().as_secs_f64();
            prop_assert!(total.as_secs_f64() >= span * 0.8 - 1e-6);
            prop_assert!(total.as_secs_f64() <= span * 1.2 + 1e-6);
        }

        /// The worker's sequence of due times, from an injected clock that moves to each due
        /// time in turn: never earlier than the attempt before, each gap within ±20% of its
        /// scheduled wait (less the rounding to whole seconds), the whole within ±20% of the
        /// span, used up after exactly `max_attempts`; a `Retry-After` stays between the
        /// jittered wait and twice the scheduled one.
        #[test]
        fn due_times_from_an_injected_clock_are_monotonic_and_within_jitter(
            waits in proptest::collection::vec(0u64..300_000_000, 1..16),
            jitters in proptest::collection::vec(-1.0f64..=1.0, 16),
            retry_after in proptest::option::of(0u64..1_000_000),
            start in 0i64..4_000_000_000,
        ) {
            let schedule = RetrySchedule::new(waits.iter().copied().map(Duration::from_millis).collect());
            let clock = crate::model::ManualClock::new(Timestamp::from_unix(start));
            let mut due_times = Vec::new();
            let mut failed = 1;
            while let Some((wait, due)) = schedule.next_attempt(
                failed,
                crate::model::Clock::now(&clock),
                jitters[failed as usize - 1],
                None,
            ) {
                let scheduled = schedule.waits()[failed as usize - 1].as_secs_f64();
                let now = crate::model::Clock::now(&clock).unix();
                let gap = (due.unix() - now) as f64;
                prop_assert!(due.unix() >= now);
                prop_assert_eq!(gap, wait.as_secs() as f64);
                prop_assert!(gap >= scheduled * 0.8 - 1.0 && gap <= scheduled * 1.2 + 1e-6);
                due_times.push(due);
                clock.set(due);
                failed += 1;
            }
            prop_assert_eq!(failed, schedule.max_attempts());
            prop_assert!(due_times.windows(2).all(|w| w[0] <= w[1]));
            let span = schedule.total_span().as_secs_f64();
            let total = (due_times[due_times.len() - 1].unix() - start) as f64;
            prop_assert!(total >= span * 0.8 - due_times.len() as f64 && total <= span * 1.2 + 1e-6);

            let asked = retry_after.map(Duration::from_secs);
            let now = Timestamp::from_unix(start);
            let (wait, due) = schedule.next_attempt(1, now, jitters[0], asked).unwrap();
            let jittered = schedule.next_wait(1, jitters[0], None).unwrap();
            prop_assert!(wait >= jittered && wait <= (schedule.waits()[0] * 2).max(jittered));
            prop_assert_eq!(due.unix() - start, wait.as_secs() as i64);
        }

        #[test]
        fn the_default_schedule_without_jitter_is_monotonic(jitter in -1.0f64..=1.0) {
            let s = RetrySchedule::default();
            let plain: Vec<Duration> = (1..s.max_attempts()).filter_map(|n| s.next_wait(n, 0.0, None)).collect();
            prop_assert!(plain.windows(2).all(|w| w[0] <= w[1]));
            // Jitter never makes a wait exceed the next scheduled wait by more than 20%+20%.
            for n in 1..s.max_attempts() {
                let w = s.next_wait(n, jitter, None).unwrap();
                prop_assert!(w <= s.waits()[n as usize - 1].mul_f64(1.2) + Duration::from_nanos(1));
            }
        }
    }
}
