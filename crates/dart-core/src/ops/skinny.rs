//! C[m,n] (+)= X[m,k] W[n,k]^T for few rows of X, in f32 on AVX-512: the
//! shape of every projection and of the LM head while decoding.
//!
//! Why hand-written: the `gemm` crate packs W on every call. At 16 rows that
//! packing costs more than the multiply (43% of a decode step went to it),
//! and W (frozen weights, read once per step) is streamed from memory twice.
//! Here each W row is read once, in place, as dot products along k
//! (W is [out, in] row-major, so both operands are contiguous along k).
//! Measured against gemm 0.19 on a 2-core Zen 5 (16 rows, SmolLM2 shapes):
//! 2-3x the GFLOPS; see `pnpm bench` (generate.json) for the decode effect.
//! Everything else (f64, other transposes, many rows, no AVX-512) stays on gemm.
use rayon::prelude::*;

/// Above this many rows of X the packed `gemm` path is as fast or faster.
pub const MAX_ROWS: usize = 256;
/// Below this depth the dot products are too short to pay for their final
/// horizontal sums (the LoRA up-projection, k = rank): gemm does better.
pub const MIN_DEPTH: usize = 64;
/// Below this many multiply-adds one thread does the whole product.
const PARALLEL_THRESHOLD: usize = 64 * 64 * 64;
/// Rows of X and of W per register block: 16 accumulators of 16 lanes.
const MR: usize = 4;
const NR: usize = 4;
/// W row tiles prefetched ahead: without it the first row block of each tile
/// stalls on memory while the other blocks run from L1 (26.7 vs 34 ms for the
/// GEMMs of a 135M decode step at 16 rows).
const PREFETCH_TILES: usize = 2;

