//! toptraffic's kernel programs.
//!
//! `toptraffic_sock` is a socket filter on the daemon's own UDP sockets and
//! `toptraffic_xdp` an XDP program for a named interface. Both copy the
//! payload into a per-CPU scratch area, parse it with `parse::advance` over
//! `bpf_loop`, and then either commit every count to the current generation
//! and consume the datagram, or leave it whole for the socket (userspace).
//!
//! Counts live in slots, not in a hash keyed by the group key: a key's
//! first count takes a free slot from `FREE`, writes the key into the
//! slot's `KEY_OF` entry and maps key to slot in `KEYS`; every count adds to
//! the slot's cell, this CPU's, in the generation's cell array. The daemon
//! reads a generation's cells whole and in order (a few ms for 150,000
//! keys, where a per-CPU hash's walk cost a cache miss a key), knows a new
//! slot's key from `KEY_OF`, and gives back the slots of keys that went
//! idle. No free slot refuses a new key rather than evict one: the datagram
//! then goes to userspace whole, its counts committed so far taken back, so
//! that no line is ever lost to the slots' number.
//!
//! Maps (those of the key sets are by epoch, `KernelConfig::epoch`: a
//! resize fills the other epoch's and flips the config):
//! - `CONFIG`, `CONFIG_SEL`: the rules (`KernelConfig`), written by the
//!   daemon.
//! - `GENERATION`: by epoch, the cell array the programs write. The daemon
//!   swaps in a spare every interval and reads the old.
//! - `KEYS`, `KEY_OF`, `FREE`: by epoch, key to slot, slot to key, and the
//!   free slots.
//! - `COUNTERS`: per-CPU totals by `counter::*` index.
//! - `SCRATCH`: per-CPU parse area.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {
    // Built for the host only so that workspace-wide checks compile it; the
    // programs exist for the BPF target.
}

#[cfg(target_arch = "bpf")]
mod programs {
    use core::ffi::c_void;

    use aya_ebpf::bindings::{
        bpf_hdr_start_off, xdp_action, BPF_F_INNER_MAP, BPF_F_MMAPABLE, BPF_NOEXIST,
    };
    use aya_ebpf::btf_maps::{Array, ArrayOfMaps, HashMap, PerCpuArray, Queue};
    use aya_ebpf::helpers::generated::{
        bpf_get_smp_processor_id, bpf_loop, bpf_skb_load_bytes, bpf_skb_load_bytes_relative,
        bpf_xdp_load_bytes,
    };
    use aya_ebpf::macros::{btf_map, socket_filter, xdp};
    use aya_ebpf::programs::{SkBuffContext, XdpContext};
    use toptraffic_common::{
        counter, Cell, GroupKey, KernelConfig, BUF_LEN, MAX_ITEMS, MAX_LINES, XDP_IPV4, XDP_IPV6,
    };
    use toptraffic_ebpf::parse::{self, Scratch, DROP_FILTERED, DROP_MISSING_FIELD, DROP_UNKNOWN};

    /// The daemon maps the arrays (mmap) to read them; INNER_MAP lets an
    /// epoch's arrays have their own size.
    const ARRAY_FLAGS: usize = (BPF_F_INNER_MAP | BPF_F_MMAPABLE) as usize;
    type CellArray = Array<Cell, 1, ARRAY_FLAGS>;
    type KeyArray = Array<GroupKey, 1, ARRAY_FLAGS>;
    type KeyMap = HashMap<GroupKey, u32, 1>;
    type FreeQueue = Queue<u32, 1>;

    /// Two slots, and `CONFIG_SEL` says which one is live: a reload writes
    /// the other slot whole and then flips the selector, so no program
    /// reads a half-written config.
    #[btf_map]
    static CONFIG: Array<KernelConfig, 2> = Array::new();
    #[btf_map]
    static CONFIG_SEL: Array<u32, 1> = Array::new();
    #[btf_map]
    static COUNTERS: PerCpuArray<u64, { counter::COUNT as usize }> = PerCpuArray::new();
    #[btf_map]
    static SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();
    #[btf_map]
    static GENERATION: ArrayOfMaps<CellArray, 2> = ArrayOfMaps::new();
    #[btf_map]
    static KEYS: ArrayOfMaps<KeyMap, 2> = ArrayOfMaps::new();
    #[btf_map]
    static KEY_OF: ArrayOfMaps<KeyArray, 2> = ArrayOfMaps::new();
    #[btf_map]
    static FREE: ArrayOfMaps<FreeQueue, 2> = ArrayOfMaps::new();

