//! The model, written once against `Backend`: the layer sequence of forward
//! (keeping what backward needs), backward (routed LoRA gradients, and the
//! base gradients when the base is trained) and the AdamW step with the lazy
//! update. The decode forward of generation is in `crate::decode`. Every tensor
//! (weights, activations, index tensors, adapter parameters and gradients,
//! optimizer moments) lives in backend buffers that are reused across steps.
//!
//! The LM head runs on the positions whose logprob is wanted
//! (`Packed::head_rows`: all with a target unless the caller narrowed them),
//! gathered into [rows, d], and in blocks of those rows when their logits
//! ([tokens, vocab]) would exceed what one backend tensor may hold
//! (`Backend::max_rows_per_block`, the binding limit on wgpu): forward
//! computes each block's logits, logprobs and logsumexp, then the next
//! block's in the same buffer; backward recomputes each block's logits and
//! adds its contribution to dL/dx and the LM head gradient. When every row
//! fits (always on cpu), it is one block and the logits of forward are kept
//! for backward.
use crate::adapter::AdapterOf;
use crate::backend::{Backend, LoraDims, LoraScratch};
use crate::batch::Packed;
#[cfg(test)]
use crate::decode::DecodeBatch;
use crate::config::ModelConfig;

use crate::float::Float;
use crate::ops::attention::AttnShape;
use crate::ops::rope::rope_tables;
use crate::optim::AdamW;
use crate::weights::{Layer, Linear, Proj, WeightsOf};

/// AdamW moments of a group (the step count stays on the host).
pub(crate) struct Moments<S> {
    pub m: Vec<S>,
    pub v: Vec<S>,
}

/// Activations of one layer kept for backward.
struct LayerActs<B: Backend> {
    x_in: B::Buf,
    xn1: B::Buf,
    rstd1: B::Buf,
    q: B::Buf,
    k: B::Buf,
    v: B::Buf,
    /// Qwen3: q and k before their per-head RMSNorm, and its 1/rms.
    q_raw: B::Buf,
    k_raw: B::Buf,
    rstd_q: B::Buf,
    rstd_k: B::Buf,
    attn: B::Buf,
    lse: B::Buf,
    x_mid: B::Buf,
    xn2: B::Buf,
    rstd2: B::Buf,
    gate: B::Buf,
    up: B::Buf,
    act: B::Buf,
    /// x A^T per projection and slot.
    lora_u: Vec<Vec<B::Buf>>,
}

impl<B: Backend> LayerActs<B> {
    fn new(b: &B) -> Self {
        let e = || b.empty();
        LayerActs {
            x_in: e(),
            xn1: e(),
            rstd1: e(),
            q: e(),
            k: e(),
            v: e(),
            q_raw: e(),
            k_raw: e(),
            rstd_q: e(),
            rstd_k: e(),
            attn: e(),
            lse: e(),
            x_mid: e(),
            xn2: e(),
            rstd2: e(),
            gate: e(),
            up: e(),
            act: e(),
            lora_u: (0..7).map(|_| Vec::new()).collect(),
        }
    }
}

/// The batch of the last forward, on the backend (rewritten in place by
/// each forward).
pub(crate) struct BatchBufs<B: Backend> {
    tokens: B::I32,
    pos: B::U32,
    seqs: B::Seqs,
    groups: Vec<B::U32>,
    n: usize,
    /// The positions the LM head runs on (`Packed::head_rows`), and their targets.
    head_rows: B::U32,
    head_targets: B::I32,
    /// (first row, rows) of each LM head block, over the head rows (one
    /// block when all fit, none when there are no head rows).
    blocks: Vec<(usize, usize)>,
    /// The targets of each LM head block when there are several.
    block_targets: Vec<B::I32>,
}

impl<B: Backend> BatchBufs<B> {
    fn new(b: &B) -> Self {
        BatchBufs {
            tokens: b.new_i32(&[]),
            pos: b.new_u32(&[]),
            seqs: b.new_seqs(&[], 0),
            head_rows: b.new_u32(&[]),
            head_targets: b.new_i32(&[]),
            groups: Vec::new(),
            n: 0,
            blocks: Vec::new(),
            block_targets: Vec::new(),
        }
    }
}

