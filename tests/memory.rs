//! End to end: the daemon's memory stays under the bound of
//! docs/OPERATIONS.md (capacity planning) when a rule holds max_keys keys
//! of the worst kind: every one carrying a 4 KB store id, which is counted
//! under its bounded form.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::Daemon;
use toptraffic::config::{memory_bound, Config};
use toptraffic_loadgen::lines_accounted;

/// Keys sent, and the rule's max_keys: enough that the keys dominate the
/// daemon's fixed part, few enough to be sent in seconds.
const KEYS: u64 = 50_000;
const ID_BYTES: usize = 4096;
const THREADS: u64 = 2;
/// Datagrams sent before waiting until the daemon has accounted for them,
/// so that no receive queue overflows.
const BATCH: u64 = 1_000;

fn config() -> String {
    format!(
        "[ingest]\nmode = \"userspace\"\nthreads = {THREADS}\n\
         [[rule]]\nname = \"stores\"\nmeasurement = \"combined\"\ngroup_by = [\"ip\", \"id\"]\n\
         max_keys = {KEYS}\n"
    )
}

/// A line of key `k`: the ids share their first 4 KB and differ only at the
/// end, so only the hash of the bounded form tells them apart.
fn line(k: u64, pad: &str) -> String {
    format!(
        "combined,ip=10.{}.{}.{},id={pad}{k:08} count=1i",
        k >> 16,
        (k >> 8) & 0xff,
        k & 0xff
    )
}

/// (VmHWM, VmRSS) of `pid`, in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    (
        common::proc_status_bytes(pid, "VmHWM"),
        common::proc_status_bytes(pid, "VmRSS"),
    )
}

#[test]
fn max_keys_of_4kb_store_ids_stay_under_the_documented_memory() {
    let text = config();
    let cfg = Config::parse(&text, "memory.toml").unwrap();
    let d = Daemon::start(&text, &[]);
    let pad = "s".repeat(ID_BYTES - 8);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0;
    while sent < KEYS {
        let end = (sent + BATCH).min(KEYS);
        for k in sent..end {
            sock.send_to(line(k, &pad).as_bytes(), d.udp).unwrap();
        }
        sent = end;
        d.wait_stats(Duration::from_secs(30), "the batch accounted", |s| {
            lines_accounted(s) >= sent
        });
    }
    let stats = d.wait_next_window(Duration::from_secs(20));
    assert_eq!(stats["dropped"]["receive_queue"], 0, "{stats}");
    let top = d.get("/api/v1/top?rule=stores&limit=1");
    let keys = top["keys"].as_u64().unwrap();
    assert!(
        keys * 100 >= KEYS * 95,
        "the window holds {keys} keys: {top}"
    );

    let (hwm, rss) = memory_of(d.child.id());
    // Userspace mode: no kernel maps, so the base and the keys.
    let b = memory_bound(&cfg, THREADS);
    let bound = b.base + b.userspace;
    eprintln!(
        "{keys} keys of {ID_BYTES}-byte ids: peak RSS {} MiB, RSS {} MiB; bound {} MiB \
         ({} MiB base + {} MiB keys)",
        hwm >> 20,
        rss >> 20,
        bound >> 20,
        b.base >> 20,
        b.userspace >> 20
    );
    assert!(
        hwm <= bound,
        "peak RSS {hwm} B is above the documented bound {bound} B"
    );
    let id = top["top"][0]["tags"]["id"].as_str().unwrap();
    assert!(
        id.starts_with("sss") && id.contains('\u{2026}') && id.len() < 128,
        "shown bounded: {id}"
    );
}
