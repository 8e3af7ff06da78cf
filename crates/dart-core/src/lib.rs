//! dart-core: the tensor engine of dart-rl. A decoder-only Llama/Qwen2 model
//! on a frozen backbone with K LoRA adapter slots, routed per token, with the
//! paired forward/backward needed for RL on token logprobs.
pub mod adapter;
pub mod api;
pub mod backend;
pub mod batch;
pub mod checkpoint;
pub mod config;
pub(crate) mod decode;
pub mod engine;
pub mod generate;
pub mod error;
pub mod float;
pub mod io;
pub(crate) mod model;
pub mod ops;
pub mod optim;
pub mod roles;
pub mod weights;

#[cfg(test)]
pub(crate) mod testutil;

pub use config::ModelConfig;
pub use error::{DartError, Result};
pub use adapter::AdapterSpec;
pub use backend::{BackendInfo, BackendKind};
pub use engine::{Engine, EngineOptions, SlotReport, StepOptions};
pub use optim::AdamW;
