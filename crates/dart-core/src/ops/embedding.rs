//! Token embedding lookup and its scatter-add backward.
use crate::float::Float;

pub fn embedding_forward<T: Float>(x: &mut [T], table: &[T], tokens: &[i32], d: usize) {
    for (row, &t) in x.chunks_mut(d).zip(tokens) {
        row.copy_from_slice(&table[t as usize * d..(t as usize + 1) * d]);
    }
}

/// Sequential so repeated tokens always sum in the same order.
pub fn embedding_backward<T: Float>(dtable: &mut [T], dx: &[T], tokens: &[i32], d: usize) {
    for (row, &t) in dx.chunks(d).zip(tokens) {
        for (a, &b) in dtable[t as usize * d..(t as usize + 1) * d].iter_mut().zip(row) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, rand_vec};

    #[test]
    fn embedding_gradient_matches_finite_differences() {
        let (v, d) = (5, 3);
        let table = rand_vec::<f64>(v * d, 1);
        let tokens = [2, 0, 2, 4];
        let g = rand_vec::<f64>(tokens.len() * d, 2);
        let loss = |t: &[f64]| {
            let mut x = vec![0.0; tokens.len() * d];
            embedding_forward(&mut x, t, &tokens, d);
            x.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut dt = vec![0.0; v * d];
        embedding_backward(&mut dt, &g, &tokens, d);
        check_grad(&table, &dt, loss);
    }
}
