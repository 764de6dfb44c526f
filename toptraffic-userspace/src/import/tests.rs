use super::*;
use crate::config::{Aggregate, Config, SinkConfig};

/// The seed report's TICKscript, as the repository keeps it.
const SEED: &str = include_str!("../../config/kapacitor/top_combined.tick");

fn one(text: &str) -> Result<Imported, ImportError> {
    import(&[Script {
        file: "t.tick".into(),
        text: text.into(),
        rule_name: "t".into(),
    }])
}

fn refused(i: &Imported) -> Vec<String> {
    i.findings
        .iter()
        .filter(|f| f.severity == Severity::Refused)
        .map(|f| f.to_string())
        .collect()
}

#[test]
fn the_seed_converts_to_the_default_top_combined_rule_with_both_alert_blocks() {
    let out = import(&[Script {
        file: "top_combined.tick".into(),
        text: SEED.into(),
        rule_name: "top_combined".into(),
    }])
    .unwrap();
    assert!(out.complete(), "{:#?}", out.findings);
    let c = Config::parse(&out.toml, "imported").unwrap();
    let d = Config::embedded_default();
    assert_eq!(c.window, d.window);
    let (r, want) = (&c.rules[0], &d.rules[0]);
    assert_eq!(c.rules.len(), 1);
    assert_eq!(r.name, want.name);
    assert_eq!(r.measurement, want.measurement);
    assert_eq!(r.filters, want.filters);
    assert_eq!(r.group_by, want.group_by);
    assert_eq!(r.aggregate, want.aggregate);
    assert_eq!(
        r.aggregate,
        Aggregate::Sum {
            field: "count".into()
        }
    );
    assert_eq!(r.as_name, want.as_name);
    assert_eq!(r.max_keys, want.max_keys);
    assert_eq!(r.alerts.len(), 2);
    let default_block = &want.alerts[0];
    for (b, no_recoveries) in r.alerts.iter().zip([true, false]) {
        let src = |e: &Option<crate::alert::tick::Expr>| e.as_ref().map(|e| e.source().to_string());
        for slot in 0..3 {
            assert_eq!(src(&b.levels[slot]), src(&default_block.levels[slot]));
        }
        assert_eq!(
            b.levels[1].as_ref().unwrap().source(),
            "\"totalCount\" > 17500"
        );
        assert_eq!(
            b.levels[2].as_ref().unwrap().source(),
            "\"totalCount\" > 22500"
        );
        let mut want_settings = default_block.settings;
        want_settings.no_recoveries = no_recoveries;
        assert_eq!(b.settings, want_settings);
        assert_eq!(b.settings.flapping, Some((0.25, 0.5)));
        assert_eq!(b.settings.history, 21);
        assert_eq!(
            b.settings.state_changes_every,
            std::time::Duration::from_secs(300)
        );
        assert_eq!(b.message.source(), default_block.message.source());
        assert_eq!(b.id.source(), default_block.id.source());
        assert_eq!(b.details.source(), default_block.details.source());
    }
    // Kapacitor's node names: stream0, from1, barrier2, window3, sum4.
    assert_eq!(r.alerts[0].name, "alert5");
    assert_eq!(r.alerts[1].name, "alert6");
    match r.alerts[0].sinks.as_slice() {
        [SinkConfig::Slack(s)] => assert_eq!(s.channel, "#ops-noise"),
        s => panic!("{s:?}"),
    }
    match r.alerts[1].sinks.as_slice() {
        [SinkConfig::Log(l), SinkConfig::Exec(e)] => {
            assert_eq!(l.path, "/var/log/kapacitor/alerts.log");
            assert_eq!(e.command, ["/usr/bin/kapacitor_pubsub_stdin_invoker.sh"]);
        }
        s => panic!("{s:?}"),
    }
    // The barrier is dropped with its reason, where it was written; the
    // Slack URL is left for the user to set.
    let notes: Vec<String> = out.findings.iter().map(|f| f.to_string()).collect();
    assert!(
        notes.iter().any(|n| n.starts_with("top_combined.tick:6:1: note: barrier2: |barrier() dropped: toptraffic frees a key's state")),
        "{notes:#?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains(".slack(): the webhook URL")),
        "{notes:#?}"
    );
}

