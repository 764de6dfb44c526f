//! The nodes of an ingress tier, meeting in Redis (`[cluster]`): who is
//! there (`membership`), and what this node knows of it (`status`), served
//! at `/api/v1/cluster`. Everything here runs on tokio tasks, off the
//! counting and rotation paths, and never waits on Redis longer than
//! `cluster.timeout`.

mod exchange;
mod lease;
mod membership;
mod parked;
#[cfg(feature = "bench")]
pub mod sim;
mod status;

pub use membership::{own_parked_window, run_cluster};
pub use status::{ClusterRule, ClusterStatus};
