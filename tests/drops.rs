//! End to end: every line received is counted by a rule or under one drop
//! reason, once, even when a rule's key table overflows at every level (a
//! receive thread's table, the interval's merge, the kernel's map, the
//! window), with one rule or several per measurement, and the points are
//! split by the path that received the lines. With a rule's overflow sketch
//! (on by default), the lines the window has no room for are counted in the
//! sketch: they stay points, and only the interval tables' refusals drop.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{
    kernel_available, pin_dir, short_window_config, with_ingest, with_max_keys, without_overflow,
    Daemon,
};
use serde_json::Value;
use toptraffic_loadgen::lines_accounted;

const MAX_KEYS: u64 = 1_000;
const MALFORMED_PER_BATCH: u64 = 30;

/// Sends `keys` distinct keys of batch `batch`, one line each, ten lines a
/// datagram, from several sockets so that several receive threads count
/// them, then malformed lines in datagrams of their own. Returns the lines.
fn send_batch(udp: SocketAddr, batch: u64, keys: u64) -> u64 {
    let valid: Vec<String> = (0..keys)
        .map(|k| format!("combined,ip=10.{batch}.{},id={k} count=1i", k % 7))
        .collect();
    send_lines(udp, &[valid]);
    keys + MALFORMED_PER_BATCH
}

