//! C[m,n] (+)= X[m,k] W[n,k]^T for few rows of X, in f32 on AVX-512 or
//! AVX2 + FMA: the shape of every projection and of the LM head while
//! decoding.
//!
//! Why hand-written: the `gemm` crate packs W on every call. At 16 rows that
//! packing costs more than the multiply (43% of a decode step went to it),
//! and W (frozen weights, read once per step) is streamed from memory twice.
//! Here each W row is read once, in place, as dot products along k
//! (W is [out, in] row-major, so both operands are contiguous along k).
//! Measured against gemm 0.19 on a 2-core Zen 5 (16 rows, SmolLM2 shapes):
//! 2-3x the GFLOPS; see `pnpm bench` (generate.json) for the decode effect.
//! One kernel body (`kernel!`) is instantiated per instruction set: 16
//! lanes and 4x4 register tiles on AVX-512 (32 registers), 8 lanes and 4x2
//! tiles on AVX2 (16 registers: 8 accumulators, 2 W vectors, 1 X vector; at
//! 4x3 LLVM spilled two accumulators to the stack and the kernel ran at 27
//! GFLOPS instead of 128 on 256x576x576, 2-core Zen 5). On AVX2 it takes at
//! most `MAX_ROWS_AVX2` rows: above that gemm's AVX2 kernels are faster
//! (measured 64 to 256 rows at the SmolLM2 and world-model widths).
//! Everything else (f64, other transposes, many rows, neither ISA) stays on gemm.
#[cfg(target_arch = "x86_64")]
use rayon::prelude::*;

/// Above this many rows of X the packed `gemm` path is as fast or faster
/// (AVX-512; the most rows either set takes).
pub const MAX_ROWS: usize = 256;
/// The same on AVX2 + FMA.
pub const MAX_ROWS_AVX2: usize = 64;
/// Below this depth the dot products are too short to pay for their final
/// horizontal sums (the LoRA up-projection, k = rank): gemm does better.
pub const MIN_DEPTH: usize = 64;
/// Below this many multiply-adds one thread does the whole product.
#[cfg(target_arch = "x86_64")]
const PARALLEL_THRESHOLD: usize = 64 * 64 * 64;
/// Rows of X per register block.
#[cfg(target_arch = "x86_64")]
const MR: usize = 4;
/// W row tiles prefetched ahead: without it the first row block of each tile
/// stalls on memory while the other blocks run from L1 (26.7 vs 34 ms for the
/// GEMMs of a 135M decode step at 16 rows).
#[cfg(target_arch = "x86_64")]
const PREFETCH_TILES: usize = 2;

/// The instruction set the kernel runs with in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
}

/// Which kernel this process runs (`ops::cpu` decides), or None: gemm does every product.
pub fn isa() -> Option<Isa> {
    if super::cpu::avx512() {
        Some(Isa::Avx512)
    } else if super::cpu::avx2() {
        Some(Isa::Avx2)
    } else {
        None
    }
}

/// Whether this process runs the kernel at all.
pub fn available() -> bool {
    isa().is_some()
}

/// Whether the kernel takes a product of this shape on `isa`.
pub fn applies(isa: Isa, m: usize, n: usize, k: usize) -> bool {
    let max_rows = match isa {
        Isa::Avx512 => MAX_ROWS,
        Isa::Avx2 => MAX_ROWS_AVX2,
    };
    m > 0 && m <= max_rows && n > 0 && k >= MIN_DEPTH
}

/// Computes c[m,n] (+)= x[m,k] w[n,k]^T and returns true, or returns false
/// (c untouched) where the kernel does not apply: the caller falls back.
pub fn xwt(c: &mut [f32], x: &[f32], w: &[f32], m: usize, n: usize, k: usize, accumulate: bool) -> bool {
    xwt_with(isa(), c, x, w, m, n, k, accumulate)
}

