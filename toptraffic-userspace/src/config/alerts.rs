//! Alert blocks: checked and compiled once, at validation, so that `check`
//! and a reload report a bad lambda or template with its line, and the
//! engine runs what was compiled here.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use toml::Spanned;

use super::raw::{RawAlertBlock, StateChangesOnly};
use super::schema::{AlertBlock, ConfigError};
use super::sinks::SinkConfig;
use super::source::Source;
use super::units::parse_duration;
use crate::alert::event::Level;
use crate::alert::state::{Settings, DEFAULT_HISTORY};
use crate::alert::template::{group_of, AlertInfo, RenderError, ServerInfo, Template};
use crate::alert::tick::Expr;

/// Kapacitor's default templates (pipeline/alert.go).
const DEFAULT_ID: &str = "{{ .Name }}:{{ .Group }}";
const DEFAULT_MESSAGE: &str = "{{ .ID }} is {{ .Level }}";
const DEFAULT_DETAILS: &str = "{{ json . }}";

/// The rule's names an alert expression may refer to.
pub(super) struct RuleNames<'a> {
    pub(super) rule: &'a str,
    pub(super) as_name: &'a str,
    pub(super) measurement: &'a str,
    pub(super) group_by: &'a [String],
    /// The rule's name in the file: the line of a block without a name.
    pub(super) span: Range<usize>,
}

/// A block's name in messages: its `name`, or its position (`#1`).
fn block_name(b: &RawAlertBlock, index: usize) -> String {
    match &b.name {
        Some(n) => n.get_ref().clone(),
        None => format!("#{}", index + 1),
    }
}

