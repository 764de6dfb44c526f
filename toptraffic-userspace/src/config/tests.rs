//! Validation as a user meets it: each error names the line and the field.

use std::time::Duration;

use super::raw::RawAlertBlock;
use super::*;

fn err(text: &str) -> String {
    Config::parse(text, "t.toml").unwrap_err().to_string()
}

const RULE: &str = "[[rule]]\nname = \"r\"\nmeasurement = \"m\"\ngroup_by = [\"ip\"]\n";

#[test]
fn embedded_default_runs_the_seed_tasks() {
    let c = Config::embedded_default();
    let names: Vec<_> = c.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["top_combined", "top_ips", "top_stores"]);
    let combined = &c.rules[0];
    assert_eq!(combined.measurement, "combined");
    assert_eq!(combined.group_by, ["ip", "id"]);
    assert_eq!(
        combined.aggregate,
        Aggregate::Sum {
            field: "count".into()
        }
    );
    assert_eq!(combined.as_name, "totalCount");
    assert_eq!(c.rules[1].group_by, ["ip"]);
    assert_eq!(c.rules[2].group_by, ["id"]);
    assert_eq!(c.window.period, Duration::from_secs(60));
    assert_eq!(c.window.every, Duration::from_secs(5));
    assert_eq!(c.window.intervals(), 12);
    assert_eq!(c.ingest.listen.to_string(), "127.0.0.1:9100");
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:9101");
    assert_eq!(c.ingest.mode, Mode::Auto);
    for r in &c.rules {
        assert!(!r.alerts.is_empty(), "{} has an alert block", r.name);
    }
}

#[test]
fn example_config_is_valid() {
    let text = include_str!("../../config/example.toml");
    let c = Config::parse(text, "example.toml").unwrap();
    assert!(!c.rules.is_empty());
}

#[test]
fn unknown_key_names_line_and_field() {
    let e = err("[window]\nperiod = \"1m\"\nevry = \"5s\"\n");
    assert!(e.starts_with("t.toml:3: "), "{e}");
    assert!(e.contains("evry"), "{e}");
}

#[test]
fn bad_duration_names_the_field() {
    let e = err(&format!("[window]\nperiod = \"1 fortnight\"\n{RULE}"));
    assert!(
        e.starts_with("t.toml:2: window.period: bad duration"),
        "{e}"
    );
}

#[test]
fn period_must_be_a_multiple_of_every() {
    let e = err(&format!(
        "[window]\nperiod = \"1m\"\nevery = \"7s\"\n{RULE}"
    ));
    assert!(
        e.starts_with("t.toml:3: window.every = \"7s\" does not divide"),
        "{e}"
    );
}

#[test]
fn too_many_intervals_or_threads_are_refused_at_their_line() {
    let e = err(&format!(
        "[window]\nperiod = \"1m\"\nevery = \"1ms\"\n{RULE}"
    ));
    assert!(
        e.starts_with("t.toml:3: window.period / window.every = 60000 intervals; at most 10000"),
        "{e}"
    );
    let e = err(&format!("[ingest]\nthreads = 100000\n{RULE}"));
    assert!(
        e.starts_with(
            "t.toml:2: ingest.threads = 100000 is out of range; accepted: 0 (one per CPU) to 1024"
        ),
        "{e}"
    );
    let c = Config::parse(&format!("[ingest]\nthreads = 1024\n{RULE}"), "t").unwrap();
    assert_eq!(c.ingest.threads, 1024);
}

#[test]
fn empty_group_by_is_refused() {
    let e = err("[[rule]]\nname = \"r\"\nmeasurement = \"m\"\ngroup_by = []\n");
    assert!(
        e.starts_with("t.toml:4: rule \"r\": group_by is empty"),
        "{e}"
    );
}

#[test]
fn duplicate_rule_names_are_refused() {
    let e = err(&format!("{RULE}\n{RULE}"));
    assert!(e.starts_with("t.toml:7: duplicate rule name \"r\""), "{e}");
}

