//! The engine: a frozen (or fully trained) base model with K routed LoRA
//! slots on a backend (cpu or wgpu, `EngineOptions::backend`). The model code
//! (`crate::model`) is written once against `Backend`; this file keeps the
//! host-side bookkeeping (routing, token counts, step counts, RNG) and the
//! host view of the tensors. All compute runs in the engine's own rayon
//! pool, so the thread count (and with it the cpu result) is fixed.
use crate::adapter::{Adapter, AdapterSpec};
use crate::backend::cpu::CpuBackend;
use crate::backend::cpu::huge_pages::copy_to_huge_pages;
use crate::backend::{Backend, BackendInfo, BackendKind};
use crate::batch::Packed;
use crate::config::ModelConfig;
use crate::error::{DartError, Result};
use crate::float::Float;
use crate::decode::{DecodeBatch, DecodeState};
use crate::model::Model;
use crate::optim::{clip_factor, AdamState, AdamW};
use crate::weights::Weights;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// 0 = all cores.
    pub threads: usize,
    /// Seed of the engine RNG (sampling); adapters have their own seeds.
    pub seed: u64,
    /// cpu, wgpu or auto (a real GPU if there is one, else cpu). The default
    /// is cpu, or `DART_BACKEND` when set.
    pub backend: BackendKind,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { threads: 0, seed: 0, backend: BackendKind::from_env() }
    }
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

/// The model on its backend.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Exec<T: Float> {
    Cpu(Model<CpuBackend<T>>),
    #[cfg(feature = "wgpu")]
    Wgpu(Model<crate::backend::wgpu::WgpuBackend>),
}

/// Runs `$body` with `$m` bound to the model, whichever backend it is on.
macro_rules! with_model {
    ($exec:expr, $m:ident => $body:expr) => {
        match $exec {
            Exec::Cpu($m) => $body,
            #[cfg(feature = "wgpu")]
            Exec::Wgpu($m) => $body,
        }
    };
}

/// Host values between the engine's type and a backend's (identity for cpu).
/// The cpu backend's model, its weights moved onto huge pages (decode
/// streams them every step; see backend::cpu::huge_pages).
fn cpu_exec<T: Float>(cfg: &ModelConfig, w: &Weights<T>) -> Exec<T> {
    Exec::Cpu(Model::new(CpuBackend::default(), cfg.clone(), w.map(|x| copy_to_huge_pages(x))))
}

pub(crate) fn cast<A: Float, B: Float>(x: &[A]) -> Vec<B> {
    x.iter().map(|&v| B::from_f64(v.as_f64())).collect()
}
pub(crate) fn cast_vec<A: Float, B: Float>(x: Vec<A>) -> Vec<B> {
    x.into_iter().map(|v| B::from_f64(v.as_f64())).collect()
}

pub struct Engine<T: Float> {
    cfg: ModelConfig,
    pub(crate) exec: Exec<T>,
    /// AdamW step count of each slot.
    steps: Vec<u64>,
    base_step: u64,
    /// Tokens routed to each slot by backward since the last step.
    tokens_seen: Vec<usize>,
    base_tokens: usize,
    rng: ChaCha8Rng,
    pool: Workers,
    /// The last forward's batch; `pending` until backward consumes it.
    packed: Packed,
    pending: bool,
}

/// The engine's worker threads: its own rayon pool, so that two engines (or
/// an engine and its host's rayon work) do not share threads. WebAssembly
/// without threads can start none: there the work runs on the calling thread
/// (rayon's global pool falls back to it; a second pool could not take the
/// same thread again).
#[derive(Clone)]
pub struct Workers(Option<Arc<rayon::ThreadPool>>);

impl Workers {
    /// `threads` = 0: all cores.
    pub fn new(threads: usize) -> Result<Self> {
        if cfg!(target_family = "wasm") {
            if threads > 1 {
                return Err(DartError::InvalidArgument(format!(
                    "threads = {threads}, expected 0 or 1 (this build runs on one thread)"
                )));
            }
            return Ok(Workers(None));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("dart-cpu-{i}"))
            .build()
            .map_err(|e| DartError::InvalidArgument(format!("threads = {threads}: {e}")))?;
        Ok(Workers(Some(Arc::new(pool))))
    }

