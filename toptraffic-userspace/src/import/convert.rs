//! From a TICKscript's pipeline to toptraffic's rules and alert blocks:
//! `stream|from()` (measurement, where, groupBy), `|window()`, `|sum()` or
//! `|count()` make a rule, each `|alert()` below it an alert block with its
//! handlers as sinks. What has no equivalent is reported with its line,
//! column and the reason; `|barrier()` is dropped with a note.

use std::fmt::Write as _;

use super::pipeline::{Arg, Call, Node, Pipeline, Pos};
use crate::alert::tick::script::ScriptTok;
use crate::alert::tick::Expr;

/// Whether a finding leaves the conversion complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Dropped or changed on purpose; the config does what the script did.
    Note,
    /// Not converted: the config lacks it.
    Refused,
}

/// Something said about a place in a script.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub file: String,
    pub pos: Pos,
    pub severity: Severity,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.severity {
            Severity::Note => "note",
            Severity::Refused => "not converted",
        };
        write!(
            f,
            "{}:{}:{}: {what}: {}",
            self.file, self.pos.line, self.pos.col, self.message
        )
    }
}

/// `[window]`: one for all rules.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WindowOut {
    pub(super) period: String,
    pub(super) every: String,
}

#[derive(Debug, Clone, Default)]
pub(super) struct RuleOut {
    pub(super) name: String,
    pub(super) measurement: String,
    pub(super) filters: Vec<(String, String)>,
    pub(super) group_by: Vec<String>,
    pub(super) aggregate: &'static str,
    pub(super) field: Option<String>,
    pub(super) as_name: Option<String>,
    pub(super) blocks: Vec<BlockOut>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct BlockOut {
    name: String,
    levels: [Option<String>; 3],
    flapping: Option<(f64, f64)>,
    history: Option<u64>,
    /// None: off; Some(None): on; Some(Some(d)): re-send after d.
    state_changes_only: Option<Option<String>>,
    no_recoveries: bool,
    id: Option<String>,
    message: Option<String>,
    details: Option<String>,
    log: Option<String>,
    exec: Option<Vec<String>>,
    slack: Option<SlackOut>,
    http: Vec<HttpOut>,
}

#[derive(Debug, Clone, Default)]
struct SlackOut {
    channel: Option<String>,
    username: Option<String>,
    icon_emoji: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct HttpOut {
    url: String,
    headers: Vec<(String, String)>,
}

/// What one script converted to.
pub(super) struct Converted {
    pub(super) window: Option<(WindowOut, Pos)>,
    pub(super) rules: Vec<(RuleOut, Pos)>,
    pub(super) findings: Vec<Finding>,
}

/// Placeholder for what a TICKscript leaves to kapacitor.conf.
pub(super) const SLACK_URL_PLACEHOLDER: &str = "https://hooks.slack.com/services/SET/THIS/URL";

const AGGREGATES_ELSEWHERE: &[&str] = &[
    "mean",
    "median",
    "mode",
    "max",
    "min",
    "spread",
    "stddev",
    "percentile",
    "first",
    "last",
    "distinct",
    "top",
    "bottom",
    "elapsed",
    "cumulativeSum",
    "derivative",
    "difference",
    "movingAverage",
    "integral",
    "holtWinters",
    "holtWintersWithFit",
];

/// Why a node kind has no equivalent.
fn refusal(kind: &str) -> String {
    match kind {
        k if AGGREGATES_ELSEWHERE.contains(&k) => format!(
            "|{k}() has no equivalent: a rule's value is the count of its lines or the sum of one field over the window (aggregate = \"count\" or \"sum\")"
        ),
        "join" | "union" | "combine" => format!(
            "|{kind}() has no equivalent: a rule reads one measurement, and rules are not combined"
        ),
        "deadman" => "|deadman() has no equivalent: watch toptraffic_points_total and /healthz (a stalled input) instead".to_string(),
        "influxDBOut" | "kapacitorLoopback" | "httpPost" => format!(
            "|{kind}() has no equivalent: toptraffic writes nothing back; its windows are served by /api/v1/top and its events by the alert sinks"
        ),
        "alert" => "|alert() is converted only right below |sum() or |count(): an alert block evaluates a rule's window value".to_string(),
        "window" => "|window() is converted only between |from() and |sum() or |count()".to_string(),
        "sum" | "count" => format!("|{kind}() is converted only after a |window()"),
        _ => format!(
            "|{kind}() has no equivalent: a rule counts lines (or sums a field) per group over a sliding window and alerts on that value"
        ),
    }
}

struct Ctx<'a> {
    file: &'a str,
    p: &'a Pipeline,
    /// Nodes that something was said about, or converted.
    seen: Vec<bool>,
    findings: Vec<Finding>,
    window: Option<(WindowOut, Pos)>,
    rules: Vec<(RuleOut, Pos)>,
}

/// The rule so far, while walking down from `|from()`.
#[derive(Clone)]
struct Partial {
    measurement: String,
    filters: Vec<(String, String)>,
    group_by: Vec<String>,
    window: Option<(WindowOut, Pos)>,
}

pub(super) fn convert(file: &str, p: &Pipeline) -> Converted {
    let mut c = Ctx {
        file,
        p,
        seen: vec![false; p.nodes.len()],
        findings: Vec::new(),
        window: None,
        rules: Vec::new(),
    };
    for &pos in &p.dbrp {
        c.note(pos, "dbrp dropped: toptraffic has no databases, its rules take the lines sent to ingest.listen by measurement".to_string());
    }
    for (i, n) in p.nodes.iter().enumerate() {
        if n.parent.is_some() {
            continue;
        }
        c.seen[i] = true;
        if n.kind == "batch" {
            c.refuse_tree(i, "batch tasks query InfluxDB; toptraffic counts the stream of lines it receives (stream|from())".to_string());
            continue;
        }
        for ch in p.children(i).collect::<Vec<_>>() {
            if p.nodes[ch].kind == "from" && !p.nodes[ch].udf {
                c.from(ch);
            } else {
                let why = refusal(&p.nodes[ch].kind);
                c.refuse_tree(ch, why);
            }
        }
    }
    for i in 0..p.nodes.len() {
        if !c.seen[i] {
            let why = refusal(&p.nodes[i].kind);
            c.refuse_tree(i, why);
        }
    }
    c.findings.sort_by_key(|f| (f.pos.line, f.pos.col));
    Converted {
        window: c.window,
        rules: c.rules,
        findings: c.findings,
    }
}

fn str_arg(call: &Call, i: usize) -> Option<&str> {
    match call.args.get(i) {
        Some(Arg::Str(s)) => Some(s),
        _ => None,
    }
}

/// A Kapacitor duration as toptraffic writes it (`10u` is `10us`).
fn duration(a: &Arg) -> Option<String> {
    match a {
        Arg::Duration(d) if !d.starts_with('-') => {
            let d = d
                .strip_suffix('u')
                .or_else(|| d.strip_suffix('µ'))
                .map_or_else(|| d.clone(), |n| format!("{n}us"));
            crate::config::parse_duration(&d).ok().map(|_| d)
        }
        _ => None,
    }
}

impl Ctx<'_> {
    fn note(&mut self, pos: Pos, message: String) {
        self.findings.push(Finding {
            file: self.file.to_string(),
            pos,
            severity: Severity::Note,
            message,
        });
    }

