//! The kernel path: loads the eBPF programs, writes the rules into their
//! config map, attaches them (socket filter on the daemon's sockets, or XDP
//! on an interface), and every interval swaps and drains the generation maps
//! into the same count tables the userspace path fills.
//!
//! Exact rotation: slot 0 of the `GENERATION` array of maps names the map
//! the programs write. Updating it from userspace returns only after an RCU
//! grace period, so once the swap returns no program still writes the old
//! map; it is then read and emptied in one pass of
//! `BPF_MAP_LOOKUP_AND_DELETE_BATCH` and becomes the next spare.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::maps::{ArrayOfMaps, Map, MapData, PerCpuArray};
use aya::programs::{SocketFilter, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use toptraffic_common::{counter, Cell as KCell, GroupKey, KernelConfig, TOTALS_RULE};
use tracing::{debug, info, warn};

use super::kernel_config::KernelPlan;
use crate::snapshot::{Cell, CountTable};
use crate::stats::{CountersSnapshot, DropReason};

#[cfg(toptraffic_ebpf)]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/toptraffic-ebpf"));
#[cfg(not(toptraffic_ebpf))]
static OBJECT: &[u8] = &[];

/// Whether this binary carries the kernel programs.
pub const BUILT: bool = cfg!(toptraffic_ebpf);

/// Where maps are pinned unless the config says otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/toptraffic";

const SOCK_PROG: &str = "toptraffic_sock";
const FLOOR_PROG: &str = "toptraffic_floor";
const XDP_PROG: &str = "toptraffic_xdp";

/// Where the programs attach.
#[derive(Debug, Clone)]
pub enum Attach {
    /// A socket filter on each of these (the daemon's UDP sockets).
    Sockets(Vec<RawFd>),
    /// XDP on an interface, counting UDP to `port` (and `addr`, when not
    /// 0.0.0.0).
    Xdp {
        interface: String,
        mode: XdpMode,
        port: u16,
        addr: std::net::Ipv4Addr,
    },
    /// Load and verify only (tests).
    None,
    /// The benchmarks' floor on these sockets: a filter that drops every
    /// datagram without parsing it (see [`KernelPath::floor_datagrams`]).
    Floor(Vec<RawFd>),
}

/// How to load the kernel path.
#[derive(Debug, Clone)]
pub struct Options {
    pub attach: Attach,
    /// Entries of each generation map.
    pub map_entries: u32,
    /// Pin the maps here (None: no pins).
    pub pin_dir: Option<PathBuf>,
    /// Load both programs even if one is attached (tests: the verifier
    /// accepts both).
    pub load_all: bool,
}

/// Why the kernel path did not load.
#[derive(Debug)]
pub enum KernelError {
    /// The binary was built without the eBPF toolchain.
    NotBuilt,
    /// bpf() refused: names the capabilities this process lacks.
    Permission {
        missing: Vec<&'static str>,
        detail: String,
    },
    /// The kernel has no BTF.
    NoBtf,
    /// The verifier rejected a program; its log is in `log`.
    Verifier {
        program: &'static str,
        log: PathBuf,
        detail: String,
    },
    /// The rules do not fit the kernel's tables.
    Rules(String),
    Other(String),
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::NotBuilt => write!(
                f,
                "this binary was built without the kernel programs (the eBPF toolchain was missing at build time; `cargo xtask setup` installs it)"
            ),
            KernelError::Permission { missing, detail } if !missing.is_empty() => write!(
                f,
                "bpf() was refused ({detail}): the process lacks {}; run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON",
                missing.join(", ")
            ),
            KernelError::Permission { detail, .. } if seccomp_filtered() => write!(
                f,
                "bpf() was refused ({detail}) although the process holds CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: it runs under a seccomp filter, and the default profiles of podman and CRI-O (and of containerd and Docker before late 2022) allow bpf() only with CAP_SYS_ADMIN; use a profile that allows bpf() with CAP_BPF (see docs/OPERATIONS.md) or run privileged"
            ),
            KernelError::Permission { detail, .. } => write!(
                f,
                "bpf() was refused ({detail}) although the process holds CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (unprivileged BPF or an LSM may forbid it)"
            ),
            KernelError::NoBtf => write!(f, "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing)"),
            KernelError::Verifier { program, log, detail } => write!(
                f,
                "the verifier rejected {program} ({detail}); its log is in {}",
                log.display()
            ),
            KernelError::Rules(e) => write!(f, "{e}"),
            KernelError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for KernelError {}

/// Whether a seccomp filter confines this process (`Seccomp: 2`): in a
/// container it, not the capabilities, is what usually refuses bpf().
fn seccomp_filtered() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .is_some_and(|v| v.trim() == "2")
    })
}

