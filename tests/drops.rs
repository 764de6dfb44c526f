//! End to end: every line received is counted by a rule or under one drop
//! reason, once, even when a rule's key table overflows at every level (a
//! receive thread's table, the interval's merge, the kernel's map, the
//! window).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{kernel_available, pin_dir, short_window_config, with_ingest, with_max_keys, Daemon};
use serde_json::Value;
use toptraffic_loadgen::lines_accounted;

const MAX_KEYS: u64 = 1_000;
const MALFORMED_PER_BATCH: u64 = 30;

/// Sends `keys` distinct keys of batch `batch`, one line each, ten lines a
/// datagram, from several sockets so that several receive threads count
/// them, then malformed lines in datagrams of their own. Returns the lines.
fn send_batch(udp: SocketAddr, batch: u64, keys: u64) -> u64 {
    let senders: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let valid: Vec<String> = (0..keys)
        .map(|k| format!("combined,ip=10.{batch}.{},id={k} count=1i", k % 7))
        .collect();
    let malformed = vec!["combined,ip=1.2.3.4 count=".to_string(); MALFORMED_PER_BATCH as usize];
    for (i, chunk) in valid.chunks(10).chain(malformed.chunks(10)).enumerate() {
        senders[i % senders.len()]
            .send_to(chunk.join("\n").as_bytes(), udp)
            .unwrap();
        if i % 20 == 19 {
            // Paced, so that no loopback receive queue overflows.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    keys + MALFORMED_PER_BATCH
}

/// Sends the batches, each into a later interval than the one before (so
/// each meets a full window), and returns the stats once all are in.
fn flood(d: &Daemon, batches: &[u64]) -> (u64, Value) {
    let mut sent = 0;
    for (b, keys) in batches.iter().enumerate() {
        sent += send_batch(d.udp, b as u64, *keys);
        d.wait_stats(Duration::from_secs(30), "the batch accounted", |s| {
            lines_accounted(s) >= sent
        });
        d.wait_next_window(Duration::from_secs(20));
    }
    (sent, d.wait_next_window(Duration::from_secs(20)))
}

/// What holds in either mode once every batch is in: with one rule per
/// measurement, the lines counted are the lines in the window, and every
/// other line is dropped under one reason.
fn assert_accounted(s: &Value, sent: u64, batches: &[u64]) {
    assert_eq!(s["dropped"]["receive_queue"], 0, "{s}");
    assert_eq!(
        lines_accounted(s),
        sent,
        "received = counted + dropped: {s}"
    );
    let n = batches.len() as u64;
    assert_eq!(s["dropped"]["parse_error"], n * MALFORMED_PER_BATCH, "{s}");
    let rule = &s["rules"][0];
    assert_eq!(rule["name"], "top_combined");
    assert_eq!(rule["keys"], MAX_KEYS, "{s}");
    let points = s["points_userspace"].as_u64().unwrap() + s["points_kernel"].as_u64().unwrap();
    assert_eq!(points, MAX_KEYS, "{s}");
    let valid: u64 = batches.iter().sum();
    let refused = s["dropped"]["key_table_full"].as_u64().unwrap()
        + s["dropped"]["evicted"].as_u64().unwrap();
    assert_eq!(refused, valid - MAX_KEYS, "{s}");
}

#[test]
fn userspace_counts_every_line_once_when_a_rule_overflows() {
    // Keys stay a minute: each batch's new keys meet a full window.
    let config = with_ingest(
        &with_max_keys(&short_window_config("1m", "300ms"), MAX_KEYS as usize),
        "threads = 2",
    );
    let d = Daemon::start(&config, &["--mode", "userspace"]);
    assert_eq!(d.stats()["mode"], "userspace");
    let batches = [1_000; 5];
    let (sent, s) = flood(&d, &batches);
    assert_accounted(&s, sent, &batches);
    // One rule takes the measurement: what it refused, wherever, is dropped.
    assert_eq!(
        s["dropped"]["key_table_full"], s["rules"][0]["overflow_lines"],
        "{s}"
    );
    assert_eq!(s["dropped"]["evicted"], 0, "{s}");
    assert!(d.terminate().success());
}

#[test]
fn kernel_counts_every_line_once_when_its_map_evicts_and_a_rule_overflows() {
    let name = "kernel_counts_every_line_once_when_its_map_evicts_and_a_rule_overflows";
    if !kernel_available(name) {
        return;
    }
    let config = with_ingest(
        &with_max_keys(&short_window_config("1m", "2s"), MAX_KEYS as usize),
        &format!("pin_dir = \"{}\"", pin_dir("drops")),
    );
    let d = Daemon::start(&config, &["--mode", "kernel"]);
    let s = d.stats();
    assert_eq!(s["mode"], "kernel", "{s}");
    let entries = s["kernel"]["setup"]["map_entries"].as_u64().unwrap();
    // The first batch overflows the kernel's map in any interval it lands
    // in (even split over two); the second meets a full window.
    let batches = [2 * entries + 2_000, 1_000];
    let (sent, s) = flood(&d, &batches);
    assert_accounted(&s, sent, &batches);
    assert!(s["dropped"]["evicted"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["points_userspace"], 0, "{s}");
    assert_eq!(
        s["dropped"]["key_table_full"], s["rules"][0]["overflow_lines"],
        "{s}"
    );
    assert!(d.terminate().success());
}
