//! End to end on the kernel path, run for real: the daemon loads its eBPF
//! programs, the socket filter or XDP counts, and every line is counted
//! exactly once across both paths and across rotations. Each test first
//! checks that bpf() works here and, when it does not, says why and skips.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    kernel_available, pin_dir, short_window_config, skip, with_ingest, with_max_keys, Daemon, BIN,
};
use serde_json::Value;
use toptraffic_loadgen::{self as loadgen, Generator, Sent, Shape};

/// The default rules on a short window, kernel mode, small maps, own pins.
fn config(period: &str, every: &str, name: &str) -> String {
    let c = with_max_keys(&short_window_config(period, every), 50_000);
    with_ingest(&c, &format!("pin_dir = \"{}\"", pin_dir(name)))
}

/// Waits until the daemon accounted for every line sent, then for the
/// window after that, and returns the stats.
fn settle(d: &Daemon, sent: &Sent) -> Value {
    let total = sent.valid_lines + sent.malformed_lines;
    d.wait_stats(Duration::from_secs(30), "every line accounted", |s| {
        loadgen::lines_accounted(s) >= total
    });
    d.wait_next_window(Duration::from_secs(10));
    d.stats()
}

/// Sends `lines` valid lines of `shape` at `rate` (at most 30 s), then
/// settles: the generator (for the truth), what was sent, and the stats.
fn send(d: &Daemon, shape: Shape, lines: u64, rate: u64) -> (Generator, Sent, Value) {
    let mut gen = Generator::new(shape);
    let sent = loadgen::run(
        &mut gen,
        d.udp,
        lines,
        rate,
        Duration::from_secs(30),
        |_, _| {},
    )
    .expect("send");
    let s = settle(d, &sent);
    (gen, sent, s)
}

/// Lines counted by either path.
fn points(s: &Value) -> u64 {
    s["points_kernel"].as_u64().unwrap() + s["points_userspace"].as_u64().unwrap()
}

fn assert_exact(d: &Daemon, gen: &Generator) {
    let truth = gen.truth();
    let top = d.get(&format!(
        "/api/v1/top?rule=top_combined&limit={}",
        truth.len() + 100
    ));
    let verdict = loadgen::compare(&top, &truth);
    assert!(verdict.exact(), "{verdict:?}");
}

#[test]
fn kernel_mode_counts_plain_traffic_in_the_kernel_exactly() {
    if !kernel_available("kernel_mode_counts_plain_traffic_in_the_kernel_exactly") {
        return;
    }
    let d = Daemon::start(&config("4s", "500ms", "plain"), &["--mode", "kernel"]);
    let stats = d.stats();
    assert_eq!(stats["mode"], "kernel", "{stats}");
    assert_eq!(stats["kernel"]["setup"]["attach"], "socket_filter");
    let (gen, sent, s) = send(
        &d,
        Shape {
            keys: 20_000,
            ips: 15_000,
            ids: 8_000,
            lines_per_datagram: (1, 6),
            seed: 11,
            ..Shape::default()
        },
        60_000,
        60_000,
    );
    assert_eq!(s["points_kernel"], sent.valid_lines, "{s}");
    assert_eq!(s["datagrams_kernel"], sent.datagrams, "{s}");
    assert_eq!(s["points_userspace"], 0, "{s}");
    assert_eq!(s["datagrams_userspace"], 0, "{s}");
    assert_eq!(s["dropped"]["evicted"], 0, "{s}");
    assert_eq!(s["dropped"]["receive_queue"], 0, "{s}");
    assert_exact(&d, &gen);
    // The maps are pinned for bpftool, and gone after a clean stop.
    let pins = pin_dir("plain");
    for m in PINS {
        assert!(
            std::path::Path::new(&pins).join(m).exists(),
            "{m} not pinned"
        );
    }
    assert!(d.terminate().success());
    assert!(!std::path::Path::new(&pins).exists(), "pins left behind");
}

