//! How failures reach JS: the DART_* code carried as the napi error status,
//! the panic guard that turns a Rust panic into a DART_PANIC error, and lock
//! helpers that survive the poisoning such a panic leaves behind.
use crate::engine::CoreEngine;
use dart_core::generate::Session;
use napi::bindgen_prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A DART_* code as the napi error status, so JS sees it as `error.code`.
pub struct Code(pub(crate) &'static str);
impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into())
}

/// An error value with a stable DART_* code (dart-core's and dart-text's).
pub(crate) trait Coded: std::fmt::Display {
    fn code(&self) -> &'static str;
}
impl Coded for dart_core::DartError {
    fn code(&self) -> &'static str {
        dart_core::DartError::code(self)
    }
}
impl Coded for dart_search::SearchError {
    fn code(&self) -> &'static str {
        dart_search::SearchError::code(self)
    }
}
impl Coded for dart_text::TextError {
    fn code(&self) -> &'static str {
        dart_text::TextError::code(self)
    }
}

/// Runs engine code, turning a panic into a DART_PANIC error value.
pub(crate) fn guard<T, E: Coded>(f: impl FnOnce() -> std::result::Result<T, E>) -> std::result::Result<T, (&'static str, String)> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((e.code(), e.to_string())),
        Err(p) => Err(("DART_PANIC", format!("internal panic (please report): {}", panic_message(p)))),
    }
}

pub(crate) fn sync<T>(f: impl FnOnce() -> dart_core::Result<T>) -> Result<T, Code> {
    sync_with(f)
}

/// `sync` for another crate's errors (dart-text, dart-search).
pub(crate) fn sync_with<T, E: Coded>(f: impl FnOnce() -> std::result::Result<T, E>) -> Result<T, Code> {
    guard(f).map_err(|(c, m)| Error::new(Code(c), m))
}

// A panic inside an earlier call was already reported as DART_PANIC, so a
// poisoned lock is taken over rather than turned into a second failure.
pub(crate) fn lock(e: &RwLock<CoreEngine>) -> RwLockWriteGuard<'_, CoreEngine> {
    e.write().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn read(e: &RwLock<CoreEngine>) -> RwLockReadGuard<'_, CoreEngine> {
    e.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn lock_session(s: &Mutex<Session<f32>>) -> MutexGuard<'_, Session<f32>> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}
