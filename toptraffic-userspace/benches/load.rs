//! The load benchmark: the same traffic, one path after the other in one
//! run, against the floor (a socket filter that drops every datagram
//! without parsing: what receiving costs here), the kernel socket-filter
//! path, the kernel XDP path and the userspace path. For each path and each
//! lines-per-datagram count, a bounded search finds the highest rate
//! sustained with under 0.1% loss, and reports the machine's CPU time per
//! line and the ratio to the floor measured in this same run.
//!
//! `cargo xtask bench load [-- --trial 3s --paths floor,socket,xdp,userspace
//! --lines 1,20 --senders 2 --flows 4 --profile]` (root; needs the kernel
//! path). Writes target/bench/load.md and, with --profile, perf reports in
//! target/bench/perf-*.txt.
//!
//! With `--rate N` (lines/s) there is no search: each path takes `--repeat`
//! trials (3) of `--trial` (20 s then) at that rate, after `--warmup` (1)
//! not counted while the keys enter the daemon, and the table gives the
//! median trial's CPU per line, over the floor's, and the daemon's own CPU
//! as a share of a core: what a node at a steady rate pays.
//!
//! `--keys N` sends N distinct keys (as many ips, ids in the seed's
//! proportion) instead of the seed's 94,000: a set small enough to stay in
//! the caches shows what the memory the key set spans costs a line.

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};
use toptraffic::config::Config;
use toptraffic::ingest::kernel::{self, Attach, KernelPath, Options};
use toptraffic::ingest::kernel_config;
use toptraffic_loadgen::{self as loadgen, Generator, Plan, Shape, Tally};

use common::Daemon;

/// A trial passes under this share of lines lost...
const MAX_LOSS: f64 = 0.001;
/// ...and with at most this share still queued when sending stops: a
/// receiver that falls behind would lose them in a longer run.
const MAX_BACKLOG: f64 = 0.01;
/// A trial that reaches less than this share of its target rate found the
/// sender's limit: asking for more would not send more.
const SATURATED: f64 = 0.9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Floor,
    Socket,
    Xdp,
    Userspace,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::Socket => "socket",
            Kind::Xdp => "xdp",
            Kind::Userspace => "userspace",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Floor => "floor (drop-all socket filter)",
            Kind::Socket => "kernel, socket filter",
            Kind::Xdp => "kernel, XDP generic on lo",
            Kind::Userspace => "userspace",
        }
    }

    fn parse(s: &str) -> Kind {
        match s {
            "floor" => Kind::Floor,
            "socket" => Kind::Socket,
            "xdp" => Kind::Xdp,
            "userspace" => Kind::Userspace,
            _ => panic!("unknown path {s:?}: floor, socket, xdp or userspace"),
        }
    }
}

struct Args {
    paths: Vec<Kind>,
    per: Vec<usize>,
    trial: Duration,
    senders: usize,
    flows: usize,
    /// Bisection steps after the doubling.
    bisect: usize,
    /// A fixed rate instead of the search, and its trials a path.
    rate: Option<u64>,
    repeat: usize,
    /// Trials a path runs at `rate` before those counted: the keys enter
    /// the daemon's window (every key new, its tables growing), which is
    /// not the steady state the rate measures.
    warmup: usize,
    /// Distinct keys (None: the seed's 94,000): a small set stays in the
    /// caches, which shows what the memory the key set spans costs a line.
    keys: Option<usize>,
    profile: bool,
    out: PathBuf,
    smoke: bool,
    loadavg: String,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !argv.iter().any(|a| a == "--bench");
    let get = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let list = |name: &str, default: &str| -> Vec<String> {
        get(name)
            .unwrap_or_else(|| default.into())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Args {
        paths: list("--paths", "floor,socket,xdp,userspace")
            .iter()
            .map(|s| Kind::parse(s))
            .collect(),
        per: list("--lines", "1,20")
            .iter()
            .map(|s| s.parse().expect("--lines: numbers"))
            .collect(),
        // CPU is read in clock ticks (10 ms): a fixed-rate trial is longer,
        // so that a fraction of a microsecond a line shows.
        trial: get("--trial")
            .map(|s| toptraffic::config::parse_duration(&s).expect("--trial: a duration"))
            .unwrap_or(Duration::from_secs(if get("--rate").is_some() {
                20
            } else {
                3
            })),
        rate: get("--rate").map(|s| s.parse().expect("--rate: lines per second")),
        repeat: get("--repeat").map_or(3, |s| s.parse().expect("--repeat")),
        warmup: get("--warmup").map_or(1, |s| s.parse().expect("--warmup")),
        senders: get("--senders").map_or(cpus, |s| s.parse().expect("--senders")),
        flows: get("--flows").map_or(4, |s| s.parse().expect("--flows")),
        bisect: get("--bisect").map_or(4, |s| s.parse().expect("--bisect")),
        keys: get("--keys").map(|s| s.parse().expect("--keys: a number")),
        profile: argv.iter().any(|a| a == "--profile"),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench"),
        smoke,
        loadavg: loadavg(),
    }
}

/// Busy and total jiffies of the whole machine, from /proc/stat.
fn machine_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    (busy, busy + at(3) + at(4))
}

