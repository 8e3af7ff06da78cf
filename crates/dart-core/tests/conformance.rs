//! One conformance suite for every backend. Each test body is written once
//! against `OpsBackend` (host vectors in and out) and runs on the CPU ops in
//! f32 and on the wgpu ops; both are compared with the CPU ops in f64.
//!
//! Tolerances, per element: |x - ref| <= tol * max(1, |ref|) with
//! ELEMENTWISE = 1e-5 (embedding, rope, swiglu, AdamW, gathers) and
//! REDUCTION = 1e-4 (GEMM, linear, LoRA, RMSNorm, attention, log-softmax,
//! grad norm).
//!
//! The wgpu half needs an adapter (CI installs Mesa lavapipe). Without one
//! every test fails, unless DART_SKIP_WGPU=1. DART_WGPU_ADAPTER pins one.
#![cfg(feature = "wgpu")]

use dart_core::backend::wgpu::{seq_meta, GpuContext, GpuOps};
use dart_core::ops::attention::{attention_backward, attention_forward, AttnShape};
use dart_core::ops::embedding::{embedding_backward, embedding_forward};
use dart_core::ops::linear::{linear_backward, linear_forward};
use dart_core::ops::logprob::{logprob_backward, logprob_forward};
use dart_core::ops::lora::{lora_backward, lora_forward, LoraDims, LoraScratch};
use dart_core::ops::matmul::matmul;
use dart_core::ops::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use dart_core::ops::rope::{rope_apply, rope_tables, RopeScaling};
use dart_core::ops::swiglu::{swiglu_backward, swiglu_forward};
use dart_core::optim::{adamw_step, clip_factor, grad_norm, AdamState, AdamW};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

const ELEMENTWISE: f64 = 1e-5;
const REDUCTION: f64 = 1e-4;

fn rand64(n: usize, seed: u64) -> Vec<f64> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random::<f64>() * 2.0 - 1.0).collect()
}
fn to32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}
/// Inputs rounded to f32 first, so both sides see the same numbers.
fn rand_in(n: usize, seed: u64) -> Vec<f64> {
    rand64(n, seed).into_iter().map(|v| v as f32 as f64).collect()
}

/// The op surface, host side. Outputs that the CPU ops accumulate into are
/// `&mut` and accumulate here too.
#[allow(clippy::too_many_arguments)]
trait OpsBackend: Sync {
    fn name(&self) -> String;
    #[allow(clippy::too_many_arguments)]
    fn matmul(&self, c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, ta: bool, tb: bool, acc: bool);
    #[allow(clippy::too_many_arguments)]
    fn linear(&self, y: &mut [f32], dx: &mut [f32], dw: &mut [f32], db: &mut [f32], x: &[f32], w: &[f32], b: &[f32], dy: &[f32], rows: usize, ni: usize, no: usize);
    fn embedding(&self, x: &mut [f32], dtable: &mut [f32], table: &[f32], tokens: &[i32], dx: &[f32], d: usize);
    #[allow(clippy::too_many_arguments)]
    fn rmsnorm(&self, y: &mut [f32], rstd: &mut [f32], dx: &mut [f32], dw: &mut [f32], x: &[f32], w: &[f32], dy: &[f32], d: usize, eps: f64);
    #[allow(clippy::too_many_arguments)]
    fn rope(&self, x: &mut [f32], pos: &[u32], heads: usize, hd: usize, cos: &[f32], sin: &[f32], inverse: bool);
    #[allow(clippy::too_many_arguments)]
    fn attention(&self, out: &mut [f32], lse: &mut [f32], dq: &mut [f32], dk: &mut [f32], dv: &mut [f32], q: &[f32], k: &[f32], v: &[f32], dout: &[f32], seqs: &[(usize, usize)], sh: AttnShape);
    fn swiglu(&self, a: &mut [f32], dg: &mut [f32], du: &mut [f32], g: &[f32], u: &[f32], da: &[f32]);
    #[allow(clippy::too_many_arguments)]
    fn lora(&self, y: &mut [f32], u: &mut Vec<f32>, dx: &mut [f32], da: &mut [f32], db: &mut [f32], x: &[f32], a: &[f32], b: &[f32], dy: &[f32], rows: &[u32], scale: f32, dims: LoraDims);
    fn logprob(&self, logp: &mut [f32], lse: &mut [f32], dz: &mut [f32], z: &[f32], targets: &[i32], dlogp: &[f32], vocab: usize);
    /// `steps` AdamW steps of one group with clipping; grads[s] per step.
    /// Returns the norm of the last step's gradients.
    fn adamw(&self, opt: &AdamW, params: &mut [Vec<f32>], m: &mut [Vec<f32>], v: &mut [Vec<f32>], grads: &[Vec<Vec<f32>>]) -> f64;
    /// Sessions s with caches of pos[s]+1 rows (kv rows given as [s][row][kw]),
    /// appended one row at a time; then single-token attention of q[s].
    #[allow(clippy::too_many_arguments)]
    fn decode(&self, out: &mut [f32], ks: &[Vec<f32>], vs: &[Vec<f32>], q: &[f32], pos: &[u32], max_len: usize, sh: AttnShape);
}

struct Cpu;

