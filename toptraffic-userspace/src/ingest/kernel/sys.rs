//! Every raw system call of the kernel path (bpf(), statfs, mount) and
//! every borrow of a descriptor the kernel path does not own, each with the
//! reason it is sound, so that the rest of the path has no `unsafe`.
//!
//! The map calls take the descriptors of a key set's maps, made by
//! [`create_set_map`] with the types the kernel programs declare them with
//! (the same definitions, from toptraffic-common): the buffers handed to
//! the kernel are sized by those types; no other map may be passed.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
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

/// The maps of a key set, which the daemon makes itself (sized per set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SetMap {
    /// A generation's cells: array of `Cell`, slots x possible CPUs.
    Cells,
    /// Slot to key: array of `GroupKey`.
    KeyOf,
    /// Key to slot: hash of `GroupKey` -> u32, preallocated.
    Keys,
    /// Free slots: queue of u32.
    Free,
}

/// BPF_F_INNER_MAP | BPF_F_MMAPABLE: the arrays are mapped by the daemon,
/// and an epoch's may be larger than the other's.
const ARRAY_FLAGS: u32 = 4096 | 1024;

/// Creates an empty map `kind` of `max_entries` entries, with the type,
/// sizes and flags the programs' outer maps want of it.
pub(super) fn create_set_map(kind: SetMap, max_entries: u32, name: &str) -> io::Result<OwnedFd> {
    use aya_obj::generated::bpf_map_type::*;
    let key = size_of::<GroupKey>() as u32;
    let (map_type, sizes, flags) = match kind {
        SetMap::Cells => (BPF_MAP_TYPE_ARRAY, (4, size_of::<KCell>()), ARRAY_FLAGS),
        SetMap::KeyOf => (BPF_MAP_TYPE_ARRAY, (4, size_of::<GroupKey>()), ARRAY_FLAGS),
        SetMap::Keys => (BPF_MAP_TYPE_HASH, (key, 4), 0),
        SetMap::Free => (BPF_MAP_TYPE_QUEUE, (0, 4), 0),
    };
    create_map(map_type, sizes, flags, max_entries, name)
}

/// BPF_MAP_CREATE of a map with no BTF: `(key, value)` sizes in bytes.
fn create_map(
    map_type: aya_obj::generated::bpf_map_type,
    (key_size, value_size): (u32, usize),
    flags: u32,
    max_entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    // SAFETY: bpf_attr is a union of structs of integers, for which all
    // zeroes is a valid value (and the kernel's "unset").
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: the map-creation member is the one written; each field is a
    // plain integer.
    let a = unsafe { &mut attr.__bindgen_anon_1 };
    a.map_type = map_type as u32;
    a.key_size = key_size;
    a.value_size = value_size as u32;
    a.map_flags = flags;
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

/// Kinds of entry an array map may be mapped as: the two the programs
/// declare their arrays with.
pub(super) trait Entry: Copy {}
impl Entry for KCell {}
impl Entry for GroupKey {}

/// An array map (`SetMap::Cells` or `SetMap::KeyOf`) mapped into the
/// daemon: its entries, in order, are the map's values.
pub(super) struct Mapped<T: Entry> {
    ptr: *mut T,
    len: usize,
    bytes: usize,
}

// SAFETY: the mapping is plain shared memory, owned by this value; moving
// it to another thread moves that ownership (no thread-bound state).
unsafe impl<T: Entry> Send for Mapped<T> {}

impl<T: Entry> Mapped<T> {
    /// Maps the `len` entries of the array map `fd`, created by
    /// [`create_set_map`] with `len` entries of `T` (`Cells`: KCell,
    /// `KeyOf`: GroupKey).
    pub(super) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapped<T>> {
        let page = 4096;
        let bytes = (len * size_of::<T>()).div_ceil(page).max(1) * page;
        // SAFETY: a new shared mapping of `bytes` bytes of the map, which
        // its creation sized at len x size_of::<T>() (the kernel rounds the
        // value size up to 8, which both entry types already are) and
        // BPF_F_MMAPABLE lets map; mmap(2) checks the size against the map.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapped {
            ptr: ptr as *mut T,
            len,
            bytes,
        })
    }

    /// Entry `i`, borrowed where it lies: only for an entry no program
    /// writes while the borrow lives (a `KEY_OF` entry of a slot that is
    /// not on the free queue: a program writes one only after taking its
    /// slot off the queue).
    pub(super) fn settled(&self, i: usize) -> &T {
        assert!(i < self.len);
        // SAFETY: i < len entries of the live mapping, which lives as long
        // as `self`; aligned (page-aligned base, entries of a size that is
        // a multiple of their alignment); no one writes the entry while it
        // is borrowed (the caller's promise), and any bytes are a valid T
        // (plain integers).
        unsafe { &*self.ptr.add(i) }
    }

    /// Writes entry `i` (what a program would: for tests and benchmarks).
    #[cfg(any(test, feature = "bench"))]
    pub(super) fn set(&mut self, i: usize, v: T) {
        assert!(i < self.len);
        // SAFETY: i < len entries of the live mapping, aligned as in
        // `settled`; a volatile write of one entry, as a program makes.
        unsafe { self.ptr.add(i).write_volatile(v) }
    }

    /// All entries, to read and write: only for an array no program writes
    /// any more (a generation swapped out, after the swap's grace period).
    pub(super) fn idle_entries(&mut self) -> &mut [T] {
        // SAFETY: len entries of the live mapping, aligned as in `settled`; no
        // program writes them (the caller's promise) and `&mut self` makes
        // this the only reference the daemon holds.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T: Entry> Drop for Mapped<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping this value made, of `bytes` bytes, unmapped
        // once; no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.bytes) };
    }
}

