//! Load generator: line protocol over UDP with the shape of ingress traffic
//! (many client ips, fewer store ids, a skewed distribution, uri and role
//! tags), one or several lines per datagram, malformed lines mixed in on
//! request, keys that come and go (churn), and the exact truth of what was
//! sent.
//!
//! Deterministic for a seed, so a test can regenerate what it expects; with
//! several sender threads, each draws from its own stream of the same key
//! set and the truths add up.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

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

/// What a run sent.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub datagrams: u64,
    pub valid_lines: u64,
    pub malformed_lines: u64,
    pub elapsed: Duration,
}

impl Sent {
    pub fn lines(&self) -> u64 {
        self.valid_lines + self.malformed_lines
    }
}

/// Sends datagrams with sendmmsg in batches of up to 64, from one or more
/// sockets (source ports) in turn: SO_REUSEPORT hashes each flow to one
/// receive socket, so several flows spread over the receiver's threads.
pub struct Sender {
    socks: Vec<UdpSocket>,
    next: std::cell::Cell<usize>,
}

/// Datagrams per sendmmsg call.
const BATCH: usize = 64;

impl Sender {
    pub fn connect(to: SocketAddr) -> io::Result<Sender> {
        Sender::connect_flows(to, 1)
    }

    /// A sender with `flows` sockets, each bound to its own port.
    pub fn connect_flows(to: SocketAddr, flows: usize) -> io::Result<Sender> {
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid")
        } else {
            "[::]:0".parse().expect("valid")
        };
        let socks = (0..flows.max(1))
            .map(|_| {
                let sock = UdpSocket::bind(bind)?;
                sock.connect(to)?;
                Ok(sock)
            })
            .collect::<io::Result<_>>()?;
        Ok(Sender {
            socks,
            next: std::cell::Cell::new(0),
        })
    }

    /// Sends every datagram; returns how many were sent.
    pub fn send_batch(&self, datagrams: &[Vec<u8>]) -> io::Result<usize> {
        let i = self.next.get();
        self.next.set((i + 1) % self.socks.len());
        let fd = self.socks[i].as_raw_fd();
        let mut sent = 0;
        for chunk in datagrams.chunks(BATCH) {
            let mut iov: Vec<libc::iovec> = chunk
                .iter()
                .map(|d| libc::iovec {
                    iov_base: d.as_ptr() as *mut _,
                    iov_len: d.len(),
                })
                .collect();
            let mut hdrs: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .map(|v| {
                    // SAFETY: mmsghdr is plain data; zero is its empty value.
                    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    h.msg_hdr.msg_iov = v;
                    h.msg_hdr.msg_iovlen = 1;
                    h
                })
                .collect();
            let mut off = 0;
            while off < hdrs.len() {
                // SAFETY: headers point at iovecs pointing into `chunk`, all
                // alive for the call.
                let n = unsafe {
                    libc::sendmmsg(
                        fd,
                        hdrs[off..].as_mut_ptr(),
                        (hdrs.len() - off) as libc::c_uint,
                        0,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    // The local send queue is full: let it drain.
                    if matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN)) {
                        std::thread::sleep(Duration::from_micros(50));
                        continue;
                    }
                    return Err(e);
                }
                off += n as usize;
            }
            sent += chunk.len();
        }
        Ok(sent)
    }
}

/// One sender's part of a run.
struct Quota {
    lines: u64,
    /// Lines per second; 0: flat out.
    rate: f64,
    max_time: Duration,
    /// Keys replaced per second (0: none), counted from `start`.
    churn_per_s: f64,
}

/// Sends `gen`'s datagrams until the quota's lines are sent or its time is
/// up, pacing to its rate; `after_batch` runs after each sendmmsg batch.
fn send_loop(
    gen: &mut Generator,
    sender: &Sender,
    q: &Quota,
    start: Instant,
    stop: &AtomicBool,
    mut after_batch: impl FnMut(&Generator),
) -> io::Result<()> {
    let mut batch: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(2048)).collect();
    let first = gen.valid_lines;
    while gen.valid_lines - first < q.lines && start.elapsed() < q.max_time {
        if stop.load(Relaxed) {
            break;
        }
        if q.churn_per_s > 0.0 {
            gen.churn_to((start.elapsed().as_secs_f64() * q.churn_per_s) as u64);
        }
        let mut n = 0;
        while n < BATCH && gen.valid_lines - first < q.lines {
            gen.datagram(&mut batch[n]);
            n += 1;
        }
        sender.send_batch(&batch[..n])?;
        if q.rate > 0.0 {
            // Pace: be no further ahead than the rate allows.
            let due = Duration::from_secs_f64((gen.valid_lines - first) as f64 / q.rate);
            let el = start.elapsed();
            if due > el {
                std::thread::sleep(due - el);
            }
        }
        after_batch(gen);
    }
    Ok(())
}

