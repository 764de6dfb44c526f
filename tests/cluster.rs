//! End to end: nodes meeting in a real Redis (Debian's redis-server, started
//! here on a free loopback port). Two daemons see each other; one that stops
//! leaves the other's view within two intervals; with Redis gone, a node
//! says so in /api/v1/cluster and /metrics and goes on counting, and sees
//! the cluster again when Redis is back.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_tcp_port, skip, temp_file, wait_for, Daemon};
use serde_json::Value;

const REDIS: &str = "/usr/bin/redis-server";

/// A Redis of the test's own, stopped by pid on drop.
struct Redis(Child);

impl Redis {
    fn start(port: u16) -> Redis {
        let dir = temp_file("x", "").parent().unwrap().to_path_buf();
        let child = Command::new(REDIS)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis(child)
    }
}

/// A Redis of the test's own on a free port, or None (the test skips,
/// saying why) when redis-server is not installed.
fn redis(test: &str) -> Option<(u16, Redis)> {
    if !Path::new(REDIS).exists() {
        skip(
            test,
            "redis-server is not installed (apt-get install redis-server)",
        );
        return None;
    }
    let port = free_tcp_port();
    Some((port, Redis::start(port)))
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(port: u16, node: &str) -> String {
    config_window(port, node, "4s")
}

/// With a warn threshold of 100: the exchange prunes at 100 / N.
fn config_window(port: u16, node: &str, period: &str) -> String {
    format!(
        r#"
[ingest]
mode = "userspace"
[window]
period = "{period}"
every = "500ms"
[cluster]
redis = "redis://127.0.0.1:{port}"
node = "{node}"
timeout = "200ms"

[[rule]]
name = "top"
measurement = "combined"
group_by = ["ip", "id"]

[[rule.alert]]
warn = '"count" > 100'
[rule.alert.log]
path = "-"
"#
    )
}

fn cluster(d: &Daemon) -> Value {
    d.get("/api/v1/cluster")
}

fn members(d: &Daemon) -> Vec<String> {
    cluster(d)["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn nodes_meet_in_redis_leave_on_stop_and_count_alone_while_it_is_down() {
    let Some((port, redis)) =
        redis("nodes_meet_in_redis_leave_on_stop_and_count_alone_while_it_is_down")
    else {
        return;
    };
    let a = Daemon::start(&config(port, "node-a"), &[]);
    let b = Daemon::start(&config(port, "node-b"), &[]);
    let both = vec!["node-a".to_string(), "node-b".to_string()];
    wait_for("both nodes in both views", Duration::from_secs(10), || {
        members(&a) == both && members(&b) == both
    });
    let c = cluster(&a);
    assert_eq!(c["node"], "node-a");
    assert_eq!(c["up"], true);
    assert_eq!(c["redis"][0], format!("redis://127.0.0.1:{port}"));
    let m = a.get_text("/metrics");
    assert!(m.contains("toptraffic_cluster_up 1"), "{m}");
    assert!(m.contains("toptraffic_cluster_members 2"), "{m}");

    // b stops: it takes itself out at once.
    assert!(b.terminate().success());
    wait_for("b gone from a's view", Duration::from_secs(5), || {
        members(&a) == ["node-a"]
    });

    // Redis goes: a says so, and goes on counting its own traffic.
    drop(redis);
    wait_for("a sees Redis down", Duration::from_secs(5), || {
        cluster(&a)["up"] == false
    });
    let c = cluster(&a);
    assert!(
        c["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{c}"
    );
    assert!(a.get_text("/metrics").contains("toptraffic_cluster_up 0"));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..50 {
        sock.send_to(b"combined,ip=192.0.2.1,id=1 count=1", a.udp)
            .unwrap();
    }
    a.wait_stats(
        Duration::from_secs(5),
        "lines counted while Redis is down",
        |s| s["points_userspace"] == 50,
    );
    assert!(
        a.log_text().contains("cluster: Redis does not answer"),
        "{}",
        a.log_text()
    );

    // Redis is back on the same port: a meets it again.
    let _redis = Redis::start(port);
    wait_for("a sees Redis again", Duration::from_secs(10), || {
        let c = cluster(&a);
        c["up"] == true && c["members"][0] == "node-a"
    });
    assert!(a.log_text().contains("cluster: Redis answers"));
    assert!(a.terminate().success());
}

/// Two daemons given one node name count as one member and would both
/// send: each sees the other's heartbeat under its name and says so.
#[test]
fn two_daemons_with_one_node_name_are_told_apart_and_reported() {
    let Some((port, _redis)) = redis("two_daemons_with_one_node_name_are_told_apart_and_reported")
    else {
        return;
    };
    let a = Daemon::start(&config(port, "same"), &[]);
    let b = Daemon::start(&config(port, "same"), &[]);
    let said = |d: &Daemon| {
        d.log_text()
            .contains("another daemon beats under this node's name")
    };
    wait_for(
        "both daemons to report the other",
        Duration::from_secs(10),
        || said(&a) && said(&b),
    );
    // Alone again, the one left says so.
    assert!(b.terminate().success());
    wait_for("the twin gone", Duration::from_secs(10), || {
        a.log_text()
            .contains("no other daemon beats under this node's name now")
    });
    assert!(a.terminate().success());
}

#[test]
fn without_a_cluster_section_the_cluster_api_says_so() {
    let d = Daemon::start(
        "[ingest]\nmode = \"userspace\"\n[[rule]]\nname = \"r\"\nmeasurement = \"m\"\ngroup_by = [\"ip\"]\n",
        &[],
    );
    let (status, body) = d.get_status("/api/v1/cluster");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no [cluster]"), "{body}");
    assert!(!d.get_text("/metrics").contains("cluster_up"));
}

fn send(to: SocketAddr, ip: &str, n: usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let line = format!("combined,ip={ip},id=1 count=1");
    for _ in 0..n {
        sock.send_to(line.as_bytes(), to).unwrap();
    }
}

#[test]
fn the_cluster_value_of_every_key_that_can_reach_the_threshold_is_exact() {
    let Some((port, _redis)) =
        redis("the_cluster_value_of_every_key_that_can_reach_the_threshold_is_exact")
    else {
        return;
    };
    // A long window: what is sent stays in it for the whole test.
    let a = Daemon::start(&config_window(port, "node-a", "60s"), &[]);
    let b = Daemon::start(&config_window(port, "node-b", "60s"), &[]);
    wait_for("both nodes in both views", Duration::from_secs(10), || {
        members(&a).len() == 2 && members(&b).len() == 2
    });
    // T = 100, N = 2: candidates hold 50 or more on some node.
    // K: 60 + 60, a candidate on both; L: 70 + 20, a candidate on a only,
    // b's 20 comes in phase 2; M: 30 + 30 = 60, under 50 on each, and
    // rightly absent (it cannot reach 100).
    send(a.udp, "10.0.0.1", 60);
    send(b.udp, "10.0.0.1", 60);
    send(a.udp, "10.0.0.2", 70);
    send(b.udp, "10.0.0.2", 20);
    send(a.udp, "10.0.0.3", 30);
    send(b.udp, "10.0.0.3", 30);
    let want = |d: &Daemon| {
        let (status, body) = d.get_status("/api/v1/top?rule=top&scope=cluster");
        if status != 200 {
            return None;
        }
        let top: Value = serde_json::from_str(&body).unwrap();
        let rows: Vec<(String, f64)> = top["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["tags"]["ip"].as_str().unwrap().to_string(),
                    r["value"].as_f64().unwrap(),
                )
            })
            .collect();
        Some((rows, top))
    };
    let expected = vec![
        ("10.0.0.1".to_string(), 120.0),
        ("10.0.0.2".to_string(), 90.0),
    ];
    for d in [&a, &b] {
        wait_for("the exact cluster values", Duration::from_secs(10), || {
            want(d).is_some_and(|(rows, _)| rows == expected)
        });
    }
    let (_, top) = want(&a).unwrap();
    assert_eq!(top["cluster"]["threshold"], 50, "{top}");
    assert_eq!(top["cluster"]["complete"], true, "{top}");
    assert_eq!(
        top["cluster"]["nodes"],
        serde_json::json!(["node-a", "node-b"])
    );
    assert_eq!(
        top["top"][1]["shares"],
        serde_json::json!({"node-a": 70, "node-b": 20}),
        "{top}"
    );
    // Each node's own view is still its own.
    let own = a.get("/api/v1/top?rule=top");
    assert_eq!(own["top"][0]["value"], 70, "{own}");
    let before = cluster(&a)["rules"]["top"].clone();

    // The traffic follows the candidates, not the keys: 3,000 more keys on
    // each node, all under T / N, add nothing to an exchange.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in [&a, &b] {
        for i in 0..3_000 {
            let line = format!("combined,ip=10.9.{}.{},id=1 count=1", i / 256, i % 256);
            sock.send_to(line.as_bytes(), d.udp).unwrap();
        }
    }
    for d in [&a, &b] {
        d.wait_stats(Duration::from_secs(10), "the small keys counted", |s| {
            s["rules"][0]["keys"] == 3_003
        });
    }
    let end = before["window_end"].clone();
    wait_for(
        "an exchange after the small keys",
        Duration::from_secs(10),
        || {
            let r = &cluster(&a)["rules"]["top"];
            r["window_end"] != end && a.stats()["rules"][0]["keys"] == 3_003
        },
    );
    // Two more exchanges, so that one is wholly after the keys arrived.
    std::thread::sleep(Duration::from_millis(1_200));
    let after = cluster(&a)["rules"]["top"].clone();
    assert_eq!(after["candidates"], 2, "{after}");
    assert_eq!(after["complete"], true, "{after}");
    assert_eq!(after["bytes"], before["bytes"], "{before} -> {after}");
    eprintln!("exchange with 3 keys a node: {before}; with 3,003: {after}");
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// Three nodes, warn over 300 and crit over 600 on the cluster's values,
/// each node's events to its own log file.
fn alerting_config(port: u16, node: &str, log: &Path) -> String {
    format!(
        r#"
[ingest]
mode = "userspace"
[window]
period = "60s"
every = "500ms"
[cluster]
redis = "redis://127.0.0.1:{port}"
node = "{node}"
timeout = "200ms"

[[rule]]
name = "top"
measurement = "combined"
group_by = ["ip", "id"]

[[rule.alert]]
warn = '"count" > 300'
crit = '"count" > 600'
state_changes_only = true
[rule.alert.log]
path = "{}"
"#,
        log.display()
    )
}

/// Every event in the nodes' log files: (level, ip, value, the JSON).
fn events(logs: &[std::path::PathBuf]) -> Vec<(String, String, f64, Value)> {
    let mut all = Vec::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let j: Value = serde_json::from_str(line).unwrap();
            let s = &j["data"]["series"][0];
            all.push((
                j["level"].as_str().unwrap().to_string(),
                s["tags"]["ip"].as_str().unwrap().to_string(),
                s["values"][0][1].as_f64().unwrap(),
                j.clone(),
            ));
        }
    }
    all
}

