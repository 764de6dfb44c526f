//! `toptraffic replay`: recorded traffic through the daemon's engine on
//! simulated time.
//!
//! `input` reads line protocol with timestamps or pcap/pcapng captures into
//! datagrams with their arrival times; `run` counts them with the userspace
//! path's counter and closes intervals with the daemon's rotator, window
//! and alert engine, reporting every event (and, asked, each interval's top
//! keys) in order.

mod input;
mod run;

pub use input::{read, Datagram, InputError, Precision, Skipped};
pub use run::{replay, Options, Output, Summary, Top};
