//! The integrator's own [`Clock`]: milliseconds since the validator started,
//! from the operating system's monotonic clock.
//!
//! The core never reads a clock; the engine passes `now()` with every input
//! and waits with `sleep_until` for the timers the replica sets. All the
//! contract asks is that `now` never goes backwards and `sleep_until`
//! returns at or after its deadline.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use qbind_core::traits::Clock;
use qbind_core::types::Millis;

/// A monotonic clock whose zero is when it was made.
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock starting at zero now.
    #[must_use]
    pub fn new() -> Self {
        MonotonicClock {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Clock for MonotonicClock {
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    async fn sleep_until(&self, deadline: Millis) {
        let wait = deadline.0.saturating_sub(self.now().0);
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}
