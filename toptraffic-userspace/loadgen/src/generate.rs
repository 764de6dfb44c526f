//! Traffic generation: datagrams of line protocol with the shape of ingress
//! traffic, and the exact truth of what they hold.

use std::collections::HashMap;

/// The traffic to generate.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Measurement of every valid line (see also `all_measurements`).
    pub measurement: String,
    /// Distinct (ip, id) pairs.
    pub keys: usize,
    /// Distinct ips and ids the pairs are drawn from.
    pub ips: usize,
    pub ids: usize,
    /// Lines per datagram, drawn uniformly from this range.
    pub lines_per_datagram: (usize, usize),
    /// Malformed lines per thousand lines.
    pub malformed_per_mille: u32,
    /// 1.0 is uniform over keys; larger values favour low key indices
    /// (a few heavy clients, a long tail).
    pub skew: f64,
    /// Lines per thousand whose uri carries an escaped space (valid line
    /// protocol that the kernel parser leaves to userspace).
    pub escaped_per_mille: u32,
    /// Keys per thousand with a 70-byte store id (too long for a kernel key).
    pub long_ids_per_mille: u32,
    /// Lines take the measurements `combined`, `ips` and `stores` in turn
    /// (the default rules'), so that every default rule holds the keys. The
    /// truth counts only lines of `measurement`.
    pub all_measurements: bool,
    /// Key i gets ip i and store id i (needs keys <= ips and keys <= ids):
    /// the per-ip and per-store rules then hold as many keys as the
    /// combined one.
    pub distinct_ids: bool,
    pub seed: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            measurement: "combined".into(),
            keys: 50_000,
            ips: 50_000,
            ids: 25_000,
            lines_per_datagram: (1, 1),
            malformed_per_mille: 0,
            skew: 1.0,
            escaped_per_mille: 0,
            long_ids_per_mille: 0,
            all_measurements: false,
            distinct_ids: false,
            seed: 1,
        }
    }
}

impl Shape {
    /// The seed report's traffic: about 94k active (ip, id) pairs a minute
    /// over 50k ips and 25k store ids, a few heavy clients and a long tail.
    pub fn seed_like() -> Shape {
        Shape {
            keys: 94_000,
            ips: 50_000,
            ids: 25_000,
            skew: 2.0,
            ..Shape::default()
        }
    }
}

/// xorshift64*: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }
}

/// Lines sent per (ip, id).
pub type Truth = HashMap<(String, String), u64>;

/// Datagrams generated once and sent in turn, so that a sender at a high
/// rate spends its time sending rather than formatting. The truth stays
/// exact: each datagram keeps the keys of its lines.
#[derive(Debug, Clone, Default)]
struct Pool {
    data: Vec<u8>,
    /// End of datagram i in `data`.
    ends: Vec<usize>,
    /// Keys of the truth-counted lines; datagram i's end at `key_ends[i]`.
    keys: Vec<u32>,
    key_ends: Vec<usize>,
    valid: Vec<u32>,
    malformed: Vec<u32>,
    next: usize,
}

/// Produces datagrams of the shape and keeps the truth.
pub struct Generator {
    shape: Shape,
    rng: Rng,
    keys: Vec<(String, String)>,
    /// Valid lines of the truth's measurement sent per key index.
    pub sent: Vec<u64>,
    pub valid_lines: u64,
    pub malformed_lines: u64,
    pub datagrams: u64,
    /// Keys replaced so far by [`Generator::churn_to`].
    churned: u64,
    /// Replaced keys and what they were sent.
    retired: Vec<((String, String), u64)>,
    /// Lines written, to take the measurements in turn.
    line_no: u64,
    pool: Option<Pool>,
    /// While building a pool: the keys of the lines written.
    record: Option<Vec<u32>>,
}

