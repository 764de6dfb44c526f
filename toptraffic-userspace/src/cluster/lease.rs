//! Alerts sent once across the cluster: every node evaluates a cluster
//! rule's alerts on the same exchanged values, and only the node holding
//! the lease in Redis hands the events to its sinks.
//!
//! The lease is one Redis key holding the holder's name, taken with
//! `SET NX PX` and renewed each interval by its holder; it lapses two
//! intervals after the holder's last renewal, at once when it stops
//! cleanly. Per rule, the holder writes the end of the last interval whose
//! events it sent (the watermark). Every other node keeps the events of
//! its last few intervals; the node that takes the lease over sends those
//! after the watermark, so that a holder's death loses no event and
//! re-sends none (short of a death between its handing an interval's
//! events to its sinks and writing the watermark, a few milliseconds).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use redis::Script;

use crate::alert::engine::Outgoing;
use crate::config::Cluster;

/// Intervals of events a node keeps for a takeover: the lease lapses two
/// intervals after its holder's last renewal, and the successor takes it
/// at its next exchange.
const BACKLOG: usize = 4;

/// Takes the lease if it is free, renews it if it is this node's; the
/// holder's name either way.
const TAKE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return ARGV[1]
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return ARGV[1]
end
return redis.call('GET', KEYS[1])
";

/// Gives the lease up if it is this node's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

fn lease_key(cfg: &Cluster) -> String {
    format!("{{{}}}:lease", cfg.key_prefix)
}

fn sent_key(cfg: &Cluster, rule: &str) -> String {
    format!("{{{}}}:sent:{rule}", cfg.key_prefix)
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// This node's side of the lease, and its events not yet known sent.
#[derive(Default)]
pub struct Sender {
    /// Whether this node held the lease at its last exchange.
    holding: bool,
    /// Per rule: events of the last intervals, oldest first.
    backlog: HashMap<String, VecDeque<(SystemTime, Vec<Outgoing>)>>,
}

impl Sender {
    /// Takes or renews the lease; the holder, and whether this node just
    /// took it over.
    pub async fn renew<C: ConnectionLike + Send + Sync>(
        &mut self,
        conn: &mut C,
        cfg: &Cluster,
        every: Duration,
    ) -> redis::RedisResult<(String, bool)> {
        let holder: String = Script::new(TAKE)
            .key(lease_key(cfg))
            .arg(&cfg.node)
            .arg((every * 2).as_millis() as u64)
            .invoke_async(conn)
            .await?;
        let mine = holder == cfg.node;
        let took_over = mine && !self.holding;
        self.holding = mine;
        Ok((holder, took_over))
    }

    /// Redis did not answer: this node no longer knows it holds the lease,
    /// and the events it kept are stale (the rules run on each node's
    /// counts meanwhile, each node sending its own): none of them is sent
    /// after Redis is back.
    pub fn lost(&mut self) {
        self.holding = false;
        self.backlog.clear();
    }

    /// Events of `rule`'s interval ending at `end`: sent if this node holds
    /// the lease (with, after a takeover, those of earlier intervals the
    /// last holder did not send), kept otherwise. Returns how many were
    /// sent.
    pub async fn offer<C: ConnectionLike + Send + Sync>(
        &mut self,
        conn: &mut C,
        cfg: &Cluster,
        rule: &str,
        end: SystemTime,
        events: Vec<Outgoing>,
    ) -> redis::RedisResult<usize> {
        let q = self.backlog.entry(rule.to_string()).or_default();
        q.push_back((end, events));
        while q.len() > BACKLOG {
            q.pop_front();
        }
        if !self.holding {
            return Ok(0);
        }
        let key = sent_key(cfg, rule);
        let sent: Option<i64> = redis::cmd("GET").arg(&key).query_async(conn).await?;
        let mut n = 0;
        for (t, events) in q.drain(..) {
            if sent.is_some_and(|s| millis(t) <= s) {
                continue;
            }
            for o in &events {
                o.deliver();
            }
            n += events.len();
        }
        // Kept a day: a holder that comes back after longer sends nothing
        // old anyway, its backlog being a few intervals.
        redis::cmd("SET")
            .arg(&key)
            .arg(millis(end))
            .arg("PX")
            .arg(86_400_000u64)
            .query_async::<()>(conn)
            .await?;
        Ok(n)
    }

    /// Gives the lease up (a clean stop), so that another node takes it at
    /// its next exchange.
    pub async fn release<C: ConnectionLike + Send + Sync>(
        &mut self,
        conn: &mut C,
        cfg: &Cluster,
    ) -> redis::RedisResult<()> {
        if self.holding {
            Script::new(RELEASE)
                .key(lease_key(cfg))
                .arg(&cfg.node)
                .invoke_async::<i64>(conn)
                .await?;
            self.holding = false;
        }
        Ok(())
    }
}
