//! Log-softmax gathered at the target token: logp = z[t] - logsumexp(z).
//! The caller fills `logits` [rows, vocab] (one GEMM with the LM head).
use super::exp::{exp_sub_scaled, logsumexp};
use crate::float::Float;
use rayon::prelude::*;

/// Per row: `lse[r]` and, where `targets[r] >= 0`, `logp[r] = z[t] - lse`
/// (0 where there is no target).
pub fn logprob_forward<T: Float>(logp: &mut [T], lse: &mut [T], logits: &[T], targets: &[i32], vocab: usize) {
    logp.par_iter_mut()
        .zip(lse.par_iter_mut())
        .zip(logits.par_chunks(vocab).zip(targets.par_iter()))
        .for_each(|((lp, l), (z, &t))| {
            // The one log-sum-exp, which sampling also calls.
            *l = logsumexp(z);
            *lp = if t >= 0 { z[t as usize] - *l } else { T::zero() };
        });
}

/// Turns `logits` into dL/dlogits in place: g * (onehot(t) - softmax(z)).
/// Rows with no target get 0.
pub fn logprob_backward<T: Float>(logits: &mut [T], lse: &[T], dlogp: &[T], targets: &[i32], vocab: usize) {
    logits
        .par_chunks_mut(vocab)
        .zip(lse.par_iter().zip(dlogp.par_iter().zip(targets.par_iter())))
        .for_each(|(z, (&l, (&g, &t)))| {
            if t < 0 || g == T::zero() {
                z.iter_mut().for_each(|x| *x = T::zero());
                return;
            }
            exp_sub_scaled(z, l, -g);
            z[t as usize] += g;
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, rand_vec};

    #[test]
    fn logprob_gradient_matches_finite_differences() {
        let (rows, v) = (4, 7);
        let z = rand_vec::<f64>(rows * v, 1);
        let targets = [3, -1, 0, 6];
        let g = [0.5, 2.0, -1.0, 1.5];
        let loss = |z: &[f64]| {
            let (mut lp, mut l) = (vec![0.0; rows], vec![0.0; rows]);
            logprob_forward(&mut lp, &mut l, z, &targets, v);
            lp.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
        };
        let (mut lp, mut l) = (vec![0.0; rows], vec![0.0; rows]);
        logprob_forward(&mut lp, &mut l, &z, &targets, v);
        assert_eq!(lp[1], 0.0);
        let mut dz = z.clone();
        logprob_backward(&mut dz, &l, &g, &targets, v);
        check_grad(&z, &dz, loss);
    }
}
