//! `Backend` on wgpu: device buffers (`GpuTensor`) and the WGSL kernels of
//! `GpuOps`, f32. Every call records dispatches into the context's batch;
//! only `download_many` and `read_norms` wait for the device. Index tensors
//! (`set_i32`, `set_u32`, `set_seqs`, `set_rows`) are rewritten in place.
use super::device::{GpuContext, GpuTensor};
use super::ops::{seq_meta, GpuOps};
use crate::backend::{Backend, BackendInfo};
use crate::ops::attention::AttnShape;
use crate::optim::AdamW;

pub struct WgpuBackend {
    pub ops: GpuOps,
}

impl WgpuBackend {
    pub fn new(ctx: GpuContext) -> Self {
        WgpuBackend { ops: GpuOps::new(ctx) }
    }
    fn ctx(&self) -> &GpuContext {
        &self.ops.ctx
    }
    /// `b` holds exactly `n` elements (contents unspecified when reallocated).
    fn sized(&self, b: &mut GpuTensor, n: usize) {
        if b.len() != n {
            *b = self.ctx().alloc(n);
        }
    }
}

/// Every KV cache of a session: per layer one tensor of
/// [caches capacity, positions capacity, kv_width], grown by doubling.
pub struct GpuKv {
    kw: usize,
    caches: usize,
    len: usize,
    k: Vec<GpuTensor>,
    v: Vec<GpuTensor>,
}

/// Decode rows: the cache index and the position of each row.
pub struct GpuRows {
    cache: GpuTensor,
    pos: GpuTensor,
}

fn refs<'a>(v: &'a [&mut GpuTensor]) -> Vec<&'a GpuTensor> {
    v.iter().map(|t| &**t).collect()
}

impl Backend for WgpuBackend {
    type F = f32;
    type Buf = GpuTensor;
    type I32 = GpuTensor;
    type U32 = GpuTensor;
    type Seqs = GpuTensor;
    /// [sum of squares, norm, clip factor] on the device.
    type Clip = GpuTensor;
    type Kv = GpuKv;
    type Rows = GpuRows;

    fn info(&self) -> BackendInfo {
        let a = &self.ctx().adapter;
        BackendInfo { backend: "wgpu".into(), adapter: a.name.clone(), device_type: a.device_type.clone() }
    }
    fn buffers_created(&self) -> Option<usize> {
        Some(self.ctx().buffers_created())
    }

