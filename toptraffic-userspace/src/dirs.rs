//! `toptraffic prepare-dirs`: hands the daemon's host directories (the pin
//! dir on the node's bpffs, the state dir) to the non-root user it runs as.
//! The DaemonSet's init container runs it as root holding CAP_CHOWN alone:
//! bpffs is root's and mode 0700, and a hostPath is created root's, so a
//! non-root daemon could neither pin nor save without it.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// A user and group, parsed from `UID:GID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl std::str::FromStr for Owner {
    type Err = String;
    fn from_str(s: &str) -> Result<Owner, String> {
        let (u, g) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected UID:GID, e.g. 65534:65534"))?;
        let num = |v: &str, what: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("{s:?}: the {what} must be a number"))
        };
        Ok(Owner {
            uid: num(u, "uid")?,
            gid: num(g, "gid")?,
        })
    }
}

/// Creates `dir` (mode 0700) if missing and gives it, and what it directly
/// holds (pins, the state file and its temporary), to `owner`. A directory
/// `owner` already has is left as it is: whatever is in it, the daemon made.
///
/// Needs CAP_CHOWN and nothing else: the caller takes the directory first,
/// so that as its owner it may change its mode and list it even when
/// another user's 0700 directory is found there.
pub fn prepare(dir: &Path, owner: Owner) -> io::Result<&'static str> {
    let context = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", dir.display()))
    };
    let created = match fs::create_dir(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(context("creating", e)),
    };
    let meta = fs::symlink_metadata(dir).map_err(|e| context("reading", e))?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} exists and is not a directory",
            dir.display()
        )));
    }
    if !created && meta.uid() == owner.uid && meta.gid() == owner.gid {
        return Ok("already owned");
    }
    // SAFETY: geteuid and getegid take nothing and cannot fail.
    let (me, my_group) = unsafe { (libc::geteuid(), libc::getegid()) };
    std::os::unix::fs::lchown(dir, Some(me), Some(my_group)).map_err(|e| context("taking", e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| context("setting the mode of", e))?;
    for entry in fs::read_dir(dir).map_err(|e| context("listing", e))? {
        let path = entry.map_err(|e| context("listing", e))?.path();
        std::os::unix::fs::lchown(&path, Some(owner.uid), Some(owner.gid))
            .map_err(|e| io::Error::new(e.kind(), format!("chown {}: {e}", path.display())))?;
    }
    std::os::unix::fs::lchown(dir, Some(owner.uid), Some(owner.gid))
        .map_err(|e| context("chown", e))?;
    Ok(if created { "created" } else { "handed over" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_parses_uid_colon_gid() {
        assert_eq!(
            "65534:65533".parse::<Owner>(),
            Ok(Owner {
                uid: 65534,
                gid: 65533
            })
        );
        assert!("65534".parse::<Owner>().unwrap_err().contains("UID:GID"));
        assert!("x:1".parse::<Owner>().unwrap_err().contains("uid"));
        assert!("1:y".parse::<Owner>().unwrap_err().contains("gid"));
    }

    #[test]
    fn a_directory_and_its_files_are_handed_over() {
        // SAFETY: geteuid takes nothing and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: chown to another user needs root");
            return;
        }
        let tmp = crate::sink::test_support::TempDir::new("prepare-dirs");
        let dir = tmp.path().join("state");
        let owner = Owner {
            uid: 65534,
            gid: 65534,
        };
        assert_eq!(prepare(&dir, owner).unwrap(), "created");
        let m = fs::metadata(&dir).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (65534, 65534, 0o700));
        assert_eq!(prepare(&dir, owner).unwrap(), "already owned");

        // A root daemon's leftovers, in a directory another user holds.
        std::os::unix::fs::lchown(&dir, Some(1234), Some(1234)).unwrap();
        fs::write(dir.join("state"), b"x").unwrap();
        fs::set_permissions(dir.join("state"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(prepare(&dir, owner).unwrap(), "handed over");
        let f = fs::metadata(dir.join("state")).unwrap();
        assert_eq!((f.uid(), f.gid()), (65534, 65534));
        assert_eq!(fs::metadata(&dir).unwrap().uid(), 65534);

        fs::write(tmp.path().join("file"), b"").unwrap();
        let e = prepare(&tmp.path().join("file"), owner).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }
}
