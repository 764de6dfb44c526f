//! What `cargo xtask bench micro` times of the alerting: a rule's decisions
//! over a full window of keys none of which alerts (the steady state, every
//! interval), and one condition decided by the threshold path and by the
//! interpreter alone.

use std::time::{Duration, SystemTime};

use super::engine::{Basis, RuleAlerts};
use super::tick::{Env, Expr};
use crate::config::Config;
use crate::key;
use crate::snapshot::{Cell, CountTable, IntervalSnapshot};
use crate::window::WindowEngine;

const EVERY: Duration = Duration::from_secs(5);

/// The embedded default's first rule (`ip,id`, warn above 17,500) over a
/// full window of `keys` keys at 36 lines each.
pub struct AlertBench {
    alerts: RuleAlerts,
    window: WindowEngine,
    end: SystemTime,
    condition: Expr,
}

/// A key's fields and tags as the engine gives them to a condition.
struct OneKey(f64);

impl Env for OneKey {
    fn field(&self, name: &str) -> Option<f64> {
        (name == "totalCount").then_some(self.0)
    }

    fn tag(&self, name: &str) -> Option<&str> {
        match name {
            "ip" => Some("10.0.0.1"),
            "id" => Some("100000001"),
            _ => None,
        }
    }
}

impl AlertBench {
    pub fn new(keys: usize) -> AlertBench {
        let config = Config::embedded_default();
        let rule = &config.rules[0];
        let alerts = RuleAlerts::new(rule, |_| Vec::new());
        let condition = rule.alerts[0].levels[1].clone().expect("a warn condition");
        let mut table = CountTable::with_capacity(keys, keys);
        for i in 0..keys {
            let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            let id = (100_000_000 + i % 25_000).to_string();
            table.add(&key::from_values(&[ip, id]), Cell::new(3.0, 3));
        }
        let mut window = WindowEngine::new(12, [keys; 3]);
        for index in 0..12 {
            let mut s = IntervalSnapshot::empty(index, [keys; 3]);
            s.rules[0] = table.clone();
            window.apply(s);
        }
        AlertBench {
            alerts,
            window,
            end: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            condition,
        }
    }

    /// One interval's decisions for every key: the events (none).
    pub fn decide(&mut self) -> usize {
        self.end += EVERY;
        self.alerts
            .decide(self.window.rule(0), self.end, EVERY, Basis::Exact)
            .len()
    }

    /// The warn condition for each of `values`, by the path the engine
    /// takes or by the interpreter alone: how many hold.
    pub fn conditions(&self, values: &[f64], interpreted: bool) -> usize {
        values
            .iter()
            .filter(|v| {
                let env = OneKey(**v);
                if interpreted {
                    self.condition.eval_bool_interpreted(&env)
                } else {
                    self.condition.eval_bool(&env)
                }
                .expect("a number compared")
            })
            .count()
    }
}
