//! What a worker thread is doing right now, readable from other threads: the health endpoints use it to
//! say what is stuck (an `nft` run that does not return, a netlink call, a datastore write waiting for a
//! lock) without waiting for the worker.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The current piece of work of one thread (or none).
#[derive(Debug, Default)]
pub struct Activity {
    current: Mutex<Option<(String, Instant)>>,
}

/// Ends the piece of work [`Activity::begin`] started when dropped.
#[must_use = "the activity ends when the guard is dropped"]
pub struct Busy<'a> {
    activity: &'a Activity,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *self
            .activity
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl Activity {
    /// Marks the start of `what` (e.g. "running nft -f"), until the guard is dropped.
    pub fn begin(&self, what: impl Into<String>) -> Busy<'_> {
        self.begin_at(what, Instant::now())
    }

    /// [`Activity::begin`] with the start time given.
    pub fn begin_at(&self, what: impl Into<String>, at: Instant) -> Busy<'_> {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some((what.into(), at));
        Busy { activity: self }
    }

    /// What is being done and for how long, as of `now`.
    pub fn current(&self, now: Instant) -> Option<(String, Duration)> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(what, since)| (what.clone(), now.saturating_duration_since(*since)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_activity_lasts_as_long_as_its_guard() {
        let activity = Activity::default();
        let start = Instant::now();
        assert_eq!(activity.current(start), None);
        {
            let _busy = activity.begin_at("running nft -f", start);
            assert_eq!(
                activity.current(start + Duration::from_secs(3)),
                Some(("running nft -f".to_string(), Duration::from_secs(3)))
            );
        }
        assert_eq!(activity.current(start + Duration::from_secs(4)), None);
    }
}
