//! The builtin functions: text/template/funcs.go (Go 1.13), Kapacitor's `json`
//! (alert.go) and html/template's escapers, called by name.

use super::escapers::{
    css_escaper, css_value_filter, html_escape_string, html_name_filter, html_replace, is_safe_url,
    js_escape_string, process_url, query_escape, srcset_escape, FILTER_FAILSAFE, HTML_TABLE,
    NOSPACE_TABLE,
};
use super::gofmt::{sprint, sprintf, Printer};
use super::js::{js_regexp_escaper, js_str_escaper, js_val_escaper};
use super::json::json_encode;
use super::node::Func;
use super::value::Value;

pub(super) fn call_builtin(f: Func, mut a: Vec<Value>) -> Result<Value, String> {
    Ok(match f {
        // Go 1.13's and/or evaluate every argument, then pick one.
        Func::And => {
            let i = a.iter().position(|v| !v.truth()).unwrap_or(a.len() - 1);
            a.swap_remove(i)
        }
        Func::Or => {
            let i = a.iter().position(Value::truth).unwrap_or(a.len() - 1);
            a.swap_remove(i)
        }
        Func::Not => Value::Bool(!a[0].truth()),
        Func::Call => {
            return Err(match &a[0] {
                Value::Nil => "call of nil".into(),
                v => format!("non-function of type {}", v.type_name()),
            })
        }
        Func::Index => index(&a[0], &a[1..])?,
        Func::Slice => slice(&a[0], &a[1..])?,
        Func::Len => Value::Int(match &a[0] {
            Value::Str(s) => s.len() as i64,
            Value::Map(m) => m.len() as i64,
            Value::StrMap(m) => m.len() as i64,
            Value::Nil => return Err("len of nil pointer".into()),
            v => return Err(format!("len of type {}", v.type_name())),
        }),
        Func::Eq => Value::Bool(eq(&a[0], &a[1..])?),
        Func::Ne => Value::Bool(!eq(&a[0], &a[1..])?),
        Func::Lt => Value::Bool(lt(&a[0], &a[1])?),
        Func::Le => Value::Bool(lt(&a[0], &a[1])? || eq(&a[0], &a[1..])?),
        Func::Gt => Value::Bool(!(lt(&a[0], &a[1])? || eq(&a[0], &a[1..])?)),
        Func::Ge => Value::Bool(!lt(&a[0], &a[1])?),
        Func::Print => Value::Str(sprint(&a)),
        Func::Println => {
            let mut s = String::new();
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                Printer::new(&mut s).print_arg(v, 'v');
            }
            s.push('\n');
            Value::Str(s)
        }
        Func::Printf => {
            let format = match a.first() {
                Some(Value::Str(s)) => s.clone(),
                _ => String::new(),
            };
            Value::Str(sprintf(&format, &a[1..]))
        }
        Func::Html => Value::Str(html_escape_string(&eval_args(&a))),
        Func::Js => Value::Str(js_escape_string(&eval_args(&a))),
        Func::Urlquery => Value::Str(query_escape(&eval_args(&a))),
        // html/template's own evalArgs (escape.go): nil prints as <nil>.
        Func::EvalArgs => Value::Str(sprint(&a)),
        // alert.go: json.NewEncoder(buf).Encode(v), error ignored; Encode
        // writes nothing when it fails and a newline after the value.
        Func::Json => {
            let mut s = String::new();
            match json_encode(&mut s, &a[0]) {
                Ok(()) => s.push('\n'),
                Err(()) => s.clear(),
            }
            Value::Str(s)
        }
        Func::HtmlEscaper | Func::AttrEscaper | Func::RcdataEscaper => {
            Value::Str(html_replace(&stringify(&a), HTML_TABLE, true))
        }
        Func::NospaceEscaper => Value::Str(html_replace(&stringify(&a), NOSPACE_TABLE, false)),
        Func::CommentEscaper => Value::Str(String::new()),
        Func::HtmlNameFilter => Value::Str(html_name_filter(&stringify(&a))),
        Func::CssEscaper => Value::Str(css_escaper(&stringify(&a))),
        Func::CssValueFilter => Value::Str(css_value_filter(&stringify(&a))),
        Func::JsValEscaper => Value::Str(match a.as_slice() {
            [v] => js_val_escaper(v),
            // Several arguments are printed together, then marshalled.
            _ => js_val_escaper(&Value::Str(sprint(&a))),
        }),
        Func::JsStrEscaper => Value::Str(js_str_escaper(&stringify(&a))),
        Func::JsRegexpEscaper => Value::Str(js_regexp_escaper(&stringify(&a))),
        Func::UrlFilter => {
            let s = stringify(&a);
            Value::Str(if is_safe_url(&s) {
                s
            } else {
                format!("#{FILTER_FAILSAFE}")
            })
        }
        Func::UrlNormalizer => Value::Str(process_url(&stringify(&a), true)),
        Func::UrlEscaper => Value::Str(process_url(&stringify(&a), false)),
        Func::SrcsetEscaper => Value::Str(srcset_escape(&stringify(&a))),
    })
}

