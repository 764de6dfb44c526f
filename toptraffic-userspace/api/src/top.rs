//! `GET /api/v1/top`: a rule's keys with the largest values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::number::Number;

/// `limit` when the query has none.
pub const DEFAULT_LIMIT: usize = 20;

/// The largest `limit` accepted: the most keys a rule can hold (the largest
/// `max_keys`), so that a rule's whole window can always be asked for.
pub const MAX_LIMIT: usize = 100_000_000;

const _: () = assert!(DEFAULT_LIMIT <= MAX_LIMIT);

/// The query string: `?rule=NAME&limit=N[&scope=cluster]`. Anything else
/// is refused rather than ignored (`n=5` for `limit=5`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopQuery {
    pub rule: Option<String>,
    /// At most [`MAX_LIMIT`]; [`DEFAULT_LIMIT`] when absent.
    pub limit: Option<usize>,
    /// `node` (the default: this node's window) or `cluster` (the values
    /// the nodes exchanged, with `[cluster]`).
    pub scope: Option<String>,
}

/// A rule's top keys over the window of the last closed interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Top {
    /// The name of the rule's value (its `as`).
    #[serde(rename = "as")]
    pub as_name: String,
    /// With `scope=cluster`: how the values were exchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterTop>,
    /// The tags of a key, in order.
    pub group_by: Vec<String>,
    /// Keys with anything in the window (all of them, not only those listed).
    pub keys: u64,
    pub period_s: Number,
    pub rule: String,
    /// By value, descending.
    pub top: Vec<TopRow>,
    /// End of the window; null before the first interval closed.
    pub window_end: Option<String>,
}

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopRow {
    /// Present (true) while part of the value is the overflow sketch's
    /// estimate: the key was promoted less than a period ago.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approximate: bool,
    /// While approximate: the most the value may exceed the truth by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_bound: Option<Number>,
    /// With `scope=cluster`: each node's share of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<BTreeMap<String, Number>>,
    /// Tag name to value.
    pub tags: BTreeMap<String, String>,
    pub value: Number,
}

/// How a cluster top's values came about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterTop {
    /// Whether every live node took part (false: a node missed the
    /// exchange's deadline and its shares are missing).
    pub complete: bool,
    /// The nodes whose values are in.
    pub nodes: Vec<String>,
    /// T / N: a key under it on every node cannot reach T and is not
    /// listed; every key listed has its exact cluster value.
    pub threshold: Number,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_documented_json() {
        let top = Top {
            as_name: "totalCount".into(),
            cluster: None,
            group_by: vec!["ip".into(), "id".into()],
            keys: 49087,
            period_s: Number(60.0),
            rule: "top_combined".into(),
            top: vec![TopRow {
                approximate: false,
                error_bound: None,
                shares: None,
                tags: [("ip", "10.0.0.1"), ("id", "42")]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into(),
                value: Number(1234.0),
            }],
            window_end: Some("2026-11-25T10:00:05Z".into()),
        };
        let text = serde_json::to_string(&top).unwrap();
        assert_eq!(
            text,
            r#"{"as":"totalCount","group_by":["ip","id"],"keys":49087,"period_s":60,"rule":"top_combined","top":[{"tags":{"id":"42","ip":"10.0.0.1"},"value":1234}],"window_end":"2026-11-25T10:00:05Z"}"#
        );
        assert_eq!(serde_json::from_str::<Top>(&text).unwrap(), top);
        let empty = Top {
            keys: 0,
            top: vec![],
            window_end: None,
            period_s: Number(2.5),
            ..top
        };
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"as":"totalCount","group_by":["ip","id"],"keys":0,"period_s":2.5,"rule":"top_combined","top":[],"window_end":null}"#
        );
    }

    #[test]
    fn a_query_names_a_rule_and_a_limit() {
        let q: TopQuery = serde_json::from_str(r#"{"rule":"r","limit":5}"#).unwrap();
        assert_eq!(
            q,
            TopQuery {
                rule: Some("r".into()),
                limit: Some(5),
                scope: None,
            }
        );
    }
}