#[test]
fn what_has_no_equivalent_is_named_with_line_column_and_reason() {
    let script = "\
stream
    |from()
        .measurement('m')
        .groupBy('ip')
    |eval(lambda: \"count\" * 2)
        .as('double')
    |window()
        .period(1m)
        .every(5s)
    |sum('count')
var w = stream
    |from()
        .measurement('n')
        .groupBy('ip')
    |window()
        .period(1m)
        .every(5s)
        .align()
    |count('count')
        .as('c')
w
    |alert()
        .warn(lambda: \"c\" > 10)
        .topic('ops')
        .pagerDuty()
        .serviceKey('x')
        .log('/tmp/a.log')
w
    |mean('count')
";
    let out = one(script).unwrap();
    assert!(!out.complete());
    let r = refused(&out);
    assert_eq!(
        r,
        [
            "t.tick:5:5: not converted: eval2: |eval() has no equivalent: a rule counts lines (or sums a field) per group over a sliding window and alerts on that value (so is what follows it: window3, sum4)",
            "t.tick:24:9: not converted: alert8: alert topics have no equivalent: sinks are set per alert block",
            "t.tick:25:9: not converted: alert8: .pagerDuty() has no toptraffic sink: route through [rule.alert.alertmanager] (Alertmanager's receivers include PagerDuty, OpsGenie, VictorOps, Pushover, Telegram, email) or post to it with [[rule.alert.http]]",
            "t.tick:29:5: not converted: mean9: |mean() has no equivalent: a rule's value is the count of its lines or the sum of one field over the window (aggregate = \"count\" or \"sum\")",
        ],
        "{r:#?}"
    );
    // What did convert is a valid config: the count rule with its block
    // (the pagerDuty handler's own property went with it).
    let c = Config::parse(&out.toml, "imported").unwrap();
    assert_eq!(c.rules.len(), 1);
    assert_eq!(c.rules[0].measurement, "n");
    assert_eq!(c.rules[0].aggregate, Aggregate::Count);
    assert_eq!(c.rules[0].alerts[0].sinks.len(), 1);
}

#[test]
fn tag_equalities_become_where_and_other_conditions_are_refused() {
    let ok = one(
        "stream|from().measurement('combined').groupBy('ip').where(lambda: (\"role\" == 'ingress') AND 'eu' == \"region\")\n|window().period(1m).every(5s).align()|sum('count')",
    )
    .unwrap();
    assert!(ok.complete(), "{:#?}", ok.findings);
    let c = Config::parse(&ok.toml, "imported").unwrap();
    let mut f = c.rules[0].filters.clone();
    f.sort();
    assert_eq!(
        f,
        [
            ("region".to_string(), "eu".to_string()),
            ("role".to_string(), "ingress".to_string())
        ]
    );
    let no = one(
        "stream|from().measurement('combined').groupBy('ip').where(lambda: \"role\" == 'a' OR \"role\" == 'b')\n|window().period(1m).every(5s).align()|sum('count')",
    )
    .unwrap();
    assert_eq!(
        refused(&no),
        ["t.tick:1:52: not converted: from1: .where(lambda: \"role\" == 'a' OR \"role\" == 'b') has no equivalent: `where` keeps lines whose tags equal given strings (\"tag\" == 'value', joined by AND)"]
    );
}

#[test]
fn handlers_and_their_properties_become_sinks() {
    let out = one(
        "stream|from().measurement('m').groupBy('ip')|window().period(30s).every(10s).align()|sum('count').as('n')\n|alert().id('{{ .Group }}').crit(lambda: \"n\" > 5).stateChangesOnly().post('http://127.0.0.1:9/x').header('Authorization', 'Bearer t').slack().channel('#c').username('bot').exec('/bin/echo', 'a')",
    )
    .unwrap();
    assert!(out.complete(), "{:#?}", out.findings);
    let c = Config::parse(&out.toml, "imported").unwrap();
    assert_eq!(c.window.period, std::time::Duration::from_secs(30));
    let b = &c.rules[0].alerts[0];
    assert!(b.settings.state_changes_only);
    assert!(b.settings.state_changes_every.is_zero());
    assert_eq!(b.id.source(), "{{ .Group }}");
    let kinds: Vec<&str> = b.sinks.iter().map(|s| s.kind()).collect();
    assert_eq!(kinds, ["exec", "slack", "http"]);
    match &b.sinks[2] {
        SinkConfig::Http(h) => {
            assert_eq!(h.url, "http://127.0.0.1:9/x");
            assert_eq!(h.headers["Authorization"], "Bearer t");
        }
        s => panic!("{s:?}"),
    }
    match &b.sinks[1] {
        SinkConfig::Slack(s) => {
            assert_eq!((s.channel.as_str(), s.username.as_str()), ("#c", "bot"))
        }
        s => panic!("{s:?}"),
    }
}

#[test]
fn a_script_without_a_rule_or_with_bad_syntax_is_an_error() {
    match one("batch|query('SELECT 1')|alert().crit(lambda: TRUE)") {
        Err(ImportError::Nothing { findings }) => {
            assert!(
                findings[0]
                    .to_string()
                    .starts_with("t.tick:1:1: not converted: batch0: batch tasks"),
                "{findings:?}"
            )
        }
        r => panic!("{r:?}"),
    }
    match one("stream|from().measurement('m'") {
        Err(e @ ImportError::Syntax { .. }) => {
            assert!(e.to_string().starts_with("t.tick:1:"), "{e}")
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn several_scripts_make_several_rules_with_one_window() {
    let s = |name: &str, period: &str| {
        Script {
        file: format!("{name}.tick"),
        text: format!("stream|from().measurement('{name}').groupBy('ip')|window().period({period}).every(5s).align()|sum('count')"),
        rule_name: name.into(),
    }
    };
    let out = import(&[s("a", "1m"), s("b", "1m"), s("c", "2m")]).unwrap();
    let c = Config::parse(&out.toml, "imported").unwrap();
    let names: Vec<&str> = c.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(!out.complete());
    assert!(
        refused(&out)[0].contains(
            ": not converted: rule on measurement \"c\": its window (period 2m every 5s) differs"
        ),
        "{:?}",
        refused(&out)
    );
}
