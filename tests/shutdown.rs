//! End to end: the daemon always stops, within its bound, whatever happens
//! to its stderr or its sinks, and a restart loses nothing it could count.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::ptrace::HeldThread;
use common::{free_tcp_port, short_window_config, temp_file, wait_for, Daemon, Receiver, BIN};
use toptraffic::daemon::{SHUTDOWN_BOUND, SHUTDOWN_OVERRUN_EXIT};
use toptraffic_loadgen as loadgen;

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) takes no pointers, so it touches no memory of ours;
    // the pid is our child's, not reaped yet (only try_wait reaps it, and
    // callers signal before they see it exit), so it names no other process.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Waits up to `timeout` for the exit.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_daemon_whose_stderr_was_closed_stops_on_sigterm() {
    // `toptraffic run 2>&1 | head -3`
    let config = temp_file("config.toml", toptraffic::config::DEFAULT_CONFIG);
    let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--mode", "userspace", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config)
        .args(["--http", &http.to_string()])
        .env("TOPTRAFFIC_LOG", "info")
        .stdout(Stdio::from(writer.try_clone().unwrap()))
        .stderr(Stdio::from(writer))
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(reader).lines();
    for _ in 0..3 {
        lines.next().expect("a log line").unwrap();
    }
    drop(lines);
    wait_for("the API", Duration::from_secs(30), || {
        loadgen::get_json(http, "/api/v1/stats").is_ok()
    });
    // Something to log into the closed pipe while running, too.
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stats = loadgen::get_json(http, "/api/v1/stats").unwrap();
    let to: SocketAddr = stats["listen"].as_str().unwrap().parse().unwrap();
    tx.send_to(b"combined,ip=192.0.2.1,id=1 count=1", to)
        .unwrap();

    signal(&child, libc::SIGTERM);
    let started = Instant::now();
    let status = wait_exit(&mut child, SHUTDOWN_BOUND + Duration::from_secs(5));
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no exit {:?} after SIGTERM", started.elapsed());
    };
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_second_sigterm_ends_a_long_shutdown_at_once() {
    let blackhole = Receiver::start(true);
    let dir = temp_file("x", "").parent().unwrap().to_path_buf();
    let config = format!(
        r#"
[ingest]
mode = "userspace"
[window]
period = "5s"
every = "500ms"

[[rule]]
name = "top_combined"
measurement = "combined"
group_by = ["ip", "id"]
field = "count"
as = "totalCount"

[[rule.alert]]
warn = '"totalCount" > 0'
[[rule.alert.http]]
url = "http://{blackhole}/never"
options = {{ timeout = "60s", retries = 0 }}
[rule.alert.log]
path = "{log}"
"#,
        blackhole = blackhole.addr,
        log = dir.join("alerts.log").display()
    );
    let mut d = Daemon::start(&config, &[]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(b"combined,ip=192.0.2.1,id=1 count=1", d.udp)
        .unwrap();
    // The alert went to both sinks: the log has it, the HTTP one hangs.
    let log = dir.join("alerts.log");
    wait_for("the alert", Duration::from_secs(15), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("WARNING"))
    });

    signal(&d.child, libc::SIGTERM);
    wait_for("the sinks' drain", Duration::from_secs(10), || {
        d.log_text().contains("draining the alert sinks")
    });
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the shutdown did not wait for the hanging sink"
    );
    signal(&d.child, libc::SIGTERM);
    let started = Instant::now();
    let status = wait_exit(&mut d.child, Duration::from_secs(5)).expect("no exit");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{}", d.log_text());
    assert!(d.log_text().contains("second signal"), "{}", d.log_text());
}

