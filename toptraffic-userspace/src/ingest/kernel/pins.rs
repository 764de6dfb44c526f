//! The maps' pins: a bpffs to put them on (mounted when there is none), and
//! pinning and unpinning every map of the object.

use std::path::Path;

use aya::Ebpf;
use tracing::info;

use super::sys;

/// BPF_FS_MAGIC from include/uapi/linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn is_bpffs(path: &Path) -> bool {
    sys::fs_type(path) == Some(BPF_FS_MAGIC)
}

/// Makes sure `dir` is on a bpffs, mounting one at /sys/fs/bpf when none is
/// (bpffs is not mounted on a fresh machine).
fn ensure_bpffs(dir: &Path) -> Result<(), String> {
    let mount = Path::new("/sys/fs/bpf");
    if !is_bpffs(mount) && dir.starts_with(mount) {
        std::fs::create_dir_all(mount).ok();
        if let Err(e) = sys::mount_bpffs() {
            return Err(format!(
                "bpffs is not mounted at /sys/fs/bpf and mounting it failed ({e}); run `mount -t bpf bpf /sys/fs/bpf` as root, or set ingest.pin_dir = \"\" to run without pins"
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
pub(super) fn unpin_all(dir: &Path) {
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

/// Pins every map under `dir` (lower-case names), replacing stale pins of an
/// earlier run.
pub(super) fn pin_maps(ebpf: &Ebpf, dir: &Path) -> Result<(), String> {
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
