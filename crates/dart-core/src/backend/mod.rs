//! The compute backends behind one trait. The model (forward, backward,
//! step and the decode forward, in `crate::model`) is written once against
//! `Backend`; `cpu::CpuBackend<T>` runs it on host vectors with the reference
//! ops of `crate::ops` (f32 or f64), `crate::backend::wgpu::WgpuBackend` on device
//! buffers with the WGSL kernels (f32). One method per op, mirroring
//! `crate::ops` argument for argument, with buffers in place of slices.
pub mod cpu;
#[cfg(feature = "wgpu")]
pub mod wgpu;

use crate::error::{DartError, Result};
use crate::float::Float;
use crate::ops::attention::AttnShape;
use crate::ops::lora::LoraDims;
use crate::optim::AdamW;

/// Environment variable that overrides the default backend (`cpu`).
pub const BACKEND_ENV: &str = "DART_BACKEND";

/// Which backend the engine computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    Wgpu,
    /// wgpu on a real GPU adapter if there is one (or the pinned adapter),
    /// otherwise cpu.
    Auto,
}

impl std::str::FromStr for BackendKind {
    type Err = DartError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(BackendKind::Cpu),
            "wgpu" | "gpu" => Ok(BackendKind::Wgpu),
            "auto" => Ok(BackendKind::Auto),
            _ => Err(DartError::InvalidArgument(format!("backend = {s:?}, expected \"cpu\", \"wgpu\" or \"auto\""))),
        }
    }
}

impl BackendKind {
    /// `DART_BACKEND` when set to a valid kind, else cpu.
    pub fn from_env() -> BackendKind {
        std::env::var(BACKEND_ENV).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(BackendKind::Cpu)
    }
}

/// What an engine computes on, for reports and `engine.backendInfo()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// "cpu" or "wgpu".
    pub backend: String,
    /// The wgpu adapter's name, or the CPU description.
    pub adapter: String,
    /// wgpu device type (DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu, Other) or "Cpu".
    pub device_type: String,
}

