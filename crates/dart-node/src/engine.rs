//! The `Engine` class: loading or creating a model, LoRA slots, forward /
//! backward / step, tensor access, checkpoints, and opening sessions.
use crate::errors::{lock, read, sync, Code};
use crate::session::JsSession;
use crate::task::{task, unit, EngineTask};
use crate::types::{options, report, JsAdapterSpec, JsBackendInfo, JsEngineOptions, JsSessionOptions, JsStepOptions, JsStepReport};
use dart_core::checkpoint;
use dart_core::api::{self, non_negative_int, slot_index};
use dart_core::{ModelConfig, SlotReport};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

pub(crate) type CoreEngine = dart_core::Engine<f32>;

/// The dart-rl engine: a frozen base model with K routed LoRA slots.
#[napi(js_name = "Engine")]
pub struct JsEngine {
    inner: Arc<RwLock<CoreEngine>>,
    source: String,
}

#[napi]
impl JsEngine {
    /// Loads a Hugging Face model folder (config.json + safetensors).
    #[napi(ts_return_type = "Promise<Engine>")]
    pub fn load(dir: String, opts: Option<JsEngineOptions>) -> AsyncTask<EngineTask<(CoreEngine, String), JsEngine>> {
        task(
            move || {
                let opts = options(opts)?;
                let e = checkpoint::load_model::<f32>(&PathBuf::from(&dir), &opts)?;
                Ok((e, dir))
            },
            |_, (e, dir)| Ok(JsEngine { inner: Arc::new(RwLock::new(e)), source: dir }),
        )
    }

    /// A seeded random model from the text of a config.json.
    #[napi(factory)]
    pub fn random(config_json: String, seed: f64, opts: Option<JsEngineOptions>) -> Result<JsEngine, Code> {
        sync(|| {
            let cfg = ModelConfig::from_json(&config_json)?;
            let seed = non_negative_int("seed", seed)?;
            let e = CoreEngine::random(cfg, seed, &options(opts)?)?;
            Ok(JsEngine { inner: Arc::new(RwLock::new(e)), source: format!("random:{seed}") })
        })
    }

    /// What the engine computes on: { backend: "cpu" | "wgpu", adapter, deviceType }.
    #[napi]
    pub fn backend_info(&self) -> JsBackendInfo {
        let i = read(&self.inner).backend_info();
        JsBackendInfo { backend: i.backend, adapter: i.adapter, device_type: i.device_type }
    }

    /// The model config as JSON (Hugging Face field names).
    #[napi]
    pub fn config_json(&self) -> String {
        read(&self.inner).config().to_json()
    }

    /// Adds a LoRA slot; returns its index.
    #[napi]
    pub fn add_adapter(&self, spec: JsAdapterSpec) -> Result<u32, Code> {
        sync(|| Ok(lock(&self.inner).add_adapter(api::AdapterSpecInput::from(spec).check()?)? as u32))
    }

    #[napi]
    pub fn num_adapters(&self) -> u32 {
        read(&self.inner).num_adapters() as u32
    }

    /// Full-parameter training of the base model (off: the backbone is frozen).
    #[napi]
    pub fn set_train_base(&self, on: bool) {
        lock(&self.inner).set_train_base(on)
    }

    /// Logprob of every token (writer convention); 0 at sequence starts.
    /// With `logprobMask` (one 0/1 per token), the LM head runs only on the
    /// tokens marked 1: the others get 0 and backward ignores their dLdlogp.
    #[napi(ts_return_type = "Promise<Float32Array>")]
    pub fn forward(
        &self,
        tokens: Int32Array,
        seq_lens: Int32Array,
        routes: Int32Array,
        logprob_mask: Option<Uint8Array>,
    ) -> AsyncTask<EngineTask<Vec<f32>, Float32Array>> {
        let inner = self.inner.clone();
        let (tokens, seq_lens, routes) = (tokens.to_vec(), seq_lens.to_vec(), routes.to_vec());
        let mask = logprob_mask.map(|m| m.to_vec());
        task(move || lock(&inner).forward_wanted(&tokens, &seq_lens, &routes, mask.as_deref()), |_, v| Ok(Float32Array::new(v)))
    }