/// An empty events file for each of nodes a, b and c.
fn event_logs() -> Vec<std::path::PathBuf> {
    ["a", "b", "c"]
        .iter()
        .map(|n| temp_file(&format!("events-{n}.json"), ""))
        .collect()
}

fn levels(logs: &[std::path::PathBuf]) -> Vec<String> {
    events(logs).into_iter().map(|e| e.0).collect()
}

fn holder(d: &Daemon) -> Option<String> {
    cluster(d)["lease_holder"].as_str().map(str::to_string)
}

fn background(d: &Daemon, node: u8) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..300 {
        let line = format!("combined,ip=10.{node}.{}.{},id=7 count=1", i / 256, i % 256);
        sock.send_to(line.as_bytes(), d.udp).unwrap();
    }
}

#[test]
fn cluster_alerts_are_sent_once_survive_the_senders_stop_and_fall_back_while_redis_is_down() {
    let Some((port, redis)) = redis(
        "cluster_alerts_are_sent_once_survive_the_senders_stop_and_fall_back_while_redis_is_down",
    ) else {
        return;
    };
    let logs = event_logs();
    // a starts first and takes the lease before the others come.
    let a = Daemon::start(&alerting_config(port, "node-a", &logs[0]), &[]);
    wait_for("a holds the lease", Duration::from_secs(10), || {
        holder(&a).as_deref() == Some("node-a")
    });
    let b = Daemon::start(&alerting_config(port, "node-b", &logs[1]), &[]);
    let c = Daemon::start(&alerting_config(port, "node-c", &logs[2]), &[]);
    wait_for("three nodes in every view", Duration::from_secs(10), || {
        [&a, &b, &c].iter().all(|d| members(d).len() == 3)
    });
    for (i, d) in [&a, &b, &c].into_iter().enumerate() {
        background(d, i as u8);
    }
    // The hot key: 200 lines on b and on c, far under 300 on either, 400
    // on the cluster; a, the sender, has none of it.
    send(b.udp, "192.0.2.9", 200);
    send(c.udp, "192.0.2.9", 200);
    wait_for("the WARNING", Duration::from_secs(10), || {
        levels(&logs).contains(&"WARNING".to_string())
    });
    wait_for("the cluster value settles", Duration::from_secs(10), || {
        let top = a.get("/api/v1/top?rule=top&scope=cluster");
        top["top"][0]["value"] == 400 && top["top"][0]["tags"]["ip"] == "192.0.2.9"
    });
    // Every node evaluates the cluster's values when its own exchange of
    // the interval ends, which may be after a's.
    wait_for("b's alert state", Duration::from_secs(10), || {
        b.get("/api/v1/alerts")["blocks"][0]["alerts"][0]["level"] == "WARNING"
    });
    let alerts = b.get("/api/v1/alerts");
    let k = &alerts["blocks"][0]["alerts"][0];
    assert_eq!(k["scope"], "cluster", "{alerts}");
    assert_eq!(k["nodes"], 3, "{alerts}");
    assert_eq!(
        k["shares"],
        serde_json::json!({"node-a": 0, "node-b": 200, "node-c": 200}),
        "{alerts}"
    );
    assert_eq!(b.get("/api/v1/top?rule=top")["top"][0]["value"], 200);
    let ev = events(&logs);
    assert_eq!(ev.len(), 1, "one event across the three sinks: {ev:?}");
    assert_eq!(ev[0].3["scope"], "cluster", "{:?}", ev[0].3);
    assert_eq!(ev[0].3["nodes"], 3, "{:?}", ev[0].3);
    assert!(events(&logs[..1]).len() == 1, "a, the holder, sent it");

    // The sender stops: b or c takes the lease over; the key goes on at
    // 400 (a had none of it) and then crosses 600: one CRITICAL.
    assert!(a.terminate().success());
    wait_for("the lease handed over", Duration::from_secs(10), || {
        holder(&b).is_some_and(|h| h != "node-a")
    });
    send(b.udp, "192.0.2.9", 150);
    send(c.udp, "192.0.2.9", 150);
    wait_for("the CRITICAL", Duration::from_secs(10), || {
        levels(&logs).contains(&"CRITICAL".to_string())
    });
    wait_for(
        "the cluster value is the sum sent",
        Duration::from_secs(10),
        || b.get("/api/v1/top?rule=top&scope=cluster")["top"][0]["value"] == 700,
    );
    // Four more intervals: nothing else is sent.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        levels(&logs),
        ["WARNING", "CRITICAL"],
        "{:?}",
        events(&logs)
    );
    assert_eq!(events(&logs)[1].2, 700.0);

    // Redis goes: each node runs the rule on its own counts and says so.
    // Its own 350 is a lower bound of the key's value: the CRITICAL holds,
    // nothing is sent.
    drop(redis);
    for d in [&b, &c] {
        d.wait_stats(Duration::from_secs(10), "the rule falls back", |s| {
            s["rules"][0]["cluster"] == "fallback"
        });
    }
    // A key that reaches 350 on a node is at 350 at least: each node
    // sends its own WARNING.
    send(b.udp, "192.0.2.77", 350);
    send(c.udp, "192.0.2.77", 350);
    wait_for("each node's own WARNING", Duration::from_secs(10), || {
        events(&logs).iter().filter(|e| e.1 == "192.0.2.77").count() == 2
    });
    std::thread::sleep(Duration::from_secs(2));
    let seen = |logs: &[std::path::PathBuf]| {
        let mut ev: Vec<(String, String)> = events(logs).into_iter().map(|e| (e.1, e.0)).collect();
        ev.sort();
        ev
    };
    let pair = |ip: &str, level: &str| (ip.to_string(), level.to_string());
    assert_eq!(
        seen(&logs),
        [
            pair("192.0.2.77", "WARNING"),
            pair("192.0.2.77", "WARNING"),
            pair("192.0.2.9", "CRITICAL"),
            pair("192.0.2.9", "WARNING"),
        ],
        "no recovery of the key at 700 while Redis is down"
    );
    let alerts = b.get("/api/v1/alerts");
    let held = &alerts["blocks"][0]["alerts"];
    assert!(
        held.as_array()
            .unwrap()
            .iter()
            .any(|k| k["tags"]["ip"] == "192.0.2.9"
                && k["level"] == "CRITICAL"
                && k["held"] == true),
        "{alerts}"
    );
    let m = b.get_text("/metrics");
    assert!(
        m.contains("toptraffic_cluster_fallback{rule=\"top\"} 1"),
        "{m}"
    );
    assert!(b
        .log_text()
        .contains("cluster rule falls back to this node's counts"));

    // Redis is back: the cluster's values again. The key at 700 stays
    // CRITICAL with nothing sent; the other is at 700 too: one CRITICAL,
    // from the lease holder.
    let _redis = Redis::start(port);
    for d in [&b, &c] {
        d.wait_stats(
            Duration::from_secs(15),
            "the rule back on the cluster",
            |s| s["rules"][0]["cluster"] == "cluster",
        );
    }
    // Redis lost every heartbeat: a node whose first one after sees only
    // itself takes the other for departed until it beats again, under
    // the same daemon.
    wait_for("no node departed", Duration::from_secs(10), || {
        [&b, &c]
            .iter()
            .all(|d| cluster(d)["departed"] == serde_json::json!([]))
    });
    wait_for("the second key's CRITICAL", Duration::from_secs(10), || {
        events(&logs)
            .iter()
            .any(|e| e.1 == "192.0.2.77" && e.0 == "CRITICAL")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        seen(&logs),
        [
            pair("192.0.2.77", "CRITICAL"),
            pair("192.0.2.77", "WARNING"),
            pair("192.0.2.77", "WARNING"),
            pair("192.0.2.9", "CRITICAL"),
            pair("192.0.2.9", "WARNING"),
        ],
        "no second alert, no burst of duplicates"
    );
    assert!(b.terminate().success());
    assert!(c.terminate().success());
}