/// (first row, rows) of blocks of at most `per` of `n` rows (one block when
/// they all fit; none when n = 0).
pub(crate) fn row_blocks(n: usize, per: usize) -> Vec<(usize, usize)> {
    let per = per.max(1);
    (0..n).step_by(per).map(|r0| (r0, per.min(n - r0))).collect()
}

/// Everything forward leaves for backward, and backward's scratch.
struct Cache<B: Backend> {
    layers: Vec<LayerActs<B>>,
    batch: Option<BatchBufs<B>>,
    x_last: B::Buf,
    xf: B::Buf,
    rstd_f: B::Buf,
    /// The logits of all head rows, or of one LM head block.
    logits: B::Buf,
    /// Per position: logp (0 off the head rows) and dL/dlogp.
    logp: B::Buf,
    dlogp: B::Buf,
    /// Per head row: xf, its gradient, log-sum-exp, logp and dL/dlogp.
    xh: B::Buf,
    dxh: B::Buf,
    lse: B::Buf,
    logp_head: B::Buf,
    dlogp_head: B::Buf,
    /// One LM head block's rows of xh, lse and logp (dlogp in backward).
    xf_blk: B::Buf,
    lse_blk: B::Buf,
    logp_blk: B::Buf,
    x: B::Buf,
    tmp: B::Buf,
    d_a: B::Buf,
    d_b: B::Buf,
    d_c: B::Buf,
    d_q: B::Buf,
    d_k: B::Buf,
    d_v: B::Buf,
    /// Qwen3: dL/d(q, k) before the per-head RMSNorm.
    d_q_raw: B::Buf,
    d_k_raw: B::Buf,
    lora: LoraScratch<B::Buf>,
}

impl<B: Backend> Cache<B> {
    fn new(b: &B) -> Self {
        let e = || b.empty();
        Cache {
            layers: Vec::new(),
            batch: None,
            x_last: e(),
            xf: e(),
            rstd_f: e(),
            logits: e(),
            logp: e(),
            dlogp: e(),
            xh: e(),
            dxh: e(),
            lse: e(),
            logp_head: e(),
            dlogp_head: e(),
            xf_blk: e(),
            lse_blk: e(),
            logp_blk: e(),
            x: e(),
            tmp: e(),
            d_a: e(),
            d_b: e(),
            d_c: e(),
            d_q: e(),
            d_k: e(),
            d_v: e(),
            d_q_raw: e(),
            d_k_raw: e(),
            lora: LoraScratch::new(b),
        }
    }
}

/// RoPE tables for positions 0..n.
pub(crate) struct Rope<B: Backend> {
    n: usize,
    pub cos: B::Buf,
    pub sin: B::Buf,
}

impl<B: Backend> Rope<B> {
    pub fn new(b: &B) -> Self {
        Rope { n: 0, cos: b.empty(), sin: b.empty() }
    }
    pub fn ensure(&mut self, b: &B, cfg: &ModelConfig, len: usize) {
        if self.n < len {
            let n = len.next_power_of_two().max(64);
            let (inv_freq, scale) = cfg.rope_inv_freq();
            let (c, s) = rope_tables::<B::F>(n, &inv_freq, scale);
            self.cos = b.upload_vec(c);
            self.sin = b.upload_vec(s);
            self.n = n;
        }
    }
}

pub(crate) struct Model<B: Backend> {
    pub b: B,
    pub cfg: ModelConfig,
    pub w: WeightsOf<B::Buf>,
    pub base_grad: Option<WeightsOf<B::Buf>>,
    pub base_opt: Option<Moments<B::Buf>>,
    pub adapters: Vec<AdapterOf<B::Buf>>,
    pub opt: Vec<Moments<B::Buf>>,
    rope: Rope<B>,
    cache: Cache<B>,
}

pub(crate) fn attn_shape(cfg: &ModelConfig) -> AttnShape {
    AttnShape { heads: cfg.num_attention_heads, kv_heads: cfg.kv_heads(), head_dim: cfg.head_dim() }
}

