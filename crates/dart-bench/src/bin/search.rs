//! dart-bench search: the benchmark of the built-in BM25 index
//! (crates/dart-search; issue 10, point 7) -> bench/results/search.json.
//!
//! `search corpus --dir DIR [--passages N] [--queries Q] [--quick]` writes a
//! deterministic synthetic corpus in Search-R1's layout to DIR/corpus.jsonl
//! (N passages, default 1,000,000, --quick 20,000: a title of 1-4 words and
//! 60-160 words of text, mean ~100, drawn from a Zipf-distributed synthetic
//! vocabulary of 50k words plus common English function words, with a few
//! topic words per passage, so document frequencies and term repeats look
//! like natural text), Q queries (default 1024) of 3-8 words taken from
//! random passages to DIR/queries.jsonl, and what was generated to
//! DIR/corpus.json. A separate process, so the benchmark's peak RSS is the
//! index's alone.
//!
//! `search run --dir DIR --out FILE [--threads N] [--ref-json FILE | --ref-null REASON]`
//! then builds the index of DIR/corpus.jsonl (threads = the cores, at most
//! tantivy's 8; 256 MB of indexing heap per thread, dart-search's default),
//! recording build seconds, passages/s, CPU seconds, index bytes (by file
//! kind), segments and peak RSS (VmHWM); opens it and runs the queries at
//! batch 1 (one query per `search` call) and batch 64, top 10: latency
//! p50/p99 per call and queries/s; writes the top-10 ids and scores of every
//! query to DIR/top10-dart.jsonl; compares them with the reference run
//! (scripts/bench/bm25_ref.py: bm25s over the same files, run first, its
//! output named by --ref-json) as top-10 overlap and queries/s ratios; adds
//! diagnostics of where query time goes (scoring alone, tantivy's own BM25
//! with block-max WAND, postings per query) and the linear extrapolation to
//! the 21M passages of wiki-18.
//! See scripts/bench/run.sh (`pnpm bench`).
use dart_bench::common::{cpu_flags, cpu_model, load_reference, loadavg, median, nproc, round, write_result, Args, Rng, RunStart};
use dart_search::analyzer::{english, terms, ANALYZER, LUCENE_ENGLISH_STOP_WORDS};
use dart_search::bm25::{Bm25Params, Bm25TermQuery};
use dart_search::corpus::CorpusReader;
use dart_search::{build_index, BuildOptions, SearchIndex};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

const DEFAULT_PASSAGES: usize = 1_000_000;
const QUICK_PASSAGES: usize = 20_000;
const DEFAULT_QUERIES: usize = 1024;
const TOPK: usize = 10;
const BATCH: usize = 64;
/// Passages of wiki-18 (Search-R1's corpus, psgs_w100 of DPR).
const WIKI18_PASSAGES: f64 = 21_015_324.0;
/// Issue 10 targets against the reference (bm25s / pyserini).
const TARGET_OVERLAP: f64 = 0.95;
const TARGET_QPS_RATIO: f64 = 2.0;

// ---- the synthetic corpus ----------------------------------------------------

const VOCAB: usize = 50_000;
/// Zipf-Mandelbrot exponent and offset of the content words: p(r) ~ 1/(r + q)^s.
/// The offset stands for the function words above them (the most frequent
/// content word is ~0.3% of content tokens, as "first", "city" in English).
const ZIPF_S: f64 = 1.0;
const ZIPF_Q: f64 = 50.0;
/// Share of tokens that are function words (~45% in English prose).
const FUNCTION_SHARE: f64 = 0.45;
/// Share of content tokens that repeat one of the passage's topic words.
const TOPIC_SHARE: f64 = 0.12;
/// Share of tokens that are numbers (years, counts).
const NUMBER_SHARE: f64 = 0.015;
/// English function words with rough relative frequencies (per 1000 tokens
/// of encyclopedic text). Lucene's stop list removes only some of them
/// ("the", "of", ...); the others ("he", "his", "from", "which", ...) stay as
/// very frequent terms, as in wiki-18.
const FUNCTION_WORDS: [(&str, f64); 56] = [
    ("the", 60.0), ("of", 33.0), ("and", 27.0), ("in", 24.0), ("a", 19.0), ("to", 19.0), ("was", 13.0), ("is", 9.0),
    ("for", 8.0), ("on", 7.0), ("as", 7.0), ("by", 7.0), ("with", 6.0), ("he", 6.0), ("at", 5.0), ("from", 5.0),
    ("his", 5.0), ("that", 5.0), ("it", 4.0), ("an", 3.5), ("were", 3.5), ("which", 3.0), ("also", 3.0), ("are", 3.0),
    ("has", 2.5), ("had", 2.5), ("its", 2.0), ("after", 2.0), ("first", 2.0), ("one", 2.0), ("who", 2.0), ("her", 2.0),
    ("be", 2.0), ("this", 2.0), ("or", 2.0), ("their", 1.5), ("she", 1.5), ("but", 1.2), ("they", 1.2), ("two", 1.2),
    ("new", 1.2), ("been", 1.0), ("other", 1.0), ("not", 1.0), ("when", 1.0), ("into", 0.8), ("during", 0.8), ("most", 0.8),
    ("over", 0.8), ("there", 0.6), ("these", 0.5), ("such", 0.4), ("then", 0.4), ("will", 0.4), ("if", 0.3), ("no", 0.3),
];
const ONSETS: [&str; 30] = [
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "ch", "cl", "dr", "gr", "kr", "pl",
    "pr", "sh", "st", "th", "tr",
];
const VOWELS: [&str; 10] = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y"];
const CODAS: [&str; 13] = ["", "", "", "n", "r", "l", "s", "t", "m", "k", "nd", "st", "rt"];