/// Nodes a (with `config_a`), b and c, and a key at 400 in the cluster
/// (warn over 300), half of it on a: without a's share it would be at 200,
/// far under. Returns once its WARNING is sent.
fn a_holding_half_of_a_warning(
    config_a: &str,
    port: u16,
    logs: &[std::path::PathBuf],
) -> [Daemon; 3] {
    let a = Daemon::start(config_a, &[]);
    let b = Daemon::start(&alerting_config(port, "node-b", &logs[1]), &[]);
    let c = Daemon::start(&alerting_config(port, "node-c", &logs[2]), &[]);
    wait_for("three nodes in every view", Duration::from_secs(10), || {
        [&a, &b, &c].iter().all(|d| members(d).len() == 3)
    });
    send(a.udp, "192.0.2.9", 200);
    send(b.udp, "192.0.2.9", 100);
    send(c.udp, "192.0.2.9", 100);
    wait_for("the WARNING", Duration::from_secs(10), || {
        levels(logs).contains(&"WARNING".to_string())
    });
    [a, b, c]
}

/// A rolling restart: a node that stops cleanly parks its window in Redis,
/// the lease holder posts it for it, and the lines it counted stay in the
/// cluster's values until the node is back (restored from its state file):
/// no recovery while it is away, no second alert when it returns.
#[test]
fn a_restarting_nodes_lines_stay_in_the_cluster_values_no_recovery_no_second_alert() {
    restart_keeps_the_nodes_share(
        "a_restarting_nodes_lines_stay_in_the_cluster_values_no_recovery_no_second_alert",
        true,
    );
}

