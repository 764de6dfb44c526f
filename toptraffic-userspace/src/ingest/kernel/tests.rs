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
    load_with(attach, pin_dir, 4096)
}

/// As load_pinned, with a key set of `map_entries` slots.
fn load_with(
    attach: Attach,
    pin_dir: Option<&Path>,
    map_entries: u32,
) -> Option<Result<KernelPath, String>> {
    let c = Config::embedded_default();
    let plan = crate::ingest::kernel_config::plan(&c.rules).unwrap();
    let max_keys = c.rules.iter().map(|r| r.max_keys).collect();
    let opts = Options {
        attach,
        map_entries,
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

const PINS: [&str; 8] = [
    "config",
    "counters",
    "generation",
    "gen_a",
    "gen_b",
    "keys",
    "key_of",
    "free",
];

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
        // Half the limit as margin: another LLVM or kernel walks the same
        // code differently (docs/BENCHMARKS.md, section 5).
        assert!(n < 500_000, "{name}: {n} instructions, too near the limit");
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

/// The programs run on this thread's CPU: CPU 0, where fill_active writes.
fn pin_to_cpu0() {
    // SAFETY: set is a zeroed cpu_set_t on this stack, which CPU_SET and
    // sched_setaffinity (for this thread, pid 0) only read and write.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

/// The kernel key of rule `combined` (id 0) for `ip` and id 1.
fn group_key(ip: &str) -> toptraffic_common::GroupKey {
    let mut g = toptraffic_common::GroupKey::zeroed();
    let mut off = 0;
    for v in [ip.as_bytes(), b"1"] {
        g.data[off..off + 2].copy_from_slice(&(v.len() as u16).to_le_bytes());
        g.data[off + 2..off + 2 + v.len()].copy_from_slice(v);
        off += 2 + v.len();
    }
    g.len = off as u32;
    g
}

/// The same key as the drain gives it: `ip` and id 1.
fn table_key(ip: &str) -> crate::key::Key {
    crate::key::from_values(&[ip, "1"])
}

/// The largest values the kernel sums, either sign, on a cell filled to
/// its line bound: the sum reaches u32::MAX x (2^31 - 1) exactly, the cell
/// then refuses the line (lost: `evicted`), and a larger value sends its
/// datagram to userspace whole as `large_value`.
#[test]
fn test_run_sums_the_largest_values_exactly_up_to_the_line_bound() {
    use toptraffic_common::{Cell as KCell, MAX_SUMMED};
    let Some(mut k) = load_or_skip(Attach::None) else {
        return;
    };
    pin_to_cpu0();
    let near = u32::MAX - 2;
    let full = KCell {
        lines: near,
        owned: near,
        sum: near as i64 * MAX_SUMMED,
    };
    k.fill_active(&[group_key("10.0.0.1")], full).unwrap();
    let line = |ip: &str, v: i64| format!("combined,ip={ip},id=1 count={v}\n");
    // Two lines reach the bound; the third is refused.
    let (verdict, _) = k
        .test_run(false, line("10.0.0.1", MAX_SUMMED).repeat(3).as_bytes(), 1)
        .unwrap();
    assert_eq!(verdict, 0, "counted in the kernel");
    let down = line("10.0.0.2", -MAX_SUMMED).repeat(60);
    let (verdict, _) = k.test_run(false, down.as_bytes(), 200).unwrap();
    assert_eq!(verdict, 0, "counted in the kernel");
    let larger = line("10.0.0.3", MAX_SUMMED + 1);
    let (verdict, _) = k.test_run(false, larger.as_bytes(), 1).unwrap();
    assert_eq!(verdict as usize, 8 + larger.len(), "passed whole");
    assert!(k.counters().passed().contains(&("large_value", 1)));
    let d = k.drain().unwrap();
    let a = d.tables[0].get(&table_key("10.0.0.1")).unwrap();
    let want = u32::MAX as i128 * MAX_SUMMED as i128;
    assert_eq!((a.exact(), a.lines), (want, u32::MAX as u64));
    assert_eq!(a.value(), want as f64);
    let b = d.tables[0].get(&table_key("10.0.0.2")).unwrap();
    assert_eq!((b.exact(), b.lines), (-12_000 * MAX_SUMMED as i128, 12_000));
    assert!(d.tables[0].get(&table_key("10.0.0.3")).is_none());
    let dropped = k.counters().snapshot().dropped;
    assert_eq!(
        dropped[crate::stats::DropReason::Evicted as usize],
        1,
        "the refused line"
    );
}

/// A key set with no free slot takes no new key and evicts none: a
/// datagram with a key it has no slot for goes to userspace whole
/// (`map_full`), what the run had committed of its earlier lines taken back
/// (slots it gave keys stay empty, and the drain skips them), while lines
/// of keys that hold a slot still count. Slots come back once their keys
/// idle.
#[test]
fn a_full_map_passes_datagrams_of_new_keys_whole_and_keeps_none_of_their_lines() {
    use toptraffic_common::Cell as KCell;
    const ENTRIES: u32 = 64;
    let Some(k) = load_with(Attach::None, None, ENTRIES) else {
        return;
    };
    let mut k = k.unwrap();
    pin_to_cpu0();
    let held: Vec<String> = (0..ENTRIES - 1).map(|i| format!("10.1.0.{i}")).collect();
    let keys: Vec<_> = held.iter().map(|ip| group_key(ip)).collect();
    let one = KCell {
        lines: 1,
        owned: 1,
        sum: 1,
    };
    k.fill_active(&keys, one).unwrap();
    let line = |ip: &str, v: i64| format!("combined,ip={ip},id=1 count={v}\n");
    let passed = |k: &mut KernelPath, d: &str| {
        let (verdict, _) = k.test_run(false, d.as_bytes(), 1).unwrap();
        assert_eq!(verdict as usize, 8 + d.len(), "passed whole: {d}");
    };
    // A held key, a new key that takes the last entry, and a new key the
    // map has no room for.
    let first = [
        line("10.1.0.0", 5),
        line("10.2.0.1", 7),
        line("10.2.0.2", 9),
    ]
    .concat();
    passed(&mut k, &first);
    // A held key, then a new one.
    passed(&mut k, &[line("10.1.0.1", 3), line("10.2.0.3", 1)].concat());
    passed(&mut k, &line("10.2.0.4", 1));
    // Keys the map holds still count.
    let counted = [line("10.1.0.5", 4), line("10.1.0.5", 6)].concat();
    let (verdict, _) = k.test_run(false, counted.as_bytes(), 1).unwrap();
    assert_eq!(verdict, 0, "counted in the kernel");
    assert!(k.counters().passed().contains(&("map_full", 3)));
    let c = k.counters().snapshot();
    assert_eq!((c.datagrams, c.points), (1, 2), "only the counted datagram");
    assert!(c.dropped.iter().all(|&n| n == 0), "{:?}", c.dropped);

    let d = k.drain().unwrap();
    let t = &d.tables[0];
    for ip in &held {
        let want = if ip == "10.1.0.5" { (3, 11) } else { (1, 1) };
        let cell = t.get(&table_key(ip)).unwrap();
        assert_eq!((cell.lines, cell.exact()), (want.0, want.1), "{ip}");
    }
    for ip in ["10.2.0.1", "10.2.0.2", "10.2.0.3", "10.2.0.4"] {
        assert!(t.get(&table_key(ip)).is_none(), "{ip} stayed counted");
    }
    assert_eq!((d.keys, t.len()), (held.len(), held.len()));
    // Short of slots, the keys idle for a rotation are retired, and their
    // slots freed at the next: then the same datagrams are counted.
    assert_eq!(k.drain().unwrap().retired, held.len());
    let d = k.drain().unwrap();
    assert_eq!((d.keys, d.retired), (0, 0));
    let (verdict, _) = k.test_run(false, first.as_bytes(), 1).unwrap();
    assert_eq!(verdict, 0, "counted in freed slots");
    let d = k.drain().unwrap();
    assert_eq!(d.tables[0].get(&table_key("10.2.0.2")).unwrap().lines, 1);
    assert_eq!(d.keys, 3);
}

/// A datagram refused in the rule pass (here a key longer than the
/// kernel's, on its second line) goes to userspace whole, and the kernel
/// keeps none of it, its first line included.
#[test]
fn a_datagram_refused_after_its_first_counts_keeps_none_of_them() {
    let Some(mut k) = load_or_skip(Attach::None) else {
        return;
    };
    pin_to_cpu0();
    let line = |ip: &str, id: &str| format!("combined,ip={ip},id={id} count=1\n");
    let refused = [line("10.3.0.1", "1"), line("10.3.0.2", &"7".repeat(200))].concat();
    let (verdict, _) = k.test_run(false, refused.as_bytes(), 1).unwrap();
    assert_eq!(verdict as usize, 8 + refused.len(), "passed whole");
    assert!(k.counters().passed().contains(&("key_too_long", 1)));
    let counted = line("10.3.0.3", "1");
    let (verdict, _) = k.test_run(false, counted.as_bytes(), 1).unwrap();
    assert_eq!(verdict, 0, "counted in the kernel");
    let d = k.drain().unwrap();
    assert!(
        d.tables[0].get(&table_key("10.3.0.1")).is_none(),
        "taken back"
    );
    assert_eq!(d.tables[0].get(&table_key("10.3.0.3")).unwrap().lines, 1);
    let c = k.counters().snapshot();
    assert_eq!((c.datagrams, c.points), (1, 1), "only the counted datagram");
}

/// A seed line, whose key the retirement tests count and leave idle.
const RETIRING_LINE: &[u8] = b"combined,uri=/p,id=1,ip=203.0.113.7 count=2";

/// A loaded path and the key of `RETIRING_LINE`, counted 3 times, then
/// idle until its slot retires, then counted 5 times anew: in a new slot,
/// the old one freed at the next drain. None where the kernel path cannot
/// load.
fn retired_then_counted_again() -> Option<(KernelPath, crate::key::Key)> {
    use super::drain::RETIRE_AFTER;
    let mut k = load_or_skip(Attach::None)?;
    let key = crate::key::from_values(&["203.0.113.7", "1"]);
    k.test_run(false, RETIRING_LINE, 3).unwrap();
    assert_eq!(k.drain().unwrap().tables[0].get(&key).unwrap().lines, 3);
    let mut retired = 0;
    for _ in 0..RETIRE_AFTER {
        let d = k.drain().unwrap();
        assert_eq!(d.keys, 0);
        retired += d.retired;
    }
    assert_eq!(retired, 1, "retired after a window idle");
    k.test_run(false, RETIRING_LINE, 5).unwrap();
    Some((k, key))
}

/// A key idle for a window gives its slot back; counted again, it gets a
/// slot anew, and a count that reached the old slot after its retirement
/// is read before the slot is freed.
#[test]
fn idle_keys_give_their_slots_back_and_lose_no_count() {
    let Some((mut k, key)) = retired_then_counted_again() else {
        return;
    };
    let d = k.drain().unwrap();
    assert_eq!(d.tables[0].get(&key).unwrap().lines, 5);
    assert_eq!((d.keys, d.retired), (1, 0));
}

/// A key counted anew while a program still adds to its retiring slot:
/// both counts, and the key once in its table.
#[test]
fn a_key_counted_in_its_retiring_slot_and_a_new_one_is_held_once() {
    let Some((mut k, key)) = retired_then_counted_again() else {
        return;
    };
    let late = toptraffic_common::Cell {
        lines: 2,
        owned: 2,
        sum: 4,
    };
    assert_eq!(k.gens.count_retiring(late), 1);
    let d = k.drain().unwrap();
    let c = d.tables[0].get(&key).unwrap();
    assert_eq!((c.lines, c.value(), c.owned.kernel), (7, 14.0, 7));
    assert_eq!(d.tables[0].len(), 1);
    assert_eq!(d.keys, 2, "two slots read");
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
    // The next drain reads the other generation, empty.
    let d = k.drain().unwrap();
    assert_eq!(d.keys, 0);
    assert!(d.tables.iter().all(|t| t.is_empty()));
}

/// The embedded default's plan and max_keys, as a reload hands them over.
fn default_rules() -> (crate::ingest::kernel_config::KernelPlan, Vec<usize>) {
    let c = Config::embedded_default();
    let plan = crate::ingest::kernel_config::plan(&c.rules).unwrap();
    (plan, c.rules.iter().map(|r| r.max_keys).collect())
}

#[test]
fn a_resize_swaps_in_larger_maps_and_keeps_what_the_old_ones_counted() {
    let dir = fresh_pin_dir("resize");
    let Some(k) = load_pinned(Attach::None, Some(&dir)) else {
        return;
    };
    let mut k = k.unwrap();
    let plain = b"combined,uri=/p,id=1,ip=203.0.113.7 count=2";
    let key = crate::key::from_values(&["203.0.113.7", "1"]);
    k.test_run(false, plain, 3).unwrap();
    let (plan, max_keys) = default_rules();
    k.set_rules(plan, max_keys, 8192).unwrap();
    assert_eq!(k.map_entries(), 8192);
    let pinned = aya::maps::MapData::from_pin(dir.join("key_of")).unwrap();
    assert_eq!(
        pinned.info().unwrap().max_entries(),
        8192,
        "the pin follows"
    );
    drop(pinned);
    k.test_run(false, plain, 4).unwrap();
    // The interval's counts: 3 in the retired map, 4 in the new one, once.
    let d = k.drain().unwrap();
    let c = d.tables[0].get(&key).unwrap();
    assert_eq!((c.lines, c.value()), (7, 14.0));
    assert_eq!(d.tables[0].len(), 1);
    // Both new maps take their turn, and the retired one is gone.
    for n in [1, 2] {
        k.test_run(false, plain, n).unwrap();
        let d = k.drain().unwrap();
        assert_eq!(d.tables[0].get(&key).unwrap().lines, n as u64);
    }
    // Smaller needs keep the maps.
    let (plan, max_keys) = default_rules();
    k.set_rules(plan, max_keys, 100).unwrap();
    assert_eq!(k.map_entries(), 8192);
}

#[test]
fn maps_the_kernel_refuses_to_create_leave_the_maps_and_rules_in_force() {
    let Some(mut k) = load_or_skip(Attach::None) else {
        return;
    };
    let plain = b"combined,uri=/p,id=1,ip=203.0.113.7 count=2";
    k.test_run(false, plain, 3).unwrap();
    let (mut plan, max_keys) = default_rules();
    // A rule id the kernel does not know yet: were the rules written, the
    // counts of `combined` would go to it and be lost to the drain.
    plan.ids[0] = 99;
    plan.config.rules[0].id = 99;
    // A hash of 2^30 entries is over the kernel's bucket limit (E2BIG).
    let err = k.set_rules(plan, max_keys, 1 << 30).unwrap_err();
    assert!(
        err.contains("creating a key set of 1073741824 slots failed"),
        "{err}"
    );
    assert_eq!(k.map_entries(), 4096);
    k.test_run(false, plain, 1).unwrap();
    let d = k.drain().unwrap();
    let key = crate::key::from_values(&["203.0.113.7", "1"]);
    assert_eq!(d.tables[0].get(&key).unwrap().lines, 4);
}

#[test]
fn xdp_matches_what_the_socket_receives() {
    use super::path::xdp_match;
    use toptraffic_common::{XDP_IPV4, XDP_IPV6};
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let lo4 = u32::from_ne_bytes([127, 0, 0, 1]);
    assert_eq!(xdp_match(ip("127.0.0.1"), false), (XDP_IPV4, lo4, [0, 0]));
    assert_eq!(xdp_match(ip("0.0.0.0"), false), (XDP_IPV4, 0, [0, 0]));
    assert_eq!(
        xdp_match(ip("::ffff:127.0.0.1"), false),
        (XDP_IPV4, lo4, [0, 0])
    );
    let one = u64::from_ne_bytes([0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(xdp_match(ip("::1"), true), (XDP_IPV6, 0, [0, one]));
    let fd00 = u64::from_ne_bytes([0xfd, 0, 0, 0xcb, 0, 0, 0, 0]);
    assert_eq!(
        xdp_match(ip("fd00:cb::1"), false),
        (XDP_IPV6, 0, [fd00, one])
    );
    // `::`: IPv6 to any address, and IPv4 when the socket takes it too.
    assert_eq!(xdp_match(ip("::"), false), (XDP_IPV6, 0, [0, 0]));
    assert_eq!(xdp_match(ip("::"), true), (XDP_IPV6 | XDP_IPV4, 0, [0, 0]));
}