/// `xwt` on a given instruction set (tests run each one the CPU has).
#[allow(clippy::too_many_arguments)]
pub(crate) fn xwt_with(isa: Option<Isa>, c: &mut [f32], x: &[f32], w: &[f32], m: usize, n: usize, k: usize, accumulate: bool) -> bool {
    let Some(isa) = isa else { return false };
    if !applies(isa, m, n, k) {
        return false;
    }
    assert!(c.len() >= m * n && x.len() >= m * k && w.len() >= n * k, "skinny::xwt: operands shorter than {m}x{n}x{k}");
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY (both): `isa` names an instruction set this CPU has
        // (`ops::cpu`), and each call covers its own columns [j0, j1) of c.
        let (nr, block): (usize, Block) = match isa {
            #[cfg(feature = "avx512")]
            Isa::Avx512 => (avx512::NR, avx512::block),
            #[cfg(not(feature = "avx512"))]
            Isa::Avx512 => unreachable!("Isa::Avx512 without the avx512 feature"),
            Isa::Avx2 => (avx2::NR, avx2::block),
        };
        let threads = rayon::current_num_threads();
        if m * n * k < PARALLEL_THRESHOLD || threads == 1 {
            unsafe { block(c.as_mut_ptr(), x, w, m, n, k, 0, n, accumulate) };
            return true;
        }
        // Column blocks of W rows, a few per thread for balance.
        let chunk = (n / (threads * 4)).clamp(nr, 64).next_multiple_of(nr);
        let out = SendPtr(c.as_mut_ptr());
        (0..n.div_ceil(chunk)).into_par_iter().for_each(|b| {
            let out = &out;
            let (j0, j1) = (b * chunk, ((b + 1) * chunk).min(n));
            // Column ranges [j0, j1) are disjoint across tasks, so no element of c is written twice.
            unsafe { block(out.0, x, w, m, n, k, j0, j1, accumulate) };
        });
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = accumulate;
        unreachable!("isa() is None off x86_64")
    }
}

#[cfg(target_arch = "x86_64")]
type Block = unsafe fn(*mut f32, &[f32], &[f32], usize, usize, usize, usize, usize, bool);

#[cfg(target_arch = "x86_64")]
struct SendPtr(*mut f32);
// SAFETY: tasks write disjoint columns through it (see `xwt`).
#[cfg(target_arch = "x86_64")]
unsafe impl Sync for SendPtr {}

/// The kernel for one instruction set: `$lanes` f32 lanes per vector of
/// type `$v`, tiles of MR x `$nr`; `$load(ptr, remaining)` loads
/// min(remaining, lanes) floats (zeros after), `$fma(a, b, acc)`, `$sum(v)`.
#[cfg(target_arch = "x86_64")]
macro_rules! kernel {
    ($name:ident, $feature:literal, $lanes:expr, $nr:expr, $v:ty, $zero:expr, $load:path, $fma:path, $sum:path) => {
        mod $name {
            use super::{MR, PREFETCH_TILES};
            use std::arch::x86_64::*;

            pub(super) const NR: usize = $nr;
            const LANES: usize = $lanes;

            /// Columns j0..j1 of c (row stride n), all m rows.
            #[target_feature(enable = $feature)]
            #[allow(clippy::too_many_arguments)]
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
                #[target_feature(enable = $feature)]
                #[inline]
                unsafe fn run<const R: usize, const C: usize>(&self) {
                    let k = self.k;
                    let xp = self.x.add(self.i * k);
                    let wp = self.w.add(self.j * k);
                    let mut a: [[$v; C]; R] = [[$zero; C]; R];
                    let mut p = 0;
                    // LANES of k per step; the tail is a partial (masked) load.
                    while p < k {
                        let rem = k - p;
                        let mut wv: [$v; C] = [$zero; C];
                        for (b, v) in wv.iter_mut().enumerate() {
                            *v = $load(wp.add(b * k + p), rem);
                        }
                        for (r, ar) in a.iter_mut().enumerate() {
                            let xv = $load(xp.add(r * k + p), rem);
                            for (acc, &wb) in ar.iter_mut().zip(&wv) {
                                *acc = $fma(xv, wb, *acc);
                            }
                        }
                        p += LANES;
                    }
                    for (r, ar) in a.iter().enumerate() {
                        for (b, &v) in ar.iter().enumerate() {
                            let s = $sum(v);
                            let o = self.c.add((self.i + r) * self.n + self.j + b);
                            *o = if self.acc { *o + s } else { s };
                        }
                    }
                }
            }
        }
    };
}