impl OpsBackend for Cpu {
    fn name(&self) -> String {
        "cpu f32".into()
    }
    fn matmul(&self, c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, ta: bool, tb: bool, acc: bool) {
        matmul(c, a, b, m, n, k, ta, tb, acc);
    }
    fn linear(&self, y: &mut [f32], dx: &mut [f32], dw: &mut [f32], db: &mut [f32], x: &[f32], w: &[f32], b: &[f32], dy: &[f32], rows: usize, ni: usize, no: usize) {
        linear_forward(y, x, w, Some(b), rows, ni, no);
        linear_backward(dx, true, Some(dw), Some(db), dy, x, w, rows, ni, no);
    }
    fn embedding(&self, x: &mut [f32], dtable: &mut [f32], table: &[f32], tokens: &[i32], dx: &[f32], d: usize) {
        embedding_forward(x, table, tokens, d);
        embedding_backward(dtable, dx, tokens, d);
    }
    fn rmsnorm(&self, y: &mut [f32], rstd: &mut [f32], dx: &mut [f32], dw: &mut [f32], x: &[f32], w: &[f32], dy: &[f32], d: usize, eps: f64) {
        rmsnorm_forward(y, rstd, x, w, d, eps);
        rmsnorm_backward(dx, Some(dw), dy, x, w, rstd, d);
    }
    fn rope(&self, x: &mut [f32], pos: &[u32], heads: usize, hd: usize, cos: &[f32], sin: &[f32], inverse: bool) {
        rope_apply(x, pos, heads, hd, cos, sin, inverse);
    }
    fn attention(&self, out: &mut [f32], lse: &mut [f32], dq: &mut [f32], dk: &mut [f32], dv: &mut [f32], q: &[f32], k: &[f32], v: &[f32], dout: &[f32], seqs: &[(usize, usize)], sh: AttnShape) {
        attention_forward(out, lse, q, k, v, seqs, sh);
        attention_backward(dq, dk, dv, dout, out, lse, q, k, v, seqs, sh);
    }
    fn swiglu(&self, a: &mut [f32], dg: &mut [f32], du: &mut [f32], g: &[f32], u: &[f32], da: &[f32]) {
        swiglu_forward(a, g, u);
        swiglu_backward(dg, du, da, g, u);
    }
    fn lora(&self, y: &mut [f32], u: &mut Vec<f32>, dx: &mut [f32], da: &mut [f32], db: &mut [f32], x: &[f32], a: &[f32], b: &[f32], dy: &[f32], rows: &[u32], scale: f32, dims: LoraDims) {
        let mut s = LoraScratch::default();
        lora_forward(y, u, x, a, b, rows, scale, dims, &mut s);
        lora_backward(dx, da, db, dy, x, u, a, b, rows, scale, dims, &mut s);
    }
    fn logprob(&self, logp: &mut [f32], lse: &mut [f32], dz: &mut [f32], z: &[f32], targets: &[i32], dlogp: &[f32], vocab: usize) {
        logprob_forward(logp, lse, z, targets, vocab);
        dz.copy_from_slice(z);
        logprob_backward(dz, lse, dlogp, targets, vocab);
    }
    fn adamw(&self, opt: &AdamW, params: &mut [Vec<f32>], m: &mut [Vec<f32>], v: &mut [Vec<f32>], grads: &[Vec<Vec<f32>>]) -> f64 {
        cpu_adamw(opt, params, m, v, grads)
    }
    fn decode(&self, out: &mut [f32], ks: &[Vec<f32>], vs: &[Vec<f32>], q: &[f32], pos: &[u32], _max_len: usize, sh: AttnShape) {
        cpu_decode(out, ks, vs, q, pos, sh)
    }
}

fn cpu_adamw<T: dart_core::float::Float>(opt: &AdamW, params: &mut [Vec<T>], m: &mut [Vec<T>], v: &mut [Vec<T>], grads: &[Vec<Vec<T>>]) -> f64 {
    let mut st = AdamState::<T> { step: 0, m: m.to_vec(), v: v.to_vec() };
    let mut norm = 0.0;
    for g in grads {
        let mut g = g.clone();
        norm = grad_norm(&g.iter().collect::<Vec<_>>());
        let scale = clip_factor(norm, opt.max_grad_norm);
        let mut pg: Vec<(&mut Vec<T>, &mut Vec<T>)> = params.iter_mut().zip(g.iter_mut()).collect();
        adamw_step(opt, &mut st, &mut pg, scale);
    }
    m.clone_from_slice(&st.m);
    v.clone_from_slice(&st.v);
    norm
}

/// Decoding reference: full causal attention over each session's rows, last row.
fn cpu_decode<T: dart_core::float::Float>(out: &mut [T], ks: &[Vec<T>], vs: &[Vec<T>], q: &[T], pos: &[u32], sh: AttnShape) {
    let (qw, kw) = (sh.heads * sh.head_dim, sh.kv_heads * sh.head_dim);
    for (s, &p) in pos.iter().enumerate() {
        let len = p as usize + 1;
        // queries: zeros except the last row, which is q[s]
        let mut qq = vec![T::zero(); len * qw];
        qq[(len - 1) * qw..].copy_from_slice(&q[s * qw..(s + 1) * qw]);
        let mut o = vec![T::zero(); len * qw];
        let mut l = vec![T::zero(); len * sh.heads];
        attention_forward(&mut o, &mut l, &qq, &ks[s][..len * kw], &vs[s][..len * kw], &[(0, len)], sh);
        out[s * qw..(s + 1) * qw].copy_from_slice(&o[(len - 1) * qw..]);
    }
}

struct Gpu(GpuOps);

impl Gpu {
    fn ctx(&self) -> &GpuContext {
        &self.0.ctx
    }
    fn up(&self, x: &[f32]) -> dart_core::backend::wgpu::GpuTensor {
        self.ctx().upload(x)
    }
}

