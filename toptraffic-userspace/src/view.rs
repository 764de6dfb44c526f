//! What the API reads: the daemon's published state.
//!
//! After each rotation a small [`WindowView`] (per rule: keys, overflow) is
//! swapped in. The keys themselves stay in the window engine, which only
//! the rotation thread touches: `/api/v1/top` asks that thread (see
//! `control::Control::Top`), which answers between rotations, so every
//! answer is one closed interval's window whole and no copy of the keys is
//! kept for the API.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::alert::engine::{BlockStats, BlockView};
use crate::clock::Clock;
use crate::config::Mode;
use crate::ingest::kernel::KernelCounters;
use crate::key;
use crate::rules::RuleSet;
use crate::sink::SinkHandle;
use crate::snapshot::{ByPath, Path};
use crate::stats::{CountersSnapshot, DropReason, PathCounters};
use crate::window::{TierStats, WindowEngine};

/// One rule's window as of the last rotation.
#[derive(Debug)]
pub struct RuleView {
    pub name: String,
    pub as_name: String,
    pub group_by: Vec<String>,
    /// Lines the rule refused because a table of it held max_keys keys
    /// (whether or not another rule counted them), since the rule began.
    pub overflow_lines: u64,
    /// The approximate tier's totals; None when the rule has none.
    pub tier: Option<TierStats>,
    keys: usize,
}

impl RuleView {
    /// Keys with something in the window.
    pub fn keys(&self) -> usize {
        self.keys
    }
}

/// A key's tags as (name, value) pairs in group_by order.
pub fn tags<'a>(
    group_by: &'a [String],
    key: &'a [u8],
) -> impl Iterator<Item = (&'a str, String)> + 'a {
    group_by
        .iter()
        .map(String::as_str)
        .zip(key::values(key).map(|v| String::from_utf8_lossy(v).into_owned()))
}

/// All rules' windows as of the last rotation.
#[derive(Debug)]
pub struct WindowView {
    /// End of the last closed interval; None before the first rotation.
    pub window_end: Option<SystemTime>,
    pub period_s: f64,
    pub rules: Vec<RuleView>,
}

impl WindowView {
    /// The view before any rotation: every rule, no keys.
    pub fn empty(rules: &RuleSet, period_s: f64) -> WindowView {
        WindowView {
            window_end: None,
            period_s,
            rules: rules
                .rules()
                .iter()
                .map(|r| RuleView {
                    name: r.name.clone(),
                    as_name: r.as_name.clone(),
                    group_by: r.group_by.clone(),
                    overflow_lines: 0,
                    tier: None,
                    keys: 0,
                })
                .collect(),
        }
    }

    /// Copies the window engine's values.
    pub fn capture(
        rules: &RuleSet,
        window: &WindowEngine,
        window_end: Option<SystemTime>,
        period_s: f64,
    ) -> WindowView {
        let mut view = WindowView::empty(rules, period_s);
        view.window_end = window_end;
        for (rv, rw) in view.rules.iter_mut().zip(window.rules()) {
            rv.keys = rw.len();
            rv.overflow_lines = rw.overflow_lines;
            rv.tier = rw.tier_stats();
        }
        view
    }

    pub fn rule(&self, name: &str) -> Option<&RuleView> {
        self.rules.iter().find(|r| r.name == name)
    }
}

/// Which path counts, and why.
#[derive(Debug, Clone, Serialize)]
pub struct ModeInfo {
    /// "kernel" or "userspace".
    pub active: &'static str,
    /// What the config or command line asked for.
    pub requested: Mode,
    /// Why this path runs (e.g. why the kernel path could not load).
    pub reason: String,
    /// How the kernel path runs, when it does.
    pub kernel: Option<KernelInfo>,
}

/// The kernel path's set-up, for the logs and /api/v1/stats.
#[derive(Debug, Clone, Serialize)]
pub struct KernelInfo {
    /// "socket_filter" or "xdp".
    pub attach: String,
    /// The XDP interface and mode, when XDP.
    pub interface: Option<String>,
    /// Entries of each generation map.
    pub map_entries: u32,
    pub pin_dir: Option<String>,
    /// Rules that run in userspace, and why.
    pub userspace_rules: Vec<(String, String)>,
}

/// When the last reload ran, and its summary or why it was refused.
pub type LastReload = (SystemTime, Result<String, String>);

/// State shared by the counting threads, the rotation and the API.
#[derive(Debug)]
pub struct Shared {
    pub mode: RwLock<ModeInfo>,
    pub userspace: Arc<PathCounters>,
    /// The kernel path's counters, once it runs.
    pub kernel: OnceLock<Arc<KernelCounters>>,
    /// With `[cluster]`: what this node knows of the others.
    pub cluster: OnceLock<Arc<crate::cluster::ClusterStatus>>,
    /// Per drain: seconds to swap and read the generation map, keys drained.
    pub last_drain: RwLock<Option<(f64, usize)>>,
    view: RwLock<Arc<WindowView>>,
    /// Datagrams the sockets' receive queues dropped.
    pub receive_queue_drops: AtomicU64,
    /// Lines a path had counted as points that their owning rule then
    /// refused, full, at the interval's merge or in the window, by path:
    /// they leave that path's points and count as key_table_full.
    refused_late: [AtomicU64; 2],
    pub rotations: AtomicU64,
    /// Wall-clock seconds of the last rotation, as f64 bits.
    last_rotation_s: AtomicU64,
    pub started: SystemTime,
    /// When an interval last closed, on the rotation's monotonic clock.
    liveness: Mutex<Option<Liveness>>,
    /// Keys not OK, per alert block, as of the last rotation.
    alerts: RwLock<Arc<Vec<BlockView>>>,
    /// Every alert block's counters, and every sink (replaced on reload).
    alerting: RwLock<Alerting>,
    /// Reloads applied and refused, and the last outcome.
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    last_reload: RwLock<Option<LastReload>>,
}

/// The rotation thread's clock, and the monotonic time of the last closed
/// interval (of the thread's start, before the first).
struct Liveness {
    clock: Arc<dyn Clock>,
    last_close: Instant,
}

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Liveness")
            .field("last_close", &self.last_close)
            .finish_non_exhaustive()
    }
}

