//! The `Session` class (batched generation with routing by role) and
//! `assignRoles`, which applies the same role rule to a finished trajectory.
use crate::engine::CoreEngine;
use crate::errors::{lock_session, read, sync, Code};
use crate::task::{task, EngineTask};
use crate::types::{generated, non_negative_int, JsGenerateOptions, JsGenerated, JsRoleRules, JsSessionOptions};
use dart_core::generate::{GenPlan, Generated, SampleOptions, Session};
use dart_core::roles::{assign_roles, Role, RoleRules, Source};
use dart_core::DartError;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::sync::{Arc, Mutex, RwLock};

/// Batched generation over one engine: sequences, a KV cache per sequence
/// and agent, routing by role while decoding.
#[napi(js_name = "Session")]
pub struct JsSession {
    engine: Arc<RwLock<CoreEngine>>,
    inner: Arc<Mutex<Session<f32>>>,
}

// Built here, not in engine.rs, so the fields can stay private (a `pub`
// field of a napi class would become a JS property).
impl JsSession {
    /// The body of `Engine.session`: checks the plan and seed, then opens a
    /// session while holding the engine's read lock.
    pub(crate) fn open(engine: &Arc<RwLock<CoreEngine>>, options: JsSessionOptions) -> dart_core::Result<JsSession> {
        let e = read(engine);
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
        Ok(JsSession { engine: engine.clone(), inner: Arc::new(Mutex::new(session)) })
    }
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
