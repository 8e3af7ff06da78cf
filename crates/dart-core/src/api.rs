//! What a binding receives, checked once for every binding: the napi addon
//! (dart-node) and the WebAssembly build (dart-wasm) marshal JS values into
//! these inputs and call the functions here, so an argument is accepted or
//! refused, with the same message, whichever build a user runs.
//!
//! The inputs use the JS field names (camelCase) and JS numbers (f64), so
//! the WASM build can deserialize them straight from JS objects; a field
//! this API does not know is refused, not ignored.
use crate::adapter::parse_targets;
use crate::backend::BackendKind;
use crate::engine::{Engine, EngineOptions, StepOptions};
use crate::error::{DartError, Result};
use crate::float::Float;
use crate::generate::{GenPlan, Generated, SampleOptions, Session};
use crate::optim::AdamW;
use crate::roles::{assign_roles, Role, RoleRules, Source};
use crate::weights::Weights;
use crate::AdapterSpec;
use serde::Deserialize;

/// The largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9007199254740991.0;

pub fn non_negative_int(what: &str, v: f64) -> Result<u64> {
    if v < 0.0 || v.fract() != 0.0 || !v.is_finite() || v > MAX_SAFE_INTEGER {
        return Err(DartError::InvalidArgument(format!("{what} = {v}, expected a non-negative integer")));
    }
    Ok(v as u64)
}

