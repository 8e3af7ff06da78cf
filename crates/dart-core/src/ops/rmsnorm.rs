//! RMSNorm (Llama/Qwen2): y = w * x / sqrt(mean(x^2) + eps), per row.
use crate::float::Float;
use rayon::prelude::*;

/// Forward over `x` [rows, d]; writes `y` and the per-row reciprocal RMS
/// (kept for backward).
pub fn rmsnorm_forward<T: Float>(y: &mut [T], rstd: &mut [T], x: &[T], w: &[T], d: usize, eps: f64) {
    let eps = T::from_f64(eps);
    y.par_chunks_mut(d)
        .zip(rstd.par_iter_mut())
        .zip(x.par_chunks(d))
        .for_each(|((y, r), x)| {
            let ms = x.iter().map(|&v| v * v).sum::<T>() / T::from_usize(d);
            *r = (ms + eps).sqrt().recip();
            for i in 0..d {
                y[i] = w[i] * (x[i] * *r);
            }
        });
}

/// Backward: dx = r (w dy) - r^3/d * x * sum(w dy x); `dw` (if given)
/// accumulates sum over rows of dy * x * r.
pub fn rmsnorm_backward<T: Float>(
    dx: &mut [T],
    dw: Option<&mut [T]>,
    dy: &[T],
    x: &[T],
    w: &[T],
    rstd: &[T],
    d: usize,
) {
    dx.par_chunks_mut(d)
        .zip(dy.par_chunks(d))
        .zip(x.par_chunks(d))
        .zip(rstd.par_iter())
        .for_each(|(((dx, dy), x), &r)| {
            let dot = (0..d).map(|i| w[i] * dy[i] * x[i]).sum::<T>();
            let c = r * r * r * dot / T::from_usize(d);
            for i in 0..d {
                dx[i] = r * w[i] * dy[i] - c * x[i];
            }
        });
    if let Some(dw) = dw {
        // Sequential over rows so the sum order (and the result) is fixed.
        for ((dy, x), &r) in dy.chunks(d).zip(x.chunks(d)).zip(rstd) {
            for i in 0..d {
                dw[i] += dy[i] * x[i] * r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, rand_vec};

    #[test]
    fn rmsnorm_gradients_match_finite_differences() {
        let (rows, d) = (3, 5);
        let x = rand_vec::<f64>(rows * d, 1);
        let w = rand_vec::<f64>(d, 2);
        let g = rand_vec::<f64>(rows * d, 3);
        let loss = |x: &[f64], w: &[f64]| {
            let mut y = vec![0.0; rows * d];
            let mut r = vec![0.0; rows];
            rmsnorm_forward(&mut y, &mut r, x, w, d, 1e-6);
            y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut y = vec![0.0; rows * d];
        let mut r = vec![0.0; rows];
        rmsnorm_forward(&mut y, &mut r, &x, &w, d, 1e-6);
        let mut dx = vec![0.0; rows * d];
        let mut dw = vec![0.0; d];
        rmsnorm_backward(&mut dx, Some(&mut dw), &g, &x, &w, &r, d);
        check_grad(&x, &dx, |x| loss(x, &w));
        check_grad(&w, &dw, |w| loss(&x, w));
    }
}
