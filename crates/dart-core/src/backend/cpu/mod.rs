//! The CPU backend: host vectors and the reference ops of `crate::ops`, in
//! f32 (the product) or f64 (finite-difference checks). Multi-threaded
//! through the caller's rayon pool; deterministic for a thread count.
pub mod huge_pages;
use super::{Backend, BackendInfo};
use crate::float::Float;
use crate::ops::attention::{attention_backward, attention_cached, attention_forward, AttnShape};
use crate::ops::embedding::{embedding_backward, embedding_forward};
use crate::ops::logprob::{logprob_backward, logprob_forward};
use crate::ops::matmul::matmul;
use crate::ops::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use crate::ops::rope::rope_apply;
use crate::ops::swiglu::{swiglu_backward, swiglu_forward};
use crate::optim::{adamw_update, clip_factor, grad_norm, AdamW};
use std::marker::PhantomData;

pub struct CpuBackend<T> {
    /// `Backend::max_rows_per_block` (usize::MAX: the LM head in one block).
    max_rows: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Default for CpuBackend<T> {
    fn default() -> Self {
        CpuBackend { max_rows: usize::MAX, _t: PhantomData }
    }
}

impl<T> CpuBackend<T> {
    /// A cpu backend that runs the LM head in blocks of at most `rows` token
    /// rows, as wgpu does over the binding limit (for tests of that path).
    pub fn with_max_rows_per_block(rows: usize) -> Self {
        CpuBackend { max_rows: rows.max(1), _t: PhantomData }
    }
}

/// `v` becomes `n` zeros, reusing its allocation.
pub(crate) fn fill<T: Float>(v: &mut Vec<T>, n: usize) {
    v.clear();
    v.resize(n, T::zero());
}

/// One cache: (keys per layer, values per layer), each [capacity, kw].
type LayerKv<T> = (Vec<Vec<T>>, Vec<Vec<T>>);

/// Keys and values of every layer, one entry per cache.
pub struct CpuKv<T> {
    layers: usize,
    kw: usize,
    /// caches[c] = (k per layer, v per layer), each [capacity, kw].
    caches: Vec<LayerKv<T>>,
}

impl<T: Float> Backend for CpuBackend<T> {
    type F = T;
    type Buf = Vec<T>;
    type I32 = Vec<i32>;
    type U32 = Vec<u32>;
    type Seqs = Vec<(usize, usize)>;
    /// (norm, clip factor).
    type Clip = (f64, f64);
    type Kv = CpuKv<T>;
    type Rows = Vec<(usize, usize)>;

    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "cpu".into(),
            adapter: format!("cpu {} ({} threads, {} kernels)", std::any::type_name::<T>(), rayon::current_num_threads(), crate::ops::cpu::kernel_class()),
            device_type: "Cpu".into(),
        }
    }

    fn empty(&self) -> Vec<T> {
        Vec::new()
    }
    fn upload(&self, x: &[T]) -> Vec<T> {
        x.to_vec()
    }
    fn upload_vec(&self, x: Vec<T>) -> Vec<T> {
        x
    }
    fn download_many(&self, bufs: &[&Vec<T>]) -> Vec<Vec<T>> {
        bufs.iter().map(|b| b.to_vec()).collect()
    }
    fn download(&self, b: &Vec<T>) -> Vec<T> {
        b.clone()
    }
    fn len(&self, b: &Vec<T>) -> usize {
        b.len()
    }
    fn write(&self, dst: &mut Vec<T>, x: &[T]) {
        dst.clear();
        dst.extend_from_slice(x);
    }
    fn zeros(&self, b: &mut Vec<T>, n: usize) {
        fill(b, n);
    }
    fn zero(&self, b: &mut Vec<T>) {
        b.iter_mut().for_each(|x| *x = T::zero());
    }
    fn copy(&self, dst: &mut Vec<T>, src: &Vec<T>) {
        dst.clear();
        dst.extend_from_slice(src);
    }
    fn add_assign(&self, dst: &mut Vec<T>, a: &Vec<T>) {
        for (x, &y) in dst.iter_mut().zip(a) {
            *x += y;
        }
    }
    fn resize(&self, b: &mut Vec<T>, n: usize) {
        b.resize(n, T::zero());
    }
    fn scale(&self, x: &mut Vec<T>, s: T) {
        x.iter_mut().for_each(|v| *v *= s);
    }
    fn gather_rows(&self, dst: &mut Vec<T>, src: &Vec<T>, rows: &Vec<u32>, width: usize) {
        dst.clear();
        for &r in rows {
            dst.extend_from_slice(&src[r as usize * width..(r as usize + 1) * width]);
        }
    }
    fn scatter_add_rows(&self, dst: &mut Vec<T>, src: &Vec<T>, rows: &Vec<u32>, width: usize, scale: T) {
        for (row, &r) in src.chunks(width).zip(rows) {
            for (a, &b) in dst[r as usize * width..(r as usize + 1) * width].iter_mut().zip(row) {
                *a += scale * b;
            }
        }
    }
    fn bias_add(&self, y: &mut Vec<T>, b: &Vec<T>, rows: usize, width: usize) {
        for row in y[..rows * width].chunks_mut(width) {
            for (a, &c) in row.iter_mut().zip(b) {
                *a += c;
            }
        }
    }
    fn bias_grad(&self, db: &mut Vec<T>, dy: &Vec<T>, rows: usize, width: usize) {
        for row in dy[..rows * width].chunks(width) {
            for (a, &c) in db.iter_mut().zip(row) {
                *a += c;
            }
        }
    }
    fn u32_len(&self, x: &Vec<u32>) -> usize {
        x.len()
    }
    fn new_i32(&self, x: &[i32]) -> Vec<i32> {
        x.to_vec()
    }
    fn new_u32(&self, x: &[u32]) -> Vec<u32> {
        x.to_vec()
    }
    fn new_seqs(&self, seqs: &[(usize, usize)], _rows: usize) -> Vec<(usize, usize)> {
        seqs.to_vec()
    }
    fn set_i32(&self, dst: &mut Vec<i32>, x: &[i32]) {
        dst.clear();
        dst.extend_from_slice(x);
    }
    fn set_u32(&self, dst: &mut Vec<u32>, x: &[u32]) {
        dst.clear();
        dst.extend_from_slice(x);
    }
    fn set_seqs(&self, dst: &mut Vec<(usize, usize)>, seqs: &[(usize, usize)], _rows: usize) {
        dst.clear();
        dst.extend_from_slice(seqs);
    }
    fn max_rows_per_block(&self, _width: usize) -> usize {
        self.max_rows
    }
    fn slice_rows(&self, dst: &mut Vec<T>, src: &Vec<T>, first: usize, rows: usize, width: usize) {
        dst.clear();
        dst.extend_from_slice(&src[first * width..(first + rows) * width]);
    }
    fn place_rows(&self, dst: &mut Vec<T>, first: usize, src: &Vec<T>, width: usize) {
        dst[first * width..first * width + src.len()].copy_from_slice(src);
    }
    fn all_finite(&self, bufs: &[&Vec<T>]) -> Option<bool> {
        Some(bufs.iter().all(|b| b.iter().all(|x| x.is_finite())))
    }

    fn matmul(&self, c: &mut Vec<T>, a: &Vec<T>, b: &Vec<T>, m: usize, n: usize, k: usize, ta: bool, tb: bool, acc: bool) {
        matmul(c, a, b, m, n, k, ta, tb, acc);
    }
    fn embedding_forward(&self, x: &mut Vec<T>, table: &Vec<T>, tokens: &Vec<i32>, d: usize) {
        embedding_forward(x, table, tokens, d);
    }
    fn embedding_backward(&self, dtable: &mut Vec<T>, dx: &Vec<T>, tokens: &Vec<i32>, d: usize) {
        embedding_backward(dtable, dx, tokens, d);
    }
    fn rmsnorm_forward(&self, y: &mut Vec<T>, rstd: &mut Vec<T>, x: &Vec<T>, w: &Vec<T>, d: usize, eps: f64) {
        rmsnorm_forward(y, rstd, x, w, d, eps);
    }
    fn rmsnorm_backward(&self, dx: &mut Vec<T>, dw: Option<&mut Vec<T>>, dy: &Vec<T>, x: &Vec<T>, w: &Vec<T>, rstd: &Vec<T>, d: usize) {
        rmsnorm_backward(dx, dw.map(|d| d.as_mut_slice()), dy, x, w, rstd, d);
    }
    fn rope_apply(&self, x: &mut Vec<T>, pos: &Vec<u32>, heads: usize, head_dim: usize, cos: &Vec<T>, sin: &Vec<T>, inverse: bool) {
        rope_apply(x, pos, heads, head_dim, cos, sin, inverse);
    }
    fn attention_forward(&self, out: &mut Vec<T>, lse: &mut Vec<T>, q: &Vec<T>, k: &Vec<T>, v: &Vec<T>, seqs: &Vec<(usize, usize)>, sh: AttnShape) {
        attention_forward(out, lse, q, k, v, seqs, sh);
    }
    fn attention_backward(
        &self,
        dq: &mut Vec<T>,
        dk: &mut Vec<T>,
        dv: &mut Vec<T>,
        dout: &Vec<T>,
        out: &Vec<T>,
        lse: &Vec<T>,
        q: &Vec<T>,
        k: &Vec<T>,
        v: &Vec<T>,
        seqs: &Vec<(usize, usize)>,
        sh: AttnShape,
    ) {
        attention_backward(dq, dk, dv, dout, out, lse, q, k, v, seqs, sh);
    }
    fn swiglu_forward(&self, a: &mut Vec<T>, g: &Vec<T>, u: &Vec<T>) {
        swiglu_forward(a, g, u);
    }
    fn swiglu_backward(&self, dg: &mut Vec<T>, du: &mut Vec<T>, da: &Vec<T>, g: &Vec<T>, u: &Vec<T>) {
        swiglu_backward(dg, du, da, g, u);
    }
    fn logprob_forward(&self, logp: &mut Vec<T>, lse: &mut Vec<T>, logits: &Vec<T>, targets: &Vec<i32>, vocab: usize) {
        logprob_forward(logp, lse, logits, targets, vocab);
    }
    fn logprob_backward(&self, logits: &mut Vec<T>, lse: &Vec<T>, dlogp: &Vec<T>, targets: &Vec<i32>, vocab: usize) {
        logprob_backward(logits, lse, dlogp, targets, vocab);
    }
    fn grad_norm(&self, grads: &[&Vec<T>], max_norm: f64) -> (f64, f64) {
        let n = grad_norm(grads);
        (n, clip_factor(n, max_norm))
    }
    fn read_norms(&self, clips: &[&(f64, f64)]) -> Vec<f64> {
        clips.iter().map(|c| c.0).collect()
    }
    fn adamw_step(&self, opt: &AdamW, step: u64, params: &mut [&mut Vec<T>], grads: &[&Vec<T>], m: &mut [&mut Vec<T>], v: &mut [&mut Vec<T>], clip: &(f64, f64)) {
        for i in 0..params.len() {
            adamw_update(opt, step, params[i], grads[i], m[i], v[i], clip.1);
        }
    }

    fn kv_new(&self, layers: usize, kv_width: usize) -> CpuKv<T> {
        CpuKv { layers, kw: kv_width, caches: Vec::new() }
    }
    /// Capacity grows by doubling, so appends are amortised O(1).
    fn kv_reserve(&self, kv: &mut CpuKv<T>, cache: usize, positions: usize) {
        while kv.caches.len() <= cache {
            kv.caches.push((vec![Vec::new(); kv.layers], vec![Vec::new(); kv.layers]));
        }
        let kw = kv.kw;
        let (k, v) = &mut kv.caches[cache];
        for buf in k.iter_mut().chain(v.iter_mut()) {
            if buf.len() < positions * kw {
                // Capacity doubles (a large block grows by remapping, not
                // copying); only the positions asked for are zero-filled, so a
                // batch crossing a power of two does not write the whole new
                // capacity at once.
                let cap = (positions.next_power_of_two().max(64)) * kw;
                if buf.capacity() < cap {
                    buf.reserve_exact(cap - buf.len());
                }
                buf.resize(positions * kw, T::zero());
            }
        }
    }
    fn new_rows(&self, rows: &[(usize, usize)]) -> Vec<(usize, usize)> {
        rows.to_vec()
    }
    fn set_rows(&self, dst: &mut Vec<(usize, usize)>, rows: &[(usize, usize)]) {
        dst.clear();
        dst.extend_from_slice(rows);
    }
    fn kv_append(&self, kv: &mut CpuKv<T>, layer: usize, k: &Vec<T>, v: &Vec<T>, rows: &Vec<(usize, usize)>) {
        let kw = kv.kw;
        for (r, &(c, p)) in rows.iter().enumerate() {
            let (ck, cv) = &mut kv.caches[c];
            ck[layer][p * kw..(p + 1) * kw].copy_from_slice(&k[r * kw..(r + 1) * kw]);
            cv[layer][p * kw..(p + 1) * kw].copy_from_slice(&v[r * kw..(r + 1) * kw]);
        }
    }
    fn attention_cached(&self, out: &mut Vec<T>, q: &Vec<T>, kv: &CpuKv<T>, layer: usize, rows: &Vec<(usize, usize)>, sh: AttnShape) {
        let caches: Vec<(&[T], &[T])> = kv.caches.iter().map(|(k, v)| (k[layer].as_slice(), v[layer].as_slice())).collect();
        attention_cached(out, q, &caches, rows, sh);
    }
}
