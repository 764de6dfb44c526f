//! Several scripts into one config: rules named after their files, one
//! `[window]`, the result checked as `toptraffic check` would.

use super::convert::{self, Finding, Severity};
use super::pipeline::{self, Pos};
use crate::config::Config;

/// One TICKscript to convert.
pub struct Script {
    /// The file's name, as findings show it.
    pub file: String,
    pub text: String,
    /// The rule's name (with a suffix when the script makes several).
    pub rule_name: String,
}

/// What `import` made of the scripts.
#[derive(Debug)]
pub struct Imported {
    /// The config's TOML.
    pub toml: String,
    /// Notes and what was not converted, by file and position.
    pub findings: Vec<Finding>,
    pub rules: usize,
}

impl Imported {
    /// Whether everything in the scripts was converted (notes aside).
    pub fn complete(&self) -> bool {
        self.findings.iter().all(|f| f.severity == Severity::Note)
    }
}

/// Why nothing could be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}:{}:{}: {message}", pos.line, pos.col)]
    Syntax {
        file: String,
        pos: Pos,
        message: String,
    },
    #[error("no rule could be converted")]
    Nothing { findings: Vec<Finding> },
    /// The converted config does not pass validation: a bug, or a script
    /// whose lambdas name what the rule does not have.
    #[error("the converted config is not valid: {message}")]
    Invalid {
        message: String,
        toml: String,
        findings: Vec<Finding>,
    },
}

/// Converts `scripts` into one config.
pub fn import(scripts: &[Script]) -> Result<Imported, ImportError> {
    let mut window: Option<(convert::WindowOut, Pos)> = None;
    let mut rules = Vec::new();
    let mut findings = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for s in scripts {
        let p = pipeline::parse(&s.text).map_err(|e| ImportError::Syntax {
            file: s.file.clone(),
            pos: e.pos,
            message: e.message,
        })?;
        let mut c = convert::convert(&s.file, &p);
        // Rules of a later script must share the first script's window.
        if let (Some((first, _)), Some((w, _))) = (&window, &c.window) {
            if first != w {
                for (r, pos) in std::mem::take(&mut c.rules) {
                    c.findings.push(Finding {
                        file: s.file.clone(),
                        pos,
                        severity: Severity::Refused,
                        message: format!(
                            "rule on measurement {:?}: its window (period {} every {}) differs from the first script's (period {} every {}): [window] is one for all rules",
                            r.measurement, w.period, w.every, first.period, first.every
                        ),
                    });
                }
            }
        }
        if window.is_none() {
            window = c.window.clone();
        }
        let several = c.rules.len() > 1;
        for (i, (mut r, _)) in c.rules.into_iter().enumerate() {
            let base = if several {
                format!("{}_{}", s.rule_name, i + 1)
            } else {
                s.rule_name.clone()
            };
            let mut name = base.clone();
            let mut n = 2;
            while names.contains(&name) {
                name = format!("{base}_{n}");
                n += 1;
            }
            names.push(name.clone());
            r.name = name;
            rules.push(r);
        }
        findings.extend(c.findings);
    }
    if rules.is_empty() {
        return Err(ImportError::Nothing { findings });
    }
    let files: Vec<String> = scripts.iter().map(|s| s.file.clone()).collect();
    let toml = convert::render(&files, window.as_ref().map(|(w, _)| w), &rules);
    if let Err(e) = Config::parse(&toml, "the converted config") {
        return Err(ImportError::Invalid {
            message: e.to_string(),
            toml,
            findings,
        });
    }
    Ok(Imported {
        toml,
        findings,
        rules: rules.len(),
    })
}

/// A rule name from a file name: its stem.
pub fn rule_name_of(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "imported".to_string())
}