    fn refuse(&mut self, pos: Pos, message: String) {
        self.findings.push(Finding {
            file: self.file.to_string(),
            pos,
            severity: Severity::Refused,
            message,
        });
    }

    /// Refuses node `i` and, silently, what hangs below it.
    fn refuse_tree(&mut self, i: usize, why: String) {
        let n = &self.p.nodes[i];
        let below: Vec<usize> = self.descendants(i);
        let what = if n.udf {
            format!(
                "@{}() is a user-defined function, which toptraffic does not run",
                n.kind
            )
        } else {
            why
        };
        let tail = if below.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = below
                .iter()
                .map(|&d| self.p.nodes[d].name.as_str())
                .collect();
            format!(" (so is what follows it: {})", names.join(", "))
        };
        self.refuse(n.pos, format!("{}: {what}{tail}", n.name));
        self.seen[i] = true;
        for d in below {
            self.seen[d] = true;
        }
    }

    fn descendants(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack: Vec<usize> = self.p.children(i).collect();
        while let Some(d) = stack.pop() {
            out.push(d);
            stack.extend(self.p.children(d));
        }
        out.sort();
        out
    }

    fn unknown_property(&mut self, n: &Node, call: &Call) {
        self.refuse(
            call.pos,
            format!(
                "{}: .{}() has no equivalent in toptraffic and was left out",
                n.name, call.name
            ),
        );
    }

    fn from(&mut self, i: usize) {
        let p = self.p;
        let n = &p.nodes[i];
        self.seen[i] = true;
        let mut part = Partial {
            measurement: String::new(),
            filters: Vec::new(),
            group_by: Vec::new(),
            window: None,
        };
        for call in &n.props {
            match call.name.as_str() {
                "measurement" => match str_arg(call, 0) {
                    Some(m) => part.measurement = m.to_string(),
                    None => self.refuse(call.pos, format!("{}: .measurement() needs a string", n.name)),
                },
                "groupBy" => {
                    let mut tags = Vec::new();
                    for a in &call.args {
                        match a {
                            Arg::Str(s) => tags.push(s.clone()),
                            Arg::Star => {
                                self.refuse(call.pos, format!("{}: .groupBy(*) has no equivalent: a rule's group_by names its tags", n.name));
                                tags.clear();
                                break;
                            }
                            _ => {
                                self.refuse(call.pos, format!("{}: .groupBy() takes tag names as strings", n.name));
                                tags.clear();
                                break;
                            }
                        }
                    }
                    part.group_by = tags;
                }
                "where" => self.where_filters(n, call, &mut part.filters),
                "database" | "retentionPolicy" => self.note(
                    call.pos,
                    format!("{}: .{}() dropped: toptraffic has no databases, a rule takes the lines of its measurement", n.name, call.name),
                ),
                "groupByMeasurement" => self.note(
                    call.pos,
                    format!("{}: .groupByMeasurement() dropped: a rule reads one measurement", n.name),
                ),
                _ => self.unknown_property(n, call),
            }
        }
        if part.measurement.is_empty() {
            self.refuse_tree(
                i,
                "|from() needs .measurement(): a rule counts the lines of one measurement"
                    .to_string(),
            );
            return;
        }
        if part.group_by.is_empty() {
            self.refuse_tree(
                i,
                "|from() needs .groupBy() with tag names: a rule counts per group of tags"
                    .to_string(),
            );
            return;
        }
        for ch in p.children(i).collect::<Vec<_>>() {
            self.below(ch, part.clone());
        }
    }

    /// `.where(lambda)`: tag equalities joined by AND become `where`.
    fn where_filters(&mut self, n: &Node, call: &Call, filters: &mut Vec<(String, String)>) {
        let parsed = match call.args.as_slice() {
            [Arg::Lambda(text, toks)] => tag_equalities(toks).ok_or(text.clone()),
            _ => Err(String::new()),
        };
        match parsed {
            Ok(eqs) => {
                for (tag, value) in eqs {
                    match filters.iter().find(|(t, _)| *t == tag) {
                        Some((_, v)) if *v != value => self.refuse(
                            call.pos,
                            format!("{}: .where() asks tag {tag:?} to be both {v:?} and {value:?}: no line matches", n.name),
                        ),
                        Some(_) => {}
                        None => filters.push((tag, value)),
                    }
                }
            }
            Err(text) => self.refuse(
                call.pos,
                format!(
                    "{}: .where({}) has no equivalent: `where` keeps lines whose tags equal given strings (\"tag\" == 'value', joined by AND)",
                    n.name,
                    if text.is_empty() { "...".to_string() } else { format!("lambda: {text}") }
                ),
            ),
        }
    }

    /// Walks down from `|from()`: barrier, where, window, then sum or count.
    fn below(&mut self, i: usize, mut part: Partial) {
        let p = self.p;
        let n = &p.nodes[i];
        if n.udf {
            self.refuse_tree(i, String::new());
            return;
        }
        match n.kind.as_str() {
            "barrier" => {
                self.seen[i] = true;
                self.note(n.pos, format!(
                    "{}: |barrier() dropped: toptraffic frees a key's state as soon as its window is empty, so it needs no barrier (in Kapacitor 1.5.7 .delete(TRUE) also made every group's sum restart from zero each period; here the sums slide)",
                    n.name
                ));
            }
            "where" => {
                self.seen[i] = true;
                let call = Call {
                    name: "where".into(),
                    args: n.args.clone(),
                    pos: n.pos,
                };
                self.where_filters(n, &call, &mut part.filters);
                for c in &n.props {
                    self.unknown_property(n, c);
                }
            }
            "window" if part.window.is_none() => {
                match self.window(i) {
                    Some(w) => part.window = Some((w, n.pos)),
                    None => {
                        self.seen[i] = true;
                        for d in self.descendants(i) {
                            self.seen[d] = true;
                        }
                        return;
                    }
                }
                self.seen[i] = true;
            }
            "sum" | "count" if part.window.is_some() => {
                self.seen[i] = true;
                self.rule(i, part);
                return;
            }
            "httpOut" => {
                self.seen[i] = true;
                self.note(
                    n.pos,
                    format!(
                        "{}: |httpOut() dropped: /api/v1/top?rule=NAME serves every rule's window",
                        n.name
                    ),
                );
                for ch in p.children(i).collect::<Vec<_>>() {
                    self.refuse_tree(ch, refusal(&p.nodes[ch].kind));
                }
                return;
            }
            _ => {
                self.refuse_tree(i, refusal(&n.kind));
                return;
            }
        }
        let children: Vec<usize> = p.children(i).collect();
        if children.is_empty() && n.kind == "window" {
            self.refuse(
                n.pos,
                format!(
                    "{}: a window without |sum() or |count() below it makes no rule",
                    n.name
                ),
            );
        }
        for ch in children {
            self.below(ch, part.clone());
        }
    }

    /// `|window()`: period, every, align.
    fn window(&mut self, i: usize) -> Option<WindowOut> {
        let n = &self.p.nodes[i];
        let (mut period, mut every, mut aligned) = (None, None, false);
        for call in &n.props {
            match call.name.as_str() {
                "period" | "every" => {
                    let Some(d) = call.args.first().and_then(duration) else {
                        self.refuse_tree(i, format!(".{}() needs a positive duration", call.name));
                        return None;
                    };
                    if call.name == "period" {
                        period = Some(d);
                    } else {
                        every = Some(d);
                    }
                }
                "align" => aligned = true,
                _ => {
                    let why = match call.name.as_str() {
                        "periodCount" | "everyCount" => format!(".{}() has no equivalent: toptraffic's windows are periods of time", call.name),
                        "fillPeriod" => ".fillPeriod() has no equivalent: a rule's first windows sum what arrived so far".to_string(),
                        _ => format!(".{}() has no equivalent", call.name),
                    };
                    self.refuse(call.pos, format!("{}: {why}", n.name));
                    self.refuse_tree(i, "the window cannot be converted".to_string());
                    return None;
                }
            }
        }
        let Some(period) = period else {
            self.refuse_tree(i, "|window() needs .period()".to_string());
            return None;
        };
        let every = every.unwrap_or_else(|| period.clone());
        let (pd, ed) = (
            crate::config::parse_duration(&period).ok()?,
            crate::config::parse_duration(&every).ok()?,
        );
        if pd.as_nanos() % ed.as_nanos() != 0 {
            self.refuse_tree(
                i,
                format!("period {period} is not a multiple of every {every}: a window is a whole number of intervals"),
            );
            return None;
        }
        if !aligned {
            self.note(
                n.pos,
                format!(
                    "{}: intervals are aligned to multiples of every, as with .align()",
                    n.name
                ),
            );
        }
        Some(WindowOut { period, every })
    }

    /// `|sum('f')` or `|count('f')` with `.as()`, and its alert nodes.
    fn rule(&mut self, i: usize, part: Partial) {
        let p = self.p;
        let n = &p.nodes[i];
        let field = match n.args.as_slice() {
            [Arg::Str(f)] => f.clone(),
            _ => {
                self.refuse_tree(i, format!("|{}() needs a field name", n.kind));
                return;
            }
        };
        let mut as_name = None;
        for call in &n.props {
            match (call.name.as_str(), str_arg(call, 0)) {
                ("as", Some(a)) => as_name = Some(a.to_string()),
                _ => self.unknown_property(n, call),
            }
        }
        let (window, wpos) = part.window.clone().expect("checked by the caller");
        match &self.window {
            Some((w, _)) if *w != window => {
                let msg = format!(
                    "window period {} every {} differs from the first one converted (period {} every {}): [window] is one for all rules",
                    window.period, window.every, w.period, w.every
                );
                self.refuse_tree(i, msg);
                self.refuse(wpos, "this window was not converted".to_string());
                return;
            }
            Some(_) => {}
            None => self.window = Some((window, wpos)),
        }
        let (aggregate, field) = if n.kind == "sum" {
            ("sum", Some(field))
        } else {
            self.note(n.pos, format!(
                "{}: counts every line of the measurement that passes the filters (Kapacitor counted the points that have field {field:?}: the same when every line has it)",
                n.name
            ));
            ("count", None)
        };
        let mut rule = RuleOut {
            name: String::new(),
            measurement: part.measurement,
            filters: part.filters,
            group_by: part.group_by,
            aggregate,
            field,
            as_name,
            blocks: Vec::new(),
        };
        for ch in p.children(i).collect::<Vec<_>>() {
            let c = &p.nodes[ch];
            match c.kind.as_str() {
                "alert" if !c.udf => {
                    self.seen[ch] = true;
                    if let Some(b) = self.alert(ch) {
                        rule.blocks.push(b);
                    }
                    for d in p.children(ch).collect::<Vec<_>>() {
                        self.refuse_tree(d, "an alert block passes nothing on: nodes below |alert() have no equivalent".to_string());
                    }
                }
                "httpOut" => {
                    self.seen[ch] = true;
                    self.note(c.pos, format!("{}: |httpOut() dropped: /api/v1/top?rule=NAME serves every rule's window", c.name));
                }
                _ => self.refuse_tree(ch, refusal(&c.kind)),
            }
        }
        self.rules.push((rule, n.pos));
    }

    /// `|alert()` and its properties and handlers.
    fn alert(&mut self, i: usize) -> Option<BlockOut> {
        let n = &self.p.nodes[i];
        let mut b = BlockOut {
            name: n.name.clone(),
            ..BlockOut::default()
        };
        /// Which handler the properties that follow belong to.
        #[derive(PartialEq)]
        enum Handler {
            None,
            Log,
            Slack,
            Post,
            /// A handler that was not converted: its properties go with it.
            Refused,
            Other,
        }
        let mut handler = Handler::None;
        for call in &n.props {
            let name = call.name.as_str();
            match (&handler, name) {
                (Handler::Slack, "channel" | "username" | "iconEmoji") => {
                    let Some(v) = str_arg(call, 0) else {
                        self.refuse(call.pos, format!("{}: .{name}() needs a string", n.name));
                        continue;
                    };
                    let s = b.slack.get_or_insert_with(SlackOut::default);
                    let v = Some(v.to_string());
                    match name {
                        "channel" => s.channel = v,
                        "username" => s.username = v,
                        _ => s.icon_emoji = v,
                    }
                    continue;
                }
                (Handler::Slack, "workspace") => {
                    self.refuse(call.pos, format!("{}: .workspace() has no equivalent: give the workspace's webhook as url", n.name));
                    continue;
                }
                (Handler::Post, "header") => {
                    match (str_arg(call, 0), str_arg(call, 1)) {
                        (Some(k), Some(v)) => {
                            if let Some(h) = b.http.last_mut() {
                                h.headers.push((k.to_string(), v.to_string()));
                            }
                        }
                        _ => self.refuse(
                            call.pos,
                            format!("{}: .header() needs a name and a value", n.name),
                        ),
                    }
                    continue;
                }
                (Handler::Post, "captureResponse") => {
                    self.note(call.pos, format!("{}: .captureResponse() dropped: a failed POST is logged with its status", n.name));
                    continue;
                }
                (Handler::Log, "mode") => {
                    self.note(
                        call.pos,
                        format!(
                            "{}: .mode() dropped: the log file is created with the process's umask",
                            n.name
                        ),
                    );
                    continue;
                }
                _ => {}
            }
            let level_slot = match name {
                "info" => Some(0),
                "warn" => Some(1),
                "crit" => Some(2),
                _ => None,
            };
            if let Some(slot) = level_slot {
                handler = Handler::Other;
                match call.args.as_slice() {
                    [Arg::Lambda(text, _)] => match Expr::parse(text) {
                        Ok(_) => b.levels[slot] = Some(text.clone()),
                        Err(e) => {
                            self.refuse(call.pos, format!("{}: .{name}(): {}", n.name, e.message))
                        }
                    },
                    _ => self.refuse(call.pos, format!("{}: .{name}() needs a lambda", n.name)),
                }
                continue;
            }
            match name {
                "flapping" => {
                    let nums: Vec<f64> = call
                        .args
                        .iter()
                        .filter_map(|a| match a {
                            Arg::Number(s) => s.parse().ok(),
                            _ => None,
                        })
                        .collect();
                    match nums.as_slice() {
                        [low, high] if call.args.len() == 2 => b.flapping = Some((*low, *high)),
                        _ => self.refuse(
                            call.pos,
                            format!("{}: .flapping() needs two numbers", n.name),
                        ),
                    }
                }
                "history" => match call.args.as_slice() {
                    [Arg::Number(s)] if s.parse::<u64>().is_ok() => b.history = s.parse().ok(),
                    _ => self.refuse(call.pos, format!("{}: .history() needs an integer", n.name)),
                },
                "stateChangesOnly" => match call.args.as_slice() {
                    [] => b.state_changes_only = Some(None),
                    [a] => match duration(a) {
                        Some(d) => b.state_changes_only = Some(Some(d)),
                        None => self.refuse(
                            call.pos,
                            format!("{}: .stateChangesOnly() takes a positive duration", n.name),
                        ),
                    },
                    _ => self.refuse(
                        call.pos,
                        format!("{}: .stateChangesOnly() takes at most a duration", n.name),
                    ),
                },
                "noRecoveries" => b.no_recoveries = true,
                "id" | "message" | "details" => match str_arg(call, 0) {
                    Some(s) => {
                        let s = Some(s.to_string());
                        match name {
                            "id" => b.id = s,
                            "message" => b.message = s,
                            _ => b.details = s,
                        }
                    }
                    None => self.refuse(call.pos, format!("{}: .{name}() needs a string", n.name)),
                },
                "log" => match str_arg(call, 0) {
                    Some(path) if b.log.is_none() => {
                        b.log = Some(path.to_string());
                        handler = Handler::Log;
                        continue;
                    }
                    Some(_) => {
                        self.refuse(
                            call.pos,
                            format!(
                                "{}: a second .log(): an alert block has one log sink",
                                n.name
                            ),
                        );
                        handler = Handler::Refused;
                        continue;
                    }
                    None => self.refuse(call.pos, format!("{}: .log() needs a file path", n.name)),
                },
                "exec" => {
                    let args: Option<Vec<String>> = call
                        .args
                        .iter()
                        .map(|a| match a {
                            Arg::Str(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect();
                    match args {
                        Some(a) if !a.is_empty() && b.exec.is_none() => b.exec = Some(a),
                        Some(a) if !a.is_empty() => self.refuse(
                            call.pos,
                            format!(
                                "{}: a second .exec(): an alert block has one exec sink",
                                n.name
                            ),
                        ),
                        _ => self.refuse(
                            call.pos,
                            format!(
                                "{}: .exec() needs a program and its arguments as strings",
                                n.name
                            ),
                        ),
                    }
                }
                "slack" if b.slack.is_none() => {
                    b.slack = Some(SlackOut::default());
                    self.note(call.pos, format!(
                        "{}: .slack(): the webhook URL is in kapacitor.conf's [slack] section, not in the script: set url under [rule.alert.slack] (a placeholder is written)",
                        n.name
                    ));
                    handler = Handler::Slack;
                    continue;
                }
                "post" => match call.args.as_slice() {
                    [Arg::Str(url)] => {
                        b.http.push(HttpOut {
                            url: url.clone(),
                            headers: Vec::new(),
                        });
                        handler = Handler::Post;
                        continue;
                    }
                    _ => {
                        self.refuse(call.pos, format!("{}: .post() without a URL names an endpoint of kapacitor.conf: write .post('https://...')", n.name));
                        handler = Handler::Refused;
                        continue;
                    }
                },
                "slack" | "tcp" | "email" | "pagerDuty" | "pagerDuty2" | "opsGenie"
                | "opsGenie2" | "victorOps" | "pushover" | "sensu" | "telegram" | "hipChat"
                | "alerta" | "snmpTrap" | "talk" | "mqtt" | "kafka" | "serviceNow" | "bigPanda"
                | "teams" | "discord" | "zenoss" => {
                    let why = if name == "slack" {
                        "a second .slack(): an alert block has one Slack sink".to_string()
                    } else {
                        format!(".{name}() has no toptraffic sink: route through [rule.alert.alertmanager] (Alertmanager's receivers include PagerDuty, OpsGenie, VictorOps, Pushover, Telegram, email) or post to it with [[rule.alert.http]]")
                    };
                    self.refuse(call.pos, format!("{}: {why}", n.name));
                    handler = Handler::Refused;
                    continue;
                }
                _ if handler == Handler::Refused => continue,
                _ => {
                    let why = match name {
                        "infoReset" | "warnReset" | "critReset" => "level resets have no equivalent: a level holds while its lambda does".to_string(),
                        "topic" => "alert topics have no equivalent: sinks are set per alert block".to_string(),
                        "all" => ".all() applies to batches: a rule's alert evaluates each key on its own".to_string(),
                        "inhibit" | "category" => "inhibitions have no equivalent".to_string(),
                        _ => format!(".{name}() has no equivalent in toptraffic"),
                    };
                    self.refuse(call.pos, format!("{}: {why}", n.name));
                }
            }
            handler = Handler::Other;
        }
        if b.levels.iter().all(Option::is_none) {
            self.refuse(
                n.pos,
                format!(
                    "{}: an alert without .info(), .warn() or .crit() that converts was left out",
                    n.name
                ),
            );
            return None;
        }
        if b.log.is_none() && b.exec.is_none() && b.slack.is_none() && b.http.is_empty() {
            self.note(n.pos, format!("{}: no handler: the block's events are counted in /api/v1/stats and shown by /api/v1/alerts", n.name));
        }
        Some(b)
    }
}

/// `"tag" == 'value'` (either way round) joined by AND, in parentheses or
/// not: the tag equalities, or None.
fn tag_equalities(toks: &[ScriptTok]) -> Option<Vec<(String, String)>> {
    let toks: Vec<&ScriptTok> = toks
        .iter()
        .filter(|t| !matches!(t, ScriptTok::LParen | ScriptTok::RParen))
        .collect();
    // Parentheses only group here: without OR or `!`, dropping them
    // changes nothing.
    let mut out = Vec::new();
    for term in toks.split(|t| matches!(t, ScriptTok::Op(o) if o == "AND")) {
        match term {
            [ScriptTok::Reference(tag), ScriptTok::Op(eq), ScriptTok::Str(v)]
            | [ScriptTok::Str(v), ScriptTok::Op(eq), ScriptTok::Reference(tag)]
                if eq == "==" =>
            {
                out.push((tag.clone(), v.clone()))
            }
            _ => return None,
        }
    }
    Some(out)
}

/// A TOML string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The config's text.
pub(super) fn render(sources: &[String], window: Option<&WindowOut>, rules: &[RuleOut]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Converted by `toptraffic import` from {}.\n# Check it with `toptraffic check --config FILE`; every option is in example.toml.",
        sources.join(", ")
    );
    if let Some(w) = window {
        let _ = writeln!(
            o,
            "\n[window]\nperiod = {}\nevery = {}",
            q(&w.period),
            q(&w.every)
        );
    }
    for r in rules {
        let _ = writeln!(
            o,
            "\n[[rule]]\nname = {}\nmeasurement = {}",
            q(&r.name),
            q(&r.measurement)
        );
        if !r.filters.is_empty() {
            let f: Vec<String> = r
                .filters
                .iter()
                .map(|(k, v)| format!("{} = {}", q(k), q(v)))
                .collect();
            let _ = writeln!(o, "where = {{ {} }}", f.join(", "));
        }
        let _ = writeln!(o, "group_by = {}", list(&r.group_by));
        let _ = writeln!(o, "aggregate = {}", q(r.aggregate));
        if let Some(f) = &r.field {
            let _ = writeln!(o, "field = {}", q(f));
        }
        if let Some(a) = &r.as_name {
            let _ = writeln!(o, "as = {}", q(a));
        }
        for b in &r.blocks {
            render_block(&mut o, b);
        }
    }
    o
}

fn render_block(o: &mut String, b: &BlockOut) {
    let _ = writeln!(o, "\n[[rule.alert]]\nname = {}", q(&b.name));
    for (slot, key) in ["info", "warn", "crit"].iter().enumerate() {
        if let Some(l) = &b.levels[slot] {
            let _ = writeln!(o, "{key} = {}", q(l));
        }
    }
    if let Some((low, high)) = b.flapping {
        let _ = writeln!(o, "flapping = [{low:?}, {high:?}]");
    }
    if let Some(h) = b.history {
        let _ = writeln!(o, "history = {h}");
    }
    match &b.state_changes_only {
        Some(Some(d)) => {
            let _ = writeln!(o, "state_changes_only = {}", q(d));
        }
        Some(None) => {
            let _ = writeln!(o, "state_changes_only = true");
        }
        None => {}
    }
    if b.no_recoveries {
        let _ = writeln!(o, "no_recoveries = true");
    }
    for (key, v) in [
        ("id", &b.id),
        ("message", &b.message),
        ("details", &b.details),
    ] {
        if let Some(v) = v {
            let _ = writeln!(o, "{key} = {}", q(v));
        }
    }
    if let Some(s) = &b.slack {
        let _ = writeln!(
            o,
            "[rule.alert.slack]\n# kapacitor.conf's [slack] url: the script does not hold it.\nurl = {}",
            q(SLACK_URL_PLACEHOLDER)
        );
        for (key, v) in [
            ("channel", &s.channel),
            ("username", &s.username),
            ("icon_emoji", &s.icon_emoji),
        ] {
            if let Some(v) = v {
                let _ = writeln!(o, "{key} = {}", q(v));
            }
        }
    }
    if let Some(cmd) = &b.exec {
        let _ = writeln!(o, "[rule.alert.exec]\ncommand = {}", list(cmd));
    }
    if let Some(path) = &b.log {
        let _ = writeln!(o, "[rule.alert.log]\npath = {}", q(path));
    }
    for h in &b.http {
        let _ = writeln!(o, "[[rule.alert.http]]\nurl = {}", q(&h.url));
        if !h.headers.is_empty() {
            let hs: Vec<String> = h
                .headers
                .iter()
                .map(|(k, v)| format!("{} = {}", q(k), q(v)))
                .collect();
            let _ = writeln!(o, "headers = {{ {} }}", hs.join(", "));
        }
    }
}
