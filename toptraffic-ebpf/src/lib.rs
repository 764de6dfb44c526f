//! The parser shared by toptraffic's kernel programs, built for the BPF
//! target inside them and for the host in tests.
#![no_std]

pub mod parse;
