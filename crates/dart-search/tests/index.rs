//! The index end to end on generated corpora: BM25 scores equal an
//! independent computation of the formula (pyserini's k1/b and others) over
//! the same analysed tokens; .jsonl and .jsonl.gz give the same index; bad
//! corpora and bad index folders give errors naming the problem.
use dart_search::analyzer::{english, terms};
use dart_search::bm25::Bm25Params;
use dart_search::corpus::split_contents;
use dart_search::{build_index, BuildOptions, SearchIndex};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dart-search-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const WORDS: [&str; 24] = [
    "paris", "france", "capital", "river", "seine", "berlin", "germany", "music", "piano", "goethe", "faust", "poet", "ocean", "whale",
    "island", "mountain", "alps", "history", "war", "peace", "novel", "tolstoy", "science", "physics",
];

/// A deterministic corpus: passage i has a title and 3..20 words.
fn corpus(n: usize) -> Vec<(String, String, String)> {
    let mut state = 12345u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    (0..n)
        .map(|i| {
            let len = 3 + next() % 18;
            let text: Vec<&str> = (0..len).map(|_| WORDS[next() % WORDS.len()]).collect();
            (format!("doc{i}"), format!("Title {}", WORDS[i % WORDS.len()]), format!("The {}.", text.join(" ")))
        })
        .collect()
}

fn write_jsonl(path: &Path, docs: &[(String, String, String)]) {
    let mut f = std::fs::File::create(path).unwrap();
    for (id, title, text) in docs {
        let line = serde_json::json!({ "id": id, "contents": format!("\"{title}\"\n{text}") });
        writeln!(f, "{line}").unwrap();
    }
}

fn opts(bm25: Bm25Params) -> BuildOptions {
    BuildOptions { threads: 2, heap_mb: 60, bm25, progress: false }
}

/// BM25 computed directly from the analysed passages.
fn reference(docs: &[(String, String, String)], query: &str, p: Bm25Params, k: usize) -> Vec<(String, f32)> {
    let mut a = english();
    let toks: Vec<Vec<String>> = docs.iter().map(|(_, t, x)| terms(&mut a, &format!("{t}\n{x}"))).collect();
    let n = docs.len() as f32;
    let avgdl = toks.iter().map(|t| t.len()).sum::<usize>() as f32 / n;
    let mut q: HashMap<String, f32> = HashMap::new();
    for t in terms(&mut a, query) {
        *q.entry(t).or_default() += 1.0;
    }
    let mut scored: Vec<(String, f32)> = docs
        .iter()
        .zip(&toks)
        .filter_map(|((id, _, _), dt)| {
            let mut s = 0.0f32;
            let mut hit = false;
            for (term, boost) in &q {
                let tf = dt.iter().filter(|t| *t == term).count() as f32;
                if tf > 0.0 {
                    hit = true;
                    let df = toks.iter().filter(|d| d.contains(term)).count() as f32;
                    let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                    s += boost * idf * (p.k1 + 1.0) * tf / (tf + p.k1 * (1.0 - p.b + p.b * dt.len() as f32 / avgdl));
                }
            }
            hit.then(|| (id.clone(), s))
        })
        .collect();
    scored.sort_by(|x, y| y.1.partial_cmp(&x.1).unwrap());
    scored.truncate(k);
    scored
}

