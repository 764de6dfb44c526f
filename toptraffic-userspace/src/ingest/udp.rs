//! Userspace UDP ingest: SO_REUSEPORT sockets read with recvmmsg by one
//! thread each, every line parsed and counted into that thread's tables for
//! the current interval. A broadcast or multicast datagram reaches every
//! socket: the first counts it, the others' filters empty their copies.
//!
//! A thread locks its own tables once per receive batch; the rotation takes
//! them (swapping in empty ones) at each interval boundary, so the count never
//! waits on anything but that swap.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, warn};

use crate::lineproto::Lines;
use crate::rules::{Outcome, RuleSet};
use crate::snapshot::{Cell, CountTable, Path};
use crate::stats::{DropReason, LocalCounters, PathCounters};

/// Datagrams taken per recvmmsg call.
const BATCH: usize = 64;
// Not in libc for every Linux target: values from include/uapi/asm-generic/socket.h.
const SO_RCVBUFFORCE: libc::c_int = 33;
const SO_MEMINFO: libc::c_int = 55;

/// Settings of the receive sockets.
#[derive(Debug, Clone)]
pub struct UdpSettings {
    pub listen: SocketAddr,
    pub recv_buffer: usize,
    pub max_datagram: usize,
    pub threads: usize,
}

/// Parses and counts whole datagrams into per-rule tables.
pub struct Counter {
    scratch: Vec<u8>,
}

impl Default for Counter {
    fn default() -> Self {
        Counter::new()
    }
}

impl Counter {
    pub fn new() -> Counter {
        Counter {
            scratch: Vec::with_capacity(256),
        }
    }

    /// Counts every line of one datagram by `rules` into their `tables`.
    #[inline]
    pub fn datagram(
        &mut self,
        data: &[u8],
        rules: &RuleSet,
        tables: &mut [CountTable],
        local: &mut LocalCounters,
    ) {
        local.datagrams += 1;
        for line in Lines::new(data) {
            match line {
                Ok(line) => {
                    let outcome = rules.apply(&line, &mut self.scratch, |ri, key, value, owner| {
                        tables[ri].add(key, Cell::line(value, Path::Userspace, owner))
                    });
                    match outcome {
                        Outcome::Counted => local.points += 1,
                        Outcome::Dropped(reason) => local.drop(reason),
                    }
                }
                Err(_) => local.drop(DropReason::ParseError),
            }
        }
    }
}

/// What a receive thread counts with, and into: swapped together, under
/// one lock, so that every line is counted by one rule set into tables of
/// that set's shape.
pub struct Counting {
    pub rules: Arc<RuleSet>,
    /// Per rule, the current interval.
    pub tables: Vec<CountTable>,
}

impl Counting {
    fn new(rules: Arc<RuleSet>) -> Counting {
        let tables = rules.new_tables();
        Counting { rules, tables }
    }
}

type Shared = Arc<Mutex<Counting>>;

/// The running receive threads.
pub struct UdpIngest {
    sockets: Vec<Arc<Socket>>,
    counting: Vec<Shared>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    recv_buffer: usize,
}