/// funcs.go, index (maps and strings; Go's slices do not occur here).
fn index(item: &Value, idx: &[Value]) -> Result<Value, String> {
    if *item == Value::Nil {
        return Err("index of untyped nil".into());
    }
    let mut v = item.clone();
    for i in idx {
        v = match &v {
            Value::Str(s) => {
                let x = index_arg(i, s.len())?;
                if x == s.len() {
                    return Err(format!("index out of range: {x}"));
                }
                Value::Int(s.as_bytes()[x] as i64)
            }
            Value::Map(m) => m.get(map_key(i)?).cloned().unwrap_or(Value::Nil),
            Value::StrMap(m) => Value::Str(m.get(map_key(i)?).cloned().unwrap_or_default()),
            Value::Nil => return Err("index of nil pointer".into()),
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(v)
}

fn map_key(i: &Value) -> Result<&str, String> {
    match i {
        Value::Str(k) => Ok(k),
        Value::Nil => Err("value is nil; should be of type string".into()),
        other => Err(format!(
            "value has type {}; should be string",
            other.type_name()
        )),
    }
}

fn index_arg(i: &Value, cap: usize) -> Result<usize, String> {
    let x = match i {
        Value::Int(x) => *x,
        Value::Duration(d) => d.as_nanos() as i64,
        Value::Nil => return Err("cannot index slice/array with nil".into()),
        other => {
            return Err(format!(
                "cannot index slice/array with type {}",
                other.type_name()
            ))
        }
    };
    if x < 0 || x as u64 > cap as u64 {
        return Err(format!("index out of range: {x}"));
    }
    Ok(x as usize)
}

/// funcs.go, slice (of strings).
fn slice(item: &Value, idx: &[Value]) -> Result<Value, String> {
    let s = match item {
        Value::Str(s) => s,
        Value::Nil => return Err("slice of untyped nil".into()),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    if idx.len() > 2 {
        return Err(format!("too many slice indexes: {}", idx.len()));
    }
    let mut bounds = [0, s.len()];
    for (k, i) in idx.iter().enumerate() {
        bounds[k] = index_arg(i, s.len())?;
    }
    if bounds[0] > bounds[1] {
        return Err(format!(
            "invalid slice index: {} > {}",
            bounds[0], bounds[1]
        ));
    }
    Ok(Value::Str(
        String::from_utf8_lossy(&s.as_bytes()[bounds[0]..bounds[1]]).into_owned(),
    ))
}

#[derive(PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
}

fn basic_kind(v: &Value) -> Result<Kind, String> {
    match v {
        Value::Bool(_) => Ok(Kind::Bool),
        Value::Int(_) | Value::Duration(_) => Ok(Kind::Int),
        Value::Float(_) => Ok(Kind::Float),
        Value::Str(_) => Ok(Kind::Str),
        _ => Err("invalid type for comparison".into()),
    }
}

fn as_int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Duration(d) => d.as_nanos() as i64,
        _ => 0,
    }
}

/// funcs.go, eq: arg1 == arg2 || arg1 == arg3 ...; only basic kinds, and
/// both sides of the same kind.
fn eq(a: &Value, others: &[Value]) -> Result<bool, String> {
    let k1 = basic_kind(a)?;
    if others.is_empty() {
        return Err("missing argument for comparison".into());
    }
    for b in others {
        let k2 = basic_kind(b)?;
        if k1 != k2 {
            return Err("incompatible types for comparison".into());
        }
        let truth = match (a, b) {
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::Float(x), Value::Float(y)) => x == y,
            (Value::Str(x), Value::Str(y)) => x == y,
            _ => as_int(a) == as_int(b),
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lt(a: &Value, b: &Value) -> Result<bool, String> {
    let k1 = basic_kind(a)?;
    let k2 = basic_kind(b)?;
    if k1 != k2 {
        return Err("incompatible types for comparison".into());
    }
    Ok(match (a, b) {
        (Value::Bool(_), _) => return Err("invalid type for comparison".into()),
        (Value::Float(x), Value::Float(y)) => x < y,
        (Value::Str(x), Value::Str(y)) => x < y,
        _ => as_int(a) < as_int(b),
    })
}

/// funcs.go, evalArgs: the arguments of html, js and urlquery as one string;
/// a nil argument reads `<no value>`.
fn eval_args(a: &[Value]) -> String {
    if let [Value::Str(s)] = a {
        return s.clone();
    }
    let args: Vec<Value> = a
        .iter()
        .map(|v| match v {
            Value::Nil => Value::Str("<no value>".into()),
            v => v.clone(),
        })
        .collect();
    sprint(&args)
}

/// html/template's content.go, stringify: nil arguments are skipped.
fn stringify(a: &[Value]) -> String {
    if let [Value::Str(s)] = a {
        return s.clone();
    }
    let args: Vec<Value> = a.iter().filter(|v| **v != Value::Nil).cloned().collect();
    sprint(&args)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn json_writes_numbers_strings_and_times_as_encoding_json() {
        let mut s = String::new();
        let v = Value::Map(
            [
                ("b".to_string(), Value::Float(1e21)),
                ("a".to_string(), Value::Float(123456789.0)),
                ("c".to_string(), Value::Float(1e-7)),
                ("d".to_string(), Value::Str("<&>\u{2028}\"\\\n\u{1}".into())),
                ("e".to_string(), Value::Duration(Duration::from_secs(10))),
            ]
            .into_iter()
            .collect(),
        );
        json_encode(&mut s, &v).unwrap();
        assert_eq!(
            s,
            r#"{"a":123456789,"b":1e+21,"c":1e-7,"d":"\u003c\u0026\u003e\u2028\"\\\n\u0001","e":10000000000}"#
        );
        // Go's Encoder writes nothing for NaN; Kapacitor ignores the error.
        assert_eq!(
            call_builtin(Func::Json, vec![Value::Float(f64::NAN)]).unwrap(),
            Value::Str(String::new())
        );
    }
}