/// Sends `lines` valid lines (plus malformed ones, per the shape) at up to
/// `rate` lines a second (0: flat out), stopping at `max_time` whatever was
/// sent. `progress` is called about once a second.
pub fn run(
    gen: &mut Generator,
    to: SocketAddr,
    lines: u64,
    rate: u64,
    max_time: Duration,
    mut progress: impl FnMut(&Generator, Duration),
) -> io::Result<Sent> {
    let sender = Sender::connect(to)?;
    let start = Instant::now();
    let (v0, m0, d0) = (gen.valid_lines, gen.malformed_lines, gen.datagrams);
    let mut last_progress = start;
    let q = Quota {
        lines,
        rate: rate as f64,
        max_time,
        churn_per_s: 0.0,
    };
    send_loop(gen, &sender, &q, start, &AtomicBool::new(false), |g| {
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(g, start.elapsed());
        }
    })?;
    Ok(Sent {
        datagrams: gen.datagrams - d0,
        valid_lines: gen.valid_lines - v0,
        malformed_lines: gen.malformed_lines - m0,
        elapsed: start.elapsed(),
    })
}

/// How [`run_parallel`] sends.
#[derive(Debug, Clone)]
pub struct Plan {
    pub to: SocketAddr,
    /// Valid lines in all, split between the senders.
    pub lines: u64,
    /// Lines per second in all; 0: flat out.
    pub rate: u64,
    pub max_time: Duration,
    /// Sockets (source ports) per sender thread, used in turn.
    pub flows: usize,
    /// Share of the keys replaced per minute (0.1: a tenth), see
    /// [`Generator::churn_to`].
    pub churn_per_minute: f64,
}

/// The senders' generators: `base` and `n - 1` forks of it.
pub fn senders(base: Generator, n: usize) -> Vec<Generator> {
    let forks: Vec<Generator> = (1..n.max(1) as u64).map(|i| base.fork(i)).collect();
    std::iter::once(base).chain(forks).collect()
}

/// Runs one sender thread per generator (see [`senders`]), sharing the
/// plan's lines and rate, and calls `progress` with what all have sent
/// about once a second. Returns what was sent and the generators, whose
/// truths add up to what was sent ([`merge_truth`]).
pub fn run_parallel(
    gens: Vec<Generator>,
    plan: &Plan,
    mut progress: impl FnMut(&Sent),
) -> io::Result<(Sent, Vec<Generator>)> {
    let n = gens.len().max(1) as u64;
    let start = Instant::now();
    let stop = AtomicBool::new(false);
    // valid, malformed, datagrams: added to after each batch.
    let totals: [AtomicU64; 3] = Default::default();
    let keys = gens.first().map_or(0, |g| g.keys().len());
    let now = |totals: &[AtomicU64; 3]| Sent {
        valid_lines: totals[0].load(Relaxed),
        malformed_lines: totals[1].load(Relaxed),
        datagrams: totals[2].load(Relaxed),
        elapsed: start.elapsed(),
    };
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = gens
            .into_iter()
            .enumerate()
            .map(|(i, mut gen)| {
                let q = Quota {
                    lines: plan.lines / n + if i == 0 { plan.lines % n } else { 0 },
                    rate: plan.rate as f64 / n as f64,
                    max_time: plan.max_time,
                    churn_per_s: plan.churn_per_minute * keys as f64 / 60.0,
                };
                let (stop, totals) = (&stop, &totals);
                s.spawn(move || {
                    let r = Sender::connect_flows(plan.to, plan.flows).and_then(|sender| {
                        let mut last = (gen.valid_lines, gen.malformed_lines, gen.datagrams);
                        send_loop(&mut gen, &sender, &q, start, stop, |g| {
                            let cur = (g.valid_lines, g.malformed_lines, g.datagrams);
                            totals[0].fetch_add(cur.0 - last.0, Relaxed);
                            totals[1].fetch_add(cur.1 - last.1, Relaxed);
                            totals[2].fetch_add(cur.2 - last.2, Relaxed);
                            last = cur;
                        })
                    });
                    if r.is_err() {
                        stop.store(true, Relaxed);
                    }
                    (gen, r)
                })
            })
            .collect();
        let mut last_progress = Instant::now();
        // Bounded: the senders stop at max_time; the grace covers a send
        // blocked at the very end.
        while !handles.iter().all(|h| h.is_finished())
            && start.elapsed() < plan.max_time + Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
            if last_progress.elapsed() >= Duration::from_secs(1) {
                last_progress = Instant::now();
                progress(&now(&totals));
            }
        }
        stop.store(true, Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().expect("a sender thread panicked"))
            .collect::<Vec<_>>()
    });
    let mut gens = Vec::with_capacity(results.len());
    for (g, r) in results {
        r?;
        gens.push(g);
    }
    Ok((now(&totals), gens))
}

