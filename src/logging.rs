//! Log hygiene: untrusted text is escaped and shortened before it reaches a
//! log line, and refusals are logged at a bounded rate.
//!
//! A token's header, a request header or a claim of a token that failed
//! verification is attacker-controlled: written verbatim, a newline in it
//! forges a log line, and a flood of forged tokens fills the disk.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest untrusted value written to a log, in characters.
pub const MAX_LOGGED_CHARS: usize = 100;

/// Untrusted text for a log field: control characters (newlines among them)
/// and quotes are escaped, and at most [`MAX_LOGGED_CHARS`] characters are
/// kept, with `…` marking a cut.
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Runs of harmless characters are written as one slice (this is on
        // the action endpoint's hot path); the rest one by one, escaped.
        let mut run_start = 0;
        for (count, (i, c)) in self.0.char_indices().enumerate() {
            if count == MAX_LOGGED_CHARS {
                f.write_str(&self.0[run_start..i])?;
                return f.write_str("…");
            }
            if c.is_control() || c == '"' || c == '\\' || is_invisible(c) {
                f.write_str(&self.0[run_start..i])?;
                write!(f, "{}", c.escape_default())?;
                run_start = i + c.len_utf8();
            }
        }
        f.write_str(&self.0[run_start..])
    }
}

/// Characters that reorder or hide text in a terminal (bidi overrides,
/// zero-width and line/paragraph separators).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// `value` made safe for a log line (see [`Untrusted`]).
pub fn clean(value: &str) -> String {
    Untrusted(value).to_string()
}

/// How many refusals are logged one by one per window; the rest are counted.
const REFUSALS_PER_WINDOW: u64 = 20;
/// The window, and the period of the summary line.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

/// Logs refused requests at a bounded rate: the first few of each window one
/// line each, the rest summed up in one periodic line ([`RefusalLog::summarize`]).
/// Lock-free, so a flood costs a few atomic operations per request.
pub struct RefusalLog {
    /// What the summary line says was not logged one by one.
    summary: &'static str,
    window: AtomicU64,
    in_window: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self::new()
    }
}

impl RefusalLog {
    pub fn new() -> Self {
        Self::with_summary(
            "more actions were refused than are logged one by one; the rest are counted here",
        )
    }

    /// A log whose periodic line says `summary`.
    pub fn with_summary(summary: &'static str) -> Self {
        Self {
            summary,
            window: AtomicU64::new(0),
            in_window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// True when this refusal may be logged on its own line; otherwise it is counted.
    pub fn allow(&self) -> bool {
        let window = crate::clock::now().max(0) as u64 / REFUSAL_WINDOW.as_secs();
        if self.window.swap(window, Ordering::Relaxed) != window {
            self.in_window.store(0, Ordering::Relaxed);
        }
        if self.in_window.fetch_add(1, Ordering::Relaxed) < REFUSALS_PER_WINDOW {
            true
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Writes one line with the number of refusals not logged since the last
    /// call, if any; returns that number.
    pub fn summarize(&self) -> u64 {
        let n = self.suppressed.swap(0, Ordering::Relaxed);
        if n > 0 {
            tracing::warn!(suppressed = n, "{}", self.summary);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_controls_are_escaped() {
        let forged = "RS256\n2026-12-03T00:00:00Z  INFO expense action accepted\r\u{1b}[31m";
        let logged = clean(forged);
        assert!(!logged.contains('\n') && !logged.contains('\r') && !logged.contains('\u{1b}'));
        assert!(logged.starts_with("RS256\\n2026"));
    }

    #[test]
    fn long_values_are_cut_at_100_characters() {
        let logged = clean(&"é".repeat(500));
        assert_eq!(logged.chars().count(), MAX_LOGGED_CHARS + 1);
        assert!(logged.ends_with('…'));
        assert_eq!(clean("short"), "short");
    }

    #[test]
    fn bidi_overrides_and_quotes_are_escaped() {
        assert_eq!(clean("a\u{202e}b\"c"), "a\\u{202e}b\\\"c");
    }

    #[test]
    fn refusals_beyond_the_window_budget_are_counted_not_logged() {
        let log = RefusalLog::new();
        let logged = (0..1000).filter(|_| log.allow()).count() as u64;
        // All in one window, unless the window turned during the loop.
        assert!((REFUSALS_PER_WINDOW..=2 * REFUSALS_PER_WINDOW).contains(&logged));
        assert_eq!(log.summarize(), 1000 - logged);
        assert_eq!(log.summarize(), 0);
    }
}