impl OpsBackend for Gpu {
    fn name(&self) -> String {
        format!("wgpu {:?} ({})", self.ctx().adapter.name, self.ctx().adapter.device_type)
    }
    fn matmul(&self, c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, ta: bool, tb: bool, acc: bool) {
        let (gc, ga, gb) = (self.up(c), self.up(a), self.up(b));
        self.0.matmul(&gc, &ga, &gb, m, n, k, ta, tb, acc);
        c.copy_from_slice(&self.ctx().download(&gc));
    }
    fn linear(&self, y: &mut [f32], dx: &mut [f32], dw: &mut [f32], db: &mut [f32], x: &[f32], w: &[f32], b: &[f32], dy: &[f32], rows: usize, ni: usize, no: usize) {
        let (gy, gdx, gdw, gdb) = (self.up(y), self.up(dx), self.up(dw), self.up(db));
        let (gx, gw, gb, gdy) = (self.up(x), self.up(w), self.up(b), self.up(dy));
        self.0.linear_forward(&gy, &gx, &gw, Some(&gb), rows, ni, no);
        self.0.linear_backward(&gdx, true, Some(&gdw), Some(&gdb), &gdy, &gx, &gw, rows, ni, no);
        let r = self.ctx().download_many(&[&gy, &gdx, &gdw, &gdb]);
        y.copy_from_slice(&r[0]);
        dx.copy_from_slice(&r[1]);
        dw.copy_from_slice(&r[2]);
        db.copy_from_slice(&r[3]);
    }
    fn embedding(&self, x: &mut [f32], dtable: &mut [f32], table: &[f32], tokens: &[i32], dx: &[f32], d: usize) {
        let (gx, gdt, gt, gtok, gdx) = (self.up(x), self.up(dtable), self.up(table), self.ctx().upload_i32(tokens), self.up(dx));
        self.0.embedding_forward(&gx, &gt, &gtok, d);
        self.0.embedding_backward(&gdt, &gdx, &gtok, d);
        let r = self.ctx().download_many(&[&gx, &gdt]);
        x.copy_from_slice(&r[0]);
        dtable.copy_from_slice(&r[1]);
    }
    fn rmsnorm(&self, y: &mut [f32], rstd: &mut [f32], dx: &mut [f32], dw: &mut [f32], x: &[f32], w: &[f32], dy: &[f32], d: usize, eps: f64) {
        let (gy, gr, gdx, gdw) = (self.ctx().alloc(y.len()), self.ctx().alloc(rstd.len()), self.ctx().alloc(dx.len()), self.up(dw));
        let (gx, gw, gdy) = (self.up(x), self.up(w), self.up(dy));
        self.0.rmsnorm_forward(&gy, &gr, &gx, &gw, d, eps);
        self.0.rmsnorm_backward(&gdx, Some(&gdw), &gdy, &gx, &gw, &gr, d);
        let r = self.ctx().download_many(&[&gy, &gr, &gdx, &gdw]);
        y.copy_from_slice(&r[0]);
        rstd.copy_from_slice(&r[1]);
        dx.copy_from_slice(&r[2]);
        dw.copy_from_slice(&r[3]);
    }
    fn rope(&self, x: &mut [f32], pos: &[u32], heads: usize, hd: usize, cos: &[f32], sin: &[f32], inverse: bool) {
        let gx = self.up(x);
        let (gp, gc, gs) = (self.ctx().upload_u32(pos), self.up(cos), self.up(sin));
        self.0.rope_apply(&gx, &gp, heads, hd, &gc, &gs, inverse);
        x.copy_from_slice(&self.ctx().download(&gx));
    }
    fn attention(&self, out: &mut [f32], lse: &mut [f32], dq: &mut [f32], dk: &mut [f32], dv: &mut [f32], q: &[f32], k: &[f32], v: &[f32], dout: &[f32], seqs: &[(usize, usize)], sh: AttnShape) {
        let rows = q.len() / (sh.heads * sh.head_dim);
        let c = self.ctx();
        let meta = c.upload_u32(&seq_meta(seqs, rows));
        let (go, gl, gdq, gdk, gdv) = (c.alloc(out.len()), c.alloc(lse.len()), c.alloc(dq.len()), c.alloc(dk.len()), c.alloc(dv.len()));
        let (gq, gk, gv, gdo) = (self.up(q), self.up(k), self.up(v), self.up(dout));
        self.0.attention_forward(&go, &gl, &gq, &gk, &gv, &meta, sh);
        self.0.attention_backward(&gdq, &gdk, &gdv, &gdo, &go, &gl, &gq, &gk, &gv, &meta, sh);
        let r = c.download_many(&[&go, &gl, &gdq, &gdk, &gdv]);
        out.copy_from_slice(&r[0]);
        lse.copy_from_slice(&r[1]);
        dq.copy_from_slice(&r[2]);
        dk.copy_from_slice(&r[3]);
        dv.copy_from_slice(&r[4]);
    }
    fn swiglu(&self, a: &mut [f32], dg: &mut [f32], du: &mut [f32], g: &[f32], u: &[f32], da: &[f32]) {
        let c = self.ctx();
        let (ga, gdg, gdu) = (c.alloc(a.len()), c.alloc(dg.len()), c.alloc(du.len()));
        let (gg, gu, gda) = (self.up(g), self.up(u), self.up(da));
        self.0.swiglu_forward(&ga, &gg, &gu);
        self.0.swiglu_backward(&gdg, &gdu, &gda, &gg, &gu);
        let r = c.download_many(&[&ga, &gdg, &gdu]);
        a.copy_from_slice(&r[0]);
        dg.copy_from_slice(&r[1]);
        du.copy_from_slice(&r[2]);
    }
    fn lora(&self, y: &mut [f32], u: &mut Vec<f32>, dx: &mut [f32], da: &mut [f32], db: &mut [f32], x: &[f32], a: &[f32], b: &[f32], dy: &[f32], rows: &[u32], scale: f32, dims: LoraDims) {
        let c = self.ctx();
        let (gy, gdx, gda, gdb) = (self.up(y), self.up(dx), self.up(da), self.up(db));
        let (gx, ga, gb, gdy, grows) = (self.up(x), self.up(a), self.up(b), self.up(dy), c.upload_u32(rows));
        let gu = self.0.lora_forward(&gy, &gx, &ga, &gb, &grows, scale, dims);
        self.0.lora_backward(&gdx, &gda, &gdb, &gdy, &gx, &gu, &ga, &gb, &grows, scale, dims);
        let r = c.download_many(&[&gy, &gu, &gdx, &gda, &gdb]);
        y.copy_from_slice(&r[0]);
        *u = r[1].clone();
        dx.copy_from_slice(&r[2]);
        da.copy_from_slice(&r[3]);
        db.copy_from_slice(&r[4]);
    }
    fn logprob(&self, logp: &mut [f32], lse: &mut [f32], dz: &mut [f32], z: &[f32], targets: &[i32], dlogp: &[f32], vocab: usize) {
        let c = self.ctx();
        let (glp, gl, gz) = (c.alloc(logp.len()), c.alloc(lse.len()), self.up(z));
        let (gt, gd) = (c.upload_i32(targets), self.up(dlogp));
        self.0.logprob_forward(&glp, &gl, &gz, &gt, vocab);
        let r = c.download_many(&[&glp, &gl]);
        self.0.logprob_backward(&gz, &gl, &gd, &gt, vocab);
        logp.copy_from_slice(&r[0]);
        lse.copy_from_slice(&r[1]);
        dz.copy_from_slice(&c.download(&gz));
    }
    fn adamw(&self, opt: &AdamW, params: &mut [Vec<f32>], m: &mut [Vec<f32>], v: &mut [Vec<f32>], grads: &[Vec<Vec<f32>>]) -> f64 {
        let c = self.ctx();
        let gp: Vec<_> = params.iter().map(|p| self.up(p)).collect();
        let gm: Vec<_> = m.iter().map(|p| self.up(p)).collect();
        let gv: Vec<_> = v.iter().map(|p| self.up(p)).collect();
        let mut last = None;
        for (s, g) in grads.iter().enumerate() {
            let gg: Vec<_> = g.iter().map(|x| self.up(x)).collect();
            let refs: Vec<_> = gg.iter().collect();
            let acc = self.0.grad_norm_and_clip(&refs, opt.max_grad_norm);
            self.0.adamw_step(opt, s as u64 + 1, &refs_of(&gp), &refs, &refs_of(&gm), &refs_of(&gv), &acc);
            last = Some(acc);
        }
        for (i, t) in gp.iter().enumerate() {
            params[i] = c.download(t);
            m[i] = c.download(&gm[i]);
            v[i] = c.download(&gv[i]);
        }
        c.download(&last.unwrap())[1] as f64
    }
    fn decode(&self, out: &mut [f32], ks: &[Vec<f32>], vs: &[Vec<f32>], q: &[f32], pos: &[u32], max_len: usize, sh: AttnShape) {
        let c = self.ctx();
        let kw = sh.kv_heads * sh.head_dim;
        let sessions = pos.len();
        let (ck, cv) = (c.zeros(sessions * max_len * kw), c.zeros(sessions * max_len * kw));
        // One row per session, each in its own cache.
        let ident = c.upload_u32(&(0..sessions as u32).collect::<Vec<_>>());
        // Append step by step: at step t every session still growing writes row t.
        let steps = *pos.iter().max().unwrap() as usize + 1;
        for t in 0..steps {
            let live: Vec<usize> = (0..sessions).filter(|&s| t <= pos[s] as usize).collect();
            let mut nk = vec![0.0f32; sessions * kw];
            let mut nv = vec![0.0f32; sessions * kw];
            // Sessions already complete rewrite their last row (idempotent).
            let p: Vec<u32> = (0..sessions).map(|s| (t as u32).min(pos[s])).collect();
            for s in 0..sessions {
                let r = p[s] as usize;
                nk[s * kw..(s + 1) * kw].copy_from_slice(&ks[s][r * kw..(r + 1) * kw]);
                nv[s * kw..(s + 1) * kw].copy_from_slice(&vs[s][r * kw..(r + 1) * kw]);
            }
            let _ = live;
            let (gk, gv, gpos) = (self.up(&nk), self.up(&nv), c.upload_u32(&p));
            self.0.kv_append(&ck, &cv, &gk, &gv, &gpos, &ident, kw, max_len);
        }
        let (go, gl, gq, gpos) = (c.alloc(out.len()), c.alloc(sessions * sh.heads), self.up(q), c.upload_u32(pos));
        self.0.decode_attention(&go, &gl, &gq, &ck, &cv, &gpos, &ident, max_len, sh);
        out.copy_from_slice(&c.download(&go));
    }
}

