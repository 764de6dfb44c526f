//! The kernel parser (run on the host) against the userspace path.
//!
//! The kernel programs make three passes over a datagram (see
//! `toptraffic_ebpf::parse`); here they run as plain loops over a boxed
//! `Scratch`, with the `KernelConfig` that `kernel_config::plan` builds from
//! the same rules the userspace `Counter` applies. The invariant: for any
//! bytes, the kernel either hands the datagram to userspace whole, or counts
//! exactly what userspace would have counted for it (per rule, key, sum and
//! lines; points; the per-line drop reasons it knows) and userspace finds no
//! parse error in it. And plain traffic stays in the kernel.
//!
//! Failures are not persisted to a regressions file: a shrunk failing case
//! belongs in `toptraffic-ebpf/src/parse/tests.rs` or in the unit tests at
//! the bottom of this file instead.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use toptraffic_common::{
    counter, GroupKey, KernelConfig, BUF_LEN, KEY_LEN_PREFIX, MAX_LINES, MAX_SUMMED,
};
use toptraffic_ebpf::parse::{self, Scratch, DROP_FILTERED, DROP_MISSING_FIELD, DROP_UNKNOWN};

use crate::config::Config;
use crate::ingest::kernel_config::plan;
use crate::ingest::udp::Counter;
use crate::lineproto::proptests::edit;
use crate::proptest_config::config;
use crate::rules::RuleSet;
use crate::snapshot::Cell;
use crate::stats::{DropReason, LocalCounters};

// ---------------------------------------------------------------------------
// The two paths, reduced to what they counted.

/// Per (rule index, group key bytes): the summed value and the lines.
type Tables<V> = BTreeMap<(usize, Vec<u8>), (V, u64)>;

/// What the kernel counted for a datagram it kept.
#[derive(Debug, Clone, PartialEq)]
struct KernelCount {
    tables: Tables<i128>,
    points: u64,
    /// By `parse::DROP_*`: unknown_measurement, filtered, missing_field.
    drops: [u64; 3],
}

/// What userspace counted for a datagram.
#[derive(Debug, Clone, PartialEq)]
struct UserCount {
    tables: Tables<Cell>,
    points: u64,
    /// unknown_measurement, filtered, missing_field, as the kernel has them.
    drops: [u64; 3],
    /// Every other drop reason that occurred, with its count.
    other_drops: Vec<(DropReason, u64)>,
}

/// Runs the kernel's three passes as the programs do: Err is the
/// `counter::PASS_*` reason the datagram goes to userspace whole.
///
/// Twice, in one scratch, the second run with the line shape the first
/// learned (the shape the previous datagram left is the first's): both
/// count the same. (The fixtures' configs share a version: a shape is
/// kept only while the config is the same.)
fn kernel(cfg: &KernelConfig, data: &[u8]) -> Result<KernelCount, u32> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<(KernelConfig, Box<Scratch>)> =
            std::cell::RefCell::new((KernelConfig::empty(), Box::new(Scratch::EMPTY)));
    }
    SCRATCH.with(|c| {
        let (last, s) = &mut *c.borrow_mut();
        if last != cfg {
            *last = *cfg;
            s.shapes = [parse::Shape::EMPTY; parse::SHAPES];
        }
        let first = kernel_once(s, cfg, data);
        let again = kernel_once(s, cfg, data);
        assert_eq!(first, again, "the second run, by the learned shape");
        first
    })
}

fn kernel_once(s: &mut Scratch, cfg: &KernelConfig, data: &[u8]) -> Result<KernelCount, u32> {
    parse::parse_lines(s, cfg, data)?;
    // Pass 3: the items, into keys.
    let mut tables = Tables::new();
    for item in &s.items[..s.st.n_items as usize] {
        let mut key = GroupKey::zeroed();
        parse::build_key(&s.buf, item, &mut key);
        let cell = tables
            .entry((key.rule as usize, key.bytes().to_vec()))
            .or_insert((0i128, 0u64));
        cell.0 += item.value as i128;
        cell.1 += 1;
    }
    let d = s.st.drops;
    Ok(KernelCount {
        tables,
        points: s.st.points as u64,
        drops: [
            d[DROP_UNKNOWN] as u64,
            d[DROP_FILTERED] as u64,
            d[DROP_MISSING_FIELD] as u64,
        ],
    })
}

