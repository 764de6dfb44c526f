//! Runs the daemon: receive threads, the rotation thread and the HTTP API,
//! until SIGINT or SIGTERM.
//!
//! One job per thread or task: receive threads count, the rotation thread
//! closes an interval at every multiple of `every` and publishes the window,
//! the HTTP server reads what was published.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn};

use crate::alert::engine::{compile_rule, RuleAlerts};
use crate::api::{self, AppState};
use crate::clock::Clock;
use crate::config::{Config, Mode, XdpMode};
use crate::ingest::kernel::{Attach, KernelError, KernelPath, Options as KernelOptions};
use crate::ingest::kernel_config::{self, KernelPlan};
use crate::ingest::udp::{UdpIngest, UdpSettings};
use crate::metrics::Metrics;
use crate::rules::RuleSet;
use crate::sink::{spawn_sink, SinkConfig, SinkHandle};
use crate::snapshot::{IntervalSnapshot, Intervals};
use crate::stats::DropReason;
use crate::view::{KernelInfo, ModeInfo, Shared, WindowView};
use crate::window::WindowEngine;

/// Where a closed interval's counts come from.
pub trait IntervalSource: Send {
    /// Moves everything counted since the last call into `snap`.
    fn drain_into(&mut self, snap: &mut IntervalSnapshot);
}

impl IntervalSource for Arc<UdpIngest> {
    fn drain_into(&mut self, snap: &mut IntervalSnapshot) {
        for tables in self.take_interval() {
            snap.merge(tables);
        }
    }
}

/// Closes intervals: drains the sources, slides the window, publishes.
pub struct Rotator {
    rules: Arc<RuleSet>,
    window: WindowEngine,
    intervals: Intervals,
    period_s: f64,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    sources: Vec<Box<dyn IntervalSource>>,
    /// Per rule (config order).
    alerts: Vec<RuleAlerts>,
}

impl Rotator {
    pub fn new(
        config: &Config,
        rules: Arc<RuleSet>,
        shared: Arc<Shared>,
        metrics: Arc<Metrics>,
        sources: Vec<Box<dyn IntervalSource>>,
        alerts: Vec<RuleAlerts>,
    ) -> Rotator {
        Rotator {
            alerts,
            window: WindowEngine::new(
                config.window.intervals(),
                rules.rules().iter().map(|r| r.max_keys),
            ),
            rules,
            intervals: Intervals::new(config.window.every),
            period_s: config.window.period.as_secs_f64(),
            shared,
            metrics,
            sources,
        }
    }

    pub fn intervals(&self) -> Intervals {
        self.intervals
    }

    /// Closes interval `index`: its counts enter the window, which then ends
    /// at the interval's end.
    pub fn rotate(&mut self, index: u64) {
        let span = info_span!("rotation", interval = index);
        let _g = span.enter();
        let started = Instant::now();
        let mut snap =
            IntervalSnapshot::empty(index, self.rules.rules().iter().map(|r| r.max_keys));
        for s in &mut self.sources {
            s.drain_into(&mut snap);
        }
        for (o, t) in self.shared.rule_overflow.iter().zip(&snap.rules) {
            o.fetch_add(t.overflow_lines, Relaxed);
        }
        let lines: u64 = snap.rules.iter().map(|t| t.lines()).sum();
        let report = self.window.apply(snap);
        for (o, n) in self.shared.rule_overflow.iter().zip(&report.overflow_lines) {
            o.fetch_add(*n, Relaxed);
        }
        let end = self.intervals.end(self.window.current().unwrap_or(index));
        // Alerts see the window the API is about to publish.
        for (i, ra) in self.alerts.iter_mut().enumerate() {
            ra.evaluate(self.window.rule(i), end);
        }
        if !self.alerts.is_empty() {
            self.shared
                .publish_alerts(self.alerts.iter().flat_map(|a| a.view()).collect());
        }
        let view = WindowView::capture(&self.rules, &self.window, end, self.period_s);
        let keys: Vec<usize> = view.rules.iter().map(|r| r.keys()).collect();
        let elapsed = started.elapsed().as_secs_f64();
        self.shared.publish(view, elapsed);
        self.metrics.rotation_seconds.observe(elapsed);
        tracing::debug!(lines, ?keys, seconds = elapsed, "rotated");
    }

