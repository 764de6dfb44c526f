//! The cluster benchmark: what the exchange of a cluster rule costs each
//! interval, against shipping every key, on one real Redis.
//!
//! N simulated nodes (each a window of seed-shaped (ip, id) keys answering
//! the exchange's queries on a thread of its own, as the rotation thread
//! does) run the daemon's exchange concurrently, interval after interval,
//! against a redis-server the bench starts on a free loopback port. The
//! traffic: 20 heavy keys spread over every node (1.45 to 1.95 times T / N
//! each per node: with 50 nodes 500-700 lines, about 30,000 in the
//! cluster, over T = 17,500 though no node holds more than 700), 200
//! medium keys of 1.15 to 2.85 times T / N on one node each (over T / N,
//! under T), and a tail of `--keys` keys per node of 1-5 lines, each
//! key on two nodes. Per interval and variant (`cluster.top` 0 and 10): the
//! candidates, each node's payload bytes and round trips (as the exchange
//! counts them and /api/v1/cluster shows them), what Redis itself counted
//! (commands, bytes in and out), the slowest node's time, and whether every
//! cluster value equals the true sum. The baseline, in the same run: every
//! node ships every key (HINCRBY into one hash, pipelined) and one reader
//! fetches the hash to find the keys at T, the least a design without
//! pruning does.
//!
//! `cargo xtask bench cluster [-- --nodes 50 --keys 15000,150000
//! --intervals 3]`. Needs /usr/bin/redis-server. Writes
//! target/bench/cluster.md. Under `cargo test` it runs a smoke check: 3
//! nodes of 500 keys, one interval, exact or it fails.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use toptraffic::cluster_sim::{exchange_once, Figures, Window};

const REDIS: &str = "/usr/bin/redis-server";
/// The seed's warn threshold: `"totalCount" > 17500`.
const T: f64 = 17_500.0;
const HEAVY: u64 = 20;
const MEDIUM: u64 = 200;
/// Half the default `every`: the exchange's budget in the daemon.
const BUDGET: Duration = Duration::from_millis(2_500);

struct Args {
    nodes: usize,
    keys: Vec<usize>,
    intervals: usize,
    out: PathBuf,
    /// Under `cargo test` (no `--bench`): 3 nodes, 500 keys, one interval,
    /// and the values must be exact.
    smoke: bool,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    if !argv.iter().any(|a| a == "--bench") {
        return Args {
            nodes: 3,
            keys: vec![500],
            intervals: 1,
            out: std::env::temp_dir(),
            smoke: true,
        };
    }
    Args {
        smoke: false,
        nodes: get("--nodes").map_or(50, |v| v.parse().expect("--nodes N")),
        keys: get("--keys").map_or(vec![15_000, 150_000], |v| {
            v.split(',')
                .map(|k| k.parse().expect("--keys K[,K...]"))
                .collect()
        }),
        intervals: get("--intervals").map_or(3, |v| v.parse().expect("--intervals I")),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench"),
    }
}

/// A redis-server of the bench's own, killed by pid on drop.
struct Redis {
    child: Child,
    url: String,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir();
        let child = Command::new(REDIS)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {REDIS} (apt-get install redis-server): {e}"));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What Redis counted: commands processed, bytes in and out.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    commands: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Counters {
    async fn read(conn: &mut redis::aio::MultiplexedConnection) -> Counters {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(conn)
            .await
            .expect("INFO stats");
        let field = |name: &str| -> u64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("INFO stats has no {name}"))
        };
        Counters {
            commands: field("total_commands_processed"),
            bytes_in: field("total_net_input_bytes"),
            bytes_out: field("total_net_output_bytes"),
        }
    }

    fn since(self, before: Counters) -> Counters {
        Counters {
            commands: self.commands - before.commands,
            bytes_in: self.bytes_in - before.bytes_in,
            bytes_out: self.bytes_out - before.bytes_out,
        }
    }
}

/// The seed-shaped traffic of the cluster: each node's window, and each
/// key's true cluster value for the keys that can be candidates.
struct Traffic {
    windows: Vec<Vec<(Vec<u8>, f64)>>,
    /// The heavy and medium keys' true sums (the tail's never come near
    /// T / N).
    truth: HashMap<Vec<u8>, f64>,
}

