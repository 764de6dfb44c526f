//! The exchange: the exact cluster-wide window value of every key that can
//! reach a cluster rule's threshold T, without shipping every key.
//!
//! Threshold pruning as in TPUT (Cao & Wang, PODC 2004): a key whose values
//! on N nodes add up to T or more holds T / N or more on one of them at
//! least. So each interval, for each cluster rule:
//!
//! 1. every node posts its keys of value T / N or more, with their values,
//!    and the union of those keys is the candidates;
//! 2. once every node has, each posts its own values of the candidates it
//!    has not posted yet;
//! 3. once every node has, each reads every node's values of the
//!    candidates: the sum is the key's cluster value, exactly.
//!
//! With `cluster.top = K`, a phase 0 comes first (TPUT's own first phase):
//! every node posts its top K, and τ, the K-th largest sum of what was
//! posted, lowers the pruning threshold to τ / N when that is lower: the
//! cluster's top K is then exact too. τ is small when the K-th key is
//! (a quiet interval, a flat tail), and so many keys become candidates:
//! that is why it is off by default.
//!
//! A node sends its candidates and its values for the others' (a key and a
//! number each): its traffic grows with the candidates, never with its
//! keys. A key left out is under T everywhere but in the sum: it cannot
//! reach T in the cluster. Everything lives under the interval's own Redis
//! keys, which expire a few intervals later.
//!
//! The lease holder also takes each phase for the parked nodes (stopped
//! cleanly within a window, `parked`), from their windows slid to the
//! interval: their lines stay in the sums until they leave the window.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use redis::AsyncCommands;

use super::parked::Parked;
use crate::config::Cluster;
use crate::control::{Control, LocalAnswer, LocalQuery};

/// One exchanged interval of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchanged {
    /// The end of the interval the values are the window of.
    pub window_end: SystemTime,
    /// The nodes whose values are in, sorted.
    pub nodes: Vec<String>,
    /// Each candidate, its cluster value and each node's share (in
    /// `nodes`' order), by value descending.
    pub keys: Vec<(Vec<u8>, f64, Vec<f64>)>,
    /// T / N, the pruning threshold of the interval.
    pub threshold: f64,
    /// Bytes this node sent and received, and its round trips to Redis.
    pub bytes: u64,
    pub round_trips: u64,
    /// Whether every live node took part in both phases (false: a node
    /// missed the deadline; its values are missing from the sums).
    pub complete: bool,
}

/// This node's window, through the rotation thread, which owns it and
/// answers between rotations.
pub struct Local {
    pub control: Arc<Mutex<mpsc::Sender<Control>>>,
    pub rule: String,
}

impl Local {
    /// The keys of value `at_least` or more with their values, and the
    /// values of `keys`; None when the rotation thread does not answer.
    async fn query(
        &self,
        at_least: Option<f64>,
        keys: Vec<Vec<u8>>,
        top: usize,
    ) -> Option<LocalAnswer> {
        let control = self.control.clone();
        let q = LocalQuery {
            rule: self.rule.clone(),
            at_least,
            keys,
            top,
        };
        tokio::task::spawn_blocking(move || {
            let (tx, rx) = mpsc::channel();
            control
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(Control::Local(q, tx))
                .ok()?;
            rx.recv_timeout(Duration::from_secs(5)).ok().flatten()
        })
        .await
        .ok()
        .flatten()
    }
}

/// Whose values a node posts as its own.
pub enum Source<'a> {
    /// This node's window, through the rotation thread.
    Window(&'a Local),
    /// This node's window as it parked it on its way out (the rotation
    /// thread has stopped), slid to the interval ending at the given time.
    Parked(&'a Parked, SystemTime),
}

impl Source<'_> {
    /// The end of the window these values are of, now.
    pub async fn window_end(&self, rule: &str) -> Option<SystemTime> {
        self.query(rule, None, Vec::new(), 0).await?.window_end
    }

    async fn query(
        &self,
        rule: &str,
        at_least: Option<f64>,
        keys: Vec<Vec<u8>>,
        top: usize,
    ) -> Option<LocalAnswer> {
        match self {
            Source::Window(l) => l.query(at_least, keys, top).await,
            Source::Parked(p, end) => {
                let values = p.values(rule, *end);
                Some(LocalAnswer {
                    window_end: Some(*end),
                    over: match at_least {
                        Some(t) => values
                            .iter()
                            .filter(|(_, v)| **v >= t)
                            .map(|(k, v)| (k.clone(), *v))
                            .collect(),
                        None => Vec::new(),
                    },
                    values: keys
                        .iter()
                        .map(|k| values.get(k).copied().unwrap_or(0.0))
                        .collect(),
                    top: largest(&values, top)
                        .into_iter()
                        .map(|(k, v)| (k.clone(), v))
                        .collect(),
                    stateful: Vec::new(),
                })
            }
        }
    }
}

fn millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

struct Keys {
    done0: String,
    candidates: String,
    done1: String,
    done2: String,
    prefix: String,
}