fn unit(rng: &mut Rng) -> f64 {
    (rng.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Draws an index from cumulative weights.
fn draw(cdf: &[f64], rng: &mut Rng) -> usize {
    let u = unit(rng) * cdf[cdf.len() - 1];
    cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights
        .map(|w| {
            acc += w;
            acc
        })
        .collect()
}

/// The synthetic vocabulary, by frequency rank: pronounceable, distinct,
/// none a function word; frequent words are shorter (1-2 syllables in the
/// top 300, 2-3 to rank 5000, 2-4 after).
fn vocabulary(rng: &mut Rng) -> Vec<String> {
    let reserved: HashSet<&str> = FUNCTION_WORDS.iter().map(|(w, _)| *w).chain(LUCENE_ENGLISH_STOP_WORDS).chain(["s"]).collect();
    let mut seen = HashSet::new();
    let mut words = Vec::with_capacity(VOCAB);
    while words.len() < VOCAB {
        let r = words.len();
        let syllables = if r < 300 { 1 + rng.below(2) } else if r < 5000 { 2 + rng.below(2) } else { 2 + rng.below(3) };
        let mut w = String::new();
        for _ in 0..syllables {
            w.push_str(ONSETS[rng.below(ONSETS.len())]);
            w.push_str(VOWELS[rng.below(VOWELS.len())]);
        }
        w.push_str(CODAS[rng.below(CODAS.len())]);
        if !reserved.contains(w.as_str()) && seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

struct Generator {
    vocab: Vec<String>,
    content_cdf: Vec<f64>,
    function_cdf: Vec<f64>,
    rng: Rng,
}

impl Generator {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let vocab = vocabulary(&mut rng);
        let content_cdf = cumulative((0..VOCAB).map(|r| 1.0 / (r as f64 + 1.0 + ZIPF_Q).powf(ZIPF_S)));
        let function_cdf = cumulative(FUNCTION_WORDS.iter().map(|(_, w)| *w));
        Generator { vocab, content_cdf, function_cdf, rng }
    }

    /// A topic word: log-uniform over ranks 50..VOCAB (mid-frequency and rare words).
    fn topic_rank(&mut self) -> usize {
        let lo = 50f64.ln();
        let hi = (VOCAB as f64).ln();
        ((lo + unit(&mut self.rng) * (hi - lo)).exp() as usize).min(VOCAB - 1)
    }

    fn word(&mut self, topics: &[usize]) -> String {
        let u = unit(&mut self.rng);
        if u < NUMBER_SHARE {
            return if self.rng.below(2) == 0 { (1800 + self.rng.below(221)).to_string() } else { (2 + self.rng.below(998)).to_string() };
        }
        if u < NUMBER_SHARE + FUNCTION_SHARE {
            return FUNCTION_WORDS[draw(&self.function_cdf, &mut self.rng)].0.to_string();
        }
        let r = if unit(&mut self.rng) < TOPIC_SHARE { topics[self.rng.below(topics.len())] } else { draw(&self.content_cdf, &mut self.rng) };
        self.vocab[r].clone()
    }

    /// One passage: (title words, text words, text with capitals and punctuation).
    fn passage(&mut self) -> (Vec<String>, Vec<String>, String) {
        let topics: Vec<usize> = (0..2 + self.rng.below(4)).map(|_| self.topic_rank()).collect();
        let title_len = 1 + self.rng.below(4);
        let title: Vec<String> = (0..title_len)
            .map(|i| {
                let r = if i < topics.len() && self.rng.below(4) != 0 { topics[i] } else { draw(&self.content_cdf, &mut self.rng) };
                capitalize(&self.vocab[r])
            })
            .collect();
        // 60..=160 words, mean ~100.
        let n = 60 + (100.0 * unit(&mut self.rng).powf(1.5)).round() as usize;
        let mut words = Vec::with_capacity(n);
        let mut text = String::with_capacity(n * 7);
        let mut sentence_left = 0;
        while words.len() < n {
            let mut w = self.word(&topics);
            if sentence_left == 0 {
                sentence_left = 8 + self.rng.below(18);
                w = capitalize(&w);
                // Sentences often open on the title.
                if self.rng.below(5) == 0 && words.len() + title.len() < n {
                    for t in &title {
                        if !text.is_empty() {
                            text.push(' ');
                        }
                        text.push_str(t);
                        words.push(t.clone());
                    }
                    w = w.to_lowercase();
                }
            }
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&w);
            words.push(w);
            sentence_left -= 1;
            if sentence_left == 0 || words.len() == n {
                text.push('.');
                sentence_left = 0;
            } else if self.rng.below(16) == 0 {
                text.push(',');
            }
        }
        if !text.ends_with('.') {
            text.push('.');
        }
        (title, words, text)
    }
}

fn make_corpus(args: &Args) {
    let dir = PathBuf::from(args.opt("--dir").unwrap_or_else(|| usage()));
    let quick = args.flag("--quick");
    let passages: usize = args.opt("--passages").map(|p| p.parse().unwrap_or_else(|_| usage())).unwrap_or(if quick { QUICK_PASSAGES } else { DEFAULT_PASSAGES });
    let nq: usize = args.opt("--queries").map(|p| p.parse().unwrap_or_else(|_| usage())).unwrap_or(DEFAULT_QUERIES);
    if passages < TOPK || nq == 0 {
        eprintln!("search corpus: need at least {TOPK} passages and one query");
        std::process::exit(2);
    }
    std::fs::create_dir_all(&dir).expect("create the corpus folder");
    let t = Instant::now();
    let seed = 0x5EA2C4B1_u64;
    let mut g = Generator::new(seed);
    // The passages the queries come from, drawn up front (own generator).
    let mut qrng = Rng(0x9E3779B97F4A7C15);
    let mut by_passage: HashMap<usize, Vec<usize>> = HashMap::new();
    for q in 0..nq {
        by_passage.entry(qrng.below(passages)).or_default().push(q);
    }
    let mut queries: Vec<Option<(String, usize)>> = vec![None; nq];
    let path = dir.join("corpus.jsonl");
    let mut out = BufWriter::with_capacity(8 << 20, std::fs::File::create(&path).expect("create corpus.jsonl"));
    let mut words_total = 0u64;
    let mut title_words = 0u64;
    for i in 0..passages {
        let (title, words, text) = g.passage();
        words_total += words.len() as u64;
        title_words += title.len() as u64;
        let contents = format!("\"{}\"\n{}", title.join(" "), text);
        writeln!(out, "{{\"id\": \"{i}\", \"contents\": {}}}", serde_json::to_string(&contents).expect("string")).expect("write corpus");
        if let Some(qs) = by_passage.get(&i) {
            let all: Vec<&String> = title.iter().chain(words.iter()).collect();
            for &q in qs {
                let k = (3 + qrng.below(6)).min(all.len());
                let mut pos: Vec<usize> = Vec::with_capacity(k);
                while pos.len() < k {
                    let p = qrng.below(all.len());
                    if !pos.contains(&p) {
                        pos.push(p);
                    }
                }
                pos.sort_unstable();
                let text: Vec<String> = pos.iter().map(|&p| all[p].to_lowercase()).collect();
                queries[q] = Some((text.join(" "), i));
            }
        }
        if (i + 1) % 200_000 == 0 {
            eprintln!("corpus: {} passages, {:.0}s", i + 1, t.elapsed().as_secs_f64());
        }
    }
    out.flush().expect("write corpus");
    drop(out);
    let mut qf = BufWriter::new(std::fs::File::create(dir.join("queries.jsonl")).expect("create queries.jsonl"));
    for (q, source) in queries.into_iter().map(|q| q.expect("every query drawn")) {
        writeln!(qf, "{}", json!({"query": q, "source": source.to_string()})).expect("write queries");
    }
    qf.flush().expect("write queries");
    let seconds = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let meta = json!({
        "passages": passages, "queries": nq, "quick": quick, "seed": seed,
        "corpus_file": path.display().to_string(), "corpus_bytes": bytes,
        "words_total": words_total, "mean_text_words": round(words_total as f64 / passages as f64, 2),
        "mean_title_words": round(title_words as f64 / passages as f64, 2),
        "generation_s": round(seconds, 2),
        "generator": {
            "vocabulary": format!("{VOCAB} synthetic words (syllables, frequent ones shorter), content-word ranks Zipf-Mandelbrot p(r) ~ 1/(r + {ZIPF_Q})^{ZIPF_S}"),
            "function_words": format!("{} English function words ({:.0}% of tokens, by rough English frequencies; Lucene's stop list removes some)", FUNCTION_WORDS.len(), 100.0 * FUNCTION_SHARE),
            "topics": format!("2-5 topic words per passage (log-uniform ranks 50..{VOCAB}): the title's words mostly, and {:.0}% of its content tokens", 100.0 * TOPIC_SHARE),
            "numbers": format!("{:.1}% of tokens (years 1800-2020, counts)", 100.0 * NUMBER_SHARE),
            "lengths": "title 1-4 words; text 60 + round(100 u^1.5) words (60..160, mean ~100), sentences of 8-25 words, some opening on the title",
            "queries": "3-8 distinct word positions of a random passage's title + text, in order, lower case (function words included, as in natural questions)",
        },
    });
    std::fs::write(dir.join("corpus.json"), serde_json::to_string_pretty(&meta).expect("json") + "\n").expect("write corpus.json");
    println!(
        "search corpus: {passages} passages ({:.1} MB, {:.1} words/passage), {nq} queries in {seconds:.1}s -> {}",
        bytes as f64 / 1e6,
        words_total as f64 / passages as f64,
        dir.display()
    );
}

// ---- process readings -----------------------------------------------------------

/// A `VmXXX:` / `RssXXX:` field of /proc/self/status, in bytes.
fn status_bytes(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

fn memory() -> Value {
    json!({
        "vm_hwm_bytes": status_bytes("VmHWM"), "vm_rss_bytes": status_bytes("VmRSS"),
        "rss_anon_bytes": status_bytes("RssAnon"), "rss_file_bytes": status_bytes("RssFile"),
    })
}

/// Resets VmHWM to the current RSS (Linux: `5` to /proc/self/clear_refs).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// User + system CPU seconds of this process (clock ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
    let ticks: u64 = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Bytes of an index folder by file kind (tantivy's extensions) and its segments.
fn index_files(dir: &Path) -> (BTreeMap<String, u64>, usize) {
    let mut by_kind = BTreeMap::new();
    let mut segments = HashSet::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        if !m.is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy().to_string();
        let (stem, ext) = name.rsplit_once('.').unwrap_or((name.as_str(), ""));
        let kind = match ext {
            "idx" => "postings (.idx)",
            "term" => "term dictionary (.term)",
            "store" => "stored passages (.store)",
            "fieldnorm" => "field norms (.fieldnorm)",
            "pos" => "positions (.pos)",
            "fast" => "fast fields (.fast)",
            _ => "other",
        };
        if ext == "idx" {
            segments.insert(stem.to_string());
        }
        *by_kind.entry(kind.to_string()).or_insert(0) += m.len();
    }
    (by_kind, segments.len())
}

// ---- statistics ----------------------------------------------------------------

fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let i = ((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Latency summary of calls (seconds each) that answered `queries` queries in all.
fn latency(calls_s: &[f64], queries: usize, batch: usize) -> Value {
    let total: f64 = calls_s.iter().sum();
    json!({
        "batch": batch, "calls": calls_s.len(), "queries": queries,
        "p50_ms": round(1e3 * percentile(calls_s, 50.0), 3), "p99_ms": round(1e3 * percentile(calls_s, 99.0), 3),
        "mean_ms": round(1e3 * total / calls_s.len().max(1) as f64, 3), "max_ms": round(1e3 * percentile(calls_s, 100.0), 3),
        "total_s": round(total, 3), "queries_per_s": round(queries as f64 / total, 1),
    })
}

// ---- the run ---------------------------------------------------------------------

struct BenchQuery {
    text: String,
    source: String,
}

fn read_queries(path: &Path) -> Vec<BenchQuery> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e} (run `search corpus` first)", path.display()));
    std::io::BufReader::new(f)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(&l.expect("read queries")).expect("queries.jsonl line is JSON");
            BenchQuery { text: v["query"].as_str().expect("query").to_string(), source: v["source"].as_str().expect("source").to_string() }
        })
        .collect()
}

/// The top-k ids and scores of each query.
type Top = Vec<(Vec<String>, Vec<f64>)>;

fn write_top(path: &Path, top: &Top) {
    let mut f = BufWriter::new(std::fs::File::create(path).expect("create top-10 file"));
    for (ids, scores) in top {
        writeln!(f, "{}", json!({"ids": ids, "scores": scores})).expect("write top-10");
    }
    f.flush().expect("write top-10");
}

fn read_top(path: &Path) -> Option<Top> {
    let f = std::fs::File::open(path).ok()?;
    std::io::BufReader::new(f)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(&l.ok()?).ok()?;
            let ids = v["ids"].as_array()?.iter().map(|x| x.as_str().map(str::to_string)).collect::<Option<Vec<_>>>()?;
            let scores = v["scores"].as_array()?.iter().map(|x| x.as_f64()).collect::<Option<Vec<_>>>()?;
            Some((ids, scores))
        })
        .collect()
}