/// Empties entry `index` of the outer map `fd` (an array of maps), so that
/// it no longer holds the map there.
pub(super) fn clear_outer(fd: BorrowedFd<'_>, index: u32) -> io::Result<()> {
    // SAFETY: bpf_attr is a union of structs of integers, for which all
    // zeroes is a valid value (and the kernel's "unset").
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_2.map_fd = fd.as_raw_fd() as u32;
    attr.__bindgen_anon_2.key = &index as *const u32 as u64;
    // SAFETY: DELETE_ELEM reads the 4-byte key from `index`, alive for the
    // call, and writes nothing.
    if unsafe { bpf(bpf_cmd::BPF_MAP_DELETE_ELEM, &mut attr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pushes `slot` onto the free queue `fd`.
pub(super) fn push_free(fd: BorrowedFd<'_>, slot: u32) -> io::Result<()> {
    // SAFETY: bpf_attr is a union of structs of integers, for which all
    // zeroes is a valid value (and the kernel's "unset").
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_2.map_fd = fd.as_raw_fd() as u32;
    attr.__bindgen_anon_2.__bindgen_anon_1.value = &slot as *const u32 as u64;
    // SAFETY: a queue's UPDATE_ELEM (push) reads its 4-byte value from
    // `slot`, alive for the call, and no key.
    if unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pops a slot off the free queue `fd`, as a program does (for tests and
/// benchmarks); None when it is empty.
#[cfg(any(test, feature = "bench"))]
pub(super) fn pop_free(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    let mut slot = 0u32;
    // SAFETY: bpf_attr is a union of structs of integers, for which all
    // zeroes is a valid value (and the kernel's "unset").
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_2.map_fd = fd.as_raw_fd() as u32;
    attr.__bindgen_anon_2.__bindgen_anon_1.value = &mut slot as *mut u32 as u64;
    // SAFETY: a queue's LOOKUP_AND_DELETE_ELEM (pop) writes its 4-byte
    // value into `slot`, alive for the call, and reads no key.
    if unsafe { bpf(bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_ELEM, &mut attr) } < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(slot))
}

/// Deletes `keys` from the key map `fd` (a `SetMap::Keys`), in one call
/// (BPF_MAP_DELETE_BATCH); keys not in it are skipped.
pub(super) fn delete_keys(fd: BorrowedFd<'_>, keys: &[GroupKey]) -> io::Result<()> {
    let mut done = 0usize;
    while done < keys.len() {
        // SAFETY: bpf_attr is a union of structs of integers, for which all
        // zeroes is a valid value (and the kernel's "unset").
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        attr.batch.keys = keys[done..].as_ptr() as u64;
        attr.batch.count = (keys.len() - done) as u32;
        attr.batch.map_fd = fd.as_raw_fd() as u32;
        // SAFETY: the kernel reads `count` keys of size_of::<GroupKey>(),
        // the map's key size, from `keys[done..]`, which holds that many;
        // `attr` is as large as the size passed.
        let rc = unsafe { bpf(bpf_cmd::BPF_MAP_DELETE_BATCH, &mut attr) };
        // SAFETY: the `batch` member is the one written above (the kernel
        // writes back how many it handled), and any u32 is valid.
        let n = unsafe { attr.batch.count } as usize;
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(e);
            }
        }
        // The batch stops at a key not in the map: skip it.
        done += n + (rc < 0) as usize;
    }
    Ok(())
}

/// Values a key-set or baseline map holds, as the kernel copies them in a
/// batch: u32 (a key's slot) or a `Cell` per CPU (the per-CPU hash of the
/// drain benchmark's baseline).
pub(super) trait Value: Copy + Default {}
impl Value for u32 {}
impl Value for KCell {}

/// BPF_MAP_UPDATE_BATCH of `keys` into the hash `fd`, with `per_key`
/// values each (the possible CPUs of a per-CPU map, else 1); the map's
/// key is a GroupKey and its value a `V`. For tests and benchmarks.
#[cfg(any(test, feature = "bench"))]
pub(super) fn update_batch<V: Value>(
    fd: BorrowedFd<'_>,
    keys: &[GroupKey],
    values: &[V],
    per_key: usize,
) -> io::Result<()> {
    assert_eq!(values.len(), keys.len() * per_key, "per_key values a key");
    let mut done = 0usize;
    while done < keys.len() {
        // SAFETY: bpf_attr is a union of structs of integers, for which all
        // zeroes is a valid value (and the kernel's "unset").
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        attr.batch.keys = keys[done..].as_ptr() as u64;
        attr.batch.values = values[done * per_key..].as_ptr() as u64;
        attr.batch.count = (keys.len() - done) as u32;
        attr.batch.map_fd = fd.as_raw_fd() as u32;
        // SAFETY: the kernel only reads `count` keys of
        // size_of::<GroupKey>() from `keys[done..]` and per_key values of
        // the map's value size (the caller's V) for each from
        // `values[done * per_key..]`, which hold that many (asserted
        // above); `attr` is as large as the size passed.
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

/// Walks every entry of the hash `fd` (key GroupKey, `per_key` values of
/// `V` each) with a batch command: BPF_MAP_LOOKUP_BATCH, or
/// ..._AND_DELETE_BATCH to empty it as it goes (only for a map no program
/// writes); `each` gets the key and its values.
pub(super) fn batch_walk<V: Value>(
    fd: BorrowedFd<'_>,
    per_key: usize,
    cmd: bpf_cmd,
    mut each: impl FnMut(&GroupKey, &[V]),
) -> io::Result<()> {
    const BATCH: usize = 4096;
    let mut keys = vec![GroupKey::zeroed(); BATCH];
    let mut values = vec![V::default(); BATCH * per_key];
    let (mut in_token, mut out_token, mut first) = (0u32, 0u32, true);
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
        // SAFETY: the kernel writes at most `count` (BATCH) keys of
        // size_of::<GroupKey>() into `keys` and per_key values of the
        // map's value size (the caller's V) for each into `values` (BATCH
        // x per_key); a hash map's batch tokens are one u32, read from
        // `in_token` and written to `out_token`. All outlive the call.
        let rc = unsafe { bpf(cmd, &mut attr) };
        let err = (rc < 0).then(io::Error::last_os_error);
        // SAFETY: the `batch` member is the one written above, and any u32
        // is valid.
        let n = (unsafe { attr.batch.count } as usize).min(BATCH);
        for i in 0..n {
            each(&keys[i], &values[i * per_key..(i + 1) * per_key]);
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

/// Every (key, slot) of the key map `fd`: for finding slots the programs
/// gave keys that the daemon never saw counted.
pub(super) fn key_slots(fd: BorrowedFd<'_>) -> io::Result<Vec<(GroupKey, u32)>> {
    let mut out = Vec::new();
    batch_walk::<u32>(fd, 1, bpf_cmd::BPF_MAP_LOOKUP_BATCH, |k, s| {
        out.push((*k, s[0]))
    })?;
    Ok(out)
}

/// A per-CPU hash of GroupKey -> Cell, as the generations were before the
/// key set: the drain benchmark's baseline.
#[cfg(feature = "bench")]
pub(super) fn create_percpu_hash(max_entries: u32) -> io::Result<OwnedFd> {
    create_map(
        aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_PERCPU_HASH,
        (size_of::<GroupKey>() as u32, size_of::<KCell>()),
        0,
        max_entries,
        "BASELINE",
    )
}

/// BPF_OBJ_GET_INFO_BY_FD: fills `info` (a `bpf_*_info`), whose pointer
/// fields the caller has set to buffers of the lengths it gives.
///
/// # Safety
///
/// `info` must be the info struct of `fd`'s kind, and every address in it
/// valid for the kernel to write as many records as its counts say.
#[cfg(feature = "bench")]
pub(super) unsafe fn obj_info<T>(fd: BorrowedFd<'_>, info: &mut T) -> io::Result<()> {
    // SAFETY: bpf_attr is a union of structs of integers, for which all
    // zeroes is a valid value (and the kernel's "unset").
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = size_of::<T>() as u32;
    attr.info.info = info as *mut T as u64;
    // SAFETY: the kernel writes at most info_len bytes into `info`, and
    // what its pointers reach is the caller's promise.
    if unsafe { bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The raw BTF (header, types, strings) of the loaded BTF object `id`.
#[cfg(feature = "bench")]
pub(super) fn btf_bytes(id: u32) -> io::Result<Vec<u8>> {
    use std::os::fd::AsFd;

    use aya_obj::generated::bpf_btf_info;
    // SAFETY: as in clear_outer.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_6.__bindgen_anon_1.btf_id = id;
    // SAFETY: BTF_GET_FD_BY_ID reads only the id.
    let fd = unsafe { bpf(bpf_cmd::BPF_BTF_GET_FD_BY_ID, &mut attr) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that only this function owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: all zeroes is a valid bpf_btf_info with no buffers.
    let mut info: bpf_btf_info = unsafe { std::mem::zeroed() };
    // SAFETY: a BTF object's info, no buffers: the kernel only says its size.
    unsafe { obj_info(fd.as_fd(), &mut info)? };
    let mut bytes = vec![0u8; info.btf_size as usize];
    // SAFETY: as above.
    let mut info: bpf_btf_info = unsafe { std::mem::zeroed() };
    info.btf = bytes.as_mut_ptr() as u64;
    info.btf_size = bytes.len() as u32;
    // SAFETY: the kernel writes at most btf_size bytes at `btf`, `bytes`.
    unsafe { obj_info(fd.as_fd(), &mut info)? };
    Ok(bytes)
}

/// Detaches whatever filter the socket `socket`, one of the daemon's, has.
pub(super) fn detach_socket_filter(socket: RawFd) {
    // SAFETY: as in attach_socket_filter; the kernel path detaches on drop,
    // before the daemon closes its sockets.
    let sock = unsafe { BorrowedFd::borrow_raw(socket) };
    let _ = SocketFilter::detach(sock);
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
