//! Coming from Kapacitor, end to end with the real binary: `import` of the
//! seed's TICKscript, `replay` of recorded traffic (line protocol, pcap,
//! pcapng, a real tcpdump capture of what a running daemon received), and
//! `test` of rule unit tests.

mod common;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{temp_file, Daemon, BIN};
use serde_json::Value;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run toptraffic")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn seed_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kapacitor/top_combined.tick")
}

#[test]
fn import_of_the_seed_prints_a_config_that_check_accepts() {
    let out = run(&["import", seed_script().to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for want in [
        "name = \"top_combined\"",
        "group_by = [\"ip\", \"id\"]",
        "warn = '\"totalCount\" > 17500'",
        "crit = '\"totalCount\" > 22500'",
        "flapping = [0.25, 0.5]",
        "history = 21",
        "state_changes_only = \"5m\"",
        "no_recoveries = true",
        "channel = \"#ops-noise\"",
        "command = [\"/usr/bin/kapacitor_pubsub_stdin_invoker.sh\"]",
        "path = \"/var/log/kapacitor/alerts.log\"",
    ] {
        assert!(stdout.contains(want), "{want} not in:\n{stdout}");
    }
    assert_eq!(stdout.matches("[[rule.alert]]").count(), 2, "{stdout}");
    assert_eq!(
        stdout.matches("no_recoveries = true").count(),
        1,
        "{stdout}"
    );
    assert!(
        stderr.contains("top_combined.tick:6:1: note: barrier2: |barrier() dropped"),
        "{stderr}"
    );
    let config = temp_file("imported.toml", &stdout);
    let check = run(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    assert!(text(&check.stdout).contains("ok (1 rules: top_combined)"));
}

#[test]
fn import_names_what_it_cannot_convert_and_says_so_in_its_exit_status() {
    let script = temp_file(
        "spikes.tick",
        "stream\n    |from()\n        .measurement('combined')\n        .groupBy('ip')\n    |window()\n        .period(1m)\n        .every(5s)\n    |sum('count')\n    |alert()\n        .crit(lambda: \"sum\" > 100)\n        .pagerDuty()\n    |influxDBOut()\n",
    );
    let out = run(&["import", script.to_str().unwrap(), "--name", "spikes"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "spikes.tick:11:9: not converted: alert4: .pagerDuty() has no toptraffic sink"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "spikes.tick:12:5: not converted: influxDBOut5: an alert block passes nothing on"
        ),
        "{stderr}"
    );
    // What converted is still a config check accepts.
    let config = temp_file("partial.toml", &text(&out.stdout));
    let check = run(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    // Nothing to convert: status 2, nothing printed.
    let none = temp_file(
        "batch.tick",
        "batch|query('SELECT 1')|alert().crit(lambda: TRUE)",
    );
    let out = run(&["import", none.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// The scenario Kapacitor 1.5.7 was recorded on: three (ip, id) keys
/// sending a steady 350, 500 and 200 lines a second for 420 s; per line,
/// its arrival time in nanoseconds and the line.
fn scenario(t0: u64) -> Vec<(u64, String)> {
    let keys = [
        ("192.0.2.1", "350", 350u64),
        ("192.0.2.2", "500", 500),
        ("192.0.2.3", "200", 200),
    ];
    let mut lines = Vec::new();
    for s in 0..420u64 {
        for (ip, id, rate) in keys {
            for i in 0..rate {
                let ns = (t0 + s) * 1_000_000_000 + i * (1_000_000_000 / rate);
                lines.push((
                    ns,
                    format!("combined,uri=/p,id={id},ip={ip},role=ingresstype count=1"),
                ));
            }
        }
    }
    lines.sort_by_key(|(ns, _)| *ns);
    lines
}

/// (seconds after t0, level, id, value, previous level) of every event.
fn events(stdout: &str, t0: u64) -> Vec<(u64, String, String, f64, String)> {
    stdout
        .lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let s = &e["data"]["series"][0];
            let time = &s["values"][0][0];
            let at = humantime::parse_rfc3339(time.as_str().unwrap()).unwrap();
            (
                at.duration_since(UNIX_EPOCH).unwrap().as_secs() - t0,
                e["level"].as_str().unwrap().to_string(),
                s["tags"]["id"].as_str().unwrap().to_string(),
                s["values"][0][1].as_f64().unwrap(),
                e["previousLevel"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn replay(args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let out = run(&[&["replay"], args].concat());
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    (text(&out.stdout), took)
}

/// An Ethernet frame of a UDP datagram from port 40000 to `port` on
/// loopback.
fn frame(payload: &[u8], port: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
        .ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
        .udp(40000, port);
    let mut f = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut f, payload).unwrap();
    f
}

#[test]
fn replay_of_steady_keys_sends_what_kapacitor_sent_in_seconds_from_line_protocol_pcap_and_pcapng() {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::DataLink;

    let t0 = 1_764_720_000; // a multiple of 5 s
    let lines = scenario(t0);
    let lp: String = lines.iter().map(|(ns, l)| format!("{l} {ns}\n")).collect();
    let lp_path = temp_file("spike.lp", &lp);
    let (stdout, took) = replay(&[lp_path.to_str().unwrap()]);
    let got = events(&stdout, t0);
    let e = |t: u64, level: &str, id: &str, v: f64, prev: &str| {
        (t, level.to_string(), id.to_string(), v, prev.to_string())
    };
    // The first windows sum what arrived so far; the 500/s key goes
    // WARNING, then CRITICAL ten seconds later, the 350/s key WARNING;
    // stateChangesOnly(5m) re-sends each level 300 s after the last event
    // sent; the 200/s key (12,000 a minute) sends nothing.
    assert_eq!(
        got,
        [
            e(40, "WARNING", "500", 20_000.0, "OK"),
            e(50, "CRITICAL", "500", 25_000.0, "WARNING"),
            e(55, "WARNING", "350", 19_250.0, "OK"),
            e(350, "CRITICAL", "500", 30_000.0, "CRITICAL"),
            e(355, "WARNING", "350", 21_000.0, "WARNING"),
        ],
        "{stdout}"
    );
    assert!(took < Duration::from_secs(120), "the replay took {took:?}");
    eprintln!("replayed {} lines in {took:?}", lines.len());

    // The same traffic as captures: every line a datagram to port 9100,
    // with datagrams to another port among them (not counted).
    let dir = lp_path.parent().unwrap();
    let pcap = dir.join("spike.pcap");
    let mut w = PcapWriter::new(BufWriter::new(File::create(&pcap).unwrap())).unwrap();
    let pcapng = dir.join("spike.pcapng");
    let mut ng = PcapNgWriter::new(BufWriter::new(File::create(&pcapng).unwrap())).unwrap();
    ng.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 65535,
        options: vec![],
    })
    .unwrap();
    for (i, (ns, l)) in lines.iter().enumerate() {
        let port = if i % 1000 == 7 { 9999 } else { 9100 };
        let f = frame(l.as_bytes(), port);
        let at = Duration::from_nanos(*ns);
        w.write_packet(&PcapPacket::new(at, f.len() as u32, &f))
            .unwrap();
        // No if_tsresol: the timestamp is in microseconds.
        ng.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(ns / 1_000),
            original_len: f.len() as u32,
            data: f.into(),
            options: vec![],
        })
        .unwrap();
    }
    drop(w);
    drop(ng);
    for capture in [&pcap, &pcapng] {
        let (out, _) = replay(&[capture.to_str().unwrap()]);
        let other = events(&out, t0);
        // Datagrams to port 9999 were left out: a few values are lower.
        assert_eq!(other.len(), got.len(), "{out}");
        for (a, b) in other.iter().zip(&got) {
            assert_eq!((a.0, &a.1, &a.2, &a.4), (b.0, &b.1, &b.2, &b.4), "{out}");
            assert!(a.3 <= b.3 && a.3 > b.3 * 0.99, "{a:?} {b:?}");
        }
        let (all, _) = replay(&[capture.to_str().unwrap(), "--port", "9999"]);
        assert_eq!(all, "", "no key reaches a threshold on port 9999");
    }
}

/// Polls until `path` holds `needle`.
fn wait_for_text(path: &Path, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sleeps until the wall clock is `frac` of the way into a second.
fn sleep_to_fraction(frac: f64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = now.subsec_nanos() as f64 / 1e9;
    let wait = if into <= frac {
        frac - into
    } else {
        1.0 - into + frac
    };
    std::thread::sleep(Duration::from_secs_f64(wait));
}

#[test]
fn a_tcpdump_capture_of_what_a_daemon_received_replays_to_the_events_it_sent() {
    let Ok(tcpdump) = which_tcpdump() else {
        common::skip(
            "a_tcpdump_capture_of_what_a_daemon_received_replays_to_the_events_it_sent",
            "tcpdump is not installed (cargo xtask setup installs it)",
        );
        return;
    };
    // The default rules on a 5 s window closed every second; the events go
    // to the daemon's stdout (the log sink's "-").
    let config = common::short_window_config("5s", "1s");
    let d = Daemon::start(&config, &["--mode", "userspace"]);
    let port = d.udp.port();
    let dir = d.log.parent().unwrap().to_path_buf();
    let capture = dir.join("daemon.pcap");
    let tcpdump_err = dir.join("tcpdump.err");
    let mut dump = Command::new(tcpdump)
        .args(["-i", "lo", "-U", "-n", "-w"])
        .arg(&capture)
        .args(["udp", "dst", "port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(File::create(&tcpdump_err).unwrap())
        .spawn()
        .expect("start tcpdump");
    wait_for_text(&tcpdump_err, "listening on", Duration::from_secs(20));
    // Six seconds of traffic, sent mid-second so that no datagram is near
    // an interval's end: per second 4,000 for one key (20,000 in the
    // window: WARNING), 5,000 for another (25,000: WARNING, then
    // CRITICAL), 1,000 for a third (nothing).
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..6 {
        sleep_to_fraction(0.4);
        for (ip, n) in [
            ("198.51.100.1", 4000),
            ("198.51.100.2", 5000),
            ("198.51.100.3", 1000),
        ] {
            let line = format!("combined,ip={ip},id=42 count={n}");
            sock.send_to(line.as_bytes(), d.udp).unwrap();
        }
    }
    // The daemon steps the keys down as their windows empty.
    common::wait_for("the windows to empty", Duration::from_secs(30), || {
        d.get("/api/v1/top?rule=top_combined")["keys"] == 0
            && d.get("/api/v1/alerts")
                .to_string()
                .matches("\"level\"")
                .count()
                == 0
    });
    // SAFETY: kill(2) on our own child, not reaped yet.
    unsafe { libc::kill(dump.id() as i32, libc::SIGINT) };
    let st = dump.wait().unwrap();
    assert!(st.success() || st.code().is_none(), "tcpdump: {st}");
    let out_file = d.log.with_extension("out");
    assert!(d.terminate().success());
    let sent = std::fs::read_to_string(&out_file).unwrap();
    assert!(sent.contains("\"level\":\"CRITICAL\""), "{sent}");

    let config_path = temp_file("config.toml", &config);
    let (replayed, _) = replay(&[
        "--config",
        config_path.to_str().unwrap(),
        "--until-empty",
        "--port",
        &port.to_string(),
        capture.to_str().unwrap(),
    ]);
    // The same lines; within one interval the daemon sends in its
    // window's hashed order, the replay in the order of the keys.
    let sorted = |s: &str| {
        let mut l: Vec<String> = s.lines().map(String::from).collect();
        l.sort();
        l
    };
    assert_eq!(
        sorted(&replayed),
        sorted(&sent),
        "the replay differs from what the daemon sent"
    );
    assert_eq!(sent.lines().count(), 6, "{sent}");
}

fn which_tcpdump() -> Result<PathBuf, ()> {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let p = Path::new(dir).join("tcpdump");
        if p.exists() {
            return Ok(p);
        }
    }
    Err(())
}

fn default_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.test.toml")
}

#[test]
fn the_default_rules_pass_their_tests_and_a_wrong_expectation_prints_a_diff() {
    let out = run(&["test", default_tests().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.ends_with("3 passed, 0 failed\n"), "{stdout}");

    // The same file with the 350/s key's first WARNING expected as
    // CRITICAL, and beside the default config.
    let wrong = std::fs::read_to_string(default_tests()).unwrap().replacen(
        "at = \"55s\"\nlevel = \"WARNING\"",
        "at = \"55s\"\nlevel = \"CRITICAL\"",
        1,
    );
    let path = temp_file("wrong.test.toml", &wrong);
    let out = run(&["test", path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(": FAILED\n"), "{stdout}");
    assert!(
        stdout.contains("  -     55s CRITICAL  */* {id=350, ip=192.0.2.1} 19250\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  +     55s WARNING   top_combined/#1 {id=350, ip=192.0.2.1} 19250\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with("2 passed, 1 failed\n"), "{stdout}");
}

#[test]
fn replay_calls_the_sinks_only_when_asked() {
    let dir = temp_file("x", "").parent().unwrap().to_path_buf();
    let log = dir.join("alerts.log");
    let config = toptraffic::config::DEFAULT_CONFIG.replacen(
        "[rule.alert.log]\npath = \"-\"",
        &format!("[rule.alert.log]\npath = {:?}", log.display().to_string()),
        1,
    );
    let config_path = temp_file("config.toml", &config);
    // 4,000 a second for 10 s: WARNING at 20,000, CRITICAL at 24,000.
    let t0 = 1_764_720_000u64;
    let lp: String = (0..10)
        .map(|s| {
            format!(
                "combined,ip=a,id=1 count=4000 {}\n",
                (t0 + s) * 1_000_000_000
            )
        })
        .collect();
    let input = temp_file("burst.lp", &lp);
    let args = [
        "--config",
        config_path.to_str().unwrap(),
        input.to_str().unwrap(),
    ];
    let (stdout, _) = replay(&args);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(!log.exists(), "the log sink was called without --sinks");
    let (again, _) = replay(&[&args[..], &["--sinks"]].concat());
    assert_eq!(again, stdout);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), stdout);
}
