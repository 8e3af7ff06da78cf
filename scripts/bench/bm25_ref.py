"""The BM25 reference of the search benchmark (crates/dart-bench/src/bin/search.rs):
bm25s over the same synthetic corpus and queries, with the analysis and
parameters closest to dart-search's (and pyserini's): method "lucene",
k1 = 0.9, b = 0.4; words of letters and digits, lower case, Lucene's 33
English stop words + a lone "s", the Snowball English stemmer (PyStemmer).

Writes --out: {"available": true, versions, build seconds (read, tokenize,
index), peak RSS, batch 1 / batch 64 latency and queries/s, "top10_file",
"top20_file"} or {"available": false, "reason"}; pyserini is recorded as
skipped with the reason (it needs a Java 21 runtime). Run by
scripts/bench/run.sh before the dart-rl side (`search run --ref-json`).

    python scripts/bench/bm25_ref.py --dir DIR --out FILE [--threads N] [--backend auto|numpy|numba]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_common import fail, loadavg  # noqa: E402

# dart_search::analyzer::LUCENE_ENGLISH_STOP_WORDS, and the possessive "s".
LUCENE_STOP_WORDS = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of", "on", "or", "such",
    "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with",
]
# tantivy's SimpleTokenizer: runs of alphanumeric characters.
SPLITTER = r"[^\W_]+"
K1, B = 0.9, 0.4
TOPK = 10
BATCH = 64


def percentile(xs: list[float], p: float) -> float:
    """Nearest rank, as search.rs."""
    v = sorted(xs)
    if not v:
        return float("nan")
    i = min(max(int(-(-p / 100.0 * len(v) // 1)), 1), len(v)) - 1
    return v[i]


def latency(calls: list[float], queries: int, batch: int) -> dict:
    total = sum(calls)
    return {
        "batch": batch, "calls": len(calls), "queries": queries,
        "p50_ms": round(1e3 * percentile(calls, 50), 3), "p99_ms": round(1e3 * percentile(calls, 99), 3),
        "mean_ms": round(1e3 * total / max(len(calls), 1), 3), "max_ms": round(1e3 * max(calls), 3),
        "total_s": round(total, 3), "queries_per_s": round(queries / total, 1),
    }


def pyserini_status() -> str:
    """Why pyserini is not run here."""
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"skipped: no Java runtime ({e}); pyserini needs Java 21"
    text = (out.stderr or out.stdout).strip()
    m = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    major = int(m.group(1)) if m else None
    if major == 1 and m.group(2):  # "1.8.0_..." style
        major = int(m.group(2))
    first = text.splitlines()[0] if text else "?"
    if major is None or major < 21:
        return f"skipped: `java -version` says {first!r}; pyserini (Anserini/Lucene) needs a Java 21 runtime"
    try:
        import pyserini  # noqa: F401
    except ImportError:
        return f"skipped: Java {major} is there but pyserini is not installed in this venv (pip install pyserini)"
    return "skipped: pyserini is installed but this script runs only bm25s"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True, help="the folder of `search corpus` (corpus.jsonl, queries.jsonl)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--backend", default="auto", help="bm25s retrieval backend: auto (numba when importable), numpy, numba")
    a = ap.parse_args()
    load_before = loadavg()
    started = time.perf_counter()
    try:
        import bm25s
        import numpy as np
        import Stemmer
    except ImportError as e:
        return fail(a.out, "bm25s", f"cannot import bm25s / PyStemmer: {e}")
    try:
        import importlib.metadata as md

        versions = {p: md.version(p) for p in ("bm25s", "PyStemmer", "numpy")}
    except Exception:  # noqa: BLE001
        versions = {"bm25s": getattr(bm25s, "__version__", None)}
    backend = a.backend
    if backend == "auto":
        try:
            import numba  # noqa: F401

            backend = "numba"
        except ImportError:
            backend = "numpy"

    # Read the corpus as search.rs's index does: `contents` = "Title"\ntext,
    # title and text searched together.
    t0 = time.perf_counter()
    ids: list[str] = []
    texts: list[str] = []
    with open(os.path.join(a.dir, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            c = d["contents"]
            first, _, rest = c.partition("\n")
            if len(first) >= 2 and first.startswith('"') and first.endswith('"'):
                title, text = first[1:-1], rest
            else:
                title, text = "", c
            ids.append(str(d["id"]))
            texts.append(f"{title}\n{text}")
    read_s = time.perf_counter() - t0
    with open(os.path.join(a.dir, "queries.jsonl"), encoding="utf-8") as f:
        queries = [json.loads(line)["query"] for line in f if line.strip()]
    print(f"bm25s: {len(ids)} passages read in {read_s:.1f}s, {len(queries)} queries; backend {backend}, {a.threads} threads", file=sys.stderr)

    stemmer = Stemmer.Stemmer("english")
    tok = bm25s.tokenization.Tokenizer(lower=True, splitter=SPLITTER, stopwords=LUCENE_STOP_WORDS + ["s"], stemmer=stemmer.stemWord)
    t1 = time.perf_counter()
    corpus_tokens = tok.tokenize(texts, update_vocab=True, return_as="tuple", show_progress=False)
    tokenize_s = time.perf_counter() - t1
    del texts
    retriever = bm25s.BM25(method="lucene", k1=K1, b=B, backend=backend)
    t2 = time.perf_counter()
    retriever.index(corpus_tokens, show_progress=False)
    index_s = time.perf_counter() - t2
    del corpus_tokens
    build_s = read_s + tokenize_s + index_s
    peak_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"bm25s: tokenized in {tokenize_s:.1f}s, indexed in {index_s:.1f}s (build {build_s:.1f}s)", file=sys.stderr)

    def search(qs: list[str], k: int, threads: int):
        # Token ids in the corpus vocabulary, repeats kept (bm25s adds a
        # repeated term's scores again, as dart-search's boost does); unknown
        # terms are dropped; a query left empty gets the empty token (score 0).
        qt = tok.tokenize(qs, update_vocab=False, return_as="ids", show_progress=False)
        docs, scores = retriever.retrieve(qt, k=k, n_threads=threads, show_progress=False)
        out = []
        for j in range(len(qs)):
            pairs = [(ids[int(d)], float(s)) for d, s in zip(docs[j], scores[j]) if s > 0]
            out.append(([p[0] for p in pairs], [p[1] for p in pairs]))
        return out

    # Warm-up pass at batch 64 (the compared answers), also top 20.
    top10, top20 = [], []
    for s in range(0, len(queries), BATCH):
        chunk = queries[s : s + BATCH]
        r20 = search(chunk, 2 * TOPK, a.threads)
        top20.extend(r20)
        top10.extend((i[:TOPK], sc[:TOPK]) for i, sc in r20)
    # Batch 1.
    b1 = []
    for q in queries:
        t = time.perf_counter()
        search([q], TOPK, 0)
        b1.append(time.perf_counter() - t)
    # Batch 64: rounds over all queries (at least 2 and 3 s, at most 5).
    b64, rounds = [], 0
    quick = len(ids) <= 20_000
    while rounds == 0 or (not quick and rounds < 5 and (rounds < 2 or sum(b64) < 3.0)):
        for s in range(0, len(queries), BATCH):
            t = time.perf_counter()
            search(queries[s : s + BATCH], TOPK, a.threads)
            b64.append(time.perf_counter() - t)
        rounds += 1
    batch1 = latency(b1, len(queries), 1)
    batch64 = latency(b64, len(queries) * rounds, BATCH)
    print(
        f"bm25s: batch 1 p50 {batch1['p50_ms']} ms, {batch1['queries_per_s']} q/s; batch {BATCH} p50 {batch64['p50_ms']} ms, {batch64['queries_per_s']} q/s",
        file=sys.stderr,
    )

    def write(name: str, rows) -> str:
        p = os.path.join(a.dir, name)
        with open(p, "w") as f:
            for i, sc in rows:
                f.write(json.dumps({"ids": i, "scores": sc}) + "\n")
        return p

    nnz = int(retriever.scores["data"].shape[0]) if isinstance(retriever.scores, dict) and "data" in retriever.scores else None
    result = {
        "available": True,
        "name": "bm25s",
        "versions": versions,
        "python": sys.version.split()[0],
        "backend": backend,
        "threads": a.threads,
        "method": "lucene",
        "k1": K1,
        "b": B,
        "analysis": f"bm25s Tokenizer: lower case, splitter {SPLITTER!r} (tantivy SimpleTokenizer's alphanumeric runs), Lucene's 33 English stop words + 's', PyStemmer 'english' (Snowball)",
        "passages": len(ids),
        "vocabulary": len(retriever.vocab_dict),
        "score_matrix_nonzeros": nnz,
        "read_s": round(read_s, 2),
        "tokenize_s": round(tokenize_s, 2),
        "index_s": round(index_s, 2),
        "build_s": round(build_s, 2),
        "build_passages_per_s": round(len(ids) / build_s, 0),
        "peak_rss_bytes_after_build": peak_build,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "batch1": batch1,
        "batch64": batch64,
        "batch64_rounds": rounds,
        "measured_as": "build = read corpus.jsonl + tokenize (stem) + BM25.index; batch 1 = retrieve([q], k=10, n_threads=0) per query, query tokenization included; batch 64 = retrieve(64 queries, n_threads=threads); the eager score matrix holds every (term, passage) score, so a query sums the columns of its terms and takes the top k",
        "top10_file": write("top10-bm25s.jsonl", top10),
        "top20_file": write("top20-bm25s.jsonl", top20),
        "pyserini": pyserini_status(),
        "wall_s": round(time.perf_counter() - started, 1),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