    /// Rotates at every interval boundary of `clock` until `stop` fires.
    pub fn run(mut self, clock: Arc<dyn Clock>, stop: mpsc::Receiver<()>) {
        loop {
            let closing = self.intervals.index_at(clock.now());
            let boundary = self.intervals.end(closing);
            loop {
                let now = clock.now();
                let Ok(wait) = boundary.duration_since(now) else {
                    break;
                };
                if wait.is_zero() {
                    break;
                }
                // Re-read the clock at least every 200 ms: it may be stepped.
                match stop.recv_timeout(wait.min(Duration::from_millis(200))) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
            self.rotate(closing);
        }
    }
}

/// Adds the sockets' kernel-side drops to the shared counters.
struct SocketDrops {
    udp: Arc<UdpIngest>,
    shared: Arc<Shared>,
    /// Drops already on the sockets when they opened (none, normally).
    base: u64,
}

impl IntervalSource for SocketDrops {
    fn drain_into(&mut self, _snap: &mut IntervalSnapshot) {
        // The socket filter's consumed datagrams count as socket drops too.
        // Read after the drops, the filter's count is never behind them, so
        // this can under-report for a moment but never over-report.
        let drops = self.udp.socket_drops();
        let consumed = self
            .shared
            .kernel
            .get()
            .map_or(0, |k| k.socket_filter_datagrams());
        let total = drops.saturating_sub(self.base).saturating_sub(consumed);
        self.shared.receive_queue_drops.store(total, Relaxed);
    }
}

/// Compiles every rule's alert blocks and starts their sinks on the
/// current runtime.
fn compile_alerts(config: &Config, shared: &Shared) -> Result<Vec<RuleAlerts>> {
    let rt = tokio::runtime::Handle::current();
    let mut sinks: Vec<SinkHandle> = Vec::new();
    let mut alerts = Vec::with_capacity(config.rules.len());
    for r in &config.rules {
        let ra = compile_rule(r, &config.source, &config.text, |block, name| {
            SinkConfig::of_block(block)
                .into_iter()
                .map(|c| {
                    let sink_name = format!("{}/{}/{}", r.name, name, c.kind());
                    let h = spawn_sink(c, sink_name, &rt);
                    sinks.push(h.clone());
                    h
                })
                .collect()
        })?;
        for b in &ra.blocks {
            info!(
                rule = %r.name,
                block = %b.name,
                sinks = ?b.sinks.iter().map(|s| s.name().to_string()).collect::<Vec<_>>(),
                "alert block"
            );
        }
        alerts.push(ra);
    }
    let blocks = alerts
        .iter()
        .flat_map(|a| {
            a.blocks
                .iter()
                .map(|b| (a.rule.clone(), b.name.clone(), b.stats.clone()))
        })
        .collect();
    let _ = shared.blocks.set(blocks);
    let _ = shared.sinks.set(sinks);
    Ok(alerts)
}

/// Options from the command line that override the config.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub mode: Option<Mode>,
    pub listen: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

impl Overrides {
    pub fn apply(&self, config: &mut Config) {
        if let Some(m) = self.mode {
            config.ingest.mode = m;
        }
        if let Some(a) = self.listen {
            config.ingest.listen = a;
        }
        if let Some(a) = self.http {
            config.http.listen = a;
        }
    }
}

/// The kernel path as a source of interval counts.
struct KernelSource {
    path: KernelPath,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

impl IntervalSource for KernelSource {
    fn drain_into(&mut self, snap: &mut IntervalSnapshot) {
        match self.path.drain() {
            Ok(d) => {
                let secs = (d.swap + d.drain).as_secs_f64();
                self.metrics.drain_seconds.observe(secs);
                *self
                    .shared
                    .last_drain
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = Some((secs, d.keys));
                snap.merge(d.tables);
            }
            // The generation stays in the map and is read at the next drain.
            Err(e) => warn!(error = %e, "draining the kernel's generation map failed"),
        }
    }
}

/// Entries of each generation map: every kernel rule's max_keys (a
/// generation holds one interval's keys, at most what the window may), plus
/// room for the LRU's per-CPU free lists so it does not evict early.
fn map_entries(config: &Config, plan: &KernelPlan) -> u32 {
    let keys: usize = config
        .rules
        .iter()
        .zip(&plan.userspace_only)
        .filter(|(_, u)| u.is_none())
        .map(|(r, _)| r.max_keys)
        .sum();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (keys + cpus * 512 + 1024).min(u32::MAX as usize) as u32
}

/// Loads the kernel path for the config, attached to `fds` or XDP.
fn load_kernel(
    config: &Config,
    fds: Vec<RawFd>,
    listen: SocketAddr,
) -> Result<(KernelPath, KernelInfo), KernelError> {
    let plan = kernel_config::plan(&config.rules).map_err(KernelError::Rules)?;
    let entries = map_entries(config, &plan);
    let (attach, info_attach, interface) = match &config.ingest.xdp_interface {
        None => (Attach::Sockets(fds), "socket_filter", None),
        Some(iface) => {
            let addr = match listen {
                SocketAddr::V4(a) => *a.ip(),
                SocketAddr::V6(_) => {
                    return Err(KernelError::Other(
                        "XDP counts IPv4 only; listen on an IPv4 address".into(),
                    ))
                }
            };
            let mode = match config.ingest.xdp_mode {
                XdpMode::Auto => aya::programs::XdpMode::Default,
                XdpMode::Skb => aya::programs::XdpMode::Skb,
                XdpMode::Driver => aya::programs::XdpMode::Driver,
            };
            (
                Attach::Xdp {
                    interface: iface.clone(),
                    mode,
                    port: listen.port(),
                    addr,
                },
                "xdp",
                Some(format!("{iface} ({:?})", config.ingest.xdp_mode).to_lowercase()),
            )
        }
    };
    let userspace_rules = config
        .rules
        .iter()
        .zip(&plan.userspace_only)
        .filter_map(|(r, u)| u.clone().map(|why| (r.name.clone(), why)))
        .collect();
    let info = KernelInfo {
        attach: info_attach.into(),
        interface,
        map_entries: entries,
        pin_dir: config
            .ingest
            .pin_dir
            .as_ref()
            .map(|p| p.display().to_string()),
        userspace_rules,
    };
    let opts = KernelOptions {
        attach,
        map_entries: entries,
        pin_dir: config.ingest.pin_dir.clone(),
        load_all: false,
    };
    let max_keys = config.rules.iter().map(|r| r.max_keys).collect();
    KernelPath::load(plan, max_keys, opts).map(|k| (k, info))
}

/// Chooses the ingest path for the requested mode, loading the kernel path
/// when asked or possible.
fn choose_mode(
    config: &Config,
    fds: Vec<RawFd>,
    listen: SocketAddr,
) -> Result<(ModeInfo, Option<KernelPath>)> {
    let requested = config.ingest.mode;
    let userspace = |reason: String| ModeInfo {
        active: "userspace",
        requested,
        reason,
        kernel: None,
    };
    if requested == Mode::Userspace {
        return Ok((userspace("requested".into()), None));
    }
    match load_kernel(config, fds, listen) {
        Ok((path, info)) => {
            let reason = if requested == Mode::Kernel {
                "requested".to_string()
            } else {
                "the kernel programs loaded".to_string()
            };
            let mode = ModeInfo {
                active: "kernel",
                requested,
                reason,
                kernel: Some(info),
            };
            Ok((mode, Some(path)))
        }
        Err(e) if requested == Mode::Kernel => Err(anyhow::anyhow!("--mode kernel: {e}")),
        Err(e) => Ok((
            userspace(format!("the kernel path could not load: {e}")),
            None,
        )),
    }
}

/// Runs until `shutdown` is cancelled.
pub async fn run(config: Config, clock: Arc<dyn Clock>, shutdown: CancellationToken) -> Result<()> {
    let rules = Arc::new(RuleSet::new(&config.rules));
    let settings = UdpSettings {
        listen: config.ingest.listen,
        recv_buffer: config.ingest.recv_buffer,
        max_datagram: config.ingest.max_datagram,
        threads: config.ingest.threads,
    };
    let mut udp = UdpIngest::bind(&settings, &rules).context("opening the UDP sockets")?;
    let listen = udp.local_addr();
    // The kernel path attaches before the sockets are read, but a datagram
    // that arrives first is simply counted in userspace: whole, once.
    let (mode, kernel) = choose_mode(&config, udp.fds(), listen)?;
    let shared = Arc::new(Shared::new(
        &rules,
        config.window.period.as_secs_f64(),
        mode.clone(),
    ));
    let metrics = Arc::new(Metrics::new(shared.clone()));
    udp.start(
        rules.clone(),
        config.ingest.max_datagram,
        shared.userspace.clone(),
    )
    .context("starting receive threads")?;
    let udp = Arc::new(udp);

    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http.listen))?;
    let http_addr = http.local_addr()?;

