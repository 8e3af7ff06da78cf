//! Rotary position embedding, Hugging Face "rotate_half" layout: dimension i
//! pairs with i + head_dim/2. Backward applies the inverse (transposed) rotation.
use crate::float::Float;
use rayon::prelude::*;

/// cos/sin tables [positions, head_dim/2] for angle = pos * theta^(-2i/head_dim).
pub fn rope_tables<T: Float>(positions: usize, head_dim: usize, theta: f64) -> (Vec<T>, Vec<T>) {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for p in 0..positions {
        for i in 0..half {
            let inv_freq = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
            let a = p as f64 * inv_freq;
            cos.push(T::from_f64(a.cos()));
            sin.push(T::from_f64(a.sin()));
        }
    }
    (cos, sin)
}

/// Rotates every head of `x` [rows, heads*head_dim] in place; row r is at
/// position `pos[r]`. `inverse` rotates by -angle (the backward pass).
pub fn rope_apply<T: Float>(
    x: &mut [T],
    pos: &[u32],
    heads: usize,
    head_dim: usize,
    cos: &[T],
    sin: &[T],
    inverse: bool,
) {
    let half = head_dim / 2;
    x.par_chunks_mut(heads * head_dim).zip(pos.par_iter()).for_each(|(row, &p)| {
        let c = &cos[p as usize * half..(p as usize + 1) * half];
        let s = &sin[p as usize * half..(p as usize + 1) * half];
        for h in row.chunks_mut(head_dim) {
            for i in 0..half {
                let (a, b) = (h[i], h[i + half]);
                let si = if inverse { -s[i] } else { s[i] };
                h[i] = a * c[i] - b * si;
                h[i + half] = b * c[i] + a * si;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, rand_vec};

    #[test]
    fn rope_backward_matches_finite_differences() {
        let (heads, hd) = (2, 6);
        let pos = [0u32, 3, 1];
        let (cos, sin) = rope_tables::<f64>(4, hd, 10000.0);
        let x = rand_vec::<f64>(3 * heads * hd, 1);
        let g = rand_vec::<f64>(3 * heads * hd, 2);
        let loss = |x: &[f64]| {
            let mut y = x.to_vec();
            rope_apply(&mut y, &pos, heads, hd, &cos, &sin, false);
            y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut dx = g.clone();
        rope_apply(&mut dx, &pos, heads, hd, &cos, &sin, true);
        check_grad(&x, &dx, loss);
    }
}