#[test]
fn duplicate_alert_block_names_are_refused() {
    let block = |name: &str| format!("[[rule.alert]]\n{name}warn = '\"count\" > 10'\n");
    let e = err(&format!(
        "{RULE}{}{}",
        block("name = \"dup\"\n"),
        block("name = \"dup\"\n")
    ));
    assert!(
        e.starts_with("t.toml:9: rule \"r\": duplicate alert block name \"dup\""),
        "{e}"
    );
    // An unnamed block is named by its position: "#1" given to the second
    // block is taken already.
    let e = err(&format!("{RULE}{}{}", block(""), block("name = \"#1\"\n")));
    assert!(e.contains("duplicate alert block name \"#1\""), "{e}");
    let c = Config::parse(
        &format!("{RULE}{}{}", block("name = \"a\"\n"), block("")),
        "t",
    )
    .unwrap();
    assert_eq!(c.rules[0].alerts[1].name, "#2");
}

#[test]
fn sum_needs_a_field_and_count_takes_none() {
    let e = err(&format!("{RULE}aggregate = \"sum\"\n"));
    assert!(e.contains("needs field"), "{e}");
    let e = err(&format!("{RULE}aggregate = \"count\"\nfield = \"x\"\n"));
    assert!(e.starts_with("t.toml:6: "), "{e}");
    let e = err(&format!("{RULE}aggregate = \"avg\"\n"));
    assert!(e.contains("accepted: \"count\", \"sum\""), "{e}");
    let c = Config::parse(&format!("{RULE}field = \"count\"\n"), "t").unwrap();
    assert_eq!(c.rules[0].as_name, "sum");
    let c = Config::parse(RULE, "t").unwrap();
    assert_eq!(c.rules[0].aggregate, Aggregate::Count);
    assert_eq!(c.rules[0].as_name, "count");
}

#[test]
fn syntax_errors_have_a_line() {
    let e = err("[window]\nperiod = \"1m\n");
    assert!(e.starts_with("t.toml:2: "), "{e}");
}

#[test]
fn sizes_and_addresses() {
    let c = Config::parse(
        &format!("[ingest]\nrecv_buffer = \"8MiB\"\nlisten = \"0.0.0.0:1\"\n{RULE}"),
        "t",
    )
    .unwrap();
    assert_eq!(c.ingest.recv_buffer, 8 << 20);
    let e = err(&format!("[ingest]\nlisten = \"localhost\"\n{RULE}"));
    assert!(e.starts_with("t.toml:2: ingest.listen"), "{e}");
    assert_eq!(parse_bytes("65536").unwrap(), 65536);
    assert!(parse_bytes("12XB").is_err());
}

#[test]
fn alert_block_shape_is_checked() {
    let e = err(&format!(
        "{RULE}[[rule.alert]]\nwarn = '\"x\" > 1'\nflapping = [0.5, 0.25]\n"
    ));
    assert!(
        e.starts_with("t.toml:7: rule \"r\" alert \"#1\": flapping"),
        "{e}"
    );
    let e = err(&format!(
        "{RULE}[[rule.alert]]\nwarn = '\"x\" > 1'\nstate_changes_only = \"soon\"\n"
    ));
    assert!(e.contains("state_changes_only: bad duration"), "{e}");
    let e = err(&format!(
        "{RULE}[[rule.alert]]\nwarn = '\"x\" > 1'\n[rule.alert.slak]\n"
    ));
    assert!(e.contains("slak"), "{e}");
}

#[test]
fn block_lists_its_sinks_and_their_options() {
    let block: RawAlertBlock = toml::from_str(
        r#"
        warn = '"x" > 1'
        [log]
        path = "-"
        [[http]]
        url = "http://a"
        options = { retries = 7 }
        [[http]]
        url = "http://b"
        "#,
    )
    .unwrap();
    let sinks = block.sinks();
    let kinds: Vec<_> = sinks.iter().map(SinkConfig::kind).collect();
    assert_eq!(kinds, ["log", "http", "http"]);
    assert_eq!(sinks[0].options(), SinkOptions::default());
    assert_eq!(sinks[1].options().retries, 7);
}