impl Traffic {
    fn new(nodes: usize, keys: usize) -> Traffic {
        let n = nodes as u64;
        let pool = (nodes * keys / 2).max(1) as u64;
        let mut truth = HashMap::new();
        let windows = (0..n)
            .map(|node| {
                let mut w = Vec::with_capacity(keys + (HEAVY + MEDIUM) as usize);
                // T / N: the least a key at T holds on one node at least.
                let share = T / nodes as f64;
                for h in 0..HEAVY {
                    let key = format!("172.16.0.{h},L052").into_bytes();
                    // 1.45 to 1.95 times T / N a node (500-699 lines for 50
                    // nodes); node 0 adds h so that the sums differ.
                    let spread = ((h * 37 + node * 11) % 200) as f64 / 400.0;
                    let v =
                        (share * (1.45 + spread)).round() + if node == 0 { h as f64 } else { 0.0 };
                    *truth.entry(key.clone()).or_insert(0.0) += v;
                    w.push((key, v));
                }
                for m in (0..MEDIUM).filter(|m| m % n == node) {
                    let key = format!("172.17.{}.{},L007", m >> 8, m & 255).into_bytes();
                    // 1.15 to 2.85 times T / N (400-1,000 for 50 nodes), and
                    // under T: a candidate that does not alert.
                    let times = 1.15 + ((m * 13) % 600) as f64 / 600.0 * 1.7;
                    let v = (share * times).min(T * 0.9).round();
                    *truth.entry(key.clone()).or_insert(0.0) += v;
                    w.push((key, v));
                }
                // Node `node` holds tail keys node*keys/2 .. +keys: each key
                // on two neighbouring nodes.
                for j in 0..keys as u64 {
                    let id = (node * keys as u64 / 2 + j) % pool;
                    let key = format!(
                        "10.{}.{}.{},L{:03}",
                        (id >> 16) & 255,
                        (id >> 8) & 255,
                        id & 255,
                        id % 997
                    );
                    w.push((key.into_bytes(), (1 + (id * 7 + node) % 5) as f64));
                }
                w
            })
            .collect();
        Traffic { windows, truth }
    }
}

/// One variant's intervals, summed up.
struct Row {
    keys: usize,
    top: usize,
    candidates: usize,
    payload: u64,
    round_trips: u64,
    redis: Counters,
    slowest: Duration,
    exact: bool,
    complete: bool,
}