/// Counts the datagram with the userspace `Counter`.
fn userspace(rules: &Arc<RuleSet>, data: &[u8]) -> UserCount {
    let mut counter = Counter::new();
    let mut tables = rules.new_tables();
    let mut local = LocalCounters::default();
    counter.datagram(data, rules, &mut tables, &mut local);
    let mut flat = Tables::new();
    for (ri, t) in tables.iter().enumerate() {
        for (k, c) in t.iter() {
            flat.insert((ri, k.to_vec()), (*c, c.lines));
        }
    }
    let kept = [
        DropReason::UnknownMeasurement,
        DropReason::Filtered,
        DropReason::MissingField,
    ];
    UserCount {
        tables: flat,
        points: local.points,
        drops: kept.map(|r| local.dropped[r as usize]),
        other_drops: DropReason::ALL
            .iter()
            .filter(|r| !kept.contains(r) && local.dropped[**r as usize] != 0)
            .map(|r| (*r, local.dropped[*r as usize]))
            .collect(),
    }
}

/// Whether userspace summed exactly what the kernel did: every value the
/// kernel sums is an integer, which userspace adds exactly too, so the
/// sums are equal, not close, and so are the values the window reads.
fn same_sum(kernel: i128, user: &Cell) -> bool {
    user.exact() == kernel && user.rest == 0.0 && user.value() == kernel as f64
}

/// Why the kernel's count differs from userspace's, if it does.
fn difference(k: &KernelCount, u: &UserCount) -> Option<String> {
    if !u.other_drops.is_empty() {
        return Some(format!(
            "kernel kept a datagram in which userspace drops {:?}",
            u.other_drops
        ));
    }
    if k.points != u.points {
        return Some(format!(
            "points: kernel {} userspace {}",
            k.points, u.points
        ));
    }
    if k.drops != u.drops {
        return Some(format!(
            "drops [unknown, filtered, missing_field]: kernel {:?} userspace {:?}",
            k.drops, u.drops
        ));
    }
    let same_keys = k.tables.len() == u.tables.len()
        && k.tables
            .iter()
            .zip(&u.tables)
            .all(|((kk, kv), (uk, uv))| kk == uk && kv.1 == uv.1 && same_sum(kv.0, &uv.0));
    if !same_keys {
        return Some(format!(
            "tables differ:\n kernel    {:?}\n userspace {:?}",
            k.tables, u.tables
        ));
    }
    None
}

// ---------------------------------------------------------------------------
// Rule sets.

/// A rule set as both paths get it.
struct Fixture {
    name: &'static str,
    kernel: KernelConfig,
    rules: Arc<RuleSet>,
    /// Measurements whose lines the plan hands to userspace.
    userspace_measurements: Vec<Vec<u8>>,
}

impl Fixture {
    fn new(name: &'static str, config: Config) -> Fixture {
        let p = plan(&config.rules).expect("the kernel path takes these rules");
        let userspace_measurements = config
            .rules
            .iter()
            .zip(&p.userspace_only)
            .filter(|(_, why)| why.is_some())
            .map(|(r, _)| r.measurement.as_bytes().to_vec())
            .collect();
        Fixture {
            name,
            kernel: p.config,
            rules: Arc::new(RuleSet::new(&config.rules)),
            userspace_measurements,
        }
    }

    fn parse(name: &'static str, text: &str) -> Fixture {
        Fixture::new(
            name,
            Config::parse(text, name).expect("a valid test config"),
        )
    }

    /// Whether the datagram has a line of a measurement that only userspace
    /// counts (plain datagrams, whose lines start at line starts).
    fn has_userspace_line(&self, data: &[u8]) -> bool {
        data.split(|&c| c == b'\n').any(|line| {
            let m = line
                .split(|&c| c == b',' || c == b' ')
                .next()
                .unwrap_or(b"");
            self.userspace_measurements.iter().any(|u| u == m)
        })
    }

