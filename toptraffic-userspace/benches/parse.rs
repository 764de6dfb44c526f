//! The kernel parser alone: the socket filter run by BPF_PROG_TEST_RUN on
//! seed-like datagrams (1 and 20 lines each), against the floor program
//! (a run that does nothing: the harness's own cost) and the userspace
//! count path (`Counter::datagram`) on the same datagrams, in the same run.
//!
//! Without the send and receive path around it, this is what a datagram
//! costs the programs themselves: the figure the load benchmark's kernel
//! rows add to the floor's.
//!
//! `cargo xtask bench parse [-- --line L] [-- --rounds N] [-- --profile]`
//! (root; needs the kernel path). With `--line`, every datagram is the
//! line `L` repeated: what each part of a line costs, by difference between
//! lines. The warm table is the least of `--rounds` (3) rounds of the
//! three programs in turn, with each path's range over the rounds.
//! With `--profile`, the warm runs are sampled (cpu-clock, kernel side,
//! this thread only) and two more tables say where the socket filter's
//! time goes: by function (its own, the helpers and map code it calls) and
//! by source line of the program, from the JIT's line info.
//!
//! A second table runs each datagram once on cold caches: before every run
//! the bench writes a buffer twice the size of the last-level cache, as
//! another task on the core would between two datagrams of a node at a
//! modest rate. The warm table is what the programs cost at a high rate,
//! the cold one what a datagram costs when they have to come back from
//! memory (their code, the config, the scratch, the key set's entries).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use perf_event::events::Software;
use perf_event::{data, Builder, SampleFlag, Sampler};

use toptraffic::config::Config;
use toptraffic::ingest::kernel::{self, Attach, JitLines, KernelPath, Options};
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

/// Empties the caches between two runs: writes a line in every 64 bytes of
/// a buffer of twice the last-level cache (32 MiB here) in 4 KiB pages,
/// which also takes the TLBs' entries.
struct Evict(Vec<u8>);

impl Evict {
    fn new() -> Self {
        Evict(vec![1; 64 << 20])
    }

    fn run(&mut self) {
        for b in self.0.iter_mut().step_by(64) {
            *b = b.wrapping_add(1);
        }
        std::hint::black_box(&self.0);
    }
}

/// Mean time per datagram of one program over the pool, each datagram
/// run `repeat` times, or, with `evict`, once after emptying the caches.
fn kernel_ns(
    k: &KernelPath,
    floor: bool,
    pool: &[Vec<u8>],
    repeat: u32,
    mut evict: Option<&mut Evict>,
) -> f64 {
    let mut total = Duration::ZERO;
    for d in pool {
        if let Some(e) = evict.as_deref_mut() {
            e.run();
        }
        let (verdict, mean) = k.test_run(floor, d, repeat).expect("test run");
        assert_eq!(verdict, 0, "the program took the datagram");
        total += mean;
    }
    total.as_nanos() as f64 / pool.len() as f64
}

/// The userspace count path over a pool, as the receive thread runs it.
struct Userspace {
    rules: RuleSet,
    counter: Counter,
    tables: Vec<toptraffic::snapshot::CountTable>,
    local: LocalCounters,
}

impl Userspace {
    fn new(config: &Config) -> Self {
        let rules = RuleSet::new(&config.rules);
        let tables = rules.new_tables();
        Userspace {
            rules,
            counter: Counter::new(),
            tables,
            local: LocalCounters::default(),
        }
    }

    /// Mean time per datagram over the pool, each datagram run `repeat`
    /// times, or, with `evict`, once after emptying the caches (each
    /// datagram's runs timed together, the clock's reads included: 20-30
    /// ns).
    fn ns(&mut self, pool: &[Vec<u8>], repeat: u32, mut evict: Option<&mut Evict>) -> f64 {
        let mut total = Duration::ZERO;
        for d in pool {
            if let Some(e) = evict.as_deref_mut() {
                e.run();
            }
            let t = Instant::now();
            for _ in 0..repeat {
                self.counter
                    .datagram(d, &self.rules, &mut self.tables, &mut self.local);
            }
            total += t.elapsed();
        }
        total.as_nanos() as f64 / (pool.len() as f64 * repeat as f64)
    }
}

/// Samples of the socket filter's warm runs, attributed to functions and
/// to the program's source lines (`--profile`).
struct Profile {
    sampler: Sampler,
    jit: JitLines,
    /// /proc/kallsyms text symbols by address: the JIT's functions
    /// (`bpf_prog_<tag>_<name>`) and the kernel's.
    syms: Vec<(u64, String)>,
}

/// What one pool's samples came to: samples under the socket filter, by
/// function and by program source line (`file:line`, text).
#[derive(Default)]
struct Shares {
    total: u64,
    lost: u64,
    by_fn: HashMap<String, u64>,
    by_line: HashMap<(String, String), u64>,
}