#[test]
fn datagrams_the_kernel_does_not_take_are_counted_in_userspace_exactly_once() {
    if !kernel_available("datagrams_the_kernel_does_not_take_are_counted_in_userspace_exactly_once")
    {
        return;
    }
    let d = Daemon::start(&config("4s", "500ms", "mixed"), &["--mode", "kernel"]);
    let (gen, sent, s) = send(
        &d,
        Shape {
            keys: 10_000,
            ips: 8_000,
            ids: 5_000,
            lines_per_datagram: (1, 4),
            malformed_per_mille: 5,
            escaped_per_mille: 20,
            long_ids_per_mille: 20,
            seed: 12,
            ..Shape::default()
        },
        40_000,
        40_000,
    );
    assert_eq!(points(&s), sent.valid_lines, "{s}");
    assert_eq!(s["dropped"]["parse_error"], sent.malformed_lines, "{s}");
    assert_eq!(
        s["datagrams_kernel"].as_u64().unwrap() + s["datagrams_userspace"].as_u64().unwrap(),
        sent.datagrams,
        "{s}"
    );
    let passed = &s["kernel"]["passed_to_userspace"];
    assert!(passed["escape"].as_u64().unwrap() > 0, "{s}");
    assert!(passed["key_too_long"].as_u64().unwrap() > 0, "{s}");
    assert!(passed["invalid"].as_u64().unwrap() > 0, "{s}");
    assert!(
        s["points_kernel"].as_u64().unwrap() > sent.valid_lines / 2,
        "{s}"
    );
    assert_exact(&d, &gen);
}

#[test]
fn no_line_is_lost_or_counted_twice_across_many_rotations() {
    if !kernel_available("no_line_is_lost_or_counted_twice_across_many_rotations") {
        return;
    }
    // Rotations every 200 ms while traffic flows for about 4 s; the 60 s
    // window still holds all of it, so the window is the sum over ~20
    // intervals drained from alternating generations.
    let d = Daemon::start(&config("60s", "200ms", "rotations"), &["--mode", "kernel"]);
    let before = d.stats()["rotations"].as_u64().unwrap();
    let (gen, sent, s) = send(
        &d,
        Shape {
            keys: 5_000,
            ips: 5_000,
            ids: 1_000,
            lines_per_datagram: (1, 3),
            malformed_per_mille: 2,
            escaped_per_mille: 5,
            skew: 2.0,
            seed: 13,
            ..Shape::default()
        },
        100_000,
        25_000,
    );
    let rotations = s["rotations"].as_u64().unwrap() - before;
    assert!(rotations >= 15, "only {rotations} rotations: {s}");
    assert_eq!(points(&s), sent.valid_lines, "{s}");
    assert_eq!(s["dropped"]["evicted"], 0, "{s}");
    assert_exact(&d, &gen);
}

/// XDP in generic mode on `lo`, the daemon listening on `listen` (an
/// IPv4 or IPv6 loopback address): the kernel counts most lines, and every
/// line exactly once.
fn xdp_on_loopback_counts_exactly(test: &str, listen: &str, pins: &str) {
    // One XDP program an interface: this binary's tests on `lo` take turns.
    static LO: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = LO.lock().unwrap_or_else(|e| e.into_inner());
    if !kernel_available(test) {
        return;
    }
    let c = with_ingest(
        &config("4s", "500ms", pins),
        "xdp_interface = \"lo\"\nxdp_mode = \"skb\"",
    );
    let d = Daemon::start_on(&c, listen, &["--mode", "kernel"]);
    let stats = d.stats();
    assert_eq!(stats["kernel"]["setup"]["attach"], "xdp", "{stats}");
    let (gen, sent, s) = send(
        &d,
        Shape {
            keys: 10_000,
            ips: 10_000,
            ids: 3_000,
            lines_per_datagram: (1, 5),
            malformed_per_mille: 3,
            seed: 14,
            ..Shape::default()
        },
        40_000,
        40_000,
    );
    assert_eq!(points(&s), sent.valid_lines, "{s}");
    assert!(
        s["points_kernel"].as_u64().unwrap() > sent.valid_lines / 2,
        "{s}"
    );
    assert!(s["datagrams_kernel"].as_u64().unwrap() > 0, "{s}");
    assert_exact(&d, &gen);
}

