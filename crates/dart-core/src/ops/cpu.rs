//! Which x86 kernel paths this process may take: the one place that decides.
//!
//! The AVX-512 kernels (ours in `skinny` and `attention`, and the `gemm`
//! crate's) are built only with the `avx512` cargo feature (on by default)
//! and taken only where the CPU has AVX-512F. `DART_CPU_NO_AVX512=1` turns
//! ours off at run time so that an AVX-512 machine can measure the paths an
//! AVX2 machine takes; gemm's dispatch cannot be switched at run time (it
//! asks the CPU once), so a full AVX2-class measurement uses a build
//! without the feature (docs/bench.md).
use std::sync::OnceLock;

/// Whether our AVX-512 kernels may run (feature built in, CPU has AVX-512F, not disabled by the environment).
pub fn avx512() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        {
            std::arch::is_x86_feature_detected!("avx512f") && !disabled_by_env()
        }
        #[cfg(not(all(target_arch = "x86_64", feature = "avx512")))]
        {
            false
        }
    })
}

/// Whether the AVX2 + FMA kernels may run (x86_64 with both; always built).
pub fn avx2() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `DART_CPU_NO_AVX512` set to anything but "" or "0".
#[allow(dead_code)]
fn disabled_by_env() -> bool {
    std::env::var("DART_CPU_NO_AVX512").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The kernel class this process runs: "avx512" or "avx2" (x86 with FMA), else "portable".
pub fn kernel_class() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512() {
            return "avx512";
        }
        if avx2() {
            return "avx2";
        }
    }
    "portable"
}

/// The sum of an AVX register's 8 lanes (shared by the AVX2 kernels).
///
/// # Safety
/// Only on a CPU with AVX2 and FMA (`avx2()`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn hsum256(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let d = _mm_add_ps(q, _mm_movehl_ps(q, q));
    _mm_cvtss_f32(_mm_add_ss(d, _mm_shuffle_ps::<1>(d, d)))
}