/// Linux capability numbers (include/uapi/linux/capability.h).
const CAPS: [(&str, u32); 3] = [("CAP_NET_ADMIN", 12), ("CAP_PERFMON", 38), ("CAP_BPF", 39)];
const CAP_SYS_ADMIN: u32 = 21;

/// The capabilities of [`CAPS`] this process does not hold (none when it
/// holds CAP_SYS_ADMIN, which implies them for bpf()).
pub fn missing_capabilities() -> Vec<&'static str> {
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    if eff & (1 << CAP_SYS_ADMIN) != 0 {
        return Vec::new();
    }
    CAPS.iter()
        .filter(|(_, bit)| eff & (1 << bit) == 0)
        .map(|(n, _)| *n)
        .collect()
}

fn classify(e: impl fmt::Display, io: Option<&io::Error>) -> KernelError {
    let detail = e.to_string();
    if let Some(io) = io {
        if matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
            return KernelError::Permission {
                missing: missing_capabilities(),
                detail,
            };
        }
    }
    KernelError::Other(detail)
}

/// The io::Error at the bottom of an error chain, if any.
fn io_source<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// Whether this process can use the kernel path at all: the programs are
/// built in, the kernel has BTF, and bpf() creates a map.
pub fn probe() -> Result<(), KernelError> {
    if !BUILT {
        return Err(KernelError::NotBuilt);
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(KernelError::NoBtf);
    }
    match aya::maps::Array::<MapData, u32>::create(1, 0) {
        Ok(_) => Ok(()),
        Err(e) => Err(classify(format!("creating a test map: {e}"), io_source(&e))),
    }
}

/// Live per-CPU counters of the programs, readable from any thread.
pub struct KernelCounters {
    map: PerCpuArray<MapData, u64>,
    /// Lines counted in the kernel but lost from the generation map before
    /// the drain (LRU eviction), summed over drains.
    evicted_lines: AtomicU64,
}

impl fmt::Debug for KernelCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelCounters").finish_non_exhaustive()
    }
}

impl KernelCounters {
    /// Every counter summed over CPUs.
    pub fn read(&self) -> [u64; counter::COUNT as usize] {
        let mut out = [0u64; counter::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(v) = self.map.get(&(i as u32), 0) {
                *slot = v.iter().sum();
            }
        }
        out
    }

    /// The kernel path's share of the stats, in the userspace path's terms.
    pub fn snapshot(&self) -> CountersSnapshot {
        let c = self.read();
        let at = |i: u32| c[i as usize];
        let mut s = CountersSnapshot {
            datagrams: at(counter::SF_DATAGRAMS) + at(counter::XDP_DATAGRAMS),
            points: at(counter::POINTS),
            ..Default::default()
        };
        s.dropped[DropReason::UnknownMeasurement as usize] = at(counter::DROP_UNKNOWN_MEASUREMENT);
        s.dropped[DropReason::Filtered as usize] = at(counter::DROP_FILTERED);
        s.dropped[DropReason::MissingField as usize] = at(counter::DROP_MISSING_FIELD);
        s.dropped[DropReason::Evicted as usize] =
            at(counter::LOST_ITEMS) + self.evicted_lines.load(Relaxed);
        s
    }

    /// Datagrams handed to userspace, by reason name.
    pub fn passed(&self) -> Vec<(&'static str, u64)> {
        let c = self.read();
        counter::PASS_NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, c[counter::PASS_FIRST as usize + i]))
            .collect()
    }

    /// Datagrams the socket filter consumed (the kernel counts them as socket
    /// drops too).
    pub fn socket_filter_datagrams(&self) -> u64 {
        self.read()[counter::SF_DATAGRAMS as usize]
    }
}

/// One drain's result.
#[derive(Debug)]
pub struct Drained {
    /// Per rule (config order).
    pub tables: Vec<CountTable>,
    pub keys: usize,
    /// Time to swap, and to read and empty the old map.
    pub swap: Duration,
    pub drain: Duration,
    pub evicted_lines: u64,
    pub evicted_keys: u64,
}

