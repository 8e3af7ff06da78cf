//! The engine: a frozen (or fully trained) base model with K routed LoRA
//! slots; forward keeps the activations that backward needs; step applies
//! AdamW per slot with the lazy update. All compute runs in the engine's own
//! rayon pool, so the thread count (and with it the result) is fixed.
use crate::adapter::{Adapter, AdapterSpec};
use crate::batch::Packed;
use crate::config::ModelConfig;
use crate::error::{DartError, Result};
use crate::float::Float;
use crate::ops::attention::{attention_backward, attention_forward, AttnShape};
use crate::ops::embedding::{embedding_backward, embedding_forward};
use crate::ops::linear::{linear_backward, linear_forward};
use crate::ops::logprob::{logprob_backward, logprob_forward};
use crate::ops::lora::{lora_backward, lora_forward, LoraDims, LoraScratch};
use crate::ops::matmul::matmul;
use crate::ops::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use crate::ops::rope::{rope_apply, rope_tables};
use crate::ops::swiglu::{swiglu_backward, swiglu_forward};
use crate::optim::{adamw_step, clip_factor, grad_norm, AdamState, AdamW};
use crate::weights::{Layer, Linear, Proj, Weights};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// 0 = all cores.
    pub threads: usize,
    /// Seed of the engine RNG (sampling); adapters have their own seeds.
    pub seed: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { threads: 0, seed: 0 }
    }
}

/// Activations of one layer kept for backward.
#[derive(Default)]
struct LayerActs<T> {
    x_in: Vec<T>,
    xn1: Vec<T>,
    rstd1: Vec<T>,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    attn: Vec<T>,
    lse: Vec<T>,
    x_mid: Vec<T>,
    xn2: Vec<T>,
    rstd2: Vec<T>,
    gate: Vec<T>,
    up: Vec<T>,
    act: Vec<T>,
    /// x A^T per projection and slot.
    lora_u: Vec<Vec<Vec<T>>>,
}

/// Everything forward leaves for backward; buffers are reused across steps.
#[derive(Default)]
struct Cache<T> {
    packed: Packed,
    tokens: Vec<i32>,
    layers: Vec<LayerActs<T>>,
    x_last: Vec<T>,
    xf: Vec<T>,
    rstd_f: Vec<T>,
    logits: Vec<T>,
    lse: Vec<T>,
    /// Set by forward, cleared by backward (which consumes the logits).
    pending: bool,
}

/// Scratch for backward and the residual stream.
#[derive(Default)]
struct Scratch<T> {
    x: Vec<T>,
    tmp: Vec<T>,
    d_a: Vec<T>,
    d_b: Vec<T>,
    d_c: Vec<T>,
    d_q: Vec<T>,
    d_k: Vec<T>,
    d_v: Vec<T>,
    lora: LoraScratch<T>,
}

/// One routed projection over `n` rows: the base linear, then each slot's
/// LoRA delta on the rows routed to it (`us[slot]` keeps x A^T for backward).
#[allow(clippy::too_many_arguments)]
pub(crate) fn routed_projection<T: Float>(
    cfg: &ModelConfig,
    adapters: &[Adapter<T>],
    groups: &[Vec<u32>],
    n: usize,
    y: &mut Vec<T>,
    us: &mut Vec<Vec<T>>,
    x: &[T],
    layer: usize,
    pr: Proj,
    lin: &Linear<T>,
    scratch: &mut LoraScratch<T>,
) {
    let (n_in, n_out) = pr.dims(cfg);
    fill(y, n * n_out);
    linear_forward(y, x, &lin.w, lin.b.as_deref(), n, n_in, n_out);
    us.resize_with(adapters.len(), Vec::new);
    for (slot, a) in adapters.iter().enumerate() {
        us[slot].clear();
        if let Some(p) = a.pair(layer, pr) {
            let dims = LoraDims { total_rows: n, n_in, n_out, rank: a.spec.rank };
            lora_forward(y, &mut us[slot], x, &p.a, &p.b, &groups[slot], T::from_f64(a.spec.scale()), dims, scratch);
        }
    }
}

/// The base-gradient projection i of a layer, when the base is trained.
fn glin<'a, T>(gl: &'a mut Option<&mut Layer<T>>, i: usize) -> Option<&'a mut Linear<T>> {
    gl.as_deref_mut().map(|g| &mut g.proj[i])
}

pub(crate) fn fill<T: Float>(v: &mut Vec<T>, n: usize) {
    v.clear();
    v.resize(n, T::zero());
}