/// utime + stime of a process, all its threads, in jiffies.
fn process_jiffies(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// The ksoftirqd threads: softirq work the senders leave to them is
/// charged to them.
fn ksoftirqd() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .collect()
}

/// CPU jiffies of this run's own work: this process (the senders, and the
/// receive path their softirqs run: tick accounting charges softirq time
/// to the task it interrupts), the daemon, and ksoftirqd.
fn own_jiffies(daemon: Option<u32>, softirqd: &[u32]) -> u64 {
    process_jiffies(std::process::id())
        + daemon.map_or(0, process_jiffies)
        + softirqd.iter().map(|&p| process_jiffies(p)).sum::<u64>()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf(3) takes an integer and returns one: no pointers,
    // no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Where the load goes and how its count is read.
enum Target {
    Floor {
        // Boxed: a loaded program is far larger than the daemon handle.
        path: Box<KernelPath>,
        _socks: Vec<Socket>,
        udp: SocketAddr,
    },
    Daemon(Daemon),
}

/// Counted lines and per-line drops so far (absolute, for deltas).
#[derive(Clone, Copy, Default)]
struct Count {
    counted: u64,
    dropped: u64,
}

impl Target {
    fn udp(&self) -> SocketAddr {
        match self {
            Target::Floor { udp, .. } => *udp,
            Target::Daemon(d) => d.udp,
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Target::Floor { .. } => None,
            Target::Daemon(d) => Some(d.pid()),
        }
    }

    /// What has been counted so far; the floor counts datagrams, each of
    /// `per` lines.
    fn count(&self, per: usize) -> Count {
        match self {
            Target::Floor { path, .. } => Count {
                counted: path.floor_datagrams() * per as u64,
                dropped: 0,
            },
            Target::Daemon(d) => {
                let s = d.stats();
                let t = Tally::between(&Value::Null, &s);
                Count {
                    counted: t.counted(),
                    dropped: t.line_drops,
                }
            }
        }
    }
}

fn floor() -> Target {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut socks = Vec::new();
    let mut addr: SocketAddr = "127.0.0.1:0".parse().expect("valid");
    // As the daemon: one SO_REUSEPORT socket per CPU.
    for _ in 0..cpus {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("a socket");
        s.set_reuse_port(true).expect("SO_REUSEPORT");
        s.bind(&addr.into()).expect("bind the floor's socket");
        addr = s.local_addr().unwrap().as_socket().unwrap();
        socks.push(s);
    }
    let c = Config::embedded_default();
    let plan = kernel_config::plan(&c.rules).expect("the default rules fit the kernel");
    let path = KernelPath::load(
        plan,
        vec![1024; c.rules.len()],
        Options {
            attach: Attach::Floor(socks.iter().map(|s| s.as_raw_fd()).collect()),
            map_entries: 4096,
            pin_dir: None,
            load_all: false,
            max_datagram: 65507,
        },
    )
    .expect("load the floor filter");
    Target::Floor {
        path: Box::new(path),
        _socks: socks,
        udp: addr,
    }
}

/// One trial at one rate.
#[derive(Debug, Clone, Copy, Default)]
struct Trial {
    target: u64,
    /// Lines per second actually sent.
    achieved: f64,
    sent: u64,
    lost: u64,
    /// Lines not yet counted when sending stopped.
    backlog: u64,
    /// CPU seconds of this run's own work (see [`own_jiffies`]).
    cpu: f64,
    /// The whole machine's busy CPU seconds (others' work included).
    machine_cpu: f64,
    /// The daemon's own CPU seconds.
    daemon_cpu: Option<f64>,
    /// Seconds from the first send to the end of the count.
    wall: f64,
}

impl Trial {
    fn loss(&self) -> f64 {
        self.lost as f64 / self.sent.max(1) as f64
    }

    fn passed(&self) -> bool {
        self.sent > 0
            && self.loss() < MAX_LOSS
            && (self.backlog as f64) <= MAX_BACKLOG * self.sent as f64
    }

    fn saturated(&self) -> bool {
        self.achieved < SATURATED * self.target as f64
    }

    fn cpu_us_per_line(&self) -> f64 {
        self.cpu * 1e6 / (self.sent - self.lost).max(1) as f64
    }
}

fn trial(
    t: &Target,
    gens: &mut Vec<Generator>,
    per: usize,
    rate: u64,
    a: &Args,
    label: &str,
) -> Trial {
    let ticks = clock_ticks();
    let before = t.count(per);
    let softirqd = ksoftirqd();
    let (busy0, _) = machine_jiffies();
    let own0 = own_jiffies(t.pid(), &softirqd);
    let d0 = t.pid().map(process_jiffies);
    let began = Instant::now();
    let plan = Plan {
        to: t.udp(),
        lines: (rate as f64 * a.trial.as_secs_f64()) as u64,
        rate,
        max_time: a.trial + Duration::from_secs(2),
        flows: a.flows,
        churn_per_minute: 0.0,
    };
    let (sent, back) =
        loadgen::run_parallel(std::mem::take(gens), &plan, |_| {}).expect("send the load");
    *gens = back;
    let at_end = t.count(per);
    let lines = sent.lines();
    let delta = |c: Count| (c.counted + c.dropped).saturating_sub(before.counted + before.dropped);
    let backlog = lines.saturating_sub(delta(at_end));
    // Let what is queued be counted: until all is, or the count stops.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = delta(at_end);
    let mut still = Instant::now();
    while last < lines && Instant::now() < deadline && still.elapsed() < Duration::from_millis(600)
    {
        std::thread::sleep(Duration::from_millis(100));
        let now = delta(t.count(per));
        if now != last {
            still = Instant::now();
            last = now;
        }
    }
    let (busy1, _) = machine_jiffies();
    let r = Trial {
        target: rate,
        achieved: sent.valid_lines as f64 / sent.elapsed.as_secs_f64(),
        sent: lines,
        lost: lines.saturating_sub(last),
        backlog,
        cpu: (own_jiffies(t.pid(), &softirqd) - own0) as f64 / ticks,
        machine_cpu: (busy1 - busy0) as f64 / ticks,
        daemon_cpu: t
            .pid()
            .zip(d0)
            .map(|(p, d0)| (process_jiffies(p) - d0) as f64 / ticks),
        wall: began.elapsed().as_secs_f64(),
    };
    eprintln!(
        "  [{label}] target {:>10} lines/s: sent {:>10.0} lines/s, lost {} ({:.3}%), queued at end {:.2}%, CPU {:.3} us/line{}, machine {:.3}: {}",
        rate,
        r.achieved,
        r.lost,
        r.loss() * 100.0,
        r.backlog as f64 * 100.0 / r.sent.max(1) as f64,
        r.cpu_us_per_line(),
        r.daemon_cpu
            .map(|c| format!(" (daemon {:.3})", c * 1e6 / (r.sent - r.lost).max(1) as f64))
            .unwrap_or_default(),
        r.machine_cpu * 1e6 / (r.sent - r.lost).max(1) as f64,
        if r.passed() {
            if r.saturated() {
                "pass (sender saturated)"
            } else {
                "pass"
            }
        } else {
            "FAIL"
        }
    );
    r
}

/// The best of one path at one lines-per-datagram count.
#[derive(Debug, Clone)]
struct Found {
    kind: Kind,
    per: usize,
    best: Option<Trial>,
    /// "loss" when a faster trial lost lines, "sender" when the sender could
    /// not send faster.
    limit: &'static str,
    trials: usize,
}

/// Doubling from `start` until a trial fails or the sender saturates, then
/// bisection between the last pass and the first failure.
fn search(t: &Target, gens: &mut Vec<Generator>, kind: Kind, per: usize, a: &Args) -> Found {
    let label = format!("{} x{per}", kind.name());
    let start: u64 = if a.smoke {
        20_000
    } else {
        100_000 * per.min(4) as u64
    };
    let mut best: Option<Trial> = None;
    let keep = |r: Trial, best: &mut Option<Trial>| {
        if r.passed() && best.is_none_or(|b| r.achieved > b.achieved) {
            *best = Some(r);
        }
    };
    let (mut lo, mut hi) = (None::<u64>, None::<u64>);
    let mut trials = 0;
    let mut limit = "sender";
    let mut rate = start;
    // Doubling, at most 8 steps (x256).
    for _ in 0..if a.smoke { 1 } else { 8 } {
        let r = trial(t, gens, per, rate, a, &label);
        trials += 1;
        keep(r, &mut best);
        if !r.passed() {
            hi = Some(rate);
            limit = "loss";
            break;
        }
        lo = Some(rate);
        if r.saturated() {
            // Flat out: other work on the machine only ever lowers what a
            // trial reaches, so the best of three is the path's rate.
            for _ in 0..2 {
                let r = trial(t, gens, per, rate, a, &label);
                trials += 1;
                keep(r, &mut best);
            }
            break;
        }
        rate *= 2;
    }
    // Nothing passed: halve, at most 4 times.
    if lo.is_none() && !a.smoke {
        let mut rate = start / 2;
        for _ in 0..4 {
            let r = trial(t, gens, per, rate, a, &label);
            trials += 1;
            keep(r, &mut best);
            if r.passed() {
                lo = Some(rate);
                break;
            }
            hi = Some(rate);
            rate /= 2;
        }
    }
    if let (Some(mut l), Some(mut h)) = (lo, hi) {
        for _ in 0..a.bisect {
            if (h as f64) < l as f64 * 1.08 {
                break;
            }
            let mid = (l + h) / 2;
            let r = trial(t, gens, per, mid, a, &label);
            trials += 1;
            keep(r, &mut best);
            if r.passed() {
                l = mid;
            } else {
                h = mid;
            }
        }
    }
    Found {
        kind,
        per,
        best,
        limit,
        trials,
    }
}

/// perf on this process and the daemon during one more trial at `rate`:
/// on loopback the receive path (and the kernel programs) runs in the
/// senders' softirqs, and the senders' threads inherit the recording.
/// Not machine-wide: other work here would fill the report.
fn profile(t: &Target, gens: &mut Vec<Generator>, kind: Kind, per: usize, rate: u64, a: &Args) {
    let data = a.out.join(format!("perf-{}-x{per}.data", kind.name()));
    let report = a.out.join(format!("perf-{}-x{per}.txt", kind.name()));
    let secs = a.trial.as_secs().max(2);
    let pids = std::iter::once(std::process::id())
        .chain(t.pid())
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let rec = Command::new("perf")
        .args(["record", "-g", "-p", &pids, "-o"])
        .arg(&data)
        .args(["--", "sleep", &secs.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut rec) = rec else {
        eprintln!("  perf is not available: no profile");
        return;
    };
    std::thread::sleep(Duration::from_millis(300));
    trial(
        t,
        gens,
        per,
        rate,
        a,
        &format!("{} x{per} perf", kind.name()),
    );
    let _ = rec.wait();
    let out = Command::new("perf")
        .args(["report", "--stdio", "--no-children", "--sort", "sym"])
        .args(["--percent-limit", "1", "-g", "none", "-i"])
        .arg(&data)
        .output();
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            let _ = std::fs::write(&report, text.as_bytes());
            eprintln!("  profile of {} x{per}: {}", kind.name(), report.display());
            for l in text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .take(15)
            {
                eprintln!("    {}", l.trim_end());
            }
        }
        Err(e) => eprintln!("  perf report failed: {e}"),
    }
    let _ = std::fs::remove_file(&data);
}