impl UdpIngest {
    /// Binds the sockets; receiving starts with [`UdpIngest::start`].
    pub fn bind(settings: &UdpSettings, rules: Arc<RuleSet>) -> io::Result<UdpIngest> {
        let n = match settings.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        refuse_if_bound(settings.listen)?;
        let mut sockets = Vec::with_capacity(n);
        let mut recv_buffer = 0;
        let mut listen = settings.listen;
        for i in 0..n {
            let s = bind_socket(listen, settings.recv_buffer)?;
            if i > 0 {
                empty_copies(s.as_raw_fd())
                    .map_err(|e| io::Error::new(e.kind(), format!("filtering socket {i}: {e}")))?;
            }
            // The kernel reports twice what it grants for payload (bookkeeping).
            recv_buffer = s.recv_buffer_size()? / 2;
            // With port 0, the first socket picks the port and the others join it.
            listen = s.local_addr()?.as_socket().expect("an inet socket");
            sockets.push(Arc::new(s));
        }
        if recv_buffer < settings.recv_buffer {
            warn!(
                asked = settings.recv_buffer,
                got = recv_buffer,
                "receive buffer capped by net.core.rmem_max; raise it (sysctl -w net.core.rmem_max=...) or run with CAP_NET_ADMIN"
            );
        }
        let counting = (0..n)
            .map(|_| Arc::new(Mutex::new(Counting::new(rules.clone()))))
            .collect();
        Ok(UdpIngest {
            sockets,
            counting,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::new()),
            recv_buffer,
        })
    }

    /// The bound address (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.sockets[0]
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("a bound inet socket")
    }

    /// Receive socket descriptors, for attaching the kernel filter.
    pub fn fds(&self) -> Vec<RawFd> {
        self.sockets.iter().map(|s| s.as_raw_fd()).collect()
    }

    /// SO_RCVBUF as the kernel granted it.
    pub fn recv_buffer(&self) -> usize {
        self.recv_buffer
    }

    /// Starts one receive thread per socket.
    pub fn start(&mut self, max_datagram: usize, counters: Arc<PathCounters>) -> io::Result<()> {
        for (i, (sock, tables)) in self.sockets.iter().zip(&self.counting).enumerate() {
            let sock = sock.clone();
            let tables = tables.clone();
            let stop = self.stop.clone();
            let counters = counters.clone();
            let counter = Counter::new();
            let t = std::thread::Builder::new()
                .name(format!("toptraffic-rx{i}"))
                .spawn(move || {
                    let peer = i > 0;
                    receive_loop(
                        &sock,
                        &tables,
                        counter,
                        max_datagram,
                        peer,
                        &counters,
                        &stop,
                    )
                })?;
            self.threads
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .push(t);
        }
        Ok(())
    }

    /// Takes every thread's tables for the interval that just closed.
    pub fn take_interval(&self) -> Vec<Vec<CountTable>> {
        self.counting
            .iter()
            .map(|c| {
                let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
                c.tables.iter_mut().map(CountTable::take).collect()
            })
            .collect()
    }

    /// Switches every thread to `rules`; returns what each counted so far
    /// in this interval, with the rules it counted it by.
    pub fn set_rules(&self, rules: Arc<RuleSet>) -> Vec<Counting> {
        self.counting
            .iter()
            .map(|c| {
                let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::replace(&mut *c, Counting::new(rules.clone()))
            })
            .collect()
    }

    /// Datagrams the kernel dropped on these sockets (receive queue full, or
    /// refused by an attached filter), since they were opened.
    pub fn socket_drops(&self) -> u64 {
        self.sockets
            .iter()
            .map(|s| socket_drops(s.as_raw_fd()))
            .sum()
    }

    /// Stops receiving for good: the sockets refuse new datagrams (a filter
    /// that drops everything takes the place of the kernel path's), each
    /// thread counts what its socket still had queued, and the threads end.
    /// What they counted stays for [`UdpIngest::take_interval`]. Blocks for
    /// the time to count the queues.
    pub fn stop_receiving(&self) {
        for s in &self.sockets {
            if let Err(e) = refuse_all(s.as_raw_fd()) {
                // The threads still empty the queue; what arrives after
                // that is lost with the socket.
                warn!(error = %e, "cannot close the socket to new datagrams");
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        // The threads block without a timeout (no wake-ups while idle, which
        // the kernel path mostly is): a read shutdown wakes a blocked one.
        for s in &self.sockets {
            wake_readers(s.as_raw_fd());
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for UdpIngest {
    fn drop(&mut self) {
        self.stop_receiving();
    }
}

/// Wakes the threads blocked on `fd`: a blocking read of an empty queue
/// returns at once from now on. Datagrams queued before are still read.
fn wake_readers(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor of ours. On an unconnected UDP
    // socket it fails with ENOTCONN after it has marked the socket shut for
    // reading and woken its readers (inet_shutdown), which is what is
    // wanted here: the error is expected and ignored.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RD);
    }
}

/// Attaches a classic BPF filter that drops every datagram (`ret #0`),
/// replacing any filter: nothing enters the receive queue any more.
fn refuse_all(fd: RawFd) -> io::Result<()> {
    attach_classic(fd, &mut [op(libc::BPF_RET | libc::BPF_K, 0, 0, 0)])
}

fn op(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// A UDP socket filter sees the datagram from its UDP header.
const UDP_HEADER: u32 = 8;

/// Attaches the filter of every socket but the first: a broadcast or
/// multicast datagram reaches every socket bound to the port, and this
/// leaves the copies on these sockets empty (the UDP header only), which
/// their threads skip, so that the first socket alone counts it. Emptied
/// rather than dropped, which would count as a socket drop
/// (`receive_queue`). The kernel path's `toptraffic_sock_peer` makes the
/// same test: a frame not for this host alone (`pkt_type` not
/// PACKET_HOST: broadcast, multicast, or looped back from a local
/// broadcast or multicast send), or, as on loopback, where every frame is
/// the host's, an IPv4 destination of 224.0.0.0 and up (multicast,
/// 255.255.255.255) or 127.255.255.255.
fn empty_copies(fd: RawFd) -> io::Result<()> {
    // Ancillary loads (linux/filter.h): SKF_AD_OFF + SKF_AD_PROTOCOL and
    // + SKF_AD_PKTTYPE, and SKF_NET_OFF + 16, the IPv4 destination.
    const PROTOCOL: u32 = (-0x1000i32) as u32;
    const PKTTYPE: u32 = (-0x1000i32 + 4) as u32;
    const DADDR: u32 = (-0x10_0000i32 + 16) as u32;
    const LD: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    const JGE: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
    const RET: u32 = libc::BPF_RET | libc::BPF_K;
    let mut code = [
        op(LD, 0, 0, PKTTYPE),
        op(JEQ, 0, 6, libc::PACKET_HOST as u32), // else: copy
        op(LD, 0, 0, PROTOCOL),
        op(JEQ, 0, 3, libc::ETH_P_IP as u32), // else: keep
        op(LD, 0, 0, DADDR),
        op(JGE, 2, 0, 0xe000_0000), // copy
        op(JEQ, 1, 0, 0x7fff_ffff), // copy, else keep
        op(RET, 0, 0, u32::MAX),    // keep: the whole datagram
        op(RET, 0, 0, UDP_HEADER),  // copy: emptied
    ];
    attach_classic(fd, &mut code)
}

/// Attaches a classic BPF program, replacing any filter.
fn attach_classic(fd: RawFd, code: &mut [libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: setsockopt(2) reads a sock_fprog (optlen bytes) from `prog`,
    // and from it `len` instructions at `filter`, both alive for the call;
    // the kernel copies the program and keeps no pointer to ours.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Refuses an address a socket is bound to already. Sockets of the same
/// user that all set SO_REUSEPORT share a port silently: a second daemon
/// would take a share of the first one's datagrams, and each would count
/// only its own. A bind without SO_REUSEPORT fails on any socket bound
/// there (this probe is closed at once), so the refusal can name it.
/// Port 0 picks a free port: nothing to check.
fn refuse_if_bound(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let holder = match udp_port_holder(addr.port()) {
                Some((pid, name)) => format!(" by pid {pid} ({name})"),
                None => String::new(),
            };
            Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on UDP {addr}: the port is bound already{holder}; \
                     a second daemon there would take part of the first one's datagrams"
                ),
            ))
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot bind UDP {addr}: {e}"),
        )),
    }
}

