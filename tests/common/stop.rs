//! Stopping a daemon a test or benchmark started (the benches include this
//! file too).

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Sends SIGTERM (so that the daemon removes its pins) and waits up to
/// `grace` for the exit: None if it has not exited by then.
/// A daemon that already exited (and was reaped) is not signalled: its pid
/// may name another process by now.
pub fn sigterm_and_wait(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    // SAFETY: kill(2) takes no pointers, so it touches no memory of ours;
    // the pid is our child's, not reaped yet (just checked, and only
    // try_wait reaps it), so it names no other process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a daemon for good: SIGTERM, and SIGKILL if it has not exited
/// within `grace`.
pub fn stop(child: &mut Child, grace: Duration) {
    if sigterm_and_wait(child, grace).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
