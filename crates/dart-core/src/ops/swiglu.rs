//! SwiGLU activation: a = silu(g) * u. In f32 the sigmoid is `exp::sigmoid_f32`
//! in loops compiled for the CPU's vector set; f64 keeps `T::exp`.
use super::cpu::vectorized_fn;
use super::exp::sigmoid_f32;
use crate::float::{as_f32, as_f32_mut, Float};
use rayon::prelude::*;

const CHUNK: usize = 4096;

vectorized_fn! {
    fn forward_f32 / forward_f32_on(a: &mut [f32], g: &[f32], u: &[f32]) -> () {
        for i in 0..a.len() {
            a[i] = g[i] * sigmoid_f32(g[i]) * u[i];
        }
    }
}

vectorized_fn! {
    fn backward_f32 / backward_f32_on(dg: &mut [f32], du: &mut [f32], da: &[f32], g: &[f32], u: &[f32]) -> () {
        for i in 0..dg.len() {
            let s = sigmoid_f32(g[i]);
            du[i] = da[i] * g[i] * s;
            dg[i] = da[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
        }
    }
}

fn sigmoid<T: Float>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

pub fn swiglu_forward<T: Float>(a: &mut [T], g: &[T], u: &[T]) {
    a.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
        .for_each(|(a, (g, u))| {
            if let (Some(a), Some(g), Some(u)) = (as_f32_mut(a), as_f32(g), as_f32(u)) {
                return forward_f32(a, g, u);
            }
            for i in 0..a.len() {
                a[i] = g[i] * sigmoid(g[i]) * u[i];
            }
        });
}

/// dg = da * u * silu'(g), du = da * silu(g).
pub fn swiglu_backward<T: Float>(dg: &mut [T], du: &mut [T], da: &[T], g: &[T], u: &[T]) {
    dg.par_chunks_mut(CHUNK)
        .zip(du.par_chunks_mut(CHUNK))
        .zip(da.par_chunks(CHUNK).zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK))))
        .for_each(|((dg, du), (da, (g, u)))| {
            if let (Some(dg), Some(du), Some(da), Some(g), Some(u)) = (as_f32_mut(dg), as_f32_mut(du), as_f32(da), as_f32(g), as_f32(u)) {
                return backward_f32(dg, du, da, g, u);
            }
            for i in 0..dg.len() {
                let s = sigmoid(g[i]);
                du[i] = da[i] * g[i] * s;
                dg[i] = da[i] * u[i] * s * (T::one() + g[i] * (T::one() - s));
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, rand_vec};

    #[test]
    fn swiglu_gradients_match_finite_differences() {
        let n = 11;
        let g = rand_vec::<f64>(n, 1);
        let u = rand_vec::<f64>(n, 2);
        let w = rand_vec::<f64>(n, 3);
        let loss = |g: &[f64], u: &[f64]| {
            let mut a = vec![0.0; n];
            swiglu_forward(&mut a, g, u);
            a.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>()
        };
        let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
        swiglu_backward(&mut dg, &mut du, &w, &g, &u);
        check_grad(&g, &dg, |g| loss(g, &u));
        check_grad(&u, &du, |u| loss(&g, u));
    }
}
