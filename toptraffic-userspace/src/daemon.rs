//! Runs the daemon: receive threads, the kernel path, the rotation thread,
//! the alert sinks and the HTTP API, until SIGINT or SIGTERM; SIGHUP
//! reloads the config.
//!
//! Shutdown loses nothing it could count, in this order: stop receiving
//! (the sockets refuse new datagrams, the threads count what was queued),
//! fold the open interval into the window and save the state file, then
//! give the sinks their queued alerts. It takes at most [`SHUTDOWN_BOUND`];
//! a second SIGINT or SIGTERM ends it at once.
//!
//! One job per thread or task: receive threads count, the rotation thread
//! (rotation.rs) owns the window and the alert engine, closes an interval at
//! every multiple of `every` and publishes a summary, the HTTP server reads
//! that and asks the rotation thread for top keys, sinks deliver alerts.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::cluster::{run_cluster, ClusterRule, ClusterStatus};
use tracing::{error, info, warn};

use crate::alert::event::AlertEvent;
use crate::api::{self, AppState};
use crate::clock::Clock;
use crate::config::{Config, Mode, Overrides, XdpMode};
use crate::control::{Control, Reloader};
use crate::ingest::kernel::{Attach, KernelError, KernelPath, Options as KernelOptions};
use crate::ingest::kernel_config::{self, KernelPlan};
use crate::ingest::udp::{UdpIngest, UdpSettings};
use crate::logging;
use crate::metrics::Metrics;
use crate::outbox;
use crate::rotation::{start_alerts, IntervalSource, Reload, Rotator};
use crate::rules::RuleSet;
use crate::sink::SinkHandle;
use crate::snapshot::IntervalSnapshot;
use crate::stats::DropReason;
use crate::view::{KernelInfo, ModeInfo, Shared};

impl IntervalSource for Arc<UdpIngest> {
    fn drain_into(&mut self, snap: &mut IntervalSnapshot) {
        for tables in self.take_interval() {
            snap.merge(tables);
        }
    }

    fn reload(&mut self, r: &mut Reload<'_>) -> Result<(), String> {
        for c in self.set_rules(r.rules.clone()) {
            r.carry.extend(c.tables.into_iter().enumerate());
        }
        Ok(())
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

/// The kernel path as a source of interval counts.
struct KernelSource {
    path: KernelPath,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

impl IntervalSource for KernelSource {
    fn drain_into(&mut self, snap: &mut IntervalSnapshot) {
        match self.path.drain_reusing(&mut snap.spare) {
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

    fn check_reload(&self, config: &Config) -> Result<(), String> {
        kernel_config::plan(&config.rules).map(|_| ()).map_err(|e| {
            format!("the kernel path cannot take the new rules ({e}); restart with --mode userspace to use them")
        })
    }

    fn reload(&mut self, r: &mut Reload<'_>) -> Result<(), String> {
        let plan = kernel_config::plan_with_ids(&r.config.rules, r.ids)?;
        let userspace_rules: Vec<(String, String)> = r
            .config
            .rules
            .iter()
            .zip(&plan.userspace_only)
            .filter_map(|(rule, u)| u.clone().map(|why| (rule.name.clone(), why)))
            .collect();
        for (rule, why) in &userspace_rules {
            warn!(rule = %rule, reason = %why, "rule runs in userspace: datagrams with its measurement are handed over whole");
        }
        let max_keys = r.config.rules.iter().map(|x| x.max_keys).collect();
        let entries = map_entries(r.config, &plan);
        let held = self.path.map_entries();
        let kernel_rules: Vec<String> = r
            .config
            .rules
            .iter()
            .zip(&plan.userspace_only)
            .filter(|(_, u)| u.is_none())
            .map(|(x, _)| format!("rule {:?} max_keys = {}", x.name, x.max_keys))
            .collect();
        let started = Instant::now();
        self.path.set_rules(plan, max_keys, entries).map_err(|e| {
            if entries > held {
                format!(
                    "the kernel path cannot take the new rules: they need a key set of {entries} slots ({}), the kernel's holds {held}, and {e}; lower max_keys, or run these rules in userspace (restart with --mode userspace)",
                    kernel_rules.join(", ")
                )
            } else {
                format!("the kernel path cannot take the new rules: {e}")
            }
        })?;
        if entries > held {
            info!(
                from = held,
                to = entries,
                took_ms = started.elapsed().as_millis() as u64,
                "resized the kernel's key set"
            );
        }
        let mut mode = self.shared.mode.write().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = &mut mode.kernel {
            k.userspace_rules = userspace_rules;
            k.map_entries = self.path.map_entries();
        }
        Ok(())
    }
}

/// Slots of the kernel's key set: every kernel rule's max_keys (the set
/// holds a key while it counts, and the window keeps at most max_keys of a
/// rule) and a margin. The set never evicts: a datagram with a new key that
/// finds no free slot goes to userspace whole (`map_full`).
fn map_entries(config: &Config, plan: &KernelPlan) -> u32 {
    let keys: usize = config
        .rules
        .iter()
        .zip(&plan.userspace_only)
        .filter(|(_, u)| u.is_none())
        .map(|(r, _)| r.max_keys)
        .sum();
    (keys + 1024).min(u32::MAX as usize) as u32
}

/// Whether the IPv6 socket `fd` takes IPv6 only (IPV6_V6ONLY); false when
/// that cannot be read.
fn v6_only(fd: RawFd) -> bool {
    // SAFETY: `fd` is one of the daemon's receive sockets, open for as long
    // as the daemon runs, so for this call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    socket2::SockRef::from(&fd).only_v6().unwrap_or(false)
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
            // A socket on `::` takes IPv4 too unless it is IPV6_V6ONLY.
            let dual_stack = listen.ip().is_unspecified()
                && listen.is_ipv6()
                && !fds.first().is_some_and(|fd| v6_only(*fd));
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
                    addr: listen.ip(),
                    dual_stack,
                },
                "xdp",
                Some(format!("{iface} ({})", config.ingest.xdp_mode.as_str())),
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
        max_datagram: config.ingest.max_datagram,
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
        // Two daemons on one pin dir would take each other's pins; the
        // second one must not run, in whichever mode.
        Err(e @ KernelError::PinDirHeld(_)) => Err(anyhow::anyhow!("{e}")),
        Err(e) => Ok((
            userspace(format!("the kernel path could not load: {e}")),
            None,
        )),
    }
}

/// What `run` needs besides the config: where it came from, to reload it.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// The config file (None: the embedded default).
    pub config_path: Option<std::path::PathBuf>,
    /// Command-line options, applied again to every reloaded config.
    pub overrides: Overrides,
}

/// Reloads the config on SIGHUP until `shutdown`.
async fn reload_on_sighup(
    reloader: Arc<Reloader>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch SIGHUP: no reload by signal");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {}
            _ = shutdown.cancelled() => return,
        }
        info!("SIGHUP: reloading the config");
        let r = reloader.clone();
        let result = tokio::task::spawn_blocking(move || r.reload())
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        shared.record_reload(&result);
    }
}

