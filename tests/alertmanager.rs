//! End to end: the Alertmanager sink against a real Alertmanager (Debian's
//! `prometheus-alertmanager`, started here on a free loopback port). A key
//! going WARNING, CRITICAL and back to OK is one alert in Alertmanager's API
//! v2, with the labels and annotations the README promises, in the group its
//! route makes, resolved on recovery; a silence made in Alertmanager for a
//! key's labels silences it there.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{free_tcp_port, skip, temp_file, wait_for, Daemon};
use serde_json::{json, Value};
use toptraffic_loadgen as loadgen;

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// An Alertmanager of the test's own, stopped (by pid) on drop.
struct Alertmanager {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Alertmanager {
    /// Starts one whose route groups by `alertname` and `ip`, and that sends
    /// nowhere (the test reads its API).
    fn start(dir: &Path) -> Alertmanager {
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: none\n  group_by: ['alertname', 'ip']\n  group_wait: 1s\n\
             receivers:\n  - name: none\n",
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let log = dir.join("alertmanager.log");
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            // No gossip: a lone instance on loopback.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("start prometheus-alertmanager");
        let am = Alertmanager { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while loadgen::http_get(addr, "/api/v2/status")
            .map(|(s, _)| s)
            .ok()
            != Some(200)
        {
            assert!(
                Instant::now() < deadline,
                "Alertmanager did not come up: {}",
                std::fs::read_to_string(&am.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        am
    }

    fn get(&self, path: &str) -> Value {
        loadgen::get_json(self.addr, path).unwrap()
    }

    /// The active alerts (Alertmanager leaves resolved ones out) of `ip`.
    fn alerts_of(&self, ip: &str) -> Vec<Value> {
        let all = self.get("/api/v2/alerts");
        all.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["ip"] == ip)
            .cloned()
            .collect()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(am: SocketAddr) -> String {
    format!(
        r#"
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

[[rule.alert]]
name = "am"
warn = '"totalCount" > 100'
crit = '"totalCount" > 300'
message = '{{{{ .Level }}}}: {{{{ index .Fields "totalCount" }}}} requests from {{{{ index .Tags "ip" }}}}'
details = 'store {{{{ index .Tags "id" }}}}'
[rule.alert.alertmanager]
url = "http://{am}"
labels = {{ team = "edge" }}
"#
    )
}

fn send(to: SocketAddr, ip: &str, n: usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let line = format!("combined,uri=/p,id=42,ip={ip},role=r count=1");
    for _ in 0..n {
        sock.send_to(line.as_bytes(), to).unwrap();
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[test]
fn a_key_warns_goes_critical_and_resolves_in_a_real_alertmanager_and_a_silence_holds() {
    let test = "a_key_warns_goes_critical_and_resolves_in_a_real_alertmanager_and_a_silence_holds";
    if !Path::new(ALERTMANAGER).exists() {
        skip(
            test,
            "prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)",
        );
        return;
    }
    let dir = temp_file("x", "").parent().unwrap().to_path_buf();
    let am = Alertmanager::start(&dir);
    let d = Daemon::start(&config(am.addr), &[]);
    let (a, b) = ("192.0.2.1", "192.0.2.2");

    // WARNING: 150 requests in the window, over 100 and under 300.
    send(d.udp, a, 150);
    send(d.udp, b, 150);
    // Every rotation re-sends a firing alert: the one Alertmanager holds
    // ends at the whole window's value.
    let message = |level: &str, n: u32| format!("{level}: {n} requests from {a}");
    wait_for(
        "a's WARNING in Alertmanager",
        Duration::from_secs(10),
        || {
            am.alerts_of(a)
                .first()
                .is_some_and(|x| x["annotations"]["message"] == message("WARNING", 150))
        },
    );
    let alerts = am.alerts_of(a);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let x = &alerts[0];
    // Labels name the alert: the rule, the block, the group's tags and the
    // configured ones; nothing that changes while it fires.
    let labels = x["labels"].as_object().unwrap();
    let want = json!({
        "alertname": "top_combined", "rule": "top_combined", "block": "am",
        "ip": a, "id": "42", "team": "edge"
    });
    assert_eq!(Value::Object(labels.clone()), want, "{x}");
    let ann = &x["annotations"];
    assert_eq!(ann["level"], "WARNING", "{x}");
    assert_eq!(ann["summary"], ann["message"], "{x}");
    assert_eq!(ann["details"], "store 42", "{x}");
    assert_eq!(ann["value"], "150", "{x}");
    assert_eq!(x["status"]["state"], "active", "{x}");
    let fingerprint = x["fingerprint"].clone();

    // The route's grouping: one group per (alertname, ip).
    let groups = am.get("/api/v2/alerts/groups");
    let group = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["labels"]["ip"] == a)
        .unwrap_or_else(|| panic!("no group of {a}: {groups}"));
    assert_eq!(
        group["labels"],
        json!({"alertname": "top_combined", "ip": a}),
        "{group}"
    );
    assert_eq!(group["alerts"].as_array().unwrap().len(), 1, "{group}");

    // A silence for b's labels, made in Alertmanager.
    let now = SystemTime::now();
    let silence = json!({
        "matchers": [
            {"name": "ip", "value": b, "isRegex": false, "isEqual": true},
            {"name": "id", "value": "42", "isRegex": false, "isEqual": true}
        ],
        "startsAt": rfc3339(now - Duration::from_secs(1)),
        "endsAt": rfc3339(now + Duration::from_secs(3600)),
        "createdBy": "toptraffic tests",
        "comment": "known heavy client"
    });
    let (status, body) =
        loadgen::post_json(am.addr, "/api/v2/silences", &silence.to_string()).unwrap();
    assert_eq!(status, 200, "{body}");
    let silence_id = serde_json::from_str::<Value>(&body).unwrap()["silenceID"].clone();

    // CRITICAL: 250 more, 400 in the window. The same alert (a level is an
    // annotation, not a label), now CRITICAL.
    send(d.udp, a, 250);
    wait_for(
        "a's CRITICAL in Alertmanager",
        Duration::from_secs(10),
        || {
            am.alerts_of(a)
                .first()
                .is_some_and(|x| x["annotations"]["message"] == message("CRITICAL", 400))
        },
    );
    let alerts = am.alerts_of(a);
    assert_eq!(alerts.len(), 1, "one alert, not one per level: {alerts:?}");
    assert_eq!(alerts[0]["fingerprint"], fingerprint);
    assert_eq!(alerts[0]["annotations"]["level"], "CRITICAL");
    let found = alerts[0].clone();

    // b, still firing, is silenced there by the silence's id.
    let bs = am.alerts_of(b);
    assert_eq!(bs.len(), 1, "{bs:?}");
    assert_eq!(bs[0]["status"]["state"], "suppressed", "{}", bs[0]);
    assert_eq!(
        bs[0]["status"]["silencedBy"],
        json!([silence_id]),
        "{}",
        bs[0]
    );

    // Silent keys leave the window: the recovery (OK) sets endsAt, and
    // Alertmanager resolves both alerts.
    wait_for("a and b resolved", Duration::from_secs(15), || {
        am.alerts_of(a).is_empty() && am.alerts_of(b).is_empty()
    });
    let stats = d.stats();
    let sinks = &stats["sinks"];
    eprintln!("sinks {sinks}; last alert {found}");
    assert!(d.terminate().success());
}
