//! The wgpu backend: every engine op as a WGSL compute kernel (f32, no
//! subgroup or f16 requirement), on buffers that stay on the device.
//! `device` picks the adapter and owns the pool and the command batch; `ops`
//! mirrors `crate::ops`/`crate::optim` on device tensors.
pub mod backend;
pub mod device;
pub mod ops;

pub use backend::WgpuBackend;

pub use device::{list_adapters, select_backend, AdapterSummary, BackendKind, GpuContext, GpuTensor, ADAPTER_ENV,
    MAX_BINDING_ENV, with_max_binding_bytes};
pub use ops::{seq_meta, GpuOps, GEMM_TILE, MAX_HEAD_DIM};
