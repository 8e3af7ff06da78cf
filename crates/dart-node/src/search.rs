//! The built-in BM25 index (dart-search): `buildIndex` and the
//! `SearchIndex` class. Building and batched search run off the JS thread.
use crate::errors::{sync_with as sync, Code};
use crate::task::{task_with, EngineTask};
use dart_search::bm25::Bm25Params;
use dart_search::{build_index, BuildOptions, BuildReport, Hit, SearchError, SearchIndex};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::path::PathBuf;
use std::sync::Arc;

#[napi(object, js_name = "BuildIndexOptions")]
pub struct JsBuildIndexOptions {
    /// Indexing threads, 1..=8 (default: the cores, at most 8).
    pub threads: Option<u32>,
    /// Indexing memory for all threads, MB (default 256 per thread; at least 15 per thread).
    pub heap_mb: Option<u32>,
    /// BM25 k1 (default 0.9, pyserini's).
    pub k1: Option<f64>,
    /// BM25 b (default 0.4, pyserini's).
    pub b: Option<f64>,
    /// Progress on stderr: a bar on a terminal, a line every 10 s otherwise (default true).
    pub progress: Option<bool>,
}

#[napi(object, js_name = "BuildIndexReport")]
pub struct JsBuildReport {
    pub passages: f64,
    pub seconds: f64,
    /// Size of the index folder in bytes.
    pub bytes: f64,
}

#[napi(object, js_name = "SearchHit")]
pub struct JsHit {
    pub id: String,
    pub title: String,
    pub text: String,
    pub score: f64,
}

#[napi(object, js_name = "Bm25Params")]
pub struct JsBm25 {
    pub k1: f64,
    pub b: f64,
}

fn build_options(o: Option<JsBuildIndexOptions>) -> BuildOptions {
    let mut opts = BuildOptions::default();
    if let Some(o) = o {
        if let Some(t) = o.threads {
            opts.threads = t as usize;
            opts.heap_mb = 256 * opts.threads;
        }
        if let Some(h) = o.heap_mb {
            opts.heap_mb = h as usize;
        }
        let d = Bm25Params::default();
        opts.bm25 = Bm25Params { k1: o.k1.map(|x| x as f32).unwrap_or(d.k1), b: o.b.map(|x| x as f32).unwrap_or(d.b) };
        if let Some(p) = o.progress {
            opts.progress = p;
        }
    }
    opts
}

/// Indexes a Search-R1 corpus (.jsonl or .jsonl.gz of {"id", "contents"})
/// into a new folder `out`.
#[napi(js_name = "buildIndex", ts_return_type = "Promise<BuildIndexReport>")]
pub fn build_index_js(corpus: String, out: String, opts: Option<JsBuildIndexOptions>) -> AsyncTask<EngineTask<BuildReport, JsBuildReport>> {
    let opts = build_options(opts);
    task_with(
        move || build_index(&PathBuf::from(&corpus), &PathBuf::from(&out), &opts),
        |_, r| Ok(JsBuildReport { passages: r.passages as f64, seconds: r.seconds, bytes: r.bytes as f64 }),
    )
}

/// An open BM25 index.
#[napi(js_name = "SearchIndex")]
pub struct JsSearchIndex {
    inner: Arc<SearchIndex>,
}

fn hits(all: Vec<Vec<Hit>>) -> Vec<Vec<JsHit>> {
    all.into_iter()
        .map(|q| q.into_iter().map(|h| JsHit { id: h.id, title: h.title, text: h.text, score: h.score as f64 }).collect())
        .collect()
}

#[napi]
impl JsSearchIndex {
    /// Opens an index folder made by buildIndex (DART_IO when missing,
    /// DART_INDEX when foreign, damaged or truncated).
    #[napi(factory)]
    pub fn open(dir: String) -> Result<JsSearchIndex, Code> {
        sync(|| Ok::<_, SearchError>(JsSearchIndex { inner: Arc::new(SearchIndex::open(&PathBuf::from(&dir))?) }))
    }

    #[napi]
    pub fn passages(&self) -> f64 {
        self.inner.passages() as f64
    }

    #[napi]
    pub fn bm25(&self) -> JsBm25 {
        let p = self.inner.bm25();
        JsBm25 { k1: p.k1 as f64, b: p.b as f64 }
    }

    /// The top `topk` passages of each query, best first (queries in parallel).
    #[napi(ts_return_type = "Promise<Array<Array<SearchHit>>>")]
    pub fn search(&self, queries: Vec<String>, topk: u32) -> AsyncTask<EngineTask<Vec<Vec<Hit>>, Vec<Vec<JsHit>>>> {
        let index = self.inner.clone();
        task_with(move || index.search(&queries, topk as usize), |_, h| Ok(hits(h)))
    }
}