/// The loaded and attached kernel path.
pub struct KernelPath {
    ebpf: Ebpf,
    outer: Map,
    gens: [MapData; 2],
    /// Index into `gens` of the map the programs write.
    active: usize,
    ncpus: usize,
    counters: Arc<KernelCounters>,
    max_keys: Vec<usize>,
    pin_dir: Option<PathBuf>,
    xdp: Option<aya::programs::xdp::XdpLinkId>,
    pub plan: KernelPlan,
    sockets: Vec<RawFd>,
    /// Empties the generation drained last, off the rotation's path; waited
    /// for before that map becomes the active one again.
    clearer: Clearer,
    /// A generation handed to the clearer and not yet waited for.
    clearing: bool,
    last_clear: Duration,
    /// Keys per rule at the last drain, to size the next tables.
    last_keys: Vec<usize>,
    /// The live CONFIG slot.
    config_slot: u32,
    /// XDP's port and address, kept in every config written.
    xdp_target: (u32, u32),
    /// Rule id (as in the kernel's keys) to rule index.
    id_index: std::collections::HashMap<u32, usize>,
}

impl fmt::Debug for KernelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelPath")
            .field("active", &self.active)
            .field("pin_dir", &self.pin_dir)
            .finish_non_exhaustive()
    }
}

/// BPF_FS_MAGIC from include/uapi/linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs into a zeroed struct with a valid C path.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Makes sure `dir` is on a bpffs, mounting one at /sys/fs/bpf when none is
/// (bpffs is not mounted on a fresh machine).
pub fn ensure_bpffs(dir: &Path) -> Result<(), String> {
    let mount = Path::new("/sys/fs/bpf");
    if !is_bpffs(mount) && dir.starts_with(mount) {
        std::fs::create_dir_all(mount).ok();
        // SAFETY: constant C strings; mount(2) reads them only.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                c"/sys/fs/bpf".as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(format!(
                "bpffs is not mounted at /sys/fs/bpf and mounting it failed ({}); run `mount -t bpf bpf /sys/fs/bpf` as root, or set ingest.pin_dir = \"\" to run without pins",
                io::Error::last_os_error()
            ));
        }
        info!("mounted bpffs at /sys/fs/bpf");
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if !is_bpffs(dir) {
        return Err(format!("{} is not on a bpffs", dir.display()));
    }
    Ok(())
}