/// A blocking HTTP/1.1 GET on loopback: status and body. Enough for a tool
/// and tests to read the daemon's API without an async runtime.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// GETs a JSON document from the daemon.
pub fn get_json(addr: SocketAddr, path: &str) -> io::Result<serde_json::Value> {
    let (status, body) = http_get(addr, path)?;
    if status != 200 {
        return Err(io::Error::other(format!(
            "GET {path}: HTTP {status}: {body}"
        )));
    }
    serde_json::from_str(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Lines the daemon has accounted for so far: counted by either path or
/// dropped for a per-line reason.
pub fn lines_accounted(stats: &serde_json::Value) -> u64 {
    let n = |k: &str| stats[k].as_u64().unwrap_or(0);
    let dropped: u64 = stats["dropped"]
        .as_object()
        .map(|d| {
            d.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "oversize" | "receive_queue"))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0);
    n("points_kernel") + n("points_userspace") + dropped
}

/// How the daemon's window compares with the truth.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub keys_sent: usize,
    pub keys_reported: usize,
    /// Keys whose value differs from the lines sent (or that are missing).
    pub wrong: usize,
    /// Keys reported that were never sent.
    pub extra: usize,
    pub first_wrong: Option<String>,
}

impl Verdict {
    pub fn exact(&self) -> bool {
        self.wrong == 0 && self.extra == 0 && self.keys_sent == self.keys_reported
    }
}

/// Compares a `/api/v1/top` answer (keyed by ip and id) with the truth.
pub fn compare(top: &serde_json::Value, truth: &Truth) -> Verdict {
    let mut v = Verdict {
        keys_sent: truth.len(),
        keys_reported: top["keys"].as_u64().unwrap_or(0) as usize,
        ..Verdict::default()
    };
    let mut seen = 0usize;
    for row in top["top"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let ip = row["tags"]["ip"].as_str().unwrap_or("").to_string();
        let id = row["tags"]["id"].as_str().unwrap_or("").to_string();
        let got = row["value"].as_f64().unwrap_or(f64::NAN);
        match truth.get(&(ip.clone(), id.clone())) {
            Some(&want) => {
                seen += 1;
                if got != want as f64 {
                    v.wrong += 1;
                    v.first_wrong
                        .get_or_insert_with(|| format!("ip={ip} id={id}: got {got}, sent {want}"));
                }
            }
            None => v.extra += 1,
        }
    }
    v.wrong += truth.len().saturating_sub(seen);
    if v.first_wrong.is_none() && truth.len() > seen {
        v.first_wrong = Some(format!("{} keys sent are missing", truth.len() - seen));
    }
    v
}

/// What the daemon made of the lines between two `/api/v1/stats` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub points_kernel: u64,
    pub points_userspace: u64,
    /// Lines counted in the kernel but evicted from its map before the
    /// drain: in the points, yet not in the window.
    pub evicted: u64,
    /// Lines dropped for a per-line reason (parse error, unknown
    /// measurement, key table full, ...), evictions aside.
    pub line_drops: u64,
    /// Datagrams the socket's queue dropped (the daemon updates this at each
    /// rotation on the kernel path) or that were too long.
    pub datagram_drops: u64,
}

impl Tally {
    /// The difference `now - base` of two stats documents.
    pub fn between(base: &serde_json::Value, now: &serde_json::Value) -> Tally {
        let d = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
        let delta = |k: &str| d(now, k).saturating_sub(d(base, k));
        let drop = |r: &str| {
            now["dropped"][r]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(base["dropped"][r].as_u64().unwrap_or(0))
        };
        let all_drops = |v: &serde_json::Value| -> u64 {
            v["dropped"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| {
                            !matches!(k.as_str(), "oversize" | "receive_queue" | "evicted")
                        })
                        .filter_map(|(_, v)| v.as_u64())
                        .sum()
                })
                .unwrap_or(0)
        };
        Tally {
            points_kernel: delta("points_kernel"),
            points_userspace: delta("points_userspace"),
            evicted: drop("evicted"),
            line_drops: all_drops(now).saturating_sub(all_drops(base)),
            datagram_drops: drop("receive_queue") + drop("oversize"),
        }
    }

    /// Lines that made it into the window.
    pub fn counted(&self) -> u64 {
        (self.points_kernel + self.points_userspace).saturating_sub(self.evicted)
    }

    /// Lines of `sent` not accounted for: neither counted nor dropped for
    /// a per-line reason (lost, or still on their way).
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.counted() + self.line_drops)
    }
}

