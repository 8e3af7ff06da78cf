//! exp over slices in f32: the softmax of attention (forward, backward and
//! decode), the log-softmax of the LM head (training and sampling) and
//! SwiGLU's sigmoid. Generic code keeps `T::exp` for f64, the reference.
//!
//! Why hand-written: libm's `expf`/`exp` are scalar calls, and they took
//! 17% of the engine's time in a training step of the built-in world's
//! model (perf, 2-core Zen 5). No maintained crate has a vectorizable f32 exp
//! on stable Rust (sleef needs nightly portable SIMD). `exp_f32` below is
//! Cephes' expf (range reduction to |r| <= ln2/2 in two parts, degree-6
//! polynomial, 2^n through the exponent bits) written with plain IEEE adds,
//! multiplies, compares and bit moves only, no fused multiply-add: LLVM
//! vectorizes the loops that call it (`cpu::vectorized`), and AVX-512, AVX2
//! and the portable build give the same bits (test). Sums run in 16 fixed
//! partial sums for the same reason.
use super::cpu::vectorized_fn;
use crate::float::{as_f32, as_f32_mut, Float};

/// Below this, exp underflows the normal range: 0.
const LO: f32 = -87.336_54;
/// Above this, inf (e^88.3 = 2.1e38; n = round(x log2 e) stays <= 127).
const HI: f32 = 88.3;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 in two parts: C1 has few bits, so n * C1 is exact.
const C1: f32 = 0.693_359_4;
const C2: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding it rounds to an integer (to nearest, ties to even) held in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;
const LANES: usize = 16;

/// e^x in f32, relative error below 1.5e-7 on [-87.3, 88.3]; 0 below, inf
/// above, NaN for NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // Selects, not min/max: a NaN input stays NaN.
    let xc = if x > HI { HI } else { x };
    let xc = if xc < LO { LO } else { xc };
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = xc - n * C1 - n * C2;
    let z = r * r;
    let mut y = 1.987_569_2e-4f32;
    y = y * r + 1.398_199_9e-3;
    y = y * r + 8.333_452e-3;
    y = y * r + 4.166_579_6e-2;
    y = y * r + 1.666_666_5e-1;
    y = y * r + 5.000_000_1e-1;
    y = y * z + r + 1.0;
    // n in [-126, 127]: a normal power of two.
    let pow2 = f32::from_bits(((t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) as u32) << 23);
    let e = y * pow2;
    if x < LO {
        0.0
    } else if x > HI {
        f32::INFINITY
    } else {
        e
    }
}

/// The 16 partial sums, added in one fixed order.
#[inline(always)]
fn combine<S: Copy + std::ops::Add<Output = S>>(a: [S; LANES]) -> S {
    let h: [S; 8] = std::array::from_fn(|i| a[i] + a[i + 8]);
    let q: [S; 4] = std::array::from_fn(|i| h[i] + h[i + 4]);
    (q[0] + q[2]) + (q[1] + q[3])
}

vectorized_fn! {
    fn exp_sub_sum_f32 / exp_sub_sum_f32_on(x: &mut [f32], m: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let (chunks, tail) = x.as_chunks_mut::<LANES>();
        for c in chunks {
            for l in 0..LANES {
                c[l] = exp_f32(c[l] - m);
                acc[l] += c[l];
            }
        }
        for (l, v) in tail.iter_mut().enumerate() {
            *v = exp_f32(*v - m);
            acc[l] += *v;
        }
        combine(acc)
    }
}

vectorized_fn! {
    fn exp_sub_scaled_f32 / exp_sub_scaled_f32_on(x: &mut [f32], m: f32, s: f32) -> () {
        x.iter_mut().for_each(|v| *v = s * exp_f32(*v - m))
    }
}

