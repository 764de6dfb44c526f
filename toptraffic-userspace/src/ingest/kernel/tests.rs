//! The kernel path loaded for real: the verifier accepts the programs,
//! and what they count comes out of a drain.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::path::{Attach, KernelPath, Options};
use super::probe::KernelError;
use crate::config::Config;

/// Loads both programs, or says why the kernel path cannot run here.
fn load_or_skip(attach: Attach) -> Option<KernelPath> {
    load_pinned(attach, None).map(|r| r.unwrap())
}

/// As load_or_skip, pinning under `pin_dir`: None when the kernel path
/// cannot run here, else what loading said.
fn load_pinned(attach: Attach, pin_dir: Option<&Path>) -> Option<Result<KernelPath, String>> {
    let c = Config::embedded_default();
    let plan = crate::ingest::kernel_config::plan(&c.rules).unwrap();
    let max_keys = c.rules.iter().map(|r| r.max_keys).collect();
    let opts = Options {
        attach,
        map_entries: 4096,
        pin_dir: pin_dir.map(Path::to_path_buf),
        load_all: true,
        max_datagram: 65507,
    };
    match KernelPath::load(plan, max_keys, opts) {
        Ok(k) => Some(Ok(k)),
        Err(e @ (KernelError::NotBuilt | KernelError::Permission { .. } | KernelError::NoBtf)) => {
            eprintln!("SKIPPED: the kernel path cannot load here: {e}");
            None
        }
        Err(e) => Some(Err(e.to_string())),
    }
}

/// A pin dir of this test process, absent.
fn fresh_pin_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(format!(
        "/sys/fs/bpf/toptraffic-unit-{}-{name}",
        std::process::id()
    ));
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
            let _ = std::fs::remove_dir(e.path());
        }
    }
    let _ = std::fs::remove_dir(&dir);
    dir
}

const PINS: [&str; 5] = ["config", "counters", "generation", "gen_a", "gen_b"];

#[test]
fn a_second_path_on_a_held_pin_dir_is_refused_and_the_first_keeps_its_pins() {
    let dir = fresh_pin_dir("held");
    let Some(first) = load_pinned(Attach::None, Some(&dir)) else {
        return;
    };
    let first = first.unwrap();
    let err = load_pinned(Attach::None, Some(&dir)).unwrap().unwrap_err();
    let want = format!(
        "pin_dir {} is held by toptraffic pid {}",
        dir.display(),
        std::process::id()
    );
    assert!(err.contains(&want), "{err}");
    for p in PINS {
        assert!(dir.join(p).exists(), "{p} lost to the refused second path");
    }
    drop(first);
    assert!(!dir.exists(), "the dir it created is removed");
}