/// The alert blocks' counters and the sinks, as the API lists them.
#[derive(Debug, Default, Clone)]
struct Alerting {
    blocks: Arc<Vec<(String, String, Arc<BlockStats>)>>,
    sinks: Arc<Vec<SinkHandle>>,
}

impl Shared {
    pub fn new(rules: &RuleSet, period_s: f64, mode: ModeInfo) -> Shared {
        Shared {
            mode: RwLock::new(mode),
            userspace: Arc::default(),
            kernel: OnceLock::new(),
            cluster: OnceLock::new(),
            last_drain: RwLock::new(None),
            view: RwLock::new(Arc::new(WindowView::empty(rules, period_s))),
            receive_queue_drops: AtomicU64::new(0),
            refused_late: Default::default(),
            rotations: AtomicU64::new(0),
            last_rotation_s: AtomicU64::new(0f64.to_bits()),
            started: SystemTime::now(),
            liveness: Mutex::new(None),
            alerts: RwLock::new(Arc::new(Vec::new())),
            alerting: RwLock::default(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_reload: RwLock::new(None),
        }
    }

    pub fn view(&self) -> Arc<WindowView> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn publish(&self, view: WindowView, rotation_s: f64) {
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
        self.last_rotation_s.store(rotation_s.to_bits(), Relaxed);
        self.rotations.fetch_add(1, Relaxed);
    }

    /// The rotation thread starts on `clock`: from now on an interval must
    /// close every `every` of its monotonic time.
    pub fn watch_rotations(&self, clock: Arc<dyn Clock>) {
        let last_close = clock.monotonic();
        *self.liveness.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Liveness { clock, last_close });
    }

