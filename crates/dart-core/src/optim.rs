//! AdamW (PyTorch semantics: decoupled weight decay, bias-corrected moments)
//! with global-norm clipping, one state per parameter group (adapter slot or
//! the base model). A group with no routed token is skipped entirely, so its
//! parameters and moments stay bit for bit (the lazy update).
use crate::error::{DartError, Result};
use crate::float::Float;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// 0 disables clipping.
    pub max_grad_norm: f64,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, max_grad_norm: 0.0 }
    }
}

impl AdamW {
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64, allowed: &str| {
            Err(DartError::InvalidArgument(format!("{what} = {v}, expected {allowed}")))
        };
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad("lr", self.lr, "a finite number >= 0");
        }
        if !(0.0..1.0).contains(&self.beta1) {
            return bad("beta1", self.beta1, "0 <= beta1 < 1");
        }
        if !(0.0..1.0).contains(&self.beta2) {
            return bad("beta2", self.beta2, "0 <= beta2 < 1");
        }
        if !(self.eps > 0.0) {
            return bad("eps", self.eps, "> 0");
        }
        if !(self.weight_decay >= 0.0) {
            return bad("weightDecay", self.weight_decay, ">= 0");
        }
        if !(self.max_grad_norm >= 0.0) {
            return bad("maxGradNorm", self.max_grad_norm, ">= 0 (0 = no clipping)");
        }
        Ok(())
    }
}

/// First and second moments of every tensor of a group, and its step count.
#[derive(Debug, Clone, Default)]
pub struct AdamState<T> {
    pub step: u64,
    pub m: Vec<Vec<T>>,
    pub v: Vec<Vec<T>>,
}

impl<T: Float> AdamState<T> {
    pub fn new(sizes: &[usize]) -> Self {
        AdamState { step: 0, m: sizes.iter().map(|&n| vec![T::zero(); n]).collect(), v: sizes.iter().map(|&n| vec![T::zero(); n]).collect() }
    }
}

/// The global L2 norm of a set of gradients, summed in f64.
pub fn grad_norm<T: Float>(grads: &[&Vec<T>]) -> f64 {
    grads.iter().flat_map(|g| g.iter()).map(|&x| x.as_f64() * x.as_f64()).sum::<f64>().sqrt()
}

/// Clipping factor for a norm: min(1, max / norm).
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 && norm > max_norm {
        max_norm / (norm + 1e-6)
    } else {
        1.0
    }
}

/// One AdamW update of a group. `pg` pairs each parameter with its gradient;
/// `grad_scale` applies clipping. Returns nothing; the caller zeroes grads.
pub fn adamw_step<T: Float>(opt: &AdamW, st: &mut AdamState<T>, pg: &mut [(&mut Vec<T>, &mut Vec<T>)], grad_scale: f64) {
    st.step += 1;
    for (i, (p, g)) in pg.iter_mut().enumerate() {
        adamw_update(opt, st.step, p, g, &mut st.m[i], &mut st.v[i], grad_scale);
    }
}

/// The AdamW update of one tensor at step `step` (1-based, after increment).
pub fn adamw_update<T: Float>(opt: &AdamW, step: u64, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], grad_scale: f64) {
    let t = step as i32;
    let bc1 = 1.0 - opt.beta1.powi(t);
    let bc2 = 1.0 - opt.beta2.powi(t);
    let (b1, b2) = (T::from_f64(opt.beta1), T::from_f64(opt.beta2));
    let (one_b1, one_b2) = (T::from_f64(1.0 - opt.beta1), T::from_f64(1.0 - opt.beta2));
    let step_size = T::from_f64(opt.lr / bc1);
    let bc2_sqrt = T::from_f64(bc2.sqrt());
    let decay = T::from_f64(1.0 - opt.lr * opt.weight_decay);
    let gs = T::from_f64(grad_scale);
    let eps = T::from_f64(opt.eps);
    for j in 0..p.len() {
        let gj = g[j] * gs;
        m[j] = b1 * m[j] + one_b1 * gj;
        v[j] = b2 * v[j] + one_b2 * gj * gj;
        p[j] = p[j] * decay - step_size * m[j] / (v[j].sqrt() / bc2_sqrt + eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_adam_step_moves_each_weight_by_lr_against_the_gradient_sign() {
        let opt = AdamW { lr: 0.1, ..Default::default() };
        let mut st = AdamState::<f64>::new(&[3]);
        let mut p = vec![1.0, 2.0, 3.0];
        let mut g = vec![0.5, -2.0, 0.0];
        adamw_step(&opt, &mut st, &mut [(&mut p, &mut g)], 1.0);
        assert!((p[0] - 0.9).abs() < 1e-6 && (p[1] - 2.1).abs() < 1e-6 && p[2] == 3.0);
    }

    #[test]
    fn clip_factor_scales_only_above_the_limit() {
        assert_eq!(clip_factor(0.5, 1.0), 1.0);
        assert!((clip_factor(4.0, 1.0) - 0.25).abs() < 1e-6);
        assert_eq!(clip_factor(4.0, 0.0), 1.0);
    }
}
