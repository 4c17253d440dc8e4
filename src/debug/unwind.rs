//! Stack walking: the return addresses of a suspended context (with
//! `framehop`, from registers `arch` reads back out of the context) or of
//! the calling thread (with the `backtrace` crate). Why two unwinders: see
//! the module header of `debug`.
//!
//! The unwind tables are read once, by the first walk, from every object
//! `dl_iterate_phdr` reports (the executable, libc, the vDSO, any shared
//! library): `PT_GNU_EH_FRAME` locates `.eh_frame_hdr`, whose header points
//! at `.eh_frame`. Both are copied out of the mapped object while the loader
//! lock is held, so a later `dlclose` can't leave framehop reading unmapped
//! memory. An object loaded after that first walk has no CFI here: its
//! frames are walked by frame pointer, as framehop does for any address no
//! table covers.
//!
//! Invariants of a suspended walk, which may race with the goroutine being
//! resumed and its stack rewritten or unmapped: the walk reads a kernel-made
//! copy of the stack ([`StackCopy`]), never the live stack (a word outside
//! the copy reads as the end of the stack), the stack pointer must rise
//! with every frame, and at most [`MAX_FRAMES`] frames are produced. So
//! garbage in, garbage out, but no fault, no data race and no endless loop.
//!
//! Where walks end: at the goroutine entry trampoline, whose CFI says the
//! return address is undefined (framehop's "end of stack"); at a frame
//! framehop cannot unwind; or at the async-preemption trampoline, whose CFA
//! is anchored in rbx, a register framehop does not track. That last stop is
//! theoretical for now: a preempted goroutine is not suspended by `switch`
//! (its M sleeps inside the preemption hook), so its `Context` is stale and
//! its trace must start from the interrupted registers instead.

use std::ffi::{CStr, c_int, c_void};
use std::ops::Range;
use std::sync::{Mutex, OnceLock, PoisonError};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};

use crate::arch::{self, SuspendedRegs};

/// Frames produced at most: deeper real stacks are cut (a dump does not
/// need them), and a walk over garbage stops here at the latest.
const MAX_FRAMES: usize = 128;

/// The unwind tables of the loaded objects and framehop's rule cache. The
/// cache is behind a mutex because framehop mutates it on every frame; walks
/// are rare (dumps), so contention does not matter.
struct Tables {
    unwinder: UnwinderX86_64<Vec<u8>>,
    cache: Mutex<CacheX86_64>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut unwinder = UnwinderX86_64::new();
        for module in loaded_modules() {
            unwinder.add_module(module);
        }
        Tables {
            unwinder,
            cache: Mutex::new(CacheX86_64::new()),
        }
    })
}

/// The part of a suspended goroutine's stack a walk may read, copied by
/// the kernel (`os::read_own_memory_many`): the goroutine may resume and rewrite
/// its stack, or end and have it unmapped, while a dump walks it, so the
/// walk reads this copy instead — stale at worst, never a fault or a race.
pub(crate) struct StackCopy {
    base: usize,
    words: Vec<u64>,
}

impl StackCopy {
    /// Copy `range` (8-byte aligned ends); fails if any of it is unmapped.
    #[cfg(test)]
    pub(crate) fn take(range: Range<usize>) -> std::io::Result<StackCopy> {
        let mut taken = None;
        StackCopy::take_many(&[range], |_, copy| {
            taken = copy.map(|c| StackCopy {
                base: c.base,
                words: c.words.clone(),
            })
        });
        taken.ok_or_else(|| std::io::Error::from_raw_os_error(libc::EFAULT))
    }

