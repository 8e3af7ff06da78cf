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

/// An instruction set the vectorized element loops can be compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorIsa {
    Avx512,
    Avx2,
    Portable,
}

/// The widest set this process may use (`avx512()`, else `avx2()`, else portable).
pub fn vector_isa() -> VectorIsa {
    if avx512() {
        VectorIsa::Avx512
    } else if avx2() {
        VectorIsa::Avx2
    } else {
        VectorIsa::Portable
    }
}

/// Defines `fn $name(args)`, whose body is compiled once per instruction set
/// (AVX-512, AVX2 + FMA, the build's baseline) and run on the widest one
/// this process may use, so that its loops vectorize for it; and
/// `fn $name_on(isa, args) -> Option<R>` (None where this process may not use `isa`), for
/// tests that compare the sets. The body is an `#[inline(always)]` function
/// called from a `#[target_feature]` one per set, so it is inlined there.
/// Element functions it calls must be `#[inline(always)]` and should use
/// plain IEEE operations (no `mul_add`), so every set gives the same bits
/// (`ops::exp` tests that).
macro_rules! vectorized_fn {
    ($(#[$attr:meta])* $vis:vis fn $name:ident / $on:ident ($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            $on($crate::ops::cpu::vector_isa(), $($arg),*).expect("vector_isa() is usable")
        }

        #[allow(dead_code)]
        $vis fn $on(isa: $crate::ops::cpu::VectorIsa, $($arg: $ty),*) -> Option<$ret> {
            #[inline(always)]
            fn body($($arg: $ty),*) -> $ret $body
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
            unsafe fn on_avx512($($arg: $ty),*) -> $ret {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn on_avx2($($arg: $ty),*) -> $ret {
                body($($arg),*)
            }
            match isa {
                #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
                // SAFETY: `avx512()` checked the CPU.
                $crate::ops::cpu::VectorIsa::Avx512 if $crate::ops::cpu::avx512() => Some(unsafe { on_avx512($($arg),*) }),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `avx2()` checked the CPU.
                $crate::ops::cpu::VectorIsa::Avx2 if $crate::ops::cpu::avx2() => Some(unsafe { on_avx2($($arg),*) }),
                $crate::ops::cpu::VectorIsa::Portable => Some(body($($arg),*)),
                _ => None,
            }
        }
    };
}
pub(crate) use vectorized_fn;
