//! Simulated nodes for `cargo xtask bench cluster`: one exchange of a node
//! whose window is a given list of keys, against a real Redis, through the
//! same code as the daemon's. Built only with the `bench` feature.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::exchange::{exchange, Local, Source};
use crate::config::Cluster;
use crate::control::{Control, LocalAnswer};

/// What one node's exchange cost and found.
#[derive(Debug, Clone)]
pub struct Figures {
    pub candidates: usize,
    pub bytes: u64,
    pub round_trips: u64,
    pub complete: bool,
    /// From the start of the exchange to the cluster values.
    pub elapsed: Duration,
    /// Each candidate and its cluster value, by value descending.
    pub values: Vec<(Vec<u8>, f64)>,
}

/// A node's window: its keys and values, answering the exchange's queries
/// on a thread of its own as the rotation thread does.
#[derive(Clone)]
pub struct Window {
    control: Arc<Mutex<mpsc::Sender<Control>>>,
}

impl Window {
    pub fn new(keys: Vec<(Vec<u8>, f64)>, window_end: SystemTime) -> Window {
        let (tx, rx) = mpsc::channel::<Control>();
        std::thread::spawn(move || {
            let index: HashMap<&[u8], f64> = keys.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
            let mut by_value: Vec<&(Vec<u8>, f64)> = keys.iter().collect();
            by_value.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            while let Ok(msg) = rx.recv() {
                let Control::Local(q, reply) = msg else {
                    continue;
                };
                let over = match q.at_least {
                    Some(t) => by_value
                        .iter()
                        .take_while(|(_, v)| *v >= t)
                        .map(|(k, v)| (k.clone(), *v))
                        .collect(),
                    None => Vec::new(),
                };
                let _ = reply.send(Some(LocalAnswer {
                    window_end: Some(window_end),
                    over,
                    values: q
                        .keys
                        .iter()
                        .map(|k| index.get(k.as_slice()).copied().unwrap_or(0.0))
                        .collect(),
                    stateful: Vec::new(),
                    top: by_value
                        .iter()
                        .take(q.top)
                        .map(|(k, v)| (k.clone(), *v))
                        .collect(),
                }));
            }
        });
        Window {
            control: Arc::new(Mutex::new(tx)),
        }
    }
}

/// Runs one exchange of `node` among `nodes` on rule `rule` (threshold
/// `t`), with the window `w`, within `budget`.
#[allow(clippy::too_many_arguments)]
pub async fn exchange_once(
    redis: &str,
    node: &str,
    nodes: &[String],
    rule: &str,
    t: f64,
    top: usize,
    w: &Window,
    budget: Duration,
) -> Result<Figures, String> {
    let cfg = Cluster {
        redis: vec![redis.to_string()],
        node: node.to_string(),
        timeout: budget,
        key_prefix: "bench".into(),
        top,
    };
    let client = redis::Client::open(redis).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let local = Local {
        control: w.control.clone(),
        rule: rule.to_string(),
    };
    let started = Instant::now();
    let x = exchange(
        &mut conn,
        &cfg,
        rule,
        t,
        nodes,
        &Source::Window(&local),
        &[],
        budget,
        budget * 2,
    )
    .await
    .map_err(|e| e.to_string())?
    .ok_or("the window did not answer")?;
    Ok(Figures {
        candidates: x.keys.len(),
        bytes: x.bytes,
        round_trips: x.round_trips,
        complete: x.complete,
        elapsed: started.elapsed(),
        values: x.keys.into_iter().map(|(k, v, _)| (k, v)).collect(),
    })
}