impl Profile {
    /// A cpu-clock sampler on this thread, kernel side only, with call
    /// chains: a sample counts when the socket filter is on its stack (the
    /// harness around it, the syscall and the clock reads are left out).
    fn new(k: &KernelPath) -> std::io::Result<Self> {
        let sampler = Builder::new(Software::CPU_CLOCK)
            .observe_self()
            .any_cpu()
            .exclude_user(true)
            .exclude_kernel(false)
            .exclude_hv(true)
            .sample_period(20_000)
            .sample(SampleFlag::IP | SampleFlag::CALLCHAIN)
            .build()?
            .sampled(4 << 20)?;
        let mut syms: Vec<(u64, String)> = std::fs::read_to_string("/proc/kallsyms")?
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let addr = u64::from_str_radix(f.next()?, 16).ok()?;
                let kind = f.next()?;
                let name = f.next()?;
                (addr != 0 && matches!(kind, "t" | "T")).then(|| (addr, name.to_string()))
            })
            .collect();
        if syms.is_empty() {
            return Err(std::io::Error::other(
                "/proc/kallsyms shows no addresses (run as root)",
            ));
        }
        syms.sort_unstable();
        Ok(Profile {
            sampler,
            jit: k.jit_lines()?,
            syms,
        })
    }

    /// The function holding `ip`: a JIT function's program name, or a
    /// kernel symbol.
    fn function(&self, ip: u64) -> &str {
        let Some(i) = self.syms.partition_point(|s| s.0 <= ip).checked_sub(1) else {
            return "?";
        };
        let name = self.syms[i].1.as_str();
        // bpf_prog_<16 hex digits of tag>_<function name>
        match name.strip_prefix("bpf_prog_") {
            Some(rest) if rest.len() > 17 => &rest[17..],
            _ => name,
        }
    }

    /// Runs `f` with sampling on and adds what was sampled to `into`.
    fn sample<T>(&mut self, into: &mut Shares, f: impl FnOnce() -> T) -> T {
        self.sampler.enable().expect("enable the sampler");
        let out = f();
        self.sampler.disable().expect("disable the sampler");
        let mut ips = Vec::new();
        while let Some(record) = self.sampler.next_record() {
            match record.parse_record() {
                Ok(data::Record::Sample(s)) => {
                    // A chain of kernel addresses, the sampled one first;
                    // values past -4096 mark contexts, not addresses.
                    let chain: Vec<u64> = s
                        .callchain()
                        .unwrap_or_default()
                        .iter()
                        .copied()
                        .filter(|&a| a < (-4095i64) as u64)
                        .collect();
                    ips.push((s.ip().unwrap_or(0), chain));
                }
                Ok(data::Record::Lost(l)) => into.lost += l.lost,
                _ => {}
            }
        }
        for (ip, chain) in ips {
            if !chain
                .iter()
                .chain([&ip])
                .any(|&a| self.jit.find(a).is_some())
            {
                continue;
            }
            into.total += 1;
            *into.by_fn.entry(self.function(ip).to_string()).or_default() += 1;
            // The line is the program's: the sampled address if it is in
            // the program, else the call in the program that led there.
            if let Some((at, text)) = chain.iter().chain([&ip]).find_map(|&a| self.jit.find(a)) {
                *into
                    .by_line
                    .entry((at.to_string(), text.to_string()))
                    .or_default() += 1;
            }
        }
        out
    }
}

/// Prints the profile tables: functions and source lines by share of the
/// samples, one column per pool.
fn print_profile(pools: &[(usize, Shares)]) {
    let header: String = pools
        .iter()
        .map(|(per, _)| format!(" {per} line(s)/datagram |"))
        .collect();
    let rule: String = pools.iter().map(|_| "---:|").collect();
    let samples: Vec<String> = pools
        .iter()
        .map(|(per, s)| format!("{} at {per} ({} lost)", s.total, s.lost))
        .collect();
    println!(
        "\nProfile: samples (cpu-clock every 20 µs) with the socket filter on the stack: {}.\n",
        samples.join(", ")
    );
    fn table<K: std::hash::Hash + Eq + Clone>(
        pools: &[(usize, Shares)],
        of: impl Fn(&Shares) -> &HashMap<K, u64>,
        rows: usize,
    ) -> Vec<(K, Vec<f64>)> {
        let mut keys: Vec<K> = pools
            .iter()
            .flat_map(|(_, s)| of(s).keys().cloned())
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .collect();
        let share = |s: &Shares, k: &K| {
            100.0 * of(s).get(k).copied().unwrap_or(0) as f64 / s.total.max(1) as f64
        };
        // Sorted by the last pool's share (the most lines a datagram).
        let last = &pools.last().expect("a pool").1;
        keys.sort_by(|a, b| share(last, b).total_cmp(&share(last, a)));
        keys.truncate(rows);
        keys.into_iter()
            .map(|k| {
                let shares = pools.iter().map(|(_, s)| share(s, &k)).collect();
                (k, shares)
            })
            .collect()
    }
    let cells = |v: &[f64]| -> String { v.iter().map(|x| format!(" {x:.1} % |")).collect() };
    println!("| function |{header}");
    println!("|---|{rule}");
    for (f, v) in table(pools, |s| &s.by_fn, 20) {
        println!("| {f} |{}", cells(&v));
    }
    println!("\n| program line | source |{header}");
    println!("|---|---|{rule}");
    for ((at, text), v) in table(pools, |s| &s.by_line, 25) {
        println!("| {at} | `{}` |{}", text.replace('|', "\\|"), cells(&v));
    }
}

