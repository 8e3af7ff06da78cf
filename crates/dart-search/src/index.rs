//! Building, opening and querying the on-disk index.
//!
//! Layout of an index folder: tantivy's files plus `dart-index.json` (what
//! this is, the BM25 parameters, the passage count), written last. A build
//! goes to `OUT.partial` and is renamed to OUT only when complete, so a
//! crash or Ctrl-C never leaves a half index under the name asked for.
use crate::analyzer::{english, terms, ANALYZER};
use crate::bm25::{Bm25Params, Bm25TermQuery};
use crate::corpus::CorpusReader;
use crate::error::{Result, SearchError};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING};
use tantivy::{Index, IndexReader, TantivyDocument, Term};

/// The file that marks a folder as a dart-rl index.
pub const INDEX_META: &str = "dart-index.json";
const FORMAT: &str = "dart-rl bm25 index";
const VERSION: u32 = 1;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Meta {
    format: String,
    version: u32,
    passages: u64,
    bm25: Bm25Params,
    analyzer: String,
    corpus: String,
    /// Every file of the index and its size when the build finished: a
    /// cheap check at open that no file was truncated or removed.
    files: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Indexing threads (tantivy allows 1..=8).
    pub threads: usize,
    /// Indexing memory, all threads together, in MB (at least 15 per thread).
    pub heap_mb: usize,
    pub bm25: Bm25Params,
    /// A progress bar on a terminal, a line every 10 s otherwise.
    pub progress: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
        BuildOptions { threads, heap_mb: 256 * threads, bm25: Bm25Params::default(), progress: true }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    pub passages: u64,
    pub seconds: f64,
    /// Size of the index folder.
    pub bytes: u64,
}

/// A search result: the passage and its BM25 score.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub title: String,
    pub text: String,
    pub score: f32,
}

struct Fields {
    id: Field,
    title: Field,
    text: Field,
    contents: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let id = b.add_text_field("id", STRING | STORED);
    let title = b.add_text_field("title", STORED);
    let text = b.add_text_field("text", STORED);
    // Title and text are searched together, as pyserini indexes `contents`.
    let indexing = TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqs);
    let contents = b.add_text_field("contents", TextOptions::default().set_indexing_options(indexing));
    (b.build(), Fields { id, title, text, contents })
}

fn tantivy_err(what: &str, dir: &Path, e: impl std::fmt::Display) -> SearchError {
    SearchError::Index(format!("{}: {what}: {e}", dir.display()))
}

/// The index's own files (tantivy's lock files excluded) and their sizes.
fn file_sizes(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| SearchError::Io(format!("{}: {e}", dir.display())))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let m = e.metadata().map_err(|e| SearchError::Io(format!("{name}: {e}")))?;
        if m.is_file() && !name.ends_with(".lock") && name != INDEX_META {
            out.insert(name, m.len());
        }
    }
    Ok(out)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|it| it.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()).unwrap_or(0)
}

