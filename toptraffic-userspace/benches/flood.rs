//! The flood benchmark: what the overflow sketch costs and whether it keeps
//! its guarantee. A rule holds `MAX_KEYS` exact keys; the same daemon
//! config and the same heavy keys run twice per mode, once beside a steady
//! background of `MAX_KEYS / 2` recurring keys (the baseline: every key
//! exact) and once beside a flood of ten times `MAX_KEYS` distinct one-line
//! keys a window, at the same lines per second (the heavy keys then start
//! in the sketch and must be promoted). Per run: recall (heavy keys that
//! alerted, and how many rotations after their true value crossed the
//! threshold), false alerts, the daemon's peak and final RSS, its CPU per
//! line, the lines it dropped per reason, and the flood's ratios to the
//! baseline.
//!
//! `cargo xtask bench flood [-- --mode userspace|kernel|both --minutes M]`
//! (root for kernel mode). Writes target/bench/flood.md. With `--minutes M`
//! it runs only the flood, for M minutes, sampling the daemon's RSS every
//! 10 s into target/bench/flood-soak.csv, and prints how flat it stayed.

mod common;

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use toptraffic::ingest::kernel;
use toptraffic_loadgen as loadgen;

use common::Daemon;

const MAX_KEYS: u64 = 2_000;
/// The window: 8 s of 32 intervals of 250 ms. Ten times `MAX_KEYS` a window
/// is 625 keys an interval: an interval's tables hold `MAX_KEYS` keys each
/// and refuse the rest as key_table_full before the sketch sees them, so
/// each interval stays well below that.
const PERIOD: Duration = Duration::from_secs(8);
const EVERY: Duration = Duration::from_millis(250);
/// Distinct flood keys a window, in units of `MAX_KEYS`.
const FLOOD_TIMES: u64 = 10;
/// The baseline's background: as many lines a second as the flood, over
/// this many keys, all of which fit in the exact table.
const BACKGROUND_KEYS: u64 = MAX_KEYS / 2;
/// The alert threshold (`"totalCount" > T`), hence the promotion threshold.
const T: u64 = 300;
/// Heavy keys a batch, each in a slot of its own.
const HEAVY: usize = 8;
const SLOT: Duration = Duration::from_millis(800);
/// Lines each heavy key sends, over `HEAVY_SPAN`: three times `T`.
const HEAVY_LINES: u64 = 3 * T;
const HEAVY_SPAN: Duration = Duration::from_secs(2);
/// Soak samples.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Lines a second of the flood and of the background alike.
fn rate() -> u64 {
    FLOOD_TIMES * MAX_KEYS * 1_000 / PERIOD.as_millis() as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Traffic {
    Baseline,
    Flood,
}

impl Traffic {
    fn name(self) -> &'static str {
        match self {
            Traffic::Baseline => "baseline",
            Traffic::Flood => "flood",
        }
    }

    /// The key of the background's `n`th line.
    fn key(self, n: u64) -> String {
        match self {
            Traffic::Baseline => format!("B{}", n % BACKGROUND_KEYS),
            Traffic::Flood => format!("L{n}"),
        }
    }

    /// The most any background key counts over a window (its truth).
    fn light_truth(self) -> u64 {
        match self {
            Traffic::Baseline => (rate() * PERIOD.as_secs()).div_ceil(BACKGROUND_KEYS),
            Traffic::Flood => 1,
        }
    }
}

struct Args {
    modes: Vec<String>,
    minutes: Option<f64>,
    out: PathBuf,
    smoke: bool,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let modes = match get("--mode").as_deref().unwrap_or("both") {
        "both" => vec!["userspace".into(), "kernel".into()],
        m @ ("userspace" | "kernel") => vec![m.to_string()],
        other => panic!("--mode {other:?}: userspace, kernel or both"),
    };
    Args {
        modes,
        minutes: get("--minutes").map(|s| {
            let m: f64 = s.parse().expect("--minutes: a number");
            assert!(m > 0.0 && m <= 24.0 * 60.0, "--minutes: 0 to 1440");
            m
        }),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench"),
        smoke: !argv.iter().any(|a| a == "--bench"),
    }
}

