//! End to end: live reload (SIGHUP and the API) and restarts through the
//! state file, on the real binary over loopback.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{temp_file, Daemon, BIN};
use serde_json::Value;

/// A 6 s window every 500 ms (a tenth of the seed's: 20,000 a minute is
/// 2,000 per window), one rule with an exec-free log alert.
fn config(log: &std::path::Path, state: &std::path::Path, warn: u64) -> String {
    format!(
        r#"
[ingest]
mode = "userspace"
[http]
reload = true
[window]
period = "6s"
every = "500ms"
[state]
path = "{state}"

[[rule]]
name = "top_combined"
measurement = "combined"
group_by = ["ip", "id"]
field = "count"
as = "totalCount"

[[rule.alert]]
warn = '"totalCount" > {warn}'
state_changes_only = "5m"
[rule.alert.log]
path = "{log}"

[[rule]]
name = "top_ips"
measurement = "combined"
group_by = ["ip"]
"#,
        state = state.display(),
        log = log.display()
    )
}

fn sighup(d: &Daemon) {
    // SAFETY: kill(2) takes no pointers, so it touches no memory of ours;
    // the pid is our child's, reaped only when a Daemon stops it (start
    // returns one whose child has not exited), so it names no other process.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
}

fn value(d: &Daemon, rule: &str) -> f64 {
    let top = d.get(&format!("/api/v1/top?rule={rule}&limit=1"));
    top["top"][0]["value"].as_f64().unwrap_or(0.0)
}

fn wait_reloads(d: &Daemon, ok: u64, failed: u64) -> Value {
    d.wait_stats(Duration::from_secs(10), "the reload", |s| {
        s["reloads"]["ok"] == ok && s["reloads"]["failed"] == failed
    })
}

#[test]
fn reloads_keep_counts_and_a_bad_config_keeps_the_old_one() {
    let dir = temp_file("x", "").parent().unwrap().to_path_buf();
    let log = dir.join("alerts.log");
    let state = dir.join("state");
    let path = dir.join("reload.toml");
    std::fs::write(&path, config(&log, &state, 1750)).unwrap();
    let d = Daemon::start_from_file(&path, &[]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..500 {
        tx.send_to(b"combined,ip=192.0.2.7,id=1 count=1", d.udp)
            .unwrap();
    }
    d.wait_stats(Duration::from_secs(10), "500 points", |s| {
        s["points_userspace"] == 500
    });
    d.wait_next_window(Duration::from_secs(5));
    assert_eq!(value(&d, "top_combined"), 500.0);

    // A threshold change: every count stays.
    std::fs::write(&path, config(&log, &state, 400)).unwrap();
    sighup(&d);
    let s = wait_reloads(&d, 1, 0);
    assert!(
        s["reloads"]["last"]["message"]
            .as_str()
            .unwrap()
            .contains("2 rules kept their counts"),
        "{s}"
    );
    assert_eq!(value(&d, "top_combined"), 500.0);
    assert_eq!(value(&d, "top_ips"), 500.0);
    // The new threshold applies at the next rotation: 500 > 400.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("WARNING")
    {
        assert!(
            Instant::now() < deadline,
            "no WARNING after lowering the threshold"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A typo: refused with file and line, the old config goes on counting.
    let mut bad = config(&log, &state, 400);
    bad = bad.replace(
        "group_by = [\"ip\"]\n",
        "group_by = [\"ip\"]\ngroup_bye = 1\n",
    );
    std::fs::write(&path, &bad).unwrap();
    sighup(&d);
    let s = wait_reloads(&d, 1, 1);
    let msg = s["reloads"]["last"]["message"].as_str().unwrap();
    let line = bad
        .lines()
        .position(|l| l.starts_with("group_bye"))
        .unwrap()
        + 1;
    assert!(msg.contains(&format!("reload.toml:{line}:")), "{msg}");
    assert!(msg.contains("group_bye"), "{msg}");
    assert_eq!(value(&d, "top_combined"), 500.0);

    // The same through the API; a regrouped rule starts fresh.
    let regrouped =
        config(&log, &state, 400).replace("group_by = [\"ip\"]\n", "group_by = [\"id\"]\n");
    std::fs::write(&path, regrouped).unwrap();
    let (status, body) = http_post(d.http, "/api/v1/reload");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("1 rules kept their counts, 1 started fresh"),
        "{body}"
    );
    assert_eq!(value(&d, "top_combined"), 500.0);
    assert_eq!(d.get("/api/v1/top?rule=top_ips")["keys"], 0);
}

fn http_post(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, out)
}

#[test]
fn a_restart_keeps_a_steady_key_continuous_and_sends_no_second_warning() {
    let dir = temp_file("x", "").parent().unwrap().to_path_buf();
    let log = dir.join("alerts.log");
    let state = dir.join("state");
    let path = dir.join("restart.toml");
    std::fs::write(&path, config(&log, &state, 1750)).unwrap();
    // A fixed port, so that the second daemon receives what the sender sends.
    let port = common::free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start_from_file_on(&path, &listen, &[]);

    // 20,000 a minute: 2,000 per 6 s window.
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let to = d.udp;
    let sender = std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let mut n = 0u64;
        while !s2.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(60) {
            let due = (start.elapsed().as_secs_f64() * 333.0) as u64;
            while n < due {
                let _ = sock.send_to(b"combined,ip=192.0.2.9,id=9 count=1", to);
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let warned = |l: &std::path::Path| {
        std::fs::read_to_string(l)
            .unwrap_or_default()
            .lines()
            .filter(|x| x.contains("\"WARNING\""))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while warned(&log) == 0 {
        assert!(Instant::now() < deadline, "no WARNING");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let before = value(&d, "top_combined");
    assert!(before > 1750.0, "{before}");

    // Restart: SIGTERM writes the state, the new daemon restores it.
    assert!(d.terminate().success());
    assert!(state.exists(), "no state file written");
    let d2 = Daemon::start_from_file_on(&path, &listen, &[]);
    // Right away, the window is the one saved: no minute of blindness.
    let after = value(&d2, "top_combined");
    assert!(after > 1750.0, "the window restarted empty: {after}");
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        let v = value(&d2, "top_combined");
        assert!(v > 1750.0, "the value dipped after the restart: {v}");
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    assert_eq!(warned(&log), 1, "a second WARNING after the restart");
    let alerts = d2.get("/api/v1/alerts");
    assert_eq!(
        alerts["blocks"][0]["alerts"][0]["level"], "WARNING",
        "{alerts}"
    );
    let _ = BIN;
}