    /// Runs `f` on these workers (rayon calls inside it use them).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.0 {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    pub fn num_threads(&self) -> usize {
        self.0.as_ref().map_or(1, |p| p.current_num_threads())
    }
}

fn unknown_slot(slot: usize, n: usize) -> DartError {
    DartError::UnknownSlot(format!("slot {slot}, expected 0..{n}"))
}

impl<T: Float> Engine<T> {
    pub fn new(cfg: ModelConfig, w: Weights<T>, opts: &EngineOptions) -> Result<Self> {
        cfg.validate()?;
        let pool = Workers::new(opts.threads)?;
        let exec = Self::exec_for(opts.backend, &cfg, w)?;
        Ok(Engine {
            cfg,
            exec,
            steps: Vec::new(),
            base_step: 0,
            tokens_seen: Vec::new(),
            base_tokens: 0,
            rng: ChaCha8Rng::seed_from_u64(opts.seed),
            pool,
            packed: Packed::default(),
            pending: false,
        })
    }

    #[cfg(feature = "wgpu")]
    fn exec_for(kind: BackendKind, cfg: &ModelConfig, w: Weights<T>) -> Result<Exec<T>> {
        if kind != BackendKind::Cpu && std::mem::size_of::<T>() != 4 {
            if kind == BackendKind::Wgpu {
                return Err(DartError::InvalidArgument(
                    "backend wgpu computes in f32; an f64 engine runs on the cpu backend only".into(),
                ));
            }
            return Ok(cpu_exec(cfg, &w));
        }
        match crate::backend::wgpu::select_backend(kind, None)? {
            None => Ok(cpu_exec(cfg, &w)),
            Some(ctx) => {
                let b = crate::backend::wgpu::WgpuBackend::new(ctx);
                // Matrices go up in rows (split into row blocks beyond the binding limit).
                let shapes = crate::weights::weight_names_shapes(cfg);
                let mut widths = shapes.iter().map(|(_, s)| *s.last().expect("a shape"));
                let wd = w.map(|x| b.upload_rows(&cast::<T, f32>(x), widths.next().expect("one shape per field")));
                drop(w);
                Ok(Exec::Wgpu(Model::new(b, cfg.clone(), wd)))
            }
        }
    }

    #[cfg(not(feature = "wgpu"))]
    fn exec_for(kind: BackendKind, cfg: &ModelConfig, w: Weights<T>) -> Result<Exec<T>> {
        if kind == BackendKind::Wgpu {
            return Err(DartError::InvalidArgument("backend wgpu: this build has no wgpu support (feature \"wgpu\")".into()));
        }
        Ok(cpu_exec(cfg, &w))
    }

