//! The kernel parser on the host: what it counts, and what it leaves to
//! userspace. Its agreement with the userspace parser on generated input is
//! tested in the daemon's crate, which has both.

extern crate std;
use std::boxed::Box;
use std::vec;
use std::vec::Vec;

use super::*;
use toptraffic_common::{RuleSpec, RULE_ENABLED, RULE_SUM};

/// `combined` grouped by (ip, id) summing `count`; `ips` grouped by ip,
/// counting lines, only where role=edge.
fn config() -> KernelConfig {
    let mut c = KernelConfig::empty();
    c.version = 1;
    c.n_measurements = 2;
    c.measurements[0] = Name::new(b"combined");
    c.measurement_rules[0] = 0b01;
    c.measurements[1] = Name::new(b"ips");
    c.measurement_rules[1] = 0b10;
    c.n_names = 3;
    c.names[0] = Name::new(b"ip");
    c.names[1] = Name::new(b"id");
    c.names[2] = Name::new(b"role");
    c.n_fields = 1;
    c.fields[0] = Name::new(b"count");
    c.n_rules = 2;
    let mut r = RuleSpec::empty();
    r.flags = RULE_ENABLED | RULE_SUM;
    r.field = 0;
    r.n_group = 2;
    r.group[0] = 0;
    r.group[1] = 1;
    c.rules[0] = r;
    let mut r = RuleSpec::empty();
    r.id = 1;
    r.flags = RULE_ENABLED;
    r.n_group = 1;
    r.group[0] = 0;
    r.n_filters = 1;
    r.filter_name[0] = 2;
    r.filter_value[0] = Name::new(b"edge");
    c.rules[1] = r;
    c
}

/// A counted (rule, key values, value).
type Counted = (u32, Vec<Vec<u8>>, i64);

/// What the three passes count, or the reason the datagram goes to userspace.
fn run(cfg: &KernelConfig, data: &[u8]) -> Result<(State, Vec<Counted>), u32> {
    let mut s = Box::new(Scratch::EMPTY);
    let first = counted(&mut s, cfg, data);
    // Again, with the shape the first run learned: the same.
    let again = counted(&mut s, cfg, data);
    assert_eq!(
        first
            .as_ref()
            .map(|(st, c)| (st.points, st.drops, sorted(c))),
        again
            .as_ref()
            .map(|(st, c)| (st.points, st.drops, sorted(c))),
        "by shape"
    );
    first
}

/// Items in an order of their own: lines pass 1 decides have theirs
/// before the others'.
fn sorted(c: &[Counted]) -> Vec<Counted> {
    let mut c = c.to_vec();
    c.sort();
    c
}

fn counted(s: &mut Scratch, cfg: &KernelConfig, data: &[u8]) -> Result<(State, Vec<Counted>), u32> {
    parse_lines(s, cfg, data)?;
    let mut out = Vec::new();
    for item in &s.items[..s.st.n_items as usize] {
        let mut key = GroupKey::zeroed();
        build_key(&s.buf, item, &mut key);
        let mut vals = Vec::new();
        let mut rest = key.bytes();
        while rest.len() >= 2 {
            let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
            vals.push(rest[2..2 + n].to_vec());
            rest = &rest[2 + n..];
        }
        out.push((item.rule, vals, item.value));
    }
    Ok((s.st, out))
}

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

#[test]
fn counts_the_seed_line() {
    let (st, out) = run(
        &config(),
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1",
    )
    .unwrap();
    assert_eq!(out, [(0, vec![v("10.0.0.1"), v("42")], 1)]);
    assert_eq!((st.lines, st.points), (1, 1));
}

#[test]
fn several_lines_and_rules_and_drop_reasons() {
    let d = b"combined,ip=a,id=1 count=3i\nips,ip=b,role=edge count=1 1700000000000000000\n# note\n\nips,ip=c,role=core count=1\nother f=1\ncombined,ip=d x=1\n";
    let (st, out) = run(&config(), d).unwrap();
    assert_eq!(out, [(0, vec![v("a"), v("1")], 3), (1, vec![v("b")], 1)]);
    assert_eq!(st.lines, 5);
    assert_eq!(st.points, 2);
    assert_eq!(st.drops, [1, 1, 1]);
}

