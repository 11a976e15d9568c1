//! The one clock the app reads: Unix seconds, in one place so that every
//! module (and the demo) agrees on it.

use time::OffsetDateTime;

/// Unix seconds now.
pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `now + secs`, clamped so that an absurd lifetime from a remote server
/// (`expires_in` near `u64::MAX`) can neither overflow nor live longer than `max`.
pub fn expiry(now: i64, secs: u64, max: u64) -> i64 {
    let secs = i64::try_from(secs.min(max)).unwrap_or(i64::MAX);
    now.saturating_add(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_lifetime_is_clamped_not_overflowed() {
        assert_eq!(expiry(1_000, u64::MAX, 86_400), 87_400);
        assert_eq!(expiry(i64::MAX - 5, 3_600, 86_400), i64::MAX);
        assert_eq!(expiry(1_000, 3_599, 86_400), 4_599);
    }
}