fn ip_of(i: usize) -> String {
    // 10.0.0.0/8 and 172.16.0.0/12 and 192.168.0.0/16 would do; 10/8 is plenty.
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn id_of(i: usize) -> String {
    (100_000_000 + i * 7_919 % 900_000_000).to_string()
}

/// The default rules' measurements, for `Shape::all_measurements`.
const MEASUREMENTS: [&str; 3] = ["combined", "ips", "stores"];

impl Generator {
    pub fn new(shape: Shape) -> Generator {
        let mut rng = Rng::new(shape.seed);
        let pairs = shape.ips.saturating_mul(shape.ids);
        assert!(shape.keys <= pairs, "keys cannot exceed ips x ids");
        assert!(shape.ips <= 1 << 24, "ips are drawn from 10.0.0.0/8");
        assert!(
            !shape.distinct_ids || (shape.keys <= shape.ips && shape.keys <= shape.ids),
            "distinct ids need keys <= ips and keys <= ids"
        );
        let mut seen = std::collections::HashSet::with_capacity(shape.keys);
        let mut keys = Vec::with_capacity(shape.keys);
        // Every ip is used once before any repeats, so that `ips` distinct
        // clients appear when keys >= ips; ids are drawn skewed.
        let mut k = 0usize;
        while keys.len() < shape.keys {
            let ip = k % shape.ips;
            let id = if shape.distinct_ids {
                k
            } else {
                ((rng.unit().powf(shape.skew)) * shape.ids as f64) as usize % shape.ids
            };
            k += 1;
            if seen.insert((ip, id)) {
                let id = if rng.below(1000) < shape.long_ids_per_mille as usize {
                    format!("{:0>70}", id_of(id))
                } else {
                    id_of(id)
                };
                keys.push((ip_of(ip), id));
            }
        }
        let n = keys.len();
        Generator {
            shape,
            rng,
            keys,
            sent: vec![0; n],
            valid_lines: 0,
            malformed_lines: 0,
            datagrams: 0,
            churned: 0,
            retired: Vec::new(),
            line_no: 0,
            pool: None,
            record: None,
        }
    }

    /// A generator of the same keys drawing from another random stream:
    /// one per sender thread, deterministic for (seed, stream).
    pub fn fork(&self, stream: u64) -> Generator {
        Generator {
            shape: self.shape.clone(),
            rng: Rng::new(self.shape.seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)),
            keys: self.keys.clone(),
            sent: vec![0; self.keys.len()],
            valid_lines: 0,
            malformed_lines: 0,
            datagrams: 0,
            churned: self.churned,
            retired: Vec::new(),
            line_no: 0,
            pool: None,
            record: None,
        }
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn keys(&self) -> &[(String, String)] {
        &self.keys
    }

    /// Keys replaced so far.
    pub fn churned(&self) -> u64 {
        self.churned
    }

    /// The `j`-th replacement key: a fresh ip (never used before in this
    /// run) and an id drawn from `j` alone, so that every fork derives the
    /// same one.
    fn fresh_key(&self, j: u64) -> (String, String) {
        let s = &self.shape;
        let ip = (s.ips as u64 + j) as usize;
        let mut r = Rng::new(s.seed ^ (j + 1).wrapping_mul(0xA24B_AED4_963E_E407));
        let id = if s.distinct_ids {
            s.ids + j as usize
        } else {
            (r.unit().powf(s.skew) * s.ids as f64) as usize % s.ids
        };
        let id = if r.below(1000) < s.long_ids_per_mille as usize {
            format!("{:0>70}", id_of(id))
        } else {
            id_of(id)
        };
        (ip_of(ip), id)
    }

    /// Replaces keys, oldest slot first, until `total` have been replaced
    /// since the start: a replaced key gets no more lines (and leaves the
    /// daemon's window a period later), a fresh key takes its slot.
    pub fn churn_to(&mut self, total: u64) {
        assert!(self.pool.is_none(), "a pool repeats its keys: no churn");
        while self.churned < total {
            let j = self.churned;
            let slot = (j % self.keys.len() as u64) as usize;
            let fresh = self.fresh_key(j);
            let old = std::mem::replace(&mut self.keys[slot], fresh);
            let n = std::mem::take(&mut self.sent[slot]);
            if n > 0 {
                self.retired.push((old, n));
            }
            self.churned += 1;
        }
    }

    fn pick_key(&mut self) -> usize {
        let u = self.rng.unit().powf(self.shape.skew);
        ((u * self.keys.len() as f64) as usize).min(self.keys.len() - 1)
    }

    /// Appends one valid line for key `k` to `buf`.
    pub fn line_for(&mut self, k: usize, buf: &mut Vec<u8>) {
        use std::io::Write;
        let (ip, id) = &self.keys[k];
        let uri = self.rng.below(500);
        let role = ["ingress", "edge", "api"][self.rng.below(3)];
        let sep = if self.rng.below(1000) < self.shape.escaped_per_mille as usize {
            "\\ "
        } else {
            "/"
        };
        let measurement = if self.shape.all_measurements {
            MEASUREMENTS[(self.line_no % 3) as usize]
        } else {
            &self.shape.measurement
        };
        let _ = write!(
            buf,
            "{measurement},uri=/product{sep}{uri},id={id},ip={ip},role={role} count=1"
        );
        if measurement == self.shape.measurement {
            self.sent[k] += 1;
            if let Some(r) = &mut self.record {
                r.push(k as u32);
            }
        }
        self.line_no += 1;
        self.valid_lines += 1;
    }

    fn malformed(&mut self, buf: &mut Vec<u8>) {
        const BAD: [&str; 5] = [
            "combined,uri=/p,id=1,ip=10.0.0.1 count=",
            "combined,uri=/p,id,ip=10.0.0.1 count=1",
            "combined,ip=10.0.0.1 count=1 notatime",
            "combined,ip=10.0.0.1 count=12i3",
            ",id=1 count=1",
        ];
        buf.extend_from_slice(BAD[self.rng.below(BAD.len())].as_bytes());
        self.malformed_lines += 1;
    }

    /// The next `n` datagrams, each its own buffer (benchmarks' pools).
    pub fn datagrams(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                let mut b = Vec::new();
                self.datagram(&mut b);
                b
            })
            .collect()
    }

    /// Fills `buf` with the next datagram.
    pub fn datagram(&mut self, buf: &mut Vec<u8>) {
        buf.clear();
        if let Some(p) = &mut self.pool {
            let i = p.next;
            p.next = (i + 1) % p.ends.len();
            let start = if i == 0 { 0 } else { p.ends[i - 1] };
            buf.extend_from_slice(&p.data[start..p.ends[i]]);
            let kstart = if i == 0 { 0 } else { p.key_ends[i - 1] };
            for &k in &p.keys[kstart..p.key_ends[i]] {
                self.sent[k as usize] += 1;
            }
            self.valid_lines += p.valid[i] as u64;
            self.malformed_lines += p.malformed[i] as u64;
            self.datagrams += 1;
            return;
        }
        let (lo, hi) = self.shape.lines_per_datagram;
        let lines = lo + self.rng.below(hi - lo + 1);
        for i in 0..lines {
            if i > 0 {
                buf.push(b'\n');
            }
            if self.rng.below(1000) < self.shape.malformed_per_mille as usize {
                self.malformed(buf);
            } else {
                let k = self.pick_key();
                self.line_for(k, buf);
            }
        }
        self.datagrams += 1;
    }

    /// From now on, sends `datagrams` datagrams generated here, in turn.
    /// What was generated is not counted as sent; what is sent is.
    pub fn use_pool(&mut self, datagrams: usize) {
        assert!(datagrams > 0 && self.pool.is_none());
        let (sent, valid, malformed, dgrams) = (
            self.sent.clone(),
            self.valid_lines,
            self.malformed_lines,
            self.datagrams,
        );
        let mut p = Pool::default();
        let mut buf = Vec::with_capacity(4096);
        self.record = Some(Vec::new());
        for _ in 0..datagrams {
            let (v0, m0) = (self.valid_lines, self.malformed_lines);
            self.datagram(&mut buf);
            p.data.extend_from_slice(&buf);
            p.ends.push(p.data.len());
            p.keys.append(self.record.as_mut().expect("set above"));
            p.key_ends.push(p.keys.len());
            p.valid.push((self.valid_lines - v0) as u32);
            p.malformed.push((self.malformed_lines - m0) as u32);
        }
        self.record = None;
        self.sent = sent;
        self.valid_lines = valid;
        self.malformed_lines = malformed;
        self.datagrams = dgrams;
        self.pool = Some(p);
    }

    /// Lines sent per (ip, id), for keys that got any (replaced keys
    /// included).
    pub fn truth(&self) -> Truth {
        let mut t: Truth = HashMap::new();
        let current = self.keys.iter().zip(&self.sent).map(|(k, &n)| (k, n));
        for (k, n) in self.retired.iter().map(|(k, n)| (k, *n)).chain(current) {
            if n > 0 {
                *t.entry(k.clone()).or_default() += n;
            }
        }
        t
    }
}

