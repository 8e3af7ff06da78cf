//! Causal grouped-query attention over packed sequences (no padding: each
//! sequence attends only to its own earlier tokens). The forward keeps the
//! log-sum-exp per (row, head) so backward recomputes probabilities instead
//! of storing the L x L matrix.
use super::exp;
use super::matmul::matmul;
use crate::float::{as_f32, as_f32_mut, Float};
use rayon::prelude::*;

/// A pointer shared by tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct SharedMut<T>(*mut T);
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}
impl<T> SharedMut<T> {
    /// SAFETY: callers guarantee that no two tasks touch the same index.
    unsafe fn at(self, i: usize) -> *mut T {
        self.0.add(i)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
    fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }
}

/// (sequence start, length) pairs × kv heads: the unit of parallel work.
fn tasks(seqs: &[(usize, usize)], kv_heads: usize) -> Vec<(usize, usize, usize)> {
    seqs.iter().flat_map(|&(s, l)| (0..kv_heads).map(move |g| (s, l, g))).collect()
}

/// Dot product in eight independent partial sums, which the compiler turns
/// into vector lanes (one running sum cannot be reordered, so stays scalar).
#[inline]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let (ac, at) = a.as_chunks::<8>();
    let (bc, bt) = b[..a.len()].as_chunks::<8>();
    let mut acc = [T::zero(); 8];
    for (x, y) in ac.iter().zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (&x, &y) in at.iter().zip(bt) {
        s += x * y;
    }
    s
}

/// Copies columns [col, col + hd) of rows start..start+len of a [rows, width]
/// matrix into a contiguous [len, hd] block.
fn gather_head<T: Float>(dst: &mut Vec<T>, src: &[T], start: usize, len: usize, width: usize, col: usize, hd: usize) {
    dst.clear();
    for r in start..start + len {
        dst.extend_from_slice(&src[r * width + col..r * width + col + hd]);
    }
}

/// SAFETY: the caller owns rows start..start+len, columns [col, col+hd) of `dst`.
unsafe fn scatter_head<T: Float>(dst: SharedMut<T>, src: &[T], start: usize, len: usize, width: usize, col: usize, hd: usize) {
    for i in 0..len {
        let d = std::slice::from_raw_parts_mut(dst.at((start + i) * width + col), hd);
        d.copy_from_slice(&src[i * hd..(i + 1) * hd]);
    }
}

/// The per-task buffers of attention (one head's rows gathered, scores,
/// outputs and their gradients), reused across the tasks of a rayon split.
#[derive(Default)]
struct Scratch<T> {
    kg: Vec<T>,
    vg: Vec<T>,
    qh: Vec<T>,
    s: Vec<T>,
    o: Vec<T>,
    doh: Vec<T>,
    dp: Vec<T>,
    dqh: Vec<T>,
    dkg: Vec<T>,
    dvg: Vec<T>,
}

/// Scores S = scale * Q K^T [len, len] of one (sequence, head) through GEMM.
fn scores<T: Float>(s: &mut Vec<T>, q: &[T], k: &[T], len: usize, hd: usize, scale: T) {
    s.clear();
    s.resize(len * len, T::zero());
    matmul(s, q, k, len, len, hd, false, true, false);
    s.iter_mut().for_each(|x| *x *= scale);
}

/// Per task (sequence, kv head): for each query head of the group, S = QK^T
/// and O = PV as GEMMs over the whole sequence, the causal mask applied to
/// the scores (the masked half is computed and discarded: GEMM still wins
/// over scalar loops by far).
pub fn attention_forward<T: Float>(
    out: &mut [T],
    lse: &mut [T],
    q: &[T],
    k: &[T],
    v: &[T],
    seqs: &[(usize, usize)],
    sh: AttnShape,
) {
    let (hd, h_all, kvh) = (sh.head_dim, sh.heads, sh.kv_heads);
    let (qw, kw) = (h_all * hd, kvh * hd);
    let scale = T::from_f64(sh.scale());
    let outp = SharedMut(out.as_mut_ptr());
    let lsep = SharedMut(lse.as_mut_ptr());
    // Scratch per rayon split, not per task: a task's buffers hold len^2
    // scores, and allocating them per task churned the allocator (page
    // faults on every step under mimalloc).
    tasks(seqs, kvh).into_par_iter().for_each_init(Scratch::<T>::default, |sc, (start, len, g)| {
        let Scratch { kg, vg, qh, s, o: oh, .. } = sc;
        oh.resize(len * hd, T::zero());
        gather_head(kg, k, start, len, kw, g * hd, hd);
        gather_head(vg, v, start, len, kw, g * hd, hd);
        for h in g * sh.group()..(g + 1) * sh.group() {
            gather_head(qh, q, start, len, qw, h * hd, hd);
            scores(s, qh, kg, len, hd, scale);
            for i in 0..len {
                let row = &mut s[i * len..(i + 1) * len];
                let m = exp::max(&row[..=i]);
                let sum = exp::exp_sub_sum(&mut row[..=i], m);
                let inv = sum.recip();
                row[..=i].iter_mut().for_each(|x| *x *= inv);
                row[i + 1..].iter_mut().for_each(|x| *x = T::zero());
                // SAFETY: (row start+i, head h) belongs to this task only.
                unsafe { *lsep.at((start + i) * h_all + h) = m + sum.ln() };
            }
            matmul(oh, s, vg, len, hd, len, false, false, false);
            // SAFETY: rows of this sequence, columns of head h: this task's only.
            unsafe { scatter_head(outp, oh, start, len, qw, h * hd, hd) };
        }
    });
}