#[test]
fn xdp_in_generic_mode_on_loopback_counts_exactly() {
    let test = "xdp_in_generic_mode_on_loopback_counts_exactly";
    xdp_on_loopback_counts_exactly(test, "127.0.0.1:0", "xdp-lo");
}

#[test]
fn xdp_in_generic_mode_on_loopback_counts_ipv6_exactly() {
    let test = "xdp_in_generic_mode_on_loopback_counts_ipv6_exactly";
    xdp_on_loopback_counts_exactly(test, "[::1]:0", "xdp-lo6");
}

/// A datagram of exactly `len` bytes: `lines` lines of the seed's
/// `combined`, the last padded by its uri.
fn datagram_of(len: usize, lines: usize, ip: u8) -> Vec<u8> {
    let mut d = String::new();
    for i in 0..lines - 1 {
        d.push_str(&format!("combined,ip=10.9.{ip}.{i},id=1 count=1\n"));
    }
    let last = format!("combined,ip=10.9.{ip}.99,id=1,uri=/ count=1");
    let pad = len
        .checked_sub(d.len() + last.len())
        .expect("room for the lines");
    d.push_str(&last.replace("uri=/", &format!("uri=/{}", "p".repeat(pad))));
    assert_eq!(d.len(), len);
    d.into_bytes()
}

/// What `max_datagram` = 512 makes of 400- and 1,000-byte datagrams, in
/// `mode`: the stats once every datagram is accounted for.
fn short_datagrams(mode: &str) -> Value {
    let c = with_ingest(
        &config("60s", "500ms", &format!("short-{mode}")),
        "max_datagram = 512",
    );
    let d = Daemon::start(&c, &["--mode", mode]);
    assert_eq!(d.stats()["mode"], mode);
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..20u8 {
        tx.send_to(&datagram_of(400, 5, i), d.udp).unwrap();
        if i % 2 == 0 {
            tx.send_to(&datagram_of(1000, 10, 100 + i), d.udp).unwrap();
        }
    }
    d.wait_stats(Duration::from_secs(20), "every datagram accounted", |s| {
        points(s) == 100 && s["dropped"]["oversize"] == 10
    });
    d.wait_next_window(Duration::from_secs(10));
    d.stats()
}

#[test]
fn datagrams_past_max_datagram_are_oversize_in_both_modes_alike() {
    if !kernel_available("datagrams_past_max_datagram_are_oversize_in_both_modes_alike") {
        return;
    }
    let k = short_datagrams("kernel");
    let u = short_datagrams("userspace");
    // 512 is below the kernel's own bound (BUF_LEN, 4,096): the kernel
    // leaves the 1,000-byte datagrams to the sockets, which drop them.
    assert_eq!(k["points_kernel"], 100, "{k}");
    assert_eq!(k["datagrams_kernel"], 20, "{k}");
    assert_eq!(k["kernel"]["passed_to_userspace"]["too_long"], 10, "{k}");
    assert_eq!(k["points_userspace"], 0, "{k}");
    assert_eq!(u["points_userspace"], 100, "{u}");
    for s in [&k, &u] {
        assert_eq!(s["dropped"]["oversize"], 10, "{s}");
        assert_eq!(s["dropped"]["receive_queue"], 0, "{s}");
        assert_eq!(s["dropped"]["parse_error"], 0, "{s}");
        assert_eq!(s["rules"][0]["keys"], 100, "{s}");
    }
    assert_eq!(k["dropped"], u["dropped"]);
}