fn main() {
    if let Err(e) = kernel::probe() {
        eprintln!("SKIPPED parse benchmark: the kernel path cannot run here: {e}");
        return;
    }
    // `cargo test` runs benches too (without --bench): a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let (n, repeat, cold) = if full { (4000, 50, 400) } else { (20, 2, 5) };
    let args: Vec<String> = std::env::args().collect();
    let profile = args.iter().any(|a| a == "--profile");
    let line = args.iter().position(|a| a == "--line").map(|i| {
        args.get(i + 1)
            .expect("--line: a line of line protocol")
            .as_str()
    });
    // Warm rounds, the paths in turn in each: on a shared machine a
    // neighbour's burst lands in one round, and the least of each path's
    // rounds is what its code costs.
    let rounds: u32 = match args.iter().position(|a| a == "--rounds") {
        Some(i) => args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .expect("--rounds: a number of rounds, at least 1"),
        None if full => 3,
        None => 1,
    };
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
    println!(
        "Warm: each datagram run {repeat} times in a row; each figure the least of {rounds} round(s), the three in turn in each.\n"
    );
    println!("| lines/datagram | socket filter, ns/datagram | ns/line | floor program, ns/datagram | userspace count path, ns/line | kernel / userspace per line | socket filter ns/line, rounds' range | userspace ns/line, rounds' range |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let counters = k.counters();
    let mut pools = Vec::new();
    for per in [1usize, 20] {
        let pool = datagrams(per, n / per.min(4), line);
        let mut user = Userspace::new(&config);
        let (mut sock, mut floor, mut user_ns) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let before = counters.read()[counter::POINTS as usize];
            let user_before = user.local.points;
            sock.push(kernel_ns(&k, false, &pool, repeat, None));
            let points = counters.read()[counter::POINTS as usize] - before;
            floor.push(kernel_ns(&k, true, &pool, repeat, None));
            user_ns.push(user.ns(&pool, repeat, None));
            // The kernel counted what userspace counts: a parser that
            // dropped or passed lines would look fast for nothing. The
            // seed-like lines are all counted.
            assert_eq!(
                points,
                user.local.points - user_before,
                "points, socket filter against userspace"
            );
            if line.is_none() {
                let lines = (pool.len() * per) as u64 * repeat as u64;
                assert_eq!(points, lines, "lines the socket filter counted");
            }
        }
        // The least and the most of a path's rounds.
        let range = |v: &[f64]| {
            v.iter().fold((f64::INFINITY, 0f64), |(lo, hi), x| {
                (lo.min(*x), hi.max(*x))
            })
        };
        let ((sock_lo, sock_hi), (floor_lo, _), (user_lo, user_hi)) =
            (range(&sock), range(&floor), range(&user_ns));
        let lines = per as f64;
        let (sock_line, user_line) = (sock_lo / lines, user_lo / lines);
        println!(
            "| {per} | {sock_lo:.0} | {sock_line:.0} | {floor_lo:.0} | {user_line:.0} | {:.2} | {sock_line:.0}-{:.0} | {user_line:.0}-{:.0} |",
            sock_line / user_line,
            sock_hi / lines,
            user_hi / lines
        );
        pools.push((per, pool, user));
    }
    if profile {
        let mut p = Profile::new(&k).unwrap_or_else(|e| panic!("--profile: {e}"));
        let shares: Vec<(usize, Shares)> = pools
            .iter()
            .map(|(per, pool, _)| {
                let mut s = Shares::default();
                // Drained every few datagrams, before the ring fills.
                for chunk in pool.chunks(50) {
                    p.sample(&mut s, || kernel_ns(&k, false, chunk, repeat, None));
                }
                (*per, s)
            })
            .collect();
        print_profile(&shares);
    }
    // The same datagrams once more, their keys known to both paths as in
    // a steady state, each run once on cold caches.
    let mut evict = Evict::new();
    println!("\nCold: the caches emptied before each datagram, {cold} datagrams, each run once.\n");
    println!("| lines/datagram | socket filter, ns/datagram | floor program, ns/datagram | socket filter over the floor, ns/datagram | userspace count path, ns/datagram | kernel / userspace per datagram |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (per, pool, mut user) in pools {
        let pool = &pool[..cold.min(pool.len())];
        let sock = kernel_ns(&k, false, pool, 1, Some(&mut evict));
        let floor = kernel_ns(&k, true, pool, 1, Some(&mut evict));
        let user_ns = user.ns(pool, 1, Some(&mut evict));
        println!(
            "| {per} | {sock:.0} | {floor:.0} | {:.0} | {user_ns:.0} | {:.2} |",
            sock - floor,
            sock / user_ns
        );
    }
}