/// `a.repeat` trials at `rate`: the one of median CPU per line.
fn fixed(
    t: &Target,
    gens: &mut Vec<Generator>,
    kind: Kind,
    per: usize,
    rate: u64,
    a: &Args,
) -> Found {
    let label = format!("{} x{per} at {rate}", kind.name());
    for _ in 0..a.warmup {
        trial(
            t,
            gens,
            per,
            rate,
            a,
            &format!("{label}, warm-up, not counted"),
        );
    }
    let mut runs: Vec<Trial> = (0..a.repeat.max(1))
        .map(|_| trial(t, gens, per, rate, a, &label))
        .collect();
    runs.sort_by(|x, y| x.cpu_us_per_line().total_cmp(&y.cpu_us_per_line()));
    let mid = runs[runs.len() / 2];
    Found {
        kind,
        per,
        best: mid.passed().then_some(mid),
        limit: if mid.passed() { "-" } else { "loss" },
        trials: runs.len(),
    }
}

fn rate_table(found: &[Found], a: &Args, rate: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| path | lines/datagram | lines/s sent | CPU/line, all (us) | over the floor (us) | CPU/line, daemon (us) | daemon, share of a core | trials |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for f in found {
        let Some(b) = f.best else {
            let _ = writeln!(
                s,
                "| {} | {} | lost more than 0.1% | | | | | {} |",
                f.kind.title(),
                f.per,
                f.trials
            );
            continue;
        };
        let floor = found
            .iter()
            .find(|g| g.kind == Kind::Floor && g.per == f.per)
            .and_then(|g| g.best);
        let over = floor.map_or("-".to_string(), |fl| {
            format!("{:.3}", b.cpu_us_per_line() - fl.cpu_us_per_line())
        });
        let counted = (b.sent - b.lost).max(1) as f64;
        let (daemon, share) = b
            .daemon_cpu
            .map_or(("-".to_string(), "-".to_string()), |c| {
                (
                    format!("{:.3}", c * 1e6 / counted),
                    format!("{:.2}%", c * 100.0 / b.wall.max(1e-9)),
                )
            });
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.3} | {} | {} | {} | {} |",
            f.kind.title(),
            f.per,
            b.achieved,
            b.cpu_us_per_line(),
            over,
            daemon,
            share,
            f.trials
        );
    }
    let _ = writeln!(
        s,
        "\n{rate} lines/s, {} sender thread(s) x {} source ports, median of {} trials of {:?} after {} not counted (warm-up), {}; CPU/line: CPU time of the senders (with the receive path their softirqs run), the daemon and ksoftirqd, over the lines counted; over the floor: less the floor's in this run (the sending and receiving); the daemon's share: its CPU time over the trial's wall time.",
        a.senders, a.flows, a.repeat, a.trial, a.warmup, shape_note(a)
    );
    let _ = writeln!(
        s,
        "Load average (1, 5, 15 min) at the start: {}; at the end: {}.",
        a.loadavg,
        loadavg()
    );
    s
}

