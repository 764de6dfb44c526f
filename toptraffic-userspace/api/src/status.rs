//! The short answers: errors, `POST /api/v1/reload` and `GET /healthz`.

use serde::{Deserialize, Serialize};

/// The body of every error answer (4xx, 5xx) of the JSON routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
}

/// `POST /api/v1/reload` when the new config was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    /// A summary of the change.
    pub message: String,
    /// "reloaded".
    pub status: String,
}

/// `GET /healthz` while intervals keep closing (200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The path that counts: "kernel" or "userspace".
    pub mode: String,
    /// "ok".
    pub status: String,
    /// End of the last closed interval; null before the first.
    pub window_end: Option<String>,
}

/// `GET /healthz` when no interval closed for three intervals (503).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stalled {
    pub mode: String,
    pub seconds_since_rotation: f64,
    /// "stalled".
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn writes_the_short_answers() {
        assert_eq!(
            json(&ErrorAnswer {
                error: "no rule \"x\"".into()
            }),
            r#"{"error":"no rule \"x\""}"#
        );
        assert_eq!(
            json(&Reloaded {
                message: "2 rules".into(),
                status: "reloaded".into()
            }),
            r#"{"message":"2 rules","status":"reloaded"}"#
        );
        assert_eq!(
            json(&Health {
                mode: "userspace".into(),
                status: "ok".into(),
                window_end: None
            }),
            r#"{"mode":"userspace","status":"ok","window_end":null}"#
        );
        assert_eq!(
            json(&Stalled {
                mode: "kernel".into(),
                seconds_since_rotation: 31.0,
                status: "stalled".into()
            }),
            r#"{"mode":"kernel","seconds_since_rotation":31.0,"status":"stalled"}"#
        );
    }
}