/// Removes the pins in `dir` (ours, from this or an earlier run).
fn unpin_all(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

const MAP_NAMES: [&str; 6] = [
    "CONFIG",
    "CONFIG_SEL",
    "COUNTERS",
    "GENERATION",
    "GEN_A",
    "GEN_B",
];

/// Writes `config` into CONFIG slot `slot` and makes it the live one.
fn write_config(
    ebpf: &mut Ebpf,
    slot: u32,
    config: &KernelConfig,
    (port, addr): (u32, u32),
) -> Result<(), String> {
    let mut config = *config;
    config.port = port;
    config.addr = addr;
    {
        let map = ebpf
            .map_mut("CONFIG")
            .ok_or("the object has no map CONFIG")?;
        let mut arr: aya::maps::Array<&mut MapData, KernelConfig> =
            aya::maps::Array::try_from(map).map_err(|e| e.to_string())?;
        arr.set(slot, config, 0)
            .map_err(|e| format!("writing the rules: {e}"))?;
    }
    let map = ebpf
        .map_mut("CONFIG_SEL")
        .ok_or("the object has no map CONFIG_SEL")?;
    let mut sel: aya::maps::Array<&mut MapData, u32> =
        aya::maps::Array::try_from(map).map_err(|e| e.to_string())?;
    sel.set(0, slot, 0)
        .map_err(|e| format!("selecting the rules: {e}"))
}

fn index_ids(ids: &[u32]) -> std::collections::HashMap<u32, usize> {
    ids.iter().enumerate().map(|(i, id)| (*id, i)).collect()
}

/// Pins every map under `dir` (lower-case names), replacing stale pins of an
/// earlier run.
fn pin_maps(ebpf: &Ebpf, dir: &Path) -> Result<(), String> {
    ensure_bpffs(dir)?;
    unpin_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for name in MAP_NAMES {
        let p = dir.join(name.to_ascii_lowercase());
        if let Some(m) = ebpf.map(name) {
            m.pin(&p)
                .map_err(|e| format!("pinning {}: {e}", p.display()))?;
        }
    }
    Ok(())
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<Map, KernelError> {
    ebpf.take_map(name)
        .ok_or_else(|| KernelError::Other(format!("the object has no map {name}")))
}

fn gen_data(m: Map, name: &str) -> Result<MapData, KernelError> {
    match m {
        Map::PerCpuLruHashMap(d) => Ok(d),
        _ => Err(KernelError::Other(format!(
            "{name} is not an LRU per-CPU hash"
        ))),
    }
}

impl KernelPath {
    /// Loads, configures and attaches the programs.
    pub fn load(
        plan: KernelPlan,
        max_keys: Vec<usize>,
        opts: Options,
    ) -> Result<KernelPath, KernelError> {
        if !BUILT {
            return Err(KernelError::NotBuilt);
        }
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return Err(KernelError::NoBtf);
        }
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries("GEN_A", opts.map_entries)
            .map_max_entries("GEN_B", opts.map_entries);
        let mut ebpf = loader.load(OBJECT).map_err(|e| {
            let io = io_source(&e);
            classify(format!("loading the eBPF object: {e}"), io)
        })?;

        let pin_dir = match &opts.pin_dir {
            Some(dir) => {
                pin_maps(&ebpf, dir).map_err(KernelError::Other)?;
                Some(dir.clone())
            }
            None => None,
        };
        let xdp_target = match &opts.attach {
            Attach::Xdp { port, addr, .. } => (*port as u32, u32::from_ne_bytes(addr.octets())),
            _ => (0, 0),
        };
        write_config(&mut ebpf, 0, &plan.config, xdp_target).map_err(KernelError::Other)?;

        let gen_a = gen_data(take(&mut ebpf, "GEN_A")?, "GEN_A")?;
        let gen_b = gen_data(take(&mut ebpf, "GEN_B")?, "GEN_B")?;
        let mut outer = take(&mut ebpf, "GENERATION")?;
        {
            let mut arr: ArrayOfMaps<&mut MapData, MapData> =
                ArrayOfMaps::try_from(&mut outer).map_err(|e| KernelError::Other(e.to_string()))?;
            arr.set(0, &gen_a, 0)
                .map_err(|e| KernelError::Other(format!("installing the first generation: {e}")))?;
        }
        let counters = match take(&mut ebpf, "COUNTERS")? {
            m @ Map::PerCpuArray(_) => {
                PerCpuArray::try_from(m).map_err(|e| KernelError::Other(e.to_string()))?
            }
            _ => return Err(KernelError::Other("COUNTERS is not a per-CPU array".into())),
        };
        let ncpus = aya::util::nr_cpus().map_err(|(_, e)| KernelError::Other(e.to_string()))?;

        let mut path = KernelPath {
            ebpf,
            outer,
            gens: [gen_a, gen_b],
            active: 0,
            ncpus,
            counters: Arc::new(KernelCounters {
                map: counters,
                evicted_lines: AtomicU64::new(0),
            }),
            max_keys,
            pin_dir,
            xdp: None,
            plan,
            sockets: Vec::new(),
            clearer: Clearer::start(ncpus)?,
            clearing: false,
            last_clear: Duration::ZERO,
            last_keys: Vec::new(),
            config_slot: 0,
            xdp_target,
            id_index: Default::default(),
        };
        path.id_index = index_ids(&path.plan.ids);
        path.last_keys = vec![0; path.max_keys.len()];
        let want_sock = matches!(opts.attach, Attach::Sockets(_)) || opts.load_all;
        let want_xdp = matches!(opts.attach, Attach::Xdp { .. }) || opts.load_all;
        if want_sock {
            path.load_program(SOCK_PROG)?;
        }
        if want_xdp {
            path.load_program(XDP_PROG)?;
        }
        if matches!(opts.attach, Attach::Floor(_)) || opts.load_all {
            path.load_program(FLOOR_PROG)?;
        }
        match opts.attach {
            Attach::Sockets(fds) => path.attach_sockets(SOCK_PROG, fds)?,
            Attach::Xdp {
                interface, mode, ..
            } => {
                let prog: &mut Xdp = path
                    .ebpf
                    .program_mut(XDP_PROG)
                    .expect("loaded above")
                    .try_into()
                    .map_err(|e: aya::programs::ProgramError| KernelError::Other(e.to_string()))?;
                let link = prog.attach(&interface, mode).map_err(|e| {
                    let io = io_source(&e);
                    let why = match io.and_then(|io| io.raw_os_error()) {
                        Some(libc::EBUSY) | Some(libc::EEXIST) => {
                            " (another XDP program is attached to it)".to_string()
                        }
                        Some(libc::EOPNOTSUPP) => {
                            " (its driver has no native XDP; use xdp_mode = \"skb\")".to_string()
                        }
                        _ => io.map(|io| format!(" ({io})")).unwrap_or_default(),
                    };
                    classify(
                        format!("attaching XDP to {interface} ({mode:?}): {e}{why}"),
                        io,
                    )
                })?;
                path.xdp = Some(link);
            }
            Attach::Floor(fds) => path.attach_sockets(FLOOR_PROG, fds)?,
            Attach::None => {}
        }
        Ok(path)
    }

    /// Attaches the loaded socket filter `name` to every socket in `fds`;
    /// they are detached on drop.
    fn attach_sockets(&mut self, name: &str, fds: Vec<RawFd>) -> Result<(), KernelError> {
        let prog: &SocketFilter = self
            .ebpf
            .program(name)
            .expect("loaded before attaching")
            .try_into()
            .map_err(|e: aya::programs::ProgramError| KernelError::Other(e.to_string()))?;
        for fd in &fds {
            // SAFETY: the daemon's sockets outlive the kernel path (it is
            // dropped first) and the filter is detached on drop.
            let sock = unsafe { BorrowedFd::borrow_raw(*fd) };
            prog.attach(sock).map_err(|e| {
                classify(format!("attaching {name} to a socket: {e}"), io_source(&e))
            })?;
        }
        self.sockets = fds;
        Ok(())
    }

    fn load_program(&mut self, name: &'static str) -> Result<(), KernelError> {
        let prog = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| KernelError::Other(format!("the object has no program {name}")))?;
        let res = match name {
            SOCK_PROG | FLOOR_PROG => <&mut SocketFilter>::try_from(prog).and_then(|p| p.load()),
            _ => <&mut Xdp>::try_from(prog).and_then(|p| p.load()),
        };
        match res {
            Ok(()) => Ok(()),
            Err(aya::programs::ProgramError::LoadError {
                io_error,
                verifier_log,
            }) => {
                if matches!(io_error.raw_os_error(), Some(libc::EPERM)) {
                    return Err(KernelError::Permission {
                        missing: missing_capabilities(),
                        detail: format!("loading {name}: {io_error}"),
                    });
                }
                let log = std::env::temp_dir().join(format!("toptraffic-verifier-{name}.log"));
                let _ = std::fs::write(&log, verifier_log.to_string());
                Err(KernelError::Verifier {
                    program: name,
                    log,
                    detail: io_error.to_string(),
                })
            }
            Err(e) => Err(classify(format!("loading {name}: {e}"), io_source(&e))),
        }
    }

    pub fn counters(&self) -> Arc<KernelCounters> {
        self.counters.clone()
    }

    /// Hands the programs new rules without reloading them: the other
    /// CONFIG slot is written whole, then the selector flips. A slot is
    /// rewritten only a reload later, and a generation swap (which waits
    /// for every running program) happens in between, so no program reads
    /// a slot while it is written. Counts already in the maps carry rule
    /// ids: those of rules that kept their id go on counting for them.
    pub fn set_rules(&mut self, plan: KernelPlan, max_keys: Vec<usize>) -> Result<(), String> {
        let slot = 1 - self.config_slot;
        write_config(&mut self.ebpf, slot, &plan.config, self.xdp_target)?;
        self.config_slot = slot;
        self.id_index = index_ids(&plan.ids);
        let mut last = vec![0; max_keys.len()];
        for (i, id) in plan.ids.iter().enumerate() {
            if let Some(old) = self.plan.ids.iter().position(|o| o == id) {
                last[i] = self.last_keys.get(old).copied().unwrap_or(0);
            }
        }
        self.last_keys = last;
        self.max_keys = max_keys;
        self.plan = plan;
        Ok(())
    }

    /// Instructions the verifier processed for each loaded program (its
    /// limit is 1,000,000): how much room the parser has left to grow.
    pub fn verified_insns(&self) -> Vec<(&'static str, u32)> {
        [SOCK_PROG, XDP_PROG, FLOOR_PROG]
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
        let fd = self.gens[self.active].fd().as_fd();
        let mut values = vec![KCell::default(); keys.len() * self.ncpus];
        for i in 0..keys.len() {
            values[i * self.ncpus] = cell;
        }
        update_batch(fd, keys, &values)
    }

    /// Empties the active generation one key at a time (lookup, then delete,
    /// walking with get_next_key): the slow way, as a benchmark baseline.
    pub fn drain_per_key(&mut self) -> io::Result<usize> {
        use aya_obj::generated::bpf_cmd::{
            BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY, BPF_MAP_LOOKUP_ELEM,
        };
        let fd = self.gens[self.active].fd().as_fd();
        let mut values = vec![KCell::default(); self.ncpus];
        let mut n = 0;
        let mut key = GroupKey::zeroed();
        if !bpf_elem(fd, BPF_MAP_GET_NEXT_KEY, None, &mut key as *mut _ as u64)? {
            return Ok(0);
        }
        loop {
            // Find the next key before deleting this one: from a deleted key
            // the kernel restarts at the first bucket, which is quadratic.
            let mut next = GroupKey::zeroed();
            let more = bpf_elem(
                fd,
                BPF_MAP_GET_NEXT_KEY,
                Some(&key),
                &mut next as *mut _ as u64,
            )?;
            bpf_elem(
                fd,
                BPF_MAP_LOOKUP_ELEM,
                Some(&key),
                values.as_mut_ptr() as u64,
            )?;
            bpf_elem(fd, BPF_MAP_DELETE_ELEM, Some(&key), 0)?;
            n += 1;
            if !more {
                return Ok(n);
            }
            key = next;
        }
    }

    /// Swaps in the spare generation, then reads and empties the old one
    /// into per-rule tables.
    pub fn drain(&mut self) -> io::Result<Drained> {
        // The spare must be empty before it is swapped in.
        self.finish_clearing()?;
        let started = Instant::now();
        let spare = 1 - self.active;
        {
            let mut arr: ArrayOfMaps<&mut MapData, MapData> =
                ArrayOfMaps::try_from(&mut self.outer)
                    .map_err(|e| io::Error::other(e.to_string()))?;
            // Returns after an RCU grace period: no program writes the old
            // generation any more.
            arr.set(0, &self.gens[spare], 0)
                .map_err(|e| io::Error::other(format!("swapping generations: {e}")))?;
        }
        let swap = started.elapsed();
        let old = self.active;
        self.active = spare;
        // The walk yields each key once: lists, not hash tables, sized
        // like the last drain.
        let mut tables: Vec<CountTable> = self
            .max_keys
            .iter()
            .zip(&self.last_keys)
            .map(|(m, n)| CountTable::unique_with_capacity(*m, n + n / 8))
            .collect();
        let (mut lines, mut keys) = (0u64, 0u64);
        let mut totals = KCell::default();
        let id_index = &self.id_index;
        let ncpus = self.ncpus;
        batch_walk(
            self.gens[old].fd().as_fd(),
            ncpus,
            aya_obj::generated::bpf_cmd::BPF_MAP_LOOKUP_BATCH,
            |key, cells| {
                let mut sum = KCell::default();
                for c in cells {
                    sum.lines += c.lines;
                    sum.sum += c.sum;
                }
                if key.rule == TOTALS_RULE {
                    totals.lines += sum.lines;
                    totals.sum += sum.sum;
                    return;
                }
                lines += sum.lines;
                keys += 1;
                // Counts of a rule a reload removed or regrouped are gone
                // with it.
                if let Some(t) = id_index.get(&key.rule).and_then(|i| tables.get_mut(*i)) {
                    t.push_unique(
                        key.bytes(),
                        Cell {
                            value: sum.sum as f64,
                            lines: sum.lines,
                        },
                    );
                }
            },
        )?;
        for (n, t) in self.last_keys.iter_mut().zip(&tables) {
            *n = t.len();
        }
        let drain = started.elapsed() - swap;
        // Emptied on the side (see Clearer); the map is not used until the
        // next drain, which waits for this.
        self.clearer
            .jobs
            .send(self.gens[old].fd().as_fd().as_raw_fd())
            .map_err(|_| io::Error::other("the clearing thread stopped"))?;
        self.clearing = true;
        let evicted_lines = totals.lines.saturating_sub(lines);
        let evicted_keys = (totals.sum.max(0) as u64).saturating_sub(keys);
        if evicted_lines > 0 {
            self.counters
                .evicted_lines
                .fetch_add(evicted_lines, Relaxed);
            warn!(
                evicted_lines,
                evicted_keys, "the generation map evicted keys; raise max_keys"
            );
        }
        debug!(keys, lines, ?swap, ?drain, clear = ?self.last_clear, "drained generation");
        Ok(Drained {
            tables,
            keys: keys as usize,
            swap,
            drain,
            evicted_lines,
            evicted_keys,
        })
    }

    /// Waits for the previous generation to be emptied.
    pub fn finish_clearing(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.clearing) {
            self.last_clear = self
                .clearer
                .done
                .recv()
                .map_err(|_| io::Error::other("the clearing thread stopped"))??;
        }
        Ok(())
    }

    /// How long emptying the last drained generation took.
    pub fn last_clear(&self) -> Duration {
        self.last_clear
    }
}

