//! The compute backends behind one trait. The model (forward, backward,
//! step and the decode forward, in `crate::model` and `crate::decode`) is
//! written once against `Backend`; `cpu::CpuBackend<T>` runs it on host
//! vectors with the reference ops of `crate::ops` (f32 or f64),
//! `wgpu::WgpuBackend` on device buffers with the WGSL kernels (f32).
//!
//! A backend implements primitives only: memory and row movement, and one
//! method per op of `crate::ops`, argument for argument, with buffers in
//! place of slices. The composite ops (a linear layer = GEMM + bias, the
//! routed LoRA delta = gather, two GEMMs, scatter-add) are default methods
//! written once here over those primitives, as burn builds its composite
//! ops, so the two backends cannot disagree on how they are composed.
pub mod cpu;
#[cfg(feature = "wgpu")]
pub mod wgpu;

use crate::error::{DartError, Result};
use crate::float::Float;
use crate::ops::attention::AttnShape;
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

/// Dimensions of one adapted projection.
#[derive(Debug, Clone, Copy)]
pub struct LoraDims {
    pub total_rows: usize,
    pub n_in: usize,
    pub n_out: usize,
    pub rank: usize,
}

/// Reusable buffers of the routed LoRA ops (the gathered rows and their
/// products): one per forward or decode cache, so a warm step allocates
/// nothing.
pub struct LoraScratch<Buf> {
    xg: Buf,
    yg: Buf,
    du: Buf,
}

impl<Buf> LoraScratch<Buf> {
    pub fn new<B: Backend<Buf = Buf>>(b: &B) -> Self {
        LoraScratch { xg: b.empty(), yg: b.empty(), du: b.empty() }
    }
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
    fn add(&self, dst: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf) {
        self.copy(dst, a);
        self.add_assign(dst, b);
    }
    /// dst += a.
    fn add_assign(&self, dst: &mut Self::Buf, a: &Self::Buf);
    /// `b` holds `n` elements; their values are unspecified (the caller
    /// overwrites them, e.g. a GEMM without accumulation).
    fn resize(&self, b: &mut Self::Buf, n: usize);
    /// x *= s, elementwise.
    fn scale(&self, x: &mut Self::Buf, s: Self::F);
    /// dst = src[rows] (rows of `width`; dst is resized to rows.len() rows).
    fn gather_rows(&self, dst: &mut Self::Buf, src: &Self::Buf, rows: &Self::U32, width: usize);
    /// dst[rows[i]] += scale * src[i] (rows of `width`; `rows` distinct).
    fn scatter_add_rows(&self, dst: &mut Self::Buf, src: &Self::Buf, rows: &Self::U32, width: usize, scale: Self::F);
    /// Each of the first `rows` rows of y (of `width`) += b.
    fn bias_add(&self, y: &mut Self::Buf, b: &Self::Buf, rows: usize, width: usize);
    /// db += the column sums of the first `rows` rows of dy (of `width`).
    fn bias_grad(&self, db: &mut Self::Buf, dy: &Self::Buf, rows: usize, width: usize);
    /// The number of indices in a u32 tensor.
    fn u32_len(&self, x: &Self::U32) -> usize;
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
    /// The dense layer y = x W^T + b, W stored [out, in] as in Hugging Face
    /// checkpoints (composite: GEMM, then the bias).
    fn linear_forward(&self, y: &mut Self::Buf, x: &Self::Buf, w: &Self::Buf, b: Option<&Self::Buf>, rows: usize, n_in: usize, n_out: usize) {
        self.matmul(y, x, w, rows, n_out, n_in, false, true, false);
        if let Some(b) = b {
            self.bias_add(y, b, rows, n_out);
        }
    }
    /// dx (+)= dy W; dw += dy^T x; db += column sums of dy.
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
    ) {
        self.matmul(dx, dy, w, rows, n_in, n_out, false, false, accumulate_dx);
        if let Some(dw) = dw {
            self.matmul(dw, dy, x, n_out, n_in, rows, true, false, true);
        }
        if let Some(db) = db {
            self.bias_grad(db, dy, rows, n_out);
        }
    }
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
    /// The routed LoRA delta of one adapter slot on one projection:
    /// y[rows] += scale B A x[rows], and `u` = x[rows] A^T [rows, rank] (kept
    /// for backward). `rows` (sorted, distinct) are the positions routed to
    /// the slot: its GEMMs run over its own tokens only, and when it owns
    /// every row the gather is skipped.
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
        s: &mut LoraScratch<Self::Buf>,
    ) {
        let n = self.u32_len(rows);
        self.resize(u, n * dims.rank);
        if n == 0 {
            return;
        }
        let xg = if n == dims.total_rows {
            x
        } else {
            self.gather_rows(&mut s.xg, x, rows, dims.n_in);
            &s.xg
        };
        self.matmul(u, xg, a, n, dims.rank, dims.n_in, false, true, false);
        self.resize(&mut s.yg, n * dims.n_out);
        self.matmul(&mut s.yg, u, b, n, dims.n_out, dims.rank, false, true, false);
        self.scatter_add_rows(y, &s.yg, rows, dims.n_out, scale);
    }
    /// Accumulates dA and dB of the slot and adds the slot's share of dx
    /// (`u` from `lora_forward`).
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
        s: &mut LoraScratch<Self::Buf>,
    ) {
        let n = self.u32_len(rows);
        if n == 0 {
            return;
        }
        // dyg = scale dy[rows]; dB += dyg^T u; du = dyg B
        self.gather_rows(&mut s.yg, dy, rows, dims.n_out);
        self.scale(&mut s.yg, scale);
        self.matmul(db, &s.yg, u, dims.n_out, dims.rank, n, true, false, true);
        self.resize(&mut s.du, n * dims.rank);
        self.matmul(&mut s.du, &s.yg, b, n, dims.rank, dims.n_out, false, false, false);
        // dA += du^T x[rows]; dx[rows] += du A
        if n == dims.total_rows {
            self.matmul(da, &s.du, x, dims.rank, dims.n_in, n, true, false, true);
            self.matmul(dx, &s.du, a, n, dims.n_in, dims.rank, false, false, true);
        } else {
            self.gather_rows(&mut s.xg, x, rows, dims.n_in);
            self.matmul(da, &s.du, &s.xg, dims.rank, dims.n_in, n, true, false, true);
            self.resize(&mut s.xg, n * dims.n_in);
            self.matmul(&mut s.xg, &s.du, a, n, dims.n_in, dims.rank, false, false, false);
            self.scatter_add_rows(dx, &s.xg, rows, dims.n_in, Self::F::from_f64(1.0));
        }
    }

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