    /// The property: bail, or count exactly as userspace, with no parse
    /// error. Returns the kernel's verdict for further checks.
    fn check(&self, data: &[u8]) -> Result<Result<KernelCount, u32>, TestCaseError> {
        let k = kernel(&self.kernel, data);
        if let Ok(kc) = &k {
            let u = userspace(&self.rules, data);
            if let Some(why) = difference(kc, &u) {
                return Err(TestCaseError::fail(format!(
                    "rules {:?}: the kernel kept {:?} but {why}",
                    self.name,
                    String::from_utf8_lossy(data)
                )));
            }
        }
        Ok(k)
    }

    /// [`Fixture::check`] without the verdict.
    fn holds(&self, data: &[u8]) -> Result<(), TestCaseError> {
        self.check(data).map(drop)
    }
}

/// A measurement longer than the kernel compares (NAME_LEN).
const LONG_MEASUREMENT: &str = "a_measurement_name_longer_than_thirty_two_bytes";

fn fixtures() -> &'static [Fixture] {
    static F: OnceLock<Vec<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        vec![
            Fixture::new("default", Config::embedded_default()),
            Fixture::parse(
                "filters",
                "[[rule]]\nname = \"edge_ips\"\nmeasurement = \"combined\"\n\
                 where = { role = \"edge\" }\ngroup_by = [\"ip\"]\naggregate = \"count\"\n\
                 [[rule]]\nname = \"edge_uri\"\nmeasurement = \"ips\"\n\
                 where = { role = \"edge\", id = \"123\" }\ngroup_by = [\"uri\", \"ip\"]\n\
                 field = \"count\"\n\
                 [[rule]]\nname = \"stores\"\nmeasurement = \"stores\"\ngroup_by = [\"id\"]\n",
            ),
            Fixture::parse(
                "userspace_rule",
                &format!(
                    "[[rule]]\nname = \"wide\"\nmeasurement = \"stores\"\n\
                     group_by = [\"uri\", \"id\", \"ip\", \"role\", \"host\"]\n\
                     [[rule]]\nname = \"long\"\nmeasurement = \"{LONG_MEASUREMENT}\"\n\
                     group_by = [\"ip\"]\n\
                     [[rule]]\nname = \"c\"\nmeasurement = \"combined\"\n\
                     group_by = [\"ip\", \"id\"]\nfield = \"count\"\n"
                ),
            ),
            Fixture::parse(
                "same_measurement",
                "[[rule]]\nname = \"by_ip_id\"\nmeasurement = \"combined\"\n\
                 group_by = [\"ip\", \"id\"]\nfield = \"count\"\n\
                 [[rule]]\nname = \"edge_roles\"\nmeasurement = \"combined\"\n\
                 where = { role = \"edge\" }\ngroup_by = [\"role\", \"uri\"]\n\
                 [[rule]]\nname = \"ips\"\nmeasurement = \"ips\"\ngroup_by = [\"ip\"]\n\
                 field = \"count\"\n",
            ),
        ]
    })
}

// ---------------------------------------------------------------------------
// Generators.

/// Measurements of generated lines: the rules', an unknown one, and the one
/// longer than the kernel compares.
const MEASUREMENTS: &[&str] = &["combined", "ips", "stores", "other", LONG_MEASUREMENT];

/// One plain tag, `key=value`.
fn tag(key: &'static str) -> BoxedStrategy<String> {
    match key {
        "uri" => (1u32..30).prop_map(|n| format!("uri=/p/{n}")).boxed(),
        "id" => prop_oneof![Just(123u32), 1u32..100_000]
            .prop_map(|n| format!("id={n}"))
            .boxed(),
        "ip" => (0u8..3, 0u8..3)
            .prop_map(|(a, b)| format!("ip=10.0.{a}.{b}"))
            .boxed(),
        "role" => select(&["edge", "core", "edge2"][..])
            .prop_map(|r| format!("role={r}"))
            .boxed(),
        _ => select(&["h1", "h2"][..])
            .prop_map(|h| format!("host={h}"))
            .boxed(),
    }
}

