//! The routed LoRA delta of one adapter slot on one projection:
//! y[p] += scale * B A x[p] for exactly the positions p routed to that slot.
//! Rows are gathered so each slot costs GEMMs over its own tokens only; when
//! a slot owns every row the gather is skipped.
use super::matmul::matmul;
use crate::float::Float;

/// Reusable buffers for the gathered rows (no allocation once warm).
#[derive(Default)]
pub struct LoraScratch<T> {
    xg: Vec<T>,
    yg: Vec<T>,
    du: Vec<T>,
}

fn gather<T: Float>(dst: &mut Vec<T>, src: &[T], rows: &[u32], width: usize) {
    dst.clear();
    for &r in rows {
        dst.extend_from_slice(&src[r as usize * width..(r as usize + 1) * width]);
    }
}

fn scatter_add<T: Float>(dst: &mut [T], src: &[T], rows: &[u32], width: usize, scale: T) {
    for (i, &r) in rows.iter().enumerate() {
        let d = &mut dst[r as usize * width..(r as usize + 1) * width];
        for (a, &b) in d.iter_mut().zip(&src[i * width..(i + 1) * width]) {
            *a += scale * b;
        }
    }
}

/// The rows of `x` a slot reads: all of `x` when the slot owns every row.
fn rows_of<'a, T: Float>(buf: &'a mut Vec<T>, x: &'a [T], rows: &[u32], total: usize, width: usize) -> &'a [T] {
    if rows.len() == total {
        &x[..total * width]
    } else {
        gather(buf, x, rows, width);
        buf
    }
}

/// Dimensions of one adapted projection.
#[derive(Debug, Clone, Copy)]
pub struct LoraDims {
    pub total_rows: usize,
    pub n_in: usize,
    pub n_out: usize,
    pub rank: usize,
}

/// Adds the delta into `y` [total_rows, n_out] and writes `u` = x A^T
/// [rows, rank] (kept for backward). `rows` must be sorted ascending.
#[allow(clippy::too_many_arguments)]
pub fn lora_forward<T: Float>(
    y: &mut [T],
    u: &mut Vec<T>,
    x: &[T],
    a: &[T],
    b: &[T],
    rows: &[u32],
    scale: T,
    dims: LoraDims,
    s: &mut LoraScratch<T>,
) {
    let n = rows.len();
    u.clear();
    u.resize(n * dims.rank, T::zero());
    if n == 0 {
        return;
    }
    let xg = rows_of(&mut s.xg, x, rows, dims.total_rows, dims.n_in);
    matmul(u, xg, a, n, dims.rank, dims.n_in, false, true, false);
    s.yg.clear();
    s.yg.resize(n * dims.n_out, T::zero());
    matmul(&mut s.yg, u, b, n, dims.n_out, dims.rank, false, true, false);
    scatter_add(y, &s.yg, rows, dims.n_out, scale);
}

/// Accumulates dA, dB of the slot and adds the slot's share of dx.
#[allow(clippy::too_many_arguments)]
pub fn lora_backward<T: Float>(
    dx: &mut [T],
    da: &mut [T],
    db: &mut [T],
    dy: &[T],
    x: &[T],
    u: &[T],
    a: &[T],
    b: &[T],
    rows: &[u32],
    scale: T,
    dims: LoraDims,
    s: &mut LoraScratch<T>,
) {
    let n = rows.len();
    if n == 0 {
        return;
    }
    // dyg = scale * dy[rows]
    gather(&mut s.yg, dy, rows, dims.n_out);
    s.yg.iter_mut().for_each(|v| *v *= scale);
    // dB += dyg^T u ; du = dyg B
    matmul(db, &s.yg, u, dims.n_out, dims.rank, n, true, false, true);
    s.du.clear();
    s.du.resize(n * dims.rank, T::zero());
    matmul(&mut s.du, &s.yg, b, n, dims.rank, dims.n_out, false, false, false);
    // dA += du^T x[rows] ; dx[rows] += du A
    let xg = rows_of(&mut s.xg, x, rows, dims.total_rows, dims.n_in);
    matmul(da, &s.du, xg, dims.rank, dims.n_in, n, true, false, true);
    if n == dims.total_rows {
        matmul(dx, &s.du, a, n, dims.n_in, dims.rank, false, false, true);
    } else {
        s.xg.clear();
        s.xg.resize(n * dims.n_in, T::zero());
        matmul(&mut s.xg, &s.du, a, n, dims.n_in, dims.rank, false, false, false);
        scatter_add(dx, &s.xg, rows, dims.n_in, T::one());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, rand_vec};

    #[test]
    fn lora_gradients_match_finite_differences_and_touch_only_routed_rows() {
        let dims = LoraDims { total_rows: 6, n_in: 5, n_out: 4, rank: 2 };
        let x = rand_vec::<f64>(6 * 5, 1);
        let a = rand_vec::<f64>(2 * 5, 2);
        let b = rand_vec::<f64>(4 * 2, 3);
        let g = rand_vec::<f64>(6 * 4, 4);
        let scale = 1.5;
        for rows in [vec![0u32, 2, 3], vec![0, 1, 2, 3, 4, 5], vec![]] {
            let loss = |x: &[f64], a: &[f64], b: &[f64]| {
                let mut y = vec![0.0; 6 * 4];
                let mut u = vec![];
                lora_forward(&mut y, &mut u, x, a, b, &rows, scale, dims, &mut LoraScratch::default());
                y.iter().zip(&g).map(|(p, q)| p * q).sum::<f64>()
            };
            let mut y = vec![0.0; 24];
            let mut u = vec![];
            let mut s = LoraScratch::default();
            lora_forward(&mut y, &mut u, &x, &a, &b, &rows, scale, dims, &mut s);
            for r in 0..6u32 {
                if !rows.contains(&r) {
                    assert!(y[r as usize * 4..][..4].iter().all(|&v| v == 0.0));
                }
            }
            let (mut dx, mut da, mut db) = (vec![0.0; 30], vec![0.0; 10], vec![0.0; 8]);
            lora_backward(&mut dx, &mut da, &mut db, &g, &x, &u, &a, &b, &rows, scale, dims, &mut s);
            check_grad(&x, &dx, |x| loss(x, &a, &b));
            check_grad(&a, &da, |a| loss(&x, a, &b));
            check_grad(&b, &db, |b| loss(&x, &a, b));
        }
    }
}
