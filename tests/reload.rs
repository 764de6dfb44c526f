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
    http_request(addr, "POST", path)
}

fn http_request(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
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

/// Kernel mode on a 60 s window (it holds everything a test sends), one
/// rule of `max_keys` keys, and `more` rules after it.
/// Without the overflow sketch: the test counts the lines refused past
/// `max_keys`.
fn kernel_config(max_keys: u64, more: &str, pins: &str) -> String {
    common::without_overflow(&format!(
        r#"
[ingest]
mode = "kernel"
pin_dir = "{pins}"
[http]
reload = true
[window]
period = "60s"
every = "500ms"

[[rule]]
name = "top_combined"
measurement = "combined"
group_by = ["ip", "id"]
field = "count"
as = "totalCount"
max_keys = {max_keys}
{more}"#
    ))
}

/// Sends `lines`, four to a datagram.
fn send_lines(d: &Daemon, lines: impl IntoIterator<Item = String>) {
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let lines: Vec<String> = lines.into_iter().collect();
    for chunk in lines.chunks(4) {
        tx.send_to(chunk.join("\n").as_bytes(), d.udp).unwrap();
    }
}

/// Waits until `total` lines are accounted for (counted or dropped under a
/// reason), then for the window after that; returns the stats.
fn settle(d: &Daemon, total: u64) -> Value {
    d.wait_stats(Duration::from_secs(20), "every line accounted", |s| {
        toptraffic_loadgen::lines_accounted(s) >= total
    });
    d.wait_next_window(Duration::from_secs(10));
    let s = d.stats();
    assert_eq!(toptraffic_loadgen::lines_accounted(&s), total, "{s}");
    s
}

/// Lines dropped, under every reason.
fn dropped(s: &Value) -> u64 {
    s["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

fn map_entries(s: &Value) -> u64 {
    s["kernel"]["setup"]["map_entries"].as_u64().unwrap()
}

/// The top of `rule` as (tags joined by ",") -> value.
fn top_values(d: &Daemon, rule: &str) -> std::collections::HashMap<String, f64> {
    let top = d.get(&format!("/api/v1/top?rule={rule}&limit=100000"));
    top["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let tags = e["tags"].as_object().unwrap();
            let mut k: Vec<String> = tags
                .iter()
                .map(|(n, v)| format!("{n}={}", v.as_str().unwrap()))
                .collect();
            k.sort();
            (k.join(","), e["value"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn kernel_reloads_grow_the_maps_add_rules_and_a_failed_one_keeps_the_old_config() {
    let test = "kernel_reloads_grow_the_maps_add_rules_and_a_failed_one_keeps_the_old_config";
    if !common::kernel_available(test) {
        return;
    }
    let pins = common::pin_dir("reload");
    let path = temp_file("kernel-reload.toml", &kernel_config(1_000, "", &pins));
    let d = Daemon::start_from_file(&path, &["--mode", "kernel"]);
    let s = d.stats();
    assert_eq!(s["mode"], "kernel", "{s}");
    let small = map_entries(&s);
    let kept = "id=1,ip=192.0.2.1";
    let k_lines = |n: usize| (0..n).map(|_| "combined,ip=192.0.2.1,id=1 count=1".to_string());
    let mut sent = 0u64;

    // The kept key first, then three times max_keys keys: a thousand keys
    // fit, the others are dropped under a reason.
    send_lines(&d, k_lines(300));
    sent += 300;
    settle(&d, sent);
    send_lines(
        &d,
        (0..3_000).map(|i| format!("combined,ip=10.1.{}.{},id=1 count=1", i / 256, i % 256)),
    );
    sent += 3_000;
    let s = settle(&d, sent);
    let refused = dropped(&s);
    assert!(refused >= 2_000, "{s}");
    assert_eq!(d.get("/api/v1/top?rule=top_combined")["keys"], 1_000);
    assert_eq!(top_values(&d, "top_combined")[kept], 300.0);

    // SIGHUP raising max_keys past what the key set holds: it grows, the
    // window keeps its keys.
    std::fs::write(&path, kernel_config(20_000, "", &pins)).unwrap();
    sighup(&d);
    let s = wait_reloads(&d, 1, 0);
    let msg = s["reloads"]["last"]["message"].as_str().unwrap();
    assert!(msg.contains("1 rules kept their counts"), "{msg}");
    let grown = map_entries(&s);
    assert!(grown > 20_000 && grown > small, "{s}");
    for n in ["gen_a", "gen_b", "keys", "key_of", "free"] {
        assert!(std::path::Path::new(&pins).join(n).exists(), "{n} unpinned");
    }
    // Twelve thousand keys more, each counted exactly, none dropped.
    send_lines(
        &d,
        (0..12_000).map(|i| format!("combined,ip=10.2.{}.{},id=2 count=2", i / 256, i % 256)),
    );
    send_lines(&d, k_lines(200));
    sent += 12_200;
    let s = settle(&d, sent);
    assert_eq!(dropped(&s), refused, "{s}");
    assert_eq!(s["points_userspace"], 0, "{s}");
    let top = top_values(&d, "top_combined");
    assert_eq!(top.len(), 13_000);
    assert_eq!(top[kept], 500.0, "the kept key's count goes on");
    for i in 0..12_000 {
        let k = format!("id=2,ip=10.2.{}.{}", i / 256, i % 256);
        assert_eq!(top.get(&k), Some(&2.0), "{k}");
    }

    // Over the API: a rule added to the kernel, the maps grow again.
    let ids = "[[rule]]\nname = \"top_ids\"\nmeasurement = \"combined\"\ngroup_by = [\"id\"]\nmax_keys = 20000\n";
    std::fs::write(&path, kernel_config(20_000, ids, &pins)).unwrap();
    let (status, body) = http_post(d.http, "/api/v1/reload");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("1 rules kept their counts, 1 started fresh"),
        "{body}"
    );
    let s = d.stats();
    assert!(map_entries(&s) > 40_000, "{s}");
    send_lines(
        &d,
        (0..100).map(|i| format!("combined,ip=10.3.0.{i},id=77 count=1")),
    );
    send_lines(&d, k_lines(10));
    sent += 110;
    let s = settle(&d, sent);
    assert_eq!(dropped(&s), refused, "{s}");
    assert_eq!(s["points_userspace"], 0, "{s}");
    let ids_top = top_values(&d, "top_ids");
    assert_eq!(ids_top.len(), 2, "{ids_top:?}");
    assert_eq!(ids_top["id=77"], 100.0);
    assert_eq!(ids_top["id=1"], 10.0);
    assert_eq!(top_values(&d, "top_combined")[kept], 510.0);

    // Maps of 300 million entries are beyond what the kernel creates: the
    // reload fails, says why, and the old config goes on counting.
    let huge = format!(
        "{}[[rule]]\nname = \"top_ips\"\nmeasurement = \"combined\"\ngroup_by = [\"ip\"]\nmax_keys = 100000000\n",
        ids.replace("20000", "100000000")
    );
    std::fs::write(&path, kernel_config(100_000_000, &huge, &pins)).unwrap();
    let (status, body) = http_post(d.http, "/api/v1/reload");
    assert_eq!(status, 400, "{body}");
    for want in [
        "the kernel path cannot take the new rules",
        "rule \\\"top_ips\\\" max_keys = 100000000",
        &format!("the kernel's holds {}", map_entries(&s)),
        "lower max_keys",
        "the old one stays in force",
    ] {
        assert!(body.contains(want), "{want:?} not in {body}");
    }
    let after = wait_reloads(&d, 2, 1);
    assert_eq!(map_entries(&after), map_entries(&s), "{after}");
    let (status, body) = http_request(d.http, "GET", "/api/v1/top?rule=top_ips");
    assert_eq!(status, 404, "the refused rule is not in force: {body}");
    send_lines(&d, k_lines(20));
    sent += 20;
    let s = settle(&d, sent);
    assert_eq!(dropped(&s), refused, "{s}");
    assert_eq!(top_values(&d, "top_combined")[kept], 530.0);
    assert_eq!(top_values(&d, "top_ids")["id=1"], 30.0);
    assert!(d.terminate().success());
    assert!(!std::path::Path::new(&pins).exists(), "pins left behind");
}