    fn empty(&self) -> GpuTensor {
        self.ctx().alloc(0)
    }
    fn upload(&self, x: &[f32]) -> GpuTensor {
        self.ctx().upload(x)
    }
    fn upload_rows(&self, x: &[f32], width: usize) -> GpuTensor {
        self.ctx().upload_rows(x, width)
    }
    fn zeros_like(&self, x: &GpuTensor) -> GpuTensor {
        let z = self.ctx().alloc_like(x);
        self.ctx().fill_zero(&z);
        z
    }
    fn parts(&self, b: &GpuTensor) -> usize {
        b.num_parts()
    }
    fn download_many(&self, bufs: &[&GpuTensor]) -> Vec<Vec<f32>> {
        self.ctx().download_many(bufs)
    }
    fn len(&self, b: &GpuTensor) -> usize {
        b.len()
    }
    fn write(&self, dst: &mut GpuTensor, x: &[f32]) {
        self.sized(dst, x.len());
        self.ctx().write(dst, x);
    }
    fn zeros(&self, b: &mut GpuTensor, n: usize) {
        self.sized(b, n);
        self.ctx().fill_zero(b);
    }
    fn copy(&self, dst: &mut GpuTensor, src: &GpuTensor) {
        if !dst.same_layout(src) {
            *dst = self.ctx().alloc_like(src);
        }
        self.ctx().copy(dst, src, src.len());
    }
    fn add_assign(&self, dst: &mut GpuTensor, a: &GpuTensor) {
        self.ops.add_assign(dst, a);
    }
    fn resize(&self, b: &mut GpuTensor, n: usize) {
        self.sized(b, n);
    }
    fn scale(&self, x: &mut GpuTensor, s: f32) {
        self.ops.scale(x, s);
    }
    fn gather_rows(&self, dst: &mut GpuTensor, src: &GpuTensor, rows: &GpuTensor, width: usize) {
        self.sized(dst, rows.len() * width);
        self.ops.gather_into(dst, src, rows, width);
    }
    fn scatter_add_rows(&self, dst: &mut GpuTensor, src: &GpuTensor, rows: &GpuTensor, width: usize, scale: f32) {
        self.ops.scatter_add(dst, src, rows, width, scale);
    }
    fn bias_add(&self, y: &mut GpuTensor, b: &GpuTensor, rows: usize, width: usize) {
        self.ops.bias_add(y, b, rows, width);
    }
    fn bias_grad(&self, db: &mut GpuTensor, dy: &GpuTensor, rows: usize, width: usize) {
        self.ops.bias_grad(db, dy, rows, width);
    }
    fn u32_len(&self, x: &GpuTensor) -> usize {
        x.len()
    }
    fn new_i32(&self, x: &[i32]) -> GpuTensor {
        self.ctx().upload_i32(x)
    }
    fn new_u32(&self, x: &[u32]) -> GpuTensor {
        self.ctx().upload_u32(x)
    }
    fn new_seqs(&self, seqs: &[(usize, usize)], rows: usize) -> GpuTensor {
        self.ctx().upload_u32(&seq_meta(seqs, rows))
    }
    fn set_i32(&self, dst: &mut GpuTensor, x: &[i32]) {
        self.ctx().write_i32(dst, x);
    }
    fn set_u32(&self, dst: &mut GpuTensor, x: &[u32]) {
        self.ctx().write_u32(dst, x);
    }
    fn set_seqs(&self, dst: &mut GpuTensor, seqs: &[(usize, usize)], rows: usize) {
        self.ctx().write_u32(dst, &seq_meta(seqs, rows));
    }
    /// One binding's worth: `split_bytes` / (4 width), at least 1.
    fn max_rows_per_block(&self, width: usize) -> usize {
        self.ctx().rows_per_block(width)
    }
    fn slice_rows(&self, dst: &mut GpuTensor, src: &GpuTensor, first: usize, rows: usize, width: usize) {
        self.sized(dst, rows * width);
        self.ctx().copy_region(dst, 0, src, first * width, rows * width);
    }
    fn place_rows(&self, dst: &mut GpuTensor, first: usize, src: &GpuTensor, width: usize) {
        self.ctx().copy_region(dst, first * width, src, 0, src.len());
    }
    fn all_finite(&self, _bufs: &[&GpuTensor]) -> Option<bool> {
        None
    }

    fn matmul(&self, c: &mut GpuTensor, a: &GpuTensor, b: &GpuTensor, m: usize, n: usize, k: usize, ta: bool, tb: bool, acc: bool) {
        self.ops.matmul(c, a, b, m, n, k, ta, tb, acc);
    }
    fn embedding_forward(&self, x: &mut GpuTensor, table: &GpuTensor, tokens: &GpuTensor, d: usize) {
        self.ops.embedding_forward(x, table, tokens, d);
    }
    fn embedding_backward(&self, dtable: &mut GpuTensor, dx: &GpuTensor, tokens: &GpuTensor, d: usize) {
        self.ops.embedding_backward(dtable, dx, tokens, d);
    }
    fn rmsnorm_forward(&self, y: &mut GpuTensor, rstd: &mut GpuTensor, x: &GpuTensor, w: &GpuTensor, d: usize, eps: f64) {
        self.ops.rmsnorm_forward(y, rstd, x, w, d, eps);
    }
    fn rmsnorm_backward(&self, dx: &mut GpuTensor, dw: Option<&mut GpuTensor>, dy: &GpuTensor, x: &GpuTensor, w: &GpuTensor, rstd: &GpuTensor, d: usize) {
        self.ops.rmsnorm_backward(dx, dw.map(|t| &*t), dy, x, w, rstd, d);
    }
    fn rope_apply(&self, x: &mut GpuTensor, pos: &GpuTensor, heads: usize, head_dim: usize, cos: &GpuTensor, sin: &GpuTensor, inverse: bool) {
        self.ops.rope_apply(x, pos, heads, head_dim, cos, sin, inverse);
    }
    fn attention_forward(&self, out: &mut GpuTensor, lse: &mut GpuTensor, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, seqs: &GpuTensor, sh: AttnShape) {
        self.ops.attention_forward(out, lse, q, k, v, seqs, sh);
    }
    fn attention_backward(
        &self,
        dq: &mut GpuTensor,
        dk: &mut GpuTensor,
        dv: &mut GpuTensor,
        dout: &GpuTensor,
        out: &GpuTensor,
        lse: &GpuTensor,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        seqs: &GpuTensor,
        sh: AttnShape,
    ) {
        self.ops.attention_backward(dq, dk, dv, dout, out, lse, q, k, v, seqs, sh);
    }
    fn swiglu_forward(&self, a: &mut GpuTensor, g: &GpuTensor, u: &GpuTensor) {
        self.ops.swiglu_forward(a, g, u);
    }
    fn swiglu_backward(&self, dg: &mut GpuTensor, du: &mut GpuTensor, da: &GpuTensor, g: &GpuTensor, u: &GpuTensor) {
        self.ops.swiglu_backward(dg, du, da, g, u);
    }
    fn logprob_forward(&self, logp: &mut GpuTensor, lse: &mut GpuTensor, logits: &GpuTensor, targets: &GpuTensor, vocab: usize) {
        self.ops.logprob_forward(logp, lse, logits, targets, vocab);
    }
    fn logprob_backward(&self, logits: &mut GpuTensor, lse: &GpuTensor, dlogp: &GpuTensor, targets: &GpuTensor, vocab: usize) {
        self.ops.logprob_backward(logits, lse, dlogp, targets, vocab);
    }
    fn grad_norm(&self, grads: &[&GpuTensor], max_norm: f64) -> GpuTensor {
        self.ops.grad_norm_and_clip(grads, max_norm)
    }
    fn read_norms(&self, clips: &[&GpuTensor]) -> Vec<f64> {
        self.ctx().download_many(clips).into_iter().map(|acc| acc[1] as f64).collect()
    }
    fn adamw_step(
        &self,
        opt: &AdamW,
        step: u64,
        params: &mut [&mut GpuTensor],
        grads: &[&GpuTensor],
        m: &mut [&mut GpuTensor],
        v: &mut [&mut GpuTensor],
        clip: &GpuTensor,
    ) {
        self.ops.adamw_step(opt, step, &refs(params), grads, &refs(m), &refs(v), clip);
    }

