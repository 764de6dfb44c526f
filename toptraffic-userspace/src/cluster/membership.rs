//! Membership: every node writes its heartbeat into one sorted set in
//! Redis each `every` (score: the time in milliseconds), and reads the
//! nodes whose heartbeat is younger than two intervals. A node that stops
//! leaves the set at its next reader's exchange after that (well within a
//! period), and at once when it stops cleanly; a node that starts counts
//! from its first heartbeat. A node that stops cleanly parks its window
//! (`parked`) for the others to go on adding until it has left the window.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use std::sync::{mpsc, Arc, Mutex};

use super::exchange::{exchange, Local, Source};
use super::lease::Sender;
use super::parked::Parked;
use super::status::ClusterStatus;
use crate::alert::engine::{ClusterValues, Outgoing};
use crate::config::{Cluster, Window};
use crate::control::{ClusterInput, Control};
use crate::key::Key;
use crate::snapshot::Intervals;

/// Heartbeats a node may miss before it is counted out.
const MISSED: u32 = 2;

/// Parked windows taken into the exchange at most, the latest ones: a
/// rolling restart parks a node at a time, each for a window; a tier
/// stopped whole must not fill the lease holder's memory with them.
const MAX_PARKED: isize = 4;

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

/// The nodes parked (score: when their window is gone, in milliseconds).
fn parked_key(cfg: &Cluster) -> String {
    format!("{{{}}}:parked", cfg.key_prefix)
}