/// 40 datagrams to `top_combined` (a sum), half of them with a value past
/// the kernel's 2^31 - 1: the stats and the keys' values in the window.
fn large_values(mode: &str) -> (Value, Value) {
    let d = Daemon::start(
        &config("60s", "500ms", &format!("large-{mode}")),
        &["--mode", mode],
    );
    assert_eq!(d.stats()["mode"], mode);
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..20u32 {
        let ip = i % 4;
        let fits = format!(
            "combined,ip=10.0.0.{ip},id=1 count=2147483647\n\
             combined,ip=10.0.0.{ip},id=1 count=-2147483647i\n\
             combined,ip=10.0.0.{ip},id=1 count=2147483647\n"
        );
        let larger = format!(
            "combined,ip=10.0.0.{ip},id=1 count=999999999999999\n\
             combined,ip=10.0.0.{ip},id=1 count=-2147483648\n"
        );
        tx.send_to(fits.as_bytes(), d.udp).unwrap();
        tx.send_to(larger.as_bytes(), d.udp).unwrap();
    }
    d.wait_stats(Duration::from_secs(20), "every line counted", |s| {
        points(s) == 100
    });
    d.wait_next_window(Duration::from_secs(10));
    let top = d.get("/api/v1/top?rule=top_combined&limit=10");
    (d.stats(), top)
}

#[test]
fn summed_values_past_31_bits_go_to_userspace_and_both_modes_agree() {
    if !kernel_available("summed_values_past_31_bits_go_to_userspace_and_both_modes_agree") {
        return;
    }
    let (k, ktop) = large_values("kernel");
    let (u, utop) = large_values("userspace");
    assert_eq!(k["points_kernel"], 60, "{k}");
    assert_eq!(k["points_userspace"], 40, "{k}");
    assert_eq!(k["kernel"]["passed_to_userspace"]["large_value"], 20, "{k}");
    assert_eq!(u["points_userspace"], 100, "{u}");
    // Per key, 5 x (2^31 - 1) + 5 x (10^15 - 1) - 5 x 2^31, exactly.
    let want = 5.0 * 999_999_999_999_999.0 - 5.0;
    for top in [&ktop, &utop] {
        let rows = top["top"].as_array().unwrap();
        assert_eq!(rows.len(), 4, "{top}");
        for row in rows {
            assert_eq!(row["value"].as_f64().unwrap(), want, "{top}");
        }
    }
    let ips = |top: &Value| {
        let mut ips: Vec<String> = top["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["tags"]["ip"].as_str().unwrap().to_string())
            .collect();
        ips.sort();
        ips
    };
    assert_eq!(ips(&ktop), ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert_eq!(ips(&ktop), ips(&utop));
}

/// A network namespace with a veth pair into it, removed on drop. The
/// host's end is 10.`subnet`.0.1 and fd00:`subnet`::1, the namespace's
/// 10.`subnet`.0.2 and fd00:`subnet`::2.
struct Netns {
    name: String,
    host_if: String,
}

impl Netns {
    fn create(tag: &str, subnet: u8) -> Option<Netns> {
        let name = format!("tt{}{tag}", std::process::id());
        let host_if = format!("th{}{tag}", std::process::id() % 100_000);
        let ns_if = format!("tn{}{tag}", std::process::id() % 100_000);
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
        };
        let host_ip = format!("10.{subnet}.0.1/24");
        let ns_ip = format!("10.{subnet}.0.2/24");
        let host_ip6 = format!("fd00:{subnet}::1/64");
        let ns_ip6 = format!("fd00:{subnet}::2/64");
        let steps: [&[&str]; 9] = [
            &["netns", "add", &name],
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ],
            &["link", "set", &ns_if, "netns", &name],
            &["addr", "add", &host_ip, "brd", "+", "dev", &host_if],
            // No duplicate address detection: the addresses are usable at
            // once instead of after a second or two.
            &["addr", "add", &host_ip6, "dev", &host_if, "nodad"],
            &["link", "set", &host_if, "up"],
            &[
                "-n", &name, "addr", "add", &ns_ip, "brd", "+", "dev", &ns_if,
            ],
            &["-n", &name, "addr", "add", &ns_ip6, "dev", &ns_if, "nodad"],
            &["-n", &name, "link", "set", &ns_if, "up"],
        ];
        for args in steps {
            let out = Command::new("ip").args(args).output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    let why = format!(
                        "ip {}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&o.stderr)
                    );
                    skip("a network namespace", &why);
                    return None;
                }
                Err(e) => {
                    skip(
                        "a network namespace",
                        &format!("cannot run ip (iproute2): {e}"),
                    );
                    return None;
                }
            }
        }
        Some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A UDP socket of the namespace `ns`, bound to `addr`: made on a thread
