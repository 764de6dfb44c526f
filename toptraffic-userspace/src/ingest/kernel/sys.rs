//! Every raw system call of the kernel path (bpf(), statfs, mount) and
//! every borrow of a descriptor the kernel path does not own, each with the
//! reason it is sound, so that the rest of the path has no `unsafe`.
//!
//! The map walks take the descriptor of a generation map, `GEN_A` or
//! `GEN_B`: a per-CPU hash of `GroupKey` -> `Cell`, the two types the
//! kernel programs declare it with (the same definitions, from
//! toptraffic-common). The buffers handed to the kernel are sized by those
//! types; no other map may be passed.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use aya::programs::{ProgramError, SocketFilter};
use aya_obj::generated::{bpf_attr, bpf_cmd};
use toptraffic_common::{Cell as KCell, GroupKey};

/// The filesystem type (`f_type` of statfs(2)) of `path`, None when it
/// cannot be read.
pub(super) fn fs_type(path: &Path) -> Option<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: libc::statfs is plain integers, for which all zeroes is a
    // valid value; statfs(2) reads the NUL-terminated path `c` (alive for
    // the call) and writes at most one struct statfs into `st`.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut st) == 0).then_some(st.f_type as i64)
    }
}

/// mount -t bpf bpf /sys/fs/bpf.
pub(super) fn mount_bpffs() -> io::Result<()> {
    // SAFETY: every pointer is a NUL-terminated constant string, which
    // mount(2) only reads; bpffs takes no data, so that one is null.
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
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches `prog` to the socket `socket`, one of the daemon's.
pub(super) fn attach_socket_filter(prog: &SocketFilter, socket: RawFd) -> Result<(), ProgramError> {
    // SAFETY: the borrow lives for this call only, and `socket` is open
    // through it: it is one of the daemon's UDP sockets, which the daemon
    // closes only after it dropped the kernel path.
    let sock = unsafe { BorrowedFd::borrow_raw(socket) };
    prog.attach(sock)
}

/// Creates an empty generation map of `max_entries` entries, with the type,
/// key and value sizes and flags of `like` (the outer map accepts an inner
/// map of another size only when these match).
pub(super) fn create_generation_map(
    like: &aya::maps::MapInfo,
    max_entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    // SAFETY: bpf_attr is a union of structs of integers, for which all
    // zeroes is a valid value (and the kernel's "unset").
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: the map-creation member is the one written; each field is a
    // plain integer copied from a map of the same kind.
    let a = unsafe { &mut attr.__bindgen_anon_1 };
    a.map_type = aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_PERCPU_HASH as u32;
    a.key_size = like.key_size();
    a.value_size = like.value_size();
    a.map_flags = like.map_flags();
    a.max_entries = max_entries;
    for (d, s) in a.map_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    // SAFETY: BPF_MAP_CREATE reads only `attr`, which holds no address.
    let rc = unsafe { bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative return of BPF_MAP_CREATE is a new descriptor
    // that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// Detaches whatever filter the socket `socket`, one of the daemon's, has.
pub(super) fn detach_socket_filter(socket: RawFd) {
    // SAFETY: as in attach_socket_filter; the kernel path detaches on drop,
    // before the daemon closes its sockets.
    let sock = unsafe { BorrowedFd::borrow_raw(socket) };
    let _ = SocketFilter::detach(sock);
}

/// The buffers of [`batch_walk`], kept from one walk to the next: made
/// anew every walk they were 1.7 MB of fresh pages for the kernel to fault
/// in and zero every rotation.
#[derive(Default)]
pub(super) struct WalkBuffers {
    keys: Vec<GroupKey>,
    values: Vec<KCell>,
}

/// Walks every entry of a generation map with a batch command
/// (BPF_MAP_LOOKUP_BATCH, or ..._AND_DELETE_BATCH to empty it as it goes);
/// `each` gets the key and the per-CPU values. `ncpus` is the number of
/// possible CPUs, for which the kernel keeps a value each. Only for a map
/// no program writes any more.
pub(super) fn batch_walk(
    fd: BorrowedFd<'_>,
    ncpus: usize,
    cmd: bpf_cmd,
    bufs: &mut WalkBuffers,
    mut each: impl FnMut(&GroupKey, &[KCell]),
) -> io::Result<()> {
    const BATCH: usize = 16384;
    bufs.keys.resize(BATCH, GroupKey::zeroed());
    bufs.values.resize(BATCH * ncpus, KCell::default());
    let WalkBuffers { keys, values } = bufs;
    let mut in_token: u32 = 0;
    let mut out_token: u32 = 0;
    let mut first = true;
    loop {
        // SAFETY: bpf_attr is a union of structs of integers, for which all
        // zeroes is a valid value (and the kernel's "unset").
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
        // SAFETY: the kernel writes at most `count` (BATCH) keys of the
        // map's key size, size_of::<GroupKey>(), into `keys` (BATCH keys),
        // and for each the map's per-CPU value of ncpus times 16 bytes
        // (Cell, already a multiple of 8) into `values` (BATCH * ncpus
        // cells); a hash map's batch tokens are one u32, read from
        // `in_token` and written to `out_token`. All of them outlive the
        // call, and `attr` is as large as the size passed.
        let rc = unsafe { bpf(cmd, &mut attr) };
        let err = (rc < 0).then(io::Error::last_os_error);
        // SAFETY: the `batch` member is the one written above (the kernel
        // writes back how many entries it returned), and any u32 is valid.
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

/// BPF_MAP_UPDATE_BATCH of `keys` into a generation map, with `ncpus`
/// per-CPU `values` for each key.
#[cfg(any(test, feature = "bench"))]
pub(super) fn update_batch(
    fd: BorrowedFd<'_>,
    keys: &[GroupKey],
    values: &[KCell],
    ncpus: usize,
) -> io::Result<()> {
    assert_eq!(values.len(), keys.len() * ncpus, "ncpus values per key");
    let mut done = 0usize;
    let per_key = ncpus;
    while done < keys.len() {
        // SAFETY: bpf_attr is a union of structs of integers, for which all
        // zeroes is a valid value (and the kernel's "unset").
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        attr.batch.keys = keys[done..].as_ptr() as u64;
        attr.batch.values = values[done * per_key..].as_ptr() as u64;
        attr.batch.count = (keys.len() - done) as u32;
        attr.batch.map_fd = fd.as_raw_fd() as u32;
        // SAFETY: the kernel only reads: `count` keys of size_of::<GroupKey>()
        // from `keys[done..]`, and ncpus cells for each from
        // `values[done * ncpus..]`, which hold that many (asserted above);
        // `attr` is as large as the size passed.
        let rc = unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_BATCH, &mut attr) };
        // SAFETY: the `batch` member is the one written above (the kernel
        // writes back how many it updated), and any u32 is valid.
        let n = unsafe { attr.batch.count } as usize;
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        done += n.max(1);
    }
    Ok(())
}

/// Empties a generation map one key at a time (lookup, then delete,
/// walking with get_next_key): the slow way, as a benchmark baseline.
/// Returns how many keys it deleted.
#[cfg(any(test, feature = "bench"))]
pub(super) fn delete_per_key(fd: BorrowedFd<'_>, ncpus: usize) -> io::Result<usize> {
    use bpf_cmd::{BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY, BPF_MAP_LOOKUP_ELEM};
    let mut values = vec![KCell::default(); ncpus];
    let mut n = 0;
    let mut key = GroupKey::zeroed();
    // SAFETY: GET_NEXT_KEY writes one key into `key`, a GroupKey.
    if !unsafe { bpf_elem(fd, BPF_MAP_GET_NEXT_KEY, None, &mut key as *mut _ as u64)? } {
        return Ok(0);
    }
    loop {
        // Find the next key before deleting this one: from a deleted key
        // the kernel restarts at the first bucket, which is quadratic.
        let mut next = GroupKey::zeroed();
        // SAFETY: GET_NEXT_KEY writes one key into `next`, a GroupKey.
        let more = unsafe {
            bpf_elem(
                fd,
                BPF_MAP_GET_NEXT_KEY,
                Some(&key),
                &mut next as *mut _ as u64,
            )?
        };
        // SAFETY: LOOKUP_ELEM writes the key's per-CPU value, ncpus cells,
        // into `values`, which holds ncpus cells.
        unsafe {
            bpf_elem(
                fd,
                BPF_MAP_LOOKUP_ELEM,
                Some(&key),
                values.as_mut_ptr() as u64,
            )?
        };
        // SAFETY: DELETE_ELEM reads the key only.
        unsafe { bpf_elem(fd, BPF_MAP_DELETE_ELEM, Some(&key), 0)? };
        n += 1;
        if !more {
            return Ok(n);
        }
        key = next;
    }
}

/// One BPF_MAP_*_ELEM call on `key` (None: the first key for
/// GET_NEXT_KEY); false when the kernel says ENOENT.
///
/// # Safety
///
/// `fd` is a generation map, and `value_or_next` is 0 or the address of
/// a buffer, alive for the call, as large as what `cmd` writes there: a
/// GroupKey for GET_NEXT_KEY, ncpus cells for LOOKUP_ELEM (the number of
/// possible CPUs); DELETE_ELEM writes nothing.
#[cfg(any(test, feature = "bench"))]
unsafe fn bpf_elem(
    fd: BorrowedFd<'_>,
    cmd: bpf_cmd,
    key: Option<&GroupKey>,
    value_or_next: u64,
) -> io::Result<bool> {
    // SAFETY: bpf_attr is a union of structs of integers, for which all
    // zeroes is a valid value (and the kernel's "unset").
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_2.map_fd = fd.as_raw_fd() as u32;
    attr.__bindgen_anon_2.key = key.map_or(0, |k| k as *const GroupKey as u64);
    attr.__bindgen_anon_2.__bindgen_anon_1.value = value_or_next;
    // SAFETY: the kernel reads the key, a GroupKey of the map's key size,
    // from `key` (alive for the call) and writes only into `value_or_next`,
    // which the caller guarantees is large enough; `attr` is as large as
    // the size passed.
    let rc = unsafe { bpf(cmd, &mut attr) };
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

/// bpf(2): runs `cmd` with `attr`; the raw return value (negative with errno
/// set on failure).
///
/// # Safety
///
/// Every address `attr` holds must be valid, for the whole call, for what
/// `cmd` makes the kernel read or write there.
unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> libc::c_long {
    // SAFETY: `attr` is a live bpf_attr of the size passed; what its
    // addresses reach is the caller's promise.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    }
}
