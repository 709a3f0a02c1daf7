//! Where "now" comes from. The rules take `now` as a parameter; the parts
//! that run on their own (dispatch, services) read it from a [`Clock`], so a
//! test can hand them one it moves by hand.

use super::Millis;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of the current time in [`Millis`].
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Millis;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        super::now_ms()
    }
}

/// A clock that moves only when told to; clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at `now`.
    pub fn at(now: Millis) -> Self {
        Self(Arc::new(AtomicU64::new(now)))
    }

    /// Moves the clock `ms` forward.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}
