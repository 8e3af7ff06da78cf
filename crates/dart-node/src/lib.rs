//! napi-rs v3 bindings of dart-core. Heavy calls run as `AsyncTask`s on the
//! libuv pool (off the JS thread); every failure, panics included, reaches JS
//! as an `Error` whose `code` is a stable DART_* string (docs/engine-api.md).
use dart_core::adapter::parse_targets;
use dart_core::checkpoint;
use dart_core::{AdamW, AdapterSpec, DartError, EngineOptions, ModelConfig, SlotReport, StepOptions};
use napi::bindgen_prelude::*;
use napi::{Env, JsError};
use napi_derive::napi;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use dart_core::generate::{GenPlan, Generated, SampleOptions, Session};
use dart_core::roles::{assign_roles, Role, RoleRules, Source};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

type CoreEngine = dart_core::Engine<f32>;

/// A DART_* code as the napi error status, so JS sees it as `error.code`.
pub struct Code(&'static str);
impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}


fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into())
}

/// Runs engine code, turning a panic into a DART_PANIC error value.
fn guard<T>(f: impl FnOnce() -> dart_core::Result<T>) -> std::result::Result<T, (&'static str, String)> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((e.code(), e.to_string())),
        Err(p) => Err(("DART_PANIC", format!("internal panic (please report): {}", panic_message(p)))),
    }
}

fn sync<T>(f: impl FnOnce() -> dart_core::Result<T>) -> Result<T, Code> {
    guard(f).map_err(|(c, m)| Error::new(Code(c), m))
}

// A panic inside an earlier call was already reported as DART_PANIC, so a
// poisoned lock is taken over rather than turned into a second failure.
fn lock(e: &RwLock<CoreEngine>) -> RwLockWriteGuard<'_, CoreEngine> {
    e.write().unwrap_or_else(|p| p.into_inner())
}

fn read(e: &RwLock<CoreEngine>) -> RwLockReadGuard<'_, CoreEngine> {
    e.read().unwrap_or_else(|p| p.into_inner())
}

fn lock_session(s: &Mutex<Session<f32>>) -> MutexGuard<'_, Session<f32>> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn options(o: Option<JsEngineOptions>) -> dart_core::Result<EngineOptions> {
    let o = o.unwrap_or_default();
    let backend = match &o.backend {
        Some(b) => match b.as_str() {
            "cpu" | "wgpu" | "auto" => b.parse()?,
            _ => return Err(DartError::InvalidArgument(format!("backend = {b:?}, expected \"cpu\", \"wgpu\" or \"auto\""))),
        },
        None => dart_core::BackendKind::from_env(),
    };
    let threads = match o.threads {
        Some(t) if !(0.0..=1024.0).contains(&t) || t.fract() != 0.0 => {
            return Err(DartError::InvalidArgument(format!("threads = {t}, expected an integer in 0..=1024 (0 = all cores)")))
        }
        Some(t) => t as usize,
        None => 0,
    };
    let seed = o.seed.unwrap_or(0.0);
    if seed < 0.0 || seed.fract() != 0.0 || seed > 9007199254740991.0 {
        return Err(DartError::InvalidArgument(format!("seed = {seed}, expected a non-negative integer")));
    }
    Ok(EngineOptions { threads, seed: seed as u64, backend })
}

fn non_negative_int(what: &str, v: f64) -> dart_core::Result<u64> {
    if v < 0.0 || v.fract() != 0.0 || !v.is_finite() || v > 9007199254740991.0 {
        return Err(DartError::InvalidArgument(format!("{what} = {v}, expected a non-negative integer")));
    }
    Ok(v as u64)
}

fn slot_index(slot: i32) -> dart_core::Result<usize> {
    usize::try_from(slot).map_err(|_| DartError::UnknownSlot(format!("slot {slot}, expected a slot index >= 0")))
}

/// A task on the libuv pool. The core error is kept so `reject` can build a
/// JS error with the right code on the JS thread.
pub struct EngineTask<O: Send + 'static, J: ToNapiValue + TypeName> {
    work: Option<Box<dyn FnOnce() -> dart_core::Result<O> + Send>>,
    finish: fn(Env, O) -> Result<J>,
    failure: Option<(&'static str, String)>,
}