/// Mean over queries of |ours ∩ theirs| / min(k, larger list) (k = 10
/// unless both lists are shorter: a query matching 7 passages can agree on 7).
fn overlap(ours: &Top, theirs: &Top, k: usize, their_k: usize) -> f64 {
    let per: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .map(|((a, _), (b, _))| {
            let a: HashSet<&String> = a.iter().take(k).collect();
            let b: HashSet<&String> = b.iter().take(their_k).collect();
            let denom = k.min(a.len().max(b.len().min(k))).max(1);
            a.intersection(&b).count() as f64 / denom as f64
        })
        .collect();
    per.iter().sum::<f64>() / per.len().max(1) as f64
}

/// Scores of the passages both top-10s hold: our score over theirs x
/// (k1 + 1) (bm25s' "lucene" drops that factor, as Lucene >= 8): the median
/// and the 99th percentile of |ratio - 1| (what tantivy's lossy length
/// norms change).
fn score_agreement(ours: &Top, theirs: &Top, k1: f64) -> Value {
    let mut rel = Vec::new();
    for ((ai, asc), (bi, bsc)) in ours.iter().zip(theirs) {
        let theirs: HashMap<&String, f64> = bi.iter().zip(bsc).map(|(i, s)| (i, *s)).collect();
        for (i, s) in ai.iter().zip(asc) {
            if let Some(t) = theirs.get(i).filter(|t| **t > 0.0) {
                rel.push((s / (t * (k1 + 1.0)) - 1.0).abs());
            }
        }
    }
    json!({
        "pairs": rel.len(),
        "median_abs_rel_diff": if rel.is_empty() { Value::Null } else { Value::from(round(median(&rel), 5)) },
        "p99_abs_rel_diff": if rel.is_empty() { Value::Null } else { Value::from(round(percentile(&rel, 99.0), 5)) },
        "definition": "for each passage in both top-10s: |our score / (bm25s score * (k1 + 1)) - 1|",
    })
}

