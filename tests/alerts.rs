//! End to end: alerts with Kapacitor's semantics on the real binary, on a
//! scaled-down clock (a 6 s window every 500 ms stands for 1m every 5s, so
//! thresholds are a tenth: 20,000 a minute is 2,000 per window, and
//! stateChangesOnly's 5 minutes become 3 s). Slack and HTTP receivers are
//! served by the test; exec runs a script; the log sink writes a file.
//! The same sequences on Kapacitor's own time scale are in the golden tests
//! of src/alert/state.rs.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{temp_file, wait_for, Daemon, Receiver};
use serde_json::Value;

fn config(dir: &std::path::Path, slack: SocketAddr, blackhole: SocketAddr) -> String {
    let exec_out = dir.join("exec.jsonl");
    let log = dir.join("alerts.log");
    format!(
        r##"
[ingest]
mode = "userspace"
[window]
period = "6s"
every = "500ms"

[[rule]]
name = "top_combined"
measurement = "combined"
group_by = ["ip", "id"]
field = "count"
as = "totalCount"

# The seed's first alert node: Slack, no recoveries.
[[rule.alert]]
name = "slack"
warn = '"totalCount" > 1000'
crit = '"totalCount" > 3500'
flapping = [0.25, 0.5]
history = 21
state_changes_only = "3s"
no_recoveries = true
message = 'Observed {{{{ index .Fields "totalCount" }}}} requests to Production Store ID {{{{ index .Tags "id" }}}} for IP {{{{ index .Tags "ip" }}}} within the last minute.'
[rule.alert.slack]
url = "http://{slack}/hook"
channel = "#ops-noise"
# A receiver that never answers: must delay nothing else.
[[rule.alert.http]]
url = "http://{blackhole}/never"
options = {{ timeout = "60s", retries = 0 }}

# The second: exec and log.
[[rule.alert]]
name = "pubsub"
warn = '"totalCount" > 1000'
crit = '"totalCount" > 3500'
flapping = [0.25, 0.5]
history = 21
state_changes_only = "3s"
message = 'Observed {{{{ index .Fields "totalCount" }}}} requests to Production Store ID {{{{ index .Tags "id" }}}} for IP {{{{ index .Tags "ip" }}}} within the last minute.'
[rule.alert.exec]
command = ["sh", "-c", "cat >> '{exec}'"]
[rule.alert.log]
path = "{log}"
"##,
        exec = exec_out.display(),
        log = log.display(),
    )
}

/// Sends `per_second` lines a second for key (ip, id) until `stop`.
fn steady(
    to: SocketAddr,
    ip: &'static str,
    id: &'static str,
    per_second: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let line = format!("combined,uri=/p,id={id},ip={ip},role=ingress count=1");
        let start = Instant::now();
        let mut n = 0u64;
        // Bounded: stops when told, and after 60 s whatever happens.
        while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(60) {
            let due = (start.elapsed().as_secs_f64() * per_second as f64) as u64;
            while n < due {
                sock.send_to(line.as_bytes(), to).unwrap();
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        sent.fetch_add(n, Ordering::Relaxed);
    })
}

/// Events for `ip` in a file of one JSON object per line.
fn events(path: &std::path::Path, ip: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["data"]["series"][0]["tags"]["ip"] == ip)
        .collect()
}