async fn exchange_round(
    url: &str,
    names: &[String],
    windows: &[Window],
    rule: &str,
    top: usize,
) -> Vec<Figures> {
    let tasks: Vec<_> = names
        .iter()
        .zip(windows)
        .map(|(name, w)| {
            let (url, name, names, rule) = (
                url.to_string(),
                name.clone(),
                names.to_vec(),
                rule.to_string(),
            );
            let w = w.clone();
            tokio::spawn(async move {
                exchange_once(&url, &name, &names, &rule, T, top, &w, BUDGET).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("an exchange task").expect("an exchange"));
    }
    out
}

/// Checks one node's figures against the truth: every key at T is a
/// candidate, every candidate's value is its true sum, and with `top` the
/// first `top` values are the true top.
fn exact(f: &Figures, truth: &HashMap<Vec<u8>, f64>, top: usize) -> bool {
    let at_t = truth.iter().filter(|(_, v)| **v >= T).count();
    let all_right = f
        .values
        .iter()
        .all(|(k, v)| truth.get(k).is_some_and(|t| t == v));
    let found = f.values.iter().filter(|(_, v)| *v >= T).count() == at_t;
    let mut true_top: Vec<f64> = truth.values().copied().collect();
    true_top.sort_by(|a, b| b.total_cmp(a));
    let top_right = f
        .values
        .iter()
        .take(top)
        .map(|(_, v)| *v)
        .eq(true_top.iter().take(top).copied());
    all_right && found && top_right
}

async fn variant(redis: &str, a: &Args, traffic: &Traffic, keys: usize, top: usize) -> Row {
    let client = redis::Client::open(redis).expect("a redis URL");
    let mut admin = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    let names: Vec<String> = (0..a.nodes).map(|n| format!("node{n:02}")).collect();
    let rule = format!("k{keys}-top{top}");
    let base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / 5
        * 5;
    let mut row = Row {
        keys,
        top,
        candidates: 0,
        payload: 0,
        round_trips: 0,
        redis: Counters::default(),
        slowest: Duration::ZERO,
        exact: true,
        complete: true,
    };
    for i in 0..a.intervals {
        let end = UNIX_EPOCH + Duration::from_secs(base + 5 * i as u64);
        let windows: Vec<Window> = traffic
            .windows
            .iter()
            .map(|w| Window::new(w.clone(), end))
            .collect();
        let before = Counters::read(&mut admin).await;
        let figures = exchange_round(redis, &names, &windows, &rule, top).await;
        let counted = Counters::read(&mut admin).await.since(before);
        row.candidates = row.candidates.max(figures[0].candidates);
        row.payload += figures.iter().map(|f| f.bytes).sum::<u64>();
        row.round_trips += figures.iter().map(|f| f.round_trips).sum::<u64>();
        row.redis.commands += counted.commands;
        row.redis.bytes_in += counted.bytes_in;
        row.redis.bytes_out += counted.bytes_out;
        row.slowest = row
            .slowest
            .max(figures.iter().map(|f| f.elapsed).max().unwrap_or_default());
        row.exact &= figures.iter().all(|f| exact(f, &traffic.truth, top));
        row.complete &= figures.iter().all(|f| f.complete);
    }
    row
}

/// The baseline: every node ships its whole window into one hash, then one
/// reader fetches it and keeps the keys at T.
async fn ship_everything(redis: &str, traffic: &Traffic) -> (Counters, Duration, bool) {
    let client = redis::Client::open(redis).expect("a redis URL");
    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut admin = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .expect("connect to redis");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut admin)
        .await
        .expect("FLUSHALL");
    let before = Counters::read(&mut admin).await;
    let started = Instant::now();
    let tasks: Vec<_> = traffic
        .windows
        .iter()
        .map(|w| {
            let (client, w) = (client.clone(), w.clone());
            tokio::spawn(async move {
                // Shipping everything outlasts the client's default reply
                // timeout.
                let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(None);
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await
                    .expect("connect to redis");
                for chunk in w.chunks(10_000) {
                    let mut p = redis::pipe();
                    for (k, v) in chunk {
                        p.cmd("HINCRBY").arg("all").arg(k).arg(*v as i64).ignore();
                    }
                    let _: () = p.query_async(&mut conn).await.expect("HINCRBY");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a shipping task");
    }
    let all: HashMap<Vec<u8>, i64> = redis::cmd("HGETALL")
        .arg("all")
        .query_async(&mut admin)
        .await
        .expect("HGETALL");
    let elapsed = started.elapsed();
    let at_t: HashMap<&Vec<u8>, f64> = all
        .iter()
        .filter(|(_, v)| **v as f64 >= T)
        .map(|(k, v)| (k, *v as f64))
        .collect();
    let right = at_t.len() == traffic.truth.values().filter(|v| **v >= T).count()
        && at_t.iter().all(|(k, v)| traffic.truth.get(*k) == Some(v));
    let counted = Counters::read(&mut admin).await.since(before);
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut admin)
        .await
        .expect("FLUSHALL");
    (counted, elapsed, right)
}

fn main() {
    let a = args();
    if !std::path::Path::new(REDIS).exists() {
        eprintln!("cluster bench: {REDIS} is missing (apt-get install redis-server)");
        // Outside CI the smoke check skips, saying why; CI installs it.
        let skip = a.smoke && std::env::var("CI").as_deref() != Ok("true");
        std::process::exit(if skip { 0 } else { 1 });
    }
    let redis = Redis::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let per = |n: u64| n / (a.nodes * a.intervals) as u64;
    let mut md = String::new();
    writeln!(
        md,
        "{} nodes, T = {T}, {} intervals a variant; per node and interval unless said\n",
        a.nodes, a.intervals
    )
    .unwrap();
    writeln!(
        md,
        "| keys a node | design | candidates | payload bytes (exchange's count) | round trips | Redis commands | bytes at Redis, in + out | slowest node, interval | exact |"
    )
    .unwrap();
    writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---|").unwrap();
    let mut ratios = Vec::new();
    for &keys in &a.keys {
        let traffic = Traffic::new(a.nodes, keys);
        let mut exchange_bytes = 0;
        for top in [0, 10] {
            let r = rt.block_on(variant(&redis.url, &a, &traffic, keys, top));
            let line = format!(
                "| {} | exchange, cluster.top = {} | {} | {} | {} | {} | {} | {:.1} ms | {} |",
                r.keys,
                r.top,
                r.candidates,
                per(r.payload),
                per(r.round_trips),
                per(r.redis.commands),
                per(r.redis.bytes_in + r.redis.bytes_out),
                r.slowest.as_secs_f64() * 1e3,
                match (r.exact, r.complete) {
                    (true, true) => "yes",
                    (false, _) => "NO",
                    (true, false) => "incomplete",
                }
            );
            println!("{line}");
            assert!(!a.smoke || (r.exact && r.complete), "not exact: {line}");
            md.push_str(&line);
            md.push('\n');
            if top == 0 {
                exchange_bytes = (r.redis.bytes_in + r.redis.bytes_out) / a.intervals as u64;
            }
        }
        let (c, elapsed, right) = rt.block_on(ship_everything(&redis.url, &traffic));
        let n = a.nodes as u64;
        let line = format!(
            "| {keys} | ship every key (baseline) | - | - | - | {} | {} | {:.1} ms | {} |",
            c.commands / n,
            (c.bytes_in + c.bytes_out) / n,
            elapsed.as_secs_f64() * 1e3,
            if right { "yes" } else { "NO" }
        );
        println!("{line}");
        assert!(!a.smoke || right, "the baseline is not exact: {line}");
        md.push_str(&line);
        md.push('\n');
        ratios.push((
            keys,
            (c.bytes_in + c.bytes_out) as f64 / exchange_bytes.max(1) as f64,
        ));
    }
    md.push('\n');
    for (keys, r) in ratios {
        let line = format!(
            "{keys} keys a node: the baseline moves {r:.0}x the bytes of the exchange (cluster.top = 0)"
        );
        println!("{line}");
        md.push_str(&line);
        md.push('\n');
    }
    if a.smoke {
        return;
    }
    std::fs::create_dir_all(&a.out).expect("create target/bench");
    let file = a.out.join("cluster.md");
    std::fs::write(&file, &md).expect("write target/bench/cluster.md");
    println!("\n{}", file.display());
}