    info!(
        mode = mode.active,
        requested = %mode.requested,
        reason = %mode.reason,
        "ingest path"
    );
    if let Some(k) = &mode.kernel {
        info!(
            attach = %k.attach,
            interface = k.interface.as_deref().unwrap_or("-"),
            map_entries = k.map_entries,
            pin_dir = k.pin_dir.as_deref().unwrap_or("-"),
            "kernel path"
        );
        for (rule, why) in &k.userspace_rules {
            warn!(rule = %rule, reason = %why, "rule runs in userspace: datagrams with its measurement are handed over whole");
        }
    }
    info!(
        udp = %listen,
        http = %http_addr,
        threads = udp.fds().len(),
        recv_buffer = udp.recv_buffer(),
        "listening"
    );
    for r in rules.rules() {
        info!(
            rule = %r.name,
            group_by = ?r.group_by,
            as_name = %r.as_name,
            max_keys = r.max_keys,
            "rule"
        );
    }
    info!(
        period = %humantime::format_duration(config.window.period),
        every = %humantime::format_duration(config.window.every),
        "window"
    );

    let mut sources: Vec<Box<dyn IntervalSource>> = vec![Box::new(udp.clone())];
    if let Some(path) = kernel {
        let _ = shared.kernel.set(path.counters());
        sources.push(Box::new(KernelSource {
            path,
            shared: shared.clone(),
            metrics: metrics.clone(),
        }));
    }
    sources.push(Box::new(SocketDrops {
        base: udp.socket_drops(),
        udp: udp.clone(),
        shared: shared.clone(),
    }));
    let alerts = compile_alerts(&config, &shared)?;
    let rotator = Rotator::new(
        &config,
        rules.clone(),
        shared.clone(),
        metrics.clone(),
        sources,
        alerts,
    );
    let (stop_tx, stop_rx) = mpsc::channel();
    let rotation = std::thread::Builder::new()
        .name("toptraffic-rotate".into())
        .spawn(move || rotator.run(clock, stop_rx))?;