pub fn slot_index(slot: i32) -> Result<usize> {
    usize::try_from(slot).map_err(|_| DartError::UnknownSlot(format!("slot {slot}, expected a slot index >= 0")))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EngineOptionsInput {
    /// Worker threads; 0 or absent = all cores.
    pub threads: Option<f64>,
    /// "cpu" | "wgpu" | "auto" (absent: the DART_BACKEND environment variable, else cpu).
    pub backend: Option<String>,
    pub seed: Option<f64>,
}

impl EngineOptionsInput {
    /// `max_threads`: the most this build can run (1 in single-threaded WASM).
    pub fn check(self, max_threads: usize) -> Result<EngineOptions> {
        let backend = match &self.backend {
            Some(b) => match b.as_str() {
                "cpu" | "wgpu" | "auto" => b.parse()?,
                _ => return Err(DartError::InvalidArgument(format!("backend = {b:?}, expected \"cpu\", \"wgpu\" or \"auto\""))),
            },
            None => BackendKind::from_env(),
        };
        let threads = match self.threads {
            Some(t) if !(0.0..=max_threads as f64).contains(&t) || t.fract() != 0.0 => {
                return Err(DartError::InvalidArgument(if max_threads == 1 {
                    format!("threads = {t}, expected 0 or 1 (this build runs on one thread)")
                } else {
                    format!("threads = {t}, expected an integer in 0..={max_threads} (0 = all cores)")
                }))
            }
            Some(t) => t as usize,
            None => 0,
        };
        let seed = non_negative_int("seed", self.seed.unwrap_or(0.0))?;
        Ok(EngineOptions { threads, seed, backend })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdapterSpecInput {
    pub rank: u32,
    pub alpha: f64,
    /// Subset of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj.
    pub targets: Vec<String>,
    pub seed: f64,
    /// Std of the initial B; 0 (default) = B starts at zero.
    pub b_init_std: Option<f64>,
    pub use_rslora: Option<bool>,
}

impl AdapterSpecInput {
    pub fn check(self) -> Result<AdapterSpec> {
        let refs: Vec<&str> = self.targets.iter().map(String::as_str).collect();
        Ok(AdapterSpec {
            rank: self.rank as usize,
            alpha: self.alpha,
            targets: parse_targets(&refs)?,
            seed: non_negative_int("seed", self.seed)?,
            b_init_std: self.b_init_std.unwrap_or(0.0),
            use_rslora: self.use_rslora.unwrap_or(false),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepOptionsInput {
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

impl StepOptionsInput {
    pub fn check(self) -> StepOptions {
        let d = AdamW::default();
        let adamw = AdamW {
            lr: self.lr,
            beta1: self.beta1.unwrap_or(d.beta1),
            beta2: self.beta2.unwrap_or(d.beta2),
            eps: self.eps.unwrap_or(d.eps),
            weight_decay: self.weight_decay.unwrap_or(d.weight_decay),
            max_grad_norm: self.max_grad_norm.unwrap_or(0.0),
        };
        StepOptions { adamw, slots: self.slots.map(|s| s.into_iter().map(|x| x as usize).collect()) }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenPlanInput {
    /// Per agent, the route (slot or -1 = base) for each role [P, R, A, O].
    pub agents: Vec<Vec<i32>>,
    pub writer_r: u32,
    pub writer_a: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRulesInput {
    pub open: Vec<i32>,
    pub close: Vec<i32>,
}

impl RoleRulesInput {
    pub fn check(self) -> Result<RoleRules> {
        RoleRules::new(self.open, self.close)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionOptionsInput {
    pub plan: GenPlanInput,
    pub rules: RoleRulesInput,
    pub seed: Option<f64>,
}

impl SessionOptionsInput {
    /// Opens a session over `engine` with the checked plan, rules and seed.
    pub fn open<T: Float>(self, engine: &Engine<T>) -> Result<Session<T>> {
        let p = self.plan;
        let mut agents = Vec::with_capacity(p.agents.len());
        for (i, a) in p.agents.iter().enumerate() {
            let r: [i32; 4] = a.as_slice().try_into().map_err(|_| {
                DartError::InvalidArgument(format!("plan.agents[{i}] has {} routes, expected 4 (P, R, A, O)", a.len()))
            })?;
            agents.push(r);
        }
        let plan = GenPlan { agents, writer_r: p.writer_r as usize, writer_a: p.writer_a as usize };
        let rules = self.rules.check()?;
        let seed = non_negative_int("seed", self.seed.unwrap_or(0.0))?;
        Session::new(engine, plan, rules, seed)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateOptionsInput {
    pub max_new_tokens: u32,
    /// 0 = greedy; default 1.
    pub temperature: Option<f64>,
    /// Default 1 (off).
    pub top_p: Option<f64>,
    /// Default 0 (off).
    pub top_k: Option<u32>,
    pub eos: Option<Vec<i32>>,
    pub stop: Option<Vec<Vec<i32>>>,
    /// Pause a sequence after it closes a tool call; default true.
    pub pause_on_tool_call: Option<bool>,
}

impl GenerateOptionsInput {
    pub fn check(self) -> SampleOptions {
        let d = SampleOptions::default();
        SampleOptions {
            max_new_tokens: self.max_new_tokens as usize,
            temperature: self.temperature.unwrap_or(d.temperature),
            top_p: self.top_p.unwrap_or(d.top_p),
            top_k: self.top_k.map(|k| k as usize).unwrap_or(0),
            eos: self.eos.unwrap_or_default(),
            stop: self.stop.unwrap_or_default(),
            pause_on_tool_call: self.pause_on_tool_call.unwrap_or(true),
        }
    }
}

/// The role of tokens a caller appends to a sequence.
pub fn input_role(role: &str) -> Result<Role> {
    match role {
        "prompt" => Ok(Role::Prompt),
        "observation" => Ok(Role::Observation),
        other => Err(DartError::InvalidArgument(format!("role {other:?}, expected \"prompt\" or \"observation\""))),
    }
}

/// The slot's LoRA tensors by PEFT name (copies).
pub fn adapter_tensors<T: Float>(e: &Engine<T>, slot: i32) -> Result<Vec<(String, Vec<T>)>> {
    let a = e.adapter(slot_index(slot)?)?;
    Ok(a.names_shapes().into_iter().zip(a.params()).map(|((n, _), p)| (n, p.clone())).collect())
}

/// The slot's accumulated gradients by PEFT name (copies).
pub fn adapter_grads<T: Float>(e: &Engine<T>, slot: i32) -> Result<Vec<(String, Vec<T>)>> {
    let a = e.adapter(slot_index(slot)?)?;
    Ok(a.names_shapes().into_iter().zip(a.grads()).map(|((n, _), p)| (n, p.clone())).collect())
}

/// Optimizer moments of a slot as "<name>.exp_avg" / "<name>.exp_avg_sq",
/// plus "step" as a one-element tensor.
pub fn optimizer_state<T: Float>(e: &Engine<T>, slot: i32) -> Result<Vec<(String, Vec<T>)>> {
    let s = slot_index(slot)?;
    let names = e.adapter(s)?.names_shapes();
    let st = e.optimizer_state(s)?;
    let mut out = Vec::with_capacity(2 * names.len() + 1);
    for (i, (n, _)) in names.into_iter().enumerate() {
        out.push((format!("{n}.exp_avg"), st.m[i].clone()));
        out.push((format!("{n}.exp_avg_sq"), st.v[i].clone()));
    }
    out.push(("step".into(), vec![T::from_f64(st.step as f64)]));
    Ok(out)
}

/// Overwrites one LoRA tensor of a slot (PEFT name, same length, finite).
pub fn set_adapter_tensor<T: Float>(e: &mut Engine<T>, slot: i32, name: &str, data: &[T]) -> Result<()> {
    let slot = slot_index(slot)?;
    let ns = e.adapter_names_shapes(slot)?;
    if let Some((_, shape)) = ns.iter().find(|(n, _)| n == name) {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(DartError::Shape(format!("{name}: got {} values, expected {n}", data.len())));
        }
    }
    if let Some(i) = data.iter().position(|x| !x.as_f64().is_finite()) {
        return Err(DartError::NonFinite(format!("{name}[{i}] = {}, expected a finite number", data[i].as_f64())));
    }
    e.set_adapter_tensor(slot, name, data)
}

/// A base model tensor by Hugging Face name (a copy).
pub fn base_tensor<T: Float>(e: &Engine<T>, name: &str) -> Result<Vec<T>> {
    let names = Weights::<T>::names_shapes(e.config());
    let i = names.iter().position(|(n, _)| n == name).ok_or_else(|| {
        DartError::MissingTensor(format!("{name:?} is not a tensor of this model (e.g. {:?})", names[0].0))
    })?;
    e.base_param(i)
}

/// The whole history of a sequence of a session.
pub fn sequence<T: Float>(s: &Session<T>, seq: u32) -> Result<Generated> {
    let n = s.seqs.len();
    let q = s.seqs.get(seq as usize).ok_or_else(|| DartError::InvalidArgument(format!("sequence {seq}, expected 0..{n}")))?;
    Ok(Generated {
        seq: seq as usize,
        tokens: q.tokens.clone(),
        roles: q.roles.clone(),
        routes: q.routes.clone(),
        logprobs: q.logprobs.clone(),
        stop: q.stop,
    })
}

/// Roles (0 P, 1 R, 2 A, 3 O) of a finished trajectory from who wrote each
/// token (0 prompt, 1 model, 2 tool), by the rule generation uses.
pub fn trajectory_roles(tokens: &[i32], sources: &[u8], rules: RoleRulesInput) -> Result<Vec<u8>> {
    let src = sources
        .iter()
        .enumerate()
        .map(|(i, &s)| match s {
            0 => Ok(Source::Prompt),
            1 => Ok(Source::Model),
            2 => Ok(Source::Tool),
            _ => Err(DartError::InvalidArgument(format!("sources[{i}] = {s}, expected 0 (prompt), 1 (model) or 2 (tool)"))),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(assign_roles(tokens, &src, &rules.check()?)?.into_iter().map(|r| r as u8).collect())
}
