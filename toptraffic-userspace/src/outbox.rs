//! The outbox: alert events the sinks could not deliver before a stop,
//! kept beside the state file and offered to the same sinks at the next
//! start. The state file has them as sent (a restart must not decide them
//! again), so without it they would be lost.
//!
//! One JSON object a line, `{"sink": NAME, "event": {...}}`, written
//! atomically as the state file is; floats as their bits, so that a value
//! comes back exactly (infinities included). Read once: the file goes
//! when the events are back in their queues. An event cut short in an
//! attempt may have reached its destination already: it is sent again
//! (at least once, rather than at most once, for an alert).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::alert::event::{AlertEvent, Level, Shares};
use crate::persist;

/// Where the outbox of the state file `state` lives.
pub fn path_of(state: &Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".outbox");
    PathBuf::from(p)
}

#[derive(Serialize, Deserialize)]
struct Entry {
    sink: String,
    event: Saved,
}

/// An [`AlertEvent`], field for field.
#[derive(Serialize, Deserialize)]
struct Saved {
    id: String,
    message: String,
    details: String,
    time_ns: u64,
    duration_ns: u64,
    level: String,
    previous_level: String,
    recoverable: bool,
    name: String,
    task: String,
    block: String,
    tags: BTreeMap<String, String>,
    field: String,
    value_bits: u64,
    error_bound_bits: Option<u64>,
    shares: Option<(Vec<String>, Vec<u64>)>,
}

fn level(s: &str) -> Result<Level, String> {
    [Level::Ok, Level::Info, Level::Warning, Level::Critical]
        .into_iter()
        .find(|l| l.as_str() == s)
        .ok_or_else(|| format!("unknown level {s:?}"))
}

impl Saved {
    fn of(e: &AlertEvent) -> Saved {
        // u64 nanoseconds reach the year 2554.
        let ns = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
        Saved {
            id: e.id.clone(),
            message: e.message.clone(),
            details: e.details.clone(),
            time_ns: ns(e.time.duration_since(UNIX_EPOCH).unwrap_or_default()),
            duration_ns: ns(e.duration),
            level: e.level.as_str().into(),
            previous_level: e.previous_level.as_str().into(),
            recoverable: e.recoverable,
            name: e.name.clone(),
            task: e.task.clone(),
            block: e.block.clone(),
            tags: e.tags.clone(),
            field: e.field.clone(),
            value_bits: e.value.to_bits(),
            error_bound_bits: e.error_bound.map(f64::to_bits),
            shares: e.shares.as_ref().map(|s| {
                let values = s.values.iter().map(|v| v.to_bits()).collect();
                (s.nodes.to_vec(), values)
            }),
        }
    }

    fn event(self) -> Result<AlertEvent, String> {
        Ok(AlertEvent {
            id: self.id,
            message: self.message,
            details: self.details,
            time: UNIX_EPOCH + Duration::from_nanos(self.time_ns),
            duration: Duration::from_nanos(self.duration_ns),
            level: level(&self.level)?,
            previous_level: level(&self.previous_level)?,
            recoverable: self.recoverable,
            name: self.name,
            task: self.task,
            block: self.block,
            tags: self.tags,
            field: self.field,
            value: f64::from_bits(self.value_bits),
            error_bound: self.error_bound_bits.map(f64::from_bits),
            shares: self.shares.map(|(nodes, values)| Shares {
                nodes: nodes.into(),
                values: values.into_iter().map(f64::from_bits).collect(),
            }),
        })
    }
}

/// Writes `events` (by sink name) to `path`; removes it when there are
/// none, so that a stale outbox is never sent twice.
pub fn write(path: &Path, events: &[(String, Arc<AlertEvent>)]) -> io::Result<()> {
    if events.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let mut text = String::new();
    for (sink, e) in events {
        let entry = Entry {
            sink: sink.clone(),
            event: Saved::of(e),
        };
        text.push_str(&serde_json::to_string(&entry).map_err(io::Error::other)?);
        text.push('\n');
    }
    persist::write_atomically(path, text.as_bytes())
}

/// The events in `path` by sink name, and removes it; none when there is
/// no file. A line that cannot be read is an error naming it (the others
/// are still returned with it).
pub fn take(path: &Path) -> (Vec<(String, AlertEvent)>, Vec<String>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (Vec::new(), Vec::new()),
        Err(e) => return (Vec::new(), vec![format!("cannot read: {e}")]),
    };
    let _ = std::fs::remove_file(path);
    let (mut events, mut errors) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let read = serde_json::from_str::<Entry>(line)
            .map_err(|e| e.to_string())
            .and_then(|e| Ok((e.sink, e.event.event()?)));
        match read {
            Ok(x) => events.push(x),
            Err(e) => errors.push(format!("line {}: {e}", i + 1)),
        }
    }
    (events, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(value: f64) -> AlertEvent {
        AlertEvent {
            id: "combined:ip=192.0.2.9".into(),
            message: "hot".into(),
            details: "<b>hot</b>".into(),
            time: UNIX_EPOCH + Duration::new(1_796_000_000, 123_456_789),
            duration: Duration::from_millis(1500),
            level: Level::Critical,
            previous_level: Level::Warning,
            recoverable: true,
            name: "combined".into(),
            task: "top".into(),
            block: "#1".into(),
            tags: [("ip".to_string(), "192.0.2.9".to_string())].into(),
            field: "count".into(),
            value,
            error_bound: Some(0.1 + 0.2),
            shares: Some(Shares {
                nodes: vec!["a".to_string(), "b".to_string()].into(),
                values: vec![1.0 / 3.0, value - 1.0 / 3.0],
            }),
        }
    }

    #[test]
    fn events_come_back_exactly_once() {
        let path = std::env::temp_dir().join(format!("outbox-{}", std::process::id()));
        let events = vec![
            ("top/#1/log".to_string(), Arc::new(event(700.0))),
            ("top/#1/http".to_string(), Arc::new(event(f64::INFINITY))),
        ];
        write(&path, &events).unwrap();
        let (back, errors) = take(&path);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(back.len(), 2);
        for ((sink, e), (s, orig)) in back.iter().zip(&events) {
            assert_eq!(sink, s);
            assert_eq!(e, &**orig);
        }
        assert!(!path.exists(), "read once");
        assert_eq!(take(&path), (Vec::new(), Vec::new()));
    }

    #[test]
    fn a_bad_line_is_named_and_the_others_still_come_back() {
        let path = std::env::temp_dir().join(format!("outbox-bad-{}", std::process::id()));
        write(&path, &[("s".to_string(), Arc::new(event(1.0)))]).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.insert_str(0, "{not json\n");
        std::fs::write(&path, text).unwrap();
        let (back, errors) = take(&path);
        assert_eq!(back.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("line 1:"), "{errors:?}");
    }

    #[test]
    fn no_events_leave_no_file() {
        let path = std::env::temp_dir().join(format!("outbox-none-{}", std::process::id()));
        std::fs::write(&path, "stale").unwrap();
        write(&path, &[]).unwrap();
        assert!(!path.exists());
        write(&path, &[]).unwrap();
    }

    #[test]
    fn the_outbox_sits_beside_the_state_file() {
        assert_eq!(
            path_of(Path::new("/var/lib/toptraffic/state")),
            Path::new("/var/lib/toptraffic/state.outbox")
        );
    }
}