impl<O: Send + 'static, J: ToNapiValue + TypeName> Task for EngineTask<O, J> {
    type Output = O;
    type JsValue = J;

    fn compute(&mut self) -> Result<O> {
        let work = self.work.take().ok_or_else(|| Error::from_reason("task ran twice"))?;
        guard(work).map_err(|f| {
            let reason = f.1.clone();
            self.failure = Some(f);
            Error::from_reason(reason)
        })
    }

    fn resolve(&mut self, env: Env, output: O) -> Result<J> {
        (self.finish)(env, output)
    }

    fn reject(&mut self, env: Env, err: Error) -> Result<J> {
        let (code, msg) = self.failure.take().unwrap_or(("DART_PANIC", err.reason.clone()));
        let js = JsError::from(Error::new(Code(code), msg)).into_unknown(env);
        Err(Error::from(js))
    }
}

fn task<O: Send + 'static, J: ToNapiValue + TypeName>(
    work: impl FnOnce() -> dart_core::Result<O> + Send + 'static,
    finish: fn(Env, O) -> Result<J>,
) -> AsyncTask<EngineTask<O, J>> {
    AsyncTask::new(EngineTask { work: Some(Box::new(work)), finish, failure: None })
}

fn unit(_: Env, _: ()) -> Result<()> {
    Ok(())
}

#[napi(object, js_name = "EngineOptions")]
#[derive(Default)]
pub struct JsEngineOptions {
    /// Worker threads; 0 or absent = all cores.
    pub threads: Option<f64>,
    /// "cpu" | "wgpu" | "auto" (default: cpu, or the DART_BACKEND environment variable).
    #[napi(ts_type = "\"cpu\" | \"wgpu\" | \"auto\"")]
    pub backend: Option<String>,
    /// Seed of the engine RNG.
    pub seed: Option<f64>,
}

#[napi(object, js_name = "BackendInfo")]
pub struct JsBackendInfo {
    /// "cpu" or "wgpu".
    #[napi(ts_type = "\"cpu\" | \"wgpu\"")]
    pub backend: String,
    /// The wgpu adapter's name (e.g. "llvmpipe (LLVM ...)"), or the CPU description.
    pub adapter: String,
    /// DiscreteGpu | IntegratedGpu | VirtualGpu | Cpu | Other.
    pub device_type: String,
}

#[napi(object, js_name = "AdapterSpec")]
pub struct JsAdapterSpec {
    pub rank: u32,
    pub alpha: f64,
    /// Subset of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj.
    pub targets: Vec<String>,
    pub seed: f64,
    /// Std of the initial B; 0 (default) = B starts at zero.
    pub b_init_std: Option<f64>,
    pub use_rslora: Option<bool>,
}

#[napi(object, js_name = "StepOptions")]
pub struct JsStepOptions {
    pub lr: f64,
    pub beta1: Option<f64>,
    pub beta2: Option<f64>,
    pub eps: Option<f64>,
    pub weight_decay: Option<f64>,
    /// 0 or absent = no clipping.
    pub max_grad_norm: Option<f64>,
    /// Default: every slot.
    pub slots: Option<Vec<u32>>,
}

#[napi(object, js_name = "SlotReport")]
pub struct JsSlotReport {
    /// Slot index, -1 for the base model.
    pub slot: i32,
    pub tokens: u32,
    pub grad_norm: f64,
    pub clipped: bool,
    pub updated: bool,
}

#[napi(object, js_name = "StepReport")]
pub struct JsStepReport {
    pub slots: Vec<JsSlotReport>,
    pub base: Option<JsSlotReport>,
}

