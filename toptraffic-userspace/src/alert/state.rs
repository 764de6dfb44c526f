//! One key's alert state in one alert block: Kapacitor 1.5.7's `alertState`
//! (alert.go), reproduced rule for rule.
//!
//! - `history` is a ring of the last n levels, `idx` the newest slot, all OK
//!   at the start (alert.go: alertState, newAlertNode).
//! - `add_event` is `addEvent`: `changed` compares with the newest level,
//!   then the ring advances and flapping and expiry are updated.
//! - `percent_change` is `percentChange`, index arithmetic included: the
//!   first pair compared is (idx, idx - 1), the newest, with the lowest
//!   weight; then (idx + 1, idx), which pairs the oldest slot with the
//!   newest; the pair just before the newest, (idx - 1, idx - 2), is never
//!   compared.
//! - `update` is the decision of `BufferedBatch` (the seed's window then
//!   sum produces batches): a recovery (changed to OK) is sent even while
//!   flapping; a non-OK level is sent unless flapping, or unless
//!   stateChangesOnly holds it back (unchanged and not expired). A sent
//!   event runs `triggered`; noRecoveries then drops an OK event.

use std::time::{Duration, SystemTime};

use super::event::Level;

/// Kapacitor's constants (alert.go): the newest change weighs `WEIGHT_DIFF`
/// times the oldest, and at most `MAX_WEIGHT`.
const WEIGHT_DIFF: f64 = 1.5;
const MAX_WEIGHT: f64 = 1.2;

/// Kapacitor's default history when flapping is on (pipeline/alert.go), and
/// its minimum (alert.go: newAlertNode).
pub const DEFAULT_HISTORY: usize = 21;
pub const MIN_HISTORY: usize = 2;

/// An alert block's state-machine options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// `.flapping(low, high)`.
    pub flapping: Option<(f64, f64)>,
    /// `.history(n)`.
    pub history: usize,
    /// `.stateChangesOnly()`.
    pub state_changes_only: bool,
    /// `.stateChangesOnly(d)`: re-send an unchanged level after `d`
    /// (zero: never).
    pub state_changes_every: Duration,
    /// `.noRecoveries()`.
    pub no_recoveries: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            flapping: None,
            history: DEFAULT_HISTORY,
            state_changes_only: false,
            state_changes_every: Duration::ZERO,
            no_recoveries: false,
        }
    }
}

/// An event to send, as the state machine decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    /// The level of the previous event sent for this key (OK before any).
    pub previous_level: Level,
    /// lastTriggered - firstTriggered.
    pub duration: Duration,
    pub time: SystemTime,
}

/// An [`AlertState`] taken apart, as a state file holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StateParts {
    pub history: Vec<Level>,
    pub idx: usize,
    pub flapping: bool,
    pub changed: bool,
    pub expired: bool,
    pub first_triggered: Option<SystemTime>,
    pub last_triggered: Option<SystemTime>,
    pub last_sent: Level,
}

/// One key's state in one block.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertState {
    history: Box<[Level]>,
    idx: usize,
    flapping: bool,
    changed: bool,
    expired: bool,
    first_triggered: Option<SystemTime>,
    /// None is Go's zero time: nothing triggered yet.
    last_triggered: Option<SystemTime>,
    /// Level of the last event handed to the sinks (the alert topic's
    /// previous level).
    last_sent: Level,
}

impl AlertState {
    pub fn new(history: usize) -> AlertState {
        AlertState {
            history: vec![Level::Ok; history.max(MIN_HISTORY)].into_boxed_slice(),
            idx: 0,
            flapping: false,
            changed: false,
            expired: false,
            first_triggered: None,
            last_triggered: None,
            last_sent: Level::Ok,
        }
    }

    pub fn to_parts(&self) -> StateParts {
        StateParts {
            history: self.history.to_vec(),
            idx: self.idx,
            flapping: self.flapping,
            changed: self.changed,
            expired: self.expired,
            first_triggered: self.first_triggered,
            last_triggered: self.last_triggered,
            last_sent: self.last_sent,
        }
    }

