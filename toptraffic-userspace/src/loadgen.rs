//! Load generator: line protocol over UDP with the shape of ingress traffic
//! (many client ips, fewer store ids, a skewed distribution, uri and role
//! tags), one or several lines per datagram, malformed lines mixed in on
//! request, and the exact truth of what was sent.
//!
//! Deterministic for a seed, so a test can regenerate what it expects.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The traffic to generate.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Measurement of every valid line.
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
            seed: 1,
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

/// Produces datagrams of the shape and keeps the truth.
pub struct Generator {
    shape: Shape,
    rng: Rng,
    keys: Vec<(String, String)>,
    /// Valid lines sent per key index.
    pub sent: Vec<u64>,
    pub valid_lines: u64,
    pub malformed_lines: u64,
    pub datagrams: u64,
}

fn ip_of(i: usize) -> String {
    // 10.0.0.0/8 and 172.16.0.0/12 and 192.168.0.0/16 would do; 10/8 is plenty.
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn id_of(i: usize) -> String {
    (100_000_000 + i * 7_919 % 900_000_000).to_string()
}

impl Generator {
    pub fn new(shape: Shape) -> Generator {
        let mut rng = Rng::new(shape.seed);
        let pairs = shape.ips.saturating_mul(shape.ids);
        assert!(shape.keys <= pairs, "keys cannot exceed ips x ids");
        assert!(shape.ips <= 1 << 24, "ips are drawn from 10.0.0.0/8");
        let mut seen = std::collections::HashSet::with_capacity(shape.keys);
        let mut keys = Vec::with_capacity(shape.keys);
        // Every ip is used once before any repeats, so that `ips` distinct
        // clients appear when keys >= ips; ids are drawn skewed.
        let mut k = 0usize;
        while keys.len() < shape.keys {
            let ip = k % shape.ips;
            let id = ((rng.unit().powf(shape.skew)) * shape.ids as f64) as usize % shape.ids;
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
        }
    }

    pub fn keys(&self) -> &[(String, String)] {
        &self.keys
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
        let _ = write!(
            buf,
            "{},uri=/product{sep}{uri},id={id},ip={ip},role={role} count=1",
            self.shape.measurement
        );
        self.sent[k] += 1;
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

    /// Fills `buf` with the next datagram.
    pub fn datagram(&mut self, buf: &mut Vec<u8>) {
        buf.clear();
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

    /// Lines sent per (ip, id), for keys that got any.
    pub fn truth(&self) -> Truth {
        self.keys
            .iter()
            .zip(&self.sent)
            .filter(|(_, &n)| n > 0)
            .map(|(k, &n)| (k.clone(), n))
            .collect()
    }
}

/// What a run sent.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub datagrams: u64,
    pub valid_lines: u64,
    pub malformed_lines: u64,
    pub elapsed: Duration,
}

/// Sends datagrams with sendmmsg in batches of up to 64.
pub struct Sender {
    sock: UdpSocket,
}

/// Datagrams per sendmmsg call.
const BATCH: usize = 64;

impl Sender {
    pub fn connect(to: SocketAddr) -> io::Result<Sender> {
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid")
        } else {
            "[::]:0".parse().expect("valid")
        };
        let sock = UdpSocket::bind(bind)?;
        sock.connect(to)?;
        Ok(Sender { sock })
    }

    /// Sends every datagram; returns how many were sent.
    pub fn send_batch(&self, datagrams: &[Vec<u8>]) -> io::Result<usize> {
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
                        self.sock.as_raw_fd(),
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
    let mut last_progress = start;
    let mut batch: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(2048)).collect();
    while gen.valid_lines < lines && start.elapsed() < max_time {
        let mut n = 0;
        while n < BATCH && gen.valid_lines < lines {
            gen.datagram(&mut batch[n]);
            n += 1;
        }
        sender.send_batch(&batch[..n])?;
        if rate > 0 {
            // Pace: be no further ahead than the rate allows.
            let due = Duration::from_secs_f64(gen.valid_lines as f64 / rate as f64);
            let el = start.elapsed();
            if due > el {
                std::thread::sleep(due - el);
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(gen, start.elapsed());
        }
    }
    Ok(Sent {
        datagrams: gen.datagrams,
        valid_lines: gen.valid_lines,
        malformed_lines: gen.malformed_lines,
        elapsed: start.elapsed(),
    })
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

/// What `toptraffic loadgen` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub shape: Shape,
    pub to: SocketAddr,
    pub lines: u64,
    pub rate: u64,
    pub max_time: Duration,
    pub verify_http: Option<SocketAddr>,
    pub rule: String,
}

/// `toptraffic loadgen`: sends, reports, and verifies when asked. Ok(false)
/// when the verification found a difference.
pub fn cli(o: Options) -> anyhow::Result<bool> {
    use anyhow::Context;
    let baseline = match o.verify_http {
        Some(http) => Some(
            get_json(http, "/api/v1/stats")
                .with_context(|| format!("reading the daemon's stats at {http}"))?,
        ),
        None => None,
    };
    let mut gen = Generator::new(o.shape.clone());
    eprintln!(
        "sending {} lines over {} keys to {} ({} lines/datagram, {} malformed per mille, {})",
        o.lines,
        gen.keys().len(),
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
        }
    );
    let sent = run(&mut gen, o.to, o.lines, o.rate, o.max_time, |g, el| {
        eprintln!(
            "  {:>6.1}s  {} lines  {} datagrams  {:.0} lines/s",
            el.as_secs_f64(),
            g.valid_lines,
            g.datagrams,
            g.valid_lines as f64 / el.as_secs_f64()
        );
    })?;
    let secs = sent.elapsed.as_secs_f64();
    println!(
        "sent {} valid + {} malformed lines in {} datagrams in {:.2}s ({:.0} lines/s)",
        sent.valid_lines,
        sent.malformed_lines,
        sent.datagrams,
        secs,
        (sent.valid_lines + sent.malformed_lines) as f64 / secs
    );
    let (Some(http), Some(baseline)) = (o.verify_http, baseline) else {
        return Ok(true);
    };
    let truth = gen.truth();
    let want = lines_accounted(&baseline) + sent.valid_lines + sent.malformed_lines;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stats;
    loop {
        stats = get_json(http, "/api/v1/stats")?;
        if lines_accounted(&stats) >= want || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = lines_accounted(&stats);
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
    if got < want {
        println!("lost: {} lines not accounted for", want - got);
    }
    // The window that holds everything sent closes at the next boundary.
    let counted_at = stats["window_end"].as_str().map(String::from);
    let deadline = Instant::now() + Duration::from_secs(120);
    let top = loop {
        let top = get_json(
            http,
            &format!("/api/v1/top?rule={}&limit={}", o.rule, truth.len() * 2 + 10),
        )?;
        if top["window_end"].as_str().map(String::from) != counted_at || Instant::now() > deadline {
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
}