    /// The config slot the selector names.
    #[inline(always)]
    fn live_config() -> Option<*const KernelConfig> {
        let sel = CONFIG_SEL.get(0).copied().unwrap_or(0) & 1;
        CONFIG.get_ptr(sel)
    }

    /// What the parse decided for a datagram.
    enum Verdict {
        /// Counted in the kernel: drop it.
        Counted,
        /// For userspace: deliver it whole.
        Pass,
    }

    #[inline(always)]
    fn add(index: u32, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(c) = COUNTERS.get_ptr_mut(index) {
            // SAFETY: get_ptr_mut gave a non-null pointer to this CPU's u64
            // in COUNTERS (index checked by the map), valid for the run; the
            // programs do not nest on one CPU here, so no one else writes it.
            unsafe { *c += n };
        }
    }

    /// The maps of the key set a run counts in, looked up once: a swap or
    /// a resize during the run must not split its counts (or its totals).
    #[repr(C)]
    struct Set {
        /// The generation's cells.
        cells: *const CellArray,
        keys: *const KeyMap,
        key_of: *const KeyArray,
        free: *const FreeQueue,
        /// This CPU's first cell: cpu x slots.
        base: u32,
        _pad: u32,
    }

    /// Handed to the bpf_loop callbacks.
    #[repr(C)]
    struct LoopCtx {
        s: *mut Scratch,
        cfg: *const KernelConfig,
        set: Set,
        /// Lines owned: those one of whose items was committed.
        owned: u32,
        /// 1 from a line's first item until one of its items is committed:
        /// that item's rule owns the line.
        pending: u32,
    }

    extern "C" fn parse_cb(_: u32, ctx: *mut c_void) -> i64 {
        // SAFETY: ctx is what parse_and_commit handed bpf_loop: its LoopCtx,
        // on its stack, alive until bpf_loop returns and not touched by it
        // meanwhile; the callbacks run one at a time, so this borrow is the
        // only one.
        let c = unsafe { &mut *(ctx as *mut LoopCtx) };
        // SAFETY: s is this CPU's SCRATCH value and cfg the live CONFIG
        // slot, both non-null (checked before the loop) and valid for the
        // whole run; parse_and_commit holds no reference to the scratch
        // during the loop, and the daemon never writes the live slot.
        let (s, cfg) = unsafe { (&mut *c.s, &*c.cfg) };
        // A line of the learned shape in one go.
        if let Some(go) = parse::try_shape(s, cfg) {
            return if go { 0 } else { 1 };
        }
        // Four tokens a call: a callback's call and return cost more than
        // their instructions where the kernel mitigates SRSO (every return
        // through a thunk), and a seed line is about 13 tokens. Written out
        // rather than as a loop, which the verifier walks once per
        // iteration's state (4 in a loop: 461k instructions, against 196k
        // straight; 6 and 8 gained nothing more, docs/BENCHMARKS.md
        // section 10).
        if parse::advance(s, cfg)
            && parse::advance(s, cfg)
            && parse::advance(s, cfg)
            && parse::advance(s, cfg)
        {
            0
        } else {
            1
        }
    }

    extern "C" fn learn_cb(_: u32, ctx: *mut c_void) -> i64 {
        // SAFETY: as in parse_cb: the caller's LoopCtx, borrowed once.
        let c = unsafe { &mut *(ctx as *mut LoopCtx) };
        // SAFETY: as in parse_cb: this CPU's scratch and the live config,
        // valid for the run, no other reference to them meanwhile.
        let (s, cfg) = unsafe { (&mut *c.s, &*c.cfg) };
        parse::learn(s, cfg);
        1
    }

