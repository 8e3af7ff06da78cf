//! The frozen (or fully trained) dense layer y = x W^T + b, W stored [out, in]
//! as in Hugging Face checkpoints.
use super::matmul::matmul;
use crate::float::Float;

pub fn linear_forward<T: Float>(y: &mut [T], x: &[T], w: &[T], b: Option<&[T]>, rows: usize, n_in: usize, n_out: usize) {
    matmul(y, x, w, rows, n_out, n_in, false, true, false);
    if let Some(b) = b {
        for row in y[..rows * n_out].chunks_mut(n_out) {
            for (a, &c) in row.iter_mut().zip(b) {
                *a += c;
            }
        }
    }
}

/// dx (+)= dy W; dw += dy^T x; db += column sums of dy.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<T: Float>(
    dx: &mut [T],
    accumulate_dx: bool,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
    dy: &[T],
    x: &[T],
    w: &[T],
    rows: usize,
    n_in: usize,
    n_out: usize,
) {
    matmul(dx, dy, w, rows, n_in, n_out, false, false, accumulate_dx);
    if let Some(dw) = dw {
        matmul(dw, dy, x, n_out, n_in, rows, true, false, true);
    }
    if let Some(db) = db {
        for row in dy[..rows * n_out].chunks(n_out) {
            for (a, &c) in db.iter_mut().zip(row) {
                *a += c;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, rand_vec};

    #[test]
    fn linear_gradients_match_finite_differences() {
        let (rows, i, o) = (4, 5, 3);
        let x = rand_vec::<f64>(rows * i, 1);
        let w = rand_vec::<f64>(o * i, 2);
        let b = rand_vec::<f64>(o, 3);
        let g = rand_vec::<f64>(rows * o, 4);
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; rows * o];
            linear_forward(&mut y, x, w, Some(b), rows, i, o);
            y.iter().zip(&g).map(|(a, c)| a * c).sum::<f64>()
        };
        let (mut dx, mut dw, mut db) = (vec![0.0; rows * i], vec![0.0; o * i], vec![0.0; o]);
        linear_backward(&mut dx, false, Some(&mut dw), Some(&mut db), &g, &x, &w, rows, i, o);
        check_grad(&x, &dx, |x| loss(x, &w, &b));
        check_grad(&w, &dw, |w| loss(&x, w, &b));
        check_grad(&b, &db, |b| loss(&x, &w, b));
    }
}