/// One routed projection over `n` rows: the base linear, then each slot's
/// LoRA delta on the rows routed to it (`us[slot]` keeps x A^T for backward).
#[allow(clippy::too_many_arguments)]
pub(crate) fn routed_projection<B: Backend>(
    b: &B,
    cfg: &ModelConfig,
    adapters: &[AdapterOf<B::Buf>],
    groups: &[B::U32],
    n: usize,
    y: &mut B::Buf,
    us: &mut Vec<B::Buf>,
    x: &B::Buf,
    layer: usize,
    pr: Proj,
    lin: &Linear<B::Buf>,
    scratch: &mut LoraScratch<B::Buf>,
) {
    let (n_in, n_out) = pr.dims(cfg);
    b.zeros(y, n * n_out);
    b.linear_forward(y, x, &lin.w, lin.b.as_ref(), n, n_in, n_out);
    while us.len() < adapters.len() {
        us.push(b.empty());
    }
    us.truncate(adapters.len());
    for (slot, a) in adapters.iter().enumerate() {
        if let Some(p) = a.pair(layer, pr) {
            let dims = LoraDims { total_rows: n, n_in, n_out, rank: a.spec.rank };
            b.lora_forward(y, &mut us[slot], x, &p.a, &p.b, &groups[slot], B::F::from_f64(a.spec.scale()), dims, scratch);
        }
    }
}

/// Qwen3's RMSNorm over each head of `x` [rows, heads*head_dim]: afterwards
/// `x` holds the normalised values and `raw` the input (swapped, so no
/// copy), `rstd` the 1/rms of each (row, head).
#[allow(clippy::too_many_arguments)]
pub(crate) fn head_norm<B: Backend>(b: &B, x: &mut B::Buf, raw: &mut B::Buf, rstd: &mut B::Buf, w: &B::Buf, rows: usize, heads: usize, hd: usize, eps: f64) {
    std::mem::swap(x, raw);
    b.zeros(x, rows * heads * hd);
    b.zeros(rstd, rows * heads);
    b.rmsnorm_forward(x, rstd, raw, w, hd, eps);
}

/// The base-gradient projection i of a layer, when the base is trained.
fn glin<'a, S>(gl: &'a mut Option<&mut Layer<S>>, i: usize) -> Option<&'a mut Linear<S>> {
    gl.as_deref_mut().map(|g| &mut g.proj[i])
}

impl<B: Backend> Model<B> {
    pub fn new(b: B, cfg: ModelConfig, w: WeightsOf<B::Buf>) -> Self {
        let rope = Rope::new(&b);
        let cache = Cache::new(&b);
        Model { b, cfg, w, base_grad: None, base_opt: None, adapters: Vec::new(), opt: Vec::new(), rope, cache }
    }

    pub fn push_adapter(&mut self, a: AdapterOf<B::Buf>) {
        let b = &self.b;
        let zeros_like = |x: &B::Buf| b.zeros_like(x);
        let m = a.params().into_iter().map(zeros_like).collect();
        let v = a.params().into_iter().map(zeros_like).collect();
        self.adapters.push(a);
        self.opt.push(Moments { m, v });
    }

    pub fn set_train_base(&mut self, on: bool) {
        let b = &self.b;
        let zeros_like = |x: &B::Buf| b.zeros_like(x);
        if on && self.base_grad.is_none() {
            self.base_grad = Some(self.w.map(zeros_like));
            if self.base_opt.is_none() {
                let f = self.w.fields();
                self.base_opt = Some(Moments { m: f.iter().map(|x| zeros_like(x)).collect(), v: f.iter().map(|x| zeros_like(x)).collect() });
            }
        } else if !on {
            self.base_grad = None;
        }
    }

    pub fn zero_grad(&mut self) {
        let b = &self.b;
        for a in &mut self.adapters {
            for p in &mut a.pairs {
                b.zero(&mut p.ga);
                b.zero(&mut p.gb);
            }
        }
        if let Some(g) = &mut self.base_grad {
            for f in g.fields_mut() {
                b.zero(f);
            }
        }
    }

    // ---- forward --------------------------------------------------------