#[test]
fn missing_group_tag_is_empty() {
    let (_, out) = run(&config(), b"combined,id=7 count=2").unwrap();
    assert_eq!(out, [(0, vec![v(""), v("7")], 2)]);
}

#[test]
fn leaves_to_userspace_what_it_does_not_take() {
    let cfg = config();
    let cases: &[(&[u8], u32)] = &[
        (br"combined,ip=a\ b count=1", counter::PASS_ESCAPE),
        (b"combined,ip=a count=\"x\"", counter::PASS_UNSUPPORTED),
        (b"combined,ip=a count=t", counter::PASS_UNSUPPORTED),
        (b"combined,ip=a count=1e3", counter::PASS_UNSUPPORTED),
        (b"combined,ip=a count=1.5", counter::PASS_FRACTION),
        (b"combined,ip=a count=1234567890123456", counter::PASS_LARGE_VALUE),
        (b"combined,ip=a count=2147483648", counter::PASS_LARGE_VALUE),
        (b"combined,ip=a count=-2147483648i", counter::PASS_LARGE_VALUE),
        (b"combined,ip=a count=2147483648.0", counter::PASS_LARGE_VALUE),
        (b" combined,ip=a count=1", counter::PASS_UNSUPPORTED),
        (b"combined,ip=a count=1\r\n", counter::PASS_UNSUPPORTED),
        (b"combined,ip=a  count=1", counter::PASS_UNSUPPORTED),
        (b"combined,ip=a count=1 ", counter::PASS_UNSUPPORTED),
        (b"combined,ip=a count=", counter::PASS_INVALID),
        (b"combined,ip count=1", counter::PASS_INVALID),
        (b"combined,ip= count=1", counter::PASS_INVALID),
        (b"combined count", counter::PASS_INVALID),
        (b"combined", counter::PASS_INVALID),
        (b"combined count=1.", counter::PASS_UNSUPPORTED),
        (b"combined count=-1u", counter::PASS_INVALID),
        (b"combined count=1u", counter::PASS_INVALID),
        // InfluxDB 1.x: an `=` inside a tag value is an error, at its start
        // it is part of the value; a tag key twice is an error.
        (b"combined,ip=a=b count=1", counter::PASS_INVALID),
        (b"combined,ip==b count=1", counter::PASS_UNSUPPORTED),
        (b"combined,ip=a,id=1,ip=b count=1", counter::PASS_UNSUPPORTED),
        (
            b"combined,a=1,b=1,c=1,d=1,e=1,f=1,g=1,h=1,ip=1 count=1",
            counter::PASS_UNSUPPORTED,
        ),
        (b"combined count=1,count=2", counter::PASS_UNSUPPORTED),
        (b"combined \0count=1", counter::PASS_UNSUPPORTED),
        (b"combined count=1 9223372036854775807", counter::PASS_UNSUPPORTED),
        (b"combined count=1 -9223372036854775807", counter::PASS_UNSUPPORTED),
        (b"combined count=1x", counter::PASS_INVALID),
        (b"combined count=1 12a", counter::PASS_INVALID),
        (
            b"combined,ip=012345678901234567890123456789012345678901,id=01234567890123456789 count=1",
            counter::PASS_KEY_TOO_LONG,
        ),
    ];
    for (d, want) in cases {
        assert_eq!(
            run(&cfg, d).err(),
            Some(*want),
            "{}",
            std::string::String::from_utf8_lossy(d)
        );
    }
    assert_eq!(
        run(&cfg, b"combined count=1 9223372036854775808").err(),
        Some(counter::PASS_UNSUPPORTED)
    );
    // InfluxDB's range: [i64::MIN + 2, i64::MAX - 1] (SafeCalcTime).
    assert!(run(&cfg, b"combined count=1 9223372036854775806").is_ok());
    assert!(run(&cfg, b"combined count=1 -9223372036854775806").is_ok());
    // A fraction in a field no rule sums is fine.
    assert!(run(&cfg, b"combined,ip=a count=1,load=0.5").is_ok());
    // So is 1.0 in the summed field.
    let (_, out) = run(&cfg, b"combined,ip=a count=1.00").unwrap();
    assert_eq!(out[0].2, 1);
}

