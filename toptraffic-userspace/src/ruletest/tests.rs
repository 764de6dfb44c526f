use std::path::Path;

use super::*;

fn config_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
}

#[test]
fn the_embedded_default_rules_pass_their_tests() {
    let r = run_file(&config_dir().join("default.test.toml")).unwrap();
    assert!(r.cases.len() >= 3);
    for c in &r.cases {
        assert!(
            c.diff.is_none(),
            "test {:?}:\n{}",
            c.name,
            c.diff.as_deref().unwrap_or("")
        );
    }
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("toptraffic-ruletest-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_wrong_expectation_fails_with_a_diff_in_time_order() {
    // An inline config: a count over 10 s closed every 5 s, warn above 3.
    let p = write(
        "wrong.test.toml",
        r#"
start = "2026-01-01T00:00:00Z"
[config.window]
period = "10s"
every = "5s"
[[config.rule]]
name = "r"
measurement = "m"
group_by = ["k"]
[[config.rule.alert]]
warn = '"count" > 3'
message = '{{ index .Tags "k" }} at {{ index .Fields "count" }}'

[[test]]
name = "wrong level"
[[test.input]]
tags = { k = "a" }
values = "2 2"
[[test.expect]]
at = "10s"
level = "CRITICAL"
tags = { k = "a" }
value = 4
"#,
    );
    let r = run_file(&p).unwrap();
    assert_eq!(r.cases.len(), 1);
    assert_eq!(r.cases[0].events, 1);
    assert_eq!(
        r.cases[0].diff.as_deref(),
        Some(
            "  (- expected, not sent; + sent, not expected)\n\
             \x20 -     10s CRITICAL  */* {k=a} 4\n\
             \x20 +     10s WARNING   r/#1 {k=a} 4\n\
             \x20         message: a at 4\n"
        )
    );
}

#[test]
fn inputs_that_cannot_be_are_refused_naming_the_test() {
    let p = write(
        "bad.test.toml",
        "[[test]]\nname = \"t\"\n[[test.input]]\nrule = \"nope\"\nvalues = \"1\"\n",
    );
    assert_eq!(
        run_file(&p).unwrap_err(),
        format!(
            "{}: test \"t\": no rule \"nope\" in the config",
            p.display()
        )
    );
}

#[test]
fn a_yaml_file_holds_the_same_tests() {
    let p = write(
        "spike.test.yaml",
        r#"
start: "2026-01-01T00:00:00Z"
config:
  window: { period: "10s", every: "5s" }
  rule:
    - name: r
      measurement: m
      group_by: [k]
      alert:
        - warn: '"count" > 3'
test:
  - name: a spike warns
    input:
      - tags: { k: a }
        values: "2 2"
    expect:
      - at: 10s
        level: WARNING
        tags: { k: a }
        value: 4
"#,
    );
    let r = run_file(&p).unwrap();
    assert_eq!(r.cases[0].events, 1);
    assert!(r.cases[0].diff.is_none(), "{:?}", r.cases[0].diff);
}
