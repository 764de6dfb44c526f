//! What only the benchmarks (and this folder's tests) use: the kernel's
//! own test harness on a loaded filter, the floor filter's count, the
//! verifier's instruction counts, and filling or emptying a generation by
//! hand. Built with the `bench` feature.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray};
use aya::programs::SocketFilter;
use toptraffic_common::{Cell as KCell, GroupKey};

use super::path::{KernelPath, FLOOR_PROG, PEER_PROG, SOCK_PROG, XDP_PROG};
use super::sys;

impl KernelPath {
    /// Instructions the verifier processed for each loaded program (its
    /// limit is 1,000,000): how much room the parser has left to grow.
    pub fn verified_insns(&self) -> Vec<(&'static str, u32)> {
        [SOCK_PROG, PEER_PROG, XDP_PROG, FLOOR_PROG]
            .into_iter()
            .filter_map(|name| {
                let n = self
                    .ebpf
                    .program(name)?
                    .info()
                    .ok()?
                    .verified_instruction_count()?;
                Some((name, n))
            })
            .collect()
    }

    /// Runs a loaded socket filter (`floor`: the floor, else the parser)
    /// `repeat` times on one datagram with BPF_PROG_TEST_RUN, the kernel's
    /// own harness: the verdict (0: counted and dropped) and the mean time
    /// of a run, without the receive path around it. For the parser
    /// benchmark; its counts land in the active generation as real ones do.
    pub fn test_run(
        &self,
        floor: bool,
        payload: &[u8],
        repeat: u32,
    ) -> Result<(u32, Duration), String> {
        use aya::programs::{TestRun, TestRunOptions};
        let name = if floor { FLOOR_PROG } else { SOCK_PROG };
        let prog: &SocketFilter = self
            .ebpf
            .program(name)
            .ok_or_else(|| format!("{name} is not loaded"))?
            .try_into()
            .map_err(|e| format!("{name}: {e}"))?;
        // The harness takes an Ethernet frame and hands a socket filter
        // what follows the Ethernet header: here the UDP header (as on a
        // UDP socket) and the payload.
        let mut frame = vec![0u8; 14 + 8 + payload.len()];
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        frame[14 + 4..14 + 6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        frame[22..].copy_from_slice(payload);
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                repeat,
                ..Default::default()
            })
            .map_err(|e| format!("test run of {name}: {e}"))?;
        Ok((r.return_value, r.duration))
    }

    /// Datagrams the floor filter dropped, summed over CPUs.
    pub fn floor_datagrams(&self) -> u64 {
        self.ebpf
            .map("FLOOR")
            .and_then(|m| PerCpuArray::<&MapData, u64>::try_from(m).ok())
            .and_then(|a| a.get(&0, 0).ok())
            .map_or(0, |v| v.iter().sum())
    }

    /// Writes entries into the generation the programs write now, as if
    /// they had counted them (each CPU's value set to `cell` on the first
    /// CPU, zero on the others). For benchmarks and tests of the drain.
    pub fn fill_active(&self, keys: &[GroupKey], cell: KCell) -> io::Result<()> {
        let ncpus = self.gens.ncpus;
        let fd = self.gens.maps[self.gens.active].fd().as_fd();
        let mut values = vec![KCell::default(); keys.len() * ncpus];
        for i in 0..keys.len() {
            values[i * ncpus] = cell;
        }
        sys::update_batch(fd, keys, &values, ncpus)
    }

    /// Empties the active generation one key at a time (lookup, then delete,
    /// walking with get_next_key): the slow way, as a benchmark baseline.
    pub fn drain_per_key(&mut self) -> io::Result<usize> {
        let fd = self.gens.maps[self.gens.active].fd().as_fd();
        sys::delete_per_key(fd, self.gens.ncpus)
    }
}
