//! Dense matrix multiply through the `gemm` crate, except few-row products
//! against a weight in f32 (ops::skinny, the decode shape).
//! Row-major storage; transposes are expressed as strides, never copies.
use super::skinny;
use crate::float::{as_f32, as_f32_mut, Float};
use gemm::Parallelism;

/// Work below this many multiply-adds runs on one thread: spawning costs more.
const PARALLEL_THRESHOLD: usize = 64 * 64 * 64;

/// C[m,n] (+)= op(A) op(B). A is stored [m,k] (or [k,m] when `ta`),
/// B is stored [k,n] (or [n,k] when `tb`). `accumulate` adds into C.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Float>(
    c: &mut [T],
    a: &[T],
    b: &[T],
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    accumulate: bool,
) {
    assert!(c.len() >= m * n, "matmul: c has {} < {}x{}", c.len(), m, n);
    assert!(a.len() >= m * k, "matmul: a has {} < {}x{}", a.len(), m, k);
    assert!(b.len() >= k * n, "matmul: b has {} < {}x{}", b.len(), k, n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].iter_mut().for_each(|x| *x = T::zero());
        }
        return;
    }
    // Few rows against a weight stored [n,k]: the decode shape (ops::skinny).
    if !ta && tb && m <= skinny::MAX_ROWS {
        if let (Some(c), Some(a), Some(b)) = (as_f32_mut(c), as_f32(a), as_f32(b)) {
            if skinny::xwt(c, a, b, m, n, k, accumulate) {
                return;
            }
        }
    }
    let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
    let par = if m * n * k >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above bound every index gemm touches given these strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

/// The kernel path `matmul::<f32>` takes for this shape and transposes on
/// this CPU and build, for benchmark reports: "skinny avx512" / "skinny
/// avx2" (ops::skinny), else gemm with the instruction set gemm picks
/// (x86-v4 = AVX-512 where built with the `avx512` feature and the CPU has
/// it, x86-v3 = AVX2 + FMA; `DART_CPU_NO_AVX512` does not change gemm's).
pub fn kernel_path(m: usize, n: usize, k: usize, ta: bool, tb: bool) -> &'static str {
    if let Some(isa) = skinny::isa().filter(|&isa| !ta && tb && skinny::applies(isa, m, n, k)) {
        return match isa {
            skinny::Isa::Avx512 => "skinny avx512",
            skinny::Isa::Avx2 => "skinny avx2",
        };
    }
    gemm_isa()
}

/// The instruction set gemm dispatches to in this process.
pub fn gemm_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        #[cfg(feature = "avx512")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "gemm x86-v4 (avx512)";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "gemm x86-v3 (avx2+fma)";
        }
    }
    "gemm portable"
}

/// Plain triple loop, the reference the GEMM path is tested against.
#[allow(clippy::too_many_arguments)]
pub fn matmul_reference<T: Float>(
    c: &mut [T],
    a: &[T],
    b: &[T],
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    accumulate: bool,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = T::zero();
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                s += av * bv;
            }
            if accumulate {
                c[i * n + j] += s;
            } else {
                c[i * n + j] = s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::rand_vec;

    #[test]
    fn gemm_matches_reference_for_all_transposes() {
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 9, 33), (70, 65, 80)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let a = rand_vec::<f64>(m * k, 1);
                    let b = rand_vec::<f64>(k * n, 2);
                    let mut c1 = rand_vec::<f64>(m * n, 3);
                    let mut c2 = c1.clone();
                    matmul(&mut c1, &a, &b, m, n, k, ta, tb, true);
                    matmul_reference(&mut c2, &a, &b, m, n, k, ta, tb, true);
                    for (x, y) in c1.iter().zip(&c2) {
                        assert!((x - y).abs() < 1e-10, "{m}x{n}x{k} ta={ta} tb={tb}");
                    }
                }
            }
        }
    }
}
