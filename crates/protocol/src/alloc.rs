//! A global allocator that survives absurd allocation requests decoded from the network.
//!
//! `kafka-protocol` (0.18) pre-allocates every array with `Vec::with_capacity(n)`, where `n` is
//! the element count read off the wire. Eight bytes of a Metadata request can claim two billion
//! topics, and the resulting multi-gigabyte `malloc` fails; Rust then aborts the whole process
//! (`handle_alloc_error`), which no error handling can catch. Upstream has open fixes
//! (kafka-protocol-rs pull requests 152, 161 and 200); until one ships, the broker binaries
//! install this allocator.
//!
//! Allocations of [`HUGE`] bytes or more are served by an anonymous `mmap` with
//! `MAP_NORESERVE`: the kernel hands out address space without committing memory, pages are
//! only backed when touched, and the decoder touches at most as many elements as the frame
//! really holds (bounded by the request size limit) before it fails on the short buffer and the
//! mapping is returned. Everything smaller goes to the system allocator unchanged. With
//! `vm.overcommit_memory = 2` the kernel ignores `MAP_NORESERVE` and such a request fails as
//! before.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::null_mut;

/// Allocations at least this large are mapped lazily.
pub const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

/// The allocator; install with `#[global_allocator] static A: LazyHuge = LazyHuge;`.
pub struct LazyHuge;

fn is_huge(size: usize, align: usize) -> bool {
    size >= HUGE && align <= PAGE
}

// SAFETY: every pointer is freed by the path that allocated it, chosen by the same size and
// alignment test; mmap returns page-aligned, zero-filled memory of at least the asked size.
unsafe impl GlobalAlloc for LazyHuge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(layout.size(), layout.align()) {
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: an anonymous private mapping with no address hint; checked for failure.
        let p = unsafe {
            libc::mmap(
                null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout.size(), layout.align()) {
            // Anonymous mappings are already zero-filled.
            unsafe { self.alloc(layout) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout.size(), layout.align()) {
            // SAFETY: `ptr` came from the mmap in `alloc` with this exact length.
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !is_huge(layout.size(), layout.align()) && !is_huge(new_size, layout.align()) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Moving into, out of or between mappings: allocate, copy, free.
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both regions are valid for the smaller of the two sizes and distinct.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_allocations_are_lazy_and_usable() {
        let a = LazyHuge;
        // 64 GiB: far more than this machine has, yet only the touched pages are backed.
        let layout = Layout::from_size_align(64 << 30, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            *p = 7;
            *p.add((64 << 30) - 1) = 9;
            assert_eq!((*p, *p.add((64 << 30) - 1)), (7, 9));
            let q = a.realloc(p, layout, 1024);
            assert_eq!(*q, 7);
            a.dealloc(q, Layout::from_size_align(1024, 8).unwrap());
        }
        let small = Layout::from_size_align(100, 8).unwrap();
        unsafe {
            let p = a.alloc_zeroed(small);
            assert_eq!(*p, 0);
            a.dealloc(p, small);
        }
    }
}