/// A parked node's window.
fn parked_window_key(cfg: &Cluster, node: &str) -> String {
    format!("{{{}}}:parked:{node}", cfg.key_prefix)
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

/// The end of a daemon's name when it started without the window its node
/// had (no state file, no parked window): the lines counted before are
/// lost.
const FRESH: &str = "-fresh";

/// Each node's daemon, as of its last heartbeat: a node back in the live
/// set under the same one never stopped (its window is whole).
fn instances_key(cfg: &Cluster) -> String {
    format!("{{{}}}:instances", cfg.key_prefix)
}

/// One heartbeat: this node's score now, the stale nodes removed, the
/// live ones read, and the parked ones (with when each parked window goes,
/// which names it); and the instance that beat under this node's name
/// before, if another one did within two intervals (two daemons with one
/// name: each overwrites the other's, so each sees the other). A node that
/// beats is not parked: its own window, restored, counts again.
async fn beat(
    conn: &mut Conn,
    cfg: &Cluster,
    instance: &str,
    every: Duration,
    now: SystemTime,
) -> redis::RedisResult<Beat> {
    let key = members_key(cfg);
    let parked = parked_key(cfg);
    let now_ms = millis(now);
    let missed = (every * MISSED).as_millis() as i64;
    let stale = now_ms - missed;
    let (members, parked, before, instances): BeatReply = redis::pipe()
        .atomic()
        .zadd(&key, &cfg.node, now_ms)
        .ignore()
        .zrembyscore(&key, "-inf", format!("({stale}"))
        .ignore()
        // The set outlives no node by much: gone after a minute unused.
        .pexpire(&key, 60_000 + missed)
        .ignore()
        .zrangebyscore(&key, stale, "+inf")
        .zrem(&parked, &cfg.node)
        .ignore()
        .del(parked_window_key(cfg, &cfg.node))
        .ignore()
        .zrembyscore(&parked, "-inf", format!("({now_ms}"))
        .ignore()
        // The latest few: each is a window the lease holder holds.
        .zrevrangebyscore_limit_withscores(&parked, "+inf", now_ms, 0, MAX_PARKED)
        // GETSET, not SET .. GET: Redis before 6.2 knows only the first.
        .getset(instance_key(cfg), instance)
        .pexpire(instance_key(cfg), missed)
        .ignore()
        .hset(instances_key(cfg), &cfg.node, instance)
        .ignore()
        .pexpire(instances_key(cfg), 60_000 + missed)
        .ignore()
        .hgetall(instances_key(cfg))
        .query_async(conn)
        .await?;
    // A node both beating and parked (a twin's stop) counts as live.
    let parked = parked
        .into_iter()
        .filter(|(n, _)| !members.contains(n))
        .collect();
    Ok(Beat {
        members,
        parked,
        twin: before.filter(|b| b != instance),
        instances,
    })
}

/// A heartbeat's replies: the live nodes, the parked ones with their
/// windows' ends, the daemon that beat under this name before, and each
/// node's daemon.
type BeatReply = (
    Vec<String>,
    Vec<(String, i64)>,
    Option<String>,
    HashMap<String, String>,
);

/// What a heartbeat read.
struct Beat {
    members: Vec<String>,
    /// Parked nodes, and when each one's window goes (its version).
    parked: Vec<(String, i64)>,
    twin: Option<String>,
    /// Each node's daemon as of its last heartbeat.
    instances: HashMap<String, String>,
}

/// Parks this stopping node's window under its name for `period` (the
/// window's length: all of it has left the window by then), and takes the
/// node out of the live set, in one step.
async fn park(
    conn: &mut Conn,
    cfg: &Cluster,
    window: &[u8],
    period: Duration,
    now: SystemTime,
) -> redis::RedisResult<()> {
    let until = millis(now) + period.as_millis() as i64;
    redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(parked_window_key(cfg, &cfg.node))
        .arg(window)
        .arg("PX")
        .arg(period.as_millis() as u64)
        .ignore()
        .zadd(parked_key(cfg), &cfg.node, until)
        .ignore()
        .pexpire(parked_key(cfg), period.as_millis() as i64 + 60_000)
        .ignore()
        .zrem(members_key(cfg), &cfg.node)
        .ignore()
        .query_async(conn)
        .await
}

/// The parked windows this node, holding the lease, posts for their nodes
/// in the exchange: read from Redis once each (by node and version).
#[derive(Default)]
struct ParkedWindows {
    by_node: HashMap<String, (i64, Option<Arc<Parked>>)>,
}

impl ParkedWindows {
    /// Those of `parked`, read as needed; a window that cannot be read or
    /// is of another shape is reported once and left out.
    async fn of(
        &mut self,
        conn: &mut Conn,
        cfg: &Cluster,
        parked: &[(String, i64)],
        every: Duration,
        intervals: usize,
    ) -> Vec<(String, Arc<Parked>)> {
        self.by_node
            .retain(|node, (v, _)| parked.iter().any(|(n, at)| n == node && at == v));
        let mut out = Vec::new();
        for (node, version) in parked {
            if !self.by_node.contains_key(node) {
                let key = parked_window_key(cfg, node);
                let got = tokio::time::timeout(cfg.timeout, async {
                    redis::cmd("GET")
                        .arg(&key)
                        .query_async::<Option<Vec<u8>>>(conn)
                        .await
                })
                .await;
                let window = match got {
                    Ok(Ok(Some(bytes))) => match Parked::decode(&bytes, every, intervals) {
                        Ok(p) => Some(Arc::new(p)),
                        Err(e) => {
                            warn!(node, error = %e, "cluster: a parked window cannot be read; left out");
                            // Out of the others' exchanges too, which
                            // would wait for it.
                            let _ = tokio::time::timeout(cfg.timeout, async {
                                redis::pipe()
                                    .zrem(parked_key(cfg), node)
                                    .del(&key)
                                    .query_async::<()>(conn)
                                    .await
                            })
                            .await;
                            None
                        }
                    },
                    // Gone already, or slow: looked for again next interval.
                    Ok(Ok(None)) | Ok(Err(_)) | Err(_) => continue,
                };
                info!(
                    node,
                    "cluster: a node parked its window; this node posts it until it is back"
                );
                self.by_node.insert(node.clone(), (*version, window));
            }
            if let Some((_, Some(p))) = self.by_node.get(node) {
                out.push((node.clone(), p.clone()));
            }
        }
        out
    }
}

/// The window this node parked when it last stopped, if it is still
/// there (within a window of the stop), read within `cfg.timeout`: a node
/// that starts without its state file takes it back, so that its first
/// heartbeat, which ends the parking, does not take those lines out of
/// the cluster's values.
pub async fn own_parked_window(cfg: &Cluster) -> Option<Vec<u8>> {
    let got = tokio::time::timeout(cfg.timeout, async {
        let mut conn = connect(cfg).await?;
        redis::cmd("GET")
            .arg(parked_window_key(cfg, &cfg.node))
            .query_async::<Option<Vec<u8>>>(&mut conn)
            .await
    })
    .await;
    match got {
        Ok(Ok(window)) => window,
        Ok(Err(e)) => {
            warn!(error = %e, "cluster: could not read this node's parked window");
            None
        }
        Err(_) => {
            warn!("cluster: this node's parked window not read within cluster.timeout");
            None
        }
    }
}

/// Nodes that left the live set without parking (died, or lost Redis):
/// their lines left the cluster's values at once, where one central
/// counter would hold them until they leave the window. For a window
/// period after, the values are a lower bound, and the alerts take them as
/// such.
/// A node back under the daemon it left with never stopped (it lost Redis
/// a while, or Redis lost its heartbeats in a restart): its window is
/// whole, and it is no longer departed. A node that restarted faster than
/// its heartbeat goes stale never leaves the live set: it departs when
/// its daemon changes to one that started without its window
/// ([`FRESH`]).
#[derive(Debug, Default)]
struct Departed {
    /// The live nodes at the last heartbeat, with their daemons.
    live: Vec<(String, Option<String>)>,
    /// Each departed node: until when its lines may still be in a window,
    /// and the daemon it left with.
    until: HashMap<String, (SystemTime, Option<String>)>,
}

impl Departed {
    /// Takes a heartbeat's live and parked nodes (sorted) and the nodes'
    /// daemons at `now`; whether no node departed less than `period` ago
    /// (nor may have). `settled`: this node's previous heartbeat was
    /// answered too. After an outage of this node's own the others may not
    /// have beaten since Redis came back (a restart loses every
    /// heartbeat): a node missing then is compared again at the next
    /// heartbeat, and only the values are partial meanwhile.
    fn whole(
        &mut self,
        live: &[String],
        parked: &[String],
        instances: &HashMap<String, String>,
        (now, period): (SystemTime, Duration),
        settled: bool,
    ) -> bool {
        let stays = |n: &String| live.binary_search(n).is_ok() || parked.binary_search(n).is_ok();
        let missing = self.live.iter().any(|(n, _)| !stays(n));
        for (n, instance) in &self.live {
            // Restarted without its window within two intervals: still live.
            let now_as = instances.get(n);
            let restarted = live.binary_search(n).is_ok()
                && instance.is_some()
                && now_as.is_some_and(|i| i.ends_with(FRESH))
                && now_as != instance.as_ref();
            let why = if settled && !stays(n) {
                "cluster: a node left the live set without parking its window; alerts hold their levels for a window"
            } else if restarted {
                "cluster: a node restarted without its window; alerts hold their levels for a window"
            } else {
                continue;
            };
            warn!(node = %n, "{why}");
            // Under the daemon it left with: a restarted one is never
            // `back`.
            self.until
                .insert(n.clone(), (now + period, instance.clone()));
        }
        self.until.retain(|n, (until, instance)| {
            let back = live.binary_search(n).is_ok()
                && instance.is_some()
                && instances.get(n) == instance.as_ref();
            if back {
                info!(node = %n, "cluster: a node is back, the same daemon: its lines count again");
            }
            *until > now && !back
        });
        if !settled {
            return self.until.is_empty() && !missing;
        }
        self.live = live
            .iter()
            .map(|n| (n.clone(), instances.get(n).cloned()))
            .collect();
        self.until.is_empty()
    }

    /// The departed nodes, sorted.
    fn nodes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.until.keys().cloned().collect();
        v.sort();
        v
    }
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
/// this node's counts meanwhile. On a clean stop the node parks its window
/// (once the rotation thread hands it over), gives up the lease and leaves
/// the set. `restored`: the daemon started with its node's window (from
/// the state file or the parked window).
pub async fn run_cluster(
    cfg: Cluster,
    window: Window,
    status: Arc<ClusterStatus>,
    control: Arc<Mutex<mpsc::Sender<Control>>>,
    stop: CancellationToken,
    restored: bool,
) {
    let every = window.every;
    let mut conn: Option<Conn> = None;
    let mut sender = Sender::default();
    let mut parked_windows = ParkedWindows::default();
    let mut departed = Departed::default();
    // This daemon, told from another given the same node name, and whether
    // it started with the window its node had.
    let instance = format!(
        "{}-{}{}",
        std::process::id(),
        millis(SystemTime::now()),
        if restored { "" } else { FRESH }
    );
    // Beats in a row that saw another instance under this node's name.
    let mut twin_beats = 0u32;
    // Whether a heartbeat of this daemon's was answered yet.
    let mut beaten = false;
    // When this node last posted all of an interval's values (wall clock).
    let mut last_run: Option<SystemTime> = None;
    let mut tick = tokio::time::interval_at(first_tick(every), every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Whether this node has taken part yet (see below).
    let mut joined = false;
    // Once stopping: until when it waits for the window to park.
    let mut stop_by: Option<tokio::time::Instant> = None;
    let mut leaving = status.leaving();
    loop {
        tokio::select! {
            _ = stop.cancelled(), if stop_by.is_none() => {
                if status.view().rules.is_empty() {
                    break;
                }
                // It goes on taking part (the others count it live) until
                // the rotation thread hands its window over to park.
                stop_by = Some(tokio::time::Instant::now() + LEAVING_WAIT);
                continue;
            }
            _ = tokio::time::sleep_until(stop_by.unwrap_or_else(tokio::time::Instant::now)), if stop_by.is_some() => break,
            _ = leaving.wait_for(Option::is_some) => break,
            _ = tick.tick() => {}
        }
        let ticked = SystemTime::now();
        let mut posted = true;
        let rules = status.view().rules;
        // A node joins once its window has closed the interval the others
        // exchange now: counted live before, it would post nothing for it
        // (a restarted node's restored window ends earlier), and its share
        // would be missing, its parked window gone.
        if let (false, Some(r)) = (joined, rules.first()) {
            let local = Local {
                control: control.clone(),
                rule: r.name.clone(),
            };
            let end = Source::Window(&local).window_end(&r.name).await;
            if end.is_none_or(|e| e < last_boundary(ticked, every)) {
                continue;
            }
        }
        joined = true;
        let result = tokio::time::timeout(cfg.timeout, async {
            if conn.is_none() {
                conn = Some(connect(&cfg).await?);
            }
            let c = conn.as_mut().expect("connected above");
            let beat = beat(c, &cfg, &instance, every, SystemTime::now()).await?;
            let lease = sender.renew(c, &cfg, every).await?;
            Ok::<_, redis::RedisError>((beat, lease))
        })
        .await;
        // This daemon's first heartbeat found its node's previous daemon
        // alive within two intervals, and it started without that one's
        // window: it sits out this interval's exchange, so that every other
        // node sees the new daemon (and takes the values as partial, see
        // Departed) before it posts.
        let mut sit_out = false;
        let result = match result {
            Ok(Ok((beat, lease))) => {
                let Beat {
                    mut members,
                    mut parked,
                    twin: other,
                    instances,
                } = beat;
                members.sort();
                parked.sort();
                // Twice in a row: once may be this node's previous run,
                // restarted within two intervals. Said once when a twin
                // appears, once when it is gone.
                let twinned = twin_beats >= 2;
                twin_beats = if other.is_some() { twin_beats + 1 } else { 0 };
                sit_out = !beaten && other.is_some() && !restored;
                beaten = true;
                if twin_beats == 2 {
                    error!(
                        node = %cfg.node,
                        other = other.as_deref().unwrap_or_default(),
                        "cluster: another daemon beats under this node's name; the cluster counts one of them and both may send: give each its own [cluster] node"
                    );
                } else if twin_beats == 0 && twinned {
                    info!(node = %cfg.node, "cluster: no other daemon beats under this node's name now");
                }
                Ok((members, parked, lease, instances))
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
        let (members, parked, lease, instances) = match &result {
            Ok((m, p, l, i)) => (m.clone(), p.clone(), Some(l.clone()), i.clone()),
            Err(_) => (Vec::new(), Vec::new(), None, HashMap::new()),
        };
        let (was, now) = status.record(
            result.map(|(m, p, _, _)| (m, p.into_iter().map(|(n, _)| n).collect())),
            SystemTime::now(),
        );
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
        let holding = lease.as_ref().is_some_and(|(h, _)| *h == cfg.node);
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
        // Parked nodes take part in every exchange: the lease holder posts
        // their windows for them.
        let parked_nodes: Vec<String> = parked.iter().map(|(n, _)| n.clone()).collect();
        let whole = departed.whole(
            &members,
            &parked_nodes,
            &instances,
            (SystemTime::now(), window.period),
            was,
        );
        status.set_departed(departed.nodes());
        if sit_out {
            info!(node = %cfg.node, "cluster: restarted without the window of this node's previous daemon; this node sits out one exchange");
            continue;
        }
        let nodes = exchange_nodes(members.clone(), parked_nodes);
        let proxied = if holding {
            parked_windows
                .of(c, &cfg, &parked, every, window.intervals())
                .await
        } else {
            Vec::new()
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
                exchange(
                    c,
                    &cfg,
                    &rule.name,
                    rule.threshold,
                    &nodes,
                    &Source::Window(&local),
                    &proxied,
                    budget,
                    every,
                ),
            )
            .await;
            let x = match done {
                Ok(Ok(Some(x))) => x,
                // The window moved on meanwhile: the rotation falls back.
                Ok(Ok(None)) => {
                    posted = false;
                    continue;
                }
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
                complete: x.complete && whole,
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
        if posted && !failed {
            last_run = Some(ticked);
        }
    }
    // The window with the open interval folded in, once the rotation
    // thread has it (only cluster rules' windows are parked).
    let parks = !status.view().rules.is_empty();
    let wait = stop_by.map_or(LEAVING_WAIT, |by| {
        by.saturating_duration_since(tokio::time::Instant::now())
    });
    let leaving = match parks {
        true => status.left_behind(wait).await,
        false => None,
    };
    if let Some(c) = conn.as_mut() {
        let mut parked_ok = false;
        if let Some(w) = &leaving {
            let parked = tokio::time::timeout(
                PARK_WAIT.max(cfg.timeout),
                park(c, &cfg, w, window.period, SystemTime::now()),
            )
            .await;
            parked_ok = matches!(parked, Ok(Ok(())));
            match parked {
                Ok(Ok(())) => info!(
                    node = %cfg.node,
                    bytes = w.len(),
                    "cluster: parked this node's window: the cluster counts its lines until they leave the window"
                ),
                Ok(Err(e)) => warn!(
                    node = %cfg.node,
                    error = %e,
                    "cluster: could not park this node's window; its share leaves the cluster's values"
                ),
                Err(_) => warn!(
                    node = %cfg.node,
                    "cluster: could not park this node's window in time; its share leaves the cluster's values"
                ),
            }
        } else if parks {
            warn!(node = %cfg.node, "cluster: the window was not handed over in time; its share leaves the cluster's values");
        }
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
        // The others may have begun an interval's exchange with this node
        // still among the live ones, after it stopped taking part: it
        // posts its parked window for that interval itself.
        let missed = missed_exchange(last_run, every, SystemTime::now());
        if let (true, Some(w), Some((end, left))) = (parked_ok, &leaving, missed) {
            if let Ok(own) = Parked::decode(w, every, window.intervals()) {
                let rules = status.view().rules;
                let _ = tokio::time::timeout(left + cfg.timeout, async {
                    let nodes = read_nodes(c, &cfg, every, SystemTime::now()).await?;
                    for rule in &rules {
                        let own = Source::Parked(&own, end);
                        exchange(
                            c,
                            &cfg,
                            &rule.name,
                            rule.threshold,
                            &nodes,
                            &own,
                            &[],
                            left,
                            every,
                        )
                        .await?;
                    }
                    Ok::<_, redis::RedisError>(())
                })
                .await;
            }
        }
    }
}

/// The last interval boundary at or before `t`.
fn last_boundary(t: SystemTime, every: Duration) -> SystemTime {
    let intervals = Intervals::new(every);
    intervals.start(intervals.index_at(t))
}

/// The interval whose exchange began (at a tick: a tenth of an interval
/// past its end) after this node last ran one, while the others are
/// still at it (within half an interval): its end, and the time left.
fn missed_exchange(
    last_run: Option<SystemTime>,
    every: Duration,
    now: SystemTime,
) -> Option<(SystemTime, Duration)> {
    // Ticks come a tenth of an interval after each boundary.
    let end = last_boundary(now.checked_sub(every / 10)?, every);
    let tick = end + every / 10;
    let ran = last_run.is_some_and(|l| l + every / 2 >= tick);
    let left = (tick + every / 2).duration_since(now).ok()?;
    (!ran && !left.is_zero()).then_some((end, left))
}

/// The nodes of an exchange as the others read them at their heartbeat:
/// the live ones and the parked ones, sorted; without a heartbeat of this
/// node's own.
async fn read_nodes(
    conn: &mut Conn,
    cfg: &Cluster,
    every: Duration,
    now: SystemTime,
) -> redis::RedisResult<Vec<String>> {
    let now_ms = millis(now);
    let stale = now_ms - (every * MISSED).as_millis() as i64;
    let (live, parked): (Vec<String>, Vec<String>) = redis::pipe()
        .zrangebyscore(members_key(cfg), stale, "+inf")
        .zrevrangebyscore_limit(parked_key(cfg), "+inf", now_ms, 0, MAX_PARKED)
        .query_async(conn)
        .await?;
    Ok(exchange_nodes(live, parked))
}

/// The nodes of an exchange: the live ones and the parked ones (a node
/// both live and parked, a twin's stop, once), sorted.
fn exchange_nodes(mut live: Vec<String>, parked: impl IntoIterator<Item = String>) -> Vec<String> {
    for p in parked {
        if !live.contains(&p) {
            live.push(p);
        }
    }
    live.sort();
    live
}

/// How long a stopping node waits for the rotation thread's window (it
/// first saves the state file).
const LEAVING_WAIT: Duration = Duration::from_secs(5);
/// How long it may take to park the window (it may be megabytes).
const PARK_WAIT: Duration = Duration::from_secs(3);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_leaves_without_parking_leaves_the_values_partial_for_a_window() {
        let mut d = Departed::default();
        let period = Duration::from_secs(60);
        let at = |s: u64| (UNIX_EPOCH + Duration::from_secs(1_000 + s), period);
        let v = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let daemons = |of: &[(&str, &str)]| {
            of.iter()
                .map(|(n, i)| (n.to_string(), i.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let first = daemons(&[("a", "1"), ("b", "2"), ("c", "3")]);
        assert!(d.whole(&v(&["a", "b", "c"]), &[], &first, at(0), true));
        // b parks (a clean stop): whole; c is gone without a trace.
        assert!(!d.whole(&v(&["a"]), &v(&["b"]), &first, at(5), true));
        assert_eq!(d.nodes(), ["c"]);
        // b's parked window expires: its lines left the window with it.
        assert!(!d.whole(&v(&["a"]), &[], &first, at(64), true));
        assert!(d.whole(&v(&["a"]), &[], &first, at(65), true));
        assert!(d.nodes().is_empty());
        // c is back under another daemon (restarted: its lines before are
        // lost) and gone again: departed anew, and still when back again
        // under yet another.
        let second = daemons(&[("a", "1"), ("c", "4")]);
        assert!(d.whole(&v(&["a", "c"]), &[], &second, at(70), true));
        assert!(!d.whole(&v(&["a"]), &[], &second, at(75), true));
        let third = daemons(&[("a", "1"), ("c", "5")]);
        assert!(!d.whole(&v(&["a", "c"]), &[], &third, at(80), true));
        assert!(d.whole(&v(&["a", "c"]), &[], &third, at(135), true));
        // Redis restarts while a's heartbeats fail: its first one after
        // sees only itself (the values partial, c not yet departed); c's
        // comes next, under the daemon it had: whole.
        let alone = daemons(&[("a", "1")]);
        assert!(!d.whole(&v(&["a"]), &[], &alone, at(140), false));
        assert!(d.nodes().is_empty());
        assert!(d.whole(&v(&["a", "c"]), &[], &third, at(141), true));
        // c dies while a's heartbeats fail: departed a heartbeat later.
        assert!(!d.whole(&v(&["a"]), &[], &alone, at(150), false));
        assert!(!d.whole(&v(&["a"]), &[], &alone, at(151), true));
        assert_eq!(d.nodes(), ["c"]);
        assert!(d.whole(&v(&["a"]), &[], &alone, at(211), true));
        // b restarts faster than its heartbeat goes stale: under a daemon
        // that restored its window, whole; under one that could not, its
        // lines before are lost: departed, whatever it does next.
        let b = |i: &str| daemons(&[("a", "1"), ("b", i)]);
        assert!(d.whole(&v(&["a", "b"]), &[], &b("6"), at(215), true));
        assert!(d.whole(&v(&["a", "b"]), &[], &b("7"), at(216), true));
        let fresh = format!("8{FRESH}");
        assert!(!d.whole(&v(&["a", "b"]), &[], &b(&fresh), at(217), true));
        assert_eq!(d.nodes(), ["b"]);
        assert!(!d.whole(&v(&["a", "b"]), &[], &b(&fresh), at(218), true));
        assert!(d.whole(&v(&["a", "b"]), &[], &b(&fresh), at(277), true));
    }

    #[test]
    fn a_stopping_node_posts_for_the_exchange_it_missed_while_the_others_wait() {
        let every = Duration::from_secs(5);
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        // Ticks at 100.5 s, 105.5 s, ...: the exchange of the interval
        // ending at 100 s runs from 100.5 s to 103 s.
        assert_eq!(
            missed_exchange(Some(at(95_500)), every, at(100_600)),
            Some((at(100_000), Duration::from_millis(2_400)))
        );
        assert_eq!(
            missed_exchange(None, every, at(100_600)),
            Some((at(100_000), Duration::from_millis(2_400)))
        );
        // It ran that one itself.
        assert_eq!(missed_exchange(Some(at(100_510)), every, at(100_600)), None);
        // The others are done with it.
        assert_eq!(missed_exchange(Some(at(95_500)), every, at(103_500)), None);
        // Before the tick: the last one ran, or is over.
        assert_eq!(missed_exchange(Some(at(95_500)), every, at(100_300)), None);
        assert_eq!(missed_exchange(Some(at(90_500)), every, at(100_300)), None);
    }
}