#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
mod avx512_ops {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn load(p: *const f32, rem: usize) -> __m512 {
        if rem >= 16 {
            _mm512_loadu_ps(p)
        } else {
            _mm512_maskz_loadu_ps(((1u32 << rem) - 1) as __mmask16, p)
        }
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn sum(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2_ops {
    use std::arch::x86_64::*;

    /// -1 (load) for the first `rem` lanes: a window of 8 into 8 ones then 8 zeros.
    static MASK: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn load(p: *const f32, rem: usize) -> __m256 {
        if rem >= 8 {
            _mm256_loadu_ps(p)
        } else {
            _mm256_maskload_ps(p, _mm256_loadu_si256(MASK.as_ptr().add(8 - rem).cast()))
        }
    }
}

#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
kernel!(avx512, "avx512f", 16, 4, __m512, _mm512_setzero_ps(), super::avx512_ops::load, _mm512_fmadd_ps, super::avx512_ops::sum);
#[cfg(target_arch = "x86_64")]
kernel!(avx2, "avx2,fma", 8, 2, __m256, _mm256_setzero_ps(), super::avx2_ops::load, _mm256_fmadd_ps, crate::ops::cpu::hsum256);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::matmul::matmul_reference;
    use crate::testutil::rand_vec;

    /// The instruction sets this CPU (and build) can run, whatever `isa()` picked.
    fn isas() -> Vec<Isa> {
        let mut out = Vec::new();
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        if std::arch::is_x86_feature_detected!("avx512f") {
            out.push(Isa::Avx512);
        }
        if crate::ops::cpu::avx2() {
            out.push(Isa::Avx2);
        }
        out
    }

    #[test]
    fn matches_the_reference_on_every_tail_shape() {
        let isas = isas();
        if isas.is_empty() {
            eprintln!("skinny: neither AVX-512 nor AVX2+FMA on this CPU, kernel not used (gemm path)");
            assert!(!xwt(&mut [0.0], &[1.0; MIN_DEPTH], &[1.0; MIN_DEPTH], 1, 1, MIN_DEPTH, false));
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for isa in isas {
            let mut seed = 0;
            for &(m, n, k) in &[(1, 1, 64), (3, 5, 65), (4, 4, 80), (5, 9, 97), (7, 13, 333), (16, 70, 100), (17, 600, 75), (128, 67, 200), (256, 21, 64), (64, 33, 90), (2, 7, 71), (6, 11, 129)] {
                if !applies(isa, m, n, k) {
                    continue;
                }
                for acc in [false, true] {
                    seed += 1;
                    let x = rand_vec::<f32>(m * k, seed);
                    let w = rand_vec::<f32>(n * k, seed + 100);
                    let c0 = rand_vec::<f32>(m * n, seed + 200);
                    let mut want = c0.clone();
                    matmul_reference(&mut want, &x, &w, m, n, k, false, true, acc);
                    let mut got = c0.clone();
                    assert!(pool.install(|| xwt_with(Some(isa), &mut got, &x, &w, m, n, k, acc)), "{isa:?} kernel declined {m}x{n}x{k}");
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()) * (k as f32).sqrt(), "{isa:?} {m}x{n}x{k} acc={acc} [{i}]: {g} vs {e}");
                    }
                }
            }
            eprintln!("skinny {isa:?}: every tail shape matches the reference");
        }
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        assert!(!xwt(&mut vec![0.0; (MAX_ROWS + 1) * 2], &vec![0.0; (MAX_ROWS + 1) * 3], &[0.0; 6], MAX_ROWS + 1, 2, 3, false));
        assert!(!xwt(&mut [], &[], &[], 0, 0, 3, false));
        let m = MAX_ROWS_AVX2 + 1;
        assert!(!xwt_with(Some(Isa::Avx2), &mut vec![0.0; m * 2], &vec![0.0; m * MIN_DEPTH], &vec![0.0; 2 * MIN_DEPTH], m, 2, MIN_DEPTH, false));
        assert!(!xwt(&mut [0.0; 4], &[0.0; 2 * (MIN_DEPTH - 1)], &[0.0; 2 * (MIN_DEPTH - 1)], 2, 2, MIN_DEPTH - 1, false));
    }
}
