//! `cargo xtask bench <name>`: the benchmarks of docs/BENCHMARKS.md.
//!
//! - `load`: the same load against the floor, the kernel socket-filter,
//!   the kernel XDP and the userspace paths in one run; the highest rate
//!   with under 0.1% loss per path, CPU per line, the ratio to the floor.
//! - `micro`: criterion benches of the parser, the count path and the
//!   window engine, summed up as a table of lines (or keys) per second.
//! - `drain`: the kernel map drain at rotation, 10k to 1M keys.
//! - `parse`: the kernel programs alone (BPF_PROG_TEST_RUN) per datagram
//!   and per line, against the userspace count path, warm and on cold
//!   caches.
//! - `soak [--minutes 30] [--mode userspace]`: the kernel path (or the
//!   userspace one) at 50,000 lines/s with churn; target/bench/soak.csv
//!   and docs/soak.png (userspace: target/bench/soak-userspace.*).
//! - `flood [--minutes M] [--mode userspace|kernel|both]`: the overflow
//!   sketch under a flood of 10x max_keys distinct keys a window against a
//!   baseline without it, per mode: recall and latency of the heavy keys'
//!   alerts, false alerts, RSS and CPU per line; target/bench/flood.md.
//!   With `--minutes` the flood alone as a soak, RSS every 10 s in
//!   target/bench/flood-soak.csv.
//! - `cluster [--nodes 50 --keys 15000,150000 --intervals 3]`: the cluster
//!   exchange of simulated nodes against a real redis-server, per node and
//!   interval, against shipping every key; target/bench/cluster.md.
//! - `all`: drain, parse, micro, flood and load, one after the other.
//!
//! Each first runs `setup` and builds with the kernel path required, as
//! `test` does; arguments after the name go to the bench program.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::{cargo_ebpf, mount_bpffs, setup, status, workspace_root};

pub const NAMES: &[&str] = &[
    "load", "micro", "drain", "parse", "soak", "flood", "cluster", "all",
];

pub fn bench(name: &str, args: Vec<String>) -> Result<()> {
    if !NAMES.contains(&name) {
        bail!("unknown benchmark {name:?}: one of {}", NAMES.join(", "));
    }
    setup(false)?;
    // The kernel benches pin maps under bpffs.
    mount_bpffs();
    match name {
        "micro" => micro(&args),
        "all" => {
            cargo_bench("drain", &args)?;
            cargo_bench("parse", &args)?;
            micro(&args)?;
            cargo_bench("flood", &args)?;
            cargo_bench("load", &args)
        }
        other => cargo_bench(other, &args),
    }
}

/// `cargo bench` of one bench target of the daemon's crate, release build
/// with the kernel programs and the code only the benchmarks use.
fn cargo_bench(bench: &str, args: &[String]) -> Result<()> {
    let mut c = cargo_ebpf();
    c.args(["bench", "-p", "toptraffic", "--features", "bench"])
        .args(["--bench", bench, "--"])
        .args(args);
    status(c)
}

fn micro(args: &[String]) -> Result<()> {
    cargo_bench("micro", args)?;
    let table = micro_table(&workspace_root().join("target/criterion"))?;
    println!("\n{table}");
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("micro.md"), &table)?;
    eprintln!("table in {}", out.join("micro.md").display());
    Ok(())
}

/// The criterion results of the micro benches (median time, throughput)
/// as a markdown table.
fn micro_table(dir: &Path) -> Result<String> {
    let mut rows = Vec::new();
    // Every group criterion wrote (`report` is its HTML).
    let mut groups: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|g| g != "report")
                .collect()
        })
        .unwrap_or_default();
    groups.sort();
    for group in &groups {
        let group = group.as_str();
        let gdir = dir.join(group);
        let Ok(entries) = std::fs::read_dir(&gdir) else {
            continue;
        };
        let mut benches: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        benches.sort();
        for b in benches {
            let (Ok(meta), Ok(est)) = (
                std::fs::read_to_string(b.join("new/benchmark.json")),
                std::fs::read_to_string(b.join("new/estimates.json")),
            ) else {
                continue;
            };
            let meta: serde_json::Value =
                serde_json::from_str(&meta).context("criterion's benchmark.json")?;
            let est: serde_json::Value =
                serde_json::from_str(&est).context("criterion's estimates.json")?;
            let ns = est["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
            let elems = meta["throughput"]["Elements"].as_f64().unwrap_or(1.0);
            let unit = if matches!(group, "window" | "alert") {
                "keys"
            } else {
                "lines"
            };
            rows.push(format!(
                "| {} | {} | {} | {:.2} M {unit}/s |",
                group,
                meta["function_id"].as_str().unwrap_or("?"),
                human_ns(ns),
                elems / ns * 1e3
            ));
        }
    }
    if rows.is_empty() {
        bail!("no criterion results under {}", dir.display());
    }
    Ok(format!(
        "| group | bench | median time per iteration | throughput |\n|---|---|---:|---:|\n{}\n",
        rows.join("\n")
    ))
}

fn human_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_table_reads_criterion_output() {
        let dir = std::env::temp_dir().join(format!("xtask-criterion-{}", std::process::id()));
        let b = dir.join("lineproto/seed line/new");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(
            b.join("benchmark.json"),
            r#"{"group_id":"lineproto","function_id":"seed line","throughput":{"Elements":1}}"#,
        )
        .unwrap();
        std::fs::write(
            b.join("estimates.json"),
            r#"{"median":{"point_estimate":50.0}}"#,
        )
        .unwrap();
        let t = micro_table(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            t.contains("| lineproto | seed line | 50.0 ns | 20.00 M lines/s |"),
            "{t}"
        );
    }
}