    /// Copy each of `ranges` (8-byte aligned ends) with few system calls
    /// (`os::read_own_memory_many`) and call `each` with its index and its
    /// copy, `None` if any of it is unmapped, in order. The ranges are
    /// copied a chunk at a time into one buffer, which stays in the cache,
    /// and every copy handed out reuses the same memory: a dump of 100,000
    /// stacks allocates no more than a dump of one.
    pub(crate) fn take_many(ranges: &[Range<usize>], mut each: impl FnMut(usize, Option<&StackCopy>)) {
        /// Ranges copied per chunk: a few hundred KiB of a typical stack.
        const CHUNK: usize = 256;
        let mut buf: Vec<u64> = Vec::new();
        let mut copy = StackCopy {
            base: 0,
            words: Vec::new(),
        };
        for (c, chunk) in ranges.chunks(CHUNK).enumerate() {
            let words = |r: &Range<usize>| r.len().div_ceil(8);
            buf.clear();
            buf.resize(chunk.iter().map(words).sum(), 0);
            let bytes: Vec<Range<usize>> = chunk.iter().map(|r| r.start..r.start + words(r) * 8).collect();
            // SAFETY: the memory of `buf`, viewed as bytes: any byte
            // pattern is a valid u64, and `buf` is not used meanwhile.
            let view = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 8) };
            let copied = crate::os::read_own_memory_many(&bytes, view);
            let mut at = 0;
            for (i, (range, copied)) in chunk.iter().zip(copied).enumerate() {
                let n = words(range);
                let whole = copied.then(|| {
                    copy.base = range.start;
                    copy.words.clear();
                    copy.words.extend_from_slice(&buf[at..at + n]);
                    &copy
                });
                each(c * CHUNK + i, whole);
                at += n;
            }
        }
    }

    /// A copy made elsewhere (the CPU profiler's signal handler): `words`
    /// read from `base` up.
    pub(crate) fn from_words(base: usize, words: Vec<u64>) -> StackCopy {
        StackCopy { base, words }
    }

    /// The word at `addr`, if it is 8-aligned and inside the copy.
    pub(crate) fn word(&self, addr: usize) -> Option<usize> {
        let offset = addr.checked_sub(self.base)?;
        if offset % 8 != 0 {
            return None;
        }
        self.words.get(offset / 8).map(|&w| w as usize)
    }

    /// The registers a walk of the context suspended at `sp` starts from.
    pub(crate) fn regs(&self, sp: usize) -> Option<SuspendedRegs> {
        SuspendedRegs::read(sp, |addr| self.word(addr))
    }
}

/// Append to `out` the code addresses of a context suspended with `regs`,
/// innermost first: `regs.ip` itself (exact: where it resumes), then return
/// addresses. Only `stack` is read; a word outside it ends the walk. See
/// the module header for how garbage is tolerated.
pub(crate) fn unwind_suspended(regs: SuspendedRegs, stack: &StackCopy, out: &mut Vec<usize>) {
    let tables = tables();
    let mut cache = tables.cache.lock().unwrap_or_else(PoisonError::into_inner);
    let mut read = |addr: u64| {
        usize::try_from(addr)
            .ok()
            .and_then(|a| stack.word(a))
            .map(|w| w as u64)
            .ok_or(())
    };
    let mut frame_regs = UnwindRegsX86_64::new(regs.ip as u64, regs.sp as u64, regs.bp as u64);
    // The resume address is exact, so the first frame is looked up as is.
    let mut address = FrameAddress::from_instruction_pointer(regs.ip as u64);
    out.push(regs.ip);
    for _ in 1..MAX_FRAMES {
        if arch::is_async_preempt(address.address() as usize) {
            break;
        }
        let sp = frame_regs.sp();
        let Ok(Some(return_address)) = tables
            .unwinder
            .unwind_frame(address, &mut frame_regs, &mut cache, &mut read)
        else {
            break;
        };
        let Some(next) = FrameAddress::from_return_address(return_address) else {
            break;
        };
        if frame_regs.sp() <= sp {
            break;
        }
        out.push(return_address as usize);
        address = next;
    }
}

