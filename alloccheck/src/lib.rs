//! A global allocator for tests that checks every free's layout.
//!
//! Freeing a block with another size than it was allocated with is
//! undefined behaviour that the system allocator (and mimalloc) silently
//! accept. [`SizeChecking`] writes each block's size in front of it, frees
//! the block correctly whatever layout it is given, and counts the frees
//! whose layout disagreed: [`mismatched_frees`].
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOCATOR: statflow_alloccheck::SizeChecking = statflow_alloccheck::SizeChecking;
//!
//! fn main() {
//!     let before = statflow_alloccheck::mismatched_frees();
//!     drop(vec![1u32; 100]);
//!     assert_eq!(statflow_alloccheck::mismatched_frees(), before);
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Frees whose layout's size was not the size allocated.
static MISMATCHED_FREES: AtomicUsize = AtomicUsize::new(0);

/// Room in front of each block for its size; blocks stay aligned to it.
const HEADER: usize = 16;

/// Frees so far whose layout's size was not the size allocated.
pub fn mismatched_frees() -> usize {
    MISMATCHED_FREES.load(Ordering::SeqCst)
}

/// The system allocator, with each block's size kept in front of it.
pub struct SizeChecking;

fn outer(size: usize, align: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, align.max(HEADER)).ok()
}

// SAFETY: every block is the system allocator's, `HEADER` bytes longer and
// at least as aligned as asked; the pointer handed out is `HEADER` bytes in,
// so it keeps the asked alignment (`HEADER` is a multiple of it, or the
// block's alignment is the asked one and a multiple of `HEADER`).
unsafe impl GlobalAlloc for SizeChecking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(outer) = outer(layout.size(), layout.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `outer` is at least `HEADER` bytes, so not zero-sized.
        let block = unsafe { System.alloc(outer) };
        if block.is_null() {
            return block;
        }
        // SAFETY: the block is at least `HEADER` bytes and aligned to 16.
        unsafe {
            (block as *mut usize).write(layout.size());
            block.add(HEADER)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`, so its block starts `HEADER`
        // bytes before it, with the size it was allocated for.
        let (block, size) = unsafe {
            let block = ptr.sub(HEADER);
            (block, (block as *const usize).read())
        };
        if size != layout.size() {
            MISMATCHED_FREES.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(outer) = outer(size, layout.align()) {
            // SAFETY: the block's own layout, as `alloc` made it.
            unsafe { System.dealloc(block, outer) };
        }
    }
}
