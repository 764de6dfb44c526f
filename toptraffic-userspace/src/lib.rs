//! toptraffic: counts InfluxDB line protocol received over UDP per group key
//! over a sliding window, and serves the result.

pub mod lineproto;