#[test]
fn too_many_lines_go_to_userspace() {
    let mut d = Vec::new();
    for _ in 0..=MAX_LINES {
        d.extend_from_slice(b"x f=1\n");
    }
    assert_eq!(run(&config(), &d).err(), Some(counter::PASS_TOO_MANY_LINES));
}

#[test]
fn a_userspace_rule_measurement_sends_the_datagram_up() {
    let mut cfg = config();
    cfg.n_measurements = 3;
    cfg.measurements[2] = Name::new(&[b'm'; 40]);
    cfg.measurement_userspace[2] = 1;
    let mut line = std::vec![b'm'; 40];
    line.extend_from_slice(b" f=1");
    assert_eq!(run(&cfg, &line).err(), Some(counter::PASS_USERSPACE_RULE));
    // Unknown measurements are still dropped in the kernel.
    let (st, _) = run(&cfg, b"mmm f=1").unwrap();
    assert_eq!(st.drops[DROP_UNKNOWN], 1);
}

/// Found by the daemon's kernel_equivalence property tests: like InfluxDB's
/// scanLine, userspace carries a comment over a newline inside a quoted
/// string or after a backslash, swallowing the lines the kernel counted.
#[test]
fn comments_that_may_span_lines_go_to_userspace() {
    let cfg = config();
    let cases: &[(&[u8], u32)] = &[
        (
            b"#a a=\"x\ncombined,ip=a count=1",
            counter::PASS_UNSUPPORTED,
        ),
        (b"# x\\\ncombined,ip=a count=1", counter::PASS_ESCAPE),
    ];
    for (d, want) in cases {
        assert_eq!(run(&cfg, d).err(), Some(*want));
    }
    let (st, _) = run(&cfg, b"# top 10 a=1, b=2\ncombined,ip=a count=1").unwrap();
    assert_eq!(st.points, 1);
}

/// Found by the daemon's kernel_equivalence tests: a float of more digits
/// than f64 holds is out of range, a parse error in userspace.
#[test]
fn floats_past_f64s_range_go_to_userspace() {
    let cfg = config();
    let line = |digits: usize| {
        let mut d = b"combined,ip=a count=1,x=".to_vec();
        d.extend(core::iter::repeat_n(b'9', digits));
        d
    };
    assert_eq!(run(&cfg, &line(309)).err(), Some(counter::PASS_UNSUPPORTED));
    let (st, _) = run(&cfg, &line(308)).unwrap();
    assert_eq!(st.points, 1);
}

#[test]
fn a_lines_first_item_owns_it() {
    // Both rules take `combined`: the first that takes a line owns it.
    let mut cfg = config();
    cfg.measurement_rules[0] = 0b11;
    let d = b"combined,ip=a,id=1,role=edge count=1\ncombined,ip=b,role=core count=1\ncombined,ip=c,role=edge x=1\n";
    let mut s = Box::new(Scratch::EMPTY);
    parse_lines(&mut s, &cfg, d).unwrap();
    let items: Vec<(u32, u32)> = s.items[..s.st.n_items as usize]
        .iter()
        .map(|i| (i.rule, i.owner))
        .collect();
    // Line 3 lacks `count`: the second rule takes it, first.
    assert_eq!(items, [(0, 1), (1, 0), (0, 1), (1, 1)]);
    assert_eq!(s.st.points, 3);
}

#[test]
fn values_up_to_max_summed_are_summed_either_sign() {
    let (_, out) = run(&config(), b"combined,ip=a count=2147483647").unwrap();
    assert_eq!(out[0].2, MAX_SUMMED);
    let (_, out) = run(&config(), b"combined,ip=a count=-2147483647i").unwrap();
    assert_eq!(out[0].2, -MAX_SUMMED);
}