/// What `toptraffic loadgen` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub shape: Shape,
    pub to: SocketAddr,
    pub lines: u64,
    pub rate: u64,
    pub max_time: Duration,
    /// Sender threads.
    pub senders: usize,
    /// Source ports per sender.
    pub flows: usize,
    /// Datagrams generated ahead per sender and sent in turn (0: each one
    /// generated as it is sent).
    pub pool: usize,
    pub churn_per_minute: f64,
    /// Read the daemon's stats here for the progress line and the report.
    pub stats_http: Option<SocketAddr>,
    pub verify_http: Option<SocketAddr>,
    pub rule: String,
}

/// `toptraffic loadgen`: sends, reports, and verifies when asked. Ok(false)
/// when the verification found a difference.
pub fn cli(o: Options) -> anyhow::Result<bool> {
    use anyhow::Context;
    anyhow::ensure!(
        o.pool == 0 || o.churn_per_minute == 0.0,
        "--pool repeats the same datagrams: it cannot churn keys"
    );
    let stats_http = o.stats_http.or(o.verify_http);
    let baseline = match stats_http {
        Some(http) => Some(
            get_json(http, "/api/v1/stats")
                .with_context(|| format!("reading the daemon's stats at {http}"))?,
        ),
        None => None,
    };
    let mut gens = senders(Generator::new(o.shape.clone()), o.senders);
    if o.pool > 0 {
        for g in &mut gens {
            g.use_pool(o.pool);
        }
    }
    eprintln!(
        "sending {} lines over {} keys to {} ({} lines/datagram, {} malformed per mille, {}, {} sender(s) x {} flow(s){})",
        o.lines,
        gens[0].keys().len(),
        o.to,
        if o.shape.lines_per_datagram.0 == o.shape.lines_per_datagram.1 {
            o.shape.lines_per_datagram.0.to_string()
        } else {
            format!(
                "{}-{}",
                o.shape.lines_per_datagram.0, o.shape.lines_per_datagram.1
            )
        },
        o.shape.malformed_per_mille,
        if o.rate == 0 {
            "flat out".to_string()
        } else {
            format!("{} lines/s", o.rate)
        },
        o.senders,
        o.flows,
        if o.churn_per_minute > 0.0 {
            format!(", {:.1}% of the keys replaced a minute", o.churn_per_minute * 100.0)
        } else {
            String::new()
        }
    );
    let plan = Plan {
        to: o.to,
        lines: o.lines,
        rate: o.rate,
        max_time: o.max_time,
        flows: o.flows,
        churn_per_minute: o.churn_per_minute,
    };
    let (sent, gens) = run_parallel(gens, &plan, |s| {
        let secs = s.elapsed.as_secs_f64();
        let mut line = format!(
            "  {secs:>6.1}s  {} lines  {} datagrams  {:.0} lines/s",
            s.valid_lines,
            s.datagrams,
            s.valid_lines as f64 / secs
        );
        if let (Some(http), Some(base)) = (stats_http, &baseline) {
            // Lines still in flight show as behind for a moment.
            match get_json(http, "/api/v1/stats") {
                Ok(now) => {
                    let t = Tally::between(base, &now);
                    line += &format!(
                        "  | daemon: counted {} (kernel {}, userspace {}), dropped {}, behind {}",
                        t.counted(),
                        t.points_kernel,
                        t.points_userspace,
                        t.line_drops,
                        t.lost(s.lines())
                    );
                }
                Err(e) => line += &format!("  | daemon stats: {e}"),
            }
        }
        eprintln!("{line}");
    })?;
    let secs = sent.elapsed.as_secs_f64();
    println!(
        "sent {} valid + {} malformed lines in {} datagrams in {:.2}s ({:.0} lines/s)",
        sent.valid_lines,
        sent.malformed_lines,
        sent.datagrams,
        secs,
        sent.lines() as f64 / secs
    );
    let (Some(http), Some(baseline)) = (stats_http, baseline) else {
        return Ok(true);
    };
    // Wait until every line is accounted for, or the count stops moving.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stats = get_json(http, "/api/v1/stats")?;
    let mut still = Instant::now();
    loop {
        let t = Tally::between(&baseline, &stats);
        if t.lost(sent.lines()) == 0
            || Instant::now() > deadline
            || still.elapsed() > Duration::from_secs(3)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let next = get_json(http, "/api/v1/stats")?;
        if Tally::between(&baseline, &next) != t {
            still = Instant::now();
        }
        stats = next;
    }
    let t = Tally::between(&baseline, &stats);
    let n =
        |k: &str| stats[k].as_u64().unwrap_or(0) as i64 - baseline[k].as_u64().unwrap_or(0) as i64;
    let parse = stats["dropped"]["parse_error"].as_u64().unwrap_or(0) as i64
        - baseline["dropped"]["parse_error"].as_u64().unwrap_or(0) as i64;
    let rq = stats["dropped"]["receive_queue"].as_u64().unwrap_or(0) as i64
        - baseline["dropped"]["receive_queue"].as_u64().unwrap_or(0) as i64;
    println!(
        "daemon: points_kernel +{} points_userspace +{} datagrams_kernel +{} datagrams_userspace +{} parse_error +{} receive_queue +{}",
        n("points_kernel"),
        n("points_userspace"),
        n("datagrams_kernel"),
        n("datagrams_userspace"),
        parse,
        rq
    );
    let lost = t.lost(sent.lines());
    println!(
        "counted {} lines, dropped {} (per-line reasons), lost {} ({:.3}%)",
        t.counted(),
        t.line_drops,
        lost,
        lost as f64 * 100.0 / sent.lines().max(1) as f64
    );
    let Some(http) = o.verify_http else {
        return Ok(true);
    };
    let truth = merge_truth(&gens);
    let want = lines_accounted(&baseline) + sent.lines();
    let got = lines_accounted(&stats);
    if got < want {
        println!("lost: {} lines not accounted for", want - got);
    }
    // Everything sent was counted by now, so the first window that ends at
    // or after now holds it. (Waiting for the window after the one current
    // at `stats` is not enough: a rotation that drained before the last
    // lines but published after `stats` was read ends too early.)
    let counted_by = std::time::SystemTime::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    let top = loop {
        let top = get_json(
            http,
            &format!("/api/v1/top?rule={}&limit={}", o.rule, truth.len() * 2 + 10),
        )?;
        let ends_after = top["window_end"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .is_some_and(|end| end >= counted_by);
        if ends_after || Instant::now() > deadline {
            break top;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let verdict = compare(&top, &truth);
    println!(
        "rule {}: window ending {} holds {} keys, {} sent; {} wrong, {} extra",
        o.rule,
        top["window_end"].as_str().unwrap_or("?"),
        verdict.keys_reported,
        verdict.keys_sent,
        verdict.wrong,
        verdict.extra
    );
    if let Some(w) = &verdict.first_wrong {
        println!("first difference: {w}");
    }
    let exact = verdict.exact() && got == want;
    println!("{}", if exact { "EXACT" } else { "MISMATCH" });
    Ok(exact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::Lines;

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

    fn small() -> Shape {
        Shape {
            keys: 500,
            ips: 300,
            ids: 200,
            lines_per_datagram: (1, 5),
            skew: 1.5,
            ..Shape::default()
        }
    }

    #[test]
    fn forks_share_the_keys_and_differ_in_their_draws_deterministically() {
        let base = Generator::new(small());
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
        let mut g = Generator::new(small());
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
        let mut a = Generator::new(small());
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
        assert!(!Generator::new(small()).keys().contains(&a.keys()[0]));
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

    #[test]
    fn parallel_senders_send_their_share_and_their_truths_add_up() {
        let rx = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        rx.set_recv_buffer_size(8 << 20).unwrap();
        rx.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let rx: UdpSocket = rx.into();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let to = rx.local_addr().unwrap();
        let plan = Plan {
            to,
            lines: 20_001,
            rate: 100_000,
            max_time: Duration::from_secs(20),
            flows: 3,
            churn_per_minute: 0.0,
        };
        let gens = senders(Generator::new(small()), 2);
        let (sent, gens) = run_parallel(gens, &plan, |_| {}).unwrap();
        assert!(sent.valid_lines >= 20_001, "{sent:?}");
        assert_eq!(
            sent.valid_lines,
            gens.iter().map(|g| g.valid_lines).sum::<u64>()
        );
        let truth = merge_truth(&gens);
        assert_eq!(truth.values().sum::<u64>(), sent.valid_lines);
        let mut got = 0u64;
        let mut buf = [0u8; 2048];
        while got < sent.datagrams {
            match rx.recv(&mut buf) {
                Ok(_) => got += 1,
                Err(_) => break,
            }
        }
        assert_eq!(got, sent.datagrams);
    }
}