    /// None when the parts cannot be a state (a state file not to trust).
    pub fn from_parts(p: StateParts) -> Option<AlertState> {
        if p.history.len() < MIN_HISTORY || p.idx >= p.history.len() {
            return None;
        }
        Some(AlertState {
            history: p.history.into_boxed_slice(),
            idx: p.idx,
            flapping: p.flapping,
            changed: p.changed,
            expired: p.expired,
            first_triggered: p.first_triggered,
            last_triggered: p.last_triggered,
            last_sent: p.last_sent,
        })
    }

    /// The newest level (`currentLevel`).
    pub fn level(&self) -> Level {
        self.history[self.idx]
    }

    pub fn flapping(&self) -> bool {
        self.flapping
    }

    /// When the current run of non-OK levels was first sent.
    pub fn since(&self) -> Option<SystemTime> {
        self.first_triggered
    }

    /// Whether the state is indistinguishable from a new one for every
    /// future decision, except for the re-send timer: all OK, not flapping.
    /// Such a state can be dropped (and is, to bound memory).
    pub fn is_quiet(&self) -> bool {
        !self.flapping && self.history.iter().all(|l| *l == Level::Ok)
    }

    /// Moves the times the state remembers back by `by`, as a wall clock
    /// stepped back moves the times it will be given: what the state
    /// measures between them (a run's duration, the time since the last
    /// event sent) goes on from where it was.
    pub fn move_back(&mut self, by: Duration) {
        let back = |t: SystemTime| t.checked_sub(by).unwrap_or(SystemTime::UNIX_EPOCH);
        self.first_triggered = self.first_triggered.map(back);
        self.last_triggered = self.last_triggered.map(back);
    }

    fn add_event(&mut self, s: &Settings, t: SystemTime, level: Level) {
        self.changed = self.history[self.idx] != level;
        self.idx = (self.idx + 1) % self.history.len();
        self.history[self.idx] = level;
        self.update_flapping(s);
        self.expired = !self.changed
            && !s.state_changes_every.is_zero()
            && match self.last_triggered {
                // Go's t.Sub(zero time) saturates: always expired.
                None => true,
                Some(last) => t.duration_since(last).unwrap_or_default() >= s.state_changes_every,
            };
    }

    /// Kapacitor's weighted share of state changes in the history.
    pub fn percent_change(&self) -> f64 {
        let l = self.history.len();
        let mut changes = 0.0;
        let mut weight = MAX_WEIGHT / WEIGHT_DIFF;
        let step = (MAX_WEIGHT - weight) / (l - 1) as f64;
        for i in 0..l - 1 {
            let c = (i + self.idx) % l;
            let p = if c == 0 { l - 1 } else { c - 1 };
            if self.history[c] != self.history[p] {
                changes += weight;
            }
            weight += step;
        }
        changes / (l - 1) as f64
    }

    fn update_flapping(&mut self, s: &Settings) {
        let Some((low, high)) = s.flapping else {
            return;
        };
        let p = self.percent_change();
        if self.flapping && p < low {
            self.flapping = false;
        } else if !self.flapping && p > high {
            self.flapping = true;
        }
    }

    fn triggered(&mut self, t: SystemTime) {
        self.last_triggered = Some(t);
        let l = self.history.len();
        let p = if self.idx == 0 { l - 1 } else { self.idx - 1 };
        if self.history[p] == Level::Ok {
            self.first_triggered = Some(t);
        }
    }