    extern "C" fn rule_cb(i: u32, ctx: *mut c_void) -> i64 {
        // SAFETY: as in parse_cb: the caller's LoopCtx, borrowed once.
        let c = unsafe { &mut *(ctx as *mut LoopCtx) };
        // SAFETY: as in parse_cb: this CPU's scratch and the live config,
        // valid for the run, no other reference to them meanwhile.
        let (s, cfg) = unsafe { (&mut *c.s, &*c.cfg) };
        // Two rule checks a call, for the reason of parse_cb's four tokens.
        // (Two items a commit_cb call as well took the verifier to 868k
        // instructions for no gain beyond the runs' spread.)
        let n = parse::rules_per_line(cfg);
        let total = s.st.n_general * n;
        let first = i * 2;
        if eval_at(s, cfg, n, first) && (first + 1 >= total || eval_at(s, cfg, n, first + 1)) {
            0
        } else {
            1
        }
    }

    /// Rule `i % n` of line `i / n`, `n` the rules a line.
    #[inline(always)]
    fn eval_at(s: &mut Scratch, cfg: &KernelConfig, n: u32, i: u32) -> bool {
        // rules_per_line is at least 1: checked only so that no panic
        // path is compiled in.
        let (Some(g), Some(r)) = (i.checked_div(n), i.checked_rem(n)) else {
            return false;
        };
        let l = s.st.general[(g & (MAX_LINES - 1)) as usize] as u32;
        parse::eval_rule(s, cfg, l, r)
    }

    extern "C" fn commit_cb(i: u32, ctx: *mut c_void) -> i64 {
        // SAFETY: as in parse_cb: the caller's LoopCtx, borrowed once.
        let c = unsafe { &mut *(ctx as *mut LoopCtx) };
        // SAFETY: as in parse_cb: this CPU's scratch, valid for the run;
        // only its `key`, the items' `committed` and `cell` and, at a full
        // map, `st.bail` are written during this loop, through this borrow.
        let s = unsafe { &mut *c.s };
        let Some(item) = s.items.get_mut((i as usize) & (MAX_ITEMS - 1)) else {
            return 1;
        };
        let key = &mut s.key;
        parse::build_key(&s.buf, item, key);
        if item.owner != 0 {
            c.pending = 1;
        }
        match bump(&c.set, key, c.pending, item.value) {
            Bump::Added(slot) => {
                item.cell = slot;
                item.committed = parse::COMMITTED | (c.pending * parse::OWNED);
                c.owned += c.pending;
                c.pending = 0;
                0
            }
            Bump::CellFull => 0,
            Bump::MapFull => {
                // In the scratch, not in `c`: the verifier tracks the
                // caller's stack exactly, and another value there would
                // have it verify this callback once more.
                s.st.bail = counter::PASS_MAP_FULL;
                1
            }
        }
    }

    /// Takes back item `i`'s count if commit_cb committed it: the datagram
    /// goes to userspace, which counts all of its lines.
    extern "C" fn undo_cb(i: u32, ctx: *mut c_void) -> i64 {
        // SAFETY: as in parse_cb: the caller's LoopCtx, borrowed once.
        let c = unsafe { &mut *(ctx as *mut LoopCtx) };
        // SAFETY: as in parse_cb: this CPU's scratch, valid for the run;
        // nothing of it is written during this loop.
        let s = unsafe { &*c.s };
        let Some(item) = s.items.get((i as usize) & (MAX_ITEMS - 1)) else {
            return 1;
        };
        if item.committed & parse::COMMITTED == 0 {
            return 0;
        }
        // The slot the commit added to, not the key's slot now: the daemon
        // may have taken the key's slot back meanwhile, and it reads that
        // slot's cells once more before it frees it.
        if let Some(cell) = cells(&c.set).get_ptr_mut(c.set.base.wrapping_add(item.cell)) {
            let owned = (item.committed & parse::OWNED != 0) as u32;
            // SAFETY: as in bump: this CPU's Cell, valid for the run, written
            // by no one else; the add being undone was this run's, on this
            // CPU, so the cell holds it.
            unsafe { (*cell).undo(1, owned, item.value) };
        }
        0
    }

