//! Holding one thread of a daemon stopped, to see what the others do while
//! it cannot run: ptrace stops a single thread, SIGSTOP the whole process.

/// The thread of `pid` whose name starts with `prefix` (the kernel
/// truncates thread names to 15 bytes).
pub fn thread_named(pid: u32, prefix: &str) -> i32 {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            return task.file_name().to_str().unwrap().parse().unwrap();
        }
    }
    panic!("no thread {prefix}* in process {pid}");
}

/// A thread of a child process, stopped by ptrace until released.
pub struct HeldThread {
    tid: i32,
    /// Whether the thread's exit was collected (it is then gone).
    reaped: bool,
}

impl HeldThread {
    /// Stops the thread of `pid` named `prefix`* and waits until it is
    /// stopped.
    pub fn hold(pid: u32, prefix: &str) -> HeldThread {
        let tid = thread_named(pid, prefix);
        // SAFETY: plain syscalls on a thread of our own child process; no
        // memory is passed (addr and data are 0) but the status out-pointer,
        // which is a live local.
        unsafe {
            assert_eq!(
                libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0),
                0,
                "{}",
                std::io::Error::last_os_error()
            );
            assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0), 0);
            let mut status = 0;
            assert_eq!(libc::waitpid(tid, &mut status, libc::__WALL), tid);
        }
        HeldThread { tid, reaped: false }
    }

    /// Lets the thread run on.
    pub fn release(mut self) {
        // SAFETY: as in `hold`; detaching passes no memory.
        let r = unsafe { libc::ptrace(libc::PTRACE_DETACH, self.tid, 0, 0) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        self.reaped = true;
    }

    /// Whether the thread was killed with its process, collecting its exit
    /// if so: ptrace reports a traced thread's exit to the tracer, and until
    /// the tracer collects it the process's own exit is not reported.
    pub fn exited(&mut self) -> bool {
        if self.reaped {
            return true;
        }
        let mut status = 0;
        // SAFETY: as in `hold`; the out-pointer is a live local.
        let r = unsafe { libc::waitpid(self.tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if r == self.tid && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
            self.reaped = true;
        }
        self.reaped
    }
}

impl Drop for HeldThread {
    fn drop(&mut self) {
        if !self.exited() {
            // SAFETY: as in `release`; fails harmlessly if the thread is gone.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, self.tid, 0, 0) };
        }
    }
}
