//! The soak: the kernel path (socket filter) for a long run at a steady
//! rate, with 100,000 keys in each of the three default rules and churn
//! (a share of the keys replaced by new ones every minute), sampling every
//! 10 s the daemon's RSS (less its mappings of the key set's arrays,
//! which are the kernel maps' memory), the memory of its kernel maps
//! (memlock from fdinfo), the active keys per rule and what was counted
//! and lost.
//!
//! `cargo xtask bench soak [--minutes 30]` (root; needs the kernel path).
//! Writes target/bench/soak.csv and docs/soak.png and prints how flat each
//! curve is after the warm-up. `-- --plot-only FILE.csv` redraws the plot.
//! `-- --mode userspace` soaks the userspace path instead (no root; its
//! CSV and plot go to target/bench/soak-userspace.*).

mod common;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use toptraffic::ingest::kernel;
use toptraffic_loadgen::{self as loadgen, Generator, Plan, Shape, Tally};

use common::Daemon;

const RULES: [&str; 3] = ["top_combined", "top_ips", "top_stores"];

struct Args {
    /// "kernel" (the default) or "userspace".
    mode: String,
    minutes: f64,
    rate: u64,
    keys: usize,
    churn: f64,
    every: Duration,
    warmup: Option<f64>,
    csv: PathBuf,
    png: PathBuf,
    plot_only: Option<PathBuf>,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mode = get("--mode").unwrap_or_else(|| "kernel".into());
    assert!(
        mode == "kernel" || mode == "userspace",
        "--mode kernel|userspace"
    );
    // The docs' plot is the kernel path's.
    let (csv, png) = match mode.as_str() {
        "kernel" => ("target/bench/soak.csv", "docs/soak.png"),
        _ => (
            "target/bench/soak-userspace.csv",
            "target/bench/soak-userspace.png",
        ),
    };
    Args {
        minutes: get("--minutes").map_or(30.0, |s| s.parse().expect("--minutes")),
        rate: get("--rate").map_or(50_000, |s| s.parse().expect("--rate")),
        keys: get("--keys").map_or(100_000, |s| s.parse().expect("--keys")),
        churn: get("--churn").map_or(0.1, |s| s.parse().expect("--churn")),
        every: Duration::from_secs(get("--every").map_or(10, |s| s.parse().expect("--every"))),
        warmup: get("--warmup").map(|s| s.parse().expect("--warmup (seconds)")),
        csv: get("--csv").map_or(root.join(csv), PathBuf::from),
        png: get("--png").map_or(root.join(png), PathBuf::from),
        plot_only: get("--plot-only").map(PathBuf::from),
        mode,
    }
}

/// A plotted curve: its name and how to read it off a sample.
type Series<'a> = (&'a str, Box<dyn Fn(&Sample) -> f64>);

/// One sample.
#[derive(Debug, Clone, Default, PartialEq)]
struct Sample {
    t: f64,
    rss_kib: u64,
    map_kib: u64,
    keys: [u64; 3],
    sent: u64,
    counted: u64,
    lost: u64,
    cpu_s: f64,
}

const HEADER: &str = "t_s,rss_kib,bpf_map_memlock_kib,keys_top_combined,keys_top_ips,keys_top_stores,sent_lines,counted_lines,lost_lines,daemon_cpu_s";

impl Sample {
    fn csv(&self) -> String {
        format!(
            "{:.1},{},{},{},{},{},{},{},{},{:.2}",
            self.t,
            self.rss_kib,
            self.map_kib,
            self.keys[0],
            self.keys[1],
            self.keys[2],
            self.sent,
            self.counted,
            self.lost,
            self.cpu_s
        )
    }

    fn parse(line: &str) -> Option<Sample> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 10 {
            return None;
        }
        let u = |i: usize| f[i].parse::<u64>().ok();
        Some(Sample {
            t: f[0].parse().ok()?,
            rss_kib: u(1)?,
            map_kib: u(2)?,
            keys: [u(3)?, u(4)?, u(5)?],
            sent: u(6)?,
            counted: u(7)?,
            lost: u(8)?,
            cpu_s: f[9].parse().ok()?,
        })
    }
}