    fn kv_new(&self, layers: usize, kv_width: usize) -> GpuKv {
        let e = || (0..layers).map(|_| self.ctx().alloc(0)).collect();
        GpuKv { kw: kv_width, caches: 0, len: 0, k: e(), v: e() }
    }
    fn kv_reserve(&self, kv: &mut GpuKv, cache: usize, positions: usize) {
        if cache < kv.caches && positions <= kv.len {
            return;
        }
        let caches = if cache < kv.caches { kv.caches } else { (cache + 1).next_power_of_two().max(4) };
        let len = if positions <= kv.len { kv.len } else { positions.next_power_of_two().max(64) };
        let kw = kv.kw;
        let ctx = self.ctx();
        for t in kv.k.iter_mut().chain(kv.v.iter_mut()) {
            let new = ctx.zeros(caches * len * kw);
            for c in 0..kv.caches {
                ctx.copy_region(&new, c * len * kw, t, c * kv.len * kw, kv.len * kw);
            }
            *t = new;
        }
        kv.caches = caches;
        kv.len = len;
    }
    fn new_rows(&self, rows: &[(usize, usize)]) -> GpuRows {
        let cache: Vec<u32> = rows.iter().map(|r| r.0 as u32).collect();
        let pos: Vec<u32> = rows.iter().map(|r| r.1 as u32).collect();
        GpuRows { cache: self.ctx().upload_u32(&cache), pos: self.ctx().upload_u32(&pos) }
    }
    fn set_rows(&self, dst: &mut GpuRows, rows: &[(usize, usize)]) {
        let cache: Vec<u32> = rows.iter().map(|r| r.0 as u32).collect();
        let pos: Vec<u32> = rows.iter().map(|r| r.1 as u32).collect();
        self.ctx().write_u32(&mut dst.cache, &cache);
        self.ctx().write_u32(&mut dst.pos, &pos);
    }
    fn kv_append(&self, kv: &mut GpuKv, layer: usize, k: &GpuTensor, v: &GpuTensor, rows: &GpuRows) {
        self.ops.kv_append(&kv.k[layer], &kv.v[layer], k, v, &rows.pos, &rows.cache, kv.kw, kv.len);
    }
    fn attention_cached(&self, out: &mut GpuTensor, q: &GpuTensor, kv: &GpuKv, layer: usize, rows: &GpuRows, sh: AttnShape) {
        let n = rows.pos.len();
        self.sized(out, n * sh.heads * sh.head_dim);
        let lse = self.ctx().alloc(n * sh.heads);
        self.ops.decode_attention(out, &lse, q, &kv.k[layer], &kv.v[layer], &rows.pos, &rows.cache, kv.len, sh);
    }
}