/// What no event could get through is refused at `check`, at the block's
/// line (its name's, or the rule's for a block without one).
#[test]
fn sinks_that_could_never_deliver_are_refused() {
    let named = |sink: &str| {
        format!("{RULE}[[rule.alert]]\nname = \"b\"\nwarn = '\"count\" > 10'\n{sink}\n")
    };
    for (sink, want) in [
        (
            "http = [{ url = \"not a url\" }]",
            "http.url \"not a url\": relative URL without a base",
        ),
        (
            "alertmanager = { url = \"localhost:9093\" }",
            "the scheme must be http or https",
        ),
        (
            "slack = { url = \"ftp://hooks.example/x\" }",
            "slack.url \"ftp://hooks.example/x\": the scheme must be http or https, not \"ftp\"",
        ),
        (
            "log = { path = \"-\", options = { queue = 0 } }",
            "log.options: queue, concurrency and timeout must be above zero",
        ),
        (
            "http = [{ url = \"http://a\", options = { concurrency = 0 } }]",
            "http.options: queue",
        ),
        ("exec = { command = [] }", "exec.command needs a program"),
    ] {
        let e = err(&named(sink));
        assert!(
            e.starts_with("t.toml:6: rule \"r\" alert \"b\": "),
            "{sink}: {e}"
        );
        assert!(e.contains(want), "{sink}: {e}");
    }
    let e = err(&format!(
        "{RULE}[[rule.alert]]\nwarn = '\"count\" > 10'\nhttp = [{{ url = \"x\" }}]\n"
    ));
    assert!(
        e.starts_with("t.toml:2: rule \"r\" alert \"#1\": http.url"),
        "{e}"
    );
    Config::parse(
        &named("http = [{ url = \"https://a.example:8443/p?q=1\" }]"),
        "t",
    )
    .unwrap();
}

