//! The `Session` class (batched generation with routing by role) and
//! `assignRoles`, which applies the same role rule to a finished trajectory.
use crate::engine::CoreEngine;
use crate::errors::{lock_session, read, sync, Code};
use crate::task::{task, EngineTask};
use crate::types::{generated, JsGenerateOptions, JsGenerated, JsRoleRules, JsSessionOptions};
use dart_core::api;
use dart_core::generate::{Generated, Session};
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
        let session = api::SessionOptionsInput::from(options).open(&read(engine))?;
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
        sync(|| lock_session(&self.inner).extend(&read(&self.engine), seq as usize, &tokens, api::input_role(&role)?))
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
        let o = api::GenerateOptionsInput::from(options).check();
        task(move || lock_session(&inner).generate(&read(&engine), &o), |_, v| Ok(v.into_iter().map(generated).collect()))
    }

    /// The whole history of a sequence (for training on it).
    #[napi]
    pub fn sequence(&self, seq: u32) -> Result<JsGenerated, Code> {
        sync(|| Ok(generated(api::sequence(&lock_session(&self.inner), seq)?)))
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
    sync(|| Ok(Uint8Array::new(api::trajectory_roles(&tokens, &sources, rules.into())?)))
}