/// A process with a UDP socket bound to `port` (any address), and its
/// name: the sockets' inodes from /proc/net/udp and udp6, their owner
/// from the /proc/<pid>/fd links (`socket:[inode]`). None when /proc does
/// not tell (another network namespace, or no permission to read fds).
fn udp_port_holder(port: u16) -> Option<(u32, String)> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(inodes_on_port(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let links: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let owns = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| links.iter().any(|s| l.as_os_str() == s.as_str()))
        });
        if owns {
            let name = std::fs::read_to_string(entry.path().join("comm"))
                .map(|c| c.trim_end().to_string())
                .unwrap_or_else(|_| "?".into());
            return Some((pid, name));
        }
    }
    None
}

/// The inodes of the sockets bound to local port `port` in a
/// /proc/net/udp{,6} table (`sl local_address rem_address st ... inode`,
/// the address as `HEX:PORT`).
fn inodes_on_port(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (p == port).then(|| f.get(9)?.parse().ok()).flatten()
        })
        .collect()
}

fn bind_socket(addr: SocketAddr, recv_buffer: usize) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    // SO_RCVBUFFORCE passes net.core.rmem_max when the process may
    // (CAP_NET_ADMIN); otherwise the plain option, which the kernel caps.
    let size = recv_buffer.min(i32::MAX as usize / 2) as libc::c_int;
    if !setsockopt_int(s.as_raw_fd(), libc::SOL_SOCKET, SO_RCVBUFFORCE, size) {
        s.set_recv_buffer_size(recv_buffer)?;
    }
    s.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {addr}: {e}")))?;
    Ok(s)
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: setsockopt(2) reads optlen = size_of::<c_int>() bytes from
    // `value`, a c_int alive for the call, and writes nothing of ours (a
    // bad fd is an error, EBADF or ENOTSOCK).
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// sk_drops of a socket, from SO_MEMINFO.
fn socket_drops(fd: RawFd) -> u64 {
    let mut info = [0u32; 16];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `info`, which
    // is that long, and the length it wrote into `len`, a socklen_t.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 || (len as usize) <= libc::SK_MEMINFO_DROPS as usize * 4 {
        return 0;
    }
    info[libc::SK_MEMINFO_DROPS as usize] as u64
}