fn config(mode: &str, log: &Path) -> String {
    format!(
        r#"
[ingest]
mode = "{mode}"
threads = 2
[window]
period = "{period}s"
every = "{every}ms"

[[rule]]
name = "flood"
measurement = "flood"
group_by = ["id"]
field = "count"
as = "totalCount"
max_keys = {MAX_KEYS}

[[rule.alert]]
name = "heavy"
warn = '"totalCount" > {T}'
[rule.alert.log]
path = "{log}"
"#,
        period = PERIOD.as_secs(),
        every = EVERY.as_millis(),
        log = log.display(),
    )
}

/// Sends the background (`traffic`'s keys, one line each, ten a datagram)
/// at `rate()` lines a second until `stop`, and at most for `max` and
/// `rate() * max` lines. It never catches up after a stall: each tick sends
/// at most 50 ms worth, so that no interval gets more keys than the rate
/// gives it, plus one tick.
fn background(
    to: SocketAddr,
    traffic: Traffic,
    max: Duration,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("a sending socket");
        let limit = (rate() as f64 * max.as_secs_f64()) as u64;
        let start = Instant::now();
        let mut last = start;
        let mut owed = 0.0f64;
        let mut next = 0u64;
        while !stop.load(Relaxed) && start.elapsed() < max && next < limit {
            std::thread::sleep(Duration::from_millis(10));
            let now = Instant::now();
            let dt = now.duration_since(last).min(Duration::from_millis(50));
            last = now;
            owed += dt.as_secs_f64() * rate() as f64;
            let due = (owed as u64).min(limit - next);
            owed -= due as f64;
            let lines: Vec<String> = (next..next + due)
                .map(|k| format!("flood,id={} count=1i", traffic.key(k)))
                .collect();
            for chunk in lines.chunks(10) {
                // Loopback: a refused send (the daemon gone) ends the run.
                if sock.send_to(chunk.join("\n").as_bytes(), to).is_err() {
                    return;
                }
            }
            next += due;
            sent.store(next, Relaxed);
        }
    })
}

/// Sends heavy key `id`'s `HEAVY_LINES` lines, one a datagram, paced over
/// `HEAVY_SPAN`; returns when the line that took its true value past `T`
/// was sent.
fn heavy(to: SocketAddr, id: &str) -> SystemTime {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("a sending socket");
    let line = format!("flood,id={id} count=1i");
    let start = Instant::now();
    let mut crossed = SystemTime::now();
    for n in 1..=HEAVY_LINES {
        let at = HEAVY_SPAN.mul_f64(n as f64 / HEAVY_LINES as f64);
        if let Some(wait) = at.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let _ = sock.send_to(line.as_bytes(), to);
        if n == T + 1 {
            crossed = SystemTime::now();
        }
    }
    crossed
}

/// Batch `b`'s start offsets: one per heavy key in a `SLOT` of its own, at
/// a pseudo-random moment in it (a fixed-seed xorshift: the same every run,
/// so that the baseline and the flood schedule their heavy keys alike).
fn offsets(b: u64) -> Vec<Duration> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ b.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (0..HEAVY as u64)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            SLOT * i as u32 + Duration::from_millis(x % SLOT.as_millis() as u64)
        })
        .collect()
}

/// Runs batch `b` of heavy keys (`H<b>_<i>`); returns each key with the
/// moment its true value crossed `T`.
fn batch(to: SocketAddr, b: u64) -> Vec<(String, SystemTime)> {
    let senders: Vec<_> = offsets(b)
        .into_iter()
        .enumerate()
        .map(|(i, off)| {
            std::thread::spawn(move || {
                std::thread::sleep(off);
                let id = format!("H{b}_{i}");
                let crossed = heavy(to, &id);
                (id, crossed)
            })
        })
        .collect();
    senders
        .into_iter()
        .map(|h| h.join().expect("a heavy sender panicked"))
        .collect()
}

/// The log sink's events, one JSON object a line.
fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn id_of(event: &Value) -> &str {
    event["data"]["series"][0]["tags"]["id"]
        .as_str()
        .unwrap_or("")
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf(3) takes an integer and returns one: no pointers,
    // no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / ticks
}