/// Append to `out` the code addresses of the calling thread's stack, from
/// the caller of this function outwards. The first entry is an address
/// inside the caller's call instruction (exact, per the module convention),
/// the rest are return addresses. On a goroutine the walk ends at its entry
/// trampoline; across an async-preemption frame it goes on into the
/// interrupted code.
#[inline(never)]
pub(crate) fn unwind_current(out: &mut Vec<usize>) {
    let this = unwind_current as fn(&mut Vec<usize>) as usize;
    // Frames from the innermost (inside `backtrace`) out; ours and those
    // inside it are dropped once found. A few more than `MAX_FRAMES` so the
    // caller still gets that many after the drop.
    let mut frames: Vec<(usize, usize)> = Vec::new();
    // libgcc reports one more frame with a null ip past a frame whose
    // return address is undefined (the goroutine trampoline): that is the
    // end, not a frame.
    backtrace::trace(|frame| {
        let ip = frame.ip() as usize;
        if ip == 0 {
            return false;
        }
        frames.push((ip, frame.symbol_address() as usize));
        frames.len() < MAX_FRAMES + 8
    });
    let skip = frames
        .iter()
        .position(|&(_, function)| function == this)
        .map_or(0, |i| i + 1);
    let mut ips = frames[skip..].iter().map(|&(ip, _)| ip).take(MAX_FRAMES);
    if let Some(first) = ips.next() {
        out.push(first.saturating_sub(1));
        out.extend(ips);
    }
}

/// framehop modules for every loaded object that has `.eh_frame_hdr`.
fn loaded_modules() -> Vec<Module<Vec<u8>>> {
    /// # Safety
    /// Only as `dl_iterate_phdr`'s callback, with `data` the `Vec` below.
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: `data` is the `&mut Vec` passed below, used by nothing
        // else during the iteration; `info` is valid for this callback.
        let (modules, info) = unsafe { (&mut *(data as *mut Vec<Module<Vec<u8>>>), &*info) };
        // SAFETY: `info` describes a loaded object, kept loaded by the
        // loader lock `dl_iterate_phdr` holds while we run.
        if let Some(module) = unsafe { module_of(info) } {
            modules.push(module);
        }
        0
    }
    let mut modules: Vec<Module<Vec<u8>>> = Vec::new();
    // SAFETY: `each` matches the callback contract and only touches
    // `modules` through `data`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut modules).cast()) };
    modules
}

/// The framehop module of one loaded object, its unwind tables copied out;
/// `None` if it has no executable segment or no usable `.eh_frame_hdr`.
///
/// # Safety
/// `info` must describe an object that stays loaded during the call.
unsafe fn module_of(info: &libc::dl_phdr_info) -> Option<Module<Vec<u8>>> {
    let base = info.dlpi_addr as usize;
    // SAFETY: the loader gives `dlpi_phnum` program headers at `dlpi_phdr`.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    // Mapped, readable ranges of the object's segments (absolute addresses).
    let loads = || {
        phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD).map(move |p| {
            (
                base + p.p_vaddr as usize..base + (p.p_vaddr + p.p_memsz) as usize,
                p.p_flags,
            )
        })
    };
    let code = loads()
        .filter(|(_, flags)| flags & libc::PF_X != 0)
        .map(|(range, _)| range)
        .reduce(|a, b| a.start.min(b.start)..a.end.max(b.end))?;
    let hdr_phdr = phdrs.iter().find(|p| p.p_type == libc::PT_GNU_EH_FRAME)?;
    let hdr_addr = base + hdr_phdr.p_vaddr as usize;
    let readable = |addr: usize| {
        loads()
            .find(|(range, flags)| range.contains(&addr) && flags & libc::PF_R != 0)
            .map(|(range, _)| range.end)
    };
    let hdr_end = hdr_addr.checked_add(hdr_phdr.p_memsz as usize)?;
    if readable(hdr_addr)? < hdr_end {
        return None;
    }
    // SAFETY: [hdr_addr, hdr_end) lies in a readable loaded segment.
    let eh_frame_hdr = unsafe { std::slice::from_raw_parts(hdr_addr as *const u8, hdr_end - hdr_addr) }.to_vec();
    let eh_frame_addr = eh_frame_ptr(&eh_frame_hdr, hdr_addr)?;
    let segment_end = readable(eh_frame_addr)?;
    // SAFETY: the range is inside the readable segment holding `.eh_frame`.
    let tail = unsafe { std::slice::from_raw_parts(eh_frame_addr as *const u8, segment_end - eh_frame_addr) };
    let eh_frame = tail[..eh_frame_len(tail)].to_vec();
    // SAFETY: the loader's name is a NUL-terminated string (empty for the
    // executable) that lives as long as the object.
    let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy().into_owned();
    // ELF objects state addresses relative to a load base of 0, so an
    // object's stated addresses are the absolute ones minus `base`.
    let stated = |addr: usize, len: usize| (addr - base) as u64..(addr - base + len) as u64;
    let sections = ExplicitModuleSectionInfo {
        base_svma: 0,
        eh_frame_svma: Some(stated(eh_frame_addr, eh_frame.len())),
        eh_frame_hdr_svma: Some(stated(hdr_addr, eh_frame_hdr.len())),
        eh_frame: Some(eh_frame),
        eh_frame_hdr: Some(eh_frame_hdr),
        ..Default::default()
    };
    Some(Module::new(
        name,
        code.start as u64..code.end as u64,
        base as u64,
        sections,
    ))
}