const NAME_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_storage>() as _;

/// recvmmsg buffers for one thread, allocated once.
struct Batch {
    bufs: Vec<u8>,
    size: usize,
    iovecs: Vec<libc::iovec>,
    /// Each datagram's source: only its length is read, which tells a
    /// datagram (an address) from a shut socket's end of data (none).
    names: Vec<libc::sockaddr_storage>,
    headers: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new(size: usize) -> Batch {
        let mut b = Batch {
            bufs: vec![0; BATCH * size],
            size,
            iovecs: Vec::with_capacity(BATCH),
            // SAFETY: sockaddr_storage is integers, for which zero bytes are
            // a valid value.
            names: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            headers: Vec::with_capacity(BATCH),
        };
        for i in 0..BATCH {
            b.iovecs.push(libc::iovec {
                iov_base: b.bufs[i * size..].as_mut_ptr().cast(),
                iov_len: size,
            });
        }
        for i in 0..BATCH {
            // SAFETY: mmsghdr is integers and raw pointers, for all of which
            // zero bytes are a valid value (null pointers, empty lengths).
            let mut h: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            h.msg_hdr.msg_iov = &mut b.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = (&mut b.names[i] as *mut libc::sockaddr_storage).cast();
            b.headers.push(h);
        }
        b
    }