/// that enters it (setns moves only the calling thread).
fn socket_in(ns: &str, addr: &str) -> std::net::UdpSocket {
    let (ns, addr) = (ns.to_string(), addr.to_string());
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        // SAFETY: setns(2) on an open netns file descriptor, which `f`
        // keeps alive for the call; it changes this thread's namespace
        // only, and the thread ends after making the socket.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        std::net::UdpSocket::bind(addr).unwrap()
    })
    .join()
    .unwrap()
}

/// Sends 30 one-line datagrams each by unicast, to the veth's subnet
/// broadcast and to a multicast group from the namespace, and to
/// loopback's broadcast from the host, to a daemon in `mode` with three
/// receive sockets on 0.0.0.0; the stats once it has counted them all.
fn broadcast_run(ns: &Netns, mode: &str) -> Value {
    let c = with_ingest(
        &config("60s", "500ms", &format!("bcast-{mode}")),
        "threads = 3",
    );
    let d = Daemon::start_on(&c, "0.0.0.0:0", &["--mode", mode]);
    assert_eq!(d.stats()["mode"], mode);
    let port = d.udp.port();
    // The host takes the group on the veth, so that its frames are
    // delivered (to every socket bound to the port, as mc_all wants).
    let member = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    member
        .join_multicast_v4(
            &"239.77.0.1".parse().unwrap(),
            &"10.202.0.1".parse().unwrap(),
        )
        .unwrap();
    let tx = socket_in(&ns.name, "10.202.0.2:0");
    tx.set_broadcast(true).unwrap();
    let local = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    local.set_broadcast(true).unwrap();
    let from = libc::in_addr {
        s_addr: u32::from_ne_bytes([10, 202, 0, 2]),
    };
    // SAFETY: setsockopt(2) reads an in_addr (4 bytes) from `from`, alive
    // for the call.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&tx),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&from as *const libc::in_addr).cast(),
            std::mem::size_of::<libc::in_addr>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    for i in 0..30 {
        let line = |kind: &str| format!("combined,ip={kind},id={i} count=1");
        tx.send_to(line("unicast").as_bytes(), ("10.202.0.1", port))
            .unwrap();
        tx.send_to(line("subnet").as_bytes(), ("10.202.0.255", port))
            .unwrap();
        tx.send_to(line("multicast").as_bytes(), ("239.77.0.1", port))
            .unwrap();
        local
            .send_to(line("loopback").as_bytes(), ("127.255.255.255", port))
            .unwrap();
    }
    d.wait_stats(Duration::from_secs(20), "every datagram counted", |s| {
        points(s) >= 120
    });
    // Copies would arrive with their originals: a window later, all are in.
    d.wait_next_window(Duration::from_secs(10));
    d.stats()
}

