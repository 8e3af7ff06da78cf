//! Host buffers for the frozen weights on transparent huge pages (Linux).
//!
//! Decoding streams every weight matrix from memory once per step. With 4 KiB
//! pages the hardware prefetchers stop at each page boundary and every page
//! costs a TLB walk; on 2 MiB pages the GEMMs of a 135M-parameter decode step
//! at 16 rows ran in 24 ms instead of 28 ms (2-core Zen 5). Most Linux systems
//! set THP to `madvise`, so a buffer has to ask for it.

/// Buffers from this size up are laid out for huge pages.
const MIN_BYTES: usize = 1 << 20;
const HUGE_PAGE: usize = 2 << 20;
/// Bytes glibc adds to a large (mmap-backed) block, rounded up: a request
/// of k * 2 MiB - MALLOC_SLACK bytes maps exactly k huge pages, which the
/// kernel places on a 2 MiB boundary; the data starts 16 bytes in.
const MALLOC_SLACK: usize = 32;

/// A copy of `x` in memory advised for huge pages (a plain copy where that
/// does not apply). Large buffers get their capacity rounded up so the block
/// spans whole huge pages (at most 2 MiB, at most 2x for a 1 MiB buffer,
/// unused); the advice comes before the first write, so the pages are huge
/// from the start rather than whenever khugepaged gets to them.
pub fn copy_to_huge_pages<T: Copy>(x: &[T]) -> Vec<T> {
    let size = std::mem::size_of::<T>().max(1);
    let bytes = std::mem::size_of_val(x);
    let cap = if bytes < MIN_BYTES { x.len() } else { ((bytes + MALLOC_SLACK).next_multiple_of(HUGE_PAGE) - MALLOC_SLACK) / size };
    let mut v: Vec<T> = Vec::with_capacity(cap.max(x.len()));
    let range = huge_range(v.as_mut_ptr() as usize, v.capacity() * size);
    advise(range, Advice::HugePages);
    v.extend_from_slice(x);
    // glibc wrote its block header before the advice, so the first huge page
    // already has a small page in it: collapse it now (Linux 6.1+).
    advise(range, Advice::Collapse);
    v
}

/// The whole 2 MiB pages of a buffer's block, if any.
fn huge_range(start: usize, bytes: usize) -> Option<(usize, usize)> {
    if bytes < MIN_BYTES {
        return None;
    }
    // A block glibc maps for itself starts its data just past a 2 MiB
    // boundary and ends just short of one (the kernel aligns large anonymous
    // mappings; see MALLOC_SLACK): include those pages, which are all ours.
    // Otherwise (heap memory) only whole huge pages inside the buffer.
    let below = start / HUGE_PAGE * HUGE_PAGE;
    let first = if start - below <= MALLOC_SLACK { below } else { start.next_multiple_of(HUGE_PAGE) };
    let stop = start + bytes;
    let above = stop.next_multiple_of(HUGE_PAGE);
    let end = if above - stop <= MALLOC_SLACK { above } else { stop / HUGE_PAGE * HUGE_PAGE };
    (end > first).then_some((first, end))
}

enum Advice {
    HugePages,
    Collapse,
}

#[cfg(target_os = "linux")]
fn advise(range: Option<(usize, usize)>, what: Advice) {
    let Some((first, end)) = range else { return };
    let advice = match what {
        Advice::HugePages => libc::MADV_HUGEPAGE,
        Advice::Collapse => libc::MADV_COLLAPSE,
    };
    // SAFETY: advice on how memory of this block's own mapping is backed,
    // never on its contents. Failure (THP off, older kernel) is harmless.
    unsafe { libc::madvise(first as *mut libc::c_void, end - first, advice) };
}

#[cfg(not(target_os = "linux"))]
fn advise(_: Option<(usize, usize)>, _: Advice) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_equal_at_every_size() {
        for n in [0, 1, 1000, MIN_BYTES / 4 - 1, MIN_BYTES / 4 + 12345, 3 * HUGE_PAGE / 4] {
            let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
            let y = copy_to_huge_pages(&x);
            assert_eq!(y, x);
            assert!(y.capacity() * 4 < (n * 4).max(MIN_BYTES) + HUGE_PAGE, "capacity {} for {n}", y.capacity());
        }
    }
}