/// As above, the node restarted without its state file (lost, or none
/// configured): it takes back the window it parked.
#[test]
fn a_node_restarted_without_its_state_file_takes_its_parked_window_back() {
    restart_keeps_the_nodes_share(
        "a_node_restarted_without_its_state_file_takes_its_parked_window_back",
        false,
    );
}

fn restart_keeps_the_nodes_share(test: &str, state_file: bool) {
    let Some((port, _redis)) = redis(test) else {
        return;
    };
    let logs = event_logs();
    let state = temp_file("state-a", "");
    std::fs::remove_file(&state).unwrap();
    let config_a = match state_file {
        true => format!(
            "{}\n[state]\npath = \"{}\"\n",
            alerting_config(port, "node-a", &logs[0]),
            state.display()
        ),
        false => alerting_config(port, "node-a", &logs[0]),
    };
    let [a, b, c] = a_holding_half_of_a_warning(&config_a, port, &logs);

    assert!(a.terminate().success());
    wait_for("a parked in b's view", Duration::from_secs(5), || {
        let v = cluster(&b);
        v["parked"] == serde_json::json!(["node-a"]) && members(&b).len() == 2
    });
    let m = b.get_text("/metrics");
    assert!(m.contains("toptraffic_cluster_parked 1"), "{m}");
    assert!(
        m.contains("toptraffic_cluster_departed 0"),
        "a clean stop: {m}"
    );
    wait_for(
        "b's alert state with a's share",
        Duration::from_secs(10),
        || {
            let alerts = b.get("/api/v1/alerts");
            let k = &alerts["blocks"][0]["alerts"][0];
            k["shares"] == serde_json::json!({"node-a": 200, "node-b": 100, "node-c": 100})
        },
    );
    // Four intervals with a away: the key stays at 400.
    std::thread::sleep(Duration::from_secs(2));
    let top = c.get("/api/v1/top?rule=top&scope=cluster");
    assert_eq!(top["top"][0]["value"], 400, "{top}");
    assert_eq!(
        levels(&logs),
        ["WARNING"],
        "{:?} B {} C {}",
        events(&logs),
        b.log_text(),
        c.log_text()
    );

    // a is back (with its state file, or taking its parked window back):
    // it posts its own 200 again.
    let a = Daemon::start(&config_a, &[]);
    let from_redis = "restored the cluster rules' window this node parked in Redis";
    assert_eq!(
        a.log_text().contains(from_redis),
        !state_file,
        "{}",
        a.log_text()
    );
    wait_for("a live again, not parked", Duration::from_secs(10), || {
        let v = cluster(&b);
        members(&b).len() == 3 && v["parked"] == serde_json::json!([])
    });
    wait_for("a's own share", Duration::from_secs(10), || {
        let alerts = b.get("/api/v1/alerts");
        alerts["blocks"][0]["alerts"][0]["shares"]["node-a"] == 200
            && a.get("/api/v1/top?rule=top")["top"][0]["value"] == 200
    });
    std::thread::sleep(Duration::from_secs(2));
    let top = b.get("/api/v1/top?rule=top&scope=cluster");
    assert_eq!(top["top"][0]["value"], 400, "{top}");
    assert_eq!(levels(&logs), ["WARNING"], "{:?}", events(&logs));
    for d in [&b, &c] {
        let log = d.log_text();
        assert!(!log.contains("without parking its window") && !log.contains("without its window"));
    }
    for d in [a, b, c] {
        assert!(d.terminate().success());
    }
}