    pub fn random(cfg: ModelConfig, seed: u64, opts: &EngineOptions) -> Result<Self> {
        cfg.validate()?;
        let w = Weights::random(&cfg, seed);
        Self::new(cfg, w, opts)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// What the engine computes on.
    pub fn backend_info(&self) -> BackendInfo {
        let pool = self.pool.clone();
        pool.install(|| with_model!(&self.exec, m => m.b.info()))
    }

    /// The base weights, read back (a copy).
    pub fn weights(&self) -> Weights<T> {
        with_model!(&self.exec, m => {
            let f = m.w.fields();
            let mut data = m.b.download_many(&f).into_iter();
            m.w.map(|_| cast_vec(data.next().expect("one per field")))
        })
    }

    /// Device buffers behind each base tensor (in `Weights::names_shapes`
    /// order): 1 each on cpu, more where wgpu split a tensor over the
    /// binding limit into row blocks.
    pub fn base_parts(&self) -> Vec<usize> {
        with_model!(&self.exec, m => m.w.fields().into_iter().map(|x| m.b.parts(x)).collect())
    }

    /// Device buffers the engine's backend has created so far (None on
    /// cpu). Once warm, a training step (forward, backward, step) or a
    /// decode step of shapes seen before creates none.
    pub fn device_buffers_created(&self) -> Option<usize> {
        with_model!(&self.exec, m => m.b.buffers_created())
    }

    /// Token rows per LM head block: the logits of a forward ([tokens,
    /// vocab]) are computed in blocks of this many rows (usize::MAX on cpu;
    /// on wgpu one binding's worth, see `DART_WGPU_MAX_BINDING_BYTES`).
    pub fn lm_head_rows_per_block(&self) -> usize {
        with_model!(&self.exec, m => m.b.max_rows_per_block(self.cfg.vocab_size))
    }

    /// Base tensor `index` (in `Weights::names_shapes` order), read back.
    pub fn base_param(&self, index: usize) -> Result<Vec<T>> {
        let n = Weights::<T>::names_shapes(&self.cfg).len();
        if index >= n {
            return Err(DartError::MissingTensor(format!("base tensor {index}, expected 0..{n}")));
        }
        Ok(with_model!(&self.exec, m => cast_vec(m.b.download(m.w.fields()[index]))))
    }

    /// Overwrites base tensor `index` (in `Weights::names_shapes` order).
    pub fn set_base_param(&mut self, index: usize, data: &[T]) -> Result<()> {
        let names = Weights::<T>::names_shapes(&self.cfg);
        let (name, shape) = names.get(index).ok_or_else(|| DartError::MissingTensor(format!("base tensor {index}, expected 0..{}", names.len())))?;
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(DartError::Shape(format!("{name}: got {} values, expected {n}", data.len())));
        }
        self.pending = false;
        with_model!(&mut self.exec, m => {
            let b = &m.b;
            b.write(m.w.fields_mut()[index], &cast(data));
        });
        Ok(())
    }

    pub fn pool(&self) -> Workers {
        self.pool.clone()
    }
    pub fn threads(&self) -> usize {
        self.pool.num_threads()
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
        with_model!(&mut self.exec, m => {
            let b = &m.b;
            let ad = a.map(|x| b.upload_vec(cast(x)));
            m.push_adapter(ad);
        });
        self.steps.push(0);
        self.tokens_seen.push(0);
        self.pending = false;
        self.steps.len() - 1
    }

    pub fn num_adapters(&self) -> usize {
        self.steps.len()
    }

    fn check_slot(&self, slot: usize) -> Result<()> {
        if slot < self.num_adapters() {
            Ok(())
        } else {
            Err(unknown_slot(slot, self.num_adapters()))
        }
    }

    pub fn adapter_spec(&self, slot: usize) -> Result<AdapterSpec> {
        self.check_slot(slot)?;
        Ok(with_model!(&self.exec, m => m.adapters[slot].spec.clone()))
    }

    /// (PEFT name, shape) of every tensor of a slot, A then B per pair.
    pub fn adapter_names_shapes(&self, slot: usize) -> Result<Vec<(String, Vec<usize>)>> {
        self.check_slot(slot)?;
        Ok(with_model!(&self.exec, m => m.adapters[slot].names_shapes()))
    }

    /// A host copy of a slot: spec, parameters and gradients (read back).
    pub fn adapter(&self, slot: usize) -> Result<Adapter<T>> {
        self.check_slot(slot)?;
        Ok(with_model!(&self.exec, m => {
            let a = &m.adapters[slot];
            let all: Vec<_> = a.pairs.iter().flat_map(|p| [&p.a, &p.b, &p.ga, &p.gb]).collect();
            let mut data = m.b.download_many(&all).into_iter();
            a.map(|_| cast_vec(data.next().expect("one per tensor")))
        }))
    }

    /// Overwrites one LoRA tensor of a slot by PEFT name.
    pub fn set_adapter_tensor(&mut self, slot: usize, name: &str, data: &[T]) -> Result<()> {
        self.check_slot(slot)?;
        let i = with_model!(&self.exec, m => m.adapters[slot].tensor_index(name))?;
        self.set_adapter_param(slot, i, data)
    }