/// Runs until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    opts: RunOptions,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<()> {
    let rules = Arc::new(RuleSet::new(&config.rules));
    let settings = UdpSettings {
        listen: config.ingest.listen,
        recv_buffer: config.ingest.recv_buffer,
        max_datagram: config.ingest.max_datagram,
        threads: config.ingest.threads,
    };
    let mut udp = UdpIngest::bind(&settings, rules.clone()).context("opening the UDP sockets")?;
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
    udp.start(config.ingest.max_datagram, shared.userspace.clone())
        .context("starting receive threads")?;
    let udp = Arc::new(udp);

    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http.listen))?;
    let http_addr = http.local_addr()?;
    if exposes_api(http_addr) {
        warn!(
            http = %http_addr,
            "the API listens beyond this host: /api/v1/top shows client IPs and store ids to anyone who can reach it; keep http.listen on 127.0.0.1 and serve /metrics and /healthz on the node address with http.metrics_listen"
        );
    }

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

    // The kernel source first: its reload can fail, and a failure must come
    // before any other source took the new rules (see IntervalSource).
    let mut sources: Vec<Box<dyn IntervalSource>> = Vec::new();
    if let Some(path) = kernel {
        let _ = shared.kernel.set(path.counters());
        sources.push(Box::new(KernelSource {
            path,
            shared: shared.clone(),
            metrics: metrics.clone(),
        }));
    }
    sources.push(Box::new(udp.clone()));
    sources.push(Box::new(SocketDrops {
        base: udp.socket_drops(),
        udp: udp.clone(),
        shared: shared.clone(),
    }));
    let rt = tokio::runtime::Handle::current();
    let alerts = start_alerts(&config, &shared, &rt);
    let mut rotator = Rotator::new(
        config.clone(),
        shared.clone(),
        metrics.clone(),
        sources,
        alerts,
        Some(rt),
    );
    let mut restored = rotator.restore(std::time::SystemTime::now());
    // Without its state file, a cluster node takes back the window it
    // parked at its last stop: its lines stay in the cluster's values.
    if let (false, Some(c)) = (restored, &config.cluster) {
        if !ClusterRule::of(&config).is_empty() {
            if let Some(window) = crate::cluster::own_parked_window(c).await {
                restored = rotator.restore_parked(&window, std::time::SystemTime::now());
            }
        }
    }
    // What the last stop could not deliver goes out first.
    let outbox = config.state.path.as_deref().map(outbox::path_of);
    if let Some(path) = &outbox {
        send_outbox(path, &shared.sinks());
    }
    let (control_tx, control_rx) = mpsc::channel();
    let rotation = std::thread::Builder::new()
        .name("toptraffic-rotate".into())
        .spawn(move || rotator.run(clock, control_rx))?;
    let control = Arc::new(std::sync::Mutex::new(control_tx.clone()));
    let reloader = Arc::new(Reloader {
        path: opts.config_path.clone(),
        overrides: opts.overrides.clone(),
        control: control.clone(),
    });
    tokio::spawn(reload_on_sighup(
        reloader.clone(),
        shared.clone(),
        shutdown.clone(),
    ));

    // Membership in Redis, beside everything else: it never delays them.
    let mut membership = None;
    if let Some(c) = config.cluster.clone() {
        let status = Arc::new(ClusterStatus::new(&c));
        info!(node = %c.node, redis = ?status.view().redis, "cluster: joining");
        let _ = shared.cluster.set(status.clone());
        status.set_rules(ClusterRule::of(&config));
        membership = Some(tokio::spawn(run_cluster(
            c,
            config.window,
            status,
            control.clone(),
            shutdown.clone(),
            restored,
        )));
    }
    let state = AppState {
        shared: shared.clone(),
        metrics,
        every: config.window.every,
        listen: listen.to_string(),
        reloader: config.http.reload.then(|| reloader.clone()),
        control,
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
    // Served beside the shutdown, which never waits for a slow client.
    let failed = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = server.await {
            warn!(error = %e, "HTTP server failed");
            failed.cancel();
        }
    });
    shutdown.cancelled().await;

    let started = Instant::now();
    info!(
        bound = %humantime::format_duration(SHUTDOWN_BOUND),
        "shutting down: stop receiving, save the state, drain the sinks"
    );
    // Nothing new is received from here; what was is counted.
    let receiving = udp.clone();
    let _ = tokio::task::spawn_blocking(move || receiving.stop_receiving()).await;
    // The rotation thread folds it into the window and saves.
    let _ = control_tx.send(Control::Stop);
    drop(reloader);
    let stopped = tokio::task::spawn_blocking(move || rotation.join())
        .await
        .ok()
        .and_then(|r| r.ok());
    let uncounted_lines = stopped.map_or(0, |s| s.uncounted_lines);
    if uncounted_lines > 0 {
        warn!(
            uncounted_lines,
            "lines received after the state was saved were not counted"
        );
    }
    // Give queued alerts their chance, within each sink's timeout and the
    // shutdown's bound.
    let sinks = shared.sinks();
    for s in sinks.iter() {
        s.close();
    }
    let wait = async {
        for s in sinks.iter() {
            s.closed().await;
        }
    };
    let grace = SHUTDOWN_GRACE.min(
        SHUTDOWN_BOUND
            .saturating_sub(started.elapsed())
            .saturating_sub(Duration::from_secs(2)),
    );
    if !sinks.is_empty() {
        info!(grace = %humantime::format_duration(grace), "draining the alert sinks");
    }
    let _ = tokio::time::timeout(grace, wait).await;
    // A cluster node parks its window in Redis (beside the sinks' drain).
    if let Some(m) = membership {
        let left = SHUTDOWN_BOUND
            .saturating_sub(started.elapsed())
            .saturating_sub(Duration::from_secs(1));
        let _ = tokio::time::timeout(left, m).await;
    }
    // Still queued, or cut short by a sink's own drain: the state file
    // has them as sent, so they are kept in the outbox for the next start
    // (with a state file; lost with the process otherwise).
    let undelivered: u64 = sinks
        .iter()
        .map(|s| s.stats().snapshot().undelivered())
        .sum();
    let left: Vec<(String, Arc<AlertEvent>)> = sinks
        .iter()
        .flat_map(|s| s.take_left().into_iter().map(|e| (s.name().to_string(), e)))
        .collect();
    let mut alerts_kept = 0;
    if let Some(path) = &outbox {
        match outbox::write(path, &left) {
            Ok(()) => alerts_kept = left.len(),
            Err(e) => {
                error!(path = %path.display(), error = %e, "could not keep the undelivered alert events")
            }
        }
    }
    if undelivered > 0 {
        warn!(
            alerts_undelivered = undelivered,
            alerts_kept, "alert events not delivered before shutdown"
        );
    }
    // The sockets close with the last reference (the rotation's are gone).
    drop(udp);
    let u = shared.userspace_snapshot();
    let k = shared.kernel_snapshot();
    info!(
        points_kernel = k.points,
        points_userspace = u.points,
        datagrams_kernel = k.datagrams,
        datagrams_userspace = u.datagrams,
        parse_errors = u.dropped(DropReason::ParseError),
        uncounted_lines,
        alerts_undelivered = undelivered,
        alerts_kept,
        log_lines_lost = logging::stderr_lost(),
        seconds = started.elapsed().as_secs_f64(),
        "stopped"
    );
    // A supervisor or an upgrade script must be able to tell.
    if stopped.is_some_and(|s| !s.saved) {
        anyhow::bail!("stopped without saving the state file (see the error above)");
    }
    Ok(())
}

