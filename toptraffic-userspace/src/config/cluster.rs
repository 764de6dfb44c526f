//! `[cluster]` and each rule's `scope`.

use std::time::Duration;

use toml::Spanned;

use super::raw::{RawCluster, RedisUrls};
use super::schema::{Cluster, Scope};
use super::source::Source;
use super::units::parse_duration;
use super::ConfigError;

/// Longest exchange with Redis, as a share of `every` when unset: the
/// exchange must end well within an interval.
const TIMEOUT_SHARE: u32 = 5;

/// The largest exact cluster top: each node posts its own top this many
/// keys every interval.
const MAX_TOP: usize = 1_000;

pub(super) fn validate_cluster(
    raw: Option<Spanned<RawCluster>>,
    every: Duration,
    src: &Source<'_>,
) -> Result<Option<Cluster>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let urls_span = raw.redis.span();
    let redis = match raw.redis.into_inner() {
        RedisUrls::One(u) => vec![u],
        RedisUrls::Seeds(v) => v,
    };
    if redis.is_empty() {
        return Err(src.at(urls_span, "cluster.redis: no URL"));
    }
    for u in &redis {
        let ok = ["redis://", "rediss://"]
            .iter()
            .any(|s| u.starts_with(s) && u.len() > s.len());
        if !ok {
            return Err(src.at(
                urls_span.clone(),
                format!("cluster.redis: {u:?} is not a redis:// or rediss:// URL"),
            ));
        }
        if let Err(e) = redis::Client::open(u.as_str()) {
            return Err(src.at(urls_span.clone(), format!("cluster.redis: {u:?}: {e}")));
        }
    }
    let node = match raw.node {
        Some(n) => {
            let name = n.get_ref().clone();
            if name.is_empty() || name.len() > 253 || name.chars().any(|c| c.is_control()) {
                return Err(src.at(
                    n.span(),
                    format!("cluster.node {name:?}: 1 to 253 printable characters"),
                ));
            }
            name
        }
        None => hostname().ok_or_else(|| {
            src.at(
                span.clone(),
                "cluster.node is unset and the host name cannot be read: set it",
            )
        })?,
    };
    let timeout = match raw.timeout {
        Some(t) => {
            let d = parse_duration(t.get_ref())
                .map_err(|e| src.at(t.span(), format!("cluster.timeout: {e}")))?;
            if d.is_zero() || d >= every {
                return Err(src.at(
                    t.span(),
                    format!(
                        "cluster.timeout = {:?} must be above zero and under window.every ({})",
                        t.get_ref(),
                        humantime::format_duration(every)
                    ),
                ));
            }
            d
        }
        None => every / TIMEOUT_SHARE,
    };
    let key_prefix = match raw.key_prefix {
        Some(p) => {
            let v = p.get_ref().clone();
            if v.is_empty() || v.contains(['{', '}']) || v.chars().any(|c| c.is_whitespace()) {
                return Err(src.at(
                    p.span(),
                    format!("cluster.key_prefix {v:?}: not empty, no braces or spaces"),
                ));
            }
            v
        }
        None => "toptraffic".into(),
    };
    let top = match raw.top {
        Some(t) => match usize::try_from(*t.get_ref()) {
            Ok(n) if n <= MAX_TOP => n,
            _ => {
                return Err(src.at(
                    t.span(),
                    format!("cluster.top = {}: 0 to {MAX_TOP}", t.get_ref()),
                ))
            }
        },
        None => 0,
    };
    Ok(Some(Cluster {
        redis,
        node,
        timeout,
        key_prefix,
        top,
    }))
}

