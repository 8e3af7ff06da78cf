//! CPU reference ops: each op's forward and backward live side by side in
//! one file, with a finite-difference test in f64.
pub mod attention;
pub mod cpu;
pub mod embedding;
pub mod exp;
pub mod logprob;
pub mod matmul;
pub mod rmsnorm;
pub mod rope;
pub mod skinny;
pub mod swiglu;