/// Overwrites dq, dk, dv. Recomputes P from the saved log-sum-exp, then
/// dP = dO V^T, dS = P (dP - rowdot(dO, O)) scale, dQ = dS K, dK = dS^T Q,
/// dV = P^T dO, all as GEMMs; dK and dV sum over the heads of the group.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Float>(
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    dout: &[T],
    out: &[T],
    lse: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    seqs: &[(usize, usize)],
    sh: AttnShape,
) {
    let (hd, h_all, kvh) = (sh.head_dim, sh.heads, sh.kv_heads);
    let (qw, kw) = (h_all * hd, kvh * hd);
    let scale = T::from_f64(sh.scale());
    let (dqp, dkp, dvp) = (SharedMut(dq.as_mut_ptr()), SharedMut(dk.as_mut_ptr()), SharedMut(dv.as_mut_ptr()));
    tasks(seqs, kvh).into_par_iter().for_each_init(Scratch::<T>::default, |sc, (start, len, g)| {
        let Scratch { kg, vg, qh, s: p, o: oh, doh, dp, dqh, dkg, dvg } = sc;
        for (buf, n) in [(&mut *dp, len * len), (&mut *dqh, len * hd), (&mut *dkg, len * hd), (&mut *dvg, len * hd)] {
            buf.clear();
            buf.resize(n, T::zero());
        }
        gather_head(kg, k, start, len, kw, g * hd, hd);
        gather_head(vg, v, start, len, kw, g * hd, hd);
        for h in g * sh.group()..(g + 1) * sh.group() {
            gather_head(qh, q, start, len, qw, h * hd, hd);
            gather_head(doh, dout, start, len, qw, h * hd, hd);
            gather_head(oh, out, start, len, qw, h * hd, hd);
            scores(p, qh, kg, len, hd, scale);
            matmul(dp, doh, vg, len, len, hd, false, true, false);
            for i in 0..len {
                let l = lse[(start + i) * h_all + h];
                let di = dot(&doh[i * hd..(i + 1) * hd], &oh[i * hd..(i + 1) * hd]);
                let (pr, dpr) = (&mut p[i * len..(i + 1) * len], &mut dp[i * len..(i + 1) * len]);
                exp::exp_sub_scaled(&mut pr[..=i], l, T::one());
                for (d, &pj) in dpr[..=i].iter_mut().zip(&pr[..=i]) {
                    *d = pj * (*d - di) * scale;
                }
                pr[i + 1..].iter_mut().for_each(|x| *x = T::zero());
                dpr[i + 1..].iter_mut().for_each(|x| *x = T::zero());
            }
            // dp now holds dS.
            matmul(dqh, dp, kg, len, hd, len, false, false, false);
            matmul(dkg, dp, qh, len, hd, len, true, false, true);
            matmul(dvg, p, doh, len, hd, len, true, false, true);
            // SAFETY: rows of this sequence, columns of head h: this task's only.
            unsafe { scatter_head(dqp, dqh, start, len, qw, h * hd, hd) };
        }
        // SAFETY: rows of this sequence, columns of kv head g: this task's only.
        unsafe {
            scatter_head(dkp, dkg, start, len, kw, g * hd, hd);
            scatter_head(dvp, dvg, start, len, kw, g * hd, hd);
        }
    });
}