#[test]
fn a_shutdown_that_hangs_ends_at_its_bound() {
    let mut d = Daemon::start(&short_window_config("4s", "1s"), &["--mode", "userspace"]);
    // The shutdown waits for the rotation thread to fold the open interval
    // in and save; held stopped, it never answers, and nothing in the
    // process can end the wait but the bound.
    let mut held = HeldThread::hold(d.child.id(), "toptraffic-rot");
    let started = Instant::now();
    signal(&d.child, libc::SIGTERM);
    let deadline = started + SHUTDOWN_BOUND + Duration::from_secs(10);
    let status = loop {
        // The held thread's exit is ours to collect before the process's.
        held.exited();
        if let Some(st) = d.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "no exit {:?} after SIGTERM: {}",
            started.elapsed(),
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let log = d.log_text();
    assert_eq!(
        status.code(),
        Some(SHUTDOWN_OVERRUN_EXIT),
        "{status}: {log}"
    );
    assert!(took >= SHUTDOWN_BOUND, "{took:?}: {log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        log.contains("the shutdown did not finish in time: exiting"),
        "{log}"
    );
}

/// A one-rule config with a long window, so that every line sent across
/// the restart is still in it at the end.
fn restart_config(mode: &str, state: &std::path::Path) -> String {
    format!(
        r#"
[ingest]
mode = "{mode}"
recv_buffer = 67108864
pin_dir = "{pins}"
[window]
period = "2m"
every = "1s"
[state]
path = "{state}"

[[rule]]
name = "top_combined"
measurement = "combined"
group_by = ["ip", "id"]
field = "count"
as = "totalCount"
max_keys = 1000
"#,
        state = state.display(),
        // Its own pins, not the default's, which a daemon on this machine may hold.
        pins = common::pin_dir(&format!("restart-{mode}")),
    )
}

/// Sends `n` one-line datagrams, paced at `per_second` (0: flat out).
fn send(to: SocketAddr, n: u64, per_second: u64) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    for i in 0..n {
        if per_second > 0 {
            let due = Duration::from_secs_f64(i as f64 / per_second as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        sock.send_to(b"combined,ip=192.0.2.9,id=9 count=1", to)
            .unwrap();
    }
}

fn window_value(d: &Daemon) -> f64 {
    let top = d.get("/api/v1/top?rule=top_combined&limit=1");
    top["top"][0]["value"].as_f64().unwrap_or(0.0)
}

/// Polls until the window holds `want` (it only grows) or 20 s pass.
fn wait_value(d: &Daemon, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = window_value(d);
        if v >= want || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn a_restart_counts_every_line_sent(mode: &str) {
    let dir = temp_file("x", "").parent().unwrap().to_path_buf();
    let state = dir.join("state");
    let path = dir.join("restart.toml");
    std::fs::write(&path, restart_config(mode, &state)).unwrap();
    let listen = format!("127.0.0.1:{}", common::free_udp_port());
    let d = Daemon::start_from_file_on(&path, &listen, &[]);

    // Steady traffic, then a burst that is still being counted when
    // SIGTERM comes.
    send(d.udp, 3_000, 2_000);
    send(d.udp, 20_000, 0);
    let log = d.log.clone();
    let status = d.terminate();
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(state.exists(), "no state file written: {text}");

    let d2 = Daemon::start_from_file_on(&path, &listen, &[]);
    send(d2.udp, 3_000, 2_000);
    let sent = 26_000.0;
    assert_eq!(wait_value(&d2, sent), sent, "{text}\n{}", d2.log_text());
    assert!(text.contains("uncounted_lines=0"), "{text}");
}

#[test]
fn a_restart_through_steady_traffic_counts_every_line_in_userspace() {
    a_restart_counts_every_line_sent("userspace");
}

#[test]
fn a_restart_through_steady_traffic_counts_every_line_in_the_kernel() {
    a_restart_counts_every_line_sent("kernel");
}

/// A state file that cannot be written (its path is a directory) is an
/// error at the stop: logged, and exit status 1, so that a supervisor or an
/// upgrade script can tell.
#[test]
fn a_state_file_that_cannot_be_saved_makes_the_stop_fail() {
    let dir = temp_file("x", "").parent().unwrap().to_path_buf();
    let state = dir.join("state-is-a-directory");
    std::fs::create_dir_all(&state).unwrap();
    let path = dir.join("unsaved.toml");
    std::fs::write(&path, restart_config("userspace", &state)).unwrap();
    let d = Daemon::start_from_file(&path, &[]);
    send(d.udp, 100, 0);
    assert_eq!(wait_value(&d, 100.0), 100.0);
    let log = d.log.clone();
    let status = d.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("could not save the state file"), "{text}");
    assert!(
        text.contains("stopped without saving the state file"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// Alert events that a sink could not deliver before the stop are counted
/// in the stop's log lines, whether still queued or cut short by the sink's
/// own drain (an exec sink whose command never ends).
#[test]
fn alerts_a_stop_cuts_short_are_reported_undelivered() {
    let config = r#"
[ingest]
mode = "userspace"
[window]
period = "5s"
every = "500ms"

[[rule]]
name = "r"
measurement = "combined"
group_by = ["ip"]
aggregate = "count"

[[rule.alert]]
warn = '"count" > 0'
[rule.alert.exec]
command = ["/bin/sleep", "100"]
options = { timeout = "1s", retries = 0, concurrency = 1 }
"#;
    let d = Daemon::start(config, &[]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..5 {
        tx.send_to(format!("combined,ip=192.0.2.{i} count=1").as_bytes(), d.udp)
            .unwrap();
    }
    // Five keys alert each interval; one command runs at a time, a second
    // each: the queue holds some whatever the moment of the stop.
    wait_for("queued alerts", Duration::from_secs(15), || {
        d.stats()["sinks"][0]["queue_len"].as_u64() >= Some(3)
    });
    let log = d.log.clone();
    let status = d.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    let stopped = text
        .lines()
        .find(|l| l.contains(" stopped "))
        .unwrap_or_else(|| panic!("no stopped line: {text}"));
    let undelivered: u64 = stopped
        .split_whitespace()
        .find_map(|w| w.strip_prefix("alerts_undelivered="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stopped}"));
    assert!(undelivered >= 3, "{text}");
}

/// Alert events a sink could not deliver before a stop (its receiver down)
/// are kept beside the state file and sent at the next start, once each.
#[test]
fn alerts_a_stop_cuts_short_are_kept_and_sent_at_the_next_start() {
    let state = temp_file("state-outbox", "");
    std::fs::remove_file(&state).unwrap();
    // Nothing listens there until the second start.
    let port = free_tcp_port();
    let config = format!(
        r#"
[ingest]
mode = "userspace"
[window]
period = "1m"
every = "500ms"
[state]
path = "{state}"

[[rule]]
name = "r"
measurement = "combined"
group_by = ["ip"]
aggregate = "count"

[[rule.alert]]
warn = '"count" > 0'
state_changes_only = true
[[rule.alert.http]]
url = "http://127.0.0.1:{port}/hook"
options = {{ timeout = "1s", retries = 1000 }}
"#,
        state = state.display()
    );
    let d = Daemon::start(&config, &[]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..3 {
        tx.send_to(format!("combined,ip=192.0.2.{i} count=1").as_bytes(), d.udp)
            .unwrap();
    }
    wait_for("three events retried", Duration::from_secs(15), || {
        let s = &d.stats()["sinks"][0];
        s["queued"] == 3 && s["retries"].as_u64() >= Some(3)
    });
    let log = d.log.clone();
    let status = d.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains("alerts_kept=3"), "{text}");
    let outbox = state.with_file_name("state-outbox.outbox");
    assert!(outbox.exists(), "{text}");

    let rx = Receiver::start_on(port, false);
    let d = Daemon::start(&config, &[]);
    wait_for("the kept events sent", Duration::from_secs(15), || {
        rx.bodies().len() >= 3
    });
    // The state came back too: nothing is decided again.
    std::thread::sleep(Duration::from_secs(2));
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    for i in 0..3 {
        let ip = format!("192.0.2.{i}");
        let of_ip: Vec<_> = bodies.iter().filter(|b| b.contains(&ip)).collect();
        assert_eq!(of_ip.len(), 1, "{bodies:?}");
        assert!(of_ip[0].contains(r#""level":"WARNING""#), "{bodies:?}");
    }
    assert!(!outbox.exists(), "the outbox is read once");
    assert!(d
        .log_text()
        .contains("sending the alert events the last stop could not deliver"));
    assert!(d.terminate().success());
}