/// The traffic's shape, as the tables' notes give it.
fn shape_note(a: &Args) -> String {
    match a.keys {
        Some(k) => format!("seed-like shape with {k} keys (as many ips, skew 2)"),
        None => "seed-like shape (94k keys, 50k ips, 25k ids, skew 2)".into(),
    }
}

/// The seed's shape, or with `--keys` that many keys: as many ips, ids in
/// the seed's proportion.
fn key_shape(a: &Args) -> Shape {
    let seed = Shape::seed_like();
    match a.keys {
        Some(keys) => Shape {
            keys,
            ips: keys,
            ids: (keys * seed.ids / seed.keys).max(1),
            ..seed
        },
        None => seed,
    }
}

fn pools(a: &Args) -> Vec<(usize, Vec<Generator>)> {
    a.per
        .iter()
        .map(|&per| {
            let shape = Shape {
                lines_per_datagram: (per, per),
                ..key_shape(a)
            };
            let mut gens = loadgen::senders(Generator::new(shape), a.senders);
            // About 400k lines per sender: every key recurs, and the
            // sender formats nothing while it sends.
            let datagrams = if a.smoke {
                1000
            } else {
                (400_000 / per).max(1000)
            };
            for g in &mut gens {
                g.use_pool(datagrams);
            }
            (per, gens)
        })
        .collect()
}

