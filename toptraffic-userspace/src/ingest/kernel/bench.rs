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
#[cfg(feature = "bench")]
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

    /// Where the JIT put the socket filter's code, by source line: what a
    /// kernel address sampled while it runs was doing (`bench parse
    /// --profile`). From the program's info: its functions' addresses, and
    /// for each line-info record (one per source line run of instructions)
    /// its JIT address, with the file, line and text from its BTF.
    #[cfg(feature = "bench")]
    pub fn jit_lines(&self) -> io::Result<JitLines> {
        use std::os::fd::AsFd;

        use aya_obj::generated::bpf_prog_info;

        let prog: &SocketFilter = self
            .ebpf
            .program(SOCK_PROG)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| io::Error::other(format!("{SOCK_PROG} is not loaded")))?;
        let fd = prog.fd().map_err(io::Error::other)?.as_fd();
        // SAFETY: all zeroes is a valid bpf_prog_info that asks for no
        // buffers; the kernel fills in the counts.
        let mut sizes: bpf_prog_info = unsafe { std::mem::zeroed() };
        // SAFETY: a program's info, no buffers.
        unsafe { sys::obj_info(fd, &mut sizes)? };
        let mut ksyms = vec![0u64; sizes.nr_jited_ksyms as usize];
        let mut lens = vec![0u32; sizes.nr_jited_func_lens as usize];
        let rec = sizes.line_info_rec_size as usize;
        let mut line_info = vec![0u8; sizes.nr_line_info as usize * rec];
        let jrec = sizes.jited_line_info_rec_size as usize;
        if jrec != 8 || rec < 16 || sizes.nr_jited_line_info != sizes.nr_line_info {
            return Err(io::Error::other(
                "no JIT line info (is the JIT on, and the object built with BTF?)",
            ));
        }
        let mut jited = vec![0u64; sizes.nr_jited_line_info as usize];
        // SAFETY: as above.
        let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
        info.nr_jited_ksyms = ksyms.len() as u32;
        info.jited_ksyms = ksyms.as_mut_ptr() as u64;
        info.nr_jited_func_lens = lens.len() as u32;
        info.jited_func_lens = lens.as_mut_ptr() as u64;
        info.nr_line_info = sizes.nr_line_info;
        info.line_info_rec_size = sizes.line_info_rec_size;
        info.line_info = line_info.as_mut_ptr() as u64;
        info.nr_jited_line_info = sizes.nr_jited_line_info;
        info.jited_line_info_rec_size = sizes.jited_line_info_rec_size;
        info.jited_line_info = jited.as_mut_ptr() as u64;
        // SAFETY: each buffer holds as many records, of the sizes the
        // kernel gave, as the count beside it says.
        unsafe { sys::obj_info(fd, &mut info)? };
        let btf = sys::btf_bytes(sizes.btf_id)?;
        let strings = btf_strings(&btf)?;
        let text = |off: u32| -> String {
            let from = &strings[(off as usize).min(strings.len())..];
            let end = from.iter().position(|&b| b == 0).unwrap_or(from.len());
            String::from_utf8_lossy(&from[..end]).trim().to_string()
        };
        let word = |r: &[u8], i: usize| u32::from_le_bytes(r[i * 4..i * 4 + 4].try_into().unwrap());
        let mut lines: Vec<(u64, String, String)> = line_info
            .chunks_exact(rec)
            .zip(&jited)
            .map(|(r, &addr)| {
                let file = text(word(r, 1));
                let file = file.rsplit('/').next().unwrap_or_default().to_string();
                (
                    addr,
                    format!("{file}:{}", word(r, 3) >> 10),
                    text(word(r, 2)),
                )
            })
            .collect();
        lines.sort_by_key(|l| l.0);
        let funcs = ksyms.into_iter().zip(lens).collect();
        Ok(JitLines { funcs, lines })
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

/// The socket filter's JIT code by source line (see
/// [`KernelPath::jit_lines`]).
#[cfg(feature = "bench")]
pub struct JitLines {
    /// Start address and length of each of the program's functions.
    funcs: Vec<(u64, u32)>,
    /// JIT address, `file:line` and source text of each line-info record,
    /// by address.
    lines: Vec<(u64, String, String)>,
}

#[cfg(feature = "bench")]
impl JitLines {
    /// The source line (`file:line`, text) whose code holds `ip`, or None
    /// when `ip` is not in the program.
    pub fn find(&self, ip: u64) -> Option<(&str, &str)> {
        self.funcs
            .iter()
            .any(|&(at, len)| (at..at + len as u64).contains(&ip))
            .then_some(())?;
        let i = self.lines.partition_point(|l| l.0 <= ip).checked_sub(1)?;
        Some((&self.lines[i].1, &self.lines[i].2))
    }
}

/// The string section of raw BTF, after its header.
#[cfg(feature = "bench")]
fn btf_strings(btf: &[u8]) -> io::Result<&[u8]> {
    let field = |i: usize| {
        btf.get(i..i + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    let (Some(hdr_len), Some(str_off), Some(str_len)) = (field(4), field(16), field(20)) else {
        return Err(io::Error::other("BTF shorter than its header"));
    };
    btf.get(hdr_len + str_off..hdr_len + str_off + str_len)
        .ok_or_else(|| io::Error::other("BTF strings past its end"))
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