/// The analysed terms of a query with their counts (as dart-search's query).
fn term_counts(analyzer: &mut tantivy::tokenizer::TextAnalyzer, text: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in terms(analyzer, text) {
        *counts.entry(t).or_insert(0) += 1;
    }
    counts
}

/// Where query time goes, on the same index opened with tantivy directly,
/// one query at a time on this thread: our BM25 query without reading the
/// stored passages; tantivy's own BM25 (k1 = 1.2, b = 0.75, TermQuery
/// clauses, which its BooleanQuery scores with block-max WAND, skipping
/// blocks that cannot enter the top 10; our scorer is not a TermScorer, so
/// our disjunctions are scored exhaustively); the postings the query terms
/// hold.
fn diagnostics(dir: &Path, queries: &[BenchQuery], passages: u64, params: Bm25Params) -> Value {
    let index = tantivy::Index::open_in_dir(dir).expect("open the index with tantivy");
    index.tokenizers().register(ANALYZER, english());
    let contents = index.schema().get_field("contents").expect("contents field");
    let reader = index.reader().expect("index reader");
    let searcher = reader.searcher();
    let mut analyzer = english();
    let qs: Vec<BTreeMap<String, usize>> = queries.iter().map(|q| term_counts(&mut analyzer, &q.text)).collect();
    let collector = TopDocs::with_limit(TOPK).order_by_score();
    let time_all = |make: &dyn Fn(&BTreeMap<String, usize>) -> BooleanQuery| -> Vec<f64> {
        qs.iter()
            .filter(|c| !c.is_empty())
            .map(|c| {
                let t = Instant::now();
                let q = make(c);
                let top = searcher.search(&q, &collector).expect("search");
                std::hint::black_box(top);
                t.elapsed().as_secs_f64()
            })
            .collect()
    };
    let ours = |c: &BTreeMap<String, usize>| {
        BooleanQuery::new(
            c.iter()
                .map(|(t, n)| {
                    let q = Bm25TermQuery { term: Term::from_field_text(contents, t), params, boost: *n as f32 };
                    (Occur::Should, Box::new(q) as Box<dyn Query>)
                })
                .collect(),
        )
    };
    // A repeated term is repeated as a clause (a BoostQuery would hide the TermScorer).
    let native = |c: &BTreeMap<String, usize>| {
        BooleanQuery::new(
            c.iter()
                .flat_map(|(t, n)| std::iter::repeat_n(t, *n))
                .map(|t| (Occur::Should, Box::new(TermQuery::new(Term::from_field_text(contents, t), IndexRecordOption::WithFreqs)) as Box<dyn Query>))
                .collect(),
        )
    };
    let _ = time_all(&ours); // warm (the index pages are mapped again by this reader)
    let scoring = time_all(&ours);
    let wand = time_all(&native);
    let n = scoring.len();
    let postings: Vec<f64> = qs
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| c.keys().map(|t| searcher.doc_freq(&Term::from_field_text(contents, t)).unwrap_or(0) as f64).sum())
        .collect();
    let terms_per_query: Vec<f64> = qs.iter().map(|c| c.len() as f64).collect();
    json!({
        "segments": searcher.segment_readers().len(),
        "terms_per_query_mean": round(terms_per_query.iter().sum::<f64>() / terms_per_query.len().max(1) as f64, 2),
        "empty_queries": qs.iter().filter(|c| c.is_empty()).count(),
        "postings_per_query_mean": round(postings.iter().sum::<f64>() / postings.len().max(1) as f64, 0),
        "postings_per_query_p50": percentile(&postings, 50.0),
        "postings_per_query_over_passages": round(postings.iter().sum::<f64>() / postings.len().max(1) as f64 / passages as f64, 3),
        "ours_scoring_only_batch1": latency(&scoring, n, 1),
        "tantivy_bm25_block_max_wand_batch1": latency(&wand, n, 1),
        "note": "single thread, top 10, same index opened with tantivy directly: `ours_scoring_only` is dart-search's BM25 BooleanQuery without reading the stored passages of the hits (search() also reads them: id, title, text); `tantivy_bm25_block_max_wand` is tantivy's own TermQuery BM25 (k1 = 1.2, b = 0.75, so other scores) that its BooleanQuery evaluates with block-max WAND; dart-search's Bm25TermQuery scorer is not tantivy's TermScorer, so its disjunctions are scored over every posting of every term",
    })
}