/// The tags of a line: any subset of the seed's (and `host`), in any order.
fn tags() -> impl Strategy<Value = Vec<String>> {
    let keys = ["uri", "id", "ip", "role", "host"];
    let each: Vec<_> = keys
        .iter()
        .map(|k| proptest::option::weighted(0.8, tag(k)))
        .collect();
    each.prop_map(|v| v.into_iter().flatten().collect::<Vec<_>>())
        .prop_shuffle()
}

/// The field set: mostly the seed's `count=1`, in its numeric spellings.
fn fields() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("count=1".to_string()),
        3 => Just("count=1i".to_string()),
        3 => Just("count=3.0".to_string()),
        1 => Just("count=-0".to_string()),
        1 => Just("count=-2i".to_string()),
        1 => (0i64..1_000_000).prop_map(|n| format!("count={n}")),
        1 => Just("bytes=1.5,count=2".to_string()),
        1 => Just("count=4,hits=5".to_string()),
        1 => Just("hits=1i".to_string()),
    ]
}

/// An optional timestamp of 1 to 19 digits within i64.
fn timestamp() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        (1u32..=19, any::<u64>(), proptest::bool::weighted(0.1)).prop_map(|(digits, v, neg)| {
            // InfluxDB's range is [i64::MIN + 2, i64::MAX - 1].
            let v = (v % 10u64.pow(digits)).min(i64::MAX as u64 - 1);
            if neg {
                format!("-{v}")
            } else {
                v.to_string()
            }
        }),
    )
}

fn seed_line() -> impl Strategy<Value = String> {
    (select(MEASUREMENTS), tags(), fields(), timestamp()).prop_map(|(m, tags, fields, ts)| {
        let mut s = m.to_string();
        for t in tags {
            s.push(',');
            s.push_str(&t);
        }
        s.push(' ');
        s.push_str(&fields);
        if let Some(ts) = ts {
            s.push(' ');
            s.push_str(&ts);
        }
        s
    })
}

/// A comment line without quotes or backslashes.
fn comment() -> impl Strategy<Value = String> {
    "#[a-z0-9 =,.]{0,20}"
}

/// A datagram of plain lines, blank lines and comments.
fn plain_datagram() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(
            prop_oneof![
                8 => seed_line(),
                1 => Just(String::new()),
                1 => comment(),
            ],
            1..10,
        ),
        any::<bool>(),
    )
        .prop_map(|(lines, trailing)| {
            let mut d = lines.join("\n");
            if trailing {
                d.push('\n');
            }
            d.into_bytes()
        })
}

/// The line protocol's special bytes and common ones.
const ALPHABET: &[u8] = b", =\"\\\n\r\t#-.0123456789iuteEabcdfmnoprsTFN\0\x80";

/// A plain datagram with a few bytes deleted, inserted or replaced.
fn mutated_datagram() -> impl Strategy<Value = Vec<u8>> {
    (plain_datagram(), vec(edit(ALPHABET.to_vec()), 1..5)).prop_map(|(mut d, edits)| {
        for e in &edits {
            e.apply(&mut d);
        }
        d
    })
}

/// A short plain line, at most 50 bytes.
fn short_line() -> impl Strategy<Value = String> {
    const TAGS: &[&str] = &["ip=10.0.0.1", "id=7", "role=edge", "uri=/p"];
    (
        select(&MEASUREMENTS[..4]),
        proptest::sample::subsequence(TAGS, 0..=4).prop_shuffle(),
    )
        .prop_map(|(m, tags)| {
            let mut s = m.to_string();
            for t in tags {
                s.push(',');
                s.push_str(t);
            }
            s.push_str(" count=1");
            s
        })
}

/// Many copies of one short plain line: around the kernel's line and item
/// limits, within its buffer.
fn repeated_datagram() -> impl Strategy<Value = Vec<u8>> {
    (short_line(), 50usize..(MAX_LINES as usize + 8)).prop_map(|(line, n)| {
        let mut d = Vec::new();
        for _ in 0..n {
            d.extend_from_slice(line.as_bytes());
            d.push(b'\n');
        }
        d
    })
}