/// A node that dies takes its lines out of the cluster's values at once
/// (nothing parks them), where one central counter would hold them for
/// the rest of the window: the alerts hold their levels meanwhile.
#[test]
fn a_node_that_dies_sends_no_recovery_of_the_keys_it_held_a_share_of() {
    let Some((port, _redis)) =
        redis("a_node_that_dies_sends_no_recovery_of_the_keys_it_held_a_share_of")
    else {
        return;
    };
    let logs = event_logs();
    let config_a = alerting_config(port, "node-a", &logs[0]);
    let [mut a, b, c] = a_holding_half_of_a_warning(&config_a, port, &logs);

    a.child.kill().unwrap();
    a.child.wait().unwrap();
    wait_for("a departed in b's view", Duration::from_secs(10), || {
        let v = cluster(&b);
        v["departed"] == serde_json::json!(["node-a"]) && members(&b).len() == 2
    });
    wait_for(
        "the cluster value without a",
        Duration::from_secs(10),
        || b.get("/api/v1/top?rule=top&scope=cluster")["top"][0]["value"] == 200,
    );
    // Four more intervals: the key at 200, its WARNING held, nothing sent.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(levels(&logs), ["WARNING"], "{:?}", events(&logs));
    for d in [&b, &c] {
        let alerts = d.get("/api/v1/alerts");
        let k = &alerts["blocks"][0]["alerts"][0];
        assert!(k["level"] == "WARNING" && k["held"] == true, "{alerts}");
        assert_eq!(k["value"], 400, "the last whole value: {alerts}");
    }
    let m = b.get_text("/metrics");
    assert!(m.contains("toptraffic_cluster_departed 1"), "{m}");
    assert!(b
        .log_text()
        .contains("a node left the live set without parking its window"));
    for d in [b, c] {
        assert!(d.terminate().success());
    }
}

