//! Membership: every node writes its heartbeat into one sorted set in
//! Redis each `every` (score: the time in milliseconds), and reads the
//! nodes whose heartbeat is younger than two intervals. A node that stops
//! leaves the set at its next reader's exchange after that (well within a
//! period), and at once when it stops cleanly; a node that starts counts
//! from its first heartbeat.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use std::sync::{mpsc, Arc, Mutex};

use super::exchange::{exchange, Local};
use super::lease::Sender;
use super::status::ClusterStatus;
use crate::alert::engine::{ClusterValues, Outgoing};
use crate::config::Cluster;
use crate::control::{ClusterInput, Control};
use crate::key::Key;

/// Heartbeats a node may miss before it is counted out.
const MISSED: u32 = 2;

/// A connection to one server or to a Redis Cluster.
enum Conn {
    One(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::One(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::One(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::One(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

async fn connect(cfg: &Cluster) -> redis::RedisResult<Conn> {
    crate::install_crypto_provider();
    if let [one] = cfg.redis.as_slice() {
        let client = redis::Client::open(one.as_str())?;
        let conn = client.get_multiplexed_async_connection().await?;
        Ok(Conn::One(conn))
    } else {
        let client = redis::cluster::ClusterClient::new(cfg.redis.clone())?;
        Ok(Conn::Cluster(client.get_async_connection().await?))
    }
}

fn members_key(cfg: &Cluster) -> String {
    // The braces put every key of the cluster in one hash slot.
    format!("{{{}}}:members", cfg.key_prefix)
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where the daemon that last beat under a node name writes its own
/// instance, so that two daemons given one name see each other.
fn instance_key(cfg: &Cluster) -> String {
    format!("{{{}}}:instance:{}", cfg.key_prefix, cfg.node)
}

/// One heartbeat: this node's score now, the stale nodes removed, the
/// live ones read; and the instance that beat under this node's name
/// before, if another one did within two intervals (two daemons with one
/// name: each overwrites the other's, so each sees the other).
async fn beat(
    conn: &mut Conn,
    cfg: &Cluster,
    instance: &str,
    every: Duration,
    now: SystemTime,
) -> redis::RedisResult<(Vec<String>, Option<String>)> {
    let key = members_key(cfg);
    let now_ms = millis(now);
    let missed = (every * MISSED).as_millis() as i64;
    let stale = now_ms - missed;
    let (members, before): (Vec<String>, Option<String>) = redis::pipe()
        .atomic()
        .zadd(&key, &cfg.node, now_ms)
        .ignore()
        .zrembyscore(&key, "-inf", format!("({stale}"))
        .ignore()
        // The set outlives no node by much: gone after a minute unused.
        .pexpire(&key, 60_000 + missed)
        .ignore()
        .zrangebyscore(&key, stale, "+inf")
        // GETSET, not SET .. GET: Redis before 6.2 knows only the first.
        .getset(instance_key(cfg), instance)
        .pexpire(instance_key(cfg), missed)
        .ignore()
        .query_async(conn)
        .await?;
    Ok((members, before.filter(|b| b != instance)))
}

/// When the first exchange is due: a tenth of an interval after the next
/// wall-clock boundary, when every node has closed the interval.
fn first_tick(every: Duration) -> tokio::time::Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let every_ns = every.as_nanos().max(1);
    let into = Duration::from_nanos((now.as_nanos() % every_ns) as u64);
    tokio::time::Instant::now() + (every - into) + every / 10
}

/// Runs until `stop`: each interval a heartbeat, the sending lease taken
/// or renewed, and for each cluster rule the exchange of its candidates'
/// values, whose outcome goes to the rotation thread for the rule's
/// alerts; the events come back and the lease holder sends them. Each
/// step is bounded by `cfg.timeout` (the exchange by half an interval);
/// a failure reconnects next interval and makes the cluster rules run on
/// this node's counts meanwhile. On a clean stop the node gives up the
/// lease and leaves the set.
pub async fn run_cluster(
    cfg: Cluster,
    every: Duration,
    status: Arc<ClusterStatus>,
    control: Arc<Mutex<mpsc::Sender<Control>>>,
    stop: CancellationToken,
) {
    let mut conn: Option<Conn> = None;
    let mut sender = Sender::default();
    // This daemon, told from another given the same node name.
    let instance = format!("{}-{}", std::process::id(), millis(SystemTime::now()));
    // Beats in a row that saw another instance under this node's name.
    let mut twin_beats = 0u32;
    let mut tick = tokio::time::interval_at(first_tick(every), every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let rules = status.view().rules;
        let result = tokio::time::timeout(cfg.timeout, async {
            if conn.is_none() {
                conn = Some(connect(&cfg).await?);
            }
            let c = conn.as_mut().expect("connected above");
            let (members, other) = beat(c, &cfg, &instance, every, SystemTime::now()).await?;
            let lease = sender.renew(c, &cfg, every).await?;
            Ok::<_, redis::RedisError>((members, lease, other))
        })
        .await;
        let result = match result {
            Ok(Ok((mut members, lease, other))) => {
                members.sort();
                // Twice in a row: once may be this node's previous run,
                // restarted within two intervals. Said once when a twin
                // appears, once when it is gone.
                let twinned = twin_beats >= 2;
                twin_beats = if other.is_some() { twin_beats + 1 } else { 0 };
                if twin_beats == 2 {
                    error!(
                        node = %cfg.node,
                        other = other.as_deref().unwrap_or_default(),
                        "cluster: another daemon beats under this node's name; the cluster counts one of them and both may send: give each its own [cluster] node"
                    );
                } else if twin_beats == 0 && twinned {
                    info!(node = %cfg.node, "cluster: no other daemon beats under this node's name now");
                }
                Ok((members, lease))
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within cluster.timeout ({})",
                humantime::format_duration(cfg.timeout)
            )),
        };
        if result.is_err() {
            // A new connection next time: this one may be broken.
            conn = None;
            sender.lost();
        }
        let error = result.as_ref().err().cloned().unwrap_or_default();
        let (members, lease) = match &result {
            Ok((m, l)) => (m.clone(), Some(l.clone())),
            Err(_) => (Vec::new(), None),
        };
        let (was, now) = status.record(result.map(|(m, _)| m), SystemTime::now());
        // Once per outage and once per return, not once per interval.
        if now && !was {
            info!(node = %cfg.node, members = members.len(), "cluster: Redis answers");
        } else if !now && (was || status.view().failures == 1) {
            warn!(
                node = %cfg.node,
                error,
                "cluster: Redis does not answer; cluster rules run on this node's counts"
            );
        }
        if let Some((holder, took_over)) = lease {
            if took_over {
                info!(node = %cfg.node, "cluster: this node holds the sending lease");
            }
            status.set_lease(Some(holder), took_over);
        }
        let Some(c) = conn.as_mut().filter(|_| now) else {
            for rule in &rules {
                evaluate(&control, &rule.name, None).await;
            }
            continue;
        };
        let mut failed = false;
        for rule in &rules {
            if failed {
                evaluate(&control, &rule.name, None).await;
                continue;
            }
            let local = Local {
                control: control.clone(),
                rule: rule.name.clone(),
            };
            let budget = every / 2;
            let done = tokio::time::timeout(
                budget + cfg.timeout,
                exchange(c, &cfg, rule.threshold, &members, &local, budget, every),
            )
            .await;
            let x = match done {
                Ok(Ok(Some(x))) => x,
                // The window moved on meanwhile: the rotation falls back.
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    warn!(rule = %rule.name, error = %e, "cluster: the exchange failed");
                    failed = true;
                    evaluate(&control, &rule.name, None).await;
                    continue;
                }
                Err(_) => {
                    warn!(rule = %rule.name, "cluster: the exchange ran out of time");
                    failed = true;
                    evaluate(&control, &rule.name, None).await;
                    continue;
                }
            };
            let end = x.window_end;
            let values = ClusterValues {
                nodes: x.nodes.iter().cloned().collect(),
                keys: x
                    .keys
                    .iter()
                    .map(|(k, v, shares)| (Key::from(k.as_slice()), (*v, shares.clone())))
                    .collect(),
            };
            status.set_values(&rule.name, x);
            let events = evaluate(&control, &rule.name, Some((end, values))).await;
            let sent =
                tokio::time::timeout(cfg.timeout, sender.offer(c, &cfg, &rule.name, end, events))
                    .await;
            if !matches!(sent, Ok(Ok(_))) {
                warn!(rule = %rule.name, "cluster: the lease's watermark could not be written");
                failed = true;
            }
        }
        if failed {
            conn = None;
            sender.lost();
        }
    }
    if let Some(c) = conn.as_mut() {
        let key = members_key(&cfg);
        let _ = tokio::time::timeout(cfg.timeout, async {
            let _ = sender.release(c, &cfg).await;
            redis::cmd("ZREM")
                .arg(&key)
                .arg(&cfg.node)
                .query_async::<i64>(c)
                .await
        })
        .await;
    }
}

/// Hands an exchange's outcome for `rule` to the rotation thread, which
/// evaluates the rule's alerts; the events it decided.
async fn evaluate(
    control: &Arc<Mutex<mpsc::Sender<Control>>>,
    rule: &str,
    values: Option<(SystemTime, ClusterValues)>,
) -> Vec<Outgoing> {
    let control = control.clone();
    let input = ClusterInput {
        rule: rule.to_string(),
        values,
    };
    tokio::task::spawn_blocking(move || {
        let (tx, rx) = mpsc::channel();
        control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Control::Cluster(input, tx))
            .ok()?;
        rx.recv_timeout(Duration::from_secs(5)).ok()
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}