/// Indexes `corpus` into the folder `out` (which must not exist yet).
pub fn build_index(corpus: &Path, out: &Path, opts: &BuildOptions) -> Result<BuildReport> {
    if !(1..=8).contains(&opts.threads) {
        return Err(SearchError::InvalidArgument(format!("threads = {}, expected 1..=8 (tantivy's indexing threads)", opts.threads)));
    }
    if opts.heap_mb < 15 * opts.threads || opts.heap_mb > 4000 * opts.threads {
        return Err(SearchError::InvalidArgument(format!(
            "heap = {} MB for {} threads, expected 15..=4000 MB per thread",
            opts.heap_mb, opts.threads
        )));
    }
    if !(opts.bm25.k1 >= 0.0 && opts.bm25.k1.is_finite() && (0.0..=1.0).contains(&opts.bm25.b)) {
        return Err(SearchError::InvalidArgument(format!("bm25 k1 = {}, b = {}: expected k1 >= 0 and b in [0, 1]", opts.bm25.k1, opts.bm25.b)));
    }
    if out.exists() {
        return Err(SearchError::InvalidArgument(format!("{} already exists: remove it or choose another output folder", out.display())));
    }
    let mut reader = CorpusReader::open(corpus)?;
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| SearchError::Io(format!("{}: {e}", partial.display())))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| SearchError::Io(format!("{}: {e}", partial.display())))?;
    let (schema, f) = schema();
    let index = Index::create_in_dir(&partial, schema).map_err(|e| tantivy_err("create", &partial, e))?;
    index.tokenizers().register(ANALYZER, english());
    let mut writer = index
        .writer_with_num_threads::<TantivyDocument>(opts.threads, opts.heap_mb * 1_000_000)
        .map_err(|e| tantivy_err("writer", &partial, e))?;
    let start = Instant::now();
    let bar = opts.progress.then(|| Progress::new(reader.bytes_total));
    let mut passages = 0u64;
    while let Some(p) = reader.next_passage()? {
        let mut doc = TantivyDocument::default();
        doc.add_text(f.id, &p.id);
        doc.add_text(f.title, &p.title);
        doc.add_text(f.text, &p.text);
        doc.add_text(f.contents, format!("{}\n{}", p.title, p.text));
        writer.add_document(doc).map_err(|e| tantivy_err("add passage", &partial, e))?;
        passages += 1;
        if passages % 1024 == 0 {
            if let Some(b) = &bar {
                b.update(passages, reader.bytes_read.load(Ordering::Relaxed), start);
            }
        }
    }
    if passages == 0 {
        return Err(SearchError::Corpus(format!("{}: no passages", corpus.display())));
    }
    writer.commit().map_err(|e| tantivy_err("commit", &partial, e))?;
    writer.wait_merging_threads().map_err(|e| tantivy_err("merge", &partial, e))?;
    let meta = Meta {
        format: FORMAT.into(),
        version: VERSION,
        passages,
        bm25: opts.bm25,
        analyzer: ANALYZER.into(),
        corpus: corpus.display().to_string(),
        files: file_sizes(&partial)?,
    };
    let json = serde_json::to_string_pretty(&meta).map_err(|e| SearchError::Io(e.to_string()))?;
    std::fs::write(partial.join(INDEX_META), json).map_err(|e| SearchError::Io(format!("{}: {e}", partial.display())))?;
    std::fs::rename(&partial, out).map_err(|e| SearchError::Io(format!("{} -> {}: {e}", partial.display(), out.display())))?;
    let seconds = start.elapsed().as_secs_f64();
    if let Some(b) = bar {
        b.finish(passages, seconds);
    }
    Ok(BuildReport { passages, seconds, bytes: dir_size(out) })
}

/// Build progress: passages, passages/s and ETA (from the bytes read).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: std::cell::Cell<Instant>,
    total: u64,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template("indexing {bar:30} {percent:>3}% {msg} ETA {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Progress { bar, last_line: std::cell::Cell::new(Instant::now()), total }
    }
    fn update(&self, passages: u64, bytes: u64, start: Instant) {
        let rate = passages as f64 / start.elapsed().as_secs_f64().max(1e-9);
        match &self.bar {
            Some(b) => {
                b.set_position(bytes);
                b.set_message(format!("{passages} passages, {rate:.0}/s"));
            }
            None if self.last_line.get().elapsed() >= Duration::from_secs(10) => {
                self.last_line.set(Instant::now());
                let pct = if self.total > 0 { 100.0 * bytes as f64 / self.total as f64 } else { 0.0 };
                eprintln!("indexing: {passages} passages, {rate:.0}/s, {pct:.1}% of the corpus read");
            }
            None => {}
        }
    }
    fn finish(self, passages: u64, seconds: f64) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
        eprintln!("indexed {passages} passages in {seconds:.1}s ({:.0}/s)", passages as f64 / seconds.max(1e-9));
    }
}

/// An open index.
pub struct SearchIndex {
    reader: IndexReader,
    fields: Fields,
    analyzer: tantivy::tokenizer::TextAnalyzer,
    meta: Meta,
    dir: PathBuf,
}