/// Rotations from the crossing line to the alert: 1 when the event is the
/// close of the interval the crossing line was sent in, 2 the next one;
/// 0 or less when the estimate passed `T` before the truth did (by the
/// error bound at most). The event's time is its rotation's interval end,
/// so the daemon's lateness in rotating does not count.
fn rotations(crossed: SystemTime, event_time: SystemTime) -> i64 {
    let every = EVERY.as_secs_f64();
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    ((secs(event_time) / every).round() - (secs(crossed) / every).floor()) as i64
}

/// One soak sample.
#[derive(Debug, Clone, Default, PartialEq)]
struct Sample {
    t: f64,
    rss_kib: u64,
    hwm_kib: u64,
    sent: u64,
    cpu_s: f64,
    keys: u64,
    keys_estimated: u64,
}

const HEADER: &str = "mode,t_s,rss_kib,hwm_kib,sent_lines,daemon_cpu_s,keys,keys_estimated";

impl Sample {
    fn csv(&self, mode: &str) -> String {
        format!(
            "{mode},{:.1},{},{},{},{:.2},{},{}",
            self.t,
            self.rss_kib,
            self.hwm_kib,
            self.sent,
            self.cpu_s,
            self.keys,
            self.keys_estimated
        )
    }
}

/// RSS over the samples after `warmup` seconds: first, last and largest
/// (MiB), and the largest deviation from their mean in percent.
fn flatness(samples: &[Sample], warmup: f64) -> Option<(f64, f64, f64, f64)> {
    let v: Vec<f64> = samples
        .iter()
        .filter(|s| s.t >= warmup)
        .map(|s| s.rss_kib as f64 / 1024.0)
        .collect();
    let (first, last) = (*v.first()?, *v.last()?);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let max = v.iter().copied().fold(0.0, f64::max);
    let dev = v.iter().map(|x| (x - mean).abs()).fold(0.0, f64::max);
    Some((first, last, max, dev * 100.0 / mean.max(f64::MIN_POSITIVE)))
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
struct Outcome {
    heavy: usize,
    alerted: usize,
    /// Rotations to the alert of each heavy key that alerted.
    latencies: Vec<i64>,
    false_alerts: usize,
    /// The keys of the first few false alerts.
    false_keys: Vec<String>,
    light_truth: u64,
    error_bound: f64,
    lines: u64,
    cpu_s: f64,
    hwm_kib: u64,
    rss_kib: u64,
    promotions: u64,
    keys_estimated: u64,
    dropped: String,
    /// Lines counted, and the share of them the kernel counted.
    counted: u64,
    kernel_share: f64,
    samples: Vec<Sample>,
    seconds: f64,
}

impl Outcome {
    fn cpu_per_line_us(&self) -> f64 {
        self.cpu_s * 1e6 / self.lines.max(1) as f64
    }
}

/// The reasons with lines dropped, `reason n` each, or "none".
fn dropped(stats: &Value) -> String {
    let list: Vec<String> = stats["dropped"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(r, n)| format!("{r} {n}"))
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// One run: the daemon in `mode`, `traffic` for a period to fill the
/// window, then batches of heavy keys for `soak` (one batch without),
/// then the daemon's account.
fn run(mode: &str, traffic: Traffic, dir: &Path, soak: Option<Duration>) -> Outcome {
    let name = format!("flood-{mode}-{}", traffic.name());
    let log = dir.join(format!("{name}.alerts"));
    let _ = std::fs::remove_file(&log);
    let attach = (mode == "kernel").then_some("socket_filter");
    let d = Daemon::start_config(dir, &name, mode, &config(mode, &log), attach);
    let pid = d.pid();
    let rule = |s: &Value, field: &str| s["rules"][0]["overflow"][field].clone();
    // Bounded: a batch takes under two periods; the sender stops by itself
    // a minute after the soak (or the run) should have ended.
    let length = soak.unwrap_or(PERIOD * 3);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let sender = background(
        d.udp,
        traffic,
        length + Duration::from_secs(60),
        stop.clone(),
        sent.clone(),
    );

    // The soak's sampler: every SAMPLE_EVERY until the run ends.
    let sampler = soak.map(|_| {
        let (stop, sent, http) = (stop.clone(), sent.clone(), d.http);
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut next = Instant::now();
            while !stop.load(Relaxed) {
                let stats = loadgen::get_json(http, "/api/v1/stats").unwrap_or_default();
                let s = Sample {
                    t: start.elapsed().as_secs_f64(),
                    rss_kib: status_kib(pid, "VmRSS"),
                    hwm_kib: status_kib(pid, "VmHWM"),
                    sent: sent.load(Relaxed),
                    cpu_s: cpu_seconds(pid) - cpu0,
                    keys: stats["rules"][0]["keys"].as_u64().unwrap_or(0),
                    keys_estimated: stats["rules"][0]["overflow"]["keys_estimated"]
                        .as_u64()
                        .unwrap_or(0),
                };
                eprintln!(
                    "  {:>6.0}s  RSS {:.1} MiB  peak {:.1} MiB  sent {}  keys {} (+{} estimated)  CPU {:.1} s",
                    s.t,
                    s.rss_kib as f64 / 1024.0,
                    s.hwm_kib as f64 / 1024.0,
                    s.sent,
                    s.keys,
                    s.keys_estimated,
                    s.cpu_s
                );
                samples.push(s);
                next += SAMPLE_EVERY;
                while !stop.load(Relaxed) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            samples
        })
    });

    // The flood has filled the exact table (so that each heavy key starts
    // in the sketch), and a period of it the window.
    if traffic == Traffic::Flood {
        let deadline = Instant::now() + Duration::from_secs(20);
        while rule(&d.stats(), "in_overflow") != true {
            assert!(
                Instant::now() < deadline,
                "{name}: the rule never went into overflow: {}",
                d.stats()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::thread::sleep((start + PERIOD).saturating_duration_since(Instant::now()));

    let mut crossed: Vec<(String, SystemTime)> = Vec::new();
    let mut b = 0;
    loop {
        crossed.extend(batch(d.udp, b));
        b += 1;
        if soak.is_none_or(|s| start.elapsed() + PERIOD * 2 > s) {
            break;
        }
    }
    // Each heavy key alerts at the latest at the second rotation after its
    // crossing; a margin for a loaded machine, then what is in the log.
    let deadline = Instant::now() + EVERY * 8 + Duration::from_secs(2);
    let alerted = |evs: &[Value], id: &str| {
        evs.iter()
            .find(|e| id_of(e) == id && e["level"] == "WARNING")
            .cloned()
    };
    while Instant::now() < deadline {
        let evs = events(&log);
        if crossed.iter().all(|(id, _)| alerted(&evs, id).is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(s) = soak {
        std::thread::sleep((start + s).saturating_duration_since(Instant::now()));
    }
    let cpu_s = cpu_seconds(pid) - cpu0;
    let (hwm_kib, rss_kib) = (status_kib(pid, "VmHWM"), status_kib(pid, "VmRSS"));
    let stats = d.stats();
    stop.store(true, Relaxed);
    sender.join().expect("the sender panicked");
    let samples = sampler
        .map(|h| h.join().expect("the sampler panicked"))
        .unwrap_or_default();
    let seconds = start.elapsed().as_secs_f64();
    drop(d);

    let evs = events(&log);
    let mut out = Outcome {
        heavy: crossed.len(),
        light_truth: traffic.light_truth(),
        lines: sent.load(Relaxed) + crossed.len() as u64 * HEAVY_LINES,
        cpu_s,
        hwm_kib,
        rss_kib,
        promotions: rule(&stats, "promotions").as_u64().unwrap_or(0),
        keys_estimated: rule(&stats, "keys_estimated").as_u64().unwrap_or(0),
        dropped: dropped(&stats),
        counted: points(&stats, "points_kernel") + points(&stats, "points_userspace"),
        kernel_share: points(&stats, "points_kernel") as f64
            / (points(&stats, "points_kernel") + points(&stats, "points_userspace")).max(1) as f64,
        samples,
        seconds,
        ..Outcome::default()
    };
    for (id, at) in &crossed {
        if let Some(e) = alerted(&evs, id) {
            out.alerted += 1;
            let time = e["time"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
            if let Some(time) = time {
                out.latencies.push(rotations(*at, time));
            }
        }
    }
    // Every other key's truth is `light_truth` at most, far below the
    // threshold less the error bound (checked below): any alert of one is
    // false.
    for e in evs.iter().filter(|e| !id_of(e).starts_with('H')) {
        out.false_alerts += 1;
        if out.false_keys.len() < 5 {
            out.false_keys.push(id_of(e).to_string());
        }
    }
    out.error_bound = evs
        .iter()
        .filter_map(|e| e["error_bound"].as_f64())
        .chain(rule(&stats, "error_bound").as_f64())
        .fold(0.0, f64::max);
    assert!(
        (out.light_truth as f64) < T as f64 - out.error_bound,
        "{name}: a light key's truth {} is not below the threshold {T} less the bound {}",
        out.light_truth,
        out.error_bound
    );
    out
}

fn points(stats: &Value, field: &str) -> u64 {
    stats[field].as_u64().unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// "1: 5, 2: 3" (rotations: keys), or "-".
fn latency_counts(l: &[i64]) -> String {
    let mut l = l.to_vec();
    l.sort_unstable();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < l.len() {
        let n = l[i..].iter().take_while(|&&x| x == l[i]).count();
        parts.push(format!("{}: {n}", l[i]));
        i += n;
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

const TABLE_HEAD: &str = "| mode | run | lines sent | counted (in the kernel) | heavy keys alerted | latency (rotations: keys) | false alerts | peak RSS (MiB) | final RSS (MiB) | CPU per line (us) | CPU/line vs baseline | peak RSS vs baseline | promotions | dropped |\n|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n";

fn row(mode: &str, traffic: Traffic, o: &Outcome, base: Option<&Outcome>) -> String {
    let ratio = |f: &dyn Fn(&Outcome) -> f64| {
        base.map_or("-".to_string(), |b| format!("{:.2}x", f(o) / f(b)))
    };
    format!(
        "| {mode} | {} | {} | {} ({:.0}%) | {}/{} | {} | {}{} | {:.1} | {:.1} | {:.2} | {} | {} | {} | {} |\n",
        traffic.name(),
        o.lines,
        o.counted,
        o.kernel_share * 100.0,
        o.alerted,
        o.heavy,
        latency_counts(&o.latencies),
        o.false_alerts,
        if o.false_keys.is_empty() {
            String::new()
        } else {
            format!(" ({})", o.false_keys.join(" "))
        },
        mib(o.hwm_kib),
        mib(o.rss_kib),
        o.cpu_per_line_us(),
        ratio(&|o| o.cpu_per_line_us()),
        ratio(&|o| o.hwm_kib as f64),
        o.promotions,
        o.dropped,
    )
}

fn preamble() -> String {
    format!(
        "rule: max_keys {MAX_KEYS}, window {} s of {} ms intervals, alert \"totalCount\" > {T}; \
         background {} lines/s (baseline: {BACKGROUND_KEYS} recurring keys; flood: \
         {FLOOD_TIMES}x max_keys distinct one-line keys a window); {HEAVY} heavy keys of \
         {HEAVY_LINES} lines over {} s each, one every {} ms\n",
        PERIOD.as_secs(),
        EVERY.as_millis(),
        rate(),
        HEAVY_SPAN.as_secs(),
        SLOT.as_millis(),
    )
}

/// Whether `mode` can run here; why not otherwise.
fn available(mode: &str) -> Result<(), String> {
    if mode == "kernel" {
        kernel::probe().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn smoke() {
    // `cargo test` runs benches too: check the pure parts, then stop.
    assert_eq!(offsets(0), offsets(0));
    assert_ne!(offsets(0), offsets(1));
    assert!(offsets(3)
        .iter()
        .enumerate()
        .all(|(i, o)| { *o >= SLOT * i as u32 && *o < SLOT * (i as u32 + 1) }));
    let at = |s: f64| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s);
    // Crossed in the interval [100.00, 100.25), alerted at its end.
    assert_eq!(rotations(at(100.1), at(100.25)), 1);
    assert_eq!(rotations(at(100.1), at(100.5)), 2);
    assert_eq!(latency_counts(&[2, 1, 1]), "1: 2, 2: 1");
    assert!(rate() * EVERY.as_millis() as u64 / 1_000 < MAX_KEYS / 2);
    assert!(Traffic::Baseline.light_truth() * 2 < T);
    let samples: Vec<Sample> = (0..10)
        .map(|i| Sample {
            t: i as f64 * 10.0,
            rss_kib: if i % 2 == 0 { 10_240 } else { 10_752 },
            ..Sample::default()
        })
        .collect();
    let (first, last, max, dev) = flatness(&samples, 20.0).unwrap();
    assert_eq!((first, last, max), (10.0, 10.5, 10.5));
    assert!((dev - 100.0 * 0.25 / 10.25).abs() < 1e-9, "{dev}");
    let o = Outcome {
        heavy: 8,
        alerted: 8,
        latencies: vec![1, 1, 2],
        lines: 1000,
        cpu_s: 0.001,
        hwm_kib: 2048,
        dropped: "none".into(),
        ..Outcome::default()
    };
    let r = row("userspace", Traffic::Flood, &o, Some(&o));
    assert!(r.contains("| 8/8 | 1: 2, 2: 1 | 0 | 2.0 |"), "{r}");
    assert!(r.contains("| 1.00 | 1.00x | 1.00x |"), "{r}");
    eprintln!("flood benchmark smoke run: ok (`cargo xtask bench flood` runs it)");
}

fn main() {
    let a = parse_args();
    if a.smoke {
        smoke();
        return;
    }
    let dir = a.out.join("flood-logs");
    std::fs::create_dir_all(&dir).expect("create target/bench/flood-logs");
    let mut skipped = String::new();
    let modes: Vec<&String> = a
        .modes
        .iter()
        .filter(|m| match available(m) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("SKIPPED {m} mode: {e}");
                let _ = writeln!(skipped, "\n{m} mode skipped: {e}");
                false
            }
        })
        .collect();
    eprintln!("flood: {}", preamble());

    if let Some(minutes) = a.minutes {
        let length = Duration::from_secs_f64(minutes * 60.0);
        // The window fills in a period; the allocator's pages settle over
        // the next few (a tenth of the run, at least a minute in all).
        let warmup = (length.as_secs_f64() / 10.0).max(60.0);
        let mut csv = format!("{HEADER}\n");
        let mut report = format!("flood soak, {minutes} min per mode: {}", preamble());
        let _ = writeln!(
            report,
            "\n| mode | RSS first after {warmup:.0} s (MiB) | last | max | max deviation from the mean | peak (VmHWM) | heavy keys alerted | false alerts | dropped |\n|---|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for mode in modes {
            eprintln!("{mode}: the flood for {minutes} min");
            let o = run(mode, Traffic::Flood, &dir, Some(length));
            for s in &o.samples {
                csv.push_str(&s.csv(mode));
                csv.push('\n');
            }
            let (first, last, max, dev) =
                flatness(&o.samples, warmup).unwrap_or((0.0, 0.0, 0.0, f64::NAN));
            let _ = writeln!(
                report,
                "| {mode} | {first:.1} | {last:.1} | {max:.1} | {dev:.2}% | {:.1} | {}/{} | {} | {} |",
                mib(o.hwm_kib),
                o.alerted,
                o.heavy,
                o.false_alerts,
                o.dropped
            );
        }
        report.push_str(&skipped);
        let path = a.out.join("flood-soak.csv");
        std::fs::write(&path, csv).expect("write flood-soak.csv");
        println!("\n{report}");
        eprintln!("samples in {}", path.display());
        return;
    }

    let mut table = format!("{}\n{TABLE_HEAD}", preamble());
    let mut seconds = 0.0;
    for mode in modes {
        eprintln!("{mode}: baseline");
        let base = run(mode, Traffic::Baseline, &dir, None);
        eprintln!("{mode}: flood");
        let flood = run(mode, Traffic::Flood, &dir, None);
        seconds += base.seconds + flood.seconds;
        table.push_str(&row(mode, Traffic::Baseline, &base, None));
        table.push_str(&row(mode, Traffic::Flood, &flood, Some(&base)));
        eprintln!(
            "{mode}: keys estimated in the flood's last interval {}",
            flood.keys_estimated
        );
    }
    table.push_str(&skipped);
    let _ = writeln!(table, "\n{seconds:.0} s of runs.");
    std::fs::write(a.out.join("flood.md"), &table).expect("write flood.md");
    println!("\n{table}");
    eprintln!("table in {}", a.out.join("flood.md").display());
}
