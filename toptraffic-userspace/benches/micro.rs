//! Microbenchmarks of the userspace hot paths: the line protocol parser,
//! the rule/count path of a receive thread (`Counter::datagram`), and the
//! window engine's rotation (`WindowEngine::apply`) and the alert
//! decisions with 100k keys, and a flood's lines past `max_keys` (the
//! sketch, and the names of its heaviest keys).
//!
//! `cargo xtask bench micro` (criterion; throughput in lines or keys per
//! second). Under `cargo test` each runs once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use toptraffic::config::Config;
use toptraffic::ingest::udp::Counter;
use toptraffic::key;
use toptraffic::lineproto::Lines;
use toptraffic::rules::RuleSet;
use toptraffic::sketch::{Shape as SketchShape, Sketch};
use toptraffic::snapshot::{Cell, CountTable, IntervalSnapshot, Path};
use toptraffic::stats::LocalCounters;
use toptraffic::window::WindowEngine;
use toptraffic_loadgen::{Generator, Shape};

const SEED_LINE: &[u8] =
    b"combined,uri=/path/to/product,id=123456789,ip=203.0.113.7,role=ingresstype count=1";

/// `n` datagrams of the seed-like shape with `per` lines each.
fn datagrams(per: usize, n: usize, escaped_per_mille: u32) -> Vec<Vec<u8>> {
    let mut g = Generator::new(Shape {
        lines_per_datagram: (per, per),
        escaped_per_mille,
        ..Shape::seed_like()
    });
    g.datagrams(n)
}

/// What a rule needs from a line: parse it, find two tags and the field.
fn parse(d: &[u8]) -> usize {
    let mut n = 0;
    for l in Lines::new(d) {
        let l = l.expect("valid");
        black_box((l.tag(b"ip"), l.tag(b"id"), l.field(b"count")));
        n += 1;
    }
    n
}

fn parser(c: &mut Criterion) {
    let mut g = c.benchmark_group("lineproto");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seed line", |b| b.iter(|| parse(black_box(SEED_LINE))));
    let d20 = datagrams(20, 1, 0).remove(0);
    g.throughput(Throughput::Elements(20));
    g.bench_function("20-line datagram", |b| b.iter(|| parse(black_box(&d20))));
    // Every line with an escaped space in its uri.
    let esc = datagrams(20, 1, 1000).remove(0);
    g.bench_function("20-line datagram, escapes", |b| {
        b.iter(|| parse(black_box(&esc)))
    });
    g.finish();
}

fn counter(c: &mut Criterion) {
    let config = Config::embedded_default();
    let rules = RuleSet::new(&config.rules);
    let mut g = c.benchmark_group("count");
    for per in [1usize, 20] {
        // Enough datagrams that the tables hold most of the shape's keys,
        // as a receive thread's do after a few seconds.
        let pool = datagrams(per, 200_000 / per, 0);
        let mut counter = Counter::new();
        let mut tables = rules.new_tables();
        let mut local = LocalCounters::default();
        for d in &pool {
            counter.datagram(d, &rules, &mut tables, &mut local);
        }
        let mut i = 0;
        g.throughput(Throughput::Elements(per as u64));
        g.bench_function(format!("Counter::datagram, {per} line(s)"), |b| {
            b.iter(|| {
                counter.datagram(&pool[i], &rules, &mut tables, &mut local);
                i = (i + 1) % pool.len();
            })
        });
    }
    g.finish();
}

/// An interval snapshot of `n` keys of the combined rule, starting at key
/// `first` (keys are numbered; each is an (ip, id) pair).
fn snapshot(index: u64, first: usize, n: usize) -> IntervalSnapshot {
    let mut s = IntervalSnapshot::empty(index, [400_000, 400_000, 400_000]);
    let mut t = CountTable::with_capacity(400_000, n);
    for i in first..first + n {
        let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        let id = (100_000_000 + i % 25_000).to_string();
        t.add(
            &key::from_values(&[ip.as_bytes(), id.as_bytes()]),
            Cell::new(3.0, 3),
        );
    }
    s.rules[0] = t;
    s
}

