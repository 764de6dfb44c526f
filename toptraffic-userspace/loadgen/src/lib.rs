//! Load generator: line protocol over UDP with the shape of ingress traffic
//! (many client ips, fewer store ids, a skewed distribution, uri and role
//! tags), one or several lines per datagram, malformed lines mixed in on
//! request, keys that come and go (churn), and the exact truth of what was
//! sent.
//!
//! Deterministic for a seed, so a test can regenerate what it expects; with
//! several sender threads, each draws from its own stream of the same key
//! set and the truths add up.

mod cli;
mod generate;
mod http;
mod send;
mod verify;

pub use cli::{cli, Options};
pub use generate::{merge_truth, Generator, Rng, Shape, Truth};
pub use http::{get, get_json, http_get, post_json};
pub use send::{run, run_parallel, senders, Plan, Sender, Sent};
pub use verify::{accounted, compare, compare_top, lines_accounted, Tally, Verdict};