/// A number as line protocol may spell it, valid or not: sign, 1 to 25
/// digits (leading zeros too), a fraction, a type suffix or an exponent.
fn number() -> impl Strategy<Value = String> {
    (
        proptest::bool::weighted(0.2),
        prop_oneof![
            8 => "[0-9]{1,3}",
            2 => "0{0,2}[1-9][0-9]{11,12}",
            1 => "[0-9]{16,25}",
        ],
        proptest::option::weighted(0.2, prop_oneof!["0{0,3}", "[0-9]{1,3}"]),
        prop_oneof![
            12 => Just(""),
            3 => Just("i"),
            2 => Just("u"),
            1 => select(&["e3", "E-2", "i5", "ui", "."][..]),
        ],
    )
        .prop_map(|(neg, int, frac, suffix)| {
            let mut s = String::new();
            if neg {
                s.push('-');
            }
            s.push_str(&int);
            if let Some(f) = frac {
                s.push('.');
                s.push_str(&f);
            }
            s.push_str(suffix);
            s
        })
}

/// A timestamp near the edges of i64, or of many digits.
fn edge_timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => select(
            &[
                "0",
                "-0",
                "9223372036854775806",
                "9223372036854775807",
                "9223372036854775808",
                "-9223372036854775806",
                "-9223372036854775807",
                "-9223372036854775808",
                "-9223372036854775809",
                "00000000000000000001",
                "18446744073709551616",
            ][..]
        )
        .prop_map(str::to_string),
        3 => "-?[0-9]{1,19}",
        1 => "[0-9]{20,21}",
    ]
}

/// Plain lines whose summed and other fields and timestamps are edge-case
/// numbers, several per key (sums of large values).
fn numeric_datagram() -> impl Strategy<Value = Vec<u8>> {
    let line = (
        select(&MEASUREMENTS[..3]),
        select(&["ip=10.0.0.1,id=123", "ip=10.0.0.2,role=edge,id=123", "id=9"][..]),
        number(),
        proptest::option::of(number()),
        proptest::option::of(edge_timestamp()),
    )
        .prop_map(|(m, tags, count, other, ts)| {
            let mut s = format!("{m},{tags} count={count}");
            if let Some(o) = other {
                s.push_str(",x=");
                s.push_str(&o);
            }
            if let Some(ts) = ts {
                s.push(' ');
                s.push_str(&ts);
            }
            s
        });
    vec(line, 1..6).prop_map(|lines| lines.join("\n").into_bytes())
}

