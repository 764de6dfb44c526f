//! End-to-end tests: templates parsed and rendered on Kapacitor's alert
//! data, compared with what Go renders.
//!
//! Golden outputs in the tables below were produced by Go's own
//! text/template and html/template (with Kapacitor's `json` function)
//! on the same data; where Go 1.13, which built Kapacitor 1.5.7, differs
//! from later Go, the test says so.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use super::compile::Template;
use super::error::TemplateError;
use super::time::{duration_string, time_string};
use super::value::{AlertInfo, ServerInfo, Value};
use crate::alert::event::Level;

fn tags() -> BTreeMap<String, String> {
    [("ip", "192.0.2.2"), ("id", "900002")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn fields() -> BTreeMap<String, f64> {
    [
        ("totalCount", 18630.0),
        ("big", 2e6),
        ("small", 0.000012),
        ("frac", 1234.5678),
        ("neg", -3.5),
        ("million", 1234567.0),
        ("zero", 0.0),
        ("huge", 1e21),
        ("tiny", 1e-7),
        ("third", 1.0 / 3.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

const TIME: u64 = 1_795_564_660; // 2026-11-24T23:57:40Z
const ID: &str = "combined:id=900002,ip=192.0.2.2";
const MESSAGE: &str = "Observed <b>\"x\"</b> & 'y' +1";

/// Renders with Kapacitor's detailsInfo for the sample alert.
fn render_with(src: &str, html: bool, fields: &BTreeMap<String, f64>) -> Result<String, String> {
    render_at(src, html, fields, UNIX_EPOCH + Duration::from_secs(TIME))
}

/// The same, for an alert at `time`.
fn render_at(
    src: &str,
    html: bool,
    fields: &BTreeMap<String, f64>,
    time: std::time::SystemTime,
) -> Result<String, String> {
    let tags = tags();
    let server = ServerInfo {
        hostname: "host1".into(),
        cluster_id: "c-1".into(),
        server_id: "s-1".into(),
    };
    let info = AlertInfo {
        name: "combined",
        task_name: "top_combined",
        group: "id=900002,ip=192.0.2.2",
        tags: &tags,
        server: &server,
        fields,
        level: Level::Warning,
        time,
        duration: Duration::from_secs(90),
    };
    let t = if html {
        Template::parse_html(src)
    } else {
        Template::parse(src)
    };
    let t = t.map_err(|e| format!("parse: {e}"))?;
    t.render(&info.details_data(ID, MESSAGE))
        .map_err(|e| format!("render: {e}"))
}

fn render(src: &str) -> Result<String, String> {
    render_with(src, false, &fields())
}

fn render_html(src: &str) -> Result<String, String> {
    render_with(src, true, &fields())
}

fn check_table(table: &[(&str, &str)], html: bool) {
    for (src, want) in table {
        let got = render_with(src, html, &fields());
        assert_eq!(got.as_deref(), Ok(*want), "template {src:?}");
    }
}

fn parse_err(src: &str) -> TemplateError {
    Template::parse(src).expect_err(src)
}

// --- Kapacitor's defaults and the seed's templates (KAPACITOR.md) ---

#[test]
fn default_id_is_name_and_group() {
    assert_eq!(
        render("{{ .Name }}:{{ .Group }}").unwrap(),
        "combined:id=900002,ip=192.0.2.2"
    );
}

#[test]
fn default_message_is_id_and_level() {
    assert_eq!(
        render("{{ .ID }} is {{ .Level }}").unwrap(),
        "combined:id=900002,ip=192.0.2.2 is WARNING"
    );
}

#[test]
fn seed_message_renders_as_kapacitor_recorded_it() {
    let src = r#"Observed {{ index .Fields "totalCount" }} requests to Production Store ID {{ index .Tags "id" }} for IP {{ index .Tags "ip" }} within the last minute."#;
    let fields = [("totalCount".to_string(), 18630.0)].into_iter().collect();
    assert_eq!(
        render_with(src, false, &fields).unwrap(),
        "Observed 18630 requests to Production Store ID 900002 for IP 192.0.2.2 within the last minute."
    );
}

#[test]
fn default_details_is_html_escaped_json_of_details_info() {
    // Embedded structs' fields inline, map keys sorted, quotes as &#34;,
    // `+` as &#43;, and json.Encoder's trailing newline.
    let got = render_html("{{ json . }}").unwrap();
    assert!(got.starts_with(
        "{&#34;Name&#34;:&#34;combined&#34;,&#34;TaskName&#34;:&#34;top_combined&#34;,"
    ));
    assert!(got.ends_with("&#34;Message&#34;:&#34;Observed \\u003cb\\u003e\\&#34;x\\&#34;\\u003c/b\\u003e \\u0026 &#39;y&#39; &#43;1&#34;}\n"));
    check_table(JSON, true);
}

#[test]
fn each_template_gets_its_own_struct() {
    let (tags, fields) = (tags(), fields());
    let server = ServerInfo::default();
    let info = AlertInfo {
        name: "m",
        task_name: "t",
        group: "nil",
        tags: &tags,
        server: &server,
        fields: &fields,
        level: Level::Critical,
        time: UNIX_EPOCH,
        duration: Duration::ZERO,
    };
    let id = Template::parse("{{ .Group }}|{{ .ID }}").unwrap();
    assert!(id
        .render(&info.id_data())
        .unwrap_err()
        .msg
        .contains("can't evaluate field ID in type kapacitor.idInfo"));
    let msg = Template::parse("{{ .ID }} {{ .Level }} {{ .Name }}").unwrap();
    assert_eq!(msg.render(&info.message_data("x")).unwrap(), "x CRITICAL m");
    let details = Template::parse("{{ .Message }} {{ .ID }} {{ .TaskName }}").unwrap();
    assert_eq!(
        details.render(&info.details_data("x", "msg")).unwrap(),
        "msg x t"
    );
}

// --- Values and formatting ---

#[test]
fn fields_maps_and_structs_print_as_fmt_does() {
    check_table(FIELDS_AND_VALUES, false);
}

#[test]
fn floats_print_like_percent_v_with_exponent_from_1e21_no_from_1e6() {
    // fmt's %v is %g with the shortest digits, which switches to %e when
    // the exponent is < -4 or >= 6 (strconv/ftoa.go): 999999 but 1e+06.
    check_table(FLOATS, false);
    assert_eq!(render("{{ 18630.0 }}").unwrap(), "18630");
}

#[test]
fn printf_verbs_flags_and_widths_match_go() {
    check_table(PRINTF, false);
}

#[test]
fn printf_mistakes_are_written_into_the_output_as_go_does() {
    check_table(PRINTF_ERRORS, false);
}

#[test]
fn print_and_text_escapers_match_go() {
    check_table(PRINT_AND_ESCAPERS, false);
}

#[test]
fn js_escapes_as_go_1_13() {
    // Go 1.14 also escaped & and = (CL 207637), Go 1.15 moved to \u003C.
    assert_eq!(
        render(r#"{{ js "it's <b>\"q\"\\ \n&=" }}"#).unwrap(),
        r#"it\'s \x3Cb\x3E\"q\"\\ \u000A&="#
    );
}

#[test]
fn time_and_duration_print_and_have_their_methods() {
    check_table(TIME_METHODS, false);
    for (d, s) in [
        (Duration::ZERO, "0s"),
        (Duration::from_nanos(1), "1ns"),
        (Duration::from_nanos(1_500), "1.5µs"),
        (Duration::from_micros(1_200), "1.2ms"),
        (Duration::from_millis(1_500), "1.5s"),
        (Duration::from_secs(10), "10s"),
        (Duration::from_secs(90), "1m30s"),
        (Duration::from_secs(7200), "2h0m0s"),
        (Duration::from_nanos(3_723_000_000_001), "1h2m3.000000001s"),
    ] {
        assert_eq!(duration_string(d), s);
    }
    let t = UNIX_EPOCH + Duration::new(TIME, 500_000_000);
    assert_eq!(time_string(t), "2026-11-24 23:57:40.5 +0000 UTC");
    assert_eq!(crate::goformat::rfc3339_nano(t), "2026-11-24T23:57:40.5Z");
}

/// fmt's verbs on a time.Time (print.go): handleMethods serves `%v %s %x
/// %X %q` with String(); other verbs print the struct's unexported fields
/// {wall ext loc} through reflection, `%#v` in Go syntax (Go 1.13's Time
/// has no GoString). For Kapacitor's UTC point times wall is the
/// nanosecond, ext the seconds since year 1 (1795564660 + 62135596800)
/// and loc a nil pointer.
#[test]
fn printf_verbs_on_a_time_follow_go() {
    let t = UNIX_EPOCH + Duration::new(TIME, 500_000_000);
    let hex = "323032362d31312d32342032333a35373a34302e35202b3030303020555443";
    for (verb, want) in [
        ("%v", "2026-11-24 23:57:40.5 +0000 UTC".to_string()),
        ("%s", "2026-11-24 23:57:40.5 +0000 UTC".to_string()),
        ("%q", r#""2026-11-24 23:57:40.5 +0000 UTC""#.to_string()),
        ("%x", hex.to_string()),
        ("%X", hex.to_uppercase()),
        ("%d", "{500000000 63931161460 0}".to_string()),
        ("%+d", "{+500000000 +63931161460 +0}".to_string()),
        ("%o", "{3563262400 734246015564 0}".to_string()),
        (
            "%#v",
            "time.Time{wall:0x1dcd6500, ext:63931161460, loc:(*time.Location)(nil)}".to_string(),
        ),
        (
            "%e",
            "{%!e(uint64=500000000) %!e(int64=63931161460) %!e(*time.Location=<nil>)}".to_string(),
        ),
        (
            "%c",
            "{\u{FFFD} \u{FFFD} %!c(*time.Location=<nil>)}".to_string(),
        ),
    ] {
        let src = format!("{{{{ printf {verb:?} .Time }}}}");
        let got = render_at(&src, false, &fields(), t);
        assert_eq!(got.as_deref(), Ok(want.as_str()), "{verb}");
    }
}

#[test]
fn a_time_before_1970_renders_as_go_renders_it() {
    let t = UNIX_EPOCH - Duration::from_millis(1_500);
    // json is the details template's (html/template): its quotes escaped.
    let json = render_at("{{ json .Time }}", true, &fields(), t);
    // json.Encoder ends with a newline.
    assert_eq!(json.as_deref(), Ok("&#34;1969-12-31T23:59:58.5Z&#34;\n"));
    let s = render_at("{{ .Time }} {{ .Time.Year }}", false, &fields(), t);
    assert_eq!(s.as_deref(), Ok("1969-12-31 23:59:58.5 +0000 UTC 1969"));
    // Time.MarshalJSON's range: a year it cannot write is an error, which
    // Kapacitor's json ignores, writing nothing.
    let bc = UNIX_EPOCH - Duration::from_secs(62_135_596_800 + 731 * 86_400);
    let json = render_at("{{ json .Time }}", true, &fields(), bc);
    assert_eq!(json.as_deref(), Ok(""));
}

// --- Templates: actions, control flow, variables ---

#[test]
fn control_flow_pipelines_and_variables_match_go() {
    check_table(CONTROL, false);
}

#[test]
fn comparing_an_int_literal_with_a_float_field_is_an_error() {
    // A plain number literal is an int; Kapacitor's field values are float64.
    let e = render(r#"{{ if gt (index .Fields "totalCount") 20000 }}big{{ end }}"#).unwrap_err();
    assert!(
        e.ends_with("error calling gt: incompatible types for comparison"),
        "{e}"
    );
}

#[test]
fn comparing_a_missing_value_is_an_error_in_go_1_13() {
    // Later Go compares nil without error; Go 1.13's eq rejects it.
    let e = render(r#"{{ eq .Tags.missing "x" }}"#).unwrap_err();
    assert!(
        e.ends_with("error calling eq: invalid type for comparison"),
        "{e}"
    );
}

#[test]
fn arguments_after_a_parenthesized_command_are_ignored_as_in_go_1_13() {
    // golang/go#35974: Go 1.2 to 1.13 printed the length here.
    assert_eq!(render("{{ (len .Name) gt 0 }}").unwrap(), "8");
}

#[test]
fn missing_struct_field_is_a_render_error_with_its_place() {
    let e = Template::parse("ok {{ .Foo }}")
        .unwrap()
        .render(&Value::Struct("kapacitor.idInfo".into(), vec![]));
    let e = e.unwrap_err();
    assert_eq!((e.line, e.col, e.node.as_str()), (1, 7, ".Foo"));
    assert_eq!(e.msg, "can't evaluate field Foo in type kapacitor.idInfo");
    assert_eq!(
        e.to_string(),
        "1:7: executing at <.Foo>: can't evaluate field Foo in type kapacitor.idInfo"
    );
}

#[test]
fn other_render_errors_match_go() {
    for (src, want) in [
        ("{{ .Name.Foo }}", "can't evaluate field Foo in type string"),
        ("{{ .Tags.id 1 }}", "id is not a method but has arguments"),
        ("{{ nil }}", "nil is not a command"),
        (
            r#"{{ "x" 1 }}"#,
            r#"can't give argument to non-function "x""#,
        ),
        (
            "{{ index .Tags 1 }}",
            "error calling index: value has type int; should be string",
        ),
        (
            "{{ index nil 1 }}",
            "error calling index: index of untyped nil",
        ),
        ("{{ len 3 }}", "error calling len: len of type int"),
        (
            "{{ range .Level }}x{{ end }}",
            "range can't iterate over WARNING",
        ),
        (r#"{{ template "nope" }}"#, r#"template "nope" not defined"#),
        (
            "{{ .Time.Format }}",
            "wrong number of args for Format: want 1 got 0",
        ),
        (
            "{{ printf }}",
            "wrong number of args for printf: want at least 1 got 0",
        ),
        ("{{ printf 1 }}", "expected string; found 1"),
    ] {
        let e = render(src).unwrap_err();
        assert!(e.ends_with(want), "{src}: {e}");
    }
}

// --- Parse errors ---

#[test]
fn parse_errors_say_what_and_where() {
    for (src, pos, msg) in [
        ("{{ .Foo ", 8, "unclosed action"),
        ("{{ end }}", 3, "unexpected {{end}}"),
        ("{{ foo }}", 3, r#"function "foo" not defined"#),
        ("{{ if .X }}", 11, "unexpected EOF"),
        ("x{{ else }}", 4, "unexpected {{else}}"),
        ("{{ $x }}", 3, r#"undefined variable "$x""#),
        (
            "{{ .X | 3 }}",
            8,
            "non executable command in pipeline stage 2",
        ),
        ("{{ ( .X }}", 8, "unclosed left paren"),
        (r#"{{ "abc }}"#, 3, "unterminated quoted string"),
        ("{{ 1x }}", 3, r#"bad number syntax: "1x""#),
        ("{{/* x ", 2, "unclosed comment"),
        ("{{/* x */ y }}", 2, "comment ends before closing delimiter"),
        ("{{ }}", 3, "missing value for command"),
        ("{{ .X\n}}", 5, "unclosed action"),
        (
            "{{ range $a, $b, $c := . }}{{ end }}",
            15,
            "too many declarations in range",
        ),
        (
            r#"{{ define "a" }}x{{ end }}{{ define "a" }}y{{ end }}"#,
            36,
            r#"template: multiple definition of template "a""#,
        ),
    ] {
        let e = parse_err(src);
        assert_eq!((e.pos, e.msg.as_str()), (pos, msg), "{src:?}");
    }
    let e = parse_err("line one\n  {{ .X }} {{ bad }}");
    assert_eq!((e.line, e.col), (2, 15));
    assert_eq!(e.to_string(), r#"2:15: function "bad" not defined"#);
}

#[test]
fn json_is_kapacitors_details_function_only() {
    // alert.go registers `json` on the details (html) template alone.
    assert_eq!(
        parse_err("{{ json . }}").msg,
        r#"function "json" not defined"#
    );
    assert!(Template::parse_html("{{ json . }}").is_ok());
}

// --- html/template ---

#[test]
fn html_templates_escape_by_context_as_go_does() {
    check_table(HTML, true);
}

#[test]
fn html_templates_refuse_what_they_cannot_escape_like_go() {
    for (src, msg) in [
        (
            "{{ .X | html | printf }}",
            r#"predefined escaper "html" disallowed in template"#,
        ),
        (
            "<p title={{ .X | html }}>",
            r#"predefined escaper "html" disallowed in template"#,
        ),
        (
            "{{ if .X }}<a href=\"{{ end }}",
            "{{if}} branches end in different contexts",
        ),
        (
            "<a href=\"x",
            "ends in a non-text context: {stateURL delimDoubleQuote urlPartPreQuery",
        ),
        ("<a b=x\"y>", r#""\"" in unquoted attr: "x\"y""#),
        (
            "<a href=\"{{ if .N }}?{{ end }}{{ .N }}\">",
            "appears in an ambiguous context within a URL",
        ),
    ] {
        let e = Template::parse_html(src).expect_err(src);
        assert!(e.msg.contains(msg), "{src}: {e}");
    }
}

/// Actions in <style> and style attributes, escaped as css.go does: a
/// value goes through cssValueFilter (decoded, or ZgotmplZ if it could
/// break out of the declaration or run script), a string through the URL
/// filter and cssEscaper, `url(...)` through the URL escapers; comments
/// in <style> text go.
#[test]
fn html_actions_in_css_escape_as_go() {
    for (src, want) in [
        (
            "<style>p { color: {{ .Level }} }</style>",
            "<style>p { color: WARNING }</style>",
        ),
        (
            r#"<p style="color: {{ .Level }}">x</p>"#,
            r#"<p style="color: WARNING">x</p>"#,
        ),
        (
            "<style>p { color: {{ .Message }} }</style>",
            "<style>p { color: ZgotmplZ }</style>",
        ),
        (
            r#"<p style="width: {{ "\\31 0px" }}; x: {{ "eXpression" }}">x</p>"#,
            r#"<p style="width: 10px; x: ZgotmplZ">x</p>"#,
        ),
        (
            r#"<style>p:before { content: "{{ .Message }}" }</style>"#,
            r#"<style>p:before { content: "Observed \3c b\3e\22x\22\3c\2f b\3e  \26  \27y\27  \2b 1" }</style>"#,
        ),
        (
            r#"<style>a { background: url({{ .Name }}) } b { background: url("/a?n={{ .Name }}") }</style>"#,
            r#"<style>a { background: url(combined) } b { background: url("/a?n=combined") }</style>"#,
        ),
        (
            "<style>/* c */p { color: {{ .Level }} } // {{ .Name }}\np {}</style>",
            "<style> p { color: WARNING } \np {}</style>",
        ),
    ] {
        assert_eq!(render_html(src).as_deref(), Ok(want), "{src}");
    }
    let src = r#"<style>p { content: "a\{{ .Name }}" }</style>"#;
    let e = Template::parse_html(src).expect_err(src);
    assert!(
        e.msg
            .contains(r#"unfinished escape sequence in CSS string: "a\\""#),
        "{e}"
    );
    // Without actions or comments inside, Go leaves such text alone.
    assert_eq!(
        render_html("<style>p { color: red }</style>{{ .Level }}").unwrap(),
        "<style>p { color: red }</style>WARNING"
    );
}

/// Actions in <script> and on* attributes, escaped as html/template's
/// js.go does: a value becomes JSON padded with spaces where it could run
/// into a name (jsValEscaper), inside quotes the JS string escapes with
/// HTML specials in hex (jsStrEscaper), inside a regexp literal its
/// specials too (jsRegexpEscaper); in an attribute the HTML escaper
/// follows. transition.go's tJS decides between regexp and division.
#[test]
fn html_actions_in_javascript_escape_as_go() {
    let msg = r"Observed \x3cb\x3e\x22x\x22\x3c\/b\x3e \x26 \x27y\x27 \x2b1";
    let cases: Vec<(&str, String)> = vec![
        (
            "<script>var x = {{ .Name }};</script>",
            r#"<script>var x = "combined";</script>"#.into(),
        ),
        (
            "<script>var n = {{ .Fields.totalCount }}/2;</script>",
            "<script>var n =  18630 /2;</script>".into(),
        ),
        (
            "<script>var s = '{{ .Message }}';</script>",
            format!("<script>var s = '{msg}';</script>"),
        ),
        (
            r#"<script>var s = "{{ .Tags.ip }}", re = /^{{ .Tags.ip }}$/;</script>"#,
            r#"<script>var s = "192.0.2.2", re = /^192\.0\.2\.2$/;</script>"#.into(),
        ),
        (
            "<script>var t = {{ .Time }}, d = {{ .Duration }};</script>",
            r#"<script>var t = "2026-11-24T23:57:40Z", d = "1m30s";</script>"#.into(),
        ),
        (
            "<script>var m = {{ .Message }};</script>",
            r#"<script>var m = "Observed \u003cb\u003e\"x\"\u003c/b\u003e \u0026 'y' +1";</script>"#
                .into(),
        ),
        (
            "<script>var a = {{ if .Name }}{{ .Name }}{{ else }}x{{ end }} / 2;</script>",
            r#"<script>var a = "combined" / 2;</script>"#.into(),
        ),
        (
            r#"<a onclick="f({{ .Name }})">x</a>"#,
            r#"<a onclick="f(&#34;combined&#34;)">x</a>"#.into(),
        ),
        (
            r#"<a onclick='alert("{{ .Message }}")'>x</a>"#,
            format!(r#"<a onclick='alert("{msg}")'>x</a>"#),
        ),
        (
            r#"<a onclick="alert(&quot;{{ .Level }}&quot;)">x</a>"#,
            r#"<a onclick="alert(&quot;WARNING&quot;)">x</a>"#.into(),
        ),
        // Comments in <script> text go (escapeText): a block comment
        // becomes a space, or a line break if it spans lines; an action
        // inside one prints nothing (commentEscaper).
        (
            "<script>var a = 1; /* note */ var b = {{ .Name }};</script>",
            r#"<script>var a = 1;   var b = "combined";</script>"#.into(),
        ),
        (
            "<script>a = 1;/* two\nlines */b = 2;</script>",
            "<script>a = 1;\nb = 2;</script>".into(),
        ),
        (
            "<script>var a = 1; // {{ .Name }}\nvar b = 2;</script>",
            "<script>var a = 1; \nvar b = 2;</script>".into(),
        ),
        (
            "<script>/* {{ .Name }} */x</script>",
            "<script>  x</script>".into(),
        ),
        // In an attribute the comment stays; the action in it is empty.
        (
            r#"<a onclick="f() /* {{ .Name }} */">x</a>"#,
            r#"<a onclick="f() /*  */">x</a>"#.into(),
        ),
    ];
    for (src, want) in cases {
        assert_eq!(render_html(src).as_deref(), Ok(want.as_str()), "{src}");
    }
    for (src, msg) in [
        (
            "<script>{{ if .Name }}a = 1{{ else }}b = {{ end }}/x/</script>",
            r#"'/' could start a division or regexp: "/x/""#,
        ),
        (
            r#"<script>var s = "a\{{ .Name }}";</script>"#,
            r#"unfinished escape sequence in JS string: "a\\""#,
        ),
        (
            "<script>var r = /[{{ .Name }}]/;</script>",
            r#"unfinished JS regexp charset: "["#,
        ),
    ] {
        let e = Template::parse_html(src).expect_err(src);
        assert!(e.msg.contains(msg), "{src}: {e}");
    }
}

// --- Robustness ---

#[test]
fn arbitrary_input_never_panics() {
    let pieces = [
        "{{", "}}", "{{-", "-}}", " ", ".", "$", "$x", ":=", "=", "|", "(", ")", "\"", "`", "'",
        "if", "else", "end", "range", "with", "define", "template", "block", "nil", "1", "-1.5e3",
        ".A", ".Tags", "index", "printf", "\"%v\"", "/*", "*/", "\n", "<", ">", "a", "=\"",
        "<script>", "<!--", "-->", "json", "é",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        let mut src = String::new();
        for _ in 0..(seed % 12) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            src.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        for html in [false, true] {
            let _ = render_with(&src, html, &fields());
        }
    }
}

#[test]
fn recursion_is_bounded() {
    let e = render(r#"{{ define "r" }}{{ template "r" }}{{ end }}{{ template "r" }}"#).unwrap_err();
    assert!(e.ends_with("exceeded maximum template depth (200)"), "{e}");
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(201), ")".repeat(201));
    assert!(parse_err(&deep).msg.contains("nested too deeply"));
    let deep = format!("{}x{}", "{{ if 1 }}".repeat(200), "{{ end }}".repeat(200));
    assert!(parse_err(&deep).msg.contains("nested too deeply"));
    let ok = format!("{}x{}", "{{ if 1 }}".repeat(50), "{{ end }}".repeat(50));
    assert_eq!(render(&ok).unwrap(), "x");
}

// --- Golden tables, generated by Go from the same templates and data ---

const FIELDS_AND_VALUES: &[(&str, &str)] = &[
    (
        r#"{{ .Name }}|{{ .TaskName }}|{{ .Group }}|{{ .ID }}|{{ .Level }}|{{ .ServerInfo.Hostname }}"#,
        r#"combined|top_combined|id=900002,ip=192.0.2.2|combined:id=900002,ip=192.0.2.2|WARNING|host1"#,
    ),
    (
        r#"{{ .Time }}|{{ .Duration }}|{{ .Tags }}|{{ .Fields }}|{{ .ServerInfo }}"#,
        r#"2026-11-24 23:57:40 +0000 UTC|1m30s|map[id:900002 ip:192.0.2.2]|map[big:2e+06 frac:1234.5678 huge:1e+21 million:1.234567e+06 neg:-3.5 small:1.2e-05 third:0.3333333333333333 tiny:1e-07 totalCount:18630 zero:0]|{host1 c-1 s-1}"#,
    ),
    (
        r#"{{ .Tags.missing }}|{{ index .Tags "missing" }}|{{ index .Fields "missing" }}|{{ .Fields.missing }}|{{ print .Tags.missing }}|{{ print (index .Fields "x") }}"#,
        r#"<no value>||<no value>|<no value>|<nil>|<nil>"#,
    ),
    (
        r#"{{ .Tags.missing.deeper }}|{{ $.Tags.id }}|{{ (.Tags).ip }}|{{ len .Tags }} {{ len "héllo" }}"#,
        r#"<no value>|900002|192.0.2.2|2 6"#,
    ),
    (
        r#"{{ printf "%+v" .ServerInfo }}"#,
        r#"{Hostname:host1 ClusterID:c-1 ServerID:s-1}"#,
    ),
    (
        r#"{{ . }}"#,
        r#"{{{combined top_combined id=900002,ip=192.0.2.2 map[id:900002 ip:192.0.2.2] {host1 c-1 s-1}} combined:id=900002,ip=192.0.2.2 map[big:2e+06 frac:1234.5678 huge:1e+21 million:1.234567e+06 neg:-3.5 small:1.2e-05 third:0.3333333333333333 tiny:1e-07 totalCount:18630 zero:0] WARNING 2026-11-24 23:57:40 +0000 UTC 1m30s} Observed <b>"x"</b> & 'y' +1}"#,
    ),
];

const FLOATS: &[(&str, &str)] = &[
    (
        r#"{{ .Fields.big }} {{ .Fields.small }} {{ .Fields.frac }} {{ .Fields.neg }} {{ .Fields.million }} {{ .Fields.zero }} {{ .Fields.huge }} {{ .Fields.tiny }} {{ .Fields.third }}"#,
        r#"2e+06 1.2e-05 1234.5678 -3.5 1.234567e+06 0 1e+21 1e-07 0.3333333333333333"#,
    ),
    (
        r#"{{ 999999.0 }} {{ 1000000.0 }} {{ 123456.0 }} {{ 1234567.0 }} {{ 0.0001 }} {{ 0.00001 }} {{ 1e20 }} {{ 1e21 }} {{ -0.0 }} {{ 771937908402.03125 }}"#,
        r#"999999 1e+06 123456 1.234567e+06 0.0001 1e-05 1e+20 1e+21 -0 7.719379084020312e+11"#,
    ),
    (
        r#"{{ 3 }} {{ -5 }} {{ 0x1F }} {{ 017 }} {{ 1_000 }} {{ 'a' }} {{ 1e3 }} {{ 2.50 }}"#,
        r#"3 -5 31 15 1000 97 1000 2.5"#,
    ),
];

const PRINTF: &[(&str, &str)] = &[
    (
        r#"{{ printf "%d" (index .Fields "totalCount") }}"#,
        r#"%!d(float64=18630)"#,
    ),
    (
        r#"{{ printf "%.2f|%.0f|%v|%s" (index .Fields "totalCount") 2.5 .Fields.frac .Fields.frac }}"#,
        r#"18630.00|2|1234.5678|%!s(float64=1234.5678)"#,
    ),
    (
        r#"{{ printf "%v %s %q %x %X %t %%" "a" "b" "c\n" "hi" "hi" true }}"#,
        r#"a b "c\n" 6869 6869 true %"#,
    ),
    (
        r#"{{ printf "%5d|%-5d|%05d|%+d|% d|%x|%X|%o|%b|%#x|%#o|%c|%q|%U|%#U" 42 42 42 42 42 255 255 8 5 255 8 65 65 65 65 }}"#,
        r#"   42|42   |00042|+42| 42|ff|FF|10|101|0xff|010|A|'A'|U+0041|U+0041 'A'"#,
    ),
    (
        r#"{{ printf "%e %E %g %G %f %.3e %.3g %10.2f %-10.2f| %+.1f %08.3f" 1234.5678 1234.5678 1234.5678 0.000012345 1234.5678 1234.5678 1234.5678 3.14159 3.14159 2.5 -3.14159 }}"#,
        r#"1.234568e+03 1.234568E+03 1234.5678 1.2345E-05 1234.567800 1.235e+03 1.23e+03       3.14 3.14      | +2.5 -003.142"#,
    ),
    (
        r#"{{ printf "%x|%X|%.1x|%b|%10x|%-10x|%+x" 3.5 3.5 3.5 1.0 1.0 1.0 1.0 }}"#,
        r#"0x1.cp+01|0X1.CP+01|0x1.cp+01|4503599627370496p-52|   0x1p+00|0x1p+00   |+0x1p+00"#,
    ),
    (
        r#"{{ printf "%.0f %.0f %.0f %.1f %.2f %.1f" 0.5 1.5 2.5 0.25 1.005 0.05 }}"#,
        r#"0 2 2 0.2 1.00 0.1"#,
    ),
    (
        r#"{{ printf "%e|%g|%.0e|%#g|%#.3g|%#v" 0.0 0.0 5.5 1.0 2.0 1.5 }}"#,
        r#"0.000000e+00|0|6e+00|1.00000|2.00|1.5"#,
    ),
    (
        r#"{{ printf "%6.2s|%-6s|%06s|%5.1s|%.0s" "abcdef" "ab" "ab" "日本語" "abc" }}"#,
        r#"    ab|ab    |0000ab|    日|"#,
    ),
    (
        r#"{{ printf "%q|%+q|%#q|%#q|%x" "é\x01" "é" "a`b" "ab" "日" }}"#,
        r#""é\x01"|"\u00e9"|"a`b"|`ab`|e697a5"#,
    ),
    (
        r#"{{ printf "%08d|%-08d|%+08d|% 08d|%.3d|%8.3d|%x|%X|%#b" -42 42 42 42 7 7 -255 -255 5 }}"#,
        r#"-0000042|42      |+0000042| 0000042|007|     007|-ff|-FF|0b101"#,
    ),
    (
        r#"{{ printf "%[2]d %[1]d|%*d|%.*f" 1 2 5 42 2 3.14159 }}"#,
        r#"2 1| 5|%!f(int=000000000000000000000000000000000000000002)"#,
    ),
    (
        r#"{{ printf "%v|%d|%s" .Tags .Tags .Fields }}"#,
        r#"map[id:900002 ip:192.0.2.2]|map[%!d(string=id):%!d(string=900002) %!d(string=ip):%!d(string=192.0.2.2)]|map[big:%!s(float64=2e+06) frac:%!s(float64=1234.5678) huge:%!s(float64=1e+21) million:%!s(float64=1.234567e+06) neg:%!s(float64=-3.5) small:%!s(float64=1.2e-05) third:%!s(float64=0.3333333333333333) tiny:%!s(float64=1e-07) totalCount:%!s(float64=18630) zero:%!s(float64=0)]"#,
    ),
    (
        r#"{{ printf "%v|%s|%d|%q" .Duration .Duration .Duration .Duration }}"#,
        r#"1m30s|1m30s|90000000000|"1m30s""#,
    ),
    (
        r#"{{ printf "%T %T %T %T %T %T" 1 1.5 "s" .Tags .Fields .Duration }}"#,
        r#"int float64 string map[string]string map[string]interface {} time.Duration"#,
    ),
];

const PRINTF_ERRORS: &[(&str, &str)] = &[
    (r#"{{ printf "%d %d" 1 }}"#, r#"1 %!d(MISSING)"#),
    (r#"{{ printf "%d" 1 2 }}"#, r#"1%!(EXTRA int=2)"#),
    (r#"{{ printf "%!" }}"#, r#"%!!(MISSING)"#),
    (r#"{{ printf "%z" 3 }}"#, r#"%!z(int=3)"#),
    (r#"{{ printf "%s" 3.5 }}"#, r#"%!s(float64=3.5)"#),
    (r#"{{ printf "%d" "x" }}"#, r#"%!d(string=x)"#),
    (
        r#"{{ printf "%f" .Duration }}"#,
        r#"%!f(time.Duration=90000000000)"#,
    ),
    (r#"{{ printf "%[5]d" 1 2 }}"#, r#"%!d(BADINDEX)"#),
    (r#"{{ printf "%d" nil }}"#, r#"%!d(<nil>)"#),
    (r#"{{ printf "%" }}"#, r#"%!(NOVERB)"#),
    (r#"{{ printf "%5t|%v" true nil }}"#, r#" true|<nil>"#),
];

const PRINT_AND_ESCAPERS: &[(&str, &str)] = &[
    (
        r#"{{ print 1 2 "a" "b" 3 nil }}|{{ println 1 "a" 2 }}|{{ print }}"#,
        "1 2ab3 <nil>|1 a 2\n|",
    ),
    (
        r#"{{ html "<a href=\"x\">&'" }}|{{ urlquery "a b&c=d/é" }}|{{ html .Tags.missing }}|{{ urlquery 1 2 }}"#,
        r#"&lt;a href=&#34;x&#34;&gt;&amp;&#39;|a+b%26c%3Dd%2F%C3%A9|&lt;no value&gt;|1+2"#,
    ),
];

const CONTROL: &[(&str, &str)] = &[
    (
        r#"{{ if eq .Level "WARNING" }}warn{{ else if eq .Level "CRITICAL" }}crit{{ else }}other{{ end }}"#,
        r#"warn"#,
    ),
    (
        r#"{{ if gt (index .Fields "totalCount") 20000.0 }}big{{ else }}small{{ end }}"#,
        r#"small"#,
    ),
    (
        r#"{{ if eq 1 2 3 1 }}yes{{ end }}{{ if ne "a" "b" }}ne{{ end }}{{ if lt 1 2 }}lt{{ end }}{{ if le 2 2 }}le{{ end }}{{ if ge "b" "a" }}ge{{ end }}{{ if eq .Duration 90000000000 }}dur{{ end }}"#,
        r#"yesneltlegedur"#,
    ),
    (
        r#"{{ and 1 0 2 }}|{{ or 0 "" "x" }}|{{ and 1 2 }}|{{ or 0 "" }}|{{ not 0 }}|{{ not .Tags }}"#,
        r#"0|x|2||true|false"#,
    ),
    (
        r#"{{ range $k, $v := .Tags }}{{ $k }}={{ $v }};{{ end }}|{{ range .Fields }}{{ . }},{{ end }}|{{ range .Tags.missing }}x{{ else }}empty{{ end }}"#,
        r#"id=900002;ip=192.0.2.2;|2e+06,1234.5678,1e+21,1.234567e+06,-3.5,1.2e-05,0.3333333333333333,1e-07,18630,0,|empty"#,
    ),
    (
        r#"{{ with .Tags.id }}id={{ . }}{{ end }}{{ with .Tags.nope }}x{{ else }}no{{ end }}"#,
        r#"id=900002no"#,
    ),
    (
        r#"{{ $x := 5 }}{{ $x }}{{ $x = 6 }}{{ $x }}{{ range .Tags }}{{ $x = . }}{{ end }}{{ $x }}{{ with .Name }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}"#,
        r#"56192.0.2.22192.0.2.2"#,
    ),
    (
        "  {{- .Name -}}  \n {{- \"x\" }} {{/* comment */}} {{- /* c2 */ -}}  y{{-3}}",
        r#"combinedx y-3"#,
    ),
    (
        r#"{{ "a" | printf "%s-%s" "b" }}|{{ .Name | len }}|{{ .Fields.totalCount | printf "%.1f" }}|{{ (index .Fields "totalCount") }}"#,
        r#"b-a|8|18630.0|18630"#,
    ),
    (
        r#"{{ `raw\n` }}|{{ "esc\t\u00e9\x41" }}|{{ true }}"#,
        "raw\\n|esc\téA|true",
    ),
    (
        r#"{{ define "t" }}[{{ . }}]{{ end }}{{ template "t" .Name }}{{ template "t" }}{{ block "b" .Level }}<{{ . }}>{{ end }}"#,
        r#"[combined][<no value>]<WARNING>"#,
    ),
    (
        r#"{{ define "r" }}{{ if gt (len .) 0 }}{{ slice . 1 }}|{{ template "r" (slice . 1) }}{{ end }}{{ end }}{{ template "r" "abcd" }}"#,
        r#"bcd|cd|d||"#,
    ),
];

const TIME_METHODS: &[(&str, &str)] = &[
    (
        r#"{{ .Time.Unix }}|{{ .Time.Format "2006-01-02T15:04:05Z07:00" }}|{{ .Time.Format "Jan _2 3:04PM MST Mon Monday January 06 .000 .999 -0700" }}|{{ .Time.Year }}|{{ .Time.Month }}|{{ .Time.Weekday }}|{{ .Time.YearDay }}"#,
        r#"1795564660|2026-11-24T23:57:40Z|Nov 24 11:57PM UTC Tue Tuesday November 26 .000  +0000|2026|November|Tuesday|328"#,
    ),
    (
        r#"{{ .Duration.Seconds }}|{{ .Duration.Minutes }}|{{ .Duration.Hours }}|{{ .Duration.Nanoseconds }}|{{ .Duration.Round 60000000000 }}|{{ .Duration.Truncate 60000000000 }}"#,
        r#"90|1.5|0.025|90000000000|2m0s|1m0s"#,
    ),
];

const HTML: &[(&str, &str)] = &[
    (
        r#"<h1>{{ .ID }}</h1><b>{{ .Message }}</b>"#,
        r#"<h1>combined:id=900002,ip=192.0.2.2</h1><b>Observed &lt;b&gt;&#34;x&#34;&lt;/b&gt; &amp; &#39;y&#39; &#43;1</b>"#,
    ),
    (
        r#"<a href="http://grafana/d?var-ip={{ index .Tags "ip" }}&x={{ .Message }}">{{ .Level }}</a>"#,
        r#"<a href="http://grafana/d?var-ip=192.0.2.2&x=Observed%20%3cb%3e%22x%22%3c%2fb%3e%20%26%20%27y%27%20%2b1">WARNING</a>"#,
    ),
    (
        r#"<a href="{{ .Message }}">x</a><a href="{{ "javascript:alert(1)" }}">"#,
        r##"<a href="Observed%20%3cb%3e%22x%22%3c/b%3e%20&amp;%20%27y%27%20&#43;1">x</a><a href="#ZgotmplZ">"##,
    ),
    (
        r#"<a href="/p/{{ .Message }}?q={{ .Message }}">"#,
        r#"<a href="/p/Observed%20%3cb%3e%22x%22%3c/b%3e%20&amp;%20%27y%27%20&#43;1?q=Observed%20%3cb%3e%22x%22%3c%2fb%3e%20%26%20%27y%27%20%2b1">"#,
    ),
    (
        r#"<p title={{ .Message }}>x</p><p title='{{ .Message }}'>"#,
        r#"<p title=Observed&#32;&lt;b&gt;&#34;x&#34;&lt;/b&gt;&#32;&amp;&#32;&#39;y&#39;&#32;&#43;1>x</p><p title='Observed &lt;b&gt;&#34;x&#34;&lt;/b&gt; &amp; &#39;y&#39; &#43;1'>"#,
    ),
    (
        r#"<input {{ .Name }}><input {{ "onclick" }}="x">"#,
        r#"<input combined><input ZgotmplZ="x">"#,
    ),
    (
        r#"<!-- hidden {{ .Name }} -->visible {{ .Level }}"#,
        r#"visible WARNING"#,
    ),
    (
        r#"1 < 2 and <3 <!DOCTYPE html>"#,
        r#"1 &lt; 2 and &lt;3 <!DOCTYPE html>"#,
    ),
    (
        r#"<title>{{ .Message }}</title><textarea>{{ .Message }}</textarea>"#,
        r#"<title>Observed &lt;b&gt;&#34;x&#34;&lt;/b&gt; &amp; &#39;y&#39; &#43;1</title><textarea>Observed &lt;b&gt;&#34;x&#34;&lt;/b&gt; &amp; &#39;y&#39; &#43;1</textarea>"#,
    ),
    (
        r#"{{ .Message | html }}|{{ html .Message .Level }}|{{ print .Tags.nope 1 }}|{{ html .Tags.nope }}"#,
        r#"Observed &lt;b&gt;&#34;x&#34;&lt;/b&gt; &amp; &#39;y&#39; +1|Observed &lt;b&gt;&#34;x&#34;&lt;/b&gt; &amp; &#39;y&#39; +1WARNING|&lt;nil&gt; 1|&lt;nil&gt;"#,
    ),
    (
        r#"<a href="{{ .Message | urlquery }}">"#,
        r#"<a href="Observed&#43;%3Cb%3E%22x%22%3C%2Fb%3E&#43;%26&#43;%27y%27&#43;%2B1">"#,
    ),
    (
        r#"{{ .Fields.totalCount }} {{ .Time }} {{ .Duration }} {{ .Fields }} {{ .Tags.missing }}|{{ index .Fields "missing" }}"#,
        r#"18630 2026-11-24 23:57:40 &#43;0000 UTC 1m30s map[big:2e&#43;06 frac:1234.5678 huge:1e&#43;21 million:1.234567e&#43;06 neg:-3.5 small:1.2e-05 third:0.3333333333333333 tiny:1e-07 totalCount:18630 zero:0] |"#,
    ),
    (
        r#"{{ if .Name }}<b>{{ else }}<i>{{ end }}x{{ range .Tags }}<li>{{ . }}</li>{{ end }}"#,
        r#"<b>x<li>900002</li><li>192.0.2.2</li>"#,
    ),
    (
        r#"<img srcset="{{ .Name }} 2x, {{ "javascript:x" }} 1x">"#,
        r#"<img srcset="combined 2x, #ZgotmplZ 1x">"#,
    ),
    (
        r#"<a onclick="f()">{{ .Name }}</a><p style="color: red">{{ .Level }}</p>"#,
        r#"<a onclick="f()">combined</a><p style="color: red">WARNING</p>"#,
    ),
    (
        r#"{{ define "row" }}<td>{{ . }}</td>{{ end }}<tr>{{ template "row" .Name }}</tr><a title="{{ template "row" .Level }}">"#,
        r#"<tr><td>combined</td></tr><a title="<td>WARNING</td>">"#,
    ),
    (
        r#"<a title={{ if .Name }}{{ .Name }}{{ end }}>"#,
        r#"<a title=combined>"#,
    ),
];

const JSON: &[(&str, &str)] = &[
    (r#"{{ json . }}"#, "{&#34;Name&#34;:&#34;combined&#34;,&#34;TaskName&#34;:&#34;top_combined&#34;,&#34;Group&#34;:&#34;id=900002,ip=192.0.2.2&#34;,&#34;Tags&#34;:{&#34;id&#34;:&#34;900002&#34;,&#34;ip&#34;:&#34;192.0.2.2&#34;},&#34;ServerInfo&#34;:{&#34;Hostname&#34;:&#34;host1&#34;,&#34;ClusterID&#34;:&#34;c-1&#34;,&#34;ServerID&#34;:&#34;s-1&#34;},&#34;ID&#34;:&#34;combined:id=900002,ip=192.0.2.2&#34;,&#34;Fields&#34;:{&#34;big&#34;:2000000,&#34;frac&#34;:1234.5678,&#34;huge&#34;:1e&#43;21,&#34;million&#34;:1234567,&#34;neg&#34;:-3.5,&#34;small&#34;:0.000012,&#34;third&#34;:0.3333333333333333,&#34;tiny&#34;:1e-7,&#34;totalCount&#34;:18630,&#34;zero&#34;:0},&#34;Level&#34;:&#34;WARNING&#34;,&#34;Time&#34;:&#34;2026-11-24T23:57:40Z&#34;,&#34;Duration&#34;:90000000000,&#34;Message&#34;:&#34;Observed \\u003cb\\u003e\\&#34;x\\&#34;\\u003c/b\\u003e \\u0026 &#39;y&#39; &#43;1&#34;}\n"),
    (r#"{{ json .Fields }}{{ json .Tags }}{{ json .Time }}{{ json .Duration }}{{ json .Message }}{{ json 1e21 }}{{ json 1e-7 }}{{ json 0.000001 }}{{ json 123456789.0 }}{{ json nil }}{{ json .Fields.missing }}"#, "{&#34;big&#34;:2000000,&#34;frac&#34;:1234.5678,&#34;huge&#34;:1e&#43;21,&#34;million&#34;:1234567,&#34;neg&#34;:-3.5,&#34;small&#34;:0.000012,&#34;third&#34;:0.3333333333333333,&#34;tiny&#34;:1e-7,&#34;totalCount&#34;:18630,&#34;zero&#34;:0}\n{&#34;id&#34;:&#34;900002&#34;,&#34;ip&#34;:&#34;192.0.2.2&#34;}\n&#34;2026-11-24T23:57:40Z&#34;\n90000000000\n&#34;Observed \\u003cb\\u003e\\&#34;x\\&#34;\\u003c/b\\u003e \\u0026 &#39;y&#39; &#43;1&#34;\n1e&#43;21\n1e-7\n0.000001\n123456789\nnull\nnull\n"),
];