/// The composite ops (default methods) on the f64 CPU backend against
/// finite differences; `tests/conformance.rs` runs them on every backend.
#[cfg(test)]
mod tests {
    use super::cpu::CpuBackend;
    use super::{Backend, LoraDims, LoraScratch};
    use crate::testutil::{check_grad, rand_vec};

    #[test]
    fn linear_gradients_match_finite_differences() {
        let cpu = CpuBackend::<f64>::default();
        let (rows, i, o) = (4, 5, 3);
        let x = rand_vec::<f64>(rows * i, 1);
        let w = rand_vec::<f64>(o * i, 2);
        let b = rand_vec::<f64>(o, 3);
        let g = rand_vec::<f64>(rows * o, 4);
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; rows * o];
            cpu.linear_forward(&mut y, &x.to_vec(), &w.to_vec(), Some(&b.to_vec()), rows, i, o);
            y.iter().zip(&g).map(|(a, c)| a * c).sum::<f64>()
        };
        let (mut dx, mut dw, mut db) = (vec![0.0; rows * i], vec![0.0; o * i], vec![0.0; o]);
        cpu.linear_backward(&mut dx, false, Some(&mut dw), Some(&mut db), &g, &x, &w, rows, i, o);
        check_grad(&x, &dx, |x| loss(x, &w, &b));
        check_grad(&w, &dw, |w| loss(&x, w, &b));
        check_grad(&b, &db, |b| loss(&x, &w, b));
    }

    #[test]
    fn lora_gradients_match_finite_differences_and_touch_only_routed_rows() {
        let cpu = CpuBackend::<f64>::default();
        let dims = LoraDims { total_rows: 6, n_in: 5, n_out: 4, rank: 2 };
        let x = rand_vec::<f64>(6 * 5, 1);
        let a = rand_vec::<f64>(2 * 5, 2);
        let b = rand_vec::<f64>(4 * 2, 3);
        let g = rand_vec::<f64>(6 * 4, 4);
        let scale = 1.5;
        for rows in [vec![0u32, 2, 3], vec![0, 1, 2, 3, 4, 5], vec![]] {
            let loss = |x: &[f64], a: &[f64], b: &[f64]| {
                let mut y = vec![0.0; 6 * 4];
                let mut u = vec![];
                cpu.lora_forward(&mut y, &mut u, &x.to_vec(), &a.to_vec(), &b.to_vec(), &rows, scale, dims, &mut LoraScratch::new(&cpu));
                y.iter().zip(&g).map(|(p, q)| p * q).sum::<f64>()
            };
            let mut y = vec![0.0; 24];
            let mut u = vec![];
            let mut s = LoraScratch::new(&cpu);
            cpu.lora_forward(&mut y, &mut u, &x, &a, &b, &rows, scale, dims, &mut s);
            for r in 0..6u32 {
                if !rows.contains(&r) {
                    assert!(y[r as usize * 4..][..4].iter().all(|&v| v == 0.0));
                }
            }
            let (mut dx, mut da, mut db) = (vec![0.0; 30], vec![0.0; 10], vec![0.0; 8]);
            cpu.lora_backward(&mut dx, &mut da, &mut db, &g, &x, &u, &a, &b, &rows, scale, dims, &mut s);
            check_grad(&x, &dx, |x| loss(x, &a, &b));
            check_grad(&a, &da, |a| loss(&x, a, &b));
            check_grad(&b, &db, |b| loss(&x, &a, b));
        }
    }
}