// ---------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(config(256))]

    /// Plain seed-shaped traffic is counted in the kernel, exactly as
    /// userspace counts it; only lines of a measurement that a userspace-only
    /// rule takes send it up.
    #[test]
    fn kernel_takes_plain_seed_traffic(d in plain_datagram()) {
        for f in fixtures() {
            match f.check(&d)? {
                Ok(_) => prop_assert!(
                    !f.has_userspace_line(&d),
                    "rules {:?}: kept a datagram with a userspace-only measurement: {:?}",
                    f.name, String::from_utf8_lossy(&d)
                ),
                Err(reason) => {
                    prop_assert!(
                        f.has_userspace_line(&d),
                        "rules {:?}: plain traffic handed over (reason {}): {:?}",
                        f.name, reason, String::from_utf8_lossy(&d)
                    );
                    prop_assert_eq!(reason, counter::PASS_USERSPACE_RULE);
                }
            }
        }
    }

    /// Corrupted traffic: whatever the kernel keeps, it counts exactly as
    /// userspace does, and it keeps nothing that has a malformed line.
    #[test]
    fn kernel_counts_exactly_what_userspace_counts_or_hands_over(d in mutated_datagram()) {
        for f in fixtures() {
            f.holds(&d)?;
        }
    }

    /// Numbers and timestamps at and past the edges of what either side
    /// takes.
    #[test]
    fn kernel_counts_edge_case_numbers_exactly_or_hands_over(d in numeric_datagram()) {
        for f in fixtures() {
            f.holds(&d)?;
        }
    }

    /// Sums of the largest values the kernel takes (2^31 - 1, either
    /// sign) and of larger ones (up to 15 digits) over many lines of few
    /// keys: a datagram with a larger value goes to userspace whole
    /// (`large_value`), and whichever path counted which lines, the sums
    /// are exactly those userspace alone makes of them all.
    #[test]
    fn kernel_sums_large_values_exactly_as_userspace(
        values in vec((0u8..2, -MAX_SUMMED..=MAX_SUMMED), 1..=60),
        edge in vec(select(&[MAX_SUMMED, -MAX_SUMMED][..]), 0..40),
        large in vec((0usize..60, prop_oneof![
            select(&[MAX_SUMMED + 1, -MAX_SUMMED - 1, 999_999_999_999_999, -999_999_999_999_999][..]),
            (MAX_SUMMED + 1)..=999_999_999_999_999i64,
            -999_999_999_999_999i64..=(-MAX_SUMMED - 1),
        ]), 0..4),
    ) {
        let mut lines: Vec<(u8, i64)> = values
            .iter()
            .enumerate()
            .map(|(i, (ip, v))| (*ip, edge.get(i).copied().unwrap_or(*v)))
            .collect();
        for (at, v) in &large {
            let at = at % lines.len();
            lines[at].1 = *v;
        }
        let text = |keep: &dyn Fn(i64) -> bool| -> String {
            lines
                .iter()
                .filter(|(_, v)| keep(*v))
                .map(|(ip, v)| format!("combined,ip=10.0.0.{ip},id=1 count={v}\n"))
                .collect()
        };
        let fits = |v: i64| v.abs() <= MAX_SUMMED;
        let (small, big, all) = (text(&fits), text(&|v| !fits(v)), text(&|_| true));
        for f in fixtures() {
            for d in [&small, &big, &all] {
                f.holds(d.as_bytes())?;
            }
        }
        let f = default_fixture();
        let k = kernel(&f.kernel, small.as_bytes());
        prop_assert!(small.is_empty() || k.is_ok(), "fitting sums stay in the kernel: {:?}", k.as_ref().err());
        if !big.is_empty() {
            for d in [&big, &all] {
                prop_assert_eq!(kernel(&f.kernel, d.as_bytes()).err(), Some(counter::PASS_LARGE_VALUE));
            }
        }
        // The kernel's lines and userspace's, added as the interval does,
        // against userspace counting everything.
        let mut mixed: BTreeMap<(usize, Vec<u8>), Cell> = BTreeMap::new();
        if let Ok(k) = k {
            for (key, (sum, n)) in k.tables {
                mixed.entry(key).or_default().add(Cell::from_exact(sum, n));
            }
        }
        for (key, (c, _)) in userspace(&f.rules, big.as_bytes()).tables {
            mixed.entry(key).or_default().add(c);
        }
        let whole = userspace(&f.rules, all.as_bytes()).tables;
        prop_assert_eq!(mixed.len(), whole.len());
        for ((mk, m), (wk, (w, _))) in mixed.iter().zip(&whole) {
            prop_assert_eq!(mk, wk);
            prop_assert_eq!((m.exact(), m.rest, m.lines), (w.exact(), w.rest, w.lines));
            prop_assert_eq!(m.value().to_bits(), w.value().to_bits());
        }
    }

    /// Arbitrary bytes, and bytes drawn from the line protocol's alphabet.
    #[test]
    fn kernel_counts_exactly_or_hands_over_arbitrary_bytes(
        d in prop_oneof![vec(any::<u8>(), 0..300), vec(select(ALPHABET), 0..300)]
    ) {
        for f in fixtures() {
            f.holds(&d)?;
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Near MAX_LINES lines (and, with two rules on a measurement,
    /// MAX_ITEMS counts): counted exactly below the limits, handed over past
    /// them, never cut short.
    #[test]
    fn kernel_hands_over_past_its_line_and_item_limits(d in repeated_datagram()) {
        for f in fixtures() {
            if let Err(reason) = f.check(&d)? {
                prop_assert!(
                    reason == counter::PASS_TOO_MANY_LINES
                        || reason == counter::PASS_USERSPACE_RULE,
                    "rules {:?}: reason {}", f.name, reason
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Cases worth keeping by name.

fn default_fixture() -> &'static Fixture {
    &fixtures()[0]
}

#[test]
fn the_seed_line_is_counted_alike() {
    let f = default_fixture();
    let d = b"combined,uri=/p/1,id=123,ip=10.0.0.1,role=edge count=1";
    let k = f.check(d).unwrap().expect("kept in the kernel");
    let mut key = Vec::new();
    for v in [&b"10.0.0.1"[..], b"123"] {
        key.extend_from_slice(&(v.len() as u16).to_le_bytes()[..KEY_LEN_PREFIX]);
        key.extend_from_slice(v);
    }
    assert_eq!(k.tables, Tables::from([((0, key), (1, 1))]));
    assert_eq!(k.points, 1);
}

#[test]
fn datagrams_longer_than_the_buffer_go_up_whole() {
    let line = b"combined,ip=10.0.0.1,id=1 count=1\n";
    let d: Vec<u8> = line.iter().copied().cycle().take(BUF_LEN + 1).collect();
    assert_eq!(
        kernel(&default_fixture().kernel, &d).err(),
        Some(counter::PASS_TOO_LONG)
    );
}

/// `max_datagram` below the kernel's buffer: a longer datagram goes up
/// whole, where the receive buffer of that size truncates it and userspace
/// drops it as oversize; a shorter one is counted in the kernel.
#[test]
fn datagrams_past_max_datagram_go_up_whole() {
    let f = default_fixture();
    let mut cfg = f.kernel;
    cfg.max_datagram = 512;
    let line = b"combined,ip=10.0.0.1,id=1 count=1\n";
    let of = |n: usize| -> Vec<u8> { line.iter().copied().cycle().take(n).collect() };
    let short = of(400 - 400 % line.len());
    assert_eq!(kernel(&cfg, &short).unwrap().points, 11);
    assert_eq!(
        kernel(&cfg, &of(512 - 512 % line.len())).unwrap().points,
        15
    );
    for n in [513, 1000, BUF_LEN] {
        assert_eq!(
            kernel(&cfg, &of(n)).err(),
            Some(counter::PASS_TOO_LONG),
            "{n}"
        );
    }
    let long = of(1000 - 1000 % line.len());
    assert_eq!(kernel(&cfg, &long).err(), Some(counter::PASS_TOO_LONG));
    assert_eq!(
        kernel(&f.kernel, &long).unwrap().points,
        29,
        "without the bound"
    );
}

#[test]
fn a_userspace_only_measurement_sends_the_datagram_up() {
    let f = &fixtures()[2];
    for d in [
        &b"stores,id=1 count=1"[..],
        format!("combined,ip=1 count=1\n{LONG_MEASUREMENT},ip=2 f=1").as_bytes(),
    ] {
        assert_eq!(
            f.check(d).unwrap().err(),
            Some(counter::PASS_USERSPACE_RULE)
        );
    }
}

/// Found by `kernel_counts_exactly_what_userspace_counts_or_hands_over`:
/// like InfluxDB's scanLine, userspace carries a comment over a newline
/// inside a quoted string (after a space and `=`) or after a backslash;
/// the kernel ended it at the newline and counted the lines it swallows.
#[test]
fn a_comment_that_userspace_carries_over_lines_goes_up() {
    for d in [
        &b"#a a=\"x\ncombined,ip=1,id=2 count=1\nips,ip=1 count=1"[..],
        b"# x a=\"y\ncombined,ip=1,id=2 count=1\n\"\nips,ip=1 count=1",
        b"# x\\\ncombined,ip=1,id=2 count=1",
    ] {
        for f in fixtures() {
            assert!(
                f.check(d).unwrap().is_err(),
                "{:?}",
                String::from_utf8_lossy(d)
            );
        }
    }
    // A plain comment stays in the kernel.
    let d = b"# top 10 a=1, b=2\ncombined,ip=1,id=2 count=1";
    assert_eq!(default_fixture().check(d).unwrap().unwrap().points, 1);
}

/// A float field of more digits than f64 holds is a parse error in
/// userspace (out of range); the kernel took it when no rule summed it.
#[test]
fn a_float_past_f64s_range_goes_up() {
    let line = |digits: usize| format!("combined,ip=1,id=2 count=1,x={}", "9".repeat(digits));
    for f in fixtures() {
        assert!(f.check(line(309).as_bytes()).unwrap().is_err());
        assert!(f
            .check(format!("{}.5", line(400)).as_bytes())
            .unwrap()
            .is_err());
    }
    // 308 digits are below f64::MAX: counted in the kernel.
    assert_eq!(
        default_fixture()
            .check(line(308).as_bytes())
            .unwrap()
            .unwrap()
            .points,
        1
    );
}

/// At the smallest `max_key_bytes`, the kernel's key capacity: a key of 64
/// bytes is counted whole in the kernel as in userspace, and one byte more
/// goes up, where userspace counts it bounded (65 bytes fit in 64 only
/// shortened). So no key the kernel counts is one userspace would shorten.
#[test]
fn the_kernel_counts_only_keys_userspace_keeps_whole() {
    let f = Fixture::parse(
        "tightest",
        "[[rule]]\nname = \"c\"\nmeasurement = \"combined\"\ngroup_by = [\"ip\", \"id\"]\n\
         max_key_bytes = 64\n",
    );
    // 2 + 8 for the ip, 2 for the id's length: 52 bytes of id fill 64.
    let line = |id_len: usize| format!("combined,ip=10.0.0.1,id={} count=1", "7".repeat(id_len));
    let k = f.check(line(52).as_bytes()).unwrap().expect("kept");
    let key = &k.tables.keys().next().unwrap().1;
    assert_eq!(key.len(), 64);
    assert_eq!(
        f.check(line(53).as_bytes()).unwrap().err(),
        Some(counter::PASS_KEY_TOO_LONG)
    );
    let u = userspace(&f.rules, line(53).as_bytes());
    let (_, key) = u.tables.keys().next().unwrap();
    assert_eq!(key.len(), 64);
    assert!(String::from_utf8_lossy(key).contains('\u{2026}'));
}

/// Lines InfluxDB 1.x rejects or reads other than a naive scan would: the
/// kernel never counts them itself, and userspace decides as 1.x does.
#[test]
fn lines_influxdb_1x_decides_go_up() {
    let f = default_fixture();
    let cases: &[(&str, bool)] = &[
        // (line, valid in 1.x)
        ("combined,uri=/kv/k=v/0,id=2003,ip=1.2.3.4 count=1", false),
        ("combined,uri==v,id=2003,ip=1.2.3.4 count=1", true),
        ("combined,ip=1,id=2,ip=3 count=1", false),
        ("combined,ip=1 count=1u", false),
        ("combined,ip=1 count=1.", true),
        ("combined,ip=1 count=4,count=5", true),
        ("combined,ip=1 \0count=1", true),
        ("combined,ip=1 count=1 9223372036854775807", false),
        ("combined,ip=1 count=1 -9223372036854775807", false),
        ("combined,ip=1 count=1 9223372036854775806", true),
    ];
    for &(line, valid) in cases {
        f.holds(line.as_bytes()).unwrap();
        let u = userspace(&f.rules, line.as_bytes());
        let errors = u
            .other_drops
            .iter()
            .any(|(r, _)| *r == DropReason::ParseError);
        assert_eq!(!errors, valid, "{line:?}: {u:?}");
        if !(valid && line.ends_with("9223372036854775806")) {
            assert!(f.check(line.as_bytes()).unwrap().is_err(), "{line:?} kept");
        }
    }
    // Of a repeated summed field the last counts, as in Kapacitor.
    let u = userspace(&f.rules, b"combined,ip=1 count=4,count=5");
    assert_eq!(u.tables.values().next().map(|c| c.0.value()), Some(5.0));
}
