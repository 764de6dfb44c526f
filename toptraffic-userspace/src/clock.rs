//! The one place that reads the wall clock.
//!
//! Everything that needs the time takes a [`Clock`], so tests drive rotations
//! with [`ManualClock`] through hours of simulated time in milliseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to, and counts how often it was read
/// (so a test can wait until a thread has looked at it).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
    reads: AtomicU64,
}

impl ManualClock {
    pub fn new(t: SystemTime) -> ManualClock {
        ManualClock {
            now: Mutex::new(t),
            reads: AtomicU64::new(0),
        }
    }

    pub fn advance(&self, d: Duration) {
        *self.now.lock().unwrap() += d;
    }

    pub fn set(&self, t: SystemTime) {
        *self.now.lock().unwrap() = t;
    }

    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.reads.fetch_add(1, Ordering::SeqCst);
        *self.now.lock().unwrap()
    }
}