fn report(r: SlotReport) -> JsSlotReport {
    JsSlotReport { slot: r.slot, tokens: r.tokens as u32, grad_norm: r.grad_norm, clipped: r.clipped, updated: r.updated }
}

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
        sync(|| {
            let refs: Vec<&str> = spec.targets.iter().map(String::as_str).collect();
            let s = AdapterSpec {
                rank: spec.rank as usize,
                alpha: spec.alpha,
                targets: parse_targets(&refs)?,
                seed: non_negative_int("seed", spec.seed)?,
                b_init_std: spec.b_init_std.unwrap_or(0.0),
                use_rslora: spec.use_rslora.unwrap_or(false),
            };
            Ok(lock(&self.inner).add_adapter(s)? as u32)
        })
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
    #[napi(ts_return_type = "Promise<Float32Array>")]
    pub fn forward(&self, tokens: Int32Array, seq_lens: Int32Array, routes: Int32Array) -> AsyncTask<EngineTask<Vec<f32>, Float32Array>> {
        let inner = self.inner.clone();
        let (tokens, seq_lens, routes) = (tokens.to_vec(), seq_lens.to_vec(), routes.to_vec());
        task(move || lock(&inner).forward(&tokens, &seq_lens, &routes), |_, v| Ok(Float32Array::new(v)))
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
        let d = AdamW::default();
        let adamw = AdamW {
            lr: options.lr,
            beta1: options.beta1.unwrap_or(d.beta1),
            beta2: options.beta2.unwrap_or(d.beta2),
            eps: options.eps.unwrap_or(d.eps),
            weight_decay: options.weight_decay.unwrap_or(d.weight_decay),
            max_grad_norm: options.max_grad_norm.unwrap_or(0.0),
        };
        let slots = options.slots.map(|s| s.into_iter().map(|x| x as usize).collect());
        task(move || lock(&inner).step(&StepOptions { adamw, slots }), |_, (s, b)| {
            Ok(JsStepReport { slots: s.into_iter().map(report).collect(), base: b.map(report) })
        })
    }

    /// The slot's LoRA tensors by PEFT name (copies).
    #[napi(ts_return_type = "Record<string, Float32Array>")]
    pub fn adapter_tensors(&self, slot: i32) -> Result<HashMap<String, Float32Array>, Code> {
        sync(|| {
            let e = lock(&self.inner);
            let a = e.adapter(slot_index(slot)?)?;
            Ok(a.names_shapes().into_iter().zip(a.params()).map(|((n, _), p)| (n, Float32Array::new(p.clone()))).collect())
        })
    }

    /// The slot's accumulated gradients by PEFT name (copies).
    #[napi(ts_return_type = "Record<string, Float32Array>")]
    pub fn adapter_grads(&self, slot: i32) -> Result<HashMap<String, Float32Array>, Code> {
        sync(|| {
            let e = lock(&self.inner);
            let a = e.adapter(slot_index(slot)?)?;
            Ok(a.names_shapes().into_iter().zip(a.grads()).map(|((n, _), p)| (n, Float32Array::new(p.clone()))).collect())
        })
    }

    /// Optimizer moments of a slot by PEFT name: { step, m: {...}, v: {...} } flattened
    /// as "<name>.exp_avg" / "<name>.exp_avg_sq" plus "step" as a 1-element array.
    #[napi(ts_return_type = "Record<string, Float32Array>")]
    pub fn optimizer_state(&self, slot: i32) -> Result<HashMap<String, Float32Array>, Code> {
        sync(|| {
            let e = lock(&self.inner);
            let s = slot_index(slot)?;
            let names = e.adapter(s)?.names_shapes();
            let st = e.optimizer_state(s)?;
            let mut out = HashMap::new();
            for (i, (n, _)) in names.into_iter().enumerate() {
                out.insert(format!("{n}.exp_avg"), Float32Array::new(st.m[i].clone()));
                out.insert(format!("{n}.exp_avg_sq"), Float32Array::new(st.v[i].clone()));
            }
            out.insert("step".into(), Float32Array::new(vec![st.step as f32]));
            Ok(out)
        })
    }

    /// Overwrites one LoRA tensor of a slot (PEFT name, same length).
    #[napi]
    pub fn set_adapter_tensor(&self, slot: i32, name: String, data: Float32Array) -> Result<(), Code> {
        sync(|| {
            let mut e = lock(&self.inner);
            let slot = slot_index(slot)?;
            let ns = e.adapter_names_shapes(slot)?;
            if let Some((_, shape)) = ns.iter().find(|(n, _)| *n == name) {
                let n: usize = shape.iter().product();
                if n != data.len() {
                    return Err(DartError::Shape(format!("{name}: got {} values, expected {n}", data.len())));
                }
            }
            if let Some(i) = data.iter().position(|x| !x.is_finite()) {
                return Err(DartError::NonFinite(format!("{name}[{i}] = {}, expected a finite number", data[i])));
            }
            e.set_adapter_tensor(slot, &name, &data)
        })
    }

    /// A base model tensor by Hugging Face name (a copy).
    #[napi]
    pub fn base_tensor(&self, name: String) -> Result<Float32Array, Code> {
        sync(|| {
            let e = lock(&self.inner);
            let names = dart_core::weights::Weights::<f32>::names_shapes(e.config());
            let i = names.iter().position(|(n, _)| *n == name).ok_or_else(|| {
                DartError::MissingTensor(format!("{name:?} is not a tensor of this model (e.g. {:?})", names[0].0))
            })?;
            Ok(Float32Array::new(e.base_param(i)?))
        })
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
        sync(|| {
            let e = read(&self.inner);
            let p = &options.plan;
            let mut agents = Vec::with_capacity(p.agents.len());
            for (i, a) in p.agents.iter().enumerate() {
                let r: [i32; 4] = a.as_slice().try_into().map_err(|_| {
                    DartError::InvalidArgument(format!("plan.agents[{i}] has {} routes, expected 4 (P, R, A, O)", a.len()))
                })?;
                agents.push(r);
            }
            let plan = GenPlan { agents, writer_r: p.writer_r as usize, writer_a: p.writer_a as usize };
            let rules = RoleRules::new(options.rules.open.clone(), options.rules.close.clone())?;
            let seed = non_negative_int("seed", options.seed.unwrap_or(0.0))?;
            let session = Session::new(&e, plan, rules, seed)?;
            Ok(JsSession { engine: self.inner.clone(), inner: Arc::new(Mutex::new(session)) })
        })
    }

    /// Test hook: panics inside an async task, to prove panics become
    /// DART_PANIC errors instead of aborting node.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn debug_panic(&self) -> AsyncTask<EngineTask<(), ()>> {
        task(|| panic!("debug_panic was called"), unit)
    }
}