/// The absolute address of `.eh_frame`, from the header of `.eh_frame_hdr`
/// (`hdr`, mapped at `hdr_addr`): version 1, then the pointer's encoding,
/// two more encodings, then the pointer. Handles the encodings linkers
/// write (pc- or header-relative or absolute, 4 or 8 bytes).
fn eh_frame_ptr(hdr: &[u8], hdr_addr: usize) -> Option<usize> {
    const PTR_AT: usize = 4;
    const INDIRECT: u8 = 0x80;
    let encoding = *hdr.get(1)?;
    if *hdr.first()? != 1 || encoding & INDIRECT != 0 {
        return None;
    }
    let field = |len: usize| hdr.get(PTR_AT..PTR_AT + len);
    let value = match encoding & 0x0f {
        // absptr, udata8, sdata8
        0x00 | 0x04 | 0x0c => i64::from_le_bytes(field(8)?.try_into().ok()?),
        0x03 => i64::from(u32::from_le_bytes(field(4)?.try_into().ok()?)),
        0x0b => i64::from(i32::from_le_bytes(field(4)?.try_into().ok()?)),
        _ => return None,
    };
    let relative_to = match encoding & 0x70 {
        0x00 => 0,
        0x10 => hdr_addr + PTR_AT,
        0x30 => hdr_addr,
        _ => return None,
    };
    (relative_to as i64).checked_add(value).map(|a| a as usize)
}