/// Offers the events the last stop kept in the outbox at `path` to the
/// sinks of the same names (the same rule, block and kind).
fn send_outbox(path: &std::path::Path, sinks: &[SinkHandle]) {
    let (events, errors) = outbox::take(path);
    for e in errors {
        warn!(path = %path.display(), error = %e, "an outbox line cannot be read; left out");
    }
    if events.is_empty() {
        return;
    }
    let (mut offered, mut unknown) = (0, 0);
    for (name, ev) in events {
        match sinks.iter().find(|s| s.name() == name) {
            Some(s) => offered += usize::from(s.offer(Arc::new(ev))),
            None => unknown += 1,
        }
    }
    info!(
        path = %path.display(),
        offered,
        "sending the alert events the last stop could not deliver"
    );
    if unknown > 0 {
        warn!(
            events = unknown,
            "outbox events for sinks the config no longer has: not sent"
        );
    }
}

/// Whether `addr` is reachable from beyond this host.
fn exposes_api(addr: SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// Waits for SIGINT or SIGTERM (or another cause of shutdown), then cancels
/// `token`. From then on the shutdown has [`SHUTDOWN_BOUND`] before the
/// process exits anyway, and a second SIGINT or SIGTERM exits at once with
/// 128 + its number.
pub async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            warn!(error = %e, "cannot watch SIGTERM and SIGINT");
            return;
        }
    };
    let first = tokio::select! {
        _ = int.recv() => Some("SIGINT"),
        _ = term.recv() => Some("SIGTERM"),
        _ = token.cancelled() => None,
    };
    if let Some(signal) = first {
        info!(signal, "stopping; a second SIGINT or SIGTERM exits at once");
    }
    token.cancel();
    exit_after(SHUTDOWN_BOUND);
    let (signal, code) = tokio::select! {
        _ = int.recv() => ("SIGINT", 128 + libc::SIGINT),
        _ = term.recv() => ("SIGTERM", 128 + libc::SIGTERM),
    };
    warn!(
        signal,
        exit_code = code,
        "second signal: exiting before the shutdown finished"
    );
    logging::exit(code, Duration::from_millis(200));
}

