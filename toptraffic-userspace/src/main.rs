//! The `toptraffic` command: `run` the daemon, `check` a config, show the
//! `top` keys of a running daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use toptraffic::clock::SystemClock;

/// See Cargo.toml: little fragmentation under churn, and speed in the musl build.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (mimalloc.h, v3): the number the
/// crate does not export. Milliseconds a freed page waits before it goes
/// back to the kernel; -1 keeps freed pages.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed pages until [`return_pages_after`] says otherwise: set
/// first thing, before anything could free and purge a page.
fn keep_freed_pages() {
    // SAFETY: sets one of mimalloc's options, a plain integer it reads
    // when deciding to purge; any value is valid, -1 disables purging.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Pages freed and not taken again within `delay` go back to the kernel.
///
/// The daemon's memory is bounded by its config (docs/OPERATIONS.md), and
/// every interval frees and takes again much the same tables: a delay of a
/// window keeps most of those pages (no page faults a rotation). Never
/// returning any, though, keeps every page the allocator ever used: RSS
/// climbed 18-29 MiB over the daemon's use after a doubled flood
/// (tests/flood.rs, kernel mode), and held the soak at 225 MiB against
/// 145-183 (docs/BENCHMARKS.md). Set from the config at start, before the
/// runtime's threads (a reload keeps the delay).
fn return_pages_after(delay: std::time::Duration) {
    let ms = libc::c_long::try_from(delay.as_millis()).unwrap_or(libc::c_long::MAX);
    // SAFETY: as in keep_freed_pages; a positive value is a delay in ms.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms.max(1)) };
}
use toptraffic::config::Overrides;
use toptraffic::config::{self, Config, Mode};
use toptraffic::daemon;
use toptraffic::logging;

#[derive(Parser)]
#[command(
    name = "toptraffic",
    version,
    about = "Counts InfluxDB line protocol per client and tenant over a sliding window, with bounded memory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the embedded default config without --config).
    Run {
        /// TOML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Ingest path: auto, kernel or userspace.
        #[arg(long)]
        mode: Option<Mode>,
        /// UDP address to receive line protocol on.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// HTTP address of the API and /metrics.
        #[arg(long)]
        http: Option<SocketAddr>,
    },
    /// Validate a config file; errors name the line and the field.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Convert Kapacitor TICKscripts into a config (printed on stdout).
    /// What cannot be converted is named on stderr with its line and
    /// column; exit status 0 when everything was converted, 1 when
    /// something was left out, 2 when nothing could be.
    Import {
        /// TICKscript files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The rule's name (default: the file's name without .tick).
        #[arg(long)]
        name: Option<String>,
    },
    /// Run the rules on recorded traffic on simulated time, as fast as the
    /// machine goes, and print every alert event as a JSON line (the log
    /// sink's format) on stdout.
    Replay(ReplayArgs),
    /// Run rule unit tests: per-key counts per interval (or recorded
    /// traffic) through the rules, the alert events compared with those
    /// expected; a difference is printed as a diff and the exit status is
    /// 1 (2 when a file cannot run).
    Test {
        /// Test files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a rule's top keys from a running daemon.
    Top {
        #[arg(long, short)]
        rule: String,
        /// Rows to show (at least 1).
        #[arg(short = 'n', long = "limit", default_value_t = 20,
              value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
        /// HTTP address of the daemon.
        #[arg(long, default_value = config::defaults::HTTP_LISTEN)]
        http: SocketAddr,
        /// The cluster-wide values the nodes exchanged (with `[cluster]`),
        /// each node's share beside them.
        #[arg(long)]
        cluster: bool,
    },
    /// Send line protocol with the shape of ingress traffic, and optionally
    /// check that a running daemon counted it exactly.
    Loadgen(LoadgenArgs),
    /// Create the daemon's directories (the pin dir, the state dir) and hand
    /// them to the user it runs as: run as root (CAP_CHOWN is enough) before
    /// a non-root daemon, as the DaemonSet's init container does.
    PrepareDirs {
        /// The daemon's user and group, as UID:GID.
        #[arg(long)]
        owner: toptraffic::dirs::Owner,
        /// Directories to create or hand over.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// TOML config file (the embedded default without it).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Line protocol with timestamps (each line's timestamp is its arrival
    /// time), or pcap/pcapng captures of the UDP datagrams to the listen
    /// port (e.g. `tcpdump -w spike.pcap udp port 9100`).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Also print each interval's N top keys of every rule.
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// Unit of the line protocol timestamps: ns, us, ms or s.
    #[arg(long, default_value = "ns")]
    precision: toptraffic::replay::Precision,
    /// Hand the events to the config's sinks too (they are not called
    /// without it).
    #[arg(long)]
    sinks: bool,
    /// After the input, go on until every window is empty (the step-downs
    /// and recoveries a running daemon would then send).
    #[arg(long)]
    until_empty: bool,
    /// UDP port whose datagrams a capture holds (default: the config's
    /// ingest.listen port).
    #[arg(long)]
    port: Option<u16>,
}

#[derive(clap::Args)]
struct LoadgenArgs {
    /// UDP address of the daemon.
    #[arg(long, default_value = config::defaults::LISTEN)]
    to: SocketAddr,
    /// Valid lines to send.
    #[arg(long, default_value_t = 200_000)]
    lines: u64,
    /// Distinct (ip, id) keys.
    #[arg(long, default_value_t = 50_000)]
    keys: usize,
    /// Distinct ips (default: as many as keys).
    #[arg(long)]
    ips: Option<usize>,
    /// Distinct store ids.
    #[arg(long, default_value_t = 25_000)]
    ids: usize,
    /// Lines per datagram, N or MIN-MAX.
    #[arg(long, default_value = "1", value_parser = parse_range)]
    per_datagram: (usize, usize),
    /// Malformed lines per thousand.
    #[arg(long, default_value_t = 0)]
    malformed_per_mille: u32,
    /// Lines per thousand with an escaped space in the uri (valid; the
    /// kernel path hands them to userspace).
    #[arg(long, default_value_t = 0)]
    escaped_per_mille: u32,
    /// Keys per thousand with a 70-byte store id (too long for a kernel key).
    #[arg(long, default_value_t = 0)]
    long_ids_per_mille: u32,
    /// Lines per second; 0 sends flat out.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Stop after this long whatever was sent.
    #[arg(long, default_value = "60s", value_parser = config::parse_duration)]
    max_time: std::time::Duration,
    /// 1 is uniform; larger favours a few heavy keys.
    #[arg(long, default_value_t = 1.0)]
    skew: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// After sending, wait for the next window and compare this daemon's
    /// counts of --rule with what was sent; exit 1 on any difference.
    #[arg(long)]
    verify_http: Option<SocketAddr>,
    #[arg(long, default_value = "top_combined")]
    rule: String,
    /// The seed report's shape: 94k keys over 50k ips and 25k ids, skew 2.
    #[arg(long, conflicts_with_all = ["keys", "ips", "ids", "skew"])]
    seed_shape: bool,
    /// Lines take the measurements combined, ips and stores in turn, so
    /// that every default rule holds the keys.
    #[arg(long)]
    all_measurements: bool,
    /// Key i gets ip i and id i (needs ips and ids >= keys).
    #[arg(long)]
    distinct_ids: bool,
    /// Sender threads; each has its own source ports and random stream.
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// Source ports per sender, used in turn (SO_REUSEPORT spreads flows).
    #[arg(long, default_value_t = 1)]
    flows: usize,
    /// Datagrams generated ahead per sender and sent in turn (0: none).
    #[arg(long, default_value_t = 0)]
    pool: usize,
    /// Share of the keys replaced by new ones per minute (0.1 = 10%).
    #[arg(long, default_value_t = 0.0)]
    churn_per_minute: f64,
    /// Show the daemon's counted and lost lines from its stats at this
    /// HTTP address (implied by --verify-http).
    #[arg(long)]
    stats_http: Option<SocketAddr>,
}

fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let lo: usize = lo
        .trim()
        .parse()
        .map_err(|_| format!("bad number in {s:?}"))?;
    let hi: usize = hi
        .trim()
        .parse()
        .map_err(|_| format!("bad number in {s:?}"))?;
    if lo == 0 || hi < lo {
        return Err(format!("{s:?}: need 1 <= MIN <= MAX"));
    }
    Ok((lo, hi))
}

fn load(path: Option<&PathBuf>) -> Result<Config, config::ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None => Config::parse(config::DEFAULT_CONFIG, config::DEFAULT_CONFIG_NAME),
    }
}