/// The thread that empties drained generations, off the rotation's path:
/// deleting is as slow as reading. It walks with a batch command that
/// deletes as it reads (a list of the keys would cost as much memory as
/// the keys). One thread for the daemon's life rather than one started
/// every interval.
struct Clearer {
    jobs: std::sync::mpsc::Sender<RawFd>,
    done: std::sync::mpsc::Receiver<io::Result<Duration>>,
}

impl Clearer {
    fn start(ncpus: usize) -> Result<Clearer, KernelError> {
        let (jobs, rx) = std::sync::mpsc::channel::<RawFd>();
        let (tx, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("kernel-clear".into())
            .spawn(move || {
                // Ends when the KernelPath drops its sender.
                for fd in rx {
                    let t = Instant::now();
                    // SAFETY: the map outlives the job: the KernelPath waits
                    // for the result before it swaps the map in again and
                    // before it drops.
                    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                    let r = batch_walk(
                        fd,
                        ncpus,
                        aya_obj::generated::bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_BATCH,
                        |_, _| {},
                    );
                    if tx.send(r.map(|()| t.elapsed())).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| KernelError::Other(format!("starting the clearing thread: {e}")))?;
        Ok(Clearer { jobs, done })
    }
}

impl Drop for KernelPath {
    fn drop(&mut self) {
        let _ = self.finish_clearing();
        for fd in &self.sockets {
            // SAFETY: the sockets are still open (the daemon drops the
            // kernel path before them).
            let sock = unsafe { BorrowedFd::borrow_raw(*fd) };
            let _ = SocketFilter::detach(sock);
        }
        if let Some(link) = self.xdp.take() {
            if let Some(p) = self.ebpf.program_mut(XDP_PROG) {
                if let Ok(x) = <&mut Xdp>::try_from(p) {
                    let _ = x.detach(link);
                }
            }
        }
        if let Some(dir) = self.pin_dir.take() {
            unpin_all(&dir);
        }
    }
}

/// One BPF_MAP_*_ELEM call on `key` (None: the first key for
/// GET_NEXT_KEY); false when the kernel says ENOENT.
fn bpf_elem(
    fd: BorrowedFd<'_>,
    cmd: aya_obj::generated::bpf_cmd,
    key: Option<&GroupKey>,
    value_or_next: u64,
) -> io::Result<bool> {
    use aya_obj::generated::bpf_attr;
    // SAFETY: bpf_attr is plain data; zero is its empty value.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_2.map_fd = fd.as_raw_fd() as u32;
    attr.__bindgen_anon_2.key = key.map_or(0, |k| k as *const GroupKey as u64);
    attr.__bindgen_anon_2.__bindgen_anon_1.value = value_or_next;
    // SAFETY: key and value point at buffers of the map's sizes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            &mut attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// BPF_MAP_UPDATE_BATCH of `keys` with per-CPU `values`.
fn update_batch(fd: BorrowedFd<'_>, keys: &[GroupKey], values: &[KCell]) -> io::Result<()> {
    use aya_obj::generated::{bpf_attr, bpf_cmd};
    let mut done = 0usize;
    let per_key = values.len() / keys.len().max(1);
    while done < keys.len() {
        // SAFETY: bpf_attr is plain data; zero is its empty value.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        attr.batch.keys = keys[done..].as_ptr() as u64;
        attr.batch.values = values[done * per_key..].as_ptr() as u64;
        attr.batch.count = (keys.len() - done) as u32;
        attr.batch.map_fd = fd.as_raw_fd() as u32;
        // SAFETY: the buffers hold `count` keys and their values.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                bpf_cmd::BPF_MAP_UPDATE_BATCH as libc::c_long,
                &mut attr as *mut bpf_attr,
                std::mem::size_of::<bpf_attr>(),
            )
        };
        // SAFETY: the kernel wrote back how many it updated.
        let n = unsafe { attr.batch.count } as usize;
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        done += n.max(1);
    }
    Ok(())
}

/// Walks every entry of a per-CPU hash map of `GroupKey` -> `Cell` with a
/// batch command (BPF_MAP_LOOKUP_BATCH, or ..._AND_DELETE_BATCH to empty it
/// as it goes); `each` gets the key and the per-CPU values. Only for a map
/// no program writes any more.
pub fn batch_walk(
    fd: BorrowedFd<'_>,
    ncpus: usize,
    cmd: aya_obj::generated::bpf_cmd,
    mut each: impl FnMut(&GroupKey, &[KCell]),
) -> io::Result<()> {
    use aya_obj::generated::bpf_attr;
    const BATCH: usize = 16384;
    let mut keys = vec![GroupKey::zeroed(); BATCH];
    let mut values = vec![KCell::default(); BATCH * ncpus];
    let mut in_token: u32 = 0;
    let mut out_token: u32 = 0;
    let mut first = true;
    loop {
        // SAFETY: bpf_attr is plain data; zero is its empty value.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        attr.batch.in_batch = if first {
            0
        } else {
            &in_token as *const u32 as u64
        };
        attr.batch.out_batch = &mut out_token as *mut u32 as u64;
        attr.batch.keys = keys.as_mut_ptr() as u64;
        attr.batch.values = values.as_mut_ptr() as u64;
        attr.batch.count = BATCH as u32;
        attr.batch.map_fd = fd.as_raw_fd() as u32;
        // SAFETY: the buffers hold `count` keys and count * ncpus values.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd as libc::c_long,
                &mut attr as *mut bpf_attr,
                std::mem::size_of::<bpf_attr>(),
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        // SAFETY: the kernel wrote back how many entries it returned.
        let n = unsafe { attr.batch.count } as usize;
        for i in 0..n.min(BATCH) {
            each(&keys[i], &values[i * ncpus..(i + 1) * ncpus]);
        }
        match err {
            None => {}
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Some(e) => return Err(e),
        }
        in_token = out_token;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// Loads both programs, or says why the kernel path cannot run here.
    pub(crate) fn load_or_skip(attach: Attach) -> Option<KernelPath> {
        let c = Config::embedded_default();
        let plan = super::super::kernel_config::plan(&c.rules).unwrap();
        let max_keys = c.rules.iter().map(|r| r.max_keys).collect();
        let opts = Options {
            attach,
            map_entries: 4096,
            pin_dir: None,
            load_all: true,
        };
        match KernelPath::load(plan, max_keys, opts) {
            Ok(k) => Some(k),
            Err(
                e @ (KernelError::NotBuilt | KernelError::Permission { .. } | KernelError::NoBtf),
            ) => {
                eprintln!("SKIPPED: the kernel path cannot load here: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn verifier_accepts_both_programs() {
        let Some(k) = load_or_skip(Attach::None) else {
            return;
        };
        let c = k.counters().read();
        assert!(c.iter().all(|&v| v == 0));
        for (name, n) in k.verified_insns() {
            eprintln!("{name}: the verifier processed {n} instructions (limit 1000000)");
        }
    }

    #[test]
    fn test_run_counts_a_plain_datagram_and_passes_an_escaped_one_whole() {
        let Some(mut k) = load_or_skip(Attach::None) else {
            return;
        };
        // Tag values longer than a word, so the word-at-a-time scan runs.
        let plain = b"combined,uri=/a/rather/long/path,id=123456789,ip=203.0.113.7,role=ingresstype count=1";
        let (verdict, _) = k.test_run(false, plain, 3).unwrap();
        assert_eq!(verdict, 0, "counted and dropped");
        let escaped = b"combined,uri=/a\\ b,id=1,ip=203.0.113.7 count=1";
        let (verdict, _) = k.test_run(false, escaped, 1).unwrap();
        assert_eq!(verdict as usize, 8 + escaped.len(), "passed whole");
        let (verdict, _) = k.test_run(true, plain, 1).unwrap();
        assert_eq!(verdict, 0, "the floor drops everything");
        let d = k.drain().unwrap();
        let key = crate::key::from_values(&["203.0.113.7", "123456789"]);
        assert_eq!(d.tables[0].get(&key).unwrap().lines, 3);
        assert_eq!(k.counters().passed()[1], ("escape", 1));
    }

    #[test]
    fn socket_filter_counts_plain_datagrams_and_passes_the_rest_whole() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let Some(mut k) = load_or_skip(Attach::Sockets(vec![rx.as_raw_fd()])) else {
            return;
        };
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        for i in 0..1000 {
            let d = format!(
                "combined,uri=/p,id=7,ip=10.0.0.{},role=r count=1\nips,ip=10.0.0.{} count=2i",
                i % 2,
                i % 2
            );
            tx.send_to(d.as_bytes(), to).unwrap();
        }
        let escaped = b"combined,id=7,ip=a\\ b count=1";
        tx.send_to(escaped, to).unwrap();
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            escaped,
            "only the escaped datagram reaches the socket"
        );
        let c = k.counters().snapshot();
        assert_eq!(c.datagrams, 1000);
        assert_eq!(c.points, 2000);
        assert_eq!(k.counters().passed()[1], ("escape", 1));
        let d = k.drain().unwrap();
        let key = |v: &[&str]| crate::key::from_values(v);
        let combined = &d.tables[0];
        assert_eq!(combined.get(&key(&["10.0.0.0", "7"])).unwrap().value, 500.0);
        assert_eq!(combined.get(&key(&["10.0.0.1", "7"])).unwrap().lines, 500);
        assert_eq!(d.tables[1].get(&key(&["10.0.0.1"])).unwrap().value, 1000.0);
        assert_eq!(d.keys, 4);
        assert_eq!(d.evicted_lines, 0);
        // The next drain reads the other generation, empty.
        let d = k.drain().unwrap();
        assert_eq!(d.keys, 0);
        assert!(d.tables.iter().all(|t| t.is_empty()));
    }
}
