//! The scalar types the CPU backend computes in: f32 for the product, f64 for
//! finite-difference gradient checks with the same code.
use num_traits::Float as NumFloat;
use std::any::TypeId;
use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

pub trait Float:
    NumFloat + Send + Sync + Default + Debug + Sum + AddAssign + SubAssign + MulAssign + 'static
{
    fn from_f64(x: f64) -> Self;
    fn as_f64(self) -> f64;
    fn from_usize(x: usize) -> Self {
        Self::from_f64(x as f64)
    }
}

impl Float for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Float for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
    fn as_f64(self) -> f64 {
        self
    }
}

/// `x` as f32 when T is f32: lets an op take a hand-vectorized f32 path
/// and keep its generic code for f64.
pub(crate) fn as_f32<T: Float>(x: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32 (same type, same layout) when the ids match.
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) })
}

pub(crate) fn as_f32_mut<T: Float>(x: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: as in `as_f32`.
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<f32>(), x.len()) })
}
