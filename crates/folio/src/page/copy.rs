//! The racy copy of an optimistic read, for each target.
//!
//! # Owns
//! - [`OPTIMISTIC_READS`]: whether this target has [`copy_racy`];
//! - `copy_racy`: `rep movsb` on x86-64; in the model-checking build, two halves with a
//!   scheduling point between them; elsewhere nothing (it is never called);
//! - [`copy_racy_any`]: the copy on every target (volatile byte loads where there is no
//!   assembly copy), for [`Frame::copy_to`](crate::backend::Frame::copy_to).
//!
//! # Does not own
//! - whether a copy is kept: the sequence check around it (`FrameMeta::optimistic_begin` and
//!   `optimistic_end`, `meta.rs`) and the engine's read path.
//!
//! # May block
//! - never (the model-checking build's copy yields to shuttle's scheduler).

/// Whether this target has [`copy_racy`], and so optimistic reads; elsewhere every hit takes a
/// reader hold.
pub(crate) const OPTIMISTIC_READS: bool = cfg!(any(target_arch = "x86_64", folio_model));

/// Copies `src[..dst.len()]` into `dst` while an `EXCLUSIVE` holder may be writing `src`: the
/// copy in the middle of an optimistic read, whose result is used only if
/// [`FrameMeta::optimistic_end`](super::FrameMeta::optimistic_end) then says no writer ran.
///
/// # Safety
/// `src..src + dst.len()` is mapped and readable for the whole call (frames are never unmapped
/// while the cache lives).
#[cfg(all(target_arch = "x86_64", not(folio_model)))]
#[inline(always)]
pub(crate) unsafe fn copy_racy(src: *const u8, dst: &mut [u8]) {
    // SAFETY: `rep movsb` reads `rcx` bytes at `rsi` and writes them at `rdi`: the caller
    // vouches for the source range, `dst` is a unique borrow of the destination, and the ABI
    // guarantees the direction flag is clear. The source may be written concurrently. In the
    // language's memory model that is a data race, and stable Rust has no byte-wise atomic copy
    // to express what a seqlock reader needs (C++ proposal P1478). The assembly block is opaque
    // to the optimiser, though: it cannot assume the bytes stable or derive anything from them,
    // so the block does what the hardware does, which is to store some mix of old and new bytes
    // in `dst`. The caller throws those away unless the sequence check proves no writer ran.
    // (crossbeam's `AtomicCell` and Linux's seqlocks rest on the same argument.) `rep movsb`
    // is also what glibc's memcpy uses for copies of this size on CPUs with fast string moves.
    unsafe {
        std::arch::asm!(
            "rep movsb",
            inout("rcx") dst.len() => _,
            inout("rdi") dst.as_mut_ptr() => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
}

/// The model-checking build's copy: two halves with a scheduling point between them, so that
/// the models can run a writer in the middle of a copy and show the sequence check rejects it.
///
/// # Safety
/// As the real one. Shuttle runs one thread at a time, so nothing races here.
#[cfg(folio_model)]
pub(crate) unsafe fn copy_racy(src: *const u8, dst: &mut [u8]) {
    let half = dst.len() / 2;
    let (a, b) = dst.split_at_mut(half);
    // SAFETY: the caller vouches for `src[..dst.len()]`; `a` and `b` are disjoint borrows.
    unsafe { std::ptr::copy_nonoverlapping(src, a.as_mut_ptr(), a.len()) };
    crate::sync::yield_now();
    // SAFETY: as above.
    unsafe { std::ptr::copy_nonoverlapping(src.add(half), b.as_mut_ptr(), b.len()) };
}

/// [`copy_racy`] on every target: where there is no assembly copy, a loop of volatile byte
/// loads, which the optimiser cannot merge, split or assume stable either.
///
/// # Safety
/// As [`copy_racy`].
pub(crate) unsafe fn copy_racy_any(src: *const u8, dst: &mut [u8]) {
    if OPTIMISTIC_READS {
        // SAFETY: the caller's contract is `copy_racy`'s.
        unsafe { copy_racy(src, dst) };
        return;
    }
    for (i, d) in dst.iter_mut().enumerate() {
        // SAFETY: `src + i` is within the range the caller vouches for.
        *d = unsafe { std::ptr::read_volatile(src.add(i)) };
    }
}

/// Never called: [`OPTIMISTIC_READS`] is false on this target.
///
/// # Safety
/// None needed; it does nothing.
#[cfg(not(any(target_arch = "x86_64", folio_model)))]
#[inline(always)]
pub(crate) unsafe fn copy_racy(_src: *const u8, _dst: &mut [u8]) {
    unreachable!("optimistic reads are off on this target")
}