/// A scratch that learned the shape of `combined,uri=..,id=..,ip=..,role=..
/// count=..` lines.
fn primed(cfg: &KernelConfig) -> Box<Scratch> {
    let mut s = Box::new(Scratch::EMPTY);
    counted(
        &mut s,
        cfg,
        b"# a comment\ncombined,uri=/q,id=9,ip=10.9.9.9,role=edge count=5\n",
    )
    .unwrap();
    let learned: Vec<&Shape> = s.shapes.iter().filter(|x| x.version != 0).collect();
    assert_eq!(learned.len(), 1, "learned");
    assert_eq!((learned[0].version, learned[0].n_tags), (cfg.version, 4));
    s
}

#[test]
fn lines_of_a_learned_shape_are_parsed_by_it() {
    let cfg = config();
    let mut s = primed(&cfg);
    let d = b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1\ncombined,uri=/abc/def,id=1234567,ip=2001:db8::1,role=core count=1234567\ncombined,uri=\xc3\xa9,id=7,ip=x,role=edge count=0";
    let (st, out) = counted(&mut s, &cfg, d).unwrap();
    // No line was parsed a token at a time: none to learn from.
    assert_eq!(st.learn_pending, 0, "every line by its shape");
    assert_eq!(
        out,
        [
            (0, vec![v("10.0.0.1"), v("42")], 1),
            (0, vec![v("2001:db8::1"), v("1234567")], 1234567),
            (0, vec![v("x"), v("7")], 0),
        ]
    );
    assert_eq!((st.lines, st.points), (3, 3));
    assert_eq!(
        counted(&mut Box::new(Scratch::EMPTY), &cfg, d).unwrap().1,
        out
    );
}

/// Lines that differ from the learned shape anywhere: parsed a token at a
/// time, to what a scratch without a shape makes of them.
#[test]
fn lines_off_the_learned_shape_are_parsed_as_without_it() {
    let cfg = config();
    let lines: &[&[u8]] = &[
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=12345678",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1i",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1.0",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1.5",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=-1",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 1700000000000000000",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 999999999999999999",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 9223372036854775807",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 9223372036854775806",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 9223372036854775810",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 9223372036854776806",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 9223372136854775806",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 9999999999999999999",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 0000000000000000000",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 17000000000000000000",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 -1",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 1 ",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 1x",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 12345678\n",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1  1",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1,count=2",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1,x=2",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1\r",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1 ",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=x",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge  count=1",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role= count=1",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge,x=y count=1",
        b"combined,uri=/p,id=42,ip=10.0.0.1 count=1",
        b"combined,uri=/p,id=,ip=10.0.0.1,role=edge count=1",
        b"combined,uri=/p,id=4=2,ip=10.0.0.1,role=edge count=1",
        b"combined,uri==/p,id=42,ip=10.0.0.1,role=edge count=1",
        b"combined,uri=/p,id=42,ip=10.0.0.1\\ x,role=edge count=1",
        b"combined,uri=/p,id=42,ip=10.0.0.1\",role=edge count=1",
        b"combined,uri=/p,id=42,ip=10.0.\t1,role=edge count=1",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1\"",
        b"combined,uri=/p,id=42,ip=a-value-longer-than-the-thirty-two-bytes-a-scan-looks-at,role=edge count=1",
        b"combined,uri=/p,ip=10.0.0.1,id=42,role=edge count=1",
        b"combined,uri=/p,id=42,id=43,role=edge count=1",
        b"combinedx,uri=/p,id=42,ip=10.0.0.1,role=edge count=1",
        b"ips,uri=/p,id=42,ip=10.0.0.1,role=edge count=1",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge counts=1",
        b" combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1\n\n",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1\n# c\n",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge ",
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=ed",
    ];
    for line in lines {
        for d in [line.to_vec(), [*line, b"\n" as &[u8], lines[0]].concat()] {
            let by_shape = counted(&mut primed(&cfg), &cfg, &d)
                .map(|(st, c)| (st.points, st.drops, sorted(&c)));
            let without = counted(&mut Box::new(Scratch::EMPTY), &cfg, &d)
                .map(|(st, c)| (st.points, st.drops, sorted(&c)));
            assert_eq!(
                by_shape,
                without,
                "{}",
                std::string::String::from_utf8_lossy(&d)
            );
        }
    }
}

