//! `GET /api/v1/alerts`: per alert block, the keys that are not OK.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::number::Number;

/// Every alert block's keys that are not OK, as of the last rotation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alerts {
    pub blocks: Vec<AlertBlock>,
    /// End of the last closed interval; null before the first.
    pub window_end: Option<String>,
}

/// One block's keys that are not OK.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertBlock {
    pub alerts: Vec<KeyAlert>,
    pub block: String,
    pub rule: String,
}

/// A key that is not OK.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyAlert {
    /// Present (true) while part of the value is the overflow sketch's
    /// estimate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approximate: bool,
    /// While approximate: the most the value may exceed the truth by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_bound: Option<Number>,
    pub flapping: bool,
    /// "INFO", "WARNING" or "CRITICAL".
    pub level: String,
    /// When the current non-OK run was first sent.
    pub since: Option<String>,
    /// Tag name to value.
    pub tags: BTreeMap<String, String>,
    /// The window value at the last evaluation.
    pub value: Number,
    /// "cluster" for a cluster rule evaluated on the cluster's values;
    /// absent for a node's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Under cluster scope: the nodes the value adds up, and each one's share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<BTreeMap<String, Number>>,
    /// Present (true) while the level is held: a cluster rule's last values
    /// were a lower bound under it (Redis down, a node late or dead), so
    /// the level and `value` are those last known whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_blocks_and_their_keys() {
        let alerts = Alerts {
            blocks: vec![AlertBlock {
                alerts: vec![KeyAlert {
                    approximate: false,
                    error_bound: None,
                    flapping: false,
                    level: "CRITICAL".into(),
                    since: Some("2026-11-25T10:00:00Z".into()),
                    tags: [("ip".to_string(), "10.0.0.1".to_string())].into(),
                    value: Number(30000.0),
                    scope: None,
                    nodes: None,
                    shares: None,
                    held: false,
                }],
                block: "ops".into(),
                rule: "top_combined".into(),
            }],
            window_end: Some("2026-11-25T10:00:05Z".into()),
        };
        let text = serde_json::to_string(&alerts).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"blocks":[{"alerts":[{"flapping":false,"level":"CRITICAL","#,
                r#""since":"2026-11-25T10:00:00Z","tags":{"ip":"10.0.0.1"},"value":30000}],"#,
                r#""block":"ops","rule":"top_combined"}],"window_end":"2026-11-25T10:00:05Z"}"#
            )
        );
        assert_eq!(serde_json::from_str::<Alerts>(&text).unwrap(), alerts);
        assert_eq!(
            serde_json::to_string(&Alerts::default()).unwrap(),
            r#"{"blocks":[],"window_end":null}"#
        );
    }

    #[test]
    fn an_approximate_value_says_so_with_its_bound() {
        let a = KeyAlert {
            approximate: true,
            error_bound: Some(Number(12.5)),
            level: "WARNING".into(),
            value: Number(600.0),
            ..Default::default()
        };
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(
            text,
            r#"{"approximate":true,"error_bound":12.5,"flapping":false,"level":"WARNING","since":null,"tags":{},"value":600}"#
        );
        assert_eq!(serde_json::from_str::<KeyAlert>(&text).unwrap(), a);
    }
}
