//! The `#[napi(object)]` structs JS passes in and gets back (options, plans,
//! reports, generated sequences), and their checked conversions to and from
//! dart-core types.
use dart_core::generate::Generated;
use dart_core::api;
use dart_core::{EngineOptions, SlotReport};
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// The most worker threads a native engine accepts.
const MAX_THREADS: usize = 1024;

// The napi structs below only give JS its types; every check lives in
// dart_core::api, shared with the WebAssembly build.
pub(crate) fn options(o: Option<JsEngineOptions>) -> dart_core::Result<EngineOptions> {
    let o = o.unwrap_or_default();
    api::EngineOptionsInput { threads: o.threads, backend: o.backend, seed: o.seed }.check(MAX_THREADS)
}

impl From<JsAdapterSpec> for api::AdapterSpecInput {
    fn from(s: JsAdapterSpec) -> Self {
        api::AdapterSpecInput { rank: s.rank, alpha: s.alpha, targets: s.targets, seed: s.seed, b_init_std: s.b_init_std, use_rslora: s.use_rslora }
    }
}

impl From<JsStepOptions> for api::StepOptionsInput {
    fn from(o: JsStepOptions) -> Self {
        api::StepOptionsInput {
            lr: o.lr,
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            weight_decay: o.weight_decay,
            max_grad_norm: o.max_grad_norm,
            slots: o.slots,
        }
    }
}

impl From<JsRoleRules> for api::RoleRulesInput {
    fn from(r: JsRoleRules) -> Self {
        api::RoleRulesInput { open: r.open, close: r.close }
    }
}

impl From<JsSessionOptions> for api::SessionOptionsInput {
    fn from(o: JsSessionOptions) -> Self {
        let p = o.plan;
        api::SessionOptionsInput {
            plan: api::GenPlanInput { agents: p.agents, writer_r: p.writer_r, writer_a: p.writer_a },
            rules: o.rules.into(),
            seed: o.seed,
        }
    }
}

impl From<JsGenerateOptions> for api::GenerateOptionsInput {
    fn from(o: JsGenerateOptions) -> Self {
        api::GenerateOptionsInput {
            max_new_tokens: o.max_new_tokens,
            temperature: o.temperature,
            top_p: o.top_p,
            top_k: o.top_k,
            eos: o.eos,
            stop: o.stop,
            pause_on_tool_call: o.pause_on_tool_call,
        }
    }
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

pub(crate) fn report(r: SlotReport) -> JsSlotReport {
    JsSlotReport { slot: r.slot, tokens: r.tokens as u32, grad_norm: r.grad_norm, clipped: r.clipped, updated: r.updated }
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

pub(crate) fn generated(g: Generated) -> JsGenerated {
    JsGenerated {
        seq: g.seq as u32,
        tokens: Int32Array::new(g.tokens),
        roles: Uint8Array::new(g.roles.into_iter().map(|r| r as u8).collect()),
        routes: Int32Array::new(g.routes),
        logprobs: Float32Array::new(g.logprobs),
        stop: g.stop.name().to_string(),
    }
}
