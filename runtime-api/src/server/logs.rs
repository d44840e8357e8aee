//! Logging what clients cause without letting them write the log: every
//! string a client chose is cut to a bounded length, and events anyone can
//! cause at will (a request without the token, a failed `accept`) are
//! logged in full once per interval and otherwise only counted, with one
//! summary line per interval.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::Instant;

/// How much of a client's request path a log line shows.
pub(crate) const LOGGED_PATH_BYTES: usize = 100;

/// `text` cut to at most `max` bytes (at a character boundary), with what
/// was cut said at the end: a log line never carries more of a string a
/// client chose.
pub(crate) fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len()))
}

/// Counts occurrences of one kind of event so that a log shows the first
/// of each interval in full and the rest as one summary line.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// What is counted, plural, for the summary (`refused requests`).
    what: &'static str,
    state: Mutex<Counts>,
}

#[derive(Debug)]
struct Counts {
    /// When this interval began.
    since: Option<Instant>,
    /// Whether this interval's occurrence was logged in full already.
    logged: bool,
    /// Occurrences left out of the log this interval.
    left_out: u64,
}

impl Throttle {
    /// A throttle for events described as `what` in its summaries.
    pub(crate) const fn new(what: &'static str) -> Throttle {
        Throttle {
            what,
            state: Mutex::new(Counts {
                since: None,
                logged: false,
                left_out: 0,
            }),
        }
    }

    /// Whether this occurrence is to be logged in full: the first of an
    /// interval is, the others are counted for the summary.
    pub(crate) fn admit(&self) -> bool {
        let mut counts = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if counts.logged {
            counts.left_out += 1;
            false
        } else {
            counts.logged = true;
            true
        }
    }

    /// Ends an interval: logs how many occurrences were left out during
    /// it, if any, and lets the next one be logged in full.
    pub(crate) fn end_interval(&self) {
        let now = Instant::now();
        let (left_out, since) = {
            let mut counts = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let since = counts.since.replace(now);
            counts.logged = false;
            (std::mem::take(&mut counts.left_out), since)
        };
        if left_out > 0 {
            let seconds = since.map_or(0, |since| (now - since).as_secs_f64().round() as u64);
            tracing::warn!(
                "{left_out} more {} in the last {} s",
                self.what,
                seconds.max(1)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipped_text_keeps_whole_characters_and_says_how_long_it_was() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(
            clip(&"a".repeat(30), 10),
            format!("{}… (30 bytes)", "a".repeat(10))
        );
        // `é` is two bytes: the cut falls before it, not inside it.
        assert_eq!(clip("aaaaaaaaaé", 10), "aaaaaaaaa… (11 bytes)");
    }

    #[test]
    fn one_occurrence_per_interval_is_logged_in_full() {
        let throttle = Throttle::new("things");
        assert!(throttle.admit());
        assert!(!throttle.admit());
        assert!(!throttle.admit());
        assert_eq!(throttle.state.lock().unwrap().left_out, 2);
        throttle.end_interval();
        assert_eq!(throttle.state.lock().unwrap().left_out, 0);
        assert!(throttle.admit());
        assert!(!throttle.admit());
    }
}