/// VmRSS of a process less its mappings of BPF maps, in KiB: the key
/// set's arrays that the daemon maps are kernel memory, which the maps
/// column counts (memlock); in VmRSS they would count twice.
fn rss_kib(pid: u32) -> u64 {
    let kib = |v: &str| -> u64 {
        v.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let vm_rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(kib))
        .unwrap_or(0);
    // smaps: a mapping's header (its address range first, its file
    // last), then its fields.
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let is_range = |w: &str| {
        w.split_once('-').is_some_and(|(a, b)| {
            u64::from_str_radix(a, 16).is_ok() && u64::from_str_radix(b, 16).is_ok()
        })
    };
    let mut in_map = false;
    let mut mapped = 0;
    for l in smaps.lines() {
        if l.split_whitespace().next().is_some_and(is_range) {
            in_map = l.ends_with("bpf-map");
        } else if let Some(rss) = l.strip_prefix("Rss:") {
            if in_map {
                mapped += kib(rss);
            }
        }
    }
    vm_rss.saturating_sub(mapped)
}

/// The memlock of every BPF map the process holds, each map once (by id),
/// in KiB: what the kernel charges for its maps.
fn map_memlock_kib(pid: u32) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    for fd in fds.flatten() {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let (Some(id), Some(memlock)) = (field("map_id:"), field("memlock:")) else {
            continue;
        };
        if seen.insert(id) {
            total += memlock.parse::<u64>().unwrap_or(0);
        }
    }
    total / 1024
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

/// The last sample taken while the sender still sent: by the first sample
/// with everything sent, traffic may have stopped up to a sampling period
/// earlier and keys have begun to leave the window.
fn sending_until(samples: &[Sample]) -> f64 {
    let last = samples.last().map_or(0, |s| s.sent);
    match samples.iter().position(|s| s.sent >= last) {
        Some(i) if i > 0 => samples[i - 1].t,
        Some(i) => samples[i].t,
        None => f64::INFINITY,
    }
}

/// Per series between the warm-up and the end of sending: (name, mean,
/// largest deviation in %).
fn flatness(samples: &[Sample], warmup: f64) -> Vec<(String, f64, f64)> {
    let until = sending_until(samples);
    let after: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t >= warmup && s.t <= until)
        .collect();
    let series: Vec<(String, Vec<f64>)> = vec![
        (
            "RSS (MiB)".into(),
            after.iter().map(|s| s.rss_kib as f64 / 1024.0).collect(),
        ),
        (
            "kernel maps (MiB)".into(),
            after.iter().map(|s| s.map_kib as f64 / 1024.0).collect(),
        ),
    ]
    .into_iter()
    .chain((0..3).map(|i| {
        (
            format!("keys {}", RULES[i]),
            after.iter().map(|s| s.keys[i] as f64).collect(),
        )
    }))
    .collect();
    series
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(name, v)| {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let dev = v.iter().map(|x| (x - mean).abs()).fold(0.0, f64::max);
            let pct = if mean > 0.0 { dev * 100.0 / mean } else { 0.0 };
            (name, mean, pct)
        })
        .collect()
}

/// The first font found among Debian's usual ones (fonts-dejavu-core).
fn font() -> Option<&'static [u8]> {
    [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    ]
    .iter()
    .find_map(|p| std::fs::read(p).ok())
    .map(|b| &*Box::leak(b.into_boxed_slice()))
}

