//! End to end on the userspace path: the real binary over loopback counts
//! generated traffic exactly, reports malformed lines, forgets silent keys,
//! and stops cleanly on SIGTERM.

mod common;

use std::time::Duration;

use common::ptrace::HeldThread;
use common::{short_window_config, Daemon, BIN};
use toptraffic_loadgen::{self as loadgen, Generator, Shape};

#[test]
fn counts_every_key_exactly_and_forgets_them_after_the_window() {
    // A 4 s window every 500 ms: the whole send fits in one window.
    let d = Daemon::start(
        &short_window_config("4s", "500ms"),
        &["--mode", "userspace"],
    );
    assert_eq!(d.stats()["mode"], "userspace");
    let mut gen = Generator::new(Shape {
        keys: 20_000,
        ips: 15_000,
        ids: 8_000,
        lines_per_datagram: (1, 6),
        malformed_per_mille: 10,
        seed: 7,
        ..Shape::default()
    });
    let sent = loadgen::run(
        &mut gen,
        d.udp,
        60_000,
        60_000,
        Duration::from_secs(20),
        |_, _| {},
    )
    .expect("send");
    let total = sent.valid_lines + sent.malformed_lines;
    d.wait_stats(Duration::from_secs(20), "every line accounted", |s| {
        loadgen::lines_accounted(s) >= total
    });
    d.wait_next_window(Duration::from_secs(5));
    let stats = d.stats();
    assert_eq!(stats["points_userspace"], sent.valid_lines, "{stats}");
    assert_eq!(
        stats["dropped"]["parse_error"], sent.malformed_lines,
        "{stats}"
    );
    assert_eq!(stats["dropped"]["receive_queue"], 0, "{stats}");
    assert_eq!(stats["datagrams_userspace"], sent.datagrams, "{stats}");
    assert_eq!(stats["points_kernel"], 0);

    let truth = gen.truth();
    let top = d.get(&format!(
        "/api/v1/top?rule=top_combined&limit={}",
        truth.len() + 100
    ));
    let verdict = loadgen::compare(&top, &truth);
    assert!(verdict.exact(), "{verdict:?}");
    assert_eq!(top["as"], "totalCount");
    assert_eq!(top["period_s"], 4);
    // Sorted by value, descending.
    let values: Vec<f64> = top["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]));

    // Silence: every key leaves within period + every.
    d.wait_stats(Duration::from_secs(10), "the window to empty", |s| {
        s["rules"][0]["keys"] == 0
    });
    let top = d.get("/api/v1/top?rule=top_combined&limit=10");
    assert_eq!(top["keys"], 0);
    assert_eq!(top["top"].as_array().unwrap().len(), 0);
    assert!(d.terminate().success());
}

/// Two daemons on one UDP address would each count a share of its
/// datagrams (SO_REUSEPORT): the second is refused, naming the first, and
/// the first counts every line.
#[test]
fn a_second_daemon_on_the_same_udp_address_is_refused_and_the_first_counts_all() {
    let cfg = short_window_config("4s", "500ms");
    let d = Daemon::start(&cfg, &["--mode", "userspace"]);
    let listen = d.udp.to_string();
    let (status, err) = common::run_to_exit(
        &cfg,
        &[
            "--mode",
            "userspace",
            "--http",
            "127.0.0.1:0",
            "--listen",
            &listen,
        ],
    );
    assert!(!status.success(), "{err}");
    let want = format!(
        "cannot listen on UDP {listen}: the port is bound already by pid {} (toptraffic)",
        d.child.id()
    );
    assert!(err.contains(&want), "{err}");

    let mut gen = Generator::new(Shape {
        keys: 500,
        seed: 11,
        ..Shape::default()
    });
    let sent = loadgen::run(
        &mut gen,
        d.udp,
        5_000,
        20_000,
        Duration::from_secs(20),
        |_, _| {},
    )
    .expect("send");
    d.wait_stats(Duration::from_secs(20), "every line counted", |s| {
        s["points_userspace"] == sent.valid_lines
    });
    assert!(d.terminate().success());
}

#[test]
fn api_errors_and_metrics() {
    let d = Daemon::start(&short_window_config("2s", "1s"), &["--mode", "userspace"]);
    let (status, body) = loadgen::http_get(d.http, "/api/v1/top?rule=nope").unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("top_combined"), "{body}");
    let (status, _) = loadgen::http_get(d.http, "/api/v1/top").unwrap();
    assert_eq!(status, 400);
    // Every refusal of a query string is JSON, naming what is wrong.
    for (query, want) in [
        ("rule=top_ips&limit=-1", "limit"),
        ("rule=top_ips&limit=abc", "limit"),
        ("rule=top_ips&n=5", "unknown field `n`"),
        ("rule=top_ips&rule=top_combined", "rule"),
    ] {
        let (status, body) = loadgen::http_get(d.http, &format!("/api/v1/top?{query}")).unwrap();
        assert_eq!(status, 400, "{query}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect(&body);
        let e = v["error"].as_str().unwrap_or_default();
        assert!(e.contains(want), "{query}: {e}");
    }
    let (status, body) = loadgen::http_get(d.http, "/healthz").unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, metrics) = loadgen::http_get(d.http, "/metrics").unwrap();
    assert_eq!(status, 200);
    for name in [
        "toptraffic_points_total{path=\"userspace\"}",
        "toptraffic_dropped_total{reason=\"parse_error\"}",
        "toptraffic_active_keys{rule=\"top_ips\"}",
        "toptraffic_key_overflow_lines_total{rule=\"top_stores\"}",
        "toptraffic_rotation_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
}

#[test]
fn top_command_prints_a_table() {
    let d = Daemon::start(
        &short_window_config("2s", "500ms"),
        &["--mode", "userspace"],
    );
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3 {
        tx.send_to(b"combined,id=42,ip=192.0.2.9 count=1", d.udp)
            .unwrap();
    }
    d.wait_stats(Duration::from_secs(10), "3 points", |s| {
        s["points_userspace"] == 3
    });
    d.wait_next_window(Duration::from_secs(5));
    let out = std::process::Command::new(BIN)
        .args([
            "top",
            "--rule",
            "top_combined",
            "-n",
            "5",
            "--http",
            &d.http.to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("RANK  IP         ID  TOTALCOUNT"), "{text}");
    assert!(text.contains("   1  192.0.2.9  42           3"), "{text}");
}

#[test]
fn check_reports_line_and_field() {
    let ok = std::process::Command::new(BIN)
        .args(["check"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout)
        .contains("ok (3 rules: top_combined, top_ips, top_stores)"));

    let path = common::temp_file("bad.toml", "[window]\nperiod = \"1m\"\nevery = \"7s\"\n");
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3: window.every = \"7s\" does not divide window.period"),
        "{err}"
    );

    // `run` refuses a bad config the same way, before binding anything.
    let out = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:3:"));
}

#[test]
fn healthz_is_503_while_the_rotation_thread_is_held_and_200_once_it_runs_again() {
    // One thread only is stopped (ptrace stops a thread, SIGSTOP the whole
    // process): the HTTP server goes on answering while no interval closes.
    let d = Daemon::start(&short_window_config("4s", "1s"), &["--mode", "userspace"]);
    let health = || loadgen::http_get(d.http, "/healthz").unwrap();
    let wait_for = |status: u16, what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (s, body) = health();
            if s == status {
                return body;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {s} {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(200, "healthy at start");
    let held = HeldThread::hold(d.child.id(), "toptraffic-rot");
    let body = wait_for(503, "stalled while the rotation thread is held");
    let s: toptraffic_api::Stalled = serde_json::from_str(&body).unwrap();
    assert_eq!(s.status, "stalled");
    assert!(s.seconds_since_rotation > 3.0, "{body}");
    held.release();
    wait_for(200, "healthy once intervals close again");
}
