//! Whether the kernel path can run here, and why not: the capabilities and
//! seccomp filter of this process, and the errors the loader reports.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use aya::maps::MapData;

/// Whether this binary carries the kernel programs.
pub(super) const BUILT: bool = cfg!(toptraffic_ebpf);

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
    /// Another live daemon holds the pin dir: a config error, which no
    /// other ingest path would fix.
    PinDirHeld(String),
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
                "bpf() was refused ({detail}): the process lacks {}; run as root or grant CAP_BPF and CAP_PERFMON (and CAP_NET_ADMIN for XDP)",
                missing.join(", ")
            ),
            KernelError::Permission { detail, .. } if seccomp_filtered() => write!(
                f,
                "bpf() was refused ({detail}) although the process holds CAP_BPF and CAP_PERFMON: it runs under a seccomp filter, and the default profiles of podman and CRI-O (and of containerd and Docker before late 2022) allow bpf() only with CAP_SYS_ADMIN; use a profile that allows bpf() with CAP_BPF (see docs/OPERATIONS.md) or run privileged"
            ),
            KernelError::Permission { detail, .. } => write!(
                f,
                "bpf() was refused ({detail}) although the process holds CAP_BPF and CAP_PERFMON (unprivileged BPF or an LSM may forbid it)"
            ),
            KernelError::NoBtf => write!(f, "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing)"),
            KernelError::Verifier { program, log, detail } => write!(
                f,
                "the verifier rejected {program} ({detail}); its log is in {}",
                log.display()
            ),
            KernelError::Rules(e) | KernelError::PinDirHeld(e) => write!(f, "{e}"),
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

/// Linux capability numbers (include/uapi/linux/capability.h): bpf() for
/// maps and programs (CAP_BPF), and the verifier's rules for privileged
/// programs (CAP_PERFMON: without it the programs are refused). A socket
/// filter needs nothing more: attaching one to one's own socket is
/// unprivileged.
const CAPS: [(&str, u32); 2] = [("CAP_PERFMON", 38), ("CAP_BPF", 39)];
/// What attaching XDP to a device needs besides.
const CAP_NET_ADMIN: (&str, u32) = ("CAP_NET_ADMIN", 12);
const CAP_SYS_ADMIN: u32 = 21;

/// The capabilities of [`CAPS`] this process does not hold (none when it
/// holds CAP_SYS_ADMIN, which implies them for bpf()).
pub(super) fn missing_capabilities() -> Vec<&'static str> {
    let eff = effective();
    if eff & (1 << CAP_SYS_ADMIN) != 0 {
        return Vec::new();
    }
    lacking(eff, &CAPS)
}

/// As [`missing_capabilities`], for the XDP program: CAP_NET_ADMIN too,
/// which CAP_SYS_ADMIN does not imply.
pub(super) fn missing_capabilities_for_xdp() -> Vec<&'static str> {
    let mut m = lacking(effective(), &[CAP_NET_ADMIN]);
    m.extend(missing_capabilities());
    m
}

/// This thread's effective set (as every thread's: set before any started);
/// none when it cannot be read.
fn effective() -> u64 {
    crate::caps::effective().unwrap_or(0)
}

fn lacking(eff: u64, caps: &[(&'static str, u32)]) -> Vec<&'static str> {
    caps.iter()
        .filter(|(_, bit)| eff & (1 << bit) == 0)
        .map(|(n, _)| *n)
        .collect()
}

pub(super) fn classify(e: impl fmt::Display, io: Option<&io::Error>) -> KernelError {
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
pub(super) fn io_source<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
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
