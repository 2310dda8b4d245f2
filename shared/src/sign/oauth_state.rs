//! The OAuth `state` of a jump-pay visit: `{attempt}{unix time, 10 digits}{MAC, 32 hex}`,
//! alphanumeric as WeChat asks. The MAC covers the attempt, the time and the content the caller
//! binds (the link's parameters and signature), so a state is good for one link, for
//! [`STATE_TTL_SECS`], and a replayed code can restart the authorization only
//! [`MAX_OAUTH_ATTEMPTS`] times.

use aws_lc_rs::hmac;

use super::{constant_time_eq, derived_key, short_mac, SHORT_MAC_HEX_LEN};
use crate::model::Timestamp;

/// How long an authorization round trip may take (WeChat's codes live 5 minutes).
pub const STATE_TTL_SECS: i64 = 600;
/// Authorizations one visit may start: a replayed or expired code restarts it, this often.
pub const MAX_OAUTH_ATTEMPTS: u8 = 3;
/// A state's clock may run ahead of ours by this much (several instances).
const CLOCK_SKEW_SECS: i64 = 60;
/// The attempt digit and the 10-digit time.
const STAMP_LEN: usize = 1 + 10;

/// The key of OAuth states, derived from the official account's OAuth secret.
pub struct StateKey(pub(super) hmac::Key);

impl StateKey {
    pub fn derive(oauth_secret: &[u8]) -> StateKey {
        StateKey(derived_key(oauth_secret, "ferrypay/gateway/oauth-state/v1"))
    }
}

/// The state of authorization `attempt` (1..=9), issued at `now`, bound to `content`.
pub fn issue_state(key: &StateKey, attempt: u8, now: Timestamp, content: &str) -> String {
    let stamp = format!("{attempt}{:010}", now.unix());
    let mac = short_mac(&key.0, &format!("{stamp}\n{content}"));
    format!("{stamp}{mac}")
}

/// What a good state says: its attempt number and when it was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedState {
    pub attempt: u8,
    pub issued: Timestamp,
}

impl CheckedState {
    /// When the state stops being accepted (a counter about it may be forgotten then).
    pub fn expires(&self) -> Timestamp {
        self.issued.plus_secs(STATE_TTL_SECS)
    }
}

/// What a state stands for, if it is ours, bound to `content`, and fresh at `now`.
pub fn check_state(
    key: &StateKey,
    state: &str,
    content: &str,
    now: Timestamp,
) -> Option<CheckedState> {
    if state.len() != STAMP_LEN + SHORT_MAC_HEX_LEN || !state.is_ascii() {
        return None;
    }
    let (stamp, mac) = state.split_at(STAMP_LEN);
    let expected = short_mac(&key.0, &format!("{stamp}\n{content}"));
    if !constant_time_eq(expected.as_bytes(), mac.as_bytes()) {
        return None;
    }
    let attempt = stamp.get(..1)?.parse::<u8>().ok()?;
    let issued = stamp.get(1..)?.parse::<i64>().ok()?;
    let age = now.unix() - issued;
    ((1..=MAX_OAUTH_ATTEMPTS).contains(&attempt)
        && (-CLOCK_SKEW_SECS..=STATE_TTL_SECS).contains(&age))
    .then_some(CheckedState {
        attempt,
        issued: Timestamp::from_unix(issued),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::START;

    #[test]
    fn a_state_is_good_for_its_content_for_ten_minutes() {
        let key = StateKey::derive(b"oauth-secret");
        let now = Timestamp::from_unix(START);
        let link = "amount=100\nkey=pk_x\nsign=";
        let other = "amount=101\nkey=pk_x\nsign=";
        let state = issue_state(&key, 2, now, link);
        assert_eq!(state.len(), 43);
        assert!(state.bytes().all(|b| b.is_ascii_alphanumeric()), "{state}");
        let checked = check_state(&key, &state, link, now).unwrap();
        assert_eq!((checked.attempt, checked.issued), (2, now));
        assert_eq!(checked.expires(), now.plus_secs(STATE_TTL_SECS));
        let attempt = |state: &str, now| check_state(&key, state, link, now).map(|c| c.attempt);
        assert_eq!(check_state(&key, &state, other, now), None);
        assert_eq!(attempt(&state, now.plus_secs(STATE_TTL_SECS)), Some(2));
        assert_eq!(
            check_state(&key, &state, link, now.plus_secs(STATE_TTL_SECS + 1)),
            None
        );
        // From a clock running ahead: a minute's grace, no more.
        assert_eq!(attempt(&state, now.plus_secs(-60)), Some(2));
        assert_eq!(check_state(&key, &state, link, now.plus_secs(-61)), None);
        // Another attempt number under the same MAC is another state.
        let bumped = format!("3{}", &state[1..]);
        assert_eq!(check_state(&key, &bumped, link, now), None);
        // Another secret knows nothing of it.
        let rotated = StateKey::derive(b"rotated");
        assert_eq!(check_state(&rotated, &state, link, now), None);
        for junk in ["", "1", "é", &"9".repeat(43), &state[..42]] {
            assert_eq!(check_state(&key, junk, link, now), None, "{junk}");
        }
    }

    #[test]
    fn attempts_beyond_the_limit_are_never_accepted() {
        let key = StateKey::derive(b"oauth-secret");
        let now = Timestamp::from_unix(START);
        for attempt in [0, MAX_OAUTH_ATTEMPTS + 1, 9] {
            let state = issue_state(&key, attempt, now, "c");
            assert_eq!(check_state(&key, &state, "c", now), None, "{attempt}");
        }
    }
}