fn plot(samples: &[Sample], warmup: f64, title: &str, png: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    use plotters::style::{register_font, FontStyle};
    let font = font().ok_or("no TrueType font found (apt-get install fonts-dejavu-core)")?;
    register_font("sans-serif", FontStyle::Normal, font).map_err(|_| "unreadable font")?;
    if let Some(dir) = png.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let root = BitMapBackend::new(png, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(430);
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0) / 60.0;
    let mib = |k: u64| k as f64 / 1024.0;
    let mem_max = samples
        .iter()
        .map(|s| mib(s.rss_kib).max(mib(s.map_kib)))
        .fold(1.0, f64::max)
        * 1.15;
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut c = ChartBuilder::on(&top)
        .caption("memory", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..t_max, 0.0..mem_max)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("minutes")
        .y_desc("MiB")
        .draw()
        .map_err(err)?;
    let colors = [BLUE, RED, RGBColor(0, 150, 0), MAGENTA];
    let lines: [Series; 2] = [
        ("daemon RSS", Box::new(move |s: &Sample| mib(s.rss_kib))),
        (
            "kernel maps (memlock)",
            Box::new(move |s: &Sample| mib(s.map_kib)),
        ),
    ];
    for (i, (name, f)) in lines.iter().enumerate() {
        let color = colors[i];
        c.draw_series(LineSeries::new(
            samples.iter().map(|s| (s.t / 60.0, f(s))),
            color.stroke_width(2),
        ))
        .map_err(err)?
        .label(*name)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    let marker = RGBColor(255, 140, 0);
    c.draw_series(LineSeries::new(
        [(warmup / 60.0, 0.0), (warmup / 60.0, mem_max)],
        marker.stroke_width(2),
    ))
    .map_err(err)?
    .label("end of warm-up")
    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], marker.stroke_width(2)));
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    let keys_max = samples
        .iter()
        .flat_map(|s| s.keys)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.15;
    let mut c = ChartBuilder::on(&bottom)
        .caption("active keys per rule", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..t_max, 0.0..keys_max)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("minutes")
        .y_desc("keys")
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .draw()
        .map_err(err)?;
    for (i, rule) in RULES.iter().enumerate() {
        let color = colors[i];
        c.draw_series(LineSeries::new(
            samples.iter().map(|s| (s.t / 60.0, s.keys[i] as f64)),
            color.stroke_width(2),
        ))
        .map_err(err)?
        .label(*rule)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

fn summary(samples: &[Sample], warmup: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| series (from {warmup:.0} s, after the warm-up, to {:.0} s, the end of sending) | mean | largest deviation from the mean |",
        sending_until(samples)
    );
    let _ = writeln!(s, "|---|---:|---:|");
    for (name, mean, pct) in flatness(samples, warmup) {
        let _ = writeln!(s, "| {name} | {mean:.1} | {pct:.2}% |");
    }
    if let Some(last) = samples.last() {
        let _ = writeln!(
            s,
            "\nsent {} lines, counted {}, lost {} ({:.4}%); daemon CPU {:.1} s",
            last.sent,
            last.counted,
            last.lost,
            last.lost as f64 * 100.0 / last.sent.max(1) as f64,
            last.cpu_s
        );
    }
    s
}

fn read_csv(path: &Path) -> Vec<Sample> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .skip(1)
        .filter_map(Sample::parse)
        .collect()
}