pub struct Engine<T: Float> {
    cfg: ModelConfig,
    w: Weights<T>,
    base_grad: Option<Weights<T>>,
    base_opt: Option<AdamState<T>>,
    base_tokens: usize,
    adapters: Vec<Adapter<T>>,
    opt: Vec<AdamState<T>>,
    /// Tokens routed to each slot by backward since the last step.
    tokens_seen: Vec<usize>,
    rng: ChaCha8Rng,
    pool: Arc<rayon::ThreadPool>,
    rope: (usize, Vec<T>, Vec<T>),
    cache: Cache<T>,
    scratch: Scratch<T>,
}

/// Per-group result of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotReport {
    /// Slot index, or -1 for the base model.
    pub slot: i32,
    pub tokens: usize,
    pub grad_norm: f64,
    pub clipped: bool,
    pub updated: bool,
}

#[derive(Debug, Clone)]
pub struct StepOptions {
    pub adamw: AdamW,
    /// None = every slot.
    pub slots: Option<Vec<usize>>,
}

impl<T: Float> Engine<T> {
    pub fn new(cfg: ModelConfig, w: Weights<T>, opts: &EngineOptions) -> Result<Self> {
        cfg.validate()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads)
            .thread_name(|i| format!("dart-cpu-{i}"))
            .build()
            .map_err(|e| DartError::InvalidArgument(format!("threads = {}: {e}", opts.threads)))?;
        Ok(Engine {
            cfg,
            w,
            base_grad: None,
            base_opt: None,
            base_tokens: 0,
            adapters: Vec::new(),
            opt: Vec::new(),
            tokens_seen: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(opts.seed),
            pool: Arc::new(pool),
            rope: (0, Vec::new(), Vec::new()),
            cache: Cache::default(),
            scratch: Scratch::default(),
        })
    }

    pub fn random(cfg: ModelConfig, seed: u64, opts: &EngineOptions) -> Result<Self> {
        cfg.validate()?;
        let w = Weights::random(&cfg, seed);
        Self::new(cfg, w, opts)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    pub fn weights(&self) -> &Weights<T> {
        &self.w
    }
    pub fn weights_mut(&mut self) -> &mut Weights<T> {
        &mut self.w
    }
    pub fn adapters(&self) -> &[Adapter<T>] {
        &self.adapters
    }
    pub fn pool(&self) -> Arc<rayon::ThreadPool> {
        self.pool.clone()
    }
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }
    pub fn rng(&self) -> &ChaCha8Rng {
        &self.rng
    }
    pub fn rng_mut(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    // ---- adapters -------------------------------------------------------

    pub fn add_adapter(&mut self, spec: AdapterSpec) -> Result<usize> {
        let a = Adapter::new(&self.cfg, spec)?;
        Ok(self.push_adapter(a))
    }

    pub fn push_adapter(&mut self, a: Adapter<T>) -> usize {
        let sizes: Vec<usize> = a.params().iter().map(|p| p.len()).collect();
        self.adapters.push(a);
        self.opt.push(AdamState::new(&sizes));
        self.tokens_seen.push(0);
        self.cache.pending = false;
        self.adapters.len() - 1
    }

    pub fn num_adapters(&self) -> usize {
        self.adapters.len()
    }

    pub fn adapter(&self, slot: usize) -> Result<&Adapter<T>> {
        let n = self.adapters.len();
        self.adapters.get(slot).ok_or_else(|| DartError::UnknownSlot(format!("slot {slot}, expected 0..{n}")))
    }

    pub fn adapter_mut(&mut self, slot: usize) -> Result<&mut Adapter<T>> {
        let n = self.adapters.len();
        self.adapters.get_mut(slot).ok_or_else(|| DartError::UnknownSlot(format!("slot {slot}, expected 0..{n}")))
    }

    pub fn optimizer_state(&self, slot: usize) -> Result<&AdamState<T>> {
        self.adapter(slot)?;
        Ok(&self.opt[slot])
    }

    pub fn optimizer_state_mut(&mut self, slot: usize) -> Result<&mut AdamState<T>> {
        self.adapter(slot)?;
        Ok(&mut self.opt[slot])
    }

    pub fn base_optimizer_state_mut(&mut self) -> Option<&mut AdamState<T>> {
        self.base_opt.as_mut()
    }
    pub fn base_optimizer_state(&self) -> Option<&AdamState<T>> {
        self.base_opt.as_ref()
    }

    /// Full-parameter training of the base model (used to pre-train a
    /// small model); off by default so the backbone stays frozen.
    pub fn set_train_base(&mut self, on: bool) {
        if on && self.base_grad.is_none() {
            self.base_grad = Some(Weights::zeros(&self.cfg));
            let sizes: Vec<usize> = self.w.fields().iter().map(|f| f.len()).collect();
            self.base_opt.get_or_insert_with(|| AdamState::new(&sizes));
        } else if !on {
            self.base_grad = None;
        }
    }

    pub fn train_base(&self) -> bool {
        self.base_grad.is_some()
    }

    pub fn base_grads(&self) -> Option<&Weights<T>> {
        self.base_grad.as_ref()
    }

    pub fn zero_grad(&mut self) {
        for a in &mut self.adapters {
            a.zero_grad();
        }
        self.tokens_seen.iter_mut().for_each(|t| *t = 0);
        if let Some(g) = &mut self.base_grad {
            for f in g.fields_mut() {
                f.iter_mut().for_each(|x| *x = T::zero());
            }
        }
        self.base_tokens = 0;
    }

    fn ensure_rope(&mut self, len: usize) {
        if self.rope.0 < len {
            let n = len.next_power_of_two().max(64);
            let (c, s) = rope_tables::<T>(n, self.cfg.head_dim(), self.cfg.rope_theta());
            self.rope = (n, c, s);
        }
    }

    // ---- forward --------------------------------------------------------

    /// Logprob of every token in the writer layout (0 at sequence starts).
    pub fn forward(&mut self, tokens: &[i32], seq_lens: &[i32], routes: &[i32]) -> Result<Vec<T>> {
        let packed = Packed::new(tokens, seq_lens, routes, self.cfg.vocab_size, self.adapters.len())?;
        self.ensure_rope(packed.max_len);
        let pool = self.pool.clone();
        pool.install(|| self.forward_packed(tokens, packed))
    }

    fn forward_packed(&mut self, tokens: &[i32], packed: Packed) -> Result<Vec<T>> {
        let cfg = &self.cfg;
        let n = packed.len();
        let (d, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let hd = cfg.head_dim();
        let (qw, kw) = (cfg.num_attention_heads * hd, cfg.kv_heads() * hd);
        let sh = AttnShape { heads: cfg.num_attention_heads, kv_heads: cfg.kv_heads(), head_dim: hd };
        let c = &mut self.cache;
        c.pending = false;
        c.layers.resize_with(cfg.num_hidden_layers, Default::default);
        let s = &mut self.scratch;
        fill(&mut s.x, n * d);
        embedding_forward(&mut s.x, &self.w.embed, tokens, d);
        let adapters = &self.adapters;
        let groups = &packed.groups;
        let project = |y: &mut Vec<T>, us: &mut Vec<Vec<T>>, x: &[T], layer: usize, pr: Proj, lin: &Linear<T>, scratch: &mut LoraScratch<T>| {
            routed_projection(cfg, adapters, groups, n, y, us, x, layer, pr, lin, scratch)
        };
        for (l, layer) in self.w.layers.iter().enumerate() {
            let a = &mut c.layers[l];
            a.lora_u.resize_with(7, Vec::new);
            a.x_in.clear();
            a.x_in.extend_from_slice(&s.x);
            fill(&mut a.xn1, n * d);
            fill(&mut a.rstd1, n);
            rmsnorm_forward(&mut a.xn1, &mut a.rstd1, &a.x_in, &layer.input_norm, d, cfg.rms_norm_eps);
            project(&mut a.q, &mut a.lora_u[0], &a.xn1, l, Proj::Q, &layer.proj[0], &mut s.lora);
            project(&mut a.k, &mut a.lora_u[1], &a.xn1, l, Proj::K, &layer.proj[1], &mut s.lora);
            project(&mut a.v, &mut a.lora_u[2], &a.xn1, l, Proj::V, &layer.proj[2], &mut s.lora);
            rope_apply(&mut a.q, &packed.pos, sh.heads, hd, &self.rope.1, &self.rope.2, false);
            rope_apply(&mut a.k, &packed.pos, sh.kv_heads, hd, &self.rope.1, &self.rope.2, false);
            fill(&mut a.attn, n * qw);
            fill(&mut a.lse, n * sh.heads);
            attention_forward(&mut a.attn, &mut a.lse, &a.q, &a.k, &a.v, &packed.seqs, sh);
            debug_assert_eq!(a.k.len(), n * kw);
            project(&mut s.tmp, &mut a.lora_u[3], &a.attn, l, Proj::O, &layer.proj[3], &mut s.lora);
            a.x_mid.clear();
            a.x_mid.extend(a.x_in.iter().zip(&s.tmp).map(|(&x, &y)| x + y));
            fill(&mut a.xn2, n * d);
            fill(&mut a.rstd2, n);
            rmsnorm_forward(&mut a.xn2, &mut a.rstd2, &a.x_mid, &layer.post_norm, d, cfg.rms_norm_eps);
            project(&mut a.gate, &mut a.lora_u[4], &a.xn2, l, Proj::Gate, &layer.proj[4], &mut s.lora);
            project(&mut a.up, &mut a.lora_u[5], &a.xn2, l, Proj::Up, &layer.proj[5], &mut s.lora);
            fill(&mut a.act, n * f);
            swiglu_forward(&mut a.act, &a.gate, &a.up);
            project(&mut s.tmp, &mut a.lora_u[6], &a.act, l, Proj::Down, &layer.proj[6], &mut s.lora);
            for ((x, &m), &y) in s.x.iter_mut().zip(&a.x_mid).zip(&s.tmp) {
                *x = m + y;
            }
        }
        c.x_last.clear();
        c.x_last.extend_from_slice(&s.x);
        fill(&mut c.xf, n * d);
        fill(&mut c.rstd_f, n);
        rmsnorm_forward(&mut c.xf, &mut c.rstd_f, &c.x_last, &self.w.norm, d, cfg.rms_norm_eps);
        fill(&mut c.logits, n * v);
        matmul(&mut c.logits, &c.xf, self.w.head(), n, v, d, false, true, false);
        fill(&mut c.lse, n);
        let mut logp_pos = vec![T::zero(); n];
        logprob_forward(&mut logp_pos, &mut c.lse, &c.logits, &packed.targets, v);
        // Writer layout: token p+1's logprob was computed at position p.
        let mut out = vec![T::zero(); n];
        for p in 0..n {
            if packed.targets[p] >= 0 {
                out[p + 1] = logp_pos[p];
            }
        }
        if let Some(i) = out.iter().position(|x| !x.is_finite()) {
            return Err(DartError::NonFinite(format!("logprob of token {i} is {:?} (model weights or inputs overflow)", out[i])));
        }
        c.tokens.clear();
        c.tokens.extend_from_slice(tokens);
        c.packed = packed;
        c.pending = true;
        Ok(out)
    }

    // ---- backward -------------------------------------------------------

    /// Accumulates gradients of L = sum_t dlogp[t] * logp[t] (writer layout)
    /// into the slots the routes used (and the base when trained).
    pub fn backward(&mut self, dlogp: &[T]) -> Result<()> {
        if !self.cache.pending {
            return Err(DartError::State("backward needs a forward first (each forward allows one backward)".into()));
        }
        let n = self.cache.packed.len();
        if dlogp.len() != n {
            return Err(DartError::Shape(format!("dLdlogp has {} entries, expected {n} (one per token of the last forward)", dlogp.len())));
        }
        if let Some(i) = dlogp.iter().position(|x| !x.is_finite()) {
            return Err(DartError::NonFinite(format!("dLdlogp[{i}] = {:?}, expected a finite number", dlogp[i])));
        }
        let pool = self.pool.clone();
        pool.install(|| self.backward_packed(dlogp));
        self.cache.pending = false;
        let grads_ok = self.adapters.iter().all(|a| a.grads().iter().all(|g| g.iter().all(|x| x.is_finite())));
        if !grads_ok {
            return Err(DartError::NonFinite("an adapter gradient is not finite after backward".into()));
        }
        Ok(())
    }

    fn backward_packed(&mut self, dlogp: &[T]) {
        let cfg = &self.cfg;
        let c = &mut self.cache;
        let s = &mut self.scratch;
        let packed = &c.packed;
        let n = packed.len();
        let (d, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let hd = cfg.head_dim();
        let sh = AttnShape { heads: cfg.num_attention_heads, kv_heads: cfg.kv_heads(), head_dim: hd };
        let (qw, kw) = (sh.heads * hd, sh.kv_heads * hd);
        // A slot "received a token" when a position routed to it predicts one
        // (a sequence's last position predicts nothing and gets no gradient).
        for (slot, g) in packed.groups.iter().enumerate() {
            self.tokens_seen[slot] += g.iter().filter(|&&p| packed.targets[p as usize] >= 0).count();
        }
        self.base_tokens += n;
        // Position-indexed upstream gradient.
        let g_pos: Vec<T> = (0..n).map(|p| if packed.targets[p] >= 0 { dlogp[p + 1] } else { T::zero() }).collect();
        logprob_backward(&mut c.logits, &c.lse, &g_pos, &packed.targets, v);
        let mut bg = self.base_grad.as_mut();
        // dxf = dlogits W_head ; dW_head += dlogits^T xf
        fill(&mut s.tmp, n * d);
        matmul(&mut s.tmp, &c.logits, self.w.head(), n, d, v, false, false, false);
        if let Some(g) = bg.as_deref_mut() {
            let dh = if cfg.tie_word_embeddings { &mut g.embed } else { g.lm_head.as_mut().expect("untied head") };
            matmul(dh, &c.logits, &c.xf, v, d, n, true, false, true);
        }
        fill(&mut s.x, n * d);
        rmsnorm_backward(&mut s.x, bg.as_deref_mut().map(|g| g.norm.as_mut_slice()), &s.tmp, &c.x_last, &self.w.norm, &c.rstd_f, d);

        let adapters = &mut self.adapters;
        let groups = &packed.groups;
        // Backward of one routed projection: dx (+)= dy W + routed LoRA terms.
        let project_back = |dx: &mut Vec<T>, acc: bool, dy: &[T], x: &[T], us: &[Vec<T>], layer: usize, pr: Proj, lin: &Linear<T>, glin: Option<&mut Linear<T>>, adapters: &mut Vec<Adapter<T>>, scratch: &mut LoraScratch<T>| {
            let (n_in, n_out) = pr.dims(cfg);
            if !acc {
                fill(dx, n * n_in);
            }
            let (dw, db) = match glin {
                Some(g) => (Some(g.w.as_mut_slice()), g.b.as_deref_mut()),
                None => (None, None),
            };
            linear_backward(dx, acc, dw, db, dy, x, &lin.w, n, n_in, n_out);
            for (slot, a) in adapters.iter_mut().enumerate() {
                let (rank, scale) = (a.spec.rank, T::from_f64(a.spec.scale()));
                if let Some(p) = a.pair_mut(layer, pr) {
                    let dims = LoraDims { total_rows: n, n_in, n_out, rank };
                    lora_backward(dx, &mut p.ga, &mut p.gb, dy, x, &us[slot], &p.a, &p.b, &groups[slot], scale, dims, scratch);
                }
            }
        };
        for l in (0..cfg.num_hidden_layers).rev() {
            let layer = &self.w.layers[l];
            let a = &c.layers[l];
            let mut gl = bg.as_deref_mut().map(|g| &mut g.layers[l]);
            // MLP: s.x holds d(x_out).
            project_back(&mut s.d_a, false, &s.x, &a.act, &a.lora_u[6], l, Proj::Down, &layer.proj[6], glin(&mut gl, 6), adapters, &mut s.lora);
            fill(&mut s.d_b, n * f);
            fill(&mut s.d_c, n * f);
            swiglu_backward(&mut s.d_b, &mut s.d_c, &s.d_a, &a.gate, &a.up);
            project_back(&mut s.tmp, false, &s.d_b, &a.xn2, &a.lora_u[4], l, Proj::Gate, &layer.proj[4], glin(&mut gl, 4), adapters, &mut s.lora);
            project_back(&mut s.tmp, true, &s.d_c, &a.xn2, &a.lora_u[5], l, Proj::Up, &layer.proj[5], glin(&mut gl, 5), adapters, &mut s.lora);
            fill(&mut s.d_a, n * d);
            rmsnorm_backward(&mut s.d_a, gl.as_deref_mut().map(|g| g.post_norm.as_mut_slice()), &s.tmp, &a.x_mid, &layer.post_norm, &a.rstd2, d);
            for (x, &y) in s.x.iter_mut().zip(&s.d_a) {
                *x += y;
            }
            // Attention: s.x holds d(x_mid).
            project_back(&mut s.d_a, false, &s.x, &a.attn, &a.lora_u[3], l, Proj::O, &layer.proj[3], glin(&mut gl, 3), adapters, &mut s.lora);
            fill(&mut s.d_q, n * qw);
            fill(&mut s.d_k, n * kw);
            fill(&mut s.d_v, n * kw);
            attention_backward(&mut s.d_q, &mut s.d_k, &mut s.d_v, &s.d_a, &a.attn, &a.lse, &a.q, &a.k, &a.v, &packed.seqs, sh);
            rope_apply(&mut s.d_q, &packed.pos, sh.heads, hd, &self.rope.1, &self.rope.2, true);
            rope_apply(&mut s.d_k, &packed.pos, sh.kv_heads, hd, &self.rope.1, &self.rope.2, true);
            project_back(&mut s.tmp, false, &s.d_q, &a.xn1, &a.lora_u[0], l, Proj::Q, &layer.proj[0], glin(&mut gl, 0), adapters, &mut s.lora);
            project_back(&mut s.tmp, true, &s.d_k, &a.xn1, &a.lora_u[1], l, Proj::K, &layer.proj[1], glin(&mut gl, 1), adapters, &mut s.lora);
            project_back(&mut s.tmp, true, &s.d_v, &a.xn1, &a.lora_u[2], l, Proj::V, &layer.proj[2], glin(&mut gl, 2), adapters, &mut s.lora);
            fill(&mut s.d_a, n * d);
            rmsnorm_backward(&mut s.d_a, gl.as_deref_mut().map(|g| g.input_norm.as_mut_slice()), &s.tmp, &a.x_in, &layer.input_norm, &a.rstd1, d);
            for (x, &y) in s.x.iter_mut().zip(&s.d_a) {
                *x += y;
            }
        }
        if let Some(g) = bg {
            embedding_backward(&mut g.embed, &s.x, &c.tokens, d);
        }
    }

    // ---- step -----------------------------------------------------------

    /// AdamW on each selected slot that received tokens (and on the base when
    /// trained); slots without tokens keep parameters and moments bit for bit.
    /// Consumed gradients are zeroed.
    pub fn step(&mut self, opts: &StepOptions) -> Result<(Vec<SlotReport>, Option<SlotReport>)> {
        opts.adamw.validate()?;
        let k = self.adapters.len();
        let slots: Vec<usize> = match &opts.slots {
            Some(s) => {
                if let Some(&bad) = s.iter().find(|&&x| x >= k) {
                    return Err(DartError::UnknownSlot(format!("step slot {bad}, expected 0..{k}")));
                }
                s.clone()
            }
            None => (0..k).collect(),
        };
        // Check every norm before touching anything: a non-finite gradient
        // must not leave half the slots updated.
        let norms: Vec<f64> = slots.iter().map(|&i| grad_norm(&self.adapters[i].grads())).collect();
        let base_norm = self.base_grad.as_ref().map(|g| grad_norm(&g.fields()));
        if let Some((i, _)) = slots.iter().zip(&norms).find(|(_, n)| !n.is_finite()) {
            return Err(DartError::NonFinite(format!("gradient norm of slot {i} is not finite")));
        }
        if base_norm.is_some_and(|n| !n.is_finite()) {
            return Err(DartError::NonFinite("gradient norm of the base model is not finite".into()));
        }
        let mut reports = Vec::with_capacity(slots.len());
        for (&i, &norm) in slots.iter().zip(&norms) {
            let tokens = self.tokens_seen[i];
            let updated = tokens > 0;
            let scale = clip_factor(norm, opts.adamw.max_grad_norm);
            if updated {
                let a = &mut self.adapters[i];
                adamw_step(&opts.adamw, &mut self.opt[i], &mut a.params_and_grads_mut(), scale);
                a.zero_grad();
                self.tokens_seen[i] = 0;
            }
            reports.push(SlotReport { slot: i as i32, tokens, grad_norm: norm, clipped: scale < 1.0, updated });
        }
        let base = match (self.base_grad.as_mut(), base_norm) {
            (Some(g), Some(norm)) => {
                let tokens = self.base_tokens;
                let scale = clip_factor(norm, opts.adamw.max_grad_norm);
                if tokens > 0 {
                    let st = self.base_opt.as_mut().expect("base optimizer exists with base grads");
                    let mut pg: Vec<(&mut Vec<T>, &mut Vec<T>)> = self.w.fields_mut().into_iter().zip(g.fields_mut()).collect();
                    adamw_step(&opts.adamw, st, &mut pg, scale);
                    for (_, gr) in pg {
                        gr.iter_mut().for_each(|x| *x = T::zero());
                    }
                    self.base_tokens = 0;
                    self.cache.pending = false;
                }
                Some(SlotReport { slot: -1, tokens, grad_norm: norm, clipped: scale < 1.0, updated: tokens > 0 })
            }
            _ => None,
        };
        Ok((reports, base))
    }
}