/// Passages/s of reading the corpus alone (JSON parse and split, one thread:
/// the thread that feeds the indexing threads), over at most `limit` passages.
fn feed_rate(corpus: &Path, limit: u64) -> Value {
    let mut r = CorpusReader::open(corpus).expect("open corpus");
    let t = Instant::now();
    let mut n = 0u64;
    while n < limit {
        match r.next_passage().expect("read corpus") {
            Some(p) => {
                std::hint::black_box(format!("{}\n{}", p.title, p.text));
                n += 1;
            }
            None => break,
        }
    }
    let s = t.elapsed().as_secs_f64();
    json!({"passages": n, "seconds": round(s, 3), "passages_per_s": round(n as f64 / s, 0),
           "note": "dart_search::corpus::CorpusReader alone (serde_json parse, title/text split, the `contents` string build_index makes), one thread"})
}

fn run(args: &Args) {
    let dir = PathBuf::from(args.opt("--dir").unwrap_or_else(|| usage()));
    let out = args.opt("--out").unwrap_or_else(|| usage());
    let meta: Value = std::fs::read_to_string(dir.join("corpus.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| panic!("{}/corpus.json missing: run `search corpus --dir {}` first", dir.display(), dir.display()));
    let quick = meta["quick"].as_bool().unwrap_or(false);
    // tantivy indexes with 1..=8 threads.
    let threads = args.threads().min(8);
    let (reference, reference_null_reason) = load_reference(args.opt("--ref-json"), || args.opt("--ref-null"), "bm25s");
    let st = RunStart {
        out,
        quick,
        threads,
        nproc: nproc(),
        cpu: cpu_model(),
        reference,
        reference_null_reason,
        load_before: loadavg(),
        started: Instant::now(),
    };
    let corpus = dir.join("corpus.jsonl");
    let queries = read_queries(&dir.join("queries.jsonl"));
    let passages = meta["passages"].as_u64().expect("passages");
    println!("dart-bench search: {}, nproc {}, {threads} indexing threads; {passages} passages, {} queries", st.cpu, st.nproc, queries.len());

    // Build.
    let index_dir = dir.join("index");
    let _ = std::fs::remove_dir_all(&index_dir);
    let opts = BuildOptions { threads, heap_mb: 256 * threads, progress: true, ..BuildOptions::default() };
    let mem_before = memory();
    reset_peak();
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let report = build_index(&corpus, &index_dir, &opts).expect("build the index");
    let build_wall = t.elapsed().as_secs_f64();
    let build_cpu = cpu_seconds().zip(cpu0).map(|(a, b)| a - b);
    let mem_build = memory();
    let (by_kind, segments) = index_files(&index_dir);
    let corpus_bytes = std::fs::metadata(&corpus).map(|m| m.len()).unwrap_or(0);
    let pps = report.passages as f64 / report.seconds;
    println!(
        "build: {} passages in {:.1}s = {pps:.0} passages/s (cpu {:.1}s); index {:.1} MB ({} segments), corpus {:.1} MB; peak RSS {:.0} MB",
        report.passages,
        report.seconds,
        build_cpu.unwrap_or(f64::NAN),
        report.bytes as f64 / 1e6,
        segments,
        corpus_bytes as f64 / 1e6,
        mem_build["vm_hwm_bytes"].as_f64().unwrap_or(0.0) / 1e6
    );

    // Queries.
    let peak_reset = reset_peak();
    let t = Instant::now();
    let index = SearchIndex::open(&index_dir).expect("open the index");
    let open_s = t.elapsed().as_secs_f64();
    let texts: Vec<String> = queries.iter().map(|q| q.text.clone()).collect();
    // Warm-up pass at batch 64; its answers are the ones compared.
    let mut top: Top = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(BATCH) {
        for hits in index.search(chunk, TOPK).expect("search") {
            top.push((hits.iter().map(|h| h.id.clone()).collect(), hits.iter().map(|h| h.score as f64).collect()));
        }
    }
    let top_path = dir.join("top10-dart.jsonl");
    write_top(&top_path, &top);
    // Batch 1: one query per call, in order.
    let mut b1 = Vec::with_capacity(texts.len());
    let mut same_as_batch = true;
    for (i, q) in texts.iter().enumerate() {
        let t = Instant::now();
        let hits = index.search(std::slice::from_ref(q), TOPK).expect("search");
        b1.push(t.elapsed().as_secs_f64());
        same_as_batch &= hits[0].iter().map(|h| &h.id).eq(top[i].0.iter());
    }
    let batch1 = latency(&b1, texts.len(), 1);
    // Batch 64: rounds over all queries (at least 2 and 3 s, at most 5; quick: 1).
    let mut b64 = Vec::new();
    let mut rounds = 0;
    while rounds == 0 || (!quick && rounds < 5 && (rounds < 2 || b64.iter().sum::<f64>() < 3.0)) {
        for chunk in texts.chunks(BATCH) {
            let t = Instant::now();
            std::hint::black_box(index.search(chunk, TOPK).expect("search"));
            b64.push(t.elapsed().as_secs_f64());
        }
        rounds += 1;
    }
    let batch64 = latency(&b64, texts.len() * rounds, BATCH);
    let mem_query = memory();
    println!(
        "queries (top {TOPK}): batch 1 p50 {} ms p99 {} ms, {} q/s; batch {BATCH} p50 {} ms p99 {} ms, {} q/s",
        batch1["p50_ms"], batch1["p99_ms"], batch1["queries_per_s"], batch64["p50_ms"], batch64["p99_ms"], batch64["queries_per_s"]
    );
    let found_source = queries.iter().zip(&top).filter(|(q, (ids, _))| ids.contains(&q.source)).count();
    let short_lists = top.iter().filter(|(ids, _)| ids.len() < TOPK).count();
    let params = index.bm25();
    drop(index);

    let diag = diagnostics(&index_dir, &queries, passages, params);
    println!(
        "diagnostics: scoring only p50 {} ms ({} q/s); tantivy's BM25 with block-max WAND p50 {} ms ({} q/s); {} postings per query ({}x the passages)",
        diag["ours_scoring_only_batch1"]["p50_ms"],
        diag["ours_scoring_only_batch1"]["queries_per_s"],
        diag["tantivy_bm25_block_max_wand_batch1"]["p50_ms"],
        diag["tantivy_bm25_block_max_wand_batch1"]["queries_per_s"],
        diag["postings_per_query_mean"],
        diag["postings_per_query_over_passages"]
    );
    let feed = feed_rate(&corpus, 200_000.min(passages));

    // The reference.
    let r = st.reference.as_ref();
    let their_top = r.and_then(|r| r["top10_file"].as_str()).and_then(|p| read_top(Path::new(p)));
    let their_top20 = r.and_then(|r| r["top20_file"].as_str()).and_then(|p| read_top(Path::new(p)));
    let k1 = params.k1 as f64;
    let comparison = match (r, &their_top) {
        (Some(r), Some(tt)) if tt.len() == top.len() => {
            let ov = overlap(&top, tt, TOPK, TOPK);
            let ov20 = their_top20.as_ref().filter(|t| t.len() == top.len()).map(|t| overlap(&top, t, TOPK, 2 * TOPK));
            let ratio = |ours: &Value, theirs: &Value| match (ours["queries_per_s"].as_f64(), theirs["queries_per_s"].as_f64()) {
                (Some(a), Some(b)) if b > 0.0 => Value::from(round(a / b, 3)),
                _ => Value::Null,
            };
            let r1 = ratio(&batch1, &r["batch1"]);
            let r64 = ratio(&batch64, &r["batch64"]);
            let their_found = queries.iter().zip(tt).filter(|(q, (ids, _))| ids.contains(&q.source)).count();
            let worst = [r1.as_f64(), r64.as_f64()].into_iter().flatten().fold(f64::INFINITY, f64::min);
            println!("bm25s: overlap@10 {ov:.4}; queries/s ratio batch 1 {r1}, batch {BATCH} {r64}");
            json!({
                "overlap_top10": round(ov, 4),
                "overlap_definition": "mean over queries of |our top 10 ∩ bm25s top 10| / 10 (ids; / the longer list when both have fewer than 10)",
                "overlap_our_top10_in_their_top20": ov20.map(|v| round(v, 4)),
                "scores": score_agreement(&top, tt, k1),
                "source_passage_in_top10": {"dart": round(found_source as f64 / top.len() as f64, 4), "bm25s": round(their_found as f64 / top.len() as f64, 4)},
                "queries_per_s_ratio": {"batch1": r1, "batch64": r64},
                "build_speed_ratio": r["build_s"].as_f64().map(|b| round(b / report.seconds, 3)),
                "ratio_definition": "ours / bm25s queries per second at the same batch size (top 10, same queries, same corpus, same run, one after the other); build_speed_ratio = bm25s build seconds / ours",
                "targets": {
                    "overlap_top10": TARGET_OVERLAP, "overlap_top10_ok": ov >= TARGET_OVERLAP,
                    "queries_per_s_ratio": TARGET_QPS_RATIO,
                    "queries_per_s_ratio_batch1_ok": r1.as_f64().map(|x| x >= TARGET_QPS_RATIO),
                    "queries_per_s_ratio_batch64_ok": r64.as_f64().map(|x| x >= TARGET_QPS_RATIO),
                    "queries_per_s_ratio_ok": worst.is_finite().then_some(worst >= TARGET_QPS_RATIO),
                },
            })
        }
        (Some(_), _) => json!({"null_reason": "the bm25s top-10 file is missing or does not have one line per query"}),
        (None, _) => json!({"null_reason": st.reference_null_reason}),
    };

    let scale = WIKI18_PASSAGES / report.passages as f64;
    let lin = |x: Option<f64>| x.map(|v| round(v * scale, 1));
    let build_peak = mem_build["vm_hwm_bytes"].as_f64();
    let extrapolation = json!({
        "passages": WIKI18_PASSAGES,
        "method": format!("linear extrapolation of the measured per-passage figures (x {scale:.2}) from {} synthetic passages; not measured", report.passages),
        "build_s": round(report.seconds * scale, 0),
        "build_h": round(report.seconds * scale / 3600.0, 2),
        "index_bytes": round(report.bytes as f64 * scale, 0),
        "corpus_bytes": round(corpus_bytes as f64 * scale, 0),
        "build_peak_rss_bytes_linear_upper_bound": lin(build_peak),
        "query_page_cache_bytes": round(report.bytes as f64 * scale, 0),
        "query_p50_ms_batch1": lin(batch1["p50_ms"].as_f64()),
        "queries_per_s_batch64": batch64["queries_per_s"].as_f64().map(|q| round(q / scale, 1)),
        "caveats": [
            "build: tantivy merges segments as they accumulate, so a larger corpus is merged more times: linear is a lower bound on build time",
            "memory: the indexing heap is fixed (heap_mb), so build RSS should stay near the measured figure rather than grow linearly; the linear figure is an upper bound. Queries run from the memory-mapped index: keeping it in the page cache needs about index_bytes of RAM",
            "queries: dart-search scores every posting of every query term (no block-max WAND), so latency grows with the postings, i.e. linearly with the corpus for the same queries",
            "wiki-18's vocabulary (millions of terms) is much larger than the 50k synthetic words: a larger term dictionary, but postings dominate the index",
        ],
    });

    let result = st.result(
        "dart-rl search (cpu)",
        json!({"cpu_flags": cpu_flags()}),
        json!({
            "corpus": meta,
            "bm25": {"k1": k1, "b": params.b as f64, "analysis": "tantivy SimpleTokenizer words, lower case, Lucene's 33 English stop words + a lone \"s\", Snowball English stemmer (dart_search::analyzer)"},
            "build": {
                "passages": report.passages,
                "seconds": round(report.seconds, 2),
                "wall_s_incl_size": round(build_wall, 2),
                "passages_per_s": round(pps, 0),
                "corpus_mb_per_s": round(corpus_bytes as f64 / 1e6 / report.seconds, 2),
                "cpu_s": build_cpu.map(|c| round(c, 1)),
                "cores_busy": build_cpu.map(|c| round(c / report.seconds, 2)),
                "threads": threads,
                "heap_mb": opts.heap_mb,
                "index_bytes": report.bytes,
                "index_bytes_per_passage": round(report.bytes as f64 / report.passages as f64, 1),
                "index_over_corpus": round(report.bytes as f64 / corpus_bytes as f64, 3),
                "index_bytes_by_kind": by_kind,
                "segments": segments,
                "corpus_bytes": corpus_bytes,
                "memory_before": mem_before,
                "memory_after": mem_build,
                "peak_rss_bytes": build_peak,
                "feeder_alone": feed,
                "measured_as": "dart_search::build_index(corpus.jsonl, out, threads = the cores (at most 8), heap 256 MB per thread): read + parse + index + commit + merges + rename; peak RSS = VmHWM of this process over the build (reset before it)",
            },
            "query": {
                "topk": TOPK,
                "queries": texts.len(),
                "open_ms": round(1e3 * open_s, 3),
                "batch1": batch1,
                "batch64": batch64,
                "batch64_rounds": rounds,
                "batch1_same_top10_as_batch64": same_as_batch,
                "source_passage_in_top10": round(found_source as f64 / top.len() as f64, 4),
                "queries_with_fewer_than_topk_hits": short_lists,
                "memory_after": mem_query,
                "peak_rss_bytes": if peak_reset { mem_query["vm_hwm_bytes"].clone() } else { Value::Null },
                "rayon_threads": rayon_threads(),
                "measured_as": "SearchIndex::open, one untimed pass at batch 64 (its answers are the compared top 10), then every query alone (batch 1: latency per call), then rounds of all queries in calls of 64 (latency per call of 64); queries_per_s = queries / summed call time; search() runs the queries of a call in parallel on rayon's pool and reads the stored passages of the hits",
                "top10_file": top_path.display().to_string(),
                "top10_file_note": "in the run's temporary folder (removed by scripts/bench/run.sh after the run), as the corpus",
                "diagnostics": diag,
            },
            "reference": r.map(|r| {
                let mut r = r.clone();
                if let Some(o) = r.as_object_mut() {
                    o.remove("available");
                }
                r
            }),
            "reference_null_reason": st.reference_null_reason,
            "comparison": comparison,
            "wiki18_extrapolation": extrapolation,
            "benchmark_wall_s": {
                "corpus_generation": meta["generation_s"],
                "bm25s_reference": r.and_then(|r| r.get("wall_s")).cloned(),
                "dart": round(st.elapsed_s(), 1),
                "total": round(meta["generation_s"].as_f64().unwrap_or(0.0) + r.and_then(|r| r["wall_s"].as_f64()).unwrap_or(0.0) + st.elapsed_s(), 1),
                "note": "the three steps of scripts/bench/run.sh's search section, one after the other (the build of the binaries not included)",
            },
        }),
    );
    write_result(&st.out, &result);
    if !args.flag("--keep-index") {
        let _ = std::fs::remove_dir_all(&index_dir);
    }
    println!("wrote {} in {:.0}s", st.out, st.elapsed_s());
}

/// Threads of rayon's global pool, which search() runs a call's queries on.
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).filter(|&n: &usize| n > 0).unwrap_or_else(nproc)
}

