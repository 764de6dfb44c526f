//! `toptraffic import`: Kapacitor TICKscripts to a toptraffic config.
//!
//! `pipeline` parses a script into Kapacitor's graph of nodes, `convert`
//! maps the graph to rules and alert blocks and says what it could not,
//! `combine` runs both over several scripts, names the rules and checks
//! the result as `toptraffic check` would.

mod combine;
mod convert;
mod pipeline;

pub use combine::{import, rule_name_of, ImportError, Imported, Script};
pub use convert::{Finding, Severity};
pub use pipeline::Pos;

#[cfg(test)]
mod tests;