/// Sends each group of lines ten a datagram (a datagram never mixes two
/// groups), from several sockets so that several receive threads count
/// them, then [`MALFORMED_PER_BATCH`] malformed lines.
fn send_lines(udp: SocketAddr, groups: &[Vec<String>]) {
    let senders: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let malformed = vec!["combined,ip=1.2.3.4 count=".to_string(); MALFORMED_PER_BATCH as usize];
    let datagrams = groups
        .iter()
        .flat_map(|g| g.chunks(10))
        .chain(malformed.chunks(10));
    for (i, chunk) in datagrams.enumerate() {
        senders[i % senders.len()]
            .send_to(chunk.join("\n").as_bytes(), udp)
            .unwrap();
        if i % 20 == 19 {
            // Paced, so that no loopback receive queue overflows.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Sends the batches, each into a later interval than the one before (so
/// each meets a full window), and returns the stats once all are in.
fn flood(d: &Daemon, batches: &[u64]) -> (u64, Value) {
    flood_with(d, batches.len(), |b| {
        send_batch(d.udp, b, batches[b as usize])
    })
}

/// As [`flood`], with batch `b` sent by `send(b)`, which returns its lines.
fn flood_with(d: &Daemon, batches: usize, send: impl Fn(u64) -> u64) -> (u64, Value) {
    let mut sent = 0;
    for b in 0..batches as u64 {
        sent += send(b);
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
        &without_overflow(&with_max_keys(
            &short_window_config("1m", "300ms"),
            MAX_KEYS as usize,
        )),
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
fn lines_in_the_overflow_sketch_are_points_and_received_is_still_counted_plus_dropped() {
    let config = with_ingest(
        &with_max_keys(&short_window_config("1m", "300ms"), MAX_KEYS as usize),
        "threads = 2",
    );
    let d = Daemon::start(&config, &["--mode", "userspace"]);
    let batches = [1_000; 5];
    let (sent, s) = flood(&d, &batches);
    assert_eq!(s["dropped"]["receive_queue"], 0, "{s}");
    assert_eq!(
        lines_accounted(&s),
        sent,
        "received = counted + dropped: {s}"
    );
    let rule = &s["rules"][0];
    assert_eq!(rule["keys"], MAX_KEYS, "{s}");
    let tier = &rule["overflow"];
    let estimated = tier["lines_estimated"].as_u64().unwrap();
    let refused = s["dropped"]["key_table_full"].as_u64().unwrap();
    // Only an interval table's refusals drop; the window's go to the sketch.
    assert_eq!(
        s["dropped"]["key_table_full"], rule["overflow_lines"],
        "{s}"
    );
    let valid: u64 = batches.iter().sum();
    assert!(estimated > 0, "{s}");
    assert_eq!(estimated + refused, valid - MAX_KEYS, "{s}");
    let points = s["points_userspace"].as_u64().unwrap();
    assert_eq!(points, MAX_KEYS + estimated, "{s}");
    // One-line keys reach no threshold: nothing moved between the tiers.
    assert_eq!(
        (&tier["promotions"], &tier["demotions"]),
        (&0.into(), &0.into()),
        "{s}"
    );
    assert!(d.terminate().success());
}

#[test]
fn a_heavy_key_behind_a_full_window_is_promoted_and_shown_approximate() {
    // Thresholds of 500 and 900; max_keys 1,000 filled by one-line keys.
    let config = with_ingest(
        &with_max_keys(&short_window_config("1m", "300ms"), MAX_KEYS as usize)
            .replace("> 17500", "> 500")
            .replace("> 22500", "> 900"),
        "threads = 2",
    );
    let d = Daemon::start(&config, &["--mode", "userspace"]);
    let (_, s) = flood(&d, &[1_000]);
    assert_eq!(s["rules"][0]["keys"], MAX_KEYS, "{s}");
    let heavy = vec!["combined,ip=203.0.113.9,id=heavy count=1i".to_string(); 2_000];
    send_lines(d.udp, &[heavy]);
    let s = d.wait_stats(Duration::from_secs(30), "the heavy key promoted", |s| {
        s["rules"][0]["overflow"]["promotions"].as_u64() == Some(1)
            && s["rules"][0]["overflow"]["lines_estimated"].as_u64() >= Some(500)
    });
    assert_eq!(s["rules"][0]["overflow"]["demotions"], 1, "{s}");
    assert_eq!(s["rules"][0]["keys"], MAX_KEYS, "{s}");
    // All 2,000 lines arrive eventually; the estimate never falls short,
    // and exceeds the truth by at most the bound shown with it.
    d.wait_stats(Duration::from_secs(30), "every line accounted", |s| {
        lines_accounted(s) >= 1_000 + MALFORMED_PER_BATCH * 2 + 2_000
    });
    d.wait_next_window(Duration::from_secs(20));
    let top = d.get("/api/v1/top?rule=top_combined&limit=1");
    let row = &top["top"][0];
    assert_eq!(row["tags"]["id"], "heavy", "{top}");
    assert_eq!(row["approximate"], true, "{top}");
    let bound = row["error_bound"].as_f64().unwrap();
    let value = row["value"].as_f64().unwrap();
    assert!(
        (2_000.0..=2_000.0 + bound).contains(&value),
        "{value} within {bound}: {top}"
    );
    // The alert fires on it, marked approximate.
    let alerts = d.get("/api/v1/alerts");
    let key = alerts["blocks"][0]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["tags"]["id"] == "heavy")
        .cloned()
        .unwrap_or_else(|| panic!("heavy alerting: {alerts}"));
    assert_eq!(key["level"], "CRITICAL", "{alerts}");
    assert_eq!(key["approximate"], true, "{alerts}");
    assert!(key["error_bound"].as_f64().is_some(), "{alerts}");
    assert!(
        d.log_text().contains("rule entered overflow"),
        "{}",
        d.log_text()
    );
    assert!(d.terminate().success());
}

#[test]
fn kernel_counts_every_line_once_when_its_map_fills_and_a_rule_overflows() {
    let name = "kernel_counts_every_line_once_when_its_map_fills_and_a_rule_overflows";
    if !kernel_available(name) {
        return;
    }
    let config = with_ingest(
        &without_overflow(&with_max_keys(
            &short_window_config("1m", "2s"),
            MAX_KEYS as usize,
        )),
        &format!("pin_dir = \"{}\"", pin_dir("drops")),
    );
    let d = Daemon::start(&config, &["--mode", "kernel"]);
    let s = d.stats();
    assert_eq!(s["mode"], "kernel", "{s}");
    let entries = s["kernel"]["setup"]["map_entries"].as_u64().unwrap();
    // The first batch fills the kernel's map in any interval it lands in
    // (even split over two): the datagrams it has no room for go to
    // userspace whole, and nothing is lost. The second meets a full window.
    let batches = [2 * entries + 2_000, 1_000];
    let (sent, s) = flood(&d, &batches);
    assert_accounted(&s, sent, &batches);
    assert_eq!(s["dropped"]["evicted"], 0, "{s}");
    let map_full = s["kernel"]["passed_to_userspace"]["map_full"].as_u64();
    assert!(map_full.unwrap() > 0, "{s}");
    assert_eq!(
        s["dropped"]["key_table_full"], s["rules"][0]["overflow_lines"],
        "{s}"
    );
    assert!(d.terminate().success());
}

/// Three rules take `combined`: the first only the `edge` lines, by
/// (ip, id); the second every line by id; the third every line by ip.
fn shared_measurement_config(every: &str, extra_ingest: &str) -> String {
    let rule = |name: &str, group_by: &str, filter: &str| {
        format!(
            "[[rule]]\nname = \"{name}\"\nmeasurement = \"combined\"\ngroup_by = {group_by}\n\
             {filter}aggregate = \"sum\"\nfield = \"count\"\nas = \"totalCount\"\nmax_keys = {MAX_KEYS}\n\n"
        )
    };
    format!(
        "[ingest]\n{extra_ingest}\n\n[window]\nperiod = \"1m\"\nevery = \"{every}\"\n\n{}{}{}",
        rule("pairs", "[\"ip\", \"id\"]", "where = { role = \"edge\" }\n"),
        rule("stores", "[\"id\"]", ""),
        rule("ips", "[\"ip\"]", ""),
    )
}

/// Userspace lines per batch: their escaped `uri` makes the kernel pass
/// their datagrams to userspace; fewer keys than max_keys, so that no
/// receive thread's table refuses them.
const ESCAPED_PER_BATCH: u64 = 300;

/// Batch `batch`: `keys` lines the kernel can count and
/// [`ESCAPED_PER_BATCH`] it cannot, every line with a key of its own in
/// every rule, half of them `edge`. The id says which path received the
/// line and its role: `k` or `u`, then `e` (edge) or `c`.
fn send_mixed(udp: SocketAddr, batch: u64, keys: u64) -> u64 {
    let line = |path: &str, uri: &str, k: u64| {
        let role = if k.is_multiple_of(2) { "edge" } else { "core" };
        let ip_hi = if path == "k" { batch } else { 200 + batch };
        format!(
            "combined,uri={uri},ip=10.{ip_hi}.{}.{},id={path}{}{batch}-{k},role={role} count=1i",
            k / 250,
            k % 250,
            &role[..1],
        )
    };
    let kernel: Vec<String> = (0..keys).map(|k| line("k", "/p", k)).collect();
    let escaped: Vec<String> = (0..ESCAPED_PER_BATCH)
        .map(|k| line("u", r"/a\ b", k))
        .collect();
    send_lines(udp, &[kernel, escaped]);
    keys + ESCAPED_PER_BATCH + MALFORMED_PER_BATCH
}

/// What holds in either mode with the rules sharing the measurement.
fn assert_shared_accounted(s: &Value, sent: u64, batches: u64) {
    assert_eq!(s["dropped"]["receive_queue"], 0, "{s}");
    assert_eq!(
        lines_accounted(s),
        sent,
        "received = counted + dropped: {s}"
    );
    assert_eq!(
        s["dropped"]["parse_error"],
        batches * MALFORMED_PER_BATCH,
        "{s}"
    );
    for (i, name) in ["pairs", "stores", "ips"].iter().enumerate() {
        let rule = &s["rules"][i];
        assert_eq!(rule["name"], *name);
        assert_eq!(rule["keys"], MAX_KEYS, "{s}");
        assert!(rule["overflow_lines"].as_u64().unwrap() > 0, "{s}");
    }
    assert!(s["dropped"]["key_table_full"].as_u64().unwrap() > 0, "{s}");
}

/// The lines in the window of the rule that owns them, by the path that
/// received them: `pairs` owns the edge lines (it is first), `stores` the
/// others (no receive thread's table and no kernel map refuses a line;
/// every line has a key of its own, and its value is its count of 1).
fn window_points(d: &Daemon) -> (u64, u64) {
    let (mut kernel, mut userspace) = (0u64, 0u64);
    for (rule, owned) in [("pairs", "e"), ("stores", "c")] {
        let top = d.get(&format!("/api/v1/top?rule={rule}&limit={MAX_KEYS}"));
        for row in top["top"].as_array().unwrap() {
            let id = row["tags"]["id"].as_str().unwrap();
            let value = row["value"].as_f64().unwrap() as u64;
            match (&id[..1], &id[1..2]) {
                ("k", o) if o == owned => kernel += value,
                ("u", o) if o == owned => userspace += value,
                _ => {}
            }
        }
    }
    (kernel, userspace)
}

#[test]
fn userspace_counts_every_line_once_when_rules_share_a_measurement() {
    let d = Daemon::start(
        &without_overflow(&shared_measurement_config("300ms", "threads = 2")),
        &["--mode", "userspace"],
    );
    assert_eq!(d.stats()["mode"], "userspace");
    let batches = [3_000, 3_000, 1_000];
    let (sent, s) = flood_with(&d, batches.len(), |b| {
        send_mixed(d.udp, b, batches[b as usize])
    });
    assert_shared_accounted(&s, sent, batches.len() as u64);
    assert_eq!(s["points_kernel"], 0, "{s}");
    assert_eq!(s["dropped"]["evicted"], 0, "{s}");
    assert!(d.terminate().success());
}

#[test]
fn kernel_splits_points_by_path_when_rules_share_a_measurement() {
    let name = "kernel_splits_points_by_path_when_rules_share_a_measurement";
    if !kernel_available(name) {
        return;
    }
    let config = without_overflow(&shared_measurement_config(
        "2s",
        &format!("pin_dir = \"{}\"", pin_dir("drops-shared")),
    ));
    let d = Daemon::start(&config, &["--mode", "kernel"]);
    let s = d.stats();
    assert_eq!(s["mode"], "kernel", "{s}");
    let entries = s["kernel"]["setup"]["map_entries"].as_u64().unwrap();
    // Every batch's keys (2.5 per line over the rules) fit the kernel's
    // key set, which holds a key while it is in the window, so that every
    // line the kernel can parse is counted there; the first three batches
    // together overflow every rule, and the last, and its userspace lines,
    // meet full windows.
    let batches = [MAX_KEYS / 2, MAX_KEYS / 2, MAX_KEYS / 2, 100];
    assert!(5 * batches.iter().sum::<u64>() / 2 <= entries, "{s}");
    let (sent, s) = flood_with(&d, batches.len(), |b| {
        send_mixed(d.udp, b, batches[b as usize])
    });
    assert_shared_accounted(&s, sent, batches.len() as u64);
    assert_eq!(s["dropped"]["evicted"], 0, "{s}");
    assert_eq!(s["kernel"]["passed_to_userspace"]["map_full"], 0, "{s}");
    let escaped = s["kernel"]["passed_to_userspace"]["escape"].as_u64();
    assert_eq!(
        escaped,
        Some(batches.len() as u64 * ESCAPED_PER_BATCH / 10),
        "{s}"
    );
    let (kernel, userspace) = window_points(&d);
    assert_eq!(s["points_kernel"], kernel, "{s}");
    assert_eq!(s["points_userspace"], userspace, "{s}");
    // The last batch's userspace lines all met a full window.
    assert!(userspace < batches.len() as u64 * ESCAPED_PER_BATCH, "{s}");
    assert!(d.terminate().success());
}
