//! Rotation drain of the kernel's key set: swap, then read the old
//! generation's cells whole through the daemon's mapping, empty them and
//! keep the slots, into per-rule tables; against the baseline, the drain
//! before the key set (a per-CPU hash walked and emptied with one
//! BPF_MAP_LOOKUP_AND_DELETE_BATCH into a table, no swap), on the same keys
//! in the same run.
//!
//! `cargo xtask bench drain` (root; needs the kernel path). Sizes from
//! TOPTRAFFIC_BENCH_SIZES (default 10000,100000,150000,1000000; 150,000
//! keys is the size the rotation's own cost is held to, 20 ms).

use std::time::Duration;

use toptraffic::config::Config;
use toptraffic::ingest::kernel::{self, hash_drain_baseline, Attach, KernelPath, Options};
use toptraffic::ingest::kernel_config;
use toptraffic_common::{Cell, GroupKey};

fn keys(n: usize) -> Vec<GroupKey> {
    (0..n)
        .map(|i| {
            let mut k = GroupKey::zeroed();
            let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            let id = format!("{}", 100_000_000 + i % 30_000);
            let mut off = 0;
            for v in [ip.as_bytes(), id.as_bytes()] {
                k.data[off..off + 2].copy_from_slice(&(v.len() as u16).to_le_bytes());
                k.data[off + 2..off + 2 + v.len()].copy_from_slice(v);
                off += 2 + v.len();
            }
            k.len = off as u32;
            k
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if let Err(e) = kernel::probe() {
        eprintln!("SKIPPED drain benchmark: the kernel path cannot run here: {e}");
        return;
    }
    // `cargo test` runs benches too (without --bench): a small smoke run.
    let default = if std::env::args().any(|a| a == "--bench") {
        "10000,100000,150000,1000000"
    } else {
        "1000"
    };
    let sizes: Vec<usize> = std::env::var("TOPTRAFFIC_BENCH_SIZES")
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let c = Config::embedded_default();
    println!("| keys | slots | swap | swap + drain | per-CPU hash batch drain (baseline) | baseline / drain |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let entries = (n + n / 4 + 4096) as u32;
        let plan = kernel_config::plan(&c.rules).unwrap();
        let max_keys = vec![n.max(1); c.rules.len()];
        let mut k = KernelPath::load(
            plan,
            max_keys,
            Options {
                attach: Attach::None,
                map_entries: entries,
                pin_dir: None,
                load_all: false,
                max_datagram: 65507,
            },
        )
        .expect("load the kernel path");
        let ks = keys(n);
        let cell = Cell {
            lines: 3,
            owned: 3,
            sum: 3,
        };
        let rounds = if n >= 1_000_000 { 3 } else { 5 };
        let (mut swaps, mut drains, mut slow) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            k.fill_active(&ks, cell).unwrap();
            let d = k.drain().unwrap();
            assert_eq!(d.keys, n, "drained every key");
            swaps.push(d.swap);
            drains.push(d.swap + d.drain);
            assert_eq!(k.drain().unwrap().keys, 0, "the drain emptied the cells");
            let (drained, t) = hash_drain_baseline(&ks, cell, entries).unwrap();
            assert_eq!(drained, n);
            slow.push(t);
        }
        let (swap, fast, slow) = (median(swaps), median(drains), median(slow));
        println!(
            "| {n} | {entries} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1}x |",
            swap.as_secs_f64() * 1e3,
            fast.as_secs_f64() * 1e3,
            slow.as_secs_f64() * 1e3,
            slow.as_secs_f64() / fast.as_secs_f64()
        );
    }
}