    /// Receives up to BATCH datagrams, blocking for the first only unless
    /// `wait` is false. Ok(0) when a blocked read was woken by
    /// [`wake_readers`] with nothing queued.
    fn recv(&mut self, fd: RawFd, wait: bool) -> io::Result<usize> {
        let flags = if wait {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        for h in &mut self.headers {
            h.msg_len = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_hdr.msg_namelen = NAME_LEN;
        }
        // SAFETY: the kernel fills at most BATCH headers, the number there
        // are; each points at its iovec, and each iovec at its own `size`
        // bytes of `bufs` (BATCH * size long). All three are heap buffers
        // of self, filled in `new` and never grown since, so the pointers
        // stay valid when the Batch moves, and `&mut self` keeps anything
        // else from touching them during the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                // glibc declares the flags c_int, musl c_uint.
                flags as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else if n == 1 && self.headers[0].msg_hdr.msg_namelen == 0 {
            // A read of a socket shut for reading, with nothing queued,
            // returns 0 bytes from no one: recvmmsg counts it as a datagram.
            // Every real datagram has its sender's address.
            Ok(0)
        } else {
            Ok(n as usize)
        }
    }

    /// The i-th received datagram, or None when it was truncated.
    fn datagram(&self, i: usize) -> Option<&[u8]> {
        let h = &self.headers[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (h.msg_len as usize).min(self.size);
        Some(&self.bufs[i * self.size..i * self.size + len])
    }
}

fn receive_loop(
    sock: &Socket,
    counting: &Mutex<Counting>,
    mut counter: Counter,
    max_datagram: usize,
    peer: bool,
    counters: &PathCounters,
    stop: &AtomicBool,
) {
    let fd = sock.as_raw_fd();
    let mut batch = Batch::new(max_datagram);
    let mut local = LocalCounters::default();
    let mut stopping = false;
    loop {
        // Once asked to stop, count what is queued (the socket takes no
        // more), then end.
        stopping = stopping || stop.load(Ordering::Relaxed);
        let n = match batch.recv(fd, !stopping) {
            Ok(0) if stopping => break,
            Ok(n) => n,
            Err(e) if stopping && e.kind() != io::ErrorKind::Interrupted => break,
            Err(e) => {
                match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {}
                    _ => {
                        warn!(error = %e, "recvmmsg failed");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                continue;
            }
        };
        {
            let mut c = counting.lock().unwrap_or_else(|e| e.into_inner());
            let Counting { rules, tables } = &mut *c;
            for i in 0..n {
                match batch.datagram(i) {
                    // A broadcast or multicast copy that the first socket
                    // counts (see `empty_copies`).
                    Some([]) if peer => {}
                    Some(data) => counter.datagram(data, rules, tables, &mut local),
                    None => local.drop(DropReason::Oversize),
                }
            }
        }
        counters.flush(&mut local);
    }
    debug!("receive thread stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::key;

    fn counter() -> (Counter, Arc<RuleSet>, Vec<CountTable>) {
        let c = Config::embedded_default();
        let rules = Arc::new(RuleSet::new(&c.rules));
        let tables = rules.new_tables();
        (Counter::new(), rules, tables)
    }

    #[test]
    fn counts_each_valid_line_of_a_datagram_once() {
        let (mut c, rules, mut tables) = counter();
        let mut local = LocalCounters::default();
        let d = b"combined,ip=1.2.3.4,id=7 count=1\ncombined,ip=1.2.3.4,id=7,role=x count=1\nnot a line\nips,ip=1.2.3.4 count=2\nother f=1\n";
        c.datagram(d, &rules, &mut tables, &mut local);
        assert_eq!(local.datagrams, 1);
        assert_eq!(local.points, 3);
        assert_eq!(local.dropped[DropReason::ParseError as usize], 1);
        assert_eq!(local.dropped[DropReason::UnknownMeasurement as usize], 1);
        let k = key::from_values(&["1.2.3.4", "7"]);
        assert_eq!(tables[0].get(&k).unwrap().value(), 2.0);
        assert_eq!(
            tables[1]
                .get(&key::from_values(&["1.2.3.4"]))
                .unwrap()
                .value(),
            2.0
        );
        assert!(tables[2].is_empty());
    }

    /// The default rules on two loopback sockets taking datagrams of up
    /// to 128 bytes, receiving.
    fn started(recv_buffer: usize) -> (UdpIngest, Arc<PathCounters>) {
        started_with(recv_buffer, 2)
    }

    fn started_with(recv_buffer: usize, threads: usize) -> (UdpIngest, Arc<PathCounters>) {
        let c = Config::embedded_default();
        let rules = Arc::new(RuleSet::new(&c.rules));
        let settings = UdpSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            recv_buffer,
            max_datagram: 128,
            threads,
        };
        let mut ingest = UdpIngest::bind(&settings, rules).unwrap();
        let counters = Arc::new(PathCounters::default());
        ingest.start(128, counters.clone()).unwrap();
        (ingest, counters)
    }

    #[test]
    fn receives_over_loopback_and_flags_oversize_datagrams() {
        let (ingest, counters) = started(1 << 20);
        let to = ingest.local_addr();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..100 {
            tx.send_to(b"combined,ip=9.9.9.9,id=1 count=1", to).unwrap();
        }
        tx.send_to(&[b'x'; 500], to).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while counters.snapshot().points + counters.snapshot().dropped(DropReason::Oversize) < 101 {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out: {:?}",
                counters.snapshot()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let tables = ingest.take_interval();
        let total: f64 = tables
            .iter()
            .filter_map(|t| t[0].get(&key::from_values(&["9.9.9.9", "1"])))
            .map(|c| c.value())
            .sum();
        assert_eq!(total, 100.0);
        assert_eq!(counters.snapshot().dropped(DropReason::Oversize), 1);
        ingest.stop_receiving();
    }

    #[test]
    fn stopping_wakes_idle_threads_and_an_empty_datagram_stays_a_datagram() {
        // One socket: a peer socket takes an empty datagram for a broadcast
        // copy the first one counts (see `empty_copies`).
        let (ingest, counters) = started_with(1 << 20, 1);
        let to = ingest.local_addr();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Empty datagrams look like a shut socket's end of data to recvmmsg
        // but for their sender's address: each is one datagram, no line.
        for _ in 0..3 {
            tx.send_to(b"", to).unwrap();
        }
        tx.send_to(b"combined,ip=9.9.9.9,id=1 count=1", to).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while counters.snapshot().datagrams < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                counters.snapshot()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // The threads are blocked on empty sockets, with no timeout: the
        // stop must wake them (a hang here is the failure).
        let (done, stopped) = std::sync::mpsc::channel();
        let ingest = Arc::new(ingest);
        let i = ingest.clone();
        std::thread::spawn(move || {
            i.stop_receiving();
            let _ = done.send(());
        });
        stopped
            .recv_timeout(Duration::from_secs(30))
            .expect("stop_receiving returned");
        let s = counters.snapshot();
        assert_eq!((s.datagrams, s.points), (4, 1), "{s:?}");
    }

    #[test]
    fn stopping_counts_every_queued_datagram_and_then_refuses_new_ones() {
        let (ingest, counters) = started(16 << 20);
        let to = ingest.local_addr();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let k = key::from_values(&["9.9.9.9", "1"]);
        let total = |ingest: &UdpIngest| -> f64 {
            ingest
                .take_interval()
                .iter()
                .filter_map(|t| t[0].get(&k))
                .map(|c| c.value())
                .sum()
        };
        // Sent flat out and stopped at once: most are still queued.
        for _ in 0..20_000 {
            tx.send_to(b"combined,ip=9.9.9.9,id=1 count=1", to).unwrap();
        }
        ingest.stop_receiving();
        assert_eq!(total(&ingest), 20_000.0, "{:?}", counters.snapshot());
        let drops = ingest.socket_drops();
        for _ in 0..100 {
            tx.send_to(b"combined,ip=9.9.9.9,id=1 count=1", to).unwrap();
        }
        assert_eq!(total(&ingest), 0.0);
        assert_eq!(ingest.socket_drops() - drops, 100, "refused by the filter");
    }

    /// Two daemons on one port would each count a share of its datagrams
    /// (SO_REUSEPORT): the second is refused, with the holder named.
    #[test]
    fn a_port_bound_already_is_refused_and_its_holder_named() {
        let (first, _) = started(1 << 16);
        let rules = Arc::new(RuleSet::new(&Config::embedded_default().rules));
        let settings = UdpSettings {
            listen: first.local_addr(),
            recv_buffer: 1 << 16,
            max_datagram: 128,
            threads: 2,
        };
        let err = UdpIngest::bind(&settings, rules.clone())
            .err()
            .expect("a second bind of the same port");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let msg = err.to_string();
        assert!(msg.contains("bound already"), "{msg}");
        assert!(
            msg.contains(&format!("by pid {}", std::process::id())),
            "{msg}"
        );
        // The wildcard address covers the loopback one.
        let wildcard = UdpSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], settings.listen.port())),
            ..settings.clone()
        };
        assert!(UdpIngest::bind(&wildcard, rules.clone()).is_err());
        drop(first);
        assert!(UdpIngest::bind(&settings, rules).is_ok(), "free again");
    }

    #[test]
    fn the_sockets_of_a_port_are_read_from_the_udp_table() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             \x20 1: 0100007F:238C 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2112931 2 0000000000000000 0\n\
             \x20 2: 00000000:238C 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2112932 2 0000000000000000 0\n\
             \x20 3: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 17 2 0000000000000000 0\n";
        assert_eq!(inodes_on_port(table, 9100), vec![2112931, 2112932]);
        assert_eq!(inodes_on_port(table, 53), vec![17]);
        assert!(inodes_on_port(table, 1).is_empty());
    }
}
