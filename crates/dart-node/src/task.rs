//! The `AsyncTask` that runs heavy calls on the libuv pool (off the JS
//! thread) under the panic guard, and rejects with the failure's DART_* code.
use crate::errors::{guard, Code, Coded};
use napi::bindgen_prelude::*;
use napi::{Env, JsError};

/// A task on the libuv pool. The core error is kept so `reject` can build a
/// JS error with the right code on the JS thread.
pub struct EngineTask<O: Send + 'static, J: ToNapiValue + TypeName> {
    /// The work, already wrapped in the panic guard.
    work: Option<Box<dyn FnOnce() -> std::result::Result<O, (&'static str, String)> + Send>>,
    finish: fn(Env, O) -> Result<J>,
    failure: Option<(&'static str, String)>,
}

impl<O: Send + 'static, J: ToNapiValue + TypeName> Task for EngineTask<O, J> {
    type Output = O;
    type JsValue = J;

    fn compute(&mut self) -> Result<O> {
        let work = self.work.take().ok_or_else(|| Error::from_reason("task ran twice"))?;
        work().map_err(|f| {
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

pub(crate) fn task<O: Send + 'static, J: ToNapiValue + TypeName>(
    work: impl FnOnce() -> dart_core::Result<O> + Send + 'static,
    finish: fn(Env, O) -> Result<J>,
) -> AsyncTask<EngineTask<O, J>> {
    task_with(work, finish)
}

/// `task` for work whose errors are another crate's (dart-text, dart-search).
pub(crate) fn task_with<O: Send + 'static, J: ToNapiValue + TypeName, E: Coded + 'static>(
    work: impl FnOnce() -> std::result::Result<O, E> + Send + 'static,
    finish: fn(Env, O) -> Result<J>,
) -> AsyncTask<EngineTask<O, J>> {
    AsyncTask::new(EngineTask { work: Some(Box::new(move || guard(work))), finish, failure: None })
}

pub(crate) fn unit(_: Env, _: ()) -> Result<()> {
    Ok(())
}