vectorized_fn! {
    fn sum_exp_sub_f32 / sum_exp_sub_f32_on(x: &[f32], m: f32) -> f64 {
        let mut acc = [0f64; LANES];
        let (chunks, tail) = x.as_chunks::<LANES>();
        for c in chunks {
            for l in 0..LANES {
                acc[l] += exp_f32(c[l] - m) as f64;
            }
        }
        for (l, &v) in tail.iter().enumerate() {
            acc[l] += exp_f32(v - m) as f64;
        }
        combine(acc)
    }
}

vectorized_fn! {
    fn max_f32 / max_f32_on(x: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; LANES];
        let (chunks, tail) = x.as_chunks::<LANES>();
        for c in chunks {
            for l in 0..LANES {
                acc[l] = acc[l].max(c[l]);
            }
        }
        for (l, &v) in tail.iter().enumerate() {
            acc[l] = acc[l].max(v);
        }
        acc.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
    }
}

/// x <- e^(x - m); returns the sum of the new x.
pub fn exp_sub_sum<T: Float>(x: &mut [T], m: T) -> T {
    if let Some(x) = as_f32_mut(x) {
        let m = m.as_f64() as f32;
        return T::from_f64(exp_sub_sum_f32(x, m) as f64);
    }
    let mut sum = T::zero();
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        sum += *v;
    }
    sum
}

/// x <- s e^(x - m).
pub fn exp_sub_scaled<T: Float>(x: &mut [T], m: T, s: T) {
    if let Some(x) = as_f32_mut(x) {
        let (m, s) = (m.as_f64() as f32, s.as_f64() as f32);
        return exp_sub_scaled_f32(x, m, s);
    }
    x.iter_mut().for_each(|v| *v = s * (*v - m).exp());
}

/// The largest element (NaNs ignored, as `f32::max` does; -inf when empty).
pub fn max<T: Float>(x: &[T]) -> T {
    if let Some(x) = as_f32(x) {
        return T::from_f64(max_f32(x) as f64);
    }
    x.iter().fold(T::neg_infinity(), |a, &b| a.max(b))
}

/// log sum_i e^(z_i), with the largest z taken out first and the sum in
/// f64. Training (`logprob_forward`) and sampling (`generate`) both call it,
/// so a recorded logprob is the one training recomputes from equal logits.
pub fn logsumexp<T: Float>(z: &[T]) -> T {
    let m = max(z);
    let s: f64 = match as_f32(z) {
        Some(z) => {
            let m = m.as_f64() as f32;
            sum_exp_sub_f32(z, m)
        }
        None => z.iter().map(|&x| (x - m).as_f64().exp()).sum(),
    };
    m + T::from_f64(s.ln())
}

