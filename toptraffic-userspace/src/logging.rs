//! Where log lines go, and what a panic does: lines are written to stderr by
//! a thread of their own, so that a slow or closed stderr (`| head`) never
//! stalls or breaks the daemon, and a panic in any thread ends the process.
//!
//! A line the queue cannot take, or stderr cannot take, is counted and
//! forgotten: logging never affects counting, alerting or shutdown.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lines waiting for the writer thread; more are dropped and counted.
const QUEUE: usize = 4096;

/// Exit code after a panic (what Rust's runtime uses for one in `main`).
pub const PANIC_EXIT: i32 = 101;

/// A queue of log lines and the thread that writes them out.
pub struct LogPipe {
    tx: SyncSender<Vec<u8>>,
    progress: Arc<Progress>,
}

#[derive(Default)]
struct Progress {
    queued: AtomicU64,
    /// Lines dropped because the queue was full.
    dropped: AtomicU64,
    /// Lines the output refused (EPIPE, full disk, ...).
    failed: AtomicU64,
    /// Lines taken off the queue, written or not.
    done: Mutex<u64>,
    done_changed: Condvar,
}

impl LogPipe {
    /// Starts the writer thread over `out`.
    pub fn start<W: Write + Send + 'static>(mut out: W) -> std::io::Result<LogPipe> {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        std::thread::Builder::new()
            .name("toptraffic-log".into())
            .spawn(move || {
                for line in rx {
                    if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                        p.failed.fetch_add(1, Relaxed);
                    }
                    let mut done = p.done.lock().unwrap_or_else(|e| e.into_inner());
                    *done += 1;
                    p.done_changed.notify_all();
                }
            })?;
        Ok(LogPipe { tx, progress })
    }

    /// A writer for one line (tracing writes each event whole, once).
    pub fn writer(&self) -> LineWriter<'_> {
        LineWriter(self)
    }

    /// Lines lost so far: dropped on a full queue or refused by the output.
    pub fn lost(&self) -> u64 {
        self.progress.dropped.load(Relaxed) + self.progress.failed.load(Relaxed)
    }

    /// Waits up to `timeout` for the lines queued so far to be written;
    /// false if some were still waiting.
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.progress.queued.load(Relaxed);
        let deadline = Instant::now() + timeout;
        let mut done = self.progress.done.lock().unwrap_or_else(|e| e.into_inner());
        while *done < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .progress
                .done_changed
                .wait_timeout(done, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    fn send(&self, line: &[u8]) {
        match self.tx.try_send(line.to_vec()) {
            Ok(()) => {
                self.progress.queued.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.progress.dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Queues what it is given; never blocks, never fails.
pub struct LineWriter<'a>(&'a LogPipe);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogPipe {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        self.writer()
    }
}

static STDERR: OnceLock<LogPipe> = OnceLock::new();

/// The process's pipe to stderr, started on first use; None only if its
/// thread could not start.
pub fn stderr() -> Option<&'static LogPipe> {
    if let Some(p) = STDERR.get() {
        return Some(p);
    }
    let pipe = LogPipe::start(std::io::stderr()).ok()?;
    Some(STDERR.get_or_init(|| pipe))
}

/// Writes what is queued for stderr, waiting at most `timeout`: before the
/// process exits, so that its last lines are seen.
pub fn flush_stderr(timeout: Duration) {
    if let Some(p) = STDERR.get() {
        p.flush(timeout);
    }
}

/// Log lines lost on the way to stderr so far.
pub fn stderr_lost() -> u64 {
    STDERR.get().map_or(0, LogPipe::lost)
}

/// Writes `msg` to stderr now, ignoring errors (`eprintln!` panics on a
/// closed stderr).
pub fn say(msg: &str) {
    flush_stderr(Duration::from_millis(500));
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Exits the process now with `code`, after giving queued log lines up to
/// `flush` to be written.
pub fn exit(code: i32, flush: Duration) -> ! {
    flush_stderr(flush);
    std::process::exit(code)
}

/// Makes a panic in any thread or task end the process with [`PANIC_EXIT`],
/// after the usual message and a log line: a daemon with a dead thread
/// (the signal task, a receive thread) would otherwise stay half alive.
pub fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The standard report ignores write errors: it cannot panic again.
        report(info);
        tracing::error!(panic = %info, "a thread panicked: exiting");
        exit(PANIC_EXIT, Duration::from_secs(1));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that refuses everything, as a closed pipe does.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// An output that blocks until the test lets it go.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, Arc<Mutex<Vec<u8>>>);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.0;
            let mut g = open.lock().unwrap();
            while !*g {
                g = cv.wait(g).unwrap();
            }
            self.1.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_output_counts_lost_lines_and_never_fails_the_writer() {
        let pipe = LogPipe::start(Closed).unwrap();
        for _ in 0..10 {
            assert_eq!(pipe.writer().write(b"line\n").unwrap(), 5);
        }
        assert!(pipe.flush(Duration::from_secs(10)));
        assert_eq!(pipe.lost(), 10);
    }

    #[test]
    fn a_stuck_output_never_blocks_the_writer_and_drops_past_the_queue() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let pipe = LogPipe::start(Stuck(gate.clone(), out.clone())).unwrap();
        let started = Instant::now();
        for _ in 0..QUEUE + 100 {
            pipe.writer().write_all(b"x\n").unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!pipe.flush(Duration::from_millis(10)));
        // The thread holds one line; the queue holds QUEUE more.
        assert!(pipe.lost() >= 99, "{}", pipe.lost());
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        assert!(pipe.flush(Duration::from_secs(10)));
        let written = out.lock().unwrap().len() as u64 / 2;
        assert_eq!(written + pipe.lost(), QUEUE as u64 + 100);
    }

    const CHILD: &str = "TOPTRAFFIC_TEST_PANIC_CHILD";

    #[test]
    fn a_panic_in_a_tokio_task_ends_the_process_with_101() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "logging::tests::panicking_child",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(PANIC_EXIT), "{stderr}");
        assert!(stderr.contains("boom in a task"), "{stderr}");
    }

    /// Run by the test above in a process of its own.
    #[test]
    #[ignore = "a child process of a_panic_in_a_tokio_task_ends_the_process_with_101"]
    fn panicking_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        exit_on_panic();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // Tokio catches a task's panic; the hook runs before it does.
        let _ = rt.block_on(rt.spawn(async { panic!("boom in a task") }));
        std::thread::sleep(Duration::from_secs(30));
    }
}
