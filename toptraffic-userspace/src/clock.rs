//! The one place that reads the time.
//!
//! Everything that needs the time takes a [`Clock`], so tests drive rotations
//! with [`ManualClock`] through hours of simulated time in milliseconds.
//!
//! A clock gives two readings: the wall clock, which names intervals and may
//! be stepped (NTP, an operator, a VM resumed after a pause), and a monotonic
//! clock, which only moves forward at a steady rate and paces rotations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// A source of wall-clock and monotonic time.
pub trait Clock: Send + Sync + 'static {
    /// The wall clock: labels intervals, may jump either way.
    fn now(&self) -> SystemTime;

    /// The monotonic clock: never goes back, never jumps; paces rotations
    /// and measures how long since the last one.
    fn monotonic(&self) -> Instant;
}

/// The system's real-time and monotonic clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to, and counts how often either of its
/// readings was taken (so a test can wait until a thread has looked at it).
///
/// [`advance`](ManualClock::advance) moves both readings, as time passing
/// does; [`step_back`](ManualClock::step_back), [`step_forward`](ManualClock::step_forward) and [`set`](ManualClock::set) move only
/// the wall clock, as NTP or a VM resume does.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<(SystemTime, Instant)>,
    reads: AtomicU64,
}

impl ManualClock {
    pub fn new(t: SystemTime) -> ManualClock {
        ManualClock {
            now: Mutex::new((t, Instant::now())),
            reads: AtomicU64::new(0),
        }
    }

    /// Time passes: both clocks move by `d`.
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap();
        now.0 += d;
        now.1 += d;
    }

    /// The wall clock is set to `t`; the monotonic clock does not move.
    pub fn set(&self, t: SystemTime) {
        self.now.lock().unwrap().0 = t;
    }

    /// The wall clock is stepped back by `d`; the monotonic clock does not
    /// move.
    pub fn step_back(&self, d: Duration) {
        self.now.lock().unwrap().0 -= d;
    }

    /// The wall clock jumps forward by `d`; the monotonic clock does not
    /// move.
    pub fn step_forward(&self, d: Duration) {
        self.now.lock().unwrap().0 += d;
    }

    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.now.lock().unwrap().0
    }

    fn monotonic(&self) -> Instant {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.now.lock().unwrap().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_step_moves_the_wall_clock_and_not_the_monotonic_one() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = ManualClock::new(t0);
        let m0 = c.monotonic();
        c.advance(Duration::from_secs(5));
        assert_eq!(
            (c.now(), c.monotonic()),
            (t0 + Duration::from_secs(5), m0 + Duration::from_secs(5))
        );
        c.step_back(Duration::from_secs(30));
        assert_eq!(c.now(), t0 - Duration::from_secs(25));
        c.step_forward(Duration::from_secs(600));
        c.set(c.now() + Duration::from_secs(1));
        assert_eq!(c.now(), t0 + Duration::from_secs(576));
        assert_eq!(c.monotonic(), m0 + Duration::from_secs(5));
    }
}
