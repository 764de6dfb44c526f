//! The loaded kernel path: loads the eBPF programs, writes the rules into
//! their config map, attaches them (socket filter on the daemon's sockets,
//! or XDP on an interface), and rotates the generations of the key set.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::{fmt, io};

use aya::maps::{Map, MapData, PerCpuArray};
use aya::programs::{SocketFilter, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use toptraffic_common::{counter, KernelConfig, XDP_IPV4, XDP_IPV6};
use tracing::warn;

use super::counters::KernelCounters;
use super::drain::{Drained, Generations, IdIndex, KeySet, Outer};
use super::pins::Pins;
use super::probe::{
    classify, io_source, missing_capabilities, missing_capabilities_for_xdp, KernelError, BUILT,
};
use super::sys;
use crate::ingest::kernel_config::KernelPlan;
use crate::snapshot::Spare;

#[cfg(toptraffic_ebpf)]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/toptraffic-ebpf"));
#[cfg(not(toptraffic_ebpf))]
static OBJECT: &[u8] = &[];

pub(super) const SOCK_PROG: &str = "toptraffic_sock";
/// The filter on the sockets after the first (see the program).
pub(super) const PEER_PROG: &str = "toptraffic_sock_peer";
#[cfg(any(test, feature = "bench"))]
pub(super) const FLOOR_PROG: &str = "toptraffic_floor";
pub(super) const XDP_PROG: &str = "toptraffic_xdp";

/// Where the programs attach.
#[derive(Debug, Clone)]
pub enum Attach {
    /// A socket filter on each of these (the daemon's UDP sockets).
    Sockets(Vec<RawFd>),
    /// XDP on an interface, counting UDP to `port` and `addr` (any
    /// address of its family when unspecified) as the daemon's socket
    /// bound there receives it: IPv4 for an IPv4 (or IPv4-mapped)
    /// address, IPv6 for an IPv6 one, and both for `::` when `dual_stack`
    /// (the socket is not IPV6_V6ONLY).
    Xdp {
        interface: String,
        mode: XdpMode,
        port: u16,
        addr: std::net::IpAddr,
        dual_stack: bool,
    },
    /// Load and verify only (tests).
    None,
    /// The benchmarks' floor on these sockets: a filter that drops every
    /// datagram without parsing it (see [`KernelPath::floor_datagrams`]).
    #[cfg(any(test, feature = "bench"))]
    Floor(Vec<RawFd>),
}

/// How to load the kernel path.
#[derive(Debug, Clone)]
pub struct Options {
    pub attach: Attach,
    /// Slots of the key set: keys the kernel holds at once.
    pub map_entries: u32,
    /// Pin the maps here (None: no pins).
    pub pin_dir: Option<PathBuf>,
    /// Load both programs even if one is attached (tests: the verifier
    /// accepts both).
    pub load_all: bool,
    /// `ingest.max_datagram`: longer datagrams are left to the sockets,
    /// whose receive threads drop them as oversize.
    pub max_datagram: usize,
}

/// What every config written carries besides the rules: XDP's port and
/// address, and the longest datagram the programs count.
#[derive(Debug, Clone, Copy)]
struct Ingress {
    port: u32,
    addr: u32,
    families: u32,
    addr6: [u64; 2],
    max_datagram: u32,
}

/// What XDP matches for a socket bound to `addr` (see [`Attach::Xdp`]):
/// the families (`XDP_IPV4`, `XDP_IPV6`), the IPv4 address and the IPv6
/// one, each as `KernelConfig` holds it (network order; zero for any).
pub(super) fn xdp_match(addr: std::net::IpAddr, dual_stack: bool) -> (u32, u32, [u64; 2]) {
    use std::net::IpAddr;
    match addr {
        IpAddr::V4(a) => (XDP_IPV4, u32::from_ne_bytes(a.octets()), [0; 2]),
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return (XDP_IPV4, u32::from_ne_bytes(v4.octets()), [0; 2]);
            }
            let o = a.octets();
            let mut halves = [[0u8; 8]; 2];
            halves[0].copy_from_slice(&o[..8]);
            halves[1].copy_from_slice(&o[8..]);
            let addr6 = halves.map(u64::from_ne_bytes);
            let v4 = if a.is_unspecified() && dual_stack {
                XDP_IPV4
            } else {
                0
            };
            (XDP_IPV6 | v4, 0, addr6)
        }
    }
}