/// Checks and compiles one alert block; errors name the rule, the block,
/// the field and the position.
pub(super) fn compile_block(
    b: &RawAlertBlock,
    index: usize,
    rule: &RuleNames<'_>,
    src: &Source<'_>,
) -> Result<AlertBlock, ConfigError> {
    let name = block_name(b, index);
    let ctx = |msg: &str| format!("rule {:?} alert {name:?}: {msg}", rule.rule);
    // An error inside a lambda or template: the TOML string's span starts
    // at its quote, `pos` is the offset within the string.
    let at = |field: &str, span_start: usize, pos: usize, msg: &str| {
        src.at(
            span_start..span_start,
            ctx(&format!("{field}: {msg} (at character {})", pos + 1)),
        )
    };
    if b.info.is_none() && b.warn.is_none() && b.crit.is_none() {
        return Err(src.nowhere(ctx("needs at least one of info, warn, crit")));
    }
    let flapping = match &b.flapping {
        Some(f) => {
            let [low, high] = *f.get_ref();
            if !(0.0..=1.0).contains(&low) || !(0.0..=1.0).contains(&high) || low > high {
                return Err(src.at(
                    f.span(),
                    ctx("flapping = [low, high] needs 0 <= low <= high <= 1"),
                ));
            }
            Some((low, high))
        }
        None => None,
    };
    let history = match &b.history {
        Some(h) if *h.get_ref() < 2 => {
            return Err(src.at(h.span(), ctx("history must be at least 2")))
        }
        Some(h) => *h.get_ref(),
        None => DEFAULT_HISTORY,
    };
    let (state_changes_only, state_changes_every) = match &b.state_changes_only {
        None => (false, Duration::ZERO),
        Some(s) => match s.get_ref() {
            StateChangesOnly::Enabled(on) => (*on, Duration::ZERO),
            StateChangesOnly::Every(d) => (
                true,
                parse_duration(d)
                    .map_err(|e| src.at(s.span(), ctx(&format!("state_changes_only: {e}"))))?,
            ),
        },
    };
    // Sink settings carry no position of their own: the block's name, or
    // the rule's, gives the line.
    let block_at = |msg: &str| {
        let span = b.name.as_ref().map_or(rule.span.clone(), |n| n.span());
        src.at(span, ctx(msg))
    };
    if let Some(e) = &b.exec {
        if e.command.is_empty() || e.command[0].is_empty() {
            return Err(block_at("exec.command needs a program"));
        }
    }
    for sink in b.sinks() {
        let kind = sink.kind();
        let url = match &sink {
            SinkConfig::Slack(c) => Some(&c.url),
            SinkConfig::Http(c) => Some(&c.url),
            SinkConfig::Alertmanager(c) => Some(&c.url),
            SinkConfig::Log(_) | SinkConfig::Exec(_) => None,
        };
        if let Some(url) = url {
            check_url(url).map_err(|e| block_at(&format!("{kind}.url {url:?}: {e}")))?;
        }
        let o = sink.options();
        if o.queue == 0 || o.concurrency == 0 || o.timeout.is_zero() {
            return Err(block_at(&format!(
                "{kind}.options: queue, concurrency and timeout must be above zero"
            )));
        }
    }

    let mut levels: [Option<Expr>; 3] = [None, None, None];
    for (slot, field, lambda) in [
        (0, "info", &b.info),
        (1, "warn", &b.warn),
        (2, "crit", &b.crit),
    ] {
        let Some(lambda) = lambda else { continue };
        let start = lambda.span().start;
        let e = Expr::parse(lambda.get_ref()).map_err(|e| at(field, start, e.pos, &e.message))?;
        for r in e.references() {
            if r != rule.as_name && !rule.group_by.iter().any(|g| g == r) {
                return Err(at(
                    field,
                    start,
                    0,
                    &format!(
                        "\"{r}\" is neither the rule's value ({:?}) nor one of its group_by tags {:?}",
                        rule.as_name, rule.group_by
                    ),
                ));
            }
        }
        levels[slot] = Some(e);
    }
    let template = |field: &str, v: &Option<Spanned<String>>, default: &str, html: bool| {
        let (text, start) = match v {
            Some(s) => (s.get_ref().as_str(), s.span().start),
            None => (default, 0),
        };
        let parsed = if html {
            Template::parse_html(text)
        } else {
            Template::parse(text)
        };
        parsed.map_err(|e| at(field, start, e.pos, &e.msg))
    };
    let id = template("id", &b.id, DEFAULT_ID, false)?;
    let message = template("message", &b.message, DEFAULT_MESSAGE, false)?;
    // Kapacitor renders details with html/template.
    let details = template("details", &b.details, DEFAULT_DETAILS, true)?;
    // A template that parses may still fail on every alert (`{{ .Foo }}`:
    // no such field), which would then never be sent: rendered here once,
    // on an alert of this rule's shape.
    sample_render(rule, [&id, &message, &details]).map_err(|(field, e)| {
        let spanned = match field {
            "id" => &b.id,
            "message" => &b.message,
            _ => &b.details,
        };
        let start = spanned.as_ref().map_or(0, |s| s.span().start);
        at(
            field,
            start,
            e.pos,
            &format!("fails on an alert: {}", e.msg),
        )
    })?;
    Ok(AlertBlock {
        id,
        message,
        details,
        name,
        levels,
        settings: Settings {
            flapping,
            history,
            state_changes_only,
            state_changes_every,
            no_recoveries: b.no_recoveries,
        },
        sinks: b.sinks(),
    })
}

/// Renders a block's id, message and details as an alert of `rule`
/// would (each group_by tag `x`, the value 1, WARNING): the field that
/// fails, and how.
fn sample_render(
    rule: &RuleNames<'_>,
    [id, message, details]: [&Template; 3],
) -> Result<(), (&'static str, RenderError)> {
    let tags: BTreeMap<String, String> = rule
        .group_by
        .iter()
        .map(|g| (g.clone(), "x".to_string()))
        .collect();
    let group = group_of(&tags);
    let fields = [(rule.as_name.to_string(), 1.0)].into();
    let server = ServerInfo::default();
    let info = AlertInfo {
        name: rule.measurement,
        task_name: rule.rule,
        group: &group,
        tags: &tags,
        server: &server,
        fields: &fields,
        level: Level::Warning,
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        duration: Duration::ZERO,
    };
    let id = id.render(&info.id_data()).map_err(|e| ("id", e))?;
    let message = message
        .render(&info.message_data(&id))
        .map_err(|e| ("message", e))?;
    details
        .render(&info.details_data(&id, &message))
        .map_err(|e| ("details", e))?;
    Ok(())
}

/// An address the HTTP sinks can post to: absolute, http or https, with a
/// host (what reqwest would otherwise refuse at every event).
fn check_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be http or https, not {:?}",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(())
}
