//! The built-in search of dart-rl: an on-disk BM25 index over a corpus in
//! the Search-R1 layout (`{"id", "contents": "\"Title\"\ntext"}` per JSONL
//! line, optionally gzipped), built in constant memory with several
//! threads, and queried in batches (top-k with scores, id, title, text).
//!
//! The index is tantivy's; `bm25` is the scoring, with pyserini's
//! parameters (k1 = 0.9, b = 0.4) by default because Search-R1's BM25
//! retriever is pyserini; `analyzer` is the English analysis (lower case,
//! English stop words, stemming) applied to passages and queries alike.
pub mod analyzer;
pub mod bm25;
pub mod corpus;
pub mod error;
pub mod index;

pub use error::{Result, SearchError};
pub use index::{build_index, BuildOptions, BuildReport, Hit, SearchIndex, INDEX_META};
