//! `toptraffic loadgen`: send, report the daemon's counts, and verify.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use toptraffic_api::{Stats, Top, MAX_LIMIT};

use crate::generate::{merge_truth, Generator, Shape};
use crate::http::get;
use crate::send::{run_parallel, senders, Plan};
use crate::verify::{accounted, compare_top, Tally};

/// What `toptraffic loadgen` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub shape: Shape,
    pub to: SocketAddr,
    pub lines: u64,
    pub rate: u64,
    pub max_time: Duration,
    /// Sender threads.
    pub senders: usize,
    /// Source ports per sender.
    pub flows: usize,
    /// Datagrams generated ahead per sender and sent in turn (0: each one
    /// generated as it is sent).
    pub pool: usize,
    pub churn_per_minute: f64,
    /// Read the daemon's stats here for the progress line and the report.
    pub stats_http: Option<SocketAddr>,
    pub verify_http: Option<SocketAddr>,
    pub rule: String,
}

/// `toptraffic loadgen`: sends, reports, and verifies when asked. Ok(false)
/// when the verification found a difference.
pub fn cli(o: Options) -> anyhow::Result<bool> {
    use anyhow::Context;
    anyhow::ensure!(
        o.pool == 0 || o.churn_per_minute == 0.0,
        "--pool repeats the same datagrams: it cannot churn keys"
    );
    let stats_http = o.stats_http.or(o.verify_http);
    let baseline = match stats_http {
        Some(http) => Some(
            get::<Stats>(http, "/api/v1/stats")
                .with_context(|| format!("reading the daemon's stats at {http}"))?,
        ),
        None => None,
    };
    let mut gens = senders(Generator::new(o.shape.clone()), o.senders);
    if o.pool > 0 {
        for g in &mut gens {
            g.use_pool(o.pool);
        }
    }
    eprintln!(
        "sending {} lines over {} keys to {} ({} lines/datagram, {} malformed per mille, {}, {} sender(s) x {} flow(s){})",
        o.lines,
        gens[0].keys().len(),
        o.to,
        if o.shape.lines_per_datagram.0 == o.shape.lines_per_datagram.1 {
            o.shape.lines_per_datagram.0.to_string()
        } else {
            format!(
                "{}-{}",
                o.shape.lines_per_datagram.0, o.shape.lines_per_datagram.1
            )
        },
        o.shape.malformed_per_mille,
        if o.rate == 0 {
            "flat out".to_string()
        } else {
            format!("{} lines/s", o.rate)
        },
        o.senders,
        o.flows,
        if o.churn_per_minute > 0.0 {
            format!(", {:.1}% of the keys replaced a minute", o.churn_per_minute * 100.0)
        } else {
            String::new()
        }
    );
    let plan = Plan {
        to: o.to,
        lines: o.lines,
        rate: o.rate,
        max_time: o.max_time,
        flows: o.flows,
        churn_per_minute: o.churn_per_minute,
    };
    let (sent, gens) = run_parallel(gens, &plan, |s| {
        let secs = s.elapsed.as_secs_f64();
        let mut line = format!(
            "  {secs:>6.1}s  {} lines  {} datagrams  {:.0} lines/s",
            s.valid_lines,
            s.datagrams,
            s.valid_lines as f64 / secs
        );
        if let (Some(http), Some(base)) = (stats_http, &baseline) {
            // Lines still in flight show as behind for a moment.
            match get::<Stats>(http, "/api/v1/stats") {
                Ok(now) => {
                    let t = Tally::of(base, &now);
                    line += &format!(
                        "  | daemon: counted {} (kernel {}, userspace {}), dropped {}, behind {}",
                        t.counted(),
                        t.points_kernel,
                        t.points_userspace,
                        t.line_drops,
                        t.lost(s.lines())
                    );
                }
                Err(e) => line += &format!("  | daemon stats: {e}"),
            }
        }
        eprintln!("{line}");
    })?;
    let secs = sent.elapsed.as_secs_f64();
    println!(
        "sent {} valid + {} malformed lines in {} datagrams in {:.2}s ({:.0} lines/s)",
        sent.valid_lines,
        sent.malformed_lines,
        sent.datagrams,
        secs,
        sent.lines() as f64 / secs
    );
    let (Some(http), Some(baseline)) = (stats_http, baseline) else {
        return Ok(true);
    };
    // Wait until every line is accounted for, or the count stops moving.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stats: Stats = get(http, "/api/v1/stats")?;
    let mut still = Instant::now();
    loop {
        let t = Tally::of(&baseline, &stats);
        if t.lost(sent.lines()) == 0
            || Instant::now() > deadline
            || still.elapsed() > Duration::from_secs(3)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let next: Stats = get(http, "/api/v1/stats")?;
        if Tally::of(&baseline, &next) != t {
            still = Instant::now();
        }
        stats = next;
    }
    let t = Tally::of(&baseline, &stats);
    let n = |f: fn(&Stats) -> u64| f(&stats) as i64 - f(&baseline) as i64;
    let dropped = |r: &str| {
        let of = |s: &Stats| s.dropped.get(r).copied().unwrap_or(0) as i64;
        of(&stats) - of(&baseline)
    };
    println!(
        "daemon: points_kernel +{} points_userspace +{} datagrams_kernel +{} datagrams_userspace +{} parse_error +{} receive_queue +{}",
        n(|s| s.points_kernel),
        n(|s| s.points_userspace),
        n(|s| s.datagrams_kernel),
        n(|s| s.datagrams_userspace),
        dropped("parse_error"),
        dropped("receive_queue")
    );
    let lost = t.lost(sent.lines());
    println!(
        "counted {} lines, dropped {} (per-line reasons), lost {} ({:.3}%)",
        t.counted(),
        t.line_drops,
        lost,
        lost as f64 * 100.0 / sent.lines().max(1) as f64
    );
    let Some(http) = o.verify_http else {
        return Ok(true);
    };
    let truth = merge_truth(&gens);
    let want = accounted(&baseline) + sent.lines();
    let got = accounted(&stats);
    if got < want {
        println!("lost: {} lines not accounted for", want - got);
    }
    // Everything sent was counted by now, so the first window that ends at
    // or after now holds it. (Waiting for the window after the one current
    // at `stats` is not enough: a rotation that drained before the last
    // lines but published after `stats` was read ends too early.)
    let counted_by = std::time::SystemTime::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    let top = loop {
        let limit = (truth.len() * 2 + 10).min(MAX_LIMIT);
        let top: Top = get(http, &format!("/api/v1/top?rule={}&limit={limit}", o.rule))?;
        let ends_after = top
            .window_end
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .is_some_and(|end| end >= counted_by);
        if ends_after || Instant::now() > deadline {
            break top;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let verdict = compare_top(&top, &truth);
    println!(
        "rule {}: window ending {} holds {} keys, {} sent; {} wrong, {} extra",
        o.rule,
        top.window_end.as_deref().unwrap_or("?"),
        verdict.keys_reported,
        verdict.keys_sent,
        verdict.wrong,
        verdict.extra
    );
    if let Some(w) = &verdict.first_wrong {
        println!("first difference: {w}");
    }
    let exact = verdict.exact() && got == want;
    println!("{}", if exact { "EXACT" } else { "MISMATCH" });
    Ok(exact)
}