    /// What [`bump`] did with a count.
    enum Bump {
        /// In this slot's cell.
        Added(u32),
        /// The key's cell is at u32::MAX lines: the line goes to its next
        /// rule that takes it, or is lost (`counter::LOST_LINES`).
        CellFull,
        /// The key has no slot and there is no free one.
        MapFull,
    }

    // The set's maps: non-null inner maps the outer maps gave before the
    // loops; they stay alive while a program that looked them up runs (a
    // swap or a resize waits for an RCU grace period before it frees or
    // reads them).
    #[inline(always)]
    fn cells(set: &Set) -> &CellArray {
        // SAFETY: see above.
        unsafe { &*set.cells }
    }

    /// The slot of `key`: its own, or a free one it is given now.
    #[inline(always)]
    fn slot_of(set: &Set, key: &GroupKey) -> Option<u32> {
        // SAFETY: see `cells`.
        let (keys, key_of, free) = unsafe { (&*set.keys, &*set.key_of, &*set.free) };
        if let Some(s) = keys.get_ptr(key) {
            // SAFETY: a non-null pointer to the entry's u32, valid for the
            // run (the element is freed only after an RCU grace period).
            return Some(unsafe { *s });
        }
        let Ok(Some(slot)) = free.pop() else {
            return None;
        };
        // The key first, then the mapping: a slot the daemon finds counted
        // has its key in KEY_OF.
        let Some(k) = key_of.get_ptr_mut(slot) else {
            // Never (the daemon pushes only slots of this set): back on
            // the queue as it came.
            let _ = free.push(slot, 0);
            return None;
        };
        copy_key(key, k);
        // Another CPU may give the same key a slot meanwhile: then NOEXIST
        // fails, this slot goes back, and the lookup finds theirs.
        if keys.insert(key, slot, BPF_NOEXIST as u64).is_ok() {
            return Some(slot);
        }
        let _ = free.push(slot, 0);
        // SAFETY: as the first lookup.
        keys.get_ptr(key).map(|s| unsafe { *s })
    }

    /// Copies a key a word at a time: a struct copy may become a call to
    /// aya-ebpf's memcpy, a loop a byte.
    #[inline(always)]
    fn copy_key(from: &GroupKey, to: *mut GroupKey) {
        const WORDS: usize = core::mem::size_of::<GroupKey>() / 8;
        let src = from as *const GroupKey as *const u64;
        let dst = to as *mut u64;
        let mut w = 0;
        while w < WORDS {
            // SAFETY: word w < WORDS of two 8-aligned GroupKeys (GroupKey is
            // align(8) and a multiple of 8 bytes): `from`, a reference, and
            // `to`, a non-null entry of KEY_OF owned by this run (its slot
            // came off the free queue).
            unsafe { core::ptr::write_volatile(dst.add(w), core::ptr::read_volatile(src.add(w))) };
            w += 1;
        }
    }

    /// Adds one line, `owned` (0 or 1) of it owned, of value `sum`, to
    /// `key`'s slot in the current generation.
    #[inline(always)]
    fn bump(set: &Set, key: &GroupKey, owned: u32, sum: i64) -> Bump {
        let Some(slot) = slot_of(set, key) else {
            return Bump::MapFull;
        };
        let Some(cell) = cells(set).get_ptr_mut(set.base.wrapping_add(slot)) else {
            return Bump::MapFull;
        };
        // SAFETY: cell is non-null (get_ptr_mut returned it) and is this
        // CPU's cell of the slot (base is this CPU's), valid for the run;
        // the programs do not nest on one CPU, so no one else writes it.
        if unsafe { (*cell).add(1, owned, sum) } {
            Bump::Added(slot)
        } else {
            Bump::CellFull
        }
    }

