//! The process's Linux capabilities: raised from permitted to effective at
//! start, and dropped whole in the exec sink's children.
//!
//! The image gives its binary file capabilities as *permitted only*
//! (`cap_bpf,cap_perfmon,cap_net_admin+p`), so that a non-root user gets
//! whichever of them its container grants (the bounding set) and nothing
//! else. With the effective bit set instead, the kernel refuses to exec the
//! binary at all in a container that grants fewer (a "capability-dumb"
//! binary must get all or nothing), which would break the userspace path in
//! a container with no capabilities. So the daemon raises what it was
//! permitted itself, first thing.

use std::io;

/// struct __user_cap_header_struct (linux/capability.h).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// struct __user_cap_data_struct; version 3 takes two (capabilities 0-31
/// and 32-63).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Above any capability the kernel knows (cap_last_cap is 40 in 6.x).
const CAP_CEILING: libc::c_ulong = 64;

const HEADER: CapHeader = CapHeader {
    version: LINUX_CAPABILITY_VERSION_3,
    pid: 0,
};

fn capget() -> io::Result<[CapData; 2]> {
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) reads one header and, for version 3, writes two
    // data structs, all alive for the call; pid 0 is the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &HEADER as *const CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data)
}

fn capset(data: &[CapData; 2]) -> io::Result<()> {
    // SAFETY: capset(2) reads one header and, for version 3, two data
    // structs, all alive for the call; pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &HEADER as *const CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's effective capabilities, bit `n` for capability `n`.
pub fn effective() -> io::Result<u64> {
    let [lo, hi] = capget()?;
    Ok(u64::from(lo.effective) | u64::from(hi.effective) << 32)
}

/// Makes every permitted capability effective and returns the mask of
/// those it raised (none for root, whose effective set is already full).
/// Capabilities belong to a thread: call it before any thread starts, and
/// every thread inherits them.
pub fn raise_permitted() -> io::Result<u64> {
    let mut data = capget()?;
    let mut raised = 0u64;
    for (half, d) in data.iter_mut().enumerate() {
        raised |= u64::from(d.permitted & !d.effective) << (32 * half);
        d.effective |= d.permitted;
    }
    if raised != 0 {
        // Raising within the permitted set is always allowed.
        capset(&data)?;
    }
    Ok(raised)
}

/// Empties the ambient set, the bounding set (with CAP_SETPCAP, which the
/// daemon may lack: a service manager then bounded it already) and the
/// permitted, effective and inheritable sets. Runs in a child between fork
/// and exec: raw system calls only, nothing here may allocate or lock.
pub fn drop_all() -> io::Result<()> {
    // SAFETY: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL) takes integers
    // only; a kernel without ambient capabilities (before 4.3) says EINVAL,
    // and there is then nothing to clear.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        return Err(io::Error::last_os_error());
    }
    for cap in 0..CAP_CEILING {
        // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes integers only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            match io::Error::last_os_error().raw_os_error() {
                // Past the last capability of this kernel: done.
                Some(libc::EINVAL) => break,
                // No CAP_SETPCAP: the bounding set is the service's.
                Some(libc::EPERM) => break,
                _ => return Err(io::Error::last_os_error()),
            }
        }
    }
    // Lowering one's own sets is always allowed.
    capset(&[CapData::default(); 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_twice_raises_nothing_the_second_time() {
        raise_permitted().unwrap();
        assert_eq!(raise_permitted().unwrap(), 0);
        let d = capget().unwrap();
        for h in d {
            assert_eq!(h.effective & h.permitted, h.permitted);
        }
    }
}