    /// Logprob of each position's target (0 where there is none), read back.
    pub fn forward(&mut self, tokens: &[i32], packed: &Packed) -> Vec<B::F> {
        let Model { b, cfg, w, adapters, rope, cache: c, .. } = self;
        let n = packed.len();
        rope.ensure(b, cfg, packed.max_len);
        let (d, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let hd = cfg.head_dim();
        let sh = attn_shape(cfg);
        let (qw, kw) = (sh.heads * hd, sh.kv_heads * hd);
        // The index tensors, rewritten in place (before any kernel of this
        // call is queued).
        let mut batch = c.batch.take().unwrap_or_else(|| BatchBufs::new(b));
        b.set_i32(&mut batch.tokens, tokens);
        b.set_u32(&mut batch.pos, &packed.pos);
        let head_targets: Vec<i32> = packed.head_rows.iter().map(|&p| packed.targets[p as usize]).collect();
        b.set_u32(&mut batch.head_rows, &packed.head_rows);
        b.set_i32(&mut batch.head_targets, &head_targets);
        b.set_seqs(&mut batch.seqs, &packed.seqs, n);
        batch.groups.resize_with(packed.groups.len(), || b.new_u32(&[]));
        for (g, x) in batch.groups.iter_mut().zip(&packed.groups) {
            b.set_u32(g, x);
        }
        batch.n = n;
        let head = head_targets.len();
        batch.blocks = row_blocks(head, b.max_rows_per_block(v));
        if batch.blocks.len() > 1 {
            batch.block_targets.resize_with(batch.blocks.len(), || b.new_i32(&[]));
            for (t, &(r0, r)) in batch.block_targets.iter_mut().zip(&batch.blocks) {
                b.set_i32(t, &head_targets[r0..r0 + r]);
            }
        }
        while c.layers.len() < cfg.num_hidden_layers {
            c.layers.push(LayerActs::new(b));
        }
        b.zeros(&mut c.x, n * d);
        b.embedding_forward(&mut c.x, &w.embed, &batch.tokens, d);
        let groups = &batch.groups;
        let s = &mut c.lora;
        for (l, layer) in w.layers.iter().enumerate() {
            let a = &mut c.layers[l];
            let project = |y: &mut B::Buf, us: &mut Vec<B::Buf>, x: &B::Buf, pr: Proj, s: &mut LoraScratch<B::Buf>| {
                routed_projection(b, cfg, adapters, groups, n, y, us, x, l, pr, &layer.proj[pr as usize], s)
            };
            b.copy(&mut a.x_in, &c.x);
            b.zeros(&mut a.xn1, n * d);
            b.zeros(&mut a.rstd1, n);
            b.rmsnorm_forward(&mut a.xn1, &mut a.rstd1, &a.x_in, &layer.input_norm, d, cfg.rms_norm_eps);
            project(&mut a.q, &mut a.lora_u[0], &a.xn1, Proj::Q, s);
            project(&mut a.k, &mut a.lora_u[1], &a.xn1, Proj::K, s);
            project(&mut a.v, &mut a.lora_u[2], &a.xn1, Proj::V, s);
            if let Some((qn, kn)) = &layer.qk_norm {
                head_norm(b, &mut a.q, &mut a.q_raw, &mut a.rstd_q, qn, n, sh.heads, hd, cfg.rms_norm_eps);
                head_norm(b, &mut a.k, &mut a.k_raw, &mut a.rstd_k, kn, n, sh.kv_heads, hd, cfg.rms_norm_eps);
            }
            b.rope_apply(&mut a.q, &batch.pos, sh.heads, hd, &rope.cos, &rope.sin, false);
            b.rope_apply(&mut a.k, &batch.pos, sh.kv_heads, hd, &rope.cos, &rope.sin, false);
            b.zeros(&mut a.attn, n * qw);
            b.zeros(&mut a.lse, n * sh.heads);
            b.attention_forward(&mut a.attn, &mut a.lse, &a.q, &a.k, &a.v, &batch.seqs, sh);
            debug_assert_eq!(b.len(&a.k), n * kw);
            project(&mut c.tmp, &mut a.lora_u[3], &a.attn, Proj::O, s);
            b.add(&mut a.x_mid, &a.x_in, &c.tmp);
            b.zeros(&mut a.xn2, n * d);
            b.zeros(&mut a.rstd2, n);
            b.rmsnorm_forward(&mut a.xn2, &mut a.rstd2, &a.x_mid, &layer.post_norm, d, cfg.rms_norm_eps);
            project(&mut a.gate, &mut a.lora_u[4], &a.xn2, Proj::Gate, s);
            project(&mut a.up, &mut a.lora_u[5], &a.xn2, Proj::Up, s);
            b.zeros(&mut a.act, n * f);
            b.swiglu_forward(&mut a.act, &a.gate, &a.up);
            project(&mut c.tmp, &mut a.lora_u[6], &a.act, Proj::Down, s);
            b.add(&mut c.x, &a.x_mid, &c.tmp);
        }
        b.copy(&mut c.x_last, &c.x);
        b.zeros(&mut c.xf, n * d);
        b.zeros(&mut c.rstd_f, n);
        b.rmsnorm_forward(&mut c.xf, &mut c.rstd_f, &c.x_last, &w.norm, d, cfg.rms_norm_eps);
        // The LM head on the head rows only (gathered), its logp placed back per position.
        b.zeros(&mut c.logp, n);
        b.zeros(&mut c.lse, head);
        b.zeros(&mut c.logp_head, head);
        if head > 0 {
            b.gather_rows(&mut c.xh, &c.xf, &batch.head_rows, d);
        }
        if batch.blocks.len() == 1 {
            b.zeros(&mut c.logits, head * v);
            b.matmul(&mut c.logits, &c.xh, w.head(), head, v, d, false, true, false);
            b.logprob_forward(&mut c.logp_head, &mut c.lse, &c.logits, &batch.head_targets, v);
        } else {
            // One block of rows at a time, in one logits buffer.
            for (&(r0, r), tg) in batch.blocks.iter().zip(&batch.block_targets) {
                b.slice_rows(&mut c.xf_blk, &c.xh, r0, r, d);
                b.zeros(&mut c.logits, r * v);
                b.matmul(&mut c.logits, &c.xf_blk, w.head(), r, v, d, false, true, false);
                b.zeros(&mut c.lse_blk, r);
                b.zeros(&mut c.logp_blk, r);
                b.logprob_forward(&mut c.logp_blk, &mut c.lse_blk, &c.logits, tg, v);
                b.place_rows(&mut c.logp_head, r0, &c.logp_blk, 1);
                b.place_rows(&mut c.lse, r0, &c.lse_blk, 1);
            }
        }
        if head > 0 {
            b.scatter_add_rows(&mut c.logp, &c.logp_head, &batch.head_rows, 1, B::F::from_f64(1.0));
        }
        c.batch = Some(batch);
        b.download(&c.logp)
    }

    // ---- backward -------------------------------------------------------

    /// Accumulates the gradients of sum_p g_pos[p] * logp[p] (position
    /// layout) for the last forward. Returns whether the adapter gradients
    /// are finite where the backend checks without a read-back.
    pub fn backward(&mut self, g_pos: &[B::F]) -> Option<bool> {
        let Model { b, cfg, w, adapters, base_grad, rope, cache: c, .. } = self;
        let batch = c.batch.as_ref().expect("forward ran");
        let n = batch.n;
        let (d, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let hd = cfg.head_dim();
        let sh = attn_shape(cfg);
        let (qw, kw) = (sh.heads * hd, sh.kv_heads * hd);
        b.write(&mut c.dlogp, g_pos);
        let mut bg = base_grad.as_mut();
        // On the head rows: dxh = dlogits W_head ; dW_head += dlogits^T xh;
        // dxf is dxh placed back on those rows, 0 elsewhere.
        let head = b.u32_len(&batch.head_rows);
        b.zeros(&mut c.tmp, n * d);
        b.zeros(&mut c.dxh, head * d);
        if head > 0 {
            b.gather_rows(&mut c.dlogp_head, &c.dlogp, &batch.head_rows, 1);
        }
        if batch.blocks.len() == 1 {
            b.logprob_backward(&mut c.logits, &c.lse, &c.dlogp_head, &batch.head_targets, v);
            b.matmul(&mut c.dxh, &c.logits, w.head(), head, d, v, false, false, false);
            if let Some(g) = bg.as_deref_mut() {
                let dh = if cfg.tie_word_embeddings { &mut g.embed } else { g.lm_head.as_mut().expect("untied head") };
                b.matmul(dh, &c.logits, &c.xh, v, d, head, true, false, true);
            }
        } else {
            // Per block: recompute its logits, turn them into dlogits, add
            // its rows of dxh and its share of dW_head.
            for (&(r0, r), tg) in batch.blocks.iter().zip(&batch.block_targets) {
                b.slice_rows(&mut c.xf_blk, &c.xh, r0, r, d);
                b.slice_rows(&mut c.lse_blk, &c.lse, r0, r, 1);
                b.slice_rows(&mut c.logp_blk, &c.dlogp_head, r0, r, 1);
                b.zeros(&mut c.logits, r * v);
                b.matmul(&mut c.logits, &c.xf_blk, w.head(), r, v, d, false, true, false);
                b.logprob_backward(&mut c.logits, &c.lse_blk, &c.logp_blk, tg, v);
                b.zeros(&mut c.d_a, r * d);
                b.matmul(&mut c.d_a, &c.logits, w.head(), r, d, v, false, false, false);
                b.place_rows(&mut c.dxh, r0, &c.d_a, d);
                if let Some(g) = bg.as_deref_mut() {
                    let dh = if cfg.tie_word_embeddings { &mut g.embed } else { g.lm_head.as_mut().expect("untied head") };
                    b.matmul(dh, &c.logits, &c.xf_blk, v, d, r, true, false, true);
                }
            }
        }
        if head > 0 {
            b.scatter_add_rows(&mut c.tmp, &c.dxh, &batch.head_rows, d, B::F::from_f64(1.0));
        }
        b.zeros(&mut c.x, n * d);
        b.rmsnorm_backward(&mut c.x, bg.as_deref_mut().map(|g| &mut g.norm), &c.tmp, &c.x_last, &w.norm, &c.rstd_f, d);

        let groups = &batch.groups;
        // Backward of one routed projection: dx (+)= dy W + routed LoRA terms.
        #[allow(clippy::too_many_arguments)]
        let project_back = |dx: &mut B::Buf,
                            acc: bool,
                            dy: &B::Buf,
                            x: &B::Buf,
                            us: &[B::Buf],
                            layer: usize,
                            pr: Proj,
                            lin: &Linear<B::Buf>,
                            glin: Option<&mut Linear<B::Buf>>,
                            adapters: &mut Vec<AdapterOf<B::Buf>>,
                            scratch: &mut LoraScratch<B::Buf>| {
            let (n_in, n_out) = pr.dims(cfg);
            if !acc {
                b.zeros(dx, n * n_in);
            }
            let (dw, db) = match glin {
                Some(g) => (Some(&mut g.w), g.b.as_mut()),
                None => (None, None),
            };
            b.linear_backward(dx, acc, dw, db, dy, x, &lin.w, n, n_in, n_out);
            for (slot, a) in adapters.iter_mut().enumerate() {
                let (rank, scale) = (a.spec.rank, B::F::from_f64(a.spec.scale()));
                if let Some(p) = a.pair_mut(layer, pr) {
                    let dims = LoraDims { total_rows: n, n_in, n_out, rank };
                    b.lora_backward(dx, &mut p.ga, &mut p.gb, dy, x, &us[slot], &p.a, &p.b, &groups[slot], scale, dims, scratch);
                }
            }
        };
        let s = &mut c.lora;
        for l in (0..cfg.num_hidden_layers).rev() {
            let layer = &w.layers[l];
            let a = &c.layers[l];
            let mut gl = bg.as_deref_mut().map(|g| &mut g.layers[l]);
            // MLP: c.x holds d(x_out).
            project_back(&mut c.d_a, false, &c.x, &a.act, &a.lora_u[6], l, Proj::Down, &layer.proj[6], glin(&mut gl, 6), adapters, s);
            b.zeros(&mut c.d_b, n * f);
            b.zeros(&mut c.d_c, n * f);
            b.swiglu_backward(&mut c.d_b, &mut c.d_c, &c.d_a, &a.gate, &a.up);
            project_back(&mut c.tmp, false, &c.d_b, &a.xn2, &a.lora_u[4], l, Proj::Gate, &layer.proj[4], glin(&mut gl, 4), adapters, s);
            project_back(&mut c.tmp, true, &c.d_c, &a.xn2, &a.lora_u[5], l, Proj::Up, &layer.proj[5], glin(&mut gl, 5), adapters, s);
            b.zeros(&mut c.d_a, n * d);
            b.rmsnorm_backward(&mut c.d_a, gl.as_deref_mut().map(|g| &mut g.post_norm), &c.tmp, &a.x_mid, &layer.post_norm, &a.rstd2, d);
            b.add_assign(&mut c.x, &c.d_a);
            // Attention: c.x holds d(x_mid).
            project_back(&mut c.d_a, false, &c.x, &a.attn, &a.lora_u[3], l, Proj::O, &layer.proj[3], glin(&mut gl, 3), adapters, s);
            b.zeros(&mut c.d_q, n * qw);
            b.zeros(&mut c.d_k, n * kw);
            b.zeros(&mut c.d_v, n * kw);
            b.attention_backward(&mut c.d_q, &mut c.d_k, &mut c.d_v, &c.d_a, &a.attn, &a.lse, &a.q, &a.k, &a.v, &batch.seqs, sh);
            b.rope_apply(&mut c.d_q, &batch.pos, sh.heads, hd, &rope.cos, &rope.sin, true);
            b.rope_apply(&mut c.d_k, &batch.pos, sh.kv_heads, hd, &rope.cos, &rope.sin, true);
            if let Some((qn, kn)) = &layer.qk_norm {
                // Through the per-head RMSNorm: d_q, d_k become dL/d(q, k) of the projections.
                let (gq, gk) = match gl.as_deref_mut().and_then(|g| g.qk_norm.as_mut()) {
                    Some((gq, gk)) => (Some(gq), Some(gk)),
                    None => (None, None),
                };
                b.zeros(&mut c.d_q_raw, n * qw);
                b.rmsnorm_backward(&mut c.d_q_raw, gq, &c.d_q, &a.q_raw, qn, &a.rstd_q, hd);
                b.zeros(&mut c.d_k_raw, n * kw);
                b.rmsnorm_backward(&mut c.d_k_raw, gk, &c.d_k, &a.k_raw, kn, &a.rstd_k, hd);
                std::mem::swap(&mut c.d_q, &mut c.d_q_raw);
                std::mem::swap(&mut c.d_k, &mut c.d_k_raw);
            }
            project_back(&mut c.tmp, false, &c.d_q, &a.xn1, &a.lora_u[0], l, Proj::Q, &layer.proj[0], glin(&mut gl, 0), adapters, s);
            project_back(&mut c.tmp, true, &c.d_k, &a.xn1, &a.lora_u[1], l, Proj::K, &layer.proj[1], glin(&mut gl, 1), adapters, s);
            project_back(&mut c.tmp, true, &c.d_v, &a.xn1, &a.lora_u[2], l, Proj::V, &layer.proj[2], glin(&mut gl, 2), adapters, s);
            b.zeros(&mut c.d_a, n * d);
            b.rmsnorm_backward(&mut c.d_a, gl.as_deref_mut().map(|g| &mut g.input_norm), &c.tmp, &a.x_in, &layer.input_norm, &a.rstd1, d);
            b.add_assign(&mut c.x, &c.d_a);
        }
        if let Some(g) = bg {
            b.embedding_backward(&mut g.embed, &c.x, &batch.tokens, d);
        }
        let grads: Vec<&B::Buf> = adapters.iter().flat_map(|a| a.grads()).collect();
        b.all_finite(&grads)
    }

    // ---- step -----------------------------------------------------------

    /// Norms of the selected slots' gradients (and the base's), read back in
    /// one go, with each group's clip state.
    pub fn grad_norms(&self, slots: &[usize], max_norm: f64) -> (Vec<f64>, Option<f64>, Vec<B::Clip>, Option<B::Clip>) {
        let b = &self.b;
        let clips: Vec<B::Clip> = slots.iter().map(|&i| b.grad_norm(&self.adapters[i].grads(), max_norm)).collect();
        let base = self.base_grad.as_ref().map(|g| b.grad_norm(&g.fields(), max_norm));
        let mut all: Vec<&B::Clip> = clips.iter().collect();
        all.extend(base.as_ref());
        let mut norms = b.read_norms(&all);
        let base_norm = base.as_ref().map(|_| norms.pop().expect("base norm"));
        (norms, base_norm, clips, base)
    }

    /// AdamW on one slot (step = its count after increment); zeroes its grads.
    pub fn step_slot(&mut self, opt: &AdamW, slot: usize, step: u64, clip: &B::Clip) {
        let b = &self.b;
        let a = &mut self.adapters[slot];
        let mut params = Vec::with_capacity(2 * a.pairs.len());
        let mut grads = Vec::with_capacity(2 * a.pairs.len());
        for p in a.pairs.iter_mut() {
            params.push(&mut p.a);
            grads.push(&p.ga);
            params.push(&mut p.b);
            grads.push(&p.gb);
        }
        let st = &mut self.opt[slot];
        let mut m: Vec<&mut B::Buf> = st.m.iter_mut().collect();
        let mut v: Vec<&mut B::Buf> = st.v.iter_mut().collect();
        b.adamw_step(opt, step, &mut params, &grads, &mut m, &mut v, clip);
        for p in a.pairs.iter_mut() {
            b.zero(&mut p.ga);
            b.zero(&mut p.gb);
        }
    }

    /// AdamW on the base model; zeroes its grads.
    pub fn step_base(&mut self, opt: &AdamW, step: u64, clip: &B::Clip) {
        let b = &self.b;
        let (Some(g), Some(st)) = (self.base_grad.as_mut(), self.base_opt.as_mut()) else { return };
        let mut params = self.w.fields_mut();
        let grads = g.fields();
        let mut m: Vec<&mut B::Buf> = st.m.iter_mut().collect();
        let mut v: Vec<&mut B::Buf> = st.v.iter_mut().collect();
        b.adamw_step(opt, step, &mut params, &grads, &mut m, &mut v, clip);
        for f in g.fields_mut() {
            b.zero(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{Adapter, AdapterSpec};
    use crate::backend::cpu::CpuBackend;
    use crate::weights::Weights;

    fn cfg(tie: bool) -> ModelConfig {
        ModelConfig::from_json(&format!(
            r#"{{"model_type":"qwen2","vocab_size":19,"hidden_size":12,"intermediate_size":10,
            "num_hidden_layers":2,"num_attention_heads":3,"num_key_value_heads":1,"rms_norm_eps":1e-6,
            "rope_theta":10000,"tie_word_embeddings":{tie},"attention_bias":true}}"#
        ))
        .unwrap()
    }

    /// An f64 cpu model with one adapter and the base trained; the LM head
    /// in blocks of `rows` token rows (None: one block).
    fn model(tie: bool, rows: Option<usize>) -> Model<CpuBackend<f64>> {
        let c = cfg(tie);
        let b = rows.map_or_else(CpuBackend::default, CpuBackend::with_max_rows_per_block);
        let mut m = Model::new(b, c.clone(), Weights::<f64>::random(&c, 3));
        let mut spec = AdapterSpec::new(2, 4.0, &["q_proj", "v_proj", "down_proj"], 11).unwrap();
        spec.b_init_std = 0.3;
        m.push_adapter(Adapter::new(&c, spec).unwrap());
        m.set_train_base(true);
        m
    }

    fn close(what: &str, got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{what}[{i}]: {g} vs {w}");
        }
    }

    #[test]
    fn row_blocks_cover_the_rows() {
        assert_eq!(row_blocks(0, 5), vec![]);
        assert_eq!(row_blocks(12, 5), vec![(0, 5), (5, 5), (10, 2)]);
        assert_eq!(row_blocks(4, usize::MAX), vec![(0, 4)]);
        assert_eq!(row_blocks(3, 0), vec![(0, 1), (1, 1), (2, 1)]);
    }

    /// The LM head in blocks of token rows (forward logprobs, backward's
    /// adapter and base gradients, decode logits) equals the one-block run.
    #[test]
    fn lm_head_in_row_blocks_matches_one_block() {
        let tokens = [3, 7, 1, 18, 0, 5, 5, 9, 2, 11, 4, 6];
        let routes = [0, 0, -1, 0, -1, 0, 0, 0, -1, -1, 0, 0];
        let g: Vec<f64> = (0..12).map(|i| (i as f64 * 0.37).sin()).collect();
        for tie in [false, true] {
            let run = |rows: Option<usize>| {
                let mut m = model(tie, rows);
                let packed = Packed::new(&tokens, &[5, 1, 6], &routes, 19, 1).unwrap();
                let mut out = Vec::new();
                for _ in 0..2 {
                    out.push(m.forward(&tokens, &packed));
                    m.backward(&g);
                }
                out.extend(m.adapters[0].grads().into_iter().cloned());
                out.extend(m.base_grad.as_ref().unwrap().fields().into_iter().cloned());
                let mut st = m.decode_state();
                let db = DecodeBatch {
                    tokens: vec![3, 7, 1, 4, 2, 9],
                    pos: vec![0, 1, 2, 0, 1, 0],
                    groups: vec![vec![0, 1, 3, 5]],
                    rows: vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)],
                    last_rows: vec![2, 4, 5],
                    reserve: vec![(0, 3), (1, 2), (2, 1)],
                };
                out.push(m.decode(&mut st, &db).unwrap());
                out
            };
            let want = run(None);
            for rows in [1, 2, 5] {
                let got = run(Some(rows));
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    close(&format!("tie {tie}, {rows} rows per block, tensor {i}"), g, w);
                }
            }
        }
    }
}