impl Keys {
    fn of(cfg: &Cluster, rule: &str, window_end: SystemTime) -> Keys {
        let prefix = format!("{{{}}}:x:{rule}:{}", cfg.key_prefix, millis(window_end));
        Keys {
            done0: format!("{prefix}:done0"),
            candidates: format!("{prefix}:c"),
            done1: format!("{prefix}:done1"),
            done2: format!("{prefix}:done2"),
            prefix,
        }
    }

    fn values(&self, node: &str) -> String {
        format!("{}:v:{node}", self.prefix)
    }

    fn top(&self, node: &str) -> String {
        format!("{}:t:{node}", self.prefix)
    }
}

/// Waits until `key` (a set of nodes) holds every one of `nodes`, or until
/// `deadline`; whether they all came.
async fn barrier<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    key: &str,
    nodes: &[String],
    deadline: Instant,
    poll: Duration,
    round_trips: &mut u64,
) -> redis::RedisResult<bool> {
    loop {
        let there: usize = conn.scard(key).await?;
        *round_trips += 1;
        if there >= nodes.len() {
            return Ok(true);
        }
        if Instant::now() + poll > deadline {
            return Ok(false);
        }
        tokio::time::sleep(poll).await;
    }
}

/// The `k` largest of `values`, descending.
fn largest(values: &HashMap<Vec<u8>, f64>, k: usize) -> Vec<(&Vec<u8>, f64)> {
    if k == 0 {
        return Vec::new();
    }
    let mut all: Vec<(&Vec<u8>, f64)> = values.iter().map(|(key, v)| (key, *v)).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    all.truncate(k);
    all
}

