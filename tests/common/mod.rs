//! Shared by the end-to-end tests: start the real `toptraffic` binary on free
//! loopback ports, read its API, stop it.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod ptrace;
pub mod stop;

use serde_json::Value;
use toptraffic_loadgen as loadgen;

pub const BIN: &str = env!("CARGO_BIN_EXE_toptraffic");

/// A field of `/proc/PID/status` as the kernel writes it, trimmed (e.g.
/// `proc_status(pid, "CapEff")`).
pub fn proc_status(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// A memory field of `/proc/PID/status` (VmRSS, VmHWM), in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let kb: u64 = proc_status(pid, field)
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb << 10
}

/// A UDP port that was free a moment ago.
/// Skips `test` for `why`, or fails it under CI (`CI=true`): CI installs
/// everything the tests need and runs as root on a real kernel, so a skip
/// there would hide a failure behind a passing run.
#[allow(dead_code)] // Not every test binary skips.
pub fn skip(test: &str, why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run under CI: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// Whether the kernel path can load here; when it cannot, [`skip`]s `test`.
#[allow(dead_code)] // Not every test binary needs the kernel.
pub fn kernel_available(test: &str) -> bool {
    match toptraffic::ingest::kernel::probe() {
        Ok(()) => true,
        Err(e) => {
            skip(test, &format!("the kernel path cannot run here: {e}"));
            false
        }
    }
}

/// Polls `cond` every 20 ms until it holds; fails naming `what` after
/// `timeout`.
#[allow(dead_code)] // Not every test binary polls this way.
pub fn wait_for(what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `text` to a fresh temporary file and returns its path.
pub fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "toptraffic-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

/// A running daemon, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub http: SocketAddr,
    pub udp: SocketAddr,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `toptraffic run` with `config` text and extra args, and waits
    /// until /healthz answers.
    pub fn start(config: &str, args: &[&str]) -> Daemon {
        Daemon::start_on(config, "127.0.0.1:0", args)
    }

    /// As [`Daemon::start`], receiving UDP on `listen`.
    pub fn start_on(config: &str, listen: &str, args: &[&str]) -> Daemon {
        let path = temp_file("config.toml", config);
        Daemon::start_from_file_on(&path, listen, args)
    }

    /// Starts with the config in `path` (which the test may rewrite and
    /// reload), on a free UDP port.
    pub fn start_from_file(path: &std::path::Path, args: &[&str]) -> Daemon {
        Daemon::start_from_file_on(path, "127.0.0.1:0", args)
    }

    pub fn start_from_file_on(path: &std::path::Path, listen: &str, args: &[&str]) -> Daemon {
        let path = path.to_path_buf();
        let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let log = path.with_file_name("daemon.log");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&path)
            .args(["--http", &http.to_string(), "--listen", listen])
            .args(args)
            .env("TOPTRAFFIC_LOG", "info")
            .stdout(Stdio::from(
                std::fs::File::create(log.with_extension("out")).unwrap(),
            ))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("start toptraffic");
        let mut d = Daemon {
            child,
            http,
            udp: "0.0.0.0:0".parse().unwrap(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(stats) = loadgen::get_json(http, "/api/v1/stats") {
                d.udp = stats["listen"].as_str().unwrap().parse().unwrap();
                return d;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("toptraffic exited with {status}: {}", d.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "toptraffic did not come up: {}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Value {
        loadgen::get_json(self.http, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn stats(&self) -> Value {
        self.get("/api/v1/stats")
    }

    /// Any answer of the API: its status and body.
    #[allow(dead_code)] // Not every test binary reads raw answers.
    pub fn get_status(&self, path: &str) -> (u16, String) {
        loadgen::http_get(self.http, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// A 200 answer's body as text (`/metrics`).
    #[allow(dead_code)]
    pub fn get_text(&self, path: &str) -> String {
        let (status, body) = self.get_status(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Polls `cond` on /api/v1/stats until it holds or `timeout` passes.
    pub fn wait_stats(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a window that closed after this call has been published.
    /// Two rotations: the first may have drained before the call and only
    /// published after it.
    pub fn wait_next_window(&self, timeout: Duration) -> Value {
        let now = self.stats()["rotations"].as_u64().unwrap();
        self.wait_stats(timeout, "the next rotation", |s| {
            s["rotations"].as_u64().unwrap() >= now + 2
        })
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        stop::sigterm_and_wait(&mut self.child, Duration::from_secs(20))
            .expect("no exit after SIGTERM")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first, so that the daemon removes its pins; killed if it
        // does not stop in time.
        stop::stop(&mut self.child, Duration::from_secs(10));
    }
}

/// A config with the seed's rules on a short window, so tests see keys
/// leave in seconds.
/// Runs `toptraffic run` with `config` text and `args` until it exits (30 s
/// at most): its status and what it wrote on stderr.
pub fn run_to_exit(config: &str, args: &[&str]) -> (ExitStatus, String) {
    let path = temp_file("config.toml", config);
    let log = path.with_file_name("daemon.log");
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running: {}", std::fs::read_to_string(&log).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&log).unwrap())
}

pub fn short_window_config(period: &str, every: &str) -> String {
    let default = toptraffic::config::DEFAULT_CONFIG;
    default
        .replace("period = \"1m\"", &format!("period = \"{period}\""))
        .replace("every = \"5s\"", &format!("every = \"{every}\""))
}

/// Sets `key = value` in the config's `[ingest]` section.
pub fn with_ingest(config: &str, line: &str) -> String {
    config.replacen("[ingest]\n", &format!("[ingest]\n{line}\n"), 1)
}

/// Gives every rule `max_keys`, so kernel maps stay small in tests.
pub fn with_max_keys(config: &str, max_keys: usize) -> String {
    config.replace(
        "as = \"totalCount\"\n",
        &format!("as = \"totalCount\"\nmax_keys = {max_keys}\n"),
    )
}

/// Turns every rule's overflow sketch off: keys beyond max_keys are
/// refused at every level, as a rule with `enabled = false` does.
pub fn without_overflow(config: &str) -> String {
    let off = "[rule.overflow]\nenabled = false\n\n";
    let mut out = String::new();
    for (i, part) in config.split("[[rule]]\n").enumerate() {
        if i == 0 {
            out.push_str(part);
            continue;
        }
        out.push_str("[[rule]]\n");
        // The table goes after the rule's own keys: before its first alert
        // block, or at its end.
        match part.find("[[rule.alert]]") {
            Some(at) => {
                out.push_str(&part[..at]);
                out.push_str(off);
                out.push_str(&part[at..]);
            }
            None => {
                out.push_str(part);
                out.push_str(&format!("\n{off}"));
            }
        }
    }
    out
}

/// A pin directory of this test process's own: the same for a name all
/// through the process, never one an earlier process left or still holds
/// (pids are reused; the start time tells processes of one pid apart).
pub fn pin_dir(name: &str) -> String {
    static STARTED: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let started = STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    });
    format!(
        "/sys/fs/bpf/toptraffic-test-{}-{started}-{name}",
        std::process::id()
    )
}

/// An HTTP receiver on 127.0.0.1 that records request bodies and answers
/// 200, or never answers at all (`silent`).
pub struct Receiver {
    pub addr: SocketAddr,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Receiver {
    pub fn start(silent: bool) -> Receiver {
        Receiver::start_on(0, silent)
    }

    /// As [`Receiver::start`], on `port` (0: a free one).
    pub fn start_on(port: u16, silent: bool) -> Receiver {
        use std::io::Read;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let b = bodies.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                if silent {
                    // Keep the connection open and say nothing.
                    held.push(conn);
                    continue;
                }
                let b = b.clone();
                std::thread::spawn(move || loop {
                    // One request: headers, then Content-Length bytes.
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match conn.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    if conn.read_exact(&mut body).is_err() {
                        return;
                    }
                    b.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).into_owned());
                    if conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .is_err()
                    {
                        return;
                    }
                });
            }
        });
        Receiver { addr, bodies }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}
