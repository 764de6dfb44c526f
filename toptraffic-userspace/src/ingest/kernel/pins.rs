//! The maps' pins: a bpffs to put them on (mounted when there is none), a
//! claim on the pin dir that keeps a second daemon out of it, and pinning
//! and unpinning the maps of the object.
//!
//! The claim is an exclusive flock(2) on the pin dir itself, held for as
//! long as the pins: bpffs holds no regular files for a lock file, but a
//! directory opens and locks like any inode, and the lock is where the pins
//! are, seen by every process (container or not) that sees that bpffs. A
//! second daemon finds the lock held and refuses, naming the holder's pid
//! from /proc/locks. A lock nobody holds over pins of ours means the daemon
//! that made them died without removing them: they are replaced. The daemon
//! removes only the pins it made, and the dir only when it made the dir and
//! left it empty, so that a pin dir shared with other programs (even
//! /sys/fs/bpf itself) keeps theirs.

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::Ebpf;
use tracing::{info, warn};

use super::probe::KernelError;
use super::sys;

/// BPF_FS_MAGIC from include/uapi/linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn is_bpffs(path: &Path) -> bool {
    sys::fs_type(path) == Some(BPF_FS_MAGIC)
}

/// Makes sure `dir` is on a bpffs, mounting one at /sys/fs/bpf when none is
/// (bpffs is not mounted on a fresh machine). True when it created `dir`.
fn ensure_bpffs(dir: &Path) -> Result<bool, String> {
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
    let created = match std::fs::create_dir(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(_) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            true
        }
    };
    if !is_bpffs(dir) {
        return Err(format!("{} is not on a bpffs", dir.display()));
    }
    Ok(created)
}

/// The object's maps that are pinned, then the key set's (made by the
/// daemon: a generation's cells, key to slot, slot to key, free slots).
const OBJECT_MAPS: [&str; 4] = ["CONFIG", "CONFIG_SEL", "COUNTERS", "GENERATION"];
const SET_MAPS: [&str; 5] = ["GEN_A", "GEN_B", "KEYS", "KEY_OF", "FREE"];

/// The pin of map `name` under `dir`.
fn pin_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name.to_ascii_lowercase())
}

/// The pin dir, claimed: while this lives no other daemon pins there. On
/// drop it removes the pins it made, then the dir if it made it and it is
/// empty, then lets the claim go.
#[derive(Debug)]
pub(super) struct Pins {
    dir: PathBuf,
    /// The open dir, flock()ed: the claim.
    _lock: File,
    pinned: Vec<PathBuf>,
    created_dir: bool,
}

impl Pins {
    /// Claims `dir` (creating it on a bpffs if need be), refusing when a
    /// live process holds it, and removes the pins of ours a dead daemon
    /// left there.
    pub(super) fn claim(dir: &Path) -> Result<Pins, KernelError> {
        // The dir may be removed by its holder between our open and our
        // lock (its rmdir at exit): the lock would then be on a dead inode.
        // A few tries, each after the holder let go, are plenty.
        for _ in 0..3 {
            let created_dir = ensure_bpffs(dir).map_err(KernelError::Other)?;
            let lock = File::open(dir)
                .map_err(|e| KernelError::Other(format!("cannot open {}: {e}", dir.display())))?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let meta = lock
                        .metadata()
                        .map_err(|e| KernelError::Other(e.to_string()))?;
                    let holder = match lock_holder(meta.dev(), meta.ino()) {
                        Some(pid) => format!("toptraffic pid {pid}"),
                        None => "another process (its pid is not visible here)".into(),
                    };
                    return Err(KernelError::PinDirHeld(format!(
                        "pin_dir {} is held by {holder}; give each daemon its own ingest.pin_dir",
                        dir.display()
                    )));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(KernelError::Other(format!(
                        "cannot lock {}: {e}",
                        dir.display()
                    )))
                }
            }
            if !same_inode(&lock, dir) {
                continue;
            }
            let pins = Pins {
                dir: dir.to_path_buf(),
                _lock: lock,
                pinned: Vec::new(),
                created_dir,
            };
            pins.remove_stale().map_err(KernelError::Other)?;
            return Ok(pins);
        }
        Err(KernelError::Other(format!(
            "pin_dir {} keeps being removed under us",
            dir.display()
        )))
    }

    /// Removes the pins of our names that a daemon which died (its claim
    /// is gone) left behind.
    fn remove_stale(&self) -> Result<(), String> {
        let stale: Vec<PathBuf> = OBJECT_MAPS
            .iter()
            .chain(&SET_MAPS)
            .map(|n| pin_path(&self.dir, n))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        warn!(
            pin_dir = %self.dir.display(),
            "replacing the pins an earlier toptraffic left behind (it did not stop cleanly)"
        );
        for p in stale {
            std::fs::remove_file(&p)
                .map_err(|e| format!("removing the stale pin {}: {e}", p.display()))?;
        }
        Ok(())
    }

    /// Pins the maps of `ebpf` that are pinned under the dir (lower-case
    /// names).
    pub(super) fn pin_maps(&mut self, ebpf: &Ebpf) -> Result<(), String> {
        for name in OBJECT_MAPS {
            let p = pin_path(&self.dir, name);
            if let Some(m) = ebpf.map(name) {
                m.pin(&p)
                    .map_err(|e| format!("pinning {}: {e}", p.display()))?;
                self.pinned.push(p);
            }
        }
        Ok(())
    }

    /// Points the key set's pins at `maps` (the set in use, by name): at
    /// start and when a resize replaced the set. The old map's pin is
    /// removed either way, so that it does not keep that map's memory; the
    /// first pin that cannot be made is the error, after the others.
    pub(super) fn pin_set(
        &mut self,
        maps: &[(&'static str, &aya::maps::MapData)],
    ) -> Result<(), String> {
        let mut first = Ok(());
        for (name, map) in maps {
            debug_assert!(SET_MAPS.contains(name));
            let p = pin_path(&self.dir, name);
            if self.pinned.contains(&p) {
                let _ = std::fs::remove_file(&p);
                self.pinned.retain(|x| *x != p);
            }
            match map.pin(&p) {
                Ok(()) => self.pinned.push(p),
                Err(e) => {
                    if first.is_ok() {
                        first = Err(format!("pinning {}: {e}", p.display()));
                    }
                }
            }
        }
        first
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        for p in self.pinned.drain(..) {
            let _ = std::fs::remove_file(p);
        }
        if self.created_dir {
            // Fails, as it should, when anything else is in it.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Whether the open `file` is still what `path` names.
fn same_inode(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The pid holding a flock on the inode `ino` of the device `dev`, from
/// /proc/locks (`1: FLOCK  ADVISORY  WRITE 8145 00:28:212965 0 EOF`).
fn lock_holder(dev: u64, ino: u64) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&locks, dev, ino)
}

fn holder_in(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    // The glibc encoding of dev_t (gnu_dev_major, gnu_dev_minor).
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let id = format!("{major:02x}:{minor:02x}:{ino}");
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Waiters are listed with a "->" after the number: not holders.
        match f.as_slice() {
            [_, "FLOCK", _, _, pid, file, ..] if *file == id => pid.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_found_by_device_and_inode() {
        let locks = "1: POSIX  ADVISORY  WRITE 7 00:28:212965 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 8145 00:28:212965 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 9000 00:28:212965 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 8111 fe:00:5915283 0 EOF\n";
        assert_eq!(holder_in(locks, 0x28, 212965), Some(8145));
        assert_eq!(holder_in(locks, 0xfe00, 5915283), Some(8111));
        assert_eq!(holder_in(locks, 0x28, 1), None);
    }
}