fn main() {
    let a = parse_args();
    let bench = std::env::args().any(|x| x == "--bench");
    if !bench {
        // `cargo test` runs benches too: check the CSV and plot code on
        // made-up samples, then stop.
        let samples: Vec<Sample> = (0..30)
            .map(|i| Sample {
                t: i as f64 * 10.0,
                rss_kib: 60_000 + (i % 3) * 100,
                map_kib: 90_000,
                keys: [100_000, 100_000 - i, 99_000],
                sent: i * 500_000,
                counted: i * 500_000,
                lost: 0,
                cpu_s: i as f64,
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("toptraffic-soak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("soak.csv");
        let text: String = std::iter::once(HEADER.to_string())
            .chain(samples.iter().map(Sample::csv))
            .map(|l| l + "\n")
            .collect();
        std::fs::write(&csv, text).unwrap();
        assert_eq!(read_csv(&csv), samples);
        let f = flatness(&samples, 100.0);
        assert!(f[1].2 == 0.0 && f[0].2 > 0.0, "{f:?}");
        match plot(&samples, 100.0, "smoke", &dir.join("soak.png")) {
            Ok(()) => assert!(dir.join("soak.png").exists()),
            Err(e) => eprintln!("soak smoke: no plot: {e}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("soak benchmark smoke run: ok (`cargo xtask bench soak` runs it)");
        return;
    }
    if let Some(csv) = &a.plot_only {
        let samples = read_csv(csv);
        let warmup = a.warmup.unwrap_or(120.0);
        plot(&samples, warmup, "toptraffic soak (replotted)", &a.png).expect("plot");
        println!("{}", summary(&samples, warmup));
        return;
    }
    let in_kernel = a.mode == "kernel";
    if let (true, Err(e)) = (in_kernel, kernel::probe()) {
        eprintln!("SKIPPED soak: the kernel path cannot run here: {e}");
        return;
    }
    let total = Duration::from_secs_f64(a.minutes * 60.0);
    // The window fills in a minute and churned keys start leaving after
    // it; flatness is judged after that.
    let warmup = a
        .warmup
        .unwrap_or_else(|| (total.as_secs_f64() / 3.0).min(120.0));
    let dir = a.csv.parent().unwrap_or(Path::new(".")).join("soak-logs");
    std::fs::create_dir_all(&dir).expect("create the log folder");
    let attach = in_kernel.then_some("socket_filter");
    let d = Daemon::start(&dir, "soak", &a.mode, "", attach);
    let pid = d.pid();
    let base = d.stats();
    eprintln!(
        "soak: {:.0} min at {} lines/s, {} keys in each of 3 rules, {:.0}% replaced a minute; daemon pid {pid}, sampling every {:?}",
        a.minutes,
        a.rate,
        a.keys,
        a.churn * 100.0,
        a.every
    );
    let gen = Generator::new(Shape {
        keys: a.keys,
        ips: a.keys,
        ids: a.keys,
        distinct_ids: true,
        all_measurements: true,
        skew: 1.0,
        seed: 7,
        ..Shape::default()
    });
    let plan = Plan {
        to: d.udp,
        lines: (a.rate as f64 * total.as_secs_f64()) as u64,
        rate: a.rate,
        max_time: total,
        flows: 2,
        churn_per_minute: a.churn,
    };
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (sent, done) = (sent.clone(), done.clone());
        std::thread::spawn(move || {
            let r = loadgen::run_parallel(vec![gen], &plan, |s| sent.store(s.lines(), Relaxed));
            if let Ok((s, _)) = &r {
                sent.store(s.lines(), Relaxed);
            }
            done.store(true, Relaxed);
            r.map(|(s, _)| s)
        })
    };
    let start = Instant::now();
    let cpu0 = cpu_seconds(pid);
    let mut samples = Vec::new();
    let mut next = start;
    // Bounded: the sender stops at `total`; one more sample after it.
    let end = start + total + Duration::from_secs(60);
    let mut finished_at: Option<Instant> = None;
    while Instant::now() < end {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        next += a.every;
        let stats: Value = match loadgen::get_json(d.http, "/api/v1/stats") {
            Ok(s) => s,
            Err(e) => {
                eprintln!("  stats: {e}");
                continue;
            }
        };
        let t = Tally::between(&base, &stats);
        let sent_now = sent.load(Relaxed);
        let mut keys = [0u64; 3];
        for r in stats["rules"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(i) = RULES.iter().position(|n| r["name"] == *n) {
                keys[i] = r["keys"].as_u64().unwrap_or(0);
            }
        }
        let s = Sample {
            t: start.elapsed().as_secs_f64(),
            rss_kib: rss_kib(pid),
            map_kib: map_memlock_kib(pid),
            keys,
            sent: sent_now,
            counted: t.counted(),
            lost: t.lost(sent_now),
            cpu_s: cpu_seconds(pid) - cpu0,
        };
        eprintln!(
            "  {:>6.0}s  RSS {:.1} MiB  maps {:.1} MiB  keys {}/{}/{}  sent {}  counted {}  behind or lost {}  daemon CPU {:.1} s",
            s.t,
            s.rss_kib as f64 / 1024.0,
            s.map_kib as f64 / 1024.0,
            s.keys[0],
            s.keys[1],
            s.keys[2],
            s.sent,
            s.counted,
            s.lost,
            s.cpu_s
        );
        samples.push(s);
        if done.load(Relaxed) {
            // One sample after the last line had time to be counted.
            match finished_at {
                None => finished_at = Some(Instant::now()),
                Some(_) => break,
            }
        }
    }
    let sent = sender.join().expect("the sender panicked").expect("send");
    if let Ok(s) = loadgen::get_json(d.http, "/api/v1/stats") {
        println!("daemon's drops at the end: {}", s["dropped"]);
        if in_kernel {
            println!(
                "kernel passed to userspace: {}",
                s["kernel"]["passed_to_userspace"]
            );
        }
    }
    drop(d);
    let text: String = std::iter::once(HEADER.to_string())
        .chain(samples.iter().map(Sample::csv))
        .map(|l| l + "\n")
        .collect();
    if let Some(p) = a.csv.parent() {
        std::fs::create_dir_all(p).expect("create the CSV's folder");
    }
    std::fs::write(&a.csv, text).expect("write the CSV");
    let title = format!(
        "toptraffic soak: {} path, {} lines/s, {}k keys x 3 rules, {:.0}%/min churn, {:.0} min",
        a.mode,
        a.rate,
        a.keys / 1000,
        a.churn * 100.0,
        a.minutes
    );
    match plot(&samples, warmup, &title, &a.png) {
        Ok(()) => eprintln!("plot: {}", a.png.display()),
        Err(e) => eprintln!("no plot: {e}"),
    }
    eprintln!("CSV: {}", a.csv.display());
    println!(
        "sender: {} lines in {:.1} s",
        sent.lines(),
        sent.elapsed.as_secs_f64()
    );
    println!("{}", summary(&samples, warmup));
}
