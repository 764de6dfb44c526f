//! What only the benchmarks (and this folder's tests) use: the kernel's
//! own test harness on a loaded filter, the floor filter's count, the
//! verifier's instruction counts, filling a generation by hand, and the
//! drain benchmark's baseline. Built with the `bench` feature.

use std::io;
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray};
use aya::programs::SocketFilter;
use toptraffic_common::{Cell as KCell, GroupKey};

use super::path::{KernelPath, FLOOR_PROG, PEER_PROG, SOCK_PROG, XDP_PROG};

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

    /// Sets the cell on CPU 0 of each of `keys` to `cell` in the
    /// generation the programs write now, as if they had counted them. For
    /// benchmarks and tests of the drain.
    pub fn fill_active(&mut self, keys: &[GroupKey], cell: KCell) -> io::Result<()> {
        self.gens.fill_active(keys, cell)
    }
}

/// The drain as it was before the key set, for the drain benchmark's
/// baseline: `keys` in a per-CPU hash of `entries` entries (`cell` on CPU
/// 0), read and emptied with one BPF_MAP_LOOKUP_AND_DELETE_BATCH walk into
/// a table, as the rotation did. Returns the keys drained and the walk's
/// time.
#[cfg(feature = "bench")]
pub fn hash_drain_baseline(
    keys: &[GroupKey],
    cell: KCell,
    entries: u32,
) -> io::Result<(usize, Duration)> {
    use std::os::fd::AsFd;
    use std::time::Instant;

    use aya_obj::generated::bpf_cmd;

    use super::sys;
    use crate::snapshot::{Cell, CountTable};

    let ncpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    let map = sys::create_percpu_hash(entries)?;
    let mut values = vec![KCell::default(); keys.len() * ncpus];
    for i in 0..keys.len() {
        values[i * ncpus] = cell;
    }
    sys::update_batch(map.as_fd(), keys, &values, ncpus)?;
    let started = Instant::now();
    let mut table = CountTable::unique_with_capacity(keys.len(), keys.len()).spilling();
    sys::batch_walk::<KCell>(
        map.as_fd(),
        ncpus,
        bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_BATCH,
        |key, cells| {
            let (mut lines, mut owned, mut sum) = (0u64, 0u64, 0i128);
            for c in cells {
                lines += c.lines as u64;
                owned += c.owned as u64;
                sum += c.sum as i128;
            }
            if lines > 0 {
                let mut cell = Cell::from_exact(sum, lines);
                cell.owned.kernel = owned.min(u32::MAX as u64) as u32;
                table.push_unique(key.bytes(), cell);
            }
        },
    )?;
    Ok((table.len(), started.elapsed()))
}