/// Runs the three phases for `rule` (threshold `t`) among `nodes` (this
/// node's name is `cfg.node`), reading this node's values from `local`,
/// and posting for each node of `proxied` (parked) from its window;
/// within `budget`.
#[allow(clippy::too_many_arguments)]
pub async fn exchange<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    cfg: &Cluster,
    rule: &str,
    t: f64,
    nodes: &[String],
    local: &Source<'_>,
    proxied: &[(String, Arc<Parked>)],
    budget: Duration,
    every: Duration,
) -> redis::RedisResult<Option<Exchanged>> {
    let started = Instant::now();
    let deadline = started + budget;
    let poll = (budget / 50).clamp(Duration::from_millis(2), Duration::from_millis(20));
    let n = nodes.len().max(1);
    let mut threshold = t / n as f64;
    let Some(first) = local
        .query(rule, Some(threshold), Vec::new(), cfg.top)
        .await
    else {
        return Ok(None);
    };
    let (Some(window_end), mut over) = (first.window_end, first.over) else {
        return Ok(None);
    };
    let k = Keys::of(cfg, rule, window_end);
    let ttl = (every * 4).as_millis() as i64;
    // The parked nodes' values in this interval's window.
    let parked: Vec<(&str, HashMap<Vec<u8>, f64>)> = proxied
        .iter()
        .filter(|(node, _)| nodes.contains(node))
        .map(|(node, p)| (node.as_str(), p.values(rule, window_end)))
        .collect();
    let (mut bytes, mut round_trips) = (0u64, 0u64);
    let mut complete = true;

    // Phase 0, with cluster.top = K (TPUT's first phase): every node posts
    // its own top K; τ, the K-th largest sum of what was posted, is at most
    // the K-th largest cluster value, so each key of the cluster's top K
    // holds τ / N or more on some node. Pruning at the lower of T / N and
    // τ / N makes the top K exact as well.
    if cfg.top > 0 {
        let mine = k.top(&cfg.node);
        let mut p = redis::pipe();
        for (key, v) in &first.top {
            let v = v.to_string();
            bytes += (key.len() + v.len()) as u64;
            p.hset(&mine, key, v).ignore();
        }
        p.sadd(&k.done0, &cfg.node).ignore();
        for (node, values) in &parked {
            let theirs = k.top(node);
            for (key, v) in largest(values, cfg.top) {
                let v = v.to_string();
                bytes += (key.len() + v.len()) as u64;
                p.hset(&theirs, key, v).ignore();
            }
            p.sadd(&k.done0, *node).ignore();
            p.pexpire(&theirs, ttl).ignore();
        }
        for key in [&k.done0, &mine] {
            p.pexpire(key, ttl).ignore();
        }
        p.query_async::<()>(conn).await?;
        round_trips += 1;
        complete &= barrier(conn, &k.done0, nodes, deadline, poll, &mut round_trips).await?;
        let mut p = redis::pipe();
        for node in nodes {
            p.hgetall(k.top(node));
        }
        let tops: Vec<Vec<(Vec<u8>, String)>> = p.query_async(conn).await?;
        round_trips += 1;
        let mut partial: std::collections::HashMap<Vec<u8>, f64> = Default::default();
        for (key, v) in tops.into_iter().flatten() {
            bytes += (key.len() + v.len()) as u64;
            *partial.entry(key).or_default() += v.parse::<f64>().unwrap_or(0.0);
        }
        let mut sums: Vec<f64> = partial.into_values().collect();
        sums.sort_by(|a, b| b.total_cmp(a));
        let tau = sums.get(cfg.top - 1).copied().unwrap_or(0.0);
        if tau / (n as f64) < threshold {
            threshold = tau / n as f64;
            let Some(again) = local.query(rule, Some(threshold), Vec::new(), 0).await else {
                return Ok(None);
            };
            if again.window_end != Some(window_end) {
                return Ok(None);
            }
            over = again.over;
        }
    }

    // Phase 1: this node's keys of T / N or more.
    let mut p = redis::pipe();
    let mine = k.values(&cfg.node);
    let mut posted: HashSet<Vec<u8>> = HashSet::with_capacity(over.len());
    for (key, v) in &over {
        let v = v.to_string();
        bytes += (2 * key.len() + v.len()) as u64;
        p.sadd(&k.candidates, key).ignore();
        p.hset(&mine, key, v).ignore();
        posted.insert(key.clone());
    }
    // Keys with alert state are candidates whatever their value, so that
    // a recovery carries the real one.
    for key in &first.stateful {
        if !posted.contains(key) {
            bytes += key.len() as u64;
            p.sadd(&k.candidates, key).ignore();
        }
    }
    p.sadd(&k.done1, &cfg.node).ignore();
    for (node, values) in &parked {
        let theirs = k.values(node);
        for (key, v) in values.iter().filter(|(_, v)| **v >= threshold) {
            let v = v.to_string();
            bytes += (2 * key.len() + v.len()) as u64;
            p.sadd(&k.candidates, key).ignore();
            p.hset(&theirs, key, v).ignore();
        }
        p.sadd(&k.done1, *node).ignore();
        p.pexpire(&theirs, ttl).ignore();
    }
    for key in [&k.candidates, &k.done1, &mine] {
        p.pexpire(key, ttl).ignore();
    }
    p.query_async::<()>(conn).await?;
    round_trips += 1;
    complete &= barrier(conn, &k.done1, nodes, deadline, poll, &mut round_trips).await?;

    // Phase 2: this node's values of the others' candidates.
    let candidates: Vec<Vec<u8>> = conn.smembers(&k.candidates).await?;
    round_trips += 1;
    bytes += candidates.iter().map(|c| c.len() as u64).sum::<u64>();
    let missing: Vec<Vec<u8>> = candidates
        .iter()
        .filter(|c| !posted.contains(*c))
        .cloned()
        .collect();
    let mut p = redis::pipe();
    if !missing.is_empty() {
        let Some(answer) = local.query(rule, None, missing.clone(), 0).await else {
            return Ok(None);
        };
        let values = answer.values;
        if answer.window_end != Some(window_end) {
            // The window moved on meanwhile: these are not its values.
            return Ok(None);
        }
        for (key, v) in missing.iter().zip(values) {
            if v != 0.0 {
                let v = v.to_string();
                bytes += (key.len() + v.len()) as u64;
                p.hset(&mine, key, v).ignore();
            }
        }
    }
    p.sadd(&k.done2, &cfg.node).ignore();
    for (node, values) in &parked {
        let theirs = k.values(node);
        for c in &candidates {
            match values.get(c) {
                Some(v) if *v < threshold => {
                    let v = v.to_string();
                    bytes += (c.len() + v.len()) as u64;
                    p.hset(&theirs, c, v).ignore();
                }
                _ => {}
            }
        }
        p.sadd(&k.done2, *node).ignore();
        p.pexpire(&theirs, ttl).ignore();
    }
    p.pexpire(&k.done2, ttl).ignore();
    p.pexpire(&mine, ttl).ignore();
    p.query_async::<()>(conn).await?;
    round_trips += 1;
    complete &= barrier(conn, &k.done2, nodes, deadline, poll, &mut round_trips).await?;

    // Phase 3: every node's values of the candidates, added up.
    let mut sums: BTreeMap<Vec<u8>, (f64, Vec<f64>)> = candidates
        .iter()
        .map(|c| (c.clone(), (0.0, vec![0.0; nodes.len()])))
        .collect();
    if !candidates.is_empty() {
        for (j, node) in nodes.iter().enumerate() {
            let values: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(k.values(node))
                .arg(candidates.as_slice())
                .query_async(conn)
                .await?;
            round_trips += 1;
            for (c, v) in candidates.iter().zip(values) {
                let Some(v) = v else { continue };
                bytes += v.len() as u64;
                let v: f64 = v.parse().unwrap_or(0.0);
                let e = sums.get_mut(c).expect("a candidate");
                e.0 += v;
                e.1[j] = v;
            }
        }
    }
    let mut keys: Vec<(Vec<u8>, f64, Vec<f64>)> =
        sums.into_iter().map(|(k, (v, s))| (k, v, s)).collect();
    keys.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Some(Exchanged {
        window_end,
        nodes: nodes.to_vec(),
        keys,
        threshold,
        bytes,
        round_trips,
        complete,
    }))
}
