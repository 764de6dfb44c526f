//! Tests of the lambda language, from source text through [`Expr`] to its
//! result or error, with Kapacitor's messages.
//!
//! They sit above every module because nearly all of them go through
//! `Expr::parse` and evaluation, whichever part of the port they check.

use super::error::{EvalError, ExprError};
use super::eval::Env;
use super::expr::{Expr, Value};
use super::gocompat::{
    format_influx_duration, go_f64_to_i64, go_format_float, go_logb, go_max, go_pow10,
    parse_influx_duration, NS_H, NS_M, NS_S,
};

#[derive(Default)]
struct TestEnv {
    fields: Vec<(&'static str, f64)>,
    tags: Vec<(&'static str, &'static str)>,
}

impl Env for TestEnv {
    fn field(&self, name: &str) -> Option<f64> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    fn tag(&self, name: &str) -> Option<&str> {
        self.tags.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

fn env(fields: &[(&'static str, f64)], tags: &[(&'static str, &'static str)]) -> TestEnv {
    TestEnv {
        fields: fields.to_vec(),
        tags: tags.to_vec(),
    }
}

fn parse(src: &str) -> Expr {
    Expr::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn holds(src: &str, e: &TestEnv) -> bool {
    parse(src)
        .eval_bool(e)
        .unwrap_or_else(|err| panic!("{src}: {err}"))
}

/// Constant expressions: true under an empty key.
fn truth(src: &str) -> bool {
    holds(src, &TestEnv::default())
}

fn value(src: &str, e: &TestEnv) -> Value {
    parse(src)
        .eval(e)
        .unwrap_or_else(|err| panic!("{src}: {err}"))
}

fn parse_err(src: &str) -> ExprError {
    match Expr::parse(src) {
        Ok(_) => panic!("{src}: parsed"),
        Err(e) => e,
    }
}

fn eval_err(src: &str, e: &TestEnv) -> EvalError {
    match parse(src).eval_bool(e) {
        Ok(v) => panic!("{src}: evaluated to {v}"),
        Err(e) => e,
    }
}

#[test]
fn seed_threshold_on_the_window_value() {
    let src = r#""totalCount" > 17500"#;
    assert!(holds(src, &env(&[("totalCount", 17500.5)], &[])));
    assert!(!holds(src, &env(&[("totalCount", 17500.0)], &[])));
}

#[test]
fn seed_threshold_and_regex_on_a_tag() {
    let src = r#""totalCount" > 100 AND "ip" =~ /^10\./"#;
    assert!(holds(
        src,
        &env(&[("totalCount", 101.0)], &[("ip", "10.1.2.3")])
    ));
    assert!(!holds(
        src,
        &env(&[("totalCount", 101.0)], &[("ip", "110.1.2.3")])
    ));
    assert!(!holds(
        src,
        &env(&[("totalCount", 99.0)], &[("ip", "10.1.2.3")])
    ));
}

#[test]
fn seed_negation_with_bang_and_float_rate() {
    let src = r#"!("role" == 'edge') OR "totalCount" / 60.0 >= 300"#;
    let e = |role, count| env(&[("totalCount", count)], &[("role", role)]);
    assert!(holds(src, &e("core", 0.0)));
    assert!(!holds(src, &e("edge", 17999.0)));
    assert!(holds(src, &e("edge", 18000.0)));
}

#[test]
fn not_keyword_does_not_exist() {
    // Kapacitor lexes NOT as an identifier and calls an undefined function.
    let e = parse_err(r#"NOT ("role" == 'edge') OR "totalCount" > 1"#);
    assert_eq!(e.pos, 0);
    assert!(e.message.starts_with("undefined function: \"NOT\""), "{e}");
    assert!(e.message.contains('!'), "{e}");
}

#[test]
fn precedence_and_associativity() {
    assert!(truth("1 + 2 * 3 == 7"));
    assert!(truth("(1 + 2) * 3 == 9"));
    assert!(truth("10 - 4 - 3 == 3"));
    assert!(truth("100 / 10 / 5 == 2"));
    assert!(truth("-2 * 3 == -6"));
    assert!(truth("7 - -3 == 10"));
    // AND binds tighter than OR.
    assert!(truth("TRUE OR FALSE AND FALSE"));
    assert!(truth("FALSE AND TRUE OR TRUE"));
    assert!(!truth("FALSE AND (TRUE OR TRUE)"));
    // < binds tighter than ==.
    assert!(truth("1 < 2 == TRUE"));
    let e = env(&[("totalCount", 50.0)], &[("host", "web-1")]);
    assert!(holds(
        r#""totalCount" * 2.0 > 99.0 AND "host" =~ /web/"#,
        &e
    ));
    // Unary operators take the next operand only.
    assert_eq!(
        parse_err(r#"!"host" == 'web-1'"#).message,
        "mismatched type to binary operator. got boolean == string. see bool(), int(), float(), string(), duration()"
    );
}

#[test]
fn comparisons_mix_int_and_float() {
    assert!(truth("1 == 1.0"));
    assert!(truth("2 > 1.5"));
    assert!(truth("1.5 <= 2"));
    assert!(truth("3 != 3.5"));
    let e = env(&[("totalCount", 17500.0)], &[]);
    assert!(holds(r#""totalCount" >= 17500"#, &e));
}

#[test]
fn arithmetic_does_not_mix_int_and_float() {
    let e = env(&[("totalCount", 600.0)], &[]);
    let err = eval_err(r#""totalCount" / 60 > 5"#, &e);
    assert_eq!(
        err.message(),
        "mismatched type to binary operator. got float / int. see bool(), int(), float(), string(), duration()"
    );
    assert!(holds(r#""totalCount" / 60.0 > 5"#, &e));
    assert!(holds(r#"int("totalCount") / 60 == 10"#, &e));
    // Between constants Kapacitor refuses it when compiling.
    let err = parse_err("1 + 1.5 > 2");
    assert_eq!(err.pos, 2);
    assert!(err.message.starts_with("mismatched type"), "{err}");
}

#[test]
fn integer_division_truncates_and_modulo_is_int_only() {
    assert!(truth("7 / 2 == 3"));
    assert!(truth("-7 / 2 == -3"));
    assert!(truth("7 % 3 == 1"));
    assert!(truth("-7 % 3 == -1"));
    assert_eq!(value("7.0 / 2.0", &TestEnv::default()), Value::Float(3.5));
    assert_eq!(
        parse_err("7.0 % 2.0 > 0.0").message,
        "invalid math operator % for type float"
    );
    let err = eval_err("1 / 0 == 0", &TestEnv::default());
    assert_eq!(err.message(), "integer divide by zero");
    assert_eq!(
        value("1.0 / 0.0", &TestEnv::default()),
        Value::Float(f64::INFINITY)
    );
}

#[test]
fn integer_arithmetic_wraps_like_go() {
    assert!(truth("9223372036854775807 + 1 == -9223372036854775807 - 1"));
    assert_eq!(
        parse_err("9223372036854775808 > 1").message,
        "illegal number syntax: \"9223372036854775808\""
    );
}

#[test]
fn integer_literals_with_leading_zero_are_octal() {
    assert!(truth("010 == 8"));
    assert!(truth("0 == 0"));
    assert!(truth("010.5 == 10.5"));
    assert_eq!(parse_err("09 > 1").message, "illegal number syntax: \"09\"");
}

#[test]
fn regex_match_on_tags() {
    let e = env(&[], &[("host", "web-12"), ("path", "/api/v1")]);
    assert!(holds(r#""host" =~ /^web-\d+$/"#, &e));
    assert!(!holds(r#""host" !~ /^web-\d+$/"#, &e));
    assert!(holds(r#""host" !~ /^db/"#, &e));
    assert!(holds(r#""path" =~ /^\/api\//"#, &e));
    assert!(holds(r#""host" =~ /(?i)^WEB/"#, &e));
    // The regex is on the right only.
    let err = parse_err(r#"/web/ =~ "host""#);
    assert!(err.message.contains("after a regex"), "{err}");
    let err = eval_err(r#""host" =~ "path""#, &e);
    assert!(err.message().starts_with("mismatched type"), "{err}");
}

#[test]
fn regex_classes_are_ascii_as_in_go() {
    let e = env(&[], &[("d", "\u{663}"), ("w", "é"), ("s", "\u{a0}")]);
    assert!(!holds(r#""d" =~ /^\d$/"#, &e));
    assert!(holds(r#""d" =~ /^\D$/"#, &e));
    assert!(!holds(r#""w" =~ /^\w$/"#, &e));
    assert!(!holds(r#""s" =~ /^\s$/"#, &e));
    assert!(holds(r#""w" =~ /^[^\d]$/"#, &e));
}

#[test]
fn operator_right_after_a_regex_is_a_syntax_error() {
    let err = parse_err(r#""a" =~ /x/ == TRUE"#);
    assert_eq!(err.pos, 11);
    assert!(err.message.contains("parentheses"), "{err}");
    let e = env(&[], &[("a", "x")]);
    assert!(holds(r#"("a" =~ /x/) == TRUE"#, &e));
    // Keywords are fine after a regex.
    assert!(holds(r#""a" =~ /x/ AND "a" !~ /y/"#, &e));
}

#[test]
fn invalid_regex_is_a_parse_error() {
    let err = parse_err(r#""a" =~ /(x/"#);
    assert_eq!(err.pos, 7);
    // Go's regexp.Compile error, as Kapacitor passes it on.
    assert_eq!(err.message, "error parsing regexp: missing closing ): `(x`");
    let err = parse_err(r#""a" =~ /a**/"#);
    assert_eq!(
        err.message,
        "error parsing regexp: invalid nested repetition operator: `**`"
    );
}

#[test]
fn missing_reference_names_it() {
    let e = env(&[("totalCount", 5.0)], &[]);
    let err = eval_err(r#""totlCount" > 5"#, &e);
    assert_eq!(
        err.message(),
        "left reference value \"totlCount\" is missing value"
    );
    assert_eq!(err.missing_reference(), Some("totlCount"));
    let err = eval_err(r#"5 < "totlCount""#, &e);
    assert_eq!(
        err.message(),
        "right reference value \"totlCount\" is missing value"
    );
    let err = eval_err(r#"abs("nope") > 1.0 AND "totalCount" > 1"#, &e);
    assert_eq!(
        err.message(),
        "Cannot call function \"abs\" argument \"nope\" is missing, values in scope are [\"totalCount\"]"
    );
    assert_eq!(err.missing_reference(), Some("nope"));
    let err = parse(r#""nope""#).eval(&e).unwrap_err();
    assert_eq!(err.message(), "reference \"nope\" is missing value");
}

#[test]
fn is_present_tests_for_missing_references() {
    let e = env(&[("totalCount", 5.0)], &[("host", "a")]);
    assert!(holds(
        r#"isPresent("totalCount") AND isPresent("host")"#,
        &e
    ));
    assert!(holds(r#"!isPresent("nope")"#, &e));
    assert!(holds(r#"isPresent("nope") OR "totalCount" > 1"#, &e));
}

#[test]
fn logical_operators_short_circuit_after_type_checks() {
    let e = env(&[("totalCount", 5.0)], &[]);
    assert!(holds(r#"TRUE OR "nope" > 1"#, &e));
    assert!(!holds(r#"FALSE AND "nope" > 1"#, &e));
    assert!(eval_err(r#""nope" > 1 OR TRUE"#, &e)
        .missing_reference()
        .is_some());
    // The operand types are checked even where evaluation stops early.
    let err = eval_err(r#"TRUE OR "totalCount""#, &e);
    assert_eq!(
        err.message(),
        "mismatched type to binary operator. got boolean OR float. see bool(), int(), float(), string(), duration()"
    );
    let err = eval_err(r#""totalCount" AND TRUE"#, &e);
    assert_eq!(err.message(), "invalid logical operator AND for type float");
}

#[test]
fn field_and_tag_with_the_same_name_is_an_error() {
    let e = env(&[("x", 1.0)], &[("x", "a")]);
    let err = eval_err(r#"TRUE OR "x" > 0"#, &e);
    assert_eq!(
        err.message(),
        "cannot have field and tags with same name \"x\""
    );
}

#[test]
fn parse_error_positions() {
    let e = parse_err(r#""totalCount" >"#);
    assert_eq!(e.pos, 14);
    assert_eq!(e.message, "unexpected end of expression, expected a value");
    assert_eq!(
        e.to_string(),
        "at column 15: unexpected end of expression, expected a value"
    );
    let e = parse_err(r#""a" > > 1"#);
    assert_eq!(e.pos, 6);
    assert_eq!(e.message, "unexpected '>', expected a value");
    let e = parse_err(r#""a" == 'abc"#);
    assert_eq!((e.pos, e.message.as_str()), (7, "unterminated string"));
    let e = parse_err(r#""a" =~ /abc"#);
    assert_eq!((e.pos, e.message.as_str()), (7, "unterminated regex"));
    let e = parse_err(r#""abc > 1"#);
    assert_eq!(
        (e.pos, e.message.as_str()),
        (0, "unterminated field reference")
    );
    let e = parse_err("1.2.3 > 1");
    assert_eq!(
        (e.pos, e.message.as_str()),
        (0, "multiple decimals in number")
    );
    let e = parse_err(r#"("a" > 1"#);
    assert_eq!(e.pos, 8);
    assert_eq!(e.message, "unexpected end of expression, expected ')'");
    let e = parse_err(r#""a" > 1 "b""#);
    assert_eq!(e.pos, 8);
    assert_eq!(
        e.message,
        "unexpected reference \"b\", expected an operator or the end of the expression"
    );
    let e = parse_err("");
    assert_eq!(e.pos, 0);
    let e = parse_err(r#""a" > 1 && "b" > 2"#);
    assert_eq!(e.pos, 8);
    assert!(e.message.contains("AND and OR"), "{e}");
    let e = parse_err(r#""a" > 1 and "b" > 2"#);
    assert_eq!(e.pos, 8);
    let e = parse_err(r#"totalCount > 1"#);
    assert!(e.message.contains("\"totalCount\""), "{e}");
    let e = parse_err(r#""a" == true"#);
    assert!(e.message.contains("TRUE"), "{e}");
}

#[test]
fn stateful_and_time_functions_are_not_supported() {
    let e = parse_err(r#""totalCount" > 5 AND sigma("totalCount") > 3"#);
    assert_eq!(e.pos, 21);
    assert!(
        e.message.starts_with("function \"sigma\" is not supported"),
        "{e}"
    );
    assert!(parse_err("count() > 1").message.contains("not supported"));
    assert!(parse_err("spread(1.0) > 1.0")
        .message
        .contains("not supported"));
    assert!(parse_err("hour(now()) > 1")
        .message
        .contains("not supported"));
    let e = parse_err(r#""time" > 1"#);
    assert!(e.message.contains("not supported"), "{e}");
    let e = parse_err("round(1.5) == 2.0");
    assert_eq!(e.message, "undefined function: \"round\"");
}

#[test]
fn function_signatures_follow_kapacitor() {
    // Math functions take floats only.
    let e = parse_err("abs(-5) == 5");
    assert_eq!(
        e.message,
        "Cannot call function \"abs\" with args (-5: int), available signatures are [(float)]."
    );
    let e = parse_err("pow(2.0) > 1.0");
    assert!(e.message.contains("with 1 argument(s)"), "{e}");
    let env_ = env(&[("totalCount", 5.0)], &[("host", "web")]);
    let err = eval_err(r#"abs("host") > 1.0"#, &env_);
    assert_eq!(
        err.message(),
        "Cannot call function \"abs\" with args (\"host\": string), available signatures are [(float)]."
    );
    // duration() wants a unit even for a string.
    assert!(parse_err("duration('5m') > 1s")
        .message
        .contains("(duration), (int,duration), (float,duration), (string,duration)"));
}

/// Kapacitor's math is Go's (gomath.rs): `math.Log10(0.1)` is
/// -0.9999999999999999, so this threshold does not fire at 18000 of
/// 180000, though libm's log10 would say -1.
#[test]
fn math_follows_go_to_the_last_bit() {
    let e = env(&[("totalCount", 18000.0)], &[]);
    assert!(!holds(r#"log10("totalCount" / 180000.0) <= -1.0"#, &e));
    assert!(holds(r#"log10("totalCount" / 180000.0) > -1.0"#, &e));
    let e = env(&[("totalCount", 18001.0)], &[]);
    assert!(!holds(r#"log10("totalCount" / 180000.0) <= -1.0"#, &e));
    let e = env(&[("totalCount", 17999.0)], &[]);
    assert!(holds(r#"log10("totalCount" / 180000.0) <= -1.0"#, &e));
}

#[test]
fn math_functions() {
    let e = env(&[("totalCount", -2.5)], &[]);
    assert!(holds(r#"abs("totalCount") == 2.5"#, &e));
    assert!(holds(r#"ceil("totalCount") == -2.0"#, &e));
    assert!(holds(r#"floor("totalCount") == -3.0"#, &e));
    assert!(holds(r#"trunc("totalCount") == -2.0"#, &e));
    assert!(holds("sqrt(16.0) == 4.0", &e));
    assert!(holds("pow(2.0, 10.0) == 1024.0", &e));
    assert!(holds("exp(0.0) == 1.0 AND log(1.0) == 0.0", &e));
    assert!(holds("log10(1000.0) == 3.0 AND log2(8.0) == 3.0", &e));
    assert!(holds(
        r#"max("totalCount", 1.0) == 1.0 AND min("totalCount", 1.0) == -2.5"#,
        &e
    ));
    assert!(holds("mod(7.5, 2.0) == 1.5", &e));
    assert!(holds("pow10(3) == 1000.0 AND pow10(-1) == 0.1", &e));
    assert!(holds("logb(8.0) == 3.0 AND logb(0.1) == -4.0", &e));
    assert!(go_max(1.0, f64::NAN).is_nan());
    assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
    assert_eq!(go_logb(f64::MIN_POSITIVE / 4.0), -1024.0);
    assert_eq!(go_pow10(400), f64::INFINITY);
    assert_eq!(go_pow10(-400), 0.0);
}

#[test]
fn conversion_functions() {
    let e = env(&[("totalCount", 7.9)], &[("n", "42"), ("b", "T")]);
    assert!(holds(r#"int("totalCount") == 7"#, &e));
    assert!(holds(r#"int("n") + 1 == 43"#, &e));
    assert!(holds(r#"float("n") == 42.0"#, &e));
    assert!(holds(r#"bool("b")"#, &e));
    assert!(holds("bool(1) AND !bool(0.0)", &e));
    assert!(holds("int(TRUE) == 1 AND float(FALSE) == 0.0", &e));
    assert!(holds(r#"string("totalCount") == '7.9'"#, &e));
    assert!(holds("string(3) == '3' AND string(TRUE) == 'true'", &e));
    assert!(holds("string(2.0) == '2' AND string(90m) == '90m'", &e));
    assert!(holds(
        "string(1500ms) == '1500ms' AND string(2w) == '2w'",
        &e
    ));
    assert!(holds(
        "duration(2, 1m) == 120s AND duration(1.5, 1s) == 1500ms",
        &e
    ));
    assert!(holds("duration('1h30m', 1s) == 90m", &e));
    let err = eval_err(r#"bool("n")"#, &e);
    assert_eq!(
        err.message(),
        "error calling \"bool\": strconv.ParseBool: parsing \"42\": invalid syntax"
    );
    let err = eval_err("bool(2) OR TRUE", &e);
    assert_eq!(
        err.message(),
        "error calling \"bool\": cannot convert 2 to boolean"
    );
    let err = eval_err("float('1e400') > 1.0", &e);
    assert!(err.message().ends_with("value out of range"), "{err}");
    let err = eval_err("int('x') > 1", &e);
    assert_eq!(
        err.message(),
        "error calling \"int\": strconv.ParseInt: parsing \"x\": invalid syntax"
    );
    assert_eq!(go_f64_to_i64(f64::NAN), i64::MIN);
    assert_eq!(go_f64_to_i64(1e19), i64::MIN);
    assert_eq!(go_format_float(f64::NEG_INFINITY), "-Inf");
    assert_eq!(go_format_float(1e21), "1000000000000000000000");
}

#[test]
fn string_functions() {
    let e = env(&[], &[("host", "Web-01.example.com")]);
    assert!(holds(r#"strContains("host", 'example')"#, &e));
    assert!(holds(
        r#"strContainsAny("host", 'xyz') AND !strContainsAny("host", '')"#,
        &e
    ));
    assert!(holds(
        r#"strHasPrefix("host", 'Web') AND strHasSuffix("host", '.com')"#,
        &e
    ));
    assert!(holds(
        r#"strCount("host", 'e') == 3 AND strCount('abc', '') == 4"#,
        &e
    ));
    assert!(holds(
        r#"strIndex("host", '.') == 6 AND strLastIndex("host", '.') == 14"#,
        &e
    ));
    assert!(holds(r#"strIndex("host", 'zz') == -1"#, &e));
    assert!(holds(
        r#"strIndexAny("host", '.-') == 3 AND strLastIndexAny("host", '.-') == 14"#,
        &e
    ));
    assert!(holds(
        r#"strLength("host") == 18 AND strLength('é') == 2"#,
        &e
    ));
    assert!(holds(
        r#"strReplace("host", '.', '_', 1) == 'Web-01_example.com'"#,
        &e
    ));
    assert!(holds(
        r#"strReplace("host", '.', '_', -1) == 'Web-01_example_com'"#,
        &e
    ));
    assert!(holds(r#"strSubstring("host", 0, 3) == 'Web'"#, &e));
    assert!(holds(r#"strToLower("host") == 'web-01.example.com'"#, &e));
    assert!(holds(r#"strToUpper('straße') == 'STRAßE'"#, &e));
    assert!(holds(r#"strTrimSpace('  a b  ') == 'a b'"#, &e));
    assert!(holds(
        r#"strTrim('xxaxx', 'x') == 'a' AND strTrimLeft('xxa', 'x') == 'a'"#,
        &e
    ));
    assert!(holds(r#"strTrimRight('axx', 'x') == 'a'"#, &e));
    assert!(holds(
        r#"strTrimPrefix("host", 'Web-') == '01.example.com'"#,
        &e
    ));
    assert!(holds(
        r#"strTrimSuffix("host", '.com') == 'Web-01.example'"#,
        &e
    ));
    assert!(holds(
        r#"regexReplace(/(\d+)/, "host", 'n$1') == 'Web-n01.example.com'"#,
        &e
    ));
    // strSubstring's stop must be below the length.
    let err = eval_err(r#"strSubstring("host", 0, 18) == ''"#, &e);
    assert_eq!(
        err.message(),
        "error calling \"strSubstring\": stop index too large for string in strSubstring: 18"
    );
}

#[test]
fn if_function_picks_a_branch() {
    let e = env(&[("totalCount", 10.0)], &[]);
    assert!(holds(
        r#"if("totalCount" > 5, 'big', 'small') == 'big'"#,
        &e
    ));
    assert!(holds(r#"if("totalCount" > 50, 1, 2) == 2"#, &e));
    assert!(parse_err("if(TRUE, 1, 'a') == 1")
        .message
        .contains("Cannot call function \"if\""));
}

#[test]
fn strings_concatenate_compare_and_escape() {
    let e = env(&[], &[("host", "web")]);
    assert!(holds(r#""host" + '.example' == 'web.example'"#, &e));
    assert!(holds("'abc' < 'abd' AND 'b' > 'abc'", &e));
    assert!(holds(r#"'it\'s' == '''it's'''"#, &e));
    assert!(holds("'' == '' AND strLength('') == 0", &e));
    // Only \' is an escape.
    assert!(holds(r"strLength('a\nb') == 4", &e));
    assert!(holds(r#"'''a\'b''' == 'a\\'b'"#, &e));
    assert_eq!(value(r#"'x' + "host""#, &e), Value::Str("xweb".to_string()));
    let e = env(&[("a\"b", 1.0)], &[]);
    assert!(holds(r#""a\"b" == 1.0"#, &e));
}

#[test]
fn durations_as_kapacitor_lexes_them() {
    assert!(truth("5m == 300s AND 1h > 59m AND 5ms < 1s"));
    assert!(truth(
        "1d == 24h AND 1w == 7d AND 1000u == 1ms AND 1µ == 1u"
    ));
    assert!(truth("2 * 5m == 10m AND 5m * 2 == 10m AND 10m / 5m == 2"));
    assert!(truth("10m / 2 == 5m AND 1m * 1.5 == 90s AND -5m < 0s"));
    assert!(truth("010s == 10s"));
    assert_eq!(
        value("90s", &TestEnv::default()),
        Value::Duration(90 * NS_S)
    );
    // No `us`: `5u` then the identifier `s`.
    let e = parse_err("5us > 1u");
    assert_eq!(e.pos, 2);
    // No decimal durations: the number 1.5 then the identifier `m`.
    assert_eq!(parse_err("1.5m > 1m").pos, 3);
    assert_eq!(
        parse_err("5m + 1 > 1m").message,
        "mismatched type to binary operator. got duration + int. see bool(), int(), float(), string(), duration()"
    );
    assert!(parse_influx_duration("2562048h").is_err());
    assert_eq!(parse_influx_duration("-1h30m"), Ok(-(NS_H + 30 * NS_M)));
    assert_eq!(
        parse_influx_duration("5"),
        Err("invalid duration".to_string())
    );
    assert_eq!(format_influx_duration(1500), "1u");
}

#[test]
fn unary_operators_follow_kapacitor() {
    assert!(truth("-TRUE == FALSE"));
    assert!(truth("!FALSE AND !!TRUE"));
    assert!(truth("--3 == 3"));
    assert_eq!(
        parse_err("!5").message,
        "invalid unary operator ! for type int"
    );
    assert_eq!(
        parse_err("-'a' == 'a'").message,
        "invalid unary operator - for type string"
    );
    let e = env(&[("totalCount", 3.0)], &[("host", "a")]);
    assert!(holds(r#"-"totalCount" == -3.0"#, &e));
    let err = eval_err(r#"-"host" == 'a'"#, &e);
    assert_eq!(err.message(), "invalid unary operator - for type string");
}

#[test]
fn constant_type_errors_are_parse_errors() {
    assert_eq!(
        parse_err("TRUE + 1").message,
        "invalid math operator + for type boolean"
    );
    assert_eq!(
        parse_err(r#""a" > 1 AND 7"#).message,
        "mismatched type to binary operator. got boolean AND int. see bool(), int(), float(), string(), duration()"
    );
    assert_eq!(
        parse_err("'a' =~ 'a'").message,
        "mismatched type to binary operator. got string =~ string. see bool(), int(), float(), string(), duration()"
    );
    assert_eq!(
        parse_err("TRUE < FALSE").message,
        "invalid comparison operator < for type boolean"
    );
}

#[test]
fn type_errors_match_kapacitor_expr_test() {
    // Expected messages from tick/stateful/expr_test.go (v1.5.7).
    let see = "see bool(), int(), float(), string(), duration()";
    for (src, want) in [
        (
            "5m OR 10m",
            "invalid logical operator OR for type duration".to_string(),
        ),
        (
            "5 OR 5m",
            "invalid logical operator OR for type int".to_string(),
        ),
        (
            "5m == 5",
            format!("mismatched type to binary operator. got duration == int. {see}"),
        ),
        (
            "5m <= 5",
            format!("mismatched type to binary operator. got duration <= int. {see}"),
        ),
        (
            "5m % 2",
            "invalid math operator % for type duration".to_string(),
        ),
        (
            "5m * 10m",
            format!("mismatched type to binary operator. got duration * duration. {see}"),
        ),
        (
            "5m - 1.5",
            format!("mismatched type to binary operator. got duration - float. {see}"),
        ),
        (
            "2 / 5m",
            format!("mismatched type to binary operator. got int / duration. {see}"),
        ),
        (
            "2 % 5m",
            format!("mismatched type to binary operator. got int % duration. {see}"),
        ),
        (
            "1.5 % 5m",
            "invalid math operator % for type float".to_string(),
        ),
    ] {
        assert_eq!(parse_err(src).message, want, "{src}");
    }
    // The same combinations fail at evaluation when they come from data.
    let e = env(&[("totalCount", 1.5)], &[]);
    assert_eq!(
        eval_err(r#""totalCount" % 5m == 1m"#, &e).message(),
        "invalid math operator % for type float"
    );
}

#[test]
fn non_boolean_condition_is_an_eval_error() {
    let e = env(&[("totalCount", 3.0)], &[]);
    let err = eval_err(r#""totalCount" * 2.0"#, &e);
    assert_eq!(
        err.message(),
        "TypeGuard: expression returned unexpected type float, expected boolean"
    );
    assert_eq!(value(r#""totalCount" * 2.0"#, &e), Value::Float(6.0));
}

#[test]
fn references_are_listed_once_in_order() {
    let x = parse(r#""b" > 1 AND ("a" == 'x' OR strLength("b") > 2) AND isPresent("c")"#);
    assert_eq!(x.references().collect::<Vec<_>>(), ["b", "a", "c"]);
    assert_eq!(parse("1 > 0").references().count(), 0);
}

#[test]
fn tickscript_extras_are_accepted() {
    let e = env(&[("totalCount", 3.0)], &[]);
    assert!(holds(r#"lambda: "totalCount" > 1"#, &e));
    assert!(holds("\"totalCount\" > 1 // over one\n AND TRUE", &e));
    assert!(holds(r#"strContains('ab', 'a',)"#, &e));
    assert!(holds("\t\"totalCount\"\n>\n1\n", &e));
    // After a comment Kapacitor expects a value, not an operator.
    assert!(parse_err("\"totalCount\" // c\n > 1")
        .message
        .contains("'>'"));
}

#[test]
fn deep_nesting_is_refused_not_overflowing() {
    let deep = format!("{}1{} > 0", "(".repeat(10_000), ")".repeat(10_000));
    assert_eq!(parse_err(&deep).message, "expression nested too deeply");
    let long = format!("1{} > 0", " + 1".repeat(10_000));
    assert_eq!(parse_err(&long).message, "expression nested too deeply");
    let neg = format!("{}1 > 0", "-".repeat(10_000));
    assert_eq!(parse_err(&neg).message, "expression nested too deeply");
    assert!(truth(&format!("1{} == 101", " + 1".repeat(100))));
}

#[test]
fn expr_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Expr>();
    check::<ExprError>();
    check::<EvalError>();
    let x = parse(r#""a" =~ /x/"#);
    assert_eq!(x.to_string(), r#""a" =~ /x/"#);
    assert_eq!(x.source(), r#""a" =~ /x/"#);
}

#[test]
fn lower_bound_of_the_value_from_plain_comparisons() {
    let b = |src: &str| parse(src).lower_bound("count");
    assert_eq!(b(r#""count" > 500"#), Some(500.0));
    assert_eq!(b(r#""count" >= 17500.5"#), Some(17500.5));
    assert_eq!(b(r#"100 < "count""#), Some(100.0));
    assert_eq!(b(r#""count" > -3"#), Some(-3.0));
    assert_eq!(
        b(r#""count" > 500 AND "ip" =~ /^10\./"#),
        Some(500.0),
        "an AND holds only where its bounded side does"
    );
    assert_eq!(b(r#""count" > 500 AND "count" > 800"#), Some(800.0));
    assert_eq!(b(r#"("count" > 500) OR ("count" >= 200)"#), Some(200.0));
    // Each may hold for a small value, or says nothing of "count".
    assert_eq!(b(r#""count" > 500 OR "ip" == '10.0.0.1'"#), None);
    assert_eq!(b(r#""count" < 500"#), None);
    assert_eq!(b(r#""count" == 500"#), None);
    assert_eq!(b(r#""count" / 60 > 500"#), None);
    assert_eq!(b(r#""other" > 500"#), None);
    assert_eq!(b(r#"!("count" > 500)"#), None);
}

mod threshold {
    //! The comparisons of a reference with a number take a path around
    //! the interpreter: it must decide every key as the interpreter does.

    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (0u32..40_000).prop_map(f64::from),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
        ]
    }

    /// A number literal as the lambda language writes it, and its source.
    fn literal() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u64..40_000).prop_map(|i| i.to_string()),
            (0u64..40_000, 0u32..1000).prop_map(|(i, f)| format!("{i}.{f}")),
            Just("9223372036854775807".to_string()),
            Just("9007199254740993".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(crate::proptest_config::config(512))]

        #[test]
        fn a_threshold_decides_as_the_interpreter(
            op in prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]),
            lit in literal(),
            name_left in any::<bool>(),
            v in value(),
            // 0: a field; 1: a field and a tag of that name; 2: a tag; 3: neither.
            shape in 0u8..4,
        ) {
            let src = if name_left {
                format!("\"totalCount\" {op} {lit}")
            } else {
                format!("{lit} {op} \"totalCount\"")
            };
            let e = Expr::parse(&src).unwrap();
            let en = match shape {
                0 => env(&[("totalCount", v)], &[("ip", "10.0.0.1")]),
                1 => env(&[("totalCount", v)], &[("totalCount", "x")]),
                2 => env(&[], &[("totalCount", "x")]),
                _ => env(&[("other", v)], &[]),
            };
            let fast = e.eval_bool(&en).map_err(|e| e.to_string());
            let slow = e.eval_bool_interpreted(&en).map_err(|e| e.to_string());
            prop_assert_eq!(fast, slow, "{}", src);
        }
    }
}
