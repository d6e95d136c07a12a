//! The latest desired state, handed from the calculation to the dataplane thread. Coalescing: a newer
//! value replaces one the dataplane has not taken yet, so a burst of datastore events becomes one apply of
//! the newest state, and a slow apply never builds a queue of outdated ones.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

#[derive(Debug)]
pub struct Handoff<T> {
    slot: Mutex<Slot<T>>,
    changed: Condvar,
}

#[derive(Debug)]
struct Slot<T> {
    latest: Option<T>,
    closed: bool,
}

/// What [`Handoff::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken<T> {
    Value(T),
    /// The deadline passed with nothing new.
    Timeout,
    /// The sender closed the handoff; nothing more will come.
    Closed,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Handoff {
            slot: Mutex::new(Slot {
                latest: None,
                closed: false,
            }),
            changed: Condvar::new(),
        }
    }
}

impl<T> Handoff<T> {
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers `value`, replacing one not taken yet; true when it replaced one.
    pub fn offer(&self, value: T) -> bool {
        let replaced = self.lock().latest.replace(value).is_some();
        self.changed.notify_all();
        replaced
    }

    /// Changes the value waiting to be taken (a default one when none waits) with `f`: for a value
    /// made of parts that different producers replace independently.
    pub fn update(&self, f: impl FnOnce(&mut T))
    where
        T: Default,
    {
        f(self.lock().latest.get_or_insert_with(T::default));
        self.changed.notify_all();
    }

    /// No more values: a waiting [`Handoff::take`] returns [`Taken::Closed`] once the last value is taken.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The newest value, waiting until one is offered, the handoff is closed, or `deadline` passes
    /// (None: no deadline).
    pub fn take(&self, deadline: Option<Instant>) -> Taken<T> {
        let mut slot = self.lock();
        loop {
            if let Some(value) = slot.latest.take() {
                return Taken::Value(value);
            }
            if slot.closed {
                return Taken::Closed;
            }
            slot = match deadline {
                None => self
                    .changed
                    .wait(slot)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Taken::Timeout;
                    }
                    self.changed
                        .wait_timeout(slot, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_newer_value_replaces_one_not_taken_yet() {
        let handoff = Handoff::default();
        assert!(!handoff.offer(1));
        assert!(handoff.offer(2));
        assert!(handoff.offer(3));
        assert_eq!(handoff.take(Some(Instant::now())), Taken::Value(3));
        assert_eq!(handoff.take(Some(Instant::now())), Taken::Timeout);
    }

    #[test]
    fn take_waits_for_an_offer_from_another_thread() {
        let handoff = Arc::new(Handoff::default());
        let sender = Arc::clone(&handoff);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            sender.offer("desired");
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        assert_eq!(handoff.take(Some(deadline)), Taken::Value("desired"));
        thread.join().expect("sender thread");
    }

    #[test]
    fn close_ends_a_waiting_take_after_the_last_value() {
        let handoff = Arc::new(Handoff::default());
        handoff.offer(7);
        handoff.close();
        assert_eq!(handoff.take(None), Taken::Value(7));
        assert_eq!(handoff.take(None), Taken::Closed);
    }
}