fn window(c: &mut Criterion) {
    const KEYS: usize = 100_000;
    let mut g = c.benchmark_group("window");
    g.sample_size(20);
    g.throughput(Throughput::Elements(KEYS as u64));
    // The same 100k keys every interval, the window full (12 intervals).
    let mut w = WindowEngine::new(12, [400_000; 3]);
    let base = snapshot(0, 0, KEYS);
    for i in 0..12 {
        let mut s = base.clone();
        s.index = i;
        w.apply(s);
    }
    let mut index = 12;
    g.bench_function("apply 100k keys, steady", |b| {
        b.iter_batched(
            || {
                let mut s = base.clone();
                index += 1;
                s.index = index;
                s
            },
            |s| w.apply(s),
            BatchSize::LargeInput,
        )
    });
    // 10% of the keys new every interval: as many enter as expire once the
    // window has turned.
    let mut w = WindowEngine::new(12, [400_000; 3]);
    let mut index = 0u64;
    for _ in 0..14 {
        w.apply(snapshot(index, index as usize * KEYS / 10, KEYS));
        index += 1;
    }
    g.bench_function("apply 100k keys, 10% churn", |b| {
        b.iter_batched(
            || {
                let s = snapshot(index, index as usize * KEYS / 10, KEYS);
                index += 1;
                s
            },
            |s| w.apply(s),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn alerts(c: &mut Criterion) {
    const KEYS: usize = 100_000;
    let mut g = c.benchmark_group("alert");
    g.sample_size(20);
    g.throughput(Throughput::Elements(KEYS as u64));
    let mut a = toptraffic::AlertBench::new(KEYS);
    g.bench_function("decide 100k keys, none alerting", |b| {
        b.iter(|| black_box(a.decide()))
    });
    // The warn condition on values either side of its threshold: the path
    // the engine takes, and the interpreter alone as the baseline.
    let values: Vec<f64> = (0..KEYS).map(|i| (i % 35_000) as f64).collect();
    for (name, interpreted) in [("threshold path", false), ("interpreter", true)] {
        g.bench_function(format!("warn condition, 100k keys, {name}"), |b| {
            b.iter(|| black_box(a.conditions(black_box(&values), interpreted)))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    // No HTML plots: the numbers are what docs/BENCHMARKS.md takes, and
    // criterion's plotters would need a font registered (see soak.rs).
    Criterion::default()
        .without_plots()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// A flood's lines past `max_keys`, each of a new key: what a receive
/// table pays a line (the sketch's conservative update, then the check of
/// its estimate against the heaviest named), against the sketch's update
/// alone, in the same run.
fn overflow(c: &mut Criterion) {
    const LINES: usize = 100_000;
    let mut g = c.benchmark_group("overflow");
    g.sample_size(20);
    g.throughput(Throughput::Elements(LINES as u64));
    let shape = SketchShape::for_bound(0.0005, 0.99);
    let keys: Vec<key::Key> = (0..LINES)
        .map(|i| {
            key::from_values(&[
                format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                "7".into(),
            ])
        })
        .collect();
    g.bench_function("Sketch::add, 100k new keys (baseline)", |b| {
        b.iter_batched(
            || Sketch::new(shape),
            |mut s| {
                for k in &keys {
                    black_box(s.add(k.as_slice(), 1.0));
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("CountTable::add past max_keys, 100k new keys", |b| {
        b.iter_batched(
            || {
                let mut t = CountTable::new(1).with_sketch(Some(shape));
                t.add(b"held", Cell::line(1.0, Path::Userspace, true));
                t
            },
            |mut t| {
                for k in &keys {
                    black_box(t.add(k.as_slice(), Cell::line(1.0, Path::Userspace, true)));
                }
                t
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = parser, counter, window, alerts, overflow
}
criterion_main!(benches);