    /// Overwrites LoRA tensor `index` of a slot (in `params` order).
    pub fn set_adapter_param(&mut self, slot: usize, index: usize, data: &[T]) -> Result<()> {
        let ns = self.adapter_names_shapes(slot)?;
        let (name, shape) = ns.get(index).ok_or_else(|| DartError::MissingTensor(format!("adapter tensor {index}, expected 0..{}", ns.len())))?;
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(DartError::Shape(format!("{name}: got {} values, expected {n}", data.len())));
        }
        self.pending = false;
        with_model!(&mut self.exec, m => {
            let b = &m.b;
            let p = &mut m.adapters[slot].pairs[index / 2];
            b.write(if index % 2 == 0 { &mut p.a } else { &mut p.b }, &cast(data));
        });
        Ok(())
    }

    /// A slot's AdamW state, read back.
    pub fn optimizer_state(&self, slot: usize) -> Result<AdamState<T>> {
        self.check_slot(slot)?;
        let step = self.steps[slot];
        Ok(with_model!(&self.exec, m => {
            let st = &m.opt[slot];
            let k = st.m.len();
            let all: Vec<_> = st.m.iter().chain(&st.v).collect();
            let mut data: Vec<Vec<T>> = m.b.download_many(&all).into_iter().map(cast_vec).collect();
            let v = data.split_off(k);
            AdamState { step, m: data, v }
        }))
    }

    /// Restores a slot's AdamW state (shapes as `adapter_names_shapes`).
    pub fn set_optimizer_state(&mut self, slot: usize, st: &AdamState<T>) -> Result<()> {
        let ns = self.adapter_names_shapes(slot)?;
        check_moments(&ns, st)?;
        self.steps[slot] = st.step;
        with_model!(&mut self.exec, m => {
            let b = &m.b;
            let o = &mut m.opt[slot];
            for (dst, src) in o.m.iter_mut().zip(&st.m).chain(o.v.iter_mut().zip(&st.v)) {
                b.write(dst, &cast(src));
            }
        });
        Ok(())
    }

    /// The base model's AdamW state (when the base was ever trained), read back.
    pub fn base_optimizer_state(&self) -> Option<AdamState<T>> {
        let step = self.base_step;
        with_model!(&self.exec, m => m.base_opt.as_ref().map(|st| {
            let k = st.m.len();
            let all: Vec<_> = st.m.iter().chain(&st.v).collect();
            let mut data: Vec<Vec<T>> = m.b.download_many(&all).into_iter().map(cast_vec).collect();
            let v = data.split_off(k);
            AdamState { step, m: data, v }
        }))
    }

    /// Restores the base model's AdamW state (turns base training on).
    pub fn set_base_optimizer_state(&mut self, st: &AdamState<T>) -> Result<()> {
        check_moments(&Weights::<T>::names_shapes(&self.cfg), st)?;
        self.set_train_base(true);
        self.base_step = st.step;
        with_model!(&mut self.exec, m => {
            let b = &m.b;
            let o = m.base_opt.as_mut().expect("set_train_base creates it");
            for (dst, src) in o.m.iter_mut().zip(&st.m).chain(o.v.iter_mut().zip(&st.v)) {
                b.write(dst, &cast(src));
            }
        });
        Ok(())
    }

    /// Full-parameter training of the base model (used to pre-train a
    /// small model); off by default so the backbone stays frozen.
    pub fn set_train_base(&mut self, on: bool) {
        with_model!(&mut self.exec, m => m.set_train_base(on));
    }

    pub fn train_base(&self) -> bool {
        with_model!(&self.exec, m => m.base_grad.is_some())
    }

    /// The base model's accumulated gradients (when trained), read back.
    pub fn base_grads(&self) -> Option<Weights<T>> {
        with_model!(&self.exec, m => m.base_grad.as_ref().map(|g| {
            let f = g.fields();
            let mut data = m.b.download_many(&f).into_iter();
            g.map(|_| cast_vec(data.next().expect("one per field")))
        }))
    }

    pub fn zero_grad(&mut self) {
        with_model!(&mut self.exec, m => m.zero_grad());
        self.tokens_seen.iter_mut().for_each(|t| *t = 0);
        self.base_tokens = 0;
    }

    // ---- forward --------------------------------------------------------

    /// Logprob of every token in the writer layout (0 at sequence starts).
    pub fn forward(&mut self, tokens: &[i32], seq_lens: &[i32], routes: &[i32]) -> Result<Vec<T>> {
        self.forward_wanted(tokens, seq_lens, routes, None)
    }

    /// `forward` with the LM head only on the tokens `wanted` marks (1;
    /// writer layout, `Packed::want`): the others get logprob 0 and their
    /// dL/dlogp is ignored by backward. A policy-gradient update wants only
    /// the tokens that carry loss, a fraction of a trajectory with long
    /// prompts and retrieved passages.
    pub fn forward_wanted(&mut self, tokens: &[i32], seq_lens: &[i32], routes: &[i32], wanted: Option<&[u8]>) -> Result<Vec<T>> {
        let mut packed = Packed::new(tokens, seq_lens, routes, self.cfg.vocab_size, self.num_adapters())?;
        if let Some(w) = wanted {
            packed = packed.want(w)?;
        }
        self.pending = false;
        let pool = self.pool.clone();
        let logp_pos: Vec<T> = pool.install(|| with_model!(&mut self.exec, m => cast_vec(m.forward(tokens, &packed))));
        let out = packed.to_writer(&logp_pos);
        if let Some(i) = out.iter().position(|x| !x.is_finite()) {
            return Err(DartError::NonFinite(format!("logprob of token {i} is {:?} (model weights or inputs overflow)", out[i])));
        }
        self.packed = packed;
        self.pending = true;
        Ok(out)
    }

    // ---- backward -------------------------------------------------------

    /// Accumulates gradients of L = sum_t dlogp[t] * logp[t] (writer layout)
    /// into the slots the routes used (and the base when trained).
    pub fn backward(&mut self, dlogp: &[T]) -> Result<()> {
        if !self.pending {
            return Err(DartError::State("backward needs a forward first (each forward allows one backward)".into()));
        }
        let packed = &self.packed;
        let n = packed.len();
        if dlogp.len() != n {
            return Err(DartError::Shape(format!("dLdlogp has {} entries, expected {n} (one per token of the last forward)", dlogp.len())));
        }
        if let Some(i) = dlogp.iter().position(|x| !x.is_finite()) {
            return Err(DartError::NonFinite(format!("dLdlogp[{i}] = {:?}, expected a finite number", dlogp[i])));
        }
        // A slot "received a token" when a position routed to it predicts one.
        for (seen, predicted) in self.tokens_seen.iter_mut().zip(packed.predicted_per_slot()) {
            *seen += predicted;
        }
        self.base_tokens += n;
        let g_pos: Vec<T> = packed.from_writer(dlogp);
        let pool = self.pool.clone();
        let ok = pool.install(|| with_model!(&mut self.exec, m => m.backward(&cast(&g_pos))));
        self.pending = false;
        if ok == Some(false) {
            return Err(DartError::NonFinite("an adapter gradient is not finite after backward".into()));
        }
        Ok(())
    }

    // ---- step -----------------------------------------------------------

    /// AdamW on each selected slot that received tokens (and on the base when
    /// trained); slots without tokens keep parameters and moments bit for bit.
    /// Consumed gradients are zeroed. Gradient norms are read back once.
    pub fn step(&mut self, opts: &StepOptions) -> Result<(Vec<SlotReport>, Option<SlotReport>)> {
        opts.adamw.validate()?;
        let k = self.num_adapters();
        let slots: Vec<usize> = match &opts.slots {
            Some(s) => {
                if let Some(&bad) = s.iter().find(|&&x| x >= k) {
                    return Err(DartError::UnknownSlot(format!("step slot {bad}, expected 0..{k}")));
                }
                s.clone()
            }
            None => (0..k).collect(),
        };
        let pool = self.pool.clone();
        let Engine { exec, steps, base_step, tokens_seen, base_tokens, pending, .. } = self;
        pool.install(|| {
            with_model!(exec, m => {
                let max = opts.adamw.max_grad_norm;
                let (norms, base_norm, clips, base_clip) = m.grad_norms(&slots, max);
                // Check every norm before touching anything: a non-finite
                // gradient must not leave half the slots updated.
                if let Some((i, _)) = slots.iter().zip(&norms).find(|(_, n)| !n.is_finite()) {
                    return Err(DartError::NonFinite(format!("gradient norm of slot {i} is not finite")));
                }
                if base_norm.is_some_and(|n| !n.is_finite()) {
                    return Err(DartError::NonFinite("gradient norm of the base model is not finite".into()));
                }
                let mut reports = Vec::with_capacity(slots.len());
                for ((&i, &norm), clip) in slots.iter().zip(&norms).zip(&clips) {
                    let tokens = tokens_seen[i];
                    let updated = tokens > 0;
                    if updated {
                        steps[i] += 1;
                        m.step_slot(&opts.adamw, i, steps[i], clip);
                        tokens_seen[i] = 0;
                    }
                    let clipped = clip_factor(norm, max) < 1.0;
                    reports.push(SlotReport { slot: i as i32, tokens, grad_norm: norm, clipped, updated });
                }
                let base = match (base_norm, base_clip) {
                    (Some(norm), Some(clip)) => {
                        let tokens = *base_tokens;
                        if tokens > 0 {
                            *base_step += 1;
                            m.step_base(&opts.adamw, *base_step, &clip);
                            *base_tokens = 0;
                            *pending = false;
                        }
                        Some(SlotReport { slot: -1, tokens, grad_norm: norm, clipped: clip_factor(norm, max) < 1.0, updated: tokens > 0 })
                    }
                    _ => None,
                };
                Ok((reports, base))
            })
        })
    }

    // ---- decoding (crate::generate) ---------------------------------------

    pub(crate) fn decode_state(&self) -> EngineDecodeState<T> {
        match &self.exec {
            Exec::Cpu(m) => EngineDecodeState::Cpu(m.decode_state()),
            #[cfg(feature = "wgpu")]
            Exec::Wgpu(m) => EngineDecodeState::Wgpu(m.decode_state()),
        }
    }

    /// Logits [items, vocab] of each item's last row, after encoding the rows.
    pub(crate) fn decode(&self, st: &mut EngineDecodeState<T>, db: &DecodeBatch) -> Result<Vec<T>> {
        match (&self.exec, st) {
            (Exec::Cpu(m), EngineDecodeState::Cpu(s)) => m.decode(s, db),
            #[cfg(feature = "wgpu")]
            (Exec::Wgpu(m), EngineDecodeState::Wgpu(s)) => m.decode(s, db).map(cast_vec),
            #[allow(unreachable_patterns)]
            _ => Err(DartError::State("the session was made on another backend".into())),
        }
    }
}

/// A session's decode buffers and KV caches, on the engine's backend.
#[allow(clippy::large_enum_variant)]
pub(crate) enum EngineDecodeState<T: Float> {
    Cpu(DecodeState<CpuBackend<T>>),
    #[cfg(feature = "wgpu")]
    Wgpu(DecodeState<crate::backend::wgpu::WgpuBackend>),
}

fn check_moments<T>(ns: &[(String, Vec<usize>)], st: &AdamState<T>) -> Result<()> {
    if st.m.len() != ns.len() || st.v.len() != ns.len() {
        return Err(DartError::Shape(format!("optimizer state has {}/{} moments, expected {}", st.m.len(), st.v.len(), ns.len())));
    }
    for ((name, shape), (m, v)) in ns.iter().zip(st.m.iter().zip(&st.v)) {
        let n: usize = shape.iter().product();
        if m.len() != n || v.len() != n {
            return Err(DartError::Shape(format!("{name}: moments of {}/{} values, expected {n}", m.len(), v.len())));
        }
    }
    Ok(())
}
