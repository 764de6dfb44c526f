//! What `.Name` reaches on a value besides map keys: struct fields, promoted
//! from embedded structs, and the methods of time.Time and time.Duration
//! (time/time.go, time/format.go).

use std::time::Duration;

use super::signature::Param;
use super::time::{duration_string, time_format, time_string, Civil, DAYS, MONTHS};
use super::value::Value;

/// A struct's field by name, promoted ones from embedded structs included.
pub(super) fn struct_field<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    let Value::Struct(_, fields) = v else {
        return None;
    };
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .or_else(|| {
            fields
                .iter()
                .filter(|(n, _)| n.is_empty())
                .find_map(|(_, e)| struct_field(e, name))
        })
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Method {
    TimeFormat,
    TimeUnix,
    TimeUnixNano,
    TimeYear,
    TimeMonth,
    TimeDay,
    TimeHour,
    TimeMinute,
    TimeSecond,
    TimeNanosecond,
    TimeWeekday,
    TimeYearDay,
    TimeString,
    TimeUtc,
    DurHours,
    DurMinutes,
    DurSeconds,
    DurMilliseconds,
    DurMicroseconds,
    DurNanoseconds,
    DurString,
    DurRound,
    DurTruncate,
}

pub(super) fn method(v: &Value, name: &str) -> Option<Method> {
    use Method::*;
    Some(match (v, name) {
        (Value::Time(_), "Format") => TimeFormat,
        (Value::Time(_), "Unix") => TimeUnix,
        (Value::Time(_), "UnixNano") => TimeUnixNano,
        (Value::Time(_), "Year") => TimeYear,
        (Value::Time(_), "Month") => TimeMonth,
        (Value::Time(_), "Day") => TimeDay,
        (Value::Time(_), "Hour") => TimeHour,
        (Value::Time(_), "Minute") => TimeMinute,
        (Value::Time(_), "Second") => TimeSecond,
        (Value::Time(_), "Nanosecond") => TimeNanosecond,
        (Value::Time(_), "Weekday") => TimeWeekday,
        (Value::Time(_), "YearDay") => TimeYearDay,
        (Value::Time(_), "String") => TimeString,
        (Value::Time(_), "UTC") => TimeUtc,
        (Value::Duration(_), "Hours") => DurHours,
        (Value::Duration(_), "Minutes") => DurMinutes,
        (Value::Duration(_), "Seconds") => DurSeconds,
        (Value::Duration(_), "Milliseconds") => DurMilliseconds,
        (Value::Duration(_), "Microseconds") => DurMicroseconds,
        (Value::Duration(_), "Nanoseconds") => DurNanoseconds,
        (Value::Duration(_), "String") => DurString,
        (Value::Duration(_), "Round") => DurRound,
        (Value::Duration(_), "Truncate") => DurTruncate,
        _ => return None,
    })
}

impl Method {
    pub(super) fn name(self) -> String {
        format!("{self:?}")
            .trim_start_matches("Time")
            .trim_start_matches("Dur")
            .replace("Utc", "UTC")
    }

    pub(super) fn params(self) -> &'static [Param] {
        match self {
            Method::TimeFormat => &[Param::Str],
            Method::DurRound | Method::DurTruncate => &[Param::Dur],
            _ => &[],
        }
    }
}

pub(super) fn call_method(recv: &Value, m: Method, argv: &[Value]) -> Value {
    use Method::*;
    match recv {
        Value::Time(t) => {
            let c = Civil::of(*t);
            match m {
                TimeFormat => {
                    let layout = match argv.first() {
                        Some(Value::Str(s)) => s.as_str(),
                        _ => "",
                    };
                    Value::Str(time_format(&c, layout))
                }
                TimeUnix => Value::Int(c.unix),
                TimeUnixNano => Value::Int(
                    c.unix
                        .wrapping_mul(1_000_000_000)
                        .wrapping_add(c.nano as i64),
                ),
                TimeYear => Value::Int(c.year),
                TimeMonth => Value::Str(MONTHS[c.month as usize - 1].into()),
                TimeDay => Value::Int(c.day as i64),
                TimeHour => Value::Int(c.hour as i64),
                TimeMinute => Value::Int(c.min as i64),
                TimeSecond => Value::Int(c.sec as i64),
                TimeNanosecond => Value::Int(c.nano as i64),
                TimeWeekday => Value::Str(DAYS[c.weekday as usize].into()),
                TimeYearDay => Value::Int(c.yday as i64),
                TimeString => Value::Str(time_string(*t)),
                _ => Value::Time(*t),
            }
        }
        Value::Duration(d) => {
            let ns = d.as_nanos() as i64;
            let arg = match argv.first() {
                Some(Value::Duration(m)) => m.as_nanos() as i64,
                _ => 0,
            };
            match m {
                DurHours => Value::Float(
                    (ns / 3_600_000_000_000) as f64 + (ns % 3_600_000_000_000) as f64 / 3.6e12,
                ),
                DurMinutes => {
                    Value::Float((ns / 60_000_000_000) as f64 + (ns % 60_000_000_000) as f64 / 6e10)
                }
                DurSeconds => {
                    Value::Float((ns / 1_000_000_000) as f64 + (ns % 1_000_000_000) as f64 / 1e9)
                }
                DurMilliseconds => Value::Int(ns / 1_000_000),
                DurMicroseconds => Value::Int(ns / 1_000),
                DurNanoseconds => Value::Int(ns),
                DurRound | DurTruncate => {
                    if arg <= 0 {
                        return Value::Duration(*d);
                    }
                    let r = ns % arg;
                    let mut out = ns - r;
                    // time.go, Duration.Round: halves round away from zero.
                    if matches!(m, DurRound) && r + r >= arg {
                        out = out.saturating_add(arg);
                    }
                    Value::Duration(Duration::from_nanos(out as u64))
                }
                _ => Value::Str(duration_string(*d)),
            }
        }
        _ => Value::Nil,
    }
}