fn refs_of(v: &[dart_core::backend::wgpu::GpuTensor]) -> Vec<&dart_core::backend::wgpu::GpuTensor> {
    v.iter().collect()
}

static GPU: OnceLock<Option<Gpu>> = OnceLock::new();

/// The backends under test: cpu always; wgpu unless DART_SKIP_WGPU=1, and a
/// missing adapter is a failure, not a skip.
fn backends() -> Vec<&'static dyn OpsBackend> {
    static CPU: Cpu = Cpu;
    let mut v: Vec<&'static dyn OpsBackend> = vec![&CPU];
    let skip = std::env::var("DART_SKIP_WGPU").is_ok_and(|s| s == "1");
    let gpu = GPU.get_or_init(|| {
        if skip {
            return None;
        }
        match GpuContext::new(None, false) {
            Ok(c) => Some(Gpu(GpuOps::new(c))),
            Err(e) => panic!("wgpu backend unavailable ({e}); set DART_SKIP_WGPU=1 to run the cpu half only"),
        }
    });
    if let Some(g) = gpu {
        v.push(g);
    }
    v
}

/// Asserts |got - want| <= tol * max(1, |want|) elementwise.
fn close(backend: &str, what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{backend}: {what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs() / w.abs().max(1.0);
        if err > worst.0 || err.is_nan() {
            worst = (err, i);
        }
    }
    assert!(
        worst.0 <= tol,
        "{backend}: {what}: element {} = {} vs f64 {} (scaled error {:.3e} > {tol:.0e})",
        worst.1,
        got[worst.1],
        want[worst.1],
        worst.0
    );
}