    /// Parses the payload already in the scratch buffer and commits it.
    #[inline(always)]
    fn parse_and_commit(
        s: *mut Scratch,
        cfg: *const KernelConfig,
        len: u32,
        datagram_counter: u32,
    ) -> Verdict {
        // SAFETY: cfg is the live config, as in parse_cb.
        let (epoch, slots) = unsafe { ((*cfg).epoch & 1, (*cfg).slots) };
        let (Some(cells), Some(keys), Some(key_of), Some(free)) = (
            GENERATION.get(epoch),
            KEYS.get(epoch),
            KEY_OF.get(epoch),
            FREE.get(epoch),
        ) else {
            add(counter::PASS_INTERNAL, 1);
            return Verdict::Pass;
        };
        // SAFETY: a helper without arguments.
        let cpu = unsafe { bpf_get_smp_processor_id() };
        // SAFETY: s is this CPU's SCRATCH value, non-null (the callers
        // checked) and valid for the run, and no reference to it is alive.
        unsafe { (*s).st.start(len) };
        let mut ctx = LoopCtx {
            s,
            cfg,
            set: Set {
                cells,
                keys,
                key_of,
                free,
                base: cpu.wrapping_mul(slots),
                _pad: 0,
            },
            owned: 0,
            pending: 0,
        };
        let ctx_ptr = &mut ctx as *mut LoopCtx as *mut c_void;
        // Enough calls to finish (see parse::pass1_calls).
        // SAFETY: bpf_loop calls parse_cb, an extern "C" fn(u32, *mut
        // c_void) -> i64 as it wants, with ctx_ptr, which points at `ctx`
        // on this stack frame, alive across the call; flags must be 0.
        unsafe { bpf_loop(parse::pass1_calls(len), parse_cb as *mut c_void, ctx_ptr, 0) };
        // SAFETY: reads through s, valid as above; parse_cb's borrows of
        // the scratch ended when bpf_loop returned.
        if unsafe { (*s).st.bail == 0 && (*s).st.pos <= len } {
            // SAFETY: writes through s, valid as above; no borrow is alive.
            unsafe { (*s).st.bail = counter::PASS_INTERNAL };
        }
        // SAFETY: reads through s, valid as above; no borrow is alive.
        if unsafe { (*s).st.bail == 0 && (*s).st.learn_pending != 0 } {
            // In a callback of its own: its ways out all end there, where
            // inline each would have the verifier walk the rest of the
            // program once more.
            // SAFETY: as the first bpf_loop, with learn_cb.
            unsafe { bpf_loop(1, learn_cb as *mut c_void, ctx_ptr, 0) };
        }
        // SAFETY: reads through s, valid as above; no borrow is alive.
        let lines = unsafe { (*s).st.n_general };
        // SAFETY: reads through s, valid as above; no borrow is alive.
        if unsafe { (*s).st.bail } == 0 && lines > 0 {
            // A call per rule of each line pass 1 left (see
            // parse::eval_rule).
            // SAFETY: cfg is the live config, as in parse_cb.
            let calls = lines * parse::rules_per_line(unsafe { &*cfg });
            // SAFETY: as the first bpf_loop, with rule_cb.
            unsafe { bpf_loop(calls.div_ceil(2), rule_cb as *mut c_void, ctx_ptr, 0) };
        }
        // SAFETY: s valid as above; rule_cb's borrows ended when bpf_loop
        // returned, and `st` is last used before commit_cb, which writes
        // the scratch, runs.
        let st = unsafe { &(*s).st };
        if st.bail != 0 {
            add(st.bail, 1);
            return Verdict::Pass;
        }
        let n_items = st.n_items;
        let (points, drops) = (st.points, st.drops);
        if n_items > 0 {
            // SAFETY: as the first bpf_loop, with commit_cb.
            unsafe { bpf_loop(n_items, commit_cb as *mut c_void, ctx_ptr, 0) };
            // SAFETY: reads through s, valid as above; commit_cb's borrows
            // ended when bpf_loop returned.
            let bail = unsafe { (*s).st.bail };
            if bail != 0 {
                // No slot for a key: take back what the items before it
                // committed (the items after it are not marked). Slots this
                // run gave keys stay theirs, with nothing in their cells.
                // SAFETY: as the first bpf_loop, with undo_cb.
                unsafe { bpf_loop(n_items, undo_cb as *mut c_void, ctx_ptr, 0) };
                add(bail, 1);
                return Verdict::Pass;
            }
        }
        add(datagram_counter, 1);
        add(counter::POINTS, points as u64);
        add(
            counter::DROP_UNKNOWN_MEASUREMENT,
            drops[DROP_UNKNOWN] as u64,
        );
        add(counter::DROP_FILTERED, drops[DROP_FILTERED] as u64);
        add(
            counter::DROP_MISSING_FIELD,
            drops[DROP_MISSING_FIELD] as u64,
        );
        // Every line with an item has one owner unless the cells refused
        // all of its items.
        add(
            counter::LOST_LINES,
            (points as u64).saturating_sub(ctx.owned as u64),
        );
        Verdict::Counted
    }