fn levels(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| e["level"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn steady_keys_alert_once_stay_and_recover_as_kapacitor_would() {
    let slack = Receiver::start(false);
    let blackhole = Receiver::start(true);
    let dir = temp_file("x", "").parent().unwrap().to_path_buf();
    let d = Daemon::start(&config(&dir, slack.addr, blackhole.addr), &[]);
    let exec_out = dir.join("exec.jsonl");
    let log = dir.join("alerts.log");

    // A: 2,000 per 6 s window, twice the warning threshold and far below
    // the critical one; B: 5,000, far above the critical one. A sender
    // slowed by a busy machine cannot move either across a threshold.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let a = steady(
        d.udp,
        "192.0.2.1",
        "900001",
        333,
        stop.clone(),
        sent.clone(),
    );
    let b = steady(
        d.udp,
        "192.0.2.2",
        "900002",
        833,
        stop.clone(),
        sent.clone(),
    );
    let started = Instant::now();

    // A warns once the window passes 1,000; it does not wait for the HTTP
    // receiver that never answers.
    wait_for("A's WARNING on exec", Duration::from_secs(15), || {
        !events(&exec_out, "192.0.2.1").is_empty()
    });
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the first WARNING came late"
    );
    // Keep the traffic steady for 3 re-send periods.
    std::thread::sleep(Duration::from_secs(9));
    stop.store(true, Ordering::Relaxed);
    a.join().unwrap();
    b.join().unwrap();
    let stopped = Instant::now();

    // Every line is counted, the silent receiver notwithstanding.
    let total = sent.load(Ordering::Relaxed);
    d.wait_stats(Duration::from_secs(10), "every line counted", |s| {
        s["points_userspace"].as_u64() == Some(total)
    });

    // Silence: the window empties, A and B recover on exec and log.
    wait_for("recoveries on exec", Duration::from_secs(15), || {
        levels(&events(&exec_out, "192.0.2.1"))
            .last()
            .map(String::as_str)
            == Some("OK")
            && levels(&events(&exec_out, "192.0.2.2"))
                .last()
                .map(String::as_str)
                == Some("OK")
    });
    assert!(
        stopped.elapsed() < Duration::from_secs(9),
        "recovery took too long"
    );
    // Let any straggler arrive before the final look.
    std::thread::sleep(Duration::from_millis(1500));

    // A: one WARNING (a change), then only re-sends 3 s apart in window
    // time, never another level, then OK.
    let ea = events(&exec_out, "192.0.2.1");
    let la = levels(&ea);
    assert_eq!(la.first().map(String::as_str), Some("WARNING"), "{la:?}");
    assert_eq!(ea[0]["previousLevel"], "OK");
    assert_eq!(la.last().map(String::as_str), Some("OK"));
    let warns: Vec<&Value> = ea.iter().filter(|e| e["level"] == "WARNING").collect();
    assert_eq!(warns.len() + 1, ea.len(), "only WARNINGs then OK: {la:?}");
    assert!(warns.len() >= 3, "re-sent while steady: {la:?}");
    let times: Vec<SystemTimeSecs> = warns.iter().map(|e| secs(&e["time"])).collect();
    for w in times.windows(2) {
        assert!(
            (w[1] - w[0] - 3.0).abs() < 1e-9,
            "re-sends 3 s apart: {times:?}"
        );
    }
    for e in &warns[1..] {
        assert_eq!(e["previousLevel"], "WARNING");
    }
    let v = ea[0]["data"]["series"][0]["values"][0][1].as_f64().unwrap();
    assert!(v > 1000.0 && v <= 3500.0, "{v}");
    assert_eq!(
        ea[0]["message"],
        format!("Observed {v} requests to Production Store ID 900001 for IP 192.0.2.1 within the last minute.")
    );

    // B: WARNING on its way up, then CRITICAL, then OK.
    let lb = levels(&events(&exec_out, "192.0.2.2"));
    let first_crit = lb
        .iter()
        .position(|l| l == "CRITICAL")
        .expect("B went CRITICAL");
    assert!(lb[..first_crit].iter().all(|l| l == "WARNING"), "{lb:?}");
    assert_eq!(lb.last().map(String::as_str), Some("OK"));

    // The log sink wrote the same events as exec.
    assert_eq!(levels(&events(&log, "192.0.2.1")), la);
    assert_eq!(levels(&events(&log, "192.0.2.2")), lb);

    // Slack: the same alerts, never a recovery (noRecoveries).
    let sl: Vec<Value> = slack
        .bodies()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let texts: Vec<&str> = sl
        .iter()
        .map(|b| b["attachments"][0]["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("for IP 192.0.2.1")),
        "{texts:?}"
    );
    for b in &sl {
        assert_eq!(b["channel"], "#ops-noise");
        assert_ne!(
            b["attachments"][0]["color"], "good",
            "a recovery reached Slack: {b}"
        );
    }
    let slack_a = texts
        .iter()
        .filter(|t| t.contains("for IP 192.0.2.1"))
        .count();
    assert_eq!(slack_a, warns.len(), "Slack got A's WARNINGs, no OK");

    // The silent receiver's sink holds its events; none was dropped.
    let stats = d.stats();
    let sinks = stats["sinks"].as_array().unwrap();
    let http = sinks.iter().find(|s| s["kind"] == "http").unwrap();
    assert_eq!(http["sent"], 0, "{http}");
    let slack_sink = sinks.iter().find(|s| s["kind"] == "slack").unwrap();
    assert_eq!(slack_sink["failed"], 0, "{slack_sink}");
    let alerts = d.get("/api/v1/alerts");
    for b in alerts["blocks"].as_array().unwrap() {
        assert_eq!(
            b["alerts"].as_array().unwrap().len(),
            0,
            "all OK again: {alerts}"
        );
    }
}

type SystemTimeSecs = f64;

fn secs(v: &Value) -> SystemTimeSecs {
    let t = humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_bad_expression_is_a_config_error_naming_rule_block_and_position() {
    let text = "[[rule]]\nname = \"r\"\nmeasurement = \"m\"\ngroup_by = [\"ip\"]\nfield = \"count\"\nas = \"totalCount\"\n[[rule.alert]]\nname = \"pager\"\nwarn = '\"totalCount\" > > 5'\n";
    let path = temp_file("bad-alert.toml", text);
    let out = std::process::Command::new(common::BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad-alert.toml:9: rule \"r\" alert \"pager\": warn:"),
        "{err}"
    );
    assert!(err.contains("at character 16"), "{err}");
}