/// Decode-time attention: each new row attends to its own sequence's KV
/// cache up to and including its position (the cache already holds the
/// row's own key and value). `rows[r] = (cache index, position)`;
/// `caches[c] = (keys, values)`, each [capacity, kv_heads*head_dim].
pub fn attention_cached<T: Float>(out: &mut [T], q: &[T], caches: &[(&[T], &[T])], rows: &[(usize, usize)], sh: AttnShape) {
    let qw = sh.heads * sh.head_dim;
    let fast = fast_row(sh);
    out.par_chunks_mut(qw).zip(q.par_chunks(qw)).zip(rows.par_iter()).for_each(|((o, qr), &(c, pos))| {
        let (k, v) = caches[c];
        if let Some(row) = fast {
            if let (Some(o), Some(qr), Some(k), Some(v)) = (as_f32_mut(o), as_f32(qr), as_f32(k), as_f32(v)) {
                // SAFETY: `fast_row` checked the CPU features and the head size.
                unsafe { row(o, qr, k, v, pos + 1, sh) };
                return;
            }
        }
        cached_row(o, qr, k, v, pos + 1, sh)
    });
}

/// One query row against `len` cached positions, per kv head: the scores of
/// the group's query heads [group, len], then their softmax-weighted values.
fn cached_row<T: Float>(o: &mut [T], qr: &[T], k: &[T], v: &[T], len: usize, sh: AttnShape) {
    let (hd, gs) = (sh.head_dim, sh.group());
    let kw = sh.kv_heads * hd;
    let scale = T::from_f64(sh.scale());
    let mut p = vec![T::zero(); len];
    for h in 0..sh.heads {
        let g = h / gs;
        let qh = &qr[h * hd..(h + 1) * hd];
        for (j, pj) in p.iter_mut().enumerate() {
            *pj = dot(qh, &k[j * kw + g * hd..][..hd]) * scale;
        }
        let inv = softmax_unnormalized(&mut p);
        let oh = &mut o[h * hd..(h + 1) * hd];
        oh.iter_mut().for_each(|x| *x = T::zero());
        for (j, &pj) in p.iter().enumerate() {
            let w = pj * inv;
            for (d, &vv) in oh.iter_mut().zip(&v[j * kw + g * hd..][..hd]) {
                *d += w * vv;
            }
        }
    }
}

/// p <- exp(p - max p); returns 1 / sum.
#[inline]
fn softmax_unnormalized<T: Float>(p: &mut [T]) -> T {
    let m = exp::max(p);
    exp::exp_sub_sum(p, m).recip()
}

/// An f32 decode row kernel: (out, q row, keys, values, positions, shape).
type RowKernel = unsafe fn(&mut [f32], &[f32], &[f32], &[f32], usize, AttnShape);