#[test]
fn scores_equal_the_bm25_formula_for_pyserini_and_other_parameters() {
    let docs = corpus(400);
    let dir = tmp("formula");
    let file = dir.join("corpus.jsonl");
    write_jsonl(&file, &docs);
    let queries = ["capital of France", "the river Seine in Paris", "Goethe Faust poet poet", "whale ocean island mountain alps", "war and peace novel by Tolstoy"];
    for (name, p) in [("pyserini", Bm25Params::default()), ("lucene-classic", Bm25Params { k1: 1.2, b: 0.75 }), ("no-length", Bm25Params { k1: 2.0, b: 0.0 })] {
        let out = dir.join(format!("index-{name}"));
        let report = build_index(&file, &out, &opts(p)).unwrap();
        assert_eq!(report.passages, 400);
        let idx = SearchIndex::open(&out).unwrap();
        assert_eq!(idx.bm25(), p);
        let qs: Vec<String> = queries.iter().map(|s| s.to_string()).collect();
        let got = idx.search(&qs, 10).unwrap();
        for (q, hits) in queries.iter().zip(&got) {
            let want = reference(&docs, q, p, 10);
            assert_eq!(hits.len(), want.len(), "{name} {q}");
            for (h, (id, s)) in hits.iter().zip(&want) {
                assert!((h.score - s).abs() <= 1e-4 * s.abs().max(1.0), "{name} {q:?}: {} {} vs {id} {s}", h.id, h.score);
            }
            // Ids agree except where scores tie.
            let got_scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
            for (i, h) in hits.iter().enumerate() {
                if want.iter().filter(|w| (w.1 - got_scores[i]).abs() < 1e-5).count() == 1 {
                    assert_eq!(h.id, want[i].0, "{name} {q:?} rank {i}");
                }
            }
            let d = docs.iter().find(|d| d.0 == hits[0].id).unwrap();
            assert_eq!((&hits[0].title, &hits[0].text), (&d.1, &d.2), "stored title and text");
        }
        println!("{name}: {} queries x top 10 equal the formula", queries.len());
    }
    // An all-stop-word query has no terms: no hits, no error.
    let idx = SearchIndex::open(&dir.join("index-pyserini")).unwrap();
    assert!(idx.search(&["the of and".into()], 5).unwrap()[0].is_empty());
    assert!(idx.search(&["x".into()], 0).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gzipped_corpus_gives_the_same_results() {
    let docs = corpus(120);
    let dir = tmp("gz");
    let plain = dir.join("c.jsonl");
    write_jsonl(&plain, &docs);
    let gz = dir.join("c.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    enc.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    enc.finish().unwrap();
    build_index(&plain, &dir.join("a"), &opts(Bm25Params::default())).unwrap();
    build_index(&gz, &dir.join("b"), &opts(Bm25Params::default())).unwrap();
    let q: Vec<String> = vec!["paris capital".into(), "music piano".into()];
    let a = SearchIndex::open(&dir.join("a")).unwrap().search(&q, 5).unwrap();
    let b = SearchIndex::open(&dir.join("b")).unwrap().search(&q, 5).unwrap();
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_corpora_name_file_line_and_field() {
    let dir = tmp("bad-corpus");
    let cases = [
        ("{\"id\": \"1\", \"contents\": \"\\\"T\\\"\\nx\"}\nnot json\n", "line 2: not valid JSON"),
        ("{\"id\": \"1\"}\n", "line 1: field \"contents\" is missing"),
        ("{\"contents\": \"x\"}\n", "line 1: field \"id\" is missing"),
        ("[1, 2]\n", "line 1: expected a JSON object"),
        ("{\"id\": [1], \"contents\": \"x\"}\n", "field \"id\" must be a string or an integer"),
        ("\n\n", "no passages"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let f = dir.join(format!("c{i}.jsonl"));
        std::fs::write(&f, text).unwrap();
        let out = dir.join(format!("out{i}"));
        let e = build_index(&f, &out, &opts(Bm25Params::default())).unwrap_err();
        assert!(e.to_string().contains(want) && e.to_string().contains(&format!("c{i}.jsonl")), "case {i}: {e}");
        assert!(!out.exists(), "no index under the asked name after a failed build");
    }
    let e = build_index(&dir.join("none.jsonl"), &dir.join("x"), &opts(Bm25Params::default())).unwrap_err();
    assert_eq!(e.code(), "DART_IO");
    let e = build_index(&dir.join("c.csv"), &dir.join("x"), &opts(Bm25Params::default())).unwrap_err();
    assert!(e.to_string().contains(".jsonl"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_foreign_and_truncated_indexes_are_errors_not_crashes() {
    let dir = tmp("bad-index");
    let e = SearchIndex::open(&dir.join("nothing")).err().unwrap();
    assert_eq!(e.code(), "DART_IO");
    assert!(e.to_string().contains("pnpm pipeline index"), "{e}");
    let foreign = dir.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("meta.json"), "{}").unwrap();
    let e = SearchIndex::open(&foreign).err().unwrap();
    assert_eq!(e.code(), "DART_INDEX");
    assert!(e.to_string().contains("not a dart-rl index"), "{e}");
    // A real index, then its files truncated one at a time.
    let file = dir.join("c.jsonl");
    write_jsonl(&file, &corpus(300));
    let good = dir.join("good");
    build_index(&file, &good, &opts(Bm25Params::default())).unwrap();
    assert!(build_index(&file, &good, &opts(Bm25Params::default())).unwrap_err().to_string().contains("already exists"));
    // Every file with content (tantivy's lock files are empty: halving them changes nothing).
    let mut names: Vec<PathBuf> = std::fs::read_dir(&good)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    names.sort();
    let mut refused = 0;
    for victim in &names {
        let copy = dir.join("copy");
        let _ = std::fs::remove_dir_all(&copy);
        std::fs::create_dir_all(&copy).unwrap();
        for p in &names {
            std::fs::copy(p, copy.join(p.file_name().unwrap())).unwrap();
        }
        let target = copy.join(victim.file_name().unwrap());
        let len = std::fs::metadata(&target).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&target).unwrap().set_len(len / 2).unwrap();
        // Opening and a search either work or fail with an error; never a panic.
        let outcome = std::panic::catch_unwind(|| SearchIndex::open(&copy).and_then(|i| i.search(&["paris capital".into()], 5)));
        let outcome = outcome.unwrap_or_else(|_| panic!("truncating {} made open or search panic", victim.display()));
        if let Err(e) = outcome {
            assert_eq!(e.code(), "DART_INDEX", "{}: {e}", victim.display());
            refused += 1;
        }
    }
    println!("{} files truncated in turn: {refused} refused at open or search, none panicked", names.len());
    // Every file of the index is recorded with its size in dart-index.json,
    // so truncating any of them (except the meta file itself, which then
    // fails to parse) is refused at open.
    assert_eq!(refused, names.len(), "every truncated file is refused");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn contents_split_as_search_r1_writes_them() {
    assert_eq!(split_contents("\"Paris\"\nParis is the capital."), ("Paris".into(), "Paris is the capital.".into()));
    assert_eq!(split_contents("no title line"), ("".into(), "no title line".into()));
    assert_eq!(split_contents("\"Only title\""), ("Only title".into(), "".into()));
}