/// A datagram sent to a broadcast or multicast address reaches every
/// SO_REUSEPORT socket bound to the port (the kernel hands each a copy);
/// the daemon counts it once, in both modes.
#[test]
fn broadcast_and_multicast_datagrams_are_counted_once_in_both_modes() {
    let test = "broadcast_and_multicast_datagrams_are_counted_once_in_both_modes";
    let Some(ns) = Netns::create("b", 202) else {
        return;
    };
    let mut modes = vec!["userspace"];
    if kernel_available(test) {
        modes.push("kernel");
    }
    for mode in modes {
        let s = broadcast_run(&ns, mode);
        assert_eq!(points(&s), 120, "{mode}: {s}");
        assert_eq!(s["rules"][0]["keys"], 120, "{mode}: {s}");
        assert_eq!(s["dropped"]["receive_queue"], 0, "{mode}: {s}");
        let datagrams =
            s["datagrams_kernel"].as_u64().unwrap() + s["datagrams_userspace"].as_u64().unwrap();
        assert_eq!(datagrams, 120, "{mode}: {s}");
        if mode == "kernel" {
            assert_eq!(s["points_kernel"], 120, "{s}");
        }
    }
}

/// XDP in native mode on the host's end of a veth, the daemon listening on
/// `host_addr` (`ipv6`: the veth's IPv6 address, else its IPv4 one), the
/// sender in the namespace: the kernel counts most lines, and every line
/// exactly once.
fn xdp_on_a_veth_counts_exactly(test: &str, tag: &str, subnet: u8, ipv6: bool) {
    if !kernel_available(test) {
        return;
    }
    let Some(ns) = Netns::create(tag, subnet) else {
        return;
    };
    let c = with_ingest(
        &config("4s", "500ms", &format!("xdp-veth-{tag}")),
        &format!("xdp_interface = \"{}\"\nxdp_mode = \"driver\"", ns.host_if),
    );
    let listen = if ipv6 {
        format!("[fd00:{subnet}::1]:0")
    } else {
        format!("10.{subnet}.0.1:0")
    };
    let d = Daemon::start_on(&c, &listen, &["--mode", "kernel"]);
    assert_eq!(d.stats()["kernel"]["setup"]["attach"], "xdp");
    let shape = Shape {
        keys: 8_000,
        ips: 8_000,
        ids: 2_000,
        lines_per_datagram: (1, 4),
        malformed_per_mille: 2,
        seed: 15,
        ..Shape::default()
    };
    let lines = 30_000u64;
    // The sender runs in the namespace: the same generator, so the test
    // regenerates what it sent.
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, BIN, "loadgen"])
        .args(["--to", &d.udp.to_string()])
        .args(["--lines", &lines.to_string(), "--rate", "30000"])
        .args(["--keys", "8000", "--ips", "8000", "--ids", "2000"])
        .args(["--per-datagram", "1-4", "--malformed-per-mille", "2"])
        .args(["--seed", "15", "--max-time", "20s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut gen = Generator::new(shape);
    let mut buf = Vec::new();
    while gen.valid_lines < lines {
        gen.datagram(&mut buf);
    }
    let sent = Sent {
        datagrams: gen.datagrams,
        valid_lines: gen.valid_lines,
        malformed_lines: gen.malformed_lines,
        elapsed: Duration::ZERO,
    };
    let s = settle(&d, &sent);
    assert_eq!(points(&s), sent.valid_lines, "{s}");
    assert!(
        s["points_kernel"].as_u64().unwrap() > sent.valid_lines / 2,
        "{s}"
    );
    assert_exact(&d, &gen);
}

#[test]
fn xdp_in_native_mode_on_a_veth_counts_traffic_from_another_namespace() {
    let test = "xdp_in_native_mode_on_a_veth_counts_traffic_from_another_namespace";
    xdp_on_a_veth_counts_exactly(test, "x", 201, false);
}

#[test]
fn xdp_in_native_mode_on_a_veth_counts_ipv6_traffic_from_another_namespace() {
    let test = "xdp_in_native_mode_on_a_veth_counts_ipv6_traffic_from_another_namespace";
    xdp_on_a_veth_counts_exactly(test, "x6", 203, true);
}

#[test]
fn kernel_mode_without_privileges_names_the_missing_capabilities() {
    if !kernel_available("kernel_mode_without_privileges_names_the_missing_capabilities") {
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .args([BIN, "run", "--mode", "kernel", "--listen", "127.0.0.1:0"])
        .args(["--http", "127.0.0.1:0"])
        .output();
    let Ok(out) = out else {
        skip("the unprivileged start", "setpriv is not available");
        return;
    };
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--mode kernel: bpf() was refused"), "{err}");
    assert!(err.contains("CAP_BPF"), "{err}");
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
fn a_second_daemon_on_the_same_pin_dir_is_refused_and_the_first_keeps_its_pins() {
    if !kernel_available(
        "a_second_daemon_on_the_same_pin_dir_is_refused_and_the_first_keeps_its_pins",
    ) {
        return;
    }
    let cfg = config("4s", "500ms", "held");
    let pins = std::path::PathBuf::from(pin_dir("held"));
    let d = Daemon::start(&cfg, &["--mode", "kernel"]);
    // Another program's pin beside ours: a map of the first daemon's
    // pinned again under a name of its own.
    std::fs::hard_link(pins.join("counters"), pins.join("foreign"))
        .or_else(|_| std::fs::create_dir(pins.join("foreign")))
        .unwrap();

    let want = format!(
        "pin_dir {} is held by toptraffic pid {}",
        pins.display(),
        d.child.id()
    );
    // Refused in auto mode too: the userspace path would not fix it.
    for mode in ["kernel", "auto"] {
        let (status, err) = common::run_to_exit(
            &cfg,
            &[
                "--mode",
                mode,
                "--http",
                "127.0.0.1:0",
                "--listen",
                "127.0.0.1:0",
            ],
        );
        assert!(!status.success(), "{mode}: {err}");
        assert!(err.contains(&want), "{mode}: {err}");
    }
    for m in PINS {
        assert!(pins.join(m).exists(), "{m} lost to the refused daemon");
    }
    let (_, sent, s) = send(&d, Shape::default(), 5_000, 20_000);
    assert_eq!(s["points_kernel"], sent.valid_lines, "{s}");

    assert!(d.terminate().success());
    for m in PINS {
        assert!(!pins.join(m).exists(), "{m} left behind");
    }
    assert!(
        pins.join("foreign").exists(),
        "the foreign entry was removed"
    );
    let _ = std::fs::remove_file(pins.join("foreign"));
    let _ = std::fs::remove_dir(pins.join("foreign"));
    let _ = std::fs::remove_dir(&pins);
}

#[test]
fn pins_left_by_a_killed_daemon_are_replaced_by_the_next() {
    if !kernel_available("pins_left_by_a_killed_daemon_are_replaced_by_the_next") {
        return;
    }
    let cfg = config("4s", "500ms", "stale");
    let pins = std::path::PathBuf::from(pin_dir("stale"));
    let mut first = Daemon::start(&cfg, &["--mode", "kernel"]);
    let inode = |m: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(pins.join(m)).unwrap().ino()
    };
    let old = inode("counters");
    first.child.kill().unwrap(); // SIGKILL: no unpinning
    first.child.wait().unwrap();
    assert!(pins.join("counters").exists());

    let d = Daemon::start(&cfg, &["--mode", "kernel"]);
    assert_ne!(inode("counters"), old, "the stale pin was not replaced");
    let (_, sent, s) = send(&d, Shape::default(), 5_000, 20_000);
    assert_eq!(s["points_kernel"], sent.valid_lines, "{s}");
    assert!(d.terminate().success());
    for m in PINS {
        assert!(!pins.join(m).exists(), "{m} left behind");
    }
    // The dir was the killed daemon's: left, empty.
    let _ = std::fs::remove_dir(&pins);
}