/// The vector kernel for this shape on this CPU (`ops::cpu`), if any: whole
/// registers per head (16, 32, 64 or 128 lanes on AVX-512; 8, 16, 32, 64 or
/// 128 on AVX2), else the generic row.
fn fast_row(sh: AttnShape) -> Option<RowKernel> {
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    if crate::ops::cpu::avx512() && matches!(sh.head_dim, 16 | 32 | 64 | 128) {
        return Some(avx512::cached_row);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::ops::cpu::avx2() && matches!(sh.head_dim, 8 | 16 | 32 | 64 | 128) {
        return Some(avx2::cached_row);
    }
    let _ = sh;
    None
}

/// Decode attention in f32 on one instruction set: a head's query (or its
/// output) stays in registers while the cached keys (values) stream past.
/// One body for AVX-512 (16 lanes) and AVX2 (8 lanes); a head of head_dim
/// floats is D = head_dim / lanes vectors.
#[cfg(target_arch = "x86_64")]
macro_rules! attention_kernel {
    ($name:ident, $feature:literal, $lanes:expr, $v:ty, $zero:expr, $load:path, $store:path, $set1:path, $mul:path, $fma:path, $sum:path) => {
        mod $name {
            use super::{softmax_unnormalized, AttnShape};
            use std::arch::x86_64::*;

            const LANES: usize = $lanes;

            /// SAFETY: only where `fast_row` chose this kernel (CPU features, head size).
            pub(super) unsafe fn cached_row(o: &mut [f32], qr: &[f32], k: &[f32], v: &[f32], len: usize, sh: AttnShape) {
                match sh.head_dim / LANES {
                    1 => row::<1>(o, qr, k, v, len, sh),
                    2 => row::<2>(o, qr, k, v, len, sh),
                    4 => row::<4>(o, qr, k, v, len, sh),
                    8 => row::<8>(o, qr, k, v, len, sh),
                    _ => row::<16>(o, qr, k, v, len, sh),
                }
            }

            #[target_feature(enable = $feature)]
            unsafe fn row<const D: usize>(o: &mut [f32], qr: &[f32], k: &[f32], v: &[f32], len: usize, sh: AttnShape) {
                let (hd, gs) = (sh.head_dim, sh.group());
                let kw = sh.kv_heads * hd;
                assert!(k.len() >= (len - 1) * kw + hd * sh.kv_heads && v.len() >= (len - 1) * kw + hd * sh.kv_heads && o.len() >= sh.heads * hd);
                let scale = sh.scale() as f32;
                let mut p = vec![0f32; len];
                for h in 0..sh.heads {
                    let off = (h / gs) * hd;
                    let (kp, vp) = (k.as_ptr().add(off), v.as_ptr().add(off));
                    let mut qv: [$v; D] = [$zero; D];
                    for (c, x) in qv.iter_mut().enumerate() {
                        *x = $load(qr.as_ptr().add(h * hd + LANES * c));
                    }
                    for (j, pj) in p.iter_mut().enumerate() {
                        let kj = kp.add(j * kw);
                        let mut acc = $mul(qv[0], $load(kj));
                        for (c, &x) in qv.iter().enumerate().skip(1) {
                            acc = $fma(x, $load(kj.add(LANES * c)), acc);
                        }
                        *pj = $sum(acc) * scale;
                    }
                    let inv = $set1(softmax_unnormalized(&mut p));
                    let mut acc: [$v; D] = [$zero; D];
                    for (j, &pj) in p.iter().enumerate() {
                        let (w, vj) = ($set1(pj), vp.add(j * kw));
                        for (c, a) in acc.iter_mut().enumerate() {
                            *a = $fma(w, $load(vj.add(LANES * c)), *a);
                        }
                    }
                    for (c, &a) in acc.iter().enumerate() {
                        $store(o.as_mut_ptr().add(h * hd + LANES * c), $mul(a, inv));
                    }
                }
            }
        }
    };
}

#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
attention_kernel!(avx512, "avx512f", 16, __m512, _mm512_setzero_ps(), _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_mul_ps, _mm512_fmadd_ps, _mm512_reduce_add_ps);
#[cfg(target_arch = "x86_64")]
attention_kernel!(avx2, "avx2,fma", 8, __m256, _mm256_setzero_ps(), _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_mul_ps, _mm256_fmadd_ps, crate::ops::cpu::hsum256);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, rand_vec};

    #[test]
    fn attention_gradients_match_finite_differences() {
        let sh = AttnShape { heads: 4, kv_heads: 2, head_dim: 3 };
        let seqs = [(0, 3), (3, 1), (4, 4)];
        let n = 8;
        let q = rand_vec::<f64>(n * 12, 1);
        let k = rand_vec::<f64>(n * 6, 2);
        let v = rand_vec::<f64>(n * 6, 3);
        let g = rand_vec::<f64>(n * 12, 4);
        let loss = |q: &[f64], k: &[f64], v: &[f64]| {
            let mut o = vec![0.0; n * 12];
            let mut l = vec![0.0; n * 4];
            attention_forward(&mut o, &mut l, q, k, v, &seqs, sh);
            o.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut o = vec![0.0; n * 12];
        let mut l = vec![0.0; n * 4];
        attention_forward(&mut o, &mut l, &q, &k, &v, &seqs, sh);
        let (mut dq, mut dk, mut dv) = (vec![0.0; n * 12], vec![0.0; n * 6], vec![0.0; n * 6]);
        attention_backward(&mut dq, &mut dk, &mut dv, &g, &o, &l, &q, &k, &v, &seqs, sh);
        check_grad(&q, &dq, |q| loss(q, &k, &v));
        check_grad(&k, &dk, |k| loss(&q, k, &v));
        check_grad(&v, &dv, |v| loss(&q, &k, v));
    }

    /// The f32 decode path (512-bit kernel where the CPU has it) against the
    /// f64 generic path, for every head size the kernel takes and a few it
    /// leaves to the generic code.
    /// The vector kernels this CPU (and build) runs for this shape.
    fn kernels(sh: AttnShape) -> Vec<(&'static str, RowKernel)> {
        let mut out: Vec<(&'static str, RowKernel)> = Vec::new();
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        if std::arch::is_x86_feature_detected!("avx512f") && matches!(sh.head_dim, 16 | 32 | 64 | 128) {
            out.push(("avx512", avx512::cached_row));
        }
        #[cfg(target_arch = "x86_64")]
        if crate::ops::cpu::avx2() && matches!(sh.head_dim, 8 | 16 | 32 | 64 | 128) {
            out.push(("avx2", avx2::cached_row));
        }
        let _ = sh;
        out
    }

    #[test]
    fn cached_attention_in_f32_matches_f64() {
        for (hd, heads, kvh) in [(16, 6, 2), (64, 9, 3), (128, 4, 4), (32, 8, 1), (24, 4, 2), (8, 4, 2), (40, 2, 1)] {
            let sh = AttnShape { heads, kv_heads: kvh, head_dim: hd };
            let (qw, kw) = (heads * hd, kvh * hd);
            let cap = 70;
            let ks: Vec<Vec<f64>> = (0..3).map(|c| rand_vec::<f64>(cap * kw, 10 + c)).collect();
            let vs: Vec<Vec<f64>> = (0..3).map(|c| rand_vec::<f64>(cap * kw, 20 + c)).collect();
            let rows = [(0, 0), (1, 17), (2, 69), (0, 40)];
            let q = rand_vec::<f64>(rows.len() * qw, 30 + hd as u64);
            let caches: Vec<(&[f64], &[f64])> = ks.iter().zip(&vs).map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
            let mut want = vec![0.0; rows.len() * qw];
            attention_cached(&mut want, &q, &caches, &rows, sh);
            let f = |x: &[f64]| x.iter().map(|&y| y as f32).collect::<Vec<f32>>();
            let (k32, v32): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (ks.iter().map(|k| f(k)).collect(), vs.iter().map(|v| f(v)).collect());
            let caches32: Vec<(&[f32], &[f32])> = k32.iter().zip(&v32).map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
            let mut got = vec![0f32; rows.len() * qw];
            attention_cached(&mut got, &f(&q), &caches32, &rows, sh);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((*g as f64 - w).abs() < 1e-5, "head_dim {hd} [{i}]: {g} vs {w}");
            }
            // Each vector kernel this CPU has, whichever `attention_cached` picked.
            let q32 = f(&q);
            for (name, kernel) in kernels(sh) {
                for (r, &(c, pos)) in rows.iter().enumerate() {
                    let mut o = vec![0f32; qw];
                    // SAFETY: `kernels` lists only kernels this CPU runs for this head size.
                    unsafe { kernel(&mut o, &q32[r * qw..(r + 1) * qw], caches32[c].0, caches32[c].1, pos + 1, sh) };
                    for (i, (g, w)) in o.iter().zip(&want[r * qw..(r + 1) * qw]).enumerate() {
                        assert!((*g as f64 - w).abs() < 1e-5, "{name} head_dim {hd} row {r} [{i}]: {g} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn cached_attention_equals_full_attention_rows() {
        let sh = AttnShape { heads: 4, kv_heads: 2, head_dim: 3 };
        let n = 5;
        let q = rand_vec::<f64>(n * 12, 1);
        let k = rand_vec::<f64>(n * 6, 2);
        let v = rand_vec::<f64>(n * 6, 3);
        let mut full = vec![0.0; n * 12];
        let mut l = vec![0.0; n * 4];
        attention_forward(&mut full, &mut l, &q, &k, &v, &[(0, n)], sh);
        // The last two rows decoded against the cache of all five positions.
        let mut out = vec![0.0; 2 * 12];
        attention_cached(&mut out, &q[3 * 12..], &[(&k, &v)], &[(0, 3), (0, 4)], sh);
        for (a, b) in out.iter().zip(&full[3 * 12..]) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn sequences_do_not_attend_across_boundaries() {
        let sh = AttnShape { heads: 2, kv_heads: 1, head_dim: 2 };
        let q = rand_vec::<f64>(4 * 4, 1);
        let mut k = rand_vec::<f64>(4 * 2, 2);
        let v = rand_vec::<f64>(4 * 2, 3);
        let run = |k: &[f64]| {
            let mut o = vec![0.0; 16];
            let mut l = vec![0.0; 8];
            attention_forward(&mut o, &mut l, &q, k, &v, &[(0, 2), (2, 2)], sh);
            o
        };
        let before = run(&k);
        k[0] += 1.0; // first sequence's key: second sequence must not see it
        let after = run(&k);
        assert_eq!(&before[8..], &after[8..]);
        assert_ne!(&before[..8], &after[..8]);
    }
}