fn loadgen_options(a: LoadgenArgs) -> toptraffic_loadgen::Options {
    use toptraffic_loadgen::Shape;
    let base = if a.seed_shape {
        Shape::seed_like()
    } else {
        Shape {
            keys: a.keys,
            ips: a.ips.unwrap_or(a.keys),
            ids: a.ids,
            skew: a.skew,
            ..Default::default()
        }
    };
    toptraffic_loadgen::Options {
        shape: Shape {
            lines_per_datagram: a.per_datagram,
            malformed_per_mille: a.malformed_per_mille,
            escaped_per_mille: a.escaped_per_mille,
            long_ids_per_mille: a.long_ids_per_mille,
            all_measurements: a.all_measurements,
            distinct_ids: a.distinct_ids,
            seed: a.seed,
            ..base
        },
        to: a.to,
        lines: a.lines,
        rate: a.rate,
        max_time: a.max_time,
        senders: a.senders.max(1),
        flows: a.flows.max(1),
        pool: a.pool,
        churn_per_minute: a.churn_per_minute,
        stats_http: a.stats_http,
        verify_http: a.verify_http,
        rule: a.rule,
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TOPTRAFFIC_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        // Its report of a write error is an eprintln!, which panics on a
        // closed stderr; our writers never fail anyway.
        .log_internal_errors(false);
    match logging::stderr() {
        Some(pipe) => builder.with_writer(move || pipe.writer()).init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}

/// `toptraffic import`: the config on stdout, findings on stderr.
fn import(files: &[PathBuf], name: Option<&str>) -> ExitCode {
    use toptraffic::import::{self, ImportError, Script};
    let mut scripts = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("toptraffic import: {}: {e}", f.display());
                return ExitCode::from(2);
            }
        };
        let rule_name = match (name, i) {
            (Some(n), 0) => n.to_string(),
            (Some(n), i) => format!("{n}_{}", i + 1),
            (None, _) => import::rule_name_of(f),
        };
        scripts.push(Script {
            file: f.display().to_string(),
            text,
            rule_name,
        });
    }
    match import::import(&scripts) {
        Ok(out) => {
            print!("{}", out.toml);
            for f in &out.findings {
                eprintln!("{f}");
            }
            if out.complete() {
                eprintln!(
                    "toptraffic import: converted completely ({} rules)",
                    out.rules
                );
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "toptraffic import: converted partly ({} rules): what is named \"not converted\" above is not in the config",
                    out.rules
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            if let ImportError::Nothing { findings } | ImportError::Invalid { findings, .. } = &e {
                for f in findings {
                    eprintln!("{f}");
                }
            }
            eprintln!("toptraffic import: {e}");
            ExitCode::from(2)
        }
    }
}