    /// Accumulates gradients of sum_t dLdlogp[t] * logp[t] from the last forward.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn backward(&self, dl_dlogp: Float32Array) -> AsyncTask<EngineTask<(), ()>> {
        let inner = self.inner.clone();
        let g = dl_dlogp.to_vec();
        task(move || lock(&inner).backward(&g), unit)
    }

    #[napi]
    pub fn zero_grad(&self) {
        lock(&self.inner).zero_grad()
    }

    /// AdamW per slot; slots that received no token keep their state bit for bit.
    #[napi(ts_return_type = "Promise<StepReport>")]
    pub fn step(&self, options: JsStepOptions) -> AsyncTask<EngineTask<(Vec<SlotReport>, Option<SlotReport>), JsStepReport>> {
        let inner = self.inner.clone();
        let options = api::StepOptionsInput::from(options).check();
        task(move || lock(&inner).step(&options), |_, (s, b)| {
            Ok(JsStepReport { slots: s.into_iter().map(report).collect(), base: b.map(report) })
        })
    }

    /// The slot's LoRA tensors by PEFT name (copies).
    #[napi(ts_return_type = "Record<string, Float32Array>")]
    pub fn adapter_tensors(&self, slot: i32) -> Result<HashMap<String, Float32Array>, Code> {
        sync(|| Ok(named(api::adapter_tensors(&read(&self.inner), slot)?)))
    }

    /// The slot's accumulated gradients by PEFT name (copies).
    #[napi(ts_return_type = "Record<string, Float32Array>")]
    pub fn adapter_grads(&self, slot: i32) -> Result<HashMap<String, Float32Array>, Code> {
        sync(|| Ok(named(api::adapter_grads(&read(&self.inner), slot)?)))
    }

    /// Optimizer moments of a slot by PEFT name: { step, m: {...}, v: {...} } flattened
    /// as "<name>.exp_avg" / "<name>.exp_avg_sq" plus "step" as a 1-element array.
    #[napi(ts_return_type = "Record<string, Float32Array>")]
    pub fn optimizer_state(&self, slot: i32) -> Result<HashMap<String, Float32Array>, Code> {
        sync(|| Ok(named(api::optimizer_state(&read(&self.inner), slot)?)))
    }

    /// Overwrites one LoRA tensor of a slot (PEFT name, same length).
    #[napi]
    pub fn set_adapter_tensor(&self, slot: i32, name: String, data: Float32Array) -> Result<(), Code> {
        sync(|| api::set_adapter_tensor(&mut lock(&self.inner), slot, &name, &data))
    }

    /// A base model tensor by Hugging Face name (a copy).
    #[napi]
    pub fn base_tensor(&self, name: String) -> Result<Float32Array, Code> {
        sync(|| Ok(Float32Array::new(api::base_tensor(&read(&self.inner), &name)?)))
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn save_adapter(&self, slot: i32, dir: String) -> AsyncTask<EngineTask<(), ()>> {
        let (inner, source) = (self.inner.clone(), self.source.clone());
        task(move || checkpoint::save_adapter(&lock(&inner), slot_index(slot)?, &PathBuf::from(dir), &source), unit)
    }

    /// Loads a PEFT LoRA folder into a new slot; resolves to its index.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn load_adapter(&self, dir: String) -> AsyncTask<EngineTask<usize, u32>> {
        let inner = self.inner.clone();
        task(move || checkpoint::load_adapter(&mut lock(&inner), &PathBuf::from(dir)), |_, s| Ok(s as u32))
    }

    /// Writes config.json + model.safetensors (f32) of the base model.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save_model(&self, dir: String) -> AsyncTask<EngineTask<(), ()>> {
        let inner = self.inner.clone();
        task(move || checkpoint::save_model(&lock(&inner), &PathBuf::from(dir)), unit)
    }

    /// Optimizer moments, step counts and RNG as optimizer.safetensors.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save_state(&self, dir: String) -> AsyncTask<EngineTask<(), ()>> {
        let inner = self.inner.clone();
        task(move || checkpoint::save_state(&lock(&inner), &PathBuf::from(dir)), unit)
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn load_state(&self, dir: String) -> AsyncTask<EngineTask<(), ()>> {
        let inner = self.inner.clone();
        task(move || checkpoint::load_state(&mut lock(&inner), &PathBuf::from(dir)), unit)
    }

    /// A generation session over this engine (see docs/engine-api.md).
    #[napi(ts_args_type = "options: SessionOptions", ts_return_type = "Session")]
    pub fn session(&self, options: JsSessionOptions) -> Result<JsSession, Code> {
        sync(|| JsSession::open(&self.inner, options))
    }

    /// Test hook: panics inside an async task, to prove panics become
    /// DART_PANIC errors instead of aborting node.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn debug_panic(&self) -> AsyncTask<EngineTask<(), ()>> {
        task(|| panic!("debug_panic was called"), unit)
    }
}

fn named(tensors: Vec<(String, Vec<f32>)>) -> HashMap<String, Float32Array> {
    tensors.into_iter().map(|(n, v)| (n, Float32Array::new(v))).collect()
}