/// A rule's `scope`: `cluster` by default when there is a `[cluster]`.
pub(super) fn scope(
    raw: Option<&Spanned<String>>,
    cluster: bool,
    src: &Source<'_>,
    ctx: &dyn Fn(String) -> String,
) -> Result<Scope, ConfigError> {
    match raw.map(|s| (s.get_ref().as_str(), s.span())) {
        None if cluster => Ok(Scope::Cluster),
        None | Some(("node", _)) => Ok(Scope::Node),
        Some(("cluster", _)) if cluster => Ok(Scope::Cluster),
        Some(("cluster", span)) => Err(src.at(
            span,
            ctx("scope = \"cluster\" needs a [cluster] section".into()),
        )),
        Some((other, span)) => Err(src.at(
            span,
            ctx(format!("scope = {other:?}: \"cluster\" or \"node\"")),
        )),
    }
}

/// The host name, as the kernel has it (a pod's name in Kubernetes).
fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Scope};
    use std::time::Duration;

    const RULES: &str = "[[rule]]\nname = \"a\"\nmeasurement = \"m\"\ngroup_by = [\"ip\"]\n\
                         [[rule]]\nname = \"b\"\nmeasurement = \"m\"\ngroup_by = [\"id\"]\nscope = \"node\"\n";

    fn parse(cluster: &str) -> Result<Config, String> {
        Config::parse(&format!("{cluster}\n{RULES}"), "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn without_a_cluster_every_rule_is_the_nodes_own() {
        let c = parse("").unwrap();
        assert!(c.cluster.is_none());
        assert!(c.rules.iter().all(|r| r.scope == Scope::Node));
        let e = Config::parse(
            "[[rule]]\nname = \"a\"\nmeasurement = \"m\"\ngroup_by = [\"ip\"]\nscope = \"cluster\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("t.toml:5") && e.contains("needs a [cluster]"),
            "{e}"
        );
    }

    #[test]
    fn cluster_top_is_0_to_1000() {
        let c = parse("[cluster]\nredis = \"redis://h:1\"\nnode = \"n\"\ntop = 10\n").unwrap();
        assert_eq!(c.cluster.unwrap().top, 10);
        let e = parse("[cluster]\nredis = \"redis://h:1\"\nnode = \"n\"\ntop = -1\n").unwrap_err();
        assert!(
            e.contains("t.toml:4") && e.contains("cluster.top = -1: 0 to 1000"),
            "{e}"
        );
    }

    #[test]
    fn a_cluster_takes_urls_a_node_and_a_timeout_under_every() {
        let c = parse("[cluster]\nredis = \"redis://10.0.0.1:6379\"\nnode = \"n1\"\n").unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(cl.redis, ["redis://10.0.0.1:6379"]);
        assert_eq!(
            (cl.node.as_str(), cl.timeout),
            ("n1", Duration::from_secs(1))
        );
        assert_eq!(cl.key_prefix, "toptraffic");
        assert_eq!(cl.top, 0);
        assert_eq!(c.rules[0].scope, Scope::Cluster);
        assert_eq!(c.rules[1].scope, Scope::Node);
        let seeds = parse(
            "[cluster]\nredis = [\"redis://a:7000\", \"rediss://u:p@b:7001\"]\ntimeout = \"200ms\"\n",
        )
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(seeds.redis.len(), 2);
        assert_eq!(seeds.timeout, Duration::from_millis(200));
        assert!(!seeds.node.is_empty(), "the host name by default");
    }

    #[test]
    fn bad_cluster_settings_name_their_line_and_field() {
        for (text, line, want) in [
            (
                "[cluster]\nredis = \"http://x\"\n",
                2,
                "not a redis:// or rediss:// URL",
            ),
            ("[cluster]\nredis = []\n", 2, "no URL"),
            (
                "[cluster]\nredis = \"redis://x\"\ntimeout = \"5s\"\n",
                3,
                "under window.every",
            ),
            (
                "[cluster]\nredis = \"redis://x\"\nkey_prefix = \"a{b}\"\n",
                3,
                "no braces",
            ),
            (
                "[cluster]\nredis = \"redis://x\"\nnode = \"\"\n",
                3,
                "cluster.node",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.contains(&format!("t.toml:{line}")) && e.contains(want),
                "{text}: {e}"
            );
        }
    }
}