#[test]
fn gemm_all_transposes_and_awkward_shapes() {
    let shapes = [(1, 1, 1), (3, 5, 7), (17, 9, 33), (64, 64, 16), (70, 65, 80), (129, 67, 150), (5, 200, 3), (1, 300, 257)];
    for b in backends() {
        for (si, &(m, n, k)) in shapes.iter().enumerate() {
            for ta in [false, true] {
                for tb in [false, true] {
                    for acc in [false, true] {
                        let s = si as u64 * 10;
                        let (a, bb, c0) = (rand_in(m * k, s + 1), rand_in(k * n, s + 2), rand_in(m * n, s + 3));
                        let mut want = c0.clone();
                        matmul(&mut want, &a, &bb, m, n, k, ta, tb, acc);
                        let mut got = to32(&c0);
                        b.matmul(&mut got, &to32(&a), &to32(&bb), m, n, k, ta, tb, acc);
                        close(&b.name(), &format!("matmul {m}x{n}x{k} ta={ta} tb={tb} acc={acc}"), &got, &want, REDUCTION);
                    }
                }
            }
        }
    }
}

/// The GEMM and the embedding with a weight (B), a weight gradient (C) or
/// a table split into row blocks, as wgpu stores tensors over the binding
/// limit: contexts with a split size of 64 bytes (one row per block for
/// most widths) and of 1000 bytes (several rows per block, a short last one).
#[test]
fn gemm_and_embedding_with_operands_split_into_row_blocks() {
    if std::env::var("DART_SKIP_WGPU").is_ok_and(|s| s == "1") {
        return;
    }
    let shapes = [(3, 5, 7), (17, 9, 33), (70, 65, 80), (5, 200, 3), (1, 130, 257), (66, 1, 70)];
    for split in [64u64, 1000] {
        let ctx = dart_core::backend::wgpu::with_max_binding_bytes(split, || GpuContext::new(None, false)).expect("wgpu adapter");
        assert_eq!(ctx.split_bytes, split);
        let ops = GpuOps::new(ctx);
        let c = &ops.ctx;
        let splits = |len: usize, width: usize| width < len && (len * 4) as u64 > split;
        for (si, &(m, n, k)) in shapes.iter().enumerate() {
            for ta in [false, true] {
                for acc in [false, true] {
                    let s = si as u64 * 10;
                    let what = |mode: &str| format!("split {split}: {mode} {m}x{n}x{k} ta={ta} acc={acc}");
                    // B split, tb: C = op(A) W^T with W [n, k] (logits, linear forward).
                    for tb in [true, false] {
                        let (a, w, c0) = (rand_in(m * k, s + 1), rand_in(k * n, s + 2), rand_in(m * n, s + 3));
                        let mut want = c0.clone();
                        matmul(&mut want, &a, &w, m, n, k, ta, tb, acc);
                        let width = if tb { k } else { n };
                        let gw = c.upload_rows(&to32(&w), width);
                        assert_eq!(gw.is_split(), splits(k * n, width), "{}", what("B layout"));
                        let (gc, ga) = (c.upload(&to32(&c0)), c.upload(&to32(&a)));
                        ops.matmul(&gc, &ga, &gw, m, n, k, ta, tb, acc);
                        close("wgpu", &what(&format!("B split tb={tb}")), &c.download(&gc), &want, REDUCTION);
                    }
                    // C split: dW [m, n] (+)= op(A) op(B) (weight gradients).
                    for tb in [false, true] {
                        let (a, bb, c0) = (rand_in(m * k, s + 4), rand_in(k * n, s + 5), rand_in(m * n, s + 6));
                        let mut want = c0.clone();
                        matmul(&mut want, &a, &bb, m, n, k, ta, tb, acc);
                        let gc = c.alloc_rows(m * n, n);
                        assert_eq!(gc.is_split(), splits(m * n, n), "{}", what("C layout"));
                        c.write(&gc, &to32(&c0));
                        let (ga, gb) = (c.upload(&to32(&a)), c.upload(&to32(&bb)));
                        ops.matmul(&gc, &ga, &gb, m, n, k, ta, tb, acc);
                        close("wgpu", &what(&format!("C split tb={tb}")), &c.download(&gc), &want, REDUCTION);
                    }
                }
            }
        }
        // Embedding forward and backward with the table split.
        for &(vocab, d) in &[(11, 37), (53, 7)] {
            let tokens = [3, 0, 3, 10, 7, 3, 0, 9, 52 % vocab as i32, 40 % vocab as i32];
            let (table, dx, dt0) = (rand_in(vocab * d, 1), rand_in(tokens.len() * d, 2), rand_in(vocab * d, 3));
            let mut x = vec![0.0; tokens.len() * d];
            let mut dt = dt0.clone();
            embedding_forward(&mut x, &table, &tokens, d);
            embedding_backward(&mut dt, &dx, &tokens, d);
            let gt = c.upload_rows(&to32(&table), d);
            let gdt = c.upload_rows(&to32(&dt0), d);
            assert!(gt.is_split() && gdt.num_parts() > 1, "split {split}: the table is split");
            let (gx, gtok, gdx) = (c.zeros(x.len()), c.upload_i32(&tokens), c.upload(&to32(&dx)));
            ops.embedding_forward(&gx, &gt, &gtok, d);
            ops.embedding_backward(&gdt, &gdx, &gtok, d);
            close("wgpu", &format!("split {split}: embedding x {vocab}x{d}"), &c.download(&gx), &x, ELEMENTWISE);
            close("wgpu", &format!("split {split}: embedding dtable {vocab}x{d}"), &c.download(&gdt), &dt, ELEMENTWISE);
        }
    }
}