/// The op surface the model is written against. Outputs are `&mut`;
/// ops that accumulate on the CPU accumulate here too. Nothing here reads
/// back to the host except `download_many` and `read_norms`.
#[allow(clippy::too_many_arguments)]
pub trait Backend: Send + Sync + 'static {
    /// The element type computed in.
    type F: Float;
    /// A tensor of `F`.
    type Buf: Send + Sync;
    /// An i32 index tensor (tokens, targets).
    type I32: Send + Sync;
    /// A u32 index tensor (positions, routed rows).
    type U32: Send + Sync;
    /// Packed-sequence layout for attention.
    type Seqs: Send + Sync;
    /// Reusable host scratch of the routed LoRA ops.
    type Scratch: Default + Send + Sync;
    /// A group's gradient norm and clip factor (on the device for wgpu).
    type Clip: Send;
    /// The KV caches of a generation session.
    type Kv: Send + Sync;
    /// Decode rows: (cache index, position) per row.
    type Rows: Send + Sync;

    fn info(&self) -> BackendInfo;
    /// Device buffers created so far, where the backend has a device
    /// (None on cpu). Once warm, a step of shapes seen before adds none.
    fn buffers_created(&self) -> Option<usize> {
        None
    }

    // ---- memory ------------------------------------------------------
    fn empty(&self) -> Self::Buf;
    fn upload(&self, x: &[Self::F]) -> Self::Buf;
    /// Takes ownership where it can (CPU: no copy).
    fn upload_vec(&self, x: Vec<Self::F>) -> Self::Buf {
        self.upload(&x)
    }
    /// Uploads a matrix of rows of `width` (a weight): a backend with a
    /// per-buffer size limit may store it split into row blocks, which the
    /// GEMMs, embedding, optimizer and memory ops take.
    fn upload_rows(&self, x: &[Self::F], width: usize) -> Self::Buf {
        let _ = width;
        self.upload(x)
    }
    /// Zeros with the length and storage layout of `x` (gradients and
    /// moments of a weight, which the optimizer updates alongside it).
    fn zeros_like(&self, x: &Self::Buf) -> Self::Buf {
        let mut z = self.empty();
        self.zeros(&mut z, self.len(x));
        z
    }
    /// Device buffers behind a tensor (more than 1 when it is split).
    fn parts(&self, b: &Self::Buf) -> usize {
        let _ = b;
        1
    }
    /// Reads buffers back: one wait for all of them.
    fn download_many(&self, bufs: &[&Self::Buf]) -> Vec<Vec<Self::F>>;
    fn download(&self, b: &Self::Buf) -> Vec<Self::F> {
        self.download_many(&[b]).pop().expect("one buffer")
    }
    fn len(&self, b: &Self::Buf) -> usize;
    /// Overwrites `dst` with `x` (its length becomes `x.len()`).
    fn write(&self, dst: &mut Self::Buf, x: &[Self::F]);
    /// `b` becomes `n` zeros (reusing its storage).
    fn zeros(&self, b: &mut Self::Buf, n: usize);
    fn zero(&self, b: &mut Self::Buf) {
        let n = self.len(b);
        self.zeros(b, n);
    }
    /// dst = src.
    fn copy(&self, dst: &mut Self::Buf, src: &Self::Buf);
    /// dst = a + b.
    fn add(&self, dst: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf);
    /// dst += a.
    fn add_assign(&self, dst: &mut Self::Buf, a: &Self::Buf);
    /// dst = src[rows] (rows of `width`).
    fn gather_rows(&self, dst: &mut Self::Buf, src: &Self::Buf, rows: &Self::U32, width: usize);
    fn new_i32(&self, x: &[i32]) -> Self::I32;
    fn new_u32(&self, x: &[u32]) -> Self::U32;
    fn new_seqs(&self, seqs: &[(usize, usize)], rows: usize) -> Self::Seqs;
    /// `dst` becomes `x`, reusing its storage where it can (the model keeps
    /// its index tensors across steps: wgpu rewrites them in place, grow-only).
    fn set_i32(&self, dst: &mut Self::I32, x: &[i32]) {
        *dst = self.new_i32(x);
    }
    fn set_u32(&self, dst: &mut Self::U32, x: &[u32]) {
        *dst = self.new_u32(x);
    }
    fn set_seqs(&self, dst: &mut Self::Seqs, seqs: &[(usize, usize)], rows: usize) {
        *dst = self.new_seqs(seqs, rows);
    }
    /// The most rows of `width` elements one activation tensor may hold
    /// (wgpu: the split size, i.e. one binding; cpu: unbounded). The LM head
    /// runs in blocks of this many token rows so that its logits
    /// ([rows, vocab]) never exceed it.
    fn max_rows_per_block(&self, width: usize) -> usize {
        let _ = width;
        usize::MAX
    }
    /// dst = rows first..first+rows of src (rows of `width`).
    fn slice_rows(&self, dst: &mut Self::Buf, src: &Self::Buf, first: usize, rows: usize, width: usize);
    /// Rows first.. of dst = src (rows of `width`; dst holds them already).
    fn place_rows(&self, dst: &mut Self::Buf, first: usize, src: &Self::Buf, width: usize);
    /// Whether every element is finite, where the backend can tell without a
    /// read-back (None = not checked here; the step's norm check catches it).
    fn all_finite(&self, bufs: &[&Self::Buf]) -> Option<bool>;

    // ---- ops (crate::ops) ---------------------------------------------
    fn matmul(&self, c: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf, m: usize, n: usize, k: usize, ta: bool, tb: bool, acc: bool);
    fn linear_forward(&self, y: &mut Self::Buf, x: &Self::Buf, w: &Self::Buf, b: Option<&Self::Buf>, rows: usize, n_in: usize, n_out: usize);
    fn linear_backward(
        &self,
        dx: &mut Self::Buf,
        accumulate_dx: bool,
        dw: Option<&mut Self::Buf>,
        db: Option<&mut Self::Buf>,
        dy: &Self::Buf,
        x: &Self::Buf,
        w: &Self::Buf,
        rows: usize,
        n_in: usize,
        n_out: usize,
    );
    fn embedding_forward(&self, x: &mut Self::Buf, table: &Self::Buf, tokens: &Self::I32, d: usize);
    fn embedding_backward(&self, dtable: &mut Self::Buf, dx: &Self::Buf, tokens: &Self::I32, d: usize);
    fn rmsnorm_forward(&self, y: &mut Self::Buf, rstd: &mut Self::Buf, x: &Self::Buf, w: &Self::Buf, d: usize, eps: f64);
    fn rmsnorm_backward(&self, dx: &mut Self::Buf, dw: Option<&mut Self::Buf>, dy: &Self::Buf, x: &Self::Buf, w: &Self::Buf, rstd: &Self::Buf, d: usize);
    fn rope_apply(&self, x: &mut Self::Buf, pos: &Self::U32, heads: usize, head_dim: usize, cos: &Self::Buf, sin: &Self::Buf, inverse: bool);
    fn attention_forward(&self, out: &mut Self::Buf, lse: &mut Self::Buf, q: &Self::Buf, k: &Self::Buf, v: &Self::Buf, seqs: &Self::Seqs, sh: AttnShape);
    fn attention_backward(
        &self,
        dq: &mut Self::Buf,
        dk: &mut Self::Buf,
        dv: &mut Self::Buf,
        dout: &Self::Buf,
        out: &Self::Buf,
        lse: &Self::Buf,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        seqs: &Self::Seqs,
        sh: AttnShape,
    );
    fn swiglu_forward(&self, a: &mut Self::Buf, g: &Self::Buf, u: &Self::Buf);
    fn swiglu_backward(&self, dg: &mut Self::Buf, du: &mut Self::Buf, da: &Self::Buf, g: &Self::Buf, u: &Self::Buf);
    fn logprob_forward(&self, logp: &mut Self::Buf, lse: &mut Self::Buf, logits: &Self::Buf, targets: &Self::I32, vocab: usize);
    fn logprob_backward(&self, logits: &mut Self::Buf, lse: &Self::Buf, dlogp: &Self::Buf, targets: &Self::I32, vocab: usize);
    /// y[rows] += scale B A x[rows]; `u` = x[rows] A^T (kept for backward).
    fn lora_forward(
        &self,
        y: &mut Self::Buf,
        u: &mut Self::Buf,
        x: &Self::Buf,
        a: &Self::Buf,
        b: &Self::Buf,
        rows: &Self::U32,
        scale: Self::F,
        dims: LoraDims,
        s: &mut Self::Scratch,
    );
    fn lora_backward(
        &self,
        dx: &mut Self::Buf,
        da: &mut Self::Buf,
        db: &mut Self::Buf,
        dy: &Self::Buf,
        x: &Self::Buf,
        u: &Self::Buf,
        a: &Self::Buf,
        b: &Self::Buf,
        rows: &Self::U32,
        scale: Self::F,
        dims: LoraDims,
        s: &mut Self::Scratch,
    );

    // ---- optimizer (crate::optim) ---------------------------------------
    /// The global norm of a group's gradients and its clip factor.
    fn grad_norm(&self, grads: &[&Self::Buf], max_norm: f64) -> Self::Clip;
    /// The norms of several groups (one read-back for all).
    fn read_norms(&self, clips: &[&Self::Clip]) -> Vec<f64>;
    /// One AdamW step of a group; `step` is its count after increment.
    fn adamw_step(
        &self,
        opt: &AdamW,
        step: u64,
        params: &mut [&mut Self::Buf],
        grads: &[&Self::Buf],
        m: &mut [&mut Self::Buf],
        v: &mut [&mut Self::Buf],
        clip: &Self::Clip,
    );

    // ---- decoding ------------------------------------------------------
    fn kv_new(&self, layers: usize, kv_width: usize) -> Self::Kv;
    /// Makes room for `positions` rows in cache `cache` (creating it).
    fn kv_reserve(&self, kv: &mut Self::Kv, cache: usize, positions: usize);
    fn new_rows(&self, rows: &[(usize, usize)]) -> Self::Rows;
    /// `dst` becomes `rows`, reusing its storage where it can.
    fn set_rows(&self, dst: &mut Self::Rows, rows: &[(usize, usize)]) {
        *dst = self.new_rows(rows);
    }
    /// Writes row r of k, v at (rows[r].cache, rows[r].position) of `layer`.
    fn kv_append(&self, kv: &mut Self::Kv, layer: usize, k: &Self::Buf, v: &Self::Buf, rows: &Self::Rows);
    /// Each row's query attends to its cache up to and including its position.
    fn attention_cached(&self, out: &mut Self::Buf, q: &Self::Buf, kv: &Self::Kv, layer: usize, rows: &Self::Rows, sh: AttnShape);
}