    let state = AppState {
        shared: shared.clone(),
        metrics,
        every: config.window.every,
        listen: listen.to_string(),
    };
    if let Some(addr) = config.http.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        info!(metrics = %l.local_addr()?, "serving /metrics and /healthz");
        let token = shutdown.clone();
        let server = axum::serve(l, api::metrics_router(state.clone()))
            .with_graceful_shutdown(async move { token.cancelled().await });
        tokio::spawn(async move {
            if let Err(e) = server.await {
                warn!(error = %e, "metrics server failed");
            }
        });
    }
    let token = shutdown.clone();
    let server = axum::serve(http, api::router(state))
        .with_graceful_shutdown(async move { token.cancelled().await });
    if let Err(e) = server.await {
        warn!(error = %e, "HTTP server failed");
        shutdown.cancel();
    }
    shutdown.cancelled().await;

    info!("shutting down");
    let _ = stop_tx.send(());
    let _ = rotation.join();
    // Give queued alerts their chance, within each sink's timeout.
    if let Some(sinks) = shared.sinks.get() {
        for s in sinks {
            s.close();
        }
        let wait = async {
            for s in sinks {
                s.closed().await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, wait).await.is_err() {
            warn!("some alert sinks did not finish before shutdown");
        }
    }
    match Arc::try_unwrap(udp) {
        Ok(mut udp) => udp.stop(),
        Err(_) => warn!("receive threads still referenced at shutdown"),
    }
    let u = shared.userspace.snapshot();
    let k = shared.kernel_snapshot();
    info!(
        points_kernel = k.points,
        points_userspace = u.points,
        datagrams_kernel = k.datagrams,
        datagrams_userspace = u.datagrams,
        parse_errors = u.dropped(DropReason::ParseError),
        "stopped"
    );
    Ok(())
}