/// Ends the process with [`SHUTDOWN_OVERRUN_EXIT`] if it still runs `bound`
/// from now. A thread of its own, so that nothing the shutdown waits on
/// (the runtime included) can hold it.
fn exit_after(bound: Duration) {
    let spawned = std::thread::Builder::new()
        .name("toptraffic-bound".into())
        .spawn(move || {
            std::thread::sleep(bound);
            error!(
                bound = %humantime::format_duration(bound),
                "the shutdown did not finish in time: exiting"
            );
            logging::exit(SHUTDOWN_OVERRUN_EXIT, Duration::from_millis(500));
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot bound the shutdown");
    }
}

/// How long the alert sinks may deliver what they hold at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a shutdown may take in all, from the signal: stopping the
/// receive threads, saving the state, the sinks' grace. Past it the process
/// exits with [`SHUTDOWN_OVERRUN_EXIT`].
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(15);

/// Exit code when the shutdown overran [`SHUTDOWN_BOUND`].
pub const SHUTDOWN_OVERRUN_EXIT: i32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_loopback_api_is_private() {
        for (addr, exposed) in [
            ("127.0.0.1:9090", false),
            ("[::1]:9090", false),
            ("0.0.0.0:9090", true),
            ("[::]:9090", true),
            ("10.1.2.3:9090", true),
        ] {
            assert_eq!(exposes_api(addr.parse().unwrap()), exposed, "{addr}");
        }
    }
}