    /// An interval closed at `at` (the rotation thread's monotonic clock).
    pub fn interval_closed(&self, at: Instant) {
        if let Some(l) = self
            .liveness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            l.last_close = at;
        }
    }

    /// Monotonic time since an interval last closed (since the rotation
    /// thread started, before the first); None before it starts.
    pub fn since_last_close(&self) -> Option<Duration> {
        let l = self.liveness.lock().unwrap_or_else(|e| e.into_inner());
        let l = l.as_ref()?;
        Some(l.clock.monotonic().saturating_duration_since(l.last_close))
    }

    pub fn set_alerting(
        &self,
        blocks: Vec<(String, String, Arc<BlockStats>)>,
        sinks: Vec<SinkHandle>,
    ) {
        *self.alerting.write().unwrap_or_else(|e| e.into_inner()) = Alerting {
            blocks: Arc::new(blocks),
            sinks: Arc::new(sinks),
        };
    }

    /// (rule, block, counters) of every alert block.
    pub fn blocks(&self) -> Arc<Vec<(String, String, Arc<BlockStats>)>> {
        self.alerting
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .blocks
            .clone()
    }

    pub fn sinks(&self) -> Arc<Vec<SinkHandle>> {
        self.alerting
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .sinks
            .clone()
    }

    /// Counts a reload's outcome and logs it.
    pub fn record_reload(&self, result: &Result<String, String>) {
        // The counts change under the lock of the last result, so that a
        // reader sees both of one reload (see `reloads`).
        let mut last = self.last_reload.write().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(msg) => {
                self.reloads_ok.fetch_add(1, Relaxed);
                tracing::info!("{msg}");
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Relaxed);
                tracing::error!("reload refused, the running config stays: {e}");
            }
        }
        *last = Some((SystemTime::now(), result.clone()));
    }

    /// Reloads applied and refused, and the last one's time and result,
    /// all as of the same reload.
    pub fn reloads(&self) -> (u64, u64, Option<LastReload>) {
        let last = self.last_reload.read().unwrap_or_else(|e| e.into_inner());
        (
            self.reloads_ok.load(Relaxed),
            self.reloads_failed.load(Relaxed),
            last.clone(),
        )
    }

    pub fn alerts(&self) -> Arc<Vec<BlockView>> {
        self.alerts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn publish_alerts(&self, alerts: Vec<BlockView>) {
        *self.alerts.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(alerts);
    }

    pub fn last_rotation_seconds(&self) -> f64 {
        f64::from_bits(self.last_rotation_s.load(Relaxed))
    }

    /// The kernel path's counters now (zero when it does not run).
    pub fn kernel_snapshot(&self) -> CountersSnapshot {
        self.kernel
            .get()
            .map(|k| self.less_refused_late(k.snapshot(), Path::Kernel))
            .unwrap_or_default()
    }

    /// The userspace path's counters now.
    pub fn userspace_snapshot(&self) -> CountersSnapshot {
        self.less_refused_late(self.userspace.snapshot(), Path::Userspace)
    }

    /// Counts lines refused after counting (see `refused_late`).
    pub fn refuse_late(&self, lines: ByPath<u64>) {
        for (slot, n) in self
            .refused_late
            .iter()
            .zip([lines.kernel, lines.userspace])
        {
            if n != 0 {
                slot.fetch_add(n, Relaxed);
            }
        }
    }

    /// Moves `path`'s lines refused after counting from `points` to
    /// key_table_full. A receive thread may not have flushed the points of
    /// lines the rotation already refused: `points` then lags for a moment.
    fn less_refused_late(&self, mut s: CountersSnapshot, path: Path) -> CountersSnapshot {
        let late = self.refused_late[path as usize].load(Relaxed);
        s.points = s.points.saturating_sub(late);
        s.dropped[DropReason::KeyTableFull as usize] += late;
        s
    }

    pub fn mode(&self) -> ModeInfo {
        self.mode.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lines no rule counted (datagrams, for oversize and receive_queue), by
    /// reason, over both paths. Lines that one rule refused while another
    /// rule of their measurement took them are in each rule's
    /// `overflow_lines`, not here.
    pub fn dropped(&self) -> Vec<(DropReason, u64)> {
        let u = self.userspace_snapshot();
        let k = self.kernel_snapshot();
        DropReason::ALL
            .iter()
            .map(|&r| {
                let extra = match r {
                    DropReason::ReceiveQueue => self.receive_queue_drops.load(Relaxed),
                    _ => 0,
                };
                (r, u.dropped(r) + k.dropped(r) + extra)
            })
            .collect()
    }
}