    #[socket_filter]
    pub fn toptraffic_sock(ctx: SkBuffContext) -> i64 {
        sock(&ctx)
    }

    #[inline(always)]
    fn sock(ctx: &SkBuffContext) -> i64 {
        let whole = ctx.len() as i64;
        match try_sock(ctx) {
            Verdict::Counted => 0,
            Verdict::Pass => whole,
        }
    }

    /// A socket filter sees the skb from the UDP header: the payload is at 8.
    const UDP_HEADER: u32 = 8;

    /// On every socket of the daemon's SO_REUSEPORT group but the first. A
    /// unicast datagram reaches one socket of the group, but a broadcast or
    /// multicast one reaches each: this filter leaves those copies empty
    /// (the UDP header only), which the receive threads skip, so that only
    /// the first socket counts them. Emptied rather than dropped: a drop
    /// would count as a socket drop (`receive_queue`).
    #[socket_filter]
    pub fn toptraffic_sock_peer(ctx: SkBuffContext) -> i64 {
        if not_unicast(&ctx) {
            add(counter::PEER_COPIES, 1);
            return UDP_HEADER as i64;
        }
        sock(&ctx)
    }

    const PACKET_HOST: u32 = 0;
    const ETH_P_IP_BE: u32 = 0x0008; // htons(0x0800), as __sk_buff holds it

    /// Whether the datagram was sent to a broadcast or multicast address:
    /// a frame that was not for this host alone (broadcast, multicast, or
    /// looped back from a local broadcast or multicast send), or, on
    /// loopback where every frame is the host's, an IPv4 destination of
    /// 224.0.0.0 and up (multicast, 255.255.255.255) or 127.255.255.255.
    /// The same test as the userspace receive sockets' classic filter.
    #[inline(always)]
    fn not_unicast(ctx: &SkBuffContext) -> bool {
        // SAFETY: ctx.skb.skb is this run's context, a valid __sk_buff whose
        // pkt_type and protocol socket filters may read.
        let (pkt_type, proto) = unsafe { ((*ctx.skb.skb).pkt_type, (*ctx.skb.skb).protocol) };
        if pkt_type != PACKET_HOST {
            return true;
        }
        if proto != ETH_P_IP_BE {
            return false;
        }
        let mut daddr = [0u8; 4];
        // SAFETY: the helper writes 4 bytes into `daddr`, 4 bytes on this
        // stack; it checks offset 16 (the IPv4 destination) against the
        // network header itself.
        let rc = unsafe {
            bpf_skb_load_bytes_relative(
                ctx.skb.skb as *const c_void,
                16,
                daddr.as_mut_ptr() as *mut c_void,
                4,
                bpf_hdr_start_off::BPF_HDR_START_NET,
            )
        };
        let d = u32::from_be_bytes(daddr);
        rc == 0 && (d >= 0xe000_0000 || d == 0x7fff_ffff)
    }

