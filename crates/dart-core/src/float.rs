//! The scalar types the CPU backend computes in: f32 for the product, f64 for
//! finite-difference gradient checks with the same code.
use num_traits::Float as NumFloat;
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
