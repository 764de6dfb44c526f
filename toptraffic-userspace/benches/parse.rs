//! The kernel parser alone: the socket filter run by BPF_PROG_TEST_RUN on
//! seed-like datagrams (1 and 20 lines each), against the floor program
//! (a run that does nothing: the harness's own cost) and the userspace
//! count path (`Counter::datagram`) on the same datagrams, in the same run.
//!
//! Without the send and receive path around it, this is what a datagram
//! costs the programs themselves: the figure the load benchmark's kernel
//! rows add to the floor's.
//!
//! `cargo xtask bench parse [-- --line L]` (root; needs the kernel path).
//! With `--line`, every datagram is the line `L` repeated: what each part
//! of a line costs, by difference between lines.

use std::time::{Duration, Instant};

use toptraffic::config::Config;
use toptraffic::ingest::kernel::{self, Attach, KernelPath, Options};
use toptraffic::ingest::kernel_config;
use toptraffic::ingest::udp::Counter;
use toptraffic::rules::RuleSet;
use toptraffic::stats::LocalCounters;
use toptraffic_common::counter;
use toptraffic_loadgen::{Generator, Shape};

fn datagrams(per: usize, n: usize, line: Option<&str>) -> Vec<Vec<u8>> {
    if let Some(l) = line {
        let d: Vec<u8> = (0..per)
            .flat_map(|_| format!("{l}\n").into_bytes())
            .collect();
        return vec![d; n];
    }
    let mut g = Generator::new(Shape {
        lines_per_datagram: (per, per),
        ..Shape::seed_like()
    });
    g.datagrams(n)
}

/// Mean time per datagram of one program over the pool, each datagram
/// run `repeat` times.
fn kernel_ns(k: &KernelPath, floor: bool, pool: &[Vec<u8>], repeat: u32) -> f64 {
    let mut total = Duration::ZERO;
    for d in pool {
        let (verdict, mean) = k.test_run(floor, d, repeat).expect("test run");
        assert_eq!(verdict, 0, "the program took the datagram");
        total += mean;
    }
    total.as_nanos() as f64 / pool.len() as f64
}

/// Mean time per datagram of the userspace count path, and the points it
/// counted.
fn userspace_ns(config: &Config, pool: &[Vec<u8>], repeat: u32) -> (f64, u64) {
    let rules = RuleSet::new(&config.rules);
    let mut counter = Counter::new();
    let mut tables = rules.new_tables();
    let mut local = LocalCounters::default();
    let t = Instant::now();
    for d in pool {
        for _ in 0..repeat {
            counter.datagram(d, &rules, &mut tables, &mut local);
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / (pool.len() as f64 * repeat as f64);
    (ns, local.points)
}

fn main() {
    if let Err(e) = kernel::probe() {
        eprintln!("SKIPPED parse benchmark: the kernel path cannot run here: {e}");
        return;
    }
    // `cargo test` runs benches too (without --bench): a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let (n, repeat) = if full { (4000, 50) } else { (20, 2) };
    let args: Vec<String> = std::env::args().collect();
    let line = args.iter().position(|a| a == "--line").map(|i| {
        args.get(i + 1)
            .expect("--line: a line of line protocol")
            .as_str()
    });
    let config = Config::embedded_default();
    let plan = kernel_config::plan(&config.rules).unwrap();
    let max_keys = config.rules.iter().map(|r| r.max_keys).collect();
    let k = KernelPath::load(
        plan,
        max_keys,
        Options {
            attach: Attach::None,
            map_entries: 1 << 20,
            pin_dir: None,
            load_all: true,
            max_datagram: 65507,
        },
    )
    .expect("load the kernel path");
    for (name, n) in k.verified_insns() {
        eprintln!("{name}: the verifier processed {n} instructions (limit 1000000)");
    }
    println!("| lines/datagram | socket filter, ns/datagram | ns/line | floor program, ns/datagram | userspace count path, ns/line | kernel / userspace per line |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let counters = k.counters();
    for per in [1usize, 20] {
        let pool = datagrams(per, n / per.min(4), line);
        let before = counters.read()[counter::POINTS as usize];
        let sock = kernel_ns(&k, false, &pool, repeat);
        let points = counters.read()[counter::POINTS as usize] - before;
        let floor = kernel_ns(&k, true, &pool, repeat);
        let (user, user_points) = userspace_ns(&config, &pool, repeat);
        // The kernel counted what userspace counts: a parser that dropped
        // or passed lines would look fast for nothing. The seed-like lines
        // are all counted.
        assert_eq!(
            points, user_points,
            "points, socket filter against userspace"
        );
        if line.is_none() {
            let lines = (pool.len() * per) as u64 * repeat as u64;
            assert_eq!(points, lines, "lines the socket filter counted");
        }
        let (sock_line, user_line) = (sock / per as f64, user / per as f64);
        println!(
            "| {per} | {sock:.0} | {sock_line:.0} | {floor:.0} | {user_line:.0} | {:.2} |",
            sock_line / user_line
        );
    }
}