    #[inline(always)]
    fn try_sock(ctx: &SkBuffContext) -> Verdict {
        let total = ctx.len();
        if total < UDP_HEADER {
            return Verdict::Pass;
        }
        let len = total - UDP_HEADER;
        let Some(cfg) = live_config() else {
            add(counter::PASS_INTERNAL, 1);
            return Verdict::Pass;
        };
        // SAFETY: live_config gave a non-null pointer to the live CONFIG
        // slot, valid for the run; the daemon writes only the other slot.
        if parse::too_long(len, unsafe { &*cfg }) {
            add(counter::PASS_TOO_LONG, 1);
            return Verdict::Pass;
        }
        let Some(s) = SCRATCH.get_ptr_mut(0) else {
            add(counter::PASS_INTERNAL, 1);
            return Verdict::Pass;
        };
        if len > 0 {
            // Equal to len (1..=BUF_LEN), written so that the verifier sees
            // the bounds: without it, it lost them and refused a zero size.
            let n = ((len - 1) & (BUF_LEN as u32 - 1)) + 1;
            // SAFETY: the helper writes n bytes into the scratch buffer, of
            // BUF_LEN bytes in this CPU's non-null SCRATCH value, and
            // 0 < n <= BUF_LEN; it checks the offset and n against the skb
            // itself, and ctx.skb.skb is this run's context.
            let rc = unsafe {
                bpf_skb_load_bytes(
                    ctx.skb.skb as *const c_void,
                    UDP_HEADER,
                    (*s).buf.as_mut_ptr() as *mut c_void,
                    n,
                )
            };
            if rc != 0 {
                add(counter::PASS_INTERNAL, 1);
                return Verdict::Pass;
            }
        }
        parse_and_commit(s, cfg, len, counter::SF_DATAGRAMS)
    }

    /// The benchmarks' floor: counts and drops every datagram without
    /// looking at it, so the receive path's own cost can be measured.
    #[btf_map]
    static FLOOR: PerCpuArray<u64, 1> = PerCpuArray::new();

    #[socket_filter]
    pub fn toptraffic_floor(_ctx: SkBuffContext) -> i64 {
        if let Some(c) = FLOOR.get_ptr_mut(0) {
            // SAFETY: get_ptr_mut gave a non-null pointer to this CPU's u64
            // in FLOOR, valid for the run; the programs do not nest on one
            // CPU here, so no one else writes it.
            unsafe { *c += 1 };
        }
        0
    }

    #[xdp]
    pub fn toptraffic_xdp(ctx: XdpContext) -> u32 {
        match try_xdp(&ctx) {
            Some(Verdict::Counted) => xdp_action::XDP_DROP,
            _ => xdp_action::XDP_PASS,
        }
    }

    const ETH_HLEN: usize = 14;
    const ETH_P_IP: u16 = 0x0800;
    const ETH_P_IPV6: u16 = 0x86dd;
    /// The fixed IPv6 header; extension headers are left to the stack.
    const IPV6_HLEN: usize = 40;
    const IPPROTO_UDP: u8 = 17;

    /// Reads a `T` at `off` of the packet, bounds-checked for the verifier.
    #[inline(always)]
    fn at<T>(ctx: &XdpContext, off: usize) -> Option<*const T> {
        let start = ctx.data();
        let end = ctx.data_end();
        if start + off + core::mem::size_of::<T>() > end {
            return None;
        }
        Some((start + off) as *const T)
    }