impl SearchIndex {
    /// Opens an index folder made by `build_index`; a missing folder, a
    /// folder that is not such an index, or a damaged one are errors.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(SearchError::Io(format!("no index at {} (build one with `pnpm pipeline index --corpus FILE --out DIR`)", dir.display())));
        }
        let meta_path = dir.join(INDEX_META);
        let text = std::fs::read_to_string(&meta_path).map_err(|_| {
            SearchError::Index(format!("{} is not a dart-rl index (no {INDEX_META}; an unfinished build is named OUT.partial)", dir.display()))
        })?;
        let meta: Meta = serde_json::from_str(&text).map_err(|e| SearchError::Index(format!("{}: {INDEX_META} is damaged ({e})", dir.display())))?;
        if meta.format != FORMAT || meta.version != VERSION {
            return Err(SearchError::Index(format!(
                "{}: {INDEX_META} says {:?} version {}, this build reads {FORMAT:?} version {VERSION}",
                dir.display(),
                meta.format,
                meta.version
            )));
        }
        for (name, size) in &meta.files {
            match std::fs::metadata(dir.join(name)) {
                Ok(m) if m.len() == *size => {}
                Ok(m) => {
                    return Err(SearchError::Index(format!(
                        "{} is damaged or truncated: {name} has {} bytes, the build wrote {size}; rebuild it with `pnpm pipeline index`",
                        dir.display(),
                        m.len()
                    )))
                }
                Err(_) => return Err(SearchError::Index(format!("{} is damaged: {name} is missing; rebuild it with `pnpm pipeline index`", dir.display()))),
            }
        }
        let damaged = |e: tantivy::TantivyError| SearchError::Index(format!("{} is damaged or truncated ({e}); rebuild it with `pnpm pipeline index`", dir.display()));
        let index = Index::open_in_dir(dir).map_err(damaged)?;
        let (expected, fields) = schema();
        if index.schema() != expected {
            return Err(SearchError::Index(format!("{}: the index's fields are not those of a dart-rl index", dir.display())));
        }
        index.tokenizers().register(ANALYZER, english());
        let reader = index.reader().map_err(damaged)?;
        let found = reader.searcher().num_docs();
        if found != meta.passages {
            return Err(SearchError::Index(format!(
                "{} holds {found} passages but {INDEX_META} says {}: damaged or truncated; rebuild it",
                dir.display(),
                meta.passages
            )));
        }
        Ok(SearchIndex { reader, fields, analyzer: english(), meta, dir: dir.to_path_buf() })
    }

    pub fn passages(&self) -> u64 {
        self.meta.passages
    }

    pub fn bm25(&self) -> Bm25Params {
        self.meta.bm25
    }

    /// The BM25 query of a text: one clause per distinct analysed term,
    /// boosted by its count (pyserini's bag of words). None when no term is
    /// left (only stop words or punctuation).
    fn query(&self, text: &str) -> Option<BooleanQuery> {
        let mut counts: BTreeMap<String, f32> = BTreeMap::new();
        for t in terms(&mut self.analyzer.clone(), text) {
            *counts.entry(t).or_insert(0.0) += 1.0;
        }
        if counts.is_empty() {
            return None;
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = counts
            .into_iter()
            .map(|(t, n)| {
                let q = Bm25TermQuery { term: Term::from_field_text(self.fields.contents, &t), params: self.meta.bm25, boost: n };
                (Occur::Should, Box::new(q) as Box<dyn Query>)
            })
            .collect();
        Some(BooleanQuery::new(clauses))
    }

    /// The top `k` passages of each query (in parallel), best first.
    pub fn search(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Hit>>> {
        if k == 0 {
            return Err(SearchError::InvalidArgument("topk = 0, expected at least 1".into()));
        }
        let searcher = self.reader.searcher();
        queries
            .par_iter()
            .map(|q| {
                let Some(query) = self.query(q) else { return Ok(Vec::new()) };
                let top = searcher.search(&query, &TopDocs::with_limit(k).order_by_score()).map_err(|e| tantivy_err("search", &self.dir, e))?;
                top.into_iter()
                    .map(|(score, addr)| {
                        let doc: TantivyDocument = searcher.doc(addr).map_err(|e| tantivy_err("read passage", &self.dir, e))?;
                        let get = |f: Field| doc.get_first(f).and_then(|v| v.as_str()).unwrap_or("").to_string();
                        Ok(Hit { id: get(self.fields.id), title: get(self.fields.title), text: get(self.fields.text), score })
                    })
                    .collect()
            })
            .collect()
    }
}
