//! napi-rs v3 bindings of dart-core. Heavy calls run as `AsyncTask`s on the
//! libuv pool (off the JS thread); every failure, panics included, reaches JS
//! as an `Error` whose `code` is a stable DART_* string (docs/engine-api.md).
//!
//! Modules by concern: `errors` (DART_* codes, panic guard), `task` (the
//! async task wrapper), `types` (JS object shapes), `engine` and `session`
//! (the engine's two classes), `text` (Tokenizer and ChatTemplate), `search` (the BM25 index). The public items are re-exported here under the paths
//! they had when this crate was one file.
// `types` must stay first: napi-derive learns an object's JS name (e.g.
// JsEngineOptions -> EngineOptions) when it expands the struct, in source
// order, and a struct used in a signature before that shows up in index.d.ts
// under its Rust name.
mod types;

/// The engine allocates and frees large tensors on rayon's threads every
/// step; under glibc malloc each thread's 64 MB arenas kept their freed
/// blocks (seen in /proc/PID/smaps), and default training runs of the
/// 1M-parameter world model peaked at 2.2-2.4 GB resident (two runs on a
/// loaded machine). With mimalloc, which returns freed pages to the OS, the
/// same run peaks at 1.6 GB (quiet machine; about 1 GB between steps).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod engine;
mod errors;
mod session;
mod search;
mod task;
mod text;

pub use engine::JsEngine;
pub use errors::Code;
pub use session::{assign_roles_js, JsSession};
pub use task::EngineTask;
pub use search::{build_index_js, JsSearchIndex};
pub use text::{JsChatTemplate, JsTokenizer};
pub use types::{
    JsAdapterSpec, JsBackendInfo, JsEngineOptions, JsGenPlan, JsGenerateOptions, JsGenerated, JsRoleRules, JsSessionOptions, JsSlotReport,
    JsStepOptions, JsStepReport,
};
