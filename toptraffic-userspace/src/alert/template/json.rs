//! encoding/json (encode.go, Go 1.13) as json.Encoder writes it: HTML
//! characters escaped, embedded structs' fields inline.

use std::fmt::Write as _;

use super::strconv::format_float;
use super::value::Value;
use crate::goformat::json_string;

pub(super) fn json_encode(out: &mut String, v: &Value) -> Result<(), ()> {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Duration(d) => {
            let _ = write!(out, "{}", d.as_nanos() as i64);
        }
        Value::Float(f) => out.push_str(&json_float(*f).ok_or(())?),
        Value::Str(s) => json_string(out, s),
        Value::Time(t) => {
            // Time.MarshalJSON refuses years RFC 3339 cannot write.
            if !(0..=9999).contains(&crate::goformat::Civil::of(*t).year) {
                return Err(());
            }
            out.push('"');
            out.push_str(&crate::goformat::rfc3339_nano(*t));
            out.push('"');
        }
        Value::Map(m) => json_object(out, m.iter(), json_encode)?,
        Value::StrMap(m) => json_object(out, m.iter(), |out, v| {
            json_string(out, v);
            Ok(())
        })?,
        Value::Struct(..) => {
            out.push('{');
            json_fields(out, v, &mut true)?;
            out.push('}');
        }
    }
    Ok(())
}

/// `{"key":value,…}` in the map's order, each value written by `value`.
fn json_object<'a, K: AsRef<str> + 'a, V: 'a>(
    out: &mut String,
    entries: impl Iterator<Item = (&'a K, &'a V)>,
    mut value: impl FnMut(&mut String, &V) -> Result<(), ()>,
) -> Result<(), ()> {
    out.push('{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, k.as_ref());
        out.push(':');
        value(out, v)?;
    }
    out.push('}');
    Ok(())
}

/// A struct's fields, embedded structs' inline (encode.go, typeFields).
fn json_fields(out: &mut String, v: &Value, first: &mut bool) -> Result<(), ()> {
    let Value::Struct(_, fields) = v else {
        return Ok(());
    };
    for (k, v) in fields {
        if k.is_empty() {
            json_fields(out, v, first)?;
            continue;
        }
        if !*first {
            out.push(',');
        }
        *first = false;
        json_string(out, k);
        out.push(':');
        json_encode(out, v)?;
    }
    Ok(())
}

/// encode.go, floatEncoder: like ES6, exponent form only below 1e-6 or from
/// 1e21 on, with `e-07` cleaned to `e-7`. NaN and infinities are errors.
fn json_float(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let abs = f.abs();
    let fmt = if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        b'e'
    } else {
        b'f'
    };
    let mut s = format_float(f, fmt, -1);
    if fmt == b'e' {
        let n = s.len();
        let b = s.as_bytes();
        if n >= 4 && b[n - 4] == b'e' && b[n - 3] == b'-' && b[n - 2] == b'0' {
            s.remove(n - 2);
        }
    }
    Some(s)
}