/// `toptraffic replay`: events (and top keys) on stdout, a summary on
/// stderr.
fn replay(a: ReplayArgs) -> ExitCode {
    use std::io::Write;
    use toptraffic::replay::{self, Options, Skipped};
    let config = match load(a.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let port = a.port.unwrap_or(config.ingest.listen.port());
    let mut datagrams = Vec::new();
    let mut skipped = Skipped::default();
    for input in &a.inputs {
        if let Err(e) = replay::read(input, a.precision, port, &mut datagrams, &mut skipped) {
            eprintln!("toptraffic replay: {e}");
            return ExitCode::FAILURE;
        }
    }
    let opts = Options {
        top: a.top,
        sinks: a.sinks,
        until_empty: a.until_empty,
        until: None,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_failed = None;
    let result = replay::replay(config, datagrams, &opts, |o| {
        if write_failed.is_none() {
            if let Err(e) = writeln!(out, "{}", o.to_json()) {
                write_failed = Some(e);
            }
        }
    });
    if let Err(e) = out.flush() {
        write_failed.get_or_insert(e);
    }
    if let Some(e) = write_failed {
        eprintln!("toptraffic replay: writing to stdout: {e}");
        return ExitCode::FAILURE;
    }
    match result {
        Ok(s) => {
            let dropped: Vec<String> = s.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
            eprintln!(
                "toptraffic replay: {} datagrams, {} lines counted{}, {} intervals, {} events{}{}",
                s.datagrams,
                s.points,
                if dropped.is_empty() {
                    String::new()
                } else {
                    format!(" (dropped: {})", dropped.join(", "))
                },
                s.intervals,
                s.events,
                if skipped.other_frames + skipped.fragments > 0 {
                    format!(
                        "; skipped {} frames not to UDP port {port} and {} IP fragments",
                        skipped.other_frames, skipped.fragments
                    )
                } else {
                    String::new()
                },
                if s.sink_drops > 0 {
                    format!("; the sinks dropped {} events (full queues)", s.sink_drops)
                } else {
                    String::new()
                },
            );
            if skipped.unplaced_lines > 0 {
                eprintln!(
                    "toptraffic replay: {} lines that do not parse came before any line with a timestamp: not replayed (no time to replay them at)",
                    skipped.unplaced_lines
                );
            }
            if skipped.cut_short {
                eprintln!(
                    "toptraffic replay: a capture ends inside a packet (cut short, as a killed tcpdump leaves it): read up to there"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("toptraffic replay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `toptraffic test`: a line per test, the diff of each failure, totals.
fn rule_tests(files: &[PathBuf]) -> ExitCode {
    let (mut passed, mut failed) = (0, 0);
    for f in files {
        let r = match toptraffic::ruletest::run_file(f) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("toptraffic test: {e}");
                return ExitCode::from(2);
            }
        };
        for c in &r.cases {
            match &c.diff {
                None => {
                    passed += 1;
                    println!("{}: test {:?}: ok ({} events)", r.file, c.name, c.events);
                }
                Some(d) => {
                    failed += 1;
                    println!("{}: test {:?}: FAILED\n{d}", r.file, c.name);
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Small pages only, for the whole process. mimalloc asks for transparent
/// huge pages on its arena (MADV_HUGEPAGE) and returns freed memory in
/// smaller pieces; khugepaged then collapses a 2 MiB range with any page
/// still in use back into a whole huge page, so RSS rose by tens of MiB
/// with nothing allocated, and fell at the next purge (30-44 MiB steps in
/// the soak, docs/BENCHMARKS.md). Set before anything is allocated that
/// could be collapsed; a child inherits it.
fn small_pages_only() {
    // SAFETY: PR_SET_THP_DISABLE takes a flag and no pointers.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        // Before logging is set up; the daemon runs on without it.
        eprintln!(
            "toptraffic: cannot turn transparent huge pages off ({}); RSS may step",
            std::io::Error::last_os_error()
        );
    }
}

fn main() -> ExitCode {
    small_pages_only();
    keep_freed_pages();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(config.as_ref()) {
            Ok(c) => {
                let name = config
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| config::DEFAULT_CONFIG_NAME.into());
                let rules: Vec<&str> = c.rules.iter().map(|r| r.name.as_str()).collect();
                println!("{name}: ok ({} rules: {})", rules.len(), rules.join(", "));
                for r in &c.rules {
                    match &r.overflow {
                        Some(o) => println!("  rule {:?}: max_keys {}, {o}", r.name, r.max_keys),
                        None => println!(
                            "  rule {:?}: max_keys {}, no overflow sketch",
                            r.name, r.max_keys
                        ),
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Import { files, name } => import(&files, name.as_deref()),
        Command::Replay(args) => replay(args),
        Command::Test { files } => rule_tests(&files),
        Command::Top {
            rule,
            limit,
            http,
            cluster,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            match rt.block_on(toptraffic::top::fetch(http, &rule, limit, cluster)) {
                Ok(v) => {
                    print!("{}", toptraffic::top::render(&v));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("toptraffic top: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Loadgen(args) => match toptraffic_loadgen::cli(loadgen_options(args)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("toptraffic loadgen: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::PrepareDirs { owner, dirs } => {
            for d in &dirs {
                match toptraffic::dirs::prepare(d, owner) {
                    Ok(what) => println!("{}: {what}, {}:{}", d.display(), owner.uid, owner.gid),
                    Err(e) => {
                        eprintln!("toptraffic prepare-dirs: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Run {
            config,
            mode,
            listen,
            http,
        } => {
            // Before any thread starts, so that every thread has them: the
            // image's binary is permitted its capabilities, not given them.
            let raised = toptraffic::caps::raise_permitted();
            let mut c = match load(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let overrides = Overrides { mode, listen, http };
            overrides.apply(&mut c);
            return_pages_after(c.window.period);
            let opts = daemon::RunOptions {
                config_path: config.clone(),
                overrides,
            };
            init_tracing();
            logging::exit_on_panic();
            match raised {
                Ok(0) => {}
                Ok(mask) => tracing::debug!(
                    mask = format!("{mask:#x}"),
                    "raised the permitted capabilities"
                ),
                Err(e) => tracing::warn!(error = %e, "could not raise the permitted capabilities"),
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("toptraffic-rt")
                .enable_all()
                .build()
                .expect("a tokio runtime");
            let token = CancellationToken::new();
            rt.spawn(daemon::cancel_on_signal(token.clone()));
            let result = rt.block_on(daemon::run(c, opts, Arc::new(SystemClock), token));
            // What is left (a sink that gave up, the HTTP server's last
            // connections) has had its time: do not wait for it.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            let code = match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    logging::say(&format!("toptraffic: {e:#}"));
                    ExitCode::FAILURE
                }
            };
            logging::flush_stderr(std::time::Duration::from_secs(1));
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_option_is_the_one_mimalloc_documents() {
        // mimalloc v3's options.c: purge_delay defaults to 1000 ms; no
        // other option does (its neighbours: 1 and 0).
        // SAFETY: reads an option, a plain integer.
        let v = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert!(v == 1000 || v == -1, "{v}");
        keep_freed_pages();
        // SAFETY: as above.
        let v = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(v, -1);
        return_pages_after(std::time::Duration::from_secs(60));
        // SAFETY: as above.
        let v = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(v, 60_000);
    }

    #[test]
    fn huge_pages_are_off_for_the_process() {
        small_pages_only();
        // SAFETY: PR_GET_THP_DISABLE takes no arguments.
        let r = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(r, 1);
    }
}