#[test]
fn linear_forward_backward() {
    let (rows, ni, no) = (13, 70, 33);
    let (x, w, bias, dy) = (rand_in(rows * ni, 1), rand_in(no * ni, 2), rand_in(no, 3), rand_in(rows * no, 4));
    let (dx0, dw0, db0) = (rand_in(rows * ni, 5), rand_in(no * ni, 6), rand_in(no, 7));
    let mut y = vec![0.0; rows * no];
    let (mut dx, mut dw, mut db) = (dx0.clone(), dw0.clone(), db0.clone());
    linear_forward(&mut y, &x, &w, Some(&bias), rows, ni, no);
    linear_backward(&mut dx, true, Some(&mut dw), Some(&mut db), &dy, &x, &w, rows, ni, no);
    for b in backends() {
        let mut gy = vec![0.0; rows * no];
        let (mut gdx, mut gdw, mut gdb) = (to32(&dx0), to32(&dw0), to32(&db0));
        b.linear(&mut gy, &mut gdx, &mut gdw, &mut gdb, &to32(&x), &to32(&w), &to32(&bias), &to32(&dy), rows, ni, no);
        let n = b.name();
        close(&n, "linear y", &gy, &y, REDUCTION);
        close(&n, "linear dx", &gdx, &dx, REDUCTION);
        close(&n, "linear dw", &gdw, &dw, REDUCTION);
        close(&n, "linear db", &gdb, &db, REDUCTION);
    }
}

#[test]
fn embedding_forward_backward() {
    let (vocab, d) = (11, 37);
    let tokens = [3, 0, 3, 10, 7, 3, 0];
    let (table, dx, dt0) = (rand_in(vocab * d, 1), rand_in(tokens.len() * d, 2), rand_in(vocab * d, 3));
    let mut x = vec![0.0; tokens.len() * d];
    let mut dt = dt0.clone();
    embedding_forward(&mut x, &table, &tokens, d);
    embedding_backward(&mut dt, &dx, &tokens, d);
    for b in backends() {
        let mut gx = vec![0.0; x.len()];
        let mut gdt = to32(&dt0);
        b.embedding(&mut gx, &mut gdt, &to32(&table), &tokens, &to32(&dx), d);
        close(&b.name(), "embedding x", &gx, &x, ELEMENTWISE);
        close(&b.name(), "embedding dtable", &gdt, &dt, ELEMENTWISE);
    }
}

#[test]
fn rmsnorm_forward_backward() {
    let eps = 1e-6;
    for &(rows, d) in &[(5, 300), (3, 7)] {
        let (x, w, dy, dw0) = (rand_in(rows * d, 1), rand_in(d, 2), rand_in(rows * d, 3), rand_in(d, 4));
        let (mut y, mut r, mut dx, mut dw) = (vec![0.0; rows * d], vec![0.0; rows], vec![0.0; rows * d], dw0.clone());
        rmsnorm_forward(&mut y, &mut r, &x, &w, d, eps);
        rmsnorm_backward(&mut dx, Some(&mut dw), &dy, &x, &w, &r, d);
        for b in backends() {
            let (mut gy, mut gr, mut gdx, mut gdw) = (vec![0.0; rows * d], vec![0.0; rows], vec![0.0; rows * d], to32(&dw0));
            b.rmsnorm(&mut gy, &mut gr, &mut gdx, &mut gdw, &to32(&x), &to32(&w), &to32(&dy), d, eps);
            let n = b.name();
            close(&n, "rmsnorm y", &gy, &y, REDUCTION);
            close(&n, "rmsnorm rstd", &gr, &r, REDUCTION);
            close(&n, "rmsnorm dx", &gdx, &dx, REDUCTION);
            close(&n, "rmsnorm dw", &gdw, &dw, REDUCTION);
        }
    }
}

#[test]
fn rope_forward_and_inverse() {
    let (heads, hd, rows) = (3, 10, 6);
    let pos = [0u32, 5, 1, 2, 7, 3];
    let (inv_freq, _) = RopeScaling::Default.inv_freq(hd, 10000.0);
    let (cos, sin) = rope_tables::<f64>(8, &inv_freq, 1.0);
    let x = rand_in(rows * heads * hd, 1);
    for inverse in [false, true] {
        let mut want = x.clone();
        rope_apply(&mut want, &pos, heads, hd, &cos, &sin, inverse);
        for b in backends() {
            let mut got = to32(&x);
            b.rope(&mut got, &pos, heads, hd, &to32(&cos), &to32(&sin), inverse);
            close(&b.name(), &format!("rope inverse={inverse}"), &got, &want, ELEMENTWISE);
        }
    }
}

