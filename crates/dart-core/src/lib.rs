//! dart-core: the tensor engine of dart-rl. A decoder-only Llama/Qwen2 model
//! on a frozen backbone with K LoRA adapter slots, routed per token, with the
//! paired forward/backward needed for RL on token logprobs.
pub mod config;
pub mod error;
pub mod float;
pub mod ops;

#[cfg(test)]
pub(crate) mod testutil;

pub use config::ModelConfig;
pub use error::{DartError, Result};
