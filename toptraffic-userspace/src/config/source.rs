//! Positions in the config text: an error at a span names its 1-based line.

use std::ops::Range;

use super::schema::ConfigError;

/// Maps byte offsets to 1-based lines.
pub(super) struct Source<'a> {
    pub(super) name: &'a str,
    pub(super) text: &'a str,
}

impl Source<'_> {
    pub(super) fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&c| c == b'\n')
            .count()
            + 1
    }

    pub(super) fn at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            source: self.name.to_string(),
            line: Some(self.line(&span)),
            message: message.into(),
        }
    }

    pub(super) fn nowhere(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            source: self.name.to_string(),
            line: None,
            message: message.into(),
        }
    }
}
