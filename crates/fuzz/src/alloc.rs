//! A counting global allocator: per thread, the bytes live now and the most live at once
//! since the last [`start`], so the engine can say how much one input made its decoder
//! allocate (the fuzz crate's binary and tests install it; services never do).
//!
//! The counters are thread-locals with constant initialisers and no destructors, so reading
//! and updating them never allocates (which an allocator must not do). Memory freed on
//! another thread than the one that allocated it only lowers that thread's count; the
//! figures are for bounding one input's work, not an accounting of the process.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// [`System`], counting.
pub struct Counting;

fn grew(by: usize) {
    // `try_with`: during thread teardown the thread-locals may be gone; nothing is counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add_unsigned(by);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

fn shrank(by: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub_unsigned(by)));
}

// SAFETY: every call is passed on to `System` unchanged; the counting beside it touches
// only this thread's `Cell`s and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are System's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation is).
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `dealloc`, and `new_size` is the caller's to guarantee.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

/// Start measuring one input on this thread: its peak is counted from what is live now.
pub fn start() -> isize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    live
}

/// The most bytes this thread had live at once since [`start`] returned `base`, above `base`.
pub fn peak_since(base: isize) -> usize {
    usize::try_from(PEAK.with(Cell::get).saturating_sub(base)).unwrap_or(0)
}