#[test]
fn with_cluster_top_the_cluster_top_n_is_the_exact_top_n_of_the_union() {
    let Some((port, _redis)) =
        redis("with_cluster_top_the_cluster_top_n_is_the_exact_top_n_of_the_union")
    else {
        return;
    };
    let nodes: Vec<Daemon> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let cfg = config_window(port, &format!("node-{n}"), "60s")
                .replace("timeout = \"200ms\"", "timeout = \"200ms\"\ntop = 3")
                .replace("> 100", "> 300");
            Daemon::start(&cfg, &[])
        })
        .collect();
    wait_for("three nodes in every view", Duration::from_secs(10), || {
        nodes.iter().all(|d| members(d).len() == 3)
    });
    // T = 300, N = 3: no key reaches T / N = 100 on any node, so threshold
    // pruning alone exchanges none; the top 3 of the union are P (180),
    // S (120) and Q (110), ahead of R (100) and the tail.
    let per_node: [&[(&str, usize)]; 3] = [
        &[("P", 60), ("Q", 90), ("R", 50)],
        &[("P", 60), ("Q", 10), ("R", 50), ("S", 40)],
        &[("P", 60), ("Q", 10), ("S", 80)],
    ];
    let ip = |k: &str| format!("10.7.7.{}", k.as_bytes()[0]);
    for (d, keys) in nodes.iter().zip(per_node) {
        for (k, n) in keys {
            send(d.udp, &ip(k), *n);
        }
        // A tail of 400 keys of 1 to 20 lines.
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..400usize {
            let line = format!("combined,ip=10.8.{}.{},id=1 count=1", i / 256, i % 256);
            for _ in 0..(1 + i % 20) {
                sock.send_to(line.as_bytes(), d.udp).unwrap();
            }
        }
    }
    let want = vec![(ip("P"), 180.0), (ip("S"), 120.0), (ip("Q"), 110.0)];
    let top3 = |d: &Daemon| -> Vec<(String, f64)> {
        let (status, body) = d.get_status("/api/v1/top?rule=top&scope=cluster&limit=3");
        if status != 200 {
            return Vec::new();
        }
        let top: Value = serde_json::from_str(&body).unwrap();
        top["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["tags"]["ip"].as_str().unwrap().to_string(),
                    r["value"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    for d in &nodes {
        wait_for("the exact top 3", Duration::from_secs(15), || {
            top3(d) == want
        });
    }
    let x = &cluster(&nodes[0])["rules"]["top"];
    assert!(x["threshold"].as_f64().unwrap() < 100.0, "{x}");
    eprintln!("exchange with cluster.top = 3: {x}");
    for d in nodes {
        assert!(d.terminate().success());
    }
}