    /// The offset of the UDP header of an IPv4 or IPv6 packet (the families
    /// `cfg.families` names) to the daemon's address; None for anything else.
    #[inline(always)]
    fn udp_offset(ctx: &XdpContext, cfg: &KernelConfig) -> Option<usize> {
        // The packet reads: at() returns a pointer only when the whole value
        // lies in [data, data_end), the packet's readable bytes (which the
        // verifier checks again). They may be unaligned (the address at 30),
        // which a plain `*` on the host would not allow: on the BPF target a
        // load from packet memory need not be aligned, and where the kernel
        // wants it aligned (strict alignment) the verifier refuses the
        // program instead of running it.
        // SAFETY: in bounds, see above.
        let proto = u16::from_be(unsafe { *at::<u16>(ctx, 12)? });
        if proto == ETH_P_IPV6 {
            if cfg.families & XDP_IPV6 == 0 {
                return None;
            }
            // SAFETY: in bounds, see the first read.
            if unsafe { *at::<u8>(ctx, ETH_HLEN)? } >> 4 != 6 {
                return None;
            }
            // A next header other than UDP (fragments and every other
            // extension header among them) is left to the stack.
            // SAFETY: in bounds, see the first read.
            if unsafe { *at::<u8>(ctx, ETH_HLEN + 6)? } != IPPROTO_UDP {
                return None;
            }
            // SAFETY: in bounds, see the first read.
            let hi = unsafe { *at::<u64>(ctx, ETH_HLEN + 24)? };
            // SAFETY: in bounds, see the first read.
            let lo = unsafe { *at::<u64>(ctx, ETH_HLEN + 32)? };
            let any = cfg.addr6[0] == 0 && cfg.addr6[1] == 0;
            if !any && (hi != cfg.addr6[0] || lo != cfg.addr6[1]) {
                return None;
            }
            return Some(ETH_HLEN + IPV6_HLEN);
        }
        if proto != ETH_P_IP || cfg.families & XDP_IPV4 == 0 {
            return None;
        }
        // SAFETY: in bounds, see the first read.
        let vihl = unsafe { *at::<u8>(ctx, ETH_HLEN)? };
        let ihl = ((vihl & 0x0f) as usize) * 4;
        if vihl >> 4 != 4 || ihl < 20 {
            return None;
        }
        // SAFETY: in bounds, see the first read.
        if unsafe { *at::<u8>(ctx, ETH_HLEN + 9)? } != IPPROTO_UDP {
            return None;
        }
        // Fragments are left to the stack, which reassembles them.
        // SAFETY: in bounds, see the first read.
        let frag = u16::from_be(unsafe { *at::<u16>(ctx, ETH_HLEN + 6)? });
        if frag & 0x3fff != 0 {
            return None;
        }
        // SAFETY: in bounds, see the first read.
        let daddr = unsafe { *at::<u32>(ctx, ETH_HLEN + 16)? };
        if cfg.addr != 0 && daddr != cfg.addr {
            return None;
        }
        Some(ETH_HLEN + (ihl & 0x3c))
    }

    /// Counts IPv4 or IPv6 UDP to the daemon's port; None (pass) for
    /// anything else.
    #[inline(always)]
    fn try_xdp(ctx: &XdpContext) -> Option<Verdict> {
        // SAFETY: live_config gave a non-null pointer to the live CONFIG
        // slot, valid for the run; the daemon writes only the other slot.
        let cfg = unsafe { &*live_config()? };
        // At most 14 + 60 (IPv4) or 14 + 40 (IPv6): the mask is for the
        // verifier, which then knows the bound of the reads below.
        let udp = udp_offset(ctx, cfg)? & 0x7f;
        // SAFETY: in bounds, see udp_offset's reads.
        let dport = u16::from_be(unsafe { *at::<u16>(ctx, udp + 2)? });
        if dport as u32 != cfg.port {
            return None;
        }
        // SAFETY: in bounds, see udp_offset's reads.
        let ulen = u16::from_be(unsafe { *at::<u16>(ctx, udp + 4)? }) as u32;
        if ulen < 8 {
            return None;
        }
        let len = ulen - 8;
        if parse::too_long(len, cfg) {
            add(counter::PASS_TOO_LONG, 1);
            return Some(Verdict::Pass);
        }
        let s = SCRATCH.get_ptr_mut(0)?;
        if len > 0 {
            // As in try_sock: len, with bounds the verifier can see.
            let n = ((len - 1) & (BUF_LEN as u32 - 1)) + 1;
            // SAFETY: as in try_sock: n bytes, 0 < n <= BUF_LEN, into the
            // BUF_LEN-byte buffer of this CPU's non-null SCRATCH value; the
            // helper checks the offset and n against the packet, and ctx.ctx
            // is this run's context.
            let rc = unsafe {
                bpf_xdp_load_bytes(
                    ctx.ctx,
                    (udp + 8) as u32,
                    (*s).buf.as_mut_ptr() as *mut c_void,
                    n,
                )
            };
            if rc != 0 {
                add(counter::PASS_INTERNAL, 1);
                return Some(Verdict::Pass);
            }
        }
        Some(parse_and_commit(s, cfg, len, counter::XDP_DATAGRAMS))
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[link_section = "license"]
    #[no_mangle]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}