#[test]
fn a_shape_is_of_one_config_version() {
    let cfg = config();
    let mut s = primed(&cfg);
    let mut other = cfg;
    other.version = 2;
    let d = b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1";
    let (st, _) = counted(&mut s, &other, d).unwrap();
    assert_eq!(
        st.learn_pending, 1,
        "parsed a token at a time, learned again"
    );
    assert!(s.shapes.iter().any(|x| x.version == 2));
}

/// Pass 2's decisions that pass 1 makes for lines of the shape (one rule
/// without filters, or none) and those it leaves (a filter, two rules):
/// the same counts and drop reasons as without a shape.
#[test]
fn lines_of_a_shape_are_decided_as_pass_2_decides() {
    let mut two_rules = config();
    two_rules.n_rules = 3;
    two_rules.measurement_rules[0] = 0b101;
    let mut r = RuleSpec::empty();
    r.id = 2;
    r.flags = RULE_ENABLED;
    r.n_group = 1;
    r.group[0] = 1;
    two_rules.rules[2] = r;
    let mut disabled = config();
    disabled.rules[0].flags = 0;
    let lines: &[&[u8]] = &[
        b"combined,ip=a,id=1 count=3",
        b"combined,ip=a,id=1 x=3",
        b"combined,ip=a x=3",
        b"other,ip=a f=1",
        b"ips,ip=b,role=edge count=1",
        b"ips,ip=b,role=core count=1",
    ];
    for cfg in [config(), two_rules, disabled] {
        for line in lines {
            let d = [*line, b"\n", line, b"\n", line].concat();
            let mut s = Box::new(Scratch::EMPTY);
            let first = counted(&mut s, &cfg, &d).map(|(st, c)| (st.points, st.drops, sorted(&c)));
            let again = counted(&mut s, &cfg, &d).map(|(st, c)| (st.points, st.drops, sorted(&c)));
            assert_eq!(
                s.st.learn_pending,
                0,
                "{}",
                std::string::String::from_utf8_lossy(line)
            );
            assert_eq!(
                first,
                again,
                "{}",
                std::string::String::from_utf8_lossy(line)
            );
        }
    }
}

/// Datagrams of a few measurements, one line each (a proxy that sends a
/// line a measurement a request): each keeps its shape.
#[test]
fn a_shape_a_measurement_is_kept() {
    let cfg = config();
    let mut s = Box::new(Scratch::EMPTY);
    let datagrams: [&[u8]; 3] = [
        b"combined,uri=/p,id=42,ip=10.0.0.1,role=edge count=1",
        b"ips,ip=10.0.0.1,role=edge count=1",
        b"other,id=42 count=1",
    ];
    for round in 0..3 {
        for d in datagrams {
            let (st, _) = counted(&mut s, &cfg, d).unwrap();
            assert_eq!(st.learn_pending == 0, round > 0, "round {round}");
        }
    }
}

#[test]
fn lines_with_a_timestamp_take_the_shape_and_teach_it() {
    let cfg = config();
    let d = b"combined,ip=a,id=1 count=3 1700000000000000000\ncombined,ip=b,id=1 count=4 12345678\ncombined,ip=c,id=1 count=5 1";
    let mut s = Box::new(Scratch::EMPTY);
    let (st, first) = counted(&mut s, &cfg, d).unwrap();
    assert_eq!(st.learn_pending, 1, "learned from the first line");
    let (st, again) = counted(&mut s, &cfg, d).unwrap();
    assert_eq!(st.learn_pending, 0, "every line by its shape");
    assert_eq!((sorted(&first), st.points), (sorted(&again), 3));
}
