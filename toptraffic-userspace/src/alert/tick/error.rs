//! The errors of a lambda: refused when parsed, or failed when evaluated.
//!
//! Messages are Kapacitor's; `ErrTypeGuardFailed` follows
//! `tick/stateful/node_evaluator.go`.

use std::fmt;

use super::types::Ty;

/// A lambda that failed to parse, or that Kapacitor would refuse to compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset in the source of the offending token.
    pub pos: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    /// The column is 1-based and counts bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.pos + 1, self.message)
    }
}

impl std::error::Error for ExprError {}

/// An evaluation that failed; Kapacitor logs these and treats the level as
/// not reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    message: String,
    missing: Option<String>,
}

impl EvalError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        EvalError {
            message: message.into(),
            missing: None,
        }
    }

    pub(super) fn missing(message: String, name: &str) -> Self {
        EvalError {
            message,
            missing: Some(name.to_string()),
        }
    }

    /// Kapacitor wraps errors from function arguments and calls.
    pub(super) fn context(mut self, prefix: &str) -> Self {
        self.message.insert_str(0, prefix);
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The reference whose absence caused the error, if that was the cause.
    pub fn missing_reference(&self) -> Option<&str> {
        self.missing.as_deref()
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EvalError {}

pub(super) fn missing_value(name: &str) -> EvalError {
    EvalError::missing(format!("reference \"{name}\" is missing value"), name)
}

/// Kapacitor's `ErrTypeGuardFailed` message.
pub(super) fn type_guard(actual: Ty, wanted: Ty) -> EvalError {
    EvalError::new(format!(
        "TypeGuard: expression returned unexpected type {}, expected {}",
        actual.name(),
        wanted.name()
    ))
}