#[test]
fn attention_gqa_packed_forward_backward() {
    // Several packed sequences, one longer than a 64-key chunk; GQA 4:2 and
    // 6:1; head_dim above 64 so threads own several dimensions.
    let cases = [
        (AttnShape { heads: 4, kv_heads: 2, head_dim: 8 }, vec![(0, 3), (3, 1), (4, 70)]),
        (AttnShape { heads: 6, kv_heads: 1, head_dim: 80 }, vec![(0, 5), (5, 9)]),
        (AttnShape { heads: 2, kv_heads: 2, head_dim: 4 }, vec![(0, 1)]),
    ];
    for (ci, (sh, seqs)) in cases.iter().enumerate() {
        let sh = *sh;
        let rows: usize = seqs.iter().map(|s| s.1).sum();
        let (qw, kw) = (sh.heads * sh.head_dim, sh.kv_heads * sh.head_dim);
        let s = ci as u64 * 10;
        let (q, k, v, dout) = (rand_in(rows * qw, s + 1), rand_in(rows * kw, s + 2), rand_in(rows * kw, s + 3), rand_in(rows * qw, s + 4));
        let (mut o, mut l) = (vec![0.0; rows * qw], vec![0.0; rows * sh.heads]);
        let (mut dq, mut dk, mut dv) = (vec![0.0; rows * qw], vec![0.0; rows * kw], vec![0.0; rows * kw]);
        attention_forward(&mut o, &mut l, &q, &k, &v, seqs, sh);
        attention_backward(&mut dq, &mut dk, &mut dv, &dout, &o, &l, &q, &k, &v, seqs, sh);
        for b in backends() {
            let (mut go, mut gl) = (vec![0.0; o.len()], vec![0.0; l.len()]);
            let (mut gdq, mut gdk, mut gdv) = (vec![0.0; dq.len()], vec![0.0; dk.len()], vec![0.0; dv.len()]);
            b.attention(&mut go, &mut gl, &mut gdq, &mut gdk, &mut gdv, &to32(&q), &to32(&k), &to32(&v), &to32(&dout), seqs, sh);
            let n = format!("{} case {ci}", b.name());
            close(&n, "attention out", &go, &o, REDUCTION);
            close(&n, "attention lse", &gl, &l, REDUCTION);
            close(&n, "attention dq", &gdq, &dq, REDUCTION);
            close(&n, "attention dk", &gdk, &dk, REDUCTION);
            close(&n, "attention dv", &gdv, &dv, REDUCTION);
        }
    }
}

#[test]
fn swiglu_forward_backward() {
    let n = 1000;
    let (g, u, da) = (rand_in(n, 1).iter().map(|x| x * 4.0).collect::<Vec<_>>(), rand_in(n, 2), rand_in(n, 3));
    let (mut a, mut dg, mut du) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    swiglu_forward(&mut a, &g, &u);
    swiglu_backward(&mut dg, &mut du, &da, &g, &u);
    for b in backends() {
        let (mut ga, mut gdg, mut gdu) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        b.swiglu(&mut ga, &mut gdg, &mut gdu, &to32(&g), &to32(&u), &to32(&da));
        close(&b.name(), "swiglu a", &ga, &a, ELEMENTWISE);
        close(&b.name(), "swiglu dg", &gdg, &dg, ELEMENTWISE);
        close(&b.name(), "swiglu du", &gdu, &du, ELEMENTWISE);
    }
}

#[test]
fn routed_lora_row_subsets() {
    let dims = LoraDims { total_rows: 9, n_in: 70, n_out: 33, rank: 4 };
    let (x, a, bm, dy) = (rand_in(9 * 70, 1), rand_in(4 * 70, 2), rand_in(33 * 4, 3), rand_in(9 * 33, 4));
    let (y0, dx0, da0, db0) = (rand_in(9 * 33, 5), rand_in(9 * 70, 6), rand_in(4 * 70, 7), rand_in(33 * 4, 8));
    let scale = 1.5;
    for rows in [vec![0u32, 2, 3, 8], (0..9).collect(), vec![5], vec![]] {
        let (mut y, mut uu, mut dx, mut da, mut db) = (y0.clone(), vec![], dx0.clone(), da0.clone(), db0.clone());
        let mut s = LoraScratch::default();
        lora_forward(&mut y, &mut uu, &x, &a, &bm, &rows, scale, dims, &mut s);
        lora_backward(&mut dx, &mut da, &mut db, &dy, &x, &uu, &a, &bm, &rows, scale, dims, &mut s);
        for b in backends() {
            let (mut gy, mut gu, mut gdx, mut gda, mut gdb) = (to32(&y0), vec![], to32(&dx0), to32(&da0), to32(&db0));
            b.lora(&mut gy, &mut gu, &mut gdx, &mut gda, &mut gdb, &to32(&x), &to32(&a), &to32(&bm), &to32(&dy), &rows, scale as f32, dims);
            let n = format!("{} rows {rows:?}", b.name());
            close(&n, "lora y", &gy, &y, REDUCTION);
            close(&n, "lora u", &gu, &uu, REDUCTION);
            close(&n, "lora dx", &gdx, &dx, REDUCTION);
            close(&n, "lora dA", &gda, &da, REDUCTION);
            close(&n, "lora dB", &gdb, &db, REDUCTION);
        }
    }
}

#[test]
fn logprob_forward_backward() {
    let (rows, vocab) = (6, 300);
    let z: Vec<f64> = rand_in(rows * vocab, 1).iter().map(|x| x * 8.0).collect();
    let targets = [3, -1, 0, 299, 150, 7];
    let dlogp = [0.5, 2.0, -1.0, 1.5, 0.0, -0.25];
    let (mut lp, mut l) = (vec![0.0; rows], vec![0.0; rows]);
    logprob_forward(&mut lp, &mut l, &z, &targets, vocab);
    let mut dz = z.clone();
    logprob_backward(&mut dz, &l, &dlogp, &targets, vocab);
    for b in backends() {
        let (mut glp, mut gl, mut gdz) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows * vocab]);
        b.logprob(&mut glp, &mut gl, &mut gdz, &to32(&z), &targets, &to32(&dlogp), vocab);
        close(&b.name(), "logp", &glp, &lp, REDUCTION);
        close(&b.name(), "lse", &gl, &l, REDUCTION);
        close(&b.name(), "dlogits", &gdz, &dz, ELEMENTWISE);
    }
}