#[test]
fn foreign_pins_and_dirs_in_the_pin_dir_survive_and_stale_pins_are_replaced() {
    let dir = fresh_pin_dir("shared");
    std::fs::create_dir(&dir).unwrap();
    // Another program's pin and dir, and a pin under one of our names that
    // no live daemon claims (as a daemon killed before it unpinned leaves).
    let Some(other) = load_pinned(Attach::None, None) else {
        return;
    };
    let other = other.unwrap();
    let config = other.ebpf.map("CONFIG").unwrap();
    config.pin(dir.join("foreign")).unwrap();
    config.pin(dir.join("counters")).unwrap();
    std::fs::create_dir(dir.join("foreign_dir")).unwrap();

    let k = load_pinned(Attach::None, Some(&dir)).unwrap().unwrap();
    for p in PINS {
        assert!(dir.join(p).exists(), "{p} not pinned");
    }
    drop(k);
    for p in PINS {
        assert!(!dir.join(p).exists(), "{p} left behind");
    }
    assert!(dir.join("foreign").exists(), "a foreign pin was removed");
    assert!(
        dir.join("foreign_dir").is_dir(),
        "a foreign dir was removed"
    );
    std::fs::remove_file(dir.join("foreign")).unwrap();
    std::fs::remove_dir(dir.join("foreign_dir")).unwrap();
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn verifier_accepts_both_programs() {
    let Some(k) = load_or_skip(Attach::None) else {
        return;
    };
    let c = k.counters().read();
    assert!(c.iter().all(|&v| v == 0));
    for (name, n) in k.verified_insns() {
        eprintln!("{name}: the verifier processed {n} instructions (limit 1000000)");
    }
}

#[test]
fn test_run_counts_a_plain_datagram_and_passes_an_escaped_one_whole() {
    let Some(mut k) = load_or_skip(Attach::None) else {
        return;
    };
    // Tag values longer than a word, so the word-at-a-time scan runs.
    let plain =
        b"combined,uri=/a/rather/long/path,id=123456789,ip=203.0.113.7,role=ingresstype count=1";
    let (verdict, _) = k.test_run(false, plain, 3).unwrap();
    assert_eq!(verdict, 0, "counted and dropped");
    let escaped = b"combined,uri=/a\\ b,id=1,ip=203.0.113.7 count=1";
    let (verdict, _) = k.test_run(false, escaped, 1).unwrap();
    assert_eq!(verdict as usize, 8 + escaped.len(), "passed whole");
    let (verdict, _) = k.test_run(true, plain, 1).unwrap();
    assert_eq!(verdict, 0, "the floor drops everything");
    let d = k.drain().unwrap();
    let key = crate::key::from_values(&["203.0.113.7", "123456789"]);
    assert_eq!(d.tables[0].get(&key).unwrap().lines, 3);
    assert_eq!(k.counters().passed()[1], ("escape", 1));
}

/// One CPU's cell past i64 (200 runs of 60 lines of 10^15 - 1, about
/// 1.2e19), up and down: the program's sum and the drain stay exact.
#[test]
fn test_run_sums_past_i64_exactly() {
    let Some(mut k) = load_or_skip(Attach::None) else {
        return;
    };
    let big = 999_999_999_999_999i64;
    let lines = |ip: &str, v: i64| format!("combined,ip={ip},id=1 count={v}\n").repeat(60);
    let up = lines("10.0.0.1", big);
    let down = lines("10.0.0.2", -big);
    for d in [&up, &down] {
        let (verdict, _) = k.test_run(false, d.as_bytes(), 200).unwrap();
        assert_eq!(verdict, 0, "counted in the kernel");
    }
    // A few lines back towards zero on the first key.
    let (verdict, _) = k
        .test_run(false, b"combined,ip=10.0.0.1,id=1 count=-5", 3)
        .unwrap();
    assert_eq!(verdict, 0);
    let d = k.drain().unwrap();
    let key = |ip: &str| crate::key::from_values(&[ip, "1"]);
    let want = 12_000 * big as i128;
    let a = d.tables[0].get(&key("10.0.0.1")).unwrap();
    assert_eq!((a.exact(), a.lines), (want - 15, 12_003));
    assert_eq!(a.value(), (want - 15) as f64);
    assert!(a.exact() > i64::MAX as i128);
    let b = d.tables[0].get(&key("10.0.0.2")).unwrap();
    assert_eq!((b.exact(), b.lines), (-want, 12_000));
}

#[test]
fn socket_filter_counts_plain_datagrams_and_passes_the_rest_whole() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let Some(mut k) = load_or_skip(Attach::Sockets(vec![rx.as_raw_fd()])) else {
        return;
    };
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    for i in 0..1000 {
        let d = format!(
            "combined,uri=/p,id=7,ip=10.0.0.{},role=r count=1\nips,ip=10.0.0.{} count=2i",
            i % 2,
            i % 2
        );
        tx.send_to(d.as_bytes(), to).unwrap();
    }
    let escaped = b"combined,id=7,ip=a\\ b count=1";
    tx.send_to(escaped, to).unwrap();
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        escaped,
        "only the escaped datagram reaches the socket"
    );
    let c = k.counters().snapshot();
    assert_eq!(c.datagrams, 1000);
    assert_eq!(c.points, 2000);
    assert_eq!(k.counters().passed()[1], ("escape", 1));
    let d = k.drain().unwrap();
    let key = |v: &[&str]| crate::key::from_values(v);
    let combined = &d.tables[0];
    assert_eq!(
        combined.get(&key(&["10.0.0.0", "7"])).unwrap().value(),
        500.0
    );
    assert_eq!(combined.get(&key(&["10.0.0.1", "7"])).unwrap().lines, 500);
    assert_eq!(
        d.tables[1].get(&key(&["10.0.0.1"])).unwrap().value(),
        1000.0
    );
    assert_eq!(d.keys, 4);
    assert_eq!(d.evicted_lines, 0);
    // The next drain reads the other generation, empty.
    let d = k.drain().unwrap();
    assert_eq!(d.keys, 0);
    assert!(d.tables.iter().all(|t| t.is_empty()));
}