/// The truths of several generators (sender threads) added up.
pub fn merge_truth<'a>(gens: impl IntoIterator<Item = &'a Generator>) -> Truth {
    let mut t: Truth = HashMap::new();
    for g in gens {
        for (k, n) in g.truth() {
            *t.entry(k).or_default() += n;
        }
    }
    t
}

#[cfg(test)]
impl Shape {
    /// A few hundred keys: enough for the tests' draws to mean something.
    pub(crate) fn small() -> Shape {
        Shape {
            keys: 500,
            ips: 300,
            ids: 200,
            lines_per_datagram: (1, 5),
            skew: 1.5,
            ..Shape::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toptraffic::lineproto::Lines;

    #[test]
    fn truth_matches_what_the_datagrams_say() {
        let mut g = Generator::new(Shape {
            keys: 300,
            ips: 100,
            ids: 50,
            lines_per_datagram: (1, 8),
            malformed_per_mille: 50,
            skew: 2.0,
            escaped_per_mille: 100,
            long_ids_per_mille: 100,
            ..Shape::default()
        });
        let mut parsed: Truth = HashMap::new();
        let (mut ok, mut bad) = (0u64, 0u64);
        let mut buf = Vec::new();
        for _ in 0..2000 {
            g.datagram(&mut buf);
            for l in Lines::new(&buf) {
                match l {
                    Ok(l) => {
                        ok += 1;
                        let ip = l.tag(b"ip").unwrap().to_string_lossy();
                        let id = l.tag(b"id").unwrap().to_string_lossy();
                        *parsed.entry((ip, id)).or_default() += 1;
                    }
                    Err(_) => bad += 1,
                }
            }
        }
        assert_eq!(ok, g.valid_lines);
        assert_eq!(bad, g.malformed_lines);
        assert!(bad > 0);
        assert_eq!(parsed, g.truth());
    }

    #[test]
    fn keys_are_distinct_and_cover_every_ip() {
        let g = Generator::new(Shape {
            keys: 1000,
            ips: 400,
            ids: 300,
            ..Shape::default()
        });
        let set: std::collections::HashSet<_> = g.keys().iter().collect();
        assert_eq!(set.len(), 1000);
        let ips: std::collections::HashSet<_> = g.keys().iter().map(|k| &k.0).collect();
        assert_eq!(ips.len(), 400);
    }

    fn parsed_truth(datagrams: &[Vec<u8>], measurement: &str) -> Truth {
        let mut t: Truth = HashMap::new();
        for d in datagrams {
            for l in Lines::new(d) {
                let l = l.unwrap();
                if l.measurement.eq_bytes(measurement.as_bytes()) {
                    let ip = l.tag(b"ip").unwrap().to_string_lossy();
                    let id = l.tag(b"id").unwrap().to_string_lossy();
                    *t.entry((ip, id)).or_default() += 1;
                }
            }
        }
        t
    }

    #[test]
    fn forks_share_the_keys_and_differ_in_their_draws_deterministically() {
        let base = Generator::new(Shape::small());
        let (mut a, mut b, mut a2) = (base.fork(1), base.fork(2), base.fork(1));
        assert_eq!(a.keys(), base.keys());
        let (mut x, mut y, mut z) = (Vec::new(), Vec::new(), Vec::new());
        a.datagram(&mut x);
        b.datagram(&mut y);
        a2.datagram(&mut z);
        assert_eq!(x, z);
        assert_ne!(x, y);
    }

    #[test]
    fn a_pool_sent_past_its_end_keeps_the_truth_exact() {
        let mut g = Generator::new(Shape::small());
        g.use_pool(37);
        assert_eq!((g.valid_lines, g.datagrams), (0, 0));
        assert!(g.truth().is_empty());
        let mut sent = Vec::new();
        for _ in 0..100 {
            let mut buf = Vec::new();
            g.datagram(&mut buf);
            sent.push(buf);
        }
        assert_eq!(sent[0], sent[37]);
        assert_eq!(g.datagrams, 100);
        let lines: usize = sent.iter().map(|d| Lines::new(d).count()).sum();
        assert_eq!(g.valid_lines, lines as u64);
        assert_eq!(g.truth(), parsed_truth(&sent, "combined"));
    }

    #[test]
    fn churn_replaces_keys_the_same_way_in_every_fork_and_keeps_their_truth() {
        let mut a = Generator::new(Shape::small());
        let mut b = a.fork(1);
        let mut sent = Vec::new();
        for round in 1..=5u64 {
            a.churn_to(round * 120);
            b.churn_to(round * 120);
            for _ in 0..200 {
                let mut buf = Vec::new();
                a.datagram(&mut buf);
                sent.push(buf);
            }
        }
        assert_eq!(a.churned(), 600);
        assert_eq!(a.keys(), b.keys());
        let set: std::collections::HashSet<_> = a.keys().iter().collect();
        assert_eq!(set.len(), 500, "keys stay distinct");
        // Slot 0 was replaced twice (600 replacements over 500 slots).
        assert!(!Generator::new(Shape::small()).keys().contains(&a.keys()[0]));
        assert_eq!(a.truth(), parsed_truth(&sent, "combined"));
        assert!(a.truth().len() > 500, "retired keys stay in the truth");
    }

    #[test]
    fn all_measurements_with_distinct_ids_fill_every_default_rule() {
        let mut g = Generator::new(Shape {
            keys: 300,
            ips: 300,
            ids: 300,
            all_measurements: true,
            distinct_ids: true,
            ..Shape::default()
        });
        let ids: std::collections::HashSet<_> = g.keys().iter().map(|k| &k.1).collect();
        assert_eq!(ids.len(), 300);
        let mut sent = Vec::new();
        for _ in 0..3000 {
            let mut buf = Vec::new();
            g.datagram(&mut buf);
            sent.push(buf);
        }
        for m in ["combined", "ips", "stores"] {
            assert_eq!(parsed_truth(&sent, m).values().sum::<u64>(), 1000, "{m}");
        }
        assert_eq!(g.valid_lines, 3000);
        assert_eq!(g.truth(), parsed_truth(&sent, "combined"));
    }
}
