//! Alert levels and the event a sink receives: Kapacitor's `alert.Data`,
//! serialized exactly as kapacitord 1.5.7 hands it to its log and exec
//! handlers (alert/types.go).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::goformat::{json_number, rfc3339_nano, to_json};

/// Alert levels, ordered as Kapacitor orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    #[default]
    Ok,
    Info,
    Warning,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One alert event: what every sink gets.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// Rendered `id` template (default `{{ .Name }}:{{ .Group }}`).
    pub id: String,
    pub message: String,
    pub details: String,
    /// The window's end: the point's time.
    pub time: SystemTime,
    /// lastTriggered - firstTriggered.
    pub duration: Duration,
    pub level: Level,
    pub previous_level: Level,
    pub recoverable: bool,
    /// The measurement (Kapacitor's `.Name`).
    pub name: String,
    /// The rule (Kapacitor's `.TaskName`).
    pub task: String,
    /// The alert block within the rule.
    pub block: String,
    /// Group-by tags.
    pub tags: BTreeMap<String, String>,
    /// `as` name and the window's value.
    pub field: String,
    pub value: f64,
    /// While the value is partly the overflow sketch's estimate (the key
    /// was promoted less than a period ago): the most it may exceed the
    /// truth by. The JSON then says `"approximate":true` and the bound.
    pub error_bound: Option<f64>,
    /// Under cluster scope: the nodes the value was added up from and each
    /// one's share. The JSON then says `"scope":"cluster"`, `"nodes"` and
    /// `"shares"`.
    pub shares: Option<super::engine::Shares>,
}

impl AlertEvent {
    /// Kapacitor's alert JSON, one object, no trailing newline.
    pub fn to_json(&self) -> String {
        to_json(&KapacitorData(self))
    }
}

struct KapacitorData<'a>(&'a AlertEvent);

/// models.Result: `{"series": [...]}`, fields in Go's order.
#[derive(Serialize)]
struct SeriesList<'a> {
    series: [Series<'a>; 1],
}

#[derive(Serialize)]
struct Series<'a> {
    name: &'a str,
    tags: &'a BTreeMap<String, String>,
    columns: [&'a str; 2],
    values: [(&'a str, serde_json::Value); 1],
}

impl Serialize for KapacitorData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let time = rfc3339_nano(e.time);
        let extra = 2 * usize::from(e.error_bound.is_some()) + 3 * usize::from(e.shares.is_some());
        let mut m = s.serialize_map(Some(9 + extra))?;
        m.serialize_entry("id", &e.id)?;
        m.serialize_entry("message", &e.message)?;
        m.serialize_entry("details", &e.details)?;
        m.serialize_entry("time", &time)?;
        m.serialize_entry("duration", &(e.duration.as_nanos() as i64))?;
        m.serialize_entry("level", &e.level)?;
        let series = Series {
            name: &e.name,
            tags: &e.tags,
            columns: ["time", &e.field],
            values: [(&time, json_number(e.value))],
        };
        m.serialize_entry("data", &SeriesList { series: [series] })?;
        m.serialize_entry("previousLevel", &e.previous_level)?;
        m.serialize_entry("recoverable", &e.recoverable)?;
        // Beyond Kapacitor's fields, and only when true: an exact value's
        // JSON is Kapacitor's own.
        if let Some(b) = e.error_bound {
            m.serialize_entry("approximate", &true)?;
            m.serialize_entry("error_bound", &json_number(b))?;
        }
        if let Some(sh) = &e.shares {
            m.serialize_entry("scope", "cluster")?;
            m.serialize_entry("nodes", &sh.nodes.len())?;
            m.serialize_entry("shares", &sh.by_node())?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded WARNING, with the message and details its JSON test
    /// expects.
    fn sample() -> AlertEvent {
        AlertEvent {
            message: "Observed 18630 requests to Production Store ID 900002 for IP 192.0.2.2 within the last minute.".into(),
            details: "d".into(),
            ..crate::sink::test_support::event(Level::Warning)
        }
    }

    #[test]
    fn json_is_kapacitors_alert_data() {
        // As recorded from kapacitord 1.5.7 (../shared/KAPACITOR.md).
        assert_eq!(
            sample().to_json(),
            r#"{"id":"combined:id=900002,ip=192.0.2.2","message":"Observed 18630 requests to Production Store ID 900002 for IP 192.0.2.2 within the last minute.","details":"d","time":"2026-11-24T23:57:40Z","duration":0,"level":"WARNING","data":{"series":[{"name":"combined","tags":{"id":"900002","ip":"192.0.2.2"},"columns":["time","totalCount"],"values":[["2026-11-24T23:57:40Z",18630]]}]},"previousLevel":"OK","recoverable":true}"#
        );
    }

    #[test]
    fn an_approximate_value_adds_its_bound_after_kapacitors_fields() {
        let mut e = sample();
        e.error_bound = Some(10.5);
        let j = e.to_json();
        assert!(
            j.ends_with(r#""recoverable":true,"approximate":true,"error_bound":10.5}"#),
            "{j}"
        );
    }

    #[test]
    fn html_characters_are_escaped_as_go_does() {
        let mut e = sample();
        e.details = "{&#34;a&#34;:1}<b>".into();
        let j = e.to_json();
        assert!(
            j.contains(r#""details":"{\u0026#34;a\u0026#34;:1}\u003cb\u003e""#),
            "{j}"
        );
        let back: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(back["details"], e.details);
    }

    #[test]
    fn durations_are_nanoseconds_and_times_trim_zeros() {
        let mut e = sample();
        e.duration = Duration::from_secs(10);
        e.time += Duration::from_millis(500);
        let j: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(j["duration"], 10_000_000_000i64);
        assert_eq!(j["time"], "2026-11-24T23:57:40.5Z");
    }
}
