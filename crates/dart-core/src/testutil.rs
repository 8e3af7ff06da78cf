//! Helpers for tests: seeded random vectors and a central-difference check.
use crate::float::Float;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn rand_vec<T: Float>(n: usize, seed: u64) -> Vec<T> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| T::from_f64(r.random::<f64>() * 2.0 - 1.0)).collect()
}

/// Relative tolerance of analytic vs central-difference gradients in f64
/// (step 1e-6; truncation error is O(h^2) ~ 1e-12, rounding ~ 1e-10).
pub const FD_TOL: f64 = 1e-6;

/// Asserts that `grad` matches d loss / d x by central differences, per element:
/// |analytic - numeric| <= FD_TOL * max(1, |numeric|).
pub fn check_grad(x: &[f64], grad: &[f64], loss: impl Fn(&[f64]) -> f64) {
    assert_eq!(x.len(), grad.len());
    let h = 1e-6;
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        xp[i] = x[i] + h;
        let lp = loss(&xp);
        xp[i] = x[i] - h;
        let lm = loss(&xp);
        xp[i] = x[i];
        let num = (lp - lm) / (2.0 * h);
        let err = (grad[i] - num).abs();
        assert!(err <= FD_TOL * num.abs().max(1.0), "element {i}: analytic {} vs numeric {num}", grad[i]);
    }
}