    /// Records `level` at `t` and decides whether an event goes out.
    pub fn update(&mut self, s: &Settings, t: SystemTime, level: Level) -> Option<Decision> {
        self.add_event(s, t, level);
        let recovery = self.changed && level == Level::Ok;
        let held = (s.flapping.is_some() && self.flapping)
            || (s.state_changes_only && !self.changed && !self.expired);
        if !(recovery || (level != Level::Ok && !held)) {
            return None;
        }
        self.triggered(t);
        if s.no_recoveries && level == Level::Ok {
            return None;
        }
        let duration = match (self.first_triggered, self.last_triggered) {
            (Some(f), Some(l)) => l.duration_since(f).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        let previous_level = std::mem::replace(&mut self.last_sent, level);
        Some(Decision {
            level,
            previous_level,
            duration,
            time: t,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Golden sequences derived from Kapacitor 1.5.7's alert.go
    //! (alertState.addEvent, percentChange, updateFlapping, updateExpired,
    //! triggered and the BufferedBatch decision) and the behaviour recorded
    //! from kapacitord in ../shared/KAPACITOR.md.
    use super::*;
    use std::time::UNIX_EPOCH;
    use Level::*;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_564_000 + secs)
    }

    fn seed() -> Settings {
        // .flapping(0.25, 0.5).history(21).stateChangesOnly(5m)
        Settings {
            flapping: Some((0.25, 0.5)),
            history: 21,
            state_changes_only: true,
            state_changes_every: Duration::from_secs(300),
            no_recoveries: false,
        }
    }

    /// Runs levels one per 5 s from t(0); returns (second, level sent).
    fn run(s: &Settings, levels: &[Level]) -> Vec<(u64, Level)> {
        let mut st = AlertState::new(s.history);
        let mut out = Vec::new();
        for (i, l) in levels.iter().enumerate() {
            if let Some(d) = st.update(s, t(i as u64 * 5), *l) {
                out.push((i as u64 * 5, d.level));
            }
        }
        out
    }

    #[test]
    fn percent_change_weighs_pairs_as_kapacitor_indexes_them() {
        // History of 5: weights 0.8, 0.9, 1.0, 1.1 over the pairs
        // (idx,idx-1), (idx+1,idx), (idx+2,idx+1), (idx+3,idx+2).
        let mut st = AlertState::new(5);
        st.history = vec![Ok, Warning, Ok, Ok, Ok].into_boxed_slice();
        st.idx = 1; // newest is Warning at 1, oldest is slot 2
                    // (1,0): W!=O +0.8; (2,1): O!=W +0.9; (3,2) same; (4,3) same.
        assert!((st.percent_change() - (0.8 + 0.9) / 4.0).abs() < 1e-12);
        // The pair just before the newest, (0,4), is never compared.
        st.history = vec![Warning, Ok, Ok, Ok, Ok].into_boxed_slice();
        st.idx = 1;
        // (1,0): O!=W +0.8; (2,1),(3,2),(4,3) same; (0,4) not compared.
        assert!((st.percent_change() - 0.8 / 4.0).abs() < 1e-12);
        st.idx = 0;
        // (0,4): W!=O +0.8; (1,0): O!=W +0.9; the rest same.
        assert!((st.percent_change() - (0.8 + 0.9) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn steady_warning_is_sent_once_then_every_five_minutes() {
        // A key at a steady 20,000/min: WARNING from the first window on.
        let sent = run(&seed(), &[Warning; 130]);
        assert_eq!(sent, [(0, Warning), (300, Warning), (600, Warning)]);
    }

    #[test]
    fn the_re_send_counts_from_the_last_event_sent_not_the_first_warning() {
        // WARNING at 0, CRITICAL at 10 (a change: sent), then CRITICAL:
        // re-sent 300 s after 10, not after 0.
        let mut levels = vec![Warning, Warning];
        levels.extend([Critical; 70]);
        let sent = run(&seed(), &levels);
        assert_eq!(sent, [(0, Warning), (10, Critical), (310, Critical)]);
    }

    #[test]
    fn flapping_holds_back_alerts_but_not_recoveries() {
        // WARNING and OK alternating every 5 s. percentChange after each
        // event, computed by hand from alert.go (history 21, weights 0.8 up
        // by 0.02): 0.081, 0.040, 0.140, 0.157, 0.255, 0.270, 0.366,
        // 0.379, 0.473, 0.484, then 0.576 > 0.5 at 50 s: flapping.
        let s = seed();
        let mut st = AlertState::new(s.history);
        let mut sent = Vec::new();
        let mut pcs = Vec::new();
        for i in 0..30u64 {
            let l = if i % 2 == 0 { Warning } else { Ok };
            if let Some(d) = st.update(&s, t(i * 5), l) {
                sent.push((i * 5, d.level));
            }
            pcs.push((st.percent_change() * 1000.0).round() / 1000.0);
        }
        assert_eq!(
            pcs[..12],
            [0.081, 0.04, 0.14, 0.157, 0.255, 0.27, 0.366, 0.379, 0.473, 0.484, 0.576, 0.585]
        );
        let mut want: Vec<(u64, Level)> = (0..10u64)
            .map(|i| (i * 5, if i % 2 == 0 { Warning } else { Ok }))
            .collect();
        // From 50 s: WARNINGs held, recoveries still sent.
        want.extend((55..150).step_by(10).map(|s| (s as u64, Ok)));
        assert_eq!(sent, want);
        assert!(st.flapping());
    }

    #[test]
    fn flapping_ends_below_low_and_state_changes_only_still_applies() {
        let s = seed();
        let mut st = AlertState::new(s.history);
        for i in 0..20u64 {
            st.update(&s, t(i * 5), if i % 2 == 0 { Warning } else { Ok });
        }
        assert!(st.flapping());
        // Then a steady WARNING: by hand, percentChange falls to 0.261 at
        // 175 s and 0.174 < 0.25 at 180 s, where flapping ends. The level
        // is unchanged and the last event sent (the recovery at 95 s) is
        // younger than 5 minutes, so nothing goes out until 395 s.
        let mut sent = Vec::new();
        for i in 20..90u64 {
            if let Some(d) = st.update(&s, t(i * 5), Warning) {
                sent.push((i * 5, d.level));
            }
            if i * 5 == 175 {
                assert!(st.flapping());
            }
            if i * 5 == 180 {
                assert!(!st.flapping());
            }
        }
        assert_eq!(sent, [(395, Warning)]);
    }

    #[test]
    fn no_recoveries_still_restarts_the_run() {
        let s = Settings {
            no_recoveries: true,
            ..seed()
        };
        let mut st = AlertState::new(s.history);
        assert_eq!(st.update(&s, t(0), Warning).unwrap().previous_level, Ok);
        assert_eq!(st.update(&s, t(5), Ok), None, "recovery suppressed");
        let d = st.update(&s, t(10), Warning).unwrap();
        // The topic never saw the OK: its previous level is WARNING.
        assert_eq!(d.previous_level, Warning);
        // But triggered() ran for the OK, so the run restarted at 10.
        assert_eq!(d.duration, Duration::ZERO);
    }

    #[test]
    fn duration_runs_from_the_first_trigger_of_a_non_ok_run() {
        let s = Settings::default();
        let mut st = AlertState::new(s.history);
        st.update(&s, t(0), Warning).unwrap();
        let d = st.update(&s, t(5), Critical).unwrap();
        assert_eq!(d.duration, Duration::from_secs(5));
        let d = st.update(&s, t(10), Critical).unwrap();
        assert_eq!(d.duration, Duration::from_secs(10));
        let d = st.update(&s, t(15), Ok).unwrap();
        assert_eq!((d.level, d.previous_level), (Ok, Critical));
        assert_eq!(d.duration, Duration::from_secs(15));
        // Without stateChangesOnly an unchanged OK is not sent.
        assert_eq!(st.update(&s, t(20), Ok), None);
    }

    #[test]
    fn state_changes_only_without_duration_never_re_sends() {
        let s = Settings {
            state_changes_only: true,
            ..Settings::default()
        };
        let sent = run(&s, &[Critical; 200]);
        assert_eq!(sent, [(0, Critical)]);
    }

    #[test]
    fn a_quiet_state_is_all_ok_and_not_flapping() {
        let s = seed();
        let mut st = AlertState::new(s.history);
        assert!(st.is_quiet());
        st.update(&s, t(0), Warning);
        assert!(!st.is_quiet());
        for i in 1..=21 {
            st.update(&s, t(i * 5), Ok);
        }
        assert!(st.is_quiet());
    }
}