#[test]
fn adamw_with_clipping_three_steps() {
    let sizes = [300usize, 17];
    for max_norm in [0.0, 0.5] {
        let opt = AdamW { lr: 0.01, weight_decay: 0.1, max_grad_norm: max_norm, ..Default::default() };
        let p0: Vec<Vec<f64>> = sizes.iter().enumerate().map(|(i, &n)| rand_in(n, i as u64 + 1)).collect();
        let z: Vec<Vec<f64>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
        let grads: Vec<Vec<Vec<f64>>> = (0..3).map(|s| sizes.iter().enumerate().map(|(i, &n)| rand_in(n, 100 + s * 10 + i as u64)).collect()).collect();
        let (mut p, mut m, mut v) = (p0.clone(), z.clone(), z.clone());
        let norm = cpu_adamw(&opt, &mut p, &mut m, &mut v, &grads);
        let to32v = |x: &Vec<Vec<f64>>| x.iter().map(|t| to32(t)).collect::<Vec<_>>();
        for b in backends() {
            let (mut gp, mut gm, mut gv) = (to32v(&p0), to32v(&z), to32v(&z));
            let gnorm = b.adamw(&opt, &mut gp, &mut gm, &mut gv, &grads.iter().map(&to32v).collect::<Vec<_>>());
            let n = format!("{} max_norm={max_norm}", b.name());
            assert!((gnorm - norm).abs() <= REDUCTION * norm, "{n}: grad norm {gnorm} vs {norm}");
            for i in 0..sizes.len() {
                close(&n, "adamw param", &gp[i], &p[i], ELEMENTWISE);
                close(&n, "adamw m", &gm[i], &m[i], ELEMENTWISE);
                close(&n, "adamw v", &gv[i], &v[i], ELEMENTWISE);
            }
        }
    }
}

#[test]
fn decode_kv_append_and_single_token_attention() {
    let sh = AttnShape { heads: 4, kv_heads: 2, head_dim: 16 };
    let (qw, kw) = (sh.heads * sh.head_dim, sh.kv_heads * sh.head_dim);
    let pos = [0u32, 6, 70];
    let max_len = 80;
    let ks: Vec<Vec<f64>> = (0..3).map(|s| rand_in(max_len * kw, 10 + s)).collect();
    let vs: Vec<Vec<f64>> = (0..3).map(|s| rand_in(max_len * kw, 20 + s)).collect();
    let q = rand_in(3 * qw, 1);
    let mut want = vec![0.0; 3 * qw];
    cpu_decode(&mut want, &ks, &vs, &q, &pos, sh);
    for b in backends() {
        let mut got = vec![0.0; 3 * qw];
        let k32: Vec<_> = ks.iter().map(|x| to32(x)).collect();
        let v32: Vec<_> = vs.iter().map(|x| to32(x)).collect();
        b.decode(&mut got, &k32, &v32, &to32(&q), &pos, max_len, sh);
        close(&b.name(), "decode attention", &got, &want, REDUCTION);
    }
}

#[test]
fn lazy_update_leaves_untouched_group_bit_identical_on_device() {
    // A group with no routed token is simply not stepped: its device buffers
    // must come back bit for bit after another group's step in the same batch.
    if std::env::var("DART_SKIP_WGPU").is_ok_and(|s| s == "1") {
        return;
    }
    let bs = backends();
    let gpu = match GPU.get() {
        Some(Some(g)) => g,
        _ => unreachable!("backends() panics without an adapter"),
    };
    let _ = bs;
    let c = &gpu.0.ctx;
    let idle: Vec<f32> = to32(&rand_in(100, 1));
    let (ip, im, iv) = (c.upload(&idle), c.upload(&idle), c.upload(&idle));
    let (p, g, m, v) = (c.upload(&idle), c.upload(&idle), c.zeros(100), c.zeros(100));
    let opt = AdamW { lr: 0.1, max_grad_norm: 1.0, ..Default::default() };
    let acc = gpu.0.grad_norm_and_clip(&[&g], opt.max_grad_norm);
    gpu.0.adamw_step(&opt, 1, &[&p], &[&g], &[&m], &[&v], &acc);
    let r = c.download_many(&[&ip, &im, &iv, &p]);
    for t in &r[..3] {
        assert!(t.iter().zip(&idle).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    assert!(r[3].iter().zip(&idle).any(|(a, b)| a != b), "the stepped group moved");
}

#[test]
fn wgpu_request_names_adapters_when_pin_matches_nothing() {
    match GpuContext::new(Some("no-such-adapter-xyz"), false) {
        Ok(_) => panic!("a pin that matches nothing must fail"),
        Err(e) => {
            let msg = e.to_string();
            assert_eq!(e.code(), "DART_INVALID_ARGUMENT");
            assert!(msg.contains("adapters found") && msg.contains("mesa-vulkan-drivers"), "{msg}");
        }
    }
    let kind: dart_core::backend::wgpu::BackendKind = "auto".parse().unwrap();
    assert_eq!(kind, dart_core::backend::wgpu::BackendKind::Auto);
    assert!("tpu".parse::<dart_core::backend::wgpu::BackendKind>().is_err());
}

#[test]
fn auto_selection_takes_a_real_gpu_or_the_pin_else_cpu() {
    use dart_core::backend::wgpu::{list_adapters, select_backend, BackendKind};
    if std::env::var("DART_SKIP_WGPU").is_ok_and(|s| s == "1") {
        return;
    }
    assert!(select_backend(BackendKind::Cpu, None).unwrap().is_none());
    let found = list_adapters();
    if std::env::var(dart_core::backend::wgpu::ADAPTER_ENV).is_err() {
        let auto = select_backend(BackendKind::Auto, None).unwrap();
        assert_eq!(auto.is_some(), found.iter().any(|a| a.is_gpu), "auto picks wgpu exactly when a real GPU is present: {found:?}");
    }
    // An explicit pin is honoured by auto even for a CPU adapter (lavapipe).
    let first = &found.first().expect("an adapter (backends() would have failed)").name;
    let pinned = select_backend(BackendKind::Auto, Some(first)).unwrap().expect("pinned adapter");
    assert_eq!(&pinned.adapter.name, first);
}