/// The logistic function 1 / (1 + e^-x) in f32 (SwiGLU), vectorizable.
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cpu::VectorIsa;

    /// Relative error against f64 exp over a dense sweep and the edges.
    #[test]
    fn exp_f32_is_within_1_5e_7_of_exp() {
        let mut worst = (0.0f64, 0.0f32);
        let mut cases = 0;
        let mut check = |x: f32| {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            let rel = (got - want).abs() / want;
            if rel > worst.0 {
                worst = (rel, x);
            }
            cases += 1;
        };
        let steps = 2_000_000;
        for i in 0..=steps {
            check(-87.3 + (88.3 + 87.3) * i as f32 / steps as f32);
        }
        for x in [0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 0.34657, -0.34657, 88.29, -87.336, 1.0, -1.0, 10.0, -10.0] {
            check(x);
        }
        println!("exp_f32: {cases} inputs, worst relative error {:.3e} at {}", worst.0, worst.1);
        assert!(worst.0 < 1.5e-7, "relative error {:.3e} at {}", worst.0, worst.1);
        assert_eq!(exp_f32(-87.4), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(88.5), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
    }

    fn inputs(n: usize, seed: u64) -> Vec<f32> {
        crate::testutil::rand_vec::<f32>(n, seed).iter().map(|x| x * 30.0).collect()
    }

    /// Every instruction set gives the portable build's bits, on every tail length.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let mut compared = 0;
        for n in (0..=70).chain([255, 1536]) {
            let x = inputs(n, n as u64 + 1);
            let m = max(&x).max(0.0);
            let on = |isa| {
                let (mut y, mut z) = (x.clone(), x.clone());
                let s = exp_sub_sum_f32_on(isa, &mut y, m)?;
                exp_sub_scaled_f32_on(isa, &mut z, m, -0.25)?;
                y.extend(z);
                Some((s, y, sum_exp_sub_f32_on(isa, &x, m)?, max_f32_on(isa, &x)?))
            };
            let portable = on(VectorIsa::Portable).expect("portable always runs");
            for isa in [VectorIsa::Avx512, VectorIsa::Avx2] {
                let Some(got) = on(isa) else { continue };
                assert_eq!(got.0.to_bits(), portable.0.to_bits(), "{isa:?} n {n}: sum");
                assert!(got.1.iter().zip(&portable.1).all(|(a, b)| a.to_bits() == b.to_bits()), "{isa:?} n {n}: values");
                assert_eq!(got.2.to_bits(), portable.2.to_bits(), "{isa:?} n {n}: f64 sum");
                assert_eq!(got.3.to_bits(), portable.3.to_bits(), "{isa:?} n {n}: max");
                compared += 1;
            }
        }
        println!("{compared} (instruction set, length) pairs compared bit for bit");
    }

    /// The f32 slice functions against the f64 reference path (on the f32
    /// differences x - m, so that only exp's own error is measured).
    #[test]
    fn slice_functions_match_f64() {
        for n in [1, 7, 16, 17, 100, 1536] {
            let x = inputs(n, 40 + n as u64);
            let m32 = max(&x);
            // x - m is exact in f64; shifting x32 by m32 rounds: compare on the rounded differences.
            let x64: Vec<f64> = x.iter().map(|&v| (v - m32) as f64).collect();
            let m64 = max(&x64);
            assert_eq!(m64, 0.0);
            assert_eq!(m32, x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)));
            let (mut y32, mut y64) = (x.clone(), x64.clone());
            let (s32, s64) = (exp_sub_sum(&mut y32, m32), exp_sub_sum(&mut y64, m64));
            assert!((s32 as f64 - s64).abs() <= 1e-6 * s64, "n {n}: sum {s32} vs {s64}");
            for (a, b) in y32.iter().zip(&y64) {
                assert!((*a as f64 - b).abs() <= 3e-7 * b.abs() + 1e-38, "n {n}: {a} vs {b}");
            }
            let (l32, l64) = (logsumexp(&x), logsumexp(&x64) + m32 as f64);
            assert!((l32 as f64 - l64).abs() <= 1e-6 * l64.abs().max(1.0), "n {n}: logsumexp {l32} vs {l64}");
            let (mut z32, mut z64) = (x.clone(), x64.clone());
            exp_sub_scaled(&mut z32, m32, -0.5);
            exp_sub_scaled(&mut z64, m64, -0.5);
            for (a, b) in z32.iter().zip(&z64) {
                assert!((*a as f64 - b).abs() <= 3e-7 * b.abs() + 1e-38, "n {n}: scaled {a} vs {b}");
            }
        }
        let nan = [1.0f32, f32::NAN, 2.0];
        assert!(logsumexp(&nan).is_nan(), "a NaN logit makes the log-sum-exp NaN");
        assert_eq!(max::<f32>(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn sigmoid_f32_matches_f64() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.05;
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            // Below -88.3, e^-x is inf in f32 (as libm's expf gives): 0 instead of < 5e-39.
            assert!((sigmoid_f32(x) as f64 - want).abs() <= 3e-7 * want + 5e-39, "{x}");
        }
        assert_eq!(sigmoid_f32(-100.0), 0.0);
        assert_eq!(sigmoid_f32(100.0), 1.0);
    }
}