/// Length of the `.eh_frame` section starting `bytes`: its CIE/FDE records
/// up to and including the zero-length terminator (or to the end of `bytes`,
/// the segment, if there is none).
fn eh_frame_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(len) = bytes.get(at..at + 4) {
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes"));
        let record = match len {
            0 => return at + 4,
            // 64-bit DWARF: the real length follows.
            u32::MAX => match bytes.get(at + 4..at + 12) {
                Some(len) => u64::from_le_bytes(len.try_into().expect("8 bytes")).saturating_add(12),
                None => break,
            },
            len => u64::from(len) + 4,
        };
        match usize::try_from(record).ok().and_then(|r| at.checked_add(r)) {
            Some(next) if next <= bytes.len() => at = next,
            _ => break,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    //! The fixture: a context made with `Context::for_entry` on a stack of
    //! the test's own, switched into once; it calls `marker_outer` →
    //! `marker_inner`, which switches back, leaving it suspended there for
    //! the test to unwind from the outside.

    use super::*;
    use crate::arch::{Context, switch};
    use crate::debug::symbols::{Frame, symbolize};
    use std::hint::black_box;

    const FIXTURE_STACK: usize = 64 * 1024;

    struct Fixture {
        main: Context,
        fiber: Context,
    }

    /// A 16-aligned stack (u128's alignment) owned by the test.
    fn fixture_stack() -> Box<[u128]> {
        vec![0u128; FIXTURE_STACK / 16].into_boxed_slice()
    }

    fn range_of(stack: &[u128]) -> Range<usize> {
        let lo = stack.as_ptr() as usize;
        lo..lo + std::mem::size_of_val(stack)
    }

    extern "sysv64" fn fixture_entry(fixture: usize) -> ! {
        marker_outer(fixture as *mut Fixture);
        // Never resumed: the test drops the stack with the context parked.
        std::process::abort()
    }

    // `black_box` after each call keeps it from being a tail call, which
    // would take the caller's frame off the stack.
    #[inline(never)]
    fn marker_outer(fixture: *mut Fixture) {
        marker_inner(black_box(fixture));
        black_box(());
    }

    #[inline(never)]
    fn marker_inner(fixture: *mut Fixture) {
        // SAFETY: `fixture` outlives the fiber; `main` was saved by the
        // switch that started it and is alive on the test thread.
        unsafe { switch(&raw mut (*fixture).fiber, &raw const (*fixture).main) };
        black_box(());
    }

    fn names(frames: &[Frame]) -> Vec<&str> {
        frames.iter().map(|f| f.function.as_str()).collect()
    }

    fn position(frames: &[Frame], suffix: &str) -> Option<usize> {
        frames.iter().position(|f| f.function.ends_with(suffix))
    }

    #[test]
    fn fresh_context_is_just_the_trampoline() {
        let stack = fixture_stack();
        let range = range_of(&stack);
        // SAFETY: the top of our own 16-aligned stack; never switched to.
        let ctx = unsafe { Context::for_entry(range.end, fixture_entry, 0) };
        let copy = StackCopy::take(range).expect("our own stack is mapped");
        let regs = copy.regs(ctx.saved_sp()).expect("saved words inside the stack");
        let mut ips = Vec::new();
        unwind_suspended(regs, &copy, &mut ips);
        assert_eq!(ips, [regs.ip]);
        let frames = symbolize(&ips);
        assert!(
            frames[0].function.ends_with("goroutine_trampoline"),
            "{:?}",
            names(&frames)
        );
    }

    #[test]
    fn suspended_context_unwinds_to_the_trampoline() {
        let stack = fixture_stack();
        let range = range_of(&stack);
        let mut fixture = Box::new(Fixture {
            main: Context::empty(),
            fiber: Context::empty(),
        });
        let arg = &raw mut *fixture as usize;
        // SAFETY: the top of our own 16-aligned stack, used by nothing else;
        // `fixture_entry` never returns.
        fixture.fiber = unsafe { Context::for_entry(range.end, fixture_entry, arg) };
        // SAFETY: `fiber` was made by `for_entry` on a live stack; `main` is
        // resumed by `marker_inner` while this frame is still alive.
        unsafe { switch(&raw mut fixture.main, &raw const fixture.fiber) };

        let copy = StackCopy::take(range.clone()).expect("our own stack is mapped");
        let sp = fixture.fiber.saved_sp();
        let regs = copy.regs(sp).expect("saved words inside the stack");
        assert!(range.contains(&regs.sp));
        let mut ips = Vec::new();
        unwind_suspended(regs, &copy, &mut ips);
        assert_eq!(ips[0], regs.ip);
        let frames = symbolize(&ips);
        let inner = position(&frames, "marker_inner").unwrap_or_else(|| panic!("{:?}", names(&frames)));
        let outer = position(&frames, "marker_outer").unwrap_or_else(|| panic!("{:?}", names(&frames)));
        assert!(inner < outer, "{:?}", names(&frames));
        assert!(
            frames[inner].line.is_some() && frames[inner].file.as_deref().is_some_and(|f| f.ends_with("unwind.rs"))
        );
        let last = frames.last().expect("frames");
        assert!(last.function.ends_with("goroutine_trampoline"), "{:?}", names(&frames));
        assert!(
            position(&frames, "fixture_entry").is_some_and(|e| e > outer),
            "{:?}",
            names(&frames)
        );

        // A stack range that misses the saved words gives no registers, and
        // one that ends early cuts the walk without reading past it.
        let missing = StackCopy::take(range.start..regs.sp - 8).expect("mapped");
        assert_eq!(missing.regs(sp), None);
        let short_copy = StackCopy::take(range.start..regs.sp).expect("mapped");
        let mut short = Vec::new();
        unwind_suspended(regs, &short_copy, &mut short);
        assert!(short.len() <= 2, "{short:x?}");
    }

    #[test]
    fn many_copies_skip_only_the_unmapped_ranges() {
        let words: Vec<u64> = (0..64).map(|i| 0x1000 + i).collect();
        let at = |i: usize| words.as_ptr() as usize + 8 * i;
        // Page 0 is never mapped; the kernel's copy stops there, and the
        // ranges after it must still be copied, each whole and in place.
        let ranges = [at(0)..at(8), 0..64, at(8)..at(8), at(10)..at(64), 8..16, at(1)..at(3)];
        let mut seen = Vec::new();
        StackCopy::take_many(&ranges, |i, copy| {
            seen.push((i, copy.map(|c| (c.base, c.words.clone()))));
        });
        let expect = |r: &Range<usize>| Some((r.start, words[(r.start - at(0)) / 8..(r.end - at(0)) / 8].to_vec()));
        assert_eq!(
            seen,
            [
                (0, expect(&ranges[0])),
                (1, None),
                (2, expect(&ranges[2])),
                (3, expect(&ranges[3])),
                (4, None),
                (5, expect(&ranges[5])),
            ]
        );
    }

    #[test]
    fn garbage_stack_ends_the_walk() {
        // Words that look like nothing in particular, and some that point
        // back into the stack: the walk must end within MAX_FRAMES without
        // reading outside the range.
        let mut stack = fixture_stack();
        let range = range_of(&stack);
        for (i, w) in stack.iter_mut().enumerate() {
            let a = (range.start + (i * 37) % FIXTURE_STACK) as u128;
            *w = a | (a << 64) ^ (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        for sp in [range.start, range.start + 1000, range.end - 64] {
            let regs = SuspendedRegs {
                ip: 0x1234_5678,
                sp,
                bp: range.start + 512,
            };
            let copy = StackCopy::take(range.clone()).expect("our own stack is mapped");
            let mut ips = Vec::new();
            unwind_suspended(regs, &copy, &mut ips);
            assert!(!ips.is_empty() && ips.len() <= MAX_FRAMES);
        }
    }

    #[inline(never)]
    fn unwind_current_caller() -> Vec<usize> {
        let mut ips = Vec::new();
        unwind_current(&mut ips);
        black_box(ips)
    }

    #[test]
    fn unwind_current_starts_at_the_caller() {
        let frames = symbolize(&unwind_current_caller());
        assert!(
            frames[0].function.ends_with("unwind_current_caller"),
            "{:?}",
            names(&frames)
        );
        assert!(
            position(&frames, "unwind_current_starts_at_the_caller").is_some(),
            "{:?}",
            names(&frames)
        );
    }

    #[test]
    fn eh_frame_records_are_measured_to_the_terminator() {
        // A 12-byte record, a 64-bit-length record of 4 bytes, a terminator,
        // then trailing bytes that belong to the next section.
        let mut bytes = vec![12, 0, 0, 0];
        bytes.extend([0xaa; 12]);
        bytes.extend([0xff, 0xff, 0xff, 0xff, 4, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        bytes.extend([0, 0, 0, 0]);
        let section = bytes.len();
        bytes.extend([9; 8]);
        assert_eq!(eh_frame_len(&bytes), section);
        // Cut in the middle of a record: measured up to the last whole one.
        assert_eq!(eh_frame_len(&bytes[..20]), 16);
    }

    #[test]
    fn eh_frame_ptr_encodings() {
        // pcrel | sdata4, as GNU ld and lld write it.
        let hdr = [1, 0x1b, 0x03, 0x3b, 0xfc, 0xff, 0xff, 0xff];
        assert_eq!(eh_frame_ptr(&hdr, 0x1000), Some(0x1000));
        // datarel | udata4, absolute udata8.
        assert_eq!(eh_frame_ptr(&[1, 0x33, 0, 0, 0x10, 0, 0, 0], 0x1000), Some(0x1010));
        assert_eq!(
            eh_frame_ptr(&[1, 0x04, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1], 0),
            Some(0x0102_0304_0506_0708)
        );
        // Wrong version, indirect, omitted.
        assert_eq!(eh_frame_ptr(&[2, 0x1b, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_ptr(&[1, 0x9b, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_ptr(&[1, 0xff, 0, 0, 0, 0, 0, 0], 0), None);
    }
}