/// Whether this CPU runs the kernel (checked once by std, cached).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Computes c[m,n] (+)= x[m,k] w[n,k]^T and returns true, or returns false
/// (c untouched) where the kernel does not apply: the caller falls back.
pub fn xwt(c: &mut [f32], x: &[f32], w: &[f32], m: usize, n: usize, k: usize, accumulate: bool) -> bool {
    if m == 0 || m > MAX_ROWS || n == 0 || k < MIN_DEPTH || !available() {
        return false;
    }
    assert!(c.len() >= m * n && x.len() >= m * k && w.len() >= n * k, "skinny::xwt: operands shorter than {m}x{n}x{k}");
    #[cfg(target_arch = "x86_64")]
    {
        let threads = rayon::current_num_threads();
        if m * n * k < PARALLEL_THRESHOLD || threads == 1 {
            // SAFETY: avx512f was detected; the block covers columns 0..n of c.
            unsafe { avx512::block(c.as_mut_ptr(), x, w, m, n, k, 0, n, accumulate) };
            return true;
        }
        // Column blocks of W rows, a few per thread for balance.
        let chunk = (n / (threads * 4)).clamp(NR, 64).next_multiple_of(NR);
        let out = SendPtr(c.as_mut_ptr());
        (0..n.div_ceil(chunk)).into_par_iter().for_each(|b| {
            let out = &out;
            let (j0, j1) = (b * chunk, ((b + 1) * chunk).min(n));
            // SAFETY: avx512f was detected; column ranges [j0, j1) are
            // disjoint across tasks, so no element of c is written twice.
            unsafe { avx512::block(out.0, x, w, m, n, k, j0, j1, accumulate) };
        });
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("available() is false off x86_64")
}

struct SendPtr(*mut f32);
// SAFETY: tasks write disjoint columns through it (see `xwt`).
unsafe impl Sync for SendPtr {}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{MR, NR, PREFETCH_TILES};
    use std::arch::x86_64::*;

    /// Columns j0..j1 of c (row stride n), all m rows.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block(c: *mut f32, x: &[f32], w: &[f32], m: usize, n: usize, k: usize, j0: usize, j1: usize, acc: bool) {
        let mut j = j0;
        while j < j1 {
            let nr = (j1 - j).min(NR);
            let ahead = j + PREFETCH_TILES * NR;
            if ahead < n {
                let (mut q, end) = (ahead * k, (ahead + NR).min(n) * k);
                while q < end {
                    _mm_prefetch::<_MM_HINT_T0>(w.as_ptr().add(q).cast::<i8>());
                    q += 16;
                }
            }
            let mut i = 0;
            while i < m {
                let mr = (m - i).min(MR);
                let t = Tile { c, x: x.as_ptr(), w: w.as_ptr(), n, k, i, j, acc };
                // Every (rows, cols) up to MR x NR, so all accumulators stay in registers.
                match (mr, nr) {
                    (4, 4) => t.run::<4, 4>(),
                    (4, 3) => t.run::<4, 3>(),
                    (4, 2) => t.run::<4, 2>(),
                    (4, 1) => t.run::<4, 1>(),
                    (3, 4) => t.run::<3, 4>(),
                    (3, 3) => t.run::<3, 3>(),
                    (3, 2) => t.run::<3, 2>(),
                    (3, 1) => t.run::<3, 1>(),
                    (2, 4) => t.run::<2, 4>(),
                    (2, 3) => t.run::<2, 3>(),
                    (2, 2) => t.run::<2, 2>(),
                    (2, 1) => t.run::<2, 1>(),
                    (1, 4) => t.run::<1, 4>(),
                    (1, 3) => t.run::<1, 3>(),
                    (1, 2) => t.run::<1, 2>(),
                    _ => t.run::<1, 1>(),
                }
                i += mr;
            }
            j += nr;
        }
    }

    /// One register tile: rows i.. of x against rows j.. of w, full k.
    struct Tile {
        c: *mut f32,
        x: *const f32,
        w: *const f32,
        n: usize,
        k: usize,
        i: usize,
        j: usize,
        acc: bool,
    }

    impl Tile {
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn run<const R: usize, const C: usize>(&self) {
            let k = self.k;
            let xp = self.x.add(self.i * k);
            let wp = self.w.add(self.j * k);
            let mut a = [[_mm512_setzero_ps(); C]; R];
            let mut p = 0;
            // 16 lanes of k per step; the tail runs once with a lane mask.
            while p < k {
                let mask: __mmask16 = if k - p >= 16 { 0xffff } else { ((1u32 << (k - p)) - 1) as __mmask16 };
                let mut wv = [_mm512_setzero_ps(); C];
                for (b, v) in wv.iter_mut().enumerate() {
                    *v = _mm512_maskz_loadu_ps(mask, wp.add(b * k + p));
                }
                for (r, ar) in a.iter_mut().enumerate() {
                    let xv = _mm512_maskz_loadu_ps(mask, xp.add(r * k + p));
                    for (acc, &wb) in ar.iter_mut().zip(&wv) {
                        *acc = _mm512_fmadd_ps(xv, wb, *acc);
                    }
                }
                p += 16;
            }
            for (r, ar) in a.iter().enumerate() {
                for (b, &v) in ar.iter().enumerate() {
                    let s = _mm512_reduce_add_ps(v);
                    let o = self.c.add((self.i + r) * self.n + self.j + b);
                    *o = if self.acc { *o + s } else { s };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::matmul::matmul_reference;
    use crate::testutil::rand_vec;

    #[test]
    fn matches_the_reference_on_every_tail_shape() {
        if !available() {
            eprintln!("skinny: no AVX-512 on this CPU, kernel not used (gemm path)");
            assert!(!xwt(&mut [0.0], &[1.0; MIN_DEPTH], &[1.0; MIN_DEPTH], 1, 1, MIN_DEPTH, false));
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut seed = 0;
        for &(m, n, k) in &[(1, 1, 64), (3, 5, 65), (4, 4, 80), (5, 9, 97), (7, 13, 333), (16, 70, 100), (17, 600, 75), (128, 67, 200), (256, 21, 64)] {
            for acc in [false, true] {
                seed += 1;
                let x = rand_vec::<f32>(m * k, seed);
                let w = rand_vec::<f32>(n * k, seed + 100);
                let c0 = rand_vec::<f32>(m * n, seed + 200);
                let mut want = c0.clone();
                matmul_reference(&mut want, &x, &w, m, n, k, false, true, acc);
                let mut got = c0.clone();
                assert!(pool.install(|| xwt(&mut got, &x, &w, m, n, k, acc)), "kernel declined {m}x{n}x{k}");
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()) * (k as f32).sqrt(), "{m}x{n}x{k} acc={acc} [{i}]: {g} vs {e}");
                }
            }
        }
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        assert!(!xwt(&mut vec![0.0; (MAX_ROWS + 1) * 2], &vec![0.0; (MAX_ROWS + 1) * 3], &[0.0; 6], MAX_ROWS + 1, 2, 3, false));
        assert!(!xwt(&mut [], &[], &[], 0, 0, 3, false));
        assert!(!xwt(&mut [0.0; 4], &[0.0; 2 * (MIN_DEPTH - 1)], &[0.0; 2 * (MIN_DEPTH - 1)], 2, 2, MIN_DEPTH - 1, false));
    }
}
