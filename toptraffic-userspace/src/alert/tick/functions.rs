//! The built-in functions of lambdas: their signatures, the messages about
//! them, and what they do.
//!
//! Follows `tick/stateful/functions.go` (the functions, `Domains.String`,
//! `ErrWrongFuncSignature`, each function's own errors) and
//! `tick/stateful/eval_function_node.go` (finding the signature that fits).

use std::borrow::Cow;

use super::gocompat::{
    format_influx_duration, go_f64_to_i64, go_format_float, go_logb, go_max, go_min, go_mod,
    go_parse_bool, go_parse_float, go_parse_int, go_pow10, go_substring, go_to_lower, go_to_upper,
    parse_influx_duration,
};
use super::gomath;
use super::types::{Ty, Val};

type Sig = (&'static [Ty], Ty);

#[derive(Debug)]
pub(super) struct FuncDef {
    pub(super) name: &'static str,
    pub(super) sigs: &'static [Sig],
    pub(super) imp: Imp,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Imp {
    Bool,
    Int,
    Float,
    Str,
    Duration,
    Math1(fn(f64) -> f64),
    Math2(fn(f64, f64) -> f64),
    Pow10,
    StrContains,
    StrContainsAny,
    StrHasPrefix,
    StrHasSuffix,
    StrCount,
    StrIndex,
    StrIndexAny,
    StrLastIndex,
    StrLastIndexAny,
    StrLength,
    StrReplace,
    StrSubstring,
    StrToLower,
    StrToUpper,
    StrTrimSpace,
    StrTrim,
    StrTrimLeft,
    StrTrimRight,
    StrTrimPrefix,
    StrTrimSuffix,
    RegexReplace,
    IsPresent,
    If,
}

use Ty::{
    Bool as TB, Duration as TD, Float as TF, Int as TI, Missing as TM, Regex as TR, Str as TS,
};

const SIG_BOOL: &[Sig] = &[(&[TB], TB), (&[TS], TB), (&[TI], TB), (&[TF], TB)];
const SIG_INT: &[Sig] = &[(&[TB], TI), (&[TS], TI), (&[TI], TI), (&[TF], TI)];
const SIG_FLOAT: &[Sig] = &[(&[TB], TF), (&[TS], TF), (&[TI], TF), (&[TF], TF)];
const SIG_STRING: &[Sig] = &[
    (&[TB], TS),
    (&[TS], TS),
    (&[TI], TS),
    (&[TF], TS),
    (&[TD], TS),
];
// A string needs a unit argument too, although it is not used.
const SIG_DURATION: &[Sig] = &[
    (&[TD], TD),
    (&[TI, TD], TD),
    (&[TF, TD], TD),
    (&[TS, TD], TD),
];
const SIG_M1: &[Sig] = &[(&[TF], TF)];
const SIG_M2: &[Sig] = &[(&[TF, TF], TF)];
const SIG_POW10: &[Sig] = &[(&[TI], TF)];
const SIG_SS_B: &[Sig] = &[(&[TS, TS], TB)];
const SIG_SS_I: &[Sig] = &[(&[TS, TS], TI)];
const SIG_SS_S: &[Sig] = &[(&[TS, TS], TS)];
const SIG_S_S: &[Sig] = &[(&[TS], TS)];
const SIG_S_I: &[Sig] = &[(&[TS], TI)];
const SIG_REPLACE: &[Sig] = &[(&[TS, TS, TS, TI], TS)];
const SIG_SUBSTRING: &[Sig] = &[(&[TS, TI, TI], TS)];
const SIG_REGEX_REPLACE: &[Sig] = &[(&[TR, TS, TS], TS)];
const SIG_IS_PRESENT: &[Sig] = &[
    (&[TM], TB),
    (&[TB], TB),
    (&[TS], TB),
    (&[TI], TB),
    (&[TF], TB),
];
const SIG_IF: &[Sig] = &[
    (&[TB, TF, TF], TF),
    (&[TB, TI, TI], TI),
    (&[TB, TS, TS], TS),
    (&[TB, TB, TB], TB),
    (&[TB, TR, TR], TR),
    (&[TB, TD, TD], TD),
];

const fn func(name: &'static str, sigs: &'static [Sig], imp: Imp) -> FuncDef {
    FuncDef { name, sigs, imp }
}

const fn m1(name: &'static str, g: fn(f64) -> f64) -> FuncDef {
    func(name, SIG_M1, Imp::Math1(g))
}

const fn m2(name: &'static str, g: fn(f64, f64) -> f64) -> FuncDef {
    func(name, SIG_M2, Imp::Math2(g))
}

// Math runs Go's algorithms (gomath.rs); abs, ceil, floor, sqrt and trunc
// are exact, so Rust's give the same bits.
static FUNCS: &[FuncDef] = &[
    func("bool", SIG_BOOL, Imp::Bool),
    func("int", SIG_INT, Imp::Int),
    func("float", SIG_FLOAT, Imp::Float),
    func("string", SIG_STRING, Imp::Str),
    func("duration", SIG_DURATION, Imp::Duration),
    m1("abs", f64::abs),
    m1("acos", gomath::acos),
    m1("acosh", gomath::acosh),
    m1("asin", gomath::asin),
    m1("asinh", gomath::asinh),
    m1("atan", gomath::atan),
    m2("atan2", gomath::atan2),
    m1("atanh", gomath::atanh),
    m1("cbrt", gomath::cbrt),
    m1("ceil", f64::ceil),
    m1("cos", gomath::cos),
    m1("cosh", gomath::cosh),
    m1("exp", gomath::exp),
    m1("exp2", gomath::exp2),
    m1("expm1", gomath::expm1),
    m1("floor", f64::floor),
    m2("hypot", gomath::hypot),
    m1("log", gomath::log),
    m1("log10", gomath::log10),
    m1("log1p", gomath::log1p),
    m1("log2", gomath::log2),
    m1("logb", go_logb),
    m2("max", go_max),
    m2("min", go_min),
    m2("mod", go_mod),
    m2("pow", gomath::pow),
    func("pow10", SIG_POW10, Imp::Pow10),
    m1("sin", gomath::sin),
    m1("sinh", gomath::sinh),
    m1("sqrt", f64::sqrt),
    m1("tan", gomath::tan),
    m1("tanh", gomath::tanh),
    m1("trunc", f64::trunc),
    func("strContains", SIG_SS_B, Imp::StrContains),
    func("strContainsAny", SIG_SS_B, Imp::StrContainsAny),
    func("strCount", SIG_SS_I, Imp::StrCount),
    func("strHasPrefix", SIG_SS_B, Imp::StrHasPrefix),
    func("strHasSuffix", SIG_SS_B, Imp::StrHasSuffix),
    func("strIndex", SIG_SS_I, Imp::StrIndex),
    func("strIndexAny", SIG_SS_I, Imp::StrIndexAny),
    func("strLastIndex", SIG_SS_I, Imp::StrLastIndex),
    func("strLastIndexAny", SIG_SS_I, Imp::StrLastIndexAny),
    func("strLength", SIG_S_I, Imp::StrLength),
    func("strReplace", SIG_REPLACE, Imp::StrReplace),
    func("strSubstring", SIG_SUBSTRING, Imp::StrSubstring),
    func("strToLower", SIG_S_S, Imp::StrToLower),
    func("strToUpper", SIG_S_S, Imp::StrToUpper),
    func("strTrim", SIG_SS_S, Imp::StrTrim),
    func("strTrimLeft", SIG_SS_S, Imp::StrTrimLeft),
    func("strTrimPrefix", SIG_SS_S, Imp::StrTrimPrefix),
    func("strTrimRight", SIG_SS_S, Imp::StrTrimRight),
    func("strTrimSpace", SIG_S_S, Imp::StrTrimSpace),
    func("strTrimSuffix", SIG_SS_S, Imp::StrTrimSuffix),
    func("regexReplace", SIG_REGEX_REPLACE, Imp::RegexReplace),
    func("isPresent", SIG_IS_PRESENT, Imp::IsPresent),
    func("if", SIG_IF, Imp::If),
];

pub(super) enum Lookup {
    Found(&'static FuncDef),
    Unsupported(&'static str),
    Undefined,
}

pub(super) fn lookup_func(name: &str) -> Lookup {
    if let Some(def) = FUNCS.iter().find(|d| d.name == name) {
        return Lookup::Found(def);
    }
    Lookup::Unsupported(match name {
        "sigma" | "count" | "spread" => {
            "it is stateful (its result depends on earlier points), and only stateless functions are"
        }
        "unixNano" | "minute" | "hour" | "weekday" | "day" | "month" | "year" | "now" => {
            "time functions need a point's time, which a key's window value does not have"
        }
        "erf" | "erfc" | "gamma" | "j0" | "j1" | "jn" | "y0" | "y1" | "yn" | "humanBytes" => {
            "toptraffic does not implement it"
        }
        _ => return Lookup::Undefined,
    })
}

pub(super) fn find_signature(def: &FuncDef, tys: &[Ty]) -> Option<Ty> {
    def.sigs
        .iter()
        .find(|(params, _)| *params == tys)
        .map(|&(_, ret)| ret)
}

/// `Domains.String`, in a fixed order rather than Go's map order.
pub(super) fn signatures(def: &FuncDef) -> String {
    let sigs: Vec<String> = def
        .sigs
        .iter()
        .map(|(params, _)| {
            let names: Vec<&str> = params.iter().map(|t| t.name()).collect();
            format!("({})", names.join(","))
        })
        .collect();
    format!("[{}]", sigs.join(", "))
}

/// `ErrWrongFuncSignature`.
pub(super) fn wrong_signature(def: &FuncDef, tys: &[Ty], srcs: &[String]) -> String {
    let args: Vec<String> = srcs
        .iter()
        .zip(tys)
        .map(|(s, t)| format!("{s}: {}", t.name()))
        .collect();
    format!(
        "Cannot call function \"{}\" with args ({}), available signatures are {}.",
        def.name,
        args.join(","),
        signatures(def)
    )
}

/// Calls a function whose arguments fit one of its signatures; errors are
/// the functions' own messages from functions.go.
pub(super) fn call_function(imp: Imp, mut args: Vec<Val<'_>>) -> Result<Val<'_>, String> {
    use Val as V;
    if let Imp::If = imp {
        let pick = if matches!(args[0], V::Bool(true)) {
            1
        } else {
            2
        };
        return Ok(args.swap_remove(pick));
    }
    let owned = |s: String| V::Str(Cow::Owned(s));
    let index = |i: Option<usize>| V::Int(i.map_or(-1, |i| i as i64));
    Ok(match (imp, args.as_slice()) {
        (Imp::Bool, [V::Bool(b)]) => V::Bool(*b),
        (Imp::Bool, [V::Str(s)]) => V::Bool(go_parse_bool(s)?),
        (Imp::Bool, [V::Int(i)]) => V::Bool(match i {
            0 => false,
            1 => true,
            _ => return Err(format!("cannot convert {i} to boolean")),
        }),
        (Imp::Bool, [V::Float(x)]) => V::Bool(if *x == 0.0 {
            false
        } else if *x == 1.0 {
            true
        } else {
            return Err(format!("cannot convert {x} to boolean"));
        }),
        (Imp::Int, [V::Int(i)]) => V::Int(*i),
        (Imp::Int, [V::Float(x)]) => V::Int(go_f64_to_i64(*x)),
        (Imp::Int, [V::Str(s)]) => V::Int(go_parse_int(s)?),
        (Imp::Int, [V::Bool(b)]) => V::Int(i64::from(*b)),
        (Imp::Float, [V::Int(i)]) => V::Float(*i as f64),
        (Imp::Float, [V::Float(x)]) => V::Float(*x),
        (Imp::Float, [V::Str(s)]) => V::Float(go_parse_float(s)?),
        (Imp::Float, [V::Bool(b)]) => V::Float(f64::from(u8::from(*b))),
        (Imp::Str, [V::Str(s)]) => V::Str(s.clone()),
        (Imp::Str, [V::Int(i)]) => owned(i.to_string()),
        (Imp::Str, [V::Float(x)]) => owned(go_format_float(*x)),
        (Imp::Str, [V::Bool(b)]) => owned(b.to_string()),
        (Imp::Str, [V::Duration(d)]) => owned(format_influx_duration(*d)),
        (Imp::Duration, [V::Duration(d)]) => V::Duration(*d),
        (Imp::Duration, [V::Int(i), V::Duration(unit)]) => V::Duration(i.wrapping_mul(*unit)),
        (Imp::Duration, [V::Float(x), V::Duration(unit)]) => {
            V::Duration(go_f64_to_i64(x * *unit as f64))
        }
        (Imp::Duration, [V::Str(s), V::Duration(_)]) => V::Duration(
            parse_influx_duration(s).map_err(|_| format!("invalid duration string {s:?}"))?,
        ),
        (Imp::Math1(g), [V::Float(x)]) => V::Float(g(*x)),
        (Imp::Math2(g), [V::Float(x), V::Float(y)]) => V::Float(g(*x, *y)),
        (Imp::Pow10, [V::Int(n)]) => V::Float(go_pow10(*n)),
        (Imp::StrContains, [V::Str(s), V::Str(t)]) => V::Bool(s.contains(&**t)),
        (Imp::StrContainsAny, [V::Str(s), V::Str(t)]) => V::Bool(s.chars().any(|c| t.contains(c))),
        (Imp::StrHasPrefix, [V::Str(s), V::Str(t)]) => V::Bool(s.starts_with(&**t)),
        (Imp::StrHasSuffix, [V::Str(s), V::Str(t)]) => V::Bool(s.ends_with(&**t)),
        // Go counts an empty substring once per rune, plus one.
        (Imp::StrCount, [V::Str(s), V::Str(t)]) if t.is_empty() => {
            V::Int(s.chars().count() as i64 + 1)
        }
        (Imp::StrCount, [V::Str(s), V::Str(t)]) => V::Int(s.matches(&**t).count() as i64),
        (Imp::StrIndex, [V::Str(s), V::Str(t)]) => index(s.find(&**t)),
        (Imp::StrIndexAny, [V::Str(s), V::Str(t)]) => index(
            s.char_indices()
                .find(|&(_, c)| t.contains(c))
                .map(|(i, _)| i),
        ),
        (Imp::StrLastIndex, [V::Str(s), V::Str(t)]) => index(s.rfind(&**t)),
        (Imp::StrLastIndexAny, [V::Str(s), V::Str(t)]) => index(
            s.char_indices()
                .rev()
                .find(|&(_, c)| t.contains(c))
                .map(|(i, _)| i),
        ),
        // Bytes, as Go's len().
        (Imp::StrLength, [V::Str(s)]) => V::Int(s.len() as i64),
        (Imp::StrReplace, [V::Str(s), V::Str(old), V::Str(new), V::Int(n)]) => owned(if *n < 0 {
            s.replace(&**old, new)
        } else {
            s.replacen(&**old, new, *n as usize)
        }),
        (Imp::StrSubstring, [V::Str(s), V::Int(start), V::Int(stop)]) => {
            owned(go_substring(s, *start, *stop)?)
        }
        (Imp::StrToLower, [V::Str(s)]) => owned(go_to_lower(s)),
        (Imp::StrToUpper, [V::Str(s)]) => owned(go_to_upper(s)),
        (Imp::StrTrimSpace, [V::Str(s)]) => owned(s.trim().to_string()),
        (Imp::StrTrim, [V::Str(s), V::Str(cut)]) => {
            owned(s.trim_matches(|c: char| cut.contains(c)).to_string())
        }
        (Imp::StrTrimLeft, [V::Str(s), V::Str(cut)]) => {
            owned(s.trim_start_matches(|c: char| cut.contains(c)).to_string())
        }
        (Imp::StrTrimRight, [V::Str(s), V::Str(cut)]) => {
            owned(s.trim_end_matches(|c: char| cut.contains(c)).to_string())
        }
        (Imp::StrTrimPrefix, [V::Str(s), V::Str(p)]) => {
            owned(s.strip_prefix(&**p).unwrap_or(&**s).to_string())
        }
        (Imp::StrTrimSuffix, [V::Str(s), V::Str(p)]) => {
            owned(s.strip_suffix(&**p).unwrap_or(&**s).to_string())
        }
        // The regex crate expands `$1`, `${name}` and `$$` as Go does.
        (Imp::RegexReplace, [V::Regex(re), V::Str(src), V::Str(repl)]) => {
            owned(re.replace_all(src, &**repl).into_owned())
        }
        (Imp::IsPresent, [v]) => V::Bool(!matches!(v, V::Missing(_))),
        _ => return Err("arguments do not match the function's signature".to_string()),
    })
}
