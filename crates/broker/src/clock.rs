//! Time, passed in.
//!
//! Everything in the broker that decides by the clock (segment.ms, upload backoff, retention by
//! time, offset expiry, LogAppendTime stamps) asks a [`Clock`] instead of `Instant::now()` or
//! `SystemTime::now()`, so tests can move time forward by hand, run in milliseconds instead of
//! waiting out real intervals, and give each broker of a fault test its own skew. Sleeping
//! between background passes stays on tokio's timer; what a pass decides uses this clock.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time since an arbitrary fixed origin; never goes back.
    fn monotonic(&self) -> Duration;
    /// Milliseconds since the Unix epoch (may jump, as a wall clock does).
    fn wall_ms(&self) -> i64;
}

/// The clock to share.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's clocks.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
    fn wall_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that moves only when told to (tests, and fault injection of skew).
#[derive(Debug)]
pub struct ManualClock {
    mono_nanos: AtomicU64,
    wall_ms: AtomicI64,
}

impl ManualClock {
    /// Starts at monotonic zero and the given wall-clock time.
    pub fn new(wall_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            mono_nanos: AtomicU64::new(0),
            wall_ms: AtomicI64::new(wall_ms),
        })
    }

    /// Moves both clocks forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.mono_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
        self.wall_ms
            .fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }

    /// Sets the wall clock alone (a skewed or stepped clock); monotonic time is untouched.
    pub fn set_wall_ms(&self, ms: i64) {
        self.wall_ms.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.mono_nanos.load(Ordering::SeqCst))
    }
    fn wall_ms(&self) -> i64 {
        self.wall_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!((c.monotonic(), c.wall_ms()), (Duration::ZERO, 1_000));
        c.advance(Duration::from_millis(1500));
        assert_eq!(
            (c.monotonic(), c.wall_ms()),
            (Duration::from_millis(1500), 2_500)
        );
        c.set_wall_ms(0);
        assert_eq!(
            c.monotonic(),
            Duration::from_millis(1500),
            "skew leaves monotonic time"
        );
    }

    #[test]
    fn system_clock_is_monotonic_and_near_the_wall() {
        let c = SystemClock::default();
        let (a, b) = (c.monotonic(), c.monotonic());
        assert!(b >= a);
        assert!(c.wall_ms() > 1_600_000_000_000);
    }
}