fn table(found: &[Found], a: &Args) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| path | lines/datagram | max rate, < 0.1% loss (lines/s) | datagrams/s | vs floor | limited by | CPU/line, all (us) | vs floor, CPU/line | CPU/line, daemon (us) | trials |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    for f in found {
        let floor = found
            .iter()
            .find(|g| g.kind == Kind::Floor && g.per == f.per)
            .and_then(|g| g.best);
        let Some(b) = f.best else {
            let _ = writeln!(
                s,
                "| {} | {} | none passed | | | {} | | | | {} |",
                f.kind.title(),
                f.per,
                f.limit,
                f.trials
            );
            continue;
        };
        let ratio = floor.map_or("-".to_string(), |fl| {
            format!("{:.0}%", b.achieved * 100.0 / fl.achieved)
        });
        // What the rate ratio would be if every path were CPU-bound alone
        // on the machine: less sensitive to other work than the rates.
        let cpu_ratio = floor.map_or("-".to_string(), |fl| {
            format!("{:.0}%", fl.cpu_us_per_line() * 100.0 / b.cpu_us_per_line())
        });
        let daemon = b.daemon_cpu.map_or("-".to_string(), |c| {
            format!("{:.3}", c * 1e6 / (b.sent - b.lost).max(1) as f64)
        });
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {} | {} | {:.3} | {} | {} | {} |",
            f.kind.title(),
            f.per,
            b.achieved,
            b.achieved / f.per as f64,
            ratio,
            f.limit,
            b.cpu_us_per_line(),
            cpu_ratio,
            daemon,
            f.trials
        );
    }
    let _ = writeln!(
        s,
        "\n{} sender thread(s) x {} source ports, {:?} trials, {}; CPU/line: CPU time of the senders (with the receive path their softirqs run), the daemon and ksoftirqd, over the lines counted.",
        a.senders, a.flows, a.trial, shape_note(a)
    );
    let _ = writeln!(
        s,
        "Load average (1, 5, 15 min) at the start: {}; at the end: {} (other work on the machine takes CPU from the senders and the daemon).",
        a.loadavg,
        loadavg()
    );
    s
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    if let Err(e) = kernel::probe() {
        eprintln!("SKIPPED load benchmark: the kernel path cannot run here: {e}");
        return;
    }
    let mut a = parse_args();
    if a.smoke {
        // `cargo test` runs benches too (without --bench): one short trial
        // on the floor, to show that the harness counts.
        a.paths = vec![Kind::Floor];
        a.per = vec![1];
        a.trial = Duration::from_millis(500);
    }
    std::fs::create_dir_all(&a.out).expect("create target/bench");
    let logs = a.out.join("load-logs");
    std::fs::create_dir_all(&logs).expect("create the log folder");
    let started = Instant::now();
    eprintln!(
        "generating the load ({} senders); load average {}",
        a.senders, a.loadavg
    );
    let mut pools = pools(&a);
    let mut found = Vec::new();
    for &kind in &a.paths {
        eprintln!(
            "{} ({:.0} s into the run)",
            kind.title(),
            started.elapsed().as_secs_f64()
        );
        let target = match kind {
            Kind::Floor => floor(),
            k => {
                let (mode, ingest, attach) = match k {
                    Kind::Userspace => ("userspace", "", None),
                    Kind::Xdp => (
                        "kernel",
                        "xdp_interface = \"lo\"\nxdp_mode = \"skb\"\n",
                        Some("xdp"),
                    ),
                    _ => ("kernel", "", Some("socket_filter")),
                };
                let name = format!("bench-{}", k.name());
                Target::Daemon(Daemon::start(&logs, &name, mode, ingest, attach))
            }
        };
        for (per, gens) in &mut pools {
            if let Some(rate) = a.rate {
                found.push(fixed(&target, gens, kind, *per, rate, &a));
                continue;
            }
            let f = search(&target, gens, kind, *per, &a);
            if a.profile {
                if let Some(b) = f.best {
                    profile(&target, gens, kind, *per, b.target, &a);
                }
            }
            found.push(f);
        }
    }
    if a.smoke {
        let b = found[0].best.expect("the floor counted the smoke trial");
        assert!(b.passed());
        eprintln!("load benchmark smoke run: ok");
        return;
    }
    let (t, file) = match a.rate {
        Some(rate) => (rate_table(&found, &a, rate), "load-rate.md"),
        None => (table(&found, &a), "load.md"),
    };
    println!("{t}");
    let _ = std::fs::write(a.out.join(file), &t);
    eprintln!(
        "load benchmark done in {:.0} s; table in {}",
        started.elapsed().as_secs_f64(),
        a.out.join(file).display()
    );
}
