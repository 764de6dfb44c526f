//! Alert sinks, one file each, and the shared queue/retry machinery.
//!
//! Every sink is one worker task fed by a bounded queue. The caller (the
//! rotation thread, outside any runtime) only ever `try_send`s, so a full
//! queue drops the event and counts it: a slow or dead receiver delays nothing
//! but its own sink. The worker takes events in order and delivers at most
//! `concurrency` of them at a time; each attempt is bounded by `timeout`, and a
//! failed one is retried up to `retries` times after an exponential backoff
//! with full jitter. An event keeps its concurrency slot while it waits for a
//! retry, so a dead receiver fills the slots, then the queue, then drops:
//! memory stays bounded by `queue + concurrency` events per sink.

mod alertmanager;
mod backoff;
mod deliver;
mod exec;
mod handle;
mod http;
mod http_util;
mod log;
mod slack;
mod spawn;
mod stats;
mod worker;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

pub use handle::SinkHandle;
pub use spawn::spawn_sink;