/// The loaded and attached kernel path.
pub struct KernelPath {
    pub(super) ebpf: Ebpf,
    /// The key set, its generations and their rotation.
    pub(super) gens: Generations,
    counters: Arc<KernelCounters>,
    max_keys: Vec<usize>,
    /// The claimed pin dir and the pins made there (removed on drop).
    pins: Option<Pins>,
    xdp: Option<aya::programs::xdp::XdpLinkId>,
    pub plan: KernelPlan,
    sockets: Vec<RawFd>,
    /// The live CONFIG slot.
    config_slot: u32,
    /// Kept in every config written.
    ingress: Ingress,
    /// Rule id (as in the kernel's keys) to rule index.
    id_index: IdIndex,
}

impl fmt::Debug for KernelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelPath")
            .field("epoch", &self.gens.epoch())
            .field("pin_dir", &self.pins.as_ref().map(Pins::dir))
            .finish_non_exhaustive()
    }
}

/// Writes `config` into CONFIG slot `slot`, which no program reads until
/// [`select_config`] makes it the live one; `(epoch, slots)` name the key
/// set the programs count in.
fn write_config(
    ebpf: &mut Ebpf,
    slot: u32,
    config: &KernelConfig,
    ingress: Ingress,
    (epoch, slots): (u32, u32),
) -> Result<(), String> {
    let mut config = *config;
    config.epoch = epoch;
    config.slots = slots;
    config.version = next_config_version();
    config.port = ingress.port;
    config.addr = ingress.addr;
    config.families = ingress.families;
    config.addr6 = ingress.addr6;
    config.max_datagram = ingress.max_datagram;
    let map = ebpf
        .map_mut("CONFIG")
        .ok_or("the object has no map CONFIG")?;
    let mut arr: aya::maps::Array<&mut MapData, KernelConfig> =
        aya::maps::Array::try_from(map).map_err(|e| e.to_string())?;
    arr.set(slot, config, 0)
        .map_err(|e| format!("writing the rules: {e}"))
}

/// A [`KernelConfig::version`] no config written before has had: a count
/// from a start that differs by process (CONFIG is pinned, and a previous
/// daemon's programs may still run against what this one writes), never 0.
fn next_config_version() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = || {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(16) ^ std::process::id()
    };
    if NEXT.load(Ordering::Relaxed) == 0 {
        let _ = NEXT.compare_exchange(0, seed() | 1, Ordering::Relaxed, Ordering::Relaxed);
    }
    loop {
        let v = NEXT.fetch_add(1, Ordering::Relaxed);
        if v != 0 {
            return v;
        }
    }
}

/// Makes CONFIG slot `slot` the live one.
fn select_config(ebpf: &mut Ebpf, slot: u32) -> Result<(), String> {
    let map = ebpf
        .map_mut("CONFIG_SEL")
        .ok_or("the object has no map CONFIG_SEL")?;
    let mut sel: aya::maps::Array<&mut MapData, u32> =
        aya::maps::Array::try_from(map).map_err(|e| e.to_string())?;
    sel.set(0, slot, 0)
        .map_err(|e| format!("selecting the rules: {e}"))
}

