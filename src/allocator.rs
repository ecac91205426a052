//! The process's allocator: mimalloc, asked for plain blocks whenever plain blocks do.
//!
//! The `mimalloc` crate's `GlobalAlloc` passes every request to `mi_malloc_aligned`,
//! whose fast path serves only blocks of at most 1 KiB whose free list happens to start
//! aligned; anything larger (a request's future, a read buffer) takes its generic path
//! (about 250 instructions instead of 20; measured in BENCHMARKS.md, session 8). Every
//! `mi_malloc` block is aligned to 16 bytes, or to its size when that is smaller, so a
//! layout asking for no more than that is served by `mi_malloc` itself — the rule the
//! standard library's own `System` allocator applies to `malloc`.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

/// The alignment every `mi_malloc` block of at least this size has (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// mimalloc behind the standard allocator interface.
pub struct Allocator;

/// Whether a plain `mi_malloc` block satisfies `layout`'s alignment.
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every function hands the layout's size (and, when a plain block would not
// do, its alignment) to the mimalloc call made for it, and frees only what mimalloc
// returned; mimalloc is thread-safe.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            mi_malloc(layout.size()).cast()
        } else {
            mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            mi_zalloc(layout.size()).cast()
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(layout.align(), new_size) {
            mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}