#[napi(object, js_name = "GenPlan")]
pub struct JsGenPlan {
    /// Per agent, the route (slot or -1 = base) for each role [P, R, A, O]
    /// of the token a position writes next.
    pub agents: Vec<Vec<i32>>,
    /// The agent that writes reasoning tokens.
    pub writer_r: u32,
    /// The agent that writes tool-call tokens.
    pub writer_a: u32,
}

#[napi(object, js_name = "RoleRules")]
pub struct JsRoleRules {
    /// Token ids of the tag that opens a tool call (e.g. `<search>`).
    pub open: Vec<i32>,
    /// Token ids of the tag that closes it (e.g. `</search>`).
    pub close: Vec<i32>,
}

#[napi(object, js_name = "SessionOptions")]
pub struct JsSessionOptions {
    pub plan: JsGenPlan,
    pub rules: JsRoleRules,
    pub seed: Option<f64>,
}

#[napi(object, js_name = "GenerateOptions")]
pub struct JsGenerateOptions {
    pub max_new_tokens: u32,
    /// 0 = greedy; default 1.
    pub temperature: Option<f64>,
    /// Default 1 (off).
    pub top_p: Option<f64>,
    /// Default 0 (off).
    pub top_k: Option<u32>,
    /// End-of-sequence token ids.
    pub eos: Option<Vec<i32>>,
    /// Stop token sequences.
    pub stop: Option<Vec<Vec<i32>>>,
    /// Pause a sequence after it closes a tool call; default true.
    pub pause_on_tool_call: Option<bool>,
}

/// Tokens of one sequence with their roles (0 P, 1 R, 2 A, 3 O), writer
/// routes and logprobs (0 for tokens the model did not write).
#[napi(object, js_name = "Generated")]
pub struct JsGenerated {
    pub seq: u32,
    pub tokens: Int32Array,
    pub roles: Uint8Array,
    pub routes: Int32Array,
    pub logprobs: Float32Array,
    /// "eos" | "stop" | "tool_call" | "length" | "running"
    pub stop: String,
}

fn generated(g: Generated) -> JsGenerated {
    JsGenerated {
        seq: g.seq as u32,
        tokens: Int32Array::new(g.tokens),
        roles: Uint8Array::new(g.roles.into_iter().map(|r| r as u8).collect()),
        routes: Int32Array::new(g.routes),
        logprobs: Float32Array::new(g.logprobs),
        stop: g.stop.name().to_string(),
    }
}