/// A template that parses but fails on every alert is refused at `check`,
/// where it fails; one that renders is kept.
#[test]
fn templates_that_fail_on_an_alert_are_refused() {
    let block =
        |t: &str| format!("{RULE}[[rule.alert]]\nname = \"b\"\nwarn = '\"count\" > 10'\n{t}\n");
    let e = err(&block("message = '{{ .ID }}: {{ .Foo }}'"));
    assert!(
        e.starts_with("t.toml:8: rule \"r\" alert \"b\": message: fails on an alert: "),
        "{e}"
    );
    assert!(e.contains("can't evaluate field Foo"), "{e}");
    assert!(e.contains("(at character 15)"), "{e}");
    let e = err(&block(
        "details = '{{ index .Tags \"ip\" | len | printf \"%d\" | call }}'",
    ));
    assert!(e.contains("details: fails on an alert"), "{e}");
    for ok in [
        "message = '{{ .TaskName }} {{ index .Tags \"ip\" }} {{ index .Fields \"count\" }} {{ .Level }}'",
        "id = '{{ .Group }}'",
        "details = '{{ index .Tags \"absent\" }}'",
    ] {
        Config::parse(&block(ok), "t").unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn max_key_bytes_has_a_default_and_a_floor_the_kernel_needs() {
    let c = Config::parse(RULE, "t").unwrap();
    assert_eq!(c.rules[0].max_key_bytes, 128);
    let c = Config::parse(&format!("{RULE}max_key_bytes = 64\n"), "t").unwrap();
    assert_eq!(c.rules[0].max_key_bytes, 64);
    // Below what the kernel counts whole.
    let e = err(&format!("{RULE}max_key_bytes = 63\n"));
    assert!(
        e.starts_with(
            "t.toml:5: rule \"r\": max_key_bytes = 63 is out of range; accepted: 64 to 65507"
        ),
        "{e}"
    );
    // Seven tags need 7 x 21 bytes: the default grows, a smaller value is refused.
    let tags = "group_by = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\"]\n";
    let seven = format!("[[rule]]\nname = \"r\"\nmeasurement = \"m\"\n{tags}");
    assert_eq!(
        Config::parse(&seven, "t").unwrap().rules[0].max_key_bytes,
        147
    );
    let e = err(&format!("{seven}max_key_bytes = 128\n"));
    assert!(e.contains("accepted: 147 to 65507"), "{e}");
}

#[test]
fn overflow_is_on_with_a_threshold_from_the_lowest_alert_comparison() {
    let c = Config::embedded_default();
    for r in &c.rules {
        let o = r.overflow.as_ref().expect("on by default");
        assert_eq!((o.error, o.confidence), (0.0005, 0.99));
        assert_eq!(o.promote_at, Some(17500.0), "{}: warn's 17500", r.name);
        assert_eq!(
            o.promote_from,
            PromoteFrom::Alert {
                block: "#1".into(),
                level: "warn"
            }
        );
    }
    // The lowest over every level and block.
    let c = Config::parse(
        &format!(
            r#"{RULE}[[rule.alert]]
crit = '"count" > 900'
warn = '"count" > 700'
[[rule.alert]]
name = "b"
info = "\"count\" >= 500 AND \"ip\" != 'x'"
"#
        ),
        "t",
    )
    .unwrap();
    let o = c.rules[0].overflow.as_ref().unwrap();
    assert_eq!(o.promote_at, Some(500.0));
    assert_eq!(
        o.to_string(),
        "overflow sketch error 0.0005 at confidence 0.99, promote_at 500 (from alert \"b\" info)"
    );
    // A rule without alert blocks promotes past its smallest exact key.
    let c = Config::parse(RULE, "t").unwrap();
    let o = c.rules[0].overflow.as_ref().unwrap();
    assert_eq!(
        (o.promote_at, &o.promote_from),
        (None, &PromoteFrom::SmallestExact)
    );
}

#[test]
fn overflow_fields_are_checked_and_a_threshold_that_cannot_be_derived_is_an_error() {
    let c = Config::parse(
        &format!("{RULE}[rule.overflow]\nerror = 0.01\nconfidence = 0.9\npromote_at = 42\n"),
        "t",
    )
    .unwrap();
    let o = c.rules[0].overflow.as_ref().unwrap();
    assert_eq!(
        (o.error, o.confidence, o.promote_at),
        (0.01, 0.9, Some(42.0))
    );
    assert_eq!(o.promote_from, PromoteFrom::Configured);
    let c = Config::parse(&format!("{RULE}[rule.overflow]\nenabled = false\n"), "t").unwrap();
    assert!(c.rules[0].overflow.is_none());

    let e = err(&format!("{RULE}[rule.overflow]\nerror = 1.5\n"));
    assert!(
        e.starts_with("t.toml:6: rule \"r\": overflow.error = 1.5 is out of range"),
        "{e}"
    );
    let e = err(&format!("{RULE}[rule.overflow]\nconfidence = 0.1\n"));
    assert!(
        e.starts_with("t.toml:6: rule \"r\": overflow.confidence"),
        "{e}"
    );
    let e = err(&format!("{RULE}[rule.overflow]\npromote_at = -1.0\n"));
    assert!(
        e.starts_with("t.toml:6: rule \"r\": overflow.promote_at"),
        "{e}"
    );
    let e = err(&format!("{RULE}[rule.overflow]\npromot_at = 1\n"));
    assert!(
        e.starts_with("t.toml:6: ") && e.contains("promot_at"),
        "{e}"
    );

    // No lambda compares the value with a number: the error says which
    // lambdas were looked at and what to write.
    let alert = r#"[[rule.alert]]
warn = "\"ip\" == '10.0.0.1'"
crit = '"count" < 5'
"#;
    let e = err(&format!("{RULE}{alert}"));
    assert!(
        e.starts_with("t.toml:2: rule \"r\": overflow needs a promotion threshold"),
        "{e}"
    );
    assert!(
        e.contains("alert \"#1\" warn = '\"ip\" == '10.0.0.1''")
            && e.contains("alert \"#1\" crit = '\"count\" < 5'")
            && e.contains("set [rule.overflow] promote_at = N, or enabled = false"),
        "{e}"
    );
    Config::parse(
        &format!("{RULE}{alert}[rule.overflow]\npromote_at = 10\n"),
        "t",
    )
    .unwrap();
    Config::parse(
        &format!("{RULE}{alert}[rule.overflow]\nenabled = false\n"),
        "t",
    )
    .unwrap();
}