fn index_ids(ids: &[u32]) -> IdIndex {
    ids.iter().enumerate().map(|(i, id)| (*id, i)).collect()
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<Map, KernelError> {
    ebpf.take_map(name)
        .ok_or_else(|| KernelError::Other(format!("the object has no map {name}")))
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
        // TOPTRAFFIC_VERIFIER_LOG=verbose: the verifier's instruction-level
        // log in the file a refused program's log goes to (the kernel keeps
        // its last 16 MiB).
        if std::env::var("TOPTRAFFIC_VERIFIER_LOG").as_deref() == Ok("verbose") {
            loader
                .verifier_log_level(aya::VerifierLogLevel::VERBOSE | aya::VerifierLogLevel::STATS);
        }
        let mut ebpf = loader.load(OBJECT).map_err(|e| {
            let io = io_source(&e);
            classify(format!("loading the eBPF object: {e}"), io)
        })?;

        let pins = match &opts.pin_dir {
            Some(dir) => {
                let mut pins = Pins::claim(dir)?;
                pins.pin_maps(&ebpf).map_err(KernelError::Other)?;
                Some(pins)
            }
            None => None,
        };
        let (port, (families, addr, addr6)) = match &opts.attach {
            Attach::Xdp {
                port,
                addr,
                dual_stack,
                ..
            } => (*port as u32, xdp_match(*addr, *dual_stack)),
            _ => (0, (0, 0, [0; 2])),
        };
        let ingress = Ingress {
            port,
            addr,
            families,
            addr6,
            // Past u32 it is past BUF_LEN too: the kernel's own bound holds.
            max_datagram: opts.max_datagram.min(u32::MAX as usize) as u32,
        };
        let outer = Outer {
            generation: take(&mut ebpf, "GENERATION")?,
            keys: take(&mut ebpf, "KEYS")?,
            key_of: take(&mut ebpf, "KEY_OF")?,
            free: take(&mut ebpf, "FREE")?,
        };
        let counters = match take(&mut ebpf, "COUNTERS")? {
            m @ Map::PerCpuArray(_) => {
                PerCpuArray::try_from(m).map_err(|e| KernelError::Other(e.to_string()))?
            }
            _ => return Err(KernelError::Other("COUNTERS is not a per-CPU array".into())),
        };
        let ncpus = aya::util::nr_cpus().map_err(|(_, e)| KernelError::Other(e.to_string()))?;
        let set = KeySet::new(opts.map_entries, ncpus).map_err(|e| {
            classify(
                format!("creating the key set of {} slots: {e}", opts.map_entries),
                Some(&e),
            )
        })?;
        let gens = Generations::new(outer, set, max_keys.len())
            .map_err(|e| KernelError::Other(format!("installing the key set: {e}")))?;
        let mut pins = pins;
        if let Some(p) = &mut pins {
            p.pin_set(&gens.set.pins()).map_err(KernelError::Other)?;
        }
        write_config(&mut ebpf, 0, &plan.config, ingress, gens.epoch())
            .and_then(|()| select_config(&mut ebpf, 0))
            .map_err(KernelError::Other)?;

        let mut path = KernelPath {
            ebpf,
            gens,
            counters: Arc::new(KernelCounters { map: counters }),
            max_keys,
            pins,
            xdp: None,
            plan,
            sockets: Vec::new(),
            config_slot: 0,
            ingress,
            id_index: Default::default(),
        };
        path.id_index = index_ids(&path.plan.ids);
        let want_sock = matches!(opts.attach, Attach::Sockets(_)) || opts.load_all;
        let want_xdp = matches!(opts.attach, Attach::Xdp { .. }) || opts.load_all;
        if want_sock {
            path.load_program(SOCK_PROG)?;
            path.load_program(PEER_PROG)?;
        }
        if want_xdp {
            path.load_program(XDP_PROG)?;
        }
        #[cfg(any(test, feature = "bench"))]
        if matches!(opts.attach, Attach::Floor(_)) || opts.load_all {
            path.load_program(FLOOR_PROG)?;
        }
        match opts.attach {
            Attach::Sockets(fds) => path.attach_sockets(SOCK_PROG, PEER_PROG, fds)?,
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
                    let detail = format!("attaching XDP to {interface} ({mode:?}): {e}{why}");
                    match io.and_then(|io| io.raw_os_error()) {
                        Some(libc::EPERM) => KernelError::Permission {
                            missing: missing_capabilities_for_xdp(),
                            detail,
                        },
                        _ => classify(detail, io),
                    }
                })?;
                path.xdp = Some(link);
            }
            #[cfg(any(test, feature = "bench"))]
            Attach::Floor(fds) => path.attach_sockets(FLOOR_PROG, FLOOR_PROG, fds)?,
            Attach::None => {}
        }
        Ok(path)
    }

    /// Attaches the loaded socket filter `first` to the first socket of
    /// `fds` and `peer` to the others; they are detached on drop.
    fn attach_sockets(
        &mut self,
        first: &str,
        peer: &str,
        fds: Vec<RawFd>,
    ) -> Result<(), KernelError> {
        for (i, fd) in fds.iter().enumerate() {
            let name = if i == 0 { first } else { peer };
            let prog: &SocketFilter = self
                .ebpf
                .program(name)
                .expect("loaded before attaching")
                .try_into()
                .map_err(|e: aya::programs::ProgramError| KernelError::Other(e.to_string()))?;
            // The daemon's sockets outlive the kernel path (it is dropped
            // first) and the filter is detached on drop.
            sys::attach_socket_filter(prog, *fd).map_err(|e| {
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
            XDP_PROG => <&mut Xdp>::try_from(prog).and_then(|p| p.load()),
            _ => <&mut SocketFilter>::try_from(prog).and_then(|p| p.load()),
        };
        match res {
            Ok(()) => Ok(()),
            Err(aya::programs::ProgramError::LoadError {
                io_error,
                verifier_log,
            }) => {
                // Without CAP_PERFMON the verifier refuses the programs
                // (EACCES): say what is missing, not only that it refused.
                let missing = match name {
                    XDP_PROG => missing_capabilities_for_xdp(),
                    _ => missing_capabilities(),
                };
                let denied = matches!(io_error.raw_os_error(), Some(libc::EPERM))
                    || (matches!(io_error.raw_os_error(), Some(libc::EACCES))
                        && !missing.is_empty());
                if denied {
                    return Err(KernelError::Permission {
                        missing,
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
    ///
    /// When the key set must hold more than `map_entries` keys, a larger
    /// set is made and put at the other epoch, and the new config names
    /// it (see [`Generations::install_other`]); the old set's last counts
    /// join the next drain. Smaller needs keep the set. On error the rules
    /// and the set in force are unchanged.
    pub fn set_rules(
        &mut self,
        plan: KernelPlan,
        max_keys: Vec<usize>,
        map_entries: u32,
    ) -> Result<(), String> {
        let held = self.gens.capacity();
        let larger = if map_entries > held {
            let set = KeySet::new(map_entries, self.gens.ncpus())
                .map_err(|e| format!("creating a key set of {map_entries} slots failed ({e})"))?;
            // At the other epoch: no program uses it until the config
            // written below names it.
            let epoch = self
                .gens
                .install_other(&set)
                .map_err(|e| format!("installing a key set of {map_entries} slots: {e}"))?;
            Some((set, epoch))
        } else {
            None
        };
        let slot = 1 - self.config_slot;
        let epoch = match &larger {
            Some((set, e)) => (*e, set.slots()),
            None => self.gens.epoch(),
        };
        write_config(&mut self.ebpf, slot, &plan.config, self.ingress, epoch)?;
        select_config(&mut self.ebpf, slot)?;
        self.config_slot = slot;
        if let Some((set, _)) = larger {
            self.gens.resized(set);
            if let Some(pins) = &mut self.pins {
                if let Err(e) = pins.pin_set(&self.gens.set.pins()) {
                    warn!(error = %e, "cannot pin the resized key set");
                }
            }
        }
        self.id_index = index_ids(&plan.ids);
        let mut last = vec![0; max_keys.len()];
        for (i, id) in plan.ids.iter().enumerate() {
            if let Some(old) = self.plan.ids.iter().position(|o| o == id) {
                last[i] = self.gens.last_keys.get(old).copied().unwrap_or(0);
            }
        }
        self.gens.last_keys = last;
        self.max_keys = max_keys;
        self.plan = plan;
        Ok(())
    }

    /// Slots of the key set: keys the kernel holds at once.
    pub fn map_entries(&self) -> u32 {
        self.gens.capacity()
    }

    /// Swaps in the spare generation, then reads and empties the old one
    /// into per-rule tables, and keeps the slots.
    pub fn drain(&mut self) -> io::Result<Drained> {
        self.drain_reusing(&mut Spare::default())
    }

    /// As [`KernelPath::drain`], the tables' lists taken from `spare` where
    /// it has them.
    pub fn drain_reusing(&mut self, spare: &mut Spare) -> io::Result<Drained> {
        let full = self.counters.read()[counter::PASS_MAP_FULL as usize];
        self.gens.drain(&self.max_keys, &self.id_index, full, spare)
    }
}

impl Drop for KernelPath {
    fn drop(&mut self) {
        for fd in &self.sockets {
            // The sockets are still open (the daemon drops the kernel path
            // before them).
            sys::detach_socket_filter(*fd);
        }
        if let Some(link) = self.xdp.take() {
            if let Some(p) = self.ebpf.program_mut(XDP_PROG) {
                if let Ok(x) = <&mut Xdp>::try_from(p) {
                    let _ = x.detach(link);
                }
            }
        }
        drop(self.pins.take());
    }
}