/// Batched generation over one engine: sequences, a KV cache per sequence
/// and agent, routing by role while decoding.
#[napi(js_name = "Session")]
pub struct JsSession {
    engine: Arc<RwLock<CoreEngine>>,
    inner: Arc<Mutex<Session<f32>>>,
}

#[napi]
impl JsSession {
    /// Adds a sequence with its prompt tokens (role P); returns its index.
    #[napi]
    pub fn add_sequence(&self, prompt: Int32Array) -> Result<u32, Code> {
        sync(|| Ok(lock_session(&self.inner).add_sequence(&read(&self.engine), &prompt)? as u32))
    }

    /// Appends prompt or tool-output tokens and resumes the sequence.
    #[napi]
    pub fn extend(&self, seq: u32, tokens: Int32Array, role: String) -> Result<(), Code> {
        sync(|| {
            let role = match role.as_str() {
                "prompt" => Role::Prompt,
                "observation" => Role::Observation,
                other => return Err(DartError::InvalidArgument(format!("role {other:?}, expected \"prompt\" or \"observation\""))),
            };
            lock_session(&self.inner).extend(&read(&self.engine), seq as usize, &tokens, role)
        })
    }

    /// Stops generating a sequence until it is extended again.
    #[napi]
    pub fn finish(&self, seq: u32) {
        lock_session(&self.inner).finish(seq as usize)
    }

    /// Decodes every active sequence until each stops; resolves to what
    /// each one gained in this call.
    #[napi(ts_return_type = "Promise<Array<Generated>>")]
    pub fn generate(&self, options: JsGenerateOptions) -> AsyncTask<EngineTask<Vec<Generated>, Vec<JsGenerated>>> {
        let (engine, inner) = (self.engine.clone(), self.inner.clone());
        let d = SampleOptions::default();
        let o = SampleOptions {
            max_new_tokens: options.max_new_tokens as usize,
            temperature: options.temperature.unwrap_or(d.temperature),
            top_p: options.top_p.unwrap_or(d.top_p),
            top_k: options.top_k.map(|k| k as usize).unwrap_or(0),
            eos: options.eos.unwrap_or_default(),
            stop: options.stop.unwrap_or_default(),
            pause_on_tool_call: options.pause_on_tool_call.unwrap_or(true),
        };
        task(move || lock_session(&inner).generate(&read(&engine), &o), |_, v| Ok(v.into_iter().map(generated).collect()))
    }

    /// The whole history of a sequence (for training on it).
    #[napi]
    pub fn sequence(&self, seq: u32) -> Result<JsGenerated, Code> {
        sync(|| {
            let s = lock_session(&self.inner);
            let n = s.seqs.len();
            let q = s.seqs.get(seq as usize).ok_or_else(|| DartError::InvalidArgument(format!("sequence {seq}, expected 0..{n}")))?;
            Ok(generated(Generated {
                seq: seq as usize,
                tokens: q.tokens.clone(),
                roles: q.roles.clone(),
                routes: q.routes.clone(),
                logprobs: q.logprobs.clone(),
                stop: q.stop,
            }))
        })
    }

    #[napi]
    pub fn num_sequences(&self) -> u32 {
        lock_session(&self.inner).seqs.len() as u32
    }
}

/// Roles of a trajectory from who wrote each token (0 prompt, 1 model,
/// 2 tool), by the same rule generation uses.
#[napi(js_name = "assignRoles")]
pub fn assign_roles_js(tokens: Int32Array, sources: Uint8Array, rules: JsRoleRules) -> Result<Uint8Array, Code> {
    sync(|| {
        let src = sources
            .iter()
            .enumerate()
            .map(|(i, &s)| match s {
                0 => Ok(Source::Prompt),
                1 => Ok(Source::Model),
                2 => Ok(Source::Tool),
                _ => Err(DartError::InvalidArgument(format!("sources[{i}] = {s}, expected 0 (prompt), 1 (model) or 2 (tool)"))),
            })
            .collect::<dart_core::Result<Vec<_>>>()?;
        let rules = RoleRules::new(rules.open, rules.close)?;
        Ok(Uint8Array::new(assign_roles(&tokens, &src, &rules)?.into_iter().map(|r| r as u8).collect()))
    })
}