/// Waits for SIGINT or SIGTERM, then cancels `token`.
pub async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT"),
        _ = term.recv() => info!("SIGTERM"),
        _ = token.cancelled() => return,
    }
    token.cancel();
}

/// How long a clean shutdown may take before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key;
    use crate::snapshot::{Cell, CountTable};
    use std::sync::Mutex;

    /// (key, value) pairs for the next interval.
    type Pending = Arc<Mutex<Vec<(Vec<u8>, f64)>>>;

    /// A source fed by the test: what it holds goes into the next interval.
    struct Feed(Pending);

    impl IntervalSource for Feed {
        fn drain_into(&mut self, snap: &mut IntervalSnapshot) {
            let mut t = CountTable::new(1000);
            for (k, v) in self.0.lock().unwrap().drain(..) {
                t.add(&k, Cell { value: v, lines: 1 });
            }
            snap.merge(vec![t, CountTable::new(1000), CountTable::new(1000)]);
        }
    }

    fn rotator() -> (Rotator, Pending, Arc<Shared>) {
        let config = Config::embedded_default();
        let rules = Arc::new(RuleSet::new(&config.rules));
        let shared = Arc::new(Shared::new(
            &rules,
            60.0,
            ModeInfo {
                active: "userspace",
                requested: Mode::Userspace,
                reason: "test".into(),
                kernel: None,
            },
        ));
        let metrics = Arc::new(Metrics::new(shared.clone()));
        let feed = Arc::new(Mutex::new(Vec::new()));
        let r = Rotator::new(
            &config,
            rules,
            shared.clone(),
            metrics,
            vec![Box::new(Feed(feed.clone()))],
            Vec::new(),
        );
        (r, feed, shared)
    }

    #[test]
    fn a_steady_key_reaches_its_per_minute_rate_and_leaves_75s_after_silence() {
        // 20,000 lines a minute on simulated time: 1,666.67 per 5 s interval.
        let (mut r, feed, shared) = rotator();
        let k = key::from_values(&["192.0.2.2", "900002"]);
        let start = 340_000_000u64;
        for i in 0..24 {
            feed.lock().unwrap().push((k.to_vec(), 20_000.0 / 12.0));
            r.rotate(start + i);
        }
        let view = shared.view();
        let (_, v) = view.rule("top_combined").unwrap().top(1).next().unwrap();
        assert!((v - 20_000.0).abs() < 1e-6, "{v}");
        // 75 s of silence: 15 rotations.
        for i in 24..39 {
            r.rotate(start + i);
        }
        assert_eq!(shared.view().rule("top_combined").unwrap().keys(), 0);
        assert_eq!(shared.rotations.load(Relaxed), 39);
    }

    #[test]
    fn rotation_thread_closes_each_interval_once_on_simulated_time() {
        use crate::clock::ManualClock;
        use std::time::UNIX_EPOCH;
        let (r, feed, shared) = rotator();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = Arc::new(ManualClock::new(t0));
        let (stop_tx, stop_rx) = mpsc::channel();
        let c: Arc<dyn Clock> = clock.clone();
        let th = std::thread::spawn(move || r.run(c, stop_rx));
        feed.lock()
            .unwrap()
            .push((key::from_values(&["a", "b"]).to_vec(), 1.0));
        // Advance only once the thread has read the clock since the last
        // rotation, so that it waits for the boundary this test then passes.
        let wait_for_read = |after: u64| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while clock.reads() <= after {
                assert!(
                    Instant::now() < deadline,
                    "rotation thread never read the clock"
                );
                std::thread::yield_now();
            }
        };
        wait_for_read(0);
        for n in 1..=3u64 {
            clock.advance(Duration::from_secs(5));
            let deadline = Instant::now() + Duration::from_secs(10);
            while shared.rotations.load(Relaxed) < n {
                assert!(Instant::now() < deadline, "rotation {n} did not happen");
                std::thread::sleep(Duration::from_millis(1));
            }
            wait_for_read(clock.reads());
        }
        stop_tx.send(()).unwrap();
        th.join().unwrap();
        let view = shared.view();
        assert_eq!(
            view.window_end,
            Some(t0 + Duration::from_secs(15)),
            "the window ends at the last boundary passed"
        );
        assert_eq!(view.rule("top_combined").unwrap().keys(), 1);
    }
}