fn usage() -> ! {
    eprintln!(
        "usage: search corpus --dir DIR [--passages N] [--queries Q] [--quick]\n       search run --dir DIR --out FILE [--threads N] [--ref-json FILE | --ref-null REASON] [--keep-index]"
    );
    std::process::exit(2)
}

fn main() {
    let args = Args::from_env(usage);
    match args.command().as_str() {
        "corpus" => make_corpus(&args),
        "run" => run(&args),
        _ => usage(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_wiki_like() {
        let mut a = Generator::new(7);
        let mut b = Generator::new(7);
        let pa: Vec<_> = (0..300).map(|_| a.passage()).collect();
        let pb: Vec<_> = (0..300).map(|_| b.passage()).collect();
        assert_eq!(pa, pb);
        let mean = pa.iter().map(|p| p.1.len()).sum::<usize>() as f64 / pa.len() as f64;
        assert!((85.0..=115.0).contains(&mean), "mean text words {mean}");
        for (title, words, text) in &pa {
            assert!((1..=4).contains(&title.len()));
            assert!((60..=160).contains(&words.len()), "{} words", words.len());
            assert!(text.ends_with('.') && !text.contains('"'));
        }
    }

    #[test]
    fn overlap_and_percentiles() {
        let t = |ids: &[&str]| (ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(), vec![1.0; ids.len()]);
        let ours = vec![t(&["a", "b", "c"]), t(&["x", "y"])];
        let theirs = vec![t(&["c", "b", "a"]), t(&["y", "z"])];
        // 3/3 and 1/2 (both lists shorter than k).
        assert!((overlap(&ours, &theirs, 10, 10) - 0.75).abs() < 1e-12);
        let xs: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        assert_eq!(percentile(&xs, 50.0), 50.0);
        assert_eq!(percentile(&xs, 99.0), 99.0);
        assert_eq!(percentile(&xs, 100.0), 100.0);
    }
}
