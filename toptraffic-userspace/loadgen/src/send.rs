//! Sending: datagrams over UDP with sendmmsg, paced, from one or several
//! threads.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::generate::Generator;

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
                // SAFETY: `fd` is an open socket that `self` owns; the
                // count is the number of headers from `off`; the headers
                // point at iovecs pointing into `chunk`, all alive and
                // unmoved for the call, which reads the data and writes
                // only the headers' msg_len.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{merge_truth, Shape};

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
        let gens = senders(Generator::new(Shape::small()), 2);
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
